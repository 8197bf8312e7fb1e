/*
 * Layer normalization over the trailing axes of a sample, PyTorch
 * nn.LayerNorm semantics and layout. The last `normalized_dims` axes of a
 * sample hold N values; a sample is G = size / N such groups, each
 * normalized on its own:
 *   μ = Σx / N,   σ² = Σ(x − μ)² / N (biased),   r = 1 / sqrt(σ² + eps)
 *   x̂ = (x − μ) r,   y = x̂ ⊙ γ + β          (y = x̂ without elementwise_affine)
 *   params = γ [N] then β [N]                 (nn.LayerNorm.weight, .bias; init 1 and 0)
 * Backward, with g = dy ⊙ γ (g = dy without affine):
 *   dx = r (g − mean(g) − x̂ mean(g ⊙ x̂))
 *   dγ += Σ dy ⊙ x̂,   dβ += Σ dy              (sums over the batch and the G groups)
 * https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html
 *
 * Statistics are taken in float by the corrected two-pass method: a first
 * pass for a provisional mean μ₀, a second for s₁ = Σ(x − μ₀) and
 * s₂ = Σ(x − μ₀)², then μ = μ₀ + c with c = s₁/N and σ² = (s₂ − s₁²/N) / N,
 * so the rounding of μ₀ does not reach σ² to first order (Chan, Golub &
 * LeVeque 1983). μ is kept as the pair (μ₀, c) and x − μ computed as
 * (x − μ₀) − c, where x − μ₀ is exact for the values near a large mean
 * (Sterbenz): a group whose mean is large against its spread (|μ|/σ ~ 1e4)
 * is normalized to ~1e-6, where rounding μ to one float alone would cost
 * ulp(μ)/σ ~ 1e-3, and the one-pass Σx² − N μ² would lose σ² entirely
 * (tests/test_layer_norm.c measures both against a double reference). Sums
 * run in 8 interleaved lanes, a fixed order the compiler vectorizes.
 *
 * A training forward keeps μ₀, c and r per group (3 G floats a sample); the
 * backward recomputes x̂ from x.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CFG(L) AIM__CFG(aim__layer_norm_cfg, L)
_Static_assert(sizeof(aim__layer_norm_cfg) <= AIM__LAYER_CFG_BYTES, "layer_norm config too large");

#define LANES 8

aim_status aim_layer_norm_config_init(aim_layer_norm_config *c) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    c->normalized_dims = 1;
    c->eps = 1e-5f;
    c->elementwise_affine = 1;
    return AIM_OK;
}

aim_status aim_model_add_layer_norm(aim_model *m, const aim_layer_norm_config *c) {
    aim__layer_norm_cfg k = {0, 0.0f, 0};
    if (c) {
        k.normalized_dims = c->normalized_dims;
        k.eps = c->eps;
        k.affine = c->elementwise_affine != 0;
    }
    return aim__model_add_node(m, &aim__layer_norm_ops, c ? &k : NULL, sizeof k, NULL, 0);
}

/* N: the values of one group (the product of the normalized axes). */
static size_t group_size(const aim__layer *L) {
    size_t n = 1;
    for (size_t d = L->in_rank - CFG(L)->normalized_dims; d < L->in_rank; d++) n *= L->in_dims[d];
    return n;
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    const aim__layer_norm_cfg *c = CFG(L);
    if (c->normalized_dims == 0) {
        snprintf(msg, AIM__ERR_CAP, "normalized_dims must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (!(c->eps > 0.0f) || !isfinite(c->eps)) {
        snprintf(msg, AIM__ERR_CAP, "eps %g must be > 0 and finite", (double)c->eps);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (c->normalized_dims > in[0].rank) {
        char shape[96];
        aim__shape_str(&in[0], shape, sizeof shape);
        snprintf(msg, AIM__ERR_CAP, "normalized_dims %zu exceeds the rank %zu of its input %s", c->normalized_dims,
                 in[0].rank, shape);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    /* The input's sizes were checked when it was made: their product fits. */
    L->out_rank = in[0].rank;
    memcpy(L->out_dims, in[0].dims, sizeof L->out_dims);
    L->out_size = in[0].size;
    const size_t N = group_size(L), G = in[0].size / N;
    L->weight_count = c->affine ? N : 0;
    L->bias_count = c->affine ? N : 0;
    /* μ₀, c and r per group; G <= size, and 3 size floats fit (the size fits INT_MAX). */
    L->cache_per_sample = 3 * G;
    return AIM_OK;
}

static void init(const aim__layer *L, float *params, struct aim_rng *rng) {
    (void)rng;
    for (size_t i = 0; i < L->weight_count; i++) params[i] = 1.0f;      /* γ = 1 */
    memset(params + L->weight_count, 0, L->bias_count * sizeof(float)); /* β = 0 */
}

/* The statistics of one group of N values (the corrected two-pass method
 * above): μ = μ₀ + c, and r = 1 / sqrt(σ² + eps). */
typedef struct stats {
    float mu0, c, r;
} stats;

AIM__HOT static stats group_stats(const float *x, size_t N, float eps) {
    float a[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= N; i += LANES)
        for (size_t k = 0; k < LANES; k++) a[k] += x[i + k];
    float s = 0.0f;
    for (; i < N; i++) s += x[i];
    for (size_t k = 0; k < LANES; k++) s += a[k];
    const float n = (float)N, mu0 = s / n;
    /* Two loops of one accumulator each vectorize cleanly (one of two interleaved ones does not). */
    float a1[LANES] = {0}, a2[LANES] = {0};
    for (i = 0; i + LANES <= N; i += LANES)
        for (size_t k = 0; k < LANES; k++) a1[k] += x[i + k] - mu0;
    for (i = 0; i + LANES <= N; i += LANES)
        for (size_t k = 0; k < LANES; k++) a2[k] += (x[i + k] - mu0) * (x[i + k] - mu0);
    float s1 = 0.0f, s2 = 0.0f;
    for (; i < N; i++) {
        const float d = x[i] - mu0;
        s1 += d;
        s2 += d * d;
    }
    for (size_t k = 0; k < LANES; k++) {
        s1 += a1[k];
        s2 += a2[k];
    }
    float var = (s2 - s1 * s1 / n) / n; /* σ² = (s₂ − s₁²/N) / N */
    if (var < 0.0f) var = 0.0f;
    const stats st = {mu0, s1 / n, 1.0f / sqrtf(var + eps)};
    return st;
}

/* x̂ = ((x − μ₀) − c) r */
static inline float xhat(float x, stats st) { return ((x - st.mu0) - st.c) * st.r; }

/* y = x̂ ⊙ γ + β (γ, β NULL without affine). */
AIM__HOT static void group_forward(const float *x, float *y, size_t N, stats st, const float *gamma,
                                   const float *beta) {
    if (gamma)
        for (size_t i = 0; i < N; i++) y[i] = xhat(x[i], st) * gamma[i] + beta[i];
    else
        for (size_t i = 0; i < N; i++) y[i] = xhat(x[i], st);
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    const aim__layer_norm_cfg *c = CFG(L);
    const size_t N = group_size(L), groups = a->batch * (L->in_size / N);
    const float *gamma = c->affine ? a->params : NULL, *beta = c->affine ? a->params + N : NULL;
    for (size_t g = 0; g < groups; g++) {
        const float *x = a->x[0] + g * N;
        const stats st = group_stats(x, N, c->eps);
        if (a->cache) {
            a->cache[3 * g] = st.mu0;
            a->cache[3 * g + 1] = st.c;
            a->cache[3 * g + 2] = st.r;
        }
        group_forward(x, a->y + g * N, N, st, gamma, beta);
    }
}

/* One group's backward: dγ += dy ⊙ x̂, dβ += dy; then, when dx is wanted,
 * g = dy ⊙ γ (in place in dy, which a backward may overwrite) and
 * dx = r (g − Σg/N − x̂ Σ(g ⊙ x̂)/N). dx may be dy. */
AIM__HOT static void group_backward(const float *x, float *dy, float *dx, size_t N, stats st, const float *gamma,
                                    float *dgamma, float *dbeta) {
    if (dgamma)
        for (size_t i = 0; i < N; i++) {
            dgamma[i] += dy[i] * xhat(x[i], st);
            dbeta[i] += dy[i];
        }
    if (!dx) return;
    float *g = dy;
    if (gamma)
        for (size_t i = 0; i < N; i++) g[i] = dy[i] * gamma[i];
    float a1[LANES] = {0}, a2[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= N; i += LANES)
        for (size_t k = 0; k < LANES; k++) a1[k] += g[i + k];
    for (i = 0; i + LANES <= N; i += LANES)
        for (size_t k = 0; k < LANES; k++) a2[k] += g[i + k] * xhat(x[i + k], st);
    float sg = 0.0f, sgx = 0.0f;
    for (; i < N; i++) {
        sg += g[i];
        sgx += g[i] * xhat(x[i], st);
    }
    for (size_t k = 0; k < LANES; k++) {
        sg += a1[k];
        sgx += a2[k];
    }
    const float n = (float)N, mg = sg / n, mgx = sgx / n;
    for (i = 0; i < N; i++) dx[i] = st.r * (g[i] - mg - xhat(x[i], st) * mgx);
}

/* Groups that leave the first axis (time) out are one position each. */
static int can_step(const aim__layer *L) {
    return CFG(L)->normalized_dims < L->in_rank ? AIM__STEP_POSITIONWISE : AIM__STEP_NO;
}

static void backward(const aim__layer *L, const aim__bwd *a) {
    const aim__layer_norm_cfg *c = CFG(L);
    const size_t N = group_size(L), groups = a->batch * (L->in_size / N);
    const float *gamma = c->affine ? a->params : NULL;
    float *dgamma = c->affine ? a->dparams : NULL, *dbeta = c->affine ? a->dparams + N : NULL;
    float *dx = a->dx[0];
    if (!dgamma && !dx) return;
    for (size_t g = 0; g < groups; g++) {
        const stats st = {a->cache[3 * g], a->cache[3 * g + 1], a->cache[3 * g + 2]};
        group_backward(a->x[0] + g * N, a->dy + g * N, dx ? dx + g * N : NULL, N, st, gamma, dgamma, dbeta);
    }
}

/* Per value: the two statistic passes, the normalization and the affine. */
static double macs(const aim__layer *L) { return 4.0 * (double)L->in_size; }

/* u64 normalized_dims, f32 eps, u32 elementwise_affine */
static void write(const aim__layer *L, aim__writer *w) {
    const aim__layer_norm_cfg *c = CFG(L);
    aim__put_u64(w, c->normalized_dims);
    aim__put_f32(w, c->eps);
    aim__put_u32(w, (uint32_t)c->affine);
}

static void read(aim__reader *r, aim__layer *L) {
    aim__layer_norm_cfg *c = AIM__CFG_MUT(aim__layer_norm_cfg, L);
    c->normalized_dims = aim__get_size(r);
    c->eps = aim__get_f32(r);
    c->affine = aim__get_flag(r);
}

const aim__layer_ops aim__layer_norm_ops = {
    .name = "layer_norm",
    .code = 12,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .init = init,
    .forward = forward,
    .backward = backward,
    .macs = macs,
    .write = write,
    .read = read,
    .can_step = can_step,
};
