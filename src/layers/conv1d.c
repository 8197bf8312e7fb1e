/*
 * 1-D convolution, PyTorch nn.Conv1d semantics and layout:
 *   X (B, C, L), W (O, C/groups, K), b (O), Y (B, O, Lo)
 *   Lo = (L + pl + pr - d (K - 1) - 1) / s + 1
 *   Y[n, o, j] = f(b[o] + sum_{c, q} W[o, c, q] X[n, g C/groups + c, j s - pl + q d])
 * https://pytorch.org/docs/stable/generated/torch.nn.Conv1d.html
 *
 * It is conv2d on a height-1 image: (C, L) is (C, 1, L), the window is
 * 1 x K, and the weights (O, C/groups, K) are (O, C/groups, 1, K) in the
 * same order. So the node keeps an aim__conv2d_cfg with kh = sh = dh = 1
 * and no top/bottom padding, and its forward and backward run conv2d.c's
 * im2col + GEMM kernels on a stack copy of the node whose shapes are
 * (C, 1, L) -> (O, 1, Lo) (see as_2d): nothing is computed twice, and the
 * two kinds cannot drift apart.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__conv2d_cfg, L)
#define MCFG(L) AIM__CFG_MUT(aim__conv2d_cfg, L)

/* The node as the 2-D kernels see it: (C, L) -> (O, Lo) becomes
 * (C, 1, L) -> (O, 1, Lo). Everything else (cfg, counts) is the node's. */
static void as_2d(const aim__layer *L, aim__layer *v) {
    *v = *L;
    v->in_rank = 3;
    v->in_dims[0] = L->in_dims[0];
    v->in_dims[1] = 1;
    v->in_dims[2] = L->in_dims[1];
    v->out_rank = 3;
    v->out_dims[0] = L->out_dims[0];
    v->out_dims[1] = 1;
    v->out_dims[2] = L->out_dims[1];
}

aim_status aim_conv1d_config_init(aim_conv1d_config *c, size_t filters, size_t kernel, aim_activation activation) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->filters = filters;
    c->kernel = kernel;
    c->stride = 1;
    c->padding = AIM_PAD_VALID;
    c->dilation = 1;
    c->groups = 1;
    c->activation = activation;
    c->alpha = 0.01f;
    c->use_bias = 1;
    c->init = AIM_INIT_GLOROT_UNIFORM;
    return AIM_OK;
}

aim_status aim_model_add_conv1d(aim_model *m, const aim_conv1d_config *c) {
    aim__conv2d_cfg k;
    memset(&k, 0, sizeof k);
    if (c) {
        k.filters = c->filters;
        k.win.kh = k.win.sh = k.win.dh = 1; /* the height-1 axis */
        k.win.kw = c->kernel;
        k.win.sw = c->stride;
        k.win.dw = c->dilation;
        k.win.groups = c->groups;
        k.padding = c->padding;
        if (c->padding == AIM_PAD_EXPLICIT) {
            k.win.pl = c->pad_left;
            k.win.pr = c->pad_right;
        }
        k.act = c->activation;
        k.alpha = c->alpha;
        k.use_bias = c->use_bias != 0;
        k.init = c->init;
    }
    return aim__model_add_node(m, &aim__conv1d_ops, c ? &k : NULL, sizeof k, NULL, 0);
}

/* "same" as conv2d defines it (Keras/TensorFlow): output ceil(n / s), total
 * padding max((o - 1) s + d (k - 1) + 1 - n, 0), the odd element after.
 * d, k <= INT_MAX here, and (o - 1) s <= n, so nothing overflows. */
