/* Central-difference gradient checks (genann-style) of every backward pass:
 * dense layers with each fused activation, standalone activation layers, a
 * three-layer stack, every loss on plain buffers and through the model, and
 * graphs: aim_model_add_add() of two and three nodes and of one node given
 * twice (add(x, x)), aim_model_add_concat() along the features of rank-1,
 * the channels of rank-3 and the time axis of rank-2 nodes, a node feeding
 * two heads (its gradient a sum), and two outputs with loss weights 0.3 and
 * 0.7 (the gradient of the weighted total).
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
    FAMILY_MODEL_LOSS, /* aim_model_loss(_sparse) + aim_model_backward(m, NULL, 0) */
    FAMILY_GRAPH,      /* add, concat, a node feeding two layers, two outputs with loss weights */
    FAMILY_COUNT
} gc_family;
static const char *const FAMILY_NAMES[FAMILY_COUNT] = {"dense", "activation layer", "stack", "loss",
                                                      "model loss", "graph"};
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
/* Graphs: merge layers, a node feeding two layers, several outputs         */
/* ------------------------------------------------------------------------ */

/* The shared checker (gradcheck_case) drives one-input, one-output models;
 * a graph case has several of each, so this section runs its own objective
 * on the same pieces (gradcheck_numeric, gradcheck_part, gradcheck_case_ok):
 *  - GRAPH_WEIGHTED_SUM: L = sum over the outputs k of sum(y_k * R_k), from an
 *    inference forward; analytically, each R_k given to
 *    aim_model_set_output_grad() (or, for a one-output model, to
 *    aim_model_backward()) and one backward;
 *  - GRAPH_TWO_LOSSES: L = w0 * MSE(y_0, T) + w1 * CE(y_1, labels), the total
 *    a model with loss weights (w0, w1) minimizes; analytically,
 *    aim_model_loss(0), aim_model_loss_sparse(1) and one backward.
 * Every parameter and every value of every input is perturbed. Tolerances
 * and guards are the model checks' above (MODEL_TOL, or LOSS_TOL for the
 * losses); the layers are smooth (tanh, sigmoid, identity), so every part is
 * guarded with GRADCHECK_DENSE. */

#define GRAPH_MAX_IO 4

typedef enum graph_objective { GRAPH_WEIGHTED_SUM, GRAPH_TWO_LOSSES } graph_objective;

typedef struct graph_case {
    aim_model *m; /* compiled with input_gradient */
    size_t batch;
    size_t n_in, n_out;
    float *x[GRAPH_MAX_IO]; /* batch * in[k] floats, perturbed and restored */
    size_t in[GRAPH_MAX_IO], out[GRAPH_MAX_IO];
    graph_objective obj;
    float *r[GRAPH_MAX_IO]; /* GRAPH_WEIGHTED_SUM: batch * out[k] */
    float *t;               /* GRAPH_TWO_LOSSES: MSE targets of output 0 */
    int32_t *labels;        /* GRAPH_TWO_LOSSES: labels of output 1 */
    double w[2];            /* GRAPH_TWO_LOSSES: the loss weights the model was given */
    int failed;
    char why[GRADCHECK_WHY];
} graph_case;

static size_t gc_node_floats(const aim_model *m, size_t node) {
    size_t rank = 0, dims[AIM_MAX_RANK] = {0}, n = 1;
    assert_int_equal(aim_model_layer_shape(m, node, &rank, dims), AIM_OK);
    for (size_t i = 0; i < rank; i++) n *= dims[i];
    return n;
}

/* Allocates and fills the inputs (in [-1, 1)) and the objective's data of a
 * compiled model. */
