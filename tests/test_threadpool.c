/* The explicit thread pool (include/aimodel.h, "aim_threadpool"): a model or
 * a workspace given a pool of N threads splits a large enough batch into N
 * slices, runs the whole layer stack on each slice on its own thread, and
 * sums the slices' parameter gradients into the model's in a fixed order.
 *
 * What is checked, for an MLP (784 -> 128 relu -> 64 relu -> 10), a CNN
 * (1x12x12 -> conv 8 3x3 relu -> max pool 2 -> flatten -> dense 10) and a
 * two-layer LSTM (T=6, F=5, hidden 16 -> dense 4), all trained with softmax
 * cross-entropy on integer labels:
 *  - pool basics: thread counts, argument errors, free(NULL), a pool of 1;
 *  - training equivalence with and without a pool (2 threads, and 3 threads
 *    on an odd batch so the slices are uneven): loss, parameter and input
 *    gradients within a tolerance, and then bit for bit against a sliced
 *    reference computed without a pool (see sliced_reference());
 *  - Adam steps keep the two models' parameters within a tolerance;
 *  - determinism: two models on two separate pools stay bit-identical;
 *  - LSTM initial and final states with a pool (the initial rows are sliced
 *    per worker with a stride);
 *  - predict through a workspace with a pool, at batch 1 and a large batch
 *    (within a tolerance: OpenBLAS may round a row differently depending on
 *    how many rows one GEMM holds, so slicing is not bit-identical here);
 *  - the state rules of aim_model_set_threadpool() and
 *    aim_workspace_set_threadpool();
 *  - no allocation in a training step or a predict once the pool is set;
 *  - every allocation failure in aim_threadpool_create(),
 *    aim_model_set_threadpool(), aim_workspace_set_threadpool() and a
 *    compile with a pool is reported, leaks nothing, and changes nothing;
 *  - several threads predicting on one model through one shared pool;
 *  - a batch that splits into fewer slices than the pool has threads, so
 *    each slice is larger than the per-thread scratch reserved by
 *    max_batch / threads;
 *  - a graph (two inputs, a residual add, a concat, two outputs with loss
 *    weights) trained on 2 and 3 threads against no pool within the
 *    tolerances, bit-identical on two pools of the same size, and
 *    aim_model_predict_multi() split against unsplit.
 *
 * Measured on x86-64 with OpenBLAS 0.3.21, the gradients with and without a
 * pool differ by at most about 6e-7 of the largest one, the predictions by
 * about 5e-7, the parameters after the Adam steps by about 2e-7: the
 * tolerances below leave a factor of 15 or more.
 *
 * Which batches split: parts_for() in src/model/exec.c keeps a slice only when it
 * carries at least 250k multiply-adds (MIN_SLICE_MACS), counted per sample as
 * conv weights x output pixels, LSTM weights x time steps, dense weights +
 * outputs. Per sample that is about 109.4k for the MLP, 9.6k for the CNN and
 * 21.9k for the LSTM, so the batches below (MLP 16 / 13, CNN 64 / 85, LSTM
 * 24 / 37 at 2 / 3 threads) split into exactly as many slices as threads,
 * with a margin. The bit-exact comparison with the sliced reference proves
 * that they did split (an unsplit batch sums its gradients in another order).
 *
 * cmocka is not thread-safe: the threads of the shared-pool tests only
 * count, the main thread asserts. tests/tsan.sh also builds this file with
 * ThreadSanitizer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"

/* Gradients with and without a pool are the same sums taken in another
 * order: without a pool one GEMM accumulates all the batch's rows; with N
 * slices each slice accumulates its rows and the N partial sums are added
 * afterwards. In float32 that changes results by a few units in the last
 * place of the partial sums, far below 1e-5 of the largest gradient. */
#define GRAD_TOL 1e-5
/* The losses differ only through the logits, which are computed row by row. */
#define LOSS_TOL 1e-6
/* Parameters after a few Adam steps from gradients that differ that little
 * (relative to the largest parameter). Adam's step is about lr * g / (|g| +
 * epsilon): with the default epsilon 1e-8 it is nearly lr * sign(g), so a
 * gradient within rounding of zero could flip a whole step of lr. The check
 * uses epsilon = ADAM_EPS instead, which bounds the step's slope in g by
 * lr / epsilon (1 here): then rounding-sized gradient differences make
 * rounding-sized parameter differences, whatever the data. */
#define PARAM_TOL 1e-5
#define ADAM_EPS 1e-3f

/* The LSTM's shape, also needed to lay out its states. */
#define LSTM_T 6
#define LSTM_F 5
#define LSTM_H 16
#define LSTM_LAYERS 2

/* ------------------------------------------------------------------------- */
/* The three networks                                                        */
/* ------------------------------------------------------------------------- */

typedef enum net_kind { NET_MLP = 0, NET_CNN = 1, NET_LSTM = 2, NET_LSTM_WIDE = 3 } net_kind;

static const char *net_name(net_kind k) {
    return k == NET_MLP ? "mlp" : k == NET_CNN ? "cnn" : k == NET_LSTM ? "lstm" : "wide lstm";
}

/* The layers, not compiled. */
static aim_model *build_net(net_kind kind, const aim_allocator *al) {
    aim_model *m = NULL;
    aim_dense_config dense;
    if (kind == NET_MLP) {
        const size_t dims[1] = {784};
        CHECK_OK(aim_model_create(al, 1, dims, &m));
        CHECK_OK(aim_dense_config_init(&dense, 128, AIM_ACT_RELU));
        CHECK_OK(aim_model_add_dense(m, &dense));
        CHECK_OK(aim_dense_config_init(&dense, 64, AIM_ACT_RELU));
        CHECK_OK(aim_model_add_dense(m, &dense));
        CHECK_OK(aim_dense_config_init(&dense, 10, AIM_ACT_IDENTITY));
        CHECK_OK(aim_model_add_dense(m, &dense));
    } else if (kind == NET_CNN) {
        const size_t dims[3] = {1, 12, 12};
        aim_conv2d_config conv;
        aim_pool2d_config pool;
        CHECK_OK(aim_model_create(al, 3, dims, &m));
        CHECK_OK(aim_conv2d_config_init(&conv, 8, 3, 3, AIM_ACT_RELU));
        CHECK_OK(aim_model_add_conv2d(m, &conv));
        CHECK_OK(aim_pool2d_config_init(&pool, 2, 2));
        CHECK_OK(aim_model_add_max_pool2d(m, &pool));
        CHECK_OK(aim_model_add_flatten(m));
        CHECK_OK(aim_dense_config_init(&dense, 10, AIM_ACT_IDENTITY));
        CHECK_OK(aim_model_add_dense(m, &dense));
    } else {
        /* The wide one has 64 input features: its backward scratch per
         * sample (two sequences of max(F, H) floats) outgrows its inference
         * scratch. */
        const size_t dims[2] = {LSTM_T, kind == NET_LSTM_WIDE ? 64 : LSTM_F};
        aim_lstm_config lstm;
        CHECK_OK(aim_model_create(al, 2, dims, &m));
        CHECK_OK(aim_lstm_config_init(&lstm, LSTM_H, LSTM_LAYERS));
        CHECK_OK(aim_model_add_lstm(m, &lstm));
        CHECK_OK(aim_dense_config_init(&dense, 4, AIM_ACT_IDENTITY));
        CHECK_OK(aim_model_add_dense(m, &dense));
    }
    return m;
}

static void compile_net(aim_model *m, size_t max_batch, int input_gradient, uint64_t seed) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = max_batch;
    cc.input_gradient = input_gradient;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(m, &cc));
}

static aim_model *make_net(net_kind kind, const aim_allocator *al, size_t max_batch, int input_gradient,
                           uint64_t seed) {
    aim_model *m = build_net(kind, al);
    compile_net(m, max_batch, input_gradient, seed);
    return m;
}

/* The test models are small (valgrind runs them too), so their pools split
 * from 250k multiply-adds per slice rather than the default 1M;
 * test_default_min_work checks the default itself. */
#define TEST_MIN_WORK 250000u

static aim_threadpool *make_pool(const aim_allocator *al, size_t threads) {
    aim_threadpool *p = NULL;
    CHECK_OK(aim_threadpool_create(al, threads, &p));
    assert_non_null(p);
    assert_int_equal(aim_threadpool_threads(p), threads);
    CHECK_OK(aim_threadpool_set_min_work(p, TEST_MIN_WORK));
    return p;
}

/* Random inputs in [-1, 1) and labels that vary with the sample and the seed. */
typedef struct batch_data {
    float *x;
    int32_t *labels;
    size_t batch, in, classes;
} batch_data;

static void make_data(batch_data *d, const aim_model *m, size_t batch, uint64_t seed) {
    d->batch = batch;
    d->in = aim_model_input_size(m);
    d->classes = aim_model_output_size(m);
    d->x = malloc(batch * d->in * sizeof *d->x);
    d->labels = malloc(batch * sizeof *d->labels);
    assert_non_null(d->x);
    assert_non_null(d->labels);
    fill_uniform(d->x, batch * d->in, seed, -1.0f, 1.0f);
    for (size_t b = 0; b < batch; b++) d->labels[b] = (int32_t)((b * 7u + seed) % d->classes);
}

static void free_data(batch_data *d) {
    free(d->x);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* zero_grad, forward (train), sparse cross-entropy, backward; the loss. */
static float forward_backward(aim_model *m, const batch_data *d) {
    float loss = NAN;
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d->x, d->batch * d->in, d->batch));
    CHECK_OK(aim_model_loss_sparse(m, 0, d->labels, d->batch, &loss));
    CHECK_OK(aim_model_backward(m, NULL, 0));
    assert_true(isfinite(loss));
    return loss;
}

/* The gradient with respect to input 0 of the last backward, which must hold `expect` floats. */
static const float *input_grad_of(const aim_model *m, size_t expect) {
    const float *g = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_input_gradient(m, 0, &g, &n));
    assert_int_equal(n, expect);
    return g;
}

static float *params_of(aim_model *m, size_t *count) {
    float *p = NULL;
    CHECK_OK(aim_model_parameters(m, &p, count));
    return p;
}

static float *grads_of(aim_model *m, size_t *count) {
    float *g = NULL;
    CHECK_OK(aim_model_gradients(m, &g, count));
    return g;
}

static float *copy_floats(const float *src, size_t n) {
    float *c = malloc(n * sizeof *c);
    assert_non_null(c);
    memcpy(c, src, n * sizeof *c);
    return c;
}

/* max |a - b| / max |b|: an error relative to the largest value, which is how
 * a reordered sum's error scales (an element near zero from cancellation can
 * have a large error relative to itself, not to the terms it sums). */
