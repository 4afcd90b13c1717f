"""Will XNNPACK run a model's 1x1 convolutions with its sparse kernels?

XNNPACK (LiteRT's CPU delegate) has a "sparse inference" mode for
MobileNet-like networks on ARM: it rewrites a part of the graph to NCHW and
runs its 1x1 convolutions with sparse microkernels. Whether it does is
decided from the graph (`xnn_check_nchw_compatibility` and
`xnn_subgraph_rewrite_for_nchw` in XNNPACK's `src/subgraph.c`):

- the part starts at a 3x3 stride-2 convolution on 3 input channels with
  padding 1 on every side (in Keras: `ZeroPadding2D(1)` then
  `Conv2D(..., 3, strides=2, padding="valid")`; TFLite's SAME padding at
  stride 2 is not explicit padding and does not qualify);
- it ends at a global average pooling (`GlobalAveragePooling2D`, a MEAN);
- in between every layer is NCHW-compatible: 1x1 convolutions (stride 1, no
  dilation, no groups), 3x3/5x5 depthwise convolutions (stride 1 or 2,
  multiplier 1, padding k//2 on every side: `"same"` at stride 1, or a
  `ZeroPadding2D` before a `"valid"` one), Add/Multiply, elementwise
  activations, BatchNormalization (folded by the converter);
- no tensor inside the part is read by a layer outside it;
- the part's 1x1 convolution kernels are more than 2/3 zeros.

The speed-up exists only on ARM builds (on x86 with AVX the sparse path is
switched off in XNNPACK itself; docs/EXPORT.md), so this module checks the
structure only. `xnnpack_sparse_path(model)` returns the part and the mask
keys of its 1x1 kernels, the weights whose zeros pay off, or raises naming
the layer that breaks the path. `IterativeMagnitudePruning(
latency_policy="xnnpack_sparse")` prunes only those weights.

Example:
>>> x = keras.Input((32, 32, 3))
>>> h = keras.layers.ZeroPadding2D(1)(x)
>>> h = keras.layers.Conv2D(8, 3, strides=2, name="stem")(h)
>>> h = keras.layers.Conv2D(16, 1, activation="relu", name="pw")(h)
>>> y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D(name="gap")(h))
>>> path = xnnpack_sparse_path(keras.Model(x, y))
>>> path.start, path.end, path.accelerated
('stem', 'gap', ('pw/kernel',))
"""

import dataclasses

import keras

from keras_lottery.backend import keras_internals
from keras_lottery.core import wrapping

# More than this fraction of the part's 1x1 weights must be zero.
MIN_ZERO_FRACTION = 2.0 / 3.0

_ELEMENTWISE = (
    keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.Activation,
    keras.layers.BatchNormalization, keras.layers.Dropout, keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise, keras.layers.GaussianDropout, keras.layers.Identity,
)
_ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "hard_swish",
                "hard_silu", "elu", "leaky_relu", "tanh")
_MERGES = (keras.layers.Add, keras.layers.Multiply)


class SparseInferenceError(ValueError):
    """The model's structure keeps XNNPACK from its sparse path.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> try:
    ...     xnnpack_sparse_path(model)
    ... except SparseInferenceError as error:
    ...     print("GlobalAveragePooling2D" in str(error))
    True
    """


@dataclasses.dataclass(frozen=True)
class SparsePath:
    """The part of a model XNNPACK can run sparse (see
    `xnnpack_sparse_path` for an example).

    Attributes:
        start: name of the 3x3 stride-2 convolution it starts at.
        end: name of the global average pooling it ends at.
        layers: names of the layers inside, in graph order.
        accelerated: mask keys (`"layer/kernel"`) of its 1x1 convolution
            kernels: the weights whose zeros XNNPACK's sparse kernels skip.
    """

    start: str
    end: str
    layers: tuple
    accelerated: tuple


