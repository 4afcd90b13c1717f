"""The benchmark harnesses run on tiny sizes and produce every row (no timing
assertions: timings are for benchmarks/, not tests)."""

import json
import os

import pytest

import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, name, *args):
    """Runs `python -m benchmarks.<name> *args --output=...` as a user does;
    returns its result and the JSON it wrote."""
    out = tmp_path / f"{name}.json"
    result = script_runner.run_script(
        os.path.join(ROOT, "benchmarks", f"{name}.py"), [*args, f"--output={out}"],
        env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(out.read_text())


def _step_time(tmp_path, backends, models):
    result, data = _run(tmp_path, "step_time", f"--backends={','.join(backends)}",
                        f"--models={','.join(models)}", "--steps=10", "--conv_steps=1",
                        "--repeats=1", "--settings=first")
    assert "| model | backend |" in result.stdout
    return data["rows"]


def test_step_time_harness_produces_every_row(tmp_path, capsys):
    from benchmarks import step_time

    # LeNet and the encoder on TensorFlow (JAX and torch run the same harness
    # code with another KERAS_BACKEND; Conv-6 is slow to compile, so it is
    # only built here).
    # The encoder's worker runs here, in this process: the harness's
    # subprocess path is the same for every model, and each worker process
    # imports TensorFlow anew.
    backends = ["tensorflow"]
    rows = _step_time(tmp_path, backends, ["lenet"])
    assert len(rows) == len(backends)  # --settings=first: one setting per backend
    step_time.worker("tensorflow", "encoder", steps=10, repeats=1, batch=60, settings="first")
    rows += json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {(row["model"], row["backend"]) for row in rows} == {
        (m, b) for m in ("lenet", "encoder") for b in backends}
    assert step_time._model("conv6").count_params() == 2_262_602
    for row in rows:
        assert row["dense_ms"] > 0 and row["masked_ms"] > 0
        assert row["ratio"] == pytest.approx(row["ratio"])  # finite
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]


def test_competitors_harness_produces_every_row(tmp_path):
    from benchmarks import competitors

    # The dense workers are the same code path with wrapping skipped; leaving
    # them out keeps this test short.
    tools = ["keras_lottery", "keras_lottery_fast"]
    tools += ["tfmot"] if _importable("tensorflow_model_optimization") and _importable("tf_keras") else []
    tools += ["torch_prune"] if _importable("torch") else []
    result, data = _run(tmp_path, "competitors", f"--tools={','.join(tools)}", "--steps=5",
                        "--repeats=2")
    assert [row["tool"] for row in data["rows"]] == tools
    for row in data["rows"]:
        assert len(row["ms_per_step_all"]) == 2 and row["ms_per_step"] > 0
    expected = {f"keras_lottery/{t}" for t in tools if t != "keras_lottery"}
    expected |= {"keras_lottery/flop_floor", "keras_lottery_fast/flop_floor"}
    expected |= {f"keras_lottery_fast/{t}" for t in ("tfmot", "torch_prune", "keras_dense_fast") if t in tools}
    assert set(data["ratios"]) == expected
    for ratio in data["ratios"].values():
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    # LeNet-300-100 at batch 60: forward 31.9 MFLOP, 2.1x that for a step.
    assert competitors.step_flops(60) == 2 * 2 * 60 * 266_200 + 2 * 60 * 31_000
    assert data["matmul_flops_per_s"] > 1e8
    assert 0 < data["flop_floor_ms"] and 0 < data["step_matmuls_ms"] and 0 < data["adam_update_ms"]
    assert "| keras_lottery/flop_floor |" in result.stdout


def test_imp_overheads_harness_produces_every_row(tmp_path):
    result, data = _run(tmp_path, "imp_overheads", "--rounds=3", "--steps=10",
                        "--global_weights=200000")
    assert len(data["round_boundary_s_all"]) == 2  # one per boundary of 3 rounds
    assert 0 < data["round_boundary_fraction"] < 1
    assert data["train_step_traces_round0"] >= 1
    assert data["train_step_traces_after_round0"] == 0
    assert data["wrapper_state_bytes_per_weight_byte"] == pytest.approx(3.0)
    assert data["wrapper_state_bytes_per_weight_byte_host_snapshots"] == pytest.approx(1.0)
    assert abs(data["global_prune_weights"] - 200_000) < 100
    assert data["global_prune_kept_fraction"] == pytest.approx(0.2, abs=1e-3)
    assert "| round boundary" in result.stdout


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_iterative_scorers_harness_produces_every_row_and_its_table(tmp_path):
    result, saved = _run(tmp_path, "iterative_scorers", "--dataset=digits",
                         "--scorers=magnitude,snip,synflow", "--seeds=0,1", "--rounds=2",
                         "--score_batches=1")
    assert {(r["scorer"], r["seed"], r["round"]) for r in saved["rows"]} == {
        (s, seed, r) for s in ("magnitude", "snip", "synflow") for seed in (0, 1) for r in (0, 1)}
    round1 = {s["scorer"]: s for s in saved["summary"] if s["round"] == 1}
    assert all(s["seeds"] == 2 and s["min"] <= s["mean"] <= s["max"] for s in round1.values())
    # Same θ0, data order and targets: every scorer reaches the same density.
    assert len({round(s["density"], 4) for s in round1.values()}) == 1
    assert "| round | % weights | magnitude | snip | synflow |" in result.stdout


def test_sharded_state_harness_measures_every_mesh(tmp_path):
    pytest.importorskip("jax")
    result, data = _run(tmp_path, "sharded_state", "--devices=1,2", "--hidden=16", "--rounds=2")
    assert [(row["devices"], row["layouts_shared"]) for row in data["rows"]] == [
        (1, True), (2, True), (2, False)]
    assert data["same_counts_on_every_mesh"]
    one, two, before = data["rows"]
    # the baseline: Keras' default layout replicates the state on each device
    assert before["lottery_bytes_per_device_max"] == before["lottery_bytes_unsharded"]
    assert not before["specs_follow_weights"]
    assert one["lottery_bytes_unsharded"] == two["lottery_bytes_unsharded"]
    assert one["lottery_bytes_per_device_max"] == one["lottery_bytes_unsharded"]
    # fc1 and fc2 split in two, the 16x10 output layer's state whole on each
    assert two["lottery_bytes_per_device_max"] < 0.7 * one["lottery_bytes_unsharded"]
    assert one["specs_follow_weights"] and two["specs_follow_weights"]
    assert "| devices |" in result.stdout


def test_round_seconds_harness_times_every_variant(tmp_path):
    _, data = _run(tmp_path, "round_seconds", "--iterations=200", "--repeats=1")
    assert set(data["seconds"]) == {"train", "validation", "paper"}
    assert all(len(v) == 1 and v[0] > 0 for v in data["seconds"].values())
    parts = data["per_paper_round_seconds"]
    assert parts["total"] == pytest.approx(
        parts["training_steps"] + parts["validation"] + parts["test_evaluation"])
