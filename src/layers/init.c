/*
 * Weight initializers, shared by every layer with parameters.
 *   Glorot uniform (Keras default): https://keras.io/api/layers/initializers/#glorotuniform-class
 *   PyTorch default for Linear/Conv2d: kaiming_uniform(a = sqrt 5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <string.h>

#include "internal.h"

int aim__init_valid(aim_init init) { return init >= AIM_INIT_GLOROT_UNIFORM && init <= AIM_INIT_ZEROS; }

void aim__init_weights(aim_init init, float *w, size_t wcount, float *b, size_t bcount, size_t fan_in,
                       size_t fan_out, struct aim_rng *rng) {
    switch (init) {
    case AIM_INIT_GLOROT_UNIFORM: { /* W ~ U(-l, l), l = sqrt(6 / (fan_in + fan_out)); b = 0 */
        float l = (float)sqrt(6.0 / (double)(fan_in + fan_out));
        for (size_t i = 0; i < wcount; i++) w[i] = l * (2.0f * aim__rng_uniform(rng) - 1.0f);
        memset(b, 0, bcount * sizeof(float));
        break;
    }
    case AIM_INIT_PYTORCH: { /* W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
        float l = (float)(1.0 / sqrt((double)fan_in));
        for (size_t i = 0; i < wcount; i++) w[i] = l * (2.0f * aim__rng_uniform(rng) - 1.0f);
        for (size_t i = 0; i < bcount; i++) b[i] = l * (2.0f * aim__rng_uniform(rng) - 1.0f);
        break;
    }
    case AIM_INIT_HE_NORMAL: { /* W ~ N(0, 2 / fan_in); b = 0 */
        float s = (float)sqrt(2.0 / (double)fan_in);
        for (size_t i = 0; i < wcount; i++) w[i] = s * aim__rng_normal(rng);
        memset(b, 0, bcount * sizeof(float));
        break;
    }
    case AIM_INIT_ZEROS:
        memset(w, 0, wcount * sizeof(float));
        memset(b, 0, bcount * sizeof(float));
        break;
    }
}
