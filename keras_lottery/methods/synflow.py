"""SynFlow's scores (Tanaka et al. 2020): data-free, the path score
|∂R/∂θ ⊙ θ| of a wrapped model at its current, masked weights, R the sum of
the outputs of the network with |θ| on an all-ones input.

Example:
>>> model = keras_lottery.wrap(keras.Sequential(
...     [keras.Input((3,)), keras.layers.Dense(2, name="fc")]))
>>> scores(model)["fc/kernel"].shape
(3, 2)
"""

import keras
import numpy as np

from keras_lottery.backend import gradients
from keras_lottery.backend import keras_internals
from keras_lottery.core import wrapping


def scores(model):
    """SynFlow's scores at the model's current (masked) weights: data-free,
    |∂R/∂θ ⊙ θ| with R = sum(model(ones)) on |θ|. The weights are restored
    afterwards.

    Each kernel's |θ| is divided by its largest sum over an output unit's
    inputs, so no layer enlarges its input, and the input is `1e-3`: scaling
    a layer, or the input, scales R and every score by the same factor (the
    ranking is the same, as the paper's path count), but keeps activations
    small. Without it, float32 overflows on deep networks, and bounded
    activations (ReLU6, hard sigmoid) saturate, their gradients vanish and
    whole layers score 0 (measured: every kernel of 3 MobileNetV2 blocks
    pruned at 10% global density).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, name="fc")]))
    >>> scores(model)["fc/kernel"].shape
    (2, 1)
    """
    structure = keras_internals.input_structure(model)
    if structure is None:
        raise ValueError(
            f"SynFlow feeds an all-ones input of the model's input shape; '{model.name}' "
            "is subclassed and has none yet (or takes several inputs). Call it once on a "
            "batch of one input (it then has the shape), build it functionally, or use "
            "another method."
        )
    prunables = wrapping.prunable_weights(model)
    output_keys = set(wrapping.output_keys(model))
    outputs = {p.owner: p.owner.activation for p in prunables
               if p.key in output_keys and hasattr(p.owner, "activation")}
    keras_internals.sync_jax_state(model)
    saved = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
    try:
        # R is taken on the logits: a softmax output sums to 1 whatever the
        # weights, and would score every weight 0.
        for layer in outputs:
            layer.activation = keras.activations.linear
        depthwise = {
            id(p.variable) for p in prunables
            if isinstance(p.owner, _DEPTHWISE) or p.name == "depthwise_kernel"
        }
        for variable, value in zip(model.variables, saved):
            if variable.trainable and np.issubdtype(value.dtype, np.floating):
                variable.assign(_non_expansive(np.abs(value), id(variable) in depthwise))
        values = {p.key: keras.ops.convert_to_numpy(p.variable.value) for p in prunables}
        ones = keras.tree.map_structure(
            lambda spec: np.full((1, *spec.shape[1:]), _SYNFLOW_INPUT, "float32"), structure
        )
        grads = gradients.weight_gradients(
            model, [p.variable for p in prunables], _sum_of_outputs, ones
        )
    finally:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
        for layer, activation in outputs.items():
            layer.activation = activation
    scores = {p.key: np.abs(g * values[p.key]) for p, g in zip(prunables, grads)}
    if not any(score.any() for score in scores.values()):
        raise ValueError(
            f"SynFlow scored every weight of '{model.name}' 0: the sum of its outputs "
            "does not depend on its weights (a normalised output, or activations that "
            "saturate on an all-positive input). Score a model that outputs logits."
        )
    return scores



_SYNFLOW_INPUT = 1e-3


_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def _non_expansive(magnitude, depthwise=False):
    """|W| scaled so that no output unit sums more than 1 over its inputs
    (vectors such as biases and BatchNorm's are left as they are). A
    depthwise kernel's output channel reads its spatial taps only."""
    if magnitude.ndim < 2 or not magnitude.size:
        return magnitude
    if depthwise:
        peak = magnitude.sum(axis=tuple(range(magnitude.ndim - 2))).max()
    else:
        peak = magnitude.reshape(-1, magnitude.shape[-1]).sum(axis=0).max()
    return magnitude / peak if peak > 0 else magnitude


def _sum_of_outputs(outputs):
    return sum(keras.ops.sum(o) for o in keras.tree.flatten(outputs))
