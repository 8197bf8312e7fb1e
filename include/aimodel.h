/*
 * libaimodel - an embeddable neural-network library in C.
 * SPDX-License-Identifier: MIT
 * Copyright (c) 2026 The libaimodel authors. See LICENSE.
 */
/**
 * @file aimodel.h
 * @brief The one public header of libaimodel.
 *
 * Five modules sit behind this header, one documentation group each:
 *  - @ref aim_core "core": status codes, version, allocator, random numbers,
 *    thread pools;
 *  - @ref aim_tensor "tensors": float32 row-major arrays of rank 1 to 4;
 *  - @ref aim_layers "layers and models": dense, convolution, pooling,
 *    normalization, recurrent, attention and merge layers, activations,
 *    losses, and the model: a directed acyclic graph of layers that owns
 *    parameters, gradients and scratch, and the workspaces of inference;
 *  - @ref aim_optim "optimizers": SGD, Adam/AdamW and RMSprop over flat
 *    buffers, and gradient clipping;
 *  - @ref aim_serial "serialization": a model and its optimizer's state to
 *    and from memory buffers.
 *
 * The @ref example_programs "example programs" page lists the programs in
 * examples/ that use them, from a one-unit regression to a character-level
 * GPT.
 *
 * Conventions that hold for every function:
 *  - a fallible function returns an ::aim_status, ::AIM_OK (0) on success;
 *    results come back through out-parameters, which are written only on
 *    success;
 *  - nothing in the library prints, exits, aborts or asserts on user input;
 *  - on failure no object is changed, except for its error message
 *    (see aim_model_last_error(), aim_optimizer_last_error(),
 *    aim_workspace_last_error(), aim_tensor_last_error(),
 *    aim_threadpool_last_error()). The rule is the same for every object: the
 *    message is that of the **last failed call** on the object, in words
 *    ("forward: input holds 100 floats; batch 1 of shape (784) needs 784");
 *    a successful call leaves it as it was, and it is "" until a call fails.
 *    A call that takes the object as `const` never writes it;
 *  - every buffer the caller passes comes with its element count, checked
 *    against the model's shapes before anything is read or written: a count
 *    that disagrees is ::AIM_ERR_SHAPE_MISMATCH with both numbers in the
 *    message;
 *  - every element count is a `size_t` and every product of counts is checked
 *    for overflow;
 *  - objects are opaque handles created by `aim_*_create` and released with
 *    the matching `aim_*_free`, which accepts NULL.
 *
 * Thread safety: distinct objects may be used from distinct threads freely.
 * One object may be used from several threads at once only through functions
 * that take it as `const` (for a model: aim_model_predict() with one
 * ::aim_workspace per thread, and the query functions). An ::aim_threadpool
 * may serve several models and workspaces used from several threads: their
 * jobs take turns on it.
 */
#ifndef AIMODEL_H
#define AIMODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @cond INTERNAL */
#if defined(_WIN32)
#define AIM_API
#elif defined(__GNUC__) || defined(__clang__)
#define AIM_API __attribute__((visibility("default")))
#else
#define AIM_API
#endif
/** @endcond */

/**
 * @defgroup aim_core Core: status codes, version, allocator, random numbers, thread pools
 * @brief What every other module builds on: the ::aim_status every fallible
 * call returns (and aim_status_str() to name it), the version macros, the
 * ::aim_allocator a caller may hand to every `aim_*_create` to own the
 * library's memory, the ::aim_rng state object that every random draw comes
 * from (there is no global generator), and the ::aim_threadpool a model or
 * workspace may split its batches over.
 *
 * Nothing here prints or keeps global state: an allocator, a generator and a
 * pool are the caller's objects, passed to the calls that use them.
 * @{
 */

/** Major version: changes when the ABI breaks (it is the soname's number). */
#define AIM_VERSION_MAJOR 1
/** Minor version: changes when features are added compatibly. */
#define AIM_VERSION_MINOR 2
/** Patch version: changes for fixes only. */
#define AIM_VERSION_PATCH 0
/** The version as a string, "MAJOR.MINOR.PATCH". */
#define AIM_VERSION_STRING "1.2.0"
/** The version as one number: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define AIM_VERSION_NUMBER \
    (AIM_VERSION_MAJOR * 10000 + AIM_VERSION_MINOR * 100 + AIM_VERSION_PATCH)

/**
 * @brief The result of every fallible call. 0 is success; every other value
 * names a cause.
 */
typedef enum aim_status {
    AIM_OK = 0,                    /**< Success. */
    AIM_ERR_INVALID_ARGUMENT = 1,  /**< A NULL pointer, a zero size, an unknown enum value. */
    AIM_ERR_SHAPE_MISMATCH = 2,    /**< Sizes or shapes that do not agree. */
    AIM_ERR_OUT_OF_MEMORY = 3,     /**< The allocator returned NULL. */
    AIM_ERR_OVERFLOW = 4,          /**< A size computation would overflow `size_t`. */
    AIM_ERR_UNSUPPORTED = 5,       /**< A valid request this version does not implement. */
    AIM_ERR_NON_FINITE = 6,        /**< A NaN or infinity appeared in a loss, gradient or input. */
    AIM_ERR_CORRUPT_DATA = 7,      /**< A buffer that fails validation (bad magic, checksum, lengths). */
    AIM_ERR_INVALID_STATE = 8,     /**< A call out of order (e.g. backward before forward). */
    AIM_ERR_VERSION = 9            /**< Data written by a newer, incompatible version. */
} aim_status;

/**
 * @brief A short English description of a status code.
 * @param status Any value; unknown values get "unknown status".
 * @return A static string; never NULL. Safe from any thread.
 */
AIM_API const char *aim_status_str(aim_status status);

/**
 * @brief The library's version string, e.g. "1.0.0".
 * @return A static string equal to ::AIM_VERSION_STRING of the build.
 */
AIM_API const char *aim_version(void);

/**
 * @brief The library's version as one number, so a program can compare the
 * header it was compiled with against the library it runs with.
 * @return ::AIM_VERSION_NUMBER of the library's build.
 */
AIM_API uint32_t aim_version_number(void);

/**
 * @brief A caller-supplied allocator. Every object created with it allocates
 * and frees all its memory through it.
 *
 * Pass NULL wherever an `const aim_allocator *` is taken to use the system
 * allocator (malloc, realloc, free). The struct is copied when an object is
 * created, so it need not outlive the call; `context` must outlive every
 * object created with it. Returned blocks must be aligned at least as malloc's
 * are; the library aligns its large buffers to 64 bytes itself.
 */
typedef struct aim_allocator {
    /** Passed unchanged as the first argument of the three functions. */
    void *context;
    /** Returns a block of at least `size` bytes (size > 0), or NULL. */
    void *(*allocate)(void *context, size_t size);
    /** Resizes a block like realloc; returns NULL (leaving `ptr` valid) on failure. */
    void *(*reallocate)(void *context, void *ptr, size_t size);
    /** Frees a block returned by allocate or reallocate; never called with NULL. */
    void (*deallocate)(void *context, void *ptr);
} aim_allocator;

/**
 * @brief A random number generator state (xoshiro256** seeded by splitmix64).
 *
 * The same seed gives the same integer sequence, and the same uniform floats,
 * on every platform. The library has no global random state: everything
 * random (weight initialization, shuffles in examples) takes an ::aim_rng.
 */
typedef struct aim_rng aim_rng;

/**
 * @brief Creates a generator.
 * @param allocator Allocator, or NULL for the system one.
 * @param seed Any value; equal seeds give equal sequences.
 * @param[out] out The new generator; caller frees with aim_rng_free().
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT if `out` is NULL or the allocator lacks a function.
 * @retval AIM_ERR_OUT_OF_MEMORY if allocation failed.
 */
AIM_API aim_status aim_rng_create(const aim_allocator *allocator, uint64_t seed, aim_rng **out);

/**
 * @brief Frees a generator.
 * @param rng The generator, or NULL (then nothing happens).
 */
AIM_API void aim_rng_free(aim_rng *rng);

/**
 * @brief Restarts a generator from a seed.
 * @param rng The generator.
 * @param seed The new seed.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT if `rng` is NULL.
 */
AIM_API aim_status aim_rng_seed(aim_rng *rng, uint64_t seed);

/**
 * @brief Next 64 random bits.
 * @param rng The generator.
 * @param[out] out The value.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL.
 */
AIM_API aim_status aim_rng_next_u64(aim_rng *rng, uint64_t *out);

/**
 * @brief A uniform float in [0, 1) with 24 random bits.
 * @param rng The generator.
 * @param[out] out The value.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL.
 */
AIM_API aim_status aim_rng_uniform(aim_rng *rng, float *out);

/**
 * @brief A uniform integer in [0, bound), without modulo bias.
 * @param rng The generator.
 * @param bound Exclusive upper bound, > 0.
 * @param[out] out The value.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL or bound 0.
 */
AIM_API aim_status aim_rng_below(aim_rng *rng, uint64_t bound, uint64_t *out);

/**
 * @brief A standard normal float (Box-Muller in double precision).
 * @param rng The generator.
 * @param[out] out The value.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL.
 */
AIM_API aim_status aim_rng_normal(aim_rng *rng, float *out);

/**
 * @brief Shuffles `count` 32-bit indices in place (Fisher-Yates); helps hosts
 * draw mini-batches.
 * @param rng The generator.
 * @param indices The array to permute (may be NULL when `count` is 0).
 * @param count Number of indices.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL pointers.
 */
AIM_API aim_status aim_rng_shuffle_u32(aim_rng *rng, uint32_t *indices, size_t count);

/**
 * @brief An opaque thread pool: the threads a model or a workspace may use.
 *
 * The library starts no thread of its own accord: a model runs on the calling
 * thread until it is given a pool with aim_model_set_threadpool() (and a
 * workspace with aim_workspace_set_threadpool()). A pool of N threads is the
 * caller plus N-1 workers; a forward, backward or predict on a large enough
 * batch then splits the batch into N slices, one per thread, and sums the
 * slices' parameter gradients in a fixed order (so the same thread count
 * always gives the same bits; a different count may differ in the last bits).
 *
 * Small batches stay on the calling thread when splitting would cost more
 * than it saves. A pool runs one job at a time: threads that share a pool
 * take turns. The library never changes OpenBLAS's own thread count; when
 * giving a model a pool of more than one thread, run OpenBLAS with one
 * thread (`OPENBLAS_NUM_THREADS=1`, or `openblas_set_num_threads(1)` in the
 * host), or the two kinds of threads compete for the same cores.
 *
 * Worker threads are created with `pthread_create` (their stacks do not come
 * from the allocator); the per-thread scratch the pool keeps does.
 */
typedef struct aim_threadpool aim_threadpool;

/**
 * @brief Creates a pool and starts its worker threads.
 * @param allocator Allocator for the pool and its per-thread scratch, or NULL.
 * @param threads Threads including the caller's: 1 (no workers) to 256, or 0
 * for the number of online CPUs.
 * @param[out] out The pool; caller frees with aim_threadpool_free() after every
 * model and workspace using it is freed or given another pool.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL `out`, incomplete allocator)
 * @retval AIM_ERR_UNSUPPORTED if `threads` exceeds 256.
 * @retval AIM_ERR_OUT_OF_MEMORY if memory or a thread could not be had.
 */
AIM_API aim_status aim_threadpool_create(const aim_allocator *allocator, size_t threads, aim_threadpool **out);

/**
 * @brief Stops the workers and frees the pool.
 * @param pool The pool, or NULL (then nothing happens). No job may be running.
 */
AIM_API void aim_threadpool_free(aim_threadpool *pool);

/**
 * @brief The pool's thread count, the caller's included.
 * @param pool The pool.
 * @return The count; 0 for NULL.
 */
AIM_API size_t aim_threadpool_threads(const aim_threadpool *pool);

