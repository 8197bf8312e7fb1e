/*
 * The executor: forward, losses, backward and predict over the planned
 * memory, and the split of a batch over a thread pool. It reaches every
 * layer through its kind's table (forward, backward, macs).
 *
 * A pool runs the whole graph on one slice of the batch per thread: the
 * activations, caches and gradients of a sample never depend on another
 * sample's, so each slice needs only its own scratch (worker 0 uses the
 * model's, the others their pool arena) and, in the backward, its own
 * parameter-gradient buffer, summed into the model's afterwards in a fixed
 * order (so a given thread count always gives the same bits). Gradient
 * buffers are shared by liveness between layers, so the pooled backward
 * runs one job per layer: a slice running ahead could overwrite rows of a
 * buffer another slice still reads.
 *
 * A batch-coupled kind (batch norm) needs the whole batch in training: the
 * pooled training forward then runs the layers between two such layers as
 * one job of slices, and each coupled layer as a job of its own in which
 * every worker takes the whole batch and a share of the channels (so the
 * statistics are the batch's, and the same whatever the thread count). Its
 * backward is split the same way.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "model.h"

void aim__split(size_t batch, size_t parts, size_t w, size_t *b0, size_t *nb) {
    const size_t q = batch / parts, r = batch % parts;
    *nb = q + (w < r);
    *b0 = w * q + (w < r ? w : r);
}

/* A pool splits a batch only when each slice carries at least the pool's
 * min_work forward multiply-adds (default AIM__DEFAULT_MIN_WORK, 1M, about
 * 10-20 us of GEMM). Below that, splitting costs more than it saves: besides
 * the dispatch (~0.6 us when the workers are awake), a training step zeroes
 * and sums one partial gradient buffer per extra thread, and the optimizer
 * then reads gradients another core wrote. Measured (bench_models, Haswell
 * core, OpenBLAS 1 thread): the seed MLP at batch 32 (0.87M per slice on 2
 * threads) trains in 0.13 ms split against 0.10 ms not; the binary
 * classifier at batch 32 (1.75M per slice) in 0.14 ms against 0.18 ms. */
static size_t parts_for(const aim_model *m, const aim_threadpool *pool, size_t batch) {
    if (!pool) return 1;
    size_t parts = aim_threadpool_threads(pool);
    if (parts > batch) parts = batch;
    double per_sample = 0;
    for (size_t i = 0; i < m->n_layers; i++) per_sample += m->layers[i].ops->macs(&m->layers[i]);
    const double work = per_sample * (double)batch;
    const double min_work = (double)aim__pool_min_work(pool);
    while (parts > 1 && work / (double)parts < min_work) parts--;
    return parts;
}

static aim_status check_compiled(aim_model *m, const char *what) {
    if (!m->compiled) {
        aim__set_error(m->err, "%s: the model is not compiled", what);
        return AIM_ERR_INVALID_STATE;
    }
    return AIM_OK;
}

/* Where the values of one run live. The model's own forward keeps every
 * layer's output in acts[i] ((B, size), addressed at row b0); predict places
 * outputs in the caller's buffers and the rest in the workspace's arena,
 * where a slice of nb rows starting at b0 owns nb * per_sample floats. */
typedef struct run {
    const aim_model *m;
    const float *const *in; /* each model input, whole batch */
    float *const *out;      /* predict: the caller's outputs; NULL for the model's own forward */
    float *ws;              /* predict: the workspace's value arena */
    float **cache;          /* training: the model's caches; NULL in inference */
    size_t batch, parts, arena_off;
    float *scratch0;
    float **arenas;
    size_t l0, l1;          /* the layers this job runs */
    uint64_t random;        /* training: this forward's key of the random stream */
} run;

static float *layer_out(const run *r, size_t i, size_t b0, size_t nb) {
    const aim_model *m = r->m;
    const size_t size = m->layers[i].out_size;
    if (!r->ws) return m->acts[i] + b0 * size;
    if (m->out_of[i] != AIM__NONE) return r->out[m->out_of[i]] + b0 * size;
    return r->ws + b0 * m->infer_per_sample + nb * m->infer_off[i];
}

static const float *value_at(const run *r, size_t id, size_t b0, size_t nb) {
    if (aim__is_input(id)) {
        const size_t k = aim__input_index(id);
        return r->in[k] + b0 * r->m->inputs[k].size;
    }
    return layer_out(r, id, b0, nb);
}

/* Layer i on rows [b0, b0 + nb), part `part` of `parts` of its channels. */
static void run_layer(const run *r, size_t i, size_t b0, size_t nb, float *scratch, size_t part, size_t parts) {
    const aim_model *m = r->m;
    const aim__layer *L = &m->layers[i];
    const float *x[AIM_MAX_NODE_INPUTS];
    for (size_t j = 0; j < L->n_in; j++) x[j] = value_at(r, L->in[j], b0, nb);
    const int train = r->cache != NULL;
    float *cache = train && r->cache[i] ? r->cache[i] : NULL;
    aim__fwd a = {x,
                  layer_out(r, i, b0, nb),
                  cache ? cache + b0 * L->cache_per_sample : NULL,
                  scratch,
                  m->params + L->param_offset,
                  r->ws ? NULL : m->active_states[i],
                  r->batch,
                  b0,
                  nb,
                  train,
                  m->buffers + L->buffer_offset,
                  train ? m->buffers + L->buffer_offset : NULL,
                  cache ? cache + m->max_batch * L->cache_per_sample : NULL,
                  train ? aim__mix64(r->random ^ aim__mix64((uint64_t)i)) : 0,
                  part,
                  parts};
    L->ops->forward(L, &a);
}

/* Layers l0 .. l1 - 1 in order on rows [b0, b0 + nb). */
static void run_slice(const run *r, size_t b0, size_t nb, float *scratch) {
    for (size_t i = r->l0; i < r->l1; i++) run_layer(r, i, b0, nb, scratch, 0, 1);
}

static float *worker_scratch(const run *r, size_t w) { return w ? r->arenas[w] + r->arena_off : r->scratch0; }

/* One slice of a forward or a predict: worker w > 0 finds its scratch in its
 * arena at arena_off (after a training slice's partial gradients; 0 for predict). */
