/*
 * libaimodel example - which language is a word?
 * SPDX-License-Identifier: MIT
 */
/*
 * Words of five Debian word lists (/usr/share/dict: american-english,
 * french, ngerman, spanish, italian from the packages wamerican, wfrench,
 * wngerman, wspanish, witalian) as character ids -> Embedding 32 (padding
 * id 0) -> bidirectional GRU 64 (the final states of both directions, 128
 * features) -> Dense 5 (logits); softmax cross-entropy on the language and
 * Adam (lr 2e-3), batch 32, 10 epochs over 20000 training words per
 * language; the test accuracy over 4000 other words per language. Every
 * layer starts as PyTorch's default initialization does.
 *
 * The data, in this order (tests/bench/text_torch.py trains the same model
 * in PyTorch on the split this program writes with --write-split):
 *  1. Each list is read as UTF-8 and lower-cased (A-Z and the Latin-1
 *     capitals À-Þ; the lists hold no other script). A word that then holds
 *     anything but a letter (a-z, ß-ÿ without ÷) is dropped: apostrophes
 *     (possessives such as "dog's", "dell'", "aujourd'hui"), hyphens, dots.
 *     Words longer than T = 16 characters are dropped, not truncated
 *     (truncation could make two words one).
 *  2. Duplicates within a list (after lower-casing) count once; a word found
 *     in two or more lists is dropped from all of them, so no word is
 *     ambiguous.
 *  3. Each language's words, sorted by their bytes, are shuffled with the
 *     library's generator seeded with --data-seed (one generator, English
 *     first); the first --test-per-language of them are test words, the
 *     next --train-per-language training words, so the classes are balanced
 *     and no word is in both sets (checked after the selection).
 *  4. The alphabet is the set of characters of the selected words, in code
 *     point order, with ids 1, 2, ...; id 0 pads a word on the right to T.
 *
 * The example installs the lists it lacks with apt-get when it runs as root
 * (unless --no-install), and otherwise prints the command and stops.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aimodel.h"
#include "example_util.h"

#define T 16            /* characters per word: longer words are dropped */
#define EMBED 32        /* embedding size */
#define HIDDEN 64       /* GRU hidden size per direction */
#define N_LANG 5
#define LEARNING_RATE 2e-3f
#define DEFAULT_DICT "/usr/share/dict"
#define DEFAULT_TRAIN 20000 /* training words per language */
#define DEFAULT_TEST 4000   /* test words per language */
#define DEFAULT_DATA_SEED 2026
#define MAX_CHARS 256   /* every character kept is a code point below 256 */

static const struct {
    const char *name, *file, *package;
} LANGS[N_LANG] = {
    {"english", "american-english", "wamerican"}, {"french", "french", "wfrench"},
    {"german", "ngerman", "wngerman"},             {"spanish", "spanish", "wspanish"},
    {"italian", "italian", "witalian"},
};

/* ---- the word lists ------------------------------------------------------ */

/* 0 if `path` can be opened for reading, else the errno of the failure. */
static int open_errno(const char *path)
{
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        fclose(f);
        return 0;
    }
    return errno != 0 ? errno : EIO;
}

/* Checks that the five lists are in `dir`. A directory other than the
 * default (--dict DIR) must hold them: the first that cannot be read is
 * named with the reason. For the default directory, as root and unless
 * `no_install`, installs the missing packages with apt-get (as the
 * Makefile's deps targets and examples/plots.sh do). Returns 0, or -1 after
 * saying what is missing and how to install it. */
