/*
 * Global average pooling: C×H×W → C, Y[c] = mean over H×W of X[c]
 * (PyTorch nn.AdaptiveAvgPool2d(1) followed by a flatten).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "internal.h"

aim_status aim_model_add_global_avg_pool2d(aim_model *m) {
    return aim__model_add_node(m, &aim__global_avg_pool2d_ops, "", 0, NULL, 0);
}

static aim_status setup(aim__layer *L, const aim__shape *in, size_t n_in, char *msg) {
    (void)n_in;
    if (in[0].rank != 3) {
        snprintf(msg, AIM__ERR_CAP, "input must be one C x H x W sample (rank 3), got rank %zu", in[0].rank);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    L->out_rank = 1;
    L->out_dims[0] = in[0].dims[0];
    L->out_size = in[0].dims[0];
    return AIM_OK;
}

static void forward(const aim__layer *L, const aim__fwd *a) {
    const size_t C = L->in_dims[0], HW = L->in_dims[1] * L->in_dims[2];
    const float inv = 1.0f / (float)HW;
    for (size_t nc = 0; nc < a->batch * C; nc++) {
        const float *xc = a->x[0] + nc * HW;
        float s = 0.0f;
        for (size_t k = 0; k < HW; k++) s += xc[k];
        a->y[nc] = s * inv;
    }
}

/* dX[c, i, j] = dY[c] / (H W) */
static void backward(const aim__layer *L, const aim__bwd *a) {
    float *dx = a->dx[0];
    if (!dx) return;
    const size_t C = L->in_dims[0], HW = L->in_dims[1] * L->in_dims[2];
    const float inv = 1.0f / (float)HW;
    for (size_t nc = 0; nc < a->batch * C; nc++) {
        const float g = a->dy[nc] * inv;
        for (size_t k = 0; k < HW; k++) dx[nc * HW + k] = g;
    }
}

static double macs(const aim__layer *L) { return (double)L->out_size; }

const aim__layer_ops aim__global_avg_pool2d_ops = {
    .name = "global_avg_pool2d",
    .code = 5,
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = setup,
    .forward = forward,
    .backward = backward,
    .macs = macs,
};
