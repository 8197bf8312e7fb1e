/*
 * libaimodel example - fitting a line with one dense unit and SGD.
 * SPDX-License-Identifier: MIT
 */
/*
 * Makes 1000 points y = 3x + 2 + N(0, 1) with x uniform in [-5, 5], keeps the
 * last 200 as a test set, and fits a single Dense(1) layer (the line
 * y = w x + b) with mean squared error and plain SGD. The fitted slope and
 * intercept land within a few hundredths of 3 and 2 (noise in 800 points
 * allows no better; the program also prints the exact least-squares line),
 * and the test MSE near the noise variance, 1.
 *
 * With --log FILE it also writes the points and the two lines for a plot
 * (examples/plots.sh draws them) to a second CSV, POINTS_SUFFIX in place of
 * FILE's ".csv" (appended if FILE has none).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "example_util.h"

#define POINT_COUNT 1000
#define TEST_COUNT 200
#define TRUE_SLOPE 3.0f
#define TRUE_INTERCEPT 2.0f
#define X_LOW (-5.0f)
#define X_HIGH 5.0f

/* The MSE's curvature along w is 2 E[x^2] ~ 17, so steps above 2 / 17 would
 * diverge; 0.01 converges in a few hundred steps. The last quarter of the
 * epochs runs at a tenth of it, which cuts the jitter mini-batch noise
 * leaves in w and b (about 0.02 at the full rate) by about three. */
#define LEARNING_RATE 0.01f
#define FINAL_LEARNING_RATE 0.001f

#define POINTS_SUFFIX ".points.csv"

/* "runs/lr.csv" -> "runs/lr.points.csv", "lr.log" -> "lr.log.points.csv", in
 * a malloc'ed string; NULL when out of memory. */
static char *points_path(const char *log_path)
{
    size_t len = strlen(log_path);
    if (len >= 4 && strcmp(log_path + len - 4, ".csv") == 0) {
        len -= 4;
    }
    char *path = malloc(len + sizeof POINTS_SUFFIX);
    if (path != NULL) {
        memcpy(path, log_path, len);
        memcpy(path + len, POINTS_SUFFIX, sizeof POINTS_SUFFIX);
    }
    return path;
}

/* The second CSV: "series,x,y" rows of the training and test points, then
 * the ends, at X_LOW and X_HIGH, of the fitted and the true line. Returns 0,
 * or -1 after printing why. */
static int write_points(const char *path, const float *x, const float *y, size_t train_count, size_t count,
                        double slope, double intercept)
{
    ex_log points = {0};
    if (ex_log_open(&points, path, "series,x,y") != 0) {
        return -1;
    }
    for (size_t i = 0; i < count; ++i) {
        ex_log_row(&points, "%s,%.6g,%.6g", i < train_count ? "train" : "test", (double)x[i], (double)y[i]);
    }
    const double ends[2] = {X_LOW, X_HIGH};
    for (size_t i = 0; i < 2; ++i) {
        ex_log_row(&points, "fitted,%.6g,%.6g", ends[i], slope * ends[i] + intercept);
    }
    for (size_t i = 0; i < 2; ++i) {
        ex_log_row(&points, "true,%.6g,%.6g", ends[i], (double)TRUE_SLOPE * ends[i] + (double)TRUE_INTERCEPT);
    }
    return ex_log_close(&points);
}

/* Draws the data set: x in `x`, y in `y`, `count` points. */
static aim_status make_points(aim_rng *rng, float *x, float *y, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        float u = 0.0f;
        float noise = 0.0f;
        aim_status status = aim_rng_uniform(rng, &u);
        if (status == AIM_OK) {
            status = aim_rng_normal(rng, &noise);
        }
        if (status != AIM_OK) {
            return status;
        }
        x[i] = X_LOW + (X_HIGH - X_LOW) * u;
        y[i] = TRUE_SLOPE * x[i] + TRUE_INTERCEPT + noise;
    }
    return AIM_OK;
}

/* The exact least-squares line through the points, to show what SGD should
 * converge to. */
