#!/usr/bin/python3
"""Checks of the Python binding (the aimodel package). Under pytest (`make
test` runs /usr/bin/python3 -m pytest examples/python) each check is one
test, test_case[name]; as a plain script it runs them all and prints
"python binding: N passed, M failed, K skipped", exit code 0 or 1 (a skip is
not a failure).

    make lib && AIMODEL_LIB=build/libaimodel.so.1.2.0 /usr/bin/python3 -m pytest examples/python/test_binding.py
    make lib && AIMODEL_LIB=build/libaimodel.so.1.2.0 /usr/bin/python3 examples/python/test_binding.py

(without AIMODEL_LIB the binding finds build/libaimodel.so.1 of this
repository). `make test` runs it with the library it just built. A test of a
1.1 function the library lacks (a layer not yet implemented, or a 1.0
library) is skipped, naming the function; nothing else is ever skipped.
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


def case(fn):
    """Registers a check (not named test_*: pytest runs them through test_case)."""
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


@case
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


@case
def model_queries_and_shapes():
    with mlp() as m:
        assert m.layer_count == 3 and m.input_size == 6 and m.output_size == 3
        assert [m.layer_shape(i) for i in range(3)] == [(12,), (8,), (3,)]
        assert m.parameters().size == 6 * 12 + 12 + 12 * 8 + 8 + 8 * 3 + 3
        assert m.layer_parameters(1) == (6 * 12 + 12, 12 * 8, 8)
        assert m.memory_size > 0


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
def batch_over_max_batch_is_a_shape_mismatch():
    x, _ = data(n=20)
    with mlp(max_batch=16) as m:
        e = expect_error(Status.ERR_SHAPE_MISMATCH, m.forward, x, contains=("batch",))
        assert "batch" in str(e) and aim.status_str(Status.ERR_SHAPE_MISMATCH) in str(e)
        assert m.last_error() == e.message
        m.forward(x[:16])  # the model still works after the failure


@case
def conv2d_after_rank1_input_names_the_layer():
    with aim.Model(16) as m:
        m.add_dense(4)
        e = expect_error(Status.ERR_SHAPE_MISMATCH, m.add_conv2d, 8, 3, contains=("layer 1", "conv2d"))
        assert "rank" in e.message


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


@case
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


# ---------------------------------------------------------------------------
# 1.1: the new layers, int32 inputs, buffers, the random stream, RMSprop


class Skip(Exception):
    """A test that cannot run on this library (a 1.1 function it lacks)."""


def needs(*names):
    """Skips the test unless the loaded library has every C function named."""
    lacking = [name for name in names if not hasattr(aim.lib, name)]
    if lacking:
        raise Skip("libaimodel %s has no %s (a 1.0 library, or a 1.1 build without it yet)"
                   % (aim.version(), ", ".join(lacking)))


def train_step(m, x, loss, opt, lr=1e-2):
    """One training step; returns the loss. `loss` is ("sparse", labels) or ("mse", targets)."""
    m.zero_grad()
    m.forward(x)
    value = m.loss_sparse(loss[1]) if loss[0] == "sparse" else m.loss("mse", loss[1])
    m.backward()
    assert np.any(m.gradients()), "an all-zero gradient"
    opt.step(m, lr)
    return value


def builds_trains_predicts(m, x, loss, seed=3, max_batch=8):
    """Compiles `m`, trains it a step (parameters change), and checks that
    predict() gives the bits of forward(INFERENCE). Returns the prediction."""
    m.compile(max_batch=max_batch, seed=seed)
    with aim.Adam(m) as opt:
        before = m.parameters().copy()
        first = train_step(m, x, loss, opt)
        assert np.isfinite(first)
        assert not np.array_equal(m.parameters(), before), "a training step changed no parameter"
    got = m.predict(x)
    batch = (x[0] if isinstance(x, list) else x).shape[0]
    assert got.shape == (batch,) + m.output_shape and np.all(np.isfinite(got))
    m.forward(x, aim.Mode.INFERENCE)
    assert np.array_equal(got, m.output()), np.max(np.abs(got - m.output()))
    return got


def numpy_batch_norm(x, gamma, beta, eps):
    """Training batch norm over axis 1 of (N, C, ...) in float64, and the
    batch's mean and unbiased variance per channel."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    count = x.size // x.shape[1]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    return y, mean, var * count / (count - 1)


@case
def missing_functions_are_absent_and_refused():
    names = aim.missing_functions()
    assert names == sorted(names)
    for name in names:
        assert not hasattr(aim.lib, name), name
        assert name in aim._PROTOTYPES_1_1, name  # every 1.0 function is required
    # a function the library lacks: NotImplementedError naming it, before any C call
    saved = aim._missing
    aim._missing = saved | {"aim_model_add_dropout"}
    try:
        with aim.Model(4) as m:
            try:
                m.add_dropout(0.5)
            except NotImplementedError as e:
                assert "aim_model_add_dropout" in str(e) and aim.version() in str(e), str(e)
            else:
                raise AssertionError("a function the library lacks was called")
            assert m.layer_count == 0
    finally:
        aim._missing = saved


