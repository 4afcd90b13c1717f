"""The IMP callback next to Keras' own callbacks, on a second fit, with
schedules that do not fire, without validation data: it composes, or it says
what it does."""

import importlib.util
import os
import textwrap
import warnings

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mlp
import script_runner

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _weights(model):
    return {p.key: _np(p.variable.value).copy() for p in kl.prunable_weights(model)}


def _compiled(optimizer=None, **kwargs):
    model = kl.wrap(mlp())
    model.compile(optimizer or keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"], **kwargs)
    return model


def _fit(model, imp, callbacks=None, validation=True, epochs=None, **kwargs):
    """fit with `callbacks` (default: just the IMP callback)."""
    x, y = classification_data()
    xv, yv = classification_data(n=32, seed=1)
    return model.fit(
        x, y, validation_data=(xv, yv) if validation else None, batch_size=16,
        epochs=epochs or imp.total_epochs, callbacks=[imp] if callbacks is None else callbacks,
        verbose=0, **kwargs,
    )


class Probe(keras.callbacks.Callback):
    """Records the pruned weights every callback sees at each epoch end."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((logs.get("lottery_round"), _weights(self.model)))


def test_every_callback_sees_the_trained_round_at_epoch_end(tmp_path):
    model = _compiled()
    trained = {}
    imp = kl.IterativeMagnitudePruning(
        rounds=3, epochs_per_round=2, verbose=0,
        on_round_end=lambda r, m, row: trained.setdefault(r, _weights(m)))
    before, after = Probe(), Probe()
    checkpoint = str(tmp_path / "round_{epoch}.weights.h5")
    saver = keras.callbacks.ModelCheckpoint(checkpoint, save_weights_only=True)
    _fit(model, imp, [before, imp, after, saver])
    assert [r for r, _ in after.seen] == [0, 0, 1, 1, 2, 2]
    for (_, a), (_, b) in zip(before.seen, after.seen):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # The last epoch of each round: what ModelCheckpoint saved is the trained
    # round the logs name, not the rewound network of the next round.
    for round_index, epoch in ((0, 2), (1, 4)):
        copy = kl.wrap(mlp())
        copy.load_weights(checkpoint.format(epoch=epoch))
        for key, value in _weights(copy).items():
            np.testing.assert_array_equal(value, trained[round_index][key])
        assert not np.array_equal(trained[round_index]["fc0/kernel"],
                                  kl.prunable_weights(model)[0].state.snapshot_array("init"))


def test_reusing_the_callback_is_an_error_or_a_resume(tmp_path):
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0)
    _fit(model, imp)
    with pytest.raises(RuntimeError, match="already run.*new callback"):
        _fit(model, imp)
    with pytest.raises(RuntimeError, match="already run"):
        _fit(_compiled(), imp)
    assert [row["round"] for row in imp.results] == [0, 1]
    # With a checkpoint_dir, a second fit is a resume from the file.
    saved = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0,
                                         checkpoint_dir=str(tmp_path))
    _fit(model, saved)
    _fit(model, saved, initial_epoch=saved.initial_epoch)
    assert [row["round"] for row in saved.results] == [0, 1]


def test_early_stopping_in_the_list_is_reported():
    model = _compiled(keras.optimizers.SGD(0.0))  # nothing improves
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=4, verbose=0)
    stop = keras.callbacks.EarlyStopping(patience=1)
    with pytest.warns(UserWarning, match="round_callbacks"):
        history = _fit(model, imp, [imp, stop])
    assert len(history.history["loss"]) < imp.total_epochs
    assert imp.stopped_reason and "fit ended during round 0" in imp.stopped_reason
    assert not imp.finished


def test_early_stopping_per_round_is_an_imp_option():
    model = _compiled(keras.optimizers.SGD(0.0))  # every round plateaus at once
    stop = keras.callbacks.EarlyStopping(patience=1)
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=4, verbose=0,
                                       round_callbacks=[stop])
    history = _fit(model, imp, [imp])
    assert imp.finished and imp.stopped_reason is None
    assert [row["epochs"] for row in imp.results] == [2, 2, 2]
    assert [row["stopped_early"] for row in imp.results] == ["EarlyStopping"] * 3
    assert history.history["lottery_round"] == [0, 0, 1, 1, 2, 2]
    assert [row["density"] < 1 for row in imp.results] == [False, True, True]


def test_reduce_lr_on_plateau_cut_does_not_carry_over_rounds():
    model = _compiled(keras.optimizers.SGD(0.1))
    rates = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: rates.append(float(_np(model.optimizer.learning_rate))))
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                               min_delta=10.0)  # cuts every epoch
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=3, verbose=0)
    _fit(model, imp, [imp, recorder, reduce])
    # Each round starts at the learning rate of θ0, whatever was cut before.
    assert rates[0] == rates[3] == rates[6] == pytest.approx(0.1)
    assert rates[2] < 0.1 and rates[5] < 0.1


def test_learning_rate_scheduler_replays_per_round():
    model = _compiled(keras.optimizers.SGD(1.0))
    rates = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: rates.append(float(_np(model.optimizer.learning_rate))))
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch: 0.1 * 0.5**epoch)
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=3, verbose=0,
                                       round_callbacks=[schedule])
    _fit(model, imp, [imp, recorder])
    assert rates == pytest.approx([0.1, 0.05, 0.025] * 2)


def test_terminate_on_nan_and_the_imp_stop_agree():
    model = _compiled(keras.optimizers.SGD(1e12))
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, verbose=0)
    x, y = classification_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x * 1e6, y, epochs=imp.total_epochs, verbose=0,
                  callbacks=[keras.callbacks.TerminateOnNaN(), imp])
    assert "loss is" in imp.stopped_reason and imp.results == []
    assert not any("another callback" in str(w.message) for w in caught)


def test_backup_and_restore_mid_round_is_refused_clearly(tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:  # the middle of round 1
                raise RuntimeError("crash")

    def run(extra):
        keras.utils.set_random_seed(0)
        model = _compiled()
        imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, verbose=0,
                                           checkpoint_dir=str(tmp_path / "imp"))
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        _fit(model, imp, [imp, backup, *extra], initial_epoch=imp.initial_epoch)
        return imp

    with pytest.raises(RuntimeError, match="crash"):
        run([Crash()])
    with pytest.raises(ValueError, match="BackupAndRestore.*round boundaries"):
        run([])


def test_csv_logger_and_tensorboard_record_the_rounds(tmp_path):
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=2, verbose=0)
    csv_path = tmp_path / "log.csv"
    # Placed after IMP: the callback adds lottery_round / lottery_density to
    # the epoch logs, and a CSVLogger fixes its columns at the first epoch.
    _fit(model, imp, [imp, keras.callbacks.CSVLogger(str(csv_path)),
                      keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
    lines = csv_path.read_text().splitlines()
    header = lines[0].split(",")
    rounds = [float(line.split(",")[header.index("lottery_round")]) for line in lines[1:]]
    assert rounds == [0, 0, 1, 1]
    if keras.backend.backend() == "tensorflow":
        events = [os.path.join(root, f) for root, _, files in os.walk(tmp_path / "tb")
                  for f in files if "tfevents" in f]
        contents = []
        for event in events:
            with open(event, "rb") as f:
                contents.append(f.read())
        assert any(b"lottery_density" in c for c in contents)


class EveryTen:
    """A tfmot-like schedule firing every 10 steps from 0 (frequency 10)."""

    def __call__(self, step):
        return int(step) % 10 == 0, min(0.8, 0.002 * int(step))

    def get_config(self):
        return {"class_name": "EveryTen", "config": {}}


def test_a_schedule_fires_at_its_last_firing_step_in_each_round():
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=4, epochs_per_round=1, schedule=EveryTen(), verbose=0)
    _fit(model, imp)  # 6 steps per round: round ends at 6, 12, 18
    steps = [row["steps"] for row in imp.results]
    assert steps == [6, 6, 6, 6]
    kept = [int(m["fc0/kernel"].sum()) for m in imp.mask_history]
    # (0, 6]: no firing step, masks kept; (6, 12]: 10 -> 2%; (12, 18]: none.
    assert kept == [192, 192, round(192 * 0.98), round(192 * 0.98)]


def test_a_round_that_prunes_nothing_warns_once():
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=4, epochs_per_round=1, schedule=EveryTen(), verbose=0)
    with pytest.warns(UserWarning, match="prunes nothing") as caught:
        _fit(model, imp)
    assert sum("prunes nothing" in str(w.message) for w in caught) == 1


def test_starting_on_an_already_pruned_model_warns_and_continues():
    model = _compiled()
    kl.set_masks(model, {k: np.arange(m.size).reshape(m.shape) % 2 == 0
                         for k, m in kl.get_masks(model).items()})
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rate=0.2, verbose=0)
    with pytest.warns(UserWarning, match="already pruned"):
        _fit(model, imp)
    assert imp.results[0]["density"] == pytest.approx(0.5, abs=0.01)


def test_a_plain_model_with_zeros_and_dense_masks_warns():
    model = _compiled()
    for p in kl.prunable_weights(model):
        value = _np(p.variable.value)
        p.variable.assign(np.where(np.arange(value.size).reshape(value.shape) % 2, value, 0))
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0)
    with pytest.warns(UserWarning, match="load_ticket"):
        _fit(model, imp)


def test_mode_max_and_named_fields():
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=3, monitor="val_accuracy",
                                       verbose=0)
    history = _fit(model, imp)
    accuracy = history.history["val_accuracy"]
    assert imp.results[0]["best_val_accuracy"] == pytest.approx(max(accuracy[:3]))
    assert "best_val_loss" not in imp.results[0]
    minimum = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=3, monitor="val_accuracy",
                                           mode="min", verbose=0)
    history = _fit(_compiled(), minimum)
    assert minimum.results[0]["best_val_accuracy"] == pytest.approx(
        min(history.history["val_accuracy"][:3]))


def test_no_validation_data_warns_once():
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=2, verbose=0)
    with pytest.warns(UserWarning, match="validation_data") as caught:
        _fit(model, imp, validation=False)
    assert sum("validation_data" in str(w.message) for w in caught) == 1
    assert imp.results[0]["best_val_loss"] is None


def test_validation_freq_uses_the_validated_epochs_of_each_round(recwarn):
    """`validation_freq=2`: each round's best comes from its validated epochs,
    with no warning; a round with no validated epoch gets None and a warning
    that names the round."""
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=3, verbose=0)
    history = _fit(model, imp, validation_freq=2)
    assert not [w for w in recwarn if "monitor" in str(w.message)]
    # Keras validates epochs 1, 3 and 5: round 0 has epoch 1, round 1 epochs 3 and 5.
    losses = history.history["val_loss"]
    assert imp.results[0]["best_val_loss"] == pytest.approx(losses[0])
    assert imp.results[0]["best_val_loss_step"] == imp.results[0]["steps"] * 2 // 3
    assert imp.results[1]["best_val_loss"] == pytest.approx(min(losses[1:]))
    sparse = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0)
    with pytest.warns(UserWarning, match="no epoch of round 0"):
        history = _fit(_compiled(), sparse, validation_freq=2)
    assert sparse.results[0]["best_val_loss"] is None
    assert sparse.results[1]["best_val_loss"] == pytest.approx(history.history["val_loss"][0])


def test_the_summary_line_does_not_cut_the_progress_bar(capfd):
    model = _compiled()
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=1)
    x, y = classification_data()
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[imp], verbose=1)
    out = capfd.readouterr().out
    lines = [line for line in out.replace("\r", "\n").splitlines() if "IMP round" in line]
    assert [line.split(" | ")[0] for line in lines] == ["IMP round 0/1", "IMP round 1/1"]


@pytest.mark.backend_independent
def test_tfmot_polynomial_decay_default_frequency_in_subprocess(tmp_path):
    if importlib.util.find_spec("tensorflow_model_optimization") is None:
        pytest.skip("tensorflow-model-optimization is not installed")
    script = textwrap.dedent(
        """
        import json, os, warnings
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import numpy as np, keras
        import keras_lottery as kl
        import tensorflow_model_optimization as tfmot
        schedule = tfmot.sparsity.keras.PolynomialDecay(0.3, 0.9, begin_step=0, end_step=300)
        keras.utils.set_random_seed(0)
        model = kl.wrap(keras.Sequential([keras.Input((12,)),
            keras.layers.Dense(16, name="fc0"), keras.layers.Dense(3, name="out")]))
        model.compile("adam", "mse")
        imp = kl.IterativeMagnitudePruning(rounds=5, epochs_per_round=1, schedule=schedule,
                                           verbose=0)
        x = np.random.normal(size=(280, 12)).astype("float32")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, np.zeros((280, 3)), batch_size=4, epochs=5, callbacks=[imp], verbose=0)
        print(json.dumps({
            "kept": [int(m["fc0/kernel"].sum()) for m in imp.mask_history],
            "expected": [192, 192, round(192 * (1 - float(schedule(np.int64(100))[1]))),
                         round(192 * (1 - float(schedule(np.int64(200))[1]))),
                         round(192 * (1 - float(schedule(np.int64(200))[1])))],
            "warnings": sum("prunes nothing" in str(w.message) for w in caught)}))
        """
    )
    result = script_runner.run_code(script, tmp_path, timeout=300)  # a process of its own
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    data = json.loads(result.stdout.strip().splitlines()[-1])
    # Rounds end at steps 70, 140, 210, 280; the schedule fires every 100.
    assert data["kept"] == data["expected"] and data["kept"][2] < 192
    assert data["warnings"] == 1
