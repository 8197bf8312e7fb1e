/* Golden-value tests of the LSTM layer stack (src/layers/lstm.c): libaimodel against
 * PyTorch 1.13's nn.LSTM.
 *
 * The references live in golden/golden_lstm.h, written by
 * golden/gen_golden_lstm.py (run it with /usr/bin/python3 to regenerate),
 * which follows golden/gen_golden.py: inputs are float32 values, references
 * were computed in float64 and rounded to float32, so the error measured here
 * is the library's own float32 error.
 *
 * Cases: (a) a 2-layer nn.LSTM(4, 6, batch_first=True) on X [3, 5, 4], from
 * zero initial states and from given (h0, c0) (aim_model_lstm_set_state()):
 * the output sequence, the final states h_n and c_n
 * (aim_model_lstm_final_state()), and the gradients of sum(Y * G) with respect
 * to each of the eight parameter tensors and to X; the parameters are copied
 * in nn.LSTM's order, so this also checks that the flat layout is PyTorch's.
 * (b) a small seed LSTM classifier (T 7 x F 5 -> 2-layer LSTM 8 -> last step ->
 * Dense 10) trained 3 steps with Adam on sparse cross-entropy: the losses, the
 * final parameters and their updates.
 *
 * Tolerances and metric are test_golden.c's: |got - ref| / max(|ref|, floor)
 * with the floor 1% of the largest |ref| of the array; at most 1e-5 for
 * forward values, states and losses, 1e-4 for gradients and parameters, and
 * 1e-3 with a 10% floor for the updates (final - initial), which three steps
 * of lr 1e-3 keep at ~1% of the parameters (test_golden_conv.c's rule).
 * gen_golden_lstm.py --check prints how far a float32 PyTorch run lands under
 * the same metrics: at most 3.9e-6 for values and states, 1.2e-5 for
 * gradients, 1.4e-6 for parameters and 1.3e-4 for updates; the test prints the
 * worst of each kind it measures.
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
#include "golden/golden_lstm.h"

#define TOL_FORWARD 1e-5
#define TOL_GRAD 1e-4
#define TOL_TRAJ 1e-4
#define TOL_UPDATE 1e-3
#define FLOOR_FRAC 1e-2
#define UPDATE_FLOOR_FRAC 0.1
#define WHAT_WIDTH 34 /* of the printed names */

/* What a comparison measures; each kind has its tolerance and floor. The
 * metric is golden_rel_error() (tests/support.h), described at the top of
 * test_golden.c; an all-zero reference fails, so a comparison never passes
 * vacuously. golden_expect() keeps the worst error of each kind over the
 * whole run, printed at the end. */
typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_PARAMS, CMP_UPDATE, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward/state", TOL_FORWARD, FLOOR_FRAC, 0.0},
    {"gradient", TOL_GRAD, FLOOR_FRAC, 0.0},
    {"parameters", TOL_TRAJ, FLOOR_FRAC, 0.0},
    {"update", TOL_UPDATE, UPDATE_FLOOR_FRAC, 0.0},
};

/* Compares `n` values, prints the measured error, asserts it is within the kind's tolerance. */
static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

/* T x F sequences -> `layers` stacked LSTM layers of `hidden` units. */
static aim_model *lstm_model(size_t T, size_t F, size_t hidden, size_t layers, int32_t return_sequences) {
    const size_t dims[2] = {T, F};
    aim_model *m = NULL;
    aim_lstm_config lc;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_lstm_config_init(&lc, hidden, layers));
    lc.return_sequences = return_sequences;
    CHECK_OK(aim_model_add_lstm(m, &lc));
    return m;
}

static void compile_for(aim_model *m, size_t batch) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = batch;
    cc.input_gradient = 1;
    CHECK_OK(aim_model_compile(m, &cc));
}

