/* Multi-head self-attention (src/layers/attention.c), the positional
 * embedding (src/layers/pos_embedding.c) and the linear kind (the end of
 * src/layers/dense.c), through the public API:
 *  1. PyTorch goldens (golden/golden_attention.h, written by
 *     golden/gen_golden_attention.py with torch 1.13 in float64):
 *     nn.MultiheadAttention self-attention with E 6 to 12, 1 to 4 heads,
 *     causal or not, with and without bias: the output (inference and
 *     training forwards, predict) and the gradients of sum(Y * G) with
 *     respect to x and each parameter tensor; x + wpe[:T]; nn.Linear on the
 *     last axis with and without bias, with GELU; a pre-norm transformer
 *     block (embedding, wpe, LN, causal attention, residual, GELU MLP,
 *     residual, LN, head) trained 3 steps of AdamW against Adam with
 *     decoupled = 1, on a cross-entropy with a label per position
 *     (aim_model_loss_sparse with B·T labels): logits, losses, every
 *     gradient, the parameters after each step and the update (the key third
 *     of in_proj_bias's gradient, zero in exact arithmetic, is checked to be
 *     near zero and set to 0 before each step, as the generator does);
 *  2. the config defaults, the refusals of the builders, PyTorch's init;
 *  3. central-difference checks of every parameter tensor and the input:
 *     with and without the causal mask, 1 to 4 heads, heads of size 1, one
 *     position, without bias, with
 *     dropout (the stream restarted before every forward, so each one draws
 *     the same masks), and a positional embedding -> attention -> linear GELU
 *     chain;
 *  4. dropout: a seed fixes the masks, the stream advances, inference and
 *     predict ignore dropout (the bits of the same model with dropout 0), the
 *     training output differs from inference; the cached weights are P / (1 -
 *     p) or 0 with about p of them 0; a sample's masks do not depend on the
 *     batch it is in (zero for zero);
 *  5. the thread pool: a training step split over 2 and 3 threads against
 *     the slices run one by one without a pool (outputs, input and parameter
 *     gradients bit for bit), against the unsplit step (within rounding, with
 *     dropout too: its masks follow the global row), a pooled rerun (bit for
 *     bit); predict and the inference forward under a pool; the transformer
 *     block on 2 threads;
 *  6. serialization of the transformer block (with attention dropout):
 *     bit-identical predictions and bytes, exact resume of AdamW training;
 *  7. the k-th allocation failure for every k of build + compile + train +
 *     serialize + deserialize + predict of that block: no leak, and the
 *     failed call retried gives the clean run's bits;
 *  8. scores of order 1e6 (x scaled by 1e3): the outputs and gradients stay
 *     finite and match a double reference (an unshifted exp would overflow);
 *     shapes past the goldens' (T 33, E 24; T 17, E 40) against the double
 *     reference, and their gradient along a random direction.
 *
 * Golden metric (tests/support.h golden_rel_error()): |got - ref| /
 * max(|ref|, floor), the floor 1% of the array's largest |ref|. Tolerances
 * are test_golden_lstm.c's: 1e-5 for outputs and losses, 1e-4 for gradients
 * and parameters, 1e-3 with a 10% floor for the update (final - initial);
 * but an output that went through attention (its Y, the block's logits)
 * gets 2e-5, because float32 PyTorch itself lands up to 8.2e-6 from the
 * float64 reference there (three float32 products and a softmax deep: about
 * one rounding of the array's largest value). gen_golden_attention.py
 * --check prints what float32 PyTorch measures: other outputs 1.8e-6,
 * attention outputs 8.2e-6, gradients 2.0e-5, the block's parameters
 * 1.8e-5 and update 6.2e-5; the library measures 1.8e-6, 7.8e-6, 1.7e-5,
 * 7.3e-6 and 7.8e-5 (the test prints its worst).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"
#include "../src/internal.h"
#include "golden/golden_attention.h"

#define TOL_FORWARD 1e-5
#define TOL_ATTN 2e-5
#define TOL_GRAD 1e-4
#define TOL_TRAJ 1e-4
#define TOL_UPDATE 1e-3
#define FLOOR_FRAC 1e-2
#define UPDATE_FLOOR_FRAC 0.1
#define WHAT_WIDTH 46

typedef enum cmp_kind { CMP_FORWARD, CMP_ATTN, CMP_GRAD, CMP_PARAMS, CMP_UPDATE, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward/loss", TOL_FORWARD, FLOOR_FRAC, 0.0},
    {"attention output", TOL_ATTN, FLOOR_FRAC, 0.0},
    {"gradient", TOL_GRAD, FLOOR_FRAC, 0.0},
    {"parameters", TOL_TRAJ, FLOOR_FRAC, 0.0},
    {"update", TOL_UPDATE, UPDATE_FLOOR_FRAC, 0.0},
};

static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

/* ======================================================================== */
/* Models                                                                   */
/* ======================================================================== */

static void compile_model(aim_model *m, size_t max_batch, int32_t input_gradient, uint64_t seed) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = max_batch;
    cc.input_gradient = input_gradient;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(m, &cc));
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

typedef struct att_spec {
    size_t T, E, H;
    int32_t causal, bias;
    float dropout;
} att_spec;

static size_t att_param_count(size_t E, int32_t bias) { return 4 * E * E + (bias ? 4 * E : 0); }

/* (T, E) -> attention. */
static aim_model *att_model(const att_spec *s) {
    const size_t dims[2] = {s->T, s->E};
    aim_model *m = NULL;
    aim_attention_config ac;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_attention_config_init(&ac, s->H));
    ac.causal = s->causal;
    ac.bias = s->bias;
    ac.dropout = s->dropout;
    CHECK_OK(aim_model_add_attention(m, &ac));
    return m;
}

/* One tensor of a flat parameter block. */
typedef struct part {
    const char *name;
    size_t off, n;
    gradcheck_guard guard; /* for the gradient checks */
} part;

/* The tensors of an attention layer's parameters at `base`, PyTorch's order;
 * with split_bias, in_proj_bias as its q, k and v thirds (the k third's
 * gradient is exactly zero: a constant added to every key adds q·b_k to
 * every score of a row, which the softmax ignores). With split_bias 2 (a
 * sequence of one position, whose softmax is 1 whatever the scores), the
 * weight's and the bias's q and k thirds, which get exactly zero. */
static size_t att_parts(size_t E, int32_t bias, int split_bias, size_t base, part *out) {
    size_t n = 0, off = base;
#define PART(nm, count, g)                               \
    do {                                                 \
        out[n].name = nm;                                \
        out[n].off = off;                                \
        out[n].n = count;                                \
        out[n].guard = g;                                \
        off += count;                                    \
        n++;                                             \
    } while (0)
    if (split_bias == 2) {
        PART("in_proj_weight q", E * E, GRADCHECK_EXACT_ZERO);
        PART("in_proj_weight k", E * E, GRADCHECK_EXACT_ZERO);
        PART("in_proj_weight v", E * E, GRADCHECK_DENSE);
    } else {
        PART("in_proj_weight", 3 * E * E, GRADCHECK_DENSE);
    }
    if (bias) {
        if (split_bias) {
            PART("in_proj_bias q", E, split_bias == 2 ? GRADCHECK_EXACT_ZERO : GRADCHECK_DENSE);
            PART("in_proj_bias k", E, split_bias == 2 ? GRADCHECK_EXACT_ZERO : GRADCHECK_NEAR_ZERO);
            PART("in_proj_bias v", E, GRADCHECK_DENSE);
        } else {
            PART("in_proj_bias", 3 * E, GRADCHECK_DENSE);
        }
    }
    PART("out_proj.weight", E * E, GRADCHECK_DENSE);
    if (bias) PART("out_proj.bias", E, GRADCHECK_DENSE);
#undef PART
    return n;
}

/* Parameters away from the init (biases nonzero, scores of order 1). */
static void fill_att_params(float *p, size_t E, int32_t bias, uint64_t seed) {
    part parts[6];
    const size_t n = att_parts(E, bias, 0, 0, parts);
    for (size_t i = 0; i < n; i++) {
        const int is_bias = strstr(parts[i].name, "bias") != NULL;
        const float lim = is_bias ? 0.3f : i == 0 ? 0.8f : (float)(1.0 / sqrt((double)E));
        fill_uniform(p + parts[i].off, parts[i].n, seed + i, -lim, lim);
    }
}

static void weights_r(float *r, size_t n, uint64_t seed) {
    fill_uniform(r, n, seed, 0.25f, 1.0f);
    for (size_t i = 0; i < n; i++)
        if (i % 3 == 1) r[i] = -r[i];
}

/* Ids in [0, V) from a small generator. */
static void fill_ids(int32_t *ids, size_t n, uint64_t seed, int32_t V) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)V);
    }
}

/* ---- the transformer block (goldens, serialization, allocation sweep) ---- */

/* ids (T) -> [0] embedding (V, E) -> [1] positional embedding (P) -> [2] LN
 * -> [3] causal attention (H, dropout) -> [4] add(1, 3) -> [5] LN -> [6]
 * linear F GELU -> [7] linear E -> [8] add(4, 7) -> [9] LN -> [10] linear V
 * without bias: logits (T, V). */
typedef struct block_spec {
    size_t V, E, H, T, P, F;
    float dropout;
} block_spec;
#define BLOCK_LAYERS 11

/* Runs `call`. Without an allocator under test (ta NULL) it must succeed.
 * Otherwise a failure must be the allocator's doing: status OOM and exactly
 * one allocator failure; without `retry` the scenario stops there (returns
 * 1), with it the allocator is healed and the same call must now succeed. A
 * call that returns AIM_OK must not have swallowed an allocator failure. */
