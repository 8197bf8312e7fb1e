/* Layer normalization (src/layers/layer_norm.c), PyTorch nn.LayerNorm over
 * the trailing normalized_dims axes of a sample:
 *  1. goldens against PyTorch 1.13 (golden/golden_embed_ln.h, written by
 *     golden/gen_golden_embed_ln.py): over 1, 2 and 3 trailing axes, with and
 *     without elementwise_affine, the output (training forward, inference
 *     forward and predict), the input gradient and the γ, β gradients of
 *     sum(Y * G). The Embedding -> LayerNorm -> Dense model trained with Adam
 *     against PyTorch is in tests/test_embedding.c;
 *  2. the config defaults, γ = 1 and β = 0 at init, shapes and counts;
 *  3. numerical stability: groups whose mean is 1e4 times their spread,
 *     against a double reference, and a naive float implementation measured
 *     the same way, to show the test would catch one;
 *  4. central-difference checks of the input, γ and β gradients;
 *  5. a serialization round trip (bit-identical predictions, the same bytes
 *     again) and exact training resume with Adam;
 *  6. the k-th allocation failure for every k of build + compile + train +
 *     serialize + deserialize + predict;
 *  7. a thread pool split against no pool: training and predict.
 *
 * Golden metric and tolerances are test_golden.c's: |got - ref| /
 * max(|ref|, floor), the floor 1% of the largest |ref| of the array; 1e-5 for
 * outputs, 1e-4 for gradients. gen_golden_embed_ln.py --check prints what a
 * float32 PyTorch run measures under the same metric (at most 1.4e-6 for
 * outputs, 3.6e-6 for gradients); the library measures 7.0e-7 and 8.4e-6
 * (the test prints its worst).
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
#include "golden/golden_embed_ln.h"

#define TOL_FORWARD 1e-5
#define TOL_GRAD 1e-4
#define FLOOR_FRAC 1e-2
#define WHAT_WIDTH 30

typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward", TOL_FORWARD, FLOOR_FRAC, 0.0},
    {"gradient", TOL_GRAD, FLOOR_FRAC, 0.0},
};

static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

static aim_model *ln_model(size_t rank, const size_t *dims, size_t nd, int32_t affine) {
    aim_model *m = NULL;
    aim_layer_norm_config lc;
    CHECK_OK(aim_model_create(NULL, rank, dims, &m));
    CHECK_OK(aim_layer_norm_config_init(&lc));
    lc.normalized_dims = nd;
    lc.elementwise_affine = affine;
    CHECK_OK(aim_model_add_layer_norm(m, &lc));
    return m;
}

static void compile_model(aim_model *m, size_t max_batch, int32_t input_gradient, uint64_t seed) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = max_batch;
    cc.input_gradient = input_gradient;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(m, &cc));
}

static size_t n_params(aim_model *m) {
    float *p = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_parameters(m, &p, &n));
    return n;
}

/* ------------------------------------------------------------------ 1. goldens */

typedef struct ln_golden {
    const char *name;
    size_t rank, dims[3], nd;
    int32_t affine;
    const float *x, *g, *gamma, *beta, *y, *dx, *dgamma, *dbeta;
    size_t n, nn; /* floats of X (whole batch) and of the normalized shape */
} ln_golden;

