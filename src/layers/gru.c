/*
 * A stack of GRU layers, PyTorch nn.GRU semantics and layout (batch first):
 *   X (B, T, F) -> H (B, T, D·Hd) for every step, or (B, D·Hd) for the last
 * one; D = 2 with a reverse direction per layer (bidirectional), else 1.
 * Parameters of layer l and direction d, in this order (as PyTorch's
 * state_dict: layer 0 forward, layer 0 reverse, layer 1 forward, ...):
 *   W_ih (3Hd, in_l), W_hh (3Hd, Hd), b_ih (3Hd), b_hh (3Hd); in_0 = F, in_l = D·Hd
 * Gates in PyTorch's order r, z, n:
 *   r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
 *   z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
 *   n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))
 *   h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}, computed as n + z ⊙ (h_{t-1} - n) as PyTorch does
 * The reverse direction runs the same cell from t = T-1 down to 0; a layer's
 * output at step t is [forward h_t, reverse h_t], and the last-step output
 * [forward h_{T-1}, reverse h_0] (PyTorch's cat(h_n[-2], h_n[-1])).
 * https://pytorch.org/docs/stable/generated/torch.nn.GRU.html
 *
 * Forward, per layer and direction: the input projection of all steps is ONE
 * GEMM (B·T rows), Gi = X·W_ihᵀ + b_ih (+ b_hr, b_hz, which enter r and z
 * alike); then per step ONE recurrent GEMM Gh = h_{t-1}·W_hhᵀ (B, 3Hd) and one
 * fused loop for the gates. The training cache keeps the activated gates,
 * W_hn h_{t-1} + b_hn (the n gate's backward needs it apart) and the outputs.
 * Backward: full backpropagation through time; the dW and dX GEMMs run over
 * all steps at once. The shared sizes and checks are in src/layers/rnn.c.
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fastmath.h"
#include "internal.h"

#define BI(n) AIM__BLAS_INT(n)
#define CFG(L) AIM__CFG(aim__gru_cfg, L)
_Static_assert(sizeof(aim__gru_cfg) <= AIM__LAYER_CFG_BYTES, "gru config too large");

/* Directions per layer. */
static size_t dirs(const aim__layer *L) { return CFG(L)->bidirectional ? 2 : 1; }

/* Input features of layer l. */
static size_t in_of(const aim__layer *L, size_t l) { return l == 0 ? L->in_dims[1] : dirs(L) * CFG(L)->hidden; }

/* Parameters of one direction of layer l. */
static size_t sub_params(const aim__layer *L, size_t l) {
    const size_t H = CFG(L)->hidden;
    return 3 * H * in_of(L, l) + 3 * H * H + 6 * H;
}

/* Scratch per sample: the larger of a forward (inference: gates of one
 * direction (T, 3H), two output sequences (T, D·H); always: the step's
 * recurrent product Gh (3H) and a zero row) and a backward (dh, two
 * input-gradient sequences (T, max(F, D·H)), a zero row). Below
 * aim__rnn_setup's bound. */
size_t aim__gru_scratch_per_sample(const aim__layer *L) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, F = L->in_dims[1], DH = dirs(L) * H;
    const size_t mx = F > DH ? F : DH;
    const size_t fwd = T * 3 * H + 2 * T * DH + 4 * H;
    const size_t bwd = 2 * H + 2 * T * mx;
    return fwd > bwd ? fwd : bwd;
}

/* One step of one sample. `a` holds Gi = x W_ihᵀ + b_ih (+ b_hr, b_hz in the
 * r, z thirds) and becomes the activated r, z, n; `gh` is h_{t-1} W_hhᵀ
 * (zeros for a zero state), `hp` is h_{t-1} (a zero row for a zero state).
 * Writes hn = W_hn h_{t-1} + b_hn (which may be gh's own n third) and h_t. */
AIM__HOT static void cell_forward(float *a, const float *gh, const float *bhn, const float *hp, float *hn, float *h,
                                  size_t H) {
    for (size_t j = 0; j < 2 * H; j++) a[j] = aim__sigmoid(a[j] + gh[j]); /* r, z = σ(Gi + Gh) */
    for (size_t j = 0; j < H; j++) {
        const float v = gh[2 * H + j] + bhn[j]; /* W_hn h_{t-1} + b_hn */
        hn[j] = v;
        a[2 * H + j] = aim__tanh(a[2 * H + j] + a[j] * v); /* n = tanh(Gi_n + r v) */
    }
    for (size_t j = 0; j < H; j++) h[j] = a[2 * H + j] + a[H + j] * (hp[j] - a[2 * H + j]); /* h = n + z (hp - n) */
}

