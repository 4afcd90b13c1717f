"""Pruning at initialization: each scorer against a hand-computed score,
budgets, SynFlow data-free, ablations, and masks that hold in training."""

import warnings

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.methods import init_pruning
from keras_lottery.methods import scorers
from keras_lottery.sparsity import masks as masks_lib
from conftest import two_layer_linear


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(4, 3)).astype("float32")
    w2 = rng.normal(size=(3, 2)).astype("float32")
    x = rng.normal(size=(6, 4)).astype("float32")
    y = rng.normal(size=(6, 2)).astype("float32")
    return w1, w2, x, y


def _mse(y_true, y_pred):
    return keras.ops.mean((y_pred - y_true) ** 2)


def _grads(w1, w2, x, y):
    """Hand-computed gradients of mean((x w1 w2 - y)^2)."""
    residual = 2.0 * (x @ w1 @ w2 - y) / y.size
    return x.T @ residual @ w2.T, (x @ w1).T @ residual


def test_snip_is_abs_gradient_times_weight():
    w1, w2, x, y = _setup()
    model = two_layer_linear(w1, w2)
    scores = scorers.Snip((x, y), loss=_mse).scores(scorers.ScoringContext(model))
    g1, g2 = _grads(w1, w2, x, y)
    np.testing.assert_allclose(scores["fc/kernel"], np.abs(g1 * w1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(scores["out/kernel"], np.abs(g2 * w2), rtol=1e-4, atol=1e-6)


def test_grasp_is_weight_times_hessian_gradient_product():
    w1, w2, x, y = _setup()
    model = two_layer_linear(w1, w2)
    scores = scorers.Grasp((x, y), loss=_mse).scores(scorers.ScoringContext(model))
    # Hg by central differences of the hand-computed gradient, in float64.
    g1, g2 = (g.astype(np.float64) for g in _grads(w1, w2, x, y))
    a, b = w1.astype(np.float64), w2.astype(np.float64)
    eps = 1e-5
    p1, p2 = _grads(a + eps * g1, b + eps * g2, x, y)
    m1, m2 = _grads(a - eps * g1, b - eps * g2, x, y)
    hg1, hg2 = (p1 - m1) / (2 * eps), (p2 - m2) / (2 * eps)
    np.testing.assert_allclose(scores["fc/kernel"], a * hg1, rtol=2e-2, atol=1e-4)
    np.testing.assert_allclose(scores["out/kernel"], b * hg2, rtol=2e-2, atol=1e-4)


def test_synflow_takes_no_data():
    model = two_layer_linear(*_setup()[:2])

    class Untouchable:
        def __iter__(self):
            raise AssertionError("SynFlow read its data")

    masks = init_pruning.prune_at_init(model, "synflow", 0.5, data=Untouchable(), iterations=5)
    assert masks_lib.density(masks) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("method", ["random", "magnitude", "snip", "grasp", "synflow"])
@pytest.mark.parametrize("distribution", ["uniform", "erk", "global"])
def test_every_method_reaches_the_density_and_its_masks_hold_in_training(method, distribution):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 12)).astype("float32")
    y = rng.integers(0, 3, 32)
    model = kl.wrap(keras.Sequential([
        keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(3, name="out")]))
    masks = init_pruning.prune_at_init(model, method, 0.2, data=(x, y),
                                       distribution=distribution, iterations=10)
    assert masks_lib.density(masks) == pytest.approx(0.2, abs=0.03)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    weights = kl.core.wrapping.read_weights(model)
    for key, mask in masks.items():
        assert not weights[key][~mask].any(), key


def test_ablations_keep_counts_per_layer():
    w1, w2, x, y = _setup()
    plain = init_pruning.prune_at_init(two_layer_linear(w1, w2), "snip", 0.5, data=(x, y), loss=_mse)
    shuffled = init_pruning.prune_at_init(two_layer_linear(w1, w2), "snip", 0.5, data=(x, y),
                                          loss=_mse, ablation="shuffle", seed=3)
    inverted = init_pruning.prune_at_init(two_layer_linear(w1, w2), "snip", 0.5, data=(x, y),
                                          loss=_mse, ablation="invert")
    for key in plain:
        assert shuffled[key].sum() == plain[key].sum() == inverted[key].sum()
        assert not (inverted[key] & plain[key]).any()  # the other half exactly
    assert any((shuffled[k] != plain[k]).any() for k in plain)
    model = two_layer_linear(w1, w2)
    reinit = init_pruning.prune_at_init(model, "magnitude", 0.5, ablation="reinit", seed=4)
    weights = kl.core.wrapping.read_weights(model)
    kept = np.abs(w1)[reinit["fc/kernel"]]
    assert not np.allclose(np.abs(weights["fc/kernel"])[reinit["fc/kernel"]], kept)


