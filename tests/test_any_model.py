"""IMP on the models Keras users write: attention encoders, KerasHub
backbones, RNNs, deep nesting, subclassed and multi-input/output models,
mixed precision. Each run checks the exact kept count of every pruned
variable after 2 rounds, and that every report of the density agrees."""

import os

import keras
import numpy as np
import pytest

import keras_lottery as kl

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RATE = 0.3
TF = keras.backend.backend() == "tensorflow"


def _run(model, x, y, rounds=2, **imp_kwargs):
    model.compile(keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
    imp = kl.IterativeMagnitudePruning(rounds=rounds, epochs_per_round=1, rate=RATE,
                                       verbose=0, seed=0, **imp_kwargs)
    model.fit(x, y, batch_size=8, epochs=imp.total_epochs, callbacks=[imp], verbose=0)
    return imp


def _check_counts(model, imp, output_keys=()):
    """Every pruned variable keeps exactly round(n (1 - p)) after one prune
    (output layers at half rate), and every figure agrees."""
    masks = imp.mask_history[-1]
    assert set(masks) == {p.key for p in kl.prunable_weights(model)}
    for key, mask in masks.items():
        rate = RATE / 2 if key in output_keys else RATE
        assert int(mask.sum()) == round(mask.size * (1 - rate)), key
    report = kl.sparsity_report(model)
    assert report.density == pytest.approx(imp.results[-1]["density"])
    assert {w.key: w.kept for w in report.weights} == {k: int(m.sum()) for k, m in masks.items()}
    for p in kl.prunable_weights(model):
        assert np.all(keras.ops.convert_to_numpy(p.variable.value)[~masks[p.key]] == 0), p.key
    return masks


def _tokens(n=32, length=6, vocab=40, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, size=(n, length)).astype("int32")
    return x, (x.sum(axis=1) % classes).astype("int32")


def encoder_model(blocks=2, vocab=40, length=6, width=16):
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocab, width, name="embedding")(tokens)
    for i in range(blocks):
        attended = keras.layers.MultiHeadAttention(2, 8, name=f"mha{i}")(x, x)
        x = keras.layers.LayerNormalization(name=f"norm{i}a")(x + attended)
        hidden = keras.layers.Dense(32, activation="relu", name=f"ffn{i}_in")(x)
        x = keras.layers.LayerNormalization(name=f"norm{i}b")(
            x + keras.layers.Dense(width, name=f"ffn{i}_out")(hidden))
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="logits")(pooled))


def test_attention_encoder_every_kernel_at_any_depth():
    model = kl.wrap(encoder_model())
    keys = [p.key for p in kl.prunable_weights(model)]
    for i in (0, 1):
        for part in ("query", "key", "value", "attention_output"):
            assert f"mha{i}/{part}/kernel" in keys
    assert keys[0] == "embedding/embeddings" and keys[-1] == "logits/kernel"
    x, y = _tokens()
    imp = _run(model, x, y)
    _check_counts(model, imp, output_keys={"logits/kernel"})
    assert imp.results[1]["layer_density"]["mha1/query"] == pytest.approx(
        round(16 * 2 * 8 * 0.7) / (16 * 2 * 8))


def test_rnn_cells_bidirectional_and_time_distributed():
    inputs = keras.Input((5, 4))
    x = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True), name="bi")(inputs)
    x = keras.layers.GRU(5, return_sequences=True, name="gru")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(4, name="td_dense"), name="td")(x)
    x = keras.layers.SimpleRNN(3, name="rnn")(x)
    model = kl.wrap(keras.Model(inputs, x))
    keys = [p.key for p in kl.prunable_weights(model)]
    assert keys == [
        "bi/forward_lstm/lstm_cell/kernel", "bi/forward_lstm/lstm_cell/recurrent_kernel",
        "bi/backward_lstm/lstm_cell/kernel", "bi/backward_lstm/lstm_cell/recurrent_kernel",
        "gru/gru_cell/kernel", "gru/gru_cell/recurrent_kernel",
        "td/td_dense/kernel",
        "rnn/simple_rnn_cell/kernel", "rnn/simple_rnn_cell/recurrent_kernel",
    ]
    rng = np.random.default_rng(0)
    x_data = rng.normal(size=(32, 5, 4)).astype("float32")
    imp = _run(model, x_data, rng.integers(0, 3, 32))
    # The output layer is the last RNN: both its kernels at half rate.
    _check_counts(model, imp, output_keys={"rnn/simple_rnn_cell/kernel",
                                           "rnn/simple_rnn_cell/recurrent_kernel"})


