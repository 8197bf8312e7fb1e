/*
 * Incremental inference (aim_model_predict_step): one position at a time
 * against a full aim_model_predict over the prefix (within 1e-5 of the
 * position's largest output: the two sum in different orders), on small GPT-like graphs
 * (ids -> embedding -> positional embedding -> pre-norm blocks -> linear) and
 * a float-input model; the calls' refusals; the workspace's step memory
 * under failing allocations; several threads generating from one model.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aimodel.h"
#include "support.h"

#define V 13 /* vocabulary */

typedef struct gpt_opts {
    size_t T, E, heads, blocks, ffn;
    float dropout;
    int causal;
} gpt_opts;

/* ids (T) -> Embedding(V, E) -> + wpe(P = T + 3) -> blocks -> LN -> Linear(E, V). */
static aim_status build_gpt(const aim_allocator *a, const gpt_opts *o, size_t max_batch, uint64_t seed,
                            aim_model **out) {
    aim_model *m = NULL;
    const size_t dims[1] = {o->T};
    aim_status st = aim_model_create(a, 1, dims, &m);
    if (st != AIM_OK) return st;
    aim_embedding_config ec;
    aim_layer_norm_config ln;
    aim_attention_config ac;
    aim_dense_config up, down, head;
    size_t x = 0, y = 0;
    aim_embedding_config_init(&ec, V, o->E);
    aim_layer_norm_config_init(&ln);
    aim_attention_config_init(&ac, o->heads);
    ac.causal = o->causal;
    ac.dropout = o->dropout;
    aim_dense_config_init(&up, o->ffn, AIM_ACT_GELU);
    aim_dense_config_init(&down, o->E, AIM_ACT_IDENTITY);
    aim_dense_config_init(&head, V, AIM_ACT_IDENTITY);
    if ((st = aim_model_set_input_dtype(m, 0, AIM_DTYPE_INT32)) != AIM_OK ||
        (st = aim_model_add_embedding(m, &ec)) != AIM_OK ||
        (st = aim_model_add_positional_embedding(m, o->T + 3)) != AIM_OK || (st = aim_model_last_node(m, &x)) != AIM_OK)
        goto fail;
    for (size_t b = 0; b < o->blocks; b++) {
        size_t pair[2];
        if ((st = aim_model_add_layer_norm(m, &ln)) != AIM_OK || (st = aim_model_add_attention(m, &ac)) != AIM_OK ||
            (st = aim_model_last_node(m, &y)) != AIM_OK)
            goto fail;
        pair[0] = x;
        pair[1] = y;
        if ((st = aim_model_add_add(m, pair, 2)) != AIM_OK || (st = aim_model_last_node(m, &x)) != AIM_OK ||
            (st = aim_model_add_layer_norm(m, &ln)) != AIM_OK || (st = aim_model_add_linear(m, &up)) != AIM_OK ||
            (st = aim_model_add_dropout(m, o->dropout)) != AIM_OK || (st = aim_model_add_linear(m, &down)) != AIM_OK ||
            (st = aim_model_last_node(m, &y)) != AIM_OK)
            goto fail;
        pair[0] = x;
        pair[1] = y;
        if ((st = aim_model_add_add(m, pair, 2)) != AIM_OK || (st = aim_model_last_node(m, &x)) != AIM_OK) goto fail;
    }
    if ((st = aim_model_add_layer_norm(m, &ln)) != AIM_OK || (st = aim_model_add_linear(m, &head)) != AIM_OK) goto fail;
    aim_compile_config cc;
    aim_compile_config_init(&cc);
    cc.max_batch = max_batch;
    cc.seed = seed;
    if ((st = aim_model_compile(m, &cc)) != AIM_OK) goto fail;
    *out = m;
    return AIM_OK;
fail:
    aim_model_free(m);
    return st;
}

/* Biases and LN parameters start at 0 and 1: spread every parameter so the
 * comparison exercises them. */
