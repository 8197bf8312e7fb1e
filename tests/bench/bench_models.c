/*
 * bench_models: the speed figures of the four seed models, printed as
 * machine-readable lines that tests/bench/compare.sh joins with the same
 * figures from PyTorch (tests/bench/bench_torch.py). A standalone program (no
 * test framework): it prints figures and never fails on timing; it exits 1
 * only when an aim_ call or an allocation fails, or on a bad argument.
 *
 *   usage: bench_models --model mlp|binary|cnn|lstm|resbn|gru|gpt [--what all|train-only]
 *                       [--budget SECONDS] [--epoch-steps N] [--epoch-blocks N]
 *                       [--train-steps N]
 *
 * The seed models (as in examples/), Adam lr 1e-3 with the defaults:
 *   mlp     784 -> Dense 64 relu -> Dense 64 relu -> Dense 10, softmax cross-entropy
 *   binary  784 -> Dense 128 relu -> Dense 64 relu -> Dense 1 sigmoid, BCE
 *   cnn     1x28x28 -> Conv2D 32 3x3 relu -> MaxPool 2 -> Conv2D 64 3x3 relu
 *           -> MaxPool 2 -> Flatten -> Dense 64 relu -> Dense 10, softmax cross-entropy
 *   lstm    28x28 (time x features) -> LSTM hidden 128, 2 layers, last step
 *           -> Dense 10, softmax cross-entropy
 *   resbn   examples/residual_classifier.c --batchnorm, the batch-norm CNN of
 *           issue 14: 1x28x28 -> Conv 32 -> BN -> relu -> MaxPool 2 -> two
 *           residual blocks at 32 (Conv -> BN -> relu -> Conv -> BN, + x, relu)
 *           -> MaxPool 2 -> Conv 64 -> BN -> relu -> one block at 64
 *           -> GlobalAvgPool -> Dropout 0.5 -> Dense 10, softmax cross-entropy;
 *           every Conv 3x3 "same" without bias, BN with PyTorch's defaults
 *   gru     the lstm model with a GRU (hidden 128, 2 layers, last step) in
 *           place of the LSTM: the GRU training step of issue 14
 * on random inputs in [0, 1) and random labels from a fixed seed (8 batches,
 * cycled through by the steps), and
 *   gpt     a character GPT (GPT-2's pre-norm block), AdamW lr 1e-3, weight
 *           decay 0.01 (torch.optim.AdamW's defaults): T = 128 int32 ids in
 *           [0, 96) -> Embedding 96x128 -> + positional embedding ->
 *           4 blocks [x + causal Attention 4 heads (LayerNorm x)]
 *                    [x + Linear 512->128 (Linear 128->512 GELU (LayerNorm x))]
 *           -> LayerNorm -> Linear 128->96 per position; softmax
 *           cross-entropy per position (aim_model_loss_sparse with a label a
 *           position, the mean over the B·T positions); random ids, the
 *           labels the ids shifted by one, 8 batches cycled through.
 *
 * --what all (the default) prints, as "BENCH lib=aimodel model=M metric=K
 * value=V ..." lines (times are the median over the repetitions of one timed
 * call, CLOCK_MONOTONIC, after warm-up; min= gives the minimum):
 *   train_step_b32_ms, train_step_b128_ms  one training step (zero_grad,
 *       forward TRAIN, loss, backward, Adam step), one model per batch,
 *       compiled with that max_batch;
 *   epoch_s  a Fashion-MNIST epoch of 60000 images at batch 32 (1875 steps),
 *       EXTRAPOLATED from blocks of --epoch-steps back-to-back steps (median
 *       block); data loading and shuffling are not included;
 *   minflt_per_step_b32  minor page faults per training step over those
 *       blocks (getrusage ru_minflt), i.e. after warm-up;
 *   infer_b1_ms  aim_model_predict latency at batch 1 (workspace of max_batch 1);
 *   infer_b256_ms, infer_b256_img_per_s  aim_model_predict at batch 256;
 *   step_gflop_bB, sgemm_gflops_bB, train_gflops_bB, train_sgemm_frac_bB
 *       (B = 32, 128): the FLOPs of the GEMMs one training step issues (as
 *       src/ issues them: no dX for the first layer, no recurrent GEMM at
 *       t = 0), the cblas_sgemm rate on exactly those shapes called directly
 *       (same transposes, leading dimensions and call counts; hot caches), the
 *       step's rate (those FLOPs / the step's median) and the step's rate as a
 *       fraction of the sgemm rate. "#" lines give each shape.
 * gpt prints instead of the figures above (its step is measured at batch 16):
 *   train_step_b16_ms, train_tok_per_s_b16  the training step at batch 16 x
 *       context 128 (zero_grad, forward_ids TRAIN, loss_sparse, backward,
 *       AdamW step) and the positions it trains on per second;
 *   minflt_per_step_b16  minor page faults per step over the timed steps;
 *   step_gflop_b16 ... train_sgemm_frac_b16  as above, at batch 16;
 *   gen_full_tT_tok_per_s, gen_kv_tT_tok_per_s (T = 64, 256)  greedy
 *       generation at batch 1 with a model of context T (same layers, its
 *       own random weights): "full" runs aim_model_predict_ids over the whole
 *       T-position window for every new token (positions past the prefix
 *       hold stale ids, which causal attention never reads) and takes the
 *       logits of the last prefix position, so every token costs one full
 *       forward (timed a token at a time); "kv" feeds one position per call
 *       with aim_model_predict_step_ids (keys and values cached in the
 *       workspace), timed over whole sequences of T tokens from
 *       aim_workspace_reset_steps(), so its rate is the mean over positions
 *       0 .. T-1. A "#" line gives the largest difference between the two
 *       paths' logits on one sequence (a WARNING above 1e-3).
 * --what train-only builds the model, compiles it for batch 32 (gpt: 16), runs
 * --train-steps training steps and prints rss_start_kb (ru_maxrss before the
 * model is built) and peak_rss_kb (ru_maxrss at the end): the peak resident
 * memory of a process that only trains that model.
 * Both modes end with cpu_s, the CPU seconds the process used (all threads),
 * from which compare.sh tells how much CPU other processes took meanwhile.
 *
 * --threads N gives every model and workspace an aim_threadpool of N threads
 * (the library's own threads, splitting each batch); compare.sh runs it with
 * OPENBLAS_NUM_THREADS=1 then. The environment (OPENBLAS_CORETYPE,
 * OPENBLAS_NUM_THREADS) is only read and printed; compare.sh varies it from
 * outside.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, getrusage under -std=c11 */

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "aimodel.h"

#define BI(n) ((blasint)(n))

enum { POOL = 8, EPOCH_IMAGES = 60000, INFER_BATCH = 256 };
static const float LEARNING_RATE = 1e-3f;
static const uint64_t SEED = 20260101u;

typedef enum model_id { M_MLP, M_BINARY, M_CNN, M_LSTM, M_RESBN, M_GRU, M_GPT } model_id;
static const char *const MODEL_NAME[] = {"mlp", "binary", "cnn", "lstm", "resbn", "gru", "gpt"};

/* The gpt model: vocabulary, width, heads, blocks, the training context and
 * batch, and the contexts of the generation figures. */
enum {
    GPT_VOCAB = 96,
    GPT_EMBED = 128,
    GPT_HEADS = 4,
    GPT_BLOCKS = 4,
    GPT_CONTEXT = 128,
    GPT_BATCH = 16,
    GPT_GEN_SHORT = 64,
    GPT_GEN_LONG = 256
};
static const float GPT_WEIGHT_DECAY = 0.01f;
#define MODEL_COUNT (sizeof MODEL_NAME / sizeof MODEL_NAME[0])

