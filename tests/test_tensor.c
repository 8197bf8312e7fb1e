/* Tensors: create, wrap, shape queries, fill, copy, reshape and random fills
 * give the right values, not just the right statuses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "aimodel.h"
#include "support.h"

static void test_create_is_zeroed_aligned_and_shaped(void **state) {
    (void)state;
    static const size_t dims[4] = {2, 3, 4, 5};
    for (size_t rank = 1; rank <= AIM_MAX_RANK; rank++) {
        aim_tensor *t = NULL;
        size_t count = 1;
        assert_int_equal(aim_tensor_create(NULL, rank, dims, &t), AIM_OK);
        assert_non_null(t);
        assert_int_equal(aim_tensor_rank(t), rank);
        for (size_t i = 0; i < rank; i++) {
            assert_int_equal(aim_tensor_dim(t, i), dims[i]);
            count *= dims[i];
        }
        assert_int_equal(aim_tensor_dim(t, rank), 0);
        assert_int_equal(aim_tensor_size(t), count);
        float *d = aim_tensor_data(t);
        assert_non_null(d);
        assert_ptr_equal(aim_tensor_data_const(t), d);
        assert_int_equal((uintptr_t)d % 64, 0);
        for (size_t i = 0; i < count; i++) assert_true(d[i] == 0.0f);
        /* Every element is writable (ASan/valgrind check the extent). */
        for (size_t i = 0; i < count; i++) d[i] = (float)i;
        assert_string_equal(aim_tensor_last_error(t), "");
        aim_tensor_free(t);
    }
}

static void test_create_with_allocator_frees_everything(void **state) {
    (void)state;
    const size_t dims[2] = {7, 9};
    test_alloc ta;
    aim_tensor *t = NULL;
    test_alloc_init(&ta, -1);
    assert_int_equal(aim_tensor_create(&ta.allocator, 2, dims, &t), AIM_OK);
    assert_true(ta.live >= 1);
    assert_int_equal((uintptr_t)aim_tensor_data(t) % 64, 0);
    aim_tensor_free(t);
    assert_int_equal(ta.live, 0);

    /* Out of memory at each allocation: reported, nothing leaked, out untouched. */
    long calls = ta.calls;
    for (long k = 0; k < calls; k++) {
        aim_tensor *u = (aim_tensor *)&ta;
        test_alloc_init(&ta, k);
        assert_int_equal(aim_tensor_create(&ta.allocator, 2, dims, &u), AIM_ERR_OUT_OF_MEMORY);
        assert_ptr_equal(u, (aim_tensor *)&ta);
        assert_int_equal(ta.live, 0);
    }
}

static void test_wrap_uses_caller_memory(void **state) {
    (void)state;
    float mem[24];
    const size_t dims[3] = {2, 3, 4};
    aim_tensor *t = NULL;
    test_alloc ta;
    for (int i = 0; i < 24; i++) mem[i] = (float)i;
    test_alloc_init(&ta, -1);
    assert_int_equal(aim_tensor_wrap(&ta.allocator, 3, dims, mem, ARRAY_LEN(mem), &t), AIM_OK);
    assert_ptr_equal(aim_tensor_data(t), mem);
    assert_ptr_equal(aim_tensor_data_const(t), mem);
    assert_int_equal(aim_tensor_rank(t), 3);
    assert_int_equal(aim_tensor_dim(t, 2), 4);
    assert_int_equal(aim_tensor_size(t), 24);
    /* The existing contents are kept, not zeroed. */
    for (int i = 0; i < 24; i++) assert_true(mem[i] == (float)i);
    /* Writes through the tensor land in the caller's array. */
    assert_int_equal(aim_tensor_fill(t, 2.5f), AIM_OK);
    for (int i = 0; i < 24; i++) assert_true(mem[i] == 2.5f);
    aim_tensor_free(t);
    /* The handle is freed, the caller's memory is not. */
    assert_int_equal(ta.live, 0);
    mem[23] = 1.0f;
    assert_true(mem[23] == 1.0f);
}

