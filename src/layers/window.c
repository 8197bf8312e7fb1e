/*
 * Window geometry shared by conv2d and pooling: the output length of one
 * spatial axis, as PyTorch computes it (floor mode):
 *   out = (n + pa + pb - d (k - 1) - 1) / s + 1
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "internal.h"

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

