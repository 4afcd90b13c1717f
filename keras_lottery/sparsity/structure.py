"""What one pruning decision removes: single weights, whole units, or N of
every M.

A `Structure` turns scores and a density into a mask for one tensor; the
selector of `keras_lottery.sparsity.decision` asks each key's structure. Three kinds:

- `Unstructured()`: single weights (the default, the paper's IMP).
- `Units(axis)`: whole output units of a kernel (the neurons of a Dense
  kernel `(in, out)`, the filters of a Conv kernel `(..., in, out)`), ranked
  by the L1 or L2 norm of their surviving scores. A structured ticket can be
  compacted into a physically smaller dense model
  (`keras_lottery.export.compaction`).
- `NM(n, m, axis)`: in every group of `m` consecutive weights along the input
  axis, `n` survive (`2:4` for the sparse tensor cores of recent GPUs).

`structures_for(...)` gives each mask key its copy of the run's structure
(the `structure=` argument, parsed by `keras_lottery.sparsity.vocabulary`).

Example:
>>> Unstructured().select(np.array([3.0, 1.0, 2.0]), np.ones(3, bool), 2 / 3).tolist()
[True, False, True]
"""

import numpy as np

from keras_lottery.sparsity import pruning

NORMS = ("l1", "l2")


class Unstructured:
    """Single weights: keep the `round(size * density)` best-scoring survivors.

    Example:
    >>> Unstructured().select(np.array([1.0, 5.0]), np.array([True, True]), 0.5).tolist()
    [False, True]
    """

    elementwise = True

    def select(self, scores, mask, density):
        """The new mask: a subset of `mask` at `density` of the tensor's size."""
        mask = np.asarray(mask, bool)
        k = min(pruning.keep_count(mask.size, density), int(mask.sum()))
        return pruning.top_k_mask(pruning.survivor_scores(scores, mask), k)

    def describe(self):
        return "weight"


class Units:
    """Whole units along `axis` (a Dense kernel's columns, a Conv kernel's
    filters): `round(units * density)` units survive, ranked by the norm of
    their surviving scores.

    Args:
        axis: the unit axis of the kernel (-1: output units of Dense/Conv).
        norm: "l1" (sum of |scores|) or "l2".

    Example:
    >>> w = np.array([[1.0, 0.1, 3.0], [1.0, 0.2, -3.0]])
    >>> Units().select(np.abs(w), np.ones((2, 3), bool), 1 / 3).astype(int).tolist()
    [[0, 0, 1], [0, 0, 1]]
    """

    elementwise = False

    def __init__(self, axis=-1, norm="l1"):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; received {norm!r}.")
        self.axis = axis
        self.norm = norm

    def alive(self, mask):
        """Bool per unit: does any weight of the unit survive?"""
        mask = np.moveaxis(np.asarray(mask, bool), self.axis, -1)
        return mask.reshape(-1, mask.shape[-1]).any(axis=0)

    def unit_scores(self, scores, mask):
        """Norm of each unit's surviving scores."""
        values = np.where(np.asarray(mask, bool), np.abs(np.asarray(scores, np.float64)), 0.0)
        values = np.moveaxis(values, self.axis, -1).reshape(-1, values.shape[self.axis])
        if self.norm == "l2":
            return np.sqrt((values**2).sum(axis=0))
        return values.sum(axis=0)

    def select(self, scores, mask, density):
        mask = np.asarray(mask, bool)
        alive = self.alive(mask)
        k = min(pruning.keep_count(alive.size, density), int(alive.sum()))
        keep = pruning.top_k_mask(pruning.survivor_scores(self.unit_scores(scores, mask), alive), k)
        shape = [1] * mask.ndim
        shape[self.axis] = keep.size
        return mask & keep.reshape(shape)

    def describe(self):
        return f"units(axis={self.axis}, norm={self.norm})"