static void perturb(aim_model *m, uint64_t seed) {
    float *p;
    size_t n;
    CHECK_OK(aim_model_parameters(m, &p, &n));
    float *r = malloc(n * sizeof *r);
    assert_non_null(r);
    fill_uniform(r, n, seed, -0.1f, 0.1f);
    for (size_t i = 0; i < n; i++) p[i] += r[i];
    free(r);
}

static void fill_ids(int32_t *ids, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % V);
    }
}

/* Steps position by position against full predicts over the prefix (the
 * positions after it are filler: causal attention never reads them). */
static double step_vs_full(const gpt_opts *o, size_t batch) {
    aim_model *m = NULL;
    CHECK_OK(build_gpt(NULL, o, 4, 7, &m));
    perturb(m, 11);
    aim_workspace *w = NULL, *wf = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, 4, &w));
    CHECK_OK(aim_workspace_create(m, NULL, 4, &wf));
    const size_t T = o->T;
    int32_t *ids = malloc(batch * T * sizeof *ids), *row = malloc(batch * sizeof *row);
    float *full = malloc(batch * T * V * sizeof *full), *step = malloc(batch * V * sizeof *step);
    float *want = malloc(batch * V * sizeof *want);
    assert_true(ids && row && full && step && want);
    fill_ids(ids, batch * T, 3);
    double worst = 0.0;
    for (int round = 0; round < 2; round++) { /* the second after a reset: the same outputs */
        size_t pos = 99;
        CHECK_OK(aim_workspace_step_position(w, &pos));
        assert_int_equal(pos, 0);
        for (size_t p = 0; p < T; p++) {
            for (size_t b = 0; b < batch; b++) row[b] = ids[b * T + p];
            CHECK_OK(aim_model_predict_step_ids(m, w, row, batch, batch, step, batch * V));
            CHECK_OK(aim_model_predict_ids(m, wf, ids, batch * T, batch, full, batch * T * V));
            for (size_t b = 0; b < batch; b++) memcpy(want + b * V, full + (b * T + p) * V, V * sizeof(float));
            /* normwise: each error against the largest logit of the position */
            double big = 0.0;
            for (size_t i = 0; i < batch * V; i++) big = fabs(want[i]) > big ? fabs(want[i]) : big;
            const double e = max_rel_error(step, want, batch * V, big, NULL);
            worst = e > worst ? e : worst;
        }
        CHECK_OK(aim_workspace_step_position(w, &pos));
        assert_int_equal(pos, T);
        /* A step past the context is refused and changes nothing. */
        assert_int_equal(aim_model_predict_step_ids(m, w, row, batch, batch, step, batch * V), AIM_ERR_INVALID_STATE);
        assert_non_null(strstr(aim_workspace_last_error(w), "reset"));
        CHECK_OK(aim_workspace_reset_steps(w));
    }
    free(ids);
    free(row);
    free(full);
    free(step);
    free(want);
    aim_workspace_free(w);
    aim_workspace_free(wf);
    aim_model_free(m);
    return worst;
}

static void steps_match_full_predicts(void **state) {
    (void)state;
    const gpt_opts cases[] = {
        {8, 12, 3, 2, 24, 0.0f, 1}, /* E not a multiple of 8 */
        {6, 16, 4, 1, 32, 0.1f, 1}, /* dropout: identity in inference */
        {5, 8, 1, 1, 16, 0.0f, 1},
        {66, 8, 2, 1, 16, 0.0f, 1}, /* the full forward's causal products in blocks */
    };
    for (size_t c = 0; c < ARRAY_LEN(cases); c++)
        for (size_t batch = 1; batch <= 3; batch += 2) {
            const double e = step_vs_full(&cases[c], batch);
            if (!(e <= 1e-5)) print_error("case %zu batch %zu: worst relative error %g\n", c, batch, e);
            assert_true(e <= 1e-5);
        }
}

