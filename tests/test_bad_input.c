/* Every public function of aimodel.h called with a bad argument, out of
 * order, with an overflowing size or with non-finite data.
 *
 * The test is a table: each entry names one case, a small function that
 * calls ONE public function wrongly (after valid set-up calls), and the status
 * the header documents for it. Each entry runs as its own cmocka test on a
 * fresh fixture, so one failing case neither hides nor disturbs the others.
 * Void and query functions have entries too: their case asserts the
 * documented neutral result (0, NULL, "") and returns AIM_OK.
 *
 * Where the header promises that a failed call changes nothing, the case also
 * checks it (out-parameters left alone, shapes and parameters unchanged,
 * optimizer step count unchanged). The tests after the table check that a
 * model keeps working after refused calls and that error messages are set.
 *
 * Every buffer comes with its element count: for each count there are rows
 * where it disagrees with the model (one too few, one too many, 0, SIZE_MAX,
 * the count of another batch), refused with AIM_ERR_SHAPE_MISMATCH before
 * anything is read or written. The graph calls (inputs, branches, merges,
 * outputs) have their rows too. The group "issue_reported_cases" replays the
 * four cases of the issue that brought the counts in, with buffers of
 * exactly the size the caller claims (on the heap for ASan, and against a
 * PROT_NONE page, so that a read past them faults in any build).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aimodel.h"
#include "support.h"

/* ------------------------------------------------------------------------- */
/* Fixture                                                                   */
/* ------------------------------------------------------------------------- */

#define IN 4      /* input features of the fixture models */
#define OUT 3     /* output features */
#define MAXB 4    /* max_batch of the compiled fixture models */
#define BIG 16    /* capacity of the fixture's batch buffers */
#define SEQ_T 3   /* steps of the fixture's sequences (SEQ_T x IN per sample) */
#define LSTM_H 5  /* hidden size of the fixture's LSTM */
#define LSTM_L 2  /* its stacked layers */
#define LSTM_STATE (LSTM_L * MAXB * LSTM_H) /* floats of an h0 or c0 for max_batch */
#define XN(b) ((size_t)(b) * IN)              /* floats of b samples of the fixture models' input */
#define YN(b) ((size_t)(b) * OUT)             /* floats of b samples of their output */
#define ST(b) ((size_t)LSTM_L * (b) * LSTM_H) /* floats of m_lstm's h0 or c0 for batch b */
#define IN2 2                                 /* m_2in's second input */
#define OUT2 2                                /* m_2out's second output */
#define G0(b) ((size_t)(b) * GRAPH2_IN0)      /* m_g2's inputs and outputs, b samples */
#define G1(b) ((size_t)(b) * GRAPH2_IN1)
#define H0(b) ((size_t)(b) * GRAPH2_OUT0)
#define H1(b) ((size_t)(b) * GRAPH2_OUT1)

typedef struct fx fx;
typedef aim_status (*case_fn)(fx *f);

typedef struct entry {
    const char *name; /* "t_<public function>__<what is wrong>" */
    case_fn fn;
    aim_status expected;
} entry;

struct fx {
    const entry *e;
    aim_rng *rng;
    aim_tensor *t23, *t32, *t6, *t4;
    aim_model *m;       /* IN -> Dense 5 relu -> Dense OUT, compiled, max_batch MAXB */
    aim_model *m_unc;   /* the same layers, not compiled */
    aim_model *m_empty; /* input {IN}, no layers */
    aim_model *m_other; /* IN -> Dense 6 relu -> Dense OUT, compiled */
    aim_model *m_lin;   /* IN -> Dense OUT (identity), compiled: NaN in, NaN out */
    aim_model *m_ig;    /* like m, compiled with input_gradient = 1 */
    aim_model *m_img_unc; /* input {2, 5, 5} (C x H x W), no layers yet */
    aim_model *m_img;   /* {2,5,5} -> conv 3x3x3 relu -> max pool 2 -> flatten -> Dense OUT, compiled */
    aim_model *m_seq_unc; /* input {SEQ_T, IN} (time x features), no layers yet */
    aim_model *m_lstm;  /* {SEQ_T, IN} -> LSTM LSTM_H x LSTM_L (last step) -> Dense OUT, compiled, input_gradient */
    aim_model *m_2out;  /* IN -> L0 Dense 5 relu -> L1 Dense OUT; L0 -> L2 Dense OUT2; outputs L1, L2; compiled */
    aim_model *m_2in;   /* IN -> L0 Dense 5 relu; input 1 {IN2} -> L1 Dense 3 relu; L2 concat(L0, L1);
                         * L3 Dense OUT; compiled */
    aim_model *m_g2;    /* graph2_build() (support.h): 2 inputs, 2 outputs; compiled, input_gradient */
    aim_workspace *ws;  /* for m, max_batch MAXB */
    aim_workspace *ws_2out, *ws_2in, *ws_g2; /* for those, max_batch MAXB */
    aim_optimizer *sgd; /* SGD for m's parameter count */
    size_t nparams;     /* m's parameter count */
    float x[BIG * IN];
    float xa[BIG * 8], xb[BIG * 8]; /* inputs of the graph models (any input has at most 8 features) */
    float targets[BIG * OUT];
    int32_t labels[BIG];
    float out[BIG * OUT];
    float out2[BIG * 8]; /* a second output */
    float buf[64];
    float grads[64];
    float h0[LSTM_STATE], c0[LSTM_STATE]; /* initial states, [layers, batch, H] for any batch <= MAXB */
    char msg[512]; /* a checked helper's copy of the refused call's message, before its own checks */
};

/* Out-parameters must be written only on success: cases preset them to this. */
static char sentinel_byte;
#define SENT ((void *)&sentinel_byte)

static aim_model *build(size_t hidden, int compile, int32_t input_gradient) {
    const size_t dims[1] = {IN};
    aim_model *m = NULL;
    aim_dense_config dc;
    assert_int_equal(aim_model_create(NULL, 1, dims, &m), AIM_OK);
    if (hidden > 0) {
        assert_int_equal(aim_dense_config_init(&dc, hidden, AIM_ACT_RELU), AIM_OK);
        assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
    }
    assert_int_equal(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
    if (compile) {
        aim_compile_config cc;
        assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
        cc.max_batch = MAXB;
        cc.seed = 11;
        cc.input_gradient = input_gradient;
        assert_int_equal(aim_model_compile(m, &cc), AIM_OK);
    }
    return m;
}

static aim_model *build_image(int compile) {
    const size_t dims[3] = {2, 5, 5};
    aim_model *m = NULL;
    assert_int_equal(aim_model_create(NULL, 3, dims, &m), AIM_OK);
    if (compile) {
        aim_conv2d_config cc;
        aim_pool2d_config pc;
        aim_dense_config dc;
        aim_compile_config comp;
        assert_int_equal(aim_conv2d_config_init(&cc, 3, 3, 3, AIM_ACT_RELU), AIM_OK);
        assert_int_equal(aim_model_add_conv2d(m, &cc), AIM_OK);
        assert_int_equal(aim_pool2d_config_init(&pc, 2, 2), AIM_OK);
        assert_int_equal(aim_model_add_max_pool2d(m, &pc), AIM_OK);
        assert_int_equal(aim_model_add_flatten(m), AIM_OK);
        assert_int_equal(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY), AIM_OK);
        assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
        assert_int_equal(aim_compile_config_init(&comp), AIM_OK);
        comp.max_batch = MAXB;
        assert_int_equal(aim_model_compile(m, &comp), AIM_OK);
    }
    return m;
}

/* {SEQ_T, IN} sequences; compiled: -> LSTM LSTM_H x LSTM_L (last step) -> Dense OUT. */
static aim_model *build_lstm(int compile) {
    const size_t dims[2] = {SEQ_T, IN};
    aim_model *m = NULL;
    assert_int_equal(aim_model_create(NULL, 2, dims, &m), AIM_OK);
    if (compile) {
        aim_lstm_config lc;
        aim_dense_config dc;
        aim_compile_config comp;
        assert_int_equal(aim_lstm_config_init(&lc, LSTM_H, LSTM_L), AIM_OK);
        assert_int_equal(aim_model_add_lstm(m, &lc), AIM_OK);
        assert_int_equal(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY), AIM_OK);
        assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
        assert_int_equal(aim_compile_config_init(&comp), AIM_OK);
        comp.max_batch = MAXB;
        comp.input_gradient = 1;
        assert_int_equal(aim_model_compile(m, &comp), AIM_OK);
    }
    return m;
}

static void compile_fixture(aim_model *m, int32_t input_gradient) {
    aim_compile_config cc;
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = MAXB;
    cc.seed = 13;
    cc.input_gradient = input_gradient;
    CHECK_OK(aim_model_compile(m, &cc));
}

/* IN -> L0 Dense 5 relu -> L1 Dense OUT, and L0 -> L2 Dense OUT2; outputs L1, L2. */
static aim_model *build_2out(void) {
    aim_model *m = build(5, 0, 0);
    aim_dense_config dc;
    const size_t outs[2] = {1, 2};
    CHECK_OK(aim_model_continue_from(m, 0));
    CHECK_OK(aim_dense_config_init(&dc, OUT2, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_set_outputs(m, outs, NULL, ARRAY_LEN(outs)));
    compile_fixture(m, 0);
    return m;
}

/* IN -> L0 Dense 5 relu; input 1 {IN2} -> L1 Dense 3 relu; L2 = concat(L0, L1); L3 Dense OUT. */
static aim_model *build_2in(void) {
    const size_t dims[1] = {IN}, dims1[1] = {IN2};
    aim_model *m = NULL;
    aim_dense_config dc;
    size_t in1 = 0;
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));
    CHECK_OK(aim_model_add_input(m, 1, dims1, &in1));
    assert_int_equal(in1, AIM_MODEL_INPUT(1));
    CHECK_OK(aim_dense_config_init(&dc, 5, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_continue_from(m, in1));
    CHECK_OK(aim_dense_config_init(&dc, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(m, &dc));
    const size_t parts[2] = {0, 1};
    CHECK_OK(aim_model_add_concat(m, parts, ARRAY_LEN(parts), 0));
    CHECK_OK(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    compile_fixture(m, 0);
    return m;
}

static aim_model *build_g2(void) {
    aim_model *m = NULL;
    const char *failed = NULL;
    aim_status st = graph2_build(NULL, &m, &failed);
    if (st != AIM_OK) fail_msg("graph2_build: %s failed: %s", failed, aim_status_str(st));
    compile_fixture(m, 1);
    return m;
}

static aim_tensor *tensor2(size_t a, size_t b) {
    const size_t dims[2] = {a, b};
    aim_tensor *t = NULL;
    assert_int_equal(aim_tensor_create(NULL, 2, dims, &t), AIM_OK);
    return t;
}

static aim_tensor *tensor1(size_t a) {
    aim_tensor *t = NULL;
    assert_int_equal(aim_tensor_create(NULL, 1, &a, &t), AIM_OK);
    return t;
}

static int setup(void **state) {
    static fx storage;
    fx *f = &storage;
    const entry *e = *state;
    memset(f, 0, sizeof *f);
    f->e = e;
    assert_int_equal(aim_rng_create(NULL, 5, &f->rng), AIM_OK);
    f->t23 = tensor2(2, 3);
    f->t32 = tensor2(3, 2);
    f->t6 = tensor1(6);
    f->t4 = tensor1(4);
    f->m = build(5, 1, 0);
    f->m_unc = build(5, 0, 0);
    f->m_other = build(6, 1, 0);
    f->m_lin = build(0, 1, 0);
    f->m_ig = build(5, 1, 1);
    f->m_img_unc = build_image(0);
    f->m_img = build_image(1);
    f->m_seq_unc = build_lstm(0);
    f->m_lstm = build_lstm(1);
    f->m_2out = build_2out();
    f->m_2in = build_2in();
    f->m_g2 = build_g2();
    {
        const size_t dims[1] = {IN};
        assert_int_equal(aim_model_create(NULL, 1, dims, &f->m_empty), AIM_OK);
    }
    assert_int_equal(aim_workspace_create(f->m, NULL, MAXB, &f->ws), AIM_OK);
    assert_int_equal(aim_workspace_create(f->m_2out, NULL, MAXB, &f->ws_2out), AIM_OK);
    assert_int_equal(aim_workspace_create(f->m_2in, NULL, MAXB, &f->ws_2in), AIM_OK);
    assert_int_equal(aim_workspace_create(f->m_g2, NULL, MAXB, &f->ws_g2), AIM_OK);
    {
        float *p = NULL;
        assert_int_equal(aim_model_parameters(f->m, &p, &f->nparams), AIM_OK);
        assert_int_equal(f->nparams, (size_t)(IN * 5 + 5 + 5 * OUT + OUT));
    }
    assert_int_equal(aim_sgd_create(NULL, NULL, f->nparams, &f->sgd), AIM_OK);
    fill_uniform(f->x, BIG * IN, 1, -1.0f, 1.0f);
    fill_uniform(f->xa, ARRAY_LEN(f->xa), 4, -1.0f, 1.0f);
    fill_uniform(f->xb, ARRAY_LEN(f->xb), 5, -1.0f, 1.0f);
    for (size_t i = 0; i < BIG; i++) {
        f->labels[i] = (int32_t)(i % OUT);
        for (size_t j = 0; j < OUT; j++) f->targets[i * OUT + j] = (j == i % OUT) ? 1.0f : 0.0f;
    }
    for (size_t i = 0; i < 64; i++) {
        f->buf[i] = (float)i * 0.25f - 3.0f;
        f->grads[i] = (float)(i % 7) * 0.1f - 0.3f;
    }
    fill_uniform(f->h0, LSTM_STATE, 2, -0.9f, 0.9f);
    fill_uniform(f->c0, LSTM_STATE, 3, -1.5f, 1.5f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    aim_optimizer_free(f->sgd);
    aim_workspace_free(f->ws);
    aim_workspace_free(f->ws_2out);
    aim_workspace_free(f->ws_2in);
    aim_workspace_free(f->ws_g2);
    aim_model_free(f->m_2out);
    aim_model_free(f->m_2in);
    aim_model_free(f->m_g2);
    aim_model_free(f->m);
    aim_model_free(f->m_unc);
    aim_model_free(f->m_empty);
    aim_model_free(f->m_other);
    aim_model_free(f->m_lin);
    aim_model_free(f->m_ig);
    aim_model_free(f->m_img_unc);
    aim_model_free(f->m_img);
    aim_model_free(f->m_seq_unc);
    aim_model_free(f->m_lstm);
    aim_tensor_free(f->t23);
    aim_tensor_free(f->t32);
    aim_tensor_free(f->t6);
    aim_tensor_free(f->t4);
    aim_rng_free(f->rng);
    return 0;
}

/* A valid training forward of the first `batch` samples of f->x (a set-up
 * call: its count is right by construction). */
static void fwd(aim_model *m, const fx *f, size_t batch) {
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, f->x, batch * aim_model_input_size(m), batch));
}

/* The same for m_g2 (inputs from f->xa and f->xb). */
static void fwd_g2(const fx *f, aim_mode mode, size_t batch) {
    const float *const in[2] = {f->xa, f->xb};
    const size_t counts[2] = {G0(batch), G1(batch)};
    CHECK_OK(aim_model_forward_multi(f->m_g2, mode, in, counts, ARRAY_LEN(in), batch));
}

/* Copies a model's parameters (at most 64) so a case can check they did not move. */
static size_t snapshot_params(aim_model *m, float *copy) {
    float *p = NULL;
    size_t n = 0;
    assert_int_equal(aim_model_parameters(m, &p, &n), AIM_OK);
    assert_true(n <= 64);
    memcpy(copy, p, n * sizeof *p);
    return n;
}

static void assert_params_equal(aim_model *m, const float *copy, size_t n) {
    float *p = NULL;
    size_t k = 0;
    assert_int_equal(aim_model_parameters(m, &p, &k), AIM_OK);
    assert_int_equal(k, n);
    assert_memory_equal(p, copy, n * sizeof *p);
}

static void assert_shape(const aim_tensor *t, size_t rank, size_t d0, size_t d1) {
    assert_int_equal(aim_tensor_rank(t), rank);
    assert_int_equal(aim_tensor_dim(t, 0), d0);
    if (rank > 1) assert_int_equal(aim_tensor_dim(t, 1), d1);
}

/* An allocator with a missing function, which every create must refuse. */
static void *no_alloc(void *c, size_t n) {
    (void)c;
    (void)n;
    return NULL;
}
static void no_free(void *c, void *p) {
    (void)c;
    (void)p;
}
static const aim_allocator incomplete_allocator = {NULL, no_alloc, NULL, no_free};

#define CASE(name) static aim_status name(fx *f)
#define UNUSED (void)f

/* ------------------------------------------------------------------------- */
/* Core: status strings, version                                             */
/* ------------------------------------------------------------------------- */

CASE(t_aim_status_str__unknown_value) {
    UNUSED;
    const char *s = aim_status_str((aim_status)99);
    assert_non_null(s);
    assert_string_equal(s, "unknown status");
    for (int k = 0; k <= 9; k++) {
        const char *d = aim_status_str((aim_status)k);
        assert_non_null(d);
        assert_true(d[0] != '\0');
        assert_string_not_equal(d, "unknown status");
    }
    return AIM_OK;
}

CASE(t_aim_version__matches_header) {
    UNUSED;
    assert_non_null(aim_version());
    assert_string_equal(aim_version(), AIM_VERSION_STRING);
    return AIM_OK;
}

CASE(t_aim_version_number__matches_header) {
    UNUSED;
    assert_int_equal(aim_version_number(), AIM_VERSION_NUMBER);
    return AIM_OK;
}

/* ------------------------------------------------------------------------- */
/* RNG                                                                       */
/* ------------------------------------------------------------------------- */

CASE(t_aim_rng_create__null_out) {
    UNUSED;
    return aim_rng_create(NULL, 1, NULL);
}
CASE(t_aim_rng_create__allocator_missing_function) {
    UNUSED;
    aim_rng *r = SENT;
    aim_status s = aim_rng_create(&incomplete_allocator, 1, &r);
    assert_ptr_equal(r, SENT);
    return s;
}
CASE(t_aim_rng_free__null) {
    UNUSED;
    aim_rng_free(NULL);
    return AIM_OK;
}
CASE(t_aim_rng_seed__null) {
    UNUSED;
    return aim_rng_seed(NULL, 1);
}
CASE(t_aim_rng_next_u64__null_rng) {
    UNUSED;
    uint64_t v = 0;
    return aim_rng_next_u64(NULL, &v);
}
CASE(t_aim_rng_next_u64__null_out) { return aim_rng_next_u64(f->rng, NULL); }
CASE(t_aim_rng_uniform__null_rng) {
    UNUSED;
    float v = 0;
    return aim_rng_uniform(NULL, &v);
}
CASE(t_aim_rng_uniform__null_out) { return aim_rng_uniform(f->rng, NULL); }
CASE(t_aim_rng_below__zero_bound) {
    /* Refused: neither the out-parameter nor the generator's state moves. */
    uint64_t v = 12345, a = 0, b = 0;
    aim_rng *twin = NULL;
    assert_int_equal(aim_rng_create(NULL, 5, &twin), AIM_OK);
    aim_status s = aim_rng_below(f->rng, 0, &v);
    assert_int_equal(v, 12345);
    assert_int_equal(aim_rng_next_u64(f->rng, &a), AIM_OK);
    assert_int_equal(aim_rng_next_u64(twin, &b), AIM_OK);
    assert_int_equal(a, b);
    aim_rng_free(twin);
    return s;
}
CASE(t_aim_rng_below__null_rng) {
    UNUSED;
    uint64_t v = 0;
    return aim_rng_below(NULL, 3, &v);
}
CASE(t_aim_rng_below__null_out) { return aim_rng_below(f->rng, 3, NULL); }
CASE(t_aim_rng_normal__null_rng) {
    UNUSED;
    float v = 0;
    return aim_rng_normal(NULL, &v);
}
CASE(t_aim_rng_normal__null_out) { return aim_rng_normal(f->rng, NULL); }
CASE(t_aim_rng_shuffle_u32__null_rng) {
    UNUSED;
    uint32_t idx[3] = {0, 1, 2};
    aim_status s = aim_rng_shuffle_u32(NULL, idx, 3);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 2);
    return s;
}
CASE(t_aim_rng_shuffle_u32__null_indices) { return aim_rng_shuffle_u32(f->rng, NULL, 3); }

/* ------------------------------------------------------------------------- */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------- */

CASE(t_aim_tensor_create__null_out) {
    UNUSED;
    const size_t d[2] = {2, 3};
    return aim_tensor_create(NULL, 2, d, NULL);
}
CASE(t_aim_tensor_create__null_dims) {
    UNUSED;
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_create(NULL, 2, NULL, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_create__rank_0) {
    UNUSED;
    const size_t d[1] = {2};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_create(NULL, 0, d, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_create__rank_5) {
    UNUSED;
    const size_t d[5] = {1, 1, 1, 1, 1};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_create(NULL, AIM_MAX_RANK + 1, d, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_create__zero_dim) {
    UNUSED;
    const size_t d[3] = {2, 0, 3};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_create(NULL, 3, d, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_create__element_count_overflow) {
    UNUSED;
    const size_t d[2] = {SIZE_MAX / 2, 3};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_create(NULL, 2, d, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_create__byte_count_overflow) {
    /* The element count fits in size_t, the byte count does not. */
    UNUSED;
    const size_t d[1] = {SIZE_MAX / sizeof(float) + 1};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_create(NULL, 1, d, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_create__allocator_missing_function) {
    UNUSED;
    const size_t d[1] = {2};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_create(&incomplete_allocator, 1, d, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_wrap__null_data) {
    UNUSED;
    const size_t d[1] = {2};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 1, d, NULL, 2, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_wrap__null_out) {
    const size_t d[1] = {2};
    return aim_tensor_wrap(NULL, 1, d, f->buf, 2, NULL);
}
CASE(t_aim_tensor_wrap__null_dims) {
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 1, NULL, f->buf, 2, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_wrap__rank_0) {
    const size_t d[1] = {2};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 0, d, f->buf, 2, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_wrap__zero_dim) {
    const size_t d[2] = {0, 2};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 2, d, f->buf, 0, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_wrap__overflow) {
    const size_t d[2] = {SIZE_MAX / 2, 3};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 2, d, f->buf, ARRAY_LEN(f->buf), &t);
    assert_ptr_equal(t, SENT);
    return s;
}
/* The buffer holds 64 floats; a 2 x 40 shape needs 80: refused, not read past. */
CASE(t_aim_tensor_wrap__count_too_small) {
    const size_t d[2] = {2, 40};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 2, d, f->buf, ARRAY_LEN(f->buf), &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_wrap__count_too_large) {
    const size_t d[1] = {8};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 1, d, f->buf, 9, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_wrap__count_size_max) {
    const size_t d[1] = {8};
    aim_tensor *t = SENT;
    aim_status s = aim_tensor_wrap(NULL, 1, d, f->buf, SIZE_MAX, &t);
    assert_ptr_equal(t, SENT);
    return s;
}
CASE(t_aim_tensor_free__null) {
    UNUSED;
    aim_tensor_free(NULL);
    return AIM_OK;
}
CASE(t_aim_tensor_rank__null) {
    UNUSED;
    assert_int_equal(aim_tensor_rank(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_tensor_dim__null) {
    UNUSED;
    assert_int_equal(aim_tensor_dim(NULL, 0), 0);
    return AIM_OK;
}
CASE(t_aim_tensor_dim__axis_out_of_range) {
    assert_int_equal(aim_tensor_dim(f->t23, 2), 0);
    assert_int_equal(aim_tensor_dim(f->t23, SIZE_MAX), 0);
    return AIM_OK;
}
CASE(t_aim_tensor_size__null) {
    UNUSED;
    assert_int_equal(aim_tensor_size(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_tensor_data__null) {
    UNUSED;
    assert_null(aim_tensor_data(NULL));
    return AIM_OK;
}
CASE(t_aim_tensor_data_const__null) {
    UNUSED;
    assert_null(aim_tensor_data_const(NULL));
    return AIM_OK;
}
CASE(t_aim_tensor_reshape__null_tensor) {
    UNUSED;
    const size_t d[1] = {6};
    return aim_tensor_reshape(NULL, 1, d);
}
CASE(t_aim_tensor_reshape__null_dims) {
    aim_status s = aim_tensor_reshape(f->t23, 1, NULL);
    assert_shape(f->t23, 2, 2, 3);
    return s;
}
CASE(t_aim_tensor_reshape__rank_0) {
    const size_t d[1] = {6};
    aim_status s = aim_tensor_reshape(f->t23, 0, d);
    assert_shape(f->t23, 2, 2, 3);
    return s;
}
CASE(t_aim_tensor_reshape__rank_5) {
    const size_t d[5] = {6, 1, 1, 1, 1};
    aim_status s = aim_tensor_reshape(f->t23, 5, d);
    assert_shape(f->t23, 2, 2, 3);
    return s;
}
CASE(t_aim_tensor_reshape__zero_dim) {
    const size_t d[2] = {6, 0};
    aim_status s = aim_tensor_reshape(f->t23, 2, d);
    assert_shape(f->t23, 2, 2, 3);
    return s;
}
CASE(t_aim_tensor_reshape__count_differs) {
    const size_t d[2] = {2, 4};
    aim_status s = aim_tensor_reshape(f->t23, 2, d);
    assert_shape(f->t23, 2, 2, 3);
    assert_int_equal(aim_tensor_size(f->t23), 6);
    return s;
}
CASE(t_aim_tensor_reshape__overflow) {
    const size_t d[2] = {SIZE_MAX / 2, 3};
    aim_status s = aim_tensor_reshape(f->t23, 2, d);
    assert_shape(f->t23, 2, 2, 3);
    return s;
}
CASE(t_aim_tensor_fill__null) {
    UNUSED;
    return aim_tensor_fill(NULL, 1.0f);
}
CASE(t_aim_tensor_copy__null_dst) { return aim_tensor_copy(NULL, f->t23); }
CASE(t_aim_tensor_copy__null_src) {
    assert_int_equal(aim_tensor_fill(f->t23, 2.0f), AIM_OK);
    aim_status s = aim_tensor_copy(f->t23, NULL);
    assert_true(aim_tensor_data(f->t23)[5] == 2.0f);
    return s;
}
CASE(t_aim_tensor_copy__transposed_shape) {
    /* Same element count, different shape: refused, destination untouched. */
    assert_int_equal(aim_tensor_fill(f->t23, 2.0f), AIM_OK);
    assert_int_equal(aim_tensor_fill(f->t32, 7.0f), AIM_OK);
    aim_status s = aim_tensor_copy(f->t23, f->t32);
    for (size_t i = 0; i < 6; i++) assert_true(aim_tensor_data(f->t23)[i] == 2.0f);
    return s;
}
CASE(t_aim_tensor_copy__different_rank) {
    assert_int_equal(aim_tensor_fill(f->t6, 1.0f), AIM_OK);
    aim_status s = aim_tensor_copy(f->t6, f->t23);
    for (size_t i = 0; i < 6; i++) assert_true(aim_tensor_data(f->t6)[i] == 1.0f);
    return s;
}
CASE(t_aim_tensor_copy__different_count) { return aim_tensor_copy(f->t4, f->t6); }
CASE(t_aim_tensor_rand_uniform__null_tensor) { return aim_tensor_rand_uniform(NULL, f->rng, 0.0f, 1.0f); }
CASE(t_aim_tensor_rand_uniform__null_rng) { return aim_tensor_rand_uniform(f->t23, NULL, 0.0f, 1.0f); }
CASE(t_aim_tensor_rand_uniform__nan_low) { return aim_tensor_rand_uniform(f->t23, f->rng, NAN, 1.0f); }
CASE(t_aim_tensor_rand_uniform__inf_high) { return aim_tensor_rand_uniform(f->t23, f->rng, 0.0f, INFINITY); }
CASE(t_aim_tensor_rand_uniform__low_above_high) {
    aim_status s = aim_tensor_rand_uniform(f->t23, f->rng, 2.0f, 1.0f);
    for (size_t i = 0; i < 6; i++) assert_true(aim_tensor_data(f->t23)[i] == 0.0f);
    return s;
}
CASE(t_aim_tensor_rand_normal__null_tensor) { return aim_tensor_rand_normal(NULL, f->rng, 0.0f, 1.0f); }
CASE(t_aim_tensor_rand_normal__null_rng) { return aim_tensor_rand_normal(f->t23, NULL, 0.0f, 1.0f); }
CASE(t_aim_tensor_rand_normal__nan_mean) { return aim_tensor_rand_normal(f->t23, f->rng, NAN, 1.0f); }
CASE(t_aim_tensor_rand_normal__inf_stddev) { return aim_tensor_rand_normal(f->t23, f->rng, 0.0f, INFINITY); }
CASE(t_aim_tensor_rand_normal__negative_stddev) {
    aim_status s = aim_tensor_rand_normal(f->t23, f->rng, 0.0f, -1.0f);
    for (size_t i = 0; i < 6; i++) assert_true(aim_tensor_data(f->t23)[i] == 0.0f);
    return s;
}
CASE(t_aim_tensor_last_error__null) {
    UNUSED;
    assert_non_null(aim_tensor_last_error(NULL));
    assert_string_equal(aim_tensor_last_error(NULL), "");
    return AIM_OK;
}

/* ------------------------------------------------------------------------- */
/* Losses and activations on plain buffers                                   */
/* ------------------------------------------------------------------------- */

CASE(t_aim_loss__null_pred) {
    float l = -1.0f;
    aim_status s = aim_loss(AIM_LOSS_MSE, NULL, f->targets, 2, OUT, &l, NULL);
    assert_true(l == -1.0f);
    return s;
}
CASE(t_aim_loss__null_targets) {
    float l = -1.0f;
    aim_status s = aim_loss(AIM_LOSS_MSE, f->buf, NULL, 2, OUT, &l, NULL);
    assert_true(l == -1.0f);
    return s;
}
CASE(t_aim_loss__null_loss_out) { return aim_loss(AIM_LOSS_MSE, f->buf, f->targets, 2, OUT, NULL, NULL); }
CASE(t_aim_loss__zero_batch) {
    float l = -1.0f;
    return aim_loss(AIM_LOSS_MSE, f->buf, f->targets, 0, OUT, &l, NULL);
}
CASE(t_aim_loss__zero_features) {
    float l = -1.0f;
    return aim_loss(AIM_LOSS_MSE, f->buf, f->targets, 2, 0, &l, NULL);
}
CASE(t_aim_loss__unknown_kind) {
    float l = -1.0f;
    aim_status s = aim_loss((aim_loss_kind)99, f->buf, f->targets, 2, OUT, &l, NULL);
    assert_true(l == -1.0f);
    return s;
}
CASE(t_aim_loss__size_overflow) {
    /* Must be refused before any element is read. */
    float l = -1.0f;
    return aim_loss(AIM_LOSS_MSE, f->buf, f->targets, SIZE_MAX / 2, 3, &l, NULL);
}
CASE(t_aim_loss__nan_pred) {
    float l = -1.0f;
    f->buf[1] = NAN;
    aim_status s = aim_loss(AIM_LOSS_MSE, f->buf, f->targets, 2, OUT, &l, f->out);
    assert_true(l == -1.0f);
    return s;
}
CASE(t_aim_loss__inf_target) {
    float l = -1.0f;
    f->targets[2] = INFINITY;
    return aim_loss(AIM_LOSS_MSE, f->buf, f->targets, 2, OUT, &l, NULL);
}
CASE(t_aim_loss__nan_logit_softmax_ce) {
    float l = -1.0f;
    f->buf[0] = NAN;
    return aim_loss(AIM_LOSS_SOFTMAX_CROSS_ENTROPY, f->buf, f->targets, 2, OUT, &l, NULL);
}
CASE(t_aim_loss_sparse__null_logits) {
    float l = -1.0f;
    return aim_loss_sparse(NULL, f->labels, 2, OUT, &l, NULL);
}
CASE(t_aim_loss_sparse__null_labels) {
    float l = -1.0f;
    return aim_loss_sparse(f->buf, NULL, 2, OUT, &l, NULL);
}
CASE(t_aim_loss_sparse__null_loss_out) { return aim_loss_sparse(f->buf, f->labels, 2, OUT, NULL, NULL); }
CASE(t_aim_loss_sparse__zero_batch) {
    float l = -1.0f;
    return aim_loss_sparse(f->buf, f->labels, 0, OUT, &l, NULL);
}
CASE(t_aim_loss_sparse__zero_classes) {
    float l = -1.0f;
    return aim_loss_sparse(f->buf, f->labels, 2, 0, &l, NULL);
}
CASE(t_aim_loss_sparse__label_equal_to_classes) {
    float l = -1.0f;
    f->labels[1] = OUT;
    aim_status s = aim_loss_sparse(f->buf, f->labels, 2, OUT, &l, f->out);
    assert_true(l == -1.0f);
    return s;
}
CASE(t_aim_loss_sparse__negative_label) {
    float l = -1.0f;
    f->labels[0] = -1;
    return aim_loss_sparse(f->buf, f->labels, 2, OUT, &l, NULL);
}
CASE(t_aim_loss_sparse__size_overflow) {
    float l = -1.0f;
    return aim_loss_sparse(f->buf, f->labels, SIZE_MAX / 2, 3, &l, NULL);
}
CASE(t_aim_loss_sparse__nan_logit) {
    float l = -1.0f;
    f->buf[4] = NAN;
    aim_status s = aim_loss_sparse(f->buf, f->labels, 2, OUT, &l, NULL);
    assert_true(l == -1.0f);
    return s;
}
CASE(t_aim_activation_forward__unknown_activation) {
    memcpy(f->out, f->buf, 6 * sizeof(float));
    aim_status s = aim_activation_forward((aim_activation)99, 0.0f, f->buf, f->out, 2, 3);
    assert_memory_equal(f->out, f->buf, 6 * sizeof(float));
    return s;
}
CASE(t_aim_activation_forward__null_x) { return aim_activation_forward(AIM_ACT_RELU, 0.0f, NULL, f->out, 2, 3); }
CASE(t_aim_activation_forward__null_y) { return aim_activation_forward(AIM_ACT_RELU, 0.0f, f->buf, NULL, 2, 3); }
CASE(t_aim_activation_forward__zero_rows) {
    return aim_activation_forward(AIM_ACT_SOFTMAX, 0.0f, f->buf, f->out, 0, 3);
}
CASE(t_aim_activation_forward__zero_cols) {
    return aim_activation_forward(AIM_ACT_SOFTMAX, 0.0f, f->buf, f->out, 2, 0);
}
CASE(t_aim_activation_forward__size_overflow) {
    return aim_activation_forward(AIM_ACT_RELU, 0.0f, f->buf, f->out, SIZE_MAX / 2, 3);
}

/* ------------------------------------------------------------------------- */
/* Config initializers                                                       */
/* ------------------------------------------------------------------------- */

CASE(t_aim_dense_config_init__null) {
    UNUSED;
    return aim_dense_config_init(NULL, 3, AIM_ACT_RELU);
}
CASE(t_aim_compile_config_init__null) {
    UNUSED;
    return aim_compile_config_init(NULL);
}
CASE(t_aim_sgd_config_init__null) {
    UNUSED;
    return aim_sgd_config_init(NULL);
}
CASE(t_aim_adam_config_init__null) {
    UNUSED;
    return aim_adam_config_init(NULL);
}

/* ------------------------------------------------------------------------- */
/* Model construction                                                        */
/* ------------------------------------------------------------------------- */

CASE(t_aim_model_create__null_out) {
    UNUSED;
    const size_t d[1] = {IN};
    return aim_model_create(NULL, 1, d, NULL);
}
CASE(t_aim_model_create__null_dims) {
    UNUSED;
    aim_model *m = SENT;
    aim_status s = aim_model_create(NULL, 1, NULL, &m);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_create__rank_0) {
    UNUSED;
    const size_t d[1] = {IN};
    aim_model *m = SENT;
    aim_status s = aim_model_create(NULL, 0, d, &m);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_create__rank_4) {
    /* A sample has rank 1 to 3 (the batch is the fourth dimension). */
    UNUSED;
    const size_t d[4] = {1, 2, 2, 2};
    aim_model *m = SENT;
    aim_status s = aim_model_create(NULL, 4, d, &m);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_create__zero_dim) {
    UNUSED;
    const size_t d[2] = {3, 0};
    aim_model *m = SENT;
    aim_status s = aim_model_create(NULL, 2, d, &m);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_create__overflow) {
    UNUSED;
    const size_t d[2] = {SIZE_MAX / 2, 3};
    aim_model *m = SENT;
    aim_status s = aim_model_create(NULL, 2, d, &m);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_create__allocator_missing_function) {
    UNUSED;
    const size_t d[1] = {IN};
    aim_model *m = SENT;
    aim_status s = aim_model_create(&incomplete_allocator, 1, d, &m);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_free__null) {
    UNUSED;
    aim_model_free(NULL);
    return AIM_OK;
}
CASE(t_aim_model_add_dense__null_model) {
    UNUSED;
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, 3, AIM_ACT_RELU), AIM_OK);
    return aim_model_add_dense(NULL, &dc);
}
CASE(t_aim_model_add_dense__null_config) {
    aim_status s = aim_model_add_dense(f->m_unc, NULL);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    return s;
}
CASE(t_aim_model_add_dense__zero_units) {
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, 3, AIM_ACT_RELU), AIM_OK);
    dc.units = 0;
    aim_status s = aim_model_add_dense(f->m_unc, &dc);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    assert_int_equal(aim_model_output_size(f->m_unc), OUT);
    return s;
}
CASE(t_aim_model_add_dense__unknown_activation) {
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, 3, AIM_ACT_RELU), AIM_OK);
    dc.activation = (aim_activation)99;
    aim_status s = aim_model_add_dense(f->m_unc, &dc);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    return s;
}
CASE(t_aim_model_add_dense__unknown_init) {
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, 3, AIM_ACT_RELU), AIM_OK);
    dc.init = (aim_init)99;
    aim_status s = aim_model_add_dense(f->m_unc, &dc);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    return s;
}
CASE(t_aim_model_add_dense__after_compile) {
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, 3, AIM_ACT_RELU), AIM_OK);
    aim_status s = aim_model_add_dense(f->m, &dc);
    assert_int_equal(aim_model_layer_count(f->m), 2);
    assert_int_equal(aim_model_output_size(f->m), OUT);
    return s;
}
CASE(t_aim_model_add_dense__parameter_count_overflow) {
    /* IN * units weights overflow size_t. */
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, SIZE_MAX / 2, AIM_ACT_RELU), AIM_OK);
    aim_status s = aim_model_add_dense(f->m_unc, &dc);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    return s;
}
CASE(t_aim_model_add_activation__null_model) {
    UNUSED;
    return aim_model_add_activation(NULL, AIM_ACT_RELU, 0.0f);
}
CASE(t_aim_model_add_activation__unknown_activation) {
    aim_status s = aim_model_add_activation(f->m_unc, (aim_activation)99, 0.0f);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    return s;
}
CASE(t_aim_model_add_activation__negative_enum) {
    aim_status s = aim_model_add_activation(f->m_unc, (aim_activation)-1, 0.0f);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    return s;
}
CASE(t_aim_model_add_activation__after_compile) {
    aim_status s = aim_model_add_activation(f->m, AIM_ACT_RELU, 0.0f);
    assert_int_equal(aim_model_layer_count(f->m), 2);
    return s;
}
/* Convolution and pooling: m_img_unc's current shape is 2 x 5 x 5. Every
 * refused add leaves the layer count at 0. */