static int ensure_word_lists(const char *dir, int no_install)
{
    char path[4096], missing[256] = "";
    for (int attempt = 0; attempt < 2; attempt++) {
        missing[0] = '\0';
        for (int l = 0; l < N_LANG; l++) {
            snprintf(path, sizeof path, "%s/%s", dir, LANGS[l].file);
            const int why = open_errno(path);
            if (why != 0 && strcmp(dir, DEFAULT_DICT) != 0) {
                fprintf(stderr, "text_classifier: cannot read %s: %s (--dict %s must hold the five lists:",
                        path, strerror(why), dir);
                for (int k = 0; k < N_LANG; k++) {
                    fprintf(stderr, " %s", LANGS[k].file);
                }
                fprintf(stderr, ")\n");
                return -1;
            }
            if (why != 0) {
                strcat(missing, " ");
                strcat(missing, LANGS[l].package);
            }
        }
        if (missing[0] == '\0') {
            return 0;
        }
        if (attempt > 0 || no_install || geteuid() != 0 ||
            access("/usr/bin/apt-get", X_OK) != 0) {
            break;
        }
        char command[512];
        snprintf(command, sizeof command,
                 "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq%s >/dev/null", missing);
        printf("text_classifier: installing%s\n", missing);
        fflush(stdout);
        if (system(command) != 0) {
            fprintf(stderr, "text_classifier: apt-get could not install%s\n", missing);
        }
    }
    fprintf(stderr,
            "text_classifier: the word lists of%s are missing from %s; cannot run without them.\n"
            "  install them: sudo apt-get update && sudo apt-get install -y%s\n",
            missing, dir, missing);
    return -1;
}

/* Lower-cases one word in place (UTF-8; A-Z and U+00C0-U+00DE but ×) and
 * returns its length in characters, or 0 if it holds anything but a letter
 * (a-z, U+00DF-U+00FF but ÷) or is longer than T characters. */
static size_t lower_word(char *w)
{
    size_t chars = 0;
    unsigned char *p = (unsigned char *)w;
    while (*p != '\0') {
        if (*p >= 'A' && *p <= 'Z') {
            *p = (unsigned char)(*p + 32);
        }
        if (*p >= 'a' && *p <= 'z') {
            p++;
        } else if (p[0] == 0xC3 && p[1] >= 0x80 && p[1] <= 0xBF) { /* U+00C0..U+00FF */
            if (p[1] <= 0x9E && p[1] != 0x97) {
                p[1] = (unsigned char)(p[1] + 0x20); /* À-Þ -> à-þ */
            }
            if (p[1] < 0x9F || p[1] == 0xB7) { /* ×, ÷ */
                return 0;
            }
            p += 2;
        } else {
            return 0; /* an apostrophe, a hyphen, a dot, another script */
        }
        if (++chars > T) {
            return 0;
        }
    }
    return chars;
}

/* The code point of the character at p (ASCII or U+00C0-U+00FF, which is
 * all lower_word() keeps), advancing p. */
static unsigned next_char(const unsigned char **p)
{
    const unsigned char *s = *p;
    if (s[0] < 0x80) {
        *p = s + 1;
        return s[0];
    }
    *p = s + 2;
    return 0xC0u + (unsigned)(s[1] - 0x80);
}

typedef struct entry {
    const char *word; /* lower-cased, inside a file's text */
    uint32_t lang;
} entry;

static int by_word_then_lang(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = strcmp(x->word, y->word);
    return c != 0 ? c : (x->lang > y->lang) - (x->lang < y->lang);
}

