"""Round-level checkpoints: resume after an interruption (exception or
SIGKILL) equals an uninterrupted run; bad checkpoints and changed settings are
refused; a non-finite loss stops cleanly."""

import json
import os
import signal
import textwrap

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.files import checkpoint as checkpoint_lib
from conftest import classification_data
from conftest import mlp
import script_runner

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated interruption")


def _run(checkpoint_dir, callbacks=(), initial_epoch=None, snapshots_on_host=False,
         **imp_kwargs):
    keras.utils.set_random_seed(0)
    model = kl.wrap(mlp(), snapshots_on_host=snapshots_on_host)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), LOSS, metrics=["accuracy"])
    args = dict(rounds=4, epochs_per_round=2, rate=0.4, seed=7, verbose=0,
                checkpoint_dir=checkpoint_dir)
    args.update(imp_kwargs)
    imp = kl.IterativeMagnitudePruning(**args)
    x, y = classification_data()
    xv, yv = classification_data(n=32, seed=1)
    start = imp.initial_epoch if initial_epoch is None else initial_epoch
    model.fit(x, y, validation_data=(xv, yv), batch_size=16, epochs=imp.total_epochs,
              initial_epoch=start, callbacks=[imp, *callbacks], verbose=0, shuffle=False)
    return model, imp


def _assert_same_run(a_model, a_imp, b_model, b_imp):
    assert len(a_imp.mask_history) == len(b_imp.mask_history) == a_imp.rounds
    for ma, mb in zip(a_imp.mask_history, b_imp.mask_history):
        for key in ma:
            np.testing.assert_array_equal(ma[key], mb[key])
    for va, vb in zip(a_model.variables, b_model.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(va.value),
                                      keras.ops.convert_to_numpy(vb.value))
    assert [r["val_loss"] for r in a_imp.results] == [r["val_loss"] for r in b_imp.results]
    assert [r["density"] for r in a_imp.results] == [r["density"] for r in b_imp.results]
    for pa, pb in zip(kl.prunable_weights(a_model), kl.prunable_weights(b_model)):
        for which in ("init", "rewind"):
            np.testing.assert_array_equal(pa.state.snapshot_array(which), pb.state.snapshot_array(which))


@pytest.mark.parametrize(
    "imp_kwargs",
    [{}, {"rewind_to": 3}, {"control": "reinit"}, {"control": "random_prune", "rewind_to": "lr"},
     {"rewind_to": 3, "snapshots_on_host": True}],
    ids=["init", "rewind_k", "reinit", "random_prune_lr", "rewind_k_host_snapshots"],
)
def test_resume_equals_uninterrupted(tmp_path, imp_kwargs):
    reference = _run(str(tmp_path / "reference"), **imp_kwargs)
    directory = str(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        _run(directory, callbacks=[Interrupt(at_epoch=4)], **imp_kwargs)  # mid round 2
    _, metadata = checkpoint_lib.read(os.path.join(directory, "imp_checkpoint.npz"))
    # The last checkpoint: the end of round 1, the prune into round 2 pending.
    assert metadata["state"]["round"] == 1 and metadata["state"]["pending_advance"]
    assert not metadata["state"]["finished"]
    resumed = _run(directory, **imp_kwargs)
    assert resumed[1].initial_epoch == resumed[1].total_epochs  # finished now
    _assert_same_run(*reference, *resumed)


def test_finished_run_reruns_nothing(tmp_path):
    model, imp = _run(str(tmp_path))
    again_model, again = _run(str(tmp_path))
    assert again.initial_epoch == again.total_epochs
    assert [r["val_loss"] for r in again.results] == [r["val_loss"] for r in imp.results]


@pytest.mark.backend_independent
def test_sigkill_mid_round_then_resume(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, sys, json
        sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
        import keras, numpy as np
        import keras_lottery as kl
        from conftest import classification_data, mlp
        kill_at = int(sys.argv[2])
        class Kill(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
        keras.utils.set_random_seed(0)
        model = kl.wrap(mlp())
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        imp = kl.IterativeMagnitudePruning(rounds=4, epochs_per_round=2, rate=0.4,
                                           rewind_to=2, seed=3, verbose=0,
                                           checkpoint_dir=sys.argv[1])
        x, y = classification_data()
        model.fit(x, y, batch_size=16, epochs=imp.total_epochs, initial_epoch=imp.initial_epoch,
                  callbacks=[imp, Kill()], verbose=0, shuffle=False)
        masks = imp.mask_history[-1]
        print(json.dumps({{"losses": [r["loss"] for r in imp.results],
                          "kept": {{k: int(v.sum()) for k, v in masks.items()}},
                          "fc0": keras.ops.convert_to_numpy(model.get_layer("fc0").kernel).tolist()}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": keras.backend.backend()}

    job = tmp_path / "job.py"
    job.write_text(script)

    def run(directory, kill_at):  # a process of its own (forked on TensorFlow, see script_runner)
        return script_runner.run_script(job, [directory, str(kill_at)], env=env, cwd=ROOT,
                                        timeout=600)

    reference = run(str(tmp_path / "ref"), -1)
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = run(str(tmp_path / "run"), 5)  # second epoch of round 2
    assert killed.returncode == -signal.SIGKILL
    leftovers = [f for f in os.listdir(tmp_path / "run") if f != "imp_checkpoint.npz"]
    assert leftovers == []
    resumed = run(str(tmp_path / "run"), -1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads(reference.stdout.strip().splitlines()[-1])
    b = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert a == b


def test_changed_settings_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(str(tmp_path), callbacks=[Interrupt(at_epoch=2)])
    with pytest.raises(checkpoint_lib.CheckpointError, match="rate|schedule"):
        _run(str(tmp_path), rate=0.3)
    with pytest.raises(checkpoint_lib.CheckpointError, match="seed"):
        _run(str(tmp_path), seed=8)


def test_wrong_initial_epoch_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(str(tmp_path), callbacks=[Interrupt(at_epoch=2)])
    with pytest.raises(ValueError, match="initial_epoch"):
        _run(str(tmp_path), initial_epoch=0)


@pytest.mark.parametrize("damage", ["truncate", "junk", "foreign"])
def test_damaged_checkpoint_refused(tmp_path, damage):
    with pytest.raises(KeyboardInterrupt):
        _run(str(tmp_path), callbacks=[Interrupt(at_epoch=2)])
    path = tmp_path / "imp_checkpoint.npz"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "junk":
        path.write_bytes(b"\x00" * 100)
    else:
        np.savez(path, a=np.zeros(3))
    with pytest.raises(checkpoint_lib.CheckpointError):
        _run(str(tmp_path))


def test_non_finite_loss_stops_cleanly(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = kl.wrap(mlp())
    model.compile(keras.optimizers.SGD(1e12), LOSS)
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, verbose=1,
                                       checkpoint_dir=str(tmp_path))
    x, y = classification_data()
    history = model.fit(x * 1e6, y, epochs=imp.total_epochs, callbacks=[imp], verbose=0)
    assert imp.stopped_reason and "loss is" in imp.stopped_reason
    assert len(history.history["loss"]) < imp.total_epochs
    assert "IMP stopped" in capsys.readouterr().out
    assert imp.results == [] and len(imp.mask_history) == 1
    assert all(m.all() for m in imp.mask_history[0].values())  # nothing pruned