/* The backward of one step of one sample. In: the activated gates `a`, hn =
 * W_hn h_{t-1} + b_hn, h_{t-1} (`hp`), the gradient from the layer above
 * (`up`) and from step t+1 (`dh`). Out, in place: `a` becomes dGh, the
 * gradient of the recurrent pre-activations h W_hhᵀ + b_hh = [da_r, da_z,
 * da_n ⊙ r]; `hn` becomes da_n, the n third of dGi (whose r and z thirds are
 * those of dGh); `dh` becomes the direct part z ⊙ dh_t of dh_{t-1}. The
 * pointers do not overlap (zero rows stand in for absent ones), which lets
 * the loop vectorize. */
AIM__HOT static void cell_backward(float *restrict a, float *restrict hn, const float *restrict hp,
                                   const float *restrict up, float *restrict dh, size_t H) {
    for (size_t j = 0; j < H; j++) {
        const float r = a[j], z = a[H + j], n = a[2 * H + j], v = hn[j];
        const float dhj = dh[j] + up[j];                /* dh_t = dH_t + dh from t+1 */
        const float dan = dhj * (1.0f - z) * (1.0f - n * n); /* dn = dh (1 - z); da_n = dn tanh' */
        const float dz = dhj * (hp[j] - n);             /* dz = dh (h_{t-1} - n) */
        a[j] = dan * v * r * (1.0f - r);                /* da_r = da_n hn · σ' */
        a[H + j] = dz * z * (1.0f - z);                 /* da_z = dz · σ' */
        a[2 * H + j] = dan * r;                         /* d(W_hn h + b_hn) = da_n r */
        hn[j] = dan;                                    /* d(W_in x + b_in) = da_n */
        dh[j] = dhj * z;                                /* dh_{t-1} = z dh_t + dGh·W_hh (the GEMM adds it) */
    }
}

/* One direction of one layer, forward. x (B, T, in); writes gates (B, T, 3H)
 * activated, hn (B, T, H) when `hn` is not NULL (training), and h: step t of
 * sample b at h + (b·T + t)·ldh (ldh = D·H: the directions share the output
 * rows). `gh` is (B, 3H) scratch, `zero` H zeros. `rev` runs t = T-1 .. 0. */
static void sub_forward(size_t B, size_t T, size_t in, size_t H, int rev, size_t ldh, const float *p,
                        const float *x, float *gates, float *hn, float *h, float *gh, const float *zero,
                        const float *h0) {
    const size_t G = 3 * H;
    const float *Wih = p, *Whh = p + G * in, *bih = Whh + G * H, *bhh = bih + G;
    /* Gi = X·W_ihᵀ for all B·T rows at once; then + b_ih, and + b_hr, b_hz */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(B * T), BI(G), BI(in), 1.0f, x, BI(in), Wih, BI(in),
                0.0f, gates, BI(G));
    for (size_t r = 0; r < B * T; r++) {
        float *a = gates + r * G;
        for (size_t k = 0; k < 2 * H; k++) a[k] += bih[k] + bhh[k];
        for (size_t k = 2 * H; k < G; k++) a[k] += bih[k];
    }
    for (size_t s = 0; s < T; s++) {
        const size_t t = rev ? T - 1 - s : s, tp = rev ? t + 1 : t - 1; /* tp: the previous step, for s > 0 */
        /* Gh = h_{tp}·W_hhᵀ (B, 3H); h rows T·ldh apart; h0 is (B, H), zero when not given */
        const float *hprev = s > 0 ? h + tp * ldh : h0;
        const size_t ldp = s > 0 ? T * ldh : H;
        if (hprev && B == 1)
            /* one sample: a matrix-vector product, which OpenBLAS runs faster than a 1-row GEMM */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, BI(G), BI(H), 1.0f, Whh, BI(H), hprev, 1, 0.0f, gh, 1);
        else if (hprev)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(B), BI(G), BI(H), 1.0f, hprev, BI(ldp), Whh,
                        BI(H), 0.0f, gh, BI(G));
        else
            memset(gh, 0, B * G * sizeof(float));
        for (size_t b = 0; b < B; b++) {
            float *g = gh + b * G;
            const float *hp = hprev ? hprev + b * ldp : zero;
            cell_forward(gates + (b * T + t) * G, g, bhh + 2 * H, hp, hn ? hn + (b * T + t) * H : g + 2 * H,
                         h + (b * T + t) * ldh, H);
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
 * direction d the gates (B, T, 3H) and hn (B, T, H), then the layer's
 * outputs (B, T, D·H): 5·D·T·H floats a sample per layer. */
static size_t at_gates(const aim__layer *L, size_t B, size_t l, size_t d) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L);
    return l * B * T * 5 * D * H + d * B * T * 3 * H;
}
static size_t at_hn(const aim__layer *L, size_t B, size_t l, size_t d) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L);
    return l * B * T * 5 * D * H + D * B * T * 3 * H + d * B * T * H;
}
static size_t at_out(const aim__layer *L, size_t B, size_t l) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L);
    return l * B * T * 5 * D * H + D * B * T * 4 * H;
}

