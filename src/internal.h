/*
 * Private declarations shared by the files of src/. Nothing here is part of
 * the ABI: only include/aimodel.h is public.
 * SPDX-License-Identifier: MIT
 */
#ifndef AIM_INTERNAL_H
#define AIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "aimodel.h"

/* Every buffer the library carves for float data starts on this boundary, so
 * GEMM kernels and vector loops see cache-line aligned rows. */
#define AIM__ALIGN 64u
/* Hot elementwise loops are compiled for several instruction sets and the
 * best one the CPU has is picked when the library loads (GCC's function
 * multiversioning through an ifunc): AVX2 and AVX-512 do 2-4x the work of
 * the x86-64 baseline per instruction. Results are identical on every path
 * (no fast-math, no FMA contraction across paths). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(AIM_NO_MULTIVERSION)
#define AIM__HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AIM__HOT
#endif

/* Capacity of each object's error message, including the terminating NUL. */
#define AIM__ERR_CAP 256u

/* ---- core.c: allocation, overflow-checked sizes, error messages ---------- */

/* Copies `user` (or the system allocator when NULL) into `out`; fails when a
 * user allocator lacks one of its functions. */
aim_status aim__allocator_resolve(const aim_allocator *user, aim_allocator *out);
void *aim__alloc(const aim_allocator *a, size_t bytes);
void aim__free(const aim_allocator *a, void *p);
/* Allocates `bytes` aligned to AIM__ALIGN; `*raw` receives the pointer to
 * free. Returns NULL on failure or overflow. */
float *aim__alloc_aligned(const aim_allocator *a, size_t bytes, void **raw);

/* *out = a * b, or 0 (leaving *out unchanged) when the product overflows. */
int aim__mul(size_t a, size_t b, size_t *out);
/* *out = a + b, or 0 when the sum overflows. */
int aim__add(size_t a, size_t b, size_t *out);
/* Rounds a float count up to a multiple of AIM__ALIGN bytes; 0 on overflow. */
int aim__round_floats(size_t floats, size_t *out);

