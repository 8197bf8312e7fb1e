/* The vectorizable exp, sigmoid, tanh and normal CDF of src/core/fastmath.h
 * against libm in double precision, over their whole useful range. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>

#include "../src/core/fastmath.h"

/* Largest error over a dense sweep of [lo, hi], relative to max(|ref|, floor). */
static double sweep(float (*f)(float), double (*ref)(double), double lo, double hi, double floor, double *at) {
    double worst = 0.0;
    const int n = 2000001;
    for (int i = 0; i < n; i++) {
        float x = (float)(lo + (hi - lo) * i / (n - 1));
        double r = ref((double)x), y = (double)f(x);
        double e = fabs(y - r) / fmax(fabs(r), floor);
        if (!(e <= worst)) {
            worst = e;
            *at = x;
        }
    }
    return worst;
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static void test_exp(void **state) {
    (void)state;
    double at = 0.0;
    /* 2^-23 is one ulp of a float near 1: allow a few. */
    double e = sweep(aim__exp, exp, -87.0, 88.0, 0.0, &at);
    print_message("exp: max relative error %.3g at %g\n", e, at);
    assert_true(e < 4.0 * 0x1p-23);
    assert_true(aim__exp(-200.0f) >= 0.0f && aim__exp(-200.0f) < 1e-37f); /* saturates, no garbage */
    assert_true(isfinite(aim__exp(200.0f)) && aim__exp(200.0f) > 1e38f);
    assert_true(aim__exp(0.0f) == 1.0f);
    assert_true(isnan(aim__exp(NAN)) && isnan(aim__sigmoid(NAN)) && isnan(aim__tanh(NAN))); /* NaN propagates */
}

static void test_sigmoid(void **state) {
    (void)state;
    double at = 0.0;
    double e = sweep(aim__sigmoid, ref_sigmoid, -80.0, 80.0, 0.0, &at);
    print_message("sigmoid: max relative error %.3g at %g\n", e, at);
    assert_true(e < 8.0 * 0x1p-23);
    assert_true(aim__sigmoid(-1000.0f) >= 0.0f && aim__sigmoid(1000.0f) == 1.0f);
}

static void test_tanh(void **state) {
    (void)state;
    double at = 0.0;
    /* Relative everywhere but at 0 itself, where a tiny floor keeps it finite. */
    double e = sweep(aim__tanh, tanh, -20.0, 20.0, 1e-30, &at);
    print_message("tanh: max relative error %.3g at %g\n", e, at);
    assert_true(e < 8.0 * 0x1p-23);
    assert_true(aim__tanh(0.0f) == 0.0f && aim__tanh(50.0f) == 1.0f && aim__tanh(-50.0f) == -1.0f);
    assert_true(aim__tanh(1e-20f) == 1e-20f); /* odd polynomial keeps tiny values exact */
}

static double ref_phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static void test_phi(void **state) {
    (void)state;
    double at = 0.0;
    double e = sweep(aim__phi, ref_phi, -3.0, 20.0, 0.0, &at);
    print_message("phi: max relative error %.3g at %g over [-3, 20]\n", e, at);
    assert_true(e < 2e-6);
    e = sweep(aim__phi, ref_phi, -6.0, -3.0, 0.0, &at);
    print_message("phi: max relative error %.3g at %g over [-6, -3]\n", e, at);
    assert_true(e < 1e-5);
    e = sweep(aim__phi, ref_phi, -30.0, 30.0, 1.0, &at); /* floor 1: absolute */
    print_message("phi: max absolute error %.3g at %g\n", e, at);
    assert_true(e < 1e-6);
    assert_true(aim__phi(0.0f) == 0.5f && aim__phi(40.0f) == 1.0f && aim__phi(-40.0f) >= 0.0f);
    assert_true(isnan(aim__phi(NAN)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_sigmoid),
        cmocka_unit_test(test_tanh),
        cmocka_unit_test(test_phi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