/* h0 of layer l, direction d, in the state block (NULL: zero). */
static const float *state_h(const aim__layer *L, const float *init, size_t ldb, size_t l, size_t d) {
    return init ? init + (l * dirs(L) + d) * ldb * CFG(L)->hidden : NULL;
}

void aim__gru_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                      float *scratch, const float *init, size_t ldb, size_t B) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, NL = CFG(L)->layers, D = dirs(L), DH = D * H;
    /* Scratch: Gh (B, 3H), a zero row; in inference also the gates of one
     * direction and two output sequences. */
    float *gh = scratch, *zero = scratch + B * 3 * H;
    float *gates = zero + H, *hs[2] = {gates + B * T * 3 * H, gates + B * T * 3 * H + B * T * DH};
    memset(zero, 0, H * sizeof(float));
    const float *in = x;
    const float *p = params;
    for (size_t l = 0; l < NL; l++) {
        float *h = cache ? cache + at_out(L, B, l) : hs[l % 2];
        for (size_t d = 0; d < D; d++) {
            /* Training: every direction of every layer keeps gates, hn and outputs for BPTT. */
            sub_forward(B, T, in_of(L, l), H, (int)d, DH, p, in, cache ? cache + at_gates(L, B, l, d) : gates,
                        cache ? cache + at_hn(L, B, l, d) : NULL, h + d * H, gh, zero, state_h(L, init, ldb, l, d));
            p += sub_params(L, l);
        }
        in = h;
    }
    emit(L, B, in, y);
}