static void graph_case_init(graph_case *c, aim_model *m, size_t batch, graph_objective obj, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->m = m;
    c->batch = batch;
    c->obj = obj;
    c->n_in = aim_model_input_count(m);
    c->n_out = aim_model_output_count(m);
    assert_true(c->n_in >= 1 && c->n_in <= GRAPH_MAX_IO);
    assert_true(c->n_out >= 1 && c->n_out <= GRAPH_MAX_IO);
    for (size_t k = 0; k < c->n_in; k++) {
        c->in[k] = gc_node_floats(m, AIM_MODEL_INPUT(k));
        c->x[k] = calloc(batch * c->in[k], sizeof *c->x[k]);
        assert_non_null(c->x[k]);
        fill_uniform(c->x[k], batch * c->in[k], seed * 3u + 1u + 101u * k, -1.0f, 1.0f);
    }
    for (size_t k = 0; k < c->n_out; k++) {
        size_t node = 0;
        assert_int_equal(aim_model_output_node(m, k, &node), AIM_OK);
        c->out[k] = gc_node_floats(m, node);
        if (obj == GRAPH_WEIGHTED_SUM) {
            c->r[k] = calloc(batch * c->out[k], sizeof *c->r[k]);
            assert_non_null(c->r[k]);
            fill_signed(c->r[k], batch * c->out[k], seed * 5u + 2u + 101u * k, 0.25f, 1.0f);
        }
    }
    if (obj == GRAPH_TWO_LOSSES) {
        assert_int_equal(c->n_out, 2);
        c->t = calloc(batch * c->out[0], sizeof *c->t);
        c->labels = calloc(batch, sizeof *c->labels);
        assert_true(c->t && c->labels);
        fill_targets(AIM_LOSS_MSE, c->t, NULL, batch, c->out[0], seed * 7u + 3u);
        fill_targets(LOSS_SPARSE_KIND, NULL, c->labels, batch, c->out[1], seed * 11u + 5u);
    }
}

static void graph_case_free(graph_case *c) {
    for (size_t k = 0; k < c->n_in; k++) free(c->x[k]);
    for (size_t k = 0; k < c->n_out; k++) free(c->r[k]);
    free(c->t);
    free(c->labels);
}

static double graph_fail(graph_case *c, const char *what, aim_status st) {
    if (!c->failed)
        snprintf(c->why, sizeof c->why, "%s failed: %s (%s)", what, aim_status_str(st), aim_model_last_error(c->m));
    c->failed = 1;
    return NAN;
}

static aim_status graph_forward(graph_case *c, aim_mode mode) {
    const float *in[GRAPH_MAX_IO];
    size_t counts[GRAPH_MAX_IO];
    for (size_t k = 0; k < c->n_in; k++) {
        in[k] = c->x[k];
        counts[k] = c->batch * c->in[k];
    }
    return aim_model_forward_multi(c->m, mode, in, counts, c->n_in, c->batch);
}

/* L at the current parameters and inputs, accumulated in double. */
static double graph_objective_fn(void *ctx) {
    graph_case *c = ctx;
    aim_status st;
    if (c->obj == GRAPH_WEIGHTED_SUM) {
        if ((st = graph_forward(c, AIM_MODE_INFERENCE)) != AIM_OK) return graph_fail(c, "aim_model_forward_multi", st);
        double sum = 0.0;
        for (size_t k = 0; k < c->n_out; k++) {
            const float *y = NULL;
            size_t n = 0;
            if ((st = aim_model_output(c->m, k, &y, &n)) != AIM_OK) return graph_fail(c, "aim_model_output", st);
            if (n != c->batch * c->out[k]) return graph_fail(c, "aim_model_output (count)", AIM_ERR_SHAPE_MISMATCH);
            for (size_t i = 0; i < n; i++) sum += (double)y[i] * (double)c->r[k][i];
        }
        return sum;
    }
    float l0 = 0.0f, l1 = 0.0f;
    if ((st = graph_forward(c, AIM_MODE_TRAIN)) != AIM_OK) return graph_fail(c, "aim_model_forward_multi", st);
    if ((st = aim_model_loss(c->m, 0, AIM_LOSS_MSE, c->t, c->batch * c->out[0], &l0)) != AIM_OK)
        return graph_fail(c, "aim_model_loss", st);
    if ((st = aim_model_loss_sparse(c->m, 1, c->labels, c->batch, &l1)) != AIM_OK)
        return graph_fail(c, "aim_model_loss_sparse", st);
    return c->w[0] * (double)l0 + c->w[1] * (double)l1;
}

