/*
 * libaimodel - data-parallel training over MPI (run by `make test-mpi`).
 * SPDX-License-Identifier: MIT
 */
/*
 * Checks the helpers of examples/mpi/mpi_dp.c, which the example
 * examples/mpi/mpi_data_parallel.c runs, on small models and fixed
 * synthetic data. For each case (an MLP with Adam, an MLP with SGD and
 * Nesterov momentum, a small CNN with Adam):
 *
 *  1. broadcast: rank 0 builds the model and optimizer and broadcasts their
 *     serialized bytes; the parameters every rank deserializes are
 *     byte-for-byte rank 0's original ones;
 *  2. identical: after STEPS steps in which each rank trains on its equal
 *     shard of each global batch and the gradients are averaged with one
 *     MPI_Allreduce, the parameters of every rank, gathered to rank 0, are
 *     bit-identical (memcmp), and so are the optimizers' step counts;
 *  3. matches single-process: rank 0 trains a copy from the same bytes on
 *     the whole global batches in one process; the distributed parameters
 *     agree with it within TOLERANCE relative. So that this cannot pass
 *     vacuously, the weights must have moved, and with more than one rank,
 *     training on rank 0's shard alone must disagree far beyond TOLERANCE.
 *
 * Prints one line per check and then "mpi: P passed, F failed"; exits 1 if
 * any check failed. Run with any number of ranks dividing GLOBAL_BATCH:
 *   mpirun -np 2 build/tests/mpi/test_mpi
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "aimodel.h"
#include "mpi_dp.h"
#include "support.h"

#define GLOBAL_BATCH 48 /* divides by 1, 2, 3, 4, 6, 8, 12, 16, 24, 48 ranks */
#define PASSES 5        /* the data set is PASSES global batches */
#define SAMPLES (GLOBAL_BATCH * PASSES)
#define STEPS 50
#define CLASSES 5
#define TOLERANCE 1e-5
/* Relative errors are taken against max(|reference|, FLOOR): a weight that
 * ends near zero is compared at the scale of the weights, not of itself. */
#define FLOOR 1e-2
#define SEED 2026u

typedef enum opt_kind { OPT_ADAM = 0, OPT_SGD_NESTEROV = 1 } opt_kind;

typedef struct test_case {
    const char *name;
    int conv;      /* 0: MLP on 32 features; 1: CNN on 1x8x8 images */
    opt_kind opt;
    float lr;
} test_case;

/* Fixed data: inputs uniform in [-1, 1), labels the argmax of a fixed
 * random linear map of the input, so there is something to learn. */
typedef struct data_set {
    size_t width; /* floats per sample */
    float *x;     /* (SAMPLES, width) */
    int32_t *y;   /* (SAMPLES) */
} data_set;

static int g_rank = 0;
static int g_ranks = 1;
static int g_passed = 0;
static int g_failed = 0;

/* Every rank records every check, so all ranks agree on the count; rank 0
 * prints. `ok` must already be the same on every rank. */
__attribute__((format(printf, 3, 4))) static void check(int ok, const char *name, const char *fmt, ...)
{
    if (ok) {
        ++g_passed;
    } else {
        ++g_failed;
    }
    if (g_rank == 0) {
        va_list ap;
        va_start(ap, fmt);
        printf("%s %s: ", ok ? "ok  " : "FAIL", name);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        fflush(stdout);
    }
}

/* Ends the whole job on an unexpected error: other ranks may be waiting in
 * a collective. */
static void die(const char *what, aim_status st, const char *detail)
{
    fprintf(stderr, "test_mpi: rank %d: %s: %s: %s\n", g_rank, what, aim_status_str(st), detail ? detail : "");
    MPI_Abort(MPI_COMM_WORLD, 2);
}