void aim__gru_backward(const aim__layer *L, const float *params, float *dparams, const float *x, float *cache,
                       const float *dy, float *dx, float *scratch, const float *init, size_t ldb, size_t B) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, NL = CFG(L)->layers, G = 3 * H, D = dirs(L), DH = D * H;
    const size_t F = L->in_dims[1], mx = F > DH ? F : DH;
    float *dh = scratch;
    float *dseq[2] = {scratch + B * H, scratch + B * H + B * T * mx};
    float *zero = scratch + B * H + 2 * B * T * mx; /* (H): stands in for absent rows */
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
        /* dX = Σ_d dGi_d·W_ih_d   (B·T, in): the layer below's output gradient, or the layer's dx */
        float *dout = l == 0 ? dx : dseq[l % 2];
        for (size_t d = 0; d < D; d++) {
            const int rev = d == 1;
            const float *p = params + off[l * D + d];
            float *dp = dparams + off[l * D + d];
            const float *Wih = p, *Whh = p + G * in;
            float *dWih = dp, *dWhh = dp + G * in, *dbih = dWhh + G * H, *dbhh = dbih + G;
            float *gates = cache + at_gates(L, B, l, d); /* becomes dGh in place */
            float *hn = cache + at_hn(L, B, l, d);       /* becomes da_n, the n third of dGi */
            const float *hd = h + d * H, *h0 = state_h(L, init, ldb, l, d);
            const size_t t_last = rev ? 0 : T - 1; /* the step whose h is the last-step output */
            memset(dh, 0, B * H * sizeof(float));
            for (size_t s = T; s-- > 0;) { /* forward order s; backward runs it from the end */
                const size_t t = rev ? T - 1 - s : s, tp = rev ? t + 1 : t - 1;
                for (size_t b = 0; b < B; b++) {
                    const float *up = above_is_last_only ? (t == t_last ? dabove + b * DH + d * H : zero)
                                                         : dabove + (b * T + t) * DH + d * H;
                    const float *hp = s ? hd + (b * T + tp) * DH : (h0 ? h0 + b * H : zero);
                    cell_backward(gates + (b * T + t) * G, hn + (b * T + t) * H, hp, up, dh + b * H, H);
                }
                /* dh_{tp} += dGh_t·W_hh   (B, H) = (B, 3H)·(3H, H) */
                if (s > 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(B), BI(H), BI(G), 1.0f, gates + t * G,
                                BI(T * G), Whh, BI(H), 1.0f, dh, BI(H));
            }
            /* dW_hh += Σ_t dGh_tᵀ·h_{tp}: per sample, steps 1..T-1 against outputs 0..T-2
             * (reverse: steps 0..T-2 against outputs 1..T-1) */
            if (T > 1)
                for (size_t b = 0; b < B; b++)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(G), BI(H), BI(T - 1), 1.0f,
                                gates + (b * T + (rev ? 0 : 1)) * G, BI(G), hd + (b * T + (rev ? 1 : 0)) * DH, BI(DH),
                                1.0f, dWhh, BI(H));
            /* ... plus dGh_{first}ᵀ·h0 when an initial state was given */
            if (h0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(G), BI(H), BI(B), 1.0f,
                            gates + (T - 1 - t_last) * G, BI(T * G), h0, BI(H), 1.0f, dWhh, BI(H));
            /* dW_ih += dGiᵀ·X over all B·T rows: the r, z rows from dGh's r, z thirds, the n rows from da_n */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(2 * H), BI(in), BI(B * T), 1.0f, gates, BI(G), xin,
                        BI(in), 1.0f, dWih, BI(in));
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(H), BI(in), BI(B * T), 1.0f, hn, BI(H), xin,
                        BI(in), 1.0f, dWih + 2 * H * in, BI(in));
            /* db_hh += Σ dGh;  db_ih += Σ dGi = Σ [da_r, da_z, da_n] */
            for (size_t r = 0; r < B * T; r++) {
                const float *a = gates + r * G, *an = hn + r * H;
                for (size_t k = 0; k < G; k++) dbhh[k] += a[k];
                for (size_t k = 0; k < 2 * H; k++) dbih[k] += a[k];
                for (size_t k = 0; k < H; k++) dbih[2 * H + k] += an[k];
            }
            if (dout) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(B * T), BI(in), BI(2 * H), 1.0f, gates,
                            BI(G), Wih, BI(in), d ? 1.0f : 0.0f, dout, BI(in));
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(B * T), BI(in), BI(H), 1.0f, hn, BI(H),
                            Wih + 2 * H * in, BI(in), 1.0f, dout, BI(in));
            }
        }
        dabove = dout;
        above_is_last_only = 0;
    }
}

void aim__gru_final_state(const aim__layer *L, const float *cache, size_t B, float *h, size_t ldb) {
    const size_t T = L->in_dims[0], H = CFG(L)->hidden, D = dirs(L), DH = D * H;
    for (size_t l = 0; l < CFG(L)->layers; l++)
        for (size_t d = 0; d < D; d++) {
            /* h_n: the forward direction after step T-1, the reverse one after step 0 */
            const size_t t = d ? 0 : T - 1, k = l * D + d;
            const float *hs = cache + at_out(L, B, l) + d * H;
            for (size_t b = 0; b < B; b++) memcpy(h + (k * ldb + b) * H, hs + (b * T + t) * DH, H * sizeof(float));
        }
}

static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    /* PyTorch: every weight and bias U(-1/sqrt(H), 1/sqrt(H)). Otherwise the
     * init applies to the input kernel with fans (in, 3H) and to the
     * recurrent kernel with fans (H, 3H), biases zero. Each direction of
     * each layer in the parameters' order. */
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
                float *wih = p, *whh = p + 3 * H * in, *b = whh + 3 * H * H;
                aim__init_weights(CFG(L)->init, wih, 3 * H * in, b, 0, in, 3 * H, rng);
                aim__init_weights(CFG(L)->init, whh, 3 * H * H, b, 0, H, 3 * H, rng);
                memset(b, 0, 6 * H * sizeof(float));
            }
            p += n;
        }
}

