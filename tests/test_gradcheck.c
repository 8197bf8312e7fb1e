/* Central-difference gradient checks (genann-style) of every backward pass:
 * dense layers with each fused activation, standalone activation layers, a
 * three-layer stack, every loss on plain buffers and through the model.
 *
 * Each check compares the analytic gradient with
 *     n = (L(v + h) - L(v - h)) / ((v + h) - (v - h))
 * for every parameter and every input value v, where the denominator is the
 * difference of the two float values actually used. Each check also guards
 * against passing vacuously on an all-zero gradient, and a first test proves
 * that the checker catches a gradient off by 10%. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"

/* ------------------------------------------------------------------------ */
/* Tolerances                                                               */
/* ------------------------------------------------------------------------ */

/* A value passes when |a - n| <= rtol * max(|a|, |n|) + atol, n from a
 * central difference of step h (gradcheck_tol, tests/support.h). */

/* Model checks: L = sum(output * R), forward in float32, L summed in double.
 * Inputs lie in [-1, 1), R in +-[0.25, 1], weights in +-[0.1, 1] / sqrt(fan_in),
 * biases in [-0.5, 0.5), so pre-activations are O(1) and gradients O(0.01..5).
 *  - Truncation error of the central difference is h^2/6 |L'''|: ~1e-4 at
 *    most for h = 1e-2 with the smooth activations at O(1) points, and exactly
 *    0 for relu and leaky relu, whose kinks are kept 4h away (draw_kink_free()).
 *  - Rounding: the few outputs a perturbation touches carry a float32 error of
 *    ~1e-7 each, so L(v+h) - L(v-h) is off by ~1e-6 and n by ~1e-4 at most.
 * Measured over 300 seeds x all shapes: max |a - n| = 1.9e-4, i.e. at most
 * 19% of atol = 1e-3 (1.2% of the tolerance on the two seeds used here). The
 * 1% relative term absorbs float rounding on large gradients. A real bug (a
 * missing factor, a wrong derivative, a transposed index, a dropped term)
 * moves values by far more: a single entry off by 10% is reported once
 * 0.1 |a| > 0.011 |a| + 1e-3 + noise, i.e. from |a| ~ 0.012, which
 * test_checker_detects_wrong_gradient shows for every entry >= 0.02. */
static const gradcheck_tol MODEL_TOL = {1e-2, 1e-2, 1e-3};

/* Loss checks: the loss is a mean, so its gradients are O(1 / count), down to
 * ~1e-3 for 49 elements, and atol must be much smaller than above. Whatever
 * the library sums in, the loss comes back as one float below 4, so each
 * L(v +- h) is rounded by up to half an ulp (1.2e-7) and n may be off by
 * 2.4e-7 / 2h = 1.2e-5 at h = 1e-2, 12% of atol (at h = 1e-3 this alone
 * reached 1.2e-4 and failed). Truncation, h^2/6 |f'''| / count, is 0 for MSE
 * (quadratic) and below 2e-6 for the logit losses, whose third derivatives
 * (those of softplus and log-sum-exp) are at most 0.1; the model-level
 * checks add smooth tanh/sigmoid layers with |w| <= 1.
 * Measured: at most 15% of the tolerance on the seeds used here.
 * A 10% error on any entry >= 1.2e-3 fails: 0.1 |a| > 0.011 |a| + 1e-4. */
static const gradcheck_tol LOSS_TOL = {1e-2, 1e-2, 1e-4};

/* BCE on probabilities has |f'''| = |2 (1-t) / (1-y)^3 - 2 t / y^3|, up to
 * 1.6e4 at y = 0.05, so it needs a smaller step: at h = 2e-3 truncation is
 * h^2/6 |f'''| / count <= 1.1e-2 / count, and that only where y is near 0.05
 * or 0.95, where |f'| = |y - t| / (y (1-y)) is itself large unless t ~ y, so
 * the relative term covers it (worst over 300 seeds: 47% of the tolerance).
 * Rounding: 2.4e-7 / 2h = 6e-5 at most. */
static const gradcheck_tol BCE_TOL = {2e-3, 1e-2, 1e-4};

static const gradcheck_tol *loss_tol(int kind) { return kind == AIM_LOSS_BCE ? &BCE_TOL : &LOSS_TOL; }

