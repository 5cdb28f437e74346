/* tessera — the one binary: command-line entry points. */
#include "tsr_core.h"
#include "tsr_engine.h"
#include "tsr_gw.h"
#include "tsr_tok.h"
#include "tsr_vlm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(FILE *out) {
    fprintf(out, "usage: tessera <command> [options]\n"
                 "commands:\n"
                 "  inspect [--json] MODEL_DIR   check a model directory against its\n"
                 "                               config.json and describe it\n"
                 "  run -m MODEL_DIR (-p TEXT | --ids 1,2,3) [options]\n"
                 "                               generate from a prompt, streaming to stdout\n"
                 "  serve -m MODEL_DIR [options] OpenAI-compatible + native HTTP server\n"
                 "  ask -m MODEL_DIR -i IMAGE -p QUESTION [options]\n"
                 "                               answer a question about images (vision models)\n"
                 "  caption -m MODEL_DIR -i IMAGE [options]\n"
                 "                               describe an image (ask \"Describe the image.\")\n"
                 "  version                      print the version and CPU kernel ISA\n"
                 "run options:\n"
                 "  -n N                 max new tokens (default 128)\n"
                 "  --temp T             temperature, 0 = greedy (default 0)\n"
                 "  --top-k K  --top-p P  --min-p P\n"
                 "  --repeat-penalty R  --presence-penalty P\n"
                 "  --seed S             sampler seed (default 0)\n"
                 "  --stop TEXT          stop string (repeatable; needs tokenizer.json)\n"
                 "  --ignore-eos         do not stop at config.json's eos_token_id\n"
                 "  --print-ids          print generated token ids instead of text\n"
                 "  --ctx N              context length of the sequence (default 4096)\n"
                 "  --threads N          worker threads (default: every CPU)\n"
                 "ask / caption options:\n"
                 "  -i IMAGE             PNG, JPEG, WebP, GIF, BMP or TIFF (repeatable)\n"
                 "  -n N  --temp T  --seed S  --ctx N  --threads N   as for run\n"
                 "  --print-ids          print generated token ids instead of text\n"
                 "serve options:\n"
                 "  --host ADDR  --port P  (default 127.0.0.1:8080; port 0 = ephemeral)\n"
                 "  --unix PATH          also listen on a Unix socket\n"
                 "  --parallel N         requests decoded together (default 4)\n"
                 "  --max-queue N        requests waiting beyond them, then 429 (default 32)\n"
                 "  --api-key-file F     bearer keys, one per line (health stays public)\n"
                 "  --insecure           allow a non-loopback host without keys\n"
                 "  --model-id ID        the model name clients use (default: dir name)\n"
                 "  --chat-template NAME deepseek_v3, deepseek_v31, deepseek_v32, deepseek_v4,\n"
                 "                       plain (default: from tokenizer_config.json / model_type)\n"
                 "  --ctx N              context per sequence (default 4096)\n"
                 "  --threads N          compute threads (default: every CPU)\n");
    return out == stderr ? 2 : 0;
}

/* tessera inspect [--json] MODEL_DIR: exit 0 and the report on stdout, or
 * exit 1 and one error line on stderr. */
static int cmd_inspect(int argc, char **argv) {
    bool json = false;
    const char *dir = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "tessera inspect: unexpected argument '%s'\n", argv[i]);
            return usage(stderr);
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        fprintf(stderr, "tessera inspect: missing MODEL_DIR\n");
        return usage(stderr);
    }
    static tsr_eng_inspect info; /* large (the config holds per-layer arrays) */
    tsr_error err = {0};
    if (tsr_eng_inspect_dir(dir, &info, &err) != TSR_OK) {
        fprintf(stderr, "tessera inspect: %s\n", err.msg);
        return 1;
    }
    if (json)
        tsr_eng_inspect_print_json(&info, dir, stdout);
    else
        tsr_eng_inspect_print(&info, dir, stdout);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* run                                                                      */
/* ------------------------------------------------------------------------ */

#define RUN_MAX_STOPS 16
#define RUN_MAX_EOS 8

typedef struct run_opts {
    const char *model_dir, *prompt, *ids;
    int64_t max_tokens, ctx_tokens;
    int threads;
    bool print_ids, ignore_eos;
    const char *stops[RUN_MAX_STOPS];
    int n_stops;
    tsr_eng_sampler_params sampler;
} run_opts;

