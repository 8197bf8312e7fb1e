/* The embedding layer (src/layers/embedding.c, PyTorch nn.Embedding) and the
 * int32 model inputs it reads (aim_model_set_input_dtype(), the _ids and
 * _typed calls of src/model/exec.c):
 *  1. goldens against PyTorch 1.13 (golden/golden_embed_ln.h, written by
 *     golden/gen_golden_embed_ln.py): the output and the weight gradient of
 *     sum(Y * G) for ids of rank 1 with repeated ids, with and without
 *     padding_idx, and for rank-2 ids; then a small model, ids -> Embedding
 *     (padding_idx 0) -> LayerNorm -> flatten -> Dense, trained 3 Adam steps
 *     on cross-entropy: logits, loss, every gradient, every step's loss and
 *     parameters, and the update;
 *  2. initialization: N(0, 1) by default (PyTorch's), the padding row zero,
 *     Glorot's bound, zeros;
 *  3. central-difference checks of the weight gradient (the ids have none),
 *     the padding row's gradient exactly zero although the row is used;
 *  4. ids outside the table: the message names the id, its position, the
 *     sample and the index, and nothing runs; the _typed calls on a model
 *     with a float and an int32 input;
 *  5. a serialization round trip of an int32-input model (the dtype is in
 *     format v3), bit-identical predictions, and exact training resume;
 *  6. the k-th allocation failure for every k of build + compile + train +
 *     serialize + deserialize + predict;
 *  7. a thread pool split against no pool: training and predict_ids under a
 *     workspace pool.
 *
 * Golden metric and tolerances are test_golden.c's (test_golden_graph.c's
 * for the Adam steps): |got - ref| / max(|ref|, floor), the floor 1% of the
 * largest |ref| of the array; 1e-5 for outputs and losses, 1e-4 for
 * gradients and parameters, 1e-3 with a 10% floor for the update (final -
 * initial). gen_golden_embed_ln.py --check prints what a float32 PyTorch run
 * measures (embedding outputs exact, gradients 1.9e-7; the model's logits
 * 4.2e-6, gradients 2.2e-6, parameters 5.5e-7, update 5.9e-6); the library
 * measures the same for the embedding alone and 1.1e-6, 8.4e-6, 6.1e-7 and
 * 8.1e-6 for the model (the test prints its worst).
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
#include "golden/golden_embed_ln.h"

#define TOL_FORWARD 1e-5
#define TOL_GRAD 1e-4
#define TOL_TRAJ 1e-4
#define TOL_UPDATE 1e-3
#define FLOOR_FRAC 1e-2
#define UPDATE_FLOOR_FRAC 0.1
#define WHAT_WIDTH 34

typedef enum cmp_kind { CMP_FORWARD, CMP_GRAD, CMP_PARAMS, CMP_UPDATE, CMP_KINDS } cmp_kind;
static golden_kind CMP[CMP_KINDS] = {
    {"forward/loss", TOL_FORWARD, FLOOR_FRAC, 0.0},
    {"gradient", TOL_GRAD, FLOOR_FRAC, 0.0},
    {"parameters", TOL_TRAJ, FLOOR_FRAC, 0.0},
    {"update", TOL_UPDATE, UPDATE_FLOOR_FRAC, 0.0},
};

static void expect_close(const char *what, const float *got, const float *ref, size_t n, cmp_kind kind) {
    assert_true(golden_expect(&CMP[kind], WHAT_WIDTH, what, got, ref, n));
}

/* A model whose input 0 holds int32 ids of shape `dims`, with an embedding. */
static aim_model *ids_model(const aim_allocator *al, size_t rank, const size_t *dims, const aim_embedding_config *ec) {
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(al, rank, dims, &m));
    CHECK_OK(aim_model_set_input_dtype(m, 0, AIM_DTYPE_INT32));
    CHECK_OK(aim_model_add_embedding(m, ec));
    return m;
}

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

/* ------------------------------------------------------------------ 1. goldens */

typedef struct emb_golden {
    const char *name;
    size_t rank, dims[2], batch;
    int32_t has_padding;
    const int32_t *ids;
    const float *w, *g, *y, *dw;
    size_t n_ids;
} emb_golden;

static const emb_golden EMB_GOLDENS[] = {
    {"e1 ids (B, S)", 1, {GOLDEN_EMB_S, 0}, GOLDEN_EMB_B, 0, golden_emb_ids, golden_emb_w, golden_emb_g,
     golden_emb_e1_y, golden_emb_e1_dw, ARRAY_LEN(golden_emb_ids)},
    {"e2 padding_idx", 1, {GOLDEN_EMB_S, 0}, GOLDEN_EMB_B, 1, golden_emb_ids, golden_emb_w_pad, golden_emb_g,
     golden_emb_e2_y, golden_emb_e2_dw, ARRAY_LEN(golden_emb_ids)},
    {"e3 ids (B, S1, S2)", 2, {GOLDEN_EMB3_S1, GOLDEN_EMB3_S2}, GOLDEN_EMB3_B, 0, golden_emb3_ids, golden_emb_w,
     golden_emb_g3, golden_emb_e3_y, golden_emb_e3_dw, ARRAY_LEN(golden_emb3_ids)},
};

