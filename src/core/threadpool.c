/*
 * The thread pool: the only place the library starts threads, and only when
 * the caller creates one (there is no hidden global pool).
 *
 * A pool of N threads is the calling thread plus N-1 workers. aim__pool_run()
 * hands one job to all of them (worker index 0 is the caller) and returns
 * when every part has finished. Jobs are serialized by `job_lock`, so several
 * threads may share one pool: they take turns.
 *
 * Dispatch is a generation counter. A worker that finished its part spins on
 * the counter for a short while (a training step dispatches the forward, the
 * backward and a reduction a few microseconds apart, and a futex wake costs
 * more than that), then sleeps on a condition variable.
 *
 * Each worker w >= 1 also owns an arena: the scratch and the partial
 * gradients its share of a model's batch needs. Arenas only grow, and only in
 * aim__pool_reserve() (called when a model or workspace is given the pool),
 * never during a step.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* How long an idle worker polls before it sleeps. */
#define SPIN_NS 200000L
#define MAX_THREADS 256u

struct aim_threadpool {
    aim_allocator alloc;
    size_t threads;             /* the caller included */
    pthread_t *tids;            /* threads - 1 workers */
    size_t started;             /* workers actually running */
    pthread_mutex_t job_lock;   /* one job (or reservation) at a time */
    pthread_mutex_t lock;       /* guards the sleep on `wake` */
    pthread_cond_t wake;
    atomic_uint_fast64_t generation;
    atomic_size_t pending;      /* workers still running the current job */
    atomic_int stop;
    aim__pool_fn fn;
    void *ctx;
    uint64_t min_work;          /* forward multiply-adds a slice must carry */
    /* arenas, index 1 .. threads-1 (index 0 unused: the caller uses the
     * model's or the workspace's own memory) */
    void **arena_raw;
    float **arena;
    size_t arena_floats;
    char err[AIM__ERR_CAP];
};

typedef struct worker_arg {
    aim_threadpool *pool;
    size_t index;
} worker_arg;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* The smallest stack a worker thread gets (see aim_threadpool_create). */
#define AIM__WORKER_STACK ((size_t)1 << 20)

/* The spin-wait hint: x86's pause, ARM's yield (both let a sibling
 * hardware thread run and save power while a worker polls). */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif (defined(__aarch64__) || defined(__arm__)) && (defined(__GNUC__) || defined(__clang__))
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static void *worker_main(void *p) {
    aim_threadpool *pool = ((worker_arg *)p)->pool;
    const size_t index = ((worker_arg *)p)->index;
    uint_fast64_t seen = 0;
    for (;;) {
        uint_fast64_t g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g == seen) {
            const long until = now_ns() + SPIN_NS;
            for (unsigned i = 1;; i++) {
                cpu_relax();
                g = atomic_load_explicit(&pool->generation, memory_order_acquire);
                if (g != seen || atomic_load_explicit(&pool->stop, memory_order_relaxed)) break;
                if ((i & 255u) == 0) {
                    if (now_ns() > until) break;
                    sched_yield(); /* a caller sharing this CPU gets it back at once */
                }
            }
            if (g == seen) {
                pthread_mutex_lock(&pool->lock);
                while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
                       !atomic_load_explicit(&pool->stop, memory_order_relaxed))
                    pthread_cond_wait(&pool->wake, &pool->lock);
                pthread_mutex_unlock(&pool->lock);
            }
        }
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) return NULL;
        seen = g;
        pool->fn(pool->ctx, index);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

static void free_arenas(aim_threadpool *pool) {
    if (pool->arena_raw)
        for (size_t i = 1; i < pool->threads; i++) aim__free(&pool->alloc, pool->arena_raw[i]);
    aim__free(&pool->alloc, pool->arena_raw);
    aim__free(&pool->alloc, pool->arena);
    pool->arena_raw = NULL;
    pool->arena = NULL;
    pool->arena_floats = 0;
}

static void stop_workers(aim_threadpool *pool) {
    pthread_mutex_lock(&pool->lock);
    atomic_store_explicit(&pool->stop, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < pool->started; i++) pthread_join(pool->tids[i], NULL);
    pool->started = 0;
}

