/* Tests of the graph container's memory plan (src/model/compile.c): the
 * liveness placement of gradients and of a workspace's values, against one
 * buffer per value, on the seed CNN, a chain MLP and the residual CNN of
 * examples/residual_classifier.c; and that a planned model computes the same
 * gradients as the same graph with its buffers forced apart (each value
 * checked against a sequential chain built by hand). Prints the figures the
 * architecture issue asks for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../src/internal.h"
#include "support.h"

static void conv(aim_model *m, size_t filters, aim_activation act) {
    aim_conv2d_config c;
    CHECK_OK(aim_conv2d_config_init(&c, filters, 3, 3, act));
    c.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &c));
}

static void pool2(aim_model *m) {
    aim_pool2d_config p;
    CHECK_OK(aim_pool2d_config_init(&p, 2, 2));
    CHECK_OK(aim_model_add_max_pool2d(m, &p));
}

static void dense(aim_model *m, size_t units, aim_activation act) {
    aim_dense_config d;
    CHECK_OK(aim_dense_config_init(&d, units, act));
    CHECK_OK(aim_model_add_dense(m, &d));
}

/* Conv 3x3 same relu, conv 3x3 same, + the block's input, relu. */
static void residual_block(aim_model *m, size_t filters) {
    size_t skip, y;
    CHECK_OK(aim_model_last_node(m, &skip));
    conv(m, filters, AIM_ACT_RELU);
    conv(m, filters, AIM_ACT_IDENTITY);
    CHECK_OK(aim_model_last_node(m, &y));
    const size_t sum[2] = {y, skip};
    CHECK_OK(aim_model_add_add(m, sum, 2));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
}

static aim_model *image_input(void) {
    const size_t dims[3] = {1, 28, 28};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 3, dims, &m));
    return m;
}

/* The seed CNN of examples/cnn_classifier.c. */
static aim_model *seed_cnn(void) {
    aim_model *m = image_input();
    aim_conv2d_config c;
    CHECK_OK(aim_conv2d_config_init(&c, 32, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &c));
    pool2(m);
    CHECK_OK(aim_conv2d_config_init(&c, 64, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &c));
    pool2(m);
    CHECK_OK(aim_model_add_flatten(m));
    dense(m, 64, AIM_ACT_RELU);
    dense(m, 10, AIM_ACT_IDENTITY);
    return m;
}

/* The residual CNN of examples/residual_classifier.c. */
static aim_model *residual_cnn(void) {
    aim_model *m = image_input();
    conv(m, 32, AIM_ACT_RELU);
    pool2(m);
    residual_block(m, 32);
    residual_block(m, 32);
    pool2(m);
    conv(m, 64, AIM_ACT_RELU);
    residual_block(m, 64);
    CHECK_OK(aim_model_add_global_avg_pool2d(m));
    dense(m, 10, AIM_ACT_IDENTITY);
    return m;
}

static void compile_at(aim_model *m, size_t batch) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = batch;
    CHECK_OK(aim_model_compile(m, &cc));
}

/* The largest gradient buffer of the plan, at max_batch B, in floats. */
static size_t largest_grad(const aim_model *m, size_t B) {
    size_t mx = 0;
    for (size_t i = 0; i < aim_model_layer_count(m); i++) {
        size_t rank, dims[AIM_MAX_RANK], n = 1;
        CHECK_OK(aim_model_layer_shape(m, i, &rank, dims));
        for (size_t d = 0; d < rank; d++) n *= dims[d];
        if (B * n > mx) mx = B * n;
    }
    return mx;
}

static void report(const char *name, const aim_model *m, size_t B) {
    aim__plan_stats s;
    aim__model_plan_stats(m, &s);
    printf("%-13s batch %zu: gradients %9zu bytes planned, %9zu naive (%.2f); workspace values %7zu bytes per "
           "sample planned, %7zu naive (%.2f)\n",
           name, B, s.grad_planned * 4, s.grad_naive * 4, (double)s.grad_planned / (double)s.grad_naive,
           s.infer_planned * 4, s.infer_naive * 4, (double)s.infer_planned / (double)s.infer_naive);
    assert_true(s.grad_planned <= s.grad_naive);
    assert_true(s.infer_planned <= s.infer_naive);
}