static void test_goldens(void **state) {
    (void)state;
    enum { NUM = GOLDEN_EMB_NUM, DIM = GOLDEN_EMB_DIM, NW = NUM * DIM };
    for (size_t k = 0; k < ARRAY_LEN(EMB_GOLDENS); k++) {
        const emb_golden *c = &EMB_GOLDENS[k];
        const size_t ny = c->n_ids * DIM;
        char what[64];
        printf("  %s\n", c->name);
        aim_embedding_config ec;
        CHECK_OK(aim_embedding_config_init(&ec, NUM, DIM));
        ec.has_padding = c->has_padding;
        ec.padding_idx = GOLDEN_EMB_PAD;
        aim_model *m = ids_model(NULL, c->rank, c->dims, &ec);
        size_t rank = 0, od[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_shape(m, 0, &rank, od));
        assert_int_equal(rank, c->rank + 1);
        assert_int_equal(od[0], c->dims[0]);
        assert_int_equal(od[c->rank], DIM);
        /* input_gradient on: the ids still get none, and nothing breaks. */
        compile_model(m, c->batch, 1, 1);
        size_t np = 0;
        float *p = params_of(m, &np);
        assert_int_equal(np, NW);
        if (c->has_padding) /* nn.Embedding's init zeroes the padding row; so does ours */
            for (size_t j = 0; j < DIM; j++) assert_true(p[GOLDEN_EMB_PAD * DIM + j] == 0.0f);
        memcpy(p, c->w, NW * sizeof *p);

        const float *y = NULL;
        size_t n = 0;
        CHECK_OK(aim_model_forward_ids(m, AIM_MODE_INFERENCE, c->ids, c->n_ids, c->batch));
        CHECK_OK(aim_model_output(m, 0, &y, &n));
        assert_int_equal(n, ny);
        snprintf(what, sizeof what, "%s Y (inference)", c->name);
        expect_close(what, y, c->y, ny, CMP_FORWARD);
        aim_workspace *ws = NULL;
        float out[128];
        assert_true(ny <= ARRAY_LEN(out));
        CHECK_OK(aim_workspace_create(m, NULL, c->batch, &ws));
        CHECK_OK(aim_model_predict_ids(m, ws, c->ids, c->n_ids, c->batch, out, ny));
        /* A row copy: exactly the table's values. */
        assert_memory_equal(out, c->y, ny * sizeof *out);
        aim_workspace_free(ws);

        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, c->ids, c->n_ids, c->batch));
        CHECK_OK(aim_model_output(m, 0, &y, &n));
        assert_memory_equal(y, c->y, ny * sizeof *y);
        CHECK_OK(aim_model_backward(m, c->g, ny));
        float *gr = grads_of(m, &np);
        snprintf(what, sizeof what, "%s dW", c->name);
        expect_close(what, gr, c->dw, NW, CMP_GRAD);
        /* The rows no id selects, and the padding row, get exactly zero. */
        for (size_t r = 0; r < NUM; r++) {
            int used = 0;
            for (size_t i = 0; i < c->n_ids; i++) used |= (size_t)c->ids[i] == r;
            if (!used || (c->has_padding && r == GOLDEN_EMB_PAD))
                for (size_t j = 0; j < DIM; j++) assert_true(gr[r * DIM + j] == 0.0f);
        }
        const float *ig = NULL;
        size_t nig = 0;
        assert_int_equal(aim_model_input_gradient(m, 0, &ig, &nig), AIM_ERR_INVALID_ARGUMENT);
        aim_model_free(m);
    }
}

