/* Golden-value tests of graph models: libaimodel's branches, residual
 * additions, concatenations, several outputs with weighted losses and several
 * inputs, against PyTorch 1.13.
 *
 * The references live in golden/golden_graph.h, written by
 * golden/gen_golden_graph.py (run it with /usr/bin/python3 to regenerate),
 * which follows golden/gen_golden.py: inputs are float32 values, references
 * were computed in float64 and rounded to float32, so the error measured here
 * is the library's own float32 error.
 *
 * Models (batch 4; layer indices in brackets):
 *  1. residual MLP: x(6) -> [0] dense 8 tanh -> [1] dense 8 relu -> [2] dense 8
 *     -> [3] add([2], [0]) -> [4] dense 3; cross-entropy on class labels;
 *  2. concatenation: x(5) -> [0] dense 4 sigmoid; x -> [1] dense 3 tanh;
 *     [2] concat([0], [1]) -> [3] dense 2; MSE;
 *  3. residual conv: x(2x6x6) -> [0] conv 3 3x3 same relu -> [1] conv 3 3x3
 *     same -> [2] add([1], [0]) -> [3] relu -> [4] concat([3], [0]) on
 *     channels -> [5] global average pool -> [6] dense 4; cross-entropy;
 *  4. two heads: x(7) -> [0] dense 6 relu -> [1] dense 3 (output 0,
 *     cross-entropy, weight 0.7); [0] -> [2] dense 2 (output 1, MSE, weight
 *     0.3): one backward of 0.7 CE + 0.3 MSE;
 *  5. two inputs: x0(1x5x5) -> [0] conv 2 3x3 valid relu -> [1] flatten;
 *     x1(4) -> [2] dense 5 tanh; [3] concat([1], [2]) -> [4] dense 3;
 *     cross-entropy, run with aim_model_forward_multi().
 * Each model gets PyTorch's parameters through aim_model_parameters() and is
 * trained 3 steps with Adam (lr 1e-2, PyTorch's default betas and epsilon);
 * compared are the outputs, the gradients of every parameter and of every
 * input at the initial parameters, every step's loss(es), the parameters
 * after each step and the update (final - initial).
 *
 * Tolerances and metric are test_golden.c's: |got - ref| / max(|ref|, floor)
 * with the floor 1% of the largest |ref| of the array; at most 1e-5 for
 * forward values and losses, 1e-4 for gradients and parameters, and 1e-3 with
 * a 10% floor for the updates, which three steps of lr 1e-2 keep at a few
 * percent of the parameters, so the parameter comparison alone would test
 * them only to ~1e-3. gen_golden_graph.py --check prints how far a float32
 * PyTorch run lands under the same metrics: at most 4.3e-7 for values and
 * losses, 6.6e-6 for gradients, 2.7e-6 for parameters and 6.6e-6 for updates,
 * one to two orders of magnitude inside the tolerances (the generator asserts
 * a factor of 10 at least, and keeps every relu input at least 1e-4 from 0);
 * this library measures the same (6.5e-7, 5.1e-6, 1.8e-6 and 7.9e-6). The
 * test prints the worst error of each kind for each model at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"
#include "golden/golden_graph.h"

#define TOL_FORWARD 1e-5
#define TOL_GRAD 1e-4
#define TOL_TRAJ 1e-4
#define TOL_UPDATE 1e-3
#define FLOOR_FRAC 1e-2
#define UPDATE_FLOOR_FRAC 0.1
#define WHAT_WIDTH 28 /* of the printed names */

enum { BATCH = GOLDEN_GRAPH_BATCH, STEPS = GOLDEN_GRAPH_STEPS, MAX_IO = 2, MAX_PARAMS = 256 };
_Static_assert(GOLDEN_GRAPH_RESIDUAL_MLP_PARAMS <= MAX_PARAMS && GOLDEN_GRAPH_CONCAT_PARAMS <= MAX_PARAMS &&
                   GOLDEN_GRAPH_RESIDUAL_CONV_PARAMS <= MAX_PARAMS && GOLDEN_GRAPH_TWO_HEADS_PARAMS <= MAX_PARAMS &&
                   GOLDEN_GRAPH_TWO_INPUTS_PARAMS <= MAX_PARAMS,
               "MAX_PARAMS holds every model's parameters");

