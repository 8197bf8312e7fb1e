/* Tests of the image layers: conv2d (src/layers/conv2d.c), max / average / global
 * average pooling and flatten (src/layers/pool2d.c), and their builders (src/layers/conv2d.c, pool2d.c).
 *
 *  1. Central-difference gradient checks through the public model API, as in
 *     test_gradcheck.c: L = sum(output * R), the analytic gradients from
 *     aim_model_backward(m, R) against (L(v + h) - L(v - h)) / 2h for every
 *     parameter and every input value, guarded against passing on an all-zero
 *     gradient; a first test proves the checker catches a corrupted gradient.
 *  2. The im2col + GEMM kernels against the naive reference kernels on 36
 *     configurations (6 chosen edge cases, 30 random ones), forward and
 *     backward, called directly through src/internal.h; pooling against a
 *     direct transcription of PyTorch's definitions on 60 configurations.
 *  3. Build-time validation (errors, messages) and output shapes against
 *     PyTorch's formula; "same" padding against TensorFlow's split.
 *  4. The seed CNN: its shapes, its parameter count, no allocation in a
 *     training step or a predict after compile, predict equal to forward.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"
#include "../src/internal.h"

/* ======================================================================== */
/* 1. Gradient checks                                                       */
/* ======================================================================== */

/* A value passes when |a - n| <= rtol max(|a|, |n|) + atol, n from a central
 * difference of step h (GC_TOL, checked by the shared gradient checker of
 * tests/support.h). These are test_gradcheck.c's model tolerances; the
 * same analysis holds here. L = sum(Y R) is summed in double from float32
 * outputs; inputs lie in [-1, 1), R in +-[0.25, 1], weights in
 * +-[0.1, 1] / sqrt(fan_in), biases in [-0.5, 0.5), so pre-activations are
 * O(1).
 *  - Truncation: 0 for the identity layers and for pooling (L is linear in
 *    every value, and max pooling's arg-max never changes under a step of h:
 *    its inputs are 0.05 = 5h apart, see fill_grid()); h^2/6 |L'''| ~ 1e-4 at
 *    most with tanh.
 *  - Rounding: a perturbation moves the up to filters * kh * kw (<= 54 here)
 *    outputs that see the value, each rounded to ~6e-8 relative, so
 *    L(v+h) - L(v-h) is off by ~1e-6 at most and n by ~5e-5.
 * Measured: the worst value uses 2.6% of its tolerance (printed at the end).
 * A wrong index or a dropped term moves values by O(0.1) or more;
 * test_checker_catches_a_corrupted_gradient shows that any single entry
 * >= 0.02 off by 10% is caught. */
static const gradcheck_tol GC_TOL = {1e-2, 1e-2, 1e-3}; /* h, rtol, atol */

/* Guards (the shared checker's, tests/support.h): a case must have max |g|
 * above GRADCHECK_MIN_MAX = 1e-3 over all its parts; weights and biases,
 * which every output position uses, must be at least half nonzero
 * (GRADCHECK_DENSE); the input must have a nonzero entry (GRADCHECK_SPARSE:
 * inputs may be legitimately zero, as pooling routes a gradient to one input
 * per window, and strides and dilations skip inputs). */

/* Max pooling inputs: a permutation of a grid of this spacing, 5h. */
#define GRID_GAP 0.05f

static gradcheck_worst g_worst; /* over the run, printed at the end */

/* The full check of a case (gradcheck_model, tests/support.h): the analytic
 * gradients of L = sum(Y R) against central differences in every parameter
 * and every input value, which must come back bit-exactly; every layer's
 * weights and biases, and the input. */
static void gc_check(const gradcheck_case *c, const char *label) {
    char why[GRADCHECK_WHY];
    if (!gradcheck_model(c, &GC_TOL, GRADCHECK_DENSE, GRADCHECK_SPARSE, &g_worst, label, why, sizeof why))
        fail_msg("%s", why);
}

/* ---- building models and drawing points ---------------------------------- */

static aim_model *image_model(size_t C, size_t H, size_t W) {
    const size_t dims[3] = {C, H, W};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 3, dims, &m));
    return m;
}

/* Compiles for batch + 1, so every check also runs below max_batch. */
static void compile_model(aim_model *m, size_t batch, int input_gradient) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = batch + 1;
    cc.input_gradient = input_gradient;
    cc.seed = 7;
    CHECK_OK(aim_model_compile(m, &cc));
}

/* Values of random sign with magnitudes in [lo, hi] (never near 0). */
static void fill_signed(float *x, size_t n, uint64_t seed, float lo, float hi) {
    fill_uniform(x, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = copysignf(lo + (hi - lo) * fabsf(x[i]), x[i]);
}

/* Overwrites every layer's parameters with a point independent of the
 * library's initializer: weights +-[0.1, 1] / sqrt(fan_in), biases in
 * [-0.5, 0.5). fan_in is weights per output channel or unit. */
static void fill_params(aim_model *m, uint64_t seed) {
    float *p = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &p, &count));
    for (size_t l = 0; l < aim_model_layer_count(m); l++) {
        size_t off = 0, wc = 0, bc = 0, rank = 0, dims[AIM_MAX_RANK];
        CHECK_OK(aim_model_layer_parameters(m, l, &off, &wc, &bc));
        if (wc == 0) continue;
        CHECK_OK(aim_model_layer_shape(m, l, &rank, dims));
        const float scale = 1.0f / sqrtf((float)(wc / dims[0]));
        fill_signed(p + off, wc, seed * 101u + l, 0.1f, 1.0f);
        for (size_t i = 0; i < wc; i++) p[off + i] *= scale;
        if (bc) fill_uniform(p + off + wc, bc, seed * 103u + l, -0.5f, 0.5f);
    }
}

/* A random permutation of {0, 1, ..., n-1} GRID_GAP, centred on 0: all values
 * distinct and GRID_GAP apart, so no max-pool window has a tie or a maximum a
 * step of h could change. */
