/*
 * libaimodel examples - command line, timing, mini-batches, evaluation.
 * SPDX-License-Identifier: MIT
 */
/* clock_gettime() is POSIX, not C11. */
#define _POSIX_C_SOURCE 200809L

#include "example_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Fixed seeds of the synthetic stand-in, so --seed changes only the training
 * run and not the data, as with the real files. */
#define SYNTHETIC_TRAIN_SEED 20260001u
#define SYNTHETIC_TEST_SEED 20260002u
#define SYNTHETIC_TRAIN_COUNT 60000u
#define SYNTHETIC_TEST_COUNT 10000u

/* Sizes above this are refused as typos rather than attempted. */
#define MAX_EPOCHS 100000u
#define MAX_BATCH 65536u

void ex_options_default(ex_options *options)
{
    options->data_dir = FM_DEFAULT_DIR;
    options->data_given = 0;
    options->epochs = 5;
    options->batch = 32;
    options->seed = 42;
    options->synthetic = 0;
    options->log_path = NULL;
    options->threads = 1;
}

static void print_help(const ex_program *program, const ex_options *defaults)
{
    const unsigned uses = program->options;
    printf("usage: %s [options]\n%s\n\noptions:\n", program->name, program->summary);
    if (uses & EX_OPT_DATA) {
        printf("  --data DIR    Fashion-MNIST directory (default %s);\n"
               "                one that cannot be read is an error (without --data, a missing\n"
               "                default directory means the synthetic data)\n",
               defaults->data_dir);
        printf("  --synthetic   use the built-in synthetic data instead of the files\n");
    }
    if (uses & EX_OPT_EPOCHS) {
        printf("  --epochs N    passes over the training data (default %zu)\n", defaults->epochs);
    }
    if (uses & EX_OPT_BATCH) {
        printf("  --batch N     mini-batch size (default %zu)\n", defaults->batch);
    }
    if (uses & EX_OPT_SEED) {
        printf("  --seed N      %s (default %llu)\n",
               program->seed_help != NULL ? program->seed_help : "seed of weight initialization and shuffling",
               (unsigned long long)defaults->seed);
    }
    if (uses & EX_OPT_THREADS) {
        printf("  --threads N   split each large batch over N threads, 1 to %u (default %zu:\n"
               "                no thread pool); N > 1 also sets OpenBLAS to one thread\n",
               (unsigned)EX_MAX_THREADS, defaults->threads);
    }
    if (program->log_columns != NULL) {
        printf("  --log FILE    write each epoch's figures to FILE as CSV, with the header\n"
               "                %s\n",
               program->log_columns);
    }
    if (program->extra_help != NULL) {
        fputs(program->extra_help, stdout);
    }
    printf("  --help        show this and exit\n");
    printf("\nThe last line of output is \"RESULT %s key=value ...\".\n", program->name);
}

/* A decimal number in [min, max]; rejects signs, blanks and trailing text,
 * which strtoull would accept or ignore. */
static int parse_count(const char *text, unsigned long long min, unsigned long long max,
                       unsigned long long *out)
{
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        return -1;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max) {
        return -1;
    }
    *out = value;
    return 0;
}

int ex_parse_size(const char *text, size_t min, size_t max, size_t *out)
{
    unsigned long long value = 0;
    if (parse_count(text, min, max, &value) != 0) {
        return -1;
    }
    *out = (size_t)value;
    return 0;
}

int ex_take_option(int *argc, char **argv, const char *program_name, const char *name, const char **value)
{
    const size_t len = strlen(name);
    int found = 0;
    int kept = 1;
    for (int i = 1; i < *argc; ++i) {
        const char *arg = argv[i];
        if (strncmp(arg, name, len) != 0 || (arg[len] != '\0' && arg[len] != '=')) {
            argv[kept++] = argv[i];
            continue;
        }
        const char *v = NULL;
        if (arg[len] == '=') {
            v = arg + len + 1;
        } else if (i + 1 < *argc) {
            v = argv[++i];
        }
        if (v == NULL || v[0] == '\0') {
            fprintf(stderr, "%s: %s needs a value (try --help)\n", program_name, name);
            return -1;
        }
        *value = v;
        found = 1;
    }
    *argc = kept;
    argv[kept] = NULL; /* argv[argc] stays NULL, as main() received it */
    return found;
}

