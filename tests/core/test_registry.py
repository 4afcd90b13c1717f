"""Which variables of a layer are prunable."""

import keras
import pytest

from keras_lottery.core import registry


def _built(layer, shape):
    layer.build(shape)
    return layer


def test_builtin_rules():
    assert [n for n, _ in registry.prunable_variables(_built(keras.layers.Dense(2), (None, 3)))] == ["kernel"]
    cell = _built(keras.layers.GRUCell(2), (None, 3))
    assert [n for n, _ in registry.prunable_variables(cell)] == ["kernel", "recurrent_kernel"]
    assert registry.prunable_variables(_built(keras.layers.LayerNormalization(), (None, 3))) == []
    assert registry.prunable_variables(keras.layers.Dense(2)) == []  # not built


def test_kernel_like_variables_of_unregistered_layers():
    class Custom(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")
            self.gate_kernel = self.add_weight(shape=(input_shape[-1], 2), name="gate_kernel")
            self.scale = self.add_weight(shape=(2,), name="scale")
            self.frozen_kernel = self.add_weight(shape=(2, 2), name="frozen_kernel",
                                                 trainable=False)

        def call(self, x):
            return x @ self.kernel

    names = [n for n, _ in registry.prunable_variables(_built(Custom(), (None, 3)))]
    assert names == ["kernel", "gate_kernel"]


def test_register_and_protocol_take_precedence():
    class Two(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")
            self.other = self.add_weight(shape=(input_shape[-1], 2), name="other")

    registry.register_prunable(Two, ["other"])
    assert [n for n, _ in registry.prunable_variables(_built(Two(), (None, 3)))] == ["other"]
    registry.register_prunable(Two, [])
    assert registry.prunable_variables(_built(Two(), (None, 3))) == []


def test_registered_name_missing_is_an_error():
    class Named(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(2, 2), name="w")

    registry.register_prunable(Named, ["kernel"])
    with pytest.raises(ValueError, match="no variable 'kernel'"):
        registry.prunable_variables(_built(Named(), (None, 3)))
