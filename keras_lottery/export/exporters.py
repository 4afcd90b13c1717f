"""Deployable tickets: sparse SavedModel and TFLite/LiteRT files (TensorFlow only).

Every export works on a plain copy of the model (`keras_lottery.strip`: no
masks or snapshots travel; a mixed-precision model is copied as float32),
writes to a temporary path, runs the written file on sample inputs, compares
every output with the Keras model's and only then moves it into place. A
file that does not reproduce the model within a tolerance fitting its dtype
is never left at `path`: `ExportVerificationError` says what differed. Both
exports refuse an existing `path` unless `overwrite=True`.

Models with several inputs or outputs (lists or dicts) are supported: sample
inputs keep the model's input structure, and outputs are compared one by one.

Known converter/runtime bug (TF 2.21, LiteRT 2.3): a quantized (`"int8"` or
`"dynamic"`) model with the sparse encoding fails to prepare, or returns
wrong outputs, on the default XNNPACK delegate. Such files are verified with
the default runtime, so the export raises and suggests `sparse=False` rather
than handing over a file that breaks (or silently computes wrong outputs) on
the runtime users get.
"""

import contextlib
import dataclasses
import gzip
import io
import logging
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_lottery.files import file_io
from keras_lottery.backend import keras_internals
from keras_lottery.backend import layer_tree
from keras_lottery.core import wrapping
from keras_lottery.core.report import sparsity_report

QUANTIZE_MODES = (None, "float16", "dynamic", "int8")
# max |tflite - keras| / max(1, max |keras|) allowed per weight format.
TOLERANCES = {None: 1e-4, "float16": 2e-2, "dynamic": 5e-2, "int8": 1e-1}
_LOW_PRECISION = ("float16", "bfloat16")


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


