/*
 * libaimodel example - a small residual network for Fashion-MNIST.
 * SPDX-License-Identifier: MIT
 */
/*
 * 1x28x28 -> Conv2D 32 3x3 same relu -> MaxPool 2 -> two residual blocks at
 * 32 channels -> MaxPool 2 -> Conv2D 64 3x3 same relu -> one residual block
 * at 64 channels -> GlobalAvgPool -> Dense 10 (logits), softmax cross-entropy
 * on integer labels and Adam, batch 32, 3 epochs by default.
 *
 * A residual block adds its input to the output of two convolutions:
 *
 *     x ─┬─ Conv 3x3 same relu ── Conv 3x3 same ──(+)── relu ── out
 *        └──────────────────────────────────────────┘
 *
 * The model is a graph: aim_model_last_node() names the block's input before
 * the convolutions are chained on it, and aim_model_add_add() sums the second
 * convolution's output with it. "Same" padding keeps the 14x14 and 7x7 maps,
 * so the two summands have one shape. tests/bench/residual_torch.py is the
 * same model in PyTorch.
 *
 * --batchnorm puts batch normalization (momentum 0.1, eps 1e-5, affine: the
 * nn.BatchNorm2d defaults) after every convolution, before its activation,
 * and dropout (p = 0.5, nn.Dropout's default) between the global average pool
 * and the head. The convolutions then have no bias, which the normalization
 * would subtract again (torchvision's resnet: conv bias=False, then BN), and
 * the block is torchvision's BasicBlock:
 *
 *     x ─┬─ Conv ── BN ── relu ── Conv ── BN ──(+)── relu ── out
 *        └───────────────────────────────────────┘
 *
 * Training normalizes with each batch's statistics and updates the running
 * ones; evaluation (aim_model_predict()) uses the running statistics and no
 * dropout. The dropout masks come from the model's random stream, seeded by
 * the compile seed (--seed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"

#define LEARNING_RATE 1e-3f
#define DROPOUT_P 0.5f /* --batchnorm: before the head */

/* Removes every `name` (a flag without a value, which ex_parse_args() does
 * not know) from argv; returns 1 if there was one. */
static int take_flag(int *argc, char **argv, const char *name)
{
    int found = 0, kept = 1;
    for (int i = 1; i < *argc; ++i) {
        if (strcmp(argv[i], name) == 0) {
            found = 1;
        } else {
            argv[kept++] = argv[i];
        }
    }
    *argc = kept;
    argv[kept] = NULL; /* argv[argc] stays NULL, as main() received it */
    return found;
}

/* Adds a 3x3 "same" convolution of `filters` channels to the current node,
 * then `activation`, adding its multiply-adds, times 2, to `*flops` (one
 * sample, forward). With `batchnorm`: conv without bias -> batch norm ->
 * activation (a layer of its own unless identity); without: the activation
 * fused into the conv. */
static aim_status add_conv3x3(aim_model *model, size_t filters, aim_activation activation, int batchnorm,
                              double *flops)
{
    size_t node = 0, rank = 0, in[AIM_MAX_RANK] = {0}, out[AIM_MAX_RANK] = {0};
    aim_conv2d_config conv;
    aim_batch_norm_config bn;
    aim_status status = aim_conv2d_config_init(&conv, filters, 3, 3, batchnorm ? AIM_ACT_IDENTITY : activation);
    if (status == AIM_OK) {
        conv.padding = AIM_PAD_SAME;
        conv.use_bias = batchnorm ? 0 : 1;
        status = aim_model_last_node(model, &node);
    }
    if (status == AIM_OK) status = aim_model_layer_shape(model, node, &rank, in);
    if (status == AIM_OK) status = aim_model_add_conv2d(model, &conv);
    if (status == AIM_OK) status = aim_model_last_node(model, &node);
    if (status == AIM_OK) status = aim_model_layer_shape(model, node, &rank, out);
    if (status == AIM_OK) {
        *flops += 2.0 * (double)(out[0] * out[1] * out[2]) * (double)(in[0] * conv.kernel_h * conv.kernel_w);
    }
    if (batchnorm) {
        if (status == AIM_OK) status = aim_batch_norm_config_init(&bn);
        if (status == AIM_OK) status = aim_model_add_batch_norm(model, &bn);
        if (status == AIM_OK && activation != AIM_ACT_IDENTITY) {
            status = aim_model_add_activation(model, activation, 0.0f);
        }
    }
    return status;
}

/* x -> relu(conv(relu(conv(x))) + x), the channels of x kept; with
 * `batchnorm`, x -> relu(bn(conv(relu(bn(conv(x))))) + x). */
