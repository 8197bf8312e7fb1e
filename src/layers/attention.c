/*
 * Multi-head self-attention, PyTorch nn.MultiheadAttention semantics and
 * parameter layout (batch_first, query = key = value = x):
 *   params = in_proj_weight W_in [3E, E] (W_q, W_k, W_v stacked), in_proj_bias b_in [3E],
 *            out_proj.weight W_o [E, E], out_proj.bias b_o [E]      (without bias: W_in, W_o)
 *   [Q K V] = X·W_inᵀ + b_in                  X: (T, E), Q, K, V: (T, E), heads of d = E / H columns
 *   S_h = Q_h·K_hᵀ / sqrt(d)  (+ -inf above the diagonal when causal)
 *   P_h = softmax(S_h) per row,  P'_h = dropout(P_h) in training
 *   O_h = P'_h·V_h,  O = [O_1 … O_H],  Y = O·W_oᵀ + b_o
 * https://pytorch.org/docs/stable/generated/torch.nn.MultiheadAttention.html
 *
 * Backward, per sample and head (G = dY):
 *   dW_o += Gᵀ·O, db_o += Σ G, dO = G·W_o
 *   dP'_h = dO_h·V_hᵀ, dV_h = P'_hᵀ·dO_h, dP_h = dP'_h ⊙ mask
 *   dS_h = P_h ⊙ (dP_h − rowsum(dP_h ⊙ P_h))
 *   dQ_h = dS_h·K_h / sqrt(d), dK_h = dS_hᵀ·Q_h / sqrt(d)
 *   dW_in += dQKVᵀ·X, db_in += Σ dQKV, dX = dQKV·W_in
 * The mask is not stored: where P > 0 it is P' ≠ 0 (times 1 / (1 − p)), and
 * where P = 0 the gradient dS vanishes whatever dP is.
 *
 * The training cache keeps, per sample, Q K V (3 T E floats: both products
 * of the backward need them, and recomputing costs a GEMM of the forward's
 * size), O (T E: dW_o's input), P (H T² floats: the softmax's Jacobian needs
 * the probabilities; recomputing them would repeat Q·Kᵀ and the softmax)
 * and, with dropout, P' (another H T²: the dropped weights V's gradient
 * reads). Dropout draws per sample from the model's random stream, so a
 * thread pool's slicing does not change the masks.
 *
 * The projections run once per call over all its rows (batch · T of them):
 * a call's cache holds Q K V of all its samples, then their O, then P
 * (and P'), so the four projection GEMMs of a forward and the six of a
 * backward see M = batch · T rows rather than T. The backward gets the
 * forward's slices (the model records them), so the layout is the same on
 * both sides. Scratch is 4 T E floats a sample (Q K V and O in inference;
 * dO and dQKV in the backward) and T² for one head's P or dP.
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "fastmath.h"
#include "gemm.h"
#include "internal.h"

#define BI(n) AIM__BLAS_INT(n)
#define CFG(L) AIM__CFG(aim__attention_cfg, L)
_Static_assert(sizeof(aim__attention_cfg) <= AIM__LAYER_CFG_BYTES, "attention config too large");

aim_status aim_attention_config_init(aim_attention_config *c, size_t num_heads) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    c->num_heads = num_heads;
    c->causal = 0;
    c->dropout = 0.0f;
    c->bias = 1;
    c->init = AIM_INIT_PYTORCH;
    return AIM_OK;
}

aim_status aim_model_add_attention(aim_model *m, const aim_attention_config *c) {
    aim__attention_cfg k = {0, 0, 0.0f, 0, AIM_INIT_PYTORCH, 0};
    if (c) {
        k.heads = c->num_heads;
        k.causal = c->causal != 0;
        k.dropout = c->dropout;
        k.bias = c->bias != 0;
        k.init = c->init;
        for (size_t i = 0; i < sizeof c->reserved / sizeof c->reserved[0]; i++) k.reserved_set |= c->reserved[i] != 0;
    }
    return aim__model_add_node(m, &aim__attention_ops, c ? &k : NULL, sizeof k, NULL, 0);
}

/* Sizes of a node: T steps of E features, H heads of d. */
typedef struct dims {
    size_t T, E, H, d;
} dims;
static dims dims_of(const aim__layer *L) {
    const dims g = {L->in_dims[0], L->in_dims[1], CFG(L)->heads, L->in_dims[1] / CFG(L)->heads};
    return g;
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const aim__attention_cfg *c = CFG(L);
    if (c->reserved_set) {
        snprintf(msg, AIM__ERR_CAP, "a reserved field of the config is not zero (fill it with aim_attention_config_init)");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (in[0].rank != 2) {
        char shape[96];
        aim__shape_str(&in[0], shape, sizeof shape);
        snprintf(msg, AIM__ERR_CAP, "needs a sequence (time, embed), got %s", shape);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t T = in[0].dims[0], E = in[0].dims[1];
    if (c->heads == 0 || E % c->heads != 0) {
        snprintf(msg, AIM__ERR_CAP, "num_heads %zu must be > 0 and divide the embed size %zu", c->heads, E);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) {
        snprintf(msg, AIM__ERR_CAP, "dropout %g must lie in [0, 1)", (double)c->dropout);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!aim__init_valid(c->init)) {
        snprintf(msg, AIM__ERR_CAP, "unknown init %d", (int)c->init);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    /* weights 4 E² (+ 4 E biases); cache 4 T E + (1 or 2) H T²; scratch 4 T E a sample + T² */
    size_t E2, w, tt, te4, ht, cache;
    if (!aim__mul(E, E, &E2) || !aim__mul(E2, 4, &w) || !aim__add(w, c->bias ? 4 * E : 0, &w) ||
        w > SIZE_MAX / sizeof(float) || !aim__mul(T, T, &tt) || !aim__mul(T, E, &te4) || !aim__mul(te4, 4, &te4) ||
        !aim__mul(tt, c->heads, &ht) || !aim__mul(ht, c->dropout > 0.0f ? 2 : 1, &ht) ||
        !aim__add(te4, ht, &cache) || cache > SIZE_MAX / sizeof(float) || tt > SIZE_MAX / sizeof(float)) {
        snprintf(msg, AIM__ERR_CAP, "sizes of time %zu, embed %zu and %zu heads overflow", T, E, c->heads);
        return AIM_ERR_OVERFLOW;
    }
    if (3 * E > INT_MAX || T > INT_MAX || tt > INT_MAX) {
        snprintf(msg, AIM__ERR_CAP, "time %zu or embed %zu exceeds the BLAS limit", T, E);
        return AIM_ERR_UNSUPPORTED;
    }
    L->out_rank = 2;
    L->out_dims[0] = T;
    L->out_dims[1] = E;
    L->out_size = in[0].size;
    L->weight_count = w; /* PyTorch's order interleaves weights and biases: all in weight_count */
    L->bias_count = 0;
    L->cache_per_sample = cache;
    L->scratch_per_sample = te4;
    L->scratch_floats = tt;
    /* steps: the keys and values of every position, and a sample's q k v, o and scores */
    L->step_state_per_sample = c->causal ? 2 * T * E : 0;
    L->step_scratch_per_sample = c->causal ? 4 * E + T : 0;
    return AIM_OK;
}

/* Where the parameters (or their gradients) are, in PyTorch's order; the
 * biases NULL without them. */
typedef struct params {
    float *w_in, *b_in, *w_o, *b_o;
} params;
static params params_at(const aim__layer *L, float *p) {
    const dims g = dims_of(L);
    params q;
    q.w_in = p;
    q.b_in = CFG(L)->bias ? p + 3 * g.E * g.E : NULL;
    q.w_o = p + 3 * g.E * g.E + (CFG(L)->bias ? 3 * g.E : 0);
    q.b_o = CFG(L)->bias ? q.w_o + g.E * g.E : NULL;
    return q;
}
/* The same for parameters only read (the forward's, the backward's W). */
static params params_of(const aim__layer *L, const float *p) { return params_at(L, (float *)(uintptr_t)p); }

static void init(const aim__layer *L, float *p, struct aim_rng *rng) {
    const dims g = dims_of(L);
    const aim__attention_cfg *c = CFG(L);
    const params q = params_at(L, p);
    float *w_in = q.w_in, *b_in = q.b_in, *w_o = q.w_o, *b_o = q.b_o;
    float zero = 0.0f;
    switch (c->init) {
    case AIM_INIT_PYTORCH: /* xavier_uniform_(in_proj_weight); out_proj: nn.Linear's kaiming_uniform(a=√5) */
        aim__init_weights(AIM_INIT_GLOROT_UNIFORM, w_in, 3 * g.E * g.E, &zero, 0, g.E, 3 * g.E, rng);
        aim__init_weights(AIM_INIT_PYTORCH, w_o, g.E * g.E, &zero, 0, g.E, g.E, rng);
        break;
    default:
        aim__init_weights(c->init, w_in, 3 * g.E * g.E, &zero, 0, g.E, 3 * g.E, rng);
        aim__init_weights(c->init, w_o, g.E * g.E, &zero, 0, g.E, g.E, rng);
        break;
    }
    if (b_in) memset(b_in, 0, 3 * g.E * sizeof(float));
    if (b_o) memset(b_o, 0, g.E * sizeof(float));
}

/* Y (rows, n) = X (rows, k)·Wᵀ (+ b), over a call's batch · T rows. */
static void linear(const float *x, size_t rows, size_t k, const float *W, const float *b, size_t n, float *y) {
    aim__sgemm(AIM__NOTRANS, AIM__TRANS, rows, n, k, 1.0f, x, k, W, k, 0.0f, y, n);
    if (b)
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < n; j++) y[r * n + j] += b[j];
}

/* The same for one position of each sequence (step): cblas_sgemm, since our
 * kernel repacks all of W for every call, which at one row costs more than
 * the product (tests/bench/bench_gemm.c, "gen 1 row": 10.4 µs a call against
 * OpenBLAS's 3.8 µs). A step's results match the full forward to rounding
 * only (see step()), so the two paths need not share a kernel. */
static void linear_step(const float *x, size_t rows, size_t k, const float *W, const float *b, size_t n, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(rows), BI(n), BI(k), 1.0f, x, BI(k), W, BI(k), 0.0f, y,
                BI(n));
    if (b)
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < n; j++) y[r * n + j] += b[j];
}

