/*
 * bench_lstm: where the time of one training step of the seed LSTM
 * classifier goes, and how much of it is spent inside cblas_sgemm versus the
 * library's own elementwise code (the LSTM cell loops). A standalone
 * program (no test framework): it prints figures and never fails on timing;
 * it exits 1 only when an aim_ call (or an allocation) fails, 2 if its
 * hand-built layer or its copies of the loops of src/layers/lstm.c disagree with
 * the library.
 *
 *   usage: bench_lstm [repetitions [warm-up runs]]     (default 30 and 5)
 *
 * The seed LSTM classifier: each Fashion-MNIST-like 28x28 image (random
 * pixels in [0, 1) and random labels, fixed seed; 8 batches cycled through by
 * the steps) is a sequence of 28 rows of 28 features:
 *   28x28 -> LSTM hidden 128, 2 stacked layers, last step -> Dense 10 (logits)
 *   softmax cross-entropy (aim_model_loss_sparse), Adam lr 1e-3 (defaults).
 * One model per training batch (32 and 128), compiled with that max_batch;
 * then aim_model_predict() at batch 1 on the batch-32 model; then the same
 * classifier with a GRU of the same size (issue 14) at both batches: its
 * step, every sgemm shape it issues, and its layer's kernels alone.
 *
 * Every figure is the median and the minimum over the repetitions of one
 * timed call (CLOCK_MONOTONIC), after the warm-up runs. Per batch: 1. the
 * training step and its phases; 2. every GEMM of the step called directly,
 * then what-ifs (other arrangements of the same GEMM work); 3. the
 * elementwise loops, then a what-if (tanh(c_t) kept by the forward);
 * 4. where the step goes. Then the latency of aim_model_predict at batch 1.
 * "What-if" rows measure code the library does not run, to size a change.
 *
 * The share of the step inside cblas_sgemm is given two ways:
 *  - ESTIMATED, as bench_cnn does: every GEMM shape that
 *    src/layers/lstm.c and src/layers/dense.c issue in one step, with the same transposes,
 *    leading dimensions and call counts, called directly (hot caches) and
 *    summed;
 *  - MEASURED IN SITU, when the program is linked with
 *    -Wl,--wrap=cblas_sgemm (run.sh does): every cblas_sgemm call, the
 *    library's included, then goes through __wrap_cblas_sgemm below, which
 *    times it during the training steps of section 1 and tallies it by shape.
 *    The tally also checks that the direct shapes are exactly those the
 *    library issues. Built without the flag, those rows say "n/a".
 * The elementwise code (bias add, cell loops, bias gradient) is timed through
 * copies of the loops of src/layers/lstm.c, which are static there; they must be
 * kept in step with that file (the program checks its copies of the forward
 * and of the backward recursion against the library's kernels bit for bit,
 * and exits 2 if they differ). Their sum plus the in-situ sgemm time should
 * come close to the step; section 4 prints the remainder.
 *
 * The environment (OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS) is only read and
 * printed; tests/bench/run.sh varies it from outside.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#define BENCH_NAME "bench_lstm"
#include "bench_util.h"

enum { T_STEPS = 28, FEATURES = 28, HIDDEN = 128, LAYERS = 2, CLASSES = 10 };
static const size_t TRAIN_BATCHES[] = {32, 128};
static const float LEARNING_RATE = 1e-3f;
static const uint64_t SEED = 20260101u;

/* ---- the machine's load ------------------------------------------------- */

/* The 1-minute load average (Linux /proc/loadavg), or -1 where unknown: other
 * processes competing for the CPUs inflate the medians, not the minima. */
static double load_average(void) {
    double la = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &la) != 1) la = -1.0;
        fclose(f);
    }
    return la;
}

static void print_load(const char *when) {
    double la = load_average();
    if (la >= 0.0) printf("load average (1 min) %s: %.2f on %ld CPU(s)\n", when, la, sysconf(_SC_NPROCESSORS_ONLN));
}

/* ---- in-situ sgemm timing (link with -Wl,--wrap=cblas_sgemm) -------------- */
/* With the flag, the linker sends every reference to cblas_sgemm (this file's
 * and the library's) to __wrap_cblas_sgemm, and __real_cblas_sgemm to
 * OpenBLAS' function. Without it, the wrapper is never called and the weak
 * __real_cblas_sgemm stays NULL. While g_insitu is set the wrapper adds each
 * call's time to a per-shape tally: two clock reads and a short search per
 * call (the header prints what that costs). */

void __real_cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                        blasint N, blasint K, float alpha, const float *A, blasint lda, const float *B, blasint ldb,
                        float beta, float *C, blasint ldc) __attribute__((weak));
void __wrap_cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                        blasint N, blasint K, float alpha, const float *A, blasint lda, const float *B, blasint ldb,
                        float beta, float *C, blasint ldc);

typedef struct sgemm_key {
    int ta, tb;
    long M, N, K, lda, ldb, ldc;
} sgemm_key;

typedef struct tally {
    sgemm_key key;
    size_t calls;
    double ms;
    int matched; /* a direct row of section 3 has this shape */
} tally;

enum { MAX_TALLY = 64 };
static tally g_tally[MAX_TALLY];
static size_t g_ntally, g_tally_lost;
static int g_insitu;          /* nonzero: time and tally every call */
static double g_insitu_ms;    /* running total of the timed calls */
static size_t g_insitu_calls; /* running count */

static int insitu_available(void) { return __real_cblas_sgemm != NULL; }

static int key_eq(const sgemm_key *a, const sgemm_key *b) {
    return a->ta == b->ta && a->tb == b->tb && a->M == b->M && a->N == b->N && a->K == b->K && a->lda == b->lda &&
           a->ldb == b->ldb && a->ldc == b->ldc;
}

void __wrap_cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                        blasint N, blasint K, float alpha, const float *A, blasint lda, const float *B, blasint ldb,
                        float beta, float *C, blasint ldc) {
    if (!g_insitu) {
        __real_cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    double t0 = now_ms();
    __real_cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double dt = now_ms() - t0;
    g_insitu_ms += dt;
    g_insitu_calls++;
    sgemm_key k = {(int)ta, (int)tb, (long)M, (long)N, (long)K, (long)lda, (long)ldb, (long)ldc};
    for (size_t i = 0; i < g_ntally; i++)
        if (key_eq(&g_tally[i].key, &k)) {
            g_tally[i].calls++;
            g_tally[i].ms += dt;
            return;
        }
    if (g_ntally < MAX_TALLY) {
        g_tally[g_ntally].key = k;
        g_tally[g_ntally].calls = 1;
        g_tally[g_ntally].ms = dt;
        g_tally[g_ntally].matched = 0;
        g_ntally++;
    } else {
        g_tally_lost++;
    }
}

static void tally_reset(void) {
    g_ntally = 0;
    g_tally_lost = 0;
    g_insitu_ms = 0.0;
    g_insitu_calls = 0;
}

static tally *tally_find(const sgemm_key *k) {
    for (size_t i = 0; i < g_ntally; i++)
        if (key_eq(&g_tally[i].key, k)) return &g_tally[i];
    return NULL;
}

/* ---- direct GEMM jobs: the shapes the kernels issue, called directly ------ */

/* `count` calls of one shape; the operands of call i are A + i*sa, B + i*sb,
 * C + i*sc (negative steps walk backwards, as BPTT does). */
typedef struct gemm_part {
    CBLAS_TRANSPOSE ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    size_t count;
    const float *A, *Bm;
    float *C;
    ptrdiff_t sa, sb, sc;
} gemm_part;

/* A row of the GEMM tables: one or two parts (the two sub-layers of one
 * shape, or a what-if made of two calls). */
typedef struct gemm_group {
    char name[80];
    gemm_part part[2];
    size_t nparts;
    stats s;
} gemm_group;

static void gemm_part_run(const gemm_part *g) {
    for (size_t i = 0; i < g->count; i++) {
        const ptrdiff_t k = (ptrdiff_t)i;
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, BI(g->M), BI(g->N), BI(g->K), g->alpha, g->A + k * g->sa,
                    BI(g->lda), g->Bm + k * g->sb, BI(g->ldb), g->beta, g->C + k * g->sc, BI(g->ldc));
    }
}

static void gemm_group_run(void *p) {
    const gemm_group *g = p;
    for (size_t i = 0; i < g->nparts; i++) gemm_part_run(&g->part[i]);
}

static double part_flops(const gemm_part *g) {
    return 2.0 * (double)g->M * (double)g->N * (double)g->K * (double)g->count;
}

static double group_flops(const gemm_group *g) {
    double f = 0.0;
    for (size_t i = 0; i < g->nparts; i++) f += part_flops(&g->part[i]);
    return f;
}

static size_t group_calls(const gemm_group *g) {
    size_t n = 0;
    for (size_t i = 0; i < g->nparts; i++) n += g->part[i].count;
    return n;
}

static sgemm_key part_key(const gemm_part *g) {
    sgemm_key k = {(int)g->ta, (int)g->tb, (long)g->M, (long)g->N, (long)g->K,
                   (long)g->lda, (long)g->ldb, (long)g->ldc};
    return k;
}

static gemm_part gp(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, size_t M, size_t N, size_t K, size_t lda, size_t ldb,
                    size_t ldc, float alpha, float beta, size_t count, const float *A, ptrdiff_t sa, const float *Bm,
                    ptrdiff_t sb, float *C, ptrdiff_t sc) {
    gemm_part g = {ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, count, A, Bm, C, sa, sb, sc};
    return g;
}

static gemm_group group1(const char *name, gemm_part a) {
    gemm_group g;
    memset(&g, 0, sizeof g);
    snprintf(g.name, sizeof g.name, "%s", name);
    g.part[0] = a;
    g.nparts = 1;
    return g;
}

static gemm_group group2(const char *name, gemm_part a, gemm_part b) {
    gemm_group g = group1(name, a);
    g.part[1] = b;
    g.nparts = 2;
    return g;
}

/* ---- copies of the elementwise loops of src/layers/lstm.c ------------------------ */
/* cell_forward, cell_backward and the two bias loops are static in
 * src/layers/lstm.c; these are copies (same expressions, same loop structure, the
 * same inline aim__exp/aim__sigmoid/aim__tanh from src/core/fastmath.h, the same
 * AIM__HOT multiversioning attribute), compiled with the library's LIB_OPT by
 * run.sh so that GCC sees the same code. They must follow src/layers/lstm.c: the
 * program checks them against the library's kernels bit for bit and exits 2
 * when they differ. The model sets no initial state (h0 = c0 = NULL). */

