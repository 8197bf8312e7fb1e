/* Compatibility with libaimodel 0.1: the format-version-1 buffers in
 * tests/fixtures/v1/ (written by 0.1.0, commit acb6a78; see
 * tests/fixtures/README.md and docs/FORMAT.md) still load, predict what 0.1
 * predicted, re-serialize as version 2 and resume training.
 *
 * For each of mlp, cnn and lstm, with and without Adam:
 *  1. aim_model_deserialize() succeeds with an empty message; the optimizer is
 *     there exactly for <name>_adam.bin, with 3 steps taken; the input and
 *     output sizes (784, 10) and the parameter count are the README's.
 *  2. aim_model_predict() on <name>_input.f32 against <name>_expected.f32:
 *     bit for bit when OPENBLAS_CORETYPE is SkylakeX, the kernel the fixtures
 *     were made with (cblas_sgemm's summation order depends on the kernel),
 *     otherwise within TOL_OTHER_KERNEL relative (golden_rel_error() with a
 *     floor of 1% of the largest |logit|). The test prints which comparison
 *     ran and the worst error.
 *  3. Serializing the loaded model (and optimizer) gives a version-2 buffer
 *     that loads again with the same parameter (and Adam m, v, steps) bits,
 *     predicts bit for bit what the v1-loaded model predicts (on this
 *     machine, whatever the kernel) and serializes back to the same bytes.
 *  4. The Adam fixtures: 2 more Adam steps (lr 1e-3, batches of 8 from the
 *     README's LCG with a fresh seed) from the v1-loaded model and optimizer
 *     and from their version-2 round trip give bit-identical parameters.
 *  5. The fixture cut by one byte, and with one payload byte flipped, are
 *     refused with AIM_ERR_CORRUPT_DATA and a message that says "truncated"
 *     and "checksum"; the out-pointers are left alone.
 *
 * The fixtures are found next to this source file (__FILE__, which the
 * Makefile passes as tests/test_compat_v1.c, so the test runs from the top of
 * the repository as `make test` runs it), or in $AIM_FIXTURES_V1 if set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aimodel.h"
#include "support.h"

#define HEADER 32u
#define MSG_CAP 256
#define SAMPLE 784u        /* floats per sample, every fixture model */
#define CLASSES 10u
#define INPUT_BATCH 4u     /* samples in <name>_input.f32 */
#define TRAIN_BATCH 8u     /* the fixtures' max_batch */
#define FIXTURE_STEPS 3u   /* Adam steps 0.1 took before saving */
#define RESUME_STEPS 2u
#define LEARNING_RATE 1e-3f
#define RESUME_SEED 3u     /* LCG seed of the resumed steps' data (the fixtures used 1 and 2) */
#define FIXTURE_CORETYPE "SkylakeX"
/* Under another OpenBLAS kernel the logits differ in the last bits (the
 * README measured the 0.1 library itself under Haswell, Sandybridge and
 * Prescott: 31-37 of 40 logits, about 1.2e-5 element-wise relative at most,
 * in the LSTM). The metric is therefore golden_rel_error() with a floor of 1%
 * of the largest |logit|, so a logit near 0 is judged on the output's scale:
 * measured here (this library, Haswell / Sandybridge / Prescott) at most
 * 7.8e-6 (mlp, Haswell), while the element-wise error, also printed, reaches
 * 1.06e-5 (lstm, Haswell). */
#define TOL_OTHER_KERNEL 1e-5
#define FLOOR_FRAC 1e-2

typedef struct fixture {
    const char *name;
    size_t params; /* tests/fixtures/README.md */
} fixture;

static const fixture FIXTURES[] = {{"mlp", 55050}, {"cnn", 121930}, {"lstm", 214282}};

/* The case being checked, named in every failure message. */
static char g_ctx[128];

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) fail_msg("%s: check failed: %s (line %d)", g_ctx, #cond, __LINE__); \
    } while (0)

#define CHECK_ST(call, expect)                                                          \
    do {                                                                                \
        aim_status st_ = (call), ex_ = (expect);                                        \
        if (st_ != ex_)                                                                 \
            fail_msg("%s: %s returned \"%s\", expected \"%s\" (line %d)", g_ctx, #call, \
                     aim_status_str(st_), aim_status_str(ex_), __LINE__);               \
    } while (0)

#undef CHECK_OK /* support.h's, replaced by one that names the context */
#define CHECK_OK(call) CHECK_ST(call, AIM_OK)

static void set_ctx(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
    va_end(ap);
}

/* ======================================================================== */
/* Files                                                                    */
/* ======================================================================== */

