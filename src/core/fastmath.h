/*
 * exp, sigmoid, tanh and the normal CDF as branch-free inline code that the compiler can
 * vectorize (libm's expf/tanhf are calls, one element at a time: a third of
 * an LSTM step went into them). Polynomials from Cephes (S. L. Moshier,
 * https://www.netlib.org/cephes/); accuracy within a few float ulp over the
 * whole range, checked against libm in tests/test_fastmath.c.
 * SPDX-License-Identifier: MIT
 */
#ifndef AIM_FASTMATH_H
#define AIM_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* e^x: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7 polynomial, 2^n by
 * building the float's exponent bits. Saturates outside [-87.3, 88.3]. */
static inline float aim__exp(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x; /* so n <= 127: 2^128 has no float exponent */
    /* n = round(x / ln2), by the 1.5 * 2^23 trick (round-to-nearest mode) */
    float n = x * 1.44269504088896341f + 12582912.0f;
    n -= 12582912.0f;
    /* r = x - n ln2, with ln2 split in two for exactness (Cody-Waite) */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN stays NaN through p; the exponent is built from 0 then, since
     * converting NaN to an integer is undefined. */
    int32_t e = ((int32_t)(n == n ? n : 0.0f) + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

/* 1 / (1 + e^-x); for large negative x e^-x saturates and the result is ~0. */
static inline float aim__sigmoid(float x) { return 1.0f / (1.0f + aim__exp(-x)); }

/* tanh: an odd polynomial for |x| < 0.625 (where 1 - 2/(e^2x + 1) would
 * cancel), 1 - 2/(e^2|x| + 1) with the sign restored elsewhere. */
static inline float aim__tanh(float x) {
    float a = x < 0.0f ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (aim__exp(2.0f * a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}

/* Φ(x) = P(N(0, 1) <= x) = erfc(-x / sqrt 2) / 2, for GELU. erfc(z) of
 * z = |x| / sqrt 2 >= 0 is t e^(P(t) - z²) with t = 1 / (1 + z / 2) and P of
 * degree 9 (Numerical Recipes' erfcc, after Chebyshev: fractional error
 * below 1.2e-7 in exact arithmetic); Φ is half of it below 0 and 1 minus
 * that above. Relative error in float (tests/test_fastmath.c): within
 * 2e-6 for x >= -3 and 1e-5 down to -6, where Φ is 1e-9 (the common
 * 1 + erff(x / sqrt 2) loses all digits there: 5% at -5); absolute error
 * within 1e-6 everywhere. Branch-free: it vectorizes. */
static inline float aim__phi(float x) {
    const float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const float half_erfc = 0.5f * t * aim__exp(p - z * z);
    return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

#endif
