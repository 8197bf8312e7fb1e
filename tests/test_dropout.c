/* Dropout (src/layers/dropout.c) and the model's random stream.
 *
 * PyTorch cannot serve as a golden here (its masks come from its own
 * generator), so the semantics are checked directly:
 *  - the mask: the fraction dropped is p within 5 binomial standard
 *    deviations, for several p; masks of two samples, of two forwards and of
 *    two layers are independent (their overlap is p² within 5 sd); p = 0
 *    keeps everything;
 *  - scaling exact: every output is 0 or exactly x · 1/(1 − p) (the float
 *    scale 1.0f / (1.0f - p)); inference (the model's forward and predict)
 *    is the identity, bit for bit;
 *  - gradient: dX = dY ⊙ mask exactly, and a central-difference check of a
 *    dense -> dropout -> dense model whose every evaluation restarts the
 *    stream at the same seed (so each numeric forward draws the same masks);
 *  - the stream: aim_model_set_random_seed() restarts it, a compile seed
 *    fixes it, inference forwards, predict and a forward refused by a
 *    layer's call check do not advance it, and a model
 *    serialized after k training steps resumes it exactly (train 3 steps,
 *    save, train 2 more; load and train the same 2: the same bits);
 *  - thread-count independence: 1, 2 and 3 threads draw the same masks;
 *  - the k-th allocation failure for every k (build, compile, train,
 *    serialize, deserialize).
 */
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
#include "../src/internal.h"

static void compile_model(aim_model *m, size_t max_batch, int32_t input_gradient, uint64_t seed) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = max_batch;
    cc.input_gradient = input_gradient;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(m, &cc));
}

/* input (n) -> dropout p, compiled. */
static aim_model *dropout_model(size_t n, float p, size_t max_batch, uint64_t seed) {
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 1, &n, &m));
    CHECK_OK(aim_model_add_dropout(m, p));
    compile_model(m, max_batch, 1, seed);
    return m;
}

/* Inputs without zeros, so a zero output means a dropped element. */
static float *nonzero_input(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    fill_uniform(x, n, seed, 0.5f, 1.5f);
    for (size_t i = 0; i < n; i += 3) x[i] = -x[i];
    return x;
}

/* A training forward's output, copied. */
static void train_forward(aim_model *m, const float *x, size_t batch, float *y) {
    const size_t n = batch * aim_model_input_size(m);
    const float *out = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, n, batch));
    CHECK_OK(aim_model_output(m, 0, &out, &count));
    memcpy(y, out, count * sizeof *y);
}

/* |observed - expected| within 5 standard deviations of a binomial
 * fraction over `trials` (a false alarm has probability ~6e-7). */
static void expect_fraction(const char *what, size_t hits, size_t trials, double prob) {
    const double frac = (double)hits / (double)trials, sd = sqrt(prob * (1.0 - prob) / (double)trials);
    print_message("    %-34s %.4f, expected %.4f +- %.4f (5 sd)\n", what, frac, prob, 5 * sd);
    if (!(fabs(frac - prob) <= 5 * sd))
        fail_msg("%s: fraction %.5f, expected %.5f within %.5f", what, frac, prob, 5 * sd);
}

/* ------------------------------------------------------------------ the mask */

static void test_mask_statistics(void **state) {
    (void)state;
    const float ps[4] = {0.1f, 0.3f, 0.5f, 0.85f};
    const size_t n = 2000, B = 8;
    float *x = nonzero_input(B * n, 1);
    float *y1 = malloc(B * n * sizeof *y1), *y2 = malloc(B * n * sizeof *y2);
    assert_true(y1 && y2);
    for (size_t k = 0; k < 4; k++) {
        const double p = (double)ps[k];
        aim_model *m = dropout_model(n, ps[k], B, 7);
        train_forward(m, x, B, y1);
        train_forward(m, x, B, y2);
        size_t dropped = 0, both_samples = 0, both_forwards = 0;
        for (size_t i = 0; i < B * n; i++) {
            dropped += y1[i] == 0.0f;
            both_forwards += y1[i] == 0.0f && y2[i] == 0.0f;
        }
        /* Sample 0 against sample 1 at each position. */
        for (size_t i = 0; i < n; i++) both_samples += y1[i] == 0.0f && y1[n + i] == 0.0f;
        char what[64];
        snprintf(what, sizeof what, "p %.2f: dropped", p);
        expect_fraction(what, dropped, B * n, p);
        snprintf(what, sizeof what, "p %.2f: dropped in 2 samples", p);
        expect_fraction(what, both_samples, n, p * p);
        snprintf(what, sizeof what, "p %.2f: dropped in 2 forwards", p);
        expect_fraction(what, both_forwards, B * n, p * p);
        /* every sample on its own too, with its own binomial spread */
        for (size_t b = 0; b < B; b++) {
            size_t d = 0;
            for (size_t i = 0; i < n; i++) d += y1[b * n + i] == 0.0f;
            const double sd = sqrt(p * (1 - p) / (double)n);
            assert_true(fabs((double)d / (double)n - p) <= 5 * sd);
        }
        aim_model_free(m);
    }
    free(x);
    free(y1);
    free(y2);
}

