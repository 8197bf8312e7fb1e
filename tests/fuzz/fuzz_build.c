/* libFuzzer target: the model builders (chains and graphs), compile and one
 * training step, driven by a byte program.
 *
 * The input is read as: input rank and dimensions (small ranges, zero and an
 * out-of-range rank included), max_batch (0 included), compile flags, then up
 * to 8 ops, each an op byte followed by its sizes and codes: dense units,
 * conv2d filters / kernel / stride / padding mode and sides / dilation /
 * groups, pooling windows, LSTM hidden / layers / sequences, and activation,
 * init and padding codes that include out-of-range values. Op 9 is a graph
 * op, its next byte saying which:
 *  - another model input (aim_model_add_input(), rank and sizes as above);
 *  - a branch: aim_model_continue_from() an earlier node;
 *  - aim_model_add_add() or aim_model_add_concat() over 0 to 17 earlier
 *    nodes (a node may repeat; the concat axis may be out of range);
 *  - a mark: an earlier node, and a loss weight, become an output candidate;
 *  - a repeat: up to 4 more ops (at most MAX_TOTAL_OPS ops in all), so one
 *    input can describe a deeper graph.
 * Earlier nodes are picked by a byte among the layers, the inputs and one
 * node that does not exist. When a graph op was read, one more byte chooses
 * the outputs for aim_model_set_outputs(): none (the last layer), the marked
 * nodes, the layers no other layer reads, or both, with weights of all 1
 * (NULL) or read from the program (0, negative and non-finite included).
 * A program without op 9 reads exactly as the chain-only programs before
 * graphs existed did, so the kept reproducers keep their meaning.
 * Op 8 reads one more byte (since 1.1): 0 calls every builder with a NULL
 * config (what op 8 did alone before), the others add a 1.1 kind: batch
 * norm, dropout, layer norm, embedding, GRU or bidirectional LSTM (through
 * aim_model_add_rnn()), conv1d, 1-D max/average pooling, global average or
 * max pooling over the length. Bit 7 of the flags byte makes input 0 an
 * int32 input of ids (only an embedding may read it); it is then fed ids in
 * [-1, 20], so some calls must refuse an id outside a table.
 * The op-8 bytes 252 to 255 (which read as 0 to 3 before) add the kinds of
 * format 4: multi-head attention (heads, causal, bias, a dropout that may be
 * out of range, a reserved field that may be set, init), a positional
 * embedding (max_positions 0 to 16, so shorter than the sequence too), a
 * linear layer (as a dense one), and a pre-norm block of them: layer norm,
 * attention, a residual add and, on a flag, layer norm, linear GELU, linear
 * and a second add. Attention and the positional embedding need a (time,
 * embed) value, which a rank-2 input, an embedding of rank-1 ids, a
 * recurrent layer's sequences, a conv1d or a linear layer on one gives.
 * Past the end of the input every byte reads as 0. Sizes are bounded so one
 * input runs in milliseconds.
 *
 * Every builder call's status is accepted; a successful one must make the
 * new layer the current node. When the model compiles (with an allocator
 * that refuses blocks over 64 MiB), it runs a training forward on every
 * input, an MSE loss against zero targets on output 0 and, on each further
 * output, an MSE loss, a sparse loss (labels possibly out of range), a set
 * gradient or nothing, then a backward and an SGD step, with buffers of
 * exactly the sizes the model's shapes give (aim_model_layer_shape() of
 * each input and output node). It then checks what the API promises,
 * aborting (a finding) if one fails:
 *  - the calls after a successful compile succeed (a loss may be non-finite
 *    or a label out of range, which are statuses; a backward without any
 *    kept gradient is AIM_ERR_INVALID_STATE);
 *  - a count one more than the buffer holds is refused before anything is
 *    read (AIM_ERR_SHAPE_MISMATCH), and so is aim_model_predict() or a
 *    single-buffer forward on a model of several inputs or outputs;
 *  - with input_gradient set, each input's gradient has batch * its size floats;
 *  - aim_model_predict() / aim_model_predict_multi() equal an inference
 *    forward bit for bit, output by output;
 *  - serialize -> deserialize -> serialize gives the same bytes, and the
 *    copy predicts bit for bit the same;
 *  - on a model of one input and one output, aim_model_predict_step() over
 *    every position runs or is refused as AIM_ERR_UNSUPPORTED on the first,
 *    and a step past the context is AIM_ERR_INVALID_STATE until a reset.
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
#define MAX_OPS 8        /* top-level ops of a program */
#define MAX_TOTAL_OPS 32 /* ops with those of repeats */
#define MAX_TRACKED 256  /* layers whose readers are tracked (more than MAX_TOTAL_OPS can add) */
#define MAX_IO AIM_MAX_NODE_INPUTS
#define MAX_MARKS 20     /* output candidates; over AIM_MAX_NODE_INPUTS is refused */

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

static void check(int ok) {
    if (!ok) abort();
}

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
/* A loss weight: mostly ordinary, sometimes 0, negative or not finite (refused). */
static float weight_of(prog *g) {
    static const float w[8] = {1.0f, 0.5f, 2.0f, 0.0f, -1.0f, 0.25f, NAN, INFINITY};
    return w[next(g) % 8];
}

/* What the builder has made so far: which nodes some layer reads (for the
 * "layers no one reads" outputs), the output candidates, the ops left. */
typedef struct graph {
    unsigned char layer_read[MAX_TRACKED];
    size_t marks[MAX_MARKS];
    float mark_weights[MAX_MARKS];
    size_t n_marks;
    int used; /* a graph op was read */
    size_t ops_left;
} graph;