/* Strict number parsing: the whole argument must be the number. */
static bool parse_i64(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *v = x;
    return true;
}

static bool parse_f32(const char *s, float *v) {
    char *end;
    errno = 0;
    float x = strtof(s, &end);
    if (errno || end == s || *end) return false;
    *v = x;
    return true;
}

static int run_usage_error(const char *what, const char *arg) {
    fprintf(stderr, "tessera run: %s%s%s\n", what, arg ? " " : "", arg ? arg : "");
    return usage(stderr);
}

static int parse_run(int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 128;
    o->ctx_tokens = 4096;
    o->sampler = tsr_eng_sampler_params_default();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--print-ids")) { o->print_ids = true; continue; }
        if (!strcmp(a, "--ignore-eos")) { o->ignore_eos = true; continue; }
        if (i + 1 >= argc) return run_usage_error("missing value after", a);
        const char *v = argv[++i];
        int64_t n = 0;
        bool ok = true;
        if (!strcmp(a, "-m")) o->model_dir = v;
        else if (!strcmp(a, "-p")) o->prompt = v;
        else if (!strcmp(a, "--ids")) o->ids = v;
        else if (!strcmp(a, "-n")) ok = parse_i64(v, &o->max_tokens) && o->max_tokens > 0;
        else if (!strcmp(a, "--ctx")) ok = parse_i64(v, &o->ctx_tokens) && o->ctx_tokens > 0;
        else if (!strcmp(a, "--threads")) {
            ok = parse_i64(v, &n) && n >= 0 && n <= 1024;
            o->threads = (int)n;
        } else if (!strcmp(a, "--temp")) ok = parse_f32(v, &o->sampler.temperature);
        else if (!strcmp(a, "--top-k")) ok = parse_i64(v, &o->sampler.top_k);
        else if (!strcmp(a, "--top-p")) ok = parse_f32(v, &o->sampler.top_p);
        else if (!strcmp(a, "--min-p")) ok = parse_f32(v, &o->sampler.min_p);
        else if (!strcmp(a, "--repeat-penalty")) ok = parse_f32(v, &o->sampler.repetition_penalty);
        else if (!strcmp(a, "--presence-penalty")) ok = parse_f32(v, &o->sampler.presence_penalty);
        else if (!strcmp(a, "--seed")) {
            ok = parse_i64(v, &n);
            o->sampler.seed = (uint64_t)n;
        } else if (!strcmp(a, "--stop")) {
            ok = o->n_stops < RUN_MAX_STOPS && v[0];
            if (ok) o->stops[o->n_stops++] = v;
        } else return run_usage_error("unknown option", a);
        if (!ok) {
            fprintf(stderr, "tessera run: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!o->model_dir) return run_usage_error("missing -m MODEL_DIR", NULL);
    if (!o->prompt == !o->ids) return run_usage_error("give exactly one of -p TEXT and --ids", NULL);
    return 0;
}

/* "1,2,3" → ids (malloc'ed). */
static int parse_ids(const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 1;
    for (const char *c = s; *c; c++) cap += *c == ',';
    *ids = malloc((size_t)cap * sizeof **ids);
    *n = 0;
    if (!*ids) return 1;
    const char *c = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(c, &end, 10);
        if (errno || end == c || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "tessera run: --ids wants comma-separated token ids, got '%s'\n", s);
            return 2;
        }
        (*ids)[(*n)++] = (int32_t)v;
        if (!*end) return 0;
        c = end + 1;
    }
}

/* eos_token_id of config.json (a number or a list), as stop ids. */
static int read_eos(const char *dir, int32_t *eos, int max) {
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (tsr_read_file(path, TSR_ENG_CONFIG_MAX_BYTES, &text, &len, NULL) != TSR_OK) return 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    int n = 0;
    if (cJSON_IsNumber(e)) {
        eos[n++] = (int32_t)e->valuedouble;
    } else if (cJSON_IsArray(e)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, e)
            if (cJSON_IsNumber(x) && n < max) eos[n++] = (int32_t)x->valuedouble;
    }
    cJSON_Delete(root);
    return n;
}

/* Output: comma-separated ids (no tokenizer, or --print-ids), else text. */
typedef struct run_out {
    bool print_ids;
    int64_t n;
} run_out;

