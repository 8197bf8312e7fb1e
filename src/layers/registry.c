/*
 * The registry: every layer kind, by its code in the format. Adding a kind
 * is one line here (and its own file). Also the shapes' printed form, which
 * every kind's messages use.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "internal.h"

static const aim__layer_ops *const kinds[] = {
    &aim__dense_ops,          &aim__activation_ops, &aim__conv2d_ops, &aim__max_pool2d_ops, &aim__avg_pool2d_ops,
    &aim__global_avg_pool2d_ops, &aim__flatten_ops, &aim__lstm_ops,   &aim__add_ops,        &aim__concat_ops,
    &aim__batch_norm_ops, &aim__dropout_ops,
    &aim__layer_norm_ops, &aim__embedding_ops,
    &aim__gru_ops,
    &aim__conv1d_ops, &aim__max_pool1d_ops, &aim__avg_pool1d_ops, &aim__global_avg_pool1d_ops, &aim__global_max_pool1d_ops,
    &aim__attention_ops, &aim__pos_embedding_ops, &aim__linear_ops,
};

int aim__step_positionwise(const aim__layer *L) {
    (void)L;
    return AIM__STEP_POSITIONWISE;
}

const aim__layer_ops *aim__layer_by_code(uint32_t code) {
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i]->code == code) return kinds[i];
    return NULL;
}

void aim__shape_str(const aim__shape *s, char *buf, size_t cap) {
    size_t at = 0;
    int n = snprintf(buf, cap, "(");
    for (size_t d = 0; n >= 0 && d < s->rank; d++) {
        at += (size_t)n;
        if (at >= cap) return;
        n = snprintf(buf + at, cap - at, d ? ", %zu" : "%zu", s->dims[d]);
    }
    if (n < 0) return;
    at += (size_t)n;
    if (at < cap) snprintf(buf + at, cap - at, ")");
}

void aim__node_id_str(size_t id, char *buf, size_t cap) {
    if (id > (size_t)-1 - AIM_MAX_NODE_INPUTS) snprintf(buf, cap, "model input %zu", (size_t)-1 - id);
    else if (id > (size_t)-1 / 2) snprintf(buf, cap, "node %zu (neither a layer index nor AIM_MODEL_INPUT(k))", id);
    else snprintf(buf, cap, "layer %zu", id);
}
