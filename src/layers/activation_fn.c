/*
 * Activation functions: each forward sits beside its derivative.
 * Semantics follow PyTorch (https://pytorch.org/docs/stable/nn.html#non-linear-activations-weighted-sum-nonlinearity).
 * SPDX-License-Identifier: MIT
 */
#include <math.h>

#include "fastmath.h"
#include "internal.h"

int aim__activation_valid(aim_activation act) {
    return act >= AIM_ACT_IDENTITY && act <= AIM_ACT_GELU;
}

/* sigmoid(x) without overflow: exp only ever of a non-positive number. */
static float sigmoidf(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* Softmax of one row, stable: exp(x - max) / sum. */
static void softmax_row(const float *x, float *y, size_t n) {
    float m = x[0];
    for (size_t j = 1; j < n; j++) m = x[j] > m ? x[j] : m;
    double sum = 0.0;
    for (size_t j = 0; j < n; j++) {
        y[j] = expf(x[j] - m);
        sum += (double)y[j];
    }
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < n; j++) y[j] *= inv;
}

#define AIM_INV_SQRT_2PI 0.39894228040143267794f /* 1/sqrt(2*pi) */

AIM__HOT void aim__act_forward(aim_activation act, float alpha, const float *x, float *y, size_t rows, size_t cols) {
    const size_t n = rows * cols;
    switch (act) {
    case AIM_ACT_IDENTITY: /* f(x) = x */
        if (y != x)
            for (size_t i = 0; i < n; i++) y[i] = x[i];
        break;
    case AIM_ACT_RELU: /* f(x) = max(x, 0) */
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = v > 0.0f ? v : 0.0f;
        }
        break;
    case AIM_ACT_LEAKY_RELU: /* f(x) = x > 0 ? x : alpha x */
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case AIM_ACT_SIGMOID: /* f(x) = 1 / (1 + e^-x) */
        for (size_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
        break;
    case AIM_ACT_TANH: /* f(x) = tanh x */
        for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    case AIM_ACT_SOFTMAX: /* f(x)_j = e^x_j / sum_k e^x_k, per row */
        for (size_t r = 0; r < rows; r++) softmax_row(x + r * cols, y + r * cols, cols);
        break;
    case AIM_ACT_GELU: /* f(x) = x Phi(x) = x/2 (1 + erf(x/sqrt 2)); Phi by fastmath.h */
        for (size_t i = 0; i < n; i++) y[i] = x[i] * aim__phi(x[i]);
        break;
    }
}

AIM__HOT void aim__act_backward(aim_activation act, float alpha, const float *x, const float *y, const float *dy,
                       float *dx, size_t rows, size_t cols) {
    const size_t n = rows * cols;
    switch (act) {
    case AIM_ACT_IDENTITY: /* f' = 1 */
        if (dx != dy)
            for (size_t i = 0; i < n; i++) dx[i] = dy[i];
        break;
    /* dy is loaded unconditionally so the select compiles to a blend, not a
     * branch on the (unpredictable) sign of x. */
    case AIM_ACT_RELU: /* f' = [x > 0] */
        for (size_t i = 0; i < n; i++) {
            float d = dy[i];
            dx[i] = x[i] > 0.0f ? d : 0.0f;
        }
        break;
    case AIM_ACT_LEAKY_RELU: /* f' = x > 0 ? 1 : alpha */
        for (size_t i = 0; i < n; i++) {
            float d = dy[i];
            dx[i] = x[i] > 0.0f ? d : alpha * d;
        }
        break;
    case AIM_ACT_SIGMOID: /* f' = y (1 - y) */
        for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case AIM_ACT_TANH: /* f' = 1 - y^2 */
        for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case AIM_ACT_SOFTMAX: /* dx_j = y_j (dy_j - sum_k dy_k y_k), per row */
        for (size_t r = 0; r < rows; r++) {
            const float *yr = y + r * cols, *dyr = dy + r * cols;
            float *dxr = dx + r * cols;
            double dot = 0.0;
            for (size_t j = 0; j < cols; j++) dot += (double)dyr[j] * (double)yr[j];
            for (size_t j = 0; j < cols; j++) dxr[j] = yr[j] * (dyr[j] - (float)dot);
        }
        break;
    case AIM_ACT_GELU: /* f' = Phi(x) + x phi(x) */
        for (size_t i = 0; i < n; i++) {
            float cdf = aim__phi(x[i]);
            float pdf = AIM_INV_SQRT_2PI * aim__exp(-0.5f * x[i] * x[i]);
            dx[i] = dy[i] * (cdf + x[i] * pdf);
        }
        break;
    }
}

aim_status aim_activation_forward(aim_activation act, float alpha, const float *x, float *y, size_t rows,
                                  size_t cols) {
    size_t n;
    if (!x || !y || rows == 0 || cols == 0 || !aim__activation_valid(act)) return AIM_ERR_INVALID_ARGUMENT;
    if (!aim__mul(rows, cols, &n)) return AIM_ERR_OVERFLOW;
    aim__act_forward(act, alpha, x, y, rows, cols);
    return AIM_OK;
}