static aim_status add_residual_block(aim_model *model, size_t channels, int batchnorm, double *flops)
{
    size_t skip = 0, y = 0;
    aim_status status = aim_model_last_node(model, &skip);
    if (status == AIM_OK) status = add_conv3x3(model, channels, AIM_ACT_RELU, batchnorm, flops); /* reads skip */
    if (status == AIM_OK) status = add_conv3x3(model, channels, AIM_ACT_IDENTITY, batchnorm, flops);
    if (status == AIM_OK) status = aim_model_last_node(model, &y);
    if (status == AIM_OK) {
        const size_t sum[2] = {y, skip};
        status = aim_model_add_add(model, sum, 2);
    }
    if (status == AIM_OK) status = aim_model_add_activation(model, AIM_ACT_RELU, 0.0f);
    return status;
}

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "residual_classifier",
        .summary = "Trains a small residual CNN (three residual blocks) on Fashion-MNIST with Adam.",
        .options = EX_OPT_TRAINER,
        .log_columns = EX_LOG_CLASSIFIER_COLUMNS,
        .extra_help = "  --batchnorm   batch norm after every convolution, dropout 0.5 before the head\n",
    };
    const int batchnorm = take_flag(&argc, argv, "--batchnorm");
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
    double flops = 0.0; /* per sample, forward: 2 x the conv and dense multiply-adds */

    if (ex_threadpool_create(&opt, &threadpool) != 0 || ex_log_open(&metrics, opt.log_path, program.log_columns) != 0) {
        goto cleanup;
    }
    if (ex_load_fashion_mnist(&opt, &train, &validation, &test, &source) != 0) {
        goto cleanup;
    }

    const size_t input_dims[3] = {1, FM_ROWS, FM_COLS};
    EX_TRY(aim_model_create(NULL, 3, input_dims, &model), "");
    aim_pool2d_config pool;
    aim_dense_config dense;
    EX_TRY(aim_pool2d_config_init(&pool, 2, 2), "");

    EX_TRY(add_conv3x3(model, 32, AIM_ACT_RELU, batchnorm, &flops), aim_model_last_error(model)); /* 32x28x28 */
    EX_TRY(aim_model_add_max_pool2d(model, &pool), aim_model_last_error(model));         /* 32x14x14 */
    EX_TRY(add_residual_block(model, 32, batchnorm, &flops), aim_model_last_error(model));
    EX_TRY(add_residual_block(model, 32, batchnorm, &flops), aim_model_last_error(model));
    EX_TRY(aim_model_add_max_pool2d(model, &pool), aim_model_last_error(model));         /* 32x7x7 */
    EX_TRY(add_conv3x3(model, 64, AIM_ACT_RELU, batchnorm, &flops), aim_model_last_error(model));   /* 64x7x7 */
    EX_TRY(add_residual_block(model, 64, batchnorm, &flops), aim_model_last_error(model));
    EX_TRY(aim_model_add_global_avg_pool2d(model), aim_model_last_error(model));        /* 64 */
    if (batchnorm) {
        EX_TRY(aim_model_add_dropout(model, DROPOUT_P), aim_model_last_error(model));
    }
    /* The last layer stays linear: aim_model_loss_sparse() applies the
     * softmax itself, fused with the log for stability. */
    EX_TRY(aim_dense_config_init(&dense, FM_CLASSES, AIM_ACT_IDENTITY), "");
    EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    flops += 2.0 * 64.0 * (double)FM_CLASSES;

    aim_compile_config compile;
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = opt.batch;
    compile.seed = opt.seed;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));

    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    EX_TRY(aim_adam_create(NULL, NULL, param_count, &adam), "");

    printf("residual_classifier: %s, %zu train / %zu validation / %zu test images\n", source, train.count,
           validation.count, test.count);
    printf("model %s (%zu layers, %zu parameters, %.2f MFLOP per sample forward), Adam lr %g, batch %zu, "
           "%zu epochs, seed %llu, threads %zu\n",
           batchnorm ? "conv32bn-pool-res32bnx2-pool-conv64bn-res64bn-gap-dropout0.5-10"
                     : "conv32-pool-res32x2-pool-conv64-res64-gap-10",
           aim_model_layer_count(model), param_count, flops / 1e6, (double)LEARNING_RATE, opt.batch, opt.epochs,
           (unsigned long long)opt.seed, opt.threads);

    ex_fit_result fit;
    if (ex_fit_classifier(model, adam, LEARNING_RATE, &opt, threadpool, &train, &validation, &test, &metrics, 0,
                          &fit) != 0) {
        goto cleanup;
    }
    if (ex_log_close(&metrics) != 0) {
        goto cleanup;
    }
    printf("RESULT residual_classifier test_accuracy=%.4f train_seconds=%.2f epochs=%zu batch=%zu threads=%zu "
           "seed=%llu data=%s batchnorm=%d\n",
           fit.test_accuracy, fit.train_seconds, opt.epochs, opt.batch, opt.threads, (unsigned long long)opt.seed,
           source, batchnorm);
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