/**
 * @brief Sets how much work makes a batch worth splitting.
 *
 * A forward, backward or predict splits its batch into as many slices as the
 * pool has threads, but never into slices whose forward pass does fewer than
 * `multiply_adds` multiply-adds each (estimated from the layers' weights and
 * output sizes); with less, it uses fewer threads or only the caller's. The
 * default, 1,000,000 (about 10-20 microseconds of work), was measured on the
 * seed models: below it the split's fixed costs outweigh the gain. Set it
 * while no model or workspace is running on the pool.
 * @param pool The pool.
 * @param multiply_adds The least work per slice; 0 splits every batch of at
 * least as many samples as threads.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `pool` is NULL.
 */
AIM_API aim_status aim_threadpool_set_min_work(aim_threadpool *pool, uint64_t multiply_adds);

/**
 * @brief The message of the pool's last failure (sizing its per-thread scratch).
 * @param pool The pool.
 * @return A string owned by the pool; "" for NULL.
 */
AIM_API const char *aim_threadpool_last_error(const aim_threadpool *pool);

/** @} */

/**
 * @defgroup aim_tensor Tensors
 * @brief Float32, row-major arrays of rank 1 to ::AIM_MAX_RANK, owning their
 * memory or wrapping the caller's.
 * @{
 */

/** The largest rank a tensor or a layer shape may have. */
#define AIM_MAX_RANK 4

/** @brief An opaque tensor handle. */
typedef struct aim_tensor aim_tensor;

/**
 * @brief Creates a tensor that owns zero-initialized, 64-byte aligned storage.
 * @param allocator Allocator, or NULL for the system one.
 * @param rank Number of dimensions, 1 to ::AIM_MAX_RANK.
 * @param dims `rank` sizes, each > 0.
 * @param[out] out The tensor; caller frees with aim_tensor_free().
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL, rank out of range or a zero dimension.
 * @retval AIM_ERR_OVERFLOW if the element or byte count overflows.
 * @retval AIM_ERR_OUT_OF_MEMORY if allocation failed.
 */
AIM_API aim_status aim_tensor_create(const aim_allocator *allocator, size_t rank, const size_t *dims,
                                     aim_tensor **out);

/**
 * @brief Creates a tensor over caller memory, which it never frees or
 * reallocates. The memory must outlive the tensor.
 * @param allocator Allocator for the handle only, or NULL.
 * @param rank Number of dimensions, 1 to ::AIM_MAX_RANK.
 * @param dims `rank` sizes, each > 0.
 * @param data The caller's memory.
 * @param data_count Floats at `data`: must equal the product of `dims`.
 * @param[out] out The tensor; caller frees with aim_tensor_free().
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_OVERFLOW, AIM_ERR_OUT_OF_MEMORY
 * @retval AIM_ERR_SHAPE_MISMATCH if `data_count` is not the product of `dims`.
 */
AIM_API aim_status aim_tensor_wrap(const aim_allocator *allocator, size_t rank, const size_t *dims,
                                   float *data, size_t data_count, aim_tensor **out);

/**
 * @brief Frees a tensor, and its storage if it owns it.
 * @param tensor The tensor, or NULL (then nothing happens).
 */
AIM_API void aim_tensor_free(aim_tensor *tensor);

/**
 * @brief The number of dimensions.
 * @param tensor The tensor.
 * @return The rank, or 0 if `tensor` is NULL.
 */
AIM_API size_t aim_tensor_rank(const aim_tensor *tensor);

/**
 * @brief One dimension's size.
 * @param tensor The tensor.
 * @param axis The dimension, from 0.
 * @return The size of dimension `axis`, or 0 if `tensor` is NULL or `axis` >= rank.
 */
AIM_API size_t aim_tensor_dim(const aim_tensor *tensor, size_t axis);

/**
 * @brief The number of elements (the product of the dimensions).
 * @param tensor The tensor.
 * @return The count, or 0 if `tensor` is NULL.
 */
AIM_API size_t aim_tensor_size(const aim_tensor *tensor);

/**
 * @brief The elements, row-major, writable.
 * @param tensor The tensor.
 * @return The data, or NULL if `tensor` is NULL.
 */
AIM_API float *aim_tensor_data(aim_tensor *tensor);

/**
 * @brief The elements, row-major, read-only.
 * @param tensor The tensor.
 * @return The data, or NULL if `tensor` is NULL.
 */
AIM_API const float *aim_tensor_data_const(const aim_tensor *tensor);

/**
 * @brief Changes the shape without moving data; the element count must stay.
 * @param tensor The tensor.
 * @param rank New rank, 1 to ::AIM_MAX_RANK.
 * @param dims `rank` new sizes, each > 0.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL/zero/rank;
 * AIM_ERR_SHAPE_MISMATCH if the count differs; AIM_ERR_OVERFLOW.
 */
AIM_API aim_status aim_tensor_reshape(aim_tensor *tensor, size_t rank, const size_t *dims);

/**
 * @brief Sets every element to `value`.
 * @param tensor The tensor.
 * @param value The value.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT if `tensor` is NULL.
 */
AIM_API aim_status aim_tensor_fill(aim_tensor *tensor, float value);

/**
 * @brief Copies `src`'s elements into `dst`; the shapes must be equal.
 * @param dst Destination.
 * @param src Source (may be `dst`).
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL;
 * AIM_ERR_SHAPE_MISMATCH if the shapes differ.
 */
AIM_API aim_status aim_tensor_copy(aim_tensor *dst, const aim_tensor *src);

/**
 * @brief Fills with uniform values in [low, high).
 * @param tensor The tensor.
 * @param rng The generator to draw from.
 * @param low Lower bound.
 * @param high Upper bound.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL, a non-finite
 * bound or low > high.
 */
AIM_API aim_status aim_tensor_rand_uniform(aim_tensor *tensor, aim_rng *rng, float low, float high);

/**
 * @brief Fills with normal values of the given mean and standard deviation.
 * @param tensor The tensor.
 * @param rng The generator to draw from.
 * @param mean Mean.
 * @param stddev Standard deviation, >= 0.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT on NULL, a non-finite
 * parameter or a negative `stddev`.
 */
AIM_API aim_status aim_tensor_rand_normal(aim_tensor *tensor, aim_rng *rng, float mean, float stddev);

/**
 * @brief The message of the last failed call on this tensor ("" if none).
 * @param tensor The tensor.
 * @return A string owned by the tensor, valid until its next call; "" for NULL.
 */
AIM_API const char *aim_tensor_last_error(const aim_tensor *tensor);

/** @} */

/**
 * @defgroup aim_layers Layers, losses and models
 * @brief A model is a directed acyclic graph of layers, with flat parameter
 * and gradient buffers and memory planned once, at compile.
 *
 * **Nodes.** Every layer added is a node, numbered from 0 in the order it was
 * added (its "layer index"). A model input is a node too, named
 * AIM_MODEL_INPUT(k): input 0 has the shape given to aim_model_create(),
 * further inputs come from aim_model_add_input().
 *
 * **Sequential building.** Each `aim_model_add_*` layer reads the output of
 * the *current node* and becomes the current node. The current node starts
 * as input 0, so a chain of `aim_model_add_*` calls builds a sequential model
 * as in earlier versions. aim_model_continue_from() makes any node current,
 * which is how a graph branches; aim_model_add_add() and
 * aim_model_add_concat() merge branches. A node's output may feed any number
 * of layers; its gradient is then the sum of theirs.
 *
 * **Outputs.** By default the model's one output is the last layer added;
 * aim_model_set_outputs() names one or more output nodes, each with a loss
 * weight. Each output gets its own loss (aim_model_loss() with the output's
 * index), the total loss being their weighted sum, and one
 * aim_model_backward() runs over all of them.
 *
 * A training step is:
 * @code
 * aim_model_zero_grad(model);
 * aim_model_forward(model, AIM_MODE_TRAIN, x, x_count, batch);
 * aim_model_loss_sparse(model, 0, labels, batch, &loss);   // or aim_model_loss()
 * aim_model_backward(model, NULL, 0);
 * aim_optimizer_step_model(opt, model, learning_rate);
 * @endcode
 * None of these calls allocates memory.
 *
 * A residual block (the input of the block added to the output of two
 * convolutions):
 * @code
 * size_t skip, y;
 * aim_model_last_node(model, &skip);
 * aim_model_add_conv2d(model, &conv_relu);   // reads skip
 * aim_model_add_conv2d(model, &conv);
 * aim_model_last_node(model, &y);
 * size_t sum[2] = {y, skip};
 * aim_model_add_add(model, sum, 2);
 * aim_model_add_activation(model, AIM_ACT_RELU, 0.0f);
 * @endcode
 * @{
 */

/**
 * @brief Activation functions. Each has its forward and its derivative side
 * by side in src/layers/activation_fn.c.
 */
typedef enum aim_activation {
    AIM_ACT_IDENTITY = 0,   /**< f(x) = x */
    AIM_ACT_RELU = 1,       /**< f(x) = max(x, 0); f'(0) = 0 as in PyTorch. */
    AIM_ACT_LEAKY_RELU = 2, /**< f(x) = x if x > 0 else alpha * x. */
    AIM_ACT_SIGMOID = 3,    /**< f(x) = 1 / (1 + exp(-x)) */
    AIM_ACT_TANH = 4,       /**< f(x) = tanh(x) */
    AIM_ACT_SOFTMAX = 5,    /**< Softmax over the last dimension of each sample. */
    AIM_ACT_GELU = 6        /**< f(x) = x * Phi(x), the exact erf form (PyTorch's default). */
} aim_activation;

/** @brief Initialization of a layer's weights. */
typedef enum aim_init {
    /** Keras' default: kernel U(-l, l), l = sqrt(6 / (fan_in + fan_out)); bias 0. */
    AIM_INIT_GLOROT_UNIFORM = 0,
    /** PyTorch's nn.Linear default: kernel and bias U(-l, l), l = 1 / sqrt(fan_in). */
    AIM_INIT_PYTORCH = 1,
    /** He (Kaiming) normal: kernel N(0, 2 / fan_in); bias 0. */
    AIM_INIT_HE_NORMAL = 2,
    /** All weights and biases 0 (for tests and linear models). */
    AIM_INIT_ZEROS = 3
} aim_init;

/** @brief Whether a forward pass keeps what the backward pass needs. */
typedef enum aim_mode {
    AIM_MODE_TRAIN = 0,    /**< Keep activations for aim_model_backward(). */
    AIM_MODE_INFERENCE = 1 /**< Compute the output only. */
} aim_mode;

/** @brief Loss functions over float targets (see aim_loss() and aim_model_loss()). */
typedef enum aim_loss_kind {
    /** mean((y - t)^2) over all elements (PyTorch MSELoss). */
    AIM_LOSS_MSE = 0,
    /** -mean(t log y + (1 - t) log(1 - y)) on probabilities y, logs clamped at -100 as in PyTorch BCELoss. */
    AIM_LOSS_BCE = 1,
    /** BCE on logits z, computed stably as max(z,0) - z t + log(1 + exp(-|z|)) (BCEWithLogitsLoss). */
    AIM_LOSS_BCE_WITH_LOGITS = 2,
    /** Softmax cross-entropy on logits against probability targets, mean over the batch. */
    AIM_LOSS_SOFTMAX_CROSS_ENTROPY = 3
} aim_loss_kind;

/**
 * @brief Computes a loss and, optionally, its gradient, on plain buffers.
 * @param kind The loss.
 * @param pred Predictions, `batch * features` floats (probabilities for BCE, logits otherwise).
 * @param targets Targets of the same shape.
 * @param batch Number of samples, > 0.
 * @param features Values per sample, > 0.
 * @param[out] loss_out The mean loss.
 * @param[out] grad_out If not NULL, receives d loss / d pred (`batch * features` floats).
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL or zero sizes or an unknown kind.
 * @retval AIM_ERR_OVERFLOW if `batch * features` overflows.
 * @retval AIM_ERR_NON_FINITE if the loss is NaN or infinite; `grad_out` is then unspecified.
 */