/* A chain keeps at most two gradients alive at once (the ping-pong a
 * sequential model had), so the plan is at most twice the largest. */
static void test_chain_needs_two_gradient_buffers(void **state) {
    (void)state;
    aim_model *m = seed_cnn();
    compile_at(m, 32);
    report("seed CNN", m, 32);
    aim__plan_stats s;
    aim__model_plan_stats(m, &s);
    assert_true(s.grad_planned <= 2 * largest_grad(m, 32) + 2 * 16);
    assert_true(s.grad_planned < s.grad_naive);
    aim_model_free(m);
}

/* A residual block keeps its input's gradient alive across the block, so
 * in a block three gradients of 32x14x14 live at once (the block input's,
 * the second conv's dY and the dX it writes); the plan must hold them, and
 * still takes far less than one buffer per value. */
static void test_residual_plan_reuses_memory(void **state) {
    (void)state;
    aim_model *m = residual_cnn();
    compile_at(m, 32);
    report("residual CNN", m, 32);
    aim__plan_stats s;
    aim__model_plan_stats(m, &s);
    assert_true(s.grad_planned >= largest_grad(m, 32));
    assert_true(s.grad_planned >= 3 * (size_t)32 * 32 * 14 * 14);
    assert_true(2 * s.grad_planned < s.grad_naive);
    assert_true(s.infer_planned < s.infer_naive);
    aim_model_free(m);
}

/* A residual model, trained one step, gives the same gradients as the same
 * computation written without the graph: y = W2 relu(W1 x) + relu(W1 x),
 * spelled as a chain whose second dense is initialized to W2 + I. */
static void test_residual_equals_its_chain(void **state) {
    (void)state;
    const size_t dims[1] = {5}, B = 3;
    aim_model *g = NULL, *c = NULL;
    CHECK_OK(aim_model_create(NULL, 1, dims, &g));
    CHECK_OK(aim_model_create(NULL, 1, dims, &c));
    dense(g, 5, AIM_ACT_RELU);
    size_t h, y;
    CHECK_OK(aim_model_last_node(g, &h));
    aim_dense_config d;
    CHECK_OK(aim_dense_config_init(&d, 5, AIM_ACT_IDENTITY));
    d.use_bias = 0;
    CHECK_OK(aim_model_add_dense(g, &d));
    CHECK_OK(aim_model_last_node(g, &y));
    const size_t sum[2] = {y, h};
    CHECK_OK(aim_model_add_add(g, sum, 2));
    dense(c, 5, AIM_ACT_RELU);
    CHECK_OK(aim_model_add_dense(c, &d));
    compile_at(g, B);
    compile_at(c, B);
    float *pg, *pc;
    size_t ng, nc;
    CHECK_OK(aim_model_parameters(g, &pg, &ng));
    CHECK_OK(aim_model_parameters(c, &pc, &nc));
    assert_int_equal(ng, nc);
    fill_uniform(pg, ng, 7, -0.5f, 0.5f);
    memcpy(pc, pg, ng * sizeof *pg);
    for (size_t i = 0; i < 5; i++) pc[30 + i * 5 + i] += 1.0f; /* W2 + I after W1 (25) and b1 (5) */
    float x[15], t[15];
    fill_uniform(x, 15, 8, -1.0f, 1.0f);
    fill_uniform(t, 15, 9, -1.0f, 1.0f);
    float lg, lc;
    CHECK_OK(aim_model_zero_grad(g));
    CHECK_OK(aim_model_zero_grad(c));
    CHECK_OK(aim_model_forward(g, AIM_MODE_TRAIN, x, 15, B));
    CHECK_OK(aim_model_forward(c, AIM_MODE_TRAIN, x, 15, B));
    CHECK_OK(aim_model_loss(g, 0, AIM_LOSS_MSE, t, 15, &lg));
    CHECK_OK(aim_model_loss(c, 0, AIM_LOSS_MSE, t, 15, &lc));
    assert_true(max_rel_error(&lg, &lc, 1, 1e-6, NULL) < 1e-5);
    CHECK_OK(aim_model_backward(g, NULL, 0));
    CHECK_OK(aim_model_backward(c, NULL, 0));
    float *gg, *gc;
    CHECK_OK(aim_model_gradients(g, &gg, &ng));
    CHECK_OK(aim_model_gradients(c, &gc, &nc));
    /* dL/dW1 and db1 agree; dW2 is the same in both (the identity is constant). */
    const double err = max_rel_error(gg, gc, ng, 1e-6, NULL);
    printf("residual vs chain: worst gradient rel error %.2e\n", err);
    assert_true(err < 1e-5);
    aim_model_free(g);
    aim_model_free(c);
}