/* aim_model_add_rnn (src/layers/rnn.c) with AIM_RNN_GRU. */
aim_status aim_model_add_gru(aim_model *m, const aim_rnn_config *c) { return aim_model_add_rnn(m, AIM_RNN_GRU, c); }

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    /* cache: gates 3, hn 1, output 1 floats per step, unit and direction; state h0 */
    aim_status st = aim__rnn_setup(L, in, 3, 5, 1, msg);
    if (st != AIM_OK) return st;
    L->scratch_per_sample = aim__gru_scratch_per_sample(L);
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    aim__gru_forward(L, a->params, a->x[0], a->y, a->cache, a->scratch, aim__rnn_state_at(L, a->state, a->b0), a->state_ldb,
                     a->batch);
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    aim__gru_backward(L, a->params, a->dparams, a->x[0], a->cache, a->dy, a->dx[0], a->scratch,
                      aim__rnn_state_at(L, a->state, a->b0), a->state_ldb, a->batch);
}

const aim__layer_ops aim__gru_ops = {
    .name = "gru",
    .code = 14,
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

/* ---- the GRU's own calls: initial and final states ----------------------- */

aim_status aim_model_gru_set_state(aim_model *m, size_t layer, const float *h0, size_t h0_count, size_t batch) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim__node_state ns;
    aim_status st = aim__model_node_state(m, layer, &aim__gru_ops, "gru_set_state", &ns);
    if (st != AIM_OK) return st;
    if (!h0) {
        *ns.state_batch = 0;
        return AIM_OK;
    }
    if (batch == 0) {
        aim__set_error(ns.err, "gru_set_state: batch must be > 0 with an h0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (batch > ns.max_batch) {
        aim__set_error(ns.err, "gru_set_state: batch %zu exceeds max_batch %zu", batch, ns.max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const aim__layer *L = ns.L;
    const size_t D = dirs(L), n = D * CFG(L)->layers * batch * CFG(L)->hidden;
    if (h0_count != n) {
        aim__set_error(ns.err, "gru_set_state: h0 holds %zu floats; %s%zu layers x batch %zu x hidden %zu need %zu",
                       h0_count, D == 2 ? "2 directions x " : "", CFG(L)->layers, batch, CFG(L)->hidden, n);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (!aim__all_finite(h0, n)) {
        aim__set_error(ns.err, "gru_set_state: h0 holds a NaN or infinity");
        return AIM_ERR_NON_FINITE;
    }
    memcpy(ns.state, h0, n * sizeof(float));
    *ns.state_batch = batch;
    return AIM_OK;
}

aim_status aim_model_gru_final_state(aim_model *m, size_t layer, float *h, size_t h_count, size_t batch) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim__node_state ns;
    aim_status st = aim__model_node_state(m, layer, &aim__gru_ops, "gru_final_state", &ns);
    if (st != AIM_OK) return st;
    if (!h) {
        aim__set_error(ns.err, "gru_final_state: h is NULL");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!ns.cache) {
        aim__set_error(ns.err, "gru_final_state: needs a forward pass in AIM_MODE_TRAIN");
        return AIM_ERR_INVALID_STATE;
    }
    if (batch != ns.batch) {
        aim__set_error(ns.err, "gru_final_state: batch %zu differs from the last forward's %zu", batch, ns.batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const aim__layer *L = ns.L;
    const size_t D = dirs(L), n = D * CFG(L)->layers * batch * CFG(L)->hidden;
    if (h_count != n) {
        aim__set_error(ns.err, "gru_final_state: h has room for %zu floats; %s%zu layers x batch %zu x hidden %zu need %zu",
                       h_count, D == 2 ? "2 directions x " : "", CFG(L)->layers, batch, CFG(L)->hidden, n);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    /* A training forward split over a pool keeps each slice's cache in the
     * slice's own layout, so the state is read back slice by slice. */
    for (size_t w = 0; w < ns.parts; w++) {
        size_t b0, nb;
        aim__split(batch, ns.parts, w, &b0, &nb);
        aim__gru_final_state(L, ns.cache + b0 * L->cache_per_sample, nb, h + b0 * CFG(L)->hidden, batch);
    }
    return AIM_OK;
}