static double scaled_error(const float *a, const float *b, size_t n) {
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double s = fabs((double)b[i]);
        if (s > scale) scale = s;
    }
    if (scale == 0.0) scale = 1.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / scale;
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

static int any_nonzero(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return 1;
    return 0;
}

/* Rows [*b0, *b0 + *nb) of slice w of a batch cut into `parts` slices: the
 * library's split (src/model/exec.c, aim__split()): near-equal slices, the first
 * batch % parts of them one row larger. */
static void slice_of(size_t batch, size_t parts, size_t w, size_t *b0, size_t *nb) {
    const size_t q = batch / parts, r = batch % parts;
    *nb = q + (w < r);
    *b0 = w * q + (w < r ? w : r);
}

/* Copies rows [b0, b0 + nb) of each layer of a (LSTM_LAYERS, batch, H) state
 * into a (LSTM_LAYERS, nb, H) one. */
static void state_rows(const float *full, size_t batch, size_t b0, size_t nb, float *part) {
    for (size_t l = 0; l < LSTM_LAYERS; l++)
        memcpy(part + l * nb * LSTM_H, full + (l * batch + b0) * LSTM_H, nb * LSTM_H * sizeof *part);
}

static void state_rows_back(const float *part, size_t batch, size_t b0, size_t nb, float *full) {
    for (size_t l = 0; l < LSTM_LAYERS; l++)
        memcpy(full + (l * batch + b0) * LSTM_H, part + l * nb * LSTM_H, nb * LSTM_H * sizeof *part);
}

/* What a pool of `parts` threads computes, recomputed on model `m` that has
 * no pool: each slice's forward and backward run as separate calls at the
 * slice's batch size, the loss gradient is that of the whole batch (from the
 * slices' logits), and the slices' parameter gradients are summed in slice
 * order, as the pool's reduction does. Every call has the arguments the
 * pool's worker gives it, so the results must be the same bits.
 * For the LSTM, h0/c0 (LSTM_LAYERS, batch, H), when not NULL, are the initial
 * states of layer 0 and h_out/c_out receive its final states.
 * Writes grads (n_params), igrad (batch * in, if not NULL) and *loss. */
static void sliced_reference(aim_model *m, const batch_data *d, size_t parts, const float *h0, const float *c0,
                             float *grads, float *igrad, float *loss, float *h_out, float *c_out) {
    const size_t n_out = d->batch * d->classes;
    float *logits = malloc(n_out * sizeof *logits);
    float *dy = malloc(n_out * sizeof *dy);
    float *sh = malloc(LSTM_LAYERS * d->batch * LSTM_H * sizeof *sh);
    float *sc = malloc(LSTM_LAYERS * d->batch * LSTM_H * sizeof *sc);
    assert_non_null(logits);
    assert_non_null(dy);
    assert_non_null(sh);
    assert_non_null(sc);
    size_t count = 0;
    float *g = grads_of(m, &count);

    for (int pass = 0; pass < 2; pass++) {
        for (size_t w = 0; w < parts; w++) {
            size_t b0, nb;
            slice_of(d->batch, parts, w, &b0, &nb);
            if (h0) {
                state_rows(h0, d->batch, b0, nb, sh);
                state_rows(c0, d->batch, b0, nb, sc);
                CHECK_OK(aim_model_lstm_set_state(m, 0, sh, LSTM_LAYERS * nb * LSTM_H, sc, LSTM_LAYERS * nb * LSTM_H, nb));
            }
            CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d->x + b0 * d->in, nb * d->in, nb));
            if (pass == 0) {
                const float *out = NULL;
                size_t n = 0;
                CHECK_OK(aim_model_output(m, 0, &out, &n));
                assert_int_equal(n, nb * d->classes);
                memcpy(logits + b0 * d->classes, out, n * sizeof *out);
                if (h_out) {
                    CHECK_OK(aim_model_lstm_final_state(m, 0, sh, LSTM_LAYERS * nb * LSTM_H, sc, LSTM_LAYERS * nb * LSTM_H, nb));
                    state_rows_back(sh, d->batch, b0, nb, h_out);
                    state_rows_back(sc, d->batch, b0, nb, c_out);
                }
                continue;
            }
            CHECK_OK(aim_model_zero_grad(m));
            CHECK_OK(aim_model_backward(m, dy + b0 * d->classes, nb * d->classes));
            if (w == 0) memcpy(grads, g, count * sizeof *g);
            else
                for (size_t i = 0; i < count; i++) grads[i] += g[i];
            if (igrad) {
                const float *ig = input_grad_of(m, nb * d->in);
                memcpy(igrad + b0 * d->in, ig, nb * d->in * sizeof *ig);
            }
        }
        if (pass == 0) CHECK_OK(aim_loss_sparse(logits, d->labels, d->batch, d->classes, loss, dy));
    }
    if (h0) CHECK_OK(aim_model_lstm_set_state(m, 0, NULL, 0, NULL, 0, 0));
    free(sc);
    free(sh);
    free(dy);
    free(logits);
}

/* ------------------------------------------------------------------------- */
/* 1. Pool basics                                                            */
/* ------------------------------------------------------------------------- */

static void test_pool_basics(void **state) {
    (void)state;
    aim_threadpool *p = NULL;

    /* 0: as many threads as online CPUs, at least 1 and at most 256. */
    CHECK_OK(aim_threadpool_create(NULL, 0, &p));
    assert_non_null(p);
    assert_true(aim_threadpool_threads(p) >= 1);
    assert_true(aim_threadpool_threads(p) <= 256);
    assert_string_equal(aim_threadpool_last_error(p), "");
    aim_threadpool_free(p);

    /* Over 256 threads: refused, and `out` is not written. */
    static char sentinel;
    aim_threadpool *const untouched = (aim_threadpool *)(void *)&sentinel;
    p = untouched;
    assert_int_equal(aim_threadpool_create(NULL, 257, &p), AIM_ERR_UNSUPPORTED);
    assert_ptr_equal(p, untouched);
    assert_int_equal(aim_threadpool_create(NULL, SIZE_MAX, &p), AIM_ERR_UNSUPPORTED);
    assert_ptr_equal(p, untouched);

    /* NULL out, and an allocator missing a function. */
    assert_int_equal(aim_threadpool_create(NULL, 2, NULL), AIM_ERR_INVALID_ARGUMENT);
    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_allocator partial = ta.allocator;
    partial.reallocate = NULL;
    assert_int_equal(aim_threadpool_create(&partial, 2, &p), AIM_ERR_INVALID_ARGUMENT);
    assert_ptr_equal(p, untouched);
    assert_int_equal(ta.calls, 0);

    /* NULL is accepted everywhere a pool is only read or freed. */
    aim_threadpool_free(NULL);
    assert_int_equal(aim_threadpool_threads(NULL), 0);
    assert_string_equal(aim_threadpool_last_error(NULL), "");

    /* Explicit counts are kept as given. */
    p = make_pool(NULL, 2);
    aim_threadpool_free(p);
    p = make_pool(NULL, 5);
    aim_threadpool_free(p);

    /* A pool of 1 has no workers: a model given it runs the same code as
     * without a pool, so training and predicting give the same bits. */
    aim_threadpool *one = make_pool(&ta.allocator, 1);
    const long pool_calls = ta.calls;
    aim_model *plain = make_net(NET_MLP, NULL, 16, 0, 7);
    aim_model *pooled = make_net(NET_MLP, NULL, 16, 0, 7);
    CHECK_OK(aim_model_set_threadpool(pooled, one));
    batch_data d;
    make_data(&d, plain, 16, 3);
    float la = forward_backward(plain, &d), lb = forward_backward(pooled, &d);
    assert_memory_equal(&la, &lb, sizeof la);
    size_t n = 0, n2 = 0;
    float *ga = grads_of(plain, &n), *gb = grads_of(pooled, &n2);
    assert_int_equal(n, n2);
    assert_true(any_nonzero(ga, n));
    assert_memory_equal(ga, gb, n * sizeof *ga);

    aim_workspace *wa = NULL, *wb = NULL;
    CHECK_OK(aim_workspace_create(plain, NULL, 16, &wa));
    CHECK_OK(aim_workspace_create(plain, NULL, 16, &wb));
    CHECK_OK(aim_workspace_set_threadpool(wb, plain, one));
    float oa[16 * 10], ob[16 * 10];
    CHECK_OK(aim_model_predict(plain, wa, d.x, d.batch * d.in, 16, oa, ARRAY_LEN(oa)));
    CHECK_OK(aim_model_predict(plain, wb, d.x, d.batch * d.in, 16, ob, ARRAY_LEN(ob)));
    assert_memory_equal(oa, ob, sizeof oa);
    /* A pool of 1 reserves no per-thread scratch: giving it to the model and
     * the workspace allocated nothing from its allocator. */
    assert_true(pool_calls >= 1);
    assert_int_equal(ta.calls, pool_calls);
    aim_workspace_free(wb);
    aim_workspace_free(wa);
    aim_model_free(pooled);
    aim_model_free(plain);
    aim_threadpool_free(one);
    assert_int_equal(ta.live, 0);
    free_data(&d);
}

/* ------------------------------------------------------------------------- */
/* 2. Training with and without a pool                                       */
/* ------------------------------------------------------------------------- */

typedef struct equiv_case {
    net_kind kind;
    size_t threads, batch;
} equiv_case;

/* The batches split into `threads` slices (see the top of the file). */
static const equiv_case EQUIV_CASES[] = {
    {NET_MLP, 2, 16}, {NET_MLP, 3, 13}, /* 5, 4, 4 */
    {NET_CNN, 2, 64}, {NET_CNN, 3, 85}, /* 29, 28, 28 */
    {NET_LSTM, 2, 24}, {NET_LSTM, 3, 37}, /* 13, 12, 12 */
};

#define ADAM_STEPS 3

