"""The progress format (aimodel.progress), shared with the C examples, on a
fake terminal and on a pipe, with a fake clock: every line is compared with
the text written out by hand."""

import io
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aimodel as aim  # noqa: E402
from aimodel import progress  # noqa: E402


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


class Pipe(io.StringIO):
    """A stream that is not a terminal."""

    def isatty(self):
        return False


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_bar_follows_keras_rule():
    assert progress.bar(0, 10) == "." * 30
    assert progress.bar(1200, 1719) == "=" * 19 + ">" + "." * 10   # done = int(30 * 1200 / 1719) = 20
    assert progress.bar(1, 30) == ">" + "." * 29
    assert progress.bar(29, 30) == "=" * 28 + ">" + "."
    assert progress.bar(30, 30) == "=" * 30
    assert progress.bar(5, 5) == "=" * 30


def test_eta_and_rate_formats():
    assert progress.format_eta(0) == "0s"
    assert progress.format_eta(14.9) == "14s"
    assert progress.format_eta(59.99) == "59s"
    assert progress.format_eta(60) == "1:00"
    assert progress.format_eta(754) == "12:34"
    assert progress.format_eta(3599) == "59:59"
    assert progress.format_eta(3600) == "1:00:00"
    assert progress.format_eta(3 * 3600 + 5 * 60 + 7) == "3:05:07"
    assert progress.format_rate(0.008) == "8ms/step"
    assert progress.format_rate(0.0085) == "9ms/step"      # rounded, half up
    assert progress.format_rate(0.001) == "1ms/step"
    assert progress.format_rate(0.000999) == "999us/step"
    assert progress.format_rate(0.000093) == "93us/step"
    assert progress.format_rate(1.5) == "1500ms/step"


def test_lines_on_a_terminal():
    out, clock = Terminal(), Clock()
    bar = progress.ProgressBar(1719, stream=out, clock=clock)
    bar.start()
    clock.now = 9.6                       # 1200 steps at 8 ms
    bar.update(1200, [("loss", 0.42134)])
    first = "1200/1719 [" + "=" * 19 + ">" + "." * 10 + "] - ETA: 4s - 8ms/step - loss: 0.4213"
    assert out.getvalue() == "\r" + first
    clock.now = 9.65                      # 50 ms later: not redrawn (at most 10 a second)
    bar.update(1201, [("loss", 0.4212)])
    assert out.getvalue() == "\r" + first
    clock.now = 13.752                    # the last step is always drawn
    bar.update(1719, [("loss", 0.4013)])
    last = "1719/1719 [" + "=" * 30 + "] - ETA: 0s - 8ms/step - loss: 0.4013"
    assert out.getvalue() == "\r" + first + "\r" + last
    clock.now = 14.2
    bar.finish([("loss", 0.40131), ("accuracy", 0.85116), ("val_accuracy", 0.86014)])
    final = "1719/1719 [" + "=" * 30 + "] - 14s 8ms/step - loss: 0.4013 - accuracy: 0.8512 - val_accuracy: 0.8601"
    assert out.getvalue() == "\r" + first + "\r" + last + "\r" + final + "\n"


def test_final_line_erases_a_longer_one():
    out, clock = Terminal(), Clock()
    bar = progress.ProgressBar(3, stream=out, clock=clock)
    bar.start()
    clock.now = 0.5
    bar.update(1, [("loss", 1.0), ("a_long_running_value", 2.0)])
    drawn = out.getvalue()[1:]
    clock.now = 1.4
    bar.finish([("loss", 0.5)])
    final = "3/3 [" + "=" * 30 + "] - 1s 467ms/step - loss: 0.5000"
    assert len(drawn) > len(final)
    assert out.getvalue() == "\r" + drawn + "\r" + final + " " * (len(drawn) - len(final)) + "\n"