/* ids (T) -> Embedding(V, D, padding_idx 0) -> LayerNorm(D) -> flatten -> Dense C. */
static aim_model *golden_model(void) {
    const size_t dims[1] = {GOLDEN_M_T};
    aim_embedding_config ec;
    aim_layer_norm_config lc;
    aim_dense_config dc;
    CHECK_OK(aim_embedding_config_init(&ec, GOLDEN_M_V, GOLDEN_M_D));
    ec.has_padding = 1;
    ec.padding_idx = 0;
    aim_model *m = ids_model(NULL, 1, dims, &ec);
    CHECK_OK(aim_layer_norm_config_init(&lc));
    CHECK_OK(aim_model_add_layer_norm(m, &lc));
    CHECK_OK(aim_model_add_flatten(m));
    CHECK_OK(aim_dense_config_init(&dc, GOLDEN_M_C, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    compile_model(m, GOLDEN_M_B, 0, 1);
    return m;
}

/* The parameter tensors of golden_model, in its flat order. */
static const struct {
    const char *name;
    size_t n;
} M_TENSORS[] = {
    {"embedding weight", GOLDEN_M_V * GOLDEN_M_D},
    {"layer_norm weight", GOLDEN_M_D},
    {"layer_norm bias", GOLDEN_M_D},
    {"dense weight", GOLDEN_M_C * GOLDEN_M_T * GOLDEN_M_D},
    {"dense bias", GOLDEN_M_C},
};

static void expect_tensors(const char *prefix, const float *got, const float *ref, cmp_kind kind) {
    size_t off = 0;
    for (size_t t = 0; t < ARRAY_LEN(M_TENSORS); t++) {
        char what[64];
        snprintf(what, sizeof what, "%s %s", prefix, M_TENSORS[t].name);
        expect_close(what, got + off, ref + off, M_TENSORS[t].n, kind);
        off += M_TENSORS[t].n;
    }
    assert_int_equal(off, GOLDEN_M_PARAMS);
}

static void test_golden_model_adam(void **state) {
    (void)state;
    enum { P = GOLDEN_M_PARAMS, B = GOLDEN_M_B, NIDS = B * GOLDEN_M_T, NOUT = B * GOLDEN_M_C };
    aim_model *m = golden_model();
    size_t np = 0;
    float *p = params_of(m, &np);
    assert_int_equal(np, P);
    memcpy(p, golden_m_params0, sizeof golden_m_params0);
    aim_adam_config ac;
    CHECK_OK(aim_adam_config_init(&ac));
    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, &ac, P, &opt));
    static float traj[GOLDEN_M_STEPS][P];
    for (size_t t = 0; t < GOLDEN_M_STEPS; t++) {
        float loss = 0;
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, golden_m_ids, NIDS, B));
        CHECK_OK(aim_model_loss_sparse(m, 0, golden_m_labels, B, &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        char what[64];
        snprintf(what, sizeof what, "loss of step %zu", t + 1);
        expect_close(what, &loss, &golden_m_losses[t], 1, CMP_FORWARD);
        if (t == 0) {
            const float *y = NULL;
            size_t n = 0;
            CHECK_OK(aim_model_output(m, 0, &y, &n));
            assert_int_equal(n, NOUT);
            expect_close("logits", y, golden_m_logits, NOUT, CMP_FORWARD);
            float *g = grads_of(m, &np);
            expect_tensors("d", g, golden_m_grad, CMP_GRAD);
            /* Adam sees exact zeros in the padding row and the unused id 6, as in PyTorch. */
            for (size_t j = 0; j < GOLDEN_M_D; j++) assert_true(g[j] == 0.0f && g[6 * GOLDEN_M_D + j] == 0.0f);
        }
        CHECK_OK(aim_optimizer_step_model(opt, m, GOLDEN_M_LR));
        memcpy(traj[t], p, sizeof traj[t]);
        snprintf(what, sizeof what, "after step %zu:", t + 1);
        expect_tensors(what, traj[t], golden_m_traj + t * P, CMP_PARAMS);
    }
    float delta[P], ref_delta[P];
    for (size_t i = 0; i < P; i++) {
        delta[i] = traj[GOLDEN_M_STEPS - 1][i] - golden_m_params0[i];
        ref_delta[i] = golden_m_traj[(GOLDEN_M_STEPS - 1) * P + i] - golden_m_params0[i];
    }
    expect_tensors("update", delta, ref_delta, CMP_UPDATE);
    /* The padding row stayed zero through training. */
    for (size_t j = 0; j < GOLDEN_M_D; j++) assert_true(p[j] == 0.0f);
    golden_print_worst(CMP, CMP_KINDS);
    aim_optimizer_free(opt);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ 2. initialization */

static void test_init(void **state) {
    (void)state;
    enum { NUM = 1000, DIM = 16, PAD = 417 };
    const size_t dims[1] = {3};
    aim_embedding_config ec;
    memset(&ec, 0x5a, sizeof ec);
    CHECK_OK(aim_embedding_config_init(&ec, NUM, DIM));
    assert_int_equal(ec.num_embeddings, NUM);
    assert_int_equal(ec.embedding_dim, DIM);
    assert_int_equal(ec.has_padding, 0);
    assert_int_equal(ec.padding_idx, 0);
    assert_int_equal(ec.init, AIM_INIT_PYTORCH);

    /* N(0, 1): over 16000 draws the mean is within 4 / sqrt(16000) = 0.032 of
     * 0 and the standard deviation within 3% of 1 (its standard error is
     * 1 / sqrt(2 n) = 0.56%); U(-1/sqrt(fan_in), ...) would give 0.14. */
    ec.has_padding = 1;
    ec.padding_idx = PAD;
    aim_model *m = ids_model(NULL, 1, dims, &ec);
    compile_model(m, 1, 0, 21);
    size_t np = 0;
    float *p = params_of(m, &np);
    assert_int_equal(np, NUM * DIM);
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < np; i++) {
        s += p[i];
        s2 += (double)p[i] * p[i];
        mx = fmax(mx, fabs(p[i]));
    }
    const double n = (double)(np - DIM), mean = s / n, sd = sqrt(s2 / n - mean * mean);
    printf("    N(0, 1) init: mean %.4f, sd %.4f, max |w| %.2f\n", mean, sd, mx);
    assert_true(fabs(mean) < 0.032);
    assert_true(fabs(sd - 1.0) < 0.03);
    assert_true(mx > 3.0); /* a normal's tails, not a uniform's bound */
    for (size_t j = 0; j < DIM; j++) assert_true(p[PAD * DIM + j] == 0.0f);
    aim_model_free(m);

    /* Glorot uniform with PyTorch's fans of a [num, dim] weight: U(-l, l), l = sqrt(6 / (dim + num)). */
    ec.has_padding = 0;
    ec.init = AIM_INIT_GLOROT_UNIFORM;
    m = ids_model(NULL, 1, dims, &ec);
    compile_model(m, 1, 0, 21);
    p = params_of(m, &np);
    const double l = sqrt(6.0 / (DIM + NUM));
    mx = 0;
    for (size_t i = 0; i < np; i++) mx = fmax(mx, fabs(p[i]));
    assert_true(mx <= l && mx > 0.99 * l);
    aim_model_free(m);

    ec.init = AIM_INIT_ZEROS;
    m = ids_model(NULL, 1, dims, &ec);
    compile_model(m, 1, 0, 21);
    p = params_of(m, &np);
    assert_true(max_abs_value(p, np) == 0.0);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ 3. gradient check */

/* ids (5) -> embedding 7 x 3 (padding_idx 1) -> dense 4 tanh; L = sum(Y * R).
 * The ids cannot be perturbed, so the check is of the parameters: the
 * embedding rows that are used (each at least half nonzero), the unused row
 * 4 (exactly zero, and its central difference too), and the dense layer.
 * The padding row takes part in the forward, so its central difference is
 * not zero, but nn.Embedding gives it no gradient: the analytic one must be
 * exactly zero while the numeric one is clearly not.
 * Tolerance test_gradcheck.c's MODEL_TOL: the embedding is linear in W, the
 * dense tanh is smooth at O(1) points (rows of N(0, 1) into Glorot weights). */
static const gradcheck_tol EMB_TOL = {1e-2, 1e-2, 1e-3};

enum { GC_NUM = 7, GC_DIM = 3, GC_S = 5, GC_B = 2, GC_OUT = 4, GC_PAD = 1, GC_UNUSED = 4 };
static const int32_t GC_IDS[GC_B * GC_S] = {2, 3, 3, 0, 6, 1, 2, 3, 5, 0};

typedef struct gc_ctx {
    aim_model *m;
    aim_workspace *ws;
    const float *r;
    int failed;
} gc_ctx;

static double gc_loss(void *vctx) {
    gc_ctx *c = vctx;
    float out[GC_B * GC_OUT];
    if (aim_model_predict_ids(c->m, c->ws, GC_IDS, ARRAY_LEN(GC_IDS), GC_B, out, ARRAY_LEN(out)) != AIM_OK)
        c->failed = 1;
    double l = 0;
    for (size_t i = 0; i < ARRAY_LEN(out); i++) l += (double)out[i] * (double)c->r[i];
    return l;
}

static void test_gradcheck(void **state) {
    (void)state;
    const size_t dims[1] = {GC_S};
    aim_embedding_config ec;
    aim_dense_config dc;
    CHECK_OK(aim_embedding_config_init(&ec, GC_NUM, GC_DIM));
    ec.has_padding = 1;
    ec.padding_idx = GC_PAD;
    aim_model *m = ids_model(NULL, 1, dims, &ec);
    CHECK_OK(aim_dense_config_init(&dc, GC_OUT, AIM_ACT_TANH));
    CHECK_OK(aim_model_add_dense(m, &dc));
    compile_model(m, GC_B, 0, 31);
    size_t np = 0;
    float *p = params_of(m, &np);
    /* The padding row gets values, so that its row matters to L. */
    fill_uniform(p + GC_PAD * GC_DIM, GC_DIM, 32, 0.5f, 1.0f);
    float r[GC_B * GC_OUT];
    fill_uniform(r, ARRAY_LEN(r), 33, 0.25f, 1.0f);
    for (size_t i = 1; i < ARRAY_LEN(r); i += 2) r[i] = -r[i];

    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, GC_IDS, ARRAY_LEN(GC_IDS), GC_B));
    CHECK_OK(aim_model_backward(m, r, ARRAY_LEN(r)));
    float *ga = malloc(np * sizeof *ga);
    double *num = malloc(np * sizeof *num);
    assert_non_null(ga);
    assert_non_null(num);
    memcpy(ga, grads_of(m, &np), np * sizeof *ga);
    gc_ctx ctx = {m, NULL, r, 0};
    CHECK_OK(aim_workspace_create(m, NULL, GC_B, &ctx.ws));
    gradcheck_numeric(p, np, EMB_TOL.h, gc_loss, &ctx, num);
    assert_int_equal(ctx.failed, 0);

    gradcheck_worst worst;
    memset(&worst, 0, sizeof worst);
    char why[GRADCHECK_WHY];
    double max_a = 0;
    const char *label = "embedding (padding_idx 1) -> dense tanh";
    for (size_t row = 0; row < GC_NUM; row++) {
        const float *a = ga + row * GC_DIM;
        const double *nm = num + row * GC_DIM;
        char part[48];
        snprintf(part, sizeof part, "embedding row %zu", row);
        if (row == GC_PAD) {
            for (size_t j = 0; j < GC_DIM; j++) {
                assert_true(a[j] == 0.0f);
                assert_true(fabs(nm[j]) > 1e-2); /* the row is used: zero is the padding rule */
            }
            continue;
        }
        const gradcheck_guard guard = row == GC_UNUSED ? GRADCHECK_EXACT_ZERO : GRADCHECK_DENSE;
        if (!gradcheck_part(label, part, a, nm, GC_DIM, &EMB_TOL, guard, &worst, &max_a, why, sizeof why))
            fail_msg("%s", why);
    }
    const size_t nw = GC_NUM * GC_DIM, dw = GC_OUT * GC_S * GC_DIM;
    if (!gradcheck_part(label, "dense weight", ga + nw, num + nw, dw, &EMB_TOL, GRADCHECK_DENSE, &worst, &max_a,
                        why, sizeof why) ||
        !gradcheck_part(label, "dense bias", ga + nw + dw, num + nw + dw, GC_OUT, &EMB_TOL, GRADCHECK_DENSE, &worst,
                        &max_a, why, sizeof why) ||
        !gradcheck_case_ok(label, max_a, GRADCHECK_DENSE, why, sizeof why))
        fail_msg("%s", why);
    printf("    worst: %zu values in %zu parts, max |a - n| %.2e, %.0f%% of the tolerance (%s)\n", worst.values,
           worst.parts, worst.max_abs_err, 100.0 * worst.max_usage, worst.part);
    aim_workspace_free(ctx.ws);
    free(ga);
    free(num);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ 4. ids out of range, typed calls */

