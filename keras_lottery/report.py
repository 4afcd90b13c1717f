"""`sparsity_report`: how many weights survive, overall and per layer."""

import dataclasses

import numpy as np
from keras import ops

from keras_lottery import registry
from keras_lottery.wrapper import LotteryWrapper


@dataclasses.dataclass(frozen=True)
class WeightSparsity:
    """Counts for one prunable weight.

    Attributes:
        layer: layer name.
        weight: weight name within the layer, e.g. "kernel".
        shape: the weight's shape.
        total: number of elements.
        kept: surviving (unmasked, or for unwrapped layers non-zero) elements.

    Example:
    >>> WeightSparsity("fc", "kernel", (2, 2), 4, 1).density
    0.25
    """

    layer: str
    weight: str
    shape: tuple
    total: int
    kept: int

    @property
    def density(self):
        return self.kept / self.total if self.total else 1.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Overall and per-weight density of a model's prunable weights.

    `str(report)` is a readable table; `report.as_dict()` is JSON-ready.

    Attributes:
        weights: one `WeightSparsity` per prunable weight, in model order.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> report = sparsity_report(model)
    >>> report.kept, report.total, report.layer_density()
    (8, 8, {'fc': 1.0})
    """

    weights: tuple

    @property
    def total(self):
        return sum(w.total for w in self.weights)

    @property
    def kept(self):
        return sum(w.kept for w in self.weights)

    @property
    def density(self):
        return self.kept / self.total if self.total else 1.0

    def layer_density(self):
        """`{layer name: density}` over each layer's prunable weights."""
        totals, kept = {}, {}
        for w in self.weights:
            totals[w.layer] = totals.get(w.layer, 0) + w.total
            kept[w.layer] = kept.get(w.layer, 0) + w.kept
        return {name: kept[name] / totals[name] for name in totals}

    def as_dict(self):
        return {
            "density": self.density,
            "total": self.total,
            "kept": self.kept,
            "weights": [
                {**dataclasses.asdict(w), "shape": list(w.shape), "density": w.density}
                for w in self.weights
            ],
        }

    def __str__(self):
        rows = [("layer/weight", "shape", "kept", "total", "density")]
        for w in self.weights:
            rows.append(
                (
                    f"{w.layer}/{w.weight}",
                    "x".join(str(d) for d in w.shape),
                    str(w.kept),
                    str(w.total),
                    f"{100 * w.density:.2f}%",
                )
            )
        rows.append(
            ("total", "", str(self.kept), str(self.total), f"{100 * self.density:.2f}%")
        )
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths))
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)


def sparsity_report(model):
    """Counts surviving prunable weights, overall and per layer.

    Wrapped layers are counted by their masks; unwrapped prunable layers (e.g.
    in a stripped ticket) by their non-zero weights.

    Args:
        model: a built `keras.Model`, wrapped or not.

    Returns:
        A `SparsityReport`.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> sparsity_report(model).density
    1.0
    """
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so its weights do not exist "
            "yet. Build it first (call it on data or "
            "`model.build(input_shape)`)."
        )
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    inner_layers = {
        id(layer.layer) for layer in layers if isinstance(layer, LotteryWrapper)
    }
    rows = []
    for layer in layers:
        if isinstance(layer, LotteryWrapper):
            for name, mask in layer.get_masks().items():
                rows.append(
                    WeightSparsity(
                        layer.name, name, mask.shape, mask.size, int(mask.sum())
                    )
                )
        elif (
            id(layer) not in inner_layers
            and layer.built
            and registry.is_prunable(layer)
        ):
            for name, variable in registry.get_prunable_weights(layer):
                value = ops.convert_to_numpy(variable.value)
                rows.append(
                    WeightSparsity(
                        layer.name,
                        name,
                        value.shape,
                        value.size,
                        int(np.count_nonzero(value)),
                    )
                )
    return SparsityReport(tuple(rows))
