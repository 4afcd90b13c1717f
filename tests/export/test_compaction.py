"""Compaction: the smaller model computes what the masked model computes,
and its layers shrink by the pruned counts."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.export import compaction


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _prune_units(model, key, units, zero_bias=True):
    """Prunes whole output units of a kernel (its columns), as a structured
    ticket does (with the bias of a pruned unit masked too)."""
    masks = kl.get_masks(model)
    mask = masks[key].copy()
    mask[..., units] = False
    kl.set_masks(model, {key: mask})
    if zero_bias:
        owner = next(p.owner for p in kl.prunable_weights(model) if p.key == key)
        bias = _np(owner.bias).copy()
        bias[units] = 0
        owner.bias.assign(bias)


class Doubled(keras.layers.Layer):
    """A layer compaction does not know how to shrink."""

    def call(self, x):
        return x * 2.0


def _check(model, x, removed, atol=1e-5):
    result = compaction.compact(model)
    np.testing.assert_allclose(_np(result.model(x)), _np(model(x)), atol=atol, rtol=1e-5)
    assert result.removed == removed
    assert result.params_after < result.params_before
    assert not kl.prunable_weights(result.model)
    return result


def _refused_then_compacts(model, match, build, exclude, key, units, shape):
    """`compact` refuses `model` with `match`; rebuilt with `exclude` (what
    the refusal names) and `units` of `key` pruned, it compacts."""
    with pytest.raises(compaction.CompactionError, match=match):
        compaction.compact(model)
    model = build(exclude=exclude)
    _prune_units(model, key, units)
    data = np.random.default_rng(0).normal(size=shape).astype("float32")
    return _check(model, data, {key.split("/")[0]: len(units)})


def test_dense_to_dense():
    x = keras.Input((10,))
    h = keras.layers.Dense(8, activation="relu", name="h1")(x)
    h = keras.layers.Dense(6, activation="relu", name="h2")(h)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(3, name="out")(h)))
    _prune_units(model, "h1/kernel", [0, 3, 5])
    _prune_units(model, "h2/kernel", [1])
    data = np.random.default_rng(0).normal(size=(16, 10)).astype("float32")
    result = _check(model, data, {"h1": 3, "h2": 1})
    assert result.model.get_layer("h1").units == 5 and result.model.get_layer("h2").units == 5
    assert result.model.get_layer("h2").kernel.shape == (5, 5)


def test_conv_bn_conv_and_flatten():
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="c2")(h)
    h = keras.layers.MaxPooling2D()(h)
    out = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(h))
    model = kl.wrap(keras.Model(x, out))
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(size=6))
    bn.moving_variance.assign(rng.random(6) + 0.5)
    _prune_units(model, "c1/kernel", [1, 4])
    # A pruned filter followed by batch normalization: its BN entries are
    # pruned with it (gamma and beta 0), so the channel is exactly zero.
    gamma, beta = _np(bn.gamma).copy(), _np(bn.beta).copy()
    gamma[[1, 4]] = 0
    beta[[1, 4]] = 0
    bn.gamma.assign(gamma)
    bn.beta.assign(beta)
    _prune_units(model, "c2/kernel", [0])
    data = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    result = _check(model, data, {"c1": 2, "c2": 1})
    assert result.model.get_layer("bn").gamma.shape == (4,)
    assert result.model.get_layer("c2").kernel.shape == (3, 3, 4, 4)
    assert result.model.get_layer("out").kernel.shape == (4 * 4 * 4, 2)


def test_residual_add_and_concatenate():
    x = keras.Input((6,))
    a = keras.layers.Dense(4, activation="relu", name="a")(x)
    b = keras.layers.Dense(4, activation="relu", name="b")(x)
    summed = keras.layers.Add()([a, b])
    c = keras.layers.Dense(3, activation="relu", name="c")(x)
    joined = keras.layers.Concatenate()([summed, c])
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(joined)))
    _prune_units(model, "a/kernel", [2])
    _prune_units(model, "b/kernel", [2])  # the residual branches agree
    _prune_units(model, "c/kernel", [0, 1])
    data = np.random.default_rng(1).normal(size=(8, 6)).astype("float32")
    result = _check(model, data, {"a": 1, "b": 1, "c": 2})
    assert result.model.get_layer("out").kernel.shape == (3 + 1, 2)


def test_branches_of_a_residual_that_disagree_are_refused():
    x = keras.Input((6,))
    a = keras.layers.Dense(4, name="a")(x)
    b = keras.layers.Dense(4, name="b")(x)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(keras.layers.Add()([a, b]))))
    _prune_units(model, "a/kernel", [0])
    with pytest.raises(compaction.CompactionError, match="'add'.*residual"):
        compaction.compact(model)


def test_dead_units_of_an_unstructured_ticket_fold_their_constant():
    x = keras.Input((5,))
    h = keras.layers.Dense(6, activation="relu", name="h")(x)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    # Unit 2 loses its whole fan-in but keeps a bias: a constant relu(b) > 0.
    _prune_units(model, "h/kernel", [2], zero_bias=False)
    bias = _np(model.get_layer("h").bias).copy()
    bias[2] = 0.7
    model.get_layer("h").bias.assign(bias)
    # Unit 4 feeds nothing (its fan-out is zero).
    mask = kl.get_masks(model)["out/kernel"].copy()
    mask[4, :] = False
    kl.set_masks(model, {"out/kernel": mask})
    data = np.random.default_rng(2).normal(size=(8, 5)).astype("float32")
    result = _check(model, data, {"h": 2})
    assert result.folded == 1


def test_layers_it_cannot_shrink_are_named():
    x = keras.Input((4, 6))
    h = keras.layers.Dense(6, name="h")(x)
    h = keras.layers.LayerNormalization(name="norm")(h)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    _prune_units(model, "h/kernel", [0])
    with pytest.raises(compaction.CompactionError, match="'norm'"):
        compaction.compact(model)


def test_subclassed_models_are_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.ones((1, 3)))
    with pytest.raises(compaction.CompactionError, match="functional or Sequential"):
        compaction.compact(net)


def test_zero_padding_cropping_and_upsampling_pass_channels_through():
    # MobileNet-style explicit padding before a 'valid' strided conv.
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 1, activation="relu", name="c1")(x)
    h = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(h)
    h = keras.layers.Conv2D(5, 3, strides=2, activation="relu", name="c2")(h)
    h = keras.layers.UpSampling2D(name="up")(h)
    h = keras.layers.Cropping2D(1, name="crop")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    _prune_units(model, "c1/kernel", [0, 2])
    _prune_units(model, "c2/kernel", [4])
    data = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    result = _check(model, data, {"c1": 2, "c2": 1})
    assert result.model.get_layer("c2").kernel.shape == (3, 3, 4, 4)


def test_a_constant_channel_is_not_folded_through_zero_padding():
    # A pruned filter whose bias survives the ReLU is a constant channel;
    # padded with zeros it is no longer constant, so it stays (exactly).
    x = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 1, activation="relu", name="c1")(x)
    h = keras.layers.ZeroPadding2D(1, name="pad")(h)
    h = keras.layers.Conv2D(3, 3, name="c2")(h)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    _prune_units(model, "c1/kernel", [1], zero_bias=False)
    owner = model.get_layer("c1")
    owner.bias.assign(np.array([0.0, 0.7, 0.0, 0.0], "float32"))
    data = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype("float32")
    result = compaction.compact(model)
    np.testing.assert_allclose(_np(result.model(data)), _np(model(data)), atol=1e-5)
    assert result.model.get_layer("c1").filters == 4 and result.folded == 0


def _relu_bn_block(padding):
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding=padding, activation="relu", name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.Conv2D(5, 3, padding=padding, activation="relu", name="c2")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.Dropout(0.3)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    rng = np.random.default_rng(0)
    for name in ("bn1", "bn2"):  # a trained BN: 0 in, its shift out
        for weight in model.get_layer(name).weights:
            weight.assign(rng.random(weight.shape).astype("float32") + 0.5)
    return model, rng


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv_relu_then_batchnorm_folds_the_shift_of_a_pruned_channel(padding):
    """The most common CNN block: a pruned filter's constant relu(bias) — 0
    for a negative bias, positive otherwise — goes through BN as a constant
    (BN(0) is not 0). It is folded where that is exact (into a "valid"
    conv's or the head's biases) and kept where it is not (a "same" conv
    pads the constant with zeros)."""
    model, rng = _relu_bn_block(padding)
    _prune_units(model, "c1/kernel", [1, 4], zero_bias=False)
    _prune_units(model, "c2/kernel", [0, 2], zero_bias=False)
    for name, values in (("c1", [0.1, -0.4, 0.2, 0.3, 0.5, 0.1]),
                         ("c2", [-0.3, 0.2, 0.4, 0.1, 0.2])):
        model.get_layer(name).bias.assign(np.array(values, "float32"))
    data = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    removed = {"c1": 2, "c2": 2} if padding == "valid" else {"c2": 2}
    result = _check(model, data, removed)
    assert result.folded == sum(removed.values())


def test_a_constant_channel_into_a_layer_without_bias_is_kept():
    """MobileNetV2's expand convolutions have no bias: a pruned filter's BN
    shift cannot be folded into them, so the channel stays (it was refused)."""
    x = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(6, 1, activation="relu", name="c1")(x)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.Conv2D(4, 1, use_bias=False, name="expand")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    for weight in model.get_layer("bn1").weights:
        weight.assign(np.random.default_rng(0).random(weight.shape).astype("float32") + 0.5)
    _prune_units(model, "c1/kernel", [2, 5])
    _prune_units(model, "expand/kernel", [1], zero_bias=False)
    data = np.random.default_rng(1).normal(size=(4, 6, 6, 3)).astype("float32")
    result = _check(model, data, {"expand": 1})
    assert result.folded == 0 and result.model.get_layer("c1").filters == 6


def test_the_writers_of_a_stream_are_found_through_a_depthwise_convolution():
    """A depthwise convolution passes its input's channels on: the layer to
    leave dense behind a disagreeing merge is the convolution before it."""
    def build(exclude=None):
        x = keras.Input((6, 6, 4))
        h = keras.layers.Conv2D(8, 1, activation="relu", name="expand")(x)
        h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
        gate = keras.layers.Conv2D(8, 1, activation="sigmoid", name="gate")(x)
        h = keras.layers.Multiply(name="mul")([h, gate])
        h = keras.layers.GlobalAveragePooling2D()(h)
        h = keras.layers.Dense(5, activation="relu", name="fc")(h)
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)),
                       exclude=exclude or ["dw"])

    model = build()
    _prune_units(model, "expand/kernel", [3])
    _refused_then_compacts(model, r"'mul' \(Multiply\).*exclude=\['expand', 'gate'\]", build,
                           ["dw", "expand", "gate"], "fc/kernel", [1], (4, 6, 6, 4))


def test_a_model_output_keeps_its_units():
    """An output unit pruned whole still is an output: the compacted model
    returns the same shape (its 0 column), it does not drop it."""
    x = keras.Input((6,))
    h = keras.layers.Dense(5, activation="relu", name="h")(x)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(3, name="out")(h)))
    _prune_units(model, "out/kernel", [1])
    _prune_units(model, "h/kernel", [0])
    data = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    result = _check(model, data, {"h": 1})
    assert result.model.output_shape == (None, 3)


def test_a_zero_channel_into_a_sigmoid_is_not_dropped():
    """sigmoid(0) = 0.5: a filter whose output is exactly 0 still feeds the
    next layer a constant."""
    x = keras.Input((6,))
    h = keras.layers.Dense(4, activation="relu", name="h")(x)
    h = keras.layers.Activation("sigmoid")(h)
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    _prune_units(model, "h/kernel", [1])  # bias 0: relu(0) = 0, sigmoid(0) = 0.5
    data = np.random.default_rng(1).normal(size=(8, 6)).astype("float32")
    result = _check(model, data, {"h": 1})
    assert result.folded == 1


def test_a_residual_written_as_plus_is_a_merge():
    """`h + r` in a functional model is a `keras.ops` Add node with no weights
    (ConvNeXt's residuals): compacted like the Add layer, refused by name when
    the branches keep different channels, and the fix the refusal names
    (the residual's writers left dense) works."""
    def build(exclude=None):
        x = keras.Input((8,))
        h = keras.layers.Dense(6, activation="relu", name="h")(x)
        r = keras.layers.Dense(6, activation="relu", name="r")(x)
        f = keras.layers.Dense(5, activation="relu", name="f")(x)
        merged = keras.layers.Concatenate()([h + r, f])
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(merged)), exclude=exclude)

    data = np.random.default_rng(0).normal(size=(8, 8)).astype("float32")
    model = build()
    _prune_units(model, "h/kernel", [2])
    _prune_units(model, "r/kernel", [2])
    _check(model, data, {"h": 1, "r": 1})
    model = build()
    _prune_units(model, "h/kernel", [2])
    _refused_then_compacts(model, r"'add(_\d+)?' \(Add\).*branches.*exclude=\['h', 'r'\]",
                           build, ["h", "r"], "f/kernel", [1], (8, 8))