/* Row i of S (scaled scores) to probabilities over its first `len` entries
 * (the rest 0): max-subtracted, so no exp overflows. The max and the sum run
 * in 8 interleaved lanes, a fixed order the compiler vectorizes (AIM__HOT). */
#define LANES 8
AIM__HOT static void softmax_row(float *s, size_t len, size_t T) {
    float mx[LANES], sum[LANES];
    for (size_t l = 0; l < LANES; l++) {
        mx[l] = s[0];
        sum[l] = 0.0f;
    }
    size_t j = 0;
    for (; j + LANES <= len; j += LANES)
        for (size_t l = 0; l < LANES; l++) mx[l] = s[j + l] > mx[l] ? s[j + l] : mx[l];
    float m = mx[0];
    for (size_t l = 1; l < LANES; l++) m = mx[l] > m ? mx[l] : m;
    for (; j < len; j++) m = s[j] > m ? s[j] : m;
    for (j = 0; j < len; j++) s[j] = aim__exp(s[j] - m);
    for (j = 0; j + LANES <= len; j += LANES)
        for (size_t l = 0; l < LANES; l++) sum[l] += s[j + l];
    float total = 0.0f;
    for (size_t l = 0; l < LANES; l++) total += sum[l];
    for (; j < len; j++) total += s[j];
    const float inv = 1.0f / total;
    for (j = 0; j < len; j++) s[j] *= inv;
    for (j = len; j < T; j++) s[j] = 0.0f;
}

