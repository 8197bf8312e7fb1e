#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ======================================================================== */
/* A small graph model                                                      */
/* ======================================================================== */

#define G2_CALL(call)                              \
    do {                                           \
        st = (call);                               \
        if (st != AIM_OK) {                        \
            if (failed_call) *failed_call = #call; \
            goto fail;                             \
        }                                          \
    } while (0)

aim_status graph2_build(const aim_allocator *allocator, aim_model **out, const char **failed_call) {
    const size_t in0[1] = {GRAPH2_IN0}, in1[1] = {GRAPH2_IN1};
    aim_model *m = NULL;
    aim_dense_config d;
    aim_status st;
    size_t input1 = 0, skip = 0, y = 0, sum = 0, side = 0, out0 = 0, out1 = 0;
    if (!out) return AIM_ERR_INVALID_ARGUMENT;
    G2_CALL(aim_model_create(allocator, 1, in0, &m));
    G2_CALL(aim_model_add_input(m, 1, in1, &input1));
    G2_CALL(aim_dense_config_init(&d, 8, AIM_ACT_RELU));
    G2_CALL(aim_model_add_dense(m, &d));
    G2_CALL(aim_model_last_node(m, &skip));
    G2_CALL(aim_dense_config_init(&d, 8, AIM_ACT_TANH));
    G2_CALL(aim_model_add_dense(m, &d));
    G2_CALL(aim_model_last_node(m, &y));
    {
        const size_t nodes[2] = {y, skip};
        G2_CALL(aim_model_add_add(m, nodes, 2));
    }
    G2_CALL(aim_model_last_node(m, &sum));
    G2_CALL(aim_model_continue_from(m, input1));
    G2_CALL(aim_dense_config_init(&d, 4, AIM_ACT_RELU));
    G2_CALL(aim_model_add_dense(m, &d));
    G2_CALL(aim_model_last_node(m, &side));
    {
        const size_t nodes[2] = {sum, side};
        G2_CALL(aim_model_add_concat(m, nodes, 2, 0));
    }
    G2_CALL(aim_dense_config_init(&d, GRAPH2_OUT0, AIM_ACT_IDENTITY));
    G2_CALL(aim_model_add_dense(m, &d));
    G2_CALL(aim_model_last_node(m, &out0));
    G2_CALL(aim_model_continue_from(m, sum));
    G2_CALL(aim_dense_config_init(&d, GRAPH2_OUT1, AIM_ACT_IDENTITY));
    G2_CALL(aim_model_add_dense(m, &d));
    G2_CALL(aim_model_last_node(m, &out1));
    {
        const size_t nodes[2] = {out0, out1};
        const float weights[2] = {1.0f, GRAPH2_W1};
        G2_CALL(aim_model_set_outputs(m, nodes, weights, 2));
    }
    *out = m;
    return AIM_OK;
fail:
    aim_model_free(m);
    return st;
}

#undef G2_CALL

/* ======================================================================== */
/* Central-difference gradient checks                                       */
/* ======================================================================== */

static double gradcheck_allowed(const gradcheck_tol *tol, double a, double n) {
    return tol->rtol * fmax(fabs(a), fabs(n)) + tol->atol;
}

gradcheck_stats gradcheck_compare(const float *a, const double *num, size_t n, const gradcheck_tol *tol) {
    gradcheck_stats s;
    memset(&s, 0, sizeof s);
    s.n = n;
    for (size_t i = 0; i < n; i++) {
        double ai = (double)a[i];
        double ni = num[i];
        double err = fabs(ai - ni);
        double usage = err / gradcheck_allowed(tol, ai, ni);
        if (!(usage <= 1.0)) { /* also catches NaN */
            if (s.mismatches == 0) s.first_bad = i;
            s.mismatches++;
        }
        if (!(usage <= s.max_usage)) s.max_usage = isnan(usage) ? INFINITY : usage;
        if (!(err <= s.max_abs_err)) s.max_abs_err = isnan(err) ? INFINITY : err;
        if (fabs(ai) > s.max_abs_a) s.max_abs_a = fabs(ai);
        if (fabs(ai) > GRADCHECK_NONZERO) s.nonzero++;
        if (a[i] == 0.0f) s.exact_zeros++;
    }
    return s;
}

