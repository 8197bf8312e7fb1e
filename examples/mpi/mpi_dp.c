/*
 * libaimodel examples - synchronous data-parallel training over MPI.
 * SPDX-License-Identifier: MIT
 */
#include "mpi_dp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MPI counts are int: buffers longer than this go in several calls. The
 * operations are elementwise, so chunking changes no result. */
#define DP_CHUNK ((size_t)1 << 30)

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (err == NULL || err_size == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* 1 on every rank if `ok` is nonzero on every rank, else 0 on every rank. */
static int all_ok(MPI_Comm comm, int ok, int *all)
{
    return MPI_Allreduce(&ok, all, 1, MPI_INT, MPI_MIN, comm) == MPI_SUCCESS ? 0 : -1;
}

static int bcast_bytes(MPI_Comm comm, int root, unsigned char *bytes, size_t count)
{
    for (size_t off = 0; off < count; off += DP_CHUNK) {
        size_t len = count - off < DP_CHUNK ? count - off : DP_CHUNK;
        if (MPI_Bcast(bytes + off, (int)len, MPI_BYTE, root, comm) != MPI_SUCCESS) {
            return -1;
        }
    }
    return 0;
}

int dp_broadcast_model(MPI_Comm comm, int root, const aim_model *source, const aim_optimizer *source_optimizer,
                       aim_model **model, aim_optimizer **optimizer, char *err, size_t err_size)
{
    int rank = 0;
    if (model == NULL || MPI_Comm_rank(comm, &rank) != MPI_SUCCESS) {
        set_err(err, err_size, "broadcast: bad arguments or communicator");
        return -1;
    }
    *model = NULL;
    if (optimizer != NULL) {
        *optimizer = NULL;
    }

    /* header[0]: length of the serialized bytes, 0 if the root could not
     * produce them; header[1]: whether they hold an optimizer. */
    uint64_t header[2] = {0, 0};
    unsigned char *bytes = NULL;
    if (rank == root) {
        size_t size = 0;
        size_t written = 0;
        aim_status st = aim_model_serialized_size(source, source_optimizer, &size);
        if (st == AIM_OK && (bytes = malloc(size)) == NULL) {
            st = AIM_ERR_OUT_OF_MEMORY;
        }
        if (st == AIM_OK) {
            st = aim_model_serialize(source, source_optimizer, bytes, size, &written);
        }
        if (st == AIM_OK) {
            header[0] = written;
            header[1] = source_optimizer != NULL;
        } else {
            set_err(err, err_size, "broadcast: rank %d cannot serialize the model: %s: %s", rank,
                    aim_status_str(st), aim_model_last_error(source));
        }
    }
    if (MPI_Bcast(header, 2, MPI_UINT64_T, root, comm) != MPI_SUCCESS) {
        free(bytes);
        set_err(err, err_size, "broadcast: MPI_Bcast failed");
        return -1;
    }
    if (header[0] == 0 || header[0] > SIZE_MAX) {
        free(bytes);
        if (rank != root) {
            set_err(err, err_size, "broadcast: the root rank %d sent no model", root);
        }
        return -1;
    }
    const size_t length = (size_t)header[0];

    /* Every rank must have its buffer before any receives into it. */
    if (rank != root) {
        bytes = malloc(length);
    }
    int ok = 0;
    if (all_ok(comm, bytes != NULL, &ok) != 0 || !ok) {
        free(bytes);
        set_err(err, err_size, "broadcast: a rank cannot allocate %zu bytes", length);
        return -1;
    }
    if (bcast_bytes(comm, root, bytes, length) != 0) {
        free(bytes);
        set_err(err, err_size, "broadcast: MPI_Bcast failed");
        return -1;
    }

    /* The root deserializes too, so every rank runs an object built the
     * same way from the same bytes. */
    char why[256] = "";
    aim_status st = aim_model_deserialize(NULL, bytes, length, model, header[1] ? optimizer : NULL, why, sizeof why);
    free(bytes);
    if (st != AIM_OK) {
        set_err(err, err_size, "broadcast: rank %d cannot deserialize the model: %s: %s", rank, aim_status_str(st),
                why);
    }
    if (all_ok(comm, st == AIM_OK, &ok) != 0 || !ok) {
        if (st == AIM_OK) {
            set_err(err, err_size, "broadcast: another rank failed to deserialize the model");
            aim_model_free(*model);
            *model = NULL;
            if (optimizer != NULL) {
                aim_optimizer_free(*optimizer);
                *optimizer = NULL;
            }
        }
        return -1;
    }
    return 0;
}

int dp_average_gradients(MPI_Comm comm, aim_model *model, char *err, size_t err_size)
{
    float *grads = NULL;
    size_t count = 0;
    int ranks = 0;
    /* Fails only for a model that is not compiled, a programming error
     * that every rank makes alike. */
    aim_status st = aim_model_gradients(model, &grads, &count);
    if (st != AIM_OK) {
        set_err(err, err_size, "average: %s: %s", aim_status_str(st), aim_model_last_error(model));
        return -1;
    }
    if (MPI_Comm_size(comm, &ranks) != MPI_SUCCESS) {
        set_err(err, err_size, "average: MPI_Comm_size failed");
        return -1;
    }
    /*
     * Sum, then scale once. MPI has no mean operation, and MPI_SUM on
     * MPI_FLOAT is the predefined reduction every implementation optimizes.
     * Every rank receives the same sum and divides it by the same R, so the
     * averaged gradient - and then the optimizer step - is bit-identical on
     * every rank. Scaling each rank's part by 1/R before the sum would add
     * R roundings (exact only when R is a power of two) and gain nothing.
     * Dividing by R, rather than multiplying by a rounded 1/R, is one
     * correctly rounded operation; for R a power of two both are exact.
     */
    for (size_t off = 0; off < count; off += DP_CHUNK) {
        size_t len = count - off < DP_CHUNK ? count - off : DP_CHUNK;
        if (MPI_Allreduce(MPI_IN_PLACE, grads + off, (int)len, MPI_FLOAT, MPI_SUM, comm) != MPI_SUCCESS) {
            set_err(err, err_size, "average: MPI_Allreduce failed");
            return -1;
        }
    }
    if (ranks > 1) {
        const float r = (float)ranks;
        for (size_t i = 0; i < count; ++i) {
            grads[i] /= r;
        }
    }
    return 0;
}

uint64_t dp_hash(const void *data, size_t bytes)
{
    /* FNV-1a's offset basis and prime, applied to 8-byte words: each step
     * h -> (h ^ w) * prime is a bijection of h, so a difference in one
     * word is never cancelled by equal words after it. */
    const uint64_t prime = 0x100000001b3ull;
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (; bytes >= 8; bytes -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * prime;
    }
    for (; bytes > 0; --bytes, ++p) {
        h = (h ^ *p) * prime;
    }
    return h;
}

int dp_same_everywhere(MPI_Comm comm, uint64_t value, int *same, char *err, size_t err_size)
{
    /* max(v) and max(~v) = ~min(v) in one reduction: equal iff min == max. */
    uint64_t words[2] = {value, ~value};
    uint64_t max[2] = {0, 0};
    if (MPI_Allreduce(words, max, 2, MPI_UINT64_T, MPI_MAX, comm) != MPI_SUCCESS) {
        set_err(err, err_size, "compare: MPI_Allreduce failed");
        return -1;
    }
    *same = max[0] == ~max[1];
    return 0;
}

int dp_parameters_in_sync(MPI_Comm comm, aim_model *model, int *in_sync, char *err, size_t err_size)
{
    float *params = NULL;
    size_t count = 0;
    aim_status st = aim_model_parameters(model, &params, &count);
    if (st != AIM_OK) {
        set_err(err, err_size, "in sync: %s: %s", aim_status_str(st), aim_model_last_error(model));
        return -1;
    }
    return dp_same_everywhere(comm, dp_hash(params, count * sizeof *params), in_sync, err, err_size);
}
