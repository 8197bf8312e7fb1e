#!/usr/bin/python3
"""Trains the seed MLP (784 -> Dense 64 relu -> Dense 64 relu -> Dense 10,
softmax cross-entropy on labels, Adam 1e-3, batch 32) on Fashion-MNIST
through the Python binding.

It replays examples/mlp_classifier.c step for step: the same data (pixels /
255 as float32), the same split (the last 5000 training images held out for
validation), the same weight seed (--seed, default 42), the same shuffle
(aim_rng seeded with seed + 1, aim_rng_shuffle_u32 over the identity at
every epoch), the same last short batch and the same evaluation
(aim_model_predict in chunks of 256). So for equal --epochs and --seed it
reaches the same test accuracy as build/examples/mlp_classifier.
"""

import argparse
import gzip
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aimodel  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
VALIDATION_COUNT = 5000  # EX_VALIDATION_COUNT
EVAL_BATCH = 256         # EX_EVAL_BATCH
LEARNING_RATE = 1e-3
PIXELS = 28 * 28
CLASSES = 10


def read_idx(directory, name, magic, header_words):
    """The payload bytes and header of NAME.gz (or NAME) in `directory`."""
    path = os.path.join(directory, name + ".gz")
    if os.path.exists(path):
        with gzip.open(path, "rb") as f:
            data = f.read()
    else:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            data = f.read()
    header = np.frombuffer(data, dtype=">u4", count=header_words)
    if header[0] != magic:
        raise ValueError("%s: magic number %d, expected %d" % (path, header[0], magic))
    return header, np.frombuffer(data, dtype=np.uint8, offset=4 * header_words), path


def load_split(directory, prefix):
    header, pixels, path = read_idx(directory, prefix + "-images-idx3-ubyte", 2051, 4)
    count, rows, cols = (int(v) for v in header[1:])
    if (rows, cols) != (28, 28) or pixels.size != count * PIXELS:
        raise ValueError("%s: unexpected shape or length" % path)
    # (float)byte / 255.0f, exactly as the C reader computes it
    images = pixels.reshape(count, PIXELS).astype(np.float32) / np.float32(255.0)
    header, labels, path = read_idx(directory, prefix + "-labels-idx1-ubyte", 2049, 2)
    if int(header[1]) != count or labels.size != count or labels.max() >= CLASSES:
        raise ValueError("%s: labels do not match the images" % path)
    return images, labels.astype(np.int32)


def accuracy(model, workspace, x, labels):
    logits = model.predict_with(workspace, x)  # aim_model_predict in chunks of workspace.max_batch
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training data (default 5)")
    parser.add_argument("--seed", type=int, default=42, help="weight initialization and shuffling (default 42)")
    parser.add_argument("--batch", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--fit", action="store_true",
                        help="train with Model.fit (the same steps, shuffle and progress lines) instead of the loop")
    parser.add_argument("--data", default=DEFAULT_DATA, help="Fashion-MNIST directory (default %s)" % DEFAULT_DATA)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch < 1 or not 0 <= args.seed < 2 ** 64:
        parser.error("--epochs and --batch must be >= 1, --seed in [0, 2^64)")

    try:
        train_x, train_y = load_split(args.data, "train")
        test_x, test_y = load_split(args.data, "t10k")
    except (OSError, ValueError) as e:
        print("error: cannot read Fashion-MNIST: %s" % e, file=sys.stderr)
        return 1
    keep = train_x.shape[0] - VALIDATION_COUNT
    val_x, val_y = train_x[keep:], train_y[keep:]
    train_x, train_y = train_x[:keep], train_y[:keep]
    n_train = train_x.shape[0]

    with aimodel.Model(PIXELS) as model:
        model.add_dense(64, "relu").add_dense(64, "relu").add_dense(CLASSES)  # logits
        model.compile(max_batch=args.batch, seed=args.seed)
        adam = aimodel.Adam(model)
        # Evaluation goes through aim_model_predict(), which leaves the
        # model's own training memory alone.
        workspace = aimodel.Workspace(model, EVAL_BATCH)
        # A seed of its own, as in the C example, so shuffling does not
        # replay the initialization's draws.
        rng = aimodel.Rng((args.seed + 1) % 2 ** 64)

        print("train_mlp.py: fashion-mnist, %d train / %d validation / %d test images"
              % (n_train, val_x.shape[0], test_x.shape[0]))
        print("model 784-64-64-10 (%d parameters), Adam lr %g, batch %d, %d epochs, seed %d, libaimodel %s"
              % (model.parameters().size, LEARNING_RATE, args.batch, args.epochs, args.seed, aimodel.version()))
        steps = (n_train + args.batch - 1) // args.batch
        train_start = time.monotonic()
        if args.fit:
            # The loop below, as one call: the same shuffle (compile's seed + 1), batches and Adam steps.
            model.compile(optimizer=adam, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(train_x, train_y, epochs=args.epochs, batch_size=args.batch, validation_data=(val_x, val_y))
        for epoch in range(1, args.epochs + 1 if not args.fit else 1):
            print("Epoch %d/%d" % (epoch, args.epochs))
            bar = aimodel.ProgressBar(steps)
            bar.start()
            order = rng.permutation(n_train)
            loss_sum = batch_loss_sum = 0.0
            correct = 0
            for first in range(0, n_train, args.batch):
                idx = order[first:first + args.batch]
                x, y = train_x[idx], train_y[idx]
                model.zero_grad()
                n = model.forward(x, aimodel.Mode.TRAIN)
                correct += int(np.sum(np.argmax(model.output(copy=False), axis=1) == y))
                loss = model.loss_sparse(y)
                model.backward()
                adam.step(model, LEARNING_RATE)
                loss_sum += loss * n  # the loss is a batch mean
                batch_loss_sum += loss
                bar.update(first // args.batch + 1, [("loss", batch_loss_sum / (first // args.batch + 1))])
            val_acc = accuracy(model, workspace, val_x, val_y)
            bar.finish([("loss", loss_sum / n_train), ("accuracy", correct / n_train), ("val_accuracy", val_acc)])
        train_seconds = time.monotonic() - train_start

        test_acc = accuracy(model, workspace, test_x, test_y)
        workspace.close()
        adam.close()
        rng.close()
    print("test accuracy %.4f on %d images" % (test_acc, test_x.shape[0]))
    print("RESULT train_mlp_py test_accuracy=%.4f train_seconds=%.2f epochs=%d batch=%d seed=%d data=fashion-mnist"
          % (test_acc, train_seconds, args.epochs, args.batch, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
