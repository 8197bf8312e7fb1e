/* Tests of the LSTM layer stack (src/layers/lstm.c), its builder and its state
 * functions (src/layers/lstm.c), through the public API.
 *
 *  1. Central-difference gradient checks, as in test_conv.c: L = sum(output *
 *     R), the analytic gradients from aim_model_backward(m, R) against
 *     (L(v + h) - L(v - h)) / 2h for every parameter and every input value,
 *     tensor by tensor (W_ih, W_hh, b_ih, b_hh of every stacked layer), each
 *     guarded against passing on an all-zero gradient. Cases: 1 and 2 stacked
 *     layers and two LSTM layers in a row, sequence lengths 1, 3 and 7, the
 *     last step or the whole sequence (then a flatten or a dense layer after
 *     it, or nothing), hidden sizes 3 to 6, features 2 to 5, batch 1 to 3, and
 *     the same with caller-given initial states (aim_model_lstm_set_state()).
 *     A first test proves the checker catches a corrupted gradient, and that
 *     a gradient computed without the initial state fails the state cases.
 *  2. States: the top layer's final h (aim_model_lstm_final_state()) is the
 *     output of the last step; a sequence split in two, the second half
 *     started from the first half's final states, gives the whole sequence's
 *     outputs and final states; the backward uses the state of the forward
 *     it follows.
 *  3. predict equals forward bit for bit (and ignores the initial state, as
 *     documented); a training step allocates nothing; the flat layout,
 *     shapes and initializers; a first layer without input_gradient.
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

/* ======================================================================== */
/* 1. Gradient checks                                                       */
/* ======================================================================== */

/* A value passes when |a - n| <= rtol max(|a|, |n|) + atol, n from a central
 * difference of step h (GC_TOL, checked by the shared gradient checker of
 * tests/support.h): test_gradcheck.c's and test_conv.c's model tolerances.
 * L = sum(Y R) is summed in double from float32 outputs; inputs lie in
 * [-1, 1), R in +-[0.25, 1], weights in +-[0.1, 1] / sqrt(fan_in)
 * (fan_in = in for W_ih, H for W_hh), biases in [-0.5, 0.5), initial h in
 * [-0.9, 0.9) and c in [-1.5, 1.5), so every gate's pre-activation is O(1).
 *  - Truncation: h^2/6 |L'''|; the gates are sigmoids and tanh, whose third
 *    derivatives are at most 1/8 and 2, chained over at most 7 steps with
 *    the contraction of the forget gate and of W_hh; ~1e-4 at most.
 *  - Rounding: a perturbation moves at most batch * T * H (<= 70 here)
 *    outputs, each rounded to ~6e-8 relative, so L(v+h) - L(v-h) is off by
 *    ~1e-6 and n by ~5e-5 at most.
 * The test prints the worst usage of the tolerance at the end: 1.6% when
 * written (a W_hh entry of "T7 sequence, flatten"). A wrong gate order, a dropped recurrent term or a wrong
 * derivative moves values by O(0.1); test_checker_catches_a_corrupted_gradient
 * shows that any single entry >= 0.02 off by 10% is caught. */
static const gradcheck_tol GC_TOL = {1e-2, 1e-2, 1e-3}; /* h, rtol, atol */

/* Guards (the shared checker's, tests/support.h): a case must have max |g|
 * above GRADCHECK_MIN_MAX = 1e-3 over all its parts; every parameter tensor
 * must be at least half nonzero (GRADCHECK_DENSE); the input, at least one
 * entry nonzero (GRADCHECK_SPARSE). A tensor that is zero by construction
 * (W_hh of a one-step sequence from zero states: h_{-1} = 0) must be exactly
 * zero (GRADCHECK_EXACT_ZERO). */

static gradcheck_worst g_worst; /* over the run, printed at the end */

/* Checks one part of one case; fails with the first bad entry's numbers.
 * Raises *max_a to the part's max |a|. */
static void gc_expect(const char *label, const char *part, const float *a, const double *num, size_t n,
                      gradcheck_guard guard, double *max_a) {
    char why[GRADCHECK_WHY];
    if (!gradcheck_part(label, part, a, num, n, &GC_TOL, guard, &g_worst, max_a, why, sizeof why))
        fail_msg("%s", why);
}

/* Both gradients of a case (gradcheck_run, tests/support.h): L = sum(Y R),
 * whose inference forward uses the initial states set on the model, as the
 * training forward does; the parameters and the input must come back
 * bit-exactly after the perturbations. */
static gradcheck_result gc_run(const gradcheck_case *c) {
    gradcheck_result r;
    char why[GRADCHECK_WHY];
    if (!gradcheck_run(c, GC_TOL.h, &r, why, sizeof why)) {
        gradcheck_result_free(&r);
        fail_msg("%s", why);
    }
    return r;
}

/* ---- the models ------------------------------------------------------------ */

typedef enum head_kind { HEAD_NONE, HEAD_FLATTEN, HEAD_DENSE } head_kind;

/* A sequence model: T x F -> LSTM (H, layers, seq) [-> LSTM (H2, layers2,
 * seq2)] [-> flatten | dense 3 tanh]. A second LSTM needs seq = 1. */
typedef struct lstm_spec {
    const char *name;
    size_t batch, T, F;
    size_t H, layers;
    int seq;
    size_t H2, layers2; /* H2 = 0: no second LSTM */
    int seq2;
    head_kind head;
    int state; /* initial states given to every LSTM layer */
} lstm_spec;

/* What the test knows of each LSTM layer of a built model. */
typedef struct lstm_info {
    size_t index, in, H, layers;
} lstm_info;

typedef struct built {
    aim_model *m;
    size_t n_lstm;
    lstm_info lstm[2];
} built;

#define HEAD_UNITS 3

/* Parameters of a stack: per layer 4H (in + H) + 8H, in_0 = F, in_l = H. */
static size_t stack_params(size_t F, size_t H, size_t layers) {
    size_t n = 0;
    for (size_t l = 0; l < layers; l++) n += 4 * H * ((l == 0 ? F : H) + H) + 8 * H;
    return n;
}

static void add_lstm(aim_model *m, size_t H, size_t layers, int seq) {
    aim_lstm_config lc;
    CHECK_OK(aim_lstm_config_init(&lc, H, layers));
    assert_int_equal(lc.return_sequences, 0); /* the documented defaults */
    assert_int_equal(lc.init, AIM_INIT_PYTORCH);
    lc.return_sequences = seq;
    CHECK_OK(aim_model_add_lstm(m, &lc));
}

/* Builds and compiles a spec for batch + 1, so every check also runs below
 * max_batch. */
