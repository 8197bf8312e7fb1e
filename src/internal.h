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

/* The integer arguments of the cblas_* calls. Plain int, not OpenBLAS's
 * blasint: the sources then compile against any CBLAS header, also the
 * reference BLAS's cblas.h that Debian's alternatives can put first on the
 * include path (it has no blasint; the Makefile takes OpenBLAS's header and
 * its prerequisite check refuses another). int converts to blasint (int, or
 * long under INTERFACE64) through the prototype. Callers check their sizes
 * against INT_MAX when a layer is added or called. */
#define AIM__BLAS_INT(n) ((int)(n))

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
/* splitmix64's finalizer: a bijective mix of 64 bits, for deriving one
 * stream per (layer, step, sample) from a key (counter-based streams). */
uint64_t aim__mix64(uint64_t x);
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

/* ---- layers: the one interface every kind implements ----------------------
 * A layer kind is one file under src/layers/ that defines one const
 * aim__layer_ops table and lists it in src/layers/registry.c. The model
 * (src/model/), the executor, the thread-pool split and the serializer reach
 * a kind only through that table: none of them switches on the kind. */

/* The shape of one sample of a value (a model input or a layer's output). */
typedef struct aim__shape {
    size_t rank, dims[AIM_MAX_RANK], size;
    uint32_t dtype; /* aim_dtype: a model input may hold int32 ids; layer outputs are float */
} aim__shape;

/* Bytes of a node's kind-specific configuration (each kind's own struct,
 * checked with a static assertion in its file). */
#define AIM__LAYER_CFG_BYTES 192u

struct aim__layer_ops;

/* A node of the model graph: one layer. The fields are those every kind has;
 * a kind's own fields live in `cfg`, as the kind's struct. */
typedef struct aim__layer {
    const struct aim__layer_ops *ops;
    size_t n_in;                       /* inputs it reads */
    size_t in[AIM_MAX_NODE_INPUTS];    /* their node ids (a layer index or AIM_MODEL_INPUT(k)) */
    size_t in_rank, in_dims[AIM_MAX_RANK], in_size;    /* one sample of input 0 */
    size_t out_rank, out_dims[AIM_MAX_RANK], out_size; /* one output sample */
    size_t param_offset;       /* first float of this layer in the flat buffers */
    size_t weight_count;       /* weights, then ... */
    size_t bias_count;         /* ... biases, contiguous */
    size_t cache_per_sample;   /* floats a training forward keeps per sample */
    size_t scratch_floats;     /* floats of scratch one forward or backward call needs ... */
    size_t scratch_per_sample; /* ... plus this many per sample of the batch */
    size_t state_per_sample;   /* floats of an initial state per sample (an LSTM's h0, c0), 0 for none */
    size_t cache_floats;       /* floats a training forward keeps for the whole batch (batch statistics) */
    size_t buffer_count;       /* floats of model state that is not a parameter (running statistics) */
    size_t buffer_offset;      /* set by compile: first of them in the model's buffers */
    size_t step_state_per_sample;   /* floats a sequence keeps between steps (attention's keys and values) */
    size_t step_scratch_per_sample; /* floats of scratch a step needs per sample (ops->step only) */
    unsigned char dx_mode[AIM_MAX_NODE_INPUTS]; /* set by compile: AIM__DX_* per input */
    /* compile's memory plan of this node's gradient [0] and workspace value
     * [1]: size, lifetime [first, last] in steps, and the offset it got */
    struct aim__live {
        size_t size, first, last, off;
        int placed;
    } live[2];
    int grad_seen; /* compile: a later layer (or a loss) already writes its gradient */
    _Alignas(max_align_t) unsigned char cfg[AIM__LAYER_CFG_BYTES];
} aim__layer;

/* A kind's configuration, read or written through its node. */
#define AIM__CFG(type, L) ((const type *)(const void *)(L)->cfg)
#define AIM__CFG_MUT(type, L) ((type *)(void *)(L)->cfg)