def test_a_layer_compaction_cannot_shrink_is_refused_with_its_writers():
    """A layer compaction does not know (a custom one here) is refused by name,
    with the layers to leave dense; leaving them dense, compaction works."""

    def build(exclude=None):
        x = keras.Input((8,))
        h = keras.layers.Dense(6, activation="relu", name="h")(x)
        g = keras.layers.Dense(4, activation="relu", name="g")(Doubled(name="doubled")(h))
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(g)), exclude=exclude)

    model = build()
    _prune_units(model, "h/kernel", [1])
    _refused_then_compacts(model, r"'doubled' \(Doubled\) would see fewer channels.*exclude=\['h'\]",
                           build, ["h"], "g/kernel", [3], (8, 8))


def test_a_refusal_names_the_writers_of_every_layer_it_cannot_shrink():
    """Only `h` feeds a shrunk stream into an unknown layer now; retrained
    with `h` dense, `g` could be next: both are named, and following the
    refusal once is enough."""

    def build(exclude=None):
        x = keras.Input((8,))
        h = keras.layers.Dense(6, activation="relu", name="h")(x)
        g = keras.layers.Dense(6, activation="relu", name="g")(x)
        merged = keras.layers.Concatenate()([Doubled(name="d1")(h), Doubled(name="d2")(g)])
        fc = keras.layers.Dense(5, activation="relu", name="fc")(merged)
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(fc)), exclude=exclude)

    model = build()
    _prune_units(model, "h/kernel", [1])
    _refused_then_compacts(model, r"'d1' \(Doubled\) would see.*exclude=\['g', 'h'\]", build,
                           ["g", "h"], "fc/kernel", [2], (8, 8))


