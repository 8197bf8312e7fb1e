/*
 * Embedding: a table of vectors looked up by int32 ids, PyTorch nn.Embedding
 * semantics and layout:
 *   params = W [num, dim] row-major (nn.Embedding.weight)
 *   Y[p, :] = W[ids[p], :]          ids: (B, S) int32, S of rank 1 or 2   Y: (B, S, dim)
 *   dW[ids[p], :] += dY[p, :]       for every position p whose id is not padding_idx
 * The ids have no gradient. Row padding_idx (with has_padding) starts at
 * zero and never receives a gradient, as PyTorch's padding_idx.
 * https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html
 *
 * The ids arrive as the 4-byte words of an int32 model input (aim__fwd), so
 * they are read with memcpy. Every id is checked against the table before a
 * forward or predict runs (`check`, called by the executor on the caller's
 * buffer), so the kernels never see one outside [0, num); they still skip
 * one rather than read outside the table, as a second fence.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__embedding_cfg, L)
_Static_assert(sizeof(aim__embedding_cfg) <= AIM__LAYER_CFG_BYTES, "embedding config too large");
_Static_assert(sizeof(int32_t) == sizeof(float), "ids travel in float slots");

/* The id at position p of a buffer of ids carried in float slots. */
static inline int32_t id_at(const float *ids, size_t p) {
    int32_t id;
    memcpy(&id, ids + p, sizeof id);
    return id;
}

aim_status aim_embedding_config_init(aim_embedding_config *c, size_t num_embeddings, size_t embedding_dim) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    c->num_embeddings = num_embeddings;
    c->embedding_dim = embedding_dim;
    c->has_padding = 0;
    c->padding_idx = 0;
    c->init = AIM_INIT_PYTORCH;
    return AIM_OK;
}

