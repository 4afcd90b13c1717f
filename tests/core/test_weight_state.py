"""Where a pruned weight's state lives: attach/detach next to the weight,
host snapshots, bytes per weight byte, weight files."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.core import weight_state
from conftest import classification_data
from conftest import mlp

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_attach_takes_snapshots_and_composes_constraints():
    dense = keras.layers.Dense(2, kernel_constraint=keras.constraints.NonNeg())
    dense.build((None, 3))
    state = weight_state.attach(dense, dense.kernel)
    assert isinstance(dense.kernel.constraint, kl.MaskConstraint)
    assert isinstance(dense.kernel.constraint.inner, keras.constraints.NonNeg)
    np.testing.assert_array_equal(state.snapshot_array("init"),
                                  keras.ops.convert_to_numpy(dense.kernel.value))
    with pytest.raises(ValueError, match="already prunable"):
        weight_state.attach(dense, dense.kernel)
    weight_state.detach(dense, dense.kernel)
    assert isinstance(dense.kernel.constraint, keras.constraints.NonNeg)
    assert weight_state.state_of(dense, dense.kernel) is None


def _imp_run(snapshots_on_host):
    keras.utils.set_random_seed(0)
    model = kl.wrap(mlp(), snapshots_on_host=snapshots_on_host)
    model.compile(keras.optimizers.Adam(0.01), LOSS)
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, rewind_to=4, seed=1, verbose=0)
    x, y = classification_data()
    model.fit(x, y, batch_size=16, epochs=imp.total_epochs, callbacks=[imp], verbose=0,
              shuffle=False)
    return model, imp


def _state_bytes(model):
    prunables = kl.prunable_weights(model)
    weights = sum(keras.ops.convert_to_numpy(p.variable.value).nbytes for p in prunables)
    state = sum(keras.ops.convert_to_numpy(v.value).nbytes for p in prunables
                for v in p.state.variables)
    return state / weights


def test_host_snapshots_train_like_device_snapshots_with_a_third_of_the_state():
    device, imp_device = _imp_run(False)
    host, imp_host = _imp_run(True)
    for a, b in zip(imp_device.mask_history, imp_host.mask_history):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for pd, ph in zip(kl.prunable_weights(device), kl.prunable_weights(host)):
        assert ph.state.snapshots_on_host and not pd.state.snapshots_on_host
        assert all(isinstance(s, kl.HostSnapshot) for s in ph.snapshots.values())
        for which in ("init", "rewind"):
            np.testing.assert_array_equal(pd.state.snapshot_array(which),
                                          ph.state.snapshot_array(which))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(pd.variable.value),
                                   keras.ops.convert_to_numpy(ph.variable.value), atol=1e-6)
    assert imp_host.rewind_step == imp_device.rewind_step == 4
    assert _state_bytes(device) == pytest.approx(3.0)
    assert _state_bytes(host) == pytest.approx(1.0)


def test_host_snapshots_travel_in_weight_files_and_tickets(tmp_path):
    model, imp = _imp_run(True)
    path = str(tmp_path / "host.keras")
    model.save(path)
    loaded = kl.load_model(path, snapshots_on_host=True)
    for a, b in zip(kl.prunable_weights(model), kl.prunable_weights(loaded)):
        for which in ("init", "rewind"):
            np.testing.assert_array_equal(a.state.snapshot_array(which), b.state.snapshot_array(which))
        np.testing.assert_array_equal(a.state.mask_array(), b.state.mask_array())
    ticket_path = str(tmp_path / "ticket.npz")
    kl.save_ticket(model, ticket_path, imp=imp)
    fresh = kl.wrap(mlp(), snapshots_on_host=True)
    kl.load_ticket(ticket_path, fresh)
    for a, b in zip(kl.prunable_weights(model), kl.prunable_weights(fresh)):
        np.testing.assert_array_equal(a.state.snapshot_array("init"), b.state.snapshot_array("init"))


def test_state_variables_sit_next_to_the_weight():
    model = kl.wrap(mlp())
    p = kl.prunable_weights(model)[0]
    assert [v.path for v in p.state.variables] == [
        "fc0/kernel_lottery/mask", "fc0/kernel_lottery/init", "fc0/kernel_lottery/rewind"]
    assert all(not v.trainable for v in p.state.variables)
    assert not any(v is p.mask for v in model.trainable_variables)