def test_every_refusal_names_the_writers_of_both_kinds_of_problem():
    """A residual refused names the writers of a layer compact cannot shrink
    too, and the other way round: retrained with only one kind left dense,
    the other kind can fail next (NASNetMobile: refused for its residuals,
    then for its SeparableConv2D inputs)."""

    def build(exclude=None):
        x = keras.Input((8,))
        stream = keras.layers.Dense(6, name="a")(x) + keras.layers.Dense(6, name="b")(x)
        doubled = Doubled(name="d")(keras.layers.Dense(6, activation="relu", name="g")(x))
        f = keras.layers.Dense(5, activation="relu", name="f")(x)
        merged = keras.layers.Concatenate()([stream, doubled, f])
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(merged)), exclude=exclude)

    model = build()
    _prune_units(model, "a/kernel", [1])  # only the residual disagrees
    _refused_then_compacts(model, r"\(Add\) merges inputs.*exclude=\['a', 'b', 'g'\]", build,
                           ["a", "b", "g"], "f/kernel", [0], (8, 8))
    model = build()
    _prune_units(model, "g/kernel", [2])  # only the unknown layer sees fewer
    _refused_then_compacts(model, r"'d' \(Doubled\) would see.*exclude=\['a', 'b', 'g'\]",
                           build, ["a", "b", "g"], "f/kernel", [3], (8, 8))