/* The analytic gradients: parameters into ap (count floats), input k into
 * ax[k] (batch * in[k]). */
static void graph_analytic(graph_case *c, float *ap, size_t count, float **ax) {
    CHECK_OK(aim_model_zero_grad(c->m));
    CHECK_OK(graph_forward(c, AIM_MODE_TRAIN));
    if (c->obj == GRAPH_WEIGHTED_SUM) {
        if (c->n_out == 1) {
            CHECK_OK(aim_model_backward(c->m, c->r[0], c->batch * c->out[0]));
        } else {
            for (size_t k = 0; k < c->n_out; k++)
                CHECK_OK(aim_model_set_output_grad(c->m, k, c->r[k], c->batch * c->out[k]));
            CHECK_OK(aim_model_backward(c->m, NULL, 0));
        }
    } else {
        float l0 = 0.0f, l1 = 0.0f;
        CHECK_OK(aim_model_loss(c->m, 0, AIM_LOSS_MSE, c->t, c->batch * c->out[0], &l0));
        CHECK_OK(aim_model_loss_sparse(c->m, 1, c->labels, c->batch, &l1));
        CHECK_OK(aim_model_backward(c->m, NULL, 0));
    }
    float *g = NULL;
    size_t gcount = 0;
    CHECK_OK(aim_model_gradients(c->m, &g, &gcount));
    assert_int_equal(gcount, count);
    memcpy(ap, g, count * sizeof *ap);
    for (size_t k = 0; k < c->n_in; k++) {
        const float *ig = NULL;
        size_t n = 0;
        CHECK_OK(aim_model_input_gradient(c->m, k, &ig, &n));
        assert_int_equal(n, c->batch * c->in[k]);
        memcpy(ax[k], ig, n * sizeof *ig);
    }
}

/* Both gradients of every parameter and every input value. */
typedef struct graph_result {
    size_t count;
    float *ap, *ax[GRAPH_MAX_IO];
    double *num_p, *num_x[GRAPH_MAX_IO];
} graph_result;

static void graph_run(graph_case *c, double h, graph_result *r) {
    memset(r, 0, sizeof *r);
    float *p = NULL;
    CHECK_OK(aim_model_parameters(c->m, &p, &r->count));
    r->ap = calloc(r->count + 1, sizeof *r->ap);
    r->num_p = calloc(r->count + 1, sizeof *r->num_p);
    float *pb = calloc(r->count + 1, sizeof *pb);
    assert_true(r->ap && r->num_p && pb);
    memcpy(pb, p, r->count * sizeof *p);
    float *xb[GRAPH_MAX_IO];
    for (size_t k = 0; k < c->n_in; k++) {
        const size_t n = c->batch * c->in[k];
        r->ax[k] = calloc(n, sizeof *r->ax[k]);
        r->num_x[k] = calloc(n, sizeof *r->num_x[k]);
        xb[k] = malloc(n * sizeof *xb[k]);
        assert_true(r->ax[k] && r->num_x[k] && xb[k]);
        memcpy(xb[k], c->x[k], n * sizeof *xb[k]);
    }
    graph_analytic(c, r->ap, r->count, r->ax);
    for (size_t k = 0; k < c->n_in; k++) /* forward and backward take the inputs as const */
        assert_memory_equal(xb[k], c->x[k], c->batch * c->in[k] * sizeof *xb[k]);
    gradcheck_numeric(p, r->count, h, graph_objective_fn, c, r->num_p);
    for (size_t k = 0; k < c->n_in; k++) gradcheck_numeric(c->x[k], c->batch * c->in[k], h, graph_objective_fn, c, r->num_x[k]);
    if (c->failed) fail_msg("%s", c->why);
    /* Everything perturbed comes back bit for bit. */
    assert_memory_equal(pb, p, r->count * sizeof *p);
    for (size_t k = 0; k < c->n_in; k++) {
        assert_memory_equal(xb[k], c->x[k], c->batch * c->in[k] * sizeof *xb[k]);
        free(xb[k]);
    }
    free(pb);
}

