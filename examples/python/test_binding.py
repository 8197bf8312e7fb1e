#!/usr/bin/python3
"""Checks of the Python binding (aimodel.py). A plain script: run it, read
the last line ("python binding: N passed, M failed"), exit code 0 or 1.

    AIMODEL_LIB=/work/main/build/libaimodel.so.1.0.0 /usr/bin/python3 examples/python/test_binding.py

(without AIMODEL_LIB the binding finds build/libaimodel.so.1 of this repository).
"""

import ctypes
import gc
import os
import sys
import traceback
import weakref

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aimodel as aim  # noqa: E402
from aimodel import AimError, Status  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def expect_error(status, fn, *args, contains=(), message=True, **kwargs):
    """Runs fn, which must raise AimError with `status` and (unless
    message=False) a non-empty message containing every string of
    `contains`; returns the error."""
    try:
        fn(*args, **kwargs)
    except AimError as e:
        assert e.status == status, "status %r, expected %r (%s)" % (e.status, status, e)
        assert isinstance(e.status, Status)
        assert e.status_str == aim.status_str(status) and e.status_str, e.status_str
        assert e.message or not message, "empty message for %s" % e
        for text in contains:
            assert text in e.message, "%r not in message %r" % (text, e.message)
        assert isinstance(e, Exception)
        return e
    raise AssertionError("no AimError (expected %r)" % status)


def data(n=64, features=6, classes=3, seed=0):
    """A small separable problem: the label is the argmax of a fixed projection."""
    rs = np.random.RandomState(seed)
    x = rs.randn(n, features).astype(np.float32)
    w = rs.randn(features, classes).astype(np.float32)
    return x, np.argmax(x @ w, axis=1).astype(np.int32)


def mlp(seed=3, max_batch=16, **compile_kw):
    m = aim.Model(6)
    m.add_dense(12, aim.Activation.RELU).add_dense(8, "tanh").add_dense(3)
    m.compile(max_batch=max_batch, seed=seed, **compile_kw)
    return m


def numpy_forward(model, x, activations):
    """Dense layers evaluated with numpy from the model's parameter buffer
    (weights [units, inputs] row-major, then bias), in float64."""
    params = model.parameters().astype(np.float64)
    h = x.astype(np.float64).reshape(x.shape[0], -1)
    for layer, act in enumerate(activations):
        off, nw, nb = model.layer_parameters(layer)
        units = model.layer_shape(layer)[0]
        w = params[off:off + nw].reshape(units, -1)
        h = h @ w.T + (params[off + nw:off + nw + nb] if nb else 0.0)
        h = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, None: lambda v: v}[act](h)
    return h


# ---------------------------------------------------------------------------


@test
def version_and_status_strings():
    assert aim.version().count(".") == 2
    major, minor, patch = (int(p) for p in aim.version().split("."))
    assert aim.version_number() == major * 10000 + minor * 100 + patch
    assert major == aim.ABI_MAJOR == 1, aim.version()  # the signatures declared are those of 1.x
    if "AIMODEL_LIB" not in os.environ:
        paths = [path for path, _ in aim._library_candidates()]
        assert any(path.endswith("build/libaimodel.so.1") for path in paths), paths
    assert aim.status_str(Status.OK)
    assert aim.status_str(Status.ERR_SHAPE_MISMATCH) != aim.status_str(Status.ERR_INVALID_ARGUMENT)
    assert aim.status_str(12345) == "unknown status"
    assert issubclass(AimError, Exception)


@test
def model_queries_and_shapes():
    with mlp() as m:
        assert m.layer_count == 3 and m.input_size == 6 and m.output_size == 3
        assert [m.layer_shape(i) for i in range(3)] == [(12,), (8,), (3,)]
        assert m.parameters().size == 6 * 12 + 12 + 12 * 8 + 8 + 8 * 3 + 3
        assert m.layer_parameters(1) == (6 * 12 + 12, 12 * 8, 8)
        assert m.memory_size > 0


@test
def training_decreases_loss():
    x, y = data()
    with mlp() as m, aim.Adam(m) as opt:
        first = last = None
        for step in range(60):
            i = (step * 16) % x.shape[0]
            m.zero_grad()
            m.forward(x[i:i + 16])
            loss = m.loss_sparse(y[i:i + 16])
            m.backward()
            opt.step(m, 1e-2)
            first = loss if first is None else first
            last = loss
        assert opt.steps == 60
        assert np.isfinite(last) and last < 0.5 * first, (first, last)
        full = float(aim.loss_sparse(m.predict(x), y))
        assert full < first, (first, full)


@test
def predict_matches_numpy_forward():
    x, _ = data(n=40)
    with mlp() as m:
        expected = numpy_forward(m, x, ["relu", "tanh", None])
        got = m.predict(x)
        assert got.shape == (40, 3) and got.dtype == np.float32
        assert np.max(np.abs(got - expected)) < 1e-5, np.max(np.abs(got - expected))
        # forward(INFERENCE) + output() agrees with predict() (other memory, same math)
        m.forward(x[:16], aim.Mode.INFERENCE)
        assert np.max(np.abs(m.output() - got[:16])) < 1e-6


