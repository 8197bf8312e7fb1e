/* Tests of serialization (src/serialization/serialize.c, docs/FORMAT.md).
 *
 *  1. Round trips of every layer kind and option (dense with each init, with
 *     and without bias, each activation as a fused and as a layer, conv2d
 *     with explicit, valid and "same" padding, stride, dilation and groups,
 *     max / average / global pooling, flatten, LSTM of 1 and 2 layers with
 *     and without return_sequences), each trained a few steps first: the copy
 *     has the same layers, shapes and parameter bits, predicts bit for bit
 *     the same, and serializes back to the same bytes;
 *     aim_model_serialized_size() is what is written; a small capacity is
 *     refused without writing.
 *  2. Resuming: N steps, serialize model + optimizer (SGD plain, with weight
 *     decay, momentum with dampening, Nesterov; Adam, Adam with L2, AdamW),
 *     deserialize, M more steps on both: bit-identical to each other and to
 *     a run that never stopped.
 *  3. Corruption: every single-byte flip (CRC or header field), every
 *     truncation, trailing bytes, versions; flips re-sealed with a valid CRC
 *     never crash; crafted buffers with a valid CRC whose counts, sizes or
 *     codes lie (docs/FORMAT.md "How a reader validates"), including huge
 *     but consistent shapes that an allocator capped at 64 MiB must refuse.
 *  4. Every allocation failure inside aim_model_deserialize() is
 *     AIM_ERR_OUT_OF_MEMORY and leaks nothing.
 *  5. Graphs (format version 2): two inputs, residual aim_model_add_add()
 *     (of two and of three nodes, one given twice, and on the input itself),
 *     aim_model_add_concat() along the features, the channels of C x H x W
 *     and time, a node feeding two heads, two outputs with loss weights:
 *     round trips with bit-identical aim_model_predict_multi() predictions
 *     and bytes, exact resume of Adam training, input gradients; the graph
 *     records are in the byte-flip sweeps and the allocation failures.
 *  6. Format 4 (attention, positional embedding, linear): a non-causal
 *     attention without biases between linear layers, and a small GPT on
 *     int32 ids (embedding, positional embedding, a pre-norm block with
 *     causal attention and dropout, residual adds, a GELU MLP, a vocabulary
 *     head) join the round trips, the exact resume, the byte flips, the
 *     truncations, the allocation failures and the corpus. A model is
 *     written in the oldest version that holds it (3 without those kinds, 4
 *     with them); a version-4 buffer relabelled 3 is corrupt and the message
 *     names the unknown kind.
 *  7. Sizes and messages: a capacity too small is AIM_ERR_SHAPE_MISMATCH
 *     with *written = the size needed; every failed aim_model_deserialize()
 *     writes a message (a truncation says "truncated", a crafted kernel
 *     height of 0 names the layer and the field), "" on success, cut to the
 *     capacity given and always NUL-terminated.
 *
 * The crafted payloads are written in format version 1 (libaimodel 0.1,
 * docs/FORMAT.md), which the reader still accepts; what the library writes
 * is version 3 or 4.
 *
 * With AIM_WRITE_CORPUS=DIR in the environment, test_write_corpus also
 * writes a few valid buffers into DIR as seeds for tests/fuzz (the library
 * does no I/O; the test program may).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"

#define MAX_BATCH 4
#define HEADER 32u
#define CAP_BYTES ((size_t)64 << 20) /* what the capped allocator grants at most */
#define FORMAT_VERSION 4u             /* the newest version the reader reads (1 to 3 are read too) */
#define VERSION_OLD_KINDS 3u          /* what the writer writes for a model of kinds 0-19 only */
#define IDS_BELOW 7                   /* ids fed to an int32 input are 0 .. IDS_BELOW - 1 */
#define MSG_CAP 256                   /* aim_model_deserialize(): "256 hold any message" */

/* The case being checked, named in every failure message. */
static char g_ctx[160];

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) fail_msg("%s: check failed: %s (line %d)", g_ctx, #cond, __LINE__);      \
    } while (0)

#define CHECK_ST(call, expect)                                                                \
    do {                                                                                      \
        aim_status st_ = (call), ex_ = (expect);                                              \
        if (st_ != ex_)                                                                       \
            fail_msg("%s: %s returned \"%s\", expected \"%s\" (line %d)", g_ctx, #call,       \
                     aim_status_str(st_), aim_status_str(ex_), __LINE__);                     \
    } while (0)

#undef CHECK_OK /* support.h's, replaced by one that names the context */
#define CHECK_OK(call) CHECK_ST(call, AIM_OK)

static void set_ctx(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
    va_end(ap);
}

/* Out-pointers are preset to this and must keep it when a call fails. */
static int g_sentinel;
#define MODEL_SENTINEL ((aim_model *)(void *)&g_sentinel)
#define OPT_SENTINEL ((aim_optimizer *)(void *)&g_sentinel)

/* ======================================================================== */
/* Bytes: little-endian fields, a reference CRC-32, a capped allocator      */
/* ======================================================================== */

/* CRC-32 as zlib's crc32(): reflected, polynomial 0xEDB88320, bit by bit, so
 * it shares nothing with the library's table-driven one. */