/* Guards against passing on a (near) zero gradient, which is what a numeric
 * gradient matches when the forward pass ignores a parameter (the shared
 * checker's, tests/support.h):
 *  - smooth activations and losses (GRADCHECK_DENSE): each part at least half
 *    nonzero (|g| > GRADCHECK_NONZERO = 1e-6);
 *  - relu and leaky relu (GRADCHECK_SPARSE): each part not all zero (relu
 *    zeroes the rows of units dead over the whole batch);
 *  - both: the max |g| of the case above GRADCHECK_MIN_MAX = 1e-3;
 *  - softmax over one value, whose gradient is identically 0
 *    (GRADCHECK_NEAR_ZERO): |g| <= GRADCHECK_ZERO_LIMIT = 1e-6 everywhere.
 * The same guard applies to the parameters and the input. */

/* ------------------------------------------------------------------------ */
/* Worst agreement, per family                                              */
/* ------------------------------------------------------------------------ */

typedef enum gc_family {
    FAMILY_DENSE,      /* dense layer with a fused activation */
    FAMILY_ACT_LAYER,  /* dense identity + standalone activation layer */
    FAMILY_STACK,      /* dense relu -> dense tanh -> dense */
    FAMILY_LOSS,       /* aim_loss / aim_loss_sparse on plain buffers */
    FAMILY_MODEL_LOSS, /* aim_model_loss(_sparse) + aim_model_backward(m, NULL) */
    FAMILY_COUNT
} gc_family;
static const char *const FAMILY_NAMES[FAMILY_COUNT] = {"dense", "activation layer", "stack", "loss",
                                                      "model loss"};
static gradcheck_worst g_worst[FAMILY_COUNT];

/* Compares one part (e.g. "d loss / d pred") of one case and checks its
 * guard; fails the test with the first bad entry's numbers. Returns the
 * part's max |a| for the case guard. */
static double gc_expect(gc_family family, const char *label, const char *part, const float *a, const double *num,
                        size_t n, const gradcheck_tol *tol, gradcheck_guard guard) {
    char why[GRADCHECK_WHY];
    double max_abs_a = 0.0;
    if (!gradcheck_part(label, part, a, num, n, tol, guard, &g_worst[family], &max_abs_a, why, sizeof why))
        fail_msg("%s", why);
    return max_abs_a;
}

static void gc_expect_case(const char *label, double max_abs_a, gradcheck_guard guard) {
    char why[GRADCHECK_WHY];
    if (!gradcheck_case_ok(label, max_abs_a, guard, why, sizeof why)) fail_msg("%s", why);
}

/* ------------------------------------------------------------------------ */
/* Models: the shared checker (gradcheck_model, tests/support.h)            */
/* ------------------------------------------------------------------------ */

/* Full check of a model case: the analytic gradients of L (a weighted sum
 * of the outputs, or a loss) against central differences of step tol->h in
 * every parameter and every input value, which must come back bit-exactly;
 * every layer's weight and bias, and the input, each with `guard`. */
static void gc_check_model(const gradcheck_case *c, gc_family family, const char *label, const gradcheck_tol *tol,
                           gradcheck_guard guard) {
    char why[GRADCHECK_WHY];
    if (!gradcheck_model(c, tol, guard, guard, &g_worst[family], label, why, sizeof why)) fail_msg("%s", why);
}

/* ------------------------------------------------------------------------ */
/* Model construction and test points                                       */
/* ------------------------------------------------------------------------ */

static aim_model *new_model(size_t in) {
    aim_model *m = NULL;
    const size_t dims[1] = {in};
    assert_int_equal(aim_model_create(NULL, 1, dims, &m), AIM_OK);
    assert_non_null(m);
    return m;
}

static void add_dense(aim_model *m, size_t units, aim_activation act, float alpha, int use_bias) {
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, units, act), AIM_OK);
    dc.alpha = alpha;
    dc.use_bias = use_bias ? 1 : 0;
    assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
}

static void compile_model(aim_model *m, size_t batch, uint64_t seed) {
    aim_compile_config cc;
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = batch;
    cc.input_gradient = 1;
    cc.seed = seed;
    assert_int_equal(aim_model_compile(m, &cc), AIM_OK);
}

