/* RMSprop (src/optimizers/optimizer.c, its record in src/serialization/serialize.c)
 * against torch.optim.RMSprop.
 *
 * (a) Goldens: trajectories of 12 steps of a fixed gradient sequence for six
 *     variants (plain; alpha 0.9 with eps 1e-3; centered; momentum; weight
 *     decay; centered + momentum + weight decay, the last two with a varying
 *     learning rate), and a small MLP trained 4 steps with the centered
 *     momentum variant. References from golden/gen_golden_rmsprop.py (run with
 *     /usr/bin/python3 to regenerate): float32 inputs, float64 computation.
 * (b) Serialization with the optimizer: which arrays the record holds (the
 *     square average, the momentum buffer only with momentum, the gradient
 *     average only when centered), the options and arrays read back bit for
 *     bit, bit-identical predictions, and training resumed exactly.
 * (c) aim_optimizer_reset(), and refused steps (check_finite with a NaN or
 *     an infinite gradient, a wrong count, a bad learning rate) changing
 *     nothing.
 * (d) The k-th-allocation sweeps of aim_rmsprop_create() and of
 *     aim_model_deserialize() with an RMSprop record; every truncation of the
 *     record and every inconsistent edit of it refused as AIM_ERR_CORRUPT_DATA.
 *
 * Tolerances. As tests/test_golden.c: relative error |got - ref| /
 * max(|ref|, floor), the floor a fraction of the array's largest |ref|. The
 * trajectories (parameters after each step) within 1e-4 with a floor of 1%;
 * since a step moves a parameter by ~1% of its size, the per-step changes are
 * compared too, within 1e-3 with a floor of 10% of the largest change (their
 * error is the rounding of parameters near 1, ~1e-7, against changes of
 * 1e-3 to 1e-1). gen_golden_rmsprop.py --check shows a float32 PyTorch run
 * within 2e-6 (trajectories) and 5e-6 (changes; 4e-5 for the MLP's update) of
 * the references, while a formula done differently (eps under the root,
 * weight decay after the averages, the momentum buffer without the
 * denominator, centered without the mean) misses by 1e-2 or more.
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
#include "golden/golden_rmsprop.h"
#include "../src/internal.h" /* struct aim_optimizer: which arrays exist, their bits */

#define TOL_FORWARD 1e-5
#define TOL_TRAJ 1e-4
#define TOL_DELTA 1e-3
#define FLOOR_FRAC 1e-2
#define DELTA_FLOOR_FRAC 0.1
#define WHAT_WIDTH 28

static golden_kind CMP_FWD = {"forward/loss", TOL_FORWARD, FLOOR_FRAC, 0.0};
static golden_kind CMP_TRAJ = {"trajectory", TOL_TRAJ, FLOOR_FRAC, 0.0};
static golden_kind CMP_DELTA = {"step change", TOL_DELTA, DELTA_FLOOR_FRAC, 0.0};

enum { OPT_N = GOLDEN_RMS_PARAMS, OPT_STEPS = GOLDEN_RMS_STEPS };

/* One RMSprop configuration. */
typedef struct variant {
    const char *name;
    float alpha, eps, momentum;
    int32_t centered;
    float weight_decay;
    int32_t check_finite;
} variant;

static aim_rmsprop_config config_of(const variant *v) {
    aim_rmsprop_config c;
    assert_int_equal(aim_rmsprop_config_init(&c), AIM_OK);
    c.alpha = v->alpha;
    c.epsilon = v->eps;
    c.momentum = v->momentum;
    c.centered = v->centered;
    c.weight_decay = v->weight_decay;
    c.check_finite = v->check_finite;
    return c;
}

/* Arrays of state the variant keeps: the square average, a momentum buffer
 * with momentum, a gradient average when centered. */
static size_t arrays_of(const variant *v) { return 1u + (v->momentum > 0.0f) + (v->centered != 0); }

/* The variants of the serialization, reset and allocation tests. */
static const variant VARIANTS[] = {
    {"plain", 0.99f, 1e-8f, 0.0f, 0, 0.0f, 0},
    {"centered", 0.99f, 1e-8f, 0.0f, 1, 0.0f, 0},
    {"momentum", 0.99f, 1e-8f, 0.9f, 0, 0.0f, 1},
    {"weight_decay", 0.9f, 1e-6f, 0.0f, 0, 0.1f, 0},
    {"centered_momentum_wd", 0.95f, 1e-3f, 0.5f, 1, 0.05f, 1},
};
#define N_VARIANTS ARRAY_LEN(VARIANTS)