AIM_API aim_status aim_loss(aim_loss_kind kind, const float *pred, const float *targets, size_t batch,
                            size_t features, float *loss_out, float *grad_out);

/**
 * @brief Softmax cross-entropy on logits with integer class labels (PyTorch
 * CrossEntropyLoss, Keras sparse categorical cross-entropy from logits),
 * fused and stable; mean over the batch.
 * @param logits `batch * classes` floats.
 * @param labels `batch` labels, each in [0, classes).
 * @param batch Number of samples, > 0.
 * @param classes Number of classes, > 0.
 * @param[out] loss_out The mean loss.
 * @param[out] grad_out If not NULL, receives (softmax - onehot) / batch.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (also for a label out of range),
 * AIM_ERR_OVERFLOW, AIM_ERR_NON_FINITE.
 */
AIM_API aim_status aim_loss_sparse(const float *logits, const int32_t *labels, size_t batch, size_t classes,
                                   float *loss_out, float *grad_out);

/**
 * @brief Applies an activation elementwise (or per row for softmax) on a plain buffer.
 * @param act The activation.
 * @param alpha Slope for leaky relu; ignored otherwise.
 * @param x `rows * cols` inputs.
 * @param[out] y `rows * cols` outputs; may equal `x`.
 * @param rows Rows (softmax normalizes each row).
 * @param cols Columns.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_OVERFLOW
 */
AIM_API aim_status aim_activation_forward(aim_activation act, float alpha, const float *x, float *y,
                                          size_t rows, size_t cols);

/** @brief An opaque model: a graph of layers (see @ref aim_layers). */
typedef struct aim_model aim_model;

/**
 * @brief The node id of model input `k` (0 for the input given to
 * aim_model_create()), for aim_model_continue_from(), aim_model_add_add(),
 * aim_model_add_concat() and aim_model_layer_shape(). Layer nodes are
 * numbered from 0; input ids count down from `SIZE_MAX`, so the two never meet.
 */
#define AIM_MODEL_INPUT(k) ((size_t)-1 - (size_t)(k))

/** The most inputs one merge layer may take, and the most inputs or outputs a model may have. */
#define AIM_MAX_NODE_INPUTS 16

/** @brief Options of a dense (fully connected) layer: y = act(x Wᵀ + b). */
typedef struct aim_dense_config {
    size_t units;              /**< Output features, > 0. */
    aim_activation activation; /**< Fused activation; default ::AIM_ACT_IDENTITY. */
    float alpha;               /**< Leaky relu slope; default 0.01. */
    int32_t use_bias;          /**< Nonzero to add a bias; default 1. */
    aim_init init;             /**< Weight initialization; default ::AIM_INIT_GLOROT_UNIFORM. */
} aim_dense_config;

/**
 * @brief Fills a dense config with the defaults documented on its fields.
 * @param config The config to fill.
 * @param units Output features.
 * @param activation Fused activation.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_dense_config_init(aim_dense_config *config, size_t units, aim_activation activation);

/** @brief Options of aim_model_compile(). */
typedef struct aim_compile_config {
    /** Largest batch any forward call will use; memory is sized for it. > 0. Default 32. */
    size_t max_batch;
    /** Nonzero to compute the gradient with respect to the model input in backward. Default 0. */
    int32_t input_gradient;
    /** Seed of the weight initialization, used when `rng` is NULL. Default 0. */
    uint64_t seed;
    /** Generator used for initialization (advanced), or NULL to use `seed`. Default NULL. */
    aim_rng *rng;
} aim_compile_config;

/**
 * @brief Fills a compile config with the defaults documented on its fields.
 * @param config The config to fill.
 * @retval AIM_OK on success; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_compile_config_init(aim_compile_config *config);

/**
 * @brief Starts a model with the shape of one sample of its first input
 * (node AIM_MODEL_INPUT(0)), which is the current node.
 * @param allocator Allocator for everything the model owns, or NULL.
 * @param rank Rank of one sample, 1 to 3 (1 for features, 2 for a time × features
 * sequence, 3 for C×H×W).
 * @param dims The sample's sizes, each > 0.
 * @param[out] out The model; caller frees with aim_model_free().
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_OVERFLOW, AIM_ERR_OUT_OF_MEMORY
 * @retval AIM_ERR_UNSUPPORTED if one sample has more than INT_MAX floats (BLAS takes int sizes).
 */
AIM_API aim_status aim_model_create(const aim_allocator *allocator, size_t rank, const size_t *dims,
                                    aim_model **out);

/**
 * @brief Frees a model and everything it owns.
 * @param model The model, or NULL (then nothing happens).
 */
AIM_API void aim_model_free(aim_model *model);

/**
 * @brief Appends a dense layer. The input is flattened per sample, so a
 * dense layer may follow any shape.
 * @param model A model not yet compiled.
 * @param config The layer's options (see aim_dense_config_init()).
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL, zero units or an unknown enum.
 * @retval AIM_ERR_INVALID_STATE if the model is already compiled.
 * @retval AIM_ERR_OVERFLOW if the layer's parameter count overflows.
 * @retval AIM_ERR_UNSUPPORTED if `units` exceeds INT_MAX (BLAS takes int sizes).
 * @retval AIM_ERR_OUT_OF_MEMORY if the layer list cannot grow.
 */
AIM_API aim_status aim_model_add_dense(aim_model *model, const aim_dense_config *config);

/**
 * @brief Appends an activation layer (same output shape as its input).
 * @param model A model not yet compiled.
 * @param activation The function; softmax normalizes over the last dimension.
 * @param alpha Slope for leaky relu; ignored otherwise.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_activation(aim_model *model, aim_activation activation, float alpha);

/** @brief How a convolution pads its input. */
typedef enum aim_padding {
    /** Use the config's `pad_top`, `pad_bottom`, `pad_left`, `pad_right`. */
    AIM_PAD_EXPLICIT = 0,
    /** No padding (Keras "valid"). */
    AIM_PAD_VALID = 1,
    /** Keras/TensorFlow "same": output = ceil(input / stride), total padding
     * split evenly with the odd element at the bottom/right. */
    AIM_PAD_SAME = 2
} aim_padding;

/**
 * @brief Options of a 2-D convolution over NCHW input with OIHW weights
 * (PyTorch nn.Conv2d layout, so its weights import directly):
 * Y = act(conv(X, W) + b).
 */
typedef struct aim_conv2d_config {
    size_t filters;            /**< Output channels, > 0 and a multiple of `groups`. */
    size_t kernel_h;           /**< Kernel height, > 0. */
    size_t kernel_w;           /**< Kernel width, > 0. */
    size_t stride_h;           /**< Vertical stride, > 0. Default 1. */
    size_t stride_w;           /**< Horizontal stride, > 0. Default 1. */
    aim_padding padding;       /**< Padding mode. Default ::AIM_PAD_VALID. */
    size_t pad_top;            /**< Rows of zeros above, for ::AIM_PAD_EXPLICIT. */
    size_t pad_bottom;         /**< Rows of zeros below, for ::AIM_PAD_EXPLICIT. */
    size_t pad_left;           /**< Columns of zeros left, for ::AIM_PAD_EXPLICIT. */
    size_t pad_right;          /**< Columns of zeros right, for ::AIM_PAD_EXPLICIT. */
    size_t dilation_h;         /**< Vertical dilation, > 0. Default 1. */
    size_t dilation_w;         /**< Horizontal dilation, > 0. Default 1. */
    size_t groups;             /**< Groups, > 0, dividing input and output channels; in_channels = depthwise. Default 1. */
    aim_activation activation; /**< Fused activation, not softmax. Default as given to aim_conv2d_config_init(). */
    float alpha;               /**< Leaky relu slope. Default 0.01. */
    int32_t use_bias;          /**< Nonzero to add a bias per output channel. Default 1. */
    aim_init init;             /**< Initialization (fans count the kernel's area). Default ::AIM_INIT_GLOROT_UNIFORM. */
} aim_conv2d_config;

/**
 * @brief Fills a conv2d config with the defaults documented on its fields.
 * @param config The config to fill.
 * @param filters Output channels.
 * @param kernel_h Kernel height.
 * @param kernel_w Kernel width.
 * @param activation Fused activation.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_conv2d_config_init(aim_conv2d_config *config, size_t filters, size_t kernel_h,
                                          size_t kernel_w, aim_activation activation);

/**
 * @brief Appends a 2-D convolution. The input must be one C×H×W sample
 * (rank 3). Forward and backward run through im2col and `cblas_sgemm`.
 * @param model A model not yet compiled.
 * @param config The layer's options (see aim_conv2d_config_init()).
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL, zero sizes or unknown enums.
 * @retval AIM_ERR_SHAPE_MISMATCH if the input is not rank 3, the channels do
 * not divide by `groups`, or the dilated kernel is larger than the padded
 * input (the message names the layer and the dimension).
 * @retval AIM_ERR_UNSUPPORTED if a GEMM dimension exceeds INT_MAX (BLAS takes int sizes), or the
 * fused activation is softmax (add an activation layer instead).
 * @retval AIM_ERR_INVALID_STATE, AIM_ERR_OVERFLOW, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_conv2d(aim_model *model, const aim_conv2d_config *config);

/** @brief Options of a 2-D pooling layer (max or average). */
typedef struct aim_pool2d_config {
    size_t kernel_h; /**< Window height, > 0. */
    size_t kernel_w; /**< Window width, > 0. */
    size_t stride_h; /**< Vertical stride, > 0. Default: the kernel height. */
    size_t stride_w; /**< Horizontal stride, > 0. Default: the kernel width. */
    size_t pad_h;    /**< Padding above and below, at most kernel_h / 2. Default 0. */
    size_t pad_w;    /**< Padding left and right, at most kernel_w / 2. Default 0. */
} aim_pool2d_config;

/**
 * @brief Fills a pooling config: a `kernel_h`×`kernel_w` window, stride equal
 * to the window, no padding (PyTorch's and Keras' defaults).
 * @param config The config to fill.
 * @param kernel_h Window height.
 * @param kernel_w Window width.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_pool2d_config_init(aim_pool2d_config *config, size_t kernel_h, size_t kernel_w);

/**
 * @brief Appends a 2-D max pooling layer (PyTorch nn.MaxPool2d, floor mode):
 * padding never wins the max; the gradient goes to the first maximum of
 * each window.
 * @param model A model not yet compiled, whose current shape is C×H×W.
 * @param config The window.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH (input not
 * rank 3, window larger than the padded input, padding over half the window),
 * AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_max_pool2d(aim_model *model, const aim_pool2d_config *config);

/**
 * @brief Appends a 2-D average pooling layer (PyTorch nn.AvgPool2d, floor
 * mode, padding counted in the divisor).
 * @param model A model not yet compiled, whose current shape is C×H×W.
 * @param config The window.
 * @retval As aim_model_add_max_pool2d().
 */
AIM_API aim_status aim_model_add_avg_pool2d(aim_model *model, const aim_pool2d_config *config);

/**
 * @brief Appends a global average pooling layer: C×H×W → C.
 * @param model A model not yet compiled, whose current shape is C×H×W.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH,
 * AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_global_avg_pool2d(aim_model *model);

/**
 * @brief Appends a flatten layer: any sample shape → one dimension.
 * @param model A model not yet compiled.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_flatten(aim_model *model);

/**
 * @brief Adds another model input (for a model with, say, an image and a few
 * numbers). It does not change the current node.
 * @param model A model not yet compiled, with fewer than ::AIM_MAX_NODE_INPUTS inputs.
 * @param rank Rank of one sample, 1 to 3.
 * @param dims The sample's sizes, each > 0.
 * @param[out] node Receives AIM_MODEL_INPUT(k) for the new input k.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE (compiled, or
 * too many inputs), AIM_ERR_OVERFLOW, AIM_ERR_UNSUPPORTED (a sample over INT_MAX floats)
 */
AIM_API aim_status aim_model_add_input(aim_model *model, size_t rank, const size_t *dims, size_t *node);

