/*
 * A stack of LSTM layers, PyTorch nn.LSTM semantics and layout (batch first):
 *   X (B, T, F) -> H (B, T, D·Hd) for every step, or (B, D·Hd) for the last
 * one; D = 2 with a reverse direction per layer (bidirectional), else 1.
 * Parameters of layer l and direction d, in this order (as PyTorch's
 * state_dict: layer 0 forward, layer 0 reverse, layer 1 forward, ...):
 *   W_ih (4Hd, in_l), W_hh (4Hd, Hd), b_ih (4Hd), b_hh (4Hd); in_0 = F, in_l = D·Hd
 * Gates in PyTorch's order i, f, g, o:
 *   a_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh
 *   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
 *   c_t = f ⊙ c_{t-1} + i ⊙ g
 *   h_t = o ⊙ tanh(c_t)
 * The reverse direction runs the same cell from t = T-1 down to 0 (its
 * "previous" step is t+1); a layer's output at step t is [forward h_t,
 * reverse h_t], and the last-step output [forward h_{T-1}, reverse h_0]
 * (PyTorch's cat(h_n[-2], h_n[-1])).
 * https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html
 *
 * Forward: the input projection of all steps is ONE GEMM (B·T rows); then one
 * recurrent GEMM per step accumulates into the rows of that step (ldc = T·4Hd).
 * Backward: full backpropagation through time, adding into the flat gradients.
 * The shared sizes and checks are in src/layers/rnn.c.
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fastmath.h"
#include "internal.h"

#define BI(n) AIM__BLAS_INT(n)
#define CFG(L) AIM__CFG(aim__lstm_cfg, L)
_Static_assert(sizeof(aim__lstm_cfg) <= AIM__LAYER_CFG_BYTES, "lstm config too large");

/* Directions per layer. */
static size_t dirs(const aim__layer *L) { return CFG(L)->bidirectional ? 2 : 1; }

/* Input features of layer l. */
static size_t in_of(const aim__layer *L, size_t l) { return l == 0 ? L->in_dims[1] : dirs(L) * CFG(L)->hidden; }

/* Parameters of one direction of layer l. */
static size_t sub_params(const aim__layer *L, size_t l) {
    const size_t H = CFG(L)->hidden;
    return 4 * H * in_of(L, l) + 4 * H * H + 8 * H;
}

/* Cache per sample: for each layer, per direction gates (T, 4H) and cells
 * (T, H), then the layer's outputs (T, D·H). */
size_t aim__lstm_cache_per_sample(const aim__layer *L) {
    return CFG(L)->layers * L->in_dims[0] * 6 * dirs(L) * CFG(L)->hidden;
}

/* Scratch per sample: the larger of inference (gates of one direction, two
 * output sequences, one cell state) and backward (dh, dc, a zero row, two
 * input-gradient sequences). Below aim__rnn_setup's bound. */
size_t aim__lstm_scratch_per_sample(const aim__layer *L) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, F = L->in_dims[1], DH = dirs(L) * H;
    const size_t mx = F > DH ? F : DH;
    const size_t inf = T * 4 * H + 2 * T * DH + H;
    const size_t bwd = 3 * H + 2 * T * mx; /* dh, dc, a zero row, two sequences */
    return inf > bwd ? inf : bwd;
}

/* One step of one sample, in simple loops the compiler vectorizes: activates
 * the gates in place, then c_t (which may be the same row as c_{t-1}) and h_t. */
AIM__HOT static void cell_forward(float *a, const float *cp, float *c, float *h, size_t H) {
    float *ai = a, *ag = a + 2 * H, *ao = a + 3 * H, *af = a + H;
    for (size_t j = 0; j < 2 * H; j++) ai[j] = aim__sigmoid(ai[j]); /* i = σ(a_i), f = σ(a_f) */
    for (size_t j = 0; j < H; j++) ag[j] = aim__tanh(ag[j]);        /* g = tanh(a_g) */
    for (size_t j = 0; j < H; j++) ao[j] = aim__sigmoid(ao[j]);     /* o = σ(a_o) */
    if (cp)
        for (size_t j = 0; j < H; j++) c[j] = af[j] * cp[j] + ai[j] * ag[j]; /* c_t = f c_{t-1} + i g */
    else
        for (size_t j = 0; j < H; j++) c[j] = ai[j] * ag[j];
    for (size_t j = 0; j < H; j++) h[j] = ao[j] * aim__tanh(c[j]); /* h_t = o tanh(c_t) */
}

