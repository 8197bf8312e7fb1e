/*
 * Single-precision GEMM: a plain C reference and an AVX-512F kernel for the
 * thin products of the GPT (K = 128 projections over M = B·T rows, and their
 * K = B·T weight gradients), where OpenBLAS's kernels leave a measured gap.
 * Semantics: cblas_sgemm, row-major (see gemm.h).
 *
 * The fast path is the usual GotoBLAS blocking (Goto and van de Geijn,
 * "Anatomy of high-performance matrix multiplication", TOMS 2008):
 *   for each block of NC columns of op(B)
 *     for each block of KC rows of op(B) (K split in chunks of KC)
 *       pack op(B)[pc.., jc..] into panels of NR columns, k-major
 *       for each block of MC rows of op(A)
 *         (op(A) = Aᵀ: pack it into panels of MR rows, k-major; op(A) = A
 *          is read in place, a row a pointer)
 *         for each panel of B, for each MR rows: the MR x NR register tile
 * The tile keeps MR x NR sums in 16 zmm registers, one FMA per (row, half)
 * and k; each KC chunk's sums are added into C (scaled by alpha; the first
 * chunk scales C by beta, or ignores it when beta = 0). Edge tiles: masked
 * loads and stores for the columns, a zero-padded copy of the last rows.
 * Every C element is so the same sequence of FMAs whatever M, the tile it
 * falls in and the block sizes that depend on M: a row's result depends only
 * on its row of A, on B and on K.
 *
 * Packing buffers live on the stack, B_FLOATS + MC·KC floats
 * (96 KiB): no allocation, no state kept between calls, safe from any thread.
 * The AVX-512F code is compiled with a target attribute (no -march), picked
 * by __builtin_cpu_supports at each call (a cpuid bit read once by libgcc
 * at load; nothing of ours is written at run time).
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "gemm.h"
#include "internal.h"

/* ---- reference -------------------------------------------------------------- */

