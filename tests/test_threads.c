/* Concurrent inference on one shared model: the documented thread-safe path
 * (include/aimodel.h, "Thread safety") is aim_model_predict() (or, for a
 * model with several inputs or outputs, aim_model_predict_multi()) on a
 * `const aim_model *` with one aim_workspace per thread.
 *
 * For a small CNN (conv2d -> max pool -> conv2d -> flatten -> dense), a
 * two-layer LSTM classifier (LSTM 16 -> dense), a residual CNN graph (an add
 * and a concat, one input and one output) and a two-input, two-output graph
 * (tests/support.h, graph2_build()), each trained a few Adam steps so that
 * its weights are not the initial ones:
 *  1. reference outputs come from sequential predict calls on INPUTS
 *     different inputs, at batch 1 and in chunks of CHUNK_BATCH;
 *  2. THREADS threads then run every input through the same model at once,
 *     each with a workspace it creates itself, starting at a different input
 *     (so threads work on different data at the same moment) and alternating
 *     between batch 1 and CHUNK_BATCH, and compare every output bit for bit
 *     (memcmp) with the reference of the same batch size;
 *  3. the model's parameter bytes, and its error message, must be as before.
 * One-input, one-output models go through aim_model_predict(), the
 * two-input, two-output one through aim_model_predict_multi().
 *
 * cmocka is not thread-safe: the threads only count, the main thread asserts.
 * tests/tsan.sh builds this file with ThreadSanitizer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"

#define THREADS 8
#define INPUTS 100      /* different inputs per model; each thread runs all of them */
#define CHUNK_BATCH 10  /* the second batch size; divides INPUTS */
#define TRAIN_BATCH 16
#define TRAIN_STEPS 20
#define MAX_IO 2        /* the most inputs or outputs of the models here */

/* ------------------------------------------------------------------------- */
/* The models                                                                */
/* ------------------------------------------------------------------------- */

/* 1x12x12 -> conv 4 3x3 relu (4x10x10) -> max pool 2 (4x5x5)
 * -> conv 8 3x3 relu (8x3x3) -> flatten (72) -> dense 10. */
static aim_model *build_cnn(void) {
    const size_t dims[3] = {1, 12, 12};
    aim_model *m = NULL;
    aim_conv2d_config conv;
    aim_pool2d_config pool;
    aim_dense_config dense;
    CHECK_OK(aim_model_create(NULL, 3, dims, &m));
    CHECK_OK(aim_conv2d_config_init(&conv, 4, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &conv));
    CHECK_OK(aim_pool2d_config_init(&pool, 2, 2));
    CHECK_OK(aim_model_add_max_pool2d(m, &pool));
    CHECK_OK(aim_conv2d_config_init(&conv, 8, 3, 3, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &conv));
    CHECK_OK(aim_model_add_flatten(m));
    CHECK_OK(aim_dense_config_init(&dense, 10, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dense));
    return m;
}

/* A sequence of 8 steps of 6 features -> 2 stacked LSTM layers of hidden 16,
 * last step only -> dense 5. */
static aim_model *build_lstm(void) {
    const size_t dims[2] = {8, 6};
    aim_model *m = NULL;
    aim_lstm_config lstm;
    aim_dense_config dense;
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    CHECK_OK(aim_lstm_config_init(&lstm, 16, 2));
    CHECK_OK(aim_model_add_lstm(m, &lstm));
    CHECK_OK(aim_dense_config_init(&dense, 5, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dense));
    return m;
}

/* A residual CNN graph, one input and one output:
 *   L0 = conv 4 3x3 same relu (1x12x12 -> 4x12x12)
 *   L1 = conv 4 3x3 same (L0)        L2 = add(L1, L0)    L3 = relu (L2)
 *   L4 = conv 2 1x1 relu (L0)        (a second branch from L0)
 *   L5 = concat(L3, L4) on the channels (6x12x12)
 *   L6 = max pool 2 (6x6x6) -> L7 = flatten (216) -> L8 = dense 10. */
