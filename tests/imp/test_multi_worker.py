"""`keras_lottery.imp.multi_worker`: the loop in-process, then real clusters of
worker processes on 127.0.0.1 (tests/multi_worker_job.py)."""

import contextlib
import json
import os
import signal
import socket
import time

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mirrored_strategy
from conftest import mlp
import process_group
import script_runner

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TF backend"
)
from keras_lottery.imp import multi_worker  # noqa: E402

JOB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "multi_worker_job.py")
ROOT = os.path.dirname(os.path.dirname(JOB))


def _build(strategy):
    keras.utils.set_random_seed(5)
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = kl.wrap(mlp())
        model.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    return model


def _imp(**kwargs):
    return kl.IterativeMagnitudePruning(
        rounds=3, epochs_per_round=2, rewind_to=3, seed=4, verbose=0, **kwargs
    )


def _datasets():
    x, y = classification_data(n=128)
    train = tf.data.Dataset.from_tensor_slices((x[:96], y[:96])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[96:], y[96:])).batch(16)
    return (x, y), train, val


def _assert_same_run(imp_a, model_a, imp_b, model_b, atol):
    assert len(imp_a.mask_history) == len(imp_b.mask_history) == 3
    for a, b in zip(imp_a.mask_history, imp_b.mask_history):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for va, vb in zip(model_a.variables, model_b.variables):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(va.value), keras.ops.convert_to_numpy(vb.value), atol=atol
        )
    for ra, rb in zip(imp_a.results, imp_b.results):
        for key in ("density", "steps", "loss", "accuracy", "val_loss", "val_accuracy"):
            assert ra[key] == pytest.approx(rb[key], abs=atol), key
    assert imp_a.rewind_step == imp_b.rewind_step == 3


@pytest.mark.parametrize("replicas", [0, 2])
def test_loop_matches_model_fit(replicas):
    """Same IMP run through `model.fit` and through `multi_worker.fit`, on one
    device or under MirroredStrategy."""
    (x, y), train, val = _datasets()
    reference = _build(None)
    imp_ref = _imp()
    reference.fit(train, validation_data=val, epochs=imp_ref.total_epochs,
                  callbacks=[imp_ref], verbose=0)
    strategy = None
    if replicas:
        strategy = mirrored_strategy(replicas)
    model = _build(strategy)
    imp = _imp()
    history = multi_worker.fit(model, train, epochs=imp.total_epochs,
                               validation_data=val, callbacks=[imp], verbose=0)
    _assert_same_run(imp, model, imp_ref, reference, atol=1e-5)
    assert history.history["lottery_round"] == [0, 0, 1, 1, 2, 2]
    metrics = multi_worker.evaluate(model, val)
    expected = reference.evaluate(val, return_dict=True, verbose=0)
    assert metrics == pytest.approx(expected, abs=1e-5)


def test_steps_per_epoch_runs_one_iterator_across_epochs():
    """A repeated, reshuffling pipeline with steps_per_epoch sees exactly the
    batches model.fit sees (building the model must not start an extra,
    differently shuffled pass)."""
    (x, y), _, val = _datasets()

    def pipeline():
        return (tf.data.Dataset.from_tensor_slices((x[:96], y[:96]))
                .shuffle(96, seed=1, reshuffle_each_iteration=True).repeat().batch(16))

    reference = _build(None)
    imp_ref = _imp()
    reference.fit(pipeline(), steps_per_epoch=4, epochs=imp_ref.total_epochs,
                  validation_data=val, callbacks=[imp_ref], verbose=0)
    model = _build(None)
    imp = _imp()
    multi_worker.fit(model, pipeline(), epochs=imp.total_epochs, steps_per_epoch=4,
                     validation_data=val, callbacks=[imp], verbose=0)
    assert [row["steps"] for row in imp.results] == [8, 8, 8]
    _assert_same_run(imp, model, imp_ref, reference, atol=1e-5)
    assert multi_worker.is_chief()


def test_bad_input_gets_clear_errors():
    model = _build(None)
    x, y = classification_data()
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        multi_worker.fit(model, x, epochs=1)
    uncompiled = kl.wrap(mlp())
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.raises(ValueError, match="not compiled"):
        multi_worker.fit(uncompiled, data, epochs=1)
    model.compile("adam", "mse", steps_per_execution=4)
    with pytest.raises(ValueError, match="steps_per_execution=1"):
        multi_worker.fit(model, data, epochs=1)