static built build_spec(const lstm_spec *s, int input_gradient) {
    built b;
    memset(&b, 0, sizeof b);
    const size_t dims[2] = {s->T, s->F};
    CHECK_OK(aim_model_create(NULL, 2, dims, &b.m));
    add_lstm(b.m, s->H, s->layers, s->seq);
    b.lstm[b.n_lstm++] = (lstm_info){0, s->F, s->H, s->layers};
    if (s->H2) {
        assert_true(s->seq);
        add_lstm(b.m, s->H2, s->layers2, s->seq2);
        b.lstm[b.n_lstm++] = (lstm_info){1, s->H, s->H2, s->layers2};
    }
    if (s->head == HEAD_FLATTEN) CHECK_OK(aim_model_add_flatten(b.m));
    if (s->head == HEAD_DENSE) {
        aim_dense_config dc;
        CHECK_OK(aim_dense_config_init(&dc, HEAD_UNITS, AIM_ACT_TANH));
        CHECK_OK(aim_model_add_dense(b.m, &dc));
    }
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = s->batch + 1;
    cc.input_gradient = input_gradient;
    cc.seed = 7;
    CHECK_OK(aim_model_compile(b.m, &cc));
    /* The documented layout: one entry per LSTM layer, all weights, no bias. */
    for (size_t k = 0; k < b.n_lstm; k++) {
        size_t off = 0, wc = 0, bc = 0;
        const lstm_info *li = &b.lstm[k];
        CHECK_OK(aim_model_layer_parameters(b.m, li->index, &off, &wc, &bc));
        assert_int_equal(wc, stack_params(li->in, li->H, li->layers));
        assert_int_equal(bc, 0);
    }
    return b;
}

/* Values of random sign with magnitudes in [lo, hi] (never near 0). */
static void fill_signed(float *x, size_t n, uint64_t seed, float lo, float hi) {
    fill_uniform(x, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = copysignf(lo + (hi - lo) * fabsf(x[i]), x[i]);
}

static void fill_kernel(float *w, size_t n, size_t fan_in, uint64_t seed) {
    fill_signed(w, n, seed, 0.1f, 1.0f);
    const float scale = 1.0f / sqrtf((float)fan_in);
    for (size_t i = 0; i < n; i++) w[i] *= scale;
}

/* Overwrites every parameter with a point independent of the library's
 * initializer (see the tolerance comment). */
static void fill_point(const built *b, uint64_t seed) {
    float *p = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(b->m, &p, &count));
    for (size_t layer = 0; layer < aim_model_layer_count(b->m); layer++) {
        size_t off = 0, wc = 0, bc = 0;
        CHECK_OK(aim_model_layer_parameters(b->m, layer, &off, &wc, &bc));
        if (wc == 0) continue;
        const lstm_info *li = NULL;
        for (size_t k = 0; k < b->n_lstm; k++)
            if (b->lstm[k].index == layer) li = &b->lstm[k];
        uint64_t s = seed * 101u + layer * 13u;
        if (!li) { /* dense: weights [units, fan_in] */
            fill_kernel(p + off, wc, wc / bc, s);
            fill_uniform(p + off + wc, bc, s + 1, -0.5f, 0.5f);
            continue;
        }
        float *q = p + off;
        const size_t H = li->H;
        for (size_t l = 0; l < li->layers; l++) {
            const size_t in = l == 0 ? li->in : H;
            fill_kernel(q, 4 * H * in, in, s + 4 * l);
            q += 4 * H * in;
            fill_kernel(q, 4 * H * H, H, s + 4 * l + 1);
            q += 4 * H * H;
            fill_uniform(q, 4 * H, s + 4 * l + 2, -0.5f, 0.5f);
            q += 4 * H;
            fill_uniform(q, 4 * H, s + 4 * l + 3, -0.5f, 0.5f);
            q += 4 * H;
        }
        assert_true(q == p + off + wc);
    }
}

/* Initial states [layers, batch, H] for every LSTM layer of a model. */
static void set_states(const built *b, size_t batch, uint64_t seed) {
    for (size_t k = 0; k < b->n_lstm; k++) {
        const lstm_info *li = &b->lstm[k];
        const size_t n = li->layers * batch * li->H;
        float *h0 = malloc(n * sizeof *h0), *c0 = malloc(n * sizeof *c0);
        assert_true(h0 && c0);
        fill_uniform(h0, n, seed * 31u + k, -0.9f, 0.9f);
        fill_uniform(c0, n, seed * 37u + k, -1.5f, 1.5f);
        CHECK_OK(aim_model_lstm_set_state(b->m, li->index, h0, n, c0, n, batch));
        free(h0);
        free(c0);
    }
}

/* Checks every tensor of the case; returns the largest |analytic| seen. */
static double gc_check_parts(const built *b, const gradcheck_result *r, const char *label, size_t T, int state) {
    double max_a = 0.0;
    size_t covered = 0;
    for (size_t layer = 0; layer < aim_model_layer_count(b->m); layer++) {
        size_t off = 0, wc = 0, bc = 0;
        char part[64];
        CHECK_OK(aim_model_layer_parameters(b->m, layer, &off, &wc, &bc));
        assert_true(off + wc + bc <= r->count);
        covered += wc + bc;
        const lstm_info *li = NULL;
        for (size_t k = 0; k < b->n_lstm; k++)
            if (b->lstm[k].index == layer) li = &b->lstm[k];
        if (!li) {
            if (wc) {
                snprintf(part, sizeof part, "layer %zu weight", layer);
                gc_expect(label, part, r->ap + off, r->num_p + off, wc, GRADCHECK_DENSE, &max_a);
            }
            if (bc) {
                snprintf(part, sizeof part, "layer %zu bias", layer);
                gc_expect(label, part, r->ap + off + wc, r->num_p + off + wc, bc, GRADCHECK_DENSE, &max_a);
            }
            continue;
        }
        const size_t H = li->H;
        size_t at = off;
        for (size_t l = 0; l < li->layers; l++) {
            const size_t sizes[4] = {4 * H * (l == 0 ? li->in : H), 4 * H * H, 4 * H, 4 * H};
            static const char *const names[4] = {"W_ih", "W_hh", "b_ih", "b_hh"};
            for (size_t t = 0; t < 4; t++) {
                /* W_hh multiplies h_{t-1}: nothing to learn from one step that starts at h = 0. */
                gradcheck_guard g = (t == 1 && T == 1 && !state) ? GRADCHECK_EXACT_ZERO : GRADCHECK_DENSE;
                snprintf(part, sizeof part, "layer %zu sub-layer %zu %s", layer, l, names[t]);
                gc_expect(label, part, r->ap + at, r->num_p + at, sizes[t], g, &max_a);
                at += sizes[t];
            }
            /* Both biases enter every pre-activation alike: equal gradients, exactly. */
            assert_memory_equal(r->ap + at - 8 * H, r->ap + at - 4 * H, 4 * H * sizeof(float));
        }
        assert_int_equal(at, off + wc);
    }
    assert_int_equal(covered, r->count);
    gc_expect(label, "input", r->ax, r->num_x, r->nx, GRADCHECK_SPARSE, &max_a);
    return max_a;
}

