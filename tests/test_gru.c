/* Tests of the GRU stack (src/layers/gru.c), of bidirectional GRU and LSTM
 * stacks (src/layers/gru.c, src/layers/lstm.c) and of what they share
 * (src/layers/rnn.c: aim_rnn_config_init, aim_model_add_rnn), through the
 * public API.
 *
 *  1. PyTorch goldens (golden/golden_gru.h, written by
 *     golden/gen_golden_gru.py with torch 1.13's nn.GRU and nn.LSTM in
 *     float64): GRU of 1 and 2 layers, every step and last step, from zero
 *     and from given h0; bidirectional GRU and LSTM, every step (with states)
 *     and last step; each checked for the output (inference and training
 *     forwards), h_n (and c_n), the gradient of every parameter tensor and of
 *     the input. A bidirectional 2-layer GRU classifier trained 3 Adam steps:
 *     losses, final parameters and updates. Metric and tolerances are
 *     test_golden_lstm.c's (see GOLDEN_* below).
 *  2. Central-difference gradient checks of every parameter tensor and of
 *     the input (tests/support.h's checker, test_lstm.c's tolerances and
 *     guards), for GRU and bidirectional GRU and LSTM stacks, 1 and 2 layers,
 *     every step and last step, with and without initial states, and one
 *     recurrent stack after another.
 *  3. States: h_n of the top layer is the last-step output (both
 *     directions); a sequence cut in two, the second half started from the
 *     first half's h_n, gives the whole sequence's outputs; the backward uses
 *     the state of the forward it follows; predict starts from zero.
 *  4. Serialization: bit-identical predictions after a round trip and an
 *     exact resume of Adam training (GRU, bidirectional GRU and LSTM, an
 *     LSTM as aim_model_add_lstm builds it); a version-2 buffer holding an
 *     LSTM (no bidirectional field) loads and predicts what the model built
 *     by hand predicts.
 *  5. The k-th allocation failure for every k in building, compiling,
 *     training with states, serializing, deserializing and predicting.
 *  6. The thread pool: training split over 2 and 3 threads against no pool
 *     (within a tolerance) and against the slices run one by one (bit for
 *     bit), with initial states and final states; predict split against not.
 *  7. The flat layout, shapes, initializers; aim_model_add_lstm is
 *     aim_model_add_rnn with AIM_RNN_LSTM; no allocation in a training step;
 *     a GRU classifier learns a sequence task.
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
#include "golden/golden_gru.h"

/* ======================================================================== */
/* Models                                                                   */
/* ======================================================================== */

/* One recurrent stack of a test model. */
typedef struct rnn_spec {
    aim_rnn_kind kind;
    size_t H, layers;
    int seq, bidir;
} rnn_spec;

/* What a test knows of a recurrent layer of a built model. */
typedef struct rnn_info {
    size_t index; /* layer index in the model */
    size_t in;    /* features it reads */
    rnn_spec s;
} rnn_info;

typedef enum head_kind { HEAD_NONE, HEAD_FLATTEN, HEAD_DENSE } head_kind;
#define HEAD_UNITS 3

typedef struct built {
    aim_model *m;
    size_t n_rnn;
    rnn_info rnn[2];
} built;

static size_t gates_of(aim_rnn_kind k) { return k == AIM_RNN_GRU ? 3 : 4; }
static size_t dirs_of(const rnn_spec *s) { return s->bidir ? 2 : 1; }

/* The four tensors of layer l, direction d (W_ih, W_hh, b_ih, b_hh). */
static void tensor_sizes(const rnn_spec *s, size_t in, size_t l, size_t sizes[4]) {
    const size_t GH = gates_of(s->kind) * s->H, inl = l == 0 ? in : dirs_of(s) * s->H;
    sizes[0] = GH * inl;
    sizes[1] = GH * s->H;
    sizes[2] = sizes[3] = GH;
}

static size_t stack_params(const rnn_spec *s, size_t in) {
    size_t n = 0, sz[4];
    for (size_t l = 0; l < s->layers; l++) {
        tensor_sizes(s, in, l, sz);
        n += dirs_of(s) * (sz[0] + sz[1] + sz[2] + sz[3]);
    }
    return n;
}

/* Floats of one initial state tensor (h0 or c0) of a stack at `batch`. */
static size_t state_floats(const rnn_spec *s, size_t batch) { return dirs_of(s) * s->layers * batch * s->H; }

static size_t out_features(const rnn_spec *s) { return dirs_of(s) * s->H; }

static void add_rnn(aim_model *m, const rnn_spec *s) {
    aim_rnn_config c;
    CHECK_OK(aim_rnn_config_init(&c, s->H, s->layers));
    assert_int_equal(c.return_sequences, 0); /* the documented defaults */
    assert_int_equal(c.bidirectional, 0);
    assert_int_equal(c.init, AIM_INIT_PYTORCH);
    c.return_sequences = s->seq;
    c.bidirectional = s->bidir;
    if (s->kind == AIM_RNN_GRU && s->layers % 2 == 1)
        CHECK_OK(aim_model_add_gru(m, &c)); /* the same call as add_rnn with AIM_RNN_GRU */
    else
        CHECK_OK(aim_model_add_rnn(m, s->kind, &c));
}

/* T x F sequences -> r[0] [-> r[1]] [-> head]; compiled for max_batch. */
static built build(size_t T, size_t F, const rnn_spec *r, size_t n_rnn, head_kind head, size_t max_batch,
                   int input_gradient, uint64_t seed) {
    built b;
    memset(&b, 0, sizeof b);
    const size_t dims[2] = {T, F};
    CHECK_OK(aim_model_create(NULL, 2, dims, &b.m));
    size_t in = F;
    for (size_t k = 0; k < n_rnn; k++) {
        assert_true(k == 0 || r[k - 1].seq);
        add_rnn(b.m, &r[k]);
        b.rnn[b.n_rnn++] = (rnn_info){k, in, r[k]};
        in = out_features(&r[k]);
    }
    if (head == HEAD_FLATTEN) CHECK_OK(aim_model_add_flatten(b.m));
    if (head == HEAD_DENSE) {
        aim_dense_config dc;
        CHECK_OK(aim_dense_config_init(&dc, HEAD_UNITS, AIM_ACT_TANH));
        CHECK_OK(aim_model_add_dense(b.m, &dc));
    }
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = max_batch;
    cc.input_gradient = input_gradient;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(b.m, &cc));
    /* The documented layout: one entry per stack, all weights, no bias. */
    for (size_t k = 0; k < b.n_rnn; k++) {
        size_t off = 0, wc = 0, bc = 0;
        CHECK_OK(aim_model_layer_parameters(b.m, b.rnn[k].index, &off, &wc, &bc));
        assert_int_equal(wc, stack_params(&b.rnn[k].s, b.rnn[k].in));
        assert_int_equal(bc, 0);
    }
    return b;
}

static const rnn_info *rnn_at(const built *b, size_t layer) {
    for (size_t k = 0; k < b->n_rnn; k++)
        if (b->rnn[k].index == layer) return &b->rnn[k];
    return NULL;
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
 * initializer: kernels +-[0.1, 1] / sqrt(fan_in), biases in [-0.5, 0.5). */
static void fill_point(const built *b, uint64_t seed) {
    float *p = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(b->m, &p, &count));
    for (size_t layer = 0; layer < aim_model_layer_count(b->m); layer++) {
        size_t off = 0, wc = 0, bc = 0;
        CHECK_OK(aim_model_layer_parameters(b->m, layer, &off, &wc, &bc));
        if (wc == 0) continue;
        const rnn_info *ri = rnn_at(b, layer);
        uint64_t s = seed * 101u + layer * 13u;
        if (!ri) { /* dense: weights [units, fan_in] */
            fill_kernel(p + off, wc, wc / bc, s);
            fill_uniform(p + off + wc, bc, s + 1, -0.5f, 0.5f);
            continue;
        }
        float *q = p + off;
        for (size_t l = 0; l < ri->s.layers; l++)
            for (size_t d = 0; d < dirs_of(&ri->s); d++) {
                size_t sz[4];
                tensor_sizes(&ri->s, ri->in, l, sz);
                const uint64_t k = s + 8 * l + 4 * d;
                fill_kernel(q, sz[0], sz[0] / (gates_of(ri->s.kind) * ri->s.H), k);
                fill_kernel(q + sz[0], sz[1], ri->s.H, k + 1);
                fill_uniform(q + sz[0] + sz[1], sz[2], k + 2, -0.5f, 0.5f);
                fill_uniform(q + sz[0] + sz[1] + sz[2], sz[3], k + 3, -0.5f, 0.5f);
                q += sz[0] + sz[1] + sz[2] + sz[3];
            }
        assert_true(q == p + off + wc);
    }
}

/* Sets the initial state(s) of a stack: h0 (and c0 for an LSTM), each
 * state_floats() values; c0 may be NULL for a GRU. */
static void set_state(aim_model *m, const rnn_info *ri, const float *h0, const float *c0, size_t batch) {
    const size_t n = state_floats(&ri->s, batch);
    if (ri->s.kind == AIM_RNN_GRU)
        CHECK_OK(aim_model_gru_set_state(m, ri->index, h0, h0 ? n : 0, batch));
    else
        CHECK_OK(aim_model_lstm_set_state(m, ri->index, h0, h0 ? n : 0, c0, c0 ? n : 0, batch));
}

/* Random initial states for every stack of a model: h in [-0.9, 0.9), c in [-1.5, 1.5). */
static void set_random_states(const built *b, size_t batch, uint64_t seed) {
    for (size_t k = 0; k < b->n_rnn; k++) {
        const size_t n = state_floats(&b->rnn[k].s, batch);
        float *h0 = malloc(n * sizeof *h0), *c0 = malloc(n * sizeof *c0);
        assert_true(h0 && c0);
        fill_uniform(h0, n, seed * 31u + k, -0.9f, 0.9f);
        fill_uniform(c0, n, seed * 37u + k, -1.5f, 1.5f);
        set_state(b->m, &b->rnn[k], h0, c0, batch);
        free(h0);
        free(c0);
    }
}

static void clear_states(const built *b) {
    for (size_t k = 0; k < b->n_rnn; k++) set_state(b->m, &b->rnn[k], NULL, NULL, 0);
}

/* h_n (and c_n when c is not NULL and the stack is an LSTM) after a training forward. */
static void final_state(aim_model *m, const rnn_info *ri, float *h, float *c, size_t batch) {
    const size_t n = state_floats(&ri->s, batch);
    if (ri->s.kind == AIM_RNN_GRU)
        CHECK_OK(aim_model_gru_final_state(m, ri->index, h, n, batch));
    else
        CHECK_OK(aim_model_lstm_final_state(m, ri->index, h, n, c, c ? n : 0, batch));
}

static const float *output_of(aim_model *m, size_t expected) {
    const float *y = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_output(m, 0, &y, &n));
    assert_int_equal(n, expected);
    return y;
}

