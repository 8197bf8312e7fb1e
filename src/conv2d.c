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
#include <string.h>

#include "internal.h"

#define BI(n) ((blasint)(n))

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
    g.Cg = g.C / L->win.groups;
    g.Og = g.O / L->win.groups;
    g.K = g.Cg * L->win.kh * L->win.kw;
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
 *  - the im2col columns of every group when L->conv_keep_cols, so the
 *    backward need not lower the input again.
 * Each part is rounded to whole cache lines. The builder has checked that
 * O Ho Wo and 2 K Ho Wo do not overflow, so neither size does. */
static size_t z_floats(const aim__layer *L) {
    size_t r = 0;
    /* ReLU's derivative is as well read from Y (Y > 0 exactly when Z > 0),
     * which saves writing and reading Z: 2.7 MB a step for the seed CNN's
     * first layer at batch 32. */
    if (L->act != AIM_ACT_IDENTITY && L->act != AIM_ACT_RELU) (void)aim__round_floats(L->out_size, &r);
    return r;
}
static size_t col_cache_floats(const aim__layer *L) {
    geom g = geometry(L);
    size_t r = 0;
    if (L->conv_keep_cols) (void)aim__round_floats(g.K * g.HWo * L->win.groups, &r);
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
    L->conv_keep_cols = aim__mul(g.K, g.HWo, &cols) && aim__mul(cols, L->win.groups, &cols) &&
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
        aim__act_forward(L->act, L->alpha, zo, y + o * g->HWo, 1, g->HWo);
    }
}

void aim__conv2d_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                         float *scratch, size_t batch) {
    const geom g = geometry(L);
    const aim__window *w = &L->win;
    const float *Wt = params, *b = L->bias_count ? params + L->weight_count : NULL;
    const size_t zs = z_floats(L), cs = col_cache_floats(L), stride = zs + cs;
    for (size_t n = 0; n < batch; n++) {
        const float *xn = x + n * g.C * g.HW;
        float *yn = y + n * g.O * g.HWo;
        /* the pre-activation is kept for the backward unless f is the
         * identity or ReLU, and the columns when conv_keep_cols */
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
    const aim__window *w = &L->win;
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
            aim__act_backward(L->act, L->alpha, zn + o * g.HWo, y + on + o * g.HWo, dzo, dzo, 1, g.HWo);
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
    const aim__window *w = &L->win;
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
    aim__act_forward(L->act, L->alpha, y, y, batch, g.O * g.HWo);
}

void aim__conv2d_backward_naive(const aim__layer *L, const float *params, float *dparams, const float *x,
                                const float *dz, float *dx, size_t batch) {
    const geom g = geometry(L);
    const aim__window *w = &L->win;
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

void aim__conv2d_init(const aim__layer *L, float *params, struct aim_rng *rng) {
    const geom g = geometry(L);
    const size_t area = L->win.kh * L->win.kw;
    /* Keras: fan_in = kh kw C/groups, fan_out = kh kw O; PyTorch uses fan_in only. */
    aim__init_weights(L->init, params, L->weight_count, params + L->weight_count, L->bias_count, g.Cg * area,
                      g.O * area, rng);
}