/**
 * @brief The current node: the last layer added, or the node last given to
 * aim_model_continue_from(); AIM_MODEL_INPUT(0) for a model without layers.
 * @param model The model.
 * @param[out] node The node id.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT
 */
AIM_API aim_status aim_model_last_node(const aim_model *model, size_t *node);

/**
 * @brief Makes `node` the current node: the next `aim_model_add_*` layer
 * reads its output. This is how a graph branches.
 * @param model A model not yet compiled.
 * @param node A layer index or AIM_MODEL_INPUT(k) of an existing node.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (no such node), AIM_ERR_INVALID_STATE (compiled)
 */
AIM_API aim_status aim_model_continue_from(aim_model *model, size_t node);

/**
 * @brief Adds an element-wise sum of the outputs of `count` nodes of one
 * shape (a residual connection); it becomes the current node.
 * @param model A model not yet compiled.
 * @param nodes `count` node ids; a node may appear more than once.
 * @param count 2 to ::AIM_MAX_NODE_INPUTS.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, a count out of range, no
 * such node), AIM_ERR_SHAPE_MISMATCH (shapes differ; the message names the
 * nodes and the dimension), AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_add(aim_model *model, const size_t *nodes, size_t count);

/**
 * @brief Adds a concatenation of the outputs of `count` nodes along one axis
 * of a sample (0 is the first: features of a vector, channels of C×H×W, time
 * of a sequence); the other sizes must agree. It becomes the current node.
 * @param model A model not yet compiled.
 * @param nodes `count` node ids, in the order their parts appear.
 * @param count 2 to ::AIM_MAX_NODE_INPUTS.
 * @param axis The axis of one sample, below the inputs' rank.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH (ranks or
 * other sizes differ, axis out of range), AIM_ERR_INVALID_STATE,
 * AIM_ERR_OVERFLOW, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_concat(aim_model *model, const size_t *nodes, size_t count, size_t axis);

/**
 * @brief Names the model's outputs and their loss weights. Without this call
 * the one output is the last layer added, with weight 1.
 * @param model A model not yet compiled.
 * @param nodes `count` distinct layer indices (not inputs).
 * @param loss_weights `count` finite weights, or NULL for all 1. Output k's
 * loss gradient is scaled by its weight, so one backward minimizes
 * sum_k weight_k * loss_k.
 * @param count 1 to ::AIM_MAX_NODE_INPUTS.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_set_outputs(aim_model *model, const size_t *nodes, const float *loss_weights,
                                         size_t count);

/**
 * @brief The number of model inputs.
 * @param model The model.
 * @return The count (at least 1), or 0 for NULL.
 */
AIM_API size_t aim_model_input_count(const aim_model *model);

/**
 * @brief The number of model outputs: those given to aim_model_set_outputs(),
 * else 1 when the model has a layer.
 * @param model The model.
 * @return The count, or 0 for NULL or a model without layers.
 */
AIM_API size_t aim_model_output_count(const aim_model *model);

/**
 * @brief The node id of output `output` (a layer index).
 * @param model A model with at least one layer.
 * @param output Output index, below aim_model_output_count().
 * @param[out] node The layer index.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT
 */
AIM_API aim_status aim_model_output_node(const aim_model *model, size_t output, size_t *node);

/**
 * @brief Options of a stack of LSTM layers (PyTorch nn.LSTM with
 * batch_first=True): gates i, f, g, o; per stacked layer the parameters are
 * W_ih [4·hidden, in], W_hh [4·hidden, hidden], b_ih [4·hidden], b_hh
 * [4·hidden], in that order, so PyTorch weights import directly. The initial
 * hidden and cell states are zero.
 */
typedef struct aim_lstm_config {
    size_t hidden;            /**< Hidden size, > 0. */
    size_t layers;            /**< Stacked layers, 1 to 16. Default 1. */
    int32_t return_sequences; /**< Nonzero: output [time, hidden]; zero: the last step [hidden]. Default 0. */
    /** ::AIM_INIT_PYTORCH (default): everything U(-1/sqrt(hidden), 1/sqrt(hidden)).
     * ::AIM_INIT_GLOROT_UNIFORM: Glorot kernels, zero biases but 1 for the
     * forget gate of b_ih (Keras' unit_forget_bias). Also HE_NORMAL, ZEROS. */
    aim_init init;
} aim_lstm_config;

/**
 * @brief Fills an LSTM config with the defaults documented on its fields.
 * @param config The config to fill.
 * @param hidden Hidden size.
 * @param layers Stacked layers.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_lstm_config_init(aim_lstm_config *config, size_t hidden, size_t layers);

/**
 * @brief Appends a stack of LSTM layers. The current shape must be one
 * sequence [time, features] (rank 2); the output is [time, hidden] or
 * [hidden]. The forward computes all steps' input projections in one GEMM
 * and one recurrent GEMM per step; the backward is full backpropagation
 * through time.
 * @param model A model not yet compiled.
 * @param config The options (see aim_lstm_config_init()).
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL, a zero size, more than 16 layers or an unknown init.
 * @retval AIM_ERR_SHAPE_MISMATCH if the current shape is not rank 2 (the message names the layer).
 * @retval AIM_ERR_INVALID_STATE, AIM_ERR_OVERFLOW, AIM_ERR_UNSUPPORTED (a GEMM
 * dimension over INT_MAX), AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_lstm(aim_model *model, const aim_lstm_config *config);

/**
 * @brief Sets (or clears) the initial hidden and cell states an LSTM layer
 * starts from in aim_model_forward(). They stay until changed, and apply to
 * forwards of exactly `batch` samples (another batch is refused with
 * ::AIM_ERR_SHAPE_MISMATCH). aim_model_predict() always starts from zero.
 * @param model A compiled model.
 * @param layer Index of an LSTM layer.
 * @param h0 [D·layers, batch, hidden] floats (PyTorch's h_0 layout: layer 0, its reverse direction, layer
 * 1, ...; D = 2 for a bidirectional stack of aim_model_add_rnn(), else 1), or NULL with `c0` NULL to return
 * to zero states.
 * @param h0_count Floats at `h0`: D * layers * batch * hidden (0 with NULL).
 * @param c0 [D·layers, batch, hidden] floats, or NULL with `h0` NULL.
 * @param c0_count Floats at `c0`, as `h0_count`.
 * @param batch The batch they describe, 1 to max_batch.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (also: not an LSTM layer, only one of h0/c0),
 * AIM_ERR_SHAPE_MISMATCH (batch over max_batch, a count that disagrees), AIM_ERR_INVALID_STATE (not compiled),
 * AIM_ERR_NON_FINITE (a NaN or infinity in the states)
 */
AIM_API aim_status aim_model_lstm_set_state(aim_model *model, size_t layer, const float *h0, size_t h0_count,
                                            const float *c0, size_t c0_count, size_t batch);

/**
 * @brief Copies the final hidden and cell states (PyTorch's h_n, c_n) of an
 * LSTM layer after a training forward.
 * @param model A model after aim_model_forward() in ::AIM_MODE_TRAIN.
 * @param layer Index of an LSTM layer.
 * @param[out] h [D·layers, batch, hidden] floats (D as for aim_model_lstm_set_state(); the forward
 * direction's state after the last step, the reverse direction's after the first), or NULL.
 * @param h_count Floats at `h`: D * layers * batch * hidden (ignored for NULL).
 * @param[out] c [D·layers, batch, hidden] floats, or NULL (not both NULL).
 * @param c_count Floats at `c`, as `h_count`.
 * @param batch Must equal the forward's batch.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_lstm_final_state(aim_model *model, size_t layer, float *h, size_t h_count, float *c,
                                              size_t c_count, size_t batch);

/* ---- layers added in 1.1 --------------------------------------------------- */

/** @brief The element type of a model input (see aim_model_set_input_dtype()). */
typedef enum aim_dtype {
    AIM_DTYPE_FLOAT32 = 0, /**< float (the default of every input). */
    AIM_DTYPE_INT32 = 1    /**< int32_t token ids, read only by embedding layers. */
} aim_dtype;

/**
 * @brief Declares what a model input holds. An ::AIM_DTYPE_INT32 input holds
 * token ids that only embedding layers may read; it is fed with
 * aim_model_forward_ids(), aim_model_predict_ids() or the `_typed` calls, and
 * has no gradient. Every id is checked against the table of each embedding
 * that reads it before anything runs.
 * @param model A model not yet compiled.
 * @param input Input index, below aim_model_input_count().
 * @param dtype The element type.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, no such input, unknown dtype),
 * AIM_ERR_INVALID_STATE (compiled, or a layer already reads the input)
 */
AIM_API aim_status aim_model_set_input_dtype(aim_model *model, size_t input, aim_dtype dtype);

/**
 * @brief What a model input holds (see aim_model_set_input_dtype()).
 * @param model The model.
 * @param input Input index, below aim_model_input_count().
 * @param[out] dtype Receives the element type.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT on NULL or no such input.
 */
AIM_API aim_status aim_model_input_dtype(const aim_model *model, size_t input, aim_dtype *dtype);

/**
 * @brief Options of batch normalization (PyTorch nn.BatchNorm1d over
 * (N, C) or (N, C, L), nn.BatchNorm2d over (N, C, H, W)): channels are axis
 * 0 of a sample. Training normalizes with the batch's mean and biased
 * variance over the batch and the other axes, and updates the running mean
 * and unbiased variance: r = (1 - momentum) r + momentum · batch statistic.
 * Inference uses the running statistics. Parameters γ [C] then β [C] (with
 * `affine`); buffers running_mean [C] then running_var [C] (see
 * aim_model_buffers()).
 */
typedef struct aim_batch_norm_config {
    float momentum; /**< In [0, 1]. Default 0.1. */
    float eps;      /**< Added to the variance, > 0. Default 1e-5. */
    int32_t affine; /**< Nonzero: learnable γ (init 1) and β (init 0). Default 1. */
} aim_batch_norm_config;

/**
 * @brief Fills a batch-norm config with the defaults documented on its fields.
 * @param config The config to fill.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_batch_norm_config_init(aim_batch_norm_config *config);

/**
 * @brief Appends batch normalization over the channels (axis 0) of the
 * current value (rank 1 to 3). When a thread pool splits a training batch,
 * the statistics are still the whole batch's: the layer's work is split by
 * channel, so every thread count gives the same bits.
 * @param model A model not yet compiled.
 * @param config The options (see aim_batch_norm_config_init()).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, momentum outside [0, 1], eps <= 0 or not finite),
 * AIM_ERR_SHAPE_MISMATCH (the current node is an int32 input), AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 * @note A training forward with one value per channel (batch 1 of a rank-1
 * input, or of a (C, 1) or (C, 1, 1) one) is refused with
 * ::AIM_ERR_INVALID_ARGUMENT, as in PyTorch; inference takes any batch.
 */
AIM_API aim_status aim_model_add_batch_norm(aim_model *model, const aim_batch_norm_config *config);

/**
 * @brief Appends dropout (PyTorch nn.Dropout): in training each element is
 * zeroed with probability `p` and the others scaled by 1 / (1 - p); in
 * inference it is the identity. Masks come from the model's random stream
 * (aim_model_set_random_seed()), drawn per sample, so a seed gives the same
 * masks at every thread count, and a serialized model resumes the stream.
 * @param model A model not yet compiled.
 * @param p Drop probability in [0, 1).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, p outside [0, 1) or NaN), AIM_ERR_SHAPE_MISMATCH (the
 * current node is an int32 input), AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_dropout(aim_model *model, float p);

/**
 * @brief Options of layer normalization (PyTorch nn.LayerNorm) over the
 * last `normalized_dims` axes of a sample: y = (x - mean) / sqrt(var + eps)
 * · γ + β, with the biased variance. Parameters γ then β, each the size of
 * the normalized axes (with `elementwise_affine`).
 */