static int by_word(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The selected words, encoded. */
typedef struct dataset {
    char *text[N_LANG];       /* the files, lower-cased in place */
    const char **words;       /* (count) */
    int32_t *labels;          /* (count) */
    int32_t *ids;             /* (count, T) character ids, 0-padded */
    size_t count;
    size_t per_lang_kept[N_LANG];  /* after filtering and deduplication */
    size_t lines[N_LANG], dropped_chars[N_LANG], ambiguous;
    unsigned alphabet[MAX_CHARS]; /* id - 1 -> code point */
    size_t vocab;                 /* ids: 0 (padding) to vocab - 1 */
} dataset;

static void dataset_free(dataset *d)
{
    for (int l = 0; l < N_LANG; l++) {
        free(d->text[l]);
    }
    free(d->words);
    free(d->labels);
    free(d->ids);
    memset(d, 0, sizeof *d);
}

/*
 * Builds `test` (the first n_test shuffled words of each language) and
 * `train` (the next n_train), as the comment at the top describes.
 * Returns 0, or -1 after printing why.
 */
static int load_words(const char *dir, size_t n_train, size_t n_test, uint64_t data_seed, dataset *train,
                      dataset *test)
{
    int rc = -1;
    entry *all = NULL;
    uint32_t *order = NULL;
    aim_rng *rng = NULL;
    size_t n_all = 0, cap_all = 0;
    dataset *sets[2] = {test, train};
    const size_t wanted[2] = {n_test, n_train};

    for (int l = 0; l < N_LANG; l++) {
        char path[4096];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, LANGS[l].file);
        if (ex_read_file(path, &train->text[l], &len) != 0) {
            goto done;
        }
        for (char *line = train->text[l]; *line != '\0';) {
            char *end = strchr(line, '\n');
            char *next = end != NULL ? end + 1 : line + strlen(line);
            if (end != NULL) {
                *end = '\0';
            }
            if (end != NULL && end > line && end[-1] == '\r') {
                end[-1] = '\0';
            }
            train->lines[l]++;
            if (lower_word(line) == 0) {
                train->dropped_chars[l] += line[0] != '\0';
            } else {
                if (n_all == cap_all) {
                    cap_all = cap_all ? 2 * cap_all : 1 << 20;
                    entry *bigger = realloc(all, cap_all * sizeof *all);
                    if (bigger == NULL) {
                        fprintf(stderr, "text_classifier: out of memory\n");
                        goto done;
                    }
                    all = bigger;
                }
                all[n_all].word = line;
                all[n_all].lang = (uint32_t)l;
                n_all++;
            }
            line = next;
        }
    }

    /* One entry per (word, language), then drop the words of several languages. */
    qsort(all, n_all, sizeof *all, by_word_then_lang);
    size_t kept = 0;
    for (size_t i = 0; i < n_all;) {
        size_t j = i + 1, langs = 1;
        while (j < n_all && strcmp(all[j].word, all[i].word) == 0) {
            langs += all[j].lang != all[j - 1].lang;
            j++;
        }
        if (langs == 1) {
            all[kept++] = all[i];
            train->per_lang_kept[all[i].lang]++;
        } else {
            train->ambiguous++;
        }
        i = j;
    }

    for (int l = 0; l < N_LANG; l++) {
        if (train->per_lang_kept[l] < n_train + n_test) {
            fprintf(stderr, "text_classifier: %s has %zu usable words, fewer than the %zu + %zu asked for\n",
                    LANGS[l].name, train->per_lang_kept[l], n_train, n_test);
            goto done;
        }
    }
    for (int s = 0; s < 2; s++) {
        dataset *d = sets[s];
        const size_t count = N_LANG * wanted[s];
        d->words = malloc(count * sizeof *d->words);
        d->labels = malloc(count * sizeof *d->labels);
        d->ids = calloc(count * T, sizeof *d->ids);
        if (d->words == NULL || d->labels == NULL || d->ids == NULL) {
            fprintf(stderr, "text_classifier: out of memory\n");
            goto done;
        }
    }

    /* Per language, in sorted order, one shuffle of the generator's stream. */
    order = malloc(kept * sizeof *order);
    if (order == NULL || aim_rng_create(NULL, data_seed, &rng) != AIM_OK) {
        fprintf(stderr, "text_classifier: out of memory\n");
        goto done;
    }
    for (int l = 0; l < N_LANG; l++) {
        size_t n = 0;
        for (size_t i = 0; i < kept; i++) {
            if (all[i].lang == (uint32_t)l) {
                order[n++] = (uint32_t)i;
            }
        }
        if (aim_rng_shuffle_u32(rng, order, n) != AIM_OK) {
            goto done;
        }
        size_t at = 0;
        for (int s = 0; s < 2; s++) {
            for (size_t k = 0; k < wanted[s]; k++) {
                dataset *d = sets[s];
                d->words[d->count] = all[order[at++]].word;
                d->labels[d->count] = l;
                d->count++;
            }
        }
    }

    /* No word in both sets: every selected word is distinct. */
    const size_t n_sel = train->count + test->count;
    const char **check = malloc(n_sel * sizeof *check);
    if (check == NULL) {
        goto done;
    }
    memcpy(check, train->words, train->count * sizeof *check);
    memcpy(check + train->count, test->words, test->count * sizeof *check);
    qsort(check, n_sel, sizeof *check, by_word);
    for (size_t i = 1; i < n_sel; i++) {
        if (strcmp(check[i - 1], check[i]) == 0) {
            fprintf(stderr, "text_classifier: \"%s\" was selected twice\n", check[i]);
            free(check);
            goto done;
        }
    }
    free(check);

    /* The alphabet of the selected words, then the ids. */
    int used[MAX_CHARS] = {0};
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < sets[s]->count; i++) {
            for (const unsigned char *p = (const unsigned char *)sets[s]->words[i]; *p != '\0';) {
                used[next_char(&p)] = 1;
            }
        }
    }
    int32_t id_of[MAX_CHARS] = {0};
    size_t vocab = 1;
    for (unsigned c = 0; c < MAX_CHARS; c++) {
        if (used[c]) {
            train->alphabet[vocab - 1] = c;
            id_of[c] = (int32_t)vocab++;
        }
    }
    for (int s = 0; s < 2; s++) {
        dataset *d = sets[s];
        d->vocab = vocab;
        memcpy(d->alphabet, train->alphabet, sizeof d->alphabet);
        for (size_t i = 0; i < d->count; i++) {
            size_t t = 0;
            for (const unsigned char *p = (const unsigned char *)d->words[i]; *p != '\0';) {
                d->ids[i * T + t++] = id_of[next_char(&p)];
            }
        }
    }
    rc = 0;