#include "fastmath.h"

#ifndef AIM__HOT
#define AIM__HOT
#endif

/* A zero row: what src/layers/lstm.c's backward passes for an absent c_{t-1} or
 * upstream gradient. */
static const float ZEROS[HIDDEN];

/* The bias loop of sub_forward: every row of (B*T, 4H) += b_ih + b_hh. */
static void bias_add(size_t rows, size_t G, const float *bih, const float *bhh, float *gates) {
    for (size_t r = 0; r < rows; r++) {
        float *a = gates + r * G;
        for (size_t k = 0; k < G; k++) a[k] += bih[k] + bhh[k];
    }
}

AIM__HOT static void cell_forward(float *a, const float *cp, float *c, float *h, size_t H) {
    float *ai = a, *ag = a + 2 * H, *ao = a + 3 * H, *af = a + H;
    for (size_t j = 0; j < 2 * H; j++) ai[j] = aim__sigmoid(ai[j]);
    for (size_t j = 0; j < H; j++) ag[j] = aim__tanh(ag[j]);
    for (size_t j = 0; j < H; j++) ao[j] = aim__sigmoid(ao[j]);
    if (cp)
        for (size_t j = 0; j < H; j++) c[j] = af[j] * cp[j] + ai[j] * ag[j];
    else
        for (size_t j = 0; j < H; j++) c[j] = ai[j] * ag[j];
    for (size_t j = 0; j < H; j++) h[j] = ao[j] * aim__tanh(c[j]);
}

AIM__HOT static void cell_backward(float *restrict a, const float *restrict c, const float *restrict cp,
                                   const float *restrict up, const float *restrict dh, float *restrict dc, size_t H) {
    for (size_t j = 0; j < H; j++) {
        float ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j];
        float tc = aim__tanh(c[j]);
        float dhj = dh[j] + up[j];
        float dcj = dc[j] + dhj * og * (1.0f - tc * tc);
        a[j] = dcj * gg * ig * (1.0f - ig);
        a[H + j] = dcj * cp[j] * fg * (1.0f - fg);
        a[2 * H + j] = dcj * ig * (1.0f - gg * gg);
        a[3 * H + j] = dhj * tc * og * (1.0f - og);
        dc[j] = dcj * fg;
    }
}

/* What-if: cell_backward reading tanh(c_t), which cell_forward computed
 * already, from one more (B, T, H) buffer per sub-layer instead of computing
 * it again. Same bits. */
AIM__HOT static void cell_backward_cached(float *restrict a, const float *restrict tc_row, const float *restrict cp,
                                          const float *restrict up, const float *restrict dh, float *restrict dc,
                                          size_t H) {
    for (size_t j = 0; j < H; j++) {
        float ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j];
        float tc = tc_row[j];
        float dhj = dh[j] + up[j];
        float dcj = dc[j] + dhj * og * (1.0f - tc * tc);
        a[j] = dcj * gg * ig * (1.0f - ig);
        a[H + j] = dcj * cp[j] * fg * (1.0f - fg);
        a[2 * H + j] = dcj * ig * (1.0f - gg * gg);
        a[3 * H + j] = dhj * tc * og * (1.0f - og);
        dc[j] = dcj * fg;
    }
}

/* The cell loop of sub_forward for step t, training layout (cells_all = 1). */
static void gate_fwd_step(size_t B, size_t T, size_t H, size_t t, float *gates, float *c, float *h) {
    const size_t G = 4 * H;
    for (size_t b = 0; b < B; b++) {
        float *a = gates + (b * T + t) * G;
        float *ht = h + (b * T + t) * H;
        float *ct = c + (b * T + t) * H;
        const float *cp = t ? ct - H : NULL;
        cell_forward(a, cp, ct, ht, H);
    }
}

/* The cell loop of aim__lstm_backward for step t: activated gates become dA
 * in place. `dabove` is (B, H) used at t = T-1 only when `last_only`, else
 * (B, T, H). With `tanh_c` (B, T, H) the what-if variant runs. */
static void gate_bwd_step(size_t B, size_t T, size_t H, size_t t, float *gates, const float *cells,
                          const float *tanh_c, float *dh, float *dc, const float *dabove, int last_only) {
    const size_t G = 4 * H;
    for (size_t b = 0; b < B; b++) {
        float *a = gates + (b * T + t) * G;
        const float *ct = cells + (b * T + t) * H;
        float *dhb = dh + b * H, *dcb = dc + b * H;
        const float *up = last_only ? (t == T - 1 ? dabove + b * H : ZEROS) : dabove + (b * T + t) * H;
        const float *cp = t ? ct - H : ZEROS;
        if (tanh_c)
            cell_backward_cached(a, tanh_c + (b * T + t) * H, cp, up, dhb, dcb, H);
        else
            cell_backward(a, ct, cp, up, dhb, dcb, H);
    }
}

/* The bias-gradient loop of aim__lstm_backward. */
static void bias_grad(size_t rows, size_t G, const float *gates, float *dbih, float *dbhh) {
    for (size_t r = 0; r < rows; r++) {
        const float *a = gates + r * G;
        for (size_t k = 0; k < G; k++) {
            dbih[k] += a[k];
            dbhh[k] += a[k];
        }
    }
}

/* sub_forward of src/layers/lstm.c (training layout, no initial state), copied with
 * its GEMMs, keeping in `pre` each row's pre-activations as the cell loop
 * finds them (input projection + biases + recurrent term): realistic inputs
 * for timing the cell loop alone. */
static void ref_sub_forward(size_t B, size_t T, size_t in, size_t H, const float *p, const float *x, float *gates,
                            float *pre, float *c, float *h) {
    const float *Wih = p, *Whh = p + 4 * H * in, *bih = Whh + 4 * H * H, *bhh = bih + 4 * H;
    const size_t G = 4 * H;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(B * T), BI(G), BI(in), 1.0f, x, BI(in), Wih, BI(in),
                0.0f, gates, BI(G));
    bias_add(B * T, G, bih, bhh, gates);
    for (size_t t = 0; t < T; t++) {
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(B), BI(G), BI(H), 1.0f, h + (t - 1) * H,
                        BI(T * H), Whh, BI(H), 1.0f, gates + t * G, BI(T * G));
        for (size_t b = 0; b < B; b++) memcpy(pre + (b * T + t) * G, gates + (b * T + t) * G, G * sizeof(float));
        gate_fwd_step(B, T, H, t, gates, c, h);
    }
}

/* The recursion of aim__lstm_backward for one sub-layer, copied: the cell
 * loop and the dh GEMM of every step, turning the activated gates into dA in
 * place (used only to check the copies against the library). */
static void ref_sub_backward(size_t B, size_t T, size_t H, const float *Whh, float *gates, const float *cells,
                             float *dh, float *dc, const float *dabove, int last_only) {
    const size_t G = 4 * H;
    memset(dh, 0, B * H * sizeof(float));
    memset(dc, 0, B * H * sizeof(float));
    for (size_t t = T; t-- > 0;) {
        gate_bwd_step(B, T, H, t, gates, cells, NULL, dh, dc, dabove, last_only);
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(B), BI(H), BI(G), 1.0f, gates + t * G,
                        BI(T * G), Whh, BI(H), 0.0f, dh, BI(H));
    }
}

/* ---- one batch size: buffers, jobs ---------------------------------------- */

static size_t sub_in(size_t l) { return l == 0 ? FEATURES : HIDDEN; }
static size_t sub_params(size_t l) { return 4 * HIDDEN * sub_in(l) + 4 * HIDDEN * HIDDEN + 8 * HIDDEN; }

typedef struct lstm_data {
    size_t B;
    const float *x;         /* (B, T, F) the input */
    const float *p[LAYERS]; /* each sub-layer's parameters (a copy of the model's) */
    float *pre[LAYERS];     /* (B, T, 4H) pre-activations as the cell loop finds them */
    float *act[LAYERS];     /* (B, T, 4H) activated gates, as cached for the backward */
    float *cells[LAYERS];   /* (B, T, H) */
    float *h[LAYERS];       /* (B, T, H) */
    float *tanh_c[LAYERS];  /* (B, T, H) aim__tanh of the cells, for a what-if */
    float *gwork;           /* (B, T, 4H) the part jobs' and GEMMs' gate buffer */
    float *cwork, *hwork;   /* (B, T, H) */
    float *dh, *dh0, *dc;   /* (B, H); dh0 is the pristine random dh */
    float *dtop;            /* (B, H) gradient into the top sub-layer's last step */
    float *dseq;            /* (B, T, H) gradient into sub-layer 0's sequence */
    float *dWhh, *dWih, *db;/* gradient buffers (largest sub-layer) */
    float *hlast, *dlogits, *dlast, *logits, *ddense; /* the dense head's operands */
    const float *wdense;    /* the dense head's weights [10, 128] */
} lstm_data;

typedef enum part_kind {
    PART_BIAS,
    PART_GATES_FWD,
    PART_GATES_BWD,
    PART_GATES_BWD_CACHED, /* what-if */
    PART_BIAS_GRAD,
    PART_COUNT
} part_kind;

static const char *const PART_NAME[PART_COUNT] = {"bias add (b_ih + b_hh, B*T rows)",
                                                  "forward cell loop (3 sigmoid + 2 tanh / cell)",
                                                  "backward cell loop (1 tanh / cell)",
                                                  "  what-if: tanh(c_t) kept by the forward",
                                                  "bias gradient (B*T rows)"};

static int part_is_whatif(part_kind k) { return k == PART_GATES_BWD_CACHED; }

typedef struct part_job {
    part_kind kind;
    size_t l; /* sub-layer */
    lstm_data *d;
} part_job;

/* Before each timed run: the buffers a loop rewrites in place, restored. */
static void part_reset(void *p) {
    const part_job *j = p;
    lstm_data *d = j->d;
    const size_t n = d->B * T_STEPS * 4 * HIDDEN;
    switch (j->kind) {
    case PART_GATES_FWD:
        memcpy(d->gwork, d->pre[j->l], n * sizeof(float));
        break;
    case PART_GATES_BWD:
    case PART_GATES_BWD_CACHED:
        memcpy(d->gwork, d->act[j->l], n * sizeof(float));
        memcpy(d->dh, d->dh0, d->B * HIDDEN * sizeof(float));
        memset(d->dc, 0, d->B * HIDDEN * sizeof(float));
        break;
    case PART_BIAS_GRAD:
        memset(d->db, 0, 8 * HIDDEN * sizeof(float));
        /* fall through */
    default:
        memcpy(d->gwork, d->act[j->l], n * sizeof(float));
        break;
    }
}

