/*
 * libaimodel example - logistic regression, on 2-D blobs and on Fashion-MNIST.
 * SPDX-License-Identifier: MIT
 */
/*
 * Logistic regression is one dense unit with a sigmoid, p = sigmoid(w.x + b),
 * trained with binary cross-entropy on p (AIM_LOSS_BCE). It runs twice:
 *  1. on two Gaussian blobs in the plane made here (the best possible
 *     accuracy for these blobs is about 0.98), with plain SGD;
 *  2. on Fashion-MNIST pixels, telling labels 5-9 from 0-4, with Adam. A
 *     straight boundary in pixel space cannot tell shirts (class 6) from
 *     T-shirts, pullovers and coats, so expect about 0.91 against the MLP's
 *     0.93 in binary_classifier.
 */
#include <stdio.h>
#include <stdlib.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"

#define BLOB_COUNT 1000
#define BLOB_TEST_COUNT 200
/* Centres (-c, -c) and (c, c) with unit variance: each is 1.5 * sqrt(2)
 * standard deviations from the boundary x + y = 0. */
#define BLOB_CENTRE 1.5f

/* Labels from this one up are the positive class of the Fashion-MNIST task. */
#define FIRST_POSITIVE 5

/* Both stages share one --log file; the added last column names the stage
 * (its val_accuracy is empty where it has no validation set). */
#define LOG_COLUMNS EX_LOG_CLASSIFIER_COLUMNS ",stage"

/* What one stage trains on and how. */
typedef struct stage {
    const char *name;
    size_t inputs;
    const ex_rows *train;      /* x, y and labels */
    const ex_rows *validation; /* x and labels, or NULL */
    const ex_rows *test;       /* x and labels */
    int use_adam;              /* Adam, or else plain SGD */
    float learning_rate;
} stage;

/* Builds, trains and evaluates one logistic regression, logging its epochs
 * to `metrics`; everything it creates it frees. Returns 0, or -1 after
 * printing why. */
