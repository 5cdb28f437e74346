/* test_generate.c — batched decode and the generation loop on the tiny V3
 * checkpoint (tests/golden/deepseek_v3): a batch of sequences with
 * different prompt lengths gives the logits and greedy continuations of
 * each sequence run alone (V3, V3.2, Llama); tsr_eng_generate reproduces the golden greedy
 * run and ends on stop ids, stop strings (over a fake detokenizer, matches
 * spanning tokens), max_tokens and an aborting callback. */
#include "engine_internal.h"
#include "tsr_test.h"

#include <stdlib.h>
#include <string.h>

#define GREEDY 64

typedef struct fixture {
    tsr_st_model *golden;
    int32_t ids[256];
    int64_t T;
    int32_t greedy[GREEDY];
    tsr_eng_model *model;
    tsr_eng_ctx *ctx;
    int64_t V;
} fixture;

/* The golden's max_seq_len is in its metadata; the V3 tiny config needs 64
 * + prompt tokens, so any value above that with YaRN off matches: the
 * reference used the config's own, which load picks by default. */
/* threads: 2 only where the threaded paths are the point — on a loaded
 * 2-core machine every pool job waits for a possibly descheduled worker. */
static bool fixture_open_named(fixture *f, const char *name, int64_t max_batch, int threads) {
    memset(f, 0, sizeof *f);
    f->golden = tsr_test_golden_open(name, "golden.safetensors");
    if (!f->golden) return false;
    f->T = tsr_test_golden_ids(f->golden, "input_ids", f->ids, 256);
    int64_t G = tsr_test_golden_ids(f->golden, "greedy_ids", f->greedy, GREEDY);
    TSR_CHECK_EQ_INT(G, GREEDY);
    if (f->T < 0 || G != GREEDY) return false;
    tsr_error err;
    TSR_CHECK_OK(
        tsr_eng_model_load(tsr_test_golden_path(name, "model"), NULL, &f->model, &err), &err);
    if (!f->model) return false;
    tsr_eng_ctx_params cp = tsr_eng_ctx_params_default();
    cp.n_threads = threads;
    cp.kv_tokens = 2048;
    cp.max_seq_tokens = 256;
    cp.max_batch = max_batch;
    TSR_CHECK_OK(tsr_eng_ctx_create(f->model, &cp, &f->ctx, &err), &err);
    f->V = tsr_eng_model_config(f->model)->vocab_size;
    return f->ctx != NULL;
}

static bool fixture_open(fixture *f, int64_t max_batch) {
    return fixture_open_named(f, "deepseek_v3", max_batch, 1);
}

static void fixture_close(fixture *f) {
    tsr_eng_ctx_free(f->ctx);
    tsr_eng_model_free(f->model);
    tsr_st_close(f->golden);
}

/* ------------------------------------------------------------------------ */
/* Batched decode                                                           */
/* ------------------------------------------------------------------------ */

#define NB 4
#define STEPS 12

/* Four prompts of lengths 3, 7, 12 and 16 (different suffixes of the golden
 * prompt): STEPS greedy steps decoded in one batch per step vs each
 * sequence alone. Every step's logits agree within 1e-5 and the tokens are
 * identical. */
