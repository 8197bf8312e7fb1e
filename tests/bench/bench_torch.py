#!/usr/bin/python3
# bench_torch.py: the speed figures of tests/bench/bench_models.c, for the same
# four seed models in PyTorch, printed as the same "BENCH lib=torch model=M
# metric=K value=V ..." lines, so that tests/bench/compare.sh can join them.
# It prints figures and never fails on timing.
#
#   usage: bench_torch.py --model mlp|binary|cnn|lstm|resbn|gru [--what all|train-only]
#                         [--threads N] [--budget SECONDS] [--epoch-steps N]
#                         [--epoch-blocks N] [--train-steps N]
#
# Same models, losses (nn.CrossEntropyLoss on logits; nn.BCELoss on the
# sigmoid output for "binary"), optimizer (torch.optim.Adam, lr 1e-3, its
# defaults), batch sizes, random data of the same shapes (8 batches cycled
# through) and the same timing method as bench_models.c: time.perf_counter()
# (CLOCK_MONOTONIC on Linux) around one call, warm-up first, median (min=
# gives the minimum) over as many repetitions as --budget seconds allow.
# A training step is optimizer.zero_grad(), forward, loss, backward,
# optimizer.step(); inference is model.eval() under torch.no_grad().
# Thread count: torch.set_num_threads(--threads, default OPENBLAS_NUM_THREADS
# or 1); compare.sh also sets OPENBLAS_NUM_THREADS to the same value, and
# PyTorch's OpenBLAS is the same library as libaimodel's (Debian's
# libopenblas0-pthread), so OPENBLAS_CORETYPE selects its kernels too.
# Note that PyTorch runs Conv2d through oneDNN (mkldnn), not OpenBLAS.
# The script prints glibc's GLIBC_TUNABLES as found: compare.sh also runs it
# with malloc's mmap and trim thresholds raised (see there), because with
# glibc's defaults PyTorch may map and unmap its large buffers on every step
# (the minflt_per_step_b32 figure shows it), which slows some of its steps
# several-fold, depending on how malloc's dynamic threshold settles.
# --what train-only builds the model, runs --train-steps steps at batch 32 and
# prints rss_start_kb (ru_maxrss after importing torch, before the model) and
# peak_rss_kb (resource.getrusage ru_maxrss at the end). Both modes end with
# cpu_s, the CPU seconds the process used (all threads, import included).
# SPDX-License-Identifier: MIT
import argparse
import ctypes
import os
import resource
import statistics
import sys
import time

POOL = 8
EPOCH_IMAGES = 60000
INFER_BATCH = 256
LEARNING_RATE = 1e-3
SEED = 20260101


def maxrss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def minflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def loadavg1():
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


class Bench:
    def __init__(self, model_name, budget):
        self.model = model_name
        self.budget = budget

    def line(self, metric, value, extra=""):
        print("BENCH lib=torch model=%s metric=%s value=%.6g%s" % (self.model, metric, value,
                                                                  " " + extra if extra else ""), flush=True)

    def ms(self, metric, samples):
        med = statistics.median(samples)
        self.line(metric, med * 1e3, "min=%.6g n=%d" % (min(samples) * 1e3, len(samples)))
        return med

    def reps_for(self, one, lo, hi):
        r = self.budget / one if one > 0 else hi
        return int(max(lo, min(hi, r)))

    def timed(self, fn, warm_lo, warm_hi, lo, hi):
        """Warm-up calls, then as many timed calls of fn() as the budget allows."""
        t0 = time.perf_counter()
        fn()
        one = time.perf_counter() - t0
        for _ in range(self.reps_for(one * 5.0, warm_lo, warm_hi)):
            fn()
        samples = []
        for _ in range(self.reps_for(one, lo, hi)):
            a = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - a)
        return samples