@test
def binding_matches_raw_c_calls():
    """The same model built once through the classes and once through the
    bare C functions: identical weights and bit-identical predictions."""
    lib = aim.lib
    x, _ = data(n=10)
    dims = (ctypes.c_size_t * 1)(6)
    handle = ctypes.c_void_p()
    assert lib.aim_model_create(None, 1, dims, ctypes.byref(handle)) == 0
    raw = handle.value
    try:
        for units, act in ((12, 1), (8, 4), (3, 0)):
            cfg = aim.DenseConfig()
            assert lib.aim_dense_config_init(ctypes.byref(cfg), units, act) == 0
            assert lib.aim_model_add_dense(raw, ctypes.byref(cfg)) == 0
        cc = aim.CompileConfig()
        assert lib.aim_compile_config_init(ctypes.byref(cc)) == 0
        cc.max_batch, cc.seed = 16, 3
        assert lib.aim_model_compile(raw, ctypes.byref(cc)) == 0
        p, n = aim.c_float_p(), ctypes.c_size_t()
        assert lib.aim_model_parameters(raw, ctypes.byref(p), ctypes.byref(n)) == 0
        raw_params = np.array(p[:n.value], dtype=np.float32)
        xc = np.ascontiguousarray(x, dtype=np.float32)
        assert lib.aim_model_forward(raw, 1, xc.ctypes.data_as(aim.c_float_p), xc.size, 10) == 0
        out, count = aim.c_float_p(), ctypes.c_size_t()
        assert lib.aim_model_output(raw, 0, ctypes.byref(out), ctypes.byref(count)) == 0
        assert count.value == 10 * 3
        raw_out = np.array(out[:count.value], dtype=np.float32).reshape(10, 3)
    finally:
        lib.aim_model_free(raw)
    with mlp(seed=3) as m:
        assert np.array_equal(m.parameters(), raw_params)
        m.forward(x, "inference")
        assert np.array_equal(m.output(), raw_out)


@test
def parameters_and_gradients_are_views():
    x, y = data(n=16)
    with mlp() as m:
        p = m.parameters()
        assert p.dtype == np.float32 and p.flags.c_contiguous and not p.flags.owndata
        assert np.shares_memory(p, m.parameters())
        before = m.predict(x[:4])
        saved = p.copy()
        p[:] = 0.0  # writes go straight to the model
        assert np.all(m.predict(x[:4]) == 0.0)
        p[:] = saved
        assert np.array_equal(m.predict(x[:4]), before)
        g = m.gradients()
        m.zero_grad()
        assert not np.any(g)
        m.forward(x)
        m.loss_sparse(y)
        m.backward()
        assert np.any(g)  # the same view sees the new gradients
        m.zero_grad()
        assert not np.any(g)
        # a view keeps the Python model alive until it is dropped
        view = mlp().parameters()
        gc.collect()
        assert np.all(np.isfinite(view))


@test
def explicit_output_grad_matches_kept_gradient():
    x, y = data(n=8)
    with mlp(input_gradient=True) as m:
        m.zero_grad()
        m.forward(x)
        _, g = aim.loss_sparse(m.output(), y, grad=True)
        loss = m.loss_sparse(y)
        m.backward()
        kept = m.gradients().copy()
        dx_kept = m.input_gradient()
        assert dx_kept.shape == (8, 6)
        m.zero_grad()
        m.forward(x)
        m.backward(g)
        assert np.allclose(m.gradients(), kept, atol=1e-7)
        assert np.allclose(m.input_gradient(), dx_kept, atol=1e-7)
        assert abs(loss - aim.loss_sparse(m.output(), y)) < 1e-6
        # 3 rows for a forward of 8: the library sees the array's own count
        before = m.gradients().copy()
        expect_error(Status.ERR_SHAPE_MISMATCH, m.backward, g[:3],
                     contains=("backward: output gradient holds 9 floats; batch 8 of shape (3) needs 24",))
        assert np.array_equal(m.gradients(), before)  # refused before anything was added
        try:
            m.backward(g[:, :2])
        except ValueError as e:
            assert "expected an array of shape (N, 3), got (8, 2)" in str(e), e
        else:
            raise AssertionError("an output_grad of another sample shape was accepted")


