/* Allocation: every allocation failure is reported as AIM_ERR_OUT_OF_MEMORY
 * and leaks nothing, a failed call changes nothing (retrying it gives the
 * same result as a run that never failed), and a training step or a predict
 * allocates nothing once the model is compiled.
 *
 * The failing allocator (tests/support.c) fails its k-th call. Each scenario
 * below (dense, convolutional, LSTM and graph models: two inputs, a residual
 * add, a concat, two weighted outputs) makes the same allocator calls
 * in the same order on every run, so for every k below the number of calls of
 * a clean run exactly one call fails.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"

#define IN 20
#define OUT 3
#define BATCH 8
#define MAX_K 1000 /* a clean scenario makes far fewer allocator calls */

typedef struct objects {
    aim_rng *rng;
    aim_model *model;
    aim_optimizer *adam;
    aim_optimizer *sgd;
    aim_workspace *ws;
    aim_tensor *x;      /* BATCH x IN inputs, owned */
    aim_tensor *labels_view; /* a wrapped view of a caller buffer */
    float wrapped[BATCH];
    int32_t labels[BATCH];
    float out[BATCH * OUT];
    float params[1024];
    size_t nparams;
} objects;

static void free_objects(objects *o) {
    aim_tensor_free(o->labels_view);
    aim_tensor_free(o->x);
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->sgd);
    aim_optimizer_free(o->adam);
    aim_model_free(o->model);
    aim_rng_free(o->rng);
    memset(o, 0, sizeof *o);
}

/* Runs `call`. If it fails, it must be the allocator's doing: status OOM and
 * exactly one allocator failure. Without `retry` the scenario stops there;
 * with it, the allocator is healed and the same call must now succeed.
 * A call that returns AIM_OK must not have swallowed an allocator failure. */
#define STEP(call)                                                      \
    do {                                                                \
        long before_ = ta->failures;                                    \
        aim_status s_ = (call);                                         \
        if (s_ == AIM_OK) {                                             \
            assert_int_equal(ta->failures, before_);                    \
            break;                                                      \
        }                                                               \
        assert_int_equal(s_, AIM_ERR_OUT_OF_MEMORY);                    \
        assert_int_equal(ta->failures, before_ + 1);                    \
        *failed_call = #call;                                           \
        if (!retry) return 1;                                           \
        ta->fail_at = -1;                                               \
        assert_int_equal((call), AIM_OK);                               \
    } while (0)

/* 20 -> Dense 16 -> ReLU layer -> Dense 8 relu -> Dense 3, Adam and SGD with
 * momentum, a workspace, tensors, an rng; two training steps and a predict.
 * Returns 1 if a call failed and the scenario stopped, else 0. */