/* Two dropout layers (here two branches reading the same input) draw
 * different masks: the layer index is part of the key. */
static void test_layers_draw_their_own_masks(void **state) {
    (void)state;
    const size_t n = 4000, B = 2;
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 1, &n, &m));
    CHECK_OK(aim_model_add_dropout(m, 0.5f));
    CHECK_OK(aim_model_continue_from(m, AIM_MODEL_INPUT(0)));
    CHECK_OK(aim_model_add_dropout(m, 0.5f));
    const size_t outs[2] = {0, 1};
    CHECK_OK(aim_model_set_outputs(m, outs, NULL, 2));
    compile_model(m, B, 0, 3);
    float *x = nonzero_input(B * n, 2);
    const float *in[1] = {x};
    const size_t counts[1] = {B * n};
    CHECK_OK(aim_model_forward_multi(m, AIM_MODE_TRAIN, in, counts, 1, B));
    const float *y0 = NULL, *y1 = NULL;
    size_t c0 = 0, c1 = 0, both = 0;
    CHECK_OK(aim_model_output(m, 0, &y0, &c0));
    CHECK_OK(aim_model_output(m, 1, &y1, &c1));
    assert_int_equal(c0, B * n);
    assert_int_equal(c1, B * n);
    for (size_t i = 0; i < c0; i++) both += y0[i] == 0.0f && y1[i] == 0.0f;
    expect_fraction("dropped by both layers", both, c0, 0.25);
    free(x);
    aim_model_free(m);
}

static void test_p_zero_keeps_everything(void **state) {
    (void)state;
    const size_t n = 500, B = 4;
    aim_model *m = dropout_model(n, 0.0f, B, 1);
    float *x = nonzero_input(B * n, 3), *y = malloc(B * n * sizeof *y), *dy = malloc(B * n * sizeof *dy);
    assert_true(y && dy);
    fill_uniform(dy, B * n, 4, -1.0f, 1.0f);
    train_forward(m, x, B, y);
    assert_memory_equal(y, x, B * n * sizeof *y);
    CHECK_OK(aim_model_backward(m, dy, B * n));
    const float *dx = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &count));
    assert_memory_equal(dx, dy, B * n * sizeof *dy);
    free(x);
    free(y);
    free(dy);
    aim_model_free(m);
}

/* y is 0 or x · scale exactly; inference is the identity; dX = dY ⊙ mask. */
static void test_scaling_identity_and_gradient(void **state) {
    (void)state;
    const size_t n = 300, B = 5;
    const float ps[3] = {0.4f, 0.1f, 0.75f};
    float *x = nonzero_input(B * n, 5), *y = malloc(B * n * sizeof *y), *dy = malloc(B * n * sizeof *dy);
    float *out = malloc(B * n * sizeof *out);
    assert_true(y && dy && out);
    fill_uniform(dy, B * n, 6, -1.0f, 1.0f);
    for (size_t k = 0; k < 3; k++) {
        const float p = ps[k], scale = 1.0f / (1.0f - p);
        aim_model *m = dropout_model(n, p, B, 11);
        train_forward(m, x, B, y);
        size_t kept = 0;
        for (size_t i = 0; i < B * n; i++) {
            if (y[i] != 0.0f) {
                kept++;
                if (y[i] != x[i] * scale) fail_msg("p %g: y[%zu] = %.9g, x * scale = %.9g", (double)p, i,
                                                   (double)y[i], (double)(x[i] * scale));
            }
        }
        assert_true(kept > 0 && kept < B * n);
        CHECK_OK(aim_model_backward(m, dy, B * n));
        const float *dx = NULL;
        size_t count = 0;
        CHECK_OK(aim_model_input_gradient(m, 0, &dx, &count));
        for (size_t i = 0; i < B * n; i++) {
            const float want = y[i] != 0.0f ? dy[i] * scale : 0.0f;
            if (dx[i] != want) fail_msg("p %g: dx[%zu] = %.9g, want %.9g", (double)p, i, (double)dx[i], (double)want);
        }
        /* Inference: the identity, in the model's forward and in predict. */
        const float *yi = NULL;
        CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, B * n, B));
        CHECK_OK(aim_model_output(m, 0, &yi, &count));
        assert_memory_equal(yi, x, B * n * sizeof *x);
        aim_workspace *ws = NULL;
        CHECK_OK(aim_workspace_create(m, NULL, B, &ws));
        CHECK_OK(aim_model_predict(m, ws, x, B * n, B, out, B * n));
        assert_memory_equal(out, x, B * n * sizeof *x);
        aim_workspace_free(ws);
        aim_model_free(m);
    }
    free(x);
    free(y);
    free(dy);
    free(out);
}