static void part_run(void *p) {
    const part_job *j = p;
    lstm_data *d = j->d;
    const size_t B = d->B, T = T_STEPS, H = HIDDEN, G = 4 * H, in = sub_in(j->l);
    const float *bih = d->p[j->l] + G * in + G * H, *bhh = bih + G;
    const int top = j->l == LAYERS - 1;
    switch (j->kind) {
    case PART_BIAS:
        bias_add(B * T, G, bih, bhh, d->gwork);
        break;
    case PART_GATES_FWD:
        for (size_t t = 0; t < T; t++) gate_fwd_step(B, T, H, t, d->gwork, d->cwork, d->hwork);
        break;
    case PART_GATES_BWD:
    case PART_GATES_BWD_CACHED:
        for (size_t t = T; t-- > 0;)
            gate_bwd_step(B, T, H, t, d->gwork, d->cells[j->l], j->kind == PART_GATES_BWD ? NULL : d->tanh_c[j->l],
                          d->dh, d->dc, top ? d->dtop : d->dseq, top);
        break;
    case PART_BIAS_GRAD:
        bias_grad(B * T, G, d->gwork, d->db, d->db + G);
        break;
    default:
        break;
    }
}

/* Runs part `k` once on sub-layer l and returns a copy of what it wrote
 * (gates, then cells and outputs for the forward loops). */
static float *part_result(part_job *pj, lstm_data *d) {
    const size_t ng = d->B * T_STEPS * 4 * HIDDEN, nh = d->B * T_STEPS * HIDDEN;
    part_reset(pj);
    part_run(pj);
    float *r = falloc(ng + 2 * nh);
    memcpy(r, d->gwork, ng * sizeof(float));
    memcpy(r + ng, d->cwork, nh * sizeof(float));
    memcpy(r + ng + nh, d->hwork, nh * sizeof(float));
    return r;
}

/* The GEMMs of one training step, as src/layers/lstm.c and src/layers/dense.c issue them. */
enum {
    G_FWD_IN0, G_FWD_IN1, G_FWD_REC, G_DENSE_FWD,                         /* forward */
    G_DENSE_DW, G_DENSE_DX, G_BWD_DH, G_BWD_DWHH, G_BWD_DWIH0, G_BWD_DWIH1, G_BWD_DX1, /* backward */
    G_STEP_COUNT
};
enum { G_FIRST_BACKWARD = G_DENSE_DW };

static void build_step_gemms(lstm_data *d, gemm_group *g) {
    const size_t B = d->B, T = T_STEPS, H = HIDDEN, G = 4 * H, F = FEATURES;
    const float *Wih[LAYERS], *Whh[LAYERS];
    for (size_t l = 0; l < LAYERS; l++) Wih[l] = d->p[l], Whh[l] = d->p[l] + G * sub_in(l);
    const ptrdiff_t pG = (ptrdiff_t)G, pH = (ptrdiff_t)H, pTG = (ptrdiff_t)(T * G), pTH = (ptrdiff_t)(T * H);
    char nm[80];
    /* forward, per sub-layer: A = X·W_ihᵀ over B*T rows, once */
    snprintf(nm, sizeof nm, "l0 input proj  NT M=%zu N=%zu K=%zu", B * T, G, F);
    g[G_FWD_IN0] = group1(nm, gp(CblasNoTrans, CblasTrans, B * T, G, F, F, F, G, 1.0f, 0.0f, 1, d->x, 0, Wih[0], 0,
                                 d->gwork, 0));
    snprintf(nm, sizeof nm, "l1 input proj  NT M=%zu N=%zu K=%zu", B * T, G, H);
    g[G_FWD_IN1] = group1(nm, gp(CblasNoTrans, CblasTrans, B * T, G, H, H, H, G, 1.0f, 0.0f, 1, d->h[0], 0, Wih[1], 0,
                                 d->gwork, 0));
    /* forward recurrence, t = 1..T-1: A_t += h_{t-1}·W_hhᵀ, lda T*H, ldc T*4H */
    snprintf(nm, sizeof nm, "l0+l1 recurrent NT M=%zu N=%zu K=%zu lda=%zu ldc=%zu", B, G, H, T * H, T * G);
    g[G_FWD_REC] = group2(nm,
                          gp(CblasNoTrans, CblasTrans, B, G, H, T * H, H, T * G, 1.0f, 1.0f, T - 1, d->h[0], pH,
                             Whh[0], 0, d->gwork + G, pG),
                          gp(CblasNoTrans, CblasTrans, B, G, H, T * H, H, T * G, 1.0f, 1.0f, T - 1, d->h[1], pH,
                             Whh[1], 0, d->gwork + G, pG));
    /* the dense head, batch > 1: Z = X·Wᵀ; dW += dZᵀ·X; dX = dZ·W */
    snprintf(nm, sizeof nm, "dense fwd      NT M=%zu N=%d K=%d", B, CLASSES, HIDDEN);
    g[G_DENSE_FWD] = group1(nm, gp(CblasNoTrans, CblasTrans, B, CLASSES, H, H, H, CLASSES, 1.0f, 0.0f, 1, d->hlast, 0,
                                   d->wdense, 0, d->logits, 0));
    snprintf(nm, sizeof nm, "dense dW       TN M=%d N=%d K=%zu", CLASSES, HIDDEN, B);
    g[G_DENSE_DW] = group1(nm, gp(CblasTrans, CblasNoTrans, CLASSES, H, B, CLASSES, H, H, 1.0f, 1.0f, 1, d->dlogits, 0,
                                  d->hlast, 0, d->ddense, 0));
    snprintf(nm, sizeof nm, "dense dX       NN M=%zu N=%d K=%d", B, HIDDEN, CLASSES);
    g[G_DENSE_DX] = group1(nm, gp(CblasNoTrans, CblasNoTrans, B, H, CLASSES, CLASSES, H, H, 1.0f, 0.0f, 1, d->dlogits,
                                  0, d->wdense, 0, d->dlast, 0));
    /* backward, per sub-layer, t = T-1..1: dh_{t-1} = dA_t·W_hh (dA_t rows T*4H apart) */
    snprintf(nm, sizeof nm, "l1+l0 dh       NN M=%zu N=%zu K=%zu lda=%zu", B, H, G, T * G);
    g[G_BWD_DH] = group2(nm,
                         gp(CblasNoTrans, CblasNoTrans, B, H, G, T * G, H, H, 1.0f, 0.0f, T - 1, d->act[1] + (T - 1) * G,
                            -pG, Whh[1], 0, d->dh, 0),
                         gp(CblasNoTrans, CblasNoTrans, B, H, G, T * G, H, H, 1.0f, 0.0f, T - 1, d->act[0] + (T - 1) * G,
                            -pG, Whh[0], 0, d->dh, 0));
    /* dW_hh += dA_tᵀ·h_{t-1}, one GEMM per sample over steps 1..T-1 */
    snprintf(nm, sizeof nm, "l1+l0 dW_hh/smp TN M=%zu N=%zu K=%zu", G, H, T - 1);
    g[G_BWD_DWHH] = group2(nm,
                           gp(CblasTrans, CblasNoTrans, G, H, T - 1, G, H, H, 1.0f, 1.0f, B, d->act[1] + G, pTG, d->h[1],
                              pTH, d->dWhh, 0),
                           gp(CblasTrans, CblasNoTrans, G, H, T - 1, G, H, H, 1.0f, 1.0f, B, d->act[0] + G, pTG, d->h[0],
                              pTH, d->dWhh, 0));
    /* dW_ih += dAᵀ·X over all B*T rows */
    snprintf(nm, sizeof nm, "l0 dW_ih       TN M=%zu N=%zu K=%zu", G, F, B * T);
    g[G_BWD_DWIH0] = group1(nm, gp(CblasTrans, CblasNoTrans, G, F, B * T, G, F, F, 1.0f, 1.0f, 1, d->act[0], 0, d->x, 0,
                                   d->dWih, 0));
    snprintf(nm, sizeof nm, "l1 dW_ih       TN M=%zu N=%zu K=%zu", G, H, B * T);
    g[G_BWD_DWIH1] = group1(nm, gp(CblasTrans, CblasNoTrans, G, H, B * T, G, H, H, 1.0f, 1.0f, 1, d->act[1], 0, d->h[0],
                                   0, d->dWih, 0));
    /* dX = dA·W_ih: sub-layer 1 only (the model asks no gradient of its input) */
    snprintf(nm, sizeof nm, "l1 dX          NN M=%zu N=%zu K=%zu", B * T, H, G);
    g[G_BWD_DX1] = group1(nm, gp(CblasNoTrans, CblasNoTrans, B * T, H, G, G, H, H, 1.0f, 0.0f, 1, d->act[1], 0, Wih[1],
                                 0, d->dseq, 0));
}

/* What the GEMMs would reach in other arrangements (not what the library does). */
enum { W_REC_CONTIG, W_REC_ONE, W_DH_CONTIG, W_DH_ONE, W_DWHH_ONE, W_COUNT };