static int scenario(test_alloc *ta, int retry, size_t extra_layers, objects *o, const char **failed_call) {
    const aim_allocator *al = &ta->allocator;
    const size_t in_dims[1] = {IN};
    const size_t x_dims[2] = {BATCH, IN};
    const size_t l_dims[1] = {BATCH};
    aim_dense_config d1, d2, d3;
    aim_compile_config cc;
    aim_sgd_config sc;
    float *p = NULL;

    assert_int_equal(aim_dense_config_init(&d1, 16, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_dense_config_init(&d2, 8, AIM_ACT_RELU), AIM_OK);
    assert_int_equal(aim_dense_config_init(&d3, OUT, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = BATCH;
    cc.seed = 1234;
    cc.input_gradient = 1;
    assert_int_equal(aim_sgd_config_init(&sc), AIM_OK);
    sc.momentum = 0.9f;

    STEP(aim_rng_create(al, 77, &o->rng));
    STEP(aim_model_create(al, 1, in_dims, &o->model));
    STEP(aim_model_add_dense(o->model, &d1));
    STEP(aim_model_add_activation(o->model, AIM_ACT_RELU, 0.0f));
    STEP(aim_model_add_dense(o->model, &d2));
    STEP(aim_model_add_dense(o->model, &d3));
    /* Optional identity layers, enough to make the layer list grow (and its
     * reallocation fail) more than once. */
    for (size_t i = 0; i < extra_layers; i++) STEP(aim_model_add_activation(o->model, AIM_ACT_IDENTITY, 0.0f));
    STEP(aim_model_compile(o->model, &cc));
    assert_int_equal(aim_model_layer_count(o->model), 4 + extra_layers);
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    assert_int_equal(o->nparams, (size_t)(IN * 16 + 16 + 16 * 8 + 8 + 8 * OUT + OUT));
    STEP(aim_adam_create(al, NULL, o->nparams, &o->adam));
    STEP(aim_sgd_create(al, &sc, o->nparams, &o->sgd));
    STEP(aim_workspace_create(o->model, al, BATCH, &o->ws));
    STEP(aim_tensor_create(al, 2, x_dims, &o->x));
    STEP(aim_tensor_wrap(al, 1, l_dims, o->wrapped, ARRAY_LEN(o->wrapped), &o->labels_view));
    STEP(aim_tensor_rand_uniform(o->x, o->rng, -1.0f, 1.0f));
    for (size_t i = 0; i < BATCH; i++) o->labels[i] = (int32_t)(i % OUT);

    for (int step = 0; step < 2; step++) {
        float loss = 0;
        const float *g = NULL;
        size_t gn = 0;
        STEP(aim_model_zero_grad(o->model));
        STEP(aim_model_forward(o->model, AIM_MODE_TRAIN, aim_tensor_data(o->x), aim_tensor_size(o->x), BATCH));
        STEP(aim_model_loss_sparse(o->model, 0, o->labels, ARRAY_LEN(o->labels), &loss));
        STEP(aim_model_backward(o->model, NULL, 0));
        STEP(aim_model_input_gradient(o->model, 0, &g, &gn));
        assert_int_equal(gn, BATCH * IN);
        STEP(aim_optimizer_step_model(step == 0 ? o->adam : o->sgd, o->model, 0.01f));
        assert_true(isfinite(loss));
    }
    STEP(aim_model_predict(o->model, o->ws, aim_tensor_data(o->x), aim_tensor_size(o->x), BATCH, o->out,
                           ARRAY_LEN(o->out)));
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    memcpy(o->params, p, o->nparams * sizeof *p);
    return 0;
}

/* A clean run: how many allocator calls, and the trained weights and outputs. */
static long reference(size_t extra_layers, objects *ref) {
    test_alloc ta;
    const char *failed = NULL;
    test_alloc_init(&ta, -1);
    memset(ref, 0, sizeof *ref);
    assert_int_equal(scenario(&ta, 0, extra_layers, ref, &failed), 0);
    long calls = ta.calls;
    objects keep = *ref;
    free_objects(ref);
    memcpy(ref->params, keep.params, sizeof keep.params);
    memcpy(ref->out, keep.out, sizeof keep.out);
    ref->nparams = keep.nparams;
    assert_int_equal(ta.live, 0);
    assert_int_equal(ta.failures, 0);
    return calls;
}

static void fail_every_allocation(int retry, size_t extra_layers) {
    objects ref;
    long total = reference(extra_layers, &ref);
    long failing_ks = 0;
    long k;
    print_message("clean scenario with %zu extra layers: %ld allocator calls\n", extra_layers, total);
    assert_true(total >= 5);
    for (k = 0; k < MAX_K; k++) {
        test_alloc ta;
        objects o;
        const char *failed = NULL;
        memset(&o, 0, sizeof o);
        test_alloc_init(&ta, k);
        int stopped = scenario(&ta, retry, extra_layers, &o, &failed);
        if (k < total) {
            /* The k-th call exists, so it failed, and was reported. */
            if (ta.failures != 1) fail_msg("k=%ld: allocator failures %ld, expected 1", k, ta.failures);
            assert_non_null(failed);
            failing_ks++;
        } else {
            assert_int_equal(ta.failures, 0);
        }
        if (retry) {
            /* The failed call, retried, leaves everything as if it never
             * failed: same trained weights, same predictions, bit for bit. */
            assert_int_equal(stopped, 0);
            assert_int_equal(o.nparams, ref.nparams);
            if (memcmp(o.params, ref.params, ref.nparams * sizeof(float)) != 0)
                fail_msg("k=%ld: weights differ after retrying %s", k, failed);
            assert_memory_equal(o.out, ref.out, sizeof ref.out);
        }
        free_objects(&o);
        if (ta.live != 0) fail_msg("k=%ld (%s failed): %ld blocks leaked", k, failed ? failed : "-", ta.live);
        if (ta.failures == 0) break;
    }
    assert_true(k < MAX_K);
    assert_int_equal(k, total);
    assert_true(failing_ks >= 5);
}

static void test_every_allocation_failure_is_reported_and_leaks_nothing(void **state) {
    (void)state;
    fail_every_allocation(0, 0);
    fail_every_allocation(0, 30);
}

static void test_a_failed_call_retried_gives_the_clean_result(void **state) {
    (void)state;
    fail_every_allocation(1, 0);
    fail_every_allocation(1, 30);
}

/* ------------------------------------------------------------------------- */
/* A compile that runs out of memory leaves the model as it was               */
/* ------------------------------------------------------------------------- */

static aim_model *build_uncompiled(test_alloc *ta) {
    const size_t in_dims[1] = {IN};
    aim_dense_config dc;
    aim_model *m = NULL;
    assert_int_equal(aim_model_create(&ta->allocator, 1, in_dims, &m), AIM_OK);
    assert_int_equal(aim_dense_config_init(&dc, 16, AIM_ACT_RELU), AIM_OK);
    assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
    assert_int_equal(aim_model_add_activation(m, AIM_ACT_TANH, 0.0f), AIM_OK);
    assert_int_equal(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
    return m;
}

static void compile_config(aim_compile_config *cc) {
    assert_int_equal(aim_compile_config_init(cc), AIM_OK);
    cc->max_batch = BATCH;
    cc->seed = 99;
}

static void test_compile_out_of_memory_then_compile_again(void **state) {
    (void)state;
    test_alloc ta;
    aim_compile_config cc;
    float ref_params[1024], *p = NULL;
    size_t n = 0;
    compile_config(&cc);

    /* Clean compile: how many allocator calls it makes, and its weights. */
    test_alloc_init(&ta, -1);
    aim_model *m = build_uncompiled(&ta);
    long c0 = ta.calls;
    assert_int_equal(aim_model_compile(m, &cc), AIM_OK);
    long compile_calls = ta.calls - c0;
    assert_int_equal(aim_model_parameters(m, &p, &n), AIM_OK);
    assert_true(n <= 1024);
    memcpy(ref_params, p, n * sizeof *p);
    aim_model_free(m);
    assert_int_equal(ta.live, 0);
    print_message("compile makes %ld allocator calls\n", compile_calls);
    assert_true(compile_calls >= 1);

    float x[BATCH * IN];
    int32_t labels[BATCH];
    fill_uniform(x, BATCH * IN, 3, -1.0f, 1.0f);
    for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)(i % OUT);

    for (long j = 0; j < compile_calls; j++) {
        test_alloc_init(&ta, -1);
        m = build_uncompiled(&ta);
        long live_before = ta.live;
        ta.fail_at = ta.calls + j;
        assert_int_equal(aim_model_compile(m, &cc), AIM_ERR_OUT_OF_MEMORY);
        assert_int_equal(ta.failures, 1);
        /* Nothing the failed compile allocated is still held. */
        if (ta.live != live_before) fail_msg("j=%ld: failed compile holds %ld blocks", j, ta.live - live_before);
        assert_true(strlen(aim_model_last_error(m)) > 0);
        /* Still an uncompiled model with its layers. */
        float *q = NULL;
        size_t qn = 0, bytes = 0;
        assert_int_equal(aim_model_parameters(m, &q, &qn), AIM_ERR_INVALID_STATE);
        assert_int_equal(aim_model_memory_size(m, &bytes), AIM_ERR_INVALID_STATE);
        assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, x, IN, 1), AIM_ERR_INVALID_STATE);
        assert_int_equal(aim_model_layer_count(m), 3);
        assert_int_equal(aim_model_output_size(m), OUT);
        /* Compile again with memory available: same weights as a clean run. */
        ta.fail_at = -1;
        assert_int_equal(aim_model_compile(m, &cc), AIM_OK);
        assert_int_equal(aim_model_parameters(m, &q, &qn), AIM_OK);
        assert_int_equal(qn, n);
        assert_memory_equal(q, ref_params, n * sizeof *q);
        /* And it trains. */
        aim_optimizer *opt = NULL;
        assert_int_equal(aim_sgd_create(&ta.allocator, NULL, n, &opt), AIM_OK);
        float first = 0, last = 0;
        for (int s = 0; s < 30; s++) {
            float l = 0;
            assert_int_equal(aim_model_zero_grad(m), AIM_OK);
            assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), BATCH), AIM_OK);
            assert_int_equal(aim_model_loss_sparse(m, 0, labels, ARRAY_LEN(labels), &l), AIM_OK);
            assert_int_equal(aim_model_backward(m, NULL, 0), AIM_OK);
            assert_int_equal(aim_optimizer_step_model(opt, m, 0.1f), AIM_OK);
            if (s == 0) first = l;
            last = l;
        }
        assert_true(last < first);
        aim_optimizer_free(opt);
        aim_model_free(m);
        assert_int_equal(ta.live, 0);
    }
}

