/*
 * Element-wise sum of n inputs of one shape (a residual connection):
 *   Y = X_0 + X_1 + ... + X_{n-1},   dX_k = dY for every k
 * (Keras layers.Add; in PyTorch, `a + b`).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

aim_status aim_model_add_add(aim_model *m, const size_t *nodes, size_t count) {
    return aim__model_add_node(m, &aim__add_ops, "", 0, nodes, count);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    for (size_t k = 1; k < n_in; k++) {
        char a[28], b[28], sa[68], sb[68];
        aim__node_id_str(L->in[k], a, sizeof a);
        aim__node_id_str(L->in[0], b, sizeof b);
        aim__shape_str(&in[k], sa, sizeof sa);
        aim__shape_str(&in[0], sb, sizeof sb);
        int differ = in[k].rank != in[0].rank;
        for (size_t d = 0; !differ && d < in[0].rank; d++) differ = in[k].dims[d] != in[0].dims[d];
        if (differ) {
            snprintf(msg, AIM__ERR_CAP, "added shapes must be equal: %s (argument %zu) gives %.56s, %s (argument 0) %.56s",
                     a, k, sa, b, sb);
            return AIM_ERR_SHAPE_MISMATCH;
        }
    }
    L->out_rank = in[0].rank;
    memcpy(L->out_dims, in[0].dims, sizeof L->out_dims);
    L->out_size = in[0].size;
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    const size_t n = a->batch * L->out_size;
    float *y = a->y;
    memcpy(y, a->x[0], n * sizeof(float));
    for (size_t k = 1; k < L->n_in; k++) {
        const float *x = a->x[k];
        for (size_t i = 0; i < n; i++) y[i] += x[i];
    }
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    const size_t n = a->batch * L->out_size;
    for (size_t k = 0; k < L->n_in; k++)
        if (a->dx[k]) memcpy(a->dx[k], a->dy, n * sizeof(float));
}

static double macs(const aim__layer *L) { return (double)L->out_size * (double)L->n_in; }

const aim__layer_ops aim__add_ops = {
    .name = "add",
    .code = 8,
    .min_inputs = 2,
    .max_inputs = AIM_MAX_NODE_INPUTS,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .can_step = aim__step_positionwise,
};
