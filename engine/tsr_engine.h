/* tsr_engine.h — the contract of Tessera's engine module.
 *
 * The engine turns a model directory (Hugging Face layout: config.json plus
 * safetensors shards) into a runnable backbone. This header currently holds
 * the typed model configuration and the checkpoint inspector; the loader,
 * forward pass and KV cache arrive with their own issues.
 *
 * Families: DeepSeek V2 (MLA, softmax routing), V3 (MLA, sigmoid +
 * bias routing, FP8 blocks), V3.2 (V3 + DSA lightning indexer), V4 (shared
 * KV MQA with sliding / compressed layers, mHC, FP4 experts) and Llama
 * (dense GQA, the small-model baseline).
 */
#ifndef TSR_ENGINE_H
#define TSR_ENGINE_H

#include "tsr_core.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Model configuration (config.json)                                        */
/* ------------------------------------------------------------------------ */

typedef enum tsr_eng_family {
    TSR_ENG_DEEPSEEK_V2 = 0, /* model_type "deepseek_v2" */
    TSR_ENG_DEEPSEEK_V3,     /* "deepseek_v3" */
    TSR_ENG_DEEPSEEK_V32,    /* "deepseek_v32" */
    TSR_ENG_DEEPSEEK_V4,     /* "deepseek_v4" */
    TSR_ENG_LLAMA,           /* "llama" */
    TSR_ENG_FAMILY_COUNT
} tsr_eng_family;

/* Router score function (config scoring_func). */
typedef enum tsr_eng_scoring {
    TSR_ENG_SCORE_SOFTMAX = 0,
    TSR_ENG_SCORE_SIGMOID,
    TSR_ENG_SCORE_SQRTSOFTPLUS, /* sqrt(softplus(x)), V4 */
} tsr_eng_scoring;

/* Expert selection (config topk_method). */
typedef enum tsr_eng_topk_method {
    TSR_ENG_TOPK_GREEDY = 0,    /* plain top-k of the scores (V2-Lite) */
    TSR_ENG_TOPK_GROUP_LIMITED, /* "group_limited_greedy": group max (V2) */
    TSR_ENG_TOPK_NOAUX_TC,      /* bias-corrected, top-2-sum groups (V3+) */
} tsr_eng_topk_method;

/* Largest num_hidden_layers (and compress_ratios length) accepted. */
#define TSR_ENG_MAX_LAYERS 512

/* Every field carries its HF config.json name. Sizes are element counts.
 * Fields that do not apply to the family are 0 / false. */
/* engram_config: the Engram n-gram memory (DEEPSEEK.md §6; keys as
 * deepseek-ai/Engram's EngramConfig). */
/* Largest max_ngram_size accepted (upstream uses 3). */
#define TSR_ENGRAM_MAX_NGRAM 8

typedef struct tsr_engram_config {
    bool present;           /* config.json has engram_config */
    int64_t max_ngram_size; /* N: orders 2..N; also the conv dilation */
    int64_t n_embed_per_ngram;
    int64_t n_head_per_ngram; /* tables per order; divides n_embed_per_ngram */
    int64_t kernel_size;      /* causal conv taps */
    int64_t pad_id;           /* raw token id hashed (compressed) before position 0 */
    int64_t seed;             /* checkpoint-writing only (multipliers are tensors) */
    /* engram_vocab_size: table-size budget per order 2..N (checkpoint-writing
     * only: the primes are tensors). */
    int64_t vocab_size[TSR_ENGRAM_MAX_NGRAM - 1];
    int n_layer_ids;
    int32_t layer_ids[TSR_ENG_MAX_LAYERS]; /* distinct, each in [0, num_hidden_layers) */
} tsr_engram_config;

