"""Does a model's weights hold an N:M pattern? (The check of N:M tickets.)

`check_pattern(model, "2:4")` looks at the values of every Dense, Conv and
EinsumDense kernel (of a wrapped model, a stripped one, or one loaded from an
export) and counts, per kernel, the groups of M consecutive weights along the
input axis that hold more than N non-zeros (an EinsumDense kernel: along its
input features, flattened in kernel order, as `prune_one_shot` groups them). A ticket trained with
`IterativeMagnitudePruning(structure="2:4")` has none in its pruned kernels.

Example:
>>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, name="fc")])
>>> kernel = np.zeros((8, 2), "float32"); kernel[::4] = 1.0
>>> _ = model.get_layer("fc").kernel.assign(kernel)
>>> check_pattern(model, "2:4")
{'fc/kernel': 0}
"""

import keras
from keras import ops

from keras_lottery.backend import layer_tree
from keras_lottery.methods import layer_inputs
from keras_lottery.sparsity import structure


def check_pattern(model, pattern, layers=None):
    """`{kernel path: groups breaking the pattern}` for the model's Dense and
    Conv kernels whose input axis is a multiple of M.

    Args:
        model: any built Keras model.
        pattern: "N:M".
        layers: optional layer names to check (default: every Dense/Conv
            layer whose kernel can hold the pattern).

    Returns:
        A dict in model order; 0 means the kernel holds the pattern.

    Raises:
        ValueError: a bad pattern, or a named layer that has no such kernel.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="fc")])
    >>> check_pattern(model, "2:4")["fc/kernel"]  # dense: 1 group of 4 non-zeros
    1
    """
    n, m = structure.parse_pattern(pattern)
    wanted = None if layers is None else set(layers)
    report, found = {}, set()
    for layer, ancestors in layer_tree.walk(model)[1:]:
        if wanted is not None and layer.name not in wanted:
            continue
        axes = structure.unit_axes(type(layer).__name__)
        kernel = getattr(layer, "kernel", None)
        values = None
        if isinstance(layer, keras.layers.EinsumDense) and kernel is not None:
            layout = layer_inputs.kernel_layout(layer, tuple(kernel.shape))
            if layout is not None:  # [input features, outputs]: the input axis is 0
                values, axes = layout.to_matrix(ops.convert_to_numpy(kernel)), (-1, 0)
        if axes is None or kernel is None:
            if wanted is not None:
                raise ValueError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) has no Dense/Conv "
                    "kernel to hold an N:M pattern."
                )
            continue
        values = ops.convert_to_numpy(kernel) if values is None else values
        nm = structure.NM(n, m, axes[1])
        if values.shape[axes[1]] % m:
            if wanted is not None:
                nm.check_shape(values.shape, layer.name)
            continue
        path = "/".join([a.name for a in ancestors[1:]] + [layer.name, "kernel"])
        report[path] = nm.broken_groups(values != 0)
        found.add(layer.name)
    if wanted is not None and wanted - found:
        raise ValueError(f"No layer named {sorted(wanted - found)} in model '{model.name}'.")
    return report
