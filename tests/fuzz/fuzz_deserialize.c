/* libFuzzer target: aim_model_deserialize() on untrusted bytes.
 *
 * Each input is tried twice: as given, and (when it is at least a header
 * long) with the header's payload length and CRC-32 recomputed, so that
 * mutations reach the field parser instead of stopping at the checksum.
 * Allocations go through an allocator that refuses any single block over
 * 64 MiB, as an embedder reading untrusted buffers would configure it: the
 * library must turn that refusal into AIM_ERR_OUT_OF_MEMORY, and libFuzzer's
 * -rss_limit_mb / malloc limit then catches any allocation that bypasses it.
 * A model that loads must run: one aim_model_predict() on zeros, and with an
 * optimizer one training step (for a model of one input and one output; one
 * of several is refused by aim_model_predict() with AIM_ERR_SHAPE_MISMATCH).
 * A model whose input holds int32 ids (an embedding reads it, as in the
 * version-4 seeds of a small GPT) is fed through the _ids calls: zeros are
 * id 0, which every table holds.
 * Every outcome must be a status code. A refusal must come with a message
 * (NUL-terminated within the 48 bytes given, "" on success), and the same
 * status without a message buffer or with one byte of room.
 *
 * Build and run: tests/fuzz/run.sh (see tests/fuzz/README.md).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"

#define CAP_BYTES ((size_t)64 << 20)
#define HEADER 32u

static void *cap_allocate(void *ctx, size_t size) {
    (void)ctx;
    return size > CAP_BYTES ? NULL : malloc(size);
}
static void *cap_reallocate(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    return size > CAP_BYTES ? NULL : realloc(ptr, size);
}
static void cap_deallocate(void *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
}
static const aim_allocator CAPPED = {NULL, cap_allocate, cap_reallocate, cap_deallocate};

/* CRC-32 as zlib's crc32(). */
static uint32_t crc32_ref(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static int is_refusal(aim_status st) {
    return st == AIM_ERR_CORRUPT_DATA || st == AIM_ERR_VERSION || st == AIM_ERR_OUT_OF_MEMORY ||
           st == AIM_ERR_OVERFLOW;
}

/* Loads one buffer and exercises what loaded. Aborts (a finding) only on an
 * outcome the API documents as impossible. */
static void load(const unsigned char *buf, size_t len) {
    aim_model *m = NULL;
    aim_optimizer *o = NULL;
    /* A message buffer smaller than some messages, so cutting is exercised
     * too; it is prefilled so that a missing terminator shows. */
    char msg[48];
    memset(msg, 'x', sizeof msg);
    aim_status st = aim_model_deserialize(&CAPPED, buf, len, &m, &o, msg, sizeof msg);
    if (memchr(msg, '\0', sizeof msg) == NULL) abort();
    if (st != AIM_OK) {
        if (!is_refusal(st) || m || o) abort();
        if (msg[0] == '\0') abort(); /* a failure is explained */
        /* Without a message buffer, or with one byte of room, the outcome is the same. */
        char one = 'x';
        if (aim_model_deserialize(&CAPPED, buf, len, &m, &o, NULL, 0) != st || m || o) abort();
        if (aim_model_deserialize(&CAPPED, buf, len, &m, &o, &one, 1) != st || m || o || one != '\0') abort();
        return;
    }
    if (msg[0] != '\0') abort(); /* "" on success */
    const size_t in = aim_model_input_size(m), out = aim_model_output_size(m);
    /* The model's own block held max_batch * in floats within 64 MiB. */
    float *x = calloc(in ? in : 1, sizeof(float)), *y = calloc(out ? out : 1, sizeof(float));
    aim_workspace *ws = NULL;
    /* The one-input, one-output calls; a graph of several inputs or outputs
     * is refused by them, which is a status too. */
    const int single = aim_model_input_count(m) == 1 && aim_model_output_count(m) == 1;
    aim_dtype dtype = AIM_DTYPE_FLOAT32;
    if (aim_model_input_dtype(m, 0, &dtype) != AIM_OK) abort();
    const int ids = dtype == AIM_DTYPE_INT32; /* x's zero bits are then id 0 */
    const int32_t *x_ids = (const int32_t *)(const void *)x;
    if (x && y && aim_workspace_create(m, &CAPPED, 1, &ws) == AIM_OK) {
        st = ids ? aim_model_predict_ids(m, ws, x_ids, in, 1, y, out) : aim_model_predict(m, ws, x, in, 1, y, out);
        if (single ? st != AIM_OK : st != AIM_ERR_SHAPE_MISMATCH) abort();
    }
    if (x && y && o && single) {
        float loss;
        memset(y, 0, out * sizeof(float));
        if (aim_model_zero_grad(m) != AIM_OK) abort();
        st = ids ? aim_model_forward_ids(m, AIM_MODE_TRAIN, x_ids, in, 1) : aim_model_forward(m, AIM_MODE_TRAIN, x, in, 1);
        if (st != AIM_OK) abort();
        st = aim_model_loss(m, 0, AIM_LOSS_MSE, y, out, &loss);
        if (st == AIM_OK) {
            if (aim_model_backward(m, NULL, 0) != AIM_OK) abort();
            st = aim_optimizer_step_model(o, m, 0.01f);
            if (st != AIM_OK && st != AIM_ERR_NON_FINITE) abort();
        } else if (st != AIM_ERR_NON_FINITE) {
            abort();
        }
    }
    aim_workspace_free(ws);
    free(x);
    free(y);
    aim_optimizer_free(o);
    aim_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exact-size copy, so ASan sees a read one byte past the end. */
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    load(buf, size);
    if (size >= HEADER) {
        put_le(buf + 16, size - HEADER, 8);
        put_le(buf + 24, crc32_ref(buf + HEADER, size - HEADER), 4);
        load(buf, size);
    }
    free(buf);
    return 0;
}
