"""Budgets: how a density is spread over weight tensors (uniform, global
pools, ERK)."""

import numpy as np
import pytest

from keras_lottery.sparsity import budgets


@pytest.mark.parametrize("density", [0.3, 0.05])
def test_erk_budgets_sum_to_the_target_and_stay_at_most_dense(density):
    shapes = {"a": (784, 300), "b": (300, 100), "c": (100, 10), "d": (3, 3, 16, 32)}
    targets = budgets.budgets(shapes, density, "erk")
    sizes = {k: np.prod(s) for k, s in shapes.items()}
    kept = sum(sizes[k] * (1 - t) for k, t in targets.items())
    assert kept == pytest.approx(density * sum(sizes.values()), rel=1e-9)
    assert all(0.0 <= t <= 1.0 for t in targets.values())
    assert 1 - targets["c"] > 1 - targets["a"]  # small layers stay denser


def test_pooled_budgets_leave_dense_keys_out_and_keep_the_total():
    shapes = {"a": (300, 100), "b": (100, 10), "c": (10, 10)}
    densities = {"a": 0.2, "b": 0.2, "c": 1.0}
    erk = budgets.targets(shapes, densities, "erk")
    sizes = {k: np.prod(s) for k, s in shapes.items()}
    kept = sum(sizes[k] * (1 - erk[k]) for k in ("a", "b"))
    assert kept == pytest.approx(0.2 * (sizes["a"] + sizes["b"]))
    assert erk["c"] == 0.0 and 1 - erk["b"] > 1 - erk["a"]
    assert budgets.targets(shapes, densities, "global") == {
        "a": pytest.approx(0.8), "b": pytest.approx(0.8), "c": 0.0}
    assert budgets.targets(shapes, {"a": 0.2, "b": 0.5, "c": 1.0}, "uniform") == {
        "a": pytest.approx(0.8), "b": pytest.approx(0.5), "c": 0.0}
    with pytest.raises(ValueError, match="can only be 1.0"):
        budgets.targets(shapes, {"a": 0.2, "b": 0.5, "c": 1.0}, "global")
