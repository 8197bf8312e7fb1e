/* libFuzzer target: the model builders, compile and one training step,
 * driven by a byte program.
 *
 * The input is read as: input rank and dimensions (small ranges, zero and an
 * out-of-range rank included), max_batch (0 included), compile flags, then up
 * to 8 layer ops, each an op byte followed by its sizes and codes: dense
 * units, conv2d filters / kernel / stride / padding mode and sides /
 * dilation / groups, pooling windows, LSTM hidden / layers / sequences, and
 * activation, init and padding codes that include out-of-range values. Past
 * the end of the input every byte reads as 0. Sizes are bounded so one input
 * runs in milliseconds.
 *
 * Every builder call's status is accepted. When the model compiles (with an
 * allocator that refuses blocks over 64 MiB), it runs a training forward, an
 * MSE loss against zero targets, a backward and an SGD step, then checks
 * three things the API promises, aborting (a finding) if one fails:
 *  - the calls after a successful compile succeed (the loss may be
 *    non-finite, which is a status);
 *  - aim_model_predict() equals an inference aim_model_forward() bit for bit;
 *  - serialize -> deserialize -> serialize gives the same bytes, and the
 *    copy predicts bit for bit the same.
 *
 * Build and run: tests/fuzz/run.sh (see tests/fuzz/README.md).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"

#define CAP_BYTES ((size_t)64 << 20)
#define MAX_OPS 8

/* -DFUZZ_TRACE prints every builder call and its status to stderr, to turn a
 * crashing input into a readable model description. */
#ifdef FUZZ_TRACE
#include <stdio.h>
#define TRACE(...) fprintf(stderr, __VA_ARGS__)
#else
#define TRACE(...) ((void)0)
#endif

static void *cap_allocate(void *ctx, size_t size) {
    (void)ctx;
    return size > CAP_BYTES ? NULL : malloc(size);
}
static void *cap_reallocate(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    return size > CAP_BYTES ? NULL : realloc(ptr, size);
}
static void cap_deallocate(void *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
}
static const aim_allocator CAPPED = {NULL, cap_allocate, cap_reallocate, cap_deallocate};

typedef struct prog {
    const uint8_t *p;
    size_t n, pos;
} prog;

static unsigned next(prog *g) { return g->pos < g->n ? g->p[g->pos++] : 0u; }
static size_t upto(prog *g, unsigned n) { return (size_t)(next(g) % n); } /* 0 .. n-1 */

/* -1 and 7 are out of range; 0xFF gives a large code. */
static aim_activation act_code(prog *g) {
    unsigned b = next(g);
    if (b == 0xFF) return (aim_activation)0x7FFFFFFF;
    return (aim_activation)((int)(b % 9) - 1);
}
static aim_init init_code(prog *g) { return (aim_init)((int)(next(g) % 6) - 1); } /* -1 and 4 out of range */
static float alpha_of(prog *g) {
    unsigned b = next(g);
    if (b == 0xFF) return NAN;
    if (b == 0xFE) return INFINITY;
    return ((float)b - 128.0f) / 32.0f;
}

