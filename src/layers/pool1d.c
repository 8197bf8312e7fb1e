/*
 * 1-D pooling over (C, L) samples, PyTorch semantics (floor mode):
 *   max:  Y[c, j] = max_{q < k} X[c, j s - p + q], padding never chosen; dX
 *         gets dY at the first maximum of each window (NaN propagates), as
 *         https://pytorch.org/docs/stable/generated/torch.nn.MaxPool1d.html
 *   avg:  Y[c, j] = sum_{q < k} X[c, j s - p + q] / k, padding counted as zeros
 *         (count_include_pad=True): dX[c, i] = sum over the windows holding i of dY / k,
 *         https://pytorch.org/docs/stable/generated/torch.nn.AvgPool1d.html
 *   Lo = (L + 2 p - k) / s + 1, with p <= k / 2 as PyTorch requires.
 *   global average: Y[c] = sum_i X[c, i] / L, dX[c, i] = dY[c] / L
 *         (nn.AdaptiveAvgPool1d(1) then a flatten);
 *   global max:     Y[c] = max_i X[c, i], dX = dY[c] at the first maximum
 *         (nn.AdaptiveMaxPool1d(1) then a flatten).
 *
 * Every one is pool2d.c's kernel on a height-1 image: (C, L) is (C, 1, L)
 * and the window 1 x k (a global pool: 1 x L with stride L). A windowed
 * node keeps an aim__pool2d_cfg with kh = sh = 1 and no top/bottom padding;
 * forward and backward hand aim__pool_forward / aim__pool_backward a stack
 * copy of the node with the shapes (C, 1, L) -> (C, 1, Lo) (see as_2d).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__pool2d_cfg, L)
#define MCFG(L) AIM__CFG_MUT(aim__pool2d_cfg, L)

static int is_global(const aim__layer *L) {
    return L->ops == &aim__global_avg_pool1d_ops || L->ops == &aim__global_max_pool1d_ops;
}

/* The node as the 2-D kernel sees it: (C, L) -> (C, 1, Lo) with the input
 * (C, 1, L). A global pool has no fields of its own: the view gets the
 * window of the whole length, 1 x L with stride L. */
static void as_2d(const aim__layer *L, aim__layer *v) {
    *v = *L;
    v->in_rank = 3;
    v->in_dims[0] = L->in_dims[0];
    v->in_dims[1] = 1;
    v->in_dims[2] = L->in_dims[1];
    v->out_rank = 3;
    v->out_dims[0] = L->in_dims[0];
    v->out_dims[1] = 1;
    v->out_dims[2] = is_global(L) ? 1 : L->out_dims[1];
    if (is_global(L)) {
        aim__pool2d_cfg *c = MCFG(v);
        memset(c, 0, sizeof *c);
        c->win.kh = c->win.sh = c->win.dh = c->win.dw = c->win.groups = 1;
        c->win.kw = c->win.sw = L->in_dims[1];
        c->is_max = L->ops == &aim__global_max_pool1d_ops;
    }
}

aim_status aim_pool1d_config_init(aim_pool1d_config *c, size_t kernel) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->kernel = kernel;
    c->stride = kernel;
    return AIM_OK;
}

static aim_status add_pool(aim_model *m, const aim__layer_ops *ops, const aim_pool1d_config *c) {
    aim__pool2d_cfg k;
    memset(&k, 0, sizeof k);
    if (c) {
        k.win.kh = k.win.sh = 1; /* the height-1 axis */
        k.win.kw = c->kernel;
        k.win.sw = c->stride;
        k.win.dh = k.win.dw = 1;
        k.win.pl = k.win.pr = c->pad;
        k.win.groups = 1;
    }
    k.is_max = ops == &aim__max_pool1d_ops;
    return aim__model_add_node(m, ops, c ? &k : NULL, sizeof k, NULL, 0);
}

aim_status aim_model_add_max_pool1d(aim_model *m, const aim_pool1d_config *c) {
    return add_pool(m, &aim__max_pool1d_ops, c);
}

aim_status aim_model_add_avg_pool1d(aim_model *m, const aim_pool1d_config *c) {
    return add_pool(m, &aim__avg_pool1d_ops, c);
}

