"""wrap / strip: model kinds, exclusions, exact outputs, clear errors."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mlp


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_wrap_functional_keeps_weights_and_outputs():
    model = mlp()
    x, _ = classification_data()
    wrapped = kl.wrap(model)
    assert [type(l).__name__ for l in wrapped.layers[1:]] == ["LotteryWrapper"] * 3
    np.testing.assert_array_equal(_np(model(x)), _np(wrapped(x)))
    init = wrapped.get_layer("fc0").get_snapshot("init")["kernel"]
    np.testing.assert_array_equal(init, _np(model.get_layer("fc0").kernel))


def test_wrap_sequential_unbuilt_snapshots_at_build():
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    wrapped = kl.wrap(model)
    wrapped.build((None, 5))
    wrapper = kl.find_wrappers(wrapped)[0]
    np.testing.assert_array_equal(
        wrapper.get_snapshot("init")["kernel"], _np(wrapper.layer.kernel)
    )


def test_wrap_nested_models():
    inner = keras.Sequential([keras.Input((12,)), keras.layers.Dense(6, name="inner_fc")], name="block")
    inputs = keras.Input((12,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    x, _ = classification_data()
    wrapped = kl.wrap(model)
    assert [w.name for w in kl.find_wrappers(wrapped)] == ["inner_fc", "head"]
    np.testing.assert_array_equal(_np(model(x)), _np(wrapped(x)))


def test_wrap_exclude_by_name_and_predicate():
    model = mlp()
    assert [w.name for w in kl.find_wrappers(kl.wrap(model, exclude=["out"]))] == ["fc0", "fc1"]
    only_fc0 = kl.wrap(model, exclude=lambda layer: layer.name != "fc0")
    assert [w.name for w in kl.find_wrappers(only_fc0)] == ["fc0"]


def test_wrap_exclude_unknown_name():
    with pytest.raises(ValueError, match="nope"):
        kl.wrap(mlp(), exclude=["nope"])


def test_wrap_twice_rejected():
    with pytest.raises(ValueError, match="only once"):
        kl.wrap(kl.wrap(mlp()))


def test_wrap_model_without_prunable_layers():
    model = keras.Sequential([keras.Input((3,)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="no prunable layers"):
        kl.wrap(model)


def test_wrap_everything_excluded():
    with pytest.raises(ValueError, match="no prunable layers"):
        kl.wrap(mlp(), exclude=lambda layer: True)


class Subclassed(keras.Model):
    def __init__(self, wrapped=False):
        super().__init__()
        dense = keras.layers.Dense(4)
        self.fc = kl.LotteryWrapper(dense) if wrapped else dense

    def call(self, x):
        return self.fc(x)


def test_wrap_subclassed_model_says_what_to_do():
    model = Subclassed()
    model(np.ones((1, 3)))
    with pytest.raises(ValueError, match="LotteryWrapper"):
        kl.wrap(model)


def test_subclassed_model_with_wrappers_reports():
    model = Subclassed(wrapped=True)
    model(np.ones((1, 3)))
    assert [w.name for w in kl.find_wrappers(model)] == ["dense"]
    assert kl.sparsity_report(model).total == 12


def test_wrap_rejects_non_models():
    with pytest.raises(TypeError, match="keras.Model"):
        kl.wrap(keras.layers.Dense(3))


def test_strip_bakes_masks_and_matches_outputs_exactly():
    model = kl.wrap(mlp())
    rng = np.random.default_rng(0)
    masks = {k: rng.random(m.shape) < 0.3 for k, m in kl.layer_masks(model).items()}
    kl.set_layer_masks(model, masks)
    stripped = kl.strip(model)
    x, _ = classification_data()
    np.testing.assert_array_equal(_np(model(x)), _np(stripped(x)))
    assert not kl.find_wrappers(stripped)
    assert len(stripped.weights) == 6  # 3 kernels + 3 biases, no masks or snapshots
    kernel = _np(stripped.get_layer("fc0").kernel)
    assert np.all(kernel[~masks["fc0/kernel"]] == 0)
    report = kl.sparsity_report(stripped)
    assert report.kept == sum(int(m.sum()) for m in masks.values())


def test_strip_nested_model():
    inner = keras.Sequential([keras.Input((12,)), keras.layers.Dense(6, name="inner_fc")], name="block")
    inputs = keras.Input((12,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))
    wrapped = kl.wrap(model)
    x, _ = classification_data()
    stripped = kl.strip(wrapped)
    np.testing.assert_array_equal(_np(wrapped(x)), _np(stripped(x)))
    assert not kl.find_wrappers(stripped)


def test_strip_unbuilt_model_error():
    model = kl.wrap(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="not built"):
        kl.strip(model)


def test_sparsity_report_counts_and_text():
    model = kl.wrap(mlp())
    kl.set_layer_masks(model, {"fc0/kernel": np.arange(12 * 16).reshape(12, 16) % 4 == 0})
    report = kl.sparsity_report(model)
    assert report.layer_density()["fc0"] == 0.25
    assert report.total == 12 * 16 + 16 * 8 + 8 * 3
    assert report.kept == 48 + 16 * 8 + 8 * 3
    text = str(report)
    assert "fc0/kernel" in text and "25.00%" in text
    assert report.as_dict()["weights"][0]["kept"] == 48


def test_sparsity_report_unbuilt():
    with pytest.raises(ValueError, match="not built"):
        kl.sparsity_report(keras.Sequential([keras.layers.Dense(2)]))


def test_set_layer_masks_unknown_layer():
    with pytest.raises(ValueError, match="nope"):
        kl.set_layer_masks(kl.wrap(mlp()), {"nope/kernel": np.ones((2, 2), bool)})