@case
def structures_match_the_c_sizes():
    """Each Structure's size on this ABI, from the C fields in aimodel.h
    (size_t 8, enums and int32_t 4, padding to 8)."""
    sizes = {aim.RnnConfig: 8 + 8 + 4 + 4 + 4 + 4, aim.BatchNormConfig: 12, aim.LayerNormConfig: 16,
             aim.EmbeddingConfig: 8 + 8 + 8 + 8 + 8, aim.Conv1dConfig: 8 * 3 + 8 + 8 * 4 + 4 * 4,
             aim.Pool1dConfig: 24, aim.RmspropConfig: 24}
    if ctypes.sizeof(ctypes.c_size_t) == 8:
        for struct, size in sizes.items():
            assert ctypes.sizeof(struct) == size, (struct.__name__, ctypes.sizeof(struct), size)
    # the defaults the C initializers fill agree with the binding's keyword defaults
    for struct, init, args, expected in (
            (aim.BatchNormConfig, "aim_batch_norm_config_init", (), {"momentum": 0.1, "eps": 1e-5, "affine": 1}),
            (aim.LayerNormConfig, "aim_layer_norm_config_init", (),
             {"normalized_dims": 1, "eps": 1e-5, "elementwise_affine": 1}),
            (aim.RnnConfig, "aim_rnn_config_init", (4, 2),
             {"hidden": 4, "layers": 2, "return_sequences": 0, "bidirectional": 0, "init": aim.Init.PYTORCH}),
            (aim.EmbeddingConfig, "aim_embedding_config_init", (7, 3),
             {"num_embeddings": 7, "embedding_dim": 3, "has_padding": 0, "init": aim.Init.PYTORCH}),
            (aim.Conv1dConfig, "aim_conv1d_config_init", (5, 3, 1),
             {"filters": 5, "kernel": 3, "stride": 1, "padding": aim.Padding.VALID, "dilation": 1, "groups": 1,
              "activation": aim.Activation.RELU, "use_bias": 1, "init": aim.Init.GLOROT_UNIFORM}),
            (aim.Pool1dConfig, "aim_pool1d_config_init", (3,), {"kernel": 3, "stride": 3, "pad": 0}),
            (aim.RmspropConfig, "aim_rmsprop_config_init", (),
             {"alpha": 0.99, "epsilon": 1e-8, "momentum": 0.0, "centered": 0, "weight_decay": 0.0,
              "check_finite": 0})):
        if not hasattr(aim.lib, init):
            continue
        cfg = struct()
        assert getattr(aim.lib, init)(ctypes.byref(cfg), *args) == Status.OK, init
        for field, value in expected.items():
            got = getattr(cfg, field)
            assert abs(got - value) <= 1e-6 * abs(value), (init, field, got, value)


@case
def batch_norm_trains_and_keeps_running_statistics():
    needs("aim_model_add_batch_norm")
    rs = np.random.RandomState(20)
    x = (rs.randn(8, 6) * 2 + 1).astype(np.float32)
    y = rs.randint(0, 3, size=8).astype(np.int32)
    m = aim.Model(6)
    m.add_dense(5).add_batch_norm(momentum=0.2, eps=1e-3).add_activation("relu").add_dense(3)
    with m:
        assert m.layer_shape(1) == (5,)
        builds_trains_predicts(m, x, ("sparse", y))
        assert m.buffers().size == 10 and m.layer_buffers(1) == (0, 10)
        assert m.layer_buffers(0) == (0, 0) and m.layer_buffers(3) == (10, 0)
        # the batch statistics of a training forward, against numpy
        params = m.parameters().astype(np.float64)
        off, nw, nb = m.layer_parameters(0)
        h = x.astype(np.float64) @ params[off:off + nw].reshape(5, 6).T + params[off + nw:off + nw + nb]
        off, nw, nb = m.layer_parameters(1)
        assert nw + nb == 10  # gamma [5] then beta [5]
        gamma, beta = params[off:off + 5], params[off + 5:off + 10]
        buffers = m.buffers()
        assert buffers.dtype == np.float32 and not buffers.flags.owndata and np.shares_memory(buffers, m.buffers())
        before = buffers.copy()
        m.forward(x)
        expected, mean, unbiased = numpy_batch_norm(h, gamma, beta, 1e-3)
        # r = (1 - momentum) r + momentum * batch statistic
        assert np.allclose(buffers[:5], 0.8 * before[:5] + 0.2 * mean, atol=1e-5), (buffers[:5], mean)
        assert np.allclose(buffers[5:], 0.8 * before[5:] + 0.2 * unbiased, rtol=1e-4), (buffers[5:], unbiased)
        # predict and an inference forward read the running statistics and leave them
        after = buffers.copy()
        m.predict(x)
        m.forward(x, "inference")
        assert np.array_equal(buffers, after)
        # an inference output uses them: y = (h - r_mean) / sqrt(r_var + eps) * gamma + beta
        m2 = aim.Model(6)
        m2.add_dense(5).add_batch_norm(momentum=0.2, eps=1e-3)
        with m2:
            m2.compile(max_batch=8, seed=1)
            p2 = m2.parameters().astype(np.float64)
            h2 = x.astype(np.float64) @ p2[:30].reshape(5, 6).T + p2[30:35]
            m2.buffers()[:] = np.arange(10, dtype=np.float32) * 0.25 + 0.5  # writes go to the model
            r_mean, r_var = m2.buffers()[:5].astype(np.float64), m2.buffers()[5:].astype(np.float64)
            inference = (h2 - r_mean) / np.sqrt(r_var + 1e-3)  # gamma 1, beta 0 at init
            assert np.allclose(m2.predict(x), inference, atol=1e-5), np.max(np.abs(m2.predict(x) - inference))
            m2.forward(x)
            train_out, _, _ = numpy_batch_norm(h2, np.ones(5), np.zeros(5), 1e-3)
            assert np.allclose(m2.output(), train_out, atol=1e-4)
        # one value per channel in training: refused, as in PyTorch
        expect_error(Status.ERR_INVALID_ARGUMENT, m.forward, x[:1])
    # over the channels of (C, L) and (C, H, W) samples, without affine parameters
    for shape in ((3, 7), (2, 4, 4)):
        with aim.Model(shape) as m:
            m.add_batch_norm(affine=False).add_flatten().add_dense(2)
            xs = rs.randn(4, *shape).astype(np.float32)
            builds_trains_predicts(m, xs, ("mse", rs.rand(4, 2).astype(np.float32)), max_batch=4)
            assert m.layer_parameters(0)[1:] == (0, 0) and m.buffers().size == 2 * shape[0]
    with aim.Model(6) as m:
        expect_error(Status.ERR_INVALID_ARGUMENT, m.add_batch_norm, momentum=1.5, contains=("momentum",))
        expect_error(Status.ERR_INVALID_ARGUMENT, m.add_batch_norm, eps=0.0, contains=("eps",))
        assert m.layer_count == 0