typedef struct tsr_eng_config {
    tsr_eng_family family;
    char model_type[32];

    /* Shapes shared by every family. */
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size; /* dense FFN inner dim (dense layers, Llama) */
    int64_t num_hidden_layers; /* backbone layers, MTP layers not included */
    int64_t num_attention_heads;
    int64_t num_key_value_heads; /* Llama GQA; DeepSeek MLA keeps = heads */
    int64_t head_dim;            /* Llama and V4 (512); MLA uses nope+rope */
    int64_t max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    bool tie_word_embeddings;

    /* MoE (DeepSeek). */
    int64_t moe_intermediate_size; /* routed and shared expert inner dim */
    int64_t n_routed_experts;
    int64_t n_shared_experts;      /* shared FFN inner = n_shared · moe_inter */
    int64_t num_experts_per_tok;   /* routed experts active per token (k) */
    int64_t n_group;               /* expert groups for group-limited routing */
    int64_t topk_group;            /* groups kept */
    int64_t moe_layer_freq;        /* every moe_layer_freq-th layer is MoE */
    int64_t first_k_dense_replace; /* the first k layers use the dense FFN */
    double routed_scaling_factor;
    bool norm_topk_prob;
    tsr_eng_scoring scoring_func;
    tsr_eng_topk_method topk_method;

    /* MLA (V2/V3/V3.2). q_lora_rank 0: plain q_proj (V2-Lite). */
    int64_t q_lora_rank; /* also V4 (wq_a output) */
    int64_t kv_lora_rank;
    int64_t qk_nope_head_dim;
    int64_t qk_rope_head_dim; /* also V4: the trailing rope dims of head_dim */
    int64_t v_head_dim;

    /* rope_scaling {"type": "yarn", ...}; yarn false when absent or null. */
    struct {
        bool yarn;
        double factor;
        int64_t original_max_position_embeddings;
        double beta_fast, beta_slow;
        double mscale, mscale_all_dim;
    } rope_scaling;

    /* Multi-token prediction layers in the checkpoint; never loaded. */
    int64_t num_nextn_predict_layers;

    /* quantization_config: block-FP8 weights ("quant_method": "fp8"). */
    struct {
        bool fp8;
        int64_t block_n, block_k; /* weight_block_size [out, in], 128×128 */
        bool scale_ue8m0;         /* scale_fmt "ue8m0": power-of-two scales */
    } quant;

    /* Lightning indexer: V3.2 DSA and V4 CSA layers. */
    int64_t index_n_heads;
    int64_t index_head_dim;
    int64_t index_topk;

    /* V4. */
    int64_t hc_mult; /* mHC residual streams */
    int64_t hc_sinkhorn_iters;
    double hc_eps;
    /* compress_ratios[i] for layer i: 0 sliding window only, 4 CSA, any
     * other m ≥ 2 HCA (real checkpoints use 128); entries
     * past num_hidden_layers describe MTP layers (real configs ship 44 for
     * 43 layers). */
    int n_compress_ratios;
    int32_t compress_ratios[TSR_ENG_MAX_LAYERS];
    int64_t sliding_window;
    int64_t o_groups;        /* grouped output projection: groups */
    int64_t o_lora_rank;     /* and per-group rank */
    int64_t num_hash_layers; /* first layers route by tid2eid[token] */
    double swiglu_limit;     /* clamp of expert gate/up; 0 = none */
    double compress_rope_theta;
    bool expert_fp4; /* expert_dtype "fp4": e2m1 experts + ue8m0 */
    /* Every V4 attention has a learnable per-head sink (attn.attn_sink
     * [heads] f32); it is a tensor, with no config key. */

    /* Optional sub-configurations: presence only, for now. */
    bool has_vision_config, has_audio_config, has_image_gen_config, has_speech_gen_config;
    tsr_engram_config engram; /* engram.present when config.json has one */
} tsr_eng_config;

/* Largest config.json read. */
#define TSR_ENG_CONFIG_MAX_BYTES (4u * 1024u * 1024u)

/* Parses json[0..len) (need not be NUL-terminated). source names the file
 * in messages. Every error names the source and the field. */
tsr_status tsr_eng_config_parse(const char *json, size_t len, const char *source,
                                tsr_eng_config *cfg, tsr_error *err);
/* Reads and parses MODEL_DIR/config.json: the backbone config, which for a
 * Janus-Pro (multi_modality) or DeepSeek-VL2 (deepseek_vl_v2) checkpoint
 * is its language_config (has_vision_config from the top level). */
tsr_status tsr_eng_config_load(const char *model_dir, tsr_eng_config *cfg, tsr_error *err);

const char *tsr_eng_family_name(tsr_eng_family family); /* "deepseek_v3", ... */
/* True when layer i (0-based, backbone) uses a routed-expert FFN. */
bool tsr_eng_layer_is_moe(const tsr_eng_config *cfg, int64_t layer);