@test
def float_losses_and_functions():
    rs = np.random.RandomState(1)
    pred = rs.rand(5, 4).astype(np.float32)
    target = rs.rand(5, 4).astype(np.float32)
    mse, grad = aim.loss(aim.LossKind.MSE, pred, target, grad=True)
    assert abs(mse - np.mean((pred - target) ** 2)) < 1e-6
    assert np.allclose(grad, 2 * (pred - target) / pred.size, atol=1e-7)
    soft = aim.activation_forward("softmax", pred)
    e = np.exp(pred - pred.max(axis=1, keepdims=True))
    assert np.allclose(soft, e / e.sum(axis=1, keepdims=True), atol=1e-6)
    with aim.Model(4) as m:
        m.add_dense(4, "sigmoid")
        m.compile(max_batch=5, seed=9)
        m.forward(pred)
        l1 = m.loss(aim.LossKind.BCE, (target > 0.5).astype(np.float32))
        l2 = aim.loss("bce", m.output(), (target > 0.5).astype(np.float32))
        assert abs(l1 - l2) < 1e-6
    g = np.array([3.0, 4.0], dtype=np.float32)
    assert abs(aim.clip_grad_norm(g, 1.0) - 5.0) < 1e-6 and abs(np.linalg.norm(g) - 1.0) < 1e-5
    # no object, so no message: status and function name only
    e = expect_error(Status.ERR_INVALID_ARGUMENT, aim.loss_sparse, pred, np.array([0, 1, 2, 9, 0]), message=False)
    assert e.function == "aim_loss_sparse" and "aim_loss_sparse" in str(e)


@test
def sgd_step_matches_numpy():
    x, y = data(n=16)
    with mlp() as m, aim.SGD(m, momentum=0.0) as sgd:
        m.zero_grad()
        m.forward(x)
        m.loss_sparse(y)
        m.backward()
        expected = m.parameters() - np.float32(0.1) * m.gradients()
        sgd.step(m, 0.1)
        assert np.allclose(m.parameters(), expected, atol=1e-7)
    params = np.ones(3, dtype=np.float32)
    with aim.SGD(3, weight_decay=0.5) as sgd:
        sgd.step_arrays(params, np.zeros(3), 0.1)
        assert np.allclose(params, 0.95)
    try:
        aim.Adam(3, betta1=0.9)
    except TypeError:
        pass
    else:
        raise AssertionError("a misspelt option was accepted")


