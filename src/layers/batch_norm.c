/*
 * Batch normalization over the channels (axis 0) of a sample, PyTorch
 * semantics and layout:
 *   rank 1 (C)       = nn.BatchNorm1d on (N, C)
 *   rank 2 (C, L)    = nn.BatchNorm1d on (N, C, L)
 *   rank 3 (C, H, W) = nn.BatchNorm2d on (N, C, H, W)
 * https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm1d.html
 * https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html
 *
 * A sample is (C, S) with S the spatial size; per channel c the statistics
 * run over the n = N·S values of the batch:
 *   training:  μ = mean x,  σ² = mean (x − μ)² (biased),  x̂ = (x − μ) / sqrt(σ² + eps)
 *              y = γ x̂ + β
 *              running_mean = (1 − m) running_mean + m μ
 *              running_var  = (1 − m) running_var  + m σ² n / (n − 1)   (unbiased)
 *   inference: y = γ (x − running_mean) / sqrt(running_var + eps) + β
 * Parameters γ [C] (weights) then β [C] (bias) with `affine` (else γ = 1,
 * β = 0); buffers running_mean [C] then running_var [C], initialized to 0
 * and 1. The training forward keeps μ and 1/sqrt(σ² + eps) per channel in
 * the whole-batch cache for the backward (the arithmetic per element is
 * done in double, so x − μ loses nothing on a channel far from 0):
 *   dγ += Σ dy x̂,  dβ += Σ dy,
 *   dx  = (γ / sqrt(σ² + eps)) (dy − mean(dy) − x̂ mean(dy ⊙ x̂))
 * with sums and means over N and S.
 *
 * Training needs the whole batch (batch_coupled): a thread pool hands each
 * worker the whole batch and a share of the channels (aim__split(C, parts)).
 * A channel's sums are accumulated in double in one fixed order, so its
 * results are the same bits whatever the thread count.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdio.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__batch_norm_cfg, L)
_Static_assert(sizeof(aim__batch_norm_cfg) <= AIM__LAYER_CFG_BYTES, "batch_norm config too large");

/* Channels and the spatial size of one sample. */
static size_t channels(const aim__layer *L) { return L->in_dims[0]; }
static size_t spatial(const aim__layer *L) { return L->in_size / L->in_dims[0]; }

/* The reductions below keep LANES partial sums, lane k taking elements
 * i ≡ k (mod LANES), added up in one fixed order at the end: the same
 * bits on every call and on every instruction set (the lanes are what the
 * vector units compute; nothing is reassociated). */
#define LANES 8

/* With d = x − K: s1 += Σ d, s2 += Σ d² over one row, in double. d and d²
 * are exact in double (x, K float), so only the additions round; K, a value
 * of the channel, keeps Σ d² − (Σ d)² / n free of cancellation. */
AIM__HOT static void shifted_sums_row(const float *x, size_t n, double K, double *s1, double *s2) {
    double a[LANES] = {0}, q[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++) {
            const double d = (double)x[i + k] - K;
            a[k] += d;
            q[k] += d * d;
        }
    for (size_t k = 0; i < n; i++, k++) {
        const double d = (double)x[i] - K;
        a[k] += d;
        q[k] += d * d;
    }
    double sa = 0.0, sq = 0.0;
    for (size_t k = 0; k < LANES; k++) {
        sa += a[k];
        sq += q[k];
    }
    *s1 += sa;
    *s2 += sq;
}

/* Σ dy and Σ dy (x − mu) over one row, in double, likewise. */
AIM__HOT static void dot_row(const float *dy, const float *x, size_t n, double mu, double *sdy, double *sdyx) {
    double a[LANES] = {0}, b[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++) {
            const double g = (double)dy[i + k];
            a[k] += g;
            b[k] += g * ((double)x[i + k] - mu);
        }
    for (size_t k = 0; i < n; i++, k++) {
        const double g = (double)dy[i];
        a[k] += g;
        b[k] += g * ((double)x[i] - mu);
    }
    double sa = 0.0, sb = 0.0;
    for (size_t k = 0; k < LANES; k++) {
        sa += a[k];
        sb += b[k];
    }
    *sdy += sa;
    *sdyx += sb;
}

/* y = (x − mu) a + b over one row of a channel, in double: x − μ loses
 * nothing on a channel whose mean is large against its spread. */
AIM__HOT static void affine_row(const float *restrict x, float *restrict y, size_t n, double mu, double a, double b) {
    for (size_t i = 0; i < n; i++) y[i] = (float)(((double)x[i] - mu) * a + b);
}

/* dx = k (dy − m1 − (x − mu) m2) over one row, in double. */
AIM__HOT static void dx_row(const float *restrict dy, const float *restrict x, float *restrict dx, size_t n, double mu,
                            double k, double m1, double m2) {
    for (size_t i = 0; i < n; i++) dx[i] = (float)(k * ((double)dy[i] - m1 - ((double)x[i] - mu) * m2));
}