#define STEP(call)                                                        \
    do {                                                                  \
        const long before_ = ta ? ta->failures : 0;                       \
        const aim_status s_ = (call);                                     \
        if (s_ == AIM_OK) {                                               \
            if (ta) assert_int_equal(ta->failures, before_);              \
            break;                                                        \
        }                                                                 \
        if (!ta) fail_msg("%s failed: %s", #call, aim_status_str(s_));    \
        assert_int_equal(s_, AIM_ERR_OUT_OF_MEMORY);                      \
        assert_int_equal(ta->failures, before_ + 1);                      \
        *failed = #call;                                                  \
        if (!retry) return 1;                                             \
        ta->fail_at = -1;                                                 \
        assert_int_equal((call), AIM_OK);                                 \
    } while (0)

/* Builds the block into *m (which the caller frees, also after a failure). */
static int block_build(test_alloc *ta, int retry, const block_spec *s, aim_model **m, const char **failed) {
    const aim_allocator *al = ta ? &ta->allocator : NULL;
    const size_t dims[1] = {s->T}, res1[2] = {1, 3}, res2[2] = {4, 7};
    aim_embedding_config ec;
    aim_layer_norm_config lc;
    aim_attention_config ac;
    aim_dense_config fc1, fc2, head;
    assert_int_equal(aim_embedding_config_init(&ec, s->V, s->E), AIM_OK);
    assert_int_equal(aim_layer_norm_config_init(&lc), AIM_OK);
    assert_int_equal(aim_attention_config_init(&ac, s->H), AIM_OK);
    ac.causal = 1;
    ac.dropout = s->dropout;
    assert_int_equal(aim_dense_config_init(&fc1, s->F, AIM_ACT_GELU), AIM_OK);
    assert_int_equal(aim_dense_config_init(&fc2, s->E, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_dense_config_init(&head, s->V, AIM_ACT_IDENTITY), AIM_OK);
    head.use_bias = 0;
    STEP(aim_model_create(al, 1, dims, m));
    STEP(aim_model_set_input_dtype(*m, 0, AIM_DTYPE_INT32));
    STEP(aim_model_add_embedding(*m, &ec));
    STEP(aim_model_add_positional_embedding(*m, s->P));
    STEP(aim_model_add_layer_norm(*m, &lc));
    STEP(aim_model_add_attention(*m, &ac));
    STEP(aim_model_add_add(*m, res1, 2));
    STEP(aim_model_add_layer_norm(*m, &lc));
    STEP(aim_model_add_linear(*m, &fc1));
    STEP(aim_model_add_linear(*m, &fc2));
    STEP(aim_model_add_add(*m, res2, 2));
    STEP(aim_model_add_layer_norm(*m, &lc));
    STEP(aim_model_add_linear(*m, &head));
    return 0;
}

static aim_model *block_model(const block_spec *s) {
    aim_model *m = NULL;
    const char *failed = NULL;
    test_alloc *ta = NULL;
    assert_int_equal(block_build(ta, 0, s, &m, &failed), 0);
    assert_int_equal(aim_model_layer_count(m), BLOCK_LAYERS);
    return m;
}

/* The attention weights P and P' (dropout) of sample b after an unsplit
 * training forward, where the layer's opening comment puts them: a call's
 * cache holds Q K V of all its samples (3 T E floats each), then their O (T
 * E), then P (H T²), then P' (H T²). White-box, as test_dropout.c reads
 * dropout's masks; test_dropout() checks that the rows found sum to 1. */
static void att_weights(const aim__node_state *ns, size_t T, size_t E, size_t H, size_t b, const float **P,
                        const float **Pd) {
    assert_non_null(ns->cache);
    assert_int_equal(ns->parts, 1);
    const size_t B = ns->batch, HTT = H * T * T;
    const float *p = ns->cache + B * 4 * T * E;
    *P = p + b * HTT;
    *Pd = p + B * HTT + b * HTT;
}

/* ======================================================================== */
/* 1. PyTorch goldens                                                       */
/* ======================================================================== */

typedef struct att_golden {
    const char *name;
    size_t E, H, B, T;
    int32_t causal, bias;
    const float *x, *params, *g, *y, *dx, *dparams;
    size_t nx, np;
} att_golden;

#define ATT_GOLDEN(nm, NM)                                                                                     \
    {#nm, GOLDEN_ATT_##NM##_E, GOLDEN_ATT_##NM##_H, GOLDEN_ATT_##NM##_B, GOLDEN_ATT_##NM##_T,                  \
     GOLDEN_ATT_##NM##_CAUSAL, GOLDEN_ATT_##NM##_BIAS, golden_att_##nm##_x, golden_att_##nm##_params,          \
     golden_att_##nm##_g, golden_att_##nm##_y, golden_att_##nm##_dx, golden_att_##nm##_dparams,                \
     ARRAY_LEN(golden_att_##nm##_x), ARRAY_LEN(golden_att_##nm##_params)}

static const att_golden ATT_GOLDENS[] = {
    ATT_GOLDEN(e8h2, E8H2),   ATT_GOLDEN(e8h2_causal, E8H2_CAUSAL), ATT_GOLDEN(e6h3_causal, E6H3_CAUSAL),
    ATT_GOLDEN(e12h4, E12H4), ATT_GOLDEN(e8h1, E8H1),               ATT_GOLDEN(e8h2_nobias_causal, E8H2_NOBIAS_CAUSAL),
};

/* A backward adds into the parameter gradients (the layer interface's
 * contract, which one backward from zero cannot show): a second forward and
 * backward without zero_grad doubles them (within a rounding or two of the
 * largest: the kernels add their sums to what is there). */
static void expect_backward_adds(aim_model *m, const float *x, size_t nx, const float *g, size_t ng, size_t batch) {
    size_t np = 0;
    const float *gr = grads_of(m, &np);
    float *once = malloc(np * sizeof *once);
    assert_non_null(once);
    memcpy(once, gr, np * sizeof *once);
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, nx, batch));
    CHECK_OK(aim_model_backward(m, g, ng));
    gr = grads_of(m, &np);
    const double scale = max_abs_value(once, np);
    assert_true(scale > 0.0);
    for (size_t i = 0; i < np; i++)
        if (!(fabs((double)gr[i] - 2.0 * once[i]) <= 1e-6 * scale))
            fail_msg("gradient %zu after two backwards: %.9g, once %.9g", i, (double)gr[i], (double)once[i]);
    free(once);
}

static void test_golden_attention(void **state) {
    (void)state;
    for (size_t k = 0; k < ARRAY_LEN(ATT_GOLDENS); k++) {
        const att_golden *c = &ATT_GOLDENS[k];
        printf("  %s: E %zu, %zu heads, %s, %s, batch %zu, T %zu\n", c->name, c->E, c->H,
               c->causal ? "causal" : "no mask", c->bias ? "bias" : "no bias", c->B, c->T);
        const att_spec s = {c->T, c->E, c->H, c->causal, c->bias, 0.0f};
        aim_model *m = att_model(&s);
        compile_model(m, c->B, 1, 1);
        assert_int_equal(aim_model_input_size(m) * c->B, c->nx);
        assert_int_equal(aim_model_output_size(m) * c->B, c->nx);
        size_t off = 9, wc = 9, bc = 9, np = 0;
        CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
        assert_int_equal(off, 0);
        assert_int_equal(wc + bc, c->np);
        assert_int_equal(c->np, att_param_count(c->E, c->bias));
        float *p = params_of(m, &np);
        assert_int_equal(np, c->np);
        memcpy(p, c->params, np * sizeof *p);

        char what[96];
        const float *y = NULL;
        size_t ny = 0;
        float *yi = malloc(c->nx * sizeof *yi), *out = malloc(c->nx * sizeof *out);
        assert_true(yi && out);
        CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, c->x, c->nx, c->B));
        CHECK_OK(aim_model_output(m, 0, &y, &ny));
        assert_int_equal(ny, c->nx);
        memcpy(yi, y, ny * sizeof *yi);
        snprintf(what, sizeof what, "%s Y (inference)", c->name);
        expect_close(what, yi, c->y, c->nx, CMP_ATTN);
        aim_workspace *ws = NULL;
        CHECK_OK(aim_workspace_create(m, NULL, c->B, &ws));
        CHECK_OK(aim_model_predict(m, ws, c->x, c->nx, c->B, out, c->nx));
        /* predict and the model's forward run the same kernel on the same rows */
        assert_memory_equal(out, yi, c->nx * sizeof *out);
        aim_workspace_free(ws);

        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->nx, c->B));
        CHECK_OK(aim_model_output(m, 0, &y, &ny));
        snprintf(what, sizeof what, "%s Y", c->name);
        expect_close(what, y, c->y, c->nx, CMP_ATTN);
        /* the training forward keeps P in the cache instead of scratch: same arithmetic */
        assert_memory_equal(y, yi, c->nx * sizeof *y);
        CHECK_OK(aim_model_backward(m, c->g, c->nx));
        const float *dx = NULL;
        size_t ndx = 0;
        CHECK_OK(aim_model_input_gradient(m, 0, &dx, &ndx));
        assert_int_equal(ndx, c->nx);
        snprintf(what, sizeof what, "%s dX", c->name);
        expect_close(what, dx, c->dx, c->nx, CMP_GRAD);
        const float *g = grads_of(m, &np);
        part parts[6];
        const size_t n_parts = att_parts(c->E, c->bias, 0, 0, parts);
        for (size_t i = 0; i < n_parts; i++) {
            snprintf(what, sizeof what, "%s d%s", c->name, parts[i].name);
            expect_close(what, g + parts[i].off, c->dparams + parts[i].off, parts[i].n, CMP_GRAD);
        }
        expect_backward_adds(m, c->x, c->nx, c->g, c->nx, c->B);
        /* compiled without input_gradient the backward skips dX, and the rest is the same */
        {
            float *g0 = malloc(np * sizeof *g0);
            assert_non_null(g0);
            CHECK_OK(aim_model_zero_grad(m));
            CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->nx, c->B));
            CHECK_OK(aim_model_backward(m, c->g, c->nx));
            memcpy(g0, grads_of(m, &np), np * sizeof *g0);
            aim_model *m2 = att_model(&s);
            compile_model(m2, c->B, 0, 1);
            memcpy(params_of(m2, &np), c->params, np * sizeof(float));
            CHECK_OK(aim_model_forward(m2, AIM_MODE_TRAIN, c->x, c->nx, c->B));
            CHECK_OK(aim_model_backward(m2, c->g, c->nx));
            assert_memory_equal(grads_of(m2, &np), g0, np * sizeof *g0);
            assert_int_equal(aim_model_input_gradient(m2, 0, &dx, &ndx), AIM_ERR_INVALID_STATE);
            aim_model_free(m2);
            free(g0);
        }
        free(yi);
        free(out);
        aim_model_free(m);
    }
    golden_print_worst(CMP, CMP_KINDS);
}

static void test_golden_positional_embedding(void **state) {
    (void)state;
    enum { B = GOLDEN_POS_B, T = GOLDEN_POS_T, E = GOLDEN_POS_E, P = GOLDEN_POS_P, N = B * T * E };
    const size_t dims[2] = {T, E};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_model_add_positional_embedding(m, P));
    compile_model(m, B, 1, 1);
    size_t np = 0, off = 9, wc = 9, bc = 9;
    CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
    assert_true(off == 0 && wc == P * E && bc == 0);
    float *p = params_of(m, &np);
    assert_int_equal(np, P * E);
    memcpy(p, golden_pos_wpe, sizeof golden_pos_wpe);
    const float *y = NULL, *dx = NULL;
    size_t ny = 0, ndx = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, golden_pos_x, N, B));
    CHECK_OK(aim_model_output(m, 0, &y, &ny));
    assert_int_equal(ny, N);
    expect_close("pos Y (inference)", y, golden_pos_y, N, CMP_FORWARD);
    /* one float addition per value, correctly rounded: PyTorch's bits */
    assert_memory_equal(y, golden_pos_y, sizeof golden_pos_y);
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_pos_x, N, B));
    CHECK_OK(aim_model_output(m, 0, &y, &ny));
    assert_memory_equal(y, golden_pos_y, sizeof golden_pos_y);
    CHECK_OK(aim_model_backward(m, golden_pos_g, N));
    CHECK_OK(aim_model_input_gradient(m, 0, &dx, &ndx));
    expect_close("pos dX", dx, golden_pos_dx, N, CMP_GRAD);
    const float *g = grads_of(m, &np);
    expect_close("pos dwpe", g, golden_pos_dwpe, P * E, CMP_GRAD);
    expect_backward_adds(m, golden_pos_x, N, golden_pos_g, N, B);
    /* the rows past T were not used and get nothing */
    for (size_t i = T * E; i < P * E; i++) assert_true(g[i] == 0.0f);
    aim_model_free(m);
}