static void graph_result_free(graph_result *r, size_t n_in) {
    free(r->ap);
    free(r->num_p);
    for (size_t k = 0; k < n_in; k++) {
        free(r->ax[k]);
        free(r->num_x[k]);
    }
}

/* Every layer's weight and bias, then every input, then the case guard. */
static void graph_check_parts(const graph_case *c, const graph_result *r, const gradcheck_tol *tol,
                              const char *label) {
    char why[GRADCHECK_WHY], part[48];
    double max_a = 0.0;
    size_t covered = 0;
    for (size_t l = 0; l < aim_model_layer_count(c->m); l++) {
        size_t off = 0, wc = 0, bc = 0;
        CHECK_OK(aim_model_layer_parameters(c->m, l, &off, &wc, &bc));
        assert_true(off + wc + bc <= r->count);
        covered += wc + bc;
        if (wc) {
            snprintf(part, sizeof part, "layer %zu weight", l);
            if (!gradcheck_part(label, part, r->ap + off, r->num_p + off, wc, tol, GRADCHECK_DENSE,
                                &g_worst[FAMILY_GRAPH], &max_a, why, sizeof why))
                fail_msg("%s", why);
        }
        if (bc) {
            snprintf(part, sizeof part, "layer %zu bias", l);
            if (!gradcheck_part(label, part, r->ap + off + wc, r->num_p + off + wc, bc, tol, GRADCHECK_DENSE,
                                &g_worst[FAMILY_GRAPH], &max_a, why, sizeof why))
                fail_msg("%s", why);
        }
    }
    assert_int_equal(covered, r->count);
    for (size_t k = 0; k < c->n_in; k++) {
        snprintf(part, sizeof part, "input %zu", k);
        if (!gradcheck_part(label, part, r->ax[k], r->num_x[k], c->batch * c->in[k], tol, GRADCHECK_DENSE,
                            &g_worst[FAMILY_GRAPH], &max_a, why, sizeof why))
            fail_msg("%s", why);
    }
    if (!gradcheck_case_ok(label, max_a, GRADCHECK_DENSE, why, sizeof why)) fail_msg("%s", why);
}

/* Compiles m for `batch` with input gradients, runs the full check of the
 * weighted-sum objective and frees m. */
static void graph_check_weighted_sum(aim_model *m, size_t batch, uint64_t seed, const char *name) {
    compile_model(m, batch, seed);
    graph_case c;
    graph_case_init(&c, m, batch, GRAPH_WEIGHTED_SUM, seed);
    char label[128];
    snprintf(label, sizeof label, "%s, batch %zu, seed %llu", name, batch, (unsigned long long)seed);
    graph_result r;
    graph_run(&c, MODEL_TOL.h, &r);
    graph_check_parts(&c, &r, &MODEL_TOL, label);
    graph_result_free(&r, c.n_in);
    graph_case_free(&c);
    aim_model_free(m);
}

static size_t current(const aim_model *m) {
    size_t node = 0;
    assert_int_equal(aim_model_last_node(m, &node), AIM_OK);
    return node;
}

static aim_model *new_image_model(size_t C, size_t H, size_t W) {
    aim_model *m = NULL;
    const size_t dims[3] = {C, H, W};
    assert_int_equal(aim_model_create(NULL, 3, dims, &m), AIM_OK);
    return m;
}

