#include "support.h"

#include <math.h>
#include <stdlib.h>

/* `live` counts blocks: realloc(NULL, n) creates one, realloc(p, n) keeps the count. */
static void *ta_allocate(void *ctx, size_t size) {
    test_alloc *ta = ctx;
    long k = ta->calls++;
    if (ta->fail_at >= 0 && k == ta->fail_at) {
        ta->failures++;
        return NULL;
    }
    void *p = malloc(size);
    if (p) ta->live++;
    return p;
}

static void *ta_reallocate(void *ctx, void *ptr, size_t size) {
    test_alloc *ta = ctx;
    long k = ta->calls++;
    if (ta->fail_at >= 0 && k == ta->fail_at) {
        ta->failures++;
        return NULL;
    }
    void *p = realloc(ptr, size);
    if (p && !ptr) ta->live++;
    return p;
}

static void ta_deallocate(void *ctx, void *ptr) {
    test_alloc *ta = ctx;
    ta->live--;
    free(ptr);
}

void test_alloc_init(test_alloc *ta, long fail_at) {
    ta->allocator.context = ta;
    ta->allocator.allocate = ta_allocate;
    ta->allocator.reallocate = ta_reallocate;
    ta->allocator.deallocate = ta_deallocate;
    ta->fail_at = fail_at;
    ta->calls = 0;
    ta->live = 0;
    ta->failures = 0;
}

double max_rel_error(const float *a, const float *b, size_t n, double floor, size_t *where) {
    double worst = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fabs((double)b[i]);
        if (s < floor) s = floor;
        double e = d / s;
        if (!(e <= worst)) { /* also catches NaN */
            worst = isnan(e) ? INFINITY : e;
            wi = i;
        }
    }
    if (where) *where = wi;
    return worst;
}

void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        float u = (float)(s >> 40) * (1.0f / 16777216.0f);
        x[i] = lo + (hi - lo) * u;
    }
}