@test
def serialize_round_trip_is_bit_identical():
    x, y = data()
    with mlp() as m, aim.Adam(m) as opt:
        for _ in range(3):
            m.zero_grad()
            m.forward(x[:16])
            m.loss_sparse(y[:16])
            m.backward()
            opt.step(m, 1e-2)
        blob = m.serialize()
        assert isinstance(blob, bytes) and len(blob) > m.parameters().nbytes
        m2, none = aim.Model.deserialize(blob)
        with m2:
            assert none is None
            assert m2.layer_count == 3 and m2.output_shape == (3,)
            assert np.array_equal(m2.parameters(), m.parameters())
            assert np.array_equal(m2.predict(x), m.predict(x))
        # with the optimizer: training resumes exactly
        m3, opt3 = aim.Model.deserialize(m.serialize(opt))
        with m3, opt3:
            assert isinstance(opt3, aim.Optimizer) and opt3.steps == 3
            for model, o in ((m, opt), (m3, opt3)):
                model.zero_grad()
                model.forward(x[16:32])
                model.loss_sparse(y[16:32])
                model.backward()
                o.step(model, 1e-2)
            assert np.array_equal(m3.parameters(), m.parameters())
        bad = bytearray(blob)
        bad[len(bad) // 2] ^= 0xFF
        try:
            aim.Model.deserialize(bytes(bad))
        except AimError as e:
            assert e.status in (Status.ERR_CORRUPT_DATA, Status.ERR_VERSION), e
        else:
            raise AssertionError("a corrupted buffer was accepted")
        # No object holds the message: the library writes it into the binding's buffer.
        e = expect_error(Status.ERR_CORRUPT_DATA, aim.Model.deserialize, blob[:10])
        assert e.function == "aim_model_deserialize" and e.message in str(e)


@test
def batch_over_max_batch_is_a_shape_mismatch():
    x, _ = data(n=20)
    with mlp(max_batch=16) as m:
        e = expect_error(Status.ERR_SHAPE_MISMATCH, m.forward, x, contains=("batch",))
        assert "batch" in str(e) and aim.status_str(Status.ERR_SHAPE_MISMATCH) in str(e)
        assert m.last_error() == e.message
        m.forward(x[:16])  # the model still works after the failure


@test
def conv2d_after_rank1_input_names_the_layer():
    with aim.Model(16) as m:
        m.add_dense(4)
        e = expect_error(Status.ERR_SHAPE_MISMATCH, m.add_conv2d, 8, 3, contains=("layer 1", "conv2d"))
        assert "rank" in e.message


@test
def other_errors_surface_as_aim_error():
    x, y = data(n=4)
    m = aim.Model(6)
    m.add_dense(3)
    expect_error(Status.ERR_INVALID_STATE, m.forward, x)      # not compiled
    m.compile(max_batch=4, seed=1)
    expect_error(Status.ERR_INVALID_STATE, m.add_dense, 2)    # already compiled
    m.forward(x, aim.Mode.INFERENCE)
    try:
        m.backward()  # no training forward / no loss
    except AimError as e:
        assert e.status == Status.ERR_INVALID_STATE
    else:
        raise AssertionError("backward without a training forward was accepted")
    m.forward(x)
    expect_error(Status.ERR_SHAPE_MISMATCH, m.loss_sparse, y[:3], contains=("batch",))
    # A const-model function cannot record a message: the error must not
    # show the loss_sparse message still held by the model.
    expect_error(Status.ERR_INVALID_ARGUMENT, m.layer_shape, 7, message=False)
    try:
        m.layer_shape(7)
    except AimError as e:
        assert e.message == "", "stale message %r" % e.message
    try:
        m.forward(np.zeros(7, dtype=np.float32))
    except ValueError:
        pass
    else:
        raise AssertionError("7 floats accepted as samples of 6")
    with aim.Adam(5) as opt:
        expect_error(Status.ERR_SHAPE_MISMATCH, opt.step, m, 1e-3)  # optimizer for another count
    m.close()


@test
def conv_pool_lstm_models_run():
    rs = np.random.RandomState(2)
    with aim.Model((1, 8, 8)) as cnn:
        cnn.add_conv2d(4, 3, padding="same", activation="relu").add_max_pool2d(2)
        cnn.add_conv2d(4, (3, 3), padding=1).add_avg_pool2d(2).add_global_avg_pool2d()
        cnn.add_flatten().add_dense(2)
        assert cnn.layer_shape(0) == (4, 8, 8) and cnn.layer_shape(1) == (4, 4, 4)
        assert cnn.layer_shape(3) == (4, 2, 2) and cnn.layer_shape(4) == (4,)
        cnn.compile(max_batch=3, seed=5)
        x = rs.rand(3, 1, 8, 8).astype(np.float32)
        cnn.forward(x)
        assert cnn.output().shape == (3, 2)
        assert np.allclose(cnn.predict(x), cnn.output(), atol=1e-6)
    with aim.Model((5, 3)) as rnn:
        rnn.add_lstm(4, layers=2, return_sequences=True)
        assert rnn.layer_shape(0) == (5, 4)
        rnn.add_lstm(6).add_dense(2)
        rnn.compile(max_batch=2, seed=5)
        x = rs.rand(2, 5, 3).astype(np.float32)
        rnn.forward(x)
        out = rnn.output()
        assert out.shape == (2, 2) and np.allclose(rnn.predict(x), out, atol=1e-6)
        h, c = rnn.lstm_final_state(1, batch=2, layers=1, hidden=6)
        assert h.shape == (1, 2, 6) and np.any(h) and np.any(c)


@test
def rng_shuffle_is_a_deterministic_permutation():
    with aim.Rng(43) as a, aim.Rng(43) as b:
        p = a.permutation(1000)
        assert p.dtype == np.uint32 and np.array_equal(np.sort(p), np.arange(1000))
        assert np.array_equal(p, b.permutation(1000))
        assert not np.array_equal(p, a.permutation(1000))
        assert 0 <= a.uniform() < 1 and a.below(7) < 7
        a.seed(1)
        b.seed(1)
        assert a.next_u64() == b.next_u64()
    try:
        aim.Rng(1).shuffle(np.arange(5))  # int64, not uint32
    except TypeError:
        pass
    else:
        raise AssertionError("a non-uint32 array was shuffled")


@test
def double_close_and_use_after_close():
    m = mlp()
    m.predict(np.zeros((2, 6), dtype=np.float32))  # creates the internal workspace
    opt = aim.Adam(m)
    ws = aim.Workspace(m, 4)
    rng = aim.Rng(1)
    for obj in (ws, opt, m, rng):
        obj.close()
        obj.close()
    assert m.closed and opt.closed
    for call in (lambda: m.forward(np.zeros((1, 6))), m.parameters, lambda: opt.steps):
        try:
            call()
        except ValueError:
            pass
        else:
            raise AssertionError("a closed object was used")
    m = opt = ws = rng = None  # drop the last references: __del__ runs
    gc.collect()  # __del__ after close() frees nothing twice
    with mlp() as m2:
        pass
    m2.close()
    del m2
    gc.collect()


@test
def array_of_another_shape_is_refused_not_reread():
    """An (8, 10) array given to a 20-feature model is 80 floats, which the
    0.x binding read as 4 samples of 20; now it is refused, by the binding
    (ValueError naming the expected shape) and by the library (its count)."""
    x = np.arange(80, dtype=np.float32).reshape(8, 10)
    with aim.Model(20) as m:
        m.add_dense(3)
        m.compile(max_batch=8, seed=1)
        assert m.input_shape == (20,) and m.input_shape_of(0) == m.layer_shape(aim.model_input(0))
        for call in (m.forward, m.predict, lambda a: m.forward(a, "inference")):
            try:
                call(x)
            except ValueError as e:
                assert str(e) == "expected an array of shape (N, 20), got (8, 10)", str(e)
            else:
                raise AssertionError("an (8, 10) array was accepted by a 20-feature model")
        assert m.last_error() == ""  # refused before any C call
        for bad in (x.reshape(80), x.reshape(4, 20, 1), np.zeros((0, 20), dtype=np.float32)):
            try:
                m.forward(bad)
            except ValueError:
                pass
            else:
                raise AssertionError("an array of shape %s was accepted" % (bad.shape,))
        # The library itself, given the true count (80) and batch (8), refuses too.
        st = aim.lib.aim_model_forward(m.handle, 0, x.ctypes.data_as(aim.c_float_p), x.size, 8)
        assert st == Status.ERR_SHAPE_MISMATCH, st
        assert m.last_error() == "forward: input holds 80 floats; batch 8 of shape (20) needs 160", m.last_error()
        ok = np.zeros((8, 20), dtype=np.float32)
        assert m.forward(ok) == 8 and m.output().shape == (8, 3)
        assert m.predict(ok).shape == (8, 3)


@test
def too_small_output_is_refused():
    x, y = data(n=8)
    with mlp(max_batch=8) as m:
        expected = m.predict(x)
        out = np.empty((8, 3), dtype=np.float32)
        assert m.predict(x, out=out) is out and np.array_equal(out, expected)
        for small in (np.empty((8, 2), dtype=np.float32), np.empty((4, 3), dtype=np.float32),
                      np.empty(23, dtype=np.float32)):
            try:
                m.predict(x, out=small)
            except ValueError as e:
                assert "out: expected an array of shape (8, 3), got %s" % (small.shape,) in str(e), str(e)
            else:
                raise AssertionError("an output of shape %s was accepted for (8, 3)" % (small.shape,))
        try:
            m.predict(x, out=np.empty((8, 3)))  # float64
        except TypeError:
            pass
        else:
            raise AssertionError("a float64 out was accepted")
        # The library with a buffer of 23 floats where 24 are needed: refused,
        # with nothing written (the 24th float is there, as a guard).
        with aim.Workspace(m, 8) as ws:
            xc = np.ascontiguousarray(x, dtype=np.float32)
            buf = np.full(24, -7.0, dtype=np.float32)
            st = aim.lib.aim_model_predict(m.handle, ws.handle, xc.ctypes.data_as(aim.c_float_p), xc.size, 8,
                                           buf.ctypes.data_as(aim.c_float_p), 23)
            assert st == Status.ERR_SHAPE_MISMATCH, st
            assert ws.last_error() == "predict: output has room for 23 floats; batch 8 of shape (3) needs 24", \
                ws.last_error()
            assert np.all(buf == -7.0)
        # Too few targets for a loss: the library's count check.
        m.forward(x)
        expect_error(Status.ERR_SHAPE_MISMATCH, m.loss, "mse", np.zeros((4, 3), dtype=np.float32),
                     contains=("loss: targets", "hold 12 floats; batch 8", "(3) needs 24"))
        expect_error(Status.ERR_SHAPE_MISMATCH, m.loss_sparse, y[:5],
                     contains=("loss_sparse: labels hold 5; the last forward's batch is 8",))
        e = expect_error(Status.ERR_INVALID_ARGUMENT, m.loss_sparse, np.full(8, 3),
                         contains=("loss_sparse: label 3 at position 0 lies outside [0, 3)",))
        assert m.last_error() == e.message


def residual_mlp(seed=4, max_batch=16):
    """6 -> Dense 12 relu -> [Dense 12 relu -> Dense 12] + skip -> relu -> Dense 3."""
    m = aim.Model(6)
    assert m.last_node() == aim.model_input(0)
    skip = m.add_dense(12, "relu").last_node()
    assert skip == 0
    y = m.add_dense(12, "relu").add_dense(12).last_node()
    assert y == 2
    m.add_add([y, skip]).add_activation("relu").add_dense(3)
    m.compile(max_batch=max_batch, seed=seed)
    return m


@test
def residual_mlp_trains_and_matches_numpy():
    x, y = data(n=64)
    with residual_mlp() as m:
        assert m.layer_count == 6 and m.input_count == 1 and m.output_count == 1 and m.output_node(0) == 5
        assert [m.layer_shape(i) for i in range(6)] == [(12,), (12,), (12,), (12,), (12,), (3,)]
        # numpy: h0 = relu(x W0 + b0); r = (relu(h0 W1 + b1)) W2 + b2; out = relu(r + h0) W5 + b5
        p = m.parameters().astype(np.float64)

        def dense(layer, h):
            off, nw, nb = m.layer_parameters(layer)
            w = p[off:off + nw].reshape(m.layer_shape(layer)[0], -1)
            return h @ w.T + p[off + nw:off + nw + nb]

        h0 = np.maximum(dense(0, x.astype(np.float64)), 0)
        r = dense(2, np.maximum(dense(1, h0), 0))
        expected = dense(5, np.maximum(r + h0, 0))
        got = m.predict(x)
        assert np.max(np.abs(got - expected)) < 1e-5, np.max(np.abs(got - expected))
        with aim.Adam(m) as opt:
            first = last = None
            for step in range(80):
                i = (step * 16) % x.shape[0]
                m.zero_grad()
                m.forward(x[i:i + 16])
                last = m.loss_sparse(y[i:i + 16])
                m.backward()
                opt.step(m, 1e-2)
                first = last if first is None else first
            assert np.isfinite(last) and last < 0.5 * first, (first, last)
        # a graph model survives serialization bit for bit
        m2, _ = aim.Model.deserialize(m.serialize())
        with m2:
            assert m2.layer_count == 6 and m2.input_shape == (6,)
            assert np.array_equal(m2.predict(x), m.predict(x))


@test
def graph_errors_name_the_nodes():
    with aim.Model(6) as m:
        a = m.add_dense(4).last_node()
        m.continue_from(aim.model_input(0))
        b = m.add_dense(5).last_node()
        assert m.last_node() == b == 1
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_add, [a, b])    # (4) + (5)
        expect_error(Status.ERR_INVALID_ARGUMENT, m.add_add, [a])      # one node
        expect_error(Status.ERR_INVALID_ARGUMENT, m.continue_from, 9)  # no such node
        m.add_concat([a, b])
        assert m.layer_shape(-1) == (9,)
        m.continue_from(a)
        assert m.last_node() == a