/* The backward of one step of one sample: turns the activated gates `a` into
 * d loss / d pre-activations, in place, and carries dc back one step. The
 * pointers do not overlap (a zero row stands in for an absent c_{t-1} or
 * output gradient), which lets the loop vectorize. */
AIM__HOT static void cell_backward(float *restrict a, const float *restrict c, const float *restrict cp,
                          const float *restrict up, const float *restrict dh, float *restrict dc, size_t H) {
    for (size_t j = 0; j < H; j++) {
        float ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j];
        float tc = aim__tanh(c[j]);
        float dhj = dh[j] + up[j];                          /* dh_t = dH_t + dh from t+1 */
        float dcj = dc[j] + dhj * og * (1.0f - tc * tc);    /* dc_t += dh_t o (1 - tanh² c_t) */
        a[j] = dcj * gg * ig * (1.0f - ig);                 /* da_i = dc g · σ' */
        a[H + j] = dcj * cp[j] * fg * (1.0f - fg);          /* da_f = dc c_{t-1} · σ' */
        a[2 * H + j] = dcj * ig * (1.0f - gg * gg);         /* da_g = dc i · tanh' */
        a[3 * H + j] = dhj * tc * og * (1.0f - og);         /* da_o = dh tanh(c_t) · σ' */
        dc[j] = dcj * fg;                                   /* dc_{t-1} = dc_t f */
    }
}

/* One direction of one layer, forward. x (B, T, in); writes gates (B, T, 4H)
 * activated, cells (B, T, H) or only the running cell when `cells_all` is 0
 * (then `c` holds (B, H)), and h: step t of sample b at h + (b·T + t)·ldh
 * (ldh = D·H: the directions share the output rows). `rev` runs t = T-1 .. 0. */
static void sub_forward(size_t B, size_t T, size_t in, size_t H, int rev, size_t ldh, const float *p,
                        const float *x, float *gates, float *c, int cells_all, float *h, const float *h0,
                        const float *c0) {
    const float *Wih = p, *Whh = p + 4 * H * in, *bih = Whh + 4 * H * H, *bhh = bih + 4 * H;
    const size_t G = 4 * H;
    /* A = X·W_ihᵀ for all B·T rows at once; then + b_ih + b_hh */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(B * T), BI(G), BI(in), 1.0f, x, BI(in), Wih, BI(in),
                0.0f, gates, BI(G));
    for (size_t r = 0; r < B * T; r++) {
        float *a = gates + r * G;
        for (size_t k = 0; k < G; k++) a[k] += bih[k] + bhh[k];
    }
    for (size_t s = 0; s < T; s++) {
        const size_t t = rev ? T - 1 - s : s, tp = rev ? t + 1 : t - 1; /* tp: the previous step, for s > 0 */
        /* A_t += h_{tp}·W_hhᵀ; rows of step t are T·4H apart, h rows T·ldh apart
         * (the initial state h0 is (B, H), zero when not given). */
        if (s > 0 && B == 1)
            /* one sample: a matrix-vector product, which OpenBLAS runs faster than a 1-row GEMM */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, BI(G), BI(H), 1.0f, Whh, BI(H), h + tp * ldh, 1, 1.0f,
                        gates + t * G, 1);
        else if (s > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(B), BI(G), BI(H), 1.0f, h + tp * ldh,
                        BI(T * ldh), Whh, BI(H), 1.0f, gates + t * G, BI(T * G));
        else if (h0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(B), BI(G), BI(H), 1.0f, h0, BI(H), Whh, BI(H),
                        1.0f, gates + t * G, BI(T * G));
        for (size_t b = 0; b < B; b++) {
            float *a = gates + (b * T + t) * G;
            float *ht = h + (b * T + t) * ldh;
            float *ct = cells_all ? c + (b * T + t) * H : c + b * H;
            const float *cp = s ? (cells_all ? c + (b * T + tp) * H : ct) : (c0 ? c0 + b * H : NULL);
            cell_forward(a, cp, ct, ht, H);
        }
    }
}