/* ======================================================================== */
/* 1. PyTorch goldens                                                       */
/* ======================================================================== */

/* test_golden_lstm.c's metric (golden_rel_error(), tests/support.h: |got -
 * ref| / max(|ref|, floor), the floor 1% of the array's largest |ref|) and
 * tolerances: 1e-5 for outputs, states and losses, 1e-4 for gradients and
 * parameters, 1e-3 with a 10% floor for the updates (final - initial).
 * gen_golden_gru.py --check prints how far float32 PyTorch lands under the
 * same metric: at most 5.9e-6 for outputs and states, 8.2e-6 for
 * gradients, 2.2e-6 for parameters and 9.9e-6 for the update; the test
 * prints the worst of each kind it measures (5.9e-6, 1.3e-5, 1.6e-6 and
 * 2.0e-5 when written). */
#define GOLDEN_TOL_FORWARD 1e-5
#define GOLDEN_TOL_GRAD 1e-4
#define GOLDEN_TOL_TRAJ 1e-4
#define GOLDEN_TOL_UPDATE 1e-3
#define GOLDEN_FLOOR 1e-2
#define GOLDEN_UPDATE_FLOOR 0.1
#define WHAT_WIDTH 44

typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_PARAMS, CMP_UPDATE, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward/state", GOLDEN_TOL_FORWARD, GOLDEN_FLOOR, 0.0},
    {"gradient", GOLDEN_TOL_GRAD, GOLDEN_FLOOR, 0.0},
    {"parameters", GOLDEN_TOL_TRAJ, GOLDEN_FLOOR, 0.0},
    {"update", GOLDEN_TOL_UPDATE, GOLDEN_UPDATE_FLOOR, 0.0},
};

static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

static const char *const TENSOR_NAMES[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

/* Compares a flat parameter-shaped buffer of a stack tensor by tensor
 * (PyTorch's names: weight_ih_l0, ..., weight_ih_l0_reverse, ...), each on
 * its own scale, so a failure names the tensor; returns the floats compared. */
static size_t expect_tensors(const char *prefix, const float *got, const float *ref, const rnn_spec *s, size_t in,
                             cmp_kind kind) {
    size_t off = 0;
    for (size_t l = 0; l < s->layers; l++)
        for (size_t d = 0; d < dirs_of(s); d++) {
            size_t sz[4];
            tensor_sizes(s, in, l, sz);
            for (size_t k = 0; k < 4; k++) {
                char what[64];
                snprintf(what, sizeof what, "%s%s_l%zu%s", prefix, TENSOR_NAMES[k], l, d ? "_reverse" : "");
                expect_close(what, got + off, ref + off, sz[k], kind);
                off += sz[k];
            }
        }
    return off;
}

enum { A_B = GOLDEN_RNN_BATCH, A_T = GOLDEN_RNN_T, A_F = GOLDEN_RNN_F, A_H = GOLDEN_RNN_H };

typedef struct golden_case {
    const char *name;
    rnn_spec s;
    const float *params;
    size_t n_params;
    const float *g, *h0, *c0; /* h0, c0: NULL for zero states */
    const float *out, *hn, *cn, *dparams, *dx;
    size_t n_out;
} golden_case;

#define GCASE(c, C, kind, layers, seq, bidir, h0, c0, cn)                                                     \
    {#c, {kind, A_H, layers, seq, bidir}, golden_##c##_params, GOLDEN_##C##_PARAMS, golden_##c##_g, h0, c0, \
     golden_##c##_out, golden_##c##_hn, cn, golden_##c##_dparams, golden_##c##_dx, ARRAY_LEN(golden_##c##_out)}

static const golden_case GOLDEN_CASES[] = {
    GCASE(gru2, GRU2, AIM_RNN_GRU, 2, 1, 0, NULL, NULL, NULL),
    GCASE(gru2_state, GRU2_STATE, AIM_RNN_GRU, 2, 1, 0, golden_gru2_state_h0, NULL, NULL),
    GCASE(gru1_last, GRU1_LAST, AIM_RNN_GRU, 1, 0, 0, NULL, NULL, NULL),
    GCASE(gru2_last_state, GRU2_LAST_STATE, AIM_RNN_GRU, 2, 0, 0, golden_gru2_last_state_h0, NULL, NULL),
    GCASE(bigru2_state, BIGRU2_STATE, AIM_RNN_GRU, 2, 1, 1, golden_bigru2_state_h0, NULL, NULL),
    GCASE(bigru2_last, BIGRU2_LAST, AIM_RNN_GRU, 2, 0, 1, NULL, NULL, NULL),
    GCASE(bilstm2_state, BILSTM2_STATE, AIM_RNN_LSTM, 2, 1, 1, golden_bilstm2_state_h0, golden_bilstm2_state_c0,
          golden_bilstm2_state_cn),
    GCASE(bilstm1_last, BILSTM1_LAST, AIM_RNN_LSTM, 1, 0, 1, NULL, NULL, golden_bilstm1_last_cn),
};

static void test_golden(void **state) {
    const golden_case *c = *state;
    const size_t ns = state_floats(&c->s, A_B), n_out = c->n_out;
    built b = build(A_T, A_F, &c->s, 1, HEAD_NONE, A_B, 1, 1);
    assert_int_equal(aim_model_output_size(b.m), c->s.seq ? A_T * out_features(&c->s) : out_features(&c->s));
    assert_int_equal(n_out, A_B * aim_model_output_size(b.m));
    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(b.m, &params, &count));
    assert_int_equal(count, c->n_params);
    memcpy(params, c->params, count * sizeof *params); /* nn.GRU's / nn.LSTM's order */
    if (c->h0) set_state(b.m, &b.rnn[0], c->h0, c->c0, A_B);

    /* Inference keeps no cache (one direction's gates at a time): it must agree too. */
    CHECK_OK(aim_model_forward(b.m, AIM_MODE_INFERENCE, golden_rnn_x, ARRAY_LEN(golden_rnn_x), A_B));
    expect_close("out (inference)", output_of(b.m, n_out), c->out, n_out, CMP_FORWARD);

    CHECK_OK(aim_model_zero_grad(b.m));
    CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, golden_rnn_x, ARRAY_LEN(golden_rnn_x), A_B));
    expect_close("out", output_of(b.m, n_out), c->out, n_out, CMP_FORWARD);
    float *hn = malloc(ns * sizeof *hn), *cn = malloc(ns * sizeof *cn);
    assert_true(hn && cn);
    final_state(b.m, &b.rnn[0], hn, c->cn ? cn : NULL, A_B);
    expect_close("h_n", hn, c->hn, ns, CMP_FORWARD);
    if (c->cn) expect_close("c_n", cn, c->cn, ns, CMP_FORWARD);

    CHECK_OK(aim_model_backward(b.m, c->g, n_out));
    float *grads = NULL;
    size_t gcount = 0;
    CHECK_OK(aim_model_gradients(b.m, &grads, &gcount));
    assert_int_equal(gcount, count);
    assert_int_equal(expect_tensors("d", grads, c->dparams, &c->s, A_F, CMP_GRAD), count);
    const float *dx = NULL;
    size_t ndx = 0;
    CHECK_OK(aim_model_input_gradient(b.m, 0, &dx, &ndx));
    assert_int_equal(ndx, ARRAY_LEN(golden_rnn_x));
    expect_close("dX", dx, c->dx, ndx, CMP_GRAD);

    /* predict starts from zero states: PyTorch's output for a zero-state case. */
    if (!c->h0) {
        aim_workspace *ws = NULL;
        float *out = malloc(n_out * sizeof *out);
        assert_non_null(out);
        CHECK_OK(aim_workspace_create(b.m, NULL, A_B, &ws));
        CHECK_OK(aim_model_predict(b.m, ws, golden_rnn_x, ARRAY_LEN(golden_rnn_x), A_B, out, n_out));
        expect_close("out (predict)", out, c->out, n_out, CMP_FORWARD);
        aim_workspace_free(ws);
        free(out);
    }
    free(hn);
    free(cn);
    aim_model_free(b.m);
}

/* b) The classifier: 3 Adam steps on sparse cross-entropy. */
static void test_golden_classifier_adam(void **state) {
    (void)state;
    enum { C_B = GOLDEN_GRUC_BATCH, C_T = GOLDEN_GRUC_T, C_F = GOLDEN_GRUC_F, C_H = GOLDEN_GRUC_H,
           C_K = GOLDEN_GRUC_CLASSES, C_P = GOLDEN_GRUC_PARAMS };
    const rnn_spec s = {AIM_RNN_GRU, C_H, GOLDEN_GRUC_LAYERS, 0, 1};
    const size_t dims[2] = {C_T, C_F};
    aim_model *m = NULL;
    aim_rnn_config rc;
    aim_dense_config dc;
    aim_compile_config cc;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_rnn_config_init(&rc, C_H, GOLDEN_GRUC_LAYERS));
    rc.bidirectional = 1;
    CHECK_OK(aim_model_add_gru(m, &rc));
    CHECK_OK(aim_dense_config_init(&dc, C_K, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = C_B;
    CHECK_OK(aim_model_compile(m, &cc));
    float *params = NULL;
    size_t count = 0, off = 0, wc = 0, bc = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, C_P);
    CHECK_OK(aim_model_layer_parameters(m, 1, &off, &wc, &bc));
    assert_int_equal(off, GOLDEN_GRUC_GRU_PARAMS);
    assert_true(wc == C_K * 2 * C_H && bc == C_K);
    memcpy(params, golden_gruc_params0, sizeof golden_gruc_params0);

    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, count, &opt));
    float losses[GOLDEN_GRUC_STEPS];
    for (size_t t = 0; t < GOLDEN_GRUC_STEPS; t++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_gruc_x, ARRAY_LEN(golden_gruc_x), C_B));
        CHECK_OK(aim_model_loss_sparse(m, 0, golden_gruc_labels, ARRAY_LEN(golden_gruc_labels), &losses[t]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(opt, m, GOLDEN_GRUC_LR));
    }
    expect_close("loss of each step", losses, golden_gruc_losses, GOLDEN_GRUC_STEPS, CMP_FORWARD);
    float *dgot = malloc(count * sizeof *dgot), *dref = malloc(count * sizeof *dref);
    assert_true(dgot && dref);
    for (size_t i = 0; i < count; i++) {
        dgot[i] = params[i] - golden_gruc_params0[i];
        dref[i] = golden_gruc_params_final[i] - golden_gruc_params0[i];
    }
    assert_int_equal(expect_tensors("final ", params, golden_gruc_params_final, &s, C_F, CMP_PARAMS), off);
    assert_int_equal(expect_tensors("update ", dgot, dref, &s, C_F, CMP_UPDATE), off);
    expect_close("final dense W", params + off, golden_gruc_params_final + off, wc, CMP_PARAMS);
    expect_close("final dense b", params + off + wc, golden_gruc_params_final + off + wc, bc, CMP_PARAMS);
    expect_close("update dense W", dgot + off, dref + off, wc, CMP_UPDATE);
    expect_close("update dense b", dgot + off + wc, dref + off + wc, bc, CMP_UPDATE);
    free(dgot);
    free(dref);
    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ======================================================================== */