static aim_model *build_residual_cnn(void) {
    const size_t dims[3] = {1, 12, 12};
    aim_model *m = NULL;
    aim_conv2d_config conv;
    aim_pool2d_config pool;
    aim_dense_config dense;
    size_t skip = 0, y = 0, block = 0, side = 0;
    CHECK_OK(aim_model_create(NULL, 3, dims, &m));
    CHECK_OK(aim_conv2d_config_init(&conv, 4, 3, 3, AIM_ACT_RELU));
    conv.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &conv));
    CHECK_OK(aim_model_last_node(m, &skip));
    CHECK_OK(aim_conv2d_config_init(&conv, 4, 3, 3, AIM_ACT_IDENTITY));
    conv.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &conv));
    CHECK_OK(aim_model_last_node(m, &y));
    const size_t sum[2] = {y, skip};
    CHECK_OK(aim_model_add_add(m, sum, ARRAY_LEN(sum)));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
    CHECK_OK(aim_model_last_node(m, &block));
    CHECK_OK(aim_model_continue_from(m, skip));
    CHECK_OK(aim_conv2d_config_init(&conv, 2, 1, 1, AIM_ACT_RELU));
    CHECK_OK(aim_model_add_conv2d(m, &conv));
    CHECK_OK(aim_model_last_node(m, &side));
    const size_t parts[2] = {block, side};
    CHECK_OK(aim_model_add_concat(m, parts, ARRAY_LEN(parts), 0));
    CHECK_OK(aim_pool2d_config_init(&pool, 2, 2));
    CHECK_OK(aim_model_add_max_pool2d(m, &pool));
    CHECK_OK(aim_model_add_flatten(m));
    CHECK_OK(aim_dense_config_init(&dense, 10, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_dense(m, &dense));
    assert_int_equal(aim_model_layer_count(m), 9);
    assert_int_equal(aim_model_input_count(m), 1);
    assert_int_equal(aim_model_output_count(m), 1);
    return m;
}

/* The two-input, two-output graph of tests/support.h. */
static aim_model *build_graph2(void) {
    aim_model *m = NULL;
    const char *failed = NULL;
    aim_status st = graph2_build(NULL, &m, &failed);
    if (st != AIM_OK) fail_msg("graph2_build: %s failed: %s", failed, aim_status_str(st));
    assert_int_equal(aim_model_input_count(m), 2);
    assert_int_equal(aim_model_output_count(m), 2);
    return m;
}

/* A model's inputs and outputs: how many, and floats per sample of each. */
typedef struct io_sizes {
    size_t n_in, n_out;
    size_t in[MAX_IO], out[MAX_IO];
} io_sizes;

static io_sizes sizes_of(const aim_model *m) {
    io_sizes s;
    memset(&s, 0, sizeof s);
    s.n_in = aim_model_input_count(m);
    s.n_out = aim_model_output_count(m);
    assert_true(s.n_in >= 1 && s.n_in <= MAX_IO);
    assert_true(s.n_out >= 1 && s.n_out <= MAX_IO);
    for (size_t k = 0; k < s.n_in; k++) {
        size_t rank = 0, dims[AIM_MAX_RANK];
        CHECK_OK(aim_model_layer_shape(m, AIM_MODEL_INPUT(k), &rank, dims));
        s.in[k] = 1;
        for (size_t d = 0; d < rank; d++) s.in[k] *= dims[d];
    }
    for (size_t o = 0; o < s.n_out; o++) {
        size_t node = 0, rank = 0, dims[AIM_MAX_RANK];
        CHECK_OK(aim_model_output_node(m, o, &node));
        CHECK_OK(aim_model_layer_shape(m, node, &rank, dims));
        s.out[o] = 1;
        for (size_t d = 0; d < rank; d++) s.out[o] *= dims[d];
    }
    assert_int_equal(s.in[0], aim_model_input_size(m));
    assert_int_equal(s.out[0], aim_model_output_size(m));
    return s;
}

/* Compiles with a fixed seed and takes TRAIN_STEPS Adam steps of softmax
 * cross-entropy (on every output, its size being its number of classes) on
 * fixed random data, so the weights the threads read are trained ones
 * (checked to differ from the initial ones). */
