/*
 * The model as a graph: nodes added by the kinds' builders, validated as
 * they are added, the current node that sequential building follows, the
 * inputs and outputs, and the queries. Memory comes at compile (compile.c);
 * running it is exec.c.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

const aim__shape *aim__node_shape(const aim_model *m, size_t id, aim__shape *tmp) {
    if (aim__is_input(id)) return &m->inputs[aim__input_index(id)];
    const aim__layer *L = &m->layers[id];
    tmp->rank = L->out_rank;
    memcpy(tmp->dims, L->out_dims, sizeof tmp->dims);
    tmp->size = L->out_size;
    tmp->dtype = AIM_DTYPE_FLOAT32;
    return tmp;
}

size_t aim__n_outputs(const aim_model *m) { return m->outputs_set ? m->n_outputs : (m->n_layers ? 1 : 0); }

size_t aim__output_node(const aim_model *m, size_t k) { return m->outputs_set ? m->outputs[k] : m->n_layers - 1; }

static int node_exists(const aim_model *m, size_t id) {
    return aim__is_input(id) ? aim__input_index(id) < m->n_inputs : id < m->n_layers;
}

/* One sample's shape from the caller, checked like aim_model_create's. */
static aim_status make_shape(size_t rank, const size_t *dims, aim__shape *s) {
    if (!dims || rank == 0 || rank > AIM_MAX_RANK - 1) return AIM_ERR_INVALID_ARGUMENT;
    memset(s, 0, sizeof *s);
    size_t n = 1;
    for (size_t i = 0; i < rank; i++) {
        if (dims[i] == 0) return AIM_ERR_INVALID_ARGUMENT;
        if (!aim__mul(n, dims[i], &n)) return AIM_ERR_OVERFLOW;
        s->dims[i] = dims[i];
    }
    if (n > INT_MAX) return AIM_ERR_UNSUPPORTED; /* BLAS takes int sizes */
    s->rank = rank;
    s->size = n;
    return AIM_OK;
}

aim_status aim_model_create(const aim_allocator *allocator, size_t rank, const size_t *dims, aim_model **out) {
    aim_allocator a;
    aim__shape s;
    if (!out) return AIM_ERR_INVALID_ARGUMENT;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = make_shape(rank, dims, &s);
    if (st != AIM_OK) return st;
    aim_model *m = aim__alloc(&a, sizeof *m);
    if (!m) return AIM_ERR_OUT_OF_MEMORY;
    memset(m, 0, sizeof *m);
    m->alloc = a;
    m->n_inputs = 1;
    m->inputs[0] = s;
    m->current = AIM_MODEL_INPUT(0);
    *out = m;
    return AIM_OK;
}

void aim_model_free(aim_model *m) {
    if (!m) return;
    aim_allocator a = m->alloc;
    aim__free(&a, m->raw);
    aim__free(&a, m->layers);
    aim__free(&a, m);
}

const char *aim_model_last_error(const aim_model *m) { return m ? m->err : ""; }

static aim_status check_buildable(aim_model *m, const char *what) {
    if (m->compiled) {
        aim__set_error(m->err, "%s: the model is already compiled; the graph cannot change", what);
        return AIM_ERR_INVALID_STATE;
    }
    return AIM_OK;
}