/* The optimizer's arrays, compared bit for bit (both NULL counts as equal). */
static void expect_same_state(const aim_optimizer *a, const aim_optimizer *b, const char *what) {
    assert_int_equal(a->kind, AIM__OPT_RMSPROP);
    assert_int_equal(b->kind, AIM__OPT_RMSPROP);
    assert_int_equal(a->count, b->count);
    assert_true(aim_optimizer_steps(a) == aim_optimizer_steps(b));
    const float *pa[3] = {a->v, a->m, a->g}, *pb[3] = {b->v, b->m, b->g};
    const char *names[3] = {"square average", "momentum buffer", "gradient average"};
    for (int k = 0; k < 3; k++) {
        if ((pa[k] == NULL) != (pb[k] == NULL)) fail_msg("%s: only one has a %s", what, names[k]);
        if (pa[k] && memcmp(pa[k], pb[k], a->count * sizeof(float)) != 0)
            fail_msg("%s: the %s differs", what, names[k]);
    }
}

/* Which arrays exist, against the options. */
static void expect_arrays(const aim_optimizer *o, const variant *v) {
    assert_non_null(o->v);
    assert_int_equal(o->m != NULL, v->momentum > 0.0f);
    assert_int_equal(o->g != NULL, v->centered != 0);
}

/* ------------------------------------------------------------------ (a) goldens */

typedef struct golden_case {
    const char *name;
    const float *cfg; /* alpha, eps, momentum, centered, weight_decay */
    const float *lr, *traj, *delta;
} golden_case;

#define GCASE(n) {#n, golden_rms_##n##_cfg, golden_rms_##n##_lr, golden_rms_##n##_traj, golden_rms_##n##_delta}
static const golden_case GOLDEN_CASES[] = {
    GCASE(plain),        GCASE(alpha_eps),    GCASE(centered),
    GCASE(momentum),     GCASE(weight_decay), GCASE(centered_momentum_wd),
};

static void test_defaults_are_pytorchs(void **state) {
    (void)state;
    aim_rmsprop_config c;
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(aim_rmsprop_config_init(&c), AIM_OK);
    /* torch.optim.RMSprop(alpha=0.99, eps=1e-08, weight_decay=0, momentum=0, centered=False) */
    assert_true(c.alpha == 0.99f && c.epsilon == 1e-8f && c.momentum == 0.0f && c.weight_decay == 0.0f);
    assert_int_equal(c.centered, 0);
    assert_int_equal(c.check_finite, 0);
    /* NULL config means these defaults: the same trajectory as an explicit one. */
    aim_optimizer *a = NULL, *b = NULL;
    assert_int_equal(aim_rmsprop_create(NULL, NULL, OPT_N, &a), AIM_OK);
    assert_int_equal(aim_rmsprop_create(NULL, &c, OPT_N, &b), AIM_OK);
    float pa[OPT_N], pb[OPT_N];
    memcpy(pa, golden_rms_p0, sizeof pa);
    memcpy(pb, golden_rms_p0, sizeof pb);
    for (size_t t = 0; t < 3; t++) {
        assert_int_equal(aim_optimizer_step(a, pa, golden_rms_grads + t * OPT_N, OPT_N, 0.01f), AIM_OK);
        assert_int_equal(aim_optimizer_step(b, pb, golden_rms_grads + t * OPT_N, OPT_N, 0.01f), AIM_OK);
    }
    assert_memory_equal(pa, pb, sizeof pa);
    assert_true(memcmp(pa, golden_rms_p0, sizeof pa) != 0);
    expect_arrays(a, &(variant){"default", 0.99f, 1e-8f, 0.0f, 0, 0.0f, 0});
    aim_optimizer_free(a);
    aim_optimizer_free(b);
}

