"""The Keras-style API of aimodel.Model: compile(optimizer=, loss=,
metrics=), fit, evaluate, predict(batch_size=), summary, save/load; and a
docstring on every public name of the package."""

import inspect
import io
import os
import sys
import tracemalloc

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aimodel as aim  # noqa: E402


def rings(n, seed):
    """Three noisy concentric rings in 2-D, labelled by ring: a problem no
    linear model solves (chance is 1/3)."""
    rs = np.random.RandomState(seed)
    label = rs.randint(0, 3, size=n)
    radius = 1.0 + label + 0.25 * rs.randn(n)
    angle = rs.uniform(0, 2 * np.pi, size=n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).astype(np.float32)
    return x, label.astype(np.int32)


def classifier(seed=1, max_batch=32, **training):
    m = aim.Model(2)
    m.add_dense(32, "relu").add_dense(32, "relu").add_dense(3)
    m.compile(max_batch=max_batch, seed=seed, **training)
    return m


def numpy_cross_entropy(logits, labels):
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def test_fit_learns_the_rings():
    x, y = rings(1200, seed=0)
    xv, yv = rings(300, seed=1)
    with classifier(optimizer=aim.Adam(learning_rate=1e-2), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"]) as m:
        before = m.evaluate(xv, yv)
        history = m.fit(x, y, epochs=15, batch_size=32, validation_data=(xv, yv), verbose=0)
        h = history.history
        assert sorted(h) == ["accuracy", "loss", "val_accuracy", "val_loss"]
        assert all(len(v) == 15 for v in h.values()) and history.epoch == list(range(15))
        assert abs(before[0] - np.log(3)) < 0.5 and before[1] < 0.6, before
        assert h["loss"][-1] < 0.5 * h["loss"][0], h["loss"]
        assert h["val_accuracy"][-1] > 0.9, h["val_accuracy"]
        assert m.optimizer.steps == 15 * 38                      # ceil(1200 / 32) steps an epoch
        loss, accuracy = m.evaluate(xv, yv)
        assert loss == pytest.approx(h["val_loss"][-1]) and accuracy == pytest.approx(h["val_accuracy"][-1])
        # evaluate() is the mean cross entropy and the share of argmax hits of predict()
        logits = m.predict(xv)
        assert loss == pytest.approx(numpy_cross_entropy(logits, yv), rel=1e-5)
        assert accuracy == np.mean(np.argmax(logits, axis=1) == yv)


def test_fit_regression_with_mse_and_sgd():
    rs = np.random.RandomState(3)
    x = rs.randn(256, 4).astype(np.float32)
    t = (x @ np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32) + 0.1)[:, None]
    with aim.Model(4) as m:
        m.add_dense(1)
        m.compile(max_batch=16, seed=2, optimizer="sgd", loss="mse", metrics=["mae"])
        h = m.fit(x, t.ravel(), epochs=20, batch_size=16, verbose=0).history    # (N,) targets of a (1,) output
        assert h["loss"][-1] < 1e-3 < h["loss"][0], h["loss"]
        assert m.evaluate(x, t, return_dict=True)["mae"] < 0.03
        assert m.optimizer.learning_rate == 0.01


def test_fit_without_shuffle_and_save_load_continue_bit_for_bit(tmp_path):
    x, y = rings(200, seed=4)
    straight = classifier(seed=5, optimizer="adam", loss="sparse_categorical_crossentropy")
    straight.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    first = classifier(seed=5, optimizer="adam", loss="sparse_categorical_crossentropy")
    first.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    path = tmp_path / "model.aim"
    first.save(path)
    resumed = aim.Model.load(path)
    assert isinstance(resumed.optimizer, aim.Adam) and resumed.optimizer.steps == 7 and resumed.max_batch == 32
    assert np.array_equal(resumed.predict(x), first.predict(x))
    resumed.compile(loss="sparse_categorical_crossentropy")               # the weights stay
    assert np.array_equal(resumed.predict(x), first.predict(x))
    resumed.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert np.array_equal(resumed.parameters(), straight.parameters())    # Adam's moments came along
    # without the optimizer
    first.save(path, include_optimizer=False)
    plain = aim.load_model(str(path))
    assert plain.optimizer is None and np.array_equal(plain.predict(x), first.predict(x))
    with pytest.raises(ValueError, match="optimizer"):
        plain.compile(loss="mse").fit(x, y[:, None].astype(np.float32), verbose=0)
    for m in (straight, first, resumed, plain):
        m.close()