/* 2. Gradient checks                                                       */
/* ======================================================================== */

/* test_lstm.c's tolerance, and for the same reasons: L = sum(Y R) summed in
 * double from float32 outputs; inputs in [-1, 1), R in +-[0.25, 1], the
 * point of fill_point() and set_random_states(), so every pre-activation is
 * O(1); the truncation error h^2/6 |L'''| of sigmoids and tanh over at most
 * 5 steps is ~1e-4, the rounding of L(v+h) - L(v-h) ~5e-5 in n. A wrong gate
 * order, a dropped term or a wrong derivative moves values by O(0.1). The
 * run prints the worst usage of the tolerance. */
static const gradcheck_tol GC_TOL = {1e-2, 1e-2, 1e-3}; /* h, rtol, atol */
static gradcheck_worst g_worst;

static void gc_expect(const char *label, const char *part, const float *a, const double *num, size_t n,
                      gradcheck_guard guard, double *max_a) {
    char why[GRADCHECK_WHY];
    if (!gradcheck_part(label, part, a, num, n, &GC_TOL, guard, &g_worst, max_a, why, sizeof why))
        fail_msg("%s", why);
}

typedef struct gc_spec {
    const char *name;
    size_t batch, T, F;
    rnn_spec r[2];
    size_t n_rnn;
    head_kind head;
    int state;
} gc_spec;

#define GRU(H, L, seq, bi) {AIM_RNN_GRU, H, L, seq, bi}
#define LSTM(H, L, seq, bi) {AIM_RNN_LSTM, H, L, seq, bi}
#define NO_RNN {AIM_RNN_GRU, 0, 0, 0, 0}

static const gc_spec GC_SPECS[] = {
    /* name                                  B  T  F  stacks                                 n head state */
    {"gru T1 last step",                     1, 1, 2, {GRU(3, 1, 0, 0), NO_RNN},             1, HEAD_NONE, 0},
    {"gru T4 sequence",                      2, 4, 3, {GRU(4, 1, 1, 0), NO_RNN},             1, HEAD_NONE, 0},
    {"gru 2 layers T3 last step, dense",     2, 3, 4, {GRU(3, 2, 0, 0), NO_RNN},             1, HEAD_DENSE, 0},
    {"gru 2 layers T5 sequence, flatten",    2, 5, 2, {GRU(3, 2, 1, 0), NO_RNN},             1, HEAD_FLATTEN, 0},
    {"bigru T3 sequence",                    2, 3, 3, {GRU(3, 1, 1, 1), NO_RNN},             1, HEAD_NONE, 0},
    {"bigru 2 layers T4 last step, dense",   2, 4, 2, {GRU(3, 2, 0, 1), NO_RNN},             1, HEAD_DENSE, 0},
    {"bigru T1 sequence",                    3, 1, 3, {GRU(4, 1, 1, 1), NO_RNN},             1, HEAD_NONE, 0},
    {"bilstm T3 sequence",                   2, 3, 2, {LSTM(3, 1, 1, 1), NO_RNN},            1, HEAD_NONE, 0},
    {"bilstm 2 layers T3 last step",         2, 3, 3, {LSTM(3, 2, 0, 1), NO_RNN},            1, HEAD_NONE, 0},
    {"gru seq -> bigru last, dense",         2, 3, 3, {GRU(3, 1, 1, 0), GRU(2, 1, 0, 1)},    2, HEAD_DENSE, 0},
    {"state, gru T1 last step",              2, 1, 3, {GRU(4, 1, 0, 0), NO_RNN},             1, HEAD_NONE, 1},
    {"state, gru 2 layers T4 sequence",      2, 4, 2, {GRU(3, 2, 1, 0), NO_RNN},             1, HEAD_NONE, 1},
    {"state, bigru 2 layers T3 last, dense", 2, 3, 2, {GRU(3, 2, 0, 1), NO_RNN},             1, HEAD_DENSE, 1},
    {"state, bigru T4 sequence",             1, 4, 3, {GRU(3, 1, 1, 1), NO_RNN},             1, HEAD_NONE, 1},
    {"state, bilstm 2 layers T3 sequence",   2, 3, 2, {LSTM(3, 2, 1, 1), NO_RNN},            1, HEAD_NONE, 1},
    {"state, bilstm T1 last step",           2, 1, 3, {LSTM(3, 1, 0, 1), NO_RNN},            1, HEAD_NONE, 1},
    {"state, bilstm seq -> gru 2 layers",    2, 3, 2, {LSTM(3, 1, 1, 1), GRU(3, 2, 0, 0)},   2, HEAD_NONE, 1},
};

/* Draws the point of a case (parameters, states, input, R). */
static gradcheck_case draw_case(const built *b, const gc_spec *s, uint64_t seed) {
    const size_t in = aim_model_input_size(b->m), out = aim_model_output_size(b->m);
    float *x = malloc(s->batch * in * sizeof *x), *r = malloc(s->batch * out * sizeof *r);
    assert_true(x && r);
    fill_point(b, seed);
    if (s->state) set_random_states(b, s->batch, seed);
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

/* Checks every tensor of a case; returns the largest |analytic| seen. */
static double gc_check_parts(const built *b, const gradcheck_result *r, const char *label, size_t T, int state) {
    double max_a = 0.0;
    size_t covered = 0;
    for (size_t layer = 0; layer < aim_model_layer_count(b->m); layer++) {
        size_t off = 0, wc = 0, bc = 0;
        char part[96];
        CHECK_OK(aim_model_layer_parameters(b->m, layer, &off, &wc, &bc));
        covered += wc + bc;
        const rnn_info *ri = rnn_at(b, layer);
        if (!ri) {
            if (wc) {
                snprintf(part, sizeof part, "layer %zu weight", layer);
                gc_expect(label, part, r->ap + off, r->num_p + off, wc, GRADCHECK_DENSE, &max_a);
                snprintf(part, sizeof part, "layer %zu bias", layer);
                gc_expect(label, part, r->ap + off + wc, r->num_p + off + wc, bc, GRADCHECK_DENSE, &max_a);
            }
            continue;
        }
        size_t at = off;
        for (size_t l = 0; l < ri->s.layers; l++)
            for (size_t d = 0; d < dirs_of(&ri->s); d++) {
                size_t sz[4];
                tensor_sizes(&ri->s, ri->in, l, sz);
                for (size_t t = 0; t < 4; t++) {
                    /* W_hh multiplies h_{t-1}: nothing to learn from one step that starts at h = 0. */
                    gradcheck_guard g = (t == 1 && T == 1 && !state) ? GRADCHECK_EXACT_ZERO : GRADCHECK_DENSE;
                    snprintf(part, sizeof part, "layer %zu %s_l%zu%s", layer, TENSOR_NAMES[t], l, d ? "_reverse" : "");
                    gc_expect(label, part, r->ap + at, r->num_p + at, sz[t], g, &max_a);
                    at += sz[t];
                }
                /* The LSTM's biases enter every pre-activation alike, and the
                 * GRU's do in the r and z gates: equal gradients, exactly. */
                const size_t same = ri->s.kind == AIM_RNN_GRU ? 2 * ri->s.H : sz[2];
                assert_memory_equal(r->ap + at - 2 * sz[2], r->ap + at - sz[2], same * sizeof(float));
                if (ri->s.kind == AIM_RNN_GRU) /* ... but not in n, where r multiplies the recurrent side */
                    assert_memory_not_equal(r->ap + at - 2 * sz[2] + same, r->ap + at - sz[2] + same,
                                            ri->s.H * sizeof(float));
            }
        assert_int_equal(at, off + wc);
    }
    assert_int_equal(covered, r->count);
    gc_expect(label, "input", r->ax, r->num_x, r->nx, GRADCHECK_SPARSE, &max_a);
    return max_a;
}

static void test_gradients(void **state) {
    const gc_spec *s = *state;
    static const uint64_t seeds[2] = {11, 29};
    for (size_t k = 0; k < 2; k++) {
        built b = build(s->T, s->F, s->r, s->n_rnn, s->head, s->batch + 1, 1, 7);
        char label[160];
        snprintf(label, sizeof label, "%s, seed %llu", s->name, (unsigned long long)seeds[k]);
        gradcheck_case c = draw_case(&b, s, seeds[k]);
        gradcheck_result r;
        char why[GRADCHECK_WHY];
        if (!gradcheck_run(&c, GC_TOL.h, &r, why, sizeof why)) {
            gradcheck_result_free(&r);
            fail_msg("%s", why);
        }
        const double max_a = gc_check_parts(&b, &r, label, s->T, s->state);
        if (!gradcheck_case_ok(label, max_a, GRADCHECK_DENSE, why, sizeof why)) fail_msg("%s", why);
        gradcheck_result_free(&r);
        free_case(&c);
        aim_model_free(b.m);
    }
}

/* The state cases test the states' terms: the analytic gradients of the same
 * point without the states disagree with the numeric ones with them (for
 * W_hh, whose only input at the first step is h0, and for the input). */
static void test_state_cases_depend_on_the_state(void **state) {
    (void)state;
    size_t cases = 0;
    for (size_t k = 0; k < ARRAY_LEN(GC_SPECS); k++) {
        const gc_spec *s = &GC_SPECS[k];
        if (!s->state) continue;
        cases++;
        built b = build(s->T, s->F, s->r, s->n_rnn, s->head, s->batch + 1, 1, 7);
        gradcheck_case c = draw_case(&b, s, 17);
        gradcheck_result res;
        char why[GRADCHECK_WHY];
        if (!gradcheck_run(&c, GC_TOL.h, &res, why, sizeof why)) fail_msg("%s", why);
        clear_states(&b);
        float *ap0 = malloc(res.count * sizeof *ap0), *ax0 = malloc(res.nx * sizeof *ax0);
        assert_true(ap0 && ax0);
        if (!gradcheck_analytic(&c, ap0, res.count, ax0, why, sizeof why)) fail_msg("%s", why);
        size_t sz[4];
        tensor_sizes(&s->r[0], s->F, 0, sz);
        gradcheck_stats st = gradcheck_compare(ap0 + sz[0], res.num_p + sz[0], sz[1], &GC_TOL);
        print_message("%s: zero-state W_hh_l0 against the state case: %zu of %zu disagree\n", s->name,
                      st.mismatches, sz[1]);
        assert_true(st.mismatches >= sz[1] / 2);
        st = gradcheck_compare(ax0, res.num_x, res.nx, &GC_TOL);
        assert_true(st.mismatches > 0);
        free(ap0);
        free(ax0);
        gradcheck_result_free(&res);
        free_case(&c);
        aim_model_free(b.m);
    }
    assert_int_equal(cases, 7);
}

/* ======================================================================== */
/* 3. States                                                                */
/* ======================================================================== */

/* h_n of the top layer is the last-step output bit for bit: the forward
 * direction's is the first half, the reverse direction's the second; a
 * sequence output's last step (forward) and first step (reverse) too. */
static void test_final_state_is_the_last_output(void **state) {
    (void)state;
    static const rnn_spec specs[] = {GRU(5, 1, 0, 0), GRU(4, 2, 0, 0), GRU(3, 3, 1, 0), GRU(4, 2, 0, 1),
                                     GRU(3, 1, 1, 1), LSTM(4, 2, 0, 1), LSTM(3, 1, 1, 1)};
    enum { T = 4, F = 3, MAXB = 3 };
    for (size_t k = 0; k < ARRAY_LEN(specs); k++) {
        for (int with_state = 0; with_state < 2; with_state++) {
            const rnn_spec *s = &specs[k];
            built b = build(T, F, s, 1, HEAD_NONE, MAXB, 0, 3);
            fill_point(&b, 5 + k);
            const size_t H = s->H, D = dirs_of(s), L = s->layers;
            for (size_t batch = 1; batch <= MAXB; batch++) {
                const size_t ns = state_floats(s, batch), ny = batch * aim_model_output_size(b.m);
                float x[MAXB * T * F], h[3 * 2 * MAXB * 5], c[3 * 2 * MAXB * 5];
                assert_true(ns <= ARRAY_LEN(h));
                fill_uniform(x, batch * T * F, 40 + k, -1.0f, 1.0f);
                if (with_state) set_random_states(&b, batch, 3 + batch);
                CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, x, batch * T * F, batch));
                const float *y = output_of(b.m, ny);
                final_state(b.m, &b.rnn[0], h, s->kind == AIM_RNN_LSTM ? c : NULL, batch);
                for (size_t i = 0; i < batch; i++)
                    for (size_t d = 0; d < D; d++) {
                        const float *top = h + ((L - 1) * D + d) * batch * H + i * H;
                        const size_t t = d ? 0 : T - 1; /* the step after which direction d ends */
                        const float *yo = s->seq ? y + (i * T + t) * D * H + d * H : y + i * D * H + d * H;
                        assert_memory_equal(top, yo, H * sizeof(float));
                    }
                if (with_state) clear_states(&b);
            }
            aim_model_free(b.m);
        }
    }
}