static void fwd_part(void *ctx, size_t w) {
    const run *r = ctx;
    if (w >= r->parts) return;
    size_t b0, nb;
    aim__split(r->batch, r->parts, w, &b0, &nb);
    run_slice(r, b0, nb, worker_scratch(r, w));
}

/* One share of the channels of a batch-coupled layer (l0), whole batch. */
static void coupled_part(void *ctx, size_t w) {
    const run *r = ctx;
    if (w >= r->parts) return;
    run_layer(r, r->l0, 0, r->batch, worker_scratch(r, w), w, r->parts);
}

/* A pooled run: slices between the coupled layers of a training forward,
 * each coupled layer split by channel. */
static void run_pooled(aim_threadpool *pool, run *r) {
    const aim_model *m = r->m;
    size_t i0 = 0;
    while (i0 < m->n_layers) {
        size_t i1 = i0;
        while (i1 < m->n_layers && !(r->cache && m->layers[i1].ops->batch_coupled)) i1++;
        if (i1 > i0) {
            r->l0 = i0;
            r->l1 = i1;
            aim__pool_run_locked(pool, r->parts, fwd_part, r);
        }
        if (i1 < m->n_layers) {
            r->l0 = i1;
            r->l1 = i1 + 1;
            aim__pool_run_locked(pool, r->parts, coupled_part, r);
        }
        i0 = i1 + 1;
    }
}

/* Node L as one position of a value whose first axis holds T of them, for
 * incremental inference: the position-wise kinds run on it unchanged. */
static void one_position(const aim__layer *L, size_t T, aim__layer *S) {
    *S = *L;
    S->in_dims[0] = 1;
    S->out_dims[0] = 1;
    S->in_size /= T;
    S->out_size /= T;
}

/* The kinds' own checks of a call (ids in range, a batch statistic over one
 * value); on one position of each sample when T > 0 (a step). */
static aim_status check_layers(const aim_model *m, char *err, const char *what, const float *const *in, size_t batch,
                               int train, size_t T) {
    for (size_t i = 0; i < m->n_layers; i++) {
        aim__layer S;
        const aim__layer *L = &m->layers[i];
        if (!L->ops->check) continue;
        if (T) {
            one_position(L, T, &S);
            L = &S;
        }
        const float *x[AIM_MAX_NODE_INPUTS];
        for (size_t j = 0; j < L->n_in; j++) x[j] = aim__is_input(L->in[j]) ? in[aim__input_index(L->in[j])] : NULL;
        char msg[AIM__ERR_CAP];
        msg[0] = '\0';
        aim_status st = L->ops->check(L, x, batch, train, msg);
        if (st != AIM_OK) {
            aim__set_error(err, "%s: layer %zu (%s): %s", what, i, L->ops->name, msg);
            return st;
        }
    }
    return AIM_OK;
}

/* Inputs in their declared types: a float call refuses an input of ids and
 * an ids call a float input; the _typed calls take each as declared. */
