/*
 * libaimodel examples - training progress in the format Keras 2 prints.
 * SPDX-License-Identifier: MIT
 */
/*
 * One format for the C examples and the Python package (examples/python):
 *
 *   Epoch 2/5
 *   1200/1719 [====================>.........] - ETA: 14s - 8ms/step - loss: 0.4213
 *   1719/1719 [==============================] - 14s 8ms/step - loss: 0.4013 - accuracy: 0.8512
 *
 * The middle line is the in-progress line: on a terminal it is redrawn in
 * place with '\r' at most EX_PROGRESS_REDRAW_SECONDS apart (and at the last
 * step), and the final line overwrites it; on anything else (a pipe, a file)
 * it is printed as a line of its own at most every EX_PROGRESS_LINE_SECONDS
 * of an epoch, so a short epoch prints only its header and final line.
 *
 * The bar is Keras's: done = floor(30 * step / total), then done - 1 '=' and
 * a '>' while step < total (done '=' at the end), '.' for the rest. The ETA
 * is (total - step) times the mean seconds per step so far, truncated to
 * whole seconds; the rate is Nms/step from 1 ms a step up, Nus/step below
 * (rounded half up); the loss is the running mean of the losses given to
 * ex_progress_step(), weighted by their sample counts. The final line shows
 * the epoch's seconds (rounded half up, its evaluation included) and the
 * rate they give per step, as Keras does, then the metrics to 4 decimals.
 *
 * Nothing here allocates; the clock can be replaced (tests use a fake one).
 */
#ifndef EXAMPLES_PROGRESS_H
#define EXAMPLES_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

/* The bar's width in characters, as Keras's Progbar. */
#define EX_PROGRESS_BAR_WIDTH 30
/* On a terminal: the least time between two redraws of the bar. */
#define EX_PROGRESS_REDRAW_SECONDS 0.1
/* Elsewhere: the least time between two in-progress lines of an epoch. */
#define EX_PROGRESS_LINE_SECONDS 10.0
/* The longest line this module builds (a longer one is cut). */
#define EX_PROGRESS_LINE_MAX 512

typedef enum ex_progress_mode {
    EX_PROGRESS_AUTO = 0,  /* EX_PROGRESS_BAR if `out` is a terminal, else EX_PROGRESS_LINES */
    EX_PROGRESS_BAR = 1,   /* redrawn in place with '\r' */
    EX_PROGRESS_LINES = 2, /* plain lines, throttled */
    EX_PROGRESS_QUIET = 3  /* prints nothing (Keras's verbose=0) */
} ex_progress_mode;

/* A metric of the final line: " - name: value" with 4 decimals. */
typedef struct ex_metric {
    const char *name;
    double value;
} ex_metric;

/* Seconds for differences only; `context` is ex_progress's clock_context. */
typedef double (*ex_progress_clock)(void *context);

/* One epoch's (or interval's) progress. Fields are the module's; read them,
 * set them only through the functions. */
typedef struct ex_progress {
    FILE *out;
    ex_progress_mode mode;         /* never AUTO after ex_progress_init() */
    ex_progress_clock clock;       /* ex_now() unless replaced */
    void *clock_context;
    size_t total;                  /* steps of the epoch */
    size_t step;                   /* steps done */
    size_t first_step;             /* steps done when timing began (ex_progress_resume()) */
    double loss_sum, loss_weight;  /* sum of loss * weight, sum of weights */
    double start;                  /* when the epoch began */
    double last_step_time;         /* when the last step ended */
    double last_output;            /* the last redraw (bar) or line (lines) */
    size_t drawn;                  /* characters of the bar line now on the terminal */
} ex_progress;

/* Prepares `p` to print to `out` (stdout if NULL) in `mode` (AUTO: isatty
 * of `out`), timed by ex_now(). */
void ex_progress_init(ex_progress *p, FILE *out, ex_progress_mode mode);

/* Replaces the clock, e.g. with a fake one in a test. */
void ex_progress_set_clock(ex_progress *p, ex_progress_clock clock, void *context);

/* Starts an epoch of `total` steps (>= 1): prints `header` (e.g. "Epoch 2/5";
 * NULL for none) on a line of its own, and starts the clock. */
void ex_progress_begin(ex_progress *p, size_t total, const char *header);

/* ex_progress_begin() with the header "Epoch EPOCH/EPOCHS". */
void ex_progress_epoch(ex_progress *p, size_t epoch, size_t epochs, size_t total);

/* For a run resumed inside an epoch: counts `done` steps as already taken
 * with the given loss sum and weight (so the running loss is the one the
 * uninterrupted run shows); the rate and ETA are timed from here. Call right
 * after ex_progress_begin(). */
void ex_progress_resume(ex_progress *p, size_t done, double loss_sum, double loss_weight);

/* One step done, whose loss was `loss` over `weight` samples (0: no loss
 * for this step); redraws or prints the in-progress line when it is due. */
void ex_progress_step(ex_progress *p, double loss, double weight);

/* Ends the epoch with its final line: the running loss (unless no loss was
 * given; a metric named "loss" takes its place, e.g. a loss summed over
 * MPI ranks), then `metrics[0..count)`. */
void ex_progress_end(ex_progress *p, const ex_metric *metrics, size_t count);

/* ---- the pieces, for tests and for other layouts ------------------------ */

/* "1200/1719 [=====>....]": the step count right-aligned to the width of
 * `total`, then the bar. Returns the length snprintf() would give. */
int ex_progress_format_bar(char *buf, size_t size, size_t step, size_t total);

/* An ETA as Keras writes it: "14s" below a minute, "2:05" below an hour,
 * "1:02:05" from an hour up; `seconds` truncated to whole seconds. */
int ex_progress_format_eta(char *buf, size_t size, double seconds);

/* "8ms/step" from 1 ms a step up, else "450us/step" (rounded). */
int ex_progress_format_rate(char *buf, size_t size, double seconds_per_step);

#endif
