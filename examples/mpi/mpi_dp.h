/*
 * libaimodel examples - synchronous data-parallel training over MPI.
 * SPDX-License-Identifier: MIT
 */
/*
 * The collective steps of data-parallel training, kept apart from the
 * training loop so that tests/mpi/test_mpi.c checks the very code that
 * examples/mpi/mpi_data_parallel.c runs. The library knows nothing of MPI:
 * it exposes a model's flat parameter and gradient buffers and serializes a
 * model to memory; these functions move those bytes between processes.
 *
 * Every function taking a communicator is collective: every rank of `comm`
 * must call it, in the same order. Each returns 0 on success, or -1 after
 * writing a one-line reason into `err` (`err_size` bytes, may be 0); a
 * failure is reported on every rank, so that no rank is left waiting in a
 * later collective.
 */
#ifndef EXAMPLES_MPI_DP_H
#define EXAMPLES_MPI_DP_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "aimodel.h"

/*
 * Gives every rank its own copy of `root`'s compiled model and, when
 * `source_optimizer` is not NULL, of that optimizer's state: `root`
 * serializes them (aim_model_serialize()), broadcasts the bytes, and every
 * rank, `root` included, builds `*model` and `*optimizer` from them with
 * aim_model_deserialize(). All ranks then start from bit-identical
 * parameters and optimizer state. `source` and `source_optimizer` are read
 * on `root` only (pass NULL elsewhere) and stay owned by the caller. On
 * success the caller frees `*model` with aim_model_free() and `*optimizer`
 * (NULL when no optimizer was sent) with aim_optimizer_free().
 */
int dp_broadcast_model(MPI_Comm comm, int root, const aim_model *source, const aim_optimizer *source_optimizer,
                       aim_model **model, aim_optimizer **optimizer, char *err, size_t err_size);

/*
 * Replaces every rank's gradient buffer with the mean of the buffers of all
 * ranks: one MPI_Allreduce(MPI_IN_PLACE, MPI_FLOAT, MPI_SUM), then a
 * division by the number of ranks. When each rank's gradient is the mean
 * loss gradient over an equal shard of a global batch, the result is the
 * gradient of the whole global batch, up to float summation order.
 */
int dp_average_gradients(MPI_Comm comm, aim_model *model, char *err, size_t err_size);

/* A 64-bit hash of `bytes` bytes (FNV-1a over 8-byte words), to compare
 * large buffers across ranks without sending them. */
uint64_t dp_hash(const void *data, size_t bytes);

/* Sets `*same` to 1 if `value` is equal on every rank of `comm`, else 0
 * (one MPI_Allreduce of two words). */
int dp_same_everywhere(MPI_Comm comm, uint64_t value, int *same, char *err, size_t err_size);

/* Sets `*in_sync` to 1 if the model's parameter bytes hash the same on
 * every rank, else 0: a cheap check that the ranks have not drifted apart. */
int dp_parameters_in_sync(MPI_Comm comm, aim_model *model, int *in_sync, char *err, size_t err_size);

#endif
