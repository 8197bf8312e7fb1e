/*
 * libaimodel examples - command line, timing, mini-batches, evaluation.
 * SPDX-License-Identifier: MIT
 */
/*
 * What every example host program shares, so that each program's own file
 * shows only its model and its training loop. The library itself prints
 * nothing; the printing here is the host's business.
 */
#ifndef EXAMPLES_EXAMPLE_UTIL_H
#define EXAMPLES_EXAMPLE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "aimodel.h"
#include "fashion_mnist.h"
#include "progress.h"

/* Samples per aim_model_predict() call when evaluating; the size every
 * example gives its inference workspace. */
#define EX_EVAL_BATCH 256

/* Training images held out (from the end of the training file) to report
 * val_accuracy each epoch without looking at the test set. */
#define EX_VALIDATION_COUNT 5000

/* Exit status for a command-line mistake (1 is for a failed run). */
#define EX_EXIT_USAGE 2

/* ---- command line ------------------------------------------------------ */

typedef struct ex_options {
    const char *data_dir; /* --data DIR */
    int data_given;       /* --data was on the command line: failing to read it is an error */
    size_t epochs;        /* --epochs N, >= 1 */
    size_t batch;         /* --batch N, >= 1 */
    uint64_t seed;        /* --seed N: weight initialization and shuffling */
    int synthetic;        /* --synthetic: skip the real data */
    const char *log_path; /* --log FILE: per-epoch metrics as CSV, or NULL */
    size_t threads;       /* --threads N, 1 to EX_MAX_THREADS; 1: no thread pool */
} ex_options;

/* The most --threads accepts: aim_threadpool_create()'s limit. */
#define EX_MAX_THREADS 256

/* The shared options a program uses, for ex_program.options: only these
 * are accepted and listed by --help; any other is "unknown option". */
#define EX_OPT_DATA 0x01u    /* --data DIR and --synthetic (Fashion-MNIST) */
#define EX_OPT_EPOCHS 0x02u  /* --epochs N */
#define EX_OPT_BATCH 0x04u   /* --batch N */
#define EX_OPT_SEED 0x08u    /* --seed N */
#define EX_OPT_THREADS 0x10u /* --threads N: the program gives its model and
                                workspace the pool of ex_threadpool_create() */
/* What a Fashion-MNIST trainer uses (--log comes with log_columns). */
#define EX_OPT_TRAINER (EX_OPT_DATA | EX_OPT_EPOCHS | EX_OPT_BATCH | EX_OPT_SEED | EX_OPT_THREADS)

/* What --help says about a program, and which shared options it takes. */
typedef struct ex_program {
    const char *name;    /* e.g. "mlp_classifier" */
    const char *summary; /* one line */
    unsigned options;    /* EX_OPT_* bits of the shared options it uses */
    const char *extra_help; /* lines --help prints after the shared options (the
                               program's own, see ex_take_option()), or NULL */
    const char *seed_help;   /* what --seed does, if not "seed of weight
                                initialization and shuffling"; or NULL */
    const char *log_columns; /* the header of its --log CSV, e.g.
                                EX_LOG_CLASSIFIER_COLUMNS; NULL for a program
                                that logs nothing: --log is then unknown */
} ex_program;

/* The --log columns of the classifiers: the figures of each epoch's line. */
#define EX_LOG_CLASSIFIER_COLUMNS "epoch,loss,accuracy,val_accuracy,seconds"

typedef enum ex_args_result {
    EX_ARGS_RUN = 0,  /* options parsed; go on */
    EX_ARGS_HELP = 1, /* --help was printed; exit 0 */
    EX_ARGS_BAD = 2   /* a message went to stderr; exit EX_EXIT_USAGE */
} ex_args_result;

/* Defaults shared by all programs: FM_DEFAULT_DIR, 5 epochs, batch 32, seed 42,
 * no log, 1 thread. */
void ex_options_default(ex_options *options);

/* Parses argv over `options`, which hold the program's defaults on entry
 * (--help prints them). Accepts "--opt VALUE" and "--opt=VALUE". */
ex_args_result ex_parse_args(int argc, char **argv, const ex_program *program, ex_options *options);

