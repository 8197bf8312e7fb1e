/*
 * Models (and optionally their optimizer's state) to and from byte buffers.
 * No I/O: the host owns files and sockets. The format is in docs/FORMAT.md:
 * a 32-byte header (magic, version, flags, payload length, CRC-32) and a
 * little-endian payload of fixed-width fields. Reading validates every count
 * against the bytes that remain before using it, and never reads past `len`.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define FORMAT_VERSION 4u
#define HEADER_BYTES 32u
#define FLAG_OPTIMIZER 1u
static const unsigned char MAGIC[8] = {'A', 'I', 'M', 'D', 0x0D, 0x0A, 0x1A, 0x0A};

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32), four bits at a time from a
 * constant table: no state to initialize, nothing global to mutate. */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    static const uint32_t t[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
                                   0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                   0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ t[crc & 15u];
        crc = (crc >> 4) ^ t[crc & 15u];
    }
    return ~crc;
}

/* ---- writing ------------------------------------------------------------------ */

static void put_bytes(aim__writer *w, const void *src, size_t n) {
    if (w->p) memcpy(w->p + w->n, src, n);
    w->n += n;
}
void aim__put_u32(aim__writer *w, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put_bytes(w, b, 4);
}
void aim__put_u64(aim__writer *w, uint64_t v) {
    aim__put_u32(w, (uint32_t)v);
    aim__put_u32(w, (uint32_t)(v >> 32));
}
void aim__put_f32(aim__writer *w, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    aim__put_u32(w, u);
}
static void put_floats(aim__writer *w, const float *f, size_t n) {
    for (size_t i = 0; i < n; i++) aim__put_f32(w, f[i]);
}

/* A node id in the format: a layer index, or 2^63 + k for model input k. */
#define INPUT_BIT ((uint64_t)1 << 63)

static void put_payload(aim__writer *w, const aim__model_view *v, const aim_optimizer *o) {
    aim__put_u32(w, (uint32_t)v->n_inputs);
    for (size_t k = 0; k < v->n_inputs; k++) {
        aim__put_u32(w, (uint32_t)v->inputs[k].rank);
        for (size_t d = 0; d < v->inputs[k].rank; d++) aim__put_u64(w, v->inputs[k].dims[d]);
        aim__put_u32(w, v->inputs[k].dtype);
    }
    aim__put_u64(w, v->max_batch);
    aim__put_u32(w, v->input_gradient ? 1u : 0u);
    aim__put_u32(w, (uint32_t)v->n_layers);
    for (size_t i = 0; i < v->n_layers; i++) {
        const aim__layer *L = &v->layers[i];
        aim__put_u32(w, L->ops->code);
        aim__put_u32(w, (uint32_t)L->n_in);
        for (size_t j = 0; j < L->n_in; j++) {
            const size_t id = L->in[j];
            aim__put_u64(w, id > (size_t)-1 - AIM_MAX_NODE_INPUTS ? INPUT_BIT | (uint64_t)((size_t)-1 - id) : id);
        }
        if (L->ops->write) L->ops->write(L, w);
    }
    aim__put_u32(w, (uint32_t)v->n_outputs);
    for (size_t k = 0; k < v->n_outputs; k++) {
        aim__put_u64(w, v->outputs[k]);
        aim__put_f32(w, v->loss_weights[k]);
    }
    aim__put_u64(w, v->n_params);
    put_floats(w, v->params, v->n_params);
    aim__put_u64(w, v->n_buffers);
    put_floats(w, v->buffers, v->n_buffers);
    aim__put_u64(w, v->random_key);
    aim__put_u64(w, v->random_step);
    if (!o) return;
    aim__put_u32(w, (uint32_t)o->kind);
    aim__put_u64(w, o->count);
    aim__put_u64(w, o->steps);
    if (o->kind == AIM__OPT_SGD) {
        aim__put_f32(w, o->sgd.momentum);
        aim__put_f32(w, o->sgd.dampening);
        aim__put_f32(w, o->sgd.weight_decay);
        aim__put_u32(w, o->sgd.nesterov ? 1u : 0u);
        aim__put_u32(w, o->sgd.check_finite ? 1u : 0u);
        aim__put_u32(w, o->m ? 1u : 0u);
        if (o->m) put_floats(w, o->m, o->count);
    } else if (o->kind == AIM__OPT_RMSPROP) {
        aim__put_f32(w, o->rmsprop.alpha);
        aim__put_f32(w, o->rmsprop.epsilon);
        aim__put_f32(w, o->rmsprop.momentum);
        aim__put_u32(w, o->rmsprop.centered ? 1u : 0u);
        aim__put_f32(w, o->rmsprop.weight_decay);
        aim__put_u32(w, o->rmsprop.check_finite ? 1u : 0u);
        put_floats(w, o->v, o->count);
        if (o->m) put_floats(w, o->m, o->count);
        if (o->g) put_floats(w, o->g, o->count);
    } else {
        aim__put_f32(w, o->adam.beta1);
        aim__put_f32(w, o->adam.beta2);
        aim__put_f32(w, o->adam.epsilon);
        aim__put_f32(w, o->adam.weight_decay);
        aim__put_u32(w, o->adam.decoupled ? 1u : 0u);
        aim__put_u32(w, o->adam.check_finite ? 1u : 0u);
        put_floats(w, o->m, o->count);
        put_floats(w, o->v, o->count);
    }
}