typedef struct lin_golden {
    const char *name;
    size_t rank, dims[3];
    int32_t bias;
    aim_activation act;
    const float *x, *w, *b, *g, *y, *dx, *dw, *db;
    size_t nx, ny, nw;
} lin_golden;

static const lin_golden LIN_GOLDENS[] = {
    {"bias", 2, {4, 5, 0}, 1, GOLDEN_LIN_BIAS_ACT, golden_lin_bias_x, golden_lin_bias_w, golden_lin_bias_b,
     golden_lin_bias_g, golden_lin_bias_y, golden_lin_bias_dx, golden_lin_bias_dw, golden_lin_bias_db,
     ARRAY_LEN(golden_lin_bias_x), ARRAY_LEN(golden_lin_bias_y), ARRAY_LEN(golden_lin_bias_w)},
    {"nobias", 2, {4, 5, 0}, 0, GOLDEN_LIN_NOBIAS_ACT, golden_lin_nobias_x, golden_lin_nobias_w, NULL,
     golden_lin_nobias_g, golden_lin_nobias_y, golden_lin_nobias_dx, golden_lin_nobias_dw, NULL,
     ARRAY_LEN(golden_lin_nobias_x), ARRAY_LEN(golden_lin_nobias_y), ARRAY_LEN(golden_lin_nobias_w)},
    {"gelu (2, 3, 5)", 3, {2, 3, 5}, 1, GOLDEN_LIN_GELU_ACT, golden_lin_gelu_x, golden_lin_gelu_w,
     golden_lin_gelu_b, golden_lin_gelu_g, golden_lin_gelu_y, golden_lin_gelu_dx, golden_lin_gelu_dw,
     golden_lin_gelu_db, ARRAY_LEN(golden_lin_gelu_x), ARRAY_LEN(golden_lin_gelu_y), ARRAY_LEN(golden_lin_gelu_w)},
};

static void test_golden_linear(void **state) {
    (void)state;
    enum { B = GOLDEN_LIN_B, U = GOLDEN_LIN_U };
    for (size_t k = 0; k < ARRAY_LEN(LIN_GOLDENS); k++) {
        const lin_golden *c = &LIN_GOLDENS[k];
        const size_t E = c->dims[c->rank - 1];
        aim_model *m = NULL;
        aim_dense_config dc;
        CHECK_OK(aim_model_create(NULL, c->rank, c->dims, &m));
        CHECK_OK(aim_dense_config_init(&dc, U, c->act));
        dc.use_bias = c->bias;
        CHECK_OK(aim_model_add_linear(m, &dc));
        size_t rank = 0, od[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_shape(m, 0, &rank, od));
        assert_int_equal(rank, c->rank);
        for (size_t i = 0; i + 1 < rank; i++) assert_int_equal(od[i], c->dims[i]);
        assert_int_equal(od[rank - 1], U);
        compile_model(m, B, 1, 1);
        assert_int_equal(c->nw, U * E);
        size_t np = 0, off = 9, wc = 9, bc = 9;
        CHECK_OK(aim_model_layer_parameters(m, 0, &off, &wc, &bc));
        assert_true(off == 0 && wc == U * E && bc == (c->bias ? U : 0));
        float *p = params_of(m, &np);
        memcpy(p, c->w, wc * sizeof *p);
        if (c->bias) memcpy(p + wc, c->b, bc * sizeof *p);
        char what[96];
        const float *y = NULL, *dx = NULL;
        size_t ny = 0, ndx = 0;
        CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, c->x, c->nx, B));
        CHECK_OK(aim_model_output(m, 0, &y, &ny));
        assert_int_equal(ny, c->ny);
        snprintf(what, sizeof what, "linear %s Y (inference)", c->name);
        expect_close(what, y, c->y, c->ny, CMP_FORWARD);
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, c->x, c->nx, B));
        CHECK_OK(aim_model_output(m, 0, &y, &ny));
        snprintf(what, sizeof what, "linear %s Y", c->name);
        expect_close(what, y, c->y, c->ny, CMP_FORWARD);
        CHECK_OK(aim_model_backward(m, c->g, c->ny));
        CHECK_OK(aim_model_input_gradient(m, 0, &dx, &ndx));
        assert_int_equal(ndx, c->nx);
        snprintf(what, sizeof what, "linear %s dX", c->name);
        expect_close(what, dx, c->dx, c->nx, CMP_GRAD);
        const float *g = grads_of(m, &np);
        snprintf(what, sizeof what, "linear %s dW", c->name);
        expect_close(what, g, c->dw, wc, CMP_GRAD);
        if (c->bias) {
            snprintf(what, sizeof what, "linear %s db", c->name);
            expect_close(what, g + wc, c->db, bc, CMP_GRAD);
        }
        expect_backward_adds(m, c->x, c->nx, c->g, c->ny, B);
        aim_model_free(m);
    }
}

/* The block's tensors in libaimodel's flat order (the generator's T_TENSORS). */
enum {
    TV = GOLDEN_T_V, TE = GOLDEN_T_E, TT = GOLDEN_T_T, TP = GOLDEN_T_P, TF = GOLDEN_T_F,
    T_IN_PROJ_BIAS = 5 /* index below */
};
static const struct {
    const char *name;
    size_t n;
} BLOCK_TENSORS[] = {
    {"embedding weight", TV * TE}, {"wpe", TP * TE},           {"ln1 weight", TE},         {"ln1 bias", TE},
    {"in_proj_weight", 3 * TE * TE}, {"in_proj_bias", 3 * TE},  {"out_proj.weight", TE * TE}, {"out_proj.bias", TE},
    {"ln2 weight", TE},            {"ln2 bias", TE},           {"fc1 weight", TF * TE},    {"fc1 bias", TF},
    {"fc2 weight", TE * TF},       {"fc2 bias", TE},           {"ln_f weight", TE},        {"ln_f bias", TE},
    {"head weight", TV * TE},
};

static size_t block_tensor_offset(size_t t) {
    size_t off = 0;
    for (size_t i = 0; i < t; i++) off += BLOCK_TENSORS[i].n;
    return off;
}

static void expect_block_tensors(const char *prefix, const float *got, const float *ref, cmp_kind kind) {
    size_t off = 0;
    for (size_t t = 0; t < ARRAY_LEN(BLOCK_TENSORS); t++) {
        char what[96];
        snprintf(what, sizeof what, "%s %s", prefix, BLOCK_TENSORS[t].name);
        expect_close(what, got + off, ref + off, BLOCK_TENSORS[t].n, kind);
        off += BLOCK_TENSORS[t].n;
    }
    assert_int_equal(off, GOLDEN_T_PARAMS);
}

/* The key third of in_proj_bias: its gradient is zero in exact arithmetic
 * (see att_parts()). The float noise left there is checked to be small
 * against the other thirds, then set to its exact value, 0, as the
 * generator does before every PyTorch step: Adam would turn the noise
 * (~1e-8, the size of eps) into steps of up to lr. Returns the noise ratio. */
static double zero_key_bias_grad(float *g, size_t in_proj_bias_off, size_t E) {
    const double scale = max_abs_value(g + in_proj_bias_off, 3 * E);
    const double noise = max_abs_value(g + in_proj_bias_off + E, E);
    assert_true(scale > 0.0);
    if (!(noise <= 1e-4 * scale)) fail_msg("key bias gradient %.3g against %.3g", noise, scale);
    memset(g + in_proj_bias_off + E, 0, E * sizeof *g);
    return noise / scale;
}