static void test_golden_trajectory(void **state) {
    const golden_case *g = *state;
    const variant v = {g->name, g->cfg[0], g->cfg[1], g->cfg[2], g->cfg[3] != 0.0f, g->cfg[4], 0};
    const aim_rmsprop_config c = config_of(&v);
    aim_optimizer *o = NULL;
    CHECK_OK(aim_rmsprop_create(NULL, &c, OPT_N, &o));
    expect_arrays(o, &v);
    float p[OPT_N], traj[OPT_STEPS * OPT_N], delta[OPT_STEPS * OPT_N];
    memcpy(p, golden_rms_p0, sizeof p);
    for (size_t t = 0; t < OPT_STEPS; t++) {
        CHECK_OK(aim_optimizer_step(o, p, golden_rms_grads + t * OPT_N, OPT_N, g->lr[t]));
        for (size_t i = 0; i < OPT_N; i++) {
            const float before = t ? traj[(t - 1) * OPT_N + i] : golden_rms_p0[i];
            delta[t * OPT_N + i] = p[i] - before;
        }
        memcpy(traj + t * OPT_N, p, sizeof p);
    }
    assert_true(aim_optimizer_steps(o) == OPT_STEPS);
    printf("  %s\n", g->name);
    assert_true(golden_expect(&CMP_TRAJ, WHAT_WIDTH, "trajectory", traj, g->traj, ARRAY_LEN(traj)));
    assert_true(golden_expect(&CMP_DELTA, WHAT_WIDTH, "change of each step", delta, g->delta, ARRAY_LEN(delta)));
    aim_optimizer_free(o);
}

/* 6 -> Dense 8 tanh -> Dense 3, softmax cross-entropy on labels; the
 * parameters in PyTorch's nn.Linear layout. */
static aim_model *build_mlp(size_t in, size_t hidden, size_t out, size_t max_batch, uint64_t seed) {
    const size_t dims[1] = {in};
    aim_model *m = NULL;
    aim_dense_config dc;
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));
    CHECK_OK(aim_dense_config_init(&dc, hidden, AIM_ACT_TANH));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_dense_config_init(&dc, out, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = max_batch;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(m, &cc));
    return m;
}

static void test_golden_mlp(void **state) {
    (void)state;
    aim_model *m = build_mlp(GOLDEN_RMS_MLP_IN, GOLDEN_RMS_MLP_HIDDEN, GOLDEN_RMS_MLP_OUT, GOLDEN_RMS_MLP_BATCH, 1);
    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    assert_int_equal(count, GOLDEN_RMS_MLP_PARAMS);
    memcpy(params, golden_rms_mlp_params0, sizeof golden_rms_mlp_params0);
    const variant v = {"mlp", GOLDEN_RMS_MLP_ALPHA, GOLDEN_RMS_MLP_EPS, GOLDEN_RMS_MLP_MOMENTUM, 1,
                       GOLDEN_RMS_MLP_WD, 0};
    const aim_rmsprop_config c = config_of(&v);
    aim_optimizer *o = NULL;
    CHECK_OK(aim_rmsprop_create(NULL, &c, count, &o));
    float losses[GOLDEN_RMS_MLP_STEPS];
    for (size_t t = 0; t < GOLDEN_RMS_MLP_STEPS; t++) {
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, golden_rms_mlp_x, ARRAY_LEN(golden_rms_mlp_x),
                                   GOLDEN_RMS_MLP_BATCH));
        CHECK_OK(aim_model_loss_sparse(m, 0, golden_rms_mlp_labels, ARRAY_LEN(golden_rms_mlp_labels), &losses[t]));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(o, m, GOLDEN_RMS_MLP_LR));
    }
    float update[GOLDEN_RMS_MLP_PARAMS], ref_update[GOLDEN_RMS_MLP_PARAMS];
    for (size_t i = 0; i < GOLDEN_RMS_MLP_PARAMS; i++) {
        update[i] = params[i] - golden_rms_mlp_params0[i];
        ref_update[i] = golden_rms_mlp_params_final[i] - golden_rms_mlp_params0[i];
    }
    printf("  mlp\n");
    assert_true(golden_expect(&CMP_FWD, WHAT_WIDTH, "loss of each step", losses, golden_rms_mlp_losses,
                              GOLDEN_RMS_MLP_STEPS));
    assert_true(golden_expect(&CMP_TRAJ, WHAT_WIDTH, "final parameters", params, golden_rms_mlp_params_final, count));
    assert_true(golden_expect(&CMP_DELTA, WHAT_WIDTH, "update (final - initial)", update, ref_update, count));
    aim_optimizer_free(o);
    aim_model_free(m);
}

