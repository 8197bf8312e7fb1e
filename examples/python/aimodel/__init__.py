"""ctypes binding of libaimodel 1.x (include/aimodel.h), with numpy arrays,
and a Keras-style Model.compile / fit / evaluate / predict / summary / save /
load (see examples/python/README.md).

Install: `pip install examples/python` from a checkout builds the library
and carries it in the package (aimodel/libaimodel.so.1).

Loading: the shared library is $AIMODEL_LIB if set (e.g.
build/libaimodel.so.1.2.0); else the first of the library carried in the
package (libaimodel.so.1 beside this file), ctypes.util.find_library("aimodel")
(an installed copy), and build/libaimodel.so.1 and build/libaimodel.so of
the checkout this package sits in (examples/python/aimodel/../../../build/)
whose major version is the one this
binding speaks (ABI_MAJOR, 1: the soname libaimodel.so.1). When none loads,
the ImportError lists what was tried and what to do. library_path() names
the file loaded. A library of
another major version has other signatures, so it is never used: from
$AIMODEL_LIB it raises ImportError, elsewhere it is skipped. Within major
version 1 the functions added in 1.1 (the layers below, int32 inputs,
buffers, the random stream, RMSprop) are declared when the library has
them; on a library without one (1.0, or a build where that layer has not
landed) the method that needs it raises NotImplementedError naming the C
function, and everything else works. missing_functions() lists them.

Errors: every C call that returns an aim_status other than AIM_OK raises
AimError, which carries the status (a Status), aim_status_str(status), the
failing C function's name and the relevant object's *_last_error() message.
The message is "" where the C API has no place for one: functions without an
object (aim_loss, aim_rng_*, aim_*_create, ...; aim_model_deserialize gives
its own message, which is passed through) and
functions that take the model as const (output, layer_shape, serialize, ...),
whose failures would otherwise show an earlier call's stale message.
Mistakes caught on the Python side (a closed object, an array whose shape is
not (N, *the input's shape), e.g. "expected an array of shape (N, 20), got
(8, 10)") raise ValueError / TypeError.

Arrays handed to C are converted with np.ascontiguousarray(..., float32 or
int32), which copies only when needed, and are held in local variables for
the duration of the call. Every C call that reads or writes an array is
given that array's own element count (array.size), so the library checks it
against the model's shapes as well.

Inputs of ids: set_input_dtype(k, "int32") (or Model(shape, dtype="int32"),
add_input(shape, dtype="int32")) makes input k hold int32 token ids, which
only add_embedding() reads. forward(), predict() and predict_with() then
take an integer array for it (any integer dtype, converted to np.int32; a
value outside int32 raises ValueError) and refuse a float array with
TypeError ("input 0: ids must be integers, got float32"): the binding never
rounds floats into ids. They call aim_model_forward_ids /
aim_model_predict_ids for a model of one input (and one output), else the
_typed calls whenever an input holds ids. An id outside an embedding's table is
the library's AimError (ERR_INVALID_ARGUMENT), whose message names its
position. input_dtype(k) asks the library, so a deserialized model knows.

Layers (1.1): add_batch_norm, add_dropout, add_layer_norm, add_embedding,
add_gru, add_lstm(..., bidirectional=True), add_conv1d, add_max_pool1d,
add_avg_pool1d, add_global_avg_pool1d, add_global_max_pool1d, each with
PyTorch's semantics and defaults. Batch norm's running statistics are
buffers(), not parameters(): a training forward updates them, predict()
and forward(INFERENCE) only read them, optimizers never touch them, and
serialize() keeps them. Dropout masks come from the model's random stream
(compile's seed, or set_random_seed()).

Layers (1.2): add_attention (nn.MultiheadAttention self-attention over a
(time, embed) sample, causal or not), add_positional_embedding (GPT-2's
wpe), add_linear (nn.Linear over the last axis). loss_sparse takes a label
per position on a (time, vocab) output. Generation: predict_step(workspace,
x) feeds one position of each sequence, the workspace keeping causal
attention's keys and values (workspace.reset_steps(),
workspace.step_position).

Graphs: a model is a graph of layers. Each add_* reads the current node and
becomes it; last_node() names it, continue_from(node) branches, add_add()
and add_concat() merge, add_input() adds an input (node model_input(k)),
set_outputs() names several outputs with loss weights. forward(), predict()
and predict_with() take one array per input (a list for several inputs) and
predict returns one array per output (a list for several outputs); output(k),
loss(..., output=k), loss_sparse(..., output=k) and set_output_grad() take
an output index.

Lifetimes:
  * Model.parameters(), Model.gradients() and Model.buffers() return numpy
    views over the model's own memory (no copy): writing to them writes the
    model. Such a view keeps the Python Model object from being garbage
    collected, but an explicit Model.close() (or leaving a ``with`` block)
    frees the C memory, and any view taken before is then dangling and must
    not be used.
  * Model.output() returns a copy unless called with copy=False; the view
    then stays valid only until the next forward() (and until close()).
  * Model.predict() runs through a Workspace the model creates on first use
    and frees in close(); it never touches the model's training memory.
  * A ThreadPool given to Model.set_threadpool() / Workspace.set_threadpool()
    is referenced by that object until it is closed or given another pool,
    so the pool cannot be garbage collected while in use. Closing a pool
    that is still attached detaches its users first (see ThreadPool).
"""

import ctypes
import ctypes.util
import enum
import os
import weakref

import numpy as np

from . import _keras
from . import progress

__all__ = [
    "AimError", "Status", "Activation", "Init", "Mode", "LossKind", "Padding", "Dtype", "RnnKind",
    "Model", "Workspace", "ThreadPool", "Optimizer", "Adam", "SGD", "RMSprop", "Rng",
    "status_str", "version", "version_number", "lib", "model_input", "ABI_MAJOR", "missing_functions",
    "library_path", "History", "ProgressBar", "load_model",
    "loss", "loss_sparse", "activation_forward", "clip_grad_norm",
]

#: The library major version (the soname's number) whose signatures this binding declares.
ABI_MAJOR = 1

# ---------------------------------------------------------------------------
# enums (values from include/aimodel.h)


class Status(enum.IntEnum):
    """aim_status: 0 is success, every other value names a cause."""
    OK = 0
    ERR_INVALID_ARGUMENT = 1
    ERR_SHAPE_MISMATCH = 2
    ERR_OUT_OF_MEMORY = 3
    ERR_OVERFLOW = 4
    ERR_UNSUPPORTED = 5
    ERR_NON_FINITE = 6
    ERR_CORRUPT_DATA = 7
    ERR_INVALID_STATE = 8
    ERR_VERSION = 9


class Activation(enum.IntEnum):
    """aim_activation: the activation functions (softmax per row)."""
    IDENTITY = 0
    RELU = 1
    LEAKY_RELU = 2
    SIGMOID = 3
    TANH = 4
    SOFTMAX = 5
    GELU = 6


class Init(enum.IntEnum):
    """aim_init: how compile() initializes a layer's weights."""
    GLOROT_UNIFORM = 0
    PYTORCH = 1
    HE_NORMAL = 2
    ZEROS = 3


class Mode(enum.IntEnum):
    """aim_mode: a training forward (kept for backward) or an inference one."""
    TRAIN = 0
    INFERENCE = 1


class LossKind(enum.IntEnum):
    """aim_loss_kind: the float-target losses (BCE on probabilities, the others on logits)."""
    MSE = 0
    BCE = 1
    BCE_WITH_LOGITS = 2
    SOFTMAX_CROSS_ENTROPY = 3


class Padding(enum.IntEnum):
    """aim_padding: explicit zeros, none (valid) or same-size output."""
    EXPLICIT = 0
    VALID = 1
    SAME = 2


class Dtype(enum.IntEnum):
    """What a model input holds (aim_dtype)."""
    FLOAT32 = 0
    INT32 = 1


class RnnKind(enum.IntEnum):
    """aim_rnn_kind: the recurrent cell of aim_model_add_rnn()."""
    LSTM = 0
    GRU = 1


def _enum(cls, value):
    """An enum member from a member, an int or a case-insensitive name."""
    if isinstance(value, str):
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError("unknown %s %r (one of %s)" % (
                cls.__name__, value, ", ".join(m.name.lower() for m in cls))) from None
    return cls(value)


def _dtype(value):
    """A Dtype from a member, an int, "int32"/"float32" or a numpy dtype
    (np.int32, np.float32)."""
    if isinstance(value, (str, int, Dtype)):
        return _enum(Dtype, value)
    try:
        dt = np.dtype(value)
    except TypeError:
        raise ValueError("unknown Dtype %r (int32 or float32)" % (value,)) from None
    if dt == np.int32:
        return Dtype.INT32
    if dt == np.float32:
        return Dtype.FLOAT32
    raise ValueError("an input holds int32 or float32, not %s" % dt)


# ---------------------------------------------------------------------------
# the library

c_size_p = ctypes.POINTER(ctypes.c_size_t)
c_float_p = ctypes.POINTER(ctypes.c_float)
c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_uint32_p = ctypes.POINTER(ctypes.c_uint32)
c_void_pp = ctypes.POINTER(ctypes.c_void_p)
c_float_pp = ctypes.POINTER(c_float_p)
# C enums (aim_status, aim_activation, ...) are int-sized on the ABIs this
# runs on (GCC/Clang, System V and Windows x64).
c_enum = ctypes.c_int
for _pointer, _target in ((c_size_p, "size_t"), (c_float_p, "float"), (c_int32_p, "int32_t"),
                          (c_uint32_p, "uint32_t"), (c_void_pp, "void *"), (c_float_pp, "float *")):
    _pointer.__doc__ = "The ctypes type of a C %s * (for calls through `lib`)." % _target


#: The file name the package carries beside this file (the soname: what the
#: wheel's backend copies from the checkout's build).
_CARRIED_NAME = "libaimodel.so.%d" % ABI_MAJOR


def _checkout_root(here):
    """The libaimodel checkout this package folder sits in
    (examples/python/aimodel/../../..), or None when it is not in one (an
    installed copy, or a copied folder)."""
    root = os.path.normpath(os.path.join(here, os.pardir, os.pardir, os.pardir))
    if os.path.isfile(os.path.join(root, "include", "aimodel.h")) and os.path.isfile(os.path.join(root, "Makefile")):
        return root
    return None


def _library_candidates():
    """(path, from_environment) pairs to try, in order: $AIMODEL_LIB alone
    when set; else the library carried in the package, an installed copy
    (ctypes.util.find_library), and the build/ of the checkout the package
    sits in."""
    env = os.environ.get("AIMODEL_LIB")
    if env:
        return [(env, True)]
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(here, _CARRIED_NAME)]
    found = ctypes.util.find_library("aimodel")
    if found:
        paths.append(found)
    root = _checkout_root(here)
    if root is not None:
        build = os.path.join(root, "build")
        paths += [os.path.join(build, "libaimodel.so.%d" % ABI_MAJOR), os.path.join(build, "libaimodel.so")]
    return [(path, False) for path in paths]


#: What to do when no library loads (the end of the ImportError's message).
_LOAD_HINT = ("Install the package with its library: `pip install examples/python` from a libaimodel "
              "checkout (it builds and carries libaimodel.so.%d); or build the library with `make` and point "
              "at it: AIMODEL_LIB=/path/to/libaimodel/build/libaimodel.so.%d" % (ABI_MAJOR, ABI_MAJOR))


class DenseConfig(ctypes.Structure):
    """The C struct aim_dense_config of include/aimodel.h, field for field."""

    _fields_ = [("units", ctypes.c_size_t), ("activation", c_enum), ("alpha", ctypes.c_float),
                ("use_bias", ctypes.c_int32), ("init", c_enum)]


class CompileConfig(ctypes.Structure):
    """The C struct aim_compile_config of include/aimodel.h, field for field."""

    _fields_ = [("max_batch", ctypes.c_size_t), ("input_gradient", ctypes.c_int32),
                ("seed", ctypes.c_uint64), ("rng", ctypes.c_void_p)]


class Conv2dConfig(ctypes.Structure):
    """The C struct aim_conv2d_config of include/aimodel.h, field for field."""

    _fields_ = [("filters", ctypes.c_size_t), ("kernel_h", ctypes.c_size_t), ("kernel_w", ctypes.c_size_t),
                ("stride_h", ctypes.c_size_t), ("stride_w", ctypes.c_size_t), ("padding", c_enum),
                ("pad_top", ctypes.c_size_t), ("pad_bottom", ctypes.c_size_t),
                ("pad_left", ctypes.c_size_t), ("pad_right", ctypes.c_size_t),
                ("dilation_h", ctypes.c_size_t), ("dilation_w", ctypes.c_size_t),
                ("groups", ctypes.c_size_t), ("activation", c_enum), ("alpha", ctypes.c_float),
                ("use_bias", ctypes.c_int32), ("init", c_enum)]


class Pool2dConfig(ctypes.Structure):
    """The C struct aim_pool2d_config of include/aimodel.h, field for field."""

    _fields_ = [("kernel_h", ctypes.c_size_t), ("kernel_w", ctypes.c_size_t),
                ("stride_h", ctypes.c_size_t), ("stride_w", ctypes.c_size_t),
                ("pad_h", ctypes.c_size_t), ("pad_w", ctypes.c_size_t)]