#define LN_AFFINE(nm, r, d0, d1, d2, nd, nn)                                                                 \
    {#nm, r, {d0, d1, d2}, nd, 1, golden_ln_##nm##_x, golden_ln_##nm##_g, golden_ln_##nm##_gamma,             \
     golden_ln_##nm##_beta, golden_ln_##nm##_y, golden_ln_##nm##_dx, golden_ln_##nm##_dgamma,                 \
     golden_ln_##nm##_dbeta, ARRAY_LEN(golden_ln_##nm##_x), nn}
#define LN_PLAIN(nm, r, d0, d1, d2, nd, nn)                                                                  \
    {#nm, r, {d0, d1, d2}, nd, 0, golden_ln_##nm##_x, golden_ln_##nm##_g, NULL, NULL, golden_ln_##nm##_y,     \
     golden_ln_##nm##_dx, NULL, NULL, ARRAY_LEN(golden_ln_##nm##_x), nn}

static const ln_golden LN_GOLDENS[] = {
    LN_AFFINE(last1, 2, 3, 5, 0, 1, 5),      LN_PLAIN(last1_plain, 2, 3, 5, 0, 1, 5),
    LN_AFFINE(last2, 2, 3, 5, 0, 2, 15),     LN_PLAIN(last2_plain, 2, 3, 5, 0, 2, 15),
    LN_AFFINE(vec, 1, 7, 0, 0, 1, 7),        LN_AFFINE(all3, 3, 2, 3, 4, 3, 24),
    LN_AFFINE(last2_of3, 3, 2, 3, 4, 2, 12),
};

static void test_goldens(void **state) {
    (void)state;
    enum { B = GOLDEN_LN_B };
    for (size_t k = 0; k < ARRAY_LEN(LN_GOLDENS); k++) {
        const ln_golden *c = &LN_GOLDENS[k];
        printf("  %s (normalized_dims %zu, %s)\n", c->name, c->nd, c->affine ? "affine" : "no affine");
        aim_model *m = ln_model(c->rank, c->dims, c->nd, c->affine);
        compile_model(m, B, 1, 1);
        assert_int_equal(aim_model_input_size(m) * B, c->n);
        assert_int_equal(aim_model_output_size(m) * B, c->n);
        size_t off = 9, wc = 9, bc = 9;
        CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
        assert_int_equal(off, 0);
        assert_int_equal(wc, c->affine ? c->nn : 0);
        assert_int_equal(bc, c->affine ? c->nn : 0);
        float *p = NULL;
        size_t np = 0;
        CHECK_OK(aim_model_parameters(m, &p, &np));
        assert_int_equal(np, c->affine ? 2 * c->nn : 0);
        if (c->affine) {
            memcpy(p, c->gamma, c->nn * sizeof *p);
            memcpy(p + c->nn, c->beta, c->nn * sizeof *p);
        }
        const float *y = NULL;
        size_t ny = 0;
        char what[64];
        CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, c->x, c->n, B));
        CHECK_OK(aim_model_output(m, 0, &y, &ny));
        assert_int_equal(ny, c->n);
        snprintf(what, sizeof what, "%s Y (inference)", c->name);
        expect_close(what, y, c->y, c->n, CMP_FORWARD);

        aim_workspace *ws = NULL;
        float out[64];
        assert_true(c->n <= ARRAY_LEN(out));
        CHECK_OK(aim_workspace_create(m, NULL, B, &ws));
        CHECK_OK(aim_model_predict(m, ws, c->x, c->n, B, out, c->n));
        snprintf(what, sizeof what, "%s Y (predict)", c->name);
        expect_close(what, out, c->y, c->n, CMP_FORWARD);
        /* predict and the model's own forward run the same kernel on the same rows. */
        assert_memory_equal(out, y, c->n * sizeof *out);
        aim_workspace_free(ws);

        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->n, B));
        CHECK_OK(aim_model_output(m, 0, &y, &ny));
        snprintf(what, sizeof what, "%s Y", c->name);
        expect_close(what, y, c->y, c->n, CMP_FORWARD);
        CHECK_OK(aim_model_backward(m, c->g, c->n));
        const float *dx = NULL;
        size_t ndx = 0;
        CHECK_OK(aim_model_input_gradient(m, 0, &dx, &ndx));
        assert_int_equal(ndx, c->n);
        snprintf(what, sizeof what, "%s dX", c->name);
        expect_close(what, dx, c->dx, c->n, CMP_GRAD);
        if (c->affine) {
            float *gr = NULL;
            size_t ng = 0;
            CHECK_OK(aim_model_gradients(m, &gr, &ng));
            snprintf(what, sizeof what, "%s dgamma", c->name);
            expect_close(what, gr, c->dgamma, c->nn, CMP_GRAD);
            snprintf(what, sizeof what, "%s dbeta", c->name);
            expect_close(what, gr + c->nn, c->dbeta, c->nn, CMP_GRAD);
        }
        aim_model_free(m);
    }
    golden_print_worst(CMP, CMP_KINDS);
}

/* ------------------------------------------------------------------ 2. defaults */

