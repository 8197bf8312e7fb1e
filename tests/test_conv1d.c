/* Tests of the 1-D layers: conv1d (src/layers/conv1d.c), max / average
 * pooling and the global average and maximum over L (src/layers/pool1d.c).
 *
 *  1. PyTorch goldens (golden/golden_conv1d.h, written by
 *     golden/gen_golden_conv1d.py with /usr/bin/python3): one conv1d in eleven
 *     configurations (stride 2, dilation 2, groups 2, depthwise, "same" with
 *     odd and even kernels, explicit symmetric and asymmetric padding, no
 *     bias, fused relu and tanh): Y, dW, db, dX of sum(Y * G); every pool:
 *     Y and dX; two small nets (conv1d -> pool -> conv1d -> global pool ->
 *     dense, and conv1d "same" stride 2 -> avg pool -> global max -> dense)
 *     trained 3 steps with Adam and with SGD momentum on sparse
 *     cross-entropy: first logits, every first-step gradient, input gradient,
 *     losses, final parameters and updates.
 *  2. Central-difference gradient checks of every parameter and input value
 *     through the public API (the shared checker of tests/support.h),
 *     guarded against all-zero gradients.
 *  3. Each 1-D kind is the 2-D kind on a height-1 image, bit for bit: a
 *     conv1d model against a conv2d model on (C, 1, L) with a 1 x K kernel,
 *     each pool against its pool2d twin (forward, parameter and input
 *     gradients); output lengths against PyTorch's formula and "same"
 *     against TensorFlow's ceil(L / s), over a sweep of sizes.
 *  4. Serialization: the documented records (found byte for byte in the
 *     buffer, "same" stored resolved), a round trip with bit-identical
 *     predictions and bytes, exact resume of Adam training, a crafted
 *     record (kernel 0, CRC re-sealed) refused with a message naming the
 *     kernel.
 *  5. The k-th allocation failure for every k over build, compile, training,
 *     serialize, deserialize and predict: AIM_ERR_OUT_OF_MEMORY, no leak; and
 *     no allocation in a training step or a predict after compile.
 *  6. A thread pool of 2 that always splits, against no pool.
 * Bad-input rows of every public function are in tests/bad_input/conv1d.inc.
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
#include "golden/golden_conv1d.h"

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

static aim_model *seq_model(const aim_allocator *al, size_t C, size_t L) {
    const size_t dims[2] = {C, L};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(al, 2, dims, &m));
    return m;
}

static aim_model *image_model(size_t C, size_t H, size_t W) {
    const size_t dims[3] = {C, H, W};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 3, dims, &m));
    return m;
}

static void compile_for(aim_model *m, size_t max_batch, int32_t input_gradient, uint64_t seed) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = max_batch;
    cc.input_gradient = input_gradient;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(m, &cc));
}

static void expect_shape2(const aim_model *m, size_t layer, size_t d0, size_t d1) {
    size_t r = 0, dims[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, layer, &r, dims));
    assert_int_equal(r, 2);
    assert_int_equal(dims[0], d0);
    assert_int_equal(dims[1], d1);
}

/* One conv1d layer's options; padding EXPLICIT uses pl, pr. */
typedef struct c1 {
    size_t filters, k, s, d, groups;
    aim_padding padding;
    size_t pl, pr;
    int bias;
    aim_activation act;
} c1;

static aim_status add_c1(aim_model *m, const c1 *s) {
    aim_conv1d_config cc;
    CHECK_OK(aim_conv1d_config_init(&cc, s->filters, s->k, s->act));
    cc.stride = s->s;
    cc.dilation = s->d;
    cc.groups = s->groups;
    cc.padding = s->padding;
    cc.pad_left = s->pl;
    cc.pad_right = s->pr;
    cc.use_bias = s->bias;
    return aim_model_add_conv1d(m, &cc);
}

typedef enum pk { PK_MAX, PK_AVG, PK_GAVG, PK_GMAX } pk;

static aim_status add_p1(aim_model *m, pk kind, size_t k, size_t s, size_t p) {
    aim_pool1d_config pc;
    switch (kind) {
    case PK_GAVG:
        return aim_model_add_global_avg_pool1d(m);
    case PK_GMAX:
        return aim_model_add_global_max_pool1d(m);
    case PK_MAX:
    case PK_AVG:
        break;
    }
    CHECK_OK(aim_pool1d_config_init(&pc, k));
    pc.stride = s;
    pc.pad = p;
    return kind == PK_MAX ? aim_model_add_max_pool1d(m, &pc) : aim_model_add_avg_pool1d(m, &pc);
}

static void add_dense(aim_model *m, size_t units, aim_activation act) {
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, units, act));
    CHECK_OK(aim_model_add_dense(m, &dc));
}

static float *params_of(aim_model *m, size_t *n) {
    float *p = NULL;
    CHECK_OK(aim_model_parameters(m, &p, n));
    return p;
}

static float *grads_of(aim_model *m, size_t *n) {
    float *g = NULL;
    CHECK_OK(aim_model_gradients(m, &g, n));
    return g;
}

static float *copy_floats(const float *src, size_t n) {
    float *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    if (n) memcpy(d, src, n * sizeof *d);
    return d;
}