static aim_status conv_with(fx *f, aim_model *m, void (*edit)(aim_conv2d_config *)) {
    aim_conv2d_config c;
    size_t layers = aim_model_layer_count(m);
    assert_int_equal(aim_conv2d_config_init(&c, 3, 3, 3, AIM_ACT_RELU), AIM_OK);
    if (edit) edit(&c);
    aim_status s = aim_model_add_conv2d(m, &c);
    if (s != AIM_OK) assert_int_equal(aim_model_layer_count(m), layers);
    (void)f;
    return s;
}
static void ed_zero_filters(aim_conv2d_config *c) { c->filters = 0; }
static void ed_zero_kernel(aim_conv2d_config *c) { c->kernel_w = 0; }
static void ed_zero_stride(aim_conv2d_config *c) { c->stride_h = 0; }
static void ed_zero_dilation(aim_conv2d_config *c) { c->dilation_w = 0; }
static void ed_zero_groups(aim_conv2d_config *c) { c->groups = 0; }
static void ed_bad_padding(aim_conv2d_config *c) { c->padding = (aim_padding)99; }
static void ed_bad_activation(aim_conv2d_config *c) { c->activation = (aim_activation)99; }
static void ed_bad_init(aim_conv2d_config *c) { c->init = (aim_init)99; }
static void ed_groups_3(aim_conv2d_config *c) { c->groups = 3; } /* 2 input channels */
static void ed_kernel_6(aim_conv2d_config *c) { c->kernel_h = 6; }
static void ed_dilation_3(aim_conv2d_config *c) { c->dilation_h = 3; } /* extent 7 > 5 */
static void ed_dilation_huge(aim_conv2d_config *c) { c->dilation_h = SIZE_MAX; }
static void ed_pad_overflow(aim_conv2d_config *c) {
    c->padding = AIM_PAD_EXPLICIT;
    c->pad_top = SIZE_MAX / 2;
    c->pad_bottom = SIZE_MAX / 2 + 2;
}
static void ed_huge_stride_same(aim_conv2d_config *c) {
    c->padding = AIM_PAD_SAME;
    c->stride_h = c->stride_w = SIZE_MAX;
}

CASE(t_aim_conv2d_config_init__null) {
    UNUSED;
    return aim_conv2d_config_init(NULL, 3, 3, 3, AIM_ACT_RELU);
}
CASE(t_aim_model_add_conv2d__null_model) { return conv_with(f, NULL, NULL); }
CASE(t_aim_model_add_conv2d__null_config) { return aim_model_add_conv2d(f->m_img_unc, NULL); }
CASE(t_aim_model_add_conv2d__zero_filters) { return conv_with(f, f->m_img_unc, ed_zero_filters); }
CASE(t_aim_model_add_conv2d__zero_kernel) { return conv_with(f, f->m_img_unc, ed_zero_kernel); }
CASE(t_aim_model_add_conv2d__zero_stride) { return conv_with(f, f->m_img_unc, ed_zero_stride); }
CASE(t_aim_model_add_conv2d__zero_dilation) { return conv_with(f, f->m_img_unc, ed_zero_dilation); }
CASE(t_aim_model_add_conv2d__zero_groups) { return conv_with(f, f->m_img_unc, ed_zero_groups); }
CASE(t_aim_model_add_conv2d__unknown_padding) { return conv_with(f, f->m_img_unc, ed_bad_padding); }
CASE(t_aim_model_add_conv2d__unknown_activation) { return conv_with(f, f->m_img_unc, ed_bad_activation); }
CASE(t_aim_model_add_conv2d__unknown_init) { return conv_with(f, f->m_img_unc, ed_bad_init); }
CASE(t_aim_model_add_conv2d__input_not_rank_3) { return conv_with(f, f->m_unc, NULL); }
CASE(t_aim_model_add_conv2d__groups_do_not_divide_channels) {
    return conv_with(f, f->m_img_unc, ed_groups_3);
}
CASE(t_aim_model_add_conv2d__kernel_taller_than_input) { return conv_with(f, f->m_img_unc, ed_kernel_6); }
CASE(t_aim_model_add_conv2d__dilated_kernel_taller_than_input) {
    return conv_with(f, f->m_img_unc, ed_dilation_3);
}
CASE(t_aim_model_add_conv2d__dilation_overflow) { return conv_with(f, f->m_img_unc, ed_dilation_huge); }
CASE(t_aim_model_add_conv2d__padding_overflow) { return conv_with(f, f->m_img_unc, ed_pad_overflow); }
CASE(t_aim_model_add_conv2d__after_compile) { return conv_with(f, f->m_img, NULL); }
static void ed_fused_softmax(aim_conv2d_config *c) { c->activation = AIM_ACT_SOFTMAX; }
CASE(t_aim_model_add_conv2d__fused_softmax) {
    /* The axis of a softmax over C x H x W is ambiguous: refused, with a message. */
    aim_status s = conv_with(f, f->m_img_unc, ed_fused_softmax);
    assert_int_equal(aim_model_layer_count(f->m_img_unc), 0);
    assert_non_null(strstr(aim_model_last_error(f->m_img_unc), "softmax"));
    return s;
}
CASE(t_aim_model_add_conv2d__huge_stride_same_padding) {
    /* Valid: "same" with a stride beyond the input gives one output pixel. */
    size_t rank = 0, dims[AIM_MAX_RANK] = {0};
    aim_status s = conv_with(f, f->m_img_unc, ed_huge_stride_same);
    if (s == AIM_OK) {
        assert_int_equal(aim_model_layer_shape(f->m_img_unc, 0, &rank, dims), AIM_OK);
        assert_int_equal(rank, 3);
        assert_int_equal(dims[0], 3);
        assert_int_equal(dims[1], 1);
        assert_int_equal(dims[2], 1);
    }
    return s;
}

typedef aim_status (*pool_add)(aim_model *, const aim_pool2d_config *);
static aim_status pool_with(aim_model *m, pool_add add, size_t k, size_t stride, size_t pad) {
    aim_pool2d_config c;
    size_t layers = aim_model_layer_count(m);
    assert_int_equal(aim_pool2d_config_init(&c, k, k), AIM_OK);
    c.stride_h = stride;
    c.pad_h = c.pad_w = pad;
    aim_status s = add(m, &c);
    if (s != AIM_OK) assert_int_equal(aim_model_layer_count(m), layers);
    return s;
}
CASE(t_aim_pool2d_config_init__null) {
    UNUSED;
    return aim_pool2d_config_init(NULL, 2, 2);
}
CASE(t_aim_model_add_max_pool2d__null_model) {
    UNUSED;
    aim_pool2d_config c;
    assert_int_equal(aim_pool2d_config_init(&c, 2, 2), AIM_OK);
    return aim_model_add_max_pool2d(NULL, &c);
}
CASE(t_aim_model_add_max_pool2d__null_config) { return aim_model_add_max_pool2d(f->m_img_unc, NULL); }
CASE(t_aim_model_add_max_pool2d__zero_kernel) { return pool_with(f->m_img_unc, aim_model_add_max_pool2d, 0, 1, 0); }
CASE(t_aim_model_add_max_pool2d__zero_stride) { return pool_with(f->m_img_unc, aim_model_add_max_pool2d, 2, 0, 0); }
CASE(t_aim_model_add_max_pool2d__input_not_rank_3) { return pool_with(f->m_unc, aim_model_add_max_pool2d, 2, 2, 0); }
CASE(t_aim_model_add_max_pool2d__window_larger_than_input) {
    return pool_with(f->m_img_unc, aim_model_add_max_pool2d, 6, 6, 0);
}
CASE(t_aim_model_add_max_pool2d__padding_over_half_window) {
    return pool_with(f->m_img_unc, aim_model_add_max_pool2d, 2, 2, 2);
}
CASE(t_aim_model_add_max_pool2d__after_compile) { return pool_with(f->m_img, aim_model_add_max_pool2d, 2, 2, 0); }
CASE(t_aim_model_add_avg_pool2d__null_model) {
    UNUSED;
    aim_pool2d_config c;
    assert_int_equal(aim_pool2d_config_init(&c, 2, 2), AIM_OK);
    return aim_model_add_avg_pool2d(NULL, &c);
}
CASE(t_aim_model_add_avg_pool2d__null_config) { return aim_model_add_avg_pool2d(f->m_img_unc, NULL); }
CASE(t_aim_model_add_avg_pool2d__zero_kernel) { return pool_with(f->m_img_unc, aim_model_add_avg_pool2d, 0, 1, 0); }
CASE(t_aim_model_add_avg_pool2d__input_not_rank_3) { return pool_with(f->m_unc, aim_model_add_avg_pool2d, 2, 2, 0); }
CASE(t_aim_model_add_avg_pool2d__window_larger_than_input) {
    return pool_with(f->m_img_unc, aim_model_add_avg_pool2d, 6, 6, 0);
}
CASE(t_aim_model_add_avg_pool2d__padding_over_half_window) {
    return pool_with(f->m_img_unc, aim_model_add_avg_pool2d, 3, 3, 2);
}
CASE(t_aim_model_add_avg_pool2d__after_compile) { return pool_with(f->m_img, aim_model_add_avg_pool2d, 2, 2, 0); }
CASE(t_aim_model_add_global_avg_pool2d__null) {
    UNUSED;
    return aim_model_add_global_avg_pool2d(NULL);
}
CASE(t_aim_model_add_global_avg_pool2d__input_not_rank_3) {
    aim_status s = aim_model_add_global_avg_pool2d(f->m_unc);
    assert_int_equal(aim_model_layer_count(f->m_unc), 2);
    return s;
}
CASE(t_aim_model_add_global_avg_pool2d__after_compile) { return aim_model_add_global_avg_pool2d(f->m_img); }
CASE(t_aim_model_add_flatten__null) {
    UNUSED;
    return aim_model_add_flatten(NULL);
}
CASE(t_aim_model_add_flatten__after_compile) {
    aim_status s = aim_model_add_flatten(f->m_img);
    assert_int_equal(aim_model_layer_count(f->m_img), 4);
    return s;
}
CASE(t_aim_model_layer_shape__null_model) {
    UNUSED;
    size_t r = 0, d[AIM_MAX_RANK];
    return aim_model_layer_shape(NULL, 0, &r, d);
}
CASE(t_aim_model_layer_shape__null_rank) {
    size_t d[AIM_MAX_RANK];
    return aim_model_layer_shape(f->m_img, 0, NULL, d);
}
CASE(t_aim_model_layer_shape__null_dims) {
    size_t r = 77;
    aim_status s = aim_model_layer_shape(f->m_img, 0, &r, NULL);
    assert_int_equal(r, 77);
    return s;
}
CASE(t_aim_model_layer_shape__layer_out_of_range) {
    size_t r = 77, d[AIM_MAX_RANK] = {77, 77, 77, 77};
    aim_status s = aim_model_layer_shape(f->m_img, 4, &r, d);
    assert_int_equal(r, 77);
    assert_int_equal(d[0], 77);
    return s;
}
CASE(t_aim_model_layer_shape__no_layers) {
    size_t r = 77, d[AIM_MAX_RANK];
    return aim_model_layer_shape(f->m_img_unc, 0, &r, d);
}

CASE(t_aim_model_compile__null_model) {
    UNUSED;
    return aim_model_compile(NULL, NULL);
}
CASE(t_aim_model_compile__zero_max_batch) {
    aim_compile_config cc;
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = 0;
    aim_status s = aim_model_compile(f->m_unc, &cc);
    /* Still not compiled: a valid compile must now work. */
    assert_int_equal(aim_model_forward(f->m_unc, AIM_MODE_TRAIN, f->x, XN(1), 1), AIM_ERR_INVALID_STATE);
    assert_int_equal(aim_model_compile(f->m_unc, NULL), AIM_OK);
    return s;
}
CASE(t_aim_model_compile__twice) {
    float before[64];
    size_t n = snapshot_params(f->m, before);
    aim_status s = aim_model_compile(f->m, NULL);
    assert_params_equal(f->m, before, n);
    return s;
}
CASE(t_aim_model_compile__no_layers) { return aim_model_compile(f->m_empty, NULL); }
CASE(t_aim_model_compile__activation_size_overflow) {
    /* max_batch * units * sizeof(float) overflows. */
    aim_compile_config cc;
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = SIZE_MAX / 2;
    aim_status s = aim_model_compile(f->m_unc, &cc);
    assert_int_equal(aim_model_compile(f->m_unc, NULL), AIM_OK);
    return s;
}

CASE(t_aim_model_layer_shape__input_node) {
    /* Positive control: AIM_MODEL_INPUT(k) gives input k's shape. */
    size_t r = 0, d[AIM_MAX_RANK] = {0};
    aim_status s = aim_model_layer_shape(f->m_img, AIM_MODEL_INPUT(0), &r, d);
    assert_int_equal(r, 3);
    assert_int_equal(d[0], 2);
    assert_int_equal(d[1], 5);
    assert_int_equal(d[2], 5);
    CHECK_OK(aim_model_layer_shape(f->m_2in, AIM_MODEL_INPUT(1), &r, d));
    assert_int_equal(r, 1);
    assert_int_equal(d[0], IN2);
    return s;
}
CASE(t_aim_model_layer_shape__input_out_of_range) {
    size_t r = 77, d[AIM_MAX_RANK] = {77, 77, 77, 77};
    aim_status s = aim_model_layer_shape(f->m_img, AIM_MODEL_INPUT(1), &r, d);
    assert_int_equal(r, 77);
    assert_int_equal(d[0], 77);
    return s;
}

/* ------------------------------------------------------------------------- */
/* Graphs: inputs, the current node, merges, outputs                         */
/* ------------------------------------------------------------------------- */

/* m_unc is IN -> L0 Dense 5 relu -> L1 Dense OUT, not compiled, one input.
 * A refused graph call leaves the layer count, the inputs, the outputs and
 * the current node as they were. */
typedef struct graph_state {
    size_t layers, inputs, outputs, current;
} graph_state;
static graph_state graph_state_of(const aim_model *m) {
    graph_state g = {aim_model_layer_count(m), aim_model_input_count(m), aim_model_output_count(m), 0};
    CHECK_OK(aim_model_last_node(m, &g.current));
    return g;
}
static aim_status graph_checked(const aim_model *m, graph_state before, aim_status s) {
    if (s != AIM_OK) {
        graph_state after = graph_state_of(m);
        assert_int_equal(after.layers, before.layers);
        assert_int_equal(after.inputs, before.inputs);
        assert_int_equal(after.outputs, before.outputs);
        assert_int_equal(after.current, before.current);
        assert_true(strlen(aim_model_last_error(m)) > 0);
    }
    return s;
}
/* The state is taken before the call (the comma operator orders them). */
static graph_state graph_before;
#define GRAPH_CALL(m, call) (graph_before = graph_state_of(m), graph_checked((m), graph_before, (call)))

/* ---- add_input ---- */
static aim_status add_input_checked(aim_model *m, size_t rank, const size_t *dims) {
    size_t node = 77;
    aim_status s = GRAPH_CALL(m, aim_model_add_input(m, rank, dims, &node));
    if (s != AIM_OK) assert_int_equal(node, 77);
    return s;
}
CASE(t_aim_model_add_input__null_model) {
    UNUSED;
    const size_t d[1] = {2};
    size_t node = 77;
    return aim_model_add_input(NULL, 1, d, &node);
}
CASE(t_aim_model_add_input__null_dims) { return add_input_checked(f->m_unc, 1, NULL); }
CASE(t_aim_model_add_input__null_node) {
    const size_t d[1] = {2};
    return GRAPH_CALL(f->m_unc, aim_model_add_input(f->m_unc, 1, d, NULL));
}
CASE(t_aim_model_add_input__rank_0) {
    const size_t d[1] = {2};
    return add_input_checked(f->m_unc, 0, d);
}
CASE(t_aim_model_add_input__rank_4) {
    const size_t d[4] = {1, 2, 2, 2};
    return add_input_checked(f->m_unc, 4, d);
}
CASE(t_aim_model_add_input__zero_dim) {
    const size_t d[2] = {3, 0};
    return add_input_checked(f->m_unc, 2, d);
}
CASE(t_aim_model_add_input__overflow) {
    const size_t d[2] = {SIZE_MAX / 2, 3};
    return add_input_checked(f->m_unc, 2, d);
}
CASE(t_aim_model_add_input__over_int_max_floats) {
    const size_t d[2] = {(size_t)INT_MAX / 2 + 1, 2};
    return add_input_checked(f->m_unc, 2, d);
}
CASE(t_aim_model_add_input__after_compile) {
    const size_t d[1] = {2};
    return add_input_checked(f->m, 1, d);
}
CASE(t_aim_model_add_input__too_many_inputs) {
    /* AIM_MAX_NODE_INPUTS inputs in all are accepted, one more is not. */
    const size_t d[1] = {2};
    size_t node = 0;
    for (size_t k = 1; k < AIM_MAX_NODE_INPUTS; k++) {
        CHECK_OK(aim_model_add_input(f->m_unc, 1, d, &node));
        assert_int_equal(node, AIM_MODEL_INPUT(k));
    }
    assert_int_equal(aim_model_input_count(f->m_unc), AIM_MAX_NODE_INPUTS);
    return add_input_checked(f->m_unc, 1, d);
}
CASE(t_aim_model_add_input__ok) {
    /* Positive control: input 1, with its shape; the current node does not move. */
    const size_t d[3] = {3, 4, 5};
    size_t node = 77, cur = 77, r = 0, got[AIM_MAX_RANK] = {0};
    aim_status s = aim_model_add_input(f->m_unc, 3, d, &node);
    assert_int_equal(node, AIM_MODEL_INPUT(1));
    assert_int_equal(aim_model_input_count(f->m_unc), 2);
    assert_int_equal(aim_model_input_size(f->m_unc), IN); /* input 0's */
    CHECK_OK(aim_model_last_node(f->m_unc, &cur));
    assert_int_equal(cur, 1);
    CHECK_OK(aim_model_layer_shape(f->m_unc, node, &r, got));
    assert_int_equal(r, 3);
    assert_memory_equal(got, d, sizeof d);
    return s;
}

/* ---- last_node, continue_from ---- */
CASE(t_aim_model_last_node__null_model) {
    UNUSED;
    size_t n = 77;
    aim_status s = aim_model_last_node(NULL, &n);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_last_node__null_node) { return aim_model_last_node(f->m_unc, NULL); }
