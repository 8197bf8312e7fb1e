/*
 * Losses with PyTorch's default reduction (mean). Sums run in double; the
 * gradient is that of the mean.
 * https://pytorch.org/docs/stable/nn.html#loss-functions
 * SPDX-License-Identifier: MIT
 */
#include <math.h>

#include "internal.h"

int aim__loss_kind_valid(aim_loss_kind kind) {
    return kind >= AIM_LOSS_MSE && kind <= AIM_LOSS_SOFTMAX_CROSS_ENTROPY;
}

/* log-sum-exp of one row, stable. */
static double row_lse(const float *z, size_t n) {
    float m = z[0];
    for (size_t j = 1; j < n; j++) m = z[j] > m ? z[j] : m;
    double s = 0.0;
    for (size_t j = 0; j < n; j++) s += exp((double)z[j] - (double)m);
    return (double)m + log(s);
}

aim_status aim__loss(aim_loss_kind kind, const float *pred, const float *t, size_t batch, size_t features,
                     float *loss_out, float *grad) {
    const size_t n = batch * features;
    double total = 0.0;
    switch (kind) {
    case AIM_LOSS_MSE: { /* L = mean (y - t)^2;  dL/dy = 2 (y - t) / n */
        const float scale = (float)(2.0 / (double)n);
        for (size_t i = 0; i < n; i++) {
            float d = pred[i] - t[i];
            total += (double)d * (double)d;
            if (grad) grad[i] = scale * d;
        }
        total /= (double)n;
        break;
    }
    case AIM_LOSS_BCE: {
        /* L = -mean(t log y + (1-t) log(1-y)), each log clamped at -100 as
         * PyTorch's BCELoss does; dL/dy = (y - t) / max(y (1-y), 1e-12) / n. */
        for (size_t i = 0; i < n; i++)
            if (!(pred[i] >= 0.0f && pred[i] <= 1.0f)) return isnan(pred[i]) ? AIM_ERR_NON_FINITE
                                                                             : AIM_ERR_INVALID_ARGUMENT;
        const double inv_n = 1.0 / (double)n;
        for (size_t i = 0; i < n; i++) {
            double y = (double)pred[i], tt = (double)t[i];
            double ly = y > 0.0 ? log(y) : -100.0, l1y = y < 1.0 ? log1p(-y) : -100.0;
            if (ly < -100.0) ly = -100.0;
            if (l1y < -100.0) l1y = -100.0;
            total -= tt * ly + (1.0 - tt) * l1y;
            if (grad) {
                double den = y * (1.0 - y);
                if (den < 1e-12) den = 1e-12;
                grad[i] = (float)((y - tt) / den * inv_n);
            }
        }
        total *= inv_n;
        break;
    }
    case AIM_LOSS_BCE_WITH_LOGITS: {
        /* L = mean(max(z,0) - z t + log(1 + e^-|z|));  dL/dz = (sigmoid(z) - t) / n */
        const double inv_n = 1.0 / (double)n;
        for (size_t i = 0; i < n; i++) {
            double z = (double)pred[i], tt = (double)t[i];
            total += (z > 0.0 ? z : 0.0) - z * tt + log1p(exp(-fabs(z)));
            if (grad) {
                double s = z >= 0.0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
                grad[i] = (float)((s - tt) * inv_n);
            }
        }
        total *= inv_n;
        break;
    }
    case AIM_LOSS_SOFTMAX_CROSS_ENTROPY: {
        /* L = -mean_b sum_j t_j (z_j - lse(z));  dL/dz_j = (p_j sum_k t_k - t_j) / batch */
        const double inv_b = 1.0 / (double)batch;
        for (size_t b = 0; b < batch; b++) {
            const float *z = pred + b * features, *tb = t + b * features;
            double lse = row_lse(z, features), tsum = 0.0;
            for (size_t j = 0; j < features; j++) {
                total -= (double)tb[j] * ((double)z[j] - lse);
                tsum += (double)tb[j];
            }
            if (grad)
                for (size_t j = 0; j < features; j++)
                    grad[b * features + j] =
                        (float)((exp((double)z[j] - lse) * tsum - (double)tb[j]) * inv_b);
        }
        total *= inv_b;
        break;
    }
    }
    if (!isfinite(total)) return AIM_ERR_NON_FINITE;
    *loss_out = (float)total;
    return AIM_OK;
}

aim_status aim__loss_sparse(const float *logits, const int32_t *labels, size_t batch, size_t classes,
                            float *loss_out, float *grad) {
    /* L = -mean_b (z_{b,y_b} - lse(z_b));  dL/dz = (softmax(z) - onehot(y)) / batch */
    for (size_t b = 0; b < batch; b++)
        if (labels[b] < 0 || (size_t)labels[b] >= classes) return AIM_ERR_INVALID_ARGUMENT;
    const double inv_b = 1.0 / (double)batch;
    double total = 0.0;
    for (size_t b = 0; b < batch; b++) {
        const float *z = logits + b * classes;
        const size_t y = (size_t)labels[b];
        double lse = row_lse(z, classes);
        total -= (double)z[y] - lse;
        if (grad) {
            float *g = grad + b * classes;
            for (size_t j = 0; j < classes; j++) g[j] = (float)(exp((double)z[j] - lse) * inv_b);
            g[y] -= (float)inv_b;
        }
    }
    total *= inv_b;
    if (!isfinite(total)) return AIM_ERR_NON_FINITE;
    *loss_out = (float)total;
    return AIM_OK;
}

aim_status aim_loss(aim_loss_kind kind, const float *pred, const float *targets, size_t batch, size_t features,
                    float *loss_out, float *grad_out) {
    size_t n;
    if (!pred || !targets || !loss_out || batch == 0 || features == 0 || !aim__loss_kind_valid(kind))
        return AIM_ERR_INVALID_ARGUMENT;
    if (!aim__mul(batch, features, &n)) return AIM_ERR_OVERFLOW;
    return aim__loss(kind, pred, targets, batch, features, loss_out, grad_out);
}

aim_status aim_loss_sparse(const float *logits, const int32_t *labels, size_t batch, size_t classes,
                           float *loss_out, float *grad_out) {
    size_t n;
    if (!logits || !labels || !loss_out || batch == 0 || classes == 0) return AIM_ERR_INVALID_ARGUMENT;
    if (!aim__mul(batch, classes, &n)) return AIM_ERR_OVERFLOW;
    return aim__loss_sparse(logits, labels, batch, classes, loss_out, grad_out);
}