/* ------------------------------------------------------------------ (b) serialization */

#define S_IN 5
#define S_HIDDEN 7
#define S_OUT 3
#define S_BATCH 6
#define S_PARAMS (S_IN * S_HIDDEN + S_HIDDEN + S_HIDDEN * S_OUT + S_OUT)
#define S_LR 0.01f
/* The record's fixed part: u32 kind, u64 count, u64 steps, f32 alpha, eps,
 * momentum, u32 centered, f32 weight_decay, u32 check_finite. */
#define RECORD_HEAD 44u

typedef struct data {
    float x[S_BATCH * S_IN];
    int32_t labels[S_BATCH];
} data;

static void make_data(data *d, uint64_t seed) {
    fill_uniform(d->x, ARRAY_LEN(d->x), seed, -1.0f, 1.0f);
    for (size_t i = 0; i < S_BATCH; i++) d->labels[i] = (int32_t)((i * 7 + seed) % S_OUT);
}

static void train(aim_model *m, aim_optimizer *o, const data *d, int steps) {
    for (int s = 0; s < steps; s++) {
        float loss = 0.0f;
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d[s % 2].x, ARRAY_LEN(d->x), S_BATCH));
        CHECK_OK(aim_model_loss_sparse(m, 0, d[s % 2].labels, S_BATCH, &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(o, m, S_LR));
        assert_true(isfinite(loss));
    }
}

/* A model trained 3 steps with variant v, serialized with its optimizer into
 * an exact-size heap buffer (*len bytes; caller frees). */
typedef struct trained {
    aim_model *m;
    aim_optimizer *o;
    data d[2];
    unsigned char *buf;
    size_t len, len_without; /* with and without the optimizer record */
} trained;

static void trained_make(trained *t, const variant *v) {
    memset(t, 0, sizeof *t);
    make_data(&t->d[0], 3);
    make_data(&t->d[1], 4);
    t->m = build_mlp(S_IN, S_HIDDEN, S_OUT, S_BATCH, 99);
    const aim_rmsprop_config c = config_of(v);
    CHECK_OK(aim_rmsprop_create(NULL, &c, S_PARAMS, &t->o));
    train(t->m, t->o, t->d, 3);
    CHECK_OK(aim_model_serialized_size(t->m, NULL, &t->len_without));
    CHECK_OK(aim_model_serialized_size(t->m, t->o, &t->len));
    t->buf = malloc(t->len);
    assert_non_null(t->buf);
    size_t written = 0;
    CHECK_OK(aim_model_serialize(t->m, t->o, t->buf, t->len, &written));
    assert_int_equal(written, t->len);
}

static void trained_free(trained *t) {
    free(t->buf);
    aim_optimizer_free(t->o);
    aim_model_free(t->m);
}

static void predict(const aim_model *m, const float *x, float *out) {
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, S_BATCH, &ws));
    CHECK_OK(aim_model_predict(m, ws, x, S_BATCH * S_IN, S_BATCH, out, S_BATCH * S_OUT));
    aim_workspace_free(ws);
}