CASE(t_aim_model_last_node__follows_the_builders) {
    /* Positive control: input 0 without layers, then the last layer, then
     * the node given to continue_from, then the layer added after it. */
    size_t n = 77;
    aim_status s = aim_model_last_node(f->m_empty, &n);
    assert_int_equal(n, AIM_MODEL_INPUT(0));
    CHECK_OK(aim_model_last_node(f->m_unc, &n));
    assert_int_equal(n, 1);
    CHECK_OK(aim_model_continue_from(f->m_unc, 0));
    CHECK_OK(aim_model_last_node(f->m_unc, &n));
    assert_int_equal(n, 0);
    CHECK_OK(aim_model_add_activation(f->m_unc, AIM_ACT_TANH, 0.0f));
    CHECK_OK(aim_model_last_node(f->m_unc, &n));
    assert_int_equal(n, 2);
    CHECK_OK(aim_model_last_node(f->m, &n)); /* compiled: still answers */
    assert_int_equal(n, 1);
    return s;
}
CASE(t_aim_model_continue_from__null_model) {
    UNUSED;
    return aim_model_continue_from(NULL, 0);
}
CASE(t_aim_model_continue_from__layer_out_of_range) {
    return GRAPH_CALL(f->m_unc, aim_model_continue_from(f->m_unc, 2));
}
CASE(t_aim_model_continue_from__huge_layer_index) {
    return GRAPH_CALL(f->m_unc, aim_model_continue_from(f->m_unc, SIZE_MAX / 2));
}
CASE(t_aim_model_continue_from__input_out_of_range) {
    return GRAPH_CALL(f->m_unc, aim_model_continue_from(f->m_unc, AIM_MODEL_INPUT(1)));
}
CASE(t_aim_model_continue_from__after_compile) { return GRAPH_CALL(f->m, aim_model_continue_from(f->m, 0)); }
CASE(t_aim_model_continue_from__input_0_ok) {
    /* Positive control: a branch from the input; the next layer reads IN features. */
    aim_dense_config dc;
    size_t r = 0, d[AIM_MAX_RANK];
    aim_status s = aim_model_continue_from(f->m_unc, AIM_MODEL_INPUT(0));
    CHECK_OK(aim_dense_config_init(&dc, 7, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(f->m_unc, &dc));
    CHECK_OK(aim_model_layer_shape(f->m_unc, 2, &r, d));
    assert_int_equal(d[0], 7);
    const size_t cat[2] = {1, 2};
    CHECK_OK(aim_model_add_concat(f->m_unc, cat, ARRAY_LEN(cat), 0));
    CHECK_OK(aim_model_compile(f->m_unc, NULL));
    size_t off = 0, wc = 0, bc = 0;
    CHECK_OK(aim_model_layer_parameters(f->m_unc, 2, &off, &wc, &bc));
    assert_int_equal(wc, (size_t)7 * IN);
    return s;
}

/* ---- add_add ---- */
static aim_status add_checked(aim_model *m, const size_t *nodes, size_t count) {
    return GRAPH_CALL(m, aim_model_add_add(m, nodes, count));
}
static size_t node0_times[AIM_MAX_NODE_INPUTS + 1]; /* all 0: node 0, as many times as asked */
CASE(t_aim_model_add_add__null_model) {
    UNUSED;
    const size_t n[2] = {0, 1};
    return aim_model_add_add(NULL, n, 2);
}
CASE(t_aim_model_add_add__null_nodes) { return add_checked(f->m_unc, NULL, 2); }
CASE(t_aim_model_add_add__count_0) { return add_checked(f->m_unc, node0_times, 0); }
CASE(t_aim_model_add_add__count_1) { return add_checked(f->m_unc, node0_times, 1); }
CASE(t_aim_model_add_add__count_above_max) { return add_checked(f->m_unc, node0_times, AIM_MAX_NODE_INPUTS + 1); }
CASE(t_aim_model_add_add__count_size_max) { return add_checked(f->m_unc, node0_times, SIZE_MAX); }
CASE(t_aim_model_add_add__count_max_ok) {
    /* Positive control: AIM_MAX_NODE_INPUTS inputs, one node repeated, is allowed. */
    aim_status s = add_checked(f->m_unc, node0_times, AIM_MAX_NODE_INPUTS);
    assert_int_equal(aim_model_layer_count(f->m_unc), 3);
    assert_int_equal(aim_model_output_size(f->m_unc), 5);
    return s;
}
CASE(t_aim_model_add_add__node_does_not_exist) {
    const size_t n[2] = {0, 2};
    return add_checked(f->m_unc, n, ARRAY_LEN(n));
}
CASE(t_aim_model_add_add__input_does_not_exist) {
    const size_t n[2] = {AIM_MODEL_INPUT(0), AIM_MODEL_INPUT(1)};
    return add_checked(f->m_unc, n, ARRAY_LEN(n));
}
CASE(t_aim_model_add_add__shapes_differ) {
    /* Layer 0 gives 5 features, layer 1 gives OUT = 3: the message says so. */
    const size_t n[2] = {0, 1};
    aim_status s = add_checked(f->m_unc, n, ARRAY_LEN(n));
    print_message("add of (5) and (3): \"%s\"\n", aim_model_last_error(f->m_unc));
    return s;
}
CASE(t_aim_model_add_add__third_shape_differs) {
    const size_t n[3] = {0, 0, 1};
    return add_checked(f->m_unc, n, ARRAY_LEN(n));
}
CASE(t_aim_model_add_add__same_size_other_shape) {
    /* m_img_unc: conv 3x3x3 (27 floats) and its flatten (27): same size, not the same shape. */
    aim_conv2d_config cc;
    CHECK_OK(aim_conv2d_config_init(&cc, 3, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(f->m_img_unc, &cc));
    CHECK_OK(aim_model_add_flatten(f->m_img_unc));
    const size_t n[2] = {0, 1};
    return add_checked(f->m_img_unc, n, ARRAY_LEN(n));
}
CASE(t_aim_model_add_add__input_and_layer_differ) {
    const size_t n[2] = {AIM_MODEL_INPUT(0), 0}; /* (IN) and (5) */
    return add_checked(f->m_unc, n, ARRAY_LEN(n));
}
CASE(t_aim_model_add_add__after_compile) {
    const size_t n[2] = {0, 0};
    return add_checked(f->m, n, ARRAY_LEN(n));
}
CASE(t_aim_model_add_add__residual_ok) {
    /* Positive control: x + dense(x) over the input, then it becomes the current node. */
    aim_dense_config dc;
    size_t cur = 0;
    CHECK_OK(aim_model_continue_from(f->m_unc, AIM_MODEL_INPUT(0)));
    CHECK_OK(aim_dense_config_init(&dc, IN, AIM_ACT_TANH));
    CHECK_OK(aim_model_add_dense(f->m_unc, &dc));
    const size_t n[2] = {2, AIM_MODEL_INPUT(0)};
    aim_status s = add_checked(f->m_unc, n, ARRAY_LEN(n));
    CHECK_OK(aim_model_last_node(f->m_unc, &cur));
    assert_int_equal(cur, 3);
    assert_int_equal(aim_model_output_size(f->m_unc), IN); /* the last layer is the default output */
    return s;
}

/* ---- add_concat ---- */
static aim_status concat_checked(aim_model *m, const size_t *nodes, size_t count, size_t axis) {
    return GRAPH_CALL(m, aim_model_add_concat(m, nodes, count, axis));
}
CASE(t_aim_model_add_concat__null_model) {
    UNUSED;
    const size_t n[2] = {0, 1};
    return aim_model_add_concat(NULL, n, 2, 0);
}
CASE(t_aim_model_add_concat__null_nodes) { return concat_checked(f->m_unc, NULL, 2, 0); }
CASE(t_aim_model_add_concat__count_0) { return concat_checked(f->m_unc, node0_times, 0, 0); }
CASE(t_aim_model_add_concat__count_1) { return concat_checked(f->m_unc, node0_times, 1, 0); }
CASE(t_aim_model_add_concat__count_above_max) {
    return concat_checked(f->m_unc, node0_times, AIM_MAX_NODE_INPUTS + 1, 0);
}
CASE(t_aim_model_add_concat__count_size_max) { return concat_checked(f->m_unc, node0_times, SIZE_MAX, 0); }
CASE(t_aim_model_add_concat__node_does_not_exist) {
    const size_t n[2] = {0, 5};
    return concat_checked(f->m_unc, n, ARRAY_LEN(n), 0);
}
CASE(t_aim_model_add_concat__input_does_not_exist) {
    const size_t n[2] = {0, AIM_MODEL_INPUT(3)};
    return concat_checked(f->m_unc, n, ARRAY_LEN(n), 0);
}
CASE(t_aim_model_add_concat__axis_equal_to_rank) {
    const size_t n[2] = {0, 1}; /* rank 1 */
    return concat_checked(f->m_unc, n, ARRAY_LEN(n), 1);
}
CASE(t_aim_model_add_concat__axis_size_max) {
    const size_t n[2] = {0, 1};
    return concat_checked(f->m_unc, n, ARRAY_LEN(n), SIZE_MAX);
}
CASE(t_aim_model_add_concat__axis_3_of_an_image) {
    const size_t n[2] = {AIM_MODEL_INPUT(0), AIM_MODEL_INPUT(0)}; /* rank 3 */
    return concat_checked(f->m_img_unc, n, ARRAY_LEN(n), 3);
}
CASE(t_aim_model_add_concat__ranks_differ) {
    /* The 2x5x5 input and its flatten (50). */
    CHECK_OK(aim_model_add_flatten(f->m_img_unc));
    const size_t n[2] = {AIM_MODEL_INPUT(0), 0};
    return concat_checked(f->m_img_unc, n, ARRAY_LEN(n), 0);
}
CASE(t_aim_model_add_concat__other_sizes_differ) {
    /* Channels of a 3x3x3 conv output and the 2x5x5 input: H and W differ. */
    aim_conv2d_config cc;
    CHECK_OK(aim_conv2d_config_init(&cc, 3, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(f->m_img_unc, &cc));
    const size_t n[2] = {0, AIM_MODEL_INPUT(0)};
    aim_status s = concat_checked(f->m_img_unc, n, ARRAY_LEN(n), 0);
    print_message("concat of (3, 3, 3) and (2, 5, 5) on axis 0: \"%s\"\n", aim_model_last_error(f->m_img_unc));
    return s;
}
CASE(t_aim_model_add_concat__after_compile) {
    const size_t n[2] = {0, 1};
    return concat_checked(f->m, n, ARRAY_LEN(n), 0);
}
CASE(t_aim_model_add_concat__features_ok) {
    /* Positive control: (5) and (3) on axis 0 give (8). */
    const size_t n[2] = {0, 1};
    aim_status s = concat_checked(f->m_unc, n, ARRAY_LEN(n), 0);
    assert_int_equal(aim_model_layer_count(f->m_unc), 3);
    assert_int_equal(aim_model_output_size(f->m_unc), 8);
    return s;
}
CASE(t_aim_model_add_concat__image_axes_ok) {
    /* Positive control: the 2x5x5 input with itself: axis 0 gives 4x5x5, axis 1 gives 2x10x5, axis 2 2x5x10. */
    const size_t n[2] = {AIM_MODEL_INPUT(0), AIM_MODEL_INPUT(0)};
    size_t r = 0, d[AIM_MAX_RANK] = {0};
    aim_status s = concat_checked(f->m_img_unc, n, ARRAY_LEN(n), 0);
    CHECK_OK(aim_model_layer_shape(f->m_img_unc, 0, &r, d));
    assert_int_equal(r, 3);
    assert_true(d[0] == 4 && d[1] == 5 && d[2] == 5);
    CHECK_OK(aim_model_add_concat(f->m_img_unc, n, ARRAY_LEN(n), 1));
    CHECK_OK(aim_model_layer_shape(f->m_img_unc, 1, &r, d));
    assert_true(d[0] == 2 && d[1] == 10 && d[2] == 5);
    CHECK_OK(aim_model_add_concat(f->m_img_unc, n, ARRAY_LEN(n), 2));
    CHECK_OK(aim_model_layer_shape(f->m_img_unc, 2, &r, d));
    assert_true(d[0] == 2 && d[1] == 5 && d[2] == 10);
    return s;
}

/* ---- set_outputs ---- */
static aim_status set_outputs_checked(aim_model *m, const size_t *nodes, const float *w, size_t count) {
    return GRAPH_CALL(m, aim_model_set_outputs(m, nodes, w, count));
}
CASE(t_aim_model_set_outputs__null_model) {
    UNUSED;
    const size_t n[1] = {1};
    return aim_model_set_outputs(NULL, n, NULL, 1);
}
CASE(t_aim_model_set_outputs__null_nodes) { return set_outputs_checked(f->m_unc, NULL, NULL, 1); }
CASE(t_aim_model_set_outputs__count_0) {
    const size_t n[1] = {1};
    return set_outputs_checked(f->m_unc, n, NULL, 0);
}
CASE(t_aim_model_set_outputs__count_above_max) {
    /* AIM_MAX_NODE_INPUTS + 1 distinct layers exist, but that is too many outputs. */
    size_t n[AIM_MAX_NODE_INPUTS + 1];
    for (size_t k = 0; k < ARRAY_LEN(n); k++) {
        if (k >= 2) CHECK_OK(aim_model_add_activation(f->m_unc, AIM_ACT_IDENTITY, 0.0f));
        n[k] = k;
    }
    return set_outputs_checked(f->m_unc, n, NULL, ARRAY_LEN(n));
}
CASE(t_aim_model_set_outputs__count_size_max) {
    const size_t n[2] = {0, 1};
    return set_outputs_checked(f->m_unc, n, NULL, SIZE_MAX);
}
CASE(t_aim_model_set_outputs__input_node) {
    const size_t n[2] = {1, AIM_MODEL_INPUT(0)};
    return set_outputs_checked(f->m_unc, n, NULL, ARRAY_LEN(n));
}
CASE(t_aim_model_set_outputs__duplicate) {
    const size_t n[2] = {1, 1};
    return set_outputs_checked(f->m_unc, n, NULL, ARRAY_LEN(n));
}
CASE(t_aim_model_set_outputs__node_does_not_exist) {
    const size_t n[2] = {1, 2};
    return set_outputs_checked(f->m_unc, n, NULL, ARRAY_LEN(n));
}
CASE(t_aim_model_set_outputs__nan_weight) {
    const size_t n[2] = {0, 1};
    const float w[2] = {1.0f, NAN};
    return set_outputs_checked(f->m_unc, n, w, ARRAY_LEN(n));
}
CASE(t_aim_model_set_outputs__inf_weight) {
    const size_t n[2] = {0, 1};
    const float w[2] = {INFINITY, 1.0f};
    return set_outputs_checked(f->m_unc, n, w, ARRAY_LEN(n));
}
CASE(t_aim_model_set_outputs__after_compile) {
    const size_t n[2] = {0, 1};
    return set_outputs_checked(f->m, n, NULL, ARRAY_LEN(n));
}
CASE(t_aim_model_set_outputs__ok) {
    /* Positive control: two outputs, in the order given; output 0 is now layer 1... */
    const size_t n[2] = {1, 0};
    size_t node = 77;
    aim_status s = set_outputs_checked(f->m_unc, n, NULL, ARRAY_LEN(n));
    assert_int_equal(aim_model_output_count(f->m_unc), 2);
    CHECK_OK(aim_model_output_node(f->m_unc, 1, &node));
    assert_int_equal(node, 0);
    assert_int_equal(aim_model_output_size(f->m_unc), OUT);
    /* ...and it may be named again before compile (here: layer 0 first). */
    const size_t again[2] = {0, 1};
    CHECK_OK(aim_model_set_outputs(f->m_unc, again, NULL, ARRAY_LEN(again)));
    assert_int_equal(aim_model_output_size(f->m_unc), 5);
    CHECK_OK(aim_model_compile(f->m_unc, NULL));
    return s;
}

/* ---- input_count, output_count, output_node ---- */
CASE(t_aim_model_input_count__null) {
    UNUSED;
    assert_int_equal(aim_model_input_count(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_model_input_count__values) {
    assert_int_equal(aim_model_input_count(f->m_empty), 1);
    assert_int_equal(aim_model_input_count(f->m), 1);
    assert_int_equal(aim_model_input_count(f->m_2in), 2);
    assert_int_equal(aim_model_input_count(f->m_g2), 2);
    return AIM_OK;
}
CASE(t_aim_model_output_count__null) {
    UNUSED;
    assert_int_equal(aim_model_output_count(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_model_output_count__no_layers) {
    assert_int_equal(aim_model_output_count(f->m_empty), 0);
    return AIM_OK;
}
CASE(t_aim_model_output_count__values) {
    assert_int_equal(aim_model_output_count(f->m), 1);
    assert_int_equal(aim_model_output_count(f->m_unc), 1);
    assert_int_equal(aim_model_output_count(f->m_2in), 1);
    assert_int_equal(aim_model_output_count(f->m_2out), 2);
    assert_int_equal(aim_model_output_count(f->m_g2), 2);
    return AIM_OK;
}
CASE(t_aim_model_output_node__null_model) {
    UNUSED;
    size_t n = 77;
    aim_status s = aim_model_output_node(NULL, 0, &n);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_output_node__null_node) { return aim_model_output_node(f->m, 0, NULL); }
CASE(t_aim_model_output_node__out_of_range) {
    size_t n = 77;
    aim_status s = aim_model_output_node(f->m_2out, 2, &n);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_output_node__no_layers) {
    size_t n = 77;
    aim_status s = aim_model_output_node(f->m_empty, 0, &n);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_output_node__values) {
    size_t n = 77;
    aim_status s = aim_model_output_node(f->m, 0, &n);
    assert_int_equal(n, 1);
    CHECK_OK(aim_model_output_node(f->m_2out, 0, &n));
    assert_int_equal(n, 1);
    CHECK_OK(aim_model_output_node(f->m_2out, 1, &n));
    assert_int_equal(n, 2);
    CHECK_OK(aim_model_output_node(f->m_g2, 1, &n));
    assert_int_equal(n, GRAPH2_LAYERS - 1);
    return s;
}

/* ---- compile of a graph ---- */
CASE(t_aim_model_compile__dangling_layer) {
    /* L0 -> L1, and L0 -> L2: L2 is the default output, L1 feeds nothing. */
    aim_dense_config dc;
    CHECK_OK(aim_model_continue_from(f->m_unc, 0));
    CHECK_OK(aim_dense_config_init(&dc, 2, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(f->m_unc, &dc));
    aim_status s = aim_model_compile(f->m_unc, NULL);
    const char *msg = aim_model_last_error(f->m_unc);
    print_message("dangling layer 1: \"%s\"\n", msg);
    if (!strstr(msg, "layer 1")) fail_msg("message \"%s\" should name layer 1", msg);
    /* Still not compiled; naming L1 an output too makes it valid. */
    assert_int_equal(aim_model_forward(f->m_unc, AIM_MODE_TRAIN, f->x, XN(1), 1), AIM_ERR_INVALID_STATE);
    const size_t outs[2] = {1, 2};
    CHECK_OK(aim_model_set_outputs(f->m_unc, outs, NULL, ARRAY_LEN(outs)));
    CHECK_OK(aim_model_compile(f->m_unc, NULL));
    return s;
}
CASE(t_aim_model_compile__unused_input) {
    const size_t d[1] = {3};
    size_t node = 0;
    CHECK_OK(aim_model_add_input(f->m_unc, 1, d, &node));
    aim_status s = aim_model_compile(f->m_unc, NULL);
    const char *msg = aim_model_last_error(f->m_unc);
    print_message("unused input 1: \"%s\"\n", msg);
    if (!strstr(msg, "input 1")) fail_msg("message \"%s\" should name input 1", msg);
    return s;
}
CASE(t_aim_model_compile__output_feeding_a_layer_ok) {
    /* Positive control: an output may also feed other layers (L0 is output 1 and feeds L1). */
    const size_t outs[2] = {1, 0};
    CHECK_OK(aim_model_set_outputs(f->m_unc, outs, NULL, ARRAY_LEN(outs)));
    return aim_model_compile(f->m_unc, NULL);
}

/* ------------------------------------------------------------------------- */
/* Forward, output, losses, backward                                         */
/* ------------------------------------------------------------------------- */

CASE(t_aim_model_forward__null_model) { return aim_model_forward(NULL, AIM_MODE_TRAIN, f->x, XN(1), 1); }
CASE(t_aim_model_forward__null_input) { return aim_model_forward(f->m, AIM_MODE_TRAIN, NULL, XN(1), 1); }
CASE(t_aim_model_forward__null_input_count_0) { return aim_model_forward(f->m, AIM_MODE_TRAIN, NULL, 0, 1); }
CASE(t_aim_model_forward__zero_batch) { return aim_model_forward(f->m, AIM_MODE_TRAIN, f->x, 0, 0); }
CASE(t_aim_model_forward__unknown_mode) { return aim_model_forward(f->m, (aim_mode)99, f->x, XN(1), 1); }
CASE(t_aim_model_forward__batch_above_max_batch) {
    aim_status s = aim_model_forward(f->m, AIM_MODE_TRAIN, f->x, XN(MAXB + 1), MAXB + 1);
    /* No forward happened. */
    const float *o = NULL;
    size_t n = 0;
    assert_int_equal(aim_model_output(f->m, 0, &o, &n), AIM_ERR_INVALID_STATE);
    return s;
}
CASE(t_aim_model_forward__huge_batch) {
    return aim_model_forward(f->m, AIM_MODE_INFERENCE, f->x, ARRAY_LEN(f->x), SIZE_MAX);
}
CASE(t_aim_model_forward__not_compiled) { return aim_model_forward(f->m_unc, AIM_MODE_TRAIN, f->x, XN(1), 1); }
CASE(t_aim_model_forward__no_layers) { return aim_model_forward(f->m_empty, AIM_MODE_TRAIN, f->x, XN(1), 1); }

/* A forward of f->m whose count is wrong, after a valid forward of batch 2:
 * refused, it leaves that forward's output (values and count) in place, and
 * a backward still differentiates it. */
static aim_status forward_count_checked(fx *f, aim_mode mode, size_t count, size_t batch) {
    const float *o = NULL;
    size_t n = 0;
    float before[YN(2)];
    fwd(f->m, f, 2);
    CHECK_OK(aim_model_output(f->m, 0, &o, &n));
    assert_int_equal(n, YN(2));
    memcpy(before, o, sizeof before);
    aim_status s = aim_model_forward(f->m, mode, f->x + 1, count, batch); /* other data */
    if (s != AIM_OK) {
        CHECK_OK(aim_model_output(f->m, 0, &o, &n));
        assert_int_equal(n, YN(2));
        assert_memory_equal(o, before, sizeof before);
        CHECK_OK(aim_model_backward(f->m, f->grads, YN(2)));
    }
    return s;
}
CASE(t_aim_model_forward__count_one_too_few) { return forward_count_checked(f, AIM_MODE_TRAIN, XN(2) - 1, 2); }
CASE(t_aim_model_forward__count_one_too_many) { return forward_count_checked(f, AIM_MODE_TRAIN, XN(2) + 1, 2); }
CASE(t_aim_model_forward__count_zero) { return forward_count_checked(f, AIM_MODE_TRAIN, 0, 2); }
CASE(t_aim_model_forward__count_size_max) { return forward_count_checked(f, AIM_MODE_INFERENCE, SIZE_MAX, 2); }
CASE(t_aim_model_forward__count_of_one_sample_for_batch_2) {
    return forward_count_checked(f, AIM_MODE_TRAIN, XN(1), 2);
}
CASE(t_aim_model_forward__count_of_batch_3_for_batch_2) {
    return forward_count_checked(f, AIM_MODE_TRAIN, XN(3), 2);
}
CASE(t_aim_model_forward__count_of_whole_buffer) {
    /* The count must be exactly batch x input size, not the room of a larger buffer. */
    return forward_count_checked(f, AIM_MODE_TRAIN, ARRAY_LEN(f->x), 2);
}
/* A count whose byte size wraps around to that of the right count: count *
 * sizeof(float) == need * sizeof(float) modulo SIZE_MAX + 1. */
#define BYTES_WRAP(need) ((need) + SIZE_MAX / sizeof(float) + 1)
CASE(t_aim_model_forward__count_whose_bytes_wrap_to_need) {
    return forward_count_checked(f, AIM_MODE_TRAIN, BYTES_WRAP(XN(2)), 2);
}
CASE(t_aim_model_forward__image_count_one_too_few) {
    /* m_img's input is 2 x 5 x 5: the message prints the shape as (C, H, W). */
    aim_status s = aim_model_forward(f->m_img, AIM_MODE_TRAIN, f->x, 2 * 50 - 1, 2);
    const char *msg = aim_model_last_error(f->m_img);
    if (!strstr(msg, "holds 99 floats") || !strstr(msg, "(2, 5, 5)") || !strstr(msg, "needs 100"))
        fail_msg("message \"%s\" should say \"holds 99 floats\", \"(2, 5, 5)\" and \"needs 100\"", msg);
    return s;
}
CASE(t_aim_model_forward__lstm_count_of_one_step) {
    /* m_lstm's sample is SEQ_T x IN: IN floats per sample is one step only. */
    return aim_model_forward(f->m_lstm, AIM_MODE_TRAIN, f->x, 2 * IN, 2);
}
CASE(t_aim_model_forward__two_input_model) {
    /* One buffer for a model with two inputs: refused, pointing to forward_multi. */
    aim_status s = aim_model_forward(f->m_2in, AIM_MODE_TRAIN, f->x, XN(1), 1);
    const float *o = NULL;
    size_t n = 0;
    assert_int_equal(aim_model_output(f->m_2in, 0, &o, &n), AIM_ERR_INVALID_STATE);
    assert_non_null(strstr(aim_model_last_error(f->m_2in), "forward_multi"));
    return s;
}
CASE(t_aim_model_forward__two_output_model_ok) {
    /* Positive control: one input and two outputs is a single-input forward. */
    const float *o = NULL;
    size_t n = 0;
    aim_status s = aim_model_forward(f->m_2out, AIM_MODE_INFERENCE, f->x, XN(3), 3);
    CHECK_OK(aim_model_output(f->m_2out, 0, &o, &n));
    assert_int_equal(n, YN(3));
    CHECK_OK(aim_model_output(f->m_2out, 1, &o, &n));
    assert_int_equal(n, 3 * OUT2);
    return s;
}

/* ---- forward_multi: m_2in has inputs {IN} and {IN2} ---- */
static aim_status forward_multi_2in(fx *f, aim_mode mode, const float *x0, const float *x1, size_t n0, size_t n1,
                                    size_t n_inputs, size_t batch) {
    const float *const in[3] = {x0, x1, f->xa};
    const size_t counts[3] = {n0, n1, XN(batch)};
    aim_status s = aim_model_forward_multi(f->m_2in, mode, in, counts, n_inputs, batch);
    if (s != AIM_OK) {
        const float *o = NULL;
        size_t n = 0;
        assert_int_equal(aim_model_output(f->m_2in, 0, &o, &n), AIM_ERR_INVALID_STATE); /* no forward happened */
    }
    return s;
}
#define MULTI_OK(batch) f->x, f->xb, XN(batch), (size_t)(batch) * IN2
CASE(t_aim_model_forward_multi__null_model) {
    const float *const in[1] = {f->x};
    const size_t counts[1] = {XN(1)};
    return aim_model_forward_multi(NULL, AIM_MODE_TRAIN, in, counts, 1, 1);
}
CASE(t_aim_model_forward_multi__null_inputs) {
    const size_t counts[2] = {XN(1), IN2};
    return aim_model_forward_multi(f->m_2in, AIM_MODE_TRAIN, NULL, counts, 2, 1);
}
CASE(t_aim_model_forward_multi__null_input_counts) {
    const float *const in[2] = {f->x, f->xb};
    return aim_model_forward_multi(f->m_2in, AIM_MODE_TRAIN, in, NULL, 2, 1);
}
CASE(t_aim_model_forward_multi__null_input_1) {
    return forward_multi_2in(f, AIM_MODE_TRAIN, f->x, NULL, XN(1), IN2, 2, 1);
}
CASE(t_aim_model_forward_multi__null_input_0) {
    return forward_multi_2in(f, AIM_MODE_TRAIN, NULL, f->xb, XN(1), IN2, 2, 1);
}
CASE(t_aim_model_forward_multi__n_inputs_1) { return forward_multi_2in(f, AIM_MODE_TRAIN, MULTI_OK(1), 1, 1); }
CASE(t_aim_model_forward_multi__n_inputs_3) { return forward_multi_2in(f, AIM_MODE_TRAIN, MULTI_OK(1), 3, 1); }
CASE(t_aim_model_forward_multi__n_inputs_0) { return forward_multi_2in(f, AIM_MODE_TRAIN, MULTI_OK(1), 0, 1); }
CASE(t_aim_model_forward_multi__n_inputs_size_max) {
    return forward_multi_2in(f, AIM_MODE_TRAIN, MULTI_OK(1), SIZE_MAX, 1);
}
CASE(t_aim_model_forward_multi__count_0_one_too_few) {
    return forward_multi_2in(f, AIM_MODE_TRAIN, f->x, f->xb, XN(2) - 1, 2 * IN2, 2, 2);
}
CASE(t_aim_model_forward_multi__count_1_one_too_few) {
    aim_status s = forward_multi_2in(f, AIM_MODE_TRAIN, f->x, f->xb, XN(2), 2 * IN2 - 1, 2, 2);
    const char *msg = aim_model_last_error(f->m_2in);
    if (!strstr(msg, "input 1 holds 3 floats") || !strstr(msg, "needs 4"))
        fail_msg("message \"%s\" should say \"input 1 holds 3 floats\" and \"needs 4\"", msg);
    return s;
}
CASE(t_aim_model_forward_multi__count_1_one_too_many) {
    return forward_multi_2in(f, AIM_MODE_TRAIN, f->x, f->xb, XN(2), 2 * IN2 + 1, 2, 2);
}
CASE(t_aim_model_forward_multi__count_1_size_max) {
    return forward_multi_2in(f, AIM_MODE_INFERENCE, f->x, f->xb, XN(2), SIZE_MAX, 2, 2);
}
CASE(t_aim_model_forward_multi__counts_swapped) {
    /* Each count is checked against its own input: IN2 floats for input 0 and IN for input 1 are wrong. */
    return forward_multi_2in(f, AIM_MODE_TRAIN, f->x, f->xb, IN2, XN(1), 2, 1);
}
CASE(t_aim_model_forward_multi__zero_batch) {
    return forward_multi_2in(f, AIM_MODE_TRAIN, f->x, f->xb, 0, 0, 2, 0);
}
CASE(t_aim_model_forward_multi__batch_above_max_batch) {
    return forward_multi_2in(f, AIM_MODE_TRAIN, MULTI_OK(MAXB + 1), 2, MAXB + 1);
}
CASE(t_aim_model_forward_multi__unknown_mode) { return forward_multi_2in(f, (aim_mode)99, MULTI_OK(1), 2, 1); }
CASE(t_aim_model_forward_multi__not_compiled) {
    const float *const in[1] = {f->x};
    const size_t counts[1] = {XN(1)};
    return aim_model_forward_multi(f->m_unc, AIM_MODE_TRAIN, in, counts, 1, 1);
}
CASE(t_aim_model_forward_multi__one_input_model_as_forward) {
    /* Positive control: on a one-input model, forward_multi is forward. */
    const float *const in[1] = {f->x};
    const size_t counts[1] = {XN(3)};
    const float *o = NULL;
    size_t n = 0;
    float ref[YN(3)];
    CHECK_OK(aim_model_forward(f->m, AIM_MODE_INFERENCE, f->x, XN(3), 3));
    CHECK_OK(aim_model_output(f->m, 0, &o, &n));
    memcpy(ref, o, sizeof ref);
    aim_status s = aim_model_forward_multi(f->m, AIM_MODE_INFERENCE, in, counts, ARRAY_LEN(in), 3);
    CHECK_OK(aim_model_output(f->m, 0, &o, &n));
    assert_int_equal(n, YN(3));
    assert_memory_equal(o, ref, sizeof ref);
    return s;
}
CASE(t_aim_model_forward_multi__two_inputs_ok) {
    /* Positive control: both inputs matter (changing input 1 changes the output). */
    const float *o = NULL;
    size_t n = 0;
    float ref[YN(2)];
    aim_status s = forward_multi_2in(f, AIM_MODE_INFERENCE, MULTI_OK(2), 2, 2);
    CHECK_OK(aim_model_output(f->m_2in, 0, &o, &n));
    assert_int_equal(n, YN(2));
    memcpy(ref, o, sizeof ref);
    CHECK_OK(forward_multi_2in(f, AIM_MODE_INFERENCE, f->x, f->xb + 2 * IN2, XN(2), 2 * IN2, 2, 2));
    CHECK_OK(aim_model_output(f->m_2in, 0, &o, &n));
    assert_memory_not_equal(o, ref, sizeof ref);
    return s;
}

CASE(t_aim_model_output__null_model) {
    UNUSED;
    const float *o = NULL;
    size_t n = 0;
    return aim_model_output(NULL, 0, &o, &n);
}
CASE(t_aim_model_output__null_data) {
    size_t n = 77;
    fwd(f->m, f, 2);
    aim_status s = aim_model_output(f->m, 0, NULL, &n);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_output__null_count) {
    /* The count is required: a caller must know how many floats it may read. */
    const float *o = SENT;
    fwd(f->m, f, 2);
    aim_status s = aim_model_output(f->m, 0, &o, NULL);
    assert_ptr_equal(o, SENT);
    return s;
}
CASE(t_aim_model_output__output_out_of_range) {
    const float *o = SENT;
    size_t n = 77;
    fwd(f->m, f, 2);
    aim_status s = aim_model_output(f->m, 1, &o, &n);
    assert_ptr_equal(o, SENT);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_output__output_size_max) {
    const float *o = SENT;
    size_t n = 77;
    fwd(f->m, f, 2);
    aim_status s = aim_model_output(f->m, SIZE_MAX, &o, &n);
    assert_ptr_equal(o, SENT);
    return s;
}
CASE(t_aim_model_output__output_2_of_two) {
    const float *o = SENT;
    size_t n = 77;
    fwd(f->m_2out, f, 2);
    aim_status s = aim_model_output(f->m_2out, 2, &o, &n);
    assert_ptr_equal(o, SENT);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_output__second_output_ok) {
    /* Positive control: output 1 of m_2out has OUT2 floats per sample. */
    const float *o = NULL;
    size_t n = 0;
    fwd(f->m_2out, f, 2);
    aim_status s = aim_model_output(f->m_2out, 1, &o, &n);
    assert_non_null(o);
    assert_int_equal(n, 2 * OUT2);
    return s;
}
CASE(t_aim_model_output__before_forward) {
    const float *o = SENT;
    size_t n = 77;
    aim_status s = aim_model_output(f->m, 0, &o, &n);
    assert_ptr_equal(o, SENT);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_output__not_compiled) {
    const float *o = NULL;
    size_t n = 0;
    return aim_model_output(f->m_unc, 0, &o, &n);
}

/* A loss call after a valid forward of batch 2: refused, it keeps no
 * gradient (backward from the kept gradients is refused) and leaves the loss
 * out-parameter alone. */
static aim_status loss_checked(fx *f, aim_model *m, size_t output, aim_loss_kind kind, const float *t, size_t n) {
    float l = -1.0f;
    fwd(m, f, 2);
    aim_status s = aim_model_loss(m, output, kind, t, n, &l);
    snprintf(f->msg, sizeof f->msg, "%s", aim_model_last_error(m));
    if (s != AIM_OK) {
        assert_true(l == -1.0f);
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
    }
    return s;
}
CASE(t_aim_model_loss__null_model) {
    float l = 0;
    return aim_model_loss(NULL, 0, AIM_LOSS_MSE, f->targets, YN(2), &l);
}
CASE(t_aim_model_loss__null_targets) { return loss_checked(f, f->m, 0, AIM_LOSS_MSE, NULL, YN(2)); }
CASE(t_aim_model_loss__null_targets_count_0) { return loss_checked(f, f->m, 0, AIM_LOSS_MSE, NULL, 0); }
CASE(t_aim_model_loss__null_loss_out) {
    fwd(f->m, f, 2);
    return aim_model_loss(f->m, 0, AIM_LOSS_MSE, f->targets, YN(2), NULL);
}
CASE(t_aim_model_loss__unknown_kind) { return loss_checked(f, f->m, 0, (aim_loss_kind)99, f->targets, YN(2)); }
CASE(t_aim_model_loss__batch_differs_from_forward) {
    /* Targets of 3 samples after a forward of 2. */
    return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, YN(3));
}
CASE(t_aim_model_loss__count_one_too_few) { return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, YN(2) - 1); }
CASE(t_aim_model_loss__count_one_too_many) { return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, YN(2) + 1); }
CASE(t_aim_model_loss__count_zero) { return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, 0); }
CASE(t_aim_model_loss__count_size_max) { return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, SIZE_MAX); }
CASE(t_aim_model_loss__count_whose_bytes_wrap_to_need) {
    return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, BYTES_WRAP(YN(2)));
}
CASE(t_aim_model_loss__count_of_one_sample) {
    /* The per-sample size, as a caller who forgot the batch would pass. */
    return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, OUT);
}
CASE(t_aim_model_loss__output_out_of_range) { return loss_checked(f, f->m, 1, AIM_LOSS_MSE, f->targets, YN(2)); }
CASE(t_aim_model_loss__output_size_max) {
    return loss_checked(f, f->m, SIZE_MAX, AIM_LOSS_MSE, f->targets, YN(2));
}
CASE(t_aim_model_loss__count_of_the_other_output) {
    /* Output 1 of m_2out has OUT2 floats per sample; OUT is output 0's. */
    return loss_checked(f, f->m_2out, 1, AIM_LOSS_MSE, f->targets, YN(2));
}
CASE(t_aim_model_loss__second_output_ok) {
    /* Positive control: the loss of output 1 alone is enough for a backward. */
    aim_status s = loss_checked(f, f->m_2out, 1, AIM_LOSS_MSE, f->targets, 2 * OUT2);
    CHECK_OK(aim_model_backward(f->m_2out, NULL, 0));
    return s;
}
CASE(t_aim_model_loss__before_forward) {
    float l = -1.0f;
    aim_status s = aim_model_loss(f->m, 0, AIM_LOSS_MSE, f->targets, YN(2), &l);
    assert_true(l == -1.0f);
    return s;
}
CASE(t_aim_model_loss__not_compiled) {
    float l = -1.0f;
    return aim_model_loss(f->m_unc, 0, AIM_LOSS_MSE, f->targets, YN(2), &l);
}
CASE(t_aim_model_loss__nan_target) {
    /* The loss is NaN: refused, and no gradient is kept for backward. */
    f->targets[1] = NAN;
    return loss_checked(f, f->m, 0, AIM_LOSS_MSE, f->targets, YN(2));
}
CASE(t_aim_model_loss__nan_output) {
    float l = -1.0f;
    f->x[0] = NAN; /* m_lin has no activation, so the NaN reaches the output */
    fwd(f->m_lin, f, 2);
    return aim_model_loss(f->m_lin, 0, AIM_LOSS_BCE_WITH_LOGITS, f->targets, YN(2), &l);
}

/* A loss_sparse call after a valid forward of `batch`: refused, it keeps no gradient. */
static aim_status sparse_checked(fx *f, aim_model *m, size_t batch, size_t output, const int32_t *labels, size_t n) {
    float l = -1.0f;
    fwd(m, f, batch);
    aim_status s = aim_model_loss_sparse(m, output, labels, n, &l);
    snprintf(f->msg, sizeof f->msg, "%s", aim_model_last_error(m));
    if (s != AIM_OK) {
        assert_true(l == -1.0f);
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
    }
    return s;
}
CASE(t_aim_model_loss_sparse__null_model) {
    float l = 0;
    return aim_model_loss_sparse(NULL, 0, f->labels, 2, &l);
}
CASE(t_aim_model_loss_sparse__null_labels) { return sparse_checked(f, f->m, 2, 0, NULL, 2); }
CASE(t_aim_model_loss_sparse__null_loss_out) {
    fwd(f->m, f, 2);
    return aim_model_loss_sparse(f->m, 0, f->labels, 2, NULL);
}
CASE(t_aim_model_loss_sparse__label_out_of_range) {
    /* The message gives the label, its position and the range. */
    f->labels[1] = OUT;
    aim_status s = sparse_checked(f, f->m, 2, 0, f->labels, 2);
    const char *msg = f->msg;
    if (!strstr(msg, "label 3 at position 1 lies outside [0, 3)"))
        fail_msg("message \"%s\" should say \"label 3 at position 1 lies outside [0, 3)\"", msg);
    return s;
}
CASE(t_aim_model_loss_sparse__negative_label) {
    f->labels[0] = INT32_MIN;
    return sparse_checked(f, f->m, 2, 0, f->labels, 2);
}
CASE(t_aim_model_loss_sparse__batch_differs_from_forward) {
    /* 2 labels after a forward of 3. */
    aim_status s = sparse_checked(f, f->m, 3, 0, f->labels, 2);
    const char *msg = f->msg;
    if (!strstr(msg, "labels hold 2") || !strstr(msg, "batch is 3"))
        fail_msg("message \"%s\" should say \"labels hold 2\" and \"batch is 3\"", msg);
    return s;
}
CASE(t_aim_model_loss_sparse__count_one_too_many) { return sparse_checked(f, f->m, 2, 0, f->labels, 3); }
CASE(t_aim_model_loss_sparse__count_zero) { return sparse_checked(f, f->m, 2, 0, f->labels, 0); }
CASE(t_aim_model_loss_sparse__count_size_max) { return sparse_checked(f, f->m, 2, 0, f->labels, SIZE_MAX); }
CASE(t_aim_model_loss_sparse__count_of_whole_buffer) {
    return sparse_checked(f, f->m, 2, 0, f->labels, ARRAY_LEN(f->labels));
}
CASE(t_aim_model_loss_sparse__count_times_classes) {
    /* batch x classes, as a caller who mixed up loss and loss_sparse would pass. */
    return sparse_checked(f, f->m, 2, 0, f->labels, YN(2));
}
CASE(t_aim_model_loss_sparse__output_out_of_range) { return sparse_checked(f, f->m, 2, 1, f->labels, 2); }
CASE(t_aim_model_loss_sparse__label_of_the_other_output) {
    /* Output 1 of m_2out has OUT2 = 2 classes: label 2 (valid for output 0) is out of range. */
    f->labels[0] = 2;
    return sparse_checked(f, f->m_2out, 2, 1, f->labels, 2);
}
CASE(t_aim_model_loss_sparse__before_forward) {
    float l = -1.0f;
    return aim_model_loss_sparse(f->m, 0, f->labels, 2, &l);
}
CASE(t_aim_model_loss_sparse__not_compiled) {
    float l = -1.0f;
    return aim_model_loss_sparse(f->m_unc, 0, f->labels, 2, &l);
}
CASE(t_aim_model_loss_sparse__nan_logits) {
    f->x[IN] = NAN; /* second sample */
    return sparse_checked(f, f->m_lin, 2, 0, f->labels, 2);
}

/* ---- set_output_grad ---- */
/* A set_output_grad after a valid training forward of batch 2: refused, it keeps no gradient. */
static aim_status output_grad_checked(fx *f, aim_model *m, size_t output, const float *g, size_t n) {
    fwd(m, f, 2);
    aim_status s = aim_model_set_output_grad(m, output, g, n);
    snprintf(f->msg, sizeof f->msg, "%s", aim_model_last_error(m));
    if (s != AIM_OK) assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
    return s;
}
CASE(t_aim_model_set_output_grad__null_model) { return aim_model_set_output_grad(NULL, 0, f->grads, YN(2)); }
CASE(t_aim_model_set_output_grad__null_grad) { return output_grad_checked(f, f->m, 0, NULL, YN(2)); }
CASE(t_aim_model_set_output_grad__output_out_of_range) { return output_grad_checked(f, f->m, 1, f->grads, YN(2)); }
CASE(t_aim_model_set_output_grad__count_one_too_few) {
    return output_grad_checked(f, f->m, 0, f->grads, YN(2) - 1);
}
CASE(t_aim_model_set_output_grad__count_one_too_many) {
    return output_grad_checked(f, f->m, 0, f->grads, YN(2) + 1);
}
CASE(t_aim_model_set_output_grad__count_zero) { return output_grad_checked(f, f->m, 0, f->grads, 0); }
CASE(t_aim_model_set_output_grad__count_size_max) { return output_grad_checked(f, f->m, 0, f->grads, SIZE_MAX); }
CASE(t_aim_model_set_output_grad__count_of_the_other_output) {
    return output_grad_checked(f, f->m_2out, 1, f->grads, YN(2));
}
CASE(t_aim_model_set_output_grad__before_forward) { return aim_model_set_output_grad(f->m, 0, f->grads, YN(2)); }
CASE(t_aim_model_set_output_grad__after_inference_forward) {
    CHECK_OK(aim_model_forward(f->m, AIM_MODE_INFERENCE, f->x, XN(2), 2));
    return aim_model_set_output_grad(f->m, 0, f->grads, YN(2));
}
CASE(t_aim_model_set_output_grad__not_compiled) { return aim_model_set_output_grad(f->m_unc, 0, f->grads, YN(2)); }
CASE(t_aim_model_set_output_grad__same_as_backward_with_grad) {
    /* Positive control: set_output_grad then backward(NULL) is backward(grad). */
    float *g = NULL, ref[64];
    size_t n = 0;
    CHECK_OK(aim_model_zero_grad(f->m));
    fwd(f->m, f, 2);
    CHECK_OK(aim_model_backward(f->m, f->grads, YN(2)));
    CHECK_OK(aim_model_gradients(f->m, &g, &n));
    memcpy(ref, g, n * sizeof *g);
    CHECK_OK(aim_model_zero_grad(f->m));
    aim_status s = output_grad_checked(f, f->m, 0, f->grads, YN(2));
    CHECK_OK(aim_model_backward(f->m, NULL, 0));
    CHECK_OK(aim_model_gradients(f->m, &g, &n));
    assert_memory_equal(g, ref, n * sizeof *g);
    return s;
}

/* ---- backward ---- */
/* A backward with a gradient buffer after a valid training forward of batch 2:
 * refused, it leaves the gradients at zero. */
static aim_status backward_checked(fx *f, aim_model *m, const float *g, size_t n) {
    float *grads = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_zero_grad(m));
    fwd(m, f, 2);
    aim_status s = aim_model_backward(m, g, n);
    if (s != AIM_OK) {
        CHECK_OK(aim_model_gradients(m, &grads, &count));
        for (size_t i = 0; i < count; i++) assert_true(grads[i] == 0.0f);
    }
    return s;
}
CASE(t_aim_model_backward__null_model) {
    UNUSED;
    return aim_model_backward(NULL, NULL, 0);
}
CASE(t_aim_model_backward__before_forward) {
    float *g = NULL;
    size_t n = 0;
    aim_status s = aim_model_backward(f->m, f->grads, YN(2));
    assert_int_equal(aim_model_gradients(f->m, &g, &n), AIM_OK);
    for (size_t i = 0; i < n; i++) assert_true(g[i] == 0.0f);
    return s;
}
CASE(t_aim_model_backward__after_inference_forward) {
    assert_int_equal(aim_model_forward(f->m, AIM_MODE_INFERENCE, f->x, XN(2), 2), AIM_OK);
    return aim_model_backward(f->m, f->grads, YN(2));
}
CASE(t_aim_model_backward__no_loss_and_null_grad) {
    fwd(f->m, f, 2);
    return aim_model_backward(f->m, NULL, 0);
}
CASE(t_aim_model_backward__not_compiled) { return aim_model_backward(f->m_unc, f->grads, YN(2)); }
CASE(t_aim_model_backward__count_one_too_few) { return backward_checked(f, f->m, f->grads, YN(2) - 1); }
CASE(t_aim_model_backward__count_one_too_many) { return backward_checked(f, f->m, f->grads, YN(2) + 1); }
CASE(t_aim_model_backward__count_zero) { return backward_checked(f, f->m, f->grads, 0); }
CASE(t_aim_model_backward__count_size_max) { return backward_checked(f, f->m, f->grads, SIZE_MAX); }
CASE(t_aim_model_backward__count_of_batch_3) { return backward_checked(f, f->m, f->grads, YN(3)); }
CASE(t_aim_model_backward__count_whose_bytes_wrap_to_need) {
    return backward_checked(f, f->m, f->grads, BYTES_WRAP(YN(2)));
}
CASE(t_aim_model_backward__grad_given_to_two_output_model) {
    /* One buffer cannot be the gradient of two outputs: refused, even with output 0's count. */
    return backward_checked(f, f->m_2out, f->grads, YN(2));
}

