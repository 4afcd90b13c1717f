"""Scorers: the registry, a scorer plugged in by name into every entry
point, the data each needs, and Wanda / SparseGPT against their formulas."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.methods import scorers
from keras_lottery.sparsity import decision
from conftest import classification_data
from conftest import mlp


def test_every_method_is_registered_and_data_is_asked_for_by_name():
    assert set(scorers.names()) >= {"magnitude", "random", "snip", "grasp", "synflow",
                                    "wanda", "sparsegpt"}
    for name, needs in [("snip", "data"), ("grasp", "data"), ("wanda", "calibration_data"),
                        ("sparsegpt", "calibration_data")]:
        with pytest.raises(ValueError, match=f"scorer='{name}' needs {needs}"):
            scorers.get(name)
    with pytest.raises(TypeError, match=r"write Snip\(\)"):
        scorers.get(scorers.Snip)
    with pytest.raises(ValueError, match="A scorer named 'magnitude' is registered"):
        scorers.register_scorer("magnitude")(type("Other", (scorers.Scorer,), {}))


def test_a_new_scorer_is_one_class_and_works_in_every_entry_point():
    @scorers.register_scorer("smallest_first")
    class SmallestFirst(scorers.Scorer):
        def scores(self, context):
            return {k: -np.abs(w) for k, w in context.weights.items()}

    try:
        model = kl.wrap(mlp())
        before = kl.core.wrapping.read_weights(model)
        masks = kl.prune_at_init(model, "smallest_first", 0.25)
        for key, mask in masks.items():  # the kept weights are the smallest
            kept, pruned = np.abs(before[key])[mask], np.abs(before[key])[~mask]
            assert kept.max() <= pruned.min(), key
        model = kl.wrap(mlp())
        x, y = classification_data(n=64)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        trained = {}
        imp = kl.IterativeMagnitudePruning(
            rounds=2, epochs_per_round=1, scorer="smallest_first", verbose=0,
            on_round_end=lambda r, m, row: r or trained.update(kl.core.wrapping.read_weights(m)))
        model.fit(x, y, epochs=imp.total_epochs, verbose=0, callbacks=[imp])
        mask = imp.mask_history[1]["fc0/kernel"]
        weights = np.abs(trained["fc0/kernel"])
        assert weights[mask].max() <= weights[~mask].min()
    finally:
        scorers.unregister_scorer("smallest_first")


def test_imp_with_a_scorer_ranks_each_rounds_trained_weights():
    """Iterative SNIP: the masks of round 1 are SNIP's on round 0's trained
    weights (before the rewind), at the schedule's targets."""
    x, y = classification_data(n=64)
    data = (x[:32], y[:32])
    model = kl.wrap(mlp())
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    expected = {}

    def score(round_index, model, row):
        if round_index == 0:
            context = scorers.ScoringContext(model)
            expected.update(decision.select(scorers.Snip(data).scores(context), context.masks,
                                            {"fc0/kernel": 0.5, "fc1/kernel": 0.5,
                                             "out/kernel": 0.25}))

    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=2, rate=0.5, verbose=0,
                                       scorer=scorers.Snip(data), on_round_end=score)
    model.fit(x, y, epochs=imp.total_epochs, verbose=0, callbacks=[imp])
    for key, mask in imp.mask_history[1].items():
        np.testing.assert_array_equal(mask, expected[key], err_msg=key)


@pytest.mark.parametrize("scorer", ["synflow", "random"])
def test_imp_with_data_free_scorers_reaches_the_schedule(scorer):
    x, y = classification_data(n=64)
    model = kl.wrap(mlp())
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, rate=0.5, verbose=0,
                                       scorer=scorer)
    model.fit(x, y, epochs=imp.total_epochs, verbose=0, callbacks=[imp])
    assert imp.results[-1]["layer_density"]["fc0"] == pytest.approx(0.25, abs=0.01)
    history = imp.mask_history
    for key in history[1]:  # pruned weights never come back
        assert not (history[2][key] & ~history[1][key]).any()


def test_wanda_and_sparsegpt_scores_follow_their_formulas():
    model = kl.wrap(keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="fc")]))
    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    x[:, 2] *= 10.0
    kernel = keras.ops.convert_to_numpy(model.get_layer("fc").kernel).astype(np.float64)
    gram = x.astype(np.float64).T @ x.astype(np.float64)
    context = scorers.ScoringContext(model)
    wanda = scorers.Wanda([x]).scores(context)["fc/kernel"]
    np.testing.assert_allclose(wanda, np.abs(kernel) * np.linalg.norm(x, axis=0)[:, None],
                               rtol=1e-4)
    sparsegpt = scorers.SparseGPT([x], damping=0.0).scores(context)["fc/kernel"]
    upper = np.linalg.cholesky(np.linalg.inv(gram)).T
    np.testing.assert_allclose(sparsegpt, kernel ** 2 / np.diag(upper)[:, None] ** 2, rtol=1e-4)


def test_a_calibration_scorer_names_a_kernel_it_cannot_read():
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = kl.wrap(keras.Model(inputs, keras.layers.Dense(2, name="out")(h)))
    x = np.ones((4, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=r"'conv/kernel' \(Conv2D\).*exclude="):
        scorers.Wanda([x]).scores(scorers.ScoringContext(model))


def test_random_draws_from_the_contexts_seed_unless_given_one():
    model = kl.wrap(mlp())
    a = scorers.Random().scores(scorers.ScoringContext(model, seed=1))
    b = scorers.Random().scores(scorers.ScoringContext(model, seed=2))
    c = scorers.Random(seed=5).scores(scorers.ScoringContext(model, seed=1))
    d = scorers.Random(seed=5).scores(scorers.ScoringContext(model, seed=2))
    assert not np.array_equal(a["fc0/kernel"], b["fc0/kernel"])
    np.testing.assert_array_equal(c["fc0/kernel"], d["fc0/kernel"])
