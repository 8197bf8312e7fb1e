/*
 * libaimodel examples - Fashion-MNIST reader and a synthetic stand-in.
 * SPDX-License-Identifier: MIT
 */
#include "fashion_mnist.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "aimodel.h"

#define IDX_MAGIC_IMAGES 2051u /* 0x00000803: unsigned bytes, 3 dimensions */
#define IDX_MAGIC_LABELS 2049u /* 0x00000801: unsigned bytes, 1 dimension */

/* A header count above this is taken as corruption rather than allocated. */
#define IDX_MAX_COUNT 1000000u

/* Images are converted from bytes to floats this many at a time. */
#define READ_CHUNK_IMAGES 256u

static void set_error(char *err, size_t err_size, const char *format, ...)
{
    if (err == NULL || err_size == 0) {
        return;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
}

/* Opens NAME.gz in `dir`, or NAME if there is no NAME.gz. gzopen reads an
 * uncompressed file transparently, so both go through the same reader. */
static gzFile open_idx(const char *dir, const char *name, char *path, size_t path_size, char *err,
                       size_t err_size)
{
    int n = snprintf(path, path_size, "%s/%s.gz", dir, name);
    if (n < 0 || (size_t)n >= path_size) {
        set_error(err, err_size, "data directory path too long: %s", dir);
        return NULL;
    }
    errno = 0;
    gzFile file = gzopen(path, "rb");
    if (file != NULL) {
        return file;
    }
    int gz_errno = errno;

    char plain[4096];
    n = snprintf(plain, sizeof plain, "%s/%s", dir, name);
    if (n >= 0 && (size_t)n < sizeof plain) {
        file = gzopen(plain, "rb");
        if (file != NULL) {
            snprintf(path, path_size, "%s", plain);
            return file;
        }
    }
    set_error(err, err_size, "cannot open %s: %s", path,
              gz_errno != 0 ? strerror(gz_errno) : "gzopen failed");
    return NULL;
}

/* Reads exactly `size` bytes or explains why not. */
static int read_exact(gzFile file, void *buffer, size_t size, const char *path, char *err, size_t err_size)
{
    unsigned char *p = buffer;
    while (size > 0) {
        unsigned chunk = size > (1u << 20) ? (1u << 20) : (unsigned)size;
        int got = gzread(file, p, chunk);
        if (got < 0) {
            int code = 0;
            const char *message = gzerror(file, &code);
            /* zlib's message already starts with the path */
            if (code == Z_ERRNO) {
                set_error(err, err_size, "%s: read failed: %s", path, strerror(errno));
            } else {
                set_error(err, err_size, "%s", message);
            }
            return -1;
        }
        if (got == 0) {
            set_error(err, err_size, "%s: file is truncated", path);
            return -1;
        }
        p += got;
        size -= (size_t)got;
    }
    return 0;
}

/* Reading one byte past the payload must find the end of the stream; zlib
 * checks the gzip CRC and length only when it gets there. */
static int expect_end(gzFile file, const char *path, char *err, size_t err_size)
{
    unsigned char extra;
    int got = gzread(file, &extra, 1);
    if (got < 0) {
        int code = 0;
        const char *message = gzerror(file, &code);
        if (code == Z_ERRNO) {
            set_error(err, err_size, "%s: read failed: %s", path, strerror(errno));
        } else {
            set_error(err, err_size, "%s", message); /* starts with the path */
        }
        return -1;
    }
    if (got > 0) {
        set_error(err, err_size, "%s: unexpected data after the last sample", path);
        return -1;
    }
    return 0;
}

static uint32_t big_endian_u32(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

static int read_images(const char *dir, const char *name, float **images_out, size_t *count_out, char *err,
                       size_t err_size)
{
    char path[4096];
    gzFile file = open_idx(dir, name, path, sizeof path, err, err_size);
    if (file == NULL) {
        return -1;
    }
    float *images = NULL;
    unsigned char *bytes = NULL;

    /* magic, count, rows, cols: four big-endian uint32 */
    unsigned char header[16];
    if (read_exact(file, header, sizeof header, path, err, err_size) != 0) {
        goto fail;
    }
    uint32_t magic = big_endian_u32(header);
    uint32_t count = big_endian_u32(header + 4);
    uint32_t rows = big_endian_u32(header + 8);
    uint32_t cols = big_endian_u32(header + 12);
    if (magic != IDX_MAGIC_IMAGES) {
        set_error(err, err_size, "%s: magic number %lu, expected %u for an IDX image file", path,
                  (unsigned long)magic, IDX_MAGIC_IMAGES);
        goto fail;
    }
    if (rows != FM_ROWS || cols != FM_COLS) {
        set_error(err, err_size, "%s: images are %lux%lu, expected %dx%d", path, (unsigned long)rows,
                  (unsigned long)cols, FM_ROWS, FM_COLS);
        goto fail;
    }
    if (count == 0 || count > IDX_MAX_COUNT) {
        set_error(err, err_size, "%s: implausible image count %lu", path, (unsigned long)count);
        goto fail;
    }

    images = malloc((size_t)count * FM_PIXELS * sizeof *images);
    bytes = malloc((size_t)READ_CHUNK_IMAGES * FM_PIXELS);
    if (images == NULL || bytes == NULL) {
        set_error(err, err_size, "%s: out of memory for %lu images", path, (unsigned long)count);
        goto fail;
    }
    for (size_t first = 0; first < count; first += READ_CHUNK_IMAGES) {
        size_t n = count - first < READ_CHUNK_IMAGES ? count - first : READ_CHUNK_IMAGES;
        if (read_exact(file, bytes, n * FM_PIXELS, path, err, err_size) != 0) {
            goto fail;
        }
        float *dst = images + first * FM_PIXELS;
        for (size_t i = 0; i < n * FM_PIXELS; ++i) {
            dst[i] = (float)bytes[i] / 255.0f;
        }
    }
    if (expect_end(file, path, err, err_size) != 0) {
        goto fail;
    }
    free(bytes);
    gzclose(file);
    *images_out = images;
    *count_out = count;
    return 0;

fail:
    free(bytes);
    free(images);
    gzclose(file);
    return -1;
}

static int read_labels(const char *dir, const char *name, int32_t **labels_out, size_t *count_out, char *err,
                       size_t err_size)
{
    char path[4096];
    gzFile file = open_idx(dir, name, path, sizeof path, err, err_size);
    if (file == NULL) {
        return -1;
    }
    int32_t *labels = NULL;
    unsigned char *bytes = NULL;

    /* magic, count: two big-endian uint32 */
    unsigned char header[8];
    if (read_exact(file, header, sizeof header, path, err, err_size) != 0) {
        goto fail;
    }
    uint32_t magic = big_endian_u32(header);
    uint32_t count = big_endian_u32(header + 4);
    if (magic != IDX_MAGIC_LABELS) {
        set_error(err, err_size, "%s: magic number %lu, expected %u for an IDX label file", path,
                  (unsigned long)magic, IDX_MAGIC_LABELS);
        goto fail;
    }
    if (count == 0 || count > IDX_MAX_COUNT) {
        set_error(err, err_size, "%s: implausible label count %lu", path, (unsigned long)count);
        goto fail;
    }

    labels = malloc((size_t)count * sizeof *labels);
    bytes = malloc(count);
    if (labels == NULL || bytes == NULL) {
        set_error(err, err_size, "%s: out of memory for %lu labels", path, (unsigned long)count);
        goto fail;
    }
    if (read_exact(file, bytes, count, path, err, err_size) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < count; ++i) {
        if (bytes[i] >= FM_CLASSES) {
            set_error(err, err_size, "%s: label %u at index %zu is not a class 0..%d", path, (unsigned)bytes[i], i,
                      FM_CLASSES - 1);
            goto fail;
        }
        labels[i] = bytes[i];
    }
    if (expect_end(file, path, err, err_size) != 0) {
        goto fail;
    }
    free(bytes);
    gzclose(file);
    *labels_out = labels;
    *count_out = count;
    return 0;

fail:
    free(bytes);
    free(labels);
    gzclose(file);
    return -1;
}

int fm_load(const char *dir, fm_split split, fm_set *out, char *err, size_t err_size)
{
    if (dir == NULL || out == NULL || (split != FM_TRAIN && split != FM_TEST)) {
        set_error(err, err_size, "fm_load: invalid argument");
        return -1;
    }
    const char *image_name = split == FM_TRAIN ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *label_name = split == FM_TRAIN ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";

    fm_set set = {0};
    size_t image_count = 0;
    size_t label_count = 0;
    if (read_images(dir, image_name, &set.images, &image_count, err, err_size) != 0) {
        return -1;
    }
    if (read_labels(dir, label_name, &set.labels, &label_count, err, err_size) != 0) {
        fm_free(&set);
        return -1;
    }
    if (image_count != label_count) {
        set_error(err, err_size, "%s/%s has %zu images but %s has %zu labels", dir, image_name, image_count,
                  label_name, label_count);
        fm_free(&set);
        return -1;
    }
    set.count = image_count;
    *out = set;
    return 0;
}

/* ---- synthetic data ---------------------------------------------------- */

/* The jitter of one drawn sample, in pixels and radians. */
typedef struct shape_params {
    float cx, cy;      /* centre offset from the image centre */
    float angle;       /* rotation jitter added to the class's own angle */
    float scale;       /* size factor */
    float half_width;  /* half the stroke width */
    float brightness;  /* ink intensity */
} shape_params;

/* Whether a stroke of half length `half_len` through the centre at angle
 * `theta`, optionally shifted sideways by `offset`, covers (dx, dy). */
static int on_bar(float dx, float dy, float theta, float half_len, float offset, float half_width)
{
    float along = dx * cosf(theta) + dy * sinf(theta);
    float across = -dx * sinf(theta) + dy * cosf(theta) - offset;
    return fabsf(along) <= half_len && fabsf(across) <= half_width;
}

/* Ink of class `label` at pixel offset (dx, dy) from the shape's centre. */
static int ink(int32_t label, float dx, float dy, const shape_params *p)
{
    const float quarter = 0.78539816f; /* pi / 4 */
    float a = p->angle;
    float len = 10.0f * p->scale;
    float w = p->half_width;
    float box = 8.0f * p->scale;
    float chebyshev = fmaxf(fabsf(dx), fabsf(dy));

    switch (label) {
    case 0: return on_bar(dx, dy, a, len, 0.0f, w);                 /* horizontal bar */
    case 1: return on_bar(dx, dy, a + 2.0f * quarter, len, 0.0f, w); /* vertical bar */
    case 2: return on_bar(dx, dy, a + quarter, len, 0.0f, w);        /* diagonal \ */
    case 3: return on_bar(dx, dy, a - quarter, len, 0.0f, w);        /* diagonal / */
    case 4: return chebyshev <= box && chebyshev >= box - 2.0f * w;  /* hollow box */
    case 5: return chebyshev <= 0.75f * box;                         /* filled box */
    case 6:                                                          /* plus */
        return on_bar(dx, dy, a, len, 0.0f, w) || on_bar(dx, dy, a + 2.0f * quarter, len, 0.0f, w);
    case 7:                                                          /* X */
        return on_bar(dx, dy, a + quarter, len, 0.0f, w) || on_bar(dx, dy, a - quarter, len, 0.0f, w);
    case 8:                                                          /* ring */
        return fabsf(sqrtf(dx * dx + dy * dy) - box) <= w;
    default:                                                         /* double horizontal bar */
        return on_bar(dx, dy, a, len, 4.0f * p->scale, w) || on_bar(dx, dy, a, len, -4.0f * p->scale, w);
    }
}

/* A uniform float in [low, high). */
static aim_status uniform(aim_rng *rng, float low, float high, float *out)
{
    float u = 0.0f;
    aim_status status = aim_rng_uniform(rng, &u);
    if (status == AIM_OK) {
        *out = low + (high - low) * u;
    }
    return status;
}

static aim_status draw_sample(aim_rng *rng, float *image, int32_t *label)
{
    uint64_t cls = 0;
    shape_params p;
    aim_status status = aim_rng_below(rng, FM_CLASSES, &cls);
    if (status == AIM_OK) status = uniform(rng, -3.0f, 3.0f, &p.cx);
    if (status == AIM_OK) status = uniform(rng, -3.0f, 3.0f, &p.cy);
    if (status == AIM_OK) status = uniform(rng, -0.15f, 0.15f, &p.angle);
    if (status == AIM_OK) status = uniform(rng, 0.8f, 1.2f, &p.scale);
    if (status == AIM_OK) status = uniform(rng, 0.9f, 1.8f, &p.half_width);
    if (status == AIM_OK) status = uniform(rng, 0.6f, 1.0f, &p.brightness);
    if (status != AIM_OK) {
        return status;
    }
    *label = (int32_t)cls;

    for (int y = 0; y < FM_ROWS; ++y) {
        for (int x = 0; x < FM_COLS; ++x) {
            /* pixel centres, relative to the shape's centre */
            float dx = (float)x + 0.5f - 0.5f * FM_COLS - p.cx;
            float dy = (float)y + 0.5f - 0.5f * FM_ROWS - p.cy;
            float noise = 0.0f;
            status = aim_rng_normal(rng, &noise);
            if (status != AIM_OK) {
                return status;
            }
            float v = (ink(*label, dx, dy, &p) ? p.brightness : 0.0f) + 0.15f * noise;
            image[y * FM_COLS + x] = fminf(fmaxf(v, 0.0f), 1.0f);
        }
    }
    return AIM_OK;
}

int fm_synthetic(uint64_t seed, size_t count, fm_set *out, char *err, size_t err_size)
{
    if (out == NULL || count == 0 || count > IDX_MAX_COUNT) {
        set_error(err, err_size, "fm_synthetic: invalid argument");
        return -1;
    }
    fm_set set = {0};
    aim_rng *rng = NULL;
    set.images = malloc(count * FM_PIXELS * sizeof *set.images);
    set.labels = malloc(count * sizeof *set.labels);
    if (set.images == NULL || set.labels == NULL) {
        set_error(err, err_size, "out of memory for %zu synthetic images", count);
        fm_free(&set);
        return -1;
    }
    aim_status status = aim_rng_create(NULL, seed, &rng);
    for (size_t i = 0; status == AIM_OK && i < count; ++i) {
        status = draw_sample(rng, set.images + i * FM_PIXELS, &set.labels[i]);
    }
    aim_rng_free(rng);
    if (status != AIM_OK) {
        set_error(err, err_size, "synthetic data: %s", aim_status_str(status));
        fm_free(&set);
        return -1;
    }
    set.count = count;
    *out = set;
    return 0;
}

int fm_split_tail(fm_set *from, size_t tail, fm_set *out, char *err, size_t err_size)
{
    if (from == NULL || out == NULL || tail == 0 || tail >= from->count) {
        set_error(err, err_size, "cannot split %zu samples off a set of %zu", tail,
                  from != NULL ? from->count : 0);
        return -1;
    }
    size_t keep = from->count - tail;
    fm_set set = {0};
    set.images = malloc(tail * FM_PIXELS * sizeof *set.images);
    set.labels = malloc(tail * sizeof *set.labels);
    if (set.images == NULL || set.labels == NULL) {
        set_error(err, err_size, "out of memory for a split of %zu samples", tail);
        fm_free(&set);
        return -1;
    }
    memcpy(set.images, from->images + keep * FM_PIXELS, tail * FM_PIXELS * sizeof *set.images);
    memcpy(set.labels, from->labels + keep, tail * sizeof *set.labels);
    set.count = tail;
    from->count = keep;
    *out = set;
    return 0;
}

void fm_free(fm_set *set)
{
    if (set == NULL) {
        return;
    }
    free(set->images);
    free(set->labels);
    set->images = NULL;
    set->labels = NULL;
    set->count = 0;
}

int fm_make_binary(const fm_set *set, int32_t first_positive, fm_binary *out, char *err, size_t err_size)
{
    if (set == NULL || out == NULL || set->count == 0) {
        set_error(err, err_size, "fm_make_binary: invalid argument");
        return -1;
    }
    fm_binary binary = {0};
    binary.y = malloc(set->count * sizeof *binary.y);
    binary.labels = malloc(set->count * sizeof *binary.labels);
    if (binary.y == NULL || binary.labels == NULL) {
        set_error(err, err_size, "out of memory for %zu binary targets", set->count);
        fm_binary_free(&binary);
        return -1;
    }
    for (size_t i = 0; i < set->count; ++i) {
        binary.labels[i] = set->labels[i] >= first_positive ? 1 : 0;
        binary.y[i] = (float)binary.labels[i];
    }
    binary.count = set->count;
    *out = binary;
    return 0;
}

void fm_binary_free(fm_binary *binary)
{
    if (binary == NULL) {
        return;
    }
    free(binary->y);
    free(binary->labels);
    binary->y = NULL;
    binary->labels = NULL;
    binary->count = 0;
}

const char *fm_class_name(int32_t label)
{
    static const char *const names[FM_CLASSES] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    return label >= 0 && label < FM_CLASSES ? names[label] : "?";
}