static void test_config_and_init(void **state) {
    (void)state;
    aim_layer_norm_config lc;
    memset(&lc, 0x5a, sizeof lc);
    CHECK_OK(aim_layer_norm_config_init(&lc));
    assert_int_equal(lc.normalized_dims, 1);
    assert_true(lc.eps == 1e-5f);
    assert_int_equal(lc.elementwise_affine, 1);

    const size_t dims[3] = {2, 3, 4};
    aim_model *m = ln_model(3, dims, 2, 1);
    size_t rank = 0, od[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, 0, &rank, od));
    assert_int_equal(rank, 3);
    assert_true(od[0] == 2 && od[1] == 3 && od[2] == 4);
    compile_model(m, 2, 0, 7);
    float *p = NULL;
    size_t np = 0;
    CHECK_OK(aim_model_parameters(m, &p, &np));
    assert_int_equal(np, 24); /* γ [3, 4], β [3, 4] */
    for (size_t i = 0; i < 12; i++) {
        assert_true(p[i] == 1.0f);
        assert_true(p[12 + i] == 0.0f);
    }
    aim_model_free(m);
}

/* ------------------------------------------------------------------ 3. stability */

/* The double reference of one group: y = (x - μ) / sqrt(σ² + eps) (no
 * affine), and dx = r (g - mean g - x̂ mean(g x̂)), from the float inputs. */
static void reference_group(const float *x, const float *g, size_t N, double eps, double *y, double *dx) {
    double mu = 0, var = 0, mg = 0, mgx = 0;
    for (size_t i = 0; i < N; i++) mu += x[i];
    mu /= (double)N;
    for (size_t i = 0; i < N; i++) var += ((double)x[i] - mu) * ((double)x[i] - mu);
    var /= (double)N;
    const double r = 1.0 / sqrt(var + eps);
    for (size_t i = 0; i < N; i++) {
        y[i] = ((double)x[i] - mu) * r;
        mg += g[i];
        mgx += g[i] * y[i];
    }
    mg /= (double)N;
    mgx /= (double)N;
    for (size_t i = 0; i < N; i++) dx[i] = r * (g[i] - mg - y[i] * mgx);
}

/* The obvious float implementation: μ rounded to one float, then x − μ. */
static void naive_group(const float *x, size_t N, float eps, float *y) {
    float mu = 0, var = 0;
    for (size_t i = 0; i < N; i++) mu += x[i];
    mu /= (float)N;
    for (size_t i = 0; i < N; i++) var += (x[i] - mu) * (x[i] - mu);
    var /= (float)N;
    const float r = 1.0f / sqrtf(var + eps);
    for (size_t i = 0; i < N; i++) y[i] = (x[i] - mu) * r;
}

/* Groups of 256 values U(-1, 1) around means from 0.5 to 1e4 (|μ|/σ up to
 * 1.7e4). The library's x̂ stays within 1e-5 of the double reference (it
 * measures ~1e-6: x − μ₀ is exact, c and r carry a few float roundings);
 * rounding μ to a float would cost ulp(1e4) / 2 / σ = 8.5e-4, which the
 * naive implementation shows (asserted above 1e-4), so this test would catch
 * it. The input gradient is compared on the same scale (tolerance 1e-4 of
 * its largest value; measured ~1e-6). */
static void test_large_mean_stability(void **state) {
    (void)state;
    enum { N = 256, B = 4 };
    static const float means[B] = {1e4f, -3e3f, 1e2f, 0.5f};
    const size_t dims[1] = {N};
    float x[B * N], g[B * N], naive[N];
    double y_ref[N], dx_ref[B * N];
    fill_uniform(x, B * N, 41, -1.0f, 1.0f);
    fill_uniform(g, B * N, 42, -1.0f, 1.0f);
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < N; i++) x[b * N + i] += means[b];
    aim_model *m = ln_model(1, dims, 1, 0);
    compile_model(m, B, 1, 1);
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, B * N, B));
    const float *y = NULL, *dx = NULL;
    size_t ny = 0, ndx = 0;
    CHECK_OK(aim_model_output(m, 0, &y, &ny));
    CHECK_OK(aim_model_backward(m, g, B * N));
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &ndx));
    double dx_scale = 0;
    for (size_t b = 0; b < B; b++) {
        reference_group(x + b * N, g + b * N, N, (double)1e-5f, y_ref, dx_ref + b * N);
        naive_group(x + b * N, N, 1e-5f, naive);
        double err = 0, err_naive = 0;
        for (size_t i = 0; i < N; i++) {
            err = fmax(err, fabs((double)y[b * N + i] - y_ref[i]));
            err_naive = fmax(err_naive, fabs((double)naive[i] - y_ref[i]));
            dx_scale = fmax(dx_scale, fabs(dx_ref[b * N + i]));
        }
        printf("    mean %-8g x-hat max abs err %.2e (naive float: %.2e)\n", (double)means[b], err, err_naive);
        assert_true(err <= 1e-5);
        if (b == 0) assert_true(err_naive > 1e-4);
    }
    double dx_err = 0;
    for (size_t i = 0; i < B * N; i++) dx_err = fmax(dx_err, fabs((double)dx[i] - dx_ref[i]));
    printf("    dX max abs err %.2e of max |dX| %.2e\n", dx_err, dx_scale);
    assert_true(dx_err <= 1e-4 * dx_scale);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ 4. gradient checks */