def test_the_writers_of_a_stream_are_found_through_a_concatenation():
    """NASNet's adjust blocks concatenate two convolutions and feed the result,
    through batch norm, to SeparableConv2D layers: a refusal there names
    both convolutions (it named none, `exclude=[]`, before)."""

    def build(exclude=None):
        x = keras.Input((8,))
        joined = keras.layers.Concatenate()(
            [keras.layers.Dense(3, name="a")(x), keras.layers.Dense(3, name="b")(x)])
        h = Doubled(name="d")(keras.layers.BatchNormalization(name="bn")(joined))
        fc = keras.layers.Dense(5, activation="relu", name="fc")(keras.layers.Flatten()(h))
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(fc)), exclude=exclude)

    model = build()
    _prune_units(model, "a/kernel", [1])
    _refused_then_compacts(model, r"'d' \(Doubled\) would see.*exclude=\['a', 'b'\]", build,
                           ["a", "b"], "fc/kernel", [2], (8, 8))


def test_a_refusal_says_so_when_following_it_would_leave_nothing_to_shrink():
    """Every hidden layer writes into a layer compaction cannot shrink: the
    refusal says the model cannot be made smaller instead of naming all of
    them to leave dense (NASNetMobile: followed, 0 units removed)."""

    x = keras.Input((8,))
    h = Doubled(name="d")(keras.layers.Dense(6, activation="relu", name="h")(x))
    model = kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
    _prune_units(model, "h/kernel", [1])
    with pytest.raises(compaction.CompactionError,
                       match=r"'d' \(Doubled\) would see.*Every layer compaction could shrink in "
                             r"this model \(1\) writes into it.*structure='weight'"):
        compaction.compact(model)