/* ------------------------------------------------------------------------ */
/* Inspect: what a model directory holds                                    */
/* ------------------------------------------------------------------------ */

/* Parameter counting rules (shared with tools/reference/make_tiny_checkpoint.py):
 * - a float tensor counts numel parameters; a packed FP4 weight (I8/U8
 *   `X.weight` with an F8_E8M0/U8 `X.scale` of [out, 2·in_bytes/32]) counts
 *   2 per byte and is reported as fp4_e2m1;
 * - quantisation scales (`X.weight_scale_inv`, `X.scale` of an FP8/FP4
 *   `X.weight`) and integer tables (tid2eid) are bytes, not parameters;
 * - active parameters per token = every non-MTP parameter, except that each
 *   MoE layer's routed experts count as num_experts_per_tok × one expert. */

typedef struct tsr_eng_dtype_stat {
    int64_t params;
    int64_t bytes;
    int64_t tensors;
} tsr_eng_dtype_stat;

typedef struct tsr_eng_inspect {
    tsr_eng_config cfg;
    int64_t n_tensors;
    int64_t layers_dense, layers_moe;               /* backbone layers by FFN kind */
    int64_t layers_sliding, layers_csa, layers_hca; /* V4 attention kinds */
    int64_t mtp_layers;                             /* MTP layers present in the files */
    int64_t params_total;                           /* every parameter in the files */
    int64_t params_model;                           /* without MTP */
    int64_t params_mtp;
    int64_t params_active; /* per token, without MTP (nor vision / image generation) */
    int64_t params_routed; /* routed experts, without MTP */
    /* Vision-language checkpoints: the vision tower, the projector (with
     * VL2's image_newline / view_seperator) and Janus' image-generation
     * tensors (gen_*); counted in total and model, not in active. */
    int64_t params_vision_tower, params_projector, params_image_gen;
    int64_t scale_bytes;   /* quantisation scales */
    int64_t table_bytes;   /* integer tables (tid2eid) */
    int64_t tensor_bytes;  /* sum of tensor payloads */
    int64_t file_bytes;    /* shard files on disk (mapped) */
    int64_t n_files;
    /* KV cache: bytes that grow per 1024 tokens (all layers, bf16 values)
     * and the fixed part (V4 sliding windows). kv_values_per_token is the
     * per-token value count summed over layers. */
    int64_t kv_values_per_token_layer; /* MLA 576; V4: head_dim per window entry */
    double kv_bytes_per_1k;
    int64_t kv_fixed_bytes;
    int64_t unexpected_tensors; /* tensors no rule of the family names */
    char first_unexpected[160];
    tsr_eng_dtype_stat by_dtype[TSR_DTYPE_COUNT]; /* FP4 under FP4_E2M1 */
} tsr_eng_inspect;

/* Reads the config and the safetensors of model_dir, checks that every
 * tensor the config implies is present with the right shape (a clear error
 * names the first missing or misshapen one) and fills out. */
tsr_status tsr_eng_inspect_dir(const char *model_dir, tsr_eng_inspect *out, tsr_error *err);
/* Human-readable report, or one JSON object. */
void tsr_eng_inspect_print(const tsr_eng_inspect *in, const char *model_dir, FILE *f);
void tsr_eng_inspect_print_json(const tsr_eng_inspect *in, const char *model_dir, FILE *f);

/* ------------------------------------------------------------------------ */
/* Model, sequences and sampling (DeepSeek V2/V3 backbone)                 */
/* ------------------------------------------------------------------------ */

/* Threading: a tsr_eng_model is immutable after load and may be shared by
 * any number of contexts; a tsr_eng_ctx and its sequences are driven by one
 * thread at a time. Dimension names: T tokens, D hidden_size, V vocab_size,
 * L num_hidden_layers. */

/* The immutable model: config, weights (zero-copy views into the mmapped
 * safetensors), rotary table. Shared by contexts. */
typedef struct tsr_eng_model tsr_eng_model;
/* Runtime for one driving thread: thread pool, paged KV block pool and the
 * forward scratch (all allocated at creation; no allocation per token). */
typedef struct tsr_eng_ctx tsr_eng_ctx;
/* One request: its KV block tables and position. */
typedef struct tsr_eng_seq tsr_eng_seq;