static void test_golden_block_adamw(void **state) {
    (void)state;
    enum { NP = GOLDEN_T_PARAMS, B = GOLDEN_T_B, NIDS = B * TT, NOUT = B * TT * TV };
    const block_spec s = {TV, TE, GOLDEN_T_H, TT, TP, TF, 0.0f};
    aim_model *m = block_model(&s);
    compile_model(m, B, 0, 1);
    size_t np = 0;
    float *p = params_of(m, &np);
    assert_int_equal(np, NP);
    /* Each layer's parameters where the flat order puts them. */
    static const size_t first_tensor[BLOCK_LAYERS] = {0, 1, 2, 4, 0, 8, 10, 12, 0, 14, 16};
    static const size_t tensor_count[BLOCK_LAYERS] = {1, 1, 2, 4, 0, 2, 2, 2, 0, 2, 1};
    for (size_t l = 0; l < BLOCK_LAYERS; l++) {
        size_t off = 0, wc = 0, bc = 0, want = 0;
        CHECK_OK(aim_model_layer_parameters(m, l, &off, &wc, &bc));
        for (size_t t = 0; t < tensor_count[l]; t++) want += BLOCK_TENSORS[first_tensor[l] + t].n;
        assert_int_equal(wc + bc, want);
        if (want) assert_int_equal(off, block_tensor_offset(first_tensor[l]));
    }
    float ln_eps = 0.0f;
    {
        aim_layer_norm_config lc;
        CHECK_OK(aim_layer_norm_config_init(&lc));
        ln_eps = lc.eps;
    }
    assert_true(ln_eps == GOLDEN_T_LN_EPS);
    memcpy(p, golden_t_params0, sizeof golden_t_params0);
    aim_adam_config ac;
    CHECK_OK(aim_adam_config_init(&ac));
    ac.decoupled = 1;
    ac.weight_decay = GOLDEN_T_WD;
    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, &ac, NP, &opt));
    const size_t bias_off = block_tensor_offset(T_IN_PROJ_BIAS);
    static float traj[GOLDEN_T_STEPS][NP];
    double noise = 0.0;
    for (size_t t = 0; t < GOLDEN_T_STEPS; t++) {
        float loss = 0;
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, golden_t_ids, NIDS, B));
        /* a label per position: NIDS labels for a (T, V) output */
        CHECK_OK(aim_model_loss_sparse(m, 0, golden_t_labels, NIDS, &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        char what[64];
        snprintf(what, sizeof what, "loss of step %zu", t + 1);
        expect_close(what, &loss, &golden_t_losses[t], 1, CMP_FORWARD);
        float *g = grads_of(m, &np);
        noise = fmax(noise, zero_key_bias_grad(g, bias_off, TE));
        if (t == 0) {
            const float *y = NULL;
            size_t n = 0;
            CHECK_OK(aim_model_output(m, 0, &y, &n));
            assert_int_equal(n, NOUT);
            expect_close("logits", y, golden_t_logits, NOUT, CMP_ATTN);
            expect_block_tensors("d", g, golden_t_grad, CMP_GRAD);
            /* exactly zero, as in PyTorch: the unused id 7 and the positions T.. */
            for (size_t j = 0; j < TE; j++) assert_true(g[7 * TE + j] == 0.0f);
            for (size_t j = TT * TE; j < TP * TE; j++) assert_true(g[TV * TE + j] == 0.0f);
        }
        CHECK_OK(aim_optimizer_step_model(opt, m, GOLDEN_T_LR));
        memcpy(traj[t], p, sizeof traj[t]);
        snprintf(what, sizeof what, "after step %zu:", t + 1);
        expect_block_tensors(what, traj[t], golden_t_traj + t * NP, CMP_PARAMS);
    }
    printf("    key bias gradient noise: at most %.2e of in_proj_bias's largest\n", noise);
    static float delta[NP], ref_delta[NP];
    for (size_t i = 0; i < NP; i++) {
        delta[i] = traj[GOLDEN_T_STEPS - 1][i] - golden_t_params0[i];
        ref_delta[i] = golden_t_traj[(GOLDEN_T_STEPS - 1) * NP + i] - golden_t_params0[i];
    }
    expect_block_tensors("update", delta, ref_delta, CMP_UPDATE);
    golden_print_worst(CMP, CMP_KINDS);
    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ======================================================================== */
/* 2. Configuration, refusals, initialization                               */
/* ======================================================================== */

static void test_config_and_refusals(void **state) {
    (void)state;
    aim_attention_config ac;
    memset(&ac, 0x5a, sizeof ac);
    CHECK_OK(aim_attention_config_init(&ac, 3));
    assert_int_equal(ac.num_heads, 3);
    assert_int_equal(ac.causal, 0);
    assert_true(ac.dropout == 0.0f);
    assert_int_equal(ac.bias, 1);
    assert_int_equal(ac.init, AIM_INIT_PYTORCH);
    for (size_t i = 0; i < ARRAY_LEN(ac.reserved); i++) assert_int_equal(ac.reserved[i], 0);
    assert_int_equal(aim_attention_config_init(NULL, 2), AIM_ERR_INVALID_ARGUMENT);

    const size_t dims[2] = {5, 8}, vec[1] = {8};
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    struct {
        size_t heads;
        float dropout;
        uint32_t reserved0;
        aim_status want;
        const char *needle;
    } bad[] = {
        {3, 0.0f, 0, AIM_ERR_INVALID_ARGUMENT, "num_heads 3"},
        {0, 0.0f, 0, AIM_ERR_INVALID_ARGUMENT, "num_heads 0"},
        {2, 1.0f, 0, AIM_ERR_INVALID_ARGUMENT, "dropout"},
        {2, -0.1f, 0, AIM_ERR_INVALID_ARGUMENT, "dropout"},
        {2, 0.0f, 1, AIM_ERR_INVALID_ARGUMENT, "reserved"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        CHECK_OK(aim_attention_config_init(&ac, bad[i].heads));
        ac.dropout = bad[i].dropout;
        ac.reserved[0] = bad[i].reserved0;
        assert_int_equal(aim_model_add_attention(m, &ac), bad[i].want);
        const char *msg = aim_model_last_error(m);
        if (!strstr(msg, bad[i].needle)) fail_msg("case %zu: message '%s' lacks '%s'", i, msg, bad[i].needle);
        assert_int_equal(aim_model_layer_count(m), 0); /* a refused layer is not added */
    }
    assert_int_equal(aim_model_add_attention(m, NULL), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_add_positional_embedding(m, 0), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_add_positional_embedding(m, 4), AIM_ERR_SHAPE_MISMATCH); /* T 5 > 4 */
    assert_int_equal(aim_model_layer_count(m), 0);
    CHECK_OK(aim_model_add_positional_embedding(m, 5));
    CHECK_OK(aim_attention_config_init(&ac, 4));
    CHECK_OK(aim_model_add_attention(m, &ac));
    aim_dense_config dc;
    CHECK_OK(aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_linear(m, &dc));
    size_t rank = 0, od[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, 1, &rank, od));
    assert_true(rank == 2 && od[0] == 5 && od[1] == 8);
    CHECK_OK(aim_model_layer_shape(m, 2, &rank, od));
    assert_true(rank == 2 && od[0] == 5 && od[1] == 3);
    /* the linear output (5, 3) is no (time, embed) for 2 heads of an even embed */
    CHECK_OK(aim_attention_config_init(&ac, 2));
    assert_int_equal(aim_model_add_attention(m, &ac), AIM_ERR_INVALID_ARGUMENT);
    aim_model_free(m);

    /* not a sequence: a vector, or an int32 input */
    CHECK_OK(aim_model_create(NULL, 1, vec, &m));
    CHECK_OK(aim_attention_config_init(&ac, 2));
    assert_int_equal(aim_model_add_attention(m, &ac), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_add_positional_embedding(m, 10), AIM_ERR_SHAPE_MISMATCH);
    aim_model_free(m);
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_model_set_input_dtype(m, 0, AIM_DTYPE_INT32));
    assert_int_equal(aim_model_add_attention(m, &ac), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_add_positional_embedding(m, 10), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_layer_count(m), 0);
    aim_model_free(m);
}

/* PyTorch's init: xavier_uniform_ in_proj_weight (fans E and 3E), out_proj
 * U(-1/sqrt(E), 1/sqrt(E)), zero biases; wpe N(0, 0.02²). */
static void test_init(void **state) {
    (void)state;
    enum { T = 64, E = 32 };
    const size_t dims[2] = {T, E};
    aim_model *m = NULL;
    aim_attention_config ac;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_model_add_positional_embedding(m, T));
    CHECK_OK(aim_attention_config_init(&ac, 4));
    CHECK_OK(aim_model_add_attention(m, &ac));
    compile_model(m, 1, 0, 17);
    size_t np = 0, off = 0, wc = 0, bc = 0;
    const float *p = params_of(m, &np);
    assert_int_equal(np, T * E + att_param_count(E, 1));
    /* wpe: mean within 5 standard errors of 0, sd within 8% of 0.02 (its standard error is 1.6%) */
    double s = 0, s2 = 0;
    for (size_t i = 0; i < T * E; i++) {
        s += p[i];
        s2 += (double)p[i] * p[i];
    }
    const double mean = s / (T * E), sd = sqrt(s2 / (T * E) - mean * mean);
    printf("    wpe init: mean %.5f, sd %.5f\n", mean, sd);
    assert_true(fabs(mean) < 5 * 0.02 / sqrt(T * E));
    assert_true(fabs(sd - 0.02) < 0.08 * 0.02);
    CHECK_OK(aim_model_layer_parameters(m, 1, &off, &wc, &bc));
    assert_int_equal(off, T * E);
    part parts[6];
    const size_t n = att_parts(E, 1, 0, off, parts);
    const double lim[4] = {sqrt(6.0 / (E + 3 * E)), 0.0, 1.0 / sqrt(E), 0.0};
    for (size_t t = 0; t < n; t++) {
        const double mx = max_abs_value(p + parts[t].off, parts[t].n);
        printf("    %-16s max |w| %.4f (bound %.4f)\n", parts[t].name, mx, lim[t]);
        if (lim[t] == 0.0) assert_true(mx == 0.0);
        else assert_true(mx <= lim[t] && mx > 0.98 * lim[t]);
    }
    aim_model_free(m);
}

/* ======================================================================== */
/* 3. Gradient checks                                                       */
/* ======================================================================== */

/* L = sum(Y * R) of a TRAINING forward whose random stream restarts at the
 * same seed before every evaluation, so a dropout layer draws the same masks
 * each time and L is a smooth function of the parameters and the input
 * (without dropout the stream is irrelevant). Tolerance: test_gradcheck.c's
 * MODEL_TOL (h = 1e-2, rtol 1e-2, atol 1e-3). Attention is smooth with
 * derivatives of order 1 at these points (inputs U(-1, 1), scores of order
 * 1), so the truncation error h²/6 |L'''| stays near 1e-5; L sums outputs
 * computed in float (~1e-7 relative each), and its rounding over 2h adds ~5e-5. The
 * test prints the worst use of the tolerance. A 10% error in an entry of 0.02
 * or more fails it (0.1 |a| > 0.01 |a| + 1e-3). */
static const gradcheck_tol ATT_TOL = {1e-2, 1e-2, 1e-3};
#define GC_SEED 99

typedef struct gc_ctx {
    aim_model *m;
    const float *x, *r;
    size_t nx, ny, batch;
    int failed;
} gc_ctx;

static double objective(void *p) {
    gc_ctx *c = p;
    const float *y = NULL;
    size_t count = 0;
    if (aim_model_set_random_seed(c->m, GC_SEED) != AIM_OK ||
        aim_model_forward(c->m, AIM_MODE_TRAIN, c->x, c->nx, c->batch) != AIM_OK ||
        aim_model_output(c->m, 0, &y, &count) != AIM_OK || count != c->ny) {
        c->failed = 1;
        return NAN;
    }
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += (double)y[i] * (double)c->r[i];
    return s;
}

typedef struct gc_spec {
    const char *label;
    size_t B, T, E, H;
    int32_t causal, bias;
    float dropout;
    int chain; /* positional embedding (P = T + 2) -> attention -> linear 5 GELU */
} gc_spec;

static const gc_spec GC_SPECS[] = {
    {"E 8, 2 heads", 2, 5, 8, 2, 0, 1, 0.0f, 0},
    {"E 8, 2 heads, causal", 2, 5, 8, 2, 1, 1, 0.0f, 0},
    {"E 6, 3 heads, causal", 2, 4, 6, 3, 1, 1, 0.0f, 0},
    {"E 8, 4 heads", 1, 6, 8, 4, 0, 1, 0.0f, 0},
    {"E 8, 1 head, causal, no bias", 2, 5, 8, 1, 1, 0, 0.0f, 0},
    {"T 1, E 4, 4 heads of 1", 3, 1, 4, 4, 0, 1, 0.0f, 0},
    {"T 2, E 3, 3 heads of 1, causal", 2, 2, 3, 3, 1, 1, 0.0f, 0},
    {"E 8, 2 heads, dropout 0.3", 2, 5, 8, 2, 0, 1, 0.3f, 0},
    {"E 6, 2 heads, causal, dropout 0.3", 3, 5, 6, 2, 1, 1, 0.3f, 0},
    {"wpe -> E 8, 2 heads, causal, dropout 0.2 -> linear GELU", 2, 5, 8, 2, 1, 1, 0.2f, 1},
    /* T >= 64: causal products in row and key blocks of 17 (17, 17, 17, 15) */
    {"T 66, E 4, 2 heads, causal, dropout 0.2", 1, 66, 4, 2, 1, 1, 0.2f, 0},
};