/* How a backward hands a layer the gradient of input j: none wanted (a model
 * input without input_gradient), written (the first consumer in backward
 * order) or added (later consumers write a temporary the executor adds). */
enum { AIM__DX_NONE = 0, AIM__DX_WRITE = 1, AIM__DX_ADD = 2 };

/* One forward call on rows b0 .. b0 + batch - 1 of a batch; every pointer
 * already points at this call's first row. A model input of int32 ids
 * arrives in x as its 4-byte words (read them with memcpy). */
typedef struct aim__fwd {
    const float *const *x;  /* n_in inputs, (batch, in size) each */
    float *y;               /* (batch, out_size) */
    float *cache;           /* (batch, cache_per_sample), NULL in inference */
    float *scratch;         /* scratch_floats + batch * scratch_per_sample */
    const float *params;    /* this layer's parameters */
    const float *state;     /* the initial state of the whole batch (kind's layout), or NULL for zero */
    size_t state_ldb, b0;   /* the batch `state` is laid out for, and this call's first row in it */
    size_t batch;
    int train;              /* a training forward (batch statistics, dropout masks) */
    const float *buffers;   /* this layer's buffers (buffer_count) */
    float *buffers_out;     /* the same, writable, in a training forward only (else NULL) */
    float *batch_cache;     /* cache_floats floats kept for the backward, training only */
    uint64_t random;        /* this layer's key for this training forward: draw per sample from
                               aim__mix64(random ^ aim__mix64(b0 + i)) */
    size_t part, parts;     /* a batch_coupled kind in training: the whole batch, part `part` of
                               `parts` (split its channels); otherwise 0 of 1 */
} aim__fwd;

/* One backward call: ADDS into dparams, WRITES dx[j] (skipped when NULL),
 * may overwrite dy and the cache. */
typedef struct aim__bwd {
    const float *const *x;
    const float *y;
    float *cache;
    float *dy;
    float *const *dx;
    const float *params;
    float *dparams;
    float *scratch;
    const float *state;
    size_t state_ldb, b0;
    size_t batch;
    const float *buffers;
    float *batch_cache;
    size_t part, parts; /* as in aim__fwd */
} aim__bwd;

enum { AIM__STEP_NO = 0, AIM__STEP_POSITIONWISE = 1, AIM__STEP_OWN = 2 };
/* can_step of the kinds that are always position-wise (registry.c). */
int aim__step_positionwise(const aim__layer *L);

/* One step of incremental inference: position `pos` of `batch` sequences.
 * x[j] and y hold one position per sequence, (batch, that position's size). */
typedef struct aim__step {
    const float *const *x;
    float *y;
    const float *params;
    float *state;   /* (batch, step_state_per_sample): what the sequences keep between steps */
    float *scratch; /* batch * step_scratch_per_sample floats */
    size_t pos, batch;
} aim__step;

/* The serializer's byte streams (src/serialization/serialize.c). A reader
 * never reads past its end: a short read sets `fail` and returns zeros. */
typedef struct aim__writer {
    unsigned char *p; /* NULL: only count */
    size_t n;
} aim__writer;
typedef struct aim__reader {
    const unsigned char *p;
    size_t n, pos;
    int fail;
    uint32_t version; /* the format version being read (a kind's record may grow with it) */
} aim__reader;
void aim__put_u32(aim__writer *w, uint32_t v);
void aim__put_u64(aim__writer *w, uint64_t v);
void aim__put_f32(aim__writer *w, float f);
uint32_t aim__get_u32(aim__reader *r);
uint64_t aim__get_u64(aim__reader *r);
float aim__get_f32(aim__reader *r);
/* A u64 that must fit size_t (else the reader fails). */
size_t aim__get_size(aim__reader *r);
/* A 0/1 flag; anything else fails the reader (one encoding per model). */
int32_t aim__get_flag(aim__reader *r);