static void check_equivalence(const equiv_case *c) {
    const uint64_t seed = 100u + (uint64_t)c->kind;
    aim_threadpool *pool = make_pool(NULL, c->threads);
    aim_model *plain = make_net(c->kind, NULL, c->batch, 1, seed);
    aim_model *pooled = make_net(c->kind, NULL, c->batch, 1, seed);
    aim_model *ref = make_net(c->kind, NULL, c->batch, 1, seed);
    CHECK_OK(aim_model_set_threadpool(pooled, pool));
    size_t n = 0, n2 = 0;
    float *pa = params_of(plain, &n), *pb = params_of(pooled, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(pa, pb, n * sizeof *pa); /* same seed, same weights */

    batch_data d;
    make_data(&d, plain, c->batch, seed + 1);
    const size_t in_n = d.batch * d.in;

    /* One step: loss, parameter and input gradients agree within tolerance. */
    const float la = forward_backward(plain, &d), lb = forward_backward(pooled, &d);
    const float *ia = input_grad_of(plain, d.batch * d.in), *ib = input_grad_of(pooled, d.batch * d.in);
    float *ga = grads_of(plain, &n), *gb = grads_of(pooled, &n2);
    assert_true(any_nonzero(ga, n));
    assert_true(any_nonzero(ia, in_n));
    const double e_loss = fabs((double)la - (double)lb) / fabs((double)la);
    const double e_grad = scaled_error(gb, ga, n), e_in = scaled_error(ib, ia, in_n);
    print_message("%s, %zu threads, batch %zu: loss error %.2g, gradient error %.2g, input gradient error %.2g\n",
                  net_name(c->kind), c->threads, c->batch, e_loss, e_grad, e_in);
    assert_true(e_loss <= LOSS_TOL);
    assert_true(e_grad <= GRAD_TOL);
    assert_true(e_in <= GRAD_TOL);

    /* Exactly what the slices compute, summed in slice order. */
    float *gs = malloc(n * sizeof *gs), *is = malloc(in_n * sizeof *is);
    float ls = NAN;
    assert_non_null(gs);
    assert_non_null(is);
    sliced_reference(ref, &d, c->threads, NULL, NULL, gs, is, &ls, NULL, NULL);
    assert_memory_equal(&ls, &lb, sizeof ls);
    if (memcmp(gs, gb, n * sizeof *gs) != 0)
        fail_msg("%s, %zu threads: gradients differ from the sliced reference (error %.3g)", net_name(c->kind),
                 c->threads, scaled_error(gb, gs, n));
    assert_memory_equal(is, ib, in_n * sizeof *is);

    /* A few Adam steps on fresh batches keep the parameters together. */
    aim_optimizer *oa = NULL, *ob = NULL;
    aim_adam_config ac;
    CHECK_OK(aim_adam_config_init(&ac));
    ac.epsilon = ADAM_EPS;
    CHECK_OK(aim_adam_create(NULL, &ac, n, &oa));
    CHECK_OK(aim_adam_create(NULL, &ac, n, &ob));
    float *initial = copy_floats(pa, n);
    for (size_t step = 0; step < ADAM_STEPS; step++) {
        if (step) {
            free_data(&d);
            make_data(&d, plain, c->batch, seed + 10 + step);
            (void)forward_backward(plain, &d);
            (void)forward_backward(pooled, &d);
        }
        CHECK_OK(aim_optimizer_step_model(oa, plain, 1e-3f));
        CHECK_OK(aim_optimizer_step_model(ob, pooled, 1e-3f));
    }
    assert_true(memcmp(initial, pa, n * sizeof *pa) != 0);
    const double e_param = scaled_error(pb, pa, n);
    print_message("%s, %zu threads: parameter error after %d Adam steps %.2g\n", net_name(c->kind), c->threads,
                  ADAM_STEPS, e_param);
    assert_true(e_param <= PARAM_TOL);

    free(initial);
    aim_optimizer_free(ob);
    aim_optimizer_free(oa);
    free(is);
    free(gs);
    free_data(&d);
    aim_model_free(ref);
    aim_model_free(pooled);
    aim_model_free(plain);
    aim_threadpool_free(pool);
}

static void training_cases(net_kind kind) {
    for (size_t i = 0; i < ARRAY_LEN(EQUIV_CASES); i++)
        if (EQUIV_CASES[i].kind == kind) check_equivalence(&EQUIV_CASES[i]);
}

/* The default min_work (1M multiply-adds per slice): this MLP does about
 * 109k per sample, so batch 16 on 2 threads (0.87M per slice) stays on the
 * caller (the same bits as no pool) and batch 32 (1.75M per slice) is split
 * (the bits of the sliced reference). */
static void check_default_split(size_t batch, int split) {
    const uint64_t seed = 300u + batch;
    aim_threadpool *pool = NULL;
    CHECK_OK(aim_threadpool_create(NULL, 2, &pool));
    aim_model *plain = make_net(NET_MLP, NULL, batch, 0, seed);
    aim_model *pooled = make_net(NET_MLP, NULL, batch, 0, seed);
    aim_model *ref = make_net(NET_MLP, NULL, batch, 0, seed);
    CHECK_OK(aim_model_set_threadpool(pooled, pool));
    batch_data d;
    make_data(&d, plain, batch, seed + 1);
    const float la = forward_backward(plain, &d), lb = forward_backward(pooled, &d);
    size_t n = 0, n2 = 0;
    float *ga = grads_of(plain, &n), *gb = grads_of(pooled, &n2);
    assert_int_equal(n, n2);
    assert_true(any_nonzero(ga, n));
    if (!split) {
        assert_memory_equal(&la, &lb, sizeof la);
        assert_memory_equal(ga, gb, n * sizeof *ga);
    } else {
        float *gs = malloc(n * sizeof *gs);
        float ls = NAN;
        assert_non_null(gs);
        sliced_reference(ref, &d, 2, NULL, NULL, gs, NULL, &ls, NULL, NULL);
        assert_memory_equal(gs, gb, n * sizeof *gs);
        assert_true(scaled_error(gb, ga, n) <= GRAD_TOL);
        free(gs);
    }
    free_data(&d);
    aim_model_free(ref);
    aim_model_free(pooled);
    aim_model_free(plain);
    aim_threadpool_free(pool);
}

static void test_default_min_work(void **state) {
    (void)state;
    check_default_split(16, 0);
    check_default_split(32, 1);
}

static void test_training_matches_without_pool_mlp(void **state) {
    (void)state;
    training_cases(NET_MLP);
}

static void test_training_matches_without_pool_cnn(void **state) {
    (void)state;
    training_cases(NET_CNN);
}

static void test_training_matches_without_pool_lstm(void **state) {
    (void)state;
    training_cases(NET_LSTM);
}

/* A forward in inference mode with a pool gives the model output of a
 * forward without (every output row is computed from its own input row). */
static void test_inference_forward_matches(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(EQUIV_CASES); i++) {
        const equiv_case *c = &EQUIV_CASES[i];
        aim_threadpool *pool = make_pool(NULL, c->threads);
        aim_model *plain = make_net(c->kind, NULL, c->batch, 0, 5);
        aim_model *pooled = make_net(c->kind, NULL, c->batch, 0, 5);
        CHECK_OK(aim_model_set_threadpool(pooled, pool));
        batch_data d;
        make_data(&d, plain, c->batch, 55);
        const float *oa = NULL, *ob = NULL;
        size_t na = 0, nb = 0;
        CHECK_OK(aim_model_forward(plain, AIM_MODE_INFERENCE, d.x, d.batch * d.in, d.batch));
        CHECK_OK(aim_model_forward(pooled, AIM_MODE_INFERENCE, d.x, d.batch * d.in, d.batch));
        CHECK_OK(aim_model_output(plain, 0, &oa, &na));
        CHECK_OK(aim_model_output(pooled, 0, &ob, &nb));
        assert_int_equal(na, d.batch * d.classes);
        assert_int_equal(nb, na);
        assert_true(any_nonzero(oa, na));
        assert_true(scaled_error(ob, oa, na) <= GRAD_TOL);
        /* No training forward: backward is refused with and without a pool. */
        assert_int_equal(aim_model_backward(pooled, oa, na), AIM_ERR_INVALID_STATE);
        free_data(&d);
        aim_model_free(pooled);
        aim_model_free(plain);
        aim_threadpool_free(pool);
    }
}

/* ------------------------------------------------------------------------- */
/* 3. Determinism                                                            */
/* ------------------------------------------------------------------------- */

#define DET_STEPS 20

static void check_determinism(const equiv_case *c) {
    aim_threadpool *p1 = make_pool(NULL, 2), *p2 = make_pool(NULL, 2);
    aim_model *m1 = make_net(c->kind, NULL, c->batch, 0, 21);
    aim_model *m2 = make_net(c->kind, NULL, c->batch, 0, 21);
    CHECK_OK(aim_model_set_threadpool(m1, p1));
    CHECK_OK(aim_model_set_threadpool(m2, p2));
    size_t n = 0, n2 = 0;
    float *w1 = params_of(m1, &n), *w2 = params_of(m2, &n2);
    float *initial = copy_floats(w1, n);
    aim_optimizer *o1 = NULL, *o2 = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, n, &o1));
    CHECK_OK(aim_adam_create(NULL, NULL, n, &o2));
    for (size_t step = 0; step < DET_STEPS; step++) {
        batch_data d;
        make_data(&d, m1, c->batch, 1000u + step);
        const float l1 = forward_backward(m1, &d), l2 = forward_backward(m2, &d);
        if (memcmp(&l1, &l2, sizeof l1) != 0)
            fail_msg("%s: step %zu: losses %.9g and %.9g on two 2-thread pools", net_name(c->kind), step,
                     (double)l1, (double)l2);
        CHECK_OK(aim_optimizer_step_model(o1, m1, 1e-2f));
        CHECK_OK(aim_optimizer_step_model(o2, m2, 1e-2f));
        free_data(&d);
    }
    assert_int_equal(n, n2);
    assert_true(memcmp(initial, w1, n * sizeof *w1) != 0);
    if (memcmp(w1, w2, n * sizeof *w1) != 0)
        fail_msg("%s: parameters differ after %d steps on two 2-thread pools", net_name(c->kind), DET_STEPS);
    free(initial);
    aim_optimizer_free(o2);
    aim_optimizer_free(o1);
    aim_model_free(m2);
    aim_model_free(m1);
    aim_threadpool_free(p2);
    aim_threadpool_free(p1);
}

static void test_same_thread_count_is_bit_identical_mlp(void **state) {
    (void)state;
    check_determinism(&(equiv_case){NET_MLP, 2, 8}); /* 875k multiply-adds: 2 slices */
}

static void test_same_thread_count_is_bit_identical_cnn(void **state) {
    (void)state;
    check_determinism(&(equiv_case){NET_CNN, 2, 64});
}

static void test_same_thread_count_is_bit_identical_lstm(void **state) {
    (void)state;
    check_determinism(&(equiv_case){NET_LSTM, 2, 24});
}

/* ------------------------------------------------------------------------- */
/* 4. LSTM initial and final states with a pool                              */
/* ------------------------------------------------------------------------- */

