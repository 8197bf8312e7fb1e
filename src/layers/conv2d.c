/*
 * 2-D convolution, PyTorch nn.Conv2d semantics and layout:
 *   X (B, C, H, W), W (O, C/groups, kh, kw), b (O), Y (B, O, Ho, Wo)
 *   Ho = (H + pt + pb - dh (kh - 1) - 1) / sh + 1   (likewise Wo)
 *   Y[n, o, i, j] = f(b[o] + sum_{c, p, q} W[o, c, p, q] X[n, g C/groups + c, i sh - pt + p dh, j sw - pl + q dw])
 * https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
 *
 * The fast path lowers each (sample, group) to one GEMM through im2col:
 *   col (K, Ho Wo), K = C/groups kh kw, one row per (c, p, q)
 *   Y_g = W_g · col                 (O/groups, Ho Wo)
 *   dW_g += dZ_g · colᵀ
 *   dcol = W_gᵀ · dZ_g, then col2im adds dcol back into dX
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define BI(n) AIM__BLAS_INT(n)
#define CFG(L) AIM__CFG(aim__conv2d_cfg, L)
#define MCFG(L) AIM__CFG_MUT(aim__conv2d_cfg, L)
_Static_assert(sizeof(aim__conv2d_cfg) <= AIM__LAYER_CFG_BYTES, "conv2d config too large");

typedef struct geom {
    size_t C, H, W, O, Ho, Wo, Cg, Og, K, HW, HWo;
} geom;

static geom geometry(const aim__layer *L) {
    geom g;
    g.C = L->in_dims[0];
    g.H = L->in_dims[1];
    g.W = L->in_dims[2];
    g.O = L->out_dims[0];
    g.Ho = L->out_dims[1];
    g.Wo = L->out_dims[2];
    g.Cg = g.C / CFG(L)->win.groups;
    g.Og = g.O / CFG(L)->win.groups;
    g.K = g.Cg * CFG(L)->win.kh * CFG(L)->win.kw;
    g.HW = g.H * g.W;
    g.HWo = g.Ho * g.Wo;
    return g;
}

/* Scratch: one col matrix for the forward, col and dcol for the backward. */
size_t aim__conv2d_scratch_floats(const aim__layer *L) {
    geom g = geometry(L);
    return 2 * g.K * g.HWo;
}

/* What a training forward keeps per sample, [Z][columns]:
 *  - Z, the pre-activation, unless f is the identity (then Y is Z) or ReLU;
 *  - the im2col columns of every group when CFG(L)->keep_cols, so the
 *    backward need not lower the input again.
 * Each part is rounded to whole cache lines. The builder has checked that
 * O Ho Wo and 2 K Ho Wo do not overflow, so neither size does. */
static size_t z_floats(const aim__layer *L) {
    size_t r = 0;
    /* ReLU's derivative is as well read from Y (Y > 0 exactly when Z > 0),
     * which saves writing and reading Z: 2.7 MB a step for the seed CNN's
     * first layer at batch 32. */
    if (CFG(L)->act != AIM_ACT_IDENTITY && CFG(L)->act != AIM_ACT_RELU) (void)aim__round_floats(L->out_size, &r);
    return r;
}
static size_t col_cache_floats(const aim__layer *L) {
    geom g = geometry(L);
    size_t r = 0;
    if (CFG(L)->keep_cols) (void)aim__round_floats(g.K * g.HWo * CFG(L)->win.groups, &r);
    return r;
}

size_t aim__conv2d_cache_floats(const aim__layer *L) {
    return z_floats(L) + col_cache_floats(L);
}

void aim__conv2d_setup(aim__layer *L) {
    geom g = geometry(L);
    /* Lowering conv2 of the seed CNN again in the backward is ~5% of its
     * training step; its columns take 139 KB a sample. Past 1 MiB a sample
     * the memory is worth more than the time. */
    size_t cols;
    MCFG(L)->keep_cols = aim__mul(g.K, g.HWo, &cols) && aim__mul(cols, CFG(L)->win.groups, &cols) &&
                        cols <= AIM__CONV_COL_CACHE_MAX;
    L->cache_per_sample = aim__conv2d_cache_floats(L);
    L->scratch_floats = aim__conv2d_scratch_floats(L);
}