aim_status aim__model_add_node(aim_model *m, const aim__layer_ops *ops, const void *cfg, size_t cfg_bytes,
                               const size_t *in, size_t n_in) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    const size_t idx = m->n_layers;
    if (!cfg) {
        aim__set_error(m->err, "layer %zu (%s): config is NULL", idx, ops->name);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    char what[64];
    snprintf(what, sizeof what, "add_%s", ops->name);
    aim_status st = check_buildable(m, what);
    if (st != AIM_OK) return st;
    aim__layer L;
    memset(&L, 0, sizeof L);
    L.ops = ops;
    if (n_in == 0 && ops->min_inputs <= 1) {
        L.n_in = 1;
        L.in[0] = m->current;
    } else {
        if (n_in < ops->min_inputs || n_in > ops->max_inputs) {
            aim__set_error(m->err, "layer %zu (%s): takes %zu to %zu inputs, got %zu", idx, ops->name, ops->min_inputs,
                           ops->max_inputs, n_in);
            return AIM_ERR_INVALID_ARGUMENT;
        }
        if (!in) {
            aim__set_error(m->err, "layer %zu (%s): the list of input nodes is NULL", idx, ops->name);
            return AIM_ERR_INVALID_ARGUMENT;
        }
        for (size_t j = 0; j < n_in; j++)
            if (!node_exists(m, in[j])) {
                char id[96];
                aim__node_id_str(in[j], id, sizeof id);
                aim__set_error(m->err, "layer %zu (%s): argument %zu names %s, which does not exist (%zu layers, %zu inputs)",
                               idx, ops->name, j, id, m->n_layers, m->n_inputs);
                return AIM_ERR_INVALID_ARGUMENT;
            }
        L.n_in = n_in;
        memcpy(L.in, in, n_in * sizeof in[0]);
    }
    if (cfg_bytes) memcpy(L.cfg, cfg, cfg_bytes);
    aim__shape shapes[AIM_MAX_NODE_INPUTS], tmp[AIM_MAX_NODE_INPUTS];
    for (size_t j = 0; j < L.n_in; j++) shapes[j] = *aim__node_shape(m, L.in[j], &tmp[j]);
    L.in_rank = shapes[0].rank;
    memcpy(L.in_dims, shapes[0].dims, sizeof L.in_dims);
    L.in_size = shapes[0].size;
    if (!ops->reads_ids)
        for (size_t j = 0; j < L.n_in; j++)
            if (shapes[j].dtype != AIM_DTYPE_FLOAT32) {
                char id[96];
                aim__node_id_str(L.in[j], id, sizeof id);
                aim__set_error(m->err, "layer %zu (%s): %s holds int32 ids, which only an embedding reads", idx,
                               ops->name, id);
                return AIM_ERR_SHAPE_MISMATCH;
            }
    char msg[AIM__ERR_CAP];
    msg[0] = '\0';
    st = ops->setup(&L, shapes, L.n_in, msg);
    if (st != AIM_OK) {
        aim__set_error(m->err, "layer %zu (%s): %s", idx, ops->name, msg);
        return st;
    }
    if (m->n_layers == m->cap_layers) {
        size_t cap = m->cap_layers ? m->cap_layers * 2 : 8, bytes;
        if (cap > AIM__NONE / 2 - AIM_MAX_NODE_INPUTS || !aim__mul(cap, sizeof *m->layers, &bytes)) {
            aim__set_error(m->err, "layer %zu (%s): too many layers", idx, ops->name);
            return AIM_ERR_OVERFLOW;
        }
        aim__layer *p = m->alloc.reallocate(m->alloc.context, m->layers, bytes);
        if (!p) {
            aim__set_error(m->err, "layer %zu (%s): out of memory growing the layer list", idx, ops->name);
            return AIM_ERR_OUT_OF_MEMORY;
        }
        m->layers = p;
        m->cap_layers = cap;
    }
    m->layers[m->n_layers++] = L;
    m->current = idx;
    return AIM_OK;
}

aim_status aim_model_add_input(aim_model *m, size_t rank, const size_t *dims, size_t *node) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_buildable(m, "add_input");
    if (st != AIM_OK) return st;
    if (!node) {
        aim__set_error(m->err, "add_input: node is NULL");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    if (m->n_inputs == AIM_MAX_NODE_INPUTS) {
        aim__set_error(m->err, "add_input: the model already has the most inputs, %u", AIM_MAX_NODE_INPUTS);
        return AIM_ERR_INVALID_STATE;
    }
    aim__shape s;
    st = make_shape(rank, dims, &s);
    if (st != AIM_OK) {
        aim__set_error(m->err, "add_input: the shape needs rank 1 to %d and sizes > 0 whose product fits BLAS's int",
                       AIM_MAX_RANK - 1);
        return st;
    }
    m->inputs[m->n_inputs] = s;
    *node = AIM_MODEL_INPUT(m->n_inputs);
    m->n_inputs++;
    return AIM_OK;
}

aim_status aim_model_last_node(const aim_model *m, size_t *node) {
    if (!m || !node) return AIM_ERR_INVALID_ARGUMENT;
    *node = m->current;
    return AIM_OK;
}

aim_status aim_model_continue_from(aim_model *m, size_t node) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_buildable(m, "continue_from");
    if (st != AIM_OK) return st;
    if (!node_exists(m, node)) {
        char id[96];
        aim__node_id_str(node, id, sizeof id);
        aim__set_error(m->err, "continue_from: %s does not exist (%zu layers, %zu inputs)", id, m->n_layers,
                       m->n_inputs);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    m->current = node;
    return AIM_OK;
}

