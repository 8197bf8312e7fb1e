/*
 * libaimodel example - a character-level GPT trained on fortune cookies.
 * SPDX-License-Identifier: MIT
 */
/*
 * The model (GPT-2's pre-norm decoder, nanoGPT-sized down):
 *
 *   ids (T) -> Embedding(V, E) -> + positional embedding (T, E) [-> Dropout]
 *     -> N blocks:  x = x + [Dropout] Attn(LN1(x))        causal, H heads, dropout on the weights
 *                   x = x + [Dropout] Linear(4E -> E)(GELU(Linear(E -> 4E)(LN2(x))))
 *     -> LN_f -> Linear(E -> V): logits (T, V), one next-character distribution per position
 *
 * Defaults: 4 blocks, width E 128, 4 heads, context T 128, batch 16, AdamW
 * (lr 1e-3, betas 0.9/0.999, eps 1e-8, decoupled weight decay 0.01 on every
 * parameter, as torch.optim.AdamW's one parameter group), the gradient's
 * global norm clipped at 1, no dropout. The [Dropout]s and the attention's
 * weight dropout are there with --dropout P > 0 (GPT-2's embd, attn and
 * resid dropouts). Every layer starts as its PyTorch module does (Linear
 * U(+-1/sqrt(fan_in)), MultiheadAttention Xavier-uniform in_proj and zero
 * biases, LayerNorm 1 and 0) but the two embeddings, which start N(0, 0.02²)
 * as GPT-2's wte and wpe (see init_token_embedding()). The loss is softmax
 * cross-entropy at every position (aim_model_loss_sparse() with a label per
 * position: batch · T labels), reported in nats; validation in bits per
 * character (the same loss / ln 2).
 *
 * The data: Debian's fortune cookies (package `fortunes`, else
 * `fortunes-min`; installed with apt-get when the program runs as root and
 * they are missing, unless --no-install). Every file of
 * /usr/share/games/fortunes without a .dat or .u8 suffix is read, in name
 * order; a line holding only "%" ends a fortune. A fortune is kept as its
 * bytes up to its separator (a final newline added if it lacks one), blank
 * ones dropped, and in the texts each fortune is followed by one empty
 * line: the "%" separators become newlines, so fortunes are paragraphs and
 * the model learns to end one with a blank line. The fortunes are split,
 * by fortune, 90/10 into training and validation: the library's generator
 * seeded with --data-seed shuffles their indices and the first tenth is
 * validation; each text keeps the fortunes in file order. The vocabulary
 * is the set of bytes that occur in either text, ids 0.. in byte order.
 *
 * Training batches: the batch of step s is B windows of T + 1 bytes at
 * uniform random starts of the training text (inputs the first T ids,
 * targets the last T), drawn from a generator seeded with
 * batch_seed(--seed, s), so step s sees the same batch in any run, and a
 * resumed one. Validation: the text cut into consecutive windows of T + 1
 * bytes at a stride of T (every byte but the first predicted once, from
 * the bytes before it in its window); --eval-windows N evaluates N of them,
 * evenly spaced (window i of N is number floor(i · all / N)). A fresh run
 * evaluates its initial model (step 0), then every --eval-every steps and
 * after the last step. The training loss printed is the mean over the steps
 * since the last multiple of --eval-every.
 *
 * Sampling: --sample-chars bytes after --prompt, each drawn with the
 * program's own generator (seeded from --seed) from softmax(logits /
 * temperature) (temperature 0: the argmax). The context is the window of
 * the last bytes, at most T: when it is full it restarts from its last T/2
 * bytes. By default each byte costs one aim_model_predict_step_ids() call
 * (the keys and values of the earlier positions stay in the workspace's
 * cache; a restart refills it with T/2 steps); --no-kv-cache runs
 * aim_model_predict_ids() over the whole window for every byte instead
 * (right-padded: the attention is causal, so the positions after the last
 * one change nothing), which gives the same logits to rounding and so the
 * same text, only slower.
 *
 * Checkpoints: --save FILE writes, after every evaluation and at the end,
 * one text line, "char_gpt checkpoint 1 key=value ...\n" (the step, the
 * architecture, the seeds, the settings the training depends on, a hash of
 * the texts, the running sum of the interval's losses as hex floats), then
 * the bytes of aim_model_serialize() of the model and its AdamW state (the
 * moments, the step count, the model's dropout stream). The file is
 * written beside FILE and renamed over it. --resume FILE continues from
 * one: the run goes on to --steps in all, and gives the same losses (to the
 * bit) as the run that was never stopped, at the same --threads. What the
 * file fixes (architecture, batch, seeds, lr, weight decay, clip) may be
 * repeated on the command line only with the same value.
 *
 * The PyTorch twin, tests/bench/char_gpt_torch.py, trains the same model
 * from the same initial weights on the same batches; this program writes
 * what it needs:
 *   --write-init FILE     one text line "char_gpt init 1 vocab=V context=T width=E layers=N
 *                         heads=H dropout=P params=COUNT\n", then COUNT float32
 *                         little-endian: the initial flat parameter buffer
 *                         (aim_model_parameters(): layer by layer in the order
 *                         built, each in PyTorch's layout: wte [V, E], wpe [T, E],
 *                         per block ln1 weight, bias [E], attn in_proj_weight
 *                         [3E, E], in_proj_bias [3E], out_proj.weight [E, E],
 *                         out_proj.bias [E], ln2 weight, bias, fc weight [4E, E],
 *                         bias [4E], proj weight [E, 4E], bias [E]; ln_f weight,
 *                         bias; head weight [V, E], bias [V]).
 *   --write-batches FILE  one text line "char_gpt batches 1 vocab=V context=T batch=B
 *                         steps=S val_bytes=L eval_windows=W eval_every=K lr=..
 *                         weight_decay=.. clip=.. dropout=..\n", then the V
 *                         vocabulary bytes (id order), the L validation ids (one
 *                         byte each), and the S · B · (T + 1) training ids of
 *                         steps 1..S (one byte each, step by step, window by
 *                         window).
 * Both are written before the first step; the run then trains as usual
 * (--steps 0 writes them and only evaluates and samples).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aimodel.h"
#include "example_util.h"

#define PROGRAM "char_gpt"
#define DEFAULT_FORTUNES "/usr/share/games/fortunes"
#define DEFAULT_LAYERS 4
#define DEFAULT_WIDTH 128
#define DEFAULT_HEADS 4
#define DEFAULT_CONTEXT 128
#define DEFAULT_BATCH 16
#define DEFAULT_STEPS 2000
#define DEFAULT_EVAL_EVERY 200
#define DEFAULT_EVAL_WINDOWS 512
#define DEFAULT_LR 1e-3f
#define DEFAULT_WEIGHT_DECAY 0.01f
#define DEFAULT_CLIP 1.0f
#define DEFAULT_TEMPERATURE 0.8f
#define DEFAULT_SAMPLE_CHARS 600
#define DEFAULT_DATA_SEED 2026
#define VALIDATION_PERCENT 10
#define EVAL_BATCH 16 /* windows per aim_model_predict_ids() in evaluation */
#define CHECKPOINT_MAGIC "char_gpt checkpoint 1 "

/* ---- command line -------------------------------------------------------- */

/* What the model is; a checkpoint fixes it. */
typedef struct gpt_arch {
    size_t layers, width, heads, context, vocab;
    float dropout;
} gpt_arch;

/* The settings a run's losses depend on besides the architecture; a
 * checkpoint fixes them too. */
typedef struct gpt_train {
    size_t batch;
    uint64_t seed, data_seed;
    float lr, weight_decay, clip;
} gpt_train;

