/*
 * Dropout, PyTorch nn.Dropout semantics (inverted scaling):
 *   training:  mask_i = 1 / (1 − p) with probability 1 − p, else 0;  y = x ⊙ mask
 *   inference: y = x
 *   backward:  dx = dy ⊙ mask
 * https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html
 *
 * The mask of sample i of a training forward comes from its own generator,
 * seeded with aim__mix64(key ^ aim__mix64(global row i)), where the key is
 * this layer's for this forward (the model's random stream): the masks do
 * not depend on how a thread pool slices the batch, and a model restored
 * from its serialized form draws the same masks as the original would.
 * An element is kept when a uniform u in [0, 1) (24 bits) satisfies u >= p.
 * The training forward keeps the mask (0 or the scale) for the backward.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__dropout_cfg, L)
_Static_assert(sizeof(aim__dropout_cfg) <= AIM__LAYER_CFG_BYTES, "dropout config too large");

aim_status aim_model_add_dropout(aim_model *m, float p) {
    const aim__dropout_cfg k = {p};
    return aim__model_add_node(m, &aim__dropout_ops, &k, sizeof k, NULL, 0);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const float p = CFG(L)->p;
    if (!(p >= 0.0f && p < 1.0f)) {
        snprintf(msg, AIM__ERR_CAP, "p %g must lie in [0, 1)", (double)p);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    L->out_rank = in[0].rank;
    memcpy(L->out_dims, in[0].dims, sizeof L->out_dims);
    L->out_size = in[0].size;
    L->cache_per_sample = in[0].size; /* the mask */
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    const size_t n = L->in_size;
    if (!a->train) {
        /* y = x (memmove: a caller may predict in place) */
        if (a->y != a->x[0]) memmove(a->y, a->x[0], a->batch * n * sizeof(float));
        return;
    }
    const float p = CFG(L)->p, scale = 1.0f / (1.0f - p);
    for (size_t b = 0; b < a->batch; b++) {
        const float *x = a->x[0] + b * n;
        float *y = a->y + b * n, *mask = a->cache + b * n;
        struct aim_rng rng;
        aim__rng_init(&rng, aim__mix64(a->random ^ aim__mix64((uint64_t)(a->b0 + b))));
        for (size_t i = 0; i < n; i++) mask[i] = aim__rng_uniform(&rng) >= p ? scale : 0.0f;
        /* y = x ⊙ mask */
        for (size_t i = 0; i < n; i++) y[i] = x[i] * mask[i];
    }
}

/* dx = dy ⊙ mask */
static void backward(const aim__layer *L, const aim__bwd *a) {
    float *dx = a->dx[0];
    if (!dx) return;
    const size_t count = a->batch * L->in_size;
    for (size_t i = 0; i < count; i++) dx[i] = a->dy[i] * a->cache[i];
}

static double macs(const aim__layer *L) { return (double)L->out_size; }

/* f32 p */
static void write(const aim__layer *L, aim__writer *w) { aim__put_f32(w, CFG(L)->p); }

static void read(aim__reader *r, aim__layer *L) { AIM__CFG_MUT(aim__dropout_cfg, L)->p = aim__get_f32(r); }

const aim__layer_ops aim__dropout_ops = {
    .name = "dropout",
    .code = 11,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
    .can_step = aim__step_positionwise,
};