/* Outputs of a unidirectional GRU on two halves of a sequence, the second
 * started from the first's h_n, against the whole sequence: the same
 * arithmetic but for GEMMs over fewer rows, which OpenBLAS may sum in
 * another order (a few float ulp). */
#define CHUNK_TOL 1e-5
static void test_state_carries_across_chunks(void **state) {
    (void)state;
    enum { B = 3, T = 4, F = 3, H = 5 };
    for (size_t L = 1; L <= 3; L += 2) {
        for (int given = 0; given < 2; given++) {
            const rnn_spec s = GRU(H, L, 1, 0);
            built bw = build(2 * T, F, &s, 1, HEAD_NONE, B, 0, 1), bh = build(T, F, &s, 1, HEAD_NONE, B, 0, 1);
            float *pw = NULL, *ph = NULL;
            size_t nw = 0, nh = 0;
            CHECK_OK(aim_model_parameters(bw.m, &pw, &nw));
            CHECK_OK(aim_model_parameters(bh.m, &ph, &nh));
            assert_int_equal(nw, nh);
            fill_point(&bw, 3 + L);
            memcpy(ph, pw, nw * sizeof *pw);
            float x[B * 2 * T * F], x1[B * T * F], x2[B * T * F], h0[3 * B * H], hn[3 * B * H], h1[3 * B * H];
            float yw[B * 2 * T * H], yref[B * T * H];
            fill_uniform(x, ARRAY_LEN(x), 77 + L, -1.0f, 1.0f);
            fill_uniform(h0, L * B * H, 78, -0.9f, 0.9f);
            for (size_t b = 0; b < B; b++) {
                memcpy(x1 + b * T * F, x + b * 2 * T * F, T * F * sizeof(float));
                memcpy(x2 + b * T * F, x + (b * 2 * T + T) * F, T * F * sizeof(float));
            }
            if (given) set_state(bw.m, &bw.rnn[0], h0, NULL, B);
            CHECK_OK(aim_model_forward(bw.m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
            memcpy(yw, output_of(bw.m, ARRAY_LEN(yw)), sizeof yw);
            final_state(bw.m, &bw.rnn[0], hn, NULL, B);
            if (given) set_state(bh.m, &bh.rnn[0], h0, NULL, B);
            CHECK_OK(aim_model_forward(bh.m, AIM_MODE_TRAIN, x1, ARRAY_LEN(x1), B));
            for (size_t b = 0; b < B; b++) memcpy(yref + b * T * H, yw + b * 2 * T * H, T * H * sizeof(float));
            assert_true(max_rel_error(output_of(bh.m, B * T * H), yref, B * T * H, 1e-3, NULL) <= CHUNK_TOL);
            final_state(bh.m, &bh.rnn[0], h1, NULL, B);
            set_state(bh.m, &bh.rnn[0], h1, NULL, B);
            for (int mode = 0; mode < 2; mode++) { /* the inference forward uses the state too */
                CHECK_OK(aim_model_forward(bh.m, mode ? AIM_MODE_INFERENCE : AIM_MODE_TRAIN, x2, ARRAY_LEN(x2), B));
                for (size_t b = 0; b < B; b++)
                    memcpy(yref + b * T * H, yw + (b * 2 * T + T) * H, T * H * sizeof(float));
                const double e = max_rel_error(output_of(bh.m, B * T * H), yref, B * T * H, 1e-3, NULL);
                if (e > CHUNK_TOL) fail_msg("L %zu given %d mode %d: second half off by %.3g", L, given, mode, e);
                if (mode == 0) {
                    final_state(bh.m, &bh.rnn[0], h1, NULL, B);
                    assert_true(max_rel_error(h1, hn, L * B * H, 1e-3, NULL) <= CHUNK_TOL);
                }
            }
            aim_model_free(bw.m);
            aim_model_free(bh.m);
        }
    }
}

/* The backward differentiates the last training forward whatever happens to
 * the initial state between the two (set for the next chunk, or cleared);
 * predict always starts from zero. */
static void test_backward_uses_the_forwards_state(void **state) {
    (void)state;
    enum { B = 2, T = 3, F = 2, H = 3 };
    static const rnn_spec specs[] = {GRU(H, 2, 0, 1), LSTM(H, 2, 0, 1)};
    for (size_t k = 0; k < ARRAY_LEN(specs); k++) {
        built b = build(T, F, &specs[k], 1, HEAD_NONE, B, 1, 1);
        fill_point(&b, 9);
        const size_t ny = B * 2 * H, ns = state_floats(&specs[k], B);
        float x[B * T * F], r[B * 2 * H], g_ref[1024], y_state[B * 2 * H], y_zero[B * 2 * H], out[B * 2 * H];
        float other[64];
        fill_uniform(x, ARRAY_LEN(x), 3, -1.0f, 1.0f);
        fill_uniform(r, ARRAY_LEN(r), 4, -1.0f, 1.0f);
        fill_uniform(other, ns, 5, -0.5f, 0.5f);
        float *g = NULL;
        size_t n = 0;
        CHECK_OK(aim_model_forward(b.m, AIM_MODE_INFERENCE, x, ARRAY_LEN(x), B));
        memcpy(y_zero, output_of(b.m, ny), sizeof y_zero);
        set_random_states(&b, B, 6);
        for (int variant = 0; variant < 3; variant++) {
            CHECK_OK(aim_model_zero_grad(b.m));
            CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), B));
            memcpy(y_state, output_of(b.m, ny), sizeof y_state);
            assert_memory_not_equal(y_state, y_zero, sizeof y_zero);
            if (variant == 1) clear_states(&b);
            if (variant == 2) set_state(b.m, &b.rnn[0], other, other, B);
            CHECK_OK(aim_model_backward(b.m, r, ARRAY_LEN(r)));
            CHECK_OK(aim_model_gradients(b.m, &g, &n));
            assert_true(n <= ARRAY_LEN(g_ref));
            if (variant == 0)
                memcpy(g_ref, g, n * sizeof *g);
            else
                assert_memory_equal(g, g_ref, n * sizeof *g);
            set_random_states(&b, B, 6);
        }
        aim_workspace *ws = NULL;
        CHECK_OK(aim_workspace_create(b.m, NULL, B, &ws));
        CHECK_OK(aim_model_predict(b.m, ws, x, ARRAY_LEN(x), B, out, ARRAY_LEN(out)));
        assert_memory_equal(out, y_zero, sizeof out);
        aim_workspace_free(ws);
        aim_model_free(b.m);
    }
}

/* predict equals the inference and training forwards bit for bit at every
 * batch up to max_batch, and writes nothing past its output. */
static void test_predict_equals_forward(void **state) {
    (void)state;
    static const rnn_spec specs[][2] = {{GRU(4, 2, 1, 0), GRU(3, 1, 0, 1)}, {GRU(5, 2, 0, 1), NO_RNN},
                                        {LSTM(3, 2, 1, 1), NO_RNN}, {GRU(3, 1, 1, 1), LSTM(2, 1, 0, 0)}};
    enum { T = 3, F = 4, MAXB = 4 };
    for (size_t k = 0; k < ARRAY_LEN(specs); k++) {
        const size_t n_rnn = specs[k][1].H ? 2 : 1;
        built b = build(T, F, specs[k], n_rnn, HEAD_DENSE, MAXB, 0, 2);
        fill_point(&b, 21 + k);
        const size_t in = T * F, out = aim_model_output_size(b.m);
        float x[MAXB * T * F], ref[MAXB * HEAD_UNITS], got[MAXB * HEAD_UNITS + 8];
        fill_uniform(x, ARRAY_LEN(x), 50 + k, -1.0f, 1.0f);
        aim_workspace *ws = NULL;
        CHECK_OK(aim_workspace_create(b.m, NULL, MAXB, &ws));
        for (size_t batch = 1; batch <= MAXB; batch++) {
            CHECK_OK(aim_model_forward(b.m, AIM_MODE_INFERENCE, x, batch * in, batch));
            memcpy(ref, output_of(b.m, batch * out), batch * out * sizeof(float));
            for (size_t i = 0; i < ARRAY_LEN(got); i++) got[i] = NAN;
            CHECK_OK(aim_model_predict(b.m, ws, x, batch * in, batch, got, batch * out));
            assert_memory_equal(got, ref, batch * out * sizeof(float));
            for (size_t i = batch * out; i < ARRAY_LEN(got); i++) assert_true(isnan(got[i]));
            CHECK_OK(aim_model_forward(b.m, AIM_MODE_TRAIN, x, batch * in, batch));
            assert_memory_equal(output_of(b.m, batch * out), ref, batch * out * sizeof(float));
        }
        aim_workspace_free(ws);
        aim_model_free(b.m);
    }
}