static void note_read(graph *gr, size_t node) {
    if (node < MAX_TRACKED) gr->layer_read[node] = 1;
}

/* A node id: a layer (the most recent for byte 0), an input, or for the last
 * value one that does not exist. */
static size_t pick_node(const aim_model *m, prog *g) {
    const size_t layers = aim_model_layer_count(m), inputs = aim_model_input_count(m);
    const size_t c = (size_t)next(g) % (layers + inputs + 1);
    if (c < layers) return layers - 1 - c;
    if (c < layers + inputs) return AIM_MODEL_INPUT(c - layers);
    return (layers & 1) ? layers : AIM_MODEL_INPUT(inputs);
}

/* After a builder call that read the current node `from`: on success, the
 * new layers are the current node's chain and `from` has a reader. */
static void after_add(const aim_model *m, graph *gr, size_t from, size_t layers_before, aim_status st) {
    const size_t layers = aim_model_layer_count(m);
    if (st != AIM_OK) {
        check(layers == layers_before);
        return;
    }
    check(layers > layers_before);
    size_t cur = 0;
    check(aim_model_last_node(m, &cur) == AIM_OK && cur == layers - 1);
    note_read(gr, from);
    for (size_t i = layers_before; i + 1 < layers; i++) note_read(gr, i);
}

static int ids_input; /* input 0 holds int32 ids (flags bit 7) */
static int batch_norm_added; /* a training batch may hold one value per channel, which it refuses */

/* A training forward refused because a batch norm saw one value per channel. */
static int bn_refused(const aim_model *m, aim_status st) {
    return st == AIM_ERR_INVALID_ARGUMENT && batch_norm_added &&
           strstr(aim_model_last_error(m), "more than 1 value per channel") != NULL;
}

static void add_op(aim_model *m, prog *g, graph *gr);
static void new_kind_op(aim_model *m, prog *g, graph *gr, size_t from, size_t layers);
static void merge_op(aim_model *m, prog *g, graph *gr, int concat);

static void graph_op(aim_model *m, prog *g, graph *gr) {
    gr->used = 1;
    switch (next(g) % 6) {
    case 0: { /* another input */
        const size_t rank = upto(g, 5); /* 0 and 4 are refused */
        size_t dims[4] = {0, 0, 0, 0};
        for (size_t i = 0; i < rank; i++) dims[i] = upto(g, 13);
        const size_t inputs = aim_model_input_count(m);
        size_t node = 0, cur_before = 0, cur = 0;
        check(aim_model_last_node(m, &cur_before) == AIM_OK);
        aim_status st = aim_model_add_input(m, rank, dims, &node);
        TRACE("add_input rank %zu dims %zu %zu %zu -> %s node %zu\n", rank, dims[0], dims[1], dims[2],
              aim_status_str(st), st == AIM_OK ? (size_t)-1 - node : (size_t)0);
        if (st == AIM_OK) {
            check(node == AIM_MODEL_INPUT(inputs) && aim_model_input_count(m) == inputs + 1);
        } else {
            check(aim_model_input_count(m) == inputs);
        }
        check(aim_model_last_node(m, &cur) == AIM_OK && cur == cur_before); /* the current node stays */
        break;
    }
    case 1: { /* branch */
        const size_t node = pick_node(m, g);
        aim_status st = aim_model_continue_from(m, node);
        TRACE("continue_from %zu -> %s\n", node, aim_status_str(st));
        if (st == AIM_OK) {
            size_t cur = 0;
            check(aim_model_last_node(m, &cur) == AIM_OK && cur == node);
        }
        break;
    }
    case 2: merge_op(m, g, gr, 0); break;
    case 3: merge_op(m, g, gr, 1); break;
    case 4: { /* mark an output candidate */
        const size_t node = pick_node(m, g);
        const float w = weight_of(g);
        if (gr->n_marks < MAX_MARKS) {
            gr->marks[gr->n_marks] = node;
            gr->mark_weights[gr->n_marks] = w;
            gr->n_marks++;
        }
        TRACE("mark output %zu weight %g\n", node, (double)w);
        break;
    }
    default: { /* repeat */
        size_t k = upto(g, 5);
        TRACE("repeat %zu\n", k);
        while (k-- > 0 && gr->ops_left > 0) {
            gr->ops_left--;
            add_op(m, g, gr);
        }
        break;
    }
    }
}

/* aim_model_add_add() (concat 0) or aim_model_add_concat() over nodes from the program. */
static void merge_op(aim_model *m, prog *g, graph *gr, int concat) {
    const size_t count = upto(g, 18); /* 0, 1 and 17 are refused */
    size_t nodes[17];
    for (size_t i = 0; i < count; i++) nodes[i] = pick_node(m, g);
    const size_t axis = upto(g, 4); /* 3 is past any rank */
    const size_t layers = aim_model_layer_count(m);
    aim_status st = concat ? aim_model_add_concat(m, nodes, count, axis) : aim_model_add_add(m, nodes, count);
    TRACE("%s of %zu nodes (%zu %zu %zu ...) axis %zu -> %s %s\n", concat ? "concat" : "add", count,
          count > 0 ? nodes[0] : 0, count > 1 ? nodes[1] : 0, count > 2 ? nodes[2] : 0, axis, aim_status_str(st),
          st == AIM_OK ? "" : aim_model_last_error(m));
    const size_t now = aim_model_layer_count(m);
    if (st != AIM_OK) {
        check(now == layers);
        return;
    }
    check(now == layers + 1);
    size_t cur = 0;
    check(aim_model_last_node(m, &cur) == AIM_OK && cur == layers);
    for (size_t i = 0; i < count; i++) note_read(gr, nodes[i]);
}