/* The fixture directory, with a trailing '/'. */
static void fixture_dir(char *out, size_t cap) {
    const char *env = getenv("AIM_FIXTURES_V1");
    if (env && *env) {
        snprintf(out, cap, "%s/", env);
        return;
    }
    const char *file = __FILE__, *slash = strrchr(file, '/');
    const int dir_len = slash ? (int)(slash - file + 1) : 0;
    snprintf(out, cap, "%.*sfixtures/v1/", dir_len, file);
}

/* Reads a whole file into malloc'd memory (*len bytes); fails the test when
 * it cannot. */
static unsigned char *read_file(const char *name, size_t *len) {
    char dir[512], path[768];
    fixture_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s (run from the top of the repository, or set AIM_FIXTURES_V1)", path);
    if (fseek(f, 0, SEEK_END) != 0) fail_msg("cannot seek in %s", path);
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) fail_msg("cannot size %s", path);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(buf);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) fail_msg("short read of %s", path);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A raw little-endian float32 file of exactly `count` floats. */
static float *read_floats(const char *name, size_t count) {
    size_t len;
    unsigned char *b = read_file(name, &len);
    if (len != count * 4) fail_msg("%s: %zu bytes, expected %zu", name, len, count * 4);
    float *f = malloc(count * sizeof *f);
    assert_non_null(f);
    for (size_t i = 0; i < count; i++) {
        const unsigned char *p = b + 4 * i;
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&f[i], &u, 4);
    }
    free(b);
    return f;
}

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ======================================================================== */
/* Models                                                                   */
/* ======================================================================== */

/* A loaded fixture: the buffer, the model, its optimizer (or NULL). */
typedef struct loaded {
    unsigned char *buf;
    size_t len;
    aim_model *m;
    aim_optimizer *o;
} loaded;

static void load(const fixture *fx, int adam, loaded *out) {
    char name[64], msg[MSG_CAP];
    snprintf(name, sizeof name, "%s%s.bin", fx->name, adam ? "_adam" : "");
    set_ctx("%s", name);
    out->buf = read_file(name, &out->len);
    CHECK(out->len > HEADER && rd_u32(out->buf + 8) == 1u); /* format version 1 */
    out->m = NULL;
    out->o = NULL;
    memset(msg, 'x', sizeof msg);
    aim_status st = aim_model_deserialize(NULL, out->buf, out->len, &out->m, &out->o, msg, sizeof msg);
    if (st != AIM_OK) fail_msg("%s: aim_model_deserialize: %s: \"%s\"", name, aim_status_str(st), msg);
    CHECK(msg[0] == '\0');
    CHECK(out->m != NULL);
    if (adam) {
        CHECK(out->o != NULL);
        CHECK(aim_optimizer_steps(out->o) == FIXTURE_STEPS);
    } else {
        CHECK(out->o == NULL);
    }
    CHECK(aim_model_input_count(out->m) == 1);
    CHECK(aim_model_output_count(out->m) == 1);
    CHECK(aim_model_input_size(out->m) == SAMPLE);
    CHECK(aim_model_output_size(out->m) == CLASSES);
    float *p;
    size_t count;
    CHECK_OK(aim_model_parameters(out->m, &p, &count));
    CHECK(count == fx->params);
}

static void unload(loaded *l) {
    aim_optimizer_free(l->o);
    aim_model_free(l->m);
    free(l->buf);
    memset(l, 0, sizeof *l);
}

/* Predicts `batch` samples into y (batch * CLASSES floats). */
static void predict(const aim_model *m, const float *x, size_t batch, float *y) {
    aim_workspace *ws = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, batch, &ws));
    aim_status st = aim_model_predict(m, ws, x, batch * SAMPLE, batch, y, batch * CLASSES);
    if (st != AIM_OK) fail_msg("%s: aim_model_predict: %s: %s", g_ctx, aim_status_str(st), aim_workspace_last_error(ws));
    aim_workspace_free(ws);
}

/* Serializes into a malloc'd buffer. */
static unsigned char *serialize(const aim_model *m, const aim_optimizer *o, size_t *len) {
    size_t need = 0, written = 0;
    CHECK_OK(aim_model_serialized_size(m, o, &need));
    unsigned char *buf = malloc(need);
    assert_non_null(buf);
    CHECK_OK(aim_model_serialize(m, o, buf, need, &written));
    CHECK(written == need);
    *len = written;
    return buf;
}

/* Number of floats of a and b (n each) whose bits differ. */
static size_t bits_differ(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

static int fixture_kernel(void) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    return ct && strcasecmp(ct, FIXTURE_CORETYPE) == 0;
}