/* Values of random sign with magnitudes in [lo, hi] (never near 0). */
static void fill_signed(float *x, size_t n, uint64_t seed, float lo, float hi) {
    fill_uniform(x, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = copysignf(lo + (hi - lo) * fabsf(x[i]), x[i]);
}

/* A random permutation of {0, ..., n-1} GRID_GAP, centred on 0: all values
 * distinct and GRID_GAP = 5h apart, so no max window has a tie or a maximum
 * a central-difference step could change. */
#define GRID_GAP 0.05f
static void fill_grid(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = ((float)i - 0.5f * (float)(n - 1)) * GRID_GAP;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 3;
    for (size_t i = n; i-- > 1;) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t j = (size_t)(s % (i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* Overwrites every layer's parameters with a point independent of the
 * library's initializer: weights +-[0.1, 1] / sqrt(fan_in), biases in
 * [-0.5, 0.5). fan_in = weights per output channel or unit. */
static void fill_params(aim_model *m, uint64_t seed) {
    size_t count = 0;
    float *p = params_of(m, &count);
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

/* ======================================================================== */
/* 1. PyTorch goldens                                                       */
/* ======================================================================== */

/* Tolerances and metric are test_golden_conv.c's: golden_rel_error(),
 * |got - ref| / max(|ref|, floor) with the floor 1% of the array's largest
 * |ref|; at most 1e-5 for forward values and losses, 1e-4 for gradients and
 * final parameters, 1e-3 with a 10% floor for the nets' updates (final -
 * initial, which 3 steps keep at a few percent of the parameters). The
 * generator asserts that a float32 PyTorch run stays within half of each
 * (gen_golden_conv1d.py --check prints the figures: at most 2.9e-6 for
 * values, 2.6e-5 for gradients, 1.2e-6 for parameters, 7.9e-6 for updates);
 * the worst this library measures is printed at the end. */
typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_PARAMS, CMP_UPDATE, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward/loss", 1e-5, 1e-2, 0.0},
    {"gradient", 1e-4, 1e-2, 0.0},
    {"parameters", 1e-4, 1e-2, 0.0},
    {"update", 1e-3, 0.1, 0.0},
};
#define WHAT_WIDTH 30

static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

/* ---- a) conv1d ----------------------------------------------------------- */

enum conv_field {
    CF_BATCH, CF_C, CF_L, CF_FILTERS, CF_K, CF_S, CF_PADDING, CF_PL, CF_PR, CF_D, CF_GROUPS, CF_BIAS, CF_ACT,
    CF_LO, CF_COUNT
};
_Static_assert(CF_COUNT == GOLDEN_CONV1D_CFG_FIELDS, "golden_conv1d.h's conv cfg layout changed");

struct conv_case {
    const char *name;
    const int32_t *cfg;
    const float *x, *w, *b, *g, *y, *dw, *db, *dx; /* b, db NULL without bias */
    size_t x_count, g_count;
};
#define CONV_CASE(n)                                                                                          \
    {"golden_conv1d_" #n, golden_conv1d_##n##_cfg, golden_conv1d_##n##_x, golden_conv1d_##n##_w, golden_conv1d_##n##_b,            \
     golden_conv1d_##n##_g, golden_conv1d_##n##_y, golden_conv1d_##n##_dw, golden_conv1d_##n##_db,            \
     golden_conv1d_##n##_dx, ARRAY_LEN(golden_conv1d_##n##_x), ARRAY_LEN(golden_conv1d_##n##_g)}
#define CONV_CASE_NO_BIAS(n)                                                                                  \
    {"golden_conv1d_" #n, golden_conv1d_##n##_cfg, golden_conv1d_##n##_x, golden_conv1d_##n##_w, NULL, golden_conv1d_##n##_g,      \
     golden_conv1d_##n##_y, golden_conv1d_##n##_dw, NULL, golden_conv1d_##n##_dx,                            \
     ARRAY_LEN(golden_conv1d_##n##_x), ARRAY_LEN(golden_conv1d_##n##_g)}

static const struct conv_case conv_cases[] = {
    CONV_CASE(basic),   CONV_CASE(stride2_pad1), CONV_CASE(dilation2_pad2),      CONV_CASE(groups2),
    CONV_CASE(depthwise_x2), CONV_CASE(same_k3), CONV_CASE(same_k4_stride2),     CONV_CASE(asym_pad),
    CONV_CASE_NO_BIAS(no_bias), CONV_CASE(relu), CONV_CASE(tanh_same_dilated),
};

static size_t cf(const struct conv_case *c, enum conv_field f) { return (size_t)c->cfg[f]; }

static void test_golden_conv1d(void **state) {
    const struct conv_case *c = *state;
    const size_t B = cf(c, CF_BATCH), C = cf(c, CF_C), L = cf(c, CF_L), O = cf(c, CF_FILTERS), Lo = cf(c, CF_LO);
    const size_t wcount = O * (C / cf(c, CF_GROUPS)) * cf(c, CF_K), bcount = cf(c, CF_BIAS) ? O : 0;
    assert_true((c->b != NULL) == (bcount != 0));
    aim_model *m = seq_model(NULL, C, L);
    const aim_padding pad = (aim_padding)c->cfg[CF_PADDING];
    const int expl = pad == AIM_PAD_EXPLICIT;
    /* "same" must find the TensorFlow split by itself: pl, pr are passed only for explicit */
    const c1 s = {O, cf(c, CF_K), cf(c, CF_S), cf(c, CF_D), cf(c, CF_GROUPS), pad, expl ? cf(c, CF_PL) : 0,
                  expl ? cf(c, CF_PR) : 0, (int)cf(c, CF_BIAS), (aim_activation)c->cfg[CF_ACT]};
    CHECK_OK(add_c1(m, &s));
    expect_shape2(m, 0, O, Lo);
    compile_for(m, B, 1, 1);
    size_t off = 99, wc = 0, bc = 0, count = 0;
    CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
    assert_int_equal(off, 0);
    assert_int_equal(wc, wcount);
    assert_int_equal(bc, bcount);
    float *params = params_of(m, &count);
    assert_int_equal(count, wcount + bcount);
    memcpy(params, c->w, wcount * sizeof(float)); /* (O, C/groups, K), as torch stores it */
    if (bcount) memcpy(params + wcount, c->b, bcount * sizeof(float));

    const size_t ny = B * O * Lo, nx = B * C * L;
    const float *y = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, c->x, c->x_count, B));
    CHECK_OK(aim_model_output(m, 0, &y, &n));
    assert_int_equal(n, ny);
    expect_close("Y (inference)", y, c->y, ny, CMP_FORWARD);
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->x_count, B));
    CHECK_OK(aim_model_output(m, 0, &y, &n));
    expect_close("Y", y, c->y, ny, CMP_FORWARD);
    CHECK_OK(aim_model_backward(m, c->g, c->g_count));
    const float *g = grads_of(m, &n);
    assert_int_equal(n, count);
    expect_close("dW", g, c->dw, wcount, CMP_GRAD);
    if (bcount) expect_close("db", g + wcount, c->db, bcount, CMP_GRAD);
    const float *dx = NULL;
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &n));
    assert_int_equal(n, nx);
    expect_close("dX", dx, c->dx, nx, CMP_GRAD);
    aim_model_free(m);
}

/* ---- b) pooling ---------------------------------------------------------- */

enum pool_field { PF_BATCH, PF_C, PF_L, PF_KIND, PF_K, PF_S, PF_P, PF_LO, PF_COUNT };
_Static_assert(PF_COUNT == GOLDEN_POOL1D_CFG_FIELDS, "golden_conv1d.h's pool cfg layout changed");
_Static_assert(PK_MAX == 0 && PK_AVG == 1 && PK_GAVG == 2 && PK_GMAX == 3, "the generator's kind codes");

struct pool_case {
    const char *name;
    const int32_t *cfg;
    const float *x, *g, *y, *dx;
    size_t x_count, g_count;
};
#define POOL_CASE(n)                                                                                   \
    {"golden_pool1d_" #n, golden_pool1d_##n##_cfg, golden_pool1d_##n##_x, golden_pool1d_##n##_g, golden_pool1d_##n##_y,     \
     golden_pool1d_##n##_dx, ARRAY_LEN(golden_pool1d_##n##_x), ARRAY_LEN(golden_pool1d_##n##_g)}

static const struct pool_case pool_cases[] = {
    POOL_CASE(max2), POOL_CASE(max3_stride2_pad1), POOL_CASE(max3_stride1_pad1), POOL_CASE(avg2),
    POOL_CASE(avg3_stride2_pad1), POOL_CASE(avg4_stride3_pad2), POOL_CASE(global_avg), POOL_CASE(global_max),
};

static void test_golden_pool1d(void **state) {
    const struct pool_case *c = *state;
    const size_t B = (size_t)c->cfg[PF_BATCH], C = (size_t)c->cfg[PF_C], L = (size_t)c->cfg[PF_L];
    const size_t Lo = (size_t)c->cfg[PF_LO];
    const pk kind = (pk)c->cfg[PF_KIND];
    aim_model *m = seq_model(NULL, C, L);
    CHECK_OK(add_p1(m, kind, (size_t)c->cfg[PF_K], (size_t)c->cfg[PF_S], (size_t)c->cfg[PF_P]));
    if (kind == PK_GAVG || kind == PK_GMAX) {
        size_t r = 0, dims[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_shape(m, 0, &r, dims));
        assert_int_equal(r, 1);
        assert_int_equal(dims[0], C);
    } else {
        expect_shape2(m, 0, C, Lo);
    }
    compile_for(m, B, 1, 1);
    const size_t ny = B * C * Lo, nx = B * C * L;
    const float *y = NULL, *dx = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->x_count, B));
    CHECK_OK(aim_model_output(m, 0, &y, &n));
    assert_int_equal(n, ny);
    expect_close("Y", y, c->y, ny, CMP_FORWARD);
    CHECK_OK(aim_model_backward(m, c->g, c->g_count));
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &n));
    assert_int_equal(n, nx);
    expect_close("dX", dx, c->dx, nx, CMP_GRAD);
    aim_model_free(m);
}

/* ---- c) the nets --------------------------------------------------------- */

/* a: (2, 16) -> conv1d 6 k3 pad 1 relu -> max pool 2 -> conv1d 8 k3 dilation 2
 * groups 2 tanh -> global average -> dense 3 */
static aim_model *build_net_a(const aim_allocator *al, aim_status *st) {
    aim_model *m = NULL;
    const size_t dims[2] = {2, 16};
    *st = aim_model_create(al, 2, dims, &m);
    if (*st != AIM_OK) return NULL;
    const c1 a = {6, 3, 1, 1, 1, AIM_PAD_EXPLICIT, 1, 1, 1, AIM_ACT_RELU};
    const c1 b = {8, 3, 1, 2, 2, AIM_PAD_VALID, 0, 0, 1, AIM_ACT_TANH};
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY));
    if ((*st = add_c1(m, &a)) == AIM_OK && (*st = add_p1(m, PK_MAX, 2, 2, 0)) == AIM_OK &&
        (*st = add_c1(m, &b)) == AIM_OK && (*st = add_p1(m, PK_GAVG, 0, 0, 0)) == AIM_OK &&
        (*st = aim_model_add_dense(m, &dc)) == AIM_OK)
        return m;
    aim_model_free(m);
    return NULL;
}

/* b: (3, 15) -> conv1d 6 k4 stride 2 same tanh -> avg pool 3 stride 1 pad 1
 * -> global max -> dense 3 */
static aim_model *build_net_b(const aim_allocator *al, aim_status *st) {
    aim_model *m = NULL;
    const size_t dims[2] = {3, 15};
    *st = aim_model_create(al, 2, dims, &m);
    if (*st != AIM_OK) return NULL;
    const c1 a = {6, 4, 2, 1, 1, AIM_PAD_SAME, 0, 0, 1, AIM_ACT_TANH};
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY));
    if ((*st = add_c1(m, &a)) == AIM_OK && (*st = add_p1(m, PK_AVG, 3, 1, 1)) == AIM_OK &&
        (*st = add_p1(m, PK_GMAX, 0, 0, 0)) == AIM_OK && (*st = aim_model_add_dense(m, &dc)) == AIM_OK)
        return m;
    aim_model_free(m);
    return NULL;
}