/* L = sum(Y * R) (support.h's GRADCHECK_WEIGHTED_SUM), inputs U(-1, 1), R
 * in +-[0.25, 1], γ in [0.5, 1.5], β in [-0.5, 0.5).
 * The step h = 3e-3 balances the two errors of the central difference.
 * Truncation, h²/6 |L'''|: the normalization's third derivatives grow like
 * r³ (r = 1/σ ~ 2 for a few values of U(-1, 1)); at h = 1e-2 it reached
 * 4.4e-3 (93% of the tolerance). Rounding: a perturbation moves every output
 * of its group (all of them behind a dense layer), each carrying float
 * errors of ~1e-7, so L(v ± h) is off by ~1.4e-6 (measured: 2.3e-3 at
 * h = 3e-4, 6.9e-4 at 1e-3) and the quotient by 1.4e-6 / 2h = 2.3e-4 here.
 * Measured at 3e-3: max |a - n| 4.6e-4, 9% of the tolerance (the test prints
 * it). A 10% error in an entry >= 0.015 fails: 0.1 |a| > 0.01 |a| + 1e-3. */
static const gradcheck_tol LN_TOL = {3e-3, 1e-2, 1e-3};

static void set_affine(aim_model *m, size_t layer, uint64_t seed) {
    float *p = NULL;
    size_t np = 0, off = 0, wc = 0, bc = 0;
    CHECK_OK(aim_model_parameters(m, &p, &np));
    CHECK_OK(aim_model_layer_parameters(m, layer, &off, &wc, &bc));
    fill_uniform(p + off, wc, seed, 0.5f, 1.5f);
    fill_uniform(p + off + wc, bc, seed + 1, -0.5f, 0.5f);
}

static void weights_r(float *r, size_t n, uint64_t seed) {
    fill_uniform(r, n, seed, 0.25f, 1.0f);
    for (size_t i = 0; i < n; i++)
        if (i % 3 == 1) r[i] = -r[i];
}

static void run_gradcheck(aim_model *m, size_t batch, const char *label, gradcheck_worst *worst) {
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float *x = malloc(batch * in * sizeof *x), *r = malloc(batch * out * sizeof *r);
    assert_non_null(x);
    assert_non_null(r);
    fill_uniform(x, batch * in, 17, -1.0f, 1.0f);
    weights_r(r, batch * out, 18);
    gradcheck_case c = {m, x, batch, in, out, GRADCHECK_WEIGHTED_SUM, r, AIM_LOSS_MSE, NULL, NULL};
    char why[GRADCHECK_WHY];
    if (!gradcheck_model(&c, &LN_TOL, GRADCHECK_DENSE, GRADCHECK_DENSE, worst, label, why, sizeof why))
        fail_msg("%s", why);
    free(x);
    free(r);
}

