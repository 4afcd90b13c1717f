"""Shared helpers of the example scripts: data, models, tables.

Data sources (no download needed for the first two):
- `digits`: scikit-learn's embedded `load_digits` (1,797 8x8 images);
- `idx:<dir>`: any directory of MNIST-format IDX files
  (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
  `t10k-...`), e.g. Debian's dataset-fashion-mnist in
  /usr/share/datasets/fashion-mnist;
- `mnist`, `fashion_mnist`, `cifar10`: tensorflow-datasets (downloads once).
Splits follow the paper: 5K of MNIST's 60K training images and 5K of
CIFAR-10's 50K are held out for validation (the same fractions for IDX
directories); `digits` is split 55:5:10 like MNIST's 70K.
"""

import gzip
import json
import os
import struct

import numpy as np

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path):
    """Reads one IDX file (optionally gzipped) into a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path} is too short to be an IDX file.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file.")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise ValueError(
            f"{path} holds {payload.size} values; its header says {shape}."
        )
    return payload.reshape(shape)


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"No {stem}[.gz] in {directory}: an IDX directory needs "
        f"{sorted(IDX_FILES.values())} (optionally gzipped)."
    )


def load_idx_dir(directory, validation=None, seed=0):
    """MNIST-format IDX directory -> (train, val, test), images in [0, 1].

    `validation` defaults to 5/60 of the training images (the paper's 5K of
    MNIST's 60K).
    """
    arrays = {k: read_idx(_find(directory, v)) for k, v in IDX_FILES.items()}
    x = arrays["train_images"].astype("float32") / 255.0
    y = arrays["train_labels"].astype("int32")
    if validation is None:
        validation = round(len(x) * 5 / 60)
    if validation >= len(x):
        raise ValueError(
            f"Validation split of {validation} leaves no training data "
            f"({len(x)} training images)."
        )
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    test = (arrays["test_images"].astype("float32") / 255.0, arrays["test_labels"].astype("int32"))
    return (x[validation:], y[validation:]), (x[:validation], y[:validation]), test


def load_digits_split(seed=0):
    """scikit-learn digits (8x8, [0, 1]) split 55:5:10 like the paper's MNIST."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = round(len(x) * 10 / 70)
    n_val = round(len(x) * 5 / 70)
    test = x[:n_test], y[:n_test]
    val = x[n_test : n_test + n_val], y[n_test : n_test + n_val]
    train = x[n_test + n_val :], y[n_test + n_val :]
    return train, val, test


TFDS_VALIDATION = {"mnist": 5 / 60, "fashion_mnist": 5 / 60, "cifar10": 5 / 50}


def load_tfds(name, seed=0):
    """tensorflow-datasets `mnist` / `fashion_mnist` / `cifar10` -> splits."""
    import tensorflow_datasets as tfds

    def split(which):
        ds = tfds.load(name, split=which, as_supervised=True, batch_size=4096)
        xs, ys = [], []
        for x, y in tfds.as_numpy(ds):
            xs.append(x)
            ys.append(y)
        return (
            np.concatenate(xs).astype("float32") / 255.0,
            np.concatenate(ys).astype("int32"),
        )

    x, y = split("train")
    test = split("test")
    n_val = round(len(x) * TFDS_VALIDATION[name])
    if n_val < 1 or n_val >= len(x):
        raise ValueError(
            f"{name} has {len(x)} training examples: too few for a validation split."
        )
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val]), test


def load_dataset(name, seed=0):
    """`digits`, `idx:<dir>`, `mnist`, `fashion_mnist` or `cifar10` ->
    (train, val, test) as ((x, y), (x, y), (x, y))."""
    if name == "digits":
        return load_digits_split(seed)
    if name.startswith("idx:"):
        return load_idx_dir(name[len("idx:") :], seed=seed)
    if name in TFDS_VALIDATION:
        return load_tfds(name, seed)
    raise ValueError(
        f"Unknown dataset {name!r}: use 'digits', 'idx:<directory of IDX "
        f"files>' or one of {sorted(TFDS_VALIDATION)}."
    )


def compile_lenet(model, learning_rate=1.2e-3):
    """The paper's LeNet optimizer (Adam 1.2e-3) and a logits loss."""
    import keras

    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def summary(values):
    """Mean, std, min and max of `values` over trials or seeds, and the
    values themselves (figures quote the mean with its range, never one run).

    >>> summary([1.0, 3.0])
    {'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0, 'values': [1.0, 3.0]}
    """
    values = np.asarray(values, float)
    return {"mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()), "values": values.tolist()}


def format_table(header, rows):
    """Fixed-width text table of `rows` (lists of str/float)."""
    cells = [header] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(header, rows):
    cells = [[_cell(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_json(path, data):
    """Writes JSON atomically (keras_lottery.files.file_io)."""
    from keras_lottery.files import file_io

    payload = json.dumps(file_io.json_safe(data), indent=2, default=float).encode()
    file_io.atomic_write(path, lambda f: f.write(payload))