@case
def serialize_keeps_buffers_and_dtypes():
    needs("aim_model_add_batch_norm", "aim_model_add_embedding")
    rs = np.random.RandomState(21)
    ids = rs.randint(0, 12, size=(8, 5)).astype(np.int32)
    y = rs.randint(0, 3, size=8).astype(np.int32)
    m = aim.Model(5, dtype="int32")
    m.add_embedding(12, 4).add_flatten().add_dense(6).add_batch_norm().add_dense(3)
    with m:
        m.compile(max_batch=8, seed=4)
        initial = np.concatenate([np.zeros(6), np.ones(6)]).astype(np.float32)  # running mean 0, variance 1
        assert np.array_equal(m.buffers(), initial)
        with aim.Adam(m) as opt:
            for _ in range(3):
                train_step(m, ids, ("sparse", y), opt)
            assert not np.array_equal(m.buffers(), initial)
            m2, opt2 = aim.Model.deserialize(m.serialize(opt))
            with m2, opt2:
                assert m2.input_dtype(0) == aim.Dtype.INT32 and m2.input_dtypes == [aim.Dtype.INT32]
                assert np.array_equal(m2.buffers(), m.buffers()) and m2.buffers().size == 12
                assert m2.layer_buffers(3) == m.layer_buffers(3) == (0, 12)
                assert np.array_equal(m2.predict(ids), m.predict(ids))
                try:
                    m2.predict(ids.astype(np.float32))  # the deserialized model knows it reads ids
                except TypeError as e:
                    assert "ids must be integers" in str(e), str(e)
                else:
                    raise AssertionError("a float array fed a deserialized model's id input")
                # training resumes exactly: parameters and running statistics
                for model, o in ((m, opt), (m2, opt2)):
                    train_step(model, ids, ("sparse", y), o)
                assert np.array_equal(m2.parameters(), m.parameters())
                assert np.array_equal(m2.buffers(), m.buffers())


@case
def dropout_masks_follow_the_random_stream():
    needs("aim_model_add_dropout")
    rs = np.random.RandomState(22)
    x = (rs.rand(16, 50) + 0.5).astype(np.float32)  # no zeros of its own
    with aim.Model(50) as m:
        m.add_dropout(0.25)
        m.compile(max_batch=16, seed=5, input_gradient=True)
        assert m.parameters().size == 0 and m.buffers().size == 0
        # identity in inference, bit for bit
        assert np.array_equal(m.predict(x), x)
        m.forward(x, "inference")
        assert np.array_equal(m.output(), x)
        # training: each element zeroed or scaled by 1 / (1 - p)
        m.set_random_seed(7)
        m.forward(x)
        a = m.output()
        kept = a != 0
        assert np.allclose(a[kept], x[kept] / 0.75, rtol=1e-6)
        assert 0.15 < 1 - kept.mean() < 0.35, 1 - kept.mean()
        # the backward passes the gradient through the same mask: dx = dy * mask
        dy = rs.rand(16, 50).astype(np.float32)
        m.backward(dy)
        assert np.allclose(m.input_gradient(), dy * (a / x), rtol=1e-5)
        m.forward(x)
        b = m.output()
        assert not np.array_equal(a, b)  # the stream advanced
        m.set_random_seed(7)
        m.forward(x)
        assert np.array_equal(m.output(), a)  # the same seed, the same masks
        m.set_random_seed(8)
        m.forward(x)
        assert not np.array_equal(m.output(), a)
        # masks are drawn per sample: the first 4 samples of a batch of 16
        # get the masks of a batch of 4
        m.set_random_seed(7)
        m.forward(x[:4])
        assert np.array_equal(m.output(), a[:4])
    with aim.Model(6) as m:
        for p in (1.0, -0.1, float("nan")):
            expect_error(Status.ERR_INVALID_ARGUMENT, m.add_dropout, p)
        assert m.layer_count == 0
    # in a model: builds, trains, predicts; a serialized model resumes the stream
    x6, y6 = data(n=8)
    m = aim.Model(6)
    m.add_dense(16, "relu").add_dropout(0.5).add_dense(3)
    with m:
        builds_trains_predicts(m, x6, ("sparse", y6))
        m2, _ = aim.Model.deserialize(m.serialize())
        with m2:
            m.forward(x6)
            m2.forward(x6)
            assert np.array_equal(m.output(), m2.output())


