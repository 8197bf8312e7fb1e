/*
 * libaimodel examples - Fashion-MNIST reader and a synthetic stand-in.
 * SPDX-License-Identifier: MIT
 */
/*
 * Reads the four gzipped IDX files of Fashion-MNIST
 * (https://github.com/zalandoresearch/fashion-mnist) with zlib, and draws a
 * synthetic data set of the same shape for machines that lack them.
 *
 * Functions return 0 on success and -1 on failure, with a one-line reason in
 * the caller's `err` buffer; nothing here prints or exits.
 */
#ifndef EXAMPLES_FASHION_MNIST_H
#define EXAMPLES_FASHION_MNIST_H

#include <stddef.h>
#include <stdint.h>

#define FM_ROWS 28
#define FM_COLS 28
#define FM_PIXELS (FM_ROWS * FM_COLS)
#define FM_CLASSES 10
#define FM_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

/* Which half of the data set to read. */
typedef enum fm_split {
    FM_TRAIN = 0, /* train-*-ubyte: 60000 samples */
    FM_TEST = 1   /* t10k-*-ubyte: 10000 samples */
} fm_split;

/* A set of samples; owns both arrays (release with fm_free()). */
typedef struct fm_set {
    float *images;   /* (count, 784) row-major, pixel / 255 in [0, 1] */
    int32_t *labels; /* (count) in [0, FM_CLASSES) */
    size_t count;
} fm_set;

/*
 * Reads one split from `dir`. Each file is looked up as NAME.gz, then as NAME
 * uncompressed. Checks magic numbers (2051 images, 2049 labels, big-endian),
 * 28x28 images, equal counts, labels below 10, truncation and the gzip CRC.
 * On failure `*out` is left empty.
 */
int fm_load(const char *dir, fm_split split, fm_set *out, char *err, size_t err_size);

/*
 * Draws `count` 28x28 images of 10 procedurally drawn classes (bars at four
 * angles, hollow and filled boxes, plus, X, ring, double bar), jittered in
 * position, size, angle, stroke and brightness, with Gaussian pixel noise.
 * The same seed gives the same set.
 */
int fm_synthetic(uint64_t seed, size_t count, fm_set *out, char *err, size_t err_size);

/*
 * Moves the last `tail` samples of `from` into a new set `*out` (e.g. a
 * validation split); `from` keeps the first count - tail.
 */
int fm_split_tail(fm_set *from, size_t tail, fm_set *out, char *err, size_t err_size);

/* Frees a set's arrays and empties it. NULL and empty sets are allowed. */
void fm_free(fm_set *set);

/* A two-class view of a set: 1 for labels >= first_positive, else 0. */
typedef struct fm_binary {
    float *y;        /* (count) 0.0 or 1.0, targets for a BCE loss */
    int32_t *labels; /* (count) 0 or 1, for counting correct answers */
    size_t count;
} fm_binary;

int fm_make_binary(const fm_set *set, int32_t first_positive, fm_binary *out, char *err, size_t err_size);

/* Frees and empties. NULL is allowed. */
void fm_binary_free(fm_binary *binary);

/* The class's name in the real data set ("T-shirt/top", ...), or "?". */
const char *fm_class_name(int32_t label);

#endif
