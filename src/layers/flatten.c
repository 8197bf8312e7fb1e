/*
 * Flatten: any sample shape → one dimension, Y = X (a copy: the executor
 * gives every node its own output).
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "internal.h"

aim_status aim_model_add_flatten(aim_model *m) { return aim__model_add_node(m, &aim__flatten_ops, "", 0, NULL, 0); }

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    (void)msg;
    L->out_rank = 1;
    L->out_dims[0] = in[0].size;
    L->out_size = in[0].size;
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    if (a->y != a->x[0]) memcpy(a->y, a->x[0], a->batch * L->in_size * sizeof(float));
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    if (a->dx[0] && a->dx[0] != a->dy) memcpy(a->dx[0], a->dy, a->batch * L->in_size * sizeof(float));
}

static double macs(const aim__layer *L) { return (double)L->in_size; }

const aim__layer_ops aim__flatten_ops = {
    .name = "flatten",
    .code = 6,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
};
