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
    aim_model *model = NULL;
    aim_optimizer *adam = NULL;
    aim_threadpool *threadpool = NULL; /* --threads N > 1 */
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

    printf("cnn_classifier: %s, %zu train / %zu validation / %zu test images\n", source, train.count,
           validation.count, test.count);
    printf("model conv32-pool-conv64-pool-64-10 (%zu parameters), Adam lr %g, batch %zu, %zu epochs, "
           "seed %llu, threads %zu\n",
           param_count, (double)LEARNING_RATE, opt.batch, opt.epochs, (unsigned long long)opt.seed, opt.threads);

    ex_fit_result fit;
    if (ex_fit_classifier(model, adam, LEARNING_RATE, &opt, threadpool, &train, &validation, &test, &metrics, 0,
                          &fit) != 0) {
        goto cleanup;
    }
    if (ex_log_close(&metrics) != 0) {
        goto cleanup;
    }
    printf("RESULT cnn_classifier test_accuracy=%.4f train_seconds=%.2f epochs=%zu batch=%zu threads=%zu "
           "seed=%llu data=%s\n",
           fit.test_accuracy, fit.train_seconds, opt.epochs, opt.batch, opt.threads, (unsigned long long)opt.seed,
           source);
    exit_code = 0;

cleanup:
    ex_log_close(&metrics);
    aim_optimizer_free(adam);
    aim_model_free(model);
    aim_threadpool_free(threadpool); /* after the model that uses it */
    fm_free(&train);
    fm_free(&validation);
    fm_free(&test);
    return exit_code;
}