typedef struct aim_layer_norm_config {
    size_t normalized_dims;     /**< Trailing axes normalized, 1 to the input's rank. Default 1. */
    float eps;                  /**< > 0. Default 1e-5. */
    int32_t elementwise_affine; /**< Nonzero: learnable γ (init 1) and β (init 0). Default 1. */
} aim_layer_norm_config;

/**
 * @brief Fills a layer-norm config with the defaults documented on its fields.
 * @param config The config to fill.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_layer_norm_config_init(aim_layer_norm_config *config);

/**
 * @brief Appends layer normalization.
 * @param model A model not yet compiled.
 * @param config The options (see aim_layer_norm_config_init()).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH (more axes than the input has),
 * AIM_ERR_INVALID_STATE, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_layer_norm(aim_model *model, const aim_layer_norm_config *config);

/**
 * @brief Options of an embedding table (PyTorch nn.Embedding): weight
 * [num_embeddings, embedding_dim]; id i selects row i.
 */
typedef struct aim_embedding_config {
    size_t num_embeddings; /**< Rows, 1 to INT32_MAX. */
    size_t embedding_dim;  /**< Columns, > 0. */
    int32_t has_padding;   /**< Nonzero: row `padding_idx` starts at zero and gets no gradient. Default 0. */
    size_t padding_idx;    /**< Below num_embeddings, with `has_padding`. */
    /** ::AIM_INIT_PYTORCH (default): N(0, 1) as PyTorch; also GLOROT_UNIFORM, HE_NORMAL, ZEROS. */
    aim_init init;
} aim_embedding_config;

/**
 * @brief Fills an embedding config with the defaults documented on its fields.
 * @param config The config to fill.
 * @param num_embeddings Rows of the table.
 * @param embedding_dim Size of each vector.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_embedding_config_init(aim_embedding_config *config, size_t num_embeddings,
                                             size_t embedding_dim);

/**
 * @brief Appends an embedding that reads an ::AIM_DTYPE_INT32 model input of
 * ids of shape S (rank 1 or 2) and outputs S × embedding_dim. An id outside
 * [0, num_embeddings) makes the forward or predict fail with
 * ::AIM_ERR_INVALID_ARGUMENT naming its position, before anything runs. The
 * backward adds into the rows that were used.
 * @param model A model not yet compiled whose current node is an int32 input.
 * @param config The options (see aim_embedding_config_init()).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH (the input is
 * not an int32 model input, or is rank 3), AIM_ERR_INVALID_STATE, AIM_ERR_OVERFLOW,
 * AIM_ERR_UNSUPPORTED (an output sample over INT_MAX floats), AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_embedding(aim_model *model, const aim_embedding_config *config);

/**
 * @brief Options of multi-head self-attention (PyTorch nn.MultiheadAttention
 * with batch_first, query = key = value = the input). The input is one
 * sequence [time, embed] (rank 2); the output has its shape. Parameters in
 * PyTorch's order: in_proj_weight [3·embed, embed] (W_q, W_k, W_v stacked),
 * in_proj_bias [3·embed], out_proj.weight [embed, embed], out_proj.bias
 * [embed]; without `bias` only the two weights. Each head h of head_dim =
 * embed / num_heads computes softmax(Q_h K_hᵀ / sqrt(head_dim) + mask) V_h;
 * the heads are concatenated and projected by out_proj.
 */
typedef struct aim_attention_config {
    size_t num_heads;  /**< Heads, > 0, dividing the input's embed size. Default 1. */
    int32_t causal;    /**< Nonzero: position i attends to positions <= i only. Default 0. */
    float dropout;     /**< Dropout on the attention weights in training, [0, 1). Default 0. */
    int32_t bias;      /**< Nonzero: in_proj_bias and out_proj.bias. Default 1. */
    /** ::AIM_INIT_PYTORCH (default): Xavier-uniform in_proj_weight, out_proj.weight
     * U(-1/sqrt(embed), 1/sqrt(embed)), zero biases, as PyTorch; also GLOROT_UNIFORM,
     * HE_NORMAL (zero biases), ZEROS. */
    aim_init init;
    uint32_t reserved[8]; /**< Room for options of later versions: zero (set by aim_attention_config_init()). */
} aim_attention_config;

/**
 * @brief Fills an attention config with the defaults documented on its fields.
 * @param config The config to fill.
 * @param num_heads Heads.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_attention_config_init(aim_attention_config *config, size_t num_heads);

/**
 * @brief Appends multi-head self-attention over the current value, a
 * sequence [time, embed]. A training forward keeps per sample the
 * projections Q, K, V (3·time·embed floats), the attention weights
 * (num_heads·time² floats; twice that with dropout, before and after the
 * mask) and the heads' concatenated output (time·embed) for the backward.
 * @param model A model not yet compiled.
 * @param config The options (see aim_attention_config_init()).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, num_heads 0 or not dividing
 * embed, dropout outside [0, 1), an unknown init, a nonzero reserved field),
 * AIM_ERR_SHAPE_MISMATCH (the input is not rank 2, or is an int32 input),
 * AIM_ERR_INVALID_STATE, AIM_ERR_OVERFLOW, AIM_ERR_UNSUPPORTED (sizes over the BLAS limit),
 * AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_attention(aim_model *model, const aim_attention_config *config);

/**
 * @brief Appends a learned positional embedding (GPT-2's wpe): a table
 * [max_positions, embed] whose first `time` rows are added to the current
 * value, a sequence [time, embed]: y[t] = x[t] + wpe[t]. Initialized N(0,
 * 0.02²) as GPT-2; the backward adds into the rows that were used.
 * @param model A model not yet compiled.
 * @param max_positions Rows of the table: the longest context the layer
 * serves, at least the input's time steps.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, max_positions 0),
 * AIM_ERR_SHAPE_MISMATCH (the input is not rank 2, is an int32 input, or is
 * longer than max_positions), AIM_ERR_INVALID_STATE, AIM_ERR_OVERFLOW, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_positional_embedding(aim_model *model, size_t max_positions);

/**
 * @brief Appends a dense layer applied to the last axis of each sample, as
 * PyTorch nn.Linear: an input [..., in] becomes [..., units], every leading
 * position through the same weights (the layout and init of
 * aim_model_add_dense()). On a rank-1 input it is aim_model_add_dense().
 * @param model A model not yet compiled.
 * @param config The options (see aim_dense_config_init()).
 * @retval As aim_model_add_dense().
 */
AIM_API aim_status aim_model_add_linear(aim_model *model, const aim_dense_config *config);

/** @brief A recurrent cell kind (see aim_model_add_rnn()). */
typedef enum aim_rnn_kind {
    AIM_RNN_LSTM = 0, /**< nn.LSTM: gates i, f, g, o; a hidden and a cell state. */
    AIM_RNN_GRU = 1   /**< nn.GRU: gates r, z, n; a hidden state. */
} aim_rnn_kind;

/**
 * @brief Options of a stack of recurrent layers, batch first, in PyTorch's
 * layout: per stacked layer and direction, W_ih [G·hidden, in], W_hh
 * [G·hidden, hidden], b_ih [G·hidden], b_hh [G·hidden] (G = 4 for LSTM, 3 for
 * GRU), the reverse direction's four after the forward's, layer after layer
 * (PyTorch's parameter order, so weights import directly). A bidirectional
 * stack concatenates the directions per step, [forward, reverse]; the layers
 * above read 2·hidden features.
 */
typedef struct aim_rnn_config {
    size_t hidden;            /**< Hidden size, > 0. */
    size_t layers;            /**< Stacked layers, 1 to 16. Default 1. */
    /** Nonzero: output [time, D·hidden] (D = 2 when bidirectional, else 1).
     * Zero: the top layer's final hidden states [D·hidden]: the forward
     * direction's after the last step, then the reverse direction's after
     * the first (PyTorch's cat(h_n[-2], h_n[-1])). Default 0. */
    int32_t return_sequences;
    int32_t bidirectional; /**< Nonzero: a reverse direction per layer. Default 0. */
    /** ::AIM_INIT_PYTORCH (default): U(-1/sqrt(hidden), 1/sqrt(hidden)); also GLOROT_UNIFORM and
     * HE_NORMAL (W_ih with fans (in, G·hidden), W_hh with (hidden, G·hidden), zero biases but, for the
     * LSTM, 1 for the forget gate of b_ih), ZEROS. */
    aim_init init;
} aim_rnn_config;

/**
 * @brief Fills a recurrent config with the defaults documented on its fields.
 * @param config The config to fill.
 * @param hidden Hidden size.
 * @param layers Stacked layers.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_rnn_config_init(aim_rnn_config *config, size_t hidden, size_t layers);

/**
 * @brief Appends a stack of LSTM or GRU layers over the current value, one
 * sequence [time, features] (rank 2). aim_model_add_lstm() is this call with
 * ::AIM_RNN_LSTM and a unidirectional stack.
 * @param model A model not yet compiled.
 * @param kind ::AIM_RNN_LSTM or ::AIM_RNN_GRU.
 * @param config The options (see aim_rnn_config_init()).
 * @retval As aim_model_add_lstm(); AIM_ERR_INVALID_ARGUMENT also for an unknown kind.
 */
AIM_API aim_status aim_model_add_rnn(aim_model *model, aim_rnn_kind kind, const aim_rnn_config *config);

/**
 * @brief Appends a stack of GRU layers: aim_model_add_rnn() with ::AIM_RNN_GRU.
 * @param model A model not yet compiled.
 * @param config The options (see aim_rnn_config_init()).
 * @retval As aim_model_add_rnn().
 */
AIM_API aim_status aim_model_add_gru(aim_model *model, const aim_rnn_config *config);

/**
 * @brief Sets (or clears) the initial hidden state of a GRU layer, as
 * aim_model_lstm_set_state() does for an LSTM.
 * @param model A compiled model.
 * @param layer Index of a GRU layer.
 * @param h0 [D·layers, batch, hidden] floats (PyTorch's h_0, D = 2 when
 * bidirectional), or NULL to return to a zero state.
 * @param h0_count Floats at `h0` (0 with NULL).
 * @param batch The batch it describes, 1 to max_batch.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (also: not a GRU layer), AIM_ERR_SHAPE_MISMATCH,
 * AIM_ERR_INVALID_STATE, AIM_ERR_NON_FINITE
 */
AIM_API aim_status aim_model_gru_set_state(aim_model *model, size_t layer, const float *h0, size_t h0_count,
                                           size_t batch);

/**
 * @brief Copies the final hidden state (PyTorch's h_n) of a GRU layer after a training forward.
 * @param model A model after aim_model_forward() in ::AIM_MODE_TRAIN.
 * @param layer Index of a GRU layer.
 * @param[out] h [D·layers, batch, hidden] floats.
 * @param h_count Floats at `h`.
 * @param batch Must equal the forward's batch.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_gru_final_state(aim_model *model, size_t layer, float *h, size_t h_count,
                                             size_t batch);

/**
 * @brief Options of a 1-D convolution over (C, L) samples with (O, C/groups,
 * K) weights (PyTorch nn.Conv1d layout): Y = act(conv(X, W) + b).
 */
typedef struct aim_conv1d_config {
    size_t filters;            /**< Output channels, > 0 and a multiple of `groups`. */
    size_t kernel;             /**< Kernel length, > 0. */
    size_t stride;             /**< > 0. Default 1. */
    aim_padding padding;       /**< Padding mode. Default ::AIM_PAD_VALID. */
    size_t pad_left;           /**< Zeros before, for ::AIM_PAD_EXPLICIT. */
    size_t pad_right;          /**< Zeros after, for ::AIM_PAD_EXPLICIT. */
    size_t dilation;           /**< > 0. Default 1. */
    size_t groups;             /**< > 0, dividing input and output channels. Default 1. */
    aim_activation activation; /**< Fused activation, not softmax. */
    float alpha;               /**< Leaky relu slope. Default 0.01. */
    int32_t use_bias;          /**< Nonzero to add a bias per output channel. Default 1. */
    aim_init init;             /**< Default ::AIM_INIT_GLOROT_UNIFORM. */
} aim_conv1d_config;

