"""IterativeMagnitudePruning: rounds, counts, rewinding, optimizer reset,
controls, schedules, logs and bad input — all inside one `model.fit`."""

import csv
import importlib.util
import textwrap

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.backend import keras_internals
from keras_lottery.backend import optimizer_state
from conftest import classification_data
from conftest import mlp
import script_runner

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
SIZES = {"fc0/kernel": 12 * 16, "fc1/kernel": 16 * 8, "out/kernel": 8 * 3}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _fit(imp, model=None, optimizer=None, batch_size=16, callbacks=(), **compile_kwargs):
    model = model if model is not None else kl.wrap(mlp())
    model.compile(optimizer or keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"], **compile_kwargs)
    x, y = classification_data()
    xv, yv = classification_data(n=32, seed=1)
    history = model.fit(
        x, y, validation_data=(xv, yv), batch_size=batch_size,
        epochs=imp.total_epochs, callbacks=[imp, *callbacks], verbose=0,
    )
    return model, history


class RoundProbe(keras.callbacks.Callback):
    """Placed after the IMP callback: records the state right after each
    rewind (the IMP callback prunes and rewinds at the start of a round's
    first epoch)."""

    def __init__(self, imp):
        super().__init__()
        self.imp = imp
        self.after_rewind = []

    def on_epoch_begin(self, epoch, logs=None):
        if self.imp.round == len(self.after_rewind):
            return
        state = {"weights": {}, "masks": kl.get_masks(self.model), "init": {}, "rewind": {}}
        for p in kl.prunable_weights(self.model):
            state["weights"][p.key] = _np(p.variable.value)
            state["init"][p.key] = _np(p.snapshots["init"].value)
            state["rewind"][p.key] = _np(p.snapshots["rewind"].value)
        state["biases"] = {
            p.owner.name: _np(p.owner.bias.value) for p in kl.prunable_weights(self.model)
        }
        opt = self.model.optimizer
        state["iterations"] = optimizer_state.iterations(opt)
        state["slots"] = [_np(v.value) for v in keras_internals.slot_variables(opt)]
        state["learning_rate"] = float(_np(opt.learning_rate))
        self.after_rewind.append(state)


def test_layerwise_exact_counts_every_round():
    imp = kl.IterativeMagnitudePruning(rounds=5, epochs_per_round=1, rate=0.3, verbose=0)
    _fit(imp)
    history = imp.mask_history
    assert len(history) == len(imp.results) == 5
    for r, masks in enumerate(history):
        for key, n in SIZES.items():
            rate = 0.15 if key.startswith("out") else 0.3
            assert masks[key].sum() == round(n * (1 - rate) ** r), (r, key)
        if r:
            for key in SIZES:
                assert not (masks[key] & ~history[r - 1][key]).any(), "regrowth"
    assert [row["round"] for row in imp.results] == list(range(5))
    assert imp.results[3]["kept"] == sum(int(m.sum()) for m in history[3].values())


def test_global_exact_total_and_excluded_layer():
    imp = kl.IterativeMagnitudePruning(
        rounds=4, epochs_per_round=1, rate={"default": 0.2, "output": 0.0},
        distribution="global", verbose=0,
    )
    _fit(imp)
    pooled = SIZES["fc0/kernel"] + SIZES["fc1/kernel"]
    for r, masks in enumerate(imp.mask_history):
        assert masks["fc0/kernel"].sum() + masks["fc1/kernel"].sum() == round(pooled * 0.8**r)
        assert masks["out/kernel"].all()
    # One threshold: layers end up at different densities.
    density = imp.results[-1]["layer_density"]
    assert density["fc0"] != pytest.approx(density["fc1"])


def test_rewind_to_init_restores_theta0_and_resets_optimizer():
    model = kl.wrap(mlp())
    theta0 = {k: v.copy() for k, v in _snapshot(model, "init").items()}
    biases0 = {p.owner.name: _np(p.owner.bias.value) for p in kl.prunable_weights(model)}
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, verbose=0)
    probe = RoundProbe(imp)
    _fit(imp, model=model, callbacks=[probe],
         optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    assert len(probe.after_rewind) == 2
    for state in probe.after_rewind:
        for key, mask in state["masks"].items():
            np.testing.assert_array_equal(state["weights"][key], theta0[key] * mask)
            np.testing.assert_array_equal(state["init"][key], theta0[key])
        for name, bias in state["biases"].items():
            np.testing.assert_array_equal(bias, biases0[name])
        assert state["iterations"] == 0
        assert state["slots"] and all(not s.any() for s in state["slots"])
        assert state["learning_rate"] == pytest.approx(0.05)
    # Training went on after each reset: the last round learned something.
    assert imp.results[-1]["loss"] < imp.results[-1]["at_best"]["loss"] * 10


def test_rewind_to_iteration_k():
    model = kl.wrap(mlp())
    recorded = {}

    class AtStepK(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not recorded and batch + 1 == 4:
                recorded.update(_weights(self.model))
                recorded["iterations"] = optimizer_state.iterations(self.model.optimizer)
                recorded["slots"] = [_np(v.value) for v in keras_internals.slot_variables(self.model.optimizer)]

    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, rewind_to=4, verbose=0)
    probe = RoundProbe(imp)
    _fit(imp, model=model, callbacks=[AtStepK(), probe], optimizer=keras.optimizers.Adam(0.01))
    assert imp.rewind_step == 4 and recorded["iterations"] == 4
    for state in probe.after_rewind:
        for key, mask in state["masks"].items():
            np.testing.assert_array_equal(state["rewind"][key], recorded[key])
            np.testing.assert_array_equal(state["weights"][key], recorded[key] * mask)
        assert state["iterations"] == 4
        # Slots are back at their step-k values, those of pruned weights zeroed.
        for saved, now in zip(recorded["slots"], state["slots"]):
            kept = now != 0
            np.testing.assert_array_equal(now[kept], saved[kept])
            masks_of_shape = [m for m in state["masks"].values() if m.shape == saved.shape]
            if masks_of_shape:
                assert any(np.array_equal(now, saved * m) for m in masks_of_shape)
            else:
                np.testing.assert_array_equal(now, saved)


def test_rewind_beyond_round_zero_rejected():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rewind_to=10_000, verbose=0)
    with pytest.raises(ValueError, match="beyond round 0"):
        _fit(imp)