typedef struct tsr_eng_model_params {
    /* Longest sequence this model instance serves. As in DeepSeek's
     * reference, YaRN frequencies and the softmax mscale apply only when it
     * exceeds rope_scaling.original_max_position_embeddings. ≤ 0: the
     * config's max_position_embeddings. */
    int64_t max_seq_len;
} tsr_eng_model_params;

tsr_eng_model_params tsr_eng_model_params_default(void);
/* Loads a deepseek_v2 / deepseek_v3 / deepseek_v32 model directory. Errors name the file
 * and tensor (missing, wrong shape or dtype) or the unsupported model_type. */
tsr_status tsr_eng_model_load(const char *model_dir, const tsr_eng_model_params *params,
                              tsr_eng_model **out, tsr_error *err);
void tsr_eng_model_free(tsr_eng_model *model);
const tsr_eng_config *tsr_eng_model_config(const tsr_eng_model *model);
int64_t tsr_eng_model_max_seq_len(const tsr_eng_model *model);

typedef struct tsr_eng_ctx_params {
    int n_threads;          /* ≤ 0: every online CPU */
    int64_t kv_tokens;      /* KV capacity over all sequences of the context */
    int64_t max_seq_tokens; /* longest sequence (≤ model max_seq_len) */
    int64_t max_batch;      /* largest forward chunk; longer prompts are chunked */
} tsr_eng_ctx_params;

tsr_eng_ctx_params tsr_eng_ctx_params_default(void);
tsr_status tsr_eng_ctx_create(const tsr_eng_model *model, const tsr_eng_ctx_params *params,
                              tsr_eng_ctx **out, tsr_error *err);
void tsr_eng_ctx_free(tsr_eng_ctx *ctx);

/* Attention path. AUTO: the naive (per-head K/V) path for a chunk that
 * starts a sequence, the absorbed (latent) path otherwise — decode always
 * runs absorbed. ABSORBED forces the latent path everywhere. */
typedef enum tsr_eng_attn_path {
    TSR_ENG_ATTN_AUTO = 0,
    TSR_ENG_ATTN_ABSORBED,
} tsr_eng_attn_path;

typedef struct tsr_eng_seq_params {
    tsr_eng_attn_path attn_path;
} tsr_eng_seq_params;

tsr_eng_seq_params tsr_eng_seq_params_default(void);
tsr_status tsr_eng_seq_create(tsr_eng_ctx *ctx, const tsr_eng_seq_params *params,
                              tsr_eng_seq **out, tsr_error *err);
/* Returns the sequence's KV blocks to its context. */
void tsr_eng_seq_free(tsr_eng_seq *seq);
int64_t tsr_eng_seq_len(const tsr_eng_seq *seq); /* tokens in the cache */

/* Optional outputs of a forward call; any pointer may be NULL. Rows follow
 * the n input tokens. */
typedef struct tsr_eng_outputs {
    float *logits;      /* [n, V] logits of every token */
    float *last_logits; /* [V] logits of the last token */
    float *hidden;      /* [L, n, D] residual stream after each layer */
    float *final;       /* [n, D] after the final norm */
    /* V3.2: per layer, the key positions each token's attention kept
     * (ascending, −1 padded); KI = index_topk. Ignored by other families. */
    int32_t *index_topk; /* [L, n, KI] */
} tsr_eng_outputs;

/* Runs tokens[0..n) at positions seq_len..seq_len+n and appends them to the
 * sequence's cache. Fails (cache unchanged in length) on a token outside
 * the vocabulary, a full KV pool or a sequence longer than max_seq_tokens. */
tsr_status tsr_eng_forward(tsr_eng_seq *seq, const int32_t *tokens, int64_t n,
                           const tsr_eng_outputs *out, tsr_error *err);
/* Shorthands: prefill a prompt / decode one token, logits [V] of the last. */
tsr_status tsr_eng_prefill(tsr_eng_seq *seq, const int32_t *tokens, int64_t n, float *logits,
                           tsr_error *err);
tsr_status tsr_eng_decode(tsr_eng_seq *seq, int32_t token, float *logits, tsr_error *err);
/* Batched decode: one new token for each of n distinct sequences of one
 * context (n ≤ its max_batch), in one pass — the linear layers run once over
 * the n rows (GEMM), attention per sequence over its own cache, MoE groups
 * the rows by expert. logits [n, V] (may be NULL). Same result as n
 * tsr_eng_decode calls; on failure no sequence changes length. */
