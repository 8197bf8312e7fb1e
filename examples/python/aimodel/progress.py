"""Training progress in the format the C examples print (Keras 2's).

For each epoch, ``Epoch 2/5``; during it, on a terminal, one line redrawn in
place with ``\\r`` (at most 10 times a second, and at the last step)::

    1200/1719 [====================>.........] - ETA: 14s - 8ms/step - loss: 0.4213

and at its end that line becomes (padded with spaces over what it replaces)::

    1719/1719 [==============================] - 14s 8ms/step - loss: 0.4013 - accuracy: 0.8512

When the stream is not a terminal there is no ``\\r``: the in-progress line
is printed as a line of its own at most once every 10 seconds of an epoch
(a short epoch prints none), then the final line. verbose=0 prints nothing;
verbose=2 prints only the final line of each epoch.
"""

import sys
import time

__all__ = ["ProgressBar", "format_eta", "format_rate", "bar"]

#: Characters in the bar.
BAR_WIDTH = 30


def bar(step, total, width=BAR_WIDTH):
    """The bar for `step` of `total`: Keras's ``done = int(width * step /
    total)`` characters done, drawn as done-1 ``=`` and a ``>`` head while
    unfinished (``=`` at the end), then ``.`` for the rest."""
    done = int(width * step / total) if total else width
    done = max(0, min(width, done))
    text = ""
    if done > 0:
        text = "=" * (done - 1) + (">" if step < total else "=")
    return text + "." * (width - done)


def format_eta(seconds):
    """An ETA as Keras writes it, from its whole seconds (truncated, as
    Keras's ``%d``): ``Ns`` below a minute, ``m:ss`` below an hour, else
    ``h:mm:ss``."""
    s = int(max(0.0, seconds))
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%d:%02d" % (s // 60, s % 60)
    return "%d:%02d:%02d" % (s // 3600, (s % 3600) // 60, s % 60)


def _rounded(value):
    """`value` >= 0 rounded half up to an integer (as C's lround)."""
    return int(value + 0.5)


def format_rate(seconds_per_step):
    """``Nms/step`` for at least a millisecond a step, else ``Nus/step``
    (integers, rounded)."""
    if seconds_per_step >= 1e-3:
        return "%dms/step" % _rounded(seconds_per_step * 1e3)
    return "%dus/step" % _rounded(seconds_per_step * 1e6)


def _values(values):
    """`` - name: value`` for each (name, value) pair, 4 decimals."""
    return "".join(" - %s: %.4f" % (name, value) for name, value in values)


class ProgressBar:
    """The progress of one epoch (or one evaluation) of `total` steps on
    `stream` (default: sys.stdout at the time of each write).

    `verbose`: 0 prints nothing, 1 the in-progress line and the final line,
    2 only the final line. `clock` (default time.monotonic) is read for the
    elapsed time; tests pass a fake one. Call start(), update(step, values)
    after each step, and finish(values) once at the end.
    """

    #: Least seconds between two redraws on a terminal.
    TERMINAL_INTERVAL = 0.1
    #: Least seconds between two in-progress lines when not on a terminal.
    PLAIN_INTERVAL = 10.0

    def __init__(self, total, verbose=1, stream=None, clock=time.monotonic):
        if int(total) < 1:
            raise ValueError("a progress bar needs total >= 1 steps, got %d" % int(total))
        self.total = int(total)
        self.verbose = int(verbose)
        self._stream = stream
        self._clock = clock
        self._start = None
        self._last_draw = None
        self._drawn = 0        # length of the line on screen (terminal)
        self.step = 0

    @property
    def stream(self):
        """Where the lines go: the stream given, else sys.stdout now."""
        return self._stream if self._stream is not None else sys.stdout

    @property
    def isatty(self):
        """Whether the stream is a terminal (the line is then redrawn in place)."""
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty()) if isatty is not None else False
        except (ValueError, OSError):  # a closed stream
            return False

    def start(self):
        """Starts the clock of the epoch."""
        self._start = self._clock()
        self._last_draw = None
        self._drawn = 0
        self.step = 0

    @property
    def elapsed(self):
        """Seconds since start()."""
        return self._clock() - self._start

    def _counter(self, step):
        return "%*d/%d [%s]" % (len(str(self.total)), step, self.total, bar(step, self.total))

    def progress_line(self, step, values=(), now=None):
        """The in-progress line at `step`: counter, bar, ETA, time per step
        and the values (the running loss)."""
        elapsed = (self._clock() if now is None else now) - self._start
        per_step = elapsed / step if step else 0.0
        return "%s - ETA: %s - %s%s" % (self._counter(step), format_eta(per_step * (self.total - step)),
                                        format_rate(per_step), _values(values))

    def final_line(self, values=(), now=None):
        """The line that ends the epoch: counter, full bar, elapsed whole
        seconds (rounded), time per step, the values."""
        elapsed = (self._clock() if now is None else now) - self._start
        return "%s - %ds %s%s" % (self._counter(self.total), _rounded(elapsed),
                                  format_rate(elapsed / self.total), _values(values))

    def _write(self, text):
        stream = self.stream
        stream.write(text)
        stream.flush()

    def _redraw(self, line):
        """On a terminal: `line` over the one on screen, padded with spaces
        to erase what is left of a longer one."""
        pad = max(0, self._drawn - len(line))
        self._write("\r" + line + " " * pad)
        self._drawn = len(line)

    def update(self, step, values=()):
        """After step `step` (1-based) of the epoch; `values` are (name,
        value) pairs shown on the in-progress line."""
        self.step = int(step)
        if self.verbose != 1:
            return
        now = self._clock()
        if self.isatty:
            if (self._last_draw is not None and now - self._last_draw < self.TERMINAL_INTERVAL
                    and self.step < self.total):
                return
            self._last_draw = now
            self._redraw(self.progress_line(self.step, values, now))
        elif self.step < self.total:
            last = self._start if self._last_draw is None else self._last_draw
            if now - last >= self.PLAIN_INTERVAL:
                self._last_draw = now
                self._write(self.progress_line(self.step, values, now) + "\n")

    def finish(self, values=()):
        """Ends the epoch with the final line (on a terminal over the
        in-progress one) and a newline."""
        if self.verbose == 0:
            return
        line = self.final_line(values)
        if self.verbose == 1 and self.isatty:
            self._redraw(line)
            self._write("\n")
        else:
            self._write(line + "\n")
        self._drawn = 0


def epoch_line(epoch, epochs, verbose=1, stream=None):
    """Prints ``Epoch 2/5`` (1-based epoch) unless verbose is 0."""
    if verbose:
        stream = stream if stream is not None else sys.stdout
        stream.write("Epoch %d/%d\n" % (epoch, epochs))
        stream.flush()