class LstmConfig(ctypes.Structure):
    """The C struct aim_lstm_config of include/aimodel.h, field for field."""

    _fields_ = [("hidden", ctypes.c_size_t), ("layers", ctypes.c_size_t),
                ("return_sequences", ctypes.c_int32), ("init", c_enum)]


class RnnConfig(ctypes.Structure):
    """The C struct aim_rnn_config of include/aimodel.h, field for field."""

    _fields_ = [("hidden", ctypes.c_size_t), ("layers", ctypes.c_size_t),
                ("return_sequences", ctypes.c_int32), ("bidirectional", ctypes.c_int32), ("init", c_enum)]


class BatchNormConfig(ctypes.Structure):
    """The C struct aim_batch_norm_config of include/aimodel.h, field for field."""

    _fields_ = [("momentum", ctypes.c_float), ("eps", ctypes.c_float), ("affine", ctypes.c_int32)]


class LayerNormConfig(ctypes.Structure):
    """The C struct aim_layer_norm_config of include/aimodel.h, field for field."""

    _fields_ = [("normalized_dims", ctypes.c_size_t), ("eps", ctypes.c_float),
                ("elementwise_affine", ctypes.c_int32)]


class EmbeddingConfig(ctypes.Structure):
    """The C struct aim_embedding_config of include/aimodel.h, field for field."""

    _fields_ = [("num_embeddings", ctypes.c_size_t), ("embedding_dim", ctypes.c_size_t),
                ("has_padding", ctypes.c_int32), ("padding_idx", ctypes.c_size_t), ("init", c_enum)]


class Conv1dConfig(ctypes.Structure):
    """The C struct aim_conv1d_config of include/aimodel.h, field for field."""

    _fields_ = [("filters", ctypes.c_size_t), ("kernel", ctypes.c_size_t), ("stride", ctypes.c_size_t),
                ("padding", c_enum), ("pad_left", ctypes.c_size_t), ("pad_right", ctypes.c_size_t),
                ("dilation", ctypes.c_size_t), ("groups", ctypes.c_size_t), ("activation", c_enum),
                ("alpha", ctypes.c_float), ("use_bias", ctypes.c_int32), ("init", c_enum)]


class AttentionConfig(ctypes.Structure):
    """The C struct aim_attention_config of include/aimodel.h, field for field."""

    _fields_ = [("num_heads", ctypes.c_size_t), ("causal", ctypes.c_int32), ("dropout", ctypes.c_float),
                ("bias", ctypes.c_int32), ("init", c_enum), ("reserved", ctypes.c_uint32 * 8)]


class Pool1dConfig(ctypes.Structure):
    """The C struct aim_pool1d_config of include/aimodel.h, field for field."""

    _fields_ = [("kernel", ctypes.c_size_t), ("stride", ctypes.c_size_t), ("pad", ctypes.c_size_t)]


class SgdConfig(ctypes.Structure):
    """The C struct aim_sgd_config of include/aimodel.h, field for field."""

    _fields_ = [("momentum", ctypes.c_float), ("dampening", ctypes.c_float),
                ("weight_decay", ctypes.c_float), ("nesterov", ctypes.c_int32),
                ("check_finite", ctypes.c_int32)]


class AdamConfig(ctypes.Structure):
    """The C struct aim_adam_config of include/aimodel.h, field for field."""

    _fields_ = [("beta1", ctypes.c_float), ("beta2", ctypes.c_float), ("epsilon", ctypes.c_float),
                ("weight_decay", ctypes.c_float), ("decoupled", ctypes.c_int32),
                ("check_finite", ctypes.c_int32)]


class RmspropConfig(ctypes.Structure):
    """The C struct aim_rmsprop_config of include/aimodel.h, field for field."""

    _fields_ = [("alpha", ctypes.c_float), ("epsilon", ctypes.c_float), ("momentum", ctypes.c_float),
                ("centered", ctypes.c_int32), ("weight_decay", ctypes.c_float),
                ("check_finite", ctypes.c_int32)]


_S = ctypes.c_size_t
_VP = ctypes.c_void_p
_STATUS = "status"  # marker: restype c_enum, checked by the wrapper

# name: (restype, argtypes). Every function used below is declared here.
_PROTOTYPES = {
    "aim_status_str": (ctypes.c_char_p, [c_enum]),
    "aim_version": (ctypes.c_char_p, []),
    "aim_version_number": (ctypes.c_uint32, []),
    # rng
    "aim_rng_create": (_STATUS, [_VP, ctypes.c_uint64, c_void_pp]),
    "aim_rng_free": (None, [_VP]),
    "aim_rng_seed": (_STATUS, [_VP, ctypes.c_uint64]),
    "aim_rng_next_u64": (_STATUS, [_VP, ctypes.POINTER(ctypes.c_uint64)]),
    "aim_rng_uniform": (_STATUS, [_VP, c_float_p]),
    "aim_rng_below": (_STATUS, [_VP, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)]),
    "aim_rng_normal": (_STATUS, [_VP, c_float_p]),
    "aim_rng_shuffle_u32": (_STATUS, [_VP, c_uint32_p, _S]),
    # plain-buffer functions
    "aim_loss": (_STATUS, [c_enum, c_float_p, c_float_p, _S, _S, c_float_p, c_float_p]),
    "aim_loss_sparse": (_STATUS, [c_float_p, c_int32_p, _S, _S, c_float_p, c_float_p]),
    "aim_activation_forward": (_STATUS, [c_enum, ctypes.c_float, c_float_p, c_float_p, _S, _S]),
    "aim_clip_grad_norm": (_STATUS, [c_float_p, _S, ctypes.c_float, c_float_p]),
    # configs
    "aim_dense_config_init": (_STATUS, [ctypes.POINTER(DenseConfig), _S, c_enum]),
    "aim_compile_config_init": (_STATUS, [ctypes.POINTER(CompileConfig)]),
    "aim_conv2d_config_init": (_STATUS, [ctypes.POINTER(Conv2dConfig), _S, _S, _S, c_enum]),
    "aim_pool2d_config_init": (_STATUS, [ctypes.POINTER(Pool2dConfig), _S, _S]),
    "aim_lstm_config_init": (_STATUS, [ctypes.POINTER(LstmConfig), _S, _S]),
    "aim_sgd_config_init": (_STATUS, [ctypes.POINTER(SgdConfig)]),
    "aim_adam_config_init": (_STATUS, [ctypes.POINTER(AdamConfig)]),
    # model
    "aim_model_create": (_STATUS, [_VP, _S, c_size_p, c_void_pp]),
    "aim_model_free": (None, [_VP]),
    "aim_model_add_dense": (_STATUS, [_VP, ctypes.POINTER(DenseConfig)]),
    "aim_model_add_activation": (_STATUS, [_VP, c_enum, ctypes.c_float]),
    "aim_model_add_conv2d": (_STATUS, [_VP, ctypes.POINTER(Conv2dConfig)]),
    "aim_model_add_max_pool2d": (_STATUS, [_VP, ctypes.POINTER(Pool2dConfig)]),
    "aim_model_add_avg_pool2d": (_STATUS, [_VP, ctypes.POINTER(Pool2dConfig)]),
    "aim_model_add_global_avg_pool2d": (_STATUS, [_VP]),
    "aim_model_add_flatten": (_STATUS, [_VP]),
    "aim_model_add_lstm": (_STATUS, [_VP, ctypes.POINTER(LstmConfig)]),
    "aim_model_add_input": (_STATUS, [_VP, _S, c_size_p, c_size_p]),
    "aim_model_last_node": (_STATUS, [_VP, c_size_p]),
    "aim_model_continue_from": (_STATUS, [_VP, _S]),
    "aim_model_add_add": (_STATUS, [_VP, c_size_p, _S]),
    "aim_model_add_concat": (_STATUS, [_VP, c_size_p, _S, _S]),
    "aim_model_set_outputs": (_STATUS, [_VP, c_size_p, c_float_p, _S]),
    "aim_model_input_count": (_S, [_VP]),
    "aim_model_output_count": (_S, [_VP]),
    "aim_model_output_node": (_STATUS, [_VP, _S, c_size_p]),
    "aim_model_lstm_set_state": (_STATUS, [_VP, _S, c_float_p, _S, c_float_p, _S, _S]),
    "aim_model_lstm_final_state": (_STATUS, [_VP, _S, c_float_p, _S, c_float_p, _S, _S]),
    "aim_model_layer_shape": (_STATUS, [_VP, _S, c_size_p, c_size_p]),
    "aim_model_compile": (_STATUS, [_VP, ctypes.POINTER(CompileConfig)]),
    "aim_model_forward": (_STATUS, [_VP, c_enum, c_float_p, _S, _S]),
    "aim_model_forward_multi": (_STATUS, [_VP, c_enum, c_float_pp, c_size_p, _S, _S]),
    "aim_model_output": (_STATUS, [_VP, _S, c_float_pp, c_size_p]),
    "aim_model_loss": (_STATUS, [_VP, _S, c_enum, c_float_p, _S, c_float_p]),
    "aim_model_loss_sparse": (_STATUS, [_VP, _S, c_int32_p, _S, c_float_p]),
    "aim_model_set_output_grad": (_STATUS, [_VP, _S, c_float_p, _S]),
    "aim_model_backward": (_STATUS, [_VP, c_float_p, _S]),
    "aim_model_input_gradient": (_STATUS, [_VP, _S, c_float_pp, c_size_p]),
    "aim_model_zero_grad": (_STATUS, [_VP]),
    "aim_model_parameters": (_STATUS, [_VP, c_float_pp, c_size_p]),
    "aim_model_gradients": (_STATUS, [_VP, c_float_pp, c_size_p]),
    "aim_model_layer_parameters": (_STATUS, [_VP, _S, c_size_p, c_size_p, c_size_p]),
    "aim_model_layer_count": (_S, [_VP]),
    "aim_model_input_size": (_S, [_VP]),
    "aim_model_output_size": (_S, [_VP]),
    "aim_model_memory_size": (_STATUS, [_VP, c_size_p]),
    "aim_model_last_error": (ctypes.c_char_p, [_VP]),
    # workspace
    "aim_workspace_size": (_STATUS, [_VP, _S, c_size_p]),
    "aim_workspace_create": (_STATUS, [_VP, _VP, _S, c_void_pp]),
    "aim_workspace_free": (None, [_VP]),
    "aim_workspace_last_error": (ctypes.c_char_p, [_VP]),
    "aim_model_predict": (_STATUS, [_VP, _VP, c_float_p, _S, _S, c_float_p, _S]),
    "aim_model_predict_multi": (_STATUS, [_VP, _VP, c_float_pp, c_size_p, _S, _S, c_float_pp, c_size_p, _S]),
    # thread pool
    "aim_threadpool_create": (_STATUS, [_VP, _S, c_void_pp]),
    "aim_threadpool_free": (None, [_VP]),
    "aim_threadpool_threads": (_S, [_VP]),
    "aim_threadpool_set_min_work": (_STATUS, [_VP, ctypes.c_uint64]),
    "aim_threadpool_last_error": (ctypes.c_char_p, [_VP]),
    "aim_model_set_threadpool": (_STATUS, [_VP, _VP]),
    "aim_workspace_set_threadpool": (_STATUS, [_VP, _VP, _VP]),
    # optimizers
    "aim_sgd_create": (_STATUS, [_VP, ctypes.POINTER(SgdConfig), _S, c_void_pp]),
    "aim_adam_create": (_STATUS, [_VP, ctypes.POINTER(AdamConfig), _S, c_void_pp]),
    "aim_optimizer_free": (None, [_VP]),
    "aim_optimizer_step": (_STATUS, [_VP, c_float_p, c_float_p, _S, ctypes.c_float]),
    "aim_optimizer_step_model": (_STATUS, [_VP, _VP, ctypes.c_float]),
    "aim_optimizer_reset": (_STATUS, [_VP]),
    "aim_optimizer_steps": (ctypes.c_uint64, [_VP]),
    "aim_optimizer_last_error": (ctypes.c_char_p, [_VP]),
    # serialization
    "aim_model_serialized_size": (_STATUS, [_VP, _VP, c_size_p]),
    "aim_model_serialize": (_STATUS, [_VP, _VP, _VP, _S, c_size_p]),
    "aim_model_deserialize": (_STATUS, [_VP, _VP, _S, c_void_pp, c_void_pp, ctypes.c_char_p, _S]),
}

