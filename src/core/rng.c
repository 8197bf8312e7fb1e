/*
 * The random number generator: xoshiro256** (Blackman & Vigna,
 * https://prng.di.unimi.it/xoshiro256starstar.c) seeded through splitmix64,
 * so equal seeds give equal sequences on every platform.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>

#include "internal.h"

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void aim__rng_init(struct aim_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

uint64_t aim__mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t aim__rng_u64(struct aim_rng *rng) {
    uint64_t *s = rng->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float aim__rng_uniform(struct aim_rng *rng) {
    /* The top 24 bits times 2^-24: exact in float, so identical everywhere. */
    return (float)(aim__rng_u64(rng) >> 40) * (1.0f / 16777216.0f);
}

float aim__rng_normal(struct aim_rng *rng) {
    /* Box-Muller; u1 in (0, 1] keeps log finite. */
    double u1 = ((double)(aim__rng_u64(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(aim__rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

aim_status aim_rng_create(const aim_allocator *allocator, uint64_t seed, aim_rng **out) {
    aim_allocator a;
    if (!out) return AIM_ERR_INVALID_ARGUMENT;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    struct aim_rng *r = aim__alloc(&a, sizeof *r);
    if (!r) return AIM_ERR_OUT_OF_MEMORY;
    r->alloc = a;
    aim__rng_init(r, seed);
    *out = r;
    return AIM_OK;
}

void aim_rng_free(aim_rng *rng) {
    if (!rng) return;
    aim_allocator a = rng->alloc;
    aim__free(&a, rng);
}

aim_status aim_rng_seed(aim_rng *rng, uint64_t seed) {
    if (!rng) return AIM_ERR_INVALID_ARGUMENT;
    aim__rng_init(rng, seed);
    return AIM_OK;
}

aim_status aim_rng_next_u64(aim_rng *rng, uint64_t *out) {
    if (!rng || !out) return AIM_ERR_INVALID_ARGUMENT;
    *out = aim__rng_u64(rng);
    return AIM_OK;
}

aim_status aim_rng_uniform(aim_rng *rng, float *out) {
    if (!rng || !out) return AIM_ERR_INVALID_ARGUMENT;
    *out = aim__rng_uniform(rng);
    return AIM_OK;
}

aim_status aim_rng_below(aim_rng *rng, uint64_t bound, uint64_t *out) {
    if (!rng || !out || bound == 0) return AIM_ERR_INVALID_ARGUMENT;
    /* Rejection sampling: draws below `threshold` would favour small values. */
    uint64_t threshold = (0 - bound) % bound;
    uint64_t r;
    do {
        r = aim__rng_u64(rng);
    } while (r < threshold);
    *out = r % bound;
    return AIM_OK;
}

aim_status aim_rng_normal(aim_rng *rng, float *out) {
    if (!rng || !out) return AIM_ERR_INVALID_ARGUMENT;
    *out = aim__rng_normal(rng);
    return AIM_OK;
}

aim_status aim_rng_shuffle_u32(aim_rng *rng, uint32_t *indices, size_t count) {
    if (!rng || (!indices && count > 0)) return AIM_ERR_INVALID_ARGUMENT;
    for (size_t i = count; i > 1; i--) {
        uint64_t j;
        (void)aim_rng_below(rng, (uint64_t)i, &j);
        uint32_t t = indices[i - 1];
        indices[i - 1] = indices[j];
        indices[j] = t;
    }
    return AIM_OK;
}