/**
 * @brief Fills a conv1d config with the defaults documented on its fields.
 * @param config The config to fill.
 * @param filters Output channels.
 * @param kernel Kernel length.
 * @param activation Fused activation.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_conv1d_config_init(aim_conv1d_config *config, size_t filters, size_t kernel,
                                          aim_activation activation);

/**
 * @brief Appends a 1-D convolution; the current value must be (C, L) (rank 2).
 * @param model A model not yet compiled.
 * @param config The options (see aim_conv1d_config_init()).
 * @retval As aim_model_add_conv2d(), for rank 2 (the message names the length);
 * AIM_ERR_INVALID_ARGUMENT also for a non-finite `alpha`.
 */
AIM_API aim_status aim_model_add_conv1d(aim_model *model, const aim_conv1d_config *config);

/** @brief Options of 1-D pooling (max or average) over (C, L). */
typedef struct aim_pool1d_config {
    size_t kernel; /**< Window length, > 0. */
    size_t stride; /**< > 0. Default: the kernel. */
    size_t pad;    /**< Padding on both sides, at most kernel / 2. Default 0. */
} aim_pool1d_config;

/**
 * @brief Fills a 1-D pooling config: stride equal to the window, no padding.
 * @param config The config to fill.
 * @param kernel Window length.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_pool1d_config_init(aim_pool1d_config *config, size_t kernel);

/**
 * @brief Appends 1-D max pooling (PyTorch nn.MaxPool1d, floor mode); the current value must be (C, L).
 * @param model A model not yet compiled.
 * @param config The window.
 * @retval As aim_model_add_max_pool2d(), for rank 2.
 */
AIM_API aim_status aim_model_add_max_pool1d(aim_model *model, const aim_pool1d_config *config);

/**
 * @brief Appends 1-D average pooling (nn.AvgPool1d, count_include_pad=True).
 * @param model A model not yet compiled.
 * @param config The window.
 * @retval As aim_model_add_max_pool1d().
 */
AIM_API aim_status aim_model_add_avg_pool1d(aim_model *model, const aim_pool1d_config *config);

/**
 * @brief Appends global average pooling over L: (C, L) to (C).
 * @param model A model not yet compiled.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH (not rank 2), AIM_ERR_INVALID_STATE,
 * AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_model_add_global_avg_pool1d(aim_model *model);

/**
 * @brief Appends global max pooling over L: (C, L) to (C) (the gradient goes to the first maximum).
 * @param model A model not yet compiled.
 * @retval As aim_model_add_global_avg_pool1d().
 */
AIM_API aim_status aim_model_add_global_max_pool1d(aim_model *model);

/**
 * @brief The shape of one output sample of a node, for checking a model as
 * it is built.
 * @param model The model.
 * @param layer Layer index from 0, or AIM_MODEL_INPUT(k) for input k's shape.
 * @param[out] rank The rank, 1 to 3.
 * @param[out] dims Receives `rank` sizes; room for ::AIM_MAX_RANK.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT on NULL or a layer out of range.
 */
AIM_API aim_status aim_model_layer_shape(const aim_model *model, size_t layer, size_t *rank, size_t *dims);

/**
 * @brief Validates the model, allocates its parameter, gradient, activation
 * and scratch memory once, and initializes the weights.
 * @param model A model with at least one layer, not yet compiled.
 * @param config Options, or NULL for the defaults of aim_compile_config_init().
 * @retval AIM_OK on success.
 * @retval AIM_ERR_SHAPE_MISMATCH if a layer's output is used by no layer and
 * is not an output, or an input is used by no layer (the message names it).
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL or a zero `max_batch`.
 * @retval AIM_ERR_INVALID_STATE if already compiled or there are no layers.
 * @retval AIM_ERR_OVERFLOW if a buffer size overflows.
 * @retval AIM_ERR_UNSUPPORTED if `max_batch` exceeds INT_MAX (BLAS takes int sizes).
 * @retval AIM_ERR_OUT_OF_MEMORY if allocation failed; the model is then as before.
 */
AIM_API aim_status aim_model_compile(aim_model *model, const aim_compile_config *config);

/**
 * @brief Runs the forward pass of a one-input model in its own memory.
 * @param model A compiled model with one input.
 * @param mode ::AIM_MODE_TRAIN keeps what backward needs.
 * @param input `batch` samples, each of the input shape, row-major.
 * @param input_count Floats at `input`: must be batch * aim_model_input_size().
 * @param batch Number of samples, 1 to the compiled `max_batch`.
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL, batch 0 or an unknown mode.
 * @retval AIM_ERR_SHAPE_MISMATCH if `batch` exceeds `max_batch`, `input_count`
 * disagrees ("forward: input holds 100 floats; batch 1 of shape (784) needs
 * 784"), or the model has several inputs (use aim_model_forward_multi()).
 * @retval AIM_ERR_INVALID_STATE if the model is not compiled.
 * @note This writes to the model's activation memory. To run one model from
 * several threads, use aim_model_predict().
 */
AIM_API aim_status aim_model_forward(aim_model *model, aim_mode mode, const float *input, size_t input_count,
                                     size_t batch);

/**
 * @brief Runs the forward pass of a model with one or more inputs.
 * @param model A compiled model.
 * @param mode ::AIM_MODE_TRAIN keeps what backward needs.
 * @param inputs One pointer per model input, in input order: `batch` samples of that input's shape.
 * @param input_counts Floats at each `inputs[k]`: batch * that input's sample size.
 * @param n_inputs Must equal aim_model_input_count().
 * @param batch Number of samples, 1 to the compiled `max_batch`.
 * @retval As aim_model_forward().
 */
AIM_API aim_status aim_model_forward_multi(aim_model *model, aim_mode mode, const float *const *inputs,
                                           const size_t *input_counts, size_t n_inputs, size_t batch);

/**
 * @brief Runs the forward pass of a one-input model whose input holds
 * ::AIM_DTYPE_INT32 ids (see aim_model_set_input_dtype()).
 * @param model A compiled model with one int32 input.
 * @param mode ::AIM_MODE_TRAIN keeps what backward needs.
 * @param ids `batch` samples of the input shape.
 * @param ids_count Ids at `ids`: batch * aim_model_input_size().
 * @param batch 1 to the compiled `max_batch`.
 * @retval As aim_model_forward(); AIM_ERR_INVALID_ARGUMENT also for an id
 * outside an embedding's table (the message names its position) and for a
 * float input.
 */
AIM_API aim_status aim_model_forward_ids(aim_model *model, aim_mode mode, const int32_t *ids, size_t ids_count,
                                         size_t batch);

/**
 * @brief Runs the forward pass with every input in its declared type:
 * `inputs[k]` points at floats or at int32 ids, as aim_model_set_input_dtype() set.
 * @param model A compiled model.
 * @param mode ::AIM_MODE_TRAIN keeps what backward needs.
 * @param inputs One pointer per input, in input order.
 * @param input_counts Elements (floats or ids) at each input: batch * that input's sample size.
 * @param n_inputs Must equal aim_model_input_count().
 * @param batch 1 to the compiled `max_batch`.
 * @retval As aim_model_forward_ids().
 */
AIM_API aim_status aim_model_forward_typed(aim_model *model, aim_mode mode, const void *const *inputs,
                                           const size_t *input_counts, size_t n_inputs, size_t batch);

/**
 * @brief One output of the last forward.
 * @param model A model after a successful forward.
 * @param output Output index, below aim_model_output_count() (0 for a one-output model).
 * @param[out] data Points at `batch * size` floats owned by the model (size:
 * that output's floats per sample), valid until the next forward.
 * @param[out] count Receives `batch * size`.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, output out of range),
 * AIM_ERR_INVALID_STATE (no forward yet)
 */
AIM_API aim_status aim_model_output(const aim_model *model, size_t output, const float **data, size_t *count);

/**
 * @brief Computes a loss of one output of the last forward against float
 * targets, and keeps its gradient, scaled by the output's loss weight, for
 * aim_model_backward().
 * @param model A model after a successful forward.
 * @param output Output index (0 for a one-output model).
 * @param kind The loss.
 * @param targets `batch * size` floats, the output's shape.
 * @param targets_count Floats at `targets`; must be the last forward's batch times the output's size.
 * @param[out] loss_out The output's mean loss (not weighted).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH (a count
 * that disagrees), AIM_ERR_INVALID_STATE (no forward yet), AIM_ERR_NON_FINITE
 * (the loss is not finite; no gradient is kept).
 */
AIM_API aim_status aim_model_loss(aim_model *model, size_t output, aim_loss_kind kind, const float *targets,
                                  size_t targets_count, float *loss_out);

/**
 * @brief Softmax cross-entropy of one output of the last forward (logits)
 * against integer labels; keeps its gradient, scaled by the output's loss
 * weight, for aim_model_backward().
 * @param model A model after a successful forward.
 * @param output Output index (0 for a one-output model).
 * @param labels `batch` labels in [0, size), size being the output's floats
 * per sample; or, on an output of rank >= 2 such as a language model's
 * [time, vocab] logits, a label per position: batch · (size / last axis)
 * labels in [0, last axis), each position's softmax over the last axis, the
 * loss their mean (PyTorch's cross_entropy on the flattened positions).
 * @param labels_count Labels at `labels`: the last forward's batch, or that
 * batch times the positions.
 * @param[out] loss_out The mean loss (not weighted).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (also a label out of range; the
 * message gives its position), AIM_ERR_SHAPE_MISMATCH, AIM_ERR_INVALID_STATE, AIM_ERR_NON_FINITE
 */
AIM_API aim_status aim_model_loss_sparse(aim_model *model, size_t output, const int32_t *labels,
                                         size_t labels_count, float *loss_out);

/**
 * @brief Sets the gradient of the loss with respect to one output directly,
 * as a loss would (used as given: the loss weight does not apply).
 * @param model A model after a training forward.
 * @param output Output index.
 * @param grad `batch * size` floats.
 * @param count Floats at `grad`; must be the last forward's batch times the output's size.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_set_output_grad(aim_model *model, size_t output, const float *grad, size_t count);

/**
 * @brief Backpropagates through the last training forward, adding into the
 * gradient buffer (call aim_model_zero_grad() between steps).
 *
 * Each output's gradient is the one kept since the forward by
 * aim_model_loss(), aim_model_loss_sparse() or aim_model_set_output_grad();
 * an output without one contributes nothing, but at least one is needed.
 * @param model A model after a forward in ::AIM_MODE_TRAIN.
 * @param output_grad d loss / d output for a one-output model (`batch * size`
 * floats), or NULL to use the kept gradients.
 * @param count Floats at `output_grad` (0 with NULL).
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT if `model` is NULL.
 * @retval AIM_ERR_SHAPE_MISMATCH if `count` disagrees, or `output_grad` is given to a model with several outputs.
 * @retval AIM_ERR_INVALID_STATE if there was no training forward, or no
 * kept gradient when `output_grad` is NULL.
 */
AIM_API aim_status aim_model_backward(aim_model *model, const float *output_grad, size_t count);

/**
 * @brief The gradient with respect to one model input of the last backward,
 * when compiled with `input_gradient` set.
 * @param model The model.
 * @param input Input index (0 for a one-input model).
 * @param[out] grad Points at `batch * size` floats owned by the model.
 * @param[out] count Receives `batch * size`.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE (not enabled
 * or no backward yet)
 */
AIM_API aim_status aim_model_input_gradient(const aim_model *model, size_t input, const float **grad,
                                            size_t *count);

/**
 * @brief Sets every gradient to zero.
 * @param model A compiled model.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE (not compiled)
 */
AIM_API aim_status aim_model_zero_grad(aim_model *model);

