/* Shared helpers of the cmocka suite: allocators that count and fail,
 * comparisons with a relative tolerance, and deterministic random fills. */
#ifndef AIM_TEST_SUPPORT_H
#define AIM_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "aimodel.h"

/* An allocator over malloc that counts calls and live blocks, and can be told
 * to fail the k-th allocation (counting allocate and reallocate calls from 0).
 * fail_at < 0 never fails. */
typedef struct test_alloc {
    aim_allocator allocator; /* hand &ta.allocator to the library */
    long fail_at;            /* index of the call that returns NULL, or -1 */
    long calls;              /* allocate + reallocate calls so far */
    long live;               /* blocks allocated and not yet freed */
    long failures;           /* how many calls were failed */
} test_alloc;

void test_alloc_init(test_alloc *ta, long fail_at);

/* Largest relative error |a-b| / max(|b|, floor) over n values; index of the
 * worst in *where if not NULL. */
double max_rel_error(const float *a, const float *b, size_t n, double floor, size_t *where);

/* Fills with uniform values in [lo, hi) from a small local generator seeded
 * by `seed` (independent of the library's RNG). */
void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

#endif