/* ======================================================================== */
/* 1, 2: load and predict                                                   */
/* ======================================================================== */

static void test_v1_fixtures_load_and_predict(void **state) {
    (void)state;
    const int exact = fixture_kernel();
    const char *ct = getenv("OPENBLAS_CORETYPE");
    print_message("OPENBLAS_CORETYPE=%s: %s\n", ct ? ct : "(unset)",
                  exact ? "bit-identical comparison (the fixtures' kernel)"
                        : "tolerance comparison (the fixtures were made with OPENBLAS_CORETYPE=" FIXTURE_CORETYPE ")");
    double worst = 0.0;
    for (size_t f = 0; f < ARRAY_LEN(FIXTURES); f++) {
        const fixture *fx = &FIXTURES[f];
        char name[64];
        snprintf(name, sizeof name, "%s_input.f32", fx->name);
        float *x = read_floats(name, INPUT_BATCH * SAMPLE);
        snprintf(name, sizeof name, "%s_expected.f32", fx->name);
        float *want = read_floats(name, INPUT_BATCH * CLASSES);
        for (int adam = 0; adam <= 1; adam++) {
            loaded l;
            load(fx, adam, &l);
            float got[INPUT_BATCH * CLASSES];
            predict(l.m, x, INPUT_BATCH, got);
            const size_t n = ARRAY_LEN(got), differ = bits_differ(got, want, n);
            size_t where = 0;
            const double err = golden_rel_error(got, want, n, FLOOR_FRAC, &where);
            const double elem = max_rel_error(got, want, n, 1e-30, NULL); /* without the floor, for the record */
            if (err > worst) worst = err;
            print_message("    %-14s %-9s %2zu of %zu logits differ in bits, max rel err %.3g (element-wise %.3g)\n",
                          g_ctx, exact ? "exact:" : "tolerance:", differ, n, err, elem);
            if (exact && differ != 0)
                fail_msg("%s: %zu of %zu logits differ from %s_expected.f32 under the fixtures' kernel; worst at %zu: "
                         "%.9g, expected %.9g (rel err %.3g)",
                         g_ctx, differ, n, fx->name, where, (double)got[where], (double)want[where], err);
            if (!exact && !(err <= TOL_OTHER_KERNEL))
                fail_msg("%s: max rel err %.3g over %s_expected.f32 exceeds %.0e; worst at %zu: %.9g, expected %.9g",
                         g_ctx, err, fx->name, TOL_OTHER_KERNEL, where, (double)got[where], (double)want[where]);
            unload(&l);
        }
        free(x);
        free(want);
    }
    print_message("worst prediction max rel err %.3g (%s)\n", worst,
                  exact ? "bit-identical required" : "tolerance 1e-05");
}

/* ======================================================================== */
/* 3: re-serialized as version 2                                            */
/* ======================================================================== */