def test_learning_rate_rewinding_keeps_trained_weights():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rewind_to="lr", verbose=0)
    trained = {}

    class BeforeImp(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:  # end of round 0; the IMP callback prunes at the next epoch start
                trained.update(_weights(self.model))

    probe = RoundProbe(imp)
    model = kl.wrap(mlp())
    theta0 = _snapshot(model, "init")
    model.compile(keras.optimizers.Adam(0.01), LOSS)
    x, y = classification_data()
    model.fit(x, y, epochs=2, callbacks=[BeforeImp(), imp, probe], verbose=0)
    state = probe.after_rewind[0]
    assert state["iterations"] == 0
    assert all(not s.any() for s in state["slots"])
    for key, mask in state["masks"].items():
        assert mask.sum() < mask.size
        np.testing.assert_array_equal(state["weights"][key], trained[key] * mask)
        assert not np.allclose(state["weights"][key][mask], theta0[key][mask])


def test_finetune_keeps_optimizer_counter():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rewind_to="finetune", verbose=0)
    probe = RoundProbe(imp)
    _fit(imp, callbacks=[probe])
    assert probe.after_rewind[0]["iterations"] == 6  # 96 examples / 16


def test_one_trace_across_rounds():
    if keras.backend.backend() == "torch":
        pytest.skip("the torch backend runs train_step eagerly: nothing is traced")
    model = kl.wrap(mlp())
    traces = []
    original = model.train_step

    def counting_train_step(*args):
        traces.append(1)  # runs once per trace of the compiled step
        return original(*args)

    model.train_step = counting_train_step
    after_round0 = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                after_round0.append(len(traces))
                after_round0.append(self.model.train_function)

    imp = kl.IterativeMagnitudePruning(rounds=4, epochs_per_round=1, verbose=0)
    _fit(imp, model=model, callbacks=[Count()])
    assert after_round0[0] >= 1
    assert len(traces) == after_round0[0], "train step retraced after a rewind"
    assert model.train_function is after_round0[1]


def test_logs_reach_history_and_csv_logger(tmp_path):
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, verbose=0)
    path = tmp_path / "log.csv"
    _, history = _fit(imp, callbacks=[keras.callbacks.CSVLogger(str(path))])
    assert history.history["lottery_round"] == [0, 0, 1, 1, 2, 2]
    densities = history.history["lottery_density"]
    assert densities[0] == 1.0 and densities[2] < 1.0 and densities[4] < densities[2]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["lottery_round"])) for r in rows] == [0, 0, 1, 1, 2, 2]


def test_results_rows_have_required_fields():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=3, verbose=0)
    _fit(imp)
    for row in imp.results:
        for key in ("round", "density", "layer_density", "best_val_loss",
                    "best_val_loss_step", "loss", "accuracy", "val_loss", "val_accuracy"):
            assert key in row, key
        assert row["best_val_loss_step"] in (6, 12, 18)
        assert row["best_val_loss"] <= row["val_loss"]
        assert set(row["layer_density"]) == {"fc0", "fc1", "out"}
        assert row["monitor"] == "val_loss" and row["epochs"] == 3