typedef struct aim__layer_ops {
    const char *name;  /* "dense", as in messages and docs/FORMAT.md */
    uint32_t code;     /* its kind code in the format; never reused */
    size_t min_inputs, max_inputs;
    /* Validates the configuration in L->cfg against the input shapes and
     * sets the output shape and every size above (in_* are already set from
     * in[0]). On failure writes a message (AIM__ERR_CAP bytes, without the
     * "layer i (kind): " prefix the caller adds) and returns the status. */
    aim_status (*setup)(aim__layer *L, const aim__shape *in, size_t n_in, char *msg);
    void (*init)(const aim__layer *L, float *params, struct aim_rng *rng); /* NULL: no parameters */
    void (*forward)(const aim__layer *L, const aim__fwd *a);
    void (*backward)(const aim__layer *L, const aim__bwd *a);
    /* Forward multiply-adds of one sample: how much work a slice carries. */
    double (*macs)(const aim__layer *L);
    /* The configuration's record in the format (after the kind code and the
     * inputs); NULL for a kind without fields. read fills L->cfg only; the
     * model then calls setup, which validates it. */
    void (*write)(const aim__layer *L, aim__writer *w);
    void (*read)(aim__reader *r, aim__layer *L);
    /* Fills the layer's buffers at compile (running mean 0, variance 1); NULL: none. */
    void (*init_buffers)(const aim__layer *L, float *buffers);
    /* Checks a forward or predict call before anything runs (batch 1 in a
     * batch-norm training step, ids outside an embedding's table); x[j] is
     * the whole batch of input j when it is a model input, else NULL. NULL: nothing to check. */
    aim_status (*check)(const aim__layer *L, const float *const *x, size_t batch, int train, char *msg);
    /* A training forward and backward need the whole batch at once (batch
     * statistics): the executor calls them once per worker with the whole
     * batch and part/parts, and the kind splits its channels. Such a kind
     * may use scratch_floats only (no scratch_per_sample): a worker's arena
     * is sized for a slice, not for the whole batch. */
    int batch_coupled;
    int reads_ids; /* it may read int32 model inputs (embedding); no other kind may */
    /* Incremental inference (aim_model_predict_step) over the first axis of
     * the node's values, time. can_step(L) is AIM__STEP_POSITIONWISE when
     * output position t depends on input position t alone (the executor then
     * runs forward on a copy of the node whose first axis is 1),
     * AIM__STEP_OWN when the kind's `step` runs it (it needs the position or
     * earlier positions: causal attention), 0 when the node cannot step.
     * NULL: 0. */
    int (*can_step)(const aim__layer *L);
    void (*step)(const aim__layer *L, const aim__step *a);
} aim__layer_ops;

/* src/layers/registry.c: every kind, found by its format code. */
const aim__layer_ops *aim__layer_by_code(uint32_t code);

extern const aim__layer_ops aim__dense_ops, aim__activation_ops, aim__conv2d_ops, aim__max_pool2d_ops,
    aim__avg_pool2d_ops, aim__global_avg_pool2d_ops, aim__flatten_ops, aim__lstm_ops, aim__add_ops,
    aim__concat_ops, aim__batch_norm_ops, aim__dropout_ops, aim__layer_norm_ops, aim__embedding_ops, aim__gru_ops,
    aim__conv1d_ops, aim__max_pool1d_ops, aim__avg_pool1d_ops, aim__global_avg_pool1d_ops,
    aim__global_max_pool1d_ops, aim__attention_ops, aim__pos_embedding_ops, aim__linear_ops;

/* A message that names the dimension: "(784)", "(1, 28, 28)". */
void aim__shape_str(const aim__shape *s, char *buf, size_t cap);
/* A node id in words: "layer 3", "model input 1". */
void aim__node_id_str(size_t id, char *buf, size_t cap);

/* ---- the kinds' own configurations and kernels ---------------------------
 * Declared here for the white-box tests and benchmarks that call a kernel on
 * a hand-built node; only the kind's own file reads these fields. */

/* Window geometry shared by conv2d and pooling. Input C×H×W, output O×Ho×Wo. */
typedef struct aim__window {
    size_t kh, kw;         /* kernel */
    size_t sh, sw;         /* stride */
    size_t dh, dw;         /* dilation */
    size_t pt, pb, pl, pr; /* padding: top, bottom, left, right */
    size_t groups;         /* conv2d only */
} aim__window;

