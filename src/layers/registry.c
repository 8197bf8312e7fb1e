/*
 * The registry: every layer kind, by its code in the format. Adding a kind
 * is one line here (and its own file).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "internal.h"

static const aim__layer_ops *const kinds[] = {
    &aim__dense_ops,          &aim__activation_ops, &aim__conv2d_ops, &aim__max_pool2d_ops, &aim__avg_pool2d_ops,
    &aim__global_avg_pool2d_ops, &aim__flatten_ops, &aim__lstm_ops,   &aim__add_ops,        &aim__concat_ops,
};

const aim__layer_ops *aim__layer_by_code(uint32_t code) {
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i]->code == code) return kinds[i];
    return NULL;
}

/* Shared by the kinds' setups: one spatial axis of a window. */
aim_status aim__window_out_len(const char *axis, size_t n, size_t k, size_t s, size_t d, size_t pa, size_t pb,
                               size_t *out, char *msg) {
    size_t eff, padded;
    if (!aim__mul(d, k - 1, &eff) || !aim__add(eff, 1, &eff) || !aim__add(n, pa, &padded) ||
        !aim__add(padded, pb, &padded)) {
        snprintf(msg, AIM__ERR_CAP, "%s size overflows", axis);
        return AIM_ERR_OVERFLOW;
    }
    if (eff > padded) {
        snprintf(msg, AIM__ERR_CAP, "%s: kernel extent %zu is larger than the padded input %zu", axis, eff, padded);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    *out = (padded - eff) / s + 1;
    return AIM_OK;
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