def test_bad_arguments_are_refused():
    model = two_layer_linear(*_setup()[:2])
    with pytest.raises(ValueError, match="scorer must be one of"):
        init_pruning.prune_at_init(model, "lottery", 0.5)
    with pytest.raises(ValueError, match="needs data"):
        init_pruning.prune_at_init(model, "snip", 0.5)
    with pytest.raises(ValueError, match="density"):
        init_pruning.prune_at_init(model, "random", 1.5)
    with pytest.raises(ValueError, match="distribution must be"):
        init_pruning.prune_at_init(model, "random", 0.5, distribution="layerwise")
    with pytest.raises(TypeError, match="renamed: use distribution="):
        init_pruning.prune_at_init(model, "random", 0.5, scope="global")
    with pytest.raises(TypeError, match="renamed: use scorer="):
        init_pruning.prune_at_init(model, method="random", scorer="random", density=0.5)
    with pytest.raises(ValueError, match="distribution='uniform'"):
        init_pruning.prune_at_init(model, "random", 0.5, distribution="global",
                                   structure="neuron")
    with pytest.raises(ValueError, match="exclude names 'nope'"):
        init_pruning.prune_at_init(model, "random", 0.5, exclude=["nope"])
    with pytest.raises(ValueError, match="invert"):
        init_pruning.prune_at_init(model, "synflow", 0.5, ablation="invert")
    with pytest.raises(ValueError, match="wrap"):
        init_pruning.prune_at_init(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
                                   "random", 0.5)


def test_synflow_does_not_collapse_a_deep_net_with_bounded_activations():
    # ReLU6 saturates on SynFlow's all-positive forward pass unless the
    # activations are kept small; saturated units pass no gradient, and
    # their layers would score 0 and be pruned away entirely.
    layers = [keras.Input((256,))]
    layers += [keras.layers.Dense(256, activation="relu6", name=f"fc{i}") for i in range(6)]
    model = kl.wrap(keras.Sequential(layers + [keras.layers.Dense(10, name="out")]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        masks = init_pruning.prune_at_init(model, "synflow", 0.01, distribution="global",
                                           iterations=20)
    assert all(mask.any() for mask in masks.values())


def test_layer_collapse_is_reported():
    model = two_layer_linear(*_setup()[:2])
    model.get_layer("fc").kernel.assign(np.full((4, 3), 1e-6, "float32"))
    with pytest.warns(UserWarning, match=r"every weight of \['fc/kernel'\].*layer collapse"):
        init_pruning.prune_at_init(model, "magnitude", 0.3, distribution="global")


def test_output_units_left_without_weights_are_reported():
    w1, w2, x, y = _setup()
    w2 = w2.copy()
    w2[:, 1] = 1e-6  # magnitude pruning empties the second output unit
    model = two_layer_linear(w1, w2)
    with pytest.warns(UserWarning, match=r"1 of 2 output units of 'out/kernel'.*\[1\]"):
        init_pruning.prune_at_init(model, "magnitude", 0.5)


def test_temperature_divides_the_outputs_before_the_loss():
    w1, w2, x, y = _setup()
    model = two_layer_linear(w1, w2)
    scorer = scorers.Snip((x, y), loss=_mse, temperature=4.0)
    scores = scorer.scores(scorers.ScoringContext(model))
    # The output divided by 4 is the network with w2 / 4.
    residual = 2.0 * (x @ w1 @ (w2 / 4) - y) / y.size
    g1 = x.T @ residual @ (w2 / 4).T
    np.testing.assert_allclose(scores["fc/kernel"], np.abs(g1 * w1), rtol=1e-4, atol=1e-6)
