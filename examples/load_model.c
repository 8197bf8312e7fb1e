/*
 * libaimodel example - load a saved model from a file and classify with it.
 * SPDX-License-Identifier: MIT
 */
/*
 * Reads a file written by save_model (or any aim_model_serialize() buffer of
 * a classifier with 784 inputs and 10 outputs: the MLP, the CNN, the LSTM)
 * into memory with stdio, rebuilds the model with aim_model_deserialize(),
 * which validates every field and the checksum, and reports whether the
 * optimizer state came with it. Then it classifies the first --count test
 * images, one line each, and measures the accuracy on the whole test set,
 * which equals the accuracy save_model printed: the weights are the same
 * bits and the evaluation is the same.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"

#define DEFAULT_IN "mlp.aimodel"
#define DEFAULT_COUNT 10

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "load_model",
        .summary = "Loads a model saved by save_model and classifies Fashion-MNIST test images with it.",
        .options = EX_OPT_DATA,
        .extra_help = "  --in FILE     the saved model (default " DEFAULT_IN ")\n"
                      "  --count N     test images to show one by one (default 10)\n",
    };
    const char *in_path = DEFAULT_IN;
    const char *count_text = NULL;
    if (ex_take_option(&argc, argv, program.name, "--in", &in_path) < 0 ||
        ex_take_option(&argc, argv, program.name, "--count", &count_text) < 0) {
        return EX_EXIT_USAGE;
    }
    size_t show = DEFAULT_COUNT;
    if (count_text != NULL && ex_parse_size(count_text, 0, 1000000, &show) != 0) {
        fprintf(stderr, "%s: invalid value '%s' for --count (try --help)\n", program.name, count_text);
        return EX_EXIT_USAGE;
    }
    ex_options opt;
    ex_options_default(&opt);
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    char *bytes = NULL; /* the serialized model, as the file holds it */
    size_t size = 0;
    aim_model *model = NULL;
    aim_optimizer *optimizer = NULL;
    aim_workspace *workspace = NULL;
    fm_set train = {0}, validation = {0}, test = {0};
    float *scratch = NULL;
    size_t scratch_count = 0;
    const char *source = "";

    if (ex_read_file(in_path, &bytes, &size) != 0) {
        goto cleanup;
    }
    /* A failed load leaves nothing allocated and no model to ask for a
     * message: the status and the message say what was wrong with the bytes. */
    char why[256] = "";
    aim_status status = aim_model_deserialize(NULL, bytes, size, &model, &optimizer, why, sizeof why);
    if (status != AIM_OK) {
        fprintf(stderr, "error: cannot load %s: %s: %s\n", in_path, aim_status_str(status), why);
        goto cleanup;
    }
    free(bytes); /* the model owns copies of everything it needs */
    bytes = NULL;

    const size_t outputs = aim_model_output_size(model);
    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    printf("load_model: %s, %zu bytes: %zu layers, %zu inputs, %zu outputs, %zu parameters\n", in_path, size,
           aim_model_layer_count(model), aim_model_input_size(model), outputs, param_count);
    if (optimizer != NULL) {
        printf("optimizer state: present (%llu steps taken; training can resume exactly)\n",
               (unsigned long long)aim_optimizer_steps(optimizer));
    } else {
        printf("optimizer state: absent (weights only)\n");
    }
    if (aim_model_input_size(model) != FM_PIXELS || outputs != FM_CLASSES) {
        fprintf(stderr, "error: %s is not a Fashion-MNIST classifier (%d inputs, %d outputs expected)\n", in_path,
                FM_PIXELS, FM_CLASSES);
        goto cleanup;
    }

    if (ex_load_fashion_mnist(&opt, &train, &validation, &test, &source) != 0) {
        goto cleanup;
    }
    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &workspace), "");
    scratch_count = (size_t)EX_EVAL_BATCH * outputs;
    scratch = malloc(scratch_count * sizeof *scratch);
    if (scratch == NULL) {
        fprintf(stderr, "error: out of memory\n");
        goto cleanup;
    }

    if (show > test.count) {
        show = test.count;
    }
    printf("first %zu test images (%s):\n", show, source);
    for (size_t first = 0; first < show; first += EX_EVAL_BATCH) {
        size_t n = show - first < EX_EVAL_BATCH ? show - first : EX_EVAL_BATCH;
        EX_TRY(aim_model_predict(model, workspace, test.images + first * FM_PIXELS, n * FM_PIXELS, n, scratch,
                                 n * outputs),
               aim_workspace_last_error(workspace));
        for (size_t i = 0; i < n; ++i) {
            const float *row = scratch + i * outputs;
            int32_t predicted = 0;
            for (size_t j = 1; j < outputs; ++j) {
                if (row[j] > row[predicted]) {
                    predicted = (int32_t)j;
                }
            }
            const int32_t truth = test.labels[first + i];
            printf("  #%-5zu predicted %-12s true %-12s %s\n", first + i, fm_class_name(predicted),
                   fm_class_name(truth), predicted == truth ? "ok" : "WRONG");
        }
    }

    const ex_rows test_rows = {.x = test.images, .x_width = FM_PIXELS, .labels = test.labels, .count = test.count};
    double test_accuracy = 0.0;
    EX_TRY(ex_accuracy(model, workspace, EX_EVAL_BATCH, &test_rows, 0.5f, scratch, scratch_count, &test_accuracy),
           aim_workspace_last_error(workspace));
    printf("test accuracy %.4f on %zu images\n", test_accuracy, test.count);
    printf("RESULT load_model test_accuracy=%.4f file=%s\n", test_accuracy, in_path);
    exit_code = 0;

cleanup:
    free(scratch);
    fm_free(&train);
    fm_free(&validation);
    fm_free(&test);
    aim_workspace_free(workspace);
    aim_optimizer_free(optimizer);
    aim_model_free(model);
    free(bytes);
    return exit_code;
}