static void build_whatif_gemms(lstm_data *d, gemm_group *g, float *tm_h, float *tm_g) {
    const size_t B = d->B, T = T_STEPS, H = HIDDEN, G = 4 * H;
    const float *Whh[LAYERS];
    for (size_t l = 0; l < LAYERS; l++) Whh[l] = d->p[l] + G * sub_in(l);
    const ptrdiff_t pBH = (ptrdiff_t)(B * H), pBG = (ptrdiff_t)(B * G);
    char nm[80];
    /* time-major buffers (T, B, ·): each step's rows contiguous */
    snprintf(nm, sizeof nm, "recurrent, time-major: lda=%zu ldc=%zu", H, G);
    g[W_REC_CONTIG] = group2(nm,
                             gp(CblasNoTrans, CblasTrans, B, G, H, H, H, G, 1.0f, 1.0f, T - 1, tm_h, pBH, Whh[0], 0,
                                tm_g + B * G, pBG),
                             gp(CblasNoTrans, CblasTrans, B, G, H, H, H, G, 1.0f, 1.0f, T - 1, tm_h, pBH, Whh[1], 0,
                                tm_g + B * G, pBG));
    snprintf(nm, sizeof nm, "recurrent work as 1 GEMM/sub-layer M=%zu", B * (T - 1));
    g[W_REC_ONE] = group2(nm,
                          gp(CblasNoTrans, CblasTrans, B * (T - 1), G, H, H, H, G, 1.0f, 1.0f, 1, tm_h, 0, Whh[0], 0,
                             tm_g, 0),
                          gp(CblasNoTrans, CblasTrans, B * (T - 1), G, H, H, H, G, 1.0f, 1.0f, 1, tm_h, 0, Whh[1], 0,
                             tm_g, 0));
    snprintf(nm, sizeof nm, "dh, time-major: lda=%zu", G);
    g[W_DH_CONTIG] = group2(nm,
                            gp(CblasNoTrans, CblasNoTrans, B, H, G, G, H, H, 1.0f, 0.0f, T - 1, tm_g + (T - 1) * B * G,
                               -pBG, Whh[1], 0, d->dh, 0),
                            gp(CblasNoTrans, CblasNoTrans, B, H, G, G, H, H, 1.0f, 0.0f, T - 1, tm_g + (T - 1) * B * G,
                               -pBG, Whh[0], 0, d->dh, 0));
    snprintf(nm, sizeof nm, "dh work as 1 GEMM/sub-layer M=%zu", B * (T - 1));
    g[W_DH_ONE] = group2(nm,
                         gp(CblasNoTrans, CblasNoTrans, B * (T - 1), H, G, G, H, H, 1.0f, 0.0f, 1, tm_g, 0, Whh[1], 0,
                            tm_h, 0),
                         gp(CblasNoTrans, CblasNoTrans, B * (T - 1), H, G, G, H, H, 1.0f, 0.0f, 1, tm_g, 0, Whh[0], 0,
                            tm_h, 0));
    /* dW_hh of one sub-layer in two calls instead of B: all B*T-1 consecutive
     * (dA row r, h row r-1) pairs, minus the B-1 pairs that straddle two
     * samples (dA of step 0 of sample b against h of step T-1 of sample b-1).
     * Shown for one sub-layer, against that sub-layer's B calls. */
    snprintf(nm, sizeof nm, "dW_hh 1 sub-layer: TN K=%zu + TN K=%zu alpha -1", B * T - 1, B - 1);
    g[W_DWHH_ONE] = group2(nm,
                           gp(CblasTrans, CblasNoTrans, G, H, B * T - 1, G, H, H, 1.0f, 1.0f, 1, d->act[1] + G, 0,
                              d->h[1], 0, d->dWhh, 0),
                           gp(CblasTrans, CblasNoTrans, G, H, B - 1, T * G, T * H, H, -1.0f, 1.0f, 1,
                              d->act[1] + T * G, 0, d->h[1] + (T - 1) * H, 0, d->dWhh, 0));
}

/* ---- printing ---------------------------------------------------------------- */

static void print_env(const char *name) {
    const char *v = getenv(name);
    printf(" %s=%s", name, v ? v : "(unset)");
}

static void print_gemm_header(int insitu) {
    printf("  %-56s %5s %9s %9s %8s %8s", "GEMM shape (per step)", "calls", "med ms", "min ms", "GF/s md", "GF/s mn");
    if (insitu) printf(" %10s %8s", "insitu ms", "GF/s");
    printf("\n");
}

static void print_gemm_row(const gemm_group *g, int with_insitu) {
    const double f = group_flops(g);
    printf("  %-56s %5zu %9.3f %9.3f %8.2f %8.2f", g->name, group_calls(g), g->s.med, g->s.min, gflops(f, g->s.med),
           gflops(f, g->s.min));
    if (with_insitu) {
        sgemm_key k = part_key(&g->part[0]);
        tally *t = insitu_available() ? tally_find(&k) : NULL;
        if (t) {
            t->matched = 1;
            const double ms = t->ms / (double)g_reps;
            printf(" %10.3f %8.2f", ms, gflops(f, ms));
        } else {
            printf(" %10s %8s", "n/a", "");
        }
    }
    printf("\n");
}

/* ---- the training step at one batch size ------------------------------------- */

enum { PH_ZERO, PH_FORWARD, PH_LOSS, PH_BACKWARD, PH_OPTIM, PH_COUNT };
static const char *const PHASE_NAME[PH_COUNT] = {"zero_grad", "forward (TRAIN)", "loss_sparse", "backward",
                                                 "Adam step"};

static aim_model *build_model(size_t max_batch) {
    aim_model *m;
    const size_t in_dims[2] = {T_STEPS, FEATURES};
    CHECK(aim_model_create(NULL, 2, in_dims, &m), NULL);
    const char *merr = aim_model_last_error(m);
    aim_lstm_config lc;
    aim_dense_config dc;
    aim_compile_config comp;
    CHECK(aim_lstm_config_init(&lc, HIDDEN, LAYERS), merr);
    CHECK(aim_model_add_lstm(m, &lc), merr);
    CHECK(aim_dense_config_init(&dc, CLASSES, AIM_ACT_IDENTITY), merr);
    CHECK(aim_model_add_dense(m, &dc), merr);
    CHECK(aim_compile_config_init(&comp), merr);
    comp.max_batch = max_batch;
    comp.seed = SEED;
    CHECK(aim_model_compile(m, &comp), merr);
    return m;
}

/* The LSTM layer as aim_model_add_lstm builds it, checked against the model. */
static void lstm_layer(aim__layer *L, const aim_model *m) {
    memset(L, 0, sizeof *L);
    L->ops = &aim__lstm_ops;
    L->n_in = 1;
    L->in_rank = 2;
    L->in_dims[0] = T_STEPS, L->in_dims[1] = FEATURES;
    L->in_size = T_STEPS * FEATURES;
    L->out_rank = 1;
    L->out_dims[0] = L->out_size = HIDDEN;
    aim__lstm_cfg *c = AIM__CFG_MUT(aim__lstm_cfg, L);
    c->hidden = HIDDEN;
    c->layers = LAYERS;
    c->sequences = 0;
    c->init = AIM_INIT_PYTORCH;
    for (size_t l = 0; l < LAYERS; l++) L->weight_count += sub_params(l);
    L->cache_per_sample = aim__lstm_cache_per_sample(L);
    L->scratch_per_sample = aim__lstm_scratch_per_sample(L);
    size_t rank, dims[AIM_MAX_RANK], off = 0, wc = 0, bc = 0;
    const char *merr = aim_model_last_error(m);
    CHECK(aim_model_layer_shape(m, 0, &rank, dims), merr);
    CHECK(aim_model_layer_parameters(m, 0, &off, &wc, &bc), merr);
    if (aim_model_layer_count(m) != 2 || rank != L->out_rank || dims[0] != L->out_dims[0] || off != 0 ||
        wc != L->weight_count || bc != 0) {
        fprintf(stderr, "bench_lstm: the hand-built LSTM layer differs from the model's\n");
        exit(2);
    }
}

/* Largest |a - b| over n floats. */
static double max_abs_diff(const float *a, const float *b, size_t n) {
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > mx || e != e) mx = e != e ? INFINITY : e;
    }
    return mx;
}

typedef struct step_result {
    double step_med, flops, gemm_direct_ms, gemm_insitu_ms, gates_ms;
} step_result;