static void test_fill(void **state) {
    (void)state;
    const size_t dims[2] = {5, 13};
    aim_tensor *t = NULL;
    assert_int_equal(aim_tensor_create(NULL, 2, dims, &t), AIM_OK);
    assert_int_equal(aim_tensor_fill(t, -3.25f), AIM_OK);
    for (size_t i = 0; i < 65; i++) assert_true(aim_tensor_data(t)[i] == -3.25f);
    assert_int_equal(aim_tensor_fill(t, 0.0f), AIM_OK);
    for (size_t i = 0; i < 65; i++) assert_true(aim_tensor_data(t)[i] == 0.0f);
    aim_tensor_free(t);
}

static void test_copy(void **state) {
    (void)state;
    const size_t dims[2] = {3, 4};
    float mem[12];
    aim_tensor *a = NULL, *b = NULL, *w = NULL;
    assert_int_equal(aim_tensor_create(NULL, 2, dims, &a), AIM_OK);
    assert_int_equal(aim_tensor_create(NULL, 2, dims, &b), AIM_OK);
    assert_int_equal(aim_tensor_wrap(NULL, 2, dims, mem, ARRAY_LEN(mem), &w), AIM_OK);
    for (size_t i = 0; i < 12; i++) aim_tensor_data(a)[i] = (float)i * 1.5f - 4.0f;
    assert_int_equal(aim_tensor_copy(b, a), AIM_OK);
    assert_memory_equal(aim_tensor_data(b), aim_tensor_data(a), 12 * sizeof(float));
    /* Owned to wrapped and back. */
    assert_int_equal(aim_tensor_copy(w, a), AIM_OK);
    assert_memory_equal(mem, aim_tensor_data(a), sizeof mem);
    mem[5] = 99.0f;
    assert_int_equal(aim_tensor_copy(b, w), AIM_OK);
    assert_true(aim_tensor_data(b)[5] == 99.0f);
    assert_true(aim_tensor_data(a)[5] != 99.0f); /* copies, not aliases */
    /* Onto itself: allowed, nothing changes. */
    assert_int_equal(aim_tensor_copy(a, a), AIM_OK);
    for (size_t i = 0; i < 12; i++) assert_true(aim_tensor_data(a)[i] == (float)i * 1.5f - 4.0f);
    aim_tensor_free(a);
    aim_tensor_free(b);
    aim_tensor_free(w);
}

static void test_reshape_keeps_data(void **state) {
    (void)state;
    const size_t d3[3] = {2, 3, 4}, d2[2] = {4, 6}, d1[1] = {24}, d4[4] = {1, 2, 3, 4}, bad[2] = {5, 5};
    aim_tensor *t = NULL;
    assert_int_equal(aim_tensor_create(NULL, 3, d3, &t), AIM_OK);
    float *data = aim_tensor_data(t);
    for (size_t i = 0; i < 24; i++) data[i] = (float)i;

    assert_int_equal(aim_tensor_reshape(t, 2, d2), AIM_OK);
    assert_int_equal(aim_tensor_rank(t), 2);
    assert_int_equal(aim_tensor_dim(t, 0), 4);
    assert_int_equal(aim_tensor_dim(t, 1), 6);
    assert_int_equal(aim_tensor_dim(t, 2), 0);
    assert_int_equal(aim_tensor_size(t), 24);
    assert_ptr_equal(aim_tensor_data(t), data);

    assert_int_equal(aim_tensor_reshape(t, 1, d1), AIM_OK);
    assert_int_equal(aim_tensor_rank(t), 1);
    assert_int_equal(aim_tensor_dim(t, 0), 24);

    assert_int_equal(aim_tensor_reshape(t, 4, d4), AIM_OK);
    assert_int_equal(aim_tensor_rank(t), 4);
    for (size_t i = 0; i < 4; i++) assert_int_equal(aim_tensor_dim(t, i), d4[i]);

    /* A refused reshape changes nothing and says why. */
    assert_int_equal(aim_tensor_reshape(t, 2, bad), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_tensor_rank(t), 4);
    for (size_t i = 0; i < 4; i++) assert_int_equal(aim_tensor_dim(t, i), d4[i]);
    assert_true(strlen(aim_tensor_last_error(t)) > 0);
    /* The message is that of the last failed call: a later successful call leaves it. */
    char kept[256];
    snprintf(kept, sizeof kept, "%s", aim_tensor_last_error(t));
    assert_int_equal(aim_tensor_reshape(t, 4, d4), AIM_OK);
    assert_int_equal(aim_tensor_copy(t, t), AIM_OK); /* onto itself: changes nothing */
    assert_string_equal(aim_tensor_last_error(t), kept);

    assert_ptr_equal(aim_tensor_data(t), data);
    for (size_t i = 0; i < 24; i++) assert_true(data[i] == (float)i);
    aim_tensor_free(t);

    /* A wrapped tensor reshapes the same way. */
    float mem[6] = {1, 2, 3, 4, 5, 6};
    const size_t w2[2] = {2, 3}, w2t[2] = {3, 2};
    assert_int_equal(aim_tensor_wrap(NULL, 2, w2, mem, ARRAY_LEN(mem), &t), AIM_OK);
    assert_int_equal(aim_tensor_reshape(t, 2, w2t), AIM_OK);
    assert_int_equal(aim_tensor_dim(t, 0), 3);
    assert_ptr_equal(aim_tensor_data(t), mem);
    aim_tensor_free(t);
}