struct net_case {
    const char *name;
    aim_model *(*build)(const aim_allocator *, aim_status *);
    size_t C, L, n_params;
    int adam;
    const float *init, *x, *logits0, *grad0, *dx0, *losses, *final;
    const int32_t *labels;
    size_t x_count;
};
static const struct net_case net_cases[] = {
    {"a", build_net_a, 2, 16, GOLDEN_NET_A_PARAMS, 1, golden_net_a_init, golden_net_a_x, golden_net_a_logits0,
     golden_net_a_grad0, golden_net_a_dx0, golden_net_a_losses, golden_net_a_final, golden_net_a_labels,
     ARRAY_LEN(golden_net_a_x)},
    {"b", build_net_b, 3, 15, GOLDEN_NET_B_PARAMS, 0, golden_net_b_init, golden_net_b_x, golden_net_b_logits0,
     golden_net_b_grad0, golden_net_b_dx0, golden_net_b_losses, golden_net_b_final, golden_net_b_labels,
     ARRAY_LEN(golden_net_b_x)},
};

/* Compares a flat parameter-sized array tensor by tensor (each layer's
 * weights, then its biases), as the generator judged them. */
static void expect_tensors(aim_model *m, const char *what, const float *got, const float *ref, cmp_kind kind) {
    for (size_t l = 0; l < aim_model_layer_count(m); l++) {
        size_t off = 0, wc = 0, bc = 0;
        CHECK_OK(aim_model_layer_parameters(m, l, &off, &wc, &bc));
        char label[64];
        if (wc) {
            snprintf(label, sizeof label, "%s layer %zu weight", what, l);
            expect_close(label, got + off, ref + off, wc, kind);
        }
        if (bc) {
            snprintf(label, sizeof label, "%s layer %zu bias", what, l);
            expect_close(label, got + off + wc, ref + off + wc, bc, kind);
        }
    }
}

static void test_golden_net(void **state) {
    const struct net_case *c = *state;
    aim_status st;
    aim_model *m = c->build(NULL, &st);
    CHECK_OK(st);
    compile_for(m, GOLDEN_NET_BATCH, 1, 1);
    size_t n = 0;
    float *p = params_of(m, &n);
    assert_int_equal(n, c->n_params);
    memcpy(p, c->init, n * sizeof *p);
    aim_optimizer *opt = NULL;
    float lr;
    if (c->adam) {
        aim_adam_config ac;
        CHECK_OK(aim_adam_config_init(&ac));
        assert_true(ac.beta1 == 0.9f && ac.beta2 == 0.999f && ac.epsilon == 1e-8f);
        CHECK_OK(aim_adam_create(NULL, &ac, n, &opt));
        lr = 1e-2f;
    } else {
        aim_sgd_config sc;
        CHECK_OK(aim_sgd_config_init(&sc));
        sc.momentum = 0.9f;
        CHECK_OK(aim_sgd_create(NULL, &sc, n, &opt));
        lr = 0.1f;
    }
    float losses[GOLDEN_NET_STEPS];
    for (size_t t = 0; t < GOLDEN_NET_STEPS; t++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->x_count, GOLDEN_NET_BATCH));
        if (t == 0) {
            const float *y = NULL;
            size_t ny = 0;
            CHECK_OK(aim_model_output(m, 0, &y, &ny));
            assert_int_equal(ny, GOLDEN_NET_BATCH * GOLDEN_NET_CLASSES);
            expect_close("logits of step 0", y, c->logits0, ny, CMP_FORWARD);
        }
        CHECK_OK(aim_model_loss_sparse(m, 0, c->labels, GOLDEN_NET_BATCH, &losses[t]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        if (t == 0) {
            size_t ng = 0, nx = 0;
            expect_tensors(m, "grad step 0", grads_of(m, &ng), c->grad0, CMP_GRAD);
            const float *dx = NULL;
            CHECK_OK(aim_model_input_gradient(m, 0, &dx, &nx));
            assert_int_equal(nx, c->x_count);
            expect_close("dX of step 0", dx, c->dx0, nx, CMP_GRAD);
        }
        CHECK_OK(aim_optimizer_step_model(opt, m, lr));
    }
    expect_close("loss of each step", losses, c->losses, GOLDEN_NET_STEPS, CMP_FORWARD);
    expect_tensors(m, "final", p, c->final, CMP_PARAMS);
    float *dgot = malloc(n * sizeof *dgot), *dref = malloc(n * sizeof *dref);
    assert_true(dgot && dref);
    for (size_t i = 0; i < n; i++) {
        dgot[i] = p[i] - c->init[i];
        dref[i] = c->final[i] - c->init[i];
    }
    expect_tensors(m, "update", dgot, dref, CMP_UPDATE);
    free(dgot);
    free(dref);
    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ======================================================================== */
/* 2. Gradient checks                                                       */
/* ======================================================================== */

/* test_conv.c's tolerances and reasoning: L = sum(Y R) in double from float32
 * outputs, inputs in [-1, 1), R in +-[0.25, 1], weights +-[0.1, 1] /
 * sqrt(fan_in), so pre-activations are O(1). Truncation is 0 for the
 * identity layers and pooling (linear; max windows cannot change their
 * winner under a step of h on grid inputs 5h apart), h^2/6 |L'''| ~ 1e-4 at
 * most with tanh; rounding moves L(v+h) - L(v-h) by ~1e-6, n by ~5e-5.
 * A wrong index or a dropped term moves values by O(0.1). The worst value's
 * share of its tolerance is printed at the end. */
static const gradcheck_tol GC_TOL = {1e-2, 1e-2, 1e-3};
static gradcheck_worst g_worst;

static void check_point(aim_model *m, size_t batch, int grid_input, uint64_t seed, const char *label) {
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float *x = malloc(batch * in * sizeof *x), *r = malloc(batch * out * sizeof *r);
    assert_true(x && r);
    fill_params(m, seed);
    if (grid_input) fill_grid(x, batch * in, seed);
    else fill_uniform(x, batch * in, seed * 7u + 1u, -1.0f, 1.0f);
    fill_signed(r, batch * out, seed * 11u + 2u, 0.25f, 1.0f);
    gradcheck_case c = {.m = m, .x = x, .batch = batch, .in = in, .out = out, .obj = GRADCHECK_WEIGHTED_SUM,
                        .r = r};
    char why[GRADCHECK_WHY];
    /* weights and biases, used by every output, at least half nonzero; the
     * input at least one nonzero (strides, dilations and max windows skip some) */
    if (!gradcheck_model(&c, &GC_TOL, GRADCHECK_DENSE, GRADCHECK_SPARSE, &g_worst, label, why, sizeof why))
        fail_msg("%s", why);
    free(x);
    free(r);
}

typedef struct conv_spec {
    const char *name;
    size_t batch, C, L;
    c1 c;
} conv_spec;

#define ID AIM_ACT_IDENTITY
#define TANH AIM_ACT_TANH
#define EXPL AIM_PAD_EXPLICIT
#define VALID AIM_PAD_VALID
#define SAME AIM_PAD_SAME

static const conv_spec CONV_SPECS[] = {
    /* name                       B  C  L   O  k  s  d  g  padding pl pr bias act */
    {"k3 valid",                  2, 2, 9, {3, 3, 1, 1, 1, VALID, 0, 0, 1, ID}},
    {"stride 2 pad 1",            2, 2, 10, {3, 3, 2, 1, 1, EXPL, 1, 1, 1, ID}},
    {"asymmetric padding 2, 0",   2, 2, 7, {2, 3, 1, 1, 1, EXPL, 2, 0, 1, ID}},
    {"dilation 2 same",           2, 2, 9, {2, 3, 1, 2, 1, SAME, 0, 0, 1, ID}},
    {"same k4 stride 2",          2, 2, 11, {3, 4, 2, 1, 1, SAME, 0, 0, 1, ID}},
    {"stride 3 dilation 2",       2, 2, 13, {2, 3, 3, 2, 1, EXPL, 1, 2, 1, ID}},
    {"k1",                        2, 3, 5, {2, 1, 1, 1, 1, VALID, 0, 0, 1, ID}},
    {"kernel = input",            2, 2, 4, {3, 4, 1, 1, 1, VALID, 0, 0, 1, ID}},
    {"groups 2",                  2, 4, 8, {6, 3, 1, 1, 2, EXPL, 1, 1, 1, ID}},
    {"depthwise x2 stride 2",     2, 3, 9, {6, 3, 2, 1, 3, SAME, 0, 0, 1, ID}},
    {"no bias",                   2, 2, 8, {3, 3, 1, 1, 1, EXPL, 1, 1, 0, ID}},
    {"tanh groups 2 dilation 2",  2, 4, 10, {4, 3, 1, 2, 2, SAME, 0, 0, 1, TANH}},
    {"tanh no bias stride 2",     2, 2, 9, {2, 2, 2, 1, 1, EXPL, 0, 1, 0, TANH}},
};

#define N_SEEDS 2
static const uint64_t SEEDS[N_SEEDS] = {11, 29};

static void test_conv1d_gradients(void **state) {
    const conv_spec *s = *state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = seq_model(NULL, s->C, s->L);
        CHECK_OK(add_c1(m, &s->c));
        compile_for(m, s->batch + 1, 1, 7); /* checks also run below max_batch */
        char label[128];
        snprintf(label, sizeof label, "conv1d %s, seed %llu", s->name, (unsigned long long)SEEDS[k]);
        check_point(m, s->batch, 0, SEEDS[k], label);
        aim_model_free(m);
    }
}