/* Copies what the layer outputs: the whole top sequence (B, T, D·H), or per
 * sample the forward direction's last step and the reverse direction's first. */
static void emit(const aim__layer *L, size_t B, const float *htop, float *y) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L), DH = D * H;
    if (CFG(L)->sequences) {
        memcpy(y, htop, B * T * DH * sizeof(float));
    } else {
        for (size_t b = 0; b < B; b++) {
            memcpy(y + b * DH, htop + (b * T + T - 1) * DH, H * sizeof(float));
            if (D == 2) memcpy(y + b * DH + H, htop + b * T * DH + H, H * sizeof(float));
        }
    }
}

/* Offsets of layer l's pieces in the training cache of B samples: per
 * direction d the gates (B, T, 4H) and the cells (B, T, H), then the
 * layer's outputs (B, T, D·H). */
static size_t at_gates(const aim__layer *L, size_t B, size_t l, size_t d) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L);
    return l * B * T * 6 * D * H + d * B * T * 4 * H;
}
static size_t at_cells(const aim__layer *L, size_t B, size_t l, size_t d) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L);
    return l * B * T * 6 * D * H + D * B * T * 4 * H + d * B * T * H;
}
static size_t at_out(const aim__layer *L, size_t B, size_t l) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L);
    return l * B * T * 6 * D * H + D * B * T * 5 * H;
}

/* h0 and c0 of layer l, direction d, in the state block (NULL: zero). */
static const float *state_h(const aim__layer *L, const float *init, size_t ldb, size_t l, size_t d) {
    return init ? init + (l * dirs(L) + d) * ldb * CFG(L)->hidden : NULL;
}
static const float *state_c(const aim__layer *L, const float *init, size_t ldb, size_t l, size_t d) {
    const size_t D = dirs(L);
    return init ? init + (D * CFG(L)->layers + l * D + d) * ldb * CFG(L)->hidden : NULL;
}

void aim__lstm_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                       float *scratch, const float *init, size_t ldb, size_t B) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, NL = CFG(L)->layers, D = dirs(L), DH = D * H;
    const float *in = x;
    const float *p = params;
    /* Inference: gates of one direction, two output sequences, one cell row per sample. */
    float *gates = scratch, *hs[2] = {scratch + B * T * 4 * H, scratch + B * T * 4 * H + B * T * DH};
    float *c = scratch + B * T * 4 * H + 2 * B * T * DH;
    for (size_t l = 0; l < NL; l++) {
        /* Training: every direction of every layer keeps gates, cells and outputs for BPTT. */
        float *h = cache ? cache + at_out(L, B, l) : hs[l % 2];
        for (size_t d = 0; d < D; d++) {
            if (cache)
                sub_forward(B, T, in_of(L, l), H, (int)d, DH, p, in, cache + at_gates(L, B, l, d),
                            cache + at_cells(L, B, l, d), 1, h + d * H, state_h(L, init, ldb, l, d),
                            state_c(L, init, ldb, l, d));
            else
                sub_forward(B, T, in_of(L, l), H, (int)d, DH, p, in, gates, c, 0, h + d * H,
                            state_h(L, init, ldb, l, d), state_c(L, init, ldb, l, d));
            p += sub_params(L, l);
        }
        in = h;
    }
    emit(L, B, in, y);
}