static model_id g_model;

/* ---- failure, memory, time ------------------------------------------------ */

static void check(aim_status st, const char *what, const char *detail) {
    if (st == AIM_OK) return;
    fprintf(stderr, "bench_models: %s failed: %s%s%s\n", what, aim_status_str(st), detail && *detail ? ": " : "",
            detail ? detail : "");
    exit(1);
}
#define CHECK(call, detail) check((call), #call, (detail))

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "bench_models: out of memory allocating %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}

/* Zeroed, 64-byte aligned floats, as the library aligns its own buffers. */
static float *falloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63u) / 64u * 64u;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "bench_models: out of memory allocating %zu floats\n", n);
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

/* The library's own threads: --threads N gives every model and workspace a
 * pool of N (1: none; compare.sh then runs OpenBLAS with one thread). */
static aim_threadpool *g_pool = NULL;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    double med, min; /* seconds */
    size_t n;
} stats;

static stats summarize(double *s, size_t n) {
    qsort(s, n, sizeof *s, cmp_double);
    stats r = {n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]), s[0], n};
    return r;
}

static long maxrss_kb(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* CPU seconds (user + system) of this process, all threads, so far. */
static double cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static long minflt(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : -1;
}

/* The 1-minute load average, or -1 where unknown: other processes on the
 * CPUs inflate the medians. */
static double loadavg1(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

/* ---- output ---------------------------------------------------------------- */

static void bench_line(const char *metric, double value, const char *extra) {
    printf("BENCH lib=aimodel model=%s metric=%s value=%.6g%s%s\n", MODEL_NAME[g_model], metric, value,
           extra && *extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

/* A time metric in milliseconds, with its minimum and repetition count. */
static void bench_ms(const char *metric, stats s) {
    char extra[96];
    snprintf(extra, sizeof extra, "min=%.6g n=%zu", s.min * 1e3, s.n);
    bench_line(metric, s.med * 1e3, extra);
}

/* ---- the models -------------------------------------------------------------- */

/* resbn: a 3x3 "same" conv without bias, batch norm (PyTorch's defaults),
 * then relu unless `relu` is 0. */
static void resbn_conv(aim_model *m, size_t filters, int relu) {
    aim_conv2d_config cc;
    aim_batch_norm_config bc;
    CHECK(aim_conv2d_config_init(&cc, filters, 3, 3, AIM_ACT_IDENTITY), NULL);
    cc.padding = AIM_PAD_SAME;
    cc.use_bias = 0;
    CHECK(aim_model_add_conv2d(m, &cc), aim_model_last_error(m));
    CHECK(aim_batch_norm_config_init(&bc), NULL);
    CHECK(aim_model_add_batch_norm(m, &bc), aim_model_last_error(m));
    if (relu) CHECK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f), aim_model_last_error(m));
}

/* resbn: x -> relu(bn(conv(relu(bn(conv(x))))) + x), torchvision's BasicBlock. */
static void resbn_block(aim_model *m, size_t channels) {
    size_t skip, y;
    CHECK(aim_model_last_node(m, &skip), aim_model_last_error(m));
    resbn_conv(m, channels, 1);
    resbn_conv(m, channels, 0);
    CHECK(aim_model_last_node(m, &y), aim_model_last_error(m));
    const size_t sum[2] = {y, skip};
    CHECK(aim_model_add_add(m, sum, 2), aim_model_last_error(m));
    CHECK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f), aim_model_last_error(m));
}

/* gpt: a linear over the last axis with nn.Linear's init (the dense default is
 * Glorot); a GELU is fused into it, where PyTorch has an nn.GELU module. */
static void gpt_linear(aim_model *m, size_t units, aim_activation act) {
    aim_dense_config dc;
    CHECK(aim_dense_config_init(&dc, units, act), NULL);
    dc.init = AIM_INIT_PYTORCH;
    CHECK(aim_model_add_linear(m, &dc), aim_model_last_error(m));
}

static void gpt_layer_norm(aim_model *m) {
    aim_layer_norm_config lc;
    CHECK(aim_layer_norm_config_init(&lc), NULL);
    CHECK(aim_model_add_layer_norm(m, &lc), aim_model_last_error(m));
}

/* gpt: x -> x + f(x), f built by `branch` on the current node. */
static void gpt_residual(aim_model *m, void (*branch)(aim_model *)) {
    size_t skip, y;
    CHECK(aim_model_last_node(m, &skip), aim_model_last_error(m));
    branch(m);
    CHECK(aim_model_last_node(m, &y), aim_model_last_error(m));
    const size_t sum[2] = {skip, y};
    CHECK(aim_model_add_add(m, sum, 2), aim_model_last_error(m));
}

/* Causal self-attention on LayerNorm(x), as GPT-2's attention sub-block. */
static void gpt_attention(aim_model *m) {
    aim_attention_config ac;
    gpt_layer_norm(m);
    CHECK(aim_attention_config_init(&ac, GPT_HEADS), NULL);
    ac.causal = 1;
    CHECK(aim_model_add_attention(m, &ac), aim_model_last_error(m));
}

/* The MLP on LayerNorm(x): Linear E -> 4E with GELU, Linear 4E -> E. */
static void gpt_mlp(aim_model *m) {
    gpt_layer_norm(m);
    gpt_linear(m, 4 * GPT_EMBED, AIM_ACT_GELU);
    gpt_linear(m, GPT_EMBED, AIM_ACT_IDENTITY);
}

/* The gpt model of context T, not compiled: input T int32 ids, output
 * (T, vocab) logits. */
static aim_model *gpt_graph(size_t T) {
    aim_model *m = NULL;
    const size_t dims[1] = {T};
    aim_embedding_config ec;
    CHECK(aim_model_create(NULL, 1, dims, &m), NULL);
    CHECK(aim_model_set_input_dtype(m, 0, AIM_DTYPE_INT32), aim_model_last_error(m));
    CHECK(aim_embedding_config_init(&ec, GPT_VOCAB, GPT_EMBED), NULL);
    CHECK(aim_model_add_embedding(m, &ec), aim_model_last_error(m));
    CHECK(aim_model_add_positional_embedding(m, T), aim_model_last_error(m));
    for (size_t i = 0; i < GPT_BLOCKS; i++) {
        gpt_residual(m, gpt_attention);
        gpt_residual(m, gpt_mlp);
    }
    gpt_layer_norm(m);
    gpt_linear(m, GPT_VOCAB, AIM_ACT_IDENTITY);
    return m;
}

/* Compiles `m` for `max_batch` (seeded) and gives it the pool. */
static aim_model *compiled(aim_model *m, size_t max_batch) {
    aim_compile_config comp;
    CHECK(aim_compile_config_init(&comp), NULL);
    comp.max_batch = max_batch;
    comp.seed = SEED;
    CHECK(aim_model_compile(m, &comp), aim_model_last_error(m));
    if (g_pool) CHECK(aim_model_set_threadpool(m, g_pool), aim_model_last_error(m));
    return m;
}