aim_status aim_model_set_outputs(aim_model *m, const size_t *nodes, const float *loss_weights, size_t count) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_buildable(m, "set_outputs");
    if (st != AIM_OK) return st;
    if (!nodes || count == 0 || count > AIM_MAX_NODE_INPUTS) {
        aim__set_error(m->err, "set_outputs: give 1 to %u output nodes", AIM_MAX_NODE_INPUTS);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    for (size_t k = 0; k < count; k++) {
        if (aim__is_input(nodes[k]) || nodes[k] >= m->n_layers) {
            char id[96];
            aim__node_id_str(nodes[k], id, sizeof id);
            aim__set_error(m->err, "set_outputs: output %zu names %s, which is not a layer of the model (%zu layers)", k,
                           id, m->n_layers);
            return AIM_ERR_INVALID_ARGUMENT;
        }
        for (size_t j = 0; j < k; j++)
            if (nodes[j] == nodes[k]) {
                aim__set_error(m->err, "set_outputs: layer %zu is named twice (outputs %zu and %zu)", nodes[k], j, k);
                return AIM_ERR_INVALID_ARGUMENT;
            }
        if (loss_weights && !aim__all_finite(&loss_weights[k], 1)) {
            aim__set_error(m->err, "set_outputs: loss weight %zu is not finite", k);
            return AIM_ERR_INVALID_ARGUMENT;
        }
    }
    for (size_t k = 0; k < count; k++) {
        m->outputs[k] = nodes[k];
        m->loss_weights[k] = loss_weights ? loss_weights[k] : 1.0f;
    }
    m->n_outputs = count;
    m->outputs_set = 1;
    return AIM_OK;
}

size_t aim_model_input_count(const aim_model *m) { return m ? m->n_inputs : 0; }

size_t aim_model_output_count(const aim_model *m) { return m ? aim__n_outputs(m) : 0; }

aim_status aim_model_output_node(const aim_model *m, size_t output, size_t *node) {
    if (!m || !node || output >= aim__n_outputs(m)) return AIM_ERR_INVALID_ARGUMENT;
    *node = aim__output_node(m, output);
    return AIM_OK;
}

aim_status aim_model_layer_shape(const aim_model *m, size_t layer, size_t *rank, size_t *dims) {
    if (!m || !rank || !dims || !node_exists(m, layer)) return AIM_ERR_INVALID_ARGUMENT;
    aim__shape tmp;
    const aim__shape *s = aim__node_shape(m, layer, &tmp);
    *rank = s->rank;
    memcpy(dims, s->dims, s->rank * sizeof dims[0]);
    return AIM_OK;
}

size_t aim_model_layer_count(const aim_model *m) { return m ? m->n_layers : 0; }

size_t aim_model_input_size(const aim_model *m) { return m ? m->inputs[0].size : 0; }

size_t aim_model_output_size(const aim_model *m) {
    return (m && m->n_layers) ? m->layers[aim__output_node(m, 0)].out_size : 0;
}

aim_status aim_model_layer_parameters(const aim_model *m, size_t layer, size_t *offset, size_t *weight_count,
                                      size_t *bias_count) {
    if (!m || !offset || !weight_count || !bias_count) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    if (layer >= m->n_layers) return AIM_ERR_INVALID_ARGUMENT;
    *offset = m->layers[layer].param_offset;
    *weight_count = m->layers[layer].weight_count;
    *bias_count = m->layers[layer].bias_count;
    return AIM_OK;
}

aim_status aim_model_memory_size(const aim_model *m, size_t *bytes) {
    if (!m || !bytes) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    *bytes = sizeof *m + m->cap_layers * sizeof *m->layers + m->block_bytes;
    return AIM_OK;
}

aim_status aim__model_flat(aim_model *m, float **params, float **grads, size_t *count) {
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    *params = m->params;
    *grads = m->grads;
    *count = m->n_params;
    return AIM_OK;
}

