"""The mask decision on arrays, without Keras: scorers, selectors, controls."""

import numpy as np
import pytest

from keras_lottery.sparsity import decision


def _masks(weights):
    return {k: np.ones(np.shape(v), bool) for k, v in weights.items()}


def test_layerwise_magnitude_by_default():
    w = {"a": np.array([0.1, -3.0, 0.2, 2.0]), "b": np.array([5.0, 0.0])}
    out = decision.next_masks(w, _masks(w), {"a": 0.5, "b": 0.5})
    assert out["a"].tolist() == [False, True, False, True]
    assert out["b"].tolist() == [True, False]


def test_global_pools_keys_with_a_target():
    w = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0]), "c": np.array([0.1, 0.2])}
    out = decision.next_masks(w, _masks(w), {"a": 0.5, "b": 0.5, "c": 0.0}, distribution="global")
    assert out["a"].tolist() == [False, False] and out["b"].all() and out["c"].all()


def test_scores_replace_the_magnitude():
    w = {"a": np.array([10.0, 1.0, 1.0])}
    scores = {"a": np.array([-1.0, 5.0, 2.0])}
    assert decision.next_masks(w, _masks(w), {"a": 2 / 3}, scores=scores)["a"].tolist() == [
        False, True, False]
    inverted = decision.inverted(scores)
    assert decision.next_masks(w, _masks(w), {"a": 2 / 3}, scores=inverted)["a"].tolist() == [
        True, False, False]


def test_random_prune_keeps_the_decisions_counts_at_random_positions():
    rng = np.random.default_rng(0)
    w = {"a": rng.normal(size=(20, 10)), "b": rng.normal(size=(10, 3))}
    magnitude = decision.next_masks(w, _masks(w), {"a": 0.8, "b": 0.5}, distribution="global")
    random = decision.next_masks(w, _masks(w), {"a": 0.8, "b": 0.5}, distribution="global",
                                 control="random_prune", seed=3)
    for key in w:
        assert random[key].sum() == magnitude[key].sum()
    assert not np.array_equal(random["a"], magnitude["a"])
    again = decision.next_masks(w, _masks(w), {"a": 0.8, "b": 0.5}, distribution="global",
                                control="random_prune", seed=3)
    assert all(np.array_equal(again[k], random[k]) for k in w)


def test_reference_masks_are_followed_within_the_survivors():
    w = {"a": np.arange(4.0)}
    current = {"a": np.array([True, True, True, False])}
    reference = {"a": np.array([True, False, True, True])}
    out = decision.next_masks(w, current, {"a": 0.9}, reference=reference)
    assert out["a"].tolist() == [True, False, True, False]
    counts = decision.next_masks(w, {"a": np.ones(4, bool)}, {}, reference=reference,
                                 control="random_prune", seed=0)
    assert counts["a"].sum() == 3


def test_pruned_weights_never_return():
    w = {"a": np.array([100.0, 1.0, 2.0])}
    current = {"a": np.array([False, True, True])}
    out = decision.next_masks(w, current, {"a": 1 / 3})
    assert out["a"].tolist() == [False, True, True]


def test_bad_distribution():
    with pytest.raises(ValueError, match="distribution"):
        decision.select({}, {}, {}, distribution="per_layer")