static aim_status check_pair(const aim_model *model, const aim_optimizer *o, aim__model_view *v) {
    if (!model) return AIM_ERR_INVALID_ARGUMENT;
    aim__model_get_view(model, v);
    if (!v->compiled) return AIM_ERR_INVALID_STATE;
    if (o && o->count != v->n_params) return AIM_ERR_SHAPE_MISMATCH;
    return AIM_OK;
}

aim_status aim_model_serialized_size(const aim_model *model, const aim_optimizer *optimizer, size_t *bytes) {
    aim__model_view v;
    if (!bytes) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = check_pair(model, optimizer, &v);
    if (st != AIM_OK) return st;
    /* The floats dominate: check that 4 bytes per parameter fit first, 16
     * with an optimizer (its state is up to three arrays: RMSprop centered
     * with momentum). */
    size_t per = optimizer ? 16 : 4, floats;
    if (!aim__mul(v.n_params, per, &floats) || floats > SIZE_MAX / 2) return AIM_ERR_OVERFLOW;
    aim__writer w = {NULL, 0};
    put_payload(&w, &v, optimizer);
    *bytes = HEADER_BYTES + w.n;
    return AIM_OK;
}

/* The format version that introduced a kind: 0-7 in 1, 8-9 in 2, 10-19 in
 * 3, 20-22 (attention, positional embedding, linear) in 4. */
static uint32_t kind_version(uint32_t code) { return code <= 7 ? 1u : code <= 9 ? 2u : code <= 19 ? 3u : 4u; }

/* The oldest version that holds the model, so a library that predates a
 * kind still reads every model without it: 3 (whose payload the writer's
 * is), or the version of its newest kind. */
static uint32_t version_needed(const aim__model_view *v) {
    uint32_t version = 3u;
    for (size_t i = 0; i < v->n_layers; i++) {
        const uint32_t k = kind_version(v->layers[i].ops->code);
        version = k > version ? k : version;
    }
    return version;
}

aim_status aim_model_serialize(const aim_model *model, const aim_optimizer *optimizer, void *buffer, size_t capacity,
                               size_t *written) {
    aim__model_view v;
    size_t need;
    if (!buffer || !written) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = aim_model_serialized_size(model, optimizer, &need);
    if (st != AIM_OK) return st;
    if (capacity < need) {
        *written = need; /* documented: the size the caller needs */
        return AIM_ERR_SHAPE_MISMATCH;
    }
    aim__model_get_view(model, &v);
    unsigned char *out = buffer;
    aim__writer w = {out + HEADER_BYTES, 0};
    put_payload(&w, &v, optimizer);
    aim__writer h = {out, 0};
    put_bytes(&h, MAGIC, 8);
    aim__put_u32(&h, version_needed(&v));
    aim__put_u32(&h, optimizer ? FLAG_OPTIMIZER : 0u);
    aim__put_u64(&h, (uint64_t)w.n);
    aim__put_u32(&h, crc32_update(0, out + HEADER_BYTES, w.n));
    aim__put_u32(&h, 0);
    *written = need;
    return AIM_OK;
}