static void check_decode_batch(const char *name, int threads) {
    fixture f;
    if (!fixture_open_named(&f, name, 64, threads)) return;
    static const int64_t len[NB] = {3, 7, 12, 16};
    int64_t V = f.V;
    float *solo = malloc((size_t)(NB * STEPS * V) * sizeof(float));
    int32_t solo_tok[NB][STEPS + 1];
    tsr_error err;
    /* Alone: prefill, then greedy decode. */
    for (int b = 0; b < NB; b++) {
        const int32_t *p = f.ids + f.T - len[b];
        tsr_eng_seq *seq = NULL;
        TSR_CHECK_OK(tsr_eng_seq_create(f.ctx, NULL, &seq, &err), &err);
        float *lg = solo + (int64_t)b * STEPS * V;
        TSR_CHECK_OK(tsr_eng_prefill(seq, p, len[b], lg, &err), &err);
        solo_tok[b][0] = tsr_test_argmax(lg, V);
        for (int s = 1; s < STEPS; s++) {
            TSR_CHECK_OK(tsr_eng_decode(seq, solo_tok[b][s - 1], lg + s * V, &err), &err);
            solo_tok[b][s] = tsr_test_argmax(lg + s * V, V);
        }
        tsr_eng_seq_free(seq);
    }
    /* Together: prefill each, then one decode_batch per step. */
    tsr_eng_seq *seqs[NB] = {0};
    float *first = malloc((size_t)V * sizeof(float));
    float *batch = malloc((size_t)(NB * V) * sizeof(float));
    int32_t tok[NB];
    double worst = 0.0;
    int agree = 0;
    for (int b = 0; b < NB; b++) {
        TSR_CHECK_OK(tsr_eng_seq_create(f.ctx, NULL, &seqs[b], &err), &err);
        TSR_CHECK_OK(tsr_eng_prefill(seqs[b], f.ids + f.T - len[b], len[b], first, &err), &err);
        tok[b] = tsr_test_argmax(first, V);
    }
    for (int s = 1; s < STEPS; s++) {
        TSR_CHECK_OK(tsr_eng_decode_batch(seqs, tok, NB, batch, &err), &err);
        for (int b = 0; b < NB; b++) {
            double re = tsr_test_max_rel(batch + b * V, solo + ((int64_t)b * STEPS + s) * V, V);
            if (re > worst) worst = re;
            tok[b] = tsr_test_argmax(batch + b * V, V);
            agree += tok[b] == solo_tok[b][s];
        }
    }
    for (int b = 0; b < NB; b++) TSR_CHECK_EQ_INT(tsr_eng_seq_len(seqs[b]), len[b] + STEPS - 1);
    printf("  %s batch of %d vs alone over %d steps: worst rel %.3g, tokens agree %d/%d\n", name, NB,
           STEPS - 1, worst, agree, NB * (STEPS - 1));
    TSR_CHECK_MSG(worst <= 1e-5, "batched logits rel %.3g", worst);
    TSR_CHECK_EQ_INT(agree, NB * (STEPS - 1));

    /* Errors leave every sequence's length unchanged. */
    tsr_eng_seq *dup[2] = {seqs[0], seqs[0]};
    TSR_CHECK(tsr_eng_decode_batch(dup, tok, 2, NULL, &err) == TSR_ERR_INVALID_ARG);
    TSR_CHECK(strstr(err.msg, "repeats") != NULL);
    int32_t bad[NB] = {1, 2, (int32_t)V, 3};
    TSR_CHECK(tsr_eng_decode_batch(seqs, bad, NB, NULL, &err) == TSR_ERR_INVALID_ARG);
    for (int b = 0; b < NB; b++) TSR_CHECK_EQ_INT(tsr_eng_seq_len(seqs[b]), len[b] + STEPS - 1);
    for (int b = 0; b < NB; b++) tsr_eng_seq_free(seqs[b]);
    /* All blocks came back. */
    TSR_CHECK_EQ_INT(tsr_kv_free_blocks(&f.ctx->kv, 0), f.ctx->kv.pools[0].n_blocks);
    free(first);
    free(batch);
    free(solo);
    fixture_close(&f);
}

static void test_decode_batch_equals_single(void) {
    check_decode_batch("deepseek_v3", 2);  /* threaded cores over mixed sequences */
    check_decode_batch("deepseek_v32", 1); /* DSA: per-sequence index keys and selections */
    check_decode_batch("llama", 1);        /* GQA */
}

static void test_decode_batch_limits(void) {
    fixture f;
    if (!fixture_open(&f, 2)) return;
    tsr_eng_seq *seqs[3] = {0};
    tsr_error err;
    for (int b = 0; b < 3; b++) {
        TSR_CHECK_OK(tsr_eng_seq_create(f.ctx, NULL, &seqs[b], &err), &err);
        TSR_CHECK_OK(tsr_eng_prefill(seqs[b], f.ids, 2, NULL, &err), &err);
    }
    int32_t tok[3] = {1, 2, 3};
    TSR_CHECK(tsr_eng_decode_batch(seqs, tok, 3, NULL, &err) == TSR_ERR_LIMIT);
    TSR_CHECK_OK(tsr_eng_decode_batch(seqs + 1, tok, 2, NULL, &err), &err);
    TSR_CHECK_EQ_INT(tsr_eng_seq_len(seqs[0]), 2);
    TSR_CHECK_EQ_INT(tsr_eng_seq_len(seqs[2]), 3);
    for (int b = 0; b < 3; b++) tsr_eng_seq_free(seqs[b]);
    fixture_close(&f);
}

