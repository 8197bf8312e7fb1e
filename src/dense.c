/*
 * The dense (fully connected) layer, PyTorch nn.Linear layout:
 *   params = W [units, in] row-major, then b [units]
 *   Z = X·Wᵀ + b,  Y = f(Z)                  X: (B, in)  Z, Y: (B, units)
 * https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

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
    const size_t in = L->in_size, out = L->out_size;
    float *W = params, *b = params + L->weight_count;
    switch (L->init) {
    case AIM_INIT_GLOROT_UNIFORM: { /* Keras: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); bias 0 */
        float l = (float)sqrt(6.0 / (double)(in + out));
        for (size_t i = 0; i < L->weight_count; i++) W[i] = l * (2.0f * aim__rng_uniform(rng) - 1.0f);
        memset(b, 0, L->bias_count * sizeof(float));
        break;
    }
    case AIM_INIT_PYTORCH: { /* nn.Linear: W and b from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
        float l = (float)(1.0 / sqrt((double)in));
        for (size_t i = 0; i < L->weight_count; i++) W[i] = l * (2.0f * aim__rng_uniform(rng) - 1.0f);
        for (size_t i = 0; i < L->bias_count; i++) b[i] = l * (2.0f * aim__rng_uniform(rng) - 1.0f);
        break;
    }
    case AIM_INIT_HE_NORMAL: { /* N(0, 2 / fan_in); bias 0 */
        float s = (float)sqrt(2.0 / (double)in);
        for (size_t i = 0; i < L->weight_count; i++) W[i] = s * aim__rng_normal(rng);
        memset(b, 0, L->bias_count * sizeof(float));
        break;
    }
    case AIM_INIT_ZEROS:
        memset(params, 0, (L->weight_count + L->bias_count) * sizeof(float));
        break;
    }
}