static void check_lstm_states(size_t threads, size_t batch) {
    const size_t ns = LSTM_LAYERS * batch * LSTM_H;
    aim_threadpool *pool = make_pool(NULL, threads);
    aim_model *plain = make_net(NET_LSTM, NULL, batch, 1, 44);
    aim_model *pooled = make_net(NET_LSTM, NULL, batch, 1, 44);
    aim_model *ref = make_net(NET_LSTM, NULL, batch, 1, 44);
    CHECK_OK(aim_model_set_threadpool(pooled, pool));
    float *h0 = malloc(ns * sizeof *h0), *c0 = malloc(ns * sizeof *c0);
    float *ha = malloc(ns * sizeof *ha), *ca = malloc(ns * sizeof *ca);
    float *hb = malloc(ns * sizeof *hb), *cb = malloc(ns * sizeof *cb);
    float *hs = malloc(ns * sizeof *hs), *cs = malloc(ns * sizeof *cs);
    assert_true(h0 && c0 && ha && ca && hb && cb && hs && cs);
    /* Every row of every layer distinct, so a row read from the wrong slice
     * or layer changes the result. */
    fill_uniform(h0, ns, 401, -0.8f, 0.8f);
    fill_uniform(c0, ns, 402, -1.5f, 1.5f);
    CHECK_OK(aim_model_lstm_set_state(plain, 0, h0, ns, c0, ns, batch));
    CHECK_OK(aim_model_lstm_set_state(pooled, 0, h0, ns, c0, ns, batch));
    batch_data d;
    make_data(&d, plain, batch, 403);

    const float la = forward_backward(plain, &d), lb = forward_backward(pooled, &d);
    CHECK_OK(aim_model_lstm_final_state(plain, 0, ha, ns, ca, ns, batch));
    CHECK_OK(aim_model_lstm_final_state(pooled, 0, hb, ns, cb, ns, batch));
    size_t n = 0, n2 = 0;
    float *ga = grads_of(plain, &n), *gb = grads_of(pooled, &n2);
    const float *ia = input_grad_of(plain, d.batch * d.in), *ib = input_grad_of(pooled, d.batch * d.in);
    const double e_h = scaled_error(hb, ha, ns), e_c = scaled_error(cb, ca, ns);
    const double e_g = scaled_error(gb, ga, n), e_i = scaled_error(ib, ia, batch * d.in);
    print_message("lstm state, %zu threads, batch %zu: h error %.2g, c error %.2g, gradient error %.2g, "
                  "input gradient error %.2g\n",
                  threads, batch, e_h, e_c, e_g, e_i);
    assert_true(fabs((double)la - (double)lb) <= LOSS_TOL * fabs((double)la));
    assert_true(e_h <= GRAD_TOL);
    assert_true(e_c <= GRAD_TOL);
    assert_true(e_g <= GRAD_TOL);
    assert_true(e_i <= GRAD_TOL);

    /* The states matter: without them the final states differ clearly. */
    CHECK_OK(aim_model_lstm_set_state(plain, 0, NULL, 0, NULL, 0, 0));
    CHECK_OK(aim_model_forward(plain, AIM_MODE_TRAIN, d.x, batch * d.in, batch));
    CHECK_OK(aim_model_lstm_final_state(plain, 0, hs, ns, cs, ns, batch));
    assert_true(scaled_error(hs, ha, ns) > 1e-3);

    /* Bit for bit against the slices run one by one with their own rows of
     * h0 and c0. */
    float *gs = malloc(n * sizeof *gs), *is = malloc(batch * d.in * sizeof *is);
    float ls = NAN;
    assert_non_null(gs);
    assert_non_null(is);
    sliced_reference(ref, &d, threads, h0, c0, gs, is, &ls, hs, cs);
    assert_memory_equal(&ls, &lb, sizeof ls);
    assert_memory_equal(hs, hb, ns * sizeof *hs);
    assert_memory_equal(cs, cb, ns * sizeof *cs);
    if (memcmp(gs, gb, n * sizeof *gs) != 0)
        fail_msg("lstm state, %zu threads: gradients differ from the sliced reference (error %.3g)", threads,
                 scaled_error(gb, gs, n));
    assert_memory_equal(is, ib, batch * d.in * sizeof *is);

    /* The states stay set: a second step gives the same final states. */
    CHECK_OK(aim_model_forward(pooled, AIM_MODE_TRAIN, d.x, batch * d.in, batch));
    CHECK_OK(aim_model_lstm_final_state(pooled, 0, hs, ns, NULL, 0, batch));
    assert_memory_equal(hs, hb, ns * sizeof *hs);

    free(is);
    free(gs);
    free_data(&d);
    free(cs);
    free(hs);
    free(cb);
    free(hb);
    free(ca);
    free(ha);
    free(c0);
    free(h0);
    aim_model_free(ref);
    aim_model_free(pooled);
    aim_model_free(plain);
    aim_threadpool_free(pool);
}

static void test_lstm_states_with_pool(void **state) {
    (void)state;
    check_lstm_states(2, 24);
    check_lstm_states(3, 37);
}

/* ------------------------------------------------------------------------- */
/* 5. Predict through a workspace with a pool                                */
/* ------------------------------------------------------------------------- */

static void predict_cases(net_kind kind) {
    for (size_t i = 0; i < ARRAY_LEN(EQUIV_CASES); i++) {
        const equiv_case *c = &EQUIV_CASES[i];
        if (c->kind != kind) continue;
        aim_threadpool *pool = make_pool(NULL, c->threads);
        aim_model *m = make_net(c->kind, NULL, 8, 0, 9);
        aim_workspace *plain = NULL, *pooled = NULL;
        CHECK_OK(aim_workspace_create(m, NULL, c->batch, &plain));
        CHECK_OK(aim_workspace_create(m, NULL, c->batch, &pooled));
        CHECK_OK(aim_workspace_set_threadpool(pooled, m, pool));
        batch_data d;
        make_data(&d, m, c->batch, 66);
        const size_t no = d.batch * d.classes;
        float *oa = malloc(no * sizeof *oa), *ob = malloc(no * sizeof *ob);
        assert_non_null(oa);
        assert_non_null(ob);

        /* Batch 1 stays on the calling thread: the same code, the same bits. */
        CHECK_OK(aim_model_predict(m, plain, d.x, d.in, 1, oa, d.classes));
        CHECK_OK(aim_model_predict(m, pooled, d.x, d.in, 1, ob, d.classes));
        assert_memory_equal(oa, ob, d.classes * sizeof *oa);

        /* A large batch is split. Every output row depends on its input row
         * only, but not bit for bit: OpenBLAS's SGEMM may round a row
         * differently depending on how many rows it multiplies at once (the
         * MLP's logits differ by about 4e-7 of their largest value between a
         * GEMM of 16 rows and two of 8). So: within a tolerance, and the same
         * bits on every run with the same pool. */
        CHECK_OK(aim_model_predict(m, plain, d.x, d.batch * d.in, d.batch, oa, no));
        CHECK_OK(aim_model_predict(m, pooled, d.x, d.batch * d.in, d.batch, ob, no));
        assert_true(any_nonzero(oa, no));
        const double e = scaled_error(ob, oa, no);
        print_message("predict %s, %zu threads, batch %zu: error %.2g\n", net_name(c->kind), c->threads, d.batch, e);
        assert_true(e <= GRAD_TOL);
        float *again = malloc(no * sizeof *again);
        assert_non_null(again);
        CHECK_OK(aim_model_predict(m, pooled, d.x, d.batch * d.in, d.batch, again, no));
        assert_memory_equal(again, ob, no * sizeof *ob);
        free(again);
        /* The split rows are the rows a batch of 1 gives, within the same tolerance. */
        for (size_t b = 0; b < d.batch; b += 7) {
            float row[16];
            assert_true(d.classes <= ARRAY_LEN(row));
            CHECK_OK(aim_model_predict(m, pooled, d.x + b * d.in, d.in, 1, row, d.classes));
            assert_true(scaled_error(row, ob + b * d.classes, d.classes) <= GRAD_TOL);
        }

        /* Back to no pool. */
        CHECK_OK(aim_workspace_set_threadpool(pooled, m, NULL));
        CHECK_OK(aim_model_predict(m, pooled, d.x, d.batch * d.in, d.batch, ob, no));
        assert_memory_equal(oa, ob, no * sizeof *oa);
        assert_string_equal(aim_workspace_last_error(pooled), "");

        free(ob);
        free(oa);
        free_data(&d);
        aim_workspace_free(pooled);
        aim_workspace_free(plain);
        aim_model_free(m);
        aim_threadpool_free(pool);
    }
}

static void test_predict_with_pool_mlp(void **state) {
    (void)state;
    predict_cases(NET_MLP);
}

static void test_predict_with_pool_cnn(void **state) {
    (void)state;
    predict_cases(NET_CNN);
}

static void test_predict_with_pool_lstm(void **state) {
    (void)state;
    predict_cases(NET_LSTM);
}

/* ------------------------------------------------------------------------- */
/* 6. State rules                                                            */
/* ------------------------------------------------------------------------- */

