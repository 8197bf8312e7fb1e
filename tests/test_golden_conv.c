/* Golden-value tests of the image layers: libaimodel's conv2d, pooling and a
 * small CNN against PyTorch 1.13.
 *
 * The references live in golden/golden_conv.h, written by
 * golden/gen_golden_conv.py (run it with /usr/bin/python3 to regenerate), which
 * follows golden/gen_golden.py: inputs are float32 values, references were
 * computed in float64 and rounded to float32, so the error measured here is
 * the library's own float32 error.
 *
 * Cases: (a) one conv2d layer in twelve configurations (stride 2, padding 1,
 * Keras "same" with odd and even kernels, dilation 2, a non-square kernel on a
 * non-square input with asymmetric padding, groups 2, depthwise, no bias,
 * fused relu and tanh): Y and the gradients dW, db, dX of sum(Y * G);
 * (b) max, average and global average pooling: Y and dX; (c) the seed CNN
 * (1x28x28 -> Conv2D 32 3x3 relu -> MaxPool 2 -> Conv2D 64 3x3 relu ->
 * MaxPool 2 -> Flatten -> Dense 64 relu -> Dense 10) trained 3 steps with
 * Adam on sparse cross-entropy: the losses and the final parameters.
 *
 * Tolerances and metric are test_golden.c's: |got - ref| / max(|ref|, floor)
 * with the floor 1% of the largest |ref| of the array; at most 1e-5 for
 * forward values and losses, 1e-4 for gradients and parameters, and 1e-3
 * with a 10% floor for the CNN's updates (final - initial), which three steps
 * of lr 1e-3 keep at ~1% of the parameters, so the parameter comparison alone
 * would test them only to ~1%. gen_golden_conv.py --check prints how far a
 * float32 PyTorch run lands under the same metrics: at most 3.9e-6 for values,
 * gradients and parameters, and 9.9e-5 for the updates (one float32 rounding
 * of a conv1 weight of 0.3 per step, against an update floor of 3e-4); this
 * library measures the same (the test prints the worst of each kind).
 *
 * The CNN's 121930 initial parameters and its input are not stored: both the
 * generator and this test draw them from fill_uniform()'s generator
 * (tests/support.c), and the test first checks probe values of the draw bit
 * for bit. Its final
 * parameters are stored in full for the small tensors and at every k-th
 * element of the two large weight matrices; the L2 norm of each tensor's
 * update covers every element.
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
#include "golden/golden_conv.h"

#define TOL_FORWARD 1e-5
#define TOL_GRAD 1e-4
#define TOL_TRAJ 1e-4
#define TOL_UPDATE 1e-3
#define FLOOR_FRAC 1e-2
#define UPDATE_FLOOR_FRAC 0.1
#define WHAT_WIDTH 30 /* of the printed names */

/* What a comparison measures; each kind has its tolerance and floor. The
 * metric is golden_rel_error() (tests/support.h), described at the top of
 * test_golden.c; an all-zero reference fails, so a comparison never passes
 * vacuously. golden_expect() keeps the worst error of each kind over the
 * whole run, printed at the end. */
typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_PARAMS, CMP_UPDATE, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward/loss", TOL_FORWARD, FLOOR_FRAC, 0.0},
    {"gradient", TOL_GRAD, FLOOR_FRAC, 0.0},
    {"parameters", TOL_TRAJ, FLOOR_FRAC, 0.0},
    {"update", TOL_UPDATE, UPDATE_FLOOR_FRAC, 0.0},
};

/* Compares `n` values, prints the measured error, asserts it is within the kind's tolerance. */
static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

static aim_model *image_model(size_t C, size_t H, size_t W) {
    const size_t dims[3] = {C, H, W};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 3, dims, &m));
    return m;
}

static void compile_for(aim_model *m, size_t batch) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = batch;
    cc.input_gradient = 1;
    CHECK_OK(aim_model_compile(m, &cc));
}

