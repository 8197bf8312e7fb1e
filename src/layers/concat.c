/*
 * Concatenation of n inputs along one axis of a sample (torch.cat with
 * dim = axis + 1, as the batch comes first). With `outer` the product of the
 * sizes before the axis and `inner_k` input k's size from the axis on, each
 * of a sample's `outer` rows is input 0's inner_0 floats, then input 1's, ...:
 *   Y[b, o, off_k + i] = X_k[b, o, i],   dX_k[b, o, i] = dY[b, o, off_k + i]
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

typedef struct concat_cfg {
    size_t axis;
    size_t outer;                       /* set by setup */
    size_t inner[AIM_MAX_NODE_INPUTS];  /* set by setup: input k's floats per outer row */
} concat_cfg;
#define CFG(L) AIM__CFG(concat_cfg, L)
_Static_assert(sizeof(concat_cfg) <= AIM__LAYER_CFG_BYTES, "concat config too large");

aim_status aim_model_add_concat(aim_model *m, const size_t *nodes, size_t count, size_t axis) {
    concat_cfg k;
    memset(&k, 0, sizeof k);
    k.axis = axis;
    return aim__model_add_node(m, &aim__concat_ops, &k, sizeof k, nodes, count);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    concat_cfg *c = AIM__CFG_MUT(concat_cfg, L);
    const size_t rank = in[0].rank, ax = c->axis;
    if (ax >= rank) {
        snprintf(msg, AIM__ERR_CAP, "axis %zu is out of range for inputs of rank %zu", ax, rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    size_t total = 0;
    for (size_t k = 0; k < n_in; k++) {
        if (in[k].rank != rank) {
            snprintf(msg, AIM__ERR_CAP, "input %zu has rank %zu, input 0 rank %zu", k, in[k].rank, rank);
            return AIM_ERR_SHAPE_MISMATCH;
        }
        for (size_t d = 0; d < rank; d++)
            if (d != ax && in[k].dims[d] != in[0].dims[d]) {
                snprintf(msg, AIM__ERR_CAP, "dimension %zu: input %zu has %zu, input 0 has %zu (only axis %zu may differ)",
                         d, k, in[k].dims[d], in[0].dims[d], ax);
                return AIM_ERR_SHAPE_MISMATCH;
            }
        if (!aim__add(total, in[k].dims[ax], &total)) {
            snprintf(msg, AIM__ERR_CAP, "the concatenated axis overflows");
            return AIM_ERR_OVERFLOW;
        }
    }
    size_t outer = 1, after = 1, size;
    for (size_t d = 0; d < ax; d++) outer *= in[0].dims[d];
    for (size_t d = ax + 1; d < rank; d++) after *= in[0].dims[d];
    if (!aim__mul(outer, after, &size) || !aim__mul(size, total, &size) || size > (size_t)0x7fffffff) {
        snprintf(msg, AIM__ERR_CAP, "the output of %zu floats per sample exceeds the BLAS limit", size);
        return AIM_ERR_UNSUPPORTED;
    }
    c->outer = outer;
    for (size_t k = 0; k < n_in; k++) c->inner[k] = in[k].dims[ax] * after;
    L->out_rank = rank;
    memcpy(L->out_dims, in[0].dims, sizeof L->out_dims);
    L->out_dims[ax] = total;
    L->out_size = size;
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    const concat_cfg *c = CFG(L);
    const size_t rows = a->batch * c->outer, out = L->out_size / c->outer;
    size_t off = 0;
    for (size_t k = 0; k < L->n_in; k++) {
        const size_t n = c->inner[k];
        for (size_t r = 0; r < rows; r++) memcpy(a->y + r * out + off, a->x[k] + r * n, n * sizeof(float));
        off += n;
    }
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    const concat_cfg *c = CFG(L);
    const size_t rows = a->batch * c->outer, out = L->out_size / c->outer;
    size_t off = 0;
    for (size_t k = 0; k < L->n_in; k++) {
        const size_t n = c->inner[k];
        if (a->dx[k])
            for (size_t r = 0; r < rows; r++) memcpy(a->dx[k] + r * n, a->dy + r * out + off, n * sizeof(float));
        off += n;
    }
}

static double macs(const aim__layer *L) { return (double)L->out_size; }

/* u64 axis */
static void write(const aim__layer *L, aim__writer *w) { aim__put_u64(w, CFG(L)->axis); }

static void read(aim__reader *r, aim__layer *L) {
    concat_cfg *c = AIM__CFG_MUT(concat_cfg, L);
    memset(c, 0, sizeof *c);
    c->axis = aim__get_size(r);
}

const aim__layer_ops aim__concat_ops = {
    .name = "concat",
    .code = 9,
    .min_inputs = 2,
    .max_inputs = AIM_MAX_NODE_INPUTS,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
};