static void test_gradcheck(void **state) {
    (void)state;
    gradcheck_worst worst;
    memset(&worst, 0, sizeof worst);
    {
        const size_t dims[2] = {3, 5};
        aim_model *m = ln_model(2, dims, 1, 1);
        compile_model(m, 2, 1, 3);
        set_affine(m, 0, 5);
        run_gradcheck(m, 2, "layer_norm (3, 5) over the last axis, affine", &worst);
        aim_model_free(m);
    }
    {
        const size_t dims[2] = {3, 5};
        aim_model *m = ln_model(2, dims, 2, 1);
        compile_model(m, 2, 1, 3);
        set_affine(m, 0, 7);
        run_gradcheck(m, 2, "layer_norm (3, 5) over both axes, affine", &worst);
        aim_model_free(m);
    }
    {
        const size_t dims[3] = {2, 3, 4};
        aim_model *m = ln_model(3, dims, 2, 0);
        compile_model(m, 2, 1, 3);
        run_gradcheck(m, 2, "layer_norm (2, 3, 4) over the last two axes, no affine", &worst);
        aim_model_free(m);
    }
    {
        /* Dense 6 tanh -> layer norm -> Dense 3: dX of the norm feeds the first dense's gradients. */
        const size_t dims[1] = {4};
        aim_model *m = NULL;
        aim_dense_config dc;
        aim_layer_norm_config lc;
        CHECK_OK(aim_model_create(NULL, 1, dims, &m));
        CHECK_OK(aim_dense_config_init(&dc, 6, AIM_ACT_TANH));
        CHECK_OK(aim_model_add_dense(m, &dc));
        CHECK_OK(aim_layer_norm_config_init(&lc));
        CHECK_OK(aim_model_add_layer_norm(m, &lc));
        CHECK_OK(aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY));
        CHECK_OK(aim_model_add_dense(m, &dc));
        compile_model(m, 3, 1, 11);
        set_affine(m, 1, 9);
        run_gradcheck(m, 3, "dense tanh -> layer_norm -> dense", &worst);
        aim_model_free(m);
    }
    printf("    worst: %zu values in %zu parts, max |a - n| %.2e, %.0f%% of the tolerance (%s, %s)\n",
           worst.values, worst.parts, worst.max_abs_err, 100.0 * worst.max_usage, worst.label, worst.part);
}

/* ------------------------------------------------------------------ 5. serialization */

/* (3, 8) -> layer norm (affine) -> flatten -> dense 8 tanh -> layer norm
 * (no affine, eps 1e-3) -> dense 3. */
static aim_model *chain_model(const aim_allocator *al, aim_status *fail_st, const char **failed) {
    const size_t dims[2] = {3, 8};
    aim_model *m = NULL;
    aim_layer_norm_config lc;
    aim_dense_config dc;
    aim_status st;
#define TRY(call)                             \
    do {                                      \
        if ((st = (call)) != AIM_OK) {        \
            *fail_st = st;                    \
            *failed = #call;                  \
            aim_model_free(m);                \
            return NULL;                      \
        }                                     \
    } while (0)
    TRY(aim_model_create(al, 2, dims, &m));
    (void)aim_layer_norm_config_init(&lc);
    TRY(aim_model_add_layer_norm(m, &lc));
    TRY(aim_model_add_flatten(m));
    (void)aim_dense_config_init(&dc, 8, AIM_ACT_TANH);
    TRY(aim_model_add_dense(m, &dc));
    lc.elementwise_affine = 0;
    lc.eps = 1e-3f;
    TRY(aim_model_add_layer_norm(m, &lc));
    (void)aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY);
    TRY(aim_model_add_dense(m, &dc));
#undef TRY
    return m;
}

static aim_model *chain_compiled(uint64_t seed) {
    aim_status st = AIM_OK;
    const char *failed = NULL;
    aim_model *m = chain_model(NULL, &st, &failed);
    if (!m) fail_msg("%s: %s", failed, aim_status_str(st));
    compile_model(m, 4, 0, seed);
    /* γ and β away from 1 and 0, so the round trip carries something. */
    set_affine(m, 0, seed + 100);
    return m;
}

enum { CH_B = 4, CH_IN = 24, CH_OUT = 3 };

static void chain_data(float *x, int32_t *labels, unsigned step) {
    fill_uniform(x, CH_B * CH_IN, 300 + step, -2.0f, 2.0f);
    for (size_t b = 0; b < CH_B; b++) labels[b] = (int32_t)((b + step) % CH_OUT);
}

static void train(aim_model *m, aim_optimizer *o, unsigned from, unsigned steps) {
    for (unsigned s = from; s < from + steps; s++) {
        float x[CH_B * CH_IN], loss = 0;
        int32_t labels[CH_B];
        chain_data(x, labels, s);
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), CH_B));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, CH_B, &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(o, m, 0.01f));
        assert_true(isfinite(loss));
    }
}