static tsr_status detok_push(void *user, int32_t id, const char **text, size_t *len,
                             tsr_error *err) {
    return tsr_tok_stream_push(user, id, text, len, err);
}

static bool print_token(void *user, int32_t id, const char *text, size_t len) {
    run_out *o = user;
    if (o->print_ids) printf(o->n ? ",%d" : "%d", id);
    else fwrite(text, 1, len, stdout);
    o->n++;
    fflush(stdout);
    return true;
}

/* The stderr summary of `run` and `ask`. The first generated token comes
 * from the prefill's logits, so the generation rate is decode steps (the one
 * that produced the stop token included) over the generation time. */
static void report_speed(const tsr_eng_gen_result *res) {
    double pt = res->prompt_seconds > 0 ? res->prompt_seconds : 1e-9;
    double gt = res->gen_seconds > 0 ? res->gen_seconds : 1e-9;
    fprintf(stderr,
            "prompt: %lld tokens in %.3f s (%.1f tok/s); generation: %lld tokens in %.3f s "
            "(%lld decode steps, %.1f steps/s); finish: %s\n",
            (long long)res->n_prompt, res->prompt_seconds, (double)res->n_prompt / pt,
            (long long)res->n_generated, res->gen_seconds, (long long)res->n_decoded,
            (double)res->n_decoded / gt, tsr_eng_finish_name(res->finish));
}

/* tessera run: exit 0 with the generation on stdout and timings on stderr,
 * 1 on a model or runtime error, 2 on bad usage. */
static int cmd_run(int argc, char **argv) {
    run_opts o;
    int rc = parse_run(argc, argv, &o);
    if (rc) return rc;
    tsr_error err = {0};
    tsr_eng_model *model = NULL;
    tsr_eng_ctx *ctx = NULL;
    tsr_eng_seq *seq = NULL;
    tsr_tok *tok = NULL;
    tsr_tok_ctx *tctx = NULL;
    tsr_tok_stream *stream = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    rc = 1;

    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", o.model_dir);
    FILE *tf = fopen(tok_path, "rb");
    if (tf) {
        fclose(tf);
        if (tsr_tok_load(tok_path, &tok, &err) != TSR_OK) goto fail;
    }
    if (o.prompt && !tok) {
        fprintf(stderr, "tessera run: model has no tokenizer.json; use --ids\n");
        return 2;
    }
    if (o.n_stops > 0 && !tok) {
        fprintf(stderr, "tessera run: --stop needs tokenizer.json, which the model lacks\n");
        return 2;
    }
    if (o.ids) {
        rc = parse_ids(o.ids, &ids, &n_ids);
        if (rc) goto done;
        rc = 1;
    } else {
        const int32_t *enc;
        size_t n_enc;
        if (tsr_tok_ctx_new(tok, &tctx, &err) != TSR_OK ||
            tsr_tok_encode(tctx, o.prompt, strlen(o.prompt), true, &enc, &n_enc, &err) != TSR_OK)
            goto fail;
        if (n_enc == 0) {
            fprintf(stderr, "tessera run: the prompt encodes to no tokens\n");
            goto done;
        }
        ids = malloc(n_enc * sizeof *ids);
        if (!ids) goto done;
        memcpy(ids, enc, n_enc * sizeof *ids);
        n_ids = (int64_t)n_enc;
    }

    if (tsr_eng_model_load(o.model_dir, NULL, &model, &err) != TSR_OK) goto fail;
    tsr_eng_ctx_params cp = tsr_eng_ctx_params_default();
    int64_t max_len = tsr_eng_model_max_seq_len(model);
    cp.n_threads = o.threads;
    cp.max_seq_tokens = o.ctx_tokens < max_len ? o.ctx_tokens : max_len;
    cp.kv_tokens = cp.max_seq_tokens;
    if (n_ids >= cp.max_seq_tokens) {
        fprintf(stderr, "tessera run: prompt of %lld tokens does not fit the context of %lld\n",
                (long long)n_ids, (long long)cp.max_seq_tokens);
        goto done;
    }
    if (tsr_eng_ctx_create(model, &cp, &ctx, &err) != TSR_OK ||
        tsr_eng_seq_create(ctx, NULL, &seq, &err) != TSR_OK)
        goto fail;

    int32_t eos[RUN_MAX_EOS];
    int n_eos = o.ignore_eos ? 0 : read_eos(o.model_dir, eos, RUN_MAX_EOS);
    run_out out = {.print_ids = o.print_ids || !tok};
    tsr_eng_gen_params gp = tsr_eng_gen_params_default();
    gp.max_tokens = o.max_tokens;
    gp.sampler = o.sampler;
    gp.stop_ids = eos;
    gp.n_stop_ids = n_eos;
    gp.stop_strings = o.stops;
    gp.n_stop_strings = o.n_stops;
    gp.on_token = print_token;
    gp.on_token_user = &out;
    if (tok && !out.print_ids) {
        if (tsr_tok_stream_new(tok, true, &stream, &err) != TSR_OK) goto fail;
        gp.detok = detok_push;
        gp.detok_user = stream;
    }
    tsr_eng_gen_result res;
    if (tsr_eng_generate(seq, ids, n_ids, &gp, &res, &err) != TSR_OK) {
        printf("\n");
        goto fail;
    }
    if (stream && res.stop_string < 0) { /* text held for UTF-8 completion */
        const char *rest;
        size_t rest_len;
        tsr_tok_stream_flush(stream, &rest, &rest_len);
        fwrite(rest, 1, rest_len, stdout);
    }
    printf("\n");
    fflush(stdout);
    report_speed(&res);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "tessera run: %s\n", err.msg);
    rc = 1;