void aim__sgemm_ref(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (size_t k = 0; k < K; k++) {
                const float a = ta == AIM__TRANS ? A[k * lda + i] : A[i * lda + k];
                const float b = tb == AIM__TRANS ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            float *c = C + i * ldc + j;
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

/* ---- AVX-512F ---------------------------------------------------------------- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(AIM_NO_AVX512_GEMM)
#define AIM__GEMM_AVX512 1
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))
enum {
    MR = 8,        /* rows of the register tile */
    NR = 32,       /* columns: two zmm of 16 floats */
    KC = 128,      /* K is summed in chunks of at most KC */
    B_FLOATS = 16384, /* packed op(B) block, 64 KiB: 128 k x 128 columns (more columns for a shorter K) */
    MC = 64        /* rows of a packed Aᵀ block: MC x KC floats, 32 KiB */
};
/* Rows of A read in place per block (kept in L2 across the B panels). */
#define MC_ROWS 128u

int aim__sgemm_fast_available(void) { return __builtin_cpu_supports("avx512f") != 0; }

/* One k step of one tile row: two FMAs with a(r, k) broadcast. */
#define ROW(r, av)                                     \
    if (rows > r) {                                    \
        const __m512 a_ = _mm512_set1_ps(av);          \
        c##r##0 = _mm512_fmadd_ps(a_, b0, c##r##0);    \
        c##r##1 = _mm512_fmadd_ps(a_, b1, c##r##1);    \
    }

/* The tile's sums into C row r (when r < mr): first chunk C = alpha·acc
 * (beta 0) or alpha·acc + beta·C, later chunks C = alpha·acc + C, one FMA. */
#define STORE(r)                                                                           \
    do {                                                                                   \
        if (rows > r && r < mr) {                                                          \
            float *cr = c + (size_t)(r) * ldc;                                             \
            __m512 o0, o1;                                                                 \
            if (first && beta == 0.0f) {                                                   \
                o0 = _mm512_mul_ps(va, c##r##0);                                           \
                o1 = _mm512_mul_ps(va, c##r##1);                                           \
            } else {                                                                       \
                __m512 p0 = _mm512_maskz_loadu_ps(m0, cr), p1 = _mm512_maskz_loadu_ps(m1, cr + 16); \
                if (first) {                                                               \
                    p0 = _mm512_mul_ps(vb, p0);                                            \
                    p1 = _mm512_mul_ps(vb, p1);                                            \
                }                                                                          \
                o0 = _mm512_fmadd_ps(va, c##r##0, p0);                                     \
                o1 = _mm512_fmadd_ps(va, c##r##1, p1);                                     \
            }                                                                              \
            _mm512_mask_storeu_ps(cr, m0, o0);                                             \
            _mm512_mask_storeu_ps(cr + 16, m1, o1);                                        \
        }                                                                                  \
    } while (0)

/* The MR x NR tile over kc steps: a(r, k) = a[r·rs + k·cs] (a packed panel:
 * rs 1, cs MR; rows of A in place: rs lda, cs 1), b a packed panel
 * (b[k·NR + j]); C's first mr rows and the columns of masks m0, m1 updated.
 * `rows` (a constant in each instance) leaves out the sums of rows past it:
 * a short last block of rows costs its own rows only, each row's FMAs the same. */
AVX512 static inline __attribute__((always_inline)) void tile(size_t rows, size_t kc, const float *a, size_t rs, size_t cs,
                                                               const float *b, float *c, size_t ldc, size_t mr,
                                                               __mmask16 m0, __mmask16 m1, float alpha, float beta,
                                                               int first, const float *pf) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    /* rows past `rows` point at row 0 (never read: ROW skips them) */
#define ROW_AT(r) (rows > (r) ? a + (r) * rs : a)
    const float *a0 = a, *a1 = ROW_AT(1), *a2 = ROW_AT(2), *a3 = ROW_AT(3), *a4 = ROW_AT(4), *a5 = ROW_AT(5),
                *a6 = ROW_AT(6), *a7 = ROW_AT(7);
#undef ROW_AT
    for (size_t k = 0; k < kc; k++) {
        if (pf && (k & 15) == 0) /* the next tile's rows of A, a cache line each per 16 k */
            for (size_t r = 0; r < MR; r++) _mm_prefetch((const char *)(pf + r * rs + k), _MM_HINT_T0);
        const __m512 b0 = _mm512_loadu_ps(b + k * NR), b1 = _mm512_loadu_ps(b + k * NR + 16);
        const size_t o = k * cs;
        ROW(0, a0[o]);
        ROW(1, a1[o]);
        ROW(2, a2[o]);
        ROW(3, a3[o]);
        ROW(4, a4[o]);
        ROW(5, a5[o]);
        ROW(6, a6[o]);
        ROW(7, a7[o]);
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    STORE(0);
    STORE(1);
    STORE(2);
    STORE(3);
    STORE(4);
    STORE(5);
    STORE(6);
    STORE(7);
}

/* Instances with the strides known: packed panels of 8, 4, 2 and 1 rows,
 * and 8 rows of A in place. */
#define TILE_PACKED(R)                                                                                             \
    AVX512 static void tile_packed##R(size_t kc, const float *a, const float *b, float *c, size_t ldc, size_t mr, \
                                      __mmask16 m0, __mmask16 m1, float alpha, float beta, int first) {            \
        tile(R, kc, a, 1, MR, b, c, ldc, mr, m0, m1, alpha, beta, first, NULL);                                    \
    }
TILE_PACKED(8)
TILE_PACKED(4)
TILE_PACKED(2)
TILE_PACKED(1)
AVX512 static void tile_rows(size_t kc, const float *a, size_t lda, const float *b, float *c, size_t ldc,
                             __mmask16 m0, __mmask16 m1, float alpha, float beta, int first, const float *pf) {
    tile(MR, kc, a, lda, 1, b, c, ldc, MR, m0, m1, alpha, beta, first, pf);
}
/* A packed panel of mr rows (1 .. MR), by the smallest instance that covers them. */
static void tile_packed(size_t kc, const float *a, const float *b, float *c, size_t ldc, size_t mr, __mmask16 m0,
                        __mmask16 m1, float alpha, float beta, int first) {
    if (mr > 4)
        tile_packed8(kc, a, b, c, ldc, mr, m0, m1, alpha, beta, first);
    else if (mr > 2)
        tile_packed4(kc, a, b, c, ldc, mr, m0, m1, alpha, beta, first);
    else if (mr > 1)
        tile_packed2(kc, a, b, c, ldc, mr, m0, m1, alpha, beta, first);
    else
        tile_packed1(kc, a, b, c, ldc, mr, m0, m1, alpha, beta, first);
}

static __mmask16 mask_of(size_t n) {
    unsigned m = n >= 16 ? 0xFFFFu : (1u << n) - 1u;
    return (__mmask16)m;
}

/* r[i][j] -> r[j][i] for a 16 x 16 block: pairs, then quads within each
 * 128-bit lane (unpack), then lanes (two rounds of shuffle_f32x4). */
AVX512 static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* u[i + m]: column m of each lane, rows i .. i + 3 */
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]), c = _mm512_castps_pd(t[i + 2]),
                      d = _mm512_castps_pd(t[i + 3]);
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int m = 0; m < 4; m++) {
        const __m512 v02 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88), v13 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);
        const __m512 w02 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88),
                     w13 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
        r[m] = _mm512_shuffle_f32x4(v02, w02, 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(v02, w02, 0xDD);
        r[4 + m] = _mm512_shuffle_f32x4(v13, w13, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(v13, w13, 0xDD);
    }
}