/* Draws the point of a case (parameters, states, input, R) and returns the case. */
static gradcheck_case draw_case(const built *b, const lstm_spec *s, uint64_t seed) {
    const size_t in = aim_model_input_size(b->m), out = aim_model_output_size(b->m);
    float *x = malloc(s->batch * in * sizeof *x), *r = malloc(s->batch * out * sizeof *r);
    assert_true(x && r);
    fill_point(b, seed);
    if (s->state) set_states(b, s->batch, seed);
    fill_uniform(x, s->batch * in, seed * 7u + 1u, -1.0f, 1.0f);
    fill_signed(r, s->batch * out, seed * 11u + 2u, 0.25f, 1.0f);
    gradcheck_case c = {.m = b->m, .x = x, .batch = s->batch, .in = in, .out = out, .obj = GRADCHECK_WEIGHTED_SUM,
                        .r = r};
    return c;
}

static void free_case(gradcheck_case *c) {
    free(c->x);
    free((void *)c->r);
}

static const lstm_spec LSTM_SPECS[] = {
    /* name                                   B  T  F  H  L seq H2 L2 seq2 head         state */
    {"T1 last step",                          1, 1, 2, 3, 1, 0, 0, 0, 0, HEAD_NONE,    0},
    {"T3 last step, dense",                   2, 3, 3, 4, 1, 0, 0, 0, 0, HEAD_DENSE,   0},
    {"T7 sequence, flatten",                  3, 7, 2, 3, 1, 1, 0, 0, 0, HEAD_FLATTEN, 0},
    {"T7 last step",                          1, 7, 5, 6, 1, 0, 0, 0, 0, HEAD_NONE,    0},
    {"T3 sequence",                           2, 3, 4, 3, 1, 1, 0, 0, 0, HEAD_NONE,    0},
    {"2 layers, T3 last step",                2, 3, 5, 4, 2, 0, 0, 0, 0, HEAD_NONE,    0},
    {"2 layers, T7 sequence, dense",          2, 7, 4, 5, 2, 1, 0, 0, 0, HEAD_DENSE,   0},
    {"2 layers, T1 sequence, flatten",        3, 1, 4, 6, 2, 1, 0, 0, 0, HEAD_FLATTEN, 0},
    {"LSTM sequence -> LSTM last step, dense", 2, 3, 3, 4, 1, 1, 3, 1, 0, HEAD_DENSE,  0},
    {"state, T1 last step",                   2, 1, 3, 4, 1, 0, 0, 0, 0, HEAD_NONE,    1},
    {"state, 2 layers, T3 last step, dense",  3, 3, 2, 5, 2, 0, 0, 0, 0, HEAD_DENSE,   1},
    {"state, T7 sequence",                    2, 7, 3, 3, 1, 1, 0, 0, 0, HEAD_NONE,    1},
    {"state, 2 layers, T1 sequence, flatten", 1, 1, 2, 3, 2, 1, 0, 0, 0, HEAD_FLATTEN, 1},
    {"state, LSTM seq -> LSTM 2 layers last", 2, 3, 2, 3, 1, 1, 4, 2, 0, HEAD_NONE,    1},
};

#define N_SEEDS 2
static const uint64_t SEEDS[N_SEEDS] = {11, 29};

static void test_lstm_gradients(void **state) {
    const lstm_spec *s = *state;
    for (size_t k = 0; k < N_SEEDS; k++) {
        built b = build_spec(s, 1);
        char label[128];
        snprintf(label, sizeof label, "%s, seed %llu", s->name, (unsigned long long)SEEDS[k]);
        gradcheck_case c = draw_case(&b, s, SEEDS[k]);
        gradcheck_result r = gc_run(&c);
        double max_a = gc_check_parts(&b, &r, label, s->T, s->state);
        char why[GRADCHECK_WHY];
        if (!gradcheck_case_ok(label, max_a, GRADCHECK_DENSE, why, sizeof why)) fail_msg("%s", why);
        gradcheck_result_free(&r);
        free_case(&c);
        aim_model_free(b.m);
    }
}

/* The checker itself: it passes a correct gradient, reports any one W_hh
 * entry off by 10% and an input entry off by 0.01, and its guards reject an
 * all-zero gradient and a nonzero "structurally zero" one. Then, on the state
 * cases: the gradients of the zero-state model fail against the numeric
 * gradients of the model with states, so those cases test the states'
 * terms (the h0 term of dW_hh, c0 in the forget gate) and are not passed by a
 * backward that ignores them. */
