/*
 * Compile: checks the graph, plans its memory once and allocates it in one
 * block, then initializes the parameters. Nothing is allocated after this.
 *
 * What the plan reuses (measured for the seed CNN and a residual network in
 * tests/test_graph.c, which prints both figures):
 *  - training keeps every layer's output until the backward reads it, so
 *    activations are one buffer each; the gradients d loss / d output are
 *    placed by liveness, as TFLite's arena planner places tensors: a
 *    gradient lives from the backward step of its first consumer (or the loss)
 *    to its own layer's backward step, and buffers whose lifetimes do not
 *    meet share memory. A chain needs two, as the ping-pong of a sequential
 *    model did; a residual skip keeps a third alive across its block.
 *  - inference (a workspace) places every value that is not a model output
 *    by its forward lifetime, per sample, so that a batch slice of nb rows
 *    finds value v at nb * offset(v) inside its own rows.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <string.h>

#include "model.h"

/* Floats of scratch the model's layers need at `batch`; 0 on overflow. */
int aim__scratch_for(const aim_model *m, size_t batch, size_t *out) {
    size_t mx = 0;
    for (size_t i = 0; i < m->n_layers; i++) {
        size_t s;
        if (!aim__mul(batch, m->layers[i].scratch_per_sample, &s) || !aim__add(s, m->layers[i].scratch_floats, &s))
            return 0;
        if (s > mx) mx = s;
    }
    *out = mx;
    return 1;
}

/* Floats of a worker arena for a training slice of `slice` samples: a
 * partial gradient buffer of n_params, then the slice's scratch. */
int aim__arena_floats(const aim_model *m, size_t n_params, size_t slice, size_t *out) {
    size_t g, sc;
    return aim__round_floats(n_params, &g) && aim__scratch_for(m, slice, &sc) && aim__add(g, sc, out);
}

/* The largest slice any split of `batch` can make: a small batch may be cut
 * into fewer slices than the pool has threads, never fewer than 2. */
size_t aim__largest_slice(size_t batch) { return batch / 2 + batch % 2; }

/* ---- liveness placement ----------------------------------------------------
 * Each buffer has a size and a lifetime [first, last] in steps; placed in
 * decreasing size, each at the lowest offset where it meets no placed buffer
 * whose lifetime meets its own (greedy by size, TFLite's
 * ArenaPlanner/"GreedyBySize"). */
typedef struct aim__live live;

static int meets(const live *a, const live *b) { return a->first <= b->last && b->first <= a->last; }

/* Places the n layers' buffers of plan `which` (0: gradients, 1: workspace
 * values); returns the extent (floats). The plan lives in the nodes, so
 * compile makes one allocation only. */
static size_t place(aim__layer *layers, size_t n, int which, int *overflow) {
    size_t extent = 0;
    for (size_t done = 0; done < n; done++) {
        size_t pick = n;
        for (size_t i = 0; i < n; i++) {
            const live *c = &layers[i].live[which];
            if (!c->placed && c->size && (pick == n || c->size > layers[pick].live[which].size)) pick = i;
        }
        if (pick == n) break; /* only empty buffers remain */
        live *b = &layers[pick].live[which];
        size_t off = 0;
        for (int moved = 1; moved;) { /* the lowest offset clear of every placed buffer it meets */
            moved = 0;
            for (size_t i = 0; i < n; i++) {
                const live *o = &layers[i].live[which];
                if (!o->placed || !meets(o, b)) continue;
                if (off < o->off + o->size && o->off < off + b->size) {
                    off = o->off + o->size;
                    moved = 1;
                }
            }
        }
        b->off = off;
        b->placed = 1;
        size_t end;
        if (!aim__add(off, b->size, &end)) *overflow = 1;
        if (end > extent) extent = end;
    }
    return extent;
}

/* Rounds up to 16 floats (64 bytes), so every placed buffer stays aligned. */
static int round16(size_t n, size_t *out) { return aim__round_floats(n, out); }

/* The block's layout: regions that are multiples of AIM__ALIGN bytes. */
typedef struct planner {
    size_t off;
    int overflow;
} planner;

static size_t plan(planner *p, size_t a, size_t b) {
    size_t n, r, at = p->off;
    if (!aim__mul(a, b, &n) || !aim__round_floats(n, &r) || !aim__add(p->off, r, &p->off)) p->overflow = 1;
    return at;
}

