#!/usr/bin/python3
# char_gpt_torch.py: examples/char_gpt.c's character-level GPT in PyTorch,
# started from the C model's very initial weights and fed the very batches
# the C program drew, to check that libaimodel trains it as PyTorch does.
#
#   build/examples/char_gpt --dropout 0 --steps 300 --write-init build/char_gpt_init.bin \
#       --write-batches build/char_gpt_batches.bin --log build/char_gpt_c.csv
#   /usr/bin/python3 tests/bench/char_gpt_torch.py --init build/char_gpt_init.bin \
#       --batches build/char_gpt_batches.bin --compare build/char_gpt_c.csv [--threads 1] [--log FILE]
#
# The two files (formats as examples/char_gpt.c's top comment describes them;
# every number little-endian):
#   init:    a text line "char_gpt init 1 vocab=V context=T width=E layers=N heads=H
#            dropout=P params=COUNT\n", then COUNT float32: the C model's flat
#            parameter buffer, layer by layer in the order the model was built, each
#            in PyTorch's layout: wte [V, E], wpe [T, E]; per block ln1.weight,
#            ln1.bias [E], attn.in_proj_weight [3E, E], attn.in_proj_bias [3E],
#            attn.out_proj.weight [E, E], attn.out_proj.bias [E], ln2.weight,
#            ln2.bias, fc.weight [4E, E], fc.bias [4E], proj.weight [E, 4E],
#            proj.bias [E]; ln_f.weight, ln_f.bias; head.weight [V, E], head.bias [V]
#            (GPT.c_order() below lists them; the count is checked).
#   batches: a text line "char_gpt batches 1 vocab=V context=T batch=B steps=S
#            val_bytes=L eval_windows=W eval_every=K lr=.. weight_decay=.. clip=..
#            dropout=..\n", then V bytes (the vocabulary: id -> byte), L bytes (the
#            validation text as ids), S*B*(T+1) bytes (the training windows of steps
#            1..S as ids: step by step, window by window; inputs the first T, targets
#            the last T).
#
# Model (as the C program's): nn.Embedding(V, E) + nn.Embedding(T, E) over
# positions 0..T-1 [-> nn.Dropout] -> N blocks x = x + [Dropout]
# MultiheadAttention(E, H, dropout=P, batch_first=True)(LN1(x)) with a causal
# mask, x = x + [Dropout] Linear(4E, E)(GELU(Linear(E, 4E)(LN2(x)))) -> LN_f ->
# Linear(E, V). Loss F.cross_entropy over all B*T positions (mean), torch.optim.AdamW
# (betas 0.9/0.999, eps 1e-8, the file's lr and weight decay on every parameter: one
# group), clip_grad_norm_ at the file's clip (0: none). Validation bits per
# character over W windows of T + 1 validation ids at a stride of T, window i of W
# being number floor(i * all / W), all = (L - 1) // T; evaluated at step 0, every K
# steps and after the last one. With dropout > 0 the masks are torch's, not
# libaimodel's, so only dropout 0 gives the same run.
#
# Prints the evaluations as the C program does, and with --compare C_LOG (the C
# run's --log CSV: step,loss,val_bpc,seconds) the largest relative difference of
# the first --compare-steps (20) training losses and the relative difference of
# each common evaluation; the last line is
#   RESULT char_gpt_torch val_bpc=.. steps=.. ms_per_step=.. [loss_max_rel=.. val_bpc_rel=..]
# SPDX-License-Identifier: MIT
import argparse
import csv
import math
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

EVAL_BATCH = 16


def read_header(f, kind):
    line = f.readline().decode("ascii", "replace")
    if not line.startswith("char_gpt %s 1 " % kind):
        raise ValueError("%s: not a char_gpt %s file (written by char_gpt --write-%s)" %
                         (f.name, kind, "init" if kind == "init" else "batches"))
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


def read_init(path):
    with open(path, "rb") as f:
        h = read_header(f, "init")
        params = np.frombuffer(f.read(), dtype="<f4")
    if params.size != int(h["params"]):
        raise ValueError("%s: %d floats, the header says %s" % (path, params.size, h["params"]))
    return h, params


