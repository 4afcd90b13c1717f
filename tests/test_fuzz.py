"""Fuzzing: damaged checkpoint/ticket files and random example flags always get
a clean error (or an unchanged result), never a deep traceback or a wrong
result."""

import os

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_lottery as kl
from keras_lottery.files import checkpoint as checkpoint_lib
from conftest import classification_data
from conftest import mlp
import script_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    keras.utils.set_random_seed(0)
    model = kl.wrap(mlp())
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, verbose=0,
                                       checkpoint_dir=str(directory))
    x, y = classification_data()
    model.fit(x, y, epochs=2, callbacks=[imp], verbose=0)
    ticket = kl.save_ticket(model, str(directory / "ticket.npz"), imp=imp)
    return {
        "checkpoint": (directory / "imp_checkpoint.npz").read_bytes(),
        "ticket": open(ticket, "rb").read(),
    }


def _mutate(data, data_strategy):
    kind = data_strategy.draw(st.sampled_from(["truncate", "flip", "junk", "splice"]))
    if kind == "truncate":
        return data[: data_strategy.draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(data_strategy.draw(st.integers(1, 8))):
            i = data_strategy.draw(st.integers(0, len(out) - 1))
            out[i] ^= data_strategy.draw(st.integers(1, 255))
        return bytes(out)
    if kind == "junk":
        return data_strategy.draw(st.binary(min_size=0, max_size=512))
    i = data_strategy.draw(st.integers(0, len(data)))
    return data[:i] + data_strategy.draw(st.binary(min_size=1, max_size=64)) + data[i:]


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_damaged_checkpoint_is_refused_or_identical(tmp_path_factory, files, data):
    original = files["checkpoint"]
    path = tmp_path_factory.mktemp("c") / "imp_checkpoint.npz"
    path.write_bytes(_mutate(original, data))
    reference = tmp_path_factory.mktemp("r") / "imp_checkpoint.npz"
    reference.write_bytes(original)
    try:
        arrays, metadata = checkpoint_lib.read(str(path))
    except checkpoint_lib.CheckpointError:
        return
    good_arrays, good_metadata = checkpoint_lib.read(str(reference))
    assert metadata == good_metadata and _same(arrays, good_arrays), "damage went unnoticed"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_damaged_ticket_is_refused_or_identical(tmp_path_factory, files, data):
    path = tmp_path_factory.mktemp("t") / "ticket.npz"
    path.write_bytes(_mutate(files["ticket"], data))
    reference = tmp_path_factory.mktemp("tr") / "ticket.npz"
    reference.write_bytes(files["ticket"])
    try:
        ticket = kl.read_ticket(str(path))
    except kl.TicketError:
        return
    good = kl.read_ticket(str(reference))
    assert ticket.metadata == good.metadata
    assert _same(ticket.masks, good.masks) and _same(ticket.init, good.init)


@pytest.mark.parametrize("kind", ["ticket", "checkpoint"])
def test_byte_flip_sweep(tmp_path, files, kind):
    """A flipped byte every 97 bytes across the whole file (headers, zip
    directory and compressed data alike): always refused or harmless."""
    original = files[kind]
    reader = kl.read_ticket if kind == "ticket" else checkpoint_lib.read
    error = kl.TicketError if kind == "ticket" else checkpoint_lib.CheckpointError
    good = tmp_path / "good.npz"
    good.write_bytes(original)
    expected = reader(str(good))
    refused = 0
    for i in range(0, len(original), 97):
        damaged = bytearray(original)
        damaged[i] ^= 0x5A
        path = tmp_path / "bad.npz"
        path.write_bytes(bytes(damaged))
        try:
            got = reader(str(path))
        except error:
            refused += 1
            continue
        if kind == "ticket":
            assert got.metadata == expected.metadata and _same(got.masks, expected.masks)
            assert _same(got.init, expected.init)
        else:
            assert got[1] == expected[1] and _same(got[0], expected[0])
    assert refused > 0


FLAG_VALUES = {
    "--rounds": ["-1", "0", "1", "2", "x", "1.5"],
    "--iterations": ["-5", "0", "10", "20", "abc"],
    "--eval_every": ["0", "3", "10", "-2"],
    "--rate": ["-0.5", "0.2", "0.99", "1.0", "7", "nan"],
    "--controls": ["", "reinit", "random_prune,reinit", "foo", "reinit,bar"],
    "--rewind_to": ["init", "lr", "finetune", "5", "-3", "10000", "later"],
    "--dataset": ["digits", "mnist2", "idx:/nonexistent", "idx:"],
    "--batch_size": ["0", "16", "-4"],
    "--steps_per_execution": ["0", "1", "2"],
    "--distribute": ["none", "mirrored", "tpu"],
}


def test_random_flags_fail_cleanly(tmp_path):
    rng = np.random.default_rng(20261122)
    outcomes = []
    for case in range(12):
        args = [f"{flag}={rng.choice(values)}" for flag, values in FLAG_VALUES.items()
                if rng.random() < 0.5]
        args += ["--trials=1", "--export=false", "--tensorboard=false",
                 f"--output_dir={tmp_path / str(case)}"]
        if not any(a.startswith("--rounds=") for a in args):
            args.append("--rounds=2")
        if not any(a.startswith("--iterations=") for a in args):
            args.append("--iterations=10")
        if not any(a.startswith("--eval_every=") for a in args):
            args.append("--eval_every=10")
        result = script_runner.run_script(
            os.path.join(ROOT, "examples", "lenet.py"), args, timeout=600, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": "tensorflow"},
        )
        assert "Traceback" not in result.stderr, (args, result.stderr[-3000:])
        if result.returncode == 0:
            assert os.path.exists(tmp_path / str(case) / "results.json"), args
        outcomes.append(result.returncode == 0)
    assert not all(outcomes), "the fuzz cases should include invalid flags"
