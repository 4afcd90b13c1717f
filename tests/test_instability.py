"""Linear mode connectivity: barrier of identical copies, of diverging copies, BN re-estimation."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery import instability as lmc
from conftest import classification_data
from conftest import mlp


def _compiled(model):
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    return model


def test_two_identical_copies_have_no_barrier_and_the_model_is_restored():
    model = _compiled(kl.wrap(mlp()))
    x, y = classification_data()
    before = [keras.ops.convert_to_numpy(v.value).copy() for v in model.variables]

    def same_order(m, seed):
        del seed
        keras.utils.set_random_seed(0)
        m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)

    result = lmc.linear_mode_connectivity(model, same_order, (x, y), points=5)
    assert result.barrier == pytest.approx(0.0, abs=1e-9)
    assert len(set(np.round(result.errors, 6))) == 1  # every point is the same network
    after = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_the_line_between_different_networks_is_evaluated_point_by_point():
    model = _compiled(mlp())
    x, y = classification_data()
    targets = {}

    def train(m, seed):  # "training" jumps to a seed-dependent network
        rng = np.random.default_rng(seed)
        for v in m.trainable_variables:
            v.assign(rng.normal(size=v.shape).astype("float32"))
        targets[seed] = [keras.ops.convert_to_numpy(v.value).copy() for v in m.variables]

    errors = []

    def evaluate(m):
        errors.append([keras.ops.convert_to_numpy(v.value).copy() for v in m.variables])
        return float(len(errors) == 2)  # error 1 at the middle point, 0 elsewhere

    result = lmc.linear_mode_connectivity(model, train, (x, y), points=3, seeds=(3, 4), evaluate=evaluate)
    assert result.errors == (0.0, 1.0, 0.0) and result.barrier == 1.0
    for got, a, b in zip(errors[1], targets[3], targets[4]):
        np.testing.assert_allclose(got, 0.5 * (a + b), rtol=1e-6)


def test_batchnorm_statistics_are_reestimated_at_each_point():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2)(keras.layers.BatchNormalization(momentum=0.99, name="bn")(inputs))
    model = _compiled(keras.Model(inputs, outputs))
    x = np.random.default_rng(0).normal(loc=5.0, size=(64, 3)).astype("float32")
    lmc.reestimate_batchnorm(model, x, batch_size=16)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), x.mean(axis=0), rtol=1e-5)
    assert bn.momentum == 0.99


def test_bad_arguments():
    model = _compiled(mlp())
    data = classification_data()
    with pytest.raises(ValueError, match="points"):
        lmc.linear_mode_connectivity(model, lambda m, s: None, data, points=1)
    with pytest.raises(ValueError, match="seeds"):
        lmc.linear_mode_connectivity(model, lambda m, s: None, data, seeds=(1, 1))