aim_status aim_model_add_embedding(aim_model *m, const aim_embedding_config *c) {
    aim__embedding_cfg k = {0, 0, 0, 0, AIM_INIT_PYTORCH};
    if (c) {
        k.num = c->num_embeddings;
        k.dim = c->embedding_dim;
        k.has_padding = c->has_padding != 0;
        k.padding_idx = c->has_padding ? c->padding_idx : 0;
        k.init = c->init;
    }
    return aim__model_add_node(m, &aim__embedding_ops, c ? &k : NULL, sizeof k, NULL, 0);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const aim__embedding_cfg *c = CFG(L);
    if (c->num == 0 || c->num > INT32_MAX) {
        snprintf(msg, AIM__ERR_CAP, "num_embeddings %zu is not 1 to INT32_MAX", c->num);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->dim == 0) {
        snprintf(msg, AIM__ERR_CAP, "embedding_dim must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->has_padding && c->padding_idx >= c->num) {
        snprintf(msg, AIM__ERR_CAP, "padding_idx %zu is outside the table [0, %zu)", c->padding_idx, c->num);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!c->has_padding && c->padding_idx != 0) { /* the builder writes 0: one encoding per model */
        snprintf(msg, AIM__ERR_CAP, "padding_idx %zu without has_padding", c->padding_idx);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!aim__init_valid(c->init)) {
        snprintf(msg, AIM__ERR_CAP, "unknown init %d", (int)c->init);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    char shape[64];
    aim__shape_str(&in[0], shape, sizeof shape);
    if (in[0].dtype != AIM_DTYPE_INT32) {
        char id[48];
        aim__node_id_str(L->in[0], id, sizeof id);
        snprintf(msg, AIM__ERR_CAP,
                 "%s %s holds floats, not int32 ids; declare a model input of ids with "
                 "aim_model_set_input_dtype(model, k, AIM_DTYPE_INT32) first",
                 id, shape);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (in[0].rank < 1 || in[0].rank > 2) {
        snprintf(msg, AIM__ERR_CAP, "ids of shape %s: rank %zu, but an embedding takes rank 1 or 2 (the output adds an axis)",
                 shape, in[0].rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    size_t out;
    if (!aim__mul(c->num, c->dim, &L->weight_count) || L->weight_count > SIZE_MAX / sizeof(float) ||
        !aim__mul(in[0].size, c->dim, &out)) {
        snprintf(msg, AIM__ERR_CAP, "table %zu x %zu or output %s x %zu overflows", c->num, c->dim, shape, c->dim);
        return AIM_ERR_OVERFLOW;
    }
    /* Every value of a model holds at most INT_MAX floats a sample (the BLAS
     * of the layers that read it takes int sizes), as aim_model_create() asks. */
    if (out > INT_MAX) {
        snprintf(msg, AIM__ERR_CAP, "output %s x %zu has %zu floats a sample, over INT_MAX", shape, c->dim, out);
        return AIM_ERR_UNSUPPORTED;
    }
    L->bias_count = 0;
    L->out_rank = in[0].rank + 1;
    for (size_t d = 0; d < in[0].rank; d++) L->out_dims[d] = in[0].dims[d];
    L->out_dims[in[0].rank] = c->dim;
    L->out_size = out;
    return AIM_OK;
}

/* W ~ N(0, 1) (nn.Embedding's reset_parameters), or the other initializers
 * with PyTorch's fans of a [num, dim] weight: fan_in = dim, fan_out = num.
 * The padding row is then zeroed, as PyTorch does. */
static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    const aim__embedding_cfg *c = CFG(L);
    if (c->init == AIM_INIT_PYTORCH) {
        for (size_t i = 0; i < L->weight_count; i++) params[i] = aim__rng_normal(rng);
    } else {
        aim__init_weights(c->init, params, L->weight_count, params + L->weight_count, 0, c->dim, c->num, rng);
    }
    if (c->has_padding) memset(params + c->padding_idx * c->dim, 0, c->dim * sizeof(float));
}

/* Y[p, :] = W[ids[p], :], one row copy per position. */
static void forward(const aim__layer *L, const aim__fwd *a) {
    const aim__embedding_cfg *c = CFG(L);
    const size_t n = a->batch * L->in_size, dim = c->dim;
    const float *W = a->params;
    for (size_t p = 0; p < n; p++) {
        const int32_t id = id_at(a->x[0], p);
        float *y = a->y + p * dim;
        if (id < 0 || (size_t)id >= c->num) { /* unreachable: check() refused the call */
            memset(y, 0, dim * sizeof(float));
            continue;
        }
        memcpy(y, W + (size_t)id * dim, dim * sizeof(float));
    }
}

/* dW[ids[p], :] += dY[p, :], positions in order (a repeated id sums its
 * rows); none into the padding row; the ids get no gradient (dx[0] is NULL). */
static void backward(const aim__layer *L, const aim__bwd *a) {
    const aim__embedding_cfg *c = CFG(L);
    const size_t n = a->batch * L->in_size, dim = c->dim;
    for (size_t p = 0; p < n; p++) {
        const int32_t id = id_at(a->x[0], p);
        if (id < 0 || (size_t)id >= c->num || (c->has_padding && (size_t)id == c->padding_idx)) continue;
        float *dw = a->dparams + (size_t)id * dim;
        const float *dy = a->dy + p * dim;
        for (size_t j = 0; j < dim; j++) dw[j] += dy[j];
    }
}

/* Every id of the call in [0, num): "id 71 at position 13 (sample 0, index 13) is outside [0, 64)". */
static aim_status check(const aim__layer *L, const float *const *x, size_t batch, int train, char *msg) {
    (void)train;
    if (!x[0]) return AIM_OK; /* not a model input: never the case for an embedding */
    const aim__embedding_cfg *c = CFG(L);
    const size_t S = L->in_size, n = batch * S;
    for (size_t p = 0; p < n; p++) {
        const int32_t id = id_at(x[0], p);
        if (id >= 0 && (size_t)id < c->num) continue;
        const size_t s = p / S, i = p % S;
        char index[64];
        if (L->in_rank == 2) snprintf(index, sizeof index, "(%zu, %zu)", i / L->in_dims[1], i % L->in_dims[1]);
        else snprintf(index, sizeof index, "%zu", i);
        snprintf(msg, AIM__ERR_CAP, "id %d at position %zu (sample %zu, index %s) is outside the table [0, %zu)",
                 (int)id, p, s, index, c->num);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    return AIM_OK;
}

/* A row copy per position: dim floats moved. */
static double macs(const aim__layer *L) { return (double)L->out_size; }

/* u64 num, u64 dim, u32 has_padding, u64 padding_idx, u32 init */
static void write(const aim__layer *L, aim__writer *w) {
    const aim__embedding_cfg *c = CFG(L);
    aim__put_u64(w, c->num);
    aim__put_u64(w, c->dim);
    aim__put_u32(w, (uint32_t)c->has_padding);
    aim__put_u64(w, c->padding_idx);
    aim__put_u32(w, (uint32_t)c->init);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__embedding_cfg *c = AIM__CFG_MUT(aim__embedding_cfg, L);
    c->num = aim__get_size(r);
    c->dim = aim__get_size(r);
    c->has_padding = aim__get_flag(r);
    c->padding_idx = aim__get_size(r);
    c->init = (aim_init)aim__get_u32(r);
}

const aim__layer_ops aim__embedding_ops = {
    .name = "embedding",
    .code = 13,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .init = init,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
    .check = check,
    .reads_ids = 1,
    .can_step = aim__step_positionwise,
};