/* A sum with eight independent partial sums: the compiler may not reorder a
 * float reduction itself, and one serial chain is latency-bound. */
static float sum8(const float *v, size_t n) {
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++) p[k] += v[i + k];
    float s = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    for (; i < n; i++) s += v[i];
    return s;
}

/* The range of output columns j whose input column j sw - pl + off lies in
 * [0, W): j in [*j0, *j1). Keeps the inner loops free of bounds tests. */
static void valid_range(size_t n_out, size_t stride, size_t pad, size_t off, size_t n_in, size_t *j0,
                        size_t *j1) {
    /* need j*stride + off >= pad  and  j*stride + off < pad + n_in */
    /* ceil((pad - off) / stride), written so a huge stride cannot overflow */
    size_t lo = off >= pad ? 0 : (pad - off) / stride + ((pad - off) % stride != 0);
    size_t hi_lim = pad + n_in; /* j*stride + off < hi_lim */
    size_t hi = off >= hi_lim ? 0 : (hi_lim - off - 1) / stride + 1;
    if (hi > n_out) hi = n_out;
    if (lo > hi) lo = hi;
    *j0 = lo;
    *j1 = hi;
}

/* col[(c kh + p) kw + q][i Wo + j] = X[c][i sh - pt + p dh][j sw - pl + q dw], 0 outside. */
static void im2col(const aim__window *w, const geom *g, const float *x, float *col) {
    for (size_t c = 0; c < g->Cg; c++)
        for (size_t p = 0; p < w->kh; p++)
            for (size_t q = 0; q < w->kw; q++) {
                float *row = col + ((c * w->kh + p) * w->kw + q) * g->HWo;
                size_t i0, i1, j0, j1;
                valid_range(g->Ho, w->sh, w->pt, p * w->dh, g->H, &i0, &i1);
                valid_range(g->Wo, w->sw, w->pl, q * w->dw, g->W, &j0, &j1);
                memset(row, 0, i0 * g->Wo * sizeof(float));
                for (size_t i = i0; i < i1; i++) {
                    float *r = row + i * g->Wo;
                    const float *xr = x + c * g->HW + (i * w->sh + p * w->dh - w->pt) * g->W;
                    for (size_t j = 0; j < j0; j++) r[j] = 0.0f;
                    if (w->sw == 1) {
                        /* j1 > j0: with an empty range the offset below is not a valid index */
                        if (j1 > j0) memcpy(r + j0, xr + (j0 + q * w->dw - w->pl), (j1 - j0) * sizeof(float));
                    } else {
                        for (size_t j = j0; j < j1; j++) r[j] = xr[j * w->sw + q * w->dw - w->pl];
                    }
                    for (size_t j = j1; j < g->Wo; j++) r[j] = 0.0f;
                }
                memset(row + i1 * g->Wo, 0, (g->Ho - i1) * g->Wo * sizeof(float));
            }
}

/* The adjoint of im2col: dX[c][...] += dcol[row][i Wo + j]. */
static void col2im(const aim__window *w, const geom *g, const float *dcol, float *dx) {
    for (size_t c = 0; c < g->Cg; c++)
        for (size_t p = 0; p < w->kh; p++)
            for (size_t q = 0; q < w->kw; q++) {
                const float *row = dcol + ((c * w->kh + p) * w->kw + q) * g->HWo;
                size_t i0, i1, j0, j1;
                valid_range(g->Ho, w->sh, w->pt, p * w->dh, g->H, &i0, &i1);
                valid_range(g->Wo, w->sw, w->pl, q * w->dw, g->W, &j0, &j1);
                for (size_t i = i0; i < i1; i++) {
                    const float *r = row + i * g->Wo;
                    float *xr = dx + c * g->HW + (i * w->sh + p * w->dh - w->pt) * g->W;
                    if (w->sw == 1 && j1 > j0) {
                        /* unit stride: a plain vector add */
                        float *xs = xr + (j0 + q * w->dw - w->pl);
                        const float *rs = r + j0;
                        for (size_t j = 0; j < j1 - j0; j++) xs[j] += rs[j];
                    } else {
                        for (size_t j = j0; j < j1; j++) xr[j * w->sw + q * w->dw - w->pl] += r[j];
                    }
                }
            }
}