def numpy_layer_norm(x, dims, eps):
    axes = tuple(range(x.ndim - dims, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


@case
def layer_norm_normalizes_the_trailing_axes():
    needs("aim_model_add_layer_norm")
    rs = np.random.RandomState(23)
    x = (rs.randn(4, 3, 6) * 3 + 2).astype(np.float32)
    for dims, affine in ((1, True), (2, True), (2, False)):
        with aim.Model((3, 6)) as m:
            m.add_layer_norm(normalized_dims=dims, eps=1e-3, elementwise_affine=affine)
            m.compile(max_batch=4, seed=1)
            n = 6 if dims == 1 else 18
            assert m.parameters().size == (2 * n if affine else 0)
            expected = numpy_layer_norm(x.astype(np.float64), dims, 1e-3)  # gamma 1, beta 0 at init
            assert np.allclose(m.predict(x), expected, atol=1e-5), np.max(np.abs(m.predict(x) - expected))
    m = aim.Model((3, 6))
    m.add_layer_norm(2).add_flatten().add_dense(2)
    with m:
        builds_trains_predicts(m, x, ("mse", rs.rand(4, 2).astype(np.float32)), max_batch=4)
    with aim.Model((3, 6)) as m:
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_layer_norm, 3, contains=("normalized_dims",))
        expect_error(Status.ERR_INVALID_ARGUMENT, m.add_layer_norm, 1, eps=-1.0, contains=("eps",))
        assert m.layer_count == 0


@case
def embedding_reads_int32_ids():
    needs("aim_model_add_embedding")
    rs = np.random.RandomState(24)
    ids = rs.randint(0, 10, size=(6, 5))  # int64: converted to int32
    with aim.Model(5) as m:
        assert m.input_dtype(0) == aim.Dtype.FLOAT32
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_embedding, 10, 3)  # a float input
        m.set_input_dtype(0, np.int32)
        assert m.input_dtype(0) == aim.Dtype.INT32
        m.add_embedding(10, 3, padding_idx=0)
        expect_error(Status.ERR_INVALID_STATE, m.set_input_dtype, 0, "float32")  # a layer reads it
        assert m.layer_shape(0) == (5, 3)
        m.compile(max_batch=6, seed=2)
        table = m.parameters().reshape(10, 3)
        assert not np.any(table[0]) and np.all(np.any(table[1:], axis=1))  # the padding row starts at zero
        assert np.array_equal(m.predict(ids), table[ids])  # y[p] = W[ids[p]]
        # a float array for an id input: refused before any C call, whatever it holds
        stale = m.last_error()  # set_input_dtype's refusal above; a C call would replace it
        assert stale
        for bad in (ids.astype(np.float32), ids.astype(np.float64), ids > 3):
            for call in (m.forward, m.predict):
                try:
                    call(bad)
                except TypeError as e:
                    assert str(e) == "input 0: ids must be integers, got %s" % bad.dtype, str(e)
                else:
                    raise AssertionError("a %s array was fed an id input" % bad.dtype)
        assert m.last_error() == stale
        try:
            m.forward(ids[:, :4])
        except ValueError as e:
            assert "input 0: expected an array of shape (N, 5), got (6, 4)" in str(e), str(e)
        else:
            raise AssertionError("ids of another shape were accepted")
        try:
            m.forward(ids + (1 << 32))  # would wrap to the same ids as int32
        except ValueError as e:
            assert "int32" in str(e), str(e)
        else:
            raise AssertionError("ids over int32 were accepted")
        # an id outside the table: the library's refusal names its position
        bad = ids.astype(np.int32)
        bad[1, 3] = 10
        e = expect_error(Status.ERR_INVALID_ARGUMENT, m.forward, bad, contains=("id 10", "position 8"))
        assert "[0, 10)" in e.message and e.function == "aim_model_forward_ids", e
        bad[1, 3] = -1
        expect_error(Status.ERR_INVALID_ARGUMENT, m.forward, bad, "inference", contains=("id -1", "position 8"))
        try:
            m.predict(bad)
        except AimError as e:
            assert e.status == Status.ERR_INVALID_ARGUMENT and "position 8" in e.message, e
            assert e.function == "aim_model_predict_ids"
        else:
            raise AssertionError("an id outside the table was predicted")
        # the C function itself refuses a float input and an ids call on it
        st = aim.lib.aim_model_forward(m.handle, 1, ids.astype(np.float32).ctypes.data_as(aim.c_float_p), 30, 6)
        assert st == Status.ERR_INVALID_ARGUMENT and "int32 ids" in m.last_error(), m.last_error()
    # in a model: builds, trains (padding row gets no gradient), predicts
    y = rs.randint(0, 3, size=6).astype(np.int32)
    m = aim.Model(5, dtype="int32")
    m.add_embedding(10, 4, padding_idx=0).add_flatten().add_dense(3)
    with m:
        ids = rs.randint(1, 7, size=(6, 5))  # rows 7 to 9 unused
        ids[:, 0] = 0
        builds_trains_predicts(m, ids, ("sparse", y), max_batch=6)
        m.zero_grad()
        m.forward(ids)
        m.loss_sparse(y)
        m.backward()
        g = m.gradients()[:40].reshape(10, 4)
        used = set(ids.ravel().tolist()) - {0}
        assert not np.any(g[0]) and all(np.any(g[i]) for i in used)
        unused = sorted(set(range(1, 10)) - used)
        assert unused and all(not np.any(g[i]) for i in unused)  # the backward adds into the rows used only
    with aim.Model(5, dtype="int32") as m:
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_dense, 3, contains=("int32 ids",))
        expect_error(Status.ERR_INVALID_ARGUMENT, m.add_embedding, 10, 3, padding_idx=10, contains=("padding_idx",))
        try:
            m.add_embedding(10, 3, padding_idx=-11)
        except ValueError as e:
            assert "[-10, 10)" in str(e), str(e)
        else:
            raise AssertionError("padding_idx -11 was accepted for 10 rows")
        assert m.layer_count == 0
        m.add_embedding(10, 3, padding_idx=-1)  # PyTorch's negative index: row 9
        m.compile(max_batch=2, seed=3)
        table = m.parameters().reshape(10, 3)
        assert not np.any(table[9]) and np.all(np.any(table[:9], axis=1))
        try:
            m.set_input_dtype(0, "int64")
        except ValueError:
            pass
        else:
            raise AssertionError("an unknown dtype was accepted")
    with aim.Model(5, dtype="int32") as m:
        expect_error(Status.ERR_INVALID_ARGUMENT, m.set_input_dtype, 3, "int32", contains=("input 3",))