static aim_status check_dtypes(const aim_model *m, char *err, const char *what, size_t n, int typed, int ids) {
    if (typed) return AIM_OK;
    for (size_t k = 0; k < n; k++) {
        const int is_ids = m->inputs[k].dtype == AIM_DTYPE_INT32;
        if (is_ids == ids) continue;
        if (is_ids)
            aim__set_error(err, "%s: input %zu holds int32 ids; use aim_model_%s_ids or aim_model_%s_typed", what, k,
                           what, what);
        else aim__set_error(err, "%s: input %zu holds floats; use aim_model_%s", what, k, what);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    return AIM_OK;
}

/* The call for a model with several inputs: _typed once one holds ids (the _multi calls take floats only). */
static const char *several_inputs_call(const aim_model *m) {
    for (size_t k = 0; k < m->n_inputs; k++)
        if (m->inputs[k].dtype == AIM_DTYPE_INT32) return "typed";
    return "multi";
}

/* Checks one caller buffer's count: "input holds 100 floats; batch 1 of shape (784) needs 784". */
static aim_status check_count(char *err, const char *what, const char *name, size_t index, int indexed, size_t have,
                              size_t batch, const aim__shape *s, const char *verb) {
    const size_t need = batch * s->size; /* batch <= max_batch: planned without overflow */
    if (have == need) return AIM_OK;
    char shape[96], label[48];
    aim__shape_str(s, shape, sizeof shape);
    if (indexed) snprintf(label, sizeof label, "%s %zu", name, index);
    else snprintf(label, sizeof label, "%s", name);
    aim__set_error(err, "%s: %s %s %zu %s; batch %zu of shape %s needs %zu", what, label, verb, have,
                   s->dtype == AIM_DTYPE_INT32 ? "ids" : "floats", batch, shape, need);
    return AIM_ERR_SHAPE_MISMATCH;
}

static aim_status forward_impl(aim_model *m, aim_mode mode, const float *const *inputs, const size_t *counts,
                               size_t n, size_t batch, int single, int typed, int ids) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, "forward");
    if (st != AIM_OK) return st;
    if (!inputs || !counts || batch == 0 || (mode != AIM_MODE_TRAIN && mode != AIM_MODE_INFERENCE)) {
        aim__set_error(m->err, "forward: input must be non-NULL, batch > 0 and mode valid");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (batch > m->max_batch) {
        aim__set_error(m->err, "forward: batch %zu exceeds the compiled max_batch %zu", batch, m->max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (n != m->n_inputs) {
        if (single)
            aim__set_error(m->err, "forward: the model has %zu inputs; use aim_model_forward_%s", m->n_inputs,
                           several_inputs_call(m));
        else aim__set_error(m->err, "forward: %zu inputs given; the model has %zu", n, m->n_inputs);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    for (size_t k = 0; k < n; k++) {
        if (!inputs[k]) {
            aim__set_error(m->err, "forward: input %zu is NULL", k);
            return AIM_ERR_INVALID_ARGUMENT;
        }
        st = check_count(m->err, "forward", "input", k, !single, counts[k], batch, &m->inputs[k], "holds");
        if (st != AIM_OK) return st;
    }
    if ((st = check_dtypes(m, m->err, "forward", n, typed, ids)) != AIM_OK) return st;
    if ((st = check_layers(m, m->err, "forward", inputs, batch, mode == AIM_MODE_TRAIN, 0)) != AIM_OK) return st;
    /* An initial state applies only to the batch size it was set for. */
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->state_batch[i] && m->state_batch[i] != batch) {
            aim__set_error(m->err, "forward: layer %zu (%s) has an initial state for batch %zu, not %zu", i,
                           m->layers[i].ops->name, m->state_batch[i], batch);
            return AIM_ERR_SHAPE_MISMATCH;
        }
    const int train = mode == AIM_MODE_TRAIN;
    /* A training pass keeps its own copy of the inputs: the backward of the
     * first layers needs them, and the caller may reuse its buffers meanwhile. */
    const float *in[AIM_MAX_NODE_INPUTS];
    for (size_t k = 0; k < n; k++) {
        in[k] = inputs[k];
        if (train) {
            memcpy(m->in_copy[k], inputs[k], counts[k] * sizeof(float));
            in[k] = m->in_copy[k];
        }
    }
    for (size_t i = 0; i < m->n_layers; i++) {
        m->active_states[i] = NULL;
        if (!m->state_batch[i]) continue;
        memcpy(m->used_states[i], m->states[i], batch * m->layers[i].state_per_sample * sizeof(float));
        m->active_states[i] = m->used_states[i];
    }
    float *arenas[AIM__MAX_THREADS];
    run r = {m, in, NULL, NULL, train ? m->caches : NULL, batch, 1, 0, m->scratch, NULL, 0, m->n_layers, 0};
    if (train) r.random = aim__mix64(m->random_key + aim__mix64(m->random_step++));
    size_t parts = parts_for(m, m->pool, batch);
    if (parts > 1) {
        size_t have = aim__pool_lock(m->pool, arenas), need = 0;
        (void)aim__round_floats(m->n_params, &r.arena_off); /* sized at compile: no overflow */
        if (!aim__arena_floats(m, m->n_params, batch / parts + (batch % parts != 0), &need) || need > have) parts = 1;
        r.parts = parts;
        r.arenas = arenas;
        if (parts > 1) run_pooled(m->pool, &r);
        else fwd_part(&r, 0);
        aim__pool_unlock(m->pool);
    } else {
        fwd_part(&r, 0);
    }
    m->parts = parts;
    m->batch = batch;
    m->trained_forward = train;
    m->grad_ready = 0;
    m->input_grad_ready = 0;
    return AIM_OK;
}

aim_status aim_model_forward(aim_model *m, aim_mode mode, const float *input, size_t input_count, size_t batch) {
    return forward_impl(m, mode, &input, &input_count, 1, batch, 1, 0, 0);
}

aim_status aim_model_forward_multi(aim_model *m, aim_mode mode, const float *const *inputs, const size_t *input_counts,
                                   size_t n_inputs, size_t batch) {
    return forward_impl(m, mode, inputs, input_counts, n_inputs, batch, 0, 0, 0);
}

/* Ids travel through the executor as 4-byte words in float slots. */
aim_status aim_model_forward_ids(aim_model *m, aim_mode mode, const int32_t *ids, size_t ids_count, size_t batch) {
    const float *in = (const float *)(const void *)ids;
    return forward_impl(m, mode, &in, &ids_count, 1, batch, 1, 0, 1);
}

aim_status aim_model_forward_typed(aim_model *m, aim_mode mode, const void *const *inputs, const size_t *input_counts,
                                   size_t n_inputs, size_t batch) {
    return forward_impl(m, mode, (const float *const *)inputs, input_counts, n_inputs, batch, 0, 1, 0);
}

static aim_status check_output(aim_model *m, size_t output, const char *what) {
    aim_status st = check_compiled(m, what);
    if (st != AIM_OK) return st;
    if (output >= m->n_outputs) {
        aim__set_error(m->err, "%s: output %zu does not exist; the model has %zu", what, output, m->n_outputs);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (m->batch == 0) {
        aim__set_error(m->err, "%s: no forward pass yet", what);
        return AIM_ERR_INVALID_STATE;
    }
    return AIM_OK;
}

aim_status aim_model_output(const aim_model *m, size_t output, const float **data, size_t *count) {
    if (!m || !data || !count) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled || m->batch == 0) return AIM_ERR_INVALID_STATE;
    if (output >= m->n_outputs) return AIM_ERR_INVALID_ARGUMENT;
    const size_t node = m->outputs[output];
    *data = m->acts[node];
    *count = m->batch * m->layers[node].out_size;
    return AIM_OK;
}

static aim_status check_loss_call(aim_model *m, size_t output, const void *targets, const float *loss_out,
                                  const char *what) {
    aim_status st = check_compiled(m, what);
    if (st != AIM_OK) return st;
    if (!targets || !loss_out) {
        aim__set_error(m->err, "%s: targets and loss_out must be non-NULL", what);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    return check_output(m, output, what);
}

/* The gradient a loss left in dys is scaled by the output's weight. */
static void keep_grad(aim_model *m, size_t output) {
    const size_t node = m->outputs[output];
    const float w = m->loss_weights[output];
    if (w != 1.0f) {
        float *g = m->dys[node];
        const size_t n = m->batch * m->layers[node].out_size;
        for (size_t i = 0; i < n; i++) g[i] *= w;
    }
    m->grad_ready |= 1u << output;
}

aim_status aim_model_loss(aim_model *m, size_t output, aim_loss_kind kind, const float *targets, size_t targets_count,
                          float *loss_out) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_loss_call(m, output, targets, loss_out, "loss");
    if (st != AIM_OK) return st;
    if (!aim__loss_kind_valid(kind)) {
        aim__set_error(m->err, "loss: unknown loss kind %d", (int)kind);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    const size_t node = m->outputs[output];
    const size_t need = m->batch * m->layers[node].out_size;
    if (targets_count != need) {
        aim__shape tmp;
        char shape[96];
        aim__shape_str(aim__node_shape(m, node, &tmp), shape, sizeof shape);
        aim__set_error(m->err, "loss: targets hold %zu floats; batch %zu of output %zu of shape %s needs %zu",
                       targets_count, m->batch, output, shape, need);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    m->grad_ready &= ~(1u << output);
    st = aim__loss(kind, m->acts[node], targets, m->batch, m->layers[node].out_size, loss_out, m->dys[node]);
    if (st == AIM_ERR_NON_FINITE) aim__set_error(m->err, "loss: the loss is not finite (NaN or infinity)");
    else if (st != AIM_OK) aim__set_error(m->err, "loss: a BCE prediction lies outside [0, 1]");
    else keep_grad(m, output);
    return st;
}

aim_status aim_model_loss_sparse(aim_model *m, size_t output, const int32_t *labels, size_t labels_count,
                                 float *loss_out) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_loss_call(m, output, labels, loss_out, "loss_sparse");
    if (st != AIM_OK) return st;
    /* A label per sample (softmax over the whole sample) or, on an output of
     * rank >= 2, a label per position (softmax over the last axis). */
    const size_t node = m->outputs[output];
    const aim__layer *O = &m->layers[node];
    const size_t last = O->out_dims[O->out_rank - 1], positions = O->out_size / last;
    size_t classes = O->out_size, rows = m->batch;
    if (labels_count != m->batch) {
        if (O->out_rank < 2 || positions == 1 || labels_count / positions != m->batch ||
            labels_count % positions != 0) {
            if (O->out_rank >= 2 && positions > 1)
                aim__set_error(m->err,
                               "loss_sparse: labels hold %zu; the last forward's batch %zu needs %zu (a label a sample) "
                               "or %zu (a label a position)",
                               labels_count, m->batch, m->batch, m->batch * positions);
            else
                aim__set_error(m->err, "loss_sparse: labels hold %zu; the last forward's batch is %zu", labels_count,
                               m->batch);
            return AIM_ERR_SHAPE_MISMATCH;
        }
        classes = last;
        rows = labels_count;
    }
    for (size_t i = 0; i < labels_count; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= classes) {
            aim__set_error(m->err, "loss_sparse: label %d at position %zu lies outside [0, %zu)", (int)labels[i], i,
                           classes);
            return AIM_ERR_INVALID_ARGUMENT;
        }
    m->grad_ready &= ~(1u << output);
    st = aim__loss_sparse(m->acts[node], labels, rows, classes, loss_out, m->dys[node]);
    /* The labels were checked above, so the only failure left is a loss that is not finite. */
    if (st != AIM_OK) aim__set_error(m->err, "loss_sparse: the loss is not finite (NaN or infinity)");
    else keep_grad(m, output);
    return st;
}

aim_status aim_model_set_output_grad(aim_model *m, size_t output, const float *grad, size_t count) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, "set_output_grad");
    if (st != AIM_OK) return st;
    if (!grad) {
        aim__set_error(m->err, "set_output_grad: grad is NULL");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if ((st = check_output(m, output, "set_output_grad")) != AIM_OK) return st;
    if (!m->trained_forward) {
        aim__set_error(m->err, "set_output_grad: needs a forward pass in AIM_MODE_TRAIN first");
        return AIM_ERR_INVALID_STATE;
    }
    const size_t node = m->outputs[output];
    aim__shape tmp;
    st = check_count(m->err, "set_output_grad", "gradient", 0, 0, count, m->batch, aim__node_shape(m, node, &tmp),
                     "holds");
    if (st != AIM_OK) return st;
    memcpy(m->dys[node], grad, count * sizeof(float));
    m->grad_ready |= 1u << output;
    return AIM_OK;
}

/* The buffer that receives the gradient of value `id`: a layer's dy, or a
 * model input's gradient. */
static float *grad_of(const aim_model *m, size_t id) {
    return aim__is_input(id) ? m->in_grad[aim__input_index(id)] : m->dys[id];
}

static size_t size_of(const aim_model *m, size_t id) {
    aim__shape tmp;
    return aim__node_shape(m, id, &tmp)->size;
}

static void add_input_grads(const aim_model *m, size_t k, size_t b0, size_t nb);

/* The backward of layer k on rows [b0, b0 + nb) of the last training
 * forward's batch, adding parameter gradients into `dparams`. An input's
 * gradient is written straight into its buffer by its first consumer in
 * backward order, and through dtmp, then added, by later ones. */
static void backward_layer(const aim_model *m, size_t k, float *dparams, float *scratch, size_t b0, size_t nb,
                           size_t part, size_t parts, int add_dx) {
    const aim__layer *L = &m->layers[k];
    const float *x[AIM_MAX_NODE_INPUTS];
    float *dx[AIM_MAX_NODE_INPUTS];
    size_t tmp_off = 0;
    for (size_t j = 0; j < L->n_in; j++) {
        const size_t v = L->in[j], size = size_of(m, v);
        x[j] = (aim__is_input(v) ? m->in_copy[aim__input_index(v)] : m->acts[v]) + b0 * size;
        dx[j] = NULL;
        if (L->dx_mode[j] == AIM__DX_WRITE) {
            dx[j] = grad_of(m, v) + b0 * size;
        } else if (L->dx_mode[j] == AIM__DX_ADD) {
            dx[j] = m->dtmp + tmp_off + b0 * size;
            size_t r;
            (void)aim__round_floats(m->max_batch * size, &r); /* as compile sized dtmp */
            tmp_off += r;
        }
    }
    aim__bwd a = {x,
                  m->acts[k] + b0 * L->out_size,
                  m->caches[k] ? m->caches[k] + b0 * L->cache_per_sample : NULL,
                  m->dys[k] + b0 * L->out_size,
                  dx,
                  m->params + L->param_offset,
                  dparams + L->param_offset,
                  scratch,
                  m->active_states[k],
                  m->batch,
                  b0,
                  nb,
                  m->buffers + L->buffer_offset,
                  m->caches[k] ? m->caches[k] + m->max_batch * L->cache_per_sample : NULL,
                  part,
                  parts};
    L->ops->backward(L, &a);
    if (add_dx) add_input_grads(m, k, b0, nb);
}

/* The input gradients layer k wrote into dtmp (for inputs it is not the
 * first consumer of), added to their buffers on rows [b0, b0 + nb). */
static void add_input_grads(const aim_model *m, size_t k, size_t b0, size_t nb) {
    const aim__layer *L = &m->layers[k];
    size_t tmp_off = 0;
    for (size_t j = 0; j < L->n_in; j++) {
        if (L->dx_mode[j] != AIM__DX_ADD) continue;
        const size_t v = L->in[j], size = size_of(m, v), n = nb * size;
        float *g = grad_of(m, v) + b0 * size;
        const float *t = m->dtmp + tmp_off + b0 * size;
        for (size_t i = 0; i < n; i++) g[i] += t[i];
        size_t r;
        (void)aim__round_floats(m->max_batch * size, &r); /* as compile sized dtmp */
        tmp_off += r;
    }
}

typedef struct bwd_job {
    const aim_model *m;
    float **arenas;
    size_t arena_off, parts, layer;
} bwd_job;

/* Worker w's share of layer `layer`'s backward: its slice of the batch, or
 * for a batch-coupled kind the whole batch and its share of the channels
 * (the input gradients it leaves in dtmp are then added by add_part). */
static void bwd_part(void *ctx, size_t w) {
    const bwd_job *j = ctx;
    if (w >= j->parts) return;
    const int coupled = j->m->layers[j->layer].ops->batch_coupled;
    size_t b0 = 0, nb = j->m->batch;
    if (!coupled) aim__split(j->m->batch, j->parts, w, &b0, &nb);
    const size_t part = coupled ? w : 0, parts = coupled ? j->parts : 1;
    if (w == 0) {
        backward_layer(j->m, j->layer, j->m->grads, j->m->scratch, b0, nb, part, parts, !coupled);
    } else {
        /* (a model without parameters may have no arenas at all: memset(NULL, 0, 0) is undefined) */
        if (j->layer == j->m->n_layers - 1 && j->m->n_params) memset(j->arenas[w], 0, j->m->n_params * sizeof(float));
        backward_layer(j->m, j->layer, j->arenas[w], j->arenas[w] + j->arena_off, b0, nb, part, parts, !coupled);
    }
}

static void add_part(void *ctx, size_t w) {
    const bwd_job *j = ctx;
    if (w >= j->parts) return;
    size_t b0, nb;
    aim__split(j->m->batch, j->parts, w, &b0, &nb);
    add_input_grads(j->m, j->layer, b0, nb);
}

/* grads += the other slices' partial gradients, each worker summing one
 * range of parameters, always in the order of the slices. */
static void reduce_part(void *ctx, size_t w) {
    const bwd_job *j = ctx;
    if (w >= j->parts) return;
    size_t i0, n;
    aim__split(j->m->n_params, j->parts, w, &i0, &n);
    float *g = j->m->grads + i0;
    for (size_t s = 1; s < j->parts; s++) {
        const float *p = j->arenas[s] + i0;
        for (size_t i = 0; i < n; i++) g[i] += p[i];
    }
}

aim_status aim_model_backward(aim_model *m, const float *output_grad, size_t count) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, "backward");
    if (st != AIM_OK) return st;
    if (!m->trained_forward) {
        aim__set_error(m->err, "backward: needs a forward pass in AIM_MODE_TRAIN first");
        return AIM_ERR_INVALID_STATE;
    }
    if (output_grad) {
        if (m->n_outputs != 1) {
            aim__set_error(m->err, "backward: an output gradient was given to a model with %zu outputs; use "
                                   "aim_model_set_output_grad",
                           m->n_outputs);
            return AIM_ERR_SHAPE_MISMATCH;
        }
        aim__shape tmp;
        st = check_count(m->err, "backward", "output gradient", 0, 0, count, m->batch,
                         aim__node_shape(m, m->outputs[0], &tmp), "holds");
        if (st != AIM_OK) return st;
    } else if (!m->grad_ready) {
        aim__set_error(m->err, "backward: no output gradient given and no loss computed since the forward");
        return AIM_ERR_INVALID_STATE;
    }
    /* The kernels overwrite dy, so a caller's gradient is copied first. */
    if (output_grad) memcpy(m->dys[m->outputs[0]], output_grad, count * sizeof(float));
    else
        for (size_t k = 0; k < m->n_outputs; k++)
            if (!(m->grad_ready & (1u << k))) {
                const size_t node = m->outputs[k];
                memset(m->dys[node], 0, m->batch * m->layers[node].out_size * sizeof(float));
            }
    if (m->parts > 1) {
        /* The same slices as the forward: an LSTM cache is laid out per slice.
         * The arenas were checked by that forward, and set_threadpool in
         * between would have required a new forward. */
        float *arenas[AIM__MAX_THREADS];
        bwd_job job = {m, arenas, 0, m->parts, 0};
        (void)aim__round_floats(m->n_params, &job.arena_off);
        (void)aim__pool_lock(m->pool, arenas);
        for (size_t k = m->n_layers; k-- > 0;) {
            job.layer = k;
            aim__pool_run_locked(m->pool, m->parts, bwd_part, &job);
            if (m->layers[k].ops->batch_coupled) aim__pool_run_locked(m->pool, m->parts, add_part, &job);
        }
        aim__pool_run_locked(m->pool, m->parts, reduce_part, &job);
        aim__pool_unlock(m->pool);
    } else {
        for (size_t k = m->n_layers; k-- > 0;) backward_layer(m, k, m->grads, m->scratch, 0, m->batch, 0, 1, 1);
    }
    m->grad_ready = 0;
    m->input_grad_ready = m->input_gradient;
    return AIM_OK;
}

