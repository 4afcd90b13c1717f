"""Linear mode connectivity: barrier of identical copies, of diverging copies, BN re-estimation."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.methods import instability as lmc
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


def _imp_run(probe, x, y):
    keras.utils.set_random_seed(0)
    model = _compiled(kl.wrap(mlp()))
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, rate=0.5, instability=probe,
                                       monitor="loss", verbose=0)
    model.fit(x, y, batch_size=16, epochs=imp.total_epochs, shuffle=False, callbacks=[imp],
              verbose=0)
    return imp, [keras.ops.convert_to_numpy(v.value) for v in model.variables]


def test_imp_records_instability_every_round_without_changing_the_run():
    x, y = classification_data()
    plain, plain_weights = _imp_run(None, x, y)
    probe = kl.InstabilityProbe((x, y), train_data=(x, y), epochs=1, batch_size=16, points=3)
    probed, probed_weights = _imp_run(probe, x, y)
    assert [r["density"] for r in probed.results] == [r["density"] for r in plain.results]
    for row in probed.results:
        assert 0.0 <= row["instability_barrier"] <= 1.0
        assert len(row["instability_errors"]) == 3
    assert "instability_barrier" not in plain.results[0]
    for a, b in zip(plain_weights, probed_weights):  # the copies left no trace
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["loss"] for r in probed.results],
                               [r["loss"] for r in plain.results], rtol=1e-5)


def test_imp_instability_of_identical_copies_is_zero_in_every_round():
    x, y = classification_data()

    def same_order(m, seed):
        del seed
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    imp, _ = _imp_run(kl.InstabilityProbe((x, y), train=same_order, points=3), x, y)
    assert [row["instability_barrier"] for row in imp.results] == [0.0, 0.0, 0.0]


def test_instability_argument_is_checked():
    with pytest.raises(TypeError, match="InstabilityProbe"):
        kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, instability=True)
    with pytest.raises(TypeError, match="InstabilityProbe"):
        kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, instability="yes")
    with pytest.raises(ValueError, match="train_data"):
        kl.InstabilityProbe(classification_data())
    with pytest.raises(ValueError, match="epochs"):
        kl.InstabilityProbe(classification_data(), train_data=classification_data(), epochs=0)


class _ScriptedProbe:
    """Barriers by the number of steps the model has been advanced."""

    train_data = None

    def __init__(self, barriers, log):
        self.barriers, self.log = barriers, log

    def measure(self, model):
        k = self.log[-1][1] if self.log else 0
        return lmc.Instability(alphas=(0.0, 1.0), errors=(0.0, 0.0), barrier=self.barriers[k])


def test_sweep_advances_in_order_and_finds_the_earliest_stable_point():
    model = _compiled(mlp())
    before = [keras.ops.convert_to_numpy(v.value).copy() for v in model.variables]
    log = []

    def advance(m, start, stop):
        log.append((start, stop))
        for v in m.trainable_variables:
            v.assign(v + 1.0)

    probe = _ScriptedProbe({0: 0.3, 10: 0.01, 50: 0.05, 100: 0.0, 200: 0.01}, log)
    sweep = kl.instability_sweep(model, probe, [200, 0, 10, 50, 100], advance=advance)
    assert log == [(0, 10), (10, 50), (50, 100), (100, 200)]
    assert sweep.steps == (0, 10, 50, 100, 200)
    assert sweep.barriers == (0.3, 0.01, 0.05, 0.0, 0.01)
    assert sweep.earliest_stable == 100  # 10 is stable, but 50 is not again
    for a, v in zip(before, model.variables):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(v.value))
    never = kl.instability_sweep(model, _ScriptedProbe({0: 0.5}, []), [0], advance=advance)
    assert never.earliest_stable is None
    with pytest.raises(ValueError, match="distinct"):
        kl.instability_sweep(model, probe, [0, 0], advance=advance)


def test_sweep_with_the_default_training_on_a_ticket():
    x, y = classification_data()
    model = _compiled(kl.wrap(mlp()))
    kl.set_masks(model, {key: np.random.default_rng(0).random(mask.shape) < 0.5
                         for key, mask in kl.get_masks(model).items()})
    masks = kl.get_masks(model)
    probe = kl.InstabilityProbe((x, y), train_data=(x, y), steps=3, batch_size=16, points=3)
    sweep = kl.instability_sweep(model, probe, [0, 4])
    assert sweep.steps == (0, 4) and all(0.0 <= b <= 1.0 for b in sweep.barriers)
    for key, mask in kl.get_masks(model).items():
        np.testing.assert_array_equal(mask, masks[key])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
