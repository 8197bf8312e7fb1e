/*
 * A learned positional embedding added to a sequence, GPT-2's wpe
 * (x + wpe(arange(T)) in PyTorch, with an nn.Embedding of max_positions rows):
 *   params = wpe [max_positions, E], N(0, 0.02²) as GPT-2 initializes it
 *   y[t] = x[t] + wpe[t]                 x, y: (T, E), T <= max_positions
 *   dx = dy,  dwpe[t] += Σ over the batch of dy[t] (rows T.. get nothing)
 * A step of incremental inference at position p adds wpe[p].
 * https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__pos_embedding_cfg, L)
_Static_assert(sizeof(aim__pos_embedding_cfg) <= AIM__LAYER_CFG_BYTES, "pos_embedding config too large");

aim_status aim_model_add_positional_embedding(aim_model *m, size_t max_positions) {
    const aim__pos_embedding_cfg k = {max_positions};
    return aim__model_add_node(m, &aim__pos_embedding_ops, &k, sizeof k, NULL, 0);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const size_t P = CFG(L)->max_positions;
    if (P == 0) {
        snprintf(msg, AIM__ERR_CAP, "max_positions must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (in[0].rank != 2) {
        char shape[96];
        aim__shape_str(&in[0], shape, sizeof shape);
        snprintf(msg, AIM__ERR_CAP, "needs a sequence (time, embed), got %s", shape);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (in[0].dims[0] > P) {
        snprintf(msg, AIM__ERR_CAP, "the sequence of %zu steps is longer than max_positions %zu", in[0].dims[0], P);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (!aim__mul(P, in[0].dims[1], &L->weight_count) || L->weight_count > SIZE_MAX / sizeof(float)) {
        snprintf(msg, AIM__ERR_CAP, "table %zu x %zu overflows", P, in[0].dims[1]);
        return AIM_ERR_OVERFLOW;
    }
    L->bias_count = 0;
    L->out_rank = 2;
    memcpy(L->out_dims, in[0].dims, sizeof L->out_dims);
    L->out_size = in[0].size;
    return AIM_OK;
}

static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    for (size_t i = 0; i < L->weight_count; i++) params[i] = 0.02f * aim__rng_normal(rng);
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    const size_t n = L->in_size; /* the first T rows of the table, contiguous */
    for (size_t b = 0; b < a->batch; b++) {
        const float *x = a->x[0] + b * n;
        float *y = a->y + b * n;
        for (size_t i = 0; i < n; i++) y[i] = x[i] + a->params[i];
    }
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    const size_t n = L->in_size;
    for (size_t b = 0; b < a->batch; b++) {
        const float *dy = a->dy + b * n;
        for (size_t i = 0; i < n; i++) a->dparams[i] += dy[i];
        if (a->dx[0]) memcpy(a->dx[0] + b * n, dy, n * sizeof(float));
    }
}

/* A step at position p adds row p. */
static int can_step(const aim__layer *L) {
    (void)L;
    return AIM__STEP_OWN;
}

static void step(const aim__layer *L, const aim__step *a) {
    const size_t E = L->in_dims[1];
    const float *row = a->params + a->pos * E;
    for (size_t b = 0; b < a->batch; b++)
        for (size_t i = 0; i < E; i++) a->y[b * E + i] = a->x[0][b * E + i] + row[i];
}

static double macs(const aim__layer *L) { return (double)L->in_size; }

/* u64 max_positions */
static void write(const aim__layer *L, aim__writer *w) { aim__put_u64(w, CFG(L)->max_positions); }

static void read(aim__reader *r, aim__layer *L) {
    AIM__CFG_MUT(aim__pos_embedding_cfg, L)->max_positions = aim__get_size(r);
}

const aim__layer_ops aim__pos_embedding_ops = {
    .name = "positional_embedding",
    .code = 21,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .init = init,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
    .step = step,
    .can_step = can_step,
};