static void test_checker_catches_a_corrupted_gradient(void **state) {
    (void)state;
    const lstm_spec s = {"", 2, 3, 3, 4, 1, 0, 0, 0, 0, HEAD_NONE, 1};
    built b = build_spec(&s, 1);
    gradcheck_case c = draw_case(&b, &s, 17);
    gradcheck_result res = gc_run(&c);
    char why[GRADCHECK_WHY];
    const size_t H = 4, wih = 4 * H * 3, whh = 4 * H * H;

    gradcheck_stats st = gradcheck_compare(res.ap, res.num_p, res.count, &GC_TOL);
    assert_int_equal(st.mismatches, 0);
    st = gradcheck_compare(res.ap + wih, res.num_p + wih, whh, &GC_TOL);
    assert_true(gradcheck_guard_ok(&st, GRADCHECK_DENSE, why, sizeof why));

    /* Every W_hh entry of size >= 0.02 off by 10% is caught, alone. */
    size_t caught = 0, tried = 0;
    for (size_t i = wih; i < wih + whh; i++) {
        if (fabsf(res.ap[i]) < 0.02f) continue;
        const float saved = res.ap[i];
        res.ap[i] = saved * 1.1f;
        st = gradcheck_compare(res.ap, res.num_p, res.count, &GC_TOL);
        tried++;
        if (st.mismatches == 1 && st.first_bad == i) caught++;
        res.ap[i] = saved;
    }
    print_message("W_hh entries >= 0.02: %zu of %zu\n", tried, whh);
    assert_true(tried >= whh / 4);
    assert_int_equal(caught, tried);

    /* 0.01 added to the smallest input gradient is reported, alone. */
    size_t at = 0;
    for (size_t i = 1; i < res.nx; i++)
        if (fabs(res.num_x[i]) < fabs(res.num_x[at])) at = i;
    res.ax[at] += 0.01f;
    st = gradcheck_compare(res.ax, res.num_x, res.nx, &GC_TOL);
    assert_int_equal(st.mismatches, 1);
    assert_int_equal(st.first_bad, at);
    res.ax[at] -= 0.01f;

    /* All-zero analytic against all-zero numeric agrees value by value; only
     * the guards reject it. A tiny nonzero value fails GRADCHECK_EXACT_ZERO. */
    float zeros[8] = {0};
    double nzeros[8] = {0};
    st = gradcheck_compare(zeros, nzeros, 8, &GC_TOL);
    assert_int_equal(st.mismatches, 0);
    assert_false(gradcheck_guard_ok(&st, GRADCHECK_DENSE, why, sizeof why));
    assert_false(gradcheck_guard_ok(&st, GRADCHECK_SPARSE, why, sizeof why));
    assert_true(gradcheck_guard_ok(&st, GRADCHECK_EXACT_ZERO, why, sizeof why));
    zeros[5] = 1e-9f;
    st = gradcheck_compare(zeros, nzeros, 8, &GC_TOL);
    assert_int_equal(st.mismatches, 0);
    assert_false(gradcheck_guard_ok(&st, GRADCHECK_EXACT_ZERO, why, sizeof why));
    zeros[0] = zeros[1] = zeros[2] = 0.5f;
    nzeros[0] = nzeros[1] = nzeros[2] = 0.5;
    st = gradcheck_compare(zeros, nzeros, 8, &GC_TOL);
    assert_false(gradcheck_guard_ok(&st, GRADCHECK_DENSE, why, sizeof why));
    assert_true(gradcheck_guard_ok(&st, GRADCHECK_SPARSE, why, sizeof why));

    /* Analytic gradients of the same point without the states: the checker
     * reports W_hh (h0 is its only input at t = 0), the forget gate and the
     * input; and the outputs differ. */
    const float *y = NULL;
    size_t ny = 0;
    float with_state[2 * 4];
    CHECK_OK(aim_model_forward(b.m, AIM_MODE_INFERENCE, c.x, c.batch * c.in, s.batch));
    CHECK_OK(aim_model_output(b.m, 0, &y, &ny));
    assert_int_equal(ny, ARRAY_LEN(with_state));
    memcpy(with_state, y, sizeof with_state);
    CHECK_OK(aim_model_lstm_set_state(b.m, 0, NULL, 0, NULL, 0, 0));
    CHECK_OK(aim_model_forward(b.m, AIM_MODE_INFERENCE, c.x, c.batch * c.in, s.batch));
    CHECK_OK(aim_model_output(b.m, 0, &y, &ny));
    assert_memory_not_equal(with_state, y, sizeof with_state);
    float *ap0 = malloc(res.count * sizeof *ap0), *ax0 = malloc(res.nx * sizeof *ax0);
    assert_true(ap0 && ax0);
    if (!gradcheck_analytic(&c, ap0, res.count, ax0, why, sizeof why)) fail_msg("%s", why);
    st = gradcheck_compare(ap0 + wih, res.num_p + wih, whh, &GC_TOL);
    print_message("zero-state W_hh gradient against the state case: %zu of %zu disagree\n", st.mismatches, whh);
    assert_true(st.mismatches >= whh / 2);
    st = gradcheck_compare(ax0, res.num_x, res.nx, &GC_TOL);
    assert_true(st.mismatches > 0);
    free(ap0);
    free(ax0);

    gradcheck_result_free(&res);
    free_case(&c);
    aim_model_free(b.m);
}

/* ======================================================================== */
/* 2. States                                                                */
/* ======================================================================== */

/* The final h of the top stacked layer is the output at the last step, bit
 * for bit; h and c may each be asked for alone. */
static void test_final_state_is_the_last_output(void **state) {
    (void)state;
    static const lstm_spec specs[] = {
        {"", 3, 4, 3, 5, 1, 0, 0, 0, 0, HEAD_NONE, 0},
        {"", 3, 4, 3, 5, 2, 0, 0, 0, 0, HEAD_NONE, 0},
        {"", 2, 5, 2, 3, 3, 1, 0, 0, 0, HEAD_NONE, 0},
        {"", 2, 5, 2, 3, 2, 0, 0, 0, 0, HEAD_NONE, 1},
        {"", 1, 1, 4, 4, 1, 1, 0, 0, 0, HEAD_NONE, 1},
    };
    for (size_t k = 0; k < ARRAY_LEN(specs); k++) {
        const lstm_spec *s = &specs[k];
        built b = build_spec(s, 0);
        fill_point(&b, 5 + k);
        for (size_t batch = 1; batch <= s->batch + 1; batch++) {
            const size_t H = s->H, L = s->layers, T = s->T, in = s->T * s->F;
            float *x = malloc(batch * in * sizeof *x);
            float *h = malloc(L * batch * H * sizeof *h), *c = malloc(L * batch * H * sizeof *c);
            float *h2 = malloc(L * batch * H * sizeof *h2), *c2 = malloc(L * batch * H * sizeof *c2);
            assert_true(x && h && c && h2 && c2);
            fill_uniform(x, batch * in, 40 + k, -1.0f, 1.0f);
            if (s->state) set_states(&b, batch, 3 + batch);
            const float *y = NULL;
            size_t ny = 0;
            CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, x, batch * in, batch));
            CHECK_OK(aim_model_output(b.m, 0, &y, &ny));
            CHECK_OK(aim_model_lstm_final_state(b.m, 0, h, L * batch * H, c, L * batch * H, batch));
            const float *top = h + (L - 1) * batch * H;
            for (size_t i = 0; i < batch; i++) {
                const float *last = s->seq ? y + (i * T + T - 1) * H : y + i * H;
                assert_memory_equal(top + i * H, last, H * sizeof(float));
            }
            /* Each alone gives the same values; the cells are finite and not all zero. */
            for (size_t i = 0; i < L * batch * H; i++) h2[i] = c2[i] = NAN;
            CHECK_OK(aim_model_lstm_final_state(b.m, 0, h2, L * batch * H, NULL, 0, batch));
            CHECK_OK(aim_model_lstm_final_state(b.m, 0, NULL, 0, c2, L * batch * H, batch));
            assert_memory_equal(h2, h, L * batch * H * sizeof(float));
            assert_memory_equal(c2, c, L * batch * H * sizeof(float));
            double cmax = 0.0;
            for (size_t i = 0; i < L * batch * H; i++) {
                assert_true(isfinite(c[i]));
                cmax = fmax(cmax, fabs((double)c[i]));
            }
            assert_true(cmax > 0.01);
            if (s->state) CHECK_OK(aim_model_lstm_set_state(b.m, 0, NULL, 0, NULL, 0, 0));
            free(x);
            free(h);
            free(c);
            free(h2);
            free(c2);
        }
        aim_model_free(b.m);
    }
}

#define CHUNK_TOL 1e-5 /* test_golden.c's forward tolerance and floor */
#define CHUNK_FLOOR_FRAC 1e-2

static double g_worst_chunk;