static unsigned char *serialize(const aim_model *m, const aim_optimizer *o, size_t *len) {
    size_t n = 0, w = 0;
    CHECK_OK(aim_model_serialized_size(m, o, &n));
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    CHECK_OK(aim_model_serialize(m, o, buf, n, &w));
    assert_int_equal(w, n);
    *len = n;
    return buf;
}

static void test_round_trip(void **state) {
    (void)state;
    aim_model *m = chain_compiled(5);
    size_t len = 0, len2 = 0;
    unsigned char *buf = serialize(m, NULL, &len);
    aim_model *m2 = NULL;
    char msg[256];
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &m2, NULL, msg, sizeof msg));
    assert_int_equal(aim_model_layer_count(m2), 5);
    /* Everything written comes back: serializing the copy gives the same bytes. */
    unsigned char *buf2 = serialize(m2, NULL, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    size_t off = 0, wc = 0, bc = 0;
    CHECK_OK(aim_model_layer_parameters(m2, 3, &off, &wc, &bc));
    assert_true(wc == 0 && bc == 0);
    CHECK_OK(aim_model_layer_parameters(m2, 0, &off, &wc, &bc));
    assert_true(wc == 8 && bc == 8);

    float x[CH_B * CH_IN], o1[CH_B * CH_OUT], o2[CH_B * CH_OUT];
    int32_t labels[CH_B];
    chain_data(x, labels, 99);
    aim_workspace *w1 = NULL, *w2 = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, CH_B, &w1));
    CHECK_OK(aim_workspace_create(m2, NULL, CH_B, &w2));
    CHECK_OK(aim_model_predict(m, w1, x, ARRAY_LEN(x), CH_B, o1, ARRAY_LEN(o1)));
    CHECK_OK(aim_model_predict(m2, w2, x, ARRAY_LEN(x), CH_B, o2, ARRAY_LEN(o2)));
    assert_memory_equal(o1, o2, sizeof o1);
    assert_true(max_abs_value(o1, ARRAY_LEN(o1)) > 0.0);
    aim_workspace_free(w1);
    aim_workspace_free(w2);
    free(buf);
    free(buf2);
    aim_model_free(m);
    aim_model_free(m2);
}

/* 3 Adam steps, a round trip with the optimizer, then 4 more on both and
 * 7 on a model that never stopped: all three the same bits. */
static void test_resume_is_exact(void **state) {
    (void)state;
    aim_model *a = chain_compiled(8), *c = chain_compiled(8);
    aim_optimizer *oa = NULL, *oc = NULL, *ob = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, n_params(a), &oa));
    CHECK_OK(aim_adam_create(NULL, NULL, n_params(c), &oc));
    train(a, oa, 0, 3);
    size_t len = 0;
    unsigned char *buf = serialize(a, oa, &len);
    aim_model *b = NULL;
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &b, &ob, NULL, 0));
    assert_non_null(ob);
    train(a, oa, 3, 4);
    train(b, ob, 3, 4);
    train(c, oc, 0, 7);
    size_t la, lb, lc;
    unsigned char *ba = serialize(a, oa, &la), *bb = serialize(b, ob, &lb), *bc = serialize(c, oc, &lc);
    assert_true(la == lb && la == lc && la == len);
    assert_memory_equal(ba, bb, la);
    assert_memory_equal(ba, bc, la);
    assert_true(memcmp(ba, buf, la) != 0); /* the weights moved */
    free(ba);
    free(bb);
    free(bc);
    free(buf);
    aim_optimizer_free(oa);
    aim_optimizer_free(ob);
    aim_optimizer_free(oc);
    aim_model_free(a);
    aim_model_free(b);
    aim_model_free(c);
}

/* ------------------------------------------------------------------ 6. allocation failures */

typedef struct alloc_objs {
    aim_model *m, *m2;
    aim_optimizer *o;
    aim_workspace *ws;
    unsigned char *buf;
    float out[CH_B * CH_OUT];
} alloc_objs;

static void free_objs(alloc_objs *o) {
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->o);
    aim_model_free(o->m);
    aim_model_free(o->m2);
    free(o->buf);
    memset(o, 0, sizeof *o);
}

/* Runs the scenario; returns 0 when it completed, else 1 with the failed
 * call's status (which must be AIM_ERR_OUT_OF_MEMORY) in *st. */