static void same_pad(size_t n, size_t k, size_t s, size_t d, size_t *pa, size_t *pb) {
    size_t o = n / s + (n % s != 0), need = (o - 1) * s + d * (k - 1) + 1;
    size_t total = need > n ? need - n : 0;
    *pa = total / 2;
    *pb = total - *pa;
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    aim__conv2d_cfg *c = MCFG(L);
    aim__window *w = &c->win;
    static const char *const names[] = {"filters", "kernel", "stride", "dilation", "groups"};
    const size_t vals[] = {c->filters, w->kw, w->sw, w->dw, w->groups};
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
    if (!aim__all_finite(&c->alpha, 1)) {
        /* a NaN or infinite leaky-relu slope would turn every negative output into NaN */
        snprintf(msg, AIM__ERR_CAP, "alpha %g is not finite", (double)c->alpha);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->act == AIM_ACT_SOFTMAX) {
        /* over channels or over the length? an activation layer states it (as for conv2d) */
        snprintf(msg, AIM__ERR_CAP, "fused softmax is not supported; add an activation layer");
        return AIM_ERR_UNSUPPORTED;
    }
    if (in[0].rank != 2) {
        snprintf(msg, AIM__ERR_CAP, "input must be one C x L sample (rank 2), got rank %zu", in[0].rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t C = in[0].dims[0], Ln = in[0].dims[1];
    if (C % w->groups || c->filters % w->groups) {
        snprintf(msg, AIM__ERR_CAP, "channels: groups %zu must divide input channels %zu and filters %zu",
                 w->groups, C, c->filters);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (c->padding == AIM_PAD_SAME) {
        if (w->kw > INT_MAX || w->dw > INT_MAX) {
            snprintf(msg, AIM__ERR_CAP, "kernel or dilation too large for \"same\" padding");
            return AIM_ERR_UNSUPPORTED;
        }
        same_pad(Ln, w->kw, w->sw, w->dw, &w->pl, &w->pr);
        c->padding = AIM_PAD_EXPLICIT; /* resolved: the stored sides are the truth from now on */
    }
    size_t Lo;
    aim_status st = aim__window_out_len("length", Ln, w->kw, w->sw, w->dw, w->pl, w->pr, &Lo, msg);
    if (st != AIM_OK) return st;
    /* K = C/groups k rows of im2col, O K weights, O Lo outputs, 2 K Lo scratch */
    size_t K, wc, out, col;
    if (!aim__mul(C / w->groups, w->kw, &K) || !aim__mul(K, c->filters, &wc) || !aim__mul(Lo, K, &col) ||
        !aim__mul(col, 2, &col) || !aim__mul(Lo, c->filters, &out)) {
        snprintf(msg, AIM__ERR_CAP, "parameter or output size overflows");
        return AIM_ERR_OVERFLOW;
    }
    if (K > INT_MAX || out > INT_MAX || c->filters > INT_MAX) {
        snprintf(msg, AIM__ERR_CAP, "a GEMM dimension exceeds the BLAS limit");
        return AIM_ERR_UNSUPPORTED;
    }
    L->out_rank = 2;
    L->out_dims[0] = c->filters;
    L->out_dims[1] = Lo;
    L->out_size = out;
    L->weight_count = wc;
    L->bias_count = c->use_bias ? c->filters : 0;
    /* conv2d's cache and scratch plan, on the 2-D view; keep_cols lands in the view's cfg */
    aim__layer v;
    as_2d(L, &v);
    aim__conv2d_setup(&v);
    memcpy(L->cfg, v.cfg, sizeof L->cfg);
    L->cache_per_sample = v.cache_per_sample;
    L->scratch_floats = v.scratch_floats;
    return AIM_OK;
}

/* Keras: fan_in = K C/groups, fan_out = K O; PyTorch uses fan_in only. */
static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    const size_t k = CFG(L)->win.kw;
    aim__init_weights(CFG(L)->init, params, L->weight_count, params + L->weight_count, L->bias_count,
                      L->in_dims[0] / CFG(L)->win.groups * k, L->out_dims[0] * k, rng);
}

/* Y = f(W * X + b) through im2col + GEMM on the (C, 1, L) view */
static void forward(const aim__layer *L, const aim__fwd *a) {
    aim__layer v;
    as_2d(L, &v);
    aim__conv2d_forward(&v, a->params, a->x[0], a->y, a->cache, a->scratch, a->batch);
}

/* dZ = dY ⊙ f'(Z); dW += dZ colᵀ; db += sum dZ; dX = col2im(Wᵀ dZ) */
static void backward(const aim__layer *L, const aim__bwd *a) {
    aim__layer v;
    as_2d(L, &v);
    aim__conv2d_backward(&v, a->params, a->dparams, a->x[0], a->y, a->cache, a->dy, a->dx[0], a->scratch, a->batch);
}

static double macs(const aim__layer *L) { return (double)L->weight_count * (double)L->out_dims[1]; }

/* u64 filters, kernel, stride, dilation, pad_left, pad_right, groups; u32
 * activation, f32 alpha, u32 use_bias, u32 init ("same" is stored resolved). */
static void write(const aim__layer *L, aim__writer *wr) {
    const aim__conv2d_cfg *c = CFG(L);
    const aim__window *w = &c->win;
    const size_t f[7] = {c->filters, w->kw, w->sw, w->dw, w->pl, w->pr, w->groups};
    for (size_t i = 0; i < 7; i++) aim__put_u64(wr, f[i]);
    aim__put_u32(wr, (uint32_t)c->act);
    aim__put_f32(wr, c->alpha);
    aim__put_u32(wr, (uint32_t)c->use_bias);
    aim__put_u32(wr, (uint32_t)c->init);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__conv2d_cfg *c = MCFG(L);
    aim__window *w = &c->win;
    size_t *f[7] = {&c->filters, &w->kw, &w->sw, &w->dw, &w->pl, &w->pr, &w->groups};
    for (size_t i = 0; i < 7; i++) *f[i] = aim__get_size(r);
    w->kh = w->sh = w->dh = 1;
    w->pt = w->pb = 0;
    c->act = (aim_activation)aim__get_u32(r);
    c->alpha = aim__get_f32(r);
    c->use_bias = aim__get_flag(r);
    c->init = (aim_init)aim__get_u32(r);
    c->padding = AIM_PAD_EXPLICIT;
}

const aim__layer_ops aim__conv1d_ops = {
    .name = "conv1d",
    .code = 15,
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