static void compile_and_train(aim_model *m, uint64_t seed) {
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = TRAIN_BATCH;
    cc.seed = seed;
    CHECK_OK(aim_model_compile(m, &cc));

    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    float *initial = malloc(count * sizeof *initial);
    assert_non_null(initial);
    memcpy(initial, params, count * sizeof *initial);

    const io_sizes s = sizes_of(m);
    float *x[MAX_IO] = {NULL, NULL};
    size_t x_count[MAX_IO] = {0, 0};
    for (size_t k = 0; k < s.n_in; k++) {
        x_count[k] = TRAIN_BATCH * s.in[k];
        x[k] = malloc(x_count[k] * sizeof *x[k]);
        assert_non_null(x[k]);
    }
    int32_t labels[TRAIN_BATCH];
    aim_optimizer *adam = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, count, &adam));
    for (size_t step = 0; step < TRAIN_STEPS; step++) {
        float loss = 0.0f;
        for (size_t k = 0; k < s.n_in; k++)
            fill_uniform(x[k], x_count[k], seed * 1000u + step * 10u + k, -1.0f, 1.0f);
        CHECK_OK(aim_model_zero_grad(m));
        if (s.n_in == 1) {
            CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x[0], x_count[0], TRAIN_BATCH));
        } else {
            const float *const inputs[MAX_IO] = {x[0], x[1]};
            CHECK_OK(aim_model_forward_multi(m, AIM_MODE_TRAIN, inputs, x_count, s.n_in, TRAIN_BATCH));
        }
        for (size_t o = 0; o < s.n_out; o++) {
            for (size_t b = 0; b < TRAIN_BATCH; b++) labels[b] = (int32_t)((b * 7u + step + o) % s.out[o]);
            CHECK_OK(aim_model_loss_sparse(m, o, labels, ARRAY_LEN(labels), &loss));
        }
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(adam, m, 1e-2f));
    }
    assert_true(memcmp(initial, params, count * sizeof *initial) != 0);
    aim_optimizer_free(adam);
    for (size_t k = 0; k < s.n_in; k++) free(x[k]);
    free(initial);
}

/* One predict of `batch` samples starting at sample `first`: through
 * aim_model_predict() for a one-input, one-output model, else through
 * aim_model_predict_multi(). Each count is the floats of the part of the
 * caller's buffer the call is given: `batch` samples of input k from sample
 * `first` (inputs[k] holds INPUTS samples), and the room of out[o], which
 * holds `out_room` samples and is given whole up to `batch` samples (the
 * library wants exactly batch * size). */
static aim_status predict_at(const aim_model *m, aim_workspace *ws, const io_sizes *s, const float *const *inputs,
                             size_t first, size_t batch, float *const *out, size_t out_room) {
    const float *in_ptr[MAX_IO];
    size_t in_count[MAX_IO], out_count[MAX_IO];
    for (size_t k = 0; k < s->n_in; k++) {
        in_ptr[k] = inputs[k] + first * s->in[k];
        in_count[k] = batch * s->in[k];
    }
    for (size_t o = 0; o < s->n_out; o++) out_count[o] = (batch < out_room ? batch : out_room) * s->out[o];
    if (s->n_in == 1 && s->n_out == 1)
        return aim_model_predict(m, ws, in_ptr[0], in_count[0], batch, out[0], out_count[0]);
    return aim_model_predict_multi(m, ws, in_ptr, in_count, s->n_in, batch, out, out_count, s->n_out);
}

/* ------------------------------------------------------------------------- */
/* The threads                                                               */
/* ------------------------------------------------------------------------- */

/* What the threads share (read-only once they start) and what each reports. */
typedef struct shared_run {
    const aim_model *model;
    io_sizes io;
    const float *inputs[MAX_IO];     /* input k: (INPUTS, in[k]) */
    const float *reference1[MAX_IO]; /* output o: (INPUTS, out[o]), sequential predicts at batch 1 */
    const float *referenceB[MAX_IO]; /* the same at CHUNK_BATCH */
    pthread_barrier_t start;         /* every thread creates its workspace, then all go */
} shared_run;