/* Formats a message into an object's error buffer (cap AIM__ERR_CAP). */
void aim__set_error(char *buf, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Nonzero when all n values are finite. */
int aim__all_finite(const float *x, size_t n);

/* ---- rng.c --------------------------------------------------------------- */

struct aim_rng {
    uint64_t s[4];         /* xoshiro256** state */
    aim_allocator alloc;   /* how this object was allocated */
};

/* Seeds a generator that lives in caller memory (no allocation). */
void aim__rng_init(struct aim_rng *rng, uint64_t seed);
uint64_t aim__rng_u64(struct aim_rng *rng);
float aim__rng_uniform(struct aim_rng *rng);
float aim__rng_normal(struct aim_rng *rng);

/* ---- activation.c ---------------------------------------------------------- */

int aim__activation_valid(aim_activation act);
/* y = f(x) over rows × cols; y may equal x. Softmax is per row. */
void aim__act_forward(aim_activation act, float alpha, const float *x, float *y, size_t rows, size_t cols);
/* dx = dy ⊙ f'(x) (softmax: the Jacobian-vector product per row). `x` is the
 * pre-activation, `y` = f(x); dx may equal dy. */
void aim__act_backward(aim_activation act, float alpha, const float *x, const float *y, const float *dy,
                       float *dx, size_t rows, size_t cols);

/* ---- loss.c -------------------------------------------------------------- */

int aim__loss_kind_valid(aim_loss_kind kind);
/* Computes the mean loss (in double) and, if grad is not NULL, its gradient.
 * Returns AIM_ERR_NON_FINITE if the loss is not finite, AIM_ERR_INVALID_ARGUMENT
 * for a BCE probability outside [0, 1]. Sizes are already validated. */
aim_status aim__loss(aim_loss_kind kind, const float *pred, const float *targets, size_t batch,
                     size_t features, float *loss_out, float *grad);
/* Returns AIM_ERR_INVALID_ARGUMENT for a label outside [0, classes). */
aim_status aim__loss_sparse(const float *logits, const int32_t *labels, size_t batch, size_t classes,
                            float *loss_out, float *grad);

/* ---- layers: one kind per file ------------------------------------------- */

typedef enum aim__layer_kind {
    AIM__LAYER_DENSE = 0,
    AIM__LAYER_ACTIVATION = 1,
    AIM__LAYER_CONV2D = 2,
    AIM__LAYER_MAX_POOL2D = 3,
    AIM__LAYER_AVG_POOL2D = 4,
    AIM__LAYER_GLOBAL_AVG_POOL2D = 5,
    AIM__LAYER_FLATTEN = 6,
    AIM__LAYER_LSTM = 7
} aim__layer_kind;

/* The most LSTM layers one aim_model_add_lstm() may stack. */
#define AIM__LSTM_MAX_LAYERS 16

/* Window geometry shared by conv2d and pooling. Input C×H×W, output O×Ho×Wo. */
typedef struct aim__window {
    size_t kh, kw;         /* kernel */
    size_t sh, sw;         /* stride */
    size_t dh, dw;         /* dilation */
    size_t pt, pb, pl, pr; /* padding: top, bottom, left, right */
    size_t groups;         /* conv2d only */
} aim__window;

typedef struct aim__layer {
    aim__layer_kind kind;
    size_t in_rank, in_dims[AIM_MAX_RANK], in_size;    /* one sample's input */
    size_t out_rank, out_dims[AIM_MAX_RANK], out_size; /* one sample's output */
    size_t param_offset;     /* first float of this layer in the flat buffers */
    size_t weight_count;     /* weights, then ... */
    size_t bias_count;       /* ... biases, contiguous */
    size_t cache_per_sample; /* floats kept per sample by a training forward */
    size_t scratch_floats;   /* floats of scratch one forward or backward call needs ... */
    size_t scratch_per_sample; /* ... plus this many per sample of the batch */
    size_t lstm_hidden, lstm_layers; /* LSTM: hidden size, stacked layers */
    int lstm_sequences;      /* LSTM: output every step (else the last) */
    aim__window win;         /* conv2d and pooling */
    int conv_keep_cols;      /* conv2d: the training cache keeps the im2col columns */
    aim_activation act;
    float alpha;
    aim_init init;
} aim__layer;

/* The per-layer kernels. `params`/`dparams` point at this layer's own slice
 * of the flat buffers. Forward writes y; when `cache` is not NULL (training)
 * it also keeps what the backward needs. Backward ADDS into dparams, WRITES
 * dx (skipped when dx is NULL), and may overwrite dy. */
void aim__dense_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                        size_t batch);
void aim__dense_backward(const aim__layer *L, const float *params, float *dparams, const float *x,
                         const float *y, const float *cache, float *dy, float *dx, size_t batch);
void aim__dense_init(const aim__layer *L, float *params, struct aim_rng *rng);

/* init.c: fills weights (and biases) by `init`, given the layer's fans. */
void aim__init_weights(aim_init init, float *w, size_t wcount, float *b, size_t bcount, size_t fan_in,
                       size_t fan_out, struct aim_rng *rng);

void aim__activation_layer_forward(const aim__layer *L, const float *x, float *y, size_t batch);
void aim__activation_layer_backward(const aim__layer *L, const float *x, const float *y, const float *dy,
                                    float *dx, size_t batch);

/* conv2d.c: NCHW input, OIHW weights, bias per output channel. `scratch`
 * holds scratch_floats floats. The *_naive kernels are the direct loops the
 * tests compare the im2col + GEMM path against. */
size_t aim__conv2d_scratch_floats(const aim__layer *L);
/* Sets conv_keep_cols (a training forward keeps the im2col columns when
 * they take at most AIM__CONV_COL_CACHE_MAX floats a sample),
 * cache_per_sample and scratch_floats; dims, win, act must be set. */
#define AIM__CONV_COL_CACHE_MAX (256u * 1024u)
void aim__conv2d_setup(aim__layer *L);
/* The cache_per_sample that goes with L's conv_keep_cols. */
size_t aim__conv2d_cache_floats(const aim__layer *L);
void aim__conv2d_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                         float *scratch, size_t batch);
void aim__conv2d_backward(const aim__layer *L, const float *params, float *dparams, const float *x,
                          const float *y, const float *cache, float *dy, float *dx, float *scratch, size_t batch);