static void expect_near(const char *what, const float *got, const float *ref, size_t n) {
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
    assert_true(scale > 0.0);
    size_t where = 0;
    double err = max_rel_error(got, ref, n, CHUNK_FLOOR_FRAC * scale, &where);
    g_worst_chunk = fmax(g_worst_chunk, err);
    if (!(err <= CHUNK_TOL))
        fail_msg("%s: rel err %.3g at %zu: %.9g, expected %.9g", what, err, where, (double)got[where],
                 (double)ref[where]);
}

/* A sequence of 2T steps run whole, and run as two halves of T steps where
 * the second starts from the first's final states (final_state -> set_state,
 * the way a caller carries state across chunks): the same outputs and final
 * states, from zero or given initial states, with 1 and 3 stacked layers.
 * This checks that final_state and set_state agree on the [layers, batch, H]
 * layout, and the final cell states c_n, which no output shows directly. */
static void test_state_carries_across_chunks(void **state) {
    (void)state;
    enum { B = 3, T = 4, F = 3, H = 5, MAXL = 3 };
    for (size_t L = 1; L <= MAXL; L += 2) {
        for (int given = 0; given < 2; given++) {
            const lstm_spec whole = {"", B, 2 * T, F, H, L, 1, 0, 0, 0, HEAD_NONE, 0};
            const lstm_spec half = {"", B, T, F, H, L, 1, 0, 0, 0, HEAD_NONE, 0};
            built bw = build_spec(&whole, 0), bh = build_spec(&half, 0);
            float *pw = NULL, *ph = NULL;
            size_t nw = 0, nh = 0;
            CHECK_OK(aim_model_parameters(bw.m, &pw, &nw));
            CHECK_OK(aim_model_parameters(bh.m, &ph, &nh));
            assert_int_equal(nw, nh); /* the parameters do not depend on the length */
            fill_point(&bw, 3 + L);
            memcpy(ph, pw, nw * sizeof *pw);

            float x[B * 2 * T * F], x1[B * T * F], x2[B * T * F];
            float h0[MAXL * B * H], c0[MAXL * B * H], hn[MAXL * B * H], cn[MAXL * B * H];
            float h1[MAXL * B * H], c1[MAXL * B * H], h2[MAXL * B * H], c2[MAXL * B * H];
            float yw[B * 2 * T * H], yref[B * T * H];
            fill_uniform(x, ARRAY_LEN(x), 77 + L, -1.0f, 1.0f);
            fill_uniform(h0, L * B * H, 78, -0.9f, 0.9f);
            fill_uniform(c0, L * B * H, 79, -1.5f, 1.5f);
            for (size_t b = 0; b < B; b++) {
                memcpy(x1 + b * T * F, x + b * 2 * T * F, T * F * sizeof(float));
                memcpy(x2 + b * T * F, x + (b * 2 * T + T) * F, T * F * sizeof(float));
            }
            const float *y = NULL;
            size_t ny = 0;
            /* The state arrays have room for MAXL layers; the first L * B * H floats are used. */
            const size_t ns = L * B * H;
            if (given) CHECK_OK(aim_model_lstm_set_state(bw.m, 0, h0, ns, c0, ns, B));
            CHECK_OK(aim_model_forward(bw.m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
            CHECK_OK(aim_model_output(bw.m, 0, &y, &ny));
            assert_int_equal(ny, ARRAY_LEN(yw));
            memcpy(yw, y, sizeof yw);
            CHECK_OK(aim_model_lstm_final_state(bw.m, 0, hn, ns, cn, ns, B));

            if (given) CHECK_OK(aim_model_lstm_set_state(bh.m, 0, h0, ns, c0, ns, B));
            CHECK_OK(aim_model_forward(bh.m, AIM_MODE_TRAIN, x1, ARRAY_LEN(x1), B));
            CHECK_OK(aim_model_output(bh.m, 0, &y, &ny));
            for (size_t b = 0; b < B; b++) memcpy(yref + b * T * H, yw + b * 2 * T * H, T * H * sizeof(float));
            expect_near("first half", y, yref, B * T * H);
            CHECK_OK(aim_model_lstm_final_state(bh.m, 0, h1, ns, c1, ns, B));
            CHECK_OK(aim_model_lstm_set_state(bh.m, 0, h1, ns, c1, ns, B));
            CHECK_OK(aim_model_forward(bh.m, AIM_MODE_TRAIN, x2, ARRAY_LEN(x2), B));
            CHECK_OK(aim_model_output(bh.m, 0, &y, &ny));
            for (size_t b = 0; b < B; b++)
                memcpy(yref + b * T * H, yw + (b * 2 * T + T) * H, T * H * sizeof(float));
            expect_near("second half", y, yref, B * T * H);
            CHECK_OK(aim_model_lstm_final_state(bh.m, 0, h2, ns, c2, ns, B));
            expect_near("h_n", h2, hn, L * B * H);
            expect_near("c_n", c2, cn, L * B * H);
            /* The inference forward uses the state too. */
            CHECK_OK(aim_model_forward(bh.m, AIM_MODE_INFERENCE, x2, ARRAY_LEN(x2), B));
            CHECK_OK(aim_model_output(bh.m, 0, &y, &ny));
            expect_near("second half (inference)", y, yref, B * T * H);
            aim_model_free(bw.m);
            aim_model_free(bh.m);
        }
    }
    print_message("chunked against whole sequences: worst rel err %.3g (tolerance %.0e)\n", g_worst_chunk,
                  CHUNK_TOL);
}

/* The backward differentiates the last training forward, whatever happens to
 * the model's initial states between the two: setting new states (for the
 * same or another batch) or clearing them must not change the gradients.
 * (A caller carrying states across chunks may well set the next chunk's
 * states, from aim_model_lstm_final_state(), before its backward.) */
static void test_backward_uses_the_forwards_state(void **state) {
    (void)state;
    enum { B = 2, T = 3, F = 2, H = 3, L = 2 };
    const lstm_spec s = {"", B, T, F, H, L, 0, 0, 0, 0, HEAD_NONE, 0};
    built b = build_spec(&s, 1);
    fill_point(&b, 9);
    float x[B * T * F], r[B * H], s1h[L * B * H], s1c[L * B * H], s2h[L * (B + 1) * H], s2c[L * (B + 1) * H];
    fill_uniform(x, ARRAY_LEN(x), 1, -1.0f, 1.0f);
    fill_uniform(r, ARRAY_LEN(r), 2, -1.0f, 1.0f);
    fill_uniform(s1h, ARRAY_LEN(s1h), 3, -0.9f, 0.9f);
    fill_uniform(s1c, ARRAY_LEN(s1c), 4, -1.5f, 1.5f);
    fill_uniform(s2h, ARRAY_LEN(s2h), 5, -0.9f, 0.9f);
    fill_uniform(s2c, ARRAY_LEN(s2c), 6, -1.5f, 1.5f);
    float *g = NULL, ref[512];
    size_t n = 0;
    const float *ig = NULL;
    size_t nig = 0;
    float ref_ig[B * T * F];

    CHECK_OK(aim_model_lstm_set_state(b.m, 0, s1h, ARRAY_LEN(s1h), s1c, ARRAY_LEN(s1c), B));
    CHECK_OK(aim_model_zero_grad(b.m));
    CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
    CHECK_OK(aim_model_backward(b.m, r, ARRAY_LEN(r)));
    CHECK_OK(aim_model_gradients(b.m, &g, &n));
    assert_true(n <= ARRAY_LEN(ref));
    memcpy(ref, g, n * sizeof *g);
    CHECK_OK(aim_model_input_gradient(b.m, 0, &ig, &nig));
    assert_int_equal(nig, ARRAY_LEN(ref_ig));
    memcpy(ref_ig, ig, sizeof ref_ig);

    static const char *const what[3] = {"new states for the same batch", "states for another batch",
                                        "states cleared"};
    int failures = 0;
    for (int k = 0; k < 3; k++) {
        CHECK_OK(aim_model_lstm_set_state(b.m, 0, s1h, ARRAY_LEN(s1h), s1c, ARRAY_LEN(s1c), B));
        CHECK_OK(aim_model_zero_grad(b.m));
        CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
        /* s2h and s2c hold states for B + 1 samples; batch B uses their first L * B * H floats. */
        if (k == 0) CHECK_OK(aim_model_lstm_set_state(b.m, 0, s2h, L * B * H, s2c, L * B * H, B));
        if (k == 1) CHECK_OK(aim_model_lstm_set_state(b.m, 0, s2h, ARRAY_LEN(s2h), s2c, ARRAY_LEN(s2c), B + 1));
        if (k == 2) CHECK_OK(aim_model_lstm_set_state(b.m, 0, NULL, 0, NULL, 0, 0));
        CHECK_OK(aim_model_backward(b.m, r, ARRAY_LEN(r)));
        CHECK_OK(aim_model_gradients(b.m, &g, &n));
        CHECK_OK(aim_model_input_gradient(b.m, 0, &ig, &nig));
        assert_int_equal(nig, ARRAY_LEN(ref_ig));
        /* Exact equality is expected; the errors printed are relative to the largest gradient. */
        size_t where = 0, wx = 0;
        double sp = 0.0, sx = 0.0;
        for (size_t i = 0; i < n; i++) sp = fmax(sp, fabs((double)ref[i]));
        for (size_t i = 0; i < B * T * F; i++) sx = fmax(sx, fabs((double)ref_ig[i]));
        double err = max_rel_error(g, ref, n, sp, &where), errx = max_rel_error(ig, ref_ig, B * T * F, sx, &wx);
        if (memcmp(g, ref, n * sizeof *g) != 0 || memcmp(ig, ref_ig, sizeof ref_ig) != 0) {
            print_error("%s between forward and backward changed the gradients: parameter %zu is %.9g, "
                        "the forward's states give %.9g (largest difference %.3g of the largest gradient); "
                        "input gradient: largest difference %.3g of the largest\n",
                        what[k], where, (double)g[where], (double)ref[where], err, errx);
            failures++;
        }
    }
    aim_model_free(b.m);
    assert_int_equal(failures, 0);
}

/* ======================================================================== */
/* 3. predict, allocation, layout, initialization                          */
/* ======================================================================== */

/* predict on a workspace computes what the inference forward computes, bit
 * for bit, at every batch size, and so does the training forward; a state set
 * on the model changes forward but not predict, which always starts from
 * zero. */
static void test_predict_equals_forward(void **state) {
    (void)state;
    static const lstm_spec specs[] = {
        {"", 3, 5, 3, 4, 1, 0, 0, 0, 0, HEAD_NONE, 0},
        {"", 3, 7, 4, 5, 2, 1, 0, 0, 0, HEAD_DENSE, 0},
        {"", 2, 3, 2, 3, 1, 1, 4, 2, 0, HEAD_NONE, 0},
        {"", 2, 1, 5, 6, 2, 1, 0, 0, 0, HEAD_FLATTEN, 0},
    };
    for (size_t k = 0; k < ARRAY_LEN(specs); k++) {
        const lstm_spec *s = &specs[k];
        built b = build_spec(s, 0);
        fill_point(&b, 21 + k);
        const size_t maxb = s->batch + 1, in = aim_model_input_size(b.m), out = aim_model_output_size(b.m);
        float *x = malloc(maxb * in * sizeof *x), *ref = malloc(maxb * out * sizeof *ref);
        float *got = malloc((maxb * out + 8) * sizeof *got);
        assert_true(x && ref && got);
        fill_uniform(x, maxb * in, 50 + k, -1.0f, 1.0f);
        aim_workspace *ws = NULL;
        CHECK_OK(aim_workspace_create(b.m, NULL, maxb, &ws));
        for (size_t batch = 1; batch <= maxb; batch++) {
            const float *y = NULL;
            size_t ny = 0;
            CHECK_OK(aim_model_forward(b.m, AIM_MODE_INFERENCE, x, batch * in, batch));
            CHECK_OK(aim_model_output(b.m, 0, &y, &ny));
            assert_int_equal(ny, batch * out);
            memcpy(ref, y, ny * sizeof *y);
            for (size_t i = 0; i < maxb * out + 8; i++) got[i] = NAN;
            CHECK_OK(aim_model_predict(b.m, ws, x, batch * in, batch, got, batch * out));
            assert_memory_equal(got, ref, ny * sizeof *got);
            for (size_t i = ny; i < maxb * out + 8; i++) assert_true(isnan(got[i])); /* nothing past batch * out */
            CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, x, batch * in, batch));
            CHECK_OK(aim_model_output(b.m, 0, &y, &ny));
            assert_memory_equal(y, ref, ny * sizeof *y);

            set_states(&b, batch, 60 + batch);
            CHECK_OK(aim_model_forward(b.m, AIM_MODE_INFERENCE, x, batch * in, batch));
            CHECK_OK(aim_model_output(b.m, 0, &y, &ny));
            assert_memory_not_equal(y, ref, ny * sizeof *y);
            CHECK_OK(aim_model_predict(b.m, ws, x, batch * in, batch, got, batch * out));
            assert_memory_equal(got, ref, ny * sizeof *got);
            for (size_t i = 0; i < b.n_lstm; i++)
                CHECK_OK(aim_model_lstm_set_state(b.m, b.lstm[i].index, NULL, 0, NULL, 0, 0));
        }
        aim_workspace_free(ws);
        free(x);
        free(ref);
        free(got);
        aim_model_free(b.m);
    }
}