/* Every refused call leaves the last forward's output and the weights as they were. */
static void test_ids_outside_the_table(void **state) {
    (void)state;
    enum { NUM = 64, DIM = 3, B = 2, S1 = 2, S2 = 3, N = B * S1 * S2 };
    const size_t dims[2] = {S1, S2};
    aim_embedding_config ec;
    CHECK_OK(aim_embedding_config_init(&ec, NUM, DIM));
    aim_model *m = ids_model(NULL, 2, dims, &ec);
    compile_model(m, B, 0, 2);
    int32_t ids[N];
    for (size_t i = 0; i < N; i++) ids[i] = (int32_t)(i * 5 % NUM);
    CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, ids, N, B));
    const float *y = NULL;
    size_t ny = 0;
    CHECK_OK(aim_model_output(m, 0, &y, &ny));
    float keep[N * DIM];
    memcpy(keep, y, sizeof keep);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, B, &ws));
    float out[N * DIM];
    memset(out, 0x7f, sizeof out);
    const struct {
        int32_t id;
        size_t at;
        const char *text;
    } bad[] = {
        {NUM, 11, "id 64 at position 11 (sample 1, index (1, 2)) is outside the table [0, 64)"},
        {-1, 0, "id -1 at position 0 (sample 0, index (0, 0)) is outside the table [0, 64)"},
        {INT32_MIN, 4, "id -2147483648 at position 4 (sample 0, index (1, 1)) is outside the table [0, 64)"},
    };
    for (size_t k = 0; k < ARRAY_LEN(bad); k++) {
        int32_t b[N];
        memcpy(b, ids, sizeof b);
        b[bad[k].at] = bad[k].id;
        for (int mode = 0; mode < 2; mode++) {
            assert_int_equal(aim_model_forward_ids(m, mode ? AIM_MODE_TRAIN : AIM_MODE_INFERENCE, b, N, B),
                             AIM_ERR_INVALID_ARGUMENT);
            const char *msg = aim_model_last_error(m);
            if (!strstr(msg, bad[k].text) || !strstr(msg, "layer 0 (embedding)"))
                fail_msg("forward message \"%s\" lacks \"%s\"", msg, bad[k].text);
        }
        assert_int_equal(aim_model_predict_ids(m, ws, b, N, B, out, ARRAY_LEN(out)), AIM_ERR_INVALID_ARGUMENT);
        const char *msg = aim_workspace_last_error(ws);
        if (!strstr(msg, bad[k].text)) fail_msg("predict message \"%s\" lacks \"%s\"", msg, bad[k].text);
        print_message("%s\n", msg);
    }
    /* Nothing ran: the caller's output untouched, the last forward's output kept. */
    for (size_t i = 0; i < ARRAY_LEN(out); i++) {
        uint32_t u;
        memcpy(&u, &out[i], sizeof u);
        assert_int_equal(u, 0x7f7f7f7fu);
    }
    CHECK_OK(aim_model_output(m, 0, &y, &ny));
    assert_memory_equal(y, keep, sizeof keep);
    /* ... and the kept training forward still has its backward. */
    float g[N * DIM];
    fill_uniform(g, ARRAY_LEN(g), 3, -1.0f, 1.0f);
    CHECK_OK(aim_model_backward(m, g, ARRAY_LEN(g)));
    aim_workspace_free(ws);
    aim_model_free(m);
}

