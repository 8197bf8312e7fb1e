/*
 * Models (and optionally their optimizer's state) to and from byte buffers.
 * No I/O: the host owns files and sockets. The format is in docs/FORMAT.md:
 * a 32-byte header (magic, version, flags, payload length, CRC-32) and a
 * little-endian payload of fixed-width fields. Reading validates every count
 * against the bytes that remain before using it, and never reads past `len`.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "internal.h"

#define FORMAT_VERSION 1u
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

typedef struct writer {
    unsigned char *p; /* NULL: only count */
    size_t pos;
} writer;

static void put_bytes(writer *w, const void *src, size_t n) {
    if (w->p) memcpy(w->p + w->pos, src, n);
    w->pos += n;
}
static void put_u32(writer *w, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put_bytes(w, b, 4);
}
static void put_u64(writer *w, uint64_t v) {
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}
static void put_f32(writer *w, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(w, u);
}
static void put_floats(writer *w, const float *f, size_t n) {
    for (size_t i = 0; i < n; i++) put_f32(w, f[i]);
}

static void put_layer(writer *w, const aim__layer *L) {
    put_u32(w, (uint32_t)L->kind);
    switch (L->kind) {
    case AIM__LAYER_DENSE:
        put_u64(w, L->out_size);
        put_u32(w, (uint32_t)L->act);
        put_f32(w, L->alpha);
        put_u32(w, L->bias_count ? 1u : 0u);
        put_u32(w, (uint32_t)L->init);
        break;
    case AIM__LAYER_ACTIVATION:
        put_u32(w, (uint32_t)L->act);
        put_f32(w, L->alpha);
        break;
    case AIM__LAYER_CONV2D: {
        const aim__window *win = &L->win;
        const size_t f[12] = {L->out_dims[0], win->kh, win->kw, win->sh, win->sw, win->dh,
                              win->dw, win->pt, win->pb, win->pl, win->pr, win->groups};
        for (size_t i = 0; i < 12; i++) put_u64(w, f[i]);
        put_u32(w, (uint32_t)L->act);
        put_f32(w, L->alpha);
        put_u32(w, L->bias_count ? 1u : 0u);
        put_u32(w, (uint32_t)L->init);
        break;
    }
    case AIM__LAYER_MAX_POOL2D:
    case AIM__LAYER_AVG_POOL2D: {
        const aim__window *win = &L->win;
        const size_t f[6] = {win->kh, win->kw, win->sh, win->sw, win->pt, win->pl};
        for (size_t i = 0; i < 6; i++) put_u64(w, f[i]);
        break;
    }
    case AIM__LAYER_GLOBAL_AVG_POOL2D:
    case AIM__LAYER_FLATTEN:
        break;
    case AIM__LAYER_LSTM:
        put_u64(w, L->lstm_hidden);
        put_u64(w, L->lstm_layers);
        put_u32(w, L->lstm_sequences ? 1u : 0u);
        put_u32(w, (uint32_t)L->init);
        break;
    }
}

