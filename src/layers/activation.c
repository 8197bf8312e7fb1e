/*
 * The standalone activation layer: Y = f(X), same shape. Softmax normalizes
 * over the last dimension of each sample. Every function's forward and
 * derivative are side by side in activation_fn.c.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__activation_cfg, L)
_Static_assert(sizeof(aim__activation_cfg) <= AIM__LAYER_CFG_BYTES, "activation config too large");

aim_status aim_model_add_activation(aim_model *m, aim_activation activation, float alpha) {
    aim__activation_cfg k = {activation, alpha};
    return aim__model_add_node(m, &aim__activation_ops, &k, sizeof k, NULL, 0);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    if (!aim__activation_valid(CFG(L)->act)) {
        snprintf(msg, AIM__ERR_CAP, "unknown activation %d", (int)CFG(L)->act);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    L->out_rank = in[0].rank;
    memcpy(L->out_dims, in[0].dims, sizeof L->out_dims);
    L->out_size = in[0].size;
    return AIM_OK;
}

/* Rows and columns as the activation kernels see them. */
static void layout(const aim__layer *L, size_t batch, size_t *rows, size_t *cols) {
    size_t last = L->in_dims[L->in_rank - 1];
    *cols = CFG(L)->act == AIM_ACT_SOFTMAX ? last : L->in_size;
    *rows = batch * (L->in_size / *cols);
}

/* Softmax is over the last axis: over time itself on a rank-1 value. */
static int can_step(const aim__layer *L) {
    return CFG(L)->act != AIM_ACT_SOFTMAX || L->in_rank >= 2 ? AIM__STEP_POSITIONWISE : AIM__STEP_NO;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    size_t rows, cols;
    layout(L, a->batch, &rows, &cols);
    aim__act_forward(CFG(L)->act, CFG(L)->alpha, a->x[0], a->y, rows, cols);
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    if (!a->dx[0]) return;
    size_t rows, cols;
    layout(L, a->batch, &rows, &cols);
    aim__act_backward(CFG(L)->act, CFG(L)->alpha, a->x[0], a->y, a->dy, a->dx[0], rows, cols);
}

static double macs(const aim__layer *L) { return (double)L->out_size; }

/* u32 activation, f32 alpha */
static void write(const aim__layer *L, aim__writer *w) {
    aim__put_u32(w, (uint32_t)CFG(L)->act);
    aim__put_f32(w, CFG(L)->alpha);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__activation_cfg *c = AIM__CFG_MUT(aim__activation_cfg, L);
    c->act = (aim_activation)aim__get_u32(r);
    c->alpha = aim__get_f32(r);
}

const aim__layer_ops aim__activation_ops = {
    .name = "activation",
    .code = 1,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
    .can_step = can_step,
};