/* ---- input_gradient ---- */
CASE(t_aim_model_input_gradient__null_model) {
    UNUSED;
    const float *g = NULL;
    size_t n = 0;
    return aim_model_input_gradient(NULL, 0, &g, &n);
}
CASE(t_aim_model_input_gradient__null_grad) {
    size_t n = 77;
    fwd(f->m_ig, f, 2);
    assert_int_equal(aim_model_backward(f->m_ig, f->grads, YN(2)), AIM_OK);
    aim_status s = aim_model_input_gradient(f->m_ig, 0, NULL, &n);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_input_gradient__null_count) {
    const float *g = SENT;
    fwd(f->m_ig, f, 2);
    assert_int_equal(aim_model_backward(f->m_ig, f->grads, YN(2)), AIM_OK);
    aim_status s = aim_model_input_gradient(f->m_ig, 0, &g, NULL);
    assert_ptr_equal(g, SENT);
    return s;
}
CASE(t_aim_model_input_gradient__input_out_of_range) {
    const float *g = SENT;
    size_t n = 77;
    fwd(f->m_ig, f, 2);
    assert_int_equal(aim_model_backward(f->m_ig, f->grads, YN(2)), AIM_OK);
    aim_status s = aim_model_input_gradient(f->m_ig, 1, &g, &n);
    assert_ptr_equal(g, SENT);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_input_gradient__count_ok) {
    /* Positive control: batch x input size floats. */
    const float *g = NULL;
    size_t n = 0;
    fwd(f->m_ig, f, 3);
    assert_int_equal(aim_model_backward(f->m_ig, f->grads, YN(3)), AIM_OK);
    aim_status s = aim_model_input_gradient(f->m_ig, 0, &g, &n);
    assert_non_null(g);
    assert_int_equal(n, XN(3));
    return s;
}
CASE(t_aim_model_input_gradient__second_input) {
    /* Positive control: m_g2's input 1, after the losses of both outputs. */
    const float *g = NULL;
    size_t n = 0;
    float l = 0;
    fwd_g2(f, AIM_MODE_TRAIN, 2);
    CHECK_OK(aim_model_loss_sparse(f->m_g2, 0, f->labels, 2, &l));
    CHECK_OK(aim_model_loss(f->m_g2, 1, AIM_LOSS_MSE, f->targets, H1(2), &l));
    CHECK_OK(aim_model_backward(f->m_g2, NULL, 0));
    aim_status s = aim_model_input_gradient(f->m_g2, 1, &g, &n);
    assert_non_null(g);
    assert_int_equal(n, G1(2));
    assert_int_equal(aim_model_input_gradient(f->m_g2, 2, &g, &n), AIM_ERR_INVALID_ARGUMENT);
    return s;
}
CASE(t_aim_model_input_gradient__not_enabled) {
    const float *g = SENT;
    size_t n = 77;
    fwd(f->m, f, 2);
    assert_int_equal(aim_model_backward(f->m, f->grads, YN(2)), AIM_OK);
    aim_status s = aim_model_input_gradient(f->m, 0, &g, &n);
    assert_ptr_equal(g, SENT);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_input_gradient__before_backward) {
    const float *g = SENT;
    size_t n = 77;
    fwd(f->m_ig, f, 2);
    aim_status s = aim_model_input_gradient(f->m_ig, 0, &g, &n);
    assert_ptr_equal(g, SENT);
    return s;
}
CASE(t_aim_model_input_gradient__not_compiled) {
    const float *g = NULL;
    size_t n = 0;
    return aim_model_input_gradient(f->m_unc, 0, &g, &n);
}

CASE(t_aim_model_zero_grad__null) {
    UNUSED;
    return aim_model_zero_grad(NULL);
}
CASE(t_aim_model_zero_grad__not_compiled) { return aim_model_zero_grad(f->m_unc); }

CASE(t_aim_model_parameters__null_model) {
    UNUSED;
    float *p = NULL;
    size_t n = 0;
    return aim_model_parameters(NULL, &p, &n);
}
CASE(t_aim_model_parameters__null_params) {
    size_t n = 77;
    aim_status s = aim_model_parameters(f->m, NULL, &n);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_parameters__null_count) {
    float *p = SENT;
    aim_status s = aim_model_parameters(f->m, &p, NULL);
    assert_ptr_equal(p, SENT);
    return s;
}
CASE(t_aim_model_parameters__not_compiled) {
    float *p = SENT;
    size_t n = 77;
    aim_status s = aim_model_parameters(f->m_unc, &p, &n);
    assert_ptr_equal(p, SENT);
    assert_int_equal(n, 77);
    return s;
}
CASE(t_aim_model_gradients__null_model) {
    UNUSED;
    float *p = NULL;
    size_t n = 0;
    return aim_model_gradients(NULL, &p, &n);
}
CASE(t_aim_model_gradients__null_grads) {
    size_t n = 0;
    return aim_model_gradients(f->m, NULL, &n);
}
CASE(t_aim_model_gradients__null_count) {
    float *p = NULL;
    return aim_model_gradients(f->m, &p, NULL);
}
CASE(t_aim_model_gradients__not_compiled) {
    float *p = SENT;
    size_t n = 77;
    aim_status s = aim_model_gradients(f->m_unc, &p, &n);
    assert_ptr_equal(p, SENT);
    return s;
}

CASE(t_aim_model_layer_parameters__null_model) {
    UNUSED;
    size_t o, w, b;
    return aim_model_layer_parameters(NULL, 0, &o, &w, &b);
}
CASE(t_aim_model_layer_parameters__null_offset) {
    size_t w, b;
    return aim_model_layer_parameters(f->m, 0, NULL, &w, &b);
}
CASE(t_aim_model_layer_parameters__null_weight_count) {
    size_t o, b;
    return aim_model_layer_parameters(f->m, 0, &o, NULL, &b);
}
CASE(t_aim_model_layer_parameters__null_bias_count) {
    size_t o, w;
    return aim_model_layer_parameters(f->m, 0, &o, &w, NULL);
}
CASE(t_aim_model_layer_parameters__layer_out_of_range) {
    size_t o = 77, w = 77, b = 77;
    aim_status s = aim_model_layer_parameters(f->m, 2, &o, &w, &b);
    assert_int_equal(o, 77);
    assert_int_equal(w, 77);
    assert_int_equal(b, 77);
    return s;
}
CASE(t_aim_model_layer_parameters__not_compiled) {
    size_t o, w, b;
    return aim_model_layer_parameters(f->m_unc, 0, &o, &w, &b);
}
CASE(t_aim_model_layer_count__null) {
    UNUSED;
    assert_int_equal(aim_model_layer_count(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_model_input_size__null) {
    UNUSED;
    assert_int_equal(aim_model_input_size(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_model_output_size__null) {
    UNUSED;
    assert_int_equal(aim_model_output_size(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_model_output_size__no_layers) {
    assert_int_equal(aim_model_output_size(f->m_empty), 0);
    assert_int_equal(aim_model_layer_count(f->m_empty), 0);
    assert_int_equal(aim_model_input_size(f->m_empty), IN);
    return AIM_OK;
}
CASE(t_aim_model_memory_size__null_model) {
    UNUSED;
    size_t b = 0;
    return aim_model_memory_size(NULL, &b);
}
CASE(t_aim_model_memory_size__null_bytes) { return aim_model_memory_size(f->m, NULL); }
CASE(t_aim_model_memory_size__not_compiled) {
    size_t b = 77;
    aim_status s = aim_model_memory_size(f->m_unc, &b);
    assert_int_equal(b, 77);
    return s;
}
CASE(t_aim_model_last_error__null) {
    UNUSED;
    assert_non_null(aim_model_last_error(NULL));
    assert_string_equal(aim_model_last_error(NULL), "");
    return AIM_OK;
}

/* ------------------------------------------------------------------------- */
/* LSTM layers and their states                                              */
/* ------------------------------------------------------------------------- */

/* Adds an LSTM (hidden LSTM_H, 1 layer unless edited) to `m`; a refused add
 * leaves the layer count as it was. */
static aim_status lstm_with(aim_model *m, void (*edit)(aim_lstm_config *)) {
    aim_lstm_config c;
    size_t layers = aim_model_layer_count(m);
    assert_int_equal(aim_lstm_config_init(&c, LSTM_H, 1), AIM_OK);
    if (edit) edit(&c);
    aim_status s = aim_model_add_lstm(m, &c);
    if (s != AIM_OK) assert_int_equal(aim_model_layer_count(m), layers);
    return s;
}
static void el_zero_hidden(aim_lstm_config *c) { c->hidden = 0; }
static void el_zero_layers(aim_lstm_config *c) { c->layers = 0; }
static void el_16_layers(aim_lstm_config *c) { c->layers = 16; }
static void el_17_layers(aim_lstm_config *c) { c->layers = 17; }
static void el_bad_init(aim_lstm_config *c) { c->init = (aim_init)99; }
static void el_negative_init(aim_lstm_config *c) { c->init = (aim_init)-1; }
static void el_hidden_overflow(aim_lstm_config *c) { c->hidden = SIZE_MAX / 8; }
/* 4 * hidden = 2^31 gates per step: over BLAS's int, though no count overflows (64-bit size_t). */
static void el_gates_over_int_max(aim_lstm_config *c) { c->hidden = (size_t)1 << 29; }
/* 4 * hidden = 2^30 fits, but the output sequence SEQ_T x hidden (x 4 gates) does not. */
static void el_sequence_over_int_max(aim_lstm_config *c) {
    c->hidden = (size_t)1 << 28;
    c->return_sequences = 1;
}

/* The last model error names the layer and contains `word`. */
static void assert_error_mentions(const aim_model *m, const char *layer, const char *word) {
    const char *msg = aim_model_last_error(m);
    if (!strstr(msg, layer) || !strstr(msg, word))
        fail_msg("message \"%s\" should name \"%s\" and say \"%s\"", msg, layer, word);
}

CASE(t_aim_lstm_config_init__null) {
    UNUSED;
    return aim_lstm_config_init(NULL, LSTM_H, 1);
}
CASE(t_aim_model_add_lstm__null_model) {
    UNUSED;
    return lstm_with(NULL, NULL);
}
CASE(t_aim_model_add_lstm__null_config) {
    aim_status s = aim_model_add_lstm(f->m_seq_unc, NULL);
    assert_int_equal(aim_model_layer_count(f->m_seq_unc), 0);
    return s;
}
CASE(t_aim_model_add_lstm__zero_hidden) { return lstm_with(f->m_seq_unc, el_zero_hidden); }
CASE(t_aim_model_add_lstm__zero_layers) { return lstm_with(f->m_seq_unc, el_zero_layers); }
CASE(t_aim_model_add_lstm__17_layers) { return lstm_with(f->m_seq_unc, el_17_layers); }
CASE(t_aim_model_add_lstm__16_layers) {
    /* Positive control: 16 stacked layers is the documented maximum. */
    aim_status s = lstm_with(f->m_seq_unc, el_16_layers);
    assert_int_equal(aim_model_layer_count(f->m_seq_unc), 1);
    return s;
}
CASE(t_aim_model_add_lstm__unknown_init) { return lstm_with(f->m_seq_unc, el_bad_init); }
CASE(t_aim_model_add_lstm__negative_init) { return lstm_with(f->m_seq_unc, el_negative_init); }
CASE(t_aim_model_add_lstm__after_rank_1_shape) {
    /* m_unc's two dense layers output rank 1: the LSTM is layer 2. */
    aim_status s = lstm_with(f->m_unc, NULL);
    assert_error_mentions(f->m_unc, "layer 2 (lstm)", "rank 1");
    return s;
}
CASE(t_aim_model_add_lstm__rank_1_input) {
    aim_status s = lstm_with(f->m_empty, NULL);
    assert_error_mentions(f->m_empty, "layer 0 (lstm)", "rank 1");
    return s;
}
CASE(t_aim_model_add_lstm__rank_3_input) {
    aim_status s = lstm_with(f->m_img_unc, NULL);
    assert_error_mentions(f->m_img_unc, "layer 0 (lstm)", "rank 3");
    return s;
}
CASE(t_aim_model_add_lstm__after_compile) { return lstm_with(f->m_lstm, NULL); }
CASE(t_aim_model_add_lstm__parameter_count_overflow) { return lstm_with(f->m_seq_unc, el_hidden_overflow); }
CASE(t_aim_model_add_lstm__gates_over_int_max) { return lstm_with(f->m_seq_unc, el_gates_over_int_max); }
CASE(t_aim_model_add_lstm__sequence_over_int_max) { return lstm_with(f->m_seq_unc, el_sequence_over_int_max); }

/* m_lstm's output at `batch` (inference), copied to `y` (batch * OUT floats). */
static void lstm_output(fx *f, size_t batch, float *y) {
    const float *o = NULL;
    size_t n = 0;
    assert_int_equal(aim_model_forward(f->m_lstm, AIM_MODE_INFERENCE, f->x, batch * SEQ_T * IN, batch), AIM_OK);
    assert_int_equal(aim_model_output(f->m_lstm, 0, &o, &n), AIM_OK);
    assert_int_equal(n, batch * OUT);
    memcpy(y, o, n * sizeof *o);
}

/* A set_state call after a valid state for batch 2 was set: a refused one
 * leaves that state in force (the same output at batch 2 as before). The
 * refused calls pass other data (c0 as h0 and so on), so a partial copy
 * would show. */
static aim_status set_state_checked(fx *f, aim_model *m, size_t layer, const float *h0, size_t h0n, const float *c0,
                                    size_t c0n, size_t batch) {
    float before[MAXB * OUT], after[MAXB * OUT];
    assert_int_equal(aim_model_lstm_set_state(f->m_lstm, 0, f->h0, ST(2), f->c0, ST(2), 2), AIM_OK);
    lstm_output(f, 2, before);
    aim_status s = aim_model_lstm_set_state(m, layer, h0, h0n, c0, c0n, batch);
    if (s != AIM_OK) {
        lstm_output(f, 2, after);
        assert_memory_equal(before, after, 2 * OUT * sizeof(float));
    }
    return s;
}
CASE(t_aim_model_lstm_set_state__null_model) {
    return aim_model_lstm_set_state(NULL, 0, f->h0, ST(1), f->c0, ST(1), 1);
}
CASE(t_aim_model_lstm_set_state__not_compiled) {
    assert_int_equal(lstm_with(f->m_seq_unc, NULL), AIM_OK); /* 1 layer of LSTM_H */
    return aim_model_lstm_set_state(f->m_seq_unc, 0, f->h0, LSTM_H, f->c0, LSTM_H, 1);
}
CASE(t_aim_model_lstm_set_state__not_an_lstm_layer) {
    aim_status s = set_state_checked(f, f->m_lstm, 1, f->h0, ST(1), f->c0, ST(1), 1); /* layer 1 is dense */
    assert_error_mentions(f->m_lstm, "layer 1", "not of kind lstm");
    return s;
}
CASE(t_aim_model_lstm_set_state__dense_model) {
    return aim_model_lstm_set_state(f->m, 0, f->h0, ST(1), f->c0, ST(1), 1);
}
CASE(t_aim_model_lstm_set_state__layer_out_of_range) {
    return set_state_checked(f, f->m_lstm, 2, f->h0, ST(1), f->c0, ST(1), 1);
}
CASE(t_aim_model_lstm_set_state__only_h0) { return set_state_checked(f, f->m_lstm, 0, f->c0, ST(2), NULL, 0, 2); }
CASE(t_aim_model_lstm_set_state__only_c0) { return set_state_checked(f, f->m_lstm, 0, NULL, 0, f->h0, ST(2), 2); }
CASE(t_aim_model_lstm_set_state__zero_batch) { return set_state_checked(f, f->m_lstm, 0, f->c0, 0, f->h0, 0, 0); }
CASE(t_aim_model_lstm_set_state__batch_above_max_batch) {
    /* The buffers' true counts (for MAXB): the batch is refused first, by name. */
    aim_status s = set_state_checked(f, f->m_lstm, 0, f->c0, ARRAY_LEN(f->c0), f->h0, ARRAY_LEN(f->h0), MAXB + 1);
    assert_error_mentions(f->m_lstm, "lstm_set_state", "max_batch");
    return s;
}
CASE(t_aim_model_lstm_set_state__h0_count_one_too_few) {
    aim_status s = set_state_checked(f, f->m_lstm, 0, f->c0, ST(3) - 1, f->h0, ST(3), 3);
    assert_error_mentions(f->m_lstm, "lstm_set_state", "29");
    return s;
}
CASE(t_aim_model_lstm_set_state__h0_count_one_too_many) {
    return set_state_checked(f, f->m_lstm, 0, f->c0, ST(3) + 1, f->h0, ST(3), 3);
}
CASE(t_aim_model_lstm_set_state__h0_count_size_max) {
    return set_state_checked(f, f->m_lstm, 0, f->c0, SIZE_MAX, f->h0, ST(3), 3);
}
CASE(t_aim_model_lstm_set_state__c0_count_one_too_many) {
    return set_state_checked(f, f->m_lstm, 0, f->c0, ST(3), f->h0, ST(3) + 1, 3);
}
CASE(t_aim_model_lstm_set_state__c0_count_one_too_few) {
    return set_state_checked(f, f->m_lstm, 0, f->c0, ST(3), f->h0, ST(3) - 1, 3);
}
CASE(t_aim_model_lstm_set_state__c0_count_size_max) {
    return set_state_checked(f, f->m_lstm, 0, f->c0, ST(3), f->h0, SIZE_MAX, 3);
}
CASE(t_aim_model_lstm_set_state__counts_zero) { return set_state_checked(f, f->m_lstm, 0, f->c0, 0, f->h0, 0, 3); }
CASE(t_aim_model_lstm_set_state__counts_of_one_layer) {
    /* batch x hidden, forgetting the stacked layers. */
    return set_state_checked(f, f->m_lstm, 0, f->c0, 3 * LSTM_H, f->h0, 3 * LSTM_H, 3);
}
CASE(t_aim_model_lstm_set_state__counts_of_whole_buffers) {
    /* The buffers hold states for MAXB; the call describes batch 3. */
    return set_state_checked(f, f->m_lstm, 0, f->c0, ARRAY_LEN(f->c0), f->h0, ARRAY_LEN(f->h0), 3);
}
CASE(t_aim_model_lstm_set_state__nan_in_h0) {
    float h[ST(3)];
    memcpy(h, f->c0, sizeof h);
    h[ST(3) - 1] = NAN; /* the last value the call may read */
    return set_state_checked(f, f->m_lstm, 0, h, ARRAY_LEN(h), f->h0, ST(3), 3);
}
CASE(t_aim_model_lstm_set_state__inf_in_c0) {
    float c[ST(3)];
    memcpy(c, f->h0, sizeof c);
    c[0] = -INFINITY;
    return set_state_checked(f, f->m_lstm, 0, f->c0, ST(3), c, ARRAY_LEN(c), 3);
}
CASE(t_aim_model_lstm_set_state__clear_with_both_null) {
    /* Positive control: NULL, NULL returns to zero states, for any batch. */
    float zero[MAXB * OUT], got[MAXB * OUT];
    lstm_output(f, 3, zero);
    assert_int_equal(aim_model_lstm_set_state(f->m_lstm, 0, f->h0, ST(3), f->c0, ST(3), 3), AIM_OK);
    lstm_output(f, 3, got);
    assert_memory_not_equal(got, zero, 3 * OUT * sizeof(float));
    aim_status s = aim_model_lstm_set_state(f->m_lstm, 0, NULL, 0, NULL, 0, 0);
    lstm_output(f, 3, got);
    assert_memory_equal(got, zero, 3 * OUT * sizeof(float));
    lstm_output(f, 1, got); /* no longer tied to batch 3 */
    return s;
}

CASE(t_aim_model_forward__batch_differs_from_lstm_state) {
    /* States set for batch 2 refuse a forward of 3, naming the layer; the
     * refused forward changes nothing: the last forward's output stays, and
     * a backward still differentiates that forward (same gradients as
     * without the refused call). */
    float *g = NULL, ref_g[512], out2[2 * OUT], ref_x[2 * SEQ_T * IN];
    const float *o = NULL, *ig = NULL;
    size_t n = 0, no = 0, ni = 0;
    assert_int_equal(aim_model_lstm_set_state(f->m_lstm, 0, f->h0, ST(2), f->c0, ST(2), 2), AIM_OK);
    assert_int_equal(aim_model_zero_grad(f->m_lstm), AIM_OK);
    fwd(f->m_lstm, f, 2);
    assert_int_equal(aim_model_backward(f->m_lstm, f->grads, YN(2)), AIM_OK);
    assert_int_equal(aim_model_gradients(f->m_lstm, &g, &n), AIM_OK);
    assert_true(n <= 512);
    memcpy(ref_g, g, n * sizeof *g);
    assert_int_equal(aim_model_input_gradient(f->m_lstm, 0, &ig, &ni), AIM_OK);
    assert_int_equal(ni, ARRAY_LEN(ref_x));
    memcpy(ref_x, ig, sizeof ref_x);

    assert_int_equal(aim_model_zero_grad(f->m_lstm), AIM_OK);
    fwd(f->m_lstm, f, 2);
    assert_int_equal(aim_model_output(f->m_lstm, 0, &o, &no), AIM_OK);
    memcpy(out2, o, sizeof out2);
    /* other data, other batch (3 sequences of SEQ_T x IN from f->x + 7) */
    aim_status s = aim_model_forward(f->m_lstm, AIM_MODE_TRAIN, f->x + 7, 3 * SEQ_T * IN, 3);
    assert_error_mentions(f->m_lstm, "layer 0 (lstm)", "batch 2");
    assert_int_equal(aim_model_output(f->m_lstm, 0, &o, &no), AIM_OK);
    assert_int_equal(no, 2 * OUT);
    assert_memory_equal(o, out2, sizeof out2);
    assert_int_equal(aim_model_backward(f->m_lstm, f->grads, YN(2)), AIM_OK);
    assert_int_equal(aim_model_gradients(f->m_lstm, &g, &n), AIM_OK);
    for (size_t i = 0; i < n; i++)
        if (g[i] != ref_g[i])
            fail_msg("the refused forward changed the next backward: gradient %zu is %.9g, not %.9g", i,
                     (double)g[i], (double)ref_g[i]);
    assert_int_equal(aim_model_input_gradient(f->m_lstm, 0, &ig, &ni), AIM_OK);
    assert_memory_equal(ig, ref_x, sizeof ref_x);
    return s;
}
CASE(t_aim_model_forward__inference_batch_differs_from_lstm_state) {
    assert_int_equal(aim_model_lstm_set_state(f->m_lstm, 0, f->h0, ST(2), f->c0, ST(2), 2), AIM_OK);
    aim_status s = aim_model_forward(f->m_lstm, AIM_MODE_INFERENCE, f->x, SEQ_T * IN, 1);
    const float *o = NULL;
    size_t n = 0;
    assert_int_equal(aim_model_output(f->m_lstm, 0, &o, &n), AIM_ERR_INVALID_STATE); /* no forward happened */
    return s;
}

/* A final_state call whose outputs start as -42: refused, they stay so.
 * hn and cn are the counts passed with h and c. */
static aim_status final_state_checked(fx *f, aim_model *m, size_t layer, int want_h, size_t hn, int want_c, size_t cn,
                                      size_t batch) {
    float h[LSTM_STATE], c[LSTM_STATE];
    for (size_t i = 0; i < LSTM_STATE; i++) h[i] = c[i] = -42.0f;
    aim_status s = aim_model_lstm_final_state(m, layer, want_h ? h : NULL, hn, want_c ? c : NULL, cn, batch);
    if (s != AIM_OK)
        for (size_t i = 0; i < LSTM_STATE; i++) assert_true(h[i] == -42.0f && c[i] == -42.0f);
    (void)f;
    return s;
}
CASE(t_aim_model_lstm_final_state__null_model) { return final_state_checked(f, NULL, 0, 1, ST(1), 1, ST(1), 1); }
CASE(t_aim_model_lstm_final_state__not_compiled) {
    assert_int_equal(lstm_with(f->m_seq_unc, NULL), AIM_OK);
    return final_state_checked(f, f->m_seq_unc, 0, 1, LSTM_H, 1, LSTM_H, 1);
}
CASE(t_aim_model_lstm_final_state__not_an_lstm_layer) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 1, 1, ST(2), 1, ST(2), 2);
}
CASE(t_aim_model_lstm_final_state__layer_out_of_range) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 7, 1, ST(2), 1, ST(2), 2);
}
CASE(t_aim_model_lstm_final_state__both_null) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 0, 0, 0, 0, 2);
}
CASE(t_aim_model_lstm_final_state__before_any_forward) {
    return final_state_checked(f, f->m_lstm, 0, 1, ST(2), 1, ST(2), 2);
}
CASE(t_aim_model_lstm_final_state__after_inference_forward) {
    /* The last forward kept no states, even though an earlier one did. */
    fwd(f->m_lstm, f, 2);
    assert_int_equal(aim_model_forward(f->m_lstm, AIM_MODE_INFERENCE, f->x, 2 * SEQ_T * IN, 2), AIM_OK);
    aim_status s = final_state_checked(f, f->m_lstm, 0, 1, ST(2), 1, ST(2), 2);
    assert_error_mentions(f->m_lstm, "lstm_final_state", "AIM_MODE_TRAIN");
    return s;
}
CASE(t_aim_model_lstm_final_state__batch_differs_from_forward) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 1, ST(3), 1, ST(3), 3);
}
CASE(t_aim_model_lstm_final_state__h_count_one_too_few) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 1, ST(2) - 1, 1, ST(2), 2);
}
CASE(t_aim_model_lstm_final_state__c_count_one_too_many) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 1, ST(2), 1, ST(2) + 1, 2);
}
CASE(t_aim_model_lstm_final_state__h_count_size_max) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 1, SIZE_MAX, 0, 0, 2);
}
CASE(t_aim_model_lstm_final_state__h_count_one_too_many) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 1, ST(2) + 1, 1, ST(2), 2);
}
CASE(t_aim_model_lstm_final_state__c_count_size_max) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 1, ST(2), 1, SIZE_MAX, 2);
}
CASE(t_aim_model_lstm_final_state__c_count_zero) {
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 0, 0, 1, 0, 2);
}
CASE(t_aim_model_lstm_final_state__counts_of_whole_buffers) {
    /* Room for MAXB sequences; the forward had 2: the count must be exact. */
    fwd(f->m_lstm, f, 2);
    return final_state_checked(f, f->m_lstm, 0, 1, LSTM_STATE, 1, LSTM_STATE, 2);
}
CASE(t_aim_model_lstm_final_state__h_only) {
    /* Positive control: either output may be NULL (its count is then
     * ignored); all [layers, 2, H] values of h are written, and lie in
     * (-1, 1) as o * tanh(c) does. */
    float h[LSTM_STATE];
    for (size_t i = 0; i < LSTM_STATE; i++) h[i] = -42.0f;
    fwd(f->m_lstm, f, 2);
    aim_status s = aim_model_lstm_final_state(f->m_lstm, 0, h, ST(2), NULL, 12345, 2);
    for (size_t i = 0; i < LSTM_L * 2 * LSTM_H; i++) assert_true(h[i] > -1.0f && h[i] < 1.0f);
    for (size_t i = LSTM_L * 2 * LSTM_H; i < LSTM_STATE; i++) assert_true(h[i] == -42.0f);
    return s;
}
CASE(t_aim_model_lstm_final_state__c_only_h_count_ignored) {
    float c[LSTM_STATE];
    for (size_t i = 0; i < LSTM_STATE; i++) c[i] = -42.0f;
    fwd(f->m_lstm, f, 2);
    aim_status s = aim_model_lstm_final_state(f->m_lstm, 0, NULL, SIZE_MAX, c, ST(2), 2);
    for (size_t i = 0; i < ST(2); i++) assert_true(c[i] != -42.0f);
    for (size_t i = ST(2); i < LSTM_STATE; i++) assert_true(c[i] == -42.0f);
    return s;
}