/* The whole-batch cache of C channels: μ as two floats (μ ≈ hi + lo, so the
 * backward sees the forward's mean to ~48 bits), then 1/sqrt(σ² + eps). */
#define MEAN_HI(cache, C, c) ((cache)[c])
#define MEAN_LO(cache, C, c) ((cache)[(C) + (c)])
#define INV_STD(cache, C, c) ((cache)[2 * (C) + (c)])

/* Training forward of channels [c0, c0 + nc) over the whole batch. */
static void forward_train(const aim__layer *L, const aim__fwd *a, size_t c0, size_t nc) {
    const aim__batch_norm_cfg *cfg = CFG(L);
    const size_t C = channels(L), S = spatial(L), N = a->batch, CS = C * S;
    const size_t n = N * S;
    const float *gamma = cfg->affine ? a->params : NULL, *beta = cfg->affine ? a->params + C : NULL;
    float *bc = a->batch_cache;
    float *rmean = a->buffers_out, *rvar = a->buffers_out + C;
    const double m = (double)cfg->momentum;
    for (size_t c = c0; c < c0 + nc; c++) {
        /* μ = K + Σ d / n,  σ² = (Σ d² − (Σ d)² / n) / n,  d = x − K (K: the channel's first value) */
        const double K = (double)a->x[0][c * S];
        double s1 = 0.0, s2 = 0.0;
        for (size_t b = 0; b < N; b++) shifted_sums_row(a->x[0] + b * CS + c * S, S, K, &s1, &s2);
        const double mu = K + s1 / (double)n;
        double var = (s2 - s1 * s1 / (double)n) / (double)n;
        if (var < 0.0) var = 0.0; /* rounding, when every value is the same */
        const double inv = 1.0 / sqrt(var + (double)cfg->eps);
        MEAN_HI(bc, C, c) = (float)mu;
        MEAN_LO(bc, C, c) = (float)(mu - (double)MEAN_HI(bc, C, c));
        INV_STD(bc, C, c) = (float)inv;
        /* y = (x − μ) (γ / σ) + β */
        const double g = gamma ? (double)gamma[c] : 1.0, bb = beta ? (double)beta[c] : 0.0;
        for (size_t b = 0; b < N; b++) affine_row(a->x[0] + b * CS + c * S, a->y + b * CS + c * S, S, mu, inv * g, bb);
        /* running statistics, the variance unbiased (n > 1: check() refuses n == 1) */
        const double unbiased = n > 1 ? var * (double)n / (double)(n - 1) : var;
        rmean[c] = (float)((1.0 - m) * (double)rmean[c] + m * mu);
        rvar[c] = (float)((1.0 - m) * (double)rvar[c] + m * unbiased);
    }
}

/* Inference: y = (x − running_mean) γ / sqrt(running_var + eps) + β, per sample. */
static void forward_infer(const aim__layer *L, const aim__fwd *a) {
    const aim__batch_norm_cfg *cfg = CFG(L);
    const size_t C = channels(L), S = spatial(L), CS = C * S;
    const float *gamma = cfg->affine ? a->params : NULL, *beta = cfg->affine ? a->params + C : NULL;
    const float *rmean = a->buffers, *rvar = a->buffers + C;
    for (size_t c = 0; c < C; c++) {
        const double g = gamma ? (double)gamma[c] : 1.0, bb = beta ? (double)beta[c] : 0.0;
        const double scale = g / sqrt((double)rvar[c] + (double)cfg->eps);
        for (size_t b = 0; b < a->batch; b++)
            affine_row(a->x[0] + b * CS + c * S, a->y + b * CS + c * S, S, (double)rmean[c], scale, bb);
    }
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    if (!a->train) {
        forward_infer(L, a);
        return;
    }
    size_t c0, nc;
    aim__split(channels(L), a->parts, a->part, &c0, &nc);
    forward_train(L, a, c0, nc);
}

/* Backward through the training statistics, channels [c0, c0 + nc):
 *   x̂ = (x − μ) inv,  Σdy,  Σdy x̂ = inv Σ dy (x − μ)
 *   dγ += Σ dy x̂,  dβ += Σ dy
 *   dx = γ inv (dy − Σdy / n − (x − μ) inv Σdy x̂ / n) */
