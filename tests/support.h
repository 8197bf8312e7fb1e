/* Shared helpers of the cmocka suite: allocators that count and fail,
 * comparisons with a relative tolerance, deterministic random fills, a small
 * two-input, two-output graph model, the central-difference gradient checker
 * and the golden-value comparisons.
 * support.c does not call cmocka (tests/mpi/test_mpi.c links it without). */
#ifndef AIM_TEST_SUPPORT_H
#define AIM_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "aimodel.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Asserts that a libaimodel call succeeded, naming the call and the status
 * (cmocka's print_error and assert_int_equal, at the place of use). */
#define CHECK_OK(call)                                                                 \
    do {                                                                               \
        aim_status st_ = (call);                                                       \
        if (st_ != AIM_OK) print_error("%s failed: %s\n", #call, aim_status_str(st_)); \
        assert_int_equal(st_, AIM_OK);                                                 \
    } while (0)

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

/* ======================================================================== */
/* A small graph model (test_alloc.c, test_threads.c, test_determinism.c,   */
/* test_bad_input.c)                                                        */
/* ======================================================================== */

/* Two inputs, two outputs, a residual add and a concat:
 *   input 0 (GRAPH2_IN0 features)        input 1 (GRAPH2_IN1 features)
 *   L0 = dense 8 relu (input 0)
 *   L1 = dense 8 tanh (L0)
 *   L2 = add(L1, L0)                     (the residual connection)
 *   L3 = dense 4 relu (input 1)
 *   L4 = concat(L2, L3) on axis 0        (12 features)
 *   L5 = dense GRAPH2_OUT0 (L4)          output 0 (class logits), loss weight 1
 *   L6 = dense GRAPH2_OUT1 (L2)          output 1 (regression), loss weight GRAPH2_W1
 * L2 feeds two layers, so its gradient is a sum. */
#define GRAPH2_IN0 6
#define GRAPH2_IN1 3
#define GRAPH2_OUT0 4
#define GRAPH2_OUT1 2
#define GRAPH2_LAYERS 7
#define GRAPH2_W1 0.5f
#define GRAPH2_PARAMS                                                                  \
    (GRAPH2_IN0 * 8 + 8 + 8 * 8 + 8 + GRAPH2_IN1 * 4 + 4 + 12 * GRAPH2_OUT0 + GRAPH2_OUT0 + \
     8 * GRAPH2_OUT1 + GRAPH2_OUT1)

/* Builds it (not compiled) into *out. On failure returns the status, names
 * the call that failed in *failed_call (when not NULL), frees what it built
 * and leaves *out alone. */
aim_status graph2_build(const aim_allocator *allocator, aim_model **out, const char **failed_call);

/* ======================================================================== */
/* Central-difference gradient checks (test_gradcheck.c, test_conv.c,       */
/* test_lstm.c)                                                             */
/* ======================================================================== */
/* Nothing here calls cmocka, because tests/mpi/test_mpi.c links this file
 * without it: a check returns 1 when it passes and 0 with the reason written
 * to `why` otherwise, and the test fails with that reason:
 *     char why[GRADCHECK_WHY];
 *     if (!gradcheck_model(&c, &tol, ..., why, sizeof why)) fail_msg("%s", why);
 * Each test file keeps its own tolerances (with their justification), and
 * chooses its guards; the comparison, the central difference, the guards and
 * the model runner are the ones below. */

#define GRADCHECK_WHY 512 /* a good size for the `why` buffers */

/* A value passes when |a - n| <= rtol * max(|a|, |n|) + atol, where n is the
 * central difference of step h. */
typedef struct gradcheck_tol {
    double h;    /* central-difference step */
    double rtol; /* relative part of the tolerance */
    double atol; /* absolute part of the tolerance */
} gradcheck_tol;

#define GRADCHECK_NONZERO 1e-6    /* |g| above this counts as nonzero */
#define GRADCHECK_MIN_MAX 1e-3    /* a whole case must have max |g| above this */
#define GRADCHECK_ZERO_LIMIT 1e-6 /* GRADCHECK_NEAR_ZERO: max |g| at most this */

/* What one part's (one tensor's) analytic gradient must look like, besides
 * agreeing with the numeric one: the guard against passing vacuously on an
 * all-zero gradient, which is what a numeric gradient matches when the
 * forward pass ignores a parameter. */
typedef enum gradcheck_guard {
    GRADCHECK_DENSE,      /* at least half of the entries nonzero */
    GRADCHECK_SPARSE,     /* at least one entry nonzero (if there are any) */
    GRADCHECK_NEAR_ZERO,  /* the true gradient is 0: max |g| <= GRADCHECK_ZERO_LIMIT */
    GRADCHECK_EXACT_ZERO  /* the true gradient is 0 by construction: every g == 0 exactly */
} gradcheck_guard;

/* The comparison of one part. */
typedef struct gradcheck_stats {
    size_t n;           /* values compared */
    size_t mismatches;  /* values outside the tolerance (or not finite) */
    size_t first_bad;   /* index of the first mismatch */
    size_t nonzero;     /* analytic values with |a| > GRADCHECK_NONZERO */
    size_t exact_zeros; /* analytic values == 0 */
    double max_abs_a;   /* max |a| */
    double max_abs_err; /* max |a - n| */
    double max_usage;   /* max |a - n| / (rtol max(|a|,|n|) + atol); > 1 fails */
} gradcheck_stats;

/* Compares analytic `a` (float) with numeric `num` (double) value by value. */
gradcheck_stats gradcheck_compare(const float *a, const double *num, size_t n, const gradcheck_tol *tol);

/* Whether a part's analytic gradient satisfies `guard`. */
int gradcheck_guard_ok(const gradcheck_stats *s, gradcheck_guard guard, char *why, size_t why_size);

/* Whether a whole case (the largest |g| over all its parts) is clearly above
 * zero: max |g| > GRADCHECK_MIN_MAX. Always true for the two zero guards. */
int gradcheck_case_ok(const char *label, double max_abs_a, gradcheck_guard guard, char *why, size_t why_size);

/* Worst agreement seen over the parts checked with it; the tests print it. */
typedef struct gradcheck_worst {
    size_t parts;       /* parts compared */
    size_t values;      /* values compared */
    double max_abs_err; /* max |a - n| */
    double max_usage;   /* max tolerance use (1 = the limit) ... */
    char label[128];    /* ... seen in this case ... */
    char part[64];      /* ... and this part */
} gradcheck_worst;

/* Compares one part (e.g. "layer 0 weight") of the case `label` and checks
 * its guard. Records into *worst and raises *max_abs_a to the part's max |a|
 * (either may be NULL). On a mismatch, `why` gives the first bad entry. */
int gradcheck_part(const char *label, const char *part, const float *a, const double *num, size_t n,
                   const gradcheck_tol *tol, gradcheck_guard guard, gradcheck_worst *worst, double *max_abs_a,
                   char *why, size_t why_size);

/* The central difference (L(v + h) - L(v - h)) / ((v + h) - (v - h)) in the
 * float *v, where the denominator is the difference of the two floats
 * actually used, and L = f(ctx) is evaluated in double. *v is restored bit
 * for bit afterwards. gradcheck_numeric() does it for each of n values. */
typedef double (*gradcheck_fn)(void *ctx);
double gradcheck_central(float *v, double h, gradcheck_fn f, void *ctx);
void gradcheck_numeric(float *v, size_t n, double h, gradcheck_fn f, void *ctx, double *num);

/* A model case: the objective L whose gradients are checked. */
typedef enum gradcheck_objective {
    GRADCHECK_WEIGHTED_SUM, /* L = sum(output * r), inference forward; aim_model_backward(m, r, batch * out) */
    GRADCHECK_LOSS,         /* L = aim_model_loss(m, 0, loss, targets, ...), train forward; backward(m, NULL, 0) */
    GRADCHECK_LOSS_SPARSE   /* L = aim_model_loss_sparse(m, 0, labels, batch), train forward; backward(m, NULL, 0) */
} gradcheck_objective;

/* A one-input, one-output model: every count passed to the library is the
 * one these fields give (x holds batch * in floats, r and targets batch * out,
 * labels batch). */
typedef struct gradcheck_case {
    aim_model *m;           /* compiled with input_gradient */
    float *x;               /* (batch, in), perturbed in place and restored */
    size_t batch;
    size_t in;              /* aim_model_input_size() */
    size_t out;             /* aim_model_output_size() */
    gradcheck_objective obj;
    const float *r;         /* GRADCHECK_WEIGHTED_SUM: (batch, out) */
    aim_loss_kind loss;     /* GRADCHECK_LOSS */
    const float *targets;   /* GRADCHECK_LOSS: (batch, out) */
    const int32_t *labels;  /* GRADCHECK_LOSS_SPARSE: (batch) */
} gradcheck_case;

/* Analytic gradients of L: the parameters into ap (count floats, which must
 * be the model's count), the input into ax (batch * in). Also checks that
 * forward and backward leave x and r unchanged. */
int gradcheck_analytic(const gradcheck_case *c, float *ap, size_t count, float *ax, char *why, size_t why_size);

/* Both gradients of every parameter and every input value of a case. */
typedef struct gradcheck_result {
    size_t count, nx;      /* parameters, input values */
    float *ap, *ax;        /* analytic: parameters, input */
    double *num_p, *num_x; /* numeric */
} gradcheck_result;

/* Fills *r (free it with gradcheck_result_free(), also after a failure):
 * the analytic gradients, then the central differences of step h in every
 * parameter and every input value; checks that the parameters and the input
 * come back bit for bit. */
int gradcheck_run(const gradcheck_case *c, double h, gradcheck_result *r, char *why, size_t why_size);
void gradcheck_result_free(gradcheck_result *r);

/* Checks every layer's weight and bias (parts "layer L weight", "layer L
 * bias") with param_guard, then the input ("input") with input_guard, then
 * the case guard with param_guard. */
int gradcheck_layers(const gradcheck_case *c, const gradcheck_result *r, const gradcheck_tol *tol,
                     gradcheck_guard param_guard, gradcheck_guard input_guard, gradcheck_worst *worst,
                     const char *label, char *why, size_t why_size);

/* gradcheck_run() with tol->h, then gradcheck_layers(). */
int gradcheck_model(const gradcheck_case *c, const gradcheck_tol *tol, gradcheck_guard param_guard,
                    gradcheck_guard input_guard, gradcheck_worst *worst, const char *label, char *why,
                    size_t why_size);

/* ======================================================================== */
/* Golden-value comparisons (test_golden.c, test_golden_conv.c,             */
/* test_golden_lstm.c)                                                      */
/* ======================================================================== */

/* Largest |x[i]| over n values. */
double max_abs_value(const float *x, size_t n);

/* The golden metric: the largest |got - ref| / max(|ref|, floor) with the
 * floor floor_frac times the largest |ref| of the array, so an element near 0
 * is judged on the array's scale (index of the worst in *where if not NULL).
 * INFINITY when ref is all zero, so that a comparison never passes
 * vacuously. */
double golden_rel_error(const float *got, const float *ref, size_t n, double floor_frac, size_t *where);

/* One kind of golden comparison. */
typedef struct golden_kind {
    const char *name;  /* in golden_print_worst() */
    double tol;        /* largest relative error accepted */
    double floor_frac; /* see golden_rel_error() */
    double worst;      /* largest error measured so far, updated by golden_expect() */
} golden_kind;

/* Compares n values under `kind`, prints "    <what> max rel err E
 * (tolerance T)" (what padded to `width`) to stdout, and on a failure the
 * worst element to stderr. Returns whether the error is within kind->tol. */
int golden_expect(golden_kind *kind, int width, const char *what, const float *got, const float *ref, size_t n);

/* Prints "worst <name> max rel err E (tolerance T)" for each kind. */
void golden_print_worst(const golden_kind *kinds, size_t count);

#endif