/* ======================================================================== */
/* 4. Serialization                                                         */
/* ======================================================================== */

static unsigned char *serialize(const aim_model *m, const aim_optimizer *o, size_t *len) {
    CHECK_OK(aim_model_serialized_size(m, o, len));
    unsigned char *buf = malloc(*len);
    assert_non_null(buf);
    size_t written = 0;
    CHECK_OK(aim_model_serialize(m, o, buf, *len, &written));
    assert_int_equal(written, *len);
    return buf;
}

static float adam_step(aim_model *m, aim_optimizer *o, const float *x, size_t n, const int32_t *labels,
                       size_t batch) {
    float loss = 0.0f;
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, n, batch));
    CHECK_OK(aim_model_loss_sparse(m, 0, labels, batch, &loss));
    CHECK_OK(aim_model_backward(m, NULL, 0));
    CHECK_OK(aim_optimizer_step_model(o, m, 1e-2f));
    return loss;
}

/* Train k steps, save with the optimizer, load; predictions bit-identical;
 * then both train on and stay bit-identical. */
static void round_trip(const rnn_spec *r, size_t n_rnn, int lstm_builder) {
    enum { T = 4, F = 3, B = 5, STEPS = 3 };
    built b;
    if (lstm_builder) { /* aim_model_add_lstm: the record as 1.0 callers make it */
        memset(&b, 0, sizeof b);
        const size_t dims[2] = {T, F};
        aim_lstm_config lc;
        aim_dense_config dc;
        aim_compile_config cc;
        CHECK_OK(aim_model_create(NULL, 2, dims, &b.m));
        CHECK_OK(aim_lstm_config_init(&lc, 4, 2));
        CHECK_OK(aim_model_add_lstm(b.m, &lc));
        CHECK_OK(aim_dense_config_init(&dc, HEAD_UNITS, AIM_ACT_TANH));
        CHECK_OK(aim_model_add_dense(b.m, &dc));
        CHECK_OK(aim_compile_config_init(&cc));
        cc.max_batch = B;
        cc.seed = 4;
        CHECK_OK(aim_model_compile(b.m, &cc));
    } else {
        b = build(T, F, r, n_rnn, HEAD_DENSE, B, 0, 4);
    }
    float *p = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_parameters(b.m, &p, &n));
    aim_optimizer *o = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, n, &o));
    float x[B * T * F], y1[B * HEAD_UNITS], y2[B * HEAD_UNITS];
    int32_t labels[B];
    fill_uniform(x, ARRAY_LEN(x), 12, -1.0f, 1.0f);
    for (size_t i = 0; i < B; i++) labels[i] = (int32_t)(i % HEAD_UNITS);
    for (int s = 0; s < STEPS; s++) (void)adam_step(b.m, o, x, ARRAY_LEN(x), labels, B);

    size_t len = 0;
    unsigned char *buf = serialize(b.m, o, &len);
    aim_model *m2 = NULL;
    aim_optimizer *o2 = NULL;
    char msg[256];
    const aim_status st = aim_model_deserialize(NULL, buf, len, &m2, &o2, msg, sizeof msg);
    if (st != AIM_OK) fail_msg("deserialize: %s: %s", aim_status_str(st), msg);
    assert_non_null(o2);
    assert_int_equal(aim_model_layer_count(m2), aim_model_layer_count(b.m));
    for (size_t i = 0; i < aim_model_layer_count(b.m); i++) {
        size_t r1, r2, d1[AIM_MAX_RANK], d2[AIM_MAX_RANK], o1, w1, c1, ow, w2, c2;
        CHECK_OK(aim_model_layer_shape(b.m, i, &r1, d1));
        CHECK_OK(aim_model_layer_shape(m2, i, &r2, d2));
        assert_int_equal(r1, r2);
        assert_memory_equal(d1, d2, r1 * sizeof d1[0]);
        CHECK_OK(aim_model_layer_parameters(b.m, i, &o1, &w1, &c1));
        CHECK_OK(aim_model_layer_parameters(m2, i, &ow, &w2, &c2));
        assert_true(o1 == ow && w1 == w2 && c1 == c2);
    }
    float *p2 = NULL;
    size_t n2 = 0;
    CHECK_OK(aim_model_parameters(m2, &p2, &n2));
    assert_int_equal(n, n2);
    assert_memory_equal(p, p2, n * sizeof *p);
    aim_workspace *w1 = NULL, *w2 = NULL;
    CHECK_OK(aim_workspace_create(b.m, NULL, B, &w1));
    CHECK_OK(aim_workspace_create(m2, NULL, B, &w2));
    CHECK_OK(aim_model_predict(b.m, w1, x, ARRAY_LEN(x), B, y1, ARRAY_LEN(y1)));
    CHECK_OK(aim_model_predict(m2, w2, x, ARRAY_LEN(x), B, y2, ARRAY_LEN(y2)));
    assert_memory_equal(y1, y2, sizeof y1);
    /* The copy writes the same bytes. */
    size_t len2 = 0;
    unsigned char *buf2 = serialize(m2, o2, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    for (int s = 0; s < STEPS; s++) {
        const float l1 = adam_step(b.m, o, x, ARRAY_LEN(x), labels, B);
        const float l2 = adam_step(m2, o2, x, ARRAY_LEN(x), labels, B);
        assert_memory_equal(&l1, &l2, sizeof l1);
    }
    assert_memory_equal(p, p2, n * sizeof *p);
    free(buf2);
    free(buf);
    aim_workspace_free(w1);
    aim_workspace_free(w2);
    aim_optimizer_free(o2);
    aim_optimizer_free(o);
    aim_model_free(m2);
    aim_model_free(b.m);
}

static void test_round_trip(void **state) {
    (void)state;
    static const rnn_spec specs[][2] = {{GRU(4, 2, 0, 0), NO_RNN}, {GRU(3, 2, 1, 1), GRU(3, 1, 0, 0)},
                                        {LSTM(3, 2, 0, 1), NO_RNN}, {LSTM(3, 1, 1, 0), GRU(2, 1, 0, 1)}};
    for (size_t k = 0; k < ARRAY_LEN(specs); k++) round_trip(specs[k], specs[k][1].H ? 2 : 1, 0);
    round_trip(NULL, 0, 1);
}

/* ---- a version-2 buffer, written by hand from docs/FORMAT.md --------------- */

typedef struct bytes {
    unsigned char b[4096];
    size_t n;
} bytes;

static void put(bytes *w, uint64_t v, size_t width) {
    assert_true(w->n + width <= sizeof w->b);
    for (size_t i = 0; i < width; i++) w->b[w->n++] = (unsigned char)(v >> (8 * i));
}
static void put_f32(bytes *w, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put(w, u, 4);
}

static uint32_t crc32_ieee(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* A version-2 model (libaimodel 1.0): 4 x 3 -> LSTM 3 x 2 layers (every
 * step) -> flatten -> dense 2, as 1.0 wrote it: the LSTM's record has no
 * bidirectional field. It loads into the unidirectional stack and predicts
 * what the model built by hand with the same weights predicts. */
static void test_v2_lstm_buffer_loads(void **state) {
    (void)state;
    enum { T = 4, F = 3, H = 3, L = 2, K = 2, B = 2 };
    const size_t dims[2] = {T, F};
    aim_model *ref = NULL;
    aim_lstm_config lc;
    aim_dense_config dc;
    aim_compile_config cc;
    CHECK_OK(aim_model_create(NULL, 2, dims, &ref));
    CHECK_OK(aim_lstm_config_init(&lc, H, L));
    lc.return_sequences = 1;
    CHECK_OK(aim_model_add_lstm(ref, &lc));
    CHECK_OK(aim_model_add_flatten(ref));
    CHECK_OK(aim_dense_config_init(&dc, K, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(ref, &dc));
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = B;
    CHECK_OK(aim_model_compile(ref, &cc));
    float *p = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_parameters(ref, &p, &n));
    fill_uniform(p, n, 31, -0.5f, 0.5f);

    bytes pl = {{0}, 0};
    const uint64_t in0 = (uint64_t)1 << 63;
    put(&pl, 1, 4);                                        /* input count */
    put(&pl, 2, 4), put(&pl, T, 8), put(&pl, F, 8);        /* rank, dims */
    put(&pl, B, 8), put(&pl, 0, 4);                        /* max_batch, input_gradient */
    put(&pl, 3, 4);                                        /* layers */
    put(&pl, 7, 4), put(&pl, 1, 4), put(&pl, in0, 8);      /* lstm reads input 0 */
    put(&pl, H, 8), put(&pl, L, 8), put(&pl, 1, 4), put(&pl, AIM_INIT_PYTORCH, 4);
    put(&pl, 6, 4), put(&pl, 1, 4), put(&pl, 0, 8);        /* flatten reads layer 0 */
    put(&pl, 0, 4), put(&pl, 1, 4), put(&pl, 1, 8);        /* dense reads layer 1 */
    put(&pl, K, 8), put(&pl, AIM_ACT_IDENTITY, 4), put_f32(&pl, 0.0f), put(&pl, 1, 4), put(&pl, AIM_INIT_GLOROT_UNIFORM, 4);
    put(&pl, 1, 4), put(&pl, 2, 8), put_f32(&pl, 1.0f);    /* outputs: layer 2, weight 1 */
    put(&pl, n, 8);
    for (size_t i = 0; i < n; i++) put_f32(&pl, p[i]);
    bytes buf = {{0x41, 0x49, 0x4D, 0x44, 0x0D, 0x0A, 0x1A, 0x0A}, 8};
    put(&buf, 2, 4), put(&buf, 0, 4), put(&buf, pl.n, 8), put(&buf, crc32_ieee(pl.b, pl.n), 4), put(&buf, 0, 4);
    assert_true(buf.n + pl.n <= sizeof buf.b);
    memcpy(buf.b + buf.n, pl.b, pl.n);
    buf.n += pl.n;

    aim_model *m = NULL;
    aim_optimizer *o = NULL;
    char msg[256];
    const aim_status st = aim_model_deserialize(NULL, buf.b, buf.n, &m, &o, msg, sizeof msg);
    if (st != AIM_OK) fail_msg("the version-2 buffer: %s: %s", aim_status_str(st), msg);
    assert_null(o);
    float x[B * T * F], y1[B * K], y2[B * K];
    fill_uniform(x, ARRAY_LEN(x), 32, -1.0f, 1.0f);
    aim_workspace *w1 = NULL, *w2 = NULL;
    CHECK_OK(aim_workspace_create(ref, NULL, B, &w1));
    CHECK_OK(aim_workspace_create(m, NULL, B, &w2));
    CHECK_OK(aim_model_predict(ref, w1, x, ARRAY_LEN(x), B, y1, ARRAY_LEN(y1)));
    CHECK_OK(aim_model_predict(m, w2, x, ARRAY_LEN(x), B, y2, ARRAY_LEN(y2)));
    assert_memory_equal(y1, y2, sizeof y1);
    /* Written again, it is version 3 with the field: 4 bytes longer than
     * v2's LSTM record, and it loads as the same model. */
    size_t len = 0;
    unsigned char *v3 = serialize(m, NULL, &len);
    aim_model *m3 = NULL;
    CHECK_OK(aim_model_deserialize(NULL, v3, len, &m3, NULL, msg, sizeof msg));
    aim_workspace *w3 = NULL;
    CHECK_OK(aim_workspace_create(m3, NULL, B, &w3));
    CHECK_OK(aim_model_predict(m3, w3, x, ARRAY_LEN(x), B, y2, ARRAY_LEN(y2)));
    assert_memory_equal(y1, y2, sizeof y1);
    /* The same buffer claiming version 3 lacks the field (and the v3
     * records after the parameters): refused, not misread. */
    buf.b[8] = 3;
    assert_int_equal(aim_model_deserialize(NULL, buf.b, buf.n, &m3, NULL, msg, sizeof msg), AIM_ERR_CORRUPT_DATA);
    free(v3);
    aim_workspace_free(w1);
    aim_workspace_free(w2);
    aim_workspace_free(w3);
    aim_model_free(m3);
    aim_model_free(m);
    aim_model_free(ref);
}

/* ======================================================================== */
/* 5. Allocation failures                                                   */
/* ======================================================================== */

enum { AL_T = 4, AL_F = 3, AL_B = 4, AL_H = 3, AL_K = 3 };

typedef struct al_objects {
    aim_model *model, *copy;
    aim_optimizer *opt, *opt_copy;
    aim_workspace *ws;
    float params[2048];
    size_t nparams;
    float out[AL_B * AL_K];
    float h[2 * 2 * AL_B * AL_H]; /* the bidirectional GRU's h_n */
    float h2[AL_B * AL_H], c2[AL_B * AL_H];
    unsigned char buf[65536];
} al_objects;

static void free_al(al_objects *o) {
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->opt);
    aim_optimizer_free(o->opt_copy);
    aim_model_free(o->model);
    aim_model_free(o->copy);
    o->ws = NULL;
    o->opt = o->opt_copy = NULL;
    o->model = o->copy = NULL;
}