/* ------------------------------------------------------------------------- */
/* No allocation after compile                                               */
/* ------------------------------------------------------------------------- */

static void test_training_and_predict_allocate_nothing(void **state) {
    (void)state;
    test_alloc ta;
    aim_compile_config cc;
    aim_sgd_config sc;
    aim_optimizer *adam = NULL, *sgd = NULL;
    aim_workspace *ws = NULL;
    float x[BATCH * IN], out[BATCH * OUT], *p = NULL, *g = NULL;
    int32_t labels[BATCH];
    size_t n = 0;

    test_alloc_init(&ta, -1);
    aim_model *m = build_uncompiled(&ta);
    compile_config(&cc);
    cc.input_gradient = 1;
    assert_int_equal(aim_model_compile(m, &cc), AIM_OK);
    assert_int_equal(aim_model_parameters(m, &p, &n), AIM_OK);
    assert_int_equal(aim_adam_create(&ta.allocator, NULL, n, &adam), AIM_OK);
    assert_int_equal(aim_sgd_config_init(&sc), AIM_OK);
    sc.momentum = 0.9f;
    sc.nesterov = 1;
    sc.weight_decay = 1e-4f;
    assert_int_equal(aim_sgd_create(&ta.allocator, &sc, n, &sgd), AIM_OK);
    assert_int_equal(aim_workspace_create(m, &ta.allocator, BATCH, &ws), AIM_OK);
    fill_uniform(x, BATCH * IN, 5, -1.0f, 1.0f);
    for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)(i % OUT);

    long calls = ta.calls, live = ta.live;
    for (int s = 0; s < 50; s++) {
        float l = 0;
        const float *ig = NULL, *o = NULL;
        size_t cnt = 0, off = 0, wc = 0, bc = 0, bytes = 0;
        size_t batch = (size_t)(s % BATCH) + 1; /* every batch size up to max_batch */
        /* the first `batch` samples of x and labels: batch * IN floats, batch labels */
        assert_int_equal(aim_model_zero_grad(m), AIM_OK);
        assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, x, batch * IN, batch), AIM_OK);
        assert_int_equal(aim_model_output(m, 0, &o, &cnt), AIM_OK);
        assert_int_equal(cnt, batch * OUT);
        assert_int_equal(aim_model_loss_sparse(m, 0, labels, batch, &l), AIM_OK);
        assert_int_equal(aim_model_backward(m, NULL, 0), AIM_OK);
        assert_int_equal(aim_model_input_gradient(m, 0, &ig, &cnt), AIM_OK);
        assert_int_equal(cnt, batch * IN);
        assert_int_equal(aim_model_gradients(m, &g, &cnt), AIM_OK);
        assert_int_equal(aim_clip_grad_norm(g, cnt, 5.0f, NULL), AIM_OK);
        assert_int_equal(aim_optimizer_step_model(s % 2 ? adam : sgd, m, 0.01f), AIM_OK);
        assert_int_equal(aim_model_layer_parameters(m, 0, &off, &wc, &bc), AIM_OK);
        assert_int_equal(aim_model_memory_size(m, &bytes), AIM_OK);
        assert_int_equal(aim_model_forward(m, AIM_MODE_INFERENCE, x, batch * IN, batch), AIM_OK);
        assert_true(isfinite(l));
    }
    for (int s = 0; s < 50; s++) {
        size_t batch = (size_t)(s % BATCH) + 1;
        assert_int_equal(aim_model_predict(m, ws, x, batch * IN, batch, out, batch * OUT), AIM_OK);
    }
    /* The raw optimizer step on the model's buffers too. */
    assert_int_equal(aim_model_gradients(m, &g, &n), AIM_OK);
    assert_int_equal(aim_model_parameters(m, &p, &n), AIM_OK);
    for (int s = 0; s < 10; s++) assert_int_equal(aim_optimizer_step(adam, p, g, n, 0.001f), AIM_OK);
    assert_int_equal(aim_optimizer_reset(adam), AIM_OK);
    assert_int_equal(aim_optimizer_step(adam, p, g, n, 0.001f), AIM_OK);

    if (ta.calls != calls) fail_msg("%ld allocator calls during 50 steps and 50 predicts", ta.calls - calls);
    assert_int_equal(ta.live, live);

    aim_workspace_free(ws);
    aim_optimizer_free(sgd);
    aim_optimizer_free(adam);
    aim_model_free(m);
    assert_int_equal(ta.live, 0);
}

static void test_float_losses_allocate_nothing(void **state) {
    (void)state;
    static const aim_loss_kind kinds[] = {AIM_LOSS_MSE, AIM_LOSS_BCE, AIM_LOSS_BCE_WITH_LOGITS,
                                          AIM_LOSS_SOFTMAX_CROSS_ENTROPY};
    const size_t in_dims[1] = {IN};
    test_alloc ta;
    aim_dense_config dc;
    aim_compile_config cc;
    aim_model *m = NULL;
    aim_optimizer *opt = NULL;
    float x[BATCH * IN], targets[BATCH * OUT], *p = NULL;
    size_t n = 0;

    /* Sigmoid outputs are valid probabilities for BCE and logits for the rest. */
    test_alloc_init(&ta, -1);
    assert_int_equal(aim_model_create(&ta.allocator, 1, in_dims, &m), AIM_OK);
    assert_int_equal(aim_dense_config_init(&dc, 16, AIM_ACT_TANH), AIM_OK);
    assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
    assert_int_equal(aim_dense_config_init(&dc, OUT, AIM_ACT_SIGMOID), AIM_OK);
    assert_int_equal(aim_model_add_dense(m, &dc), AIM_OK);
    compile_config(&cc);
    assert_int_equal(aim_model_compile(m, &cc), AIM_OK);
    assert_int_equal(aim_model_parameters(m, &p, &n), AIM_OK);
    assert_int_equal(aim_adam_create(&ta.allocator, NULL, n, &opt), AIM_OK);
    fill_uniform(x, BATCH * IN, 8, -1.0f, 1.0f);
    for (size_t i = 0; i < BATCH; i++)
        for (size_t j = 0; j < OUT; j++) targets[i * OUT + j] = (j == i % OUT) ? 1.0f : 0.0f;

    long calls = ta.calls;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (int s = 0; s < 10; s++) {
            float l = 0;
            assert_int_equal(aim_model_zero_grad(m), AIM_OK);
            assert_int_equal(aim_model_forward(m, AIM_MODE_TRAIN, x, ARRAY_LEN(x), BATCH), AIM_OK);
            assert_int_equal(aim_model_loss(m, 0, kinds[k], targets, ARRAY_LEN(targets), &l), AIM_OK);
            assert_int_equal(aim_model_backward(m, NULL, 0), AIM_OK);
            assert_int_equal(aim_optimizer_step_model(opt, m, 0.01f), AIM_OK);
            assert_true(isfinite(l));
        }
        if (ta.calls != calls) fail_msg("loss kind %d: %ld allocator calls", (int)kinds[k], ta.calls - calls);
    }
    aim_optimizer_free(opt);
    aim_model_free(m);
    assert_int_equal(ta.live, 0);
}