def read_batches(path):
    with open(path, "rb") as f:
        h = read_header(f, "batches")
        data = f.read()
    V, T, B, S, L = (int(h[k]) for k in ("vocab", "context", "batch", "steps", "val_bytes"))
    if len(data) != V + L + S * B * (T + 1):
        raise ValueError("%s: %d bytes after the header, %d expected" % (path, len(data), V + L + S * B * (T + 1)))
    vocab = data[:V]
    val = np.frombuffer(data, dtype=np.uint8, count=L, offset=V).astype(np.int64)
    train = np.frombuffer(data, dtype=np.uint8, offset=V + L).reshape(S, B, T + 1).astype(np.int64)
    return h, vocab, val, train


class Block(nn.Module):
    def __init__(self, E, H, p):
        super().__init__()
        self.ln1 = nn.LayerNorm(E)
        self.attn = nn.MultiheadAttention(E, H, dropout=p, batch_first=True)
        self.drop1 = nn.Dropout(p)
        self.ln2 = nn.LayerNorm(E)
        self.fc = nn.Linear(E, 4 * E)
        self.proj = nn.Linear(4 * E, E)
        self.drop2 = nn.Dropout(p)

    def forward(self, x, mask):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + self.drop1(a)
        return x + self.drop2(self.proj(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    def __init__(self, V, T, E, N, H, p):
        super().__init__()
        self.wte = nn.Embedding(V, E)
        self.wpe = nn.Embedding(T, E)
        self.drop = nn.Dropout(p)
        self.blocks = nn.ModuleList([Block(E, H, p) for _ in range(N)])
        self.ln_f = nn.LayerNorm(E)
        self.head = nn.Linear(E, V)
        # True above the diagonal: position i attends to positions <= i only.
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))

    def forward(self, ids):
        T = ids.shape[1]
        x = self.drop(self.wte(ids) + self.wpe(torch.arange(T)))
        for b in self.blocks:
            x = b(x, self.mask[:T, :T])
        return self.head(self.ln_f(x))

    def c_order(self):
        """The parameters in the order of the C model's flat buffer."""
        out = [self.wte.weight, self.wpe.weight]
        for b in self.blocks:
            out += [b.ln1.weight, b.ln1.bias, b.attn.in_proj_weight, b.attn.in_proj_bias, b.attn.out_proj.weight,
                    b.attn.out_proj.bias, b.ln2.weight, b.ln2.bias, b.fc.weight, b.fc.bias, b.proj.weight, b.proj.bias]
        return out + [self.ln_f.weight, self.ln_f.bias, self.head.weight, self.head.bias]


def load_params(model, flat):
    at = 0
    with torch.no_grad():
        for p in model.c_order():
            n = p.numel()
            p.copy_(torch.from_numpy(flat[at:at + n].copy()).view_as(p))
            at += n
    if at != flat.size:
        raise ValueError("the init file holds %d floats; this model has %d" % (flat.size, at))


def val_bpc(model, val, T, count):
    all_windows = (val.size - 1) // T
    starts = [(i * all_windows // count) * T for i in range(count)]
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, count, EVAL_BATCH):
            w = torch.from_numpy(np.stack([val[s:s + T + 1] for s in starts[i:i + EVAL_BATCH]]))
            logits = model(w[:, :-1])
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                     reduction="sum").item()
    model.train()
    return total / (count * T) / math.log(2.0)


def read_c_log(path):
    loss, bpc = {}, {}
    with open(path) as f:
        for row in csv.DictReader(f):
            s = int(row["step"])
            loss[s] = float(row["loss"])
            if row["val_bpc"]:
                bpc[s] = float(row["val_bpc"])
    return loss, bpc