static void fill_grid(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = ((float)i - 0.5f * (float)(n - 1)) * GRID_GAP;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 3;
    for (size_t i = n; i-- > 1;) { /* Fisher-Yates */
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t j = (size_t)(s % (i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* Runs gc_check on a compiled model at a generic point. */
static void check_model_point(aim_model *m, size_t batch, int grid_input, uint64_t seed, const char *label) {
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float *x = malloc(batch * in * sizeof *x), *r = malloc(batch * out * sizeof *r);
    assert_true(x && r);
    fill_params(m, seed);
    if (grid_input) fill_grid(x, batch * in, seed);
    else fill_uniform(x, batch * in, seed * 7u + 1u, -1.0f, 1.0f);
    fill_signed(r, batch * out, seed * 11u + 2u, 0.25f, 1.0f);
    gradcheck_case c = {.m = m, .x = x, .batch = batch, .in = in, .out = out, .obj = GRADCHECK_WEIGHTED_SUM,
                        .r = r};
    gc_check(&c, label);
    free(x);
    free(r);
}

/* ---- conv2d cases --------------------------------------------------------- */

typedef struct conv_spec {
    const char *name;
    size_t batch, C, H, W;
    size_t filters, kh, kw, sh, sw, dh, dw, groups;
    aim_padding padding;
    size_t pt, pb, pl, pr;
    int bias;
    aim_activation act;
} conv_spec;

static void add_conv(aim_model *m, const conv_spec *s) {
    aim_conv2d_config cc;
    CHECK_OK(aim_conv2d_config_init(&cc, s->filters, s->kh, s->kw, s->act));
    cc.stride_h = s->sh;
    cc.stride_w = s->sw;
    cc.dilation_h = s->dh;
    cc.dilation_w = s->dw;
    cc.groups = s->groups;
    cc.padding = s->padding;
    cc.pad_top = s->pt;
    cc.pad_bottom = s->pb;
    cc.pad_left = s->pl;
    cc.pad_right = s->pr;
    cc.use_bias = s->bias;
    CHECK_OK(aim_model_add_conv2d(m, &cc));
}

#define ID AIM_ACT_IDENTITY
#define TANH AIM_ACT_TANH
#define EXPL AIM_PAD_EXPLICIT
#define VALID AIM_PAD_VALID
#define SAME AIM_PAD_SAME

static const conv_spec CONV_SPECS[] = {
    /* name                       B  C  H  W   O kh kw sh sw dh dw g  padding pt pb pl pr bias act */
    {"3x3 stride 1 valid",        2, 2, 5, 6,  3, 3, 3, 1, 1, 1, 1, 1, VALID, 0, 0, 0, 0, 1, ID},
    {"explicit padding 0",        2, 2, 5, 5,  2, 3, 3, 1, 1, 1, 1, 1, EXPL,  0, 0, 0, 0, 1, ID},
    {"explicit padding 1",        2, 2, 5, 5,  2, 3, 3, 1, 1, 1, 1, 1, EXPL,  1, 1, 1, 1, 1, ID},
    {"stride 2 padding 1",        2, 2, 6, 7,  3, 3, 3, 2, 2, 1, 1, 1, EXPL,  1, 1, 1, 1, 1, ID},
    {"asymmetric padding",        2, 2, 5, 5,  2, 3, 3, 1, 1, 1, 1, 1, EXPL,  2, 0, 1, 3, 1, ID},
    {"same stride 1",             2, 2, 5, 6,  3, 3, 3, 1, 1, 1, 1, 1, SAME,  0, 0, 0, 0, 1, ID},
    {"same stride 2 even kernel", 2, 2, 7, 6,  2, 4, 2, 2, 2, 1, 1, 1, SAME,  0, 0, 0, 0, 1, ID},
    {"same dilation 2",           2, 2, 6, 5,  2, 3, 3, 1, 1, 2, 2, 1, SAME,  0, 0, 0, 0, 1, ID},
    {"dilation 2 valid",          2, 2, 7, 8,  2, 3, 3, 1, 1, 2, 2, 1, VALID, 0, 0, 0, 0, 1, ID},
    {"stride (2,1) dilation (1,2)", 2, 2, 7, 8, 2, 3, 2, 2, 1, 1, 2, 1, EXPL, 1, 0, 0, 1, 1, ID},
    {"3x2 kernel, 6x5 input",     2, 2, 6, 5,  3, 3, 2, 1, 1, 1, 1, 1, VALID, 0, 0, 0, 0, 1, ID},
    {"2x3 kernel stride 2, 5x7",  2, 3, 5, 7,  2, 2, 3, 2, 2, 1, 1, 1, EXPL,  0, 1, 1, 0, 1, ID},
    {"1x1 kernel",                2, 3, 4, 5,  2, 1, 1, 1, 1, 1, 1, 1, VALID, 0, 0, 0, 0, 1, ID},
    {"kernel = input",            2, 2, 3, 4,  3, 3, 4, 1, 1, 1, 1, 1, VALID, 0, 0, 0, 0, 1, ID},
    {"groups 2",                  2, 4, 5, 5,  6, 3, 3, 1, 1, 1, 1, 2, EXPL,  1, 1, 1, 1, 1, ID},
    {"depthwise",                 2, 3, 5, 6,  3, 3, 3, 1, 1, 1, 1, 3, SAME,  0, 0, 0, 0, 1, ID},
    {"depthwise x2 stride 2",     2, 3, 6, 5,  6, 3, 3, 2, 2, 1, 1, 3, SAME,  0, 0, 0, 0, 1, ID},
    {"no bias",                   2, 2, 5, 6,  3, 3, 3, 1, 1, 1, 1, 1, EXPL,  1, 1, 1, 1, 0, ID},
    {"groups 2 no bias",          2, 4, 5, 4,  4, 2, 2, 1, 1, 1, 1, 2, VALID, 0, 0, 0, 0, 0, ID},
    {"tanh",                      2, 2, 5, 6,  3, 3, 3, 1, 1, 1, 1, 1, SAME,  0, 0, 0, 0, 1, TANH},
    {"tanh stride 2 groups 2",    2, 4, 6, 6,  4, 3, 3, 2, 2, 1, 1, 2, SAME,  0, 0, 0, 0, 1, TANH},
    {"tanh no bias dilation 2",   2, 2, 7, 6,  2, 3, 2, 1, 1, 2, 2, 1, EXPL,  1, 2, 0, 1, 0, TANH},
};

#define N_SEEDS 2
static const uint64_t SEEDS[N_SEEDS] = {11, 29};

static void test_conv_gradients(void **state) {
    const conv_spec *s = *state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = image_model(s->C, s->H, s->W);
        add_conv(m, s);
        compile_model(m, s->batch, 1);
        char label[128];
        snprintf(label, sizeof label, "conv2d %s, seed %llu", s->name, (unsigned long long)SEEDS[k]);
        check_model_point(m, s->batch, 0, SEEDS[k], label);
        aim_model_free(m);
    }
}

/* ---- pooling, flatten and stacks ------------------------------------------ */

typedef enum pool_kind { P_MAX, P_AVG, P_GLOBAL, P_FLATTEN } pool_kind;

typedef struct pool_spec {
    const char *name;
    pool_kind kind;
    size_t batch, C, H, W, kh, kw, sh, sw, ph, pw;
} pool_spec;

static void add_pool(aim_model *m, pool_kind kind, size_t kh, size_t kw, size_t sh, size_t sw, size_t ph,
                     size_t pw) {
    aim_pool2d_config pc;
    switch (kind) {
    case P_GLOBAL:
        CHECK_OK(aim_model_add_global_avg_pool2d(m));
        return;
    case P_FLATTEN:
        CHECK_OK(aim_model_add_flatten(m));
        return;
    case P_MAX:
    case P_AVG:
        break;
    }
    CHECK_OK(aim_pool2d_config_init(&pc, kh, kw));
    pc.stride_h = sh;
    pc.stride_w = sw;
    pc.pad_h = ph;
    pc.pad_w = pw;
    CHECK_OK(kind == P_MAX ? aim_model_add_max_pool2d(m, &pc) : aim_model_add_avg_pool2d(m, &pc));
}

static const pool_spec POOL_SPECS[] = {
    /* name                          kind    B  C  H  W kh kw sh sw ph pw */
    {"max 2x2",                      P_MAX,  2, 2, 6, 6, 2, 2, 2, 2, 0, 0},
    {"max 2x2, odd input (floor)",   P_MAX,  2, 2, 7, 5, 2, 2, 2, 2, 0, 0},
    {"max 3x3 stride 2 pad 1",       P_MAX,  2, 2, 7, 7, 3, 3, 2, 2, 1, 1},
    {"max 3x2 stride (1,2) pad 1",   P_MAX,  1, 2, 6, 7, 3, 2, 1, 2, 1, 1},
    {"max 2x2 stride 1 (overlap)",   P_MAX,  2, 1, 5, 5, 2, 2, 1, 1, 0, 0},
    {"avg 2x2",                      P_AVG,  2, 2, 6, 6, 2, 2, 2, 2, 0, 0},
    {"avg 3x3 stride 2 pad 1",       P_AVG,  2, 2, 7, 7, 3, 3, 2, 2, 1, 1},
    {"avg 2x3 stride 1 pad (1,1)",   P_AVG,  1, 2, 5, 6, 2, 3, 1, 1, 1, 1},
    {"avg 3x3 stride 1 no pad",      P_AVG,  2, 2, 5, 6, 3, 3, 1, 1, 0, 0},
    {"global average",               P_GLOBAL, 2, 3, 5, 4, 0, 0, 0, 0, 0, 0},
    {"flatten",                      P_FLATTEN, 2, 2, 3, 4, 0, 0, 0, 0, 0, 0},
};

static void test_pool_gradients(void **state) {
    const pool_spec *s = *state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = image_model(s->C, s->H, s->W);
        add_pool(m, s->kind, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw);
        compile_model(m, s->batch, 1);
        char label[128];
        snprintf(label, sizeof label, "%s, seed %llu", s->name, (unsigned long long)SEEDS[k]);
        check_model_point(m, s->batch, s->kind == P_MAX, SEEDS[k], label);
        aim_model_free(m);
    }
}

static void add_dense(aim_model *m, size_t units, aim_activation act) {
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, units, act));
    CHECK_OK(aim_model_add_dense(m, &dc));
}

/* Max pooling first, on grid inputs (later layers cannot move its arg-max),
 * then conv, average pooling with padding, a grouped strided conv, flatten
 * and a dense layer: every backward hands its dX to the next. */
static void test_stack_gradients(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = image_model(2, 6, 6);
        add_pool(m, P_MAX, 2, 2, 2, 2, 0, 0);                                                /* 2x3x3 */
        const conv_spec c1 = {"", 0, 0, 0, 0, 4, 3, 3, 1, 1, 1, 1, 1, SAME, 0, 0, 0, 0, 1, TANH}; /* 4x3x3 */
        add_conv(m, &c1);
        add_pool(m, P_AVG, 3, 3, 2, 2, 1, 1);                                                /* 4x2x2 */
        const conv_spec c2 = {"", 0, 0, 0, 0, 4, 2, 2, 1, 1, 1, 1, 2, VALID, 0, 0, 0, 0, 1, ID}; /* 4x1x1 */
        add_conv(m, &c2);
        add_pool(m, P_FLATTEN, 0, 0, 0, 0, 0, 0);
        add_dense(m, 3, AIM_ACT_TANH);
        compile_model(m, 2, 1);
        size_t rank = 0, dims[AIM_MAX_RANK];
        CHECK_OK(aim_model_layer_shape(m, 3, &rank, dims));
        assert_true(rank == 3 && dims[0] == 4 && dims[1] == 1 && dims[2] == 1);
        char label[64];
        snprintf(label, sizeof label, "maxpool-conv-avgpool-conv-flatten-dense, seed %llu",
                 (unsigned long long)SEEDS[k]);
        check_model_point(m, 2, 1, SEEDS[k], label);
        aim_model_free(m);

        /* conv stride 2 -> conv dilated -> global average -> dense */
        m = image_model(3, 9, 8);
        const conv_spec c3 = {"", 0, 0, 0, 0, 4, 3, 3, 2, 2, 1, 1, 1, SAME, 0, 0, 0, 0, 1, TANH}; /* 4x5x4 */
        const conv_spec c4 = {"", 0, 0, 0, 0, 4, 2, 2, 1, 1, 2, 2, 4, EXPL, 1, 0, 1, 0, 1, ID};   /* 4x4x3 */
        add_conv(m, &c3);
        add_conv(m, &c4);
        add_pool(m, P_GLOBAL, 0, 0, 0, 0, 0, 0);
        add_dense(m, 2, AIM_ACT_IDENTITY);
        compile_model(m, 2, 1);
        snprintf(label, sizeof label, "conv-conv-globalavg-dense, seed %llu", (unsigned long long)SEEDS[k]);
        check_model_point(m, 2, 0, SEEDS[k], label);
        aim_model_free(m);
    }
}

