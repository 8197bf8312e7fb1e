/*
 * Pooling and flatten, PyTorch semantics (floor mode):
 *   max:  Y[c,i,j] = max over the window of X, padding never chosen;
 *         dX gets dY at the first maximum of each window (scan order), as
 *         https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html
 *   avg:  Y[c,i,j] = sum over the window / (kh kw), padding counted as zeros
 *         (count_include_pad=True), https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html
 *   global average: Y[c] = mean over H×W of X[c]
 *   flatten: Y = X, reshaped to one dimension
 * The max pooling backward finds the arg-max again from X, so a training
 * forward keeps no index cache.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Window rows [*a, *b) of output row i, clipped to the input. */
static void clip(size_t i, size_t stride, size_t pad, size_t k, size_t n, size_t *a, size_t *b) {
    size_t start = i * stride; /* in padded coordinates */
    *a = start < pad ? 0 : start - pad;
    size_t end = start + k; /* exclusive, padded */
    *b = end <= pad ? 0 : end - pad;
    if (*b > n) *b = n;
}

void aim__pool_forward(const aim__layer *L, const float *x, float *y, size_t batch) {
    if (L->kind == AIM__LAYER_FLATTEN) {
        if (y != x) memcpy(y, x, batch * L->in_size * sizeof(float));
        return;
    }
    const size_t C = L->in_dims[0], H = L->in_dims[1], W = L->in_dims[2];
    if (L->kind == AIM__LAYER_GLOBAL_AVG_POOL2D) {
        const float inv = 1.0f / (float)(H * W);
        for (size_t nc = 0; nc < batch * C; nc++) {
            const float *xc = x + nc * H * W;
            float s = 0.0f;
            for (size_t k = 0; k < H * W; k++) s += xc[k];
            y[nc] = s * inv;
        }
        return;
    }
    const aim__window *w = &L->win;
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2];
    const int is_max = L->kind == AIM__LAYER_MAX_POOL2D;
    const float inv_area = 1.0f / (float)(w->kh * w->kw);
    for (size_t nc = 0; nc < batch * C; nc++) {
        const float *xc = x + nc * H * W;
        float *yc = y + nc * Ho * Wo;
        for (size_t i = 0; i < Ho; i++) {
            size_t r0, r1;
            clip(i, w->sh, w->pt, w->kh, H, &r0, &r1);
            for (size_t j = 0; j < Wo; j++) {
                size_t c0, c1;
                clip(j, w->sw, w->pl, w->kw, W, &c0, &c1);
                if (is_max) {
                    float m = -INFINITY;
                    for (size_t r = r0; r < r1; r++)
                        for (size_t c = c0; c < c1; c++) {
                            float v = xc[r * W + c];
                            if (v > m || isnan(v)) m = v;
                        }
                    yc[i * Wo + j] = m;
                } else {
                    float s = 0.0f;
                    for (size_t r = r0; r < r1; r++)
                        for (size_t c = c0; c < c1; c++) s += xc[r * W + c];
                    yc[i * Wo + j] = s * inv_area;
                }
            }
        }
    }
}

void aim__pool_backward(const aim__layer *L, const float *x, const float *dy, float *dx, size_t batch) {
    if (L->kind == AIM__LAYER_FLATTEN) {
        if (dx != dy) memcpy(dx, dy, batch * L->in_size * sizeof(float));
        return;
    }
    const size_t C = L->in_dims[0], H = L->in_dims[1], W = L->in_dims[2];
    if (L->kind == AIM__LAYER_GLOBAL_AVG_POOL2D) {
        const float inv = 1.0f / (float)(H * W);
        for (size_t nc = 0; nc < batch * C; nc++) {
            float *dxc = dx + nc * H * W;
            const float g = dy[nc] * inv;
            for (size_t k = 0; k < H * W; k++) dxc[k] = g;
        }
        return;
    }
    const aim__window *w = &L->win;
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2];
    const int is_max = L->kind == AIM__LAYER_MAX_POOL2D;
    const float inv_area = 1.0f / (float)(w->kh * w->kw);
    memset(dx, 0, batch * C * H * W * sizeof(float));
    for (size_t nc = 0; nc < batch * C; nc++) {
        const float *xc = x + nc * H * W;
        const float *dyc = dy + nc * Ho * Wo;
        float *dxc = dx + nc * H * W;
        for (size_t i = 0; i < Ho; i++) {
            size_t r0, r1;
            clip(i, w->sh, w->pt, w->kh, H, &r0, &r1);
            for (size_t j = 0; j < Wo; j++) {
                size_t c0, c1;
                clip(j, w->sw, w->pl, w->kw, W, &c0, &c1);
                const float g = dyc[i * Wo + j];
                if (is_max) {
                    /* The same scan as the forward picks the same arg-max. */
                    float m = -INFINITY;
                    size_t at = r0 * W + c0;
                    for (size_t r = r0; r < r1; r++)
                        for (size_t c = c0; c < c1; c++) {
                            float v = xc[r * W + c];
                            if (v > m || isnan(v)) {
                                m = v;
                                at = r * W + c;
                            }
                        }
                    dxc[at] += g;
                } else {
                    const float s = g * inv_area;
                    for (size_t r = r0; r < r1; r++)
                        for (size_t c = c0; c < c1; c++) dxc[r * W + c] += s;
                }
            }
        }
    }
}