/* Z + b, then f, one output channel (a row of HWo floats) at a time, so the
 * row is still in L1 between the two: one pass over Z from L2, not two. */
static void bias_act_rows(const aim__layer *L, const geom *g, const float *b, float *z, float *y) {
    for (size_t o = 0; o < g->O; o++) {
        float *zo = z + o * g->HWo;
        if (b) {
            const float bo = b[o]; /* a local, so the loop need not reload it through a may-alias pointer */
            for (size_t k = 0; k < g->HWo; k++) zo[k] += bo;
        }
        aim__act_forward(CFG(L)->act, CFG(L)->alpha, zo, y + o * g->HWo, 1, g->HWo);
    }
}

void aim__conv2d_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                         float *scratch, size_t batch) {
    const geom g = geometry(L);
    const aim__window *w = &CFG(L)->win;
    const float *Wt = params, *b = L->bias_count ? params + L->weight_count : NULL;
    const size_t zs = z_floats(L), cs = col_cache_floats(L), stride = zs + cs;
    for (size_t n = 0; n < batch; n++) {
        const float *xn = x + n * g.C * g.HW;
        float *yn = y + n * g.O * g.HWo;
        /* the pre-activation is kept for the backward unless f is the
         * identity or ReLU, and the columns when keep_cols */
        float *zn = cache && zs ? cache + n * stride : yn;
        float *col = cache && cs ? cache + n * stride + zs : scratch;
        for (size_t gi = 0; gi < w->groups; gi++) {
            float *cg = cache && cs ? col + gi * g.K * g.HWo : col;
            im2col(w, &g, xn + gi * g.Cg * g.HW, cg);
            /* Z_g = W_g · col   (Og, HWo) = (Og, K)·(K, HWo) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(g.Og), BI(g.HWo), BI(g.K), 1.0f,
                        Wt + gi * g.Og * g.K, BI(g.K), cg, BI(g.HWo), 0.0f, zn + gi * g.Og * g.HWo, BI(g.HWo));
        }
        bias_act_rows(L, &g, b, zn, yn);
    }
}

void aim__conv2d_backward(const aim__layer *L, const float *params, float *dparams, const float *x,
                          const float *y, const float *cache, float *dy, float *dx, float *scratch, size_t batch) {
    const geom g = geometry(L);
    const aim__window *w = &CFG(L)->win;
    const float *Wt = params;
    float *dW = dparams, *db = L->bias_count ? dparams + L->weight_count : NULL;
    float *col = scratch, *dcol = scratch + g.K * g.HWo;
    const size_t zs = z_floats(L), cs = col_cache_floats(L), stride = zs + cs;
    if (dx) memset(dx, 0, batch * g.C * g.HW * sizeof(float));
    for (size_t n = 0; n < batch; n++) {
        const float *xn = x + n * g.C * g.HW;
        const size_t on = n * g.O * g.HWo;
        const float *zn = cache && zs ? cache + n * stride : y + on;
        /* dZ = dY ⊙ f'(Z) in place, and db[o] += the sum of dZ[o] while that
         * row is still in L1 */
        for (size_t o = 0; o < g.O; o++) {
            float *dzo = dy + on + o * g.HWo;
            aim__act_backward(CFG(L)->act, CFG(L)->alpha, zn + o * g.HWo, y + on + o * g.HWo, dzo, dzo, 1, g.HWo);
            if (db) db[o] += sum8(dzo, g.HWo);
        }
        const float *dzn = dy + on;
        for (size_t gi = 0; gi < w->groups; gi++) {
            const float *dz = dzn + gi * g.Og * g.HWo;
            const float *cg = col;
            if (cache && cs) {
                cg = cache + n * stride + zs + gi * g.K * g.HWo; /* the forward's columns */
            } else {
                im2col(w, &g, xn + gi * g.Cg * g.HW, col);
            }
            /* dW_g += dZ_g · colᵀ   (Og, K) = (Og, HWo)·(HWo, K) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(g.Og), BI(g.K), BI(g.HWo), 1.0f, dz,
                        BI(g.HWo), cg, BI(g.HWo), 1.0f, dW + gi * g.Og * g.K, BI(g.K));
            if (dx) {
                /* dcol = W_gᵀ · dZ_g   (K, HWo) = (K, Og)·(Og, HWo) */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(g.K), BI(g.HWo), BI(g.Og), 1.0f,
                            Wt + gi * g.Og * g.K, BI(g.K), dz, BI(g.HWo), 0.0f, dcol, BI(g.HWo));
                col2im(w, &g, dcol, dx + n * g.C * g.HW + gi * g.Cg * g.HW);
            }
        }
    }
}