/**
 * @brief The flat parameter buffer: every layer's weights then bias, in layer
 * order; a dense layer's weight is [units, inputs] row-major, as in PyTorch.
 * @param model A compiled model.
 * @param[out] params The buffer, owned by the model; may be written.
 * @param[out] count Number of floats.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_parameters(aim_model *model, float **params, size_t *count);

/**
 * @brief The flat gradient buffer, laid out like the parameters.
 * @param model A compiled model.
 * @param[out] grads The buffer, owned by the model; may be written (e.g. averaged across processes).
 * @param[out] count Number of floats.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_gradients(aim_model *model, float **grads, size_t *count);

/**
 * @brief Where one layer's parameters sit in the flat buffer. For an LSTM
 * or GRU layer `weight_count` covers all its parameters (see
 * ::aim_lstm_config and ::aim_rnn_config for their order) and `bias_count` is 0.
 * @param model A compiled model.
 * @param layer Layer index from 0.
 * @param[out] offset First float of the layer's weights.
 * @param[out] weight_count Number of weight floats.
 * @param[out] bias_count Number of bias floats (after the weights), 0 without bias.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (also for a layer out of range),
 * AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_layer_parameters(const aim_model *model, size_t layer, size_t *offset,
                                              size_t *weight_count, size_t *bias_count);

/**
 * @brief The model's buffers: state that is not trained by gradients (batch
 * norm's running mean and variance), in layer order, each layer's in
 * PyTorch's order. Optimizers never touch them; a training forward updates
 * them; aim_model_predict() only reads them. Serialized with the model.
 * @param model A compiled model.
 * @param[out] buffers Points at the model's buffers (writable, e.g. to import
 * running statistics), or NULL when there are none.
 * @param[out] count Receives their number (0 when none).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE (not compiled)
 */
AIM_API aim_status aim_model_buffers(aim_model *model, float **buffers, size_t *count);

/**
 * @brief Where one layer's buffers lie in aim_model_buffers().
 * @param model A compiled model.
 * @param layer Layer index from 0.
 * @param[out] offset First float of the layer's buffers.
 * @param[out] count Its number of buffer floats (0 for most kinds).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_layer_buffers(const aim_model *model, size_t layer, size_t *offset, size_t *count);

/**
 * @brief Restarts the model's random stream (dropout masks) from `seed`.
 * Compile seeds it from the compile seed (or generator), so without this
 * call a compile seed fixes every mask too. The stream advances once per
 * training forward and is serialized with the model.
 * @param model A compiled model.
 * @param seed The seed.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE (not compiled)
 */
AIM_API aim_status aim_model_set_random_seed(aim_model *model, uint64_t seed);

/**
 * @brief The number of layers.
 * @param model The model.
 * @return The count, or 0 for NULL.
 */
AIM_API size_t aim_model_layer_count(const aim_model *model);

/**
 * @brief Floats per sample of input 0.
 * @param model The model.
 * @return The count, or 0 for NULL.
 */
AIM_API size_t aim_model_input_size(const aim_model *model);

/**
 * @brief Floats per sample of output 0 (the last layer added, unless
 * aim_model_set_outputs() named others).
 * @param model The model.
 * @return The count, or 0 for NULL or a model without layers.
 */
AIM_API size_t aim_model_output_size(const aim_model *model);

/**
 * @brief Bytes the model holds after compile (parameters, gradients,
 * activations, scratch), for budgeting.
 * @param model A compiled model.
 * @param[out] bytes The total.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_memory_size(const aim_model *model, size_t *bytes);

/**
 * @brief The message of the last failed call on this model ("" if none has
 * failed), e.g. which layer and which dimension disagree. Successful calls
 * leave it unchanged.
 * @param model The model.
 * @return A string owned by the model, valid until its next call; "" for NULL.
 */
AIM_API const char *aim_model_last_error(const aim_model *model);

/**
 * @brief Lets the model's forward and backward split large batches over a
 * thread pool (see ::aim_threadpool).
 *
 * May be called before or after aim_model_compile(); on a compiled model it
 * sizes the pool's per-thread scratch now, so no step allocates. Changing the
 * pool discards the last training forward (call aim_model_forward() again
 * before aim_model_backward()).
 * @param model The model.
 * @param pool The pool, or NULL to run on the calling thread again. It must
 * outlive its use by the model.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT
 * @retval AIM_ERR_OUT_OF_MEMORY, AIM_ERR_OVERFLOW if the pool's scratch cannot
 * grow; the model is then unchanged.
 */
AIM_API aim_status aim_model_set_threadpool(aim_model *model, aim_threadpool *pool);

/**
 * @brief An opaque inference workspace: the memory one thread needs to run
 * aim_model_predict() on a shared, read-only model.
 */
typedef struct aim_workspace aim_workspace;

/**
 * @brief Bytes a workspace for `max_batch` samples would take.
 * @param model A compiled model.
 * @param max_batch Largest batch, > 0.
 * @param[out] bytes The size.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE, AIM_ERR_OVERFLOW
 */
AIM_API aim_status aim_workspace_size(const aim_model *model, size_t max_batch, size_t *bytes);

/**
 * @brief Creates an inference workspace for a compiled model.
 * @param model The model it will serve (and any model of identical architecture).
 * @param allocator Allocator, or NULL.
 * @param max_batch Largest batch it will serve, > 0.
 * @param[out] out The workspace; caller frees with aim_workspace_free().
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE, AIM_ERR_OVERFLOW,
 * AIM_ERR_OUT_OF_MEMORY
 * @retval AIM_ERR_UNSUPPORTED if `max_batch` exceeds INT_MAX (BLAS takes int sizes).
 */
AIM_API aim_status aim_workspace_create(const aim_model *model, const aim_allocator *allocator,
                                        size_t max_batch, aim_workspace **out);

/**
 * @brief Frees a workspace.
 * @param workspace The workspace, or NULL (then nothing happens).
 */
AIM_API void aim_workspace_free(aim_workspace *workspace);

/**
 * @brief The message of the last failed aim_model_predict() on this workspace.
 * @param workspace The workspace.
 * @return A string owned by the workspace; "" for NULL.
 */
AIM_API const char *aim_workspace_last_error(const aim_workspace *workspace);

/**
 * @brief Lets aim_model_predict() with this workspace split large batches
 * over a thread pool.
 * @param workspace The workspace.
 * @param model The model it will serve; sizes the pool's per-thread scratch.
 * @param pool The pool, or NULL to run on the calling thread again. It must
 * outlive its use by the workspace.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE (model not compiled)
 * @retval AIM_ERR_OUT_OF_MEMORY, AIM_ERR_OVERFLOW if the pool's scratch cannot
 * grow; the workspace is then unchanged.
 */
AIM_API aim_status aim_workspace_set_threadpool(aim_workspace *workspace, const aim_model *model,
                                                aim_threadpool *pool);

/**
 * @brief Inference on a one-input, one-output model: runs it on `batch`
 * samples, reading the model and writing only to `workspace` and `output`.
 * Many threads may call this on one model at once, each with its own workspace.
 * @param model A compiled model.
 * @param workspace A workspace created for this model's architecture.
 * @param input `batch` samples of the input shape.
 * @param input_count Floats at `input`: batch * aim_model_input_size().
 * @param batch 1 to the workspace's `max_batch`.
 * @param[out] output Room for `batch` samples of the output.
 * @param output_count Floats at `output`: batch * aim_model_output_size().
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_SHAPE_MISMATCH (batch too
 * large, a count that disagrees, a model with several inputs or outputs, or
 * a workspace too small for this model: a workspace serves any model whose
 * planned memory fits in it), AIM_ERR_INVALID_STATE
 */
AIM_API aim_status aim_model_predict(const aim_model *model, aim_workspace *workspace, const float *input,
                                     size_t input_count, size_t batch, float *output, size_t output_count);

/**
 * @brief Inference on any model: as aim_model_predict(), with one buffer per
 * input and per output.
 * @param model A compiled model.
 * @param workspace A workspace created for this model's architecture.
 * @param inputs One pointer per input, in input order.
 * @param input_counts Floats at each input: batch * that input's sample size.
 * @param n_inputs Must equal aim_model_input_count().
 * @param batch 1 to the workspace's `max_batch`.
 * @param[out] outputs One pointer per output, in output order.
 * @param output_counts Floats at each output: batch * that output's sample size.
 * @param n_outputs Must equal aim_model_output_count().
 * @retval As aim_model_predict().
 */
AIM_API aim_status aim_model_predict_multi(const aim_model *model, aim_workspace *workspace,
                                           const float *const *inputs, const size_t *input_counts, size_t n_inputs,
                                           size_t batch, float *const *outputs, const size_t *output_counts,
                                           size_t n_outputs);

/**
 * @brief Inference on a one-input, one-output model whose input holds
 * ::AIM_DTYPE_INT32 ids; otherwise as aim_model_predict().
 * @param model A compiled model.
 * @param workspace A workspace created for this model's architecture.
 * @param ids `batch` samples of the input shape.
 * @param ids_count Ids at `ids`: batch * aim_model_input_size().
 * @param batch 1 to the workspace's `max_batch`.
 * @param[out] output Room for `batch` samples of the output.
 * @param output_count Floats at `output`: batch * aim_model_output_size().
 * @retval As aim_model_predict(); AIM_ERR_INVALID_ARGUMENT also for an id
 * outside an embedding's table (the message names its position).
 */
AIM_API aim_status aim_model_predict_ids(const aim_model *model, aim_workspace *workspace, const int32_t *ids,
                                         size_t ids_count, size_t batch, float *output, size_t output_count);

/**
 * @brief Incremental inference, one position at a time (text generation):
 * feeds position p of `batch` sequences, where p is how many positions this
 * workspace has taken since it was created or since
 * aim_workspace_reset_steps(), and writes position p of the output. Each
 * causal attention layer keeps the keys and values of positions 0 .. p in
 * the workspace, so a step costs O(p), not O(p²), and gives the output of a
 * full aim_model_predict() over the prefix (within float rounding). The
 * model is not written; a step allocates nothing.
 *
 * The model must have one input and one output whose first axis is time
 * (T positions: its context), and every layer must treat positions on
 * their own or causally: embedding, positional embedding, linear,
 * activations other than softmax, layer normalization over the last axis,
 * dropout, add and causal attention. aim_workspace_create() then sets aside
 * max_batch · (2 · T · embed) floats per attention layer for the keys and values.
 * @param model A compiled model.
 * @param workspace A workspace created for this model.
 * @param input One position of each sequence: batch · (aim_model_input_size() / T) floats.
 * @param input_count Floats at `input`.
 * @param batch 1 to max_batch; the same on every step of a sequence.
 * @param[out] output Position p of each sequence's output: batch · (aim_model_output_size() / T) floats.
 * @param output_count Floats at `output`.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL, batch 0, a float call on an
 * input of ids or the other way round, an id outside a table),
 * AIM_ERR_SHAPE_MISMATCH (counts, a batch other than the sequence's),
 * AIM_ERR_INVALID_STATE (not compiled; all T positions taken: reset first),
 * AIM_ERR_UNSUPPORTED (a layer that cannot run one position at a time, named
 * in the message, or a model of several inputs or outputs)
 */
AIM_API aim_status aim_model_predict_step(const aim_model *model, aim_workspace *workspace, const float *input,
                                          size_t input_count, size_t batch, float *output, size_t output_count);

/**
 * @brief aim_model_predict_step() on a model whose input holds
 * ::AIM_DTYPE_INT32 ids: one position's ids of each sequence.
 * @param model A compiled model.
 * @param workspace A workspace created for this model.
 * @param ids batch · (aim_model_input_size() / T) ids.
 * @param ids_count Ids at `ids`.
 * @param batch 1 to max_batch; the same on every step of a sequence.
 * @param[out] output batch · (aim_model_output_size() / T) floats.
 * @param output_count Floats at `output`.
 * @retval As aim_model_predict_step().
 */
AIM_API aim_status aim_model_predict_step_ids(const aim_model *model, aim_workspace *workspace, const int32_t *ids,
                                              size_t ids_count, size_t batch, float *output, size_t output_count);

/**
 * @brief Starts new sequences: the next aim_model_predict_step() feeds position 0.
 * @param workspace A workspace.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `workspace` is NULL.
 */