done:
    tsr_tok_stream_free(stream);
    tsr_tok_ctx_free(tctx);
    tsr_tok_free(tok);
    tsr_eng_seq_free(seq);
    tsr_eng_ctx_free(ctx);
    tsr_eng_model_free(model);
    free(ids);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* serve                                                                    */
/* ------------------------------------------------------------------------ */

/* The gateway starts (not ready) before the model loads, so its backend
 * forwards to the scheduler once there is one; until then the gateway
 * answers 503 and never submits. */
typedef struct serve_backend {
    _Atomic(tsr_sched *) sched;
} serve_backend;

static tsr_status serve_submit(void *self, tsr_gw_request *r, tsr_error *err) {
    tsr_sched *s = atomic_load(&((serve_backend *)self)->sched);
    if (!s) return tsr_errorf(err, TSR_ERR_INTERNAL, "the model is still loading");
    tsr_gw_backend be;
    tsr_sched_backend(s, &be);
    return be.submit(be.self, r, err);
}

/* tessera serve: exit 0 after SIGINT/SIGTERM (drained), 1 on a start-up
 * error, 2 on bad usage. */
static int cmd_serve(int argc, char **argv) {
    tsr_gw_config cfg = tsr_gw_config_default();
    tsr_sched_params sp = tsr_sched_params_default();
    const char *dir = NULL, *model_id = NULL;
    cfg.port = 8080;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--insecure")) { cfg.insecure = true; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "tessera serve: missing value after %s\n", a);
            return usage(stderr);
        }
        const char *v = argv[++i];
        int64_t n = 0;
        bool ok = true;
        if (!strcmp(a, "-m")) dir = v;
        else if (!strcmp(a, "--host")) cfg.host = v;
        else if (!strcmp(a, "--unix")) cfg.unix_socket = v;
        else if (!strcmp(a, "--api-key-file")) cfg.api_key_file = v;
        else if (!strcmp(a, "--model-id")) model_id = v;
        else if (!strcmp(a, "--chat-template")) sp.chat_template = v;
        else if (!strcmp(a, "--port")) {
            ok = parse_i64(v, &n) && n >= 0 && n <= 65535;
            cfg.port = (uint16_t)n;
        }
        else if (!strcmp(a, "--parallel")) {
            ok = parse_i64(v, &n) && n >= 1 && n <= 256;
            sp.parallel = (int)n;
        }
        else if (!strcmp(a, "--max-queue")) {
            ok = parse_i64(v, &n) && n >= 0 && n <= 65536;
            sp.max_queue = (int)n;
        }
        else if (!strcmp(a, "--threads")) {
            ok = parse_i64(v, &n) && n >= 0 && n <= 1024;
            sp.n_threads = (int)n;
        }
        else if (!strcmp(a, "--ctx")) ok = parse_i64(v, &sp.ctx_tokens) && sp.ctx_tokens >= 2;
        else {
            fprintf(stderr, "tessera serve: unknown option %s\n", a);
            return usage(stderr);
        }
        if (!ok) {
            fprintf(stderr, "tessera serve: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "tessera serve: missing -m MODEL_DIR\n");
        return usage(stderr);
    }
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    FILE *tf = fopen(tok_path, "rb");
    if (!tf) {
        fprintf(stderr, "tessera serve: %s has no tokenizer.json; serving needs one\n", dir);
        return 1;
    }
    fclose(tf);
    char id_buf[128];
    if (!model_id) { /* the directory's base name */
        size_t end = strlen(dir);
        while (end > 1 && dir[end - 1] == '/') end--;
        size_t start = end;
        while (start > 0 && dir[start - 1] != '/') start--;
        snprintf(id_buf, sizeof id_buf, "%.*s", (int)(end - start), dir + start);
        model_id = id_buf;
    }
    const char *models[1] = {model_id};
    cfg.models = models;
    cfg.n_models = 1;
    cfg.models_created = (int64_t)time(NULL);
    cfg.max_running = sp.parallel;
    cfg.max_queue = sp.max_queue;
    sp.max_n = cfg.limits.max_n;

    /* Every thread started from here on inherits the blocked set, so the
     * signals reach sigwait below and nothing else. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The caps of tsr_sched_backend: image input for every model (a text
     * model answers image parts with a 400 naming the model). */
    serve_backend holder = {NULL};
    tsr_gw_backend be = {.self = &holder,
                         .submit = serve_submit,
                         .caps = TSR_GW_CAP_TEXT | TSR_GW_CAP_EMBED | TSR_GW_CAP_IMAGE_IN};
    tsr_gw_server *srv = NULL;
    tsr_sched *sched = NULL;
    tsr_error err = {0};
    if (tsr_gw_server_start(&cfg, &be, &srv, &err) != TSR_OK) {
        fprintf(stderr, "tessera serve: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "tessera serve: listening on http://%s:%u (loading %s)\n", cfg.host,
            (unsigned)tsr_gw_server_port(srv), dir);
    if (tsr_sched_create(dir, &sp, &sched, &err) != TSR_OK) {
        fprintf(stderr, "tessera serve: %s\n", err.msg);
        tsr_gw_server_stop(srv, 1.0);
        return 1;
    }
    atomic_store(&holder.sched, sched);
    tsr_gw_server_set_ready(srv, true);
    fprintf(stderr, "tessera serve: model '%s' ready (parallel %d, queue %d, context %lld)\n", model_id,
            sp.parallel, sp.max_queue, (long long)sp.ctx_tokens);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "tessera serve: %s, draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    tsr_gw_server_stop(srv, 10.0);
    tsr_sched_free(sched);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* ask / caption                                                            */
/* ------------------------------------------------------------------------ */

#define ASK_MAX_IMAGES 8

/* Decodes an image file with the gateway's default limits. */
static bool load_image(const char *cmd, const char *path, tsr_vis_image *img) {
    tsr_error err = {0};
    tsr_vis_decode_params dp = tsr_vis_decode_params_default();
    char *bytes = NULL;
    size_t n = 0;
    tsr_vis_fault fault = TSR_VIS_FAULT_NONE;
    if (tsr_read_file(path, dp.limits.max_file_bytes, &bytes, &n, &err) != TSR_OK ||
        tsr_vis_decode((const uint8_t *)bytes, n, &dp, img, &fault, &err) != TSR_OK) {
        fprintf(stderr, "tessera %s: %s: %s\n", cmd, path, err.msg);
        free(bytes);
        return false;
    }
    free(bytes);
    return true;
}

/* tessera ask / caption: exit 0 with the answer on stdout and timings on
 * stderr, 1 on a model, image or runtime error, 2 on bad usage. */
static int cmd_ask(int argc, char **argv, bool caption) {
    const char *cmd = caption ? "caption" : "ask";
    const char *model_dir = NULL, *question = caption ? "Describe the image." : NULL;
    const char *image_paths[ASK_MAX_IMAGES];
    int n_images = 0, threads = 0;
    int64_t max_tokens = 128, ctx_tokens = 4096, n = 0;
    bool print_ids = false;
    tsr_eng_sampler_params sp = tsr_eng_sampler_params_default();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--print-ids")) {
            print_ids = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tessera %s: missing value after %s\n", cmd, a);
            return usage(stderr);
        }
        const char *v = argv[++i];
        bool ok = true;
        if (!strcmp(a, "-m")) model_dir = v;
        else if (!strcmp(a, "-p") && !caption) question = v;
        else if (!strcmp(a, "-i")) {
            ok = n_images < ASK_MAX_IMAGES;
            if (ok) image_paths[n_images++] = v;
        } else if (!strcmp(a, "-n")) ok = parse_i64(v, &max_tokens) && max_tokens > 0;
        else if (!strcmp(a, "--ctx")) ok = parse_i64(v, &ctx_tokens) && ctx_tokens > 0;
        else if (!strcmp(a, "--temp")) ok = parse_f32(v, &sp.temperature);
        else if (!strcmp(a, "--seed")) {
            ok = parse_i64(v, &n);
            sp.seed = (uint64_t)n;
        } else if (!strcmp(a, "--threads")) {
            ok = parse_i64(v, &n) && n >= 0 && n <= 1024;
            threads = (int)n;
        } else {
            fprintf(stderr, "tessera %s: unknown option %s\n", cmd, a);
            return usage(stderr);
        }
        if (!ok) {
            fprintf(stderr, "tessera %s: bad value '%s' for %s\n", cmd, v, a);
            return 2;
        }
    }
    if (!model_dir || !n_images || !question) {
        fprintf(stderr, "tessera %s: needs -m MODEL_DIR, -i IMAGE%s\n", cmd,
                caption ? "" : " and -p QUESTION");
        return usage(stderr);
    }
    tsr_vis_image images[ASK_MAX_IMAGES] = {{0}};
    tsr_error err = {0};
    tsr_vlm *v = NULL;
    tsr_vlm_prompt p = {0};
    tsr_tok_stream *stream = NULL;
    int rc = 1;
    for (int i = 0; i < n_images; i++)
        if (!load_image(cmd, image_paths[i], &images[i])) goto done;
    tsr_vlm_params vp = tsr_vlm_params_default();
    vp.n_threads = threads;
    vp.ctx_tokens = ctx_tokens;
    if (tsr_vlm_load(model_dir, &vp, &v, &err) != TSR_OK ||
        tsr_vlm_prepare(v, images, n_images, question, &p, &err) != TSR_OK)
        goto fail;
    run_out out = {.print_ids = print_ids};
    tsr_eng_gen_params gp = tsr_eng_gen_params_default();
    gp.max_tokens = max_tokens;
    gp.sampler = sp;
    gp.stop_ids = tsr_vlm_stop_ids(v, &gp.n_stop_ids);
    gp.on_token = print_token;
    gp.on_token_user = &out;
    if (!print_ids) {
        if (tsr_tok_stream_new(tsr_vlm_tokenizer(v), true, &stream, &err) != TSR_OK) goto fail;
        gp.detok = detok_push;
        gp.detok_user = stream;
    }
    tsr_eng_gen_result res;
    if (tsr_vlm_generate(v, &p, &gp, &res, &err) != TSR_OK) {
        printf("\n");
        goto fail;
    }
    if (stream) {
        const char *rest;
        size_t rest_len;
        tsr_tok_stream_flush(stream, &rest, &rest_len);
        fwrite(rest, 1, rest_len, stdout);
    }
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "images: %d (%lld image tokens); ", n_images, (long long)p.n_rows);
    report_speed(&res);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "tessera %s: %s\n", cmd, err.msg);
    rc = 1;
done:
    tsr_tok_stream_free(stream);
    tsr_vlm_prompt_free(&p);
    tsr_vlm_free(v);
    for (int i = 0; i < n_images; i++)
        tsr_vis_image_free(&images[i]);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "version")) {
        printf("tessera 0.1.0 (kernels: %s)\n", tsr_isa_name(tsr_cpu_best_isa()));
        return 0;
    }
    if (!strcmp(argv[1], "inspect")) return cmd_inspect(argc, argv);
    if (!strcmp(argv[1], "run")) return cmd_run(argc, argv);
    if (!strcmp(argv[1], "serve")) return cmd_serve(argc, argv);
    if (!strcmp(argv[1], "ask")) return cmd_ask(argc, argv, false);
    if (!strcmp(argv[1], "caption")) return cmd_ask(argc, argv, true);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))
        return usage(stdout);
    fprintf(stderr, "tessera: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