/* Values of random sign with magnitudes in [lo, hi] (never near 0). */
static void fill_signed(float *x, size_t n, uint64_t seed, float lo, float hi) {
    fill_uniform(x, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = copysignf(lo + (hi - lo) * fabsf(x[i]), x[i]);
}

/* Overwrites a dense layer's parameters with a generic point independent of
 * the library's initializer: weights +-[0.1, 1] / sqrt(fan_in) (never near 0,
 * so no unit is trivially dead), biases in [-0.5, 0.5). Checks the layout. */
static void fill_dense_params(aim_model *m, size_t layer, size_t fan_in, size_t units, int use_bias,
                              uint64_t seed) {
    float *p = NULL;
    size_t count = 0, off = 0, wc = 0, bc = 0;
    assert_int_equal(aim_model_parameters(m, &p, &count), AIM_OK);
    assert_int_equal(aim_model_layer_parameters(m, layer, &off, &wc, &bc), AIM_OK);
    assert_int_equal(wc, units * fan_in);
    assert_int_equal(bc, use_bias ? units : 0);
    assert_true(off + wc + bc <= count);
    const float scale = 1.0f / sqrtf((float)fan_in);
    fill_signed(p + off, wc, seed, 0.1f, 1.0f);
    for (size_t i = 0; i < wc; i++) p[off + i] *= scale;
    if (bc > 0) fill_uniform(p + off + wc, bc, seed ^ 0xB1A5ull, -0.5f, 0.5f);
}

static int is_kinked(aim_activation act) { return act == AIM_ACT_RELU || act == AIM_ACT_LEAKY_RELU; }

/* Whether sample x (in floats) keeps every pre-activation z = W x + b of the
 * dense layer at `off` at least `margin` away from 0, with at least one unit
 * active (z > 0) so that relu does not zero the whole sample. */
static int sample_kink_free(const float *p, size_t off, size_t in, size_t units, int use_bias, const float *x,
                            double margin) {
    int active = 0;
    for (size_t j = 0; j < units; j++) {
        double z = use_bias ? (double)p[off + units * in + j] : 0.0;
        for (size_t k = 0; k < in; k++) z += (double)p[off + j * in + k] * (double)x[k];
        if (fabs(z) < margin) return 0;
        if (z > 0.0) active = 1;
    }
    return active;
}

/* Draws parameters of dense layer 0 and inputs in [-1, 1) such that no
 * pre-activation of layer 0 is within `margin` of relu's kink. Since
 * |x| <= 1, |w| <= 1 and dz/db = 1, one perturbation by h moves any z by at
 * most h, so margin = 4h guarantees that L is linear in each perturbed value
 * over [v - h, v + h] and the central difference is exact. */
static void draw_kink_free(aim_model *m, size_t in, size_t units, int use_bias, size_t batch, float *x,
                           uint64_t seed, double margin) {
    float *p = NULL;
    size_t count = 0, off = 0, wc = 0, bc = 0;
    assert_int_equal(aim_model_parameters(m, &p, &count), AIM_OK);
    assert_int_equal(aim_model_layer_parameters(m, 0, &off, &wc, &bc), AIM_OK);
    for (uint64_t attempt = 0; attempt < 50; attempt++) {
        fill_dense_params(m, 0, in, units, use_bias, seed + 1000003u * attempt);
        size_t b = 0;
        for (; b < batch; b++) {
            float *xb = x + b * in;
            int ok = 0;
            for (uint64_t t = 0; t < 200 && !ok; t++) {
                fill_uniform(xb, in, (seed * 31u + b) * 7919u + t + 1000u * attempt, -1.0f, 1.0f);
                ok = sample_kink_free(p, off, in, units, use_bias, xb, margin);
            }
            if (!ok) break;
        }
        if (b == batch) return;
    }
    fail_msg("could not draw a kink-free point (in %zu, units %zu, batch %zu)", in, units, batch);
}

/* ------------------------------------------------------------------------ */
/* Dense layer and activation layer checks                                  */
/* ------------------------------------------------------------------------ */

typedef struct act_param {
    aim_activation act;
    float alpha;
    const char *name;
} act_param;

static const act_param ACTS[] = {
    {AIM_ACT_IDENTITY, 0.01f, "identity"},    {AIM_ACT_RELU, 0.01f, "relu"},
    {AIM_ACT_LEAKY_RELU, 0.01f, "leaky0.01"}, {AIM_ACT_LEAKY_RELU, 0.2f, "leaky0.2"},
    {AIM_ACT_SIGMOID, 0.01f, "sigmoid"},      {AIM_ACT_TANH, 0.01f, "tanh"},
    {AIM_ACT_SOFTMAX, 0.01f, "softmax"},      {AIM_ACT_GELU, 0.01f, "gelu"},
};

/* (in, out, batch): every size of {1, 3, 7} appears three times in each slot. */
static const size_t SHAPES[][3] = {
    {1, 1, 1}, {1, 3, 7}, {1, 7, 3}, {3, 1, 7}, {3, 3, 3}, {3, 7, 1}, {7, 1, 3}, {7, 3, 1}, {7, 7, 7},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

#ifndef GC_SEEDS /* -DGC_SEEDS=1,2,3,... to sweep many points by hand */
#define GC_SEEDS 11, 29
#endif
static const uint64_t SEEDS[] = {GC_SEEDS};
#define N_SEEDS (sizeof SEEDS / sizeof SEEDS[0])

/* One dense layer with fused `act` (standalone = 0), or a dense identity
 * layer followed by aim_model_add_activation(act) (standalone = 1). */
static void check_dense_case(const act_param *ap, int standalone, size_t in, size_t out, size_t batch,
                             int use_bias, uint64_t seed) {
    aim_model *m = new_model(in);
    if (standalone) {
        add_dense(m, out, AIM_ACT_IDENTITY, 0.01f, use_bias);
        assert_int_equal(aim_model_add_activation(m, ap->act, ap->alpha), AIM_OK);
        assert_int_equal(aim_model_layer_count(m), 2);
    } else {
        add_dense(m, out, ap->act, ap->alpha, use_bias);
        assert_int_equal(aim_model_layer_count(m), 1);
    }
    compile_model(m, batch, seed);
    assert_int_equal(aim_model_input_size(m), in);
    assert_int_equal(aim_model_output_size(m), out);
    float *p = NULL;
    size_t count = 0;
    assert_int_equal(aim_model_parameters(m, &p, &count), AIM_OK);
    assert_int_equal(count, in * out + (use_bias ? out : 0));

    float *x = calloc(batch * in, sizeof *x);
    float *r = calloc(batch * out, sizeof *r);
    assert_true(x && r);
    if (is_kinked(ap->act)) {
        draw_kink_free(m, in, out, use_bias, batch, x, seed, 4.0 * MODEL_TOL.h);
    } else {
        fill_dense_params(m, 0, in, out, use_bias, seed);
        fill_uniform(x, batch * in, seed * 3u + 1u, -1.0f, 1.0f);
    }
    fill_signed(r, batch * out, seed * 5u + 2u, 0.25f, 1.0f);

    gradcheck_case c = {m, x, batch, in, out, GRADCHECK_WEIGHTED_SUM, r, AIM_LOSS_MSE, NULL, NULL};
    gradcheck_guard guard = is_kinked(ap->act) ? GRADCHECK_SPARSE : GRADCHECK_DENSE;
    /* softmax over a single value is the constant 1: every gradient is 0 */
    if (ap->act == AIM_ACT_SOFTMAX && out == 1) guard = GRADCHECK_NEAR_ZERO;
    char label[128];
    snprintf(label, sizeof label, "%s %s, in %zu out %zu batch %zu, %s, seed %llu",
             standalone ? "dense+activation" : "dense", ap->name, in, out, batch, use_bias ? "bias" : "no bias",
             (unsigned long long)seed);
    gc_check_model(&c, standalone ? FAMILY_ACT_LAYER : FAMILY_DENSE, label, &MODEL_TOL, guard);
    free(x);
    free(r);
    aim_model_free(m);
}

static void run_dense_family(const act_param *ap, int standalone) {
    for (size_t s = 0; s < N_SHAPES; s++)
        for (int bias = 0; bias <= 1; bias++)
            for (size_t k = 0; k < N_SEEDS; k++)
                check_dense_case(ap, standalone, SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], bias, SEEDS[k]);
}

static void test_dense(void **state) { run_dense_family((const act_param *)*state, 0); }

static void test_activation_layer(void **state) { run_dense_family((const act_param *)*state, 1); }

/* ------------------------------------------------------------------------ */
/* Three-layer stack: dense relu -> dense tanh -> dense                     */
/* ------------------------------------------------------------------------ */

static void check_stack_case(size_t in, size_t h1, size_t h2, size_t out, size_t batch, uint64_t seed) {
    aim_model *m = new_model(in);
    add_dense(m, h1, AIM_ACT_RELU, 0.01f, 1);
    add_dense(m, h2, AIM_ACT_TANH, 0.01f, 1);
    add_dense(m, out, AIM_ACT_IDENTITY, 0.01f, 1);
    compile_model(m, batch, seed);
    float *p = NULL;
    size_t count = 0;
    assert_int_equal(aim_model_parameters(m, &p, &count), AIM_OK);
    assert_int_equal(count, (in + 1) * h1 + (h1 + 1) * h2 + (h2 + 1) * out);

    float *x = calloc(batch * in, sizeof *x);
    float *r = calloc(batch * out, sizeof *r);
    assert_true(x && r);
    fill_dense_params(m, 1, h1, h2, 1, seed + 1u);
    fill_dense_params(m, 2, h2, out, 1, seed + 2u);
    /* only layer 0's pre-activations meet a kink; the later layers' parameters
     * do not move them */
    draw_kink_free(m, in, h1, 1, batch, x, seed, 4.0 * MODEL_TOL.h);
    fill_signed(r, batch * out, seed * 5u + 2u, 0.25f, 1.0f);

    gradcheck_case c = {m, x, batch, in, out, GRADCHECK_WEIGHTED_SUM, r, AIM_LOSS_MSE, NULL, NULL};
    char label[128];
    snprintf(label, sizeof label, "stack relu-tanh-identity, %zu-%zu-%zu-%zu batch %zu, seed %llu", in, h1, h2,
             out, batch, (unsigned long long)seed);
    gc_check_model(&c, FAMILY_STACK, label, &MODEL_TOL, GRADCHECK_SPARSE);
    free(x);
    free(r);
    aim_model_free(m);
}

static void test_stack_relu_tanh_identity(void **state) {
    (void)state;
    /* (in, h1, h2, out, batch) */
    static const size_t shapes[][5] = {
        {1, 1, 1, 1, 1}, {1, 3, 3, 1, 3}, {3, 7, 3, 7, 1}, {7, 3, 7, 3, 7}, {3, 7, 7, 1, 7}, {7, 7, 7, 7, 3},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < N_SEEDS; k++)
            check_stack_case(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], SEEDS[k]);
}