def main():
    ap = argparse.ArgumentParser(description="examples/char_gpt.c in PyTorch, from the C run's weights and batches")
    ap.add_argument("--init", default="build/char_gpt_init.bin")
    ap.add_argument("--batches", default="build/char_gpt_batches.bin")
    ap.add_argument("--steps", type=int, default=0, help="train this many of the file's steps (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log", default=None, help="write step,loss,val_bpc,seconds as CSV")
    ap.add_argument("--compare", default=None, help="the C run's --log CSV")
    ap.add_argument("--compare-steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    hi, flat = read_init(args.init)
    hb, vocab, val, train = read_batches(args.batches)
    V, T, E, N, H = (int(hi[k]) for k in ("vocab", "context", "width", "layers", "heads"))
    if int(hb["vocab"]) != V or int(hb["context"]) != T:
        raise ValueError("the init and batches files describe different models")
    p = float(hi["dropout"])
    lr, wd, clip = float(hb["lr"]), float(hb["weight_decay"]), float(hb["clip"])
    S = train.shape[0] if args.steps <= 0 else min(args.steps, train.shape[0])
    B, W, K = int(hb["batch"]), int(hb["eval_windows"]), int(hb["eval_every"])

    model = GPT(V, T, E, N, H, p)
    load_params(model, flat)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    print("char_gpt_torch: %s, %s; torch %s, %d threads" % (args.init, args.batches, torch.__version__,
                                                           torch.get_num_threads()))
    print("model gpt: %d blocks, width %d, %d heads, context %d, vocab %d (%d parameters); AdamW lr %g, "
          "weight decay %g, clip %g, dropout %g, batch %d, steps 1..%d" % (N, E, H, T, V, flat.size, lr, wd, clip, p,
                                                                          B, S))
    log = open(args.log, "w") if args.log else None
    if log:
        log.write("step,loss,val_bpc,seconds\n")
    te = time.perf_counter()
    bpc = val_bpc(model, val, T, W)
    print("step 0/%d  val bpc %.4f  (eval %.1f s)" % (S, bpc, time.perf_counter() - te))
    losses, bpcs = {}, {0: bpc}
    train_seconds, interval, n_interval = 0.0, 0.0, 0
    for step in range(1, S + 1):
        t0 = time.perf_counter()
        w = torch.from_numpy(train[step - 1])
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), w[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        train_seconds += time.perf_counter() - t0
        losses[step] = loss.item()
        interval += losses[step]
        n_interval += 1
        row = ""
        if step % K == 0 or step == S:
            te = time.perf_counter()
            bpc = bpcs[step] = val_bpc(model, val, T, W)
            print("step %d/%d  train loss %.4f  val bpc %.4f  (%.0f ms/step, eval %.1f s)" %
                  (step, S, interval / n_interval, bpc, 1000 * train_seconds / step, time.perf_counter() - te))
            sys.stdout.flush()
            row = "%.9g" % bpc
            if step % K == 0:
                interval, n_interval = 0.0, 0
        if log:
            log.write("%d,%.9g,%s,%.3f\n" % (step, losses[step], row, train_seconds))
    if log:
        log.close()

    extra = ""
    if args.compare:
        c_loss, c_bpc = read_c_log(args.compare)
        first = [s for s in range(1, min(args.compare_steps, S) + 1) if s in c_loss]
        rel = [abs(losses[s] - c_loss[s]) / abs(c_loss[s]) for s in first]
        worst = max(range(len(rel)), key=lambda i: rel[i])
        print("losses of steps 1..%d: largest relative difference %.3g (step %d: torch %.7f, libaimodel %.7f)" %
              (first[-1], rel[worst], first[worst], losses[first[worst]], c_loss[first[worst]]))
        common = sorted(set(bpcs) & set(c_bpc))
        for s in common:
            print("val bpc after step %d: torch %.4f, libaimodel %.4f, relative difference %.3g" %
                  (s, bpcs[s], c_bpc[s], abs(bpcs[s] - c_bpc[s]) / c_bpc[s]))
        last = common[-1] if common else None
        extra = " loss_max_rel=%.3g" % rel[worst]
        if last is not None:
            extra += " val_bpc_rel=%.3g c_val_bpc=%.4f" % (abs(bpcs[last] - c_bpc[last]) / c_bpc[last], c_bpc[last])
    print("RESULT char_gpt_torch val_bpc=%.4f steps=%d ms_per_step=%.1f train_seconds=%.2f threads=%d%s" %
          (bpc, S, 1000 * train_seconds / max(S, 1), train_seconds, torch.get_num_threads(), extra))


if __name__ == "__main__":
    main()