static step_result bench_training(size_t B) {
    const size_t T = T_STEPS, H = HIDDEN, G = 4 * H, F = FEATURES;
    aim_model *m = build_model(B);
    const char *merr = aim_model_last_error(m);
    float *params;
    size_t n_params, mem_bytes;
    CHECK(aim_model_parameters(m, &params, &n_params), merr);
    CHECK(aim_model_memory_size(m, &mem_bytes), merr);
    aim_optimizer *opt;
    CHECK(aim_adam_create(NULL, NULL, n_params, &opt), NULL);
    aim_rng *rng;
    CHECK(aim_rng_create(NULL, SEED + B, &rng), NULL);
    /* POOL distinct random batches, cycled through by the steps, so that the
     * model does not just memorize one batch (which would skew its gates). */
    enum { POOL = 8 };
    const size_t in_size = aim_model_input_size(m);
    float *inputs = falloc(POOL * B * in_size), *input = inputs;
    fill_uniform(rng, inputs, POOL * B * in_size, 0.0f, 1.0f);
    int32_t *labels = xmalloc(POOL * B * sizeof *labels);
    for (size_t i = 0; i < POOL * B; i++) {
        uint64_t u;
        CHECK(aim_rng_below(rng, CLASSES, &u), NULL);
        labels[i] = (int32_t)u;
    }

    printf("\n######## training, batch %zu: %zu parameters, %zu bytes after compile (max_batch %zu)\n", B, n_params,
           mem_bytes, B);

    /* ---- 1. the training step, through the public API ---- */
    double *samples = xmalloc((PH_COUNT + 1) * 2 * g_reps * sizeof *samples);
    double *step_s = samples, *phase = samples + g_reps, *in_step = phase + PH_COUNT * g_reps;
    double *in_phase = in_step + g_reps;
    float loss = 0.0f;
    for (size_t r = 0; r < g_warmup + g_reps; r++) {
        if (r == g_warmup) tally_reset();
        g_insitu = r >= g_warmup; /* tally the timed steps only */
        double t[PH_COUNT + 1], s[PH_COUNT + 1];
        s[0] = g_insitu_ms;
        t[0] = now_ms();
        CHECK(aim_model_zero_grad(m), merr);
        t[1] = now_ms();
        s[1] = g_insitu_ms;
        CHECK(aim_model_forward(m, AIM_MODE_TRAIN, inputs + (r % POOL) * B * in_size, B * in_size, B), merr);
        t[2] = now_ms();
        s[2] = g_insitu_ms;
        CHECK(aim_model_loss_sparse(m, 0, labels + (r % POOL) * B, B, &loss), merr);
        t[3] = now_ms();
        s[3] = g_insitu_ms;
        CHECK(aim_model_backward(m, NULL, 0), merr);
        t[4] = now_ms();
        s[4] = g_insitu_ms;
        CHECK(aim_optimizer_step_model(opt, m, LEARNING_RATE), aim_optimizer_last_error(opt));
        t[5] = now_ms();
        s[5] = g_insitu_ms;
        if (r < g_warmup) continue;
        const size_t i = r - g_warmup;
        step_s[i] = t[PH_COUNT] - t[0];
        in_step[i] = s[PH_COUNT] - s[0];
        for (size_t p = 0; p < PH_COUNT; p++) {
            phase[p * g_reps + i] = t[p + 1] - t[p];
            in_phase[p * g_reps + i] = s[p + 1] - s[p];
        }
    }
    g_insitu = 0;
    const int insitu = insitu_available();
    const stats step = summarize(step_s, g_reps), in_st = summarize(in_step, g_reps);
    printf("\n== 1. training step, batch %zu: zero_grad, forward TRAIN, loss_sparse, backward, Adam step (loss now "
           "%.4f)\n",
           B, (double)loss);
    printf("   last column: time inside cblas_sgemm during that phase, measured in situ (median per step)\n");
    printf("  %-28s %9.3f ms median %9.3f ms min  (%.0f images/s at the median)", "whole step", step.med, step.min,
           (double)B / step.med * 1e3);
    if (insitu)
        printf("  sgemm %8.3f ms = %4.1f%%\n", in_st.med, 100.0 * in_st.med / step.med);
    else
        printf("  sgemm n/a (not linked with -Wl,--wrap=cblas_sgemm)\n");
    stats ph[PH_COUNT];
    for (size_t p = 0; p < PH_COUNT; p++) {
        ph[p] = summarize(phase + p * g_reps, g_reps);
        stats sp = summarize(in_phase + p * g_reps, g_reps);
        printf("  %-28s %9.3f ms median %9.3f ms min  (%4.1f%% of the step)", PHASE_NAME[p], ph[p].med, ph[p].min,
               100.0 * ph[p].med / step.med);
        if (insitu && sp.med > 0.0)
            printf("      sgemm %8.3f ms = %4.1f%% of the phase", sp.med, 100.0 * sp.med / ph[p].med);
        printf("\n");
    }

    /* ---- the data the direct calls and the loop copies work on ---- */
    aim__layer L;
    lstm_layer(&L, m);
    size_t dense_off = 0, dense_wc = 0, dense_bc = 0;
    CHECK(aim_model_layer_parameters(m, 1, &dense_off, &dense_wc, &dense_bc), merr);
    float *pcopy = falloc(n_params);
    memcpy(pcopy, params, n_params * sizeof(float));
    lstm_data d;
    memset(&d, 0, sizeof d);
    d.B = B;
    d.x = input;
    d.p[0] = pcopy;
    d.p[1] = pcopy + sub_params(0);
    d.wdense = pcopy + dense_off;
    for (size_t l = 0; l < LAYERS; l++) {
        d.pre[l] = falloc(B * T * G);
        d.act[l] = falloc(B * T * G);
        d.cells[l] = falloc(B * T * H);
        d.h[l] = falloc(B * T * H);
        d.tanh_c[l] = falloc(B * T * H);
    }
    d.gwork = falloc(B * T * G);
    d.cwork = falloc(B * T * H);
    d.hwork = falloc(B * T * H);
    d.dh = falloc(B * H);
    d.dh0 = falloc(B * H);
    d.dc = falloc(B * H);
    d.dtop = falloc(B * H);
    d.dseq = falloc(B * T * H);
    d.dWhh = falloc(G * H);
    d.dWih = falloc(G * H);
    d.db = falloc(8 * H);
    d.hlast = falloc(B * H);
    d.dlogits = falloc(B * CLASSES);
    d.dlast = falloc(B * H);
    d.logits = falloc(B * CLASSES);
    d.ddense = falloc(CLASSES * H);
    fill_uniform(rng, d.dh0, B * H, -1e-2f, 1e-2f);
    fill_uniform(rng, d.dtop, B * H, -1e-2f, 1e-2f);
    fill_uniform(rng, d.dseq, B * T * H, -1e-2f, 1e-2f);
    fill_uniform(rng, d.dlogits, B * CLASSES, -1e-2f, 1e-2f);
    /* the forward, by the copy, keeping the pre-activations */
    for (size_t l = 0; l < LAYERS; l++) {
        ref_sub_forward(B, T, sub_in(l), H, d.p[l], l ? d.h[0] : d.x, d.act[l], d.pre[l], d.cells[l], d.h[l]);
    }
    for (size_t b = 0; b < B; b++) memcpy(d.hlast + b * H, d.h[1] + (b * T + T - 1) * H, H * sizeof(float));
    for (size_t l = 0; l < LAYERS; l++)
        for (size_t i = 0; i < B * T * H; i++) d.tanh_c[l][i] = aim__tanh(d.cells[l][i]);
    /* ... checked against the library's kernel on the same weights */
    {
        float *cache = falloc(B * L.cache_per_sample), *scratch = falloc(B * L.scratch_per_sample + 1);
        float *y = falloc(B * H);
        aim__lstm_forward(&L, pcopy, input, y, cache, scratch, NULL, B, B);
        double e = max_abs_diff(y, d.hlast, B * H);
        for (size_t l = 0; l < LAYERS; l++) {
            const float *base = cache + l * B * T * 6 * H;
            double e1 = max_abs_diff(base, d.act[l], B * T * G);
            double e2 = max_abs_diff(base + B * T * G, d.cells[l], B * T * H);
            double e3 = max_abs_diff(base + B * T * 5 * H, d.h[l], B * T * H);
            if (e1 > e) e = e1;
            if (e2 > e) e = e2;
            if (e3 > e) e = e3;
        }
        if (e != 0.0) {
            fprintf(stderr, "bench_lstm: the copy of sub_forward differs from aim__lstm_forward by %g; "
                            "bring the copies in step with src/layers/lstm.c\n", e);
            exit(2);
        }
        /* the backward copies (cell loop, bias gradient) against aim__lstm_backward, from the same cache */
        float *dparams = falloc(L.weight_count), *dA = falloc(B * T * G), *dseq = falloc(B * T * H);
        float *db = falloc(8 * H);
        aim__lstm_backward(&L, pcopy, dparams, input, cache, d.dtop, NULL, scratch, NULL, B, B);
        for (size_t l = LAYERS; l-- > 0;) {
            const size_t in = sub_in(l);
            const float *Wih = d.p[l], *Whh = d.p[l] + G * in;
            memcpy(dA, d.act[l], B * T * G * sizeof(float));
            ref_sub_backward(B, T, H, Whh, dA, d.cells[l], d.dh, d.dc, l == LAYERS - 1 ? d.dtop : dseq,
                             l == LAYERS - 1);
            memset(db, 0, 8 * H * sizeof(float));
            bias_grad(B * T, G, dA, db, db + G);
            const float *dp = dparams + (l ? sub_params(0) : 0);
            double e1 = max_abs_diff(cache + l * B * T * 6 * H, dA, B * T * G);
            double e2 = max_abs_diff(dp + G * in + G * H, db, 8 * H);
            if (e1 > e) e = e1;
            if (e2 > e) e = e2;
            if (l > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(B * T), BI(H), BI(G), 1.0f, dA, BI(G), Wih,
                            BI(in), 0.0f, dseq, BI(H));
        }
        if (e != 0.0) {
            fprintf(stderr, "bench_lstm: the copies of the backward loops differ from aim__lstm_backward by %g; "
                            "bring the copies in step with src/layers/lstm.c\n", e);
            exit(2);
        }
        free(cache), free(scratch), free(y), free(dparams), free(dA), free(dseq), free(db);
    }
    /* ---- 2. every GEMM shape of the step, directly ---- */
    gemm_group sg[G_STEP_COUNT];
    build_step_gemms(&d, sg);
    timed tj[G_STEP_COUNT];
    for (size_t k = 0; k < G_STEP_COUNT; k++) tj[k] = job(gemm_group_run, NULL, &sg[k]);
    measure_set(tj, G_STEP_COUNT);
    double fwd_ms = 0.0, bwd_ms = 0.0, fwd_f = 0.0, bwd_f = 0.0, fwd_in = 0.0, bwd_in = 0.0;
    for (size_t k = 0; k < G_STEP_COUNT; k++) {
        sg[k].s = tj[k].s;
        if (k < G_FIRST_BACKWARD) fwd_ms += sg[k].s.med, fwd_f += group_flops(&sg[k]);
        else bwd_ms += sg[k].s.med, bwd_f += group_flops(&sg[k]);
    }
    printf("\n== 2. every GEMM of one step (batch %zu), called directly with the shapes, transposes, leading\n"
           "   dimensions and counts of src/layers/lstm.c and src/layers/dense.c (all rows interleaved, hot caches); the last\n"
           "   two columns: the same shape inside the timed steps of section 1 (in situ, mean per step)\n", B);
    print_gemm_header(1);
    for (size_t k = 0; k < G_STEP_COUNT; k++) {
        if (k == G_FIRST_BACKWARD) {
            printf("  %-56s %5s %9.3f %9s %8.2f   (%.1f MFLOP)\n", "-- forward GEMMs", "", fwd_ms, "",
                   gflops(fwd_f, fwd_ms), fwd_f * 1e-6);
        }
        print_gemm_row(&sg[k], 1);
        sgemm_key key = part_key(&sg[k].part[0]);
        tally *t = insitu ? tally_find(&key) : NULL;
        if (t) *(k < G_FIRST_BACKWARD ? &fwd_in : &bwd_in) += t->ms / (double)g_reps;
    }
    printf("  %-56s %5s %9.3f %9s %8.2f   (%.1f MFLOP)\n", "-- backward GEMMs", "", bwd_ms, "",
           gflops(bwd_f, bwd_ms), bwd_f * 1e-6);
    const double gemm_ms = fwd_ms + bwd_ms, flops = fwd_f + bwd_f;
    size_t direct_calls = 0;
    for (size_t k = 0; k < G_STEP_COUNT; k++) direct_calls += group_calls(&sg[k]);
    printf("  %-56s %5zu %9.3f %9s %8.2f   (%.1f MFLOP per step)\n", "== all GEMMs of one step", direct_calls, gemm_ms,
           "", gflops(flops, gemm_ms), flops * 1e-6);
    if (insitu) {
        size_t other_calls = 0;
        double other_ms = 0.0;
        for (size_t i = 0; i < g_ntally; i++)
            if (!g_tally[i].matched) other_calls += g_tally[i].calls, other_ms += g_tally[i].ms;
        printf("  in situ: %.1f sgemm calls per step (the direct rows: %zu), %.3f ms per step (mean); forward %.3f, "
               "backward %.3f\n",
               (double)g_insitu_calls / (double)g_reps, direct_calls, g_insitu_ms / (double)g_reps, fwd_in, bwd_in);
        if (other_calls || g_tally_lost || g_insitu_calls != direct_calls * g_reps)
            printf("  WARNING: the library issued %.1f calls per step of shapes not listed here (%.3f ms): the rows "
                   "are out of step with src/layers/lstm.c\n",
                   (double)(other_calls + g_tally_lost) / (double)g_reps, other_ms / (double)g_reps);
    }

    /* what-ifs */
    float *tm_h = falloc(B * T * H), *tm_g = falloc(B * T * G);
    fill_uniform(rng, tm_h, B * T * H, -0.5f, 0.5f);
    fill_uniform(rng, tm_g, B * T * G, -1e-2f, 1e-2f);
    gemm_group wg[W_COUNT];
    build_whatif_gemms(&d, wg, tm_h, tm_g);
    gemm_group dwhh1 = sg[G_BWD_DWHH];
    dwhh1.nparts = 1; /* one sub-layer, to compare with W_DWHH_ONE */
    snprintf(dwhh1.name, sizeof dwhh1.name, "dW_hh 1 sub-layer as issued: %zu x TN K=%zu", B, T - 1);
    timed all_w[W_COUNT + 3];
    all_w[0] = job(gemm_group_run, NULL, &sg[G_FWD_REC]);
    all_w[1] = job(gemm_group_run, NULL, &sg[G_BWD_DH]);
    for (size_t k = 0; k < W_COUNT; k++) all_w[k + 2] = job(gemm_group_run, NULL, &wg[k]);
    all_w[W_COUNT + 2] = job(gemm_group_run, NULL, &dwhh1);
    measure_set(all_w, W_COUNT + 3);
    for (size_t k = 0; k < W_COUNT; k++) wg[k].s = all_w[k + 2].s;
    dwhh1.s = all_w[W_COUNT + 2].s;
    gemm_group rec = sg[G_FWD_REC], dh = sg[G_BWD_DH];
    rec.s = all_w[0].s, dh.s = all_w[1].s;
    snprintf(rec.name, sizeof rec.name, "recurrent as issued (both sub-layers)");
    snprintf(dh.name, sizeof dh.name, "dh as issued (both sub-layers)");
    printf("\n   what-if (same FLOPs, other arrangements; NOT what the library does; rows interleaved):\n");
    print_gemm_header(0);
    print_gemm_row(&rec, 0);
    print_gemm_row(&wg[W_REC_CONTIG], 0);
    print_gemm_row(&wg[W_REC_ONE], 0);
    print_gemm_row(&dh, 0);
    print_gemm_row(&wg[W_DH_CONTIG], 0);
    print_gemm_row(&wg[W_DH_ONE], 0);
    print_gemm_row(&dwhh1, 0);
    print_gemm_row(&wg[W_DWHH_ONE], 0);
    printf("   (\"as 1 GEMM\" rows show what thin M=%zu calls cost against the same work in one call; the recurrence\n"
           "   forbids it across steps, but it bounds what any batching of the steps, e.g. of the two sub-layers\n"
           "   in a wavefront, could gain)\n",
           B);
    free(tm_h), free(tm_g);

    /* ---- 3. the elementwise code: copies of the loops of src/layers/lstm.c ---- */
    part_job pj[LAYERS][PART_COUNT];
    timed pt[LAYERS * PART_COUNT];
    for (size_t l = 0; l < LAYERS; l++)
        for (size_t k = 0; k < PART_COUNT; k++) {
            pj[l][k] = (part_job){(part_kind)k, l, &d};
            pt[l * PART_COUNT + k] = job(part_run, part_reset, &pj[l][k]);
        }
    measure_set(pt, LAYERS * PART_COUNT);
    /* the what-if gives the same bits? */
    int cached_same = 1;
    const size_t ng = B * T * G;
    for (size_t l = 0; l < LAYERS; l++) {
        float *ref = part_result(&pj[l][PART_GATES_BWD], &d);
        float *cached = part_result(&pj[l][PART_GATES_BWD_CACHED], &d);
        cached_same = cached_same && memcmp(ref, cached, ng * sizeof(float)) == 0;
        free(ref), free(cached);
    }
    const double cells = (double)(B * T * H); /* per sub-layer */
    printf("\n== 3. elementwise code of the step (batch %zu): copies of the loops of src/layers/lstm.c, each timed alone over\n"
           "   the whole sequence on the step's real pre-activations; \"what-if\" rows are not what the library does\n",
           B);
    printf("  %-46s %9s %9s %9s %9s %9s\n", "loop", "l0 med", "l0 min", "l1 med", "l1 min", "ns/cell");
    double gates_ms = 0.0, fwd_el = 0.0, bwd_el = 0.0, med2[PART_COUNT];
    for (size_t k = 0; k < PART_COUNT; k++) {
        const stats a = pt[k].s, b = pt[PART_COUNT + k].s;
        med2[k] = a.med + b.med;
        printf("  %-46s %9.3f %9.3f %9.3f %9.3f %9.2f\n", PART_NAME[k], a.med, a.min, b.med, b.min,
               med2[k] * 1e6 / (2.0 * cells));
        if (part_is_whatif((part_kind)k)) continue;
        gates_ms += med2[k];
        if (k == PART_BIAS || k == PART_GATES_FWD) fwd_el += med2[k];
        else bwd_el += med2[k];
    }
    printf("  %-46s %9.3f ms (forward %.3f, backward %.3f); the what-if row not counted\n", "sum (both sub-layers)",
           gates_ms, fwd_el, bwd_el);
    printf("  what-if, tanh(c_t) kept by the forward: backward cell loops %.3f -> %.3f ms (%.2fx), results %s,\n"
           "  for %zu more bytes of training cache\n",
           med2[PART_GATES_BWD], med2[PART_GATES_BWD_CACHED], med2[PART_GATES_BWD] / med2[PART_GATES_BWD_CACHED],
           cached_same ? "bit-identical" : "DIFFERENT", (size_t)LAYERS * B * T * H * sizeof(float));

    /* ---- 4. summary ---- */
    printf("\n== 4. where the step goes (batch %zu), medians\n", B);
    printf("  %-58s %9.3f ms  100.0%%\n", "training step", step.med);
    if (insitu)
        printf("  %-58s %9.3f ms  %5.1f%%\n", "inside cblas_sgemm, MEASURED in situ (section 1)", in_st.med,
               100.0 * in_st.med / step.med);
    printf("  %-58s %9.3f ms  %5.1f%%\n", "inside cblas_sgemm, ESTIMATED from direct calls (section 2)", gemm_ms,
           100.0 * gemm_ms / step.med);
    printf("  %-58s %9.3f ms  %5.1f%%\n", "elementwise cell code, ESTIMATED from the copies (section 3)", gates_ms,
           100.0 * gates_ms / step.med);
    const double gemm_used = insitu ? in_st.med : gemm_ms;
    printf("  %-58s %9.3f ms  %5.1f%%\n",
           insitu ? "rest: step - sgemm in situ - cell code" : "rest: step - sgemm estimate - cell code",
           step.med - gemm_used - gates_ms, 100.0 * (step.med - gemm_used - gates_ms) / step.med);
    printf("    (the rest holds zero_grad %.3f, loss %.3f, Adam %.3f ms, the input copy, memsets, the dense head's\n"
           "     own loops, and whatever the cell loops lose to cold caches in the step)\n",
           ph[PH_ZERO].med, ph[PH_LOSS].med, ph[PH_OPTIM].med);
    printf("  %-58s %9.3f ms  (a projection from section 3, not a measurement)\n",
           "step with tanh(c_t) kept by the forward", step.med - med2[PART_GATES_BWD] + med2[PART_GATES_BWD_CACHED]);
    printf("  FLOPs per step (GEMMs as issued): %.4f GFLOP = forward %.1f + backward %.1f MFLOP\n", flops * 1e-9,
           fwd_f * 1e-6, bwd_f * 1e-6);
    /* all T steps: + 2 sub-layers x (forward, dh, dW_hh) x 2*B*4H*H; sub-layer 0's dX: 2*B*T*F*4H */
    printf("    (no recurrent, dh or dW_hh term for t = 0, the initial state being zero, and no dX for sub-layer 0,\n"
           "     the model asking no input gradient; counting all T steps and that dX would give %.4f GFLOP)\n",
           (flops + 12.0 * (double)B * (double)G * (double)H + 2.0 * (double)(B * T) * (double)F * (double)G) * 1e-9);
    printf("  step rate:  %8.2f GFLOP/s (median), %.2f (min)\n", gflops(flops, step.med), gflops(flops, step.min));
    printf("  sgemm rate: %8.2f GFLOP/s on the same shapes called directly", gflops(flops, gemm_ms));
    if (insitu) printf("; %.2f GFLOP/s in situ", gflops(flops, in_st.med));
    printf("\n  -> the step runs at %.1f%% of the sgemm rate on its own shapes\n",
           100.0 * gflops(flops, step.med) / gflops(flops, gemm_ms));

    step_result res = {step.med, flops, gemm_ms, insitu ? in_st.med : 0.0, gates_ms};
    for (size_t l = 0; l < LAYERS; l++)
        free(d.pre[l]), free(d.act[l]), free(d.cells[l]), free(d.h[l]), free(d.tanh_c[l]);
    free(d.gwork), free(d.cwork), free(d.hwork), free(d.dh), free(d.dh0), free(d.dc), free(d.dtop), free(d.dseq);
    free(d.dWhh), free(d.dWih), free(d.db), free(d.hlast), free(d.dlogits), free(d.dlast), free(d.logits);
    free(d.ddense);
    free(pcopy);
    free(samples);
    free(labels);
    free(inputs);
    aim_rng_free(rng);
    aim_optimizer_free(opt);
    aim_model_free(m);
    return res;
}

