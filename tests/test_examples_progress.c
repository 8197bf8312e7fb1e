/* The examples' training progress (examples/common/progress.c), the format
 * the C examples and the Python package share (Keras 2's):
 *  - the counter and bar: right-aligned step count, Keras's done =
 *    int(30 * step / total) with a '>' head while unfinished;
 *  - the ETA ("Ns", "m:ss", "h:mm:ss", truncated) and the rate ("Nms/step"
 *    from 1 ms, else "Nus/step", rounded half up);
 *  - a whole epoch on a fake terminal: the header, redraws with '\r' at most
 *    10 a second and at the last step, the running loss weighted by the
 *    samples, the final line padded over a longer bar line;
 *  - the same epoch on a plain stream: no '\r', an in-progress line at most
 *    every 10 s of the epoch (none in a short one), then the final line;
 *  - a metric named "loss" in the final line takes the running loss's place;
 *  - a resumed interval counts the steps and losses it was given;
 *  - quiet mode prints nothing.
 * The clock is a fake one advanced by the test; the output goes to an
 * open_memstream() buffer. The formatter's source is included rather than
 * linked: it needs nothing but libc, and so the Makefile's one rule for
 * tests/test_*.c builds this test as it builds the others (the Makefile
 * lists progress.c and progress.h as this test's prerequisites too, so a
 * change to them rebuilds it).
 */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../examples/common/progress.c"

/* ---- a fake clock and a memory stream ---------------------------------- */

static double fake_clock(void *context)
{
    return *(const double *)context;
}

typedef struct capture {
    FILE *out;
    char *text;
    size_t size;
    double now;
    ex_progress p;
} capture;

static void capture_open(capture *c, ex_progress_mode mode)
{
    memset(c, 0, sizeof *c);
    c->out = open_memstream(&c->text, &c->size);
    assert_non_null(c->out);
    c->now = 1000.0;
    ex_progress_init(&c->p, c->out, mode);
    assert_int_equal(c->p.mode, mode);
    ex_progress_set_clock(&c->p, fake_clock, &c->now);
}

/* The text written so far (NUL-terminated by open_memstream()). */
static const char *capture_text(capture *c)
{
    assert_int_equal(fflush(c->out), 0);
    return c->text;
}

static void capture_close(capture *c)
{
    fclose(c->out);
    free(c->text);
}

static size_t count_char(const char *s, char ch)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == ch;
    }
    return n;
}

/* ---- the pieces ----------------------------------------------------------- */

static void test_bar(void **state)
{
    (void)state;
    char buf[128];
    assert_int_equal(ex_progress_format_bar(buf, sizeof buf, 0, 1719), 42);
    assert_string_equal(buf, "   0/1719 [..............................]");
    /* 30 * 1200 / 1719 = 20.9: 19 '=' and the head, 10 '.' */
    ex_progress_format_bar(buf, sizeof buf, 1200, 1719);
    assert_string_equal(buf, "1200/1719 [===================>..........]");
    /* one step of 1719: done = 0, no head yet */
    ex_progress_format_bar(buf, sizeof buf, 1, 1719);
    assert_string_equal(buf, "   1/1719 [..............................]");
    /* 58 / 1719 * 30 = 1.01: the head alone */
    ex_progress_format_bar(buf, sizeof buf, 58, 1719);
    assert_string_equal(buf, "  58/1719 [>.............................]");
    /* the last unfinished step: 29 done, so 28 '=' and the head */
    ex_progress_format_bar(buf, sizeof buf, 1718, 1719);
    assert_string_equal(buf, "1718/1719 [============================>.]");
    ex_progress_format_bar(buf, sizeof buf, 1719, 1719);
    assert_string_equal(buf, "1719/1719 [==============================]");
    ex_progress_format_bar(buf, sizeof buf, 1, 2);
    assert_string_equal(buf, "1/2 [==============>...............]");
    ex_progress_format_bar(buf, sizeof buf, 7, 7);
    assert_string_equal(buf, "7/7 [==============================]");
}