typedef struct pool_spec {
    const char *name;
    pk kind;
    size_t batch, C, L, k, s, p;
} pool_spec;

static const pool_spec POOL_SPECS[] = {
    {"max 2", PK_MAX, 2, 2, 8, 2, 2, 0},
    {"max 2, odd length (floor)", PK_MAX, 2, 2, 9, 2, 2, 0},
    {"max 3 stride 2 pad 1", PK_MAX, 2, 2, 9, 3, 2, 1},
    {"max 3 stride 1 pad 1 (overlap)", PK_MAX, 2, 2, 7, 3, 1, 1},
    {"avg 2", PK_AVG, 2, 2, 8, 2, 2, 0},
    {"avg 3 stride 2 pad 1", PK_AVG, 2, 2, 9, 3, 2, 1},
    {"avg 4 stride 1 pad 2", PK_AVG, 2, 2, 6, 4, 1, 2},
    {"global average", PK_GAVG, 2, 3, 7, 0, 0, 0},
    {"global max", PK_GMAX, 2, 3, 7, 0, 0, 0},
};

static void test_pool1d_gradients(void **state) {
    const pool_spec *s = *state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = seq_model(NULL, s->C, s->L);
        CHECK_OK(add_p1(m, s->kind, s->k, s->s, s->p));
        compile_for(m, s->batch + 1, 1, 7);
        char label[128];
        snprintf(label, sizeof label, "%s, seed %llu", s->name, (unsigned long long)SEEDS[k]);
        check_point(m, s->batch, s->kind == PK_MAX || s->kind == PK_GMAX, SEEDS[k], label);
        aim_model_free(m);
    }
}

/* Max pooling first, on grid inputs (later layers cannot move its winners),
 * then conv, average pooling with padding, a grouped dilated conv, the
 * global average and a dense layer: every backward hands its dX on. And a
 * global max on grid inputs feeding a conv-free head. */
static void test_stack_gradients(void **state) {
    (void)state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        aim_model *m = seq_model(NULL, 2, 16);
        CHECK_OK(add_p1(m, PK_MAX, 2, 2, 0)); /* 2 x 8 */
        const c1 a = {4, 3, 1, 1, 1, SAME, 0, 0, 1, TANH};
        CHECK_OK(add_c1(m, &a));              /* 4 x 8 */
        CHECK_OK(add_p1(m, PK_AVG, 3, 2, 1)); /* 4 x 4 */
        const c1 b = {4, 2, 1, 2, 2, EXPL, 1, 0, 1, ID};
        CHECK_OK(add_c1(m, &b));              /* 4 x 3 */
        expect_shape2(m, 3, 4, 3);
        CHECK_OK(add_p1(m, PK_GAVG, 0, 0, 0)); /* 4 */
        add_dense(m, 3, AIM_ACT_TANH);
        compile_for(m, 3, 1, 7);
        char label[96];
        snprintf(label, sizeof label, "maxpool-conv-avgpool-conv-globalavg-dense, seed %llu",
                 (unsigned long long)SEEDS[k]);
        check_point(m, 2, 1, SEEDS[k], label);
        aim_model_free(m);

        m = seq_model(NULL, 3, 6);
        CHECK_OK(add_p1(m, PK_GMAX, 0, 0, 0));
        add_dense(m, 2, AIM_ACT_TANH);
        compile_for(m, 3, 1, 7);
        snprintf(label, sizeof label, "globalmax-dense, seed %llu", (unsigned long long)SEEDS[k]);
        check_point(m, 2, 1, SEEDS[k], label);
        aim_model_free(m);
    }
}

/* ======================================================================== */
/* 3. The 2-D twins, and output lengths                                     */
/* ======================================================================== */

/* Runs a model (one input, one output) forward in training and backward of
 * sum(Y R), and copies out Y, the parameter gradients and dX. */
typedef struct run_out {
    float *y, *g, *dx;
    size_t ny, ng, nx;
} run_out;

static run_out run_model(aim_model *m, const float *x, size_t batch) {
    run_out o;
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float *r = malloc(batch * out * sizeof *r);
    assert_non_null(r);
    fill_signed(r, batch * out, 3, 0.25f, 1.0f);
    const float *y = NULL, *dx = NULL;
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, batch * in, batch));
    CHECK_OK(aim_model_output(m, 0, &y, &o.ny));
    o.y = copy_floats(y, o.ny);
    CHECK_OK(aim_model_backward(m, r, batch * out));
    const float *g = grads_of(m, &o.ng);
    o.g = copy_floats(g, o.ng);
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &o.nx));
    o.dx = copy_floats(dx, o.nx);
    free(r);
    return o;
}

static void free_run(run_out *o) {
    free(o->y);
    free(o->g);
    free(o->dx);
}

/* Same inputs, same parameter bits, same kernels: the results must be the
 * same bits, not merely close. */
static void expect_same_run(const run_out *a, const run_out *b, const char *what) {
    assert_int_equal(a->ny, b->ny);
    assert_int_equal(a->ng, b->ng);
    assert_int_equal(a->nx, b->nx);
    if (memcmp(a->y, b->y, a->ny * sizeof(float)) || memcmp(a->g, b->g, a->ng * sizeof(float)) ||
        memcmp(a->dx, b->dx, a->nx * sizeof(float)))
        fail_msg("%s: the 1-D and 2-D results differ", what);
    assert_true(max_abs_value(a->y, a->ny) > 0 && max_abs_value(a->dx, a->nx) > 0);
}

static void test_conv1d_is_conv2d_of_height_1(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(CONV_SPECS); i++) {
        const conv_spec *s = &CONV_SPECS[i];
        const size_t B = 3;
        aim_model *m1 = seq_model(NULL, s->C, s->L), *m2 = image_model(s->C, 1, s->L);
        CHECK_OK(add_c1(m1, &s->c));
        aim_conv2d_config cc;
        CHECK_OK(aim_conv2d_config_init(&cc, s->c.filters, 1, s->c.k, s->c.act));
        cc.stride_w = s->c.s;
        cc.dilation_w = s->c.d;
        cc.groups = s->c.groups;
        cc.padding = s->c.padding;
        cc.pad_left = s->c.pl;
        cc.pad_right = s->c.pr;
        cc.use_bias = s->c.bias;
        CHECK_OK(aim_model_add_conv2d(m2, &cc));
        compile_for(m1, B, 1, 5);
        compile_for(m2, B, 1, 5);
        size_t n1 = 0, n2 = 0;
        float *p1 = params_of(m1, &n1), *p2 = params_of(m2, &n2);
        assert_int_equal(n1, n2);
        /* the same initializer with the same fans draws the same weights */
        assert_memory_equal(p1, p2, n1 * sizeof *p1);
        fill_params(m1, 17);
        memcpy(p2, p1, n1 * sizeof *p1);
        float x[3 * 4 * 13];
        assert_true(B * s->C * s->L <= ARRAY_LEN(x));
        fill_uniform(x, B * s->C * s->L, 19, -1.0f, 1.0f);
        run_out a = run_model(m1, x, B), b = run_model(m2, x, B);
        expect_same_run(&a, &b, s->name);
        free_run(&a);
        free_run(&b);
        aim_model_free(m1);
        aim_model_free(m2);
    }
}

