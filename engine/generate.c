/* generate.c — the generation loop: prefill, then sample / decode until a
 * stop token, a stop string, max_tokens or the sequence's capacity.
 *
 * Stop strings are matched on detokenized text. Text that could still be
 * the start of a stop string (the longest suffix that is a proper prefix of
 * one) is held back and released only once the next tokens rule the match
 * out, so a stop string never reaches the caller, even split over tokens.
 * Only the last (longest stop − 1) bytes of text are kept: a match that
 * ends in new text starts at most that far back.
 */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *tsr_eng_finish_name(tsr_eng_finish f) {
    switch (f) {
    case TSR_ENG_FINISH_STOP: return "stop";
    case TSR_ENG_FINISH_LENGTH: return "length";
    case TSR_ENG_FINISH_ABORT: return "abort";
    }
    return "?";
}

tsr_eng_gen_params tsr_eng_gen_params_default(void) {
    return (tsr_eng_gen_params){.max_tokens = 256, .sampler = tsr_eng_sampler_params_default()};
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Stop-string matcher                                                      */
/* ------------------------------------------------------------------------ */

typedef struct stop_matcher {
    const char *const *stops;
    int n;
    size_t keep;  /* longest stop − 1: bytes of history a match can reach back */
    char *buf;    /* [cap] window: kept history, then the new text */
    size_t cap;
    size_t len;   /* bytes of history in buf */
    size_t held;  /* trailing bytes of the history not yet released */
} stop_matcher;

/* Appends text; sets *emit, *emit_len to the bytes now final and *hit to the
 * matched stop index (or -1). last: no more text follows, hold nothing back.
 * Grows buf only for an unusually long text. */
static tsr_status stop_push(stop_matcher *m, const char *text, size_t len, bool last,
                            const char **emit, size_t *emit_len, int *hit, tsr_error *err) {
    if (m->len + len > m->cap) {
        size_t cap = 2 * (m->len + len);
        char *b = realloc(m->buf, cap);
        if (!b) return tsr_errorf(err, TSR_ERR_NOMEM, "generate: out of memory");
        m->buf = b;
        m->cap = cap;
    }
    if (len > 0) memcpy(m->buf + m->len, text, len);
    size_t total = m->len + len, from = m->len - m->held;
    /* Earliest match ending in the new text (the history had none). */
    size_t best = total;
    *hit = -1;
    for (int i = 0; i < m->n; i++) {
        size_t sl = strlen(m->stops[i]);
        size_t start = m->len >= sl - 1 ? m->len - (sl - 1) : 0;
        for (size_t p = start; p + sl <= total && p < best; p++)
            if (memcmp(m->buf + p, m->stops[i], sl) == 0) {
                best = p;
                *hit = i;
                break;
            }
    }
    *emit = m->buf + from;
    if (*hit >= 0) {
        *emit_len = best - from;
        return TSR_OK;
    }
    /* Hold back the longest suffix that is a proper prefix of a stop. */
    size_t hold = 0;
    for (int i = 0; i < m->n && !last; i++) {
        size_t sl = strlen(m->stops[i]);
        for (size_t h = sl - 1 < total ? sl - 1 : total; h > hold; h--)
            if (memcmp(m->buf + total - h, m->stops[i], h) == 0) {
                hold = h;
                break;
            }
    }
    *emit_len = total - hold - from;
    /* The caller consumes *emit before the next push; the window keeps the
     * last `keep` bytes, which always include the held ones. */
    m->held = hold;
    m->len = total;
    return TSR_OK;
}

/* Moves the window's tail to the front once the caller used the emitted
 * bytes. */
static void stop_compact(stop_matcher *m) {
    if (m->len > m->keep) {
        memmove(m->buf, m->buf + m->len - m->keep, m->keep);
        m->len = m->keep;
    }
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

static bool is_stop_id(const tsr_eng_gen_params *p, int32_t id) {
    for (int64_t i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == id) return true;
    return false;
}

tsr_status tsr_eng_generate(tsr_eng_seq *seq, const int32_t *prompt, int64_t n_prompt,
                            const tsr_eng_gen_params *params, tsr_eng_gen_result *result,
                            tsr_error *err) {
    if (!seq || !prompt || !params || !result)
        return tsr_errorf(err, TSR_ERR_INVALID_ARG, "tsr_eng_generate: NULL argument");
    const tsr_eng_gen_params *p = params;
    memset(result, 0, sizeof *result);
    result->stop_id = -1;
    result->stop_string = -1;
    if (p->max_tokens <= 0 || n_prompt <= 0)
        return tsr_errorf(err, TSR_ERR_INVALID_ARG, "generate: %lld prompt tokens, max_tokens %lld",
                          (long long)n_prompt, (long long)p->max_tokens);
    if (p->n_stop_ids < 0 || (p->n_stop_ids > 0 && !p->stop_ids) || p->n_stop_strings < 0 ||
        (p->n_stop_strings > 0 && !p->stop_strings))
        return tsr_errorf(err, TSR_ERR_INVALID_ARG, "generate: bad stop lists");
    if (p->n_stop_strings > 0 && !p->detok)
        return tsr_errorf(err, TSR_ERR_INVALID_ARG,
                          "generate: stop strings need a detokenizer (the model has no tokenizer)");
    stop_matcher sm = {.stops = p->stop_strings, .n = p->n_stop_strings};
    for (int i = 0; i < sm.n; i++) {
        size_t sl = p->stop_strings[i] ? strlen(p->stop_strings[i]) : 0;
        if (sl == 0)
            return tsr_errorf(err, TSR_ERR_INVALID_ARG, "generate: stop string %d is empty", i);
        if (sl - 1 > sm.keep) sm.keep = sl - 1;
    }

    tsr_eng_ctx *ctx = seq->ctx;
    int64_t V = ctx->model->cfg.vocab_size;
    tsr_eng_sampler *sampler = NULL;
    tsr_status st = tsr_eng_sampler_create(&p->sampler, V, &sampler, err);
    if (st != TSR_OK) return st;
    float *logits = malloc((size_t)V * sizeof(float));
    int32_t *hist = malloc((size_t)(n_prompt + p->max_tokens) * sizeof(int32_t));
    sm.cap = 4 * sm.keep + 256;
    sm.buf = sm.n > 0 ? malloc(sm.cap) : NULL;
    if (!logits || !hist || (sm.n > 0 && !sm.buf)) {
        st = tsr_errorf(err, TSR_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    memcpy(hist, prompt, (size_t)n_prompt * sizeof(int32_t));
    int64_t n_hist = n_prompt;

    double t0 = now_seconds();
    st = tsr_eng_prefill(seq, prompt, n_prompt, logits, err);
    if (st != TSR_OK) goto done;
    double t1 = now_seconds();
    result->n_prompt = n_prompt;
    result->prompt_seconds = t1 - t0;
    result->finish = TSR_ENG_FINISH_LENGTH;
    for (;;) {
        int32_t tok;
        st = tsr_eng_sampler_sample(sampler, logits, hist, n_hist, &tok, err);
        if (st != TSR_OK) break;
        if (is_stop_id(p, tok)) {
            result->finish = TSR_ENG_FINISH_STOP;
            result->stop_id = tok;
            break;
        }
        hist[n_hist++] = tok;
        const char *text = NULL;
        size_t len = 0;
        if (p->detok) {
            st = p->detok(p->detok_user, tok, &text, &len, err);
            if (st != TSR_OK) break;
        }
        /* The last token releases every held-back byte. */
        bool last = result->n_generated + 1 == p->max_tokens ||
                    tsr_eng_seq_len(seq) >= ctx->max_seq_tokens;
        int hit = -1;
        if (sm.n > 0) {
            st = stop_push(&sm, text, len, last, &text, &len, &hit, err);
            if (st != TSR_OK) break;
        }
        result->n_generated++;
        bool go = p->on_token ? p->on_token(p->on_token_user, tok, text, len) : true;
        if (hit >= 0) {
            result->finish = TSR_ENG_FINISH_STOP;
            result->stop_string = hit;
            break;
        }
        if (sm.n > 0) stop_compact(&sm);
        if (!go) {
            result->finish = TSR_ENG_FINISH_ABORT;
            break;
        }
        if (last) break;
        st = tsr_eng_decode(seq, tok, logits, err);
        if (st != TSR_OK) break;
        result->n_decoded++;
    }
    result->gen_seconds = now_seconds() - t1;
done:
    free(sm.buf);
    free(hist);
    free(logits);
    tsr_eng_sampler_free(sampler);
    return st;
}
