"""`sparsity_report`: how many weights survive, overall and per weight.

For a wrapped model the report covers exactly the pruned weights, counted by
their masks, so its figures are those of `imp.results` and of ticket files.
For a plain model (a stripped ticket, a loaded export) it covers every
prunable weight (see `keras_lottery.core.registry`), counted by its non-zeros.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.core import wrapping


@dataclasses.dataclass(frozen=True)
class WeightSparsity:
    """Counts for one prunable weight.

    Attributes:
        key: the mask key (the variable's path).
        shape: the weight's shape.
        total: number of elements.
        kept: surviving elements (unmasked, or non-zero in a plain model).

    Example:
    >>> w = WeightSparsity("fc/kernel", (2, 2), 4, 1)
    >>> w.density, w.layer, w.weight
    (0.25, 'fc', 'kernel')
    """

    key: str
    shape: tuple
    total: int
    kept: int

    @property
    def layer(self):
        return masks_lib.layer_of(self.key)

    @property
    def weight(self):
        return masks_lib.weight_of(self.key)

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
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")], name="net")
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
        """`{layer path: density}` over each layer's prunable weights."""
        totals, kept = {}, {}
        for w in self.weights:
            totals[w.layer] = totals.get(w.layer, 0) + w.total
            kept[w.layer] = kept.get(w.layer, 0) + w.kept
        return {name: kept[name] / totals[name] for name in totals}

    def key_density(self):
        """`{key: density}` of every prunable weight."""
        return {w.key: w.density for w in self.weights}

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
        rows = [("weight", "shape", "kept", "total", "density")]
        for w in self.weights:
            rows.append(
                (
                    w.key,
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
    """Counts surviving prunable weights, overall and per weight.

    Args:
        model: a built `keras.Model`, wrapped or not.

    Returns:
        A `SparsityReport`.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="net")
    >>> sparsity_report(model).density
    1.0
    """
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so its weights do not exist "
            "yet. Build it first (call it on data or `model.build(input_shape)`)."
        )
    if wrapping.has_lottery_state(model):
        rows = [
            WeightSparsity(key, mask.shape, int(mask.size), int(np.count_nonzero(mask)))
            for key, mask in wrapping.get_masks(model).items()
        ]
    else:
        rows = []
        for key, variable, _ in wrapping.prunable_candidates(model):
            value = ops.convert_to_numpy(variable.value)
            rows.append(
                WeightSparsity(key, value.shape, int(value.size), int(np.count_nonzero(value)))
            )
    return SparsityReport(tuple(rows))