/* Input 0: 3 floats -> dense 4 tanh; input 1: ids (4) -> embedding 9 x 2 ->
 * flatten; concat -> dense 2. The _typed calls take each input as declared;
 * the float and the ids calls refuse this model. */
static void test_typed_calls(void **state) {
    (void)state;
    enum { B = 3 };
    const size_t d0[1] = {3}, d1[1] = {4};
    aim_model *m = NULL;
    size_t in1 = 0, l_dense = 0;
    aim_dense_config dc;
    aim_embedding_config ec;
    CHECK_OK(aim_model_create(NULL, 1, d0, &m));
    CHECK_OK(aim_model_add_input(m, 1, d1, &in1));
    CHECK_OK(aim_model_set_input_dtype(m, 1, AIM_DTYPE_INT32));
    aim_dtype dt = AIM_DTYPE_FLOAT32;
    CHECK_OK(aim_model_input_dtype(m, 1, &dt));
    assert_int_equal(dt, AIM_DTYPE_INT32);
    CHECK_OK(aim_dense_config_init(&dc, 4, AIM_ACT_TANH));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_last_node(m, &l_dense));
    CHECK_OK(aim_model_continue_from(m, in1));
    CHECK_OK(aim_embedding_config_init(&ec, 9, 2));
    CHECK_OK(aim_model_add_embedding(m, &ec));
    CHECK_OK(aim_model_add_flatten(m));
    const size_t parts[2] = {l_dense, 2};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    CHECK_OK(aim_dense_config_init(&dc, 2, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    compile_model(m, B, 1, 4);

    float x[B * 3];
    int32_t ids[B * 4] = {0, 8, 3, 3, 1, 1, 7, 2, 5, 4, 6, 0};
    fill_uniform(x, ARRAY_LEN(x), 5, -1.0f, 1.0f);
    const void *const in[2] = {x, ids};
    const size_t counts[2] = {ARRAY_LEN(x), ARRAY_LEN(ids)};
    CHECK_OK(aim_model_forward_typed(m, AIM_MODE_TRAIN, in, counts, 2, B));
    const float *y = NULL;
    size_t ny = 0;
    CHECK_OK(aim_model_output(m, 0, &y, &ny));
    assert_int_equal(ny, B * 2);
    float y0[B * 2], out[B * 2];
    memcpy(y0, y, sizeof y0);
    float g[B * 2] = {1, -1, 0.5f, 0.25f, -2, 1};
    CHECK_OK(aim_model_backward(m, g, ARRAY_LEN(g)));
    const float *ig = NULL;
    size_t nig = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &ig, &nig)); /* the float input has one ... */
    assert_int_equal(nig, ARRAY_LEN(x));
    assert_true(max_abs_value(ig, nig) > 0.0);
    assert_int_equal(aim_model_input_gradient(m, 1, &ig, &nig), AIM_ERR_INVALID_ARGUMENT); /* ... the ids none */

    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, B, &ws));
    float *const outs[1] = {out};
    const size_t out_counts[1] = {ARRAY_LEN(out)};
    CHECK_OK(aim_model_predict_typed(m, ws, in, counts, 2, B, outs, out_counts, 1));
    assert_memory_equal(out, y0, sizeof out);

    /* The float multi-input calls refuse the ids input, by name. */
    const float *const fin[2] = {x, (const float *)(const void *)ids};
    assert_int_equal(aim_model_forward_multi(m, AIM_MODE_TRAIN, fin, counts, 2, B), AIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(aim_model_last_error(m), "input 1 holds int32 ids"));
    assert_int_equal(aim_model_predict_multi(m, ws, fin, counts, 2, B, outs, out_counts, 1),
                     AIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(aim_workspace_last_error(ws), "input 1 holds int32 ids"));
    /* A bad id of input 1 is named in a typed call too. */
    ids[6] = 9;
    assert_int_equal(aim_model_forward_typed(m, AIM_MODE_TRAIN, in, counts, 2, B), AIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(aim_model_last_error(m), "id 9 at position 6 (sample 1, index 2)"));
    CHECK_OK(aim_model_output(m, 0, &y, &ny));
    assert_memory_equal(y, y0, sizeof y0);
    aim_workspace_free(ws);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ 5. serialization */

