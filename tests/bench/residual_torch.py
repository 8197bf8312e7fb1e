#!/usr/bin/python3
# residual_torch.py: examples/residual_classifier.c's model and training in
# PyTorch, to check that libaimodel reaches the same accuracy on the same data.
#
#   usage: /usr/bin/python3 tests/bench/residual_torch.py [--epochs 3] [--batch 32]
#              [--seed 42] [--threads 1] [--data /usr/share/datasets/fashion-mnist]
#              [--batchnorm]
#
# Model (1x28x28 in): Conv2d 32 3x3 same relu -> MaxPool 2 -> two residual
# blocks at 32 channels -> MaxPool 2 -> Conv2d 64 3x3 same relu -> one
# residual block at 64 -> global average pool -> Linear 10 (logits). A
# residual block is relu(conv(relu(conv(x))) + x), both convolutions 3x3
# "same" (stride 1, padding 1). Initialization as libaimodel's default:
# Glorot (Xavier) uniform weights with fans counting the kernel area, zero
# biases. nn.CrossEntropyLoss (mean over the batch), torch.optim.Adam at
# lr 1e-3 with its defaults (betas 0.9/0.999, eps 1e-8, libaimodel's too).
#
# --batchnorm, as the C example's: every convolution loses its bias and is
# followed by nn.BatchNorm2d (defaults: momentum 0.1, eps 1e-5, affine, γ 1,
# β 0) before its relu; a block is torchvision's BasicBlock,
# relu(bn(conv(relu(bn(conv(x))))) + x); nn.Dropout(0.5) between the global
# average pool and the head. Evaluation runs in model.eval() (running
# statistics, no dropout), as aim_model_predict() does.
#
# Data as examples/common: the four gzipped IDX files, pixels / 255 with no
# other normalization, the last 5000 training images held out for validation
# (so 55000 train), batches of 32 drawn from a fresh shuffle each epoch with
# the last batch short. The shuffle is torch's (seeded), not libaimodel's
# generator, so the batch order differs from the C program's.
#
# Prints one line per epoch (training loss and accuracy, validation and test
# accuracy) and a final line in the C example's format:
#   RESULT residual_torch test_accuracy=A train_seconds=S epochs=E batch=B threads=T seed=N data=fashion-mnist
#          batchnorm=0|1
# train_seconds covers the training steps and the per-epoch validation, as
# the C program's fit loop measures it; the per-epoch test evaluation (which
# the C program does not do) is left out of it.
# SPDX-License-Identifier: MIT
import argparse
import gzip
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
VALIDATION_COUNT = 5000
EVAL_BATCH = 256
LEARNING_RATE = 1e-3
DROPOUT_P = 0.5  # --batchnorm: before the head


def read_idx(path, magic_expected):
    """Reads a gzipped (or plain) IDX file as numpy uint8, checking its magic number."""
    opener = gzip.open if os.path.exists(path + ".gz") else open
    name = path + ".gz" if opener is gzip.open else path
    with opener(name, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != magic_expected:
        raise ValueError("%s: magic %d, expected %d" % (name, magic, magic_expected))
    if magic == 2051:
        count, rows, cols = struct.unpack(">III", data[4:16])
        arr = np.frombuffer(data, dtype=np.uint8, offset=16)
        if rows != 28 or cols != 28 or arr.size != count * rows * cols:
            raise ValueError("%s: bad image file" % name)
        return arr.reshape(count, 1, rows, cols)
    count = struct.unpack(">I", data[4:8])[0]
    arr = np.frombuffer(data, dtype=np.uint8, offset=8)
    if arr.size != count:
        raise ValueError("%s: bad label file" % name)
    return arr


def load(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte"), 2051)
    labels = read_idx(os.path.join(data_dir, prefix + "-labels-idx1-ubyte"), 2049)
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0))  # as fashion_mnist.c: pixel / 255
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def conv_bn(c_in, c_out, batchnorm):
    """A 3x3 "same" convolution; with batchnorm, without bias and followed by BatchNorm2d."""
    if not batchnorm:
        return nn.Conv2d(c_in, c_out, 3, padding=1)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))


