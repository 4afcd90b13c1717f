"""How a total density is spread over weight tensors: per-tensor sparsity
targets for the `distribution=` of the sparsity vocabulary.

- `"uniform"`: every tensor at its own density;
- `"global"`: one pool at one density; the selector then ranks the pool with
  one threshold (`keras_lottery.sparsity.decision.select`), so the targets
  here only say which keys are pooled and how much the pool keeps;
- `"erk"` (Erdős–Rényi-Kernel, as in RigL): tensor k keeps
  `ε · sum(shape) / prod(shape)` (capped at 1, the rest spread over the
  others), ε chosen so the pool's total is met.

Example:
>>> t = targets({"a": (300, 100), "b": (100, 10)}, {"a": 0.3, "b": 0.3}, "erk")
>>> round(1 - t["a"], 4), round(1 - t["b"], 4)  # b capped dense, a takes the rest
(0.2767, 1.0)
"""

import numpy as np

from keras_lottery.sparsity import vocabulary


def budgets(shapes, density, distribution=vocabulary.UNIFORM):
    """`{key: sparsity}` targets whose kept weights total `density` of all
    (`"uniform"` or `"erk"`; `"global"` pools every key at `density`).

    Example:
    >>> budgets({"a": (4, 4), "b": (4, 2)}, 0.5)
    {'a': 0.5, 'b': 0.5}
    """
    if distribution not in vocabulary.DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {vocabulary.DISTRIBUTIONS}; "
                         f"received {distribution!r}.")
    if distribution != vocabulary.ERK:
        return {key: 1.0 - density for key in shapes}
    sizes = {key: int(np.prod(shape)) for key, shape in shapes.items()}
    raw = {key: sum(shape) / sizes[key] for key, shape in shapes.items()}
    dense = set()
    while True:
        budget = density * sum(sizes.values()) - sum(sizes[k] for k in dense)
        free = [k for k in shapes if k not in dense]
        epsilon = budget / sum(raw[k] * sizes[k] for k in free)
        over = [k for k in free if epsilon * raw[k] > 1.0]
        if not over:
            return {k: 0.0 if k in dense else 1.0 - epsilon * raw[k] for k in shapes}
        dense.update(over)


def targets(shapes, densities, distribution=vocabulary.UNIFORM):
    """`{key: sparsity}` from per-key densities (`{key: kept fraction}`).

    `"uniform"` keeps each key at its own density. `"global"` and `"erk"`
    pool every key below 1.0 at one density (keys at 1.0 stay dense and out
    of the pool); per-key densities that differ inside the pool are refused,
    since one threshold (or ERK) sets each key's share itself.

    Example:
    >>> targets({"a": (2, 2), "b": (2, 2)}, {"a": 0.5, "b": 1.0}, "global")
    {'a': 0.5, 'b': 0.0}
    """
    if distribution == vocabulary.UNIFORM:
        return {key: 1.0 - float(densities[key]) for key in shapes}
    pool = {key: shape for key, shape in shapes.items() if densities[key] < 1.0}
    values = {float(densities[key]) for key in pool}
    if len(values) > 1:
        raise ValueError(
            f"distribution={distribution!r} spreads one density over the pruned weights "
            f"itself; a per-weight density can only be 1.0 (to leave a weight out). "
            f"Received densities {sorted(values)}. Use distribution='uniform' for "
            "per-weight densities."
        )
    out = {key: 0.0 for key in shapes}
    if pool:
        out.update(budgets(pool, values.pop(), distribution))
    return out