def test_a_grouped_convolution_keeps_its_channels():
    """ConvNeXt's depthwise `Conv2D(groups=C)` ties input and output channels
    in groups: compaction keeps all of them, refusing by name (with the layers
    to leave dense) when a pruned layer feeds it, and compacting around it
    otherwise."""
    def build(exclude=None):
        x = keras.Input((6, 6, 3))
        h = keras.layers.Conv2D(4, 1, activation="relu", name="c")(x)
        h = keras.layers.Conv2D(4, 3, padding="same", groups=4, name="grouped")(h)
        h = keras.layers.Conv2D(5, 1, activation="relu", name="d")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)), exclude=exclude)

    data = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    model = build()
    _prune_units(model, "c/kernel", [1])
    with pytest.raises(compaction.CompactionError,
                       match=r"'grouped' \(Conv2D, groups=4\) would see fewer.*exclude=\['c'\]"):
        compaction.compact(model)
    model = build(exclude=["c"])
    _prune_units(model, "grouped/kernel", [2])  # kept (as zeros): its groups stay whole
    _prune_units(model, "d/kernel", [0, 4])
    _check(model, data, {"d": 2})


def test_one_refusal_names_every_residual_and_every_writer():
    """Two residuals whose branches disagree: the refusal names both, and the
    layers to leave dense for all of them, so following it once compacts."""
    def build(exclude=None):
        x = keras.Input((8,))
        s1 = keras.layers.Dense(6, name="a")(x) + keras.layers.Dense(6, name="b")(x)
        s2 = s1 + keras.layers.Dense(6, name="c")(s1)
        f = keras.layers.Dense(5, activation="relu", name="f")(x)
        merged = keras.layers.Concatenate()([s2, f])
        return kl.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(merged)), exclude=exclude)

    model = build()
    _prune_units(model, "a/kernel", [1])
    _prune_units(model, "c/kernel", [4])
    with pytest.raises(compaction.CompactionError,
                       match=r"Layers 'add(_\d+)?' \(Add\), 'add(_\d+)?' \(Add\) merge inputs.*"
                             r"exclude=\['a', 'b', 'c'\]"):
        compaction.compact(model)
    # Only the first residual disagrees here, but retrained with only its
    # writers left dense the second one could: the refusal names both streams'.
    model = build()
    _prune_units(model, "a/kernel", [1])
    _refused_then_compacts(
        model, r"Layer 'add(_\d+)?' \(Add\) merges inputs.*exclude=\['a', 'b', 'c'\]", build,
        ["a", "b", "c"], "f/kernel", [0], (8, 8))