aim_status aim_compile_config_init(aim_compile_config *c) {
    if (!c) return AIM_ERR_INVALID_ARGUMENT;
    c->max_batch = 32;
    c->input_gradient = 0;
    c->seed = 0;
    c->rng = NULL;
    return AIM_OK;
}

/* Floats of a layer's cache at max_batch B: B rows of cache_per_sample,
 * then cache_floats for the whole batch (what aim__fwd.batch_cache points at). */
static size_t cache_floats(const aim__layer *L, size_t B, int *overflow) {
    size_t n;
    if (!aim__mul(B, L->cache_per_sample, &n) || !aim__add(n, L->cache_floats, &n)) {
        *overflow = 1;
        return 0;
    }
    return n;
}

/* Nonzero when layer v is one of the n model outputs. */
static int is_output(const size_t *outs, size_t n, size_t v) {
    for (size_t k = 0; k < n; k++)
        if (outs[k] == v) return 1;
    return 0;
}

/* The last layer that reads layer v's output, or v itself when none does. */
static size_t last_reader(const aim_model *m, size_t v) {
    size_t last = v;
    for (size_t i = v + 1; i < m->n_layers; i++)
        for (size_t j = 0; j < m->layers[i].n_in; j++)
            if (m->layers[i].in[j] == v) last = i;
    return last;
}

/* Every input and every layer's output must be read by someone: a dangling
 * layer would be computed for nothing, and gets no gradient. */
static aim_status check_used(aim_model *m, size_t n_out, const size_t *outs) {
    for (size_t k = 0; k < m->n_inputs; k++) {
        int used = 0;
        for (size_t i = 0; i < m->n_layers && !used; i++)
            for (size_t j = 0; j < m->layers[i].n_in; j++) used |= m->layers[i].in[j] == AIM_MODEL_INPUT(k);
        if (!used) {
            aim__set_error(m->err, "compile: input %zu is read by no layer", k);
            return AIM_ERR_SHAPE_MISMATCH;
        }
    }
    for (size_t v = 0; v < m->n_layers; v++) {
        if (last_reader(m, v) == v && !is_output(outs, n_out, v)) {
            aim__set_error(m->err, "compile: layer %zu (%s): its output is read by no layer and is not a model output",
                           v, m->layers[v].ops->name);
            return AIM_ERR_SHAPE_MISMATCH;
        }
    }
    return AIM_OK;
}