/* ids (2, 4) -> embedding 20 x 5 (padding_idx 3, Glorot) -> layer norm over
 * (4, 5) -> flatten -> dense 3. */
static aim_model *seq_model(const aim_allocator *al, aim_status *st, const char **failed) {
    const size_t dims[2] = {2, 4};
    aim_model *m = NULL;
    aim_embedding_config ec;
    aim_layer_norm_config lc;
    aim_dense_config dc;
#define TRY(call)                   \
    do {                            \
        if ((*st = (call)) != AIM_OK) { \
            *failed = #call;        \
            aim_model_free(m);      \
            return NULL;            \
        }                           \
    } while (0)
    TRY(aim_model_create(al, 2, dims, &m));
    TRY(aim_model_set_input_dtype(m, 0, AIM_DTYPE_INT32));
    (void)aim_embedding_config_init(&ec, 20, 5);
    ec.has_padding = 1;
    ec.padding_idx = 3;
    ec.init = AIM_INIT_GLOROT_UNIFORM;
    TRY(aim_model_add_embedding(m, &ec));
    (void)aim_layer_norm_config_init(&lc);
    lc.normalized_dims = 2;
    TRY(aim_model_add_layer_norm(m, &lc));
    TRY(aim_model_add_flatten(m));
    (void)aim_dense_config_init(&dc, 3, AIM_ACT_IDENTITY);
    TRY(aim_model_add_dense(m, &dc));
#undef TRY
    return m;
}

enum { SQ_B = 4, SQ_IN = 8, SQ_OUT = 3 };

static void seq_data(int32_t *ids, int32_t *labels, unsigned step) {
    for (size_t i = 0; i < SQ_B * SQ_IN; i++) ids[i] = (int32_t)((i * 7 + step * 3) % 20);
    for (size_t b = 0; b < SQ_B; b++) labels[b] = (int32_t)((b + step) % SQ_OUT);
}

static aim_model *seq_compiled(uint64_t seed) {
    aim_status st = AIM_OK;
    const char *failed = NULL;
    aim_model *m = seq_model(NULL, &st, &failed);
    if (!m) fail_msg("%s: %s", failed, aim_status_str(st));
    compile_model(m, SQ_B, 0, seed);
    return m;
}

static void train(aim_model *m, aim_optimizer *o, unsigned from, unsigned steps) {
    for (unsigned s = from; s < from + steps; s++) {
        int32_t ids[SQ_B * SQ_IN], labels[SQ_B];
        float loss = 0;
        seq_data(ids, labels, s);
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, ids, ARRAY_LEN(ids), SQ_B));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, SQ_B, &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(o, m, 0.05f));
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
    aim_model *m = seq_compiled(6);
    aim_optimizer *o = NULL;
    size_t np = 0;
    (void)params_of(m, &np);
    CHECK_OK(aim_adam_create(NULL, NULL, np, &o));
    train(m, o, 0, 2); /* the padding row stays zero, the others move */
    size_t len = 0, len2 = 0;
    unsigned char *buf = serialize(m, NULL, &len);
    aim_model *m2 = NULL;
    char msg[256];
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &m2, NULL, msg, sizeof msg));
    aim_dtype dt = AIM_DTYPE_FLOAT32;
    CHECK_OK(aim_model_input_dtype(m2, 0, &dt));
    assert_int_equal(dt, AIM_DTYPE_INT32);
    unsigned char *buf2 = serialize(m2, NULL, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);

    int32_t ids[SQ_B * SQ_IN], labels[SQ_B];
    seq_data(ids, labels, 77);
    float o1[SQ_B * SQ_OUT], o2[SQ_B * SQ_OUT];
    aim_workspace *w1 = NULL, *w2 = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, SQ_B, &w1));
    CHECK_OK(aim_workspace_create(m2, NULL, SQ_B, &w2));
    CHECK_OK(aim_model_predict_ids(m, w1, ids, ARRAY_LEN(ids), SQ_B, o1, ARRAY_LEN(o1)));
    CHECK_OK(aim_model_predict_ids(m2, w2, ids, ARRAY_LEN(ids), SQ_B, o2, ARRAY_LEN(o2)));
    assert_memory_equal(o1, o2, sizeof o1);
    assert_true(max_abs_value(o1, ARRAY_LEN(o1)) > 0.0);
    /* The dtype came back: the float call refuses the copy as it does the original. */
    const float *fx = (const float *)(const void *)ids;
    assert_int_equal(aim_model_predict(m2, w2, fx, ARRAY_LEN(ids), SQ_B, o2, ARRAY_LEN(o2)), AIM_ERR_INVALID_ARGUMENT);
    /* ... and a bad id is still checked. */
    ids[5] = 20;
    assert_int_equal(aim_model_predict_ids(m2, w2, ids, ARRAY_LEN(ids), SQ_B, o2, ARRAY_LEN(o2)),
                     AIM_ERR_INVALID_ARGUMENT);
    aim_workspace_free(w1);
    aim_workspace_free(w2);
    free(buf);
    free(buf2);
    aim_optimizer_free(o);
    aim_model_free(m);
    aim_model_free(m2);
}