ex_args_result ex_parse_args(int argc, char **argv, const ex_program *program, ex_options *options)
{
    ex_options defaults = *options;
    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(program, &defaults);
            return EX_ARGS_HELP;
        }
        const unsigned uses = program->options;
        if (strcmp(arg, "--synthetic") == 0 && (uses & EX_OPT_DATA)) {
            options->synthetic = 1;
            continue;
        }

        /* The remaining options take a value, as "--opt VALUE" or "--opt=VALUE".
         * Each is known only to the programs that use it; --log to those that
         * say what they log. */
        const char *const with_value[] = {(uses & EX_OPT_DATA) ? "--data" : NULL,
                                          (uses & EX_OPT_EPOCHS) ? "--epochs" : NULL,
                                          (uses & EX_OPT_BATCH) ? "--batch" : NULL,
                                          (uses & EX_OPT_SEED) ? "--seed" : NULL,
                                          program->log_columns != NULL ? "--log" : NULL,
                                          (uses & EX_OPT_THREADS) ? "--threads" : NULL};
        const char *name = NULL;
        const char *value = NULL;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; ++k) {
            if (with_value[k] == NULL) {
                continue;
            }
            size_t len = strlen(with_value[k]);
            if (strncmp(arg, with_value[k], len) == 0 && (arg[len] == '\0' || arg[len] == '=')) {
                name = with_value[k];
                if (arg[len] == '=') {
                    value = arg + len + 1;
                } else if (i + 1 < argc) {
                    value = argv[++i];
                }
                break;
            }
        }
        if (name == NULL) {
            fprintf(stderr, "%s: unknown option '%s' (try --help)\n", program->name, arg);
            return EX_ARGS_BAD;
        }
        if (value == NULL || value[0] == '\0') {
            fprintf(stderr, "%s: %s needs a value (try --help)\n", program->name, name);
            return EX_ARGS_BAD;
        }

        unsigned long long number = 0;
        if (strcmp(name, "--data") == 0) {
            options->data_dir = value;
            options->data_given = 1;
        } else if (strcmp(name, "--log") == 0) {
            options->log_path = value;
        } else if (strcmp(name, "--epochs") == 0 && parse_count(value, 1, MAX_EPOCHS, &number) == 0) {
            options->epochs = (size_t)number;
        } else if (strcmp(name, "--batch") == 0 && parse_count(value, 1, MAX_BATCH, &number) == 0) {
            options->batch = (size_t)number;
        } else if (strcmp(name, "--seed") == 0 && parse_count(value, 0, UINT64_MAX, &number) == 0) {
            options->seed = (uint64_t)number;
        } else if (strcmp(name, "--threads") == 0 && parse_count(value, 1, EX_MAX_THREADS, &number) == 0) {
            options->threads = (size_t)number;
        } else {
            fprintf(stderr, "%s: invalid value '%s' for %s (try --help)\n", program->name, value, name);
            return EX_ARGS_BAD;
        }
    }
    return EX_ARGS_RUN;
}

