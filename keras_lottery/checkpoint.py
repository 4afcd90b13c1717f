"""Atomic, self-checking checkpoint files: arrays + JSON metadata in one `.npz`.

`write` stages the file next to its destination and `os.replace`s it into
place, so a reader sees the previous checkpoint or the new one, never half of
one (a process killed mid-write leaves only a `.part` file, which is ignored).
`read` validates the file and raises `CheckpointError` with what is wrong.
"""

import json

import numpy as np

from keras_lottery import file_io

FORMAT = "keras_lottery.imp_checkpoint"
VERSION = 1


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
    payload["__metadata__"] = np.array(
        json.dumps({"format": FORMAT, "version": VERSION, **metadata})
    )
    file_io.atomic_write(path, lambda f: np.savez(f, **payload))


def read(path):
    """Returns `(arrays, metadata)` of a checkpoint written by `write`.

    Raises:
        CheckpointError: unreadable, truncated or foreign file.

    Example:
    >>> read("/nonexistent.npz")
    Traceback (most recent call last):
    ...
    keras_lottery.checkpoint.CheckpointError: Cannot read checkpoint /nonexistent.npz: ...
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
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a keras_lottery IMP checkpoint.")
    if metadata.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {metadata.get('version')}; this "
            f"keras_lottery reads version {VERSION}."
        )
    return arrays, metadata