/* ------------------------------------------------------------------------- */
/* The same for convolutional models                                         */
/* ------------------------------------------------------------------------- */

#define IMG_C 2
#define IMG_H 8
#define IMG_W 8
#define IMG (IMG_C * IMG_H * IMG_W)

typedef struct cnn_objects {
    aim_model *model;
    aim_optimizer *opt;
    aim_workspace *ws;
    float params[2048];
    size_t nparams;
    float out[BATCH * OUT];
} cnn_objects;

static void free_cnn(cnn_objects *o) {
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->opt);
    aim_model_free(o->model);
    o->ws = NULL;
    o->opt = NULL;
    o->model = NULL;
}

/* variant 0: conv same -> max pool -> grouped dilated conv -> avg pool (padded) -> global avg pool -> dense
 * variant 1: conv strided -> flatten -> dense */
static int cnn_scenario(test_alloc *ta, int retry, int variant, cnn_objects *o, const char **failed_call) {
    const aim_allocator *al = &ta->allocator;
    const size_t in_dims[3] = {IMG_C, IMG_H, IMG_W};
    aim_conv2d_config c1, c2;
    aim_pool2d_config mp, ap;
    aim_dense_config dc;
    aim_compile_config cc;
    float x[BATCH * IMG], *p = NULL;
    int32_t labels[BATCH];
    fill_uniform(x, BATCH * IMG, 17, -1.0f, 1.0f);
    for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)(i % OUT);

    assert_int_equal(aim_conv2d_config_init(&c1, 4, 3, 3, AIM_ACT_RELU), AIM_OK);
    assert_int_equal(aim_conv2d_config_init(&c2, 4, 3, 3, AIM_ACT_TANH), AIM_OK);
    if (variant == 0) {
        c1.padding = AIM_PAD_SAME;
        c2.groups = 2;
        c2.dilation_h = 2;
        c2.padding = AIM_PAD_EXPLICIT;
        c2.pad_top = c2.pad_bottom = 2;
        c2.pad_left = c2.pad_right = 1;
    } else {
        c1.stride_h = 2;
        c1.stride_w = 2;
    }
    assert_int_equal(aim_pool2d_config_init(&mp, 2, 2), AIM_OK);
    assert_int_equal(aim_pool2d_config_init(&ap, 3, 3), AIM_OK);
    ap.stride_h = ap.stride_w = 1;
    ap.pad_h = ap.pad_w = 1;
    assert_int_equal(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = BATCH;
    cc.seed = 5;
    cc.input_gradient = 1;

    STEP(aim_model_create(al, 3, in_dims, &o->model));
    STEP(aim_model_add_conv2d(o->model, &c1));
    if (variant == 0) {
        STEP(aim_model_add_max_pool2d(o->model, &mp));
        STEP(aim_model_add_conv2d(o->model, &c2));
        STEP(aim_model_add_avg_pool2d(o->model, &ap));
        STEP(aim_model_add_global_avg_pool2d(o->model));
    } else {
        STEP(aim_model_add_flatten(o->model));
    }
    STEP(aim_model_add_dense(o->model, &dc));
    STEP(aim_model_compile(o->model, &cc));
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    assert_true(o->nparams <= 2048);
    STEP(aim_adam_create(al, NULL, o->nparams, &o->opt));
    STEP(aim_workspace_create(o->model, al, BATCH, &o->ws));
    for (int step = 0; step < 2; step++) {
        float loss = 0;
        STEP(aim_model_zero_grad(o->model));
        STEP(aim_model_forward(o->model, AIM_MODE_TRAIN, x, ARRAY_LEN(x), BATCH));
        STEP(aim_model_loss_sparse(o->model, 0, labels, ARRAY_LEN(labels), &loss));
        STEP(aim_model_backward(o->model, NULL, 0));
        STEP(aim_optimizer_step_model(o->opt, o->model, 0.01f));
        assert_true(isfinite(loss));
    }
    STEP(aim_model_predict(o->model, o->ws, x, ARRAY_LEN(x), BATCH, o->out, ARRAY_LEN(o->out)));
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    memcpy(o->params, p, o->nparams * sizeof *p);
    return 0;
}

static void test_cnn_allocation_failures(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        for (int retry = 0; retry < 2; retry++) {
            test_alloc ta;
            cnn_objects ref, o;
            const char *failed = NULL;
            memset(&ref, 0, sizeof ref);
            test_alloc_init(&ta, -1);
            assert_int_equal(cnn_scenario(&ta, 0, variant, &ref, &failed), 0);
            long total = ta.calls;
            free_cnn(&ref);
            assert_int_equal(ta.live, 0);
            long k;
            for (k = 0; k < MAX_K; k++) {
                memset(&o, 0, sizeof o);
                failed = NULL;
                test_alloc_init(&ta, k);
                int stopped = cnn_scenario(&ta, retry, variant, &o, &failed);
                if (retry) {
                    assert_int_equal(stopped, 0);
                    assert_int_equal(o.nparams, ref.nparams);
                    if (memcmp(o.params, ref.params, ref.nparams * sizeof(float)) != 0)
                        fail_msg("variant %d k=%ld: weights differ after retrying %s", variant, k, failed);
                    assert_memory_equal(o.out, ref.out, sizeof ref.out);
                }
                free_cnn(&o);
                if (ta.live != 0)
                    fail_msg("variant %d k=%ld (%s failed): %ld blocks leaked", variant, k, failed ? failed : "-",
                             ta.live);
                if (ta.failures == 0) break;
            }
            assert_int_equal(k, total);
        }
    }
}