/* ------------------------------------------------------------------------ */
/* Losses on plain buffers                                                  */
/* ------------------------------------------------------------------------ */

#define LOSS_SPARSE_KIND (-1) /* loss_param.kind for aim_loss_sparse */

typedef struct loss_param {
    int kind; /* an aim_loss_kind, or LOSS_SPARSE_KIND */
    const char *name;
} loss_param;

static const loss_param LOSSES[] = {
    {AIM_LOSS_MSE, "mse"},
    {AIM_LOSS_BCE, "bce"},
    {AIM_LOSS_BCE_WITH_LOGITS, "bce_with_logits"},
    {AIM_LOSS_SOFTMAX_CROSS_ENTROPY, "softmax_cross_entropy"},
    {LOSS_SPARSE_KIND, "sparse_softmax_cross_entropy"},
};

/* Targets that suit each loss, for (batch, features) values. */
static void fill_targets(int kind, float *t, int32_t *labels, size_t batch, size_t features, uint64_t seed) {
    switch (kind) {
    case AIM_LOSS_MSE:
        fill_uniform(t, batch * features, seed, -2.0f, 2.0f);
        break;
    case AIM_LOSS_BCE:
    case AIM_LOSS_BCE_WITH_LOGITS:
        fill_uniform(t, batch * features, seed, 0.0f, 1.0f); /* soft labels */
        break;
    case AIM_LOSS_SOFTMAX_CROSS_ENTROPY:
        /* each row a probability distribution */
        fill_uniform(t, batch * features, seed, 0.05f, 1.0f);
        for (size_t b = 0; b < batch; b++) {
            double sum = 0.0;
            for (size_t j = 0; j < features; j++) sum += (double)t[b * features + j];
            for (size_t j = 0; j < features; j++) t[b * features + j] = (float)((double)t[b * features + j] / sum);
        }
        break;
    default: { /* sparse: labels uniform in [0, features) */
        float *u = calloc(batch, sizeof *u);
        assert_non_null(u);
        fill_uniform(u, batch, seed, 0.0f, 1.0f);
        for (size_t b = 0; b < batch; b++) {
            size_t label = (size_t)(u[b] * (float)features);
            labels[b] = (int32_t)(label < features ? label : features - 1);
        }
        free(u);
        break;
    }
    }
}