/* ------------------------------------------------------------------------- */
/* Workspaces and predict                                                    */
/* ------------------------------------------------------------------------- */

CASE(t_aim_workspace_size__null_model) {
    UNUSED;
    size_t b = 0;
    return aim_workspace_size(NULL, 2, &b);
}
CASE(t_aim_workspace_size__null_bytes) { return aim_workspace_size(f->m, 2, NULL); }
CASE(t_aim_workspace_size__zero_batch) {
    size_t b = 77;
    aim_status s = aim_workspace_size(f->m, 0, &b);
    assert_int_equal(b, 77);
    return s;
}
CASE(t_aim_workspace_size__not_compiled) {
    size_t b = 0;
    return aim_workspace_size(f->m_unc, 2, &b);
}
CASE(t_aim_workspace_size__overflow) {
    size_t b = 77;
    aim_status s = aim_workspace_size(f->m, SIZE_MAX / 2, &b);
    assert_int_equal(b, 77);
    return s;
}
CASE(t_aim_workspace_create__null_model) {
    UNUSED;
    aim_workspace *w = SENT;
    aim_status s = aim_workspace_create(NULL, NULL, 2, &w);
    assert_ptr_equal(w, SENT);
    return s;
}
CASE(t_aim_workspace_create__null_out) { return aim_workspace_create(f->m, NULL, 2, NULL); }
CASE(t_aim_workspace_create__zero_batch) {
    aim_workspace *w = SENT;
    aim_status s = aim_workspace_create(f->m, NULL, 0, &w);
    assert_ptr_equal(w, SENT);
    return s;
}
CASE(t_aim_workspace_create__not_compiled) {
    aim_workspace *w = SENT;
    aim_status s = aim_workspace_create(f->m_unc, NULL, 2, &w);
    assert_ptr_equal(w, SENT);
    return s;
}
CASE(t_aim_workspace_create__overflow) {
    aim_workspace *w = SENT;
    aim_status s = aim_workspace_create(f->m, NULL, SIZE_MAX / 2, &w);
    assert_ptr_equal(w, SENT);
    return s;
}
CASE(t_aim_workspace_create__allocator_missing_function) {
    aim_workspace *w = SENT;
    aim_status s = aim_workspace_create(f->m, &incomplete_allocator, 2, &w);
    assert_ptr_equal(w, SENT);
    return s;
}
CASE(t_aim_workspace_free__null) {
    UNUSED;
    aim_workspace_free(NULL);
    return AIM_OK;
}
CASE(t_aim_workspace_last_error__null) {
    UNUSED;
    assert_non_null(aim_workspace_last_error(NULL));
    assert_string_equal(aim_workspace_last_error(NULL), "");
    return AIM_OK;
}

/* ---- thread pools ---- */
CASE(t_aim_threadpool_create__null_out) {
    UNUSED;
    return aim_threadpool_create(NULL, 2, NULL);
}
CASE(t_aim_threadpool_create__too_many_threads) {
    UNUSED;
    aim_threadpool *p = SENT;
    aim_status s = aim_threadpool_create(NULL, 257, &p);
    assert_ptr_equal(p, SENT);
    return s;
}
CASE(t_aim_threadpool_create__allocator_missing_function) {
    UNUSED;
    aim_threadpool *p = SENT;
    aim_status s = aim_threadpool_create(&incomplete_allocator, 2, &p);
    assert_ptr_equal(p, SENT);
    return s;
}
CASE(t_aim_threadpool_free__null) {
    UNUSED;
    aim_threadpool_free(NULL);
    return AIM_OK;
}
CASE(t_aim_threadpool_threads__null) {
    UNUSED;
    assert_int_equal(aim_threadpool_threads(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_threadpool_set_min_work__null) {
    UNUSED;
    return aim_threadpool_set_min_work(NULL, 5);
}
CASE(t_aim_threadpool_last_error__null) {
    UNUSED;
    assert_non_null(aim_threadpool_last_error(NULL));
    assert_string_equal(aim_threadpool_last_error(NULL), "");
    return AIM_OK;
}
CASE(t_aim_model_set_threadpool__null_model) {
    UNUSED;
    return aim_model_set_threadpool(NULL, NULL);
}
CASE(t_aim_workspace_set_threadpool__null_workspace) { return aim_workspace_set_threadpool(NULL, f->m, NULL); }
CASE(t_aim_workspace_set_threadpool__null_model) { return aim_workspace_set_threadpool(f->ws, NULL, NULL); }
CASE(t_aim_workspace_set_threadpool__not_compiled) { return aim_workspace_set_threadpool(f->ws, f->m_unc, NULL); }

/* Output must stay untouched by every refused predict. */
static aim_status predict_checked(fx *f, const aim_model *m, aim_workspace *ws, const float *x, size_t xn,
                                  size_t batch, float *y, size_t yn) {
    for (size_t i = 0; i < BIG * OUT; i++) f->out[i] = -42.0f;
    aim_status s = aim_model_predict(m, ws, x, xn, batch, y, yn);
    if (s != AIM_OK) {
        for (size_t i = 0; i < BIG * OUT; i++) assert_true(f->out[i] == -42.0f);
    }
    return s;
}
CASE(t_aim_model_predict__null_model) { return predict_checked(f, NULL, f->ws, f->x, XN(1), 1, f->out, YN(1)); }
CASE(t_aim_model_predict__null_workspace) { return predict_checked(f, f->m, NULL, f->x, XN(1), 1, f->out, YN(1)); }
CASE(t_aim_model_predict__null_input) { return predict_checked(f, f->m, f->ws, NULL, XN(1), 1, f->out, YN(1)); }
CASE(t_aim_model_predict__null_output) { return aim_model_predict(f->m, f->ws, f->x, XN(1), 1, NULL, YN(1)); }
CASE(t_aim_model_predict__zero_batch) { return predict_checked(f, f->m, f->ws, f->x, 0, 0, f->out, 0); }
CASE(t_aim_model_predict__batch_above_workspace) {
    return predict_checked(f, f->m, f->ws, f->x, XN(MAXB + 1), MAXB + 1, f->out, YN(MAXB + 1));
}
/* IN -> Dense 256 relu -> Dense OUT, compiled: its activations need far more
 * than a workspace made for m (IN -> 5 -> OUT). */
static aim_model *build_wide(void) {
    aim_model *m = NULL;
    aim_dense_config dc;
    const size_t dims[1] = {IN};
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));
    CHECK_OK(aim_dense_config_init(&dc, 256, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    compile_fixture(m, 0);
    return m;
}
CASE(t_aim_model_predict__workspace_of_other_architecture) {
    /* A workspace too small for the model's planned memory is refused. */
    aim_model *wide = build_wide();
    size_t have = 0, need = 0;
    CHECK_OK(aim_workspace_size(f->m, MAXB, &have));
    CHECK_OK(aim_workspace_size(wide, MAXB, &need));
    assert_true(need > have);
    aim_status s = predict_checked(f, wide, f->ws, f->x, XN(1), 1, f->out, YN(1));
    aim_model_free(wide);
    return s;
}
CASE(t_aim_model_predict__workspace_of_slightly_larger_architecture) {
    /* m_other (IN -> 6 -> OUT) on m's workspace: accepted when its planned
     * memory fits (then with the output of its own workspace, bit for bit),
     * else refused with AIM_ERR_SHAPE_MISMATCH. */
    float ref[YN(MAXB)];
    aim_workspace *own = NULL;
    size_t have = 0, need = 0;
    CHECK_OK(aim_workspace_size(f->m, MAXB, &have));
    CHECK_OK(aim_workspace_size(f->m_other, MAXB, &need));
    aim_status s = predict_checked(f, f->m_other, f->ws, f->x, XN(MAXB), MAXB, f->out, YN(MAXB));
    print_message("workspace of %zu bytes for a model that needs %zu: %s\n", have, need, aim_status_str(s));
    if (s == AIM_ERR_SHAPE_MISMATCH) return AIM_OK;
    CHECK_OK(s);
    CHECK_OK(aim_workspace_create(f->m_other, NULL, MAXB, &own));
    CHECK_OK(aim_model_predict(f->m_other, own, f->x, XN(MAXB), MAXB, ref, ARRAY_LEN(ref)));
    aim_workspace_free(own);
    assert_memory_equal(f->out, ref, sizeof ref);
    return s;
}
CASE(t_aim_model_predict__workspace_of_larger_architecture) {
    /* A workspace serves any model whose activations and scratch fit in it,
     * so one made for a larger model is accepted and gives the same output
     * as the model's own workspace. */
    aim_workspace *w = NULL;
    float ref[YN(1)], got[YN(1)];
    assert_int_equal(aim_model_output_size(f->m), OUT);
    assert_int_equal(aim_model_predict(f->m, f->ws, f->x, XN(1), 1, ref, ARRAY_LEN(ref)), AIM_OK);
    assert_int_equal(aim_workspace_create(f->m_other, NULL, MAXB, &w), AIM_OK);
    aim_status s = aim_model_predict(f->m, w, f->x, XN(1), 1, got, ARRAY_LEN(got));
    aim_workspace_free(w);
    if (s == AIM_OK) assert_memory_equal(ref, got, sizeof ref);
    return s;
}
CASE(t_aim_model_predict__not_compiled) {
    return predict_checked(f, f->m_unc, f->ws, f->x, XN(1), 1, f->out, YN(1));
}
CASE(t_aim_model_predict__input_count_one_too_few) {
    return predict_checked(f, f->m, f->ws, f->x, XN(2) - 1, 2, f->out, YN(2));
}
CASE(t_aim_model_predict__input_count_one_too_many) {
    return predict_checked(f, f->m, f->ws, f->x, XN(2) + 1, 2, f->out, YN(2));
}
CASE(t_aim_model_predict__input_count_zero) { return predict_checked(f, f->m, f->ws, f->x, 0, 2, f->out, YN(2)); }
CASE(t_aim_model_predict__input_count_size_max) {
    return predict_checked(f, f->m, f->ws, f->x, SIZE_MAX, 2, f->out, YN(2));
}
CASE(t_aim_model_predict__input_count_whose_bytes_wrap_to_need) {
    return predict_checked(f, f->m, f->ws, f->x, BYTES_WRAP(XN(2)), 2, f->out, YN(2));
}
CASE(t_aim_model_predict__input_count_of_whole_buffer) {
    return predict_checked(f, f->m, f->ws, f->x, ARRAY_LEN(f->x), 2, f->out, YN(2));
}
CASE(t_aim_model_predict__output_count_one_too_few) {
    return predict_checked(f, f->m, f->ws, f->x, XN(2), 2, f->out, YN(2) - 1);
}
CASE(t_aim_model_predict__output_count_one_too_many) {
    return predict_checked(f, f->m, f->ws, f->x, XN(2), 2, f->out, YN(2) + 1);
}
CASE(t_aim_model_predict__output_count_zero) { return predict_checked(f, f->m, f->ws, f->x, XN(2), 2, f->out, 0); }
CASE(t_aim_model_predict__output_count_size_max) {
    return predict_checked(f, f->m, f->ws, f->x, XN(2), 2, f->out, SIZE_MAX);
}
CASE(t_aim_model_predict__output_count_of_whole_buffer) {
    return predict_checked(f, f->m, f->ws, f->x, XN(2), 2, f->out, ARRAY_LEN(f->out));
}
CASE(t_aim_model_predict__output_count_of_input_size) {
    /* The input's count given for the output (IN != OUT). */
    return predict_checked(f, f->m, f->ws, f->x, XN(2), 2, f->out, XN(2));
}
CASE(t_aim_model_predict__two_input_model) {
    return predict_checked(f, f->m_2in, f->ws_2in, f->x, XN(1), 1, f->out, YN(1));
}
CASE(t_aim_model_predict__two_output_model) {
    /* One output buffer for two outputs, even with output 0's count. */
    return predict_checked(f, f->m_2out, f->ws_2out, f->x, XN(1), 1, f->out, YN(1));
}
CASE(t_aim_model_predict__does_not_write_the_model_message) {
    /* predict takes the model as const: its refusals go to the workspace. */
    aim_status s = predict_checked(f, f->m, f->ws, f->x, XN(2) - 1, 2, f->out, YN(2));
    assert_string_equal(aim_model_last_error(f->m), "");
    assert_non_null(strstr(aim_workspace_last_error(f->ws), "predict: input holds 7 floats"));
    return s;
}

/* ---- predict_multi on m_g2: inputs {GRAPH2_IN0}, {GRAPH2_IN1}, outputs
 * {GRAPH2_OUT0}, {GRAPH2_OUT1}; ws_g2. Both outputs stay untouched when refused. ---- */
typedef struct multi_call {
    const aim_model *m;
    aim_workspace *ws;
    const float *in[3];
    size_t in_n[3];
    size_t n_inputs;
    size_t batch;
    float *out[3];
    size_t out_n[3];
    size_t n_outputs;
    int null_inputs, null_in_counts, null_outputs, null_out_counts;
} multi_call;

/* A valid call of `batch` samples, for a case to spoil. */
static multi_call multi_ok(fx *f, size_t batch) {
    multi_call c;
    memset(&c, 0, sizeof c);
    c.m = f->m_g2;
    c.ws = f->ws_g2;
    c.in[0] = f->xa;
    c.in[1] = f->xb;
    c.in[2] = f->x;
    c.in_n[0] = G0(batch);
    c.in_n[1] = G1(batch);
    c.in_n[2] = XN(batch);
    c.n_inputs = 2;
    c.batch = batch;
    c.out[0] = f->out;
    c.out[1] = f->out2;
    c.out[2] = f->buf;
    c.out_n[0] = H0(batch);
    c.out_n[1] = H1(batch);
    c.out_n[2] = 1;
    c.n_outputs = 2;
    return c;
}

static aim_status multi_run(fx *f, const multi_call *c) {
    for (size_t i = 0; i < ARRAY_LEN(f->out); i++) f->out[i] = -42.0f;
    for (size_t i = 0; i < ARRAY_LEN(f->out2); i++) f->out2[i] = -42.0f;
    aim_status s = aim_model_predict_multi(c->m, c->ws, c->null_inputs ? NULL : c->in,
                                           c->null_in_counts ? NULL : c->in_n, c->n_inputs, c->batch,
                                           c->null_outputs ? NULL : c->out, c->null_out_counts ? NULL : c->out_n,
                                           c->n_outputs);
    if (s != AIM_OK) {
        for (size_t i = 0; i < ARRAY_LEN(f->out); i++) assert_true(f->out[i] == -42.0f);
        for (size_t i = 0; i < ARRAY_LEN(f->out2); i++) assert_true(f->out2[i] == -42.0f);
    }
    return s;
}
#define MULTI_CASE(name, ...)                   \
    CASE(t_aim_model_predict_multi__##name) {   \
        multi_call c = multi_ok(f, 2);          \
        __VA_ARGS__;                            \
        return multi_run(f, &c);                \
    }
MULTI_CASE(null_model, c.m = NULL)
MULTI_CASE(null_workspace, c.ws = NULL)
MULTI_CASE(null_inputs, c.null_inputs = 1)
MULTI_CASE(null_input_counts, c.null_in_counts = 1)
MULTI_CASE(null_input_1, c.in[1] = NULL)
MULTI_CASE(null_outputs, c.null_outputs = 1)
MULTI_CASE(null_output_counts, c.null_out_counts = 1)
MULTI_CASE(null_output_0, c.out[0] = NULL)
MULTI_CASE(n_inputs_1, c.n_inputs = 1)
MULTI_CASE(n_inputs_3, c.n_inputs = 3)
MULTI_CASE(n_inputs_0, c.n_inputs = 0)
MULTI_CASE(n_inputs_size_max, c.n_inputs = SIZE_MAX)
MULTI_CASE(n_outputs_1, c.n_outputs = 1)
MULTI_CASE(n_outputs_3, c.n_outputs = 3)
MULTI_CASE(n_outputs_size_max, c.n_outputs = SIZE_MAX)
MULTI_CASE(input_count_0_one_too_few, c.in_n[0]--)
MULTI_CASE(input_count_1_one_too_many, c.in_n[1]++)
MULTI_CASE(input_count_1_size_max, c.in_n[1] = SIZE_MAX)
MULTI_CASE(input_counts_swapped, c.in_n[0] = G1(2); c.in_n[1] = G0(2))
MULTI_CASE(output_count_0_one_too_many, c.out_n[0]++)
MULTI_CASE(output_count_1_one_too_few, c.out_n[1]--)
MULTI_CASE(output_count_1_zero, c.out_n[1] = 0)
MULTI_CASE(output_count_0_size_max, c.out_n[0] = SIZE_MAX)
MULTI_CASE(output_counts_of_batch_3, c.out_n[0] = H0(3); c.out_n[1] = H1(3))
MULTI_CASE(zero_batch, c.batch = 0; c.in_n[0] = c.in_n[1] = c.out_n[0] = c.out_n[1] = 0)
MULTI_CASE(batch_above_workspace, c = multi_ok(f, MAXB + 1))
MULTI_CASE(not_compiled, c.m = f->m_unc)
CASE(t_aim_model_predict_multi__output_1_message) {
    multi_call c = multi_ok(f, 2);
    c.out_n[1] = H1(2) - 1;
    aim_status s = multi_run(f, &c);
    const char *msg = aim_workspace_last_error(f->ws_g2);
    if (!strstr(msg, "output 1 has room for 3 floats") || !strstr(msg, "needs 4"))
        fail_msg("message \"%s\" should say \"output 1 has room for 3 floats\" and \"needs 4\"", msg);
    assert_string_equal(aim_model_last_error(f->m_g2), "");
    return s;
}
CASE(t_aim_model_predict_multi__matches_forward_multi) {
    /* Positive control: both outputs, bit for bit those of an inference forward. */
    const float *o = NULL;
    size_t n = 0;
    multi_call c = multi_ok(f, 3);
    aim_status s = multi_run(f, &c);
    fwd_g2(f, AIM_MODE_INFERENCE, 3);
    CHECK_OK(aim_model_output(f->m_g2, 0, &o, &n));
    assert_int_equal(n, H0(3));
    assert_memory_equal(o, f->out, n * sizeof *o);
    CHECK_OK(aim_model_output(f->m_g2, 1, &o, &n));
    assert_int_equal(n, H1(3));
    assert_memory_equal(o, f->out2, n * sizeof *o);
    assert_true(f->out[H0(3)] == -42.0f && f->out2[H1(3)] == -42.0f); /* nothing past the counts */
    return s;
}
CASE(t_aim_model_predict_multi__one_input_one_output_model_as_predict) {
    /* Positive control: on f->m, predict_multi is predict. */
    float ref[YN(3)];
    CHECK_OK(aim_model_predict(f->m, f->ws, f->x, XN(3), 3, ref, ARRAY_LEN(ref)));
    multi_call c = multi_ok(f, 3);
    c.m = f->m;
    c.ws = f->ws;
    c.in[0] = f->x;
    c.in_n[0] = XN(3);
    c.n_inputs = 1;
    c.out_n[0] = YN(3);
    c.n_outputs = 1;
    aim_status s = multi_run(f, &c);
    assert_memory_equal(f->out, ref, sizeof ref);
    return s;
}

/* ------------------------------------------------------------------------- */
/* Optimizers and clipping                                                   */
/* ------------------------------------------------------------------------- */

static aim_status sgd_with(fx *f, float momentum, float dampening, float wd, int32_t nesterov) {
    aim_sgd_config c;
    aim_optimizer *o = SENT;
    assert_int_equal(aim_sgd_config_init(&c), AIM_OK);
    c.momentum = momentum;
    c.dampening = dampening;
    c.weight_decay = wd;
    c.nesterov = nesterov;
    aim_status s = aim_sgd_create(NULL, &c, f->nparams, &o);
    if (s == AIM_OK) aim_optimizer_free(o);
    else assert_ptr_equal(o, SENT);
    return s;
}
static aim_status adam_with(fx *f, float b1, float b2, float eps, float wd) {
    aim_adam_config c;
    aim_optimizer *o = SENT;
    assert_int_equal(aim_adam_config_init(&c), AIM_OK);
    c.beta1 = b1;
    c.beta2 = b2;
    c.epsilon = eps;
    c.weight_decay = wd;
    aim_status s = aim_adam_create(NULL, &c, f->nparams, &o);
    if (s == AIM_OK) aim_optimizer_free(o);
    else assert_ptr_equal(o, SENT);
    return s;
}

CASE(t_aim_sgd_create__null_out) { return aim_sgd_create(NULL, NULL, f->nparams, NULL); }
CASE(t_aim_sgd_create__zero_count) {
    UNUSED;
    aim_optimizer *o = SENT;
    aim_status s = aim_sgd_create(NULL, NULL, 0, &o);
    assert_ptr_equal(o, SENT);
    return s;
}
CASE(t_aim_sgd_create__negative_momentum) { return sgd_with(f, -0.5f, 0.0f, 0.0f, 0); }
CASE(t_aim_sgd_create__nan_momentum) { return sgd_with(f, NAN, 0.0f, 0.0f, 0); }
CASE(t_aim_sgd_create__dampening_above_1) { return sgd_with(f, 0.9f, 1.5f, 0.0f, 0); }
CASE(t_aim_sgd_create__negative_weight_decay) { return sgd_with(f, 0.0f, 0.0f, -0.1f, 0); }
CASE(t_aim_sgd_create__nesterov_without_momentum) { return sgd_with(f, 0.0f, 0.0f, 0.0f, 1); }
CASE(t_aim_sgd_create__nesterov_with_dampening) { return sgd_with(f, 0.9f, 0.5f, 0.0f, 1); }
CASE(t_aim_sgd_create__overflow) {
    UNUSED;
    aim_sgd_config c;
    aim_optimizer *o = SENT;
    assert_int_equal(aim_sgd_config_init(&c), AIM_OK);
    c.momentum = 0.9f; /* needs a momentum buffer of count floats */
    aim_status s = aim_sgd_create(NULL, &c, SIZE_MAX / 2, &o);
    assert_ptr_equal(o, SENT);
    return s;
}
CASE(t_aim_sgd_create__allocator_missing_function) {
    aim_optimizer *o = SENT;
    aim_status s = aim_sgd_create(&incomplete_allocator, NULL, f->nparams, &o);
    assert_ptr_equal(o, SENT);
    return s;
}
CASE(t_aim_adam_create__null_out) { return aim_adam_create(NULL, NULL, f->nparams, NULL); }
CASE(t_aim_adam_create__zero_count) {
    UNUSED;
    aim_optimizer *o = SENT;
    aim_status s = aim_adam_create(NULL, NULL, 0, &o);
    assert_ptr_equal(o, SENT);
    return s;
}
CASE(t_aim_adam_create__beta1_above_1) { return adam_with(f, 1.5f, 0.999f, 1e-8f, 0.0f); }
CASE(t_aim_adam_create__negative_beta2) { return adam_with(f, 0.9f, -0.1f, 1e-8f, 0.0f); }
CASE(t_aim_adam_create__nan_epsilon) { return adam_with(f, 0.9f, 0.999f, NAN, 0.0f); }
CASE(t_aim_adam_create__negative_weight_decay) { return adam_with(f, 0.9f, 0.999f, 1e-8f, -1.0f); }
CASE(t_aim_adam_create__overflow) {
    UNUSED;
    aim_optimizer *o = SENT;
    aim_status s = aim_adam_create(NULL, NULL, SIZE_MAX / 2, &o);
    assert_ptr_equal(o, SENT);
    return s;
}
CASE(t_aim_optimizer_free__null) {
    UNUSED;
    aim_optimizer_free(NULL);
    return AIM_OK;
}

/* A refused step must leave the parameters (bit for bit) and the step count alone. */
static aim_status step_checked(fx *f, aim_optimizer *o, float *params, const float *grads, size_t count,
                               float lr) {
    float before[64];
    memcpy(before, f->buf, sizeof before);
    uint64_t steps = aim_optimizer_steps(o);
    aim_status s = aim_optimizer_step(o, params, grads, count, lr);
    if (s != AIM_OK) {
        assert_memory_equal(f->buf, before, sizeof before);
        assert_int_equal(aim_optimizer_steps(o), steps);
    }
    return s;
}
CASE(t_aim_optimizer_step__null_optimizer) { return step_checked(f, NULL, f->buf, f->grads, f->nparams, 0.1f); }
CASE(t_aim_optimizer_step__null_params) { return step_checked(f, f->sgd, NULL, f->grads, f->nparams, 0.1f); }
CASE(t_aim_optimizer_step__null_grads) { return step_checked(f, f->sgd, f->buf, NULL, f->nparams, 0.1f); }
CASE(t_aim_optimizer_step__nan_learning_rate) {
    return step_checked(f, f->sgd, f->buf, f->grads, f->nparams, NAN);
}
CASE(t_aim_optimizer_step__inf_learning_rate) {
    return step_checked(f, f->sgd, f->buf, f->grads, f->nparams, INFINITY);
}
CASE(t_aim_optimizer_step__negative_learning_rate) {
    return step_checked(f, f->sgd, f->buf, f->grads, f->nparams, -0.1f);
}
CASE(t_aim_optimizer_step__count_smaller) {
    return step_checked(f, f->sgd, f->buf, f->grads, f->nparams - 1, 0.1f);
}
CASE(t_aim_optimizer_step__count_larger) {
    return step_checked(f, f->sgd, f->buf, f->grads, f->nparams + 1, 0.1f);
}
CASE(t_aim_optimizer_step__count_size_max) { return step_checked(f, f->sgd, f->buf, f->grads, SIZE_MAX, 0.1f); }
CASE(t_aim_optimizer_step__count_zero) { return step_checked(f, f->sgd, f->buf, f->grads, 0, 0.1f); }
CASE(t_aim_optimizer_step__adam_check_finite_nan_grad) {
    aim_adam_config c;
    aim_optimizer *o = NULL;
    assert_int_equal(aim_adam_config_init(&c), AIM_OK);
    c.check_finite = 1;
    assert_int_equal(aim_adam_create(NULL, &c, 8, &o), AIM_OK);
    f->grads[5] = NAN;
    aim_status s = step_checked(f, o, f->buf, f->grads, 8, 0.1f);
    /* Nothing changed: with a clean gradient, the next step is a first step. */
    f->grads[5] = 0.5f;
    assert_int_equal(aim_optimizer_steps(o), 0);
    assert_int_equal(aim_optimizer_step(o, f->buf, f->grads, 8, 0.1f), AIM_OK);
    assert_int_equal(aim_optimizer_steps(o), 1);
    aim_optimizer_free(o);
    return s;
}
CASE(t_aim_optimizer_step__sgd_check_finite_inf_grad) {
    aim_sgd_config c;
    aim_optimizer *o = NULL;
    assert_int_equal(aim_sgd_config_init(&c), AIM_OK);
    c.check_finite = 1;
    c.momentum = 0.9f;
    assert_int_equal(aim_sgd_create(NULL, &c, 8, &o), AIM_OK);
    f->grads[7] = -INFINITY;
    aim_status s = step_checked(f, o, f->buf, f->grads, 8, 0.1f);
    aim_optimizer_free(o);
    return s;
}
CASE(t_aim_optimizer_step_model__null_optimizer) { return aim_optimizer_step_model(NULL, f->m, 0.1f); }
CASE(t_aim_optimizer_step_model__null_model) { return aim_optimizer_step_model(f->sgd, NULL, 0.1f); }
CASE(t_aim_optimizer_step_model__not_compiled) { return aim_optimizer_step_model(f->sgd, f->m_unc, 0.1f); }
CASE(t_aim_optimizer_step_model__count_mismatch) {
    /* f->sgd was made for m's count; m_other has more parameters. */
    float before[64];
    size_t n = snapshot_params(f->m_other, before);
    aim_status s = aim_optimizer_step_model(f->sgd, f->m_other, 0.1f);
    assert_params_equal(f->m_other, before, n);
    assert_int_equal(aim_optimizer_steps(f->sgd), 0);
    return s;
}
CASE(t_aim_optimizer_step_model__nan_learning_rate) {
    float before[64];
    size_t n = snapshot_params(f->m, before);
    aim_status s = aim_optimizer_step_model(f->sgd, f->m, NAN);
    assert_params_equal(f->m, before, n);
    return s;
}
CASE(t_aim_optimizer_step_model__check_finite_nan_grad) {
    aim_adam_config c;
    aim_optimizer *o = NULL;
    float before[64], *g = NULL;
    size_t n = 0;
    assert_int_equal(aim_adam_config_init(&c), AIM_OK);
    c.check_finite = 1;
    assert_int_equal(aim_adam_create(NULL, &c, f->nparams, &o), AIM_OK);
    fwd(f->m, f, 2);
    assert_int_equal(aim_model_backward(f->m, f->grads, YN(2)), AIM_OK);
    assert_int_equal(aim_model_gradients(f->m, &g, &n), AIM_OK);
    g[n - 1] = NAN;
    n = snapshot_params(f->m, before);
    aim_status s = aim_optimizer_step_model(o, f->m, 0.01f);
    assert_params_equal(f->m, before, n);
    assert_int_equal(aim_optimizer_steps(o), 0);
    aim_optimizer_free(o);
    return s;
}
CASE(t_aim_optimizer_reset__null) {
    UNUSED;
    return aim_optimizer_reset(NULL);
}
CASE(t_aim_optimizer_steps__null) {
    UNUSED;
    assert_int_equal(aim_optimizer_steps(NULL), 0);
    return AIM_OK;
}
CASE(t_aim_optimizer_last_error__null) {
    /* Not spelled out for NULL in the header; "" like every other *_last_error. */
    UNUSED;
    assert_non_null(aim_optimizer_last_error(NULL));
    assert_string_equal(aim_optimizer_last_error(NULL), "");
    return AIM_OK;
}

/* A refused clip leaves the gradients alone. */
static aim_status clip_checked(fx *f, float *g, size_t n, float max_norm) {
    float before[64], norm = -1.0f;
    memcpy(before, f->grads, sizeof before);
    aim_status s = aim_clip_grad_norm(g, n, max_norm, &norm);
    if (s != AIM_OK) {
        assert_memory_equal(f->grads, before, sizeof before);
        assert_true(norm == -1.0f);
    }
    return s;
}
CASE(t_aim_clip_grad_norm__null_grads) { return clip_checked(f, NULL, 8, 1.0f); }
CASE(t_aim_clip_grad_norm__zero_count) { return clip_checked(f, f->grads, 0, 1.0f); }
CASE(t_aim_clip_grad_norm__zero_max_norm) { return clip_checked(f, f->grads, 8, 0.0f); }
CASE(t_aim_clip_grad_norm__negative_max_norm) { return clip_checked(f, f->grads, 8, -1.0f); }
CASE(t_aim_clip_grad_norm__nan_max_norm) { return clip_checked(f, f->grads, 8, NAN); }
CASE(t_aim_clip_grad_norm__inf_max_norm) { return clip_checked(f, f->grads, 8, INFINITY); }
CASE(t_aim_clip_grad_norm__nan_grad) {
    f->grads[3] = NAN;
    return clip_checked(f, f->grads, 8, 0.01f);
}
CASE(t_aim_clip_grad_norm__inf_grad) {
    f->grads[0] = INFINITY;
    return clip_checked(f, f->grads, 8, 0.01f);
}
CASE(t_aim_clip_grad_norm__null_norm_out_is_allowed) {
    /* Positive control: NULL norm_out is documented as allowed. */
    for (size_t i = 0; i < 4; i++) f->grads[i] = 3.0f; /* norm 6 */
    aim_status s = aim_clip_grad_norm(f->grads, 4, 1.5f, NULL);
    for (size_t i = 0; i < 4; i++) assert_float_equal(f->grads[i], 0.75f, 1e-5);
    return s;
}


/* ------------------------------------------------------------------------- */
/* Serialization                                                             */
/* ------------------------------------------------------------------------- */

CASE(t_aim_model_serialized_size__null_model) {
    UNUSED;
    size_t n = 7;
    aim_status s = aim_model_serialized_size(NULL, NULL, &n);
    assert_int_equal(n, 7);
    return s;
}
CASE(t_aim_model_serialized_size__null_bytes) { return aim_model_serialized_size(f->m, NULL, NULL); }
CASE(t_aim_model_serialized_size__not_compiled) {
    size_t n = 7;
    aim_status s = aim_model_serialized_size(f->m_unc, NULL, &n);
    assert_int_equal(n, 7);
    return s;
}
CASE(t_aim_model_serialized_size__optimizer_of_other_size) {
    aim_optimizer *o = NULL;
    size_t n = 7;
    assert_int_equal(aim_sgd_create(NULL, NULL, f->nparams + 1, &o), AIM_OK);
    aim_status s = aim_model_serialized_size(f->m, o, &n);
    aim_optimizer_free(o);
    assert_int_equal(n, 7);
    return s;
}
CASE(t_aim_model_serialize__null_buffer) {
    size_t w = 7;
    aim_status s = aim_model_serialize(f->m, NULL, NULL, 4096, &w);
    assert_int_equal(w, 7);
    return s;
}
CASE(t_aim_model_serialize__null_written) {
    unsigned char buf[64];
    return aim_model_serialize(f->m, NULL, buf, sizeof buf, NULL);
}
CASE(t_aim_model_serialize__capacity_too_small) {
    /* Refused, nothing written, and *written tells the bytes needed (as snprintf does). */
    size_t need = 0, w = 7;
    assert_int_equal(aim_model_serialized_size(f->m, NULL, &need), AIM_OK);
    unsigned char *buf = malloc(need);
    assert_non_null(buf);
    memset(buf, 0xAB, need);
    aim_status s = aim_model_serialize(f->m, NULL, buf, need - 1, &w);
    for (size_t i = 0; i < need; i++) assert_int_equal(buf[i], 0xAB); /* nothing written */
    free(buf);
    assert_int_equal(w, need);
    return s;
}
CASE(t_aim_model_serialize__capacity_zero) {
    size_t need = 0, w = 7;
    unsigned char buf[1] = {0xAB};
    assert_int_equal(aim_model_serialized_size(f->m, NULL, &need), AIM_OK);
    aim_status s = aim_model_serialize(f->m, NULL, buf, 0, &w);
    assert_int_equal(buf[0], 0xAB);
    assert_int_equal(w, need);
    return s;
}
CASE(t_aim_model_serialize__not_compiled) {
    unsigned char buf[64];
    size_t w = 7;
    aim_status s = aim_model_serialize(f->m_unc, NULL, buf, sizeof buf, &w);
    assert_int_equal(w, 7);
    return s;
}
CASE(t_aim_model_deserialize__null_buffer) {
    UNUSED;
    aim_model *m = SENT;
    aim_status s = aim_model_deserialize(NULL, NULL, 100, &m, NULL, NULL, 0);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_deserialize__null_model) {
    UNUSED;
    unsigned char buf[64] = {0};
    return aim_model_deserialize(NULL, buf, sizeof buf, NULL, NULL, NULL, 0);
}
CASE(t_aim_model_deserialize__zero_length) {
    UNUSED;
    unsigned char buf[64] = {0};
    aim_model *m = SENT;
    aim_status s = aim_model_deserialize(NULL, buf, 0, &m, NULL, NULL, 0);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_deserialize__garbage) {
    UNUSED;
    unsigned char buf[64];
    char msg[256];
    memset(buf, 0x5A, sizeof buf);
    aim_model *m = SENT;
    aim_status s = aim_model_deserialize(NULL, buf, sizeof buf, &m, NULL, msg, sizeof msg);
    assert_ptr_equal(m, SENT);
    print_message("garbage: \"%s\"\n", msg);
    assert_true(strlen(msg) > 0); /* in words */
    return s;
}
CASE(t_aim_model_deserialize__message_cut_to_capacity) {
    /* The message is cut to the capacity, NUL included, and nothing past it is written. */
    UNUSED;
    unsigned char buf[64];
    char msg[64];
    memset(buf, 0x5A, sizeof buf);
    memset(msg, 'X', sizeof msg);
    aim_model *m = SENT;
    aim_status s = aim_model_deserialize(NULL, buf, sizeof buf, &m, NULL, msg, 8);
    assert_ptr_equal(m, SENT);
    assert_true(memchr(msg, '\0', 8) != NULL);
    for (size_t i = 8; i < sizeof msg; i++) assert_int_equal(msg[i], 'X');
    return s;
}
CASE(t_aim_model_deserialize__message_capacity_1) {
    UNUSED;
    unsigned char buf[64];
    char msg[4] = {'X', 'X', 'X', 'X'};
    memset(buf, 0x5A, sizeof buf);
    aim_model *m = SENT;
    aim_status s = aim_model_deserialize(NULL, buf, sizeof buf, &m, NULL, msg, 1);
    assert_int_equal(msg[0], '\0');
    assert_int_equal(msg[1], 'X');
    return s;
}
CASE(t_aim_model_deserialize__truncated) {
    /* A real buffer less its last byte: refused, in words; nothing read past the length
     * (the copy has exactly that many bytes, for ASan). */
    size_t need = 0, w = 0;
    char msg[256];
    assert_int_equal(aim_model_serialized_size(f->m, NULL, &need), AIM_OK);
    unsigned char *buf = malloc(need), *cut = malloc(need - 1);
    assert_non_null(buf);
    assert_non_null(cut);
    assert_int_equal(aim_model_serialize(f->m, NULL, buf, need, &w), AIM_OK);
    memcpy(cut, buf, need - 1);
    aim_model *m = SENT;
    aim_status s = aim_model_deserialize(NULL, cut, need - 1, &m, NULL, msg, sizeof msg);
    free(buf);
    free(cut);
    assert_ptr_equal(m, SENT);
    print_message("truncated: \"%s\"\n", msg);
    assert_true(strlen(msg) > 0);
    return s;
}
CASE(t_aim_model_deserialize__incomplete_allocator) {
    UNUSED;
    aim_allocator a = {NULL, NULL, NULL, NULL};
    unsigned char buf[64] = {0};
    aim_model *m = SENT;
    aim_status s = aim_model_deserialize(&a, buf, sizeof buf, &m, NULL, NULL, 0);
    assert_ptr_equal(m, SENT);
    return s;
}
CASE(t_aim_model_deserialize__round_trip_ok) {
    /* Positive control: a real buffer of the fixture model reloads; the message is "". */
    size_t need = 0, w = 0;
    char msg[256];
    memset(msg, 'X', sizeof msg);
    assert_int_equal(aim_model_serialized_size(f->m, NULL, &need), AIM_OK);
    unsigned char *buf = malloc(need);
    assert_non_null(buf);
    assert_int_equal(aim_model_serialize(f->m, NULL, buf, need, &w), AIM_OK);
    aim_model *m = NULL;
    aim_optimizer *o = SENT;
    aim_status s = aim_model_deserialize(NULL, buf, w, &m, &o, msg, sizeof msg);
    free(buf);
    assert_null(o);
    assert_string_equal(msg, "");
    aim_model_free(m);
    return s;
}
CASE(t_aim_model_deserialize__graph_round_trip_ok) {
    /* Positive control: m_g2 (two inputs, add, concat, two weighted outputs)
     * reloads as the same graph: same counts, same predictions. */
    size_t need = 0, w = 0;
    assert_int_equal(aim_model_serialized_size(f->m_g2, NULL, &need), AIM_OK);
    unsigned char *buf = malloc(need);
    assert_non_null(buf);
    assert_int_equal(aim_model_serialize(f->m_g2, NULL, buf, need, &w), AIM_OK);
    aim_model *m = NULL;
    aim_status s = aim_model_deserialize(NULL, buf, w, &m, NULL, NULL, 0);
    free(buf);
    if (s != AIM_OK) return s;
    assert_int_equal(aim_model_input_count(m), 2);
    assert_int_equal(aim_model_output_count(m), 2);
    assert_int_equal(aim_model_layer_count(m), GRAPH2_LAYERS);
    float ref0[H0(2)], ref1[H1(2)];
    multi_call c = multi_ok(f, 2);
    CHECK_OK(multi_run(f, &c));
    memcpy(ref0, f->out, sizeof ref0);
    memcpy(ref1, f->out2, sizeof ref1);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, 2, &ws));
    c.m = m;
    c.ws = ws;
    CHECK_OK(multi_run(f, &c));
    assert_memory_equal(f->out, ref0, sizeof ref0);
    assert_memory_equal(f->out2, ref1, sizeof ref1);
    aim_workspace_free(ws);
    aim_model_free(m);
    return s;
}