@case
def ids_and_floats_inputs_use_the_typed_calls():
    needs("aim_model_add_embedding")
    rs = np.random.RandomState(25)
    ids = rs.randint(0, 8, size=(4, 3)).astype(np.int32)
    feats = rs.rand(4, 2).astype(np.float32)
    with aim.Model(2) as m:
        words = m.add_input(3, dtype="int32")
        assert m.input_dtypes == [aim.Dtype.FLOAT32, aim.Dtype.INT32]
        a = m.add_dense(4, "tanh").last_node()
        m.continue_from(words)
        b = m.add_embedding(8, 2).add_flatten().last_node()
        m.add_concat([a, b]).add_dense(3)
        builds_trains_predicts(m, [feats, ids], ("sparse", np.array([0, 1, 2, 0], dtype=np.int32)), max_batch=4)
        try:
            m.forward([feats, ids.astype(np.float32)])
        except TypeError as e:
            assert "input 1: ids must be integers" in str(e), str(e)
        else:
            raise AssertionError("a float array fed input 1 (ids)")
        bad = ids.copy()
        bad[2, 1] = 99
        for call, function in ((m.forward, "aim_model_forward_typed"), (m.predict, "aim_model_predict_typed")):
            e = expect_error(Status.ERR_INVALID_ARGUMENT, call, [feats, bad], message=False)
            assert e.function == function and "position 7" in e.message, e
        # a deserialized model feeds each input in its type
        m2, _ = aim.Model.deserialize(m.serialize())
        with m2:
            assert m2.input_dtypes == m.input_dtypes
            assert np.array_equal(m2.predict([feats, ids]), m.predict([feats, ids]))


def numpy_gru(x, weights, hidden, h0=None):
    """One GRU layer, PyTorch's equations and layout, in float64:
    r = s(W_ir x + b_ir + W_hr h + b_hr), z = s(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h."""
    n_in = x.shape[2]
    w_ih = weights[:3 * hidden * n_in].reshape(3 * hidden, n_in)
    at = 3 * hidden * n_in
    w_hh = weights[at:at + 3 * hidden * hidden].reshape(3 * hidden, hidden)
    at += 3 * hidden * hidden
    b_ih, b_hh = weights[at:at + 3 * hidden], weights[at + 3 * hidden:at + 6 * hidden]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h = np.zeros((x.shape[0], hidden)) if h0 is None else h0
    out = []
    for t in range(x.shape[1]):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = sig(gi[:, :hidden] + gh[:, :hidden])
        z = sig(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1), h


@case
def gru_matches_numpy_and_keeps_states():
    needs("aim_model_add_gru", "aim_model_gru_set_state")
    rs = np.random.RandomState(26)
    x = rs.randn(3, 5, 4).astype(np.float32)
    with aim.Model((5, 4)) as m:
        m.add_gru(6, return_sequences=True)
        m.compile(max_batch=3, seed=8)
        assert m.layer_shape(0) == (5, 6) and m.parameters().size == 3 * 6 * (4 + 6 + 2)
        seq, last = numpy_gru(x.astype(np.float64), m.parameters().astype(np.float64), 6)
        assert np.allclose(m.predict(x), seq, atol=1e-5), np.max(np.abs(m.predict(x) - seq))
        h0 = rs.randn(1, 3, 6).astype(np.float32)
        m.gru_set_state(0, h0)
        m.forward(x)
        seq0, last0 = numpy_gru(x.astype(np.float64), m.parameters().astype(np.float64), 6, h0[0].astype(np.float64))
        assert np.allclose(m.output(), seq0, atol=1e-5)
        h_n = m.gru_final_state(0, batch=3, layers=1, hidden=6)
        assert h_n.shape == (1, 3, 6) and np.allclose(h_n[0], last0, atol=1e-5)
        m.gru_set_state(0, batch=3)  # back to zeros
        m.forward(x)
        assert np.allclose(m.output(), seq, atol=1e-5)
        expect_error(Status.ERR_SHAPE_MISMATCH, m.gru_set_state, 0, np.zeros((2, 3, 6), dtype=np.float32))
        try:
            m.gru_set_state(0, np.zeros((3, 6), dtype=np.float32))
        except ValueError:
            pass
        else:
            raise AssertionError("a rank-2 h0 was accepted")
    # stacked and bidirectional: shapes, training, predict
    y = rs.randint(0, 2, size=3).astype(np.int32)
    m = aim.Model((5, 4))
    m.add_gru(4, layers=2, return_sequences=True).add_gru(3, bidirectional=True).add_dense(2)
    with m:
        assert m.layer_shape(0) == (5, 4) and m.layer_shape(1) == (6,)
        builds_trains_predicts(m, x, ("sparse", y), max_batch=3)
        m.forward(x)
        h = m.gru_final_state(1, batch=3, layers=1, hidden=3, bidirectional=True)
        assert h.shape == (2, 3, 3) and np.any(h[0]) and np.any(h[1])
        # the top layer's final states [forward after the last step, reverse after the first] feed the head
        off, nw, nb = m.layer_parameters(2)
        head = m.parameters()[off:off + nw].reshape(2, 6).astype(np.float64)
        logits = np.concatenate([h[0], h[1]], axis=1) @ head.T + m.parameters()[off + nw:off + nw + nb]
        assert np.allclose(m.output(), logits, atol=1e-5)
    with aim.Model(4) as m:
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_gru, 3, contains=("rank",))
        expect_error(Status.ERR_INVALID_ARGUMENT, aim.Model((5, 4)).add_gru, 3, layers=17)