static float loss_value(int kind, const float *pred, const float *t, const int32_t *labels, size_t batch,
                        size_t features) {
    float loss = NAN;
    if (kind == LOSS_SPARSE_KIND)
        assert_int_equal(aim_loss_sparse(pred, labels, batch, features, &loss, NULL), AIM_OK);
    else
        assert_int_equal(aim_loss((aim_loss_kind)kind, pred, t, batch, features, &loss, NULL), AIM_OK);
    assert_true(isfinite(loss));
    return loss;
}

/* The loss at the current predictions, for the shared central difference. */
typedef struct loss_point {
    int kind;
    const float *pred, *t;
    const int32_t *labels;
    size_t batch, features;
} loss_point;

static double loss_objective(void *ctx) {
    const loss_point *lp = ctx;
    return (double)loss_value(lp->kind, lp->pred, lp->t, lp->labels, lp->batch, lp->features);
}

/* Central differences of the loss in each prediction, restored exactly. */
static void loss_numeric(int kind, float *pred, const float *t, const int32_t *labels, size_t batch,
                         size_t features, double h, double *num) {
    loss_point lp = {kind, pred, t, labels, batch, features};
    gradcheck_numeric(pred, batch * features, h, loss_objective, &lp, num);
}

static void check_loss_case(const loss_param *lp, size_t batch, size_t features, uint64_t seed) {
    const size_t n = batch * features;
    const gradcheck_tol *tol = loss_tol(lp->kind);
    float *pred = calloc(n, sizeof *pred);
    float *t = calloc(n, sizeof *t);
    int32_t *labels = calloc(batch, sizeof *labels);
    float *grad = calloc(n, sizeof *grad);
    double *num = calloc(n, sizeof *num);
    assert_true(pred && t && labels && grad && num);

    if (lp->kind == AIM_LOSS_BCE)
        fill_uniform(pred, n, seed, 0.05f, 0.95f); /* probabilities away from the log clamp */
    else if (lp->kind == AIM_LOSS_MSE)
        fill_uniform(pred, n, seed, -2.0f, 2.0f);
    else
        fill_uniform(pred, n, seed, -3.0f, 3.0f); /* logits */
    fill_targets(lp->kind, t, labels, batch, features, seed * 7u + 3u);

    float loss = NAN;
    if (lp->kind == LOSS_SPARSE_KIND)
        assert_int_equal(aim_loss_sparse(pred, labels, batch, features, &loss, grad), AIM_OK);
    else
        assert_int_equal(aim_loss((aim_loss_kind)lp->kind, pred, t, batch, features, &loss, grad), AIM_OK);
    assert_true(isfinite(loss));
    /* the loss does not depend on whether the gradient is asked for */
    assert_float_equal(loss, loss_value(lp->kind, pred, t, labels, batch, features), 1e-6f * (1.0f + fabsf(loss)));

    loss_numeric(lp->kind, pred, t, labels, batch, features, tol->h, num);

    /* Softmax cross-entropy over one class is identically 0 (targets sum to 1). */
    int one_class = features == 1 && (lp->kind == AIM_LOSS_SOFTMAX_CROSS_ENTROPY || lp->kind == LOSS_SPARSE_KIND);
    char label[128];
    snprintf(label, sizeof label, "aim_loss %s, batch %zu features %zu, seed %llu", lp->name, batch, features,
             (unsigned long long)seed);
    const gradcheck_guard guard = one_class ? GRADCHECK_NEAR_ZERO : GRADCHECK_DENSE;
    gc_expect_case(label, gc_expect(FAMILY_LOSS, label, "d loss / d pred", grad, num, n, tol, guard), guard);
    free(pred);
    free(t);
    free(labels);
    free(grad);
    free(num);
}