static aim_model *build(model_id id, size_t max_batch) {
    aim_model *m = NULL;
    aim_dense_config dc;
    switch (id) {
    case M_MLP:
    case M_BINARY: {
        const size_t dims[1] = {784};
        CHECK(aim_model_create(NULL, 1, dims, &m), NULL);
        const size_t units[3] = {id == M_MLP ? 64u : 128u, 64u, id == M_MLP ? 10u : 1u};
        for (size_t i = 0; i < 3; i++) {
            CHECK(aim_dense_config_init(&dc, units[i],
                                        i < 2 ? AIM_ACT_RELU : (id == M_MLP ? AIM_ACT_IDENTITY : AIM_ACT_SIGMOID)),
                  NULL);
            CHECK(aim_model_add_dense(m, &dc), aim_model_last_error(m));
        }
        break;
    }
    case M_CNN: {
        const size_t dims[3] = {1, 28, 28};
        aim_conv2d_config cc;
        aim_pool2d_config pc;
        CHECK(aim_model_create(NULL, 3, dims, &m), NULL);
        CHECK(aim_conv2d_config_init(&cc, 32, 3, 3, AIM_ACT_RELU), NULL);
        CHECK(aim_model_add_conv2d(m, &cc), aim_model_last_error(m));
        CHECK(aim_pool2d_config_init(&pc, 2, 2), NULL);
        CHECK(aim_model_add_max_pool2d(m, &pc), aim_model_last_error(m));
        CHECK(aim_conv2d_config_init(&cc, 64, 3, 3, AIM_ACT_RELU), NULL);
        CHECK(aim_model_add_conv2d(m, &cc), aim_model_last_error(m));
        CHECK(aim_model_add_max_pool2d(m, &pc), aim_model_last_error(m));
        CHECK(aim_model_add_flatten(m), aim_model_last_error(m));
        CHECK(aim_dense_config_init(&dc, 64, AIM_ACT_RELU), NULL);
        CHECK(aim_model_add_dense(m, &dc), aim_model_last_error(m));
        CHECK(aim_dense_config_init(&dc, 10, AIM_ACT_IDENTITY), NULL);
        CHECK(aim_model_add_dense(m, &dc), aim_model_last_error(m));
        break;
    }
    case M_LSTM: {
        const size_t dims[2] = {28, 28};
        aim_lstm_config lc;
        CHECK(aim_model_create(NULL, 2, dims, &m), NULL);
        CHECK(aim_lstm_config_init(&lc, 128, 2), NULL);
        CHECK(aim_model_add_lstm(m, &lc), aim_model_last_error(m));
        CHECK(aim_dense_config_init(&dc, 10, AIM_ACT_IDENTITY), NULL);
        CHECK(aim_model_add_dense(m, &dc), aim_model_last_error(m));
        break;
    }
    case M_GRU: {
        const size_t dims[2] = {28, 28};
        aim_rnn_config rc;
        CHECK(aim_model_create(NULL, 2, dims, &m), NULL);
        CHECK(aim_rnn_config_init(&rc, 128, 2), NULL);
        CHECK(aim_model_add_gru(m, &rc), aim_model_last_error(m));
        CHECK(aim_dense_config_init(&dc, 10, AIM_ACT_IDENTITY), NULL);
        CHECK(aim_model_add_dense(m, &dc), aim_model_last_error(m));
        break;
    }
    case M_RESBN: {
        const size_t dims[3] = {1, 28, 28};
        aim_pool2d_config pc;
        CHECK(aim_model_create(NULL, 3, dims, &m), NULL);
        CHECK(aim_pool2d_config_init(&pc, 2, 2), NULL);
        resbn_conv(m, 32, 1); /* 32x28x28 */
        CHECK(aim_model_add_max_pool2d(m, &pc), aim_model_last_error(m));
        resbn_block(m, 32); /* 32x14x14 */
        resbn_block(m, 32);
        CHECK(aim_model_add_max_pool2d(m, &pc), aim_model_last_error(m));
        resbn_conv(m, 64, 1); /* 64x7x7 */
        resbn_block(m, 64);
        CHECK(aim_model_add_global_avg_pool2d(m), aim_model_last_error(m));
        CHECK(aim_model_add_dropout(m, 0.5f), aim_model_last_error(m));
        CHECK(aim_dense_config_init(&dc, 10, AIM_ACT_IDENTITY), NULL);
        CHECK(aim_model_add_dense(m, &dc), aim_model_last_error(m));
        break;
    }
    case M_GPT:
        m = gpt_graph(GPT_CONTEXT);
        break;
    }
    return compiled(m, max_batch);
}

/* A model, its optimizer and POOL batches of random data. */
typedef struct trainer {
    aim_model *m;
    aim_optimizer *opt;
    size_t batch, in_size, next;
    float *x;       /* POOL * batch * in_size; gpt: none */
    int32_t *ids;   /* gpt: POOL * batch * in_size ids; others: none */
    int32_t *label; /* POOL * batch; gpt: POOL * batch * in_size, a label a position */
    float *target;  /* POOL * batch, the labels as 0/1 floats for BCE */
} trainer;

/* gpt: POOL batches of random ids, each position's label the next id of the
 * same random stream (a language model's shifted targets); AdamW. */
static void gpt_trainer_init(trainer *t, size_t batch, aim_rng *rng) {
    const size_t T = t->in_size, n = POOL * batch * T;
    float *params;
    size_t count;
    aim_adam_config ac;
    CHECK(aim_model_parameters(t->m, &params, &count), aim_model_last_error(t->m));
    CHECK(aim_adam_config_init(&ac), NULL);
    ac.weight_decay = GPT_WEIGHT_DECAY;
    ac.decoupled = 1;
    CHECK(aim_adam_create(NULL, &ac, count, &t->opt), NULL);
    t->ids = xmalloc(n * sizeof *t->ids);
    t->label = xmalloc(n * sizeof *t->label);
    for (size_t s = 0; s < POOL * batch; s++) {
        uint64_t u;
        CHECK(aim_rng_below(rng, GPT_VOCAB, &u), NULL);
        for (size_t p = 0; p < T; p++) {
            t->ids[s * T + p] = (int32_t)u;
            CHECK(aim_rng_below(rng, GPT_VOCAB, &u), NULL);
            t->label[s * T + p] = (int32_t)u;
        }
    }
}

static void trainer_init(trainer *t, model_id id, size_t batch, aim_rng *rng) {
    memset(t, 0, sizeof *t);
    t->m = build(id, batch);
    t->batch = batch;
    t->in_size = aim_model_input_size(t->m);
    if (id == M_GPT) {
        gpt_trainer_init(t, batch, rng);
        return;
    }
    float *params;
    size_t n;
    CHECK(aim_model_parameters(t->m, &params, &n), aim_model_last_error(t->m));
    CHECK(aim_adam_create(NULL, NULL, n, &t->opt), NULL);
    t->x = falloc(POOL * batch * t->in_size);
    t->label = xmalloc(POOL * batch * sizeof *t->label);
    t->target = falloc(POOL * batch);
    for (size_t i = 0; i < POOL * batch * t->in_size; i++) CHECK(aim_rng_uniform(rng, &t->x[i]), NULL);
    const uint64_t classes = id == M_BINARY ? 2 : 10;
    for (size_t i = 0; i < POOL * batch; i++) {
        uint64_t u;
        CHECK(aim_rng_below(rng, classes, &u), NULL);
        t->label[i] = (int32_t)u;
        t->target[i] = (float)u;
    }
}

static void trainer_free(trainer *t) {
    aim_optimizer_free(t->opt);
    aim_model_free(t->m);
    free(t->x);
    free(t->ids);
    free(t->label);
    free(t->target);
}

