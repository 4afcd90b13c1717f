"""Pure pruning math on NumPy arrays: which weights survive a round.

Nothing here knows about Keras. A pruning step is a function
`(weights, masks, target) -> masks` over plain `{name: array}` maps, so it is
testable without a model and fast on large models (one `np.partition` per
layer, or one over all weights for global pruning; no Python loops over
weights).

Conventions shared by every function:

- `masks` are boolean arrays, `True` where a weight survives.
- Targets are fractions of the layer's *original* size, so after round r at
  rate p a layer keeps exactly `round(n * (1 - p) ** r)` weights, whatever
  happened in earlier rounds.
- A weight once pruned never comes back: a target that would keep more weights
  than survive keeps the survivors.
- Ties are broken deterministically: among equal scores, the weight with the
  lower flat index survives (in global pruning, layers are concatenated in the
  order of the `weights` map).
"""

import numpy as np


def keep_count(size, density):
    """Number of weights a tensor of `size` elements keeps at `density`.

    Args:
        size: number of elements of the original tensor.
        density: fraction of weights to keep, in [0, 1].

    Returns:
        `round(size * density)` as an int.

    Example:
    >>> keep_count(300, 0.8 ** 3)
    154
    """
    _check_density(density, "density")
    return int(round(size * density))


def top_k_mask(scores, k):
    """Boolean mask of exactly `k` largest `scores` (ties: lower index wins).

    Runs in O(n) with `np.partition`; no full sort.

    Args:
        scores: array of any shape.
        k: how many entries to keep, clipped to [0, scores.size].

    Returns:
        A boolean array shaped like `scores` with exactly `k` True entries.

    Example:
    >>> top_k_mask(np.array([0.5, 0.1, 0.5, 0.9]), 2).tolist()
    [True, False, False, True]
    """
    scores = np.asarray(scores)
    flat = scores.reshape(-1)
    n = flat.size
    k = int(min(max(k, 0), n))
    if k == n:
        return np.ones(scores.shape, dtype=bool)
    if k == 0:
        return np.zeros(scores.shape, dtype=bool)
    threshold = np.partition(flat, n - k)[n - k]
    keep = flat > threshold
    missing = k - int(np.count_nonzero(keep))
    if missing > 0:
        ties = np.flatnonzero(flat == threshold)
        keep[ties[:missing]] = True
    return keep.reshape(scores.shape)


def survivor_scores(values, mask):
    """Scores where already-pruned entries rank below every survivor.

    Args:
        values: scores of any sign (e.g. `abs(weights)`, a saliency); NaN
            ranks like a pruned entry.
        mask: boolean survivors mask.

    Returns:
        `values` where `mask`, else -inf (float32).

    Example:
    >>> survivor_scores(np.array([0.0, 2.0]), np.array([True, False])).tolist()
    [0.0, -inf]
    """
    values = np.asarray(values, dtype=np.float32)
    # NaN scores rank below every real score but above pruned entries, so a
    # pruned weight never comes back.
    values = np.where(np.isnan(values), np.finfo(np.float32).min, values)
    return np.where(np.asarray(mask, bool), values, np.float32(-np.inf))


def prune_layerwise(weights, masks, densities):
    """Magnitude pruning with one target density per tensor.

    Args:
        weights: `{name: array}` current weight values.
        masks: `{name: bool array}` current survivors.
        densities: `{name: fraction of the original size to keep}`. Names
            missing from `densities` keep their mask unchanged.

    Returns:
        `{name: bool array}` new masks (subsets of the old ones).

    Example:
    >>> w = {"fc": np.array([[0.3, -0.1], [0.05, -0.9]])}
    >>> m = {"fc": np.ones((2, 2), bool)}
    >>> prune_layerwise(w, m, {"fc": 0.5})["fc"].tolist()
    [[True, False], [False, True]]
    """
    scores = {name: np.abs(np.asarray(w)) for name, w in weights.items()}
    return prune_by_scores(scores, masks, densities)