static void test_pools_are_pool2d_of_height_1(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(POOL_SPECS); i++) {
        const pool_spec *s = &POOL_SPECS[i];
        const size_t B = 3;
        aim_model *m1 = seq_model(NULL, s->C, s->L), *m2 = image_model(s->C, 1, s->L);
        CHECK_OK(add_p1(m1, s->kind, s->k, s->s, s->p));
        aim_pool2d_config pc;
        /* a global pool is the pool of the whole length */
        const int global = s->kind == PK_GAVG || s->kind == PK_GMAX;
        CHECK_OK(aim_pool2d_config_init(&pc, 1, global ? s->L : s->k));
        pc.stride_w = global ? s->L : s->s;
        pc.pad_w = s->p;
        const int is_max = s->kind == PK_MAX || s->kind == PK_GMAX;
        CHECK_OK(is_max ? aim_model_add_max_pool2d(m2, &pc) : aim_model_add_avg_pool2d(m2, &pc));
        compile_for(m1, B, 1, 5);
        compile_for(m2, B, 1, 5);
        float x[3 * 3 * 9];
        assert_true(B * s->C * s->L <= ARRAY_LEN(x));
        fill_grid(x, B * s->C * s->L, 23);
        run_out a = run_model(m1, x, B), b = run_model(m2, x, B);
        expect_same_run(&a, &b, s->name);
        free_run(&a);
        free_run(&b);
        aim_model_free(m1);
        aim_model_free(m2);
    }
    /* and the global average is also global_avg_pool2d of (C, 1, L) */
    aim_model *m1 = seq_model(NULL, 3, 7), *m2 = image_model(3, 1, 7);
    CHECK_OK(aim_model_add_global_avg_pool1d(m1));
    CHECK_OK(aim_model_add_global_avg_pool2d(m2));
    compile_for(m1, 2, 1, 5);
    compile_for(m2, 2, 1, 5);
    float x[2 * 3 * 7];
    fill_uniform(x, ARRAY_LEN(x), 29, -1.0f, 1.0f);
    run_out a = run_model(m1, x, 2), b = run_model(m2, x, 2);
    expect_same_run(&a, &b, "global average");
    free_run(&a);
    free_run(&b);
    aim_model_free(m1);
    aim_model_free(m2);
}

/* Lo = (L + pl + pr - d (k - 1) - 1) / s + 1 (PyTorch), "same" gives
 * ceil(L / s), and every size that fits is accepted; a kernel longer than
 * the padded input is refused with a message naming the length. */
static void test_output_lengths(void **state) {
    (void)state;
    size_t accepted = 0, refused = 0;
    for (size_t L = 1; L <= 9; L++)
        for (size_t k = 1; k <= 5; k++)
            for (size_t s = 1; s <= 3; s++)
                for (size_t d = 1; d <= 3; d++)
                    for (size_t pad = 0; pad <= 4; pad++) {
                        const size_t pl = pad / 2 + pad % 2, pr = pad / 2; /* asymmetric when odd */
                        const c1 e = {2, k, s, d, 1, EXPL, pl, pr, 1, ID};
                        aim_model *m = seq_model(NULL, 2, L);
                        aim_status st = add_c1(m, &e);
                        const size_t eff = d * (k - 1) + 1, padded = L + pl + pr;
                        if (eff > padded) {
                            assert_int_equal(st, AIM_ERR_SHAPE_MISMATCH);
                            assert_non_null(strstr(aim_model_last_error(m), "layer 0 (conv1d): length"));
                            assert_int_equal(aim_model_layer_count(m), 0);
                            refused++;
                        } else {
                            CHECK_OK(st);
                            expect_shape2(m, 0, 2, (padded - eff) / s + 1);
                            accepted++;
                        }
                        const c1 same = {2, k, s, d, 1, SAME, 0, 0, 1, ID};
                        aim_model_free(m);
                        m = seq_model(NULL, 2, L);
                        CHECK_OK(add_c1(m, &same));
                        expect_shape2(m, 0, 2, (L + s - 1) / s);
                        /* pooling: k <= L + 2p, p <= k / 2 */
                        const size_t p = pad <= k / 2 ? pad : k / 2;
                        aim_status sp = add_p1(m, PK_AVG, k, s, p);
                        const size_t Ln = (L + s - 1) / s;
                        if (k > Ln + 2 * p) {
                            assert_int_equal(sp, AIM_ERR_SHAPE_MISMATCH);
                            assert_non_null(strstr(aim_model_last_error(m), "length"));
                        } else {
                            CHECK_OK(sp);
                            expect_shape2(m, 1, 2, (Ln + 2 * p - k) / s + 1);
                        }
                        aim_model_free(m);
                    }
    print_message("conv1d lengths: %zu configurations accepted, %zu refused\n", accepted, refused);
    assert_true(accepted > 500 && refused > 100);
}

/* ======================================================================== */
/* 4. Serialization                                                         */
/* ======================================================================== */

/* (3, 20) -> conv1d 4 k3 same stride 2 leaky relu (alpha 0.2) -> max pool 3
 * stride 2 pad 1 -> conv1d 6 k2 dilation 2 groups 2 explicit (1, 0) no bias
 * tanh -> avg pool 2 -> branch: global average and global max of it,
 * concatenated -> dense 3: every kind and option of this file. */
#define SER_C 3
#define SER_L 20
static aim_model *build_all_kinds(const aim_allocator *al, aim_status *st) {
    aim_model *m = NULL;
    const size_t dims[2] = {SER_C, SER_L};
    if ((*st = aim_model_create(al, 2, dims, &m)) != AIM_OK) return NULL;
    aim_conv1d_config a;
    CHECK_OK(aim_conv1d_config_init(&a, 4, 3, AIM_ACT_LEAKY_RELU));
    a.padding = AIM_PAD_SAME;
    a.stride = 2;
    a.alpha = 0.2f;
    a.init = AIM_INIT_PYTORCH;
    const c1 b = {6, 2, 1, 2, 2, EXPL, 1, 0, 0, TANH};
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY));
    size_t parts[2] = {4, 5};
    if ((*st = aim_model_add_conv1d(m, &a)) != AIM_OK || (*st = add_p1(m, PK_MAX, 3, 2, 1)) != AIM_OK ||
        (*st = add_c1(m, &b)) != AIM_OK || (*st = add_p1(m, PK_AVG, 2, 2, 0)) != AIM_OK ||
        (*st = add_p1(m, PK_GAVG, 0, 0, 0)) != AIM_OK || (*st = aim_model_continue_from(m, 3)) != AIM_OK ||
        (*st = add_p1(m, PK_GMAX, 0, 0, 0)) != AIM_OK || (*st = aim_model_add_concat(m, parts, 2, 0)) != AIM_OK ||
        (*st = aim_model_add_dense(m, &dc)) != AIM_OK) {
        aim_model_free(m);
        return NULL;
    }
    return m;
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

/* Where `pat` occurs in buf (its first position), and how often. */
static size_t find_bytes(const unsigned char *buf, size_t n, const unsigned char *pat, size_t pn, size_t *at) {
    size_t hits = 0;
    for (size_t i = 0; i + pn <= n; i++)
        if (memcmp(buf + i, pat, pn) == 0) {
            if (hits++ == 0) *at = i;
        }
    return hits;
}

typedef struct rec {
    unsigned char b[128];
    size_t n;
} rec;
static void rec_u32(rec *r, uint32_t v) {
    for (int i = 0; i < 4; i++) r->b[r->n++] = (unsigned char)(v >> (8 * i));
}
static void rec_u64(rec *r, uint64_t v) {
    rec_u32(r, (uint32_t)v);
    rec_u32(r, (uint32_t)(v >> 32));
}
static void rec_f32(rec *r, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    rec_u32(r, u);
}

/* The record of a layer in the format: u32 kind code, u32 input count, u64
 * input ids, then the kind's fields (docs/FORMAT.md). */
static void rec_layer(rec *r, uint32_t code, uint64_t input) {
    rec_u32(r, code);
    rec_u32(r, 1);
    rec_u64(r, input);
}

/* CRC-32 (IEEE 802.3, as zlib's crc32), bit by bit. */
static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

#define FORMAT_HEADER 32u /* magic, version, flags, payload length, CRC-32 at 24 */

