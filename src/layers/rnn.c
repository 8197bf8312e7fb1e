/*
 * What the two recurrent kinds share (src/layers/lstm.c, src/layers/gru.c):
 * the public config and the builder that picks the kind, and the validation
 * and sizes of a stack, batch first, in PyTorch's layout:
 *   X (B, T, F) -> Y (B, T, D·H) for every step, or (B, D·H) for the last,
 * D = 2 with a reverse direction per layer (bidirectional), else 1.
 * Per layer l and direction d, in PyTorch's named_parameters order (layer 0
 * forward, layer 0 reverse, layer 1 forward, ...):
 *   W_ih (G·H, in_l), W_hh (G·H, H), b_ih (G·H), b_hh (G·H); in_0 = F, in_l = D·H
 * with G = 4 gates for the LSTM, 3 for the GRU. The node's weight_count
 * covers all of them (bias_count is 0), since PyTorch interleaves weights and
 * biases per layer and direction.
 * https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html
 * https://pytorch.org/docs/stable/generated/torch.nn.GRU.html
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

aim_status aim_rnn_config_init(aim_rnn_config *c, size_t hidden, size_t layers) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->hidden = hidden;
    c->layers = layers;
    c->return_sequences = 0;
    c->bidirectional = 0;
    c->init = AIM_INIT_PYTORCH;
    return AIM_OK;
}

/* An unknown aim_rnn_kind never becomes a node: this table's setup refuses
 * it, so the model's message names the layer it would have been. */
static aim_status refuse_kind(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)in, (void)n_in;
    int kind;
    memcpy(&kind, L->cfg, sizeof kind);
    snprintf(msg, AIM__ERR_CAP, "unknown recurrent kind %d (AIM_RNN_LSTM = 0, AIM_RNN_GRU = 1)", kind);
    return AIM_ERR_INVALID_ARGUMENT;
}

static const aim__layer_ops unknown_rnn_ops = {
    .name = "rnn",
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = refuse_kind,
};

aim_status aim_model_add_rnn(aim_model *m, aim_rnn_kind kind, const aim_rnn_config *c) {
    const aim__layer_ops *ops = kind == AIM_RNN_LSTM ? &aim__lstm_ops : kind == AIM_RNN_GRU ? &aim__gru_ops : NULL;
    if (!ops) {
        int k = (int)kind;
        return aim__model_add_node(m, &unknown_rnn_ops, &k, sizeof k, NULL, 0);
    }
    aim__lstm_cfg k; /* aim__gru_cfg is the same struct */
    memset(&k, 0, sizeof k);
    if (c) {
        k.hidden = c->hidden;
        k.layers = c->layers;
        k.sequences = c->return_sequences != 0;
        k.bidirectional = c->bidirectional != 0;
        k.init = c->init;
    }
    return aim__model_add_node(m, ops, c ? &k : NULL, sizeof k, NULL, 0);
}