/* A float input: (T, F) -> linear -> causal attention -> linear. */
static void float_input_steps(void **state) {
    (void)state;
    const size_t T = 7, F = 5, E = 8, O = 3;
    aim_model *m = NULL;
    const size_t dims[2] = {T, F};
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    aim_dense_config lc, oc;
    aim_attention_config ac;
    aim_dense_config_init(&lc, E, AIM_ACT_TANH);
    aim_dense_config_init(&oc, O, AIM_ACT_IDENTITY);
    aim_attention_config_init(&ac, 2);
    ac.causal = 1;
    CHECK_OK(aim_model_add_linear(m, &lc));
    CHECK_OK(aim_model_add_attention(m, &ac));
    CHECK_OK(aim_model_add_linear(m, &oc));
    aim_compile_config cc;
    aim_compile_config_init(&cc);
    cc.max_batch = 2;
    CHECK_OK(aim_model_compile(m, &cc));
    perturb(m, 5);
    aim_workspace *w = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, 2, &w));
    float x[2 * 7 * 5], full[2 * 7 * 3], row[2 * 5], out[2 * 3], want[2 * 3];
    fill_uniform(x, ARRAY_LEN(x), 9, -1.0f, 1.0f);
    CHECK_OK(aim_model_predict(m, w, x, ARRAY_LEN(x), 2, full, ARRAY_LEN(full)));
    /* An ids call on a float input is refused. */
    const int32_t bad[2] = {0, 0};
    assert_int_equal(aim_model_predict_step_ids(m, w, bad, 2, 2, out, 6), AIM_ERR_INVALID_ARGUMENT);
    for (size_t p = 0; p < T; p++) {
        for (size_t b = 0; b < 2; b++) {
            memcpy(row + b * F, x + (b * T + p) * F, F * sizeof(float));
            memcpy(want + b * O, full + (b * T + p) * O, O * sizeof(float));
        }
        /* predict between steps does not disturb the sequences */
        CHECK_OK(aim_model_predict(m, w, x, ARRAY_LEN(x), 2, full, ARRAY_LEN(full)));
        CHECK_OK(aim_model_predict_step(m, w, row, 2 * F, 2, out, 2 * O));
        double big = 0.0;
        for (size_t i = 0; i < 2 * O; i++) big = fabs(want[i]) > big ? fabs(want[i]) : big;
        assert_true(max_rel_error(out, want, 2 * O, big, NULL) <= 1e-5);
    }
    aim_workspace_free(w);
    aim_model_free(m);
}