/* After compile, training steps with states carried across steps, final
 * states, predicts and inference forwards make no allocator call. */
static void test_training_step_allocates_nothing(void **state) {
    (void)state;
    enum { B = 4, T = 6, F = 3, H = 8, L = 2, K = 5 };
    const size_t dims[2] = {T, F};
    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m = NULL;
    aim_lstm_config lc;
    aim_dense_config dc;
    aim_compile_config cc;
    CHECK_OK(aim_model_create(&ta.allocator, 2, dims, &m));
    CHECK_OK(aim_lstm_config_init(&lc, H, L));
    lc.return_sequences = 1;
    CHECK_OK(aim_model_add_lstm(m, &lc));
    CHECK_OK(aim_lstm_config_init(&lc, H, 1));
    CHECK_OK(aim_model_add_lstm(m, &lc));
    CHECK_OK(aim_dense_config_init(&dc, K, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = B;
    cc.input_gradient = 1;
    CHECK_OK(aim_model_compile(m, &cc));
    float *p = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_parameters(m, &p, &n));
    aim_optimizer *opt = NULL;
    aim_workspace *ws = NULL;
    CHECK_OK(aim_adam_create(&ta.allocator, NULL, n, &opt));
    CHECK_OK(aim_workspace_create(m, &ta.allocator, B, &ws));
    float x[B * T * F], out[B * K], h[L * B * H], c[L * B * H], h1[B * H], c1[B * H];
    int32_t labels[B];
    fill_uniform(x, ARRAY_LEN(x), 3, -1.0f, 1.0f);
    for (size_t i = 0; i < B; i++) labels[i] = (int32_t)(i % K);
    memset(h, 0, sizeof h);
    memset(c, 0, sizeof c);
    memset(h1, 0, sizeof h1);
    memset(c1, 0, sizeof c1);

    const long calls = ta.calls, live = ta.live;
    for (int s = 0; s < 40; s++) {
        const size_t batch = s < 20 ? B : (size_t)(s % B) + 1;
        float loss = 0.0f;
        const float *ig = NULL;
        size_t nig = 0;
        if (s < 20) { /* stateful: each step starts where the last ended (batch B fills the arrays) */
            CHECK_OK(aim_model_lstm_set_state(m, 0, h, ARRAY_LEN(h), c, ARRAY_LEN(c), batch));
            CHECK_OK(aim_model_lstm_set_state(m, 1, h1, ARRAY_LEN(h1), c1, ARRAY_LEN(c1), batch));
        } else {
            CHECK_OK(aim_model_lstm_set_state(m, 0, NULL, 0, NULL, 0, 0));
            CHECK_OK(aim_model_lstm_set_state(m, 1, NULL, 0, NULL, 0, 0));
        }
        /* Batches below B use the first batch samples of x, out and labels. */
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, batch * T * F, batch));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, batch, &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_model_input_gradient(m, 0, &ig, &nig));
        CHECK_OK(aim_optimizer_step_model(opt, m, 0.01f));
        if (s < 20) {
            CHECK_OK(aim_model_lstm_final_state(m, 0, h, ARRAY_LEN(h), c, ARRAY_LEN(c), batch));
            CHECK_OK(aim_model_lstm_final_state(m, 1, h1, ARRAY_LEN(h1), c1, ARRAY_LEN(c1), batch));
        }
        CHECK_OK(aim_model_predict(m, ws, x, batch * T * F, batch, out, batch * K));
        CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, batch * T * F, batch));
        assert_true(isfinite(loss));
    }
    if (ta.calls != calls) fail_msg("%ld allocator calls in 40 LSTM training steps", ta.calls - calls);
    assert_int_equal(ta.live, live);
    aim_workspace_free(ws);
    aim_optimizer_free(opt);
    aim_model_free(m);
    assert_int_equal(ta.live, 0);
}