/* ------------------------------------------------------------------------- */
/* The table                                                                 */
/* ------------------------------------------------------------------------- */

#define IA AIM_ERR_INVALID_ARGUMENT
#define SHAPE AIM_ERR_SHAPE_MISMATCH
#define OVF AIM_ERR_OVERFLOW
#define STATE AIM_ERR_INVALID_STATE
#define NONFIN AIM_ERR_NON_FINITE
/* The 1.1 and 1.2 additions, one file per area (attention.inc: attention,
 * positional embedding, linear; steps.inc: incremental inference). */
#include "bad_input/batch_norm.inc"
#include "bad_input/dropout.inc"
#include "bad_input/layer_norm.inc"
#include "bad_input/embedding.inc"
#include "bad_input/rnn.inc"
#include "bad_input/conv1d.inc"
#include "bad_input/rmsprop.inc"
#include "bad_input/model_ids.inc"
#include "bad_input/model_misc.inc"
#include "bad_input/attention.inc"
#include "bad_input/steps.inc"

#define E(fn, status) {#fn, fn, status}

static const entry table[] = {
    E(t_aim_status_str__unknown_value, AIM_OK),
    E(t_aim_version__matches_header, AIM_OK),
    E(t_aim_version_number__matches_header, AIM_OK),

    E(t_aim_rng_create__null_out, IA),
    E(t_aim_rng_create__allocator_missing_function, IA),
    E(t_aim_rng_free__null, AIM_OK),
    E(t_aim_rng_seed__null, IA),
    E(t_aim_rng_next_u64__null_rng, IA),
    E(t_aim_rng_next_u64__null_out, IA),
    E(t_aim_rng_uniform__null_rng, IA),
    E(t_aim_rng_uniform__null_out, IA),
    E(t_aim_rng_below__zero_bound, IA),
    E(t_aim_rng_below__null_rng, IA),
    E(t_aim_rng_below__null_out, IA),
    E(t_aim_rng_normal__null_rng, IA),
    E(t_aim_rng_normal__null_out, IA),
    E(t_aim_rng_shuffle_u32__null_rng, IA),
    E(t_aim_rng_shuffle_u32__null_indices, IA),

    E(t_aim_tensor_create__null_out, IA),
    E(t_aim_tensor_create__null_dims, IA),
    E(t_aim_tensor_create__rank_0, IA),
    E(t_aim_tensor_create__rank_5, IA),
    E(t_aim_tensor_create__zero_dim, IA),
    E(t_aim_tensor_create__element_count_overflow, OVF),
    E(t_aim_tensor_create__byte_count_overflow, OVF),
    E(t_aim_tensor_create__allocator_missing_function, IA),
    E(t_aim_tensor_wrap__null_data, IA),
    E(t_aim_tensor_wrap__null_out, IA),
    E(t_aim_tensor_wrap__null_dims, IA),
    E(t_aim_tensor_wrap__rank_0, IA),
    E(t_aim_tensor_wrap__zero_dim, IA),
    E(t_aim_tensor_wrap__overflow, OVF),
    E(t_aim_tensor_wrap__count_too_small, SHAPE),
    E(t_aim_tensor_wrap__count_too_large, SHAPE),
    E(t_aim_tensor_wrap__count_size_max, SHAPE),
    E(t_aim_tensor_free__null, AIM_OK),
    E(t_aim_tensor_rank__null, AIM_OK),
    E(t_aim_tensor_dim__null, AIM_OK),
    E(t_aim_tensor_dim__axis_out_of_range, AIM_OK),
    E(t_aim_tensor_size__null, AIM_OK),
    E(t_aim_tensor_data__null, AIM_OK),
    E(t_aim_tensor_data_const__null, AIM_OK),
    E(t_aim_tensor_reshape__null_tensor, IA),
    E(t_aim_tensor_reshape__null_dims, IA),
    E(t_aim_tensor_reshape__rank_0, IA),
    E(t_aim_tensor_reshape__rank_5, IA),
    E(t_aim_tensor_reshape__zero_dim, IA),
    E(t_aim_tensor_reshape__count_differs, SHAPE),
    E(t_aim_tensor_reshape__overflow, OVF),
    E(t_aim_tensor_fill__null, IA),
    E(t_aim_tensor_copy__null_dst, IA),
    E(t_aim_tensor_copy__null_src, IA),
    E(t_aim_tensor_copy__transposed_shape, SHAPE),
    E(t_aim_tensor_copy__different_rank, SHAPE),
    E(t_aim_tensor_copy__different_count, SHAPE),
    E(t_aim_tensor_rand_uniform__null_tensor, IA),
    E(t_aim_tensor_rand_uniform__null_rng, IA),
    E(t_aim_tensor_rand_uniform__nan_low, IA),
    E(t_aim_tensor_rand_uniform__inf_high, IA),
    E(t_aim_tensor_rand_uniform__low_above_high, IA),
    E(t_aim_tensor_rand_normal__null_tensor, IA),
    E(t_aim_tensor_rand_normal__null_rng, IA),
    E(t_aim_tensor_rand_normal__nan_mean, IA),
    E(t_aim_tensor_rand_normal__inf_stddev, IA),
    E(t_aim_tensor_rand_normal__negative_stddev, IA),
    E(t_aim_tensor_last_error__null, AIM_OK),

    E(t_aim_loss__null_pred, IA),
    E(t_aim_loss__null_targets, IA),
    E(t_aim_loss__null_loss_out, IA),
    E(t_aim_loss__zero_batch, IA),
    E(t_aim_loss__zero_features, IA),
    E(t_aim_loss__unknown_kind, IA),
    E(t_aim_loss__size_overflow, OVF),
    E(t_aim_loss__nan_pred, NONFIN),
    E(t_aim_loss__inf_target, NONFIN),
    E(t_aim_loss__nan_logit_softmax_ce, NONFIN),
    E(t_aim_loss_sparse__null_logits, IA),
    E(t_aim_loss_sparse__null_labels, IA),
    E(t_aim_loss_sparse__null_loss_out, IA),
    E(t_aim_loss_sparse__zero_batch, IA),
    E(t_aim_loss_sparse__zero_classes, IA),
    E(t_aim_loss_sparse__label_equal_to_classes, IA),
    E(t_aim_loss_sparse__negative_label, IA),
    E(t_aim_loss_sparse__size_overflow, OVF),
    E(t_aim_loss_sparse__nan_logit, NONFIN),
    E(t_aim_activation_forward__unknown_activation, IA),
    E(t_aim_activation_forward__null_x, IA),
    E(t_aim_activation_forward__null_y, IA),
    E(t_aim_activation_forward__zero_rows, IA),
    E(t_aim_activation_forward__zero_cols, IA),
    E(t_aim_activation_forward__size_overflow, OVF),

    E(t_aim_dense_config_init__null, IA),
    E(t_aim_compile_config_init__null, IA),
    E(t_aim_sgd_config_init__null, IA),
    E(t_aim_adam_config_init__null, IA),

    E(t_aim_model_create__null_out, IA),
    E(t_aim_model_create__null_dims, IA),
    E(t_aim_model_create__rank_0, IA),
    E(t_aim_model_create__rank_4, IA),
    E(t_aim_model_create__zero_dim, IA),
    E(t_aim_model_create__overflow, OVF),
    E(t_aim_model_create__allocator_missing_function, IA),
    E(t_aim_model_free__null, AIM_OK),
    E(t_aim_model_add_dense__null_model, IA),
    E(t_aim_model_add_dense__null_config, IA),
    E(t_aim_model_add_dense__zero_units, IA),
    E(t_aim_model_add_dense__unknown_activation, IA),
    E(t_aim_model_add_dense__unknown_init, IA),
    E(t_aim_model_add_dense__after_compile, STATE),
    E(t_aim_model_add_dense__parameter_count_overflow, OVF),
    E(t_aim_model_add_activation__null_model, IA),
    E(t_aim_model_add_activation__unknown_activation, IA),
    E(t_aim_model_add_activation__negative_enum, IA),
    E(t_aim_model_add_activation__after_compile, STATE),
    E(t_aim_conv2d_config_init__null, IA),
    E(t_aim_model_add_conv2d__null_model, IA),
    E(t_aim_model_add_conv2d__null_config, IA),
    E(t_aim_model_add_conv2d__zero_filters, IA),
    E(t_aim_model_add_conv2d__zero_kernel, IA),
    E(t_aim_model_add_conv2d__zero_stride, IA),
    E(t_aim_model_add_conv2d__zero_dilation, IA),
    E(t_aim_model_add_conv2d__zero_groups, IA),
    E(t_aim_model_add_conv2d__unknown_padding, IA),
    E(t_aim_model_add_conv2d__unknown_activation, IA),
    E(t_aim_model_add_conv2d__unknown_init, IA),
    E(t_aim_model_add_conv2d__input_not_rank_3, SHAPE),
    E(t_aim_model_add_conv2d__groups_do_not_divide_channels, SHAPE),
    E(t_aim_model_add_conv2d__kernel_taller_than_input, SHAPE),
    E(t_aim_model_add_conv2d__dilated_kernel_taller_than_input, SHAPE),
    E(t_aim_model_add_conv2d__dilation_overflow, OVF),
    E(t_aim_model_add_conv2d__padding_overflow, OVF),
    E(t_aim_model_add_conv2d__after_compile, STATE),
    E(t_aim_model_add_conv2d__huge_stride_same_padding, AIM_OK),
    E(t_aim_model_add_conv2d__fused_softmax, AIM_ERR_UNSUPPORTED),
    E(t_aim_pool2d_config_init__null, IA),
    E(t_aim_model_add_max_pool2d__null_model, IA),
    E(t_aim_model_add_max_pool2d__null_config, IA),
    E(t_aim_model_add_max_pool2d__zero_kernel, IA),
    E(t_aim_model_add_max_pool2d__zero_stride, IA),
    E(t_aim_model_add_max_pool2d__input_not_rank_3, SHAPE),
    E(t_aim_model_add_max_pool2d__window_larger_than_input, SHAPE),
    E(t_aim_model_add_max_pool2d__padding_over_half_window, SHAPE),
    E(t_aim_model_add_max_pool2d__after_compile, STATE),
    E(t_aim_model_add_avg_pool2d__null_model, IA),
    E(t_aim_model_add_avg_pool2d__null_config, IA),
    E(t_aim_model_add_avg_pool2d__zero_kernel, IA),
    E(t_aim_model_add_avg_pool2d__input_not_rank_3, SHAPE),
    E(t_aim_model_add_avg_pool2d__window_larger_than_input, SHAPE),
    E(t_aim_model_add_avg_pool2d__padding_over_half_window, SHAPE),
    E(t_aim_model_add_avg_pool2d__after_compile, STATE),
    E(t_aim_model_add_global_avg_pool2d__null, IA),
    E(t_aim_model_add_global_avg_pool2d__input_not_rank_3, SHAPE),
    E(t_aim_model_add_global_avg_pool2d__after_compile, STATE),
    E(t_aim_model_add_flatten__null, IA),
    E(t_aim_model_add_flatten__after_compile, STATE),
    E(t_aim_model_layer_shape__null_model, IA),
    E(t_aim_model_layer_shape__null_rank, IA),
    E(t_aim_model_layer_shape__null_dims, IA),
    E(t_aim_model_layer_shape__layer_out_of_range, IA),
    E(t_aim_model_layer_shape__no_layers, IA),
    E(t_aim_model_layer_shape__input_node, AIM_OK),
    E(t_aim_model_layer_shape__input_out_of_range, IA),
    E(t_aim_model_add_input__null_model, IA),
    E(t_aim_model_add_input__null_dims, IA),
    E(t_aim_model_add_input__null_node, IA),
    E(t_aim_model_add_input__rank_0, IA),
    E(t_aim_model_add_input__rank_4, IA),
    E(t_aim_model_add_input__zero_dim, IA),
    E(t_aim_model_add_input__overflow, OVF),
    E(t_aim_model_add_input__over_int_max_floats, AIM_ERR_UNSUPPORTED),
    E(t_aim_model_add_input__after_compile, STATE),
    E(t_aim_model_add_input__too_many_inputs, STATE),
    E(t_aim_model_add_input__ok, AIM_OK),
    E(t_aim_model_last_node__null_model, IA),
    E(t_aim_model_last_node__null_node, IA),
    E(t_aim_model_last_node__follows_the_builders, AIM_OK),
    E(t_aim_model_continue_from__null_model, IA),
    E(t_aim_model_continue_from__layer_out_of_range, IA),
    E(t_aim_model_continue_from__huge_layer_index, IA),
    E(t_aim_model_continue_from__input_out_of_range, IA),
    E(t_aim_model_continue_from__after_compile, STATE),
    E(t_aim_model_continue_from__input_0_ok, AIM_OK),
    E(t_aim_model_add_add__null_model, IA),
    E(t_aim_model_add_add__null_nodes, IA),
    E(t_aim_model_add_add__count_0, IA),
    E(t_aim_model_add_add__count_1, IA),
    E(t_aim_model_add_add__count_above_max, IA),
    E(t_aim_model_add_add__count_size_max, IA),
    E(t_aim_model_add_add__count_max_ok, AIM_OK),
    E(t_aim_model_add_add__node_does_not_exist, IA),
    E(t_aim_model_add_add__input_does_not_exist, IA),
    E(t_aim_model_add_add__shapes_differ, SHAPE),
    E(t_aim_model_add_add__third_shape_differs, SHAPE),
    E(t_aim_model_add_add__same_size_other_shape, SHAPE),
    E(t_aim_model_add_add__input_and_layer_differ, SHAPE),
    E(t_aim_model_add_add__after_compile, STATE),
    E(t_aim_model_add_add__residual_ok, AIM_OK),
    E(t_aim_model_add_concat__null_model, IA),
    E(t_aim_model_add_concat__null_nodes, IA),
    E(t_aim_model_add_concat__count_0, IA),
    E(t_aim_model_add_concat__count_1, IA),
    E(t_aim_model_add_concat__count_above_max, IA),
    E(t_aim_model_add_concat__count_size_max, IA),
    E(t_aim_model_add_concat__node_does_not_exist, IA),
    E(t_aim_model_add_concat__input_does_not_exist, IA),
    E(t_aim_model_add_concat__axis_equal_to_rank, SHAPE),
    E(t_aim_model_add_concat__axis_size_max, SHAPE),
    E(t_aim_model_add_concat__axis_3_of_an_image, SHAPE),
    E(t_aim_model_add_concat__ranks_differ, SHAPE),
    E(t_aim_model_add_concat__other_sizes_differ, SHAPE),
    E(t_aim_model_add_concat__after_compile, STATE),
    E(t_aim_model_add_concat__features_ok, AIM_OK),
    E(t_aim_model_add_concat__image_axes_ok, AIM_OK),
    E(t_aim_model_set_outputs__null_model, IA),
    E(t_aim_model_set_outputs__null_nodes, IA),
    E(t_aim_model_set_outputs__count_0, IA),
    E(t_aim_model_set_outputs__count_above_max, IA),
    E(t_aim_model_set_outputs__count_size_max, IA),
    E(t_aim_model_set_outputs__input_node, IA),
    E(t_aim_model_set_outputs__duplicate, IA),
    E(t_aim_model_set_outputs__node_does_not_exist, IA),
    E(t_aim_model_set_outputs__nan_weight, IA),
    E(t_aim_model_set_outputs__inf_weight, IA),
    E(t_aim_model_set_outputs__after_compile, STATE),
    E(t_aim_model_set_outputs__ok, AIM_OK),
    E(t_aim_model_input_count__null, AIM_OK),
    E(t_aim_model_input_count__values, AIM_OK),
    E(t_aim_model_output_count__null, AIM_OK),
    E(t_aim_model_output_count__no_layers, AIM_OK),
    E(t_aim_model_output_count__values, AIM_OK),
    E(t_aim_model_output_node__null_model, IA),
    E(t_aim_model_output_node__null_node, IA),
    E(t_aim_model_output_node__out_of_range, IA),
    E(t_aim_model_output_node__no_layers, IA),
    E(t_aim_model_output_node__values, AIM_OK),
    E(t_aim_model_compile__null_model, IA),
    E(t_aim_model_compile__zero_max_batch, IA),
    E(t_aim_model_compile__twice, STATE),
    E(t_aim_model_compile__no_layers, STATE),
    E(t_aim_model_compile__activation_size_overflow, OVF),
    E(t_aim_model_compile__dangling_layer, SHAPE),
    E(t_aim_model_compile__unused_input, SHAPE),
    E(t_aim_model_compile__output_feeding_a_layer_ok, AIM_OK),

    E(t_aim_lstm_config_init__null, IA),
    E(t_aim_model_add_lstm__null_model, IA),
    E(t_aim_model_add_lstm__null_config, IA),
    E(t_aim_model_add_lstm__zero_hidden, IA),
    E(t_aim_model_add_lstm__zero_layers, IA),
    E(t_aim_model_add_lstm__17_layers, IA),
    E(t_aim_model_add_lstm__16_layers, AIM_OK),
    E(t_aim_model_add_lstm__unknown_init, IA),
    E(t_aim_model_add_lstm__negative_init, IA),
    E(t_aim_model_add_lstm__after_rank_1_shape, SHAPE),
    E(t_aim_model_add_lstm__rank_1_input, SHAPE),
    E(t_aim_model_add_lstm__rank_3_input, SHAPE),
    E(t_aim_model_add_lstm__after_compile, STATE),
    E(t_aim_model_add_lstm__parameter_count_overflow, OVF),
    E(t_aim_model_add_lstm__gates_over_int_max, AIM_ERR_UNSUPPORTED),
    E(t_aim_model_add_lstm__sequence_over_int_max, AIM_ERR_UNSUPPORTED),
    E(t_aim_model_lstm_set_state__null_model, IA),
    E(t_aim_model_lstm_set_state__not_compiled, STATE),
    E(t_aim_model_lstm_set_state__not_an_lstm_layer, IA),
    E(t_aim_model_lstm_set_state__dense_model, IA),
    E(t_aim_model_lstm_set_state__layer_out_of_range, IA),
    E(t_aim_model_lstm_set_state__only_h0, IA),
    E(t_aim_model_lstm_set_state__only_c0, IA),
    E(t_aim_model_lstm_set_state__zero_batch, IA),
    E(t_aim_model_lstm_set_state__batch_above_max_batch, SHAPE),
    E(t_aim_model_lstm_set_state__clear_with_both_null, AIM_OK),
    E(t_aim_model_lstm_set_state__h0_count_one_too_few, SHAPE),
    E(t_aim_model_lstm_set_state__h0_count_one_too_many, SHAPE),
    E(t_aim_model_lstm_set_state__h0_count_size_max, SHAPE),
    E(t_aim_model_lstm_set_state__c0_count_one_too_many, SHAPE),
    E(t_aim_model_lstm_set_state__c0_count_one_too_few, SHAPE),
    E(t_aim_model_lstm_set_state__c0_count_size_max, SHAPE),
    E(t_aim_model_lstm_set_state__counts_zero, SHAPE),
    E(t_aim_model_lstm_set_state__counts_of_one_layer, SHAPE),
    E(t_aim_model_lstm_set_state__counts_of_whole_buffers, SHAPE),
    E(t_aim_model_lstm_set_state__nan_in_h0, NONFIN),
    E(t_aim_model_lstm_set_state__inf_in_c0, NONFIN),
    E(t_aim_model_lstm_final_state__null_model, IA),
    E(t_aim_model_lstm_final_state__not_compiled, STATE),
    E(t_aim_model_lstm_final_state__not_an_lstm_layer, IA),
    E(t_aim_model_lstm_final_state__layer_out_of_range, IA),
    E(t_aim_model_lstm_final_state__both_null, IA),
    E(t_aim_model_lstm_final_state__before_any_forward, STATE),
    E(t_aim_model_lstm_final_state__after_inference_forward, STATE),
    E(t_aim_model_lstm_final_state__batch_differs_from_forward, SHAPE),
    E(t_aim_model_lstm_final_state__h_only, AIM_OK),
    E(t_aim_model_lstm_final_state__h_count_one_too_few, SHAPE),
    E(t_aim_model_lstm_final_state__c_count_one_too_many, SHAPE),
    E(t_aim_model_lstm_final_state__h_count_size_max, SHAPE),
    E(t_aim_model_lstm_final_state__h_count_one_too_many, SHAPE),
    E(t_aim_model_lstm_final_state__c_count_size_max, SHAPE),
    E(t_aim_model_lstm_final_state__c_count_zero, SHAPE),
    E(t_aim_model_lstm_final_state__counts_of_whole_buffers, SHAPE),
    E(t_aim_model_lstm_final_state__c_only_h_count_ignored, AIM_OK),

    E(t_aim_model_forward__null_model, IA),
    E(t_aim_model_forward__null_input, IA),
    E(t_aim_model_forward__zero_batch, IA),
    E(t_aim_model_forward__unknown_mode, IA),
    E(t_aim_model_forward__batch_above_max_batch, SHAPE),
    E(t_aim_model_forward__huge_batch, SHAPE),
    E(t_aim_model_forward__not_compiled, STATE),
    E(t_aim_model_forward__no_layers, STATE),
    E(t_aim_model_forward__batch_differs_from_lstm_state, SHAPE),
    E(t_aim_model_forward__inference_batch_differs_from_lstm_state, SHAPE),
    E(t_aim_model_forward__null_input_count_0, IA),
    E(t_aim_model_forward__count_one_too_few, SHAPE),
    E(t_aim_model_forward__count_one_too_many, SHAPE),
    E(t_aim_model_forward__count_zero, SHAPE),
    E(t_aim_model_forward__count_size_max, SHAPE),
    E(t_aim_model_forward__count_of_one_sample_for_batch_2, SHAPE),
    E(t_aim_model_forward__count_of_batch_3_for_batch_2, SHAPE),
    E(t_aim_model_forward__count_of_whole_buffer, SHAPE),
    E(t_aim_model_forward__count_whose_bytes_wrap_to_need, SHAPE),
    E(t_aim_model_forward__image_count_one_too_few, SHAPE),
    E(t_aim_model_forward__lstm_count_of_one_step, SHAPE),
    E(t_aim_model_forward__two_input_model, SHAPE),
    E(t_aim_model_forward__two_output_model_ok, AIM_OK),
    E(t_aim_model_forward_multi__null_model, IA),
    E(t_aim_model_forward_multi__null_inputs, IA),
    E(t_aim_model_forward_multi__null_input_counts, IA),
    E(t_aim_model_forward_multi__null_input_1, IA),
    E(t_aim_model_forward_multi__null_input_0, IA),
    E(t_aim_model_forward_multi__n_inputs_1, SHAPE),
    E(t_aim_model_forward_multi__n_inputs_3, SHAPE),
    E(t_aim_model_forward_multi__n_inputs_0, SHAPE),
    E(t_aim_model_forward_multi__n_inputs_size_max, SHAPE),
    E(t_aim_model_forward_multi__count_0_one_too_few, SHAPE),
    E(t_aim_model_forward_multi__count_1_one_too_few, SHAPE),
    E(t_aim_model_forward_multi__count_1_one_too_many, SHAPE),
    E(t_aim_model_forward_multi__count_1_size_max, SHAPE),
    E(t_aim_model_forward_multi__counts_swapped, SHAPE),
    E(t_aim_model_forward_multi__zero_batch, IA),
    E(t_aim_model_forward_multi__batch_above_max_batch, SHAPE),
    E(t_aim_model_forward_multi__unknown_mode, IA),
    E(t_aim_model_forward_multi__not_compiled, STATE),
    E(t_aim_model_forward_multi__one_input_model_as_forward, AIM_OK),
    E(t_aim_model_forward_multi__two_inputs_ok, AIM_OK),
    E(t_aim_model_output__null_model, IA),
    E(t_aim_model_output__null_data, IA),
    E(t_aim_model_output__before_forward, STATE),
    E(t_aim_model_output__not_compiled, STATE),
    E(t_aim_model_output__null_count, IA),
    E(t_aim_model_output__output_out_of_range, IA),
    E(t_aim_model_output__output_size_max, IA),
    E(t_aim_model_output__output_2_of_two, IA),
    E(t_aim_model_output__second_output_ok, AIM_OK),
    E(t_aim_model_loss__null_model, IA),
    E(t_aim_model_loss__null_targets, IA),
    E(t_aim_model_loss__null_loss_out, IA),
    E(t_aim_model_loss__unknown_kind, IA),
    E(t_aim_model_loss__batch_differs_from_forward, SHAPE),
    E(t_aim_model_loss__before_forward, STATE),
    E(t_aim_model_loss__not_compiled, STATE),
    E(t_aim_model_loss__nan_target, NONFIN),
    E(t_aim_model_loss__nan_output, NONFIN),
    E(t_aim_model_loss__null_targets_count_0, IA),
    E(t_aim_model_loss__count_one_too_few, SHAPE),
    E(t_aim_model_loss__count_one_too_many, SHAPE),
    E(t_aim_model_loss__count_zero, SHAPE),
    E(t_aim_model_loss__count_size_max, SHAPE),
    E(t_aim_model_loss__count_whose_bytes_wrap_to_need, SHAPE),
    E(t_aim_model_loss__count_of_one_sample, SHAPE),
    E(t_aim_model_loss__output_out_of_range, IA),
    E(t_aim_model_loss__output_size_max, IA),
    E(t_aim_model_loss__count_of_the_other_output, SHAPE),
    E(t_aim_model_loss__second_output_ok, AIM_OK),
    E(t_aim_model_loss_sparse__null_model, IA),
    E(t_aim_model_loss_sparse__null_labels, IA),
    E(t_aim_model_loss_sparse__null_loss_out, IA),
    E(t_aim_model_loss_sparse__label_out_of_range, IA),
    E(t_aim_model_loss_sparse__negative_label, IA),
    E(t_aim_model_loss_sparse__batch_differs_from_forward, SHAPE),
    E(t_aim_model_loss_sparse__before_forward, STATE),
    E(t_aim_model_loss_sparse__not_compiled, STATE),
    E(t_aim_model_loss_sparse__nan_logits, NONFIN),
    E(t_aim_model_loss_sparse__count_one_too_many, SHAPE),
    E(t_aim_model_loss_sparse__count_zero, SHAPE),
    E(t_aim_model_loss_sparse__count_size_max, SHAPE),
    E(t_aim_model_loss_sparse__count_of_whole_buffer, SHAPE),
    E(t_aim_model_loss_sparse__count_times_classes, SHAPE),
    E(t_aim_model_loss_sparse__output_out_of_range, IA),
    E(t_aim_model_loss_sparse__label_of_the_other_output, IA),
    E(t_aim_model_set_output_grad__null_model, IA),
    E(t_aim_model_set_output_grad__null_grad, IA),
    E(t_aim_model_set_output_grad__output_out_of_range, IA),
    E(t_aim_model_set_output_grad__count_one_too_few, SHAPE),
    E(t_aim_model_set_output_grad__count_one_too_many, SHAPE),
    E(t_aim_model_set_output_grad__count_zero, SHAPE),
    E(t_aim_model_set_output_grad__count_size_max, SHAPE),
    E(t_aim_model_set_output_grad__count_of_the_other_output, SHAPE),
    E(t_aim_model_set_output_grad__before_forward, STATE),
    E(t_aim_model_set_output_grad__after_inference_forward, STATE),
    E(t_aim_model_set_output_grad__not_compiled, STATE),
    E(t_aim_model_set_output_grad__same_as_backward_with_grad, AIM_OK),
    E(t_aim_model_backward__null_model, IA),
    E(t_aim_model_backward__before_forward, STATE),
    E(t_aim_model_backward__after_inference_forward, STATE),
    E(t_aim_model_backward__no_loss_and_null_grad, STATE),
    E(t_aim_model_backward__not_compiled, STATE),
    E(t_aim_model_backward__count_one_too_few, SHAPE),
    E(t_aim_model_backward__count_one_too_many, SHAPE),
    E(t_aim_model_backward__count_zero, SHAPE),
    E(t_aim_model_backward__count_size_max, SHAPE),
    E(t_aim_model_backward__count_of_batch_3, SHAPE),
    E(t_aim_model_backward__count_whose_bytes_wrap_to_need, SHAPE),
    E(t_aim_model_backward__grad_given_to_two_output_model, SHAPE),
    E(t_aim_model_input_gradient__null_model, IA),
    E(t_aim_model_input_gradient__null_grad, IA),
    E(t_aim_model_input_gradient__not_enabled, STATE),
    E(t_aim_model_input_gradient__before_backward, STATE),
    E(t_aim_model_input_gradient__not_compiled, STATE),
    E(t_aim_model_input_gradient__null_count, IA),
    E(t_aim_model_input_gradient__input_out_of_range, IA),
    E(t_aim_model_input_gradient__count_ok, AIM_OK),
    E(t_aim_model_input_gradient__second_input, AIM_OK),
    E(t_aim_model_zero_grad__null, IA),
    E(t_aim_model_zero_grad__not_compiled, STATE),
    E(t_aim_model_parameters__null_model, IA),
    E(t_aim_model_parameters__null_params, IA),
    E(t_aim_model_parameters__null_count, IA),
    E(t_aim_model_parameters__not_compiled, STATE),
    E(t_aim_model_gradients__null_model, IA),
    E(t_aim_model_gradients__null_grads, IA),
    E(t_aim_model_gradients__null_count, IA),
    E(t_aim_model_gradients__not_compiled, STATE),
    E(t_aim_model_layer_parameters__null_model, IA),
    E(t_aim_model_layer_parameters__null_offset, IA),
    E(t_aim_model_layer_parameters__null_weight_count, IA),
    E(t_aim_model_layer_parameters__null_bias_count, IA),
    E(t_aim_model_layer_parameters__layer_out_of_range, IA),
    E(t_aim_model_layer_parameters__not_compiled, STATE),
    E(t_aim_model_layer_count__null, AIM_OK),
    E(t_aim_model_input_size__null, AIM_OK),
    E(t_aim_model_output_size__null, AIM_OK),
    E(t_aim_model_output_size__no_layers, AIM_OK),
    E(t_aim_model_memory_size__null_model, IA),
    E(t_aim_model_memory_size__null_bytes, IA),
    E(t_aim_model_memory_size__not_compiled, STATE),
    E(t_aim_model_last_error__null, AIM_OK),

    E(t_aim_workspace_size__null_model, IA),
    E(t_aim_workspace_size__null_bytes, IA),
    E(t_aim_workspace_size__zero_batch, IA),
    E(t_aim_workspace_size__not_compiled, STATE),
    E(t_aim_workspace_size__overflow, OVF),
    E(t_aim_workspace_create__null_model, IA),
    E(t_aim_workspace_create__null_out, IA),
    E(t_aim_workspace_create__zero_batch, IA),
    E(t_aim_workspace_create__not_compiled, STATE),
    E(t_aim_workspace_create__overflow, OVF),
    E(t_aim_workspace_create__allocator_missing_function, IA),
    E(t_aim_workspace_free__null, AIM_OK),
    E(t_aim_workspace_last_error__null, AIM_OK),
    E(t_aim_threadpool_create__null_out, IA),
    E(t_aim_threadpool_create__too_many_threads, AIM_ERR_UNSUPPORTED),
    E(t_aim_threadpool_create__allocator_missing_function, IA),
    E(t_aim_threadpool_free__null, AIM_OK),
    E(t_aim_threadpool_threads__null, AIM_OK),
    E(t_aim_threadpool_set_min_work__null, IA),
    E(t_aim_threadpool_last_error__null, AIM_OK),
    E(t_aim_model_set_threadpool__null_model, IA),
    E(t_aim_workspace_set_threadpool__null_workspace, IA),
    E(t_aim_workspace_set_threadpool__null_model, IA),
    E(t_aim_workspace_set_threadpool__not_compiled, STATE),
    E(t_aim_model_predict__null_model, IA),
    E(t_aim_model_predict__null_workspace, IA),
    E(t_aim_model_predict__null_input, IA),
    E(t_aim_model_predict__null_output, IA),
    E(t_aim_model_predict__zero_batch, IA),
    E(t_aim_model_predict__batch_above_workspace, SHAPE),
    E(t_aim_model_predict__workspace_of_other_architecture, SHAPE),
    E(t_aim_model_predict__workspace_of_slightly_larger_architecture, AIM_OK),
    E(t_aim_model_predict__workspace_of_larger_architecture, AIM_OK),
    E(t_aim_model_predict__not_compiled, STATE),
    E(t_aim_model_predict__input_count_one_too_few, SHAPE),
    E(t_aim_model_predict__input_count_one_too_many, SHAPE),
    E(t_aim_model_predict__input_count_zero, SHAPE),
    E(t_aim_model_predict__input_count_size_max, SHAPE),
    E(t_aim_model_predict__input_count_whose_bytes_wrap_to_need, SHAPE),
    E(t_aim_model_predict__input_count_of_whole_buffer, SHAPE),
    E(t_aim_model_predict__output_count_one_too_few, SHAPE),
    E(t_aim_model_predict__output_count_one_too_many, SHAPE),
    E(t_aim_model_predict__output_count_zero, SHAPE),
    E(t_aim_model_predict__output_count_size_max, SHAPE),
    E(t_aim_model_predict__output_count_of_whole_buffer, SHAPE),
    E(t_aim_model_predict__output_count_of_input_size, SHAPE),
    E(t_aim_model_predict__two_input_model, SHAPE),
    E(t_aim_model_predict__two_output_model, SHAPE),
    E(t_aim_model_predict__does_not_write_the_model_message, SHAPE),
    E(t_aim_model_predict_multi__output_1_message, SHAPE),
    E(t_aim_model_predict_multi__matches_forward_multi, AIM_OK),
    E(t_aim_model_predict_multi__one_input_one_output_model_as_predict, AIM_OK),
    E(t_aim_model_predict_multi__null_model, IA),
    E(t_aim_model_predict_multi__null_workspace, IA),
    E(t_aim_model_predict_multi__null_inputs, IA),
    E(t_aim_model_predict_multi__null_input_counts, IA),
    E(t_aim_model_predict_multi__null_input_1, IA),
    E(t_aim_model_predict_multi__null_outputs, IA),
    E(t_aim_model_predict_multi__null_output_counts, IA),
    E(t_aim_model_predict_multi__null_output_0, IA),
    E(t_aim_model_predict_multi__n_inputs_1, SHAPE),
    E(t_aim_model_predict_multi__n_inputs_3, SHAPE),
    E(t_aim_model_predict_multi__n_inputs_0, SHAPE),
    E(t_aim_model_predict_multi__n_inputs_size_max, SHAPE),
    E(t_aim_model_predict_multi__n_outputs_1, SHAPE),
    E(t_aim_model_predict_multi__n_outputs_3, SHAPE),
    E(t_aim_model_predict_multi__n_outputs_size_max, SHAPE),
    E(t_aim_model_predict_multi__input_count_0_one_too_few, SHAPE),
    E(t_aim_model_predict_multi__input_count_1_one_too_many, SHAPE),
    E(t_aim_model_predict_multi__input_count_1_size_max, SHAPE),
    E(t_aim_model_predict_multi__input_counts_swapped, SHAPE),
    E(t_aim_model_predict_multi__output_count_0_one_too_many, SHAPE),
    E(t_aim_model_predict_multi__output_count_1_one_too_few, SHAPE),
    E(t_aim_model_predict_multi__output_count_1_zero, SHAPE),
    E(t_aim_model_predict_multi__output_count_0_size_max, SHAPE),
    E(t_aim_model_predict_multi__output_counts_of_batch_3, SHAPE),
    E(t_aim_model_predict_multi__zero_batch, IA),
    E(t_aim_model_predict_multi__batch_above_workspace, SHAPE),
    E(t_aim_model_predict_multi__not_compiled, STATE),

    E(t_aim_sgd_create__null_out, IA),
    E(t_aim_sgd_create__zero_count, IA),
    E(t_aim_sgd_create__negative_momentum, IA),
    E(t_aim_sgd_create__nan_momentum, IA),
    E(t_aim_sgd_create__dampening_above_1, IA),
    E(t_aim_sgd_create__negative_weight_decay, IA),
    E(t_aim_sgd_create__nesterov_without_momentum, IA),
    E(t_aim_sgd_create__nesterov_with_dampening, IA),
    E(t_aim_sgd_create__overflow, OVF),
    E(t_aim_sgd_create__allocator_missing_function, IA),
    E(t_aim_adam_create__null_out, IA),
    E(t_aim_adam_create__zero_count, IA),
    E(t_aim_adam_create__beta1_above_1, IA),
    E(t_aim_adam_create__negative_beta2, IA),
    E(t_aim_adam_create__nan_epsilon, IA),
    E(t_aim_adam_create__negative_weight_decay, IA),
    E(t_aim_adam_create__overflow, OVF),
    E(t_aim_optimizer_free__null, AIM_OK),
    E(t_aim_optimizer_step__null_optimizer, IA),
    E(t_aim_optimizer_step__null_params, IA),
    E(t_aim_optimizer_step__null_grads, IA),
    E(t_aim_optimizer_step__nan_learning_rate, IA),
    E(t_aim_optimizer_step__inf_learning_rate, IA),
    E(t_aim_optimizer_step__negative_learning_rate, IA),
    E(t_aim_optimizer_step__count_smaller, SHAPE),
    E(t_aim_optimizer_step__count_larger, SHAPE),
    E(t_aim_optimizer_step__count_size_max, SHAPE),
    E(t_aim_optimizer_step__count_zero, SHAPE),
    E(t_aim_optimizer_step__adam_check_finite_nan_grad, NONFIN),
    E(t_aim_optimizer_step__sgd_check_finite_inf_grad, NONFIN),
    E(t_aim_optimizer_step_model__null_optimizer, IA),
    E(t_aim_optimizer_step_model__null_model, IA),
    E(t_aim_optimizer_step_model__not_compiled, STATE),
    E(t_aim_optimizer_step_model__count_mismatch, SHAPE),
    E(t_aim_optimizer_step_model__nan_learning_rate, IA),
    E(t_aim_optimizer_step_model__check_finite_nan_grad, NONFIN),
    E(t_aim_optimizer_reset__null, IA),
    E(t_aim_optimizer_steps__null, AIM_OK),
    E(t_aim_optimizer_last_error__null, AIM_OK),
    E(t_aim_clip_grad_norm__null_grads, IA),
    E(t_aim_clip_grad_norm__zero_count, IA),
    E(t_aim_model_serialized_size__null_model, IA),
    E(t_aim_model_serialized_size__null_bytes, IA),
    E(t_aim_model_serialized_size__not_compiled, STATE),
    E(t_aim_model_serialized_size__optimizer_of_other_size, SHAPE),
    E(t_aim_model_serialize__null_buffer, IA),
    E(t_aim_model_serialize__null_written, IA),
    E(t_aim_model_serialize__capacity_too_small, SHAPE),
    E(t_aim_model_serialize__not_compiled, STATE),
    E(t_aim_model_serialize__capacity_zero, SHAPE),
    E(t_aim_model_deserialize__null_buffer, IA),
    E(t_aim_model_deserialize__null_model, IA),
    E(t_aim_model_deserialize__zero_length, AIM_ERR_CORRUPT_DATA),
    E(t_aim_model_deserialize__garbage, AIM_ERR_CORRUPT_DATA),
    E(t_aim_model_deserialize__incomplete_allocator, IA),
    E(t_aim_model_deserialize__round_trip_ok, AIM_OK),
    E(t_aim_model_deserialize__message_cut_to_capacity, AIM_ERR_CORRUPT_DATA),
    E(t_aim_model_deserialize__message_capacity_1, AIM_ERR_CORRUPT_DATA),
    E(t_aim_model_deserialize__truncated, AIM_ERR_CORRUPT_DATA),
    E(t_aim_model_deserialize__graph_round_trip_ok, AIM_OK),
    E(t_aim_clip_grad_norm__zero_max_norm, IA),
    E(t_aim_clip_grad_norm__negative_max_norm, IA),
    E(t_aim_clip_grad_norm__nan_max_norm, IA),
    E(t_aim_clip_grad_norm__inf_max_norm, IA),
    E(t_aim_clip_grad_norm__nan_grad, NONFIN),
    E(t_aim_clip_grad_norm__inf_grad, NONFIN),
    E(t_aim_clip_grad_norm__null_norm_out_is_allowed, AIM_OK),
    BAD_ROWS_BATCH_NORM
    BAD_ROWS_DROPOUT
    BAD_ROWS_LAYER_NORM
    BAD_ROWS_EMBEDDING
    BAD_ROWS_RNN
    BAD_ROWS_CONV1D
    BAD_ROWS_RMSPROP
    BAD_ROWS_MODEL_IDS
    BAD_ROWS_MODEL_MISC
    BAD_ROWS_ATTENTION
    BAD_ROWS_STEPS
};