static void run_gradcheck(const gc_spec *s, gradcheck_worst *worst) {
    const size_t dims[2] = {s->T, s->E};
    aim_model *m = NULL;
    aim_attention_config ac;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    if (s->chain) CHECK_OK(aim_model_add_positional_embedding(m, s->T + 2));
    CHECK_OK(aim_attention_config_init(&ac, s->H));
    ac.causal = s->causal;
    ac.bias = s->bias;
    ac.dropout = s->dropout;
    CHECK_OK(aim_model_add_attention(m, &ac));
    if (s->chain) {
        aim_dense_config dc;
        CHECK_OK(aim_dense_config_init(&dc, 5, AIM_ACT_GELU));
        CHECK_OK(aim_model_add_linear(m, &dc));
    }
    compile_model(m, s->B, 1, 3);
    const size_t att = s->chain ? 1 : 0;
    size_t np = 0, off = 0, wc = 0, bc = 0;
    float *params = params_of(m, &np);
    CHECK_OK(aim_model_layer_parameters(m, att, &off, &wc, &bc));
    fill_att_params(params + off, s->E, s->bias, 40);
    if (s->chain) {
        fill_uniform(params, (s->T + 2) * s->E, 41, -0.5f, 0.5f);                  /* wpe */
        fill_uniform(params + off + wc + bc, np - off - wc - bc, 42, -0.4f, 0.4f); /* linear W, b */
    }
    const size_t nx = s->B * aim_model_input_size(m), ny = s->B * aim_model_output_size(m);
    float *x = malloc(nx * sizeof *x), *r = malloc(ny * sizeof *r), *ap = malloc(np * sizeof *ap);
    float *ax = malloc(nx * sizeof *ax);
    double *num_p = malloc(np * sizeof *num_p), *num_x = malloc(nx * sizeof *num_x);
    assert_true(x && r && ap && ax && num_p && num_x);
    fill_uniform(x, nx, 43, -1.0f, 1.0f);
    weights_r(r, ny, 44);

    /* analytic, with the masks of seed GC_SEED */
    CHECK_OK(aim_model_set_random_seed(m, GC_SEED));
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, nx, s->B));
    CHECK_OK(aim_model_backward(m, r, ny));
    memcpy(ap, grads_of(m, &np), np * sizeof *ap);
    const float *ig = NULL;
    size_t nig = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &ig, &nig));
    assert_int_equal(nig, nx);
    memcpy(ax, ig, nx * sizeof *ax);
    if (s->dropout > 0.0f) {
        /* the masks did drop some weights (the check is of dropout's gradient) */
        aim__node_state ns;
        CHECK_OK(aim__model_node_state(m, att, &aim__attention_ops, "test", &ns));
        const size_t TT2 = s->H * s->T * s->T;
        size_t dropped = 0;
        for (size_t b = 0; b < s->B; b++) {
            const float *P = NULL, *Pd = NULL;
            att_weights(&ns, s->T, s->E, s->H, b, &P, &Pd);
            for (size_t i = 0; i < TT2; i++) dropped += P[i] > 0.0f && Pd[i] == 0.0f;
        }
        assert_true(dropped > 0);
    }

    gc_ctx c = {m, x, r, nx, ny, s->B, 0};
    gradcheck_numeric(params, np, ATT_TOL.h, objective, &c, num_p);
    gradcheck_numeric(x, nx, ATT_TOL.h, objective, &c, num_x);
    assert_false(c.failed);
    char why[GRADCHECK_WHY];
    double max_a = 0.0;
    part parts[10];
    size_t n_parts = att_parts(s->E, s->bias, s->T == 1 ? 2 : 1, off, parts);
    if (s->chain) {
        parts[n_parts++] = (part){"wpe", 0, (s->T + 2) * s->E, GRADCHECK_SPARSE}; /* rows T.. unused */
        parts[n_parts++] = (part){"linear", off + wc + bc, np - off - wc - bc, GRADCHECK_DENSE};
    }
    size_t covered = 0;
    for (size_t i = 0; i < n_parts; i++) {
        covered += parts[i].n;
        if (!gradcheck_part(s->label, parts[i].name, ap + parts[i].off, num_p + parts[i].off, parts[i].n, &ATT_TOL,
                            parts[i].guard, worst, &max_a, why, sizeof why))
            fail_msg("%s", why);
    }
    assert_int_equal(covered, np);
    if (!gradcheck_part(s->label, "input", ax, num_x, nx, &ATT_TOL, GRADCHECK_DENSE, worst, &max_a, why, sizeof why))
        fail_msg("%s", why);
    if (!gradcheck_case_ok(s->label, max_a, GRADCHECK_DENSE, why, sizeof why)) fail_msg("%s", why);
    free(x);
    free(r);
    free(ap);
    free(ax);
    free(num_p);
    free(num_x);
    aim_model_free(m);
}

static void test_gradcheck(void **state) {
    (void)state;
    gradcheck_worst worst;
    memset(&worst, 0, sizeof worst);
    for (size_t k = 0; k < ARRAY_LEN(GC_SPECS); k++) run_gradcheck(&GC_SPECS[k], &worst);
    printf("    worst: %zu values in %zu parts, max |a - n| %.2e, %.0f%% of the tolerance (%s, %s)\n",
           worst.values, worst.parts, worst.max_abs_err, 100.0 * worst.max_usage, worst.label, worst.part);
}

/* ======================================================================== */
/* 4. Dropout                                                               */
/* ======================================================================== */

static void train_forward(aim_model *m, const float *x, size_t batch, float *y) {
    const size_t n = batch * aim_model_input_size(m);
    const float *out = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, n, batch));
    CHECK_OK(aim_model_output(m, 0, &out, &count));
    memcpy(y, out, count * sizeof *y);
}

/* |observed - expected| within 5 binomial standard deviations. */
static void expect_fraction(const char *what, size_t hits, size_t trials, double prob) {
    const double frac = (double)hits / (double)trials, sd = sqrt(prob * (1.0 - prob) / (double)trials);
    printf("    %-40s %.4f, expected %.4f +- %.4f (5 sd)\n", what, frac, prob, 5 * sd);
    if (!(fabs(frac - prob) <= 5 * sd))
        fail_msg("%s: fraction %.5f, expected %.5f within %.5f", what, frac, prob, 5 * sd);
}

static void test_dropout(void **state) {
    (void)state;
    enum { B = 8, T = 16, E = 8, H = 2, N = B * T * E, HTT = H * T * T };
    const float p = 0.3f, keep = 1.0f / (1.0f - p);
    const att_spec sd = {T, E, H, 0, 1, p}, s0 = {T, E, H, 0, 1, 0.0f};
    aim_model *m = att_model(&sd), *m0 = att_model(&s0);
    compile_model(m, B, 0, 5);
    compile_model(m0, B, 0, 5);
    size_t np = 0;
    float *pp = params_of(m, &np), *pp0 = params_of(m0, &np);
    fill_att_params(pp, E, 1, 60);
    memcpy(pp0, pp, np * sizeof *pp);
    static float x[N], a1[N], a2[N], b1[N], c1[N], yi[N], y0[N], out[N];
    fill_uniform(x, N, 61, -1.0f, 1.0f);

    /* a seed fixes the masks; each training forward draws new ones */
    CHECK_OK(aim_model_set_random_seed(m, 7));
    train_forward(m, x, B, a1);
    train_forward(m, x, B, a2);
    assert_memory_not_equal(a1, a2, sizeof a1);
    CHECK_OK(aim_model_set_random_seed(m, 7));
    train_forward(m, x, B, b1);
    assert_memory_equal(a1, b1, sizeof a1);
    CHECK_OK(aim_model_set_random_seed(m, 8));
    train_forward(m, x, B, c1);
    assert_memory_not_equal(a1, c1, sizeof a1);

    /* the cached weights of the last forward: P' = P / (1 - p) or 0 */
    aim__node_state ns;
    CHECK_OK(aim__model_node_state(m, 0, &aim__attention_ops, "test", &ns));
    assert_non_null(ns.cache);
    size_t dropped = 0, positive = 0;
    for (size_t b = 0; b < B; b++) {
        const float *P = NULL, *Pd = NULL;
        att_weights(&ns, T, E, H, b, &P, &Pd);
        for (size_t r = 0; r < H * T; r++) { /* every row a distribution */
            double sum = 0.0;
            for (size_t j = 0; j < T; j++) sum += P[r * T + j];
            if (!(fabs(sum - 1.0) <= 1e-5)) fail_msg("sample %zu: row %zu of P sums to %.7f", b, r, sum);
        }
        for (size_t i = 0; i < HTT; i++) {
            assert_true(P[i] > 0.0f); /* no mask: every weight positive */
            positive++;
            if (Pd[i] == 0.0f) dropped++;
            else if (Pd[i] != P[i] * keep) fail_msg("P'[%zu] = %.9g, P / (1 - p) = %.9g", i, (double)Pd[i], (double)(P[i] * keep));
        }
    }
    expect_fraction("attention weights dropped, p 0.3", dropped, positive, (double)p);

    /* inference and predict ignore dropout: the bits of the same model with dropout 0 */
    const float *y = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, N, B));
    CHECK_OK(aim_model_output(m, 0, &y, &count));
    memcpy(yi, y, sizeof yi);
    train_forward(m0, x, B, y0);
    assert_memory_equal(yi, y0, sizeof yi);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, B, &ws));
    CHECK_OK(aim_model_predict(m, ws, x, N, B, out, N));
    assert_memory_equal(out, yi, sizeof out);
    aim_workspace_free(ws);
    /* ... and training with dropout does not give them */
    assert_memory_not_equal(a1, yi, sizeof a1);
    double diff = 0.0;
    for (size_t i = 0; i < N; i++) diff = fmax(diff, fabs((double)a1[i] - (double)yi[i]));
    printf("    training output against inference: max |difference| %.3f\n", diff);
    assert_true(diff > 1e-2);

    /* a sample's masks come from its row: the first 2 rows of a batch of 8
     * get the masks of a batch of 2, zero for zero; the outputs agree within
     * rounding (the projections are one GEMM over a call's rows, and
     * OpenBLAS may round a row differently with another row count) */
    static unsigned char kept8[2 * HTT], kept2[2 * HTT];
    static float y2[2 * T * E];
    CHECK_OK(aim_model_set_random_seed(m, 7));
    train_forward(m, x, B, b1);
    for (int run = 0; run < 2; run++) {
        CHECK_OK(aim__model_node_state(m, 0, &aim__attention_ops, "test", &ns));
        for (size_t b = 0; b < 2; b++) {
            const float *P = NULL, *Pd = NULL;
            att_weights(&ns, T, E, H, b, &P, &Pd);
            for (size_t i = 0; i < HTT; i++) (run ? kept2 : kept8)[b * HTT + i] = Pd[i] != 0.0f;
        }
        if (run) break;
        CHECK_OK(aim_model_set_random_seed(m, 7));
        train_forward(m, x, 2, y2);
    }
    assert_memory_equal(kept2, kept8, sizeof kept8);
    const double scale = max_abs_value(b1, 2 * T * E);
    for (size_t i = 0; i < 2 * T * E; i++) assert_true(fabs((double)y2[i] - (double)b1[i]) <= 1e-5 * scale);
    aim_model_free(m);
    aim_model_free(m0);
}