/* The four tensors of each stacked layer, in nn.LSTM's (and the flat buffer's) order. */
static const char *const TENSOR_NAMES[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

/* Sizes of the 4 tensors of sub-layer l of an LSTM with input F and hidden H. */
static void tensor_sizes(size_t F, size_t H, size_t l, size_t sizes[4]) {
    const size_t in = l == 0 ? F : H;
    sizes[0] = 4 * H * in;
    sizes[1] = 4 * H * H;
    sizes[2] = sizes[3] = 4 * H;
}

/* Compares a flat LSTM parameter-shaped buffer tensor by tensor, so each
 * tensor is judged on its own scale and a failure names it. Returns the
 * number of floats compared. */
static size_t expect_lstm_tensors(const char *prefix, const float *got, const float *ref, size_t F, size_t H,
                                  size_t layers, cmp_kind kind) {
    size_t off = 0;
    for (size_t l = 0; l < layers; l++) {
        size_t sizes[4];
        tensor_sizes(F, H, l, sizes);
        for (size_t k = 0; k < 4; k++) {
            char what[64];
            snprintf(what, sizeof what, "%s %s_l%zu", prefix, TENSOR_NAMES[k], l);
            expect_close(what, got + off, ref + off, sizes[k], kind);
            off += sizes[k];
        }
    }
    return off;
}

/* ------------------------------------------------------------------ a) nn.LSTM */

enum {
    A_B = GOLDEN_LSTM_BATCH,
    A_T = GOLDEN_LSTM_T,
    A_F = GOLDEN_LSTM_F,
    A_H = GOLDEN_LSTM_H,
    A_L = GOLDEN_LSTM_LAYERS,
    A_NY = A_B * A_T * A_H,
    A_NX = A_B * A_T * A_F,
    A_NS = A_L * A_B * A_H
};

struct lstm_case {
    const char *name;
    int with_state;
    const float *y, *hn, *cn, *dparams, *dx;
};

static const struct lstm_case lstm_cases[] = {
    {"zero", 0, golden_lstm_zero_y, golden_lstm_zero_hn, golden_lstm_zero_cn, golden_lstm_zero_dparams,
     golden_lstm_zero_dx},
    {"state", 1, golden_lstm_state_y, golden_lstm_state_hn, golden_lstm_state_cn, golden_lstm_state_dparams,
     golden_lstm_state_dx},
};

static void test_lstm(void **state) {
    const struct lstm_case *c = *state;
    aim_model *m = lstm_model(A_T, A_F, A_H, A_L, 1);
    size_t rank = 0, dims[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, 0, &rank, dims));
    assert_true(rank == 2 && dims[0] == A_T && dims[1] == A_H);
    compile_for(m, A_B);

    /* One layer entry covers the whole stack, weights only (see aim_model_layer_parameters). */
    size_t offset = 99, wc = 0, bc = 99;
    CHECK_OK(aim_model_layer_parameters(m, 0, &offset, &wc, &bc));
    assert_int_equal(offset, 0);
    assert_int_equal(wc, GOLDEN_LSTM_PARAMS);
    assert_int_equal(bc, 0);
    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, GOLDEN_LSTM_PARAMS);
    memcpy(params, golden_lstm_params, sizeof golden_lstm_params); /* nn.LSTM's order */
    if (c->with_state) CHECK_OK(aim_model_lstm_set_state(m, 0, golden_lstm_h0, ARRAY_LEN(golden_lstm_h0), golden_lstm_c0, ARRAY_LEN(golden_lstm_c0), A_B));

    const float *y = NULL;
    size_t ycount = 0;
    /* Inference keeps one cell row per sample and no cache: it must agree too. */
    CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, golden_lstm_x, ARRAY_LEN(golden_lstm_x), A_B));
    CHECK_OK(aim_model_output(m, 0, &y, &ycount));
    assert_int_equal(ycount, A_NY);
    expect_close("Y (inference)", y, c->y, A_NY, CMP_FORWARD);

    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_lstm_x, ARRAY_LEN(golden_lstm_x), A_B));
    CHECK_OK(aim_model_output(m, 0, &y, &ycount));
    expect_close("Y", y, c->y, A_NY, CMP_FORWARD);
    float hn[A_NS], cn[A_NS];
    CHECK_OK(aim_model_lstm_final_state(m, 0, hn, ARRAY_LEN(hn), cn, ARRAY_LEN(cn), A_B));
    expect_close("h_n", hn, c->hn, A_NS, CMP_FORWARD);
    expect_close("c_n", cn, c->cn, A_NS, CMP_FORWARD);

    CHECK_OK(aim_model_backward(m, golden_lstm_g, ARRAY_LEN(golden_lstm_g)));
    float *grads = NULL;
    size_t gcount = 0;
    CHECK_OK(aim_model_gradients(m, &grads, &gcount));
    assert_int_equal(gcount, count);
    assert_int_equal(expect_lstm_tensors("d", grads, c->dparams, A_F, A_H, A_L, CMP_GRAD), count);
    const float *dx = NULL;
    size_t dxcount = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &dxcount));
    assert_int_equal(dxcount, A_NX);
    expect_close("dX", dx, c->dx, A_NX, CMP_GRAD);

    /* The final states after the backward are still those of the forward. */
    float hn2[A_NS], cn2[A_NS];
    CHECK_OK(aim_model_lstm_final_state(m, 0, hn2, ARRAY_LEN(hn2), cn2, ARRAY_LEN(cn2), A_B));
    assert_memory_equal(hn2, hn, sizeof hn);
    assert_memory_equal(cn2, cn, sizeof cn);

    /* predict always starts from zero states: with or without a state set,
     * it gives PyTorch's zero-state output. */
    aim_workspace *ws = NULL;
    float out[A_NY];
    CHECK_OK(aim_workspace_create(m, NULL, A_B, &ws));
    CHECK_OK(aim_model_predict(m, ws, golden_lstm_x, ARRAY_LEN(golden_lstm_x), A_B, out, ARRAY_LEN(out)));
    expect_close("Y (predict, zero states)", out, golden_lstm_zero_y, A_NY, CMP_FORWARD);
    aim_workspace_free(ws);
    aim_model_free(m);
}

