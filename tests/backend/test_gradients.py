"""Gradients on each backend, against the hand-computed gradient of a linear model."""

import keras
import numpy as np
import pytest

from keras_lottery.backend.gradients import compiled_weight_gradients
from keras_lottery.backend.gradients import weight_gradients


def _linear(w):
    model = keras.Sequential([keras.Input((w.shape[0],)), keras.layers.Dense(w.shape[1], name="fc")])
    model.get_layer("fc").kernel.assign(w)
    model.get_layer("fc").bias.assign(np.zeros(w.shape[1], "float32"))
    return model


def test_the_gradient_of_a_squared_error_is_the_textbook_one():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2)).astype("float32")
    x = rng.normal(size=(5, 3)).astype("float32")
    y = rng.normal(size=(5, 2)).astype("float32")
    model = _linear(w)
    kernel = model.get_layer("fc").kernel
    (grad,) = weight_gradients(model, [kernel], lambda out: keras.ops.mean(keras.ops.square(keras.ops.subtract(out, y))), x)
    expected = 2.0 * x.T @ (x @ w - y) / y.size
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_weights_the_scalar_ignores_get_zero_and_frozen_ones_are_refused():
    model = _linear(np.ones((2, 2), "float32"))
    layer = model.get_layer("fc")
    x = np.ones((1, 2), "float32")
    grads = weight_gradients(model, [layer.kernel, layer.bias], lambda out: keras.ops.sum(out[:, 0]), x)
    np.testing.assert_array_equal(grads[0], [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(grads[1], [1.0, 0.0])
    layer.trainable = False
    with pytest.raises(ValueError, match="not trainable"):
        weight_gradients(model, [layer.kernel], keras.ops.sum, x)


def test_the_compiled_gradient_equals_the_eager_one_at_the_current_weights():
    rng = np.random.default_rng(1)
    model = _linear(rng.normal(size=(3, 2)).astype("float32"))
    layer = model.get_layer("fc")

    def loss(y, out):
        return keras.ops.mean(keras.ops.square(keras.ops.subtract(out, y)))

    grad = compiled_weight_gradients(model, [layer.kernel, layer.bias], loss)
    for _ in range(2):  # a second batch, after the weights changed: no stale trace
        x = rng.normal(size=(5, 3)).astype("float32")
        y = rng.normal(size=(5, 2)).astype("float32")
        eager = weight_gradients(model, [layer.kernel, layer.bias], lambda out: loss(y, out), x)
        for got, expected in zip(grad(x, y), eager):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        layer.kernel.assign(rng.normal(size=(3, 2)).astype("float32"))
    layer.trainable = False
    with pytest.raises(ValueError, match="not trainable"):
        compiled_weight_gradients(model, [layer.kernel], loss)


def test_hessian_vector_product_of_a_squared_error_is_two_x_transpose_x_v():
    from keras_lottery.backend.gradients import hessian_vector_product

    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 1)).astype("float32")
    x = rng.normal(size=(4, 3)).astype("float32")
    v = rng.normal(size=(3, 1)).astype("float32")
    model = _linear(w)
    kernel = model.get_layer("fc").kernel
    (hv,) = hessian_vector_product(model, [kernel], lambda out: keras.ops.sum(out ** 2), x, [v])
    np.testing.assert_allclose(hv, 2.0 * x.T @ x @ v, rtol=1e-5, atol=1e-5)