static void train_step(trainer *t) {
    const size_t B = t->batch, k = t->next;
    t->next = (t->next + 1) % POOL;
    aim_model *m = t->m;
    float loss;
    CHECK(aim_model_zero_grad(m), aim_model_last_error(m));
    if (g_model == M_GPT) {
        const size_t n = B * t->in_size; /* B sequences of T ids; a label a position */
        CHECK(aim_model_forward_ids(m, AIM_MODE_TRAIN, t->ids + k * n, n, B), aim_model_last_error(m));
        CHECK(aim_model_loss_sparse(m, 0, t->label + k * n, n, &loss), aim_model_last_error(m));
        CHECK(aim_model_backward(m, NULL, 0), aim_model_last_error(m));
        CHECK(aim_optimizer_step_model(t->opt, m, LEARNING_RATE), aim_optimizer_last_error(t->opt));
        return;
    }
    CHECK(aim_model_forward(m, AIM_MODE_TRAIN, t->x + k * B * t->in_size, B * t->in_size, B),
          aim_model_last_error(m));
    if (g_model == M_BINARY) /* one 0/1 target per sample */
        CHECK(aim_model_loss(m, 0, AIM_LOSS_BCE, t->target + k * B, B, &loss), aim_model_last_error(m));
    else
        CHECK(aim_model_loss_sparse(m, 0, t->label + k * B, B, &loss), aim_model_last_error(m));
    CHECK(aim_model_backward(m, NULL, 0), aim_model_last_error(m));
    CHECK(aim_optimizer_step_model(t->opt, m, LEARNING_RATE), aim_optimizer_last_error(t->opt));
}

/* ---- repetition counts from a time budget ------------------------------------- */

static double g_budget = 1.5; /* seconds per timed figure */

/* Repetitions that fit in the budget at `one` seconds each, within [lo, hi]. */
static size_t reps_for(double one, size_t lo, size_t hi) {
    double r = one > 0.0 ? g_budget / one : (double)hi;
    if (r < (double)lo) return lo;
    if (r > (double)hi) return hi;
    return (size_t)r;
}

/* Times `step` on `t`: warm-up calls (at least 3, about a fifth of the
 * budget), then as many timed calls as the budget allows; `faults`, unless
 * NULL, receives the minor page faults of the timed calls. */
static stats time_train(trainer *t, long *faults) {
    double t0 = now_s();
    train_step(t);
    double one = now_s() - t0;
    size_t warm = reps_for(one * 5.0, 3, 50);
    for (size_t i = 0; i < warm; i++) train_step(t);
    size_t reps = reps_for(one, 15, 1000);
    double *s = xmalloc(reps * sizeof *s);
    const long f0 = minflt();
    for (size_t r = 0; r < reps; r++) {
        double a = now_s();
        train_step(t);
        s[r] = now_s() - a;
    }
    if (faults) *faults = minflt() - f0;
    stats st = summarize(s, reps);
    free(s);
    return st;
}

/* `x` holds POOL batches of `batch` samples of `in_size` floats; `out` has
 * room for `batch` samples of `out_size` floats. */
static stats time_predict(const aim_model *m, aim_workspace *ws, const float *x, size_t batch, size_t in_size,
                          float *out, size_t out_size) {
    const size_t x_count = batch * in_size, out_count = batch * out_size;
    double t0 = now_s();
    CHECK(aim_model_predict(m, ws, x, x_count, batch, out, out_count), aim_workspace_last_error(ws));
    double one = now_s() - t0;
    size_t warm = reps_for(one * 5.0, 5, 200);
    for (size_t i = 0; i < warm; i++)
        CHECK(aim_model_predict(m, ws, x + (i % POOL) * x_count, x_count, batch, out, out_count),
              aim_workspace_last_error(ws));
    size_t reps = reps_for(one, 20, 5000);
    double *s = xmalloc(reps * sizeof *s);
    for (size_t r = 0; r < reps; r++) {
        const float *xr = x + (r % POOL) * batch * in_size;
        double a = now_s();
        CHECK(aim_model_predict(m, ws, xr, x_count, batch, out, out_count), aim_workspace_last_error(ws));
        s[r] = now_s() - a;
    }
    stats st = summarize(s, reps);
    free(s);
    return st;
}

/* ---- the GEMMs of one training step ------------------------------------------- */

typedef struct gemm_shape {
    const char *what;
    enum CBLAS_TRANSPOSE ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    float beta;
    size_t count;                  /* calls per step */
    size_t a_step, b_step, c_step; /* floats the operands move between calls */
    float *A, *Bm, *C;
} gemm_shape;

enum { MAX_SHAPES = 32 };
typedef struct gemm_set {
    gemm_shape s[MAX_SHAPES];
    size_t n;
} gemm_set;

static void add(gemm_set *g, const char *what, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, size_t M, size_t N,
                size_t K, size_t lda, size_t ldb, size_t ldc, float beta, size_t count, size_t a_step, size_t b_step,
                size_t c_step) {
    if (g->n == MAX_SHAPES) {
        fprintf(stderr, "bench_models: too many GEMM shapes\n");
        exit(1);
    }
    gemm_shape *s = &g->s[g->n++];
    *s = (gemm_shape){what, ta, tb, M, N, K, lda, ldb, ldc, beta, count, a_step, b_step, c_step, NULL, NULL, NULL};
}

/* A dense layer as src/layers/dense.c issues it (batch > 1): Z = X·Wᵀ; dW += dZᵀ·X;
 * dX = dZ·W unless it is the model's first layer. */
static void dense_gemms(gemm_set *g, size_t B, size_t in, size_t out, int first) {
    add(g, "dense fwd   X.W^T", CblasNoTrans, CblasTrans, B, out, in, in, in, out, 0.0f, 1, 0, 0, 0);
    add(g, "dense dW    dZ^T.X", CblasTrans, CblasNoTrans, out, in, B, out, in, in, 1.0f, 1, 0, 0, 0);
    if (!first) add(g, "dense dX    dZ.W", CblasNoTrans, CblasNoTrans, B, in, out, out, in, in, 0.0f, 1, 0, 0, 0);
}

/* A VALID, stride-1 conv as src/layers/conv2d.c issues it: per sample, Z = W·col;
 * dW += dZ·colᵀ; dcol = Wᵀ·dZ unless it is the first layer. */
static void conv_gemms(gemm_set *g, size_t B, size_t C, size_t H, size_t W, size_t O, size_t k, int first) {
    const size_t HWo = (H - k + 1) * (W - k + 1), K = C * k * k;
    add(g, "conv fwd    W.col", CblasNoTrans, CblasNoTrans, O, HWo, K, K, HWo, HWo, 0.0f, B, 0, 0, O * HWo);
    add(g, "conv dW     dZ.col^T", CblasNoTrans, CblasTrans, O, K, HWo, HWo, HWo, K, 1.0f, B, O * HWo, 0, 0);
    if (!first)
        add(g, "conv dcol   W^T.dZ", CblasTrans, CblasNoTrans, K, HWo, O, K, HWo, HWo, 0.0f, B, 0, O * HWo, 0);
}

/* A 3x3 "same", stride-1 conv of an HxW map as src/layers/conv2d.c issues it:
 * the GEMMs of conv_gemms() with Ho Wo = H W. */