/* The failed call must return AIM_ERR_OUT_OF_MEMORY and count one failure;
 * with `retry` the call is made again and the scenario continues. */
#define STEP(call)                                                   \
    do {                                                             \
        long before_ = ta->failures;                                 \
        aim_status s_ = (call);                                      \
        if (s_ == AIM_OK) {                                          \
            assert_int_equal(ta->failures, before_);                 \
            break;                                                   \
        }                                                            \
        assert_int_equal(s_, AIM_ERR_OUT_OF_MEMORY);                 \
        assert_int_equal(ta->failures, before_ + 1);                 \
        *failed_call = #call;                                        \
        if (!retry) return 1;                                        \
        ta->fail_at = -1;                                            \
        assert_int_equal((call), AIM_OK);                            \
    } while (0)

/* bidirectional GRU 3 x 2 layers (every step) -> LSTM 3 (last step) ->
 * dense, Adam; states carried across two training steps; serialize with
 * the optimizer, deserialize, predict with the copy. */
static int al_scenario(test_alloc *ta, int retry, al_objects *o, const char **failed_call) {
    const aim_allocator *al = &ta->allocator;
    const size_t dims[2] = {AL_T, AL_F};
    aim_rnn_config gc;
    aim_lstm_config lc;
    aim_dense_config dc;
    aim_compile_config cc;
    float x[AL_B * AL_T * AL_F], *p = NULL;
    int32_t labels[AL_B];
    char msg[256];
    fill_uniform(x, ARRAY_LEN(x), 19, -1.0f, 1.0f);
    for (size_t i = 0; i < AL_B; i++) labels[i] = (int32_t)(i % AL_K);
    assert_int_equal(aim_rnn_config_init(&gc, AL_H, 2), AIM_OK);
    gc.return_sequences = 1;
    gc.bidirectional = 1;
    assert_int_equal(aim_lstm_config_init(&lc, AL_H, 1), AIM_OK);
    assert_int_equal(aim_dense_config_init(&dc, AL_K, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = AL_B;
    cc.seed = 6;
    cc.input_gradient = 1;

    STEP(aim_model_create(al, 2, dims, &o->model));
    STEP(aim_model_add_gru(o->model, &gc));
    STEP(aim_model_add_lstm(o->model, &lc));
    STEP(aim_model_add_dense(o->model, &dc));
    STEP(aim_model_compile(o->model, &cc));
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    assert_true(o->nparams <= ARRAY_LEN(o->params));
    STEP(aim_adam_create(al, NULL, o->nparams, &o->opt));
    memset(o->h, 0, sizeof o->h);
    memset(o->h2, 0, sizeof o->h2);
    memset(o->c2, 0, sizeof o->c2);
    for (int step = 0; step < 2; step++) {
        float loss = 0;
        STEP(aim_model_gru_set_state(o->model, 0, o->h, ARRAY_LEN(o->h), AL_B));
        STEP(aim_model_lstm_set_state(o->model, 1, o->h2, ARRAY_LEN(o->h2), o->c2, ARRAY_LEN(o->c2), AL_B));
        STEP(aim_model_zero_grad(o->model));
        STEP(aim_model_forward(o->model, AIM_MODE_TRAIN, x, ARRAY_LEN(x), AL_B));
        STEP(aim_model_loss_sparse(o->model, 0, labels, ARRAY_LEN(labels), &loss));
        STEP(aim_model_backward(o->model, NULL, 0));
        STEP(aim_optimizer_step_model(o->opt, o->model, 0.01f));
        STEP(aim_model_gru_final_state(o->model, 0, o->h, ARRAY_LEN(o->h), AL_B));
        STEP(aim_model_lstm_final_state(o->model, 1, o->h2, ARRAY_LEN(o->h2), o->c2, ARRAY_LEN(o->c2), AL_B));
        assert_true(isfinite(loss));
    }
    size_t len = 0, written = 0;
    STEP(aim_model_serialized_size(o->model, o->opt, &len));
    assert_true(len <= sizeof o->buf);
    STEP(aim_model_serialize(o->model, o->opt, o->buf, sizeof o->buf, &written));
    STEP(aim_model_deserialize(al, o->buf, written, &o->copy, &o->opt_copy, msg, sizeof msg));
    STEP(aim_workspace_create(o->copy, al, AL_B, &o->ws));
    STEP(aim_model_predict(o->copy, o->ws, x, ARRAY_LEN(x), AL_B, o->out, ARRAY_LEN(o->out)));
    assert_int_equal(aim_model_parameters(o->copy, &p, &o->nparams), AIM_OK);
    memcpy(o->params, p, o->nparams * sizeof *p);
    return 0;
}

#define MAX_K 1000

static void test_allocation_failures(void **state) {
    (void)state;
    for (int retry = 0; retry < 2; retry++) {
        test_alloc ta;
        al_objects *ref = calloc(1, sizeof *ref), *o = calloc(1, sizeof *o);
        assert_true(ref && o);
        const char *failed = NULL;
        test_alloc_init(&ta, -1);
        assert_int_equal(al_scenario(&ta, 0, ref, &failed), 0);
        const long total = ta.calls;
        free_al(ref);
        assert_int_equal(ta.live, 0);
        assert_true(total >= 8);
        if (retry == 0) print_message("GRU scenario: %ld allocator calls\n", total);
        long k;
        for (k = 0; k < MAX_K; k++) {
            memset(o, 0, sizeof *o);
            failed = NULL;
            test_alloc_init(&ta, k);
            const int stopped = al_scenario(&ta, retry, o, &failed);
            if (k < total) {
                if (ta.failures != 1) fail_msg("k=%ld: allocator failures %ld", k, ta.failures);
                assert_non_null(failed);
            }
            if (retry) {
                /* Retried, the failed call leaves everything as if it never failed. */
                assert_int_equal(stopped, 0);
                assert_int_equal(o->nparams, ref->nparams);
                if (memcmp(o->params, ref->params, ref->nparams * sizeof(float)) != 0)
                    fail_msg("k=%ld: weights differ after retrying %s", k, failed);
                assert_memory_equal(o->out, ref->out, sizeof ref->out);
                assert_memory_equal(o->h, ref->h, sizeof ref->h);
                assert_memory_equal(o->c2, ref->c2, sizeof ref->c2);
            }
            free_al(o);
            if (ta.live != 0) fail_msg("k=%ld (%s failed): %ld blocks leaked", k, failed ? failed : "-", ta.live);
            if (ta.failures == 0) break;
        }
        assert_int_equal(k, total);
        free(ref);
        free(o);
    }
}

/* After compile, training steps with states carried across, final states,
 * predicts and inference forwards at every batch make no allocator call. */
static void test_training_step_allocates_nothing(void **state) {
    (void)state;
    test_alloc ta;
    al_objects *o = calloc(1, sizeof *o);
    assert_non_null(o);
    const char *failed = NULL;
    test_alloc_init(&ta, -1);
    assert_int_equal(al_scenario(&ta, 0, o, &failed), 0);
    float x[AL_B * AL_T * AL_F], out[AL_B * AL_K];
    int32_t labels[AL_B];
    fill_uniform(x, ARRAY_LEN(x), 20, -1.0f, 1.0f);
    for (size_t i = 0; i < AL_B; i++) labels[i] = (int32_t)((i * 2) % AL_K);
    const long calls = ta.calls, live = ta.live;
    for (int s = 0; s < 40; s++) {
        const size_t batch = (size_t)(s % AL_B) + 1;
        const size_t s1 = 2 * 2 * batch * AL_H, s2 = batch * AL_H;
        float l = 0;
        assert_int_equal(aim_model_gru_set_state(o->model, 0, o->h, s1, batch), AIM_OK);
        assert_int_equal(aim_model_lstm_set_state(o->model, 1, o->h2, s2, o->c2, s2, batch), AIM_OK);
        assert_int_equal(aim_model_zero_grad(o->model), AIM_OK);
        assert_int_equal(aim_model_forward(o->model, AIM_MODE_TRAIN, x, batch * AL_T * AL_F, batch), AIM_OK);
        assert_int_equal(aim_model_loss_sparse(o->model, 0, labels, batch, &l), AIM_OK);
        assert_int_equal(aim_model_backward(o->model, NULL, 0), AIM_OK);
        assert_int_equal(aim_optimizer_step_model(o->opt, o->model, 0.01f), AIM_OK);
        assert_int_equal(aim_model_gru_final_state(o->model, 0, o->h, s1, batch), AIM_OK);
        assert_int_equal(aim_model_lstm_final_state(o->model, 1, o->h2, s2, o->c2, s2, batch), AIM_OK);
        assert_int_equal(aim_model_forward(o->model, AIM_MODE_INFERENCE, x, batch * AL_T * AL_F, batch), AIM_OK);
        assert_int_equal(aim_model_predict(o->copy, o->ws, x, batch * AL_T * AL_F, batch, out, batch * AL_K), AIM_OK);
        assert_true(isfinite(l));
    }
    if (ta.calls != calls) fail_msg("%ld allocator calls in 40 training steps", ta.calls - calls);
    assert_int_equal(ta.live, live);
    free_al(o);
    assert_int_equal(ta.live, 0);
    free(o);
}

/* ======================================================================== */
/* 6. Thread pool                                                           */
/* ======================================================================== */

/* Split against unsplit: the same sums in another order (the slices' GEMMs
 * over fewer rows, the parameter gradients summed slice by slice), so a
 * tolerance: 1e-5 of the largest value (test_threadpool.c measures ~6e-7).
 * Split against the slices run one by one on a model without a pool, each
 * from its own rows of the initial state, their parameter gradients summed
 * in slice order: the same calls on the same rows, so the same bits. That
 * the pooled forward reads each slice's rows of h0 (with the batch's stride)
 * and that aim_model_gru_final_state() reads each slice's cache in its own
 * layout is what the bit-exact comparison checks. */
#define POOL_TOL 1e-5

static double scaled_error(const float *a, const float *b, size_t n) {
    double mx = 0.0, e = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - (double)b[i]));
    return mx > 0.0 ? e / mx : (e > 0.0 ? INFINITY : 0.0);
}