/* ------------------------------------------------------------------------ */
/* Generation loop                                                          */
/* ------------------------------------------------------------------------ */

/* Fake detokenizer: id → "[id]". */
typedef struct detok {
    char buf[32];
} detok;

static tsr_status fake_detok(void *user, int32_t id, const char **text, size_t *len,
                             tsr_error *err) {
    detok *d = user;
    *len = (size_t)snprintf(d->buf, sizeof d->buf, "[%d]", id);
    *text = d->buf;
    return TSR_OK;
}

typedef struct sink {
    int32_t ids[256];
    int64_t n;
    char text[4096];
    size_t len;
    int64_t abort_after; /* 0: never */
} sink;

static bool on_token(void *user, int32_t id, const char *text, size_t len) {
    sink *s = user;
    s->ids[s->n++] = id;
    if (len > 0 && s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
    }
    s->text[s->len] = 0;
    return s->abort_after == 0 || s->n < s->abort_after;
}

static tsr_eng_gen_result gen(fixture *f, tsr_eng_gen_params p, sink *out) {
    tsr_eng_seq *seq = NULL;
    tsr_error err;
    tsr_eng_gen_result r;
    memset(&r, 0, sizeof r);
    TSR_CHECK_OK(tsr_eng_seq_create(f->ctx, NULL, &seq, &err), &err);
    p.on_token = on_token;
    p.on_token_user = out;
    TSR_CHECK_OK(tsr_eng_generate(seq, f->ids, f->T, &p, &r, &err), &err);
    /* Every sampled token but the last is in the cache. */
    TSR_CHECK_EQ_INT(tsr_eng_seq_len(seq), f->T + out->n - (r.finish == TSR_ENG_FINISH_STOP &&
                                                            r.stop_id >= 0 ? 0 : 1));
    tsr_eng_seq_free(seq);
    return r;
}

static void test_generate_greedy_matches_golden(void) {
    fixture f;
    if (!fixture_open(&f, 64)) return;
    tsr_eng_gen_params p = tsr_eng_gen_params_default();
    p.max_tokens = GREEDY;
    sink s = {0};
    tsr_eng_gen_result r = gen(&f, p, &s);
    TSR_CHECK_EQ_INT(r.finish, TSR_ENG_FINISH_LENGTH);
    TSR_CHECK_EQ_INT(r.n_prompt, f.T);
    TSR_CHECK_EQ_INT(r.n_generated, GREEDY);
    int agree = 0;
    while (agree < s.n && s.ids[agree] == f.greedy[agree]) agree++;
    /* Finish length: the last token needs no decode step after it. */
    TSR_CHECK_EQ_INT(r.n_decoded, GREEDY - 1);
    printf("  generate: %d/%d greedy tokens agree with the golden; prefill %.2f ms, "
           "%.0f decode steps/s\n", agree, GREEDY, 1e3 * r.prompt_seconds,
           (double)r.n_decoded / (r.gen_seconds > 0 ? r.gen_seconds : 1e-9));
    TSR_CHECK_EQ_INT(agree, GREEDY);
    TSR_CHECK(r.prompt_seconds > 0.0 && r.gen_seconds > 0.0);

    /* Stop id: the first occurrence of greedy[9] ends the run before it. */
    int32_t stop = f.greedy[9];
    int64_t first = 0;
    while (f.greedy[first] != stop) first++;
    p.stop_ids = &stop;
    p.n_stop_ids = 1;
    sink s2 = {0};
    r = gen(&f, p, &s2);
    TSR_CHECK_EQ_INT(r.finish, TSR_ENG_FINISH_STOP);
    TSR_CHECK_EQ_INT(r.stop_id, stop);
    TSR_CHECK_EQ_INT(r.n_generated, first);
    TSR_CHECK_EQ_INT(r.n_decoded, first); /* the step that produced the stop id counts */
    TSR_CHECK_EQ_INT(s2.n, first);

    /* An aborting callback. */
    p.n_stop_ids = 0;
    sink s3 = {.abort_after = 3};
    r = gen(&f, p, &s3);
    TSR_CHECK_EQ_INT(r.finish, TSR_ENG_FINISH_ABORT);
    TSR_CHECK_EQ_INT(r.n_generated, 3);
    fixture_close(&f);
}

