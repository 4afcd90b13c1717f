"""LotteryWrapper: prunable weights per layer type at any depth, several
inputs, `.keras` round-trips, clear errors."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data


@pytest.mark.parametrize(
    "layer, input_shape, expected",
    [
        (keras.layers.Dense(4), (None, 3), ["kernel"]),
        (keras.layers.EinsumDense("ab,bc->ac", output_shape=4), (None, 3), ["kernel"]),
        (keras.layers.Conv1D(2, 3), (None, 8, 3), ["kernel"]),
        (keras.layers.Conv2D(2, 3), (None, 8, 8, 3), ["kernel"]),
        (keras.layers.Conv3D(2, 3), (None, 5, 5, 5, 3), ["kernel"]),
        (keras.layers.Conv1DTranspose(2, 3), (None, 8, 3), ["kernel"]),
        (keras.layers.Conv2DTranspose(2, 3), (None, 8, 8, 3), ["kernel"]),
        (keras.layers.Conv3DTranspose(2, 3), (None, 5, 5, 5, 3), ["kernel"]),
        (keras.layers.DepthwiseConv2D(3), (None, 8, 8, 3), ["kernel"]),
        (keras.layers.DepthwiseConv1D(3), (None, 8, 3), ["kernel"]),
        (keras.layers.SeparableConv2D(2, 3), (None, 8, 8, 3), ["depthwise_kernel", "pointwise_kernel"]),
        (keras.layers.SeparableConv1D(2, 3), (None, 8, 3), ["depthwise_kernel", "pointwise_kernel"]),
        (keras.layers.Embedding(10, 4), (None, 5), ["embeddings"]),
        (keras.layers.LSTM(4), (None, 5, 3), ["kernel", "recurrent_kernel"]),
        (keras.layers.GRU(4), (None, 5, 3), ["kernel", "recurrent_kernel"]),
        (keras.layers.SimpleRNN(4), (None, 5, 3), ["kernel", "recurrent_kernel"]),
        (keras.layers.Bidirectional(keras.layers.LSTM(4)), (None, 5, 3), ["kernel", "recurrent_kernel"] * 2),
        (keras.layers.TimeDistributed(keras.layers.Dense(2)), (None, 5, 3), ["kernel"]),
    ],
)
def test_prunable_weights_per_layer_type(layer, input_shape, expected):
    wrapper = kl.LotteryWrapper(layer)
    wrapper(keras.ops.zeros(tuple(1 if d is None else d for d in input_shape)))
    assert [p.name for p in wrapper.prunable_weights] == expected
    for p in wrapper.prunable_weights:
        np.testing.assert_array_equal(
            p.state.snapshot_array("init"), keras.ops.convert_to_numpy(p.variable.value)
        )
        assert isinstance(p.variable.constraint, kl.MaskConstraint)


def test_attention_layer_with_several_inputs():
    query = keras.Input((5, 8))
    value = keras.Input((7, 8))
    attention = kl.LotteryWrapper(keras.layers.MultiHeadAttention(2, 4, name="mha"))
    model = keras.Model([query, value], attention(query, value))
    assert [p.key.split("/", 1)[1] for p in kl.prunable_weights(model)] == [
        "query/kernel", "key/kernel", "value/kernel", "attention_output/kernel"]
    assert attention.name == "mha"


@pytest.mark.parametrize(
    "layer", [keras.layers.BatchNormalization(), keras.layers.LayerNormalization(),
              keras.layers.ReLU(), keras.layers.Dropout(0.1)]
)
def test_unprunable_layers_rejected(layer):
    with pytest.raises(ValueError, match="no prunable weights"):
        kl.LotteryWrapper(layer)


def test_wrapping_twice_rejected():
    wrapper = kl.LotteryWrapper(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="already"):
        kl.LotteryWrapper(wrapper)


def test_register_prunable_custom_layer():
    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=input_shape[-1:], name="scale")
            self.offset = self.add_weight(shape=input_shape[-1:], name="offset")

        def call(self, x):
            return x * self.scale + self.offset

    with pytest.raises(ValueError, match="register_prunable"):
        kl.LotteryWrapper(Scale())
    kl.register_prunable(Scale, ["scale"])
    wrapper = kl.LotteryWrapper(Scale())
    wrapper.build((None, 4))
    assert [p.name for p in wrapper.prunable_weights] == ["scale"]


def test_get_prunable_weights_protocol():
    class TwoKernels(keras.layers.Layer):
        def build(self, input_shape):
            self.a = self.add_weight(shape=(input_shape[-1], 2), name="a")
            self.b = self.add_weight(shape=(2,), name="b")

        def call(self, x):
            return x @ self.a + self.b

        def get_prunable_weights(self):
            return [self.a]

    wrapper = kl.LotteryWrapper(TwoKernels())
    wrapper.build((None, 3))
    assert [p.name for p in wrapper.prunable_weights] == ["a"]


def test_register_prunable_bad_input():
    with pytest.raises(TypeError, match="Layer subclass"):
        kl.register_prunable(int, ["kernel"])
    with pytest.raises(TypeError, match="weight_names"):
        kl.register_prunable(keras.layers.Dense, "kernel")


def test_unbuilt_wrapper_masks_error():
    with pytest.raises(ValueError, match="not built"):
        kl.LotteryWrapper(keras.layers.Dense(2)).get_masks()


def test_snapshots_and_masks_by_weight_name():
    wrapper = kl.LotteryWrapper(keras.layers.Dense(2, kernel_initializer="ones"))
    wrapper.build((None, 3))
    wrapper.set_masks({"kernel": np.array([[True, False]] * 3)})
    assert keras.ops.convert_to_numpy(wrapper.layer.kernel).tolist() == [[1.0, 0.0]] * 3
    wrapper.set_snapshot({"kernel": np.full((3, 2), 2.0)}, "rewind")
    wrapper.rewind("rewind")
    assert keras.ops.convert_to_numpy(wrapper.layer.kernel).tolist() == [[2.0, 0.0]] * 3
    with pytest.raises(ValueError, match="shape"):
        wrapper.set_masks({"kernel": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="no prunable weights named"):
        wrapper.set_masks({"bias": np.ones((2,), bool)})


def test_keras_file_round_trip_of_a_model_built_with_wrappers(tmp_path):
    inputs = keras.Input((12,))
    x = kl.LotteryWrapper(keras.layers.Dense(16, activation="relu", name="fc0"))(inputs)
    outputs = kl.LotteryWrapper(keras.layers.Dense(3, name="out"))(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    masks = {k: rng.random(m.shape) < 0.5 for k, m in kl.get_masks(model).items()}
    kl.set_masks(model, masks)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kl.enable(model)  # on JAX: the train step feeds the masks (wrap() does it too)
    x_data, y = classification_data()
    model.fit(x_data, y, epochs=1, verbose=0)
    model.get_layer("fc0").take_snapshot("rewind")
    path = str(tmp_path / "ticket.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model.variables, loaded.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a.value), keras.ops.convert_to_numpy(b.value)
        )
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a.value), keras.ops.convert_to_numpy(b.value)
        )
    assert {k: v.tolist() for k, v in kl.get_masks(loaded).items()} == {
        k: v.tolist() for k, v in masks.items()}
    kl.enable(loaded)  # on JAX: the train step feeds the masks
    loaded.fit(x_data, y, epochs=1, verbose=0)
    for p in kl.prunable_weights(loaded):
        assert np.all(keras.ops.convert_to_numpy(p.variable.value)[~masks[p.key]] == 0)


class _WrappedInInit(keras.Model):
    """README's pattern: LotteryWrapper layers made in a subclassed model's
    `__init__`, the model never called before `fit`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = kl.LotteryWrapper(keras.layers.Dense(16, activation="relu"))
        self.blocks = [kl.LotteryWrapper(keras.layers.Dense(8, activation="relu"))]
        self.head = kl.LotteryWrapper(keras.layers.Dense(3))

    def call(self, x):
        return self.head(self.blocks[0](self.hidden(x)))


def test_subclassed_model_with_wrappers_fits_without_a_first_call_and_strips_plain():
    x, y = classification_data()
    net = _WrappedInInit(name="net")
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0)
    if keras.backend.backend() == "tensorflow":
        # TF's fit builds such a model inside its first step, after callbacks
        # start: the error says what to do, and doing it works.
        with pytest.raises(ValueError, match=r"call it once on a batch \(`net\(x\[:1\]\)`\)"):
            net.fit(x, y, epochs=imp.total_epochs, callbacks=[imp], verbose=0)
        net(x[:1])
        imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0)
    net.fit(x, y, epochs=imp.total_epochs, callbacks=[imp], verbose=0)
    density = kl.sparsity_report(net).density
    assert density < 0.9 and imp.results[-1]["density"] == pytest.approx(density)
    plain = kl.strip(net)
    types = [type(layer).__name__ for layer in plain._flatten_layers(include_self=False)]
    assert "LotteryWrapper" not in types and types.count("Dense") == 3
    # predict as the copy's first call, equal to the wrapped model's outputs.
    np.testing.assert_allclose(plain.predict(x[:8], verbose=0), net.predict(x[:8], verbose=0),
                               atol=1e-5)
    assert kl.sparsity_report(plain).density == pytest.approx(density)
