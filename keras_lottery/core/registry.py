"""Which variables of a layer are prunable.

A layer's *own* variables are looked at here (not its sublayers': `wrap`
walks the whole model, so the kernels inside a `MultiHeadAttention`, an
`LSTM`'s cell, a `Bidirectional` or a KerasHub transformer block are found
in the sublayers that own them). In order of precedence:

1. a `get_prunable_weights()` method on the layer (returns variables);
2. `register_prunable(layer_class, names)` for the class or a base class
   (an empty list marks a class as never pruned);
3. the built-in rules below;
4. any other layer: its trainable float variables of rank >= 2 named
   `kernel`, `*_kernel` or `embeddings` ("kernel-like").

Built-in: `kernel` of Dense, EinsumDense, Conv1D/2D/3D and their
Transpose, DepthwiseConv1D/2D; `depthwise_kernel` and `pointwise_kernel`
of SeparableConv1D/2D; `kernel` and `recurrent_kernel` of SimpleRNN, GRU
and LSTM cells (and ConvLSTM cells); `embeddings` of Embedding. Biases,
normalisation parameters and other vectors are never pruned by default.
"""

import keras

from keras_lottery.backend import keras_internals

_REGISTRY = {}


def register_prunable(layer_class, weight_names):
    """Declares which variables of `layer_class` (and subclasses) are prunable.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        weight_names: names of the layer's own variables (attribute names or
            `variable.name`), e.g. `["kernel"]`. An empty list marks the
            class as never pruned.

    Example:
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.scale = self.add_weight(shape=input_shape[-1:], name="scale")
    ...     def call(self, x):
    ...         return x * self.scale
    >>> register_prunable(Scale, ["scale"])
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "register_prunable expects a keras.layers.Layer subclass; "
            f"received {layer_class!r}."
        )
    if isinstance(weight_names, str) or not all(isinstance(n, str) for n in weight_names):
        raise TypeError(
            "weight_names must be a list of variable names such as "
            f"['kernel']; received {weight_names!r}."
        )
    _REGISTRY[layer_class] = list(weight_names)


def _register_builtins():
    layers = keras.layers
    for cls in (
        layers.Dense,
        layers.EinsumDense,
        layers.Conv1D,
        layers.Conv2D,
        layers.Conv3D,
        layers.Conv1DTranspose,
        layers.Conv2DTranspose,
        layers.Conv3DTranspose,
        layers.DepthwiseConv1D,
        layers.DepthwiseConv2D,
    ):
        _REGISTRY[cls] = ["kernel"]
    _REGISTRY[layers.SeparableConv1D] = ["depthwise_kernel", "pointwise_kernel"]
    _REGISTRY[layers.SeparableConv2D] = ["depthwise_kernel", "pointwise_kernel"]
    _REGISTRY[layers.Embedding] = ["embeddings"]
    for cls in (layers.SimpleRNNCell, layers.GRUCell, layers.LSTMCell):
        _REGISTRY[cls] = ["kernel", "recurrent_kernel"]
    for name in ("ConvLSTMCell",):
        cls = getattr(layers, name, None)
        if cls is not None:
            _REGISTRY[cls] = ["kernel", "recurrent_kernel"]


_register_builtins()


def registered_names(layer):
    """The registered prunable names for `layer`'s class (most specific class
    in the MRO wins), or None when the class is not registered.

    Example:
    >>> registered_names(keras.layers.Dense(3)), registered_names(keras.layers.ReLU())
    (['kernel'], None)
    """
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return list(_REGISTRY[cls])
    return None


def prunable_variables(layer):
    """`[(name, variable)]` of the prunable variables `layer` owns itself.

    Empty for an unbuilt layer and for layers without prunable variables.

    Example:
    >>> cell = keras.layers.LSTMCell(4)
    >>> cell.build((None, 3))
    >>> [name for name, _ in prunable_variables(cell)]
    ['kernel', 'recurrent_kernel']
    """
    if not layer.built:
        return []
    own = keras_internals.own_variables(layer)
    if hasattr(layer, "get_prunable_weights"):
        chosen = list(layer.get_prunable_weights())
        for variable in chosen:
            if not isinstance(variable, keras.Variable):
                raise TypeError(
                    f"{type(layer).__name__}.get_prunable_weights() must return "
                    f"keras.Variable objects; it returned {variable!r}."
                )
        return [(short_name(v), v) for v in chosen]
    names = registered_names(layer)
    if names is not None:
        result = []
        for name in names:
            variable = getattr(layer, name, None)
            if not isinstance(variable, keras.Variable):
                matching = [v for v in own if short_name(v) == name]
                variable = matching[0] if matching else None
            if variable is None:
                raise ValueError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) has no variable "
                    f"'{name}' although it is registered as prunable; check "
                    "register_prunable()."
                )
            result.append((name, variable))
        return result
    return [(short_name(v), v) for v in own if is_kernel_like(v)]


def is_kernel_like(variable):
    """Whether an unregistered layer's variable looks like a kernel: trainable,
    floating point, rank >= 2, named `kernel`, `*_kernel` or `embeddings`.

    Example:
    >>> is_kernel_like(keras.Variable(keras.ops.ones((2, 2)), name="kernel"))
    True
    """
    name = short_name(variable)
    if not (name == "kernel" or name.endswith("_kernel") or name == "embeddings"):
        return False
    dtype = str(variable.dtype)
    return variable.trainable and "float" in dtype and len(variable.shape) >= 2


def is_prunable(layer):
    """Whether `layer` owns prunable variables (a built layer), or could
    (an unbuilt layer of a registered or `get_prunable_weights` class).

    Example:
    >>> is_prunable(keras.layers.Dense(3)), is_prunable(keras.layers.ReLU())
    (True, False)
    """
    if layer.built:
        return bool(prunable_variables(layer))
    if hasattr(layer, "get_prunable_weights"):
        return True
    return bool(registered_names(layer))


def short_name(variable):
    """A variable's own name, without scopes or device suffixes.

    Example:
    >>> short_name(keras.Variable(1.0, name="kernel"))
    'kernel'
    """
    return str(variable.name).rpartition("/")[2].partition(":")[0]
