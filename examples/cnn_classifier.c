/*
 * libaimodel example - the classic convolutional network for Fashion-MNIST.
 * SPDX-License-Identifier: MIT
 */
/*
 * 1x28x28 -> Conv2D 32 3x3 relu -> MaxPool 2 -> Conv2D 64 3x3 relu ->
 * MaxPool 2 -> Flatten -> Dense 64 relu -> Dense 10 (logits), softmax
 * cross-entropy on integer labels and Adam, batch 32, 3 epochs by default.
 * The images are the MLP's rows of 784 pixels read as one 1x28x28 sample
 * each (NCHW), so no reshaping is needed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"

#define LEARNING_RATE 1e-3f

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "cnn_classifier",
        .summary = "Trains the classic Conv-Pool-Conv-Pool-Dense CNN on Fashion-MNIST with Adam.",
        .uses_data = 1,
        .log_columns = EX_LOG_CLASSIFIER_COLUMNS,
        .uses_threads = 1,
    };
    ex_options opt;
    ex_options_default(&opt);
    opt.epochs = 3;
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    fm_set train = {0}, validation = {0}, test = {0};
    aim_model *model = NULL;
    aim_optimizer *adam = NULL;
    aim_workspace *workspace = NULL;
    aim_threadpool *threadpool = NULL; /* --threads N > 1 */
    ex_batcher batcher = {0};
    float *scratch = NULL;
    const char *source = "";
    ex_log metrics = {0};

    if (ex_threadpool_create(&opt, &threadpool) != 0 || ex_log_open(&metrics, opt.log_path, program.log_columns) != 0) {
        goto cleanup;
    }
    if (ex_load_fashion_mnist(&opt, &train, &validation, &test, &source) != 0) {
        goto cleanup;
    }

    /* The last layer stays linear: aim_model_loss_sparse() applies the
     * softmax itself, fused with the log for stability. */
    const size_t input_dims[3] = {1, FM_ROWS, FM_COLS};
    EX_TRY(aim_model_create(NULL, 3, input_dims, &model), "");
    aim_conv2d_config conv;
    aim_pool2d_config pool;
    aim_dense_config dense;
    EX_TRY(aim_conv2d_config_init(&conv, 32, 3, 3, AIM_ACT_RELU), "");
    EX_TRY(aim_model_add_conv2d(model, &conv), aim_model_last_error(model));
    EX_TRY(aim_pool2d_config_init(&pool, 2, 2), "");
    EX_TRY(aim_model_add_max_pool2d(model, &pool), aim_model_last_error(model));
    EX_TRY(aim_conv2d_config_init(&conv, 64, 3, 3, AIM_ACT_RELU), "");
    EX_TRY(aim_model_add_conv2d(model, &conv), aim_model_last_error(model));
    EX_TRY(aim_model_add_max_pool2d(model, &pool), aim_model_last_error(model));
    EX_TRY(aim_model_add_flatten(model), aim_model_last_error(model));
    EX_TRY(aim_dense_config_init(&dense, 64, AIM_ACT_RELU), "");
    EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    EX_TRY(aim_dense_config_init(&dense, FM_CLASSES, AIM_ACT_IDENTITY), "");
    EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    aim_compile_config compile;
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = opt.batch;
    compile.seed = opt.seed;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));

    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    EX_TRY(aim_adam_create(NULL, NULL, param_count, &adam), "");

    /* Evaluation goes through aim_model_predict(), which leaves the model's
     * own training memory alone. */
    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &workspace), "");
    if (ex_threadpool_attach(threadpool, model, workspace) != 0) {
        goto cleanup;
    }
    scratch = malloc((size_t)EX_EVAL_BATCH * FM_CLASSES * sizeof *scratch);
    if (scratch == NULL) {
        fprintf(stderr, "error: out of memory\n");
        goto cleanup;
    }

    const ex_rows train_rows = {.x = train.images, .x_width = FM_PIXELS, .labels = train.labels, .count = train.count};
    const ex_rows validation_rows = {.x = validation.images, .x_width = FM_PIXELS, .labels = validation.labels,
                                     .count = validation.count};
    const ex_rows test_rows = {.x = test.images, .x_width = FM_PIXELS, .labels = test.labels, .count = test.count};
    /* A seed of its own, so shuffling does not replay the initialization's draws. */
    EX_TRY(ex_batcher_init(&batcher, &train_rows, opt.batch, opt.seed + 1), "");

    printf("cnn_classifier: %s, %zu train / %zu validation / %zu test images\n", source, train.count,
           validation.count, test.count);
    printf("model conv32-pool-conv64-pool-64-10 (%zu parameters), Adam lr %g, batch %zu, %zu epochs, "
           "seed %llu, threads %zu\n",
           param_count, (double)LEARNING_RATE, opt.batch, opt.epochs, (unsigned long long)opt.seed, opt.threads);

    /* train_seconds covers the whole fit loop, validation included, like
     * the time Keras' fit() reports. */
    double train_start = ex_now();
    for (size_t epoch = 1; epoch <= opt.epochs; ++epoch) {
        double epoch_start = ex_now();
        double loss_sum = 0.0;
        size_t correct = 0;
        size_t n = 0;
        EX_TRY(ex_batcher_shuffle(&batcher), "");
        while ((n = ex_batcher_next(&batcher)) > 0) {
            float loss = 0.0f;
            const float *logits = NULL;
            EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
            EX_TRY(aim_model_forward(model, AIM_MODE_TRAIN, batcher.x, n), aim_model_last_error(model));
            EX_TRY(aim_model_output(model, &logits, NULL), aim_model_last_error(model));
            correct += ex_count_correct(logits, n, FM_CLASSES, batcher.labels, 0.5f);
            EX_TRY(aim_model_loss_sparse(model, batcher.labels, n, &loss), aim_model_last_error(model));
            EX_TRY(aim_model_backward(model, NULL), aim_model_last_error(model));
            EX_TRY(aim_optimizer_step_model(adam, model, LEARNING_RATE), aim_optimizer_last_error(adam));
            loss_sum += (double)loss * (double)n; /* the loss is a batch mean */
        }
        double val_accuracy = 0.0;
        EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, &validation_rows, 0.5f, scratch, &val_accuracy),
               aim_workspace_last_error(workspace));
        const double loss = loss_sum / (double)train.count;
        const double accuracy = (double)correct / (double)train.count;
        const double seconds = ex_now() - epoch_start;
        printf("epoch %zu/%zu  loss %.4f  accuracy %.4f  val_accuracy %.4f  %.2fs\n", epoch, opt.epochs, loss,
               accuracy, val_accuracy, seconds);
        fflush(stdout);
        ex_log_row(&metrics, "%zu,%.6g,%.6g,%.6g,%.3f", epoch, loss, accuracy, val_accuracy, seconds);
    }
    double train_seconds = ex_now() - train_start;

    double test_accuracy = 0.0;
    EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, &test_rows, 0.5f, scratch, &test_accuracy),
           aim_workspace_last_error(workspace));
    printf("test accuracy %.4f on %zu images\n", test_accuracy, test.count);
    if (ex_log_close(&metrics) != 0) {
        goto cleanup;
    }
    printf("RESULT cnn_classifier test_accuracy=%.4f train_seconds=%.2f epochs=%zu batch=%zu threads=%zu "
           "seed=%llu data=%s\n",
           test_accuracy, train_seconds, opt.epochs, opt.batch, opt.threads, (unsigned long long)opt.seed, source);
    exit_code = 0;

cleanup:
    ex_log_close(&metrics);
    free(scratch);
    ex_batcher_free(&batcher);
    aim_workspace_free(workspace);
    aim_optimizer_free(adam);
    aim_model_free(model);
    aim_threadpool_free(threadpool); /* after the model and workspace that use it */
    fm_free(&train);
    fm_free(&validation);
    fm_free(&test);
    return exit_code;
}
