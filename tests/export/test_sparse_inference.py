"""XNNPACK's sparse path: structure checks and the IMP latency policy.

XNNPACK never takes the sparse path on x86 with AVX (docs/EXPORT.md), so
these tests check the structure the path needs, not the runtime.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.export import sparse_inference as si


def mobile(stem="padded", block="residual", after=None, side=False, channels=3):
    """A MobileNet-style net: stem, depthwise block, 1x1 convs, GAP, Dense."""
    x = keras.Input((16, 16, channels))
    if stem == "padded":
        h = keras.layers.ZeroPadding2D(1, name="stem_pad")(x)
        h = keras.layers.Conv2D(8, 3, strides=2, name="stem")(h)
    else:
        h = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(x)
    h = keras.layers.BatchNormalization(name="stem_bn")(h)
    h = keras.layers.ReLU(6.0, name="stem_relu")(h)
    if block == "residual":
        d = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
        d = keras.layers.Conv2D(8, 1, name="pw1")(d)
        h = keras.layers.Add(name="add")([h, d])
    elif block == "strided":
        d = keras.layers.ZeroPadding2D(1, name="dw_pad")(h)
        d = keras.layers.DepthwiseConv2D(3, strides=2, name="dw")(d)
        h = keras.layers.Conv2D(8, 1, name="pw1")(d)
    elif block == "strided_same":
        d = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(h)
        h = keras.layers.Conv2D(8, 1, name="pw1")(d)
    if after == "maxpool":
        h = keras.layers.MaxPooling2D(name="pool")(h)
    elif after == "conv3x3":
        h = keras.layers.Conv2D(8, 3, padding="same", name="conv3")(h)
    inner = keras.layers.Conv2D(16, 1, activation="relu", name="pw2")(h)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(inner)
    if side:
        g = keras.layers.Concatenate()([g, keras.layers.Flatten(name="peek")(h)])
    return keras.Model(x, keras.layers.Dense(3, name="out")(g))


@pytest.mark.parametrize("block", ["residual", "strided"])
def test_the_path_of_a_mobilenet_style_net(block):
    path = kl.xnnpack_sparse_path(mobile(block=block))
    assert (path.start, path.end) == ("stem", "gap")
    assert path.accelerated == ("pw1/kernel", "pw2/kernel")
    assert "dw" in path.layers and "out" not in path.layers


@pytest.mark.parametrize(
    "kwargs, layer, reason",
    [
        ({"stem": "same"}, "stem", "ZeroPadding2D\\(1\\) and padding='valid'"),
        ({"channels": 4}, "stem", "3 input channels"),
        ({"block": "strided_same"}, "dw", "padding must be 1"),
        ({"after": "maxpool"}, "pool", "MaxPooling2D is not NCHW-compatible"),
        ({"after": "conv3x3"}, "conv3", "3x3 convolution inside the path"),
        ({"side": True}, "peek", "from outside the path"),
    ],
)
def test_the_layer_that_breaks_the_path_is_named(kwargs, layer, reason):
    with pytest.raises(si.SparseInferenceError, match=f"layer '{layer}'.*{reason}"):
        kl.xnnpack_sparse_path(mobile(**kwargs))


def test_models_without_a_path_are_refused_with_the_reason():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(si.SparseInferenceError, match="GlobalAveragePooling2D"):
        kl.xnnpack_sparse_path(dense)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(si.SparseInferenceError, match="subclassed"):
        kl.xnnpack_sparse_path(Sub())


@pytest.mark.backend_independent
def test_keras_mobilenet_v2_is_refused_at_its_asymmetric_padding():
    # Walking back from the pooling, the first layer that breaks the path is
    # the last stride-2 depthwise conv, padded ((0, 1), (0, 1)) by Keras.
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=3
    )
    with pytest.raises(si.SparseInferenceError, match="layer 'block_13_depthwise'.*padding must be 1"):
        kl.xnnpack_sparse_path(model)


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 16, 16, 3)).astype("float32"), rng.integers(0, 3, n)


def _fit(model, imp):
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=imp.total_epochs, callbacks=[imp], verbose=0)


def test_the_policy_prunes_only_the_accelerated_kernels_past_two_thirds():
    model = kl.wrap(mobile())
    imp = kl.IterativeMagnitudePruning(
        rounds=4, epochs_per_round=1, rate=0.35, latency_policy="xnnpack_sparse",
        monitor="loss", verbose=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _fit(model, imp)
    density = imp.results[-1]["layer_density"]
    assert density["pw1"] == pytest.approx(0.65**3, abs=0.02)
    assert density["pw2"] == pytest.approx(0.65**3, abs=0.02)
    for name in ("stem", "dw", "out"):
        assert density[name] == 1.0
    masks = kl.get_masks(model)
    zeros = 1 - sum(masks[k].sum() for k in ("pw1/kernel", "pw2/kernel")) / sum(
        masks[k].size for k in ("pw1/kernel", "pw2/kernel"))
    assert zeros > si.MIN_ZERO_FRACTION


def test_the_policy_warns_below_the_threshold_and_refuses_a_broken_model():
    model = kl.wrap(mobile())
    imp = kl.IterativeMagnitudePruning(
        rounds=2, epochs_per_round=1, rate=0.2, latency_policy="xnnpack_sparse", verbose=0
    )
    with pytest.warns(UserWarning, match="only above 66.7%"):
        _fit(model, imp)
    broken = kl.wrap(mobile(after="maxpool"))
    imp = kl.IterativeMagnitudePruning(
        rounds=2, epochs_per_round=1, latency_policy="xnnpack_sparse", verbose=0
    )
    with pytest.raises(si.SparseInferenceError, match="layer 'pool'"):
        _fit(broken, imp)
    with pytest.raises(ValueError, match="latency_policy"):
        kl.IterativeMagnitudePruning(2, 1, latency_policy="fast")
    with pytest.raises(ValueError, match="structure='units"):
        kl.IterativeMagnitudePruning(2, 1, structure="channel", latency_policy="xnnpack_sparse")