aim_status aim__rnn_setup(aim__layer *L, const aim__shape *in, size_t gates, size_t cache_per_unit, size_t states,
                          char *msg) {
    const aim__lstm_cfg *c = AIM__CFG(aim__lstm_cfg, L);
    if (c->hidden == 0) {
        snprintf(msg, AIM__ERR_CAP, "hidden must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->layers == 0 || c->layers > AIM__LSTM_MAX_LAYERS) {
        snprintf(msg, AIM__ERR_CAP, "layers %zu: 1 to %d stacked layers are supported", c->layers,
                 AIM__LSTM_MAX_LAYERS);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!aim__init_valid(c->init)) {
        snprintf(msg, AIM__ERR_CAP, "unknown init %d", (int)c->init);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (in[0].rank != 2) {
        snprintf(msg, AIM__ERR_CAP, "input must be one time x features sequence (rank 2), got rank %zu", in[0].rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t T = in[0].dims[0], F = in[0].dims[1], H = c->hidden, D = c->bidirectional ? 2 : 1;
    /* params = Σ over layers and directions of G·H (in_l + H) + 2 G·H;
     * cache = layers · D · T · H · cache_per_unit; the scratch either kind
     * needs is below bound = T (G + 2D) H + 2 T max(F, D·H) + 4 H. */
    size_t gh, dh, per, total = 0, cache, out, state, bound, tmp, mx;
    int ok = aim__mul(H, gates, &gh) && aim__mul(D, H, &dh);
    for (size_t l = 0; ok && l < c->layers; l++)
        ok = aim__add(l == 0 ? F : dh, H, &per) && aim__mul(per, gh, &per) && aim__add(per, 2 * gh, &per) &&
             aim__mul(per, D, &per) && aim__add(total, per, &total);
    mx = F > dh ? F : dh;
    ok = ok && total <= SIZE_MAX / sizeof(float) && aim__mul(T, dh, &tmp) && aim__mul(tmp, cache_per_unit, &cache) &&
         aim__mul(cache, c->layers, &cache) && aim__mul(T, dh, &out) && aim__mul(states * c->layers, dh, &state) &&
         aim__add(gh, 2 * dh, &bound) && aim__mul(bound, T, &bound) && aim__mul(T, mx, &tmp) &&
         aim__mul(tmp, 2, &tmp) && aim__add(bound, tmp, &bound) && aim__add(bound, 4 * H, &bound);
    if (!ok) {
        snprintf(msg, AIM__ERR_CAP, "hidden %zu, %zu layers over %zu steps of %zu features: the parameter or memory size overflows",
                 H, c->layers, T, F);
        return AIM_ERR_OVERFLOW;
    }
    /* The GEMMs' sizes and leading dimensions: G·H gate columns, rows of a
     * step T·G·H apart, output rows T·D·H apart, F or D·H input features. */
    if (gh > INT_MAX || F > INT_MAX || T > INT_MAX / gh || T > INT_MAX / dh) {
        snprintf(msg, AIM__ERR_CAP, "hidden %zu over %zu steps of %zu features: a GEMM dimension (%zu gate columns, %zu per sample) exceeds the BLAS limit",
                 H, T, F, gh, T > SIZE_MAX / gh ? SIZE_MAX : T * gh);
        return AIM_ERR_UNSUPPORTED;
    }
    L->weight_count = total;
    L->bias_count = 0;
    if (c->sequences) {
        L->out_rank = 2;
        L->out_dims[0] = T;
        L->out_dims[1] = dh;
        L->out_size = out;
    } else {
        L->out_rank = 1;
        L->out_dims[0] = dh;
        L->out_size = dh;
    }
    L->cache_per_sample = cache;
    L->state_per_sample = state;
    return AIM_OK;
}

void aim__rnn_write(const aim__layer *L, aim__writer *w) {
    const aim__lstm_cfg *c = AIM__CFG(aim__lstm_cfg, L);
    aim__put_u64(w, c->hidden);
    aim__put_u64(w, c->layers);
    aim__put_u32(w, (uint32_t)c->sequences);
    aim__put_u32(w, (uint32_t)c->init);
    aim__put_u32(w, (uint32_t)c->bidirectional);
}

void aim__rnn_read(aim__reader *r, aim__layer *L) {
    aim__lstm_cfg *c = AIM__CFG_MUT(aim__lstm_cfg, L);
    c->hidden = aim__get_size(r);
    c->layers = aim__get_size(r);
    c->sequences = aim__get_flag(r);
    c->init = (aim_init)aim__get_u32(r);
    c->bidirectional = r->version >= 3 ? aim__get_flag(r) : 0; /* versions 1 and 2 had no reverse direction */
}

double aim__rnn_macs(const aim__layer *L) { return (double)L->weight_count * (double)L->in_dims[0]; }

const float *aim__rnn_state_at(const aim__layer *L, const float *state, size_t b0) {
    return state ? state + b0 * AIM__CFG(aim__lstm_cfg, L)->hidden : NULL;
}