/* What a comparison measures; each kind has its tolerance and floor. The
 * metric is golden_rel_error() (tests/support.h), described at the top of
 * test_golden.c; an all-zero reference fails, so a comparison never passes
 * vacuously. Each model keeps its own worst error of each kind. */
typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_PARAMS, CMP_UPDATE, CMP_KINDS } cmp_kind;
#define CMP_INIT                                                                            \
    {                                                                                       \
        {"forward/loss", TOL_FORWARD, FLOOR_FRAC, 0.0}, {"gradient", TOL_GRAD, FLOOR_FRAC, 0.0}, \
        {"parameters", TOL_TRAJ, FLOOR_FRAC, 0.0}, {"update", TOL_UPDATE, UPDATE_FLOOR_FRAC, 0.0}  \
    }

/* ------------------------------------------------------------------ building */

static void add_dense(aim_model *m, size_t units, aim_activation act) {
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, units, act));
    dc.init = AIM_INIT_ZEROS; /* overwritten with PyTorch's parameters */
    CHECK_OK(aim_model_add_dense(m, &dc));
}

static void add_conv3x3(aim_model *m, size_t filters, aim_padding padding, aim_activation act) {
    aim_conv2d_config cc;
    CHECK_OK(aim_conv2d_config_init(&cc, filters, 3, 3, act));
    cc.padding = padding;
    cc.init = AIM_INIT_ZEROS;
    CHECK_OK(aim_model_add_conv2d(m, &cc));
}

/* The current node, which must be `expected` (the layer index the header's
 * comments give). */
static size_t node_is(aim_model *m, size_t expected) {
    size_t node = 0;
    CHECK_OK(aim_model_last_node(m, &node));
    assert_int_equal(node, expected);
    return node;
}

/* Asserts the sample shape of a node. */
static void shape_is(aim_model *m, size_t node, size_t rank, size_t d0, size_t d1, size_t d2) {
    size_t r = 0, dims[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, node, &r, dims));
    assert_int_equal(r, rank);
    const size_t want[3] = {d0, d1, d2};
    for (size_t i = 0; i < rank; i++) assert_int_equal(dims[i], want[i]);
}

static aim_model *create(size_t rank, size_t d0, size_t d1, size_t d2) {
    const size_t dims[3] = {d0, d1, d2};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, rank, dims, &m));
    return m;
}

/* 1. x(6) -> [0] dense 8 tanh -> [1] dense 8 relu -> [2] dense 8 -> [3] add([2], [0]) -> [4] dense 3 */
static aim_model *build_residual_mlp(void) {
    aim_model *m = create(1, 6, 0, 0);
    add_dense(m, 8, AIM_ACT_TANH);
    size_t skip = node_is(m, 0);
    add_dense(m, 8, AIM_ACT_RELU);
    add_dense(m, 8, AIM_ACT_IDENTITY);
    size_t y = node_is(m, 2);
    const size_t sum[2] = {y, skip};
    CHECK_OK(aim_model_add_add(m, sum, 2));
    shape_is(m, node_is(m, 3), 1, 8, 0, 0);
    add_dense(m, 3, AIM_ACT_IDENTITY);
    node_is(m, 4);
    return m;
}

/* 2. x(5) -> [0] dense 4 sigmoid; x -> [1] dense 3 tanh; [2] concat([0], [1]) -> [3] dense 2 */
static aim_model *build_concat(void) {
    aim_model *m = create(1, 5, 0, 0);
    add_dense(m, 4, AIM_ACT_SIGMOID);
    size_t a = node_is(m, 0);
    CHECK_OK(aim_model_continue_from(m, AIM_MODEL_INPUT(0)));
    node_is(m, AIM_MODEL_INPUT(0));
    add_dense(m, 3, AIM_ACT_TANH);
    size_t b = node_is(m, 1);
    const size_t parts[2] = {a, b};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    shape_is(m, node_is(m, 2), 1, 7, 0, 0);
    add_dense(m, 2, AIM_ACT_IDENTITY);
    node_is(m, 3);
    return m;
}