static uint32_t ref_crc32(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd_u64(const unsigned char *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }
static void wr_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void wr_u64(unsigned char *p, uint64_t v) {
    wr_u32(p, (uint32_t)v);
    wr_u32(p + 4, (uint32_t)(v >> 32));
}

/* Makes the header's length and CRC agree with the payload again. */
static void reseal(unsigned char *buf, size_t len) {
    wr_u64(buf + 16, (uint64_t)(len - HEADER));
    wr_u32(buf + 24, ref_crc32(buf + HEADER, len - HEADER));
}

/* A growable byte string for writing payloads by hand. */
typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void b_raw(bytes *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void b_u32(bytes *b, uint32_t v) {
    unsigned char t[4];
    wr_u32(t, v);
    b_raw(b, t, 4);
}
static void b_u64(bytes *b, uint64_t v) {
    unsigned char t[8];
    wr_u64(t, v);
    b_raw(b, t, 8);
}
static void b_f32(bytes *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    b_u32(b, u);
}
static void b_free(bytes *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Header + payload, with a valid length and CRC. Caller frees. */
static unsigned char *seal(const bytes *payload, uint32_t flags, size_t *len) {
    static const unsigned char magic[8] = {'A', 'I', 'M', 'D', 0x0D, 0x0A, 0x1A, 0x0A};
    *len = HEADER + payload->len;
    unsigned char *buf = malloc(*len);
    assert_non_null(buf);
    memcpy(buf, magic, 8);
    wr_u32(buf + 8, 1);
    wr_u32(buf + 12, flags);
    wr_u32(buf + 28, 0);
    if (payload->len) memcpy(buf + HEADER, payload->p, payload->len);
    reseal(buf, *len);
    return buf;
}

/* An allocator that refuses any single block over `cap` bytes (so an
 * untrusted buffer cannot make the library allocate more) and counts live
 * blocks. */
typedef struct capped_alloc {
    aim_allocator allocator;
    size_t cap;
    long live, refusals;
} capped_alloc;

static void *cap_allocate(void *ctx, size_t size) {
    capped_alloc *c = ctx;
    if (size > c->cap) {
        c->refusals++;
        return NULL;
    }
    void *p = malloc(size);
    if (p) c->live++;
    return p;
}
static void *cap_reallocate(void *ctx, void *ptr, size_t size) {
    capped_alloc *c = ctx;
    if (size > c->cap) {
        c->refusals++;
        return NULL;
    }
    void *p = realloc(ptr, size);
    if (p && !ptr) c->live++;
    return p;
}
static void cap_deallocate(void *ctx, void *ptr) {
    capped_alloc *c = ctx;
    c->live--;
    free(ptr);
}
static void capped_init(capped_alloc *c, size_t cap) {
    c->allocator.context = c;
    c->allocator.allocate = cap_allocate;
    c->allocator.reallocate = cap_reallocate;
    c->allocator.deallocate = cap_deallocate;
    c->cap = cap;
    c->live = 0;
    c->refusals = 0;
}

/* ======================================================================== */
/* The models: one table entry per layer kind and option                    */
/* ======================================================================== */

static void add_dense(aim_model *m, size_t units, aim_activation act, float alpha, int32_t bias, aim_init init) {
    aim_dense_config c;
    CHECK_OK(aim_dense_config_init(&c, units, act));
    c.alpha = alpha;
    c.use_bias = bias;
    c.init = init;
    CHECK_OK(aim_model_add_dense(m, &c));
}

/* aim_model_add_linear(): the dense layer over the last axis (format 4). */
static void add_linear(aim_model *m, size_t units, aim_activation act, int32_t bias, aim_init init) {
    aim_dense_config c;
    CHECK_OK(aim_dense_config_init(&c, units, act));
    c.use_bias = bias;
    c.init = init;
    CHECK_OK(aim_model_add_linear(m, &c));
}

static aim_conv2d_config conv_cfg(size_t filters, size_t kh, size_t kw, aim_activation act) {
    aim_conv2d_config c;
    (void)aim_conv2d_config_init(&c, filters, kh, kw, act);
    return c;
}

static void add_pool(aim_model *m, int max, size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw) {
    aim_pool2d_config c;
    CHECK_OK(aim_pool2d_config_init(&c, kh, kw));
    c.stride_h = sh;
    c.stride_w = sw;
    c.pad_h = ph;
    c.pad_w = pw;
    CHECK_OK(max ? aim_model_add_max_pool2d(m, &c) : aim_model_add_avg_pool2d(m, &c));
}

static void add_lstm(aim_model *m, size_t hidden, size_t layers, int32_t seq, aim_init init) {
    aim_lstm_config c;
    CHECK_OK(aim_lstm_config_init(&c, hidden, layers));
    c.return_sequences = seq;
    c.init = init;
    CHECK_OK(aim_model_add_lstm(m, &c));
}

static void l_dense_glorot_bias(aim_model *m) {
    add_dense(m, 6, AIM_ACT_RELU, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_dense_pytorch_nobias(aim_model *m) {
    add_dense(m, 4, AIM_ACT_TANH, 0.01f, 0, AIM_INIT_PYTORCH);
    add_dense(m, 2, AIM_ACT_SIGMOID, 0.01f, 1, AIM_INIT_PYTORCH);
}
static void l_dense_he(aim_model *m) {
    add_dense(m, 6, AIM_ACT_LEAKY_RELU, 0.2f, 1, AIM_INIT_HE_NORMAL);
    add_dense(m, 3, AIM_ACT_GELU, 0.01f, 0, AIM_INIT_HE_NORMAL);
}
static void l_dense_zeros(aim_model *m) {
    add_dense(m, 4, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_ZEROS);
    add_dense(m, 3, AIM_ACT_SOFTMAX, 0.01f, 0, AIM_INIT_ZEROS);
}
static void l_dense_rank3_input(aim_model *m) {
    add_dense(m, 5, AIM_ACT_RELU, 0.01f, 1, AIM_INIT_PYTORCH);
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_activations(aim_model *m) {
    add_dense(m, 6, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_PYTORCH);
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_LEAKY_RELU, 0.3f));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_GELU, 0.0f));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_TANH, 0.0f));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_SIGMOID, 0.0f));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_IDENTITY, -2.5f));
    add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_PYTORCH);
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_SOFTMAX, 0.0f));
}
static void l_conv_explicit(aim_model *m) { /* in 2x7x6 */
    aim_conv2d_config c = conv_cfg(3, 3, 2, AIM_ACT_RELU);
    c.padding = AIM_PAD_EXPLICIT;
    c.pad_top = 1;
    c.pad_bottom = 2;
    c.pad_left = 0;
    c.pad_right = 3;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    add_pool(m, 1, 2, 2, 2, 2, 0, 0);
    CHECK_OK(aim_model_add_flatten(m));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_PYTORCH);
}
static void l_conv_valid_stride(aim_model *m) { /* in 3x9x8 */
    aim_conv2d_config c = conv_cfg(4, 3, 3, AIM_ACT_LEAKY_RELU);
    c.alpha = 0.1f;
    c.stride_h = 2;
    c.stride_w = 3;
    c.use_bias = 0;
    c.init = AIM_INIT_HE_NORMAL;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    CHECK_OK(aim_model_add_global_avg_pool2d(m));
}
static void l_conv_same(aim_model *m) { /* in 2x7x6: "same" splits 1 above / 2 below */
    aim_conv2d_config c = conv_cfg(3, 4, 3, AIM_ACT_TANH);
    c.padding = AIM_PAD_SAME;
    c.init = AIM_INIT_PYTORCH;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    c = conv_cfg(2, 4, 4, AIM_ACT_IDENTITY);
    c.padding = AIM_PAD_SAME;
    c.stride_h = 2;
    c.stride_w = 2;
    CHECK_OK(aim_model_add_conv2d(m, &c));
}
static void l_conv_dilation(aim_model *m) { /* in 2x9x9 */
    aim_conv2d_config c = conv_cfg(2, 3, 3, AIM_ACT_SIGMOID);
    c.dilation_h = 2;
    c.dilation_w = 3;
    c.padding = AIM_PAD_EXPLICIT;
    c.pad_top = c.pad_bottom = c.pad_left = c.pad_right = 1;
    c.init = AIM_INIT_ZEROS;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    c = conv_cfg(2, 2, 2, AIM_ACT_IDENTITY);
    c.dilation_h = 2;
    c.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &c));
}
static void l_conv_groups(aim_model *m) { /* in 4x6x6 */
    aim_conv2d_config c = conv_cfg(6, 3, 3, AIM_ACT_GELU);
    c.groups = 2;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    c = conv_cfg(6, 3, 3, AIM_ACT_IDENTITY); /* depthwise */
    c.groups = 6;
    c.padding = AIM_PAD_SAME;
    c.use_bias = 0;
    CHECK_OK(aim_model_add_conv2d(m, &c));
}
static void l_max_pool(aim_model *m) { /* in 2x8x8 */
    aim_conv2d_config c = conv_cfg(3, 3, 3, AIM_ACT_RELU);
    c.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    add_pool(m, 1, 2, 2, 2, 2, 0, 0);
    add_pool(m, 1, 3, 2, 2, 1, 1, 1);
    CHECK_OK(aim_model_add_flatten(m));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_avg_pool(aim_model *m) { /* in 2x8x9 */
    add_pool(m, 0, 3, 2, 2, 2, 1, 1);
    aim_conv2d_config c = conv_cfg(2, 2, 2, AIM_ACT_IDENTITY);
    CHECK_OK(aim_model_add_conv2d(m, &c));
    add_pool(m, 0, 2, 2, 1, 2, 0, 0);
    CHECK_OK(aim_model_add_flatten(m));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_global_pool(aim_model *m) { /* in 3x6x6 */
    aim_conv2d_config c = conv_cfg(4, 3, 3, AIM_ACT_RELU);
    CHECK_OK(aim_model_add_conv2d(m, &c));
    CHECK_OK(aim_model_add_global_avg_pool2d(m));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_flatten(aim_model *m) { /* in 2x3x4 */
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_TANH, 0.0f));
    CHECK_OK(aim_model_add_flatten(m));
    add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    CHECK_OK(aim_model_add_flatten(m));
}
static void l_lstm1(aim_model *m) { /* in 5x3 */
    add_lstm(m, 4, 1, 0, AIM_INIT_PYTORCH);
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_lstm1_seq(aim_model *m) { /* in 5x3 */
    add_lstm(m, 4, 1, 1, AIM_INIT_GLOROT_UNIFORM);
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_lstm2(aim_model *m) { /* in 4x3 */
    add_lstm(m, 3, 2, 0, AIM_INIT_HE_NORMAL);
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_lstm2_seq(aim_model *m) { /* in 4x2 */
    add_lstm(m, 3, 2, 1, AIM_INIT_PYTORCH);
    add_lstm(m, 4, 1, 0, AIM_INIT_ZEROS);
    add_dense(m, 2, AIM_ACT_TANH, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

static size_t last_node(const aim_model *m);

/* The kinds of 1.1 (their own tests go deeper; here they join the round
 * trips, the byte flips and the fuzz corpus). */
static void l_batch_norm_cnn(aim_model *m) { /* in 2x6x6: conv, BN, relu, conv, BN, dropout */
    aim_conv2d_config c;
    CHECK_OK(aim_conv2d_config_init(&c, 3, 3, 3, AIM_ACT_IDENTITY));
    c.use_bias = 0;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    aim_batch_norm_config bn;
    CHECK_OK(aim_batch_norm_config_init(&bn));
    CHECK_OK(aim_model_add_batch_norm(m, &bn));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
    CHECK_OK(aim_conv2d_config_init(&c, 2, 2, 2, AIM_ACT_IDENTITY));
    CHECK_OK(aim_model_add_conv2d(m, &c));
    bn.momentum = 0.3f; /* training batches of 1 occur: a conv's map gives each channel several values */
    bn.affine = 0;
    CHECK_OK(aim_model_add_batch_norm(m, &bn));
    CHECK_OK(aim_model_add_flatten(m));
    CHECK_OK(aim_model_add_dropout(m, 0.25f));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_layer_norm(aim_model *m) { /* in 3x4 */
    aim_layer_norm_config c;
    CHECK_OK(aim_layer_norm_config_init(&c));
    c.normalized_dims = 2;
    CHECK_OK(aim_model_add_layer_norm(m, &c));
    add_dense(m, 3, AIM_ACT_TANH, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    c.normalized_dims = 1;
    c.elementwise_affine = 0;
    CHECK_OK(aim_model_add_layer_norm(m, &c));
}
static void l_bigru_seq(aim_model *m) { /* in 4x3: bidirectional GRU x2 (sequences), GRU (last) */
    aim_rnn_config c;
    CHECK_OK(aim_rnn_config_init(&c, 3, 2));
    c.bidirectional = 1;
    c.return_sequences = 1;
    CHECK_OK(aim_model_add_gru(m, &c));
    CHECK_OK(aim_rnn_config_init(&c, 2, 1));
    CHECK_OK(aim_model_add_gru(m, &c));
}
static void l_bilstm(aim_model *m) { /* in 5x2: bidirectional LSTM (final states), dense */
    aim_rnn_config c;
    CHECK_OK(aim_rnn_config_init(&c, 3, 1));
    c.bidirectional = 1;
    c.init = AIM_INIT_GLOROT_UNIFORM;
    CHECK_OK(aim_model_add_rnn(m, AIM_RNN_LSTM, &c));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}
static void l_conv1d_pools(aim_model *m) { /* in 2x12 */
    aim_conv1d_config c;
    CHECK_OK(aim_conv1d_config_init(&c, 4, 3, AIM_ACT_RELU));
    c.padding = AIM_PAD_SAME;
    c.stride = 2;
    CHECK_OK(aim_model_add_conv1d(m, &c));
    aim_pool1d_config p;
    CHECK_OK(aim_pool1d_config_init(&p, 2));
    p.stride = 1;
    p.pad = 1;
    CHECK_OK(aim_model_add_max_pool1d(m, &p));
    CHECK_OK(aim_conv1d_config_init(&c, 4, 2, AIM_ACT_TANH));
    c.groups = 2;
    c.dilation = 2;
    CHECK_OK(aim_model_add_conv1d(m, &c));
    CHECK_OK(aim_pool1d_config_init(&p, 2));
    CHECK_OK(aim_model_add_avg_pool1d(m, &p));
    const size_t skip = last_node(m);
    CHECK_OK(aim_model_add_global_max_pool1d(m));
    const size_t a = last_node(m);
    CHECK_OK(aim_model_continue_from(m, skip));
    CHECK_OK(aim_model_add_global_avg_pool1d(m));
    const size_t parts[2] = {a, last_node(m)};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* The kinds of format 4: in 5x4, a linear layer per position, attention of
 * 3 heads over all positions (no mask) without biases, a linear head. */
static void l_attention_nobias(aim_model *m) {
    add_linear(m, 6, AIM_ACT_TANH, 1, AIM_INIT_PYTORCH);
    aim_attention_config c;
    CHECK_OK(aim_attention_config_init(&c, 3));
    c.bias = 0;
    c.init = AIM_INIT_GLOROT_UNIFORM;
    CHECK_OK(aim_model_add_attention(m, &c));
    add_linear(m, 2, AIM_ACT_IDENTITY, 0, AIM_INIT_HE_NORMAL);
}

typedef struct model_case {
    const char *name;
    size_t rank, dims[3];
    void (*layers)(aim_model *m);
    int32_t input_gradient;
} model_case;

enum {
    C_DENSE_GLOROT, C_DENSE_PYTORCH, C_DENSE_HE, C_DENSE_ZEROS, C_DENSE_RANK3, C_ACTIVATIONS,
    C_CONV_EXPLICIT, C_CONV_VALID_STRIDE, C_CONV_SAME, C_CONV_DILATION, C_CONV_GROUPS,
    C_MAX_POOL, C_AVG_POOL, C_GLOBAL_POOL, C_FLATTEN,
    C_LSTM1, C_LSTM1_SEQ, C_LSTM2, C_LSTM2_SEQ,
    C_BATCH_NORM_CNN, C_LAYER_NORM, C_BIGRU_SEQ, C_BILSTM, C_CONV1D_POOLS,
    C_ATTENTION_NOBIAS
};

static const model_case CASES[] = {
    [C_DENSE_GLOROT] = {"dense_glorot_bias", 1, {5, 0, 0}, l_dense_glorot_bias, 0},
    [C_DENSE_PYTORCH] = {"dense_pytorch_nobias", 1, {5, 0, 0}, l_dense_pytorch_nobias, 1},
    [C_DENSE_HE] = {"dense_he_normal", 1, {4, 0, 0}, l_dense_he, 0},
    [C_DENSE_ZEROS] = {"dense_zeros", 1, {3, 0, 0}, l_dense_zeros, 0},
    [C_DENSE_RANK3] = {"dense_rank3_input", 3, {2, 2, 3}, l_dense_rank3_input, 1},
    [C_ACTIVATIONS] = {"activation_layers", 1, {4, 0, 0}, l_activations, 0},
    [C_CONV_EXPLICIT] = {"conv2d_explicit_padding", 3, {2, 7, 6}, l_conv_explicit, 1},
    [C_CONV_VALID_STRIDE] = {"conv2d_valid_stride", 3, {3, 9, 8}, l_conv_valid_stride, 0},
    [C_CONV_SAME] = {"conv2d_same", 3, {2, 7, 6}, l_conv_same, 0},
    [C_CONV_DILATION] = {"conv2d_dilation", 3, {2, 9, 9}, l_conv_dilation, 1},
    [C_CONV_GROUPS] = {"conv2d_groups_depthwise", 3, {4, 6, 6}, l_conv_groups, 0},
    [C_MAX_POOL] = {"max_pool2d", 3, {2, 8, 8}, l_max_pool, 0},
    [C_AVG_POOL] = {"avg_pool2d", 3, {2, 8, 9}, l_avg_pool, 1},
    [C_GLOBAL_POOL] = {"global_avg_pool2d", 3, {3, 6, 6}, l_global_pool, 0},
    [C_FLATTEN] = {"flatten", 3, {2, 3, 4}, l_flatten, 0},
    [C_LSTM1] = {"lstm_1_layer", 2, {5, 3, 0}, l_lstm1, 0},
    [C_LSTM1_SEQ] = {"lstm_1_layer_sequences", 2, {5, 3, 0}, l_lstm1_seq, 1},
    [C_LSTM2] = {"lstm_2_layers", 2, {4, 3, 0}, l_lstm2, 0},
    [C_LSTM2_SEQ] = {"lstm_2_layers_sequences", 2, {4, 2, 0}, l_lstm2_seq, 0},
    [C_BATCH_NORM_CNN] = {"batch_norm_dropout_cnn", 3, {2, 6, 6}, l_batch_norm_cnn, 0},
    [C_LAYER_NORM] = {"layer_norm", 2, {3, 4, 0}, l_layer_norm, 1},
    [C_BIGRU_SEQ] = {"bidirectional_gru_stack", 2, {4, 3, 0}, l_bigru_seq, 1},
    [C_BILSTM] = {"bidirectional_lstm", 2, {5, 2, 0}, l_bilstm, 0},
    [C_CONV1D_POOLS] = {"conv1d_pools_graph", 2, {2, 12, 0}, l_conv1d_pools, 0},
    [C_ATTENTION_NOBIAS] = {"attention_noncausal_nobias", 2, {5, 4, 0}, l_attention_nobias, 1},
};

/* Builds and compiles a case; the same seed gives the same weights. */
static aim_model *build_case(const model_case *mc, uint64_t seed) {
    aim_model *m = NULL;
    CHECK_OK(aim_model_create(NULL, mc->rank, mc->dims, &m));
    mc->layers(m);
    aim_compile_config cc;
    CHECK_OK(aim_compile_config_init(&cc));
    cc.max_batch = MAX_BATCH;
    cc.input_gradient = mc->input_gradient;
    cc.seed = seed;
    aim_status st = aim_model_compile(m, &cc);
    if (st != AIM_OK) fail_msg("%s: compile: %s: %s", mc->name, aim_status_str(st), aim_model_last_error(m));
    return m;
}

/* ---- graph models: several inputs, merges, branches, several outputs ---- */

static size_t last_node(const aim_model *m) {
    size_t node = 0;
    CHECK_OK(aim_model_last_node(m, &node));
    return node;
}

static void expect_node_shape(const aim_model *m, size_t node, size_t rank, size_t d0, size_t d1, size_t d2) {
    size_t r = 0, d[AIM_MAX_RANK] = {0};
    CHECK_OK(aim_model_layer_shape(m, node, &r, d));
    CHECK(r == rank && d[0] == d0 && (rank < 2 || d[1] == d1) && (rank < 3 || d[2] == d2));
}

/* in0: 5, in1: 3. Each input through its own dense layer, concatenated
 * along the features, then a dense head. */
static void g_two_inputs(aim_model *m) {
    const size_t d1[1] = {3};
    size_t in1 = 0;
    CHECK_OK(aim_model_add_input(m, 1, d1, &in1));
    CHECK(in1 == AIM_MODEL_INPUT(1));
    CHECK(last_node(m) == AIM_MODEL_INPUT(0)); /* adding an input leaves the current node */
    add_dense(m, 4, AIM_ACT_TANH, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    const size_t a = last_node(m);
    CHECK_OK(aim_model_continue_from(m, in1));
    add_dense(m, 4, AIM_ACT_SIGMOID, 0.01f, 1, AIM_INIT_PYTORCH);
    const size_t parts[2] = {a, last_node(m)};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    expect_node_shape(m, last_node(m), 1, 8, 0, 0);
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* in 6: dense relu h -> dense y; relu(y + h) -> dense 3. */
static void g_residual_dense(aim_model *m) {
    add_dense(m, 6, AIM_ACT_RELU, 0.01f, 1, AIM_INIT_HE_NORMAL);
    const size_t h = last_node(m);
    add_dense(m, 6, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    const size_t sum[2] = {last_node(m), h};
    CHECK_OK(aim_model_add_add(m, sum, 2));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
    add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* in 2x6x6: the header's residual block on the input itself, then pooling. */
static void g_residual_conv(aim_model *m) {
    const size_t skip = last_node(m);
    CHECK(skip == AIM_MODEL_INPUT(0));
    aim_conv2d_config c = conv_cfg(2, 3, 3, AIM_ACT_RELU);
    c.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    c = conv_cfg(2, 3, 3, AIM_ACT_IDENTITY);
    c.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    const size_t sum[2] = {last_node(m), skip};
    CHECK_OK(aim_model_add_add(m, sum, 2));
    CHECK_OK(aim_model_add_activation(m, AIM_ACT_RELU, 0.0f));
    add_pool(m, 1, 2, 2, 2, 2, 0, 0);
    CHECK_OK(aim_model_add_flatten(m));
    add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* in 4: dense tanh a; a + x + a (a node given twice) -> dense 2. */
static void g_add_three(aim_model *m) {
    add_dense(m, 4, AIM_ACT_TANH, 0.01f, 1, AIM_INIT_PYTORCH);
    const size_t a = last_node(m);
    const size_t sum[3] = {a, AIM_MODEL_INPUT(0), a};
    CHECK_OK(aim_model_add_add(m, sum, 3));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* in 2x6x5: conv 3 (same) and conv 1 (1x1) of the input, concatenated with
 * the input along the channels (3 + 1 + 2 = 6), global pooling, dense. */
static void g_concat_channels(aim_model *m) {
    aim_conv2d_config c = conv_cfg(3, 3, 3, AIM_ACT_TANH);
    c.padding = AIM_PAD_SAME;
    CHECK_OK(aim_model_add_conv2d(m, &c));
    const size_t a = last_node(m);
    CHECK_OK(aim_model_continue_from(m, AIM_MODEL_INPUT(0)));
    c = conv_cfg(1, 1, 1, AIM_ACT_SIGMOID);
    CHECK_OK(aim_model_add_conv2d(m, &c));
    const size_t parts[3] = {a, last_node(m), AIM_MODEL_INPUT(0)};
    CHECK_OK(aim_model_add_concat(m, parts, 3, 0));
    expect_node_shape(m, last_node(m), 3, 6, 6, 5);
    CHECK_OK(aim_model_add_global_avg_pool2d(m));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* in 5: dense tanh h feeds two heads, concatenated again, then dense. */
static void g_two_heads(aim_model *m) {
    add_dense(m, 6, AIM_ACT_TANH, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    const size_t h = last_node(m);
    add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    const size_t p = last_node(m);
    CHECK_OK(aim_model_continue_from(m, h));
    add_dense(m, 2, AIM_ACT_SIGMOID, 0.01f, 0, AIM_INIT_PYTORCH);
    const size_t parts[2] = {p, last_node(m)};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* in 4: dense gelu h feeds two outputs, named in the other order than they
 * were added, with loss weights 2 and 0.25. */
static void g_two_outputs(aim_model *m) {
    add_dense(m, 6, AIM_ACT_GELU, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    const size_t h = last_node(m);
    add_dense(m, 3, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
    const size_t o0 = last_node(m);
    CHECK_OK(aim_model_continue_from(m, h));
    add_dense(m, 5, AIM_ACT_TANH, 0.01f, 1, AIM_INIT_PYTORCH);
    const size_t o1 = last_node(m);
    const size_t outs[2] = {o1, o0};
    const float weights[2] = {2.0f, 0.25f};
    CHECK_OK(aim_model_set_outputs(m, outs, weights, 2));
    CHECK(aim_model_output_count(m) == 2);
}

/* in0: 3 steps x 2, in1: 2 steps x 3. An LSTM's sequence of in0 and in1
 * concatenated along time (5 x 3), a second LSTM, dense. */
static void g_time_concat(aim_model *m) {
    const size_t d1[2] = {2, 3};
    size_t in1 = 0;
    CHECK_OK(aim_model_add_input(m, 2, d1, &in1));
    add_lstm(m, 3, 1, 1, AIM_INIT_PYTORCH);
    const size_t parts[2] = {last_node(m), in1};
    CHECK_OK(aim_model_add_concat(m, parts, 2, 0));
    expect_node_shape(m, last_node(m), 2, 5, 3, 0);
    add_lstm(m, 2, 1, 0, AIM_INIT_GLOROT_UNIFORM);
    add_dense(m, 2, AIM_ACT_IDENTITY, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM);
}

/* A small GPT (format 4): ids (6) -> embedding IDS_BELOW x 8 -> positional
 * embedding (8 positions) -> a pre-norm block, x1 = x + attention(ln(x))
 * (2 heads, causal, dropout 0.1 on the weights) and x2 = x1 +
 * linear(gelu(linear(ln(x1)))) (8 -> 16 -> 8) -> ln -> linear to the
 * vocabulary: 6 x IDS_BELOW logits. */
static void g_gpt_block(aim_model *m) {
    CHECK_OK(aim_model_set_input_dtype(m, 0, AIM_DTYPE_INT32));
    aim_embedding_config ec;
    CHECK_OK(aim_embedding_config_init(&ec, IDS_BELOW, 8));
    CHECK_OK(aim_model_add_embedding(m, &ec));
    CHECK_OK(aim_model_add_positional_embedding(m, 8));
    const size_t x = last_node(m);
    aim_layer_norm_config ln;
    CHECK_OK(aim_layer_norm_config_init(&ln));
    CHECK_OK(aim_model_add_layer_norm(m, &ln));
    aim_attention_config ac;
    CHECK_OK(aim_attention_config_init(&ac, 2));
    ac.causal = 1;
    ac.dropout = 0.1f;
    CHECK_OK(aim_model_add_attention(m, &ac));
    const size_t r1[2] = {last_node(m), x};
    CHECK_OK(aim_model_add_add(m, r1, 2));
    const size_t x1 = last_node(m);
    CHECK_OK(aim_model_add_layer_norm(m, &ln));
    add_linear(m, 16, AIM_ACT_GELU, 1, AIM_INIT_PYTORCH);
    add_linear(m, 8, AIM_ACT_IDENTITY, 1, AIM_INIT_PYTORCH);
    const size_t r2[2] = {last_node(m), x1};
    CHECK_OK(aim_model_add_add(m, r2, 2));
    CHECK_OK(aim_model_add_layer_norm(m, &ln));
    add_linear(m, IDS_BELOW, AIM_ACT_IDENTITY, 1, AIM_INIT_GLOROT_UNIFORM);
    expect_node_shape(m, last_node(m), 2, 6, IDS_BELOW, 0);
}

enum {
    G_TWO_INPUTS, G_RESIDUAL_DENSE, G_RESIDUAL_CONV, G_ADD_THREE, G_CONCAT_CHANNELS, G_TWO_HEADS, G_TWO_OUTPUTS,
    G_TIME_CONCAT, G_GPT_BLOCK
};

static const model_case GRAPH_CASES[] = {
    [G_TWO_INPUTS] = {"graph_two_inputs_concat_features", 1, {5, 0, 0}, g_two_inputs, 1},
    [G_RESIDUAL_DENSE] = {"graph_residual_dense", 1, {6, 0, 0}, g_residual_dense, 0},
    [G_RESIDUAL_CONV] = {"graph_residual_conv2d", 3, {2, 6, 6}, g_residual_conv, 1},
    [G_ADD_THREE] = {"graph_add_of_three", 1, {4, 0, 0}, g_add_three, 0},
    [G_CONCAT_CHANNELS] = {"graph_concat_channels", 3, {2, 6, 5}, g_concat_channels, 1},
    [G_TWO_HEADS] = {"graph_node_feeds_two_heads", 1, {5, 0, 0}, g_two_heads, 0},
    [G_TWO_OUTPUTS] = {"graph_two_outputs_loss_weights", 1, {4, 0, 0}, g_two_outputs, 0},
    [G_TIME_CONCAT] = {"graph_concat_time", 2, {3, 2, 0}, g_time_concat, 0},
    [G_GPT_BLOCK] = {"graph_gpt_block", 1, {6, 0, 0}, g_gpt_block, 0},
};

/* ======================================================================== */
/* Optimizers and training                                                  */
/* ======================================================================== */

typedef enum opt_kind {
    OPT_NONE, OPT_SGD, OPT_SGD_WD, OPT_SGD_MOMENTUM, OPT_SGD_NESTEROV, OPT_ADAM, OPT_ADAM_L2, OPT_ADAMW,
    OPT_COUNT
} opt_kind;

static const char *const OPT_NAMES[OPT_COUNT] = {"none", "sgd", "sgd_weight_decay", "sgd_momentum_dampening",
                                                 "sgd_nesterov", "adam", "adam_l2", "adamw"};

static aim_optimizer *make_opt(opt_kind k, size_t count) {
    aim_optimizer *o = NULL;
    aim_sgd_config s;
    aim_adam_config a;
    (void)aim_sgd_config_init(&s);
    (void)aim_adam_config_init(&a);
    switch (k) {
    case OPT_NONE: return NULL;
    case OPT_SGD: break;
    case OPT_SGD_WD: s.weight_decay = 0.01f; break;
    case OPT_SGD_MOMENTUM:
        s.momentum = 0.9f;
        s.dampening = 0.1f;
        break;
    case OPT_SGD_NESTEROV:
        s.momentum = 0.8f;
        s.nesterov = 1;
        s.weight_decay = 1e-3f;
        s.check_finite = 1;
        break;
    case OPT_ADAM: break;
    case OPT_ADAM_L2: a.weight_decay = 0.01f; break;
    case OPT_ADAMW:
        a.decoupled = 1;
        a.weight_decay = 0.05f;
        a.beta1 = 0.8f;
        a.beta2 = 0.99f;
        a.epsilon = 1e-6f;
        a.check_finite = 1;
        break;
    case OPT_COUNT: return NULL;
    }
    if (k >= OPT_ADAM) CHECK_OK(aim_adam_create(NULL, &a, count, &o));
    else CHECK_OK(aim_sgd_create(NULL, &s, count, &o));
    return o;
}

static size_t n_params(aim_model *m) {
    float *p;
    size_t n;
    CHECK_OK(aim_model_parameters(m, &p, &n));
    return n;
}

/* Floats per sample of a node (a layer, or AIM_MODEL_INPUT(k)). */
static size_t node_floats(const aim_model *m, size_t node) {
    size_t rank = 0, dims[AIM_MAX_RANK] = {0}, n = 1;
    CHECK_OK(aim_model_layer_shape(m, node, &rank, dims));
    for (size_t i = 0; i < rank; i++) n *= dims[i];
    return n;
}

static size_t input_floats(const aim_model *m, size_t k) { return node_floats(m, AIM_MODEL_INPUT(k)); }

static size_t output_floats(const aim_model *m, size_t k) {
    size_t node = 0;
    CHECK_OK(aim_model_output_node(m, k, &node));
    return node_floats(m, node);
}

/* Buffers for `batch` samples of every input (or every output) of a model. */
typedef struct io_bufs {
    size_t n;                         /* inputs or outputs */
    float *p[AIM_MAX_NODE_INPUTS];    /* batch * size[k] floats (or int32 ids) each */
    size_t size[AIM_MAX_NODE_INPUTS]; /* elements per sample */
    int ids[AIM_MAX_NODE_INPUTS];     /* an input of AIM_DTYPE_INT32: p[k] holds int32_t */
    int any_ids;
} io_bufs;

static void io_alloc(io_bufs *b, const aim_model *m, int outputs, size_t batch) {
    memset(b, 0, sizeof *b);
    b->n = outputs ? aim_model_output_count(m) : aim_model_input_count(m);
    CHECK(b->n >= 1 && b->n <= AIM_MAX_NODE_INPUTS);
    for (size_t k = 0; k < b->n; k++) {
        b->size[k] = outputs ? output_floats(m, k) : input_floats(m, k);
        if (!outputs) {
            aim_dtype d = AIM_DTYPE_FLOAT32;
            CHECK_OK(aim_model_input_dtype(m, k, &d));
            b->ids[k] = d == AIM_DTYPE_INT32;
            b->any_ids |= b->ids[k];
        }
        _Static_assert(sizeof(float) == sizeof(int32_t), "an id takes a float's room");
        b->p[k] = malloc(batch * b->size[k] * sizeof(float));
        assert_non_null(b->p[k]);
    }
}

static void io_free(io_bufs *b) {
    for (size_t k = 0; k < b->n; k++) free(b->p[k]);
    memset(b, 0, sizeof *b);
}

/* Fills `batch` samples of buffer k from seed + 7919 k (buffer 0 from seed
 * alone, as the sequential models always were); an input of ids gets ids
 * 0 .. IDS_BELOW - 1 drawn from the same seed. */
static void io_fill(io_bufs *b, size_t batch, uint64_t seed, float lo, float hi) {
    for (size_t k = 0; k < b->n; k++) {
        const size_t n = batch * b->size[k];
        fill_uniform(b->p[k], n, seed + 7919u * k, lo, hi);
        if (!b->ids[k]) continue;
        int32_t *ids = (int32_t *)(void *)b->p[k];
        for (size_t i = 0; i < n; i++) { /* the float in [lo, hi) picks the id */
            const float u = (b->p[k][i] - lo) / (hi - lo);
            const int32_t id = (int32_t)(u * (float)IDS_BELOW);
            ids[i] = id < 0 ? 0 : id >= IDS_BELOW ? IDS_BELOW - 1 : id;
        }
    }
}

/* The elements of each buffer as the _typed calls take them. */
static void io_views(const io_bufs *b, size_t batch, const void **p, size_t *counts) {
    for (size_t k = 0; k < b->n; k++) {
        p[k] = b->p[k];
        counts[k] = batch * b->size[k];
    }
}

/* A forward of `batch` samples: aim_model_forward() for a one-input model,
 * aim_model_forward_multi() otherwise. */
static void forward_io(aim_model *m, aim_mode mode, const io_bufs *x, size_t batch) {
    if (x->any_ids) { /* aim_model_forward_typed(), each input as declared */
        const void *in[AIM_MAX_NODE_INPUTS];
        size_t counts[AIM_MAX_NODE_INPUTS];
        io_views(x, batch, in, counts);
        CHECK_OK(aim_model_forward_typed(m, mode, in, counts, x->n, batch));
        return;
    }
    if (x->n == 1) {
        CHECK_OK(aim_model_forward(m, mode, x->p[0], batch * x->size[0], batch));
        return;
    }
    const float *in[AIM_MAX_NODE_INPUTS];
    size_t counts[AIM_MAX_NODE_INPUTS];
    for (size_t k = 0; k < x->n; k++) {
        in[k] = x->p[k];
        counts[k] = batch * x->size[k];
    }
    CHECK_OK(aim_model_forward_multi(m, mode, in, counts, x->n, batch));
}

/* Training steps [first, first + count): step s uses batch 1 + (s + 2) % 4
 * samples and targets drawn from s alone, so two runs given the same step
 * numbers see the same data. Every output gets an MSE loss (each scaled by
 * its loss weight in the backward). An optimizer of NULL takes a plain SGD
 * step on the raw buffers (the model still changes). */
static void train(aim_model *m, aim_optimizer *o, unsigned first, unsigned count) {
    io_bufs x, t;
    io_alloc(&x, m, 0, MAX_BATCH);
    io_alloc(&t, m, 1, MAX_BATCH);
    for (unsigned s = first; s < first + count; s++) {
        const size_t batch = 1 + (s + 2) % MAX_BATCH;
        io_fill(&x, batch, 1000 + s, -1.0f, 1.0f);
        io_fill(&t, batch, 2000 + s, 0.0f, 1.0f);
        float loss;
        CHECK_OK(aim_model_zero_grad(m));
        forward_io(m, AIM_MODE_TRAIN, &x, batch);
        for (size_t k = 0; k < t.n; k++) CHECK_OK(aim_model_loss(m, k, AIM_LOSS_MSE, t.p[k], batch * t.size[k], &loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        if (o) {
            CHECK_OK(aim_optimizer_step_model(o, m, 0.05f));
        } else {
            float *p, *g;
            size_t n, ng;
            CHECK_OK(aim_model_parameters(m, &p, &n));
            CHECK_OK(aim_model_gradients(m, &g, &ng));
            for (size_t i = 0; i < n; i++) p[i] -= 0.05f * g[i];
        }
    }
    io_free(&x);
    io_free(&t);
}

/* Serializes into an exact-size heap buffer (so ASan sees any over-read by
 * the reader); checks size == written and that nothing past it is touched. */
static unsigned char *serialize(const aim_model *m, const aim_optimizer *o, size_t *len) {
    size_t need = 0, written = 0;
    CHECK_OK(aim_model_serialized_size(m, o, &need));
    CHECK(need > HEADER);
    unsigned char *tmp = malloc(need + 64);
    assert_non_null(tmp);
    memset(tmp, 0xA5, need + 64);
    CHECK_OK(aim_model_serialize(m, o, tmp, need, &written));
    CHECK(written == need);
    for (size_t i = need; i < need + 64; i++) CHECK(tmp[i] == 0xA5);
    unsigned char *buf = malloc(need);
    assert_non_null(buf);
    memcpy(buf, tmp, need);
    free(tmp);
    *len = need;
    return buf;
}

/* A predict on `batch` deterministic samples into fresh buffers, one per
 * output (*y, caller frees with io_free()): aim_model_predict() for a
 * one-input, one-output model, aim_model_predict_multi() otherwise. */
static void predict(const aim_model *m, size_t batch, uint64_t seed, io_bufs *y) {
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, MAX_BATCH, &ws));
    io_bufs x;
    io_alloc(&x, m, 0, batch);
    io_alloc(y, m, 1, batch);
    io_fill(&x, batch, seed, -1.0f, 1.0f);
    if (x.any_ids) {
        const void *in[AIM_MAX_NODE_INPUTS];
        float *out[AIM_MAX_NODE_INPUTS];
        size_t in_counts[AIM_MAX_NODE_INPUTS], out_counts[AIM_MAX_NODE_INPUTS];
        io_views(&x, batch, in, in_counts);
        for (size_t k = 0; k < y->n; k++) {
            out[k] = y->p[k];
            out_counts[k] = batch * y->size[k];
        }
        CHECK_OK(aim_model_predict_typed(m, ws, in, in_counts, x.n, batch, out, out_counts, y->n));
    } else if (x.n == 1 && y->n == 1) {
        CHECK_OK(aim_model_predict(m, ws, x.p[0], batch * x.size[0], batch, y->p[0], batch * y->size[0]));
    } else {
        const float *in[AIM_MAX_NODE_INPUTS];
        float *out[AIM_MAX_NODE_INPUTS];
        size_t in_counts[AIM_MAX_NODE_INPUTS], out_counts[AIM_MAX_NODE_INPUTS];
        for (size_t k = 0; k < x.n; k++) {
            in[k] = x.p[k];
            in_counts[k] = batch * x.size[k];
        }
        for (size_t k = 0; k < y->n; k++) {
            out[k] = y->p[k];
            out_counts[k] = batch * y->size[k];
        }
        CHECK_OK(aim_model_predict_multi(m, ws, in, in_counts, x.n, batch, out, out_counts, y->n));
    }
    aim_workspace_free(ws);
    io_free(&x);
}

/* ======================================================================== */
/* 1. Round trips                                                           */
/* ======================================================================== */

/* The copy must equal the original in every observable way. */
static void expect_same_model(aim_model *a, aim_model *b) {
    CHECK(aim_model_layer_count(a) == aim_model_layer_count(b));
    CHECK(aim_model_input_size(a) == aim_model_input_size(b));
    CHECK(aim_model_output_size(a) == aim_model_output_size(b));
    for (size_t i = 0; i < aim_model_layer_count(a); i++) {
        size_t ra, rb, da[AIM_MAX_RANK] = {0}, db[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_shape(a, i, &ra, da));
        CHECK_OK(aim_model_layer_shape(b, i, &rb, db));
        CHECK(ra == rb && memcmp(da, db, sizeof da) == 0);
        size_t oa, wa, ba, ob, wb, bb;
        CHECK_OK(aim_model_layer_parameters(a, i, &oa, &wa, &ba));
        CHECK_OK(aim_model_layer_parameters(b, i, &ob, &wb, &bb));
        CHECK(oa == ob && wa == wb && ba == bb);
    }
    float *pa, *pb;
    size_t na, nb;
    CHECK_OK(aim_model_parameters(a, &pa, &na));
    CHECK_OK(aim_model_parameters(b, &pb, &nb));
    CHECK(na == nb);
    CHECK(memcmp(pa, pb, na * sizeof(float)) == 0);
    size_t ma, mb;
    CHECK_OK(aim_model_memory_size(a, &ma));
    CHECK_OK(aim_model_memory_size(b, &mb));
    CHECK(ma == mb); /* same max_batch and input_gradient */
    /* The graph: its inputs, their shapes, its outputs and their order. */
    CHECK(aim_model_input_count(a) == aim_model_input_count(b));
    CHECK(aim_model_output_count(a) == aim_model_output_count(b));
    for (size_t k = 0; k < aim_model_input_count(a); k++) {
        size_t ra, rb, da[AIM_MAX_RANK] = {0}, db[AIM_MAX_RANK] = {0};
        CHECK_OK(aim_model_layer_shape(a, AIM_MODEL_INPUT(k), &ra, da));
        CHECK_OK(aim_model_layer_shape(b, AIM_MODEL_INPUT(k), &rb, db));
        CHECK(ra == rb && memcmp(da, db, sizeof da) == 0);
    }
    for (size_t k = 0; k < aim_model_output_count(a); k++) {
        size_t na_ = 0, nb_ = 1;
        CHECK_OK(aim_model_output_node(a, k, &na_));
        CHECK_OK(aim_model_output_node(b, k, &nb_));
        CHECK(na_ == nb_);
    }
    for (size_t batch = 1; batch <= MAX_BATCH; batch += MAX_BATCH - 1) {
        io_bufs ya, yb;
        predict(a, batch, 77 + batch, &ya);
        predict(b, batch, 77 + batch, &yb);
        CHECK(ya.n == yb.n);
        for (size_t k = 0; k < ya.n; k++) {
            CHECK(ya.size[k] == yb.size[k]);
            CHECK(memcmp(ya.p[k], yb.p[k], batch * ya.size[k] * sizeof(float)) == 0);
        }
        io_free(&ya);
        io_free(&yb);
    }
}

static void roundtrip(const model_case *mc, opt_kind ok) {
    set_ctx("%s with optimizer %s", mc->name, OPT_NAMES[ok]);
    aim_model *m = build_case(mc, 42);
    aim_optimizer *o = make_opt(ok, n_params(m));
    train(m, o, 0, 3);
    size_t len;
    unsigned char *buf = serialize(m, o, &len);
    CHECK(ref_crc32(buf + HEADER, len - HEADER) == rd_u32(buf + 24));
    CHECK(rd_u32(buf + 12) == (o ? 1u : 0u));

    /* A capacity one byte short, or zero, is refused and nothing is written
     * to the buffer; *written says how many bytes it takes. */
    unsigned char *small = malloc(len);
    assert_non_null(small);
    memset(small, 0x5A, len);
    size_t written = 12345;
    CHECK_ST(aim_model_serialize(m, o, small, len - 1, &written), AIM_ERR_SHAPE_MISMATCH);
    CHECK(written == len);
    written = 12345;
    CHECK_ST(aim_model_serialize(m, o, small, 0, &written), AIM_ERR_SHAPE_MISMATCH);
    CHECK(written == len);
    for (size_t i = 0; i < len; i++) CHECK(small[i] == 0x5A);
    free(small);

    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m2 = MODEL_SENTINEL;
    aim_optimizer *o2 = OPT_SENTINEL;
    char msg[MSG_CAP];
    memset(msg, 'X', sizeof msg);
    CHECK_OK(aim_model_deserialize(&ta.allocator, buf, len, &m2, &o2, msg, sizeof msg));
    CHECK(msg[0] == '\0'); /* "" on success */
    CHECK(m2 != MODEL_SENTINEL && m2 != NULL);
    CHECK(o ? o2 != NULL && o2 != OPT_SENTINEL : o2 == NULL);
    expect_same_model(m, m2);
    if (o) CHECK(aim_optimizer_steps(o2) == aim_optimizer_steps(o));

    /* Serializing the copy gives back the same bytes: the format is a fixed
     * point, and the optimizer's moments came back bit for bit. */
    size_t len2;
    unsigned char *buf2 = serialize(m2, o2, &len2);
    CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);

    /* The copy trains like the original (predict already compared). */
    aim_optimizer_free(o2);
    aim_model_free(m2);
    CHECK(ta.live == 0);
    free(buf);
    aim_optimizer_free(o);
    aim_model_free(m);
}

static void test_roundtrip_every_layer_kind(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(CASES); i++) {
        roundtrip(&CASES[i], OPT_NONE);
        roundtrip(&CASES[i], (opt_kind)(OPT_SGD + i % (OPT_COUNT - 1)));
    }
}

/* Every optimizer kind on one model of each family. */
static void test_roundtrip_every_optimizer(void **state) {
    (void)state;
    const int fams[] = {C_DENSE_GLOROT, C_CONV_GROUPS, C_LSTM2_SEQ};
    for (size_t f = 0; f < ARRAY_LEN(fams); f++)
        for (int k = OPT_SGD; k < OPT_COUNT; k++) roundtrip(&CASES[fams[f]], (opt_kind)k);
}

/* An input-gradient-enabled copy still computes the input gradient. */
static void test_input_gradient_survives(void **state) {
    (void)state;
    const model_case *mc = &CASES[C_CONV_EXPLICIT];
    set_ctx("%s input gradient", mc->name);
    aim_model *m = build_case(mc, 5);
    size_t len;
    unsigned char *buf = serialize(m, NULL, &len);
    aim_model *m2 = NULL;
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &m2, NULL, NULL, 0));
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    float *x = malloc(2 * in * sizeof(float)), *dy = malloc(2 * out * sizeof(float));
    assert_true(x && dy);
    fill_uniform(x, 2 * in, 3, -1, 1);
    fill_uniform(dy, 2 * out, 4, -1, 1);
    const float *g1, *g2;
    size_t n1 = 0, n2 = 0;
    CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x, 2 * in, 2));
    CHECK_OK(aim_model_backward(m, dy, 2 * out));
    CHECK_OK(aim_model_input_gradient(m, 0, &g1, &n1));
    CHECK_OK(aim_model_forward(m2, AIM_MODE_TRAIN, x, 2 * in, 2));
    CHECK_OK(aim_model_backward(m2, dy, 2 * out));
    CHECK_OK(aim_model_input_gradient(m2, 0, &g2, &n2));
    CHECK(n1 == 2 * in && n2 == 2 * in);
    CHECK(memcmp(g1, g2, 2 * in * sizeof(float)) == 0);
    free(x);
    free(dy);
    free(buf);
    aim_model_free(m2);
    aim_model_free(m);
}

/* ======================================================================== */
/* 2. Resuming training                                                     */
/* ======================================================================== */

#define N_STEPS 3
#define M_STEPS 4

/* n steps, a round trip with the optimizer, then m more steps on both. */
static void resume_steps(const model_case *mc, opt_kind ok, unsigned n, unsigned m) {
    set_ctx("resume %s with %s (%u + %u steps)", mc->name, OPT_NAMES[ok], n, m);
    aim_model *a = build_case(mc, 9);
    aim_optimizer *oa = make_opt(ok, n_params(a));
    train(a, oa, 0, n);
    size_t len;
    unsigned char *buf = serialize(a, oa, &len);
    aim_model *b = NULL;
    aim_optimizer *ob = NULL;
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &b, &ob, NULL, 0));
    CHECK(ob != NULL);
    CHECK(aim_optimizer_steps(ob) == n);
    train(a, oa, n, m);
    train(b, ob, n, m);
    CHECK(aim_optimizer_steps(ob) == n + m);

    /* A run that never stopped. */
    aim_model *c = build_case(mc, 9);
    aim_optimizer *oc = make_opt(ok, n_params(c));
    train(c, oc, 0, n + m);

    float *pa, *pb, *pc;
    size_t na, nb, nc;
    CHECK_OK(aim_model_parameters(a, &pa, &na));
    CHECK_OK(aim_model_parameters(b, &pb, &nb));
    CHECK_OK(aim_model_parameters(c, &pc, &nc));
    CHECK(na == nb && na == nc);
    CHECK(memcmp(pa, pb, na * sizeof(float)) == 0);
    CHECK(memcmp(pa, pc, na * sizeof(float)) == 0);
    /* The optimizers' states too: all three serialize to the same bytes. */
    size_t la, lb, lc;
    unsigned char *ba = serialize(a, oa, &la), *bb = serialize(b, ob, &lb), *bc = serialize(c, oc, &lc);
    CHECK(la == lb && la == lc);
    CHECK(memcmp(ba, bb, la) == 0);
    CHECK(memcmp(ba, bc, la) == 0);
    /* ... and the weights moved: the comparison is not of untouched buffers. */
    CHECK(memcmp(buf + HEADER, ba + HEADER, len - HEADER) != 0);
    free(ba);
    free(bb);
    free(bc);
    free(buf);
    aim_optimizer_free(oa);
    aim_optimizer_free(ob);
    aim_optimizer_free(oc);
    aim_model_free(a);
    aim_model_free(b);
    aim_model_free(c);
}

static void resume(const model_case *mc, opt_kind ok) { resume_steps(mc, ok, N_STEPS, M_STEPS); }

static void test_resume_is_bit_exact(void **state) {
    (void)state;
    const int fams[] = {C_DENSE_GLOROT, C_DENSE_HE, C_CONV_SAME, C_MAX_POOL, C_LSTM1_SEQ, C_LSTM2, C_ATTENTION_NOBIAS};
    for (size_t f = 0; f < ARRAY_LEN(fams); f++)
        for (int k = OPT_SGD; k < OPT_COUNT; k++) resume(&CASES[fams[f]], (opt_kind)k);
}

/* ---- graphs ---------------------------------------------------------------- */

/* Every graph case round-trips with and without an optimizer: the same
 * inputs, outputs (in order), layers, shapes and parameter bits; the same
 * predictions bit for bit through aim_model_predict_multi(); the same bytes
 * when written again (so the loss weights came back too). */
static void test_roundtrip_graphs(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(GRAPH_CASES); i++) {
        roundtrip(&GRAPH_CASES[i], OPT_NONE);
        roundtrip(&GRAPH_CASES[i], OPT_ADAM);
        roundtrip(&GRAPH_CASES[i], (opt_kind)(OPT_SGD + i % (OPT_COUNT - 1)));
    }
}

/* Exact resume of graph training with Adam: 3 steps, a round trip with the
 * optimizer, 3 more steps on the original and on the copy, which must end
 * with the same parameter bits as each other and as a run that never
 * stopped. The two-output case's loss weights (2 and 0.25) scale its
 * gradients, so a copy that lost them would train differently. */
static void test_resume_graphs_adam(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(GRAPH_CASES); i++) resume_steps(&GRAPH_CASES[i], OPT_ADAM, 3, 3);
    resume_steps(&GRAPH_CASES[G_TWO_OUTPUTS], OPT_ADAMW, 3, 3);
    resume_steps(&GRAPH_CASES[G_TWO_OUTPUTS], OPT_SGD_MOMENTUM, 3, 3);
}

/* A copy of a two-input graph computes the gradients of both inputs, as
 * the original does. */
static void test_graph_input_gradients_survive(void **state) {
    (void)state;
    const model_case *mc = &GRAPH_CASES[G_TWO_INPUTS];
    set_ctx("%s input gradients", mc->name);
    aim_model *m = build_case(mc, 5);
    train(m, NULL, 0, 2);
    size_t len;
    unsigned char *buf = serialize(m, NULL, &len);
    aim_model *m2 = NULL;
    CHECK_OK(aim_model_deserialize(NULL, buf, len, &m2, NULL, NULL, 0));
    CHECK(aim_model_input_count(m2) == 2);
    io_bufs x, dy;
    io_alloc(&x, m, 0, 2);
    io_alloc(&dy, m, 1, 2);
    io_fill(&x, 2, 3, -1.0f, 1.0f);
    io_fill(&dy, 2, 4, -1.0f, 1.0f);
    const float *g[2][2];
    size_t ng[2][2];
    aim_model *both[2] = {m, m2};
    for (int w = 0; w < 2; w++) {
        forward_io(both[w], AIM_MODE_TRAIN, &x, 2);
        CHECK_OK(aim_model_set_output_grad(both[w], 0, dy.p[0], 2 * dy.size[0]));
        CHECK_OK(aim_model_backward(both[w], NULL, 0));
        for (size_t k = 0; k < 2; k++) CHECK_OK(aim_model_input_gradient(both[w], k, &g[w][k], &ng[w][k]));
    }
    for (size_t k = 0; k < 2; k++) {
        CHECK(ng[0][k] == 2 * x.size[k] && ng[1][k] == ng[0][k]);
        CHECK(memcmp(g[0][k], g[1][k], ng[0][k] * sizeof(float)) == 0);
    }
    io_free(&x);
    io_free(&dy);
    free(buf);
    aim_model_free(m2);
    aim_model_free(m);
}

/* The optimizer out-pointer: NULL when the buffer holds none; a buffer with
 * one may be read without it (nothing leaks); failures leave both alone. */
static void test_optimizer_out_pointer(void **state) {
    (void)state;
    set_ctx("optimizer out-pointer");
    aim_model *m = build_case(&CASES[C_DENSE_GLOROT], 1);
    aim_optimizer *o = make_opt(OPT_ADAM, n_params(m));
    train(m, o, 0, 2);
    size_t l0, l1;
    unsigned char *b0 = serialize(m, NULL, &l0), *b1 = serialize(m, o, &l1);
    CHECK(l1 == l0 + 4 + 8 + 8 + 16 + 8 + 8 * n_params(m));

    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m2 = MODEL_SENTINEL;
    aim_optimizer *o2 = OPT_SENTINEL;
    CHECK_OK(aim_model_deserialize(&ta.allocator, b0, l0, &m2, &o2, NULL, 0));
    CHECK(o2 == NULL);
    aim_model_free(m2);
    CHECK(ta.live == 0);

    m2 = MODEL_SENTINEL;
    CHECK_OK(aim_model_deserialize(&ta.allocator, b1, l1, &m2, NULL, NULL, 0));
    CHECK(m2 != MODEL_SENTINEL);
    expect_same_model(m, m2);
    aim_model_free(m2);
    CHECK(ta.live == 0);

    b1[l1 - 1] ^= 1; /* a CRC failure: nothing written */
    m2 = MODEL_SENTINEL;
    o2 = OPT_SENTINEL;
    char msg[MSG_CAP];
    CHECK_ST(aim_model_deserialize(&ta.allocator, b1, l1, &m2, &o2, msg, sizeof msg), AIM_ERR_CORRUPT_DATA);
    CHECK(m2 == MODEL_SENTINEL && o2 == OPT_SENTINEL);
    CHECK(msg[0] != '\0');
    CHECK(ta.live == 0);
    free(b0);
    free(b1);
    aim_optimizer_free(o);
    aim_model_free(m);
}

static void *null_alloc(void *c, size_t s) {
    (void)c;
    (void)s;
    return NULL;
}

static void test_argument_checks(void **state) {
    (void)state;
    set_ctx("argument checks");
    aim_model *m = build_case(&CASES[C_DENSE_GLOROT], 1);
    aim_optimizer *wrong = make_opt(OPT_ADAM, n_params(m) + 1);
    size_t len, nbytes = 7, written = 7;
    unsigned char *buf = serialize(m, NULL, &len);
    aim_model *m2 = MODEL_SENTINEL;
    char msg[MSG_CAP];
    CHECK_ST(aim_model_deserialize(NULL, NULL, len, &m2, NULL, msg, sizeof msg), AIM_ERR_INVALID_ARGUMENT);
    CHECK(msg[0] != '\0');
    CHECK_ST(aim_model_deserialize(NULL, buf, len, NULL, NULL, msg, sizeof msg), AIM_ERR_INVALID_ARGUMENT);
    CHECK(msg[0] != '\0');
    aim_allocator half = {NULL, null_alloc, NULL, NULL};
    CHECK_ST(aim_model_deserialize(&half, buf, len, &m2, NULL, msg, sizeof msg), AIM_ERR_INVALID_ARGUMENT);
    CHECK(msg[0] != '\0');
    CHECK(m2 == MODEL_SENTINEL);
    /* A message buffer without room is an argument error too, or is simply
     * not written: it must not be touched. */
    {
        char probe = 'X';
        aim_status st = aim_model_deserialize(NULL, buf, len, &m2, NULL, &probe, 0);
        CHECK(probe == 'X');
        if (st == AIM_OK) aim_model_free(m2);
        else CHECK(st == AIM_ERR_INVALID_ARGUMENT && m2 == MODEL_SENTINEL);
        m2 = MODEL_SENTINEL;
    }
    CHECK_ST(aim_model_serialized_size(NULL, NULL, &nbytes), AIM_ERR_INVALID_ARGUMENT);
    CHECK_ST(aim_model_serialized_size(m, NULL, NULL), AIM_ERR_INVALID_ARGUMENT);
    CHECK_ST(aim_model_serialized_size(m, wrong, &nbytes), AIM_ERR_SHAPE_MISMATCH);
    CHECK_ST(aim_model_serialize(m, wrong, buf, len, &written), AIM_ERR_SHAPE_MISMATCH);
    CHECK_ST(aim_model_serialize(m, NULL, NULL, len, &written), AIM_ERR_INVALID_ARGUMENT);
    CHECK_ST(aim_model_serialize(m, NULL, buf, len, NULL), AIM_ERR_INVALID_ARGUMENT);
    CHECK(nbytes == 7 && written == 7);
    aim_model *raw = NULL;
    const size_t d[1] = {3};
    CHECK_OK(aim_model_create(NULL, 1, d, &raw));
    add_dense(raw, 2, AIM_ACT_IDENTITY, 0.0f, 1, AIM_INIT_ZEROS);
    CHECK_ST(aim_model_serialized_size(raw, NULL, &nbytes), AIM_ERR_INVALID_STATE);
    CHECK_ST(aim_model_serialize(raw, NULL, buf, len, &written), AIM_ERR_INVALID_STATE);
    aim_model_free(raw);
    free(buf);
    aim_optimizer_free(wrong);
    aim_model_free(m);
}

/* ======================================================================== */
/* 3. Corruption                                                            */
/* ======================================================================== */

/* The message of a deserialization into msg[0..MSG_CAP), which was filled
 * with 'X' before the call: NUL-terminated within the buffer, "" on success
 * and words on a failure. */
static void check_message(aim_status st, const char *msg) {
    const char *nul = memchr(msg, '\0', MSG_CAP);
    if (!nul) fail_msg("%s: the message is not NUL-terminated within its %u bytes", g_ctx, (unsigned)MSG_CAP);
    if (st == AIM_OK && msg[0] != '\0') fail_msg("%s: success, but the message is \"%s\"", g_ctx, msg);
    if (st != AIM_OK && msg[0] == '\0') fail_msg("%s: \"%s\" with an empty message", g_ctx, aim_status_str(st));
}

/* Deserializes an exact-size heap copy of buf[0..len) and returns the status;
 * on failure checks that nothing leaked and no out-pointer was written, and
 * (always) the message, which is copied to msg (MSG_CAP bytes) if not NULL. */
static aim_status try_load_msg(const unsigned char *buf, size_t len, char *msg_out) {
    unsigned char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, buf, len);
    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m = MODEL_SENTINEL;
    aim_optimizer *o = OPT_SENTINEL;
    char msg[MSG_CAP];
    memset(msg, 'X', sizeof msg);
    aim_status st = aim_model_deserialize(&ta.allocator, copy, len, &m, &o, msg, sizeof msg);
    check_message(st, msg);
    if (st == AIM_OK) {
        aim_optimizer_free(o);
        aim_model_free(m);
    } else {
        CHECK(m == MODEL_SENTINEL && o == OPT_SENTINEL);
    }
    CHECK(ta.live == 0);
    free(copy);
    if (msg_out) memcpy(msg_out, msg, MSG_CAP);
    return st;
}

static aim_status try_load(const unsigned char *buf, size_t len) { return try_load_msg(buf, len, NULL); }

/* What a flip of byte i of the header must give: the version field decides
 * between VERSION (> FORMAT_VERSION) and CORRUPT (0, or 2 from version 3,
 * whose payload version 2 does not read; a flip of one, one or eight bits of
 * version 3 or 4 never gives 1, 3 or 4); every other byte is CORRUPT (magic,
 * flags, reserved, length, CRC - or, in the payload, the CRC). */
static aim_status expected_for_flip(const unsigned char *flipped, size_t i) {
    if (i >= 8 && i < 12) return rd_u32(flipped + 8) > FORMAT_VERSION ? AIM_ERR_VERSION : AIM_ERR_CORRUPT_DATA;
    return AIM_ERR_CORRUPT_DATA;
}

static void flip_sweep(const unsigned char *buf, size_t len, size_t stride) {
    static const unsigned char masks[] = {0x01, 0x80, 0xFF};
    unsigned char *b = malloc(len);
    assert_non_null(b);
    for (size_t i = 0; i < len; i += (i < HEADER ? 1 : stride)) {
        for (size_t k = 0; k < ARRAY_LEN(masks); k++) {
            memcpy(b, buf, len);
            b[i] = (unsigned char)(b[i] ^ masks[k]);
            aim_status want = expected_for_flip(b, i), got = try_load(b, len);
            if (got != want)
                fail_msg("%s: byte %zu ^ 0x%02x: got \"%s\", expected \"%s\"", g_ctx, i, masks[k],
                         aim_status_str(got), aim_status_str(want));
        }
    }
    free(b);
}

static void test_every_byte_flip_is_refused(void **state) {
    (void)state;
    static const struct {
        const model_case *mc;
        opt_kind o;
        size_t stride;
    } sweeps[] = {
        {&CASES[C_DENSE_GLOROT], OPT_ADAM, 1},      {&CASES[C_DENSE_ZEROS], OPT_SGD, 1},
        {&CASES[C_LSTM1], OPT_SGD_MOMENTUM, 1},     {&CASES[C_GLOBAL_POOL], OPT_NONE, 1},
        {&CASES[C_FLATTEN], OPT_ADAMW, 1},          {&CASES[C_CONV_EXPLICIT], OPT_ADAM, 7},
        {&CASES[C_LSTM2_SEQ], OPT_SGD_NESTEROV, 5}, {&GRAPH_CASES[G_TWO_OUTPUTS], OPT_ADAM, 1},
        {&GRAPH_CASES[G_TWO_INPUTS], OPT_NONE, 1},  {&GRAPH_CASES[G_CONCAT_CHANNELS], OPT_SGD, 3},
        {&CASES[C_ATTENTION_NOBIAS], OPT_SGD, 1},   {&GRAPH_CASES[G_GPT_BLOCK], OPT_ADAMW, 3},
    };
    for (size_t s = 0; s < ARRAY_LEN(sweeps); s++) {
        const model_case *mc = sweeps[s].mc;
        set_ctx("byte flips of %s with %s", mc->name, OPT_NAMES[sweeps[s].o]);
        aim_model *m = build_case(mc, 3);
        aim_optimizer *o = make_opt(sweeps[s].o, n_params(m));
        train(m, o, 0, 2);
        size_t len;
        unsigned char *buf = serialize(m, o, &len);
        CHECK(try_load(buf, len) == AIM_OK);
        flip_sweep(buf, len, sweeps[s].stride);
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
}

static void test_truncation_and_trailing_bytes(void **state) {
    (void)state;
    const model_case *const cs[] = {&CASES[C_DENSE_PYTORCH], &CASES[C_CONV_DILATION], &CASES[C_LSTM2],
                                    &CASES[C_ATTENTION_NOBIAS], &GRAPH_CASES[G_GPT_BLOCK]};
    for (size_t c = 0; c < ARRAY_LEN(cs); c++) {
        const model_case *mc = cs[c];
        set_ctx("truncations of %s", mc->name);
        aim_model *m = build_case(mc, 3);
        aim_optimizer *o = make_opt(c == 1 ? OPT_SGD_MOMENTUM : OPT_ADAM, n_params(m));
        size_t len;
        unsigned char *buf = serialize(m, o, &len);
        for (size_t n = 0; n < len; n++) {
            char msg[MSG_CAP];
            aim_status st = try_load_msg(buf, n, msg);
            if (st != AIM_ERR_CORRUPT_DATA) fail_msg("%s: length %zu of %zu: %s", g_ctx, n, len, aim_status_str(st));
            /* A whole header whose length the bytes after it fall short of:
             * the message says so. */
            if (n >= HEADER && !strstr(msg, "truncated"))
                fail_msg("%s: length %zu of %zu: the message \"%s\" does not say \"truncated\"", g_ctx, n, len, msg);
        }
        /* Truncated and re-sealed: the CRC is right, the content short. */
        unsigned char *b = malloc(len + 64);
        assert_non_null(b);
        for (size_t n = HEADER; n < len; n += (n < HEADER + 64 ? 1 : 3)) {
            memcpy(b, buf, n);
            reseal(b, n);
            aim_status st = try_load(b, n);
            if (st != AIM_ERR_CORRUPT_DATA)
                fail_msg("%s: resealed length %zu of %zu: %s", g_ctx, n, len, aim_status_str(st));
        }
        /* Trailing bytes, with the header as written and re-sealed. */
        const size_t extra[] = {1, 3, 4, 8, 64};
        for (size_t e = 0; e < ARRAY_LEN(extra); e++) {
            memcpy(b, buf, len);
            memset(b + len, 0, extra[e]);
            CHECK_ST(try_load(b, len + extra[e]), AIM_ERR_CORRUPT_DATA);
            reseal(b, len + extra[e]);
            CHECK_ST(try_load(b, len + extra[e]), AIM_ERR_CORRUPT_DATA);
        }
        free(b);
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
}

/* Models of one format-4 kind each, on one (3, 4) sample. */
static void l_only_attention(aim_model *m) {
    aim_attention_config c;
    CHECK_OK(aim_attention_config_init(&c, 2));
    CHECK_OK(aim_model_add_attention(m, &c));
}
static void l_only_pos_embedding(aim_model *m) { CHECK_OK(aim_model_add_positional_embedding(m, 3)); }
static void l_only_linear(aim_model *m) { add_linear(m, 2, AIM_ACT_RELU, 1, AIM_INIT_PYTORCH); }
/* A format-4 kind in a branch that is not the last layer: (3, 4) ->
 * positional embedding, and the input -> layer norm, summed. */
static void g_pos_embedding_branch(aim_model *m) {
    CHECK_OK(aim_model_add_positional_embedding(m, 4));
    const size_t a = last_node(m);
    CHECK_OK(aim_model_continue_from(m, AIM_MODEL_INPUT(0)));
    aim_layer_norm_config ln;
    CHECK_OK(aim_layer_norm_config_init(&ln));
    CHECK_OK(aim_model_add_layer_norm(m, &ln));
    const size_t sum[2] = {a, last_node(m)};
    CHECK_OK(aim_model_add_add(m, sum, 2));
}

/* The version a model is written in is the oldest that holds it: 3 unless a
 * layer is of kind 20-22 (attention, positional embedding, linear), then 4.
 * A version-4 buffer relabelled 3 (or 2, or 1) is refused as corrupt, its
 * message naming the first layer of a kind that version does not have. */
static void test_version_follows_the_kinds(void **state) {
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(CASES) + ARRAY_LEN(GRAPH_CASES); i++) {
        const int graph = i >= ARRAY_LEN(CASES);
        const model_case *mc = graph ? &GRAPH_CASES[i - ARRAY_LEN(CASES)] : &CASES[i];
        const int new_kinds = mc == &CASES[C_ATTENTION_NOBIAS] || mc == &GRAPH_CASES[G_GPT_BLOCK];
        set_ctx("version of %s", mc->name);
        aim_model *m = build_case(mc, 1);
        size_t len;
        unsigned char *buf = serialize(m, NULL, &len);
        CHECK(rd_u32(buf + 8) == (new_kinds ? FORMAT_VERSION : VERSION_OLD_KINDS));
        free(buf);
        aim_model_free(m);
    }
    static const struct {
        model_case mc;
        opt_kind o;
        const char *refusal; /* the message once relabelled 3 */
    } v4[] = {
        {{"only_attention", 2, {3, 4, 0}, l_only_attention, 0}, OPT_NONE, "layer 0: unknown kind 20"},
        {{"only_positional_embedding", 2, {3, 4, 0}, l_only_pos_embedding, 1}, OPT_ADAM,
         "layer 0: unknown kind 21"},
        {{"only_linear", 2, {3, 4, 0}, l_only_linear, 0}, OPT_SGD_MOMENTUM, "layer 0: unknown kind 22"},
        {{"positional_embedding_in_a_branch", 2, {3, 4, 0}, g_pos_embedding_branch, 0}, OPT_NONE,
         "layer 0: unknown kind 21"},
        {{"attention_noncausal_nobias", 2, {5, 4, 0}, l_attention_nobias, 1}, OPT_ADAMW,
         "layer 0: unknown kind 22"},
        {{"graph_gpt_block", 1, {6, 0, 0}, g_gpt_block, 0}, OPT_ADAM, "layer 1: unknown kind 21"},
    };
    for (size_t i = 0; i < ARRAY_LEN(v4); i++) {
        const model_case *mc = &v4[i].mc;
        set_ctx("version-4 %s with %s", mc->name, OPT_NAMES[v4[i].o]);
        aim_model *m = build_case(mc, 2);
        aim_optimizer *o = make_opt(v4[i].o, n_params(m));
        train(m, o, 0, 2);
        size_t len;
        unsigned char *buf = serialize(m, o, &len);
        CHECK(rd_u32(buf + 8) == FORMAT_VERSION);
        CHECK(try_load(buf, len) == AIM_OK);
        unsigned char *b = malloc(len);
        assert_non_null(b);
        for (uint32_t v = 1; v <= 3; v++) {
            memcpy(b, buf, len);
            wr_u32(b + 8, v);
            reseal(b, len); /* the CRC covers the payload: still right, and recomputed anyway */
            char msg[MSG_CAP];
            const aim_status st = try_load_msg(b, len, msg);
            if (st != AIM_ERR_CORRUPT_DATA)
                fail_msg("%s: relabelled %u: \"%s\" (%s)", g_ctx, (unsigned)v, aim_status_str(st), msg);
            /* Version 3 reads the same payload up to the first kind it lacks. */
            if (v == 3 && !strstr(msg, v4[i].refusal))
                fail_msg("%s: relabelled 3: the message \"%s\" does not say \"%s\"", g_ctx, msg, v4[i].refusal);
        }
        free(b);
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
}

static void test_header_fields(void **state) {
    (void)state;
    set_ctx("header fields");
    static const unsigned char vector[] = "123456789";
    CHECK(ref_crc32(vector, 9) == 0xCBF43926u); /* the CRC-32 check value */
    aim_model *m = build_case(&CASES[C_DENSE_HE], 3);
    size_t len;
    unsigned char *buf = serialize(m, NULL, &len);
    unsigned char *b = malloc(len);
    assert_non_null(b);
    CHECK(rd_u64(buf + 16) == len - HEADER);
    CHECK(rd_u32(buf + 28) == 0);
    /* The writer writes the oldest version that holds the model: 3 for kinds 0-19. */
    CHECK(rd_u32(buf + 8) == VERSION_OLD_KINDS);
    const uint32_t versions[] = {FORMAT_VERSION + 1, FORMAT_VERSION + 2, 0x100, 0x7FFFFFFF, 0xFFFFFFFF};
    for (size_t i = 0; i < ARRAY_LEN(versions); i++) {
        memcpy(b, buf, len);
        wr_u32(b + 8, versions[i]);
        CHECK_ST(try_load(b, len), AIM_ERR_VERSION);
    }
    /* The payloads of 3 and 4 differ only by the kinds 4 adds: a version-3
     * buffer relabelled 4 is the same model. */
    memcpy(b, buf, len);
    wr_u32(b + 8, 4);
    {
        aim_model *m4 = NULL;
        CHECK_OK(aim_model_deserialize(NULL, b, len, &m4, NULL, NULL, 0));
        expect_same_model(m, m4);
        aim_model_free(m4);
    }
    memcpy(b, buf, len);
    wr_u32(b + 8, 0);
    CHECK_ST(try_load(b, len), AIM_ERR_CORRUPT_DATA);
    const uint32_t flags[] = {2, 3, 0x80000000u, 0xFFFFFFFFu};
    for (size_t i = 0; i < ARRAY_LEN(flags); i++) {
        memcpy(b, buf, len);
        wr_u32(b + 12, flags[i]);
        CHECK_ST(try_load(b, len), AIM_ERR_CORRUPT_DATA);
    }
    memcpy(b, buf, len);
    wr_u32(b + 12, 1); /* claims an optimizer that is not there */
    CHECK_ST(try_load(b, len), AIM_ERR_CORRUPT_DATA);
    const uint64_t lengths[] = {0, len - HEADER - 1, len - HEADER + 1, UINT64_MAX, (uint64_t)1 << 63};
    for (size_t i = 0; i < ARRAY_LEN(lengths); i++) {
        memcpy(b, buf, len);
        wr_u64(b + 16, lengths[i]);
        CHECK_ST(try_load(b, len), AIM_ERR_CORRUPT_DATA);
    }
    memcpy(b, buf, len);
    wr_u32(b + 28, 1);
    CHECK_ST(try_load(b, len), AIM_ERR_CORRUPT_DATA);
    memcpy(b, buf, len);
    memcpy(b, "AIMD\n\n\x1a\n", 8); /* text-mode mangling of CR LF */
    CHECK_ST(try_load(b, len), AIM_ERR_CORRUPT_DATA);
    /* The header alone, or a header with an empty payload and valid CRC. */
    memcpy(b, buf, HEADER);
    reseal(b, HEADER);
    CHECK_ST(try_load(b, HEADER), AIM_ERR_CORRUPT_DATA);
    free(b);
    free(buf);
    aim_model_free(m);
}

/* Loads with an allocator capped at `cap` bytes a block; returns the status. On success
 * the model must predict on zeros, and (with an optimizer) train a step. */
static aim_status load_capped(const unsigned char *buf, size_t len, size_t cap, long *refusals) {
    unsigned char *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    capped_alloc ca;
    capped_init(&ca, cap);
    aim_model *m = MODEL_SENTINEL;
    aim_optimizer *o = OPT_SENTINEL;
    char msg[MSG_CAP];
    memset(msg, 'X', sizeof msg);
    aim_status st = aim_model_deserialize(&ca.allocator, copy, len, &m, &o, msg, sizeof msg);
    check_message(st, msg);
    if (st == AIM_OK) {
        /* One sample of zeros through every input, predicted into y. All
         * bits zero are 0.0f and id 0, which every table holds: the _typed
         * calls take each input as declared. */
        io_bufs x, y;
        io_alloc(&x, m, 0, 1);
        io_alloc(&y, m, 1, 1);
        const void *in[AIM_MAX_NODE_INPUTS];
        float *out[AIM_MAX_NODE_INPUTS];
        size_t in_counts[AIM_MAX_NODE_INPUTS], out_counts[AIM_MAX_NODE_INPUTS];
        for (size_t k = 0; k < x.n; k++) {
            memset(x.p[k], 0, x.size[k] * sizeof(float));
            in[k] = x.p[k];
            in_counts[k] = x.size[k];
        }
        for (size_t k = 0; k < y.n; k++) {
            memset(y.p[k], 0, y.size[k] * sizeof(float));
            out[k] = y.p[k];
            out_counts[k] = y.size[k];
        }
        aim_workspace *ws = NULL;
        aim_status ws_st = aim_workspace_create(m, &ca.allocator, 1, &ws);
        CHECK(ws_st == AIM_OK || ws_st == AIM_ERR_OUT_OF_MEMORY);
        if (ws) CHECK_OK(aim_model_predict_typed(m, ws, in, in_counts, x.n, 1, out, out_counts, y.n));
        aim_workspace_free(ws);
        if (o) {
            float loss;
            aim_status ls = AIM_OK;
            CHECK_OK(aim_model_zero_grad(m));
            CHECK_OK(aim_model_forward_typed(m, AIM_MODE_TRAIN, in, in_counts, x.n, 1));
            for (size_t k = 0; k < y.n && ls == AIM_OK; k++) ls = aim_model_loss(m, k, AIM_LOSS_MSE, y.p[k], y.size[k], &loss);
            if (ls == AIM_OK) {
                CHECK_OK(aim_model_backward(m, NULL, 0));
                aim_status os = aim_optimizer_step_model(o, m, 0.01f);
                CHECK(os == AIM_OK || os == AIM_ERR_NON_FINITE);
            } else {
                CHECK(ls == AIM_ERR_NON_FINITE);
            }
        }
        io_free(&x);
        io_free(&y);
        aim_optimizer_free(o);
        aim_model_free(m);
    } else {
        CHECK(m == MODEL_SENTINEL && o == OPT_SENTINEL);
    }
    CHECK(ca.live == 0);
    if (refusals) *refusals = ca.refusals;
    free(copy);
    return st;
}

#define ST_BIT(s) (1u << (unsigned)(s))
#define REFUSED (ST_BIT(AIM_ERR_CORRUPT_DATA) | ST_BIT(AIM_ERR_OUT_OF_MEMORY) | ST_BIT(AIM_ERR_OVERFLOW))

/* Flips every payload byte and re-seals the CRC, so the flip reaches the
 * field parser: any field may now hold any value. Whatever it holds, the
 * result is OK (a valid model, which must then run) or a refusal. */
static void test_resealed_flips_never_crash(void **state) {
    (void)state;
    static const struct {
        const model_case *mc;
        opt_kind o;
    } sweeps[] = {
        {&CASES[C_DENSE_GLOROT], OPT_ADAM}, {&CASES[C_ACTIVATIONS], OPT_SGD_MOMENTUM}, {&CASES[C_CONV_SAME], OPT_SGD},
        {&CASES[C_AVG_POOL], OPT_NONE},     {&CASES[C_LSTM2_SEQ], OPT_ADAMW},
        /* The graph records: inputs, merge layers and their node lists, outputs and weights. */
        {&GRAPH_CASES[G_TWO_INPUTS], OPT_NONE},      {&GRAPH_CASES[G_ADD_THREE], OPT_SGD},
        {&GRAPH_CASES[G_CONCAT_CHANNELS], OPT_NONE}, {&GRAPH_CASES[G_TWO_OUTPUTS], OPT_ADAM},
        {&GRAPH_CASES[G_TIME_CONCAT], OPT_NONE},
        /* Format 4: the attention, positional embedding and linear records. */
        {&CASES[C_ATTENTION_NOBIAS], OPT_NONE},      {&GRAPH_CASES[G_GPT_BLOCK], OPT_ADAM},
    };
    static const unsigned char masks[] = {0xFF, 0x01, 0x40};
    for (size_t s = 0; s < ARRAY_LEN(sweeps); s++) {
        const model_case *mc = sweeps[s].mc;
        aim_model *m = build_case(mc, 3);
        aim_optimizer *o = make_opt(sweeps[s].o, n_params(m));
        train(m, o, 0, 1);
        size_t len, ok = 0, refused = 0;
        unsigned char *buf = serialize(m, o, &len);
        unsigned char *b = malloc(len);
        assert_non_null(b);
        /* Every byte of the architecture part; a stride through the floats. */
        size_t model_only;
        CHECK_OK(aim_model_serialized_size(m, NULL, &model_only));
        const size_t floats_from = model_only - 4 * n_params(m);
        for (size_t i = HEADER; i < len; i += (i < floats_from ? 1 : 13)) {
            for (size_t k = 0; k < ARRAY_LEN(masks); k++) {
                set_ctx("resealed flip of %s with %s: byte %zu ^ 0x%02x", mc->name, OPT_NAMES[sweeps[s].o], i,
                        masks[k]);
                memcpy(b, buf, len);
                b[i] = (unsigned char)(b[i] ^ masks[k]);
                reseal(b, len);
                /* 4 MiB a block: ample for these models, and it keeps a flip
                 * to max_batch or a dimension from costing seconds. */
                aim_status st = load_capped(b, len, (size_t)4 << 20, NULL);
                if (st == AIM_OK) ok++;
                else if (ST_BIT(st) & REFUSED) refused++;
                else fail_msg("%s: unexpected status \"%s\"", g_ctx, aim_status_str(st));
            }
        }
        print_message("resealed flips of %s: %zu loaded, %zu refused\n", mc->name, ok, refused);
        free(b);
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
}

/* ---- crafted payloads with a valid CRC ----------------------------------- */

/* The fields of a one-dense-layer payload, each of which a case may make lie. */
typedef struct dense_spec {
    uint32_t rank;
    uint64_t dims[3];
    uint64_t max_batch;
    uint32_t input_gradient, layer_count, kind;
    uint64_t units;
    uint32_t act;
    float alpha;
    uint32_t use_bias, init;
    uint64_t param_count;
    size_t floats; /* how many floats actually follow */
} dense_spec;

static dense_spec dense_default(void) { /* 3 -> dense 2 relu: 8 parameters */
    dense_spec s = {1, {3, 0, 0}, 2, 0, 1, 0, 2, AIM_ACT_RELU, 0.01f, 1, AIM_INIT_GLOROT_UNIFORM, 8, 8};
    return s;
}

static void put_head(bytes *b, uint32_t rank, const uint64_t *dims, uint64_t max_batch, uint32_t igrad,
                     uint32_t layers) {
    b_u32(b, rank);
    for (uint32_t i = 0; i < rank && i < 3; i++) b_u64(b, dims[i]);
    b_u64(b, max_batch);
    b_u32(b, igrad);
    b_u32(b, layers);
}
static void put_params(bytes *b, uint64_t count, size_t floats) {
    b_u64(b, count);
    for (size_t i = 0; i < floats; i++) b_f32(b, (float)i * 0.125f - 0.5f);
}
static void put_dense_rec(bytes *b, uint64_t units, uint32_t act, float alpha, uint32_t bias, uint32_t init) {
    b_u32(b, 0);
    b_u64(b, units);
    b_u32(b, act);
    b_f32(b, alpha);
    b_u32(b, bias);
    b_u32(b, init);
}
static void put_dense_spec(bytes *b, const dense_spec *s) {
    put_head(b, s->rank, s->dims, s->max_batch, s->input_gradient, s->layer_count);
    b_u32(b, s->kind);
    b_u64(b, s->units);
    b_u32(b, s->act);
    b_f32(b, s->alpha);
    b_u32(b, s->use_bias);
    b_u32(b, s->init);
    put_params(b, s->param_count, s->floats);
}

/* Seals a payload and loads it with the capped allocator; the status must be
 * in `allowed` (a mask of ST_BIT). */
static aim_status expect_payload(const bytes *p, uint32_t flags, unsigned allowed, const char *what) {
    size_t len;
    unsigned char *buf = seal(p, flags, &len);
    long refusals = 0;
    aim_status st = load_capped(buf, len, CAP_BYTES, &refusals);
    free(buf);
    if (!(ST_BIT(st) & allowed)) fail_msg("%s: %s: got \"%s\"", g_ctx, what, aim_status_str(st));
    return st;
}

#define CORRUPT ST_BIT(AIM_ERR_CORRUPT_DATA)
#define OK_ONLY ST_BIT(AIM_OK)

static void dense_case(const dense_spec *s, unsigned allowed, const char *what) {
    bytes p = {0};
    put_dense_spec(&p, s);
    (void)expect_payload(&p, 0, allowed, what);
    b_free(&p);
}

static void test_crafted_dense_fields(void **state) {
    (void)state;
    set_ctx("crafted dense payload");
    dense_spec s = dense_default();
    /* The hand-written payload is valid, and its floats land in the model. */
    {
        bytes p = {0};
        put_dense_spec(&p, &s);
        size_t len;
        unsigned char *buf = seal(&p, 0, &len);
        aim_model *m = NULL;
        CHECK_OK(aim_model_deserialize(NULL, buf, len, &m, NULL, NULL, 0));
        float *pp;
        size_t n;
        CHECK_OK(aim_model_parameters(m, &pp, &n));
        CHECK(n == 8);
        for (size_t i = 0; i < n; i++) CHECK(pp[i] == (float)i * 0.125f - 0.5f);
        aim_model_free(m);
        free(buf);
        b_free(&p);
    }
#define LIE(field, value, allowed)                                                                 \
    do {                                                                                           \
        s = dense_default();                                                                       \
        s.field = (value);                                                                         \
        dense_case(&s, (allowed), #field " = " #value);                                            \
    } while (0)
    LIE(rank, 0, CORRUPT);
    LIE(rank, 4, CORRUPT);
    LIE(rank, 0xFFFFFFFFu, CORRUPT);
    LIE(dims[0], 0, CORRUPT);
    LIE(dims[0], (uint64_t)1 << 31, CORRUPT); /* one sample over INT_MAX floats */
    LIE(dims[0], UINT64_MAX, CORRUPT);
    LIE(max_batch, 0, CORRUPT);
    LIE(max_batch, UINT64_MAX, CORRUPT | ST_BIT(AIM_ERR_OVERFLOW));
    LIE(max_batch, (uint64_t)1 << 31, REFUSED); /* over the BLAS limit */
    LIE(max_batch, (uint64_t)1 << 62, REFUSED);
    LIE(layer_count, 0, CORRUPT);
    LIE(layer_count, 2, CORRUPT);
    LIE(layer_count, 0xFFFFFFFFu, CORRUPT);
    LIE(kind, 8, CORRUPT);
    LIE(kind, 0x80000000u, CORRUPT);
    LIE(kind, 0xFFFFFFFFu, CORRUPT);
    LIE(units, 0, CORRUPT);
    LIE(units, 3, CORRUPT); /* 12 parameters implied, 8 stored */
    LIE(units, (uint64_t)1 << 40, CORRUPT);
    LIE(units, 0x7FFFFFFF, CORRUPT);
    LIE(units, UINT64_MAX, CORRUPT);
    LIE(act, 7, CORRUPT);
    LIE(act, 0x80000000u, CORRUPT);
    LIE(act, 0xFFFFFFFFu, CORRUPT);
    LIE(init, 4, CORRUPT);
    LIE(init, 0xFFFFFFFFu, CORRUPT);
    LIE(use_bias, 0, CORRUPT); /* 6 parameters implied, 8 stored */
    LIE(param_count, 7, CORRUPT);
    LIE(param_count, 9, CORRUPT);
    LIE(param_count, 0, CORRUPT);
    LIE(param_count, (uint64_t)1 << 62, CORRUPT);
    LIE(param_count, UINT64_MAX, CORRUPT);
    LIE(floats, 7, CORRUPT);
    LIE(floats, 9, CORRUPT);
    LIE(floats, 0, CORRUPT);
    /* Values any float may take are not the reader's to judge. */
    LIE(alpha, NAN, OK_ONLY);
    LIE(alpha, -INFINITY, OK_ONLY);
    /* Rank 2 and 3 inputs whose product overflows or exceeds INT_MAX. */
    s = dense_default();
    s.rank = 2;
    s.dims[0] = s.dims[1] = (uint64_t)1 << 32;
    dense_case(&s, CORRUPT, "dims 2^32 x 2^32");
    s.rank = 3;
    s.dims[0] = s.dims[1] = s.dims[2] = (uint64_t)1 << 21;
    dense_case(&s, CORRUPT, "dims 2^21 x 2^21 x 2^21");
    s.dims[0] = 1;
    s.dims[1] = 3;
    s.dims[2] = 0;
    dense_case(&s, CORRUPT, "dims 1 x 3 x 0");
#undef LIE
}

/* Loads a version-1 dense payload and serializes the model again (in the
 * current version); NULL when the reader refused it (CORRUPT only). */
static unsigned char *reserialize_dense(const dense_spec *s, size_t *len2) {
    bytes p = {0};
    put_dense_spec(&p, s);
    size_t len;
    unsigned char *buf = seal(&p, 0, &len);
    aim_model *m = NULL;
    char msg[MSG_CAP];
    memset(msg, 'X', sizeof msg);
    aim_status st = aim_model_deserialize(NULL, buf, len, &m, NULL, msg, sizeof msg);
    check_message(st, msg);
    CHECK(st == AIM_OK || st == AIM_ERR_CORRUPT_DATA);
    unsigned char *again = NULL;
    if (st == AIM_OK) {
        again = serialize(m, NULL, len2);
        aim_model_free(m);
    }
    free(buf);
    b_free(&p);
    return again;
}

/* Flags are written 0 or 1. A reader may refuse other values or take them
 * as 1; either way it must not keep a non-canonical value: the copy writes
 * what the same payload with the flag 1 gives, byte for byte. (The copy is
 * written in the current format version, so the flag is compared through
 * the canonical payload's copy rather than at a version-1 offset.) */
static void test_noncanonical_flags(void **state) {
    (void)state;
    set_ctx("non-canonical flags");
    const uint32_t values[] = {2, 0x80000000u, 0xFFFFFFFFu};
    for (int which = 0; which < 2; which++) {
        dense_spec s = dense_default();
        if (which == 0) s.input_gradient = 1;
        else s.use_bias = 1;
        size_t len1 = 0;
        unsigned char *canonical = reserialize_dense(&s, &len1);
        CHECK(canonical != NULL);
        /* ... and the flag matters: 0 writes other bytes. */
        if (which == 0) {
            s.input_gradient = 0;
            size_t len0 = 0;
            unsigned char *zero = reserialize_dense(&s, &len0);
            CHECK(zero != NULL);
            CHECK(len0 != len1 || memcmp(zero, canonical, len0) != 0);
            free(zero);
        }
        for (size_t i = 0; i < ARRAY_LEN(values); i++) {
            s = dense_default();
            if (which == 0) s.input_gradient = values[i];
            else s.use_bias = values[i];
            size_t len2 = 0;
            unsigned char *again = reserialize_dense(&s, &len2);
            if (again) {
                CHECK(len2 == len1);
                CHECK(memcmp(again, canonical, len1) == 0);
                free(again);
            }
        }
        free(canonical);
    }
}

typedef struct conv_spec {
    uint64_t in[3];
    uint64_t f[12]; /* filters, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, groups */
    uint32_t act;
    uint32_t bias, init;
    uint64_t params;
} conv_spec;

static conv_spec conv_default(void) { /* 2x5x5 -> conv 3 filters 3x3: 57 parameters */
    conv_spec s = {{2, 5, 5}, {3, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1}, AIM_ACT_RELU, 1, AIM_INIT_GLOROT_UNIFORM, 57};
    return s;
}

static void put_conv_spec(bytes *p, const conv_spec *s) {
    put_head(p, 3, s->in, 2, 0, 1);
    b_u32(p, 2);
    for (size_t i = 0; i < 12; i++) b_u64(p, s->f[i]);
    b_u32(p, s->act);
    b_f32(p, 0.01f);
    b_u32(p, s->bias);
    b_u32(p, s->init);
    put_params(p, s->params, (size_t)s->params);
}

static void conv_case(const conv_spec *s, unsigned allowed, const char *what) {
    bytes p = {0};
    put_conv_spec(&p, s);
    (void)expect_payload(&p, 0, allowed, what);
    b_free(&p);
}

static void test_crafted_conv_fields(void **state) {
    (void)state;
    set_ctx("crafted conv2d payload");
    conv_spec s = conv_default();
    conv_case(&s, OK_ONLY, "valid");
    {
        /* The message names the layer, its kind and the field (include/aimodel.h:
         * "layer 3 (conv2d): kernel height 0"). */
        bytes p = {0};
        s.f[1] = 0;
        put_conv_spec(&p, &s);
        size_t len;
        unsigned char *buf = seal(&p, 0, &len);
        char msg[MSG_CAP];
        CHECK_ST(try_load_msg(buf, len, msg), AIM_ERR_CORRUPT_DATA);
        if (!strstr(msg, "layer 0 (conv2d)") || !strstr(msg, "kernel height 0"))
            fail_msg("%s: kernel height 0 gave the message \"%s\"", g_ctx, msg);
        free(buf);
        b_free(&p);
        s = conv_default();
    }
#define LIE(field, value, allowed)                                                                 \
    do {                                                                                           \
        s = conv_default();                                                                        \
        s.field = (value);                                                                         \
        conv_case(&s, (allowed), #field " = " #value);                                             \
    } while (0)
    for (size_t i = 0; i < 7; i++) LIE(f[i], 0, CORRUPT); /* filters, kernel, stride, dilation */
    LIE(f[11], 0, CORRUPT);                              /* groups */
    LIE(f[11], 2, CORRUPT);                              /* does not divide 3 filters */
    LIE(f[11], 3, CORRUPT);                              /* does not divide 2 channels */
    LIE(f[1], 6, CORRUPT);                               /* kernel taller than the input */
    LIE(f[5], 3, CORRUPT);                               /* dilated extent 7 > 5 */
    LIE(f[1], UINT64_MAX, CORRUPT);
    LIE(f[5], UINT64_MAX, CORRUPT);
    LIE(f[7], (uint64_t)1 << 63, CORRUPT);
    LIE(f[8], UINT64_MAX, CORRUPT);
    LIE(f[9], (uint64_t)1 << 40, CORRUPT); /* output over INT_MAX */
    LIE(f[0], (uint64_t)1 << 40, CORRUPT);
    LIE(f[3], (uint64_t)1 << 62, OK_ONLY); /* a huge stride is valid: one output row */
    LIE(f[7], 2, OK_ONLY);                 /* padding changes the shape, not the parameters */
    LIE(act, AIM_ACT_SOFTMAX, CORRUPT);    /* fused softmax is refused by the builder */
    LIE(act, 7, CORRUPT);
    LIE(act, 0xFFFFFFFFu, CORRUPT);
    LIE(init, 4, CORRUPT);
    LIE(bias, 0, CORRUPT); /* 54 implied, 57 stored */
    LIE(params, 56, CORRUPT);
    LIE(params, 58, CORRUPT);
    /* Conv on a rank-1 input. */
    {
        bytes p = {0};
        const uint64_t d[1] = {50};
        s = conv_default();
        put_head(&p, 1, d, 2, 0, 1);
        b_u32(&p, 2);
        for (size_t i = 0; i < 12; i++) b_u64(&p, s.f[i]);
        b_u32(&p, s.act);
        b_f32(&p, 0.01f);
        b_u32(&p, 1);
        b_u32(&p, 0);
        put_params(&p, 57, 57);
        (void)expect_payload(&p, 0, CORRUPT, "conv2d after a rank-1 input");
        b_free(&p);
    }
    /* Huge but consistent: 1x1x1 input padded by 3000 on every side, one
     * 1x1 filter: 6001 x 6001 outputs, 144 MB per activation. */
    {
        s = conv_default();
        s.in[0] = s.in[1] = s.in[2] = 1;
        uint64_t f[12] = {1, 1, 1, 1, 1, 1, 1, 3000, 3000, 3000, 3000, 1};
        memcpy(s.f, f, sizeof f);
        s.bias = 0;
        s.params = 1;
        conv_case(&s, ST_BIT(AIM_ERR_OUT_OF_MEMORY) | ST_BIT(AIM_ERR_OVERFLOW), "padding 3000, consistent");
    }
#undef LIE
}

static void pool_case(uint32_t kind, const uint64_t f[6], const uint64_t in[3], uint32_t rank, unsigned allowed,
                      const char *what) {
    bytes p = {0};
    put_head(&p, rank, in, 2, 0, 1);
    b_u32(&p, kind);
    for (size_t i = 0; i < 6; i++) b_u64(&p, f[i]);
    put_params(&p, 0, 0);
    (void)expect_payload(&p, 0, allowed, what);
    b_free(&p);
}

static void test_crafted_pool_flatten_fields(void **state) {
    (void)state;
    set_ctx("crafted pooling payload");
    const uint64_t in[3] = {2, 6, 6};
    for (uint32_t kind = 3; kind <= 4; kind++) {
        const uint64_t ok[6] = {2, 2, 2, 2, 1, 1};
        pool_case(kind, ok, in, 3, OK_ONLY, "valid");
        pool_case(kind, ok, in, 1, CORRUPT, "after a rank-1 input");
        pool_case(kind, ok, in, 2, CORRUPT, "after a rank-2 input");
        const struct {
            size_t field;
            uint64_t value;
            unsigned allowed;
        } lies[] = {
            {0, 0, CORRUPT},          {1, 0, CORRUPT},          {2, 0, CORRUPT},
            {3, 0, CORRUPT},          {4, 2, CORRUPT},          {5, 2, CORRUPT}, /* padding over half the window */
            {0, 9, CORRUPT},          {0, UINT64_MAX, CORRUPT}, {4, UINT64_MAX, CORRUPT},
            {2, UINT64_MAX, OK_ONLY}, {1, 6, OK_ONLY},
        };
        for (size_t i = 0; i < ARRAY_LEN(lies); i++) {
            uint64_t f[6];
            memcpy(f, ok, sizeof f);
            f[lies[i].field] = lies[i].value;
            char what[64];
            snprintf(what, sizeof what, "kind %u field %zu = %llu", kind, lies[i].field,
                     (unsigned long long)lies[i].value);
            pool_case(kind, f, in, 3, lies[i].allowed, what);
        }
    }
    /* Global pooling and flatten: records of the kind alone. */
    const struct {
        uint32_t rank;
        uint32_t kind;
        unsigned allowed;
    } bare[] = {
        {3, 5, OK_ONLY}, {1, 5, CORRUPT}, {2, 5, CORRUPT}, {1, 6, OK_ONLY}, {2, 6, OK_ONLY}, {3, 6, OK_ONLY},
    };
    for (size_t i = 0; i < ARRAY_LEN(bare); i++) {
        bytes p = {0};
        put_head(&p, bare[i].rank, in, 2, 0, 1);
        b_u32(&p, bare[i].kind);
        put_params(&p, 0, 0);
        (void)expect_payload(&p, 0, bare[i].allowed, "global pool / flatten");
        b_free(&p);
    }
    /* Many parameter-free layers: each record is 4 bytes, as the count check assumes. */
    {
        bytes p = {0};
        put_head(&p, 3, in, 2, 0, 300);
        for (int i = 0; i < 300; i++) b_u32(&p, 6);
        put_params(&p, 0, 0);
        (void)expect_payload(&p, 0, OK_ONLY, "300 flatten layers");
        b_free(&p);
    }
    /* Huge but consistent: a 16384 x 16384 sample flattened, 1 GiB per sample. */
    {
        bytes p = {0};
        const uint64_t big[2] = {16384, 16384};
        put_head(&p, 2, big, 1, 0, 1);
        b_u32(&p, 6);
        put_params(&p, 0, 0);
        (void)expect_payload(&p, 0, ST_BIT(AIM_ERR_OUT_OF_MEMORY), "flatten of 2^28 floats");
        b_free(&p);
    }
}

static void lstm_case(uint32_t rank, const uint64_t in[3], uint64_t hidden, uint64_t layers, uint32_t seq,
                      uint32_t init, uint64_t params, unsigned allowed, const char *what) {
    bytes p = {0};
    put_head(&p, rank, in, 2, 0, 1);
    b_u32(&p, 7);
    b_u64(&p, hidden);
    b_u64(&p, layers);
    b_u32(&p, seq);
    b_u32(&p, init);
    put_params(&p, params, params < 4096 ? (size_t)params : 0);
    (void)expect_payload(&p, 0, allowed, what);
    b_free(&p);
}

static void test_crafted_lstm_fields(void **state) {
    (void)state;
    set_ctx("crafted lstm payload");
    const uint64_t in[3] = {4, 3, 0};
    /* 4H (F + H) + 8H with F = 3, H = 2: 56; a second layer adds 4H (2H) + 8H = 48. */
    lstm_case(2, in, 2, 1, 0, AIM_INIT_PYTORCH, 56, OK_ONLY, "valid");
    lstm_case(2, in, 2, 1, 1, AIM_INIT_PYTORCH, 56, OK_ONLY, "valid, sequences");
    lstm_case(2, in, 2, 2, 1, AIM_INIT_ZEROS, 104, OK_ONLY, "valid, 2 layers");
    lstm_case(2, in, 2, 2, 1, AIM_INIT_ZEROS, 56, CORRUPT, "2 layers, 1 layer's parameters");
    lstm_case(2, in, 0, 1, 0, 1, 0, CORRUPT, "hidden 0");
    lstm_case(2, in, 2, 0, 0, 1, 0, CORRUPT, "layers 0");
    lstm_case(2, in, 2, 17, 0, 1, 56, CORRUPT, "layers 17");
    lstm_case(2, in, 2, UINT64_MAX, 0, 1, 56, CORRUPT, "layers 2^64-1");
    lstm_case(2, in, UINT64_MAX, 1, 0, 1, 56, CORRUPT, "hidden 2^64-1");
    lstm_case(2, in, (uint64_t)1 << 31, 1, 0, 1, 56, CORRUPT, "hidden 2^31");
    lstm_case(2, in, (uint64_t)1 << 20, 16, 0, 1, 56, CORRUPT, "hidden 2^20, 16 layers");
    lstm_case(2, in, 2, 1, 0, 4, 56, CORRUPT, "init 4");
    lstm_case(2, in, 2, 1, 0, 0xFFFFFFFFu, 56, CORRUPT, "init 2^32-1");
    const uint64_t flat[3] = {12, 0, 0}, img[3] = {1, 4, 3};
    lstm_case(1, flat, 2, 1, 0, 1, 56, CORRUPT, "after a rank-1 input");
    lstm_case(3, img, 2, 1, 0, 1, 56, CORRUPT, "after a rank-3 input");
    /* Huge but consistent: 2^24 steps of one feature, hidden 1 (16
     * parameters); the training cache alone is 6 * 2^24 floats per sample. */
    const uint64_t longseq[3] = {(uint64_t)1 << 24, 1, 0};
    lstm_case(2, longseq, 1, 1, 1, 1, 16, ST_BIT(AIM_ERR_OUT_OF_MEMORY) | ST_BIT(AIM_ERR_OVERFLOW) | CORRUPT,
              "2^24 steps");
}

/* Optimizer records after the default dense payload (8 parameters). */
typedef struct opt_spec {
    uint32_t kind;
    uint64_t count, steps;
    float h[4];     /* SGD: momentum, dampening, weight_decay; Adam: beta1, beta2, epsilon, weight_decay */
    uint32_t u[3];  /* SGD: nesterov, check_finite, has_buffer; Adam: decoupled, check_finite */
    size_t floats;  /* floats that follow */
} opt_spec;

static opt_spec sgd_default(void) {
    opt_spec s = {0, 8, 5, {0.9f, 0.0f, 0.0f, 0.0f}, {0, 0, 1}, 8};
    return s;
}
static opt_spec adam_default(void) {
    opt_spec s = {1, 8, 3, {0.9f, 0.999f, 1e-8f, 0.0f}, {0, 0, 0}, 16};
    return s;
}

static aim_status opt_case(const opt_spec *o, uint32_t flags, unsigned allowed, const char *what) {
    bytes p = {0};
    dense_spec d = dense_default();
    put_dense_spec(&p, &d);
    b_u32(&p, o->kind);
    b_u64(&p, o->count);
    b_u64(&p, o->steps);
    const int sgd = o->kind == 0;
    for (int i = 0; i < (sgd ? 3 : 4); i++) b_f32(&p, o->h[i]);
    for (int i = 0; i < (sgd ? 3 : 2); i++) b_u32(&p, o->u[i]);
    for (size_t i = 0; i < o->floats; i++) b_f32(&p, 0.01f * (float)i);
    aim_status st = expect_payload(&p, flags, allowed, what);
    b_free(&p);
    return st;
}

static void test_crafted_optimizer_fields(void **state) {
    (void)state;
    set_ctx("crafted optimizer record");
    opt_spec s = sgd_default();
    (void)opt_case(&s, 1, OK_ONLY, "valid SGD with momentum");
    (void)opt_case(&s, 0, CORRUPT, "valid SGD, flag clear (trailing bytes)");
    s = adam_default();
    (void)opt_case(&s, 1, OK_ONLY, "valid Adam");
    {
        /* The step count is restored. */
        bytes p = {0};
        dense_spec d = dense_default();
        put_dense_spec(&p, &d);
        b_u32(&p, 1);
        b_u64(&p, 8);
        b_u64(&p, 123456789);
        b_f32(&p, 0.9f);
        b_f32(&p, 0.999f);
        b_f32(&p, 1e-8f);
        b_f32(&p, 0.0f);
        b_u32(&p, 1);
        b_u32(&p, 1);
        for (int i = 0; i < 16; i++) b_f32(&p, 0.5f);
        size_t len;
        unsigned char *buf = seal(&p, 1, &len);
        aim_model *m = NULL;
        aim_optimizer *o = NULL;
        CHECK_OK(aim_model_deserialize(NULL, buf, len, &m, &o, NULL, 0));
        CHECK(aim_optimizer_steps(o) == 123456789u);
        aim_optimizer_free(o);
        aim_model_free(m);
        free(buf);
        b_free(&p);
    }
    /* No record though the flag says one follows. */
    {
        bytes p = {0};
        dense_spec d = dense_default();
        put_dense_spec(&p, &d);
        (void)expect_payload(&p, 1, CORRUPT, "flag set, no record");
        b_u32(&p, 0);
        (void)expect_payload(&p, 1, CORRUPT, "flag set, kind only");
        b_free(&p);
    }
#define LIE(base, field, value, allowed)                                                           \
    do {                                                                                           \
        s = base();                                                                                \
        s.field = (value);                                                                         \
        (void)opt_case(&s, 1, (allowed), #base ": " #field " = " #value);                          \
    } while (0)
    LIE(sgd_default, kind, 2, CORRUPT);
    LIE(sgd_default, kind, 0xFFFFFFFFu, CORRUPT);
    LIE(sgd_default, count, 7, CORRUPT);
    LIE(sgd_default, count, 9, CORRUPT);
    LIE(sgd_default, count, 0, CORRUPT);
    LIE(sgd_default, count, UINT64_MAX, CORRUPT);
    LIE(sgd_default, u[2], 0, CORRUPT); /* momentum without its buffer */
    LIE(sgd_default, u[2], 2, CORRUPT);
    LIE(sgd_default, h[0], 0.0f, CORRUPT); /* a buffer without momentum */
    LIE(sgd_default, h[0], NAN, CORRUPT);
    LIE(sgd_default, h[0], INFINITY, CORRUPT);
    LIE(sgd_default, h[0], -0.5f, CORRUPT);
    LIE(sgd_default, h[1], 1.5f, CORRUPT);
    LIE(sgd_default, h[1], NAN, CORRUPT);
    LIE(sgd_default, h[2], -1.0f, CORRUPT);
    LIE(sgd_default, h[2], NAN, CORRUPT);
    LIE(sgd_default, floats, 7, CORRUPT);
    LIE(sgd_default, floats, 9, CORRUPT);
    LIE(sgd_default, floats, 0, CORRUPT);
    s = sgd_default();
    s.u[0] = 1;
    s.h[1] = 0.5f; /* Nesterov needs dampening 0 */
    (void)opt_case(&s, 1, CORRUPT, "nesterov with dampening");
    s = sgd_default();
    s.h[0] = 0.0f;
    s.u[2] = 0;
    s.floats = 0;
    (void)opt_case(&s, 1, OK_ONLY, "plain SGD, no buffer");
    s.u[0] = 1;
    (void)opt_case(&s, 1, CORRUPT, "plain SGD with nesterov");
    LIE(adam_default, count, 7, CORRUPT);
    LIE(adam_default, count, (uint64_t)1 << 61, CORRUPT);
    LIE(adam_default, h[0], 1.0f, CORRUPT);
    LIE(adam_default, h[0], -0.1f, CORRUPT);
    LIE(adam_default, h[0], NAN, CORRUPT);
    LIE(adam_default, h[1], 1.0f, CORRUPT);
    LIE(adam_default, h[1], INFINITY, CORRUPT);
    LIE(adam_default, h[2], 0.0f, CORRUPT);
    LIE(adam_default, h[2], -1e-8f, CORRUPT);
    LIE(adam_default, h[2], NAN, CORRUPT);
    LIE(adam_default, h[2], INFINITY, CORRUPT);
    LIE(adam_default, h[3], -0.01f, CORRUPT);
    LIE(adam_default, h[3], INFINITY, CORRUPT);
    LIE(adam_default, floats, 15, CORRUPT);
    LIE(adam_default, floats, 8, CORRUPT);
    LIE(adam_default, floats, 17, CORRUPT);
    /* Any step count is representable; an absurd one must not crash. */
    LIE(adam_default, steps, UINT64_MAX, OK_ONLY | CORRUPT);
    LIE(sgd_default, steps, UINT64_MAX, OK_ONLY | CORRUPT);
#undef LIE
    /* A parameter-free model cannot carry an optimizer (count must be > 0). */
    {
        bytes p = {0};
        const uint64_t d[1] = {4};
        put_head(&p, 1, d, 2, 0, 1);
        b_u32(&p, 6);
        put_params(&p, 0, 0);
        b_u32(&p, 0);
        b_u64(&p, 0);
        b_u64(&p, 0);
        for (int i = 0; i < 3; i++) b_f32(&p, 0.0f);
        for (int i = 0; i < 3; i++) b_u32(&p, 0);
        (void)expect_payload(&p, 1, CORRUPT, "SGD of 0 parameters");
        b_free(&p);
    }
}

/* Allocator calls aim_model_deserialize() makes on a sealed payload. */
static long calls_for(const bytes *p, uint32_t flags, aim_status expect) {
    size_t len;
    unsigned char *buf = seal(p, flags, &len);
    test_alloc ta;
    test_alloc_init(&ta, -1);
    aim_model *m = NULL;
    aim_optimizer *o = NULL;
    char msg[MSG_CAP];
    memset(msg, 'X', sizeof msg);
    CHECK_ST(aim_model_deserialize(&ta.allocator, buf, len, &m, &o, msg, sizeof msg), expect);
    check_message(expect, msg);
    aim_optimizer_free(o);
    aim_model_free(m);
    CHECK(ta.live == 0);
    free(buf);
    return ta.calls;
}

/* docs/FORMAT.md: "Every count is checked against the bytes that remain
 * before anything is sized from it". A count that the rest of the buffer
 * cannot hold is refused before the allocation it would size. */
static void test_counts_checked_before_allocating(void **state) {
    (void)state;
    set_ctx("counts checked before allocating");
    /* A layer count the payload cannot hold: refused before the model exists. */
    dense_spec s = dense_default();
    s.layer_count = 0xFFFFFFFFu;
    bytes p = {0};
    put_dense_spec(&p, &s);
    const long early = calls_for(&p, 0, AIM_ERR_CORRUPT_DATA);
    if (early != 0) fail_msg("%s: a layer count of 2^32-1 made %ld allocator calls before it was refused", g_ctx, early);
    b_free(&p);
    /* A consistent 2^30-parameter model with 8 floats present: refused as
     * corrupt before compile would ask for 8 GiB (so not OUT_OF_MEMORY). */
    s = dense_default();
    s.dims[0] = (uint64_t)1 << 20;
    s.units = (uint64_t)1 << 10;
    s.use_bias = 0;
    s.param_count = (uint64_t)1 << 30;
    dense_case(&s, CORRUPT, "2^30 parameters, 8 present");
    /* Optimizer records whose floats are cut short: refused before the
     * optimizer is allocated, so no more calls than the model alone makes. */
    s = dense_default();
    put_dense_spec(&p, &s);
    const long model_calls = calls_for(&p, 0, AIM_OK);
    b_free(&p);
    const opt_spec cut[] = {
        {1, 8, 3, {0.9f, 0.999f, 1e-8f, 0.0f}, {0, 0, 0}, 15},
        {0, 8, 3, {0.9f, 0.0f, 0.0f, 0.0f}, {0, 0, 1}, 7},
    };
    for (size_t i = 0; i < ARRAY_LEN(cut); i++) {
        put_dense_spec(&p, &s);
        b_u32(&p, cut[i].kind);
        b_u64(&p, cut[i].count);
        b_u64(&p, cut[i].steps);
        const int sgd = cut[i].kind == 0;
        for (int k = 0; k < (sgd ? 3 : 4); k++) b_f32(&p, cut[i].h[k]);
        for (int k = 0; k < (sgd ? 3 : 2); k++) b_u32(&p, cut[i].u[k]);
        for (size_t k = 0; k < cut[i].floats; k++) b_f32(&p, 0.0f);
        const long calls = calls_for(&p, 1, AIM_ERR_CORRUPT_DATA);
        if (calls != model_calls)
            fail_msg("%s: a cut %s record made %ld allocator calls, the model alone %ld", g_ctx,
                     sgd ? "SGD" : "Adam", calls, model_calls);
        b_free(&p);
    }
}

/* Several records in one payload, where a later one lies. */
static void test_crafted_multi_layer(void **state) {
    (void)state;
    set_ctx("crafted multi-layer payload");
    const uint64_t in[3] = {1, 4, 4};
    for (int lie = 0; lie < 4; lie++) {
        bytes p = {0};
        put_head(&p, 3, in, 3, 1, 3);
        b_u32(&p, 3); /* max pool 2x2 -> 1x2x2 */
        const uint64_t pool[6] = {2, 2, 2, 2, 0, 0};
        for (int i = 0; i < 6; i++) b_u64(&p, pool[i]);
        b_u32(&p, 6); /* flatten -> 4 */
        put_dense_rec(&p, lie == 1 ? 0 : 3, lie == 2 ? 9 : AIM_ACT_GELU, 0.01f, 1, AIM_INIT_HE_NORMAL);
        put_params(&p, lie == 3 ? 14 : 15, 15);
        (void)expect_payload(&p, 0, lie == 0 ? OK_ONLY : CORRUPT, "pool, flatten, dense");
        b_free(&p);
    }
}

/* ---- sizes and messages ------------------------------------------------------ */

/* A capacity too small for the buffer is AIM_ERR_SHAPE_MISMATCH with
 * *written = the bytes needed (aim_model_serialized_size()'s figure), and
 * no byte of the buffer written. */
static void test_small_capacity_reports_size(void **state) {
    (void)state;
    static const struct {
        const model_case *mc;
        opt_kind o;
    } cases[] = {
        {&CASES[C_DENSE_GLOROT], OPT_NONE},  {&CASES[C_DENSE_GLOROT], OPT_ADAM},
        {&CASES[C_CONV_GROUPS], OPT_SGD_MOMENTUM}, {&CASES[C_LSTM2_SEQ], OPT_NONE},
        {&GRAPH_CASES[G_TWO_OUTPUTS], OPT_ADAMW}, {&GRAPH_CASES[G_CONCAT_CHANNELS], OPT_NONE},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        set_ctx("small capacity, %s with %s", cases[i].mc->name, OPT_NAMES[cases[i].o]);
        aim_model *m = build_case(cases[i].mc, 2);
        aim_optimizer *o = make_opt(cases[i].o, n_params(m));
        size_t need = 0;
        CHECK_OK(aim_model_serialized_size(m, o, &need));
        CHECK(need > HEADER);
        unsigned char *buf = malloc(need + 16);
        assert_non_null(buf);
        const size_t caps[] = {0, 1, HEADER - 1, HEADER, need / 2, need - 1};
        for (size_t c = 0; c < ARRAY_LEN(caps); c++) {
            memset(buf, 0x5A, need + 16);
            size_t written = 12345;
            CHECK_ST(aim_model_serialize(m, o, buf, caps[c], &written), AIM_ERR_SHAPE_MISMATCH);
            if (written != need)
                fail_msg("%s: capacity %zu: *written = %zu, aim_model_serialized_size() gives %zu", g_ctx, caps[c],
                         written, need);
            for (size_t b = 0; b < need + 16; b++) CHECK(buf[b] == 0x5A);
        }
        /* More than enough: the same figure, nothing past it. */
        size_t written = 0;
        CHECK_OK(aim_model_serialize(m, o, buf, need + 16, &written));
        CHECK(written == need);
        for (size_t b = need; b < need + 16; b++) CHECK(buf[b] == 0x5A);
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
}

/* A buffer cut short after its header is AIM_ERR_CORRUPT_DATA with a
 * message that says "truncated" (include/aimodel.h: "truncated: 812 of 4096
 * payload bytes"); one cut inside the header gives some message too. */
static void test_truncated_buffer_message(void **state) {
    (void)state;
    const model_case *cs[] = {&CASES[C_DENSE_GLOROT], &CASES[C_LSTM1], &GRAPH_CASES[G_TWO_INPUTS]};
    for (size_t c = 0; c < ARRAY_LEN(cs); c++) {
        set_ctx("truncated %s", cs[c]->name);
        aim_model *m = build_case(cs[c], 4);
        aim_optimizer *o = make_opt(OPT_ADAM, n_params(m));
        size_t len;
        unsigned char *buf = serialize(m, o, &len);
        const size_t cuts[] = {len - 1, len - 4, len / 2, HEADER + 1, HEADER};
        char msg[MSG_CAP];
        for (size_t i = 0; i < ARRAY_LEN(cuts); i++) {
            CHECK_ST(try_load_msg(buf, cuts[i], msg), AIM_ERR_CORRUPT_DATA);
            if (!strstr(msg, "truncated"))
                fail_msg("%s: %zu of %zu bytes: the message \"%s\" does not say \"truncated\"", g_ctx, cuts[i], len,
                         msg);
        }
        print_message("%s, %zu of %zu bytes: \"%s\"\n", cs[c]->name, len / 2, len,
                      (try_load_msg(buf, len / 2, msg), msg));
        const size_t short_cuts[] = {0, 8, HEADER - 1};
        for (size_t i = 0; i < ARRAY_LEN(short_cuts); i++)
            CHECK_ST(try_load_msg(buf, short_cuts[i], msg), AIM_ERR_CORRUPT_DATA); /* checks the message is set */
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
}

/* Messages are cut to the capacity given, always NUL-terminated, and no
 * byte past the capacity is written: capacities 1 and 8, on a CRC failure,
 * a truncation and a crafted field; the cut message is the start of the
 * whole one. A success writes "" into any capacity, and NULL with 0 is
 * accepted. */
static void test_message_capacity(void **state) {
    (void)state;
    set_ctx("message capacity");
    aim_model *m = build_case(&CASES[C_DENSE_GLOROT], 6);
    size_t len;
    unsigned char *good = serialize(m, NULL, &len);
    unsigned char *crc = malloc(len);
    assert_non_null(crc);
    memcpy(crc, good, len);
    crc[len - 1] ^= 0x10;
    bytes p = {0};
    conv_spec cs = conv_default();
    cs.f[1] = 0;
    put_conv_spec(&p, &cs);
    size_t crafted_len;
    unsigned char *crafted = seal(&p, 0, &crafted_len);
    const struct {
        const unsigned char *buf;
        size_t len;
        aim_status want;
        const char *what;
    } inputs[] = {
        {crc, len, AIM_ERR_CORRUPT_DATA, "CRC"},
        {good, len - 3, AIM_ERR_CORRUPT_DATA, "truncation"},
        {crafted, crafted_len, AIM_ERR_CORRUPT_DATA, "kernel height 0"},
        {good, len, AIM_OK, "valid"},
    };
    for (size_t i = 0; i < ARRAY_LEN(inputs); i++) {
        set_ctx("message capacity, %s", inputs[i].what);
        char full[MSG_CAP];
        aim_model *out = NULL;
        memset(full, 'X', sizeof full);
        CHECK_ST(aim_model_deserialize(NULL, inputs[i].buf, inputs[i].len, &out, NULL, full, sizeof full),
                 inputs[i].want);
        check_message(inputs[i].want, full);
        aim_model_free(out);
        const size_t full_len = strlen(full);
        const size_t caps[] = {1, 8};
        for (size_t c = 0; c < ARRAY_LEN(caps); c++) {
            char cut[32];
            memset(cut, 'X', sizeof cut);
            out = NULL;
            CHECK_ST(aim_model_deserialize(NULL, inputs[i].buf, inputs[i].len, &out, NULL, cut, caps[c]),
                     inputs[i].want);
            aim_model_free(out);
            if (!memchr(cut, '\0', caps[c])) fail_msg("%s: capacity %zu: not NUL-terminated", g_ctx, caps[c]);
            for (size_t b = caps[c]; b < sizeof cut; b++)
                if (cut[b] != 'X') fail_msg("%s: capacity %zu: byte %zu written", g_ctx, caps[c], b);
            const size_t want_len = full_len < caps[c] - 1 ? full_len : caps[c] - 1;
            CHECK(strlen(cut) == want_len);
            CHECK(memcmp(cut, full, want_len) == 0);
        }
        /* No message buffer at all. */
        out = NULL;
        CHECK_ST(aim_model_deserialize(NULL, inputs[i].buf, inputs[i].len, &out, NULL, NULL, 0), inputs[i].want);
        aim_model_free(out);
    }
    CHECK(strlen("kernel height 0") > 8); /* so capacity 8 does cut that message */
    free(crafted);
    b_free(&p);
    free(crc);
    free(good);
    aim_model_free(m);
}

/* ======================================================================== */
/* 4. Allocation failures                                                   */
/* ======================================================================== */

static void test_every_allocation_failure(void **state) {
    (void)state;
    static const struct {
        const model_case *mc;
        opt_kind o;
    } scen[] = {
        {&CASES[C_DENSE_GLOROT], OPT_ADAM},     {&CASES[C_DENSE_ZEROS], OPT_SGD}, {&CASES[C_ACTIVATIONS], OPT_NONE},
        {&CASES[C_CONV_GROUPS], OPT_SGD_MOMENTUM}, {&CASES[C_LSTM2_SEQ], OPT_ADAMW},
        {&GRAPH_CASES[G_TWO_OUTPUTS], OPT_ADAM}, {&GRAPH_CASES[G_TIME_CONCAT], OPT_NONE},
        {&GRAPH_CASES[G_CONCAT_CHANNELS], OPT_SGD}, {&GRAPH_CASES[G_GPT_BLOCK], OPT_ADAM},
    };
    for (size_t s = 0; s < ARRAY_LEN(scen); s++) {
        const model_case *mc = scen[s].mc;
        set_ctx("allocation failures of %s with %s", mc->name, OPT_NAMES[scen[s].o]);
        aim_model *m = build_case(mc, 8);
        aim_optimizer *o = make_opt(scen[s].o, n_params(m));
        train(m, o, 0, 1);
        size_t len;
        unsigned char *buf = serialize(m, o, &len);
        long k;
        for (k = 0; k < 1000; k++) {
            test_alloc ta;
            test_alloc_init(&ta, k);
            aim_model *m2 = MODEL_SENTINEL;
            aim_optimizer *o2 = OPT_SENTINEL;
            char msg[MSG_CAP];
            memset(msg, 'X', sizeof msg);
            aim_status st = aim_model_deserialize(&ta.allocator, buf, len, &m2, &o2, msg, sizeof msg);
            check_message(st, msg);
            if (ta.failures == 0) { /* k is past the last allocation */
                CHECK_OK(st);
                expect_same_model(m, m2);
                aim_optimizer_free(o2);
                aim_model_free(m2);
                CHECK(ta.live == 0);
                break;
            }
            if (st != AIM_ERR_OUT_OF_MEMORY)
                fail_msg("%s: allocation %ld failing gave \"%s\"", g_ctx, k, aim_status_str(st));
            CHECK(m2 == MODEL_SENTINEL && o2 == OPT_SENTINEL);
            CHECK(ta.live == 0);
        }
        CHECK(k > 1 && k < 1000);
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
}

/* ======================================================================== */
/* Seed corpus for tests/fuzz                                               */
/* ======================================================================== */

#define GRAPH_SEED 1000

static void test_write_corpus(void **state) {
    (void)state;
    const char *dir = getenv("AIM_WRITE_CORPUS");
    if (!dir || !*dir) return;
    static const struct {
        const char *file;
        int c; /* in CASES, or GRAPH_SEED + an index in GRAPH_CASES */
        opt_kind o;
    } seeds[] = {
        {"dense", C_DENSE_GLOROT, OPT_NONE},          {"dense_adam", C_DENSE_GLOROT, OPT_ADAM},
        {"dense_nobias_sgd", C_DENSE_PYTORCH, OPT_SGD}, {"activations", C_ACTIVATIONS, OPT_NONE},
        {"activations_adamw", C_ACTIVATIONS, OPT_ADAMW}, {"conv_explicit", C_CONV_EXPLICIT, OPT_NONE},
        {"conv_stride_nesterov", C_CONV_VALID_STRIDE, OPT_SGD_NESTEROV},
        {"conv_same", C_CONV_SAME, OPT_NONE},         {"conv_dilation", C_CONV_DILATION, OPT_NONE},
        {"conv_groups_sgdm", C_CONV_GROUPS, OPT_SGD_MOMENTUM}, {"max_pool", C_MAX_POOL, OPT_NONE},
        {"avg_pool_adam", C_AVG_POOL, OPT_ADAM},      {"global_pool", C_GLOBAL_POOL, OPT_NONE},
        {"flatten", C_FLATTEN, OPT_SGD_WD},           {"lstm1", C_LSTM1, OPT_NONE},
        {"lstm1_seq_adam", C_LSTM1_SEQ, OPT_ADAM_L2}, {"lstm2", C_LSTM2, OPT_NONE},
        {"lstm2_seq_sgdm", C_LSTM2_SEQ, OPT_SGD_MOMENTUM},
        {"graph_two_inputs", GRAPH_SEED + G_TWO_INPUTS, OPT_NONE},
        {"graph_residual_conv_adam", GRAPH_SEED + G_RESIDUAL_CONV, OPT_ADAM},
        {"graph_concat_channels", GRAPH_SEED + G_CONCAT_CHANNELS, OPT_NONE},
        {"graph_two_outputs_adamw", GRAPH_SEED + G_TWO_OUTPUTS, OPT_ADAMW},
        {"graph_concat_time", GRAPH_SEED + G_TIME_CONCAT, OPT_NONE},
        {"batch_norm_dropout_adam", C_BATCH_NORM_CNN, OPT_ADAM},
        {"layer_norm_sgdm", C_LAYER_NORM, OPT_SGD_MOMENTUM},
        {"bigru_seq", C_BIGRU_SEQ, OPT_NONE},
        {"bilstm_adamw", C_BILSTM, OPT_ADAMW},
        {"conv1d_pools", C_CONV1D_POOLS, OPT_NONE},
        {"v4_gpt_block", GRAPH_SEED + G_GPT_BLOCK, OPT_NONE},
        {"v4_gpt_block_adamw", GRAPH_SEED + G_GPT_BLOCK, OPT_ADAMW},
        {"v4_attention_nobias_sgdm", C_ATTENTION_NOBIAS, OPT_SGD_MOMENTUM},
    };
    size_t total = 0;
    for (size_t i = 0; i < ARRAY_LEN(seeds); i++) {
        set_ctx("corpus %s", seeds[i].file);
        const int c = seeds[i].c;
        aim_model *m = build_case(c >= GRAPH_SEED ? &GRAPH_CASES[c - GRAPH_SEED] : &CASES[c], 11);
        aim_optimizer *o = make_opt(seeds[i].o, n_params(m));
        train(m, o, 0, 2);
        size_t len;
        unsigned char *buf = serialize(m, o, &len);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.bin", dir, seeds[i].file);
        FILE *f = fopen(path, "wb");
        if (!f) fail_msg("cannot open %s for writing", path);
        CHECK(fwrite(buf, 1, len, f) == len);
        CHECK(fclose(f) == 0);
        total += len;
        free(buf);
        aim_optimizer_free(o);
        aim_model_free(m);
    }
    print_message("wrote %zu seeds, %zu bytes, into %s\n", ARRAY_LEN(seeds), total, dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_layer_kind),
        cmocka_unit_test(test_roundtrip_every_optimizer),
        cmocka_unit_test(test_input_gradient_survives),
        cmocka_unit_test(test_resume_is_bit_exact),
        cmocka_unit_test(test_roundtrip_graphs),
        cmocka_unit_test(test_resume_graphs_adam),
        cmocka_unit_test(test_graph_input_gradients_survive),
        cmocka_unit_test(test_small_capacity_reports_size),
        cmocka_unit_test(test_optimizer_out_pointer),
        cmocka_unit_test(test_argument_checks),
        cmocka_unit_test(test_every_byte_flip_is_refused),
        cmocka_unit_test(test_truncation_and_trailing_bytes),
        cmocka_unit_test(test_truncated_buffer_message),
        cmocka_unit_test(test_message_capacity),
        cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_version_follows_the_kinds),
        cmocka_unit_test(test_resealed_flips_never_crash),
        cmocka_unit_test(test_crafted_dense_fields),
        cmocka_unit_test(test_noncanonical_flags),
        cmocka_unit_test(test_crafted_conv_fields),
        cmocka_unit_test(test_crafted_pool_flatten_fields),
        cmocka_unit_test(test_crafted_lstm_fields),
        cmocka_unit_test(test_crafted_optimizer_fields),
        cmocka_unit_test(test_crafted_multi_layer),
        cmocka_unit_test(test_counts_checked_before_allocating),
        cmocka_unit_test(test_every_allocation_failure),
        cmocka_unit_test(test_write_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
