"""Atomic writes, damaged files, JSON-safe values, settings differences."""

import os

import numpy as np
import pytest

from keras_lottery.files import file_io


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    file_io.atomic_write(str(path), lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        file_io.atomic_write(str(path), broken)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_read_npz_raises_a_damaged_file_error(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(file_io.DAMAGED_FILE_ERRORS):
        file_io.read_npz(str(path))


@pytest.mark.parametrize("header", [
    "{'descr': '<i8', 'fortran_order': False, 'shape': (2, }",  # NumPy's fallback: TokenError
    "{'descr': '<i8', 'fortran_order': False, 'shape': 2)}",  # SyntaxError
])
def test_a_damaged_array_header_is_a_damaged_file_error(tmp_path, header):
    """A flipped byte in a .npy header inside the archive (found by
    test_fuzz's byte-flip sweep of a ticket) is reported like any damage."""
    import zipfile

    encoded = header.encode("latin1")
    encoded += b" " * (63 - (10 + len(encoded)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(encoded).to_bytes(2, "little") + encoded
    path = tmp_path / "h.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", npy + np.arange(2).tobytes())
    with pytest.raises(file_io.DAMAGED_FILE_ERRORS):
        file_io.read_npz(str(path))


def test_json_safe_and_differences():
    assert file_io.json_safe({"a": np.float32(1.5), "b": [np.int64(2)]}) == {"a": 1.5, "b": [2]}
    differences = file_io.config_differences({"rate": 0.2, "k": 1}, {"rate": 0.5, "k": 1, "n": 3})
    assert differences == {"n": (None, 3), "rate": (0.2, 0.5)}
    assert "rate: on disk 0.2, now 0.5" in file_io.describe_differences(differences)
