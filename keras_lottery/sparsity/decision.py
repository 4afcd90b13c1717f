"""The mask decision of a round: a pure function of arrays, no Keras.

`next_masks(weights, masks, targets, ...)` is what every pruning method in
keras_lottery comes down to: a *scorer* ranks the surviving weights (by
magnitude, at random, by a saliency computed elsewhere) and a *selector*
keeps the best of them up to the round's targets, per tensor
(`distribution="uniform"` or `"erk"`, whose per-tensor targets
`keras_lottery.sparsity.budgets` sets) or with one threshold over a pool of
tensors (`distribution="global"`), weight by weight, whole units, or N of
every M.
Controls are variations of the same two steps:

- `control="random_prune"`: the method's decision fixes how many weights
  each tensor keeps; random scores decide which (the paper's random pruning
  control, and the "shuffle within layers" ablation of Frankle et al. 2021);
- `reference=`: another run's masks for this round (a control that follows
  a ticket run exactly).

Example:
>>> w = {"fc/kernel": np.array([[0.3, -0.1], [0.05, -0.9]])}
>>> m = {"fc/kernel": np.ones((2, 2), bool)}
>>> next_masks(w, m, {"fc/kernel": 0.5})["fc/kernel"].tolist()
[[True, False], [False, True]]
"""

import numpy as np

from keras_lottery.sparsity import pruning
from keras_lottery.sparsity import structure as structure_lib
from keras_lottery.sparsity import vocabulary

UNIFORM = vocabulary.UNIFORM
GLOBAL = vocabulary.GLOBAL
RANDOM_PRUNE = "random_prune"


def magnitude_scores(weights, masks=None):
    """`{key: |w|}`: the scorer of magnitude pruning.

    Example:
    >>> magnitude_scores({"a": np.array([-2.0, 1.0])})["a"].tolist()
    [2.0, 1.0]
    """
    del masks
    return {key: np.abs(np.asarray(value, np.float32)) for key, value in weights.items()}


def random_scores(masks, seed):
    """`{key: uniform noise}` of each mask's shape, from one seeded generator
    (keys in order), for random pruning.

    Example:
    >>> random_scores({"a": np.ones(3, bool)}, seed=0)["a"].shape
    (3,)
    """
    rng = np.random.default_rng(seed)
    return {key: rng.random(np.shape(mask), dtype=np.float32) for key, mask in masks.items()}


def inverted(scores):
    """Scores ranked the other way round (the "inverted scores" ablation:
    keep what the method would prune first).

    Example:
    >>> inverted({"a": np.array([1.0, 3.0])})["a"].tolist()
    [-1.0, -3.0]
    """
    return {key: -np.asarray(value, np.float32) for key, value in scores.items()}


def select(scores, masks, targets, *, distribution=UNIFORM, pool=None, structure=None):
    """Keeps the best-scoring survivors up to the targets.

    Args:
        scores: `{key: array}`, higher survives (any real values; pruned
            weights never come back whatever their score).
        masks: `{key: bool array}` current survivors.
        targets: `{key: sparsity}`, the fraction of each tensor's original
            size to prune. Keys missing from it keep their masks.
        distribution: "global": one threshold over the `pool` (its overall
            target is the size-weighted mean of its keys' targets); "uniform"
            or "erk": each tensor to its own target.
        pool: keys pruned together under "global" (default: every key of
            `targets` with a target > 0).
        structure: `{key: structure.Structure}`: what a key prunes as one
            unit (default: single weights).

    Returns:
        `{key: bool array}` new masks, subsets of `masks`.

    Example:
    >>> s = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}
    >>> m = {k: np.ones(2, bool) for k in s}
    >>> out = select(s, m, {"a": 0.5, "b": 0.5}, distribution="global")
    >>> out["a"].tolist(), out["b"].tolist()
    ([False, False], [True, True])
    """
    vocabulary.distribution_argument(distribution)
    structure = structure or {}
    masks = {key: np.asarray(mask, bool) for key, mask in masks.items()}
    new = {key: mask.copy() for key, mask in masks.items()}
    if distribution != GLOBAL:
        for key, sparsity in targets.items():
            new[key] = structure_lib.get(structure, key).select(
                scores[key], masks[key], 1.0 - float(sparsity)
            )
        return new
    if any(not structure_lib.get(structure, key).elementwise for key in targets):
        raise ValueError(vocabulary.GLOBAL_TAKES_WEIGHTS)
    if pool is None:
        pool = [key for key, sparsity in targets.items() if sparsity > 0]
    pool = [key for key in masks if key in set(pool)]
    if not pool:
        return new
    sizes = np.array([masks[key].size for key in pool], dtype=np.float64)
    overall = float(np.dot(sizes, [targets[key] for key in pool]) / sizes.sum())
    return pruning.global_top(scores, masks, 1.0 - overall, names=pool)


def next_masks(
    weights,
    masks,
    targets,
    *,
    distribution=UNIFORM,
    pool=None,
    structure=None,
    scores=None,
    control=None,
    reference=None,
    seed=0,
):
    """The masks of the next round: scorer + selector, with the controls.

    Args:
        weights: `{key: array}` current weight values.
        masks: `{key: bool array}` current survivors.
        targets: `{key: sparsity}` (fraction of the original size to prune).
        distribution, pool, structure: as for `select`.
        scores: `{key: array}` scores to rank by (default: magnitude of
            `weights`).
        control: None or "random_prune" (same counts per key as the decision,
            random positions). "reinit" changes weights, not masks: it is
            handled by rewinding.
        reference: `{key: bool array}` masks of another run for this round:
            followed exactly (within the current survivors), or with
            `control="random_prune"`, their counts per key.
        seed: seed of the random control.

    Returns:
        `{key: bool array}`.

    Example:
    >>> w = {"a": np.arange(10.0)}
    >>> m = {"a": np.ones(10, bool)}
    >>> int(next_masks(w, m, {"a": 0.7}, control="random_prune", seed=1)["a"].sum())
    3
    """
    masks = {key: np.asarray(mask, bool) for key, mask in masks.items()}
    if reference is not None and control != RANDOM_PRUNE:
        return {key: masks[key] & np.asarray(reference.get(key, masks[key]), bool)
                for key in masks}
    if reference is not None:
        decided = {key: np.asarray(reference.get(key, masks[key]), bool) for key in masks}
    else:
        if scores is None:
            scores = magnitude_scores(weights, masks)
        decided = select(scores, masks, targets, distribution=distribution, pool=pool,
                         structure=structure)
    if control != RANDOM_PRUNE:
        return decided
    kept = {key: 1.0 - np.count_nonzero(decided[key]) / max(1, decided[key].size)
            for key in decided}
    return select(random_scores(masks, seed), masks, kept, structure=structure)
