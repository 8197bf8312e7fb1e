/* Concurrent inference on one shared model: the documented thread-safe path
 * (include/aimodel.h, "Thread safety") is aim_model_predict() on a
 * `const aim_model *` with one aim_workspace per thread.
 *
 * For a small CNN (conv2d -> max pool -> conv2d -> flatten -> dense) and a
 * two-layer LSTM classifier (LSTM 16 -> dense), each trained a few Adam steps
 * so that its weights are not the initial ones:
 *  1. reference outputs come from sequential aim_model_predict() calls on
 *     INPUTS different inputs, at batch 1 and in chunks of CHUNK_BATCH;
 *  2. THREADS threads then run every input through the same model at once,
 *     each with a workspace it creates itself, starting at a different input
 *     (so threads work on different data at the same moment) and alternating
 *     between batch 1 and CHUNK_BATCH, and compare every output bit for bit
 *     (memcmp) with the reference of the same batch size;
 *  3. the model's parameter bytes, and its error message, must be as before.
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

/* ------------------------------------------------------------------------- */
/* The two models                                                            */
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

/* Compiles with a fixed seed and takes TRAIN_STEPS Adam steps of softmax
 * cross-entropy on fixed random data, so the weights the threads read are
 * trained ones (checked to differ from the initial ones). */
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

    const size_t in = aim_model_input_size(m), classes = aim_model_output_size(m);
    float *x = malloc(TRAIN_BATCH * in * sizeof *x);
    int32_t labels[TRAIN_BATCH];
    assert_non_null(x);
    aim_optimizer *adam = NULL;
    CHECK_OK(aim_adam_create(NULL, NULL, count, &adam));
    for (size_t step = 0; step < TRAIN_STEPS; step++) {
        float loss = 0.0f;
        fill_uniform(x, TRAIN_BATCH * in, seed * 1000u + step, -1.0f, 1.0f);
        for (size_t b = 0; b < TRAIN_BATCH; b++) labels[b] = (int32_t)((b * 7u + step) % classes);
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, TRAIN_BATCH));
        CHECK_OK(aim_model_loss_sparse(m, labels, TRAIN_BATCH, &loss));
        CHECK_OK(aim_model_backward(m, NULL));
        CHECK_OK(aim_optimizer_step_model(adam, m, 1e-2f));
    }
    assert_true(memcmp(initial, params, count * sizeof *initial) != 0);
    aim_optimizer_free(adam);
    free(x);
    free(initial);
}

/* ------------------------------------------------------------------------- */
/* The threads                                                               */
/* ------------------------------------------------------------------------- */

/* What the threads share (read-only once they start) and what each reports. */
typedef struct shared_run {
    const aim_model *model;
    const float *inputs;     /* (INPUTS, in) */
    const float *reference1; /* (INPUTS, out): sequential predicts at batch 1 */
    const float *referenceB; /* (INPUTS, out): sequential predicts at CHUNK_BATCH */
    size_t in, out;
    pthread_barrier_t start; /* every thread creates its workspace, then all go */
} shared_run;

typedef struct thread_report {
    shared_run *run;
    size_t index;
    aim_status status;   /* first failing call, or AIM_OK */
    size_t predicts;     /* aim_model_predict() calls that returned AIM_OK */
    size_t compared;     /* samples compared */
    size_t mismatches;   /* samples whose bytes differ from the reference */
    size_t first_bad;    /* first mismatching sample, when mismatches > 0 */
} thread_report;

static void *inference_thread(void *arg) {
    thread_report *r = arg;
    const shared_run *s = r->run;
    aim_workspace *ws = NULL;
    float *out = malloc(CHUNK_BATCH * s->out * sizeof *out);
    r->status = out ? aim_workspace_create(s->model, NULL, CHUNK_BATCH, &ws) : AIM_ERR_OUT_OF_MEMORY;
    /* Wait even after a failure, or the others would wait forever. */
    pthread_barrier_wait(&r->run->start);

    /* Thread t starts at input 13 t (mod INPUTS), on a chunk boundary for
     * the chunked passes, and alternates batch sizes pass by pass. */
    for (size_t pass = 0; pass < 2 && r->status == AIM_OK; pass++) {
        const size_t batch = (pass + r->index) % 2 == 0 ? 1 : CHUNK_BATCH;
        const float *ref = batch == 1 ? s->reference1 : s->referenceB;
        const size_t first = (r->index * 13u) % INPUTS / batch * batch;
        for (size_t k = 0; k < INPUTS && r->status == AIM_OK; k += batch) {
            const size_t i = (first + k) % INPUTS;
            r->status = aim_model_predict(s->model, ws, s->inputs + i * s->in, batch, out);
            if (r->status != AIM_OK) break;
            r->predicts++;
            for (size_t b = 0; b < batch; b++, r->compared++) {
                if (memcmp(out + b * s->out, ref + (i + b) * s->out, s->out * sizeof *out) != 0) {
                    if (r->mismatches++ == 0) r->first_bad = i + b;
                }
            }
        }
    }
    aim_workspace_free(ws);
    free(out);
    return NULL;
}

/* The whole check for one trained model. */
static void check_concurrent_predict(aim_model *m, uint64_t input_seed) {
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float *inputs = malloc(INPUTS * in * sizeof *inputs);
    float *ref1 = malloc(INPUTS * out * sizeof *ref1);
    float *refB = malloc(INPUTS * out * sizeof *refB);
    assert_non_null(inputs);
    assert_non_null(ref1);
    assert_non_null(refB);
    fill_uniform(inputs, INPUTS * in, input_seed, -1.0f, 1.0f);

    /* The references, one thread, one workspace. */
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, CHUNK_BATCH, &ws));
    for (size_t i = 0; i < INPUTS; i++) CHECK_OK(aim_model_predict(m, ws, inputs + i * in, 1, ref1 + i * out));
    for (size_t i = 0; i < INPUTS; i += CHUNK_BATCH)
        CHECK_OK(aim_model_predict(m, ws, inputs + i * in, CHUNK_BATCH, refB + i * out));
    aim_workspace_free(ws);
    /* Different inputs give different outputs: a model that ignored its
     * input (or a dead network) would make the comparison vacuous. */
    for (size_t i = 1; i < INPUTS; i++) assert_true(memcmp(ref1, ref1 + i * out, out * sizeof *ref1) != 0);

    float *params = NULL;
    size_t count = 0;
    CHECK_OK(aim_model_parameters(m, &params, &count));
    float *saved = malloc(count * sizeof *saved);
    assert_non_null(saved);
    memcpy(saved, params, count * sizeof *saved);

    shared_run run = {.model = m, .inputs = inputs, .reference1 = ref1, .referenceB = refB, .in = in, .out = out};
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
    free(refB);
    free(ref1);
    free(inputs);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn_predict_from_many_threads),
        cmocka_unit_test(test_lstm_predict_from_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
