/*
 * The GEMM shapes of the character GPT's training step (batch 16 x context
 * 128, width 128, 4 heads, MLP 512, vocab 96) as src/layers/attention.c and
 * src/layers/dense.c issue them, timed three ways in the same run, one shape
 * group a round (interleaved, so all see the same load): cblas_sgemm, the
 * library's AVX-512F kernel (aim__sgemm_fast) and the dispatcher the layers
 * call (aim__sgemm). Prints one line a shape (median ms, GF/s each way) and
 * the largest difference of the fast kernel from cblas relative to the
 * shape's scale. Build and run (OpenBLAS on one thread):
 *   make bench-gemm BUILD=build/x [BENCH_ROUNDS=15]   # builds build/x/bench/bench_gemm, runs it
 * or by hand: gcc -std=c11 -O2 -Iinclude $(pkg-config --cflags openblas) tests/bench/bench_gemm.c \
 *   build/libaimodel.a $(pkg-config --libs openblas) -lm -pthread -o bench_gemm
 * Prints figures; never fails on a timing (exits 1 when a result is wrong).
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/core/gemm.h"

typedef struct shape {
    const char *what;
    aim__trans ta, tb;
    size_t M, N, K, lda, ldb, ldc;
    float beta;
    size_t count; /* calls a step */
} shape;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { T = 128, E = 128, H = 4, D = E / H, BT = 16 * T, V = 96, BLOCKS = 4 };
/* Causal blocks of attention.c (T = 128: 4 row blocks of 32). */
enum { BS = T / 4 };

static const shape STEP[] = {
    /* attention, over B·T rows: [Q K V] = X·W_inᵀ, Y = O·W_oᵀ, and the backward's */
    {"attn fwd   X.W_in^T", AIM__NOTRANS, AIM__TRANS, BT, 3 * E, E, E, E, 3 * E, 0.0f, BLOCKS},
    {"attn fwd   O.W_o^T", AIM__NOTRANS, AIM__TRANS, BT, E, E, E, E, E, 0.0f, BLOCKS},
    {"attn dW_o  G^T.O", AIM__TRANS, AIM__NOTRANS, E, E, BT, E, E, E, 1.0f, BLOCKS},
    {"attn dO    G.W_o", AIM__NOTRANS, AIM__NOTRANS, BT, E, E, E, E, E, 0.0f, BLOCKS},
    {"attn dW_in dQKV^T.X", AIM__TRANS, AIM__NOTRANS, 3 * E, E, BT, 3 * E, E, E, 1.0f, BLOCKS},
    {"attn dX    dQKV.W_in", AIM__NOTRANS, AIM__NOTRANS, BT, E, 3 * E, 3 * E, E, E, 0.0f, BLOCKS},
    /* per sample and head, causal row block 3 of 4 (the largest): 16·4 heads a block */
    {"attn S     Q.K^T blk", AIM__NOTRANS, AIM__TRANS, BS, T, D, 3 * E, 3 * E, T, 0.0f, 16 * H * BLOCKS},
    {"attn O     P.V blk", AIM__NOTRANS, AIM__NOTRANS, BS, D, T, T, 3 * E, E, 0.0f, 16 * H * BLOCKS},
    {"attn dV    P'^T.dO blk", AIM__TRANS, AIM__NOTRANS, BS, D, T, T, E, 3 * E, 0.0f, 16 * H * BLOCKS},
    /* the MLP's linears and the head, over B·T rows */
    {"fc   fwd   X.W^T", AIM__NOTRANS, AIM__TRANS, BT, 4 * E, E, E, E, 4 * E, 0.0f, BLOCKS},
    {"fc   dW    dZ^T.X", AIM__TRANS, AIM__NOTRANS, 4 * E, E, BT, 4 * E, E, E, 1.0f, BLOCKS},
    {"fc   dX    dZ.W", AIM__NOTRANS, AIM__NOTRANS, BT, E, 4 * E, 4 * E, E, E, 0.0f, BLOCKS},
    {"proj fwd   X.W^T", AIM__NOTRANS, AIM__TRANS, BT, E, 4 * E, 4 * E, 4 * E, E, 0.0f, BLOCKS},
    {"proj dW    dZ^T.X", AIM__TRANS, AIM__NOTRANS, E, 4 * E, BT, E, 4 * E, 4 * E, 1.0f, BLOCKS},
    {"proj dX    dZ.W", AIM__NOTRANS, AIM__NOTRANS, BT, 4 * E, E, E, 4 * E, 4 * E, 0.0f, BLOCKS},
    {"head fwd   X.W^T", AIM__NOTRANS, AIM__TRANS, BT, V, E, E, E, V, 0.0f, 1},
    {"head dW    dZ^T.X", AIM__TRANS, AIM__NOTRANS, V, E, BT, V, E, E, 1.0f, 1},
    {"head dX    dZ.W", AIM__NOTRANS, AIM__NOTRANS, BT, E, V, V, E, E, 0.0f, 1},
};
/* Other callers of the same layers: generation a token at a time (the
 * projections at 1 and 4 rows) and the seed MLP's dense layers at batch 32
 * (784 -> 64 -> 64 -> 10), not part of the step's total. */