static void test_loss(void **state) {
    const loss_param *lp = (const loss_param *)*state;
    static const size_t sizes[] = {1, 3, 7};
    for (size_t b = 0; b < 3; b++)
        for (size_t f = 0; f < 3; f++)
            for (size_t k = 0; k < N_SEEDS; k++) check_loss_case(lp, sizes[b], sizes[f], SEEDS[k]);
}

/* ------------------------------------------------------------------------ */
/* Losses through the model: aim_model_loss(_sparse) + backward(m, NULL)    */
/* ------------------------------------------------------------------------ */

/* dense tanh (5 units) -> dense `out` (sigmoid for BCE, so its input is a
 * probability; identity otherwise). */
static void check_model_loss_case(const loss_param *lp, size_t in, size_t out, size_t batch, uint64_t seed) {
    const size_t hidden = 5;
    aim_model *m = new_model(in);
    add_dense(m, hidden, AIM_ACT_TANH, 0.01f, 1);
    add_dense(m, out, lp->kind == AIM_LOSS_BCE ? AIM_ACT_SIGMOID : AIM_ACT_IDENTITY, 0.01f, 1);
    compile_model(m, batch, seed);
    fill_dense_params(m, 0, in, hidden, 1, seed);
    fill_dense_params(m, 1, hidden, out, 1, seed + 1u);

    float *x = calloc(batch * in, sizeof *x);
    float *t = calloc(batch * out, sizeof *t);
    int32_t *labels = calloc(batch, sizeof *labels);
    assert_true(x && t && labels);
    fill_uniform(x, batch * in, seed * 3u + 1u, -1.0f, 1.0f);
    fill_targets(lp->kind, t, labels, batch, out, seed * 7u + 3u);

    gradcheck_case c = {m,
                 x,
                 batch,
                 in,
                 out,
                 lp->kind == LOSS_SPARSE_KIND ? GRADCHECK_LOSS_SPARSE : GRADCHECK_LOSS,
                 NULL,
                 lp->kind == LOSS_SPARSE_KIND ? AIM_LOSS_MSE : (aim_loss_kind)lp->kind,
                 t,
                 labels};
    int one_class = out == 1 && (lp->kind == AIM_LOSS_SOFTMAX_CROSS_ENTROPY || lp->kind == LOSS_SPARSE_KIND);
    char label[128];
    snprintf(label, sizeof label, "model loss %s, in %zu out %zu batch %zu, seed %llu", lp->name, in, out, batch,
             (unsigned long long)seed);
    /* A mean loss has small gradients, so use the loss tolerances; through
     * the sigmoid even BCE is smooth in the logits, so h = 1e-2 is fine. */
    gc_check_model(&c, FAMILY_MODEL_LOSS, label, &LOSS_TOL, one_class ? GRADCHECK_NEAR_ZERO : GRADCHECK_DENSE);
    free(x);
    free(t);
    free(labels);
    aim_model_free(m);
}

