/*
 * exp, sigmoid and tanh as branch-free inline code that the compiler can
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

#endif