aim_status aim_model_input_gradient(const aim_model *m, size_t input, const float **grad, size_t *count) {
    if (!m || !grad || !count) return AIM_ERR_INVALID_ARGUMENT;
    if (input >= m->n_inputs) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled || !m->input_gradient || !m->input_grad_ready) return AIM_ERR_INVALID_STATE;
    if (!m->in_grad[input]) return AIM_ERR_INVALID_ARGUMENT; /* an input of ids has no gradient */
    *grad = m->in_grad[input];
    *count = m->batch * m->inputs[input].size;
    return AIM_OK;
}

aim_status aim_model_zero_grad(aim_model *m) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_compiled(m, "zero_grad");
    if (st != AIM_OK) return st;
    memset(m->grads, 0, m->n_params * sizeof(float));
    return AIM_OK;
}

/* Sizes the pool's arenas for this compiled model. */
static aim_status reserve_for(aim_model *m, aim_threadpool *pool) {
    size_t need;
    if (!aim__arena_floats(m, m->n_params, aim__largest_slice(m->max_batch), &need)) {
        aim__set_error(m->err, "set_threadpool: arena size overflows");
        return AIM_ERR_OVERFLOW;
    }
    aim_status st = aim__pool_reserve(pool, need);
    if (st != AIM_OK) aim__set_error(m->err, "set_threadpool: %s", aim_threadpool_last_error(pool));
    return st;
}