@test
def two_inputs_two_outputs():
    rs = np.random.RandomState(8)
    x1 = rs.rand(8, 6).astype(np.float32)
    x2 = rs.rand(8, 4).astype(np.float32)
    labels = rs.randint(0, 3, size=8).astype(np.int32)
    targets = rs.rand(8, 2).astype(np.float32)
    with aim.Model(6) as m:
        extra = m.add_input(4)
        assert extra == aim.model_input(1) and m.input_count == 2 and m.input_shapes == [(6,), (4,)]
        a = m.add_dense(5, "relu").last_node()
        m.continue_from(extra)
        b = m.add_dense(3, "tanh").last_node()
        joined = m.add_concat([a, b]).last_node()
        logits = m.add_dense(3).last_node()
        m.continue_from(joined)
        regression = m.add_dense(2).last_node()
        m.set_outputs([logits, regression], [1.0, 0.5])
        assert m.output_count == 2 and [m.output_node(k) for k in range(2)] == [logits, regression]
        assert m.output_shapes == [(3,), (2,)]
        m.compile(max_batch=8, seed=2, input_gradient=True)
        try:
            m.forward(x1)
        except ValueError as e:
            assert "2 inputs" in str(e)
        else:
            raise AssertionError("one array accepted by a 2-input model")
        try:
            m.forward([x1, x2[:7]])
        except ValueError as e:
            assert "input 1: expected an array of shape (8, 4), got (7, 4)" in str(e), str(e)
        else:
            raise AssertionError("inputs of different batches accepted")
        m.zero_grad()
        assert m.forward([x1, x2]) == 8
        out0, out1 = m.output(0), m.output(1)
        assert out0.shape == (8, 3) and out1.shape == (8, 2)
        l0 = m.loss_sparse(labels, output=0)
        l1 = m.loss("mse", targets, output=1)
        assert np.isfinite(l0) and abs(l1 - np.mean((out1 - targets) ** 2)) < 1e-5
        expect_error(Status.ERR_SHAPE_MISMATCH, m.backward, out0)  # an output gradient needs one output
        m.backward()
        assert np.any(m.gradients())
        g1, g2 = m.input_gradient(0), m.input_gradient(1)
        assert g1.shape == (8, 6) and g2.shape == (8, 4)
        # predict: one array per output, as the inference forward gives them
        p0, p1 = m.predict([x1, x2])
        m.forward([x1, x2], "inference")
        assert np.array_equal(p0, m.output(0)) and np.array_equal(p1, m.output(1))
        # a graph of two inputs and two outputs survives serialization
        m2, _ = aim.Model.deserialize(m.serialize())
        with m2:
            assert m2.input_count == 2 and m2.output_count == 2
            assert all(np.array_equal(u, v) for u, v in zip(m2.predict([x1, x2]), (p0, p1)))