/* Rows [b0, b0 + nb) of each of the `blocks` (batch, H) blocks of a state. */
static void state_rows(const float *s, size_t blocks, size_t batch, size_t H, size_t b0, size_t nb, float *out) {
    for (size_t k = 0; k < blocks; k++) memcpy(out + k * nb * H, s + (k * batch + b0) * H, nb * H * sizeof(float));
}
static void state_rows_back(const float *s, size_t blocks, size_t batch, size_t H, size_t b0, size_t nb, float *out) {
    for (size_t k = 0; k < blocks; k++) memcpy(out + (k * batch + b0) * H, s + k * nb * H, nb * H * sizeof(float));
}

typedef struct pool_run {
    float *y, *g, *dx, *h, *c; /* output, parameter and input gradients, h_n (and c_n) */
} pool_run;

static void pool_run_alloc(pool_run *r, size_t ny, size_t ng, size_t nx, size_t ns) {
    r->y = malloc(ny * sizeof(float));
    r->g = malloc(ng * sizeof(float));
    r->dx = malloc(nx * sizeof(float));
    r->h = calloc(ns, sizeof(float));
    r->c = calloc(ns, sizeof(float));
    assert_true(r->y && r->g && r->dx && r->h && r->c);
}
static void pool_run_free(pool_run *r) {
    free(r->y), free(r->g), free(r->dx), free(r->h), free(r->c);
}

/* One training forward and backward (L = sum(Y R)) from h0/c0 on rows
 * [b0, b0 + nb) of x; adds this call's results into `r` at those rows, the
 * parameter gradients into r->g (which the caller zeroes). */
static void forward_backward(const built *b, const float *x, const float *R, const float *h0, const float *c0,
                             size_t batch, size_t b0, size_t nb, pool_run *r) {
    const rnn_info *ri = &b->rnn[0];
    const size_t in = aim_model_input_size(b->m), out = aim_model_output_size(b->m);
    const size_t blocks = dirs_of(&ri->s) * ri->s.layers, H = ri->s.H, ns = state_floats(&ri->s, nb);
    float *sh = malloc(ns * sizeof *sh), *sc = malloc(ns * sizeof *sc);
    assert_true(sh && sc);
    state_rows(h0, blocks, batch, H, b0, nb, sh);
    state_rows(c0, blocks, batch, H, b0, nb, sc);
    set_state(b->m, ri, sh, sc, nb);
    CHECK_OK(aim_model_zero_grad(b->m));
    CHECK_OK(aim_model_forward(b->m, AIM_MODE_TRAIN, x + b0 * in, nb * in, nb));
    memcpy(r->y + b0 * out, output_of(b->m, nb * out), nb * out * sizeof(float));
    final_state(b->m, ri, sh, ri->s.kind == AIM_RNN_LSTM ? sc : NULL, nb);
    state_rows_back(sh, blocks, batch, H, b0, nb, r->h);
    state_rows_back(sc, blocks, batch, H, b0, nb, r->c);
    CHECK_OK(aim_model_backward(b->m, R + b0 * out, nb * out));
    float *g = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_gradients(b->m, &g, &n));
    for (size_t i = 0; i < n; i++) r->g[i] += g[i];
    const float *dx = NULL;
    size_t ndx = 0;
    CHECK_OK(aim_model_input_gradient(b->m, 0, &dx, &ndx));
    assert_int_equal(ndx, nb * in);
    memcpy(r->dx + b0 * in, dx, ndx * sizeof *dx);
    free(sh);
    free(sc);
}

static void check_pool(const rnn_spec *s, size_t threads, size_t batch) {
    enum { T = 5, F = 3 };
    aim_threadpool *pool = NULL;
    CHECK_OK(aim_threadpool_create(NULL, threads, &pool));
    CHECK_OK(aim_threadpool_set_min_work(pool, 1)); /* always split */
    built plain = build(T, F, s, 1, HEAD_DENSE, batch, 1, 44), pooled = build(T, F, s, 1, HEAD_DENSE, batch, 1, 44);
    fill_point(&plain, 8);
    fill_point(&pooled, 8);
    CHECK_OK(aim_model_set_threadpool(pooled.m, pool));
    const size_t in = T * F, out = HEAD_UNITS, ns = state_floats(s, batch);
    float *p = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_parameters(plain.m, &p, &n));
    float *x = malloc(batch * in * sizeof *x), *R = malloc(batch * out * sizeof *R);
    float *h0 = malloc(ns * sizeof *h0), *c0 = malloc(ns * sizeof *c0);
    assert_true(x && R && h0 && c0);
    fill_uniform(x, batch * in, 401, -1.0f, 1.0f);
    fill_uniform(R, batch * out, 402, -1.0f, 1.0f);
    /* Every row of every block distinct, so a row read from the wrong slice or block shows. */
    fill_uniform(h0, ns, 403, -0.8f, 0.8f);
    fill_uniform(c0, ns, 404, -1.5f, 1.5f);
    pool_run a, bp, sl;
    pool_run_alloc(&a, batch * out, n, batch * in, ns);
    pool_run_alloc(&bp, batch * out, n, batch * in, ns);
    pool_run_alloc(&sl, batch * out, n, batch * in, ns);
    memset(a.g, 0, n * sizeof(float));
    memset(bp.g, 0, n * sizeof(float));
    memset(sl.g, 0, n * sizeof(float));
    forward_backward(&plain, x, R, h0, c0, batch, 0, batch, &a);
    forward_backward(&pooled, x, R, h0, c0, batch, 0, batch, &bp);
    /* The slices one by one, on the plain model, summed in slice order. */
    for (size_t w = 0; w < threads; w++) { /* the executor's split (aim__split in src/model/exec.c) */
        const size_t q = batch / threads, rem = batch % threads;
        forward_backward(&plain, x, R, h0, c0, batch, w * q + (w < rem ? w : rem), q + (w < rem), &sl);
    }
    const double ey = scaled_error(bp.y, a.y, batch * out), eg = scaled_error(bp.g, a.g, n);
    const double ex = scaled_error(bp.dx, a.dx, batch * in), eh = scaled_error(bp.h, a.h, ns);
    print_message("%s%s x%zu, %zu threads, batch %zu: output %.2g, gradient %.2g, input gradient %.2g, h_n %.2g\n",
                  s->bidir ? "bidirectional " : "", s->kind == AIM_RNN_GRU ? "GRU" : "LSTM", s->layers, threads,
                  batch, ey, eg, ex, eh);
    assert_true(ey <= POOL_TOL && eg <= POOL_TOL && ex <= POOL_TOL && eh <= POOL_TOL);
    assert_true(scaled_error(bp.c, a.c, ns) <= POOL_TOL);
    assert_memory_equal(bp.y, sl.y, batch * out * sizeof(float));
    assert_memory_equal(bp.h, sl.h, ns * sizeof(float));
    assert_memory_equal(bp.c, sl.c, ns * sizeof(float));
    assert_memory_equal(bp.dx, sl.dx, batch * in * sizeof(float));
    if (memcmp(bp.g, sl.g, n * sizeof(float)) != 0)
        fail_msg("%zu threads: gradients differ from the sliced reference (%.3g)", threads, scaled_error(bp.g, sl.g, n));
    /* ... and the unsplit run summed otherwise: it did split. */
    assert_memory_not_equal(a.g, bp.g, n * sizeof(float));

    /* predict split against not (OpenBLAS may round a row otherwise in a
     * GEMM of other height: within the tolerance). */
    aim_workspace *w1 = NULL, *w2 = NULL;
    CHECK_OK(aim_workspace_create(plain.m, NULL, batch, &w1));
    CHECK_OK(aim_workspace_create(pooled.m, NULL, batch, &w2));
    CHECK_OK(aim_workspace_set_threadpool(w2, pooled.m, pool));
    CHECK_OK(aim_model_predict(plain.m, w1, x, batch * in, batch, a.y, batch * out));
    CHECK_OK(aim_model_predict(pooled.m, w2, x, batch * in, batch, bp.y, batch * out));
    assert_true(scaled_error(bp.y, a.y, batch * out) <= POOL_TOL);
    aim_workspace_free(w1);
    aim_workspace_free(w2);
    pool_run_free(&a);
    pool_run_free(&bp);
    pool_run_free(&sl);
    free(x), free(R), free(h0), free(c0);
    aim_model_free(plain.m);
    aim_model_free(pooled.m);
    aim_threadpool_free(pool);
}

static void test_thread_pool(void **state) {
    (void)state;
    static const rnn_spec specs[] = {GRU(6, 2, 0, 0), GRU(5, 2, 1, 1), LSTM(4, 2, 0, 1)};
    for (size_t k = 0; k < ARRAY_LEN(specs); k++) {
        check_pool(&specs[k], 2, 10);
        check_pool(&specs[k], 3, 11);
    }
}

/* ======================================================================== */
/* 7. Layout, initializers, the builders, learning                          */
/* ======================================================================== */