/* Removes a flag without value from argv; returns whether it was there. */
static int take_flag(int *argc, char **argv, const char *name)
{
    int found = 0, kept = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            found = 1;
        } else {
            argv[kept++] = argv[i];
        }
    }
    *argc = kept;
    argv[kept] = NULL;
    return found;
}

/* A finite decimal number in [min, max] (or (min, max] with `open_min`),
 * nothing after it. Returns 0, or -1 if `text` is not one. */
static int parse_float(const char *text, double min, double max, int open_min, float *out)
{
    char *end = NULL;
    errno = 0;
    const double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v) || v < min || v > max ||
        (open_min && v <= min)) {
        return -1;
    }
    *out = (float)v;
    return 0;
}

/* ---- the fortunes -------------------------------------------------------- */

static int has_suffix(const char *name, const char *suffix)
{
    const size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the fortune text files in `dir` (regular files, following
 * links, without a .dat or .u8 suffix, not hidden), sorted; *count 0 when
 * the directory is missing or holds none. Returns 0, or -1 out of memory. */
static int list_fortune_files(const char *dir, char ***names, size_t *count)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    size_t cap = 0;
    int rc = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (e->d_name[0] == '.' || has_suffix(e->d_name, ".dat") || has_suffix(e->d_name, ".u8")) {
            continue;
        }
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            char **bigger = realloc(*names, cap * sizeof *bigger);
            if (bigger == NULL) {
                rc = -1;
                break;
            }
            *names = bigger;
        }
        if (((*names)[*count] = strdup(e->d_name)) == NULL) {
            rc = -1;
            break;
        }
        (*count)++;
    }
    closedir(d);
    if (rc == 0 && *count > 0) {
        qsort(*names, *count, sizeof **names, by_name);
    }
    return rc;
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
    }
    free(names);
}

/* Makes sure `dir` holds fortune files: for the default directory, as root
 * and unless `no_install`, installs `fortunes` with apt-get, or
 * `fortunes-min` if that fails. Returns 0, or -1 after saying what is
 * missing and how to get it. */
static int ensure_fortunes(const char *dir, int no_install)
{
    static const char *const packages[] = {"fortunes", "fortunes-min"};
    const int may_install = !no_install && strcmp(dir, DEFAULT_FORTUNES) == 0 && geteuid() == 0 &&
                            access("/usr/bin/apt-get", X_OK) == 0;
    if (strcmp(dir, DEFAULT_FORTUNES) != 0) { /* --fortunes DIR: it must be there */
        DIR *d = opendir(dir);
        if (d == NULL) {
            fprintf(stderr, PROGRAM ": cannot open --fortunes %s: %s\n", dir, strerror(errno));
            return -1;
        }
        closedir(d);
    }
    for (size_t attempt = 0;; attempt++) {
        char **names = NULL;
        size_t count = 0;
        if (list_fortune_files(dir, &names, &count) != 0) {
            fprintf(stderr, PROGRAM ": out of memory\n");
            return -1;
        }
        free_names(names, count);
        if (count > 0) {
            return 0;
        }
        if (!may_install || attempt >= sizeof packages / sizeof packages[0]) {
            break;
        }
        char command[256];
        snprintf(command, sizeof command,
                 "%sDEBIAN_FRONTEND=noninteractive apt-get install -y -qq %s >/dev/null",
                 attempt == 0 ? "apt-get update -qq && " : "", packages[attempt]);
        printf(PROGRAM ": no fortunes in %s; installing %s\n", dir, packages[attempt]);
        fflush(stdout);
        if (system(command) != 0) {
            fprintf(stderr, PROGRAM ": apt-get could not install %s\n", packages[attempt]);
        }
    }
    fprintf(stderr,
            PROGRAM ": no fortune files in %s, and this program cannot run without them.\n"
                    "  install Debian's fortune cookies: sudo apt-get update && sudo apt-get install -y fortunes\n"
                    "  (or fortunes-min), or point --fortunes at a directory of fortune files%s\n",
            dir, may_install ? "" : (no_install ? " (--no-install was given)" : ""));
    return -1;
}

/* A growable byte string. */
typedef struct bytes {
    unsigned char *data;
    size_t size, cap;
} bytes;

static int bytes_append(bytes *b, const void *data, size_t n)
{
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->size + n) {
            cap *= 2;
        }
        unsigned char *bigger = realloc(b->data, cap);
        if (bigger == NULL) {
            return -1;
        }
        b->data = bigger;
        b->cap = cap;
    }
    memcpy(b->data + b->size, data, n);
    b->size += n;
    return 0;
}

/* One fortune: bytes inside a file's text. */
typedef struct fortune {
    const char *text;
    size_t length; /* up to the separator line, its final newline included if it has one */
} fortune;

/* The corpus and its split. */
typedef struct corpus {
    char **files;          /* the files' texts */
    size_t n_files;
    fortune *fortunes;
    size_t n_fortunes, n_val_fortunes;
    unsigned char *train, *val; /* ids, one byte each */
    size_t n_train, n_val;
    unsigned char vocab[256]; /* id -> byte */
    size_t n_vocab;
    uint64_t hash; /* FNV-1a of the training then the validation bytes */
} corpus;

static void corpus_free(corpus *c)
{
    for (size_t i = 0; i < c->n_files; i++) {
        free(c->files[i]);
    }
    free(c->files);
    free(c->fortunes);
    free(c->train);
    free(c->val);
    memset(c, 0, sizeof *c);
}

/* Appends the fortunes of one file's text: a line of exactly "%" (or "%\r")
 * ends one; blank ones are dropped. */
static int split_fortunes(const char *text, fortune **list, size_t *count, size_t *cap)
{
    const char *start = text, *line = text;
    for (;;) {
        const char *nl = strchr(line, '\n');
        const char *end = nl != NULL ? nl : line + strlen(line);
        const int separator = (end - line == 1 && line[0] == '%') || (end - line == 2 && line[0] == '%' && line[1] == '\r');
        if (separator || nl == NULL) {
            const char *stop = separator ? line : end;
            int blank = 1;
            for (const char *p = start; p < stop; p++) {
                blank &= *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
            }
            if (!blank) {
                if (*count == *cap) {
                    *cap = *cap ? 2 * *cap : 4096;
                    fortune *bigger = realloc(*list, *cap * sizeof *bigger);
                    if (bigger == NULL) {
                        return -1;
                    }
                    *list = bigger;
                }
                (*list)[*count].text = start;
                (*list)[*count].length = (size_t)(stop - start);
                (*count)++;
            }
            if (nl == NULL) {
                return 0;
            }
            start = nl + 1;
        }
        line = nl + 1;
    }
}