/* Output length of one spatial axis, (n + pa + pb - d (k - 1) - 1) / s + 1;
 * writes a message naming `axis` and fails when the dilated kernel exceeds
 * the padded input or a size overflows. */
aim_status aim__window_out_len(const char *axis, size_t n, size_t k, size_t s, size_t d, size_t pa, size_t pb,
                               size_t *out, char *msg);

typedef struct aim__dense_cfg {
    size_t units;
    aim_activation act;
    float alpha;
    int32_t use_bias;
    aim_init init;
    int32_t last_axis; /* linear (kind 22): over the last axis of each sample, each leading position a row */
} aim__dense_cfg;
void aim__dense_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                        size_t batch);
void aim__dense_backward(const aim__layer *L, const float *params, float *dparams, const float *x,
                         const float *y, const float *cache, float *dy, float *dx, size_t batch);

typedef struct aim__activation_cfg {
    aim_activation act;
    float alpha;
} aim__activation_cfg;

/* init.c: fills weights (and biases) by `init`, given the layer's fans. */
void aim__init_weights(aim_init init, float *w, size_t wcount, float *b, size_t bcount, size_t fan_in,
                       size_t fan_out, struct aim_rng *rng);
/* Nonzero for a known aim_init value. */
int aim__init_valid(aim_init init);

/* conv2d.c: NCHW input, OIHW weights, bias per output channel. `scratch`
 * holds scratch_floats floats. The *_naive kernels are the direct loops the
 * tests compare the im2col + GEMM path against. */
typedef struct aim__conv2d_cfg {
    size_t filters;
    aim__window win;
    aim_padding padding;  /* VALID or EXPLICIT as in `win`; SAME until setup resolves it into `win` */
    aim_activation act;
    float alpha;
    int32_t use_bias;
    aim_init init;
    int keep_cols;        /* set by setup: the training cache keeps the im2col columns */
} aim__conv2d_cfg;
size_t aim__conv2d_scratch_floats(const aim__layer *L);
/* Sets keep_cols (a training forward keeps the im2col columns when they
 * take at most AIM__CONV_COL_CACHE_MAX floats a sample), cache_per_sample
 * and scratch_floats; dims, win, act must be set. */
#define AIM__CONV_COL_CACHE_MAX (256u * 1024u)
void aim__conv2d_setup(aim__layer *L);
/* The cache_per_sample that goes with L's keep_cols. */
size_t aim__conv2d_cache_floats(const aim__layer *L);
void aim__conv2d_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                         float *scratch, size_t batch);
void aim__conv2d_backward(const aim__layer *L, const float *params, float *dparams, const float *x,
                          const float *y, const float *cache, float *dy, float *dx, float *scratch, size_t batch);
void aim__conv2d_forward_naive(const aim__layer *L, const float *params, const float *x, float *y, size_t batch);
void aim__conv2d_backward_naive(const aim__layer *L, const float *params, float *dparams, const float *x,
                                const float *dz, float *dx, size_t batch);

/* pool2d.c: max and average pooling; global_avg_pool2d.c, flatten.c. */
typedef struct aim__pool2d_cfg {
    aim__window win;
    int is_max;
} aim__pool2d_cfg;
void aim__pool_forward(const aim__layer *L, const float *x, float *y, size_t batch);
void aim__pool_backward(const aim__layer *L, const float *x, const float *dy, float *dx, size_t batch);

/* lstm.c: input (B, T, F) batch first; PyTorch nn.LSTM layout and gate order.
 * The training forward keeps gates, cells and outputs in `cache`; the
 * backward turns the cached gates into their gradients in place. `init` is
 * NULL (zero initial state) or h0 (D·layers, ldb, H) followed by c0
 * (D·layers, ldb, H), D = 2 when bidirectional, PyTorch's order (layer 0
 * forward, layer 0 reverse, ...), already offset to the first of this call's
 * `batch` rows (a worker of a thread pool runs rows b0 .. b0+batch-1 of a
 * batch of ldb). aim__lstm_final_state copies h_n and c_n out of a training
 * cache into (D·layers, ldb, H) arrays, likewise offset. */