int gradcheck_guard_ok(const gradcheck_stats *s, gradcheck_guard guard, char *why, size_t why_size) {
    switch (guard) {
    case GRADCHECK_DENSE:
        if (2 * s->nonzero < s->n) {
            snprintf(why, why_size, "only %zu of %zu gradient entries are nonzero", s->nonzero, s->n);
            return 0;
        }
        return 1;
    case GRADCHECK_SPARSE:
        if (s->n > 0 && s->nonzero == 0) {
            snprintf(why, why_size, "all %zu gradient entries are zero", s->n);
            return 0;
        }
        return 1;
    case GRADCHECK_NEAR_ZERO:
        if (!(s->max_abs_a <= GRADCHECK_ZERO_LIMIT)) {
            snprintf(why, why_size, "expected an all-zero gradient, max |g| = %.3g", s->max_abs_a);
            return 0;
        }
        return 1;
    case GRADCHECK_EXACT_ZERO:
        if (s->exact_zeros != s->n) {
            snprintf(why, why_size, "must be exactly zero, %zu of %zu entries are not", s->n - s->exact_zeros,
                     s->n);
            return 0;
        }
        return 1;
    }
    snprintf(why, why_size, "unknown guard %d", (int)guard);
    return 0;
}

int gradcheck_case_ok(const char *label, double max_abs_a, gradcheck_guard guard, char *why, size_t why_size) {
    if (guard == GRADCHECK_NEAR_ZERO || guard == GRADCHECK_EXACT_ZERO || max_abs_a > GRADCHECK_MIN_MAX) return 1;
    snprintf(why, why_size, "%s: gradient (near) all zero: max |g| = %.3g", label, max_abs_a);
    return 0;
}

int gradcheck_part(const char *label, const char *part, const float *a, const double *num, size_t n,
                   const gradcheck_tol *tol, gradcheck_guard guard, gradcheck_worst *worst, double *max_abs_a,
                   char *why, size_t why_size) {
    gradcheck_stats s = gradcheck_compare(a, num, n, tol);
    if (worst) {
        worst->parts++;
        worst->values += n;
        if (s.max_abs_err > worst->max_abs_err) worst->max_abs_err = s.max_abs_err;
        if (s.max_usage > worst->max_usage) {
            worst->max_usage = s.max_usage;
            snprintf(worst->label, sizeof worst->label, "%s", label);
            snprintf(worst->part, sizeof worst->part, "%s", part);
        }
    }
    if (max_abs_a && s.max_abs_a > *max_abs_a) *max_abs_a = s.max_abs_a;
    if (s.mismatches > 0) {
        size_t i = s.first_bad;
        snprintf(why, why_size,
                 "%s, %s: %zu of %zu values disagree; first [%zu]: analytic %.8g, numeric %.8g "
                 "(|diff| %.3g, allowed %.3g)",
                 label, part, s.mismatches, n, i, (double)a[i], num[i], fabs((double)a[i] - num[i]),
                 gradcheck_allowed(tol, (double)a[i], num[i]));
        return 0;
    }
    char reason[GRADCHECK_WHY];
    if (!gradcheck_guard_ok(&s, guard, reason, sizeof reason)) {
        snprintf(why, why_size, "%s, %s: %s", label, part, reason);
        return 0;
    }
    return 1;
}

double gradcheck_central(float *v, double h, gradcheck_fn f, void *ctx) {
    const float saved = *v;
    const float plus = (float)((double)saved + h);
    const float minus = (float)((double)saved - h);
    *v = plus;
    double lp = f(ctx);
    *v = minus;
    double lm = f(ctx);
    *v = saved;
    return (lp - lm) / ((double)plus - (double)minus);
}

void gradcheck_numeric(float *v, size_t n, double h, gradcheck_fn f, void *ctx, double *num) {
    for (size_t i = 0; i < n; i++) num[i] = gradcheck_central(&v[i], h, f, ctx);
}

/* ---- model cases ---------------------------------------------------------- */

