"""wrap (in place) / strip / masks: model kinds, keys, exclusions, exact
outputs, weight files, clear errors."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mlp


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_wrap_in_place_keeps_outputs_and_takes_theta0():
    model = mlp()
    x, _ = classification_data()
    before = _np(model(x))
    kernel = _np(model.get_layer("fc0").kernel).copy()
    wrapped = kl.wrap(model)
    assert wrapped is model
    assert [p.key for p in kl.prunable_weights(model)] == ["fc0/kernel", "fc1/kernel", "out/kernel"]
    np.testing.assert_array_equal(before, _np(model(x)))
    p = kl.prunable_weights(model)[0]
    np.testing.assert_array_equal(p.state.snapshot_array("init"), kernel)
    np.testing.assert_array_equal(p.state.snapshot_array("rewind"), kernel)
    assert isinstance(p.variable.constraint, kl.MaskConstraint)
    assert p.owner is model.get_layer("fc0")


def test_unbuilt_sequential_gets_a_clear_error_at_wrap():
    model = keras.Sequential([keras.layers.Dense(4, name="fc1"), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        kl.wrap(model)


def test_nested_model_keys_in_model_order():
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, name="h1"), keras.layers.Dense(5, name="h2"),
         keras.layers.Dense(3, name="logits")], name="head")
    inputs = keras.Input((12,))
    model = keras.Model(inputs, inner(keras.layers.Dense(4, name="stem")(inputs)))
    kl.wrap(model)
    assert [p.key for p in kl.prunable_weights(model)] == [
        "stem/kernel", "head/h1/kernel", "head/h2/kernel", "head/logits/kernel"]


def test_repeated_paths_get_enclosing_layer_names():
    def encoder(name):
        x = keras.Input((4,))
        return keras.Model(x, keras.layers.Dense(3, name="fc")(x), name=name)

    a, b = encoder("enc_a"), encoder("enc_b")
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Concatenate()([a(x), b(x)]))
    assert [v.path for v in model.weights][::2] == ["fc/kernel", "fc/kernel"]
    kl.wrap(model)
    assert [p.key for p in kl.prunable_weights(model)] == ["enc_a/fc/kernel", "enc_b/fc/kernel"]
    kl.set_masks(model, {"enc_b/fc/kernel": np.zeros((4, 3), bool)})
    assert not _np(b.get_layer("fc").kernel).any() and _np(a.get_layer("fc").kernel).any()


@pytest.mark.parametrize(
    "exclude, kept",
    [
        (["out"], ["fc0/kernel", "fc1/kernel"]),
        ("fc*", ["out/kernel"]),
        ("fc1/kernel", ["fc0/kernel", "out/kernel"]),
        (lambda layer: layer.name != "fc0", ["fc0/kernel"]),
    ],
)
def test_exclude_by_name_glob_key_and_predicate(exclude, kept):
    model = kl.wrap(mlp(), exclude=exclude)
    assert [p.key for p in kl.prunable_weights(model)] == kept


def test_exclude_unknown_name():
    with pytest.raises(ValueError, match="nope.*selects none"):
        kl.wrap(mlp(), exclude=["nope"])


def test_wrap_twice_keeps_state():
    model = kl.wrap(mlp())
    kl.set_masks(model, {"fc0/kernel": np.zeros((12, 16), bool)})
    count = len(model.weights)
    kl.wrap(model)
    assert len(model.weights) == count
    assert not kl.get_masks(model)["fc0/kernel"].any()


def test_wrap_without_prunable_weights():
    model = keras.Sequential([keras.Input((3,)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="no prunable weights"):
        kl.wrap(model)
    with pytest.raises(ValueError, match="no prunable weights left"):
        kl.wrap(mlp(), exclude=lambda layer: True)


def test_wrap_rejects_non_models():
    with pytest.raises(TypeError, match="keras.Model"):
        kl.wrap(np.ones(3))


class AutoNamed(keras.Model):
    """A subclassed model whose layers get automatic names (dense_7...)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(3)

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_model_wraps_in_place_and_strips():
    model = AutoNamed()
    x, _ = classification_data()
    model(x[:1])
    kl.wrap(model)
    keys = [p.key for p in kl.prunable_weights(model)]
    assert len(keys) == 2 and all(k.endswith("/kernel") for k in keys)
    rng = np.random.default_rng(0)
    kl.set_masks(model, {k: rng.random(m.shape) < 0.4 for k, m in kl.get_masks(model).items()})
    plain = kl.strip(model)
    assert type(plain) is AutoNamed and not kl.prunable_weights(plain)
    np.testing.assert_array_equal(_np(model(x)), _np(plain(x)))