static void test_records_are_the_documented_ones(void **state) {
    (void)state;
    aim_status st;
    aim_model *m = build_all_kinds(NULL, &st);
    CHECK_OK(st);
    compile_for(m, 4, 0, 3);
    size_t n = 0;
    unsigned char *buf = serialize(m, NULL, &n);
    /* conv1d 0: "same" with k 3, stride 2 on L 20 resolves to (0, 1):
     * total (10 - 1) 2 + 3 - 20 = 1, the odd element on the right */
    rec r0 = {{0}, 0};
    rec_layer(&r0, 15, (uint64_t)1 << 63); /* model input 0 */
    const uint64_t f0[7] = {4, 3, 2, 1, 0, 1, 1};
    for (size_t i = 0; i < 7; i++) rec_u64(&r0, f0[i]);
    rec_u32(&r0, AIM_ACT_LEAKY_RELU);
    rec_f32(&r0, 0.2f);
    rec_u32(&r0, 1);
    rec_u32(&r0, AIM_INIT_PYTORCH);
    /* max pool 1: kernel, stride, pad */
    rec r1 = {{0}, 0};
    rec_layer(&r1, 16, 0);
    rec_u64(&r1, 3);
    rec_u64(&r1, 2);
    rec_u64(&r1, 1);
    /* conv1d 2 */
    rec r2 = {{0}, 0};
    rec_layer(&r2, 15, 1);
    const uint64_t f2[7] = {6, 2, 1, 2, 1, 0, 2};
    for (size_t i = 0; i < 7; i++) rec_u64(&r2, f2[i]);
    rec_u32(&r2, AIM_ACT_TANH);
    rec_f32(&r2, 0.01f);
    rec_u32(&r2, 0);
    rec_u32(&r2, AIM_INIT_GLOROT_UNIFORM);
    /* avg pool 3, then the two global pools, which have no fields: the next layer's code follows */
    rec r3 = {{0}, 0};
    rec_layer(&r3, 17, 2);
    rec_u64(&r3, 2);
    rec_u64(&r3, 2);
    rec_u64(&r3, 0);
    rec_layer(&r3, 18, 3);
    rec_layer(&r3, 19, 3);
    rec_u32(&r3, 9); /* concat */
    const rec *recs[] = {&r0, &r1, &r2, &r3};
    size_t prev = 0;
    for (size_t i = 0; i < ARRAY_LEN(recs); i++) {
        size_t at = 0;
        if (find_bytes(buf, n, recs[i]->b, recs[i]->n, &at) != 1) fail_msg("record %zu not found exactly once", i);
        assert_true(at > prev); /* in layer order */
        prev = at;
    }
    /* r0 and r1 are adjacent: a conv1d record is exactly the documented fields */
    size_t a0 = 0, a1 = 0;
    (void)find_bytes(buf, n, r0.b, r0.n, &a0);
    (void)find_bytes(buf, n, r1.b, r1.n, &a1);
    assert_int_equal(a1, a0 + r0.n);

    /* A crafted kernel of 0 in layer 0 (CRC re-sealed) is refused, naming the layer and the kernel. */
    unsigned char *bad = malloc(n);
    assert_non_null(bad);
    memcpy(bad, buf, n);
    memset(bad + a0 + 16 + 8, 0, 8); /* code, count, input id, filters; then the kernel */
    const uint32_t crc = crc32_of(bad + FORMAT_HEADER, n - FORMAT_HEADER);
    for (int i = 0; i < 4; i++) bad[24 + i] = (unsigned char)(crc >> (8 * i));
    aim_model *back = NULL;
    char msg[256];
    assert_int_equal(aim_model_deserialize(NULL, bad, n, &back, NULL, msg, sizeof msg), AIM_ERR_CORRUPT_DATA);
    assert_null(back);
    print_message("crafted kernel 0: \"%s\"\n", msg);
    assert_non_null(strstr(msg, "layer 0 (conv1d)"));
    assert_non_null(strstr(msg, "kernel 0"));
    free(bad);
    free(buf);
    aim_model_free(m);
}

static void train_steps(aim_model *m, aim_optimizer *o, const float *x, const int32_t *labels, size_t batch,
                        unsigned first, unsigned count) {
    const size_t in = aim_model_input_size(m);
    for (unsigned t = first; t < first + count; t++) {
        float loss = 0;
        const size_t b0 = (t % 3) * batch; /* a different batch each step */
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x + b0 * in, batch * in, batch));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels + b0, batch, &loss));
        assert_true(isfinite(loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(o, m, 1e-2f));
    }
}

#define SER_B 4
static void test_round_trip_and_exact_resume(void **state) {
    (void)state;
    float x[3 * SER_B * SER_C * SER_L];
    int32_t labels[3 * SER_B];
    fill_uniform(x, ARRAY_LEN(x), 31, -1.0f, 1.0f);
    for (size_t i = 0; i < ARRAY_LEN(labels); i++) labels[i] = (int32_t)(i % 3);
    aim_status st;
    aim_model *a = build_all_kinds(NULL, &st);
    CHECK_OK(st);
    compile_for(a, SER_B, 0, 9);
    size_t np = 0;
    (void)params_of(a, &np);
    aim_optimizer *oa = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, np, &oa));
    train_steps(a, oa, x, labels, SER_B, 0, 3);

    /* Round trip: same layers, shapes, parameters, predictions and bytes. */
    size_t n = 0, n2 = 0;
    unsigned char *buf = serialize(a, oa, &n);
    aim_model *b = NULL;
    aim_optimizer *ob = NULL;
    char msg[256];
    CHECK_OK(aim_model_deserialize(NULL, buf, n, &b, &ob, msg, sizeof msg));
    assert_string_equal(msg, "");
    assert_int_equal(aim_model_layer_count(b), aim_model_layer_count(a));
    for (size_t l = 0; l < aim_model_layer_count(a); l++) {
        size_t ra = 0, rb = 0, da[AIM_MAX_RANK] = {0}, db[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_shape(a, l, &ra, da));
        CHECK_OK(aim_model_layer_shape(b, l, &rb, db));
        assert_int_equal(ra, rb);
        assert_memory_equal(da, db, sizeof da);
    }
    size_t nb = 0;
    float *pa = params_of(a, &np), *pb = params_of(b, &nb);
    assert_int_equal(np, nb);
    assert_memory_equal(pa, pb, np * sizeof *pa);
    unsigned char *buf2 = serialize(b, ob, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(buf, buf2, n);
    free(buf2);
    aim_workspace *wa = NULL, *wb = NULL;
    CHECK_OK(aim_workspace_create(a, NULL, SER_B, &wa));
    CHECK_OK(aim_workspace_create(b, NULL, SER_B, &wb));
    float ya[SER_B * 3], yb[SER_B * 3];
    CHECK_OK(aim_model_predict(a, wa, x, SER_B * SER_C * SER_L, SER_B, ya, ARRAY_LEN(ya)));
    CHECK_OK(aim_model_predict(b, wb, x, SER_B * SER_C * SER_L, SER_B, yb, ARRAY_LEN(yb)));
    assert_memory_equal(ya, yb, sizeof ya);
    assert_true(max_abs_value(ya, ARRAY_LEN(ya)) > 0);

    /* Exact resume: 3 more steps on both, and on a run that never stopped. */
    aim_model *c = build_all_kinds(NULL, &st);
    CHECK_OK(st);
    compile_for(c, SER_B, 0, 9);
    aim_optimizer *oc = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, np, &oc));
    train_steps(c, oc, x, labels, SER_B, 0, 6);
    train_steps(a, oa, x, labels, SER_B, 3, 3);
    train_steps(b, ob, x, labels, SER_B, 3, 3);
    assert_int_equal(aim_optimizer_steps(ob), 6);
    float *pc = params_of(c, &nb);
    assert_memory_equal(pa, pb, np * sizeof *pa);
    assert_memory_equal(pa, pc, np * sizeof *pa);
    size_t l1 = 0, l2 = 0;
    unsigned char *s1 = serialize(a, oa, &l1), *s2 = serialize(b, ob, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(s1, s2, l1); /* the optimizers' moments too */
    free(s1);
    free(s2);

    aim_workspace_free(wa);
    aim_workspace_free(wb);
    aim_optimizer_free(oa);
    aim_optimizer_free(ob);
    aim_optimizer_free(oc);
    aim_model_free(a);
    aim_model_free(b);
    aim_model_free(c);
    free(buf);
}

/* ======================================================================== */
/* 5. Allocation failures                                                   */
/* ======================================================================== */

#define MAX_K 1000

/* Build, compile, Adam, two training steps, serialize (with the optimizer),
 * deserialize, a workspace and a predict on the copy, all through one
 * allocator. Returns 1 when a call failed (then *failed names it), else 0;
 * a failure must be the allocator's: AIM_ERR_OUT_OF_MEMORY and exactly one
 * failed allocator call. */