/* ---- the naive reference: the defining sum, loop by loop ----------------- */

void aim__conv2d_forward_naive(const aim__layer *L, const float *params, const float *x, float *y, size_t batch) {
    const geom g = geometry(L);
    const aim__window *w = &CFG(L)->win;
    const float *b = L->bias_count ? params + L->weight_count : NULL;
    for (size_t n = 0; n < batch; n++)
        for (size_t o = 0; o < g.O; o++) {
            size_t gi = o / g.Og;
            for (size_t i = 0; i < g.Ho; i++)
                for (size_t j = 0; j < g.Wo; j++) {
                    double s = b ? (double)b[o] : 0.0;
                    for (size_t c = 0; c < g.Cg; c++)
                        for (size_t p = 0; p < w->kh; p++)
                            for (size_t q = 0; q < w->kw; q++) {
                                long ih = (long)(i * w->sh + p * w->dh) - (long)w->pt;
                                long iw = (long)(j * w->sw + q * w->dw) - (long)w->pl;
                                if (ih < 0 || iw < 0 || ih >= (long)g.H || iw >= (long)g.W) continue;
                                s += (double)params[((o * g.Cg + c) * w->kh + p) * w->kw + q] *
                                     (double)x[((n * g.C + gi * g.Cg + c) * g.H + (size_t)ih) * g.W + (size_t)iw];
                            }
                    y[((n * g.O + o) * g.Ho + i) * g.Wo + j] = (float)s;
                }
        }
    aim__act_forward(CFG(L)->act, CFG(L)->alpha, y, y, batch, g.O * g.HWo);
}

void aim__conv2d_backward_naive(const aim__layer *L, const float *params, float *dparams, const float *x,
                                const float *dz, float *dx, size_t batch) {
    const geom g = geometry(L);
    const aim__window *w = &CFG(L)->win;
    float *db = L->bias_count ? dparams + L->weight_count : NULL;
    if (dx) memset(dx, 0, batch * g.C * g.HW * sizeof(float));
    for (size_t n = 0; n < batch; n++)
        for (size_t o = 0; o < g.O; o++) {
            size_t gi = o / g.Og;
            for (size_t i = 0; i < g.Ho; i++)
                for (size_t j = 0; j < g.Wo; j++) {
                    float d = dz[((n * g.O + o) * g.Ho + i) * g.Wo + j];
                    if (db) db[o] += d;
                    for (size_t c = 0; c < g.Cg; c++)
                        for (size_t p = 0; p < w->kh; p++)
                            for (size_t q = 0; q < w->kw; q++) {
                                long ih = (long)(i * w->sh + p * w->dh) - (long)w->pt;
                                long iw = (long)(j * w->sw + q * w->dw) - (long)w->pl;
                                if (ih < 0 || iw < 0 || ih >= (long)g.H || iw >= (long)g.W) continue;
                                size_t wi = ((o * g.Cg + c) * w->kh + p) * w->kw + q;
                                size_t xi = ((n * g.C + gi * g.Cg + c) * g.H + (size_t)ih) * g.W + (size_t)iw;
                                dparams[wi] += d * x[xi];
                                if (dx) dx[xi] += d * params[wi];
                            }
                }
        }
}

static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    const geom g = geometry(L);
    const size_t area = CFG(L)->win.kh * CFG(L)->win.kw;
    /* Keras: fan_in = kh kw C/groups, fan_out = kh kw O; PyTorch uses fan_in only. */
    aim__init_weights(CFG(L)->init, params, L->weight_count, params + L->weight_count, L->bias_count, g.Cg * area,
                      g.O * area, rng);
}