def test_fit_is_the_hand_written_loop_bit_for_bit():
    x, y = rings(100, seed=8)                                  # 3 batches of 32, then one of 4
    with classifier(seed=9, optimizer="adam", loss="sparse_categorical_crossentropy") as fitted:
        fitted.fit(x, y, epochs=2, batch_size=32, verbose=0)
        with classifier(seed=9) as m, aim.Adam(m) as adam, aim.Rng(9 + 1) as rng:
            for epoch in range(2):
                order = rng.permutation(100)                   # as the C examples' batcher
                for first in range(0, 100, 32):
                    idx = order[first:first + 32]
                    m.zero_grad()
                    m.forward(x[idx])
                    m.loss_sparse(y[idx])
                    m.backward()
                    adam.step(m, 1e-3)
            assert np.array_equal(fitted.parameters(), m.parameters())
            assert fitted.optimizer.steps == adam.steps == 8


def test_shuffle_is_the_seeded_library_permutation():
    x, y = rings(96, seed=6)
    runs = []
    for seed in (7, 7, 8):
        with classifier(seed=5, optimizer="adam", loss="sparse_categorical_crossentropy") as m:
            m.fit(x, y, epochs=2, batch_size=32, seed=seed, verbose=0)
            runs.append(m.parameters().copy())
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def test_shape_errors_name_the_expected_shape():
    x, y = rings(64, seed=0)
    with classifier(optimizer="adam", loss="sparse_categorical_crossentropy") as m:
        with pytest.raises(ValueError, match=r"expected an array of shape \(N, 2\), got \(64, 3\)"):
            m.fit(np.zeros((64, 3), np.float32), y, verbose=0)
        with pytest.raises(ValueError, match=r"labels: expected an array of shape \(64,\), got \(60,\)"):
            m.fit(x, y[:60], verbose=0)
        with pytest.raises(TypeError, match="labels must be integers"):
            m.fit(x, y.astype(np.float32), verbose=0)
        with pytest.raises(ValueError, match=r"batch_size 64 is above the compiled max_batch 32"):
            m.fit(x, y, batch_size=64, verbose=0)
        with pytest.raises(ValueError, match=r"expected an array of shape \(N, 2\), got \(5,\)"):
            m.predict(np.zeros(5, np.float32))
    with aim.Model(4) as m:
        m.add_dense(3)
        m.compile(max_batch=8, loss="mse")
        with pytest.raises(ValueError, match=r"targets: expected an array of shape \(10, 3\), got \(10, 4\)"):
            m.evaluate(np.zeros((10, 4), np.float32), np.zeros((10, 4), np.float32))
        with pytest.raises(ValueError, match="compile"):
            aim.Model(4).fit(np.zeros((2, 4), np.float32), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="unknown loss"):
        classifier(loss="hinge")
    with pytest.raises(ValueError, match="unknown optimizer"):
        classifier(optimizer="adagrad")