static void add_op(aim_model *m, prog *g) {
    switch (next(g) % 10) {
    case 0: {
        aim_dense_config c;
        (void)aim_dense_config_init(&c, upto(g, 17), act_code(g));
        c.alpha = alpha_of(g);
        c.use_bias = (int32_t)(next(g) % 3); /* 2: a non-canonical "true" */
        c.init = init_code(g);
        aim_status st = aim_model_add_dense(m, &c);
        TRACE("dense units %zu act %d alpha %g bias %d init %d -> %s\n", c.units, (int)c.activation,
              (double)c.alpha, (int)c.use_bias, (int)c.init, aim_status_str(st));
        (void)st;
        break;
    }
    case 1: {
        aim_activation a = act_code(g);
        float alpha = alpha_of(g);
        aim_status st = aim_model_add_activation(m, a, alpha);
        TRACE("activation %d alpha %g -> %s\n", (int)a, (double)alpha, aim_status_str(st));
        (void)st;
        break;
    }
    case 2: {
        aim_conv2d_config c;
        size_t f = upto(g, 9), kh = upto(g, 6), kw = upto(g, 6);
        (void)aim_conv2d_config_init(&c, f, kh, kw, act_code(g));
        c.stride_h = upto(g, 4);
        c.stride_w = upto(g, 4);
        c.dilation_h = upto(g, 4);
        c.dilation_w = upto(g, 4);
        c.padding = (aim_padding)upto(g, 4); /* 3 is out of range */
        c.pad_top = upto(g, 4);
        c.pad_bottom = upto(g, 4);
        c.pad_left = upto(g, 4);
        c.pad_right = upto(g, 4);
        c.groups = upto(g, 5);
        c.alpha = alpha_of(g);
        c.use_bias = (int32_t)(next(g) & 1);
        c.init = init_code(g);
        aim_status st = aim_model_add_conv2d(m, &c);
        TRACE("conv2d filters %zu kernel %zux%zu stride %zux%zu dilation %zux%zu padding mode %d "
              "t%zu b%zu l%zu r%zu groups %zu act %d bias %d init %d -> %s\n",
              c.filters, c.kernel_h, c.kernel_w, c.stride_h, c.stride_w, c.dilation_h, c.dilation_w, (int)c.padding,
              c.pad_top, c.pad_bottom, c.pad_left, c.pad_right, c.groups, (int)c.activation, (int)c.use_bias,
              (int)c.init, aim_status_str(st));
        (void)st;
        break;
    }
    case 3:
    case 4: {
        aim_pool2d_config c;
        size_t kh = upto(g, 5), kw = upto(g, 5);
        (void)aim_pool2d_config_init(&c, kh, kw);
        unsigned b = next(g);
        if (b & 1) { /* else keep the defaults: stride = window, no padding */
            c.stride_h = upto(g, 4);
            c.stride_w = upto(g, 4);
            c.pad_h = upto(g, 3);
            c.pad_w = upto(g, 3);
        }
        aim_status st = (b & 2) ? aim_model_add_max_pool2d(m, &c) : aim_model_add_avg_pool2d(m, &c);
        TRACE("%s pool %zux%zu stride %zux%zu pad %zux%zu -> %s\n", (b & 2) ? "max" : "avg", c.kernel_h, c.kernel_w,
              c.stride_h, c.stride_w, c.pad_h, c.pad_w, aim_status_str(st));
        (void)st;
        break;
    }
    case 5: {
        aim_status st = aim_model_add_global_avg_pool2d(m);
        TRACE("global_avg_pool2d -> %s\n", aim_status_str(st));
        (void)st;
        break;
    }
    case 6: {
        aim_status st = aim_model_add_flatten(m);
        TRACE("flatten -> %s\n", aim_status_str(st));
        (void)st;
        break;
    }
    case 7: {
        aim_lstm_config c;
        size_t h = upto(g, 9), layers = upto(g, 18); /* 0 and 17 are out of range */
        (void)aim_lstm_config_init(&c, h, layers);
        c.return_sequences = (int32_t)(next(g) & 1);
        c.init = init_code(g);
        aim_status st = aim_model_add_lstm(m, &c);
        TRACE("lstm hidden %zu layers %zu sequences %d init %d -> %s\n", c.hidden, c.layers,
              (int)c.return_sequences, (int)c.init, aim_status_str(st));
        (void)st;
        break;
    }
    case 8: /* NULL configs */
        (void)aim_model_add_dense(m, NULL);
        (void)aim_model_add_conv2d(m, NULL);
        (void)aim_model_add_max_pool2d(m, NULL);
        (void)aim_model_add_lstm(m, NULL);
        break;
    default: break;
    }
}

static void check(int ok) {
    if (!ok) abort();
}

/* Serializes (model, optimizer) into a fresh buffer; NULL if the sizes
 * refuse (they cannot for a compiled model of this size). */
static unsigned char *to_bytes(const aim_model *m, const aim_optimizer *o, size_t *len) {
    size_t need = 0, written = 0;
    check(aim_model_serialized_size(m, o, &need) == AIM_OK);
    unsigned char *buf = malloc(need);
    if (!buf) return NULL;
    check(aim_model_serialize(m, o, buf, need, &written) == AIM_OK && written == need);
    *len = need;
    return buf;
}

