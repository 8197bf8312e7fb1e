"""The Keras-style half of Model: fit, evaluate, summary, save and load.

Model (in aimodel/__init__.py) inherits these methods from TrainingMixin.
They use only the Model's own binding methods (forward, loss_sparse, loss,
backward, predict_with, ...), so this file holds no ctypes code. The
package is imported in full before any of these runs, hence the imports of
``aimodel`` inside the functions.
"""

import math
import os
import struct

import numpy as np

from . import progress as _progress

__all__ = ["History", "TrainingMixin", "parse_model_record"]

# Keras's names of the losses, and the library's (LossKind names, lower case).
_SPARSE = "sparse_categorical_crossentropy"
_LOSS_ALIASES = {
    _SPARSE: _SPARSE,
    "sparse": _SPARSE,
    "categorical_crossentropy": "softmax_cross_entropy",
    "softmax_cross_entropy": "softmax_cross_entropy",
    "mse": "mse",
    "mean_squared_error": "mse",
    "binary_crossentropy": "bce",
    "bce": "bce",
    "bce_with_logits": "bce_with_logits",
    "binary_crossentropy_from_logits": "bce_with_logits",
}
_METRIC_ALIASES = {"accuracy": "accuracy", "acc": "accuracy", "mae": "mae", "mean_absolute_error": "mae",
                   "mse": "mse", "mean_squared_error": "mse"}
_OPTIMIZERS = ("adam", "sgd", "rmsprop")


class History:
    """What fit() returns, as Keras's History: `history` maps each logged
    name ("loss", "accuracy", "val_loss", "val_accuracy", ...) to its
    per-epoch list, `epoch` lists the epoch indices (0-based), `params` holds
    fit's settings."""

    def __init__(self, params):
        self.history = {}
        self.epoch = []
        self.params = dict(params)

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for name, value in logs:
            self.history.setdefault(name, []).append(float(value))

    def __repr__(self):
        return "<aimodel.History %d epochs: %s>" % (len(self.epoch), ", ".join(self.history))


class _Loss:
    """The loss fit() and evaluate() use: a Keras name resolved to the
    library's sparse softmax cross-entropy or one of its LossKind losses."""

    def __init__(self, name):
        import aimodel
        if isinstance(name, aimodel.LossKind):
            name = name.name.lower()
        key = str(name).lower()
        if key not in _LOSS_ALIASES:
            raise ValueError("unknown loss %r (one of %s)" % (name, ", ".join(sorted(_LOSS_ALIASES))))
        self.name = _LOSS_ALIASES[key]
        self.sparse = self.name == _SPARSE
        self.kind = None if self.sparse else aimodel.LossKind[self.name.upper()]

    def targets(self, model, y, batch):
        """`y` checked against the model's output: (N,) int labels, or (N,
        positions) on a (positions, classes) output, for the sparse loss;
        float targets of (N, *output shape) otherwise. ValueError names the
        expected shape."""
        import aimodel
        sample = tuple(model.output_shape)
        if self.sparse:
            a = np.asarray(y)
            if not np.issubdtype(a.dtype, np.integer):
                raise TypeError("labels must be integers (class indices), got %s" % a.dtype)
            expected = (batch,) + sample[:-1]
            if a.shape != expected:
                raise ValueError("labels: expected an array of shape %s, got %s"
                                 % (aimodel._shape_str(expected), aimodel._shape_str(a.shape)))
            return np.ascontiguousarray(a, dtype=np.int32)
        a = aimodel._f32(y)
        if sample == (1,) and a.ndim == 1:
            a = a.reshape(-1, 1)
        return aimodel._batch_array(a, sample, "targets", batch)

    def train(self, model, targets):
        """The loss of the last training forward against `targets`, its
        gradient kept for backward()."""
        if self.sparse:
            return model.loss_sparse(targets)
        return model.loss(self.kind, targets)

    def value(self, pred, targets):
        """The mean loss of predictions `pred` (N, *output) against `targets`."""
        import aimodel
        if self.sparse:
            classes = pred.shape[-1]
            return aimodel.loss_sparse(pred.reshape(-1, classes), targets.reshape(-1))
        return aimodel.loss(self.kind, pred.reshape(pred.shape[0], -1), targets.reshape(targets.shape[0], -1))