static int alloc_scenario(test_alloc *ta, alloc_objs *o, aim_status *st, const char **failed) {
    const aim_allocator *al = &ta->allocator;
    aim_compile_config cc;
    (void)aim_compile_config_init(&cc);
    cc.max_batch = CH_B;
    cc.seed = 3;
#define STEP(call)                         \
    do {                                   \
        if ((*st = (call)) != AIM_OK) {    \
            *failed = #call;               \
            return 1;                      \
        }                                  \
    } while (0)
    o->m = chain_model(al, st, failed);
    if (!o->m) return 1;
    STEP(aim_model_compile(o->m, &cc));
    STEP(aim_adam_create(al, NULL, n_params(o->m), &o->o));
    for (unsigned s = 0; s < 2; s++) {
        float x[CH_B * CH_IN], loss = 0;
        int32_t labels[CH_B];
        chain_data(x, labels, s);
        STEP(aim_model_zero_grad(o->m));
        STEP(aim_model_forward(o->m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), CH_B));
        STEP(aim_model_loss_sparse(o->m, 0, labels, CH_B, &loss));
        STEP(aim_model_backward(o->m, NULL, 0));
        STEP(aim_optimizer_step_model(o->o, o->m, 0.01f));
    }
    size_t len = 0, w = 0;
    STEP(aim_model_serialized_size(o->m, o->o, &len));
    o->buf = malloc(len);
    assert_non_null(o->buf);
    STEP(aim_model_serialize(o->m, o->o, o->buf, len, &w));
    aim_optimizer *o2 = NULL;
    STEP(aim_model_deserialize(al, o->buf, len, &o->m2, &o2, NULL, 0));
    aim_optimizer_free(o2);
    STEP(aim_workspace_create(o->m2, al, CH_B, &o->ws));
    float x[CH_B * CH_IN];
    int32_t labels[CH_B];
    chain_data(x, labels, 50);
    STEP(aim_model_predict(o->m2, o->ws, x, ARRAY_LEN(x), CH_B, o->out, ARRAY_LEN(o->out)));
#undef STEP
    return 0;
}

static void test_allocation_failures(void **state) {
    (void)state;
    test_alloc ta;
    alloc_objs ref, o;
    aim_status st = AIM_OK;
    const char *failed = NULL;
    memset(&ref, 0, sizeof ref);
    test_alloc_init(&ta, -1);
    assert_int_equal(alloc_scenario(&ta, &ref, &st, &failed), 0);
    const long total = ta.calls;
    free_objs(&ref);
    assert_int_equal(ta.live, 0);
    print_message("layer norm scenario: %ld allocator calls\n", total);
    assert_true(total >= 8);
    long k;
    for (k = 0; k < 1000; k++) {
        memset(&o, 0, sizeof o);
        failed = NULL;
        st = AIM_OK;
        test_alloc_init(&ta, k);
        const int stopped = alloc_scenario(&ta, &o, &st, &failed);
        if (k < total) {
            if (!stopped) fail_msg("k=%ld: the scenario completed although allocation %ld failed", k, k);
            if (st != AIM_ERR_OUT_OF_MEMORY) fail_msg("k=%ld: %s returned %s", k, failed, aim_status_str(st));
            assert_int_equal(ta.failures, 1);
        } else {
            assert_int_equal(stopped, 0);
            assert_int_equal(ta.failures, 0);
        }
        free_objs(&o);
        if (ta.live != 0) fail_msg("k=%ld (%s failed): %ld blocks leaked", k, failed ? failed : "-", ta.live);
        if (k >= total) break;
    }
    assert_int_equal(k, total);
}

/* ------------------------------------------------------------------ 7. thread pool */

/* (4, 16) -> layer norm over the last axis (affine), the model's output;
 * batch 7 on 2 and 3 threads (min_work 1: every batch splits).
 * What must be bit-identical, and why: every output row and every row of
 * dX is computed from its own group alone by the same code whatever slice it
 * falls in, so the outputs (training forward and predict) and dX equal the
 * unsplit run's bits. dγ and dβ are sums over the batch: a pool adds each
 * slice's partial sum into its own buffer and reduces them in slice order,
 * so they equal a sliced reference run without a pool (each slice's
 * backward as its own call, summed in slice order), bit for bit, and the
 * unsplit run's within rounding (1e-5 of the largest). */
