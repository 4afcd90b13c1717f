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

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import common  # noqa: E402


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


def _run(script, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=str(ROOT),
    )


def test_demo_and_export_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = _run("demo.py", "--rounds=3", "--epochs_per_round=1", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    header = next(l for l in result.stdout.splitlines() if l.strip().startswith("round"))
    for column in ("% remaining", "ticket acc", "reinit acc", "early-stop step"):
        assert column in header
    assert {"model.keras", "ticket.npz", "results.json"} <= set(os.listdir(out))
    results = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in results["ticket"]] == [0, 1, 2]
    assert len(results["reinit_test_accuracy"]) == 3

    result = _run("export_ticket.py", f"--run_dir={out}", "--dataset=digits")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "export" / "export.json").read_text())
    files = {r["file"]: r for r in summary["files"]}
    assert files["dense.tflite"]["ratio_to_dense"] == 1.0
    assert files["sparse.tflite"]["bytes"] < files["dense.tflite"]["bytes"]
    assert files["sparse.tflite"]["same_prediction"] >= 0.999
    assert os.path.isdir(out / "export" / "saved_model")


def test_demo_rejects_bad_flags(tmp_path):
    result = _run("demo.py", "--rounds=0", f"--output_dir={tmp_path}")
    assert result.returncode != 0
    assert "rounds" in result.stderr and "Traceback" not in result.stderr


def test_export_ticket_missing_run(tmp_path):
    result = _run("export_ticket.py", f"--run_dir={tmp_path / 'nothing'}")
    assert result.returncode != 0
    assert "model.keras not found" in result.stderr