/* -------------------------------------------------- central differences */

/* L = sum(output * r) of a TRAINING forward whose stream restarts at the
 * same seed every time: the masks are then a fixed function, and L is
 * piecewise smooth in the parameters and the input. Tolerance: test_gradcheck.c's
 * MODEL_TOL (h = 1e-2, rtol 1e-2, atol 1e-3; the same objective with a
 * weighted sum), whose analysis holds with dropout's exact 0 / scale factors
 * in between (scale 1/0.7, so values stay O(1)). */
static const gradcheck_tol DROP_TOL = {1e-2, 1e-2, 1e-3};
#define GC_SEED 99

typedef struct gc_ctx {
    aim_model *m;
    const float *x, *r;
    size_t nx, ny, batch;
    int failed;
} gc_ctx;

static double objective(void *p) {
    gc_ctx *c = p;
    const float *y = NULL;
    size_t count = 0;
    if (aim_model_set_random_seed(c->m, GC_SEED) != AIM_OK ||
        aim_model_forward(c->m, AIM_MODE_TRAIN, c->x, c->nx, c->batch) != AIM_OK ||
        aim_model_output(c->m, 0, &y, &count) != AIM_OK || count != c->ny) {
        c->failed = 1;
        return NAN;
    }
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += (double)y[i] * (double)c->r[i];
    return s;
}