static void conv_same_gemms(gemm_set *g, size_t B, size_t C, size_t H, size_t W, size_t O, int first) {
    const size_t HWo = H * W, K = C * 9;
    add(g, "conv fwd    W.col", CblasNoTrans, CblasNoTrans, O, HWo, K, K, HWo, HWo, 0.0f, B, 0, 0, O * HWo);
    add(g, "conv dW     dZ.col^T", CblasNoTrans, CblasTrans, O, K, HWo, HWo, HWo, K, 1.0f, B, O * HWo, 0, 0);
    if (!first)
        add(g, "conv dcol   W^T.dZ", CblasTrans, CblasNoTrans, K, HWo, O, K, HWo, HWo, 0.0f, B, 0, O * HWo, 0);
}

/* One LSTM sub-layer as src/layers/lstm.c issues it (zero initial state). */
static void lstm_gemms(gemm_set *g, size_t B, size_t T, size_t in, size_t H, int first) {
    const size_t G = 4 * H;
    add(g, "lstm fwd    X.W_ih^T", CblasNoTrans, CblasTrans, B * T, G, in, in, in, G, 0.0f, 1, 0, 0, 0);
    add(g, "lstm fwd    h.W_hh^T", CblasNoTrans, CblasTrans, B, G, H, T * H, H, T * G, 1.0f, T - 1, H, 0, G);
    add(g, "lstm bwd dh dA.W_hh", CblasNoTrans, CblasNoTrans, B, H, G, T * G, H, H, 0.0f, T - 1, G, 0, 0);
    add(g, "lstm dW_hh  dA^T.h", CblasTrans, CblasNoTrans, G, H, T - 1, G, H, H, 1.0f, B, T * G, T * H, 0);
    add(g, "lstm dW_ih  dA^T.X", CblasTrans, CblasNoTrans, G, in, B * T, G, in, in, 1.0f, 1, 0, 0, 0);
    if (!first) add(g, "lstm dX     dA.W_ih", CblasNoTrans, CblasNoTrans, B * T, in, G, G, in, in, 0.0f, 1, 0, 0, 0);
}

/* One GRU layer as src/layers/gru.c issues it (zero initial state): the
 * recurrent GEMMs write Gh (B, 3H) apart from the cached gates; the
 * backward's dW_ih and dX take the r, z thirds of dGh and da_n in two calls. */
static void gru_gemms(gemm_set *g, size_t B, size_t T, size_t in, size_t H, int first) {
    const size_t G = 3 * H;
    add(g, "gru fwd     X.W_ih^T", CblasNoTrans, CblasTrans, B * T, G, in, in, in, G, 0.0f, 1, 0, 0, 0);
    add(g, "gru fwd     h.W_hh^T", CblasNoTrans, CblasTrans, B, G, H, T * H, H, G, 0.0f, T - 1, H, 0, 0);
    add(g, "gru bwd dh  dGh.W_hh", CblasNoTrans, CblasNoTrans, B, H, G, T * G, H, H, 1.0f, T - 1, G, 0, 0);
    add(g, "gru dW_hh   dGh^T.h", CblasTrans, CblasNoTrans, G, H, T - 1, G, H, H, 1.0f, B, T * G, T * H, 0);
    add(g, "gru dW_ih   dGi_rz^T.X", CblasTrans, CblasNoTrans, 2 * H, in, B * T, G, in, in, 1.0f, 1, 0, 0, 0);
    add(g, "gru dW_ih   dGi_n^T.X", CblasTrans, CblasNoTrans, H, in, B * T, H, in, in, 1.0f, 1, 0, 0, 0);
    if (!first) {
        add(g, "gru dX      dGi_rz.W_ih", CblasNoTrans, CblasNoTrans, B * T, in, 2 * H, G, in, in, 0.0f, 1, 0, 0, 0);
        add(g, "gru dX      dGi_n.W_ih", CblasNoTrans, CblasNoTrans, B * T, in, H, H, in, in, 1.0f, 1, 0, 0, 0);
    }
}

/* Multiplies the call counts of shapes n0 .. g->n - 1 by k (the same layer
 * k times). */
static void repeat_from(gemm_set *g, size_t n0, size_t k) {
    for (size_t i = n0; i < g->n; i++) g->s[i].count *= k;
}

/* The gpt model's GEMMs as src/ issues them. Attention (src/layers/attention.c),
 * per sample: the in and out projections; per sample and head (d = E/H
 * columns of Q, K, V, rows 3E apart): S = Q·Kᵀ and O_h = P·V, and in the
 * backward dP' = dO_h·Vᵀ, dV = P'ᵀ·dO_h, dQ = dS·K, dK = dSᵀ·Q. The causal
 * mask is applied after full T x T products. The linears (fc 128->512,
 * proj 512->128, the head 128->96) are one GEMM each over the B·T
 * positions. Every block issues the same shapes, so each is counted
 * GPT_BLOCKS times; the per-head operands move d floats between calls, a
 * hot-cache stand-in for the library's walk over heads and samples. */
static void gpt_gemms(gemm_set *g, size_t B) {
    const size_t T = GPT_CONTEXT, E = GPT_EMBED, H = GPT_HEADS, d = E / H, BH = B * H, TE = T * E, TT = T * T;
    const size_t n0 = g->n;
    add(g, "attn fwd    X.W_in^T", CblasNoTrans, CblasTrans, T, 3 * E, E, E, E, 3 * E, 0.0f, B, TE, 0, 3 * TE);
    add(g, "attn fwd    Q.K^T", CblasNoTrans, CblasTrans, T, T, d, 3 * E, 3 * E, T, 0.0f, BH, d, d, TT);
    add(g, "attn fwd    P.V", CblasNoTrans, CblasNoTrans, T, d, T, T, 3 * E, E, 0.0f, BH, TT, d, d);
    add(g, "attn fwd    O.W_o^T", CblasNoTrans, CblasTrans, T, E, E, E, E, E, 0.0f, B, TE, 0, TE);
    add(g, "attn dW_o   G^T.O", CblasTrans, CblasNoTrans, E, E, T, E, E, E, 1.0f, B, TE, TE, 0);
    add(g, "attn dO     G.W_o", CblasNoTrans, CblasNoTrans, T, E, E, E, E, E, 0.0f, B, TE, 0, 0);
    add(g, "attn dP'    dO.V^T", CblasNoTrans, CblasTrans, T, T, d, E, 3 * E, T, 0.0f, BH, d, d, 0);
    add(g, "attn dV     P'^T.dO", CblasTrans, CblasNoTrans, T, d, T, T, E, 3 * E, 0.0f, BH, TT, d, d);
    add(g, "attn dQ     dS.K", CblasNoTrans, CblasNoTrans, T, d, T, T, 3 * E, 3 * E, 0.0f, BH, 0, d, d);
    add(g, "attn dK     dS^T.Q", CblasTrans, CblasNoTrans, T, d, T, T, 3 * E, 3 * E, 0.0f, BH, 0, d, d);
    add(g, "attn dW_in  dQKV^T.X", CblasTrans, CblasNoTrans, 3 * E, E, T, 3 * E, E, E, 1.0f, B, 0, TE, 0);
    add(g, "attn dX     dQKV.W_in", CblasNoTrans, CblasNoTrans, T, E, 3 * E, 3 * E, E, E, 0.0f, B, 0, 0, TE);
    dense_gemms(g, B * T, E, 4 * E, 0);
    dense_gemms(g, B * T, 4 * E, E, 0);
    repeat_from(g, n0, GPT_BLOCKS);
    dense_gemms(g, B * T, E, GPT_VOCAB, 0);
}

