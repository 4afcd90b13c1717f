"""Example scripts and their shared helpers: data loaders, end-to-end runs."""

import gzip
import json
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

import script_runner
from examples import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _write_idx(path, array, compress):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if compress else open
    with opener(str(path) + (".gz" if compress else ""), "wb") as f:
        f.write(data)


def _idx_dir(tmp_path, n_train=60, n_test=20, compress=True):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), compress)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train), compress)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), compress)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test), compress)
    return tmp_path


@pytest.mark.parametrize("compress", [True, False])
def test_idx_loader(tmp_path, compress):
    directory = _idx_dir(tmp_path, compress=compress)
    (x, y), (xv, yv), (xt, yt) = common.load_dataset(f"idx:{directory}")
    assert x.shape == (55, 28, 28) and xv.shape == (5, 28, 28) and xt.shape == (20, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.dtype == np.float32
    assert y.shape == (55,) and yt.dtype == np.int32
    raw = common.read_idx(str(directory / "t10k-labels-idx1-ubyte" ) + (".gz" if compress else ""))
    np.testing.assert_array_equal(raw, yt)


def test_idx_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX directory"):
        common.load_idx_dir(str(tmp_path))
    directory = _idx_dir(tmp_path, n_train=30)
    with pytest.raises(ValueError, match="no training data"):
        common.load_idx_dir(str(directory), validation=30)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="header"):
        common.read_idx(str(bad))


def test_digits_split_proportions():
    (x, y), (xv, yv), (xt, yt) = common.load_dataset("digits")
    assert len(x) + len(xv) + len(xt) == 1797
    assert len(xt) == round(1797 * 10 / 70) and len(xv) == round(1797 * 5 / 70)
    assert x.shape[1:] == (8, 8)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset"):
        common.load_dataset("cifar100")