class NM:
    """N of every M consecutive weights along `axis` survive (per group).

    Args:
        n, m: keep `n` of every `m` (0 < n < m).
        axis: the axis groups run along (the input axis: 0 for a Dense
            kernel `(in, out)`, -2 for a Conv kernel `(..., in, out)`);
            its length must be a multiple of `m`.

    Example:
    >>> out = NM(2, 4, axis=0).select(np.arange(8.0).reshape(8, 1), np.ones((8, 1), bool), 0.5)
    >>> out.ravel().astype(int).tolist()
    [0, 0, 1, 1, 0, 0, 1, 1]
    >>> NM(2, 4).per_group(0.8), NM(2, 4).per_group(0.1)
    (3, 2)
    """

    elementwise = False

    def __init__(self, n, m, axis=0):
        if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
            raise ValueError(f"An N:M pattern needs integers 0 < N < M; received {n}:{m}.")
        self.n, self.m, self.axis = n, m, axis

    @property
    def density(self):
        return self.n / self.m

    def check_shape(self, shape, key):
        if shape[self.axis] % self.m:
            raise ValueError(
                f"{key} has {shape[self.axis]} inputs along axis {self.axis}, not a "
                f"multiple of {self.m}: it cannot hold a {self.n}:{self.m} pattern. "
                "Exclude it, or use structure='weight'."
            )

    def _groups(self, array):
        moved = np.moveaxis(np.asarray(array), self.axis, -1)
        return moved.reshape(*moved.shape[:-1], -1, self.m), moved.shape

    def per_group(self, density):
        """Weights kept per group at `density`: `round(m * density)`, never
        fewer than `n` (so iterative rounds tighten 4:4 -> 3:4 -> 2:4)."""
        if density is None:
            return self.n
        return int(min(self.m, max(self.n, round(self.m * float(density)))))

    def select(self, scores, mask, density=None):
        """The best `per_group(density)` survivors of every group (None:
        exactly the N:M pattern)."""
        mask = np.asarray(mask, bool)
        grouped_scores, moved_shape = self._groups(pruning.survivor_scores(scores, mask))
        order = np.argsort(-grouped_scores, axis=-1, kind="stable")
        keep = np.zeros(grouped_scores.shape, bool)
        np.put_along_axis(keep, order[..., : self.per_group(density)], True, axis=-1)
        keep = np.moveaxis(keep.reshape(moved_shape), -1, self.axis)
        return mask & keep

    def broken_groups(self, mask):
        """How many groups of `mask` keep more than `n` of `m`."""
        grouped, _ = self._groups(np.asarray(mask, bool))
        return int((grouped.sum(axis=-1) > self.n).sum())

    def holds(self, mask):
        """Whether every group of `mask` keeps at most `n` of `m`."""
        return self.broken_groups(mask) == 0

    def describe(self):
        return f"{self.n}:{self.m}"


UNSTRUCTURED = Unstructured()


def get(structures, key):
    """The structure of `key` in a `{key: Structure}` map (default: single
    weights).

    Example:
    >>> get({}, "fc/kernel").elementwise
    True
    """
    return (structures or {}).get(key, UNSTRUCTURED)


def final_targets(structures, targets):
    """`targets` with every N:M key at its pattern's sparsity: the last
    round of an N:M run holds the pattern whatever the schedule reached.

    Example:
    >>> final_targets({"a": NM(2, 4)}, {"a": 0.2, "b": 0.2})
    {'a': 0.5, 'b': 0.2}
    """
    out = dict(targets)
    for key, structure in (structures or {}).items():
        if isinstance(structure, NM) and key in out:
            out[key] = 1.0 - structure.density
    return out


def parse_pattern(pattern):
    """`"2:4"` -> `(2, 4)`, or ValueError.

    Example:
    >>> parse_pattern("2:4")
    (2, 4)
    """
    try:
        n, m = (int(part) for part in str(pattern).split(":"))
    except ValueError:
        raise ValueError(f"pattern must look like 'N:M' (e.g. '2:4'); received {pattern!r}.") from None
    NM(n, m)
    return n, m


def unit_axes(layer_class_name):
    """(unit axis, input axis) of a kernel of this layer class, or None when
    its units cannot be pruned as a whole.

    Example:
    >>> unit_axes("Dense"), unit_axes("Conv2DTranspose"), unit_axes("Embedding")
    ((-1, 0), (-2, -1), None)
    """
    if layer_class_name == "Dense":
        return (-1, 0)
    if layer_class_name in ("Conv1D", "Conv2D", "Conv3D"):
        return (-1, -2)
    if layer_class_name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return (-2, -1)
    return None


def structures_for(prunables, structure=None, skip=()):
    """`{key: Structure}` for the pruned weights of a model.

    Args:
        prunables: `[(key, layer class name, shape)]`.
        structure: the template (`Unstructured`, `Units` or `NM`; parse the
            `structure=` argument with
            `keras_lottery.sparsity.vocabulary.structure_argument`): each key
            gets a copy along its layer's unit axis (`Units`) or input axis
            (`NM`).
        skip: keys left unstructured (e.g. the output layers, whose units
            are the model's outputs).

    Raises:
        ValueError: a weight cannot take the structure (named).

    Example:
    >>> s = structures_for([("fc/kernel", "Dense", (8, 4))], Units(norm="l2"))
    >>> s["fc/kernel"].describe()
    'units(axis=-1, norm=l2)'
    """
    if structure is None or structure.elementwise:
        return {}
    structures = {}
    for key, class_name, shape in prunables:
        if key in skip:
            continue
        axes = unit_axes(class_name)
        pattern = isinstance(structure, NM)
        if axes is None:
            raise ValueError(
                f"{key} belongs to a {class_name} layer, whose kernel has no "
                f"{'input axis for an N:M pattern' if pattern else 'output units'} "
                "keras_lottery knows; exclude it from wrapping (exclude=[...]) or use "
                "structure='weight'."
            )
        if pattern:
            structures[key] = NM(structure.n, structure.m, axis=axes[1])
            structures[key].check_shape(shape, key)
        else:
            structures[key] = Units(axis=axes[0], norm=structure.norm)
    return structures