def test_verbose_prints_one_line_per_round(capsys):
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, verbose=1)
    _fit(imp)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("IMP round")]
    assert len(lines) == 3 and "100.00% of weights" in lines[0]
    assert [l.split(" | ")[0] for l in lines] == ["IMP round 0/2", "IMP round 1/2", "IMP round 2/2"]


def test_one_shot_prunes_to_final_target_once():
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, rate=0.5, one_shot=True, verbose=0)
    _fit(imp)
    history = imp.mask_history
    assert history[1]["fc0/kernel"].sum() == round(192 * 0.25)
    for key in SIZES:
        np.testing.assert_array_equal(history[1][key], history[2][key])


def test_polynomial_schedule_drives_densities():
    schedule = kl.schedules.Polynomial(0.2, 0.8, begin_round=1, end_round=3, power=1)
    imp = kl.IterativeMagnitudePruning(rounds=4, epochs_per_round=1, schedule=schedule, verbose=0)
    _fit(imp)
    for r in range(1, 4):
        target = 1 - schedule.target(r, 0, 0)
        assert imp.mask_history[r]["fc0/kernel"].sum() == round(192 * target)


def test_control_reinit_same_masks_fresh_weights():
    keras.utils.set_random_seed(7)
    ticket_imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, verbose=0)
    _fit(ticket_imp)
    keras.utils.set_random_seed(7)
    model = kl.wrap(mlp())
    theta0 = _snapshot(model, "init")
    control = kl.IterativeMagnitudePruning(
        rounds=3, epochs_per_round=1, control="reinit",
        reference_masks=ticket_imp.mask_history, seed=3, verbose=0,
    )
    probe = RoundProbe(control)
    _fit(control, model=model, callbacks=[probe])
    for r in (1, 2):
        for key in SIZES:
            np.testing.assert_array_equal(control.mask_history[r][key], ticket_imp.mask_history[r][key])
        state = probe.after_rewind[r - 1]
        for key, mask in state["masks"].items():
            w = state["weights"][key]
            assert np.all(w[~mask] == 0)
            assert not np.allclose(w[mask], theta0[key][mask]), "not re-initialised"
            # Same distribution: Glorot uniform bound of the layer.
            fan_in, fan_out = mask.shape
            assert np.abs(w).max() <= np.sqrt(6 / (fan_in + fan_out)) + 1e-6
    first = probe.after_rewind[0]["weights"]["fc0/kernel"]
    second = probe.after_rewind[1]["weights"]["fc0/kernel"]
    both = probe.after_rewind[1]["masks"]["fc0/kernel"]
    assert not np.allclose(first[both], second[both]), "same seed every round"


def test_control_random_prune_same_counts_theta0():
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, verbose=0)
    _fit(imp)
    keras.utils.set_random_seed(1234)
    model = kl.wrap(mlp())
    theta0 = _snapshot(model, "init")
    control = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, control="random_prune", seed=5, verbose=0)
    probe = RoundProbe(control)
    _fit(control, model=model, callbacks=[probe])
    for r in (1, 2):
        for key in SIZES:
            assert control.mask_history[r][key].sum() == imp.mask_history[r][key].sum()
        state = probe.after_rewind[r - 1]
        for key, mask in state["masks"].items():
            np.testing.assert_array_equal(state["weights"][key], theta0[key] * mask)
    # Random masks are not the magnitude masks of the trained weights.
    assert not np.array_equal(control.mask_history[2]["fc0/kernel"], imp.mask_history[2]["fc0/kernel"])


def test_same_seed_same_masks_and_metrics():
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(42)
        imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, control="random_prune", seed=1, verbose=0)
        _fit(imp)
        runs.append(imp)
    for a, b in zip(runs[0].mask_history, runs[1].mask_history):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert [r["val_loss"] for r in runs[0].results] == [r["val_loss"] for r in runs[1].results]