static void test_set_threadpool_state_rules(void **state) {
    (void)state;
    aim_threadpool *p1 = make_pool(NULL, 2), *p2 = make_pool(NULL, 2);
    aim_model *m = make_net(NET_LSTM, NULL, 24, 0, 61);
    aim_model *plain = make_net(NET_LSTM, NULL, 24, 0, 61);
    batch_data d;
    make_data(&d, m, 24, 62);
    float loss = 0, hs[LSTM_LAYERS * 24 * LSTM_H];

    assert_int_equal(aim_model_set_threadpool(NULL, p1), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_set_threadpool(NULL, NULL), AIM_ERR_INVALID_ARGUMENT);
    CHECK_OK(aim_model_set_threadpool(m, p1));

    /* Setting the same pool again keeps the training forward. */
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d.x, d.batch * d.in, d.batch));
    CHECK_OK(aim_model_loss_sparse(m, 0, d.labels, d.batch, &loss));
    CHECK_OK(aim_model_set_threadpool(m, p1));
    CHECK_OK(aim_model_lstm_final_state(m, 0, hs, ARRAY_LEN(hs), NULL, 0, d.batch));
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_backward(m, NULL, 0));

    /* Another pool discards it: backward (with or without an output
     * gradient) and the final states need a new training forward. */
    const float *out = NULL;
    float dy[24 * 4];
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d.x, d.batch * d.in, d.batch));
    CHECK_OK(aim_model_loss_sparse(m, 0, d.labels, d.batch, &loss));
    size_t n_out = 0;
    CHECK_OK(aim_model_output(m, 0, &out, &n_out));
    assert_int_equal(n_out, ARRAY_LEN(dy));
    memcpy(dy, out, sizeof dy);
    CHECK_OK(aim_model_set_threadpool(m, p2));
    assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
    assert_int_equal(aim_model_backward(m, dy, ARRAY_LEN(dy)), AIM_ERR_INVALID_STATE);
    assert_int_equal(aim_model_lstm_final_state(m, 0, hs, ARRAY_LEN(hs), NULL, 0, d.batch), AIM_ERR_INVALID_STATE);
    assert_string_not_equal(aim_model_last_error(m), "");
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d.x, d.batch * d.in, d.batch));
    CHECK_OK(aim_model_backward(m, dy, ARRAY_LEN(dy)));

    /* So does going back to no pool. */
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d.x, d.batch * d.in, d.batch));
    CHECK_OK(aim_model_loss_sparse(m, 0, d.labels, d.batch, &loss));
    CHECK_OK(aim_model_set_threadpool(m, NULL));
    assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
    /* ... and NULL again after NULL changes nothing. */
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d.x, d.batch * d.in, d.batch));
    CHECK_OK(aim_model_loss_sparse(m, 0, d.labels, d.batch, &loss));
    CHECK_OK(aim_model_set_threadpool(m, NULL));
    CHECK_OK(aim_model_backward(m, NULL, 0));

    /* A model without a pool now computes exactly what one that never had one does. */
    size_t n = 0, n2 = 0;
    (void)forward_backward(m, &d);
    (void)forward_backward(plain, &d);
    float *ga = grads_of(plain, &n), *gb = grads_of(m, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(ga, gb, n * sizeof *ga);

    /* A pool given before compile is sized at compile and used. */
    aim_model *early = build_net(NET_LSTM, NULL);
    CHECK_OK(aim_model_set_threadpool(early, p2));
    compile_net(early, 24, 0, 61);
    (void)forward_backward(early, &d);
    gb = grads_of(early, &n2);
    assert_int_equal(n, n2);
    assert_true(scaled_error(gb, ga, n) <= GRAD_TOL);
    /* ... and a different one: it splits the same way (two threads). */
    CHECK_OK(aim_model_set_threadpool(m, p1));
    (void)forward_backward(m, &d);
    float *gm = grads_of(m, &n2);
    assert_memory_equal(gm, gb, n * sizeof *gm);

    /* Workspaces. */
    aim_workspace *ws = NULL;
    aim_model *uncompiled = build_net(NET_LSTM, NULL);
    CHECK_OK(aim_workspace_create(m, NULL, 24, &ws));
    assert_int_equal(aim_workspace_set_threadpool(ws, uncompiled, p1), AIM_ERR_INVALID_STATE);
    assert_string_not_equal(aim_workspace_last_error(ws), "");
    assert_int_equal(aim_workspace_set_threadpool(ws, uncompiled, NULL), AIM_ERR_INVALID_STATE);
    assert_int_equal(aim_workspace_set_threadpool(NULL, m, p1), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_workspace_set_threadpool(ws, NULL, p1), AIM_ERR_INVALID_ARGUMENT);
    /* The refusals left the workspace without a pool; it still predicts. */
    float o1[24 * 4], o2[24 * 4];
    CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, 24, o1, ARRAY_LEN(o1)));
    CHECK_OK(aim_workspace_set_threadpool(ws, m, p1));
    CHECK_OK(aim_workspace_set_threadpool(ws, m, p1));
    CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, 24, o2, ARRAY_LEN(o2)));
    assert_memory_equal(o1, o2, sizeof o1);
    /* A training model and a workspace may share one pool. */
    (void)forward_backward(m, &d);
    CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, 24, o2, ARRAY_LEN(o2)));
    assert_memory_equal(o1, o2, sizeof o1);

    aim_workspace_free(ws);
    aim_model_free(uncompiled);
    aim_model_free(early);
    free_data(&d);
    aim_model_free(plain);
    aim_model_free(m);
    aim_threadpool_free(p2);
    aim_threadpool_free(p1);
}

/* ------------------------------------------------------------------------- */
/* 7. No allocation per step                                                 */
/* ------------------------------------------------------------------------- */

static void test_steps_allocate_nothing(void **state) {
    (void)state;
    static const equiv_case cases[] = {{NET_MLP, 3, 16}, {NET_CNN, 2, 64}, {NET_LSTM, 3, 37}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const equiv_case *c = &cases[i];
        test_alloc tm, tp;
        test_alloc_init(&tm, -1);
        test_alloc_init(&tp, -1);
        aim_threadpool *pool = make_pool(&tp.allocator, c->threads);
        aim_model *m = make_net(c->kind, &tm.allocator, c->batch, 1, 71);
        CHECK_OK(aim_model_set_threadpool(m, pool));
        size_t n = 0;
        (void)params_of(m, &n);
        aim_optimizer *opt = NULL;
        aim_workspace *ws = NULL;
        CHECK_OK(aim_adam_create(&tm.allocator, NULL, n, &opt));
        CHECK_OK(aim_workspace_create(m, &tm.allocator, c->batch, &ws));
        CHECK_OK(aim_workspace_set_threadpool(ws, m, pool));
        batch_data d;
        make_data(&d, m, c->batch, 72);
        float *out = malloc(d.batch * d.classes * sizeof *out);
        assert_non_null(out);
        float *h0 = NULL;
        if (c->kind == NET_LSTM) {
            const size_t ns = LSTM_LAYERS * d.batch * LSTM_H;
            h0 = malloc(2 * ns * sizeof *h0);
            assert_non_null(h0);
            fill_uniform(h0, 2 * ns, 73, -0.5f, 0.5f);
            CHECK_OK(aim_model_lstm_set_state(m, 0, h0, ns, h0 + ns, ns, d.batch));
        }

        /* Warm-up: one step and predicts at both sizes. */
        (void)forward_backward(m, &d);
        CHECK_OK(aim_optimizer_step_model(opt, m, 1e-3f));
        CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, d.batch, out, d.batch * d.classes));
        CHECK_OK(aim_model_predict(m, ws, d.x, d.in, 1, out, d.classes));

        const long model_calls = tm.calls, pool_calls = tp.calls;
        for (int step = 0; step < 3; step++) {
            (void)forward_backward(m, &d);
            if (h0) CHECK_OK(aim_model_lstm_final_state(m, 0, h0, LSTM_LAYERS * d.batch * LSTM_H, NULL, 0, d.batch));
            CHECK_OK(aim_optimizer_step_model(opt, m, 1e-3f));
            CHECK_OK(aim_model_forward(m, AIM_MODE_INFERENCE, d.x, d.batch * d.in, d.batch));
            CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, d.batch, out, d.batch * d.classes));
            CHECK_OK(aim_model_predict(m, ws, d.x, d.in, 1, out, d.classes));
        }
        /* Giving the same pool again, or the pool to a second workspace of
         * the same size, finds the per-thread scratch already large enough. */
        CHECK_OK(aim_model_set_threadpool(m, pool));
        CHECK_OK(aim_workspace_set_threadpool(ws, m, pool));
        if (tm.calls != model_calls || tp.calls != pool_calls)
            fail_msg("%s, %zu threads: %ld model and %ld pool allocations after warm-up", net_name(c->kind),
                     c->threads, tm.calls - model_calls, tp.calls - pool_calls);
        /* The pool did reserve per-thread scratch (at set time): one arena
         * per worker at least. */
        assert_true(tp.live >= 1 + (long)(c->threads - 1));

        free(h0);
        free(out);
        free_data(&d);
        aim_workspace_free(ws);
        aim_optimizer_free(opt);
        aim_model_free(m);
        aim_threadpool_free(pool);
        assert_int_equal(tm.live, 0);
        assert_int_equal(tp.live, 0);
        assert_int_equal(tm.failures + tp.failures, 0);
    }
}

/* ------------------------------------------------------------------------- */
/* 8. Allocation failures                                                    */
/* ------------------------------------------------------------------------- */

#define MAX_K 200 /* far more than any call here makes */

static void test_create_allocation_failures(void **state) {
    (void)state;
    for (size_t threads = 1; threads <= 3; threads++) {
        long k;
        for (k = 0; k < MAX_K; k++) {
            test_alloc ta;
            test_alloc_init(&ta, k);
            aim_threadpool *p = NULL;
            aim_status st = aim_threadpool_create(&ta.allocator, threads, &p);
            if (st == AIM_OK) {
                assert_int_equal(ta.failures, 0);
                assert_int_equal(aim_threadpool_threads(p), threads);
                aim_threadpool_free(p);
                assert_int_equal(ta.live, 0);
                break;
            }
            if (st != AIM_ERR_OUT_OF_MEMORY) fail_msg("threads %zu, k=%ld: %s", threads, k, aim_status_str(st));
            assert_int_equal(ta.failures, 1);
            assert_null(p);
            if (ta.live != 0) fail_msg("threads %zu, k=%ld: %ld blocks leaked", threads, k, ta.live);
        }
        /* The pool struct and the arena tables at least, plus the thread ids with workers. */
        assert_true(k >= (threads > 1 ? 4 : 3));
        assert_true(k < MAX_K);
    }
}

