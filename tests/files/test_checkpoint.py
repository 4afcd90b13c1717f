"""Checkpoint files: atomic, validated, model variables and host snapshots."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.files import checkpoint
from conftest import mlp


def test_write_read_and_foreign_files(tmp_path):
    path = str(tmp_path / "c.npz")
    checkpoint.write(path, {"a": np.arange(3)}, {"round": np.int64(2)})
    arrays, metadata = checkpoint.read(path)
    assert arrays["a"].tolist() == [0, 1, 2] and metadata["round"] == 2
    np.savez(str(tmp_path / "other.npz"), a=np.zeros(2))
    with pytest.raises(checkpoint.CheckpointError, match="not a keras_lottery"):
        checkpoint.read(str(tmp_path / "other.npz"))


def test_an_edited_array_is_refused_by_name(tmp_path):
    path = str(tmp_path / "c.npz")
    checkpoint.write(path, {"a": np.arange(3), "b": np.ones(2)}, {"round": 1})
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["b"] = np.zeros(2)
    np.savez(path, **arrays)
    with pytest.raises(checkpoint.CheckpointError, match=r"\['b'\] differ.*edited or damaged"):
        checkpoint.read(path)


def test_model_arrays_round_trip_with_host_snapshots(tmp_path):
    model = kl.wrap(mlp(), snapshots_on_host=True)
    model.compile("adam", "mse")
    arrays, metadata = checkpoint.model_arrays(model)
    assert metadata["host_snapshots"] == 6
    kl.prunable_weights(model)[0].snapshots["init"].assign(np.zeros((12, 16)))
    model.get_layer("fc1").bias.assign(np.ones(8))
    checkpoint.restore_model(model, arrays, metadata, "test")
    assert kl.prunable_weights(model)[0].state.snapshot_array("init").any()
    assert not keras.ops.convert_to_numpy(model.get_layer("fc1").bias).any()
    other = kl.wrap(mlp())  # device snapshots: other variables
    other.compile("adam", "mse")
    with pytest.raises(checkpoint.CheckpointError, match="same model"):
        checkpoint.restore_model(other, arrays, metadata, "test")
