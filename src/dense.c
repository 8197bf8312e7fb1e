/*
 * The dense (fully connected) layer, PyTorch nn.Linear layout:
 *   params = W [units, in] row-major, then b [units]
 *   Z = X·Wᵀ + b,  Y = f(Z)                  X: (B, in)  Z, Y: (B, units)
 * https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>

#include "internal.h"

/* Sizes were checked against INT_MAX when the layer was added. */
#define BI(n) ((blasint)(n))

void aim__dense_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                        size_t batch) {
    const size_t in = L->in_size, out = L->out_size;
    const float *W = params, *b = L->bias_count ? params + L->weight_count : NULL;
    /* With a non-identity activation a training pass keeps Z in the cache for
     * the derivative; otherwise Z is built in y and activated in place. */
    float *z = cache ? cache : y;
    if (batch == 1) {
        /* z = W·x: a GEMV avoids GEMM's packing overhead at batch 1. */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, BI(out), BI(in), 1.0f, W, BI(in), x, 1, 0.0f, z, 1);
    } else {
        /* Z = X·Wᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(batch), BI(out), BI(in), 1.0f, x, BI(in), W, BI(in),
                    0.0f, z, BI(out));
    }
    if (b)
        for (size_t r = 0; r < batch; r++) {
            float *zr = z + r * out;
            for (size_t j = 0; j < out; j++) zr[j] += b[j];
        }
    aim__act_forward(L->act, L->alpha, z, y, batch, out);
}

void aim__dense_backward(const aim__layer *L, const float *params, float *dparams, const float *x,
                         const float *y, const float *cache, float *dy, float *dx, size_t batch) {
    const size_t in = L->in_size, out = L->out_size;
    const float *W = params;
    float *dW = dparams, *db = L->bias_count ? dparams + L->weight_count : NULL;
    /* dZ = dY ⊙ f'(Z), in place in dy */
    const float *z = cache ? cache : y;
    aim__act_backward(L->act, L->alpha, z, y, dy, dy, batch, out);
    const float *dz = dy;
    /* dW += dZᵀ·X */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(out), BI(in), BI(batch), 1.0f, dz, BI(out), x, BI(in),
                1.0f, dW, BI(in));
    /* db += sum over the batch of dZ */
    if (db)
        for (size_t r = 0; r < batch; r++) {
            const float *dzr = dz + r * out;
            for (size_t j = 0; j < out; j++) db[j] += dzr[j];
        }
    /* dX = dZ·W */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(batch), BI(in), BI(out), 1.0f, dz, BI(out), W,
                    BI(in), 0.0f, dx, BI(in));
}

void aim__dense_init(const aim__layer *L, float *params, struct aim_rng *rng) {
    aim__init_weights(L->init, params, L->weight_count, params + L->weight_count, L->bias_count, L->in_size,
                      L->out_size, rng);
}