aim_status aim_model_set_threadpool(aim_model *m, aim_threadpool *pool) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    if (pool && m->compiled) {
        aim_status st = reserve_for(m, pool);
        if (st != AIM_OK) return st;
    }
    if (pool != m->pool) {
        /* A training cache is laid out per slice: a new split needs a new forward. */
        m->trained_forward = 0;
        m->grad_ready = 0;
    }
    m->pool = pool;
    return AIM_OK;
}

/* ---- inference workspaces ------------------------------------------------ */

struct aim_workspace {
    aim_allocator alloc;
    void *raw;
    size_t max_batch;
    size_t per_sample;     /* floats per sample of the value arena */
    size_t scratch_floats;
    float *vals;           /* (max_batch, per_sample) */
    float *scratch;
    aim_threadpool *pool;
    /* incremental inference (aim_model_predict_step), set aside at create when the model can step */
    void *step_raw;        /* the step memory's allocation, NULL without */
    float *step_state;     /* per layer with step_state_per_sample: (max_batch, that) floats, rounded */
    float *step_scratch;   /* max_batch * the largest step_scratch_per_sample */
    size_t step_state_floats, step_scratch_floats, steps_T, step_pos, step_batch;
    char err[AIM__ERR_CAP];
};

/* Whether the model can run one position at a time: one input and one
 * output, time its first axis, and every node position-wise or its own
 * step, keeping time. Writes why not into `why`. */