done:
    aim_rng_free(rng);
    free(order);
    free(all);
    return rc;
}

/* Writes the split for tests/bench/text_torch.py: comment lines with the
 * settings, the vocabulary and the alphabet, then one row per word:
 * split, label, word, and its T ids. */
static int write_split(const char *path, const dataset *train, const dataset *test, uint64_t data_seed)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    fprintf(f, "# text_classifier split: data_seed=%llu T=%d vocab=%zu train=%zu test=%zu\n",
            (unsigned long long)data_seed, T, train->vocab, train->count, test->count);
    fprintf(f, "# labels:");
    for (int l = 0; l < N_LANG; l++) {
        fprintf(f, " %d=%s", l, LANGS[l].name);
    }
    fprintf(f, "\n# alphabet (id=character):");
    for (size_t k = 0; k + 1 < train->vocab; k++) {
        const unsigned c = train->alphabet[k];
        if (c < 0x80) {
            fprintf(f, " %zu=%c", k + 1, (int)c);
        } else {
            fprintf(f, " %zu=%c%c", k + 1, (int)(0xC0 | (c >> 6)), (int)(0x80 | (c & 0x3F)));
        }
    }
    fprintf(f, "\n# split\tlabel\tword\tids\n");
    const dataset *sets[2] = {train, test};
    const char *names[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < sets[s]->count; i++) {
            fprintf(f, "%s\t%d\t%s\t", names[s], (int)sets[s]->labels[i], sets[s]->words[i]);
            for (size_t t = 0; t < T; t++) {
                fprintf(f, t ? " %d" : "%d", (int)sets[s]->ids[i * T + t]);
            }
            fputc('\n', f);
        }
    }
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

/* ---- evaluation ---------------------------------------------------------- */

/* Test accuracy, overall and per language, by aim_model_predict_ids() in
 * chunks of EX_EVAL_BATCH. */