/* 3. x(2x6x6) -> [0] conv 3 same relu -> [1] conv 3 same -> [2] add([1], [0]) -> [3] relu
 *    -> [4] concat([3], [0]) on channels -> [5] global average pool -> [6] dense 4 */
static aim_model *build_residual_conv(void) {
    aim_model *m = create(3, 2, 6, 6);
    add_conv3x3(m, 3, AIM_PAD_SAME, AIM_ACT_RELU);
    size_t c0 = node_is(m, 0);
    add_conv3x3(m, 3, AIM_PAD_SAME, AIM_ACT_IDENTITY);
    size_t c1 = node_is(m, 1);
    const size_t sum[2] = {c1, c0};
    CHECK_OK(aim_model_add_add(m, sum, 2));
    node_is(m, 2);
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
    size_t s = node_is(m, 3);
    const size_t parts[2] = {s, c0};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    shape_is(m, node_is(m, 4), 3, 6, 6, 6);
    CHECK_OK(aim_model_add_global_avg_pool2d(m));
    shape_is(m, node_is(m, 5), 1, 6, 0, 0);
    add_dense(m, 4, AIM_ACT_IDENTITY);
    node_is(m, 6);
    return m;
}

/* 4. x(7) -> [0] dense 6 relu -> [1] dense 3 (output 0); [0] -> [2] dense 2 (output 1) */
static aim_model *build_two_heads(void) {
    aim_model *m = create(1, 7, 0, 0);
    add_dense(m, 6, AIM_ACT_RELU);
    size_t trunk = node_is(m, 0);
    add_dense(m, 3, AIM_ACT_IDENTITY);
    size_t head0 = node_is(m, 1);
    CHECK_OK(aim_model_continue_from(m, trunk));
    add_dense(m, 2, AIM_ACT_IDENTITY);
    size_t head1 = node_is(m, 2);
    const size_t outs[2] = {head0, head1};
    const float weights[2] = {GOLDEN_GRAPH_HEAD0_WEIGHT, GOLDEN_GRAPH_HEAD1_WEIGHT};
    CHECK_OK(aim_model_set_outputs(m, outs, weights, 2));
    return m;
}

/* 5. x0(1x5x5) -> [0] conv 2 valid relu -> [1] flatten; x1(4) -> [2] dense 5 tanh;
 *    [3] concat([1], [2]) -> [4] dense 3 */
static aim_model *build_two_inputs(void) {
    aim_model *m = create(3, 1, 5, 5);
    add_conv3x3(m, 2, AIM_PAD_VALID, AIM_ACT_RELU);
    shape_is(m, node_is(m, 0), 3, 2, 3, 3);
    CHECK_OK(aim_model_add_flatten(m));
    size_t f = node_is(m, 1);
    shape_is(m, f, 1, 18, 0, 0);
    const size_t dims1[1] = {4};
    size_t in1 = 0;
    CHECK_OK(aim_model_add_input(m, 1, dims1, &in1));
    assert_true(in1 == AIM_MODEL_INPUT(1));
    node_is(m, f); /* add_input leaves the current node */
    shape_is(m, in1, 1, 4, 0, 0);
    CHECK_OK(aim_model_continue_from(m, in1));
    add_dense(m, 5, AIM_ACT_TANH);
    size_t d = node_is(m, 2);
    const size_t parts[2] = {f, d};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    shape_is(m, node_is(m, 3), 1, 23, 0, 0);
    add_dense(m, 3, AIM_ACT_IDENTITY);
    node_is(m, 4);
    return m;
}

/* ------------------------------------------------------------------ cases */

/* One model output: its reference at the initial parameters, and its loss:
 * softmax cross-entropy on `labels`, or MSE against `targets`. */
struct graph_output {
    const float *y;
    size_t size; /* floats per sample */
    const int32_t *labels;
    const float *targets;
    const float *loss; /* [STEPS], unweighted */
    float weight;
};