def xnnpack_sparse_path(model):
    """The part of `model` XNNPACK's sparse inference would run (see the
    module docstring for the conditions).

    Args:
        model: a functional or Sequential Keras model, wrapped or not.

    Returns:
        A `SparsePath`.

    Raises:
        SparseInferenceError: naming the layer that breaks the path, and why.

    Example:
    >>> x = keras.Input((8, 8, 3))
    >>> h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="stem")(x)
    >>> y = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 1)(h))
    >>> xnnpack_sparse_path(keras.Model(x, y))
    Traceback (most recent call last):
    ...
    keras_lottery.export.sparse_inference.SparseInferenceError: layer 'stem' (Conv2D) breaks XNNPACK's sparse path: a 3x3 stride-2 convolution starts the path only with padding 1 on every side: use ZeroPadding2D(1) and padding='valid' (TFLite keeps SAME padding at stride 2 implicit).
    """
    nodes = keras_internals.graph_nodes(model)
    if nodes is None:
        raise SparseInferenceError(
            f"'{model.name}' ({type(model).__name__}) is subclassed: the sparse-path "
            "check reads the layer graph of a functional or Sequential model."
        )
    producer = {}
    consumers = {}
    for index, (_, inputs, outputs) in enumerate(nodes):
        for tensor in outputs:
            producer[id(tensor)] = index
        for tensor in inputs:
            consumers.setdefault(id(tensor), []).append(index)
    ends = [i for i, (op, _, _) in enumerate(nodes)
            if isinstance(op, keras.layers.GlobalAveragePooling2D)]
    if not ends:
        raise SparseInferenceError(
            f"'{model.name}' has no GlobalAveragePooling2D: XNNPACK's sparse path "
            "ends at a global average pooling."
        )
    for end in ends:
        cluster, starts = _cluster(nodes, producer, consumers, end)
        _check_consumers(nodes, consumers, cluster, end)
        ordered = sorted(cluster | starts | {end})
        candidates = wrapping.prunable_candidates(model)
        accelerated = tuple(
            key for i in ordered for key in _pointwise_keys(candidates, nodes[i][0])
        )
        if not accelerated:
            raise SparseInferenceError(
                f"the path from {_names(nodes, starts)} to '{nodes[end][0].name}' has "
                "no 1x1 convolution: nothing for XNNPACK's sparse kernels to run."
            )
        return SparsePath(
            start=_names(nodes, starts, quoted=False),
            end=nodes[end][0].name,
            layers=tuple(nodes[i][0].name for i in ordered),
            accelerated=accelerated,
        )


def _cluster(nodes, producer, consumers, end):
    """Walks back from the pooling `end` to the start convolutions; every
    layer on the way must be NCHW-compatible."""
    cluster, starts, pending = set(), set(), [end]
    while pending:
        index = pending.pop()
        for tensor in nodes[index][1]:
            source = producer.get(id(tensor))
            if source is None:
                raise SparseInferenceError(
                    f"layer '{nodes[index][0].name}' reads the model input inside "
                    "XNNPACK's sparse path: the path must start at a 3x3 stride-2 "
                    "convolution on 3 input channels."
                )
            if source in cluster or source in starts:
                continue
            operation, inputs, _ = nodes[source]
            start_problem = _start_problem(operation, inputs)
            if start_problem is None:
                starts.add(source)
                continue
            problem = _inside_problem(operation, inputs, [nodes[i][0] for i in consumers.get(
                id(nodes[source][2][0]), [])])
            if problem is not None:
                if _is_stem_like(operation):
                    problem = start_problem
                raise SparseInferenceError(
                    f"layer '{operation.name}' ({type(operation).__name__}) breaks "
                    f"XNNPACK's sparse path: {problem}"
                )
            cluster.add(source)
            pending.append(source)
    return cluster, starts


def _check_consumers(nodes, consumers, cluster, end):
    for index in sorted(cluster):
        for tensor in nodes[index][2]:
            for reader in consumers.get(id(tensor), []):
                if reader not in cluster and reader != end:
                    raise SparseInferenceError(
                        f"layer '{nodes[reader][0].name}' "
                        f"({type(nodes[reader][0]).__name__}) breaks XNNPACK's sparse "
                        f"path: it reads the output of '{nodes[index][0].name}' from "
                        "outside the path (every tensor inside must be read only by "
                        "layers inside)."
                    )