static int model_steps(const aim_model *m, char *why, size_t *T) {
    if (m->n_inputs != 1 || m->n_outputs != 1) {
        aim__set_error(why, "predict_step: the model has %zu inputs and %zu outputs; steps need one of each",
                       m->n_inputs, m->n_outputs);
        return 0;
    }
    *T = m->inputs[0].dims[0];
    if (m->inputs[0].rank < 1 || *T == 0) {
        aim__set_error(why, "predict_step: the input has no time axis");
        return 0;
    }
    for (size_t i = 0; i < m->n_layers; i++) {
        const aim__layer *L = &m->layers[i];
        const int how = L->ops->can_step ? L->ops->can_step(L) : AIM__STEP_NO;
        if (how == AIM__STEP_NO || L->out_rank < 1 || L->out_dims[0] != *T || L->in_dims[0] != *T ||
            (how == AIM__STEP_POSITIONWISE && (L->in_size % *T || L->out_size % *T))) {
            aim__set_error(why,
                           "predict_step: layer %zu (%s) cannot run one position at a time (steps need "
                           "position-wise layers and causal attention over a first axis of %zu steps)",
                           i, L->ops->name, *T);
            return 0;
        }
    }
    return 1;
}

/* Floats of layer L's keys and values for max_batch sequences, rounded so
 * each layer's block is aligned; 0 on overflow (checked by step_sizes). */
static size_t step_state_of(const aim__layer *L, size_t max_batch) {
    size_t n;
    return aim__mul(max_batch, L->step_state_per_sample, &n) && aim__round_floats(n, &n) ? n : 0;
}

/* The step memory of a model that can step, in floats: the layers' states,
 * then a scratch for the layer that needs most (rounded); 0 on overflow. */
static int step_sizes(const aim_model *m, size_t max_batch, size_t *state, size_t *scratch) {
    *state = 0;
    *scratch = 0;
    for (size_t i = 0; i < m->n_layers; i++) {
        const aim__layer *L = &m->layers[i];
        size_t n = step_state_of(L, max_batch), k;
        if ((L->step_state_per_sample && !n) || !aim__add(*state, n, state) ||
            !aim__mul(max_batch, L->step_scratch_per_sample, &k))
            return 0;
        if (k > *scratch) *scratch = k;
    }
    size_t all;
    return aim__round_floats(*scratch, scratch) && aim__add(*state, *scratch, &all) && all <= SIZE_MAX / sizeof(float) &&
           all * sizeof(float) <= SIZE_MAX - AIM__ALIGN;
}

/* Sets aside a new workspace's step memory when the model can step (else
 * none: aim_model_predict_step then says why). Fails only when the memory
 * cannot be had. */
static aim_status workspace_steps(const aim_model *m, aim_workspace *w) {
    char why[AIM__ERR_CAP];
    size_t T = 0, state, scratch;
    if (!model_steps(m, why, &T)) return AIM_OK;
    if (!step_sizes(m, w->max_batch, &state, &scratch)) return AIM_ERR_OVERFLOW;
    void *raw;
    float *base = aim__alloc_aligned(&w->alloc, (state + scratch) * sizeof(float), &raw);
    if (!base) return AIM_ERR_OUT_OF_MEMORY;
    memset(base, 0, (state + scratch) * sizeof(float));
    w->step_raw = raw;
    w->step_state = base;
    w->step_scratch = base + state;
    w->step_state_floats = state;
    w->step_scratch_floats = scratch;
    w->steps_T = T;
    return AIM_OK;
}

/* Layout: the value arena, then the scratch. */
static aim_status workspace_bytes(const aim_model *m, size_t max_batch, size_t *bytes, size_t *vals) {
    size_t n, sc, scratch;
    if (!aim__mul(max_batch, m->infer_per_sample, &n) || !aim__round_floats(n, vals) ||
        !aim__scratch_for(m, max_batch, &scratch) || !aim__round_floats(scratch, &sc) || !aim__add(*vals, sc, &n) ||
        !aim__mul(n, sizeof(float), bytes) || *bytes > SIZE_MAX - AIM__ALIGN)
        return AIM_ERR_OVERFLOW;
    return AIM_OK;
}

aim_status aim_workspace_size(const aim_model *m, size_t max_batch, size_t *bytes) {
    size_t b, vals;
    if (!m || !bytes || max_batch == 0) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    aim_status st = workspace_bytes(m, max_batch, &b, &vals);
    if (st != AIM_OK) return st;
    *bytes = b + AIM__ALIGN + sizeof(struct aim_workspace);
    char why[AIM__ERR_CAP];
    size_t T, state, scratch;
    if (model_steps(m, why, &T) &&
        (!step_sizes(m, max_batch, &state, &scratch) ||
         !aim__add(*bytes, (state + scratch) * sizeof(float) + AIM__ALIGN, bytes)))
        return AIM_ERR_OVERFLOW;
    return AIM_OK;
}