/* ======================================================================== */
/* 5. Thread pool                                                           */
/* ======================================================================== */

enum { PL_B = 7, PL_T = 8, PL_E = 16, PL_H = 4, PL_N = PL_B * PL_T * PL_E };

typedef struct pool_run_out {
    float y[PL_N], dx[PL_N], g[4 * PL_E * PL_E + 4 * PL_E], pred[PL_N], infer[PL_N];
    size_t parts;
} pool_run_out;

/* One training step (forward, backward with G) and a predict of (8, 16) ->
 * causal attention, 4 heads, on `threads` threads (min_work 1: every batch
 * splits; 1: no pool). */
static void pool_run(size_t threads, float dropout, const float *x, const float *g, pool_run_out *o) {
    const att_spec s = {PL_T, PL_E, PL_H, 1, 1, dropout};
    aim_model *m = att_model(&s);
    aim_threadpool *pool = NULL;
    compile_model(m, PL_B, 1, 4);
    size_t np = 0;
    fill_att_params(params_of(m, &np), PL_E, 1, 70);
    assert_int_equal(np, ARRAY_LEN(o->g));
    if (threads > 1) {
        CHECK_OK(aim_threadpool_create(NULL, threads, &pool));
        CHECK_OK(aim_threadpool_set_min_work(pool, 1));
        CHECK_OK(aim_model_set_threadpool(m, pool));
    }
    CHECK_OK(aim_model_set_random_seed(m, 12));
    train_forward(m, x, PL_B, o->y); /* the second forward's masks, not only the first's */
    CHECK_OK(aim_model_zero_grad(m));
    train_forward(m, x, PL_B, o->y);
    aim__node_state ns;
    CHECK_OK(aim__model_node_state(m, 0, &aim__attention_ops, "test", &ns));
    o->parts = ns.parts;
    CHECK_OK(aim_model_backward(m, g, PL_N));
    const float *ig = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &ig, &count));
    memcpy(o->dx, ig, sizeof o->dx);
    memcpy(o->g, grads_of(m, &np), sizeof o->g);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, PL_B, &ws));
    if (pool) CHECK_OK(aim_workspace_set_threadpool(ws, m, pool));
    CHECK_OK(aim_model_predict(m, ws, x, PL_N, PL_B, o->pred, PL_N));
    aim_workspace_free(ws);
    const float *y = NULL;
    CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, PL_N, PL_B));
    CHECK_OK(aim_model_output(m, 0, &y, &count));
    memcpy(o->infer, y, sizeof o->infer);
    aim_model_free(m);
    aim_threadpool_free(pool);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double e = 0.0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - (double)b[i]));
    return e;
}

/* What must hold, and why. A pooled step runs each slice of the batch as a
 * call of its own (its rows are one GEMM of the projections), so it gives
 * the bits of the slices run one by one on the model without a pool: every
 * output and input-gradient row, and the parameter gradients summed in slice
 * order (checked without dropout, whose masks follow the global row, which a
 * slice run alone does not see). Against the unsplit step it agrees within
 * rounding only: OpenBLAS may round a row differently depending on how many
 * rows one GEMM holds (test_threadpool.c says the same of dense layers; on
 * this machine's native kernel they happen to match bit for bit, under
 * valgrind's they do not), so outputs, dX, gradients and predictions are
 * within 1e-5 of their largest. With dropout 0.25 that is the evidence that
 * the masks did not change with the split: dropout moves the outputs by
 * more than 1e-2, 1000 times the tolerance. Two pooled runs are
 * bit-identical. */
static void expect_near(const char *what, const float *got, const float *ref, size_t n, int *same) {
    const double e = max_diff(got, ref, n), scale = max_abs_value(ref, n);
    if (!(e <= 1e-5 * scale)) fail_msg("%s: max |difference| %.3g of max |value| %.3g", what, e, scale);
    *same &= memcmp(got, ref, n * sizeof *got) == 0;
}

static void test_thread_pool(void **state) {
    (void)state;
    static float x[PL_N], g[PL_N];
    static pool_run_out ref, split, again, ref_d;
    fill_uniform(x, PL_N, 81, -1.0f, 1.0f);
    fill_uniform(g, PL_N, 82, -1.0f, 1.0f);
    const size_t NG = ARRAY_LEN(ref.g), row = PL_T * PL_E;
    for (int with_dropout = 0; with_dropout < 2; with_dropout++) {
        const float p = with_dropout ? 0.25f : 0.0f;
        pool_run_out *r = with_dropout ? &ref_d : &ref;
        pool_run(1, p, x, g, r);
        assert_int_equal(r->parts, 1);
        assert_memory_equal(r->infer, r->pred, sizeof r->pred);
        for (size_t threads = 2; threads <= 3; threads++) {
            int same = 1;
            pool_run(threads, p, x, g, &split);
            assert_int_equal(split.parts, threads);
            pool_run(threads, p, x, g, &again);
            assert_memory_equal(&again, &split, sizeof split);
            expect_near("training output", split.y, r->y, PL_N, &same);
            expect_near("input gradient", split.dx, r->dx, PL_N, &same);
            int sums_same = 1; /* sums over the batch in another order: not expected to match */
            expect_near("parameter gradients", split.g, r->g, NG, &sums_same);
            expect_near("predict", split.pred, r->pred, PL_N, &same);
            expect_near("inference forward", split.infer, r->pred, PL_N, &same);
            printf("    %zu threads, dropout %.2f: %zu slices; outputs and dX %s the unsplit step's\n", threads,
                   (double)p, split.parts, same ? "the bits of" : "within rounding of");
            if (with_dropout) continue;
            /* the slices one by one, without a pool */
            const att_spec s = {PL_T, PL_E, PL_H, 1, 1, 0.0f};
            aim_model *m = att_model(&s);
            compile_model(m, PL_B, 1, 4);
            size_t np = 0, n = 0;
            fill_att_params(params_of(m, &np), PL_E, 1, 70);
            static pool_run_out sl;
            for (size_t w = 0; w < threads; w++) {
                size_t b0 = 0, nb = 0;
                aim__split(PL_B, threads, w, &b0, &nb);
                const float *y = NULL, *dx = NULL;
                CHECK_OK(aim_model_zero_grad(m));
                CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x + b0 * row, nb * row, nb));
                CHECK_OK(aim_model_output(m, 0, &y, &n));
                memcpy(sl.y + b0 * row, y, nb * row * sizeof *y);
                CHECK_OK(aim_model_backward(m, g + b0 * row, nb * row));
                CHECK_OK(aim_model_input_gradient(m, 0, &dx, &n));
                memcpy(sl.dx + b0 * row, dx, nb * row * sizeof *dx);
                const float *gr = grads_of(m, &np);
                for (size_t i = 0; i < NG; i++) sl.g[i] = w ? sl.g[i] + gr[i] : gr[i];
            }
            assert_memory_equal(split.y, sl.y, sizeof sl.y);
            assert_memory_equal(split.dx, sl.dx, sizeof sl.dx);
            assert_memory_equal(split.g, sl.g, sizeof sl.g);
            aim_model_free(m);
        }
    }
    /* the dropout run did drop: its training output is far from the plain one */
    assert_true(max_diff(ref_d.y, ref.y, PL_N) > 1e-2);
}

/* The transformer block (every kind of this file, with attention dropout
 * 0.1) on 2 threads against none: a training step's logits, loss and
 * gradients and predict_ids under a workspace pool agree within rounding
 * (see test_thread_pool()); dropout moves the logits by far more, so the
 * masks are the same. */
static void block_pool_run(size_t threads, float *logits, float *loss, float *g, size_t ng, float *pred,
                           size_t *parts) {
    enum { B = 5, NIDS = B * 6, NOUT = NIDS * 13 };
    const block_spec s = {13, 8, 2, 6, 10, 16, 0.1f};
    aim_model *m = block_model(&s);
    aim_threadpool *pool = NULL;
    compile_model(m, B, 0, 6);
    if (threads > 1) {
        CHECK_OK(aim_threadpool_create(NULL, threads, &pool));
        CHECK_OK(aim_threadpool_set_min_work(pool, 1));
        CHECK_OK(aim_model_set_threadpool(m, pool));
    }
    int32_t ids[NIDS], labels[NIDS];
    fill_ids(ids, NIDS, 31, 13);
    fill_ids(labels, NIDS, 32, 13);
    const float *y = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, ids, NIDS, B));
    aim__node_state ns;
    CHECK_OK(aim__model_node_state(m, 3, &aim__attention_ops, "test", &ns));
    *parts = ns.parts;
    CHECK_OK(aim_model_output(m, 0, &y, &n));
    assert_int_equal(n, NOUT);
    memcpy(logits, y, NOUT * sizeof *logits);
    CHECK_OK(aim_model_loss_sparse(m, 0, labels, NIDS, loss));
    CHECK_OK(aim_model_backward(m, NULL, 0));
    size_t np = 0;
    const float *gr = grads_of(m, &np);
    assert_int_equal(np, ng);
    memcpy(g, gr, ng * sizeof *g);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, B, &ws));
    if (pool) CHECK_OK(aim_workspace_set_threadpool(ws, m, pool));
    CHECK_OK(aim_model_predict_ids(m, ws, ids, NIDS, B, pred, NOUT));
    aim_workspace_free(ws);
    aim_model_free(m);
    aim_threadpool_free(pool);
}