static void test_rand_uniform_range_and_mean(void **state) {
    (void)state;
    const size_t dims[2] = {100, 100};
    aim_tensor *t = NULL;
    aim_rng *r = NULL;
    assert_int_equal(aim_tensor_create(NULL, 2, dims, &t), AIM_OK);
    assert_int_equal(aim_rng_create(NULL, 31, &r), AIM_OK);
    assert_int_equal(aim_tensor_rand_uniform(t, r, -3.0f, 5.0f), AIM_OK);
    const float *d = aim_tensor_data_const(t);
    double sum = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < 10000; i++) {
        assert_true(d[i] >= -3.0f);
        assert_true(d[i] < 5.0f);
        sum += d[i];
        lo = fminf(lo, d[i]);
        hi = fmaxf(hi, d[i]);
    }
    assert_true(fabs(sum / 10000 - 1.0) < 0.1);
    assert_true(lo < -2.9f);
    assert_true(hi > 4.9f);

    /* low == high is allowed (only low > high is refused): every value is low. */
    assert_int_equal(aim_tensor_rand_uniform(t, r, 2.0f, 2.0f), AIM_OK);
    for (size_t i = 0; i < 10000; i++) assert_true(d[i] == 2.0f);
    aim_tensor_free(t);
    aim_rng_free(r);
}

static void test_rand_uniform_stays_below_high_in_a_narrow_range(void **state) {
    /* [low, high) with high the next float after low: low + (high-low)*u
     * rounds to high for u close to 1 unless the implementation guards it. */
    (void)state;
    const size_t dims[1] = {4096};
    aim_tensor *t = NULL;
    aim_rng *r = NULL;
    const float low = 1.0f, high = nextafterf(1.0f, 2.0f);
    assert_int_equal(aim_tensor_create(NULL, 1, dims, &t), AIM_OK);
    assert_int_equal(aim_rng_create(NULL, 32, &r), AIM_OK);
    assert_int_equal(aim_tensor_rand_uniform(t, r, low, high), AIM_OK);
    size_t below_low = 0, at_high = 0;
    for (size_t i = 0; i < 4096; i++) {
        below_low += aim_tensor_data(t)[i] < low;
        at_high += aim_tensor_data(t)[i] >= high;
    }
    aim_tensor_free(t);
    aim_rng_free(r);
    assert_int_equal(below_low, 0);
    if (at_high) fail_msg("%zu of 4096 values equal high (the range is [low, high))", at_high);
}

