/*
 * The sequential model: a list of layers, validated as they are added, and
 * one memory block sized at compile time holding the flat parameter and
 * gradient buffers, every activation, the caches the backward needs and the
 * gradient ping-pong buffers. Nothing is allocated after compile.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <string.h>

#include "internal.h"

struct aim_model {
    aim_allocator alloc;
    size_t in_rank, in_dims[AIM_MAX_RANK], in_size; /* one input sample */
    aim__layer *layers;
    size_t n_layers, cap_layers;

    /* ---- set by compile ---- */
    int compiled;
    size_t max_batch;
    int input_gradient;
    size_t n_params;
    void *raw;            /* the one block, as allocated */
    size_t block_bytes;
    float *params;        /* (n_params) */
    float *grads;         /* (n_params) */
    float *input;         /* (max_batch, in_size): copy of the last training input */
    float **acts;         /* n_layers pointers, each (max_batch, out_size) */
    float **caches;       /* n_layers pointers, NULL when a layer keeps nothing */
    float **inits;        /* n_layers pointers, NULL but for an LSTM: the initial state as set, h0 then c0
                           * (layers, batch, H) each, followed by the copy the last forward used, which its
                           * backward reads (so setting a state in between changes nothing) */
    size_t *init_batch;   /* n_layers: the batch the initial state was set for, 0 for a zero state */
    float **active_inits; /* n_layers: what the last forward used (NULL: zero state) */
    float *dbuf[2];       /* gradient ping-pong, each (max_batch, max activation size) */
    float *scratch;       /* (max scratch_floats over the layers): im2col and the like */
    float *input_grad;    /* (max_batch, in_size) when input_gradient */

    /* ---- the state of the last calls ---- */
    size_t batch;         /* batch of the last forward, 0 before any */
    int trained_forward;  /* the last forward kept caches */
    int loss_ready;       /* dbuf[0] holds d loss / d output */
    int input_grad_ready;

    /* ---- threads ---- */
    aim_threadpool *pool; /* NULL: everything on the calling thread */
    size_t parts;         /* how many batch slices the last training forward ran in */

    char err[AIM__ERR_CAP];
};

static const char *kind_name(aim__layer_kind k) {
    switch (k) {
    case AIM__LAYER_DENSE: return "dense";
    case AIM__LAYER_ACTIVATION: return "activation";
    case AIM__LAYER_CONV2D: return "conv2d";
    case AIM__LAYER_MAX_POOL2D: return "max_pool2d";
    case AIM__LAYER_AVG_POOL2D: return "avg_pool2d";
    case AIM__LAYER_GLOBAL_AVG_POOL2D: return "global_avg_pool2d";
    case AIM__LAYER_FLATTEN: return "flatten";
    case AIM__LAYER_LSTM: return "lstm";
    }
    return "?";
}

/* Shape of the data flowing into the next layer to be added. */
static void current_shape(const aim_model *m, size_t *rank, size_t dims[AIM_MAX_RANK], size_t *size) {
    if (m->n_layers == 0) {
        *rank = m->in_rank;
        memcpy(dims, m->in_dims, sizeof m->in_dims);
        *size = m->in_size;
    } else {
        const aim__layer *L = &m->layers[m->n_layers - 1];
        *rank = L->out_rank;
        memcpy(dims, L->out_dims, sizeof L->out_dims);
        *size = L->out_size;
    }
}

aim_status aim_model_create(const aim_allocator *allocator, size_t rank, const size_t *dims, aim_model **out) {
    aim_allocator a;
    if (!out || !dims || rank == 0 || rank > AIM_MAX_RANK - 1) return AIM_ERR_INVALID_ARGUMENT;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    size_t n = 1;
    for (size_t i = 0; i < rank; i++) {
        if (dims[i] == 0) return AIM_ERR_INVALID_ARGUMENT;
        if (!aim__mul(n, dims[i], &n)) return AIM_ERR_OVERFLOW;
    }
    if (n > INT_MAX) return AIM_ERR_UNSUPPORTED; /* BLAS takes int sizes */
    aim_model *m = aim__alloc(&a, sizeof *m);
    if (!m) return AIM_ERR_OUT_OF_MEMORY;
    memset(m, 0, sizeof *m);
    m->alloc = a;
    m->in_rank = rank;
    memcpy(m->in_dims, dims, rank * sizeof dims[0]);
    m->in_size = n;
    *out = m;
    return AIM_OK;
}

void aim_model_free(aim_model *m) {
    if (!m) return;
    aim_allocator a = m->alloc;
    aim__free(&a, m->raw);
    aim__free(&a, m->layers);
    aim__free(&a, m);
}

const char *aim_model_last_error(const aim_model *m) { return m ? m->err : ""; }

/* Appends a layer whose fields are filled in; grows the list if needed. */
static aim_status push_layer(aim_model *m, const aim__layer *L) {
    if (m->n_layers == m->cap_layers) {
        size_t cap = m->cap_layers ? m->cap_layers * 2 : 8, bytes;
        if (!aim__mul(cap, sizeof *m->layers, &bytes)) return AIM_ERR_OVERFLOW;
        aim__layer *p = m->alloc.reallocate(m->alloc.context, m->layers, bytes);
        if (!p) {
            aim__set_error(m->err, "layer %zu (%s): out of memory growing the layer list", m->n_layers,
                           kind_name(L->kind));
            return AIM_ERR_OUT_OF_MEMORY;
        }
        m->layers = p;
        m->cap_layers = cap;
    }
    m->layers[m->n_layers++] = *L;
    return AIM_OK;
}

static aim_status check_buildable(aim_model *m, const char *what) {
    if (m->compiled) {
        aim__set_error(m->err, "%s: the model is already compiled; layers cannot be added", what);
        return AIM_ERR_INVALID_STATE;
    }
    return AIM_OK;
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

aim_status aim_model_add_dense(aim_model *m, const aim_dense_config *c) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    const size_t idx = m->n_layers;
    if (!c) {
        aim__set_error(m->err, "layer %zu (dense): config is NULL", idx);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim_status st = check_buildable(m, "add_dense");
    if (st != AIM_OK) return st;
    if (c->units == 0) {
        aim__set_error(m->err, "layer %zu (dense): units must be > 0", idx);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!aim__activation_valid(c->activation)) {
        aim__set_error(m->err, "layer %zu (dense): unknown activation %d", idx, (int)c->activation);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->init < AIM_INIT_GLOROT_UNIFORM || c->init > AIM_INIT_ZEROS) {
        aim__set_error(m->err, "layer %zu (dense): unknown init %d", idx, (int)c->init);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.kind = AIM__LAYER_DENSE;
    current_shape(m, &L.in_rank, L.in_dims, &L.in_size);
    if (!aim__mul(c->units, L.in_size, &L.weight_count) || L.weight_count > SIZE_MAX / sizeof(float)) {
        aim__set_error(m->err, "layer %zu (dense): weight count %zu x %zu overflows", idx, c->units, L.in_size);
        return AIM_ERR_OVERFLOW;
    }
    if (c->units > INT_MAX) {
        aim__set_error(m->err, "layer %zu (dense): units %zu exceeds the BLAS limit", idx, c->units);
        return AIM_ERR_UNSUPPORTED;
    }
    L.out_rank = 1;
    L.out_dims[0] = c->units;
    L.out_size = c->units;
    L.bias_count = c->use_bias ? c->units : 0;
    L.act = c->activation;
    L.alpha = c->alpha;
    L.init = c->init;
    /* Only the pre-activation Z is worth keeping, and only when f is not the
     * identity (then Z equals the output). */
    L.cache_per_sample = c->activation == AIM_ACT_IDENTITY ? 0 : c->units;
    return push_layer(m, &L);
}

aim_status aim_model_add_activation(aim_model *m, aim_activation activation, float alpha) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_buildable(m, "add_activation");
    if (st != AIM_OK) return st;
    if (!aim__activation_valid(activation)) {
        aim__set_error(m->err, "layer %zu (activation): unknown activation %d", m->n_layers, (int)activation);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.kind = AIM__LAYER_ACTIVATION;
    current_shape(m, &L.in_rank, L.in_dims, &L.in_size);
    L.out_rank = L.in_rank;
    memcpy(L.out_dims, L.in_dims, sizeof L.in_dims);
    L.out_size = L.in_size;
    L.act = activation;
    L.alpha = alpha;
    return push_layer(m, &L);
}

/* ---- image layers: conv2d, pooling, flatten ------------------------------ */

aim_status aim_conv2d_config_init(aim_conv2d_config *c, size_t filters, size_t kernel_h, size_t kernel_w,
                                  aim_activation activation) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->filters = filters;
    c->kernel_h = kernel_h;
    c->kernel_w = kernel_w;
    c->stride_h = c->stride_w = 1;
    c->dilation_h = c->dilation_w = 1;
    c->groups = 1;
    c->padding = AIM_PAD_VALID;
    c->activation = activation;
    c->alpha = 0.01f;
    c->use_bias = 1;
    c->init = AIM_INIT_GLOROT_UNIFORM;
    return AIM_OK;
}

aim_status aim_pool2d_config_init(aim_pool2d_config *c, size_t kernel_h, size_t kernel_w) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->kernel_h = kernel_h;
    c->kernel_w = kernel_w;
    c->stride_h = kernel_h;
    c->stride_w = kernel_w;
    return AIM_OK;
}