def _run(script, *args, mock_tfds=None, fresh=False):
    """The script as a user runs it (a new process, see script_runner)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "tensorflow"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the scripts' own default, as a user gets it
    return script_runner.run_script(ROOT / "examples" / script, args, env=env, cwd=ROOT,
                                    mock_tfds=mock_tfds, fresh=fresh)


TINY = ["--rounds=3", "--iterations=20", "--eval_every=10", "--trials=2"]


def _check_run(out, arms, rounds=3, trials=2):
    files = set(os.listdir(out))
    for name in ("results.json", "results.csv", "config.json", "accuracy.png",
                 "early_stop.png", "learning_curves.png", "tensorboard", "ticket_trial0.npz"):
        assert name in files, name
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == rounds * trials * len(arms)
    assert {r["arm"] for r in rows} == set(arms)
    with open(out / "results.csv") as f:
        header = f.readline().strip().split(",")
    for column in ("trial", "arm", "round", "density", "test_accuracy_end",
                   "test_accuracy_early_stop", "early_stop_iteration", "train_seconds"):
        assert column in header, column
    for row in rows:
        assert 0 <= row["test_accuracy_end"] <= 1
        assert row["early_stop_iteration"] in (10, 20)
    return rows


def test_lenet_end_to_end_then_export(tmp_path):
    out = tmp_path / "run"
    # A new interpreter: the start-up lines checked below come before TensorFlow loads.
    result = _run("lenet.py", *TINY, f"--output_dir={out}", fresh=True)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _check_run(out, ["ticket", "reinit", "random_prune"])
    ticket = [r for r in rows if r["arm"] == "ticket" and r["trial"] == 0]
    assert [round(r["density"], 4) for r in ticket] == [1.0, 0.802, 0.6434]
    # The controls start from the ticket's trained round 0: shared, equal rows.
    for trial in (0, 1):
        round0 = {r["arm"]: r for r in rows if r["trial"] == trial and r["round"] == 0}
        assert [round0[a]["shared"] for a in ("ticket", "reinit", "random_prune")] == [False, True, True]
        assert round0["reinit"]["test_accuracy_end"] == round0["ticket"]["test_accuracy_end"]
        assert all(not r["shared"] for r in rows if r["trial"] == trial and r["round"] > 0)
    assert "shared" in result.stdout
    # Where the controls start is recorded relative to the run directory, so
    # that a directory moved between sessions resumes them.
    start = json.loads((out / "trial0" / "ticket.json").read_text())["round0_checkpoint"]
    assert not os.path.isabs(start) and os.path.isfile(out / start)
    # Every round's ticket is a file; the controls follow their masks.
    import keras_lottery as kl

    for r in range(3):
        ticket_file = kl.read_ticket(str(out / "trial0" / "tickets" / f"round{r}.npz"))
        assert ticket_file.metadata["round"] == r
        assert round(ticket_file.density, 4) == round(ticket[r]["density"], 4)
    table_header = next(l for l in result.stdout.splitlines() if l.strip().startswith("round"))
    for column in ("% remaining", "ticket acc", "reinit acc", "random_prune acc", "early-stop iter"):
        assert column in table_header
    assert os.path.isdir(out / "export" / "saved_model") and os.path.exists(out / "export" / "ticket.tflite")
    # TensorFlow's native start-up and converter lines stay out of the terminal.
    for noise in ("cudart_stub", "cuInit", "absl::InitializeLog", "Reading SavedModel",
                  "fully_quantize", "flatbuffer_export"):
        assert noise not in result.stderr, result.stderr[-2000:]

    # A rerun with the same flags resumes: every finished arm is skipped, and
    # an arm killed after its last checkpoint but before its summary resumes
    # from the IMP checkpoint instead of retraining (one rerun checks both).
    os.remove(out / "trial1" / "reinit.json")
    again = _run("lenet.py", *TINY, f"--output_dir={out}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already done, skipped") == 5
    assert again.stdout.count("IMP resumed from") == 1 and "trial 1 reinit" in again.stdout
    assert json.loads((out / "results.json").read_text()) == rows

    # An unwritable output directory (here: below a file) is refused cleanly.
    bad = _run("lenet.py", *TINY, f"--output_dir={out / 'results.csv' / 'sub'}")
    assert bad.returncode != 0 and "not a writable directory" in bad.stderr
    assert "Traceback" not in bad.stderr

    # Other flags on the same directory are refused, listing every difference
    # (a shared flag and the script's own ones).
    other = _run("lenet.py", *TINY, "--rounds=4", "--rate=0.5", "--output_rate=0.3",
                 f"--output_dir={out}")
    assert other.returncode != 0 and "Traceback" not in other.stderr
    for difference in ("output_rate: on disk 0.1, now 0.3", "rate: on disk 0.2, now 0.5",
                       "rounds: on disk 3, now 4"):
        assert difference in other.stderr, other.stderr[-2000:]

    exported = _run("export_ticket.py", f"--run_dir={out}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    summary = json.loads((out / "export" / "export.json").read_text())
    files = {r["file"]: r for r in summary["files"]}
    assert files["dense.tflite"]["ratio_to_dense"] == 1.0
    assert files["sparse.tflite"]["bytes"] < files["dense.tflite"]["bytes"]
    assert files["sparse.tflite"]["same_prediction"] >= 0.999


def test_lenet_multiworker_two_processes(tmp_path):
    """`--distribute=multiworker` on 2 local workers: one set of outputs (the
    chief's), the same results as a one-process run of the same flags."""
    import socket

    flags = ["--rounds=2", "--iterations=20", "--eval_every=10", "--controls=reinit",
             "--export=false", "--tensorboard=false"]
    sockets = [socket.socket() for _ in range(2)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    out = tmp_path / "multiworker"
    workers = []
    try:
        for index in range(2):
            env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "tensorflow",
                   "TF_CONFIG": json.dumps({
                       "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})}
            workers.append(script_runner.start_script(
                ROOT / "examples" / "lenet.py", [*flags, "--distribute=multiworker",
                                                 f"--output_dir={out}"],
                env=env, cwd=ROOT, stdout_path=tmp_path / f"worker{index}.out",
                stderr_path=tmp_path / f"worker{index}.err"))
        for w in workers:
            w.wait(timeout=600)
        outputs = [((tmp_path / f"worker{i}.out").read_text(), (tmp_path / f"worker{i}.err").read_text())
                   for i in range(2)]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert [w.returncode for w in workers] == [0, 0], [o[1][-3000:] for o in outputs]
    assert "the chief writes the results" in outputs[1][0]
    single = _run("lenet.py", *flags, f"--output_dir={tmp_path / 'single'}")
    assert single.returncode == 0, single.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    expected = json.loads((tmp_path / "single" / "results.json").read_text())
    assert len(rows) == len(expected) == 4
    for row, ref in zip(rows, expected):
        assert (row["arm"], row["round"], row["density"]) == (ref["arm"], ref["round"], ref["density"])
        assert row["best_val_loss"] == pytest.approx(ref["best_val_loss"], abs=1e-4)
        assert row["test_accuracy_end"] == pytest.approx(ref["test_accuracy_end"], abs=0.006)


_ITERATORS_JOB = r"""
import sys
import numpy as np, keras, tensorflow as tf
from examples import arms
made = []
def examples():
    made.append(1)  # tf.data calls it once per iterator
    rng = np.random.default_rng(0)
    while True:
        yield rng.normal(size=(4,)).astype("float32"), np.int32(0)
spec = (tf.TensorSpec((4,), tf.float32), tf.TensorSpec((), tf.int32))
data = tf.data.Dataset.from_generator(examples, output_signature=spec).batch(8)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
if sys.argv[-1] == "build":
    arms.build_for_fit(model, data)
model.fit(data, steps_per_epoch=3, epochs=2, verbose=0)
print("ITERATORS", len(made))
"""


@pytest.mark.parametrize("build, iterators", [("build", 1), ("no", 2)])
def test_on_jax_fit_reads_the_data_once_after_build_for_fit(tmp_path, build, iterators):
    """Keras' JAX fit draws a batch to build an unbuilt model and starts the
    data again (a second iterator; with a reading-ahead thread, the cause of
    control arms' batch orders varying between runs). After
    `arms.build_for_fit` it reads one iterator."""
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    result = script_runner.run_code(_ITERATORS_JOB, tmp_path, argv=[build], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ITERATORS {iterators}" in result.stdout


def test_lenet_data_parallel_on_jax_devices_and_processes(tmp_path):
    """`--distribute=data_parallel` (keras.distribution on JAX) on 2 devices
    of one process and on 2 processes: the rows of a one-device run, exactly
    (the held-out sets of 128 and 257 examples are padded with weight 0)."""
    import socket
    import subprocess
    import sys

    pytest.importorskip("jax")
    flags = ["--rounds=3", "--iterations=60", "--eval_every=20", "--trials=1",
             "--export=false", "--tensorboard=false"]
    base = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax", "XLA_FLAGS": ""}
    single = script_runner.run_script(ROOT / "examples" / "lenet.py",
                                      [*flags, f"--output_dir={tmp_path / 'single'}"],
                                      env=base, cwd=ROOT)
    assert single.returncode == 0, single.stderr[-3000:]
    devices = script_runner.run_script(
        ROOT / "examples" / "lenet.py",
        [*flags, "--distribute=data_parallel", f"--output_dir={tmp_path / 'devices'}"],
        env={**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, cwd=ROOT)
    assert devices.returncode == 0, devices.stderr[-3000:]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    processes = []
    try:
        for index in range(2):
            env = {**base, "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                   "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
                   "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}"}
            with open(tmp_path / f"process{index}.log", "w") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "examples.lenet", *flags, "--distribute=data_parallel",
                     f"--output_dir={tmp_path / 'processes'}"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        for process in processes:
            process.wait(timeout=600)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    logs = [(tmp_path / f"process{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p in processes] == [0, 0], [log[-3000:] for log in logs]
    assert "the chief writes the results" in logs[1]
    expected = json.loads((tmp_path / "single" / "results.json").read_text())
    assert len(expected) == 9
    for name in ("devices", "processes"):
        rows = json.loads((tmp_path / name / "results.json").read_text())
        assert len(rows) == len(expected), name
        for row, ref in zip(rows, expected):
            for key in ("arm", "round", "density", "early_stop_iteration",
                        "test_accuracy_end", "test_accuracy_early_stop"):
                assert row[key] == ref[key], (name, key, row, ref)
            assert row["best_val_loss"] == pytest.approx(ref["best_val_loss"], abs=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rounds=0"], "rounds"),
        (["--controls=shuffle"], "controls"),
        (["--rewind_to=soon"], "rewind_to"),
        (["--iterations=25", "--eval_every=10"], "multiple"),
        (["--test_every=15"], "test_every"),
        (["--rate=1.5"], "rate"),
        (["--rate=nan"], "rate"),
        (["--output_rate=-0.1"], "output_rate"),
        (["--distribute=mirrored", "--steps_per_execution=4"], "steps_per_execution"),
        (["--distribute=multiworker", "--steps_per_execution=4"], "steps_per_execution"),
        (["--dataset=imagenet"], "Unknown dataset"),
        (["--distribute=data_parallel"], "Set KERAS_BACKEND=jax"),
    ],
)
def test_lenet_rejects_bad_flags(tmp_path, args, message):
    result = _run("lenet.py", "--iterations=20", "--eval_every=10", *args, f"--output_dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_test_metrics_evaluates_every_best_and_round_end(tmp_path):
    """`--test_every`: the test set is evaluated on the schedule, at every new
    best validation loss of a round and at each round's end, so the early-stop
    and end accuracies are exact; other epochs are None in the curve."""
    from examples import arms

    calls = []

    def evaluate(model, data):
        calls.append(len(calls))
        return {"accuracy": 0.5, "loss": 1.0}

    callback = arms.TestMetrics.make(None, str(tmp_path / "curve.json"), 0, True, evaluate,
                                     every=4, epochs_per_round=5)
    # Two rounds of 5 epochs; round 1 restarts the best-so-far tracking.
    val_losses = [3.0, 2.0, 2.5, 2.6, 2.7, 9.0, 9.5, 8.0, 8.0, 8.5]
    evaluated = []
    for epoch, val_loss in enumerate(val_losses):
        logs = {"val_loss": val_loss}
        callback.on_epoch_end(epoch, logs)
        evaluated.append("test_accuracy" in logs)
    # epoch 0, 1 (best), 3 (every 4th of the round), 4 (round end); round 1:
    # 5 (first), 7 (best), 8 (ties the best, 4th of the round), 9 (end).
    assert evaluated == [True, True, False, True, True, True, False, True, True, True]
    assert [c is not None for c in callback.curve] == evaluated
    assert json.loads((tmp_path / "curve.json").read_text()) == callback.curve


def test_conv2_on_mock_cifar(tmp_path):
    out = tmp_path / "conv"
    # XLA is tested by the LeNet run; compiling Conv-2 for it here costs a minute.
    # A changed script flag is refused on resume: test_lenet_end_to_end_then_export
    # (--rate, --output_rate) and test_every_flag_is_part_of_the_run_settings.
    flags = ["--depth=2", "--rounds=2", "--iterations=10", "--eval_every=10",
             "--controls=reinit", "--export=false", "--jit_compile=false",
             f"--output_dir={out}"]
    result = _run("conv.py", *flags, mock_tfds=60)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _check_run(out, ["ticket", "reinit"], rounds=2, trials=1)
    ticket = [r for r in rows if r["arm"] == "ticket"]
    # conv layers prune 10%, fc 20%, output 10%: overall density strictly between.
    assert 0.8 < ticket[1]["density"] < 0.9
    assert json.loads((out / "config.json").read_text())["learning_rate"] == 2e-4


def test_resnet20_on_mock_cifar_with_rewinding(tmp_path):
    out = tmp_path / "resnet"
    result = _run("resnet20.py", "--rounds=2", "--iterations=10", "--eval_every=10",
                  "--rewind_to=3", "--controls=", "--batch_size=8", "--export=false",
                  "--jit_compile=false", f"--output_dir={out}", mock_tfds=60)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _check_run(out, ["ticket"], rounds=2, trials=1)
    config = json.loads((out / "config.json").read_text())
    assert config["distribution"] == "global" and config["rewind_to"] == "3"
    assert config["warmup"] == 0 and config["weight_decay"] == 1e-4 and config["rate"] == 0.2
    assert rows[1]["density"] < 1.0


@pytest.mark.parametrize("script", ["lenet.py", "conv.py", "resnet20.py"])
def test_help_lists_every_flag_and_exits_zero(script):
    result = _run(script, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for flag in ("--rounds", "--iterations", "--eval_every", "--controls", "--rewind_to",
                 "--seed", "--output_dir", "--steps_per_execution", "--distribute", "--trials"):
        assert flag in result.stdout, flag
    own = {"lenet.py": ["--rate", "--output_rate"], "conv.py": ["--depth"],
           "resnet20.py": ["--warmup", "--weight_decay", "--rate", "--model"]}[script]
    for flag in own:
        assert flag in result.stdout, flag
    assert "Traceback" not in result.stderr


def test_every_flag_is_part_of_the_run_settings(tmp_path):
    """A flag added to a script is compared on resume without being listed
    anywhere: the settings are derived from the flag definitions."""
    from absl import app, flags

    from examples import run_config
    from examples.run_directory import RunDirectory

    values = flags.FlagValues()
    for name, default in (("rounds", 3), ("iterations", 20), ("eval_every", 10),
                          ("batch_size", 60), ("seed", 0), ("trials", 1)):
        flags.DEFINE_integer(name, default, "", flag_values=values, module_name="experiment")
    for name, default in (("rewind_to", "init"), ("output_dir", str(tmp_path)),
                          ("distribute", "none"), ("dataset", "digits")):
        flags.DEFINE_string(name, default, "", flag_values=values, module_name="experiment")
    flags.DEFINE_list("controls", [], "", flag_values=values, module_name="experiment")
    flags.DEFINE_float("epochs_per_round", None, "", flag_values=values, module_name="experiment")
    flags.DEFINE_integer("steps_per_execution", None, "", flag_values=values, module_name="experiment")
    flags.DEFINE_bool("jit_compile", None, "", flag_values=values, module_name="experiment")
    flags.DEFINE_bool("export", True, "", flag_values=values, module_name="experiment")
    values(["script.py"])

    def settings():
        return run_config.RunConfig.from_flags("s", values, ["script.py", "experiment"], 100).settings()

    RunDirectory(str(tmp_path)).prepare(settings(), trials=1)
    flags.DEFINE_float("new_knob", 0.5, "", flag_values=values, module_name="script.py")
    values(["script.py"])
    assert settings()["new_knob"] == 0.5
    assert "output_dir" not in settings() and "export" not in settings()
    with pytest.raises(app.UsageError, match="new_knob: on disk None, now 0.5"):
        RunDirectory(str(tmp_path)).prepare(settings(), trials=1)


def test_a_run_directory_from_before_the_one_vocabulary_resumes(tmp_path):
    """Runs recorded `scope`; the flag is `--distribution` now ('layerwise'
    is 'uniform'): the same run resumes, another distribution is refused."""
    from absl import app

    from examples.run_directory import RunDirectory

    (tmp_path / "config.json").write_text(json.dumps({"rounds": 3, "scope": "layerwise",
                                                      "trials": 2}))
    RunDirectory(str(tmp_path)).prepare({"rounds": 3, "distribution": "uniform"}, trials=2)
    assert json.loads((tmp_path / "config.json").read_text())["distribution"] == "uniform"
    (tmp_path / "config.json").write_text(json.dumps({"rounds": 3, "scope": "global"}))
    with pytest.raises(app.UsageError, match="distribution: on disk 'global', now 'uniform'"):
        RunDirectory(str(tmp_path)).prepare({"rounds": 3, "distribution": "uniform"}, trials=2)


def test_an_arm_written_under_a_relative_output_dir_is_found_on_resume(tmp_path, monkeypatch):
    from examples.run_directory import RunDirectory

    monkeypatch.chdir(tmp_path)
    directory = RunDirectory("runs/relative")
    directory.write_json(directory.arm_file(0, "ticket"), {"rows": [{"round": 0}], "curve": []})
    assert (tmp_path / "runs/relative/trial0/ticket.json").exists()
    assert not (tmp_path / "runs/relative/runs").exists()
    assert RunDirectory("runs/relative").load_arm(0, "ticket")["rows"] == [{"round": 0}]


def test_tfds_loader_on_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=48):
        (x, y), (xv, yv), (xt, yt) = common.load_dataset("mnist")
        assert len(xv) == 4 and len(x) == 44 and len(xt) == 48
        assert x.shape[1:] == (28, 28, 1) and x.max() <= 1.0 and y.dtype == np.int32
        (x, _), (xv, _), _ = common.load_dataset("cifar10")
        assert x.shape[1:] == (32, 32, 3) and len(xv) == round(48 / 10)


def test_export_ticket_missing_run(tmp_path):
    result = _run("export_ticket.py", f"--run_dir={tmp_path / 'nothing'}")
    assert result.returncode != 0
    assert "model.keras not found" in result.stderr


def test_ticket_methods_runs_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "methods"
    args = ["--trials=1", "--epochs=1", "--densities=0.3,0.09", "--rounds_to_first=1",
            "--methods=imp,random,snip,synflow", "--synflow_iterations=3", f"--output_dir={out}"]
    first = _run("ticket_methods.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["target"]) for r in rows} == {
        (m, d) for m in ("imp", "random", "snip", "synflow") for d in (0.3, 0.09)}
    imp = {r["target"]: r for r in rows if r["method"] == "imp"}
    assert imp[0.3]["round"] == 1 and imp[0.09]["round"] == 2  # rate 0.7: 30%, then 9%
    for row in rows:
        assert 0.0 <= row["test_accuracy"] <= 1.0
        # every method prunes to the IMP round's density
        assert row["kept"] == pytest.approx(imp[row["target"]]["kept"], abs=2e-3)
        assert (row.get("shuffled_accuracy") is None) == (row["method"] == "random")
        assert (row.get("mask_seconds") is None) == (row["method"] == "imp")
    assert "| 30.00 | snip |" in (out / "table.md").read_text()
    assert (out / "methods.png").stat().st_size > 10_000
    (out / "trial0" / "snip_0.09.json").unlink()
    again = _run("ticket_methods.py", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already done, skipped") == 7
    assert "trial 0 snip at" in again.stdout and "trial 0 imp:" not in again.stdout
    other = _run("ticket_methods.py", *args[:-1], "--epochs=2", f"--output_dir={out}")
    assert other.returncode != 0 and "epochs: on disk 1, now 2" in other.stderr
    bad = _run("ticket_methods.py", "--methods=imp,lottery", f"--output_dir={out}")
    assert bad.returncode != 0 and "unknown ['lottery']" in bad.stderr
    same = _run("ticket_methods.py", "--densities=0.3,0.2", "--rounds_to_first=1",
                f"--output_dir={tmp_path / 'other'}")
    assert same.returncode != 0 and "two land on one round" in same.stderr


def test_one_shot_lm_tiny_run_and_resume(tmp_path):
    out = tmp_path / "lm"
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text("def f(x):\n    return x + 1\n" * 800)
    args = ["--steps=10", "--sequence_length=16", "--hidden_dim=16", "--heads=2",
            "--calibration_sequences=8", "--eval_sequences=8", f"--text_dir={text}",
            "--text_glob=*.txt", "--sparsities=0.5,2:4", f"--output_dir={out}"]
    first = _run("one_shot_lm.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == ["dense"] + ["magnitude", "wanda", "sparsegpt"] * 2
    for row in rows[1:]:
        assert row["perplexity"] > 1.0 and row["kept"] == pytest.approx(0.5)
    assert (out / "perplexity.png").stat().st_size > 5_000
    again = _run("one_shot_lm.py", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "dense model: loaded" in again.stdout and again.stdout.count("already done") == 6
    assert json.loads((out / "results.json").read_text()) == rows


def test_sparse_training_runs_every_method_and_resumes(tmp_path):
    out = tmp_path / "dst"
    args = ["--trials=1", "--epochs=2", "--sparse_epochs=1", "--densities=0.3,0.09",
            "--rounds_to_first=1", "--update_every=10", f"--output_dir={out}"]
    first = _run("sparse_training.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["target"]) for r in rows} == {
        (m, d) for m in ("rigl", "set", "static", "imp") for d in (0.3, 0.09)}
    imp = {r["target"]: r for r in rows if r["method"] == "imp"}
    for row in rows:  # every method at the IMP round's density
        assert row["kept"] == pytest.approx(imp[row["target"]]["kept"], abs=0.01)
        if row["method"] == "imp":  # every round up to the ticket's: 2 or 3 rounds of 48
            assert row["steps"] == 48 * (row["round"] + 1)
        else:  # --sparse_epochs=1
            assert row["steps"] == 24
    assert {r["updates"] for r in rows if r["method"] == "rigl"} == {1}  # step 10 < 18 = 3/4 · 24
    assert all(r["updates"] == 0 for r in rows if r["method"] == "static")
    assert (out / "sparse_training.png").stat().st_size > 10_000
    again = _run("sparse_training.py", *args)
    assert again.returncode == 0 and again.stdout.count("already done, skipped") == 8
    # Sparse runs of 24 steps stop updating at 18: update_every=20 would never move a mask.
    still = _run("sparse_training.py", *args[:-2], "--update_every=20",
                 f"--output_dir={tmp_path / 'still'}")
    assert still.returncode != 0 and "rigl, set would never update" in still.stderr
    assert "Traceback" not in still.stderr


@pytest.mark.parametrize("module", ["common", "harness", "method_results", "method_trial", "paper_claims", "quiet_start",
                                    "run_config"])
def test_example_helper_docstrings(module):
    """The shared helpers' docstring examples run (the scripts' own, which
    define flags at import, run in their end-to-end tests)."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"examples.{module}"),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def _claim_rows():
    """Two trials of a 3-round run: densities 1.0, 0.21, 0.036."""
    table = {  # (trial, arm): [(early-stop iteration, test accuracy)] per round
        (0, "ticket"): [(8000, 0.890), (4000, 0.900), (6000, 0.880)],
        (0, "reinit"): [(8000, 0.890), (9000, 0.885), (12000, 0.800)],
        (1, "ticket"): [(10000, 0.880), (5000, 0.895), (9000, 0.885)],
        (1, "reinit"): [(10000, 0.880), (8000, 0.884), (11000, 0.810)],
    }
    return [dict(trial=t, arm=a, round=r, density=d, early_stop_iteration=values[r][0],
                 test_accuracy_early_stop=values[r][1], shared=(a != "ticket" and r == 0))
            for (t, a), values in table.items() for r, d in enumerate((1.0, 0.21, 0.036))]


def test_paper_claims_over_the_trials(tmp_path):
    """Each claim is computed per trial at the nearest round and summarised;
    a partial run reads only its trials whose arms are all done."""
    from examples import paper_claims

    found = {c["claim"].split(":")[0]: c for c in paper_claims.claims(_claim_rows())}
    at21 = found["early-stop iteration at 21.1%"]
    assert at21["ratio"]["values"] == [0.5, 0.5] and at21["density"]["mean"] == 0.21
    at36 = found["early-stop iteration at 3.6%"]
    assert at36["ratio"]["values"] == pytest.approx([0.75, 0.9])
    assert at36["ratio"]["std"] == pytest.approx(0.075)
    # 51.3% is nearest the 0.21 round here (|0.513-0.21| < |0.513-1.0|).
    assert found["early-stop iteration at 51.3%"]["ticket"]["values"] == [4000, 5000]
    accuracy = found["test accuracy at 3.6% (at early stop)"]["difference"]
    assert accuracy["values"] == pytest.approx([-1.0, 0.5])
    assert accuracy["min"] == pytest.approx(-1.0) and accuracy["max"] == pytest.approx(0.5)
    # reinit below dense: trial 0 already at 0.21 (88.5 < 89.0); trial 1 only at 0.036.
    below = found["highest density at which reinit's test accuracy falls below dense's"]
    assert below["density"]["values"] == [0.21, 0.036]
    stays = found["highest density from which reinit stays below dense at every sparser round"]
    assert stays["density"]["values"] == [0.21, 0.036]
    # A reinit run below dense at 0.21 but above it at 0.1, below again at
    # 0.036: the first crossing is 0.21, it stays below only from 0.036.
    rows = [dict(trial=0, arm=a, round=r, density=d, early_stop_iteration=1000,
                 test_accuracy_early_stop=acc, shared=(a == "reinit" and r == 0))
            for a, accs in [("ticket", (0.89, 0.90, 0.90, 0.89)), ("reinit", (0.89, 0.88, 0.895, 0.80))]
            for r, (d, acc) in enumerate(zip((1.0, 0.21, 0.1, 0.036), accs))]
    recovered = {c["claim"]: c for c in paper_claims.claims(rows)}
    assert recovered["highest density at which reinit's test accuracy falls below dense's"][
        "density"]["values"] == [0.21]
    assert recovered["highest density from which reinit stays below dense at every sparser round"][
        "density"]["values"] == [0.036]
    speed = found["ticket speed against reinit at 21.1%"]
    assert speed["ratio"]["values"] == pytest.approx([2.25, 1.6])

    run = tmp_path / "run"
    (run / "trial0").mkdir(parents=True)
    (run / "trial1").mkdir()
    (run / "config.json").write_text(json.dumps({"controls": ["reinit"]}))
    rows = _claim_rows()
    for (t, a) in [(0, "ticket"), (0, "reinit"), (1, "ticket")]:  # trial 1 unfinished
        (run / f"trial{t}" / f"{a}.json").write_text(json.dumps(
            {"rows": [r for r in rows if r["trial"] == t and r["arm"] == a]}))
    result = _run("paper_claims.py", f"--run_dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((run / "claims.json").read_text())
    assert saved["trials"] == 1 and "--run_dir=" in saved["command"]
    assert "Over 1 trial: mean ± std [min, max]." in (run / "claims.md").read_text()
    assert "| early-stop iteration at 21.1%: ticket / dense | 21.0 ± 0.0 [21.0, 21.0] | 4000 ±" \
        in result.stdout


def test_one_shot_lm_seeds_summarises_runs_that_differ_only_in_the_seed(tmp_path):
    def run(name, seed, dense, magnitude, sparsegpt, width=256):
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"seed": seed, "hidden_dim": width}))
        (path / "results.json").write_text(json.dumps([
            {"method": "dense", "sparsity": "0", "perplexity": dense},
            {"method": "magnitude", "sparsity": "0.5", "perplexity": magnitude},
            {"method": "sparsegpt", "sparsity": "0.5", "perplexity": sparsegpt}]))
        return str(path)

    runs = [run("a", 0, 4.0, 4.5, 4.1), run("b", 1, 4.2, 4.3, 4.7)]
    out = tmp_path / "summary"
    result = _run("one_shot_lm_seeds.py", f"--run_dirs={','.join(runs)}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    assert summary["cells"]["0.5 magnitude"]["perplexity"]["mean"] == pytest.approx(4.4)
    assert summary["orderings"]["0.5: sparsegpt < magnitude"] == [True, False]
    assert summary["orderings"]["0.5: sparsegpt within 10% of dense"] == [True, False]
    assert "| 0.5: sparsegpt < magnitude | 1 of 2 |" in (out / "summary.md").read_text()
    assert "--run_dirs=" in summary["command"]

    other = run("c", 2, 4.0, 4.4, 4.1, width=128)
    result = _run("one_shot_lm_seeds.py", f"--run_dirs={runs[0]},{other}", f"--output_dir={out}")
    assert result.returncode != 0 and "differ in more than the seed: ['hidden_dim']" in result.stderr

    doctests = subprocess.run(
        [sys.executable, "-c", "import doctest, examples.one_shot_lm_seeds as m; "
                               "r = doctest.testmod(m); assert r.attempted and not r.failed, r"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert doctests.returncode == 0, doctests.stderr[-2000:]