static void test_model_loss(void **state) {
    const loss_param *lp = (const loss_param *)*state;
    for (size_t s = 0; s < N_SHAPES; s++)
        for (size_t k = 0; k < N_SEEDS; k++)
            check_model_loss_case(lp, SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], SEEDS[k]);
}

/* ------------------------------------------------------------------------ */
/* The checker itself must catch wrong gradients                            */
/* ------------------------------------------------------------------------ */

/* Checks one case, then shows that the comparison rejects each entry with
 * |a| >= min_detect when it alone is scaled by 1.1, rejects the whole
 * gradient scaled by 0.5 or negated, and that the guard rejects zeros. */
static void expect_checker_catches(const float *a, const double *num, size_t n, const gradcheck_tol *tol,
                                   double min_detect) {
    float *bad = calloc(n, sizeof *bad);
    assert_non_null(bad);
    gradcheck_stats s = gradcheck_compare(a, num, n, tol);
    assert_int_equal(s.mismatches, 0);
    char why[GRADCHECK_WHY];
    assert_true(gradcheck_guard_ok(&s, GRADCHECK_DENSE, why, sizeof why));
    assert_true(gradcheck_case_ok("", s.max_abs_a, GRADCHECK_DENSE, why, sizeof why));

    size_t tried = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)a[i]) < min_detect) continue;
        memcpy(bad, a, n * sizeof *bad);
        bad[i] *= 1.1f;
        gradcheck_stats sb = gradcheck_compare(bad, num, n, tol);
        assert_int_equal(sb.mismatches, 1);
        assert_int_equal(sb.first_bad, i);
        tried++;
    }
    assert_true(tried >= 1);

    for (size_t i = 0; i < n; i++) bad[i] = 0.5f * a[i];
    assert_true(gradcheck_compare(bad, num, n, tol).mismatches > 0);
    for (size_t i = 0; i < n; i++) bad[i] = -a[i];
    assert_true(gradcheck_compare(bad, num, n, tol).mismatches > 0);

    /* an all-zero analytic gradient against an all-zero numeric one agrees,
     * so only the guard can reject it */
    double *zeros = calloc(n, sizeof *zeros);
    assert_non_null(zeros);
    memset(bad, 0, n * sizeof *bad);
    gradcheck_stats sz = gradcheck_compare(bad, zeros, n, tol);
    assert_int_equal(sz.mismatches, 0);
    assert_false(gradcheck_guard_ok(&sz, GRADCHECK_DENSE, why, sizeof why));
    assert_false(gradcheck_guard_ok(&sz, GRADCHECK_SPARSE, why, sizeof why));
    assert_false(gradcheck_case_ok("", sz.max_abs_a, GRADCHECK_DENSE, why, sizeof why));
    assert_false(gradcheck_case_ok("", sz.max_abs_a, GRADCHECK_SPARSE, why, sizeof why));
    /* a gradient scaled down to 1e-4 of itself: the case guard notices */
    for (size_t i = 0; i < n; i++) bad[i] = 1e-4f * a[i] / (float)s.max_abs_a;
    const double scaled_max = gradcheck_compare(bad, num, n, tol).max_abs_a;
    assert_false(gradcheck_case_ok("", scaled_max, GRADCHECK_DENSE, why, sizeof why));
    /* more than half of the entries zeroed: the smooth guard notices */
    if (n >= 3) {
        for (size_t i = 0; i < n; i++) bad[i] = (i < n / 2 + 1) ? 0.0f : a[i];
        gradcheck_stats sh = gradcheck_compare(bad, num, n, tol);
        assert_false(gradcheck_guard_ok(&sh, GRADCHECK_DENSE, why, sizeof why));
    }
    free(zeros);
    free(bad);
}

