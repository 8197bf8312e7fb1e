/*
 * libaimodel example - a binary classifier on Fashion-MNIST.
 * SPDX-License-Identifier: MIT
 */
/*
 * Tells classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) from classes
 * 0-4 (T-shirt, trouser, pullover, dress, coat) with
 * 784 -> Dense 128 relu -> Dense 64 relu -> Dense 1 sigmoid, trained with
 * binary cross-entropy on the probability and Adam. Shirts against
 * T-shirts, pullovers and coats are the hard cases; expect about 0.93 test
 * accuracy after 3 epochs.
 */
#include <stdio.h>
#include <stdlib.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"

#define LEARNING_RATE 1e-3f

/* A probability at or above this predicts class 1 ("label >= 5"). */
#define THRESHOLD 0.5f

/* Labels from this one up are the positive class. */
#define FIRST_POSITIVE 5

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "binary_classifier",
        .summary = "Trains a 784-128-64-1 MLP on Fashion-MNIST to tell labels 5-9 from 0-4.",
        .options = EX_OPT_TRAINER,
        .log_columns = EX_LOG_CLASSIFIER_COLUMNS,
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
    fm_binary train_t = {0}, validation_t = {0}, test_t = {0};
    char err[256] = "";
    aim_model *model = NULL;
    aim_optimizer *adam = NULL;
    aim_workspace *workspace = NULL;
    aim_threadpool *threadpool = NULL; /* --threads N > 1 */
    ex_batcher batcher = {0};
    float *scratch = NULL;
    const size_t scratch_count = EX_EVAL_BATCH; /* one probability per sample */
    const char *source = "";
    ex_log metrics = {0};

    if (ex_threadpool_create(&opt, &threadpool) != 0 || ex_log_open(&metrics, opt.log_path, program.log_columns) != 0) {
        goto cleanup;
    }
    if (ex_load_fashion_mnist(&opt, &train, &validation, &test, &source) != 0) {
        goto cleanup;
    }
    if (fm_make_binary(&train, FIRST_POSITIVE, &train_t, err, sizeof err) != 0 ||
        fm_make_binary(&validation, FIRST_POSITIVE, &validation_t, err, sizeof err) != 0 ||
        fm_make_binary(&test, FIRST_POSITIVE, &test_t, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        goto cleanup;
    }
    scratch = malloc(scratch_count * sizeof *scratch);
    if (scratch == NULL) {
        fprintf(stderr, "error: out of memory\n");
        goto cleanup;
    }

    /* The sigmoid sits in the last layer, so the output is a probability and
     * the loss is AIM_LOSS_BCE (AIM_LOSS_BCE_WITH_LOGITS would want a linear
     * last layer instead). */
    const size_t input_dims[1] = {FM_PIXELS};
    const struct { size_t units; aim_activation activation; } layers[] = {
        {128, AIM_ACT_RELU},
        {64, AIM_ACT_RELU},
        {1, AIM_ACT_SIGMOID},
    };
    EX_TRY(aim_model_create(NULL, 1, input_dims, &model), "");
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; ++i) {
        aim_dense_config dense;
        EX_TRY(aim_dense_config_init(&dense, layers[i].units, layers[i].activation), "");
        EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    }
    aim_compile_config compile;
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = opt.batch;
    compile.seed = opt.seed;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));

    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    EX_TRY(aim_adam_create(NULL, NULL, param_count, &adam), "");
    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &workspace), "");
    if (ex_threadpool_attach(threadpool, model, workspace) != 0) {
        goto cleanup;
    }

    const ex_rows train_rows = {.x = train.images, .x_width = FM_PIXELS, .y = train_t.y, .y_width = 1,
                                .labels = train_t.labels, .count = train.count};
    const ex_rows validation_rows = {.x = validation.images, .x_width = FM_PIXELS, .labels = validation_t.labels,
                                     .count = validation.count};
    const ex_rows test_rows = {.x = test.images, .x_width = FM_PIXELS, .labels = test_t.labels, .count = test.count};
    /* A seed of its own, so shuffling does not replay the initialization's draws. */
    EX_TRY(ex_batcher_init(&batcher, &train_rows, opt.batch, opt.seed + 1), "");

    printf("binary_classifier: %s, %zu train / %zu validation / %zu test images, target 1 for labels %d-9\n",
           source, train.count, validation.count, test.count, FIRST_POSITIVE);
    printf("model 784-128-64-1 (%zu parameters), Adam lr %g, batch %zu, %zu epochs, seed %llu, threads %zu\n",
           param_count, (double)LEARNING_RATE, opt.batch, opt.epochs, (unsigned long long)opt.seed, opt.threads);

    /* train_seconds covers the whole fit loop, validation included, like
     * the time Keras' fit() reports. */
    const size_t steps = (train.count + opt.batch - 1) / opt.batch;
    ex_progress progress;
    ex_progress_init(&progress, stdout, EX_PROGRESS_AUTO);
    double train_start = ex_now();
    for (size_t epoch = 1; epoch <= opt.epochs; ++epoch) {
        double epoch_start = ex_now();
        double loss_sum = 0.0;
        size_t correct = 0;
        size_t n = 0;
        EX_TRY(ex_batcher_shuffle(&batcher), "");
        ex_progress_epoch(&progress, epoch, opt.epochs, steps);
        while ((n = ex_batcher_next(&batcher)) > 0) {
            float loss = 0.0f;
            const float *probability = NULL;
            size_t probability_count = 0;
            EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
            EX_TRY(aim_model_forward(model, AIM_MODE_TRAIN, batcher.x, n * batcher.rows.x_width, n),
                   aim_model_last_error(model));
            EX_TRY(aim_model_output(model, 0, &probability, &probability_count), aim_model_last_error(model));
            correct += ex_count_correct(probability, n, probability_count / n, batcher.labels, THRESHOLD);
            EX_TRY(aim_model_loss(model, 0, AIM_LOSS_BCE, batcher.y, n * batcher.rows.y_width, &loss),
                   aim_model_last_error(model));
            EX_TRY(aim_model_backward(model, NULL, 0), aim_model_last_error(model));
            EX_TRY(aim_optimizer_step_model(adam, model, LEARNING_RATE), aim_optimizer_last_error(adam));
            loss_sum += (double)loss * (double)n; /* the loss is a batch mean */
            ex_progress_step(&progress, (double)loss, (double)n);
        }
        double val_accuracy = 0.0;
        EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, &validation_rows, THRESHOLD, scratch, scratch_count,
                           &val_accuracy),
               aim_workspace_last_error(workspace));
        const double loss = loss_sum / (double)train.count;
        const double accuracy = (double)correct / (double)train.count;
        const double seconds = ex_now() - epoch_start;
        const ex_metric shown[] = {{"accuracy", accuracy}, {"val_accuracy", val_accuracy}};
        ex_progress_end(&progress, shown, 2);
        ex_log_row(&metrics, "%zu,%.6g,%.6g,%.6g,%.3f", epoch, loss, accuracy, val_accuracy, seconds);
    }
    double train_seconds = ex_now() - train_start;

    double test_accuracy = 0.0;
    EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, &test_rows, THRESHOLD, scratch, scratch_count,
                       &test_accuracy),
           aim_workspace_last_error(workspace));
    printf("test accuracy %.4f on %zu images\n", test_accuracy, test.count);
    if (ex_log_close(&metrics) != 0) {
        goto cleanup;
    }
    printf("RESULT binary_classifier test_accuracy=%.4f train_seconds=%.2f epochs=%zu batch=%zu threads=%zu "
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
    fm_binary_free(&train_t);
    fm_binary_free(&validation_t);
    fm_binary_free(&test_t);
    fm_free(&train);
    fm_free(&validation);
    fm_free(&test);
    return exit_code;
}