static void model_gemms(gemm_set *g, model_id id, size_t B) {
    g->n = 0;
    switch (id) {
    case M_MLP:
        dense_gemms(g, B, 784, 64, 1);
        dense_gemms(g, B, 64, 64, 0);
        dense_gemms(g, B, 64, 10, 0);
        break;
    case M_BINARY:
        dense_gemms(g, B, 784, 128, 1);
        dense_gemms(g, B, 128, 64, 0);
        dense_gemms(g, B, 64, 1, 0);
        break;
    case M_CNN:
        conv_gemms(g, B, 1, 28, 28, 32, 3, 1);
        conv_gemms(g, B, 32, 13, 13, 64, 3, 0);
        dense_gemms(g, B, 1600, 64, 0);
        dense_gemms(g, B, 64, 10, 0);
        break;
    case M_LSTM:
        lstm_gemms(g, B, 28, 28, 128, 1);
        lstm_gemms(g, B, 28, 128, 128, 0);
        dense_gemms(g, B, 128, 10, 0);
        break;
    case M_GRU:
        gru_gemms(g, B, 28, 28, 128, 1);
        gru_gemms(g, B, 28, 128, 128, 0);
        dense_gemms(g, B, 128, 10, 0);
        break;
    case M_RESBN:
        conv_same_gemms(g, B, 1, 28, 28, 32, 1);
        for (size_t i = 0; i < 4; i++) conv_same_gemms(g, B, 32, 14, 14, 32, 0);
        conv_same_gemms(g, B, 32, 7, 7, 64, 0);
        for (size_t i = 0; i < 2; i++) conv_same_gemms(g, B, 64, 7, 7, 64, 0);
        dense_gemms(g, B, 64, 10, 0);
        break;
    case M_GPT:
        gpt_gemms(g, B);
        break;
    }
}

static double shape_flops(const gemm_shape *s) { return 2.0 * (double)s->M * s->N * s->K * (double)s->count; }

/* Floats an operand of `rows` x `cols` (as stored) with leading dimension
 * `ld` spans, over `count` calls `step` floats apart. */
static size_t span(size_t rows, size_t ld, size_t count, size_t step) { return rows * ld + (count - 1) * step; }

static void gemm_alloc(gemm_shape *s, aim_rng *rng) {
    const size_t arows = s->ta == CblasNoTrans ? s->M : s->K, brows = s->tb == CblasNoTrans ? s->K : s->N;
    const size_t na = span(arows, s->lda, s->count, s->a_step), nb = span(brows, s->ldb, s->count, s->b_step),
                 nc = span(s->M, s->ldc, s->count, s->c_step);
    s->A = falloc(na);
    s->Bm = falloc(nb);
    s->C = falloc(nc);
    float u;
    for (size_t i = 0; i < na; i++) {
        CHECK(aim_rng_uniform(rng, &u), NULL);
        s->A[i] = u - 0.5f;
    }
    for (size_t i = 0; i < nb; i++) {
        CHECK(aim_rng_uniform(rng, &u), NULL);
        s->Bm[i] = u - 0.5f;
    }
}

static void gemm_run(const gemm_shape *s) {
    for (size_t c = 0; c < s->count; c++)
        cblas_sgemm(CblasRowMajor, s->ta, s->tb, BI(s->M), BI(s->N), BI(s->K), 1.0f, s->A + c * s->a_step,
                    BI(s->lda), s->Bm + c * s->b_step, BI(s->ldb), s->beta, s->C + c * s->c_step, BI(s->ldc));
}

/* Times every shape of one step's GEMMs, interleaved one group per round so
 * that all see the same load; returns the median of the rounds' totals and
 * prints a "#" line per shape. */
static stats time_gemms(gemm_set *g, size_t B, double step_s, double *flops_out, aim_rng *rng) {
    double flops = 0.0;
    for (size_t i = 0; i < g->n; i++) {
        gemm_alloc(&g->s[i], rng);
        flops += shape_flops(&g->s[i]);
    }
    double t0 = now_s();
    for (size_t i = 0; i < g->n; i++) gemm_run(&g->s[i]);
    double one = now_s() - t0;
    size_t warm = reps_for(one * 5.0, 3, 50);
    for (size_t r = 0; r < warm; r++)
        for (size_t i = 0; i < g->n; i++) gemm_run(&g->s[i]);
    size_t reps = reps_for(one, 15, 1000);
    double *per = xmalloc(g->n * reps * sizeof *per), *tot = xmalloc(reps * sizeof *tot);
    for (size_t r = 0; r < reps; r++) {
        tot[r] = 0.0;
        for (size_t i = 0; i < g->n; i++) {
            double a = now_s();
            gemm_run(&g->s[i]);
            per[i * reps + r] = now_s() - a;
            tot[r] += per[i * reps + r];
        }
    }
    printf("# GEMMs of one training step at batch %zu (direct cblas_sgemm calls, median of %zu rounds):\n", B, reps);
    printf("#   %-22s %2s %5s %5s %5s %5s %6s %9s %8s\n", "shape", "op", "M", "N", "K", "calls", "MFLOP", "ms", "GF/s");
    for (size_t i = 0; i < g->n; i++) {
        const gemm_shape *s = &g->s[i];
        stats st = summarize(per + i * reps, reps);
        printf("#   %-22s %c%c %5zu %5zu %5zu %5zu %6.1f %9.4f %8.2f\n", s->what, s->ta == CblasTrans ? 'T' : 'N',
               s->tb == CblasTrans ? 'T' : 'N', s->M, s->N, s->K, s->count, shape_flops(s) / 1e6, st.med * 1e3,
               st.med > 0.0 ? shape_flops(s) / st.med / 1e9 : 0.0);
    }
    stats st = summarize(tot, reps);
    printf("#   all: %.1f MFLOP in %.4f ms = %.2f GFLOP/s; the training step: %.4f ms = %.2f GFLOP/s (%.0f%%)\n",
           flops / 1e6, st.med * 1e3, flops / st.med / 1e9, step_s * 1e3, flops / step_s / 1e9,
           100.0 * st.med / step_s);
    free(per);
    free(tot);
    for (size_t i = 0; i < g->n; i++) {
        free(g->s[i].A);
        free(g->s[i].Bm);
        free(g->s[i].C);
    }
    *flops_out = flops;
    return st;
}

static void gemm_figures(size_t B, double step_s, aim_rng *rng) {
    gemm_set g;
    model_gemms(&g, g_model, B);
    double flops;
    stats st = time_gemms(&g, B, step_s, &flops, rng);
    char metric[64], extra[64];
    size_t calls = 0;
    for (size_t i = 0; i < g.n; i++) calls += g.s[i].count;
    snprintf(extra, sizeof extra, "sgemm_calls=%zu", calls);
    snprintf(metric, sizeof metric, "step_gflop_b%zu", B);
    bench_line(metric, flops / 1e9, extra);
    snprintf(metric, sizeof metric, "sgemm_gflops_b%zu", B);
    snprintf(extra, sizeof extra, "ms=%.6g n=%zu", st.med * 1e3, st.n);
    bench_line(metric, flops / st.med / 1e9, extra);
    snprintf(metric, sizeof metric, "train_gflops_b%zu", B);
    bench_line(metric, flops / step_s / 1e9, NULL);
    snprintf(metric, sizeof metric, "train_sgemm_frac_b%zu", B);
    bench_line(metric, st.med / step_s, NULL);
}

/* ---- the two modes ------------------------------------------------------------ */