static void test_checker_detects_wrong_gradient(void **state) {
    (void)state;
    /* a model case: dense tanh 3 -> 3, batch 3, its weight gradient */
    const size_t in = 3, out = 3, batch = 3;
    aim_model *m = new_model(in);
    add_dense(m, out, AIM_ACT_TANH, 0.01f, 1);
    compile_model(m, batch, 5);
    fill_dense_params(m, 0, in, out, 1, 5);
    float x[9], r[9];
    fill_uniform(x, 9, 6, -1.0f, 1.0f);
    fill_uniform(r, 9, 7, -1.0f, 1.0f);
    gradcheck_case c = {m, x, batch, in, out, GRADCHECK_WEIGHTED_SUM, r, AIM_LOSS_MSE, NULL, NULL};
    gradcheck_result res;
    char why[GRADCHECK_WHY];
    if (!gradcheck_run(&c, MODEL_TOL.h, &res, why, sizeof why)) {
        gradcheck_result_free(&res);
        fail_msg("%s", why);
    }
    assert_int_equal(res.count, 12);
    assert_int_equal(res.nx, 9);
    /* detection bound: 0.1|a| > rtol * 1.1|a| + atol + noise, |a| > ~0.0112 */
    expect_checker_catches(res.ap, res.num_p, 12, &MODEL_TOL, 0.02);
    expect_checker_catches(res.ax, res.num_x, 9, &MODEL_TOL, 0.02);
    gradcheck_result_free(&res);
    aim_model_free(m);

    /* a loss case: BCE on 3 x 3 probabilities */
    float pred[9], t[9], grad[9];
    double num[9];
    fill_uniform(pred, 9, 8, 0.05f, 0.95f);
    fill_uniform(t, 9, 9, 0.0f, 1.0f);
    float loss = 0.0f;
    assert_int_equal(aim_loss(AIM_LOSS_BCE, pred, t, 3, 3, &loss, grad), AIM_OK);
    loss_numeric(AIM_LOSS_BCE, pred, t, NULL, 3, 3, BCE_TOL.h, num);
    /* detection bound: 0.1|a| > 1e-2 * 1.1|a| + 1e-4 + noise, |a| > ~1.2e-3 */
    expect_checker_catches(grad, num, 9, &BCE_TOL, 3e-3);
}

/* ------------------------------------------------------------------------ */

#define N_ACTS (sizeof ACTS / sizeof ACTS[0])
#define N_LOSSES (sizeof LOSSES / sizeof LOSSES[0])

int main(void) {
    struct CMUnitTest tests[1 + 2 * N_ACTS + 1 + 2 * N_LOSSES];
    static char names[2 * N_ACTS + 2 * N_LOSSES][64];
    size_t t = 0, k = 0;
    memset(tests, 0, sizeof tests);
    tests[t].name = "checker_detects_wrong_gradient";
    tests[t++].test_func = test_checker_detects_wrong_gradient;
    for (size_t i = 0; i < N_ACTS; i++, k++) {
        snprintf(names[k], sizeof names[k], "dense_%s", ACTS[i].name);
        tests[t].name = names[k];
        tests[t].test_func = test_dense;
        tests[t++].initial_state = (void *)(uintptr_t)&ACTS[i];
    }
    for (size_t i = 0; i < N_ACTS; i++, k++) {
        snprintf(names[k], sizeof names[k], "activation_layer_%s", ACTS[i].name);
        tests[t].name = names[k];
        tests[t].test_func = test_activation_layer;
        tests[t++].initial_state = (void *)(uintptr_t)&ACTS[i];
    }
    tests[t].name = "stack_relu_tanh_identity";
    tests[t++].test_func = test_stack_relu_tanh_identity;
    for (size_t i = 0; i < N_LOSSES; i++, k++) {
        snprintf(names[k], sizeof names[k], "loss_%s", LOSSES[i].name);
        tests[t].name = names[k];
        tests[t].test_func = test_loss;
        tests[t++].initial_state = (void *)(uintptr_t)&LOSSES[i];
    }
    for (size_t i = 0; i < N_LOSSES; i++, k++) {
        snprintf(names[k], sizeof names[k], "model_loss_%s", LOSSES[i].name);
        tests[t].name = names[k];
        tests[t].test_func = test_model_loss;
        tests[t++].initial_state = (void *)(uintptr_t)&LOSSES[i];
    }

    if (t != sizeof tests / sizeof tests[0]) return 1; /* the table above is miscounted */
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    /* how close the passing checks came to their tolerance (1 = the limit) */
    for (int f = 0; f < FAMILY_COUNT; f++) {
        const gradcheck_worst *w = &g_worst[f];
        char where[sizeof w->label + sizeof w->part + 1] = "-";
        if (w->label[0]) snprintf(where, sizeof where, "%s %s", w->label, w->part);
        printf("gradcheck %-16s: %4zu parts, %5zu values, max |a-n| %.2e, worst tolerance use %.3f (%s)\n",
               FAMILY_NAMES[f], w->parts, w->values, w->max_abs_err, w->max_usage, where);
    }
    fflush(stdout);
    return failed;
}