/* Failing every allocation of aim_model_set_threadpool() on a compiled model. */
static void test_set_threadpool_allocation_failures(void **state) {
    (void)state;
    test_alloc tm, tp;
    test_alloc_init(&tm, -1);
    test_alloc_init(&tp, -1);
    aim_threadpool *first = make_pool(NULL, 2);
    aim_model *m = make_net(NET_LSTM, &tm.allocator, 37, 0, 81);
    aim_model *plain = make_net(NET_LSTM, NULL, 37, 0, 81);
    aim_model *two = make_net(NET_LSTM, NULL, 37, 0, 81);
    CHECK_OK(aim_model_set_threadpool(two, first));
    batch_data d;
    make_data(&d, m, 37, 82);
    size_t n = 0, n2 = 0;
    (void)forward_backward(plain, &d);
    (void)forward_backward(two, &d);
    const float *gp = grads_of(plain, &n);
    float *g_plain = copy_floats(gp, n);
    const float *gt = grads_of(two, &n2);
    assert_int_equal(n2, n);
    float *g_two = copy_floats(gt, n);
    /* Two threads and one sum in another order: not the same bits. This is
     * what tells below which split a model used. */
    assert_true(memcmp(g_plain, g_two, n * sizeof *g_plain) != 0);

    aim_threadpool *pool = NULL;
    for (int with_first = 0; with_first < 2; with_first++) {
        /* The model starts without a pool, then with the 2-thread one, and
         * has run a training forward and a loss when the new pool fails. */
        CHECK_OK(aim_model_set_threadpool(m, with_first ? first : NULL));
        /* A new 3-thread pool each round, so it has no arenas yet. */
        aim_threadpool_free(pool);
        pool = make_pool(&tp.allocator, 3);
        const float *expect = with_first ? g_two : g_plain;
        long k;
        for (k = 0; k < MAX_K; k++) {
            const long live = tp.live, model_calls = tm.calls;
            float loss = 0;
            CHECK_OK(aim_model_zero_grad(m));
            CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, d.x, d.batch * d.in, d.batch));
            CHECK_OK(aim_model_loss_sparse(m, 0, d.labels, d.batch, &loss));
            tp.fail_at = tp.calls + k;
            const long failures = tp.failures;
            aim_status st = aim_model_set_threadpool(m, pool);
            tp.fail_at = -1;
            assert_int_equal(tm.calls, model_calls);
            if (st == AIM_OK) {
                assert_int_equal(tp.failures, failures);
                break;
            }
            if (st != AIM_ERR_OUT_OF_MEMORY) fail_msg("k=%ld: %s", k, aim_status_str(st));
            assert_int_equal(tp.failures, failures + 1);
            if (tp.live != live) fail_msg("k=%ld: %ld blocks leaked", k, tp.live - live);
            assert_string_not_equal(aim_model_last_error(m), "");
            assert_string_not_equal(aim_threadpool_last_error(pool), "");
            /* Nothing changed: the forward is still there, and the backward
             * runs on the old split, giving its bits. */
            CHECK_OK(aim_model_backward(m, NULL, 0));
            float *g = grads_of(m, &n2);
            assert_int_equal(n2, n);
            if (memcmp(g, expect, n * sizeof *g) != 0)
                fail_msg("round %d, k=%ld: the failed call changed the model (error %.3g vs expected, %.3g vs no pool)",
                         with_first, k, scaled_error(g, expect, n), scaled_error(g, g_plain, n));
        }
        /* One arena per worker. */
        assert_int_equal(k, 2);
        /* The new pool is in use: a backward after the switch is refused,
         * and a new step matches a model without a pool within tolerance
         * but not bit for bit (three slices, another summation order). */
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_ERR_INVALID_STATE);
        (void)forward_backward(m, &d);
        float *g = grads_of(m, &n2);
        assert_true(scaled_error(g, g_plain, n) <= GRAD_TOL);
        assert_true(memcmp(g, g_plain, n * sizeof *g) != 0);
    }

    /* A workspace: its pool's failure leaves it predicting on its own thread. */
    aim_threadpool *fresh = make_pool(&tp.allocator, 3);
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, &tm.allocator, 37, &ws));
    float *oa = malloc(37 * 4 * sizeof *oa), *ob = malloc(37 * 4 * sizeof *ob);
    assert_non_null(oa);
    assert_non_null(ob);
    CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, 37, oa, 37 * 4));
    long k;
    for (k = 0; k < MAX_K; k++) {
        const long live = tp.live;
        tp.fail_at = tp.calls + k;
        aim_status st = aim_workspace_set_threadpool(ws, m, fresh);
        tp.fail_at = -1;
        if (st == AIM_OK) break;
        assert_int_equal(st, AIM_ERR_OUT_OF_MEMORY);
        assert_int_equal(tp.live, live);
        assert_string_not_equal(aim_workspace_last_error(ws), "");
        CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, 37, ob, 37 * 4));
        assert_memory_equal(oa, ob, 37 * 4 * sizeof *oa);
    }
    assert_int_equal(k, 2);
    CHECK_OK(aim_model_predict(m, ws, d.x, d.batch * d.in, 37, ob, 37 * 4));
    assert_true(scaled_error(ob, oa, 37 * 4) <= GRAD_TOL);

    free(ob);
    free(oa);
    aim_workspace_free(ws);
    free(g_two);
    free(g_plain);
    free_data(&d);
    aim_model_free(two);
    aim_model_free(plain);
    aim_model_free(m);
    aim_threadpool_free(fresh);
    aim_threadpool_free(pool);
    aim_threadpool_free(first);
    assert_int_equal(tm.live, 0);
    assert_int_equal(tp.live, 0);
}

/* A pool given before compile: compile sizes its arenas first, and a failure
 * there, or in the model's own allocation after it, leaves the model
 * uncompiled and able to compile again. */
static void test_compile_with_pool_allocation_failures(void **state) {
    (void)state;
    aim_model *plain = make_net(NET_LSTM, NULL, 37, 0, 91);
    batch_data d;
    make_data(&d, plain, 37, 92);
    (void)forward_backward(plain, &d);
    size_t n = 0, n2 = 0;
    const float *g_plain = grads_of(plain, &n);

    for (int fail_model = 0; fail_model < 2; fail_model++) {
        for (long k = 0;; k++) {
            assert_true(k < MAX_K);
            test_alloc tm, tp;
            test_alloc_init(&tm, -1);
            test_alloc_init(&tp, -1);
            aim_threadpool *pool = make_pool(&tp.allocator, 3);
            aim_model *m = build_net(NET_LSTM, &tm.allocator);
            CHECK_OK(aim_model_set_threadpool(m, pool));
            test_alloc *victim = fail_model ? &tm : &tp;
            victim->fail_at = victim->calls + k;
            aim_compile_config cc;
            CHECK_OK(aim_compile_config_init(&cc));
            cc.max_batch = 37;
            cc.seed = 91;
            aim_status st = aim_model_compile(m, &cc);
            victim->fail_at = -1;
            const int done = st == AIM_OK;
            if (!done) {
                assert_int_equal(st, AIM_ERR_OUT_OF_MEMORY);
                assert_int_equal(victim->failures, 1);
                float *p = NULL;
                assert_int_equal(aim_model_parameters(m, &p, &n2), AIM_ERR_INVALID_STATE);
                assert_string_not_equal(aim_model_last_error(m), "");
                CHECK_OK(aim_model_compile(m, &cc));
            } else {
                assert_int_equal(victim->failures, 0);
            }
            (void)forward_backward(m, &d);
            float *g = grads_of(m, &n2);
            assert_int_equal(n2, n);
            assert_true(scaled_error(g, g_plain, n) <= GRAD_TOL);
            aim_model_free(m);
            aim_threadpool_free(pool);
            if (tm.live != 0 || tp.live != 0)
                fail_msg("%s k=%ld: %ld model and %ld pool blocks leaked", fail_model ? "model" : "pool", k, tm.live,
                         tp.live);
            if (done) {
                /* The pool's two arenas before the model's one block. */
                assert_int_equal(k, fail_model ? 1 : 2);
                break;
            }
        }
    }
    free_data(&d);
    aim_model_free(plain);
}

/* ------------------------------------------------------------------------- */
/* 9. Several threads predicting through one shared pool                     */
/* ------------------------------------------------------------------------- */

#define PRED_THREADS 4
#define PRED_INPUTS 64
#define PRED_MAX_BATCH 64 /* the batch of each net (16, 64, 32) splits in two and divides PRED_INPUTS */
#define PRED_ROUNDS 3
#define PRED_STRIDE1 4 /* batch-1 rounds predict every 4th input (valgrind is slow) */

typedef struct shared_run {
    const aim_model *model;
    aim_threadpool *pool;
    const float *inputs;     /* (PRED_INPUTS, in) */
    const float *reference1; /* sequential predicts at batch 1 */
    const float *referenceB; /* sequential predicts at `batch` through the pool */
    size_t in, out, batch;
    pthread_barrier_t start;
} shared_run;

typedef struct thread_report {
    shared_run *run;
    size_t index;
    aim_status status;
    size_t predicts, compared, mismatches, first_bad;
} thread_report;

static void *predict_thread(void *arg) {
    thread_report *r = arg;
    const shared_run *s = r->run;
    aim_workspace *ws = NULL;
    float *out = malloc(s->batch * s->out * sizeof *out);
    r->status = out ? aim_workspace_create(s->model, NULL, s->batch, &ws) : AIM_ERR_OUT_OF_MEMORY;
    /* Every thread gives its workspace the shared pool at the same time. */
    if (r->status == AIM_OK) r->status = aim_workspace_set_threadpool(ws, s->model, s->pool);
    pthread_barrier_wait(&r->run->start);
    for (size_t round = 0; round < PRED_ROUNDS && r->status == AIM_OK; round++) {
        const size_t batch = (round + r->index) % 2 == 0 ? s->batch : 1;
        const float *ref = batch == 1 ? s->reference1 : s->referenceB;
        const size_t first = (r->index * 37u) % PRED_INPUTS / batch * batch;
        const size_t stride = batch == 1 ? PRED_STRIDE1 : batch;
        for (size_t k = 0; k < PRED_INPUTS && r->status == AIM_OK; k += stride) {
            const size_t i = (first + k) % PRED_INPUTS;
            r->status = aim_model_predict(s->model, ws, s->inputs + i * s->in, batch * s->in, batch, out, batch * s->out);
            if (r->status != AIM_OK) break;
            r->predicts++;
            for (size_t b = 0; b < batch; b++, r->compared++)
                if (memcmp(out + b * s->out, ref + (i + b) * s->out, s->out * sizeof *out) != 0)
                    if (r->mismatches++ == 0) r->first_bad = i + b;
        }
    }
    aim_workspace_free(ws);
    free(out);
    return NULL;
}

