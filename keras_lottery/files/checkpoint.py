"""Atomic, self-checking IMP checkpoints: arrays + JSON metadata in one `.npz`.

`write` stages the file next to its destination and `os.replace`s it into
place, so a reader sees the previous checkpoint or the new one, never half of
one (a process killed mid-write leaves only a `.part` file, which is ignored).
`read` validates the file and raises `CheckpointError` with what is wrong.
`model_arrays` / `restore_model` save and restore everything a model and its
optimizer hold (variables, and θ0/θk kept in host memory).
"""

import json

import numpy as np
from keras import ops

from keras_lottery.files import file_io
from keras_lottery.core import wrapping

FORMAT = "keras_lottery.imp_checkpoint"
VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint is damaged, or does not match the run resuming from it.

    Example:
    >>> issubclass(CheckpointError, ValueError)
    True
    """


def write(path, arrays, metadata):
    """Writes `arrays` (`{name: array}`) and `metadata` (JSON-able) atomically.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> write(path, {"a": np.zeros(2)}, {"round": 1})
    >>> read(path)[1]["round"]
    1
    """
    payload = dict(arrays)
    digests = {name: file_io.digest(array) for name, array in payload.items()}
    payload["__metadata__"] = np.array(json.dumps(file_io.json_safe(
        {"format": FORMAT, "version": VERSION, **metadata, "digests": digests})))
    file_io.atomic_write(path, lambda f: np.savez(f, **payload))


def read(path):
    """Returns `(arrays, metadata)` of a checkpoint written by `write`.

    Raises:
        CheckpointError: unreadable, truncated or foreign file.

    Example:
    >>> read("/nonexistent.npz")
    Traceback (most recent call last):
    ...
    keras_lottery.files.checkpoint.CheckpointError: Cannot read checkpoint /nonexistent.npz: ...
    """
    try:
        arrays = file_io.read_npz(path)
    except file_io.DAMAGED_FILE_ERRORS as error:
        raise CheckpointError(
            f"Cannot read checkpoint {path}: {error}. It is damaged; delete it "
            "to start the run over, or restore it from a copy."
        ) from error
    raw = arrays.pop("__metadata__", None)
    try:
        metadata = json.loads(str(raw)) if raw is not None else None
    except json.JSONDecodeError:
        metadata = None
    file_io.check_header(metadata, path, FORMAT, VERSION, CheckpointError, "IMP checkpoint",
                         "Start the run over in a new checkpoint_dir.")
    digests = metadata.pop("digests", None)  # None: written before digests
    altered = file_io.altered_arrays(arrays, digests) if digests is not None else []
    if altered:
        raise CheckpointError(
            f"{path}: the array(s) {altered[:5]}{' ...' if len(altered) > 5 else ''} differ "
            "from what was written (their SHA-256 digests do not match): the file was "
            "edited or damaged. Delete it to redo that round, or restore it from a copy."
        )
    return arrays, metadata


def model_arrays(model):
    """`(arrays, metadata)` of every variable of the model and its optimizer,
    and of the θ0/θk snapshots kept in host memory.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> sorted(model_arrays(model)[1])
    ['host_snapshots', 'model_variables', 'optimizer_variables']
    """
    arrays = {}
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)  # as restore_model does
    variables = model.variables
    optimizer_variables = optimizer.variables if optimizer is not None else []
    for i, v in enumerate(variables):
        arrays[f"model:{i}"] = ops.convert_to_numpy(v.value)
    for i, v in enumerate(optimizer_variables):
        arrays[f"optimizer:{i}"] = ops.convert_to_numpy(v.value)
    host = _host_snapshots(model)
    for i, snapshot in enumerate(host):
        arrays[f"host:{i}"] = snapshot.value
    metadata = {
        "model_variables": [[v.path, list(v.shape)] for v in variables],
        "optimizer_variables": [[v.path, list(v.shape)] for v in optimizer_variables],
        "host_snapshots": len(host),
    }
    return arrays, metadata


def restore_model(model, arrays, metadata, path):
    """Assigns what `model_arrays` saved, after checking it all fits.

    Raises:
        CheckpointError: other variables, shapes or counts than the model's.
    """
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        # Keras builds the slots at the first step; they must exist now to
        # receive the saved values.
        optimizer.build(model.trainable_variables)
    variables = model.variables
    optimizer_variables = optimizer.variables if optimizer is not None else []
    host = _host_snapshots(model)
    saved_shapes = [shape for _, shape in metadata["model_variables"]]
    if saved_shapes != [list(v.shape) for v in variables] or len(
        metadata["optimizer_variables"]
    ) != len(optimizer_variables) or metadata["host_snapshots"] != len(host):
        raise CheckpointError(
            f"{path} holds {len(saved_shapes)} model and "
            f"{len(metadata['optimizer_variables'])} optimizer variables; this model "
            f"has {len(variables)} and {len(optimizer_variables)} (or their shapes "
            "differ). Resume with the same model, wrapping and optimizer."
        )
    needed = (
        [f"model:{i}" for i in range(len(variables))]
        + [f"optimizer:{i}" for i in range(len(optimizer_variables))]
        + [f"host:{i}" for i in range(len(host))]
    )
    missing = [name for name in needed if name not in arrays]
    if missing:
        raise CheckpointError(f"{path} is missing {missing[:5]}.")
    for i, v in enumerate(variables):
        v.assign(arrays[f"model:{i}"])
    for i, v in enumerate(optimizer_variables):
        v.assign(arrays[f"optimizer:{i}"])
    for i, snapshot in enumerate(host):
        snapshot.assign(arrays[f"host:{i}"])


def _host_snapshots(model):
    return [
        p.snapshots[which]
        for p in wrapping.prunable_weights(model)
        if p.state.snapshots_on_host
        for which in sorted(p.snapshots)
    ]
