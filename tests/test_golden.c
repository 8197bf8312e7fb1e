/* Golden-value tests: libaimodel against PyTorch 1.13.
 *
 * The reference values live in golden/golden_data.h, written by
 * golden/gen_golden.py (run it with /usr/bin/python3 to regenerate). Every
 * input there is a float32 value, so the library sees exactly what PyTorch
 * saw; every reference was computed in float64 and rounded to float32, so the
 * error measured here is the library's own float32 error.
 *
 * Cases: (a) one dense layer with each fused activation, forward and
 * gradients; (b) the losses and their gradients; (c) SGD / Adam / AdamW
 * trajectories of 20 steps; (d) a small MLP trained 3 steps with Adam.
 *
 * Tolerances. Relative error |got - ref| / max(|ref|, floor) must be at most
 * 1e-5 for forward values and losses, and 1e-4 for gradients and parameter
 * trajectories. The floor is FLOOR_FRAC (1e-2) times the largest |ref| of the
 * array compared: an element near zero is the difference of larger float32
 * terms, so its rounding error scales with those terms, not with itself, and a
 * purely relative test there would measure cancellation, not correctness. So an
 * element is judged relative to itself when it is at least 1% of the array's
 * scale and relative to 1% of that scale otherwise. With this metric a float32
 * PyTorch run lands within 7.4e-7 (forward) and 6e-6 (gradients, trajectories)
 * of these references (gen_golden.py --check prints the figures), one to two
 * orders of magnitude inside the tolerances, while any wrong formula (a
 * missing factor, a wrong derivative, PyTorch's dampening or epsilon placement
 * done differently) gives errors of 1e-3 or more.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"
#include "golden/golden_data.h"

#define TOL_FORWARD 1e-5
#define TOL_GRAD 1e-4
#define TOL_TRAJ 1e-4
#define TOL_UPDATE 1e-3
#define FLOOR_FRAC 1e-2
#define UPDATE_FLOOR_FRAC 0.1
#define WHAT_WIDTH 28 /* of the printed names */

/* What a comparison measures; each kind has its tolerance and floor. The
 * metric is golden_rel_error() (tests/support.h), described at the top of the
 * file; an all-zero reference fails, so a comparison never passes vacuously. */
typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_TRAJ, CMP_UPDATE, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward/loss", TOL_FORWARD, FLOOR_FRAC, 0.0},
    {"gradient", TOL_GRAD, FLOOR_FRAC, 0.0},
    {"trajectory", TOL_TRAJ, FLOOR_FRAC, 0.0},
    {"update", TOL_UPDATE, UPDATE_FLOOR_FRAC, 0.0},
};

/* Compares `n` values, prints the measured error, asserts it is within the kind's tolerance. */
static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

/* ------------------------------------------------------------------ a) dense */

enum { DENSE_WEIGHTS = GOLDEN_DENSE_OUT * GOLDEN_DENSE_IN };

struct dense_case {
    aim_activation act;
    const float *y, *dw, *db, *dx;
};

static struct dense_case dense_cases[] = {
    {AIM_ACT_IDENTITY, golden_dense_identity_y, golden_dense_identity_dw, golden_dense_identity_db,
     golden_dense_identity_dx},
    {AIM_ACT_RELU, golden_dense_relu_y, golden_dense_relu_dw, golden_dense_relu_db, golden_dense_relu_dx},
    {AIM_ACT_LEAKY_RELU, golden_dense_leaky_relu_y, golden_dense_leaky_relu_dw, golden_dense_leaky_relu_db,
     golden_dense_leaky_relu_dx},
    {AIM_ACT_SIGMOID, golden_dense_sigmoid_y, golden_dense_sigmoid_dw, golden_dense_sigmoid_db,
     golden_dense_sigmoid_dx},
    {AIM_ACT_TANH, golden_dense_tanh_y, golden_dense_tanh_dw, golden_dense_tanh_db, golden_dense_tanh_dx},
    {AIM_ACT_SOFTMAX, golden_dense_softmax_y, golden_dense_softmax_dw, golden_dense_softmax_db,
     golden_dense_softmax_dx},
    {AIM_ACT_GELU, golden_dense_gelu_y, golden_dense_gelu_dw, golden_dense_gelu_db, golden_dense_gelu_dx},
};

/* One dense layer with PyTorch's weights: Y = act(X Wᵀ + b), then backward of
 * sum(Y * G), i.e. with G as the output gradient. */
