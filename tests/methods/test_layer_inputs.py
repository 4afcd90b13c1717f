"""Kernel layouts of Dense / EinsumDense and the Gram matrix of a layer's
inputs, read by a temporary hook."""

import keras
import numpy as np

from keras_lottery.methods import layer_inputs


def test_layouts_put_the_contracted_axes_first_and_round_trip():
    layer = keras.layers.EinsumDense("btnh,nhd->btd", (5, 8))
    layout = layer_inputs.kernel_layout(layer, (2, 4, 8))
    kernel = np.arange(64.0).reshape(2, 4, 8)
    matrix = layout.to_matrix(kernel)
    assert matrix.shape == (8, 8)
    np.testing.assert_array_equal(layout.from_matrix(matrix), kernel)
    # The input contracts its first axis, not its last: no [tokens, features] view.
    assert layer_inputs.kernel_layout(keras.layers.EinsumDense("ba,bc->ac", 4), (3, 4)) is None


def test_input_gram_is_xtx_of_the_layers_inputs_and_the_hook_is_removed():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="h")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    x = np.random.default_rng(0).normal(size=(10, 3)).astype("float32")
    out = model.get_layer("out")
    layout = layer_inputs.kernel_layout(out, (4, 2))
    gram = layer_inputs.input_gram(model, out, layout, [x[:5], x[5:]])
    h = keras.ops.convert_to_numpy(model.get_layer("h")(x)).astype(np.float64)
    np.testing.assert_allclose(gram, h.T @ h, rtol=1e-5)
    assert "call" not in vars(out)