typedef struct thread_report {
    shared_run *run;
    size_t index;
    aim_status status;   /* first failing call, or AIM_OK */
    size_t predicts;     /* predict calls that returned AIM_OK */
    size_t compared;     /* samples compared (each over all outputs) */
    size_t mismatches;   /* samples whose bytes differ from the reference in some output */
    size_t first_bad;    /* first mismatching sample, when mismatches > 0 */
} thread_report;

static void *inference_thread(void *arg) {
    thread_report *r = arg;
    const shared_run *s = r->run;
    aim_workspace *ws = NULL;
    float *out[MAX_IO] = {NULL, NULL};
    int ok = 1;
    for (size_t o = 0; o < s->io.n_out; o++) {
        out[o] = malloc(CHUNK_BATCH * s->io.out[o] * sizeof *out[o]);
        ok = ok && out[o];
    }
    r->status = ok ? aim_workspace_create(s->model, NULL, CHUNK_BATCH, &ws) : AIM_ERR_OUT_OF_MEMORY;
    /* Wait even after a failure, or the others would wait forever. */
    pthread_barrier_wait(&r->run->start);

    /* Thread t starts at input 13 t (mod INPUTS), on a chunk boundary for
     * the chunked passes, and alternates batch sizes pass by pass. */
    for (size_t pass = 0; pass < 2 && r->status == AIM_OK; pass++) {
        const size_t batch = (pass + r->index) % 2 == 0 ? 1 : CHUNK_BATCH;
        const float *const *ref = batch == 1 ? s->reference1 : s->referenceB;
        const size_t first = (r->index * 13u) % INPUTS / batch * batch;
        for (size_t k = 0; k < INPUTS && r->status == AIM_OK; k += batch) {
            const size_t i = (first + k) % INPUTS;
            r->status = predict_at(s->model, ws, &s->io, s->inputs, i, batch, out, CHUNK_BATCH);
            if (r->status != AIM_OK) break;
            r->predicts++;
            for (size_t b = 0; b < batch; b++, r->compared++) {
                int same = 1;
                for (size_t o = 0; o < s->io.n_out; o++) {
                    const size_t n = s->io.out[o];
                    same = same && memcmp(out[o] + b * n, ref[o] + (i + b) * n, n * sizeof *out[o]) == 0;
                }
                if (!same && r->mismatches++ == 0) r->first_bad = i + b;
            }
        }
    }
    aim_workspace_free(ws);
    for (size_t o = 0; o < s->io.n_out; o++) free(out[o]);
    return NULL;
}