/* ---- the GRU classifier (issue 14) ------------------------------------------- */
/* The same classifier with a GRU of the same size in place of the LSTM (the
 * GRU training step of issue 14, in `make bench` as bench_models --model
 * gru): the step and its phases through the public API with the sgemm time
 * of each measured in situ, every sgemm shape the step issues (from the
 * in-situ tally), and the GRU layer's own kernels, aim__gru_forward and
 * aim__gru_backward, timed alone on a hand-built node (checked against the
 * model's output bit for bit). */

static aim_model *build_gru_model(size_t max_batch) {
    aim_model *m;
    const size_t in_dims[2] = {T_STEPS, FEATURES};
    CHECK(aim_model_create(NULL, 2, in_dims, &m), NULL);
    const char *merr = aim_model_last_error(m);
    aim_rnn_config rc;
    aim_dense_config dc;
    aim_compile_config comp;
    CHECK(aim_rnn_config_init(&rc, HIDDEN, LAYERS), merr);
    CHECK(aim_model_add_gru(m, &rc), merr);
    CHECK(aim_dense_config_init(&dc, CLASSES, AIM_ACT_IDENTITY), merr);
    CHECK(aim_model_add_dense(m, &dc), merr);
    CHECK(aim_compile_config_init(&comp), merr);
    comp.max_batch = max_batch;
    comp.seed = SEED;
    CHECK(aim_model_compile(m, &comp), merr);
    return m;
}