/* A conv first layer without input_gradient skips dX (dx NULL in the kernel);
 * its parameter gradients must not change. */
static void test_first_layer_without_input_gradient(void **state) {
    (void)state;
    const conv_spec s = {"", 3, 2, 6, 5, 3, 3, 2, 2, 1, 1, 2, 1, EXPL, 1, 0, 1, 1, 1, TANH};
    float *g[2] = {NULL, NULL};
    size_t count[2] = {0, 0};
    aim_model *m[2];
    float x[3 * 2 * 6 * 5], r[3 * 3 * 3 * 5]; /* output 3 x 3 x 5 */
    fill_uniform(x, ARRAY_LEN(x), 5, -1.0f, 1.0f);
    fill_uniform(r, ARRAY_LEN(r), 6, -1.0f, 1.0f);
    for (int k = 0; k < 2; k++) {
        m[k] = image_model(s.C, s.H, s.W);
        add_conv(m[k], &s);
        compile_model(m[k], s.batch, k);
        assert_int_equal(aim_model_output_size(m[k]), 3 * 3 * 5);
        fill_params(m[k], 3);
        CHECK_OK(aim_model_zero_grad(m[k]));
        CHECK_OK(aim_model_forward(m[k], AIM_MODE_TRAIN, x, ARRAY_LEN(x), s.batch));
        CHECK_OK(aim_model_backward(m[k], r, ARRAY_LEN(r)));
        CHECK_OK(aim_model_gradients(m[k], &g[k], &count[k]));
    }
    const float *ig = NULL;
    size_t nig = 0;
    assert_int_equal(aim_model_input_gradient(m[0], 0, &ig, &nig), AIM_ERR_INVALID_STATE);
    assert_int_equal(count[0], count[1]);
    assert_memory_equal(g[0], g[1], count[0] * sizeof(float));
    aim_model_free(m[0]);
    aim_model_free(m[1]);
}

/* The checker itself: it passes a correct gradient, reports any one weight
 * entry off by 10% and an input entry off by 0.01, and its guard rejects an
 * all-zero gradient. */
static void test_checker_catches_a_corrupted_gradient(void **state) {
    (void)state;
    const conv_spec s = {"", 2, 2, 5, 5, 2, 3, 3, 2, 2, 1, 1, 1, VALID, 0, 0, 0, 0, 1, TANH};
    aim_model *m = image_model(s.C, s.H, s.W);
    add_conv(m, &s);
    compile_model(m, s.batch, 1);
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float x[2 * 2 * 5 * 5], r[2 * 2 * 2 * 2];
    assert_int_equal(in * s.batch, ARRAY_LEN(x));
    assert_int_equal(out * s.batch, ARRAY_LEN(r));
    fill_params(m, 17);
    fill_uniform(x, ARRAY_LEN(x), 18, -1.0f, 1.0f);
    fill_signed(r, ARRAY_LEN(r), 19, 0.25f, 1.0f);
    gradcheck_case c = {.m = m, .x = x, .batch = s.batch, .in = in, .out = out, .obj = GRADCHECK_WEIGHTED_SUM,
                        .r = r};
    gradcheck_result res;
    char why[GRADCHECK_WHY];
    if (!gradcheck_run(&c, GC_TOL.h, &res, why, sizeof why)) {
        gradcheck_result_free(&res);
        fail_msg("%s", why);
    }
    const size_t wc = 2 * 2 * 3 * 3; /* filters x channels x kernel */

    gradcheck_stats st = gradcheck_compare(res.ap, res.num_p, wc, &GC_TOL);
    assert_int_equal(st.mismatches, 0);
    assert_true(gradcheck_guard_ok(&st, GRADCHECK_DENSE, why, sizeof why));

    /* Every weight entry of size >= 0.02 off by 10% is caught, alone. */
    size_t caught = 0, tried = 0;
    for (size_t i = 0; i < wc; i++) {
        if (fabsf(res.ap[i]) < 0.02f) continue;
        const float saved = res.ap[i];
        res.ap[i] = saved * 1.1f;
        st = gradcheck_compare(res.ap, res.num_p, wc, &GC_TOL);
        tried++;
        if (st.mismatches == 1 && st.first_bad == i) caught++;
        res.ap[i] = saved;
    }
    assert_true(tried >= wc / 2);
    assert_int_equal(caught, tried);

    /* 0.01 added to the smallest input gradient is reported, alone. */
    size_t at = 0;
    for (size_t i = 1; i < res.nx; i++)
        if (fabs(res.num_x[i]) < fabs(res.num_x[at])) at = i;
    res.ax[at] += 0.01f;
    st = gradcheck_compare(res.ax, res.num_x, res.nx, &GC_TOL);
    assert_int_equal(st.mismatches, 1);
    assert_int_equal(st.first_bad, at);

    /* An all-zero analytic gradient against an all-zero numeric one agrees
     * value by value; only the guard rejects it. */
    float zeros[8] = {0};
    double nzeros[8] = {0};
    st = gradcheck_compare(zeros, nzeros, 8, &GC_TOL);
    assert_int_equal(st.mismatches, 0);
    assert_false(gradcheck_guard_ok(&st, GRADCHECK_DENSE, why, sizeof why));
    assert_false(gradcheck_guard_ok(&st, GRADCHECK_SPARSE, why, sizeof why));
    /* Fewer than half the entries nonzero is not enough for a weight. */
    zeros[0] = zeros[1] = zeros[2] = 0.5f;
    nzeros[0] = nzeros[1] = nzeros[2] = 0.5;
    st = gradcheck_compare(zeros, nzeros, 8, &GC_TOL);
    assert_false(gradcheck_guard_ok(&st, GRADCHECK_DENSE, why, sizeof why));
    assert_true(gradcheck_guard_ok(&st, GRADCHECK_SPARSE, why, sizeof why));

    gradcheck_result_free(&res);
    aim_model_free(m);
}

/* ======================================================================== */
/* 2. Fast path (im2col + GEMM) against the naive reference                 */
/* ======================================================================== */

#define TOL_FORWARD 1e-5
#define TOL_BACKWARD 1e-4
#define FLOOR_FRAC 1e-2 /* test_golden.c's floor: 1% of the array's largest |value| */

static uint64_t rnd_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform in [lo, hi]. */
static size_t rnd_in(uint64_t *s, size_t lo, size_t hi) { return lo + (size_t)(rnd_next(s) % (hi - lo + 1)); }

typedef struct kernel_cfg {
    size_t batch, C, H, W, O;
    aim__window win; /* with the groups */
    int bias;
    aim_activation act;
} kernel_cfg;

/* PyTorch's output length, or 0 when the dilated kernel exceeds the padded input. */
static size_t torch_out_len(size_t n, size_t k, size_t s, size_t d, size_t pa, size_t pb) {
    size_t eff = d * (k - 1) + 1, padded = n + pa + pb;
    return eff > padded ? 0 : (padded - eff) / s + 1;
}

/* Fills an aim__layer by hand, as aim_model_add_conv2d would, and checks
 * against the public builder that the shapes and counts agree. Returns 0 for
 * an invalid configuration. */
static int make_layer(const kernel_cfg *k, aim__layer *L) {
    const aim__window *w = &k->win;
    size_t Ho = torch_out_len(k->H, w->kh, w->sh, w->dh, w->pt, w->pb);
    size_t Wo = torch_out_len(k->W, w->kw, w->sw, w->dw, w->pl, w->pr);
    if (Ho == 0 || Wo == 0) return 0;
    memset(L, 0, sizeof *L);
    L->ops = &aim__conv2d_ops;
    L->n_in = 1;
    L->in_rank = L->out_rank = 3;
    L->in_dims[0] = k->C;
    L->in_dims[1] = k->H;
    L->in_dims[2] = k->W;
    L->in_size = k->C * k->H * k->W;
    L->out_dims[0] = k->O;
    L->out_dims[1] = Ho;
    L->out_dims[2] = Wo;
    L->out_size = k->O * Ho * Wo;
    L->weight_count = k->O * (k->C / w->groups) * w->kh * w->kw;
    L->bias_count = k->bias ? k->O : 0;
    aim__conv2d_cfg *c = AIM__CFG_MUT(aim__conv2d_cfg, L);
    c->filters = k->O;
    c->win = *w;
    c->padding = AIM_PAD_EXPLICIT;
    c->act = k->act;
    c->alpha = 0.01f;
    c->use_bias = k->bias;
    aim__conv2d_setup(L);

    aim_model *m = image_model(k->C, k->H, k->W);
    const conv_spec s = {"", k->batch, k->C, k->H, k->W, k->O, w->kh, w->kw, w->sh, w->sw, w->dh, w->dw,
                         w->groups, EXPL, w->pt, w->pb, w->pl, w->pr, k->bias, k->act};
    add_conv(m, &s);
    size_t rank = 0, dims[AIM_MAX_RANK], off = 0, wc = 0, bc = 0;
    CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
    assert_true(rank == 3 && dims[0] == k->O && dims[1] == Ho && dims[2] == Wo);
    compile_model(m, 1, 0);
    CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
    assert_int_equal(wc, L->weight_count);
    assert_int_equal(bc, L->bias_count);
    aim_model_free(m);
    return 1;
}