def test_strip_bakes_masks_and_matches_outputs_exactly():
    model = kl.wrap(mlp())
    rng = np.random.default_rng(0)
    masks = {k: rng.random(m.shape) < 0.3 for k, m in kl.get_masks(model).items()}
    kl.set_masks(model, masks)
    stripped = kl.strip(model)
    x, _ = classification_data()
    np.testing.assert_array_equal(_np(model(x)), _np(stripped(x)))
    assert not kl.prunable_weights(stripped)
    assert len(stripped.weights) == 6  # 3 kernels + 3 biases, no masks or snapshots
    kernel = _np(stripped.get_layer("fc0").kernel)
    assert np.all(kernel[~masks["fc0/kernel"]] == 0)
    assert kl.sparsity_report(stripped).kept == sum(int(m.sum()) for m in masks.values())
    # The wrapped model is untouched by stripping.
    assert kl.get_masks(model).keys() == masks.keys()


def test_strip_nested_model_and_lottery_wrapper_layers():
    inner = keras.Sequential(
        [keras.Input((12,)), kl.LotteryWrapper(keras.layers.Dense(6, name="inner_fc"))],
        name="block")
    inputs = keras.Input((12,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))
    kl.wrap(model)
    assert [p.key for p in kl.prunable_weights(model)][-1] == "head/kernel"
    x, _ = classification_data()
    stripped = kl.strip(model)
    np.testing.assert_array_equal(_np(model(x)), _np(stripped(x)))
    assert not kl.prunable_weights(stripped)
    assert "LotteryWrapper" not in {type(l).__name__ for l in stripped.get_layer("block").layers}


def test_strip_tells_a_merge_layer_from_an_operation_of_the_same_name():
    # MobileNetV3 holds both `layers.Add` (residuals) and the `x + 3.0`
    # operation `ops.numpy.Add`; both are "Add" in the config.
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(8, name="fc")(inputs)
    hidden = keras.layers.Add()([hidden, keras.layers.ReLU(6.0)(hidden + 3.0)])
    model = kl.wrap(keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden)))
    rng = np.random.default_rng(0)
    kl.set_masks(model, {k: rng.random(m.shape) < 0.5 for k, m in kl.get_masks(model).items()})
    stripped = kl.strip(model)
    x, _ = classification_data()
    np.testing.assert_array_equal(_np(model(x)), _np(stripped(x)))
    assert not kl.prunable_weights(stripped)


def test_strip_unbuilt_model_error():
    with pytest.raises(ValueError, match="not built"):
        kl.strip(keras.Sequential([keras.layers.Dense(2)]))


def test_strip_to_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = kl.wrap(mlp())
    keras.mixed_precision.set_global_policy("float32")
    plain = kl.strip(model, dtype="float32")
    assert {layer.compute_dtype for layer in plain.layers[1:]} == {"float32"}
    x, _ = classification_data()
    np.testing.assert_allclose(_np(model(x)), _np(plain(x)), atol=1e-2)


def test_sparsity_report_counts_and_text():
    model = kl.wrap(mlp())
    kl.set_masks(model, {"fc0/kernel": np.arange(12 * 16).reshape(12, 16) % 4 == 0})
    report = kl.sparsity_report(model)
    assert report.layer_density()["fc0"] == 0.25
    assert report.total == 12 * 16 + 16 * 8 + 8 * 3
    assert report.kept == 48 + 16 * 8 + 8 * 3
    text = str(report)
    assert "fc0/kernel" in text and "25.00%" in text
    assert report.as_dict()["weights"][0]["kept"] == 48