struct graph_input {
    const float *x, *dx;
    size_t size; /* floats per sample */
};

struct graph_case {
    const char *name;
    aim_model *(*build)(void);
    size_t layers; /* aim_model_layer_count() */
    const int32_t *param_layers; /* {layer, offset, weight count, bias count} rows */
    size_t n_param_layers;
    const float *params0, *grad, *traj;
    size_t count;
    size_t n_inputs, n_outputs;
    struct graph_input in[MAX_IO];
    struct graph_output out[MAX_IO];
    const float *total_loss; /* several outputs: the weighted sum at step 0 */
    golden_kind cmp[CMP_KINDS];
};

#define ONE_INPUT(p, size) 1, 1, {{p##_x0, p##_dx0, size}}
#define CE_OUT(p, k, size) {p##_y##k, size, p##_labels##k, NULL, p##_loss##k, 1.0f}
#define MSE_OUT(p, k, size) {p##_y##k, size, NULL, p##_targets##k, p##_loss##k, 1.0f}
#define PARAMS(P, p) \
    p##_layers, P##_PARAM_LAYERS, p##_params0, p##_grad, p##_traj, P##_PARAMS

static struct graph_case cases[] = {
    {"residual_mlp", build_residual_mlp, 5,
     PARAMS(GOLDEN_GRAPH_RESIDUAL_MLP, golden_graph_residual_mlp),
     ONE_INPUT(golden_graph_residual_mlp, 6),
     {CE_OUT(golden_graph_residual_mlp, 0, 3)}, NULL, CMP_INIT},
    {"concat", build_concat, 4,
     PARAMS(GOLDEN_GRAPH_CONCAT, golden_graph_concat),
     ONE_INPUT(golden_graph_concat, 5),
     {MSE_OUT(golden_graph_concat, 0, 2)}, NULL, CMP_INIT},
    {"residual_conv", build_residual_conv, 7,
     PARAMS(GOLDEN_GRAPH_RESIDUAL_CONV, golden_graph_residual_conv),
     ONE_INPUT(golden_graph_residual_conv, 2 * 6 * 6),
     {CE_OUT(golden_graph_residual_conv, 0, 4)}, NULL, CMP_INIT},
    {"two_heads", build_two_heads, 3,
     PARAMS(GOLDEN_GRAPH_TWO_HEADS, golden_graph_two_heads),
     1, 2, {{golden_graph_two_heads_x0, golden_graph_two_heads_dx0, 7}},
     {{golden_graph_two_heads_y0, 3, golden_graph_two_heads_labels0, NULL, golden_graph_two_heads_loss0,
       GOLDEN_GRAPH_HEAD0_WEIGHT},
      {golden_graph_two_heads_y1, 2, NULL, golden_graph_two_heads_targets1, golden_graph_two_heads_loss1,
       GOLDEN_GRAPH_HEAD1_WEIGHT}},
     golden_graph_two_heads_total_loss, CMP_INIT},
    {"two_inputs", build_two_inputs, 5,
     PARAMS(GOLDEN_GRAPH_TWO_INPUTS, golden_graph_two_inputs),
     2, 1,
     {{golden_graph_two_inputs_x0, golden_graph_two_inputs_dx0, 1 * 5 * 5},
      {golden_graph_two_inputs_x1, golden_graph_two_inputs_dx1, 4}},
     {CE_OUT(golden_graph_two_inputs, 0, 3)}, NULL, CMP_INIT},
};

/* The header's counts agree with the tables above. */
_Static_assert(GOLDEN_GRAPH_RESIDUAL_MLP_INPUTS == 1 && GOLDEN_GRAPH_RESIDUAL_MLP_OUTPUTS == 1 &&
                   GOLDEN_GRAPH_CONCAT_INPUTS == 1 && GOLDEN_GRAPH_CONCAT_OUTPUTS == 1 &&
                   GOLDEN_GRAPH_RESIDUAL_CONV_INPUTS == 1 && GOLDEN_GRAPH_RESIDUAL_CONV_OUTPUTS == 1 &&
                   GOLDEN_GRAPH_TWO_HEADS_INPUTS == 1 && GOLDEN_GRAPH_TWO_HEADS_OUTPUTS == 2 &&
                   GOLDEN_GRAPH_TWO_INPUTS_INPUTS == 2 && GOLDEN_GRAPH_TWO_INPUTS_OUTPUTS == 1,
               "inputs and outputs as in gen_golden_graph.py");