/*
 * For a program's own options, which ex_parse_args() does not know: finds
 * "--name VALUE" or "--name=VALUE" in argv, points `*value` at the value
 * (the last occurrence wins) and removes it from argv, so call this before
 * ex_parse_args(). Returns 1 if found, 0 if absent (`*value` unchanged), -1
 * after printing a message if the value is missing or empty.
 */
int ex_take_option(int *argc, char **argv, const char *program_name, const char *name, const char **value);

/* A decimal number in [min, max], without sign, blanks or trailing text.
 * Returns 0, or -1 if `text` is not one. */
int ex_parse_size(const char *text, size_t min, size_t max, size_t *out);

/* ---- timing and reporting ---------------------------------------------- */

/* Seconds on CLOCK_MONOTONIC, for differences only. */
double ex_now(void);

/* Reads a whole file into a malloc'ed buffer with a NUL after its `*length`
 * bytes (so text can be read as a string; caller frees), growing the buffer
 * as it goes (no fseek/ftell, which C does not define for binary streams'
 * ends). Returns 0, or -1 after printing why. */
int ex_read_file(const char *path, char **bytes, size_t *length);

/* Prints "NAME: failed: STATUS: DETAIL" to stderr. */
void ex_report_failure(const char *what, aim_status status, const char *detail);

/*
 * Runs an aim_ call; on failure reports it and jumps to the enclosing
 * function's `cleanup` label. `detail` (usually the failing object's
 * aim_*_last_error()) is evaluated only after the call has failed, so it
 * describes this failure, not an earlier one.
 */