def build(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "binary":
        return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1),
                             nn.Sigmoid())
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
    if name in ("lstm", "gru"):
        rnn = nn.LSTM if name == "lstm" else nn.GRU  # gru: the GRU training step of issue 14

        class RNNClassifier(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = rnn(28, 128, num_layers=2, batch_first=True)
                self.head = nn.Linear(128, 10)

            def forward(self, x):
                out, _ = self.rnn(x)
                return self.head(out[:, -1, :])

        return RNNClassifier()
    if name == "resbn":
        return build_resbn()
    raise ValueError(name)


def build_resbn():
    """The batch-norm CNN: tests/bench/residual_torch.py's model with --batchnorm (conv without bias ->
    BatchNorm2d -> relu, BasicBlock residual blocks, dropout 0.5 before the head), as bench_models.c's resbn."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import residual_torch  # pylint: disable=import-outside-toplevel

    return residual_torch.ResidualNet(batchnorm=True)


def input_shape(name, batch):
    if name in ("cnn", "resbn"):
        return (batch, 1, 28, 28)
    if name in ("lstm", "gru"):
        return (batch, 28, 28)
    return (batch, 784)


class Trainer:
    def __init__(self, torch, name, batch):
        self.torch = torch
        self.model = build(torch, name)
        self.model.train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        self.xs = [torch.rand(input_shape(name, batch)) for _ in range(POOL)]
        if name == "binary":
            self.loss = torch.nn.BCELoss()
            self.ys = [torch.randint(0, 2, (batch, 1)).float() for _ in range(POOL)]
        else:
            self.loss = torch.nn.CrossEntropyLoss()
            self.ys = [torch.randint(0, 10, (batch,)) for _ in range(POOL)]
        self.next = 0

    def step(self):
        k = self.next
        self.next = (k + 1) % POOL
        self.opt.zero_grad()
        loss = self.loss(self.model(self.xs[k]), self.ys[k])
        loss.backward()
        self.opt.step()


def openblas_info():
    """The core and thread count of the OpenBLAS loaded in this process."""
    for path in ("libopenblas.so.0", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return (lib.openblas_get_corename().decode(), lib.openblas_get_num_threads(),
                    lib.openblas_get_config().decode())
        except (OSError, AttributeError):
            continue
    return ("unknown", -1, "")


def blas_libraries():
    """The BLAS-like libraries mapped into this process (to show it is the same OpenBLAS)."""
    names = set()
    try:
        with open("/proc/self/maps") as f:
            for l in f:
                p = l.split()[-1]
                if any(k in p for k in ("blas", "dnnl", "mkl", "gomp")):
                    names.add(p)
    except OSError:
        pass
    return sorted(names)


def header(torch, b, what, args):
    core, nt, config = openblas_info()
    print("# bench_torch.py: torch %s, model %s, --what %s, torch.get_num_threads() %d" %
          (torch.__version__, b.model, what, torch.get_num_threads()))
    print("# torch config: %s" % " | ".join(l.strip() for l in torch.__config__.show().splitlines()[1:7]))
    print("# OpenBLAS core %s, %d thread(s); config \"%s\"" % (core, nt, config))
    print("# libraries: %s" % " ".join(blas_libraries()))
    print("# environment: OPENBLAS_CORETYPE=%s OPENBLAS_NUM_THREADS=%s OMP_NUM_THREADS=%s GLIBC_TUNABLES=%s; "
          "load average %.2f" %
          (os.environ.get("OPENBLAS_CORETYPE", "(unset)"), os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
           os.environ.get("OMP_NUM_THREADS", "(unset)"), os.environ.get("GLIBC_TUNABLES", "(unset)"), loadavg1()))
    b.line("openblas", 0, "core=%s threads=%d torch_threads=%d" % (core, nt, torch.get_num_threads()))


def run_train_only(torch, b, args):
    rss0 = maxrss_kb()
    t = Trainer(torch, b.model, 32)
    for _ in range(args.train_steps):
        t.step()
    rss1 = maxrss_kb()
    header(torch, b, "train-only", args)
    b.line("rss_start_kb", rss0)
    b.line("peak_rss_kb", rss1, "steps=%d batch=32" % args.train_steps)


def run_all(torch, b, args):
    header(torch, b, "all", args)
    load0 = loadavg1()
    t32 = Trainer(torch, b.model, 32)
    b.ms("train_step_b32_ms", b.timed(t32.step, 3, 50, 15, 1000))

    blocks = []
    f0 = minflt()
    for _ in range(args.epoch_blocks):
        a = time.perf_counter()
        for _ in range(args.epoch_steps):
            t32.step()
        blocks.append(time.perf_counter() - a)
    f1 = minflt()
    scale = EPOCH_IMAGES / 32.0 / args.epoch_steps
    b.line("epoch_s", statistics.median(blocks) * scale,
           "min=%.6g n=%d extrapolated_from_steps=%d epoch_steps=%.0f" %
           (min(blocks) * scale, len(blocks), args.epoch_steps, EPOCH_IMAGES / 32.0))
    steps = args.epoch_steps * args.epoch_blocks
    b.line("minflt_per_step_b32", (f1 - f0) / steps, "faults=%d steps=%d" % (f1 - f0, steps))

    model = t32.model
    model.eval()
    xs = [torch.rand(input_shape(b.model, INFER_BATCH)) for _ in range(POOL)]
    x1 = [x[:1].clone() for x in xs]
    with torch.no_grad():
        state = {"k": 0}

        def infer(batch_list):
            def f():
                k = state["k"]
                state["k"] = (k + 1) % POOL
                model(batch_list[k])
            return f

        b.ms("infer_b1_ms", b.timed(infer(x1), 5, 200, 20, 5000))
        med = b.ms("infer_b256_ms", b.timed(infer(xs), 5, 200, 20, 5000))
        b.line("infer_b256_img_per_s", INFER_BATCH / med)
    del t32

    t128 = Trainer(torch, b.model, 128)
    b.ms("train_step_b128_ms", b.timed(t128.step, 3, 50, 15, 1000))
    print("# load average %.2f at the start, %.2f at the end" % (load0, loadavg1()))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, choices=["mlp", "binary", "cnn", "lstm", "resbn", "gru"])
    p.add_argument("--what", default="all", choices=["all", "train-only"])
    p.add_argument("--threads", type=int, default=int(os.environ.get("OPENBLAS_NUM_THREADS", "1") or 1))
    p.add_argument("--budget", type=float, default=1.5)
    p.add_argument("--epoch-steps", type=int, default=200)
    p.add_argument("--epoch-blocks", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=50)

    args = p.parse_args()
    if args.threads < 1 or args.budget <= 0 or args.epoch_steps < 1 or args.epoch_blocks < 1 or args.train_steps < 1:
        p.error("counts must be positive")

    import torch  # after the arguments, so that --help is quick

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    b = Bench(args.model, args.budget)
    if args.what == "train-only":
        run_train_only(torch, b, args)
    else:
        run_all(torch, b, args)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    b.line("cpu_s", ru.ru_utime + ru.ru_stime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