static int run_stage(const stage *s, const ex_options *opt, ex_log *metrics, double *test_accuracy,
                     double *train_seconds)
{
    int result = -1;
    aim_model *model = NULL;
    aim_optimizer *optimizer = NULL;
    aim_workspace *workspace = NULL;
    ex_batcher batcher = {0};
    float scratch[EX_EVAL_BATCH]; /* one output per sample */

    /* Zero weights are the textbook start: the loss is convex, so there is
     * no symmetry to break, and the first prediction is 0.5 everywhere. */
    const size_t input_dims[1] = {s->inputs};
    aim_dense_config dense;
    EX_TRY(aim_model_create(NULL, 1, input_dims, &model), "");
    EX_TRY(aim_dense_config_init(&dense, 1, AIM_ACT_SIGMOID), "");
    dense.init = AIM_INIT_ZEROS;
    EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    aim_compile_config compile;
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = opt->batch;
    compile.seed = opt->seed;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));

    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    if (s->use_adam) {
        EX_TRY(aim_adam_create(NULL, NULL, param_count, &optimizer), "");
    } else {
        EX_TRY(aim_sgd_create(NULL, NULL, param_count, &optimizer), "");
    }
    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &workspace), "");
    EX_TRY(ex_batcher_init(&batcher, s->train, opt->batch, opt->seed + 1), "");

    printf("%s: %zu train", s->name, s->train->count);
    if (s->validation != NULL) {
        printf(" / %zu validation", s->validation->count);
    }
    printf(" / %zu test samples of %zu inputs, %s lr %g, batch %zu, %zu epochs, seed %llu\n", s->test->count,
           s->inputs, s->use_adam ? "Adam" : "SGD", (double)s->learning_rate, opt->batch, opt->epochs,
           (unsigned long long)opt->seed);

    const size_t steps = (s->train->count + opt->batch - 1) / opt->batch;
    ex_progress progress;
    ex_progress_init(&progress, stdout, EX_PROGRESS_AUTO);
    double start = ex_now();
    for (size_t epoch = 1; epoch <= opt->epochs; ++epoch) {
        double epoch_start = ex_now();
        double loss_sum = 0.0;
        size_t correct = 0;
        size_t n = 0;
        EX_TRY(ex_batcher_shuffle(&batcher), "");
        ex_progress_epoch(&progress, epoch, opt->epochs, steps);
        while ((n = ex_batcher_next(&batcher)) > 0) {
            float loss = 0.0f;
            const float *probability = NULL;
            size_t probability_count = 0;
            EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
            EX_TRY(aim_model_forward(model, AIM_MODE_TRAIN, batcher.x, n * batcher.rows.x_width, n),
                   aim_model_last_error(model));
            EX_TRY(aim_model_output(model, 0, &probability, &probability_count), aim_model_last_error(model));
            correct += ex_count_correct(probability, n, probability_count / n, batcher.labels, 0.5f);
            EX_TRY(aim_model_loss(model, 0, AIM_LOSS_BCE, batcher.y, n * batcher.rows.y_width, &loss),
                   aim_model_last_error(model));
            EX_TRY(aim_model_backward(model, NULL, 0), aim_model_last_error(model));
            EX_TRY(aim_optimizer_step_model(optimizer, model, s->learning_rate),
                   aim_optimizer_last_error(optimizer));
            loss_sum += (double)loss * (double)n; /* the loss is a batch mean */
            ex_progress_step(&progress, (double)loss, (double)n);
        }
        const double loss = loss_sum / (double)s->train->count;
        const double accuracy = (double)correct / (double)s->train->count;
        double val_accuracy = 0.0;
        if (s->validation != NULL) {
            EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, s->validation, 0.5f, scratch,
                               sizeof scratch / sizeof scratch[0], &val_accuracy),
                   aim_workspace_last_error(workspace));
        }
        const double seconds = ex_now() - epoch_start;
        const ex_metric shown[] = {{"accuracy", accuracy}, {"val_accuracy", val_accuracy}};
        ex_progress_end(&progress, shown, s->validation != NULL ? 2 : 1);
        if (s->validation != NULL) {
            ex_log_row(metrics, "%zu,%.6g,%.6g,%.6g,%.3f,%s", epoch, loss, accuracy, val_accuracy, seconds, s->name);
        } else {
            ex_log_row(metrics, "%zu,%.6g,%.6g,,%.3f,%s", epoch, loss, accuracy, seconds, s->name);
        }
    }
    *train_seconds = ex_now() - start;

    EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, s->test, 0.5f, scratch, sizeof scratch / sizeof scratch[0],
                       test_accuracy),
           aim_workspace_last_error(workspace));
    if (s->inputs == 2) {
        /* weights then bias, in the flat parameter buffer */
        printf("%s: boundary %.4f x0 %+.4f x1 %+.4f = 0\n", s->name, (double)params[0], (double)params[1],
               (double)params[2]);
    }
    printf("%s: test accuracy %.4f on %zu samples\n", s->name, *test_accuracy, s->test->count);
    result = 0;

cleanup:
    ex_batcher_free(&batcher);
    aim_workspace_free(workspace);
    aim_optimizer_free(optimizer);
    aim_model_free(model);
    return result;
}