#define TRY(call, detail)                             \
    do {                                              \
        aim_status try_st_ = (call);                  \
        if (try_st_ != AIM_OK) die(#call, try_st_, (detail)); \
    } while (0)

static void make_data(const test_case *tc, data_set *d)
{
    d->width = tc->conv ? 64 : 32;
    d->x = malloc(SAMPLES * d->width * sizeof *d->x);
    d->y = malloc(SAMPLES * sizeof *d->y);
    float *w = malloc(CLASSES * d->width * sizeof *w);
    if (d->x == NULL || d->y == NULL || w == NULL) die("make_data", AIM_ERR_OUT_OF_MEMORY, "");
    fill_uniform(d->x, SAMPLES * d->width, SEED + 1, -1.0f, 1.0f);
    fill_uniform(w, CLASSES * d->width, SEED + 2, -1.0f, 1.0f);
    for (size_t i = 0; i < SAMPLES; ++i) {
        int32_t best = 0;
        float best_score = -INFINITY;
        for (int32_t c = 0; c < CLASSES; ++c) {
            float s = 0.0f;
            for (size_t j = 0; j < d->width; ++j) s += w[(size_t)c * d->width + j] * d->x[i * d->width + j];
            if (s > best_score) {
                best_score = s;
                best = c;
            }
        }
        d->y[i] = best;
    }
    free(w);
}

/* The case's model, compiled for the whole global batch (the single-process
 * reference needs it; the ranks use less). */
static aim_model *build_model(const test_case *tc)
{
    aim_model *m = NULL;
    aim_dense_config dense;
    if (!tc->conv) {
        const size_t dims[1] = {32};
        TRY(aim_model_create(NULL, 1, dims, &m), "");
        (void)aim_dense_config_init(&dense, 24, AIM_ACT_RELU);
        TRY(aim_model_add_dense(m, &dense), aim_model_last_error(m));
        (void)aim_dense_config_init(&dense, 16, AIM_ACT_TANH);
        TRY(aim_model_add_dense(m, &dense), aim_model_last_error(m));
    } else {
        const size_t dims[3] = {1, 8, 8};
        aim_conv2d_config conv;
        aim_pool2d_config pool;
        TRY(aim_model_create(NULL, 3, dims, &m), "");
        (void)aim_conv2d_config_init(&conv, 4, 3, 3, AIM_ACT_RELU);
        conv.padding = AIM_PAD_SAME;
        TRY(aim_model_add_conv2d(m, &conv), aim_model_last_error(m));
        (void)aim_pool2d_config_init(&pool, 2, 2);
        TRY(aim_model_add_max_pool2d(m, &pool), aim_model_last_error(m));
        TRY(aim_model_add_flatten(m), aim_model_last_error(m));
    }
    (void)aim_dense_config_init(&dense, CLASSES, AIM_ACT_IDENTITY);
    TRY(aim_model_add_dense(m, &dense), aim_model_last_error(m));
    aim_compile_config cc;
    (void)aim_compile_config_init(&cc);
    cc.max_batch = GLOBAL_BATCH;
    cc.seed = SEED;
    TRY(aim_model_compile(m, &cc), aim_model_last_error(m));
    return m;
}

static aim_optimizer *build_optimizer(const test_case *tc, size_t count)
{
    aim_optimizer *o = NULL;
    if (tc->opt == OPT_ADAM) {
        TRY(aim_adam_create(NULL, NULL, count, &o), "");
    } else {
        aim_sgd_config c;
        (void)aim_sgd_config_init(&c);
        c.momentum = 0.9f;
        c.nesterov = 1;
        TRY(aim_sgd_create(NULL, &c, count, &o), "");
    }
    return o;
}

/* A copy of a model and optimizer through their serialized bytes, as the
 * broadcast makes on each rank. */
static void clone(const aim_model *m, const aim_optimizer *o, aim_model **mc, aim_optimizer **oc)
{
    size_t size = 0, written = 0;
    TRY(aim_model_serialized_size(m, o, &size), "");
    void *bytes = malloc(size);
    if (bytes == NULL) die("clone", AIM_ERR_OUT_OF_MEMORY, "");
    char why[256] = "";
    TRY(aim_model_serialize(m, o, bytes, size, &written), aim_model_last_error(m));
    TRY(aim_model_deserialize(NULL, bytes, written, mc, oc, why, sizeof why), why);
    free(bytes);
}

static float *params_of(aim_model *m, size_t *count)
{
    float *p = NULL;
    TRY(aim_model_parameters(m, &p, count), aim_model_last_error(m));
    return p;
}

/*
 * STEPS training steps. Global batch s is the GLOBAL_BATCH samples at
 * order[(s % PASSES) * GLOBAL_BATCH ...], the order being reshuffled from
 * one seed at each pass, identically on every rank; this call trains on
 * samples [first, first + count) of each global batch. With `distributed`
 * the gradients are averaged across MPI_COMM_WORLD before each step.
 */
static void train(aim_model *m, aim_optimizer *o, float lr, const data_set *d, size_t first, size_t count,
                  int distributed)
{
    uint32_t order[SAMPLES];
    float *x = malloc(count * d->width * sizeof *x);
    int32_t *y = malloc(count * sizeof *y);
    aim_rng *rng = NULL;
    char err[256] = "";
    if (x == NULL || y == NULL) die("train", AIM_ERR_OUT_OF_MEMORY, "");
    TRY(aim_rng_create(NULL, SEED + 3, &rng), "");
    for (size_t s = 0; s < STEPS; ++s) {
        size_t pass_step = s % PASSES;
        if (pass_step == 0) {
            for (uint32_t i = 0; i < SAMPLES; ++i) order[i] = i;
            TRY(aim_rng_shuffle_u32(rng, order, SAMPLES), "");
        }
        for (size_t i = 0; i < count; ++i) {
            size_t src = order[pass_step * GLOBAL_BATCH + first + i];
            memcpy(x + i * d->width, d->x + src * d->width, d->width * sizeof *x);
            y[i] = d->y[src];
        }
        float loss = 0.0f;
        TRY(aim_model_zero_grad(m), aim_model_last_error(m));
        TRY(aim_model_forward(m, AIM_MODE_TRAIN, x, count * d->width, count), aim_model_last_error(m));
        TRY(aim_model_loss_sparse(m, 0, y, count, &loss), aim_model_last_error(m));
        TRY(aim_model_backward(m, NULL, 0), aim_model_last_error(m));
        if (distributed && dp_average_gradients(MPI_COMM_WORLD, m, err, sizeof err) != 0) {
            die("dp_average_gradients", AIM_ERR_INVALID_STATE, err);
        }
        TRY(aim_optimizer_step_model(o, m, lr), aim_optimizer_last_error(o));
    }
    aim_rng_free(rng);
    free(x);
    free(y);
}

/* Gathers every rank's `count` parameters to rank 0 and returns, on every
 * rank, how many ranks' bytes differ from rank 0's (0 when all are equal). */
static int ranks_differing(const float *params, size_t count)
{
    const size_t bytes = count * sizeof *params;
    unsigned char *all = NULL;
    if (g_rank == 0 && (all = malloc(bytes * (size_t)g_ranks)) == NULL) die("gather", AIM_ERR_OUT_OF_MEMORY, "");
    if (MPI_Gather(params, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        die("MPI_Gather", AIM_ERR_INVALID_STATE, "");
    }
    int differing = 0;
    if (g_rank == 0) {
        for (int r = 1; r < g_ranks; ++r) {
            if (memcmp(all, all + (size_t)r * bytes, bytes) != 0) ++differing;
        }
    }
    free(all);
    MPI_Bcast(&differing, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return differing;
}

/* max over i of |a_i - b_i| / max(|b_i|, FLOOR). */
static double rel_error(const float *a, const float *b, size_t n)
{
    return max_rel_error(a, b, n, FLOOR, NULL);
}

static void run_case(const test_case *tc)
{
    const size_t shard = GLOBAL_BATCH / (size_t)g_ranks;
    data_set d = {0};
    make_data(tc, &d);
    char name[96];
    char err[256] = "";

    /* Rank 0 builds; every rank, rank 0 included, gets the deserialized copy. */
    aim_model *built = NULL;
    aim_optimizer *built_opt = NULL;
    size_t count = 0;
    float *initial = NULL;
    if (g_rank == 0) {
        built = build_model(tc);
        float *p = params_of(built, &count);
        built_opt = build_optimizer(tc, count);
        initial = malloc(count * sizeof *initial);
        if (initial == NULL) die("run_case", AIM_ERR_OUT_OF_MEMORY, "");
        memcpy(initial, p, count * sizeof *initial);
    }
    aim_model *model = NULL;
    aim_optimizer *opt = NULL;
    if (dp_broadcast_model(MPI_COMM_WORLD, 0, built, built_opt, &model, &opt, err, sizeof err) != 0 || opt == NULL) {
        die("dp_broadcast_model", AIM_ERR_INVALID_STATE, err);
    }
    float *params = params_of(model, &count);

    /* 1. The broadcast copies are rank 0's original parameters. */
    int same_as_built = g_rank != 0 || memcmp(params, initial, count * sizeof *params) == 0;
    int all_same_as_built = 0;
    MPI_Allreduce(&same_as_built, &all_same_as_built, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int differing = ranks_differing(params, count);
    snprintf(name, sizeof name, "%s broadcast", tc->name);
    check(all_same_as_built && differing == 0, name, "%zu parameters, %d of %d ranks differ from rank 0's model",
          count, differing, g_ranks);

    /* 2. Distributed training leaves every rank with the same bits. */
    train(model, opt, tc->lr, &d, (size_t)g_rank * shard, shard, 1);
    differing = ranks_differing(params, count);
    unsigned long long steps = aim_optimizer_steps(opt), min_steps = 0, max_steps = 0;
    MPI_Allreduce(&steps, &min_steps, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&steps, &max_steps, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    snprintf(name, sizeof name, "%s identical", tc->name);
    check(differing == 0 && min_steps == STEPS && max_steps == STEPS, name,
          "after %d steps of global batch %d = %d x %zu, %d of %d ranks differ from rank 0 (memcmp); "
          "optimizer steps %llu..%llu",
          STEPS, GLOBAL_BATCH, g_ranks, shard, differing, g_ranks, min_steps, max_steps);

    /* 3. Rank 0 against single-process training on the same global batches. */
    double err_single = 0.0, moved = 0.0, err_shard_only = 0.0;
    if (g_rank == 0) {
        aim_model *single = NULL, *alone = NULL;
        aim_optimizer *single_opt = NULL, *alone_opt = NULL;
        size_t n = 0;
        clone(built, built_opt, &single, &single_opt);
        train(single, single_opt, tc->lr, &d, 0, GLOBAL_BATCH, 0);
        err_single = rel_error(params, params_of(single, &n), count);
        moved = rel_error(params, initial, count);
        clone(built, built_opt, &alone, &alone_opt);
        train(alone, alone_opt, tc->lr, &d, 0, shard, 0);
        err_shard_only = rel_error(params, params_of(alone, &n), count);
        aim_model_free(single);
        aim_model_free(alone);
        aim_optimizer_free(single_opt);
        aim_optimizer_free(alone_opt);
    }
    double figures[3] = {err_single, moved, err_shard_only};
    MPI_Bcast(figures, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    int ok = figures[0] <= TOLERANCE && figures[1] > 100.0 * TOLERANCE &&
             (g_ranks == 1 || figures[2] > 100.0 * TOLERANCE);
    snprintf(name, sizeof name, "%s matches single-process", tc->name);
    check(ok, name,
          "max relative difference %.2e (limit %.0e); weights moved %.2e from their start; "
          "rank 0's shard alone would give %.2e%s",
          figures[0], TOLERANCE, figures[1], figures[2], g_ranks == 1 ? " (one rank: not a control)" : "");

    aim_model_free(model);
    aim_optimizer_free(opt);
    aim_model_free(built);
    aim_optimizer_free(built_opt);
    free(initial);
    free(d.x);
    free(d.y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_ranks);
    if (GLOBAL_BATCH % g_ranks != 0) {
        if (g_rank == 0) {
            fprintf(stderr, "test_mpi: %d ranks do not divide the global batch %d into equal shards\n", g_ranks,
                    GLOBAL_BATCH);
        }
        MPI_Finalize();
        return 2;
    }
    if (g_rank == 0) {
        printf("test_mpi: %d rank%s, global batch %d, %d steps, libaimodel %s\n", g_ranks, g_ranks == 1 ? "" : "s",
               GLOBAL_BATCH, STEPS, aim_version());
    }
    static const test_case cases[] = {
        /* Adam at the example's rate; SGD at a rate that moves the weights as far. */
        {"mlp/adam", 0, OPT_ADAM, 1e-3f},
        {"mlp/sgd-nesterov", 0, OPT_SGD_NESTEROV, 1e-2f},
        {"cnn/adam", 1, OPT_ADAM, 1e-3f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) run_case(&cases[i]);
    if (g_rank == 0) {
        printf("mpi: %d passed, %d failed\n", g_passed, g_failed);
    }
    MPI_Finalize();
    return g_failed == 0 ? 0 : 1;
}
