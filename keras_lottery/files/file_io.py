"""Files keras_lottery writes and reads back: atomic writes, `.npz` reads
that fail cleanly on damage, JSON-safe metadata.

Shared by ticket files, IMP checkpoints and exported `.tflite` files.
"""

import hashlib
import os
import struct
import tempfile
import tokenize
import zipfile
import zlib

import numpy as np
from keras import ops

# What NumPy's and zipfile's readers raise on a damaged file (a flipped byte
# can hit a header, the compression method, or deflated data; a .npy header
# that no longer parses raises SyntaxError, or tokenize.TokenError from
# NumPy's fallback parser).
DAMAGED_FILE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    NotImplementedError,
    SyntaxError,
    struct.error,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


def atomic_write(path, write):
    """Calls `write(file)` on a temporary file beside `path`, then moves it
    into place: readers see the old file or the new one, never half of one.

    Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a", "b.bin")
    >>> atomic_write(path, lambda f: f.write(b"ok"))
    >>> open(path, "rb").read()
    b'ok'
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".part")
    try:
        # mkstemp makes the file 0600; the file gets the mode `open()` would give it.
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def umask():
    """The process' umask (read without changing it where Linux allows).

    Example:
    >>> 0 <= umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o22)
    os.umask(current)
    return current


def permit_as_created(path):
    """Gives `path` (a file, or a directory and everything in it) the modes
    `open()` and `os.makedirs` give under the current umask, for what was
    staged in a private temporary directory (mode 0700).

    Example:
    >>> import tempfile
    >>> directory = tempfile.mkdtemp()
    >>> permit_as_created(directory)
    >>> oct(os.stat(directory).st_mode & 0o777) == oct(0o777 & ~umask())
    True
    """
    mask = umask()
    if not os.path.isdir(path):
        os.chmod(path, 0o666 & ~mask)
        return
    for root, directories, files in os.walk(path):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def digest(array):
    """SHA-256 of an array's dtype, shape and bytes (hex): what a file
    stores beside each array so that an edited array is found on reading.

    Example:
    >>> digest(np.zeros(2, bool)) == digest(np.zeros(2, bool)), digest(np.zeros(2)) == digest(np.ones(2))
    (True, False)
    """
    array = np.ascontiguousarray(array)
    hasher = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    hasher.update(array.tobytes())
    return hasher.hexdigest()


def altered_arrays(arrays, digests):
    """Names of the arrays whose digest differs from `digests` (`{name: hex}`,
    written by `digest`), and of the arrays either side lacks, sorted.

    Example:
    >>> a = {"x": np.arange(3)}
    >>> altered_arrays(a, {"x": digest(np.arange(3))}), altered_arrays(a, {"x": digest(np.ones(3))})
    ([], ['x'])
    """
    names = set(arrays) | set(digests)
    return sorted(n for n in names if n not in arrays or digests.get(n) != digest(arrays[n]))


def read_npz(path):
    """`{name: array}` of an `.npz` file (no pickles). Raises one of
    `DAMAGED_FILE_ERRORS` when the file is missing or damaged.

    Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
    >>> atomic_write(path, lambda f: np.savez(f, x=np.arange(2)))
    >>> read_npz(path)["x"].tolist()
    [0, 1]
    """
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def check_header(metadata, path, format_name, version, error, what, fix=""):
    """Raises `error` unless `metadata` (a file's parsed header) is a dict of
    `format_name` at `version`; `what` names the kind of file, `fix` says
    what to do about another version.

    Example:
    >>> check_header({"format": "f", "version": 2}, "x.npz", "f", 1, ValueError, "ticket")
    Traceback (most recent call last):
    ...
    ValueError: x.npz has ticket version 2; this keras_lottery reads version 1.
    """
    if not isinstance(metadata, dict) or metadata.get("format") != format_name:
        raise error(f"{path} is not a keras_lottery {what}.")
    if metadata.get("version") != version:
        raise error(f"{path} has {what} version {metadata.get('version')}; this keras_lottery "
                    f"reads version {version}.{fix and ' ' + fix}")


def json_safe(value):
    """`value` with NumPy scalars and tensors turned into plain Python.

    Example:
    >>> json_safe({"a": np.float32(0.5), "b": (np.int64(1),)})
    {'a': 0.5, 'b': [1]}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "shape"):
        return ops.convert_to_numpy(value).tolist()
    return value


def config_differences(saved, now):
    """`{key: (saved value, current value)}` for every key whose value
    differs between two JSON-able settings dicts.

    Example:
    >>> config_differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    {'b': (2, 3), 'c': (None, 4)}
    """
    saved, now = json_safe(saved), json_safe(now)
    return {
        key: (saved.get(key), now.get(key))
        for key in sorted(set(saved) | set(now))
        if saved.get(key) != now.get(key)
    }


def describe_differences(differences):
    """`"key: on disk X, now Y, ..."` for error messages.

    Example:
    >>> describe_differences({"rate": (0.2, 0.5)})
    'rate: on disk 0.2, now 0.5'
    """
    return ", ".join(f"{key}: on disk {a!r}, now {b!r}" for key, (a, b) in differences.items())