/* op(B)[pc .. pc+kc, jc .. jc+nc] into panels of NR columns (bp[q][k][j]),
 * zero past column N. */
AVX512 static void pack_b(aim__trans tb, const float *B, size_t ldb, size_t pc, size_t kc, size_t jc, size_t nc, size_t N,
                   float *bp) {
    for (size_t q = 0; q < nc; q += NR) {
        float *dst = bp + q * kc;
        const size_t nr = N - (jc + q) < NR ? N - (jc + q) : NR;
        if (tb == AIM__NOTRANS && nr == NR) {
            for (size_t k = 0; k < kc; k++) {
                const float *src = B + (pc + k) * ldb + jc + q;
                _mm512_storeu_ps(dst + k * NR, _mm512_loadu_ps(src));
                _mm512_storeu_ps(dst + k * NR + 16, _mm512_loadu_ps(src + 16));
            }
        } else if (tb == AIM__NOTRANS) {
            for (size_t k = 0; k < kc; k++) {
                const float *src = B + (pc + k) * ldb + jc + q;
                float *d = dst + k * NR;
                memcpy(d, src, nr * sizeof(float));
                for (size_t j = nr; j < NR; j++) d[j] = 0.0f;
            }
        } else {
            /* B holds op(B)ᵀ: column j of op(B) is row j of B; 16 x 16 blocks transposed in registers */
            for (size_t jh = 0; jh < NR; jh += 16)
                for (size_t k0 = 0; k0 < kc; k0 += 16) {
                    const size_t nk = kc - k0 < 16 ? kc - k0 : 16;
                    const __mmask16 mk = mask_of(nk);
                    __m512 r[16];
                    for (size_t j = 0; j < 16; j++)
                        r[j] = jh + j < nr ? _mm512_maskz_loadu_ps(mk, B + (jc + q + jh + j) * ldb + pc + k0)
                                           : _mm512_setzero_ps();
                    transpose16(r);
                    for (size_t k = 0; k < nk; k++) _mm512_storeu_ps(dst + (k0 + k) * NR + jh, r[k]);
                }
        }
    }
}

/* Rows [i0, i0 + mr) of op(A), k in [pc, pc + kc), as one MR-row panel
 * (ap[k][r]), zero past row mr. */
AVX512 static void pack_a(aim__trans ta, const float *A, size_t lda, size_t i0, size_t mr, size_t pc, size_t kc,
                          float *ap) {
    if (ta == AIM__TRANS && mr == MR) { /* MR = 8 floats a k: one ymm copy */
        for (size_t k = 0; k < kc; k++) _mm256_storeu_ps(ap + k * MR, _mm256_loadu_ps(A + (pc + k) * lda + i0));
    } else if (ta == AIM__TRANS) {
        for (size_t k = 0; k < kc; k++) {
            const float *src = A + (pc + k) * lda + i0;
            float *d = ap + k * MR;
            for (size_t r = 0; r < mr; r++) d[r] = src[r];
            for (size_t r = mr; r < MR; r++) d[r] = 0.0f;
        }
    } else {
        for (size_t r = 0; r < MR; r++) {
            const float *src = A + (i0 + r) * lda + pc;
            for (size_t k = 0; k < kc; k++) ap[k * MR + r] = r < mr ? src[k] : 0.0f;
        }
    }
}

