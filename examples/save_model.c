/*
 * libaimodel example - train the seed MLP and save it, with its optimizer, to a file.
 * SPDX-License-Identifier: MIT
 */
/*
 * Trains mlp_classifier's model (784 -> Dense 64 relu -> Dense 64 relu ->
 * Dense 10, Adam 1e-3, batch 32, seed 42), one epoch by default, then saves
 * it: aim_model_serialized_size() says how many bytes, aim_model_serialize()
 * writes the architecture, the weights and Adam's moments into a buffer of
 * ours, and this program writes that buffer to a file with stdio. The
 * library itself does no I/O. With the optimizer state saved, training can
 * resume exactly where it stopped; examples/load_model.c reads the file back.
 */
#include <stdio.h>
#include <stdlib.h>

#include "aimodel.h"
#include "example_util.h"
#include "fashion_mnist.h"

#define LEARNING_RATE 1e-3f
#define DEFAULT_OUT "mlp.aimodel"

/* Writes `size` bytes to `path`; on failure prints why and returns -1.
 * fclose() is checked: buffered data may fail there. A partly written file is
 * left as it is rather than removed (the path may not be a plain file we
 * created); aim_model_deserialize() refuses it by its length and checksum. */
static int write_file(const char *path, const void *bytes, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    int ok = fwrite(bytes, 1, size, f) == size;
    if (!ok) {
        perror(path);
    }
    if (fclose(f) != 0 && ok) {
        perror(path);
        ok = 0;
    }
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "save_model",
        .summary = "Trains the 784-64-64-10 MLP on Fashion-MNIST and saves it with its Adam state to a file.",
        .options = EX_OPT_TRAINER,
        .extra_help = "  --out FILE    where to write the model (default " DEFAULT_OUT ")\n",
        .log_columns = EX_LOG_CLASSIFIER_COLUMNS,
    };
    const char *out_path = DEFAULT_OUT;
    if (ex_take_option(&argc, argv, program.name, "--out", &out_path) < 0) {
        return EX_EXIT_USAGE;
    }
    ex_options opt;
    ex_options_default(&opt);
    opt.epochs = 1;
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    fm_set train = {0}, validation = {0}, test = {0};
    aim_model *model = NULL;
    aim_optimizer *adam = NULL;
    aim_threadpool *threadpool = NULL; /* --threads N > 1 */
    unsigned char *bytes = NULL;
    const char *source = "";
    ex_log metrics = {0};

    if (ex_threadpool_create(&opt, &threadpool) != 0 || ex_log_open(&metrics, opt.log_path, program.log_columns) != 0) {
        goto cleanup;
    }
    if (ex_load_fashion_mnist(&opt, &train, &validation, &test, &source) != 0) {
        goto cleanup;
    }

    /* The model of mlp_classifier.c; the last layer stays linear because
     * aim_model_loss_sparse() applies the softmax itself. */
    const size_t input_dims[1] = {FM_PIXELS};
    const struct { size_t units; aim_activation activation; } layers[] = {
        {64, AIM_ACT_RELU},
        {64, AIM_ACT_RELU},
        {FM_CLASSES, AIM_ACT_IDENTITY},
    };
    EX_TRY(aim_model_create(NULL, 1, input_dims, &model), "");
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; ++i) {
        aim_dense_config dense;
        EX_TRY(aim_dense_config_init(&dense, layers[i].units, layers[i].activation), "");
        EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    }
    aim_compile_config compile;
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = opt.batch;
    compile.seed = opt.seed;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));

    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    EX_TRY(aim_adam_create(NULL, NULL, param_count, &adam), "");

    printf("save_model: %s, %zu train / %zu validation / %zu test images\n", source, train.count,
           validation.count, test.count);
    printf("model 784-64-64-10 (%zu parameters), Adam lr %g, batch %zu, %zu epochs, seed %llu, threads %zu\n",
           param_count, (double)LEARNING_RATE, opt.batch, opt.epochs, (unsigned long long)opt.seed, opt.threads);

    ex_fit_result fit;
    if (ex_fit_classifier(model, adam, LEARNING_RATE, &opt, threadpool, &train, &validation, &test, &metrics, 1,
                          &fit) != 0) {
        goto cleanup;
    }

    /* Size, buffer, serialize, write: the library fills memory, the host
     * decides where the bytes go. */
    size_t size = 0, written = 0;
    EX_TRY(aim_model_serialized_size(model, adam, &size), aim_model_last_error(model));
    bytes = malloc(size);
    if (bytes == NULL) {
        fprintf(stderr, "error: out of memory for %zu bytes\n", size);
        goto cleanup;
    }
    EX_TRY(aim_model_serialize(model, adam, bytes, size, &written), aim_model_last_error(model));
    if (write_file(out_path, bytes, written) != 0) {
        goto cleanup;
    }
    if (ex_log_close(&metrics) != 0) {
        goto cleanup;
    }
    printf("saved %s: %zu bytes (%zu parameters and Adam's two moments, after %llu steps)\n", out_path, written,
           param_count, (unsigned long long)aim_optimizer_steps(adam));
    printf("RESULT save_model test_accuracy=%.4f bytes=%zu file=%s\n", fit.test_accuracy, written, out_path);
    exit_code = 0;

cleanup:
    ex_log_close(&metrics);
    free(bytes);
    aim_optimizer_free(adam);
    aim_model_free(model);
    aim_threadpool_free(threadpool); /* after the model that uses it */
    fm_free(&train);
    fm_free(&validation);
    fm_free(&test);
    return exit_code;
}