/* One dropout probability for attention: mostly in [0, 1), sometimes not (refused). */
static float attention_dropout(unsigned b) {
    static const float p[8] = {0.0f, 0.0f, 0.0f, 0.1f, 0.5f, -0.1f, 1.0f, NAN};
    return p[b & 7];
}

/* aim_model_add_attention() with options from the program. */
static aim_status attention_op(aim_model *m, prog *g) {
    aim_attention_config c;
    (void)aim_attention_config_init(&c, upto(g, 5)); /* 0 and non-divisors of embed are refused */
    const unsigned b = next(g);
    c.causal = (int32_t)(b & 1);
    c.bias = (int32_t)((b >> 1) & 1) ? 0 : 1;
    c.dropout = attention_dropout(b >> 2);
    if ((b >> 5) == 7) c.reserved[b & 7] = 1; /* refused */
    c.init = init_code(g);
    aim_status st = aim_model_add_attention(m, &c);
    TRACE("attention heads %zu causal %d bias %d dropout %g reserved %d init %d -> %s %s\n", c.num_heads,
          (int)c.causal, (int)c.bias, (double)c.dropout, (b >> 5) == 7, (int)c.init, aim_status_str(st),
          st == AIM_OK ? "" : aim_model_last_error(m));
    return st;
}

/* aim_model_add_linear() of `units` (read from the program when 0) with the
 * rest as a dense op reads it. */
static aim_status linear_op(aim_model *m, prog *g, size_t units, aim_activation act) {
    aim_dense_config c;
    if (units == 0) {
        units = upto(g, 17);
        act = act_code(g);
    }
    (void)aim_dense_config_init(&c, units, act);
    c.alpha = alpha_of(g);
    c.use_bias = (int32_t)(next(g) % 3);
    c.init = init_code(g);
    aim_status st = aim_model_add_linear(m, &c);
    TRACE("linear units %zu act %d alpha %g bias %d init %d -> %s %s\n", c.units, (int)c.activation,
          (double)c.alpha, (int)c.use_bias, (int)c.init, aim_status_str(st), st == AIM_OK ? "" : aim_model_last_error(m));
    return st;
}

/* Op 8, byte 255: a pre-norm transformer block on the current value x:
 * x1 = x + attention(layer_norm(x)) and, with flag bit 0, x2 = x1 +
 * linear(linear_gelu(layer_norm(x1))) of 1 to 16 hidden units. Each call is
 * checked as a single op is; the block stops at the first refusal. */
static void block_op(aim_model *m, prog *g, graph *gr) {
    const unsigned flags = next(g);
    const size_t hidden = 1 + upto(g, 16);
    size_t x = 0, rank = 0, dims[AIM_MAX_RANK] = {0, 0, 0, 0};
    check(aim_model_last_node(m, &x) == AIM_OK);
    check(aim_model_layer_shape(m, x, &rank, dims) == AIM_OK);
    const size_t embed = rank >= 1 ? dims[rank - 1] : 0;
    for (int part = 0; part < ((flags & 1) ? 2 : 1); part++) {
        size_t from = 0;
        check(aim_model_last_node(m, &from) == AIM_OK);
        const size_t block_in = from;
        aim_layer_norm_config ln;
        (void)aim_layer_norm_config_init(&ln);
        size_t layers = aim_model_layer_count(m);
        aim_status st = aim_model_add_layer_norm(m, &ln);
        TRACE("block %d: layer_norm -> %s\n", part, aim_status_str(st));
        after_add(m, gr, from, layers, st);
        if (st != AIM_OK) return;
        from = layers;
        layers = aim_model_layer_count(m);
        st = part == 0 ? attention_op(m, g) : linear_op(m, g, hidden, AIM_ACT_GELU);
        after_add(m, gr, from, layers, st);
        if (st != AIM_OK) return;
        if (part == 1) {
            from = layers;
            layers = aim_model_layer_count(m);
            st = linear_op(m, g, embed ? embed : 1, AIM_ACT_IDENTITY);
            after_add(m, gr, from, layers, st);
            if (st != AIM_OK) return;
        }
        const size_t sum[2] = {block_in, aim_model_layer_count(m) - 1};
        layers = aim_model_layer_count(m);
        st = aim_model_add_add(m, sum, 2);
        TRACE("block %d: add %zu %zu -> %s %s\n", part, sum[0], sum[1], aim_status_str(st),
              st == AIM_OK ? "" : aim_model_last_error(m));
        after_add(m, gr, sum[1], layers, st);
        if (st != AIM_OK) return;
        note_read(gr, block_in);
    }
}

/* Op 8: NULL configs, or one of the kinds added in 1.1 (byte mod 12), or,
 * for the bytes 252 to 255, one of format 4. */