void aim__lstm_backward(const aim__layer *L, const float *params, float *dparams, const float *x, float *cache,
                        const float *dy, float *dx, float *scratch, const float *init, size_t ldb,
                        size_t B) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, NL = CFG(L)->layers, G = 4 * H, D = dirs(L), DH = D * H;
    const size_t F = L->in_dims[1], mx = F > DH ? F : DH;
    float *dh = scratch, *dc = scratch + B * H;
    float *dseq[2] = {scratch + 2 * B * H, scratch + 2 * B * H + B * T * mx};
    float *zero = scratch + 2 * B * H + 2 * B * T * mx; /* (H): stands in for absent rows */
    memset(zero, 0, H * sizeof(float));
    /* Offsets of each layer's and direction's parameters. */
    size_t off[2 * AIM__LSTM_MAX_LAYERS];
    size_t acc = 0;
    for (size_t l = 0; l < NL; l++)
        for (size_t d = 0; d < D; d++) {
            off[l * D + d] = acc;
            acc += sub_params(L, l);
        }
    const float *dabove = dy; /* gradient w.r.t. this layer's output sequence (B, T, D·H) */
    int above_is_last_only = !CFG(L)->sequences; /* ... or only its last-step output (B, D·H) */
    for (size_t l = NL; l-- > 0;) {
        const size_t in = in_of(L, l);
        const float *xin = l == 0 ? x : cache + at_out(L, B, l - 1);
        const float *h = cache + at_out(L, B, l);
        /* dX = Σ_d dA_d·W_ih_d   (B·T, in): the layer below's output gradient, or the layer's dx */
        float *dout = l == 0 ? dx : dseq[l % 2];
        for (size_t d = 0; d < D; d++) {
            const int rev = d == 1;
            const float *p = params + off[l * D + d];
            float *dp = dparams + off[l * D + d];
            const float *Wih = p, *Whh = p + G * in;
            float *dWih = dp, *dWhh = dp + G * in, *dbih = dWhh + G * H, *dbhh = dbih + G;
            float *gates = cache + at_gates(L, B, l, d); /* the gates become dA in place */
            const float *cells = cache + at_cells(L, B, l, d), *hd = h + d * H;
            const float *h0 = state_h(L, init, ldb, l, d), *c0 = state_c(L, init, ldb, l, d);
            const size_t t_last = rev ? 0 : T - 1; /* the step whose h is the last-step output */
            memset(dh, 0, B * H * sizeof(float));
            memset(dc, 0, B * H * sizeof(float));
            for (size_t s = T; s-- > 0;) { /* forward order s; backward runs it from the end */
                const size_t t = rev ? T - 1 - s : s, tp = rev ? t + 1 : t - 1;
                for (size_t b = 0; b < B; b++) {
                    float *a = gates + (b * T + t) * G;
                    const float *ct = cells + (b * T + t) * H;
                    float *dhb = dh + b * H, *dcb = dc + b * H;
                    const float *up = above_is_last_only ? (t == t_last ? dabove + b * DH + d * H : zero)
                                                         : dabove + (b * T + t) * DH + d * H;
                    const float *cp = s ? cells + (b * T + tp) * H : (c0 ? c0 + b * H : zero);
                    cell_backward(a, ct, cp, up, dhb, dcb, H);
                }
                /* dh_{tp} = dA_t·W_hh   (B, H) = (B, 4H)·(4H, H) */
                if (s > 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(B), BI(H), BI(G), 1.0f, gates + t * G,
                                BI(T * G), Whh, BI(H), 0.0f, dh, BI(H));
            }
            /* dW_hh += Σ_t dA_tᵀ·h_{tp}: per sample, steps 1..T-1 against outputs 0..T-2
             * (reverse: steps 0..T-2 against outputs 1..T-1) */
            if (T > 1)
                for (size_t b = 0; b < B; b++)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(G), BI(H), BI(T - 1), 1.0f,
                                gates + (b * T + (rev ? 0 : 1)) * G, BI(G), hd + (b * T + (rev ? 1 : 0)) * DH, BI(DH),
                                1.0f, dWhh, BI(H));
            /* ... plus dA_{first}ᵀ·h0 when an initial state was given */
            if (h0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(G), BI(H), BI(B), 1.0f,
                            gates + (T - 1 - t_last) * G, BI(T * G), h0, BI(H), 1.0f, dWhh, BI(H));
            /* dW_ih += dAᵀ·X over all B·T rows */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(G), BI(in), BI(B * T), 1.0f, gates, BI(G), xin,
                        BI(in), 1.0f, dWih, BI(in));
            /* db_ih += Σ dA;  db_hh += Σ dA */
            for (size_t r = 0; r < B * T; r++) {
                const float *a = gates + r * G;
                for (size_t k = 0; k < G; k++) {
                    dbih[k] += a[k];
                    dbhh[k] += a[k];
                }
            }
            if (dout)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(B * T), BI(in), BI(G), 1.0f, gates, BI(G),
                            Wih, BI(in), d ? 1.0f : 0.0f, dout, BI(in));
        }
        dabove = dout;
        above_is_last_only = 0;
    }
}