_Static_assert(ARRAY_LEN(golden_graph_residual_mlp_x0) == BATCH * 6 &&
                   ARRAY_LEN(golden_graph_concat_x0) == BATCH * 5 &&
                   ARRAY_LEN(golden_graph_residual_conv_x0) == BATCH * 2 * 6 * 6 &&
                   ARRAY_LEN(golden_graph_two_heads_x0) == BATCH * 7 &&
                   ARRAY_LEN(golden_graph_two_inputs_x0) == BATCH * 25 &&
                   ARRAY_LEN(golden_graph_two_inputs_x1) == BATCH * 4,
               "input sizes as in gen_golden_graph.py");
_Static_assert(ARRAY_LEN(golden_graph_residual_mlp_y0) == BATCH * 3 &&
                   ARRAY_LEN(golden_graph_concat_y0) == BATCH * 2 &&
                   ARRAY_LEN(golden_graph_residual_conv_y0) == BATCH * 4 &&
                   ARRAY_LEN(golden_graph_two_heads_y0) == BATCH * 3 &&
                   ARRAY_LEN(golden_graph_two_heads_y1) == BATCH * 2 &&
                   ARRAY_LEN(golden_graph_two_inputs_y0) == BATCH * 3,
               "output sizes as in gen_golden_graph.py");

static void expect_close(struct graph_case *c, const char *what, const float *got, const float *ref, size_t n,
                         cmp_kind kind) {
    assert_true(golden_expect(&c->cmp[kind], WHAT_WIDTH, what, got, ref, n));
}

