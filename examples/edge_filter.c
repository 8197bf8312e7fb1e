/*
 * libaimodel example - the Sobel edge detector as a convolution.
 * SPDX-License-Identifier: MIT
 */
/*
 * No training: a conv2d layer with two fixed 3x3 kernels (Sobel's horizontal
 * and vertical derivatives) runs one forward pass over a Fashion-MNIST test
 * image; the edge strength sqrt(gx^2 + gy^2) is printed beside the input as
 * ASCII art. The library computes a classic image filter with the same
 * im2col + GEMM path that trains the CNN.
 *
 *   Gx = [-1 0 1; -2 0 2; -1 0 1]    Gy = [-1 -2 -1; 0 0 0; 1 2 1]
 *
 * Usage: edge_filter [--data DIR] [--seed N] [--synthetic]; the seed picks the image.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"

/* Darkest to brightest. */
static const char RAMP[] = " .:-=+*#%@";

static void print_side_by_side(const float *left, float left_max, const float *right, float right_max) {
    const size_t levels = sizeof RAMP - 2;
    printf("%-*s   %s\n", FM_COLS * 2, "input", "edges (Sobel magnitude)");
    for (size_t r = 0; r < FM_ROWS; r++) {
        for (size_t c = 0; c < FM_COLS; c++) {
            size_t k = (size_t)(left[r * FM_COLS + c] / left_max * (float)levels + 0.5f);
            putchar(RAMP[k > levels ? levels : k]);
            putchar(RAMP[k > levels ? levels : k]);
        }
        printf("   ");
        for (size_t c = 0; c < FM_COLS; c++) {
            size_t k = (size_t)(right[r * FM_COLS + c] / right_max * (float)levels + 0.5f);
            putchar(RAMP[k > levels ? levels : k]);
            putchar(RAMP[k > levels ? levels : k]);
        }
        putchar('\n');
    }
}

int main(int argc, char **argv) {
    const ex_program program = {
        .name = "edge_filter",
        .summary = "Runs the Sobel edge detector as a conv2d forward over a Fashion-MNIST image (--seed picks it).",
        .options = EX_OPT_DATA | EX_OPT_SEED,
        .seed_help = "picks the test image: number N modulo the test images",
    };
    ex_options opt;
    ex_options_default(&opt);
    opt.seed = 0;
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    fm_set test = {0};
    aim_model *model = NULL;
    aim_workspace *workspace = NULL;
    const char *source = "fashion-mnist";
    char err[256];

    if (!ex_use_synthetic(&opt)) {
        if (fm_load(opt.data_dir, FM_TEST, &test, err, sizeof err) != 0) {
            fprintf(stderr, "error: cannot read Fashion-MNIST%s: %s\n", opt.data_given ? " (--data)" : "", err);
            goto cleanup;
        }
    } else {
        source = "synthetic";
        if (fm_synthetic(7, 100, &test, err, sizeof err) != 0) {
            fprintf(stderr, "edge_filter: %s\n", err);
            goto cleanup;
        }
    }
    const size_t index = (size_t)(opt.seed % test.count);

    /* Two filters, "same" padding so the edge map is 28x28, no bias, no activation. */
    const size_t dims[3] = {1, FM_ROWS, FM_COLS};
    aim_conv2d_config conv;
    aim_compile_config compile;
    EX_TRY(aim_model_create(NULL, 3, dims, &model), "");
    EX_TRY(aim_conv2d_config_init(&conv, 2, 3, 3, AIM_ACT_IDENTITY), "");
    conv.padding = AIM_PAD_SAME;
    conv.use_bias = 0;
    EX_TRY(aim_model_add_conv2d(model, &conv), aim_model_last_error(model));
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = 1;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));

    /* OIHW: filter 0 is Gx, filter 1 is Gy. */
    static const float sobel[2][9] = {{-1, 0, 1, -2, 0, 2, -1, 0, 1}, {-1, -2, -1, 0, 0, 0, 1, 2, 1}};
    float *params = NULL;
    size_t count = 0;
    EX_TRY(aim_model_parameters(model, &params, &count), aim_model_last_error(model));
    if (count != sizeof sobel / sizeof sobel[0][0]) {
        fprintf(stderr, "edge_filter: expected 18 weights, the model has %zu\n", count);
        goto cleanup;
    }
    memcpy(params, sobel, sizeof sobel);

    float grads[2 * FM_PIXELS], edges[FM_PIXELS];
    const float *image = test.images + index * FM_PIXELS;
    EX_TRY(aim_workspace_create(model, NULL, 1, &workspace), "");
    EX_TRY(aim_model_predict(model, workspace, image, FM_PIXELS, 1, grads, sizeof grads / sizeof grads[0]),
           aim_workspace_last_error(workspace));

    float edge_max = 1e-6f, image_max = 1e-6f, edge_sum = 0.0f;
    for (size_t i = 0; i < FM_PIXELS; i++) {
        edges[i] = sqrtf(grads[i] * grads[i] + grads[FM_PIXELS + i] * grads[FM_PIXELS + i]);
        edge_sum += edges[i];
        if (edges[i] > edge_max) edge_max = edges[i];
        if (image[i] > image_max) image_max = image[i];
    }
    printf("edge_filter: %s test image %zu (label %d)\n\n", source, index, (int)test.labels[index]);
    print_side_by_side(image, image_max, edges, edge_max);
    printf("\nRESULT edge_filter image=%zu label=%d edge_max=%.4f edge_mean=%.4f data=%s\n", index,
           (int)test.labels[index], (double)edge_max, (double)(edge_sum / FM_PIXELS), source);
    exit_code = 0;

cleanup:
    aim_workspace_free(workspace);
    aim_model_free(model);
    fm_free(&test);
    return exit_code;
}