static void test_serialize_and_resume_exactly(void **state) {
    (void)state;
    for (size_t k = 0; k < N_VARIANTS; k++) {
        const variant *v = &VARIANTS[k];
        trained t;
        trained_make(&t, v);
        print_message("%-22s record %zu bytes (%zu arrays of %d floats)\n", v->name, t.len - t.len_without,
                      arrays_of(v), S_PARAMS);
        /* The record holds exactly the arrays the options call for. */
        assert_int_equal(t.len - t.len_without, RECORD_HEAD + arrays_of(v) * 4u * S_PARAMS);
        expect_arrays(t.o, v);

        aim_model *m2 = NULL;
        aim_optimizer *o2 = NULL;
        char msg[256];
        CHECK_OK(aim_model_deserialize(NULL, t.buf, t.len, &m2, &o2, msg, sizeof msg));
        assert_string_equal(msg, "");
        assert_non_null(o2);
        expect_arrays(o2, v);
        assert_true(aim_optimizer_steps(o2) == 3);
        const aim_rmsprop_config *a = &t.o->rmsprop, *b = &o2->rmsprop;
        assert_true(a->alpha == b->alpha && a->epsilon == b->epsilon && a->momentum == b->momentum &&
                    a->weight_decay == b->weight_decay);
        assert_int_equal(a->centered, b->centered);
        assert_int_equal(a->check_finite, b->check_finite);
        expect_same_state(t.o, o2, v->name);

        float y1[S_BATCH * S_OUT], y2[S_BATCH * S_OUT];
        predict(t.m, t.d[0].x, y1);
        predict(m2, t.d[0].x, y2);
        assert_memory_equal(y1, y2, sizeof y1);

        /* Four more steps on both: the same bits, parameters and state. */
        train(t.m, t.o, t.d, 4);
        train(m2, o2, t.d, 4);
        float *p1 = NULL, *p2 = NULL;
        size_t n1 = 0, n2 = 0;
        CHECK_OK(aim_model_parameters(t.m, &p1, &n1));
        CHECK_OK(aim_model_parameters(m2, &p2, &n2));
        assert_int_equal(n1, n2);
        if (memcmp(p1, p2, n1 * sizeof *p1) != 0) fail_msg("%s: resumed training differs", v->name);
        expect_same_state(t.o, o2, v->name);
        assert_true(aim_optimizer_steps(o2) == 7);

        /* The model alone: no optimizer comes back. */
        aim_model *m3 = NULL;
        aim_optimizer *o3 = (aim_optimizer *)&o3;
        size_t w = 0;
        unsigned char *plain = malloc(t.len_without);
        assert_non_null(plain);
        CHECK_OK(aim_model_serialize(t.m, NULL, plain, t.len_without, &w));
        CHECK_OK(aim_model_deserialize(NULL, plain, w, &m3, &o3, NULL, 0));
        assert_null(o3);
        free(plain);
        aim_model_free(m3);
        aim_optimizer_free(o2);
        aim_model_free(m2);
        trained_free(&t);
    }
}

/* ------------------------------------------------------------------ (c) reset, refused steps */

static void run_golden(aim_optimizer *o, float *p, size_t steps, float lr) {
    for (size_t t = 0; t < steps; t++)
        CHECK_OK(aim_optimizer_step(o, p, golden_rms_grads + (t % OPT_STEPS) * OPT_N, OPT_N, lr));
}

static void test_reset_gives_a_new_optimizer(void **state) {
    (void)state;
    for (size_t k = 0; k < N_VARIANTS; k++) {
        const variant *v = &VARIANTS[k];
        const aim_rmsprop_config c = config_of(v);
        aim_optimizer *used = NULL, *fresh = NULL;
        CHECK_OK(aim_rmsprop_create(NULL, &c, OPT_N, &used));
        CHECK_OK(aim_rmsprop_create(NULL, &c, OPT_N, &fresh));
        float p[OPT_N], q[OPT_N];
        memcpy(p, golden_rms_p0, sizeof p);
        run_golden(used, p, 5, 0.01f);
        assert_true(aim_optimizer_steps(used) == 5);
        assert_true(used->v[0] != 0.0f); /* the state moved */
        CHECK_OK(aim_optimizer_reset(used));
        assert_true(aim_optimizer_steps(used) == 0);
        expect_arrays(used, v);
        expect_same_state(used, fresh, v->name); /* all zero, as new */
        /* And it steps as a new one: same trajectory bits from the same start. */
        memcpy(p, golden_rms_p0, sizeof p);
        memcpy(q, golden_rms_p0, sizeof q);
        run_golden(used, p, OPT_STEPS, 0.01f);
        run_golden(fresh, q, OPT_STEPS, 0.01f);
        assert_memory_equal(p, q, sizeof p);
        expect_same_state(used, fresh, v->name);
        aim_optimizer_free(used);
        aim_optimizer_free(fresh);
    }
}

/* A refused step leaves parameters, state and step count as they were: the
 * next good step gives what a twin that never saw the refused one gives. */