@case
def bidirectional_lstm():
    needs("aim_model_add_rnn")
    rs = np.random.RandomState(27)
    x = rs.randn(2, 6, 3).astype(np.float32)
    y = rs.rand(2, 2).astype(np.float32)
    m = aim.Model((6, 3))
    m.add_lstm(4, return_sequences=True, bidirectional=True).add_lstm(5, bidirectional=True).add_dense(2)
    with m:
        assert m.layer_shape(0) == (6, 8) and m.layer_shape(1) == (10,)
        builds_trains_predicts(m, x, ("mse", y), max_batch=2)
        off, nw, nb = m.layer_parameters(0)
        assert nw == 2 * 4 * 4 * (3 + 4 + 2) and nb == 0  # two directions of W_ih, W_hh, b_ih, b_hh
        m.forward(x)
        h, c = m.lstm_final_state(1, batch=2, layers=1, hidden=5, bidirectional=True)
        assert h.shape == c.shape == (2, 2, 5) and np.any(h[1]) and np.any(c[1])
    # a unidirectional stack is still aim_model_add_lstm's
    with aim.Model((6, 3)) as m:
        m.add_lstm(4, bidirectional=False)
        assert m.layer_shape(0) == (4,)


def numpy_conv1d(x, w, b, stride=1, pad=(0, 0), dilation=1):
    """(N, C, L) * (O, C, K) cross-correlation, PyTorch nn.Conv1d, in float64."""
    x = np.pad(x, ((0, 0), (0, 0), pad))
    o, _, k = w.shape
    span = dilation * (k - 1) + 1
    length = (x.shape[2] - span) // stride + 1
    y = np.zeros((x.shape[0], o, length))
    for t in range(length):
        window = x[:, :, t * stride:t * stride + span:dilation]  # (N, C, K)
        y[:, :, t] = np.einsum("nck,ock->no", window, w) + b
    return y


@case
def conv1d_and_1d_pools_match_numpy():
    needs("aim_model_add_conv1d", "aim_model_add_max_pool1d", "aim_model_add_avg_pool1d")
    rs = np.random.RandomState(28)
    x = rs.randn(3, 2, 11).astype(np.float32)
    for kw, pad in (({"padding": "valid"}, (0, 0)), ({"padding": (2, 1), "stride": 2}, (2, 1)),
                    ({"padding": 1, "dilation": 2}, (1, 1))):
        with aim.Model((2, 11)) as m:
            m.add_conv1d(4, 3, **kw)
            m.compile(max_batch=3, seed=9)
            p = m.parameters().astype(np.float64)
            expected = numpy_conv1d(x.astype(np.float64), p[:24].reshape(4, 2, 3), p[24:28], kw.get("stride", 1), pad,
                                    kw.get("dilation", 1))
            assert m.layer_shape(0) == expected.shape[1:], (kw, m.layer_shape(0), expected.shape)
            assert np.allclose(m.predict(x), expected, atol=1e-5), kw
    with aim.Model((2, 11)) as m:
        m.add_conv1d(4, 3, padding="same")
        assert m.layer_shape(0) == (4, 11)
    with aim.Model((2, 11)) as m:
        m.add_conv1d(4, 3, groups=2, use_bias=False)
        m.compile(max_batch=3, seed=1)
        assert m.parameters().size == 4 * 1 * 3
    xd = x.astype(np.float64)
    for add, reduce in (("add_max_pool1d", np.max), ("add_avg_pool1d", np.mean)):
        with aim.Model((2, 11)) as m:
            getattr(m, add)(3)  # stride defaults to the window: 3 windows, the last 2 columns dropped
            m.compile(max_batch=3, seed=1)
            expected = reduce(xd[:, :, :9].reshape(3, 2, 3, 3), axis=3)
            assert m.layer_shape(0) == (2, 3) and np.allclose(m.predict(x), expected, atol=1e-6), add
        with aim.Model((2, 11)) as m:
            getattr(m, add)(3, stride=2, padding=1)
            assert m.layer_shape(0) == (2, 6), m.layer_shape(0)
    with aim.Model((2, 11)) as m:
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_max_pool1d, 3, padding=2, contains=("padding 2",))
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_conv1d, 3, 3, groups=2, contains=("groups 2",))
        assert m.layer_count == 0
    with aim.Model(11) as m:
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_conv1d, 3, 3, contains=("rank",))
    # a 1-D CNN: builds, trains, predicts
    y = rs.randint(0, 3, size=3).astype(np.int32)
    m = aim.Model((2, 11))
    m.add_conv1d(4, 3, padding="same", activation="relu").add_max_pool1d(2).add_conv1d(4, 3).add_avg_pool1d(2)
    m.add_flatten().add_dense(3)
    with m:
        builds_trains_predicts(m, x, ("sparse", y), max_batch=3)


