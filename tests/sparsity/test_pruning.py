"""Pure pruning math: exact counts, ties, monotonicity, global threshold."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_lottery.sparsity import pruning


def test_keep_count_matches_paper_formula():
    for r in range(20):
        assert pruning.keep_count(266_200, 0.8**r) == round(266_200 * 0.8**r)


def test_keep_count_rejects_out_of_range():
    with pytest.raises(ValueError, match="density"):
        pruning.keep_count(10, 1.5)


def test_top_k_mask_ties_keep_lower_index():
    scores = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    assert pruning.top_k_mask(scores, 2).tolist() == [True, True, False, False, False]


def test_top_k_mask_all_equal_zeros():
    mask = pruning.top_k_mask(np.zeros((3, 4)), 5)
    assert mask.sum() == 5
    assert mask.ravel()[:5].all()


def test_layerwise_rounds_give_exact_counts():
    rng = np.random.default_rng(0)
    weights = {"a": rng.normal(size=(30, 20)), "b": rng.normal(size=(20, 7))}
    masks = {k: np.ones(v.shape, bool) for k, v in weights.items()}
    rates = {"a": 0.2, "b": 0.1}
    for r in range(1, 15):
        masks_next = pruning.prune_layerwise(
            weights, masks, {k: (1 - rates[k]) ** r for k in weights}
        )
        for k in weights:
            assert masks_next[k].sum() == round(weights[k].size * (1 - rates[k]) ** r)
            assert not (masks_next[k] & ~masks[k]).any(), "regrowth"
        masks = masks_next


def test_layerwise_keeps_largest_magnitudes():
    w = {"a": np.array([0.1, -5.0, 0.3, 2.0, -0.2])}
    m = pruning.prune_layerwise(w, {"a": np.ones(5, bool)}, {"a": 0.4})
    assert m["a"].tolist() == [False, True, False, True, False]


def test_pruned_weights_never_return_even_if_large():
    # A pruned weight with a large value (e.g. not yet zeroed) stays pruned.
    w = {"a": np.array([100.0, 1.0, 2.0, 3.0])}
    m = {"a": np.array([False, True, True, True])}
    out = pruning.prune_layerwise(w, m, {"a": 0.5})
    assert out["a"].tolist() == [False, False, True, True]


def test_target_above_survivors_keeps_survivors():
    w = {"a": np.arange(4.0)}
    m = {"a": np.array([True, False, False, True])}
    out = pruning.prune_layerwise(w, m, {"a": 0.9})
    assert out["a"].tolist() == m["a"].tolist()


def test_global_uses_one_threshold():
    w = {"small": np.full(10, 0.1), "large": np.full(10, 1.0)}
    m = {k: np.ones(10, bool) for k in w}
    out = pruning.prune_global(w, m, 0.5)
    assert out["small"].sum() == 0 and out["large"].sum() == 10


def test_global_pool_excludes_named_tensors():
    w = {"a": np.arange(10.0), "fc": np.zeros(10)}
    m = {k: np.ones(10, bool) for k in w}
    out = pruning.prune_global(w, m, 0.3, names=["a"])
    assert out["fc"].all()
    assert out["a"].sum() == 3


def test_random_prune_exact_counts_and_subset():
    m = {"a": np.ones((8, 8), bool)}
    m["a"][0] = False
    out = pruning.prune_random(m, {"a": 20}, seed=3)
    assert out["a"].sum() == 20
    assert not (out["a"] & ~m["a"]).any()
    again = pruning.prune_random(m, {"a": 20}, seed=3)
    assert np.array_equal(out["a"], again["a"])


shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9)


@settings(max_examples=60, deadline=None)
@given(
    w=hnp.arrays(np.float32, shapes, elements=st.sampled_from([0.0, -1.0, 0.5, 2.0])),
    rate=st.floats(0.0, 0.95),
    rounds=st.integers(1, 6),
)
def test_property_layerwise_counts_and_monotone(w, rate, rounds):
    masks = {"w": np.ones(w.shape, bool)}
    for r in range(1, rounds + 1):
        new = pruning.prune_layerwise({"w": w * masks["w"]}, masks, {"w": (1 - rate) ** r})
        assert new["w"].sum() == min(round(w.size * (1 - rate) ** r), masks["w"].sum())
        assert not (new["w"] & ~masks["w"]).any()
        masks = new


@settings(max_examples=40, deadline=None)
@given(
    a=hnp.arrays(np.float32, shapes, elements=st.floats(-3, 3, width=32)),
    b=hnp.arrays(np.float32, shapes, elements=st.floats(-3, 3, width=32)),
    density=st.floats(0.0, 1.0),
)
def test_property_global_exact_total_and_threshold(a, b, density):
    w = {"a": a, "b": b}
    m = {k: np.ones(v.shape, bool) for k, v in w.items()}
    out = pruning.prune_global(w, m, density)
    total = a.size + b.size
    assert sum(int(v.sum()) for v in out.values()) == round(total * density)
    kept = np.concatenate([np.abs(w[k][out[k]]) for k in w])
    pruned = np.concatenate([np.abs(w[k][~out[k]]) for k in w])
    if kept.size and pruned.size:
        assert kept.min() >= pruned.max()


def test_scores_of_any_sign_never_resurrect_pruned_weights():
    scores = {"a": np.array([-5.0, -1.0, np.nan, 3.0])}
    masks = {"a": np.array([True, True, True, False])}
    out = pruning.global_top(scores, masks, 0.75)
    assert out["a"].tolist() == [True, True, True, False]
    out = pruning.global_top(scores, masks, 0.5)
    assert out["a"].tolist() == [True, True, False, False]  # NaN ranks last among survivors