static void test_dense(void **state) {
    const struct dense_case *c = *state;
    const size_t dims[1] = {GOLDEN_DENSE_IN};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));

    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, GOLDEN_DENSE_OUT, c->act));
    dc.alpha = GOLDEN_DENSE_LEAKY_SLOPE; /* used by leaky relu only */
    CHECK_OK(aim_model_add_dense(m, &dc));

    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = GOLDEN_DENSE_BATCH;
    cc.input_gradient = 1;
    CHECK_OK(aim_model_compile(m, &cc));

    /* The documented layout: W [units, inputs] row-major, then b. */
    size_t offset = 99, wcount = 0, bcount = 0;
    CHECK_OK(aim_model_layer_parameters(m, 0, &offset, &wcount, &bcount));
    assert_int_equal(offset, 0);
    assert_int_equal(wcount, DENSE_WEIGHTS);
    assert_int_equal(bcount, GOLDEN_DENSE_OUT);

    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, DENSE_WEIGHTS + GOLDEN_DENSE_OUT);
    memcpy(params, golden_dense_w, sizeof golden_dense_w);
    memcpy(params + DENSE_WEIGHTS, golden_dense_b, sizeof golden_dense_b);

    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_dense_x, ARRAY_LEN(golden_dense_x), GOLDEN_DENSE_BATCH));
    const float *y = NULL;
    size_t ycount = 0;
    CHECK_OK(aim_model_output(m, 0, &y, &ycount));
    assert_int_equal(ycount, GOLDEN_DENSE_BATCH * GOLDEN_DENSE_OUT);
    expect_close("Y", y, c->y, ycount, CMP_FORWARD);

    CHECK_OK(aim_model_backward(m, golden_dense_g, ARRAY_LEN(golden_dense_g)));
    float *grads = NULL;
    size_t gcount = 0;
    CHECK_OK(aim_model_gradients(m, &grads, &gcount));
    assert_int_equal(gcount, count);
    expect_close("dW", grads, c->dw, DENSE_WEIGHTS, CMP_GRAD);
    expect_close("db", grads + DENSE_WEIGHTS, c->db, GOLDEN_DENSE_OUT, CMP_GRAD);

    const float *dx = NULL;
    size_t dxcount = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &dxcount));
    assert_int_equal(dxcount, GOLDEN_DENSE_BATCH * GOLDEN_DENSE_IN);
    expect_close("dX", dx, c->dx, GOLDEN_DENSE_BATCH * GOLDEN_DENSE_IN, CMP_GRAD);

    aim_model_free(m);
}

/* ------------------------------------------------------------------ b) losses */

enum { LOSS_N = GOLDEN_LOSS_BATCH * GOLDEN_LOSS_FEATURES };

struct loss_case {
    aim_loss_kind kind;
    const float *pred;
    const float *target;   /* float targets, or NULL for ... */
    const int32_t *labels; /* ... class labels (aim_loss_sparse) */
    const float *loss, *grad;
};

static struct loss_case loss_cases[] = {
    {AIM_LOSS_MSE, golden_loss_mse_pred, golden_loss_mse_target, NULL, golden_loss_mse_loss,
     golden_loss_mse_grad},
    {AIM_LOSS_BCE, golden_loss_bce_pred, golden_loss_bce_target, NULL, golden_loss_bce_loss,
     golden_loss_bce_grad},
    {AIM_LOSS_BCE_WITH_LOGITS, golden_loss_bce_logits_pred, golden_loss_bce_logits_target, NULL,
     golden_loss_bce_logits_loss, golden_loss_bce_logits_grad},
    {AIM_LOSS_SOFTMAX_CROSS_ENTROPY, golden_loss_ce_soft_pred, golden_loss_ce_soft_target, NULL,
     golden_loss_ce_soft_loss, golden_loss_ce_soft_grad},
    {AIM_LOSS_SOFTMAX_CROSS_ENTROPY, golden_loss_ce_sparse_pred, NULL, golden_loss_ce_sparse_labels,
     golden_loss_ce_sparse_loss, golden_loss_ce_sparse_grad},
};

static void test_loss(void **state) {
    const struct loss_case *c = *state;
    float loss = NAN, grad[LOSS_N];
    for (size_t i = 0; i < LOSS_N; i++) grad[i] = NAN;
    if (c->labels)
        CHECK_OK(aim_loss_sparse(c->pred, c->labels, GOLDEN_LOSS_BATCH, GOLDEN_LOSS_FEATURES, &loss, grad));
    else
        CHECK_OK(aim_loss(c->kind, c->pred, c->target, GOLDEN_LOSS_BATCH, GOLDEN_LOSS_FEATURES, &loss, grad));
    expect_close("loss", &loss, c->loss, 1, CMP_FORWARD);
    expect_close("d loss / d pred", grad, c->grad, LOSS_N, CMP_GRAD);
}