/* Two unit-variance blobs: class 0 around (-c, -c), class 1 around (c, c). */
static aim_status make_blobs(aim_rng *rng, float *x, float *y, int32_t *labels, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        uint64_t cls = 0;
        float noise[2] = {0.0f, 0.0f};
        aim_status status = aim_rng_below(rng, 2, &cls);
        if (status == AIM_OK) status = aim_rng_normal(rng, &noise[0]);
        if (status == AIM_OK) status = aim_rng_normal(rng, &noise[1]);
        if (status != AIM_OK) {
            return status;
        }
        float centre = cls == 1 ? BLOB_CENTRE : -BLOB_CENTRE;
        x[2 * i] = centre + noise[0];
        x[2 * i + 1] = centre + noise[1];
        labels[i] = (int32_t)cls;
        y[i] = (float)cls;
    }
    return AIM_OK;
}

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "logistic_regression",
        .summary = "Logistic regression (Dense(1) + sigmoid, BCE) on 2-D blobs, then on Fashion-MNIST "
                   "labels 5-9 vs 0-4.",
        .options = EX_OPT_DATA | EX_OPT_EPOCHS | EX_OPT_BATCH | EX_OPT_SEED,
        .seed_help = "seed of the blobs, the weight initialization and shuffling",
        .log_columns = LOG_COLUMNS,
        .extra_help = "                (both stages, one after the other; \"stage\" names each row's)\n",
    };
    ex_options opt;
    ex_options_default(&opt);
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    aim_rng *rng = NULL;
    float *blob_x = malloc(2 * BLOB_COUNT * sizeof *blob_x);
    float *blob_y = malloc(BLOB_COUNT * sizeof *blob_y);
    int32_t *blob_labels = malloc(BLOB_COUNT * sizeof *blob_labels);
    fm_set train = {0}, validation = {0}, test = {0};
    fm_binary train_t = {0}, validation_t = {0}, test_t = {0};
    const char *source = "";
    char err[256] = "";
    ex_log metrics = {0};
    if (blob_x == NULL || blob_y == NULL || blob_labels == NULL) {
        fprintf(stderr, "error: out of memory\n");
        goto cleanup;
    }
    if (ex_log_open(&metrics, opt.log_path, program.log_columns) != 0) {
        goto cleanup;
    }

    /* Stage 2's data first: an unreadable --data stops the run before any training. */
    if (ex_load_fashion_mnist(&opt, &train, &validation, &test, &source) != 0) {
        goto cleanup;
    }

    /* Stage 1: the blobs, from --seed; the last BLOB_TEST_COUNT are the test set. */
    double blobs_accuracy = 0.0, blobs_seconds = 0.0;
    const size_t blob_train = BLOB_COUNT - BLOB_TEST_COUNT;
    EX_TRY(aim_rng_create(NULL, opt.seed, &rng), "");
    EX_TRY(make_blobs(rng, blob_x, blob_y, blob_labels, BLOB_COUNT), "");
    const ex_rows blob_train_rows = {.x = blob_x, .x_width = 2, .y = blob_y, .y_width = 1, .labels = blob_labels,
                                     .count = blob_train};
    const ex_rows blob_test_rows = {.x = blob_x + 2 * blob_train, .x_width = 2, .labels = blob_labels + blob_train,
                                    .count = BLOB_TEST_COUNT};
    /* On two well-scaled inputs plain SGD with a large step converges in a
     * few epochs. */
    const stage blobs = {.name = "blobs", .inputs = 2, .train = &blob_train_rows, .test = &blob_test_rows,
                         .use_adam = 0, .learning_rate = 0.1f};
    if (run_stage(&blobs, &opt, &metrics, &blobs_accuracy, &blobs_seconds) != 0) {
        goto cleanup;
    }

    /* Stage 2: Fashion-MNIST. Adam copes with 784 inputs of very different
     * scales of use (border pixels are nearly always 0) without tuning. */
    double test_accuracy = 0.0, fashion_seconds = 0.0;
    if (fm_make_binary(&train, FIRST_POSITIVE, &train_t, err, sizeof err) != 0 ||
        fm_make_binary(&validation, FIRST_POSITIVE, &validation_t, err, sizeof err) != 0 ||
        fm_make_binary(&test, FIRST_POSITIVE, &test_t, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        goto cleanup;
    }
    const ex_rows train_rows = {.x = train.images, .x_width = FM_PIXELS, .y = train_t.y, .y_width = 1,
                                .labels = train_t.labels, .count = train.count};
    const ex_rows validation_rows = {.x = validation.images, .x_width = FM_PIXELS, .labels = validation_t.labels,
                                     .count = validation.count};
    const ex_rows test_rows = {.x = test.images, .x_width = FM_PIXELS, .labels = test_t.labels, .count = test.count};
    const stage fashion = {.name = source, .inputs = FM_PIXELS, .train = &train_rows, .validation = &validation_rows,
                           .test = &test_rows, .use_adam = 1, .learning_rate = 1e-3f};
    if (run_stage(&fashion, &opt, &metrics, &test_accuracy, &fashion_seconds) != 0) {
        goto cleanup;
    }

    if (ex_log_close(&metrics) != 0) {
        goto cleanup;
    }
    printf("RESULT logistic_regression blobs_accuracy=%.4f test_accuracy=%.4f train_seconds=%.2f epochs=%zu "
           "batch=%zu seed=%llu data=%s\n",
           blobs_accuracy, test_accuracy, blobs_seconds + fashion_seconds, opt.epochs, opt.batch,
           (unsigned long long)opt.seed, source);
    exit_code = 0;

cleanup:
    ex_log_close(&metrics);
    fm_binary_free(&train_t);
    fm_binary_free(&validation_t);
    fm_binary_free(&test_t);
    fm_free(&train);
    fm_free(&validation);
    fm_free(&test);
    aim_rng_free(rng);
    free(blob_labels);
    free(blob_y);
    free(blob_x);
    return exit_code;
}
