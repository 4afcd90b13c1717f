"""Rewind points: take, rewind, learning-rate rewinding, the reinit control."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.backend import optimizer_state
from keras_lottery.core import rewinding
from conftest import classification_data
from conftest import mlp

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _trained(optimizer):
    model = kl.wrap(mlp())
    model.compile(optimizer, LOSS)
    x, y = classification_data()
    return model, x, y


def _np(v):
    return keras.ops.convert_to_numpy(v.value)


def test_rewind_to_a_point_restores_weights_others_optimizer_and_learning_rate():
    model, x, y = _trained(keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(x, y, epochs=1, verbose=0)
    point = rewinding.take(model, rewinding.REWIND, step=optimizer_state.iterations(model.optimizer))
    saved = [_np(v) for v in model.weights if v.trainable]
    model.optimizer.learning_rate = 0.01  # e.g. ReduceLROnPlateau
    model.fit(x, y, epochs=1, verbose=0)
    kl.set_masks(model, {"fc0/kernel": np.arange(192).reshape(12, 16) % 2 == 0})
    rewinding.rewind(model, point)
    mask = kl.get_masks(model)["fc0/kernel"]
    assert optimizer_state.iterations(model.optimizer) == point.step == 3  # 96 / 32
    assert optimizer_state.learning_rate(model.optimizer) == pytest.approx(0.1)
    np.testing.assert_array_equal(_np(model.get_layer("fc0").kernel), saved[0] * mask)
    np.testing.assert_array_equal(_np(model.get_layer("fc0").bias), saved[1])


def test_rewind_keeping_weights_resets_only_the_optimizer():
    model, x, y = _trained(keras.optimizers.Adam(0.01))
    init = rewinding.take(model, rewinding.INIT, step=0, fresh_optimizer=True)
    model.fit(x, y, epochs=1, verbose=0)
    trained = _np(model.get_layer("fc1").kernel)
    rewinding.rewind(model, init, keep_weights=True)
    np.testing.assert_array_equal(_np(model.get_layer("fc1").kernel), trained)
    assert optimizer_state.iterations(model.optimizer) == 0
    from keras_lottery.backend import keras_internals

    assert all(not _np(v).any() for v in keras_internals.slot_variables(model.optimizer))


def test_points_round_trip_through_arrays():
    model, x, y = _trained(keras.optimizers.Adam(0.01))
    model.fit(x, y, epochs=1, verbose=0)
    point = rewinding.take(model, rewinding.REWIND, step=6)
    arrays, metadata = point.to_arrays("p")
    back = rewinding.RewindPoint.from_arrays("p", arrays, metadata)
    assert back.step == 6 and back.slot == "rewind"
    for a, b in zip(point.other_weights, back.other_weights):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(point.optimizer["slots"], back.optimizer["slots"]):
        np.testing.assert_array_equal(a, b)


def test_reinitialize_draws_from_each_layers_initializer():
    model = kl.wrap(mlp())
    kl.set_masks(model, {"fc0/kernel": np.arange(192).reshape(12, 16) % 3 == 0})
    before = _np(model.get_layer("fc0").kernel)
    rewinding.reinitialize(model, seed=1)
    after = _np(model.get_layer("fc0").kernel)
    mask = kl.get_masks(model)["fc0/kernel"]
    assert np.all(after[~mask] == 0) and not np.allclose(after[mask], before[mask])
    assert np.abs(after).max() <= np.sqrt(6 / (12 + 16)) + 1e-6  # Glorot uniform bound
    rewinding.reinitialize(model, seed=1)
    np.testing.assert_array_equal(_np(model.get_layer("fc0").kernel), after)


def test_reinit_needs_an_initializer():
    class Custom(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")

        def call(self, x):
            return x @ self.kernel

    x = keras.Input((3,))
    model = kl.wrap(keras.Model(x, Custom(name="custom")(x)))
    with pytest.raises(ValueError, match="custom/kernel.*kernel_initializer"):
        rewinding.check_reinitializable(model)