static void check_shared_pool_predict(net_kind kind, size_t batch) {
    aim_threadpool *pool = make_pool(NULL, 2);
    aim_model *m = make_net(kind, NULL, 16, 0, 111);
    /* Train a little so the weights are not the initial ones. */
    size_t n = 0;
    (void)params_of(m, &n);
    aim_optimizer *opt = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, n, &opt));
    for (size_t step = 0; step < 3; step++) {
        batch_data d;
        make_data(&d, m, 16, 112 + step);
        (void)forward_backward(m, &d);
        CHECK_OK(aim_optimizer_step_model(opt, m, 1e-2f));
        free_data(&d);
    }
    aim_optimizer_free(opt);

    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float *inputs = malloc(PRED_INPUTS * in * sizeof *inputs);
    float *ref1 = malloc(PRED_INPUTS * out * sizeof *ref1);
    float *refB = malloc(PRED_INPUTS * out * sizeof *refB);
    float *plainB = malloc(PRED_INPUTS * out * sizeof *plainB);
    assert_true(inputs && ref1 && refB && plainB);
    fill_uniform(inputs, PRED_INPUTS * in, 113, -1.0f, 1.0f);

    aim_workspace *ws = NULL, *wp = NULL;
    assert_true(batch <= PRED_MAX_BATCH && PRED_INPUTS % batch == 0);
    CHECK_OK(aim_workspace_create(m, NULL, batch, &ws));
    CHECK_OK(aim_workspace_create(m, NULL, batch, &wp));
    CHECK_OK(aim_workspace_set_threadpool(wp, m, pool));
    for (size_t i = 0; i < PRED_INPUTS; i++) CHECK_OK(aim_model_predict(m, ws, inputs + i * in, in, 1, ref1 + i * out, out));
    for (size_t i = 0; i < PRED_INPUTS; i += batch) {
        CHECK_OK(aim_model_predict(m, wp, inputs + i * in, batch * in, batch, refB + i * out, batch * out));
        CHECK_OK(aim_model_predict(m, ws, inputs + i * in, batch * in, batch, plainB + i * out, batch * out));
    }
    aim_workspace_free(wp);
    aim_workspace_free(ws);
    for (size_t i = 1; i < PRED_INPUTS; i++) assert_true(memcmp(ref1, ref1 + i * out, out * sizeof *ref1) != 0);
    /* The pooled reference agrees with the sequential one (within the
     * tolerance of test_predict_with_pool); the threads must then reproduce
     * the pooled one bit for bit. */
    assert_true(scaled_error(refB, plainB, PRED_INPUTS * out) <= GRAD_TOL);

    shared_run run = {.model = m, .pool = pool, .inputs = inputs, .reference1 = ref1, .referenceB = refB,
                      .in = in, .out = out, .batch = batch};
    assert_int_equal(pthread_barrier_init(&run.start, NULL, PRED_THREADS), 0);
    thread_report reports[PRED_THREADS];
    pthread_t threads[PRED_THREADS];
    for (size_t t = 0; t < PRED_THREADS; t++) {
        reports[t] = (thread_report){.run = &run, .index = t, .status = AIM_OK};
        assert_int_equal(pthread_create(&threads[t], NULL, predict_thread, &reports[t]), 0);
    }
    for (size_t t = 0; t < PRED_THREADS; t++) assert_int_equal(pthread_join(threads[t], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&run.start), 0);

    for (size_t t = 0; t < PRED_THREADS; t++) {
        const thread_report *r = &reports[t];
        if (r->status != AIM_OK) print_error("thread %zu: %s\n", t, aim_status_str(r->status));
        assert_int_equal(r->status, AIM_OK);
        if (r->mismatches)
            print_error("%s thread %zu: %zu of %zu outputs differ (first: input %zu)\n", net_name(kind), t,
                        r->mismatches, r->compared, r->first_bad);
        assert_int_equal(r->mismatches, 0);
        /* Thread t runs the big batch in rounds where round + t is even. */
        const size_t big_rounds = (PRED_ROUNDS + 1 - t % 2) / 2;
        assert_int_equal(r->compared, big_rounds * PRED_INPUTS + (PRED_ROUNDS - big_rounds) * (PRED_INPUTS / PRED_STRIDE1));
        assert_int_equal(r->predicts, big_rounds * (PRED_INPUTS / batch) +
                                          (PRED_ROUNDS - big_rounds) * (PRED_INPUTS / PRED_STRIDE1));
    }
    assert_string_equal(aim_model_last_error(m), "");

    free(plainB);
    free(refB);
    free(ref1);
    free(inputs);
    aim_model_free(m);
    aim_threadpool_free(pool);
}

static void test_threads_share_one_pool_mlp(void **state) {
    (void)state;
    check_shared_pool_predict(NET_MLP, 16);
}

static void test_threads_share_one_pool_cnn(void **state) {
    (void)state;
    check_shared_pool_predict(NET_CNN, 64);
}

static void test_threads_share_one_pool_lstm(void **state) {
    (void)state;
    check_shared_pool_predict(NET_LSTM, 32);
}

/* ------------------------------------------------------------------------- */
/* A batch split into fewer slices than the pool has threads                 */
/* ------------------------------------------------------------------------- */

/* The wide LSTM carries about 44.5k multiply-adds per sample, so with a
 * 4-thread pool a batch of 16 (712k) splits into 2 slices of 8, not 4 of 4:
 * each slice is twice the size the per-thread scratch is reserved for when
 * the pool is set (max_batch / threads samples). Training and predicting
 * must still give the results of a model without a pool. */
static void test_fewer_slices_than_threads(void **state) {
    (void)state;
    aim_threadpool *pool = make_pool(NULL, 4);
    aim_model *plain = make_net(NET_LSTM_WIDE, NULL, 16, 1, 121);
    aim_model *pooled = make_net(NET_LSTM_WIDE, NULL, 16, 1, 121);
    CHECK_OK(aim_model_set_threadpool(pooled, pool));
    batch_data d;
    make_data(&d, plain, 16, 122);
    const float la = forward_backward(plain, &d), lb = forward_backward(pooled, &d);
    size_t n = 0, n2 = 0;
    float *ga = grads_of(plain, &n), *gb = grads_of(pooled, &n2);
    const float *ia = input_grad_of(plain, d.batch * d.in), *ib = input_grad_of(pooled, d.batch * d.in);
    assert_true(fabs((double)la - (double)lb) <= LOSS_TOL * fabs((double)la));
    assert_true(scaled_error(gb, ga, n) <= GRAD_TOL);
    assert_true(scaled_error(ib, ia, d.batch * d.in) <= GRAD_TOL);

    aim_workspace *wa = NULL, *wb = NULL;
    float oa[16 * 4], ob[16 * 4];
    CHECK_OK(aim_workspace_create(plain, NULL, 16, &wa));
    CHECK_OK(aim_workspace_create(plain, NULL, 16, &wb));
    CHECK_OK(aim_workspace_set_threadpool(wb, plain, pool));
    CHECK_OK(aim_model_predict(plain, wa, d.x, d.batch * d.in, 16, oa, ARRAY_LEN(oa)));
    CHECK_OK(aim_model_predict(plain, wb, d.x, d.batch * d.in, 16, ob, ARRAY_LEN(ob)));
    assert_true(scaled_error(ob, oa, 16 * 4) <= GRAD_TOL);

    aim_workspace_free(wb);
    aim_workspace_free(wa);
    free_data(&d);
    aim_model_free(pooled);
    aim_model_free(plain);
    aim_threadpool_free(pool);
}

/* ------------------------------------------------------------------------- */
/* 10. A graph: two inputs, a residual add, a concat, two outputs            */
/* ------------------------------------------------------------------------- */

/* in0 (64) -> h1 = dense 128 relu -> h2 = dense 128 tanh; r = h2 + h1;
 * c = concat(r, in1 (16)) -> dense 64 relu -> output 0: dense 10 (sparse
 * cross-entropy, weight 1); output 1: dense 3 of r (MSE, weight 0.5). About
 * 35k multiply-adds per sample, so batch 24 on 2 threads and 37 on 3 split
 * into as many slices as threads (12 or 13 samples, over 400k each). */
#define G_IN0 64
#define G_IN1 16
#define G_CLASSES 10
#define G_REG 3