def test_predict_chunks_through_one_workspace_without_copying_the_input():
    rs = np.random.RandomState(2)
    with classifier(max_batch=16) as m:
        x = rs.randn(50, 2).astype(np.float32)
        whole = m.predict(x, batch_size=50)
        for batch_size in (1, 7, 16, None):
            # BLAS picks its kernel by the chunk's rows: equal to rounding, not in bits
            assert np.allclose(m.predict(x, batch_size=batch_size), whole, rtol=1e-5, atol=1e-6)
        assert np.array_equal(m.predict(x, batch_size=7), m.predict(x, batch_size=7))
        assert m._workspace.max_batch == 50                    # grown once, reused for smaller chunks
        out = np.empty((50, 3), np.float32)
        assert m.predict(x, out=out) is out and np.array_equal(out, m.predict(x))
    with aim.Model(256) as wide:                               # 4 MB of input, 48 kB of output
        wide.add_dense(3)
        wide.compile(max_batch=32, seed=1)
        big = rs.randn(4000, 256).astype(np.float32)
        wide.predict(big[:32])
        tracemalloc.start()
        wide.predict(big)
        _, peak_in_place = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        doubles = big.astype(np.float64)
        tracemalloc.start()
        wide.predict(doubles)                                  # converted: a float32 copy
        _, peak_converted = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak_in_place < big.nbytes // 4, (peak_in_place, big.nbytes)
        assert peak_converted >= big.nbytes, (peak_converted, big.nbytes)


def test_summary_lists_kinds_shapes_and_counts():
    with aim.Model(20) as m:
        skip = m.add_dense(32, "relu").last_node()
        body = m.add_dense(32).add_batch_norm().last_node()
        m.add_concat([body, skip]).add_dropout(0.1).add_dense(3)
        before = m.summary(print_fn=None)
        assert "(not compiled)" in before and "?" in before
        m.compile(max_batch=8, seed=1, optimizer="adam", loss="sparse_categorical_crossentropy")
        printed = io.StringIO()
        text = m.summary(print_fn=lambda s: printed.write(s + "\n"))
        assert printed.getvalue() == text + "\n"
        rows = [line.split() for line in text.splitlines()]
        assert ["0", "dense", "in0", "(None,", "32)", "672"] in rows
        assert ["1", "dense", "0", "(None,", "32)", "1,056"] in rows
        assert ["2", "batch_norm", "1", "(None,", "32)", "64"] in rows
        assert ["3", "concat", "2,", "0", "(None,", "64)", "0"] in rows
        assert ["4", "dropout", "3", "(None,", "64)", "0"] in rows
        assert ["5", "dense", "4", "(None,", "3)", "195"] in rows
        assert "Trainable params: {:,}".format(m.parameters().size) in text
        assert "Non-trainable params: 64" in text and m.buffers().size == 64     # running mean and var
        assert "Total params: {:,}".format(m.parameters().size + 64) in text
        # a deserialized model reads its kinds from the record
        m2, opt = aim.Model.deserialize(m.serialize(m.optimizer))
        assert m2.summary(print_fn=None) == text and isinstance(opt, aim.Adam)
        m2.close()
        opt.close()


def _own_doc(obj):
    """The docstring written on `obj` itself (a class's is not inherited)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return (doc or "").strip()


def _public_names(module):
    """(qualified name, object) of the public classes and functions the
    package's `module` defines, and of their public methods and properties."""
    seen = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not str(getattr(obj, "__module__", "")).startswith("aimodel"):
            continue                                         # imported from elsewhere
        seen.append(("%s.%s" % (module.__name__, name), obj))
        if not inspect.isclass(obj):
            continue
        members = getattr(obj, "__members__", {})            # an enum's values are not names to document
        for attr, member in vars(obj).items():
            if attr.startswith("_") or attr in members:
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member) or isinstance(member, property):
                seen.append(("%s.%s.%s" % (module.__name__, name, attr), member))
    return seen


def test_every_public_name_has_a_docstring():
    modules = [aim, aim.progress, aim._keras]
    names = []
    for module in modules:
        assert (module.__doc__ or "").strip(), module.__name__
        names += _public_names(module)
    assert len(names) > 150, len(names)                   # the walk finds the methods
    assert "aimodel._keras.TrainingMixin.fit" in dict(names) and "aimodel.Model.input_count" in dict(names)
    missing = [name for name, obj in names if not _own_doc(obj)]
    assert not missing, "no docstring: " + ", ".join(missing)
    for name in aim.__all__:
        assert hasattr(aim, name), name


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