static void test_cnn_training_allocates_nothing(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        test_alloc ta;
        cnn_objects o;
        const char *failed = NULL;
        float x[BATCH * IMG], out[BATCH * OUT];
        int32_t labels[BATCH];
        memset(&o, 0, sizeof o);
        test_alloc_init(&ta, -1);
        assert_int_equal(cnn_scenario(&ta, 0, variant, &o, &failed), 0);
        fill_uniform(x, BATCH * IMG, 18, -1.0f, 1.0f);
        for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)((i * 5) % OUT);
        long calls = ta.calls;
        for (int s = 0; s < 50; s++) {
            float l = 0;
            const float *ig = NULL;
            size_t ign = 0;
            size_t batch = (size_t)(s % BATCH) + 1; /* the first `batch` samples of x, labels and out */
            assert_int_equal(aim_model_zero_grad(o.model), AIM_OK);
            assert_int_equal(aim_model_forward(o.model, AIM_MODE_TRAIN, x, batch * IMG, batch), AIM_OK);
            assert_int_equal(aim_model_loss_sparse(o.model, 0, labels, batch, &l), AIM_OK);
            assert_int_equal(aim_model_backward(o.model, NULL, 0), AIM_OK);
            assert_int_equal(aim_model_input_gradient(o.model, 0, &ig, &ign), AIM_OK);
            assert_int_equal(ign, batch * IMG);
            assert_int_equal(aim_optimizer_step_model(o.opt, o.model, 0.01f), AIM_OK);
            assert_int_equal(aim_model_predict(o.model, o.ws, x, batch * IMG, batch, out, batch * OUT), AIM_OK);
            assert_true(isfinite(l));
        }
        if (ta.calls != calls) fail_msg("variant %d: %ld allocator calls in 50 steps", variant, ta.calls - calls);
        free_cnn(&o);
        assert_int_equal(ta.live, 0);
    }
}

/* ------------------------------------------------------------------------- */
/* The same for LSTM models                                                  */
/* ------------------------------------------------------------------------- */

#define SEQ_T 5
#define SEQ_F 3
#define SEQ (SEQ_T * SEQ_F)
#define LSTM_H 6
#define LSTM_H2 4

typedef struct lstm_objects {
    aim_model *model;
    aim_optimizer *opt;
    aim_workspace *ws;
    float params[2048];
    size_t nparams;
    float out[BATCH * OUT];
    float h[2 * BATCH * LSTM_H], c[2 * BATCH * LSTM_H]; /* layer 0's states, [2, BATCH, H] */
    float h2[BATCH * LSTM_H2], c2[BATCH * LSTM_H2];     /* layer 1's */
} lstm_objects;

static void free_lstm(lstm_objects *o) {
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->opt);
    aim_model_free(o->model);
    o->ws = NULL;
    o->opt = NULL;
    o->model = NULL;
}

/* variant 0: LSTM 6 x 2 layers (sequence) -> LSTM 4 (last step) -> dense; the
 *            states are carried from each step to the next
 * variant 1: LSTM 6 (sequence, Glorot) -> flatten -> dense; zero states */
static int lstm_scenario(test_alloc *ta, int retry, int variant, lstm_objects *o, const char **failed_call) {
    const aim_allocator *al = &ta->allocator;
    const size_t in_dims[2] = {SEQ_T, SEQ_F};
    aim_lstm_config l1, l2;
    aim_dense_config dc;
    aim_compile_config cc;
    float x[BATCH * SEQ], *p = NULL;
    int32_t labels[BATCH];
    fill_uniform(x, BATCH * SEQ, 19, -1.0f, 1.0f);
    for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)(i % OUT);

    assert_int_equal(aim_lstm_config_init(&l1, LSTM_H, variant == 0 ? 2 : 1), AIM_OK);
    l1.return_sequences = 1;
    if (variant == 1) l1.init = AIM_INIT_GLOROT_UNIFORM;
    assert_int_equal(aim_lstm_config_init(&l2, LSTM_H2, 1), AIM_OK);
    assert_int_equal(aim_dense_config_init(&dc, OUT, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = BATCH;
    cc.seed = 6;
    cc.input_gradient = 1;

    STEP(aim_model_create(al, 2, in_dims, &o->model));
    STEP(aim_model_add_lstm(o->model, &l1));
    if (variant == 0) STEP(aim_model_add_lstm(o->model, &l2));
    else STEP(aim_model_add_flatten(o->model));
    STEP(aim_model_add_dense(o->model, &dc));
    STEP(aim_model_compile(o->model, &cc));
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    assert_true(o->nparams <= 2048);
    STEP(aim_adam_create(al, NULL, o->nparams, &o->opt));
    STEP(aim_workspace_create(o->model, al, BATCH, &o->ws));
    memset(o->h, 0, sizeof o->h);
    memset(o->c, 0, sizeof o->c);
    memset(o->h2, 0, sizeof o->h2);
    memset(o->c2, 0, sizeof o->c2);
    for (int step = 0; step < 2; step++) {
        float loss = 0;
        const float *g = NULL;
        size_t gn = 0;
        if (variant == 0) {
            STEP(aim_model_lstm_set_state(o->model, 0, o->h, ARRAY_LEN(o->h), o->c, ARRAY_LEN(o->c), BATCH));
            STEP(aim_model_lstm_set_state(o->model, 1, o->h2, ARRAY_LEN(o->h2), o->c2, ARRAY_LEN(o->c2), BATCH));
        }
        STEP(aim_model_zero_grad(o->model));
        STEP(aim_model_forward(o->model, AIM_MODE_TRAIN, x, ARRAY_LEN(x), BATCH));
        STEP(aim_model_loss_sparse(o->model, 0, labels, ARRAY_LEN(labels), &loss));
        STEP(aim_model_backward(o->model, NULL, 0));
        STEP(aim_model_input_gradient(o->model, 0, &g, &gn));
        assert_int_equal(gn, ARRAY_LEN(x));
        STEP(aim_optimizer_step_model(o->opt, o->model, 0.01f));
        if (variant == 0) {
            STEP(aim_model_lstm_final_state(o->model, 0, o->h, ARRAY_LEN(o->h), o->c, ARRAY_LEN(o->c), BATCH));
            STEP(aim_model_lstm_final_state(o->model, 1, o->h2, ARRAY_LEN(o->h2), o->c2, ARRAY_LEN(o->c2), BATCH));
        }
        assert_true(isfinite(loss));
    }
    STEP(aim_model_predict(o->model, o->ws, x, ARRAY_LEN(x), BATCH, o->out, ARRAY_LEN(o->out)));
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    memcpy(o->params, p, o->nparams * sizeof *p);
    return 0;
}

static void test_lstm_allocation_failures(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        for (int retry = 0; retry < 2; retry++) {
            test_alloc ta;
            lstm_objects ref, o;
            const char *failed = NULL;
            memset(&ref, 0, sizeof ref);
            test_alloc_init(&ta, -1);
            assert_int_equal(lstm_scenario(&ta, 0, variant, &ref, &failed), 0);
            long total = ta.calls;
            free_lstm(&ref);
            assert_int_equal(ta.live, 0);
            assert_true(total >= 5);
            if (retry == 0) print_message("LSTM variant %d: %ld allocator calls\n", variant, total);
            long k;
            for (k = 0; k < MAX_K; k++) {
                memset(&o, 0, sizeof o);
                failed = NULL;
                test_alloc_init(&ta, k);
                int stopped = lstm_scenario(&ta, retry, variant, &o, &failed);
                if (k < total) {
                    if (ta.failures != 1) fail_msg("variant %d k=%ld: allocator failures %ld", variant, k, ta.failures);
                    assert_non_null(failed);
                }
                if (retry) {
                    /* Retried, the failed call leaves everything as if it never failed. */
                    assert_int_equal(stopped, 0);
                    assert_int_equal(o.nparams, ref.nparams);
                    if (memcmp(o.params, ref.params, ref.nparams * sizeof(float)) != 0)
                        fail_msg("variant %d k=%ld: weights differ after retrying %s", variant, k, failed);
                    assert_memory_equal(o.out, ref.out, sizeof ref.out);
                    assert_memory_equal(o.h, ref.h, sizeof ref.h);
                    assert_memory_equal(o.c2, ref.c2, sizeof ref.c2);
                }
                free_lstm(&o);
                if (ta.live != 0)
                    fail_msg("variant %d k=%ld (%s failed): %ld blocks leaked", variant, k, failed ? failed : "-",
                             ta.live);
                if (ta.failures == 0) break;
            }
            assert_int_equal(k, total);
        }
    }
}