static void least_squares(const float *x, const float *y, size_t count, double *slope, double *intercept)
{
    double mx = 0.0, my = 0.0;
    for (size_t i = 0; i < count; ++i) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)count;
    my /= (double)count;
    double sxy = 0.0, sxx = 0.0;
    for (size_t i = 0; i < count; ++i) {
        sxy += ((double)x[i] - mx) * ((double)y[i] - my);
        sxx += ((double)x[i] - mx) * ((double)x[i] - mx);
    }
    *slope = sxy / sxx;
    *intercept = my - *slope * mx;
}

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "linear_regression",
        .summary = "Fits y = 3x + 2 + noise with one dense unit, MSE and SGD.",
        .options = EX_OPT_EPOCHS | EX_OPT_BATCH | EX_OPT_SEED,
        .seed_help = "seed of the points, the weight initialization and shuffling",
        .log_columns = "epoch,loss,slope,intercept,seconds",
        .extra_help = "                and a second CSV, FILE with \"" POINTS_SUFFIX "\" in place of \".csv\":\n"
                      "                series,x,y rows of the train and test points and of the ends\n"
                      "                of the fitted and the true line (series fitted, true)\n",
    };
    ex_options opt;
    ex_options_default(&opt);
    opt.epochs = 20;
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    aim_rng *rng = NULL;
    aim_model *model = NULL;
    aim_optimizer *sgd = NULL;
    aim_workspace *workspace = NULL;
    ex_batcher batcher = {0};
    ex_log metrics = {0};
    char *points = NULL;
    float *x = malloc(POINT_COUNT * sizeof *x);
    float *y = malloc(POINT_COUNT * sizeof *y);
    float *predicted = malloc(TEST_COUNT * sizeof *predicted);
    if (x == NULL || y == NULL || predicted == NULL) {
        fprintf(stderr, "error: out of memory\n");
        goto cleanup;
    }
    if (opt.log_path != NULL && (points = points_path(opt.log_path)) == NULL) {
        fprintf(stderr, "error: out of memory\n");
        goto cleanup;
    }
    if (ex_log_open(&metrics, opt.log_path, program.log_columns) != 0) {
        goto cleanup;
    }

    /* The data depend on --seed too: the seed names the whole experiment. */
    EX_TRY(aim_rng_create(NULL, opt.seed, &rng), "");
    EX_TRY(make_points(rng, x, y, POINT_COUNT), "");
    const size_t train_count = POINT_COUNT - TEST_COUNT;
    const float *test_x = x + train_count;
    const float *test_y = y + train_count;

    /* Zero initialization is fine here: with one unit there is no symmetry
     * to break, and the fit starts from the flat line y = 0. */
    const size_t input_dims[1] = {1};
    aim_dense_config dense;
    EX_TRY(aim_model_create(NULL, 1, input_dims, &model), "");
    EX_TRY(aim_dense_config_init(&dense, 1, AIM_ACT_IDENTITY), "");
    dense.init = AIM_INIT_ZEROS;
    EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    aim_compile_config compile;
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = opt.batch;
    compile.seed = opt.seed;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));

    /* The layer's weight [1, 1] comes first in the flat buffer, then its bias. */
    float *params = NULL;
    size_t param_count = 0;
    size_t offset = 0, weight_count = 0, bias_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    EX_TRY(aim_model_layer_parameters(model, 0, &offset, &weight_count, &bias_count), aim_model_last_error(model));
    if (weight_count != 1 || bias_count != 1) {
        fprintf(stderr, "error: expected one weight and one bias, got %zu and %zu\n", weight_count, bias_count);
        goto cleanup;
    }
    const float *slope = &params[offset];
    const float *intercept = &params[offset + weight_count];

    EX_TRY(aim_sgd_create(NULL, NULL, param_count, &sgd), "");
    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &workspace), "");

    const ex_rows train_rows = {.x = x, .x_width = 1, .y = y, .y_width = 1, .count = train_count};
    EX_TRY(ex_batcher_init(&batcher, &train_rows, opt.batch, opt.seed + 1), "");

    printf("linear_regression: %zu train / %d test points of y = %g x + %g + N(0, 1), x in [%g, %g]\n",
           train_count, TEST_COUNT, (double)TRUE_SLOPE, (double)TRUE_INTERCEPT, (double)X_LOW, (double)X_HIGH);
    printf("model Dense(1), MSE, SGD lr %g (%g for the last quarter), batch %zu, %zu epochs, seed %llu\n",
           (double)LEARNING_RATE, (double)FINAL_LEARNING_RATE, opt.batch, opt.epochs, (unsigned long long)opt.seed);

    const size_t steps = (train_count + opt.batch - 1) / opt.batch;
    ex_progress progress;
    ex_progress_init(&progress, stdout, EX_PROGRESS_AUTO);
    double train_start = ex_now();
    for (size_t epoch = 1; epoch <= opt.epochs; ++epoch) {
        double epoch_start = ex_now();
        double loss_sum = 0.0;
        size_t n = 0;
        /* The rate is an argument of every step, so scheduling it is the host's choice. */
        float learning_rate = epoch > opt.epochs - opt.epochs / 4 ? FINAL_LEARNING_RATE : LEARNING_RATE;
        EX_TRY(ex_batcher_shuffle(&batcher), "");
        ex_progress_epoch(&progress, epoch, opt.epochs, steps);
        while ((n = ex_batcher_next(&batcher)) > 0) {
            float loss = 0.0f;
            EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
            EX_TRY(aim_model_forward(model, AIM_MODE_TRAIN, batcher.x, n * batcher.rows.x_width, n),
                   aim_model_last_error(model));
            EX_TRY(aim_model_loss(model, 0, AIM_LOSS_MSE, batcher.y, n * batcher.rows.y_width, &loss),
                   aim_model_last_error(model));
            EX_TRY(aim_model_backward(model, NULL, 0), aim_model_last_error(model));
            EX_TRY(aim_optimizer_step_model(sgd, model, learning_rate), aim_optimizer_last_error(sgd));
            loss_sum += (double)loss * (double)n; /* the loss is a batch mean */
            ex_progress_step(&progress, (double)loss, (double)n);
        }
        const double loss = loss_sum / (double)train_count;
        const double seconds = ex_now() - epoch_start;
        const ex_metric shown[] = {{"slope", (double)*slope}, {"intercept", (double)*intercept}};
        ex_progress_end(&progress, shown, 2);
        ex_log_row(&metrics, "%zu,%.6g,%.6g,%.6g,%.6f", epoch, loss, (double)*slope, (double)*intercept, seconds);
    }
    double train_seconds = ex_now() - train_start;

    /* Test predictions through the thread-safe inference path. */
    for (size_t first = 0; first < TEST_COUNT; first += EX_EVAL_BATCH) {
        size_t n = TEST_COUNT - first < EX_EVAL_BATCH ? TEST_COUNT - first : EX_EVAL_BATCH;
        /* One x and one y per point. */
        EX_TRY(aim_model_predict(model, workspace, test_x + first, n, n, predicted + first, n),
               aim_workspace_last_error(workspace));
    }
    float test_mse = 0.0f;
    EX_TRY(aim_loss(AIM_LOSS_MSE, predicted, test_y, TEST_COUNT, 1, &test_mse, NULL), "");

    double ls_slope = 0.0, ls_intercept = 0.0;
    least_squares(x, y, train_count, &ls_slope, &ls_intercept);
    printf("fitted     y = %.4f x + %.4f\n", (double)*slope, (double)*intercept);
    printf("least sq.  y = %.4f x + %.4f (exact fit to the same training points)\n", ls_slope, ls_intercept);
    printf("true       y = %.4f x + %.4f\n", (double)TRUE_SLOPE, (double)TRUE_INTERCEPT);
    printf("test MSE %.4f (the noise alone gives about 1)\n", (double)test_mse);
    if (ex_log_close(&metrics) != 0 ||
        (points != NULL &&
         write_points(points, x, y, train_count, POINT_COUNT, (double)*slope, (double)*intercept) != 0)) {
        goto cleanup;
    }
    printf("RESULT linear_regression slope=%.4f intercept=%.4f test_mse=%.4f train_seconds=%.3f epochs=%zu "
           "batch=%zu seed=%llu\n",
           (double)*slope, (double)*intercept, (double)test_mse, train_seconds, opt.epochs, opt.batch,
           (unsigned long long)opt.seed);
    exit_code = 0;

cleanup:
    ex_log_close(&metrics);
    free(points);
    ex_batcher_free(&batcher);
    aim_workspace_free(workspace);
    aim_optimizer_free(sgd);
    aim_model_free(model);
    aim_rng_free(rng);
    free(predicted);
    free(y);
    free(x);
    return exit_code;
}
