"""IMP with whole units (neurons, filters) or an N:M pattern: masks hold
through training, rewinding, controls and export; structured tickets compact."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.sparsity import structure
from conftest import classification_data
from conftest import mlp


class _RoundStarts(keras.callbacks.Callback):
    """Records the kernels at every epoch start (listed after IMP: rewound)."""

    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_epoch_begin(self, epoch, logs=None):
        self.kernels.append({w.path: keras.ops.convert_to_numpy(w) for w in self.model.weights
                             if w.path.endswith("kernel")})


def _run(model, epochs_per_round=2, rounds=4, callbacks=(), **kwargs):
    x, y = classification_data(n=128)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = kl.IterativeMagnitudePruning(rounds=rounds, epochs_per_round=epochs_per_round,
                                       rate=0.3, verbose=0, seed=3, **kwargs)
    model.fit(x, y, epochs=imp.total_epochs, batch_size=32, verbose=0,
              callbacks=[imp, *callbacks])
    return imp


def test_neuron_masks_are_whole_units_and_rewind_to_theta0():
    keras.utils.set_random_seed(0)
    model = kl.wrap(mlp(hidden=(32, 16)))
    theta0 = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    starts = _RoundStarts()
    imp = _run(model, callbacks=[starts], structure="neuron")
    history = imp.mask_history
    for round_index, masks in enumerate(history):
        for key in ("fc0/kernel", "fc1/kernel"):
            columns = masks[key].all(axis=0) | ~masks[key].any(axis=0)
            assert columns.all(), (round_index, key)  # every unit all in or all out
        out = masks["out/kernel"]
        assert not (out.all(axis=0) | ~out.any(axis=0)).all() or round_index == 0  # unstructured
    alive = [int(m["fc0/kernel"].any(axis=0).sum()) for m in history]
    assert alive == [32, 22, 16, 11]  # round(32 * 0.7 ** r): units, not weights
    for round_index in range(1, 4):
        kernels = starts.kernels[2 * round_index]
        for key, mask in history[round_index].items():
            path = next(p for p in kernels if p.startswith(key.split("/")[0] + "/"))
            np.testing.assert_array_equal(kernels[path], np.where(mask, theta0[path], 0.0))
    final = kl.get_masks(model)
    for layer in ("fc0", "fc1"):
        kernel = keras.ops.convert_to_numpy(model.get_layer(layer).kernel)
        assert np.all(kernel[~final[f"{layer}/kernel"]] == 0)


def test_a_neuron_ticket_compacts_to_a_smaller_model_with_the_same_outputs():
    keras.utils.set_random_seed(1)
    model = kl.wrap(mlp(hidden=(32, 16)))
    _run(model, structure=kl.Units(norm="l2"))
    result = kl.compact(model)
    masks = kl.get_masks(model)
    # A unit goes when its fan-in is pruned, and also when its fan-out is (the
    # output layer is pruned weight by weight).
    needed_fc1 = masks["fc1/kernel"].any(0) & masks["out/kernel"].any(1)
    assert result.model.get_layer("fc1").units == int(needed_fc1.sum())
    assert result.model.get_layer("fc0").units <= int(masks["fc0/kernel"].any(0).sum())
    assert result.params_after < 0.5 * result.params_before
    x, _ = classification_data(n=64)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(result.model(x)), keras.ops.convert_to_numpy(model(x)),
        atol=1e-4,
    )


def test_channel_structure_on_conv_bn_conv_then_compaction():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", name="c1")(inputs)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = kl.wrap(keras.Model(inputs, keras.layers.Dense(3, name="out")(h)))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 64)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, rate=0.5, verbose=0,
                                       structure="channel")
    model.fit(x, y, epochs=imp.total_epochs, verbose=0, callbacks=[imp])
    masks = kl.get_masks(model)
    assert [int(masks[k].any(axis=(0, 1, 2)).sum()) for k in ("c1/kernel", "c2/kernel")] == [4, 3]
    result = kl.compact(model, sample_inputs=x[:16])
    assert result.model.get_layer("c1").filters == 4
    assert result.model.get_layer("bn1").gamma.shape == (4,)
    needed_c2 = masks["c2/kernel"].any(axis=(0, 1, 2)) & masks["out/kernel"].any(1)
    assert result.model.get_layer("c2").kernel.shape == (3, 3, 4, int(needed_c2.sum()))


def test_two_four_pattern_holds_through_rounds_controls_and_export(tmp_path):
    keras.utils.set_random_seed(3)
    ticket_model = kl.wrap(mlp(hidden=(32, 16)))
    imp = _run(ticket_model, structure="2:4")
    nm = structure.NM(2, 4, axis=0)
    per_group = [max(int(m["fc0/kernel"].reshape(3, 4, 32).sum(1).max()), 0)
                 for m in imp.mask_history]
    assert per_group == [4, 3, 2, 2]  # 4:4 -> 3:4 -> 2:4 (rate 0.3: 0.7, 0.49 -> 3, 2)
    assert all(nm.holds(m) for m in imp.mask_history[-1].values())
    assert set(kl.check_pattern(ticket_model, "2:4").values()) == {0}
    for control in ("random_prune", "reinit"):
        keras.utils.set_random_seed(3)
        control_model = kl.wrap(mlp(hidden=(32, 16)))
        control_imp = _run(control_model, structure="2:4", control=control)
        assert all(nm.holds(m) for m in control_imp.mask_history[-1].values()), control
        assert set(kl.check_pattern(control_model, "2:4").values()) == {0}, control
    plain = kl.strip(ticket_model)
    assert set(kl.check_pattern(plain, "2:4").values()) == {0}
    if keras.backend.backend() == "tensorflow":
        from keras_lottery.export.tflite_tensors import constant_tensors

        path = str(tmp_path / "nm.tflite")
        kl.export_tflite(ticket_model, path, sparse=False)
        kernels = [t.array.T for t in constant_tensors(open(path, "rb").read())
                   if t.array.ndim == 2]
        assert len(kernels) == 3 and all(nm.holds(k != 0) for k in kernels)


def test_bad_structure_arguments_are_refused_up_front():
    with pytest.raises(ValueError, match="distribution='uniform'"):
        kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, distribution="global",
                                     structure="neuron")
    with pytest.raises(ValueError, match="fixes each kernel's density"):
        kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, distribution="erk",
                                     structure="2:4")
    with pytest.raises(ValueError, match="structure must be"):
        kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, structure="block")
    with pytest.raises(ValueError, match="N:M"):
        kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, structure="2:x")
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 8, name="emb")(inputs)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = kl.wrap(keras.Model(inputs, keras.layers.Dense(2, name="out")(h)))
    model.compile("sgd", "mse")
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, structure="neuron",
                                       verbose=0)
    with pytest.raises(ValueError, match="emb/embeddings.*Embedding"):
        model.fit(np.ones((4, 6), "int32"), np.ones((4, 2)), epochs=2, verbose=0,
                  callbacks=[imp])