# Added in 1.1: declared when the library has them (see missing_functions()).
_PROTOTYPES_1_1 = {
    # int32 inputs
    "aim_model_set_input_dtype": (_STATUS, [_VP, _S, c_enum]),
    "aim_model_input_dtype": (_STATUS, [_VP, _S, ctypes.POINTER(c_enum)]),
    "aim_model_forward_ids": (_STATUS, [_VP, c_enum, c_int32_p, _S, _S]),
    "aim_model_forward_typed": (_STATUS, [_VP, c_enum, c_void_pp, c_size_p, _S, _S]),
    "aim_model_predict_ids": (_STATUS, [_VP, _VP, c_int32_p, _S, _S, c_float_p, _S]),
    "aim_model_predict_typed": (_STATUS, [_VP, _VP, c_void_pp, c_size_p, _S, _S, c_float_pp, c_size_p, _S]),
    # buffers and the random stream
    "aim_model_buffers": (_STATUS, [_VP, c_float_pp, c_size_p]),
    "aim_model_layer_buffers": (_STATUS, [_VP, _S, c_size_p, c_size_p]),
    "aim_model_set_random_seed": (_STATUS, [_VP, ctypes.c_uint64]),
    # layers
    "aim_batch_norm_config_init": (_STATUS, [ctypes.POINTER(BatchNormConfig)]),
    "aim_model_add_batch_norm": (_STATUS, [_VP, ctypes.POINTER(BatchNormConfig)]),
    "aim_model_add_dropout": (_STATUS, [_VP, ctypes.c_float]),
    "aim_layer_norm_config_init": (_STATUS, [ctypes.POINTER(LayerNormConfig)]),
    "aim_model_add_layer_norm": (_STATUS, [_VP, ctypes.POINTER(LayerNormConfig)]),
    "aim_embedding_config_init": (_STATUS, [ctypes.POINTER(EmbeddingConfig), _S, _S]),
    "aim_model_add_embedding": (_STATUS, [_VP, ctypes.POINTER(EmbeddingConfig)]),
    "aim_rnn_config_init": (_STATUS, [ctypes.POINTER(RnnConfig), _S, _S]),
    "aim_model_add_rnn": (_STATUS, [_VP, c_enum, ctypes.POINTER(RnnConfig)]),
    "aim_model_add_gru": (_STATUS, [_VP, ctypes.POINTER(RnnConfig)]),
    "aim_model_gru_set_state": (_STATUS, [_VP, _S, c_float_p, _S, _S]),
    "aim_model_gru_final_state": (_STATUS, [_VP, _S, c_float_p, _S, _S]),
    "aim_conv1d_config_init": (_STATUS, [ctypes.POINTER(Conv1dConfig), _S, _S, c_enum]),
    "aim_model_add_conv1d": (_STATUS, [_VP, ctypes.POINTER(Conv1dConfig)]),
    "aim_pool1d_config_init": (_STATUS, [ctypes.POINTER(Pool1dConfig), _S]),
    "aim_model_add_max_pool1d": (_STATUS, [_VP, ctypes.POINTER(Pool1dConfig)]),
    "aim_model_add_avg_pool1d": (_STATUS, [_VP, ctypes.POINTER(Pool1dConfig)]),
    "aim_model_add_global_avg_pool1d": (_STATUS, [_VP]),
    "aim_model_add_global_max_pool1d": (_STATUS, [_VP]),
    # optimizers
    "aim_rmsprop_config_init": (_STATUS, [ctypes.POINTER(RmspropConfig)]),
    "aim_rmsprop_create": (_STATUS, [_VP, ctypes.POINTER(RmspropConfig), _S, c_void_pp]),
}

# Added in 1.2: declared when the library has them.
_PROTOTYPES_1_2 = {
    "aim_attention_config_init": (_STATUS, [ctypes.POINTER(AttentionConfig), _S]),
    "aim_model_add_attention": (_STATUS, [_VP, ctypes.POINTER(AttentionConfig)]),
    "aim_model_add_positional_embedding": (_STATUS, [_VP, _S]),
    "aim_model_add_linear": (_STATUS, [_VP, ctypes.POINTER(DenseConfig)]),
    "aim_model_predict_step": (_STATUS, [_VP, _VP, c_float_p, _S, _S, c_float_p, _S]),
    "aim_model_predict_step_ids": (_STATUS, [_VP, _VP, c_int32_p, _S, _S, c_float_p, _S]),
    "aim_workspace_reset_steps": (_STATUS, [_VP]),
    "aim_workspace_step_position": (_STATUS, [_VP, c_size_p]),
}


def _load():
    tried = []
    for path, from_environment in _library_candidates():
        try:
            library = ctypes.CDLL(path)
        except OSError as e:
            if from_environment:
                raise ImportError("AIMODEL_LIB=%s cannot be loaded: %s. %s" % (path, e, _LOAD_HINT)) from None
            tried.append("%s (%s)" % (path, e))
            continue
        version_number = getattr(library, "aim_version_number", None)
        major = None
        if version_number is not None:
            version_number.restype, version_number.argtypes = ctypes.c_uint32, []
            major = int(version_number()) // 10000
        if major != ABI_MAJOR:
            # Another major version has other signatures: calling it through
            # these prototypes would pass the wrong arguments.
            why = "major version %s, this binding needs %d" % (major, ABI_MAJOR)
            if from_environment:
                raise ImportError("AIMODEL_LIB=%s: %s. %s" % (path, why, _LOAD_HINT))
            tried.append("%s (%s)" % (path, why))
            continue
        missing = []
        for table in (_PROTOTYPES, _PROTOTYPES_1_1, _PROTOTYPES_1_2):
            for name, (restype, argtypes) in table.items():
                fn = getattr(library, name, None)
                if fn is None:
                    missing.append(name)
                    continue
                fn.restype = c_enum if restype is _STATUS else restype
                fn.argtypes = argtypes
        lacking_1_0 = [name for name in missing if name in _PROTOTYPES]
        if lacking_1_0:
            # Every 1.x library has these: this one is not what its version says.
            why = "no %s" % ", ".join(lacking_1_0)
            if from_environment:
                raise ImportError("AIMODEL_LIB=%s: %s. %s" % (path, why, _LOAD_HINT))
            tried.append("%s (%s)" % (path, why))
            continue
        return library, path, frozenset(missing)
    here = os.path.dirname(os.path.abspath(__file__))
    if not ctypes.util.find_library("aimodel"):
        tried.append("an installed copy (ctypes.util.find_library(\"aimodel\") found none)")
    if _checkout_root(here) is None:
        tried.append("a checkout's build/ (%s is not examples/python/aimodel of a libaimodel checkout)" % here)
    raise ImportError("libaimodel %d.x not found; tried:\n  %s\n%s" % (ABI_MAJOR, "\n  ".join(tried), _LOAD_HINT))


#: The loaded ctypes.CDLL, with every prototype above declared (those of 1.1 it has).
lib, _lib_path, _missing = _load()
_lib = lib


def missing_functions():
    """The C functions of 1.1 this binding declares that the loaded library
    lacks (a sorted list; empty for a complete 1.1 library)."""
    return sorted(_missing)


def _mapped_path(name):
    """The file the dynamic loader mapped for a library loaded by a bare
    name (what find_library returns, e.g. "libaimodel.so.1"), from
    /proc/self/maps; None where that is not readable."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and os.path.basename(fields[5].strip()).startswith(name):
                    return fields[5].strip()
    except OSError:
        pass
    return None


def library_path():
    """The path of the shared library this binding loaded: $AIMODEL_LIB,
    the copy carried in the package, an installed copy (resolved to the
    file the loader mapped) or the checkout's build/libaimodel.so.1."""
    if os.sep in _lib_path:
        return os.path.abspath(_lib_path)
    return _mapped_path(_lib_path) or _lib_path


def _fn(name):
    """The C function `name`, or NotImplementedError if the library lacks it."""
    if name in _missing:
        since = "1.2" if name in _PROTOTYPES_1_2 else "1.1"
        raise NotImplementedError("libaimodel %s (%s) has no %s; it came in %s" % (version(), _lib_path, name, since))
    return getattr(_lib, name)


def status_str(status):
    """aim_status_str(): a short English description of a status code."""
    return _lib.aim_status_str(int(status)).decode("utf-8", "replace")


def version():
    """The library's version string, e.g. "1.2.0"."""
    return _lib.aim_version().decode("ascii")


def version_number():
    """The library's version as MAJOR * 10000 + MINOR * 100 + PATCH."""
    return int(_lib.aim_version_number())


class AimError(Exception):
    """A C call returned a status other than AIM_OK.

    Attributes: status (Status, or the raw int if unknown), status_str
    (aim_status_str), message (the object's last_error, may be ""),
    function (the C function's name).
    """

    def __init__(self, status, function="", message=""):
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        self.status_str = status_str(status)
        self.message = message or ""
        self.function = function
        text = "%s: %s" % (function, self.status_str) if function else self.status_str
        if self.message:
            text += ": " + self.message
        super().__init__(text)


def _decode(raw):
    return raw.decode("utf-8", "replace") if raw else ""


def _check(status, function, last_error=None):
    """Raises AimError for a non-OK status; `last_error` is a callable that
    returns the failing object's message (read at once: it is only valid
    until that object's next call)."""
    if status != Status.OK:
        message = ""
        if last_error is not None:
            try:
                message = last_error()
            except Exception:  # the message is a courtesy; never mask the status
                message = ""
        raise AimError(status, function, message)


def _f32(array):
    return np.ascontiguousarray(array, dtype=np.float32)


def _fptr(array):
    return array.ctypes.data_as(c_float_p)


def _view(pointer, count, owner, shape=None):
    """A numpy float32 view of `count` floats at `pointer`, no copy. The view
    keeps `owner` (a Python object) alive; it does not stop owner.close()."""
    if count == 0:
        return np.empty(0 if shape is None else shape, dtype=np.float32)
    carray = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float * count)).contents
    carray._aim_owner = owner  # the numpy array's base chain holds carray
    array = np.ctypeslib.as_array(carray)
    return array if shape is None else array.reshape(shape)


_SIZE_MAX = (1 << (8 * ctypes.sizeof(ctypes.c_size_t))) - 1


def model_input(k=0):
    """The node id of model input k (AIM_MODEL_INPUT(k): SIZE_MAX - k), for
    continue_from(), add_add(), add_concat() and layer_shape()."""
    k = int(k)
    if k < 0:
        raise ValueError("input index must be >= 0, got %d" % k)
    return _SIZE_MAX - k


def _shape_str(shape):
    """A shape as numpy prints it: (8, 10), (3,)."""
    return str(tuple(int(d) for d in shape))


def _batch_array(array, sample_shape, what, batch=None):
    """`array` as C-contiguous float32 of shape (N, *sample_shape), N >= 1
    (and N == batch when given); else ValueError naming the expected shape."""
    a = _f32(array)
    sample_shape = tuple(sample_shape)
    if a.ndim != len(sample_shape) + 1 or a.shape[1:] != sample_shape or (batch is not None and a.shape[0] != batch):
        n = "N" if batch is None else str(batch)
        expected = "(%s, %s)" % (n, ", ".join(str(d) for d in sample_shape)) if sample_shape else "(%s,)" % n
        raise ValueError("%sexpected an array of shape %s, got %s" % (what + ": " if what else "", expected,
                                                                       _shape_str(a.shape)))
    if a.shape[0] == 0:
        raise ValueError("%san empty batch (shape %s)" % (what + ": " if what else "", _shape_str(a.shape)))
    return a


_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _ids_array(array, sample_shape, what, batch=None):
    """`array` of ids as C-contiguous int32 of shape (N, *sample_shape):
    TypeError unless it holds integers (floats are never rounded into ids),
    ValueError for a value outside int32 (it would wrap) or another shape.
    Ids outside an embedding's table are left to the library, which names
    the position."""
    a = np.asarray(array)
    label = what or "input"
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError("%s: ids must be integers, got %s" % (label, a.dtype))
    if a.dtype != np.int32 and a.size and (a.min() < _INT32_MIN or a.max() > _INT32_MAX):
        raise ValueError("%s: ids must fit in int32, got values in [%d, %d]" % (label, a.min(), a.max()))
    sample_shape = tuple(sample_shape)
    if a.ndim != len(sample_shape) + 1 or a.shape[1:] != sample_shape or (batch is not None and a.shape[0] != batch):
        n = "N" if batch is None else str(batch)
        expected = "(%s, %s)" % (n, ", ".join(str(d) for d in sample_shape)) if sample_shape else "(%s,)" % n
        raise ValueError("%s: expected an array of shape %s, got %s" % (label, expected, _shape_str(a.shape)))
    if a.shape[0] == 0:
        raise ValueError("%s: an empty batch (shape %s)" % (label, _shape_str(a.shape)))
    return np.ascontiguousarray(a, dtype=np.int32)


def _pair(value, what):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError("%s must be an int or a pair, got %r" % (what, value))
        return int(value[0]), int(value[1])
    return int(value), int(value)


# ---------------------------------------------------------------------------
# random numbers