static void test_lstm_training_allocates_nothing(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        test_alloc ta;
        lstm_objects o;
        const char *failed = NULL;
        float x[BATCH * SEQ], out[BATCH * OUT];
        int32_t labels[BATCH];
        memset(&o, 0, sizeof o);
        test_alloc_init(&ta, -1);
        assert_int_equal(lstm_scenario(&ta, 0, variant, &o, &failed), 0);
        fill_uniform(x, BATCH * SEQ, 20, -1.0f, 1.0f);
        for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)((i * 5) % OUT);
        long calls = ta.calls, live = ta.live;
        for (int s = 0; s < 50; s++) {
            float l = 0;
            const float *ig = NULL;
            size_t ign = 0;
            size_t batch = (size_t)(s % BATCH) + 1; /* every batch size up to max_batch */
            /* the states of `batch` sequences: [2, batch, H] and [1, batch, H2] floats */
            const size_t st1 = 2 * batch * LSTM_H, st2 = batch * LSTM_H2;
            if (variant == 0) { /* states for this batch (their values: the last ones, any batch) */
                assert_int_equal(aim_model_lstm_set_state(o.model, 0, o.h, st1, o.c, st1, batch), AIM_OK);
                assert_int_equal(aim_model_lstm_set_state(o.model, 1, o.h2, st2, o.c2, st2, batch), AIM_OK);
            }
            assert_int_equal(aim_model_zero_grad(o.model), AIM_OK);
            assert_int_equal(aim_model_forward(o.model, AIM_MODE_TRAIN, x, batch * SEQ, batch), AIM_OK);
            assert_int_equal(aim_model_loss_sparse(o.model, 0, labels, batch, &l), AIM_OK);
            assert_int_equal(aim_model_backward(o.model, NULL, 0), AIM_OK);
            assert_int_equal(aim_model_input_gradient(o.model, 0, &ig, &ign), AIM_OK);
            assert_int_equal(ign, batch * SEQ);
            assert_int_equal(aim_optimizer_step_model(o.opt, o.model, 0.01f), AIM_OK);
            if (variant == 0) {
                assert_int_equal(aim_model_lstm_final_state(o.model, 0, o.h, st1, o.c, st1, batch), AIM_OK);
                assert_int_equal(aim_model_lstm_final_state(o.model, 1, o.h2, st2, o.c2, st2, batch), AIM_OK);
            }
            assert_int_equal(aim_model_forward(o.model, AIM_MODE_INFERENCE, x, batch * SEQ, batch), AIM_OK);
            assert_int_equal(aim_model_predict(o.model, o.ws, x, batch * SEQ, batch, out, batch * OUT), AIM_OK);
            assert_true(isfinite(l));
        }
        if (ta.calls != calls) fail_msg("variant %d: %ld allocator calls in 50 LSTM steps", variant, ta.calls - calls);
        assert_int_equal(ta.live, live);
        free_lstm(&o);
        assert_int_equal(ta.live, 0);
    }
}

/* ------------------------------------------------------------------------- */
/* The same for a graph model                                                */
/* ------------------------------------------------------------------------- */

#define G_IN0 10
#define G_IN1 4
#define G_OUT0 3
#define G_OUT1 2

typedef struct graph_objects {
    aim_model *model;
    aim_optimizer *opt;
    aim_workspace *ws;
    float params[2048];
    size_t nparams;
    float out0[BATCH * G_OUT0], out1[BATCH * G_OUT1];
    float ig1[BATCH * G_IN1]; /* input 1's gradient after the last step */
} graph_objects;

static void free_graph(graph_objects *o) {
    aim_workspace_free(o->ws);
    aim_optimizer_free(o->opt);
    aim_model_free(o->model);
    o->ws = NULL;
    o->opt = NULL;
    o->model = NULL;
}

/* Two inputs, a residual add, a concat that also takes input 1 itself, two
 * weighted outputs:
 *   L0 = dense 8 relu (input 0)   L1 = dense 8 tanh   L2 = dense 8
 *   L3 = add(L2, L0)              L4 = relu
 *   then `extra` more residual blocks x + dense 8 tanh (x) (two layers each),
 *   enough for the layer list to grow (and its reallocation fail) more than once
 *   L5 = dense 8 relu (input 1)
 *   L6 = concat(last block, L5, input 1) on axis 0 (20)
 *   L7 = dense G_OUT0 (L6): output 0, weight 1, softmax cross-entropy
 *   L8 = dense G_OUT1 (L3): output 1, weight 0.25, MSE
 * (L5 to L8 numbered without the extra blocks), then Adam, a workspace, two
 * training steps and a predict_multi. */
