"""IMP under tf.distribute.MirroredStrategy on two and four logical CPU devices."""

import contextlib
import os

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mirrored_strategy
from conftest import mlp
import script_runner

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TF backend"
)


def _run(strategy=None):
    keras.utils.set_random_seed(3)
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = kl.wrap(mlp())
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, rewind_to=3, verbose=0)
    x, y = classification_data()
    model.fit(x, y, batch_size=16, epochs=imp.total_epochs, callbacks=[imp], verbose=0, shuffle=False)
    return model, imp


def test_mirrored_matches_single_device():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest should split the CPU in two"
    _check_mirrored(2)


def test_mirrored_matches_single_device_on_four_replicas(tmp_path):
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) >= 4:
        _check_mirrored(4)
        return
    # A process of its own with the CPU split in four (forked on TensorFlow,
    # see script_runner): one process cannot hold two MirroredStrategy sizes.
    job = tmp_path / "four_replicas.py"
    job.write_text(
        "import sys, pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:xdist', "
        f"'{__file__}::test_mirrored_matches_single_device_on_four_replicas']))\n")
    result = script_runner.run_script(
        job, [], env=dict(os.environ, KERAS_LOTTERY_TEST_CPUS="4"),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def _check_mirrored(replicas):
    strategy = mirrored_strategy(replicas)
    mirrored, imp_m = _run(strategy)
    single, imp_s = _run()
    for a, b in zip(imp_m.mask_history, imp_s.mask_history):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for pm, ps in zip(kl.prunable_weights(mirrored), kl.prunable_weights(single)):
        if True:
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(pm.variable.value),
                keras.ops.convert_to_numpy(ps.variable.value), atol=1e-4,
            )
            # Every replica holds the same mask, snapshot and weight.
            for var in (pm.mask, pm.snapshots["rewind"], pm.variable):
                replicas = [np.asarray(v) for v in var.value.values]
                assert len(replicas) == strategy.num_replicas_in_sync
                for replica in replicas[1:]:
                    np.testing.assert_array_equal(replicas[0], replica)
            values = keras.ops.convert_to_numpy(pm.variable.value)
            mask = keras.ops.convert_to_numpy(pm.mask.value) > 0.5
            assert np.all(values[~mask] == 0)
    assert imp_m.rewind_step == imp_s.rewind_step == 3


def test_wrap_outside_the_strategy_scope_is_refused():
    strategy = mirrored_strategy(2)
    with strategy.scope():
        model = mlp()
    with pytest.raises(ValueError, match="strategy.scope"):
        kl.wrap(model)


@pytest.mark.parametrize("compile_kwargs", [{"steps_per_execution": 4}, {"jit_compile": True}])
def test_known_upstream_limits_get_a_clear_error(compile_kwargs):
    strategy = mirrored_strategy(2)
    with strategy.scope():
        model = kl.wrap(mlp())
        model.compile("adam", "mse", **compile_kwargs)
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0)
    x, _ = classification_data()
    with pytest.raises(ValueError, match="keras-team/keras#19246"):
        model.fit(x, np.zeros((96, 3)), epochs=2, callbacks=[imp], verbose=0)


def test_dynamic_sparse_training_under_mirrored_matches_single_device():
    """RigL's compiled gradient, read and write run in the cross-replica
    context: every replica gets the same masks, and they are a single
    device's."""
    x, y = classification_data()

    def run(strategy=None):
        keras.utils.set_random_seed(5)
        scope = strategy.scope() if strategy else contextlib.nullcontext()
        with scope:
            model = kl.wrap(mlp())
            model.compile(keras.optimizers.Adam(0.01),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        dst = kl.DynamicSparseTraining("rigl", density=0.3, update_every=3, data=(x, y),
                                       batch_size=16, verbose=0)
        model.fit(x, y, batch_size=16, epochs=2, callbacks=[dst], verbose=0, shuffle=False)
        return model, dst

    strategy = mirrored_strategy(2)
    mirrored, dst_m = run(strategy)
    single, dst_s = run()
    assert [u["moved"] for u in dst_m.updates] == [u["moved"] for u in dst_s.updates]
    assert dst_m.updates and dst_m.updates[0]["moved"] > 0
    for pm, ps in zip(kl.prunable_weights(mirrored), kl.prunable_weights(single)):
        replicas = [np.asarray(v) for v in pm.mask.value.values]
        for replica in replicas[1:]:
            np.testing.assert_array_equal(replicas[0], replica)
        np.testing.assert_array_equal(pm.state.mask_array(), ps.state.mask_array())
        values = keras.ops.convert_to_numpy(pm.variable.value)
        assert np.all(values[~pm.state.mask_array()] == 0)