static void test_thread_pool_block(void **state) {
    (void)state;
    /* embedding, wpe, LN, attention, LN, fc1, fc2, LN, head */
    enum { NOUT = 5 * 6 * 13, NG = 13 * 8 + 10 * 8 + 16 + 4 * 64 + 32 + 16 + 16 * 8 + 16 + 8 * 16 + 8 + 16 + 13 * 8 };
    static float l1[NOUT], l2[NOUT], p1[NOUT], p2[NOUT], g1[NG], g2[NG];
    float loss1 = 0, loss2 = 0;
    size_t parts1 = 0, parts2 = 0;
    block_pool_run(1, l1, &loss1, g1, NG, p1, &parts1);
    block_pool_run(2, l2, &loss2, g2, NG, p2, &parts2);
    assert_int_equal(parts1, 1);
    assert_int_equal(parts2, 2);
    const double el = max_diff(l1, l2, NOUT), ep = max_diff(p1, p2, NOUT), eg = max_diff(g1, g2, NG);
    const double sl = max_abs_value(l1, NOUT), sg = max_abs_value(g1, NG), drop = max_diff(l1, p1, NOUT);
    printf("    block on 2 threads against none: logits %.2e, predictions %.2e, gradients %.2e (of %.3g); "
           "dropout moves the logits by %.3g\n", el, ep, eg, sg, drop);
    assert_true(el <= 1e-5 * sl && ep <= 1e-5 * sl && eg <= 1e-5 * sg);
    assert_true(fabs((double)loss1 - (double)loss2) <= 1e-6 * fabs((double)loss1));
    assert_true(drop > 1e-2); /* the training forward did drop weights, and the masks agree */
}

/* ======================================================================== */
/* 6. Serialization                                                         */
/* ======================================================================== */

static const block_spec SER_BLOCK = {13, 8, 2, 6, 10, 16, 0.1f};
enum { SER_B = 4, SER_IDS = SER_B * 6, SER_OUT = SER_IDS * 13 };

static aim_model *ser_model(uint64_t seed) {
    aim_model *m = block_model(&SER_BLOCK);
    compile_model(m, SER_B, 0, seed);
    return m;
}

static void ser_data(int32_t *ids, int32_t *labels, unsigned step) {
    fill_ids(ids, SER_IDS, 500 + step, 13);
    fill_ids(labels, SER_IDS, 900 + step, 13);
}

static aim_optimizer *adamw(const aim_allocator *al, size_t n) {
    aim_adam_config ac;
    aim_optimizer *o = NULL;
    CHECK_OK(aim_adam_config_init(&ac));
    ac.decoupled = 1;
    ac.weight_decay = 0.01f;
    aim_status st = aim_adam_create(al, &ac, n, &o);
    return st == AIM_OK ? o : NULL;
}

static void train(aim_model *m, aim_optimizer *o, unsigned from, unsigned steps) {
    for (unsigned s = from; s < from + steps; s++) {
        int32_t ids[SER_IDS], labels[SER_IDS];
        float loss = 0;
        ser_data(ids, labels, s);
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, ids, SER_IDS, SER_B));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, SER_IDS, &loss));
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
    aim_model *m = ser_model(5);
    size_t np = 0;
    float *p = params_of(m, &np);
    /* the biases away from 0, so that the round trip carries them */
    for (size_t l = 0; l < BLOCK_LAYERS; l++) {
        size_t off = 0, wc = 0, bc = 0;
        CHECK_OK(aim_model_layer_parameters(m, l, &off, &wc, &bc));
        if (l == 3) fill_att_params(p + off, SER_BLOCK.E, 1, 90);
        else if (bc) fill_uniform(p + off + wc, bc, 91 + l, -0.2f, 0.2f);
    }
    size_t len = 0, len2 = 0;
    unsigned char *buf = serialize(m, NULL, &len);
    aim_model *m2 = NULL;
    char msg[256];
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &m2, NULL, msg, sizeof msg));
    assert_int_equal(aim_model_layer_count(m2), BLOCK_LAYERS);
    unsigned char *buf2 = serialize(m2, NULL, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    for (size_t l = 0; l < BLOCK_LAYERS; l++) {
        size_t o1 = 0, w1 = 0, b1 = 0, o2 = 0, w2 = 0, b2 = 0, r1 = 0, r2 = 0;
        size_t d1[AIM_MAX_RANK] = {0}, d2[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_parameters(m, l, &o1, &w1, &b1));
        CHECK_OK(aim_model_layer_parameters(m2, l, &o2, &w2, &b2));
        assert_true(o1 == o2 && w1 == w2 && b1 == b2);
        CHECK_OK(aim_model_layer_shape(m, l, &r1, d1));
        CHECK_OK(aim_model_layer_shape(m2, l, &r2, d2));
        assert_int_equal(r1, r2);
        assert_memory_equal(d1, d2, sizeof d1);
    }
    int32_t ids[SER_IDS], labels[SER_IDS];
    static float o1[SER_OUT], o2[SER_OUT];
    ser_data(ids, labels, 99);
    aim_workspace *w1 = NULL, *w2 = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, SER_B, &w1));
    CHECK_OK(aim_workspace_create(m2, NULL, SER_B, &w2));
    CHECK_OK(aim_model_predict_ids(m, w1, ids, SER_IDS, SER_B, o1, SER_OUT));
    CHECK_OK(aim_model_predict_ids(m2, w2, ids, SER_IDS, SER_B, o2, SER_OUT));
    assert_memory_equal(o1, o2, sizeof o1);
    assert_true(max_abs_value(o1, SER_OUT) > 0.0);
    /* the attention layer kept its options: causal, so changing the last id
     * leaves the logits of the earlier positions of that sequence alone */
    static float o3[SER_OUT];
    ids[5] = (ids[5] + 1) % 13;
    CHECK_OK(aim_model_predict_ids(m2, w2, ids, SER_IDS, SER_B, o3, SER_OUT));
    assert_memory_equal(o3, o2, 5 * 13 * sizeof(float));
    assert_memory_not_equal(o3 + 5 * 13, o2 + 5 * 13, 13 * sizeof(float));
    aim_workspace_free(w1);
    aim_workspace_free(w2);
    free(buf);
    free(buf2);
    aim_model_free(m);
    aim_model_free(m2);
}

/* 3 AdamW steps, a round trip with the optimizer, then 4 more on both and 7
 * on a model that never stopped: all three the same bits (the attention's
 * dropout masks included, from the serialized random stream). */
static void test_resume_is_exact(void **state) {
    (void)state;
    aim_model *a = ser_model(8), *c = ser_model(8);
    size_t np = 0;
    (void)params_of(a, &np);
    aim_optimizer *oa = adamw(NULL, np), *oc = adamw(NULL, np), *ob = NULL;
    assert_true(oa && oc);
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

/* ======================================================================== */
/* 7. Allocation failures                                                   */
/* ======================================================================== */

typedef struct sweep_objs {
    aim_model *m, *m2;
    aim_optimizer *o, *o2;
    aim_workspace *ws;
    unsigned char *buf;
    float out[SER_OUT];
    float params[2048];
    size_t np;
} sweep_objs;

static void sweep_free(sweep_objs *o) {
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->o);
    aim_optimizer_free(o->o2);
    aim_model_free(o->m);
    aim_model_free(o->m2);
    free(o->buf);
    o->ws = NULL;
    o->o = o->o2 = NULL;
    o->m = o->m2 = NULL;
    o->buf = NULL;
}

/* The block (with attention dropout): build, compile, AdamW, 2 training
 * steps, serialize with the optimizer, deserialize, a workspace, predict.
 * Returns 1 when a call failed and the scenario stopped, else 0. */
static int sweep_scenario(test_alloc *ta, int retry, sweep_objs *o, const char **failed) {
    const aim_allocator *al = &ta->allocator;
    aim_compile_config cc;
    aim_adam_config ac;
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = SER_B;
    cc.seed = 3;
    assert_int_equal(aim_adam_config_init(&ac), AIM_OK);
    ac.decoupled = 1;
    ac.weight_decay = 0.01f;
    if (block_build(ta, retry, &SER_BLOCK, &o->m, failed)) return 1;
    STEP(aim_model_compile(o->m, &cc));
    float *p = NULL;
    assert_int_equal(aim_model_parameters(o->m, &p, &o->np), AIM_OK);
    assert_true(o->np <= ARRAY_LEN(o->params));
    STEP(aim_adam_create(al, &ac, o->np, &o->o));
    for (unsigned s = 0; s < 2; s++) {
        int32_t ids[SER_IDS], labels[SER_IDS];
        float loss = 0;
        ser_data(ids, labels, s);
        STEP(aim_model_zero_grad(o->m));
        STEP(aim_model_forward_ids(o->m, AIM_MODE_TRAIN, ids, SER_IDS, SER_B));
        STEP(aim_model_loss_sparse(o->m, 0, labels, SER_IDS, &loss));
        STEP(aim_model_backward(o->m, NULL, 0));
        STEP(aim_optimizer_step_model(o->o, o->m, 0.01f));
    }
    size_t len = 0, w = 0;
    STEP(aim_model_serialized_size(o->m, o->o, &len));
    o->buf = malloc(len);
    assert_non_null(o->buf);
    STEP(aim_model_serialize(o->m, o->o, o->buf, len, &w));
    STEP(aim_model_deserialize(al, o->buf, len, &o->m2, &o->o2, NULL, 0));
    STEP(aim_workspace_create(o->m2, al, SER_B, &o->ws));
    int32_t ids[SER_IDS], labels[SER_IDS];
    ser_data(ids, labels, 50);
    STEP(aim_model_predict_ids(o->m2, o->ws, ids, SER_IDS, SER_B, o->out, SER_OUT));
    assert_int_equal(aim_model_parameters(o->m2, &p, &o->np), AIM_OK);
    memcpy(o->params, p, o->np * sizeof *p);
    return 0;
}

static void sweep(int retry) {
    test_alloc ta;
    static sweep_objs ref, o;
    const char *failed = NULL;
    memset(&ref, 0, sizeof ref);
    test_alloc_init(&ta, -1);
    assert_int_equal(sweep_scenario(&ta, retry, &ref, &failed), 0);
    const long total = ta.calls;
    sweep_free(&ref);
    assert_int_equal(ta.live, 0);
    if (!retry) print_message("transformer block scenario: %ld allocator calls\n", total);
    assert_true(total >= 10);
    long k;
    for (k = 0; k < 2000; k++) {
        memset(&o, 0, sizeof o);
        failed = NULL;
        test_alloc_init(&ta, k);
        const int stopped = sweep_scenario(&ta, retry, &o, &failed);
        if (k < total) {
            if (ta.failures != 1) fail_msg("k=%ld: %ld allocator failures, expected 1", k, ta.failures);
            if (!retry && !stopped) fail_msg("k=%ld: the scenario completed although allocation %ld failed", k, k);
        } else {
            assert_int_equal(ta.failures, 0);
            assert_int_equal(stopped, 0);
        }
        if (retry) {
            /* the failed call, retried, left everything as a clean run has it */
            assert_int_equal(stopped, 0);
            assert_int_equal(o.np, ref.np);
            if (memcmp(o.params, ref.params, ref.np * sizeof(float)) != 0)
                fail_msg("k=%ld: weights differ after retrying %s", k, failed);
            if (memcmp(o.out, ref.out, sizeof ref.out) != 0)
                fail_msg("k=%ld: predictions differ after retrying %s", k, failed);
        }
        sweep_free(&o);
        if (ta.live != 0) fail_msg("k=%ld (%s failed): %ld blocks leaked", k, failed ? failed : "-", ta.live);
        if (k >= total) break;
    }
    assert_int_equal(k, total);
}

