/*
 * The model's private state, shared by the files of src/model/: the graph
 * (model.c), its memory plan (compile.c) and the executor (exec.c).
 * SPDX-License-Identifier: MIT
 */
#ifndef AIM_MODEL_PRIVATE_H
#define AIM_MODEL_PRIVATE_H

#include "internal.h"

/* No output index: the node is not a model output. */
#define AIM__NONE ((size_t)-1)

struct aim_model {
    aim_allocator alloc;
    size_t n_inputs;
    aim__shape inputs[AIM_MAX_NODE_INPUTS]; /* one sample of each model input */
    aim__layer *layers;                     /* the nodes, in the order added: a topological order */
    size_t n_layers, cap_layers;
    size_t current;                         /* the node the next sequential layer reads */
    int outputs_set;                        /* else the one output is the last layer */
    size_t n_outputs;
    size_t outputs[AIM_MAX_NODE_INPUTS];
    float loss_weights[AIM_MAX_NODE_INPUTS];

    /* ---- set by compile (compile.c): one block holds everything ---- */
    int compiled;
    size_t max_batch;
    int input_gradient;
    size_t n_params;
    size_t n_buffers;     /* floats of model state that is not a parameter */
    float *buffers;       /* (n_buffers) */
    uint64_t random_key;  /* the random stream: its key ... */
    uint64_t random_step; /* ... and the training forwards drawn from it */
    void *raw;            /* the one block, as allocated */
    size_t block_bytes;
    float *params;        /* (n_params) */
    float *grads;         /* (n_params) */
    float *in_copy[AIM_MAX_NODE_INPUTS]; /* (max_batch, size): the last training input */
    float *in_grad[AIM_MAX_NODE_INPUTS]; /* (max_batch, size) when input_gradient */
    float **acts;         /* per layer (max_batch, out_size): every output is kept for the backward */
    float **caches;       /* per layer (max_batch, cache_per_sample), NULL when it keeps nothing */
    float **dys;          /* per layer (max_batch, out_size): d loss / d output, placed by liveness */
    float **states;       /* per layer with a state: the initial state as set (max_batch rows) */
    float **used_states;  /* ... and the copy the last forward used, which its backward reads */
    const float **active_states; /* what the last forward used: used_states[i] or NULL (zero state) */
    size_t *state_batch;  /* per layer: the batch its state was set for, 0 for a zero state */
    size_t *out_of;       /* per layer: its output index, or AIM__NONE */
    size_t *infer_off;    /* per layer: per-sample offset of its output in a workspace arena */
    size_t infer_per_sample; /* floats per sample of a workspace's value arena */
    float *dtmp;          /* a later consumer's input gradient, before it is added */
    float *scratch;       /* max over the layers of scratch_floats + max_batch scratch_per_sample */
    aim__plan_stats plan;

    /* ---- the state of the last calls ---- */
    size_t batch;         /* batch of the last forward, 0 before any */
    int trained_forward;  /* the last forward kept caches */
    uint32_t grad_ready;  /* bit k: output k's gradient is in dys since the forward */
    int input_grad_ready;

    /* ---- threads ---- */
    aim_threadpool *pool; /* NULL: everything on the calling thread */
    size_t parts;         /* how many batch slices the last training forward ran in */

    char err[AIM__ERR_CAP];
};

/* Nonzero when `id` names a model input (AIM_MODEL_INPUT(k)). */
static inline int aim__is_input(size_t id) { return id > (size_t)-1 - AIM_MAX_NODE_INPUTS; }
static inline size_t aim__input_index(size_t id) { return (size_t)-1 - id; }

/* The shape of a node's output sample (a layer's output or an input). */
const aim__shape *aim__node_shape(const aim_model *m, size_t id, aim__shape *tmp);
/* The model's outputs: those set, or the last layer. */
size_t aim__n_outputs(const aim_model *m);
size_t aim__output_node(const aim_model *m, size_t k);

/* compile.c */
int aim__scratch_for(const aim_model *m, size_t batch, size_t *out);
int aim__arena_floats(const aim_model *m, size_t n_params, size_t slice, size_t *out);
size_t aim__largest_slice(size_t batch);

#endif