/* The whole check for one trained model. */
static void check_concurrent_predict(aim_model *m, uint64_t input_seed) {
    const io_sizes io = sizes_of(m);
    float *inputs[MAX_IO] = {NULL, NULL}, *ref1[MAX_IO] = {NULL, NULL}, *refB[MAX_IO] = {NULL, NULL};
    for (size_t k = 0; k < io.n_in; k++) {
        inputs[k] = malloc(INPUTS * io.in[k] * sizeof *inputs[k]);
        assert_non_null(inputs[k]);
        fill_uniform(inputs[k], INPUTS * io.in[k], input_seed + 17u * k, -1.0f, 1.0f);
    }
    for (size_t o = 0; o < io.n_out; o++) {
        ref1[o] = malloc(INPUTS * io.out[o] * sizeof *ref1[o]);
        refB[o] = malloc(INPUTS * io.out[o] * sizeof *refB[o]);
        assert_non_null(ref1[o]);
        assert_non_null(refB[o]);
    }

    /* The references, one thread, one workspace. */
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, CHUNK_BATCH, &ws));
    for (size_t i = 0; i < INPUTS; i++) {
        float *const dst[MAX_IO] = {ref1[0] + i * io.out[0], io.n_out > 1 ? ref1[1] + i * io.out[1] : NULL};
        CHECK_OK(predict_at(m, ws, &io, (const float *const *)inputs, i, 1, dst, 1));
    }
    for (size_t i = 0; i < INPUTS; i += CHUNK_BATCH) {
        float *const dst[MAX_IO] = {refB[0] + i * io.out[0], io.n_out > 1 ? refB[1] + i * io.out[1] : NULL};
        CHECK_OK(predict_at(m, ws, &io, (const float *const *)inputs, i, CHUNK_BATCH, dst, CHUNK_BATCH));
    }
    aim_workspace_free(ws);
    /* Different inputs give different outputs (on every output): a model
     * that ignored its input (or a dead network) would make the comparison
     * vacuous. */
    for (size_t o = 0; o < io.n_out; o++)
        for (size_t i = 1; i < INPUTS; i++)
            assert_true(memcmp(ref1[o], ref1[o] + i * io.out[o], io.out[o] * sizeof *ref1[o]) != 0);

    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    float *saved = malloc(count * sizeof *saved);
    assert_non_null(saved);
    memcpy(saved, params, count * sizeof *saved);

    shared_run run;
    memset(&run, 0, sizeof run);
    run.model = m;
    run.io = io;
    for (size_t k = 0; k < io.n_in; k++) run.inputs[k] = inputs[k];
    for (size_t o = 0; o < io.n_out; o++) {
        run.reference1[o] = ref1[o];
        run.referenceB[o] = refB[o];
    }
    assert_int_equal(pthread_barrier_init(&run.start, NULL, THREADS), 0);
    thread_report reports[THREADS];
    pthread_t threads[THREADS];
    for (size_t t = 0; t < THREADS; t++) {
        reports[t] = (thread_report){.run = &run, .index = t, .status = AIM_OK};
        assert_int_equal(pthread_create(&threads[t], NULL, inference_thread, &reports[t]), 0);
    }
    for (size_t t = 0; t < THREADS; t++) assert_int_equal(pthread_join(threads[t], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&run.start), 0);

    for (size_t t = 0; t < THREADS; t++) {
        const thread_report *r = &reports[t];
        if (r->status != AIM_OK) print_error("thread %zu: %s\n", t, aim_status_str(r->status));
        assert_int_equal(r->status, AIM_OK);
        if (r->mismatches)
            print_error("thread %zu: %zu of %zu outputs differ from the sequential ones (first: input %zu)\n", t,
                        r->mismatches, r->compared, r->first_bad);
        assert_int_equal(r->mismatches, 0);
        assert_int_equal(r->compared, 2 * INPUTS);
        assert_int_equal(r->predicts, INPUTS + INPUTS / CHUNK_BATCH);
    }
    /* Reading the model did not write it. */
    float *after = NULL;
    size_t count_after = 0;
    CHECK_OK(aim_model_parameters(m, &after, &count_after));
    assert_ptr_equal(after, params);
    assert_int_equal(count_after, count);
    assert_memory_equal(after, saved, count * sizeof *saved);
    assert_string_equal(aim_model_last_error(m), "");

    free(saved);
    for (size_t o = 0; o < io.n_out; o++) {
        free(refB[o]);
        free(ref1[o]);
    }
    for (size_t k = 0; k < io.n_in; k++) free(inputs[k]);
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                     */
/* ------------------------------------------------------------------------- */

static void test_cnn_predict_from_many_threads(void **state) {
    (void)state;
    aim_model *m = build_cnn();
    compile_and_train(m, 11);
    check_concurrent_predict(m, 101);
    aim_model_free(m);
}

static void test_lstm_predict_from_many_threads(void **state) {
    (void)state;
    aim_model *m = build_lstm();
    compile_and_train(m, 12);
    check_concurrent_predict(m, 102);
    aim_model_free(m);
}

static void test_residual_cnn_graph_predict_from_many_threads(void **state) {
    (void)state;
    aim_model *m = build_residual_cnn();
    compile_and_train(m, 13);
    check_concurrent_predict(m, 103);
    aim_model_free(m);
}

static void test_two_input_two_output_graph_predict_multi_from_many_threads(void **state) {
    (void)state;
    aim_model *m = build_graph2();
    compile_and_train(m, 14);
    check_concurrent_predict(m, 104);
    aim_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn_predict_from_many_threads),
        cmocka_unit_test(test_lstm_predict_from_many_threads),
        cmocka_unit_test(test_residual_cnn_graph_predict_from_many_threads),
        cmocka_unit_test(test_two_input_two_output_graph_predict_multi_from_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