static void backward(const aim__layer *L, const aim__bwd *a) {
    const aim__batch_norm_cfg *cfg = CFG(L);
    const size_t C = channels(L), S = spatial(L), N = a->batch, CS = C * S;
    const size_t n = N * S;
    size_t c0, nc;
    aim__split(C, a->parts, a->part, &c0, &nc);
    const float *gamma = cfg->affine ? a->params : NULL;
    float *dgamma = cfg->affine ? a->dparams : NULL, *dbeta = cfg->affine ? a->dparams + C : NULL;
    const float *bc = a->batch_cache;
    float *dx = a->dx[0];
    for (size_t c = c0; c < c0 + nc; c++) {
        const double mu = (double)MEAN_HI(bc, C, c) + (double)MEAN_LO(bc, C, c), inv = (double)INV_STD(bc, C, c);
        double sdy = 0.0, sdxm = 0.0;
        for (size_t b = 0; b < N; b++) dot_row(a->dy + b * CS + c * S, a->x[0] + b * CS + c * S, S, mu, &sdy, &sdxm);
        const double sdyx = sdxm * inv; /* Σ dy x̂ */
        if (dgamma) {
            dgamma[c] += (float)sdyx;
            dbeta[c] += (float)sdy;
        }
        if (!dx) continue;
        const double k = (gamma ? (double)gamma[c] : 1.0) * inv;
        const double m1 = sdy / (double)n, m2 = sdyx * inv / (double)n;
        for (size_t b = 0; b < N; b++)
            dx_row(a->dy + b * CS + c * S, a->x[0] + b * CS + c * S, dx + b * CS + c * S, S, mu, k, m1, m2);
    }
}

/* γ = 1, β = 0 (PyTorch's reset_parameters; no draw from the generator). */
static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    (void)rng;
    const size_t C = channels(L);
    if (!CFG(L)->affine) return;
    for (size_t c = 0; c < C; c++) {
        params[c] = 1.0f;
        params[C + c] = 0.0f;
    }
}

/* running_mean = 0, running_var = 1 */
static void init_buffers(const aim__layer *L, float *buffers) {
    const size_t C = channels(L);
    for (size_t c = 0; c < C; c++) {
        buffers[c] = 0.0f;
        buffers[C + c] = 1.0f;
    }
}

/* A training batch needs more than one value per channel (PyTorch refuses
 * it too: the unbiased variance would divide by 0). */
static aim_status check(const aim__layer *L, const float *const *x, size_t batch, int train, char *msg) {
    (void)x;
    if (train && batch * spatial(L) == 1) {
        snprintf(msg, AIM__ERR_CAP,
                 "batch statistics need more than 1 value per channel: a training batch of 1 sample of shape (%zu)",
                 channels(L));
        return AIM_ERR_INVALID_ARGUMENT;
    }
    return AIM_OK;
}

aim_status aim_batch_norm_config_init(aim_batch_norm_config *c) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    c->momentum = 0.1f;
    c->eps = 1e-5f;
    c->affine = 1;
    return AIM_OK;
}

aim_status aim_model_add_batch_norm(aim_model *m, const aim_batch_norm_config *c) {
    aim__batch_norm_cfg k = {0.0f, 0.0f, 0};
    if (c) {
        k.momentum = c->momentum;
        k.eps = c->eps;
        k.affine = c->affine != 0;
    }
    return aim__model_add_node(m, &aim__batch_norm_ops, c ? &k : NULL, sizeof k, NULL, 0);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const aim__batch_norm_cfg *c = CFG(L);
    if (!(c->momentum >= 0.0f && c->momentum <= 1.0f)) {
        snprintf(msg, AIM__ERR_CAP, "momentum %g must lie in [0, 1]", (double)c->momentum);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!(c->eps > 0.0f) || !aim__all_finite(&c->eps, 1)) {
        snprintf(msg, AIM__ERR_CAP, "eps %g must be finite and > 0", (double)c->eps);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (in[0].rank < 1 || in[0].rank > 3) {
        snprintf(msg, AIM__ERR_CAP, "input must be (C), (C, L) or (C, H, W) (rank 1 to 3), got rank %zu", in[0].rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t C = in[0].dims[0];
    L->out_rank = in[0].rank;
    for (size_t d = 0; d < in[0].rank; d++) L->out_dims[d] = in[0].dims[d];
    L->out_size = in[0].size;
    L->weight_count = c->affine ? C : 0;
    L->bias_count = c->affine ? C : 0;
    /* μ (two floats) and 1/σ per channel (C <= in_size <= INT_MAX: no overflow) */
    L->cache_floats = 3 * C;
    L->buffer_count = 2 * C;
    return AIM_OK;
}

/* Two passes for the statistics, one for y. */
static double macs(const aim__layer *L) { return 3.0 * (double)L->out_size; }

/* f32 momentum, f32 eps, u32 affine */
static void write(const aim__layer *L, aim__writer *w) {
    aim__put_f32(w, CFG(L)->momentum);
    aim__put_f32(w, CFG(L)->eps);
    aim__put_u32(w, (uint32_t)CFG(L)->affine);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__batch_norm_cfg *c = AIM__CFG_MUT(aim__batch_norm_cfg, L);
    c->momentum = aim__get_f32(r);
    c->eps = aim__get_f32(r);
    c->affine = aim__get_flag(r);
}

const aim__layer_ops aim__batch_norm_ops = {
    .name = "batch_norm",
    .code = 10,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .init = init,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
    .init_buffers = init_buffers,
    .check = check,
    .batch_coupled = 1,
};