/* Output shapes, the flat layout and the memory size. */
static void test_shapes_and_layout(void **state) {
    (void)state;
    const size_t dims[2] = {7, 5};
    aim_model *m = NULL;
    aim_lstm_config lc;
    aim_dense_config dc;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_lstm_config_init(&lc, 6, 2));
    lc.return_sequences = 1;
    CHECK_OK(aim_model_add_lstm(m, &lc));
    CHECK_OK(aim_lstm_config_init(&lc, 4, 3));
    CHECK_OK(aim_model_add_lstm(m, &lc));
    CHECK_OK(aim_dense_config_init(&dc, 2, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    size_t rank = 0, d[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, 0, &rank, d));
    assert_true(rank == 2 && d[0] == 7 && d[1] == 6);
    CHECK_OK(aim_model_layer_shape(m, 1, &rank, d));
    assert_true(rank == 1 && d[0] == 4);
    assert_int_equal(aim_model_input_size(m), 35);
    assert_int_equal(aim_model_output_size(m), 2);
    CHECK_OK(aim_model_compile(m, NULL));
    size_t off = 0, wc = 0, bc = 0, n = 0;
    float *p = NULL;
    CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
    assert_int_equal(off, 0);
    assert_int_equal(wc, (4 * 6 * (5 + 6) + 8 * 6) + (4 * 6 * (6 + 6) + 8 * 6));
    assert_int_equal(bc, 0);
    CHECK_OK(aim_model_layer_parameters(m, 1, &off, &wc, &bc));
    assert_int_equal(off, 648);
    assert_int_equal(wc, (4 * 4 * (6 + 4) + 8 * 4) + 2 * (4 * 4 * (4 + 4) + 8 * 4));
    assert_int_equal(bc, 0);
    CHECK_OK(aim_model_layer_parameters(m, 2, &off, &wc, &bc));
    assert_int_equal(off, 648 + 512);
    assert_true(wc == 8 && bc == 2);
    CHECK_OK(aim_model_parameters(m, &p, &n));
    assert_int_equal(n, 648 + 512 + 10);
    size_t bytes = 0;
    CHECK_OK(aim_model_memory_size(m, &bytes));
    assert_true(bytes > 2 * n * sizeof(float));
    aim_model_free(m);
}

/* The documented initializers, per stacked layer: PyTorch's
 * U(-1/sqrt(H), 1/sqrt(H)) everywhere; Glorot kernels with zero biases but 1
 * on the forget gate of b_ih; zeros. */