double ex_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ex_read_file(const char *path, char **bytes, size_t *length)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = (size_t)1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        char *bigger = cap <= ((size_t)-1 - 1) / 2 ? realloc(buf, 2 * cap + 1) : NULL;
        if (bigger == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    const int failed = ferror(f) || buf == NULL;
    fclose(f);
    if (failed) {
        fprintf(stderr, "error: cannot read %s%s\n", path, buf == NULL ? ": out of memory" : "");
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *bytes = buf;
    *length = n;
    return 0;
}

void ex_report_failure(const char *what, aim_status status, const char *detail)
{
    fprintf(stderr, "error: %s failed: %s", what, aim_status_str(status));
    if (detail != NULL && detail[0] != '\0') {
        fprintf(stderr, ": %s", detail);
    }
    fputc('\n', stderr);
}

/* Sets OpenBLAS's own thread count, process-wide (every example links
 * libopenblas). Declared here: <cblas.h> declares it only when that header is
 * OpenBLAS's copy (Debian's openblas-pthread one is; the reference CBLAS's is
 * not), and the Makefile finds OpenBLAS's headers only through pkg-config. */
void openblas_set_num_threads(int num_threads);

int ex_threadpool_create(const ex_options *options, aim_threadpool **pool)
{
    *pool = NULL;
    if (options->threads <= 1) {
        return 0; /* no pool: OpenBLAS keeps its own setting, as without --threads */
    }
    aim_status status = aim_threadpool_create(NULL, options->threads, pool);
    if (status != AIM_OK) {
        *pool = NULL;
        ex_report_failure("aim_threadpool_create()", status, "");
        return -1;
    }
    /* The pool already splits each batch over the threads, and each thread's
     * GEMMs are on its own slice: if OpenBLAS also started threads for them,
     * the two kinds would compete for the same cores. The library never
     * changes OpenBLAS's setting; the host (this program) does. */
    openblas_set_num_threads(1);
    return 0;
}

int ex_threadpool_attach(aim_threadpool *pool, aim_model *model, aim_workspace *workspace)
{
    if (pool == NULL) {
        return 0;
    }
    aim_status status = aim_model_set_threadpool(model, pool);
    if (status != AIM_OK) {
        ex_report_failure("aim_model_set_threadpool()", status, aim_model_last_error(model));
        return -1;
    }
    if (workspace != NULL && (status = aim_workspace_set_threadpool(workspace, model, pool)) != AIM_OK) {
        ex_report_failure("aim_workspace_set_threadpool()", status, aim_workspace_last_error(workspace));
        return -1;
    }
    return 0;
}

int ex_log_open(ex_log *csv, const char *path, const char *header)
{
    csv->file = NULL;
    csv->path = path;
    csv->failed = 0;
    if (path == NULL) {
        return 0;
    }
    csv->file = fopen(path, "w");
    if (csv->file == NULL) {
        fprintf(stderr, "error: cannot create the log %s: %s\n", path, strerror(errno));
        return -1;
    }
    ex_log_row(csv, "%s", header);
    return 0;
}

void ex_log_row(ex_log *csv, const char *format, ...)
{
    if (csv->file == NULL) {
        return;
    }
    va_list args;
    va_start(args, format);
    if (vfprintf(csv->file, format, args) < 0 || fputc('\n', csv->file) == EOF || fflush(csv->file) != 0) {
        csv->failed = 1;
    }
    va_end(args);
}

int ex_log_close(ex_log *csv)
{
    if (csv->file == NULL) {
        return 0;
    }
    /* ferror() reports a write error whichever stdio call met it. */
    int failed = csv->failed || ferror(csv->file);
    if (fclose(csv->file) != 0) {
        failed = 1;
    }
    csv->file = NULL;
    if (failed) {
        fprintf(stderr, "error: writing the log %s failed; it may be incomplete\n", csv->path);
        return -1;
    }
    return 0;
}

int ex_use_synthetic(const ex_options *options)
{
    if (options->synthetic) {
        fprintf(stderr, "note: --synthetic: using the built-in synthetic data set\n");
        return 1;
    }
    /* Only the default directory's absence falls back to the stand-in: a
     * --data DIR that cannot be read is the user's mistake to hear about. */
    struct stat dir_status;
    if (!options->data_given && stat(options->data_dir, &dir_status) != 0 && errno == ENOENT) {
        fprintf(stderr,
                "note: cannot read Fashion-MNIST: %s: %s (install dataset-fashion-mnist or give --data DIR)\n"
                "note: using the built-in SYNTHETIC data set instead; accuracies are not "
                "comparable to Fashion-MNIST results\n",
                options->data_dir, strerror(ENOENT));
        return 1;
    }
    return 0;
}

int ex_load_fashion_mnist(const ex_options *options, fm_set *train, fm_set *validation, fm_set *test,
                          const char **source)
{
    char err[512] = "";
    const int loaded = !ex_use_synthetic(options);
    if (loaded && (fm_load(options->data_dir, FM_TRAIN, train, err, sizeof err) != 0 ||
                   fm_load(options->data_dir, FM_TEST, test, err, sizeof err) != 0)) {
        fm_free(train);
        fprintf(stderr, "error: cannot read Fashion-MNIST%s: %s\n", options->data_given ? " (--data)" : "", err);
        return -1;
    }
    if (!loaded) {
        if (fm_synthetic(SYNTHETIC_TRAIN_SEED, SYNTHETIC_TRAIN_COUNT, train, err, sizeof err) != 0 ||
            fm_synthetic(SYNTHETIC_TEST_SEED, SYNTHETIC_TEST_COUNT, test, err, sizeof err) != 0) {
            fprintf(stderr, "error: %s\n", err);
            fm_free(train);
            return -1;
        }
    }
    if (fm_split_tail(train, EX_VALIDATION_COUNT, validation, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        fm_free(train);
        fm_free(test);
        return -1;
    }
    *source = loaded ? "fashion-mnist" : "synthetic";
    return 0;
}

aim_status ex_batcher_init(ex_batcher *batcher, const ex_rows *rows, size_t batch, uint64_t seed)
{
    if (batcher == NULL || rows == NULL || rows->x == NULL || rows->x_width == 0 || rows->count == 0 ||
        batch == 0 || (rows->y != NULL && rows->y_width == 0)) {
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (rows->count > UINT32_MAX) {
        return AIM_ERR_OVERFLOW; /* the permutation holds uint32_t indices */
    }
    memset(batcher, 0, sizeof *batcher);
    batcher->rows = *rows;
    batcher->batch = batch;
    batcher->next = rows->count; /* nothing drawn before the first shuffle */

    aim_status status = aim_rng_create(NULL, seed, &batcher->rng);
    if (status != AIM_OK) {
        return status;
    }
    batcher->order = malloc(rows->count * sizeof *batcher->order);
    batcher->x = malloc(batch * rows->x_width * sizeof *batcher->x);
    if (rows->y != NULL) {
        batcher->y = malloc(batch * rows->y_width * sizeof *batcher->y);
    }
    if (rows->labels != NULL) {
        batcher->labels = malloc(batch * sizeof *batcher->labels);
    }
    if (batcher->order == NULL || batcher->x == NULL || (rows->y != NULL && batcher->y == NULL) ||
        (rows->labels != NULL && batcher->labels == NULL)) {
        ex_batcher_free(batcher);
        return AIM_ERR_OUT_OF_MEMORY;
    }
    return AIM_OK;
}

aim_status ex_batcher_shuffle(ex_batcher *batcher)
{
    /* Shuffling the identity each epoch keeps an epoch's order a function of
     * the seed and the epoch number only. */
    for (size_t i = 0; i < batcher->rows.count; ++i) {
        batcher->order[i] = (uint32_t)i;
    }
    batcher->next = 0;
    return aim_rng_shuffle_u32(batcher->rng, batcher->order, batcher->rows.count);
}

size_t ex_batcher_next(ex_batcher *batcher)
{
    const ex_rows *rows = &batcher->rows;
    size_t left = rows->count - batcher->next;
    size_t n = left < batcher->batch ? left : batcher->batch;
    for (size_t i = 0; i < n; ++i) {
        size_t src = batcher->order[batcher->next + i];
        memcpy(batcher->x + i * rows->x_width, rows->x + src * rows->x_width, rows->x_width * sizeof(float));
        if (rows->y != NULL) {
            memcpy(batcher->y + i * rows->y_width, rows->y + src * rows->y_width,
                   rows->y_width * sizeof(float));
        }
        if (rows->labels != NULL) {
            batcher->labels[i] = rows->labels[src];
        }
    }
    batcher->next += n;
    return n;
}

void ex_batcher_free(ex_batcher *batcher)
{
    if (batcher == NULL) {
        return;
    }
    aim_rng_free(batcher->rng);
    free(batcher->order);
    free(batcher->x);
    free(batcher->y);
    free(batcher->labels);
    memset(batcher, 0, sizeof *batcher);
}

size_t ex_count_correct(const float *output, size_t batch, size_t outputs, const int32_t *labels,
                        float threshold)
{
    size_t correct = 0;
    for (size_t i = 0; i < batch; ++i) {
        const float *row = output + i * outputs;
        int32_t predicted = 0;
        if (outputs == 1) {
            predicted = row[0] >= threshold ? 1 : 0;
        } else {
            size_t best = 0;
            for (size_t j = 1; j < outputs; ++j) {
                if (row[j] > row[best]) {
                    best = j;
                }
            }
            predicted = (int32_t)best;
        }
        if (predicted == labels[i]) {
            ++correct;
        }
    }
    return correct;
}

aim_status ex_accuracy(const aim_model *model, aim_workspace *workspace, size_t max_batch, const ex_rows *rows,
                       float threshold, float *scratch, size_t scratch_count, double *accuracy)
{
    if (rows == NULL || rows->labels == NULL || rows->count == 0 || max_batch == 0 || scratch_count < max_batch ||
        scratch_count % max_batch != 0 || accuracy == NULL) {
        return AIM_ERR_INVALID_ARGUMENT;
    }
    /* The floats per sample the caller sized `scratch` for; the library
     * refuses the call if the model's output is not that wide. */
    const size_t outputs = scratch_count / max_batch;
    size_t correct = 0;
    for (size_t first = 0; first < rows->count; first += max_batch) {
        size_t n = rows->count - first < max_batch ? rows->count - first : max_batch;
        aim_status status = aim_model_predict(model, workspace, rows->x + first * rows->x_width, n * rows->x_width,
                                              n, scratch, n * outputs);
        if (status != AIM_OK) {
            return status;
        }
        correct += ex_count_correct(scratch, n, outputs, rows->labels + first, threshold);
    }
    *accuracy = (double)correct / (double)rows->count;
    return AIM_OK;
}

/* ---- the training loop of the Fashion-MNIST classifiers ---------------- */

int ex_fit_classifier(aim_model *model, aim_optimizer *optimizer, float learning_rate, const ex_options *options,
                      aim_threadpool *pool, const fm_set *train, const fm_set *validation, const fm_set *test,
                      ex_log *metrics, int quiet_accuracy, ex_fit_result *result) {
    int rc = -1;
    aim_workspace *workspace = NULL;
    ex_batcher batcher = {0};
    float *scratch = NULL;
    const size_t scratch_count = (size_t)EX_EVAL_BATCH * FM_CLASSES; /* 10 logits per sample */

    /* Evaluation goes through aim_model_predict(), which leaves the model's
     * own training memory alone. */
    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &workspace), "");
    if (ex_threadpool_attach(pool, model, workspace) != 0) {
        goto cleanup;
    }
    scratch = malloc(scratch_count * sizeof *scratch);
    if (scratch == NULL) {
        fprintf(stderr, "error: out of memory\n");
        goto cleanup;
    }
    const ex_rows train_rows = {.x = train->images, .x_width = FM_PIXELS, .labels = train->labels,
                                .count = train->count};
    const ex_rows validation_rows = {.x = validation->images, .x_width = FM_PIXELS, .labels = validation->labels,
                                     .count = validation->count};
    const ex_rows test_rows = {.x = test->images, .x_width = FM_PIXELS, .labels = test->labels, .count = test->count};
    EX_TRY(ex_batcher_init(&batcher, &train_rows, options->batch, options->seed + 1), "");
    const size_t steps = (train->count + options->batch - 1) / options->batch;
    ex_progress progress;
    ex_progress_init(&progress, stdout, EX_PROGRESS_AUTO);

    const double train_start = ex_now();
    for (size_t epoch = 1; epoch <= options->epochs; ++epoch) {
        const double epoch_start = ex_now();
        double loss_sum = 0.0;
        size_t correct = 0;
        size_t n = 0;
        EX_TRY(ex_batcher_shuffle(&batcher), "");
        ex_progress_epoch(&progress, epoch, options->epochs, steps);
        while ((n = ex_batcher_next(&batcher)) > 0) {
            float loss = 0.0f;
            const float *logits = NULL;
            size_t logit_count = 0;
            EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
            EX_TRY(aim_model_forward(model, AIM_MODE_TRAIN, batcher.x, n * batcher.rows.x_width, n),
                   aim_model_last_error(model));
            EX_TRY(aim_model_output(model, 0, &logits, &logit_count), aim_model_last_error(model));
            correct += ex_count_correct(logits, n, logit_count / n, batcher.labels, 0.5f);
            EX_TRY(aim_model_loss_sparse(model, 0, batcher.labels, n, &loss), aim_model_last_error(model));
            EX_TRY(aim_model_backward(model, NULL, 0), aim_model_last_error(model));
            EX_TRY(aim_optimizer_step_model(optimizer, model, learning_rate), aim_optimizer_last_error(optimizer));
            loss_sum += (double)loss * (double)n; /* the loss is a batch mean */
            ex_progress_step(&progress, (double)loss, (double)n);
        }
        double val_accuracy = 0.0;
        EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, &validation_rows, 0.5f, scratch, scratch_count,
                           &val_accuracy),
               aim_workspace_last_error(workspace));
        const double loss = loss_sum / (double)train->count;
        const double accuracy = (double)correct / (double)train->count;
        const double seconds = ex_now() - epoch_start;
        /* The running loss is weighted by the batch sizes: it is `loss`. */
        const ex_metric shown[] = {{"accuracy", accuracy}, {"val_accuracy", val_accuracy}};
        ex_progress_end(&progress, shown + (quiet_accuracy ? 1 : 0), quiet_accuracy ? 1 : 2);
        ex_log_row(metrics, "%zu,%.6g,%.6g,%.6g,%.3f", epoch, loss, accuracy, val_accuracy, seconds);
    }
    result->train_seconds = ex_now() - train_start;

    EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, &test_rows, 0.5f, scratch, scratch_count,
                       &result->test_accuracy),
           aim_workspace_last_error(workspace));
    printf("test accuracy %.4f on %zu images\n", result->test_accuracy, test->count);
    rc = 0;

cleanup:
    free(scratch);
    ex_batcher_free(&batcher);
    aim_workspace_free(workspace);
    return rc;
}