/* ------------------------------------------------------------------ c) optimizers */

enum { OPT_N = GOLDEN_OPT_PARAMS, OPT_STEPS = GOLDEN_OPT_STEPS };

/* The same hyper-parameters as OPT_CASES in gen_golden.py. */
struct opt_case {
    int adam; /* 0: aim_sgd_create, 1: aim_adam_create */
    float momentum, dampening, weight_decay;
    int32_t nesterov, decoupled;
    const float *lr, *traj;
};

static struct opt_case opt_cases[] = {
    {0, 0.0f, 0.0f, 0.0f, 0, 0, golden_opt_sgd_lr, golden_opt_sgd_traj},
    {0, 0.9f, 0.0f, 0.0f, 0, 0, golden_opt_sgd_momentum_lr, golden_opt_sgd_momentum_traj},
    {0, 0.9f, 0.1f, 0.0f, 0, 0, golden_opt_sgd_dampening_lr, golden_opt_sgd_dampening_traj},
    {0, 0.9f, 0.0f, 0.0f, 1, 0, golden_opt_sgd_nesterov_lr, golden_opt_sgd_nesterov_traj},
    {0, 0.9f, 0.0f, 0.01f, 0, 0, golden_opt_sgd_weight_decay_lr, golden_opt_sgd_weight_decay_traj},
    {1, 0.0f, 0.0f, 0.0f, 0, 0, golden_opt_adam_lr, golden_opt_adam_traj},
    {1, 0.0f, 0.0f, 0.01f, 0, 0, golden_opt_adam_l2_lr, golden_opt_adam_l2_traj},
    {1, 0.0f, 0.0f, 0.01f, 0, 1, golden_opt_adamw_lr, golden_opt_adamw_traj},
};

static void test_optimizer(void **state) {
    const struct opt_case *c = *state;
    aim_optimizer *opt = NULL;
    if (c->adam) {
        aim_adam_config ac;
        CHECK_OK(aim_adam_config_init(&ac));
        /* The references use PyTorch's defaults; say so if ours differ. */
        assert_true(ac.beta1 == 0.9f && ac.beta2 == 0.999f && ac.epsilon == 1e-8f);
        ac.weight_decay = c->weight_decay;
        ac.decoupled = c->decoupled;
        CHECK_OK(aim_adam_create(NULL, &ac, OPT_N, &opt));
    } else {
        aim_sgd_config sc;
        CHECK_OK(aim_sgd_config_init(&sc));
        sc.momentum = c->momentum;
        sc.dampening = c->dampening;
        sc.weight_decay = c->weight_decay;
        sc.nesterov = c->nesterov;
        CHECK_OK(aim_sgd_create(NULL, &sc, OPT_N, &opt));
    }

    /* The whole trajectory is one array for the metric's scale; the worst step
     * is reported (an all-zero reference gives an infinite error). */
    float p[OPT_N], traj[OPT_STEPS * OPT_N];
    memcpy(p, golden_opt_p0, sizeof p);
    for (size_t t = 0; t < OPT_STEPS; t++) {
        CHECK_OK(aim_optimizer_step(opt, p, golden_opt_grads + t * OPT_N, OPT_N, c->lr[t]));
        memcpy(traj + t * OPT_N, p, sizeof p);
    }
    assert_int_equal(aim_optimizer_steps(opt), OPT_STEPS);
    size_t where = 0;
    double err = golden_rel_error(traj, c->traj, ARRAY_LEN(traj), CMP[CMP_TRAJ].floor_frac, &where);
    print_message("    %-*s max rel err %.3g (tolerance %.0e)\n", WHAT_WIDTH, "trajectory", err, TOL_TRAJ);
    if (!(err <= TOL_TRAJ))
        print_error("step %zu parameter %zu is %.9g, PyTorch gives %.9g\n", where / OPT_N + 1, where % OPT_N,
                    (double)traj[where], (double)c->traj[where]);
    assert_true(err <= TOL_TRAJ);
    aim_optimizer_free(opt);
}

/* ------------------------------------------------------------------ d) MLP */

/* 12 -> Dense 8 relu -> Dense 8 tanh -> Dense 4, softmax cross-entropy on
 * class labels, 3 Adam steps from PyTorch's initial weights. */