static void test_refused_steps_change_nothing(void **state) {
    (void)state;
    for (size_t k = 0; k < N_VARIANTS; k++) {
        variant v = VARIANTS[k];
        v.check_finite = 1;
        const aim_rmsprop_config c = config_of(&v);
        aim_optimizer *o = NULL, *twin = NULL;
        CHECK_OK(aim_rmsprop_create(NULL, &c, OPT_N, &o));
        CHECK_OK(aim_rmsprop_create(NULL, &c, OPT_N, &twin));
        float p[OPT_N], q[OPT_N], before[OPT_N], bad[OPT_N];
        memcpy(p, golden_rms_p0, sizeof p);
        memcpy(q, golden_rms_p0, sizeof q);
        run_golden(o, p, 3, 0.01f);
        run_golden(twin, q, 3, 0.01f);
        memcpy(before, p, sizeof p);

        const float poison[3] = {NAN, INFINITY, -INFINITY};
        for (int i = 0; i < 3; i++) {
            memcpy(bad, golden_rms_grads, sizeof bad);
            bad[(size_t)(4 * i + 1)] = poison[i];
            assert_int_equal(aim_optimizer_step(o, p, bad, OPT_N, 0.01f), AIM_ERR_NON_FINITE);
            assert_non_null(strstr(aim_optimizer_last_error(o), "NaN or infinite"));
        }
        assert_int_equal(aim_optimizer_step(o, p, golden_rms_grads, OPT_N - 1, 0.01f), AIM_ERR_SHAPE_MISMATCH);
        assert_int_equal(aim_optimizer_step(o, p, golden_rms_grads, OPT_N, NAN), AIM_ERR_INVALID_ARGUMENT);
        assert_int_equal(aim_optimizer_step(o, p, golden_rms_grads, OPT_N, -0.01f), AIM_ERR_INVALID_ARGUMENT);
        assert_memory_equal(p, before, sizeof p);
        expect_same_state(o, twin, v.name);
        run_golden(o, p, 2, 0.01f);
        run_golden(twin, q, 2, 0.01f);
        assert_memory_equal(p, q, sizeof p);
        expect_same_state(o, twin, v.name);

        /* Without check_finite the NaN goes in, as in PyTorch. */
        v.check_finite = 0;
        const aim_rmsprop_config c0 = config_of(&v);
        aim_optimizer *loose = NULL;
        CHECK_OK(aim_rmsprop_create(NULL, &c0, OPT_N, &loose));
        memcpy(bad, golden_rms_grads, sizeof bad);
        bad[1] = NAN;
        CHECK_OK(aim_optimizer_step(loose, p, bad, OPT_N, 0.01f));
        assert_true(isnan(p[1]) && isfinite(p[0]));
        aim_optimizer_free(loose);
        aim_optimizer_free(o);
        aim_optimizer_free(twin);
    }
}

/* ------------------------------------------------------------------ (d) allocation, corrupt records */

static void test_create_allocation_sweep(void **state) {
    (void)state;
    for (size_t k = 0; k < N_VARIANTS; k++) {
        const aim_rmsprop_config c = config_of(&VARIANTS[k]);
        test_alloc ta;
        test_alloc_init(&ta, -1);
        aim_optimizer *o = NULL;
        CHECK_OK(aim_rmsprop_create(&ta.allocator, &c, 1000, &o));
        const long total = ta.calls;
        aim_optimizer_free(o);
        assert_int_equal(ta.live, 0);
        assert_true(total >= 2); /* the object and its arrays */
        long i;
        for (i = 0; i <= total; i++) {
            test_alloc_init(&ta, i);
            aim_optimizer *out = (aim_optimizer *)&out;
            aim_status st = aim_rmsprop_create(&ta.allocator, &c, 1000, &out);
            if (i < total) {
                assert_int_equal(st, AIM_ERR_OUT_OF_MEMORY);
                assert_ptr_equal(out, (aim_optimizer *)&out); /* untouched */
                assert_int_equal(ta.failures, 1);
            } else {
                assert_int_equal(st, AIM_OK);
                assert_int_equal(ta.failures, 0);
                aim_optimizer_free(out);
            }
            if (ta.live != 0) fail_msg("%s: k=%ld leaked %ld blocks", VARIANTS[k].name, i, ta.live);
        }
        assert_int_equal(i, total + 1);
    }
}