def test_report_covers_exactly_the_pruned_weights():
    model = kl.wrap(mlp(), exclude=["out"])
    report = kl.sparsity_report(model)
    assert [w.key for w in report.weights] == ["fc0/kernel", "fc1/kernel"]


def test_sparsity_report_unbuilt():
    with pytest.raises(ValueError, match="not built"):
        kl.sparsity_report(keras.Sequential([keras.layers.Dense(2)]))


def test_set_masks_unknown_key_and_bad_shape():
    model = kl.wrap(mlp())
    with pytest.raises(ValueError, match="nope"):
        kl.set_masks(model, {"nope/kernel": np.ones((2, 2), bool)})
    with pytest.raises(ValueError, match="shape mismatch"):
        kl.set_masks(model, {"fc0/kernel": np.ones((2, 2), bool)})


def test_non_pruned_weights_are_the_rest():
    model = kl.wrap(mlp())
    assert [v.path for v in kl.non_pruned_weights(model)] == ["fc0/bias", "fc1/bias", "out/bias"]


def test_weights_file_and_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(3)
    model = kl.wrap(mlp())
    rng = np.random.default_rng(0)
    masks = {k: rng.random(m.shape) < 0.5 for k, m in kl.get_masks(model).items()}
    kl.set_masks(model, masks)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = classification_data()
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "ticket.keras")
    model.save(path)
    # Plain Keras loads the plain model: masked weights, no lottery state.
    plain = keras.models.load_model(path)
    assert not kl.prunable_weights(plain)
    np.testing.assert_array_equal(_np(plain(x)), _np(model(x)))
    # kl.load_model restores masks, θ0/θk and the optimizer.
    loaded = kl.load_model(path)
    for key, mask in kl.get_masks(loaded).items():
        np.testing.assert_array_equal(mask, masks[key])
    for a, b in zip(kl.prunable_weights(model), kl.prunable_weights(loaded)):
        np.testing.assert_array_equal(a.state.snapshot_array("init"), b.state.snapshot_array("init"))
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(_np(a.value), _np(b.value))
    loaded.fit(x, y, epochs=1, verbose=0)
    for p in kl.prunable_weights(loaded):
        assert np.all(_np(p.variable.value)[~masks[p.key]] == 0)
    with pytest.raises(ValueError, match="exclude"):
        kl.load_model(path, exclude=["out"])
    # save_weights / load_weights into the same wrapped model.
    weights = str(tmp_path / "w.weights.h5")
    model.save_weights(weights)
    kl.set_masks(model, {k: np.ones_like(m) for k, m in masks.items()})
    model.load_weights(weights)
    assert all(np.array_equal(kl.get_masks(model)[k], masks[k]) for k in masks)


def test_weights_cross_between_a_wrapped_and_a_plain_model():
    """`wrap` adds masks and θ0/θk to `get_weights()` (and `count_params()`);
    `get_plain_weights` / `set_plain_weights` are the way across."""
    from conftest import mlp

    wrapped = kl.wrap(mlp())
    kl.set_masks(wrapped, {"fc0/kernel": np.arange(12 * 16).reshape(12, 16) % 2 == 0})
    plain = mlp()
    assert len(wrapped.get_weights()) > len(plain.get_weights())
    with pytest.raises(ValueError):
        wrapped.set_weights(plain.get_weights())
    plain.set_weights(kl.get_plain_weights(wrapped))
    x = np.random.default_rng(0).normal(size=(4, 12)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)),
                               keras.ops.convert_to_numpy(wrapped(x)), atol=1e-6)
    other = mlp()
    kl.set_plain_weights(wrapped, other.get_weights())  # the masks still prune
    kernel = keras.ops.convert_to_numpy(wrapped.get_layer("fc0").kernel)
    expected = keras.ops.convert_to_numpy(other.get_layer("fc0").kernel)
    np.testing.assert_array_equal(kernel, expected * (np.arange(12 * 16).reshape(12, 16) % 2 == 0))
    with pytest.raises(ValueError, match="takes 6 weights"):
        kl.set_plain_weights(wrapped, other.get_weights()[:2])