@case
def global_1d_pools():
    needs("aim_model_add_global_avg_pool1d", "aim_model_add_global_max_pool1d")
    rs = np.random.RandomState(29)
    x = rs.randn(4, 3, 7).astype(np.float32)
    for add, reduce in (("add_global_avg_pool1d", np.mean), ("add_global_max_pool1d", np.max)):
        with aim.Model((3, 7)) as m:
            getattr(m, add)()
            assert m.layer_shape(0) == (3,)
            m.compile(max_batch=4, seed=1)
            assert np.allclose(m.predict(x), reduce(x.astype(np.float64), axis=2), atol=1e-6), add
        with aim.Model(7) as m:
            expect_error(Status.ERR_SHAPE_MISMATCH, getattr(m, add))
    y = rs.randint(0, 2, size=4).astype(np.int32)
    for add in ("add_global_avg_pool1d", "add_global_max_pool1d"):
        m = aim.Model((3, 7))
        getattr(m.add_conv1d(5, 3, activation="relu"), add)().add_dense(2)
        with m:
            builds_trains_predicts(m, x, ("sparse", y), max_batch=4)


@case
def batch_norm_and_dropout_give_the_same_bits_on_a_threadpool():
    """Batch norm's statistics are the whole batch's and dropout draws per
    sample, so a 2-thread pool that always splits gives the bits of no pool
    (models of these layers only: no GEMM whose rounding depends on the slice)."""
    needs("aim_model_add_batch_norm", "aim_model_add_dropout")
    x = np.random.RandomState(31).randn(8, 3, 7).astype(np.float32)
    runs = []
    with aim.ThreadPool(2) as pool:
        pool.set_min_work(0)
        for use_pool in (False, True):
            with aim.Model((3, 7)) as m:
                m.add_batch_norm().add_dropout(0.3)
                if use_pool:
                    m.set_threadpool(pool)
                m.compile(max_batch=8, seed=12)
                m.forward(x)
                out = m.output()
                m.backward(np.ones_like(out))
                runs.append((out, m.buffers().copy(), m.gradients().copy(), m.predict(x)))
    for plain, pooled in zip(*runs):
        assert np.array_equal(plain, pooled)
    assert np.any(runs[0][0] == 0) and np.any(runs[0][2])


@case
def rmsprop_steps_match_numpy():
    needs("aim_rmsprop_create")
    rs = np.random.RandomState(30)
    params = rs.randn(7).astype(np.float32)
    grads = [rs.randn(7).astype(np.float32) for _ in range(3)]
    for options in ({}, {"momentum": 0.9}, {"centered": True, "weight_decay": 0.1, "alpha": 0.9}):
        p = params.copy()
        alpha, eps = options.get("alpha", 0.99), 1e-8
        momentum, wd = options.get("momentum", 0.0), options.get("weight_decay", 0.0)
        ref = params.astype(np.float64)
        v = np.zeros(7)
        gbar = np.zeros(7)
        buf = np.zeros(7)
        with aim.RMSprop(7, **options) as opt:
            for g in grads:
                opt.step_arrays(p, g, 0.01)
                gd = g.astype(np.float64) + wd * ref
                v = alpha * v + (1 - alpha) * gd * gd
                denom = v
                if options.get("centered"):
                    gbar = alpha * gbar + (1 - alpha) * gd
                    denom = v - gbar * gbar
                denom = np.sqrt(denom) + eps
                if momentum:
                    buf = momentum * buf + gd / denom
                    ref = ref - 0.01 * buf
                else:
                    ref = ref - 0.01 * gd / denom
            assert opt.steps == 3 and isinstance(opt, aim.Optimizer)
            assert np.allclose(p, ref, rtol=1e-5, atol=1e-6), (options, p, ref)
    try:
        aim.RMSprop(3, centred=True)
    except TypeError:
        pass
    else:
        raise AssertionError("a misspelt option was accepted")
    expect_error(Status.ERR_INVALID_ARGUMENT, aim.RMSprop, 3, alpha=1.0, message=False)
    # a model trained by RMSprop, serialized with it: training resumes exactly
    x, y = data()
    with mlp() as m, aim.RMSprop(m, momentum=0.5) as opt:
        first = train_step(m, x[:16], ("sparse", y[:16]), opt, 1e-2)
        for step in range(1, 30):
            last = train_step(m, x[(step * 16) % 64:][:16], ("sparse", y[(step * 16) % 64:][:16]), opt, 1e-2)
        assert last < first, (first, last)
        m2, opt2 = aim.Model.deserialize(m.serialize(opt))
        with m2, opt2:
            assert opt2.steps == 30
            for model, o in ((m, opt), (m2, opt2)):
                train_step(model, x[:16], ("sparse", y[:16]), o, 1e-2)
            assert np.array_equal(m2.parameters(), m.parameters())