/* Causal attention skips the masked half in blocks: rows [r0, r1) of S meet
 * keys [0, r1) only, and the key block [c0, c1) is met by rows [c0, T) only
 * (P and dS are zero elsewhere, exactly). Four blocks do 5/8 of the full
 * products' work; short sequences and non-causal attention take one. */
static size_t block_rows(const aim__layer *L) {
    const size_t T = L->in_dims[0];
    return CFG(L)->causal && T >= 64 ? (T + 3) / 4 : T;
}

/* The heads of one sample: qkv (T, 3E) in, o (T, E) out; p holds H T²
 * (training: every head kept) or T² (inference: reused per head); pd, with
 * dropout in training, the dropped weights. */
static void sample_heads(const aim__layer *L, const float *qkv, float *o, float *p, float *pd, int keep_all,
                         struct aim_rng *rng) {
    const aim__attention_cfg *c = CFG(L);
    const dims g = dims_of(L);
    const size_t T = g.T, E = g.E, d = g.d, ld = 3 * E, TT = T * T;
    const float scale = 1.0f / sqrtf((float)d);
    const float keep_scale = pd ? 1.0f / (1.0f - c->dropout) : 1.0f;
    const size_t bs = block_rows(L);
    for (size_t h = 0; h < g.H; h++) {
        const float *Q = qkv + h * d, *K = qkv + E + h * d, *V = qkv + 2 * E + h * d;
        float *P = keep_all ? p + h * TT : p;
        /* S = Q·Kᵀ / sqrt(d), by row blocks */
        for (size_t r0 = 0; r0 < T; r0 += bs) {
            const size_t r1 = r0 + bs < T ? r0 + bs : T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(r1 - r0), BI(r1), BI(d), scale, Q + r0 * ld, BI(ld),
                        K, BI(ld), 0.0f, P + r0 * T, BI(T));
        }
        for (size_t i = 0; i < T; i++) softmax_row(P + i * T, c->causal ? i + 1 : T, T);
        const float *Pv = P;
        if (pd) { /* P' = P ⊙ mask / (1 − p) */
            float *D = pd + h * TT;
            for (size_t i = 0; i < TT; i++) D[i] = aim__rng_uniform(rng) >= c->dropout ? P[i] * keep_scale : 0.0f;
            Pv = D;
        }
        /* O_h = P'·V, by row blocks */
        for (size_t r0 = 0; r0 < T; r0 += bs) {
            const size_t r1 = r0 + bs < T ? r0 + bs : T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(r1 - r0), BI(d), BI(r1), 1.0f, Pv + r0 * T, BI(T),
                        V, BI(ld), 0.0f, o + r0 * E + h * d, BI(E));
        }
    }
}