static void test_gradcheck_dense_dropout_dense(void **state) {
    (void)state;
    const size_t in = 6, B = 4, out = 3;
    aim_model *m = NULL;
    aim_dense_config dc;
    CHECK_OK(aim_model_create(NULL, 1, &in, &m));
    CHECK_OK(aim_dense_config_init(&dc, 8, AIM_ACT_TANH));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_add_dropout(m, 0.3f));
    CHECK_OK(aim_dense_config_init(&dc, out, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    compile_model(m, B, 1, 5);
    float x[24], r[12];
    fill_uniform(x, ARRAY_LEN(x), 7, -1.0f, 1.0f);
    fill_uniform(r, ARRAY_LEN(r), 8, 0.25f, 1.0f);
    float *params = NULL, *g = NULL;
    size_t np = 0;
    CHECK_OK(aim_model_parameters(m, &params, &np));
    /* Analytic, with the masks of seed GC_SEED. */
    CHECK_OK(aim_model_set_random_seed(m, GC_SEED));
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
    CHECK_OK(aim_model_backward(m, r, ARRAY_LEN(r)));
    CHECK_OK(aim_model_gradients(m, &g, &np));
    float *ap = malloc(np * sizeof *ap), ax[24];
    double *num_p = malloc(np * sizeof *num_p), num_x[24];
    assert_true(ap && num_p);
    memcpy(ap, g, np * sizeof *ap);
    const float *ig = NULL;
    size_t nig = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &ig, &nig));
    memcpy(ax, ig, sizeof ax);
    /* The masks of that forward (the layer's training cache): some units
     * dropped, the others scaled by 1 / (1 - p). */
    aim__node_state ns;
    CHECK_OK(aim__model_node_state(m, 1, &aim__dropout_ops, "test", &ns));
    assert_non_null(ns.cache);
    size_t zeros = 0, scaled = 0;
    for (size_t i = 0; i < B * 8; i++) {
        zeros += ns.cache[i] == 0.0f;
        scaled += ns.cache[i] == 1.0f / (1.0f - 0.3f);
    }
    assert_int_equal(zeros + scaled, B * 8);
    assert_true(zeros > 0 && scaled > 0);
    size_t off = 0, wc = 0, bc = 0;
    gc_ctx c = {m, x, r, ARRAY_LEN(x), ARRAY_LEN(r), B, 0};
    gradcheck_numeric(params, np, DROP_TOL.h, objective, &c, num_p);
    gradcheck_numeric(x, ARRAY_LEN(x), DROP_TOL.h, objective, &c, num_x);
    assert_false(c.failed);
    char why[GRADCHECK_WHY];
    gradcheck_worst worst;
    memset(&worst, 0, sizeof worst);
    double max_a = 0.0;
    const char *label = "dense tanh -> dropout 0.3 -> dense, fixed seed";
    for (size_t l = 0; l < 3; l += 2) {
        CHECK_OK(aim_model_layer_parameters(m, l, &off, &wc, &bc));
        char part[32];
        snprintf(part, sizeof part, "layer %zu weight", l);
        /* A unit dropped in every sample has an exactly zero column: sparse. */
        if (!gradcheck_part(label, part, ap + off, num_p + off, wc, &DROP_TOL, GRADCHECK_SPARSE, &worst, &max_a, why,
                            sizeof why))
            fail_msg("%s", why);
        snprintf(part, sizeof part, "layer %zu bias", l);
        if (!gradcheck_part(label, part, ap + off + wc, num_p + off + wc, bc, &DROP_TOL, GRADCHECK_SPARSE, &worst,
                            &max_a, why, sizeof why))
            fail_msg("%s", why);
    }
    if (!gradcheck_part(label, "input", ax, num_x, ARRAY_LEN(x), &DROP_TOL, GRADCHECK_DENSE, &worst, &max_a, why,
                        sizeof why))
        fail_msg("%s", why);
    if (!gradcheck_case_ok(label, max_a, GRADCHECK_DENSE, why, sizeof why)) fail_msg("%s", why);
    /* Without restarting the stream the masks change: the check above did depend on it. */
    float y1[12], y2[12];
    CHECK_OK(aim_model_set_random_seed(m, GC_SEED));
    train_forward(m, x, B, y1);
    train_forward(m, x, B, y2);
    assert_memory_not_equal(y1, y2, sizeof y1);
    print_message("gradient check: %zu values, max |a - n| %.3g, worst tolerance use %.3f (%s)\n", worst.values,
                  worst.max_abs_err, worst.max_usage, worst.part);
    free(ap);
    free(num_p);
    aim_model_free(m);
}

/* ----------------------------------------------------------- the stream */

static void test_random_seed_restarts_the_stream(void **state) {
    (void)state;
    const size_t n = 256, B = 3;
    aim_model *m = dropout_model(n, 0.5f, B, 21);
    float *x = nonzero_input(B * n, 9);
    float a1[768], a2[768], b1[768], b2[768], c1[768], out[768];
    CHECK_OK(aim_model_set_random_seed(m, 5));
    train_forward(m, x, B, a1);
    train_forward(m, x, B, a2);
    assert_memory_not_equal(a1, a2, sizeof a1); /* each training forward draws anew */
    CHECK_OK(aim_model_set_random_seed(m, 5));
    /* Inference forwards and predict neither draw nor advance the stream. */
    const float *yi = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, B * n, B));
    CHECK_OK(aim_model_output(m, 0, &yi, &count));
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, B, &ws));
    CHECK_OK(aim_model_predict(m, ws, x, B * n, B, out, ARRAY_LEN(out)));
    train_forward(m, x, B, b1);
    train_forward(m, x, B, b2);
    assert_memory_equal(a1, b1, sizeof a1);
    assert_memory_equal(a2, b2, sizeof a2);
    /* Another seed (even the next one), another mask. */
    CHECK_OK(aim_model_set_random_seed(m, 6));
    train_forward(m, x, B, c1);
    assert_memory_not_equal(a1, c1, sizeof a1);
    /* Every sample its own mask: rows of one forward differ. */
    assert_memory_not_equal(a1, a1 + n, n * sizeof(float) / 2);

    /* Without set_random_seed, the compile seed fixes the stream. */
    aim_model *m2 = dropout_model(n, 0.5f, B, 21), *m3 = dropout_model(n, 0.5f, B, 22);
    float d1[768], d2[768], e1[768];
    train_forward(m2, x, B, d1);
    aim_model *m4 = dropout_model(n, 0.5f, B, 21);
    train_forward(m4, x, B, d2);
    assert_memory_equal(d1, d2, sizeof d1);
    train_forward(m3, x, B, e1);
    assert_memory_not_equal(d1, e1, sizeof d1);
    aim_workspace_free(ws);
    aim_model_free(m);
    aim_model_free(m2);
    aim_model_free(m3);
    aim_model_free(m4);
    free(x);
}