static void run(aim_model *m, prog *g, size_t max_batch) {
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    const size_t batch = 1 + upto(g, (unsigned)max_batch);
    float *x = malloc(batch * in * sizeof(float)), *t = calloc(batch * out, sizeof(float));
    float *y1 = malloc(batch * out * sizeof(float)), *y2 = malloc(batch * out * sizeof(float));
    aim_workspace *ws = NULL;
    aim_optimizer *sgd = NULL;
    aim_model *copy = NULL;
    aim_optimizer *copy_opt = NULL;
    unsigned char *b1 = NULL, *b2 = NULL;
    if (!x || !t || !y1 || !y2) goto done;
    for (size_t i = 0; i < batch * in; i++) x[i] = ((float)next(g) - 128.0f) / 64.0f;

    /* Training step. */
    float loss;
    float *params;
    size_t count;
    check(aim_model_parameters(m, &params, &count) == AIM_OK);
    check(aim_model_zero_grad(m) == AIM_OK);
    check(aim_model_forward(m, AIM_MODE_TRAIN, x, batch) == AIM_OK);
    aim_status st = aim_model_loss(m, AIM_LOSS_MSE, t, batch, &loss);
    check(st == AIM_OK || st == AIM_ERR_NON_FINITE);
    if (st == AIM_OK) {
        check(aim_model_backward(m, NULL) == AIM_OK);
        aim_sgd_config sc;
        (void)aim_sgd_config_init(&sc);
        sc.momentum = (next(g) & 1) ? 0.9f : 0.0f;
        st = aim_sgd_create(&CAPPED, &sc, count, &sgd);
        check(st == AIM_OK || (count == 0 && st == AIM_ERR_INVALID_ARGUMENT));
        if (sgd) check(aim_optimizer_step_model(sgd, m, 0.01f) == AIM_OK);
    }

    /* predict == inference forward, bit for bit. */
    if (aim_workspace_create(m, &CAPPED, max_batch, &ws) != AIM_OK) goto done;
    check(aim_model_predict(m, ws, x, batch, y1) == AIM_OK);
    const float *fwd;
    size_t n;
    check(aim_model_forward(m, AIM_MODE_INFERENCE, x, batch) == AIM_OK);
    check(aim_model_output(m, &fwd, &n) == AIM_OK && n == batch * out);
    check(memcmp(fwd, y1, n * sizeof(float)) == 0);

    /* serialize -> deserialize -> serialize is the identity. */
    size_t l1, l2;
    b1 = to_bytes(m, sgd, &l1);
    if (!b1) goto done;
    st = aim_model_deserialize(&CAPPED, b1, l1, &copy, &copy_opt);
    check(st == AIM_OK);
    check((copy_opt != NULL) == (sgd != NULL));
    b2 = to_bytes(copy, copy_opt, &l2);
    if (!b2) goto done;
    check(l1 == l2 && memcmp(b1, b2, l1) == 0);
    check(aim_model_predict(copy, ws, x, batch, y2) == AIM_OK);
    check(memcmp(y1, y2, batch * out * sizeof(float)) == 0);
done:
    free(b1);
    free(b2);
    aim_optimizer_free(copy_opt);
    aim_model_free(copy);
    aim_optimizer_free(sgd);
    aim_workspace_free(ws);
    free(x);
    free(t);
    free(y1);
    free(y2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    prog g = {data, size, 0};
    const size_t rank = upto(&g, 5); /* 0 and 4 are refused */
    size_t dims[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < rank; i++) dims[i] = upto(&g, 13);
    const size_t max_batch = upto(&g, 5); /* 0 is refused by compile */
    const unsigned flags = next(&g);
    const size_t ops = upto(&g, MAX_OPS + 1);

    aim_model *m = NULL;
    aim_status cst = aim_model_create(&CAPPED, rank, dims, &m);
    TRACE("input rank %zu dims %zu %zu %zu, max_batch %zu, flags 0x%02x, %zu ops -> %s\n", rank, dims[0], dims[1],
          dims[2], max_batch, flags, ops, aim_status_str(cst));
    if (cst != AIM_OK) return 0;
    for (size_t i = 0; i < ops; i++) add_op(m, &g);
    aim_compile_config cc;
    (void)aim_compile_config_init(&cc);
    cc.max_batch = max_batch;
    cc.input_gradient = (int32_t)(flags & 1);
    cc.seed = flags >> 1;
    aim_status comp = aim_model_compile(m, &cc);
    TRACE("compile -> %s %s\n", aim_status_str(comp), aim_model_last_error(m));
    if (comp == AIM_OK) {
        /* A compiled model refuses more layers. */
        check(aim_model_add_flatten(m) == AIM_ERR_INVALID_STATE);
        run(m, &g, max_batch);
    }
    aim_model_free(m);
    return 0;
}
