/*
 * libaimodel examples - training progress in the format Keras 2 prints.
 * SPDX-License-Identifier: MIT
 */
/* clock_gettime() and fileno() are POSIX, not C11. */
#define _POSIX_C_SOURCE 200809L

#include "progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

/* CLOCK_MONOTONIC seconds; this file's own, so that it links alone (the
 * formatter's test needs neither the library nor the data readers). */
static double monotonic_seconds(void *context)
{
    (void)context;
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0.0;
    }
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* snprintf's result as a length inside a buffer of `size`: how far the next
 * piece may start (at the NUL when the buffer is full). */
static size_t advance(size_t at, int n, size_t size)
{
    if (n < 0) {
        return at;
    }
    size_t next = at + (size_t)n;
    return next < size ? next : (size > 0 ? size - 1 : 0);
}

static size_t digits(size_t n)
{
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

int ex_progress_format_bar(char *buf, size_t size, size_t step, size_t total)
{
    char bar[EX_PROGRESS_BAR_WIDTH + 1];
    const size_t shown = step < total ? step : total;
    /* Keras: done = int(width * step / total); done - 1 '=' and a '>' head
     * while unfinished, all '=' at the end. */
    const size_t done = total > 0 ? (size_t)((double)EX_PROGRESS_BAR_WIDTH * (double)shown / (double)total) : 0;
    size_t i = 0;
    if (done > 0) {
        for (; i + 1 < done; i++) {
            bar[i] = '=';
        }
        bar[i++] = shown < total ? '>' : '=';
    }
    for (; i < EX_PROGRESS_BAR_WIDTH; i++) {
        bar[i] = '.';
    }
    bar[EX_PROGRESS_BAR_WIDTH] = '\0';
    return snprintf(buf, size, "%*zu/%zu [%s]", (int)digits(total), step, total, bar);
}

int ex_progress_format_eta(char *buf, size_t size, double seconds)
{
    const unsigned long long s = seconds > 0.0 ? (unsigned long long)seconds : 0;
    if (s >= 3600) {
        return snprintf(buf, size, "%llu:%02llu:%02llu", s / 3600, (s % 3600) / 60, s % 60);
    }
    if (s >= 60) {
        return snprintf(buf, size, "%llu:%02llu", s / 60, s % 60);
    }
    return snprintf(buf, size, "%llus", s);
}

/* `value` rounded half up to a whole number (as the Python twin does;
 * printf's "%.0f" would round halves to even). */
static unsigned long long rounded(double value)
{
    return value > 0.0 ? (unsigned long long)(value + 0.5) : 0;
}

int ex_progress_format_rate(char *buf, size_t size, double seconds_per_step)
{
    if (seconds_per_step >= 1e-3) {
        return snprintf(buf, size, "%llums/step", rounded(seconds_per_step * 1e3));
    }
    return snprintf(buf, size, "%lluus/step", rounded(seconds_per_step * 1e6));
}

void ex_progress_init(ex_progress *p, FILE *out, ex_progress_mode mode)
{
    memset(p, 0, sizeof *p);
    p->out = out != NULL ? out : stdout;
    if (mode == EX_PROGRESS_AUTO) {
        const int fd = fileno(p->out);
        mode = fd >= 0 && isatty(fd) ? EX_PROGRESS_BAR : EX_PROGRESS_LINES;
    }
    p->mode = mode;
    p->clock = monotonic_seconds;
}

void ex_progress_set_clock(ex_progress *p, ex_progress_clock clock, void *context)
{
    p->clock = clock != NULL ? clock : monotonic_seconds;
    p->clock_context = context;
}

void ex_progress_begin(ex_progress *p, size_t total, const char *header)
{
    p->total = total > 0 ? total : 1;
    p->step = 0;
    p->first_step = 0;
    p->loss_sum = 0.0;
    p->loss_weight = 0.0;
    p->drawn = 0;
    if (p->mode != EX_PROGRESS_QUIET && header != NULL) {
        fprintf(p->out, "%s\n", header);
        fflush(p->out);
    }
    p->start = p->clock(p->clock_context);
    p->last_step_time = p->start;
    /* The bar draws at the first step; plain lines wait a full interval. */
    p->last_output = p->mode == EX_PROGRESS_BAR ? p->start - EX_PROGRESS_REDRAW_SECONDS : p->start;
}

void ex_progress_epoch(ex_progress *p, size_t epoch, size_t epochs, size_t total)
{
    char header[64];
    snprintf(header, sizeof header, "Epoch %zu/%zu", epoch, epochs);
    ex_progress_begin(p, total, header);
}

void ex_progress_resume(ex_progress *p, size_t done, double loss_sum, double loss_weight)
{
    p->step = done < p->total ? done : p->total;
    p->first_step = p->step;
    p->loss_sum = loss_sum;
    p->loss_weight = loss_weight;
}

/* Seconds per step over the steps timed so far. */
static double seconds_per_step(const ex_progress *p)
{
    const size_t timed = p->step - p->first_step;
    return timed > 0 ? (p->last_step_time - p->start) / (double)timed : 0.0;
}

/* Writes `line` over the terminal's bar line (padding over a longer one) or
 * as a plain line, with `end` ("" to stay on the line, "\n"). */
static void emit(ex_progress *p, const char *line, size_t length, const char *end)
{
    if (p->mode == EX_PROGRESS_BAR) {
        const size_t pad = p->drawn > length ? p->drawn - length : 0;
        fprintf(p->out, "\r%s%*s%s", line, (int)pad, "", end);
        p->drawn = end[0] == '\0' ? length : 0;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}

void ex_progress_step(ex_progress *p, double loss, double weight)
{
    if (p->step < p->total) {
        p->step++;
    }
    if (weight > 0.0) {
        p->loss_sum += loss * weight;
        p->loss_weight += weight;
    }
    const double now = p->clock(p->clock_context);
    p->last_step_time = now;
    if (p->mode == EX_PROGRESS_QUIET) {
        return;
    }
    if (p->mode == EX_PROGRESS_BAR) {
        if (now - p->last_output < EX_PROGRESS_REDRAW_SECONDS && p->step < p->total) {
            return;
        }
    } else if (now - p->last_output < EX_PROGRESS_LINE_SECONDS || p->step >= p->total) {
        return; /* the final line follows the last step */
    }
    p->last_output = now;

    char line[EX_PROGRESS_LINE_MAX];
    const size_t size = sizeof line;
    const double per_step = seconds_per_step(p);
    char eta[32], rate[32];
    ex_progress_format_eta(eta, sizeof eta, per_step * (double)(p->total - p->step));
    ex_progress_format_rate(rate, sizeof rate, per_step);
    size_t n = advance(0, ex_progress_format_bar(line, size, p->step, p->total), size);
    n = advance(n, snprintf(line + n, size - n, " - ETA: %s - %s", eta, rate), size);
    if (p->loss_weight > 0.0) {
        n = advance(n, snprintf(line + n, size - n, " - loss: %.4f", p->loss_sum / p->loss_weight), size);
    }
    emit(p, line, n, "");
}

void ex_progress_end(ex_progress *p, const ex_metric *metrics, size_t count)
{
    const double now = p->clock(p->clock_context);
    if (p->mode == EX_PROGRESS_QUIET) {
        return;
    }
    int loss_given = 0;
    for (size_t i = 0; i < count; i++) {
        loss_given |= strcmp(metrics[i].name, "loss") == 0;
    }
    char line[EX_PROGRESS_LINE_MAX];
    const size_t size = sizeof line;
    /* As Keras: the epoch's seconds, evaluation included, over its steps. */
    const double elapsed = now - p->start;
    const size_t timed = p->step - p->first_step;
    char rate[32];
    ex_progress_format_rate(rate, sizeof rate, timed > 0 ? elapsed / (double)timed : 0.0);
    size_t n = advance(0, ex_progress_format_bar(line, size, p->step, p->total), size);
    n = advance(n, snprintf(line + n, size - n, " - %llus %s", rounded(elapsed), rate), size);
    if (p->loss_weight > 0.0 && !loss_given) {
        n = advance(n, snprintf(line + n, size - n, " - loss: %.4f", p->loss_sum / p->loss_weight), size);
    }
    for (size_t i = 0; i < count; i++) {
        n = advance(n, snprintf(line + n, size - n, " - %s: %.4f", metrics[i].name, metrics[i].value), size);
    }
    emit(p, line, n, "\n");
}