static const shape OTHER[] = {
    {"gen  1 row X.W_in^T", AIM__NOTRANS, AIM__TRANS, 1, 3 * E, E, E, E, 3 * E, 0.0f, 16},
    {"gen  4 row X.W_in^T", AIM__NOTRANS, AIM__TRANS, 4, 3 * E, E, E, E, 3 * E, 0.0f, 16},
    {"gen  4 row X.W_fc^T", AIM__NOTRANS, AIM__TRANS, 4, 4 * E, E, E, E, 4 * E, 0.0f, 16},
    {"mlp1 fwd   X.W^T", AIM__NOTRANS, AIM__TRANS, 32, 64, 784, 784, 784, 64, 0.0f, 8},
    {"mlp1 dW    dZ^T.X", AIM__TRANS, AIM__NOTRANS, 64, 784, 32, 64, 784, 784, 1.0f, 8},
    {"mlp2 fwd   X.W^T", AIM__NOTRANS, AIM__TRANS, 32, 64, 64, 64, 64, 64, 0.0f, 8},
    {"mlp2 dW    dZ^T.X", AIM__TRANS, AIM__NOTRANS, 64, 64, 32, 64, 64, 64, 1.0f, 8},
    {"mlp2 dX    dZ.W", AIM__NOTRANS, AIM__NOTRANS, 32, 64, 64, 64, 64, 64, 0.0f, 8},
    {"mlp3 fwd   X.W^T", AIM__NOTRANS, AIM__TRANS, 32, 10, 64, 64, 64, 10, 0.0f, 8},
    {"mlp3 dW    dZ^T.X", AIM__TRANS, AIM__NOTRANS, 10, 64, 32, 10, 64, 64, 1.0f, 8},
    {"mlp3 dX    dZ.W", AIM__NOTRANS, AIM__NOTRANS, 32, 64, 10, 10, 64, 64, 0.0f, 8},
};
enum { NSTEP = sizeof STEP / sizeof STEP[0], NS = NSTEP + sizeof OTHER / sizeof OTHER[0], WAYS = 3 };
static shape SHAPES[NS];

/* Each shape's calls cycle through COPIES sets of operands (the step's 4
 * blocks have their own weights and activations), so the operands of a call
 * are not all in cache from the call before. */
enum { COPIES = 4 };
typedef struct bufs {
    float *A[COPIES], *B[COPIES], *C[WAYS][COPIES];
    size_t nc;
} bufs;

static float *rand_floats(size_t n, unsigned *seed) {
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

static void run(int way, const shape *s, bufs *b) {
    for (size_t c = 0; c < s->count; c++) {
        const size_t u = c % COPIES;
        float *A = b->A[u], *B = b->B[u], *C = b->C[way][u];
        if (way == 0)
            cblas_sgemm(CblasRowMajor, s->ta == AIM__TRANS ? CblasTrans : CblasNoTrans,
                        s->tb == AIM__TRANS ? CblasTrans : CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f, A,
                        (int)s->lda, B, (int)s->ldb, s->beta, C, (int)s->ldc);
        else if (way == 1)
            aim__sgemm_fast(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, s->lda, B, s->ldb, s->beta, C, s->ldc);
        else
            aim__sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, s->lda, B, s->ldb, s->beta, C, s->ldc);
    }
}

