#!/usr/bin/python3
# text_torch.py: examples/text_classifier.c's model and training in PyTorch,
# on the very split the C program selected, to check that libaimodel reaches
# the same accuracy.
#
#   build/examples/text_classifier --write-split build/text_split.tsv [--data-seed 2026] ...
#   /usr/bin/python3 tests/bench/text_torch.py [--split build/text_split.tsv] [--epochs 10]
#              [--batch 32] [--seed 42] [--threads 1] [--lr 2e-3]
#
# The split file holds every training and test word with its label (0
# English, 1 French, 2 German, 3 Spanish, 4 Italian) and its T character ids
# (0 = padding, on the right), so both programs see the same words, ids and
# padding; its first line gives T and the vocabulary size.
#
# Model: nn.Embedding(vocab, 32, padding_idx=0) -> nn.GRU(32, 64,
# batch_first=True, bidirectional=True) over all T steps (padding included,
# no packing, as the C model) -> cat(h_n[-2], h_n[-1]) (the forward
# direction's state after the last step, the reverse direction's after the
# first) -> nn.Linear(128, 5). PyTorch's default initialization, which is the
# C program's: embedding N(0, 1) with the padding row 0, GRU U(-1/8, 1/8),
# Linear U(-1/sqrt(128), 1/sqrt(128)) for weight and bias. nn.CrossEntropyLoss
# (mean over the batch), torch.optim.Adam at lr 2e-3 with betas 0.9/0.999 and
# eps 1e-8 (libaimodel's defaults). Batches of 32 from a fresh shuffle each
# epoch, the last one short. The shuffle and the initial weights come from
# torch's generator (seeded), not libaimodel's, so they are other draws from
# the same distributions.
#
# Prints one line per epoch and a final line in the C example's format:
#   RESULT text_torch test_accuracy=A train_seconds=S epochs=E batch=B threads=T seed=N ...
# SPDX-License-Identifier: MIT
import argparse
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LANGS = ["english", "french", "german", "spanish", "italian"]
EVAL_BATCH = 256


def read_split(path):
    with open(path, encoding="utf-8") as f:
        first = f.readline()
        m = re.search(r"T=(\d+) vocab=(\d+)", first)
        if not first.startswith("# text_classifier split") or not m:
            raise ValueError("%s: not a split written by text_classifier --write-split" % path)
        t, vocab = int(m.group(1)), int(m.group(2))
        sets = {"train": ([], []), "test": ([], [])}
        for line in f:
            if line.startswith("#"):
                continue
            split, label, _word, ids = line.rstrip("\n").split("\t")
            ids = [int(v) for v in ids.split(" ")]
            if len(ids) != t or not all(0 <= v < vocab for v in ids):
                raise ValueError("%s: bad ids in %r" % (path, line))
            sets[split][0].append(ids)
            sets[split][1].append(int(label))
    out = {}
    for name, (x, y) in sets.items():
        out[name] = (torch.tensor(np.array(x, dtype=np.int64)), torch.tensor(np.array(y, dtype=np.int64)))
    return t, vocab, out


class TextNet(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 32, padding_idx=0)
        self.gru = nn.GRU(32, 64, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(128, len(LANGS))

    def forward(self, ids):
        _, h_n = self.gru(self.embed(ids))     # h_n [2, B, 64]: forward, reverse
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))


def evaluate(model, x, y):
    model.eval()
    pred = []
    with torch.no_grad():
        for i in range(0, x.shape[0], EVAL_BATCH):
            pred.append(model(x[i:i + EVAL_BATCH]).argmax(dim=1))
    model.train()
    pred = torch.cat(pred)
    per = [(pred[y == l] == l).float().mean().item() for l in range(len(LANGS))]
    return (pred == y).float().mean().item(), per


def main():
    ap = argparse.ArgumentParser(description="examples/text_classifier.c in PyTorch")
    ap.add_argument("--split", default="build/text_split.tsv")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t, vocab, sets = read_split(args.split)
    x_train, y_train = sets["train"]
    x_test, y_test = sets["test"]
    model = TextNet(vocab)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    print("text_torch: %s, %d train and %d test words, T %d, vocab %d; torch %s" %
          (args.split, x_train.shape[0], x_test.shape[0], t, vocab, torch.__version__))
    print("model embedding32-bigru64-5 (%d parameters), Adam lr %g, batch %d, %d epochs, seed %d, threads %d" %
          (n_params, args.lr, args.batch, args.epochs, args.seed, args.threads))

    n = x_train.shape[0]
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        te = time.perf_counter()
        perm = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            xb, yb = x_train[idx], y_train[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * idx.numel()
            correct += (logits.argmax(dim=1) == yb).sum().item()
        print("epoch %d/%d  loss %.4f  accuracy %.4f  %.1f s" %
              (epoch, args.epochs, loss_sum / n, correct / n, time.perf_counter() - te))
        sys.stdout.flush()
    train_seconds = time.perf_counter() - t0

    acc, per = evaluate(model, x_test, y_test)
    print("test accuracy %.4f: %s" % (acc, " ".join("%s %.3f" % (LANGS[l], per[l]) for l in range(len(LANGS)))))
    print("RESULT text_torch test_accuracy=%.4f train_seconds=%.2f epochs=%d batch=%d threads=%d seed=%d "
          "train_words=%d test_words=%d vocab=%d" %
          (acc, train_seconds, args.epochs, args.batch, args.threads, args.seed, n, x_test.shape[0], vocab))


if __name__ == "__main__":
    main()
