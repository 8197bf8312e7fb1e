/*
 * bench_cnn: where the time of one training step of the seed CNN goes, and
 * how close the conv2d kernels come to the cblas_sgemm calls they are built
 * on. A standalone program (no test framework): it prints figures and never
 * fails on timing; it exits 1 only when an aim_ call (or an allocation) fails,
 * 2 if its hand-built layers disagree with the model's geometry.
 *
 *   usage: bench_cnn [repetitions [warm-up runs]]     (default 30 and 5)
 *
 * The seed CNN, batch 32, NCHW:
 *   1x28x28 -> Conv2D 32 3x3 relu -> MaxPool 2 -> Conv2D 64 3x3 relu
 *   -> MaxPool 2 -> Flatten -> Dense 64 relu -> Dense 10
 *   softmax cross-entropy (aim_model_loss_sparse), Adam lr 1e-3.
 *
 * Every figure is the median and the minimum over the repetitions of one
 * timed call (CLOCK_MONOTONIC), after the warm-up runs. The per-layer and
 * per-kernel figures call the private kernels of src/ (internal.h) on layer
 * structs built here with the model's geometry and a copy of its weights,
 * because the model's own layer array is private to model.c; they run with
 * hot caches, the training step does not.
 *
 * The environment (OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS) is only read and
 * printed; tests/bench/run.sh varies it from outside.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#define BENCH_NAME "bench_cnn"
#include "bench_util.h"

enum { BATCH = 32, IMG = 28, C1 = 32, C2 = 64, HIDDEN = 64, CLASSES = 10, KSIZE = 3 };
static const float LEARNING_RATE = 1e-3f;
static const uint64_t SEED = 20260101u;

static double *g_samples; /* g_reps timings, for the training step */

/* ---- layers built by hand with the model's geometry ------------------------ */