class _Metric:
    """A metric of fit() and evaluate(): accuracy, mae or mse, summed over
    units (samples or positions) and divided at the end."""

    def __init__(self, name, loss):
        key = str(name).lower()
        if key not in _METRIC_ALIASES:
            raise ValueError("unknown metric %r (one of accuracy, mae, mse)" % (name,))
        self.name = _METRIC_ALIASES[key]
        self.loss = loss
        if self.name == "accuracy" and loss.name == "mse":
            raise ValueError("accuracy needs a classification loss, not mse")

    def total(self, pred, targets):
        """(sum, units) of the metric over a batch of predictions."""
        if self.name == "accuracy":
            if self.loss.sparse:
                hits = np.argmax(pred, axis=-1) == targets
            elif self.loss.name == "softmax_cross_entropy":
                hits = np.argmax(pred, axis=-1) == np.argmax(targets, axis=-1)
            else:  # bce on probabilities, bce_with_logits on logits
                threshold = 0.5 if self.loss.name == "bce" else 0.0
                hits = (pred > threshold) == (targets > 0.5)
            return float(np.count_nonzero(hits)), hits.size
        diff = pred.reshape(targets.shape) - targets
        value = np.abs(diff) if self.name == "mae" else diff * diff
        return float(value.sum()), value.size


def _read(fmt, data, pos):
    size = struct.calcsize(fmt)
    if pos + size > len(data):
        raise ValueError("truncated model record")
    return struct.unpack_from(fmt, data, pos), pos + size


# Per kind of docs/FORMAT.md (version 3 and 4 payloads): its name and the
# bytes of its fields after the input list.
_KINDS = [("dense", 24), ("activation", 8), ("conv2d", 112), ("max_pool2d", 48), ("avg_pool2d", 48),
          ("global_avg_pool2d", 0), ("flatten", 0), ("lstm", 28), ("add", 0), ("concat", 8),
          ("batch_norm", 12), ("dropout", 4), ("layer_norm", 16), ("embedding", 32), ("gru", 28),
          ("conv1d", 72), ("max_pool1d", 24), ("avg_pool1d", 24), ("global_avg_pool1d", 0),
          ("global_max_pool1d", 0), ("attention", 24), ("positional_embedding", 8), ("linear", 24)]
_INPUT_BIT = 1 << 63
_OPTIMIZER_KINDS = {0: "sgd", 1: "adam", 2: "rmsprop"}


def parse_model_record(data, size_max):
    """What summary() and load() need from serialized bytes (docs/FORMAT.md,
    versions 3 and 4): a dict with "layers" (kind name, input node ids in
    the C API's numbering, model_input(k) = size_max - k), "max_batch" and
    "optimizer" (its kind's name, or None). None for another version (the
    caller then parses the model's own serialize(), which writes 3 or 4).
    The library has validated these bytes already (deserialize); this only
    reads them."""
    (version, flags), _ = _read("<II", data, 8)
    if version not in (3, 4):
        return None
    pos = 32
    (inputs,), pos = _read("<I", data, pos)
    for _ in range(inputs):
        (rank,), pos = _read("<I", data, pos)
        pos += 8 * rank + 4
    (max_batch, _grad), pos = _read("<QI", data, pos)
    (count,), pos = _read("<I", data, pos)
    layers = []
    for index in range(count):
        (kind, n_in), pos = _read("<II", data, pos)
        ids, pos = _read("<%dQ" % n_in, data, pos)
        if kind >= len(_KINDS):
            raise ValueError("layer %d: unknown kind %d" % (index, kind))
        name, fields = _KINDS[kind]
        pos += fields
        layers.append((name, tuple(size_max - (i - _INPUT_BIT) if i >= _INPUT_BIT else int(i) for i in ids)))
    optimizer = None
    if flags & 1:
        (outputs,), pos = _read("<I", data, pos)
        pos += 12 * outputs
        (params,), pos = _read("<Q", data, pos)
        pos += 4 * params
        (buffers,), pos = _read("<Q", data, pos)
        pos += 4 * buffers + 16
        (kind,), pos = _read("<I", data, pos)
        optimizer = _OPTIMIZER_KINDS.get(kind)
    return {"layers": layers, "max_batch": int(max_batch), "optimizer": optimizer}


