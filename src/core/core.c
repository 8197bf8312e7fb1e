/*
 * Status strings, version, the allocator seam and overflow-checked sizes.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

const char *aim_status_str(aim_status status) {
    switch (status) {
    case AIM_OK: return "success";
    case AIM_ERR_INVALID_ARGUMENT: return "invalid argument";
    case AIM_ERR_SHAPE_MISMATCH: return "shape mismatch";
    case AIM_ERR_OUT_OF_MEMORY: return "out of memory";
    case AIM_ERR_OVERFLOW: return "size overflow";
    case AIM_ERR_UNSUPPORTED: return "unsupported";
    case AIM_ERR_NON_FINITE: return "non-finite value";
    case AIM_ERR_CORRUPT_DATA: return "corrupt data";
    case AIM_ERR_INVALID_STATE: return "invalid state (call out of order)";
    case AIM_ERR_VERSION: return "unsupported format version";
    }
    return "unknown status";
}

const char *aim_version(void) { return AIM_VERSION_STRING; }

uint32_t aim_version_number(void) { return (uint32_t)AIM_VERSION_NUMBER; }

static void *sys_allocate(void *ctx, size_t size) {
    (void)ctx;
    return malloc(size);
}
static void *sys_reallocate(void *ctx, void *p, size_t size) {
    (void)ctx;
    return realloc(p, size);
}
static void sys_deallocate(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

aim_status aim__allocator_resolve(const aim_allocator *user, aim_allocator *out) {
    if (!user) {
        out->context = NULL;
        out->allocate = sys_allocate;
        out->reallocate = sys_reallocate;
        out->deallocate = sys_deallocate;
        return AIM_OK;
    }
    if (!user->allocate || !user->reallocate || !user->deallocate) return AIM_ERR_INVALID_ARGUMENT;
    *out = *user;
    return AIM_OK;
}

void *aim__alloc(const aim_allocator *a, size_t bytes) {
    if (bytes == 0) bytes = 1;
    return a->allocate(a->context, bytes);
}

void aim__free(const aim_allocator *a, void *p) {
    if (p) a->deallocate(a->context, p);
}

float *aim__alloc_aligned(const aim_allocator *a, size_t bytes, void **raw) {
    size_t total;
    if (!aim__add(bytes, AIM__ALIGN, &total)) return NULL;
    unsigned char *p = a->allocate(a->context, total);
    if (!p) return NULL;
    *raw = p;
    uintptr_t addr = (uintptr_t)p;
    uintptr_t aligned = (addr + (AIM__ALIGN - 1)) & ~(uintptr_t)(AIM__ALIGN - 1);
    return (float *)(void *)(p + (aligned - addr));
}

int aim__mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int aim__add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

int aim__round_floats(size_t floats, size_t *out) {
    const size_t per = AIM__ALIGN / sizeof(float);
    size_t r;
    if (!aim__add(floats, per - 1, &r)) return 0;
    *out = r / per * per;
    return 1;
}

void aim__set_error(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(buf, AIM__ERR_CAP, fmt, ap);
    va_end(ap);
}

int aim__all_finite(const float *x, size_t n) {
    /* Accumulating x*0 keeps the loop branch-free: it stays 0 unless some x is
     * NaN or infinite. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += x[i] * 0.0f;
    return acc == 0.0f;
}
