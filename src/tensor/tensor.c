/*
 * Tensors: float32, row-major, rank 1..AIM_MAX_RANK, owning 64-byte aligned
 * storage or wrapping the caller's.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <string.h>

#include "internal.h"

struct aim_tensor {
    aim_allocator alloc;
    size_t rank;
    size_t dims[AIM_MAX_RANK];
    size_t size;   /* product of dims */
    float *data;
    void *raw;     /* what to free when the tensor owns its storage, else NULL */
    char err[AIM__ERR_CAP];
};

/* Validates a shape and returns its element count; the byte count must fit
 * too, since storage is allocated in bytes. */
static aim_status shape_count(size_t rank, const size_t *dims, size_t *count) {
    if (!dims || rank == 0 || rank > AIM_MAX_RANK) return AIM_ERR_INVALID_ARGUMENT;
    size_t n = 1, bytes;
    for (size_t i = 0; i < rank; i++) {
        if (dims[i] == 0) return AIM_ERR_INVALID_ARGUMENT;
        if (!aim__mul(n, dims[i], &n)) return AIM_ERR_OVERFLOW;
    }
    if (!aim__mul(n, sizeof(float), &bytes) || bytes > SIZE_MAX - AIM__ALIGN) return AIM_ERR_OVERFLOW;
    *count = n;
    return AIM_OK;
}

static aim_status make(const aim_allocator *allocator, size_t rank, const size_t *dims, float *data,
                       aim_tensor **out) {
    aim_allocator a;
    size_t n;
    if (!out) return AIM_ERR_INVALID_ARGUMENT;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = shape_count(rank, dims, &n);
    if (st != AIM_OK) return st;
    aim_tensor *t = aim__alloc(&a, sizeof *t);
    if (!t) return AIM_ERR_OUT_OF_MEMORY;
    memset(t, 0, sizeof *t);
    t->alloc = a;
    t->rank = rank;
    memcpy(t->dims, dims, rank * sizeof dims[0]);
    t->size = n;
    if (data) {
        t->data = data;
    } else {
        t->data = aim__alloc_aligned(&a, n * sizeof(float), &t->raw);
        if (!t->data) {
            aim__free(&a, t);
            return AIM_ERR_OUT_OF_MEMORY;
        }
        memset(t->data, 0, n * sizeof(float));
    }
    *out = t;
    return AIM_OK;
}

aim_status aim_tensor_create(const aim_allocator *allocator, size_t rank, const size_t *dims, aim_tensor **out) {
    return make(allocator, rank, dims, NULL, out);
}

aim_status aim_tensor_wrap(const aim_allocator *allocator, size_t rank, const size_t *dims, float *data,
                           size_t data_count, aim_tensor **out) {
    size_t n;
    if (!data || !out) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = shape_count(rank, dims, &n);
    if (st != AIM_OK) return st;
    if (data_count != n) return AIM_ERR_SHAPE_MISMATCH; /* the buffer must hold exactly the shape */
    return make(allocator, rank, dims, data, out);
}

void aim_tensor_free(aim_tensor *t) {
    if (!t) return;
    aim_allocator a = t->alloc;
    aim__free(&a, t->raw);
    aim__free(&a, t);
}

size_t aim_tensor_rank(const aim_tensor *t) { return t ? t->rank : 0; }

size_t aim_tensor_dim(const aim_tensor *t, size_t axis) { return (t && axis < t->rank) ? t->dims[axis] : 0; }

size_t aim_tensor_size(const aim_tensor *t) { return t ? t->size : 0; }

float *aim_tensor_data(aim_tensor *t) { return t ? t->data : NULL; }

const float *aim_tensor_data_const(const aim_tensor *t) { return t ? t->data : NULL; }

const char *aim_tensor_last_error(const aim_tensor *t) { return t ? t->err : ""; }

aim_status aim_tensor_reshape(aim_tensor *t, size_t rank, const size_t *dims) {
    size_t n;
    if (!t) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = shape_count(rank, dims, &n);
    if (st != AIM_OK) {
        aim__set_error(t->err, "reshape: invalid shape (%s)", aim_status_str(st));
        return st;
    }
    if (n != t->size) {
        aim__set_error(t->err, "reshape: new shape has %zu elements, tensor has %zu", n, t->size);
        return AIM_ERR_SHAPE_MISMATCH;
    }
    t->rank = rank;
    memset(t->dims, 0, sizeof t->dims);
    memcpy(t->dims, dims, rank * sizeof dims[0]);
    return AIM_OK;
}

aim_status aim_tensor_fill(aim_tensor *t, float value) {
    if (!t) return AIM_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < t->size; i++) t->data[i] = value;
    return AIM_OK;
}

aim_status aim_tensor_copy(aim_tensor *dst, const aim_tensor *src) {
    if (!dst || !src) return AIM_ERR_INVALID_ARGUMENT;
    if (dst->rank != src->rank || memcmp(dst->dims, src->dims, dst->rank * sizeof dst->dims[0]) != 0) {
        aim__set_error(dst->err, "copy: source shape differs from destination shape");
        return AIM_ERR_SHAPE_MISMATCH;
    }
    if (dst->data != src->data) memmove(dst->data, src->data, dst->size * sizeof(float));
    return AIM_OK;
}

aim_status aim_tensor_rand_uniform(aim_tensor *t, aim_rng *rng, float low, float high) {
    if (!t || !rng) return AIM_ERR_INVALID_ARGUMENT;
    if (!isfinite(low) || !isfinite(high) || low > high) {
        aim__set_error(t->err, "rand_uniform: need finite low <= high");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    /* In double, so high - low cannot overflow; rounding back to float can
     * reach `high`, which the half-open range excludes. */
    const double lo = (double)low, span = (double)high - (double)low;
    const float below_high = low < high ? nextafterf(high, low) : low;
    for (size_t i = 0; i < t->size; i++) {
        float v = (float)(lo + span * (double)aim__rng_uniform(rng));
        t->data[i] = v < high ? v : below_high;
    }
    return AIM_OK;
}

aim_status aim_tensor_rand_normal(aim_tensor *t, aim_rng *rng, float mean, float stddev) {
    if (!t || !rng) return AIM_ERR_INVALID_ARGUMENT;
    if (!isfinite(mean) || !isfinite(stddev) || stddev < 0.0f) {
        aim__set_error(t->err, "rand_normal: need finite mean and stddev >= 0");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < t->size; i++) t->data[i] = mean + stddev * aim__rng_normal(rng);
    return AIM_OK;
}
