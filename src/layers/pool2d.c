/*
 * 2-D max and average pooling, PyTorch semantics (floor mode):
 *   max:  Y[c,i,j] = max over the window of X, padding never chosen;
 *         dX gets dY at the first maximum of each window (scan order), as
 *         https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html
 *   avg:  Y[c,i,j] = sum over the window / (kh kw), padding counted as zeros
 *         (count_include_pad=True), https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html
 * The max pooling backward finds the arg-max again from X, so a training
 * forward keeps no index cache.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__pool2d_cfg, L)
_Static_assert(sizeof(aim__pool2d_cfg) <= AIM__LAYER_CFG_BYTES, "pool2d config too large");

/* Window rows [*a, *b) of output row i, clipped to the input. */
static void clip(size_t i, size_t stride, size_t pad, size_t k, size_t n, size_t *a, size_t *b) {
    size_t start = i * stride; /* in padded coordinates */
    *a = start < pad ? 0 : start - pad;
    size_t end = start + k; /* exclusive, padded */
    *b = end <= pad ? 0 : end - pad;
    if (*b > n) *b = n;
}

/* The common 2x2 window with stride 2 and no padding (every seed CNN's
 * pooling). PyTorch's rule: scanning a, b (top row), c, d (bottom row), a
 * candidate replaces the running maximum when it is greater or NaN, so the
 * first maximum wins and NaN propagates.
 * The selects are done on the bits, so that even the scalar remainder of a
 * row has no data-dependent branch (on random data a branch per window
 * mispredicts half the time: 2.4 ms instead of 0.11 ms for 32x32 26x26
 * planes). The rows are short (13 outputs here), so these loops are not
 * multiversioned: measured, the AVX-512 build of them is 3-4x slower than
 * the baseline SSE one, its vector loop rarely running. */
static inline uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* t ? b : a, t in {0, 1}, without a branch */
static inline float pick(int t, float b, float a) {
    const uint32_t m = 0u - (uint32_t)t;
    return float_of((bits_of(b) & m) | (bits_of(a) & ~m));
}

static void max2x2_rows(const float *restrict r0, const float *restrict r1, float *restrict y, size_t Wo) {
    for (size_t j = 0; j < Wo; j++) {
        float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
        float v = pick((b > a) | (b != b), b, a);
        v = pick((c > v) | (c != c), c, v);
        y[j] = pick((d > v) | (d != d), d, v);
    }
}

static void max2x2_rows_backward(const float *restrict r0, const float *restrict r1, const float *restrict dy,
                                 float *restrict d0, float *restrict d1, size_t Wo) {
    for (size_t j = 0; j < Wo; j++) {
        float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1], g = dy[j];
        /* the gradient follows the running maximum to the last candidate that replaced it */
        int t = (b > a) | (b != b);
        float v = pick(t, b, a), ga = pick(t, 0.0f, g), gb = pick(t, g, 0.0f);
        t = (c > v) | (c != c);
        v = pick(t, c, v);
        ga = pick(t, 0.0f, ga);
        gb = pick(t, 0.0f, gb);
        float gc = pick(t, g, 0.0f);
        t = (d > v) | (d != d);
        d0[2 * j] = pick(t, 0.0f, ga);
        d0[2 * j + 1] = pick(t, 0.0f, gb);
        d1[2 * j] = pick(t, 0.0f, gc);
        d1[2 * j + 1] = pick(t, g, 0.0f);
    }
}

static int is_2x2_s2(const aim__layer *L) {
    const aim__window *w = &CFG(L)->win;
    return CFG(L)->is_max && w->kh == 2 && w->kw == 2 && w->sh == 2 && w->sw == 2 && w->pt == 0 &&
           w->pl == 0;
}

static void max2x2_forward(const aim__layer *L, const float *x, float *y, size_t batch) {
    const size_t C = L->in_dims[0], H = L->in_dims[1], W = L->in_dims[2];
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2];
    for (size_t nc = 0; nc < batch * C; nc++)
        for (size_t i = 0; i < Ho; i++) {
            const float *r0 = x + nc * H * W + 2 * i * W;
            max2x2_rows(r0, r0 + W, y + (nc * Ho + i) * Wo, Wo);
        }
}

static void max2x2_backward(const aim__layer *L, const float *x, const float *dy, float *dx, size_t batch) {
    const size_t C = L->in_dims[0], H = L->in_dims[1], W = L->in_dims[2];
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2];
    /* Windows do not overlap: each covered input is written exactly once;
     * only an odd last row or column needs zeroing first. */
    if (2 * Ho != H || 2 * Wo != W) memset(dx, 0, batch * C * H * W * sizeof(float));
    for (size_t nc = 0; nc < batch * C; nc++)
        for (size_t i = 0; i < Ho; i++) {
            const size_t off = nc * H * W + 2 * i * W;
            max2x2_rows_backward(x + off, x + off + W, dy + (nc * Ho + i) * Wo, dx + off, dx + off + W, Wo);
        }
}

