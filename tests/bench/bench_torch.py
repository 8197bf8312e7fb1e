#!/usr/bin/python3
# bench_torch.py: the speed figures of tests/bench/bench_models.c, for the same
# four seed models in PyTorch, printed as the same "BENCH lib=torch model=M
# metric=K value=V ..." lines, so that tests/bench/compare.sh can join them.
# It prints figures and never fails on timing.
#
#   usage: bench_torch.py --model mlp|binary|cnn|lstm|resbn|gru|gpt [--what all|train-only]
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
# gpt is bench_models.c's character GPT in PyTorch: nn.Embedding, a learned
# positional table (nn.Parameter, N(0, 0.02^2)), 4 pre-norm blocks of
# nn.LayerNorm, nn.MultiheadAttention(128, 4, batch_first=True) called with a
# causal float mask (-inf above the diagonal) and need_weights=False, and
# Linear 128->512, nn.GELU(), Linear 512->128; nn.LayerNorm, nn.Linear(128, 96);
# F.cross_entropy over the B*T positions; torch.optim.AdamW (lr 1e-3, weight
# decay 0.01, its defaults). It prints train_step_b16_ms (batch 16 x context
# 128), train_tok_per_s_b16, minflt_per_step_b16 (over the timed steps) and,
# at batch 1 with models of context 64 and 256, greedy generation in three
# ways, under torch.no_grad() in eval mode:
#   gen_full_tT_tok_per_s    the model over the whole T-position window per new
#                            token (stale ids past the prefix), as bench_models
#                            does without its KV cache: the same work;
#   gen_prefix_tT_tok_per_s  the model over the prefix only (1 .. T positions,
#                            nanoGPT's generate()), the usual naive PyTorch loop;
#   gen_kv_tT_tok_per_s      a hand-written KV cache: each step projects one
#                            position with the modules' own weights
#                            (in_proj_weight/bias, out_proj, the LayerNorms and
#                            Linears), writes its K and V into preallocated
#                            (H, T, d) buffers and attends over positions 0 .. p;
#                            checked against the full forward (a "#" line).
# The full path is timed a token at a time; the prefix and KV paths over
# whole sequences of T tokens from a one-token prompt (the prefix path with
# as few as 2 repetitions, as it is slow).
# --what train-only builds the model, runs --train-steps steps at batch 32 (gpt: 16) and
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
GPT_VOCAB, GPT_EMBED, GPT_HEADS, GPT_BLOCKS, GPT_CONTEXT, GPT_BATCH = 96, 128, 4, 4, 128, 16
GPT_WEIGHT_DECAY = 0.01
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


def build_gpt(torch, T):
    """The character GPT of bench_models.c (context T): pre-norm blocks, causal self-attention."""
    nn = torch.nn
    E = GPT_EMBED

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(E)
            self.attn = nn.MultiheadAttention(E, GPT_HEADS, batch_first=True)
            self.ln2 = nn.LayerNorm(E)
            self.fc = nn.Linear(E, 4 * E)
            self.gelu = nn.GELU()
            self.proj = nn.Linear(4 * E, E)

        def forward(self, x, mask):
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.proj(self.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(GPT_VOCAB, E)
            self.wpe = nn.Parameter(torch.randn(T, E) * 0.02)
            self.blocks = nn.ModuleList([Block() for _ in range(GPT_BLOCKS)])
            self.ln_f = nn.LayerNorm(E)
            self.head = nn.Linear(E, GPT_VOCAB)
            self.register_buffer("mask", torch.triu(torch.full((T, T), float("-inf")), 1))

        def forward(self, idx):
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe[:t]
            mask = self.mask[:t, :t]
            for blk in self.blocks:
                x = blk(x, mask)
            return self.head(self.ln_f(x))

    return GPT()


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


class GPTTrainer:
    """The gpt model at context 128, AdamW, POOL batches of random ids; labels the ids shifted by one."""

    def __init__(self, torch, batch):
        self.torch = torch
        self.model = build_gpt(torch, GPT_CONTEXT)
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LEARNING_RATE, weight_decay=GPT_WEIGHT_DECAY)
        seqs = [torch.randint(0, GPT_VOCAB, (batch, GPT_CONTEXT + 1)) for _ in range(POOL)]
        self.xs = [s[:, :-1].contiguous() for s in seqs]
        self.ys = [s[:, 1:].contiguous() for s in seqs]
        self.next = 0

    def step(self):
        k = self.next
        self.next = (k + 1) % POOL
        self.opt.zero_grad()
        logits = self.model(self.xs[k])
        loss = self.torch.nn.functional.cross_entropy(logits.view(-1, GPT_VOCAB), self.ys[k].view(-1))
        loss.backward()
        self.opt.step()


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