# ------------------------------------------------------- real worker processes


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class _Cluster(process_group.ProcessGroup):
    """Worker processes that are killed, whatever happens, on exit."""

    def __init__(self, tmp_path):
        super().__init__()
        self.tmp_path = tmp_path

    def start(self, workers, name, *args):
        ports = _free_ports(workers)
        started = []
        for index in range(workers):
            env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=ROOT)
            if workers > 1:
                env["TF_CONFIG"] = json.dumps({
                    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                    "task": {"type": "worker", "index": index},
                })
            else:
                env.pop("TF_CONFIG", None)
            output = str(self.tmp_path / f"{name}{index}")
            # Forked from an interpreter that has imported TensorFlow (see
            # script_runner): each worker is still a process of its own.
            process = script_runner.start_script(
                JOB, [f"--output={output}", *args], env=env, cwd=ROOT,
                stdout_path=output + ".log")
            started.append(self.add(process, output + ".log"))
        return started


@pytest.fixture
def cluster(tmp_path):
    with _Cluster(tmp_path) as group:
        yield group


def _result(tmp_path, name):
    with np.load(tmp_path / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    with open(tmp_path / f"{name}.json") as f:
        return arrays, json.load(f)


def _assert_same(a, b, atol):
    arrays_a, rows_a = a
    arrays_b, rows_b = b
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        if key.startswith("mask:"):
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
        else:
            np.testing.assert_allclose(arrays_a[key], arrays_b[key], atol=atol, err_msg=key)
    assert [r["round"] for r in rows_a] == [r["round"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        for key in ("density", "kept", "steps", "loss", "val_loss", "val_accuracy"):
            assert ra[key] == pytest.approx(rb[key], abs=atol), key


@pytest.mark.parametrize("rewind_to, control", [("init", "reinit"), ("3", "random_prune")])
def test_two_workers_match_each_other_and_one_process(cluster, tmp_path, rewind_to, control):
    args = [f"--rewind_to={rewind_to}", f"--control={control}"]
    processes = cluster.start(2, "worker", *args) + cluster.start(1, "single", *args)
    codes = cluster.wait(processes)
    assert codes == [0, 0, 0], [cluster.log(p)[-3000:] for p in processes]
    worker0, worker1 = _result(tmp_path, "worker0"), _result(tmp_path, "worker1")
    _assert_same(worker0, worker1, atol=0)  # bit-identical on both workers
    _assert_same(worker0, _result(tmp_path, "single0"), atol=1e-5)
    assert [r["kept"] for r in worker0[1]][0] > [r["kept"] for r in worker0[1]][-1]


def test_killed_worker_fails_fast_and_restart_resumes(cluster, tmp_path):
    checkpoint_dir = tmp_path / "checkpoint"
    args = ["--rounds=4", "--rewind_to=3", f"--checkpoint_dir={checkpoint_dir}"]
    worker0, worker1 = cluster.start(2, "first", *args, "--epoch_sleep=0.5")
    checkpoint = checkpoint_dir / "imp_checkpoint.npz"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert time.monotonic() < deadline, cluster.log(worker0)[-3000:]
        assert worker0.poll() is None, cluster.log(worker0)[-3000:]
        time.sleep(0.1)
    assert worker0.poll() is None and worker1.poll() is None  # mid-run
    worker1.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    code = cluster.wait([worker0], timeout=90)[0]
    seconds = time.monotonic() - killed_at
    print(f"worker 1 killed: worker 0 failed after {seconds:.1f}s")  # pytest -s
    log = cluster.log(worker0)
    assert code != 0
    assert "WorkerFailedError" in log and "Restart every worker" in log, log[-3000:]
    assert seconds < 60, f"the surviving worker took {seconds:.0f}s to fail"
    assert not (tmp_path / "first0.npz").exists()

    resumed = cluster.start(2, "resumed", *args)
    reference = cluster.start(1, "reference", "--rounds=4", "--rewind_to=3")
    codes = cluster.wait(resumed + reference)
    assert codes == [0, 0, 0], [cluster.log(p)[-3000:] for p in resumed + reference]
    for process in resumed:  # both resumed from the chief's checkpoint
        assert "initial_epoch=0" not in cluster.log(process)
        assert "initial_epoch=" in cluster.log(process)
    first, second = _result(tmp_path, "resumed0"), _result(tmp_path, "resumed1")
    _assert_same(first, second, atol=0)
    _assert_same(first, _result(tmp_path, "reference0"), atol=1e-5)
