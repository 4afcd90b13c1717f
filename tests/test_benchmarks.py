"""The benchmark harnesses run on tiny sizes and produce every row (no timing
assertions: timings are for benchmarks/, not tests)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_time_harness_produces_every_row(tmp_path):
    backends = ["tensorflow"] + [b for b in ("jax", "torch") if _importable(b)]
    out = tmp_path / "step_time.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "step_time.py"),
         f"--backends={','.join(backends)}", "--steps=10", "--repeats=1", f"--output={out}"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import step_time

    expected = sum(len(step_time.SETTINGS[b]) for b in backends)
    assert len(rows) == expected
    for row in rows:
        assert row["dense_ms"] > 0 and row["masked_ms"] > 0
        assert row["ratio"] == pytest.approx(row["ratio"])  # finite
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert "| backend |" in result.stdout


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None