/* The masks of sample b depend on its row b only, so the forward of a
 * batch and of its first rows agree on those rows. */
static void test_mask_of_a_row_does_not_depend_on_the_batch(void **state) {
    (void)state;
    const size_t n = 128, B = 6;
    aim_model *m = dropout_model(n, 0.5f, B, 2);
    float *x = nonzero_input(B * n, 10), y6[768], y2[768];
    CHECK_OK(aim_model_set_random_seed(m, 3));
    train_forward(m, x, B, y6);
    CHECK_OK(aim_model_set_random_seed(m, 3));
    train_forward(m, x, 2, y2);
    assert_memory_equal(y2, y6, 2 * n * sizeof(float));
    free(x);
    aim_model_free(m);
}

/* A forward refused by a layer's call check (batch norm over one value per
 * channel) draws nothing: the stream is where it was. */
static void test_refused_forward_does_not_advance_the_stream(void **state) {
    (void)state;
    const size_t n = 64, B = 4;
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 1, &n, &m));
    CHECK_OK(aim_model_add_dropout(m, 0.5f));
    aim_batch_norm_config bc;
    CHECK_OK(aim_batch_norm_config_init(&bc));
    CHECK_OK(aim_model_add_batch_norm(m, &bc));
    compile_model(m, B, 0, 8);
    float *x = nonzero_input(B * n, 16), y1[256], y2[256];
    CHECK_OK(aim_model_set_random_seed(m, 77));
    train_forward(m, x, B, y1);
    CHECK_OK(aim_model_set_random_seed(m, 77));
    assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, x, n, 1), AIM_ERR_INVALID_ARGUMENT);
    train_forward(m, x, B, y2);
    assert_memory_equal(y1, y2, sizeof y1);
    free(x);
    aim_model_free(m);
}

/* ----------------------------------------------------------- thread pool */

/* Dropout is per element: each worker draws the masks of its own rows from
 * their global row indices, so every output, every input gradient and the
 * loss must be the same bits on 1, 2 and 3 threads (nothing here is a sum
 * over the batch split by slice; the elementwise tanh after it is exact per
 * row too). */
static void pool_run(size_t threads, float *y, float *dx, size_t *parts) {
    const size_t n = 96, B = 7;
    aim_model *m = NULL;
    aim_threadpool *pool = NULL;
    CHECK_OK(aim_model_create(NULL, 1, &n, &m));
    CHECK_OK(aim_model_add_dropout(m, 0.35f));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_TANH, 0.0f));
    compile_model(m, B, 1, 31);
    if (threads > 1) {
        CHECK_OK(aim_threadpool_create(NULL, threads, &pool));
        CHECK_OK(aim_threadpool_set_min_work(pool, 1));
        CHECK_OK(aim_model_set_threadpool(m, pool));
    }
    float *x = nonzero_input(B * n, 12), *t = malloc(B * n * sizeof *t);
    assert_non_null(t);
    fill_uniform(t, B * n, 13, -0.5f, 0.5f);
    train_forward(m, x, B, y); /* the second forward's masks, not only the first's */
    train_forward(m, x, B, y);
    aim__node_state ns;
    CHECK_OK(aim__model_node_state(m, 0, &aim__dropout_ops, "test", &ns));
    *parts = ns.parts;
    float loss;
    CHECK_OK(aim_model_loss(m, 0, AIM_LOSS_MSE, t, B * n, &loss));
    CHECK_OK(aim_model_backward(m, NULL, 0));
    const float *ig = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &ig, &count));
    memcpy(dx, ig, count * sizeof *dx);
    free(x);
    free(t);
    aim_model_free(m);
    aim_threadpool_free(pool);
}