static void test_thread_pool(void **state) {
    (void)state;
    enum { B = 7, IN = 64 };
    const size_t dims[2] = {4, 16};
    float x[B * IN], g[B * IN];
    fill_uniform(x, B * IN, 61, -2.0f, 3.0f);
    fill_uniform(g, B * IN, 62, -1.0f, 1.0f);
    aim_model *ref = ln_model(2, dims, 1, 1);
    compile_model(ref, B, 1, 4);
    set_affine(ref, 0, 70);
    float *gr = NULL;
    size_t ng = 0;
    const float *y = NULL, *dx = NULL;
    size_t ny = 0, ndx = 0;
    /* The unsplit run. */
    float y0[B * IN], dx0[B * IN], g0[32], p0[B * IN];
    CHECK_OK(aim_model_zero_grad(ref));
    CHECK_OK(aim_model_forward(ref, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
    CHECK_OK(aim_model_output(ref, 0, &y, &ny));
    memcpy(y0, y, sizeof y0);
    CHECK_OK(aim_model_backward(ref, g, ARRAY_LEN(g)));
    CHECK_OK(aim_model_input_gradient(ref, 0, &dx, &ndx));
    memcpy(dx0, dx, sizeof dx0);
    CHECK_OK(aim_model_gradients(ref, &gr, &ng));
    assert_int_equal(ng, 32);
    memcpy(g0, gr, sizeof g0);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(ref, NULL, B, &ws));
    CHECK_OK(aim_model_predict(ref, ws, x, ARRAY_LEN(x), B, p0, ARRAY_LEN(p0)));
    assert_memory_equal(p0, y0, sizeof p0);

    for (size_t threads = 2; threads <= 3; threads++) {
        /* The sliced reference, on the same model without a pool. */
        float gs[32];
        for (size_t w = 0; w < threads; w++) {
            const size_t q = B / threads, r = B % threads, nb = q + (w < r), b0 = w * q + (w < r ? w : r);
            CHECK_OK(aim_model_zero_grad(ref));
            CHECK_OK(aim_model_forward(ref, AIM_MODE_TRAIN, x + b0 * IN, nb * IN, nb));
            CHECK_OK(aim_model_backward(ref, g + b0 * IN, nb * IN));
            for (size_t i = 0; i < 32; i++) gs[i] = w ? gs[i] + gr[i] : gr[i];
        }
        aim_threadpool *pool = NULL;
        CHECK_OK(aim_threadpool_create(NULL, threads, &pool));
        CHECK_OK(aim_threadpool_set_min_work(pool, 1));
        aim_model *m = ln_model(2, dims, 1, 1);
        compile_model(m, B, 1, 4);
        set_affine(m, 0, 70);
        CHECK_OK(aim_model_set_threadpool(m, pool));
        for (int run = 0; run < 2; run++) { /* and a rerun gives the same bits */
            float *gm = NULL;
            size_t ngm = 0;
            CHECK_OK(aim_model_zero_grad(m));
            CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
            CHECK_OK(aim_model_output(m, 0, &y, &ny));
            assert_memory_equal(y, y0, sizeof y0);
            CHECK_OK(aim_model_backward(m, g, ARRAY_LEN(g)));
            CHECK_OK(aim_model_input_gradient(m, 0, &dx, &ndx));
            assert_memory_equal(dx, dx0, sizeof dx0);
            CHECK_OK(aim_model_gradients(m, &gm, &ngm));
            assert_memory_equal(gm, gs, sizeof gs);
            const double scale = max_abs_value(g0, 32);
            for (size_t i = 0; i < 32; i++) assert_true(fabs((double)gm[i] - (double)g0[i]) <= 1e-5 * scale);
        }
        /* predict under a workspace pool: the same bits as without. */
        aim_workspace *wp = NULL;
        float p[B * IN];
        CHECK_OK(aim_workspace_create(m, NULL, B, &wp));
        CHECK_OK(aim_workspace_set_threadpool(wp, m, pool));
        CHECK_OK(aim_model_predict(m, wp, x, ARRAY_LEN(x), B, p, ARRAY_LEN(p)));
        assert_memory_equal(p, p0, sizeof p);
        aim_workspace_free(wp);
        aim_model_free(m);
        aim_threadpool_free(pool);
    }
    aim_workspace_free(ws);
    aim_model_free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),          cmocka_unit_test(test_config_and_init),
        cmocka_unit_test(test_large_mean_stability), cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_allocation_failures), cmocka_unit_test(test_thread_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
