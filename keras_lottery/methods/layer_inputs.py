"""The inputs of a model's Dense and EinsumDense kernels, as the one-shot
methods read them: each kernel as an [input features, output features]
matrix (`kernel_layout`), and the Gram matrix XᵀX of its layer's inputs over
calibration batches (`input_gram`), whose diagonal is the squared norm of
every input feature (Wanda) and which is SparseGPT's Hessian.

Example:
>>> layout = kernel_layout(keras.layers.Dense(4), (8, 4))
>>> layout.inputs, layout.to_matrix(np.zeros((8, 4))).shape
(8, (8, 4))
"""

import dataclasses
import re

import keras
import numpy as np

from keras_lottery.backend import keras_internals


@dataclasses.dataclass(frozen=True)
class KernelLayout:
    """How a kernel maps to an [inputs, outputs] matrix: the kernel axes the
    layer's input contracts with come first (in kernel order).

    Example:
    >>> KernelLayout((8, 2, 4), (0,), (1, 2)).to_matrix(np.zeros((8, 2, 4))).shape
    (8, 8)
    """

    shape: tuple
    input_axes: tuple
    output_axes: tuple

    @property
    def inputs(self):
        return int(np.prod([self.shape[a] for a in self.input_axes]))

    def to_matrix(self, kernel):
        return np.transpose(kernel, self.input_axes + self.output_axes).reshape(self.inputs, -1)

    def from_matrix(self, matrix):
        order = self.input_axes + self.output_axes
        shaped = matrix.reshape([self.shape[a] for a in order])
        return np.transpose(shaped, np.argsort(order))


def is_dense_kernel(weight):
    """Whether a `PrunableWeight` is the kernel of a Dense or EinsumDense
    layer (what the one-shot methods and the calibration scorers read).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    >>> [is_dense_kernel(p) for p in keras_lottery.prunable_weights(model)]
    [True]
    """
    return weight.key.endswith("kernel") and isinstance(
        weight.owner, (keras.layers.Dense, keras.layers.EinsumDense))


def kernel_layout(layer, shape):
    """How a Dense or EinsumDense kernel of `shape` reads as an [input
    features, output features] matrix (`to_matrix` / `from_matrix`), or None
    when the layer's input does not end with the axes its kernel contracts.

    Example:
    >>> layer = keras.layers.EinsumDense("btnh,nhd->btd", (5, 8))
    >>> layout = kernel_layout(layer, (2, 4, 8))
    >>> layout.input_axes, layout.inputs
    ((0, 1), 8)
    """
    if isinstance(layer, keras.layers.Dense):
        return KernelLayout(tuple(shape), (0,), (1,))
    equation = getattr(layer, "equation", "")
    match = re.fullmatch(r"([a-z.]+),([a-z]+)->([a-z.]+)", equation.replace(" ", ""))
    if match is None:
        return None
    inputs, kernel, _ = match.groups()
    contracted = [letter for letter in kernel if letter in inputs]
    # The layer's input, flattened to [tokens, features], must end with the
    # contracted letters in kernel order.
    if not contracted or not inputs.endswith("".join(contracted)):
        return None
    input_axes = tuple(kernel.index(letter) for letter in contracted)
    output_axes = tuple(a for a in range(len(kernel)) if a not in input_axes)
    return KernelLayout(tuple(shape), input_axes, output_axes)


def kernel_value(variable):
    """A variable's value as float64 NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(variable.value), np.float64)


def input_gram(model, layer, layout, batches):
    """XᵀX (float64, [inputs, inputs]) of `layer`'s inputs over every batch
    of model inputs in `batches`, read by running the model (as it is now)."""
    gram = np.zeros((layout.inputs, layout.inputs))
    original = layer.call

    def capture(*args, **kwargs):
        x = args[0] if args else kwargs["inputs"]
        x = np.asarray(keras.ops.convert_to_numpy(x), np.float64).reshape(-1, layout.inputs)
        gram[...] += x.T @ x
        return original(*args, **kwargs)

    keras_internals.sync_jax_state(model)
    patched_before = "call" in vars(layer)
    layer.call = capture
    try:
        for batch in batches:
            model(batch, training=False)
    finally:
        if patched_before:
            layer.call = original
        else:
            del layer.call  # back to the class's method
    return gram