static void test_rand_uniform_wide_finite_range(void **state) {
    /* Finite bounds whose difference overflows float: the values must still
     * be finite and inside the range. */
    (void)state;
    const size_t dims[1] = {1000};
    aim_tensor *t = NULL;
    aim_rng *r = NULL;
    const float low = -FLT_MAX, high = FLT_MAX;
    assert_int_equal(aim_tensor_create(NULL, 1, dims, &t), AIM_OK);
    assert_int_equal(aim_rng_create(NULL, 33, &r), AIM_OK);
    aim_status s = aim_tensor_rand_uniform(t, r, low, high);
    assert_int_equal(s, AIM_OK);
    size_t bad = 0;
    for (size_t i = 0; i < 1000; i++) {
        float v = aim_tensor_data(t)[i];
        bad += !(isfinite(v) && v >= low && v < high);
    }
    aim_tensor_free(t);
    aim_rng_free(r);
    if (bad) fail_msg("%zu of 1000 values are not finite values in [-FLT_MAX, FLT_MAX)", bad);
}

static void test_rand_normal_moments(void **state) {
    (void)state;
    const size_t dims[2] = {200, 100};
    aim_tensor *t = NULL;
    aim_rng *r = NULL;
    assert_int_equal(aim_tensor_create(NULL, 2, dims, &t), AIM_OK);
    assert_int_equal(aim_rng_create(NULL, 34, &r), AIM_OK);
    assert_int_equal(aim_tensor_rand_normal(t, r, 3.0f, 2.0f), AIM_OK);
    const float *d = aim_tensor_data_const(t);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < 20000; i++) {
        assert_true(isfinite(d[i]));
        sum += d[i];
    }
    double mean = sum / 20000;
    for (size_t i = 0; i < 20000; i++) sq += (d[i] - mean) * (d[i] - mean);
    double sd = sqrt(sq / 20000);
    assert_true(fabs(mean - 3.0) < 0.1);
    assert_true(fabs(sd - 2.0) < 0.1);

    /* stddev 0 is allowed (only negative is refused): every value is the mean. */
    assert_int_equal(aim_tensor_rand_normal(t, r, -1.5f, 0.0f), AIM_OK);
    for (size_t i = 0; i < 20000; i++) assert_true(d[i] == -1.5f);
    aim_tensor_free(t);
    aim_rng_free(r);
}

static void test_refused_random_fill_leaves_data_and_rng(void **state) {
    (void)state;
    const size_t dims[1] = {8};
    aim_tensor *t = NULL;
    aim_rng *r = NULL, *twin = NULL;
    assert_int_equal(aim_tensor_create(NULL, 1, dims, &t), AIM_OK);
    assert_int_equal(aim_rng_create(NULL, 35, &r), AIM_OK);
    assert_int_equal(aim_rng_create(NULL, 35, &twin), AIM_OK);
    assert_int_equal(aim_tensor_fill(t, 4.0f), AIM_OK);
    assert_int_equal(aim_tensor_rand_uniform(t, r, 1.0f, 0.0f), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_tensor_rand_normal(t, r, 0.0f, -1.0f), AIM_ERR_INVALID_ARGUMENT);
    for (size_t i = 0; i < 8; i++) assert_true(aim_tensor_data(t)[i] == 4.0f);
    assert_true(strlen(aim_tensor_last_error(t)) > 0);
    uint64_t a = 0, b = 0;
    assert_int_equal(aim_rng_next_u64(r, &a), AIM_OK);
    assert_int_equal(aim_rng_next_u64(twin, &b), AIM_OK);
    assert_int_equal(a, b);
    aim_tensor_free(t);
    aim_rng_free(r);
    aim_rng_free(twin);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_is_zeroed_aligned_and_shaped),
        cmocka_unit_test(test_create_with_allocator_frees_everything),
        cmocka_unit_test(test_wrap_uses_caller_memory),
        cmocka_unit_test(test_fill),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_reshape_keeps_data),
        cmocka_unit_test(test_rand_uniform_range_and_mean),
        cmocka_unit_test(test_rand_uniform_stays_below_high_in_a_narrow_range),
        cmocka_unit_test(test_rand_uniform_wide_finite_range),
        cmocka_unit_test(test_rand_normal_moments),
        cmocka_unit_test(test_refused_random_fill_leaves_data_and_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