tsr_status tsr_eng_decode_batch(tsr_eng_seq *const *seqs, const int32_t *tokens, int64_t n,
                                float *logits, tsr_error *err);

/* Sampling: penalties, then greedy (temperature 0) or temperature, top-k,
 * min-p, top-p and a draw from the seeded generator. */
typedef struct tsr_eng_sampler_params {
    float temperature;        /* 0: greedy (argmax, lowest id on ties) */
    int64_t top_k;            /* ≤ 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off; drops p < min_p · p_max */
    float repetition_penalty; /* 1: off; CTRL/HF: logit>0 ? l/r : l·r */
    float presence_penalty;   /* 0: off; OpenAI: l −= penalty if seen */
    uint64_t seed;
} tsr_eng_sampler_params;

typedef struct tsr_eng_sampler tsr_eng_sampler;

tsr_eng_sampler_params tsr_eng_sampler_params_default(void);
tsr_status tsr_eng_sampler_create(const tsr_eng_sampler_params *params, int64_t vocab,
                                  tsr_eng_sampler **out, tsr_error *err);
void tsr_eng_sampler_free(tsr_eng_sampler *s);
/* Picks the next token from logits[V] (modified in place) given the tokens
 * seen so far (penalties apply to each distinct id once). */
tsr_status tsr_eng_sampler_sample(tsr_eng_sampler *s, float *logits, const int32_t *history,
                                  int64_t n_history, int32_t *token, tsr_error *err);

/* ------------------------------------------------------------------------ */
/* Generation loop                                                          */
/* ------------------------------------------------------------------------ */

/* Streaming detokenizer seam (matches tsr_tok_stream_push): the newly
 * completed text of id, possibly empty, valid until the next call. */
typedef tsr_status (*tsr_eng_detok_fn)(void *user, int32_t id, const char **text, size_t *len,
                                       tsr_error *err);
/* Called for every generated token that is not a stop token, with the text
 * that became final with it (held-back text that might start a stop string
 * is released later, text after a stop string never). Without a detokenizer
 * text is NULL and len 0. Return false to end generation (FINISH_ABORT). */
typedef bool (*tsr_eng_token_fn)(void *user, int32_t id, const char *text, size_t len);

typedef enum tsr_eng_finish {
    TSR_ENG_FINISH_STOP = 0, /* a stop token id or stop string */
    TSR_ENG_FINISH_LENGTH,   /* max_tokens, or the sequence reached max_seq_tokens */
    TSR_ENG_FINISH_ABORT,    /* the token callback returned false */
} tsr_eng_finish;

const char *tsr_eng_finish_name(tsr_eng_finish f); /* "stop", "length", "abort" */

typedef struct tsr_eng_gen_params {
    int64_t max_tokens; /* generated tokens, stop token excluded; > 0 */
    tsr_eng_sampler_params sampler;
    const int32_t *stop_ids; /* [n_stop_ids]: end before emitting these (e.g. EOS) */
    int64_t n_stop_ids;
    /* [n_stop_strings] NUL-terminated, non-empty; need a detokenizer. The
     * text ends before the first occurrence. */
    const char *const *stop_strings;
    int n_stop_strings;
    tsr_eng_detok_fn detok;
    void *detok_user;
    tsr_eng_token_fn on_token;
    void *on_token_user;
} tsr_eng_gen_params;

typedef struct tsr_eng_gen_result {
    tsr_eng_finish finish;
    int64_t n_prompt;    /* prompt tokens prefilled */
    int64_t n_generated; /* tokens passed to on_token (stop token excluded) */
    int64_t n_decoded;   /* decode steps run (the first token comes from the prefill;
                            a step that only produced the stop token counts) */
    int32_t stop_id;     /* the stop token, or -1 */
    int stop_string;     /* index of the matched stop string, or -1 */
    double prompt_seconds; /* prefill wall time */
    double gen_seconds;    /* from the first sampled token to the end */
} tsr_eng_gen_result;

tsr_eng_gen_params tsr_eng_gen_params_default(void); /* 256 tokens, greedy */
/* Prefills prompt[0..n_prompt) into seq (which may already hold a
 * conversation) and samples up to max_tokens tokens; penalties see this
 * call's prompt and generated tokens. Every token but the last sampled
 * is fed back, so afterwards seq holds the prompt and the generated tokens
 * except the final one. Allocates its buffers once per call. */