/* Where a call's cache keeps what (see the opening comment). */
typedef struct cache_view {
    float *qkv, *o, *p, *pd;
} cache_view;
static cache_view cache_of(const aim__layer *L, float *cache, size_t batch) {
    const dims g = dims_of(L);
    const size_t TE = g.T * g.E, HTT = g.H * g.T * g.T;
    cache_view v;
    v.qkv = cache;
    v.o = v.qkv + batch * 3 * TE;
    v.p = v.o + batch * TE;
    v.pd = CFG(L)->dropout > 0.0f ? v.p + batch * HTT : v.p;
    return v;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    const aim__attention_cfg *c = CFG(L);
    const dims g = dims_of(L);
    const size_t T = g.T, E = g.E, TE = T * E, HTT = g.H * T * T, rows = a->batch * T;
    const params q = params_of(L, a->params);
    const int train = a->cache != NULL;
    cache_view v;
    if (train) {
        v = cache_of(L, a->cache, a->batch);
    } else {
        v.qkv = a->scratch;
        v.o = v.qkv + a->batch * 3 * TE;
        v.p = v.o + a->batch * TE;
        v.pd = NULL;
    }
    /* [Q K V] = X·W_inᵀ + b_in over every row of the call */
    linear(a->x[0], rows, E, q.w_in, q.b_in, 3 * E, v.qkv);
    for (size_t b = 0; b < a->batch; b++) {
        if (!train) {
            sample_heads(L, v.qkv + b * 3 * TE, v.o + b * TE, v.p, NULL, 0, NULL);
            continue;
        }
        float *pd = a->train && c->dropout > 0.0f ? v.pd + b * HTT : NULL;
        struct aim_rng rng;
        aim__rng_init(&rng, aim__mix64(a->random ^ aim__mix64((uint64_t)(a->b0 + b))));
        sample_heads(L, v.qkv + b * 3 * TE, v.o + b * TE, v.p + b * HTT, pd, 1, &rng);
    }
    /* Y = O·W_oᵀ + b_o */
    linear(v.o, rows, E, q.w_o, q.b_o, E, a->y);
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    const aim__attention_cfg *c = CFG(L);
    const dims g = dims_of(L);
    const size_t T = g.T, E = g.E, d = g.d, ld = 3 * E, TE = T * E, TT = T * T, HTT = g.H * TT;
    const size_t rows = a->batch * T;
    const float scale = 1.0f / sqrtf((float)d);
    const float keep_scale = c->dropout > 0.0f ? 1.0f / (1.0f - c->dropout) : 1.0f;
    const params q = params_of(L, a->params);
    const params dp = params_at(L, a->dparams);
    float *dw_in = dp.w_in, *db_in = dp.b_in, *dw_o = dp.w_o, *db_o = dp.b_o;
    const cache_view v = cache_of(L, a->cache, a->batch);
    float *dP = a->scratch, *dO = dP + TT, *dqkv = dO + a->batch * TE;
    const size_t bs = block_rows(L);
    const float *G = a->dy;
    /* dW_o += Gᵀ·O, db_o += Σ G, dO = G·W_o, over every row of the call */
    aim__sgemm(AIM__TRANS, AIM__NOTRANS, E, E, rows, 1.0f, G, E, v.o, E, 1.0f, dw_o, E);
    if (db_o)
        for (size_t t = 0; t < rows; t++)
            for (size_t j = 0; j < E; j++) db_o[j] += G[t * E + j];
    aim__sgemm(AIM__NOTRANS, AIM__NOTRANS, rows, E, E, 1.0f, G, E, q.w_o, E, 0.0f, dO, E);
    for (size_t b = 0; b < a->batch; b++) {
        const float *qkv = v.qkv + b * 3 * TE, *p = v.p + b * HTT, *pd = v.pd + b * HTT;
        const float *dOb = dO + b * TE;
        float *dq = dqkv + b * 3 * TE;
        for (size_t h = 0; h < g.H; h++) {
            const float *Q = qkv + h * d, *K = qkv + E + h * d, *V = qkv + 2 * E + h * d;
            const float *P = p + h * TT, *Pd = pd + h * TT;
            /* dP' = dO_h·Vᵀ by row blocks, dV = P'ᵀ·dO_h by key blocks */
            for (size_t r0 = 0; r0 < T; r0 += bs) {
                const size_t r1 = r0 + bs < T ? r0 + bs : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(r1 - r0), BI(r1), BI(d), 1.0f,
                            dOb + r0 * E + h * d, BI(E), V, BI(ld), 0.0f, dP + r0 * T, BI(T));
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(r1 - r0), BI(d), BI(T - r0), 1.0f,
                            Pd + r0 * T + r0, BI(T), dOb + r0 * E + h * d, BI(E), 0.0f, dq + 2 * E + r0 * ld + h * d,
                            BI(ld));
            }
            /* dS = P ⊙ (dP − rowsum(dP ⊙ P)), dP = dP' ⊙ mask */
            for (size_t i = 0; i < T; i++) {
                float *r = dP + i * T;
                const float *pr = P + i * T, *pdr = Pd + i * T;
                const size_t len = c->causal ? i + 1 : T;
                if (c->dropout > 0.0f)
                    for (size_t j = 0; j < len; j++) r[j] = pdr[j] != 0.0f ? r[j] * keep_scale : 0.0f;
                float dot = 0.0f;
                for (size_t j = 0; j < len; j++) dot += r[j] * pr[j];
                for (size_t j = 0; j < len; j++) r[j] = pr[j] * (r[j] - dot);
                for (size_t j = len; j < T; j++) r[j] = 0.0f;
            }
            /* dQ = dS·K / sqrt(d) by row blocks, dK = dSᵀ·Q / sqrt(d) by key blocks */
            for (size_t r0 = 0; r0 < T; r0 += bs) {
                const size_t r1 = r0 + bs < T ? r0 + bs : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(r1 - r0), BI(d), BI(r1), scale, dP + r0 * T,
                            BI(T), K, BI(ld), 0.0f, dq + r0 * ld + h * d, BI(ld));
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(r1 - r0), BI(d), BI(T - r0), scale,
                            dP + r0 * T + r0, BI(T), Q + r0 * ld, BI(ld), 0.0f, dq + E + r0 * ld + h * d, BI(ld));
            }
        }
    }
    /* dW_in += dQKVᵀ·X, db_in += Σ dQKV, dX = dQKV·W_in */
    aim__sgemm(AIM__TRANS, AIM__NOTRANS, 3 * E, E, rows, 1.0f, dqkv, ld, a->x[0], E, 1.0f, dw_in, E);
    if (db_in)
        for (size_t t = 0; t < rows; t++)
            for (size_t j = 0; j < 3 * E; j++) db_in[j] += dqkv[t * ld + j];
    if (a->dx[0])
        aim__sgemm(AIM__NOTRANS, AIM__NOTRANS, rows, E, 3 * E, 1.0f, dqkv, ld, q.w_in, E, 0.0f, a->dx[0], E);
}