@test
def loss_weights_scale_the_gradients():
    rs = np.random.RandomState(9)
    x = rs.rand(4, 5).astype(np.float32)
    t0 = rs.rand(4, 2).astype(np.float32)
    t1 = rs.rand(4, 3).astype(np.float32)
    grads = {}
    for weights in ((1.0, 0.0), (1.0, 2.0), (0.0, 1.0)):
        with aim.Model(5) as m:
            trunk = m.add_dense(4, "tanh").last_node()
            o0 = m.add_dense(2).last_node()
            m.continue_from(trunk)
            o1 = m.add_dense(3).last_node()
            m.set_outputs([o0, o1], weights)
            m.compile(max_batch=4, seed=6)
            m.zero_grad()
            m.forward(x)
            m.loss("mse", t0, output=0)
            m.loss("mse", t1, output=1)
            m.backward()
            grads[weights] = m.gradients().astype(np.float64)
    only0, only1 = grads[(1.0, 0.0)], grads[(0.0, 1.0)]
    assert np.allclose(grads[(1.0, 2.0)], only0 + 2.0 * only1, atol=1e-6)


@test
def lstm_state_counts():
    rs = np.random.RandomState(3)
    with aim.Model((5, 3)) as rnn:
        rnn.add_lstm(4, layers=2).add_dense(2)
        rnn.compile(max_batch=2, seed=5)
        x = rs.rand(2, 5, 3).astype(np.float32)
        h0 = rs.rand(2, 2, 4).astype(np.float32)
        c0 = rs.rand(2, 2, 4).astype(np.float32)
        rnn.forward(x)
        zero_state = rnn.output()
        rnn.lstm_set_state(0, h0, c0)
        rnn.forward(x)
        assert not np.allclose(rnn.output(), zero_state)
        h, c = rnn.lstm_final_state(0, batch=2, layers=2, hidden=4)
        assert h.shape == (2, 2, 4) and np.all(np.isfinite(c))
        rnn.lstm_set_state(0, batch=2)  # back to zeros
        rnn.forward(x)
        assert np.array_equal(rnn.output(), zero_state)
        # a state of 1 layer for a 2-layer stack: the library's count check
        e = expect_error(Status.ERR_SHAPE_MISMATCH, rnn.lstm_set_state, 0, h0[:1], c0[:1],
                         contains=("lstm_set_state",))
        assert "8" in e.message and "16" in e.message, e.message
        try:
            rnn.lstm_set_state(0, h0, None)
        except ValueError:
            pass
        else:
            raise AssertionError("h0 without c0 was accepted")