static void test_allocation_failures(void **state) {
    (void)state;
    sweep(0);
    sweep(1);
}

/* ======================================================================== */
/* 8. Large scores                                                          */
/* ======================================================================== */

/* The attention of one sequence in double from the float inputs; also the
 * largest scaled score. */
static void ref_attention(const float *x, const float *p, size_t T, size_t E, size_t H, int causal, double *y,
                          double *max_score) {
    const size_t d = E / H;
    const float *w_in = p, *b_in = p + 3 * E * E, *w_o = b_in + 3 * E, *b_o = w_o + E * E;
    double *qkv = malloc(T * 3 * E * sizeof *qkv), *o = malloc(T * E * sizeof *o), *s = malloc(T * sizeof *s);
    assert_true(qkv && o && s);
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < 3 * E; j++) {
            double a = b_in[j];
            for (size_t i = 0; i < E; i++) a += (double)x[t * E + i] * w_in[j * E + i];
            qkv[t * 3 * E + j] = a;
        }
    for (size_t h = 0; h < H; h++)
        for (size_t t = 0; t < T; t++) {
            const size_t len = causal ? t + 1 : T;
            double mx = -INFINITY, sum = 0.0;
            for (size_t u = 0; u < len; u++) {
                double a = 0.0;
                for (size_t i = 0; i < d; i++) a += qkv[t * 3 * E + h * d + i] * qkv[u * 3 * E + E + h * d + i];
                s[u] = a / sqrt((double)d);
                mx = fmax(mx, s[u]);
                *max_score = fmax(*max_score, s[u]);
            }
            for (size_t u = 0; u < len; u++) sum += exp(s[u] - mx);
            for (size_t i = 0; i < d; i++) {
                double a = 0.0;
                for (size_t u = 0; u < len; u++) a += exp(s[u] - mx) / sum * qkv[u * 3 * E + 2 * E + h * d + i];
                o[t * E + h * d + i] = a;
            }
        }
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < E; j++) {
            double a = b_o[j];
            for (size_t i = 0; i < E; i++) a += o[t * E + i] * w_o[j * E + i];
            y[t * E + j] = a;
        }
    free(qkv);
    free(o);
    free(s);
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* x scaled by 1e3: scores of order 1e6, far past exp's float range (88.7),
 * so a softmax that did not subtract the row's maximum would return inf /
 * inf = NaN. The rows are then one-hot (the top two scores lie ~1e5
 * apart, a float score is off by ~0.3), so the outputs match the double
 * reference to float rounding: within 1e-5 of their largest. The backward
 * stays finite (the softmax's Jacobian vanishes on a one-hot row). */
static void test_large_scores(void **state) {
    (void)state;
    enum { B = 2, T = 6, E = 8, H = 2, N = B * T * E };
    for (int causal = 0; causal < 2; causal++) {
        const att_spec s = {T, E, H, causal, 1, 0.0f};
        aim_model *m = att_model(&s);
        compile_model(m, B, 1, 2);
        size_t np = 0;
        float *p = params_of(m, &np);
        fill_att_params(p, E, 1, 100);
        static float x[N], g[N];
        static double ref[N];
        fill_uniform(x, N, 101, -1000.0f, 1000.0f);
        fill_uniform(g, N, 102, -1.0f, 1.0f);
        double max_score = -INFINITY;
        for (size_t b = 0; b < B; b++) ref_attention(x + b * T * E, p, T, E, H, causal, ref + b * T * E, &max_score);
        const float *y = NULL, *dx = NULL;
        size_t ny = 0, ndx = 0;
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, N, B));
        CHECK_OK(aim_model_output(m, 0, &y, &ny));
        assert_true(all_finite(y, N));
        double err = 0.0, scale = 0.0;
        for (size_t i = 0; i < N; i++) {
            err = fmax(err, fabs((double)y[i] - ref[i]));
            scale = fmax(scale, fabs(ref[i]));
        }
        printf("    %s: largest score %.3g, max |Y - ref| %.3g of max |ref| %.3g\n", causal ? "causal" : "no mask",
               max_score, err, scale);
        assert_true(max_score > 1e3);
        assert_true(err <= 1e-5 * scale);
        CHECK_OK(aim_model_backward(m, g, N));
        CHECK_OK(aim_model_input_gradient(m, 0, &dx, &ndx));
        assert_true(all_finite(dx, N));
        assert_true(all_finite(grads_of(m, &np), np));
        assert_true(max_abs_value(dx, N) > 0.0);
        aim_model_free(m);
    }
}

/* Shapes past the goldens' (T 33, E 24, 3 heads of 8, causal; T 17, E 40,
 * 5 heads of 8), where BLAS takes other paths: the forward against the
 * double reference (within 1e-5 of the largest output; float rounding is
 * ~1e-7), and the gradient along one random direction of every parameter
 * and input value against a central difference of L = sum(Y * R) (step
 * 1e-3 along a direction of unit-scale entries: truncation ~1e-6 times L's
 * third derivative, rounding of L ~1e-5 / 2e-3; the tolerance is 1e-3
 * relative, and a wrong term of the gradient lands far off). */
static void test_larger_shapes(void **state) {
    (void)state;
    /* the third: causal at T >= 64, in blocks of 18 (18, 18, 18, 16) */
    const att_spec specs[3] = {{33, 24, 3, 1, 1, 0.0f}, {17, 40, 5, 0, 1, 0.0f}, {70, 16, 2, 1, 1, 0.0f}};
    for (size_t k = 0; k < 3; k++) {
        const att_spec *s = &specs[k];
        enum { B = 3 };
        const size_t te = s->T * s->E, N = B * te;
        aim_model *m = att_model(s);
        compile_model(m, B, 1, 8);
        size_t np = 0;
        float *p = params_of(m, &np);
        fill_att_params(p, s->E, 1, 110 + k);
        float *x = malloc(N * sizeof *x), *r = malloc(N * sizeof *r), *vp = malloc(np * sizeof *vp);
        float *vx = malloc(N * sizeof *vx), *p0 = malloc(np * sizeof *p0), *x0 = malloc(N * sizeof *x0);
        double *ref = malloc(N * sizeof *ref);
        assert_true(x && r && vp && vx && p0 && x0 && ref);
        fill_uniform(x, N, 120 + k, -1.0f, 1.0f);
        weights_r(r, N, 130 + k);
        fill_uniform(vp, np, 140 + k, -1.0f, 1.0f);
        fill_uniform(vx, N, 150 + k, -1.0f, 1.0f);
        double max_score = -INFINITY, err = 0.0, scale = 0.0;
        for (size_t b = 0; b < B; b++)
            ref_attention(x + b * te, p, s->T, s->E, s->H, s->causal, ref + b * te, &max_score);
        const float *y = NULL, *dx = NULL;
        size_t n = 0;
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, N, B));
        CHECK_OK(aim_model_output(m, 0, &y, &n));
        for (size_t i = 0; i < N; i++) {
            err = fmax(err, fabs((double)y[i] - ref[i]));
            scale = fmax(scale, fabs(ref[i]));
        }
        CHECK_OK(aim_model_backward(m, r, N));
        CHECK_OK(aim_model_input_gradient(m, 0, &dx, &n));
        const float *g = grads_of(m, &np);
        double analytic = 0.0;
        for (size_t i = 0; i < np; i++) analytic += (double)g[i] * vp[i];
        for (size_t i = 0; i < N; i++) analytic += (double)dx[i] * vx[i];
        memcpy(p0, p, np * sizeof *p0);
        memcpy(x0, x, N * sizeof *x0);
        double L[2];
        const double h = 1e-3;
        for (int side = 0; side < 2; side++) {
            const double sg = side ? -h : h;
            for (size_t i = 0; i < np; i++) p[i] = (float)((double)p0[i] + sg * vp[i]);
            for (size_t i = 0; i < N; i++) x[i] = (float)((double)x0[i] + sg * vx[i]);
            CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, x, N, B));
            CHECK_OK(aim_model_output(m, 0, &y, &n));
            L[side] = 0.0;
            for (size_t i = 0; i < N; i++) L[side] += (double)y[i] * r[i];
        }
        memcpy(p, p0, np * sizeof *p);
        const double numeric = (L[0] - L[1]) / (2 * h);
        printf("    T %zu, E %zu, %zu heads%s: max |Y - ref| %.2e of %.3g; along a direction %.6f vs %.6f\n",
               s->T, s->E, s->H, s->causal ? ", causal" : "", err, scale, analytic, numeric);
        assert_true(err <= 1e-5 * scale);
        assert_true(fabs(analytic - numeric) <= 1e-3 * fabs(numeric));
        assert_true(fabs(numeric) > 1.0);
        free(x);
        free(r);
        free(vp);
        free(vx);
        free(p0);
        free(x0);
        free(ref);
        aim_model_free(m);
    }
}

/* The GEMMs take batch · T rows (attention) and batch · positions rows
 * (linear) as an int: a call past that is refused by the kinds' check,
 * before anything runs (a model that large cannot be compiled here, so the
 * check is called on a node built by hand). */
static void test_blas_row_limit(void **state) {
    (void)state;
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.in_rank = 2;
    L.in_dims[0] = 128;
    L.in_dims[1] = 16;
    L.in_size = 128 * 16;
    char msg[AIM__ERR_CAP];
    const size_t ok_batch = (size_t)INT_MAX / 128, bad_batch = ok_batch + 1;
    msg[0] = '\0';
    assert_int_equal(aim__attention_ops.check(&L, NULL, ok_batch, 1, msg), AIM_OK);
    assert_int_equal(aim__attention_ops.check(&L, NULL, bad_batch, 0, msg), AIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(msg, "INT_MAX rows"));
    aim__dense_cfg *c = AIM__CFG_MUT(aim__dense_cfg, &L);
    c->units = 4;
    c->last_axis = 1;
    msg[0] = '\0';
    assert_int_equal(aim__linear_ops.check(&L, NULL, ok_batch, 1, msg), AIM_OK);
    assert_int_equal(aim__linear_ops.check(&L, NULL, bad_batch, 1, msg), AIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(msg, "INT_MAX rows"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_attention),
        cmocka_unit_test(test_golden_positional_embedding),
        cmocka_unit_test(test_golden_linear),
        cmocka_unit_test(test_golden_block_adamw),
        cmocka_unit_test(test_config_and_refusals),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_thread_pool),
        cmocka_unit_test(test_thread_pool_block),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_large_scores),
        cmocka_unit_test(test_blas_row_limit),
        cmocka_unit_test(test_larger_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