/* Inside a function with `why`, `why_size` and a `fail:` label. */
#define GC_CALL(call)                                                                                  \
    do {                                                                                               \
        aim_status st_ = (call);                                                                       \
        if (st_ != AIM_OK) {                                                                           \
            snprintf(why, why_size, "%s failed: %s", #call, aim_status_str(st_));                      \
            goto fail;                                                                                 \
        }                                                                                              \
    } while (0)
#define GC_REQUIRE(cond, ...)                                                                          \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            snprintf(why, why_size, __VA_ARGS__);                                                      \
            goto fail;                                                                                 \
        }                                                                                              \
    } while (0)

/* The objective's context: the first error of any evaluation is kept. */
typedef struct gc_objective_ctx {
    const gradcheck_case *c;
    int failed;
    char why[GRADCHECK_WHY];
} gc_objective_ctx;

static double gc_objective_fail(gc_objective_ctx *o, const char *what, aim_status st) {
    if (!o->failed) snprintf(o->why, sizeof o->why, "%s failed: %s", what, aim_status_str(st));
    o->failed = 1;
    return NAN;
}

/* L at the current parameters and input, accumulated in double. */
static double gc_objective(void *ctx) {
    gc_objective_ctx *o = ctx;
    const gradcheck_case *c = o->c;
    float loss = 0.0f;
    aim_status st;
    switch (c->obj) {
    case GRADCHECK_WEIGHTED_SUM: {
        if ((st = aim_model_forward(c->m, AIM_MODE_INFERENCE, c->x, c->batch * c->in, c->batch)) != AIM_OK)
            return gc_objective_fail(o, "aim_model_forward(AIM_MODE_INFERENCE)", st);
        const float *y = NULL;
        size_t count = 0;
        if ((st = aim_model_output(c->m, 0, &y, &count)) != AIM_OK)
            return gc_objective_fail(o, "aim_model_output", st);
        if (count != c->batch * c->out) {
            if (!o->failed)
                snprintf(o->why, sizeof o->why, "aim_model_output gives %zu values, expected %zu", count,
                         c->batch * c->out);
            o->failed = 1;
            return NAN;
        }
        double sum = 0.0;
        for (size_t i = 0; i < count; i++) sum += (double)y[i] * (double)c->r[i];
        return sum;
    }
    case GRADCHECK_LOSS:
        if ((st = aim_model_forward(c->m, AIM_MODE_TRAIN, c->x, c->batch * c->in, c->batch)) != AIM_OK)
            return gc_objective_fail(o, "aim_model_forward(AIM_MODE_TRAIN)", st);
        if ((st = aim_model_loss(c->m, 0, c->loss, c->targets, c->batch * c->out, &loss)) != AIM_OK)
            return gc_objective_fail(o, "aim_model_loss", st);
        return (double)loss;
    case GRADCHECK_LOSS_SPARSE:
        if ((st = aim_model_forward(c->m, AIM_MODE_TRAIN, c->x, c->batch * c->in, c->batch)) != AIM_OK)
            return gc_objective_fail(o, "aim_model_forward(AIM_MODE_TRAIN)", st);
        if ((st = aim_model_loss_sparse(c->m, 0, c->labels, c->batch, &loss)) != AIM_OK)
            return gc_objective_fail(o, "aim_model_loss_sparse", st);
        return (double)loss;
    }
    if (!o->failed) snprintf(o->why, sizeof o->why, "unknown objective %d", (int)c->obj);
    o->failed = 1;
    return NAN;
}