#define STEP(call)                                            \
    do {                                                      \
        long before_ = ta->failures;                          \
        aim_status s_ = (call);                               \
        if (s_ == AIM_OK) {                                   \
            assert_int_equal(ta->failures, before_);          \
            break;                                            \
        }                                                     \
        assert_int_equal(s_, AIM_ERR_OUT_OF_MEMORY);          \
        assert_int_equal(ta->failures, before_ + 1);          \
        *failed = #call;                                      \
        goto out;                                             \
    } while (0)

static int alloc_scenario(test_alloc *ta, float *pred, const char **failed) {
    const aim_allocator *al = &ta->allocator;
    aim_model *m = NULL, *copy = NULL;
    aim_optimizer *o = NULL, *o2 = NULL;
    aim_workspace *ws = NULL;
    unsigned char *buf = NULL;
    int stopped = 1;
    float x[SER_B * SER_C * SER_L];
    int32_t labels[SER_B] = {0, 1, 2, 1};
    fill_uniform(x, ARRAY_LEN(x), 41, -1.0f, 1.0f);
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = SER_B;
    cc.seed = 5;
    aim_status st = AIM_OK;
    const long before = ta->failures;
    m = build_all_kinds(al, &st); /* several calls: checked as STEP checks one */
    if (st != AIM_OK) {
        assert_int_equal(st, AIM_ERR_OUT_OF_MEMORY);
        assert_int_equal(ta->failures, before + 1);
        *failed = "build_all_kinds";
        goto out;
    }
    assert_int_equal(ta->failures, before);
    STEP(aim_model_compile(m, &cc));
    size_t np = 0;
    (void)params_of(m, &np);
    STEP(aim_adam_create(al, NULL, np, &o));
    for (int t = 0; t < 2; t++) {
        float loss = 0;
        STEP(aim_model_zero_grad(m));
        STEP(aim_model_forward(m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), SER_B));
        STEP(aim_model_loss_sparse(m, 0, labels, SER_B, &loss));
        STEP(aim_model_backward(m, NULL, 0));
        STEP(aim_optimizer_step_model(o, m, 1e-2f));
    }
    size_t n = 0, w = 0;
    STEP(aim_model_serialized_size(m, o, &n));
    buf = malloc(n); /* the test's own memory, not the library's */
    assert_non_null(buf);
    STEP(aim_model_serialize(m, o, buf, n, &w));
    STEP(aim_model_deserialize(al, buf, n, &copy, &o2, NULL, 0));
    STEP(aim_workspace_create(copy, al, SER_B, &ws));
    STEP(aim_model_predict(copy, ws, x, ARRAY_LEN(x), SER_B, pred, SER_B * 3));
    stopped = 0;
out:
    free(buf);
    aim_workspace_free(ws);
    aim_optimizer_free(o2);
    aim_model_free(copy);
    aim_optimizer_free(o);
    aim_model_free(m);
    return stopped;
}

static void test_every_allocation_failure(void **state) {
    (void)state;
    test_alloc ta;
    float ref[SER_B * 3], got[SER_B * 3];
    const char *failed = NULL;
    test_alloc_init(&ta, -1);
    assert_int_equal(alloc_scenario(&ta, ref, &failed), 0);
    const long total = ta.calls;
    assert_int_equal(ta.live, 0);
    print_message("clean scenario: %ld allocator calls\n", total);
    assert_true(total >= 10);
    long k;
    for (k = 0; k < MAX_K; k++) {
        failed = NULL;
        test_alloc_init(&ta, k);
        int stopped = alloc_scenario(&ta, got, &failed);
        if (ta.live != 0) fail_msg("k=%ld (%s failed): %ld blocks leaked", k, failed ? failed : "-", ta.live);
        if (k < total) {
            if (ta.failures != 1 || !stopped) fail_msg("k=%ld: %ld failures, stopped %d", k, ta.failures, stopped);
        } else {
            assert_int_equal(ta.failures, 0);
            assert_int_equal(stopped, 0);
            assert_memory_equal(got, ref, sizeof ref); /* the clean result again */
            break;
        }
    }
    assert_int_equal(k, total);
}

static void test_steps_allocate_nothing(void **state) {
    (void)state;
    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_status st;
    aim_model *m = build_all_kinds(&ta.allocator, &st);
    CHECK_OK(st);
    compile_for(m, SER_B, 1, 3);
    size_t np = 0;
    (void)params_of(m, &np);
    aim_optimizer *o = NULL;
    aim_workspace *ws = NULL;
    CHECK_OK(aim_adam_create(&ta.allocator, NULL, np, &o));
    CHECK_OK(aim_workspace_create(m, &ta.allocator, SER_B, &ws));
    float x[SER_B * SER_C * SER_L], y[SER_B * 3];
    int32_t labels[SER_B] = {2, 0, 1, 1};
    fill_uniform(x, ARRAY_LEN(x), 43, -1.0f, 1.0f);
    const long calls = ta.calls, live = ta.live;
    for (size_t s = 0; s < 8; s++) {
        const size_t batch = s % SER_B + 1;
        float loss = 0;
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, batch * SER_C * SER_L, batch));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, batch, &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(o, m, 1e-2f));
        CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, batch * SER_C * SER_L, batch));
        CHECK_OK(aim_model_predict(m, ws, x, batch * SER_C * SER_L, batch, y, batch * 3));
    }
    if (ta.calls != calls) fail_msg("%ld allocator calls in 8 steps and predicts", ta.calls - calls);
    assert_int_equal(ta.live, live);
    aim_workspace_free(ws);
    aim_optimizer_free(o);
    aim_model_free(m);
    assert_int_equal(ta.live, 0);
}

/* ======================================================================== */
/* 6. Thread pool                                                           */
/* ======================================================================== */

/* What a pool of 2 that always splits (min_work 1) must give, and why:
 *  - against the same model without a pool, the same sums in another order:
 *    the forward is row by row, so predictions and the loss are computed
 *    from the same per-sample values (conv1d lowers and multiplies one
 *    sample at a time; the dense head's GEMM may round a row differently
 *    with another row count, so predictions are compared within 1e-6 of
 *    the largest); parameter gradients are the slices' partial sums added
 *    afterwards, within 1e-5 of the largest;
 *  - bit for bit against a sliced reference computed without a pool: each
 *    slice's forward and backward as separate calls at the slice's batch,
 *    the loss gradient from the whole batch's logits, the slices'
 *    parameter gradients summed in slice order (the pool's reduction), and
 *    predicts of each slice: the pool runs exactly these calls, so it must
 *    give exactly these bits (which also proves that it split);
 *  - bit for bit between two runs with the pool. */
#define TP_B 9 /* slices 5 and 4 */
#define TP_CLASSES 3
#define TP_GRAD_TOL 1e-5
#define TP_PRED_TOL 1e-6

static double scaled_error(const float *a, const float *b, size_t n) {
    double worst = 0, big = max_abs_value(b, n);
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > worst) worst = e;
    }
    return big > 0 ? worst / big : INFINITY;
}

typedef struct tp_run {
    float loss;
    float *g, *dx, *pred;
    size_t ng, nx;
} tp_run;

static void tp_free(tp_run *r) {
    free(r->g);
    free(r->dx);
    free(r->pred);
}

static tp_run tp_step(aim_model *m, aim_workspace *ws, const float *x, const int32_t *labels) {
    tp_run r;
    const size_t in = aim_model_input_size(m);
    const float *dx = NULL;
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, TP_B * in, TP_B));
    CHECK_OK(aim_model_loss_sparse(m, 0, labels, TP_B, &r.loss));
    CHECK_OK(aim_model_backward(m, NULL, 0));
    const float *g = grads_of(m, &r.ng);
    r.g = copy_floats(g, r.ng);
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &r.nx));
    r.dx = copy_floats(dx, r.nx);
    r.pred = malloc(TP_B * TP_CLASSES * sizeof *r.pred);
    assert_non_null(r.pred);
    CHECK_OK(aim_model_predict(m, ws, x, TP_B * in, TP_B, r.pred, TP_B * TP_CLASSES));
    return r;
}

