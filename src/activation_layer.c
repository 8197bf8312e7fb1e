/*
 * The standalone activation layer: Y = f(X), same shape. Softmax normalizes
 * over the last dimension of each sample.
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"

/* Rows and columns as the activation kernels see them. */
static void layout(const aim__layer *L, size_t batch, size_t *rows, size_t *cols) {
    size_t last = L->in_dims[L->in_rank - 1];
    *cols = L->act == AIM_ACT_SOFTMAX ? last : L->in_size;
    *rows = batch * (L->in_size / *cols);
}

void aim__activation_layer_forward(const aim__layer *L, const float *x, float *y, size_t batch) {
    size_t rows, cols;
    layout(L, batch, &rows, &cols);
    aim__act_forward(L->act, L->alpha, x, y, rows, cols);
}

void aim__activation_layer_backward(const aim__layer *L, const float *x, const float *y, const float *dy,
                                    float *dx, size_t batch) {
    size_t rows, cols;
    layout(L, batch, &rows, &cols);
    aim__act_backward(L->act, L->alpha, x, y, dy, dx, rows, cols);
}