def export_saved_model(model, path, sample_inputs=None, overwrite=False, verbose=False):
    """Writes a verified SavedModel (`serve` endpoint) of the plain model.

    Args:
        model: a Keras model, wrapped or not.
        path: directory to write.
        sample_inputs: inputs to verify with, in the model's input structure
            (default: 8 random examples per input).
        overwrite: replace an existing `path` (default: refuse).
        verbose: let TensorFlow's own log lines through (default: quiet;
            they are shown when the export fails).

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

    _check_destination(path, overwrite)
    plain = plain_model(model)
    x = _sample_inputs(plain, sample_inputs)
    expected = _predict(plain, x)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(path)) or ".")
    staged = os.path.join(tmp, "saved_model")
    try:
        with _quiet(verbose):
            plain.export(staged, format="tf_saved_model", verbose=False)
            loaded = tf.saved_model.load(staged)
            got = _flat(loaded.serve(x))
        error = _check_outputs(got, expected, TOLERANCES[None], "SavedModel")
        file_io.permit_as_created(staged)
        if os.path.exists(path):
            shutil.rmtree(path)
        shutil.move(staged, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(path=path, format="tf_saved_model", bytes=_disk_bytes(path),
                        max_abs_error=error, tolerance=TOLERANCES[None], runtime="tf.saved_model",
                        density=sparsity_report(plain).density)


def export_tflite(
    model,
    path,
    *,
    sparse=None,
    quantize=None,
    representative_data=None,
    sample_inputs=None,
    overwrite=False,
    verbose=False,
):
    """Writes a verified `.tflite` file of the plain model.

    Args:
        model: a Keras model, wrapped or not.
        path: the `.tflite` file to write.
        sparse: store pruned FC/Conv weights in TFLite's sparse encoding
            (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`). `True` gives the
            smallest file: weights the converter put in 1x4 blocks are
            re-encoded as CSR when that is smaller (densified once at load
            time; see `keras_lottery.export.tflite_csr`). `"block"` keeps the
            converter's choice (TFLite's block-sparse FC kernel, a larger
            file). `False` stores every weight densely. None (default):
            True for float files, False for quantized ones (the runtime
            computes quantized sparse files wrongly, see above; the int8
            file still keeps every pruned weight exactly 0: symmetric
            per-channel weight quantization maps 0 to 0).
        quantize: None (float32), "float16", "dynamic" (int8 weights, float
            activations) or "int8" (int8 weights and activations, float
            inputs/outputs; needs `representative_data`).
        representative_data: inputs for int8 calibration: an array (or, for
            several inputs, a list or dict of arrays), or an iterable of
            such batches.
        sample_inputs: inputs to verify with (default: `representative_data`
            or 8 random examples per input).
        overwrite: replace an existing `path` (default: refuse).
        verbose: let the converter's own log lines through (default: quiet;
            they are shown when the conversion fails).

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
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}; received {quantize!r}.")
    if sparse is None:
        sparse = quantize in (None, "float16")
    if sparse not in (True, False, "block"):
        raise ValueError(f"sparse must be True, False or 'block'; received {sparse!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "quantize='int8' calibrates activations and needs representative_data "
            "(a few hundred training inputs)."
        )
    _check_destination(path, overwrite)
    plain = plain_model(model)
    if sample_inputs is None and representative_data is not None:
        sample_inputs = _head(_first_batch(representative_data), 32)
    x = _sample_inputs(plain, sample_inputs)
    expected = _predict(plain, x)
    flatbuffer = _convert(tf, plain, bool(sparse), quantize, representative_data, verbose)
    if sparse is True:
        from keras_lottery.export.tflite_csr import reencode_as_csr

        flatbuffer, _ = reencode_as_csr(flatbuffer)
    runtime, got = _run_tflite(flatbuffer, plain, x, sparse, quantize)
    try:
        error = _check_outputs(got, expected, TOLERANCES[quantize], "TFLite file")
    except ExportVerificationError as mismatch:
        raise ExportVerificationError(f"{mismatch}{_known_bug_hint(sparse, quantize)}") from None
    file_io.atomic_write(path, lambda f: f.write(flatbuffer))
    return ExportResult(path=path, format="tflite", bytes=len(flatbuffer), max_abs_error=error,
                        tolerance=TOLERANCES[quantize], runtime=runtime, quantize=quantize,
                        sparse=sparse, density=sparsity_report(plain).density)


def size_report(model, directory, quantize=None, representative_data=None, verbose=False):
    """Bytes of the ticket as dense vs sparse `.tflite` and as a SavedModel.

    Writes `dense.tflite`, `sparse.tflite` and `saved_model/` under
    `directory` (all verified, replacing earlier ones) and gzips the
    SavedModel's variables to show what the zeros save in transit.

    Args:
        model: a Keras model, wrapped or not.
        directory: where to write the files (created if missing).
        quantize, representative_data, verbose: as for `export_tflite`.

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
    plain = plain_model(model)
    sample = None if representative_data is None else _first_batch(representative_data)
    dense, sparse = (
        export_tflite(
            plain,
            os.path.join(directory, f"{name}.tflite"),
            sparse=name == "sparse",
            quantize=quantize,
            representative_data=representative_data,
            sample_inputs=sample,
            overwrite=True,
            verbose=verbose,
        )
        for name in ("dense", "sparse")
    )
    saved = os.path.join(directory, "saved_model")
    export_saved_model(plain, saved, sample_inputs=sample, overwrite=True, verbose=verbose)
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

    Args:
        path_or_bytes: a `.tflite` path or its bytes.
        x: an array, or for several inputs a list or dict of arrays (dict keys
            and list order as the model's inputs).
        batch_size: examples per invoke.

    Returns:
        An array for one output, else a list of arrays (in output order).

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
    runner, _ = _runner(content)
    inputs = _named_inputs(runner, None, x)
    size = len(next(iter(inputs.values())))
    chunks = []
    for start in range(0, size, batch_size):
        batch = {name: value[start : start + batch_size] for name, value in inputs.items()}
        chunks.append(_run(runner, batch))
    outputs = [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]
    return outputs[0] if len(outputs) == 1 else outputs


def plain_model(model):
    """The model as it is exported: a plain float copy without lottery state
    (`strip`; float32 for a mixed-precision model), or the model itself when
    it holds no lottery state and computes in float32.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    >>> keras_lottery.prunable_weights(plain_model(model))
    []
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model; received {model!r} of type {type(model).__name__}."
        )
    if _is_low_precision(model):
        return wrapping.strip(model, dtype="float32")
    if wrapping.has_lottery_state(model):
        return wrapping.strip(model)
    return model


# ----------------------------------------------------------------- internals


def _is_low_precision(model):
    return any(
        str(getattr(layer, "compute_dtype", "float32")) in _LOW_PRECISION
        for layer, _ in layer_tree.walk(model)
    )


def _require_tensorflow_backend(what):
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"keras_lottery.{what} needs the TensorFlow backend (it converts with "
            f"TensorFlow); the Keras backend is '{keras.backend.backend()}'. Save the "
            "trained model here with model.save('ticket.keras'), then in a TensorFlow "
            "process (KERAS_BACKEND=tensorflow) load it with "
            "model = keras_lottery.load_model('ticket.keras') and export that. (A "
            "save_ticket file holds the masks and θ0, the network to retrain, not "
            "the trained weights.)"
        )


def _check_destination(path, overwrite):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists; choose a new path, remove it, or pass "
            "overwrite=True."
        )


@contextlib.contextmanager
def _quiet(verbose=False):
    """Keeps TensorFlow's export chatter out of the user's terminal: Python
    prints, absl INFO lines, and the converter's native log lines (written
    by C++ straight to file descriptors 1 and 2). If the block raises, the
    native lines are written to stderr after all: they explain the error.
    `verbose=True` lets everything through."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with _native_output_captured() as captured, contextlib.redirect_stdout(io.StringIO()):
            try:
                yield
            except BaseException:
                captured.replay = True
                raise
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class _Captured:
    replay = False


@contextlib.contextmanager
def _native_output_captured():
    """Sends file descriptors 1 and 2 to a temporary file for the block; its
    text goes to stderr afterwards only if the block set `replay`."""
    import sys

    captured = _Captured()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # pragma: no cover - no file descriptors to redirect
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if captured.replay:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
                sys.stderr.flush()


def _sample_inputs(model, sample_inputs):
    if sample_inputs is not None:
        return keras.tree.map_structure(np.asarray, sample_inputs)
    if not getattr(model, "inputs", None):
        raise ValueError(
            f"Model '{model.name}' has no symbolic inputs (a subclassed model); "
            "pass sample_inputs to verify the export."
        )
    return keras_internals.random_inputs(model)


def _predict(model, x):
    with _quiet():
        outputs = model(x, training=False)
    return _flat(outputs)


def _flat(outputs):
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]


def _first_batch(data):
    if isinstance(data, (np.ndarray, dict)) or (
        isinstance(data, (list, tuple)) and all(isinstance(d, np.ndarray) for d in data)
    ):
        return data
    first = next(iter(data))
    if isinstance(first, tuple) and len(first) in (2, 3):
        first = first[0]  # (x, y) batches of a dataset
    return keras.tree.map_structure(np.asarray, first)


def _head(data, count):
    return keras.tree.map_structure(lambda a: np.asarray(a)[:count], data)


def _convert(tf, model, sparse, quantize, representative_data, verbose=False):
    # Through a SavedModel: TFLiteConverter.from_keras_model cannot trace some
    # Keras 3 models (dict inputs of a KerasHub backbone), from_saved_model
    # converts them all.
    directory = tempfile.mkdtemp()
    try:
        with _quiet(verbose):
            model.export(os.path.join(directory, "m"), format="tf_saved_model", verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(directory, "m"))
            optimizations = []
            if quantize is not None:
                optimizations.append(tf.lite.Optimize.DEFAULT)
            if sparse:
                optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
            converter.optimizations = optimizations
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
            if quantize == "int8":
                converter.representative_dataset = _representative(model, representative_data)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            try:
                return converter.convert()
            except Exception as error:  # noqa: BLE001 - the converter raises many types
                text = str(error).strip()
                first = text.splitlines()[0][:200] if text else ""
                loops = [layer.name for layer, _ in layer_tree.walk(model)
                         if isinstance(layer, keras.layers.RNN) and not layer.unroll]
                hint = (
                    f" Its recurrent layers {loops} run a symbolic loop, which TensorFlow's "
                    "converter cannot convert for Keras 3: build them with unroll=True (a "
                    "fixed sequence length) for a .tflite file, or export a SavedModel."
                    if loops else "")
                raise ExportVerificationError(
                    f"The TFLite converter could not convert model '{model.name}' "
                    f"({type(error).__name__}: {first}). Nothing was written.{hint} A model "
                    "with layers TFLite has no kernel for exports as a SavedModel "
                    "(keras_lottery.export_saved_model), or with Keras' "
                    "model.export(path, format='litert'), which adds TensorFlow ops."
                ) from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _representative(model, data):
    structure = keras_internals.input_structure(model)
    names = (
        list(structure) if isinstance(structure, dict)
        else [t.name for t in keras.tree.flatten(structure)]
    )

    def samples(batch):
        if isinstance(batch, dict):
            flat = [np.asarray(batch[name], "float32") for name in names]
        else:
            flat = [np.asarray(a, "float32") for a in keras.tree.flatten(batch)]
        for i in range(len(flat[0])):
            values = [a[i : i + 1] for a in flat]
            yield dict(zip(names, values)) if len(values) > 1 else values

    def generator():
        if isinstance(data, (np.ndarray, dict)) or (
            isinstance(data, (list, tuple)) and all(isinstance(d, np.ndarray) for d in data)
        ):
            for count, sample in enumerate(samples(data)):
                if count >= 500:
                    return
                yield sample
            return
        for batch in data:
            if isinstance(batch, tuple) and len(batch) in (2, 3):
                batch = batch[0]
            yield from samples(batch)

    return generator


@contextlib.contextmanager
def _native_stderr_silenced():
    """LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK
    delegate" on the process' stderr; errors still arrive as exceptions."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no file descriptor 2
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _runner(content):
    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai_edge_litert"
    except ImportError:  # pragma: no cover - depends on the environment
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
        runtime = "tf.lite"
    with _native_stderr_silenced():
        interpreter = Interpreter(model_content=content)
        return interpreter.get_signature_runner(), runtime


def _named_inputs(runner, model, x):
    """`{signature input name: array}` for inputs `x` in the model's structure."""
    names = list(runner.get_input_details())
    if isinstance(x, dict):
        missing = sorted(set(names) - set(x))
        if missing:
            raise ValueError(f"Inputs {missing} are missing; the file takes {names}.")
        values = {name: np.asarray(x[name]) for name in names}
    else:
        flat = [np.asarray(v) for v in keras.tree.flatten(x)]
        if len(flat) != len(names):
            raise ValueError(f"{len(flat)} inputs given; the file takes {len(names)}: {names}.")
        if len(flat) == 1:
            values = {names[0]: flat[0]}
        else:
            order = [t.name for t in model.inputs] if model is not None else names
            values = dict(zip(order, flat)) if set(order) == set(names) else dict(zip(names, flat))
    details = runner.get_input_details()
    return {name: value.astype(details[name]["dtype"]) for name, value in values.items()}


def _run(runner, inputs):
    with _native_stderr_silenced():
        outputs = runner(**inputs)
    names = list(outputs)
    if all(n.startswith("output_") and n[len("output_"):].isdigit() for n in names):
        names = sorted(names, key=lambda n: int(n[len("output_"):]))
    return [np.asarray(outputs[name]) for name in names]


def _run_tflite(content, model, x, sparse, quantize):
    try:
        runner, runtime = _runner(content)
        return runtime, _run(runner, _named_inputs(runner, model, x))
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
    if len(got) != len(expected):
        raise ExportVerificationError(
            f"The {what} returns {len(got)} outputs; the Keras model returns "
            f"{len(expected)}. Nothing was written."
        )
    worst = 0.0
    for index, (g, e) in enumerate(zip(got, expected)):
        g = np.asarray(g, dtype="float64")
        e = np.asarray(e, dtype="float64")
        name = f"output {index}" if len(expected) > 1 else "its output"
        if g.shape != e.shape:
            raise ExportVerificationError(
                f"The {what}'s {name} has shape {g.shape}; the Keras model's has "
                f"{e.shape}. Nothing was written."
            )
        if not np.all(np.isfinite(g)):
            raise ExportVerificationError(
                f"The {what}'s {name} holds non-finite values. Nothing was written."
            )
        error = float(np.max(np.abs(g - e))) if g.size else 0.0
        scale = max(1.0, float(np.max(np.abs(e))) if e.size else 1.0)
        if error > tolerance * scale:
            raise ExportVerificationError(
                f"The {what} differs from the Keras model by up to {error:.3g} in "
                f"{name} (allowed: {tolerance * scale:.3g}). Nothing was written."
            )
        worst = max(worst, error)
    return worst


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
