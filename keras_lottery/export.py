"""Deployable tickets: sparse SavedModel and TFLite/LiteRT files (TensorFlow only).

Every export strips the wrappers first (no masks or snapshots travel), writes
to a temporary path, runs the written file on sample inputs, compares its
outputs with the Keras model's and only then moves it into place. A file that
does not reproduce the model within a tolerance fitting its dtype is never
left at `path`: `ExportVerificationError` says what differed.

Known converter/runtime bug (TF 2.21, LiteRT 2.3): a quantized (`"int8"` or
`"dynamic"`) model with the sparse encoding fails to prepare, or returns
wrong outputs, on the default XNNPACK delegate. Such files are verified with the default runtime, so the
export raises and suggests `sparse=False` rather than handing over a file that
breaks (or silently computes wrong outputs) on the runtime users get.
"""

import contextlib
import dataclasses
import gzip
import io
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_lottery import file_io
from keras_lottery.report import sparsity_report
from keras_lottery.wrapping import find_wrappers
from keras_lottery.wrapping import strip

QUANTIZE_MODES = (None, "float16", "dynamic", "int8")
# max |tflite - keras| / max(1, max |keras|) allowed per weight format.
TOLERANCES = {None: 1e-4, "float16": 2e-2, "dynamic": 5e-2, "int8": 1e-1}