class ResidualBlock(nn.Module):
    def __init__(self, channels, batchnorm):
        super().__init__()
        self.conv1 = conv_bn(channels, channels, batchnorm)
        self.conv2 = conv_bn(channels, channels, batchnorm)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = self.conv2(y)
        return F.relu(y + x)


class ResidualNet(nn.Module):
    def __init__(self, batchnorm=False):
        super().__init__()
        self.conv1 = conv_bn(1, 32, batchnorm)
        self.block1 = ResidualBlock(32, batchnorm)
        self.block2 = ResidualBlock(32, batchnorm)
        self.conv2 = conv_bn(32, 64, batchnorm)
        self.block3 = ResidualBlock(64, batchnorm)
        self.dropout = nn.Dropout(DROPOUT_P) if batchnorm else nn.Identity()
        self.fc = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)  # fans: C_in*kh*kw, C_out*kh*kw, as libaimodel's Glorot
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = self.block2(self.block1(x))
        x = F.max_pool2d(x, 2)
        x = self.block3(F.relu(self.conv2(x)))
        x = x.mean(dim=(2, 3))  # global average pool
        return self.fc(self.dropout(x))


def flops_per_sample(model):
    """2 x the multiply-adds of the convolutions and the dense layer."""
    total = 0
    shapes = {}

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            shapes[mod] = 2 * out[0].numel() * k
        elif isinstance(mod, nn.Linear):
            shapes[mod] = 2 * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()  # so that this forward leaves BatchNorm2d's running statistics and the dropout RNG alone
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train()
    for h in handles:
        h.remove()
    total = sum(shapes.values())
    return total


def accuracy(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], EVAL_BATCH):
            logits = model(x[i:i + EVAL_BATCH])
            correct += (logits.argmax(dim=1) == y[i:i + EVAL_BATCH]).sum().item()
    model.train()
    return correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--batchnorm", action="store_true",
                    help="batch norm after every convolution, dropout 0.5 before the head")
    args = ap.parse_args()
    if args.epochs < 1 or args.batch < 1 or args.threads < 1:
        ap.error("--epochs, --batch and --threads must be at least 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x_train, y_train = load(args.data, "train")
    x_test, y_test = load(args.data, "test")
    keep = x_train.shape[0] - VALIDATION_COUNT  # the last 5000 are validation, as ex_load_fashion_mnist()
    x_val, y_val = x_train[keep:], y_train[keep:]
    x_train, y_train = x_train[:keep], y_train[:keep]

    model = ResidualNet(args.batchnorm)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed + 1)

    print("residual_torch: torch %s, %d train / %d validation / %d test images" %
          (torch.__version__, x_train.shape[0], x_val.shape[0], x_test.shape[0]))
    name = ("conv32bn-pool-res32bnx2-pool-conv64bn-res64bn-gap-dropout0.5-10" if args.batchnorm
            else "conv32-pool-res32x2-pool-conv64-res64-gap-10")
    print("model %s (%d parameters, %.2f MFLOP per sample forward), "
          "Adam lr %g, batch %d, %d epochs, seed %d, threads %d" %
          (name, params, flops_per_sample(model) / 1e6, LEARNING_RATE, args.batch, args.epochs, args.seed,
           torch.get_num_threads()), flush=True)

    n = x_train.shape[0]
    train_seconds = 0.0
    test_acc = 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        correct = 0
        for i in range(0, n, args.batch):
            idx = order[i:i + args.batch]
            xb, yb = x_train[idx], y_train[idx]
            opt.zero_grad()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * idx.shape[0]
            correct += (logits.argmax(dim=1) == yb).sum().item()
        val_acc = accuracy(model, x_val, y_val)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        test_acc = accuracy(model, x_test, y_test)
        print("epoch %d/%d  loss %.4f  accuracy %.4f  val_accuracy %.4f  test_accuracy %.4f  %.2fs" %
              (epoch, args.epochs, loss_sum / n, correct / n, val_acc, test_acc, seconds), flush=True)

    print("test accuracy %.4f on %d images" % (test_acc, x_test.shape[0]))
    print("RESULT residual_torch test_accuracy=%.4f train_seconds=%.2f epochs=%d batch=%d threads=%d seed=%d "
          "data=fashion-mnist batchnorm=%d" % (test_acc, train_seconds, args.epochs, args.batch,
                                               torch.get_num_threads(), args.seed, int(args.batchnorm)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