static aim_model *make_graph_net(size_t max_batch, uint64_t seed) {
    const size_t d0[1] = {G_IN0}, d1[1] = {G_IN1};
    aim_model *m = NULL;
    aim_dense_config dc;
    size_t in1 = 0, h1 = 0, h2 = 0, r = 0, out0 = 0, out1 = 0;
    CHECK_OK(aim_model_create(NULL, 1, d0, &m));
    CHECK_OK(aim_model_add_input(m, 1, d1, &in1));
    CHECK_OK(aim_dense_config_init(&dc, 128, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_last_node(m, &h1));
    CHECK_OK(aim_dense_config_init(&dc, 128, AIM_ACT_TANH));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_last_node(m, &h2));
    const size_t sum[2] = {h2, h1};
    CHECK_OK(aim_model_add_add(m, sum, 2));
    CHECK_OK(aim_model_last_node(m, &r));
    const size_t parts[2] = {r, in1};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    CHECK_OK(aim_dense_config_init(&dc, 64, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_dense_config_init(&dc, G_CLASSES, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_last_node(m, &out0));
    CHECK_OK(aim_model_continue_from(m, r));
    CHECK_OK(aim_dense_config_init(&dc, G_REG, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_last_node(m, &out1));
    const size_t outs[2] = {out0, out1};
    const float weights[2] = {1.0f, 0.5f};
    CHECK_OK(aim_model_set_outputs(m, outs, weights, 2));
    compile_net(m, max_batch, 1, seed);
    assert_int_equal(aim_model_input_count(m), 2);
    assert_int_equal(aim_model_output_count(m), 2);
    return m;
}

typedef struct graph_data {
    size_t batch;
    float *x0, *x1, *t; /* batch * G_IN0, batch * G_IN1, batch * G_REG */
    int32_t *labels;    /* batch */
} graph_data;

static void make_graph_data(graph_data *d, size_t batch, uint64_t seed) {
    d->batch = batch;
    d->x0 = malloc(batch * G_IN0 * sizeof *d->x0);
    d->x1 = malloc(batch * G_IN1 * sizeof *d->x1);
    d->t = malloc(batch * G_REG * sizeof *d->t);
    d->labels = malloc(batch * sizeof *d->labels);
    assert_true(d->x0 && d->x1 && d->t && d->labels);
    fill_uniform(d->x0, batch * G_IN0, seed, -1.0f, 1.0f);
    fill_uniform(d->x1, batch * G_IN1, seed + 1, -1.0f, 1.0f);
    fill_uniform(d->t, batch * G_REG, seed + 2, -1.0f, 1.0f);
    for (size_t b = 0; b < batch; b++) d->labels[b] = (int32_t)((b * 7u + seed) % G_CLASSES);
}

static void free_graph_data(graph_data *d) {
    free(d->x0);
    free(d->x1);
    free(d->t);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* zero_grad, a training forward of both inputs, both losses, one backward;
 * the two (unweighted) losses. */
static void graph_step(aim_model *m, const graph_data *d, float loss[2]) {
    const float *in[2] = {d->x0, d->x1};
    const size_t counts[2] = {d->batch * G_IN0, d->batch * G_IN1};
    CHECK_OK(aim_model_zero_grad(m));
    CHECK_OK(aim_model_forward_multi(m, AIM_MODE_TRAIN, in, counts, 2, d->batch));
    CHECK_OK(aim_model_loss_sparse(m, 0, d->labels, d->batch, &loss[0]));
    CHECK_OK(aim_model_loss(m, 1, AIM_LOSS_MSE, d->t, d->batch * G_REG, &loss[1]));
    CHECK_OK(aim_model_backward(m, NULL, 0));
    assert_true(isfinite(loss[0]) && isfinite(loss[1]));
}

static const float *graph_input_grad(const aim_model *m, size_t k, size_t expect) {
    const float *g = NULL;
    size_t n = 0;
    CHECK_OK(aim_model_input_gradient(m, k, &g, &n));
    assert_int_equal(n, expect);
    return g;
}

static void check_graph_training(size_t threads, size_t batch) {
    const uint64_t seed = 500u + threads;
    aim_threadpool *pool = make_pool(NULL, threads), *pool2 = make_pool(NULL, threads);
    aim_model *plain = make_graph_net(batch, seed);
    aim_model *pooled = make_graph_net(batch, seed);
    aim_model *again = make_graph_net(batch, seed); /* the same thread count on another pool */
    CHECK_OK(aim_model_set_threadpool(pooled, pool));
    CHECK_OK(aim_model_set_threadpool(again, pool2));
    size_t n = 0, n2 = 0, n3 = 0;
    float *pa = params_of(plain, &n), *pb = params_of(pooled, &n2), *pc = params_of(again, &n3);
    assert_int_equal(n, n2);
    assert_int_equal(n, n3);
    assert_memory_equal(pa, pb, n * sizeof *pa);

    graph_data d;
    make_graph_data(&d, batch, seed + 1);
    float la[2], lb[2], lc[2];
    graph_step(plain, &d, la);
    graph_step(pooled, &d, lb);
    graph_step(again, &d, lc);
    float *ga = grads_of(plain, &n), *gb = grads_of(pooled, &n2), *gc = grads_of(again, &n3);
    assert_true(any_nonzero(ga, n));
    double e_loss = 0.0;
    for (int k = 0; k < 2; k++) e_loss = fmax(e_loss, fabs((double)la[k] - (double)lb[k]) / fabs((double)la[k]));
    const double e_grad = scaled_error(gb, ga, n);
    const size_t sizes[2] = {G_IN0, G_IN1};
    double e_in = 0.0;
    for (size_t k = 0; k < 2; k++) {
        const float *ia = graph_input_grad(plain, k, batch * sizes[k]);
        const float *ib = graph_input_grad(pooled, k, batch * sizes[k]);
        const float *ic = graph_input_grad(again, k, batch * sizes[k]);
        assert_true(any_nonzero(ia, batch * sizes[k]));
        e_in = fmax(e_in, scaled_error(ib, ia, batch * sizes[k]));
        assert_memory_equal(ic, ib, batch * sizes[k] * sizeof *ib);
    }
    print_message("graph, %zu threads, batch %zu: loss error %.2g, gradient error %.2g, input gradient error %.2g\n",
                  threads, batch, e_loss, e_grad, e_in);
    assert_true(e_loss <= LOSS_TOL);
    assert_true(e_grad <= GRAD_TOL);
    assert_true(e_in <= GRAD_TOL);
    /* The batch was split: the slices' partial sums add up in another order. */
    if (memcmp(ga, gb, n * sizeof *ga) == 0)
        fail_msg("graph, %zu threads, batch %zu: the gradients are those of no pool bit for bit: not split?", threads,
                 batch);
    /* The same thread count gives the same bits. */
    assert_memory_equal(lc, lb, sizeof lb);
    assert_memory_equal(gc, gb, n * sizeof *gb);

    /* Adam steps on fresh batches: the parameters stay together, and on two
     * pools of the same size stay bit-identical. */
    aim_optimizer *oa = NULL, *ob = NULL, *oc = NULL;
    aim_adam_config ac;
    CHECK_OK(aim_adam_config_init(&ac));
    ac.epsilon = ADAM_EPS;
    CHECK_OK(aim_adam_create(NULL, &ac, n, &oa));
    CHECK_OK(aim_adam_create(NULL, &ac, n, &ob));
    CHECK_OK(aim_adam_create(NULL, &ac, n, &oc));
    float *initial = copy_floats(pa, n);
    for (size_t step = 0; step < ADAM_STEPS + 2; step++) {
        if (step) {
            free_graph_data(&d);
            make_graph_data(&d, batch, seed + 10 + step);
            graph_step(plain, &d, la);
            graph_step(pooled, &d, lb);
            graph_step(again, &d, lc);
            if (memcmp(lb, lc, sizeof lb) != 0)
                fail_msg("graph, %zu threads: step %zu: losses differ on two pools of the same size", threads, step);
        }
        CHECK_OK(aim_optimizer_step_model(oa, plain, 1e-3f));
        CHECK_OK(aim_optimizer_step_model(ob, pooled, 1e-3f));
        CHECK_OK(aim_optimizer_step_model(oc, again, 1e-3f));
    }
    assert_true(memcmp(initial, pa, n * sizeof *pa) != 0);
    const double e_param = scaled_error(pb, pa, n);
    print_message("graph, %zu threads: parameter error after %d Adam steps %.2g\n", threads, ADAM_STEPS + 2,
                  e_param);
    assert_true(e_param <= PARAM_TOL);
    if (memcmp(pb, pc, n * sizeof *pb) != 0)
        fail_msg("graph, %zu threads: parameters differ on two pools of the same size", threads);

    free(initial);
    aim_optimizer_free(oc);
    aim_optimizer_free(ob);
    aim_optimizer_free(oa);
    free_graph_data(&d);
    aim_model_free(again);
    aim_model_free(pooled);
    aim_model_free(plain);
    aim_threadpool_free(pool2);
    aim_threadpool_free(pool);
}

static void test_graph_training_matches_without_pool(void **state) {
    (void)state;
    check_graph_training(2, 24);
    check_graph_training(3, 37);
}

/* predict_multi through a workspace with a pool against one without: batch
 * 1 stays on the caller (the same bits); a split batch agrees within the
 * tolerance of test_predict_with_pool_* and gives the same bits on every
 * run. */
static void predict_graph(const aim_model *m, aim_workspace *ws, const graph_data *d, size_t batch, float *y0,
                          float *y1) {
    const float *in[2] = {d->x0, d->x1};
    const size_t in_counts[2] = {batch * G_IN0, batch * G_IN1};
    float *out[2] = {y0, y1};
    const size_t out_counts[2] = {batch * G_CLASSES, batch * G_REG};
    CHECK_OK(aim_model_predict_multi(m, ws, in, in_counts, 2, batch, out, out_counts, 2));
}

static void test_graph_predict_with_pool(void **state) {
    (void)state;
    static const size_t cases[][2] = {{2, 24}, {3, 37}}; /* threads, batch */
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const size_t threads = cases[i][0], batch = cases[i][1];
        aim_threadpool *pool = make_pool(NULL, threads);
        aim_model *m = make_graph_net(8, 77);
        aim_workspace *plain = NULL, *pooled = NULL;
        CHECK_OK(aim_workspace_create(m, NULL, batch, &plain));
        CHECK_OK(aim_workspace_create(m, NULL, batch, &pooled));
        CHECK_OK(aim_workspace_set_threadpool(pooled, m, pool));
        graph_data d;
        make_graph_data(&d, batch, 78 + threads);
        const size_t n0 = batch * G_CLASSES, n1 = batch * G_REG;
        float *a0 = malloc(n0 * sizeof *a0), *a1 = malloc(n1 * sizeof *a1);
        float *b0 = malloc(n0 * sizeof *b0), *b1 = malloc(n1 * sizeof *b1);
        float *c0 = malloc(n0 * sizeof *c0), *c1 = malloc(n1 * sizeof *c1);
        assert_true(a0 && a1 && b0 && b1 && c0 && c1);

        predict_graph(m, plain, &d, 1, a0, a1);
        predict_graph(m, pooled, &d, 1, b0, b1);
        assert_memory_equal(a0, b0, G_CLASSES * sizeof *a0);
        assert_memory_equal(a1, b1, G_REG * sizeof *a1);

        predict_graph(m, plain, &d, batch, a0, a1);
        predict_graph(m, pooled, &d, batch, b0, b1);
        assert_true(any_nonzero(a0, n0) && any_nonzero(a1, n1));
        const double e0 = scaled_error(b0, a0, n0), e1 = scaled_error(b1, a1, n1);
        print_message("graph predict_multi, %zu threads, batch %zu: error %.2g (output 0), %.2g (output 1)\n",
                      threads, batch, e0, e1);
        assert_true(e0 <= GRAD_TOL);
        assert_true(e1 <= GRAD_TOL);
        predict_graph(m, pooled, &d, batch, c0, c1);
        assert_memory_equal(c0, b0, n0 * sizeof *b0);
        assert_memory_equal(c1, b1, n1 * sizeof *b1);
        /* ... and the unsplit predict is the inference forward's output, bit for bit. */
        const float *in[2] = {d.x0, d.x1};
        const size_t counts[2] = {batch * G_IN0, batch * G_IN1};
        aim_model *fm = make_graph_net(batch, 77);
        CHECK_OK(aim_model_forward_multi(fm, AIM_MODE_INFERENCE, in, counts, 2, batch));
        const float *y = NULL;
        size_t ny = 0;
        CHECK_OK(aim_model_output(fm, 0, &y, &ny));
        assert_int_equal(ny, n0);
        assert_memory_equal(y, a0, n0 * sizeof *y);
        CHECK_OK(aim_model_output(fm, 1, &y, &ny));
        assert_int_equal(ny, n1);
        assert_memory_equal(y, a1, n1 * sizeof *y);
        assert_string_equal(aim_workspace_last_error(pooled), "");

        aim_model_free(fm);
        free(c1);
        free(c0);
        free(b1);
        free(b0);
        free(a1);
        free(a0);
        free_graph_data(&d);
        aim_workspace_free(pooled);
        aim_workspace_free(plain);
        aim_model_free(m);
        aim_threadpool_free(pool);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_basics),
        cmocka_unit_test(test_default_min_work),
        cmocka_unit_test(test_training_matches_without_pool_mlp),
        cmocka_unit_test(test_training_matches_without_pool_cnn),
        cmocka_unit_test(test_training_matches_without_pool_lstm),
        cmocka_unit_test(test_inference_forward_matches),
        cmocka_unit_test(test_same_thread_count_is_bit_identical_mlp),
        cmocka_unit_test(test_same_thread_count_is_bit_identical_cnn),
        cmocka_unit_test(test_same_thread_count_is_bit_identical_lstm),
        cmocka_unit_test(test_lstm_states_with_pool),
        cmocka_unit_test(test_predict_with_pool_mlp),
        cmocka_unit_test(test_predict_with_pool_cnn),
        cmocka_unit_test(test_predict_with_pool_lstm),
        cmocka_unit_test(test_set_threadpool_state_rules),
        cmocka_unit_test(test_steps_allocate_nothing),
        cmocka_unit_test(test_create_allocation_failures),
        cmocka_unit_test(test_set_threadpool_allocation_failures),
        cmocka_unit_test(test_compile_with_pool_allocation_failures),
        cmocka_unit_test(test_threads_share_one_pool_mlp),
        cmocka_unit_test(test_threads_share_one_pool_cnn),
        cmocka_unit_test(test_threads_share_one_pool_lstm),
        cmocka_unit_test(test_graph_training_matches_without_pool),
        cmocka_unit_test(test_graph_predict_with_pool),
        /* Last: before the fix it overruns a heap block, which can take the
         * whole program down. */
        cmocka_unit_test(test_fewer_slices_than_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