void aim__lstm_final_state(const aim__layer *L, const float *cache, size_t B, float *h, float *c, size_t ldb) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L), DH = D * H;
    for (size_t l = 0; l < CFG(L)->layers; l++)
        for (size_t d = 0; d < D; d++) {
            /* h_n: the forward direction after step T-1, the reverse one after step 0 */
            const size_t t = d ? 0 : T - 1, k = l * D + d;
            const float *cells = cache + at_cells(L, B, l, d), *hs = cache + at_out(L, B, l) + d * H;
            for (size_t b = 0; b < B; b++) {
                if (h) memcpy(h + (k * ldb + b) * H, hs + (b * T + t) * DH, H * sizeof(float));
                if (c) memcpy(c + (k * ldb + b) * H, cells + (b * T + t) * H, H * sizeof(float));
            }
        }
}

static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    /* PyTorch: every weight and bias U(-1/sqrt(H), 1/sqrt(H)). Keras-style
     * Glorot applies to the input kernel with fans (in, 4H); the recurrent
     * kernel and biases then follow PyTorch's rule, with the forget-gate
     * bias at 1 as Keras' unit_forget_bias. Each direction of each layer in
     * the parameters' order. */
    const size_t H = CFG(L)->hidden;
    float *p = params;
    for (size_t l = 0; l < CFG(L)->layers; l++)
        for (size_t d = 0; d < dirs(L); d++) {
            const size_t in = in_of(L, l), n = sub_params(L, l);
            if (CFG(L)->init == AIM_INIT_PYTORCH) {
                float bound = (float)(1.0 / sqrt((double)H));
                for (size_t i = 0; i < n; i++) p[i] = bound * (2.0f * aim__rng_uniform(rng) - 1.0f);
            } else if (CFG(L)->init == AIM_INIT_ZEROS) {
                memset(p, 0, n * sizeof(float));
            } else {
                float *wih = p, *whh = p + 4 * H * in, *b = whh + 4 * H * H;
                aim__init_weights(CFG(L)->init, wih, 4 * H * in, b, 0, in, 4 * H, rng);
                aim__init_weights(CFG(L)->init, whh, 4 * H * H, b, 0, H, 4 * H, rng);
                memset(b, 0, 8 * H * sizeof(float));
                for (size_t j = 0; j < H; j++) b[H + j] = 1.0f; /* forget gate of b_ih */
            }
            p += n;
        }
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

/* aim_model_add_rnn (src/layers/rnn.c) with AIM_RNN_LSTM, unidirectional. */
aim_status aim_model_add_lstm(aim_model *m, const aim_lstm_config *c) {
    aim_rnn_config rc;
    if (c) {
        (void)aim_rnn_config_init(&rc, c->hidden, c->layers);
        rc.return_sequences = c->return_sequences;
        rc.init = c->init;
    }
    return aim_model_add_rnn(m, AIM_RNN_LSTM, c ? &rc : NULL);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    /* cache: gates 4, cell 1, output 1 floats per step, unit and direction; states h0, c0 */
    aim_status st = aim__rnn_setup(L, in, 4, 6, 2, msg);
    if (st != AIM_OK) return st;
    L->scratch_per_sample = aim__lstm_scratch_per_sample(L);
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    aim__lstm_forward(L, a->params, a->x[0], a->y, a->cache, a->scratch, aim__rnn_state_at(L, a->state, a->b0), a->state_ldb,
                      a->batch);
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    aim__lstm_backward(L, a->params, a->dparams, a->x[0], a->cache, a->dy, a->dx[0], a->scratch,
                       aim__rnn_state_at(L, a->state, a->b0), a->state_ldb, a->batch);
}

