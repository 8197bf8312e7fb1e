/*
 * One core's float FMA peak, with 512-bit (zmm) and 256-bit (ymm) vectors:
 * 24 (zmm) or 12 (ymm) independent FMA chains, enough to cover the FMA
 * latency on both pipes, so the loop runs at the issue rate. It tells
 * whether a CPU's AVX-512 has more FLOPs than its AVX2 (Zen 5, full-width
 * units: about twice) or the same (Zen 4, 256-bit units), which bounds what
 * any SGEMM kernel can reach (docs/PERFORMANCE.md, "The library's own SGEMM").
 *
 *   gcc -O2 -o build/bench/fma_peak tests/bench/fma_peak.c && build/bench/fma_peak
 *
 * SPDX-License-Identifier: MIT
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static float run512(long n) {
    __m512 a[24];
    const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < n; k++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s); /* used, so the loop is not removed */
}

__attribute__((target("avx2,fma"))) static float run256(long n) {
    __m256 a[12];
    const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float r[8];
    _mm256_storeu_ps(r, s);
    return r[0];
}

int main(void) {
    const long n = 100000000;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        double t = now();
        float r = run512(n);
        double dt = now() - t;
        printf("zmm (AVX-512F): %.1f GF/s (checksum %g)\n", (double)n * 24.0 * 16 * 2 / dt / 1e9, (double)r);
    } else {
        printf("zmm (AVX-512F): not on this CPU\n");
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        double t = now();
        float r = run256(n);
        double dt = now() - t;
        printf("ymm (AVX2+FMA): %.1f GF/s (checksum %g)\n", (double)n * 12.0 * 8 * 2 / dt / 1e9, (double)r);
    }
    return 0;
}