static void expect_shape(const aim_model *m, size_t layer, size_t rank, size_t d0, size_t d1, size_t d2) {
    size_t r = 0, dims[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, layer, &r, dims));
    assert_int_equal(r, rank);
    assert_int_equal(dims[0], d0);
    if (rank == 3) {
        assert_int_equal(dims[1], d1);
        assert_int_equal(dims[2], d2);
    }
}

/* ------------------------------------------------------------------ a) conv2d */

/* The fields of golden_conv_<case>_cfg, in the generator's order. */
enum conv_field {
    CF_BATCH, CF_C, CF_H, CF_W, CF_FILTERS, CF_KH, CF_KW, CF_SH, CF_SW, CF_PADDING, CF_PT, CF_PB, CF_PL, CF_PR,
    CF_DH, CF_DW, CF_GROUPS, CF_BIAS, CF_ACT, CF_HO, CF_WO, CF_COUNT
};
_Static_assert(CF_COUNT == GOLDEN_CONV_CFG_FIELDS, "golden_conv.h's cfg layout changed");

struct conv_case {
    const int32_t *cfg;
    const float *x, *w, *b, *g; /* b is NULL without bias */
    const float *y, *dw, *db, *dx;
    size_t x_count, g_count; /* the floats the arrays x and g hold */
};

#define CONV_CASE(n)                                                                                   \
    {golden_conv_##n##_cfg, golden_conv_##n##_x, golden_conv_##n##_w, golden_conv_##n##_b,             \
     golden_conv_##n##_g, golden_conv_##n##_y, golden_conv_##n##_dw, golden_conv_##n##_db,             \
     golden_conv_##n##_dx, ARRAY_LEN(golden_conv_##n##_x), ARRAY_LEN(golden_conv_##n##_g)}
#define CONV_CASE_NO_BIAS(n)                                                                           \
    {golden_conv_##n##_cfg, golden_conv_##n##_x, golden_conv_##n##_w, NULL, golden_conv_##n##_g,       \
     golden_conv_##n##_y, golden_conv_##n##_dw, NULL, golden_conv_##n##_dx, ARRAY_LEN(golden_conv_##n##_x), \
     ARRAY_LEN(golden_conv_##n##_g)}

static struct conv_case conv_cases[] = {
    CONV_CASE(basic),
    CONV_CASE(stride2_pad1),
    CONV_CASE(same_stride1),
    CONV_CASE(same_stride2_even),
    CONV_CASE(dilation2),
    CONV_CASE(nonsquare_asym_pad),
    CONV_CASE(groups2),
    CONV_CASE(depthwise),
    CONV_CASE(depthwise_x2_same_stride2),
    CONV_CASE_NO_BIAS(no_bias),
    CONV_CASE(relu),
    CONV_CASE(tanh_same_dilated),
};

static size_t cf(const struct conv_case *c, enum conv_field f) { return (size_t)c->cfg[f]; }

/* One conv2d layer with PyTorch's weights, forward and backward of sum(Y * G). */
static void test_conv(void **state) {
    const struct conv_case *c = *state;
    const size_t B = cf(c, CF_BATCH), C = cf(c, CF_C), H = cf(c, CF_H), W = cf(c, CF_W);
    const size_t O = cf(c, CF_FILTERS), Ho = cf(c, CF_HO), Wo = cf(c, CF_WO);
    const size_t wcount = O * (C / cf(c, CF_GROUPS)) * cf(c, CF_KH) * cf(c, CF_KW);
    const size_t bcount = cf(c, CF_BIAS) ? O : 0;
    assert_true((c->b != NULL) == (bcount != 0));

    aim_model *m = image_model(C, H, W);
    aim_conv2d_config cc;
    CHECK_OK(aim_conv2d_config_init(&cc, O, cf(c, CF_KH), cf(c, CF_KW), (aim_activation)c->cfg[CF_ACT]));
    cc.stride_h = cf(c, CF_SH);
    cc.stride_w = cf(c, CF_SW);
    cc.padding = (aim_padding)c->cfg[CF_PADDING];
    if (cc.padding == AIM_PAD_EXPLICIT) { /* "same" must find the TensorFlow split by itself */
        cc.pad_top = cf(c, CF_PT);
        cc.pad_bottom = cf(c, CF_PB);
        cc.pad_left = cf(c, CF_PL);
        cc.pad_right = cf(c, CF_PR);
    }
    cc.dilation_h = cf(c, CF_DH);
    cc.dilation_w = cf(c, CF_DW);
    cc.groups = cf(c, CF_GROUPS);
    cc.use_bias = (int32_t)cf(c, CF_BIAS);
    CHECK_OK(aim_model_add_conv2d(m, &cc));
    expect_shape(m, 0, 3, O, Ho, Wo);
    compile_for(m, B);

    size_t offset = 99, wc = 0, bc = 0;
    CHECK_OK(aim_model_layer_parameters(m, 0, &offset, &wc, &bc));
    assert_int_equal(offset, 0);
    assert_int_equal(wc, wcount);
    assert_int_equal(bc, bcount);
    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, wcount + bcount);
    memcpy(params, c->w, wcount * sizeof(float)); /* OIHW, as torch stores it */
    if (bcount) memcpy(params + wcount, c->b, bcount * sizeof(float));

    const size_t ny = B * O * Ho * Wo, nx = B * C * H * W;
    const float *y = NULL;
    size_t ycount = 0;
    /* Inference keeps no cache and activates in place: it must agree too. */
    CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, c->x, c->x_count, B));
    CHECK_OK(aim_model_output(m, 0, &y, &ycount));
    assert_int_equal(ycount, ny);
    expect_close("Y (inference)", y, c->y, ny, CMP_FORWARD);

    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->x_count, B));
    CHECK_OK(aim_model_output(m, 0, &y, &ycount));
    expect_close("Y", y, c->y, ny, CMP_FORWARD);

    CHECK_OK(aim_model_backward(m, c->g, c->g_count));
    float *grads = NULL;
    size_t gcount = 0;
    CHECK_OK(aim_model_gradients(m, &grads, &gcount));
    assert_int_equal(gcount, count);
    expect_close("dW", grads, c->dw, wcount, CMP_GRAD);
    if (bcount) expect_close("db", grads + wcount, c->db, bcount, CMP_GRAD);
    const float *dx = NULL;
    size_t dxcount = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &dxcount));
    assert_int_equal(dxcount, nx);
    expect_close("dX", dx, c->dx, nx, CMP_GRAD);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ b) pooling */