AIM_API aim_status aim_workspace_reset_steps(aim_workspace *workspace);

/**
 * @brief How many positions the workspace's sequences hold (the position the
 * next aim_model_predict_step() feeds).
 * @param workspace A workspace.
 * @param[out] position The count.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT for NULL.
 */
AIM_API aim_status aim_workspace_step_position(const aim_workspace *workspace, size_t *position);

/**
 * @brief Inference on any model with every input in its declared type
 * (floats or int32 ids); otherwise as aim_model_predict_multi().
 * @param model A compiled model.
 * @param workspace A workspace created for this model's architecture.
 * @param inputs One pointer per input, in input order.
 * @param input_counts Elements at each input: batch * that input's sample size.
 * @param n_inputs Must equal aim_model_input_count().
 * @param batch 1 to the workspace's `max_batch`.
 * @param[out] outputs One pointer per output, in output order.
 * @param output_counts Floats at each output.
 * @param n_outputs Must equal aim_model_output_count().
 * @retval As aim_model_predict_ids().
 */
AIM_API aim_status aim_model_predict_typed(const aim_model *model, aim_workspace *workspace,
                                           const void *const *inputs, const size_t *input_counts, size_t n_inputs,
                                           size_t batch, float *const *outputs, const size_t *output_counts,
                                           size_t n_outputs);

/** @} */

/**
 * @defgroup aim_optim Optimizers
 * @brief State objects that update a flat parameter buffer from a flat
 * gradient buffer. The learning rate is passed to every step so the host can
 * schedule it.
 * @{
 */

/** @brief An opaque optimizer (SGD, Adam or RMSprop). */
typedef struct aim_optimizer aim_optimizer;

/** @brief SGD options, with PyTorch's torch.optim.SGD semantics. */
typedef struct aim_sgd_config {
    float momentum;       /**< Momentum factor, >= 0. Default 0. */
    float dampening;      /**< Dampening of the momentum, in [0, 1]. Default 0. */
    float weight_decay;   /**< L2 penalty added to the gradient, >= 0. Default 0. */
    int32_t nesterov;     /**< Nonzero for Nesterov momentum (needs momentum > 0, dampening 0). Default 0. */
    int32_t check_finite; /**< Nonzero: refuse a step whose gradient has a NaN or infinity. Default 0. */
} aim_sgd_config;

/** @brief Adam options, with PyTorch's torch.optim.Adam / AdamW semantics. */
typedef struct aim_adam_config {
    float beta1;          /**< Default 0.9. */
    float beta2;          /**< Default 0.999. */
    float epsilon;        /**< Default 1e-8 (PyTorch's; Keras uses 1e-7). */
    float weight_decay;   /**< >= 0. Default 0. */
    int32_t decoupled;    /**< Nonzero: AdamW's decoupled decay p -= lr*wd*p; zero: L2 added to the gradient. Default 0. */
    int32_t check_finite; /**< Nonzero: refuse a step whose gradient has a NaN or infinity. Default 0. */
} aim_adam_config;

/**
 * @brief Fills an SGD config with its defaults.
 * @param config The config to fill.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_sgd_config_init(aim_sgd_config *config);

/**
 * @brief Fills an Adam config with its defaults.
 * @param config The config to fill.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_adam_config_init(aim_adam_config *config);

/**
 * @brief Creates an SGD optimizer for `count` parameters.
 * @param allocator Allocator, or NULL.
 * @param config Options, or NULL for the defaults.
 * @param count Number of parameters it will update, > 0.
 * @param[out] out The optimizer; caller frees with aim_optimizer_free().
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (also for out-of-range options),
 * AIM_ERR_OVERFLOW, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_sgd_create(const aim_allocator *allocator, const aim_sgd_config *config, size_t count,
                                  aim_optimizer **out);

/**
 * @brief Creates an Adam (or AdamW) optimizer for `count` parameters.
 * @param allocator Allocator, or NULL.
 * @param config Options, or NULL for the defaults.
 * @param count Number of parameters it will update, > 0.
 * @param[out] out The optimizer; caller frees with aim_optimizer_free().
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_OVERFLOW, AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_adam_create(const aim_allocator *allocator, const aim_adam_config *config, size_t count,
                                   aim_optimizer **out);

/** @brief RMSprop options, with PyTorch's torch.optim.RMSprop semantics:
 * v = alpha v + (1 - alpha) g²; centered: ḡ = alpha ḡ + (1 - alpha) g and
 * the denominator is sqrt(v - ḡ²) + eps; momentum: b = momentum b + g /
 * denominator, p -= lr b; else p -= lr g / denominator. */
typedef struct aim_rmsprop_config {
    float alpha;          /**< Smoothing constant, in [0, 1). Default 0.99. */
    float epsilon;        /**< > 0. Default 1e-8. */
    float momentum;       /**< >= 0. Default 0. */
    int32_t centered;     /**< Nonzero: normalize by the variance estimate. Default 0. */
    float weight_decay;   /**< L2 penalty added to the gradient, >= 0. Default 0. */
    int32_t check_finite; /**< Nonzero: refuse a step whose gradient has a NaN or infinity. Default 0. */
} aim_rmsprop_config;

/**
 * @brief Fills an RMSprop config with its defaults.
 * @param config The config to fill.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT if `config` is NULL.
 */
AIM_API aim_status aim_rmsprop_config_init(aim_rmsprop_config *config);

/**
 * @brief Creates an RMSprop optimizer for `count` parameters.
 * @param allocator Allocator, or NULL.
 * @param config Options, or NULL for the defaults.
 * @param count Number of parameters it will update, > 0.
 * @param[out] out The optimizer; caller frees with aim_optimizer_free().
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT (NULL out, count 0, an option out of range), AIM_ERR_OVERFLOW,
 * AIM_ERR_OUT_OF_MEMORY
 */
AIM_API aim_status aim_rmsprop_create(const aim_allocator *allocator, const aim_rmsprop_config *config,
                                      size_t count, aim_optimizer **out);

/**
 * @brief Frees an optimizer.
 * @param optimizer The optimizer, or NULL (then nothing happens).
 */
AIM_API void aim_optimizer_free(aim_optimizer *optimizer);

/**
 * @brief One update of `params` from `grads`.
 * @param optimizer The optimizer.
 * @param params `count` parameters, updated in place.
 * @param grads `count` gradients (not modified).
 * @param count Must equal the count the optimizer was created for.
 * @param learning_rate Step size, finite and >= 0.
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL or a bad learning rate.
 * @retval AIM_ERR_SHAPE_MISMATCH if `count` differs from the optimizer's.
 * @retval AIM_ERR_NON_FINITE with `check_finite` set, if a gradient is NaN or
 * infinite; nothing is changed.
 */
AIM_API aim_status aim_optimizer_step(aim_optimizer *optimizer, float *params, const float *grads, size_t count,
                                      float learning_rate);

/**
 * @brief aim_optimizer_step() on a model's own parameter and gradient buffers.
 * @param optimizer An optimizer created for aim_model_parameters()' count.
 * @param model A compiled model.
 * @param learning_rate Step size, finite and >= 0.
 * @retval As aim_optimizer_step(), plus AIM_ERR_INVALID_STATE if the model is
 * not compiled.
 */
AIM_API aim_status aim_optimizer_step_model(aim_optimizer *optimizer, aim_model *model, float learning_rate);

/**
 * @brief Resets the optimizer's state (momenta, step count) to that of a new one.
 * @param optimizer The optimizer.
 * @retval AIM_OK; AIM_ERR_INVALID_ARGUMENT on NULL.
 */
AIM_API aim_status aim_optimizer_reset(aim_optimizer *optimizer);

/**
 * @brief The number of steps taken since creation or reset.
 * @param optimizer The optimizer.
 * @return The count, or 0 for NULL.
 */
AIM_API uint64_t aim_optimizer_steps(const aim_optimizer *optimizer);

/**
 * @brief The message of the last failed call on this optimizer ("" if none).
 * @param optimizer The optimizer.
 * @return A string owned by the optimizer; "" for NULL.
 */
AIM_API const char *aim_optimizer_last_error(const aim_optimizer *optimizer);

/**
 * @brief Scales `grads` so their global L2 norm is at most `max_norm`
 * (torch.nn.utils.clip_grad_norm_).
 * @param grads `count` gradients, scaled in place when the norm exceeds `max_norm`.
 * @param count Number of gradients, > 0.
 * @param max_norm Largest allowed norm, finite and > 0.
 * @param[out] norm_out The norm before clipping; may be NULL.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_NON_FINITE (the norm is
 * not finite; nothing is changed)
 */
AIM_API aim_status aim_clip_grad_norm(float *grads, size_t count, float max_norm, float *norm_out);

/** @} */

/**
 * @defgroup aim_serial Serialization
 * @brief Models, and optionally an optimizer's state, to and from memory
 * buffers in the versioned, checksummed format of docs/FORMAT.md. No I/O:
 * the host writes the bytes wherever it likes.
 * @{
 */

/**
 * @brief Bytes aim_model_serialize() will write.
 * @param model A compiled model.
 * @param optimizer Its optimizer, to save its state too (so training resumes
 * exactly), or NULL.
 * @param[out] bytes The size.
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE (not compiled),
 * AIM_ERR_SHAPE_MISMATCH (the optimizer is for another parameter count), AIM_ERR_OVERFLOW
 */
AIM_API aim_status aim_model_serialized_size(const aim_model *model, const aim_optimizer *optimizer, size_t *bytes);

/**
 * @brief Writes the model's architecture, compile options and weights (and
 * the optimizer's state) into a caller buffer. Reads the model only.
 * @param model A compiled model.
 * @param optimizer Its optimizer, or NULL.
 * @param buffer Where to write.
 * @param capacity Bytes available at `buffer`.
 * @param[out] written Bytes written (aim_model_serialized_size()). When
 * `capacity` is too small, it receives the bytes needed (the one case where
 * an out-parameter is written on failure, as snprintf does).
 * @retval AIM_OK, AIM_ERR_INVALID_ARGUMENT, AIM_ERR_INVALID_STATE,
 * AIM_ERR_SHAPE_MISMATCH (capacity too small, or optimizer of another size), AIM_ERR_OVERFLOW
 */
AIM_API aim_status aim_model_serialize(const aim_model *model, const aim_optimizer *optimizer, void *buffer,
                                       size_t capacity, size_t *written);

/**
 * @brief Builds a new compiled model (and optimizer) from a buffer written by
 * aim_model_serialize(), of this format version (2) or of version 1 (written
 * by libaimodel 0.1). Every field is validated; nothing is read past
 * `length`; on failure nothing is allocated.
 * @param allocator Allocator for the new objects, or NULL. Its refusals bound
 * how much memory an untrusted buffer can make the library allocate.
 * @param buffer The bytes.
 * @param length Their count.
 * @param[out] model The model; caller frees with aim_model_free().
 * @param[out] optimizer If not NULL: the saved optimizer (caller frees with
 * aim_optimizer_free()), or NULL when the buffer holds none.
 * @param[out] message If not NULL, receives on failure what was wrong, in
 * words ("truncated: 812 of 4096 payload bytes", "layer 3 (conv2d): kernel
 * height 0"), NUL-terminated and cut to `message_capacity`; "" on success.
 * @param message_capacity Bytes at `message` (256 hold any message).
 * @retval AIM_OK on success.
 * @retval AIM_ERR_INVALID_ARGUMENT on NULL `buffer` or `model`.
 * @retval AIM_ERR_VERSION if written by a newer format version.
 * @retval AIM_ERR_CORRUPT_DATA on a bad magic, checksum, length or field.
 * @retval AIM_ERR_OUT_OF_MEMORY, AIM_ERR_OVERFLOW if the model it describes cannot be allocated.
 */
AIM_API aim_status aim_model_deserialize(const aim_allocator *allocator, const void *buffer, size_t length,
                                         aim_model **model, aim_optimizer **optimizer, char *message,
                                         size_t message_capacity);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* AIMODEL_H */