static void test_shapes_and_layout(void **state) {
    (void)state;
    const size_t dims[2] = {7, 5};
    aim_model *m = NULL;
    aim_rnn_config rc;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_rnn_config_init(&rc, 6, 2));
    rc.return_sequences = 1;
    rc.bidirectional = 1;
    CHECK_OK(aim_model_add_gru(m, &rc)); /* 7 x 12 */
    CHECK_OK(aim_rnn_config_init(&rc, 4, 1));
    rc.bidirectional = 1;
    CHECK_OK(aim_model_add_rnn(m, AIM_RNN_LSTM, &rc)); /* 8 */
    size_t rank = 0, d[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, 0, &rank, d));
    assert_true(rank == 2 && d[0] == 7 && d[1] == 12);
    CHECK_OK(aim_model_layer_shape(m, 1, &rank, d));
    assert_true(rank == 1 && d[0] == 8);
    assert_int_equal(aim_model_output_size(m), 8);
    CHECK_OK(aim_model_compile(m, NULL));
    size_t off = 0, wc = 0, bc = 0;
    const size_t gru = 2 * (18 * 5 + 18 * 6 + 36) + 2 * (18 * 12 + 18 * 6 + 36);
    CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
    assert_true(off == 0 && wc == gru && bc == 0);
    CHECK_OK(aim_model_layer_parameters(m, 1, &off, &wc, &bc));
    assert_true(off == gru && wc == 2 * (16 * 12 + 16 * 4 + 32) && bc == 0);
    aim_model_free(m);
}

/* The documented initializers, per layer and direction: PyTorch's
 * U(-1/sqrt(H), 1/sqrt(H)) everywhere; Glorot kernels with fans (in, 3H) and
 * (H, 3H) and zero biases; He normal kernels, zero biases; zeros. */
static void test_initializers(void **state) {
    (void)state;
    enum { T = 3, F = 5, H = 7, L = 2 };
    static const aim_init inits[] = {AIM_INIT_PYTORCH, AIM_INIT_GLOROT_UNIFORM, AIM_INIT_HE_NORMAL, AIM_INIT_ZEROS};
    for (size_t k = 0; k < ARRAY_LEN(inits); k++) {
        const rnn_spec s = GRU(H, L, 0, 1);
        const size_t dims[2] = {T, F};
        aim_model *m = NULL;
        aim_rnn_config rc;
        aim_compile_config cc;
        CHECK_OK(aim_model_create(NULL, 2, dims, &m));
        CHECK_OK(aim_rnn_config_init(&rc, H, L));
        rc.bidirectional = 1;
        rc.init = inits[k];
        CHECK_OK(aim_model_add_gru(m, &rc));
        CHECK_OK(aim_compile_config_init(&cc));
        cc.seed = 3;
        CHECK_OK(aim_model_compile(m, &cc));
        float *p = NULL;
        size_t n = 0;
        CHECK_OK(aim_model_parameters(m, &p, &n));
        assert_int_equal(n, stack_params(&s, F));
        const float *q = p;
        for (size_t l = 0; l < L; l++)
            for (size_t d = 0; d < 2; d++) {
                size_t sz[4];
                tensor_sizes(&s, F, l, sz);
                const size_t in = sz[0] / (3 * H);
                const float *wih = q, *whh = q + sz[0], *bih = whh + sz[1], *bhh = bih + sz[2];
                q = bhh + sz[3];
                double mx = 0.0;
                if (inits[k] == AIM_INIT_PYTORCH) {
                    const double bound = 1.0 / sqrt((double)H);
                    for (const float *v = wih; v < q; v++) {
                        assert_true(fabs((double)*v) <= bound);
                        mx = fmax(mx, fabs((double)*v));
                    }
                    assert_true(mx > 0.9 * bound);
                } else if (inits[k] == AIM_INIT_GLOROT_UNIFORM) {
                    const double li = sqrt(6.0 / (double)(in + 3 * H)), lh = sqrt(6.0 / (double)(H + 3 * H));
                    for (size_t i = 0; i < sz[0]; i++) mx = fmax(mx, fabs((double)wih[i]));
                    assert_true(mx <= li && mx > 0.8 * li);
                    mx = 0.0;
                    for (size_t i = 0; i < sz[1]; i++) mx = fmax(mx, fabs((double)whh[i]));
                    assert_true(mx <= lh && mx > 0.8 * lh);
                } else if (inits[k] == AIM_INIT_HE_NORMAL) {
                    for (size_t i = 0; i < sz[0] + sz[1]; i++) {
                        assert_true(isfinite(wih[i]));
                        mx = fmax(mx, fabs((double)wih[i]));
                    }
                    assert_true(mx > 0.0);
                } else {
                    for (size_t i = 0; i < sz[0] + sz[1]; i++) assert_true(wih[i] == 0.0f);
                }
                if (inits[k] != AIM_INIT_PYTORCH)
                    for (size_t j = 0; j < 2 * sz[2]; j++) assert_true(bih[j] == 0.0f);
            }
        assert_true(q == p + n);
        aim_model_free(m);
    }
}

/* aim_model_add_lstm is aim_model_add_rnn with AIM_RNN_LSTM and one
 * direction: the same layer, the same initial weights from the same seed,
 * the same outputs; a bidirectional LSTM has its own, larger, layout. */
static void test_add_lstm_is_add_rnn(void **state) {
    (void)state;
    const size_t dims[2] = {4, 3};
    aim_model *a = NULL, *b = NULL, *bi = NULL;
    aim_lstm_config lc;
    aim_rnn_config rc;
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.seed = 9;
    CHECK_OK(aim_model_create(NULL, 2, dims, &a));
    CHECK_OK(aim_model_create(NULL, 2, dims, &b));
    CHECK_OK(aim_model_create(NULL, 2, dims, &bi));
    CHECK_OK(aim_lstm_config_init(&lc, 5, 2));
    lc.return_sequences = 1;
    lc.init = AIM_INIT_GLOROT_UNIFORM;
    CHECK_OK(aim_model_add_lstm(a, &lc));
    CHECK_OK(aim_rnn_config_init(&rc, 5, 2));
    rc.return_sequences = 1;
    rc.init = AIM_INIT_GLOROT_UNIFORM;
    CHECK_OK(aim_model_add_rnn(b, AIM_RNN_LSTM, &rc));
    rc.bidirectional = 1;
    CHECK_OK(aim_model_add_rnn(bi, AIM_RNN_LSTM, &rc));
    CHECK_OK(aim_model_compile(a, &cc));
    CHECK_OK(aim_model_compile(b, &cc));
    CHECK_OK(aim_model_compile(bi, &cc));
    float *pa = NULL, *pb = NULL, *pbi = NULL;
    size_t na = 0, nb = 0, nbi = 0;
    CHECK_OK(aim_model_parameters(a, &pa, &na));
    CHECK_OK(aim_model_parameters(b, &pb, &nb));
    CHECK_OK(aim_model_parameters(bi, &pbi, &nbi));
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof *pa);
    const rnn_spec s = LSTM(5, 2, 1, 1);
    assert_int_equal(nbi, stack_params(&s, 3));
    /* Glorot's forget-gate bias of 1 in every layer and direction of b_ih. */
    const float *q = pbi;
    for (size_t l = 0; l < 2; l++)
        for (size_t d = 0; d < 2; d++) {
            size_t sz[4];
            tensor_sizes(&s, 3, l, sz);
            const float *bih = q + sz[0] + sz[1];
            for (size_t j = 0; j < sz[2]; j++) assert_true(bih[j] == (j >= 5 && j < 10 ? 1.0f : 0.0f));
            q += sz[0] + sz[1] + sz[2] + sz[3];
        }
    float x[2 * 12];
    fill_uniform(x, ARRAY_LEN(x), 4, -1.0f, 1.0f);
    CHECK_OK(aim_model_forward(a, AIM_MODE_INFERENCE, x, ARRAY_LEN(x), 2));
    CHECK_OK(aim_model_forward(b, AIM_MODE_INFERENCE, x, ARRAY_LEN(x), 2));
    assert_memory_equal(output_of(a, 2 * 4 * 5), output_of(b, 2 * 4 * 5), 2 * 4 * 5 * sizeof(float));
    aim_model_free(a);
    aim_model_free(b);
    aim_model_free(bi);
}

/* A bidirectional GRU classifier learns which of the first and last step
 * has the larger first feature: 60 Adam steps take the loss on a fixed batch
 * from ~log 2 to under a quarter of it. */
static void test_learns_a_sequence_task(void **state) {
    (void)state;
    enum { B = 16, T = 5, F = 2, H = 8 };
    const rnn_spec s = GRU(H, 1, 0, 1);
    const size_t dims[2] = {T, F};
    aim_model *m = NULL;
    aim_dense_config dc;
    aim_compile_config cc;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    add_rnn(m, &s);
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
    for (int k = 0; k < 60; k++) {
        last = adam_step(m, opt, x, ARRAY_LEN(x), labels, B);
        if (k == 0) first = last;
    }
    print_message("loss %.4f -> %.4f\n", (double)first, (double)last);
    assert_true(last < 0.25f * first);
    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ======================================================================== */

static int print_summary(void **state) {
    (void)state;
    golden_print_worst(CMP, CMP_KINDS);
    print_message("gradient checks: %zu values, worst |a - n| / allowed = %.3g (%s, %s)\n", g_worst.values,
                  g_worst.max_usage, g_worst.label, g_worst.part);
    return 0;
}

int main(void) {
    struct CMUnitTest tests[ARRAY_LEN(GOLDEN_CASES) + ARRAY_LEN(GC_SPECS) + 20];
    size_t n = 0;
    for (size_t i = 0; i < ARRAY_LEN(GOLDEN_CASES); i++)
        tests[n++] = (struct CMUnitTest){GOLDEN_CASES[i].name, test_golden, NULL, NULL, (void *)&GOLDEN_CASES[i]};
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_golden_classifier_adam);
    for (size_t i = 0; i < ARRAY_LEN(GC_SPECS); i++)
        tests[n++] = (struct CMUnitTest){GC_SPECS[i].name, test_gradients, NULL, NULL, (void *)&GC_SPECS[i]};
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_state_cases_depend_on_the_state),
        cmocka_unit_test(test_final_state_is_the_last_output),
        cmocka_unit_test(test_state_carries_across_chunks),
        cmocka_unit_test(test_backward_uses_the_forwards_state),
        cmocka_unit_test(test_predict_equals_forward),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_v2_lstm_buffer_loads),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_training_step_allocates_nothing),
        cmocka_unit_test(test_thread_pool),
        cmocka_unit_test(test_shapes_and_layout),
        cmocka_unit_test(test_initializers),
        cmocka_unit_test(test_add_lstm_is_add_rnn),
        cmocka_unit_test(test_learns_a_sequence_task),
    };
    for (size_t i = 0; i < ARRAY_LEN(rest); i++) tests[n++] = rest[i];
    assert_true(n <= ARRAY_LEN(tests));
    return _cmocka_run_group_tests("test_gru", tests, n, NULL, print_summary);
}