def test_step_count_is_right_aligned():
    out, clock = Terminal(), Clock()
    bar = progress.ProgressBar(250, stream=out, clock=clock)
    bar.start()
    clock.now = 0.0007                    # 0.7 ms a step
    bar.update(1, [("loss", 2.0)])
    assert out.getvalue() == "\r  1/250 [" + "." * 30 + "] - ETA: 0s - 700us/step - loss: 2.0000"


def test_lines_on_a_pipe():
    out, clock = Pipe(), Clock()
    bar = progress.ProgressBar(100, stream=out, clock=clock)
    bar.start()
    for step in range(1, 101):            # 0.25 s a step: 25 s in all
        clock.now = 0.25 * step
        bar.update(step, [("loss", 1.0 / step)])
    bar.finish([("loss", 0.05)])
    lines = out.getvalue().split("\n")
    assert "\r" not in out.getvalue()
    assert lines == [
        " 40/100 [" + "=" * 11 + ">" + "." * 18 + "] - ETA: 15s - 250ms/step - loss: 0.0250",   # 10 s
        " 80/100 [" + "=" * 23 + ">" + "." * 6 + "] - ETA: 5s - 250ms/step - loss: 0.0125",     # 20 s
        "100/100 [" + "=" * 30 + "] - 25s 250ms/step - loss: 0.0500",
        "",
    ]


def test_a_short_epoch_on_a_pipe_prints_only_its_final_line():
    out, clock = Pipe(), Clock()
    bar = progress.ProgressBar(10, stream=out, clock=clock)
    bar.start()
    for step in range(1, 11):
        clock.now = 0.5 * step
        bar.update(step, [("loss", 0.3)])
    bar.finish([("loss", 0.3), ("accuracy", 0.9)])
    assert out.getvalue() == "10/10 [" + "=" * 30 + "] - 5s 500ms/step - loss: 0.3000 - accuracy: 0.9000\n"


def test_verbose_0_prints_nothing_and_2_only_final_lines():
    for verbose, stream in ((0, Terminal()), (0, Pipe()), (2, Terminal())):
        clock = Clock()
        bar = progress.ProgressBar(4, verbose=verbose, stream=stream, clock=clock)
        bar.start()
        for step in range(1, 5):
            clock.now = 20.0 * step
            bar.update(step, [("loss", 1.0)])
        bar.finish([("loss", 1.0)])
        expected = "" if verbose == 0 else "4/4 [" + "=" * 30 + "] - 80s 20000ms/step - loss: 1.0000\n"
        assert stream.getvalue() == expected


def _tiny_fit(verbose, monkeypatch, stream):
    monkeypatch.setattr(sys, "stdout", stream)
    rs = np.random.RandomState(0)
    x = rs.randn(40, 3).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    with aim.Model(3) as m:
        m.add_dense(2)
        m.compile(max_batch=10, seed=1, optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x, y, epochs=2, batch_size=10, validation_data=(x, y), verbose=verbose)


def test_fit_prints_epoch_lines_and_the_format(monkeypatch):
    out = Pipe()
    _tiny_fit(1, monkeypatch, out)
    lines = out.getvalue().split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[4] == "" and len(lines) == 5
    for line in (lines[1], lines[3]):
        head = "4/4 [" + "=" * 30 + "] - 0s "
        assert line.startswith(head), line
        fields = line[len(head):].split(" - ")
        assert fields[0].endswith("us/step") or fields[0].endswith("ms/step"), fields
        assert [f.split(": ")[0] for f in fields[1:]] == ["loss", "accuracy", "val_loss", "val_accuracy"]
        assert all(len(f.split(": ")[1].split(".")[1]) == 4 for f in fields[1:])
    term = Terminal()
    _tiny_fit(1, monkeypatch, term)
    text = term.getvalue()
    assert text.startswith("Epoch 1/2\n\r") and text.count("\n") == 4 and text.count("\r") >= 4


def test_fit_verbose_0_is_silent(monkeypatch, capsys):
    for stream in (Terminal(), Pipe()):
        _tiny_fit(0, monkeypatch, stream)
        assert stream.getvalue() == ""


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