aim_status aim_workspace_create(const aim_model *m, const aim_allocator *allocator, size_t max_batch,
                                aim_workspace **out) {
    aim_allocator a;
    size_t bytes, vals;
    if (!m || !out || max_batch == 0) return AIM_ERR_INVALID_ARGUMENT;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    aim_status st = workspace_bytes(m, max_batch, &bytes, &vals);
    if (st != AIM_OK) return st;
    if (max_batch > 0x7fffffff) return AIM_ERR_UNSUPPORTED;
    aim_workspace *w = aim__alloc(&a, sizeof *w);
    if (!w) return AIM_ERR_OUT_OF_MEMORY;
    memset(w, 0, sizeof *w);
    w->alloc = a;
    float *base = aim__alloc_aligned(&a, bytes, &w->raw);
    if (!base) {
        aim__free(&a, w);
        return AIM_ERR_OUT_OF_MEMORY;
    }
    memset(base, 0, bytes);
    w->max_batch = max_batch;
    w->per_sample = m->infer_per_sample;
    (void)aim__scratch_for(m, max_batch, &w->scratch_floats); /* cannot overflow: workspace_bytes passed */
    w->vals = base;
    w->scratch = base + vals;
    if ((st = workspace_steps(m, w)) != AIM_OK) {
        aim__free(&a, w->raw);
        aim__free(&a, w);
        return st;
    }
    *out = w;
    return AIM_OK;
}

void aim_workspace_free(aim_workspace *w) {
    if (!w) return;
    aim_allocator a = w->alloc;
    aim__free(&a, w->step_raw);
    aim__free(&a, w->raw);
    aim__free(&a, w);
}

const char *aim_workspace_last_error(const aim_workspace *w) { return w ? w->err : ""; }

aim_status aim_workspace_set_threadpool(aim_workspace *w, const aim_model *m, aim_threadpool *pool) {
    if (!w || !m) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(w->err, "set_threadpool: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    if (pool) {
        size_t need;
        if (!aim__scratch_for(m, aim__largest_slice(w->max_batch), &need)) {
            aim__set_error(w->err, "set_threadpool: scratch size overflows");
            return AIM_ERR_OVERFLOW;
        }
        aim_status st = aim__pool_reserve(pool, need);
        if (st != AIM_OK) {
            aim__set_error(w->err, "set_threadpool: %s", aim_threadpool_last_error(pool));
            return st;
        }
    }
    w->pool = pool;
    return AIM_OK;
}