static void header(const char *what) {
    const char *ct = getenv("OPENBLAS_CORETYPE"), *nt = getenv("OPENBLAS_NUM_THREADS");
    printf("# bench_models: libaimodel %s, model %s, --what %s\n", aim_version(), MODEL_NAME[g_model], what);
    printf("# OpenBLAS core %s, %d thread(s); config \"%s\"\n", openblas_get_corename(), openblas_get_num_threads(),
           openblas_get_config());
    printf("# environment: OPENBLAS_CORETYPE=%s OPENBLAS_NUM_THREADS=%s; %ld CPU(s) online; load average %.2f\n",
           ct ? ct : "(unset)", nt ? nt : "(unset)", sysconf(_SC_NPROCESSORS_ONLN), loadavg1());
    char extra[160];
    snprintf(extra, sizeof extra, "core=%s threads=%d", openblas_get_corename(), openblas_get_num_threads());
    bench_line("openblas", 0, extra);
}

static int run_train_only(size_t steps) {
    long rss0 = maxrss_kb();
    aim_rng *rng;
    CHECK(aim_rng_create(NULL, SEED, &rng), NULL);
    const size_t batch = g_model == M_GPT ? GPT_BATCH : 32;
    trainer t;
    trainer_init(&t, g_model, batch, rng);
    for (size_t i = 0; i < steps; i++) train_step(&t);
    long rss1 = maxrss_kb();
    header("train-only");
    char extra[64];
    snprintf(extra, sizeof extra, "steps=%zu batch=%zu", steps, batch);
    bench_line("rss_start_kb", (double)rss0, NULL);
    bench_line("peak_rss_kb", (double)rss1, extra);
    trainer_free(&t);
    aim_rng_free(rng);
    bench_line("cpu_s", cpu_s(), NULL);
    return 0;
}

static int run_all(size_t epoch_steps, size_t epoch_blocks) {
    header("all");
    aim_rng *rng;
    CHECK(aim_rng_create(NULL, SEED, &rng), NULL);
    double load0 = loadavg1();

    /* ---- training at batch 32: the step, the epoch, page faults ---- */
    trainer t32;
    trainer_init(&t32, g_model, 32, rng);
    stats s32 = time_train(&t32, NULL);
    bench_ms("train_step_b32_ms", s32);

    double *blk = xmalloc(epoch_blocks * sizeof *blk);
    long f0 = minflt();
    for (size_t b = 0; b < epoch_blocks; b++) {
        double a = now_s();
        for (size_t i = 0; i < epoch_steps; i++) train_step(&t32);
        blk[b] = now_s() - a;
    }
    long f1 = minflt();
    stats sb = summarize(blk, epoch_blocks);
    free(blk);
    const double epoch_batches = (double)EPOCH_IMAGES / 32.0;
    char extra[160];
    snprintf(extra, sizeof extra, "min=%.6g n=%zu extrapolated_from_steps=%zu epoch_steps=%.0f", sb.min *
             epoch_batches / (double)epoch_steps, sb.n, epoch_steps, epoch_batches);
    bench_line("epoch_s", sb.med * epoch_batches / (double)epoch_steps, extra);
    snprintf(extra, sizeof extra, "faults=%ld steps=%zu", f1 - f0, epoch_steps * epoch_blocks);
    bench_line("minflt_per_step_b32", (double)(f1 - f0) / (double)(epoch_steps * epoch_blocks), extra);

    /* ---- inference on the batch-32 model's weights ---- */
    const size_t in_size = t32.in_size, out_size = aim_model_output_size(t32.m);
    float *xin = falloc(POOL * INFER_BATCH * in_size), *out = falloc(INFER_BATCH * out_size);
    for (size_t i = 0; i < POOL * INFER_BATCH * in_size; i++) CHECK(aim_rng_uniform(rng, &xin[i]), NULL);
    aim_workspace *ws1, *ws256;
    CHECK(aim_workspace_create(t32.m, NULL, 1, &ws1), NULL);
    CHECK(aim_workspace_create(t32.m, NULL, INFER_BATCH, &ws256), NULL);
    if (g_pool) {
        CHECK(aim_workspace_set_threadpool(ws1, t32.m, g_pool), aim_workspace_last_error(ws1));
        CHECK(aim_workspace_set_threadpool(ws256, t32.m, g_pool), aim_workspace_last_error(ws256));
    }
    bench_ms("infer_b1_ms", time_predict(t32.m, ws1, xin, 1, in_size, out, out_size));
    stats s256 = time_predict(t32.m, ws256, xin, INFER_BATCH, in_size, out, out_size);
    bench_ms("infer_b256_ms", s256);
    bench_line("infer_b256_img_per_s", (double)INFER_BATCH / s256.med, NULL);
    aim_workspace_free(ws1);
    aim_workspace_free(ws256);
    free(xin);
    free(out);

    gemm_figures(32, s32.med, rng);
    trainer_free(&t32);

    /* ---- training at batch 128 ---- */
    trainer t128;
    trainer_init(&t128, g_model, 128, rng);
    stats s128 = time_train(&t128, NULL);
    bench_ms("train_step_b128_ms", s128);
    trainer_free(&t128);
    gemm_figures(128, s128.med, rng);

    printf("# load average %.2f at the start, %.2f at the end\n", load0, loadavg1());
    aim_rng_free(rng);
    bench_line("cpu_s", cpu_s(), NULL);
    return 0;
}

/* ---- gpt: the training step and generation ------------------------------------ */

/* Repeats fn(ctx) as time_train repeats a step: warm-up, then the budget. */
static stats time_calls(void (*fn)(void *), void *ctx) {
    double t0 = now_s();
    fn(ctx);
    double one = now_s() - t0;
    size_t warm = reps_for(one * 5.0, 3, 50);
    for (size_t i = 0; i < warm; i++) fn(ctx);
    size_t reps = reps_for(one, 15, 5000);
    double *s = xmalloc(reps * sizeof *s);
    for (size_t r = 0; r < reps; r++) {
        double a = now_s();
        fn(ctx);
        s[r] = now_s() - a;
    }
    stats st = summarize(s, reps);
    free(s);
    return st;
}

static int32_t argmax(const float *z, size_t n) {
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (z[j] > z[best]) best = j;
    return (int32_t)best;
}

/* Greedy generation at batch 1 with a gpt model of context T. */
typedef struct generator {
    aim_model *m;
    aim_workspace *ws;      /* aim_model_predict_ids */
    aim_workspace *ws_step; /* aim_model_predict_step_ids, with the keys and values */
    size_t T, p;            /* p: the last position of the naive path's prefix */
    int32_t *ids;           /* T; ids[0] the prompt */
    float *logits;          /* T * GPT_VOCAB */
} generator;

/* One new token without a cache: the whole window through the model (the
 * model's input is T positions; causal attention leaves the logits of
 * positions 0 .. p independent of the stale ids after p), then the next id
 * from position p. A full window starts over at position 0. */
static void gen_full_token(void *ctx) {
    generator *g = ctx;
    CHECK(aim_model_predict_ids(g->m, g->ws, g->ids, g->T, 1, g->logits, g->T * GPT_VOCAB),
          aim_workspace_last_error(g->ws));
    const int32_t next = argmax(g->logits + g->p * GPT_VOCAB, GPT_VOCAB);
    if (g->p + 1 < g->T) {
        g->ids[g->p + 1] = next;
        g->p++;
    } else {
        g->p = 0;
    }
}

/* T new tokens with the KV cache, from position 0; the logits of position
 * p go to row p of `logits` when `all` (the check), else all to row 0. */