enum pool_field { PF_BATCH, PF_C, PF_H, PF_W, PF_KIND, PF_KH, PF_KW, PF_SH, PF_SW, PF_PH, PF_PW, PF_HO, PF_WO, PF_COUNT };
_Static_assert(PF_COUNT == GOLDEN_POOL_CFG_FIELDS, "golden_conv.h's pool cfg layout changed");
enum { POOL_MAX = 0, POOL_AVG = 1, POOL_GLOBAL = 2 };

struct pool_case {
    const int32_t *cfg;
    const float *x, *g, *y, *dx;
    size_t x_count, g_count; /* the floats the arrays x and g hold */
};

#define POOL_CASE(n)                                                                                      \
    {golden_pool_##n##_cfg, golden_pool_##n##_x, golden_pool_##n##_g, golden_pool_##n##_y, golden_pool_##n##_dx, \
     ARRAY_LEN(golden_pool_##n##_x), ARRAY_LEN(golden_pool_##n##_g)}

static struct pool_case pool_cases[] = {
    POOL_CASE(max2),
    POOL_CASE(max3_stride2_pad1),
    POOL_CASE(max_3x2_stride12_pad11),
    POOL_CASE(avg2),
    POOL_CASE(avg3_stride2_pad1),
    POOL_CASE(avg_2x3_stride1_pad11),
    POOL_CASE(global_avg),
};

static void test_pool(void **state) {
    const struct pool_case *c = *state;
    const size_t B = (size_t)c->cfg[PF_BATCH], C = (size_t)c->cfg[PF_C], H = (size_t)c->cfg[PF_H],
                 W = (size_t)c->cfg[PF_W], Ho = (size_t)c->cfg[PF_HO], Wo = (size_t)c->cfg[PF_WO];
    const int kind = c->cfg[PF_KIND];
    aim_model *m = image_model(C, H, W);
    if (kind == POOL_GLOBAL) {
        CHECK_OK(aim_model_add_global_avg_pool2d(m));
        expect_shape(m, 0, 1, C, 0, 0);
    } else {
        aim_pool2d_config pc;
        CHECK_OK(aim_pool2d_config_init(&pc, (size_t)c->cfg[PF_KH], (size_t)c->cfg[PF_KW]));
        pc.stride_h = (size_t)c->cfg[PF_SH];
        pc.stride_w = (size_t)c->cfg[PF_SW];
        pc.pad_h = (size_t)c->cfg[PF_PH];
        pc.pad_w = (size_t)c->cfg[PF_PW];
        CHECK_OK(kind == POOL_MAX ? aim_model_add_max_pool2d(m, &pc) : aim_model_add_avg_pool2d(m, &pc));
        expect_shape(m, 0, 3, C, Ho, Wo);
    }
    compile_for(m, B);

    const size_t ny = B * C * Ho * Wo, nx = B * C * H * W;
    const float *y = NULL;
    size_t ycount = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->x_count, B));
    CHECK_OK(aim_model_output(m, 0, &y, &ycount));
    assert_int_equal(ycount, ny);
    expect_close("Y", y, c->y, ny, CMP_FORWARD);
    CHECK_OK(aim_model_backward(m, c->g, c->g_count));
    const float *dx = NULL;
    size_t dxcount = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &dxcount));
    assert_int_equal(dxcount, nx);
    expect_close("dX", dx, c->dx, nx, CMP_GRAD);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ c) the seed CNN */