/* A set's text: each fortune, a newline added if it lacks one, then an empty line. */
static int render(const corpus *c, const unsigned char *in_set, int which, bytes *out)
{
    for (size_t i = 0; i < c->n_fortunes; i++) {
        if (in_set[i] != which) {
            continue;
        }
        const fortune *f = &c->fortunes[i];
        if (bytes_append(out, f->text, f->length) != 0 ||
            (f->text[f->length - 1] != '\n' && bytes_append(out, "\n", 1) != 0) || bytes_append(out, "\n", 1) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Reads, splits and encodes the fortunes of `dir` as the comment at the top says. */
static int load_corpus(const char *dir, uint64_t data_seed, corpus *c)
{
    int rc = -1;
    char **names = NULL;
    size_t n_names = 0, cap = 0;
    unsigned char *in_val = NULL;
    uint32_t *order = NULL;
    aim_rng *rng = NULL;
    bytes train = {0}, val = {0};

    if (list_fortune_files(dir, &names, &n_names) != 0 || (c->files = calloc(n_names, sizeof *c->files)) == NULL) {
        fprintf(stderr, PROGRAM ": out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < n_names; i++) {
        char path[4096];
        size_t length = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (ex_read_file(path, &c->files[i], &length) != 0) {
            goto done;
        }
        c->n_files++;
        if (memchr(c->files[i], '\0', length) != NULL) {
            fprintf(stderr, PROGRAM ": %s holds a NUL byte; not a fortune file\n", path);
            goto done;
        }
        if (split_fortunes(c->files[i], &c->fortunes, &c->n_fortunes, &cap) != 0) {
            fprintf(stderr, PROGRAM ": out of memory\n");
            goto done;
        }
    }
    if (c->n_fortunes < 10) {
        fprintf(stderr, PROGRAM ": %s holds %zu fortunes; at least 10 are needed\n", dir, c->n_fortunes);
        goto done;
    }

    /* The first tenth of a seeded shuffle of the fortunes' indices is validation. */
    c->n_val_fortunes = (c->n_fortunes * VALIDATION_PERCENT + 50) / 100;
    in_val = calloc(c->n_fortunes, 1);
    order = malloc(c->n_fortunes * sizeof *order);
    if (in_val == NULL || order == NULL || aim_rng_create(NULL, data_seed, &rng) != AIM_OK) {
        fprintf(stderr, PROGRAM ": out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < c->n_fortunes; i++) {
        order[i] = (uint32_t)i;
    }
    if (aim_rng_shuffle_u32(rng, order, c->n_fortunes) != AIM_OK) {
        goto done;
    }
    for (size_t i = 0; i < c->n_val_fortunes; i++) {
        in_val[order[i]] = 1;
    }
    if (render(c, in_val, 0, &train) != 0 || render(c, in_val, 1, &val) != 0) {
        fprintf(stderr, PROGRAM ": out of memory\n");
        goto done;
    }

    /* The vocabulary: the bytes that occur, in byte order. */
    int used[256] = {0};
    unsigned char id_of[256] = {0};
    for (size_t i = 0; i < train.size; i++) {
        used[train.data[i]] = 1;
    }
    for (size_t i = 0; i < val.size; i++) {
        used[val.data[i]] = 1;
    }
    for (int b = 0; b < 256; b++) {
        if (used[b]) {
            id_of[b] = (unsigned char)c->n_vocab;
            c->vocab[c->n_vocab++] = (unsigned char)b;
        }
    }
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < train.size; i++) {
        h = (h ^ train.data[i]) * 1099511628211ull;
        train.data[i] = id_of[train.data[i]];
    }
    for (size_t i = 0; i < val.size; i++) {
        h = (h ^ val.data[i]) * 1099511628211ull;
        val.data[i] = id_of[val.data[i]];
    }
    c->hash = h;
    c->train = train.data;
    c->n_train = train.size;
    c->val = val.data;
    c->n_val = val.size;
    train.data = val.data = NULL;
    rc = 0;
done:
    free_names(names, n_names);
    free(in_val);
    free(order);
    aim_rng_free(rng);
    free(train.data);
    free(val.data);
    return rc;
}

/* ---- the model ----------------------------------------------------------- */

static aim_status add_residual(aim_model *model, size_t skip)
{
    size_t y = 0;
    aim_status st = aim_model_last_node(model, &y);
    const size_t sum[2] = {y, skip};
    return st != AIM_OK ? st : aim_model_add_add(model, sum, 2);
}

/* One pre-norm block on the current node x:
 * x + [Dropout] Attn(LN1(x)), then that + [Dropout] proj(GELU(fc(LN2(.)))). */
static aim_status add_block(aim_model *model, const gpt_arch *a)
{
    aim_layer_norm_config ln;
    aim_attention_config attn;
    aim_dense_config fc, proj;
    size_t x = 0;
    aim_status st = aim_layer_norm_config_init(&ln);
    if (st == AIM_OK) st = aim_attention_config_init(&attn, a->heads);
    if (st == AIM_OK) st = aim_dense_config_init(&fc, 4 * a->width, AIM_ACT_GELU);
    if (st == AIM_OK) st = aim_dense_config_init(&proj, a->width, AIM_ACT_IDENTITY);
    if (st != AIM_OK) return st;
    attn.causal = 1;
    attn.dropout = a->dropout;
    fc.init = proj.init = AIM_INIT_PYTORCH; /* nn.Linear's default */

    if ((st = aim_model_last_node(model, &x)) != AIM_OK) return st;
    if ((st = aim_model_add_layer_norm(model, &ln)) != AIM_OK) return st;
    if ((st = aim_model_add_attention(model, &attn)) != AIM_OK) return st;
    if (a->dropout > 0.0f && (st = aim_model_add_dropout(model, a->dropout)) != AIM_OK) return st;
    if ((st = add_residual(model, x)) != AIM_OK) return st;

    if ((st = aim_model_last_node(model, &x)) != AIM_OK) return st;
    if ((st = aim_model_add_layer_norm(model, &ln)) != AIM_OK) return st;
    if ((st = aim_model_add_linear(model, &fc)) != AIM_OK) return st; /* (T, 4E), GELU fused */
    if ((st = aim_model_add_linear(model, &proj)) != AIM_OK) return st;
    if (a->dropout > 0.0f && (st = aim_model_add_dropout(model, a->dropout)) != AIM_OK) return st;
    return add_residual(model, x);
}

/* Builds the GPT of the comment at the top into a model not yet compiled. */
static aim_status build_model(const gpt_arch *a, aim_model *model)
{
    aim_embedding_config wte;
    aim_layer_norm_config ln;
    aim_dense_config head;
    aim_status st = aim_model_set_input_dtype(model, 0, AIM_DTYPE_INT32);
    if (st == AIM_OK) st = aim_embedding_config_init(&wte, a->vocab, a->width);
    if (st == AIM_OK) st = aim_model_add_embedding(model, &wte); /* (T, E) */
    if (st == AIM_OK) st = aim_model_add_positional_embedding(model, a->context);
    if (st == AIM_OK && a->dropout > 0.0f) st = aim_model_add_dropout(model, a->dropout);
    for (size_t l = 0; l < a->layers && st == AIM_OK; l++) {
        st = add_block(model, a);
    }
    if (st == AIM_OK) st = aim_layer_norm_config_init(&ln);
    if (st == AIM_OK) st = aim_model_add_layer_norm(model, &ln);
    if (st == AIM_OK) st = aim_dense_config_init(&head, a->vocab, AIM_ACT_IDENTITY);
    if (st == AIM_OK) {
        head.init = AIM_INIT_PYTORCH;
        st = aim_model_add_linear(model, &head); /* (T, V) logits */
    }
    return st;
}

/* Redraws the token embedding (layer 0) N(0, 0.02²), GPT-2's init of wte as
 * of wpe, from a generator of its own. nn.Embedding's N(0, 1), the
 * library's default, leaves the positions' signal fifty times weaker than
 * the tokens' at the start and the model longer on its bigram plateau:
 * measured here (default flags, seed 42), validation after 800 and 2000
 * steps is 3.217 and 2.602 bits per character with N(0, 1), 3.039 and 2.569
 * with N(0, 0.02²). The table lies in the flat parameter buffer, where
 * aim_model_layer_parameters() says. */
static aim_status init_token_embedding(aim_model *model, uint64_t seed)
{
    float *params = NULL, z = 0.0f;
    size_t count = 0, offset = 0, weights = 0, biases = 0;
    aim_rng *rng = NULL;
    aim_status st = aim_model_parameters(model, &params, &count);
    if (st == AIM_OK) st = aim_model_layer_parameters(model, 0, &offset, &weights, &biases);
    if (st == AIM_OK) st = aim_rng_create(NULL, seed ^ 0x3E3B5EEDull, &rng);
    for (size_t i = 0; i < weights && st == AIM_OK; i++) {
        st = aim_rng_normal(rng, &z);
        params[offset + i] = 0.02f * z;
    }
    aim_rng_free(rng);
    return st;
}

/* ---- batches and evaluation --------------------------------------------- */

/* The seed of step s's batch: distinct steps give distinct seeds (an odd
 * multiplier is a bijection of 64-bit integers). */
static uint64_t batch_seed(uint64_t seed, uint64_t step)
{
    return seed ^ (0x9E3779B97F4A7C15ull * (step + 1));
}

/* Step s's batch: B windows of T + 1 ids, as (B, T + 1) bytes in `windows`. */
static aim_status draw_windows(aim_rng *rng, uint64_t seed, uint64_t step, const corpus *c, size_t T, size_t B,
                               unsigned char *windows)
{
    aim_status st = aim_rng_seed(rng, batch_seed(seed, step));
    for (size_t b = 0; b < B && st == AIM_OK; b++) {
        uint64_t start = 0;
        st = aim_rng_below(rng, c->n_train - T, &start);
        memcpy(windows + b * (T + 1), c->train + start, T + 1);
    }
    return st;
}

/* Inputs (the first T ids) and targets (the last T) of (B, T + 1) windows. */
static void split_windows(const unsigned char *windows, size_t T, size_t B, int32_t *inputs, int32_t *targets)
{
    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t < T; t++) {
            inputs[b * T + t] = windows[b * (T + 1) + t];
            targets[b * T + t] = windows[b * (T + 1) + t + 1];
        }
    }
}

/* Validation windows in all: consecutive windows of T + 1 at a stride of T. */
static size_t val_windows_all(const corpus *c, size_t T)
{
    return c->n_val > T ? (c->n_val - 1) / T : 0;
}

/* Bits per character over `count` evenly spaced validation windows (see the
 * comment at the top), by aim_model_predict_ids() through `ws`; `logits`
 * holds EVAL_BATCH · T · V floats, `inputs` and `targets` EVAL_BATCH · T ids. */
static aim_status validation_bpc(const aim_model *model, aim_workspace *ws, const corpus *c, size_t T, size_t count,
                                 float *logits, int32_t *inputs, int32_t *targets, double *bpc)
{
    const size_t all = val_windows_all(c, T), V = c->n_vocab;
    double sum = 0.0;
    for (size_t i = 0; i < count; i += EVAL_BATCH) {
        const size_t nb = count - i < EVAL_BATCH ? count - i : EVAL_BATCH;
        for (size_t k = 0; k < nb; k++) {
            const size_t w = (size_t)(((unsigned long long)(i + k) * all) / count);
            split_windows(c->val + w * T, T, 1, inputs + k * T, targets + k * T);
        }
        float loss = 0.0f;
        aim_status st = aim_model_predict_ids(model, ws, inputs, nb * T, nb, logits, nb * T * V);
        if (st == AIM_OK) st = aim_loss_sparse(logits, targets, nb * T, V, &loss, NULL);
        if (st != AIM_OK) {
            return st;
        }
        sum += (double)loss * (double)(nb * T);
    }
    *bpc = sum / (double)(count * T) / log(2.0);
    return AIM_OK;
}

/* ---- sampling ------------------------------------------------------------ */

/* An id drawn from softmax(logits / temperature) (the argmax for 0). */
static aim_status draw_id(aim_rng *rng, const float *logits, size_t V, float temperature, double *prob, size_t *id)
{
    size_t best = 0;
    for (size_t v = 1; v < V; v++) {
        best = logits[v] > logits[best] ? v : best;
    }
    if (temperature == 0.0f) {
        *id = best;
        return AIM_OK;
    }
    double total = 0.0;
    for (size_t v = 0; v < V; v++) {
        prob[v] = exp(((double)logits[v] - (double)logits[best]) / (double)temperature);
        total += prob[v];
    }
    float u = 0.0f;
    aim_status st = aim_rng_uniform(rng, &u);
    double r = (double)u * total;
    *id = V - 1;
    for (size_t v = 0; v < V; v++) {
        if (r < prob[v]) {
            *id = v;
            break;
        }
        r -= prob[v];
    }
    return st;
}

/* Writes `count` sampled bytes after `prompt` (ids, at least one) to stdout,
 * as the comment at the top says; `logits` holds T · V floats, `window` and
 * `prob` T ids and V doubles. */
static aim_status sample_text(const aim_model *model, aim_workspace *ws, const corpus *c, size_t T, int kv_cache,
                              aim_rng *rng, float temperature, const int32_t *prompt, size_t prompt_length,
                              size_t count, float *logits, int32_t *window, double *prob)
{
    const size_t V = c->n_vocab, keep = T / 2 > 0 ? T / 2 : 1;
    size_t length = 0;        /* ids in the window */
    size_t fed = 0;           /* of which the KV cache holds the first `fed` */
    aim_status st = AIM_OK;
    /* The window after the prompt: its last T ids (restarting as generation would). */
    for (size_t i = 0; i < prompt_length; i++) {
        if (length == T) {
            memmove(window, window + T - keep, keep * sizeof *window);
            length = keep;
        }
        window[length++] = prompt[i];
    }
    for (size_t n = 0; n < count && st == AIM_OK; n++) {
        const float *next = NULL; /* logits of the window's next byte */
        if (kv_cache) {
            if (fed > length) { /* the window restarted: refill the cache */
                fed = 0;
            }
            if (fed == 0 && (st = aim_workspace_reset_steps(ws)) != AIM_OK) break;
            while (fed < length && st == AIM_OK) {
                st = aim_model_predict_step_ids(model, ws, window + fed, 1, 1, logits, V);
                fed++;
            }
            next = logits;
        } else {
            for (size_t t = length; t < T; t++) {
                window[t] = window[length - 1]; /* any valid id: causal attention never reads it */
            }
            st = aim_model_predict_ids(model, ws, window, T, 1, logits, T * V);
            next = logits + (length - 1) * V;
        }
        size_t id = 0;
        if (st == AIM_OK) st = draw_id(rng, next, V, temperature, prob, &id);
        if (st != AIM_OK) break;
        putchar(c->vocab[id]);
        if (length == T) {
            memmove(window, window + T - keep, keep * sizeof *window);
            length = keep;
            fed = T + 1; /* marks the cache stale */
        }
        window[length++] = (int32_t)id;
    }
    fflush(stdout);
    return st;
}

/* ---- files: checkpoints and the PyTorch twin's inputs --------------------- */

static int write_all(FILE *f, const void *data, size_t n)
{
    return fwrite(data, 1, n, f) == n ? 0 : -1;
}

/* Closes `f`, and on success renames `tmp` over `path`; says why on failure. */
static int finish_file(FILE *f, int failed, const char *tmp, const char *path)
{
    if (fclose(f) != 0) {
        failed = 1;
    }
    if (failed) {
        fprintf(stderr, PROGRAM ": cannot write %s: %s\n", tmp, strerror(errno));
        remove(tmp);
        return -1;
    }
    if (tmp != path && rename(tmp, path) != 0) {
        fprintf(stderr, PROGRAM ": cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

/* Floats as little-endian float32, whatever the host's byte order. */
static int write_f32le(FILE *f, const float *x, size_t n)
{
    unsigned char buf[4096];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        for (int k = 0; k < 4; k++) {
            buf[used++] = (unsigned char)(u >> (8 * k));
        }
        if (used == sizeof buf || i + 1 == n) {
            if (write_all(f, buf, used) != 0) {
                return -1;
            }
            used = 0;
        }
    }
    return 0;
}

static int write_init(const char *path, const gpt_arch *a, const float *params, size_t count)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    const int failed = fprintf(f, "char_gpt init 1 vocab=%zu context=%zu width=%zu layers=%zu heads=%zu dropout=%.9g "
                                  "params=%zu\n",
                               a->vocab, a->context, a->width, a->layers, a->heads, (double)a->dropout, count) < 0 ||
                       write_f32le(f, params, count) != 0;
    return finish_file(f, failed, path, path);
}

static int write_batches(const char *path, const corpus *c, const gpt_arch *a, const gpt_train *tr, size_t steps,
                         size_t eval_windows, size_t eval_every, aim_rng *rng, unsigned char *windows)
{
    const size_t T = a->context, B = tr->batch;
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    int failed = fprintf(f, "char_gpt batches 1 vocab=%zu context=%zu batch=%zu steps=%zu val_bytes=%zu eval_windows=%zu "
                            "eval_every=%zu lr=%.9g weight_decay=%.9g clip=%.9g dropout=%.9g\n",
                         c->n_vocab, T, B, steps, c->n_val, eval_windows, eval_every, (double)tr->lr,
                         (double)tr->weight_decay, (double)tr->clip, (double)a->dropout) < 0 ||
                 write_all(f, c->vocab, c->n_vocab) != 0 || write_all(f, c->val, c->n_val) != 0;
    for (size_t s = 1; s <= steps && !failed; s++) {
        failed = draw_windows(rng, tr->seed, s, c, T, B, windows) != AIM_OK ||
                 write_all(f, windows, B * (T + 1)) != 0;
    }
    return finish_file(f, failed, path, path);
}

/* What a checkpoint's text line holds. */
typedef struct checkpoint_info {
    gpt_arch arch;
    gpt_train train;
    uint64_t step, hash;
    size_t n_train, n_val;
    double interval_loss; /* sum of the losses since the last evaluation */
    size_t interval_steps;
} checkpoint_info;

static int save_checkpoint(const char *path, const checkpoint_info *k, const aim_model *model,
                           const aim_optimizer *opt)
{
    size_t size = 0, written = 0;
    unsigned char *buf = NULL;
    aim_status st = aim_model_serialized_size(model, opt, &size);
    if (st == AIM_OK && (buf = malloc(size)) == NULL) st = AIM_ERR_OUT_OF_MEMORY;
    if (st == AIM_OK) st = aim_model_serialize(model, opt, buf, size, &written);
    if (st != AIM_OK) {
        ex_report_failure("aim_model_serialize()", st, aim_model_last_error(model));
        free(buf);
        return -1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        perror(tmp);
        free(buf);
        return -1;
    }
    const gpt_arch *a = &k->arch;
    const gpt_train *t = &k->train;
    const int failed =
        fprintf(f,
                CHECKPOINT_MAGIC "step=%llu layers=%zu width=%zu heads=%zu context=%zu vocab=%zu dropout=%a batch=%zu "
                                 "seed=%llu data_seed=%llu lr=%a weight_decay=%a clip=%a hash=%llu train_bytes=%zu "
                                 "val_bytes=%zu interval_loss=%a interval_steps=%zu model_bytes=%zu\n",
                (unsigned long long)k->step, a->layers, a->width, a->heads, a->context, a->vocab, (double)a->dropout,
                t->batch, (unsigned long long)t->seed, (unsigned long long)t->data_seed, (double)t->lr,
                (double)t->weight_decay, (double)t->clip, (unsigned long long)k->hash, k->n_train, k->n_val,
                k->interval_loss, k->interval_steps, written) < 0 ||
        write_all(f, buf, written) != 0;
    free(buf);
    return finish_file(f, failed, tmp, path);
}

/* Reads a checkpoint: its line into `k`, then the model and optimizer. */
static int load_checkpoint(const char *path, checkpoint_info *k, aim_model **model, aim_optimizer **opt)
{
    char *text = NULL;
    size_t length = 0;
    if (ex_read_file(path, &text, &length) != 0) {
        return -1;
    }
    const char *nl = memchr(text, '\n', length);
    unsigned long long step = 0, seed = 0, data_seed = 0, hash = 0;
    double dropout = 0, lr = 0, wd = 0, clip = 0;
    size_t model_bytes = 0;
    gpt_arch *a = &k->arch;
    if (nl == NULL || strncmp(text, CHECKPOINT_MAGIC, strlen(CHECKPOINT_MAGIC)) != 0 ||
        sscanf(text + strlen(CHECKPOINT_MAGIC),
               "step=%llu layers=%zu width=%zu heads=%zu context=%zu vocab=%zu dropout=%la batch=%zu seed=%llu "
               "data_seed=%llu lr=%la weight_decay=%la clip=%la hash=%llu train_bytes=%zu val_bytes=%zu "
               "interval_loss=%la interval_steps=%zu model_bytes=%zu",
               &step, &a->layers, &a->width, &a->heads, &a->context, &a->vocab, &dropout, &k->train.batch, &seed,
               &data_seed, &lr, &wd, &clip, &hash, &k->n_train, &k->n_val, &k->interval_loss, &k->interval_steps,
               &model_bytes) != 19 ||
        model_bytes != length - (size_t)(nl + 1 - text)) {
        fprintf(stderr, PROGRAM ": %s is not a char_gpt checkpoint (or is truncated)\n", path);
        free(text);
        return -1;
    }
    k->step = step;
    k->hash = hash;
    a->dropout = (float)dropout;
    k->train.seed = seed;
    k->train.data_seed = data_seed;
    k->train.lr = (float)lr;
    k->train.weight_decay = (float)wd;
    k->train.clip = (float)clip;
    char why[256] = "";
    const aim_status st = aim_model_deserialize(NULL, nl + 1, model_bytes, model, opt, why, sizeof why);
    free(text);
    if (st != AIM_OK) {
        fprintf(stderr, PROGRAM ": cannot load the model of %s: %s: %s\n", path, aim_status_str(st), why);
        return -1;
    }
    if (*opt == NULL || aim_optimizer_steps(*opt) != step) {
        fprintf(stderr, PROGRAM ": %s holds no optimizer state for step %llu\n", path, step);
        return -1;
    }
    return 0;
}

/* ---- the program --------------------------------------------------------- */

/* A --name option's text, and whether it was given. */
typedef struct option_text {
    const char *name, *text;
} option_text;

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = PROGRAM,
        .summary = "A character-level GPT (pre-norm transformer decoder) trained on Debian's fortune cookies\n"
                   "with AdamW; prints training loss and validation bits per character, then a sample.",
        .options = EX_OPT_BATCH | EX_OPT_SEED | EX_OPT_THREADS,
        .seed_help = "seed of the weights, the batches, dropout and sampling",
        .extra_help =
            "  --layers N    transformer blocks (default 4)\n"
            "  --width N     embedding width E (default 128)\n"
            "  --heads N     attention heads, dividing the width (default 4)\n"
            "  --context N   context T: characters per training window (default 128)\n"
            "  --steps N     training steps in all, a resumed run's included (default 2000)\n"
            "  --lr X        AdamW learning rate (default 1e-3)\n"
            "  --weight-decay X  AdamW's decoupled weight decay (default 0.01)\n"
            "  --clip X      clip the gradient's global norm at X, 0 for none (default 1)\n"
            "  --dropout P   dropout after the embeddings, on the attention weights and on each\n"
            "                residual branch (default 0)\n"
            "  --eval-every N  evaluate every N steps (default 200)\n"
            "  --eval-windows N  validation windows of T + 1 characters per evaluation, 0 for all\n"
            "                (default 512)\n"
            "  --temperature X  sampling temperature, 0 for the most likely character (default 0.8)\n"
            "  --sample-chars N  characters sampled at the end (default 600)\n"
            "  --prompt TEXT the sample's beginning (default a newline)\n"
            "  --no-kv-cache sample with a full forward over the window for every character\n"
            "                (aim_model_predict_ids) instead of aim_model_predict_step_ids\n"
            "  --save FILE   checkpoint model and AdamW state after every evaluation and at the end\n"
            "  --resume FILE continue the run a --save FILE wrote, exactly\n"
            "  --write-init FILE  write the initial parameters for tests/bench/char_gpt_torch.py\n"
            "  --write-batches FILE  write the vocabulary, the validation text and the batches of\n"
            "                steps 1..--steps for tests/bench/char_gpt_torch.py\n"
            "  --fortunes DIR  the fortune files (default " DEFAULT_FORTUNES ")\n"
            "  --data-seed N the seed of the training/validation split (default 2026)\n"
            "  --no-install  do not apt-get install fortunes when they are missing (as root)\n"
            "  (--log writes a row per step; this program counts steps, not epochs)\n",
        .log_columns = "step,loss,val_bpc,seconds",
    };
    option_text o_layers = {"--layers", NULL}, o_width = {"--width", NULL}, o_heads = {"--heads", NULL},
                o_context = {"--context", NULL}, o_steps = {"--steps", NULL}, o_lr = {"--lr", NULL},
                o_wd = {"--weight-decay", NULL}, o_clip = {"--clip", NULL}, o_dropout = {"--dropout", NULL},
                o_eval_every = {"--eval-every", NULL}, o_eval_windows = {"--eval-windows", NULL},
                o_temperature = {"--temperature", NULL}, o_sample = {"--sample-chars", NULL},
                o_prompt = {"--prompt", NULL}, o_save = {"--save", NULL}, o_resume = {"--resume", NULL},
                o_write_init = {"--write-init", NULL}, o_write_batches = {"--write-batches", NULL},
                o_fortunes = {"--fortunes", NULL}, o_data_seed = {"--data-seed", NULL},
                o_batch = {"--batch", NULL}, o_seed = {"--seed", NULL};
    option_text *const texts[] = {&o_layers, &o_width, &o_heads, &o_context, &o_steps, &o_lr, &o_wd, &o_clip,
                                  &o_dropout, &o_eval_every, &o_eval_windows, &o_temperature, &o_sample,
                                  &o_prompt, &o_save, &o_resume, &o_write_init, &o_write_batches, &o_fortunes,
                                  &o_data_seed, &o_batch, &o_seed};
    const int no_kv_cache = take_flag(&argc, argv, "--no-kv-cache");
    const int no_install = take_flag(&argc, argv, "--no-install");
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (ex_take_option(&argc, argv, PROGRAM, texts[i]->name, &texts[i]->text) < 0) {
            return EX_EXIT_USAGE;
        }
    }
    ex_options opt;
    ex_options_default(&opt);
    opt.batch = DEFAULT_BATCH; /* --batch and --seed are parsed here (so a resume knows whether they were given); */
    opt.seed = 42;             /* these are only the defaults --help shows */
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    gpt_arch arch = {DEFAULT_LAYERS, DEFAULT_WIDTH, DEFAULT_HEADS, DEFAULT_CONTEXT, 0, 0.0f};
    gpt_train tr = {DEFAULT_BATCH, 42, DEFAULT_DATA_SEED, DEFAULT_LR, DEFAULT_WEIGHT_DECAY, DEFAULT_CLIP};
    size_t steps = DEFAULT_STEPS, eval_every = DEFAULT_EVAL_EVERY, eval_windows = DEFAULT_EVAL_WINDOWS,
           sample_chars = DEFAULT_SAMPLE_CHARS, seed = 0, data_seed = 0;
    float temperature = DEFAULT_TEMPERATURE;
    const char *fortunes_dir = o_fortunes.text != NULL ? o_fortunes.text : DEFAULT_FORTUNES;
    const char *prompt_text = o_prompt.text != NULL ? o_prompt.text : "\n";
    int bad = 0;
    bad |= o_layers.text && ex_parse_size(o_layers.text, 1, 64, &arch.layers) != 0;
    bad |= o_width.text && ex_parse_size(o_width.text, 1, 8192, &arch.width) != 0;
    bad |= o_heads.text && ex_parse_size(o_heads.text, 1, 8192, &arch.heads) != 0;
    bad |= o_context.text && ex_parse_size(o_context.text, 1, 8192, &arch.context) != 0;
    bad |= o_steps.text && ex_parse_size(o_steps.text, 0, 100000000, &steps) != 0;
    bad |= o_eval_every.text && ex_parse_size(o_eval_every.text, 1, 100000000, &eval_every) != 0;
    bad |= o_eval_windows.text && ex_parse_size(o_eval_windows.text, 0, 100000000, &eval_windows) != 0;
    bad |= o_sample.text && ex_parse_size(o_sample.text, 0, 100000000, &sample_chars) != 0;
    bad |= o_batch.text && ex_parse_size(o_batch.text, 1, 65536, &tr.batch) != 0;
    bad |= o_seed.text && ex_parse_size(o_seed.text, 0, SIZE_MAX, &seed) != 0;
    bad |= o_data_seed.text && ex_parse_size(o_data_seed.text, 0, SIZE_MAX, &data_seed) != 0;
    bad |= o_lr.text && parse_float(o_lr.text, 0.0, 10.0, 1, &tr.lr) != 0;
    bad |= o_wd.text && parse_float(o_wd.text, 0.0, 10.0, 0, &tr.weight_decay) != 0;
    bad |= o_clip.text && parse_float(o_clip.text, 0.0, 1e30, 0, &tr.clip) != 0;
    bad |= o_dropout.text && (parse_float(o_dropout.text, 0.0, 1.0, 0, &arch.dropout) != 0 || arch.dropout >= 1.0f);
    bad |= o_temperature.text && parse_float(o_temperature.text, 0.0, 100.0, 0, &temperature) != 0;
    if (bad) {
        fprintf(stderr, PROGRAM ": an option has an invalid value: sizes are whole numbers (--layers 1-64, --width,\n"
                        "  --heads, --context 1-8192), --lr in (0, 10], --weight-decay in [0, 10], --clip >= 0,\n"
                        "  --dropout in [0, 1), --temperature in [0, 100] (try --help)\n");
        return EX_EXIT_USAGE;
    }
    if (o_seed.text) tr.seed = seed;
    if (o_data_seed.text) tr.data_seed = data_seed;
    if (prompt_text[0] == '\0') {
        fprintf(stderr, PROGRAM ": --prompt needs at least one character\n");
        return EX_EXIT_USAGE;
    }
    if (o_resume.text && (o_write_init.text || o_write_batches.text)) {
        fprintf(stderr, PROGRAM ": --write-init and --write-batches describe a fresh run, not a resumed one\n");
        return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    corpus data = {0};
    aim_model *model = NULL;
    aim_optimizer *adamw = NULL;
    aim_workspace *ws = NULL;
    aim_threadpool *pool = NULL;
    aim_rng *batch_rng = NULL, *sample_rng = NULL;
    unsigned char *windows = NULL;
    int32_t *inputs = NULL, *targets = NULL, *eval_in = NULL, *eval_tg = NULL, *prompt = NULL, *window = NULL;
    float *logits = NULL;
    double *prob = NULL;
    ex_log log = {0};
    checkpoint_info ck;
    memset(&ck, 0, sizeof ck);
    uint64_t first_step = 1;
    double interval_loss = 0.0;
    size_t interval_steps = 0;

    if (o_resume.text != NULL) {
        if (load_checkpoint(o_resume.text, &ck, &model, &adamw) != 0) {
            goto cleanup;
        }
        /* What the file fixes must not be asked for otherwise: sizes and seeds
         * compared as integers, the rest as the floats the file holds. */
        const struct {
            const option_text *o;
            uint64_t given, saved;
        } fixed_n[] = {
            {&o_layers, arch.layers, ck.arch.layers},   {&o_width, arch.width, ck.arch.width},
            {&o_heads, arch.heads, ck.arch.heads},      {&o_context, arch.context, ck.arch.context},
            {&o_batch, tr.batch, ck.train.batch},       {&o_seed, tr.seed, ck.train.seed},
            {&o_data_seed, tr.data_seed, ck.train.data_seed},
        };
        const struct {
            const option_text *o;
            float given, saved;
        } fixed_f[] = {
            {&o_dropout, arch.dropout, ck.arch.dropout}, {&o_lr, tr.lr, ck.train.lr},
            {&o_wd, tr.weight_decay, ck.train.weight_decay}, {&o_clip, tr.clip, ck.train.clip},
        };
        const char *clash = NULL;
        for (size_t i = 0; i < sizeof fixed_n / sizeof fixed_n[0]; i++) {
            if (fixed_n[i].o->text != NULL && fixed_n[i].given != fixed_n[i].saved) clash = fixed_n[i].o->name;
        }
        for (size_t i = 0; i < sizeof fixed_f / sizeof fixed_f[0]; i++) {
            if (fixed_f[i].o->text != NULL && fixed_f[i].given != fixed_f[i].saved) clash = fixed_f[i].o->name;
        }
        if (clash != NULL) {
            fprintf(stderr, PROGRAM ": %s disagrees with %s; a resumed run keeps the saved architecture, batch, "
                            "seeds, lr, weight decay and clip (its line: head -1 %s)\n",
                    clash, o_resume.text, o_resume.text);
            exit_code = EX_EXIT_USAGE;
            goto cleanup;
        }
        arch = ck.arch;
        tr = ck.train;
        first_step = ck.step + 1;
        interval_loss = ck.interval_loss;
        interval_steps = ck.interval_steps;
    }
    const size_t T = arch.context, B = tr.batch;
    if (arch.width % arch.heads != 0) {
        fprintf(stderr, PROGRAM ": --heads %zu does not divide --width %zu\n", arch.heads, arch.width);
        exit_code = EX_EXIT_USAGE;
        goto cleanup;
    }

    if (ensure_fortunes(fortunes_dir, no_install) != 0) {
        goto cleanup;
    }
    const double t_load = ex_now();
    if (load_corpus(fortunes_dir, tr.data_seed, &data) != 0) {
        goto cleanup;
    }
    printf(PROGRAM ": %s: %zu files, %zu fortunes; %zu training (%zu bytes) and %zu validation (%zu bytes), data seed "
                   "%llu; %zu distinct bytes; %.2f s\n",
           fortunes_dir, data.n_files, data.n_fortunes, data.n_fortunes - data.n_val_fortunes, data.n_train,
           data.n_val_fortunes, data.n_val, (unsigned long long)tr.data_seed, data.n_vocab, ex_now() - t_load);
    if (data.n_train <= T + 1 || val_windows_all(&data, T) == 0) {
        fprintf(stderr, PROGRAM ": the texts are too short for a context of %zu\n", T);
        goto cleanup;
    }
    if (o_resume.text != NULL && (ck.hash != data.hash || ck.n_train != data.n_train || ck.n_val != data.n_val ||
                                  ck.arch.vocab != data.n_vocab)) {
        fprintf(stderr, PROGRAM ": %s was trained on other texts (other fortunes or another data seed)\n",
                o_resume.text);
        goto cleanup;
    }
    arch.vocab = data.n_vocab;
    prompt = malloc(strlen(prompt_text) * sizeof *prompt);
    if (prompt == NULL) {
        goto cleanup;
    }
    for (size_t i = 0; prompt_text[i] != '\0'; i++) {
        const unsigned char *hit = memchr(data.vocab, (unsigned char)prompt_text[i], data.n_vocab);
        if (hit == NULL) {
            fprintf(stderr, PROGRAM ": the prompt's byte 0x%02x never occurs in the fortunes\n",
                    (unsigned)(unsigned char)prompt_text[i]);
            exit_code = EX_EXIT_USAGE;
            goto cleanup;
        }
        prompt[i] = (int32_t)(hit - data.vocab);
    }

    if (model == NULL) {
        const size_t dims[1] = {T};
        EX_TRY(aim_model_create(NULL, 1, dims, &model), "");
        EX_TRY(build_model(&arch, model), aim_model_last_error(model));
        aim_compile_config compile;
        EX_TRY(aim_compile_config_init(&compile), "");
        compile.max_batch = B;
        compile.seed = tr.seed;
        EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));
        EX_TRY(init_token_embedding(model, tr.seed), aim_model_last_error(model));
    }
    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    if (adamw == NULL) { /* AdamW: Adam with the decay decoupled from the gradient */
        aim_adam_config adam;
        EX_TRY(aim_adam_config_init(&adam), "");
        adam.weight_decay = tr.weight_decay;
        adam.decoupled = 1;
        EX_TRY(aim_adam_create(NULL, &adam, param_count, &adamw), "");
    }
    if (aim_model_input_size(model) != T || aim_model_output_size(model) != T * arch.vocab) {
        fprintf(stderr, PROGRAM ": the model does not read %zu ids and write (%zu, %zu) logits\n", T, T, arch.vocab);
        goto cleanup;
    }
    EX_TRY(aim_workspace_create(model, NULL, EVAL_BATCH, &ws), aim_model_last_error(model));
    if (ex_threadpool_create(&opt, &pool) != 0 || ex_threadpool_attach(pool, model, ws) != 0) {
        goto cleanup;
    }
    const size_t V = arch.vocab;
    windows = malloc(B * (T + 1));
    inputs = malloc(B * T * sizeof *inputs);
    targets = malloc(B * T * sizeof *targets);
    eval_in = malloc(EVAL_BATCH * T * sizeof *eval_in);
    eval_tg = malloc(EVAL_BATCH * T * sizeof *eval_tg);
    window = malloc(T * sizeof *window);
    logits = malloc(EVAL_BATCH * T * V * sizeof *logits);
    prob = malloc(V * sizeof *prob);
    if (windows == NULL || inputs == NULL || targets == NULL || eval_in == NULL || eval_tg == NULL ||
        window == NULL || logits == NULL || prob == NULL) {
        fprintf(stderr, PROGRAM ": out of memory\n");
        goto cleanup;
    }
    EX_TRY(aim_rng_create(NULL, 0, &batch_rng), "");
    EX_TRY(aim_rng_create(NULL, tr.seed ^ 0x5A3B1E5EEDull, &sample_rng), "");
    const size_t all_windows = val_windows_all(&data, T);
    const size_t n_eval = eval_windows == 0 || eval_windows > all_windows ? all_windows : eval_windows;

    printf("model gpt: %zu blocks, width %zu, %zu heads, context %zu, vocab %zu (%zu parameters); AdamW lr %g, "
           "weight decay %g, clip %g, dropout %g, batch %zu, steps %llu..%zu, seed %llu, threads %zu\n",
           arch.layers, arch.width, arch.heads, T, V, param_count, (double)tr.lr, (double)tr.weight_decay,
           (double)tr.clip, (double)arch.dropout, B, (unsigned long long)first_step, steps,
           (unsigned long long)tr.seed, opt.threads);
    printf("validation: %zu of %zu windows of %zu characters (%zu predicted)\n", n_eval, all_windows, T + 1,
           n_eval * T);
    if (o_resume.text != NULL) {
        printf("resumed from %s after step %llu\n", o_resume.text, (unsigned long long)ck.step);
    }
    if (o_write_init.text != NULL) {
        if (write_init(o_write_init.text, &arch, params, param_count) != 0) goto cleanup;
        printf("initial parameters written to %s\n", o_write_init.text);
    }
    if (o_write_batches.text != NULL) {
        if (write_batches(o_write_batches.text, &data, &arch, &tr, steps, n_eval, eval_every, batch_rng, windows) != 0)
            goto cleanup;
        printf("vocabulary, validation text and %zu batches written to %s\n", steps, o_write_batches.text);
    }
    if (ex_log_open(&log, opt.log_path, program.log_columns) != 0) {
        goto cleanup;
    }
    fflush(stdout);

    /* Each interval between evaluations is one bar of progress.h (an epoch's
     * in the other examples): its steps, the running mean of its losses (the
     * one the --save checkpoint carries), and at its end the validation. */
    ex_progress progress;
    ex_progress_init(&progress, stdout, EX_PROGRESS_AUTO);
    double bpc = 0.0, train_seconds = 0.0, last_loss = 0.0;
    int evaluated = 0;
    if (first_step == 1) {
        const double te = ex_now();
        EX_TRY(validation_bpc(model, ws, &data, T, n_eval, logits, eval_in, eval_tg, &bpc), aim_workspace_last_error(ws));
        evaluated = 1;
        printf("Step 0/%zu - val_bpc: %.4f - eval %.1fs\n", steps, bpc, ex_now() - te);
        fflush(stdout);
    }
    float *grads = NULL;
    size_t grad_count = 0;
    EX_TRY(aim_model_gradients(model, &grads, &grad_count), aim_model_last_error(model));
    for (uint64_t step = first_step; step <= steps; step++) {
        if (step == first_step || (step - 1) % eval_every == 0) {
            /* The interval holding `step`: a resumed run may start inside one. */
            const uint64_t from = (step - 1) / eval_every * eval_every + 1;
            const uint64_t to = from + eval_every - 1 < steps ? from + eval_every - 1 : steps;
            char header[96];
            snprintf(header, sizeof header, "Steps %llu-%llu/%zu", (unsigned long long)from,
                     (unsigned long long)to, steps);
            ex_progress_begin(&progress, (size_t)(to - from + 1), header);
            ex_progress_resume(&progress, (size_t)(step - from), interval_loss, (double)interval_steps);
        }
        const double ts = ex_now();
        float loss = 0.0f;
        EX_TRY(draw_windows(batch_rng, tr.seed, step, &data, T, B, windows), "");
        split_windows(windows, T, B, inputs, targets);
        EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
        EX_TRY(aim_model_forward_ids(model, AIM_MODE_TRAIN, inputs, B * T, B), aim_model_last_error(model));
        /* (B, T, V) logits against B * T labels: a label a position */
        EX_TRY(aim_model_loss_sparse(model, 0, targets, B * T, &loss), aim_model_last_error(model));
        EX_TRY(aim_model_backward(model, NULL, 0), aim_model_last_error(model));
        if (tr.clip > 0.0f) {
            EX_TRY(aim_clip_grad_norm(grads, grad_count, tr.clip, NULL), "the gradient is not finite");
        }
        EX_TRY(aim_optimizer_step_model(adamw, model, tr.lr), aim_optimizer_last_error(adamw));
        train_seconds += ex_now() - ts;
        interval_loss += (double)loss;
        interval_steps++;
        last_loss = (double)loss;
        ex_progress_step(&progress, (double)loss, 1.0);
        /* An interval ends every eval_every steps; the last step evaluates
         * too but leaves its interval open, so a run resumed from its
         * checkpoint prints what the uninterrupted run prints. */
        const int interval_end = step % eval_every == 0;
        if (!interval_end && step != steps) {
            ex_log_row(&log, "%llu,%.9g,,%.3f", (unsigned long long)step, (double)loss, train_seconds);
            continue;
        }
        EX_TRY(validation_bpc(model, ws, &data, T, n_eval, logits, eval_in, eval_tg, &bpc), aim_workspace_last_error(ws));
        evaluated = 1;
        const ex_metric shown[] = {{"val_bpc", bpc}};
        ex_progress_end(&progress, shown, 1);
        ex_log_row(&log, "%llu,%.9g,%.9g,%.3f", (unsigned long long)step, (double)loss, bpc, train_seconds);
        if (interval_end) {
            interval_loss = 0.0;
            interval_steps = 0;
        }
        if (o_save.text != NULL) {
            checkpoint_info k = {arch, tr, step, data.hash, data.n_train, data.n_val, interval_loss, interval_steps};
            if (save_checkpoint(o_save.text, &k, model, adamw) != 0) goto cleanup;
            if (step == steps) printf("checkpoint: %s (after step %llu)\n", o_save.text, (unsigned long long)step);
        }
    }
    if (!evaluated) { /* a resumed run with no step left */
        EX_TRY(validation_bpc(model, ws, &data, T, n_eval, logits, eval_in, eval_tg, &bpc), aim_workspace_last_error(ws));
        printf("Step %llu/%zu - val_bpc: %.4f\n", (unsigned long long)ck.step, steps, bpc);
    }
    const size_t trained = first_step <= steps ? (size_t)(steps - first_step + 1) : 0;

    double sample_seconds = 0.0;
    if (sample_chars > 0) {
        printf("sample (%zu characters, temperature %g, %s):\n", sample_chars, (double)temperature,
               no_kv_cache ? "a full forward per character" : "KV cache");
        fwrite(prompt_text, 1, strlen(prompt_text), stdout);
        const double t0 = ex_now();
        EX_TRY(sample_text(model, ws, &data, T, !no_kv_cache, sample_rng, temperature, prompt, strlen(prompt_text),
                           sample_chars, logits, window, prob),
               aim_workspace_last_error(ws));
        sample_seconds = ex_now() - t0;
        printf("\n(%.0f characters/s)\n", (double)sample_chars / sample_seconds);
    }
    printf("RESULT " PROGRAM " val_bpc=%.4f last_loss=%.4f steps=%zu trained_steps=%zu ms_per_step=%.1f "
           "train_seconds=%.2f params=%zu layers=%zu width=%zu heads=%zu context=%zu batch=%zu vocab=%zu "
           "dropout=%g lr=%g seed=%llu threads=%zu kv_cache=%d sample_chars_per_s=%.0f\n",
           bpc, last_loss, steps, trained, trained ? 1000.0 * train_seconds / (double)trained : 0.0, train_seconds,
           param_count, arch.layers, arch.width, arch.heads, T, B, V, (double)arch.dropout, (double)tr.lr,
           (unsigned long long)tr.seed, opt.threads, !no_kv_cache,
           sample_seconds > 0.0 ? (double)sample_chars / sample_seconds : 0.0);
    exit_code = 0;

cleanup:
    if (ex_log_close(&log) != 0) {
        exit_code = 1;
    }
    free(windows);
    free(inputs);
    free(targets);
    free(eval_in);
    free(eval_tg);
    free(prompt);
    free(window);
    free(logits);
    free(prob);
    aim_rng_free(batch_rng);
    aim_rng_free(sample_rng);
    aim_workspace_free(ws);
    aim_optimizer_free(adamw);
    aim_model_free(model);
    aim_threadpool_free(pool);
    corpus_free(&data);
    return exit_code;
}