static void test_deserialize_allocation_sweep(void **state) {
    (void)state;
    const variant *v = &VARIANTS[N_VARIANTS - 1]; /* all three arrays */
    trained t;
    trained_make(&t, v);
    float want[S_BATCH * S_OUT], got[S_BATCH * S_OUT];
    predict(t.m, t.d[1].x, want);

    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m = NULL;
    aim_optimizer *o = NULL;
    CHECK_OK(aim_model_deserialize(&ta.allocator, t.buf, t.len, &m, &o, NULL, 0));
    const long total = ta.calls;
    aim_optimizer_free(o);
    aim_model_free(m);
    assert_int_equal(ta.live, 0);
    print_message("deserialize with an RMSprop record: %ld allocator calls\n", total);
    assert_true(total >= 3);

    long k;
    for (k = 0; k <= total; k++) {
        test_alloc_init(&ta, k);
        aim_model *mk = (aim_model *)&mk;
        aim_optimizer *ok = (aim_optimizer *)&ok;
        char msg[256] = "x";
        aim_status st = aim_model_deserialize(&ta.allocator, t.buf, t.len, &mk, &ok, msg, sizeof msg);
        if (k < total) {
            if (st != AIM_ERR_OUT_OF_MEMORY) fail_msg("k=%ld: %s (%s)", k, aim_status_str(st), msg);
            assert_int_equal(ta.failures, 1);
            assert_ptr_equal(mk, (aim_model *)&mk);
            assert_ptr_equal(ok, (aim_optimizer *)&ok);
            assert_true(strlen(msg) > 0);
        } else {
            CHECK_OK(st);
            assert_int_equal(ta.failures, 0);
            predict(mk, t.d[1].x, got);
            assert_memory_equal(got, want, sizeof got);
            expect_same_state(t.o, ok, v->name);
            aim_optimizer_free(ok);
            aim_model_free(mk);
        }
        if (ta.live != 0) fail_msg("k=%ld leaked %ld blocks", k, ta.live);
    }
    trained_free(&t);
}

/* CRC-32 as zlib's (reflected, 0xEDB88320), bit by bit. */
static uint32_t crc32_ref(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}
static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_f32(unsigned char *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(p, u);
}
#define HEADER 32u
/* Makes the header's payload length (offset 16) and CRC (24) agree with len bytes. */
static void reseal(unsigned char *buf, size_t len) {
    const uint64_t n = (uint64_t)(len - HEADER);
    put_u32(buf + 16, (uint32_t)n);
    put_u32(buf + 20, (uint32_t)(n >> 32));
    put_u32(buf + 24, crc32_ref(buf + HEADER, len - HEADER));
}

/* Deserializes an exact-size copy; expects CORRUPT_DATA, nothing allocated
 * left behind and the out-parameters untouched; returns the message. */
static void expect_corrupt(const unsigned char *buf, size_t len, const char *what, char *msg, size_t cap) {
    unsigned char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m = (aim_model *)&m;
    aim_optimizer *o = (aim_optimizer *)&o;
    aim_status st = aim_model_deserialize(&ta.allocator, copy, len, &m, &o, msg, cap);
    if (st != AIM_ERR_CORRUPT_DATA) fail_msg("%s: %s (%s)", what, aim_status_str(st), msg);
    assert_ptr_equal(m, (aim_model *)&m);
    assert_ptr_equal(o, (aim_optimizer *)&o);
    if (ta.live != 0) fail_msg("%s: %ld blocks leaked", what, ta.live);
    free(copy);
}

static void test_truncated_record_is_refused(void **state) {
    (void)state;
    const size_t pick[2] = {0, N_VARIANTS - 1}; /* one array; three */
    for (size_t j = 0; j < 2; j++) {
        trained t;
        trained_make(&t, &VARIANTS[pick[j]]);
        unsigned char *cut = malloc(t.len);
        assert_non_null(cut);
        size_t refused = 0, named = 0;
        /* The record starts where the model alone ends; every length from
         * there (the flag promises a record, none follows) to one byte short. */
        for (size_t len = t.len_without; len < t.len; len++) {
            char msg[256], what[64];
            memcpy(cut, t.buf, len);
            reseal(cut, len);
            snprintf(what, sizeof what, "%s cut at %zu of %zu", VARIANTS[pick[j]].name, len, t.len);
            expect_corrupt(cut, len, what, msg, sizeof msg);
            refused++;
            named += strstr(msg, "truncated") != NULL;
        }
        print_message("%s: %zu truncations refused, %zu say \"truncated\"\n", VARIANTS[pick[j]].name, refused, named);
        assert_int_equal(refused, t.len - t.len_without);
        assert_int_equal(named, refused);
        free(cut);
        trained_free(&t);
    }
}