static double g_worst_kernel[5]; /* y, z, dW, db, dX */
static const char *const KERNEL_PARTS[5] = {"Y", "Z (cache)", "dW", "db", "dX"};

/* test_golden.c's metric; an all-zero reference (an output wholly in the
 * padding, without bias) must be matched exactly. */
static void expect_close(const char *label, int part, const float *got, const float *ref, size_t n, double tol) {
    double floor = fmax(FLOOR_FRAC * max_abs_value(ref, n), (double)FLT_MIN);
    size_t where = 0;
    double err = max_rel_error(got, ref, n, floor, &where);
    if (err > g_worst_kernel[part]) g_worst_kernel[part] = err;
    if (!(err <= tol))
        fail_msg("%s: %s element %zu is %.9g, the naive kernel gives %.9g (rel err %.3g > %.0e)", label,
                 KERNEL_PARTS[part], where, (double)got[where], (double)ref[where], err, tol);
}

static float *alloc_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    return p;
}

/* d f / d z applied to dy, as the fused activation's backward must do it. */
static float act_grad(aim_activation act, float z, float y, float dy) {
    switch (act) {
    case AIM_ACT_TANH: return dy * (1.0f - y * y);
    case AIM_ACT_RELU: return z > 0.0f ? dy : 0.0f;
    default: return dy;
    }
}

static void compare_kernels(const kernel_cfg *k, uint64_t seed, const char *label) {
    aim__layer L;
    assert_true(make_layer(k, &L));
    const size_t B = k->batch, nx = B * L.in_size, ny = B * L.out_size;
    const size_t np = L.weight_count + L.bias_count, ns = aim__conv2d_scratch_floats(&L);
    float *x = alloc_floats(nx), *params = alloc_floats(np);
    float *y = alloc_floats(ny), *yn = alloc_floats(ny), *z = NULL, *zn = NULL;
    float *scratch = alloc_floats(ns); /* exactly the size the layer asks for */
    fill_uniform(x, nx, seed, -1.0f, 1.0f);
    fill_uniform(params, np, seed + 1, -0.5f, 0.5f);
    float *x0 = alloc_floats(nx), *p0 = alloc_floats(np);
    memcpy(x0, x, nx * sizeof *x);
    memcpy(p0, params, np * sizeof *params);

    /* Forward. A training forward keeps, per sample, Z (when f is neither
     * the identity nor ReLU) and the im2col columns (small layers, all of
     * these). */
    assert_true(AIM__CFG(aim__conv2d_cfg, &L)->keep_cols);
    const size_t cps = L.cache_per_sample;
    float *cache = cps ? alloc_floats(B * cps) : NULL;
    aim__conv2d_forward(&L, params, x, y, cache, scratch, B);
    aim__conv2d_forward_naive(&L, params, x, yn, B);
    expect_close(label, 0, y, yn, ny, TOL_FORWARD);
    if (k->act != AIM_ACT_IDENTITY && k->act != AIM_ACT_RELU) { /* ReLU' is read from Y */
        z = alloc_floats(ny);
        zn = alloc_floats(ny);
        for (size_t n = 0; n < B; n++) memcpy(z + n * L.out_size, cache + n * cps, L.out_size * sizeof *z);
        aim__layer Lid = L;
        AIM__CFG_MUT(aim__conv2d_cfg, &Lid)->act = AIM_ACT_IDENTITY;
        aim__conv2d_forward_naive(&Lid, params, x, zn, B);
        expect_close(label, 1, z, zn, ny, TOL_FORWARD);
    }
    /* Inference (no cache) activates in place and must agree. */
    float *yi = alloc_floats(ny);
    aim__conv2d_forward(&L, params, x, yi, NULL, scratch, B);
    assert_memory_equal(yi, y, ny * sizeof *y);
    free(yi);
    /* The same layer without kept columns: Z only, the same Y bit for bit. */
    aim__layer Lnc = L;
    AIM__CFG_MUT(aim__conv2d_cfg, &Lnc)->keep_cols = 0;
    Lnc.cache_per_sample = aim__conv2d_cache_floats(&Lnc);
    assert_true(Lnc.cache_per_sample < cps);
    float *cache_nc = Lnc.cache_per_sample ? alloc_floats(B * Lnc.cache_per_sample) : NULL;
    float *ync = alloc_floats(ny);
    aim__conv2d_forward(&Lnc, params, x, ync, cache_nc, scratch, B);
    assert_memory_equal(ync, y, ny * sizeof *y);

    /* Backward. dy is overwritten with dZ = dY f'(Z); the naive kernel takes
     * that dZ. dparams are added to, dx written (filled with NaN first). */
    float *dy = alloc_floats(ny), *dz = alloc_floats(ny), *dz_expect = alloc_floats(ny);
    fill_uniform(dy, ny, seed + 2, -1.0f, 1.0f);
    memcpy(dz, dy, ny * sizeof *dy);
    for (size_t i = 0; i < ny; i++) dz_expect[i] = act_grad(k->act, z ? z[i] : y[i], y[i], dy[i]);
    float *dp = calloc(np + 1, sizeof *dp), *dpn = calloc(np + 1, sizeof *dpn);
    float *dx = alloc_floats(nx), *dxn = alloc_floats(nx);
    assert_true(dp && dpn);
    for (size_t i = 0; i < nx; i++) dx[i] = dxn[i] = NAN;
    aim__conv2d_backward(&L, params, dp, x, y, cache, dz, dx, scratch, B);
    assert_memory_equal(dz, dz_expect, ny * sizeof *dz);
    aim__conv2d_backward_naive(&L, params, dpn, x, dz, dxn, B);
    expect_close(label, 2, dp, dpn, L.weight_count, TOL_BACKWARD);
    if (L.bias_count) expect_close(label, 3, dp + L.weight_count, dpn + L.weight_count, L.bias_count, TOL_BACKWARD);
    expect_close(label, 4, dx, dxn, nx, TOL_BACKWARD);

    /* Lowering the input again in the backward gives the same bits as the
     * kept columns. */
    {
        float *dp2 = calloc(np + 1, sizeof *dp2), *dx2 = alloc_floats(nx), *dz2 = alloc_floats(ny);
        assert_true(dp2 != NULL);
        memcpy(dz2, dy, ny * sizeof *dy);
        aim__conv2d_backward(&Lnc, params, dp2, x, ync, cache_nc, dz2, dx2, scratch, B);
        assert_memory_equal(dz2, dz, ny * sizeof *dz);
        assert_memory_equal(dp2, dp, np * sizeof *dp);
        assert_memory_equal(dx2, dx, nx * sizeof *dx);
        free(dp2);
        free(dx2);
        free(dz2);
    }

    /* A second backward without dX adds the same dparams again (up to the
     * rounding of the accumulation). */
    float *d2 = alloc_floats(np);
    for (size_t i = 0; i < np; i++) d2[i] = 2.0f * dp[i];
    memcpy(dz, dy, ny * sizeof *dy);
    aim__conv2d_backward(&L, params, dp, x, y, cache, dz, NULL, scratch, B);
    size_t where = 0;
    double err = max_rel_error(dp, d2, np, fmax(FLOOR_FRAC * max_abs_value(d2, np), (double)FLT_MIN), &where);
    if (!(err <= 1e-5))
        fail_msg("%s: after a second backward dparams[%zu] is %.9g, not about %.9g", label, where, (double)dp[where],
                 (double)d2[where]);

    /* Nothing the kernels take as const was written. */
    assert_memory_equal(x, x0, nx * sizeof *x);
    assert_memory_equal(params, p0, np * sizeof *params);

    free(d2);
    free(dp);
    free(dpn);
    free(dx);
    free(dxn);
    free(dy);
    free(dz);
    free(dz_expect);
    free(z);
    free(zn);
    free(cache);
    free(cache_nc);
    free(ync);
    free(x);
    free(x0);
    free(params);
    free(p0);
    free(y);
    free(yn);
    free(scratch);
}

/* Edge cases chosen by hand: windows wholly in the padding, a kernel as large
 * as the input, strides that skip inputs, 1x1, depthwise with a multiplier. */