aim_status aim_model_add_global_avg_pool1d(aim_model *m) {
    return aim__model_add_node(m, &aim__global_avg_pool1d_ops, "", 0, NULL, 0);
}

aim_status aim_model_add_global_max_pool1d(aim_model *m) {
    return aim__model_add_node(m, &aim__global_max_pool1d_ops, "", 0, NULL, 0);
}

static aim_status check_rank(const aim__shape *in, char *msg) {
    if (in->rank == 2) return AIM_OK;
    snprintf(msg, AIM__ERR_CAP, "input must be one C x L sample (rank 2), got rank %zu", in->rank);
    return AIM_ERR_SHAPE_MISMATCH;
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const aim__window *w = &CFG(L)->win;
    if (w->kw == 0 || w->sw == 0) {
        snprintf(msg, AIM__ERR_CAP, "%s 0 (must be > 0)", w->kw == 0 ? "kernel" : "stride");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim_status st = check_rank(&in[0], msg);
    if (st != AIM_OK) return st;
    if (w->pl > w->kw / 2) {
        snprintf(msg, AIM__ERR_CAP, "padding %zu is more than half the window %zu (PyTorch's limit)", w->pl, w->kw);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t C = in[0].dims[0];
    size_t Lo;
    if ((st = aim__window_out_len("length", in[0].dims[1], w->kw, w->sw, 1, w->pl, w->pr, &Lo, msg)) != AIM_OK)
        return st;
    /* Lo <= L + 1 (2 p <= k), and C L fits: no overflow, but said so once */
    if (!aim__mul(C, Lo, &L->out_size)) {
        snprintf(msg, AIM__ERR_CAP, "output size overflows");
        return AIM_ERR_OVERFLOW;
    }
    L->out_rank = 2;
    L->out_dims[0] = C;
    L->out_dims[1] = Lo;
    return AIM_OK;
}

static aim_status setup_global(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    aim_status st = check_rank(&in[0], msg);
    if (st != AIM_OK) return st;
    L->out_rank = 1;
    L->out_dims[0] = in[0].dims[0];
    L->out_size = in[0].dims[0];
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    aim__layer v;
    as_2d(L, &v);
    aim__pool_forward(&v, a->x[0], a->y, a->batch);
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    if (!a->dx[0]) return;
    aim__layer v;
    as_2d(L, &v);
    aim__pool_backward(&v, a->x[0], a->dy, a->dx[0], a->batch);
}

/* Every output reads its window: out_size k for a windowed pool, in_size for a global one. */
static double macs(const aim__layer *L) {
    return is_global(L) ? (double)L->in_size : (double)L->out_size * (double)CFG(L)->win.kw;
}

/* u64 kernel, stride, pad */
static void write(const aim__layer *L, aim__writer *wr) {
    const aim__window *w = &CFG(L)->win;
    aim__put_u64(wr, w->kw);
    aim__put_u64(wr, w->sw);
    aim__put_u64(wr, w->pl);
}

static void read_common(aim__reader *r, aim__layer *L, int is_max) {
    aim__pool2d_cfg *c = MCFG(L);
    aim__window *w = &c->win;
    w->kw = aim__get_size(r);
    w->sw = aim__get_size(r);
    w->pl = w->pr = aim__get_size(r);
    w->kh = w->sh = w->dh = w->dw = w->groups = 1;
    w->pt = w->pb = 0;
    c->is_max = is_max;
}
static void read_max(aim__reader *r, aim__layer *L) { read_common(r, L, 1); }
static void read_avg(aim__reader *r, aim__layer *L) { read_common(r, L, 0); }

const aim__layer_ops aim__max_pool1d_ops = {
    .name = "max_pool1d",
    .code = 16,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read_max,
};
const aim__layer_ops aim__avg_pool1d_ops = {
    .name = "avg_pool1d",
    .code = 17,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read_avg,
};
const aim__layer_ops aim__global_avg_pool1d_ops = {
    .name = "global_avg_pool1d",
    .code = 18,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup_global,
    .forward = forward,
    .backward = backward,
    .macs = macs,
};
const aim__layer_ops aim__global_max_pool1d_ops = {
    .name = "global_max_pool1d",
    .code = 19,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup_global,
    .forward = forward,
    .backward = backward,
    .macs = macs,
};