static void test_resume_is_exact(void **state) {
    (void)state;
    aim_model *a = seq_compiled(9), *c = seq_compiled(9);
    aim_optimizer *oa = NULL, *ob = NULL, *oc = NULL;
    size_t np = 0;
    (void)params_of(a, &np);
    CHECK_OK(aim_adam_create(NULL, NULL, np, &oa));
    CHECK_OK(aim_adam_create(NULL, NULL, np, &oc));
    train(a, oa, 0, 3);
    size_t len = 0;
    unsigned char *buf = serialize(a, oa, &len);
    aim_model *b = NULL;
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &b, &ob, NULL, 0));
    assert_non_null(ob);
    assert_int_equal(aim_optimizer_steps(ob), 3);
    train(a, oa, 3, 4);
    train(b, ob, 3, 4);
    train(c, oc, 0, 7);
    size_t la, lb, lc;
    unsigned char *ba = serialize(a, oa, &la), *bb = serialize(b, ob, &lb), *bc = serialize(c, oc, &lc);
    assert_true(la == lb && la == lc && la == len);
    assert_memory_equal(ba, bb, la);
    assert_memory_equal(ba, bc, la);
    assert_true(memcmp(ba, buf, la) != 0);
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

/* ------------------------------------------------------------------ 6. allocation failures */

typedef struct alloc_objs {
    aim_model *m, *m2;
    aim_optimizer *o;
    aim_workspace *ws;
    unsigned char *buf;
    float out[SQ_B * SQ_OUT];
} alloc_objs;

static void free_objs(alloc_objs *o) {
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->o);
    aim_model_free(o->m);
    aim_model_free(o->m2);
    free(o->buf);
    memset(o, 0, sizeof *o);
}

/* Returns 0 when the scenario completed, else 1 with the failed call's status in *st. */
static int alloc_scenario(test_alloc *ta, alloc_objs *o, aim_status *st, const char **failed) {
    const aim_allocator *al = &ta->allocator;
    aim_compile_config cc;
    (void)aim_compile_config_init(&cc);
    cc.max_batch = SQ_B;
    cc.seed = 3;
#define STEP(call)                      \
    do {                                \
        if ((*st = (call)) != AIM_OK) { \
            *failed = #call;            \
            return 1;                   \
        }                               \
    } while (0)
    o->m = seq_model(al, st, failed);
    if (!o->m) return 1;
    STEP(aim_model_compile(o->m, &cc));
    size_t np = 0;
    float *p = NULL;
    STEP(aim_model_parameters(o->m, &p, &np));
    STEP(aim_adam_create(al, NULL, np, &o->o));
    for (unsigned s = 0; s < 2; s++) {
        int32_t ids[SQ_B * SQ_IN], labels[SQ_B];
        float loss = 0;
        seq_data(ids, labels, s);
        STEP(aim_model_zero_grad(o->m));
        STEP(aim_model_forward_ids(o->m, AIM_MODE_TRAIN, ids, ARRAY_LEN(ids), SQ_B));
        STEP(aim_model_loss_sparse(o->m, 0, labels, SQ_B, &loss));
        STEP(aim_model_backward(o->m, NULL, 0));
        STEP(aim_optimizer_step_model(o->o, o->m, 0.05f));
    }
    size_t len = 0, w = 0;
    STEP(aim_model_serialized_size(o->m, o->o, &len));
    o->buf = malloc(len);
    assert_non_null(o->buf);
    STEP(aim_model_serialize(o->m, o->o, o->buf, len, &w));
    aim_optimizer *o2 = NULL;
    STEP(aim_model_deserialize(al, o->buf, len, &o->m2, &o2, NULL, 0));
    aim_optimizer_free(o2);
    STEP(aim_workspace_create(o->m2, al, SQ_B, &o->ws));
    int32_t ids[SQ_B * SQ_IN], labels[SQ_B];
    seq_data(ids, labels, 50);
    STEP(aim_model_predict_ids(o->m2, o->ws, ids, ARRAY_LEN(ids), SQ_B, o->out, ARRAY_LEN(o->out)));
#undef STEP
    return 0;
}

static void test_allocation_failures(void **state) {
    (void)state;
    test_alloc ta;
    alloc_objs ref, o;
    aim_status st = AIM_OK;
    const char *failed = NULL;
    memset(&ref, 0, sizeof ref);
    test_alloc_init(&ta, -1);
    assert_int_equal(alloc_scenario(&ta, &ref, &st, &failed), 0);
    const long total = ta.calls;
    float ref_out[SQ_B * SQ_OUT];
    memcpy(ref_out, ref.out, sizeof ref_out);
    free_objs(&ref);
    assert_int_equal(ta.live, 0);
    print_message("embedding scenario: %ld allocator calls\n", total);
    assert_true(total >= 8);
    long k;
    for (k = 0; k < 1000; k++) {
        memset(&o, 0, sizeof o);
        failed = NULL;
        st = AIM_OK;
        test_alloc_init(&ta, k);
        const int stopped = alloc_scenario(&ta, &o, &st, &failed);
        if (k < total) {
            if (!stopped) fail_msg("k=%ld: the scenario completed although allocation %ld failed", k, k);
            if (st != AIM_ERR_OUT_OF_MEMORY) fail_msg("k=%ld: %s returned %s", k, failed, aim_status_str(st));
            assert_int_equal(ta.failures, 1);
        } else {
            assert_int_equal(stopped, 0);
            assert_int_equal(ta.failures, 0);
            assert_memory_equal(o.out, ref_out, sizeof ref_out);
        }
        free_objs(&o);
        if (ta.live != 0) fail_msg("k=%ld (%s failed): %ld blocks leaked", k, failed ? failed : "-", ta.live);
        if (k >= total) break;
    }
    assert_int_equal(k, total);
}

/* ------------------------------------------------------------------ 7. thread pool */