static void test_eta(void **state)
{
    (void)state;
    char buf[32];
    static const struct {
        double seconds;
        const char *text;
    } cases[] = {
        {0.0, "0s"},      {0.99, "0s"},     {14.7, "14s"},      {59.999, "59s"},      {60.0, "1:00"},
        {125.0, "2:05"},  {3599.9, "59:59"}, {3600.0, "1:00:00"}, {3725.0, "1:02:05"}, {-3.0, "0s"},
        {36000.0 * 10 + 61.0, "100:01:01"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ex_progress_format_eta(buf, sizeof buf, cases[i].seconds);
        assert_string_equal(buf, cases[i].text);
    }
}

static void test_rate(void **state)
{
    (void)state;
    char buf[32];
    static const struct {
        double seconds;
        const char *text;
    } cases[] = {
        {0.008, "8ms/step"},    {0.0085, "9ms/step"},   {0.0084, "8ms/step"}, {0.001, "1ms/step"},
        {0.0009996, "1000us/step"}, {0.000142, "142us/step"}, {0.0000005, "1us/step"}, {0.0, "0us/step"},
        {1.5, "1500ms/step"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ex_progress_format_rate(buf, sizeof buf, cases[i].seconds);
        assert_string_equal(buf, cases[i].text);
    }
}

/* ---- whole epochs ----------------------------------------------------- */

/* A terminal epoch of 100 steps of 8 ms: 0.8 s, so the bar is drawn at the
 * first step, then each time 0.1 s have passed, and at the last step. */
static void test_terminal_epoch(void **state)
{
    (void)state;
    capture c;
    capture_open(&c, EX_PROGRESS_BAR);
    ex_progress_epoch(&c.p, 2, 5, 100);
    for (size_t i = 0; i < 100; i++) {
        c.now += 0.008;
        /* batches of 32 but the last of 4 at loss 1: the weights count */
        ex_progress_step(&c.p, i < 99 ? 0.5 : 1.0, i < 99 ? 32.0 : 4.0);
    }
    c.now += 0.2; /* the validation */
    const ex_metric metrics[] = {{"accuracy", 0.85124}, {"val_accuracy", 0.86006}};
    ex_progress_end(&c.p, metrics, 2);
    const char *text = capture_text(&c);

    assert_true(strncmp(text, "Epoch 2/5\n", 10) == 0);
    /* draws at the first step, then 13 steps (0.104 s) apart: 14, 27, ...,
     * 92, at the last step, and the final line */
    assert_int_equal(count_char(text, '\r'), 10);
    assert_non_null(strstr(text, "\r 14/100 [===>..........................] - ETA: 0s - 8ms/step - loss: 0.5000\r"));
    assert_non_null(strstr(text, "\r 92/100 [==========================>...] - ETA: 0s - 8ms/step - loss: 0.5000\r"));
    assert_null(strstr(text, "\r 13/100"));
    assert_int_equal(count_char(text, '\n'), 2); /* the header's and the final line's */
    assert_non_null(strstr(text, "\r  1/100 [..............................] - ETA: 0s - 8ms/step - loss: 0.5000"));
    /* the last step's in-progress line, before the validation */
    assert_non_null(strstr(text, "\r100/100 [==============================] - ETA: 0s - 8ms/step - loss: 0.5006\r"));
    /* (99 * 32 * 0.5 + 4 * 1) / (99 * 32 + 4) = 0.50063: the running loss */
    const char *final_line = strrchr(text, '\r');
    /* 1.0 s over 100 steps, the validation included, as Keras counts */
    assert_string_equal(final_line, "\r100/100 [==============================] - 1s 10ms/step - loss: 0.5006 - "
                                    "accuracy: 0.8512 - val_accuracy: 0.8601\n");
    capture_close(&c);
}

/* The final line over a longer bar line is padded with spaces. */
static void test_terminal_padding(void **state)
{
    (void)state;
    capture c;
    capture_open(&c, EX_PROGRESS_BAR);
    ex_progress_begin(&c.p, 2, NULL);
    c.now += 4000.0; /* ETA 1:06:40: a longer line than the final one */
    ex_progress_step(&c.p, 0.25, 1.0);
    c.now += 1.0;
    ex_progress_step(&c.p, 0.75, 1.0);
    ex_progress_end(&c.p, NULL, 0);
    const char *text = capture_text(&c);
    const char *first = "\r1/2 [==============>...............] - ETA: 1:06:40 - 4000000ms/step - loss: 0.2500";
    assert_true(strncmp(text, first, strlen(first)) == 0);
    /* the second draw: ETA 0s, shorter than the first by 5 characters */
    const char *second = "\r2/2 [==============================] - ETA: 0s - 2000500ms/step - loss: 0.5000     \r";
    assert_non_null(strstr(text, second));
    const char *final_line = strrchr(text, '\r');
    /* "4001s " is 4 shorter than "ETA: 0s - " */
    assert_string_equal(final_line, "\r2/2 [==============================] - 4001s 2000500ms/step - loss: 0.5000    \n");
    capture_close(&c);
}

/* A plain stream: no '\r', in-progress lines at most every 10 s. */
static void test_plain_epoch(void **state)
{
    (void)state;
    capture c;
    capture_open(&c, EX_PROGRESS_LINES);
    /* 1000 steps of 1/32 s (exact in binary): 31.25 s, so lines at 10 s
     * (step 320), 20 s (640) and 30 s (960) */
    ex_progress_epoch(&c.p, 1, 1, 1000);
    for (size_t i = 0; i < 1000; i++) {
        c.now += 0.03125;
        ex_progress_step(&c.p, i % 2 ? 1.0 : 3.0, 16.0);
    }
    ex_progress_end(&c.p, NULL, 0);
    const char *text = capture_text(&c);
    assert_int_equal(count_char(text, '\r'), 0);
    assert_string_equal(text, "Epoch 1/1\n"
                              " 320/1000 [========>.....................] - ETA: 21s - 31ms/step - loss: 2.0000\n"
                              " 640/1000 [==================>...........] - ETA: 11s - 31ms/step - loss: 2.0000\n"
                              " 960/1000 [===========================>..] - ETA: 1s - 31ms/step - loss: 2.0000\n"
                              "1000/1000 [==============================] - 31s 31ms/step - loss: 2.0000\n");
    capture_close(&c);

    /* a short epoch prints its header and final line only */
    capture_open(&c, EX_PROGRESS_LINES);
    ex_progress_epoch(&c.p, 3, 4, 50);
    for (size_t i = 0; i < 50; i++) {
        c.now += 0.19; /* 9.5 s in all */
        ex_progress_step(&c.p, 1.0, 1.0);
    }
    const ex_metric metrics[] = {{"slope", 2.99996}};
    ex_progress_end(&c.p, metrics, 1);
    assert_string_equal(capture_text(&c),
                        "Epoch 3/4\n50/50 [==============================] - 10s 190ms/step - loss: 1.0000 - slope: 3.0000\n");
    capture_close(&c);
}

/* A metric named loss replaces the running loss; no loss given, none shown. */
static void test_loss_metric_and_no_loss(void **state)
{
    (void)state;
    capture c;
    capture_open(&c, EX_PROGRESS_LINES);
    ex_progress_begin(&c.p, 3, "Epoch 1/1");
    for (int i = 0; i < 3; i++) {
        c.now += 0.0004;
        ex_progress_step(&c.p, 9.0, 1.0);
    }
    const ex_metric metrics[] = {{"loss", 0.12344}, {"accuracy", 0.5}};
    ex_progress_end(&c.p, metrics, 2);
    assert_string_equal(capture_text(&c),
                        "Epoch 1/1\n3/3 [==============================] - 0s 400us/step - loss: 0.1234 - accuracy: 0.5000\n");
    capture_close(&c);

    capture_open(&c, EX_PROGRESS_LINES);
    ex_progress_begin(&c.p, 2, NULL);
    c.now += 30.0;
    ex_progress_step(&c.p, 0.0, 0.0);
    c.now += 30.0;
    ex_progress_step(&c.p, 0.0, 0.0);
    ex_progress_end(&c.p, NULL, 0);
    assert_string_equal(capture_text(&c), "1/2 [==============>...............] - ETA: 30s - 30000ms/step\n"
                                          "2/2 [==============================] - 60s 30000ms/step\n");
    capture_close(&c);
}

/* A run resumed after 6 of an interval's 10 steps: the counter and the
 * running loss go on from there, the rate is timed from the resume. */
static void test_resume(void **state)
{
    (void)state;
    capture c;
    capture_open(&c, EX_PROGRESS_LINES);
    ex_progress_begin(&c.p, 10, "Steps 11-20/40");
    ex_progress_resume(&c.p, 6, 6 * 3.0, 6.0);
    for (int i = 0; i < 4; i++) {
        c.now += 0.5;
        ex_progress_step(&c.p, 1.0, 1.0);
    }
    const ex_metric metrics[] = {{"val_bpc", 2.5}};
    ex_progress_end(&c.p, metrics, 1);
    /* (18 + 4) / 10 = 2.2; 2 s over 4 timed steps */
    assert_string_equal(capture_text(&c), "Steps 11-20/40\n"
                                          "10/10 [==============================] - 2s 500ms/step - loss: 2.2000 - "
                                          "val_bpc: 2.5000\n");
    capture_close(&c);
}

static void test_quiet(void **state)
{
    (void)state;
    capture c;
    capture_open(&c, EX_PROGRESS_QUIET);
    ex_progress_epoch(&c.p, 1, 2, 4);
    for (int i = 0; i < 4; i++) {
        c.now += 20.0;
        ex_progress_step(&c.p, 1.0, 1.0);
    }
    ex_progress_end(&c.p, NULL, 0);
    assert_int_equal(c.p.step, 4); /* it still counts */
    assert_string_equal(capture_text(&c), "");
    capture_close(&c);
}

/* AUTO on a stream that is not a terminal picks plain lines. */
static void test_auto_mode(void **state)
{
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    ex_progress p;
    ex_progress_init(&p, out, EX_PROGRESS_AUTO);
    assert_int_equal(p.mode, EX_PROGRESS_LINES);
    fclose(out);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bar),
        cmocka_unit_test(test_eta),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_terminal_epoch),
        cmocka_unit_test(test_terminal_padding),
        cmocka_unit_test(test_plain_epoch),
        cmocka_unit_test(test_loss_metric_and_no_loss),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_quiet),
        cmocka_unit_test(test_auto_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