#define EX_TRY(call, detail)                                        \
    do {                                                            \
        aim_status ex_try_status_ = (call);                         \
        if (ex_try_status_ != AIM_OK) {                             \
            ex_report_failure(#call, ex_try_status_, (detail));     \
            goto cleanup;                                           \
        }                                                           \
    } while (0)

/* ---- --threads: a thread pool ------------------------------------------- */

/*
 * For --threads N > 1: creates a pool of N threads (the caller's included)
 * into `*pool` and sets OpenBLAS to one thread; for 1, `*pool` becomes NULL
 * and nothing changes, so a run without --threads is the run without a pool.
 * Returns 0, or -1 after printing why. Free the pool with
 * aim_threadpool_free() after the model and workspaces that use it.
 */
int ex_threadpool_create(const ex_options *options, aim_threadpool **pool);

/*
 * Gives `pool` to a compiled `model` and, unless it is NULL, to `workspace`
 * (one of that model's), so forward, backward and predict split large batches
 * over the pool's threads. Does nothing for a NULL pool. Returns 0, or -1
 * after printing why.
 */
int ex_threadpool_attach(aim_threadpool *pool, aim_model *model, aim_workspace *workspace);

/* ---- --log: per-epoch metrics as CSV ------------------------------------ */

/*
 * A CSV file for plotting (see examples/plots.sh): a header line, then for
 * --log one row per epoch. Each row is flushed as it is written, so a long
 * run can be watched and a failed one keeps its epochs. Without --log the
 * file is NULL and every call does nothing, so a program calls them
 * unconditionally.
 */
typedef struct ex_log {
    FILE *file;       /* NULL: no log */
    const char *path; /* borrowed */
    int failed;       /* a write failed; ex_log_close() says so */
} ex_log;

/* Creates `path` (truncating it) and writes `header` and a newline; a NULL
 * `path` leaves `csv` closed. `csv` may be zero-initialized; ex_log_close()
 * is safe after a failure. Returns 0, or -1 after printing why. */
int ex_log_open(ex_log *csv, const char *path, const char *header);

/* Writes one row, `format` as for printf() without the newline, which this
 * adds. A field left empty is CSV's missing value. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ex_log_row(ex_log *csv, const char *format, ...);

/* Closes the file. Returns 0, or -1 after printing why if a write or the
 * close failed (the data may be incomplete). Safe on a closed log. */
int ex_log_close(ex_log *csv);

/* ---- data -------------------------------------------------------------- */

/* Whether to use fm_synthetic() instead of the files: with --synthetic, or
 * without --data when the default directory does not exist; says so on
 * stderr when it returns 1. */
int ex_use_synthetic(const ex_options *options);

/*
 * Fills `train`, `validation` (the last EX_VALIDATION_COUNT training images)
 * and `test`: from Fashion-MNIST in options->data_dir, or from fm_synthetic()
 * with fixed seeds with --synthetic, or when no --data was given and the
 * default directory does not exist (saying so on stderr). A directory given
 * with --data, or the default one when it exists, that cannot be read is an
 * error: the message names the file and the reason. `*source` becomes
 * "fashion-mnist" or "synthetic". Returns 0, or -1 after printing why (the
 * sets are then empty).
 */
int ex_load_fashion_mnist(const ex_options *options, fm_set *train, fm_set *validation, fm_set *test,
                          const char **source);

/* Borrowed rows of a data set: inputs plus float targets and/or labels. */
typedef struct ex_rows {
    const float *x;        /* (count, x_width) */
    size_t x_width;
    const float *y;        /* (count, y_width) float targets, or NULL */
    size_t y_width;
    const int32_t *labels; /* (count) integer labels, or NULL */
    size_t count;
} ex_rows;

/* Draws shuffled mini-batches from `rows` into buffers of its own. */
typedef struct ex_batcher {
    ex_rows rows;          /* borrowed; must outlive the batcher */
    size_t batch;          /* largest batch */
    size_t next;           /* position in `order` */
    aim_rng *rng;
    uint32_t *order;       /* (rows.count) permutation of the epoch */
    float *x;              /* (batch, x_width) current batch */
    float *y;              /* (batch, y_width) or NULL */
    int32_t *labels;       /* (batch) or NULL */
} ex_batcher;

/* Allocates the batch buffers and a generator seeded with `seed`. `batcher`
 * may be zero-initialized; ex_batcher_free() is safe after a failure. */
aim_status ex_batcher_init(ex_batcher *batcher, const ex_rows *rows, size_t batch, uint64_t seed);

/* Starts an epoch: a fresh permutation from aim_rng_shuffle_u32(). */
aim_status ex_batcher_shuffle(ex_batcher *batcher);

/* Gathers the next rows of the epoch into x / y / labels and returns how
 * many (the last batch may be short, as in Keras); 0 when the epoch is over. */
size_t ex_batcher_next(ex_batcher *batcher);

void ex_batcher_free(ex_batcher *batcher);

/* ---- evaluation -------------------------------------------------------- */

/*
 * How many of `batch` output rows (of `outputs` values each) name the right
 * label: by argmax, or for a single output by output >= threshold meaning 1.
 */
size_t ex_count_correct(const float *output, size_t batch, size_t outputs, const int32_t *labels,
                        float threshold);

/*
 * Accuracy of a compiled model on `rows` (labels required), by
 * aim_model_predict() in chunks of at most `max_batch` samples through
 * `workspace`; `scratch` holds `scratch_count` floats, max_batch times the
 * outputs per sample the caller expects (a model whose output has another
 * width is refused by aim_model_predict(): AIM_ERR_SHAPE_MISMATCH). On
 * failure see aim_workspace_last_error(workspace).
 */
aim_status ex_accuracy(const aim_model *model, aim_workspace *workspace, size_t max_batch, const ex_rows *rows,
                       float threshold, float *scratch, size_t scratch_count, double *accuracy);

/* ---- the training loop of the Fashion-MNIST classifiers ---------------- */

/* What ex_fit_classifier() measured. */
typedef struct ex_fit_result {
    double test_accuracy;
    double train_seconds; /* the whole fit loop, validation included, as Keras' fit() reports */
} ex_fit_result;

/*
 * Trains a compiled classifier with 10 logits out (aim_model_loss_sparse()
 * applies the softmax) by `optimizer` at `learning_rate`: shuffled batches
 * of options->batch from `train` (seeded with options->seed + 1, so shuffling
 * does not replay the initialization's draws), with progress within each
 * epoch and a final line (progress.h) and one --log row per epoch with the
 * validation accuracy, then the test accuracy. The final line shows the
 * training accuracy unless `quiet_accuracy` (save_model's format).
 * `pool` (NULL for none) is given to the model and the evaluation
 * workspace. Returns 0, or -1 after printing why.
 */
int ex_fit_classifier(aim_model *model, aim_optimizer *optimizer, float learning_rate, const ex_options *options,
                      aim_threadpool *pool, const fm_set *train, const fm_set *validation, const fm_set *test,
                      ex_log *metrics, int quiet_accuracy, ex_fit_result *result);

#endif