def test_output_layer_of_a_three_deep_nested_model():
    def block(name, inner):
        x = keras.Input((8,))
        return keras.Model(x, inner(keras.layers.Dense(8, name=f"{name}_fc")(x)), name=name)

    innermost = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="h"),
                                  keras.layers.Dense(3, name="logits"),
                                  keras.layers.Softmax()], name="innermost")
    middle = block("middle", innermost)
    inputs = keras.Input((8,))
    model = kl.wrap(keras.Model(inputs, block("outer", middle)(
        keras.layers.Dense(8, name="stem")(inputs))))
    keys = [p.key for p in kl.prunable_weights(model)]
    assert keys == ["stem/kernel", "outer/outer_fc/kernel", "outer/middle/middle_fc/kernel",
                    "outer/middle/innermost/h/kernel", "outer/middle/innermost/logits/kernel"]
    rng = np.random.default_rng(0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rate=RATE, verbose=0)
    model.fit(rng.normal(size=(32, 8)), rng.integers(0, 3, 32), epochs=2, callbacks=[imp],
              verbose=0)
    _check_counts(model, imp, output_keys={"outer/middle/innermost/logits/kernel"})


class AutoNamed(keras.Model):
    """Layers with automatic names: a second instance names them differently."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.out = keras.layers.Dense(3)

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_model_ticket_into_a_fresh_instance_and_export(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 12)).astype("float32"), rng.integers(0, 3, 32)
    model = AutoNamed()
    model(x[:1])
    kl.wrap(model)
    imp = _run(model, x, y)
    keys = [p.key for p in kl.prunable_weights(model)]
    # The output layer is found from the order the layers run in.
    _check_counts(model, imp, output_keys={keys[-1]})
    path = kl.save_ticket(model, str(tmp_path / "ticket.npz"), imp=imp)
    fresh = AutoNamed()
    fresh(x[:1])
    assert [v.path for v in fresh.weights] != [v.path for v in model.weights]
    with pytest.warns(UserWarning, match="by position"):
        kl.load_ticket(path, fresh)
    for a, b in zip(kl.prunable_weights(model), kl.prunable_weights(fresh)):
        np.testing.assert_array_equal(a.state.mask_array(), b.state.mask_array())
        np.testing.assert_array_equal(a.state.snapshot_array("init"), b.state.snapshot_array("init"))
    if TF:
        result = kl.export_tflite(model, str(tmp_path / "sub.tflite"), sample_inputs=x[:8])
        assert result.max_abs_error <= 1e-4
        sm = kl.export_saved_model(model, str(tmp_path / "sub_sm"), sample_inputs=x[:8])
        assert sm.max_abs_error <= 1e-5


def test_two_inputs_two_outputs_export(tmp_path):
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(6, name="fa")(a),
                                   keras.layers.Dense(6, name="fb")(b)])
    model = keras.Model([a, b], [keras.layers.Dense(2, name="o1")(h),
                                 keras.layers.Dense(1, name="o2")(h)])
    kl.wrap(model)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 3)).astype("float32")]
    model.compile(keras.optimizers.Adam(0.01), ["mse", "mse"])
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rate=RATE, verbose=0)
    model.fit(xs, [rng.normal(size=(32, 2)), rng.normal(size=(32, 1))], epochs=2,
              callbacks=[imp], verbose=0)
    _check_counts(model, imp, output_keys={"o1/kernel", "o2/kernel"})
    if not TF:
        pytest.skip("export needs the TensorFlow backend")
    for sample in (xs, [v[:5] for v in xs]):
        tflite = kl.export_tflite(model, str(tmp_path / "m.tflite"), sample_inputs=sample,
                                  overwrite=True)
        assert tflite.max_abs_error <= 1e-4
    got = kl.tflite_predict(tflite.path, xs)
    expected = [keras.ops.convert_to_numpy(o) for o in model(xs)]
    assert len(got) == 2
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)
    sm = kl.export_saved_model(model, str(tmp_path / "sm"))  # random sample inputs
    assert sm.max_abs_error <= 1e-5


def test_mixed_precision_counts_steps_and_exports(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(16, activation="relu", name="fc")(inputs)
    outputs = keras.layers.Dense(3, name="out", dtype="float32")(hidden)
    model = kl.wrap(keras.Model(inputs, outputs))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 12)).astype("float32"), rng.integers(0, 3, 32)
    xv, yv = rng.normal(size=(16, 12)).astype("float32"), rng.integers(0, 3, 16)
    model.compile(keras.optimizers.Adam(0.01), LOSS)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=2, rate=RATE, verbose=0)
    model.fit(x, y, batch_size=8, validation_data=(xv, yv), epochs=4, callbacks=[imp], verbose=0)
    assert [row["steps"] for row in imp.results] == [8, 8]
    assert all(row["best_val_loss_step"] in (4, 8) for row in imp.results)
    keras.mixed_precision.set_global_policy("float32")
    _check_counts(model, imp, output_keys={"out/kernel"})
    if TF:
        result = kl.export_tflite(model, str(tmp_path / "mp.tflite"), sample_inputs=x[:8])
        assert result.max_abs_error <= result.tolerance


def test_global_distribution_refuses_a_named_rate():
    model = kl.wrap(encoder_model(blocks=1))
    model.compile("adam", LOSS)
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1,
                                       distribution="global",
                                       rate={"default": 0.2, "*/mha0/*": 0.6}, verbose=0)
    x, y = _tokens()
    with pytest.raises(ValueError, match="distribution='global'"):
        model.fit(x, y, epochs=2, callbacks=[imp], verbose=0)


def test_glob_rates_reach_attention_kernels():
    model = kl.wrap(encoder_model(blocks=1))
    x, y = _tokens()
    model.compile(keras.optimizers.Adam(0.01), LOSS)
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0,
                                       rate={"default": 0.2, "mha0": 0.5, "output": 0.1})
    model.fit(x, y, epochs=2, callbacks=[imp], verbose=0)
    density = {k: m.mean() for k, m in imp.mask_history[1].items()}
    assert density["mha0/query/kernel"] == pytest.approx(0.5)
    assert density["ffn0_in/kernel"] == pytest.approx(0.8, abs=0.01)
    assert density["logits/kernel"] == pytest.approx(0.9, abs=0.02)


@pytest.mark.skipif(not TF, reason="KerasHub exports run on TensorFlow")
def test_kerashub_backbone_under_a_head_then_strip_and_export(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8)
    inputs = {"token_ids": keras.Input((8,), dtype="int32", name="token_ids"),
              "padding_mask": keras.Input((8,), dtype="int32", name="padding_mask")}
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(inputs))
    model = kl.wrap(keras.Model(inputs, keras.layers.Dense(3, name="logits")(pooled)))
    keys = [p.key for p in kl.prunable_weights(model)]
    assert "gpt2_backbone/transformer_layer_1/self_attention/attention_output/kernel" in keys
    assert "gpt2_backbone/transformer_layer_0/feedforward_intermediate_dense/kernel" in keys
    tokens, y = _tokens(length=8)
    x = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
    imp = _run(model, x, y)
    _check_counts(model, imp, output_keys={"logits/kernel"})
    plain = kl.strip(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-6)
    sample = {k: v[:4] for k, v in x.items()}
    assert kl.export_saved_model(model, str(tmp_path / "sm"), sample_inputs=sample).max_abs_error <= 1e-5
    tflite = kl.export_tflite(model, str(tmp_path / "hub.tflite"), sample_inputs=sample)
    assert tflite.max_abs_error <= 1e-4 and os.path.getsize(tflite.path) == tflite.bytes
