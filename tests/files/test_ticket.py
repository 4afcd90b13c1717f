"""Ticket files: exact round-trip, retraining reproduces the round, bad files refused."""

import json
import zipfile

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mlp

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _imp_run(rounds=2, rewind_to="init"):
    keras.utils.set_random_seed(11)
    model = kl.wrap(mlp())
    model.compile(keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
    imp = kl.IterativeMagnitudePruning(rounds=rounds, epochs_per_round=2, rate=0.5, rewind_to=rewind_to, verbose=0)
    x, y = classification_data()
    xv, yv = classification_data(n=32, seed=1)
    model.fit(x, y, validation_data=(xv, yv), batch_size=16, epochs=imp.total_epochs,
              callbacks=[imp], verbose=0, shuffle=False)
    return model, imp


def test_round_trip_exact(tmp_path):
    model, imp = _imp_run(rewind_to=3)
    path = kl.save_ticket(model, str(tmp_path / "ticket"), imp=imp)
    assert path.endswith(".npz")
    ticket = kl.read_ticket(path)
    assert ticket.metadata["round"] == 1
    assert ticket.metadata["rewind_step"] == 3
    assert ticket.metadata["metrics"]["val_loss"] == pytest.approx(imp.results[-1]["val_loss"])
    assert ticket.density == pytest.approx(imp.results[-1]["density"])
    keras.utils.set_random_seed(99)
    fresh = mlp()
    loaded = kl.load_ticket(path, fresh)
    for pa, pb in zip(kl.prunable_weights(model), kl.prunable_weights(loaded)):
        assert pa.key == pb.key
        for which in ("init", "rewind"):
            np.testing.assert_array_equal(pa.state.snapshot_array(which), pb.state.snapshot_array(which))
        mask = pa.state.mask_array()
        np.testing.assert_array_equal(mask, pb.state.mask_array())
        np.testing.assert_array_equal(_np(pb.variable.value), pa.state.snapshot_array("init") * mask)
    # At θk: the pruned weights start from the rewind point, the others too.
    at_k = kl.load_ticket(path, mlp(), at="rewind")
    for pa, pb in zip(kl.prunable_weights(model), kl.prunable_weights(at_k)):
        np.testing.assert_array_equal(
            _np(pb.variable.value), pa.state.snapshot_array("rewind") * pa.state.mask_array())
    others = imp.ticket_info()["other_rewind"]
    for variable, (_, value) in zip(kl.non_pruned_weights(at_k), others):
        np.testing.assert_array_equal(_np(variable.value), value)


def test_retraining_loaded_ticket_reproduces_the_round(tmp_path):
    model, imp = _imp_run()
    path = kl.save_ticket(model, str(tmp_path / "t.npz"), imp=imp)
    keras.utils.set_random_seed(5)
    fresh = kl.load_ticket(path, mlp())
    fresh.compile(keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
    x, y = classification_data()
    xv, yv = classification_data(n=32, seed=1)
    history = fresh.fit(x, y, validation_data=(xv, yv), batch_size=16, epochs=2, verbose=0, shuffle=False)
    for key in ("loss", "val_loss", "accuracy"):
        assert history.history[key][-1] == pytest.approx(imp.results[-1][key], rel=1e-5), key


def _snapshot_weights(model):
    return [_np(v.value).copy() for v in model.weights]


def test_wrong_architecture_refused_and_model_untouched(tmp_path):
    model, imp = _imp_run()
    path = kl.save_ticket(model, str(tmp_path / "t.npz"), imp=imp)
    other = kl.wrap(mlp(hidden=(16, 9)))
    before = _snapshot_weights(other)
    with pytest.raises(kl.TicketError, match="does not fit"):
        kl.load_ticket(path, other)
    for a, b in zip(before, _snapshot_weights(other)):
        np.testing.assert_array_equal(a, b)
    wider = keras.Sequential([keras.Input((12,)), keras.layers.Dense(17, name="a"),
                              keras.layers.Dense(8, name="b"), keras.layers.Dense(3, name="c")])
    with pytest.raises(kl.TicketError, match="missing"):
        kl.load_ticket(path, wider)


def test_other_layer_names_load_by_position_with_a_warning(tmp_path):
    model, imp = _imp_run()
    path = kl.save_ticket(model, str(tmp_path / "t.npz"), imp=imp)
    renamed = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, name="a"),
                                keras.layers.Dense(8, name="b"), keras.layers.Dense(3, name="c")])
    with pytest.warns(UserWarning, match="by position"):
        kl.load_ticket(path, renamed)
    assert [p.key for p in kl.prunable_weights(renamed)] == ["a/kernel", "b/kernel", "c/kernel"]
    for pa, pb in zip(kl.prunable_weights(model), kl.prunable_weights(renamed)):
        np.testing.assert_array_equal(pa.state.mask_array(), pb.state.mask_array())


def test_exclusions_travel_with_the_ticket(tmp_path):
    model = kl.wrap(mlp(), exclude=["out"])
    rng = np.random.default_rng(0)
    kl.set_masks(model, {k: rng.random(m.shape) < 0.5 for k, m in kl.get_masks(model).items()})
    path = kl.save_ticket(model, str(tmp_path / "t.npz"))
    assert [w["pruned"] for w in kl.read_ticket(path).metadata["weights"]] == [True, True, False]
    fresh = kl.load_ticket(path, mlp())
    assert [p.key for p in kl.prunable_weights(fresh)] == ["fc0/kernel", "fc1/kernel"]
    with pytest.raises(kl.TicketError, match="no rewind point"):
        kl.load_ticket(path, mlp(), at="rewind")