/* The GRU layer as aim_model_add_gru builds it (the kind's own setup), checked against the model. */
static void gru_layer(aim__layer *L, const aim_model *m) {
    memset(L, 0, sizeof *L);
    L->ops = &aim__gru_ops;
    L->n_in = 1;
    L->in_rank = 2;
    L->in_dims[0] = T_STEPS, L->in_dims[1] = FEATURES;
    L->in_size = T_STEPS * FEATURES;
    aim__gru_cfg *c = AIM__CFG_MUT(aim__gru_cfg, L);
    c->hidden = HIDDEN;
    c->layers = LAYERS;
    c->init = AIM_INIT_PYTORCH;
    const aim__shape in = {2, {T_STEPS, FEATURES, 0, 0}, T_STEPS * FEATURES, AIM_DTYPE_FLOAT32};
    char msg[AIM__ERR_CAP];
    if (aim__gru_ops.setup(L, &in, 1, msg) != AIM_OK) {
        fprintf(stderr, "bench_lstm: the hand-built GRU layer: %s\n", msg);
        exit(2);
    }
    size_t rank, dims[AIM_MAX_RANK], off = 0, wc = 0, bc = 0;
    const char *merr = aim_model_last_error(m);
    CHECK(aim_model_layer_shape(m, 0, &rank, dims), merr);
    CHECK(aim_model_layer_parameters(m, 0, &off, &wc, &bc), merr);
    if (rank != L->out_rank || dims[0] != L->out_dims[0] || off != 0 || wc != L->weight_count || bc != 0) {
        fprintf(stderr, "bench_lstm: the hand-built GRU layer differs from the model's\n");
        exit(2);
    }
}

typedef struct gru_kernels {
    const aim__layer *L;
    const float *params, *x, *dy;
    float *dparams, *y, *cache, *scratch;
    size_t B;
} gru_kernels;

static void gru_fwd_run(void *p) {
    const gru_kernels *k = p;
    aim__gru_forward(k->L, k->params, k->x, k->y, k->cache, k->scratch, NULL, k->B, k->B);
}
static void gru_infer_run(void *p) {
    const gru_kernels *k = p;
    aim__gru_forward(k->L, k->params, k->x, k->y, NULL, k->scratch, NULL, k->B, k->B);
}
static void gru_bwd_run(void *p) { /* the backward turns the cache into gradients: gru_fwd_run resets it */
    const gru_kernels *k = p;
    aim__gru_backward(k->L, k->params, k->dparams, k->x, k->cache, k->dy, NULL, k->scratch, NULL, k->B, k->B);
}

static double bench_gru_training(size_t B) {
    aim_model *m = build_gru_model(B);
    const char *merr = aim_model_last_error(m);
    float *params;
    size_t n_params;
    CHECK(aim_model_parameters(m, &params, &n_params), merr);
    aim_optimizer *opt;
    CHECK(aim_adam_create(NULL, NULL, n_params, &opt), NULL);
    aim_rng *rng;
    CHECK(aim_rng_create(NULL, SEED + 7 * B, &rng), NULL);
    enum { POOL = 8 };
    const size_t in_size = aim_model_input_size(m);
    float *inputs = falloc(POOL * B * in_size);
    fill_uniform(rng, inputs, POOL * B * in_size, 0.0f, 1.0f);
    int32_t *labels = xmalloc(POOL * B * sizeof *labels);
    for (size_t i = 0; i < POOL * B; i++) {
        uint64_t u;
        CHECK(aim_rng_below(rng, CLASSES, &u), NULL);
        labels[i] = (int32_t)u;
    }
    printf("\n######## GRU classifier (28 x 28 -> GRU hidden %d, %d layers, last step -> dense %d), training, batch "
           "%zu: %zu parameters\n",
           HIDDEN, LAYERS, CLASSES, B, n_params);
    double *samples = xmalloc((PH_COUNT + 1) * 2 * g_reps * sizeof *samples);
    double *step_s = samples, *phase = samples + g_reps, *in_step = phase + PH_COUNT * g_reps;
    double *in_phase = in_step + g_reps;
    float loss = 0.0f;
    for (size_t r = 0; r < g_warmup + g_reps; r++) {
        if (r == g_warmup) tally_reset();
        g_insitu = r >= g_warmup;
        double t[PH_COUNT + 1], s[PH_COUNT + 1];
        s[0] = g_insitu_ms;
        t[0] = now_ms();
        CHECK(aim_model_zero_grad(m), merr);
        t[1] = now_ms();
        s[1] = g_insitu_ms;
        CHECK(aim_model_forward(m, AIM_MODE_TRAIN, inputs + (r % POOL) * B * in_size, B * in_size, B), merr);
        t[2] = now_ms();
        s[2] = g_insitu_ms;
        CHECK(aim_model_loss_sparse(m, 0, labels + (r % POOL) * B, B, &loss), merr);
        t[3] = now_ms();
        s[3] = g_insitu_ms;
        CHECK(aim_model_backward(m, NULL, 0), merr);
        t[4] = now_ms();
        s[4] = g_insitu_ms;
        CHECK(aim_optimizer_step_model(opt, m, LEARNING_RATE), aim_optimizer_last_error(opt));
        t[5] = now_ms();
        s[5] = g_insitu_ms;
        if (r < g_warmup) continue;
        const size_t i = r - g_warmup;
        step_s[i] = t[PH_COUNT] - t[0];
        in_step[i] = s[PH_COUNT] - s[0];
        for (size_t p = 0; p < PH_COUNT; p++) {
            phase[p * g_reps + i] = t[p + 1] - t[p];
            in_phase[p * g_reps + i] = s[p + 1] - s[p];
        }
    }
    g_insitu = 0;
    const int insitu = insitu_available();
    const stats step = summarize(step_s, g_reps), in_st = summarize(in_step, g_reps);
    printf("\n== 1. training step, batch %zu (loss now %.4f); last column: sgemm time in situ (median per step)\n", B,
           (double)loss);
    printf("  %-28s %9.3f ms median %9.3f ms min  (%.0f images/s at the median)", "whole step", step.med, step.min,
           (double)B / step.med * 1e3);
    if (insitu)
        printf("  sgemm %8.3f ms = %4.1f%%\n", in_st.med, 100.0 * in_st.med / step.med);
    else
        printf("  sgemm n/a (not linked with -Wl,--wrap=cblas_sgemm)\n");
    for (size_t p = 0; p < PH_COUNT; p++) {
        const stats ph = summarize(phase + p * g_reps, g_reps), sp = summarize(in_phase + p * g_reps, g_reps);
        printf("  %-28s %9.3f ms median %9.3f ms min  (%4.1f%% of the step)", PHASE_NAME[p], ph.med, ph.min,
               100.0 * ph.med / step.med);
        if (insitu && sp.med > 0.0) printf("      sgemm %8.3f ms = %4.1f%% of the phase", sp.med, 100.0 * sp.med / ph.med);
        printf("\n");
    }
    if (insitu) {
        double flops = 0.0;
        printf("\n== 2. the sgemm calls of one step as src/layers/gru.c and src/layers/dense.c issue them (in situ, mean per step)\n");
        printf("  %-4s %-4s %6s %6s %6s %6s %6s %6s %7s %9s %8s\n", "ta", "tb", "M", "N", "K", "lda", "ldb", "ldc",
               "calls", "ms", "GF/s");
        for (size_t i = 0; i < g_ntally; i++) {
            const tally *t = &g_tally[i];
            const double calls = (double)t->calls / (double)g_reps, ms = t->ms / (double)g_reps;
            const double f = 2.0 * (double)t->key.M * (double)t->key.N * (double)t->key.K * calls;
            flops += f;
            printf("  %-4s %-4s %6ld %6ld %6ld %6ld %6ld %6ld %7.1f %9.3f %8.2f\n", t->key.ta == CblasTrans ? "T" : "N",
                   t->key.tb == CblasTrans ? "T" : "N", t->key.M, t->key.N, t->key.K, t->key.lda, t->key.ldb,
                   t->key.ldc, calls, ms, gflops(f, ms));
        }
        printf("  %.1f calls, %.3f ms, %.4f GFLOP per step: sgemm at %.2f GFLOP/s in situ; the step at %.2f GFLOP/s\n",
               (double)g_insitu_calls / (double)g_reps, g_insitu_ms / (double)g_reps, flops * 1e-9,
               gflops(flops, g_insitu_ms / (double)g_reps), gflops(flops, step.med));
        if (g_tally_lost) printf("  (%zu calls of further shapes not tallied)\n", g_tally_lost);
    }

    /* ---- 3. the GRU layer's kernels alone ---- */
    aim__layer L;
    gru_layer(&L, m);
    gru_kernels k = {&L, params, inputs, NULL, falloc(L.weight_count), falloc(B * HIDDEN),
                     falloc(B * L.cache_per_sample), falloc(B * L.scratch_per_sample), B};
    float *dy = falloc(B * HIDDEN);
    fill_uniform(rng, dy, B * HIDDEN, -1e-2f, 1e-2f);
    k.dy = dy;
    {
        /* the hand-built node computes what the model's GRU layer does, bit for bit: a model of that layer
         * alone, with the classifier's GRU weights */
        const size_t in_dims[2] = {T_STEPS, FEATURES};
        aim_model *m1;
        aim_rnn_config rc;
        aim_compile_config comp;
        CHECK(aim_model_create(NULL, 2, in_dims, &m1), NULL);
        CHECK(aim_rnn_config_init(&rc, HIDDEN, LAYERS), NULL);
        CHECK(aim_model_add_gru(m1, &rc), aim_model_last_error(m1));
        CHECK(aim_compile_config_init(&comp), NULL);
        comp.max_batch = B;
        CHECK(aim_model_compile(m1, &comp), aim_model_last_error(m1));
        float *p1;
        size_t n1;
        CHECK(aim_model_parameters(m1, &p1, &n1), NULL);
        memcpy(p1, params, n1 * sizeof(float));
        const float *y = NULL;
        size_t ny = 0;
        CHECK(aim_model_forward(m1, AIM_MODE_TRAIN, inputs, B * in_size, B), aim_model_last_error(m1));
        CHECK(aim_model_output(m1, 0, &y, &ny), NULL);
        gru_fwd_run(&k);
        if (n1 != L.weight_count || ny != B * HIDDEN || memcmp(y, k.y, ny * sizeof(float)) != 0) {
            fprintf(stderr, "bench_lstm: the hand-built GRU layer's output differs from the model's\n");
            exit(2);
        }
        aim_model_free(m1);
    }
    timed tk[3] = {job(gru_infer_run, NULL, &k), job(gru_fwd_run, NULL, &k), job(gru_bwd_run, gru_fwd_run, &k)};
    measure_set(tk, 3);
    const double cells = (double)(LAYERS * B * T_STEPS * HIDDEN);
    printf("\n== 3. the GRU layer's kernels alone (hand-built node, batch %zu, hot caches, interleaved)\n", B);
    printf("  %-44s %9.3f ms median %9.3f ms min  (%.2f ns per cell)\n", "aim__gru_forward, inference (no cache)",
           tk[0].s.med, tk[0].s.min, tk[0].s.med * 1e6 / cells);
    printf("  %-44s %9.3f ms median %9.3f ms min  (%.2f ns per cell)\n", "aim__gru_forward, training (cache)",
           tk[1].s.med, tk[1].s.min, tk[1].s.med * 1e6 / cells);
    printf("  %-44s %9.3f ms median %9.3f ms min  (%.2f ns per cell; no dX, as in the model)\n", "aim__gru_backward",
           tk[2].s.med, tk[2].s.min, tk[2].s.med * 1e6 / cells);
    free(k.dparams), free(k.y), free(k.cache), free(k.scratch), free(dy);
    free(samples);
    free(labels);
    free(inputs);
    aim_rng_free(rng);
    aim_optimizer_free(opt);
    aim_model_free(m);
    return step.med;
}