class GPTGenerator:
    """Greedy generation at batch 1 with a gpt model of context T (eval mode; call under torch.no_grad())."""

    def __init__(self, torch, T):
        self.torch = torch
        self.model = build_gpt(torch, T)
        self.model.eval()
        self.T = T
        self.ids = torch.full((1, T), int(torch.randint(0, GPT_VOCAB, ())), dtype=torch.long)
        self.p = 0
        H, d = GPT_HEADS, GPT_EMBED // GPT_HEADS
        self.kc = [torch.zeros(H, T, d) for _ in range(GPT_BLOCKS)]
        self.vc = [torch.zeros(H, T, d) for _ in range(GPT_BLOCKS)]
        self.scale = 1.0 / (d ** 0.5)

    def full_token(self):
        """One new token: the whole window (the ids past p are stale; the mask hides them)."""
        logits = self.model(self.ids)
        nxt = logits[0, self.p].argmax()
        if self.p + 1 < self.T:
            self.ids[0, self.p + 1] = nxt
            self.p += 1
        else:
            self.p = 0

    def prefix_sequence(self):
        """T new tokens, the model over the prefix 0 .. p for each."""
        for p in range(self.T):
            logits = self.model(self.ids[:, :p + 1])
            if p + 1 < self.T:
                self.ids[0, p + 1] = logits[0, -1].argmax()

    def kv_step(self, p):
        """Position p through the model with the cached keys and values of 0 .. p - 1; its logits (V,)."""
        torch, m = self.torch, self.model
        F = torch.nn.functional
        H, d = GPT_HEADS, GPT_EMBED // GPT_HEADS
        x = m.wte.weight[self.ids[0, p]] + m.wpe[p]
        for i, blk in enumerate(m.blocks):
            h = blk.ln1(x)
            q, k, v = F.linear(h, blk.attn.in_proj_weight, blk.attn.in_proj_bias).view(3, H, d)
            self.kc[i][:, p] = k
            self.vc[i][:, p] = v
            # softmax(K q / sqrt(d)) per head over positions 0 .. p, then the weighted sum of V
            w = torch.softmax(torch.bmm(self.kc[i][:, :p + 1], q.unsqueeze(2)).squeeze(2) * self.scale, dim=-1)
            o = torch.bmm(w.unsqueeze(1), self.vc[i][:, :p + 1]).view(GPT_EMBED)
            x = x + blk.attn.out_proj(o)
            x = x + blk.proj(blk.gelu(blk.fc(blk.ln2(x))))
        return m.head(m.ln_f(x))

    def kv_sequence(self, keep=None):
        for p in range(self.T):
            z = self.kv_step(p)
            if keep is not None:
                keep.append(z)
            if p + 1 < self.T:
                self.ids[0, p + 1] = z.argmax()

    def check(self):
        """The largest difference between the KV path's logits and the full forward on one sequence."""
        keep = []
        self.kv_sequence(keep)
        full = self.model(self.ids)[0]
        return float((self.torch.stack(keep) - full).abs().max())


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
    batch = GPT_BATCH if b.model == "gpt" else 32
    t = GPTTrainer(torch, batch) if b.model == "gpt" else Trainer(torch, b.model, batch)
    for _ in range(args.train_steps):
        t.step()
    rss1 = maxrss_kb()
    header(torch, b, "train-only", args)
    b.line("rss_start_kb", rss0)
    b.line("peak_rss_kb", rss1, "steps=%d batch=%d" % (args.train_steps, batch))


def run_gpt(torch, b, args):
    """The gpt figures: the training step at batch 16 x 128, then generation at batch 1 (see the top)."""
    header(torch, b, "all", args)
    load0 = loadavg1()
    t = GPTTrainer(torch, GPT_BATCH)
    med = b.ms("train_step_b%d_ms" % GPT_BATCH, b.timed(t.step, 3, 50, 15, 1000))
    b.line("train_tok_per_s_b%d" % GPT_BATCH, GPT_BATCH * GPT_CONTEXT / med, "context=%d" % GPT_CONTEXT)
    # Page faults over a few more steps, after the warm-up and the timed ones.
    f0 = minflt()
    steps = 5
    for _ in range(steps):
        t.step()
    faults = minflt() - f0
    b.line("minflt_per_step_b%d" % GPT_BATCH, faults / steps, "faults=%d steps=%d" % (faults, steps))
    del t
    with torch.no_grad():
        for T in (64, 256):
            g = GPTGenerator(torch, T)
            print("# gpt context %d: the KV path's logits differ from the full forward by at most %.3g" %
                  (T, g.check()))
            med = statistics.median(b.timed(g.full_token, 3, 50, 15, 5000))
            b.line("gen_full_t%d_tok_per_s" % T, 1.0 / med, "ms_per_token=%.6g" % (med * 1e3))
            # Slow (a second a sequence at T = 256, far more when threads compete): few repetitions.
            s = b.timed(g.prefix_sequence, 0, 2, 2, 1000)
            med = statistics.median(s)
            b.line("gen_prefix_t%d_tok_per_s" % T, T / med, "ms_per_sequence=%.6g n=%d tokens=%d" %
                   (med * 1e3, len(s), T))
            s = b.timed(g.kv_sequence, 3, 50, 15, 5000)
            med = statistics.median(s)
            b.line("gen_kv_t%d_tok_per_s" % T, T / med, "ms_per_sequence=%.6g n=%d tokens=%d" %
                   (med * 1e3, len(s), T))
    print("# load average %.2f at the start, %.2f at the end" % (load0, loadavg1()))


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
    p.add_argument("--model", required=True, choices=["mlp", "binary", "cnn", "lstm", "resbn", "gru", "gpt"])
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
    elif args.model == "gpt":
        run_gpt(torch, b, args)
    else:
        run_all(torch, b, args)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    b.line("cpu_s", ru.ru_utime + ru.ru_stime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