/* The same stack with return_sequences = 0 outputs PyTorch's last step,
 * y[:, T-1, :], from either initial state. */
static void test_lstm_last_step(void **state) {
    (void)state;
    for (size_t k = 0; k < ARRAY_LEN(lstm_cases); k++) {
        const struct lstm_case *c = &lstm_cases[k];
        aim_model *m = lstm_model(A_T, A_F, A_H, A_L, 0);
        assert_int_equal(aim_model_output_size(m), A_H);
        compile_for(m, A_B);
        float *params = NULL;
        size_t count = 0;
        CHECK_OK(aim_model_parameters(m, &params, &count));
        assert_int_equal(count, GOLDEN_LSTM_PARAMS);
        memcpy(params, golden_lstm_params, sizeof golden_lstm_params);
        if (c->with_state) CHECK_OK(aim_model_lstm_set_state(m, 0, golden_lstm_h0, ARRAY_LEN(golden_lstm_h0), golden_lstm_c0, ARRAY_LEN(golden_lstm_c0), A_B));
        float ref[A_B * A_H];
        for (size_t b = 0; b < A_B; b++)
            memcpy(ref + b * A_H, c->y + (b * A_T + A_T - 1) * A_H, A_H * sizeof(float));
        const float *y = NULL;
        size_t ycount = 0;
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_lstm_x, ARRAY_LEN(golden_lstm_x), A_B));
        CHECK_OK(aim_model_output(m, 0, &y, &ycount));
        assert_int_equal(ycount, A_B * A_H);
        char what[64];
        snprintf(what, sizeof what, "last step (%s)", c->name);
        expect_close(what, y, ref, A_B * A_H, CMP_FORWARD);
        /* ... which is h_n of the top layer, exactly. */
        float hn[A_NS];
        CHECK_OK(aim_model_lstm_final_state(m, 0, hn, ARRAY_LEN(hn), NULL, 0, A_B));
        assert_memory_equal(hn + (A_L - 1) * A_B * A_H, y, A_B * A_H * sizeof(float));
        aim_model_free(m);
    }
}

/* ------------------------------------------------------------------ b) classifier */

enum {
    C_B = GOLDEN_LSTMC_BATCH,
    C_T = GOLDEN_LSTMC_T,
    C_F = GOLDEN_LSTMC_F,
    C_H = GOLDEN_LSTMC_H,
    C_L = GOLDEN_LSTMC_LAYERS,
    C_K = GOLDEN_LSTMC_CLASSES,
    C_P = GOLDEN_LSTMC_PARAMS
};