static void test_generate_stop_strings(void) {
    fixture f;
    if (!fixture_open(&f, 64)) return;
    /* The full text of the golden greedy run under the fake detokenizer. */
    char full[4096];
    size_t flen = 0;
    for (int i = 0; i < GREEDY; i++)
        flen += (size_t)snprintf(full + flen, sizeof full - flen, "[%d]", f.greedy[i]);
    /* A stop string across the boundary of tokens 6 and 7: "<tail of 6>][<head of 7>". */
    char stop[64];
    snprintf(stop, sizeof stop, "%d][%d", f.greedy[6], f.greedy[7]);
    const char *at = strstr(full, stop);
    TSR_CHECK(at != NULL);
    if (!at) {
        fixture_close(&f);
        return;
    }
    size_t want_len = (size_t)(at - full);
    /* Tokens needed until the match is complete. */
    int64_t want_n = 0;
    for (size_t end = 0; end < want_len + strlen(stop); want_n++) {
        char t[32];
        end += (size_t)snprintf(t, sizeof t, "[%d]", f.greedy[want_n]);
    }
    detok d;
    const char *stops[2] = {"no such text", stop};
    tsr_eng_gen_params p = tsr_eng_gen_params_default();
    p.max_tokens = GREEDY;
    p.detok = fake_detok;
    p.detok_user = &d;
    p.stop_strings = stops;
    p.n_stop_strings = 2;
    sink s = {0};
    tsr_eng_gen_result r = gen(&f, p, &s);
    TSR_CHECK_EQ_INT(r.finish, TSR_ENG_FINISH_STOP);
    TSR_CHECK_EQ_INT(r.stop_string, 1);
    TSR_CHECK_EQ_INT(r.n_generated, want_n);
    TSR_CHECK_EQ_INT(s.len, want_len);
    TSR_CHECK(memcmp(s.text, full, want_len) == 0);
    printf("  stop string \"%s\": %lld tokens, text \"%s\"\n", stop, (long long)r.n_generated,
           s.text);

    /* "]]" never matches but every token's text ends with its first byte,
     * so "]" is always held back; the last token releases it: the text is
     * the whole run of max_tokens tokens. */
    const char *hold[1] = {"]]"};
    p.stop_strings = hold;
    p.n_stop_strings = 1;
    p.max_tokens = 10;
    sink s2 = {0};
    r = gen(&f, p, &s2);
    size_t ten = 0;
    for (int i = 0; i < 10; i++) {
        char t[32];
        ten += (size_t)snprintf(t, sizeof t, "[%d]", f.greedy[i]);
    }
    TSR_CHECK_EQ_INT(r.finish, TSR_ENG_FINISH_LENGTH);
    TSR_CHECK_EQ_INT(s2.len, ten);
    TSR_CHECK(memcmp(s2.text, full, ten) == 0);

    /* Stop strings without a detokenizer are refused. */
    p.detok = NULL;
    tsr_eng_seq *seq = NULL;
    tsr_error err;
    TSR_CHECK_OK(tsr_eng_seq_create(f.ctx, NULL, &seq, &err), &err);
    TSR_CHECK(tsr_eng_generate(seq, f.ids, f.T, &p, &r, &err) == TSR_ERR_INVALID_ARG);
    TSR_CHECK(strstr(err.msg, "detokenizer") != NULL);
    tsr_eng_seq_free(seq);
    fixture_close(&f);
}

/* Temperature sampling replays with the same seed and differs with another. */
static void test_generate_seeded_sampling(void) {
    fixture f;
    if (!fixture_open(&f, 64)) return;
    tsr_eng_gen_params p = tsr_eng_gen_params_default();
    p.max_tokens = 24;
    p.sampler.temperature = 1.5f;
    p.sampler.top_p = 0.95f;
    p.sampler.seed = 7;
    sink a = {0}, b = {0}, c = {0};
    gen(&f, p, &a);
    gen(&f, p, &b);
    p.sampler.seed = 8;
    gen(&f, p, &c);
    TSR_CHECK_EQ_INT(a.n, 24);
    TSR_CHECK(memcmp(a.ids, b.ids, sizeof a.ids) == 0);
    TSR_CHECK(memcmp(a.ids, c.ids, sizeof a.ids) != 0);
    fixture_close(&f);
}

int main(void) {
    TSR_RUN(test_decode_batch_equals_single);
    TSR_RUN(test_decode_batch_limits);
    TSR_RUN(test_generate_greedy_matches_golden);
    TSR_RUN(test_generate_stop_strings);
    TSR_RUN(test_generate_seeded_sampling);
    return tsr_test_finish();
}