def numpy_attention(x, p, heads, causal):
    """nn.MultiheadAttention self-attention of one (T, E) sample in float64,
    parameters in PyTorch's order (in_proj_weight, in_proj_bias,
    out_proj.weight, out_proj.bias)."""
    T, E = x.shape
    d = E // heads
    w_in = p[:3 * E * E].reshape(3 * E, E)
    b_in = p[3 * E * E:3 * E * E + 3 * E]
    w_o = p[3 * E * E + 3 * E:3 * E * E + 3 * E + E * E].reshape(E, E)
    b_o = p[3 * E * E + 3 * E + E * E:]
    qkv = x @ w_in.T + b_in
    out = np.zeros((T, E))
    for h in range(heads):
        q, k, v = (qkv[:, i * E + h * d:i * E + (h + 1) * d] for i in range(3))
        s = q @ k.T / np.sqrt(d)
        if causal:
            s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
        s = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h * d:(h + 1) * d] = (s / s.sum(axis=1, keepdims=True)) @ v
    return out @ w_o.T + b_o


@case
def attention_positional_embedding_and_linear_match_numpy():
    needs("aim_model_add_attention", "aim_model_add_positional_embedding", "aim_model_add_linear")
    rs = np.random.RandomState(31)
    T, E, H, U = 6, 12, 3, 5
    x = rs.uniform(-1, 1, size=(4, T, E)).astype(np.float32)
    for causal in (False, True):
        with aim.Model((T, E)) as m:
            m.add_positional_embedding(T + 2).add_attention(H, causal=causal).add_linear(U, "tanh")
            assert m.layer_shape(1) == (T, E) and m.layer_shape(2) == (T, U)
            m.compile(max_batch=4, seed=3)
            p = m.parameters()
            p[:] = rs.uniform(-0.3, 0.3, size=p.size)
            p64 = p.astype(np.float64)
            wpe = p64[:(T + 2) * E].reshape(T + 2, E)
            att = p64[(T + 2) * E:(T + 2) * E + 4 * E * E + 4 * E]
            lin = p64[(T + 2) * E + 4 * E * E + 4 * E:]
            w, b = lin[:U * E].reshape(U, E), lin[U * E:]
            want = np.stack([np.tanh(numpy_attention(s + wpe[:T], att, H, causal) @ w.T + b) for s in x])
            got = m.predict(x)
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err < 1e-5, (causal, err)
    with aim.Model((T, E)) as m:
        expect_error(Status.ERR_INVALID_ARGUMENT, m.add_attention, 5, contains=("divide",))
        expect_error(Status.ERR_SHAPE_MISMATCH, m.add_positional_embedding, T - 1, contains=("max_positions",))
        assert m.layer_count == 0


@case
def predict_step_matches_predict_and_labels_per_position():
    needs("aim_model_predict_step_ids", "aim_workspace_reset_steps", "aim_workspace_step_position")
    rs = np.random.RandomState(32)
    T, V, E = 7, 11, 8
    with aim.Model(T) as m:
        m.set_input_dtype(0, np.int32)
        m.add_embedding(V, E).add_positional_embedding(T).add_layer_norm()
        m.add_attention(2, causal=True).add_linear(V)
        m.compile(max_batch=3, seed=4)
        ids = rs.randint(0, V, size=(3, T))
        full = m.predict(ids)
        ws = aim.Workspace(m, max_batch=3)
        try:
            for rnd in range(2):
                assert ws.step_position == 0
                for t in range(T):
                    row = m.predict_step(ws, ids[:, t])
                    assert row.shape == (3, V)
                    err = np.abs(row - full[:, t]).max() / np.abs(full[:, t]).max()
                    assert err < 1e-5, (t, err)
                assert ws.step_position == T
                expect_error(Status.ERR_INVALID_STATE, m.predict_step, ws, ids[:, 0], contains=("reset",))
                ws.reset_steps()
            expect_error(Status.ERR_INVALID_ARGUMENT, m.predict_step, ws, np.full(3, V), contains=("outside",))
            try:
                m.predict_step(ws, ids[:, :2])
            except ValueError as e:
                assert "(batch,) + ()" in str(e), str(e)
            else:
                raise AssertionError("two positions were fed to one step")
        finally:
            ws.close()
        # one label per position: the mean of each position's cross-entropy
        labels = rs.randint(0, V, size=(3, T))
        m.forward(ids)
        loss = m.loss_sparse(labels)
        z = full.astype(np.float64).reshape(-1, V)
        lse = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
        want = np.mean(lse - z[np.arange(z.shape[0]), labels.reshape(-1)])
        assert abs(loss - want) < 1e-5 * abs(want), (loss, want)


def main():
    passed = failed = skipped = 0
    for fn in TESTS:
        try:
            fn()
        except Skip as e:
            skipped += 1
            print("skip %s: %s" % (fn.__name__, e))
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print("FAIL %s" % fn.__name__)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print("ok   %s" % fn.__name__)
    gc.collect()
    print("python binding: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 0 if failed == 0 else 1


try:
    import pytest
except ImportError:  # the plain script needs no pytest
    pytest = None

if pytest is not None:
    @pytest.mark.parametrize("check", TESTS, ids=[fn.__name__ for fn in TESTS])
    def test_case(check):
        """One registered check; a Skip (a function the library lacks) is pytest's skip."""
        try:
            check()
        except Skip as e:
            pytest.skip(str(e))
        finally:
            gc.collect()


if __name__ == "__main__":
    sys.exit(main())
