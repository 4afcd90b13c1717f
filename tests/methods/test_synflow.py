"""SynFlow's scores: the closed-form path count on a two-layer network, the
weights restored, logits scored behind a softmax."""

import keras
import numpy as np

import keras_lottery as kl
from keras_lottery.methods import synflow
from conftest import two_layer_linear


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(3, 2)).astype("float32")


def test_synflow_is_data_free_and_matches_the_path_count():
    w1, w2 = _setup()
    model = two_layer_linear(w1, w2)
    before = kl.core.wrapping.read_weights(model)
    scores = synflow.scores(model)
    # R = 1^T |w1| |w2| 1 (each layer scaled by its largest column sum, the
    # input by 1e-3: every score by the same factor, the ranking is the same).
    a = np.abs(w1) / np.abs(w1).sum(axis=0).max()
    b = np.abs(w2) / np.abs(w2).sum(axis=0).max()
    expected_1 = a * b.sum(axis=1)[None, :]
    expected_2 = b * a.sum(axis=0)[:, None]
    np.testing.assert_allclose(scores["fc/kernel"], 1e-3 * expected_1, rtol=1e-5)
    np.testing.assert_allclose(scores["out/kernel"], 1e-3 * expected_2, rtol=1e-5)
    after = kl.core.wrapping.read_weights(model)
    for key in before:  # signs and scales restored
        np.testing.assert_array_equal(after[key], before[key])


def test_synflow_scores_the_logits_of_a_softmax_output():
    # sum(softmax) is 1 whatever the weights: on the softmax every score is 0.
    model = kl.wrap(keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="fc"),
        keras.layers.Dense(3, activation="softmax", name="out")]))
    scores = synflow.scores(model)
    assert all(score.all() for score in scores.values())
    assert model.get_layer("out").activation is keras.activations.softmax