static void test_threadpool_same_masks(void **state) {
    (void)state;
    float y1[672], y2[672], y3[672], d1[672], d2[672], d3[672];
    size_t p1 = 0, p2 = 0, p3 = 0;
    pool_run(1, y1, d1, &p1);
    pool_run(2, y2, d2, &p2);
    pool_run(3, y3, d3, &p3);
    assert_int_equal(p1, 1);
    assert_int_equal(p2, 2);
    assert_int_equal(p3, 3);
    assert_memory_equal(y1, y2, sizeof y1);
    assert_memory_equal(y1, y3, sizeof y1);
    assert_memory_equal(d1, d2, sizeof d1);
    assert_memory_equal(d1, d3, sizeof d1);
    size_t zeros = 0;
    for (size_t i = 0; i < ARRAY_LEN(y1); i++) zeros += y1[i] == 0.0f;
    assert_true(zeros > 0 && zeros < ARRAY_LEN(y1));
}

/* ---------------------------------------------------------- serialization */

static aim_model *mlp_with_dropout(const aim_allocator *al) {
    const size_t in = 6;
    aim_model *m = NULL;
    aim_dense_config dc;
    CHECK_OK(aim_model_create(al, 1, &in, &m));
    CHECK_OK(aim_dense_config_init(&dc, 16, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_add_dropout(m, 0.5f));
    CHECK_OK(aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    return m;
}

static void train(aim_model *m, aim_optimizer *opt, const float *x, const int32_t *labels, size_t B, size_t steps,
                  float *losses) {
    for (size_t s = 0; s < steps; s++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, B * 6, B));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, B, &losses[s]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(opt, m, 0.01f));
    }
}

/* Train 3 steps, save with Adam, train 2 more; load and train the same 2
 * steps: losses and parameters bit for bit, so the masks were the same. */
static void test_serialized_model_resumes_the_stream(void **state) {
    (void)state;
    const size_t B = 8;
    aim_model *m = mlp_with_dropout(NULL);
    compile_model(m, B, 0, 41);
    CHECK_OK(aim_model_set_random_seed(m, 1234));
    float x[48];
    fill_uniform(x, ARRAY_LEN(x), 14, -1.0f, 1.0f);
    const int32_t labels[8] = {0, 1, 2, 0, 1, 2, 0, 1};
    float *p = NULL, *p2 = NULL;
    size_t np = 0, np2 = 0, len = 0, written = 0;
    CHECK_OK(aim_model_parameters(m, &p, &np));
    aim_optimizer *opt = NULL, *opt2 = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, np, &opt));
    float l0[3], l1[2], l2[2];
    train(m, opt, x, labels, B, 3, l0);
    CHECK_OK(aim_model_serialized_size(m, opt, &len));
    unsigned char *bytes = malloc(len);
    assert_non_null(bytes);
    CHECK_OK(aim_model_serialize(m, opt, bytes, len, &written));
    train(m, opt, x, labels, B, 2, l1);

    aim_model *m2 = NULL;
    char msg[256];
    CHECK_OK(aim_model_deserialize(NULL, bytes, len, &m2, &opt2, msg, sizeof msg));
    train(m2, opt2, x, labels, B, 2, l2);
    assert_memory_equal(l1, l2, sizeof l1);
    CHECK_OK(aim_model_parameters(m2, &p2, &np2));
    assert_int_equal(np2, np);
    assert_memory_equal(p, p2, np * sizeof *p);
    /* The two steps after the save did draw masks: a model that restarted
     * its stream from the seed instead would train differently. */
    aim_model *m3 = NULL;
    aim_optimizer *opt3 = NULL;
    float l3[2];
    CHECK_OK(aim_model_deserialize(NULL, bytes, len, &m3, &opt3, msg, sizeof msg));
    CHECK_OK(aim_model_set_random_seed(m3, 1234));
    train(m3, opt3, x, labels, B, 2, l3);
    assert_memory_not_equal(l1, l3, sizeof l1);
    free(bytes);
    aim_optimizer_free(opt);
    aim_optimizer_free(opt2);
    aim_optimizer_free(opt3);
    aim_model_free(m);
    aim_model_free(m2);
    aim_model_free(m3);
}

/* ------------------------------------------------------- allocation sweep */

#define STEP(call)                                               \
    do {                                                         \
        long before_ = ta->failures;                             \
        aim_status s_ = (call);                                  \
        if (s_ == AIM_OK) {                                      \
            assert_int_equal(ta->failures, before_);             \
            break;                                               \
        }                                                        \
        assert_int_equal(s_, AIM_ERR_OUT_OF_MEMORY);             \
        assert_int_equal(ta->failures, before_ + 1);             \
        *failed_call = #call;                                    \
        return 1;                                                \
    } while (0)