static void test_v1_reserializes_as_the_current_version(void **state) {
    (void)state;
    for (size_t f = 0; f < ARRAY_LEN(FIXTURES); f++) {
        const fixture *fx = &FIXTURES[f];
        char name[64];
        snprintf(name, sizeof name, "%s_input.f32", fx->name);
        float *x = read_floats(name, INPUT_BATCH * SAMPLE);
        for (int adam = 0; adam <= 1; adam++) {
            loaded l;
            load(fx, adam, &l);
            size_t len2;
            unsigned char *v2 = serialize(l.m, l.o, &len2);
            CHECK(len2 > HEADER);
            CHECK(memcmp(v2, l.buf, 8) == 0);                            /* magic */
            CHECK(rd_u32(v2 + 8) == 3u);                                 /* format version 2 */
            CHECK(rd_u32(v2 + 12) == (adam ? 1u : 0u));                  /* flags */
            CHECK(rd_u32(v2 + 12) == rd_u32(l.buf + 12));

            aim_model *m2 = NULL;
            aim_optimizer *o2 = NULL;
            char msg[MSG_CAP];
            aim_status st = aim_model_deserialize(NULL, v2, len2, &m2, &o2, msg, sizeof msg);
            if (st != AIM_OK) fail_msg("%s: the version-2 copy: %s: \"%s\"", g_ctx, aim_status_str(st), msg);
            CHECK(msg[0] == '\0');
            CHECK(aim_model_layer_count(m2) == aim_model_layer_count(l.m));

            float *p1, *p2;
            size_t n1, n2;
            CHECK_OK(aim_model_parameters(l.m, &p1, &n1));
            CHECK_OK(aim_model_parameters(m2, &p2, &n2));
            CHECK(n1 == n2 && n1 == fx->params);
            CHECK(bits_differ(p1, p2, n1) == 0);
            if (adam) {
                CHECK(o2 != NULL);
                CHECK(aim_optimizer_steps(o2) == FIXTURE_STEPS);
            } else {
                CHECK(o2 == NULL);
            }

            float y1[INPUT_BATCH * CLASSES], y2[INPUT_BATCH * CLASSES];
            predict(l.m, x, INPUT_BATCH, y1);
            predict(m2, x, INPUT_BATCH, y2);
            const size_t differ = bits_differ(y1, y2, ARRAY_LEN(y1));
            if (differ) fail_msg("%s: %zu logits of the version-2 copy differ from the v1-loaded model's", g_ctx, differ);

            /* And the copy writes the same version-2 bytes (Adam m, v and steps included). */
            size_t len3;
            unsigned char *v3 = serialize(m2, o2, &len3);
            CHECK(len3 == len2 && memcmp(v3, v2, len2) == 0);
            /* A chain in version 3 is the version-1 payload plus the graph records: an
             * input count (4 bytes) and the input's dtype (4), each layer's input list
             * (u32 count, u64 id), an LSTM's bidirectional flag (4), the output list
             * (u32 count, u64 id, f32 weight), and after the parameters the buffer count
             * and the random stream (24). The parameter count and the weights, and the
             * optimizer's kind, count, steps, config, m and v, are byte for byte the
             * fixture's. */
            const size_t layers = aim_model_layer_count(l.m);
            const size_t lstm_fields = strcmp(fx->name, "lstm") == 0 ? 4 : 0;
            CHECK(len2 == l.len + 4 + 4 + 12 * layers + lstm_fields + 16 + 24);
            const size_t opt = adam ? 4 + 8 + 8 + 4 * 4 + 2 * 4 + 8 * fx->params : 0, params = 8 + 4 * fx->params;
            CHECK(params + opt < l.len - HEADER);
            CHECK(memcmp(v2 + len2 - opt, l.buf + l.len - opt, opt) == 0);
            CHECK(memcmp(v2 + len2 - opt - 24 - params, l.buf + l.len - opt - params, params) == 0);
            print_message("    %-14s v1 %zu bytes -> v3 %zu bytes, predictions bit-identical\n", g_ctx, l.len, len2);

            free(v3);
            aim_optimizer_free(o2);
            aim_model_free(m2);
            free(v2);
            unload(&l);
        }
        free(x);
    }
}

/* ======================================================================== */
/* 4: Adam resumes identically from v1 and from its v2 copy                 */
/* ======================================================================== */

/* The README's LCG: s = s * 6364136223846793005 + 1442695040888963407; a
 * pixel is (s >> 40) * 2^-24, a label (s >> 33) % 10. */
static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005u + 1442695040888963407u;
    return *s;
}

static void train_steps(aim_model *m, aim_optimizer *o, const float *x, const int32_t *labels, size_t steps) {
    for (size_t t = 0; t < steps; t++) {
        float loss = 0.0f;
        CHECK_OK(aim_model_zero_grad(m));
        CHECK_OK(aim_model_forward(m, AIM_MODE_TRAIN, x + t * TRAIN_BATCH * SAMPLE, TRAIN_BATCH * SAMPLE, TRAIN_BATCH));
        CHECK_OK(aim_model_loss_sparse(m, 0, labels + t * TRAIN_BATCH, TRAIN_BATCH, &loss));
        CHECK(isfinite(loss));
        CHECK_OK(aim_model_backward(m, NULL, 0));
        CHECK_OK(aim_optimizer_step_model(o, m, LEARNING_RATE));
    }
}