static void new_kind_op(aim_model *m, prog *g, graph *gr, size_t from, size_t layers) {
    aim_status st;
    const unsigned sub = next(g);
    switch (sub >= 252 ? 12 + (sub - 252) : sub % 12) {
    case 0: /* NULL configs */
        check(aim_model_add_dense(m, NULL) != AIM_OK);
        check(aim_model_add_conv2d(m, NULL) != AIM_OK);
        check(aim_model_add_max_pool2d(m, NULL) != AIM_OK);
        check(aim_model_add_lstm(m, NULL) != AIM_OK);
        check(aim_model_add_batch_norm(m, NULL) != AIM_OK);
        check(aim_model_add_layer_norm(m, NULL) != AIM_OK);
        check(aim_model_add_embedding(m, NULL) != AIM_OK);
        check(aim_model_add_rnn(m, AIM_RNN_GRU, NULL) != AIM_OK);
        check(aim_model_add_conv1d(m, NULL) != AIM_OK);
        check(aim_model_add_max_pool1d(m, NULL) != AIM_OK);
        check(aim_model_add_attention(m, NULL) != AIM_OK);
        check(aim_model_add_linear(m, NULL) != AIM_OK);
        check(aim_model_add_positional_embedding(m, 0) != AIM_OK);
        check(aim_model_layer_count(m) == layers);
        return;
    case 1: {
        aim_batch_norm_config c;
        (void)aim_batch_norm_config_init(&c);
        const unsigned b = next(g);
        c.momentum = (b & 3) == 3 ? NAN : (float)(b & 3) * 0.4f; /* 0.8 is fine, NaN refused */
        c.eps = (b & 4) ? 1e-5f : ((b & 8) ? 0.0f : 1e-3f);
        c.affine = (int32_t)((b >> 4) & 1);
        st = aim_model_add_batch_norm(m, &c);
        batch_norm_added |= st == AIM_OK;
        TRACE("batch_norm momentum %g eps %g affine %d -> %s\n", (double)c.momentum, (double)c.eps, (int)c.affine,
              aim_status_str(st));
        break;
    }
    case 2: {
        const float p = (float)upto(g, 6) * 0.25f; /* 1 and over are refused */
        st = aim_model_add_dropout(m, p);
        TRACE("dropout %g -> %s\n", (double)p, aim_status_str(st));
        break;
    }
    case 3: {
        aim_layer_norm_config c;
        (void)aim_layer_norm_config_init(&c);
        c.normalized_dims = upto(g, 5); /* 0 and over the rank are refused */
        c.elementwise_affine = (int32_t)(next(g) & 1);
        st = aim_model_add_layer_norm(m, &c);
        TRACE("layer_norm dims %zu affine %d -> %s\n", c.normalized_dims, (int)c.elementwise_affine,
              aim_status_str(st));
        break;
    }
    case 4: {
        aim_embedding_config c;
        (void)aim_embedding_config_init(&c, upto(g, 24), upto(g, 9)); /* zeros refused */
        c.has_padding = (int32_t)(next(g) & 1);
        c.padding_idx = upto(g, 24);
        c.init = init_code(g);
        st = aim_model_add_embedding(m, &c);
        TRACE("embedding %zu x %zu padding %d at %zu init %d -> %s\n", c.num_embeddings, c.embedding_dim,
              (int)c.has_padding, c.padding_idx, (int)c.init, aim_status_str(st));
        break;
    }
    case 5:
    case 6: {
        aim_rnn_config c;
        (void)aim_rnn_config_init(&c, upto(g, 9), upto(g, 4));
        const unsigned b = next(g);
        c.return_sequences = (int32_t)(b & 1);
        c.bidirectional = (int32_t)((b >> 1) & 1);
        c.init = init_code(g);
        const aim_rnn_kind kind = (b & 4) ? (aim_rnn_kind)(b >> 3) : AIM_RNN_GRU; /* large values refused */
        st = aim_model_add_rnn(m, kind, &c);
        TRACE("rnn kind %d hidden %zu layers %zu sequences %d bidirectional %d init %d -> %s\n", (int)kind, c.hidden,
              c.layers, (int)c.return_sequences, (int)c.bidirectional, (int)c.init, aim_status_str(st));
        break;
    }
    case 7: {
        aim_conv1d_config c;
        (void)aim_conv1d_config_init(&c, upto(g, 9), upto(g, 6), act_code(g));
        c.stride = upto(g, 4);
        c.dilation = upto(g, 4);
        c.padding = (aim_padding)upto(g, 4);
        c.pad_left = upto(g, 4);
        c.pad_right = upto(g, 4);
        c.groups = upto(g, 5);
        c.use_bias = (int32_t)(next(g) & 1);
        c.init = init_code(g);
        st = aim_model_add_conv1d(m, &c);
        TRACE("conv1d filters %zu kernel %zu stride %zu dilation %zu padding %d l%zu r%zu groups %zu -> %s\n",
              c.filters, c.kernel, c.stride, c.dilation, (int)c.padding, c.pad_left, c.pad_right, c.groups,
              aim_status_str(st));
        break;
    }
    case 8:
    case 9: {
        aim_pool1d_config c;
        (void)aim_pool1d_config_init(&c, upto(g, 5));
        if (next(g) & 1) {
            c.stride = upto(g, 4);
            c.pad = upto(g, 3);
        }
        const int is_max = (int)(next(g) & 1);
        st = is_max ? aim_model_add_max_pool1d(m, &c) : aim_model_add_avg_pool1d(m, &c);
        TRACE("%s_pool1d %zu stride %zu pad %zu -> %s\n", is_max ? "max" : "avg", c.kernel, c.stride, c.pad,
              aim_status_str(st));
        break;
    }
    case 10:
        st = aim_model_add_global_avg_pool1d(m);
        TRACE("global_avg_pool1d -> %s\n", aim_status_str(st));
        break;
    case 11:
        st = aim_model_add_global_max_pool1d(m);
        TRACE("global_max_pool1d -> %s\n", aim_status_str(st));
        break;
    case 12: st = attention_op(m, g); break;
    case 13: {
        const size_t p = upto(g, 17); /* 0 and shorter than the sequence are refused */
        st = aim_model_add_positional_embedding(m, p);
        TRACE("positional_embedding %zu -> %s %s\n", p, aim_status_str(st),
              st == AIM_OK ? "" : aim_model_last_error(m));
        break;
    }
    case 14: st = linear_op(m, g, 0, AIM_ACT_IDENTITY); break;
    default: /* 15 */
        block_op(m, g, gr);
        return;
    }
    after_add(m, gr, from, layers, st);
}