static void conv_layer(aim__layer *L, size_t C, size_t H, size_t W, size_t O, size_t k) {
    memset(L, 0, sizeof *L);
    L->ops = &aim__conv2d_ops;
    L->n_in = 1;
    L->in_rank = 3;
    L->in_dims[0] = C, L->in_dims[1] = H, L->in_dims[2] = W;
    L->in_size = C * H * W;
    L->out_rank = 3;
    L->out_dims[0] = O, L->out_dims[1] = H - k + 1, L->out_dims[2] = W - k + 1; /* VALID, stride 1 */
    L->out_size = O * L->out_dims[1] * L->out_dims[2];
    L->weight_count = O * C * k * k;
    L->bias_count = O;
    aim__conv2d_cfg *c = AIM__CFG_MUT(aim__conv2d_cfg, L);
    c->filters = O;
    c->act = AIM_ACT_RELU;
    c->alpha = 0.01f;
    c->use_bias = 1;
    c->init = AIM_INIT_GLOROT_UNIFORM;
    c->padding = AIM_PAD_VALID;
    c->win = (aim__window){.kh = k, .kw = k, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    aim__conv2d_setup(L); /* the cache (Z and the columns) and scratch, as the model sets them */
}

static void pool_layer(aim__layer *L, size_t C, size_t H, size_t W, size_t k) {
    memset(L, 0, sizeof *L);
    L->ops = &aim__max_pool2d_ops;
    L->n_in = 1;
    L->in_rank = 3;
    L->in_dims[0] = C, L->in_dims[1] = H, L->in_dims[2] = W;
    L->in_size = C * H * W;
    L->out_rank = 3;
    L->out_dims[0] = C, L->out_dims[1] = H / k, L->out_dims[2] = W / k; /* floor mode */
    L->out_size = C * (H / k) * (W / k);
    AIM__CFG_MUT(aim__pool2d_cfg, L)->win = (aim__window){.kh = k, .kw = k, .sh = k, .sw = k, .dh = 1, .dw = 1, .groups = 1};
    AIM__CFG_MUT(aim__pool2d_cfg, L)->is_max = 1;
}

static void flatten_layer(aim__layer *L, const aim__layer *prev) {
    memset(L, 0, sizeof *L);
    L->ops = &aim__flatten_ops;
    L->n_in = 1;
    L->in_rank = prev->out_rank;
    memcpy(L->in_dims, prev->out_dims, sizeof L->in_dims);
    L->in_size = prev->out_size;
    L->out_rank = 1;
    L->out_dims[0] = L->out_size = prev->out_size;
}

static void dense_layer(aim__layer *L, size_t in, size_t out, aim_activation act) {
    memset(L, 0, sizeof *L);
    L->ops = &aim__dense_ops;
    L->n_in = 1;
    L->in_rank = 1;
    L->in_dims[0] = L->in_size = in;
    L->out_rank = 1;
    L->out_dims[0] = L->out_size = out;
    L->weight_count = out * in;
    L->bias_count = out;
    L->cache_per_sample = act == AIM_ACT_IDENTITY ? 0 : out;
    aim__dense_cfg *c = AIM__CFG_MUT(aim__dense_cfg, L);
    c->units = out;
    c->act = act;
    c->alpha = 0.01f;
    c->use_bias = 1;
    c->init = AIM_INIT_GLOROT_UNIFORM;
}

/* One layer with its own buffers: x is the previous layer's y, dy is random. */
typedef struct layer_case {
    char name[48];
    aim__layer L;
    size_t B;
    int with_dx; /* as in the model: layer 0 has no dX */
    float *params, *dparams; /* NULL without parameters */
    const float *x;
    float *y, *cache, *dy, *dx, *scratch;
} layer_case;

/* Through the kind's table, as the executor calls it. */
static void case_forward(void *p) {
    layer_case *c = p;
    const float *x[1] = {c->x};
    const aim__fwd a = {x, c->y, c->cache, c->scratch, c->params, NULL, c->B, 0, c->B};
    c->L.ops->forward(&c->L, &a);
}

/* The backward masks dy in place by relu'(Z); repeating it is idempotent, so
 * dy is not restored between repetitions (same work, same data). */
static void case_backward(void *p) {
    layer_case *c = p;
    float *dx[1] = {c->with_dx || !c->params ? c->dx : NULL}; /* pooling always writes its dX */
    const float *x[1] = {c->x};
    const aim__bwd a = {x, c->y, c->cache, c->dy, dx, c->params, c->dparams, c->scratch, NULL, c->B, 0, c->B};
    c->L.ops->backward(&c->L, &a);
}

/* The step zeroes gradients before the backward; so does the bench, untimed. */
static void case_zero_grads(void *p) {
    layer_case *c = p;
    if (c->dparams) memset(c->dparams, 0, (c->L.weight_count + c->L.bias_count) * sizeof(float));
}

static void case_alloc(layer_case *c, const float *x, size_t B, int with_dx, aim_rng *rng) {
    const aim__layer *L = &c->L;
    c->B = B;
    c->with_dx = with_dx;
    c->x = x;
    c->y = falloc(B * L->out_size);
    c->cache = L->cache_per_sample ? falloc(B * L->cache_per_sample) : NULL;
    c->dy = falloc(B * L->out_size);
    fill_uniform(rng, c->dy, B * L->out_size, -1e-2f, 1e-2f);
    c->dx = falloc(B * L->in_size);
    c->scratch = L->scratch_floats ? falloc(L->scratch_floats) : NULL;
    if (L->weight_count) {
        c->params = falloc(L->weight_count + L->bias_count);
        c->dparams = falloc(L->weight_count + L->bias_count);
    }
}

/* ---- GEMM jobs: the shapes the kernels call, run directly ----------------- */

typedef struct gemm_job {
    char name[64];
    CBLAS_TRANSPOSE ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    float beta;
    size_t count;                 /* calls per run (one per sample in conv2d) */
    const float *A, *Bm;
    float *C;
    size_t sa, sb, sc;            /* offsets between the calls' operands */
} gemm_job;

static void gemm_run(void *p) {
    const gemm_job *g = p;
    for (size_t i = 0; i < g->count; i++)
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, BI(g->M), BI(g->N), BI(g->K), 1.0f, g->A + i * g->sa, BI(g->lda),
                    g->Bm + i * g->sb, BI(g->ldb), g->beta, g->C + i * g->sc, BI(g->ldc));
}

static double gemm_flops(const gemm_job *g) {
    return 2.0 * (double)g->M * (double)g->N * (double)g->K * (double)g->count;
}

static gemm_job gemm(const char *name, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t M, size_t N, size_t K,
                     float beta, size_t count, const float *A, size_t sa, const float *Bm, size_t sb, float *C,
                     size_t sc) {
    gemm_job g;
    memset(&g, 0, sizeof g);
    snprintf(g.name, sizeof g.name, "%s", name);
    g.ta = ta, g.tb = tb;
    g.M = M, g.N = N, g.K = K;
    /* Row-major: op(A) is M x K, op(B) is K x N, C is M x N. */
    g.lda = ta == CblasNoTrans ? K : M;
    g.ldb = tb == CblasNoTrans ? N : K;
    g.ldc = N;
    g.beta = beta;
    g.count = count;
    g.A = A, g.Bm = Bm, g.C = C;
    g.sa = sa, g.sb = sb, g.sc = sc;
    return g;
}

/* ---- the other parts of conv2d, to split a kernel's time ------------------ */
/* im2col and col2im are static in src/layers/conv2d.c; these are copies of them
 * (same loops, same runtime-stride indexing, so the compiler sees the same
 * code) and must be kept in step with that file. */

static void valid_range(size_t n_out, size_t stride, size_t pad, size_t off, size_t n_in, size_t *j0, size_t *j1) {
    size_t lo = off >= pad ? 0 : (pad - off + stride - 1) / stride;
    size_t hi_lim = pad + n_in;
    size_t hi = off >= hi_lim ? 0 : (hi_lim - off - 1) / stride + 1;
    if (hi > n_out) hi = n_out;
    if (lo > hi) lo = hi;
    *j0 = lo;
    *j1 = hi;
}