#define AIM__LSTM_MAX_LAYERS 16
typedef struct aim__lstm_cfg {
    size_t hidden, layers;
    int sequences; /* output every step (else the last) */
    aim_init init;
    int bidirectional; /* a reverse direction per layer (format v3) */
} aim__lstm_cfg;
/* gru.c: the same options (aim_rnn_config); gates r, z, n; PyTorch nn.GRU
 * layout. The kernels take what the LSTM's do, with h0 (D·layers, ldb, H)
 * alone as `init` and h_n alone out of aim__gru_final_state. */
typedef aim__lstm_cfg aim__gru_cfg;
size_t aim__gru_scratch_per_sample(const aim__layer *L);
void aim__gru_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                      float *scratch, const float *init, size_t init_ldb, size_t batch);
void aim__gru_backward(const aim__layer *L, const float *params, float *dparams, const float *x, float *cache,
                       const float *dy, float *dx, float *scratch, const float *init, size_t init_ldb, size_t batch);
void aim__gru_final_state(const aim__layer *L, const float *cache, size_t batch, float *h, size_t ldb);
/* rnn.c: validates an LSTM or GRU stack (L->cfg) against its input and sets
 * the sizes both share: weight_count (bias_count 0), the output shape,
 * cache_per_sample = layers·D·T·H·cache_per_unit, state_per_sample =
 * states·layers·D·H. `gates` is 4 or 3. The kind's scratch stays below
 * T (gates + 2D) H + 2 T max(F, D·H) + 4 H floats a sample, which it checks. */
aim_status aim__rnn_setup(aim__layer *L, const aim__shape *in, size_t gates, size_t cache_per_unit, size_t states,
                          char *msg);
/* Both kinds' record (u64 hidden, layers; u32 return_sequences, init,
 * bidirectional, the last from format 3 on), work per sample, and where a
 * slice's rows start in a state block laid out for state_ldb rows. */
void aim__rnn_write(const aim__layer *L, aim__writer *w);
void aim__rnn_read(aim__reader *r, aim__layer *L);
double aim__rnn_macs(const aim__layer *L);
const float *aim__rnn_state_at(const aim__layer *L, const float *state, size_t b0);
size_t aim__lstm_cache_per_sample(const aim__layer *L);
size_t aim__lstm_scratch_per_sample(const aim__layer *L);
void aim__lstm_forward(const aim__layer *L, const float *params, const float *x, float *y, float *cache,
                       float *scratch, const float *init, size_t init_ldb, size_t batch);
void aim__lstm_backward(const aim__layer *L, const float *params, float *dparams, const float *x, float *cache,
                        const float *dy, float *dx, float *scratch, const float *init, size_t init_ldb,
                        size_t batch);
void aim__lstm_final_state(const aim__layer *L, const float *cache, size_t batch, float *h, float *c,
                           size_t ldb);

/* batch_norm.c: channels C = in_dims[0], spatial = in_size / C. */
typedef struct aim__batch_norm_cfg {
    float momentum, eps;
    int32_t affine;
} aim__batch_norm_cfg;

/* dropout.c */
typedef struct aim__dropout_cfg {
    float p;
} aim__dropout_cfg;

/* layer_norm.c: normalizes groups of the last normalized_dims axes. */
typedef struct aim__layer_norm_cfg {
    size_t normalized_dims;
    float eps;
    int32_t affine;
} aim__layer_norm_cfg;

/* embedding.c */
typedef struct aim__embedding_cfg {
    size_t num, dim;
    int32_t has_padding;
    size_t padding_idx;
    aim_init init;
} aim__embedding_cfg;

/* attention.c: multi-head self-attention over (T, E); head_dim = E / heads. */
typedef struct aim__attention_cfg {
    size_t heads;
    int32_t causal;
    float dropout;
    int32_t bias;
    aim_init init;
    int32_t reserved_set; /* the builder saw a nonzero reserved field (never in a record) */
} aim__attention_cfg;