/* The projections' GEMMs take batch · T rows as an int. */
static aim_status check(const aim__layer *L, const float *const *x, size_t batch, int train, char *msg) {
    (void)x;
    (void)train;
    if (batch > (size_t)INT_MAX / L->in_dims[0]) {
        snprintf(msg, AIM__ERR_CAP, "batch %zu of %zu steps is over the BLAS limit of INT_MAX rows", batch,
                 L->in_dims[0]);
        return AIM_ERR_UNSUPPORTED;
    }
    return AIM_OK;
}

/* Incremental inference needs the mask: position p must not see p + 1 ... */
static int can_step(const aim__layer *L) { return CFG(L)->causal ? AIM__STEP_OWN : AIM__STEP_NO; }

/* Position p of each sequence: its q, k, v from x; k and v join the
 * sequence's state (K then V, T E floats each, row t for position t); the
 * heads attend over rows 0 .. p. The same arithmetic as a full forward's row
 * p but for the order of the score sums (dot products here, a GEMM there). */
static void step(const aim__layer *L, const aim__step *a) {
    const dims g = dims_of(L);
    const size_t T = g.T, E = g.E, d = g.d, n = a->pos + 1;
    const float scale = 1.0f / sqrtf((float)d);
    const params q = params_of(L, a->params);
    float *qkv = a->scratch, *o = qkv + a->batch * 3 * E, *s = o + a->batch * E;
    linear_step(a->x[0], a->batch, E, q.w_in, q.b_in, 3 * E, qkv);
    for (size_t b = 0; b < a->batch; b++) {
        float *K = a->state + b * L->step_state_per_sample, *V = K + T * E;
        const float *r = qkv + b * 3 * E;
        memcpy(K + a->pos * E, r + E, E * sizeof(float));
        memcpy(V + a->pos * E, r + 2 * E, E * sizeof(float));
        float *sb = s + b * T;
        for (size_t h = 0; h < g.H; h++) {
            const float *qh = r + h * d;
            for (size_t t = 0; t < n; t++) {
                const float *kt = K + t * E + h * d;
                float acc = 0.0f;
                for (size_t i = 0; i < d; i++) acc += qh[i] * kt[i];
                sb[t] = acc * scale;
            }
            softmax_row(sb, n, n);
            float *oh = o + b * E + h * d;
            for (size_t i = 0; i < d; i++) oh[i] = 0.0f;
            for (size_t t = 0; t < n; t++) {
                const float *vt = V + t * E + h * d, pt = sb[t];
                for (size_t i = 0; i < d; i++) oh[i] += pt * vt[i];
            }
        }
    }
    linear_step(o, a->batch, E, q.w_o, q.b_o, E, a->y);
}

/* Per sample: the projections 4 T E², the scores and the weighted sum 2 T² E. */
static double macs(const aim__layer *L) {
    const dims g = dims_of(L);
    return 4.0 * (double)g.T * (double)g.E * (double)g.E + 2.0 * (double)g.T * (double)g.T * (double)g.E;
}

/* u64 num_heads, u32 causal, f32 dropout, u32 bias, u32 init */
static void write(const aim__layer *L, aim__writer *w) {
    const aim__attention_cfg *c = CFG(L);
    aim__put_u64(w, c->heads);
    aim__put_u32(w, (uint32_t)c->causal);
    aim__put_f32(w, c->dropout);
    aim__put_u32(w, (uint32_t)c->bias);
    aim__put_u32(w, (uint32_t)c->init);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__attention_cfg *c = AIM__CFG_MUT(aim__attention_cfg, L);
    c->heads = aim__get_size(r);
    c->causal = aim__get_flag(r);
    c->dropout = aim__get_f32(r);
    c->bias = aim__get_flag(r);
    c->init = (aim_init)aim__get_u32(r);
}

const aim__layer_ops aim__attention_ops = {
    .name = "attention",
    .code = 20,
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
    .check = check,
};