static void gen_kv_run(generator *g, int all) {
    CHECK(aim_workspace_reset_steps(g->ws_step), aim_workspace_last_error(g->ws_step));
    for (size_t p = 0; p < g->T; p++) {
        float *z = g->logits + (all ? p * GPT_VOCAB : 0);
        CHECK(aim_model_predict_step_ids(g->m, g->ws_step, g->ids + p, 1, 1, z, GPT_VOCAB),
              aim_workspace_last_error(g->ws_step));
        if (p + 1 < g->T) g->ids[p + 1] = argmax(z, GPT_VOCAB);
    }
}

static void gen_kv_sequence(void *ctx) { gen_kv_run(ctx, 0); }

/* The largest difference between the step path's logits and a full
 * predict over the ids it generated, on one sequence. */
static double gen_check(generator *g) {
    const size_t n = g->T * GPT_VOCAB;
    float *full = falloc(n);
    gen_kv_run(g, 1);
    CHECK(aim_model_predict_ids(g->m, g->ws, g->ids, g->T, 1, full, n), aim_workspace_last_error(g->ws));
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)g->logits[i] - (double)full[i];
        worst = e > worst ? e : -e > worst ? -e : worst;
    }
    free(full);
    return worst;
}

/* gen_full_tT_tok_per_s and gen_kv_tT_tok_per_s for a model of context T. */
static void gen_figures(size_t T, aim_rng *rng) {
    generator g = {compiled(gpt_graph(T), 1), NULL, NULL, T, 0, xmalloc(T * sizeof(int32_t)),
                   falloc(T * GPT_VOCAB)};
    CHECK(aim_workspace_create(g.m, NULL, 1, &g.ws), NULL);
    CHECK(aim_workspace_create(g.m, NULL, 1, &g.ws_step), NULL);
    if (g_pool) {
        CHECK(aim_workspace_set_threadpool(g.ws, g.m, g_pool), aim_workspace_last_error(g.ws));
        CHECK(aim_workspace_set_threadpool(g.ws_step, g.m, g_pool), aim_workspace_last_error(g.ws_step));
    }
    uint64_t u;
    CHECK(aim_rng_below(rng, GPT_VOCAB, &u), NULL);
    for (size_t p = 0; p < T; p++) g.ids[p] = (int32_t)u; /* the prompt is ids[0]; the rest is overwritten */

    const double diff = gen_check(&g);
    printf("# gpt context %zu: the step path's logits differ from a full predict_ids by at most %.3g%s\n", T, diff,
           diff > 1e-3 ? " WARNING: above 1e-3" : "");
    char metric[64], extra[96];
    stats full = time_calls(gen_full_token, &g);
    snprintf(metric, sizeof metric, "gen_full_t%zu_tok_per_s", T);
    snprintf(extra, sizeof extra, "ms_per_token=%.6g min_ms=%.6g n=%zu", full.med * 1e3, full.min * 1e3, full.n);
    bench_line(metric, 1.0 / full.med, extra);
    stats kv = time_calls(gen_kv_sequence, &g);
    snprintf(metric, sizeof metric, "gen_kv_t%zu_tok_per_s", T);
    snprintf(extra, sizeof extra, "ms_per_sequence=%.6g min_ms=%.6g n=%zu tokens=%zu", kv.med * 1e3, kv.min * 1e3,
             kv.n, T);
    bench_line(metric, (double)T / kv.med, extra);
    aim_workspace_free(g.ws);
    aim_workspace_free(g.ws_step);
    aim_model_free(g.m);
    free(g.ids);
    free(g.logits);
}

static int run_gpt(void) {
    header("all");
    aim_rng *rng;
    CHECK(aim_rng_create(NULL, SEED, &rng), NULL);
    double load0 = loadavg1();

    trainer t;
    trainer_init(&t, M_GPT, GPT_BATCH, rng);
    long faults = 0;
    stats st = time_train(&t, &faults);
    char metric[64], extra[96];
    snprintf(metric, sizeof metric, "train_step_b%d_ms", GPT_BATCH);
    bench_ms(metric, st);
    snprintf(metric, sizeof metric, "train_tok_per_s_b%d", GPT_BATCH);
    snprintf(extra, sizeof extra, "context=%d", GPT_CONTEXT);
    bench_line(metric, (double)(GPT_BATCH * GPT_CONTEXT) / st.med, extra);
    snprintf(metric, sizeof metric, "minflt_per_step_b%d", GPT_BATCH);
    snprintf(extra, sizeof extra, "faults=%ld steps=%zu", faults, st.n);
    bench_line(metric, (double)faults / (double)st.n, extra);
    gemm_figures(GPT_BATCH, st.med, rng);
    trainer_free(&t);

    gen_figures(GPT_GEN_SHORT, rng);
    gen_figures(GPT_GEN_LONG, rng);

    printf("# load average %.2f at the start, %.2f at the end\n", load0, loadavg1());
    aim_rng_free(rng);
    bench_line("cpu_s", cpu_s(), NULL);
    return 0;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --model mlp|binary|cnn|lstm|resbn|gru|gpt [--what all|train-only] [--threads N (default 1)] [--budget SECONDS (default 1.5)]\n"
            "       [--epoch-steps N (default 200)] [--epoch-blocks N (default 3)] [--train-steps N (default 50)]\n",
            argv0);
    return 1;
}

int main(int argc, char **argv) {
    int have_model = 0, train_only = 0;
    unsigned long epoch_steps = 200, epoch_blocks = 3, train_steps = 50;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage(argv[0]);
        i++;
        if (strcmp(a, "--model") == 0) {
            have_model = 0;
            for (size_t k = 0; k < MODEL_COUNT; k++)
                if (strcmp(v, MODEL_NAME[k]) == 0) g_model = (model_id)k, have_model = 1;
            if (!have_model) return usage(argv[0]);
        } else if (strcmp(a, "--what") == 0) {
            if (strcmp(v, "all") == 0)
                train_only = 0;
            else if (strcmp(v, "train-only") == 0)
                train_only = 1;
            else
                return usage(argv[0]);
        } else if (strcmp(a, "--threads") == 0) {
            unsigned long n = strtoul(v, NULL, 10);
            if (n == 0 || n > 256) return usage(argv[0]);
            if (n > 1 && aim_threadpool_create(NULL, n, &g_pool) != AIM_OK) {
                fprintf(stderr, "bench_models: cannot start %lu threads\n", n);
                return 1;
            }
        } else if (strcmp(a, "--budget") == 0) {
            g_budget = strtod(v, NULL);
            if (!(g_budget > 0.0 && g_budget < 3600.0)) return usage(argv[0]);
        } else if (strcmp(a, "--epoch-steps") == 0) {
            epoch_steps = strtoul(v, NULL, 10);
            if (epoch_steps == 0 || epoch_steps > 100000) return usage(argv[0]);
        } else if (strcmp(a, "--epoch-blocks") == 0) {
            epoch_blocks = strtoul(v, NULL, 10);
            if (epoch_blocks == 0 || epoch_blocks > 1000) return usage(argv[0]);
        } else if (strcmp(a, "--train-steps") == 0) {
            train_steps = strtoul(v, NULL, 10);
            if (train_steps == 0 || train_steps > 1000000) return usage(argv[0]);
        } else {
            return usage(argv[0]);
        }
    }
    if (!have_model) return usage(argv[0]);
    int rc = train_only ? run_train_only(train_steps) : g_model == M_GPT ? run_gpt() : run_all(epoch_steps, epoch_blocks);
    aim_threadpool_free(g_pool);
    return rc;
}