void aim__pool_forward(const aim__layer *L, const float *x, float *y, size_t batch) {
    if (is_2x2_s2(L)) {
        max2x2_forward(L, x, y, batch);
        return;
    }
    const size_t C = L->in_dims[0], H = L->in_dims[1], W = L->in_dims[2];
    const aim__window *w = &CFG(L)->win;
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2];
    const int is_max = CFG(L)->is_max;
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
    if (is_2x2_s2(L)) {
        max2x2_backward(L, x, dy, dx, batch);
        return;
    }
    const size_t C = L->in_dims[0], H = L->in_dims[1], W = L->in_dims[2];
    const aim__window *w = &CFG(L)->win;
    const size_t Ho = L->out_dims[1], Wo = L->out_dims[2];
    const int is_max = CFG(L)->is_max;
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

aim_status aim_pool2d_config_init(aim_pool2d_config *c, size_t kernel_h, size_t kernel_w) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->kernel_h = kernel_h;
    c->kernel_w = kernel_w;
    c->stride_h = kernel_h;
    c->stride_w = kernel_w;
    return AIM_OK;
}

static aim_status add_pool(aim_model *m, const aim__layer_ops *ops, const aim_pool2d_config *c) {
    aim__pool2d_cfg k;
    memset(&k, 0, sizeof k);
    if (c) {
        k.win.kh = c->kernel_h;
        k.win.kw = c->kernel_w;
        k.win.sh = c->stride_h;
        k.win.sw = c->stride_w;
        k.win.dh = k.win.dw = 1;
        k.win.pt = k.win.pb = c->pad_h;
        k.win.pl = k.win.pr = c->pad_w;
        k.win.groups = 1;
    }
    k.is_max = ops == &aim__max_pool2d_ops;
    return aim__model_add_node(m, ops, c ? &k : NULL, sizeof k, NULL, 0);
}

aim_status aim_model_add_max_pool2d(aim_model *m, const aim_pool2d_config *c) {
    return add_pool(m, &aim__max_pool2d_ops, c);
}

aim_status aim_model_add_avg_pool2d(aim_model *m, const aim_pool2d_config *c) {
    return add_pool(m, &aim__avg_pool2d_ops, c);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const aim__window *w = &CFG(L)->win;
    if (w->kh == 0 || w->kw == 0 || w->sh == 0 || w->sw == 0) {
        snprintf(msg, AIM__ERR_CAP, "kernel and stride must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (in[0].rank != 3) {
        snprintf(msg, AIM__ERR_CAP, "input must be one C x H x W sample (rank 3), got rank %zu", in[0].rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    /* A stored record holds the four sides; the builders make them pairwise equal. */
    if (w->pt != w->pb || w->pl != w->pr || w->dh != 1 || w->dw != 1 || w->groups != 1) {
        snprintf(msg, AIM__ERR_CAP, "padding must be symmetric, dilation and groups 1");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (w->pt > w->kh / 2 || w->pl > w->kw / 2) {
        snprintf(msg, AIM__ERR_CAP, "padding must be at most half the window (as in PyTorch)");
        return AIM_ERR_SHAPE_MISMATCH;
    }
    size_t Ho, Wo;
    aim_status st;
    if ((st = aim__window_out_len("height", in[0].dims[1], w->kh, w->sh, 1, w->pt, w->pb, &Ho, msg)) != AIM_OK)
        return st;
    if ((st = aim__window_out_len("width", in[0].dims[2], w->kw, w->sw, 1, w->pl, w->pr, &Wo, msg)) != AIM_OK)
        return st;
    L->out_rank = 3;
    L->out_dims[0] = in[0].dims[0];
    L->out_dims[1] = Ho;
    L->out_dims[2] = Wo;
    L->out_size = in[0].dims[0] * Ho * Wo; /* no larger than the input */
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) { aim__pool_forward(L, a->x[0], a->y, a->batch); }

static void backward(const aim__layer *L, const aim__bwd *a) {
    if (a->dx[0]) aim__pool_backward(L, a->x[0], a->dy, a->dx[0], a->batch);
}

static double macs(const aim__layer *L) { return (double)L->out_size; }

/* u64 kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w */
static void write(const aim__layer *L, aim__writer *wr) {
    const aim__window *w = &CFG(L)->win;
    const size_t f[6] = {w->kh, w->kw, w->sh, w->sw, w->pt, w->pl};
    for (size_t i = 0; i < 6; i++) aim__put_u64(wr, f[i]);
}

static void read_common(aim__reader *r, aim__layer *L, int is_max) {
    aim__pool2d_cfg *c = AIM__CFG_MUT(aim__pool2d_cfg, L);
    aim__window *w = &c->win;
    w->kh = aim__get_size(r);
    w->kw = aim__get_size(r);
    w->sh = aim__get_size(r);
    w->sw = aim__get_size(r);
    w->pt = w->pb = aim__get_size(r);
    w->pl = w->pr = aim__get_size(r);
    w->dh = w->dw = 1;
    w->groups = 1;
    c->is_max = is_max;
}
static void read_max(aim__reader *r, aim__layer *L) { read_common(r, L, 1); }
static void read_avg(aim__reader *r, aim__layer *L) { read_common(r, L, 0); }

const aim__layer_ops aim__max_pool2d_ops = {
    .name = "max_pool2d",
    .code = 3,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read_max,
};
const aim__layer_ops aim__avg_pool2d_ops = {
    .name = "avg_pool2d",
    .code = 4,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read_avg,
};