def _node_name(node, size_max):
    """A node id as summary() shows it: 3, or in0 for model input 0."""
    return "in%d" % (size_max - node) if node > size_max - 64 else str(node)


class TrainingMixin:
    """fit, evaluate, summary, save and load for Model (Keras's names and
    defaults where they fit the library; see examples/python/README.md)."""

    # -- compile's training half
    def _set_training(self, optimizer=None, loss=None, metrics=None):
        """Records the optimizer, loss and metrics of compile(...) for fit()."""
        import aimodel
        if optimizer is not None:
            if isinstance(optimizer, str):
                key = optimizer.lower()
                if key not in _OPTIMIZERS:
                    raise ValueError("unknown optimizer %r (one of adam, sgd, rmsprop, or an Optimizer)"
                                     % (optimizer,))
                optimizer = {"adam": aimodel.Adam, "sgd": aimodel.SGD, "rmsprop": aimodel.RMSprop}[key]()
            if not isinstance(optimizer, aimodel.Optimizer):
                raise TypeError("optimizer must be a name (adam, sgd, rmsprop) or an Optimizer, got %r"
                                % (optimizer,))
            optimizer._bind(self.parameters().size)
            self.optimizer = optimizer
        if loss is not None:
            self._loss = _Loss(loss)
        if metrics is not None:
            if isinstance(metrics, str):
                metrics = [metrics]
            if self._loss is None:
                raise ValueError("metrics need a loss: compile(loss=..., metrics=[...])")
            self._metrics = [_Metric(m, self._loss) for m in metrics]

    def _training_ready(self, what):
        if not self.compiled:
            raise ValueError("%s: compile the model first (compile(max_batch=..., optimizer=..., loss=...))" % what)
        if self._loss is None:
            raise ValueError("%s needs a loss: compile(loss=\"sparse_categorical_crossentropy\" or \"mse\", ...)"
                             % what)
        if self.output_count != 1:
            raise ValueError("%s handles models of one output; this one has %d (use forward, loss and backward)"
                             % (what, self.output_count))

    # -- training
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, shuffle=True, verbose=1, seed=None):
        """Trains for `epochs` passes over (x, y) in batches of `batch_size`
        (at most the compiled max_batch; the last batch of an epoch may be
        shorter), with the optimizer and loss of compile(). `x`: (N,
        *input_shape) (a list of one array per input for several); `y`: int
        labels (N,) (or (N, positions)) for sparse_categorical_crossentropy,
        else float targets (N, *output_shape). shuffle: a new order each
        epoch from the library's Rng seeded with `seed` (default: compile's
        seed + 1, as the C examples do). validation_data: (x_val, y_val),
        evaluated after each epoch. verbose: 0 silent, 1 a progress bar, 2
        one line per epoch. Returns a History; its history dict holds the
        per-epoch "loss", each metric, and "val_" ones with validation_data.

        The arrays are converted once (no copy when already C-contiguous
        float32 / int32); the shuffled batches are gathered into buffers
        allocated once, so a step allocates no array."""
        import aimodel
        self._training_ready("fit")
        if self.optimizer is None:
            raise ValueError("fit needs an optimizer: compile(optimizer=\"adam\", ...)")
        xs, _ids = self._inputs(x)
        n = xs[0].shape[0]
        targets = self._loss.targets(self, y, n)
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1, got %d" % batch_size)
        if batch_size > self.max_batch:
            raise ValueError("batch_size %d is above the compiled max_batch %d: compile(max_batch=%d) or a smaller "
                             "batch_size" % (batch_size, self.max_batch, batch_size))
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
        epochs = int(epochs)
        bs = min(batch_size, n)
        steps = math.ceil(n / bs)
        history = History({"epochs": epochs, "batch_size": bs, "steps": steps, "samples": n})
        rng = aimodel.Rng(self._seed + 1 if seed is None else seed) if shuffle else None
        # One buffer per input and one for the targets, filled in place.
        batch_x = [np.empty((bs,) + a.shape[1:], dtype=a.dtype) for a in xs] if shuffle else None
        batch_y = np.empty((bs,) + targets.shape[1:], dtype=targets.dtype) if shuffle else None
        optimizer, loss_fn = self.optimizer, self._loss
        try:
            for epoch in range(epochs):
                _progress.epoch_line(epoch + 1, epochs, verbose)
                bar = _progress.ProgressBar(steps, verbose)
                bar.start()
                order = rng.permutation(n) if shuffle else None
                loss_sum = sample_loss_sum = 0.0
                sums = [[0.0, 0] for _ in self._metrics]
                for step in range(steps):
                    first, last = step * bs, min(n, (step + 1) * bs)
                    rows = last - first
                    if order is not None:
                        index = order[first:last]
                        for src, dst in zip(xs, batch_x):
                            np.take(src, index, axis=0, out=dst[:rows], mode="clip")
                        np.take(targets, index, axis=0, out=batch_y[:rows], mode="clip")
                        bx = [b[:rows] for b in batch_x]
                        by = batch_y[:rows]
                    else:
                        bx = [a[first:last] for a in xs]
                        by = targets[first:last]
                    self.zero_grad()
                    self.forward(bx if len(bx) > 1 else bx[0], aimodel.Mode.TRAIN)
                    batch_loss = loss_fn.train(self, by)
                    loss_sum += batch_loss
                    sample_loss_sum += batch_loss * rows
                    if self._metrics:
                        pred = self.output(copy=False)
                        for acc, metric in zip(sums, self._metrics):
                            total, units = metric.total(pred, by)
                            acc[0] += total
                            acc[1] += units
                    self.backward()
                    optimizer.step(self)
                    bar.update(step + 1, [("loss", loss_sum / (step + 1))])
                # The bar shows the running mean of the batch losses; the
                # epoch's loss is the mean over its samples (as the C examples').
                logs = [("loss", sample_loss_sum / n)]
                logs += [(m.name, s / max(u, 1)) for m, (s, u) in zip(self._metrics, sums)]
                if validation_data is not None:
                    values = self.evaluate(validation_data[0], validation_data[1], return_dict=True)
                    logs += [("val_" + name, value) for name, value in values.items()]
                bar.finish(logs)
                history._append(epoch, logs)
        finally:
            if rng is not None:
                rng.close()
        self.history = history
        return history

    def evaluate(self, x, y, batch_size=None, verbose=0, return_dict=False):
        """The loss (and metrics) of compile() on (x, y), through the
        inference path of predict() (the training memory is not touched),
        in chunks of `batch_size` (default: the compiled max_batch). Returns
        the loss, or [loss, metric, ...] when compile() named metrics, or a
        dict with return_dict=True. verbose=1 prints the final progress line."""
        self._training_ready("evaluate")
        pred = self.predict(x, batch_size=batch_size)
        n = pred.shape[0]
        targets = self._loss.targets(self, y, n)
        chunk = int(batch_size) if batch_size is not None else self.max_batch
        steps = math.ceil(n / chunk)
        loss_sum = 0.0
        for first in range(0, n, chunk):
            last = min(n, first + chunk)
            loss_sum += self._loss.value(pred[first:last], targets[first:last]) * (last - first)
        values = {"loss": loss_sum / n}
        for metric in self._metrics:
            total, units = metric.total(pred, targets)
            values[metric.name] = total / max(units, 1)
        if verbose:
            bar = _progress.ProgressBar(steps, verbose)
            bar.start()
            bar.finish(list(values.items()))
        if return_dict:
            return values
        return values["loss"] if not self._metrics else list(values.values())

    # -- description
    def _layer_list(self):
        """(kind, inputs) of every layer: those recorded by the add_* calls,
        else read from the model's serialized record."""
        import aimodel
        if self._layers is None or len(self._layers) != self.layer_count:
            record = parse_model_record(self.serialize(), aimodel._SIZE_MAX)
            self._layers = list(record["layers"])
        return self._layers

    def summary(self, print_fn=print):
        """A table of the layers: index, kind, the nodes each reads, its
        output shape ((None, ...), None the batch) and its parameter count;
        then the totals (trainable: parameters(); non-trainable: buffers(),
        batch norm's running statistics). Before compile() the parameter
        counts are not known yet and show as "?". Prints it through
        `print_fn` (None: no printing) and returns the text."""
        import aimodel
        size_max = aimodel._SIZE_MAX
        layers = self._layer_list() if (self.compiled or self._layers is not None) else []
        rows = [("#", "Layer (kind)", "Reads", "Output Shape", "Param #")]
        for k in range(self.input_count):
            rows.append(("in%d" % k, "input" + (" (int32)" if self.input_dtype(k) == aimodel.Dtype.INT32 else ""),
                         "", _batch_shape(self.input_shape_of(k)), "0"))
        trainable = buffers = 0
        for index, (kind, inputs) in enumerate(layers):
            if self.compiled:
                _off, weights, biases = self.layer_parameters(index)
                count = weights + biases
                trainable += count
                if "aim_model_layer_buffers" not in aimodel._missing:
                    buffers += self.layer_buffers(index)[1]
                params = "{:,}".format(count)
            else:
                params = "?"
            rows.append((str(index), kind, ", ".join(_node_name(i, size_max) for i in inputs),
                         _batch_shape(self.layer_shape(index)), params))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        width = sum(widths) + 2 * 4 + 1

        def line(r):
            return " " + "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                                    r[3].ljust(widths[3]), r[4].rjust(widths[4])])

        outputs = ", ".join(str(self.output_node(k)) for k in range(self.output_count)) if layers else "in0"
        text = ["Model: %d input%s, %d layer%s, output%s %s%s" % (
            self.input_count, "s" if self.input_count != 1 else "", len(layers), "s" if len(layers) != 1 else "",
            "s" if self.output_count != 1 else "", outputs, "" if self.compiled else " (not compiled)"),
            "_" * width, line(rows[0]), "=" * width]
        text += [line(r) for r in rows[1:]]
        text.append("=" * width)
        if self.compiled:
            text += ["Total params: {:,}".format(trainable + buffers),
                     "Trainable params: {:,}".format(trainable),
                     "Non-trainable params: {:,}".format(buffers)]
        else:
            text.append("Total params: ? (known after compile())")
        text.append("_" * width)
        out = "\n".join(text)
        if print_fn is not None:
            print_fn(out)
        return out

    # -- files
    def save(self, path, include_optimizer=True):
        """Writes the model, and the optimizer's state when compile() was
        given one (include_optimizer=False leaves it out), to `path` in the
        format of docs/FORMAT.md (serialize()); through a temporary file
        beside it, renamed over `path`, so a failed write leaves an older
        file whole. The loss, metrics and learning rate are not in the
        format: give them to compile() again after load()."""
        optimizer = self.optimizer if include_optimizer else None
        data = self.serialize(optimizer)
        path = os.fspath(path)
        tmp = path + ".tmp%d" % os.getpid()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path

    @classmethod
    def load(cls, path):
        """The model saved by save() (any file of docs/FORMAT.md), compiled
        at its saved max_batch, with its optimizer (and state) as
        `model.optimizer` when the file holds one. Call
        compile(loss=..., metrics=...) before fit()/evaluate()."""
        with open(os.fspath(path), "rb") as f:
            data = f.read()
        model, optimizer = cls.deserialize(data)
        model.optimizer = optimizer
        return model


def _batch_shape(shape):
    """A sample shape with the batch in front, as Keras shows it: (None, 64)."""
    return "(None, %s)" % ", ".join(str(d) for d in shape)
