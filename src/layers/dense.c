/*
 * The dense (fully connected) layer, PyTorch nn.Linear layout:
 *   params = W [units, in] row-major, then b [units]
 *   Z = X·Wᵀ + b,  Y = f(Z)                  X: (B, in)  Z, Y: (B, units)
 * https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 * The dense kind flattens each sample; the linear kind (aim_model_add_linear)
 * is the same layer over the last axis only, as nn.Linear on a sequence:
 * every leading position of a sample is one more row of X.
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "gemm.h"
#include "internal.h"

/* Sizes were checked against INT_MAX when the layer was added. */
#define BI(n) AIM__BLAS_INT(n)
#define CFG(L) AIM__CFG(aim__dense_cfg, L)
_Static_assert(sizeof(aim__dense_cfg) <= AIM__LAYER_CFG_BYTES, "dense config too large");

/* Rows per sample: 1 for dense, the leading positions for linear. */
static size_t rows_per_sample(const aim__layer *L) {
    return CFG(L)->last_axis ? L->in_size / L->in_dims[L->in_rank - 1] : 1;
}

void aim__dense_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                        size_t batch) {
    const size_t rows = rows_per_sample(L), in = L->in_size / rows, out = L->out_size / rows;
    batch *= rows;
    const float *W = params, *b = L->bias_count ? params + L->weight_count : NULL;
    /* With a non-identity activation a training pass keeps Z in the cache for
     * the derivative; otherwise Z is built in y and activated in place. */
    float *z = cache ? cache : y;
    if (batch == 1) {
        /* z = W·x: a GEMV avoids GEMM's packing overhead at batch 1. */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, BI(out), BI(in), 1.0f, W, BI(in), x, 1, 0.0f, z, 1);
    } else {
        /* Z = X·Wᵀ */
        aim__sgemm(AIM__NOTRANS, AIM__TRANS, batch, out, in, 1.0f, x, in, W, in, 0.0f, z, out);
    }
    if (b)
        for (size_t r = 0; r < batch; r++) {
            float *zr = z + r * out;
            for (size_t j = 0; j < out; j++) zr[j] += b[j];
        }
    aim__act_forward(CFG(L)->act, CFG(L)->alpha, z, y, batch, out);
}

void aim__dense_backward(const aim__layer *L, const float *params, float *dparams, const float *x,
                         const float *y, const float *cache, float *dy, float *dx, size_t batch) {
    const size_t rows = rows_per_sample(L), in = L->in_size / rows, out = L->out_size / rows;
    batch *= rows;
    const float *W = params;
    float *dW = dparams, *db = L->bias_count ? dparams + L->weight_count : NULL;
    /* dZ = dY ⊙ f'(Z), in place in dy */
    const float *z = cache ? cache : y;
    aim__act_backward(CFG(L)->act, CFG(L)->alpha, z, y, dy, dy, batch, out);
    const float *dz = dy;
    /* dW += dZᵀ·X */
    aim__sgemm(AIM__TRANS, AIM__NOTRANS, out, in, batch, 1.0f, dz, out, x, in, 1.0f, dW, in);
    /* db += sum over the batch of dZ */
    if (db)
        for (size_t r = 0; r < batch; r++) {
            const float *dzr = dz + r * out;
            for (size_t j = 0; j < out; j++) db[j] += dzr[j];
        }
    /* dX = dZ·W */
    if (dx)
        aim__sgemm(AIM__NOTRANS, AIM__NOTRANS, batch, in, out, 1.0f, dz, out, W, in, 0.0f, dx, in);
}

static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    const size_t rows = rows_per_sample(L);
    aim__init_weights(CFG(L)->init, params, L->weight_count, params + L->weight_count, L->bias_count,
                      L->in_size / rows, L->out_size / rows, rng);
}

aim_status aim_dense_config_init(aim_dense_config *c, size_t units, aim_activation activation) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    c->units = units;
    c->activation = activation;
    c->alpha = 0.01f;
    c->use_bias = 1;
    c->init = AIM_INIT_GLOROT_UNIFORM;
    return AIM_OK;
}

static aim_status add(aim_model *m, const aim_dense_config *c, const aim__layer_ops *ops) {
    aim__dense_cfg k = {0, AIM_ACT_IDENTITY, 0.0f, 0, AIM_INIT_GLOROT_UNIFORM, ops == &aim__linear_ops};
    if (c) {
        k.units = c->units;
        k.act = c->activation;
        k.alpha = c->alpha;
        k.use_bias = c->use_bias != 0;
        k.init = c->init;
    }
    return aim__model_add_node(m, ops, c ? &k : NULL, sizeof k, NULL, 0);
}

aim_status aim_model_add_dense(aim_model *m, const aim_dense_config *c) { return add(m, c, &aim__dense_ops); }
aim_status aim_model_add_linear(aim_model *m, const aim_dense_config *c) { return add(m, c, &aim__linear_ops); }

