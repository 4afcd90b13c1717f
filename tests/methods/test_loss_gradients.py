"""Loss gradients of the pruned weights: the loss resolved as Keras would,
averaged over batches, against hand-computed gradients."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.methods import loss_gradients


def _linear(w):
    model = keras.Sequential([keras.Input((w.shape[0],)),
                              keras.layers.Dense(w.shape[1], use_bias=False, name="fc")])
    model.get_layer("fc").kernel.assign(w)
    return kl.wrap(model)


def test_mean_over_batches_equals_the_hand_computed_gradient():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2)).astype("float32")
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model = _linear(w)
    model.compile("sgd", "mse")  # "mse" is per example: loss_of makes it a scalar
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]
    grads = loss_gradients.loss_gradients(model, halves)["fc/kernel"]
    expected = np.mean([2.0 * xb.T @ (xb @ w - yb) / yb.size for xb, yb in halves], axis=0)
    np.testing.assert_allclose(grads, expected, rtol=1e-4, atol=1e-6)
    one = loss_gradients.loss_gradients(model, (x, y))["fc/kernel"]
    np.testing.assert_allclose(one, 2.0 * x.T @ (x @ w - y) / y.size, rtol=1e-4, atol=1e-6)


def test_the_loss_of_an_uncompiled_model_is_cross_entropy_from_logits():
    model = _linear(np.eye(2, dtype="float32"))
    loss = loss_gradients.loss_of(model, None)
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
    assert loss.get_config()["from_logits"]


def test_per_output_losses_are_summed_with_their_weights():
    inputs = keras.Input((2,))
    a = keras.layers.Dense(1, name="a")(inputs)
    b = keras.layers.Dense(1, name="b")(inputs)
    model = keras.Model(inputs, {"a": a, "b": b})
    model.compile("sgd", loss={"a": "mse", "b": "mae"}, loss_weights={"a": 2.0, "b": 0.5})
    loss = loss_gradients.loss_of(model, None)
    y_true = {"a": np.array([[1.0]]), "b": np.array([[1.0]])}
    y_pred = {"a": np.array([[3.0]]), "b": np.array([[-1.0]])}
    assert float(loss(y_true, y_pred)) == pytest.approx(2.0 * 4.0 + 0.5 * 2.0)