/* Edits of the record that disagree with its arrays or its rules. */
static void test_inconsistent_record_is_refused(void **state) {
    (void)state;
    trained plain, full;
    trained_make(&plain, &VARIANTS[0]);                   /* momentum 0, not centered: 1 array */
    trained_make(&full, &VARIANTS[N_VARIANTS - 1]);       /* momentum 0.5, centered: 3 arrays */
    const size_t rp = plain.len_without, rf = full.len_without; /* record offsets */
    struct edit {
        const char *what;
        trained *t;
        size_t at;     /* offset in the record */
        int is_float;
        float f;
        uint32_t u;
        const char *says; /* in the message */
    } edits[] = {
        {"unknown optimizer kind 3", &plain, 0, 0, 0.0f, 3u, "unknown kind"},
        {"alpha 1", &plain, 20, 1, 1.0f, 0, "invalid"},
        {"alpha NaN", &plain, 20, 1, NAN, 0, "invalid"},
        {"eps 0", &plain, 24, 1, 0.0f, 0, "invalid"},
        {"eps NaN", &full, 24, 1, NAN, 0, "invalid"},
        {"momentum -1", &full, 28, 1, -1.0f, 0, "invalid"},
        {"centered flag 2", &plain, 32, 0, 0.0f, 2u, "RMSprop"},
        {"weight decay NaN", &full, 36, 1, NAN, 0, "invalid"},
        {"check_finite flag 7", &full, 40, 0, 0.0f, 7u, "RMSprop"},
        /* A momentum the arrays do not follow: one array too few, or one too many. */
        {"momentum 0.9 over one array", &plain, 28, 1, 0.9f, 0, "RMSprop record truncated"},
        {"centered over one array", &plain, 32, 0, 0.0f, 1u, "RMSprop record truncated"},
        {"momentum 0 over three arrays", &full, 28, 1, 0.0f, 0, "bytes follow"},
        {"not centered over three arrays", &full, 32, 0, 0.0f, 0u, "bytes follow"},
        {"count one less", &full, 4, 0, 0.0f, (uint32_t)(S_PARAMS - 1), "parameters"},
    };
    for (size_t i = 0; i < ARRAY_LEN(edits); i++) {
        const struct edit *e = &edits[i];
        unsigned char *b = malloc(e->t->len);
        assert_non_null(b);
        memcpy(b, e->t->buf, e->t->len);
        unsigned char *at = b + (e->t == &plain ? rp : rf) + e->at;
        if (e->is_float) put_f32(at, e->f);
        else put_u32(at, e->u);
        reseal(b, e->t->len);
        char msg[256];
        expect_corrupt(b, e->t->len, e->what, msg, sizeof msg);
        print_message("%-30s -> \"%s\"\n", e->what, msg);
        if (!strstr(msg, e->says)) fail_msg("%s: message \"%s\" lacks \"%s\"", e->what, msg, e->says);
        free(b);
    }
    /* The unedited buffers load (so the edits, not the set-up, were refused). */
    for (int k = 0; k < 2; k++) {
        trained *t = k ? &full : &plain;
        aim_model *m = NULL;
        aim_optimizer *o = NULL;
        CHECK_OK(aim_model_deserialize(NULL, t->buf, t->len, &m, &o, NULL, 0));
        assert_non_null(o);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
    trained_free(&plain);
    trained_free(&full);
}

#define GOLDEN(i) {GOLDEN_CASES[i].name, test_golden_trajectory, NULL, NULL, (void *)&GOLDEN_CASES[i]}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_pytorchs),
        GOLDEN(0),
        GOLDEN(1),
        GOLDEN(2),
        GOLDEN(3),
        GOLDEN(4),
        GOLDEN(5),
        cmocka_unit_test(test_golden_mlp),
        cmocka_unit_test(test_serialize_and_resume_exactly),
        cmocka_unit_test(test_reset_gives_a_new_optimizer),
        cmocka_unit_test(test_refused_steps_change_nothing),
        cmocka_unit_test(test_create_allocation_sweep),
        cmocka_unit_test(test_deserialize_allocation_sweep),
        cmocka_unit_test(test_truncated_record_is_refused),
        cmocka_unit_test(test_inconsistent_record_is_refused),
    };
    _Static_assert(ARRAY_LEN(GOLDEN_CASES) == 6, "every golden case is listed in main");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