static int skipped(size_t i) {
    for (size_t k = 0; golden_lstmc_skip[k] >= 0; k++)
        if ((size_t)golden_lstmc_skip[k] == i) return 1;
    return 0;
}

/* Compares final values of [off, off + n) and their updates (less the
 * rounding-decided ones). */
static void expect_tensor_trained(const char *name, const float *params, size_t off, size_t n) {
    float *dgot = malloc(n * sizeof *dgot), *dref = malloc(n * sizeof *dref);
    assert_true(dgot && dref);
    size_t k = 0;
    for (size_t i = off; i < off + n; i++) {
        if (skipped(i)) continue;
        dgot[k] = params[i] - golden_lstmc_params0[i];
        dref[k] = golden_lstmc_params_final[i] - golden_lstmc_params0[i];
        k++;
    }
    char what[64];
    snprintf(what, sizeof what, "final %s", name);
    expect_close(what, params + off, golden_lstmc_params_final + off, n, CMP_PARAMS);
    snprintf(what, sizeof what, "update %s (%zu values)", name, k);
    expect_close(what, dgot, dref, k, CMP_UPDATE);
    free(dgot);
    free(dref);
}

static void test_classifier_adam(void **state) {
    (void)state;
    aim_model *m = lstm_model(C_T, C_F, C_H, C_L, 0);
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, C_K, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = C_B;
    CHECK_OK(aim_model_compile(m, &cc));
    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, C_P);
    size_t off = 0, wc = 0, bc = 0;
    CHECK_OK(aim_model_layer_parameters(m, 1, &off, &wc, &bc));
    assert_int_equal(wc, C_K * C_H);
    assert_int_equal(bc, C_K);
    assert_int_equal(off + wc + bc, C_P); /* LSTM first, then dense W, b */
    memcpy(params, golden_lstmc_params0, sizeof golden_lstmc_params0);

    aim_adam_config ac;
    CHECK_OK(aim_adam_config_init(&ac));
    assert_true(ac.beta1 == 0.9f && ac.beta2 == 0.999f && ac.epsilon == 1e-8f); /* PyTorch's defaults */
    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, &ac, count, &opt));
    float losses[GOLDEN_LSTMC_STEPS];
    for (size_t t = 0; t < GOLDEN_LSTMC_STEPS; t++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_lstmc_x, ARRAY_LEN(golden_lstmc_x), C_B));
        CHECK_OK(aim_model_loss_sparse(m, 0, golden_lstmc_labels, ARRAY_LEN(golden_lstmc_labels), &losses[t]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(opt, m, GOLDEN_LSTMC_LR));
    }
    expect_close("loss of each step", losses, golden_lstmc_losses, GOLDEN_LSTMC_STEPS, CMP_FORWARD);

    size_t at = 0;
    for (size_t l = 0; l < C_L; l++) {
        size_t sizes[4];
        tensor_sizes(C_F, C_H, l, sizes);
        for (size_t k = 0; k < 4; k++) {
            char name[32];
            snprintf(name, sizeof name, "%s_l%zu", TENSOR_NAMES[k], l);
            expect_tensor_trained(name, params, at, sizes[k]);
            at += sizes[k];
        }
    }
    assert_int_equal(at, off);
    expect_tensor_trained("dense W", params, off, wc);
    expect_tensor_trained("dense b", params, off + wc, bc);
    /* Every listed index names a parameter. */
    for (size_t k = 0; golden_lstmc_skip[k] >= 0; k++) assert_true((size_t)golden_lstmc_skip[k] < C_P);

    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ main */

static int print_worst(void **state) {
    (void)state;
    golden_print_worst(CMP, CMP_KINDS);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        {"lstm_2_layers_zero_state", test_lstm, NULL, NULL, (void *)&lstm_cases[0]},
        {"lstm_2_layers_given_state", test_lstm, NULL, NULL, (void *)&lstm_cases[1]},
        cmocka_unit_test(test_lstm_last_step),
        cmocka_unit_test(test_classifier_adam),
    };
    return cmocka_run_group_tests(tests, NULL, print_worst);
}