static void test_mlp_adam(void **state) {
    (void)state;
    const size_t dims[1] = {GOLDEN_MLP_IN};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));
    const struct {
        size_t units;
        aim_activation act;
    } layers[] = {{GOLDEN_MLP_HIDDEN1, AIM_ACT_RELU}, {GOLDEN_MLP_HIDDEN2, AIM_ACT_TANH},
                  {GOLDEN_MLP_OUT, AIM_ACT_IDENTITY}};
    for (size_t i = 0; i < ARRAY_LEN(layers); i++) {
        aim_dense_config dc;
        CHECK_OK(aim_dense_config_init(&dc, layers[i].units, layers[i].act));
        CHECK_OK(aim_model_add_dense(m, &dc));
    }
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = GOLDEN_MLP_BATCH;
    CHECK_OK(aim_model_compile(m, &cc));

    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, GOLDEN_MLP_PARAMS);
    memcpy(params, golden_mlp_params0, sizeof golden_mlp_params0);

    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, count, &opt));
    float losses[GOLDEN_MLP_STEPS];
    for (size_t t = 0; t < GOLDEN_MLP_STEPS; t++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_mlp_x, ARRAY_LEN(golden_mlp_x), GOLDEN_MLP_BATCH));
        CHECK_OK(aim_model_loss_sparse(m, 0, golden_mlp_labels, ARRAY_LEN(golden_mlp_labels), &losses[t]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(opt, m, GOLDEN_MLP_LR));
    }
    expect_close("loss of each step", losses, golden_mlp_losses, GOLDEN_MLP_STEPS, CMP_FORWARD);
    expect_close("final parameters", params, golden_mlp_params_final, count, CMP_TRAJ);

    /* Three steps of lr 1e-3 move each parameter by at most ~3e-3, about 1% of
     * its value, so the check above tests the update itself only to ~1%. Compare
     * the update (final - initial) too. Its error is dominated by the rounding of
     * the parameters (~1 ulp of values up to 0.35, i.e. ~3e-8, per step), which
     * is up to 1e-5 of the largest updates and more of the smallest: hence a
     * tolerance of 1e-3 with a floor of 10% of the largest update (allowing
     * ~3e-7, about 10 ulp, on updates near zero). */
    float delta[GOLDEN_MLP_PARAMS], ref_delta[GOLDEN_MLP_PARAMS];
    for (size_t i = 0; i < GOLDEN_MLP_PARAMS; i++) {
        delta[i] = params[i] - golden_mlp_params0[i];
        ref_delta[i] = golden_mlp_params_final[i] - golden_mlp_params0[i];
    }
    expect_close("update (final - initial)", delta, ref_delta, GOLDEN_MLP_PARAMS, CMP_UPDATE);

    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ main */

#define CASE(name, fn, table, i) {name, fn, NULL, NULL, &table[i]}

int main(void) {
    const struct CMUnitTest tests[] = {
        CASE("dense_identity", test_dense, dense_cases, 0),
        CASE("dense_relu", test_dense, dense_cases, 1),
        CASE("dense_leaky_relu", test_dense, dense_cases, 2),
        CASE("dense_sigmoid", test_dense, dense_cases, 3),
        CASE("dense_tanh", test_dense, dense_cases, 4),
        CASE("dense_softmax", test_dense, dense_cases, 5),
        CASE("dense_gelu", test_dense, dense_cases, 6),
        CASE("loss_mse", test_loss, loss_cases, 0),
        CASE("loss_bce", test_loss, loss_cases, 1),
        CASE("loss_bce_with_logits", test_loss, loss_cases, 2),
        CASE("loss_cross_entropy_soft_targets", test_loss, loss_cases, 3),
        CASE("loss_cross_entropy_class_labels", test_loss, loss_cases, 4),
        CASE("sgd", test_optimizer, opt_cases, 0),
        CASE("sgd_momentum_varying_lr", test_optimizer, opt_cases, 1),
        CASE("sgd_momentum_dampening", test_optimizer, opt_cases, 2),
        CASE("sgd_nesterov", test_optimizer, opt_cases, 3),
        CASE("sgd_momentum_weight_decay", test_optimizer, opt_cases, 4),
        CASE("adam", test_optimizer, opt_cases, 5),
        CASE("adam_l2_weight_decay", test_optimizer, opt_cases, 6),
        CASE("adamw_varying_lr", test_optimizer, opt_cases, 7),
        cmocka_unit_test(test_mlp_adam),
    };
    _Static_assert(ARRAY_LEN(dense_cases) == 7 && ARRAY_LEN(loss_cases) == 5 && ARRAY_LEN(opt_cases) == 8,
                   "every case of the tables is listed in main");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