@pytest.mark.backend_independent
def test_tfmot_polynomial_decay_in_subprocess(tmp_path):
    if importlib.util.find_spec("tensorflow_model_optimization") is None:
        pytest.skip("tensorflow-model-optimization is not installed")
    script = textwrap.dedent(
        """
        import os, sys, json
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import numpy as np, keras
        import keras_lottery as kl
        import tensorflow_model_optimization as tfmot
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.3, final_sparsity=0.9, begin_step=10, end_step=40,
            frequency=10)
        keras.utils.set_random_seed(0)
        model = kl.wrap(keras.Sequential([keras.Input((12,)),
            keras.layers.Dense(16, name="fc0"), keras.layers.Dense(3, name="out")]))
        model.compile("adam", "mse")
        imp = kl.IterativeMagnitudePruning(rounds=5, epochs_per_round=1,
                                           schedule=schedule, verbose=0)
        x = np.random.normal(size=(40, 12)).astype("float32")
        model.fit(x, np.zeros((40, 3)), batch_size=4, epochs=5, callbacks=[imp], verbose=0)
        out = []
        for r, masks in enumerate(imp.mask_history):
            out.append(int(masks["fc0/kernel"].sum()))
        expected = [192]
        for step in (10, 20, 30, 40):
            should, sparsity = schedule(np.int64(step))
            expected.append(round(192 * (1 - float(sparsity))) if bool(should) else expected[-1])
        print(json.dumps({"got": out, "expected": expected}))
        """
    )
    # A process of its own (forked on TensorFlow, see script_runner): importing
    # tfmot switches tf.keras to Keras 2 for the whole process.
    result = script_runner.run_code(script, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["got"] == data["expected"]
    assert data["got"][-1] == round(192 * 0.1)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rate": 1.0}, ValueError, "rate"),
        ({"rate": -0.2}, ValueError, "rate"),
        ({"rate": {"default": 0.2, "out": 1.2}}, ValueError, "rate"),
        ({"schedule": 0.3}, TypeError, "schedule"),
        ({"schedule": kl.schedules.Constant(0.5), "rate": 0.2}, ValueError, "either"),
        ({"distribution": "per_layer"}, ValueError, "distribution"),
        ({"scope": "global"}, TypeError, "renamed: use distribution="),
        ({"granularity": "neuron"}, TypeError, "renamed: use structure="),
        ({"pattern": "2:4"}, TypeError, "renamed: use structure="),
        ({"norm": "l2"}, TypeError, "renamed: use structure="),
        ({"scorer": "snip"}, ValueError, "needs data"),
        ({"scorer": "no_such"}, ValueError, "scorer must be one of"),
        ({"exclude_layers": ["fc"]}, TypeError, "unexpected keyword argument 'exclude_layers'"),
        ({"rewind_to": "start"}, ValueError, "rewind_to"),
        ({"rewind_to": -3}, ValueError, "rewind_to"),
        ({"control": "shuffle"}, ValueError, "control"),
        ({"rounds": 0}, ValueError, "rounds"),
        ({"epochs_per_round": 1.5}, ValueError, "epochs_per_round"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"rounds": 2, "epochs_per_round": 1, **kwargs}
    with pytest.raises(error, match=match):
        kl.IterativeMagnitudePruning(**args)


def test_sparsity_out_of_range_in_schedules():
    with pytest.raises(ValueError, match="sparsity"):
        kl.schedules.Constant(1.0)


def test_rate_for_unknown_layer():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rate={"default": 0.2, "fc9": 0.1}, verbose=0)
    with pytest.raises(ValueError, match="fc9"):
        _fit(imp)


def test_model_without_wrappers():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0)
    with pytest.raises(ValueError, match="keras_lottery.wrap"):
        _fit(imp, model=mlp())


def test_epochs_mismatch():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=2, verbose=0)
    model = kl.wrap(mlp())
    model.compile("adam", LOSS)
    x, y = classification_data()
    with pytest.raises(ValueError, match="total_epochs"):
        model.fit(x, y, epochs=3, callbacks=[imp], verbose=0)


def test_reference_masks_wrong_shapes():
    bad = [{"fc0/kernel": np.ones((2, 2), bool)}] * 2
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, control="reinit", reference_masks=bad, verbose=0)
    with pytest.raises(ValueError, match="reference_masks"):
        _fit(imp)


def _snapshot(model, which):
    return {p.key: p.state.snapshot_array(which) for p in kl.prunable_weights(model)}


def _weights(model):
    return {p.key: _np(p.variable.value) for p in kl.prunable_weights(model)}


@pytest.mark.parametrize("rewind_to", ["finetune", 3, "lr", "init"])
def test_pruned_weights_stay_zero_in_every_rewind_mode(rewind_to):
    masks_seen = []

    class CheckZero(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            sync = getattr(self.model, "jax_state_sync", None)
            if sync:
                sync()
            for p in kl.prunable_weights(self.model):
                mask = _np(p.mask.value) > 0.5
                assert np.all(_np(p.variable.value)[~mask] == 0.0), (rewind_to, p.key)
            masks_seen.append(1)

    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=2, rewind_to=rewind_to, rate=0.5, verbose=0)
    _fit(imp, optimizer=keras.optimizers.SGD(0.1, momentum=0.9), callbacks=[CheckZero()])
    assert len(masks_seen) == 36