tsr_status tsr_eng_generate(tsr_eng_seq *seq, const int32_t *prompt, int64_t n_prompt,
                            const tsr_eng_gen_params *params, tsr_eng_gen_result *result,
                            tsr_error *err);

/* ------------------------------------------------------------------------ */
/* Sentence embeddings (embed.c)                                            */
/* ------------------------------------------------------------------------ */

/* The embedding of a token sequence t[0..n) is
 *     e = m / ‖m‖₂,   m = (1/n) · Σ_i final_i        (D floats, ‖e‖₂ = 1)
 * where final_i is token i's hidden state after the final norm
 * (tsr_eng_outputs.final) when t runs alone from position 0 — every
 * position counts, BOS included when the tokenizer adds one. Mean pooling
 * because these causal LMs have no trained pooling token (embed.c says
 * more). The tokens may be fed in pieces; pieces after the first run on
 * the absorbed attention path, so the vector may differ from a one-piece
 * feed in the last float bits (cosine > 0.99999), and a caller wanting
 * load-independent numbers feeds on a fixed grid. The tokens run on a
 * scratch sequence of the embedder (freed by finish): other sequences of
 * the context are untouched, but the scratch takes KV blocks of the pool
 * while an input is in progress. Driven by the context's thread. */
typedef struct tsr_eng_embedder tsr_eng_embedder;

/* max_chunk: the most tokens one feed takes (its final-row buffer). */
tsr_status tsr_eng_embedder_create(tsr_eng_ctx *ctx, int64_t max_chunk, tsr_eng_embedder **out,
                                   tsr_error *err);
/* Runs tokens[0..n), 1 ≤ n ≤ max_chunk, after those already fed. On
 * failure (a bad id, a full KV pool, longer than max_seq_tokens) the input
 * in progress is discarded. */
tsr_status tsr_eng_embedder_feed(tsr_eng_embedder *e, const int32_t *tokens, int64_t n,
                                 tsr_error *err);
int64_t tsr_eng_embedder_len(const tsr_eng_embedder *e); /* tokens fed so far */
/* Writes the embedding of every token fed since the last finish into
 * out[D], frees the scratch sequence and starts over. Fails when nothing
 * was fed. */
tsr_status tsr_eng_embedder_finish(tsr_eng_embedder *e, float *out, tsr_error *err);
void tsr_eng_embedder_free(tsr_eng_embedder *e);

/* ------------------------------------------------------------------------ */
/* Request scheduler: continuous batching behind the gateway (scheduler.c)  */
/* ------------------------------------------------------------------------ */

/* One engine thread owns a context and runs every admitted request: each
 * step it drops cancelled / expired requests (freeing their KV blocks at
 * once), admits waiting requests into free slots (FIFO, while their KV
 * reservation fits), runs prompt chunks of at most prefill_chunk tokens in
 * total (chunk boundaries are fixed multiples of prefill_chunk from the
 * start of each prompt, so a request's numbers do not depend on the load),
 * then one tsr_eng_decode_batch over every decoding sequence. A request
 * with n choices runs n sequences, each prefilled from the prompt (the KV
 * cache has no fork yet). Chat messages are rendered with the family's
 * template, output is detokenised by tsr_tok_stream, and the reasoning
 * budget follows reasoning_effort on templates with a thinking mode (V3.1,
 * V3.2, V4): effort low/medium/high renders the template's thinking form
 * (opts.thinking) with that budget; none, minimal or absent the no-think
 * form. Embedding requests take a slot too: their inputs run one after
 * another on a scratch sequence (tsr_eng_embedder), chunked on the same
 * prefill grid and budget, each answered with its vector as it completes;
 * usage counts every input token. A model directory with a vision_config
 * (Janus-Pro, DeepSeek-VL2, tessera layout) loads through tsr_vlm: a chat
 * request's image parts are decoded and run through the tower + projector
 * when it is staged, on the engine thread (tsr_vlm_prepare_chat with the
 * family's own prompt layout, each image part → the image tag + "\n"); its
 * expanded ids size the KV reservation and usage, and every prefill chunk
 * splices the image rows (tsr_eng_forward_spliced). A bad image, the image
 * tag typed in text, or image parts sent to a model without vision_config
 * fail the request with INVALID_ARGUMENT (400). Gateway threads only
 * enqueue (submit never blocks on compute). */