/* ids (6) -> embedding 30 x 8 (padding_idx 0) -> layer norm over the last
 * axis, the model's output; batch 7 on 2 and 3 threads (min_work 1).
 * What must be bit-identical, and why: each output row is a row copy then a
 * normalization of that row alone, so the outputs of a training forward and
 * of predict_ids under a workspace pool equal the unsplit bits. The table's
 * gradient adds dY rows into the rows their ids select: a pool adds each
 * slice's rows into its own buffer and reduces the buffers in slice order,
 * so it equals a sliced reference without a pool (each slice's backward as
 * its own call, summed in slice order) bit for bit, and the unsplit sum
 * within rounding (a repeated id's rows summed in another order: 1e-5 of the
 * largest). */
static void test_thread_pool(void **state) {
    (void)state;
    enum { B = 7, S = 6, NUM = 30, DIM = 8, NP = NUM * DIM + 2 * DIM, NY = B * S * DIM };
    const size_t dims[1] = {S};
    int32_t ids[B * S];
    for (size_t i = 0; i < B * S; i++) ids[i] = (int32_t)((i * i + 3 * i) % NUM); /* repeats, some 0s */
    float g[NY];
    fill_uniform(g, NY, 81, -1.0f, 1.0f);
    aim_embedding_config ec;
    aim_layer_norm_config lc;
    CHECK_OK(aim_embedding_config_init(&ec, NUM, DIM));
    ec.has_padding = 1;
    CHECK_OK(aim_layer_norm_config_init(&lc));
    aim_model *models[2];
    for (int k = 0; k < 2; k++) {
        models[k] = ids_model(NULL, 1, dims, &ec);
        CHECK_OK(aim_model_add_layer_norm(models[k], &lc));
        compile_model(models[k], B, 0, 12);
    }
    aim_model *ref = models[0], *m = models[1];
    size_t np = 0, ny = 0;
    const float *y = NULL;
    float *gr = grads_of(ref, &np);
    assert_int_equal(np, NP);
    static float y0[NY], g0[NP], p0[NY], gs[NP], p[NY];
    CHECK_OK(aim_model_zero_grad(ref));
    CHECK_OK(aim_model_forward_ids(ref, AIM_MODE_TRAIN, ids, ARRAY_LEN(ids), B));
    CHECK_OK(aim_model_output(ref, 0, &y, &ny));
    memcpy(y0, y, sizeof y0);
    CHECK_OK(aim_model_backward(ref, g, NY));
    memcpy(g0, gr, sizeof g0);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(ref, NULL, B, &ws));
    CHECK_OK(aim_model_predict_ids(ref, ws, ids, ARRAY_LEN(ids), B, p0, NY));
    assert_memory_equal(p0, y0, sizeof p0);

    for (size_t threads = 2; threads <= 3; threads++) {
        for (size_t w = 0; w < threads; w++) {
            const size_t q = B / threads, r = B % threads, nb = q + (w < r), b0 = w * q + (w < r ? w : r);
            CHECK_OK(aim_model_zero_grad(ref));
            CHECK_OK(aim_model_forward_ids(ref, AIM_MODE_TRAIN, ids + b0 * S, nb * S, nb));
            CHECK_OK(aim_model_backward(ref, g + b0 * S * DIM, nb * S * DIM));
            for (size_t i = 0; i < NP; i++) gs[i] = w ? gs[i] + gr[i] : gr[i];
        }
        aim_threadpool *pool = NULL;
        CHECK_OK(aim_threadpool_create(NULL, threads, &pool));
        CHECK_OK(aim_threadpool_set_min_work(pool, 1));
        CHECK_OK(aim_model_set_threadpool(m, pool));
        for (int run = 0; run < 2; run++) {
            size_t n2 = 0;
            CHECK_OK(aim_model_zero_grad(m));
            CHECK_OK(aim_model_forward_ids(m, AIM_MODE_TRAIN, ids, ARRAY_LEN(ids), B));
            CHECK_OK(aim_model_output(m, 0, &y, &ny));
            assert_memory_equal(y, y0, sizeof y0);
            CHECK_OK(aim_model_backward(m, g, NY));
            float *gm = grads_of(m, &n2);
            assert_memory_equal(gm, gs, sizeof gs);
            const double scale = max_abs_value(g0, NP);
            for (size_t i = 0; i < NP; i++) assert_true(fabs((double)gm[i] - (double)g0[i]) <= 1e-5 * scale);
            for (size_t j = 0; j < DIM; j++) assert_true(gm[j] == 0.0f); /* the padding row */
        }
        aim_workspace *wp = NULL;
        CHECK_OK(aim_workspace_create(m, NULL, B, &wp));
        CHECK_OK(aim_workspace_set_threadpool(wp, m, pool));
        memset(p, 0, sizeof p);
        CHECK_OK(aim_model_predict_ids(m, wp, ids, ARRAY_LEN(ids), B, p, NY));
        assert_memory_equal(p, p0, sizeof p);
        /* A bad id is refused under the pool too, before any slice runs. */
        int32_t bad[B * S];
        memcpy(bad, ids, sizeof bad);
        bad[B * S - 1] = NUM;
        memset(p, 0, sizeof p);
        assert_int_equal(aim_model_predict_ids(m, wp, bad, ARRAY_LEN(bad), B, p, NY), AIM_ERR_INVALID_ARGUMENT);
        assert_true(max_abs_value(p, NY) == 0.0);
        aim_workspace_free(wp);
        CHECK_OK(aim_model_set_threadpool(m, NULL));
        aim_threadpool_free(pool);
    }
    aim_workspace_free(ws);
    aim_model_free(ref);
    aim_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_golden_model_adam),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_ids_outside_the_table),
        cmocka_unit_test(test_typed_calls),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_thread_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