int main(int argc, char **argv) {
    size_t rounds = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 15;
    if (rounds == 0 || rounds > 10000) rounds = 15;
    const int fast = aim__sgemm_fast_available();
    printf("# bench_gemm: the GPT step's GEMM shapes, %zu rounds, medians; AVX-512F kernel %s\n", rounds,
           fast ? "available" : "not available (its column repeats nothing)");
    memcpy(SHAPES, STEP, sizeof STEP);
    memcpy(SHAPES + NSTEP, OTHER, sizeof OTHER);
    unsigned seed = 12345u;
    bufs b[NS];
    int bad = 0;
    for (size_t i = 0; i < NS; i++) {
        const shape *s = &SHAPES[i];
        const size_t ar = s->ta == AIM__TRANS ? s->K : s->M, br = s->tb == AIM__TRANS ? s->N : s->K;
        b[i].nc = s->M * s->ldc;
        for (size_t u = 0; u < COPIES; u++) {
            b[i].A[u] = rand_floats(ar * s->lda, &seed);
            b[i].B[u] = rand_floats(br * s->ldb, &seed);
            for (int w = 0; w < WAYS; w++) b[i].C[w][u] = rand_floats(b[i].nc, &seed);
            memcpy(b[i].C[1][u], b[i].C[0][u], b[i].nc * sizeof(float));
            memcpy(b[i].C[2][u], b[i].C[0][u], b[i].nc * sizeof(float));
        }
        /* one call each from the same C, compared */
        shape one = *s;
        one.count = 1;
        for (int w = 0; w < WAYS; w++) run(w, &one, &b[i]);
        double worst = 0.0;
        const double scale = sqrt((double)s->K) * 0.3 + 1.0; /* |sum| of K products of U(-.5,.5)^2 */
        for (size_t k = 0; k < b[i].nc; k++) {
            const double e = fabs((double)b[i].C[1][0][k] - (double)b[i].C[0][0][k]) / scale;
            if (!(e <= worst)) worst = e;
        }
        if (fast && !(worst < 1e-5)) {
            printf("# %s: fast kernel differs from cblas by %.3g (scaled): WRONG\n", s->what, worst);
            bad = 1;
        }
    }
    double *t = malloc(NS * WAYS * rounds * sizeof *t);
    if (!t) return 1;
    for (size_t r = 0; r < rounds + 2; r++) /* 2 warm-up rounds */
        for (size_t i = 0; i < NS; i++)
            for (int w = 0; w < WAYS; w++) {
                const double a = now_s();
                run(w, &SHAPES[i], &b[i]);
                if (r >= 2) t[(i * WAYS + (size_t)w) * rounds + r - 2] = now_s() - a;
            }
    printf("# %-22s %2s %5s %5s %5s %5s %8s %8s %8s %8s %8s %8s\n", "shape", "op", "M", "N", "K", "calls",
           "cblas ms", "GF/s", "fast ms", "GF/s", "aim ms", "GF/s");
    double tot[WAYS] = {0, 0, 0}, flops = 0.0;
    for (size_t i = 0; i < NS; i++) {
        const shape *s = &SHAPES[i];
        const double f = 2.0 * (double)s->M * (double)s->N * (double)s->K * (double)s->count;
        if (i == NSTEP)
            printf("  %-22s %35s %8.3f %8.1f %8.3f %8.1f %8.3f %8.1f\n# other callers:\n", "the step (sum of medians)", "",
                   tot[0] * 1e3, flops / tot[0] / 1e9, tot[1] * 1e3, flops / tot[1] / 1e9, tot[2] * 1e3,
                   flops / tot[2] / 1e9);
        printf("  %-22s %c%c %5zu %5zu %5zu %5zu", s->what, s->ta == AIM__TRANS ? 'T' : 'N',
               s->tb == AIM__TRANS ? 'T' : 'N', s->M, s->N, s->K, s->count);
        if (i < NSTEP) flops += f;
        for (int w = 0; w < WAYS; w++) {
            double *x = t + (i * WAYS + (size_t)w) * rounds;
            qsort(x, rounds, sizeof *x, cmp_d);
            const double med = x[rounds / 2];
            if (i < NSTEP) tot[w] += med;
            printf(" %8.3f %8.1f", med * 1e3, f / med / 1e9);
        }
        printf("\n");
    }
    for (size_t i = 0; i < NS; i++)
        for (size_t u = 0; u < COPIES; u++) {
            free(b[i].A[u]);
            free(b[i].B[u]);
            for (int w = 0; w < WAYS; w++) free(b[i].C[w][u]);
        }
    free(t);
    return bad;
}