static void add_op(aim_model *m, prog *g, graph *gr) {
    size_t from = 0;
    check(aim_model_last_node(m, &from) == AIM_OK);
    const size_t layers = aim_model_layer_count(m);
    switch (next(g) % 10) {
    case 0: {
        aim_dense_config c;
        const size_t units = upto(g, 17); /* read in this order: argument order is unspecified */
        (void)aim_dense_config_init(&c, units, act_code(g));
        c.alpha = alpha_of(g);
        c.use_bias = (int32_t)(next(g) % 3); /* 2: a non-canonical "true" */
        c.init = init_code(g);
        aim_status st = aim_model_add_dense(m, &c);
        TRACE("dense units %zu act %d alpha %g bias %d init %d -> %s\n", c.units, (int)c.activation,
              (double)c.alpha, (int)c.use_bias, (int)c.init, aim_status_str(st));
        after_add(m, gr, from, layers, st);
        break;
    }
    case 1: {
        aim_activation a = act_code(g);
        float alpha = alpha_of(g);
        aim_status st = aim_model_add_activation(m, a, alpha);
        TRACE("activation %d alpha %g -> %s\n", (int)a, (double)alpha, aim_status_str(st));
        after_add(m, gr, from, layers, st);
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
        after_add(m, gr, from, layers, st);
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
        after_add(m, gr, from, layers, st);
        break;
    }
    case 5: {
        aim_status st = aim_model_add_global_avg_pool2d(m);
        TRACE("global_avg_pool2d -> %s\n", aim_status_str(st));
        after_add(m, gr, from, layers, st);
        break;
    }
    case 6: {
        aim_status st = aim_model_add_flatten(m);
        TRACE("flatten -> %s\n", aim_status_str(st));
        after_add(m, gr, from, layers, st);
        break;
    }
    case 7: {
        aim_lstm_config c;
        size_t h = upto(g, 9), layer_count = upto(g, 18); /* 0 and 17 are out of range */
        (void)aim_lstm_config_init(&c, h, layer_count);
        c.return_sequences = (int32_t)(next(g) & 1);
        c.init = init_code(g);
        aim_status st = aim_model_add_lstm(m, &c);
        TRACE("lstm hidden %zu layers %zu sequences %d init %d -> %s\n", c.hidden, c.layers,
              (int)c.return_sequences, (int)c.init, aim_status_str(st));
        after_add(m, gr, from, layers, st);
        break;
    }
    case 8:
        new_kind_op(m, g, gr, from, layers);
        break;
    default: /* 9: a graph op */
        graph_op(m, g, gr);
        break;
    }
}

/* Names the outputs, when a graph op was read: none, the marked nodes, the
 * layers that no layer reads, or both (without repeats). */
static void choose_outputs(aim_model *m, prog *g, const graph *gr) {
    const unsigned mode = next(g) % 4;
    size_t nodes[MAX_MARKS + MAX_IO];
    float weights[MAX_MARKS + MAX_IO];
    size_t count = 0;
    if (mode == 0) return;
    if (mode & 1) {
        for (size_t i = 0; i < gr->n_marks; i++) {
            int seen = 0;
            for (size_t j = 0; mode == 3 && j < count; j++) seen |= nodes[j] == gr->marks[i];
            if (seen) continue;
            nodes[count] = gr->marks[i];
            weights[count++] = gr->mark_weights[i];
        }
    }
    if (mode & 2) {
        const size_t layers = aim_model_layer_count(m);
        for (size_t i = 0; i < layers && i < MAX_TRACKED && count < MAX_MARKS + MAX_IO; i++) {
            if (gr->layer_read[i]) continue;
            int seen = 0;
            for (size_t j = 0; j < count; j++) seen |= nodes[j] == i;
            if (seen) continue;
            nodes[count] = i;
            weights[count++] = weight_of(g);
        }
    }
    const int all_one = next(g) % 3 == 0;
    aim_status st = aim_model_set_outputs(m, nodes, all_one ? NULL : weights, count);
    TRACE("set_outputs mode %u, %zu nodes (%zu %zu ...), %s -> %s %s\n", mode, count, count > 0 ? nodes[0] : 0,
          count > 1 ? nodes[1] : 0, all_one ? "weights 1" : "weights read", aim_status_str(st),
          st == AIM_OK ? "" : aim_model_last_error(m));
    if (st == AIM_OK) {
        check(aim_model_output_count(m) == count);
        for (size_t j = 0; j < count; j++) {
            size_t node = 0;
            check(aim_model_output_node(m, j, &node) == AIM_OK && node == nodes[j]);
        }
    }
}

/* Serializes (model, optimizer) into a fresh buffer; NULL if the sizes
 * refuse (they cannot for a compiled model of this size). */
static unsigned char *to_bytes(const aim_model *m, const aim_optimizer *o, size_t *len) {
    size_t need = 0, written = 0;
    check(aim_model_serialized_size(m, o, &need) == AIM_OK);
    unsigned char *buf = malloc(need);
    if (!buf) return NULL;
    if (need > 0) { /* one byte short: refused, and *written says how many are needed */
        check(aim_model_serialize(m, o, buf, need - 1, &written) == AIM_ERR_SHAPE_MISMATCH && written == need);
    }
    check(aim_model_serialize(m, o, buf, need, &written) == AIM_OK && written == need);
    *len = need;
    return buf;
}

