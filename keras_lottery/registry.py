"""Which weights of which layers are prunable.

Built-in rules cover the layers the paper's networks use and their relatives;
custom layers join with `register_prunable` or a `get_prunable_weights()`
method. Biases and normalisation parameters are never pruned by default.
"""

import keras

_REGISTRY = {}


def register_prunable(layer_class, weight_names):
    """Declares which weights of `layer_class` (and subclasses) are prunable.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        weight_names: attribute names of the layer's variables, e.g.
            `["kernel"]`. An empty list marks the class as not prunable.

    Example:
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.scale = self.add_weight(shape=input_shape[-1:])
    ...     def call(self, x):
    ...         return x * self.scale
    >>> register_prunable(Scale, ["scale"])
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "register_prunable expects a keras.layers.Layer subclass; "
            f"received {layer_class!r}."
        )
    if isinstance(weight_names, str) or not all(
        isinstance(n, str) for n in weight_names
    ):
        raise TypeError(
            "weight_names must be a list of attribute names such as "
            f"['kernel']; received {weight_names!r}."
        )
    _REGISTRY[layer_class] = list(weight_names)


def _register_builtins():
    layers = keras.layers
    kernel_layers = [
        layers.Dense,
        layers.EinsumDense,
        layers.Conv1D,
        layers.Conv2D,
        layers.Conv3D,
        layers.Conv1DTranspose,
        layers.Conv2DTranspose,
        layers.Conv3DTranspose,
    ]
    for cls in kernel_layers:
        _REGISTRY[cls] = ["kernel"]
    _REGISTRY[layers.SeparableConv1D] = ["depthwise_kernel", "pointwise_kernel"]
    _REGISTRY[layers.SeparableConv2D] = ["depthwise_kernel", "pointwise_kernel"]
    _REGISTRY[layers.DepthwiseConv1D] = ["kernel"]
    _REGISTRY[layers.DepthwiseConv2D] = ["kernel"]
    _REGISTRY[layers.Embedding] = ["embeddings"]


_register_builtins()


def registered_weight_names(layer):
    """Names of the prunable weights the registry knows for `layer`, or None.

    The most specific registered class in the layer's MRO wins.

    Example:
    >>> registered_weight_names(keras.layers.Dense(3))
    ['kernel']
    """
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return list(_REGISTRY[cls])
    return None


def is_prunable(layer):
    """Whether `layer` has weights keras_lottery would prune.

    Example:
    >>> is_prunable(keras.layers.Dense(3)), is_prunable(keras.layers.ReLU())
    (True, False)
    """
    if hasattr(layer, "get_prunable_weights"):
        return True
    names = registered_weight_names(layer)
    return bool(names)


def get_prunable_weights(layer):
    """The prunable variables of a built `layer`, as `[(name, variable)]`.

    Uses the layer's own `get_prunable_weights()` when it has one, else the
    registry.

    Example:
    >>> layer = keras.layers.Dense(2)
    >>> layer.build((None, 3))
    >>> [name for name, _ in get_prunable_weights(layer)]
    ['kernel']
    """
    if not layer.built:
        raise ValueError(
            f"Layer '{layer.name}' is not built, so its weights do not exist "
            "yet. Build the model first (call it on data or "
            "`model.build(input_shape)`)."
        )
    if hasattr(layer, "get_prunable_weights"):
        variables = list(layer.get_prunable_weights())
        for v in variables:
            if not isinstance(v, keras.Variable):
                raise TypeError(
                    f"{type(layer).__name__}.get_prunable_weights() must return "
                    f"keras.Variable objects; it returned {v!r}."
                )
        return [(v.name, v) for v in variables]
    names = registered_weight_names(layer)
    if not names:
        raise ValueError(
            f"Layer '{layer.name}' of type {type(layer).__name__} has no "
            "prunable weights. Register them with "
            f"keras_lottery.register_prunable({type(layer).__name__}, "
            "['kernel', ...]) or give the layer a get_prunable_weights() "
            "method."
        )
    result = []
    for name in names:
        variable = getattr(layer, name, None)
        if not isinstance(variable, keras.Variable):
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no "
                f"variable attribute '{name}' although it is registered as "
                "prunable; check register_prunable()."
            )
        result.append((name, variable))
    return result