aim_status aim_model_compile(aim_model *m, const aim_compile_config *config) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_compile_config c;
    if (config) c = *config;
    else (void)aim_compile_config_init(&c);
    if (m->compiled) {
        aim__set_error(m->err, "compile: the model is already compiled");
        return AIM_ERR_INVALID_STATE;
    }
    if (m->n_layers == 0) {
        aim__set_error(m->err, "compile: the model has no layers");
        return AIM_ERR_INVALID_STATE;
    }
    if (c.max_batch == 0) {
        aim__set_error(m->err, "compile: max_batch must be > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    const size_t B = c.max_batch, nl = m->n_layers, ni = m->n_inputs;
    const int igrad = c.input_gradient != 0;
    const size_t n_out = aim__n_outputs(m);
    size_t outs[AIM_MAX_NODE_INPUTS];
    for (size_t k = 0; k < n_out; k++) outs[k] = aim__output_node(m, k);
    aim_status st = check_used(m, n_out, outs);
    if (st != AIM_OK) return st;

    for (size_t i = 0; i < nl; i++) {
        memset(m->layers[i].live, 0, sizeof m->layers[i].live);
        m->layers[i].grad_seen = 0;
    }

    /* Parameter count, and how each layer hands back each input's gradient:
     * walking the backward order, the first consumer of a value writes its
     * gradient and later ones add (a model output is first written by its loss). */
    size_t n_params = 0, n_buffers = 0;
    int overflow = 0;
    int seen_in[AIM_MAX_NODE_INPUTS] = {0};
    for (size_t i = 0; i < nl; i++) {
        aim__layer *L = &m->layers[i];
        size_t cnt;
        if (!aim__add(L->weight_count, L->bias_count, &cnt) || !aim__add(n_params, cnt, &n_params)) overflow = 1;
        L->buffer_offset = n_buffers;
        if (!aim__add(n_buffers, L->buffer_count, &n_buffers)) overflow = 1;
    }
    for (size_t k = 0; k < n_out; k++) m->layers[outs[k]].grad_seen = 1;
    size_t dtmp_max = 0;
    for (size_t i = nl; i-- > 0;) {
        aim__layer *L = &m->layers[i];
        size_t add_floats = 0;
        for (size_t j = 0; j < L->n_in; j++) {
            const size_t v = L->in[j];
            int *s = aim__is_input(v) ? &seen_in[aim__input_index(v)] : &m->layers[v].grad_seen;
            aim__shape tmp;
            const size_t size = aim__node_shape(m, v, &tmp)->size;
            if (aim__is_input(v) && (!igrad || m->inputs[aim__input_index(v)].dtype != AIM_DTYPE_FLOAT32)) {
                L->dx_mode[j] = AIM__DX_NONE;
            } else if (!*s) {
                L->dx_mode[j] = AIM__DX_WRITE;
                *s = 1;
            } else {
                L->dx_mode[j] = AIM__DX_ADD;
                size_t r;
                if (!aim__mul(B, size, &r) || !round16(r, &r) || !aim__add(add_floats, r, &add_floats)) overflow = 1;
            }
        }
        if (add_floats > dtmp_max) dtmp_max = add_floats;
    }

    /* Gradient lifetimes in backward steps: the loss is step 0, layer i's
     * backward step nl - i. A gradient is born at its first writer. */
    for (size_t v = 0; v < nl; v++) {
        live *g = &m->layers[v].live[0];
        g->first = is_output(outs, n_out, v) ? 0 : nl - last_reader(m, v);
        g->last = nl - v;
        if (!aim__mul(B, m->layers[v].out_size, &g->size) || !round16(g->size, &g->size)) overflow = 1;
    }
    size_t grad_naive = 0;
    for (size_t v = 0; v < nl; v++)
        if (!aim__add(grad_naive, m->layers[v].live[0].size, &grad_naive)) overflow = 1;
    const size_t grad_extent = place(m->layers, nl, 0, &overflow);

    /* Inference lifetimes in forward steps, per sample; outputs are written
     * straight into the caller's buffers and take no room. */
    size_t infer_naive = 0;
    for (size_t v = 0; v < nl; v++) {
        live *a = &m->layers[v].live[1];
        a->first = v;
        a->last = last_reader(m, v);
        if (!round16(m->layers[v].out_size, &a->size)) overflow = 1;
        if (!aim__add(infer_naive, a->size, &infer_naive)) overflow = 1;
        if (is_output(outs, n_out, v)) a->size = 0;
    }
    const size_t infer_extent = place(m->layers, nl, 1, &overflow);

    size_t max_scratch = 0;
    if (!aim__scratch_for(m, B, &max_scratch)) overflow = 1;

    /* The block. */
    planner p = {0, 0};
    const size_t o_params = plan(&p, n_params, 1);
    const size_t o_grads = plan(&p, n_params, 1);
    const size_t o_buffers = plan(&p, n_buffers, 1);
    size_t o_in[AIM_MAX_NODE_INPUTS], o_ig[AIM_MAX_NODE_INPUTS];
    for (size_t k = 0; k < ni; k++) {
        o_in[k] = plan(&p, B, m->inputs[k].size);
        o_ig[k] = igrad && m->inputs[k].dtype == AIM_DTYPE_FLOAT32 ? plan(&p, B, m->inputs[k].size) : 0;
    }
    const size_t o_garena = plan(&p, grad_extent, 1);
    const size_t o_dtmp = plan(&p, dtmp_max, 1);
    const size_t o_scratch = plan(&p, max_scratch, 1);
    const size_t fl_ptr = (sizeof(float *) + sizeof(float) - 1) / sizeof(float);
    const size_t fl_size = (sizeof(size_t) + sizeof(float) - 1) / sizeof(float);
    const size_t o_ptrs = plan(&p, 6 * nl, fl_ptr);
    const size_t o_sizes = plan(&p, 3 * nl, fl_size);
    const size_t first_layer_off = p.off;
    for (size_t i = 0; i < nl; i++) {
        const aim__layer *L = &m->layers[i];
        (void)plan(&p, B, L->out_size);
        if (L->cache_per_sample || L->cache_floats) (void)plan(&p, 1, cache_floats(L, B, &overflow));
        if (L->state_per_sample) (void)plan(&p, 2 * B, L->state_per_sample);
    }
    size_t bytes = 0, arena = 0;
    const int arena_ok = !m->pool || aim__arena_floats(m, n_params, aim__largest_slice(B), &arena);
    if (overflow || p.overflow || !arena_ok || !aim__mul(p.off, sizeof(float), &bytes) ||
        bytes > SIZE_MAX - AIM__ALIGN) {
        aim__set_error(m->err, "compile: memory size overflows for max_batch %zu", B);
        return AIM_ERR_OVERFLOW;
    }
    if (B > INT_MAX) {
        aim__set_error(m->err, "compile: max_batch %zu exceeds the BLAS limit", B);
        return AIM_ERR_UNSUPPORTED;
    }
    if (m->pool) {
        /* The pool's arenas first: a failure there leaves the model as it was. */
        st = aim__pool_reserve(m->pool, arena);
        if (st != AIM_OK) {
            aim__set_error(m->err, "compile: %s", aim_threadpool_last_error(m->pool));
            return st;
        }
    }
    void *raw = NULL;
    float *base = aim__alloc_aligned(&m->alloc, bytes, &raw);
    if (!base) {
        aim__set_error(m->err, "compile: out of memory allocating %zu bytes", bytes);
        return AIM_ERR_OUT_OF_MEMORY;
    }
    /* Touch every page now, so the first training step pays no page faults. */
    memset(base, 0, bytes);

    m->raw = raw;
    m->block_bytes = bytes + AIM__ALIGN;
    m->params = base + o_params;
    m->grads = base + o_grads;
    for (size_t k = 0; k < ni; k++) {
        m->in_copy[k] = base + o_in[k];
        m->in_grad[k] = igrad && m->inputs[k].dtype == AIM_DTYPE_FLOAT32 ? base + o_ig[k] : NULL;
    }
    m->dtmp = base + o_dtmp;
    m->scratch = base + o_scratch;
    m->acts = (float **)(void *)(base + o_ptrs);
    m->caches = m->acts + nl;
    m->dys = m->acts + 2 * nl;
    m->states = m->acts + 3 * nl;
    m->used_states = m->acts + 4 * nl;
    m->active_states = (const float **)(m->acts + 5 * nl);
    m->state_batch = (size_t *)(void *)(base + o_sizes);
    m->out_of = m->state_batch + nl;
    m->infer_off = m->state_batch + 2 * nl;
    planner q = {first_layer_off, 0};
    size_t pofs = 0;
    for (size_t i = 0; i < nl; i++) {
        aim__layer *L = &m->layers[i];
        L->param_offset = pofs;
        pofs += L->weight_count + L->bias_count;
        m->acts[i] = base + plan(&q, B, L->out_size);
        m->caches[i] = L->cache_per_sample || L->cache_floats ? base + plan(&q, 1, cache_floats(L, B, &overflow))
                                                              : NULL;
        m->states[i] = L->state_per_sample ? base + plan(&q, 2 * B, L->state_per_sample) : NULL;
        m->used_states[i] = L->state_per_sample ? m->states[i] + B * L->state_per_sample : NULL;
        m->active_states[i] = NULL;
        m->state_batch[i] = 0;
        m->dys[i] = base + o_garena + L->live[0].off;
        m->out_of[i] = AIM__NONE;
        m->infer_off[i] = L->live[1].off;
    }
    if (!m->outputs_set) {
        m->outputs_set = 1;
        m->n_outputs = 1;
        m->outputs[0] = nl - 1;
        m->loss_weights[0] = 1.0f;
    }
    for (size_t k = 0; k < m->n_outputs; k++) m->out_of[m->outputs[k]] = k;
    m->infer_per_sample = infer_extent;
    m->plan.grad_planned = grad_extent;
    m->plan.grad_naive = grad_naive;
    m->plan.infer_planned = infer_extent;
    m->plan.infer_naive = infer_naive;
    m->n_params = n_params;
    m->buffers = base + o_buffers;
    m->n_buffers = n_buffers;
    m->max_batch = B;
    m->input_gradient = igrad;

    struct aim_rng local, *rng = c.rng;
    if (!rng) {
        aim__rng_init(&local, c.seed);
        rng = &local;
    }
    for (size_t i = 0; i < nl; i++) {
        const aim__layer *L = &m->layers[i];
        if (L->ops->init) L->ops->init(L, m->params + L->param_offset, rng);
        if (L->ops->init_buffers) L->ops->init_buffers(L, m->buffers + L->buffer_offset);
    }
    /* The random stream (dropout) comes from the same generator, after the
     * weights: one compile seed fixes both. */
    aim__model_set_random(m, aim__rng_u64(rng), 0);
    m->compiled = 1;
    m->batch = 0;
    m->parts = 1;
    return AIM_OK;
}