struct tsr_gw_backend;
typedef struct tsr_sched tsr_sched;

typedef struct tsr_sched_params {
    int parallel;          /* requests running at once (the gateway's max_running) */
    int max_queue;         /* requests waiting for a slot; beyond: TSR_ERR_LIMIT */
    int max_n;             /* choices per request (the gateway's limits.max_n) */
    int n_threads;         /* core thread pool, ≤ 0: every online CPU */
    int64_t ctx_tokens;    /* longest sequence, prompt + completion */
    int64_t kv_tokens;     /* KV pool over all sequences; ≤ 0: parallel · ctx_tokens */
    int64_t prefill_chunk; /* prompt tokens per step (and per chunk) */
    /* tsr_chat_family_from_name name; NULL: tsr_sched_detect_chat_template */
    const char *chat_template;
} tsr_sched_params;

/* parallel 4, max_queue 32, max_n 4, ctx 4096, prefill_chunk 128. */
tsr_sched_params tsr_sched_params_default(void);
/* Loads model_dir (config.json, safetensors, tokenizer.json; end-of-sequence
 * ids from config.json eos_token_id and tokenizer_config.json eos_token),
 * creates the context and starts the engine thread. A directory without
 * tokenizer.json fails with TSR_ERR_NOT_FOUND naming the file. */
tsr_status tsr_sched_create(const char *model_dir, const tsr_sched_params *params,
                            tsr_sched **out, tsr_error *err);
/* The chat template a model directory is served with when none is named.
 * V3.1 shares model_type deepseek_v3 with V3, so the directory's
 * tokenizer_config.json decides: a chat_template (a string, or the
 * "default" entry of a list of named templates) that uses both the
 * is_last_user and thinking variables is DeepSeek-V3.1's hybrid template
 * ("deepseek_v31"). Otherwise (no file, no template, anything else) the
 * family's: deepseek_v3 for V2/V3, deepseek_v32, deepseek_v4, plain for
 * Llama. Returns a tsr_chat_family_from_name name. */
const char *tsr_sched_detect_chat_template(const char *model_dir, tsr_eng_family family);
/* The gateway backend interface of s (submit + caps: text, embeddings). */
void tsr_sched_backend(tsr_sched *s, struct tsr_gw_backend *out);
/* Stops the engine thread and frees everything; requests still held are
 * released. Call after tsr_gw_server_stop. */
void tsr_sched_free(tsr_sched *s);

/* ------------------------------------------------------------------------ */
/* Embedding splice for media spans (forward.c)                             */
/* ------------------------------------------------------------------------ */

/* Vision-language models feed image features as input embeddings: the
 * prompt holds a run of placeholder ids (Janus-Pro: 576 × <image_placeholder>
 * between <begin_of_image> / <end_of_image>; DeepSeek-VL2: the tile layout's
 * run of <image>; tessera-tiny: 64 × <｜image｜>) whose embedding rows are
 * replaced, in order, by the projector's output (upstream
 * prepare_inputs_embeds: inputs_embeds[images_seq_mask] = image embeds).
 * Everything else about those positions is unchanged: they take KV cache
 * rows and positions like any token, and the placeholder id still reaches
 * the id-driven parts of the graph (V4 hash routing, Engram n-grams). */
typedef struct tsr_eng_embed_span {
    /* First row of the call's tokens the span replaces. Rows of the span
     * outside [0, n) are ignored, so a caller that prefills in chunks passes
     * the same spans shifted by −(chunk start) to every chunk. */
    int64_t start;
    int64_t n_rows;
    const float *rows; /* [n_rows, D] f32, read during the call only */
} tsr_eng_embed_span;

/* tsr_eng_forward with the embedding rows of spans[0..n_spans) in place of
 * embed[tokens[i]] (every family). Spans must not overlap and need
 * n_rows > 0; tokens under a span must still be valid ids. */
tsr_status tsr_eng_forward_spliced(tsr_eng_seq *seq, const int32_t *tokens, int64_t n,
                                   const tsr_eng_embed_span *spans, int64_t n_spans,
                                   const tsr_eng_outputs *out, tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif /* TSR_ENGINE_H */