static void put_payload(writer *w, const aim__model_view *v, const aim_optimizer *o) {
    put_u32(w, (uint32_t)v->in_rank);
    for (size_t i = 0; i < v->in_rank; i++) put_u64(w, v->in_dims[i]);
    put_u64(w, v->max_batch);
    put_u32(w, v->input_gradient ? 1u : 0u);
    put_u32(w, (uint32_t)v->n_layers);
    for (size_t i = 0; i < v->n_layers; i++) put_layer(w, &v->layers[i]);
    put_u64(w, v->n_params);
    put_floats(w, v->params, v->n_params);
    if (!o) return;
    put_u32(w, (uint32_t)o->kind);
    put_u64(w, o->count);
    put_u64(w, o->steps);
    if (o->kind == AIM__OPT_SGD) {
        put_f32(w, o->sgd.momentum);
        put_f32(w, o->sgd.dampening);
        put_f32(w, o->sgd.weight_decay);
        put_u32(w, o->sgd.nesterov ? 1u : 0u);
        put_u32(w, o->sgd.check_finite ? 1u : 0u);
        put_u32(w, o->m ? 1u : 0u);
        if (o->m) put_floats(w, o->m, o->count);
    } else {
        put_f32(w, o->adam.beta1);
        put_f32(w, o->adam.beta2);
        put_f32(w, o->adam.epsilon);
        put_f32(w, o->adam.weight_decay);
        put_u32(w, o->adam.decoupled ? 1u : 0u);
        put_u32(w, o->adam.check_finite ? 1u : 0u);
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
    /* The floats dominate: check that 4 or 12 bytes per parameter fit first. */
    size_t per = optimizer ? 12 : 4, floats;
    if (!aim__mul(v.n_params, per, &floats) || floats > SIZE_MAX / 2) return AIM_ERR_OVERFLOW;
    writer w = {NULL, 0};
    put_payload(&w, &v, optimizer);
    *bytes = HEADER_BYTES + w.pos;
    return AIM_OK;
}

aim_status aim_model_serialize(const aim_model *model, const aim_optimizer *optimizer, void *buffer, size_t capacity,
                               size_t *written) {
    aim__model_view v;
    size_t need;
    if (!buffer || !written) return AIM_ERR_INVALID_ARGUMENT;
    aim_status st = aim_model_serialized_size(model, optimizer, &need);
    if (st != AIM_OK) return st;
    if (capacity < need) return AIM_ERR_SHAPE_MISMATCH;
    aim__model_get_view(model, &v);
    unsigned char *out = buffer;
    writer w = {out + HEADER_BYTES, 0};
    put_payload(&w, &v, optimizer);
    writer h = {out, 0};
    put_bytes(&h, MAGIC, 8);
    put_u32(&h, FORMAT_VERSION);
    put_u32(&h, optimizer ? FLAG_OPTIMIZER : 0u);
    put_u64(&h, (uint64_t)w.pos);
    put_u32(&h, crc32_update(0, out + HEADER_BYTES, w.pos));
    put_u32(&h, 0);
    *written = need;
    return AIM_OK;
}

/* ---- reading ------------------------------------------------------------------- */

typedef struct reader {
    const unsigned char *p;
    size_t len, pos;
    int bad; /* set once a read would pass the end; later reads return 0 */
} reader;

static int have(reader *r, size_t n) {
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return 0;
    }
    return 1;
}
static uint32_t get_u32(reader *r) {
    if (!have(r, 4)) return 0;
    const unsigned char *b = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t get_u64(reader *r) {
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}
static float get_f32(reader *r) {
    uint32_t u = get_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* A count of items of `size` bytes each that must still fit in the buffer. */
static size_t get_count(reader *r, size_t size) {
    uint64_t n = get_u64(r);
    if (r->bad || n > (uint64_t)((r->len - r->pos) / size)) {
        r->bad = 1;
        return 0;
    }
    return (size_t)n;
}
/* A size field: must fit in size_t (it is checked by the builders after). */
static size_t get_size(reader *r) {
    uint64_t n = get_u64(r);
    if (n > SIZE_MAX) r->bad = 1;
    return (size_t)n;
}
/* A 0/1 flag; anything else is corruption (one canonical encoding per model). */
static int32_t get_flag(reader *r) {
    uint32_t v = get_u32(r);
    if (v > 1) r->bad = 1;
    return (int32_t)v;
}
static void get_floats(reader *r, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = get_f32(r);
}

/* Reads one layer record and appends it through the public builder, which
 * validates every value again. */
static aim_status get_layer(reader *r, aim_model *m) {
    uint32_t kind = get_u32(r);
    switch (kind) {
    case AIM__LAYER_DENSE: {
        aim_dense_config c;
        (void)aim_dense_config_init(&c, get_size(r), AIM_ACT_IDENTITY);
        c.activation = (aim_activation)get_u32(r);
        c.alpha = get_f32(r);
        c.use_bias = get_flag(r);
        c.init = (aim_init)get_u32(r);
        return r->bad ? AIM_ERR_CORRUPT_DATA : aim_model_add_dense(m, &c);
    }
    case AIM__LAYER_ACTIVATION: {
        aim_activation a = (aim_activation)get_u32(r);
        float alpha = get_f32(r);
        return r->bad ? AIM_ERR_CORRUPT_DATA : aim_model_add_activation(m, a, alpha);
    }
    case AIM__LAYER_CONV2D: {
        aim_conv2d_config c;
        size_t f[12];
        for (size_t i = 0; i < 12; i++) f[i] = get_size(r);
        (void)aim_conv2d_config_init(&c, f[0], f[1], f[2], AIM_ACT_IDENTITY);
        c.stride_h = f[3];
        c.stride_w = f[4];
        c.dilation_h = f[5];
        c.dilation_w = f[6];
        c.padding = AIM_PAD_EXPLICIT; /* "same" was resolved to explicit sides when the layer was built */
        c.pad_top = f[7];
        c.pad_bottom = f[8];
        c.pad_left = f[9];
        c.pad_right = f[10];
        c.groups = f[11];
        c.activation = (aim_activation)get_u32(r);
        c.alpha = get_f32(r);
        c.use_bias = get_flag(r);
        c.init = (aim_init)get_u32(r);
        return r->bad ? AIM_ERR_CORRUPT_DATA : aim_model_add_conv2d(m, &c);
    }
    case AIM__LAYER_MAX_POOL2D:
    case AIM__LAYER_AVG_POOL2D: {
        aim_pool2d_config c;
        size_t f[6];
        for (size_t i = 0; i < 6; i++) f[i] = get_size(r);
        (void)aim_pool2d_config_init(&c, f[0], f[1]);
        c.stride_h = f[2];
        c.stride_w = f[3];
        c.pad_h = f[4];
        c.pad_w = f[5];
        if (r->bad) return AIM_ERR_CORRUPT_DATA;
        return kind == AIM__LAYER_MAX_POOL2D ? aim_model_add_max_pool2d(m, &c) : aim_model_add_avg_pool2d(m, &c);
    }
    case AIM__LAYER_GLOBAL_AVG_POOL2D:
        return aim_model_add_global_avg_pool2d(m);
    case AIM__LAYER_FLATTEN:
        return aim_model_add_flatten(m);
    case AIM__LAYER_LSTM: {
        aim_lstm_config c;
        size_t hidden = get_size(r), layers = get_size(r);
        (void)aim_lstm_config_init(&c, hidden, layers);
        c.return_sequences = get_flag(r);
        c.init = (aim_init)get_u32(r);
        return r->bad ? AIM_ERR_CORRUPT_DATA : aim_model_add_lstm(m, &c);
    }
    }
    return AIM_ERR_CORRUPT_DATA;
}

static aim_status get_optimizer(reader *r, const aim_allocator *allocator, size_t n_params, aim_optimizer **out) {
    uint32_t kind = get_u32(r);
    size_t count = get_size(r);
    uint64_t steps = get_u64(r);
    if (r->bad || count != n_params) return AIM_ERR_CORRUPT_DATA;
    aim_optimizer *o = NULL;
    aim_status st;
    if (kind == AIM__OPT_SGD) {
        aim_sgd_config c;
        (void)aim_sgd_config_init(&c);
        c.momentum = get_f32(r);
        c.dampening = get_f32(r);
        c.weight_decay = get_f32(r);
        c.nesterov = get_flag(r);
        c.check_finite = get_flag(r);
        uint32_t has_buf = (uint32_t)get_flag(r);
        if (r->bad || has_buf != (c.momentum > 0.0f ? 1u : 0u) || (has_buf && count > (r->len - r->pos) / 4))
            return AIM_ERR_CORRUPT_DATA;
        st = aim_sgd_create(allocator, &c, count, &o);
        if (st != AIM_OK) return st == AIM_ERR_OUT_OF_MEMORY ? st : AIM_ERR_CORRUPT_DATA;
        if (has_buf) get_floats(r, o->m, count);
    } else if (kind == AIM__OPT_ADAM) {
        aim_adam_config c;
        (void)aim_adam_config_init(&c);
        c.beta1 = get_f32(r);
        c.beta2 = get_f32(r);
        c.epsilon = get_f32(r);
        c.weight_decay = get_f32(r);
        c.decoupled = get_flag(r);
        c.check_finite = get_flag(r);
        /* m and v: 8 bytes per parameter must remain. */
        if (r->bad || count > (r->len - r->pos) / 8) return AIM_ERR_CORRUPT_DATA;
        st = aim_adam_create(allocator, &c, count, &o);
        if (st != AIM_OK) return st == AIM_ERR_OUT_OF_MEMORY ? st : AIM_ERR_CORRUPT_DATA;
        get_floats(r, o->m, count);
        get_floats(r, o->v, count);
    } else {
        return AIM_ERR_CORRUPT_DATA;
    }
    o->steps = steps;
    if (r->bad) {
        aim_optimizer_free(o);
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

aim_status aim_model_deserialize(const aim_allocator *allocator, const void *buffer, size_t len, aim_model **model,
                                 aim_optimizer **optimizer) {
    if (!buffer || !model) return AIM_ERR_INVALID_ARGUMENT;
    aim_allocator a;
    if (aim__allocator_resolve(allocator, &a) != AIM_OK) return AIM_ERR_INVALID_ARGUMENT;
    const unsigned char *in = buffer;
    if (len < HEADER_BYTES || memcmp(in, MAGIC, 8) != 0) return AIM_ERR_CORRUPT_DATA;
    reader h = {in, HEADER_BYTES, 8, 0};
    uint32_t version = get_u32(&h), flags = get_u32(&h);
    uint64_t payload = get_u64(&h);
    uint32_t crc = get_u32(&h), reserved = get_u32(&h);
    if (version > FORMAT_VERSION) return AIM_ERR_VERSION;
    if (version == 0 || (flags & ~FLAG_OPTIMIZER) != 0 || reserved != 0 || payload != (uint64_t)(len - HEADER_BYTES))
        return AIM_ERR_CORRUPT_DATA;
    if (crc32_update(0, in + HEADER_BYTES, len - HEADER_BYTES) != crc) return AIM_ERR_CORRUPT_DATA;

    reader r = {in + HEADER_BYTES, len - HEADER_BYTES, 0, 0};
    aim_model *m = NULL;
    aim_optimizer *o = NULL;
    aim_status st = AIM_ERR_CORRUPT_DATA;
    size_t rank = get_u32(&r), dims[AIM_MAX_RANK];
    if (r.bad || rank == 0 || rank > AIM_MAX_RANK - 1) goto fail;
    for (size_t i = 0; i < rank; i++) dims[i] = get_size(&r);
    aim_compile_config cc;
    (void)aim_compile_config_init(&cc);
    cc.max_batch = get_size(&r);
    cc.input_gradient = get_flag(&r);
    uint32_t n_layers = get_u32(&r);
    /* Each layer record takes at least 4 bytes. */
    if (r.bad || n_layers == 0 || n_layers > (r.len - r.pos) / 4) goto fail;
    st = as_read_status(aim_model_create(&a, rank, dims, &m));
    if (st != AIM_OK) goto fail;
    for (uint32_t i = 0; i < n_layers; i++) {
        st = as_read_status(get_layer(&r, m));
        if (st != AIM_OK) goto fail;
    }
    size_t n_params = get_count(&r, 4);
    /* Before compile allocates: the parameters the layers imply must be
     * exactly those the buffer holds. */
    size_t implied = 0;
    aim__model_view v;
    aim__model_get_view(m, &v);
    for (size_t i = 0; i < v.n_layers; i++)
        if (!aim__add(implied, v.layers[i].weight_count + v.layers[i].bias_count, &implied)) r.bad = 1;
    if (r.bad || implied != n_params) {
        st = AIM_ERR_CORRUPT_DATA;
        goto fail;
    }
    st = aim_model_compile(m, &cc);
    if (st != AIM_OK) {
        st = (st == AIM_ERR_OUT_OF_MEMORY || st == AIM_ERR_OVERFLOW) ? st : AIM_ERR_CORRUPT_DATA;
        goto fail;
    }
    float *params;
    size_t count;
    (void)aim_model_parameters(m, &params, &count); /* compiled: cannot fail; count == n_params */
    get_floats(&r, params, count);
    if (flags & FLAG_OPTIMIZER) {
        st = get_optimizer(&r, &a, n_params, &o);
        if (st != AIM_OK) goto fail;
    }
    if (r.bad || r.pos != r.len) {
        st = AIM_ERR_CORRUPT_DATA;
        goto fail;
    }
    *model = m;
    if (optimizer) *optimizer = o;
    else aim_optimizer_free(o);
    return AIM_OK;
fail:
    aim_optimizer_free(o);
    aim_model_free(m);
    return st;
}