aim_status aim_model_parameters(aim_model *m, float **params, size_t *count) {
    if (!m || !params || !count) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(m->err, "parameters: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    *params = m->params;
    *count = m->n_params;
    return AIM_OK;
}

aim_status aim_model_gradients(aim_model *m, float **grads, size_t *count) {
    if (!m || !grads || !count) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(m->err, "gradients: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    *grads = m->grads;
    *count = m->n_params;
    return AIM_OK;
}

aim_status aim_model_set_input_dtype(aim_model *m, size_t input, aim_dtype dtype) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_buildable(m, "set_input_dtype");
    if (st != AIM_OK) return st;
    if (input >= m->n_inputs || (dtype != AIM_DTYPE_FLOAT32 && dtype != AIM_DTYPE_INT32)) {
        aim__set_error(m->err, "set_input_dtype: input %zu of %zu, dtype %d: no such input or dtype", input,
                       m->n_inputs, (int)dtype);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < m->n_layers; i++)
        for (size_t j = 0; j < m->layers[i].n_in; j++)
            if (m->layers[i].in[j] == AIM_MODEL_INPUT(input)) {
                aim__set_error(m->err, "set_input_dtype: layer %zu (%s) already reads input %zu; set its dtype first",
                               i, m->layers[i].ops->name, input);
                return AIM_ERR_INVALID_STATE;
            }
    m->inputs[input].dtype = (uint32_t)dtype;
    return AIM_OK;
}

aim_status aim_model_input_dtype(const aim_model *m, size_t input, aim_dtype *dtype) {
    if (!m || !dtype || input >= m->n_inputs) return AIM_ERR_INVALID_ARGUMENT;
    *dtype = (aim_dtype)m->inputs[input].dtype;
    return AIM_OK;
}

aim_status aim_model_buffers(aim_model *m, float **buffers, size_t *count) {
    if (!m || !buffers || !count) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(m->err, "buffers: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    *buffers = m->n_buffers ? m->buffers : NULL;
    *count = m->n_buffers;
    return AIM_OK;
}

aim_status aim_model_layer_buffers(const aim_model *m, size_t layer, size_t *offset, size_t *count) {
    if (!m || !offset || !count) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) return AIM_ERR_INVALID_STATE;
    if (layer >= m->n_layers) return AIM_ERR_INVALID_ARGUMENT;
    *offset = m->layers[layer].buffer_offset;
    *count = m->layers[layer].buffer_count;
    return AIM_OK;
}

/* The key is mixed once more, so nearby seeds give unrelated streams. */
aim_status aim_model_set_random_seed(aim_model *m, uint64_t seed) {
    if (!m) return AIM_ERR_INVALID_ARGUMENT;
    if (!m->compiled) {
        aim__set_error(m->err, "set_random_seed: the model is not compiled");
        return AIM_ERR_INVALID_STATE;
    }
    aim__model_set_random(m, aim__mix64(seed ^ 0x5DEECE66Dull), 0);
    return AIM_OK;
}

void aim__model_set_random(aim_model *m, uint64_t key, uint64_t step) {
    m->random_key = key;
    m->random_step = step;
}

void aim__model_get_view(const aim_model *m, aim__model_view *v) {
    v->n_inputs = m->n_inputs;
    v->inputs = m->inputs;
    v->layers = m->layers;
    v->n_layers = m->n_layers;
    v->n_outputs = m->n_outputs;
    v->outputs = m->outputs;
    v->loss_weights = m->loss_weights;
    v->compiled = m->compiled;
    v->max_batch = m->max_batch;
    v->input_gradient = m->input_gradient;
    v->params = m->params;
    v->n_params = m->n_params;
    v->buffers = m->buffers;
    v->n_buffers = m->n_buffers;
    v->random_key = m->random_key;
    v->random_step = m->random_step;
}

void aim__model_plan_stats(const aim_model *m, aim__plan_stats *out) { *out = m->plan; }

aim_status aim__model_node_state(aim_model *m, size_t layer, const aim__layer_ops *ops, const char *what,
                                 aim__node_state *out) {
    if (!m->compiled) {
        aim__set_error(m->err, "%s: the model is not compiled", what);
        return AIM_ERR_INVALID_STATE;
    }
    if (layer >= m->n_layers || m->layers[layer].ops != ops) {
        aim__set_error(m->err, "%s: layer %zu is not of kind %s", what, layer, ops->name);
        return AIM_ERR_INVALID_ARGUMENT;
    }
    out->L = &m->layers[layer];
    out->state = m->states[layer];
    out->state_batch = &m->state_batch[layer];
    out->cache = m->trained_forward ? m->caches[layer] : NULL;
    out->batch = m->batch;
    out->parts = m->parts;
    out->max_batch = m->max_batch;
    out->err = m->err;
    return AIM_OK;
}