const aim__layer_ops aim__lstm_ops = {
    .name = "lstm",
    .code = 7,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .init = init,
    .forward = forward,
    .backward = backward,
    .macs = aim__rnn_macs,
    .write = aim__rnn_write,
    .read = aim__rnn_read,
};

/* ---- the LSTM's own calls: initial and final states ---------------------- */

aim_status aim_model_lstm_set_state(aim_model *m, size_t layer, const float *h0, size_t h0_count, const float *c0,
                                    size_t c0_count, size_t batch) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim__node_state ns;
    aim_status st = aim__model_node_state(m, layer, &aim__lstm_ops, "lstm_set_state", &ns);
    if (st != AIM_OK) return st;
    if (!h0 && !c0) {
        *ns.state_batch = 0;
        return AIM_OK;
    }
    if (!h0 || !c0 || batch == 0) {
        aim__set_error(ns.err, "lstm_set_state: give both h0 and c0 (or neither) and batch > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (batch > ns.max_batch) {
        aim__set_error(ns.err, "lstm_set_state: batch %zu exceeds max_batch %zu", batch, ns.max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const aim__layer *L = ns.L;
    const size_t D = dirs(L), n = D * CFG(L)->layers * batch * CFG(L)->hidden;
    if (h0_count != n || c0_count != n) {
        aim__set_error(ns.err, "lstm_set_state: h0 holds %zu and c0 %zu floats; %s%zu layers x batch %zu x hidden %zu need %zu each",
                       h0_count, c0_count, D == 2 ? "2 directions x " : "", CFG(L)->layers, batch, CFG(L)->hidden, n);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (!aim__all_finite(h0, n) || !aim__all_finite(c0, n)) {
        aim__set_error(ns.err, "lstm_set_state: h0 or c0 holds a NaN or infinity");
        return AIM_ERR_NON_FINITE;
    }
    memcpy(ns.state, h0, n * sizeof(float));
    memcpy(ns.state + n, c0, n * sizeof(float));
    *ns.state_batch = batch;
    return AIM_OK;
}

aim_status aim_model_lstm_final_state(aim_model *m, size_t layer, float *h, size_t h_count, float *c, size_t c_count,
                                      size_t batch) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim__node_state ns;
    aim_status st = aim__model_node_state(m, layer, &aim__lstm_ops, "lstm_final_state", &ns);
    if (st != AIM_OK) return st;
    if (!h && !c) {
        aim__set_error(ns.err, "lstm_final_state: h and c are both NULL");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!ns.cache) {
        aim__set_error(ns.err, "lstm_final_state: needs a forward pass in AIM_MODE_TRAIN");
        return AIM_ERR_INVALID_STATE;
    }
    if (batch != ns.batch) {
        aim__set_error(ns.err, "lstm_final_state: batch %zu differs from the last forward's %zu", batch, ns.batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const aim__layer *L = ns.L;
    const size_t D = dirs(L), n = D * CFG(L)->layers * batch * CFG(L)->hidden;
    if ((h && h_count != n) || (c && c_count != n)) {
        aim__set_error(ns.err, "lstm_final_state: h has room for %zu and c for %zu floats; %s%zu layers x batch %zu x hidden %zu need %zu each",
                       h ? h_count : n, c ? c_count : n, D == 2 ? "2 directions x " : "", CFG(L)->layers, batch,
                       CFG(L)->hidden, n);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    /* A training forward split over a pool keeps each slice's cache in the
     * slice's own layout, so the states are read back slice by slice. */
    for (size_t w = 0; w < ns.parts; w++) {
        size_t b0, nb;
        aim__split(batch, ns.parts, w, &b0, &nb);
        aim__lstm_final_state(L, ns.cache + b0 * L->cache_per_sample, nb, h ? h + b0 * CFG(L)->hidden : NULL,
                              c ? c + b0 * CFG(L)->hidden : NULL, batch);
    }
    return AIM_OK;
}