static void im2col_copy(const aim__layer *L, const float *x, float *col) {
    const aim__window *w = &AIM__CFG(aim__conv2d_cfg, L)->win;
    const size_t Cg = L->in_dims[0] / w->groups, H = L->in_dims[1], W = L->in_dims[2], HW = H * W;
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2], HWo = Ho * Wo;
    for (size_t c = 0; c < Cg; c++)
        for (size_t p = 0; p < w->kh; p++)
            for (size_t q = 0; q < w->kw; q++) {
                float *row = col + ((c * w->kh + p) * w->kw + q) * HWo;
                size_t i0, i1, j0, j1;
                valid_range(Ho, w->sh, w->pt, p * w->dh, H, &i0, &i1);
                valid_range(Wo, w->sw, w->pl, q * w->dw, W, &j0, &j1);
                memset(row, 0, i0 * Wo * sizeof(float));
                for (size_t i = i0; i < i1; i++) {
                    float *r = row + i * Wo;
                    const float *xr = x + c * HW + (i * w->sh + p * w->dh - w->pt) * W;
                    for (size_t j = 0; j < j0; j++) r[j] = 0.0f;
                    if (w->sw == 1) {
                        memcpy(r + j0, xr + (j0 + q * w->dw - w->pl), (j1 - j0) * sizeof(float));
                    } else {
                        for (size_t j = j0; j < j1; j++) r[j] = xr[j * w->sw + q * w->dw - w->pl];
                    }
                    for (size_t j = j1; j < Wo; j++) r[j] = 0.0f;
                }
                memset(row + i1 * Wo, 0, (Ho - i1) * Wo * sizeof(float));
            }
}

static void col2im_copy(const aim__layer *L, const float *dcol, float *dx) {
    const aim__window *w = &AIM__CFG(aim__conv2d_cfg, L)->win;
    const size_t Cg = L->in_dims[0] / w->groups, H = L->in_dims[1], W = L->in_dims[2], HW = H * W;
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2], HWo = Ho * Wo;
    for (size_t c = 0; c < Cg; c++)
        for (size_t p = 0; p < w->kh; p++)
            for (size_t q = 0; q < w->kw; q++) {
                const float *row = dcol + ((c * w->kh + p) * w->kw + q) * HWo;
                size_t i0, i1, j0, j1;
                valid_range(Ho, w->sh, w->pt, p * w->dh, H, &i0, &i1);
                valid_range(Wo, w->sw, w->pl, q * w->dw, W, &j0, &j1);
                for (size_t i = i0; i < i1; i++) {
                    const float *r = row + i * Wo;
                    float *xr = dx + c * HW + (i * w->sh + p * w->dh - w->pt) * W;
                    for (size_t j = j0; j < j1; j++) xr[j * w->sw + q * w->dw - w->pl] += r[j];
                }
            }
}

typedef enum part_kind {
    PART_IM2COL, PART_BIAS, PART_RELU, PART_RELU_BACK, PART_ZERO_DX, PART_COL2IM, PART_BIAS_GRAD
} part_kind;

typedef struct part_job {
    part_kind kind;
    layer_case *c;
    float *col, *dcol; /* one sample's, like the kernel's scratch */
} part_job;

/* Each part over the whole batch, with the loop structure of src/layers/conv2d.c. */
static void part_run(void *p) {
    const part_job *j = p;
    layer_case *c = j->c;
    const aim__layer *L = &c->L;
    const size_t O = L->out_dims[0], HWo = L->out_dims[1] * L->out_dims[2], B = c->B;
    const float *b = c->params + L->weight_count;
    float *db = c->dparams + L->weight_count;
    switch (j->kind) {
    case PART_IM2COL:
        for (size_t n = 0; n < B; n++) im2col_copy(L, c->x + n * L->in_size, j->col);
        break;
    case PART_BIAS:
        for (size_t n = 0; n < B; n++)
            for (size_t o = 0; o < O; o++) {
                float *zo = c->cache + n * L->out_size + o * HWo;
                for (size_t k = 0; k < HWo; k++) zo[k] += b[o];
            }
        break;
    case PART_RELU:
        aim__act_forward(AIM__CFG(aim__conv2d_cfg, L)->act, AIM__CFG(aim__conv2d_cfg, L)->alpha, c->cache, c->y, B, L->out_size);
        break;
    case PART_RELU_BACK:
        aim__act_backward(AIM__CFG(aim__conv2d_cfg, L)->act, AIM__CFG(aim__conv2d_cfg, L)->alpha, c->cache, c->y, c->dy, c->dy, B, L->out_size);
        break;
    case PART_ZERO_DX:
        memset(c->dx, 0, B * L->in_size * sizeof(float));
        break;
    case PART_COL2IM:
        for (size_t n = 0; n < B; n++) col2im_copy(L, j->dcol, c->dx + n * L->in_size);
        break;
    case PART_BIAS_GRAD:
        for (size_t n = 0; n < B; n++)
            for (size_t o = 0; o < O; o++) {
                const float *dzo = c->dy + n * L->out_size + o * HWo;
                float s = 0.0f;
                for (size_t k = 0; k < HWo; k++) s += dzo[k];
                db[o] += s;
            }
        break;
    }
}