static void step_refusals(void **state) {
    (void)state;
    const gpt_opts o = {6, 8, 2, 1, 16, 0.0f, 1};
    aim_model *m = NULL;
    CHECK_OK(build_gpt(NULL, &o, 3, 1, &m));
    aim_workspace *w = NULL;
    CHECK_OK(aim_workspace_create(m, NULL, 3, &w));
    int32_t ids[3] = {1, 2, 3};
    float out[3 * V];
    assert_int_equal(aim_model_predict_step_ids(NULL, w, ids, 1, 1, out, V), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_predict_step_ids(m, NULL, ids, 1, 1, out, V), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_predict_step_ids(m, w, NULL, 1, 1, out, V), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_predict_step_ids(m, w, ids, 1, 0, out, V), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_model_predict_step_ids(m, w, ids, 1, 4, out, 4 * V), AIM_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(aim_workspace_last_error(w), "max_batch"));
    /* counts one off either way */
    assert_int_equal(aim_model_predict_step_ids(m, w, ids, 2, 1, out, V), AIM_ERR_SHAPE_MISMATCH);
    assert_int_equal(aim_model_predict_step_ids(m, w, ids, 1, 1, out, V + 1), AIM_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(aim_workspace_last_error(w), "one position"));
    /* a float call on ids */
    assert_int_equal(aim_model_predict_step(m, w, out, 1, 1, out, V), AIM_ERR_INVALID_ARGUMENT);
    /* an id outside the table, named, and nothing taken */
    int32_t wrong = V;
    assert_int_equal(aim_model_predict_step_ids(m, w, &wrong, 1, 1, out, V), AIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(aim_workspace_last_error(w), "outside"));
    size_t pos = 9;
    CHECK_OK(aim_workspace_step_position(w, &pos));
    assert_int_equal(pos, 0);
    /* the batch is fixed once a sequence started */
    CHECK_OK(aim_model_predict_step_ids(m, w, ids, 2, 2, out, 2 * V));
    assert_int_equal(aim_model_predict_step_ids(m, w, ids, 3, 3, out, 3 * V), AIM_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(aim_workspace_last_error(w), "started with batch 2"));
    CHECK_OK(aim_workspace_step_position(w, &pos));
    assert_int_equal(pos, 1);
    assert_int_equal(aim_workspace_step_position(NULL, &pos), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_workspace_step_position(w, NULL), AIM_ERR_INVALID_ARGUMENT);
    assert_int_equal(aim_workspace_reset_steps(NULL), AIM_ERR_INVALID_ARGUMENT);
    CHECK_OK(aim_workspace_reset_steps(w));
    CHECK_OK(aim_model_predict_step_ids(m, w, ids, 3, 3, out, 3 * V));
    aim_workspace_free(w);
    aim_model_free(m);

    /* Non-causal attention cannot step: the message names the layer. */
    const gpt_opts nc = {6, 8, 2, 1, 16, 0.0f, 0};
    CHECK_OK(build_gpt(NULL, &nc, 2, 1, &m));
    CHECK_OK(aim_workspace_create(m, NULL, 2, &w));
    assert_int_equal(aim_model_predict_step_ids(m, w, ids, 1, 1, out, V), AIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(aim_workspace_last_error(w), "(attention)"));
    aim_workspace_free(w);
    aim_model_free(m);

    /* Nor a dense layer that flattens time. */
    const size_t dims[2] = {4, 3};
    CHECK_OK(aim_model_create(NULL, 2, dims, &m));
    aim_dense_config dc;
    aim_dense_config_init(&dc, 2, AIM_ACT_IDENTITY);
    CHECK_OK(aim_model_add_dense(m, &dc));
    CHECK_OK(aim_model_compile(m, NULL));
    CHECK_OK(aim_workspace_create(m, NULL, 1, &w));
    float x[3] = {0}, y[2];
    assert_int_equal(aim_model_predict_step(m, w, x, 3, 1, y, 2), AIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(aim_workspace_last_error(w), "layer 0 (dense)"));
    aim_workspace_free(w);
    aim_model_free(m);
}

/* A workspace made for one model, stepped with another of other shapes. */
static void step_with_another_model(void **state) {
    (void)state;
    const gpt_opts a = {6, 8, 2, 1, 16, 0.0f, 1}, b = {6, 8, 2, 2, 16, 0.0f, 1};
    aim_model *ma = NULL, *mb = NULL;
    CHECK_OK(build_gpt(NULL, &a, 1, 1, &ma));
    CHECK_OK(build_gpt(NULL, &b, 1, 1, &mb));
    aim_workspace *w = NULL;
    CHECK_OK(aim_workspace_create(ma, NULL, 1, &w));
    int32_t id = 1;
    float out[V];
    assert_int_equal(aim_model_predict_step_ids(mb, w, &id, 1, 1, out, V), AIM_ERR_SHAPE_MISMATCH);
    assert_non_null(strstr(aim_workspace_last_error(w), "another model"));
    CHECK_OK(aim_model_predict_step_ids(ma, w, &id, 1, 1, out, V));
    /* The same sizes with non-causal attention: the model given decides, so
     * it is refused (not run with the first model's configuration). */
    const gpt_opts c = {6, 8, 2, 1, 16, 0.0f, 0};
    aim_model *mc = NULL;
    CHECK_OK(build_gpt(NULL, &c, 1, 1, &mc));
    CHECK_OK(aim_workspace_reset_steps(w));
    assert_int_equal(aim_model_predict_step_ids(mc, w, &id, 1, 1, out, V), AIM_ERR_UNSUPPORTED);
    assert_non_null(strstr(aim_workspace_last_error(w), "(attention)"));
    /* and a model of the same architecture (a copy of the weights' shapes) steps */
    aim_model *md = NULL;
    CHECK_OK(build_gpt(NULL, &a, 1, 9, &md));
    CHECK_OK(aim_model_predict_step_ids(md, w, &id, 1, 1, out, V));
    aim_workspace_free(w);
    aim_model_free(ma);
    aim_model_free(mb);
    aim_model_free(mc);
    aim_model_free(md);
}