static void test_v1_adam_resumes_like_its_v2_copy(void **state) {
    (void)state;
    static float x[RESUME_STEPS * TRAIN_BATCH * SAMPLE];
    int32_t labels[RESUME_STEPS * TRAIN_BATCH];
    uint64_t s = RESUME_SEED;
    for (size_t t = 0; t < RESUME_STEPS; t++) {
        for (size_t i = 0; i < TRAIN_BATCH * SAMPLE; i++)
            x[t * TRAIN_BATCH * SAMPLE + i] = (float)(lcg(&s) >> 40) * 0x1p-24f;
        for (size_t i = 0; i < TRAIN_BATCH; i++) labels[t * TRAIN_BATCH + i] = (int32_t)((lcg(&s) >> 33) % CLASSES);
    }
    for (size_t f = 0; f < ARRAY_LEN(FIXTURES); f++) {
        const fixture *fx = &FIXTURES[f];
        loaded l;
        load(fx, 1, &l);
        size_t len2;
        unsigned char *v2 = serialize(l.m, l.o, &len2);
        aim_model *m2 = NULL;
        aim_optimizer *o2 = NULL;
        CHECK_OK(aim_model_deserialize(NULL, v2, len2, &m2, &o2, NULL, 0));
        CHECK(o2 != NULL);

        float *p1, *p2;
        size_t n1, n2;
        CHECK_OK(aim_model_parameters(l.m, &p1, &n1));
        CHECK_OK(aim_model_parameters(m2, &p2, &n2));
        CHECK(n1 == n2);
        float *before = malloc(n1 * sizeof *before);
        assert_non_null(before);
        memcpy(before, p1, n1 * sizeof *before);

        train_steps(l.m, l.o, x, labels, RESUME_STEPS);
        train_steps(m2, o2, x, labels, RESUME_STEPS);
        CHECK(aim_optimizer_steps(l.o) == FIXTURE_STEPS + RESUME_STEPS);
        CHECK(aim_optimizer_steps(o2) == FIXTURE_STEPS + RESUME_STEPS);
        CHECK(bits_differ(p1, before, n1) > n1 / 2); /* the steps did move the weights */
        const size_t differ = bits_differ(p1, p2, n1);
        if (differ)
            fail_msg("%s: after %u more Adam steps, %zu of %zu parameters differ between the v1-loaded model and its "
                     "version-2 copy",
                     g_ctx, RESUME_STEPS, differ, n1);
        /* The moments too: both optimizers serialize to the same bytes. */
        size_t la, lb;
        unsigned char *a = serialize(l.m, l.o, &la), *b = serialize(m2, o2, &lb);
        CHECK(la == lb && memcmp(a, b, la) == 0);
        print_message("    %-14s %u more Adam steps: all %zu parameters bit-identical to the v2 copy's\n", g_ctx,
                      RESUME_STEPS, n1);
        free(a);
        free(b);
        free(before);
        aim_optimizer_free(o2);
        aim_model_free(m2);
        free(v2);
        unload(&l);
    }
}

/* ======================================================================== */
/* 5: a damaged v1 fixture is refused                                       */
/* ======================================================================== */

static int g_sentinel;
#define MODEL_SENTINEL ((aim_model *)(void *)&g_sentinel)
#define OPT_SENTINEL ((aim_optimizer *)(void *)&g_sentinel)

static void expect_refused(const unsigned char *buf, size_t len, const char *what, const char *word) {
    aim_model *m = MODEL_SENTINEL;
    aim_optimizer *o = OPT_SENTINEL;
    char msg[MSG_CAP];
    msg[0] = '\0';
    aim_status st = aim_model_deserialize(NULL, buf, len, &m, &o, msg, sizeof msg);
    if (st != AIM_ERR_CORRUPT_DATA)
        fail_msg("%s %s: returned \"%s\", expected \"%s\" (message \"%s\")", g_ctx, what, aim_status_str(st),
                 aim_status_str(AIM_ERR_CORRUPT_DATA), msg);
    CHECK(m == MODEL_SENTINEL && o == OPT_SENTINEL);
    CHECK(msg[0] != '\0');
    if (!strstr(msg, word)) fail_msg("%s %s: message \"%s\" does not say \"%s\"", g_ctx, what, msg, word);
}

static void test_damaged_v1_refused(void **state) {
    (void)state;
    for (size_t f = 0; f < ARRAY_LEN(FIXTURES); f++) {
        for (int adam = 0; adam <= 1; adam++) {
            char name[64];
            size_t len;
            snprintf(name, sizeof name, "%s%s.bin", FIXTURES[f].name, adam ? "_adam" : "");
            set_ctx("%s", name);
            unsigned char *buf = read_file(name, &len);
            CHECK(len > HEADER + 1);
            expect_refused(buf, len - 1, "cut by one byte", "truncated");
            /* A byte in the middle of the payload (among the weights). */
            const size_t at = HEADER + (len - HEADER) / 2;
            buf[at] ^= 0x01u;
            expect_refused(buf, len, "with a flipped payload byte", "checksum");
            buf[at] ^= 0x01u;
            /* And the first payload byte (the input rank). */
            buf[HEADER] ^= 0x40u;
            expect_refused(buf, len, "with its first payload byte flipped", "checksum");
            free(buf);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_fixtures_load_and_predict),
        cmocka_unit_test(test_v1_reserializes_as_the_current_version),
        cmocka_unit_test(test_v1_adam_resumes_like_its_v2_copy),
        cmocka_unit_test(test_damaged_v1_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