static aim_model *new_seq_model(size_t T, size_t F) {
    aim_model *m = NULL;
    const size_t dims[2] = {T, F};
    assert_int_equal(aim_model_create(NULL, 2, dims, &m), AIM_OK);
    return m;
}

static void add_conv(aim_model *m, size_t filters, size_t k, aim_activation act, int same) {
    aim_conv2d_config cc;
    assert_int_equal(aim_conv2d_config_init(&cc, filters, k, k, act), AIM_OK);
    if (same) cc.padding = AIM_PAD_SAME;
    assert_int_equal(aim_model_add_conv2d(m, &cc), AIM_OK);
}

static void add_lstm(aim_model *m, size_t hidden, int seq) {
    aim_lstm_config lc;
    assert_int_equal(aim_lstm_config_init(&lc, hidden, 1), AIM_OK);
    lc.return_sequences = seq;
    assert_int_equal(aim_model_add_lstm(m, &lc), AIM_OK);
}

/* add of two branches of x: tanh(W1 x + b1) + sigmoid(W2 x + b2) -> dense 3. */
static void test_graph_add_two(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_model(4);
        add_dense(m, 5, AIM_ACT_TANH, 0.01f, 1);
        const size_t a = current(m);
        assert_int_equal(aim_model_continue_from(m, AIM_MODEL_INPUT(0)), AIM_OK);
        add_dense(m, 5, AIM_ACT_SIGMOID, 0.01f, 1);
        const size_t nodes[2] = {a, current(m)};
        assert_int_equal(aim_model_add_add(m, nodes, 2), AIM_OK);
        add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1);
        graph_check_weighted_sum(m, 3, SEEDS[k], "add of two branches");
    }
}

/* add of three nodes, one of them a second model input: a + b + x1. */
static void test_graph_add_three(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_model(4);
        const size_t d1[1] = {5};
        size_t in1 = 0;
        assert_int_equal(aim_model_add_input(m, 1, d1, &in1), AIM_OK);
        add_dense(m, 5, AIM_ACT_TANH, 0.01f, 1);
        const size_t a = current(m);
        assert_int_equal(aim_model_continue_from(m, AIM_MODEL_INPUT(0)), AIM_OK);
        add_dense(m, 5, AIM_ACT_SIGMOID, 0.01f, 1);
        const size_t nodes[3] = {a, current(m), in1};
        assert_int_equal(aim_model_add_add(m, nodes, 3), AIM_OK);
        add_dense(m, 2, AIM_ACT_TANH, 0.01f, 1);
        graph_check_weighted_sum(m, 3, SEEDS[k], "add of three, one an input");
    }
}

/* One node given twice: add(x, x) -> dense tanh -> dense, where dL/dx is
 * twice what it would be through one x; and add(a, a) of a dense layer. */
static void test_graph_add_same_node_twice(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_model(4);
        const size_t xx[2] = {AIM_MODEL_INPUT(0), AIM_MODEL_INPUT(0)};
        assert_int_equal(aim_model_add_add(m, xx, 2), AIM_OK);
        add_dense(m, 5, AIM_ACT_TANH, 0.01f, 1);
        add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1);
        graph_check_weighted_sum(m, 3, SEEDS[k], "add(x, x)");

        m = new_model(3);
        add_dense(m, 4, AIM_ACT_SIGMOID, 0.01f, 1);
        const size_t aa[2] = {current(m), current(m)};
        assert_int_equal(aim_model_add_add(m, aa, 2), AIM_OK);
        add_dense(m, 2, AIM_ACT_TANH, 0.01f, 1);
        graph_check_weighted_sum(m, 2, SEEDS[k], "add(a, a)");
    }
}