def prune_by_scores(scores, masks, densities):
    """Keeps, per tensor, the highest-scoring survivors at a target density.

    The building block of magnitude and random pruning: scores decide *which*
    weights survive, `densities` decide *how many*.

    Args:
        scores: `{name: array}` non-negative scores, higher survives.
        masks: `{name: bool array}` current survivors.
        densities: `{name: fraction of the original size to keep}`.

    Returns:
        `{name: bool array}` new masks.

    Example:
    >>> s = {"a": np.array([3.0, 1.0, 2.0])}
    >>> prune_by_scores(s, {"a": np.ones(3, bool)}, {"a": 1 / 3})["a"].tolist()
    [True, False, False]
    """
    new_masks = {}
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        if name not in densities:
            new_masks[name] = mask.copy()
            continue
        k = min(keep_count(mask.size, densities[name]), int(mask.sum()))
        new_masks[name] = top_k_mask(survivor_scores(scores[name], mask), k)
    return new_masks


def prune_global(weights, masks, density, names=None):
    """Magnitude pruning with one threshold over several tensors.

    Args:
        weights: `{name: array}` current weight values.
        masks: `{name: bool array}` current survivors.
        density: fraction of the pooled original size to keep.
        names: tensors that share the threshold (default: all). The others
            keep their masks.

    Returns:
        `{name: bool array}` new masks; exactly `round(N * density)` weights
        survive over the pooled tensors (or all survivors if fewer).

    Example:
    >>> w = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}
    >>> m = {k: np.ones(2, bool) for k in w}
    >>> out = prune_global(w, m, 0.5)
    >>> out["a"].tolist(), out["b"].tolist()
    ([False, False], [True, True])
    """
    scores = {name: np.abs(np.asarray(w)) for name, w in weights.items()}
    return global_top(scores, masks, density, names)


def global_top(scores, masks, density, names=None):
    """Keeps the highest-scoring survivors over several tensors at once.

    Args:
        scores: `{name: array}` scores of any sign, higher survives.
        masks: `{name: bool array}` current survivors.
        density: fraction of the pooled original size to keep.
        names: tensors that share the threshold (default: all).

    Returns:
        `{name: bool array}` new masks (subsets of the old ones).

    Example:
    >>> s = {"a": np.array([-1.0, 5.0]), "b": np.array([2.0, 0.0])}
    >>> out = global_top(s, {k: np.ones(2, bool) for k in s}, 0.5)
    >>> out["a"].tolist(), out["b"].tolist()
    ([False, True], [True, False])
    """
    pooled = list(masks) if names is None else [n for n in masks if n in names]
    new_masks = {name: np.asarray(mask, dtype=bool).copy() for name, mask in masks.items()}
    if not pooled:
        return new_masks
    flat_scores = np.concatenate(
        [survivor_scores(scores[n], new_masks[n]).ravel() for n in pooled]
    )
    survivors = sum(int(new_masks[n].sum()) for n in pooled)
    k = min(keep_count(flat_scores.size, density), survivors)
    keep = top_k_mask(flat_scores, k)
    offset = 0
    for name in pooled:
        size = new_masks[name].size
        new_masks[name] = keep[offset : offset + size].reshape(new_masks[name].shape)
        offset += size
    return new_masks


def prune_random(masks, counts, seed):
    """Random pruning among survivors to exact per-tensor counts.

    The `random_prune` control: same per-layer densities as a ticket, random
    positions.

    Args:
        masks: `{name: bool array}` current survivors.
        counts: `{name: number of weights to keep}`.
        seed: int seed for NumPy's generator.

    Returns:
        `{name: bool array}` new masks, subsets of `masks`.

    Example:
    >>> m = prune_random({"a": np.ones(10, bool)}, {"a": 3}, seed=0)
    >>> int(m["a"].sum())
    3
    """
    rng = np.random.default_rng(seed)
    new_masks = {}
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        scores = rng.random(mask.shape, dtype=np.float32)
        k = min(int(counts.get(name, mask.sum())), int(mask.sum()))
        new_masks[name] = top_k_mask(survivor_scores(scores, mask), k)
    return new_masks


def _check_density(value, what):
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be in [0, 1]; received {what}={value!r}.")