def _start_problem(op, inputs):
    """None if `op` starts the path, else why not."""
    if type(op) is not keras.layers.Conv2D:
        return "not a convolution that can start the path"
    if tuple(op.kernel_size) != (3, 3) or tuple(op.strides) != (2, 2):
        return "not a 3x3 stride-2 convolution"
    if op.groups != 1 or tuple(op.dilation_rate) != (1, 1) or op.data_format != "channels_last":
        return "a start convolution needs groups=1, no dilation and channels_last"
    if int(inputs[0].shape[-1]) != 3:
        return (
            f"a 3x3 stride-2 convolution starts the path only on 3 input channels "
            f"(this one has {int(inputs[0].shape[-1])})."
        )
    if op.padding != "valid" or not _padded_by(inputs[0], 1):
        return (
            "a 3x3 stride-2 convolution starts the path only with padding 1 on every "
            "side: use ZeroPadding2D(1) and padding='valid' (TFLite keeps SAME padding "
            "at stride 2 implicit)."
        )
    return None


def _inside_problem(op, inputs, readers):
    """None if `op` may sit inside the path, else why not."""
    if type(op) is keras.layers.Conv2D:
        if tuple(op.kernel_size) != (1, 1):
            return (
                f"a {op.kernel_size[0]}x{op.kernel_size[1]} convolution inside the path "
                "(only 1x1 convolutions, and 3x3/5x5 depthwise ones, are NCHW-compatible)."
            )
        if tuple(op.strides) != (1, 1) or tuple(op.dilation_rate) != (1, 1) or op.groups != 1:
            return "a 1x1 convolution inside the path needs stride 1, no dilation, groups=1."
        return _activation_problem(op)
    if type(op) is keras.layers.DepthwiseConv2D:
        k = tuple(op.kernel_size)
        if k not in ((3, 3), (5, 5)) or tuple(op.strides) not in ((1, 1), (2, 2)):
            return "a depthwise convolution inside the path must be 3x3 or 5x5, stride 1 or 2."
        if op.depth_multiplier != 1 or tuple(op.dilation_rate) != (1, 1):
            return "a depthwise convolution inside the path needs depth_multiplier=1, no dilation."
        pad = k[0] // 2
        same_at_stride_1 = op.padding == "same" and tuple(op.strides) == (1, 1)
        if not same_at_stride_1 and not (op.padding == "valid" and _padded_by(inputs[0], pad)):
            return (
                f"its padding must be {pad} on every side: padding='same' at stride 1, "
                f"or ZeroPadding2D({pad}) before padding='valid'."
            )
        return _activation_problem(op)
    if isinstance(op, keras.layers.ZeroPadding2D):
        # XNNPACK fuses a zero pad into the depthwise convolution it feeds.
        if readers and all(type(r) is keras.layers.DepthwiseConv2D and r.padding == "valid"
                           and _padded_by(r_input, r.kernel_size[0] // 2)
                           for r, r_input in ((r, op.output) for r in readers)):
            return None
        return (
            "a ZeroPadding2D inside the path must pad only 'valid' depthwise "
            "convolutions by kernel_size // 2 (XNNPACK fuses it into them)."
        )
    if isinstance(op, _MERGES):
        if any(len(t.shape) != 4 for t in inputs):
            return "an Add/Multiply inside the path needs 4-D inputs."
        return None
    if isinstance(op, _ELEMENTWISE):
        return _activation_problem(op)
    return f"{type(op).__name__} is not NCHW-compatible in XNNPACK."


def _activation_problem(op):
    activation = getattr(op, "activation", None)
    name = getattr(activation, "__name__", None)
    if activation is None or name in _ACTIVATIONS:
        return None
    return f"its activation {name!r} has no NCHW kernel in XNNPACK."


def _is_stem_like(op):
    return type(op) is keras.layers.Conv2D and tuple(op.strides) == (2, 2) and tuple(
        op.kernel_size) == (3, 3)


def _padded_by(tensor, amount):
    """Whether `tensor` is the output of ZeroPadding2D(amount) on all sides."""
    operation, _ = keras_internals.producers(tensor)
    if not isinstance(operation, keras.layers.ZeroPadding2D):
        return False
    return tuple(map(tuple, operation.padding)) == ((amount, amount), (amount, amount))


def _pointwise_keys(candidates, op):
    if type(op) is not keras.layers.Conv2D or tuple(op.kernel_size) != (1, 1):
        return []
    return [key for key, variable, owner in candidates
            if owner is op and variable is op.kernel]


def _names(nodes, indices, quoted=True):
    names = [nodes[i][0].name for i in sorted(indices)]
    if quoted:
        return ", ".join(f"'{n}'" for n in names)
    return names[0] if len(names) == 1 else tuple(names)