#define N_ENTRIES (sizeof table / sizeof table[0])

static void run_entry(void **state) {
    fx *f = *state;
    aim_status got = f->e->fn(f);
    if (got != f->e->expected) {
        fail_msg("%s: expected %d (%s), got %d (%s)", f->e->name, (int)f->e->expected,
                 aim_status_str(f->e->expected), (int)got, aim_status_str(got));
    }
}

/* ------------------------------------------------------------------------- */
/* Coverage: every public function has at least one entry                    */
/* ------------------------------------------------------------------------- */

static const char *const public_functions[] = {
    "aim_status_str", "aim_version", "aim_version_number",
    "aim_rng_create", "aim_rng_free", "aim_rng_seed", "aim_rng_next_u64", "aim_rng_uniform",
    "aim_rng_below", "aim_rng_normal", "aim_rng_shuffle_u32",
    "aim_tensor_create", "aim_tensor_wrap", "aim_tensor_free", "aim_tensor_rank", "aim_tensor_dim",
    "aim_tensor_size", "aim_tensor_data", "aim_tensor_data_const", "aim_tensor_reshape",
    "aim_tensor_fill", "aim_tensor_copy", "aim_tensor_rand_uniform", "aim_tensor_rand_normal",
    "aim_tensor_last_error",
    "aim_loss", "aim_loss_sparse", "aim_activation_forward",
    "aim_dense_config_init", "aim_compile_config_init", "aim_sgd_config_init", "aim_adam_config_init",
    "aim_model_create", "aim_model_free", "aim_model_add_dense", "aim_model_add_activation",
    "aim_conv2d_config_init", "aim_model_add_conv2d", "aim_pool2d_config_init", "aim_model_add_max_pool2d",
    "aim_model_add_avg_pool2d", "aim_model_add_global_avg_pool2d", "aim_model_add_flatten",
    "aim_model_layer_shape", "aim_lstm_config_init", "aim_model_add_lstm", "aim_model_lstm_set_state",
    "aim_model_lstm_final_state",
    "aim_model_compile", "aim_model_forward", "aim_model_output", "aim_model_loss",
    "aim_model_loss_sparse", "aim_model_backward", "aim_model_input_gradient", "aim_model_zero_grad",
    "aim_model_parameters", "aim_model_gradients", "aim_model_layer_parameters",
    "aim_model_layer_count", "aim_model_input_size", "aim_model_output_size",
    "aim_model_memory_size", "aim_model_last_error",
    "aim_workspace_size", "aim_workspace_create", "aim_workspace_free", "aim_workspace_last_error",
    "aim_model_predict", "aim_threadpool_create", "aim_threadpool_free", "aim_threadpool_threads", "aim_threadpool_set_min_work",
    "aim_threadpool_last_error", "aim_model_set_threadpool", "aim_workspace_set_threadpool",
    "aim_sgd_create", "aim_adam_create", "aim_optimizer_free", "aim_optimizer_step",
    "aim_optimizer_step_model", "aim_optimizer_reset", "aim_optimizer_steps",
    "aim_optimizer_last_error", "aim_clip_grad_norm",
    "aim_model_serialized_size", "aim_model_serialize", "aim_model_deserialize",
    "aim_model_add_input", "aim_model_last_node", "aim_model_continue_from", "aim_model_add_add",
    "aim_model_add_concat", "aim_model_set_outputs", "aim_model_input_count", "aim_model_output_count",
    "aim_model_output_node", "aim_model_forward_multi", "aim_model_predict_multi", "aim_model_set_output_grad",
};