/* aim_workspace_create of a model that steps, failing its k-th allocation:
 * refused cleanly, nothing leaks, and it then succeeds. */
static void step_memory_allocation_sweep(void **state) {
    (void)state;
    const gpt_opts o = {6, 8, 2, 1, 16, 0.0f, 1};
    aim_model *m = NULL;
    CHECK_OK(build_gpt(NULL, &o, 2, 1, &m));
    size_t bytes = 0;
    CHECK_OK(aim_workspace_size(m, 2, &bytes));
    long k = 0;
    for (;; k++) {
        test_alloc ta;
        test_alloc_init(&ta, k);
        aim_workspace *w = NULL;
        aim_status st = aim_workspace_create(m, &ta.allocator, 2, &w);
        if (st == AIM_OK) {
            assert_int_equal(ta.failures, 0);
            /* the reported size covers what was taken (the blocks' sum, give or take alignment) */
            int32_t id = 2;
            float out[V];
            CHECK_OK(aim_model_predict_step_ids(m, w, &id, 1, 1, out, V));
            aim_workspace_free(w);
            assert_int_equal(ta.live, 0);
            break;
        }
        assert_int_equal(st, AIM_ERR_OUT_OF_MEMORY);
        assert_null(w);
        assert_int_equal(ta.live, 0);
    }
    assert_true(k >= 3); /* the workspace, its arena and its step memory */
    aim_model_free(m);
}

/* Several threads generate from one model, each with its own workspace:
 * each thread's outputs equal a single-threaded run's (and TSan sees no race). */
#define GEN_THREADS 4
#define GEN_STEPS 8
typedef struct gen_job {
    const aim_model *m;
    int32_t first;
    float out[GEN_STEPS * V];
    aim_status st;
} gen_job;

/* Greedy generation: each step feeds the argmax of the previous logits. */
static aim_status generate(const aim_model *m, int32_t first, float *out) {
    aim_workspace *w = NULL;
    aim_status st = aim_workspace_create(m, NULL, 1, &w);
    if (st != AIM_OK) return st;
    int32_t id = first;
    for (size_t p = 0; p < GEN_STEPS && st == AIM_OK; p++) {
        st = aim_model_predict_step_ids(m, w, &id, 1, 1, out + p * V, V);
        size_t best = 0;
        for (size_t j = 1; j < V; j++) best = out[p * V + j] > out[p * V + best] ? j : best;
        id = (int32_t)best;
    }
    aim_workspace_free(w);
    return st;
}

static void *gen_thread(void *arg) {
    gen_job *j = arg;
    j->st = generate(j->m, j->first, j->out);
    return NULL;
}

static void threads_generate_from_one_model(void **state) {
    (void)state;
    const gpt_opts o = {GEN_STEPS, 8, 2, 2, 16, 0.0f, 1};
    aim_model *m = NULL;
    CHECK_OK(build_gpt(NULL, &o, 1, 3, &m));
    perturb(m, 2);
    static gen_job jobs[GEN_THREADS];
    pthread_t th[GEN_THREADS];
    for (int t = 0; t < GEN_THREADS; t++) {
        jobs[t].m = m;
        jobs[t].first = (int32_t)(t % 3);
        assert_int_equal(pthread_create(&th[t], NULL, gen_thread, &jobs[t]), 0);
    }
    for (int t = 0; t < GEN_THREADS; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    float ref[GEN_STEPS * V];
    for (int t = 0; t < GEN_THREADS; t++) {
        assert_int_equal(jobs[t].st, AIM_OK);
        CHECK_OK(generate(m, jobs[t].first, ref));
        assert_memory_equal(jobs[t].out, ref, sizeof ref);
    }
    aim_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(steps_match_full_predicts),
        cmocka_unit_test(float_input_steps),
        cmocka_unit_test(step_refusals),
        cmocka_unit_test(step_with_another_model),
        cmocka_unit_test(step_memory_allocation_sweep),
        cmocka_unit_test(threads_generate_from_one_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