typedef struct sweep_objects {
    aim_model *m, *m2;
    aim_optimizer *opt, *opt2;
    unsigned char *bytes;
} sweep_objects;

static void sweep_free(sweep_objects *o) {
    aim_optimizer_free(o->opt);
    aim_optimizer_free(o->opt2);
    aim_model_free(o->m);
    aim_model_free(o->m2);
    free(o->bytes);
    memset(o, 0, sizeof *o);
}

static int sweep_scenario(test_alloc *ta, sweep_objects *o, const char **failed_call) {
    const aim_allocator *al = &ta->allocator;
    const size_t in = 6, B = 4;
    aim_dense_config dc;
    aim_compile_config cc;
    float x[24];
    const int32_t labels[4] = {0, 1, 2, 0};
    fill_uniform(x, ARRAY_LEN(x), 15, -1.0f, 1.0f);
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = B;
    STEP(aim_model_create(al, 1, &in, &o->m));
    assert_int_equal(aim_dense_config_init(&dc, 8, AIM_ACT_RELU), AIM_OK);
    STEP(aim_model_add_dense(o->m, &dc));
    STEP(aim_model_add_dropout(o->m, 0.5f));
    assert_int_equal(aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY), AIM_OK);
    STEP(aim_model_add_dense(o->m, &dc));
    STEP(aim_model_compile(o->m, &cc));
    STEP(aim_model_set_random_seed(o->m, 9));
    float *p = NULL;
    size_t np = 0;
    assert_int_equal(aim_model_parameters(o->m, &p, &np), AIM_OK);
    STEP(aim_adam_create(al, NULL, np, &o->opt));
    float loss;
    STEP(aim_model_forward(o->m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
    STEP(aim_model_loss_sparse(o->m, 0, labels, B, &loss));
    STEP(aim_model_backward(o->m, NULL, 0));
    STEP(aim_optimizer_step_model(o->opt, o->m, 0.01f));
    size_t len = 0, written = 0;
    STEP(aim_model_serialized_size(o->m, o->opt, &len));
    o->bytes = malloc(len);
    assert_non_null(o->bytes);
    STEP(aim_model_serialize(o->m, o->opt, o->bytes, len, &written));
    char msg[256];
    STEP(aim_model_deserialize(al, o->bytes, len, &o->m2, &o->opt2, msg, sizeof msg));
    STEP(aim_model_forward(o->m2, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
    return 0;
}

static void test_every_allocation_failure(void **state) {
    (void)state;
    test_alloc ta;
    sweep_objects o;
    const char *failed = NULL;
    memset(&o, 0, sizeof o);
    test_alloc_init(&ta, -1);
    assert_int_equal(sweep_scenario(&ta, &o, &failed), 0);
    const long total = ta.calls;
    sweep_free(&o);
    assert_int_equal(ta.live, 0);
    print_message("clean dense -> dropout -> dense scenario: %ld allocator calls\n", total);
    assert_true(total >= 6);
    for (long k = 0; k <= total; k++) {
        memset(&o, 0, sizeof o);
        failed = NULL;
        test_alloc_init(&ta, k);
        int stopped = sweep_scenario(&ta, &o, &failed);
        sweep_free(&o);
        if (ta.live != 0) fail_msg("k=%ld (%s failed): %ld blocks leaked", k, failed ? failed : "-", ta.live);
        if (k < total) {
            if (ta.failures != 1 || !stopped) fail_msg("k=%ld: expected one reported failure", k);
        } else {
            assert_int_equal(ta.failures, 0);
            assert_int_equal(stopped, 0);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_statistics),
        cmocka_unit_test(test_layers_draw_their_own_masks),
        cmocka_unit_test(test_p_zero_keeps_everything),
        cmocka_unit_test(test_scaling_identity_and_gradient),
        cmocka_unit_test(test_gradcheck_dense_dropout_dense),
        cmocka_unit_test(test_random_seed_restarts_the_stream),
        cmocka_unit_test(test_mask_of_a_row_does_not_depend_on_the_batch),
        cmocka_unit_test(test_refused_forward_does_not_advance_the_stream),
        cmocka_unit_test(test_threadpool_same_masks),
        cmocka_unit_test(test_serialized_model_resumes_the_stream),
        cmocka_unit_test(test_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