static void test_initializers(void **state) {
    (void)state;
    enum { T = 3, F = 5, H = 7, L = 2 };
    const size_t dims[2] = {T, F};
    static const aim_init inits[] = {AIM_INIT_PYTORCH, AIM_INIT_GLOROT_UNIFORM, AIM_INIT_HE_NORMAL, AIM_INIT_ZEROS};
    for (size_t k = 0; k < ARRAY_LEN(inits); k++) {
        aim_model *m = NULL;
        aim_lstm_config lc;
        aim_compile_config cc;
        CHECK_OK(aim_model_create(NULL, 2, dims, &m));
        CHECK_OK(aim_lstm_config_init(&lc, H, L));
        lc.init = inits[k];
        CHECK_OK(aim_model_add_lstm(m, &lc));
        CHECK_OK(aim_compile_config_init(&cc));
        cc.seed = 3;
        CHECK_OK(aim_model_compile(m, &cc));
        float *p = NULL;
        size_t n = 0;
        CHECK_OK(aim_model_parameters(m, &p, &n));
        assert_int_equal(n, stack_params(F, H, L));
        const float *q = p;
        for (size_t l = 0; l < L; l++) {
            const size_t in = l == 0 ? F : H, nw = 4 * H * in, nr = 4 * H * H;
            const float *wih = q, *whh = q + nw, *bih = whh + nr, *bhh = bih + 4 * H;
            q = bhh + 4 * H;
            double mx = 0.0;
            switch (inits[k]) {
            case AIM_INIT_PYTORCH: {
                const double bound = 1.0 / sqrt((double)H);
                for (const float *v = wih; v < q; v++) {
                    assert_true(fabs((double)*v) <= bound);
                    mx = fmax(mx, fabs((double)*v));
                }
                assert_true(mx > 0.9 * bound); /* the whole range is used */
                break;
            }
            case AIM_INIT_GLOROT_UNIFORM: {
                const double li = sqrt(6.0 / (double)(in + 4 * H)), lh = sqrt(6.0 / (double)(H + 4 * H));
                for (size_t i = 0; i < nw; i++) assert_true(fabs((double)wih[i]) <= li);
                for (size_t i = 0; i < nr; i++) assert_true(fabs((double)whh[i]) <= lh);
                for (size_t i = 0; i < nw; i++) mx = fmax(mx, fabs((double)wih[i]));
                assert_true(mx > 0.8 * li);
                for (size_t j = 0; j < 4 * H; j++) {
                    assert_true(bih[j] == (j >= H && j < 2 * H ? 1.0f : 0.0f)); /* i, f, g, o */
                    assert_true(bhh[j] == 0.0f);
                }
                break;
            }
            case AIM_INIT_HE_NORMAL:
                for (size_t i = 0; i < nw + nr; i++) {
                    assert_true(isfinite(wih[i]));
                    mx = fmax(mx, fabs((double)wih[i]));
                }
                assert_true(mx > 0.0);
                break;
            default:
                for (const float *v = wih; v < q; v++) assert_true(*v == 0.0f);
                break;
            }
        }
        assert_true(q == p + n);
        aim_model_free(m);
    }
}

/* An LSTM first layer without input_gradient skips dX of sub-layer 0 (dx
 * NULL in the kernel); the parameter gradients must not change. */
static void test_first_layer_without_input_gradient(void **state) {
    (void)state;
    const lstm_spec s = {"", 3, 4, 3, 4, 2, 1, 0, 0, 0, HEAD_DENSE, 0};
    float x[3 * 4 * 3], r[3 * HEAD_UNITS];
    float *g[2] = {NULL, NULL};
    size_t count[2] = {0, 0};
    built b[2];
    fill_uniform(x, ARRAY_LEN(x), 5, -1.0f, 1.0f);
    fill_uniform(r, ARRAY_LEN(r), 6, -1.0f, 1.0f);
    for (int k = 0; k < 2; k++) {
        b[k] = build_spec(&s, k);
        fill_point(&b[k], 3);
        CHECK_OK(aim_model_zero_grad(b[k].m));
        CHECK_OK(aim_model_forward(b[k].m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), s.batch));
        CHECK_OK(aim_model_backward(b[k].m, r, ARRAY_LEN(r)));
        CHECK_OK(aim_model_gradients(b[k].m, &g[k], &count[k]));
    }
    const float *ig = NULL;
    size_t nig = 0;
    assert_int_equal(aim_model_input_gradient(b[0].m, 0, &ig, &nig), AIM_ERR_INVALID_STATE);
    assert_int_equal(count[0], count[1]);
    assert_memory_equal(g[0], g[1], count[0] * sizeof(float));
    aim_model_free(b[0].m);
    aim_model_free(b[1].m);
}

/* A 2-layer LSTM classifier learns which of the first and last step has the
 * larger first feature: 60 Adam steps take the loss on a fixed batch from
 * ~log 2 to under a quarter of it. */
static void test_learns_a_sequence_task(void **state) {
    (void)state;
    enum { B = 16, T = 5, F = 2, H = 8 };
    const size_t dims[2] = {T, F};
    aim_model *m = NULL;
    aim_lstm_config lc;
    aim_dense_config dc;
    aim_compile_config cc;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_lstm_config_init(&lc, H, 2));
    CHECK_OK(aim_model_add_lstm(m, &lc));
    CHECK_OK(aim_dense_config_init(&dc, 2, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = B;
    cc.seed = 1;
    CHECK_OK(aim_model_compile(m, &cc));
    float *p = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_parameters(m, &p, &n));
    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, n, &opt));
    float x[B * T * F];
    int32_t labels[B];
    fill_uniform(x, ARRAY_LEN(x), 8, -1.0f, 1.0f);
    for (size_t i = 0; i < B; i++) labels[i] = x[i * T * F] > x[(i * T + T - 1) * F] ? 1 : 0;
    float first = 0.0f, last = 0.0f;
    for (int s = 0; s < 60; s++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, ARRAY_LEN(labels), &last));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(opt, m, 0.03f));
        if (s == 0) first = last;
    }
    print_message("loss %.4f -> %.4f\n", (double)first, (double)last);
    assert_true(last < 0.25f * first);
    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ======================================================================== */

static int print_summary(void **state) {
    (void)state;
    print_message("gradient checks: %zu values, worst |a - n| / allowed = %.3g (%s, %s)\n", g_worst.values,
                  g_worst.max_usage, g_worst.label, g_worst.part);
    return 0;
}

int main(void) {
    struct CMUnitTest tests[ARRAY_LEN(LSTM_SPECS) + 16];
    size_t n = 0;
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_checker_catches_a_corrupted_gradient);
    for (size_t i = 0; i < ARRAY_LEN(LSTM_SPECS); i++)
        tests[n++] = (struct CMUnitTest){LSTM_SPECS[i].name, test_lstm_gradients, NULL, NULL,
                                         (void *)&LSTM_SPECS[i]};
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_final_state_is_the_last_output),
        cmocka_unit_test(test_state_carries_across_chunks),
        cmocka_unit_test(test_backward_uses_the_forwards_state),
        cmocka_unit_test(test_predict_equals_forward),
        cmocka_unit_test(test_training_step_allocates_nothing),
        cmocka_unit_test(test_shapes_and_layout),
        cmocka_unit_test(test_initializers),
        cmocka_unit_test(test_first_layer_without_input_gradient),
        cmocka_unit_test(test_learns_a_sequence_task),
    };
    for (size_t i = 0; i < ARRAY_LEN(rest); i++) tests[n++] = rest[i];
    assert_true(n <= ARRAY_LEN(tests));
    return _cmocka_run_group_tests("test_lstm", tests, n, NULL, print_summary);
}