/* concat along the features of rank-1 nodes: [tanh(W1 x), x, sigmoid(W2 x)]. */
static void test_graph_concat_features(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_model(4);
        add_dense(m, 3, AIM_ACT_TANH, 0.01f, 1);
        const size_t a = current(m);
        assert_int_equal(aim_model_continue_from(m, AIM_MODEL_INPUT(0)), AIM_OK);
        add_dense(m, 5, AIM_ACT_SIGMOID, 0.01f, 1);
        const size_t nodes[3] = {a, AIM_MODEL_INPUT(0), current(m)};
        assert_int_equal(aim_model_add_concat(m, nodes, 3, 0), AIM_OK);
        assert_int_equal(gc_node_floats(m, current(m)), 12);
        add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1);
        graph_check_weighted_sum(m, 3, SEEDS[k], "concat of features");
    }
}

/* concat along the channels of C x H x W: conv 3x3 "same" (3 channels), conv
 * 1x1 (2 channels) and the input (2 channels) -> 7 x 4 x 4 -> conv 3x3
 * valid -> flatten -> dense 3. */
static void test_graph_concat_channels(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_image_model(2, 4, 4);
        add_conv(m, 3, 3, AIM_ACT_TANH, 1);
        const size_t a = current(m);
        assert_int_equal(aim_model_continue_from(m, AIM_MODEL_INPUT(0)), AIM_OK);
        add_conv(m, 2, 1, AIM_ACT_SIGMOID, 0);
        const size_t nodes[3] = {a, current(m), AIM_MODEL_INPUT(0)};
        assert_int_equal(aim_model_add_concat(m, nodes, 3, 0), AIM_OK);
        size_t rank = 0, dims[AIM_MAX_RANK] = {0};
        assert_int_equal(aim_model_layer_shape(m, current(m), &rank, dims), AIM_OK);
        assert_true(rank == 3 && dims[0] == 7 && dims[1] == 4 && dims[2] == 4);
        add_conv(m, 2, 3, AIM_ACT_TANH, 0);
        assert_int_equal(aim_model_add_flatten(m), AIM_OK);
        add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1);
        graph_check_weighted_sum(m, 2, SEEDS[k], "concat of channels");
    }
}

/* concat along time of rank-2 nodes: an LSTM's sequence of input 0 (3 steps
 * of 2 features, hidden 2) and input 1 (2 steps of 2 features) -> 5 x 2 ->
 * LSTM hidden 3, last step -> dense 2. */
static void test_graph_concat_time(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_seq_model(3, 2);
        const size_t d1[2] = {2, 2};
        size_t in1 = 0;
        assert_int_equal(aim_model_add_input(m, 2, d1, &in1), AIM_OK);
        add_lstm(m, 2, 1);
        const size_t nodes[2] = {current(m), in1};
        assert_int_equal(aim_model_add_concat(m, nodes, 2, 0), AIM_OK);
        size_t rank = 0, dims[AIM_MAX_RANK] = {0};
        assert_int_equal(aim_model_layer_shape(m, current(m), &rank, dims), AIM_OK);
        assert_true(rank == 2 && dims[0] == 5 && dims[1] == 2);
        add_lstm(m, 3, 0);
        add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1);
        graph_check_weighted_sum(m, 2, SEEDS[k], "concat along time");
    }
}

/* One node feeding two heads, whose gradients the node sums: h = tanh(W x)
 * feeds two outputs (identity 3 and sigmoid 2), and, in a second model, two
 * heads concatenated into one output. */
static void test_graph_node_feeds_two_heads(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_model(4);
        add_dense(m, 5, AIM_ACT_TANH, 0.01f, 1);
        const size_t h = current(m);
        add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1);
        const size_t o0 = current(m);
        assert_int_equal(aim_model_continue_from(m, h), AIM_OK);
        add_dense(m, 2, AIM_ACT_SIGMOID, 0.01f, 1);
        const size_t outs[2] = {o0, current(m)};
        assert_int_equal(aim_model_set_outputs(m, outs, NULL, 2), AIM_OK);
        graph_check_weighted_sum(m, 3, SEEDS[k], "two heads as two outputs");

        m = new_model(4);
        add_dense(m, 5, AIM_ACT_TANH, 0.01f, 1);
        const size_t h2 = current(m);
        add_dense(m, 3, AIM_ACT_TANH, 0.01f, 1);
        const size_t p = current(m);
        assert_int_equal(aim_model_continue_from(m, h2), AIM_OK);
        add_dense(m, 2, AIM_ACT_SIGMOID, 0.01f, 1);
        const size_t parts[2] = {p, current(m)};
        assert_int_equal(aim_model_add_concat(m, parts, 2, 0), AIM_OK);
        add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1);
        graph_check_weighted_sum(m, 3, SEEDS[k], "two heads concatenated");
    }
}

