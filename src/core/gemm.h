/*
 * The library's own single-precision GEMM (src/core/gemm.c): row-major
 *   C = alpha·op(A)·op(B) + beta·C      op(A): (M, K), op(B): (K, N), C: (M, N)
 * with cblas_sgemm's semantics (CblasRowMajor; op(X) = X or Xᵀ; lda, ldb, ldc
 * the stored rows' strides; beta = 0 means C is not read, so NaN there does
 * not leak). https://www.netlib.org/lapack/explore-html/ (sgemm).
 * Sizes are size_t; the caller keeps them within what its buffers hold.
 * SPDX-License-Identifier: MIT
 */
#ifndef AIM_GEMM_H
#define AIM_GEMM_H

#include <stddef.h>

typedef enum aim__trans { AIM__NOTRANS = 0, AIM__TRANS = 1 } aim__trans;

/* The one entry point the layers call: the AVX-512F kernel below when the
 * CPU has it and the shape is one where it measured faster, cblas_sgemm
 * otherwise (the rule and its figures are in gemm.c). A row of C depends
 * only on its row of op(A) and on op(B), summed in an order fixed by K alone,
 * whatever M is, on the fast path (OpenBLAS's is not always: tests/test_gemm.c);
 * which path a shape takes never depends on M when op(A) = A. */
void aim__sgemm(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* Nonzero when aim__sgemm sends this shape to the AVX-512F kernel (the CPU
 * has it and the rule in gemm.c picks it). */
int aim__sgemm_takes_fast(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K);

/* Plain C reference: each C element one sum over k in order. */
void aim__sgemm_ref(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* Nonzero when this build has the AVX-512F kernel and the CPU runs it. */
int aim__sgemm_fast_available(void);

/* The AVX-512F kernel alone (for tests and the benchmark); returns 0 and
 * does nothing when aim__sgemm_fast_available() is 0. */
int aim__sgemm_fast(aim__trans ta, aim__trans tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                    size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

#endif