static int has_entry(const char *fn, size_t len) {
    for (size_t k = 0; k < N_ENTRIES; k++) {
        const char *n = table[k].name + 2; /* skip "t_" */
        if (strncmp(n, fn, len) == 0 && strncmp(n + len, "__", 2) == 0) return 1;
    }
    return 0;
}

static void test_every_public_function_has_an_entry(void **state) {
    (void)state;
    size_t nf = sizeof public_functions / sizeof public_functions[0];
    for (size_t i = 0; i < nf; i++) {
        if (!has_entry(public_functions[i], strlen(public_functions[i])))
            fail_msg("no table entry calls %s", public_functions[i]);
    }
    assert_int_equal(nf, 100);
}

/* The same against the header itself, when the test runs from the source
 * tree (as `make test` does): a function added to aimodel.h without a table
 * entry is reported here. Every declaration starts a line with "AIM_API". */
static void test_every_function_in_the_header_has_an_entry(void **state) {
    (void)state;
    static char text[1 << 18];
    FILE *fp = fopen("include/aimodel.h", "rb");
    if (!fp) {
        print_message("include/aimodel.h not found from the working directory; skipped\n");
        skip();
    }
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    size_t declared = 0;
    for (const char *p = strstr(text, "\nAIM_API "); p; p = strstr(p + 1, "\nAIM_API ")) {
        const char *paren = strchr(p, '(');
        assert_non_null(paren);
        const char *name = paren;
        while (name > p && (name[-1] == '_' || (name[-1] >= 'a' && name[-1] <= 'z') ||
                            (name[-1] >= '0' && name[-1] <= '9')))
            name--;
        size_t len = (size_t)(paren - name);
        assert_true(len > 4 && strncmp(name, "aim_", 4) == 0);
        declared++;
        if (!has_entry(name, len)) fail_msg("no table entry calls %.*s", (int)len, name);
    }
    print_message("%zu functions declared in aimodel.h, all in the table\n", declared);
    assert_true(declared >= 100);
}

/* ------------------------------------------------------------------------- */
/* After refused calls, objects still work and messages are set              */
/* ------------------------------------------------------------------------- */

static int setup_plain(void **state) {
    static entry dummy = {"plain", NULL, AIM_OK};
    *state = &dummy;
    return setup(state);
}

static void train_steps(aim_model *m, aim_optimizer *o, const fx *f, size_t batch, int steps, float *first,
                        float *last) {
    for (int i = 0; i < steps; i++) {
        float l = 0;
        assert_int_equal(aim_model_zero_grad(m), AIM_OK);
        assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, f->x, XN(batch), batch), AIM_OK);
        assert_int_equal(aim_model_loss_sparse(m, 0, f->labels, batch, &l), AIM_OK);
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_OK);
        assert_int_equal(aim_optimizer_step_model(o, m, 0.1f), AIM_OK);
        if (i == 0) *first = l;
        *last = l;
    }
}

static void test_model_trains_after_refused_forward(void **state) {
    fx *f = *state;
    const float *o1 = NULL, *o2 = NULL;
    size_t n1 = 0, n2 = 0;
    float snap[MAXB * OUT], before[64], first = 0, last = 0;
    size_t np = snapshot_params(f->m, before);

    fwd(f->m, f, 2);
    assert_int_equal(aim_model_output(f->m, 0, &o1, &n1), AIM_OK);
    assert_int_equal(n1, 2 * OUT);
    memcpy(snap, o1, n1 * sizeof *o1);

    /* Refused calls in a row: none may disturb the last forward or the weights. */
    float l = -1.0f;
    assert_int_equal(aim_model_forward(f->m, AIM_MODE_TRAIN, f->x, XN(MAXB + 1), MAXB + 1), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_forward(f->m, AIM_MODE_TRAIN, f->x, 0, 0), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_forward(f->m, AIM_MODE_TRAIN, NULL, XN(2), 2), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_forward(f->m, AIM_MODE_TRAIN, f->x, XN(3) - 1, 3), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_forward(f->m, AIM_MODE_TRAIN, f->x, SIZE_MAX, 3), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_loss(f->m, 0, AIM_LOSS_MSE, f->targets, YN(2) + 1, &l), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_loss_sparse(f->m, 0, f->labels, 3, &l), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_set_output_grad(f->m, 0, f->grads, YN(2) - 1), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_backward(f->m, f->grads, YN(2) - 1), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_compile(f->m, NULL), AIM_ERR_INVALID_STATE);
    assert_int_equal(aim_model_add_activation(f->m, AIM_ACT_TANH, 0.0f), AIM_ERR_INVALID_STATE);
    assert_int_equal(aim_model_output(f->m, 0, &o2, &n2), AIM_OK);
    assert_int_equal(n2, n1);
    assert_memory_equal(o2, snap, n1 * sizeof *o2);
    assert_params_equal(f->m, before, np);
    assert_true(l == -1.0f);

    /* A loss of the kept forward still works: batch 2 is the last good one. */
    assert_int_equal(aim_model_loss_sparse(f->m, 0, f->labels, 2, &l), AIM_OK);
    assert_int_equal(aim_model_backward(f->m, NULL, 0), AIM_OK);

    /* And the model trains: the loss on a fixed batch goes down. */
    train_steps(f->m, f->sgd, f, MAXB, 40, &first, &last);
    assert_true(isfinite(last));
    assert_true(last < first);
}

static void test_model_trains_after_refused_optimizer_step(void **state) {
    fx *f = *state;
    float first = 0, last = 0;
    assert_int_equal(aim_optimizer_step_model(f->sgd, f->m, -1.0f), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_optimizer_step_model(f->sgd, f->m_other, 0.1f), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_optimizer_steps(f->sgd), 0);
    train_steps(f->m, f->sgd, f, MAXB, 40, &first, &last);
    assert_int_equal(aim_optimizer_steps(f->sgd), 40);
    assert_true(last < first);
}

static void test_model_last_error_after_shape_error(void **state) {
    fx *f = *state;
    assert_non_null(aim_model_last_error(f->m));
    assert_string_equal(aim_model_last_error(f->m), "");
    assert_int_equal(aim_model_forward(f->m, AIM_MODE_TRAIN, f->x, XN(MAXB + 1), MAXB + 1), AIM_ERR_SHAPE_MISMATCH);
    const char *msg = aim_model_last_error(f->m);
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    print_message("forward batch > max_batch: \"%s\"\n", msg);

    /* A successful call leaves the message of the last failed one. */
    char kept[512];
    snprintf(kept, sizeof kept, "%s", msg);
    float l = 0;
    fwd(f->m, f, 2);
    assert_string_equal(aim_model_last_error(f->m), kept);

    assert_int_equal(aim_model_loss(f->m, 0, AIM_LOSS_MSE, f->targets, YN(3), &l), AIM_ERR_SHAPE_MISMATCH);
    msg = aim_model_last_error(f->m);
    assert_true(strlen(msg) > 0);
    print_message("loss batch differs: \"%s\"\n", msg);
    if (!strstr(msg, "targets hold 9 floats") || !strstr(msg, "batch 2") || !strstr(msg, "needs 6"))
        fail_msg("message \"%s\" should say \"targets hold 9 floats\", \"batch 2\" and \"needs 6\"", msg);
    assert_non_null(strstr(msg, "batch"));

    /* Errors found while building name the layer ("layer 2 (dense): ..."):
     * with dense layers flattening their input, that is where a layer's
     * sizes are validated. */
    aim_dense_config dc;
    assert_int_equal(aim_dense_config_init(&dc, 0, AIM_ACT_RELU), AIM_OK);
    assert_int_equal(aim_model_add_dense(f->m_unc, &dc), AIM_ERR_INVALID_ARGUMENT);
    msg = aim_model_last_error(f->m_unc);
    print_message("add_dense with 0 units: \"%s\"\n", msg);
    assert_non_null(strstr(msg, "layer"));
    assert_int_equal(aim_model_add_activation(f->m_unc, (aim_activation)99, 0.0f), AIM_ERR_INVALID_ARGUMENT);
    msg = aim_model_last_error(f->m_unc);
    print_message("add_activation 99: \"%s\"\n", msg);
    assert_non_null(strstr(msg, "layer"));

    /* A shape error at build time names the layer and the dimension. */
    aim_conv2d_config cc;
    assert_int_equal(aim_conv2d_config_init(&cc, 3, 6, 3, AIM_ACT_RELU), AIM_OK);
    assert_int_equal(aim_model_add_conv2d(f->m_img_unc, &cc), AIM_ERR_SHAPE_MISMATCH);
    msg = aim_model_last_error(f->m_img_unc);
    print_message("conv2d kernel 6 over height 5: \"%s\"\n", msg);
    assert_non_null(strstr(msg, "layer 0"));
    assert_non_null(strstr(msg, "height"));
    assert_int_equal(aim_model_add_max_pool2d(f->m_unc, &(aim_pool2d_config){2, 2, 2, 2, 0, 0}),
                     AIM_ERR_SHAPE_MISMATCH);
    msg = aim_model_last_error(f->m_unc);
    print_message("max_pool2d after dense: \"%s\"\n", msg);
    assert_non_null(strstr(msg, "layer 2"));
    assert_non_null(strstr(msg, "rank"));
}

static void test_workspace_error_message(void **state) {
    /* A workspace sized for IN -> 5 -> OUT asked to serve IN -> 256 -> OUT: the
     * workspace (predict cannot write to its const model) says why. */
    fx *f = *state;
    aim_model *wide = build_wide();
    assert_string_equal(aim_workspace_last_error(f->ws), "");
    assert_int_equal(aim_model_predict(wide, f->ws, f->x, XN(1), 1, f->out, YN(1)), AIM_ERR_SHAPE_MISMATCH);
    const char *msg = aim_workspace_last_error(f->ws);
    assert_non_null(msg);
    print_message("workspace of other architecture: \"%s\"\n", msg);
    assert_true(strlen(msg) > 0);
    assert_int_equal(aim_model_predict(f->m, f->ws, f->x, XN(MAXB + 1), MAXB + 1, f->out, YN(MAXB + 1)),
                     AIM_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(aim_workspace_last_error(f->ws), "batch"));
    assert_int_equal(aim_model_predict(f->m, f->ws, f->x, XN(2), 2, f->out, YN(2) + 1), AIM_ERR_SHAPE_MISMATCH);
    msg = aim_workspace_last_error(f->ws);
    print_message("predict output count too large: \"%s\"\n", msg);
    if (!strstr(msg, "predict: output has room for 7 floats") || !strstr(msg, "needs 6"))
        fail_msg("message \"%s\" should say \"predict: output has room for 7 floats\" and \"needs 6\"", msg);
    /* None of these wrote the const model. */
    assert_string_equal(aim_model_last_error(f->m), "");
    assert_string_equal(aim_model_last_error(wide), "");
    aim_model_free(wide);
    /* The workspace still serves its own model, as a fresh one would. */
    float ref[MAXB * OUT];
    aim_workspace *fresh = NULL;
    assert_int_equal(aim_workspace_create(f->m, NULL, MAXB, &fresh), AIM_OK);
    char kept[512];
    snprintf(kept, sizeof kept, "%s", aim_workspace_last_error(f->ws));
    assert_int_equal(aim_model_predict(f->m, fresh, f->x, XN(MAXB), MAXB, ref, ARRAY_LEN(ref)), AIM_OK);
    assert_int_equal(aim_model_predict(f->m, f->ws, f->x, XN(MAXB), MAXB, f->out, YN(MAXB)), AIM_OK);
    assert_memory_equal(f->out, ref, sizeof ref);
    /* The successful predict left the message of the last failed one. */
    assert_string_equal(aim_workspace_last_error(f->ws), kept);
    assert_string_equal(aim_workspace_last_error(fresh), "");
    aim_workspace_free(fresh);
}

static void test_other_objects_keep_messages(void **state) {
    fx *f = *state;
    const size_t d[2] = {5, 5};
    const size_t d6[1] = {6};
    char kept[512];
    assert_string_equal(aim_tensor_last_error(f->t23), "");
    assert_int_equal(aim_tensor_reshape(f->t23, 2, d), AIM_ERR_SHAPE_MISMATCH);
    assert_true(strlen(aim_tensor_last_error(f->t23)) > 0);
    /* A successful call leaves the message of the last failed one. */
    snprintf(kept, sizeof kept, "%s", aim_tensor_last_error(f->t23));
    assert_int_equal(aim_tensor_reshape(f->t23, 1, d6), AIM_OK);
    assert_int_equal(aim_tensor_fill(f->t23, 1.0f), AIM_OK);
    assert_string_equal(aim_tensor_last_error(f->t23), kept);

    assert_string_equal(aim_optimizer_last_error(f->sgd), "");
    assert_int_equal(aim_optimizer_step(f->sgd, f->buf, f->grads, 3, 0.1f), AIM_ERR_SHAPE_MISMATCH);
    assert_true(strlen(aim_optimizer_last_error(f->sgd)) > 0);
    snprintf(kept, sizeof kept, "%s", aim_optimizer_last_error(f->sgd));
    assert_int_equal(aim_optimizer_step(f->sgd, f->buf, f->grads, f->nparams, 0.1f), AIM_OK);
    assert_string_equal(aim_optimizer_last_error(f->sgd), kept);
}

static void test_compile_refused_then_compiles(void **state) {
    fx *f = *state;
    aim_compile_config cc;
    float first = 0, last = 0;
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = 0;
    assert_int_equal(aim_model_compile(f->m_unc, &cc), AIM_ERR_INVALID_ARGUMENT);
    assert_true(strlen(aim_model_last_error(f->m_unc)) > 0);
    cc.max_batch = SIZE_MAX / 2; /* too large: OVERFLOW per the header (see the table) */
    assert_true(aim_model_compile(f->m_unc, &cc) != AIM_OK);
    /* Layers can still be added, then compile succeeds. */
    assert_int_equal(aim_model_add_activation(f->m_unc, AIM_ACT_IDENTITY, 0.0f), AIM_OK);
    cc.max_batch = MAXB;
    cc.seed = 11;
    assert_int_equal(aim_model_compile(f->m_unc, &cc), AIM_OK);
    /* Same architecture and seed as f->m (plus an identity layer without
     * parameters): same initial weights. */
    float a[64], b[64];
    size_t na = snapshot_params(f->m_unc, a), nb = snapshot_params(f->m, b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof(float));
    train_steps(f->m_unc, f->sgd, f, MAXB, 40, &first, &last);
    assert_true(last < first);
}

/* ------------------------------------------------------------------------- */
/* The issue's four reported cases                                           */
/* ------------------------------------------------------------------------- */

/* The issue: a caller passed buffers shorter than the model's shapes (a
 * 100-float image to a 784-input model, 32 targets for a batch of 32 with 10
 * outputs, labels of another batch), and the library read past them. Each
 * case below now gets AIM_ERR_SHAPE_MISMATCH with both numbers in words, and
 * reads nothing: the short buffer is allocated with exactly the size the
 * caller states, once with malloc (AddressSanitizer reports a read past it
 * in `make test SANITIZE=1`) and once ending at a PROT_NONE page (a read past
 * it faults in any build). */

#define ISSUE_IN 784
#define ISSUE_OUT 10
#define ISSUE_BATCH 32

typedef enum short_kind { SHORT_MALLOC, SHORT_GUARD_PAGE } short_kind;
static const char *const short_kind_name[] = {"malloc", "guard page"};

typedef struct short_buf {
    void *p;       /* the `bytes` usable bytes */
    void *map;     /* SHORT_GUARD_PAGE: the mapping, its last page PROT_NONE */
    size_t map_len;
} short_buf;

/* `bytes` bytes whose first byte past the end is unreadable (guard page) or
 * outside the allocation (malloc). */
static void *short_alloc(short_buf *b, short_kind kind, size_t bytes) {
    memset(b, 0, sizeof *b);
    if (kind == SHORT_MALLOC) {
        b->p = malloc(bytes);
        assert_non_null(b->p);
        return b->p;
    }
    const long ps = sysconf(_SC_PAGESIZE);
    assert_true(ps > 0);
    const size_t page = (size_t)ps, pages = (bytes + page - 1) / page;
    b->map_len = (pages + 1) * page;
    int fd = open("/dev/zero", O_RDWR);
    assert_true(fd >= 0);
    b->map = mmap(NULL, b->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    assert_true(b->map != MAP_FAILED);
    unsigned char *guard = (unsigned char *)b->map + pages * page;
    assert_int_equal(mprotect(guard, page, PROT_NONE), 0);
    b->p = guard - bytes;
    return b->p;
}

static void short_free(short_buf *b) {
    if (b->map) munmap(b->map, b->map_len);
    else free(b->p);
    memset(b, 0, sizeof *b);
}

/* 784 -> Dense 10, max_batch 32. */
static aim_model *issue_model(void) {
    const size_t dims[1] = {ISSUE_IN};
    aim_model *m = NULL;
    aim_dense_config dc;
    aim_compile_config cc;
    CHECK_OK(aim_model_create(NULL, 1, dims, &m));
    CHECK_OK(aim_dense_config_init(&dc, ISSUE_OUT, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = ISSUE_BATCH;
    CHECK_OK(aim_model_compile(m, &cc));
    return m;
}

static void assert_says(const char *msg, const char *what) {
    if (!strstr(msg, what)) fail_msg("message \"%s\" should say \"%s\"", msg, what);
}

/* A full batch of inputs on the heap, exactly ISSUE_BATCH x 784 floats. */
static float *issue_inputs(size_t batch) {
    float *x = malloc(batch * ISSUE_IN * sizeof *x);
    assert_non_null(x);
    fill_uniform(x, batch * ISSUE_IN, 9, 0.0f, 1.0f);
    return x;
}

static void test_issue_case_1_forward_100_floats_on_784_input_model(void **state) {
    (void)state;
    for (int kind = SHORT_MALLOC; kind <= SHORT_GUARD_PAGE; kind++) {
        aim_model *m = issue_model();
        short_buf b;
        float *x = short_alloc(&b, (short_kind)kind, 100 * sizeof(float));
        fill_uniform(x, 100, 8, 0.0f, 1.0f);
        assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, x, 100, 1), AIM_ERR_SHAPE_MISMATCH);
        const char *msg = aim_model_last_error(m);
        print_message("%s: \"%s\"\n", short_kind_name[kind], msg);
        assert_says(msg, "forward: input holds 100 floats");
        assert_says(msg, "batch 1 of shape (784)");
        assert_says(msg, "needs 784");
        /* Nothing ran: no output, no training forward to differentiate. */
        const float *o = NULL;
        size_t n = 0;
        assert_int_equal(aim_model_output(m, 0, &o, &n), AIM_ERR_INVALID_STATE);
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
        /* The same in inference, and with the batch that 100 floats do not make either. */
        assert_int_equal(aim_model_forward(m, AIM_MODE_INFERENCE, x, 100, 1), AIM_ERR_SHAPE_MISMATCH);
        assert_int_equal(aim_model_forward_multi(m, AIM_MODE_TRAIN, (const float *const *)&x,
                                                 &(const size_t){100}, 1, 1),
                         AIM_ERR_SHAPE_MISMATCH);
        short_free(&b);
        aim_model_free(m);
    }
}

static void test_issue_case_2_predict_100_floats_on_784_input_model(void **state) {
    (void)state;
    for (int kind = SHORT_MALLOC; kind <= SHORT_GUARD_PAGE; kind++) {
        aim_model *m = issue_model();
        aim_workspace *ws = NULL;
        CHECK_OK(aim_workspace_create(m, NULL, 1, &ws));
        short_buf bx, by;
        float *x = short_alloc(&bx, (short_kind)kind, 100 * sizeof(float));
        float *y = short_alloc(&by, (short_kind)kind, ISSUE_OUT * sizeof(float));
        fill_uniform(x, 100, 8, 0.0f, 1.0f);
        for (size_t i = 0; i < ISSUE_OUT; i++) y[i] = -42.0f;
        assert_int_equal(aim_model_predict(m, ws, x, 100, 1, y, ISSUE_OUT), AIM_ERR_SHAPE_MISMATCH);
        const char *msg = aim_workspace_last_error(ws);
        print_message("%s: \"%s\"\n", short_kind_name[kind], msg);
        assert_says(msg, "predict: input holds 100 floats");
        assert_says(msg, "batch 1 of shape (784)");
        assert_says(msg, "needs 784");
        for (size_t i = 0; i < ISSUE_OUT; i++) assert_true(y[i] == -42.0f); /* nothing written */
        assert_string_equal(aim_model_last_error(m), "");                /* the model is const */

        /* The converse: a full input and an output with room for 5 of the 10
         * floats: refused, and nothing written past the 5 (the guard page
         * would fault on a write too). */
        short_buf bx2, by2;
        float *x2 = short_alloc(&bx2, (short_kind)kind, ISSUE_IN * sizeof(float));
        float *y2 = short_alloc(&by2, (short_kind)kind, 5 * sizeof(float));
        fill_uniform(x2, ISSUE_IN, 8, 0.0f, 1.0f);
        for (size_t i = 0; i < 5; i++) y2[i] = -42.0f;
        assert_int_equal(aim_model_predict(m, ws, x2, ISSUE_IN, 1, y2, 5), AIM_ERR_SHAPE_MISMATCH);
        msg = aim_workspace_last_error(ws);
        print_message("%s: \"%s\"\n", short_kind_name[kind], msg);
        assert_says(msg, "predict: output has room for 5 floats");
        assert_says(msg, "batch 1 of shape (10)");
        assert_says(msg, "needs 10");
        for (size_t i = 0; i < 5; i++) assert_true(y2[i] == -42.0f);
        /* The right counts work on the same buffers' sizes. */
        CHECK_OK(aim_model_predict(m, ws, x2, ISSUE_IN, 1, y, ISSUE_OUT));
        for (size_t i = 0; i < ISSUE_OUT; i++) assert_true(isfinite(y[i]) && y[i] != -42.0f);
        short_free(&by2);
        short_free(&bx2);
        short_free(&by);
        short_free(&bx);
        aim_workspace_free(ws);
        aim_model_free(m);
    }
}

static void test_issue_case_3_loss_32_targets_where_320_are_needed(void **state) {
    (void)state;
    char first[512] = "";
    for (int kind = SHORT_MALLOC; kind <= SHORT_GUARD_PAGE; kind++) {
        aim_model *m = issue_model();
        float *x = issue_inputs(ISSUE_BATCH);
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, ISSUE_BATCH * ISSUE_IN, ISSUE_BATCH));
        short_buf b;
        float *t = short_alloc(&b, (short_kind)kind, ISSUE_BATCH * sizeof(float));
        for (size_t i = 0; i < ISSUE_BATCH; i++) t[i] = (float)(i % 2);
        float loss = -1.0f;
        assert_int_equal(aim_model_loss(m, 0, AIM_LOSS_MSE, t, ISSUE_BATCH, &loss), AIM_ERR_SHAPE_MISMATCH);
        const char *msg = aim_model_last_error(m);
        print_message("%s: \"%s\"\n", short_kind_name[kind], msg);
        assert_says(msg, "loss: targets hold 32 floats");
        assert_says(msg, "needs 320");
        if (kind == SHORT_MALLOC) snprintf(first, sizeof first, "%s", msg);
        assert_true(loss == -1.0f);
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE); /* no gradient kept */
        /* Every float loss kind is refused alike. */
        assert_int_equal(aim_model_loss(m, 0, AIM_LOSS_BCE_WITH_LOGITS, t, ISSUE_BATCH, &loss),
                         AIM_ERR_SHAPE_MISMATCH);
        assert_int_equal(aim_model_loss(m, 0, AIM_LOSS_SOFTMAX_CROSS_ENTROPY, t, ISSUE_BATCH, &loss),
                         AIM_ERR_SHAPE_MISMATCH);
        assert_true(loss == -1.0f);
        short_free(&b);
        free(x);
        aim_model_free(m);
    }
    /* The rest of the documented message, checked once both runs are done. */
    assert_says(first, "batch 32 of output 0 of shape (10)");
}

static void test_issue_case_4_loss_sparse_labels_count_differs_from_batch(void **state) {
    (void)state;
    for (int kind = SHORT_MALLOC; kind <= SHORT_GUARD_PAGE; kind++) {
        aim_model *m = issue_model();
        float *x = issue_inputs(ISSUE_BATCH);
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, ISSUE_BATCH * ISSUE_IN, ISSUE_BATCH));
        /* 31 labels for a forward of 32. */
        short_buf b;
        int32_t *labels = short_alloc(&b, (short_kind)kind, (ISSUE_BATCH - 1) * sizeof(int32_t));
        for (size_t i = 0; i < ISSUE_BATCH - 1; i++) labels[i] = (int32_t)(i % ISSUE_OUT);
        float loss = -1.0f;
        assert_int_equal(aim_model_loss_sparse(m, 0, labels, ISSUE_BATCH - 1, &loss), AIM_ERR_SHAPE_MISMATCH);
        const char *msg = aim_model_last_error(m);
        print_message("%s: \"%s\"\n", short_kind_name[kind], msg);
        assert_says(msg, "loss_sparse: labels hold 31");
        assert_says(msg, "the last forward's batch is 32");
        assert_true(loss == -1.0f);
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
        /* 33 labels for a forward of 32 are refused too. */
        short_buf b2;
        int32_t *more = short_alloc(&b2, (short_kind)kind, (ISSUE_BATCH + 1) * sizeof(int32_t));
        for (size_t i = 0; i < ISSUE_BATCH + 1; i++) more[i] = (int32_t)(i % ISSUE_OUT);
        assert_int_equal(aim_model_loss_sparse(m, 0, more, ISSUE_BATCH + 1, &loss), AIM_ERR_SHAPE_MISMATCH);
        assert_says(aim_model_last_error(m), "labels hold 33");
        /* And the 31 labels go with a forward of 31. */
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, (ISSUE_BATCH - 1) * ISSUE_IN, ISSUE_BATCH - 1));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels, ISSUE_BATCH - 1, &loss));
        assert_true(isfinite(loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        short_free(&b2);
        short_free(&b);
        free(x);
        aim_model_free(m);
    }
}

static void test_issue_last_error_is_the_last_failed_calls(void **state) {
    /* The rule: an object's last_error is the message of its last failed
     * call; successful calls leave it as it was; it is "" until a call fails. */
    (void)state;
    aim_model *m = issue_model();
    float *x = issue_inputs(ISSUE_BATCH);
    float *t = malloc(ISSUE_BATCH * ISSUE_OUT * sizeof *t);
    int32_t labels[ISSUE_BATCH];
    float loss = 0;
    char first[512];
    assert_non_null(t);
    for (size_t i = 0; i < ISSUE_BATCH * ISSUE_OUT; i++) t[i] = (float)(i % 3 == 0);
    for (size_t i = 0; i < ISSUE_BATCH; i++) labels[i] = (int32_t)(i % ISSUE_OUT);
    assert_string_equal(aim_model_last_error(m), "");

    /* Case 1 fails: its message. */
    assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, x, 100, 1), AIM_ERR_SHAPE_MISMATCH);
    snprintf(first, sizeof first, "%s", aim_model_last_error(m));
    assert_says(first, "holds 100 floats");
    /* A whole successful training step leaves it. */
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, ISSUE_BATCH * ISSUE_IN, ISSUE_BATCH));
    CHECK_OK(aim_model_loss(m, 0, AIM_LOSS_MSE, t, ISSUE_BATCH * ISSUE_OUT, &loss));
    CHECK_OK(aim_model_loss_sparse(m, 0, labels, ARRAY_LEN(labels), &loss));
    CHECK_OK(aim_model_backward(m, NULL, 0));
    const float *o = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_output(m, 0, &o, &n));
    assert_string_equal(aim_model_last_error(m), first);

    /* Case 3 fails: now its message, which a success leaves in turn. */
    assert_int_equal(aim_model_loss(m, 0, AIM_LOSS_MSE, t, ISSUE_BATCH, &loss), AIM_ERR_SHAPE_MISMATCH);
    char second[512];
    snprintf(second, sizeof second, "%s", aim_model_last_error(m));
    assert_says(second, "needs 320");
    assert_string_not_equal(second, first);
    CHECK_OK(aim_model_loss(m, 0, AIM_LOSS_MSE, t, ISSUE_BATCH * ISSUE_OUT, &loss));
    assert_string_equal(aim_model_last_error(m), second);

    /* Case 4 fails: its message. */
    assert_int_equal(aim_model_loss_sparse(m, 0, labels, ISSUE_BATCH - 1, &loss), AIM_ERR_SHAPE_MISMATCH);
    assert_says(aim_model_last_error(m), "labels hold 31");

    /* Case 2 goes to the workspace: the (const) model keeps case 4's message. */
    char third[512];
    snprintf(third, sizeof third, "%s", aim_model_last_error(m));
    aim_workspace *ws = NULL;
    float y[ISSUE_OUT];
    CHECK_OK(aim_workspace_create(m, NULL, 1, &ws));
    assert_string_equal(aim_workspace_last_error(ws), "");
    assert_int_equal(aim_model_predict(m, ws, x, 100, 1, y, ARRAY_LEN(y)), AIM_ERR_SHAPE_MISMATCH);
    assert_says(aim_workspace_last_error(ws), "predict: input holds 100 floats");
    char ws_msg[512];
    snprintf(ws_msg, sizeof ws_msg, "%s", aim_workspace_last_error(ws));
    CHECK_OK(aim_model_predict(m, ws, x, ISSUE_IN, 1, y, ARRAY_LEN(y)));
    assert_string_equal(aim_workspace_last_error(ws), ws_msg);
    assert_string_equal(aim_model_last_error(m), third);

    aim_workspace_free(ws);
    free(t);
    free(x);
    aim_model_free(m);
}

/* ------------------------------------------------------------------------- */

static struct CMUnitTest table_tests[N_ENTRIES];

int main(void) {
    for (size_t i = 0; i < N_ENTRIES; i++) {
        table_tests[i].name = table[i].name;
        table_tests[i].test_func = run_entry;
        table_tests[i].setup_func = setup;
        table_tests[i].teardown_func = teardown;
        table_tests[i].initial_state = (void *)(uintptr_t)&table[i];
    }
    const struct CMUnitTest other_tests[] = {
        cmocka_unit_test(test_every_public_function_has_an_entry),
        cmocka_unit_test(test_every_function_in_the_header_has_an_entry),
        cmocka_unit_test_setup_teardown(test_model_trains_after_refused_forward, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_model_trains_after_refused_optimizer_step, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_model_last_error_after_shape_error, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_workspace_error_message, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_other_objects_keep_messages, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_compile_refused_then_compiles, setup_plain, teardown),
    };
    const struct CMUnitTest issue_tests[] = {
        cmocka_unit_test(test_issue_case_1_forward_100_floats_on_784_input_model),
        cmocka_unit_test(test_issue_case_2_predict_100_floats_on_784_input_model),
        cmocka_unit_test(test_issue_case_3_loss_32_targets_where_320_are_needed),
        cmocka_unit_test(test_issue_case_4_loss_sparse_labels_count_differs_from_batch),
        cmocka_unit_test(test_issue_last_error_is_the_last_failed_calls),
    };
    int failed = cmocka_run_group_tests_name("bad_input_table", table_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("bad_input_after_refusal", other_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("issue_reported_cases", issue_tests, NULL, NULL);
    return failed;
}