aim_status aim_threadpool_create(const aim_allocator *allocator, size_t threads, aim_threadpool **out) {
    aim_allocator a;
    if (!out || aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (size_t)n : 1;
        if (threads > MAX_THREADS) threads = MAX_THREADS;
    }
    if (threads > MAX_THREADS) return AIM_ERR_UNSUPPORTED;
    aim_threadpool *pool = aim__alloc(&a, sizeof *pool);
    if (!pool) return AIM_ERR_OUT_OF_MEMORY;
    memset(pool, 0, sizeof *pool);
    pool->alloc = a;
    pool->threads = threads;
    pool->min_work = AIM__DEFAULT_MIN_WORK;
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->stop, 0);
    if (pthread_mutex_init(&pool->job_lock, NULL) != 0) goto fail_pool;
    if (pthread_mutex_init(&pool->lock, NULL) != 0) goto fail_job_lock;
    if (pthread_cond_init(&pool->wake, NULL) != 0) goto fail_lock;
    /* Worker arguments live right after the thread ids, in one allocation. */
    const size_t nw = threads - 1;
    worker_arg *args = NULL;
    if (nw) {
        pool->tids = aim__alloc(&a, nw * (sizeof(pthread_t) + sizeof(worker_arg)));
        if (!pool->tids) goto fail_cond;
        args = (worker_arg *)(void *)(pool->tids + nw);
    }
    pool->arena_raw = aim__alloc(&a, threads * sizeof(void *));
    pool->arena = aim__alloc(&a, threads * sizeof(float *));
    if (!pool->arena_raw || !pool->arena) goto fail_tids;
    memset(pool->arena_raw, 0, threads * sizeof(void *));
    memset(pool->arena, 0, threads * sizeof(float *));
    /* Workers get a stack of at least AIM__WORKER_STACK whatever the
     * system's default (musl's is 128 KiB): the AVX-512F SGEMM keeps its
     * 96 KiB of packing buffers on the stack (src/core/gemm.c). */
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) goto fail_tids;
    size_t stack = 0;
    if (pthread_attr_getstacksize(&attr, &stack) == 0 && stack < AIM__WORKER_STACK)
        (void)pthread_attr_setstacksize(&attr, AIM__WORKER_STACK); /* on failure: the default */
    for (size_t i = 0; i < nw; i++) {
        args[i].pool = pool;
        args[i].index = i + 1;
        if (pthread_create(&pool->tids[i], &attr, worker_main, &args[i]) != 0) {
            pthread_attr_destroy(&attr);
            stop_workers(pool); /* EAGAIN: the system lacks resources for a thread */
            goto fail_tids;
        }
        pool->started++;
    }
    pthread_attr_destroy(&attr);
    *out = pool;
    return AIM_OK;

fail_tids:
    aim__free(&a, pool->arena_raw);
    aim__free(&a, pool->arena);
    aim__free(&a, pool->tids);
fail_cond:
    pthread_cond_destroy(&pool->wake);
fail_lock:
    pthread_mutex_destroy(&pool->lock);
fail_job_lock:
    pthread_mutex_destroy(&pool->job_lock);
fail_pool:
    aim__free(&a, pool);
    return AIM_ERR_OUT_OF_MEMORY;
}

void aim_threadpool_free(aim_threadpool *pool) {
    if (!pool) return;
    aim_allocator a = pool->alloc;
    stop_workers(pool);
    free_arenas(pool);
    aim__free(&a, pool->tids);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->job_lock);
    aim__free(&a, pool);
}

size_t aim_threadpool_threads(const aim_threadpool *pool) { return pool ? pool->threads : 0; }

aim_status aim_threadpool_set_min_work(aim_threadpool *pool, uint64_t multiply_adds) {
    if (!pool) return AIM_ERR_INVALID_ARGUMENT;
    pool->min_work = multiply_adds;
    return AIM_OK;
}

uint64_t aim__pool_min_work(const aim_threadpool *pool) { return pool->min_work; }

const char *aim_threadpool_last_error(const aim_threadpool *pool) { return pool ? pool->err : ""; }

aim_status aim__pool_reserve(aim_threadpool *pool, size_t floats) {
    if (pool->threads < 2) return AIM_OK;
    pthread_mutex_lock(&pool->job_lock);
    if (floats <= pool->arena_floats) {
        pthread_mutex_unlock(&pool->job_lock);
        return AIM_OK;
    }
    /* All new arenas first, so a failure leaves the old ones in place. */
    void *raw[MAX_THREADS] = {0};
    float *mem[MAX_THREADS] = {0};
    size_t bytes;
    if (!aim__mul(floats, sizeof(float), &bytes)) {
        pthread_mutex_unlock(&pool->job_lock);
        aim__set_error(pool->err, "reserve: %zu floats per worker overflow", floats);
        return AIM_ERR_OVERFLOW;
    }
    for (size_t i = 1; i < pool->threads; i++) {
        mem[i] = aim__alloc_aligned(&pool->alloc, bytes, &raw[i]);
        if (!mem[i]) {
            for (size_t j = 1; j < i; j++) aim__free(&pool->alloc, raw[j]);
            pthread_mutex_unlock(&pool->job_lock);
            aim__set_error(pool->err, "reserve: out of memory for %zu bytes per worker", bytes);
            return AIM_ERR_OUT_OF_MEMORY;
        }
        memset(mem[i], 0, bytes); /* first touch now, not in a step */
    }
    for (size_t i = 1; i < pool->threads; i++) {
        aim__free(&pool->alloc, pool->arena_raw[i]);
        pool->arena_raw[i] = raw[i];
        pool->arena[i] = mem[i];
    }
    pool->arena_floats = floats;
    pthread_mutex_unlock(&pool->job_lock);
    return AIM_OK;
}

size_t aim__pool_lock(aim_threadpool *pool, float **arenas) {
    pthread_mutex_lock(&pool->job_lock);
    for (size_t i = 1; i < pool->threads; i++) arenas[i] = pool->arena[i];
    return pool->arena_floats;
}

void aim__pool_unlock(aim_threadpool *pool) { pthread_mutex_unlock(&pool->job_lock); }

void aim__pool_run_locked(aim_threadpool *pool, size_t parts, aim__pool_fn fn, void *ctx) {
    if (parts < 2 || pool->threads < 2) {
        for (size_t i = 0; i < parts; i++) fn(ctx, i);
        return;
    }
    /* Parts beyond the pool's size never happen: callers pass parts <= threads. */
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->pending, pool->threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    fn(ctx, 0);
    for (unsigned i = 1; atomic_load_explicit(&pool->pending, memory_order_acquire) != 0; i++) {
        cpu_relax();
        if ((i & 255u) == 0) sched_yield();
    }
}