/* Floats per sample of a node. */
static size_t node_size(const aim_model *m, size_t node) {
    size_t rank = 0, dims[AIM_MAX_RANK] = {0, 0, 0, 0};
    check(aim_model_layer_shape(m, node, &rank, dims) == AIM_OK && rank >= 1 && rank <= 3);
    size_t n = 1;
    for (size_t i = 0; i < rank; i++) n *= dims[i];
    check(n > 0);
    return n;
}

/* Inference on every input into `y` (one exact-size buffer per output). */
static aim_status predict_all(const aim_model *m, aim_workspace *ws, size_t n_in, size_t n_out, size_t batch,
                              float *const *x, const size_t *x_count, float *const *y, const size_t *y_count) {
    if (ids_input) {
        if (n_in == 1 && n_out == 1)
            return aim_model_predict_ids(m, ws, (const int32_t *)(void *)x[0], x_count[0], batch, y[0], y_count[0]);
        return aim_model_predict_typed(m, ws, (const void *const *)x, x_count, n_in, batch, y, y_count, n_out);
    }
    if (n_in == 1 && n_out == 1) return aim_model_predict(m, ws, x[0], x_count[0], batch, y[0], y_count[0]);
    return aim_model_predict_multi(m, ws, (const float *const *)x, x_count, n_in, batch, y, y_count, n_out);
}

static aim_status forward_all(aim_model *m, aim_mode mode, size_t n_in, size_t batch, float *const *x,
                              const size_t *x_count) {
    if (ids_input)
        return n_in == 1 ? aim_model_forward_ids(m, mode, (const int32_t *)(void *)x[0], x_count[0], batch)
                         : aim_model_forward_typed(m, mode, (const void *const *)x, x_count, n_in, batch);
    if (n_in == 1) return aim_model_forward(m, mode, x[0], x_count[0], batch);
    return aim_model_forward_multi(m, mode, (const float *const *)x, x_count, n_in, batch);
}

/* Incremental inference over the whole context of a one-input, one-output
 * model whose input's first axis is T: each position's rows of the batch's
 * samples, gathered into an exact-size buffer. The first step either runs
 * or the model is AIM_ERR_UNSUPPORTED (a layer that cannot step); once it
 * runs, every position does, one past the last is AIM_ERR_INVALID_STATE,
 * and a reset starts again at 0. */
static void step_all(const aim_model *m, aim_workspace *ws, size_t batch, const float *x, size_t in_size,
                     size_t out_size) {
    size_t rank = 0, dims[AIM_MAX_RANK] = {0, 0, 0, 0}, pos = 99;
    check(aim_model_layer_shape(m, AIM_MODEL_INPUT(0), &rank, dims) == AIM_OK);
    const size_t T = dims[0];
    if (in_size % T != 0 || out_size % T != 0) return; /* no position layout to feed */
    const size_t in_row = in_size / T, out_row = out_size / T;
    float *xs = malloc(batch * in_row * sizeof(float)), *ys = malloc(batch * out_row * sizeof(float));
    if (!xs || !ys) goto done;
    check(aim_workspace_reset_steps(ws) == AIM_OK);
    for (size_t t = 0; t <= T; t++) {
        check(aim_workspace_step_position(ws, &pos) == AIM_OK && pos == t);
        for (size_t b = 0; b < batch && t < T; b++) /* ids travel as 4-byte words: a copy serves both */
            memcpy(xs + b * in_row, x + b * in_size + t * in_row, in_row * sizeof(float));
        aim_status st = ids_input ? aim_model_predict_step_ids(m, ws, (const int32_t *)(void *)xs, batch * in_row,
                                                               batch, ys, batch * out_row)
                                  : aim_model_predict_step(m, ws, xs, batch * in_row, batch, ys, batch * out_row);
        TRACE("predict_step %zu of %zu -> %s %s\n", t, T, aim_status_str(st),
              st == AIM_OK ? "" : aim_workspace_last_error(ws));
        if (t == 0 && st == AIM_ERR_UNSUPPORTED) break;
        check(t < T ? st == AIM_OK : st == AIM_ERR_INVALID_STATE);
    }
    check(aim_workspace_reset_steps(ws) == AIM_OK);
    check(aim_workspace_step_position(ws, &pos) == AIM_OK && pos == 0);
done:
    free(xs);
    free(ys);
}