/* Output length of one spatial axis: (n + pads - d (k - 1) - 1) / s + 1, or
 * an error naming the axis when the dilated kernel exceeds the padded input. */
static aim_status out_len(aim_model *m, const char *kind, const char *axis, size_t n, size_t k, size_t s,
                          size_t d, size_t pad_a, size_t pad_b, size_t *out) {
    size_t eff, padded;
    if (!aim__mul(d, k - 1, &eff) || !aim__add(eff, 1, &eff) || !aim__add(n, pad_a, &padded) ||
        !aim__add(padded, pad_b, &padded)) {
        aim__set_error(m->err, "layer %zu (%s): %s size overflows", m->n_layers, kind, axis);
        return AIM_ERR_OVERFLOW;
    }
    if (eff > padded) {
        aim__set_error(m->err, "layer %zu (%s): %s: kernel extent %zu is larger than the padded input %zu",
                       m->n_layers, kind, axis, eff, padded);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    *out = (padded - eff) / s + 1;
    return AIM_OK;
}

/* Keras/TensorFlow "same": output ceil(n / s), total padding split evenly. */
static void same_pad(size_t n, size_t k, size_t s, size_t d, size_t *pa, size_t *pb) {
    /* ceil(n / s) without overflow; (o - 1) s <= n, and d, k <= INT_MAX here. */
    size_t o = n / s + (n % s != 0), eff = d * (k - 1) + 1, need = (o - 1) * s + eff;
    size_t total = need > n ? need - n : 0;
    *pa = total / 2;
    *pb = total - *pa;
}

static aim_status need_image(aim_model *m, const char *kind, const aim__layer *L) {
    if (L->in_rank != 3) {
        aim__set_error(m->err, "layer %zu (%s): input must be one C x H x W sample (rank 3), got rank %zu",
                       m->n_layers, kind, L->in_rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    return AIM_OK;
}

aim_status aim_model_add_conv2d(aim_model *m, const aim_conv2d_config *c) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    const size_t idx = m->n_layers;
    if (!c) {
        aim__set_error(m->err, "layer %zu (conv2d): config is NULL", idx);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim_status st = check_buildable(m, "add_conv2d");
    if (st != AIM_OK) return st;
    if (c->filters == 0 || c->kernel_h == 0 || c->kernel_w == 0 || c->stride_h == 0 || c->stride_w == 0 ||
        c->dilation_h == 0 || c->dilation_w == 0 || c->groups == 0) {
        aim__set_error(m->err, "layer %zu (conv2d): filters, kernel, stride, dilation and groups must be > 0", idx);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!aim__activation_valid(c->activation) || c->init < AIM_INIT_GLOROT_UNIFORM || c->init > AIM_INIT_ZEROS ||
        c->padding < AIM_PAD_EXPLICIT || c->padding > AIM_PAD_SAME) {
        aim__set_error(m->err, "layer %zu (conv2d): unknown activation, init or padding value", idx);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->activation == AIM_ACT_SOFTMAX) {
        /* Over which axis? Channels (Keras) and the last axis (PyTorch dim=-1)
         * disagree; an explicit activation layer states it. */
        aim__set_error(m->err, "layer %zu (conv2d): fused softmax is not supported; add an activation layer", idx);
        return AIM_ERR_UNSUPPORTED;
    }
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.kind = AIM__LAYER_CONV2D;
    current_shape(m, &L.in_rank, L.in_dims, &L.in_size);
    if ((st = need_image(m, "conv2d", &L)) != AIM_OK) return st;
    const size_t C = L.in_dims[0], H = L.in_dims[1], W = L.in_dims[2];
    if (C % c->groups || c->filters % c->groups) {
        aim__set_error(m->err, "layer %zu (conv2d): channels: groups %zu must divide input channels %zu and filters %zu",
                       idx, c->groups, C, c->filters);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    aim__window *w = &L.win;
    w->kh = c->kernel_h;
    w->kw = c->kernel_w;
    w->sh = c->stride_h;
    w->sw = c->stride_w;
    w->dh = c->dilation_h;
    w->dw = c->dilation_w;
    w->groups = c->groups;
    if (c->padding == AIM_PAD_EXPLICIT) {
        w->pt = c->pad_top;
        w->pb = c->pad_bottom;
        w->pl = c->pad_left;
        w->pr = c->pad_right;
    } else if (c->padding == AIM_PAD_SAME) {
        if (w->kh > INT_MAX || w->kw > INT_MAX || w->dh > INT_MAX || w->dw > INT_MAX) {
            aim__set_error(m->err, "layer %zu (conv2d): kernel or dilation too large for \"same\" padding",
                           idx);
            return AIM_ERR_UNSUPPORTED;
        }
        same_pad(H, w->kh, w->sh, w->dh, &w->pt, &w->pb);
        same_pad(W, w->kw, w->sw, w->dw, &w->pl, &w->pr);
    }
    size_t Ho, Wo;
    if ((st = out_len(m, "conv2d", "height", H, w->kh, w->sh, w->dh, w->pt, w->pb, &Ho)) != AIM_OK) return st;
    if ((st = out_len(m, "conv2d", "width", W, w->kw, w->sw, w->dw, w->pl, w->pr, &Wo)) != AIM_OK) return st;
    size_t K, wc, out, col;
    if (!aim__mul(C / c->groups, w->kh, &K) || !aim__mul(K, w->kw, &K) || !aim__mul(K, c->filters, &wc) ||
        !aim__mul(Ho, Wo, &out) || !aim__mul(out, K, &col) || !aim__mul(col, 2, &col) ||
        !aim__mul(out, c->filters, &out)) {
        aim__set_error(m->err, "layer %zu (conv2d): parameter or output size overflows", idx);
        return AIM_ERR_OVERFLOW;
    }
    if (K > INT_MAX || out > INT_MAX || c->filters > INT_MAX) {
        aim__set_error(m->err, "layer %zu (conv2d): a GEMM dimension exceeds the BLAS limit", idx);
        return AIM_ERR_UNSUPPORTED;
    }
    L.out_rank = 3;
    L.out_dims[0] = c->filters;
    L.out_dims[1] = Ho;
    L.out_dims[2] = Wo;
    L.out_size = out;
    L.weight_count = wc;
    L.bias_count = c->use_bias ? c->filters : 0;
    L.act = c->activation;
    L.alpha = c->alpha;
    L.init = c->init;
    aim__conv2d_setup(&L); /* the training cache and the scratch */
    return push_layer(m, &L);
}

static aim_status add_pool(aim_model *m, aim__layer_kind kind, const char *name, const aim_pool2d_config *c) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    const size_t idx = m->n_layers;
    if (!c) {
        aim__set_error(m->err, "layer %zu (%s): config is NULL", idx, name);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim_status st = check_buildable(m, name);
    if (st != AIM_OK) return st;
    if (c->kernel_h == 0 || c->kernel_w == 0 || c->stride_h == 0 || c->stride_w == 0) {
        aim__set_error(m->err, "layer %zu (%s): kernel and stride must be > 0", idx, name);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.kind = kind;
    current_shape(m, &L.in_rank, L.in_dims, &L.in_size);
    if ((st = need_image(m, name, &L)) != AIM_OK) return st;
    if (c->pad_h > c->kernel_h / 2 || c->pad_w > c->kernel_w / 2) {
        aim__set_error(m->err, "layer %zu (%s): padding must be at most half the window (as in PyTorch)", idx, name);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    aim__window *w = &L.win;
    w->kh = c->kernel_h;
    w->kw = c->kernel_w;
    w->sh = c->stride_h;
    w->sw = c->stride_w;
    w->dh = w->dw = 1;
    w->pt = w->pb = c->pad_h;
    w->pl = w->pr = c->pad_w;
    w->groups = 1;
    size_t Ho, Wo;
    if ((st = out_len(m, name, "height", L.in_dims[1], w->kh, w->sh, 1, w->pt, w->pb, &Ho)) != AIM_OK) return st;
    if ((st = out_len(m, name, "width", L.in_dims[2], w->kw, w->sw, 1, w->pl, w->pr, &Wo)) != AIM_OK) return st;
    L.out_rank = 3;
    L.out_dims[0] = L.in_dims[0];
    L.out_dims[1] = Ho;
    L.out_dims[2] = Wo;
    L.out_size = L.in_dims[0] * Ho * Wo; /* no larger than the input */
    return push_layer(m, &L);
}

aim_status aim_model_add_max_pool2d(aim_model *m, const aim_pool2d_config *c) {
    return add_pool(m, AIM__LAYER_MAX_POOL2D, "max_pool2d", c);
}

aim_status aim_model_add_avg_pool2d(aim_model *m, const aim_pool2d_config *c) {
    return add_pool(m, AIM__LAYER_AVG_POOL2D, "avg_pool2d", c);
}

aim_status aim_model_add_global_avg_pool2d(aim_model *m) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_buildable(m, "add_global_avg_pool2d");
    if (st != AIM_OK) return st;
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.kind = AIM__LAYER_GLOBAL_AVG_POOL2D;
    current_shape(m, &L.in_rank, L.in_dims, &L.in_size);
    if ((st = need_image(m, "global_avg_pool2d", &L)) != AIM_OK) return st;
    L.out_rank = 1;
    L.out_dims[0] = L.in_dims[0];
    L.out_size = L.in_dims[0];
    return push_layer(m, &L);
}

aim_status aim_model_add_flatten(aim_model *m) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_buildable(m, "add_flatten");
    if (st != AIM_OK) return st;
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.kind = AIM__LAYER_FLATTEN;
    current_shape(m, &L.in_rank, L.in_dims, &L.in_size);
    L.out_rank = 1;
    L.out_dims[0] = L.in_size;
    L.out_size = L.in_size;
    return push_layer(m, &L);
}

aim_status aim_lstm_config_init(aim_lstm_config *c, size_t hidden, size_t layers) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->hidden = hidden;
    c->layers = layers;
    c->return_sequences = 0;
    c->init = AIM_INIT_PYTORCH;
    return AIM_OK;
}

aim_status aim_model_add_lstm(aim_model *m, const aim_lstm_config *c) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    const size_t idx = m->n_layers;
    if (!c) {
        aim__set_error(m->err, "layer %zu (lstm): config is NULL", idx);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim_status st = check_buildable(m, "add_lstm");
    if (st != AIM_OK) return st;
    if (c->hidden == 0 || c->layers == 0 || c->layers > AIM__LSTM_MAX_LAYERS || c->init < AIM_INIT_GLOROT_UNIFORM ||
        c->init > AIM_INIT_ZEROS) {
        aim__set_error(m->err, "layer %zu (lstm): hidden > 0, layers 1..%d and a known init are required", idx,
                       AIM__LSTM_MAX_LAYERS);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.kind = AIM__LAYER_LSTM;
    current_shape(m, &L.in_rank, L.in_dims, &L.in_size);
    if (L.in_rank != 2) {
        aim__set_error(m->err, "layer %zu (lstm): input must be one time x features sequence (rank 2), got rank %zu",
                       idx, L.in_rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t T = L.in_dims[0], F = L.in_dims[1], H = c->hidden;
    /* Counts: params = sum over layers of 4H(in + H) + 8H; cache 6·T·H per layer. */
    size_t g, per, total = 0, tmp, cache, out;
    int ok = aim__mul(H, 4, &g) && aim__mul(g, T, &tmp) && aim__mul(tmp, 2, &tmp);
    for (size_t l = 0; ok && l < c->layers; l++) {
        size_t in = l == 0 ? F : H;
        ok = aim__add(in, H, &per) && aim__mul(per, g, &per) && aim__add(per, 2 * g, &per) &&
             aim__add(total, per, &total);
    }
    ok = ok && total <= SIZE_MAX / sizeof(float) && aim__mul(T, H, &tmp) && aim__mul(tmp, 6, &cache) &&
         aim__mul(cache, c->layers, &cache) && aim__mul(T, H, &out);
    if (!ok) {
        aim__set_error(m->err, "layer %zu (lstm): parameter or memory size overflows", idx);
        return AIM_ERR_OVERFLOW;
    }
    if (g > INT_MAX || F > INT_MAX || out > INT_MAX / 4) {
        aim__set_error(m->err, "layer %zu (lstm): a GEMM dimension exceeds the BLAS limit", idx);
        return AIM_ERR_UNSUPPORTED;
    }
    L.lstm_hidden = H;
    L.lstm_layers = c->layers;
    L.lstm_sequences = c->return_sequences != 0;
    L.init = c->init;
    L.weight_count = total;
    L.bias_count = 0;
    if (L.lstm_sequences) {
        L.out_rank = 2;
        L.out_dims[0] = T;
        L.out_dims[1] = H;
        L.out_size = out;
    } else {
        L.out_rank = 1;
        L.out_dims[0] = H;
        L.out_size = H;
    }
    L.cache_per_sample = aim__lstm_cache_per_sample(&L);
    L.scratch_per_sample = aim__lstm_scratch_per_sample(&L);
    return push_layer(m, &L);
}

/* Rows [*b0, *b0 + *nb) of a batch cut into `parts` near-equal slices. */
static void split(size_t batch, size_t parts, size_t w, size_t *b0, size_t *nb) {
    const size_t q = batch / parts, r = batch % parts;
    *nb = q + (w < r);
    *b0 = w * q + (w < r ? w : r);
}

/* The largest slice any split of `batch` can make: a small batch may be cut
 * into fewer slices than the pool has threads (parts_for), never fewer than
 * 2, so arenas are reserved for ceil(batch / 2) samples. */
static size_t largest_slice(size_t batch) { return batch / 2 + batch % 2; }

static aim_status lstm_layer(const aim_model *m, size_t layer, char *err, const char *what) {
    if (!m->compiled) {
        aim__set_error(err, "%s: the model is not compiled", what);
        return AIM_ERR_INVALID_STATE;
    }
    if (layer >= m->n_layers || m->layers[layer].kind != AIM__LAYER_LSTM) {
        aim__set_error(err, "%s: layer %zu is not an LSTM layer", what, layer);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    return AIM_OK;
}

aim_status aim_model_lstm_set_state(aim_model *m, size_t layer, const float *h0, const float *c0, size_t batch) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = lstm_layer(m, layer, m->err, "lstm_set_state");
    if (st != AIM_OK) return st;
    if (!h0 && !c0) {
        m->init_batch[layer] = 0;
        return AIM_OK;
    }
    if (!h0 || !c0 || batch == 0) {
        aim__set_error(m->err, "lstm_set_state: give both h0 and c0 (or neither) and batch > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (batch > m->max_batch) {
        aim__set_error(m->err, "lstm_set_state: batch %zu exceeds max_batch %zu", batch, m->max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const aim__layer *L = &m->layers[layer];
    const size_t n = L->lstm_layers * batch * L->lstm_hidden;
    memcpy(m->inits[layer], h0, n * sizeof(float));
    memcpy(m->inits[layer] + n, c0, n * sizeof(float));
    m->init_batch[layer] = batch;
    return AIM_OK;
}

aim_status aim_model_lstm_final_state(aim_model *m, size_t layer, float *h, float *c, size_t batch) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = lstm_layer(m, layer, m->err, "lstm_final_state");
    if (st != AIM_OK) return st;
    if ((!h && !c)) {
        aim__set_error(m->err, "lstm_final_state: h and c are both NULL");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!m->trained_forward) {
        aim__set_error(m->err, "lstm_final_state: needs a forward pass in AIM_MODE_TRAIN");
        return AIM_ERR_INVALID_STATE;
    }
    if (batch != m->batch) {
        aim__set_error(m->err, "lstm_final_state: batch %zu differs from the last forward's %zu", batch, m->batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    /* A training forward split over a pool keeps each slice's cache in the
     * slice's own layout, so the states are read back slice by slice. */
    const aim__layer *L = &m->layers[layer];
    for (size_t w = 0; w < m->parts; w++) {
        size_t b0, nb;
        split(batch, m->parts, w, &b0, &nb);
        aim__lstm_final_state(L, m->caches[layer] + b0 * L->cache_per_sample, nb, h ? h + b0 * L->lstm_hidden : NULL,
                              c ? c + b0 * L->lstm_hidden : NULL, batch);
    }
    return AIM_OK;
}

aim_status aim_model_layer_shape(const aim_model *m, size_t layer, size_t *rank, size_t *dims) {
    if (!m || !rank || !dims || layer >= m->n_layers) return AIM_ERR_INVALID_ARGUMENT;
    const aim__layer *L = &m->layers[layer];
    *rank = L->out_rank;
    memcpy(dims, L->out_dims, L->out_rank * sizeof dims[0]);
    return AIM_OK;
}

aim_status aim_compile_config_init(aim_compile_config *c) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    c->max_batch = 32;
    c->input_gradient = 0;
    c->seed = 0;
    c->rng = NULL;
    return AIM_OK;
}

/* Floats of scratch the model's layers need at `batch`; 0 on overflow. */
static int scratch_for(const aim_model *m, size_t batch, size_t *out) {
    size_t mx = 0;
    for (size_t i = 0; i < m->n_layers; i++) {
        size_t s;
        if (!aim__mul(batch, m->layers[i].scratch_per_sample, &s) || !aim__add(s, m->layers[i].scratch_floats, &s))
            return 0;
        if (s > mx) mx = s;
    }
    *out = mx;
    return 1;
}

/* Floats of a worker arena for a training slice of `slice` samples: a
 * partial gradient buffer of n_params, then the slice's scratch. 0 on overflow. */
static int arena_floats(const aim_model *m, size_t n_params, size_t slice, size_t *out) {
    size_t g, sc;
    return aim__round_floats(n_params, &g) && scratch_for(m, slice, &sc) && aim__add(g, sc, out);
}

/* The block's layout: a list of regions, each a multiple of AIM__ALIGN
 * bytes, so every buffer starts aligned. `off` is in floats. */
typedef struct planner {
    size_t off;
    int overflow;
} planner;

static size_t plan(planner *p, size_t a, size_t b) {
    size_t n, r, at = p->off;
    if (!aim__mul(a, b, &n) || !aim__round_floats(n, &r) || !aim__add(p->off, r, &p->off)) p->overflow = 1;
    return at;
}

aim_status aim_model_compile(aim_model *m, const aim_compile_config *config) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_compile_config c;
    if (config) c = *config;
    else (void)aim_compile_config_init(&c);
    if (m->compiled) {
        aim__set_error(m->err, "compile: the model is already compiled");
        return AIM_ERR_INVALID_STATE;
    }
    if (m->n_layers == 0) {
        aim__set_error(m->err, "compile: the model has no layers");
        return AIM_ERR_INVALID_STATE;
    }
    if (c.max_batch == 0) {
        aim__set_error(m->err, "compile: max_batch must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    const size_t B = c.max_batch, nl = m->n_layers;

    /* Parameter offsets, and the largest activation any gradient buffer holds. */
    size_t n_params = 0, max_act = m->in_size;
    for (size_t i = 0; i < nl; i++) {
        aim__layer *L = &m->layers[i];
        size_t cnt;
        if (!aim__add(L->weight_count, L->bias_count, &cnt) || !aim__add(n_params, cnt, &n_params)) {
            aim__set_error(m->err, "compile: parameter count overflows at layer %zu", i);
            return AIM_ERR_OVERFLOW;
        }
        if (L->out_size > max_act) max_act = L->out_size;
    }
    planner p = {0, 0};
    size_t o_params = plan(&p, n_params, 1);
    size_t o_grads = plan(&p, n_params, 1);
    size_t o_input = plan(&p, B, m->in_size);
    size_t o_d0 = plan(&p, B, max_act);
    size_t o_d1 = plan(&p, B, max_act);
    size_t o_igrad = c.input_gradient ? plan(&p, B, m->in_size) : 0;
    size_t max_scratch;
    if (!scratch_for(m, B, &max_scratch)) {
        aim__set_error(m->err, "compile: scratch size overflows for max_batch %zu", B);
        return AIM_ERR_OVERFLOW;
    }
    size_t o_scratch = plan(&p, max_scratch, 1);
    const size_t floats_per_ptr = (sizeof(float *) + sizeof(float) - 1) / sizeof(float);
    const size_t floats_per_size = (sizeof(size_t) + sizeof(float) - 1) / sizeof(float);
    size_t o_ptrs = plan(&p, 4 * nl, floats_per_ptr);
    size_t o_ibatch = plan(&p, nl, floats_per_size);
    /* The per-layer offsets are recomputed below in the same order. */
    size_t first_layer_off = p.off;
    for (size_t i = 0; i < nl; i++) {
        (void)plan(&p, B, m->layers[i].out_size);
        if (m->layers[i].cache_per_sample) (void)plan(&p, B, m->layers[i].cache_per_sample);
        if (m->layers[i].kind == AIM__LAYER_LSTM) (void)plan(&p, B, 4 * m->layers[i].lstm_layers * m->layers[i].lstm_hidden);
    }
    size_t bytes;
    if (p.overflow || !aim__mul(p.off, sizeof(float), &bytes) || bytes > SIZE_MAX - AIM__ALIGN) {
        aim__set_error(m->err, "compile: memory size overflows for max_batch %zu", B);
        return AIM_ERR_OVERFLOW;
    }
    if (B > INT_MAX) {
        aim__set_error(m->err, "compile: max_batch %zu exceeds the BLAS limit", B);
        return AIM_ERR_UNSUPPORTED;
    }
    if (m->pool) {
        /* The pool's arenas first: a failure there leaves the model as it was. */
        size_t need;
        if (!arena_floats(m, n_params, largest_slice(B), &need)) {
            aim__set_error(m->err, "compile: thread-pool arena size overflows");
            return AIM_ERR_OVERFLOW;
        }
        aim_status st = aim__pool_reserve(m->pool, need);
        if (st != AIM_OK) {
            aim__set_error(m->err, "compile: %s", aim_threadpool_last_error(m->pool));
            return st;
        }
    }
    void *raw = NULL;
    float *base = aim__alloc_aligned(&m->alloc, bytes, &raw);
    if (!base) {
        aim__set_error(m->err, "compile: out of memory allocating %zu bytes", bytes);
        return AIM_ERR_OUT_OF_MEMORY;
    }
    /* Touch every page now, so the first training step pays no page faults. */
    memset(base, 0, bytes);

    m->raw = raw;
    m->block_bytes = bytes + AIM__ALIGN;
    m->params = base + o_params;
    m->grads = base + o_grads;
    m->input = base + o_input;
    m->dbuf[0] = base + o_d0;
    m->dbuf[1] = base + o_d1;
    m->input_grad = c.input_gradient ? base + o_igrad : NULL;
    m->scratch = base + o_scratch;
    m->acts = (float **)(void *)(base + o_ptrs);
    m->caches = m->acts + nl;
    m->inits = m->acts + 2 * nl;
    m->active_inits = m->acts + 3 * nl;
    m->init_batch = (size_t *)(void *)(base + o_ibatch);
    size_t off = first_layer_off, pofs = 0;
    planner q = {off, 0};
    for (size_t i = 0; i < nl; i++) {
        aim__layer *L = &m->layers[i];
        L->param_offset = pofs;
        pofs += L->weight_count + L->bias_count;
        m->acts[i] = base + plan(&q, B, L->out_size);
        m->caches[i] = L->cache_per_sample ? base + plan(&q, B, L->cache_per_sample) : NULL;
        m->inits[i] = L->kind == AIM__LAYER_LSTM ? base + plan(&q, B, 4 * L->lstm_layers * L->lstm_hidden) : NULL;
        m->init_batch[i] = 0;
    }
    m->n_params = n_params;
    m->max_batch = B;
    m->input_gradient = c.input_gradient != 0;

    struct aim_rng local, *rng = c.rng;
    if (!rng) {
        aim__rng_init(&local, c.seed);
        rng = &local;
    }
    for (size_t i = 0; i < nl; i++) {
        const aim__layer *L = &m->layers[i];
        if (L->kind == AIM__LAYER_DENSE) aim__dense_init(L, m->params + L->param_offset, rng);
        else if (L->kind == AIM__LAYER_CONV2D) aim__conv2d_init(L, m->params + L->param_offset, rng);
        else if (L->kind == AIM__LAYER_LSTM) aim__lstm_init(L, m->params + L->param_offset, rng);
    }
    m->compiled = 1;
    m->batch = 0;
    m->parts = 1;
    m->err[0] = '\0';
    return AIM_OK;
}

/* Runs the layers on rows [b0, b0 + batch) of a larger batch: `x` is that
 * slice's input, and layer i writes rows b0.. of `acts[i]` (each (B,
 * out_size) for the whole batch) and of `caches[i]`; `caches` is NULL in
 * inference. LSTM initial states are (layers, init_ldb, H) arrays. Reads
 * `layers` and `params` only, so it is safe on a shared model. */
static void run_forward(const aim__layer *layers, size_t nl, const float *params, const float *x,
                        float *const *acts, float *const *caches, const float *const *inits, size_t init_ldb,
                        float *scratch, size_t batch, size_t b0) {
    const float *in = x;
    for (size_t i = 0; i < nl; i++) {
        const aim__layer *L = &layers[i];
        float *cache = caches && caches[i] ? caches[i] + b0 * L->cache_per_sample : NULL;
        float *out = acts[i] + b0 * L->out_size;
        switch (L->kind) {
        case AIM__LAYER_DENSE:
            aim__dense_forward(L, params + L->param_offset, in, out, cache, batch);
            break;
        case AIM__LAYER_ACTIVATION:
            aim__activation_layer_forward(L, in, out, batch);
            break;
        case AIM__LAYER_CONV2D:
            aim__conv2d_forward(L, params + L->param_offset, in, out, cache, scratch, batch);
            break;
        case AIM__LAYER_MAX_POOL2D:
        case AIM__LAYER_AVG_POOL2D:
        case AIM__LAYER_GLOBAL_AVG_POOL2D:
        case AIM__LAYER_FLATTEN:
            aim__pool_forward(L, in, out, batch);
            break;
        case AIM__LAYER_LSTM: {
            const float *init = inits && inits[i] ? inits[i] + b0 * L->lstm_hidden : NULL;
            aim__lstm_forward(L, params + L->param_offset, in, out, cache, scratch, init, init_ldb, batch);
            break;
        }
        }
        in = out;
    }
}

/* ---- splitting a batch over a thread pool --------------------------------
 * A pool runs the whole layer stack on a slice of the batch per thread: the
 * activations, caches and gradients of a sample never depend on another
 * sample's, so each slice needs only its own scratch (worker 0 uses the
 * model's, the others their pool arena) and, in the backward, its own
 * parameter-gradient buffer, summed into the model's afterwards in a fixed
 * order (so a given thread count always gives the same bits). */

/* Multiply-adds of one sample's forward, a rough measure of the work a
 * slice must carry to be worth a thread. */
static double macs_per_sample(const aim__layer *layers, size_t nl) {
    double s = 0;
    for (size_t i = 0; i < nl; i++) {
        const aim__layer *L = &layers[i];
        if (L->kind == AIM__LAYER_CONV2D) s += (double)L->weight_count * (double)(L->out_dims[1] * L->out_dims[2]);
        else if (L->kind == AIM__LAYER_LSTM) s += (double)L->weight_count * (double)L->in_dims[0];
        else s += (double)L->weight_count + (double)L->out_size;
    }
    return s;
}

/* A pool splits a batch only when each slice carries at least the pool's
 * min_work forward multiply-adds (default AIM__DEFAULT_MIN_WORK, 1M, about
 * 10-20 us of GEMM). Below that, splitting costs more than it saves: besides
 * the dispatch (~0.6 us when the workers are awake), a training step zeroes
 * and sums one partial gradient buffer per extra thread, and the optimizer
 * then reads gradients another core wrote. Measured (bench_models, Haswell
 * core, OpenBLAS 1 thread): the seed MLP at batch 32 (0.87M per slice on 2
 * threads) trains in 0.13 ms split against 0.10 ms not; the binary
 * classifier at batch 32 (1.75M per slice) in 0.14 ms against 0.18 ms. */

static size_t parts_for(const aim__layer *layers, size_t nl, const aim_threadpool *pool, size_t batch) {
    if (!pool) return 1;
    size_t parts = aim_threadpool_threads(pool);
    if (parts > batch) parts = batch;
    const double work = macs_per_sample(layers, nl) * (double)batch;
    const double min_work = (double)aim__pool_min_work(pool);
    while (parts > 1 && work / (double)parts < min_work) parts--;
    return parts;
}

typedef struct fwd_job {
    const aim__layer *layers;
    size_t nl, in_size, batch, parts, arena_off;
    const float *params, *x;
    float *const *acts, *const *caches;
    const float *const *inits;
    float *scratch0;
    float **arenas;
} fwd_job;

static void fwd_part(void *ctx, size_t w) {
    const fwd_job *j = ctx;
    if (w >= j->parts) return;
    size_t b0, nb;
    split(j->batch, j->parts, w, &b0, &nb);
    float *scratch = w ? j->arenas[w] + j->arena_off : j->scratch0;
    run_forward(j->layers, j->nl, j->params, j->x + b0 * j->in_size, j->acts, j->caches, j->inits, j->batch,
                scratch, nb, b0);
}

/* Floats of a worker arena a training model needs: a parameter-gradient
 * buffer, then scratch for the largest slice. 0 on overflow. */


static aim_status check_compiled(const aim_model *m, char *err, const char *what) {
    if (!m->compiled) {
        if (err) aim__set_error(err, "%s: the model is not compiled", what);
        return AIM_ERR_INVALID_STATE;
    }
    return AIM_OK;
}

aim_status aim_model_forward(aim_model *m, aim_mode mode, const float *input, size_t batch) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, m->err, "forward");
    if (st != AIM_OK) return st;
    if (!input || batch == 0 || (mode != AIM_MODE_TRAIN && mode != AIM_MODE_INFERENCE)) {
        aim__set_error(m->err, "forward: input must be non-NULL, batch > 0 and mode valid");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (batch > m->max_batch) {
        aim__set_error(m->err, "forward: batch %zu exceeds the compiled max_batch %zu", batch, m->max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    /* An LSTM's initial state applies only to the batch size it was set for. */
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->init_batch[i] && m->init_batch[i] != batch) {
            aim__set_error(m->err, "forward: layer %zu (lstm) has an initial state for batch %zu, not %zu", i,
                           m->init_batch[i], batch);
            return AIM_ERR_SHAPE_MISMATCH;
        }
    const int train = mode == AIM_MODE_TRAIN;
    /* A training pass keeps its own copy of the input: the backward of the
     * first layer needs it, and the caller may reuse its buffer meanwhile. */
    const float *x = input;
    if (train) {
        memcpy(m->input, input, batch * m->in_size * sizeof(float));
        x = m->input;
    }
    for (size_t i = 0; i < m->n_layers; i++) {
        m->active_inits[i] = NULL;
        if (!m->init_batch[i]) continue;
        const aim__layer *L = &m->layers[i];
        const size_t n = 2 * L->lstm_layers * L->lstm_hidden * batch;
        float *used = m->inits[i] + 2 * L->lstm_layers * L->lstm_hidden * m->max_batch;
        memcpy(used, m->inits[i], n * sizeof(float));
        m->active_inits[i] = used;
    }
    fwd_job job = {m->layers, m->n_layers, m->in_size, batch, 1, 0, m->params, x, m->acts,
                   train ? m->caches : NULL, (const float *const *)m->active_inits, m->scratch, NULL};
    float *arenas[AIM__MAX_THREADS];
    size_t parts = parts_for(m->layers, m->n_layers, m->pool, batch);
    if (parts > 1) {
        size_t have = aim__pool_lock(m->pool, arenas), need = 0;
        (void)aim__round_floats(m->n_params, &job.arena_off); /* sized at compile: no overflow */
        if (!arena_floats(m, m->n_params, batch / parts + (batch % parts != 0), &need) || need > have) parts = 1;
        job.parts = parts;
        job.arenas = arenas;
        aim__pool_run_locked(m->pool, parts, fwd_part, &job);
        aim__pool_unlock(m->pool);
    } else {
        fwd_part(&job, 0);
    }
    m->parts = parts;
    m->batch = batch;
    m->trained_forward = train;
    m->loss_ready = 0;
    m->input_grad_ready = 0;
    return AIM_OK;
}

size_t aim_model_layer_count(const aim_model *m) { return m ? m->n_layers : 0; }

size_t aim_model_input_size(const aim_model *m) { return m ? m->in_size : 0; }

size_t aim_model_output_size(const aim_model *m) {
    return (m && m->n_layers) ? m->layers[m->n_layers - 1].out_size : 0;
}

aim_status aim_model_output(const aim_model *m, const float **output, size_t *count) {
    if (!m || !output) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled || m->batch == 0) return AIM_ERR_INVALID_STATE;
    *output = m->acts[m->n_layers - 1];
    if (count) *count = m->batch * aim_model_output_size(m);
    return AIM_OK;
}

static aim_status check_loss_call(aim_model *m, const void *targets, size_t batch, const float *loss_out,
                                  const char *what) {
    aim_status st = check_compiled(m, m->err, what);
    if (st != AIM_OK) return st;
    if (!targets || !loss_out) {
        aim__set_error(m->err, "%s: targets and loss_out must be non-NULL", what);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (m->batch == 0) {
        aim__set_error(m->err, "%s: no forward pass to take the loss of", what);
        return AIM_ERR_INVALID_STATE;
    }
    if (batch != m->batch) {
        aim__set_error(m->err, "%s: batch %zu differs from the last forward's batch %zu", what, batch, m->batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    return AIM_OK;
}

aim_status aim_model_loss(aim_model *m, aim_loss_kind kind, const float *targets, size_t batch, float *loss_out) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_loss_call(m, targets, batch, loss_out, "loss");
    if (st != AIM_OK) return st;
    if (!aim__loss_kind_valid(kind)) {
        aim__set_error(m->err, "loss: unknown loss kind %d", (int)kind);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    m->loss_ready = 0;
    st = aim__loss(kind, m->acts[m->n_layers - 1], targets, batch, aim_model_output_size(m), loss_out, m->dbuf[0]);
    if (st == AIM_ERR_NON_FINITE) aim__set_error(m->err, "loss: the loss is not finite (NaN or infinity)");
    else if (st != AIM_OK) aim__set_error(m->err, "loss: a BCE prediction lies outside [0, 1]");
    else m->loss_ready = 1;
    return st;
}

aim_status aim_model_loss_sparse(aim_model *m, const int32_t *labels, size_t batch, float *loss_out) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_loss_call(m, labels, batch, loss_out, "loss_sparse");
    if (st != AIM_OK) return st;
    m->loss_ready = 0;
    st = aim__loss_sparse(m->acts[m->n_layers - 1], labels, batch, aim_model_output_size(m), loss_out, m->dbuf[0]);
    if (st == AIM_ERR_NON_FINITE) aim__set_error(m->err, "loss_sparse: the loss is not finite (NaN or infinity)");
    else if (st != AIM_OK)
        aim__set_error(m->err, "loss_sparse: a label lies outside [0, %zu)", aim_model_output_size(m));
    else m->loss_ready = 1;
    return st;
}

/* The backward of layer k on rows [b0, b0 + nb) of the last training
 * forward's batch, adding parameter gradients into `dparams` (n_params
 * floats). dY is in dbuf[cur], dX goes to dbuf[1 - cur]: (B, size) arrays for
 * the whole batch, packed by each layer's own size. Since a slice's rows sit
 * at different offsets for different layers, slices must not run different
 * layers at once: the pooled backward runs one layer per job. */
static void backward_layer(const aim_model *m, size_t k, int cur, float *dparams, float *scratch, size_t b0,
                           size_t nb) {
    const aim__layer *L = &m->layers[k];
    const float *x = (k ? m->acts[k - 1] : m->input) + b0 * L->in_size;
    const float *y = m->acts[k] + b0 * L->out_size;
    const float *cache = m->caches[k] ? m->caches[k] + b0 * L->cache_per_sample : NULL;
    float *dy = m->dbuf[cur] + b0 * L->out_size;
    float *dxb = k ? m->dbuf[1 - cur] : m->input_grad; /* NULL: nobody needs dX of the input */
    float *dx = dxb ? dxb + b0 * L->in_size : NULL;
    switch (L->kind) {
    case AIM__LAYER_DENSE:
        aim__dense_backward(L, m->params + L->param_offset, dparams + L->param_offset, x, y, cache, dy, dx, nb);
        break;
    case AIM__LAYER_ACTIVATION:
        if (dx) aim__activation_layer_backward(L, x, y, dy, dx, nb);
        break;
    case AIM__LAYER_CONV2D:
        aim__conv2d_backward(L, m->params + L->param_offset, dparams + L->param_offset, x, y, cache, dy, dx, scratch,
                             nb);
        break;
    case AIM__LAYER_MAX_POOL2D:
    case AIM__LAYER_AVG_POOL2D:
    case AIM__LAYER_GLOBAL_AVG_POOL2D:
    case AIM__LAYER_FLATTEN:
        if (dx) aim__pool_backward(L, x, dy, dx, nb);
        break;
    case AIM__LAYER_LSTM: {
        const float *init = m->active_inits[k] ? m->active_inits[k] + b0 * L->lstm_hidden : NULL;
        aim__lstm_backward(L, m->params + L->param_offset, dparams + L->param_offset, x,
                           m->caches[k] + b0 * L->cache_per_sample, dy, dx, scratch, init, m->batch, nb);
        break;
    }
    }
}

typedef struct bwd_job {
    const aim_model *m;
    float **arenas;
    size_t arena_off, parts, layer;
    int cur;
} bwd_job;

static void bwd_part(void *ctx, size_t w) {
    const bwd_job *j = ctx;
    if (w >= j->parts) return;
    size_t b0, nb;
    split(j->m->batch, j->parts, w, &b0, &nb);
    if (w == 0) {
        backward_layer(j->m, j->layer, j->cur, j->m->grads, j->m->scratch, b0, nb);
    } else {
        if (j->layer == j->m->n_layers - 1) memset(j->arenas[w], 0, j->m->n_params * sizeof(float));
        backward_layer(j->m, j->layer, j->cur, j->arenas[w], j->arenas[w] + j->arena_off, b0, nb);
    }
}

/* grads += the other slices' partial gradients, each worker summing one
 * range of parameters, always in the order of the slices. */
static void reduce_part(void *ctx, size_t w) {
    const bwd_job *j = ctx;
    if (w >= j->parts) return;
    size_t i0, n;
    split(j->m->n_params, j->parts, w, &i0, &n);
    float *g = j->m->grads + i0;
    for (size_t s = 1; s < j->parts; s++) {
        const float *p = j->arenas[s] + i0;
        for (size_t i = 0; i < n; i++) g[i] += p[i];
    }
}

aim_status aim_model_backward(aim_model *m, const float *output_grad) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, m->err, "backward");
    if (st != AIM_OK) return st;
    if (!m->trained_forward) {
        aim__set_error(m->err, "backward: needs a forward pass in AIM_MODE_TRAIN first");
        return AIM_ERR_INVALID_STATE;
    }
    if (!output_grad && !m->loss_ready) {
        aim__set_error(m->err, "backward: no output gradient given and no loss computed since the forward");
        return AIM_ERR_INVALID_STATE;
    }
    /* The kernels overwrite dy, so a caller's gradient is copied first. */
    if (output_grad) memcpy(m->dbuf[0], output_grad, m->batch * aim_model_output_size(m) * sizeof(float));
    if (m->parts > 1) {
        /* The same slices as the forward: an LSTM cache is laid out per slice. The
         * arenas were checked by that forward, and set_threadpool in between
         * would have required a new forward. */
        float *arenas[AIM__MAX_THREADS];
        bwd_job job = {m, arenas, 0, m->parts, 0, 0};
        (void)aim__round_floats(m->n_params, &job.arena_off);
        (void)aim__pool_lock(m->pool, arenas);
        for (size_t k = m->n_layers; k-- > 0;) {
            job.layer = k;
            aim__pool_run_locked(m->pool, m->parts, bwd_part, &job);
            job.cur = 1 - job.cur;
        }
        aim__pool_run_locked(m->pool, m->parts, reduce_part, &job);
        aim__pool_unlock(m->pool);
    } else {
        int cur = 0;
        for (size_t k = m->n_layers; k-- > 0; cur = 1 - cur) backward_layer(m, k, cur, m->grads, m->scratch, 0, m->batch);
    }
    m->loss_ready = 0;
    m->input_grad_ready = m->input_grad != NULL;
    return AIM_OK;
}

aim_status aim_model_input_gradient(const aim_model *m, const float **grad) {
    if (!m || !grad) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled || !m->input_grad || !m->input_grad_ready) return AIM_ERR_INVALID_STATE;
    *grad = m->input_grad;
    return AIM_OK;
}

aim_status aim_model_zero_grad(aim_model *m) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, m->err, "zero_grad");
    if (st != AIM_OK) return st;
    memset(m->grads, 0, m->n_params * sizeof(float));
    return AIM_OK;
}

aim_status aim__model_flat(aim_model *m, float **params, float **grads, size_t *count) {
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    *params = m->params;
    *grads = m->grads;
    *count = m->n_params;
    return AIM_OK;
}

void aim__model_get_view(const aim_model *m, aim__model_view *v) {
    v->in_rank = m->in_rank;
    v->in_dims = m->in_dims;
    v->layers = m->layers;
    v->n_layers = m->n_layers;
    v->compiled = m->compiled;
    v->max_batch = m->max_batch;
    v->input_gradient = m->input_gradient;
    v->params = m->params;
    v->n_params = m->n_params;
}

aim_status aim_model_parameters(aim_model *m, float **params, size_t *count) {
    if (!m || !params || !count) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, m->err, "parameters");
    if (st != AIM_OK) return st;
    *params = m->params;
    *count = m->n_params;
    return AIM_OK;
}

aim_status aim_model_gradients(aim_model *m, float **grads, size_t *count) {
    if (!m || !grads || !count) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, m->err, "gradients");
    if (st != AIM_OK) return st;
    *grads = m->grads;
    *count = m->n_params;
    return AIM_OK;
}

aim_status aim_model_layer_parameters(const aim_model *m, size_t layer, size_t *offset, size_t *weight_count,
                                      size_t *bias_count) {
    if (!m || !offset || !weight_count || !bias_count) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    if (layer >= m->n_layers) return AIM_ERR_INVALID_ARGUMENT;
    *offset = m->layers[layer].param_offset;
    *weight_count = m->layers[layer].weight_count;
    *bias_count = m->layers[layer].bias_count;
    return AIM_OK;
}

aim_status aim_model_memory_size(const aim_model *m, size_t *bytes) {
    if (!m || !bytes) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    *bytes = sizeof *m + m->cap_layers * sizeof *m->layers + m->block_bytes;
    return AIM_OK;
}


/* Sizes the pool's arenas for this compiled model. */
static aim_status reserve_for(aim_model *m, aim_threadpool *pool) {
    size_t need;
    if (!arena_floats(m, m->n_params, largest_slice(m->max_batch), &need)) {
        aim__set_error(m->err, "set_threadpool: arena size overflows");
        return AIM_ERR_OVERFLOW;
    }
    aim_status st = aim__pool_reserve(pool, need);
    if (st != AIM_OK) aim__set_error(m->err, "set_threadpool: %s", aim_threadpool_last_error(pool));
    return st;
}

aim_status aim_model_set_threadpool(aim_model *m, aim_threadpool *pool) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    if (pool && m->compiled) {
        aim_status st = reserve_for(m, pool);
        if (st != AIM_OK) return st;
    }
    if (pool != m->pool) {
        /* A training cache is laid out per slice: a new split needs a new forward. */
        m->trained_forward = 0;
        m->loss_ready = 0;
    }
    m->pool = pool;
    return AIM_OK;
}

/* ---- inference workspaces ------------------------------------------------ */

struct aim_workspace {
    aim_allocator alloc;
    void *raw;
    size_t max_batch;
    size_t act_floats;   /* floats per sample each ping-pong buffer holds */
    size_t scratch_floats;
    float *buf[2];
    float *scratch;
    aim_threadpool *pool;
    char err[AIM__ERR_CAP];
};

/* Floats per sample an inference pass needs in each ping-pong buffer. */
static size_t inference_floats(const aim_model *m) {
    size_t mx = 1;
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->layers[i].out_size > mx) mx = m->layers[i].out_size;
    return mx;
}

/* Layout: two ping-pong buffers of `*per` floats, then the scratch. */
static aim_status workspace_bytes(const aim_model *m, size_t max_batch, size_t *bytes, size_t *per) {
    size_t n, sc, scratch;
    if (!aim__mul(max_batch, inference_floats(m), &n) || !aim__round_floats(n, per) || !aim__mul(*per, 2, &n) ||
        !scratch_for(m, max_batch, &scratch) || !aim__round_floats(scratch, &sc) || !aim__add(n, sc, &n) ||
        !aim__mul(n, sizeof(float), bytes) || *bytes > SIZE_MAX - AIM__ALIGN)
        return AIM_ERR_OVERFLOW;
    return AIM_OK;
}

aim_status aim_workspace_size(const aim_model *m, size_t max_batch, size_t *bytes) {
    size_t b, per;
    if (!m || !bytes || max_batch == 0) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    aim_status st = workspace_bytes(m, max_batch, &b, &per);
    if (st != AIM_OK) return st;
    *bytes = b + AIM__ALIGN + sizeof(struct aim_workspace);
    return AIM_OK;
}

aim_status aim_workspace_create(const aim_model *m, const aim_allocator *allocator, size_t max_batch,
                                aim_workspace **out) {
    aim_allocator a;
    size_t bytes, per;
    if (!m || !out || max_batch == 0) return AIM_ERR_INVALID_ARGUMENT;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    aim_status st = workspace_bytes(m, max_batch, &bytes, &per);
    if (st != AIM_OK) return st;
    if (max_batch > INT_MAX) return AIM_ERR_UNSUPPORTED;
    aim_workspace *w = aim__alloc(&a, sizeof *w);
    if (!w) return AIM_ERR_OUT_OF_MEMORY;
    memset(w, 0, sizeof *w);
    w->alloc = a;
    float *base = aim__alloc_aligned(&a, bytes, &w->raw);
    if (!base) {
        aim__free(&a, w);
        return AIM_ERR_OUT_OF_MEMORY;
    }
    memset(base, 0, bytes);
    w->max_batch = max_batch;
    w->act_floats = inference_floats(m);
    (void)scratch_for(m, max_batch, &w->scratch_floats); /* cannot overflow: workspace_bytes passed */
    w->buf[0] = base;
    w->buf[1] = base + per;
    w->scratch = base + 2 * per;
    *out = w;
    return AIM_OK;
}

void aim_workspace_free(aim_workspace *w) {
    if (!w) return;
    aim_allocator a = w->alloc;
    aim__free(&a, w->raw);
    aim__free(&a, w);
}

const char *aim_workspace_last_error(const aim_workspace *w) { return w ? w->err : ""; }

aim_status aim_workspace_set_threadpool(aim_workspace *w, const aim_model *m, aim_threadpool *pool) {
    if (!w || !m) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(w->err, "set_threadpool: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    if (pool) {
        size_t need;
        if (!scratch_for(m, largest_slice(w->max_batch), &need)) {
            aim__set_error(w->err, "set_threadpool: scratch size overflows");
            return AIM_ERR_OVERFLOW;
        }
        aim_status st = aim__pool_reserve(pool, need);
        if (st != AIM_OK) {
            aim__set_error(w->err, "set_threadpool: %s", aim_threadpool_last_error(pool));
            return st;
        }
    }
    w->pool = pool;
    return AIM_OK;
}

/* One slice of a predict: rows [b0, b0 + nb). Layers alternate between the
 * workspace's two buffers and the last writes straight into the caller's
 * output. In the buffers each slice owns rows b0.. at the buffer's own
 * per-sample capacity, not at each layer's size, so slices never overlap
 * whichever layer each is running. Output pointers are listed CHUNK layers
 * at a time on the stack, so any depth works without allocating. */
typedef struct predict_job {
    const aim_model *m;
    const aim_workspace *w;
    const float *input;
    float *output;
    size_t batch, parts;
    float **arenas;
} predict_job;

static void predict_part(void *ctx, size_t wi) {
    const predict_job *j = ctx;
    if (wi >= j->parts) return;
    enum { CHUNK = 32 };
    float *acts[CHUNK];
    size_t b0, nb;
    split(j->batch, j->parts, wi, &b0, &nb);
    const aim_model *m = j->m;
    const size_t nl = m->n_layers;
    float *scratch = wi ? j->arenas[wi] : j->w->scratch;
    const float *in = j->input + b0 * m->in_size;
    for (size_t start = 0; start < nl; start += CHUNK) {
        size_t cnt = nl - start < CHUNK ? nl - start : CHUNK;
        for (size_t k = 0; k < cnt; k++) {
            size_t i = start + k;
            acts[k] = i == nl - 1 ? j->output + b0 * m->layers[i].out_size : j->w->buf[i % 2] + b0 * j->w->act_floats;
        }
        /* the pointers already point at this slice's rows: b0 = 0 below */
        run_forward(m->layers + start, cnt, m->params, in, acts, NULL, NULL, nb, scratch, nb, 0);
        in = acts[cnt - 1];
    }
}

aim_status aim_model_predict(const aim_model *m, aim_workspace *w, const float *input, size_t batch, float *output) {
    if (!m || !w) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(w->err, "predict: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    if (!input || !output || batch == 0) {
        aim__set_error(w->err, "predict: input and output must be non-NULL and batch > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (batch > w->max_batch) {
        aim__set_error(w->err, "predict: batch %zu exceeds the workspace's max_batch %zu", batch, w->max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    size_t need_scratch = 0;
    (void)scratch_for(m, batch, &need_scratch); /* batch <= max_batch: no overflow */
    if (inference_floats(m) > w->act_floats || need_scratch > w->scratch_floats) {
        aim__set_error(w->err, "predict: the workspace was made for a smaller model (%zu < %zu floats per sample)",
                       w->act_floats, inference_floats(m));
        return AIM_ERR_SHAPE_MISMATCH;
    }
    float *arenas[AIM__MAX_THREADS];
    size_t parts = parts_for(m->layers, m->n_layers, w->pool, batch);
    if (parts > 1) {
        /* The arenas were sized by aim_workspace_set_threadpool and never
         * shrink; a pool since reserved for a smaller model is the same or larger. */
        size_t have = aim__pool_lock(w->pool, arenas), need = 0;
        if (!scratch_for(m, batch / parts + (batch % parts != 0), &need) || need > have) {
            aim__pool_unlock(w->pool);
            parts = 1;
        }
    }
    predict_job job = {m, w, input, output, batch, parts, arenas};
    if (parts > 1) {
        aim__pool_run_locked(w->pool, parts, predict_part, &job);
        aim__pool_unlock(w->pool);
    } else {
        predict_part(&job, 0);
    }
    return AIM_OK;
}
