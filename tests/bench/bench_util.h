/*
 * What bench_cnn.c and bench_lstm.c share: failing loudly on an aim_ error or
 * an allocation, aligned float buffers, a monotonic clock in milliseconds,
 * the median/minimum summary and the interleaved timing of a set of jobs.
 * Each program defines BENCH_NAME (its name, for messages) before including
 * this header. Header-only, so that tests/bench/run.sh still builds each
 * program from one .c file.
 * SPDX-License-Identifier: MIT
 */
#ifndef AIM_BENCH_UTIL_H
#define AIM_BENCH_UTIL_H

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aimodel.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_util.h"
#endif

#define BI(n) ((blasint)(n))

/* ---- failure, memory, time ------------------------------------------------ */

static inline void check(aim_status st, const char *what, const char *detail) {
    if (st == AIM_OK) return;
    fprintf(stderr, BENCH_NAME ": %s failed: %s%s%s\n", what, aim_status_str(st), detail && *detail ? ": " : "",
            detail ? detail : "");
    exit(1);
}
#define CHECK(call, detail) check((call), #call, (detail))

static inline void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, BENCH_NAME ": out of memory\n");
        exit(1);
    }
    return p;
}

/* Zeroed, 64-byte aligned floats, as the library aligns its own buffers. */
static inline float *falloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63u) / 64u * 64u;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, BENCH_NAME ": out of memory allocating %zu floats\n", n);
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

static inline void fill_uniform(aim_rng *rng, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) {
        float u;
        CHECK(aim_rng_uniform(rng, &u), NULL);
        x[i] = lo + (hi - lo) * u;
    }
}

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

typedef struct stats {
    double med, min; /* milliseconds */
} stats;

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline stats summarize(const double *samples, size_t n) {
    double *s = xmalloc(n * sizeof *s);
    memcpy(s, samples, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    stats r = {n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]), s[0]};
    free(s);
    return r;
}

static inline double gflops(double flops, double ms) { return ms > 0.0 ? flops / (ms * 1e6) : 0.0; }

/* ---- timing a set of jobs ------------------------------------------------- */

/* Repetitions and warm-up runs; each program's command line may change them. */
static size_t g_reps = 30, g_warmup = 5;

typedef void (*job_fn)(void *ctx);

/* One thing to time: `run` on `ctx`; `reset` (may be NULL) runs before each
 * call, outside the timed region. */
typedef struct timed {
    job_fn run, reset;
    void *ctx;
    stats s; /* the result */
} timed;

static inline timed job(job_fn run, job_fn reset, void *ctx) {
    timed t = {run, reset, ctx, {0.0, 0.0}};
    return t;
}

/* Times each of n jobs g_reps times after g_warmup untimed runs. The jobs
 * are interleaved, one call of each per round, so that a kernel and the GEMMs
 * it is compared with see the same machine load (other processes, clock
 * changes) and their ratio stays meaningful on a busy machine. */
static inline void measure_set(timed *t, size_t n) {
    double *samples = xmalloc(n * g_reps * sizeof *samples);
    for (size_t r = 0; r < g_warmup; r++)
        for (size_t i = 0; i < n; i++) {
            if (t[i].reset) t[i].reset(t[i].ctx);
            t[i].run(t[i].ctx);
        }
    for (size_t r = 0; r < g_reps; r++)
        for (size_t i = 0; i < n; i++) {
            if (t[i].reset) t[i].reset(t[i].ctx);
            double t0 = now_ms();
            t[i].run(t[i].ctx);
            samples[i * g_reps + r] = now_ms() - t0;
        }
    for (size_t i = 0; i < n; i++) t[i].s = summarize(samples + i * g_reps, g_reps);
    free(samples);
}

#endif
