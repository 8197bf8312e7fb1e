/*
 * libaimodel example - synchronous data-parallel training over MPI.
 * SPDX-License-Identifier: MIT
 */
/*
 * The seed MLP (784-64-64-10) or CNN of Fashion-MNIST, trained by R
 * processes as one:
 *
 *  1. rank 0 builds and compiles the model and its Adam optimizer and
 *     broadcasts their serialized bytes; every rank deserializes them, so all
 *     start from the same bits (dp_broadcast_model);
 *  2. every rank loads the data and draws the same shuffled order of global
 *     batches of G = --batch samples (same seed on every rank); rank r trains
 *     on samples [r*G/R, (r+1)*G/R) of each, so G must divide by R, and the
 *     last incomplete global batch of an epoch is dropped;
 *  3. each step, every rank computes the mean-loss gradient of its shard;
 *     one MPI_Allreduce sums the gradient buffers and each rank divides by R
 *     (dp_average_gradients): the mean of equal-shard means is the mean over
 *     the global batch, so this is the gradient single-process training
 *     would compute on the whole global batch, up to summation order;
 *  4. every rank applies the same Adam step to the same bits, so the
 *     parameters stay bit-identical across ranks (checked by a hash at the
 *     end of every epoch);
 *  5. training loss and accuracy are summed across ranks once per epoch,
 *     validation and test are evaluated in slices across ranks, and rank 0
 *     prints them, the throughput, and a RESULT line with ranks=R.
 *
 * With one rank this is plain mini-batch training on the same batches as
 * examples/mlp_classifier.c (same seeds), except for the dropped tail.
 *
 * Run:  mpirun -np 2 build/examples/mpi/mpi_data_parallel [--model cnn] ...
 * See docs/DISTRIBUTED.md for several machines and measured scaling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"
#include "mpi_dp.h"

#define LEARNING_RATE 1e-3f

typedef enum model_kind { MODEL_MLP = 0, MODEL_CNN = 1 } model_kind;

/* The seed MLP of examples/mlp_classifier.c or CNN of examples/cnn_classifier.c,
 * compiled for `max_batch` samples with weights drawn from `seed`. */
static aim_status build_model(model_kind kind, size_t max_batch, uint64_t seed, aim_model **out)
{
    aim_model *m = NULL;
    aim_status st = AIM_OK;
    aim_dense_config dense;
    if (kind == MODEL_MLP) {
        const size_t dims[1] = {FM_PIXELS};
        st = aim_model_create(NULL, 1, dims, &m);
        const size_t units[3] = {64, 64, FM_CLASSES};
        for (size_t i = 0; i < 3 && st == AIM_OK; ++i) {
            (void)aim_dense_config_init(&dense, units[i], i < 2 ? AIM_ACT_RELU : AIM_ACT_IDENTITY);
            st = aim_model_add_dense(m, &dense);
        }
    } else {
        const size_t dims[3] = {1, FM_ROWS, FM_COLS};
        aim_conv2d_config conv;
        aim_pool2d_config pool;
        (void)aim_pool2d_config_init(&pool, 2, 2);
        st = aim_model_create(NULL, 3, dims, &m);
        if (st == AIM_OK) {
            (void)aim_conv2d_config_init(&conv, 32, 3, 3, AIM_ACT_RELU);
            st = aim_model_add_conv2d(m, &conv);
        }
        if (st == AIM_OK) st = aim_model_add_max_pool2d(m, &pool);
        if (st == AIM_OK) {
            (void)aim_conv2d_config_init(&conv, 64, 3, 3, AIM_ACT_RELU);
            st = aim_model_add_conv2d(m, &conv);
        }
        if (st == AIM_OK) st = aim_model_add_max_pool2d(m, &pool);
        if (st == AIM_OK) st = aim_model_add_flatten(m);
        if (st == AIM_OK) {
            (void)aim_dense_config_init(&dense, 64, AIM_ACT_RELU);
            st = aim_model_add_dense(m, &dense);
        }
        if (st == AIM_OK) {
            (void)aim_dense_config_init(&dense, FM_CLASSES, AIM_ACT_IDENTITY);
            st = aim_model_add_dense(m, &dense);
        }
    }
    if (st == AIM_OK) {
        aim_compile_config compile;
        (void)aim_compile_config_init(&compile);
        compile.max_batch = max_batch;
        compile.seed = seed;
        st = aim_model_compile(m, &compile);
    }
    if (st != AIM_OK) {
        ex_report_failure("build_model", st, aim_model_last_error(m));
        aim_model_free(m);
        return st;
    }
    *out = m;
    return AIM_OK;
}