int gradcheck_analytic(const gradcheck_case *c, float *ap, size_t count, float *ax, char *why, size_t why_size) {
    int ok = 0;
    float loss = 0.0f;
    const size_t nx = c->batch * c->in, ny = c->r ? c->batch * c->out : 0;
    /* forward and backward take x and r as const: they must not change them */
    float *x_before = malloc((nx + 1) * sizeof *x_before);
    float *r_before = malloc((ny + 1) * sizeof *r_before);
    GC_REQUIRE(x_before && r_before, "out of memory");
    memcpy(x_before, c->x, nx * sizeof *x_before);
    if (ny) memcpy(r_before, c->r, ny * sizeof *r_before);
    GC_CALL(aim_model_zero_grad(c->m));
    GC_CALL(aim_model_forward(c->m, AIM_MODE_TRAIN, c->x, nx, c->batch));
    switch (c->obj) {
    case GRADCHECK_WEIGHTED_SUM:
        GC_CALL(aim_model_backward(c->m, c->r, ny));
        break;
    case GRADCHECK_LOSS:
        GC_CALL(aim_model_loss(c->m, 0, c->loss, c->targets, c->batch * c->out, &loss));
        GC_CALL(aim_model_backward(c->m, NULL, 0));
        break;
    case GRADCHECK_LOSS_SPARSE:
        GC_CALL(aim_model_loss_sparse(c->m, 0, c->labels, c->batch, &loss));
        GC_CALL(aim_model_backward(c->m, NULL, 0));
        break;
    default:
        GC_REQUIRE(0, "unknown objective %d", (int)c->obj);
    }
    float *g = NULL;
    size_t gcount = 0;
    GC_CALL(aim_model_gradients(c->m, &g, &gcount));
    GC_REQUIRE(gcount == count, "aim_model_gradients gives %zu values, expected %zu", gcount, count);
    memcpy(ap, g, count * sizeof *ap);
    const float *ig = NULL;
    size_t igcount = 0;
    GC_CALL(aim_model_input_gradient(c->m, 0, &ig, &igcount));
    GC_REQUIRE(ig != NULL, "aim_model_input_gradient gives NULL");
    GC_REQUIRE(igcount == nx, "aim_model_input_gradient gives %zu values, expected %zu", igcount, nx);
    memcpy(ax, ig, nx * sizeof *ax);
    GC_REQUIRE(memcmp(x_before, c->x, nx * sizeof *x_before) == 0, "forward or backward changed the input");
    GC_REQUIRE(ny == 0 || memcmp(r_before, c->r, ny * sizeof *r_before) == 0,
               "backward changed the output gradient");
    ok = 1;
fail:
    free(x_before);
    free(r_before);
    return ok;
}

void gradcheck_result_free(gradcheck_result *r) {
    free(r->ap);
    free(r->ax);
    free(r->num_p);
    free(r->num_x);
    memset(r, 0, sizeof *r);
}

int gradcheck_run(const gradcheck_case *c, double h, gradcheck_result *r, char *why, size_t why_size) {
    int ok = 0;
    float *p = NULL, *pb = NULL, *xb = NULL;
    memset(r, 0, sizeof *r);
    GC_CALL(aim_model_parameters(c->m, &p, &r->count));
    r->nx = c->batch * c->in;
    /* +1 keeps every allocation nonzero, for models without parameters */
    r->ap = calloc(r->count + 1, sizeof *r->ap);
    r->num_p = calloc(r->count + 1, sizeof *r->num_p);
    r->ax = calloc(r->nx + 1, sizeof *r->ax);
    r->num_x = calloc(r->nx + 1, sizeof *r->num_x);
    pb = calloc(r->count + 1, sizeof *pb);
    xb = calloc(r->nx + 1, sizeof *xb);
    GC_REQUIRE(r->ap && r->num_p && r->ax && r->num_x && pb && xb, "out of memory");
    memcpy(pb, p, r->count * sizeof *p);
    memcpy(xb, c->x, r->nx * sizeof *xb);
    if (!gradcheck_analytic(c, r->ap, r->count, r->ax, why, why_size)) goto fail;
    gc_objective_ctx o = {c, 0, ""};
    gradcheck_numeric(p, r->count, h, gc_objective, &o, r->num_p);
    gradcheck_numeric(c->x, r->nx, h, gc_objective, &o, r->num_x);
    GC_REQUIRE(!o.failed, "%s", o.why);
    /* The parameters and the input must come back bit-exactly after the perturbations. */
    GC_REQUIRE(memcmp(pb, p, r->count * sizeof *p) == 0, "the parameters were not restored bit for bit");
    GC_REQUIRE(memcmp(xb, c->x, r->nx * sizeof *xb) == 0, "the input was not restored bit for bit");
    ok = 1;
fail:
    free(pb);
    free(xb);
    return ok;
}