static aim_status evaluate(const aim_model *model, aim_workspace *ws, const dataset *d, double *accuracy,
                           double per_lang[N_LANG])
{
    float out[EX_EVAL_BATCH * N_LANG];
    size_t correct = 0, right[N_LANG] = {0}, total[N_LANG] = {0};
    for (size_t i = 0; i < d->count; i += EX_EVAL_BATCH) {
        const size_t nb = d->count - i < EX_EVAL_BATCH ? d->count - i : EX_EVAL_BATCH;
        aim_status st = aim_model_predict_ids(model, ws, d->ids + i * T, nb * T, nb, out, nb * N_LANG);
        if (st != AIM_OK) {
            return st;
        }
        for (size_t k = 0; k < nb; k++) {
            const int32_t label = d->labels[i + k];
            const size_t hit = ex_count_correct(out + k * N_LANG, 1, N_LANG, &d->labels[i + k], 0.5f);
            correct += hit;
            right[label] += hit;
            total[label]++;
        }
    }
    *accuracy = (double)correct / (double)d->count;
    for (int l = 0; l < N_LANG; l++) {
        per_lang[l] = total[l] ? (double)right[l] / (double)total[l] : 0.0;
    }
    return AIM_OK;
}

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

int main(int argc, char **argv)
{
    const ex_program program = {
        .name = "text_classifier",
        .summary = "Which language is a word? Debian's word lists of English, French, German, Spanish and\n"
                   "Italian as characters -> Embedding 32 -> bidirectional GRU 64 -> Dense 5, with Adam.",
        .options = EX_OPT_EPOCHS | EX_OPT_BATCH | EX_OPT_SEED | EX_OPT_THREADS,
        .extra_help = "  --dict DIR    the word lists' directory (default " DEFAULT_DICT ")\n"
                      "  --train-per-language N  training words per language (default 20000)\n"
                      "  --test-per-language N   test words per language (default 4000)\n"
                      "  --data-seed N the seed of the train/test split (default 2026)\n"
                      "  --write-split FILE  write the split (words, labels, ids) for\n"
                      "                tests/bench/text_torch.py to FILE and exit\n"
                      "  --no-install  do not apt-get install missing word lists (as root)\n",
        .log_columns = NULL,
    };
    const char *dict = DEFAULT_DICT, *train_text = NULL, *test_text = NULL, *seed_text = NULL, *split_path = NULL;
    const int no_install = take_flag(&argc, argv, "--no-install");
    if (ex_take_option(&argc, argv, program.name, "--dict", &dict) < 0 ||
        ex_take_option(&argc, argv, program.name, "--train-per-language", &train_text) < 0 ||
        ex_take_option(&argc, argv, program.name, "--test-per-language", &test_text) < 0 ||
        ex_take_option(&argc, argv, program.name, "--data-seed", &seed_text) < 0 ||
        ex_take_option(&argc, argv, program.name, "--write-split", &split_path) < 0) {
        return EX_EXIT_USAGE;
    }
    size_t n_train = DEFAULT_TRAIN, n_test = DEFAULT_TEST, data_seed = DEFAULT_DATA_SEED;
    if ((train_text && ex_parse_size(train_text, 1, 1000000, &n_train) != 0) ||
        (test_text && ex_parse_size(test_text, 1, 1000000, &n_test) != 0) ||
        (seed_text && ex_parse_size(seed_text, 0, SIZE_MAX, &data_seed) != 0)) {
        fprintf(stderr, "text_classifier: --train-per-language, --test-per-language (1 to 1000000) and "
                        "--data-seed take a number\n");
        return EX_EXIT_USAGE;
    }
    ex_options opt;
    ex_options_default(&opt);
    opt.epochs = 10;
    switch (ex_parse_args(argc, argv, &program, &opt)) {
    case EX_ARGS_RUN: break;
    case EX_ARGS_HELP: return 0;
    default: return EX_EXIT_USAGE;
    }

    int exit_code = 1;
    dataset train = {0}, test = {0};
    aim_model *model = NULL;
    aim_optimizer *adam = NULL;
    aim_workspace *ws = NULL;
    aim_threadpool *threadpool = NULL;
    aim_rng *shuffle = NULL;
    uint32_t *order = NULL;
    int32_t *batch_ids = NULL, *batch_labels = NULL;

    if (ensure_word_lists(dict, no_install) != 0) {
        goto cleanup;
    }
    const double t_load = ex_now();
    if (load_words(dict, n_train, n_test, data_seed, &train, &test) != 0) {
        goto cleanup;
    }
    printf("text_classifier: %s, words per list / dropped for their characters or length / usable:\n", dict);
    for (int l = 0; l < N_LANG; l++) {
        printf("  %-8s %7zu / %6zu / %6zu\n", LANGS[l].name, train.lines[l], train.dropped_chars[l],
               train.per_lang_kept[l]);
    }
    printf("  %zu words in several lists dropped; %zu train and %zu test words (%zu and %zu per language, "
           "data seed %llu, no word in both), %zu ids (padding and %zu characters), T %d; %.2f s\n",
           train.ambiguous, train.count, test.count, n_train, n_test, (unsigned long long)data_seed, train.vocab,
           train.vocab - 1, T, ex_now() - t_load);
    if (split_path != NULL) {
        if (write_split(split_path, &train, &test, data_seed) != 0) {
            goto cleanup;
        }
        printf("text_classifier: split written to %s\n", split_path);
        exit_code = 0;
        goto cleanup;
    }
    if (ex_threadpool_create(&opt, &threadpool) != 0) {
        goto cleanup;
    }

    /* int32 [T] -> Embedding [T, 32] -> bidirectional GRU, final states [128] -> Dense 5. */
    const size_t input_dims[1] = {T};
    EX_TRY(aim_model_create(NULL, 1, input_dims, &model), "");
    EX_TRY(aim_model_set_input_dtype(model, 0, AIM_DTYPE_INT32), aim_model_last_error(model));
    aim_embedding_config embed;
    EX_TRY(aim_embedding_config_init(&embed, train.vocab, EMBED), "");
    embed.has_padding = 1;
    embed.padding_idx = 0;
    EX_TRY(aim_model_add_embedding(model, &embed), aim_model_last_error(model));
    aim_rnn_config gru;
    EX_TRY(aim_rnn_config_init(&gru, HIDDEN, 1), "");
    gru.bidirectional = 1;
    gru.return_sequences = 0;
    EX_TRY(aim_model_add_gru(model, &gru), aim_model_last_error(model));
    aim_dense_config dense;
    EX_TRY(aim_dense_config_init(&dense, N_LANG, AIM_ACT_IDENTITY), "");
    dense.init = AIM_INIT_PYTORCH; /* every layer initialized as PyTorch's default */
    EX_TRY(aim_model_add_dense(model, &dense), aim_model_last_error(model));
    aim_compile_config compile;
    EX_TRY(aim_compile_config_init(&compile), "");
    compile.max_batch = opt.batch;
    compile.seed = opt.seed;
    EX_TRY(aim_model_compile(model, &compile), aim_model_last_error(model));
    EX_TRY(aim_workspace_create(model, NULL, EX_EVAL_BATCH, &ws), aim_model_last_error(model));
    if (ex_threadpool_attach(threadpool, model, ws) != 0) {
        goto cleanup;
    }
    float *params = NULL;
    size_t param_count = 0;
    EX_TRY(aim_model_parameters(model, &params, &param_count), aim_model_last_error(model));
    EX_TRY(aim_adam_create(NULL, NULL, param_count, &adam), "");

    printf("model embedding%d-bigru%d-%d (%zu parameters), Adam lr %g, batch %zu, %zu epochs, seed %llu, "
           "threads %zu\n",
           EMBED, HIDDEN, N_LANG, param_count, (double)LEARNING_RATE, opt.batch, opt.epochs,
           (unsigned long long)opt.seed, opt.threads);

    /* Shuffled batches, the last one short; the shuffle seeded apart from the
     * initialization, as ex_fit_classifier() does. */
    order = malloc(train.count * sizeof *order);
    batch_ids = malloc(opt.batch * T * sizeof *batch_ids);
    batch_labels = malloc(opt.batch * sizeof *batch_labels);
    if (order == NULL || batch_ids == NULL || batch_labels == NULL) {
        fprintf(stderr, "text_classifier: out of memory\n");
        goto cleanup;
    }
    for (size_t i = 0; i < train.count; i++) {
        order[i] = (uint32_t)i;
    }
    EX_TRY(aim_rng_create(NULL, opt.seed + 1, &shuffle), "");
    ex_progress progress;
    ex_progress_init(&progress, stdout, EX_PROGRESS_AUTO);
    const double t0 = ex_now();
    for (size_t epoch = 1; epoch <= opt.epochs; epoch++) {
        size_t correct = 0;
        EX_TRY(aim_rng_shuffle_u32(shuffle, order, train.count), "");
        ex_progress_epoch(&progress, epoch, opt.epochs, (train.count + opt.batch - 1) / opt.batch);
        for (size_t i = 0; i < train.count; i += opt.batch) {
            const size_t nb = train.count - i < opt.batch ? train.count - i : opt.batch;
            for (size_t k = 0; k < nb; k++) {
                memcpy(batch_ids + k * T, train.ids + (size_t)order[i + k] * T, T * sizeof *batch_ids);
                batch_labels[k] = train.labels[order[i + k]];
            }
            float loss = 0.0f;
            const float *logits = NULL;
            size_t logit_count = 0;
            EX_TRY(aim_model_zero_grad(model), aim_model_last_error(model));
            EX_TRY(aim_model_forward_ids(model, AIM_MODE_TRAIN, batch_ids, nb * T, nb), aim_model_last_error(model));
            EX_TRY(aim_model_loss_sparse(model, 0, batch_labels, nb, &loss), aim_model_last_error(model));
            EX_TRY(aim_model_output(model, 0, &logits, &logit_count), aim_model_last_error(model));
            correct += ex_count_correct(logits, nb, N_LANG, batch_labels, 0.5f);
            EX_TRY(aim_model_backward(model, NULL, 0), aim_model_last_error(model));
            EX_TRY(aim_optimizer_step_model(adam, model, LEARNING_RATE), aim_optimizer_last_error(adam));
            ex_progress_step(&progress, (double)loss, (double)nb);
        }
        /* The running loss, weighted by the batch sizes, is the epoch's mean. */
        const ex_metric shown[] = {{"accuracy", (double)correct / (double)train.count}};
        ex_progress_end(&progress, shown, 1);
    }
    const double train_seconds = ex_now() - t0;

    double accuracy = 0.0, per_lang[N_LANG];
    EX_TRY(evaluate(model, ws, &test, &accuracy, per_lang), aim_workspace_last_error(ws));
    printf("test accuracy %.4f:", accuracy);
    for (int l = 0; l < N_LANG; l++) {
        printf(" %s %.3f", LANGS[l].name, per_lang[l]);
    }
    printf("\nRESULT text_classifier test_accuracy=%.4f train_seconds=%.2f epochs=%zu batch=%zu threads=%zu "
           "seed=%llu data_seed=%llu train_words=%zu test_words=%zu vocab=%zu\n",
           accuracy, train_seconds, opt.epochs, opt.batch, opt.threads, (unsigned long long)opt.seed,
           (unsigned long long)data_seed, train.count, test.count, train.vocab);
    exit_code = 0;

cleanup:
    free(order);
    free(batch_ids);
    free(batch_labels);
    aim_rng_free(shuffle);
    aim_workspace_free(ws);
    aim_optimizer_free(adam);
    aim_model_free(model);
    aim_threadpool_free(threadpool); /* after the model and workspace that use it */
    /* test's words point into train's texts: free test first */
    dataset_free(&test);
    dataset_free(&train);
    return exit_code;
}