static const kernel_cfg KERNEL_EDGES[] = {
    /* B  C  H  W  O   kh kw sh sw dh dw pt pb pl pr groups  bias act */
    {2, 2, 3, 3, 2, {1, 1, 1, 1, 1, 1, 3, 2, 1, 3, 1}, 1, AIM_ACT_IDENTITY}, /* rows/cols of pure padding */
    {1, 3, 4, 5, 2, {4, 5, 1, 1, 1, 1, 0, 0, 0, 0, 1}, 1, AIM_ACT_TANH},     /* kernel = input */
    {2, 2, 9, 8, 3, {2, 2, 3, 4, 1, 1, 0, 0, 0, 0, 1}, 0, AIM_ACT_IDENTITY}, /* stride > kernel */
    {3, 4, 5, 6, 8, {3, 3, 1, 2, 2, 1, 2, 2, 1, 1, 4}, 1, AIM_ACT_RELU},     /* depthwise x2, dilated */
    {1, 1, 1, 1, 1, {1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1}, 1, AIM_ACT_IDENTITY}, /* 1x1x1 */
    {2, 6, 7, 7, 6, {3, 1, 2, 1, 1, 3, 1, 1, 0, 0, 3}, 1, AIM_ACT_TANH},     /* groups 3, 3x1 */
};

#define N_RANDOM_KERNELS 30

static void test_fast_path_equals_naive(void **state) {
    (void)state;
    char label[200];
    size_t done = 0;
    for (size_t i = 0; i < ARRAY_LEN(KERNEL_EDGES); i++) {
        const kernel_cfg *k = &KERNEL_EDGES[i];
        snprintf(label, sizeof label, "edge case %zu", i);
        compare_kernels(k, 1000 + i, label);
        done++;
    }
    static const aim_activation acts[] = {AIM_ACT_IDENTITY, AIM_ACT_TANH, AIM_ACT_RELU};
    uint64_t s = 0x5EEDull;
    size_t valid = 0, attempts = 0;
    while (valid < N_RANDOM_KERNELS) {
        assert_true(++attempts < 10000);
        kernel_cfg k;
        memset(&k, 0, sizeof k);
        k.batch = rnd_in(&s, 1, 3);
        k.C = rnd_in(&s, 1, 6);
        aim__window *w = &k.win;
        /* groups: a random divisor of C (1 and C included) */
        do w->groups = rnd_in(&s, 1, k.C);
        while (k.C % w->groups);
        k.O = w->groups * rnd_in(&s, 1, 3);
        k.H = rnd_in(&s, 1, 9);
        k.W = rnd_in(&s, 1, 9);
        w->kh = rnd_in(&s, 1, 4);
        w->kw = rnd_in(&s, 1, 4);
        w->sh = rnd_in(&s, 1, 3);
        w->sw = rnd_in(&s, 1, 3);
        w->dh = rnd_in(&s, 1, 3);
        w->dw = rnd_in(&s, 1, 3);
        w->pt = rnd_in(&s, 0, 3);
        w->pb = rnd_in(&s, 0, 3);
        w->pl = rnd_in(&s, 0, 3);
        w->pr = rnd_in(&s, 0, 3);
        k.bias = (int)rnd_in(&s, 0, 1);
        k.act = acts[rnd_in(&s, 0, 2)];
        aim__layer L;
        if (!make_layer(&k, &L)) continue; /* kernel larger than the padded input */
        snprintf(label, sizeof label,
                 "random case %zu: B %zu, C %zu, %zux%zu, O %zu, k %zux%zu, s %zux%zu, d %zux%zu, "
                 "pad %zu/%zu/%zu/%zu, groups %zu, bias %d, act %d",
                 valid, k.batch, k.C, k.H, k.W, k.O, w->kh, w->kw, w->sh, w->sw, w->dh, w->dw, w->pt, w->pb,
                 w->pl, w->pr, w->groups, k.bias, (int)k.act);
        compare_kernels(&k, 2000 + valid, label);
        valid++;
        done++;
    }
    print_message("    %zu configurations (%zu random draws, %zu invalid skipped); worst rel err:", done, attempts,
                  attempts - valid);
    for (size_t i = 0; i < ARRAY_LEN(g_worst_kernel); i++)
        print_message(" %s %.3g", KERNEL_PARTS[i], g_worst_kernel[i]);
    print_message("\n");
}

/* Pooling against a direct transcription of PyTorch's definitions (floor
 * mode): the window of output (i, j) covers rows [i sh - ph, i sh - ph + kh)
 * and columns likewise, clipped to the input; max takes the first maximum in
 * row-major scan order and routes dY there (padding never wins, so an
 * all-negative window at the border gives its negative maximum); average
 * divides by kh kw (count_include_pad=True). Inputs are small integers, so
 * ties are everywhere and the first-maximum rule is exercised. */
static void pool_reference(int is_max, size_t B, size_t C, size_t H, size_t W, const aim_pool2d_config *pc,
                           size_t Ho, size_t Wo, const float *x, const float *dy, float *y, float *dx) {
    memset(dx, 0, B * C * H * W * sizeof *dx);
    for (size_t nc = 0; nc < B * C; nc++)
        for (size_t i = 0; i < Ho; i++)
            for (size_t j = 0; j < Wo; j++) {
                double sum = 0.0;
                float best = -INFINITY;
                size_t at = SIZE_MAX;
                for (size_t p = 0; p < pc->kernel_h; p++)
                    for (size_t q = 0; q < pc->kernel_w; q++) {
                        long r = (long)(i * pc->stride_h + p) - (long)pc->pad_h;
                        long c = (long)(j * pc->stride_w + q) - (long)pc->pad_w;
                        if (r < 0 || c < 0 || r >= (long)H || c >= (long)W) continue;
                        size_t k = (nc * H + (size_t)r) * W + (size_t)c;
                        sum += (double)x[k];
                        if (x[k] > best) {
                            best = x[k];
                            at = k;
                        }
                    }
                assert_true(at != SIZE_MAX); /* every window holds a real element */
                const size_t o = (nc * Ho + i) * Wo + j;
                const double area = (double)(pc->kernel_h * pc->kernel_w);
                y[o] = is_max ? best : (float)(sum / area);
                if (is_max) {
                    dx[at] += dy[o];
                } else {
                    for (size_t p = 0; p < pc->kernel_h; p++)
                        for (size_t q = 0; q < pc->kernel_w; q++) {
                            long r = (long)(i * pc->stride_h + p) - (long)pc->pad_h;
                            long c = (long)(j * pc->stride_w + q) - (long)pc->pad_w;
                            if (r < 0 || c < 0 || r >= (long)H || c >= (long)W) continue;
                            dx[(nc * H + (size_t)r) * W + (size_t)c] += (float)((double)dy[o] / area);
                        }
                }
            }
}

static void test_pool_matches_reference(void **state) {
    (void)state;
    uint64_t s = 0xB00Cull;
    size_t cases = 0;
    double worst = 0.0;
    while (cases < 60) {
        const int is_max = cases % 2 == 0;
        const size_t B = rnd_in(&s, 1, 3), C = rnd_in(&s, 1, 3), H = rnd_in(&s, 1, 8), W = rnd_in(&s, 1, 8);
        aim_pool2d_config pc;
        CHECK_OK(aim_pool2d_config_init(&pc, rnd_in(&s, 1, 4), rnd_in(&s, 1, 4)));
        pc.stride_h = rnd_in(&s, 1, 3);
        pc.stride_w = rnd_in(&s, 1, 3);
        pc.pad_h = rnd_in(&s, 0, pc.kernel_h / 2);
        pc.pad_w = rnd_in(&s, 0, pc.kernel_w / 2);
        const size_t Ho = torch_out_len(H, pc.kernel_h, pc.stride_h, 1, pc.pad_h, pc.pad_h);
        const size_t Wo = torch_out_len(W, pc.kernel_w, pc.stride_w, 1, pc.pad_w, pc.pad_w);
        if (Ho == 0 || Wo == 0) continue;
        aim_model *m = image_model(C, H, W);
        CHECK_OK(is_max ? aim_model_add_max_pool2d(m, &pc) : aim_model_add_avg_pool2d(m, &pc));
        compile_model(m, B, 1);
        const size_t nx = B * C * H * W, ny = B * C * Ho * Wo;
        float *x = alloc_floats(nx), *dy = alloc_floats(ny), *y = alloc_floats(ny), *dx = alloc_floats(nx);
        for (size_t i = 0; i < nx; i++) x[i] = (float)(rnd_in(&s, 0, 4)) - 3.0f; /* -3..1: ties, negatives */
        fill_uniform(dy, ny, cases, -1.0f, 1.0f);
        pool_reference(is_max, B, C, H, W, &pc, Ho, Wo, x, dy, y, dx);

        const float *got = NULL, *gdx = NULL;
        size_t cnt = 0, where = 0, ndx = 0;
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, nx, B));
        CHECK_OK(aim_model_output(m, 0, &got, &cnt));
        assert_int_equal(cnt, ny);
        double ey = max_rel_error(got, y, ny, FLOOR_FRAC * fmax(max_abs_value(y, ny), 1.0), &where);
        CHECK_OK(aim_model_backward(m, dy, ny));
        CHECK_OK(aim_model_input_gradient(m, 0, &gdx, &ndx));
        assert_int_equal(ndx, nx);
        size_t wdx = 0;
        double edx = max_rel_error(gdx, dx, nx, FLOOR_FRAC * fmax(max_abs_value(dx, nx), 1e-3), &wdx);
        if (!(ey <= TOL_FORWARD && edx <= TOL_FORWARD))
            fail_msg("%s pool B %zu C %zu %zux%zu k %zux%zu s %zux%zu p %zux%zu: Y[%zu] %.9g vs %.9g (err %.3g), "
                     "dX[%zu] %.9g vs %.9g (err %.3g)",
                     is_max ? "max" : "avg", B, C, H, W, pc.kernel_h, pc.kernel_w, pc.stride_h, pc.stride_w,
                     pc.pad_h, pc.pad_w, where, (double)got[where], (double)y[where], ey, wdx, (double)gdx[wdx],
                     (double)dx[wdx], edx);
        worst = fmax(worst, fmax(ey, edx));
        free(x);
        free(dy);
        free(y);
        free(dx);
        aim_model_free(m);
        cases++;
    }
    print_message("    60 pooling configurations, worst rel err %.3g\n", worst);
}