/* What the pool's two workers compute, as separate calls without a pool. */
static tp_run tp_sliced(aim_model *m, aim_workspace *ws, const float *x, const int32_t *labels) {
    tp_run r;
    const size_t in = aim_model_input_size(m), parts = 2;
    float logits[TP_B * TP_CLASSES], dy[TP_B * TP_CLASSES];
    size_t count = 0;
    float *g = grads_of(m, &count);
    r.ng = count;
    r.nx = TP_B * in;
    r.g = calloc(count, sizeof *r.g);
    r.dx = malloc(r.nx * sizeof *r.dx);
    r.pred = malloc(TP_B * TP_CLASSES * sizeof *r.pred);
    assert_true(r.g && r.dx && r.pred);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t w = 0; w < parts; w++) {
            /* aim__split's slices: the first TP_B % parts get one row more */
            const size_t q = TP_B / parts, rem = TP_B % parts;
            const size_t nb = q + (w < rem), b0 = w * q + (w < rem ? w : rem);
            CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x + b0 * in, nb * in, nb));
            if (pass == 0) {
                const float *out = NULL;
                size_t n = 0;
                CHECK_OK(aim_model_output(m, 0, &out, &n));
                memcpy(logits + b0 * TP_CLASSES, out, n * sizeof *out);
                CHECK_OK(aim_model_predict(m, ws, x + b0 * in, nb * in, nb, r.pred + b0 * TP_CLASSES, nb * TP_CLASSES));
                continue;
            }
            CHECK_OK(aim_model_zero_grad(m));
            CHECK_OK(aim_model_backward(m, dy + b0 * TP_CLASSES, nb * TP_CLASSES));
            if (w == 0) memcpy(r.g, g, count * sizeof *g);
            else
                for (size_t i = 0; i < count; i++) r.g[i] += g[i];
            const float *dx = NULL;
            size_t n = 0;
            CHECK_OK(aim_model_input_gradient(m, 0, &dx, &n));
            assert_int_equal(n, nb * in);
            memcpy(r.dx + b0 * in, dx, n * sizeof *dx);
        }
        if (pass == 0) CHECK_OK(aim_loss_sparse(logits, labels, TP_B, TP_CLASSES, &r.loss, dy));
    }
    return r;
}

static void expect_same_bits(const tp_run *a, const tp_run *b, const char *what) {
    assert_int_equal(a->ng, b->ng);
    assert_int_equal(a->nx, b->nx);
    if (memcmp(&a->loss, &b->loss, sizeof a->loss) || memcmp(a->g, b->g, a->ng * sizeof(float)) ||
        memcmp(a->dx, b->dx, a->nx * sizeof(float)) || memcmp(a->pred, b->pred, TP_B * TP_CLASSES * sizeof(float)))
        fail_msg("%s: not bit-identical (gradient error %.3g)", what, scaled_error(a->g, b->g, a->ng));
}

static aim_model *tp_model(aim_model *(*build)(const aim_allocator *, aim_status *)) {
    aim_status st;
    aim_model *m = build(NULL, &st);
    CHECK_OK(st);
    compile_for(m, TP_B, 1, 21);
    return m;
}

static void test_thread_pool_split_against_unsplit(void **state) {
    (void)state;
    aim_model *(*const builds[])(const aim_allocator *, aim_status *) = {build_net_a, build_net_b, build_all_kinds};
    aim_threadpool *pool = NULL;
    CHECK_OK(aim_threadpool_create(NULL, 2, &pool));
    CHECK_OK(aim_threadpool_set_min_work(pool, 1)); /* always split */
    for (size_t i = 0; i < ARRAY_LEN(builds); i++) {
        aim_model *plain = tp_model(builds[i]), *pooled = tp_model(builds[i]), *again = tp_model(builds[i]);
        aim_workspace *wp = NULL, *wq = NULL, *wa = NULL;
        CHECK_OK(aim_workspace_create(plain, NULL, TP_B, &wp));
        CHECK_OK(aim_workspace_create(pooled, NULL, TP_B, &wq));
        CHECK_OK(aim_workspace_create(again, NULL, TP_B, &wa));
        CHECK_OK(aim_model_set_threadpool(pooled, pool));
        CHECK_OK(aim_model_set_threadpool(again, pool));
        CHECK_OK(aim_workspace_set_threadpool(wq, pooled, pool));
        CHECK_OK(aim_workspace_set_threadpool(wa, again, pool));
        const size_t in = aim_model_input_size(plain);
        float *x = malloc(TP_B * in * sizeof *x);
        assert_non_null(x);
        fill_uniform(x, TP_B * in, 50 + i, -1.0f, 1.0f);
        int32_t labels[TP_B];
        for (size_t b = 0; b < TP_B; b++) labels[b] = (int32_t)((b * 7 + i) % TP_CLASSES);

        tp_run u = tp_step(plain, wp, x, labels), s = tp_step(pooled, wq, x, labels);
        tp_run s2 = tp_step(again, wa, x, labels), ref = tp_sliced(plain, wp, x, labels);
        assert_true(max_abs_value(u.g, u.ng) > 0 && max_abs_value(u.dx, u.nx) > 0);
        const double eg = scaled_error(s.g, u.g, u.ng), ex = scaled_error(s.dx, u.dx, u.nx);
        const double ep = scaled_error(s.pred, u.pred, TP_B * TP_CLASSES);
        const double el = fabs((double)s.loss - (double)u.loss) / fabs((double)u.loss);
        print_message("model %zu: split against unsplit: loss %.2g, gradients %.2g, input gradient %.2g, "
                      "predictions %.2g\n", i, el, eg, ex, ep);
        assert_true(eg <= TP_GRAD_TOL && ex <= TP_GRAD_TOL && ep <= TP_PRED_TOL && el <= TP_PRED_TOL);
        expect_same_bits(&s, &ref, "pooled against the sliced reference");
        expect_same_bits(&s, &s2, "two pooled runs");

        tp_free(&u);
        tp_free(&s);
        tp_free(&s2);
        tp_free(&ref);
        free(x);
        aim_workspace_free(wp);
        aim_workspace_free(wq);
        aim_workspace_free(wa);
        aim_model_free(plain);
        aim_model_free(pooled);
        aim_model_free(again);
    }
    aim_threadpool_free(pool);
}

/* ======================================================================== */

static int print_worst(void **state) {
    (void)state;
    golden_print_worst(CMP, CMP_KINDS);
    print_message("gradient checks: %zu parts, %zu values, worst |a - n| %.3g, worst tolerance use %.3g (%s, %s)\n",
                  g_worst.parts, g_worst.values, g_worst.max_abs_err, g_worst.max_usage, g_worst.label, g_worst.part);
    return 0;
}

int main(void) {
    enum {
        N_TESTS = ARRAY_LEN(conv_cases) + ARRAY_LEN(pool_cases) + ARRAY_LEN(net_cases) + ARRAY_LEN(CONV_SPECS) +
                  ARRAY_LEN(POOL_SPECS) + 9
    };
    struct CMUnitTest tests[N_TESTS];
    size_t n = 0;
    static char names[N_TESTS][96];
    for (size_t i = 0; i < ARRAY_LEN(conv_cases); i++) {
        snprintf(names[n], sizeof names[n], "%s", conv_cases[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_golden_conv1d, NULL, NULL, (void *)&conv_cases[i]};
        n++;
    }
    for (size_t i = 0; i < ARRAY_LEN(pool_cases); i++) {
        snprintf(names[n], sizeof names[n], "%s", pool_cases[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_golden_pool1d, NULL, NULL, (void *)&pool_cases[i]};
        n++;
    }
    for (size_t i = 0; i < ARRAY_LEN(net_cases); i++) {
        snprintf(names[n], sizeof names[n], "golden_net_%s", net_cases[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_golden_net, NULL, NULL, (void *)&net_cases[i]};
        n++;
    }
    for (size_t i = 0; i < ARRAY_LEN(CONV_SPECS); i++) {
        snprintf(names[n], sizeof names[n], "gradcheck_conv1d %s", CONV_SPECS[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_conv1d_gradients, NULL, NULL, (void *)&CONV_SPECS[i]};
        n++;
    }
    for (size_t i = 0; i < ARRAY_LEN(POOL_SPECS); i++) {
        snprintf(names[n], sizeof names[n], "gradcheck_pool1d %s", POOL_SPECS[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_pool1d_gradients, NULL, NULL, (void *)&POOL_SPECS[i]};
        n++;
    }
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_stack_gradients),
        cmocka_unit_test(test_conv1d_is_conv2d_of_height_1),
        cmocka_unit_test(test_pools_are_pool2d_of_height_1),
        cmocka_unit_test(test_output_lengths),
        cmocka_unit_test(test_records_are_the_documented_ones),
        cmocka_unit_test(test_round_trip_and_exact_resume),
        cmocka_unit_test(test_every_allocation_failure),
        cmocka_unit_test(test_steps_allocate_nothing),
        cmocka_unit_test(test_thread_pool_split_against_unsplit),
    };
    _Static_assert(ARRAY_LEN(rest) == 9, "N_TESTS counts them");
    for (size_t i = 0; i < ARRAY_LEN(rest); i++) tests[n++] = rest[i];
    if (n != N_TESTS) return 1; /* every slot filled */
    return cmocka_run_group_tests(tests, NULL, print_worst);
}
