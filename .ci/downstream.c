/* A downstream program built against an installed libaimodel by CI: it
 * checks the header and library versions agree and trains a tiny model. */
#include <aimodel.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    if (strcmp(aim_version(), AIM_VERSION_STRING) != 0 || aim_version_number() != AIM_VERSION_NUMBER) {
        printf("version mismatch: header %s, library %s\n", AIM_VERSION_STRING, aim_version());
        return 1;
    }
    size_t dims[1] = {2};
    aim_model *m = NULL;
    aim_optimizer *opt = NULL;
    aim_dense_config dc;
    aim_compile_config cc;
    float x[8] = {0, 0, 0, 1, 1, 0, 1, 1}, t[4] = {0, 1, 1, 0}, loss = 1.0f, first = -1.0f;
    aim_status st = aim_model_create(NULL, 1, dims, &m);
    if (st == AIM_OK) st = aim_dense_config_init(&dc, 8, AIM_ACT_TANH);
    if (st == AIM_OK) st = aim_model_add_dense(m, &dc);
    if (st == AIM_OK) st = aim_dense_config_init(&dc, 1, AIM_ACT_IDENTITY);
    if (st == AIM_OK) st = aim_model_add_dense(m, &dc);
    if (st == AIM_OK) st = aim_compile_config_init(&cc);
    cc.max_batch = 4;
    cc.seed = 7;
    if (st == AIM_OK) st = aim_model_compile(m, &cc);
    float *p;
    size_t n = 0;
    if (st == AIM_OK) st = aim_model_parameters(m, &p, &n);
    if (st == AIM_OK) st = aim_adam_create(NULL, NULL, n, &opt);
    for (int i = 0; st == AIM_OK && i < 500; i++) {
        st = aim_model_zero_grad(m);
        if (st == AIM_OK) st = aim_model_forward(m, AIM_MODE_TRAIN, x, sizeof x / sizeof x[0], 4);
        if (st == AIM_OK) st = aim_model_loss(m, 0, AIM_LOSS_BCE_WITH_LOGITS, t, sizeof t / sizeof t[0], &loss);
        if (st == AIM_OK) st = aim_model_backward(m, NULL, 0);
        if (st == AIM_OK) st = aim_optimizer_step_model(opt, m, 0.05f);
        if (i == 0) first = loss;
    }
    if (st != AIM_OK) printf("error: %s: %s\n", aim_status_str(st), aim_model_last_error(m));
    else printf("downstream: libaimodel %s, XOR loss %.4f -> %.4f\n", aim_version(), first, loss);
    aim_optimizer_free(opt);
    aim_model_free(m);
    return st == AIM_OK && loss < 0.5f * first ? 0 : 1;
}