class ExportVerificationError(ValueError):
    """The exported file does not reproduce the Keras model; nothing was written.

    Example:
    >>> issubclass(ExportVerificationError, ValueError)
    True
    """


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What was written and how well it reproduces the model.

    Attributes:
        path: the file or directory written.
        format: "tf_saved_model" or "tflite".
        bytes: size on disk (for a SavedModel: all its files).
        max_abs_error: largest |exported - keras| output difference seen.
        tolerance: the bound it was checked against (relative to the output
            scale).
        runtime: the interpreter that ran the file.
        quantize: the quantization mode (TFLite).
        sparse: the `sparse` argument (True, False or "block").
        density: fraction of prunable weights that are non-zero.

    Example:
    >>> import tempfile, os
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> result = export_tflite(model, os.path.join(tempfile.mkdtemp(), "m.tflite"))
    >>> result.max_abs_error <= result.tolerance
    True
    """

    path: str
    format: str
    bytes: int
    max_abs_error: float
    tolerance: float
    runtime: str
    quantize: str = None
    sparse: object = False
    density: float = 1.0


def export_saved_model(model, path, sample_inputs=None):
    """Strips wrappers and writes a SavedModel with a `serve` signature.

    Args:
        model: a Keras model, wrapped or not.
        path: directory to create (must not exist).
        sample_inputs: inputs to verify with (default: 8 random examples).

    Returns:
        An `ExportResult`.

    Example:
    >>> import tempfile, os
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> out = os.path.join(tempfile.mkdtemp(), "ticket")
    >>> export_saved_model(model, out).format
    'tf_saved_model'
    """
    _require_tensorflow_backend("export_saved_model")
    import tensorflow as tf

    plain = _plain(model)
    _check_destination(path)
    x = _sample_inputs(plain, sample_inputs)
    expected = _predict(plain, x)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(path)) or ".")
    staged = os.path.join(tmp, "saved_model")
    try:
        plain.export(staged, format="tf_saved_model", verbose=False)
        loaded = tf.saved_model.load(staged)
        got = np.asarray(loaded.serve(tf.constant(x)))
        error = _check_outputs(got, expected, TOLERANCES[None], "SavedModel")
        shutil.move(staged, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(
        path=path,
        format="tf_saved_model",
        bytes=_disk_bytes(path),
        max_abs_error=error,
        tolerance=TOLERANCES[None],
        runtime="tf.saved_model",
        density=sparsity_report(plain).density,
    )


def export_tflite(
    model,
    path,
    *,
    sparse=True,
    quantize=None,
    representative_data=None,
    sample_inputs=None,
):
    """Writes a verified `.tflite` file of the (stripped) model.

    Args:
        model: a Keras model, wrapped or not.
        path: the `.tflite` file to write.
        sparse: store pruned FC/Conv weights in TFLite's sparse encoding
            (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`). `True` gives the
            smallest file: weights the converter put in 1x4 blocks are
            re-encoded as CSR when that is smaller (densified once at
            load time; see `keras_lottery.tflite_csr`). `"block"` keeps the
            converter's choice (TFLite's block-sparse FC kernel, a larger
            file). `False` stores every weight densely.
        quantize: None (float32), "float16", "dynamic" (int8 weights, float
            activations) or "int8" (int8 weights and activations, float
            inputs/outputs; needs `representative_data`).
        representative_data: an array of inputs (or an iterable of batches) for
            int8 calibration.
        sample_inputs: inputs to verify with (default: `representative_data`
            or 8 random examples).

    Returns:
        An `ExportResult`.

    Raises:
        ExportVerificationError: the file does not run, or differs from the
            Keras model beyond the tolerance of its format.

    Example:
    >>> import tempfile, os
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> out = os.path.join(tempfile.mkdtemp(), "ticket.tflite")
    >>> export_tflite(model, out, sparse=False).format
    'tflite'
    """
    _require_tensorflow_backend("export_tflite")
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"quantize must be one of {QUANTIZE_MODES}; received {quantize!r}."
        )
    if sparse not in (True, False, "block"):
        raise ValueError(
            f"sparse must be True, False or 'block'; received {sparse!r}."
        )
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "quantize='int8' calibrates activations and needs "
            "representative_data (a few hundred training inputs)."
        )
    plain = _plain(model)
    if sample_inputs is None and representative_data is not None:
        sample_inputs = _first_batch(representative_data)[:32]
    x = _sample_inputs(plain, sample_inputs)
    expected = _predict(plain, x)
    flatbuffer = _convert(tf, plain, bool(sparse), quantize, representative_data)
    if sparse is True:
        from keras_lottery.tflite_csr import reencode_as_csr

        flatbuffer, _ = reencode_as_csr(flatbuffer)
    runtime, got = _run_tflite(flatbuffer, x, sparse, quantize)
    try:
        error = _check_outputs(got, expected, TOLERANCES[quantize], "TFLite file")
    except ExportVerificationError as mismatch:
        raise ExportVerificationError(
            f"{mismatch}{_known_bug_hint(sparse, quantize)}"
        ) from None
    file_io.atomic_write(path, lambda f: f.write(flatbuffer))
    return ExportResult(
        path=path,
        format="tflite",
        bytes=len(flatbuffer),
        max_abs_error=error,
        tolerance=TOLERANCES[quantize],
        runtime=runtime,
        quantize=quantize,
        sparse=sparse,
        density=sparsity_report(plain).density,
    )


def size_report(model, directory, quantize=None, representative_data=None):
    """Bytes of the ticket as dense vs sparse `.tflite` and as a SavedModel.

    Writes `dense.tflite`, `sparse.tflite` and `saved_model/` under
    `directory` (all verified) and gzips the SavedModel's variables to show
    what the zeros save in transit.

    Args:
        model: a Keras model, wrapped or not.
        directory: where to write the files (created if missing).
        quantize, representative_data: as for `export_tflite`.

    Returns:
        A dict: `density`, `tflite_dense_bytes`, `tflite_sparse_bytes`,
        `tflite_sparse_ratio`, `saved_model_variables_bytes`,
        `saved_model_variables_gzip_bytes`, `gzip_ratio`.

    Example:
    >>> import tempfile
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    >>> report = size_report(model, tempfile.mkdtemp())
    >>> report["tflite_sparse_bytes"] > 0
    True
    """
    os.makedirs(directory, exist_ok=True)
    sample = (
        None if representative_data is None else _first_batch(representative_data)
    )
    dense, sparse = (
        export_tflite(
            model,
            os.path.join(directory, f"{name}.tflite"),
            sparse=name == "sparse",
            quantize=quantize,
            representative_data=representative_data,
            sample_inputs=sample,
        )
        for name in ("dense", "sparse")
    )
    saved = os.path.join(directory, "saved_model")
    if os.path.exists(saved):
        shutil.rmtree(saved)
    export_saved_model(model, saved, sample_inputs=sample)
    raw, packed = _variables_bytes(saved)
    return {
        "density": sparse.density,
        "tflite_dense_bytes": dense.bytes,
        "tflite_sparse_bytes": sparse.bytes,
        "tflite_sparse_ratio": sparse.bytes / dense.bytes,
        "saved_model_variables_bytes": raw,
        "saved_model_variables_gzip_bytes": packed,
        "gzip_ratio": packed / raw if raw else 1.0,
    }


def tflite_predict(path_or_bytes, x, batch_size=256):
    """Runs a `.tflite` file on `x` with the default runtime, in batches.

    Example:
    >>> import tempfile, os
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> out = os.path.join(tempfile.mkdtemp(), "m.tflite")
    >>> _ = export_tflite(model, out, sparse=False)
    >>> tflite_predict(out, np.ones((3, 4), "float32")).shape
    (3, 2)
    """
    content = path_or_bytes
    if isinstance(path_or_bytes, (str, os.PathLike)):
        with open(path_or_bytes, "rb") as f:
            content = f.read()
    x = np.asarray(x)
    outputs = []
    interpreter = None
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        interpreter, _ = _interpreter(content, batch.shape, interpreter)
        outputs.append(_invoke(interpreter, batch))
    return np.concatenate(outputs)


# ----------------------------------------------------------------- internals


def _require_tensorflow_backend(what):
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"keras_lottery.{what} needs the TensorFlow backend (it converts "
            f"with TensorFlow); the Keras backend is "
            f"'{keras.backend.backend()}'. Save the ticket with "
            "keras_lottery.save_ticket and export it in a TensorFlow process "
            "(KERAS_BACKEND=tensorflow)."
        )


def _plain(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model; received {model!r} of type "
            f"{type(model).__name__}."
        )
    return strip(model) if find_wrappers(model) else model


def _check_destination(path):
    if os.path.exists(path):
        raise FileExistsError(
            f"{path} already exists; choose a new path or remove it first "
            "(exports never overwrite)."
        )


def _sample_inputs(model, sample_inputs):
    if sample_inputs is not None:
        return np.asarray(sample_inputs)
    if len(model.inputs) != 1:
        raise ValueError(
            f"Model '{model.name}' has {len(model.inputs)} inputs; pass "
            "sample_inputs to verify the export."
        )
    spec = model.inputs[0]
    shape = tuple(8 if d is None else d for d in spec.shape)
    rng = np.random.default_rng(0)
    if "int" in str(spec.dtype):
        return rng.integers(0, 2, size=shape).astype(spec.dtype)
    return rng.normal(size=shape).astype("float32")


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _first_batch(data):
    if isinstance(data, np.ndarray):
        return data
    first = next(iter(data))
    if isinstance(first, (list, tuple)):
        first = first[0]
    return np.asarray(first)


def _convert(tf, model, sparse, quantize, representative_data):
    # from_keras_model exports a temporary SavedModel and prints its
    # signature; keep the library quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        return _convert_quietly(tf, model, sparse, quantize, representative_data)


def _convert_quietly(tf, model, sparse, quantize, representative_data):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if quantize is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = _representative(representative_data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _representative(data):
    def generator():
        if isinstance(data, np.ndarray):
            for i in range(min(len(data), 500)):
                yield [data[i : i + 1].astype("float32")]
        else:
            for batch in data:
                if isinstance(batch, (list, tuple)):
                    batch = batch[0]
                batch = np.asarray(batch, dtype="float32")
                for i in range(len(batch)):
                    yield [batch[i : i + 1]]

    return generator


def _interpreter(content, shape, interpreter=None):
    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai_edge_litert"
    except ImportError:  # pragma: no cover - depends on the environment
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
        runtime = "tf.lite"
    if interpreter is None:
        interpreter = Interpreter(model_content=content)
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != tuple(shape):
        interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    return interpreter, runtime


def _invoke(interpreter, x):
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _run_tflite(content, x, sparse, quantize):
    try:
        interpreter, runtime = _interpreter(content, x.shape)
        return runtime, _invoke(interpreter, x)
    except (RuntimeError, ValueError) as error:
        raise ExportVerificationError(
            f"The converted TFLite file does not run on the default runtime "
            f"({error}). Nothing was written.{_known_bug_hint(sparse, quantize)}"
        ) from error


def _known_bug_hint(sparse, quantize):
    if not (sparse and quantize in ("int8", "dynamic")):
        return ""
    return (
        f" This is the known LiteRT bug: quantize={quantize!r} with the sparse "
        "encoding fails to prepare or computes wrong outputs on the default "
        "XNNPACK delegate. Use sparse=False for quantized files (or "
        "quantize=None / 'float16' with sparse=True)."
    )


def _check_outputs(got, expected, tolerance, what):
    got = np.asarray(got, dtype="float64")
    expected = np.asarray(expected, dtype="float64")
    if got.shape != expected.shape:
        raise ExportVerificationError(
            f"The {what} returns shape {got.shape}; the Keras model returns "
            f"{expected.shape}. Nothing was written."
        )
    if not np.all(np.isfinite(got)):
        raise ExportVerificationError(
            f"The {what} returns non-finite values. Nothing was written."
        )
    error = float(np.max(np.abs(got - expected))) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    if error > tolerance * scale:
        raise ExportVerificationError(
            f"The {what} differs from the Keras model by up to {error:.3g} "
            f"(allowed: {tolerance * scale:.3g}). Nothing was written."
        )
    return error


def _disk_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _variables_bytes(saved_model_dir):
    variables = os.path.join(saved_model_dir, "variables")
    raw = packed = 0
    for name in sorted(os.listdir(variables)):
        with open(os.path.join(variables, name), "rb") as f:
            data = f.read()
        raw += len(data)
        packed += len(gzip.compress(data, compresslevel=9))
    return raw, packed