/* ---- inference at batch 1 ----------------------------------------------------- */

typedef struct predict_ctx {
    const aim_model *m;
    aim_workspace *w;
    const float *x;
    size_t x_count;
    float *y;
    size_t y_count;
} predict_ctx;

static void predict_run(void *p) {
    predict_ctx *c = p;
    CHECK(aim_model_predict(c->m, c->w, c->x, c->x_count, 1, c->y, c->y_count), aim_workspace_last_error(c->w));
}

typedef struct gemv_job {
    const float *W[LAYERS];
    const float *h;
    float *y;
} gemv_job;

/* What-if: the recurrent step at batch 1 as cblas_sgemv (y = W_hh·h), as
 * src/layers/dense.c does for batch 1. */
static void gemv_run(void *p) {
    const gemv_job *g = p;
    const size_t H = HIDDEN, G = 4 * H;
    for (size_t l = 0; l < LAYERS; l++)
        for (size_t t = 1; t < T_STEPS; t++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, BI(G), BI(H), 1.0f, g->W[l], BI(H), g->h + (t - 1) * H, 1, 1.0f,
                        g->y + t * G, 1);
}

static void bench_predict(void) {
    const size_t T = T_STEPS, H = HIDDEN, G = 4 * H, F = FEATURES;
    aim_model *m = build_model(32);
    const char *merr = aim_model_last_error(m);
    float *params;
    size_t n_params;
    CHECK(aim_model_parameters(m, &params, &n_params), merr);
    aim_workspace *w;
    CHECK(aim_workspace_create(m, NULL, 1, &w), merr);
    aim_rng *rng;
    CHECK(aim_rng_create(NULL, SEED + 1, &rng), NULL);
    float *x = falloc(T * F), *y = falloc(CLASSES);
    fill_uniform(rng, x, T * F, 0.0f, 1.0f);
    predict_ctx pc = {m, w, x, T * F, y, CLASSES};

    /* in situ: sgemm time per predict */
    double *s = xmalloc(2 * g_reps * sizeof *s);
    for (size_t r = 0; r < g_warmup + g_reps; r++) {
        if (r == g_warmup) tally_reset();
        g_insitu = r >= g_warmup;
        double a = g_insitu_ms, t0 = now_ms();
        predict_run(&pc);
        double t1 = now_ms();
        if (r >= g_warmup) s[r - g_warmup] = t1 - t0, s[g_reps + r - g_warmup] = g_insitu_ms - a;
    }
    g_insitu = 0;
    const stats lat = summarize(s, g_reps), in_lat = summarize(s + g_reps, g_reps);

    /* direct: the recurrent steps at M=1, as sgemm and as sgemv */
    float *hs = falloc(T * H), *gs = falloc(T * G);
    fill_uniform(rng, hs, T * H, -0.5f, 0.5f);
    const float *Whh0 = params + G * F, *Whh1 = params + sub_params(0) + G * H;
    gemm_group rec = group2("recurrent M=1 as issued: sgemm NT N=512 K=128",
                            gp(CblasNoTrans, CblasTrans, 1, G, H, T * H, H, T * G, 1.0f, 1.0f, T - 1, hs, (ptrdiff_t)H,
                               Whh0, 0, gs + G, (ptrdiff_t)G),
                            gp(CblasNoTrans, CblasTrans, 1, G, H, T * H, H, T * G, 1.0f, 1.0f, T - 1, hs, (ptrdiff_t)H,
                               Whh1, 0, gs + G, (ptrdiff_t)G));
    gemm_group inp = group2("input proj M=T as issued: l0 K=28, l1 K=128",
                            gp(CblasNoTrans, CblasTrans, T, G, F, F, F, G, 1.0f, 0.0f, 1, x, 0, params, 0, gs, 0),
                            gp(CblasNoTrans, CblasTrans, T, G, H, H, H, G, 1.0f, 0.0f, 1, hs, 0,
                               params + sub_params(0), 0, gs, 0));
    gemv_job gv = {{Whh0, Whh1}, hs, gs};
    timed tj[3] = {job(gemm_group_run, NULL, &rec), job(gemv_run, NULL, &gv), job(gemm_group_run, NULL, &inp)};
    measure_set(tj, 3);
    rec.s = tj[0].s, inp.s = tj[2].s;
    const double f_rec = group_flops(&rec);
    const double f_all = f_rec + group_flops(&inp) + 2.0 * CLASSES * (double)H;

    printf("\n######## inference, batch 1: aim_model_predict (workspace max_batch 1), %.2f MFLOP per sample\n",
           f_all * 1e-6);
    printf("  %-56s %9.3f ms median %9.3f ms min  (%.0f samples/s at the median)\n", "aim_model_predict, batch 1",
           lat.med, lat.min, 1e3 / lat.med);
    if (insitu_available())
        printf("  %-56s %9.3f ms = %.1f%% of the latency, %.1f calls\n", "  inside cblas_sgemm, in situ", in_lat.med,
               100.0 * in_lat.med / lat.med, (double)g_insitu_calls / (double)g_reps);
    print_gemm_header(0);
    print_gemm_row(&inp, 0);
    print_gemm_row(&rec, 0);
    printf("  %-56s %5d %9.3f %9.3f %8.2f %8.2f\n", "what-if: the same recurrent steps as cblas_sgemv", 2 * (T_STEPS - 1),
           tj[1].s.med, tj[1].s.min, gflops(f_rec, tj[1].s.med), gflops(f_rec, tj[1].s.min));
    free(hs), free(gs), free(s), free(x), free(y);
    aim_rng_free(rng);
    aim_workspace_free(w);
    aim_model_free(m);
}

int main(int argc, char **argv) {
    if (argc > 1) g_reps = strtoul(argv[1], NULL, 10);
    if (argc > 2) g_warmup = strtoul(argv[2], NULL, 10);
    if (g_reps == 0 || g_reps > 100000 || g_warmup > 100000) {
        fprintf(stderr, "usage: %s [repetitions (1..100000, default 30) [warm-up runs (default 5)]]\n", argv[0]);
        return 1;
    }
    printf("bench_lstm: libaimodel %s, seed LSTM classifier; every figure is median / min over %zu runs after %zu "
           "warm-up runs\n",
           aim_version(), g_reps, g_warmup);
    printf("OpenBLAS: core %s, %d thread(s); config \"%s\"\n", openblas_get_corename(), openblas_get_num_threads(),
           openblas_get_config());
    printf("environment:");
    print_env("OPENBLAS_CORETYPE");
    print_env("OPENBLAS_NUM_THREADS");
    print_env("OPENBLAS_L2_SIZE");
    print_env("OMP_NUM_THREADS");
    printf("; %ld CPU(s) online\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("model: 28 steps x 28 features -> LSTM hidden %d, %d layers, last step -> dense %d; softmax cross-entropy,\n"
           "       Adam lr 1e-3; random pixels and labels (seed %llu), 8 batches cycled through by the steps\n",
           HIDDEN, LAYERS, CLASSES, (unsigned long long)SEED);
    if (insitu_available()) {
        enum { N = 100000 };
        volatile double sink = 0.0;
        double t0 = now_ms();
        for (int i = 0; i < N; i++) sink = now_ms();
        double per = (sink - t0) / N * 1e6;
        printf("in-situ sgemm timing: on (linked with -Wl,--wrap=cblas_sgemm); a clock read costs %.0f ns, two per "
               "call\n",
               per);
    } else {
        printf("in-situ sgemm timing: off (link with -Wl,--wrap=cblas_sgemm to measure the library's calls)\n");
    }
    print_load("at the start");
    step_result r[2];
    for (size_t i = 0; i < 2; i++) r[i] = bench_training(TRAIN_BATCHES[i]);
    bench_predict();
    double gru[2];
    for (size_t i = 0; i < 2; i++) gru[i] = bench_gru_training(TRAIN_BATCHES[i]);
    printf("\n");
    print_load("at the end");
    printf("summary:");
    for (size_t i = 0; i < 2; i++)
        printf(" batch %zu step %.3f ms (%.2f GFLOP/s, sgemm %.1f%%%s, cell code %.1f%%);", TRAIN_BATCHES[i],
               r[i].step_med, gflops(r[i].flops, r[i].step_med),
               100.0 * (insitu_available() ? r[i].gemm_insitu_ms : r[i].gemm_direct_ms) / r[i].step_med,
               insitu_available() ? " in situ" : " est.", 100.0 * r[i].gates_ms / r[i].step_med);
    printf(" GRU:");
    for (size_t i = 0; i < 2; i++) printf(" batch %zu step %.3f ms;", TRAIN_BATCHES[i], gru[i]);
    printf("\n");
    return 0;
}