/* ---- reading ------------------------------------------------------------------- */

static int have(aim__reader *r, size_t n) {
    if (r->fail || n > r->n - r->pos) {
        r->fail = 1;
        return 0;
    }
    return 1;
}
uint32_t aim__get_u32(aim__reader *r) {
    if (!have(r, 4)) return 0;
    const unsigned char *b = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
uint64_t aim__get_u64(aim__reader *r) {
    uint64_t lo = aim__get_u32(r);
    return lo | (uint64_t)aim__get_u32(r) << 32;
}
float aim__get_f32(aim__reader *r) {
    uint32_t u = aim__get_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* A count of items of `size` bytes each that must still fit in the buffer. */
static size_t get_count(aim__reader *r, size_t size) {
    uint64_t n = aim__get_u64(r);
    if (r->fail || n > (uint64_t)((r->n - r->pos) / size)) {
        r->fail = 1;
        return 0;
    }
    return (size_t)n;
}
size_t aim__get_size(aim__reader *r) {
    uint64_t n = aim__get_u64(r);
    if (n > SIZE_MAX) r->fail = 1;
    return (size_t)n;
}
int32_t aim__get_flag(aim__reader *r) {
    uint32_t v = aim__get_u32(r);
    if (v > 1) r->fail = 1;
    return (int32_t)v;
}
static void get_floats(aim__reader *r, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = aim__get_f32(r);
}

static aim_status get_optimizer(aim__reader *r, const aim_allocator *allocator, size_t n_params, aim_optimizer **out,
                                char *msg) {
    uint32_t kind = aim__get_u32(r);
    size_t count = aim__get_size(r);
    uint64_t steps = aim__get_u64(r);
    if (r->fail) {
        snprintf(msg, AIM__ERR_CAP, "optimizer: record truncated before its settings");
        return AIM_ERR_CORRUPT_DATA;
    }
    if (count != n_params) {
        snprintf(msg, AIM__ERR_CAP, "optimizer: state for %zu parameters, the model has %zu", count, n_params);
        return AIM_ERR_CORRUPT_DATA;
    }
    aim_optimizer *o = NULL;
    aim_status st;
    if (kind == AIM__OPT_SGD) {
        aim_sgd_config c;
        (void)aim_sgd_config_init(&c);
        c.momentum = aim__get_f32(r);
        c.dampening = aim__get_f32(r);
        c.weight_decay = aim__get_f32(r);
        c.nesterov = aim__get_flag(r);
        c.check_finite = aim__get_flag(r);
        uint32_t has_buf = (uint32_t)aim__get_flag(r);
        if (r->fail || has_buf != (c.momentum > 0.0f ? 1u : 0u) || (has_buf && count > (r->n - r->pos) / 4))
        {
            snprintf(msg, AIM__ERR_CAP, "optimizer: SGD record truncated or its momentum flag disagrees");
            return AIM_ERR_CORRUPT_DATA;
        }
        st = aim_sgd_create(allocator, &c, count, &o);
        if (st != AIM_OK) {
            snprintf(msg, AIM__ERR_CAP, "optimizer: %s", st == AIM_ERR_OUT_OF_MEMORY ? "out of memory" : "invalid settings");
            return st == AIM_ERR_OUT_OF_MEMORY ? st : AIM_ERR_CORRUPT_DATA;
        }
        if (has_buf) get_floats(r, o->m, count);
    } else if (kind == AIM__OPT_ADAM) {
        aim_adam_config c;
        (void)aim_adam_config_init(&c);
        c.beta1 = aim__get_f32(r);
        c.beta2 = aim__get_f32(r);
        c.epsilon = aim__get_f32(r);
        c.weight_decay = aim__get_f32(r);
        c.decoupled = aim__get_flag(r);
        c.check_finite = aim__get_flag(r);
        /* m and v: 8 bytes per parameter must remain. */
        if (r->fail || count > (r->n - r->pos) / 8) {
            snprintf(msg, AIM__ERR_CAP, "optimizer: Adam record truncated (%zu moments need %zu bytes)", count,
                     count * 8);
            return AIM_ERR_CORRUPT_DATA;
        }
        st = aim_adam_create(allocator, &c, count, &o);
        if (st != AIM_OK) {
            snprintf(msg, AIM__ERR_CAP, "optimizer: %s", st == AIM_ERR_OUT_OF_MEMORY ? "out of memory" : "invalid settings");
            return st == AIM_ERR_OUT_OF_MEMORY ? st : AIM_ERR_CORRUPT_DATA;
        }
        get_floats(r, o->m, count);
        get_floats(r, o->v, count);
    } else if (kind == AIM__OPT_RMSPROP && r->version >= 3) { /* kind 2 exists from format 3 on */
        aim_rmsprop_config c;
        (void)aim_rmsprop_config_init(&c);
        c.alpha = aim__get_f32(r);
        c.epsilon = aim__get_f32(r);
        c.momentum = aim__get_f32(r);
        c.centered = aim__get_flag(r);
        c.weight_decay = aim__get_f32(r);
        c.check_finite = aim__get_flag(r);
        /* v, then the momentum buffer and the gradient average when the options call for them. */
        const size_t arrays = 1u + (c.momentum > 0.0f) + (c.centered != 0);
        if (r->fail || count > (r->n - r->pos) / (4 * arrays)) {
            snprintf(msg, AIM__ERR_CAP, "optimizer: RMSprop record truncated (%zu parameters, %zu arrays)", count,
                     arrays);
            return AIM_ERR_CORRUPT_DATA;
        }
        st = aim_rmsprop_create(allocator, &c, count, &o);
        if (st != AIM_OK) {
            snprintf(msg, AIM__ERR_CAP, "optimizer: %s", st == AIM_ERR_OUT_OF_MEMORY ? "out of memory" : "invalid settings");
            return st == AIM_ERR_OUT_OF_MEMORY ? st : AIM_ERR_CORRUPT_DATA;
        }
        get_floats(r, o->v, count);
        if (o->m) get_floats(r, o->m, count);
        if (o->g) get_floats(r, o->g, count);
    } else {
        snprintf(msg, AIM__ERR_CAP, "optimizer: unknown kind %u", (unsigned)kind);
        return AIM_ERR_CORRUPT_DATA;
    }
    o->steps = steps;
    if (r->fail) {
        aim_optimizer_free(o);
        snprintf(msg, AIM__ERR_CAP, "optimizer: truncated");
        return AIM_ERR_CORRUPT_DATA;
    }
    *out = o;
    return AIM_OK;
}

/* Maps a builder's verdict on a field read from the buffer: bad values are
 * corrupt data; running out of memory stays what it is. */
static aim_status as_read_status(aim_status st) {
    return (st == AIM_OK || st == AIM_ERR_OUT_OF_MEMORY) ? st : AIM_ERR_CORRUPT_DATA;
}

/* Copies a message into the caller's buffer, cut to fit. */
static void tell(char *out, size_t cap, const char *msg) {
    if (!out || cap == 0) return;
    size_t n = strlen(msg);
    if (n >= cap) n = cap - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
}

/* One sample's shape: u32 rank, u64 dims. */
static int get_shape(aim__reader *r, size_t *rank, size_t dims[AIM_MAX_RANK]) {
    *rank = aim__get_u32(r);
    if (r->fail || *rank == 0 || *rank > AIM_MAX_RANK - 1) return 0;
    for (size_t i = 0; i < *rank; i++) dims[i] = aim__get_size(r);
    return !r->fail;
}

/* The body of both versions: builds, compiles and fills the model. Version 1
 * (libaimodel 0.1) is a chain: one input, layers without input lists, the
 * last layer the output. */
static aim_status read_payload(aim__reader *r, uint32_t version, uint32_t flags, const aim_allocator *a,
                               aim_model **mp, aim_optimizer **op, char *msg) {
    aim_model *m = NULL;
    aim_status st;
    size_t n_inputs = version == 1 ? 1 : aim__get_u32(r);
    if (r->fail || n_inputs == 0 || n_inputs > AIM_MAX_NODE_INPUTS) {
        snprintf(msg, AIM__ERR_CAP, "input count %zu is not 1 to %u", n_inputs, AIM_MAX_NODE_INPUTS);
        return AIM_ERR_CORRUPT_DATA;
    }
    size_t ranks[AIM_MAX_NODE_INPUTS], dims[AIM_MAX_NODE_INPUTS][AIM_MAX_RANK];
    uint32_t dtypes[AIM_MAX_NODE_INPUTS];
    for (size_t k = 0; k < n_inputs; k++) {
        int ok = get_shape(r, &ranks[k], dims[k]);
        dtypes[k] = version >= 3 ? aim__get_u32(r) : AIM_DTYPE_FLOAT32;
        if (!ok || r->fail || dtypes[k] > AIM_DTYPE_INT32) {
            snprintf(msg, AIM__ERR_CAP, "input %zu: bad or truncated shape or dtype", k);
            return AIM_ERR_CORRUPT_DATA;
        }
    }
    aim_compile_config cc;
    (void)aim_compile_config_init(&cc);
    cc.max_batch = aim__get_size(r);
    cc.input_gradient = aim__get_flag(r);
    const uint32_t n_layers = aim__get_u32(r);
    /* Each layer record takes at least 4 bytes: checked before the model exists. */
    if (r->fail || n_layers == 0 || n_layers > (r->n - r->pos) / 4) {
        snprintf(msg, AIM__ERR_CAP, "truncated, or a layer count of %u that the %zu remaining bytes cannot hold",
                 (unsigned)n_layers, r->fail ? 0 : r->n - r->pos);
        return AIM_ERR_CORRUPT_DATA;
    }
    for (size_t k = 0; k < n_inputs; k++) {
        size_t node;
        st = k == 0 ? aim_model_create(a, ranks[0], dims[0], &m) : aim_model_add_input(m, ranks[k], dims[k], &node);
        if (st == AIM_OK) st = aim_model_set_input_dtype(m, k, (aim_dtype)dtypes[k]);
        if (st != AIM_OK) {
            snprintf(msg, AIM__ERR_CAP, "input %zu: %s", k,
                     st == AIM_ERR_OUT_OF_MEMORY ? "out of memory" : "the shape is not valid");
            st = as_read_status(st);
            goto fail;
        }
    }
    for (uint32_t i = 0; i < n_layers; i++) {
        const uint32_t code = aim__get_u32(r);
        /* Kinds exist from the version that introduced them. */
        const aim__layer_ops *ops = r->fail || kind_version(code) > version ? NULL : aim__layer_by_code(code);
        if (!ops) {
            snprintf(msg, AIM__ERR_CAP, r->fail ? "truncated at layer %u" : "layer %u: unknown kind %u", (unsigned)i,
                     (unsigned)code);
            st = AIM_ERR_CORRUPT_DATA;
            goto fail;
        }
        size_t in[AIM_MAX_NODE_INPUTS], n_in = 0;
        if (version > 1) {
            n_in = aim__get_u32(r);
            if (r->fail || n_in == 0 || n_in > AIM_MAX_NODE_INPUTS) {
                snprintf(msg, AIM__ERR_CAP, "layer %u (%s): input count %zu is not 1 to %u", (unsigned)i, ops->name,
                         n_in, AIM_MAX_NODE_INPUTS);
                st = AIM_ERR_CORRUPT_DATA;
                goto fail;
            }
            for (size_t j = 0; j < n_in; j++) {
                const uint64_t id = aim__get_u64(r);
                if (r->fail) break; /* reported after the kind's record */
                if (id & INPUT_BIT) {
                    const uint64_t k = id & ~INPUT_BIT;
                    if (k >= n_inputs) {
                        snprintf(msg, AIM__ERR_CAP, "layer %u (%s): input %zu reads model input %llu; the model has %zu",
                                 (unsigned)i, ops->name, j, (unsigned long long)k, n_inputs);
                        st = AIM_ERR_CORRUPT_DATA;
                        goto fail;
                    }
                    in[j] = AIM_MODEL_INPUT(k);
                } else if (id >= i) {
                    /* A layer reads only earlier layers: the order is topological. */
                    snprintf(msg, AIM__ERR_CAP, "layer %u (%s): input %zu reads layer %llu; a layer reads only earlier layers",
                             (unsigned)i, ops->name, j, (unsigned long long)id);
                    st = AIM_ERR_CORRUPT_DATA;
                    goto fail;
                } else {
                    in[j] = (size_t)id;
                }
            }
        }
        aim__layer tmp;
        memset(&tmp, 0, sizeof tmp);
        if (ops->read) ops->read(r, &tmp);
        if (r->fail) {
            snprintf(msg, AIM__ERR_CAP, "truncated in layer %u (%s)", (unsigned)i, ops->name);
            st = AIM_ERR_CORRUPT_DATA;
            goto fail;
        }
        st = aim__model_add_node(m, ops, tmp.cfg, sizeof tmp.cfg, version > 1 ? in : NULL, n_in);
        if (st != AIM_OK) {
            snprintf(msg, AIM__ERR_CAP, "%s", aim_model_last_error(m));
            st = as_read_status(st);
            goto fail;
        }
    }
    if (version > 1) {
        const size_t n_out = aim__get_u32(r);
        size_t outs[AIM_MAX_NODE_INPUTS];
        float weights[AIM_MAX_NODE_INPUTS];
        if (r->fail || n_out == 0 || n_out > AIM_MAX_NODE_INPUTS) {
            snprintf(msg, AIM__ERR_CAP, "output count %zu is not 1 to %u", n_out, AIM_MAX_NODE_INPUTS);
            st = AIM_ERR_CORRUPT_DATA;
            goto fail;
        }
        for (size_t k = 0; k < n_out; k++) {
            const uint64_t id = aim__get_u64(r);
            weights[k] = aim__get_f32(r);
            if (!r->fail && id >= n_layers) {
                snprintf(msg, AIM__ERR_CAP, "output %zu names layer %llu; the model has %u layers", k,
                         (unsigned long long)id, (unsigned)n_layers);
                st = AIM_ERR_CORRUPT_DATA;
                goto fail;
            }
            outs[k] = (size_t)id;
        }
        st = r->fail ? AIM_ERR_CORRUPT_DATA : aim_model_set_outputs(m, outs, weights, n_out);
        if (st != AIM_OK) {
            snprintf(msg, AIM__ERR_CAP, "%s", r->fail ? "truncated in the outputs" : aim_model_last_error(m));
            st = AIM_ERR_CORRUPT_DATA;
            goto fail;
        }
    }
    const size_t n_params = get_count(r, 4);
    /* Before compile allocates: the parameters the layers imply must be
     * exactly those the buffer holds. */
    size_t implied = 0;
    aim__model_view v;
    aim__model_get_view(m, &v);
    for (size_t i = 0; i < v.n_layers; i++)
        if (!aim__add(implied, v.layers[i].weight_count + v.layers[i].bias_count, &implied)) r->fail = 1;
    if (r->fail || implied != n_params) {
        snprintf(msg, AIM__ERR_CAP, "the layers have %zu parameters, the buffer %s", implied,
                 r->fail ? "has fewer bytes than they need" : "a different count");
        st = AIM_ERR_CORRUPT_DATA;
        goto fail;
    }
    st = aim_model_compile(m, &cc);
    if (st != AIM_OK) {
        snprintf(msg, AIM__ERR_CAP, "%s", aim_model_last_error(m));
        st = (st == AIM_ERR_OUT_OF_MEMORY || st == AIM_ERR_OVERFLOW) ? st : AIM_ERR_CORRUPT_DATA;
        goto fail;
    }
    float *params;
    size_t count;
    (void)aim_model_parameters(m, &params, &count); /* compiled: cannot fail; count == n_params */
    get_floats(r, params, count);
    if (version >= 3) {
        float *buffers;
        size_t n_buffers;
        (void)aim_model_buffers(m, &buffers, &n_buffers); /* compiled: cannot fail */
        const size_t stored = get_count(r, 4);
        if (r->fail || stored != n_buffers) {
            snprintf(msg, AIM__ERR_CAP, "the layers have %zu buffer floats, the buffer %s", n_buffers,
                     r->fail ? "has fewer bytes than they need" : "a different count");
            st = AIM_ERR_CORRUPT_DATA;
            goto fail;
        }
        get_floats(r, buffers, n_buffers);
        const uint64_t key = aim__get_u64(r), step = aim__get_u64(r);
        aim__model_set_random(m, key, step);
    }
    if (flags & FLAG_OPTIMIZER) {
        st = get_optimizer(r, a, n_params, op, msg);
        if (st != AIM_OK) goto fail;
    }
    if (r->fail || r->pos != r->n) {
        snprintf(msg, AIM__ERR_CAP, r->fail ? "truncated" : "%zu bytes follow the end of the model",
                 r->fail ? 0 : r->n - r->pos);
        aim_optimizer_free(*op);
        *op = NULL;
        st = AIM_ERR_CORRUPT_DATA;
        goto fail;
    }
    *mp = m;
    return AIM_OK;
fail:
    aim_model_free(m);
    return st;
}

aim_status aim_model_deserialize(const aim_allocator *allocator, const void *buffer, size_t len, aim_model **model,
                                 aim_optimizer **optimizer, char *message, size_t message_capacity) {
    char msg[AIM__ERR_CAP];
    msg[0] = '\0';
    tell(message, message_capacity, "");
    if (!buffer || !model) {
        tell(message, message_capacity, "buffer and model must be non-NULL");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    aim_allocator a;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) {
        tell(message, message_capacity, "the allocator lacks a function");
        return AIM_ERR_INVALID_ARGUMENT;
    }
    const unsigned char *in = buffer;
    if (len < HEADER_BYTES) {
        snprintf(msg, sizeof msg, "truncated: %zu bytes, less than the %u-byte header", len, HEADER_BYTES);
        tell(message, message_capacity, msg);
        return AIM_ERR_CORRUPT_DATA;
    }
    if (memcmp(in, MAGIC, 8) != 0) {
        tell(message, message_capacity, "not a libaimodel model: bad magic");
        return AIM_ERR_CORRUPT_DATA;
    }
    aim__reader h = {in, HEADER_BYTES, 8, 0, 0};
    uint32_t version = aim__get_u32(&h), flags = aim__get_u32(&h);
    uint64_t payload = aim__get_u64(&h);
    uint32_t crc = aim__get_u32(&h), reserved = aim__get_u32(&h);
    if (version > FORMAT_VERSION) {
        snprintf(msg, sizeof msg, "format version %u is newer than this library's %u", (unsigned)version,
                 FORMAT_VERSION);
        tell(message, message_capacity, msg);
        return AIM_ERR_VERSION;
    }
    if (version == 0 || (flags & ~FLAG_OPTIMIZER) != 0 || reserved != 0) {
        tell(message, message_capacity, "bad header: version 0, unknown flags or nonzero reserved field");
        return AIM_ERR_CORRUPT_DATA;
    }
    if (payload != (uint64_t)(len - HEADER_BYTES)) {
        snprintf(msg, sizeof msg, payload > (uint64_t)(len - HEADER_BYTES) ? "truncated: %zu of %llu payload bytes"
                                                                          : "%zu bytes where the header says %llu",
                 len - HEADER_BYTES, (unsigned long long)payload);
        tell(message, message_capacity, msg);
        return AIM_ERR_CORRUPT_DATA;
    }
    if (crc32_update(0, in + HEADER_BYTES, len - HEADER_BYTES) != crc) {
        tell(message, message_capacity, "checksum mismatch: the payload was changed");
        return AIM_ERR_CORRUPT_DATA;
    }
    aim__reader r = {in + HEADER_BYTES, len - HEADER_BYTES, 0, 0, 0};
    aim_model *m = NULL;
    aim_optimizer *o = NULL;
    r.version = version;
    aim_status st = read_payload(&r, version, flags, &a, &m, &o, msg);
    if (st != AIM_OK) {
        tell(message, message_capacity, msg);
        return st;
    }
    *model = m;
    if (optimizer) *optimizer = o;
    else aim_optimizer_free(o);
    return AIM_OK;
}