static int graph_scenario(test_alloc *ta, int retry, size_t extra, graph_objects *o, const char **failed_call) {
    const aim_allocator *al = &ta->allocator;
    const size_t in0_dims[1] = {G_IN0}, in1_dims[1] = {G_IN1};
    aim_dense_config relu8, tanh8, lin8, head0, head1;
    aim_compile_config cc;
    size_t input1 = 0, skip = 0, y = 0, sum = 0, block = 0, side = 0, out0 = 0, out1 = 0;
    float x0[BATCH * G_IN0], x1[BATCH * G_IN1], targets[BATCH * G_OUT1], *p = NULL;
    int32_t labels[BATCH];
    fill_uniform(x0, ARRAY_LEN(x0), 21, -1.0f, 1.0f);
    fill_uniform(x1, ARRAY_LEN(x1), 22, -1.0f, 1.0f);
    fill_uniform(targets, ARRAY_LEN(targets), 23, -1.0f, 1.0f);
    for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)(i % G_OUT0);
    const float *const inputs[2] = {x0, x1};
    const size_t in_counts[2] = {ARRAY_LEN(x0), ARRAY_LEN(x1)};
    float *const outputs[2] = {o->out0, o->out1};
    const size_t out_counts[2] = {ARRAY_LEN(o->out0), ARRAY_LEN(o->out1)};

    assert_int_equal(aim_dense_config_init(&relu8, 8, AIM_ACT_RELU), AIM_OK);
    assert_int_equal(aim_dense_config_init(&tanh8, 8, AIM_ACT_TANH), AIM_OK);
    assert_int_equal(aim_dense_config_init(&lin8, 8, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_dense_config_init(&head0, G_OUT0, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_dense_config_init(&head1, G_OUT1, AIM_ACT_IDENTITY), AIM_OK);
    assert_int_equal(aim_compile_config_init(&cc), AIM_OK);
    cc.max_batch = BATCH;
    cc.seed = 8;
    cc.input_gradient = 1;

    STEP(aim_model_create(al, 1, in0_dims, &o->model));
    STEP(aim_model_add_input(o->model, 1, in1_dims, &input1));
    STEP(aim_model_add_dense(o->model, &relu8));
    STEP(aim_model_last_node(o->model, &skip));
    STEP(aim_model_add_dense(o->model, &tanh8));
    STEP(aim_model_add_dense(o->model, &lin8));
    STEP(aim_model_last_node(o->model, &y));
    const size_t residual[2] = {y, skip};
    STEP(aim_model_add_add(o->model, residual, ARRAY_LEN(residual)));
    STEP(aim_model_last_node(o->model, &sum));
    STEP(aim_model_add_activation(o->model, AIM_ACT_RELU, 0.0f));
    STEP(aim_model_last_node(o->model, &block));
    for (size_t i = 0; i < extra; i++) {
        size_t x = 0, fx = 0;
        STEP(aim_model_last_node(o->model, &x));
        STEP(aim_model_add_dense(o->model, &tanh8));
        STEP(aim_model_last_node(o->model, &fx));
        const size_t more[2] = {fx, x};
        STEP(aim_model_add_add(o->model, more, ARRAY_LEN(more)));
        STEP(aim_model_last_node(o->model, &block));
    }
    STEP(aim_model_continue_from(o->model, input1));
    STEP(aim_model_add_dense(o->model, &relu8));
    STEP(aim_model_last_node(o->model, &side));
    const size_t parts[3] = {block, side, input1};
    STEP(aim_model_add_concat(o->model, parts, ARRAY_LEN(parts), 0));
    STEP(aim_model_add_dense(o->model, &head0));
    STEP(aim_model_last_node(o->model, &out0));
    STEP(aim_model_continue_from(o->model, sum));
    STEP(aim_model_add_dense(o->model, &head1));
    STEP(aim_model_last_node(o->model, &out1));
    const size_t outs[2] = {out0, out1};
    const float weights[2] = {1.0f, 0.25f};
    STEP(aim_model_set_outputs(o->model, outs, weights, ARRAY_LEN(outs)));
    STEP(aim_model_compile(o->model, &cc));
    assert_int_equal(aim_model_layer_count(o->model), 9 + 2 * extra);
    assert_int_equal(aim_model_input_count(o->model), 2);
    assert_int_equal(aim_model_output_count(o->model), 2);
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    assert_int_equal(o->nparams, (size_t)(G_IN0 * 8 + 8 + (2 + extra) * (8 * 8 + 8) + G_IN1 * 8 + 8 + 20 * G_OUT0 +
                                          G_OUT0 + 8 * G_OUT1 + G_OUT1));
    STEP(aim_adam_create(al, NULL, o->nparams, &o->opt));
    STEP(aim_workspace_create(o->model, al, BATCH, &o->ws));
    for (int step = 0; step < 2; step++) {
        float l0 = 0, l1 = 0;
        const float *g = NULL;
        size_t gn = 0;
        STEP(aim_model_zero_grad(o->model));
        STEP(aim_model_forward_multi(o->model, AIM_MODE_TRAIN, inputs, in_counts, ARRAY_LEN(inputs), BATCH));
        STEP(aim_model_loss_sparse(o->model, 0, labels, ARRAY_LEN(labels), &l0));
        STEP(aim_model_loss(o->model, 1, AIM_LOSS_MSE, targets, ARRAY_LEN(targets), &l1));
        STEP(aim_model_backward(o->model, NULL, 0));
        STEP(aim_model_input_gradient(o->model, 0, &g, &gn));
        assert_int_equal(gn, ARRAY_LEN(x0));
        STEP(aim_model_input_gradient(o->model, 1, &g, &gn));
        assert_int_equal(gn, ARRAY_LEN(x1));
        memcpy(o->ig1, g, sizeof o->ig1);
        STEP(aim_optimizer_step_model(o->opt, o->model, 0.01f));
        assert_true(isfinite(l0) && isfinite(l1));
    }
    STEP(aim_model_predict_multi(o->model, o->ws, inputs, in_counts, ARRAY_LEN(inputs), BATCH, outputs, out_counts,
                                 ARRAY_LEN(outputs)));
    assert_int_equal(aim_model_parameters(o->model, &p, &o->nparams), AIM_OK);
    memcpy(o->params, p, o->nparams * sizeof *p);
    return 0;
}

static void test_graph_allocation_failures(void **state) {
    (void)state;
    for (int run = 0; run < 4; run++) {
        const int retry = run % 2;
        const size_t extra = run < 2 ? 0 : 20;
        test_alloc ta;
        graph_objects ref, o;
        const char *failed = NULL;
        memset(&ref, 0, sizeof ref);
        test_alloc_init(&ta, -1);
        assert_int_equal(graph_scenario(&ta, 0, extra, &ref, &failed), 0);
        long total = ta.calls;
        free_graph(&ref);
        assert_int_equal(ta.live, 0);
        assert_int_equal(ta.failures, 0);
        assert_true(total >= 5);
        if (retry == 0) print_message("graph with %zu extra blocks: %ld allocator calls\n", extra, total);
        long k, failing_ks = 0;
        for (k = 0; k < MAX_K; k++) {
            memset(&o, 0, sizeof o);
            failed = NULL;
            test_alloc_init(&ta, k);
            int stopped = graph_scenario(&ta, retry, extra, &o, &failed);
            if (k < total) {
                /* The k-th call exists, so it failed, and was reported as AIM_ERR_OUT_OF_MEMORY (STEP). */
                if (ta.failures != 1)
                    fail_msg("graph (%zu extra) k=%ld: allocator failures %ld, expected 1", extra, k, ta.failures);
                assert_non_null(failed);
                failing_ks++;
            } else {
                assert_int_equal(ta.failures, 0);
            }
            if (retry) {
                /* Retried, the failed call leaves everything as if it never failed. */
                assert_int_equal(stopped, 0);
                assert_int_equal(o.nparams, ref.nparams);
                if (memcmp(o.params, ref.params, ref.nparams * sizeof(float)) != 0)
                    fail_msg("graph (%zu extra) k=%ld: weights differ after retrying %s", extra, k, failed);
                assert_memory_equal(o.out0, ref.out0, sizeof ref.out0);
                assert_memory_equal(o.out1, ref.out1, sizeof ref.out1);
                assert_memory_equal(o.ig1, ref.ig1, sizeof ref.ig1);
            } else if (k < total) {
                assert_int_equal(stopped, 1);
            }
            free_graph(&o);
            if (ta.live != 0)
                fail_msg("graph (%zu extra) k=%ld (%s failed): %ld blocks leaked", extra, k, failed ? failed : "-",
                         ta.live);
            if (ta.failures == 0) break;
        }
        assert_int_equal(k, total);
        assert_int_equal(failing_ks, total);
    }
}

static void test_graph_training_allocates_nothing(void **state) {
    (void)state;
    test_alloc ta;
    graph_objects o;
    const char *failed = NULL;
    float x0[BATCH * G_IN0], x1[BATCH * G_IN1], targets[BATCH * G_OUT1], grad1[BATCH * G_OUT1];
    float out0[BATCH * G_OUT0], out1[BATCH * G_OUT1];
    int32_t labels[BATCH];
    memset(&o, 0, sizeof o);
    test_alloc_init(&ta, -1);
    assert_int_equal(graph_scenario(&ta, 0, 3, &o, &failed), 0);
    fill_uniform(x0, ARRAY_LEN(x0), 24, -1.0f, 1.0f);
    fill_uniform(x1, ARRAY_LEN(x1), 25, -1.0f, 1.0f);
    fill_uniform(targets, ARRAY_LEN(targets), 26, -1.0f, 1.0f);
    fill_uniform(grad1, ARRAY_LEN(grad1), 27, -0.1f, 0.1f);
    for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)((i * 5) % G_OUT0);
    long calls = ta.calls, live = ta.live;
    for (int s = 0; s < 50; s++) {
        float l0 = 0, l1 = 0;
        const float *g = NULL, *y = NULL;
        size_t n = 0;
        size_t batch = (size_t)(s % BATCH) + 1; /* every batch size; the first `batch` samples of each buffer */
        const float *const inputs[2] = {x0, x1};
        const size_t in_counts[2] = {batch * G_IN0, batch * G_IN1};
        float *const outputs[2] = {out0, out1};
        const size_t out_counts[2] = {batch * G_OUT0, batch * G_OUT1};
        assert_int_equal(aim_model_zero_grad(o.model), AIM_OK);
        assert_int_equal(aim_model_forward_multi(o.model, AIM_MODE_TRAIN, inputs, in_counts, 2, batch), AIM_OK);
        assert_int_equal(aim_model_output(o.model, 1, &y, &n), AIM_OK);
        assert_int_equal(n, batch * G_OUT1);
        assert_int_equal(aim_model_loss_sparse(o.model, 0, labels, batch, &l0), AIM_OK);
        /* Output 1's gradient from a loss on even steps, given directly on odd ones. */
        if (s % 2 == 0)
            assert_int_equal(aim_model_loss(o.model, 1, AIM_LOSS_MSE, targets, batch * G_OUT1, &l1), AIM_OK);
        else
            assert_int_equal(aim_model_set_output_grad(o.model, 1, grad1, batch * G_OUT1), AIM_OK);
        assert_int_equal(aim_model_backward(o.model, NULL, 0), AIM_OK);
        assert_int_equal(aim_model_input_gradient(o.model, 0, &g, &n), AIM_OK);
        assert_int_equal(n, batch * G_IN0);
        assert_int_equal(aim_model_input_gradient(o.model, 1, &g, &n), AIM_OK);
        assert_int_equal(n, batch * G_IN1);
        assert_int_equal(aim_optimizer_step_model(o.opt, o.model, 0.01f), AIM_OK);
        assert_int_equal(aim_model_forward_multi(o.model, AIM_MODE_INFERENCE, inputs, in_counts, 2, batch), AIM_OK);
        assert_int_equal(aim_model_predict_multi(o.model, o.ws, inputs, in_counts, 2, batch, outputs, out_counts, 2),
                         AIM_OK);
        assert_true(isfinite(l0) && isfinite(l1));
    }
    if (ta.calls != calls) fail_msg("%ld allocator calls in 50 graph steps", ta.calls - calls);
    assert_int_equal(ta.live, live);
    free_graph(&o);
    assert_int_equal(ta.live, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_failure_is_reported_and_leaks_nothing),
        cmocka_unit_test(test_a_failed_call_retried_gives_the_clean_result),
        cmocka_unit_test(test_compile_out_of_memory_then_compile_again),
        cmocka_unit_test(test_training_and_predict_allocate_nothing),
        cmocka_unit_test(test_float_losses_allocate_nothing),
        cmocka_unit_test(test_cnn_allocation_failures),
        cmocka_unit_test(test_cnn_training_allocates_nothing),
        cmocka_unit_test(test_lstm_allocation_failures),
        cmocka_unit_test(test_lstm_training_allocates_nothing),
        cmocka_unit_test(test_graph_allocation_failures),
        cmocka_unit_test(test_graph_training_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