aim_status aim_conv2d_config_init(aim_conv2d_config *c, size_t filters, size_t kernel_h, size_t kernel_w,
                                  aim_activation activation) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->filters = filters;
    c->kernel_h = kernel_h;
    c->kernel_w = kernel_w;
    c->stride_h = c->stride_w = 1;
    c->dilation_h = c->dilation_w = 1;
    c->groups = 1;
    c->padding = AIM_PAD_VALID;
    c->activation = activation;
    c->alpha = 0.01f;
    c->use_bias = 1;
    c->init = AIM_INIT_GLOROT_UNIFORM;
    return AIM_OK;
}

/* Keras/TensorFlow "same": output ceil(n / s), total padding split evenly. */
static void same_pad(size_t n, size_t k, size_t s, size_t d, size_t *pa, size_t *pb) {
    /* ceil(n / s) without overflow; (o - 1) s <= n, and d, k <= INT_MAX here. */
    size_t o = n / s + (n % s != 0), eff = d * (k - 1) + 1, need = (o - 1) * s + eff;
    size_t total = need > n ? need - n : 0;
    *pa = total / 2;
    *pb = total - *pa;
}

aim_status aim_model_add_conv2d(aim_model *m, const aim_conv2d_config *c) {
    aim__conv2d_cfg k;
    memset(&k, 0, sizeof k);
    if (c) {
        k.filters = c->filters;
        k.win.kh = c->kernel_h;
        k.win.kw = c->kernel_w;
        k.win.sh = c->stride_h;
        k.win.sw = c->stride_w;
        k.win.dh = c->dilation_h;
        k.win.dw = c->dilation_w;
        k.win.groups = c->groups;
        k.padding = c->padding;
        if (c->padding == AIM_PAD_EXPLICIT) {
            k.win.pt = c->pad_top;
            k.win.pb = c->pad_bottom;
            k.win.pl = c->pad_left;
            k.win.pr = c->pad_right;
        }
        k.act = c->activation;
        k.alpha = c->alpha;
        k.use_bias = c->use_bias != 0;
        k.init = c->init;
    }
    return aim__model_add_node(m, &aim__conv2d_ops, c ? &k : NULL, sizeof k, NULL, 0);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    aim__conv2d_cfg *c = MCFG(L);
    aim__window *w = &c->win;
    static const char *const names[] = {"filters", "kernel height", "kernel width", "stride height", "stride width",
                                        "dilation height", "dilation width", "groups"};
    const size_t vals[] = {c->filters, w->kh, w->kw, w->sh, w->sw, w->dh, w->dw, w->groups};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        if (vals[i] == 0) {
            snprintf(msg, AIM__ERR_CAP, "%s 0 (must be > 0)", names[i]);
            return AIM_ERR_INVALID_ARGUMENT;
        }
    if (!aim__activation_valid(c->act) || !aim__init_valid(c->init) || c->padding < AIM_PAD_EXPLICIT ||
        c->padding > AIM_PAD_SAME) {
        snprintf(msg, AIM__ERR_CAP, "unknown activation, init or padding value");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->act == AIM_ACT_SOFTMAX) {
        /* Over which axis? Channels (Keras) and the last axis (PyTorch dim=-1)
         * disagree; an explicit activation layer states it. */
        snprintf(msg, AIM__ERR_CAP, "fused softmax is not supported; add an activation layer");
        return AIM_ERR_UNSUPPORTED;
    }
    if (in[0].rank != 3) {
        snprintf(msg, AIM__ERR_CAP, "input must be one C x H x W sample (rank 3), got rank %zu", in[0].rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t C = in[0].dims[0], H = in[0].dims[1], W = in[0].dims[2];
    if (C % w->groups || c->filters % w->groups) {
        snprintf(msg, AIM__ERR_CAP, "channels: groups %zu must divide input channels %zu and filters %zu",
                 w->groups, C, c->filters);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (c->padding == AIM_PAD_SAME) {
        if (w->kh > INT_MAX || w->kw > INT_MAX || w->dh > INT_MAX || w->dw > INT_MAX) {
            snprintf(msg, AIM__ERR_CAP, "kernel or dilation too large for \"same\" padding");
            return AIM_ERR_UNSUPPORTED;
        }
        same_pad(H, w->kh, w->sh, w->dh, &w->pt, &w->pb);
        same_pad(W, w->kw, w->sw, w->dw, &w->pl, &w->pr);
        c->padding = AIM_PAD_EXPLICIT; /* resolved: the stored sides are the truth from now on */
    }
    size_t Ho, Wo;
    aim_status st;
    if ((st = aim__window_out_len("height", H, w->kh, w->sh, w->dh, w->pt, w->pb, &Ho, msg)) != AIM_OK) return st;
    if ((st = aim__window_out_len("width", W, w->kw, w->sw, w->dw, w->pl, w->pr, &Wo, msg)) != AIM_OK) return st;
    size_t K, wc, out, col;
    if (!aim__mul(C / w->groups, w->kh, &K) || !aim__mul(K, w->kw, &K) || !aim__mul(K, c->filters, &wc) ||
        !aim__mul(Ho, Wo, &out) || !aim__mul(out, K, &col) || !aim__mul(col, 2, &col) ||
        !aim__mul(out, c->filters, &out)) {
        snprintf(msg, AIM__ERR_CAP, "parameter or output size overflows");
        return AIM_ERR_OVERFLOW;
    }
    if (K > INT_MAX || out > INT_MAX || c->filters > INT_MAX) {
        snprintf(msg, AIM__ERR_CAP, "a GEMM dimension exceeds the BLAS limit");
        return AIM_ERR_UNSUPPORTED;
    }
    L->out_rank = 3;
    L->out_dims[0] = c->filters;
    L->out_dims[1] = Ho;
    L->out_dims[2] = Wo;
    L->out_size = out;
    L->weight_count = wc;
    L->bias_count = c->use_bias ? c->filters : 0;
    aim__conv2d_setup(L); /* the training cache and the scratch */
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    aim__conv2d_forward(L, a->params, a->x[0], a->y, a->cache, a->scratch, a->batch);
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    aim__conv2d_backward(L, a->params, a->dparams, a->x[0], a->y, a->cache, a->dy, a->dx[0], a->scratch, a->batch);
}

static double macs(const aim__layer *L) { return (double)L->weight_count * (double)(L->out_dims[1] * L->out_dims[2]); }

/* u64 filters, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w,
 * pad_top, pad_bottom, pad_left, pad_right, groups; u32 activation, f32
 * alpha, u32 use_bias, u32 init ("same" is stored resolved). */
static void write(const aim__layer *L, aim__writer *wr) {
    const aim__conv2d_cfg *c = CFG(L);
    const aim__window *w = &c->win;
    const size_t f[12] = {c->filters, w->kh, w->kw, w->sh, w->sw, w->dh, w->dw, w->pt, w->pb, w->pl, w->pr, w->groups};
    for (size_t i = 0; i < 12; i++) aim__put_u64(wr, f[i]);
    aim__put_u32(wr, (uint32_t)c->act);
    aim__put_f32(wr, c->alpha);
    aim__put_u32(wr, (uint32_t)c->use_bias);
    aim__put_u32(wr, (uint32_t)c->init);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__conv2d_cfg *c = MCFG(L);
    aim__window *w = &c->win;
    size_t *f[12] = {&c->filters, &w->kh, &w->kw, &w->sh, &w->sw, &w->dh, &w->dw, &w->pt, &w->pb, &w->pl, &w->pr,
                     &w->groups};
    for (size_t i = 0; i < 12; i++) *f[i] = aim__get_size(r);
    c->act = (aim_activation)aim__get_u32(r);
    c->alpha = aim__get_f32(r);
    c->use_bias = aim__get_flag(r);
    c->init = (aim_init)aim__get_u32(r);
    c->padding = AIM_PAD_EXPLICIT;
}

const aim__layer_ops aim__conv2d_ops = {
    .name = "conv2d",
    .code = 2,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .init = init,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
};