/* The bias-gradient pass accumulates like the kernel; start it from zero. */
static void part_zero_grads(void *p) { case_zero_grads(((part_job *)p)->c); }

/* ---- the training step ------------------------------------------------------ */

enum { PH_ZERO, PH_FORWARD, PH_LOSS, PH_BACKWARD, PH_OPTIM, PH_COUNT };
static const char *const PHASE_NAME[PH_COUNT] = {"zero_grad", "forward (TRAIN)", "loss_sparse", "backward",
                                                 "Adam step"};

static void print_env(const char *name) {
    const char *v = getenv(name);
    printf(" %s=%s", name, v ? v : "(unset)");
}

static void print_row(const char *name, size_t calls, stats s, double flops) {
    printf("  %-44s %5zu %9.3f %9.3f", name, calls, s.med, s.min);
    if (flops > 0.0) printf(" %9.2f %9.2f", gflops(flops, s.med), gflops(flops, s.min));
    printf("\n");
}

static void print_header(const char *first) {
    printf("  %-44s %5s %9s %9s %9s %9s\n", first, "calls", "med ms", "min ms", "GF/s med", "GF/s min");
}

int main(int argc, char **argv) {
    if (argc > 1) g_reps = strtoul(argv[1], NULL, 10);
    if (argc > 2) g_warmup = strtoul(argv[2], NULL, 10);
    if (g_reps == 0 || g_reps > 100000 || g_warmup > 100000) {
        fprintf(stderr, "usage: %s [repetitions (1..100000, default 30) [warm-up runs (default 5)]]\n", argv[0]);
        return 1;
    }
    g_samples = malloc(g_reps * sizeof *g_samples);
    if (!g_samples) return 1;
    const size_t B = BATCH;

    /* ---- the model, through the public API ---- */
    aim_model *m;
    aim_conv2d_config cc;
    aim_pool2d_config pc;
    aim_dense_config dc;
    aim_compile_config comp;
    const size_t in_dims[3] = {1, IMG, IMG};
    CHECK(aim_model_create(NULL, 3, in_dims, &m), NULL);
    const char *merr = aim_model_last_error(m);
    CHECK(aim_conv2d_config_init(&cc, C1, KSIZE, KSIZE, AIM_ACT_RELU), merr);
    CHECK(aim_model_add_conv2d(m, &cc), merr);
    CHECK(aim_pool2d_config_init(&pc, 2, 2), merr);
    CHECK(aim_model_add_max_pool2d(m, &pc), merr);
    CHECK(aim_conv2d_config_init(&cc, C2, KSIZE, KSIZE, AIM_ACT_RELU), merr);
    CHECK(aim_model_add_conv2d(m, &cc), merr);
    CHECK(aim_model_add_max_pool2d(m, &pc), merr);
    CHECK(aim_model_add_flatten(m), merr);
    CHECK(aim_dense_config_init(&dc, HIDDEN, AIM_ACT_RELU), merr);
    CHECK(aim_model_add_dense(m, &dc), merr);
    CHECK(aim_dense_config_init(&dc, CLASSES, AIM_ACT_IDENTITY), merr);
    CHECK(aim_model_add_dense(m, &dc), merr);
    CHECK(aim_compile_config_init(&comp), merr);
    comp.max_batch = B;
    comp.seed = SEED;
    CHECK(aim_model_compile(m, &comp), merr);
    float *params;
    size_t n_params;
    CHECK(aim_model_parameters(m, &params, &n_params), merr);
    aim_optimizer *opt;
    CHECK(aim_adam_create(NULL, NULL, n_params, &opt), NULL);
    size_t mem_bytes;
    CHECK(aim_model_memory_size(m, &mem_bytes), merr);

    aim_rng *rng;
    CHECK(aim_rng_create(NULL, SEED, &rng), NULL);
    const size_t in_size = aim_model_input_size(m);
    float *input = falloc(B * in_size);
    fill_uniform(rng, input, B * in_size, 0.0f, 1.0f);
    int32_t labels[BATCH];
    for (size_t i = 0; i < B; i++) {
        uint64_t u;
        CHECK(aim_rng_below(rng, CLASSES, &u), NULL);
        labels[i] = (int32_t)u;
    }

    /* ---- the same layers by hand, checked against the model ---- */
    enum { NL = 7 };
    layer_case lc[NL];
    memset(lc, 0, sizeof lc);
    conv_layer(&lc[0].L, 1, IMG, IMG, C1, KSIZE);
    pool_layer(&lc[1].L, C1, lc[0].L.out_dims[1], lc[0].L.out_dims[2], 2);
    conv_layer(&lc[2].L, C1, lc[1].L.out_dims[1], lc[1].L.out_dims[2], C2, KSIZE);
    pool_layer(&lc[3].L, C2, lc[2].L.out_dims[1], lc[2].L.out_dims[2], 2);
    flatten_layer(&lc[4].L, &lc[3].L);
    dense_layer(&lc[5].L, lc[4].L.out_size, HIDDEN, AIM_ACT_RELU);
    dense_layer(&lc[6].L, HIDDEN, CLASSES, AIM_ACT_IDENTITY);
    if (aim_model_layer_count(m) != NL) {
        fprintf(stderr, "bench_cnn: the model has %zu layers, the bench expects %d\n", aim_model_layer_count(m),
                NL);
        return 2;
    }
    const float *prev = input;
    for (size_t i = 0; i < NL; i++) {
        aim__layer *L = &lc[i].L;
        size_t rank, dims[AIM_MAX_RANK], off = 0, wc = 0, bc = 0;
        CHECK(aim_model_layer_shape(m, i, &rank, dims), merr);
        CHECK(aim_model_layer_parameters(m, i, &off, &wc, &bc), merr);
        if (rank != L->out_rank || memcmp(dims, L->out_dims, rank * sizeof dims[0]) != 0 || wc != L->weight_count ||
            bc != L->bias_count) {
            fprintf(stderr, "bench_cnn: hand-built layer %zu differs from the model's\n", i);
            return 2;
        }
        if (L->in_rank == 3 && L->out_rank == 1)
            snprintf(lc[i].name, sizeof lc[i].name, "%zu %s %zux%zux%zu -> %zu", i, L->ops->name, L->in_dims[0],
                     L->in_dims[1], L->in_dims[2], L->out_size);
        else if (L->out_rank == 1)
            snprintf(lc[i].name, sizeof lc[i].name, "%zu %s %zu -> %zu", i, L->ops->name, L->in_size, L->out_size);
        else
            snprintf(lc[i].name, sizeof lc[i].name, "%zu %s %zux%zux%zu -> %zux%zux%zu", i, L->ops->name,
                     L->in_dims[0], L->in_dims[1], L->in_dims[2], L->out_dims[0], L->out_dims[1], L->out_dims[2]);
        case_alloc(&lc[i], prev, B, i > 0, rng);
        if (lc[i].params) memcpy(lc[i].params, params + off, (wc + bc) * sizeof(float));
        case_forward(&lc[i]); /* realistic inputs for the next layer */
        prev = lc[i].y;
    }
    layer_case *conv[2] = {&lc[0], &lc[2]};
    layer_case *dense[2] = {&lc[5], &lc[6]};

    printf("bench_cnn: libaimodel %s, seed CNN, batch %zu; every figure is median / min over %zu runs after %zu "
           "warm-up runs\n",
           aim_version(), B, g_reps, g_warmup);
    printf("OpenBLAS: core %s, %d thread(s); config \"%s\"\n", openblas_get_corename(), openblas_get_num_threads(),
           openblas_get_config());
    printf("environment:");
    print_env("OPENBLAS_CORETYPE");
    print_env("OPENBLAS_NUM_THREADS");
    print_env("OPENBLAS_L2_SIZE");
    print_env("OMP_NUM_THREADS");
    printf("; %ld CPU(s) online\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("model: 1x28x28 -> conv 32 3x3 relu -> maxpool 2 -> conv 64 3x3 relu -> maxpool 2 -> flatten -> dense 64 "
           "relu -> dense 10;\n       softmax cross-entropy, Adam lr 1e-3; %zu parameters, %zu bytes after compile\n",
           n_params, mem_bytes);

    /* ---- 1. the training step, through the public API ---- */
    double *phase = malloc(PH_COUNT * g_reps * sizeof *phase);
    if (!phase) return 1;
    float loss = 0.0f;
    for (size_t r = 0; r < g_warmup + g_reps; r++) {
        double t[PH_COUNT + 1];
        t[0] = now_ms();
        CHECK(aim_model_zero_grad(m), merr);
        t[1] = now_ms();
        CHECK(aim_model_forward(m, AIM_MODE_TRAIN, input, B * in_size, B), merr);
        t[2] = now_ms();
        CHECK(aim_model_loss_sparse(m, 0, labels, sizeof labels / sizeof labels[0], &loss), merr);
        t[3] = now_ms();
        CHECK(aim_model_backward(m, NULL, 0), merr);
        t[4] = now_ms();
        CHECK(aim_optimizer_step_model(opt, m, LEARNING_RATE), aim_optimizer_last_error(opt));
        t[5] = now_ms();
        if (r < g_warmup) continue;
        g_samples[r - g_warmup] = t[PH_COUNT] - t[0];
        for (size_t p = 0; p < PH_COUNT; p++) phase[p * g_reps + r - g_warmup] = t[p + 1] - t[p];
    }
    const stats step = summarize(g_samples, g_reps);
    printf("\n== 1. training step: zero_grad, forward TRAIN, loss_sparse, backward, Adam step (loss now %.4f)\n",
           (double)loss);
    printf("  %-44s %9.3f ms median  %9.3f ms min  (%.0f images/s at the median)\n", "whole step", step.med, step.min,
           (double)B / step.med * 1e3);
    for (size_t p = 0; p < PH_COUNT; p++) {
        stats s = summarize(phase + p * g_reps, g_reps);
        printf("  %-44s %9.3f ms median  %9.3f ms min  (%4.1f%% of the step median)\n", PHASE_NAME[p], s.med, s.min,
               100.0 * s.med / step.med);
    }

    /* ---- 2. per layer, private kernels on the hand-built layers ---- */
    printf("\n== 2. per layer: private kernels (aim__conv2d_*, aim__pool_*, aim__dense_*) on hand-built layers with the\n"
           "   model's geometry and weights, hot caches; backward computes dX except for layer 0, as the model does\n");
    printf("  %-44s %9s %9s %9s %9s\n", "layer", "fwd med", "fwd min", "bwd med", "bwd min");
    double sum_f = 0.0, sum_b = 0.0;
    for (size_t i = 0; i < NL; i++) {
        timed fb[2] = {job(case_forward, NULL, &lc[i]), job(case_backward, case_zero_grads, &lc[i])};
        measure_set(fb, 2);
        sum_f += fb[0].s.med;
        sum_b += fb[1].s.med;
        printf("  %-44s %9.3f %9.3f %9.3f %9.3f\n", lc[i].name, fb[0].s.med, fb[0].s.min, fb[1].s.med, fb[1].s.min);
    }
    printf("  %-44s %9.3f %9s %9.3f   (ms; the step's forward and backward phases above include cold caches)\n",
           "sum of medians", sum_f, "", sum_b);

    /* ---- 3. conv kernels against the same GEMM shapes ---- */
    printf("\n== 3. conv2d kernels against cblas_sgemm on the same shapes, same run (all rows of a layer interleaved)\n"
           "   FLOPs: forward = 2*B*O*Ho*Wo*C*kh*kw; backward = 2 x forward when dX is computed (dW and dcol GEMMs),\n"
           "   1 x forward without dX (layer 0: dx=NULL, dW only). Bias, relu, im2col and col2im count no FLOPs.\n"
           "   Per-sample GEMMs as src/layers/conv2d.c calls them: forward NN M=O N=Ho*Wo K=C*kh*kw, B calls;\n"
           "   dW NT M=O N=K K=Ho*Wo (beta 1), dcol TN M=K N=Ho*Wo K=O, B calls each. Target: kernel >= 70%% of sgemm.\n");
    double gemm_step_ms = 0.0, gemm_step_flops = 0.0;
    for (size_t li = 0; li < 2; li++) {
        layer_case *c = conv[li];
        const aim__layer *L = &c->L;
        const size_t O = L->out_dims[0], HWo = L->out_dims[1] * L->out_dims[2];
        const size_t K = L->in_dims[0] * AIM__CFG(aim__conv2d_cfg, L)->win.kh * AIM__CFG(aim__conv2d_cfg, L)->win.kw;
        const double f_fwd = 2.0 * (double)B * (double)O * (double)HWo * (double)K;
        const double f_bwd = c->with_dx ? 2.0 * f_fwd : f_fwd;
        /* The direct GEMMs write to buffers of their own: were the forward GEMM
         * to fill the layer's Z with one sample's product repeated B times,
         * the branch predictor would learn the relu pattern and the relu pass
         * below would run several times faster than on real data. */
        float *col = falloc(K * HWo), *dcol = falloc(K * HWo), *dw = falloc(O * K), *zg = falloc(B * O * HWo);
        im2col_copy(L, c->x, col);
        char nm[64];
        snprintf(nm, sizeof nm, "sgemm NN M=%zu N=%zu K=%zu", O, HWo, K);
        gemm_job gf = gemm(nm, CblasNoTrans, CblasNoTrans, O, HWo, K, 0.0f, B, c->params, 0, col, 0, zg, O * HWo);
        snprintf(nm, sizeof nm, "sgemm NT M=%zu N=%zu K=%zu (dW)", O, K, HWo);
        gemm_job gw = gemm(nm, CblasNoTrans, CblasTrans, O, K, HWo, 1.0f, B, c->dy, O * HWo, col, 0, dw, 0);
        snprintf(nm, sizeof nm, "sgemm TN M=%zu N=%zu K=%zu (dcol)", K, HWo, O);
        gemm_job gd = gemm(nm, CblasTrans, CblasNoTrans, K, HWo, O, 0.0f, B, c->params, 0, c->dy, O * HWo, dcol, 0);
        /* Where the rest of the kernel's time goes: each other pass alone. */
        part_job pj[7];
        for (size_t k = 0; k < 7; k++) pj[k] = (part_job){(part_kind)k, c, col, dcol};
        enum { T_KF, T_KB, T_GF, T_GW, T_IM2COL, T_BIAS, T_RELU, T_RELUB, T_DB, T_GD, T_ZERO, T_COL2IM, T_N };
        timed t[T_N] = {
            [T_KF] = job(case_forward, NULL, c),
            [T_KB] = job(case_backward, case_zero_grads, c),
            [T_GF] = job(gemm_run, NULL, &gf),
            [T_GW] = job(gemm_run, NULL, &gw),
            [T_IM2COL] = job(part_run, NULL, &pj[PART_IM2COL]),
            [T_BIAS] = job(part_run, NULL, &pj[PART_BIAS]),
            [T_RELU] = job(part_run, NULL, &pj[PART_RELU]),
            [T_RELUB] = job(part_run, NULL, &pj[PART_RELU_BACK]),
            [T_DB] = job(part_run, part_zero_grads, &pj[PART_BIAS_GRAD]),
            [T_GD] = job(gemm_run, NULL, &gd),
            [T_ZERO] = job(part_run, NULL, &pj[PART_ZERO_DX]),
            [T_COL2IM] = job(part_run, NULL, &pj[PART_COL2IM]),
        };
        measure_set(t, c->with_dx ? (size_t)T_N : (size_t)T_GD); /* the last three only with dX */
        const stats zero = {0.0, 0.0};
        if (!c->with_dx) t[T_GD].s = t[T_ZERO].s = t[T_COL2IM].s = zero;
        const stats kf = t[T_KF].s, kb = t[T_KB].s, sf = t[T_GF].s, sw = t[T_GW].s, sd = t[T_GD].s;
        const double gemm_b_med = sw.med + sd.med, gemm_b_min = sw.min + sd.min;
        printf("\n  conv layer %zu: C=%zu O=%zu %zux%zu -> %zux%zu, K=C*kh*kw=%zu; forward %.1f MFLOP, backward %.1f "
               "MFLOP%s\n",
               li == 0 ? (size_t)0 : (size_t)2, L->in_dims[0], O, L->in_dims[1], L->in_dims[2], L->out_dims[1],
               L->out_dims[2], K, f_fwd * 1e-6, f_bwd * 1e-6, c->with_dx ? "" : " (no dX)");
        print_header("kernel / GEMM");
        print_row("aim__conv2d_forward", 1, kf, f_fwd);
        print_row(gf.name, B, sf, f_fwd);
        printf("  %-44s %5s %8.1f%% of the sgemm rate at the median, %.1f%% at the min\n", "-> forward efficiency", "",
               100.0 * sf.med / kf.med, 100.0 * sf.min / kf.min);
        print_row(c->with_dx ? "aim__conv2d_backward (dW, db, dX)" : "aim__conv2d_backward (dW, db; dx=NULL)", 1, kb,
                  f_bwd);
        print_row(gw.name, B, sw, gemm_flops(&gw));
        if (c->with_dx) print_row(gd.name, B, sd, gemm_flops(&gd));
        printf("  %-44s %5s %9.3f %9.3f %9.2f %9.2f\n", "sgemm backward total", "", gemm_b_med, gemm_b_min,
               gflops(f_bwd, gemm_b_med), gflops(f_bwd, gemm_b_min));
        printf("  %-44s %5s %8.1f%% of the sgemm rate at the median, %.1f%% at the min\n", "-> backward efficiency", "",
               100.0 * gemm_b_med / kb.med, 100.0 * gemm_b_min / kb.min);

        const double p_im2col = t[T_IM2COL].s.med, p_bias = t[T_BIAS].s.med, p_relu = t[T_RELU].s.med;
        const double p_relub = t[T_RELUB].s.med, p_db = t[T_DB].s.med, p_zero = t[T_ZERO].s.med;
        const double p_col2im = t[T_COL2IM].s.med;
        const double parts_f = p_im2col + sf.med + p_bias + p_relu;
        const double parts_b = p_relub + p_zero + p_im2col + sw.med + sd.med + p_col2im + p_db;
        printf("  split (ms, medians, each pass alone over the batch; copies of the loops of src/layers/conv2d.c):\n");
        printf("    forward  %.3f = im2col %.3f + GEMM %.3f + bias %.3f + relu %.3f   (sum %.3f; im2col+bias+relu "
               "%.0f%% of the sum)\n",
               kf.med, p_im2col, sf.med, p_bias, p_relu, parts_f, 100.0 * (parts_f - sf.med) / parts_f);
        printf("    backward %.3f = relu' %.3f + zero dX %.3f + im2col %.3f + GEMM dW %.3f + GEMM dcol %.3f + col2im "
               "%.3f + db %.3f\n"
               "             (sum %.3f; non-GEMM passes %.0f%% of the sum)\n",
               kb.med, p_relub, p_zero, p_im2col, sw.med, sd.med, p_col2im, p_db, parts_b,
               100.0 * (parts_b - sw.med - sd.med) / parts_b);

        /* What one GEMM per batch (N = B*Ho*Wo) would reach on the same work. */
        float *col_all = falloc(K * B * HWo), *z_all = falloc(O * B * HWo), *dz_all = falloc(O * B * HWo),
              *dcol_all = falloc(K * B * HWo);
        fill_uniform(rng, col_all, K * B * HWo, -1.0f, 1.0f);
        fill_uniform(rng, dz_all, O * B * HWo, -1e-2f, 1e-2f);
        gemm_job bj[3];
        snprintf(nm, sizeof nm, "sgemm NN M=%zu N=%zu K=%zu", O, B * HWo, K);
        bj[0] = gemm(nm, CblasNoTrans, CblasNoTrans, O, B * HWo, K, 0.0f, 1, c->params, 0, col_all, 0, z_all, 0);
        snprintf(nm, sizeof nm, "sgemm NT M=%zu N=%zu K=%zu (dW)", O, K, B * HWo);
        bj[1] = gemm(nm, CblasNoTrans, CblasTrans, O, K, B * HWo, 1.0f, 1, dz_all, 0, col_all, 0, dw, 0);
        snprintf(nm, sizeof nm, "sgemm TN M=%zu N=%zu K=%zu (dcol)", K, B * HWo, O);
        bj[2] = gemm(nm, CblasTrans, CblasNoTrans, K, B * HWo, O, 0.0f, 1, c->params, 0, dz_all, 0, dcol_all, 0);
        const size_t nb = c->with_dx ? 3 : 2;
        timed bt[3];
        for (size_t k = 0; k < nb; k++) bt[k] = job(gemm_run, NULL, &bj[k]);
        measure_set(bt, nb);
        printf("  what-if, one GEMM over the whole batch (col of K x B*Ho*Wo; not what the library does today):\n");
        for (size_t k = 0; k < nb; k++) print_row(bj[k].name, 1, bt[k].s, gemm_flops(&bj[k]));
        free(col_all), free(z_all), free(dz_all), free(dcol_all);
        free(col), free(dcol), free(dw), free(zg);

        gemm_step_ms += sf.med + sw.med + sd.med;
        gemm_step_flops += f_fwd + f_bwd;
    }

    /* ---- 4. the share of the step inside cblas_sgemm ---- */
    printf("\n== 4. share of the training step inside cblas_sgemm, ESTIMATED: every GEMM shape of one step timed by\n"
           "   direct cblas_sgemm calls (hot caches) and divided by the measured step median\n");
    print_header("GEMM shape");
    double dense_ms = 0.0;
    gemm_job dj[6];
    float *dense_out[2];
    for (size_t li = 0; li < 2; li++) {
        layer_case *c = dense[li];
        const size_t in = c->L.in_size, out = c->L.out_size;
        float *z = dense_out[li] = falloc(B * out); /* not the layer's own Z, as in section 3 */
        char nm[64];
        snprintf(nm, sizeof nm, "dense %zu->%zu fwd NT M=%zu N=%zu K=%zu", in, out, B, out, in);
        dj[3 * li] = gemm(nm, CblasNoTrans, CblasTrans, B, out, in, 0.0f, 1, c->x, 0, c->params, 0, z, 0);
        snprintf(nm, sizeof nm, "dense %zu->%zu dW TN M=%zu N=%zu K=%zu", in, out, out, in, B);
        dj[3 * li + 1] = gemm(nm, CblasTrans, CblasNoTrans, out, in, B, 1.0f, 1, c->dy, 0, c->x, 0, c->dparams, 0);
        snprintf(nm, sizeof nm, "dense %zu->%zu dX NN M=%zu N=%zu K=%zu", in, out, B, in, out);
        dj[3 * li + 2] = gemm(nm, CblasNoTrans, CblasNoTrans, B, in, out, 0.0f, 1, c->dy, 0, c->params, 0, c->dx, 0);
    }
    timed dt[6];
    for (size_t k = 0; k < 6; k++) dt[k] = job(gemm_run, NULL, &dj[k]);
    measure_set(dt, 6);
    for (size_t k = 0; k < 6; k++) {
        print_row(dj[k].name, 1, dt[k].s, gemm_flops(&dj[k]));
        dense_ms += dt[k].s.med;
        gemm_step_flops += gemm_flops(&dj[k]);
    }
    free(dense_out[0]), free(dense_out[1]);
    printf("  %-44s %5s %9.3f   (from section 3, medians)\n", "conv GEMMs (fwd, dW, dcol; per sample)", "",
           gemm_step_ms);
    gemm_step_ms += dense_ms;
    printf("  %-44s %5s %9.3f   = %.1f%% of the step median %.3f ms\n", "all GEMMs of one step", "", gemm_step_ms,
           100.0 * gemm_step_ms / step.med, step.med);
    printf("  step rate: %.2f GFLOP/s of GEMM work (%.1f MFLOP) per step median; the GEMMs alone run at %.2f GFLOP/s\n",
           gflops(gemm_step_flops, step.med), gemm_step_flops * 1e-6, gflops(gemm_step_flops, gemm_step_ms));

    for (size_t i = 0; i < NL; i++) {
        free(lc[i].y), free(lc[i].cache), free(lc[i].dy), free(lc[i].dx), free(lc[i].scratch);
        free(lc[i].params), free(lc[i].dparams);
    }
    free(phase);
    free(input);
    free(g_samples);
    aim_rng_free(rng);
    aim_optimizer_free(opt);
    aim_model_free(m);
    return 0;
}