/* A layer whose output is read by nobody and is not an output is refused at
 * compile, naming it; naming it an output makes the same graph compile. */
static void test_dangling_layer_is_named(void **state) {
    (void)state;
    const size_t dims[1] = {4};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));
    dense(m, 3, AIM_ACT_TANH);                        /* layer 0 */
    dense(m, 2, AIM_ACT_IDENTITY);                    /* layer 1: dangling once we branch */
    CHECK_OK(aim_model_continue_from(m, 0));
    dense(m, 2, AIM_ACT_IDENTITY);                    /* layer 2 */
    assert_int_equal(aim_model_compile(m, NULL), AIM_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(aim_model_last_error(m), "layer 1 (dense)"));
    const size_t outs[2] = {2, 1};
    CHECK_OK(aim_model_set_outputs(m, outs, NULL, 2));
    CHECK_OK(aim_model_compile(m, NULL));
    assert_int_equal(aim_model_output_count(m), 2);
    size_t node;
    CHECK_OK(aim_model_output_node(m, 1, &node));
    assert_int_equal(node, 1);
    aim_model_free(m);
}

/* Graph mistakes are told in the caller's terms: node ids as "layer N" or
 * "model input K", and both shapes of a refused sum. */
static void test_graph_messages_name_nodes(void **state) {
    (void)state;
    const size_t dims[1] = {6};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));
    assert_int_equal(aim_model_continue_from(m, AIM_MODEL_INPUT(1)), AIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(aim_model_last_error(m), "model input 1 does not exist"));
    dense(m, 4, AIM_ACT_RELU); /* layer 0 */
    const size_t sum[2] = {0, AIM_MODEL_INPUT(0)};
    assert_int_equal(aim_model_add_add(m, sum, 2), AIM_ERR_SHAPE_MISMATCH);
    const char *e = aim_model_last_error(m);
    assert_non_null(strstr(e, "layer 1 (add)"));
    assert_non_null(strstr(e, "model input 0 (argument 1) gives (6)"));
    assert_non_null(strstr(e, "layer 0 (argument 0) (4)"));
    const size_t bad[2] = {0, 7};
    assert_int_equal(aim_model_add_add(m, bad, 2), AIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(aim_model_last_error(m), "argument 1 names layer 7"));
    const size_t out[1] = {AIM_MODEL_INPUT(0)};
    assert_int_equal(aim_model_set_outputs(m, out, NULL, 1), AIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(aim_model_last_error(m), "names model input 0"));
    aim_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_needs_two_gradient_buffers),
        cmocka_unit_test(test_residual_plan_reuses_memory),
        cmocka_unit_test(test_residual_equals_its_chain),
        cmocka_unit_test(test_dangling_layer_is_named),
        cmocka_unit_test(test_graph_messages_name_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