static void run_case(void **state) {
    struct graph_case *c = *state;
    aim_model *m = c->build();
    assert_int_equal(aim_model_layer_count(m), c->layers);
    assert_int_equal(aim_model_input_count(m), c->n_inputs);
    assert_int_equal(aim_model_output_count(m), c->n_outputs);

    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = BATCH;
    cc.input_gradient = 1;
    CHECK_OK(aim_model_compile(m, &cc));

    /* The flat layout the generator wrote: the layers with parameters in the
     * order they were added, each weight then bias. */
    for (size_t i = 0; i < c->n_param_layers; i++) {
        const int32_t *row = c->param_layers + 4 * i;
        size_t offset = 99, wcount = 0, bcount = 0;
        CHECK_OK(aim_model_layer_parameters(m, (size_t)row[0], &offset, &wcount, &bcount));
        assert_int_equal(offset, (size_t)row[1]);
        assert_int_equal(wcount, (size_t)row[2]);
        assert_int_equal(bcount, (size_t)row[3]);
    }
    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, c->count);
    memcpy(params, c->params0, count * sizeof *params);

    aim_adam_config ac;
    CHECK_OK(aim_adam_config_init(&ac));
    /* The references use PyTorch's defaults; say so if ours differ. */
    assert_true(ac.beta1 == 0.9f && ac.beta2 == 0.999f && ac.epsilon == 1e-8f && ac.weight_decay == 0.0f);
    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, &ac, count, &opt));

    float losses[MAX_IO][STEPS];
    float traj[STEPS][MAX_PARAMS];
    char what[64];
    for (size_t t = 0; t < STEPS; t++) {
        CHECK_OK(aim_model_zero_grad(m));
        if (c->n_inputs == 1) {
            CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->in[0].x, BATCH * c->in[0].size, BATCH));
        } else {
            const float *xs[MAX_IO];
            size_t xcounts[MAX_IO];
            for (size_t k = 0; k < c->n_inputs; k++) {
                xs[k] = c->in[k].x;
                xcounts[k] = BATCH * c->in[k].size;
            }
            CHECK_OK(aim_model_forward_multi(m, AIM_MODE_TRAIN, xs, xcounts, c->n_inputs, BATCH));
        }
        for (size_t k = 0; k < c->n_outputs; k++) {
            const struct graph_output *o = &c->out[k];
            if (t == 0) {
                const float *y = NULL;
                size_t ycount = 0;
                CHECK_OK(aim_model_output(m, k, &y, &ycount));
                assert_int_equal(ycount, BATCH * o->size);
                snprintf(what, sizeof what, "output %zu", k);
                expect_close(c, what, y, o->y, ycount, CMP_FORWARD);
            }
            if (o->labels)
                CHECK_OK(aim_model_loss_sparse(m, k, o->labels, BATCH, &losses[k][t]));
            else
                CHECK_OK(aim_model_loss(m, k, AIM_LOSS_MSE, o->targets, BATCH * o->size, &losses[k][t]));
        }
        CHECK_OK(aim_model_backward(m, NULL, 0));
        if (t == 0) {
            float *grads = NULL;
            size_t gcount = 0;
            CHECK_OK(aim_model_gradients(m, &grads, &gcount));
            assert_int_equal(gcount, count);
            expect_close(c, "parameter gradients", grads, c->grad, count, CMP_GRAD);
            for (size_t k = 0; k < c->n_inputs; k++) {
                const float *dx = NULL;
                size_t dxcount = 0;
                CHECK_OK(aim_model_input_gradient(m, k, &dx, &dxcount));
                assert_int_equal(dxcount, BATCH * c->in[k].size);
                snprintf(what, sizeof what, "input %zu gradient", k);
                expect_close(c, what, dx, c->in[k].dx, dxcount, CMP_GRAD);
            }
        }
        CHECK_OK(aim_optimizer_step_model(opt, m, GOLDEN_GRAPH_LR));
        memcpy(traj[t], params, count * sizeof *params);
    }
    assert_int_equal(aim_optimizer_steps(opt), STEPS);

    for (size_t k = 0; k < c->n_outputs; k++) {
        snprintf(what, sizeof what, "loss %zu of each step", k);
        expect_close(c, what, losses[k], c->out[k].loss, STEPS, CMP_FORWARD);
    }
    if (c->total_loss) {
        /* What the one backward minimized (the library reports each output's
         * loss unweighted; the sum is the test's). */
        double total = 0.0;
        for (size_t k = 0; k < c->n_outputs; k++) total += (double)c->out[k].weight * (double)losses[k][0];
        const float total_f = (float)total;
        expect_close(c, "weighted total loss", &total_f, c->total_loss, 1, CMP_FORWARD);
    }
    for (size_t t = 0; t < STEPS; t++) {
        snprintf(what, sizeof what, "parameters after step %zu", t + 1);
        expect_close(c, what, traj[t], c->traj + t * count, count, CMP_PARAMS);
    }
    /* The update of the three steps, which the parameter comparison tests
     * only to ~1e-3 (see the top of the file). */
    float delta[MAX_PARAMS], ref_delta[MAX_PARAMS];
    const float *ref_final = c->traj + (STEPS - 1) * count;
    for (size_t i = 0; i < count; i++) {
        delta[i] = traj[STEPS - 1][i] - c->params0[i];
        ref_delta[i] = ref_final[i] - c->params0[i];
    }
    expect_close(c, "update (final - initial)", delta, ref_delta, count, CMP_UPDATE);

    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ main */

static int print_worst(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        printf("model %zu (%s):\n", i + 1, cases[i].name);
        for (size_t k = 0; k < CMP_KINDS; k++)
            printf("  worst %-13s max rel err %.3g (tolerance %.0e)\n", cases[i].cmp[k].name, cases[i].cmp[k].worst,
                   cases[i].cmp[k].tol);
    }
    fflush(stdout);
    return 0;
}

#define CASE(i) {cases[i].name, run_case, NULL, NULL, &cases[i]}

int main(void) {
    const struct CMUnitTest tests[] = {
        CASE(0), CASE(1), CASE(2), CASE(3), CASE(4),
    };
    _Static_assert(ARRAY_LEN(cases) == 5, "every case of the table is listed in main");
    return cmocka_run_group_tests(tests, NULL, print_worst);
}