int gradcheck_layers(const gradcheck_case *c, const gradcheck_result *r, const gradcheck_tol *tol,
                     gradcheck_guard param_guard, gradcheck_guard input_guard, gradcheck_worst *worst,
                     const char *label, char *why, size_t why_size) {
    double max_abs_a = 0.0;
    const size_t layers = aim_model_layer_count(c->m);
    for (size_t l = 0; l < layers; l++) {
        size_t off = 0, wc = 0, bc = 0;
        char part[48];
        GC_CALL(aim_model_layer_parameters(c->m, l, &off, &wc, &bc));
        GC_REQUIRE(off + wc + bc <= r->count, "%s: layer %zu's parameters [%zu, %zu) exceed the %zu of the model",
                   label, l, off, off + wc + bc, r->count);
        if (wc > 0) {
            snprintf(part, sizeof part, "layer %zu weight", l);
            if (!gradcheck_part(label, part, r->ap + off, r->num_p + off, wc, tol, param_guard, worst, &max_abs_a,
                                why, why_size))
                return 0;
        }
        if (bc > 0) {
            snprintf(part, sizeof part, "layer %zu bias", l);
            if (!gradcheck_part(label, part, r->ap + off + wc, r->num_p + off + wc, bc, tol, param_guard, worst,
                                &max_abs_a, why, why_size))
                return 0;
        }
    }
    if (!gradcheck_part(label, "input", r->ax, r->num_x, r->nx, tol, input_guard, worst, &max_abs_a, why,
                        why_size))
        return 0;
    return gradcheck_case_ok(label, max_abs_a, param_guard, why, why_size);
fail:
    return 0;
}

int gradcheck_model(const gradcheck_case *c, const gradcheck_tol *tol, gradcheck_guard param_guard,
                    gradcheck_guard input_guard, gradcheck_worst *worst, const char *label, char *why,
                    size_t why_size) {
    gradcheck_result r;
    char reason[GRADCHECK_WHY];
    int ok = gradcheck_run(c, tol->h, &r, reason, sizeof reason);
    if (!ok)
        snprintf(why, why_size, "%s: %s", label, reason);
    else
        ok = gradcheck_layers(c, &r, tol, param_guard, input_guard, worst, label, why, why_size);
    gradcheck_result_free(&r);
    return ok;
}

#undef GC_CALL
#undef GC_REQUIRE

/* ======================================================================== */
/* Golden-value comparisons                                                 */
/* ======================================================================== */

double max_abs_value(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)x[i]);
        if (a > m) m = a;
    }
    return m;
}

double golden_rel_error(const float *got, const float *ref, size_t n, double floor_frac, size_t *where) {
    double scale = max_abs_value(ref, n);
    if (!(scale > 0.0)) {
        if (where) *where = 0;
        return INFINITY;
    }
    return max_rel_error(got, ref, n, floor_frac * scale, where);
}

/* As cmocka's print_message() and print_error() do. */
int golden_expect(golden_kind *kind, int width, const char *what, const float *got, const float *ref, size_t n) {
    size_t where = 0;
    double err = golden_rel_error(got, ref, n, kind->floor_frac, &where);
    if (err > kind->worst) kind->worst = err;
    printf("    %-*s max rel err %.3g (tolerance %.0e)\n", width, what, err, kind->tol);
    fflush(stdout);
    if (err <= kind->tol) return 1;
    if (n == 0 || !(max_abs_value(ref, n) > 0.0))
        fprintf(stderr, "%s: the reference is all zero (or empty): the comparison would be vacuous\n", what);
    else
        fprintf(stderr, "%s: element %zu is %.9g, PyTorch gives %.9g\n", what, where, (double)got[where],
                (double)ref[where]);
    fflush(stderr);
    return 0;
}

void golden_print_worst(const golden_kind *kinds, size_t count) {
    for (size_t k = 0; k < count; k++)
        printf("worst %-13s max rel err %.3g (tolerance %.0e)\n", kinds[k].name, kinds[k].worst, kinds[k].tol);
    fflush(stdout);
}