/* Two outputs with loss weights 0.3 and 0.7: output 0 (identity 3) with MSE,
 * output 1 (identity 4, logits) with sparse cross-entropy, both from h =
 * tanh(W x). One backward gives the gradient of 0.3 MSE + 0.7 CE; the
 * gradient of the unweighted sum disagrees with it (the weights are used). */
static void test_graph_two_outputs_loss_weights(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = new_model(4);
        add_dense(m, 6, AIM_ACT_TANH, 0.01f, 1);
        const size_t h = current(m);
        add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1);
        const size_t o0 = current(m);
        assert_int_equal(aim_model_continue_from(m, h), AIM_OK);
        add_dense(m, 4, AIM_ACT_IDENTITY, 0.01f, 1);
        const size_t outs[2] = {o0, current(m)};
        const float weights[2] = {0.3f, 0.7f};
        assert_int_equal(aim_model_set_outputs(m, outs, weights, 2), AIM_OK);
        const size_t batch = 3;
        compile_model(m, batch, SEEDS[k]);
        graph_case c;
        graph_case_init(&c, m, batch, GRAPH_TWO_LOSSES, SEEDS[k]);
        c.w[0] = (double)weights[0];
        c.w[1] = (double)weights[1];
        char label[128];
        snprintf(label, sizeof label, "two outputs, weights 0.3 and 0.7, seed %llu", (unsigned long long)SEEDS[k]);
        graph_result r;
        graph_run(&c, LOSS_TOL.h, &r);
        graph_check_parts(&c, &r, &LOSS_TOL, label);

        /* The numeric gradient of MSE + CE (weights 1 and 1) is not what
         * the model computed: its weights are applied. */
        double *num1 = calloc(r.count + 1, sizeof *num1);
        assert_non_null(num1);
        float *p = NULL;
        size_t n = 0;
        CHECK_OK(aim_model_parameters(m, &p, &n));
        c.w[0] = c.w[1] = 1.0;
        gradcheck_numeric(p, n, LOSS_TOL.h, graph_objective_fn, &c, num1);
        if (c.failed) fail_msg("%s", c.why);
        const gradcheck_stats st = gradcheck_compare(r.ap, num1, n, &LOSS_TOL);
        print_message("%s: against the unweighted total, %zu of %zu parameter gradients disagree\n", label,
                      st.mismatches, n);
        assert_true(2 * st.mismatches >= n);
        free(num1);
        graph_result_free(&r, c.n_in);
        graph_case_free(&c);
        aim_model_free(m);
    }
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
    static const struct CMUnitTest graph_tests[] = {
        cmocka_unit_test(test_graph_add_two),
        cmocka_unit_test(test_graph_add_three),
        cmocka_unit_test(test_graph_add_same_node_twice),
        cmocka_unit_test(test_graph_concat_features),
        cmocka_unit_test(test_graph_concat_channels),
        cmocka_unit_test(test_graph_concat_time),
        cmocka_unit_test(test_graph_node_feeds_two_heads),
        cmocka_unit_test(test_graph_two_outputs_loss_weights),
    };
    struct CMUnitTest tests[1 + 2 * N_ACTS + 1 + 2 * N_LOSSES + ARRAY_LEN(graph_tests)];
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

    for (size_t i = 0; i < ARRAY_LEN(graph_tests); i++) tests[t++] = graph_tests[i];

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