/* pos_embedding.c: a table [max_positions, E] added to (T, E). */
typedef struct aim__pos_embedding_cfg {
    size_t max_positions;
} aim__pos_embedding_cfg;

/* conv1d.c and pool1d.c run the 2-D kernels on (C, 1, L): their nodes keep
 * an aim__conv2d_cfg / aim__pool2d_cfg with a height-1 window. */

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

typedef enum { AIM__OPT_SGD = 0, AIM__OPT_ADAM = 1, AIM__OPT_RMSPROP = 2 } aim__opt_kind;

struct aim_optimizer {
    aim_allocator alloc;
    aim__opt_kind kind;
    size_t count;
    uint64_t steps;
    aim_sgd_config sgd;
    aim_adam_config adam;
    aim_rmsprop_config rmsprop;
    void *raw;
    float *m; /* SGD: momentum buffer (NULL without momentum); Adam: first moment (count);
                 RMSprop: momentum buffer (NULL without momentum) */
    float *v; /* Adam: second moment (count); RMSprop: square average (count) */
    float *g; /* RMSprop centered: gradient average (count), else NULL */
    char err[AIM__ERR_CAP];
};

/* ---- src/model/: the graph container, compile, the executor ------------- */

/* Used by the optimizer module's aim_optimizer_step_model. */
aim_status aim__model_flat(aim_model *model, float **params, float **grads, size_t *count);

/* Rows [*b0, *b0 + *nb) of a batch cut into `parts` near-equal slices. */
void aim__split(size_t batch, size_t parts, size_t w, size_t *b0, size_t *nb);

/* Appends a node of kind `ops` reading `in` (n_in node ids; NULL: the
 * current node) with the configuration `cfg` (cfg_bytes of the kind's
 * struct): runs the kind's setup and makes it the current node. Used by the
 * builders of every kind and by the deserializer. */
aim_status aim__model_add_node(aim_model *m, const aim__layer_ops *ops, const void *cfg, size_t cfg_bytes,
                               const size_t *in, size_t n_in);

/* A kind's view of one of its nodes in a compiled model, for the kind's own
 * public calls (an LSTM's states): checks that `layer` is of kind `ops`
 * (else writes the model's message, prefixed by `what`). */
typedef struct aim__node_state {
    const aim__layer *L;
    float *state;          /* max_batch * state_per_sample floats: the state as set */
    size_t *state_batch;   /* the batch it was set for, 0 for a zero state */
    const float *cache;    /* the last training forward's cache, NULL if none */
    size_t batch, parts;   /* that forward's batch and its slices */
    size_t max_batch;
    char *err;
} aim__node_state;
aim_status aim__model_node_state(aim_model *m, size_t layer, const aim__layer_ops *ops, const char *what,
                                 aim__node_state *out);

/* What serialize.c reads of a model. */
typedef struct aim__model_view {
    size_t n_inputs;
    const aim__shape *inputs;
    const aim__layer *layers;
    size_t n_layers;
    size_t n_outputs;
    const size_t *outputs;
    const float *loss_weights;
    int compiled;
    size_t max_batch;
    int input_gradient;
    const float *params;
    size_t n_params;
    const float *buffers;
    size_t n_buffers;
    uint64_t random_key, random_step; /* the random stream */
} aim__model_view;
void aim__model_get_view(const aim_model *model, aim__model_view *view);
/* The deserializer restores the random stream it read. */
void aim__model_set_random(aim_model *model, uint64_t key, uint64_t step);

/* Bytes the compile plan gives gradients (training) and a workspace's
 * activations (inference, per max_batch), against one buffer per value. */
typedef struct aim__plan_stats {
    size_t grad_planned, grad_naive;   /* floats */
    size_t infer_planned, infer_naive; /* floats per sample */
} aim__plan_stats;
void aim__model_plan_stats(const aim_model *model, aim__plan_stats *out);

#endif