class _Closing:
    """Objects owning a library handle: close() when garbage-collected and
    at the end of a `with` block (close() is safe to call twice)."""

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Rng(_Closing):
    """aim_rng: xoshiro256** seeded by splitmix64; the same seed gives the
    same sequence on every platform."""

    def __init__(self, seed=0):
        handle = ctypes.c_void_p()
        _check(_lib.aim_rng_create(None, ctypes.c_uint64(int(seed) & 0xFFFFFFFFFFFFFFFF), ctypes.byref(handle)),
               "aim_rng_create")
        self._handle = handle.value

    def _h(self):
        if self._handle is None:
            raise ValueError("the Rng is closed")
        return self._handle

    @property
    def handle(self):
        """The raw aim_rng* as an int (for advanced use with `lib`)."""
        return self._h()

    def seed(self, seed):
        """aim_rng_seed(): restarts the sequence from `seed`."""
        _check(_lib.aim_rng_seed(self._h(), ctypes.c_uint64(int(seed) & 0xFFFFFFFFFFFFFFFF)), "aim_rng_seed")

    def next_u64(self):
        """aim_rng_next_u64(): the next 64 random bits."""
        out = ctypes.c_uint64()
        _check(_lib.aim_rng_next_u64(self._h(), ctypes.byref(out)), "aim_rng_next_u64")
        return out.value

    def uniform(self):
        """aim_rng_uniform(): a float uniform in [0, 1)."""
        out = ctypes.c_float()
        _check(_lib.aim_rng_uniform(self._h(), ctypes.byref(out)), "aim_rng_uniform")
        return out.value

    def below(self, bound):
        """aim_rng_below(): an integer uniform in [0, bound)."""
        out = ctypes.c_uint64()
        _check(_lib.aim_rng_below(self._h(), int(bound), ctypes.byref(out)), "aim_rng_below")
        return out.value

    def normal(self):
        """aim_rng_normal(): a standard normal float."""
        out = ctypes.c_float()
        _check(_lib.aim_rng_normal(self._h(), ctypes.byref(out)), "aim_rng_normal")
        return out.value

    def shuffle(self, indices):
        """Shuffles a C-contiguous numpy uint32 array in place (Fisher-Yates)."""
        if not (isinstance(indices, np.ndarray) and indices.dtype == np.uint32 and indices.flags.c_contiguous
                and indices.flags.writeable):
            raise TypeError("shuffle() needs a writable C-contiguous numpy uint32 array")
        _check(_lib.aim_rng_shuffle_u32(self._h(), indices.ctypes.data_as(c_uint32_p), indices.size),
               "aim_rng_shuffle_u32")
        return indices

    def permutation(self, n):
        """aim_rng_shuffle_u32 over the identity 0..n-1 (as the C examples'
        batcher does every epoch)."""
        return self.shuffle(np.arange(n, dtype=np.uint32))

    def close(self):
        """Frees the generator once; later calls do nothing."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and _lib is not None:
            _lib.aim_rng_free(handle)


# ---------------------------------------------------------------------------
# plain-buffer functions


def loss(kind, pred, targets, grad=False):
    """aim_loss() on arrays: the mean loss, or (loss, d loss / d pred) with
    grad=True. `pred` is (batch, features) (a 1-D array is one sample)."""
    p = _f32(pred)
    t = _f32(targets)
    if p.shape != t.shape or p.size == 0:
        raise ValueError("pred %s and targets %s must have the same non-empty shape" % (p.shape, t.shape))
    batch = p.shape[0] if p.ndim > 1 else 1
    features = p.size // batch
    out = ctypes.c_float()
    g = np.empty_like(p) if grad else None
    _check(_lib.aim_loss(int(_enum(LossKind, kind)), _fptr(p), _fptr(t), batch, features, ctypes.byref(out),
                         _fptr(g) if grad else None), "aim_loss")
    return (out.value, g) if grad else out.value


def loss_sparse(logits, labels, grad=False):
    """aim_loss_sparse(): softmax cross-entropy of (batch, classes) logits
    against integer labels; the mean loss, or (loss, gradient) with grad=True."""
    z = _f32(logits)
    y = np.ascontiguousarray(labels, dtype=np.int32).ravel()
    if z.ndim != 2 or z.shape[0] != y.size:
        raise ValueError("logits must be (batch, classes) with one label per row")
    out = ctypes.c_float()
    g = np.empty_like(z) if grad else None
    _check(_lib.aim_loss_sparse(_fptr(z), y.ctypes.data_as(c_int32_p), z.shape[0], z.shape[1],
                                ctypes.byref(out), _fptr(g) if grad else None), "aim_loss_sparse")
    return (out.value, g) if grad else out.value


def activation_forward(activation, x, alpha=0.01):
    """aim_activation_forward(): the activation of `x` (softmax per row of
    the last dimension) as a new array."""
    a = _f32(x)
    if a.size == 0:
        raise ValueError("empty input")
    cols = a.shape[-1] if a.ndim else 1
    rows = a.size // cols
    y = np.empty_like(a)
    _check(_lib.aim_activation_forward(int(_enum(Activation, activation)), alpha, _fptr(a), _fptr(y), rows, cols),
           "aim_activation_forward")
    return y


def clip_grad_norm(grads, max_norm):
    """aim_clip_grad_norm() in place on a float32 C-contiguous array (e.g.
    Model.gradients()); returns the norm before clipping."""
    if not (isinstance(grads, np.ndarray) and grads.dtype == np.float32 and grads.flags.c_contiguous):
        raise TypeError("clip_grad_norm() works in place: pass a C-contiguous float32 numpy array")
    norm = ctypes.c_float()
    _check(_lib.aim_clip_grad_norm(_fptr(grads), grads.size, max_norm, ctypes.byref(norm)), "aim_clip_grad_norm")
    return norm.value


# ---------------------------------------------------------------------------
# thread pool


class ThreadPool(_Closing):
    """aim_threadpool: threads that a Model (forward, backward, predict) and
    a Workspace (predict_with) may split large batches over.

    ThreadPool(threads) counts the calling thread: 2 is the caller plus one
    worker thread, 0 means the number of online CPUs, at most 256 (more raises
    AimError with Status.ERR_UNSUPPORTED). threads() gives the actual count.
    Batches too small to be worth splitting stay on the calling thread.

    Attach it with Model.set_threadpool(pool) (which also covers
    Model.predict()) and with Workspace.set_threadpool(pool) or
    Workspace(model, n, threadpool=pool). Every attached object holds a
    reference to the pool, so the pool is never garbage collected while in
    use; one pool may serve many models and workspaces (they take turns).

    Closing a pool that is still attached is safe, not an error: close()
    (also ``with`` and __del__) first detaches every live model and workspace
    using it -- they run on the calling thread again, and a detached model
    must forward() again before backward() -- and then frees the pool.
    Exception: a Workspace whose model has been closed cannot be detached
    (aim_workspace_set_threadpool() needs a compiled model); the C pool then
    stays alive, closed to new attachments, until that workspace is closed.
    close() is idempotent. Never close a pool while another Python thread is
    computing with it.

    The library does not touch OpenBLAS's own thread count: with a pool of
    more than one thread, run with OPENBLAS_NUM_THREADS=1 (set before the
    library and numpy are loaded), or both kinds of threads compete for cores.
    """

    def __init__(self, threads=0):
        self._handle = None
        self._closed = False
        self._users = {}  # id(user) -> weakref to an attached Model / Workspace
        threads = int(threads)
        if threads < 0:
            raise ValueError("threads must be >= 0 (0: one per online CPU), got %d" % threads)
        handle = ctypes.c_void_p()
        # There is no pool yet to hold a message: the status says it all.
        _check(_lib.aim_threadpool_create(None, threads, ctypes.byref(handle)), "aim_threadpool_create")
        self._handle = handle.value

    def _h(self):
        if self._closed or self._handle is None:
            raise ValueError("the ThreadPool is closed")
        return self._handle

    @property
    def handle(self):
        """The raw aim_threadpool* as an int (for advanced use with `lib`)."""
        return self._h()

    def threads(self):
        """aim_threadpool_threads(): the thread count, the caller's included."""
        return int(_lib.aim_threadpool_threads(self._h()))

    def set_min_work(self, multiply_adds):
        """aim_threadpool_set_min_work(): the least forward work (multiply-adds)
        each thread's slice must carry for a batch to be split (default 1e6)."""
        if int(multiply_adds) < 0:
            raise ValueError("multiply_adds must be >= 0")
        _check(_lib.aim_threadpool_set_min_work(self._h(), ctypes.c_uint64(int(multiply_adds))),
               "aim_threadpool_set_min_work")

    def last_error(self):
        """aim_threadpool_last_error(): why sizing the per-thread scratch
        last failed ("" if it never did)."""
        return _decode(_lib.aim_threadpool_last_error(self._h()))

    def attached(self):
        """The live Model and Workspace objects currently using this pool."""
        live = []
        for key, ref in list(self._users.items()):
            user = ref()
            if user is None:
                self._users.pop(key, None)
            else:
                live.append(user)
        return live

    # bookkeeping for Model / Workspace
    def _attach(self, user):
        self._users[id(user)] = weakref.ref(user)

    def _release(self, user):
        self._users.pop(id(user), None)
        self._free_if_unused()

    def _free_if_unused(self):
        if self._closed and self._handle is not None and not self.attached() and _lib is not None:
            handle, self._handle = self._handle, None
            _lib.aim_threadpool_free(handle)

    def close(self):
        """Detaches every model and workspace still using the pool (see the
        class docstring), then stops the workers and frees the pool. Later
        calls do nothing."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for user in self.attached():
            if user._detach_threadpool(self):
                self._users.pop(id(user), None)
        self._free_if_unused()

    @property
    def closed(self):
        """Whether close() was called."""
        return self._closed

    def __repr__(self):
        if self._closed:
            return "<aimodel.ThreadPool closed>"
        return "<aimodel.ThreadPool %d threads, %d attached>" % (self.threads(), len(self.attached()))


def _rebind(user, pool):
    """Records that `user` (a Model or Workspace) now uses `pool` (or none)."""
    old, user._threadpool = user._threadpool, pool
    if pool is not None:
        pool._attach(user)
    if old is not None and old is not pool:
        old._release(user)


# ---------------------------------------------------------------------------
# workspace


class Workspace(_Closing):
    """aim_workspace: the memory one thread needs for Model.predict_with()
    on a shared, read-only model. Serves any model of the same architecture.
    With threadpool=ThreadPool(...) (or set_threadpool()) each predict_with()
    call splits large batches over the pool's threads."""

    def __init__(self, model, max_batch=256, threadpool=None):
        self._handle = None
        self._threadpool = None
        handle = ctypes.c_void_p()
        mh = model._h()
        # The model is const here and there is no workspace yet: no message.
        _check(_lib.aim_workspace_create(mh, None, int(max_batch), ctypes.byref(handle)), "aim_workspace_create")
        self._handle = handle.value
        self._model_ref = weakref.ref(model)  # the model to size / detach a pool with
        self.max_batch = int(max_batch)
        if threadpool is not None:
            self.set_threadpool(threadpool, model)

    def _h(self):
        if self._handle is None:
            raise ValueError("the Workspace is closed")
        return self._handle

    def last_error(self):
        """aim_workspace_last_error(): why the last failed predict through
        this workspace failed ("" if none has)."""
        return _decode(_lib.aim_workspace_last_error(self._h()))

    def reset_steps(self):
        """aim_workspace_reset_steps(): the next Model.predict_step() feeds
        position 0 of new sequences."""
        _check(_fn("aim_workspace_reset_steps")(self._h()), "aim_workspace_reset_steps")

    @property
    def step_position(self):
        """aim_workspace_step_position(): positions the sequences hold."""
        out = ctypes.c_size_t()
        _check(_fn("aim_workspace_step_position")(self._h(), ctypes.byref(out)), "aim_workspace_step_position")
        return int(out.value)

    @property
    def handle(self):
        """The raw aim_workspace* as an int (for advanced use with `lib`)."""
        return self._h()

    @property
    def threadpool(self):
        """The ThreadPool this workspace uses, or None."""
        return self._threadpool

    def set_threadpool(self, pool, model=None):
        """aim_workspace_set_threadpool(): predict_with() through this
        workspace splits large batches over `pool` (a ThreadPool), or runs on
        the calling thread again with None. `model` (a compiled Model it
        serves; default: the one it was created for) sizes the pool's
        per-thread scratch. The workspace keeps a reference to the pool until
        close() or the next set_threadpool(). Returns self."""
        if model is None:
            model = self._model_ref()
            if model is None:
                raise ValueError("the Workspace's model is gone: pass the model it serves")
        ph = pool._h() if pool is not None else None
        wh, mh = self._h(), model._h()
        _check(_lib.aim_workspace_set_threadpool(wh, mh, ph), "aim_workspace_set_threadpool",
               lambda: _decode(_lib.aim_workspace_last_error(wh)))
        self._model_ref = weakref.ref(model)
        _rebind(self, pool)
        return self

    def _detach_threadpool(self, pool):
        """For ThreadPool.close(): True once the C workspace no longer uses
        `pool`; False when it cannot be detached (its model is closed)."""
        if self._threadpool is not pool or self._handle is None:
            return True
        model = self._model_ref()
        if model is None or model._handle is None or _lib is None:
            return False
        if _lib.aim_workspace_set_threadpool(self._handle, model._handle, None) != Status.OK:
            return False
        self._threadpool = None
        return True

    def close(self):
        """Frees the workspace once (and drops its pool); later calls do nothing."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and _lib is not None:
            _lib.aim_workspace_free(handle)
        pool, self._threadpool = getattr(self, "_threadpool", None), None
        if pool is not None:
            pool._release(self)  # after the free: a closed pool may now go


# ---------------------------------------------------------------------------
# model

# Functions taking `const aim_model *`: they cannot set the model's message
# (and the library does not clear it on success), so their AimError carries
# an empty message rather than a stale one.
_CONST_MODEL_FUNCTIONS = frozenset([
    "aim_model_output", "aim_model_input_gradient", "aim_model_layer_shape", "aim_model_layer_parameters",
    "aim_model_memory_size", "aim_model_serialized_size", "aim_model_serialize",
    "aim_model_last_node", "aim_model_output_node", "aim_model_layer_buffers", "aim_model_input_dtype",
    "aim_workspace_size", "aim_workspace_create",
])


class Model(_keras.TrainingMixin, _Closing):
    """A model (aim_model): a graph of layers, a chain unless branched.

    >>> m = Model(784)
    >>> m.add_dense(64, "relu").add_dense(10)
    >>> m.compile(max_batch=32, seed=42)

    A residual block: the block's input added to the output of two layers.

    >>> m = Model(20)
    >>> skip = m.add_dense(20, "relu").last_node()
    >>> y = m.add_dense(20, "relu").add_dense(20).last_node()
    >>> m.add_add([y, skip]).add_activation("relu").add_dense(3)

    Words as character ids: an int32 input read by an embedding.

    >>> m = Model(12, dtype="int32")           # 12 ids per sample
    >>> m.add_embedding(30, 16).add_gru(32, bidirectional=True).add_dense(5)
    """

    #: Samples per aim_model_predict() call (and the internal workspace size).
    PREDICT_BATCH = 256

    def __init__(self, input_shape, dtype=None):
        """A model of one input of sample shape `input_shape` (an int or a
        tuple); dtype="int32" makes it an input of ids (set_input_dtype())."""
        shape = (int(input_shape),) if np.isscalar(input_shape) else tuple(int(d) for d in input_shape)
        dims = (ctypes.c_size_t * max(len(shape), 1))(*shape)
        handle = ctypes.c_void_p()
        _check(_lib.aim_model_create(None, len(shape), dims, ctypes.byref(handle)), "aim_model_create")
        self._handle = handle.value
        self._workspace = None
        self._threadpool = None
        self.compiled = False
        self._init_training(layers=[])
        if dtype is not None:
            try:
                self.set_input_dtype(0, dtype)
            except BaseException:
                self.close()
                raise

    @classmethod
    def _from_handle(cls, handle):
        self = cls.__new__(cls)
        self._handle = handle
        self._workspace = None
        self._threadpool = None
        self.compiled = True
        self._init_training(layers=None)
        return self

    def _init_training(self, layers):
        """The Python-side state of the Keras-style methods: the layer
        kinds recorded by add_* (None: read them from serialize()), compile's
        max_batch and seed, the optimizer, loss and metrics."""
        self._layers = layers
        self._max_batch = None
        self._seed = 0
        #: The Optimizer fit() steps (compile(optimizer=...), or load()'s).
        self.optimizer = None
        self._loss = None
        self._metrics = []
        #: The History of the last fit().
        self.history = None

    # -- plumbing
    def _h(self):
        if self._handle is None:
            raise ValueError("the Model is closed")
        return self._handle

    def last_error(self):
        """aim_model_last_error(): the message of the last failed call ("" if none)."""
        return _decode(_lib.aim_model_last_error(self._h()))

    def _call(self, name, *args):
        h = self._h()
        fn = _fn(name)
        # A function that takes the model as const cannot record a message:
        # what aim_model_last_error() holds then belongs to an earlier failure.
        last_error = None if name in _CONST_MODEL_FUNCTIONS else (lambda: _decode(_lib.aim_model_last_error(h)))
        record = self._layers is not None and name.startswith("aim_model_add_") and name != "aim_model_add_input"
        if record:
            # summary() shows each layer's kind and the nodes it reads, which
            # the C API does not report: recorded here, as the layer is added.
            if name in ("aim_model_add_add", "aim_model_add_concat"):
                inputs = tuple(int(args[0][i]) for i in range(int(args[1])))
            else:
                inputs = (self.last_node(),)
            kind = name[len("aim_model_add_"):]
            if kind == "rnn":
                kind = "lstm" if int(args[0]) == RnnKind.LSTM else "gru"
        _check(fn(h, *args), name, last_error)
        if record:
            self._layers.append((kind, inputs))

    @property
    def handle(self):
        """The raw aim_model* as an int (for advanced use with `lib`)."""
        return self._h()

    # -- building
    def add_dense(self, units, activation=Activation.IDENTITY, alpha=None, use_bias=True,
                  init=Init.GLOROT_UNIFORM):
        """A fully connected layer of `units` outputs over the flattened
        sample (weights [units, inputs], PyTorch's nn.Linear layout), then
        `activation`. Returns self."""
        cfg = DenseConfig()
        _check(_lib.aim_dense_config_init(ctypes.byref(cfg), int(units), int(_enum(Activation, activation))),
               "aim_dense_config_init")
        if alpha is not None:
            cfg.alpha = alpha
        cfg.use_bias = 1 if use_bias else 0
        cfg.init = int(_enum(Init, init))
        self._call("aim_model_add_dense", ctypes.byref(cfg))
        return self

    def add_activation(self, activation, alpha=0.01):
        """An activation layer (alpha: leaky ReLU's slope). Returns self."""
        self._call("aim_model_add_activation", int(_enum(Activation, activation)), alpha)
        return self

    def add_conv2d(self, filters, kernel, stride=1, padding=Padding.VALID, activation=Activation.IDENTITY,
                   dilation=1, groups=1, alpha=None, use_bias=True, init=Init.GLOROT_UNIFORM):
        """A 2-D convolution over C x H x W samples. `padding` is a Padding
        (or "valid"/"same"), or explicit zeros: an int for all sides, a pair
        (rows, cols) for both sides, or (top, bottom, left, right)."""
        kh, kw = _pair(kernel, "kernel")
        cfg = Conv2dConfig()
        _check(_lib.aim_conv2d_config_init(ctypes.byref(cfg), int(filters), kh, kw,
                                           int(_enum(Activation, activation))), "aim_conv2d_config_init")
        cfg.stride_h, cfg.stride_w = _pair(stride, "stride")
        cfg.dilation_h, cfg.dilation_w = _pair(dilation, "dilation")
        cfg.groups = int(groups)
        if isinstance(padding, (str, Padding)):
            cfg.padding = int(_enum(Padding, padding))
        else:
            if isinstance(padding, (tuple, list)) and len(padding) == 4:
                top, bottom, left, right = (int(p) for p in padding)
            else:
                top, left = _pair(padding, "padding")
                bottom, right = top, left
            cfg.padding = int(Padding.EXPLICIT)
            cfg.pad_top, cfg.pad_bottom, cfg.pad_left, cfg.pad_right = top, bottom, left, right
        if alpha is not None:
            cfg.alpha = alpha
        cfg.use_bias = 1 if use_bias else 0
        cfg.init = int(_enum(Init, init))
        self._call("aim_model_add_conv2d", ctypes.byref(cfg))
        return self

    def _pool(self, name, kernel, stride, padding):
        kh, kw = _pair(kernel, "kernel")
        cfg = Pool2dConfig()
        _check(_lib.aim_pool2d_config_init(ctypes.byref(cfg), kh, kw), "aim_pool2d_config_init")
        if stride is not None:
            cfg.stride_h, cfg.stride_w = _pair(stride, "stride")
        cfg.pad_h, cfg.pad_w = _pair(padding, "padding")
        self._call(name, ctypes.byref(cfg))
        return self

    def add_max_pool2d(self, kernel, stride=None, padding=0):
        """Max pooling; stride defaults to the window (PyTorch/Keras)."""
        return self._pool("aim_model_add_max_pool2d", kernel, stride, padding)

    def add_avg_pool2d(self, kernel, stride=None, padding=0):
        """Average pooling; stride defaults to the window; padding counts in the divisor."""
        return self._pool("aim_model_add_avg_pool2d", kernel, stride, padding)

    def add_global_avg_pool2d(self):
        """The mean over H and W: (C, H, W) to (C). Returns self."""
        self._call("aim_model_add_global_avg_pool2d")
        return self

    def add_flatten(self):
        """Flattens a sample to one axis. Returns self."""
        self._call("aim_model_add_flatten")
        return self

    def add_lstm(self, hidden, layers=1, return_sequences=False, bidirectional=False, init=None):
        """A stack of LSTM layers over [time, features] samples (PyTorch
        nn.LSTM, batch_first). init defaults to the C default (PYTORCH).
        bidirectional=True (aim_model_add_rnn) adds a reverse direction per
        layer; the output is then [time, 2*hidden] or [2*hidden]: the
        directions concatenated as PyTorch does."""
        if not bidirectional:
            cfg = LstmConfig()
            _check(_lib.aim_lstm_config_init(ctypes.byref(cfg), int(hidden), int(layers)), "aim_lstm_config_init")
            cfg.return_sequences = 1 if return_sequences else 0
            if init is not None:
                cfg.init = int(_enum(Init, init))
            self._call("aim_model_add_lstm", ctypes.byref(cfg))
            return self
        cfg = self._rnn_config(hidden, layers, return_sequences, bidirectional, init)
        self._call("aim_model_add_rnn", int(RnnKind.LSTM), ctypes.byref(cfg))
        return self

    @staticmethod
    def _rnn_config(hidden, layers, return_sequences, bidirectional, init):
        cfg = RnnConfig()
        _check(_fn("aim_rnn_config_init")(ctypes.byref(cfg), int(hidden), int(layers)), "aim_rnn_config_init")
        cfg.return_sequences = 1 if return_sequences else 0
        cfg.bidirectional = 1 if bidirectional else 0
        if init is not None:
            cfg.init = int(_enum(Init, init))
        return cfg

    def add_gru(self, hidden, layers=1, return_sequences=False, bidirectional=False, init=None):
        """A stack of GRU layers over [time, features] samples (PyTorch
        nn.GRU, batch_first, gates r, z, n): output [time, D*hidden] with
        return_sequences, else the final hidden states [D*hidden] (D = 2
        when bidirectional: forward then reverse). init defaults to the C
        default (PYTORCH: U(-1/sqrt(hidden), 1/sqrt(hidden)))."""
        cfg = self._rnn_config(hidden, layers, return_sequences, bidirectional, init)
        self._call("aim_model_add_gru", ctypes.byref(cfg))
        return self

    def add_batch_norm(self, momentum=0.1, eps=1e-5, affine=True):
        """Batch normalization over the channels (axis 0) of each sample
        (PyTorch nn.BatchNorm1d / nn.BatchNorm2d): batch statistics in
        training, which also update the running mean and unbiased variance
        (buffers()); the running statistics in inference."""
        cfg = BatchNormConfig()
        _check(_fn("aim_batch_norm_config_init")(ctypes.byref(cfg)), "aim_batch_norm_config_init")
        cfg.momentum, cfg.eps, cfg.affine = float(momentum), float(eps), 1 if affine else 0
        self._call("aim_model_add_batch_norm", ctypes.byref(cfg))
        return self

    def add_dropout(self, p):
        """Dropout (PyTorch nn.Dropout): in training each element is zeroed
        with probability p, the others scaled by 1/(1-p); the identity in
        inference. Masks come from the model's random stream."""
        self._call("aim_model_add_dropout", float(p))
        return self

    def add_layer_norm(self, normalized_dims=1, eps=1e-5, elementwise_affine=True):
        """Layer normalization (PyTorch nn.LayerNorm) over the last
        `normalized_dims` axes of each sample."""
        cfg = LayerNormConfig()
        _check(_fn("aim_layer_norm_config_init")(ctypes.byref(cfg)), "aim_layer_norm_config_init")
        cfg.normalized_dims, cfg.eps = int(normalized_dims), float(eps)
        cfg.elementwise_affine = 1 if elementwise_affine else 0
        self._call("aim_model_add_layer_norm", ctypes.byref(cfg))
        return self

    def add_embedding(self, num, dim, padding_idx=None, init=None):
        """An embedding table (PyTorch nn.Embedding) of `num` rows of `dim`
        floats, reading an int32 input (see set_input_dtype()) of shape S
        (rank 1 or 2): output S + (dim,). padding_idx: a row that starts at
        zero and gets no gradient; negative counts from the end, as in
        PyTorch. init defaults to the C default (PYTORCH: N(0, 1))."""
        cfg = EmbeddingConfig()
        _check(_fn("aim_embedding_config_init")(ctypes.byref(cfg), int(num), int(dim)), "aim_embedding_config_init")
        if padding_idx is not None:
            row = int(padding_idx) + (int(num) if int(padding_idx) < 0 else 0)
            if row < 0:
                raise ValueError("padding_idx %d is outside [-%d, %d)" % (int(padding_idx), int(num), int(num)))
            cfg.has_padding, cfg.padding_idx = 1, row
        if init is not None:
            cfg.init = int(_enum(Init, init))
        self._call("aim_model_add_embedding", ctypes.byref(cfg))
        return self

    def add_attention(self, num_heads, causal=False, dropout=0.0, bias=True, init=None):
        """Multi-head self-attention (PyTorch nn.MultiheadAttention with
        batch_first, query = key = value) over a (time, embed) sample;
        parameters in_proj_weight, in_proj_bias, out_proj.weight,
        out_proj.bias in that order. causal: position i attends to <= i.
        dropout: on the attention weights in training. init defaults to the
        C default (PYTORCH: PyTorch's own)."""
        cfg = AttentionConfig()
        _check(_fn("aim_attention_config_init")(ctypes.byref(cfg), int(num_heads)), "aim_attention_config_init")
        cfg.causal = 1 if causal else 0
        cfg.dropout = float(dropout)
        cfg.bias = 1 if bias else 0
        if init is not None:
            cfg.init = int(_enum(Init, init))
        self._call("aim_model_add_attention", ctypes.byref(cfg))
        return self

    def add_positional_embedding(self, max_positions):
        """A learned positional embedding (GPT-2's wpe): a (max_positions,
        embed) table whose first `time` rows are added to a (time, embed)
        sample."""
        self._call("aim_model_add_positional_embedding", int(max_positions))
        return self

    def add_linear(self, units, activation=Activation.IDENTITY, alpha=None, use_bias=True,
                   init=Init.GLOROT_UNIFORM):
        """A dense layer over the last axis of each sample (PyTorch
        nn.Linear on a sequence): (..., in) -> (..., units)."""
        cfg = DenseConfig()
        _check(_lib.aim_dense_config_init(ctypes.byref(cfg), int(units), int(_enum(Activation, activation))),
               "aim_dense_config_init")
        if alpha is not None:
            cfg.alpha = alpha
        cfg.use_bias = 1 if use_bias else 0
        cfg.init = int(_enum(Init, init))
        self._call("aim_model_add_linear", ctypes.byref(cfg))
        return self

    def add_conv1d(self, filters, kernel, stride=1, padding=Padding.VALID, activation=Activation.IDENTITY,
                   dilation=1, groups=1, alpha=None, use_bias=True, init=Init.GLOROT_UNIFORM):
        """A 1-D convolution over (C, L) samples (PyTorch nn.Conv1d, weights
        (filters, C/groups, kernel)). `padding` is a Padding (or
        "valid"/"same"), or explicit zeros: an int for both ends or a pair
        (left, right)."""
        cfg = Conv1dConfig()
        _check(_fn("aim_conv1d_config_init")(ctypes.byref(cfg), int(filters), int(kernel),
                                             int(_enum(Activation, activation))), "aim_conv1d_config_init")
        cfg.stride, cfg.dilation, cfg.groups = int(stride), int(dilation), int(groups)
        if isinstance(padding, (str, Padding)):
            cfg.padding = int(_enum(Padding, padding))
        else:
            cfg.padding = int(Padding.EXPLICIT)
            cfg.pad_left, cfg.pad_right = _pair(padding, "padding")
        if alpha is not None:
            cfg.alpha = alpha
        cfg.use_bias = 1 if use_bias else 0
        cfg.init = int(_enum(Init, init))
        self._call("aim_model_add_conv1d", ctypes.byref(cfg))
        return self

    def _pool1d(self, name, kernel, stride, padding):
        cfg = Pool1dConfig()
        _check(_fn("aim_pool1d_config_init")(ctypes.byref(cfg), int(kernel)), "aim_pool1d_config_init")
        if stride is not None:
            cfg.stride = int(stride)
        cfg.pad = int(padding)
        self._call(name, ctypes.byref(cfg))
        return self

    def add_max_pool1d(self, kernel, stride=None, padding=0):
        """1-D max pooling over (C, L) (nn.MaxPool1d); stride defaults to the window."""
        return self._pool1d("aim_model_add_max_pool1d", kernel, stride, padding)

    def add_avg_pool1d(self, kernel, stride=None, padding=0):
        """1-D average pooling (nn.AvgPool1d, padding counts in the divisor); stride defaults to the window."""
        return self._pool1d("aim_model_add_avg_pool1d", kernel, stride, padding)

    def add_global_avg_pool1d(self):
        """The mean over L: (C, L) to (C)."""
        self._call("aim_model_add_global_avg_pool1d")
        return self

    def add_global_max_pool1d(self):
        """The maximum over L: (C, L) to (C)."""
        self._call("aim_model_add_global_max_pool1d")
        return self

    def compile(self, max_batch=None, seed=0, input_gradient=False, rng=None, optimizer=None, loss=None,
                metrics=None):
        """Allocates the model's memory for `max_batch` samples (default 32)
        and initializes the weights from `seed` (or from an Rng); returns
        self.

        The Keras-style keywords set what fit() and evaluate() use:
        optimizer: "adam", "sgd", "rmsprop" (their default learning rates
        1e-3, 1e-2, 1e-3) or an Optimizer such as Adam(learning_rate=3e-4)
        (bound to this model's parameters here); loss: a Keras name
        ("sparse_categorical_crossentropy" on logits with int labels,
        "categorical_crossentropy" on logits with probability targets,
        "mse", "binary_crossentropy" on probabilities, "bce_with_logits")
        or a LossKind; metrics: a list of "accuracy", "mae", "mse". On a
        model compiled already (e.g. from load()) with max_batch left out,
        only these are set: the weights stay."""
        if self.compiled and max_batch is None and rng is None and not input_gradient and (
                optimizer is not None or loss is not None or metrics is not None):
            self._set_training(optimizer, loss, metrics)
            return self
        max_batch = 32 if max_batch is None else max_batch
        cfg = CompileConfig()
        _check(_lib.aim_compile_config_init(ctypes.byref(cfg)), "aim_compile_config_init")
        cfg.max_batch = int(max_batch)
        cfg.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        cfg.input_gradient = 1 if input_gradient else 0
        cfg.rng = rng.handle if rng is not None else None
        self._call("aim_model_compile", ctypes.byref(cfg))
        self.compiled = True
        self._max_batch = int(max_batch)
        self._seed = int(seed)
        self._set_training(optimizer, loss, metrics)
        return self

    @property
    def max_batch(self):
        """The largest batch compile() sized the model for (that of the
        file for a deserialized model); None before compile()."""
        return self._max_batch

    # -- graphs
    def add_input(self, shape, dtype=None):
        """aim_model_add_input(): another model input of sample shape
        `shape` (an int or a tuple); returns its node id, model_input(k).
        The current node does not change. dtype="int32" makes it an input
        of ids (set_input_dtype())."""
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
        dims = (ctypes.c_size_t * max(len(shape), 1))(*shape)
        node = ctypes.c_size_t()
        self._call("aim_model_add_input", len(shape), dims, ctypes.byref(node))
        if dtype is not None:
            self.set_input_dtype(_SIZE_MAX - int(node.value), dtype)
        return int(node.value)

    def set_input_dtype(self, index, dtype):
        """aim_model_set_input_dtype(): input `index` holds `dtype` ("int32"
        token ids, read only by embeddings, or "float32"). Before compile()
        and before any layer reads the input. Returns self."""
        self._call("aim_model_set_input_dtype", int(index), int(_dtype(dtype)))
        return self

    def input_dtype(self, index=0):
        """aim_model_input_dtype(): what input `index` holds, a Dtype (also
        right for a deserialized model). FLOAT32 on a 1.0 library, which
        has only float inputs."""
        if "aim_model_input_dtype" in _missing:
            self._h()
            if not 0 <= int(index) < self.input_count:
                raise AimError(Status.ERR_INVALID_ARGUMENT, "aim_model_input_dtype")
            return Dtype.FLOAT32
        out = c_enum()
        self._call("aim_model_input_dtype", int(index), ctypes.byref(out))
        return Dtype(out.value)

    @property
    def input_dtypes(self):
        """The Dtype of every input."""
        return [self.input_dtype(k) for k in range(self.input_count)]

    def last_node(self):
        """aim_model_last_node(): the current node's id (the node the next
        add_* reads): the last layer added, the node given to
        continue_from(), or model_input(0) for a model without layers."""
        node = ctypes.c_size_t()
        self._call("aim_model_last_node", ctypes.byref(node))
        return int(node.value)

    def continue_from(self, node):
        """aim_model_continue_from(): the next add_* reads `node` (a layer
        index or model_input(k)): how a graph branches. Returns self."""
        self._call("aim_model_continue_from", int(node))
        return self

    @staticmethod
    def _nodes(nodes):
        ids = [int(n) for n in nodes]
        return (ctypes.c_size_t * max(len(ids), 1))(*ids), len(ids)

    def add_add(self, nodes):
        """aim_model_add_add(): the element-wise sum of the outputs of
        `nodes` (ids, of one shape); it becomes the current node. Returns self."""
        array, count = self._nodes(nodes)
        self._call("aim_model_add_add", array, count)
        return self

    def add_concat(self, nodes, axis=0):
        """aim_model_add_concat(): the outputs of `nodes` joined along `axis`
        of one sample (0: features, channels or time); it becomes the
        current node. Returns self."""
        array, count = self._nodes(nodes)
        self._call("aim_model_add_concat", array, count, int(axis))
        return self

    def set_outputs(self, nodes, loss_weights=None):
        """aim_model_set_outputs(): the model's outputs are the layers
        `nodes`, output k's loss gradient scaled by loss_weights[k] (all 1
        when None). Returns self."""
        array, count = self._nodes(nodes)
        if loss_weights is None:
            self._call("aim_model_set_outputs", array, None, count)
        else:
            w = _f32(loss_weights).ravel()
            if w.size != count:
                raise ValueError("%d loss weights for %d outputs" % (w.size, count))
            self._call("aim_model_set_outputs", array, _fptr(w), count)
        return self

    @property
    def input_count(self):
        """aim_model_input_count(): the model's inputs."""
        return int(_lib.aim_model_input_count(self._h()))

    @property
    def output_count(self):
        """aim_model_output_count(): the model's outputs."""
        return int(_lib.aim_model_output_count(self._h()))

    def output_node(self, index=0):
        """aim_model_output_node(): the layer index of output `index`."""
        node = ctypes.c_size_t()
        self._call("aim_model_output_node", int(index), ctypes.byref(node))
        return int(node.value)

    # -- queries
    @property
    def layer_count(self):
        """aim_model_layer_count(): the layers added."""
        return int(_lib.aim_model_layer_count(self._h()))

    @property
    def input_size(self):
        """aim_model_input_size(): floats in one sample of input 0."""
        return int(_lib.aim_model_input_size(self._h()))

    @property
    def output_size(self):
        """aim_model_output_size(): floats in one sample of output 0."""
        return int(_lib.aim_model_output_size(self._h()))

    def layer_shape(self, layer):
        """The shape of one output sample of node `layer`: a layer index
        (negative counts from the end) or model_input(k)."""
        layer = int(layer)
        if layer < 0:
            layer += self.layer_count
        rank = ctypes.c_size_t()
        dims = (ctypes.c_size_t * 4)()
        self._call("aim_model_layer_shape", layer, ctypes.byref(rank), dims)
        return tuple(int(dims[i]) for i in range(rank.value))

    def input_shape_of(self, index=0):
        """The sample shape of input `index`, as the library holds it."""
        return self.layer_shape(model_input(index))

    def output_shape_of(self, index=0):
        """The sample shape of output `index`."""
        return self.layer_shape(self.output_node(index))

    @property
    def input_shape(self):
        """The sample shape of input 0, e.g. (784,) or (1, 28, 28)."""
        return self.input_shape_of(0)

    @property
    def input_shapes(self):
        """The sample shape of every input."""
        return [self.input_shape_of(k) for k in range(self.input_count)]

    @property
    def output_shape(self):
        """The sample shape of output 0 (the input's for a model without layers)."""
        return self.output_shape_of(0) if self.layer_count else self.input_shape

    @property
    def output_shapes(self):
        """The sample shape of every output."""
        return [self.output_shape_of(k) for k in range(self.output_count)]

    @property
    def memory_size(self):
        """aim_model_memory_size(): the bytes compile() allocated."""
        out = ctypes.c_size_t()
        self._call("aim_model_memory_size", ctypes.byref(out))
        return out.value

    def layer_parameters(self, layer):
        """(offset, weight_count, bias_count) of layer `layer` in parameters()."""
        off, nw, nb = ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
        self._call("aim_model_layer_parameters", int(layer), ctypes.byref(off), ctypes.byref(nw), ctypes.byref(nb))
        return off.value, nw.value, nb.value

    def layer_buffers(self, layer):
        """(offset, count) of layer `layer`'s buffers in buffers() (count 0
        for kinds without; batch norm: running_mean [C] then running_var [C])."""
        off, count = ctypes.c_size_t(), ctypes.c_size_t()
        self._call("aim_model_layer_buffers", int(layer), ctypes.byref(off), ctypes.byref(count))
        return off.value, count.value

    def set_random_seed(self, seed):
        """aim_model_set_random_seed(): restarts the model's random stream
        (dropout masks) from `seed`. After compile(). Returns self."""
        self._call("aim_model_set_random_seed", ctypes.c_uint64(int(seed) & 0xFFFFFFFFFFFFFFFF))
        return self

    # -- buffers (views, see the module docstring for lifetimes)
    def _buffer(self, name):
        ptr, count = c_float_p(), ctypes.c_size_t()
        self._call(name, ctypes.byref(ptr), ctypes.byref(count))
        return _view(ptr, count.value, self)

    def parameters(self):
        """The flat parameter buffer as a float32 numpy view (no copy; writes
        go to the model). Valid until close()."""
        return self._buffer("aim_model_parameters")

    def gradients(self):
        """The flat gradient buffer as a float32 numpy view (no copy). Valid until close()."""
        return self._buffer("aim_model_gradients")

    def buffers(self):
        """The model's buffers (state not trained by gradients: batch norm's
        running statistics, in layer order) as a float32 numpy view (no
        copy; writes go to the model, e.g. to import running statistics);
        empty when the model has none. Valid until close()."""
        return self._buffer("aim_model_buffers")

    # -- training
    def zero_grad(self):
        """aim_model_zero_grad(): sets gradients() to zero (backward adds into it)."""
        self._call("aim_model_zero_grad")

    def _inputs(self, x, batch=None):
        """The arrays for each input, checked against its shape and dtype
        (one array, or a list of one per input for a model with several):
        float32 for a float input, int32 for an input of ids. Returns
        (arrays, ids) where ids[k] tells whether input k holds ids."""
        n_in = self.input_count
        if n_in == 1:
            if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
                x = x[0]
            xs = [x]
        elif not isinstance(x, (list, tuple)) or len(x) != n_in:
            raise ValueError("the model has %d inputs: pass a list of %d arrays" % (n_in, n_in))
        else:
            xs = list(x)
        arrays, ids = [], []
        for k, xk in enumerate(xs):
            is_ids = self.input_dtype(k) == Dtype.INT32
            what = "input %d" % k if n_in > 1 or is_ids else ""
            rows = arrays[0].shape[0] if arrays else batch
            if is_ids:
                arrays.append(_ids_array(xk, self.input_shape_of(k), what, rows))
            else:
                arrays.append(_batch_array(xk, self.input_shape_of(k), what, rows))
            ids.append(is_ids)
        return arrays, ids

    def forward(self, x, mode=Mode.TRAIN):
        """Runs the forward pass on (batch, *input_shape) samples in the
        model's own memory (a list of one array per input for a model with
        several; integer arrays for inputs of ids); returns the batch size.
        See output()."""
        xs, ids = self._inputs(x)
        batch = xs[0].shape[0]
        mode = int(_enum(Mode, mode))
        if len(xs) == 1 and ids[0]:
            self._call("aim_model_forward_ids", mode, xs[0].ctypes.data_as(c_int32_p), xs[0].size, batch)
        elif len(xs) == 1:
            self._call("aim_model_forward", mode, _fptr(xs[0]), xs[0].size, batch)
        elif any(ids):
            ptrs = (ctypes.c_void_p * len(xs))(*[a.ctypes.data for a in xs])
            counts = (ctypes.c_size_t * len(xs))(*[a.size for a in xs])
            self._call("aim_model_forward_typed", mode, ptrs, counts, len(xs), batch)
        else:
            ptrs = (c_float_p * len(xs))(*[_fptr(a) for a in xs])
            counts = (ctypes.c_size_t * len(xs))(*[a.size for a in xs])
            self._call("aim_model_forward_multi", mode, ptrs, counts, len(xs), batch)
        return batch

    def output(self, index=0, copy=True):
        """Output `index` of the last forward as (batch, *its shape). A copy
        by default; copy=False gives a view valid until the next forward."""
        if isinstance(index, bool):
            raise TypeError("output(index=0, copy=True): the first argument is the output index")
        ptr, count = c_float_p(), ctypes.c_size_t()
        self._call("aim_model_output", int(index), ctypes.byref(ptr), ctypes.byref(count))
        sample = self.output_shape_of(index)
        size = int(np.prod(sample))
        view = _view(ptr, count.value, self, (count.value // max(size, 1),) + sample)
        return view.copy() if copy else view

    def loss_sparse(self, labels, output=0):
        """Softmax cross-entropy of output `output` (logits) of the last
        forward against int labels, one per sample (N,), or, on an output of
        rank >= 2 such as (time, vocab) logits, one per position (N, time):
        each position's softmax over the last axis. Keeps the gradient for
        backward(). Returns the mean loss."""
        y = np.ascontiguousarray(labels, dtype=np.int32)
        if y.ndim not in (1, 2):
            raise ValueError("labels: expected an array of shape (N,) or (N, positions), got %s"
                             % _shape_str(y.shape))
        y = y.reshape(-1)
        out = ctypes.c_float()
        self._call("aim_model_loss_sparse", int(output), y.ctypes.data_as(c_int32_p), y.size, ctypes.byref(out))
        return out.value

    def _output_array(self, array, output, what):
        """`array` checked against output `output`'s sample shape; an output
        of one float also takes a (N,) array."""
        sample = self.output_shape_of(output)
        a = _f32(array)
        if sample == (1,) and a.ndim == 1:
            a = a.reshape(-1, 1)
        return _batch_array(a, sample, what)

    def loss(self, kind, targets, output=0):
        """A loss (LossKind) of output `output` of the last forward against
        float targets of (batch, *its shape); keeps the gradient for
        backward(). Returns the mean loss."""
        t = self._output_array(targets, output, "targets")
        out = ctypes.c_float()
        self._call("aim_model_loss", int(output), int(_enum(LossKind, kind)), _fptr(t), t.size, ctypes.byref(out))
        return out.value

    def set_output_grad(self, grad, output=0):
        """aim_model_set_output_grad(): d loss / d output `output`, used as
        given by the next backward()."""
        g = self._output_array(grad, output, "grad")
        self._call("aim_model_set_output_grad", int(output), _fptr(g), g.size)

    def backward(self, output_grad=None):
        """Backpropagates (adding into gradients()) from d loss / d output
        (a one-output model), or from the gradients kept by the losses and
        set_output_grad() when None."""
        if output_grad is None:
            self._call("aim_model_backward", None, 0)
        else:
            # The library checks the count against the last forward's batch.
            g = self._output_array(output_grad, 0, "output_grad")
            self._call("aim_model_backward", _fptr(g), g.size)

    def input_gradient(self, index=0):
        """d loss / d input `index` of the last backward (compile with
        input_gradient=True), as a copy shaped like that input's batch."""
        ptr, count = c_float_p(), ctypes.c_size_t()
        self._call("aim_model_input_gradient", int(index), ctypes.byref(ptr), ctypes.byref(count))
        sample = self.input_shape_of(index)
        size = int(np.prod(sample))
        return _view(ptr, count.value, self, (count.value // max(size, 1),) + sample).copy()

    def lstm_set_state(self, layer, h0=None, c0=None, batch=None):
        """Initial (h0, c0), each [D*layers, batch, hidden] (D = 2 for a
        bidirectional stack), of LSTM layer `layer` for forwards of exactly
        that batch; both None to reset."""
        if h0 is None and c0 is None:
            self._call("aim_model_lstm_set_state", int(layer), None, 0, None, 0, int(batch or 1))
            return
        if h0 is None or c0 is None:
            raise ValueError("give both h0 and c0, or neither")
        h = _f32(h0)
        c = _f32(c0)
        if h.ndim != 3 or h.shape != c.shape:
            raise ValueError("h0 and c0 must both be [layers, batch, hidden], got %s and %s"
                             % (_shape_str(h.shape), _shape_str(c.shape)))
        if batch is not None and int(batch) != h.shape[1]:
            raise ValueError("batch %d, but h0 and c0 are of batch %d" % (int(batch), h.shape[1]))
        self._call("aim_model_lstm_set_state", int(layer), _fptr(h), h.size, _fptr(c), c.size, h.shape[1])

    def lstm_final_state(self, layer, batch, layers, hidden, bidirectional=False):
        """(h_n, c_n) of LSTM layer `layer` after a training forward of
        `batch` samples, each [D*layers, batch, hidden] (D = 2 for a
        bidirectional stack, PyTorch's layout)."""
        h = np.empty(((2 if bidirectional else 1) * int(layers), int(batch), int(hidden)), dtype=np.float32)
        c = np.empty_like(h)
        self._call("aim_model_lstm_final_state", int(layer), _fptr(h), h.size, _fptr(c), c.size, int(batch))
        return h, c

    def gru_set_state(self, layer, h0=None, batch=None):
        """Initial h0, [D*layers, batch, hidden] (PyTorch's h_0; D = 2 when
        bidirectional), of GRU layer `layer` for forwards of exactly that
        batch; None to return to a zero state."""
        if h0 is None:
            self._call("aim_model_gru_set_state", int(layer), None, 0, int(batch or 1))
            return
        h = _f32(h0)
        if h.ndim != 3:
            raise ValueError("h0 must be [layers, batch, hidden], got %s" % _shape_str(h.shape))
        if batch is not None and int(batch) != h.shape[1]:
            raise ValueError("batch %d, but h0 is of batch %d" % (int(batch), h.shape[1]))
        self._call("aim_model_gru_set_state", int(layer), _fptr(h), h.size, h.shape[1])

    def gru_final_state(self, layer, batch, layers, hidden, bidirectional=False):
        """h_n, [D*layers, batch, hidden], of GRU layer `layer` after a
        training forward of `batch` samples."""
        h = np.empty(((2 if bidirectional else 1) * int(layers), int(batch), int(hidden)), dtype=np.float32)
        self._call("aim_model_gru_final_state", int(layer), _fptr(h), h.size, int(batch))
        return h

    # -- inference
    def _outputs_for(self, batch, out):
        """One C-contiguous float32 array per output, (batch, *its shape):
        new ones, or the caller's `out` (an array, or a list for a model of
        several outputs) checked."""
        shapes = self.output_shapes
        if out is None:
            return [np.empty((batch,) + shape, dtype=np.float32) for shape in shapes]
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(outs) != len(shapes):
            raise ValueError("the model has %d outputs: out must hold %d arrays" % (len(shapes), len(shapes)))
        for k, (o, shape) in enumerate(zip(outs, shapes)):
            if not (isinstance(o, np.ndarray) and o.dtype == np.float32 and o.flags.c_contiguous
                    and o.flags.writeable):
                raise TypeError("out is written in place: pass writable C-contiguous float32 numpy arrays")
            what = "out" if len(shapes) == 1 else "out %d" % k
            _batch_array(o, shape, what, batch)  # the same array: float32 and contiguous already
        return outs

    def predict_with(self, workspace, x, out=None, batch_size=None):
        """aim_model_predict() (aim_model_predict_multi() for a model of
        several inputs or outputs; aim_model_predict_ids() /
        aim_model_predict_typed() when an input holds ids) through a
        caller's Workspace (one per thread), in chunks of `batch_size`
        (default and at most workspace.max_batch). Returns (batch,
        *output_shape), or a list of one array per output; `out` (arrays of
        those shapes) receives the result instead of new arrays."""
        xs, ids = self._inputs(x)
        n = xs[0].shape[0]
        outs = self._outputs_for(n, out)
        mh, wh = self._h(), workspace._h()
        chunk = workspace.max_batch if batch_size is None else int(batch_size)
        if not 1 <= chunk <= workspace.max_batch:
            raise ValueError("batch_size %d is outside [1, %d], the workspace's max_batch" % (chunk, workspace.max_batch))
        last_error = lambda: _decode(_lib.aim_workspace_last_error(wh))  # noqa: E731
        single = len(xs) == 1 and len(outs) == 1
        typed = any(ids) and not single
        for name in (["aim_model_predict_ids"] if single and ids[0] else ["aim_model_predict_typed"] if typed else []):
            _fn(name)  # before any chunk runs
        for first in range(0, n, chunk):
            # rows of C-contiguous arrays: contiguous
            parts = [a[first:first + chunk] for a in xs]
            results = [o[first:first + chunk] for o in outs]
            rows = parts[0].shape[0]
            if single and ids[0]:
                _check(_lib.aim_model_predict_ids(mh, wh, parts[0].ctypes.data_as(c_int32_p), parts[0].size, rows,
                                                  _fptr(results[0]), results[0].size), "aim_model_predict_ids",
                       last_error)
            elif single:
                _check(_lib.aim_model_predict(mh, wh, _fptr(parts[0]), parts[0].size, rows, _fptr(results[0]),
                                              results[0].size), "aim_model_predict", last_error)
            elif typed:
                in_ptrs = (ctypes.c_void_p * len(parts))(*[p.ctypes.data for p in parts])
                in_counts = (ctypes.c_size_t * len(parts))(*[p.size for p in parts])
                out_ptrs = (c_float_p * len(results))(*[_fptr(r) for r in results])
                out_counts = (ctypes.c_size_t * len(results))(*[r.size for r in results])
                _check(_lib.aim_model_predict_typed(mh, wh, in_ptrs, in_counts, len(parts), rows, out_ptrs,
                                                    out_counts, len(results)), "aim_model_predict_typed",
                       last_error)
            else:
                in_ptrs = (c_float_p * len(parts))(*[_fptr(p) for p in parts])
                in_counts = (ctypes.c_size_t * len(parts))(*[p.size for p in parts])
                out_ptrs = (c_float_p * len(results))(*[_fptr(r) for r in results])
                out_counts = (ctypes.c_size_t * len(results))(*[r.size for r in results])
                _check(_lib.aim_model_predict_multi(mh, wh, in_ptrs, in_counts, len(parts), rows, out_ptrs,
                                                    out_counts, len(results)), "aim_model_predict_multi",
                       last_error)
        return outs[0] if len(outs) == 1 else outs

    def predict_step(self, workspace, x):
        """aim_model_predict_step() / aim_model_predict_step_ids(): feeds one
        position of `batch` sequences, x of shape (batch, *input_shape[1:])
        (int32 for an input of ids), at the position workspace.step_position,
        and returns that position of the output, (batch, *output_shape[1:]).
        The workspace keeps causal attention's keys and values between calls
        (workspace.reset_steps() starts new sequences); the model is not
        written."""
        if self.input_count != 1 or self.output_count != 1:
            raise ValueError("predict_step needs a model of one input and one output")
        ids = self.input_dtype(0) == Dtype.INT32
        want = np.int32 if ids else np.float32
        arr = np.asarray(x)
        if ids and arr.dtype.kind not in "iu":
            raise TypeError("input 0: ids must be integers, got %s" % arr.dtype)
        arr = np.ascontiguousarray(arr, dtype=want)
        row = tuple(self.input_shape[1:])
        if arr.ndim != 1 + len(row) or tuple(arr.shape[1:]) != row:
            raise ValueError("predict_step: x must have shape (batch,) + %s, got %s" % (row, arr.shape))
        batch = arr.shape[0]
        out = np.empty((batch,) + tuple(self.output_shape[1:]), dtype=np.float32)
        mh, wh = self._h(), workspace._h()
        last_error = lambda: _decode(_lib.aim_workspace_last_error(wh))  # noqa: E731
        if ids:
            _check(_fn("aim_model_predict_step_ids")(mh, wh, arr.ctypes.data_as(c_int32_p), arr.size, batch,
                                                     _fptr(out), out.size), "aim_model_predict_step_ids", last_error)
        else:
            _check(_fn("aim_model_predict_step")(mh, wh, _fptr(arr), arr.size, batch, _fptr(out), out.size),
                   "aim_model_predict_step", last_error)
        return out

    def predict(self, x, batch_size=None, out=None):
        """Inference on (N, *input_shape) samples (a list of one array per
        input for several) through the model's own Workspace, in chunks of
        `batch_size` (default: the compiled max_batch; PREDICT_BATCH when
        that is not known); leaves the training memory alone. The result,
        (N, *output_shape) float32 (a list for several outputs), is
        allocated once, or is `out`; an input already C-contiguous float32
        (int32 for ids) is read in place, not copied. See predict_with()."""
        if isinstance(batch_size, np.ndarray) or isinstance(batch_size, (list, tuple)):
            raise TypeError("predict(x, batch_size=None, out=None): pass the output array as out=")
        chunk = int(batch_size) if batch_size is not None else (self._max_batch or self.PREDICT_BATCH)
        if chunk < 1:
            raise ValueError("batch_size must be >= 1, got %d" % chunk)
        if self._workspace is not None and self._workspace.max_batch < chunk:
            self._workspace.close()
            self._workspace = None
        if self._workspace is None:
            self._workspace = Workspace(self, chunk, threadpool=self._threadpool)
        return self.predict_with(self._workspace, x, out, batch_size=chunk)

    # -- threads
    @property
    def threadpool(self):
        """The ThreadPool this model uses, or None."""
        return self._threadpool

    def set_threadpool(self, pool):
        """aim_model_set_threadpool(): forward(), backward() and predict()
        split large batches over `pool` (a ThreadPool); None runs on the
        calling thread again. Before or after compile(). Changing the pool
        discards the last training forward: forward() again before
        backward(). The model keeps a reference to the pool until close() or
        the next set_threadpool(). Returns self."""
        ph = pool._h() if pool is not None else None
        h = self._h()
        old = self._threadpool
        self._call("aim_model_set_threadpool", ph)
        if self._workspace is not None:
            try:
                self._workspace.set_threadpool(pool, self)
            except BaseException:
                # Put the model back on its old pool (already sized for it).
                _lib.aim_model_set_threadpool(h, old._handle if old is not None else None)
                raise
        _rebind(self, pool)
        return self

    def _detach_threadpool(self, pool):
        """For ThreadPool.close(): True once the C model no longer uses `pool`."""
        if self._threadpool is not pool or self._handle is None:
            return True
        if _lib is None or _lib.aim_model_set_threadpool(self._handle, None) != Status.OK:
            return False
        self._threadpool = None
        return True

    # -- serialization
    def serialize(self, optimizer=None):
        """The model (and the optimizer's state) in the format of docs/FORMAT.md."""
        oh = optimizer._h() if optimizer is not None else None
        size = ctypes.c_size_t()
        self._call("aim_model_serialized_size", oh, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(max(size.value, 1))
        written = ctypes.c_size_t()
        self._call("aim_model_serialize", oh, buffer, size.value, ctypes.byref(written))
        return buffer.raw[:written.value]

    @classmethod
    def deserialize(cls, data):
        """(Model, Optimizer or None) from bytes written by serialize().
        A refusal's AimError carries the library's reason ("truncated: ...")."""
        data = bytes(data)
        buffer = ctypes.create_string_buffer(data, max(len(data), 1))
        mh, oh = ctypes.c_void_p(), ctypes.c_void_p()
        # No object exists to hold a message when this fails: the library
        # writes it into a buffer of ours (256 bytes hold any).
        message = ctypes.create_string_buffer(256)
        _check(_lib.aim_model_deserialize(None, buffer, len(data), ctypes.byref(mh), ctypes.byref(oh), message,
                                          len(message)),
               "aim_model_deserialize", lambda: _decode(message.value))
        model = cls._from_handle(mh.value)
        try:
            record = _keras.parse_model_record(data, _SIZE_MAX)
            if record is None:  # an older version: read what this library writes of it
                record = _keras.parse_model_record(model.serialize(), _SIZE_MAX)
        except BaseException:
            model.close()
            if oh.value:
                _lib.aim_optimizer_free(oh.value)
            raise
        model._layers = list(record["layers"])
        model._max_batch = record["max_batch"]
        kind = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}.get(record["optimizer"], Optimizer)
        optimizer = kind._from_handle(oh.value) if oh.value else None
        return model, optimizer

    # -- lifetime
    def close(self):
        """Frees the C model (and the predict workspace) exactly once; later
        calls do nothing. Views from parameters()/gradients() become invalid.
        Drops the model's reference to its ThreadPool (the pool stays open)."""
        ws, self._workspace = getattr(self, "_workspace", None), None
        if ws is not None:
            ws.close()
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and _lib is not None:
            _lib.aim_model_free(handle)
        pool, self._threadpool = getattr(self, "_threadpool", None), None
        if pool is not None:
            pool._release(self)  # after the free: a closed pool may now go

    @property
    def closed(self):
        """Whether close() was called."""
        return self._handle is None

    def __repr__(self):
        if self._handle is None:
            return "<aimodel.Model closed>"
        return "<aimodel.Model %s -> %s, %d layers%s>" % (
            self.input_shape, self.output_shape, self.layer_count, ", compiled" if self.compiled else "")


# ---------------------------------------------------------------------------
# optimizers


def _config(struct_type, init_name, kwargs):
    cfg = struct_type()
    _check(_fn(init_name)(ctypes.byref(cfg)), init_name)
    names = [f[0] for f in struct_type._fields_]
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError("unknown option %r (one of %s)" % (key, ", ".join(names)))
        setattr(cfg, key, int(bool(value)) if key in ("nesterov", "decoupled", "centered", "check_finite") else value)
    return cfg


def _count_of(model_or_count):
    """The parameter count of a Model, or an int as given."""
    if isinstance(model_or_count, Model):
        return model_or_count.parameters().size
    return int(model_or_count)


class Optimizer(_Closing):
    """aim_optimizer (SGD, Adam or RMSprop). Create with Adam(...) /
    SGD(...) / RMSprop(...), or get one back from Model.deserialize() /
    Model.load().

    Created with a model (or a parameter count) it is ready at once;
    created without one, e.g. Adam(learning_rate=3e-4), it is created in C
    when Model.compile(optimizer=...) binds it to that model's parameters.
    `learning_rate` is what step() uses when given none (the format does
    not store it: a loaded optimizer has its kind's default)."""

    #: The learning rate step() and Model.fit() use by default.
    DEFAULT_LEARNING_RATE = 1e-3
    _CREATE = None  # (config struct, its init function, the create function)

    def __init__(self, model_or_count=None, learning_rate=None, **options):
        self._handle = None
        if type(self)._CREATE is None:
            raise TypeError("create an optimizer with Adam(...), SGD(...) or RMSprop(...)")
        struct_type, init_name, create_name = type(self)._CREATE
        self._cfg = _config(struct_type, init_name, options)
        self._create_name = create_name
        self.learning_rate = float(self.DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate)
        self._count = None
        if model_or_count is not None:
            self._bind(_count_of(model_or_count))

    def _bind(self, count):
        """Creates the C optimizer for `count` parameters (Model.compile);
        an optimizer created already must be of that count."""
        count = int(count)
        if self._handle is not None:
            if self._count is not None and self._count != count:
                raise ValueError("the optimizer was created for %d parameters, the model has %d"
                                 % (self._count, count))
            return
        if getattr(self, "_cfg", None) is None:
            raise ValueError("the Optimizer is closed")
        handle = ctypes.c_void_p()
        _check(_fn(self._create_name)(None, ctypes.byref(self._cfg), count, ctypes.byref(handle)), self._create_name)
        self._handle = handle.value
        self._count = count

    @classmethod
    def _from_handle(cls, handle):
        self = object.__new__(cls)
        self._handle = handle
        self._cfg = None
        self._count = None
        self.learning_rate = float(cls.DEFAULT_LEARNING_RATE)
        return self

    def _h(self):
        if self._handle is None:
            if getattr(self, "_cfg", None) is not None:
                raise ValueError("the optimizer is not bound to a model yet: pass it to "
                                 "Model.compile(optimizer=...), or create it with the model, e.g. Adam(model)")
            raise ValueError("the Optimizer is closed")
        return self._handle

    def last_error(self):
        """aim_optimizer_last_error(): the message of the last failed call."""
        return _decode(_lib.aim_optimizer_last_error(self._h()))

    def _call(self, name, *args):
        h = self._h()
        _check(getattr(_lib, name)(h, *args), name, lambda: _decode(_lib.aim_optimizer_last_error(h)))

    def step(self, model, lr=None):
        """One update of the model's parameters from its gradients, at
        learning rate `lr` (default: self.learning_rate)."""
        h = self._h()
        lr = self.learning_rate if lr is None else lr
        _check(_lib.aim_optimizer_step_model(h, model._h(), lr), "aim_optimizer_step_model",
               lambda: _decode(_lib.aim_optimizer_last_error(h)))

    def step_arrays(self, params, grads, lr=None):
        """aim_optimizer_step() on caller buffers: `params` (float32,
        C-contiguous, updated in place) from `grads`."""
        if not (isinstance(params, np.ndarray) and params.dtype == np.float32 and params.flags.c_contiguous):
            raise TypeError("params is updated in place: pass a C-contiguous float32 numpy array")
        g = _f32(grads)
        if g.size != params.size:
            raise ValueError("params and grads differ in size")
        lr = self.learning_rate if lr is None else lr
        self._call("aim_optimizer_step", _fptr(params), _fptr(g), params.size, lr)

    def reset(self):
        """aim_optimizer_reset(): forgets the state (moments, step count)."""
        self._call("aim_optimizer_reset")

    @property
    def steps(self):
        """aim_optimizer_steps(): the updates taken (kept by serialize())."""
        return int(_lib.aim_optimizer_steps(self._h()))

    @property
    def handle(self):
        """The raw aim_optimizer* as an int (for advanced use with `lib`)."""
        return self._h()

    def close(self):
        """Frees the C optimizer once; later calls do nothing."""
        self._cfg = None
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and _lib is not None:
            _lib.aim_optimizer_free(handle)

    @property
    def closed(self):
        """Whether close() was called (an unbound optimizer is not closed)."""
        return self._handle is None and getattr(self, "_cfg", None) is None


class Adam(Optimizer):
    """Adam / AdamW (torch.optim.Adam / AdamW) for a model's parameters (or
    a count; or none until Model.compile binds it). learning_rate defaults
    to 1e-3. Options: beta1, beta2, epsilon, weight_decay, decoupled,
    check_finite."""

    DEFAULT_LEARNING_RATE = 1e-3
    _CREATE = (AdamConfig, "aim_adam_config_init", "aim_adam_create")


class SGD(Optimizer):
    """SGD (torch.optim.SGD) for a model's parameters (or a count; or none
    until Model.compile binds it). learning_rate defaults to 0.01 (Keras's).
    Options: momentum, dampening, weight_decay, nesterov, check_finite."""

    DEFAULT_LEARNING_RATE = 1e-2
    _CREATE = (SgdConfig, "aim_sgd_config_init", "aim_sgd_create")


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop) for a model's parameters (or a count;
    or none until Model.compile binds it). learning_rate defaults to 1e-3.
    Options: alpha, epsilon, momentum, centered, weight_decay, check_finite
    (defaults 0.99, 1e-8, 0, False, 0, False)."""

    DEFAULT_LEARNING_RATE = 1e-3
    _CREATE = (RmspropConfig, "aim_rmsprop_config_init", "aim_rmsprop_create")


# ---------------------------------------------------------------------------
# Keras-style names

#: What Model.fit() returns.
History = _keras.History
#: The progress bar fit() prints (the C examples' format).
ProgressBar = progress.ProgressBar


def load_model(path):
    """Model.load(path): the model saved by Model.save(), with its
    optimizer as model.optimizer when the file holds one."""
    return Model.load(path)
