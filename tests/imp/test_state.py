"""The IMP run's state and its checkpoint form."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.files import checkpoint as checkpoint_lib
from keras_lottery.imp import state as imp_state
from keras_lottery.imp.settings import IMPSettings
from keras_lottery.core import rewinding
from conftest import mlp


def test_to_arrays_from_arrays_mirror_each_other():
    model = kl.wrap(mlp())
    model.compile("adam", "mse")
    state = imp_state.IMPState(round=2, round_start_epoch=6, round_start_step=40, total_steps=40,
                               pending_advance=True, results=[{"round": 0}, {"round": 1}])
    rng = np.random.default_rng(0)
    for _ in range(3):
        state.record_masks({k: rng.random(m.shape) < 0.5 for k, m in kl.get_masks(model).items()})
    state.init_point = rewinding.take(model, rewinding.INIT, 0, fresh_optimizer=True)
    state.rewind_point = rewinding.take(model, rewinding.REWIND, 7)
    arrays, metadata = state.to_arrays()
    back = imp_state.IMPState.from_arrays(arrays, metadata)
    assert (back.round, back.round_start_epoch, back.total_steps, back.pending_advance) == (2, 6, 40, True)
    assert back.results == state.results and back.rewind_point.step == 7
    for a, b in zip(state.mask_history(), back.mask_history()):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_save_and_load_refuse_other_settings(tmp_path):
    model = kl.wrap(mlp())
    model.compile("adam", "mse")
    path = str(tmp_path / "c.npz")
    imp_state.save(path, model, imp_state.IMPState(round=1), {"rounds": 3, "seed": 1},
                   also_to=str(tmp_path / "copy.npz"))
    assert imp_state.load(str(tmp_path / "copy.npz"), model, {"rounds": 3, "seed": 1}).round == 1
    with pytest.raises(checkpoint_lib.CheckpointError, match="seed: on disk 1, now 2"):
        imp_state.load(path, model, {"rounds": 3, "seed": 2})
    assert imp_state.load(path, model, {"rounds": 3, "seed": 2}, ignore=("seed",)).round == 1
    other = kl.wrap(mlp(hidden=(16, 9)))
    other.compile("adam", "mse")
    with pytest.raises(checkpoint_lib.CheckpointError, match="same model"):
        imp_state.load(path, other, {"rounds": 3, "seed": 1})


def test_a_checkpoint_from_before_the_one_vocabulary_resumes(tmp_path):
    """Checkpoints written before the rename recorded scope / granularity /
    pattern / norm; a run with the same settings in the new names resumes
    from them, and one with other settings is still refused."""
    model = kl.wrap(mlp())
    model.compile("adam", "mse")
    settings = IMPSettings(rounds=3, epochs_per_round=1, structure="neuron", seed=1)
    now = settings.config(["fc0/kernel"])
    old = {k: v for k, v in now.items() if k not in ("distribution", "structure", "scorer",
                                                     "exclude")}
    old.update(scope="layerwise", granularity="neuron", pattern=None, norm="l1")
    path = str(tmp_path / "c.npz")
    imp_state.save(path, model, imp_state.IMPState(round=1), old)
    assert imp_state.load(path, model, now).round == 1
    changed = dict(now, structure="2:4")
    with pytest.raises(checkpoint_lib.CheckpointError, match="structure"):
        imp_state.load(path, model, changed)