enum { CNN_IN = 28 * 28, CNN_X = GOLDEN_CNN_BATCH * CNN_IN };

/* The eight parameter tensors in flat order: the layer holding each, whether
 * it is that layer's bias, and its stored final values. */
struct cnn_tensor {
    const char *name;
    size_t layer;
    int bias;
    size_t stride;
    const float *final;
    size_t final_count;
};

#define CNN_TENSOR(name, layer, bias, NAME) \
    {#name, layer, bias, GOLDEN_CNN_STRIDE_##NAME, golden_cnn_final_##name, ARRAY_LEN(golden_cnn_final_##name)}

static const struct cnn_tensor cnn_tensors[] = {
    CNN_TENSOR(conv1_w, 0, 0, CONV1_W),   CNN_TENSOR(conv1_b, 0, 1, CONV1_B),
    CNN_TENSOR(conv2_w, 2, 0, CONV2_W),   CNN_TENSOR(conv2_b, 2, 1, CONV2_B),
    CNN_TENSOR(dense1_w, 5, 0, DENSE1_W), CNN_TENSOR(dense1_b, 5, 1, DENSE1_B),
    CNN_TENSOR(dense2_w, 6, 0, DENSE2_W), CNN_TENSOR(dense2_b, 6, 1, DENSE2_B),
};
_Static_assert(ARRAY_LEN(cnn_tensors) == GOLDEN_CNN_TENSORS, "one entry per tensor of golden_conv.h");

static aim_model *build_seed_cnn(void) {
    aim_model *m = image_model(1, 28, 28);
    aim_conv2d_config cc;
    aim_pool2d_config pc;
    aim_dense_config dc;
    CHECK_OK(aim_pool2d_config_init(&pc, 2, 2));
    CHECK_OK(aim_conv2d_config_init(&cc, 32, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &cc));
    CHECK_OK(aim_model_add_max_pool2d(m, &pc));
    CHECK_OK(aim_conv2d_config_init(&cc, 64, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &cc));
    CHECK_OK(aim_model_add_max_pool2d(m, &pc));
    CHECK_OK(aim_model_add_flatten(m));
    CHECK_OK(aim_dense_config_init(&dc, 64, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_dense_config_init(&dc, 10, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    return m;
}

/* Where tensor t lives in the flat buffer, and how many floats it has. */
static void cnn_tensor_span(const aim_model *m, size_t t, size_t *off, size_t *n) {
    size_t o = 0, wc = 0, bc = 0;
    CHECK_OK(aim_model_layer_parameters(m, cnn_tensors[t].layer, &o, &wc, &bc));
    *off = cnn_tensors[t].bias ? o + wc : o;
    *n = cnn_tensors[t].bias ? bc : wc;
}

static int cnn_skipped(size_t t, size_t i) {
    for (size_t k = 0; golden_cnn_skip[k] >= 0; k += 2)
        if ((size_t)golden_cnn_skip[k] == t && (size_t)golden_cnn_skip[k + 1] == i) return 1;
    return 0;
}

static void test_seed_cnn_adam(void **state) {
    (void)state;
    aim_model *m = build_seed_cnn();
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = GOLDEN_CNN_BATCH;
    CHECK_OK(aim_model_compile(m, &cc));
    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, GOLDEN_CNN_PARAMS);

    /* The initial parameters and the input, drawn as the generator drew them. */
    float *init = malloc(count * sizeof *init);
    float *x = malloc(CNN_X * sizeof *x);
    assert_true(init && x);
    size_t expect_off = 0;
    for (size_t t = 0; t < GOLDEN_CNN_TENSORS; t++) {
        size_t off = 0, n = 0;
        cnn_tensor_span(m, t, &off, &n);
        assert_int_equal(off, expect_off); /* the documented flat order */
        expect_off += n;
        /* (2 u - 1) bound: 2 u - 1 is exact, so fused multiply-adds cannot
         * change the value, as they could in fill_uniform(-bound, bound). */
        const float bound = golden_cnn_init_bound[t];
        fill_uniform(params + off, n, (uint64_t)golden_cnn_init_seed[t], 0.0f, 1.0f);
        for (size_t i = 0; i < n; i++) params[off + i] = (2.0f * params[off + i] - 1.0f) * bound;
        assert_true(params[off] == golden_cnn_init_probe[2 * t]);
        assert_true(params[off + n - 1] == golden_cnn_init_probe[2 * t + 1]);
        assert_int_equal((n + cnn_tensors[t].stride - 1) / cnn_tensors[t].stride, cnn_tensors[t].final_count);
    }
    assert_int_equal(expect_off, count);
    memcpy(init, params, count * sizeof *init);
    fill_uniform(x, CNN_X, GOLDEN_CNN_X_SEED, 0.0f, 1.0f);
    assert_true(x[0] == golden_cnn_init_probe[2 * GOLDEN_CNN_TENSORS]);
    assert_true(x[CNN_X - 1] == golden_cnn_init_probe[2 * GOLDEN_CNN_TENSORS + 1]);

    aim_adam_config ac;
    CHECK_OK(aim_adam_config_init(&ac));
    assert_true(ac.beta1 == 0.9f && ac.beta2 == 0.999f && ac.epsilon == 1e-8f); /* PyTorch's defaults */
    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, &ac, count, &opt));
    float losses[GOLDEN_CNN_STEPS];
    for (size_t t = 0; t < GOLDEN_CNN_STEPS; t++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, CNN_X, GOLDEN_CNN_BATCH));
        CHECK_OK(aim_model_loss_sparse(m, 0, golden_cnn_labels, ARRAY_LEN(golden_cnn_labels), &losses[t]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(opt, m, GOLDEN_CNN_LR));
    }
    expect_close("loss of each step", losses, golden_cnn_losses, GOLDEN_CNN_STEPS, CMP_FORWARD);

    /* Per tensor: the stored elements (less the rounding-decided ones), their
     * updates, and the norm of the whole tensor's update. */
    float *got = malloc(count * sizeof *got), *ref = malloc(count * sizeof *ref);
    float *dgot = malloc(count * sizeof *dgot), *dref = malloc(count * sizeof *dref);
    assert_true(got && ref && dgot && dref);
    float norms[GOLDEN_CNN_TENSORS];
    size_t skipped = 0;
    for (size_t t = 0; t < GOLDEN_CNN_TENSORS; t++) {
        const struct cnn_tensor *ct = &cnn_tensors[t];
        size_t off = 0, n = 0, k = 0;
        cnn_tensor_span(m, t, &off, &n);
        for (size_t j = 0; j < ct->final_count; j++) {
            size_t i = j * ct->stride;
            if (cnn_skipped(t, i)) {
                skipped++;
                continue;
            }
            got[k] = params[off + i];
            ref[k] = ct->final[j];
            dgot[k] = params[off + i] - init[off + i];
            dref[k] = ct->final[j] - init[off + i];
            k++;
        }
        double sq = 0.0;
        for (size_t i = 0; i < n; i++) {
            double d = (double)params[off + i] - (double)init[off + i];
            sq += d * d;
        }
        norms[t] = (float)sqrt(sq);
        char what[64];
        snprintf(what, sizeof what, "final %s (%zu values)", ct->name, k);
        expect_close(what, got, ref, k, CMP_PARAMS);
        snprintf(what, sizeof what, "update %s", ct->name);
        expect_close(what, dgot, dref, k, CMP_UPDATE);
    }
    /* Every pair of the skip list names a stored element. */
    size_t listed = 0;
    while (golden_cnn_skip[2 * listed] >= 0) listed++;
    assert_int_equal(skipped, listed);
    /* One value per comparison: each norm is judged against itself. */
    for (size_t t = 0; t < GOLDEN_CNN_TENSORS; t++) {
        char what[64];
        snprintf(what, sizeof what, "update norm %s", cnn_tensors[t].name);
        expect_close(what, &norms[t], &golden_cnn_update_norm[t], 1, CMP_UPDATE);
    }
    free(got);
    free(ref);
    free(dgot);
    free(dref);
    free(init);
    free(x);
    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ main */

static int print_worst(void **state) {
    (void)state;
    golden_print_worst(CMP, CMP_KINDS);
    return 0;
}

#define CASE(name, fn, table, i) {name, fn, NULL, NULL, &table[i]}

int main(void) {
    const struct CMUnitTest tests[] = {
        CASE("conv_basic", test_conv, conv_cases, 0),
        CASE("conv_stride2_pad1", test_conv, conv_cases, 1),
        CASE("conv_same_stride1", test_conv, conv_cases, 2),
        CASE("conv_same_stride2_even_kernel", test_conv, conv_cases, 3),
        CASE("conv_dilation2", test_conv, conv_cases, 4),
        CASE("conv_nonsquare_asymmetric_padding", test_conv, conv_cases, 5),
        CASE("conv_groups2", test_conv, conv_cases, 6),
        CASE("conv_depthwise", test_conv, conv_cases, 7),
        CASE("conv_depthwise_x2_same_stride2", test_conv, conv_cases, 8),
        CASE("conv_no_bias", test_conv, conv_cases, 9),
        CASE("conv_fused_relu", test_conv, conv_cases, 10),
        CASE("conv_fused_tanh_same_dilated", test_conv, conv_cases, 11),
        CASE("max_pool_2x2", test_pool, pool_cases, 0),
        CASE("max_pool_3x3_stride2_pad1", test_pool, pool_cases, 1),
        CASE("max_pool_3x2_stride12_pad11", test_pool, pool_cases, 2),
        CASE("avg_pool_2x2", test_pool, pool_cases, 3),
        CASE("avg_pool_3x3_stride2_pad1", test_pool, pool_cases, 4),
        CASE("avg_pool_2x3_stride1_pad11", test_pool, pool_cases, 5),
        CASE("global_avg_pool", test_pool, pool_cases, 6),
        cmocka_unit_test(test_seed_cnn_adam),
    };
    _Static_assert(ARRAY_LEN(conv_cases) == 12 && ARRAY_LEN(pool_cases) == 7,
                   "every case of the tables is listed in main");
    return cmocka_run_group_tests(tests, NULL, print_worst);
}