/* ======================================================================== */
/* 3. Build-time validation and shapes                                      */
/* ======================================================================== */

static aim_status try_conv(aim_model *m, size_t filters, size_t kh, size_t kw, size_t stride, size_t dilation,
                           size_t groups, aim_padding padding, size_t pad) {
    aim_conv2d_config cc;
    CHECK_OK(aim_conv2d_config_init(&cc, filters, kh, kw, AIM_ACT_IDENTITY));
    cc.stride_h = cc.stride_w = stride;
    cc.dilation_h = cc.dilation_w = dilation;
    cc.groups = groups;
    cc.padding = padding;
    cc.pad_top = cc.pad_bottom = cc.pad_left = cc.pad_right = pad;
    return aim_model_add_conv2d(m, &cc);
}

static void expect_error(aim_status got, aim_status want, const aim_model *m, const char *word1,
                         const char *word2) {
    if (got != want) fail_msg("status %s, expected %s (%s)", aim_status_str(got), aim_status_str(want),
                              aim_model_last_error(m));
    const char *msg = aim_model_last_error(m);
    if (word1 && !strstr(msg, word1)) fail_msg("message \"%s\" lacks \"%s\"", msg, word1);
    if (word2 && !strstr(msg, word2)) fail_msg("message \"%s\" lacks \"%s\"", msg, word2);
}