int aim__sgemm_fast(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (!aim__sgemm_fast_available()) return 0;
    if (M == 0 || N == 0) return 1;
    if (K == 0 || alpha == 0.0f) { /* C = beta·C, beta 0 not reading C */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return 1;
    }
    _Alignas(64) float bp[B_FLOATS];
    _Alignas(64) float ap[MC * KC];
    /* K in chunks of KC; a function of K alone, so of no M */
    const size_t kcmax = K < KC ? K : KC;
    size_t ncmax = B_FLOATS / kcmax / NR * NR;
    const size_t Nr = (N + NR - 1) / NR * NR;
    if (ncmax > Nr) ncmax = Nr;
    for (size_t jc = 0; jc < N; jc += ncmax) {
        const size_t nc = N - jc < ncmax ? (N - jc + NR - 1) / NR * NR : ncmax;
        for (size_t pc = 0; pc < K; pc += kcmax) {
            const size_t kc = K - pc < kcmax ? K - pc : kcmax;
            const int first = pc == 0;
            pack_b(tb, B, ldb, pc, kc, jc, nc, N, bp);
            const size_t mc_step = ta == AIM__TRANS ? MC : MC_ROWS;
            for (size_t ic = 0; ic < M; ic += mc_step) {
                const size_t mc = M - ic < mc_step ? M - ic : mc_step;
                if (ta == AIM__TRANS)
                    for (size_t ir = 0; ir < mc; ir += MR)
                        pack_a(ta, A, lda, ic + ir, mc - ir < MR ? mc - ir : MR, pc, kc, ap + ir * kc);
                for (size_t q = 0; q < nc; q += NR) {
                    const size_t j = jc + q, nr = N - j < NR ? N - j : NR;
                    const __mmask16 m0 = mask_of(nr), m1 = nr > 16 ? mask_of(nr - 16) : (__mmask16)0;
                    const float *bq = bp + q * kc;
                    for (size_t ir = 0; ir < mc; ir += MR) {
                        const size_t i = ic + ir, mr = mc - ir < MR ? mc - ir : MR;
                        float *ct = C + i * ldc + j;
                        if (ta == AIM__TRANS) {
                            tile_packed(kc, ap + ir * kc, bq, ct, ldc, mr, m0, m1, alpha, beta, first);
                        } else if (mr == MR) {
                            /* the first panel meets A's rows cold: fetch the next tile's ahead */
                            const float *pf = q == 0 && ir + 2 * MR <= mc ? A + (i + MR) * lda + pc : NULL;
                            tile_rows(kc, A + i * lda + pc, lda, bq, ct, ldc, m0, m1, alpha, beta, first, pf);
                        } else { /* the last rows: a zero-padded panel, the same FMAs */
                            pack_a(ta, A, lda, i, mr, pc, kc, ap);
                            tile_packed(kc, ap, bq, ct, ldc, mr, m0, m1, alpha, beta, first);
                        }
                    }
                }
            }
        }
    }
    return 1;
}

#else /* no AVX-512F kernel in this build */

int aim__sgemm_fast_available(void) { return 0; }

int aim__sgemm_fast(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb, (void)beta;
    (void)C, (void)ldc;
    return 0;
}

#endif

/* ---- dispatch ---------------------------------------------------------------- */

/* Which path a shape takes. Measured with tests/bench/bench_gemm.c (one
 * thread, Zen 4, OpenBLAS 0.3.21 Haswell kernels, hot operands, GF/s
 * cblas against ours): the GPT step's shapes with N >= 96 ours 93-109
 * against 88-96 (NT 2048x128x512: 105 vs 88; TN 384x128x2048: 98 vs 86);
 * below N = 64 OpenBLAS wins (NN 32x32x128: 109 vs 101; TN 32x32x128:
 * 113 vs 84; NT 32x10x64: 56 vs 30), as it does for Aᵀ with few rows (TN
 * 10x64x32: 76 vs 66) and for Aᵀ with N > 2 M (cold operands, TN
 * 128x512x2048: 93 vs 85; 64x784x32: 73 vs 62). The rule may use N, K
 * and the transposes but, when op(A) = A, never M: a thread pool's slices
 * of the rows must take the same path as the whole batch (with op(A) = Aᵀ,
 * M is a layer's width, which no pool splits). */
int aim__sgemm_takes_fast(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K) {
    (void)tb, (void)K;
    return N >= 64 && (ta == AIM__NOTRANS || (M >= 64 && N <= 2 * M)) && aim__sgemm_fast_available();
}

void aim__sgemm(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (aim__sgemm_takes_fast(ta, tb, M, N, K)) {
        aim__sgemm_fast(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* The callers keep every size within INT_MAX (their setup and check hooks);
     * int converts to blasint through the prototype. */
    cblas_sgemm(CblasRowMajor, ta == AIM__TRANS ? CblasTrans : CblasNoTrans, tb == AIM__TRANS ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