void aim__conv2d_forward_naive(const aim__layer *L, const float *params, const float *x, float *y, size_t batch);
void aim__conv2d_backward_naive(const aim__layer *L, const float *params, float *dparams, const float *x,
                                const float *dz, float *dx, size_t batch);
void aim__conv2d_init(const aim__layer *L, float *params, struct aim_rng *rng);

/* pool.c: max, average and global average pooling; flatten is a copy. */
void aim__pool_forward(const aim__layer *L, const float *x, float *y, size_t batch);
void aim__pool_backward(const aim__layer *L, const float *x, const float *dy, float *dx, size_t batch);

/* lstm.c: input (B, T, F) batch first; PyTorch nn.LSTM layout and gate order.
 * The training forward keeps gates, cells and outputs in `cache`; the
 * backward turns the cached gates into their gradients in place. `init` is
 * NULL (zero initial state) or h0 (layers, ldb, H) followed by c0 (layers,
 * ldb, H), already offset to the first of this call's `batch` rows (a worker
 * of a thread pool runs rows b0 .. b0+batch-1 of a batch of ldb).
 * aim__lstm_final_state copies h_T and c_T out of a training cache into
 * (layers, ldb, H) arrays, likewise offset. */
size_t aim__lstm_cache_per_sample(const aim__layer *L);
size_t aim__lstm_scratch_per_sample(const aim__layer *L);
void aim__lstm_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                       float *scratch, const float *init, size_t init_ldb, size_t batch);
void aim__lstm_backward(const aim__layer *L, const float *params, float *dparams, const float *x, float *cache,
                        const float *dy, float *dx, float *scratch, const float *init, size_t init_ldb,
                        size_t batch);
void aim__lstm_final_state(const aim__layer *L, const float *cache, size_t batch, float *h, float *c,
                           size_t ldb);
void aim__lstm_init(const aim__layer *L, float *params, struct aim_rng *rng);

/* ---- threadpool.c --------------------------------------------------------- */

#define AIM__MAX_THREADS 256u
/* The default of aim_threadpool_set_min_work(); see parts_for in model.c. */
#define AIM__DEFAULT_MIN_WORK 1000000u
uint64_t aim__pool_min_work(const aim_threadpool *pool);

/* One part of a parallel job; `worker` runs from 0 (the caller) to the
 * pool's thread count - 1, and a job ignores workers beyond its parts. */
typedef void (*aim__pool_fn)(void *ctx, size_t worker);
/* Grows every worker's arena to at least `floats` (never shrinks). */
aim_status aim__pool_reserve(aim_threadpool *pool, size_t floats);
/* Takes the pool for a sequence of jobs; fills arenas[1 .. threads-1] and
 * returns their size in floats. */
size_t aim__pool_lock(aim_threadpool *pool, float **arenas);
void aim__pool_unlock(aim_threadpool *pool);
/* Runs fn(ctx, w) for every worker and returns when all have finished.
 * Only between aim__pool_lock and aim__pool_unlock. */
void aim__pool_run_locked(aim_threadpool *pool, size_t parts, aim__pool_fn fn, void *ctx);

/* ---- optimizer.c: the state object, shared with serialize.c --------------- */

typedef enum { AIM__OPT_SGD = 0, AIM__OPT_ADAM = 1 } aim__opt_kind;

struct aim_optimizer {
    aim_allocator alloc;
    aim__opt_kind kind;
    size_t count;
    uint64_t steps;
    aim_sgd_config sgd;
    aim_adam_config adam;
    void *raw;
    float *m; /* SGD: momentum buffer (NULL without momentum); Adam: first moment (count) */
    float *v; /* Adam: second moment (count) */
    char err[AIM__ERR_CAP];
};

/* ---- model.c ------------------------------------------------------------- */

/* Used by the optimizer module's aim_optimizer_step_model. */
aim_status aim__model_flat(aim_model *model, float **params, float **grads, size_t *count);

/* What serialize.c reads of a model. */
typedef struct aim__model_view {
    size_t in_rank;
    const size_t *in_dims;
    const aim__layer *layers;
    size_t n_layers;
    int compiled;
    size_t max_batch;
    int input_gradient;
    const float *params;
    size_t n_params;
} aim__model_view;
void aim__model_get_view(const aim_model *model, aim__model_view *view);


#endif