/* Copies `count` rows, those at order[first .. first+count), into x / labels. */
static void gather_rows(const fm_set *set, const uint32_t *order, size_t first, size_t count, float *x,
                        int32_t *labels)
{
    for (size_t i = 0; i < count; ++i) {
        size_t src = order[first + i];
        memcpy(x + i * FM_PIXELS, set->images + src * FM_PIXELS, FM_PIXELS * sizeof *x);
        labels[i] = set->labels[src];
    }
}

/* Accuracy over all of `set`: each rank evaluates its slice
 * [rank*n/R, (rank+1)*n/R) and the correct counts are summed on every rank. */
static int sliced_accuracy(const aim_model *model, aim_workspace *workspace, const fm_set *set, float *scratch,
                           size_t scratch_count, int rank, int ranks, double *accuracy)
{
    size_t lo = set->count * (size_t)rank / (size_t)ranks;
    size_t hi = set->count * (size_t)(rank + 1) / (size_t)ranks;
    double correct = 0.0;
    if (hi > lo) {
        const ex_rows rows = {.x = set->images + lo * FM_PIXELS, .x_width = FM_PIXELS,
                              .labels = set->labels + lo, .count = hi - lo};
        double slice = 0.0;
        aim_status st = ex_accuracy(model, workspace, EX_EVAL_BATCH, &rows, 0.5f, scratch, scratch_count, &slice);
        if (st != AIM_OK) {
            ex_report_failure("ex_accuracy", st, aim_workspace_last_error(workspace));
            return -1;
        }
        correct = slice * (double)(hi - lo); /* an exact integer again */
    }
    double total = 0.0;
    if (MPI_Allreduce(&correct, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) {
        return -1;
    }
    *accuracy = total / (double)set->count;
    return 0;
}

int main(int argc, char **argv)
{
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "mpi_data_parallel: MPI_Init failed\n");
        return 1;
    }
    int rank = 0;
    int ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    /* Rank 0 reports; the others keep only stderr, for errors. */
    if (rank != 0 && freopen("/dev/null", "w", stdout) == NULL) {
        fprintf(stderr, "mpi_data_parallel: rank %d cannot silence stdout\n", rank);
    }

    const ex_program program = {
        .name = "mpi_data_parallel",
        .summary = "Data-parallel training of the seed MLP or CNN on Fashion-MNIST over MPI "
                   "(--batch is the global batch).",
        .options = EX_OPT_DATA | EX_OPT_EPOCHS | EX_OPT_BATCH | EX_OPT_SEED,
        .extra_help = "  --model NAME  mlp (784-64-64-10, 5 epochs) or cnn (conv32-pool-conv64-pool-64-10, "
                      "3 epochs); default mlp\n"
                      "  --steps N     stop after N global steps (overrides --epochs; for timing)\n",
    };
    ex_options opt;
    ex_options_default(&opt);
    const char *model_name = "mlp";
    const char *steps_text = NULL;
    size_t max_steps = 0;
    if (ex_take_option(&argc, argv, program.name, "--model", &model_name) < 0 ||
        ex_take_option(&argc, argv, program.name, "--steps", &steps_text) < 0) {
        MPI_Finalize();
        return EX_EXIT_USAGE;
    }
    model_kind kind = MODEL_MLP;
    if (strcmp(model_name, "cnn") == 0) {
        kind = MODEL_CNN;
        opt.epochs = 3;
    } else if (strcmp(model_name, "mlp") != 0) {
        if (rank == 0) fprintf(stderr, "%s: --model must be mlp or cnn (try --help)\n", program.name);
        MPI_Finalize();
        return EX_EXIT_USAGE;
    }
    if (steps_text != NULL && ex_parse_size(steps_text, 1, (size_t)1 << 40, &max_steps) != 0) {
        if (rank == 0) fprintf(stderr, "%s: invalid value '%s' for --steps (try --help)\n", program.name, steps_text);
        MPI_Finalize();
        return EX_EXIT_USAGE;
    }
    /* Every rank parses the same argv, so every rank takes the same exit here. */
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: MPI_Finalize(); return 0;
    default: MPI_Finalize(); return EX_EXIT_USAGE;
    }
    if (opt.batch % (size_t)ranks != 0) {
        if (rank == 0) {
            fprintf(stderr, "%s: the global batch %zu does not divide into %d equal shards; use a multiple of %d\n",
                    program.name, opt.batch, ranks, ranks);
        }
        MPI_Finalize();
        return EX_EXIT_USAGE;
    }
    const size_t global_batch = opt.batch;
    const size_t shard = global_batch / (size_t)ranks;

    int exit_code = 1;
    fm_set train = {0}, validation = {0}, test = {0};
    aim_model *built = NULL, *model = NULL;
    aim_optimizer *built_adam = NULL, *adam = NULL;
    aim_workspace *workspace = NULL;
    aim_rng *shuffle_rng = NULL;
    uint32_t *order = NULL;
    float *x = NULL, *scratch = NULL;
    const size_t scratch_count = (size_t)EX_EVAL_BATCH * FM_CLASSES; /* 10 logits per sample */
    int32_t *labels = NULL;
    const char *source = "";
    char err[256] = "";
    int same = 0;
    /* 1 when every rank reaches cleanup at the same point, so that none is
     * left waiting in a collective and all may finalize normally. */
    int together = 0;

    if (ex_load_fashion_mnist(&opt, &train, &validation, &test, &source) != 0) {
        goto cleanup;
    }
    /* A rank that fell back to the synthetic set, or read other files,
     * would silently train on other data: compare hashes first. */
    uint64_t data_hash = dp_hash(train.images, train.count * FM_PIXELS * sizeof *train.images) ^
                         dp_hash(train.labels, train.count * sizeof *train.labels);
    if (dp_same_everywhere(MPI_COMM_WORLD, data_hash, &same, err, sizeof err) != 0) {
        fprintf(stderr, "%s: rank %d: %s\n", program.name, rank, err);
        goto cleanup;
    }
    together = 1; /* the checks below come out alike on every rank */
    if (!same) {
        if (rank == 0) fprintf(stderr, "%s: the ranks do not hold the same training set\n", program.name);
        goto cleanup;
    }
    const size_t steps_per_epoch = train.count / global_batch;
    if (steps_per_epoch == 0) {
        if (rank == 0) {
            fprintf(stderr, "%s: the global batch %zu exceeds the %zu training images\n", program.name,
                    global_batch, train.count);
        }
        goto cleanup;
    }
    together = 0;
    if (max_steps > 0) {
        opt.epochs = (max_steps + steps_per_epoch - 1) / steps_per_epoch;
    } else {
        max_steps = opt.epochs * steps_per_epoch;
    }

    /* Each rank's forward sees one shard, so that is the batch to compile for. */
    if (rank == 0) {
        EX_TRY(build_model(kind, shard, opt.seed, &built), "");
        float *p = NULL;
        size_t n = 0;
        EX_TRY(aim_model_parameters(built, &p, &n), aim_model_last_error(built));
        EX_TRY(aim_adam_create(NULL, NULL, n, &built_adam), "");
    }
    if (dp_broadcast_model(MPI_COMM_WORLD, 0, built, built_adam, &model, &adam, err, sizeof err) != 0) {
        fprintf(stderr, "%s: rank %d: %s\n", program.name, rank, err);
        goto cleanup;
    }
    aim_model_free(built);
    built = NULL;
    aim_optimizer_free(built_adam);
    built_adam = NULL;
    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));

    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &workspace), "");
    /* The shuffle seed is the one every example uses (seed + 1) and is the
     * same on every rank: all ranks walk the same global batches. */
    EX_TRY(aim_rng_create(NULL, opt.seed + 1, &shuffle_rng), "");
    order = malloc(train.count * sizeof *order);
    x = malloc(shard * FM_PIXELS * sizeof *x);
    labels = malloc(shard * sizeof *labels);
    scratch = malloc(scratch_count * sizeof *scratch);
    if (order == NULL || x == NULL || labels == NULL || scratch == NULL) {
        fprintf(stderr, "%s: rank %d: out of memory\n", program.name, rank);
        goto cleanup;
    }

    printf("mpi_data_parallel: %d rank%s, %s, %zu train / %zu validation / %zu test images\n", ranks,
           ranks == 1 ? "" : "s", source, train.count, validation.count, test.count);
    printf("model %s (%zu parameters), Adam lr %g, global batch %zu = %d x %zu, %zu steps per epoch "
           "(%zu images dropped), %zu epochs, seed %llu\n",
           kind == MODEL_MLP ? "784-64-64-10" : "conv32-pool-conv64-pool-64-10", param_count, (double)LEARNING_RATE,
           global_batch, ranks, shard, steps_per_epoch, train.count - steps_per_epoch * global_batch, opt.epochs,
           (unsigned long long)opt.seed);
    fflush(stdout);

    /* step_seconds: the training steps only (what steps/s is measured on);
     * train_seconds: the whole fit loop with evaluation, as the other
     * examples report it. The ranks move in lockstep through the
     * Allreduce, so rank 0's clock speaks for all. */
    size_t steps = 0;
    double step_seconds = 0.0;
    double allreduce_seconds = 0.0;
    int in_sync = 1;
    /* Rank 0's stdout is the only one left: the in-progress lines show its
     * shards' running loss, the epoch's final line the loss summed over the
     * ranks. Always plain lines: Open MPI gives the ranks a pseudo-terminal
     * even when mpirun's own output goes to a pipe or a file, so isatty()
     * says nothing about where the lines end up. */
    ex_progress progress;
    ex_progress_init(&progress, stdout, rank == 0 ? EX_PROGRESS_LINES : EX_PROGRESS_QUIET);
    MPI_Barrier(MPI_COMM_WORLD);
    double train_start = ex_now();
    for (size_t epoch = 1; epoch <= opt.epochs && steps < max_steps; ++epoch) {
        double sums[2] = {0.0, 0.0}; /* loss * samples, correct; this rank's shards */
        size_t epoch_steps = 0;
        for (size_t i = 0; i < train.count; ++i) {
            order[i] = (uint32_t)i;
        }
        EX_TRY(aim_rng_shuffle_u32(shuffle_rng, order, train.count), "");
        const size_t planned = max_steps - steps < steps_per_epoch ? max_steps - steps : steps_per_epoch;
        ex_progress_epoch(&progress, epoch, opt.epochs, planned);
        double loop_start = ex_now();
        for (size_t b = 0; b < steps_per_epoch && steps < max_steps; ++b, ++steps, ++epoch_steps) {
            float loss = 0.0f;
            const float *logits = NULL;
            size_t logit_count = 0;
            gather_rows(&train, order, b * global_batch + (size_t)rank * shard, shard, x, labels);
            EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
            EX_TRY(aim_model_forward(model, AIM_MODE_TRAIN, x, shard * FM_PIXELS, shard),
                   aim_model_last_error(model));
            EX_TRY(aim_model_output(model, 0, &logits, &logit_count), aim_model_last_error(model));
            sums[1] += (double)ex_count_correct(logits, shard, logit_count / shard, labels, 0.5f);
            EX_TRY(aim_model_loss_sparse(model, 0, labels, shard, &loss), aim_model_last_error(model));
            EX_TRY(aim_model_backward(model, NULL, 0), aim_model_last_error(model));
            double reduce_start = ex_now();
            if (dp_average_gradients(MPI_COMM_WORLD, model, err, sizeof err) != 0) {
                fprintf(stderr, "%s: rank %d: %s\n", program.name, rank, err);
                goto cleanup;
            }
            allreduce_seconds += ex_now() - reduce_start;
            EX_TRY(aim_optimizer_step_model(adam, model, LEARNING_RATE), aim_optimizer_last_error(adam));
            sums[0] += (double)loss * (double)shard; /* the loss is a shard mean */
            ex_progress_step(&progress, (double)loss, (double)shard);
        }
        step_seconds += ex_now() - loop_start;

        double totals[2] = {0.0, 0.0};
        if (MPI_Reduce(sums, totals, 2, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD) != MPI_SUCCESS ||
            dp_parameters_in_sync(MPI_COMM_WORLD, model, &same, err, sizeof err) != 0) {
            fprintf(stderr, "%s: rank %d: epoch summary failed %s\n", program.name, rank, err);
            goto cleanup;
        }
        in_sync = in_sync && same;
        double val_accuracy = 0.0;
        if (sliced_accuracy(model, workspace, &validation, scratch, scratch_count, rank, ranks, &val_accuracy) !=
            0) {
            goto cleanup;
        }
        const double seen = (double)(epoch_steps * global_batch);
        const ex_metric shown[] = {{"loss", totals[0] / seen}, {"accuracy", totals[1] / seen},
                                   {"val_accuracy", val_accuracy}};
        ex_progress_end(&progress, shown, 3);
        if (epoch_steps < steps_per_epoch) {
            printf("(--steps: %zu of the epoch's %zu steps)\n", epoch_steps, steps_per_epoch);
        }
        if (!same) {
            printf("RANKS OUT OF SYNC after epoch %zu\n", epoch);
        }
        fflush(stdout);
    }
    double train_seconds = ex_now() - train_start;

    double test_accuracy = 0.0;
    if (sliced_accuracy(model, workspace, &test, scratch, scratch_count, rank, ranks, &test_accuracy) != 0) {
        goto cleanup;
    }
    const double steps_per_second = (double)steps / step_seconds;
    printf("test accuracy %.4f on %zu images\n", test_accuracy, test.count);
    printf("throughput %.1f steps/s, %.0f images/s; Allreduce and wait %.3f ms of %.3f ms per step on rank 0\n",
           steps_per_second, steps_per_second * (double)global_batch, 1e3 * allreduce_seconds / (double)steps,
           1e3 * step_seconds / (double)steps);
    printf("RESULT mpi_data_parallel model=%s ranks=%d test_accuracy=%.4f train_seconds=%.2f steps=%zu "
           "steps_per_second=%.2f images_per_second=%.0f allreduce_ms=%.3f in_sync=%d epochs=%zu batch=%zu "
           "shard=%zu seed=%llu data=%s\n",
           model_name, ranks, test_accuracy, train_seconds, steps, steps_per_second,
           steps_per_second * (double)global_batch, 1e3 * allreduce_seconds / (double)steps, in_sync, opt.epochs,
           global_batch, shard, (unsigned long long)opt.seed, source);
    exit_code = in_sync ? 0 : 1;
    together = 1; /* in_sync is the same on every rank: all exit alike */

cleanup:
    free(x);
    free(labels);
    free(order);
    free(scratch);
    aim_rng_free(shuffle_rng);
    aim_workspace_free(workspace);
    aim_optimizer_free(adam);
    aim_optimizer_free(built_adam);
    aim_model_free(model);
    aim_model_free(built);
    fm_free(&train);
    fm_free(&validation);
    fm_free(&test);
    fflush(stdout);
    /* A rank that fails mid-run would leave the others waiting in their
     * next collective forever; MPI_Abort ends the whole job instead. */
    if (!together && ranks > 1) {
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return exit_code;
}