def test_truncated_and_garbage_files(tmp_path):
    model, imp = _imp_run()
    path = kl.save_ticket(model, str(tmp_path / "t.npz"), imp=imp)
    data = open(path, "rb").read()
    for name, content in [("trunc.npz", data[: len(data) // 2]), ("junk.npz", b"\x00junk" * 50), ("empty.npz", b"")]:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(kl.TicketError):
            kl.load_ticket(str(bad), mlp())
    with pytest.raises(kl.TicketError, match="Cannot read"):
        kl.read_ticket(str(tmp_path / "missing.npz"))


def _rewrite(path, out, drop=(), metadata_update=None, replace=None):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k not in drop}
    if metadata_update:
        meta = json.loads(str(arrays["metadata"]))
        meta.update(metadata_update)
        arrays["metadata"] = np.array(json.dumps(meta))
    arrays.update(replace or {})
    np.savez(out, **arrays)
    return str(out)


def test_missing_keys_and_bad_metadata(tmp_path):
    model, imp = _imp_run()
    path = kl.save_ticket(model, str(tmp_path / "t.npz"), imp=imp)
    cases = [
        (dict(drop=("mask:fc0/kernel",)), "missing the array"),
        (dict(drop=("metadata",)), "metadata"),
        (dict(metadata_update={"version": 99}), "version"),
        (dict(metadata_update={"format": "other"}), "not a keras_lottery ticket"),
        (dict(replace={"init:fc1/kernel": np.zeros((3, 3), "float32")}), "shape"),
        (dict(replace={"mask:fc1/kernel": np.zeros((16, 8), "float32")}), "boolean"),
        (dict(drop=("other_init:0",)), "other_init"),
    ]
    for i, (kwargs, match) in enumerate(cases):
        bad = _rewrite(path, tmp_path / f"bad{i}.npz", **kwargs)
        with pytest.raises(kl.TicketError, match=match):
            kl.load_ticket(bad, mlp())


def test_an_edited_array_is_refused_by_name_and_the_model_left_untouched(tmp_path):
    """One mask inverted (metadata untouched; the output layer keeps 18 of 24,
    inverted 6): refused, naming the array. So is an edited θ0 (a digest per
    array), and in a ticket written before digests, a mask whose count
    differs from the metadata's."""
    model, imp = _imp_run()
    path = kl.save_ticket(model, str(tmp_path / "t.npz"), imp=imp)
    with np.load(path) as data:
        mask, init = data["mask:out/kernel"], data["init:fc0/kernel"]
    target = mlp()
    before = [_np(v).copy() for v in target.weights]
    for name, value in (("mask:out/kernel", ~mask), ("init:fc0/kernel", init + 1e-3)):
        bad = _rewrite(path, tmp_path / "bad.npz", replace={name: value})
        with pytest.raises(kl.TicketError, match=f"'{name}'.*edited or damaged"):
            kl.load_ticket(bad, target)
        assert all(np.array_equal(_np(v), b) for v, b in zip(target.weights, before))
    meta = json.loads(str(np.load(path)["metadata"]))
    meta.pop("digests")
    old = _rewrite(path, tmp_path / "old.npz", replace={"mask:out/kernel": ~mask,
                                                          "metadata": np.array(json.dumps(meta))})
    with pytest.raises(kl.TicketError, match=r"'mask:out/kernel' keeps 6 weights; the metadata says 18"):
        kl.read_ticket(old)


def test_save_requires_wrapped_model(tmp_path):
    with pytest.raises(ValueError, match="no pruned weights"):
        kl.save_ticket(mlp(), str(tmp_path / "t.npz"))


def test_ticket_is_plain_numpy_zip(tmp_path):
    model, imp = _imp_run()
    path = kl.save_ticket(model, str(tmp_path / "t.npz"), imp=imp)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert "metadata.npy" in names and "mask:fc0/kernel.npy" in names


def test_a_process_other_than_0_waits_for_this_ticket_not_a_stale_file(tmp_path, monkeypatch):
    """Several JAX processes: process 0 writes; another returns once the file
    holds the same ticket, and says so when it never comes."""
    from keras_lottery.backend import processes
    from keras_lottery.files import ticket as ticket_lib

    model = kl.wrap(mlp())
    path = str(tmp_path / "t.npz")
    kl.save_ticket(model, path)  # process 0's file
    digests = kl.read_ticket(path).metadata["digests"]
    monkeypatch.setattr(processes, "is_writer", lambda: False)
    monkeypatch.setattr(processes, "index", lambda: 1)
    assert kl.save_ticket(model, path) == path  # the same ticket: returns at once
    stale = dict(digests, **{next(iter(digests)): "0" * 64})
    with pytest.raises(kl.TicketError, match="Process 1 waited 0 s for process 0"):
        ticket_lib._wait_for_writer(path, stale, timeout=0.3)
    with pytest.raises(kl.TicketError, match="waited"):
        ticket_lib._wait_for_writer(str(tmp_path / "never.npz"), digests, timeout=0.3)