/* The input is flattened per sample, so a dense layer may follow any shape. */
static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const aim__dense_cfg *c = CFG(L);
    if (c->units == 0) {
        snprintf(msg, AIM__ERR_CAP, "units must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!aim__activation_valid(c->act)) {
        snprintf(msg, AIM__ERR_CAP, "unknown activation %d", (int)c->act);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!aim__init_valid(c->init)) {
        snprintf(msg, AIM__ERR_CAP, "unknown init %d", (int)c->init);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    /* linear: each of `rows` leading positions is a row of `cols` features */
    const size_t cols = c->last_axis ? in[0].dims[in[0].rank - 1] : in[0].size, rows = in[0].size / cols;
    if (!aim__mul(c->units, cols, &L->weight_count) || L->weight_count > SIZE_MAX / sizeof(float) ||
        !aim__mul(c->units, rows, &L->out_size) || L->out_size > SIZE_MAX / sizeof(float)) {
        snprintf(msg, AIM__ERR_CAP, "weight count %zu x %zu overflows", c->units, cols);
        return AIM_ERR_OVERFLOW;
    }
    if (c->units > INT_MAX || cols > INT_MAX) {
        snprintf(msg, AIM__ERR_CAP, "units %zu or %zu inputs exceed the BLAS limit", c->units, cols);
        return AIM_ERR_UNSUPPORTED;
    }
    /* A value holds at most INT_MAX floats a sample (aim_model_create()'s
     * limit, which the layers reading it rely on); linear's rows x units
     * can pass it where units alone does not. */
    if (L->out_size > INT_MAX) {
        snprintf(msg, AIM__ERR_CAP, "output of %zu positions x %zu units has %zu floats a sample, over INT_MAX", rows,
                 c->units, L->out_size);
        return AIM_ERR_UNSUPPORTED;
    }
    if (c->last_axis) {
        L->out_rank = in[0].rank;
        memcpy(L->out_dims, in[0].dims, sizeof L->out_dims);
        L->out_dims[in[0].rank - 1] = c->units;
    } else {
        L->out_rank = 1;
        L->out_dims[0] = c->units;
    }
    L->bias_count = c->use_bias ? c->units : 0;
    /* Only the pre-activation Z is worth keeping, and only when f is not the
     * identity (then Z equals the output). */
    L->cache_per_sample = c->act == AIM_ACT_IDENTITY ? 0 : L->out_size;
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    aim__dense_forward(L, a->params, a->x[0], a->y, a->cache, a->batch);
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    aim__dense_backward(L, a->params, a->dparams, a->x[0], a->y, a->cache, a->dy, a->dx[0], a->batch);
}

static double macs(const aim__layer *L) {
    return ((double)L->weight_count + (double)CFG(L)->units) * (double)rows_per_sample(L);
}

/* u64 units, u32 activation, f32 alpha, u32 use_bias, u32 init */
static void write(const aim__layer *L, aim__writer *w) {
    const aim__dense_cfg *c = CFG(L);
    aim__put_u64(w, c->units);
    aim__put_u32(w, (uint32_t)c->act);
    aim__put_f32(w, c->alpha);
    aim__put_u32(w, (uint32_t)c->use_bias);
    aim__put_u32(w, (uint32_t)c->init);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__dense_cfg *c = AIM__CFG_MUT(aim__dense_cfg, L);
    c->units = aim__get_size(r);
    c->act = (aim_activation)aim__get_u32(r);
    c->alpha = aim__get_f32(r);
    c->use_bias = aim__get_flag(r);
    c->init = (aim_init)aim__get_u32(r);
    c->last_axis = 0;
}

/* Over the last axis of a value of rank >= 2: each position on its own. */
static int can_step_linear(const aim__layer *L) { return L->in_rank >= 2 ? AIM__STEP_POSITIONWISE : AIM__STEP_NO; }

/* linear's GEMM takes batch · positions rows as an int. */
static aim_status check_linear(const aim__layer *L, const float *const *x, size_t batch, int train, char *msg) {
    (void)x;
    (void)train;
    const size_t rows = rows_per_sample(L);
    if (batch > (size_t)INT_MAX / rows) {
        snprintf(msg, AIM__ERR_CAP, "batch %zu of %zu positions is over the BLAS limit of INT_MAX rows", batch, rows);
        return AIM_ERR_UNSUPPORTED;
    }
    return AIM_OK;
}

static void read_linear(aim__reader *r, aim__layer *L) {
    read(r, L);
    AIM__CFG_MUT(aim__dense_cfg, L)->last_axis = 1;
}

const aim__layer_ops aim__dense_ops = {
    .name = "dense",
    .code = 0,
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

const aim__layer_ops aim__linear_ops = {
    .name = "linear",
    .code = 22,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .init = init,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read_linear,
    .can_step = can_step_linear,
    .check = check_linear,
};