def mnist_like_mlp(seed=11, max_batch=64):
    """784 -> 64 -> 10: at batch 64 big enough for a 2-thread pool to split."""
    m = aim.Model(784)
    m.add_dense(64, "relu").add_dense(10)
    m.compile(max_batch=max_batch, seed=seed)
    return m


def rel_diff(a, b):
    """max |a - b| relative to max |b| (the scale of the values compared)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


@test
def threadpool_training_matches_no_pool():
    rs = np.random.RandomState(5)
    x = rs.rand(4, 64, 784).astype(np.float32)
    y = rs.randint(0, 10, size=(4, 64)).astype(np.int32)
    with aim.ThreadPool(2) as pool:
        assert pool.threads() == 2
        # one model given the pool before compile(), one after: both paths
        pooled_early = aim.Model(784)
        pooled_early.set_threadpool(pool)
        pooled_early.add_dense(64, "relu").add_dense(10)
        pooled_early.compile(max_batch=64, seed=11)
        with mnist_like_mlp() as plain, mnist_like_mlp() as pooled_late, pooled_early:
            pooled_late.set_threadpool(pool)
            assert pooled_late.threadpool is pool and pooled_early.threadpool is pool
            assert plain.threadpool is None
            assert np.array_equal(plain.parameters(), pooled_late.parameters())
            assert np.array_equal(plain.parameters(), pooled_early.parameters())
            models = (plain, pooled_late, pooled_early)
            opts = [aim.SGD(m, momentum=0.9) for m in models]
            for step in range(4):
                losses, grads = [], []
                for m, opt in zip(models, opts):
                    m.zero_grad()
                    assert m.forward(x[step]) == 64
                    losses.append(m.loss_sparse(y[step]))
                    m.backward()
                    grads.append(m.gradients().copy())
                    opt.step(m, 0.05)
                for loss, grad in zip(losses[1:], grads[1:]):
                    assert abs(loss - losses[0]) <= 1e-5 * abs(losses[0]), (step, losses)
                    assert rel_diff(grad, grads[0]) <= 1e-5, (step, rel_diff(grad, grads[0]))
            for m in models[1:]:
                assert rel_diff(m.parameters(), plain.parameters()) <= 1e-5, rel_diff(m.parameters(),
                                                                                     plain.parameters())
            assert losses[0] < 2.5  # it trained on something (ln 10 = 2.30 at the start)
            # the same thread count gives the same bits
            assert np.array_equal(pooled_late.parameters(), pooled_early.parameters())
            # changing the pool discards the training forward
            pooled_late.forward(x[0])
            pooled_late.loss_sparse(y[0])
            pooled_late.set_threadpool(None)
            assert pooled_late.threadpool is None and pool.attached() == [pooled_early]
            expect_error(Status.ERR_INVALID_STATE, pooled_late.backward)
            for opt in opts:
                opt.close()


@test
def threadpool_predict_matches_no_pool():
    x = np.random.RandomState(6).rand(300, 784).astype(np.float32)  # two predict chunks: 256 + 44
    with mnist_like_mlp() as m, aim.ThreadPool(2) as pool:
        expected = m.predict(x)  # creates the internal workspace without a pool
        m.set_threadpool(pool)   # ... which now gets the pool as well
        assert m._workspace.threadpool is pool
        got = m.predict(x)
        assert got.shape == expected.shape
        assert np.allclose(got, expected, rtol=1e-5, atol=1e-6), np.max(np.abs(got - expected))
        # a caller's workspace with the pool, on a model without one
        m.set_threadpool(None)
        assert pool.attached() == []
        with aim.Workspace(m, 128, threadpool=pool) as ws:
            assert ws.threadpool is pool and pool.attached() == [ws]
            assert np.allclose(m.predict_with(ws, x), expected, rtol=1e-5, atol=1e-6)
            ws.set_threadpool(None)
            assert ws.threadpool is None and pool.attached() == []
            assert np.allclose(m.predict_with(ws, x), expected, rtol=1e-5, atol=1e-6)
        # the internal workspace created after set_threadpool() gets the pool too
        with mnist_like_mlp() as m2:
            m2.set_threadpool(pool)
            assert np.allclose(m2.predict(x), expected, rtol=1e-5, atol=1e-6)
            assert m2._workspace.threadpool is pool


@test
def threadpool_sizes_and_errors():
    e = expect_error(Status.ERR_UNSUPPORTED, aim.ThreadPool, 300, message=False)
    assert e.function == "aim_threadpool_create"
    with aim.ThreadPool(1) as one:
        assert one.threads() == 1 and one.last_error() == ""
        with mlp() as m:  # a 1-thread pool never splits: the same bits as no pool
            x, _ = data(n=16)
            before = m.predict(x)
            m.set_threadpool(one)
            assert np.array_equal(m.predict(x), before)
    with aim.ThreadPool(0) as auto:
        assert auto.threads() == min(max(os.sysconf("SC_NPROCESSORS_ONLN"), 1), 256), auto.threads()
        auto.set_min_work(0)  # split every batch with at least one sample per thread
        auto.set_min_work(2 ** 40)
        try:
            auto.set_min_work(-1)
        except ValueError:
            pass
        else:
            raise AssertionError("a negative min_work was accepted")
    with aim.ThreadPool(256) as big:
        assert big.threads() == 256
    try:
        aim.ThreadPool(-1)
    except ValueError:
        pass
    else:
        raise AssertionError("a negative thread count was accepted")
    with aim.ThreadPool(2) as pool:
        with aim.Model(6) as m:
            m.add_dense(3)
            # a workspace needs a compiled model
            m2 = mlp()
            ws = aim.Workspace(m2, 4)
            expect_error(Status.ERR_INVALID_STATE, ws.set_threadpool, pool, m, contains=("compiled",))
            assert ws.threadpool is None and pool.attached() == []
            ws.close()
            m2.close()


@test
def threadpool_close_and_lifetime():
    # double close, use after close
    pool = aim.ThreadPool(2)
    pool.close()
    pool.close()
    assert pool.closed
    for call in (pool.threads, pool.last_error, lambda: mlp().set_threadpool(pool)):
        try:
            call()
        except ValueError:
            pass
        else:
            raise AssertionError("a closed ThreadPool was used")
    del pool
    gc.collect()
    x, y = data(n=16)
    # the model's reference keeps a dropped pool alive while it is attached
    m = mlp()
    m.set_threadpool(aim.ThreadPool(2))
    ref = weakref.ref(m.threadpool)
    gc.collect()
    assert ref() is not None and not ref().closed
    m.forward(x)
    m.loss_sparse(y)
    m.backward()
    m.predict(x)
    m.close()  # drops the last reference: the pool is collected (and freed)
    gc.collect()
    assert ref() is None
    # closing a pool that is still attached detaches its users first
    with mlp() as m:
        pool = aim.ThreadPool(2)
        m.set_threadpool(pool)
        before = m.predict(x)
        ws = aim.Workspace(m, 8, threadpool=pool)
        assert len(pool.attached()) == 3  # m, its predict workspace, ws
        pool.close()
        assert pool.closed and pool.attached() == [] and pool._handle is None
        assert m.threadpool is None and ws.threadpool is None and m._workspace.threadpool is None
        assert np.allclose(m.predict(x), before, rtol=1e-5, atol=1e-6)  # on the calling thread now
        assert np.allclose(m.predict_with(ws, x), before, rtol=1e-5, atol=1e-6)
        m.forward(x)
        m.loss_sparse(y)
        m.backward()
        ws.close()
        ws.close()
    # a workspace whose model is closed cannot be detached in C: the pool
    # waits for it, then goes
    pool = aim.ThreadPool(2)
    m = mlp()
    ws = aim.Workspace(m, 8, threadpool=pool)
    m.close()
    pool.close()
    assert pool.closed and pool.attached() == [ws] and pool._handle is not None
    with mlp() as m3:  # the same architecture: the workspace still serves it
        assert m3.predict_with(ws, x).shape == (16, 3)
    ws.close()
    assert pool.attached() == [] and pool._handle is None
    pool.close()
    # __del__ in any order frees nothing twice
    pool = aim.ThreadPool(2)
    m = mlp()
    m.set_threadpool(pool)
    m.predict(x)
    pool = m = None
    gc.collect()


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print("FAIL %s" % fn.__name__)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print("ok   %s" % fn.__name__)
    gc.collect()
    print("python binding: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