static void test_kernel_larger_than_padded_input(void **state) {
    (void)state;
    aim_model *m = image_model(2, 2, 5);
    /* height 2 < 3 */
    expect_error(try_conv(m, 4, 3, 3, 1, 1, 1, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "height");
    /* width 5 < 6 */
    expect_error(try_conv(m, 4, 1, 6, 1, 1, 1, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "width");
    /* dilation: extent 2 (2 - 1) + 1 = 3 > 2 rows; padding 1 makes room */
    expect_error(try_conv(m, 4, 2, 1, 1, 2, 1, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "height");
    assert_int_equal(aim_model_layer_count(m), 0); /* a failed add leaves the model as it was */
    CHECK_OK(try_conv(m, 4, 2, 1, 1, 2, 1, AIM_PAD_EXPLICIT, 1));
    size_t rank = 0, dims[AIM_MAX_RANK];
    CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
    assert_true(rank == 3 && dims[0] == 4 && dims[1] == 2 && dims[2] == 7);
    /* The message names the layer being added: now layer 1. */
    expect_error(try_conv(m, 4, 3, 3, 1, 1, 1, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 1", "height");
    aim_pool2d_config pc;
    CHECK_OK(aim_pool2d_config_init(&pc, 3, 3));
    expect_error(aim_model_add_max_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 1", "height");
    CHECK_OK(aim_pool2d_config_init(&pc, 1, 8));
    expect_error(aim_model_add_avg_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 1", "width");
    assert_int_equal(aim_model_layer_count(m), 1);
    aim_model_free(m);
}

static void test_image_layer_after_rank1_shape(void **state) {
    (void)state;
    const size_t d1[1] = {12};
    aim_model *m = NULL;
    aim_pool2d_config pc;
    CHECK_OK(aim_pool2d_config_init(&pc, 2, 2));
    CHECK_OK(aim_model_create(NULL, 1, d1, &m));
    expect_error(try_conv(m, 2, 1, 1, 1, 1, 1, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "rank");
    expect_error(aim_model_add_max_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "rank");
    expect_error(aim_model_add_avg_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "rank");
    expect_error(aim_model_add_global_avg_pool2d(m), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "rank");
    aim_model_free(m);

    /* After flatten, global pooling or a dense layer the shape is rank 1 too. */
    for (int which = 0; which < 3; which++) {
        m = image_model(2, 4, 4);
        if (which == 0) CHECK_OK(aim_model_add_flatten(m));
        if (which == 1) CHECK_OK(aim_model_add_global_avg_pool2d(m));
        if (which == 2) add_dense(m, 5, AIM_ACT_RELU);
        expect_error(try_conv(m, 2, 1, 1, 1, 1, 1, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 1", "rank");
        expect_error(aim_model_add_max_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 1", "rank");
        assert_int_equal(aim_model_layer_count(m), 1);
        aim_model_free(m);
    }
    /* A rank-2 input is not an image either. */
    const size_t d2[2] = {4, 4};
    CHECK_OK(aim_model_create(NULL, 2, d2, &m));
    expect_error(try_conv(m, 2, 1, 1, 1, 1, 1, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "rank");
    aim_model_free(m);
}

static void test_groups_must_divide_channels(void **state) {
    (void)state;
    aim_model *m = image_model(4, 5, 5);
    expect_error(try_conv(m, 6, 3, 3, 1, 1, 3, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "groups");
    expect_error(try_conv(m, 5, 3, 3, 1, 1, 2, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "filters");
    expect_error(try_conv(m, 8, 3, 3, 1, 1, 8, AIM_PAD_VALID, 0), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "channels");
    assert_int_equal(aim_model_layer_count(m), 0);
    CHECK_OK(try_conv(m, 8, 3, 3, 1, 1, 4, AIM_PAD_VALID, 0)); /* depthwise x2 */
    aim_model_free(m);
}

static void test_invalid_arguments(void **state) {
    (void)state;
    aim_model *m = image_model(2, 6, 6);
    expect_error(aim_model_add_conv2d(m, NULL), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "NULL");
    aim_conv2d_config ok;
    CHECK_OK(aim_conv2d_config_init(&ok, 4, 3, 3, AIM_ACT_RELU));
    assert_int_equal(aim_model_add_conv2d(NULL, &ok), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_conv2d_config_init(NULL, 4, 3, 3, AIM_ACT_RELU), AIM_ERR_INVALID_ARGUMENT);
    /* Each size field set to 0 in turn. */
    static const size_t fields[] = {offsetof(aim_conv2d_config, filters),    offsetof(aim_conv2d_config, kernel_h),
                                    offsetof(aim_conv2d_config, kernel_w),   offsetof(aim_conv2d_config, stride_h),
                                    offsetof(aim_conv2d_config, stride_w),   offsetof(aim_conv2d_config, dilation_h),
                                    offsetof(aim_conv2d_config, dilation_w), offsetof(aim_conv2d_config, groups)};
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        aim_conv2d_config c;
        CHECK_OK(aim_conv2d_config_init(&c, 4, 3, 3, AIM_ACT_RELU));
        const size_t zero = 0;
        memcpy((char *)&c + fields[i], &zero, sizeof zero);
        expect_error(aim_model_add_conv2d(m, &c), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "> 0");
    }
    aim_conv2d_config c;
    CHECK_OK(aim_conv2d_config_init(&c, 4, 3, 3, AIM_ACT_RELU));
    c.padding = (aim_padding)7;
    expect_error(aim_model_add_conv2d(m, &c), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "padding");
    CHECK_OK(aim_conv2d_config_init(&c, 4, 3, 3, (aim_activation)99));
    expect_error(aim_model_add_conv2d(m, &c), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "activation");

    aim_pool2d_config pc;
    assert_int_equal(aim_pool2d_config_init(NULL, 2, 2), AIM_ERR_INVALID_ARGUMENT);
    expect_error(aim_model_add_max_pool2d(m, NULL), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "NULL");
    expect_error(aim_model_add_avg_pool2d(m, NULL), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "NULL");
    size_t *pfields[] = {&pc.kernel_h, &pc.kernel_w, &pc.stride_h, &pc.stride_w};
    for (size_t i = 0; i < ARRAY_LEN(pfields); i++) {
        CHECK_OK(aim_pool2d_config_init(&pc, 2, 2));
        *pfields[i] = 0;
        expect_error(aim_model_add_max_pool2d(m, &pc), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "> 0");
        expect_error(aim_model_add_avg_pool2d(m, &pc), AIM_ERR_INVALID_ARGUMENT, m, "layer 0", "> 0");
    }
    assert_int_equal(aim_model_add_max_pool2d(NULL, &pc), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_add_global_avg_pool2d(NULL), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_add_flatten(NULL), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_layer_count(m), 0);

    size_t rank = 0, dims[AIM_MAX_RANK];
    assert_int_equal(aim_model_layer_shape(m, 0, &rank, dims), AIM_ERR_INVALID_ARGUMENT); /* no layer 0 yet */
    CHECK_OK(aim_model_add_flatten(m));
    assert_int_equal(aim_model_layer_shape(m, 0, NULL, dims), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_layer_shape(m, 0, &rank, NULL), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_layer_shape(NULL, 0, &rank, dims), AIM_ERR_INVALID_ARGUMENT);
    aim_model_free(m);

    /* Layers cannot be added once compiled. */
    m = image_model(1, 4, 4);
    CHECK_OK(aim_model_add_flatten(m));
    compile_model(m, 1, 0);
    expect_error(aim_model_add_conv2d(m, &ok), AIM_ERR_INVALID_STATE, m, "compiled", NULL);
    CHECK_OK(aim_pool2d_config_init(&pc, 2, 2));
    expect_error(aim_model_add_max_pool2d(m, &pc), AIM_ERR_INVALID_STATE, m, "compiled", NULL);
    expect_error(aim_model_add_global_avg_pool2d(m), AIM_ERR_INVALID_STATE, m, "compiled", NULL);
    expect_error(aim_model_add_flatten(m), AIM_ERR_INVALID_STATE, m, "compiled", NULL);
    aim_model_free(m);
}

static void test_pool_padding_at_most_half_the_window(void **state) {
    (void)state;
    aim_model *m = image_model(1, 8, 8);
    aim_pool2d_config pc;
    CHECK_OK(aim_pool2d_config_init(&pc, 3, 3));
    pc.pad_h = 2; /* > 3 / 2 */
    expect_error(aim_model_add_max_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "padding");
    expect_error(aim_model_add_avg_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "padding");
    CHECK_OK(aim_pool2d_config_init(&pc, 2, 4));
    pc.pad_w = 3; /* > 4 / 2 */
    expect_error(aim_model_add_max_pool2d(m, &pc), AIM_ERR_SHAPE_MISMATCH, m, "layer 0", "padding");
    assert_int_equal(aim_model_layer_count(m), 0);
    pc.pad_h = 1;
    pc.pad_w = 2; /* exactly half: allowed */
    CHECK_OK(aim_model_add_max_pool2d(m, &pc));
    size_t rank = 0, dims[AIM_MAX_RANK];
    CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
    /* (8 + 2 - 2) / 2 + 1 = 5; (8 + 4 - 4) / 4 + 1 = 3 */
    assert_true(rank == 3 && dims[0] == 1 && dims[1] == 5 && dims[2] == 3);
    aim_model_free(m);
}

/* Every combination of input length 1..12, kernel 1..5, stride 1..3,
 * dilation 1..3 and explicit padding (0..2 before, 0..2 after; the width axis,
 * 3 longer, gets the mirrored padding) gives PyTorch's output length
 *   floor((n + pad_before + pad_after - d (k - 1) - 1) / s) + 1,
 * or AIM_ERR_SHAPE_MISMATCH exactly when the dilated kernel exceeds the padded
 * input. "valid" equals explicit 0; "same" gives ceil(n / stride) always;
 * pooling follows the same formula with d = 1. */
static void test_output_shapes_match_pytorch(void **state) {
    (void)state;
    size_t built = 0, refused = 0;
    for (size_t n = 1; n <= 12; n++)
        for (size_t k = 1; k <= 5; k++)
            for (size_t s = 1; s <= 3; s++)
                for (size_t d = 1; d <= 3; d++)
                    for (size_t pa = 0; pa <= 2; pa++)
                        for (size_t pb = 0; pb <= 2; pb++) {
                            const size_t H = n, W = n + 3; /* W axis: padding (pb, pa), kernel k */
                            aim_model *m = image_model(2, H, W);
                            aim_conv2d_config cc;
                            CHECK_OK(aim_conv2d_config_init(&cc, 3, k, k, AIM_ACT_IDENTITY));
                            cc.stride_h = cc.stride_w = s;
                            cc.dilation_h = cc.dilation_w = d;
                            cc.padding = AIM_PAD_EXPLICIT;
                            cc.pad_top = pa;
                            cc.pad_bottom = pb;
                            cc.pad_left = pb;
                            cc.pad_right = pa;
                            size_t ho = torch_out_len(H, k, s, d, pa, pb), wo = torch_out_len(W, k, s, d, pb, pa);
                            aim_status st = aim_model_add_conv2d(m, &cc);
                            if (ho == 0 || wo == 0) {
                                expect_error(st, AIM_ERR_SHAPE_MISMATCH, m, "layer 0", ho == 0 ? "height" : "width");
                                refused++;
                            } else {
                                CHECK_OK(st);
                                size_t rank = 0, dims[AIM_MAX_RANK];
                                CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
                                if (rank != 3 || dims[0] != 3 || dims[1] != ho || dims[2] != wo)
                                    fail_msg("n %zu k %zu s %zu d %zu pad %zu/%zu: got %zux%zu, PyTorch %zux%zu", n, k,
                                             s, d, pa, pb, dims[1], dims[2], ho, wo);
                                built++;
                            }
                            aim_model_free(m);
                            if (pa == 0 && pb == 0) { /* "valid" is explicit 0; its pad fields are ignored */
                                m = image_model(2, H, W);
                                cc.padding = AIM_PAD_VALID;
                                cc.pad_top = cc.pad_left = 7;
                                st = aim_model_add_conv2d(m, &cc);
                                assert_int_equal(st, ho && wo ? AIM_OK : AIM_ERR_SHAPE_MISMATCH);
                                if (st == AIM_OK) {
                                    size_t rank = 0, dims[AIM_MAX_RANK];
                                    CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
                                    assert_true(dims[1] == ho && dims[2] == wo);
                                }
                                aim_model_free(m);
                            }
                        }
    assert_true(built > 1000 && refused > 100);

    /* "same": ceil(n / s) for every kernel, stride and dilation. */
    for (size_t n = 1; n <= 12; n++)
        for (size_t k = 1; k <= 5; k++)
            for (size_t s = 1; s <= 3; s++)
                for (size_t d = 1; d <= 3; d++) {
                    aim_model *m = image_model(1, n, n + 2);
                    aim_conv2d_config cc;
                    CHECK_OK(aim_conv2d_config_init(&cc, 2, k, k + 1, AIM_ACT_IDENTITY));
                    cc.stride_h = cc.stride_w = s;
                    cc.dilation_h = cc.dilation_w = d;
                    cc.padding = AIM_PAD_SAME;
                    CHECK_OK(aim_model_add_conv2d(m, &cc));
                    size_t rank = 0, dims[AIM_MAX_RANK];
                    CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
                    assert_int_equal(dims[1], (n + s - 1) / s);
                    assert_int_equal(dims[2], (n + 2 + s - 1) / s);
                    aim_model_free(m);
                }

    /* Pooling: (n + 2 p - k) / s + 1, for p <= k / 2. */
    for (size_t n = 1; n <= 9; n++)
        for (size_t k = 1; k <= 4; k++)
            for (size_t s = 1; s <= 3; s++)
                for (size_t p = 0; p <= k / 2; p++) {
                    aim_model *m = image_model(3, n, n + 1);
                    aim_pool2d_config pc;
                    CHECK_OK(aim_pool2d_config_init(&pc, k, k));
                    pc.stride_h = pc.stride_w = s;
                    pc.pad_h = pc.pad_w = p;
                    size_t ho = torch_out_len(n, k, s, 1, p, p), wo = torch_out_len(n + 1, k, s, 1, p, p);
                    aim_status st = aim_model_add_avg_pool2d(m, &pc);
                    if (ho == 0 || wo == 0) {
                        assert_int_equal(st, AIM_ERR_SHAPE_MISMATCH);
                    } else {
                        CHECK_OK(st);
                        size_t rank = 0, dims[AIM_MAX_RANK];
                        CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
                        assert_true(rank == 3 && dims[0] == 3 && dims[1] == ho && dims[2] == wo);
                    }
                    aim_model_free(m);
                }
}

/* AIM_PAD_SAME is TensorFlow's split, the odd row/column at the bottom/right:
 * its output equals an explicit padding (total / 2, total - total / 2), and
 * differs from the opposite split. */
static void test_same_padding_is_tensorflows_split(void **state) {
    (void)state;
    static const size_t cases[][5] = {/* n, k, s, d, expected total padding */
                                      {7, 4, 2, 1, 3}, {6, 3, 2, 1, 1}, {5, 2, 1, 1, 1},
                                      {6, 3, 1, 2, 4}, {8, 5, 3, 1, 3}, {4, 1, 3, 1, 0}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const size_t n = cases[i][0], k = cases[i][1], s = cases[i][2], d = cases[i][3], total = cases[i][4];
        /* TensorFlow: max((ceil(n / s) - 1) s + d (k - 1) + 1 - n, 0) */
        const size_t out = (n + s - 1) / s, need = (out - 1) * s + d * (k - 1) + 1;
        assert_int_equal(need > n ? need - n : 0, total);
        const size_t before = total / 2, after = total - before;
        float outs[3][64];
        size_t cnt = 0;
        for (int v = 0; v < 3; v++) {
            /* 0: same, 1: TensorFlow's split, 2: the opposite split */
            const conv_spec spec = {"", 1, 1, n, n, 1, k, k, s, s, d, d, 1, v == 0 ? SAME : EXPL,
                                    v == 2 ? after : before, v == 2 ? before : after,
                                    v == 2 ? after : before, v == 2 ? before : after, 1, ID};
            aim_model *m = image_model(1, n, n);
            add_conv(m, &spec);
            compile_model(m, 1, 0);
            float x[64];
            assert_true(n * n <= ARRAY_LEN(x));
            fill_params(m, 5);
            fill_uniform(x, n * n, 6, -1.0f, 1.0f);
            const float *y = NULL;
            CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, n * n, 1)); /* the first n * n floats of x */
            CHECK_OK(aim_model_output(m, 0, &y, &cnt));
            assert_int_equal(cnt, out * out);
            memcpy(outs[v], y, cnt * sizeof *y);
            aim_model_free(m);
        }
        assert_memory_equal(outs[0], outs[1], cnt * sizeof(float));
        if (total % 2) assert_memory_not_equal(outs[0], outs[2], cnt * sizeof(float));
    }
}

/* ======================================================================== */
/* 4. The seed CNN                                                          */
/* ======================================================================== */

#define CNN_BATCH 4
#define CNN_PARAMS 121930 /* conv1 32*9+32 = 320, conv2 64*32*9+64 = 18496,
                             dense1 1600*64+64 = 102464, dense2 64*10+10 = 650 */

static aim_model *build_seed_cnn(const aim_allocator *alloc) {
    const size_t dims[3] = {1, 28, 28};
    aim_model *m = NULL;
    aim_conv2d_config cc;
    aim_pool2d_config pc;
    CHECK_OK(aim_model_create(alloc, 3, dims, &m));
    CHECK_OK(aim_pool2d_config_init(&pc, 2, 2));
    CHECK_OK(aim_conv2d_config_init(&cc, 32, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &cc));
    CHECK_OK(aim_model_add_max_pool2d(m, &pc));
    CHECK_OK(aim_conv2d_config_init(&cc, 64, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &cc));
    CHECK_OK(aim_model_add_max_pool2d(m, &pc));
    CHECK_OK(aim_model_add_flatten(m));
    add_dense(m, 64, AIM_ACT_RELU);
    add_dense(m, 10, AIM_ACT_IDENTITY);
    return m;
}

static void test_seed_cnn(void **state) {
    (void)state;
    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m = build_seed_cnn(&ta.allocator);

    static const size_t shapes[7][4] = {/* rank, dims */
                                        {3, 32, 26, 26}, {3, 32, 13, 13}, {3, 64, 11, 11}, {3, 64, 5, 5},
                                        {1, 1600, 0, 0}, {1, 64, 0, 0},   {1, 10, 0, 0}};
    assert_int_equal(aim_model_layer_count(m), 7);
    for (size_t l = 0; l < 7; l++) {
        size_t rank = 0, dims[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_shape(m, l, &rank, dims));
        assert_int_equal(rank, shapes[l][0]);
        for (size_t i = 0; i < rank; i++) assert_int_equal(dims[i], shapes[l][1 + i]);
    }
    assert_int_equal(aim_model_input_size(m), 784);
    assert_int_equal(aim_model_output_size(m), 10);

    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = CNN_BATCH;
    cc.seed = 1;
    CHECK_OK(aim_model_compile(m, &cc));
    float *p = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_parameters(m, &p, &n));
    assert_int_equal(n, CNN_PARAMS);
    static const size_t spans[7][3] = {/* offset, weights, biases */
                                       {0, 288, 32},         {320, 0, 0},   {320, 18432, 64}, {18816, 0, 0},
                                       {18816, 0, 0},        {18816, 102400, 64}, {121280, 640, 10}};
    for (size_t l = 0; l < 7; l++) {
        size_t off = 0, wc = 0, bc = 0;
        CHECK_OK(aim_model_layer_parameters(m, l, &off, &wc, &bc));
        assert_int_equal(wc, spans[l][1]);
        assert_int_equal(bc, spans[l][2]);
        if (wc) assert_int_equal(off, spans[l][0]);
    }

    aim_optimizer *adam = NULL;
    aim_workspace *ws = NULL;
    CHECK_OK(aim_adam_create(&ta.allocator, NULL, n, &adam));
    CHECK_OK(aim_workspace_create(m, &ta.allocator, CNN_BATCH, &ws));
    float *x = malloc(CNN_BATCH * 784 * sizeof *x);
    float out[CNN_BATCH * 10], ref[CNN_BATCH * 10];
    int32_t labels[CNN_BATCH];
    assert_non_null(x);
    fill_uniform(x, CNN_BATCH * 784, 42, 0.0f, 1.0f);
    for (size_t i = 0; i < CNN_BATCH; i++) labels[i] = (int32_t)((i * 7 + 3) % 10);

    /* Five training steps and predicts: no allocator call at all. */
    const long calls = ta.calls, live = ta.live;
    float losses[5];
    for (size_t s = 0; s < 5; s++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, CNN_BATCH * 784, CNN_BATCH));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, ARRAY_LEN(labels), &losses[s]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(adam, m, 1e-3f));
        const size_t pb = CNN_BATCH - s % CNN_BATCH; /* the first pb samples of x, into the first pb rows of out */
        CHECK_OK(aim_model_predict(m, ws, x, pb * 784, pb, out, pb * 10));
        assert_true(isfinite(losses[s]));
    }
    if (ta.calls != calls) fail_msg("%ld allocator calls in 5 training steps and predicts", ta.calls - calls);
    assert_int_equal(ta.live, live);
    /* The same batch five times: the loss must go down. */
    assert_true(losses[4] < losses[0]);

    /* predict on a workspace computes what forward computes, bit for bit,
     * at batch sizes from 1 to max_batch. */
    static const size_t batches[] = {1, 3, CNN_BATCH};
    for (size_t bi = 0; bi < ARRAY_LEN(batches); bi++) {
        const size_t b = batches[bi];
        const float *y = NULL;
        size_t cnt = 0;
        CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, b * 784, b));
        CHECK_OK(aim_model_output(m, 0, &y, &cnt));
        assert_int_equal(cnt, b * 10);
        memcpy(ref, y, cnt * sizeof *y);
        for (size_t i = 0; i < ARRAY_LEN(out); i++) out[i] = NAN;
        CHECK_OK(aim_model_predict(m, ws, x, b * 784, b, out, b * 10));
        assert_memory_equal(out, ref, cnt * sizeof *out);
        for (size_t i = cnt; i < ARRAY_LEN(out); i++) assert_true(isnan(out[i])); /* nothing past batch * 10 */
    }
    /* ... and the training forward's output too. */
    const float *y = NULL;
    size_t cnt = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, CNN_BATCH * 784, CNN_BATCH));
    CHECK_OK(aim_model_output(m, 0, &y, &cnt));
    assert_memory_equal(y, ref, cnt * sizeof *y);

    free(x);
    aim_workspace_free(ws);
    aim_optimizer_free(adam);
    aim_model_free(m);
    assert_int_equal(ta.live, 0);
}

/* ======================================================================== */

static int print_summary(void **state) {
    (void)state;
    print_message("gradient checks: %zu values, worst |a - n| / allowed = %.3g (%s, %s)\n", g_worst.values,
                  g_worst.max_usage, g_worst.label, g_worst.part);
    return 0;
}

#define CASE(fn, table, i) {table[i].name, fn, NULL, NULL, (void *)&table[i]}

int main(void) {
    struct CMUnitTest tests[ARRAY_LEN(CONV_SPECS) + ARRAY_LEN(POOL_SPECS) + 16];
    size_t n = 0;
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_checker_catches_a_corrupted_gradient);
    for (size_t i = 0; i < ARRAY_LEN(CONV_SPECS); i++)
        tests[n++] = (struct CMUnitTest)CASE(test_conv_gradients, CONV_SPECS, i);
    for (size_t i = 0; i < ARRAY_LEN(POOL_SPECS); i++)
        tests[n++] = (struct CMUnitTest)CASE(test_pool_gradients, POOL_SPECS, i);
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_stack_gradients),
        cmocka_unit_test(test_first_layer_without_input_gradient),
        cmocka_unit_test(test_fast_path_equals_naive),
        cmocka_unit_test(test_pool_matches_reference),
        cmocka_unit_test(test_kernel_larger_than_padded_input),
        cmocka_unit_test(test_image_layer_after_rank1_shape),
        cmocka_unit_test(test_groups_must_divide_channels),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_pool_padding_at_most_half_the_window),
        cmocka_unit_test(test_output_shapes_match_pytorch),
        cmocka_unit_test(test_same_padding_is_tensorflows_split),
        cmocka_unit_test(test_seed_cnn),
    };
    for (size_t i = 0; i < ARRAY_LEN(rest); i++) tests[n++] = rest[i];
    assert_true(n <= ARRAY_LEN(tests));
    return _cmocka_run_group_tests("test_conv", tests, n, NULL, print_summary);
}