static aim_status predict_impl(const aim_model *m, aim_workspace *w, const float *const *inputs,
                               const size_t *input_counts, size_t n_inputs, size_t batch, float *const *outputs,
                               const size_t *output_counts, size_t n_outputs, int single, int typed, int ids) {
    if (!m || !w) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(w->err, "predict: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    if (!inputs || !input_counts || !outputs || !output_counts || batch == 0) {
        aim__set_error(w->err, "predict: input and output must be non-NULL and batch > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (batch > w->max_batch) {
        aim__set_error(w->err, "predict: batch %zu exceeds the workspace's max_batch %zu", batch, w->max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (n_inputs != m->n_inputs || n_outputs != m->n_outputs) {
        if (single)
            aim__set_error(w->err, "predict: the model has %zu inputs and %zu outputs; use aim_model_predict_%s",
                           m->n_inputs, m->n_outputs, several_inputs_call(m));
        else
            aim__set_error(w->err, "predict: %zu inputs and %zu outputs given; the model has %zu and %zu", n_inputs,
                           n_outputs, m->n_inputs, m->n_outputs);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    for (size_t k = 0; k < n_inputs; k++) {
        if (!inputs[k]) {
            aim__set_error(w->err, "predict: input %zu is NULL", k);
            return AIM_ERR_INVALID_ARGUMENT;
        }
        aim_status st = check_count(w->err, "predict", "input", k, !single, input_counts[k], batch, &m->inputs[k],
                                    "holds");
        if (st != AIM_OK) return st;
    }
    for (size_t k = 0; k < n_outputs; k++) {
        if (!outputs[k]) {
            aim__set_error(w->err, "predict: output %zu is NULL", k);
            return AIM_ERR_INVALID_ARGUMENT;
        }
        aim__shape tmp;
        aim_status st = check_count(w->err, "predict", "output", k, !single, output_counts[k], batch,
                                    aim__node_shape(m, m->outputs[k], &tmp), "has room for");
        if (st != AIM_OK) return st;
    }
    aim_status st = check_dtypes(m, w->err, "predict", n_inputs, typed, ids);
    if (st != AIM_OK || (st = check_layers(m, w->err, "predict", inputs, batch, 0, 0)) != AIM_OK) return st;
    size_t need_scratch = 0;
    (void)aim__scratch_for(m, batch, &need_scratch); /* batch <= max_batch: no overflow */
    if (m->infer_per_sample > w->per_sample || need_scratch > w->scratch_floats) {
        aim__set_error(w->err, "predict: the workspace was made for a smaller model (%zu < %zu floats per sample)",
                       w->per_sample, m->infer_per_sample);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    float *arenas[AIM__MAX_THREADS];
    size_t parts = parts_for(m, w->pool, batch);
    if (parts > 1) {
        /* The arenas were sized by aim_workspace_set_threadpool and never
         * shrink; a pool since reserved for a smaller model is the same or larger. */
        size_t have = aim__pool_lock(w->pool, arenas), need = 0;
        if (!aim__scratch_for(m, batch / parts + (batch % parts != 0), &need) || need > have) {
            aim__pool_unlock(w->pool);
            parts = 1;
        }
    }
    run r = {m, inputs, outputs, w->vals, NULL, batch, parts, 0, w->scratch, arenas, 0, m->n_layers, 0};
    if (parts > 1) {
        aim__pool_run_locked(w->pool, parts, fwd_part, &r);
        aim__pool_unlock(w->pool);
    } else {
        fwd_part(&r, 0);
    }
    return AIM_OK;
}

aim_status aim_model_predict(const aim_model *m, aim_workspace *w, const float *input, size_t input_count,
                             size_t batch, float *output, size_t output_count) {
    return predict_impl(m, w, &input, &input_count, 1, batch, &output, &output_count, 1, 1, 0, 0);
}

aim_status aim_model_predict_ids(const aim_model *m, aim_workspace *w, const int32_t *ids, size_t ids_count,
                                 size_t batch, float *output, size_t output_count) {
    const float *in = (const float *)(const void *)ids;
    return predict_impl(m, w, &in, &ids_count, 1, batch, &output, &output_count, 1, 1, 0, 1);
}

aim_status aim_model_predict_typed(const aim_model *m, aim_workspace *w, const void *const *inputs,
                                   const size_t *input_counts, size_t n_inputs, size_t batch, float *const *outputs,
                                   const size_t *output_counts, size_t n_outputs) {
    return predict_impl(m, w, (const float *const *)inputs, input_counts, n_inputs, batch, outputs, output_counts,
                        n_outputs, 0, 1, 0);
}

aim_status aim_model_predict_multi(const aim_model *m, aim_workspace *w, const float *const *inputs,
                                   const size_t *input_counts, size_t n_inputs, size_t batch, float *const *outputs,
                                   const size_t *output_counts, size_t n_outputs) {
    return predict_impl(m, w, inputs, input_counts, n_inputs, batch, outputs, output_counts, n_outputs, 0, 0, 0);
}

/* ---- incremental inference ----------------------------------------------- */

static aim_status step_impl(const aim_model *m, aim_workspace *w, const float *in, size_t in_count, size_t batch,
                            float *out, size_t out_count, int ids) {
    if (!m || !w) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(w->err, "predict_step: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    if (!in || !out || batch == 0) {
        aim__set_error(w->err, "predict_step: input and output must be non-NULL and batch > 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    /* The model given, not the one the workspace was made for, decides
     * (a workspace serves any model of the same architecture). */
    size_t T = 0, state, scratch, forward_scratch = 0;
    if (!model_steps(m, w->err, &T)) return AIM_ERR_UNSUPPORTED;
    if (!w->step_raw || T != w->steps_T || m->infer_per_sample > w->per_sample ||
        !aim__scratch_for(m, w->max_batch, &forward_scratch) || forward_scratch > w->scratch_floats ||
        !step_sizes(m, w->max_batch, &state, &scratch) || state != w->step_state_floats ||
        scratch > w->step_scratch_floats) {
        aim__set_error(w->err, "predict_step: the workspace was made for another model");
        return AIM_ERR_SHAPE_MISMATCH;
    }
    aim_status st = check_dtypes(m, w->err, "predict_step", 1, 0, ids);
    if (st != AIM_OK) return st;
    if (batch > w->max_batch) {
        aim__set_error(w->err, "predict_step: batch %zu exceeds the workspace's max_batch %zu", batch, w->max_batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (w->step_pos > 0 && batch != w->step_batch) {
        aim__set_error(w->err, "predict_step: the sequences were started with batch %zu, not %zu (reset to change it)",
                       w->step_batch, batch);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    const size_t in_row = m->inputs[0].size / T, out_row = m->layers[m->outputs[0]].out_size / T;
    if (in_count != batch * in_row || out_count != batch * out_row) {
        aim__set_error(w->err,
                       "predict_step: input holds %zu %s and output room for %zu floats; one position of batch %zu "
                       "needs %zu and %zu",
                       in_count, ids ? "ids" : "floats", out_count, batch, batch * in_row, batch * out_row);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (w->step_pos >= T) {
        aim__set_error(w->err,
                       "predict_step: the sequences hold %zu positions, the model's whole context; "
                       "aim_workspace_reset_steps starts new ones",
                       T);
        return AIM_ERR_INVALID_STATE;
    }
    if ((st = check_layers(m, w->err, "predict_step", &in, batch, 0, T)) != AIM_OK) return st;
    float *state_at = w->step_state;
    for (size_t i = 0; i < m->n_layers; i++) {
        const aim__layer *L = &m->layers[i];
        const float *x[AIM_MAX_NODE_INPUTS];
        for (size_t j = 0; j < L->n_in; j++) {
            const size_t id = L->in[j];
            x[j] = aim__is_input(id) ? in : m->out_of[id] != AIM__NONE ? out : w->vals + batch * m->infer_off[id];
        }
        float *y = m->out_of[i] != AIM__NONE ? out : w->vals + batch * m->infer_off[i];
        if (L->ops->can_step(L) == AIM__STEP_OWN) {
            const aim__step a = {x, y, m->params + L->param_offset, state_at, w->step_scratch, w->step_pos, batch};
            L->ops->step(L, &a);
        } else {
            aim__layer S;
            one_position(L, T, &S);
            aim__fwd a = {0};
            a.x = x;
            a.y = y;
            a.scratch = w->scratch;
            a.params = m->params + L->param_offset;
            a.batch = batch;
            a.buffers = m->buffers + L->buffer_offset;
            a.parts = 1;
            S.ops->forward(&S, &a);
        }
        state_at += step_state_of(L, w->max_batch);
    }
    w->step_batch = batch;
    w->step_pos++;
    return AIM_OK;
}

aim_status aim_model_predict_step(const aim_model *m, aim_workspace *w, const float *input, size_t input_count,
                                  size_t batch, float *output, size_t output_count) {
    return step_impl(m, w, input, input_count, batch, output, output_count, 0);
}

aim_status aim_model_predict_step_ids(const aim_model *m, aim_workspace *w, const int32_t *ids, size_t ids_count,
                                      size_t batch, float *output, size_t output_count) {
    return step_impl(m, w, (const float *)(const void *)ids, ids_count, batch, output, output_count, 1);
}

aim_status aim_workspace_reset_steps(aim_workspace *w) {
    if (!w) return AIM_ERR_INVALID_ARGUMENT;
    w->step_pos = 0;
    w->step_batch = 0;
    return AIM_OK;
}

aim_status aim_workspace_step_position(const aim_workspace *w, size_t *position) {
    if (!w || !position) return AIM_ERR_INVALID_ARGUMENT;
    *position = w->step_pos;
    return AIM_OK;
}
