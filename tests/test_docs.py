"""README and docs against their raw files: every raw file they name exists,
every result file records a command that reproduces it, and the figures
quoted from raw files say what the files say."""

import glob
import json
import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def _read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def _json(path):
    return json.loads(_read(path))


def test_every_raw_file_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        text = open(doc).read()
        for path in re.findall(r"(?:benchmarks/results|docs/reproduction)/[\w./{},-]+\.(?:json|csv|md|png)", text):
            names = [path]
            brace = re.search(r"\{([^}]*)\}", path)
            if brace:  # `..._seed{1,2}.json`
                names = [path.replace(brace.group(0), part) for part in brace.group(1).split(",")]
            missing += [f"{os.path.basename(doc)}: {n}" for n in names
                        if not os.path.exists(os.path.join(ROOT, n))]
    assert not missing, missing


@pytest.mark.parametrize("path", sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "benchmarks", "results", "*.json"))))
def test_a_result_file_records_the_command_that_made_it(path):
    """A seed in the file's name is in its command; a latency file's command
    names every thread count and batch size it holds timings for."""
    result = _json(path)
    command = result.get("command")
    assert command, f"{path} records no command"
    module = re.match(r"python -m benchmarks\.(\w+)(?: |$)", command).group(1)
    assert os.path.exists(os.path.join(ROOT, "benchmarks", f"{module}.py"))
    seed = re.search(r"_seed(\d+)", path)
    if seed:
        assert f"--seed={seed.group(1)}" in command
    for setting in result.get("ratio_to_dense", {}):  # "threads=1,batch=32"
        threads, batch = re.match(r"threads=(\d+),batch=(\d+)", setting).groups()
        listed = dict(re.findall(r"--(threads|batches)=([\d,]+)", command))
        assert threads in listed["threads"].split(",") and batch in listed["batches"].split(","), command


def test_update_counts_quoted_for_sparse_training_are_the_recorded_ones():
    text = _read("docs/METHODS.md")
    quoted = int(re.search(r"--update_every=25` \((\d+) updates instead of (\d+)", text).group(1))
    regular = int(re.search(r"updates instead of (\d+)", text).group(1))
    for path, expected in (("docs/reproduction/sparse_training/lenet_update25/results.json", quoted),
                           ("docs/reproduction/sparse_training/results.json", regular)):
        counts = {row["updates"] for row in _json(path) if row["method"] in ("rigl", "set")}
        assert counts == {expected}, (path, counts)


def test_synflow_mask_times_quoted_are_the_recorded_ones():
    text = _read("docs/METHODS.md")
    quoted = re.search(r"\(([\d.]+)–([\d.]+) s / ([\d.]+)–([\d.]+) s per mask", text).groups()
    for (low, high), model in zip((quoted[:2], quoted[2:]), ("lenet", "conv2")):
        seconds = [row["mask_seconds"] for row in
                   _json(f"docs/reproduction/ticket_methods/{model}_results.json")
                   if row["method"] == "synflow"]
        assert (float(low), float(high)) == (round(min(seconds), 1), round(max(seconds), 1))


def test_the_neuron_ticket_against_dense_is_quoted_over_every_seed():
    text = _read("README.md")
    quoted = re.search(r"test accuracy ([\d.]+) point below dense on average \(([^)]*) per\s+seed\)",
                       text)
    assert quoted, "README quotes the LeNet neuron ticket's accuracy against dense"
    gaps = []
    for name in ("tflite_latency_lenet", *(f"tflite_latency_lenet_seed{s}" for s in range(1, 5))):
        accuracy = _json(f"benchmarks/results/{name}.json")["accuracy"]
        gaps.append(100 * (accuracy["structured_ticket"] - accuracy["dense"]))
    assert float(quoted.group(1)) == round(-np.mean(gaps), 2)
    assert [float(v.replace("−", "-")) for v in quoted.group(2).split(", ")] == [
        round(g, 2) for g in gaps]