static void run(aim_model *m, prog *g, size_t max_batch, int input_gradient) {
    const size_t n_in = aim_model_input_count(m), n_out = aim_model_output_count(m);
    check(n_in >= 1 && n_in <= MAX_IO && n_out >= 1 && n_out <= MAX_IO);
    size_t in_size[MAX_IO], out_size[MAX_IO], x_count[MAX_IO], y_count[MAX_IO];
    float *x[MAX_IO] = {NULL}, *t[MAX_IO] = {NULL}, *y1[MAX_IO] = {NULL}, *y2[MAX_IO] = {NULL};
    int32_t *labels = NULL;
    for (size_t k = 0; k < n_in; k++) in_size[k] = node_size(m, AIM_MODEL_INPUT(k));
    for (size_t j = 0; j < n_out; j++) {
        size_t node = 0;
        check(aim_model_output_node(m, j, &node) == AIM_OK);
        out_size[j] = node_size(m, node);
    }
    check(in_size[0] == aim_model_input_size(m) && out_size[0] == aim_model_output_size(m));
    const int multi = n_in > 1 || n_out > 1;

    const size_t batch = 1 + upto(g, (unsigned)max_batch);
    aim_workspace *ws = NULL;
    aim_optimizer *sgd = NULL;
    aim_model *copy = NULL;
    aim_optimizer *copy_opt = NULL;
    unsigned char *b1 = NULL, *b2 = NULL;
    int ok = (labels = malloc(batch * sizeof *labels)) != NULL;
    /* Exact sizes, so ASan sees a read or write one float past a buffer. */
    for (size_t k = 0; k < n_in; k++) {
        x_count[k] = batch * in_size[k];
        ok &= (x[k] = malloc(x_count[k] * sizeof(float))) != NULL;
    }
    for (size_t j = 0; j < n_out; j++) {
        y_count[j] = batch * out_size[j];
        ok &= (t[j] = calloc(y_count[j], sizeof(float))) != NULL;
        ok &= (y1[j] = malloc(y_count[j] * sizeof(float))) != NULL;
        ok &= (y2[j] = malloc(y_count[j] * sizeof(float))) != NULL;
    }
    if (!ok) goto done;
    for (size_t k = 0; k < n_in; k++)
        for (size_t i = 0; i < x_count[k]; i++) x[k][i] = ((float)next(g) - 128.0f) / 64.0f;
    int id_refused = 0; /* an id outside some table: forward and predict must refuse it */
    if (ids_input) {
        int32_t *ids = (int32_t *)(void *)x[0];
        for (size_t i = 0; i < x_count[0]; i++) ids[i] = (int32_t)(next(g) % 22) - 1;
    }

    /* Counts that disagree are refused before anything is read. */
    check(aim_model_forward(m, AIM_MODE_TRAIN, x[0], x_count[0] + 1, batch) == AIM_ERR_SHAPE_MISMATCH);
    if (n_in > 1) check(aim_model_forward(m, AIM_MODE_TRAIN, x[0], x_count[0], batch) != AIM_OK);
    if (ids_input) {
        /* A float call on an input of ids is refused, whatever the ids. */
        if (n_in == 1) check(aim_model_forward(m, AIM_MODE_TRAIN, x[0], x_count[0], batch) != AIM_OK);
        aim_status fst = forward_all(m, AIM_MODE_TRAIN, n_in, batch, x, x_count);
        check(fst == AIM_OK || fst == AIM_ERR_INVALID_ARGUMENT);
        /* A batch norm before the embedding in layer order may refuse first:
         * that is the batch-of-one case below, whatever the ids. */
        id_refused = fst != AIM_OK && !bn_refused(m, fst);
    }
    if (id_refused) {
        /* The same ids are refused by predict too, and nothing ran. */
        check(aim_model_backward(m, NULL, 0) == AIM_ERR_INVALID_STATE);
        if (aim_workspace_create(m, &CAPPED, max_batch, &ws) == AIM_OK)
            check(predict_all(m, ws, n_in, n_out, batch, x, x_count, y1, y_count) == AIM_ERR_INVALID_ARGUMENT);
        goto done;
    }

    /* Training step. */
    float loss;
    float *params;
    size_t count;
    check(aim_model_parameters(m, &params, &count) == AIM_OK);
    check(aim_model_zero_grad(m) == AIM_OK);
    aim_status st = forward_all(m, AIM_MODE_TRAIN, n_in, batch, x, x_count);
    if (bn_refused(m, st)) {
        /* Batch statistics of one value: refused in training only; inference
         * runs, unless an id is outside its table (which the training
         * forward may not have reached if the batch norm comes first). */
        check(aim_model_backward(m, NULL, 0) == AIM_ERR_INVALID_STATE);
        if (aim_workspace_create(m, &CAPPED, max_batch, &ws) == AIM_OK) {
            aim_status pst = predict_all(m, ws, n_in, n_out, batch, x, x_count, y1, y_count);
            check(pst == AIM_OK || (ids_input && pst == AIM_ERR_INVALID_ARGUMENT &&
                                    strstr(aim_workspace_last_error(ws), "is outside the table")));
        }
        goto done;
    }
    check(st == AIM_OK);
    check(aim_model_loss(m, 0, AIM_LOSS_MSE, t[0], y_count[0] + 1, &loss) == AIM_ERR_SHAPE_MISMATCH);
    st = aim_model_loss(m, 0, AIM_LOSS_MSE, t[0], y_count[0], &loss);
    check(st == AIM_OK || st == AIM_ERR_NON_FINITE);
    int have_grad = st == AIM_OK;
    for (size_t j = 1; j < n_out; j++) {
        switch (next(g) % 4) {
        case 0:
            st = aim_model_loss(m, j, AIM_LOSS_MSE, t[j], y_count[j], &loss);
            check(st == AIM_OK || st == AIM_ERR_NON_FINITE);
            break;
        case 1: /* a label of out_size is out of range */
            for (size_t i = 0; i < batch; i++) labels[i] = (int32_t)(next(g) % (out_size[j] + 1));
            st = aim_model_loss_sparse(m, j, labels, batch, &loss);
            check(st == AIM_OK || st == AIM_ERR_NON_FINITE || st == AIM_ERR_INVALID_ARGUMENT);
            break;
        case 2:
            for (size_t i = 0; i < y_count[j]; i++) y1[j][i] = ((float)next(g) - 128.0f) / 256.0f;
            check(aim_model_set_output_grad(m, j, y1[j], y_count[j] + 1) == AIM_ERR_SHAPE_MISMATCH);
            st = aim_model_set_output_grad(m, j, y1[j], y_count[j]);
            check(st == AIM_OK);
            break;
        default: /* no gradient from this output */
            st = AIM_ERR_INVALID_STATE;
            break;
        }
        have_grad |= st == AIM_OK;
    }
    /* An output gradient is for a one-output model only. */
    if (n_out > 1) check(aim_model_backward(m, t[0], y_count[0]) == AIM_ERR_SHAPE_MISMATCH);
    if (have_grad) {
        check(aim_model_backward(m, NULL, 0) == AIM_OK);
        for (size_t k = 0; k < n_in; k++) {
            const float *gx = NULL;
            size_t gn = 0;
            st = aim_model_input_gradient(m, k, &gx, &gn);
            if (input_gradient && !(ids_input && k == 0)) { /* ids have no gradient */
                check(st == AIM_OK && gn == x_count[k]);
                volatile float sum = 0.0f; /* touches every float */
                for (size_t i = 0; i < gn; i++) sum += gx[i];
                (void)sum;
            } else {
                check(st != AIM_OK);
            }
        }
        aim_sgd_config sc;
        (void)aim_sgd_config_init(&sc);
        sc.momentum = (next(g) & 1) ? 0.9f : 0.0f;
        st = aim_sgd_create(&CAPPED, &sc, count, &sgd);
        check(st == AIM_OK || (count == 0 && st == AIM_ERR_INVALID_ARGUMENT));
        if (sgd) check(aim_optimizer_step_model(sgd, m, 0.01f) == AIM_OK);
    } else {
        check(aim_model_backward(m, NULL, 0) == AIM_ERR_INVALID_STATE);
    }

    /* predict == inference forward, bit for bit, output by output. */
    if (aim_workspace_create(m, &CAPPED, max_batch, &ws) != AIM_OK) goto done;
    if (multi) check(aim_model_predict(m, ws, x[0], x_count[0], batch, y1[0], y_count[0]) != AIM_OK);
    if (!multi) {
        check(aim_model_predict(m, ws, x[0], x_count[0], batch, y1[0], y_count[0] + 1) == AIM_ERR_SHAPE_MISMATCH);
    }
    check(predict_all(m, ws, n_in, n_out, batch, x, x_count, y1, y_count) == AIM_OK);
    check(forward_all(m, AIM_MODE_INFERENCE, n_in, batch, x, x_count) == AIM_OK);
    for (size_t j = 0; j < n_out; j++) {
        const float *fwd;
        size_t n;
        check(aim_model_output(m, j, &fwd, &n) == AIM_OK && n == y_count[j]);
        check(memcmp(fwd, y1[j], n * sizeof(float)) == 0);
    }
    {
        const float *fwd;
        size_t n;
        check(aim_model_output(m, n_out, &fwd, &n) != AIM_OK);
    }
    if (!multi) step_all(m, ws, batch, x[0], in_size[0], out_size[0]);

    /* serialize -> deserialize -> serialize is the identity. */
    size_t l1, l2;
    b1 = to_bytes(m, sgd, &l1);
    if (!b1) goto done;
    char why[256];
    st = aim_model_deserialize(&CAPPED, b1, l1, &copy, &copy_opt, why, sizeof why);
    check(st == AIM_OK && why[0] == '\0');
    check((copy_opt != NULL) == (sgd != NULL));
    check(aim_model_input_count(copy) == n_in && aim_model_output_count(copy) == n_out);
    b2 = to_bytes(copy, copy_opt, &l2);
    if (!b2) goto done;
    check(l1 == l2 && memcmp(b1, b2, l1) == 0);
    check(predict_all(copy, ws, n_in, n_out, batch, x, x_count, y2, y_count) == AIM_OK);
    for (size_t j = 0; j < n_out; j++) check(memcmp(y1[j], y2[j], y_count[j] * sizeof(float)) == 0);
done:
    free(b1);
    free(b2);
    aim_optimizer_free(copy_opt);
    aim_model_free(copy);
    aim_optimizer_free(sgd);
    aim_workspace_free(ws);
    for (size_t k = 0; k < MAX_IO; k++) free(x[k]);
    for (size_t j = 0; j < MAX_IO; j++) {
        free(t[j]);
        free(y1[j]);
        free(y2[j]);
    }
    free(labels);
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
    ids_input = (flags & 0x80) != 0;
    batch_norm_added = 0;
    if (ids_input) check(aim_model_set_input_dtype(m, 0, AIM_DTYPE_INT32) == AIM_OK);
    graph gr;
    memset(&gr, 0, sizeof gr);
    gr.ops_left = MAX_TOTAL_OPS - ops;
    for (size_t i = 0; i < ops; i++) add_op(m, &g, &gr);
    if (gr.used) choose_outputs(m, &g, &gr);
    aim_compile_config cc;
    (void)aim_compile_config_init(&cc);
    cc.max_batch = max_batch;
    cc.input_gradient = (int32_t)(flags & 1);
    cc.seed = (flags >> 1) & 0x3F;
    aim_status comp = aim_model_compile(m, &cc);
    TRACE("compile -> %s %s\n", aim_status_str(comp), aim_model_last_error(m));
    if (comp == AIM_OK) {
        /* A compiled model refuses more layers, inputs, branches and outputs. */
        size_t node = 0, one = 0;
        const size_t dims1[1] = {1};
        check(aim_model_add_flatten(m) == AIM_ERR_INVALID_STATE);
        check(aim_model_add_input(m, 1, dims1, &node) == AIM_ERR_INVALID_STATE);
        check(aim_model_continue_from(m, AIM_MODEL_INPUT(0)) == AIM_ERR_INVALID_STATE);
        check(aim_model_set_outputs(m, &one, NULL, 1) == AIM_ERR_INVALID_STATE);
        run(m, &g, max_batch, (int)(flags & 1));
    }
    aim_model_free(m);
    return 0;
}
