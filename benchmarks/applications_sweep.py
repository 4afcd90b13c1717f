"""Sweep: one model of every family `keras.applications` ships, as a user
would meet it (issue 24).

Each model is built with `weights=None` at the smallest input it accepts,
then: `kl.wrap`; one IMP round (2 rounds, rate 0.5) on random images, with
every pruned weight checked to be 0 after training; `kl.strip` (outputs
equal); `kl.export_tflite` (the file's predictions checked against Keras by
the export itself); channel-structured IMP and `kl.compact` (the smaller
model checked against the masked one by `compact` itself; where channel IMP
is refused for a layer kind, again with only Conv2D and Dense kernels
wrapped, the workaround the refusal names; where compact is refused, once more
with the layers its refusal names left dense). Each step passes,
or is refused with an error that names the layer and the reason: anything
else (a crash, an error naming nothing) is a failure of this sweep.

    python -m benchmarks.applications_sweep            # all families
    python -m benchmarks.applications_sweep --models=MobileNetV2,ResNet50
"""

import os
import json
import sys
import time
import traceback

from absl import app
from absl import flags

from examples import harness


# One per family, at the smallest input each accepts with weights=None.
MODELS = {
    "ConvNeXtTiny": 32,
    "DenseNet121": 32,
    "EfficientNetB0": 32,
    "EfficientNetV2B0": 32,
    "InceptionResNetV2": 75,
    "InceptionV3": 75,
    "MobileNet": 32,
    "MobileNetV2": 32,
    "MobileNetV3Small": 32,
    "NASNetMobile": 32,
    "ResNet50": 32,
    "ResNet50V2": 32,
    "VGG16": 32,
    "Xception": 71,
}

FLAGS = flags.FLAGS
flags.DEFINE_list("models", list(MODELS), "keras.applications classes to sweep.")
harness.define_common_flags(seed=0, output="applications_sweep.json")
flags.DEFINE_list("redo", [], "Models to sweep again although --output has their rows.")
flags.DEFINE_bool("table", False, "Only print --output's rows as the markdown table of "
                  "docs/RELIABILITY.md (no sweep).")


def _step(row, name, run):
    """Runs one step; records "ok: ...", "refused: <error>" or "FAILED"."""
    started = time.perf_counter()
    try:
        row[name] = "ok" + (f": {run()}" if run is not None else "")
        return True
    except Exception as error:  # noqa: BLE001 - a crash is this sweep's finding
        if isinstance(error, (ValueError, RuntimeError)) and _raised_by_keras_lottery(error):
            row[name] = f"refused: {type(error).__name__}: {str(error)[:4000]}"
            return False
        row[name] = f"FAILED: {type(error).__name__}: {str(error)[:300]}"
        row[name + "_traceback"] = traceback.format_exc()[-2000:]
    finally:
        row[name + "_seconds"] = round(time.perf_counter() - started, 1)
    return False


def _raised_by_keras_lottery(error):
    """Whether the innermost frame that raised `error` is keras_lottery's own
    (a refusal), not Keras' or TensorFlow's (a crash)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}keras_lottery{os.sep}" in frames[-1].filename


def sweep_one(name, size, seed):
    import keras
    import numpy as np

    import keras_lottery as kl
    from keras_lottery.backend import layer_tree

    rng = np.random.default_rng(seed)
    x = rng.random((16, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    row = {"model": name, "input": size}
    state = {}

    def build():
        # A fresh session per build, as in a user's new process: the same
        # auto-generated layer names (`conv2d_208`) every time, so that the
        # names a refusal gives match the model built again to follow it.
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
        return model

    def wrap():
        model = kl.wrap(build())
        state["model"] = model
        row["params"] = int(sum(np.prod(v.shape) for v in kl.core.wrapping.plain_weights(model)))
        return f"{len(kl.prunable_weights(model))} pruned weights"

    def imp(structure="weight", exclude=None, names=()):
        if structure == "weight":
            model = state["model"]
        else:
            model = build()
            present = {layer.name for layer, _ in layer_tree.walk(model)}
            missing = sorted(set(names) - present)
            if missing:  # the refusal named layers that this build does not have
                raise AssertionError(f"no layers {missing[:5]} in the rebuilt model")
            model = kl.wrap(model, exclude=exclude)
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        run = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rate=0.5,
                                           structure=structure, verbose=0)
        model.fit(x, y, batch_size=8, epochs=run.total_epochs, callbacks=[run], verbose=0)
        moved = [p.key for p in kl.prunable_weights(model)
                 if np.any(keras.ops.convert_to_numpy(p.variable.value)[~p.state.mask_array()])]
        if moved:
            raise AssertionError(f"pruned weights moved in training: {moved[:5]}")
        state[structure] = model
        return f"density {run.results[-1]['density']:.4f}"

    def strip():
        model = state["weight"]
        plain = kl.strip(model)
        error = float(np.abs(keras.ops.convert_to_numpy(plain(x[:4], training=False))
                             - keras.ops.convert_to_numpy(model(x[:4], training=False))).max())
        if error > 1e-4:
            raise AssertionError(f"strip changed the outputs by {error:.3g}")
        return f"max |diff| {error:.2g}"

    def export():
        import tempfile

        result = kl.export_tflite(state["weight"], os.path.join(tempfile.mkdtemp(), "m.tflite"),
                                  sample_inputs=x[:4])
        return f"{result.bytes} bytes, max |diff| {result.max_abs_error:.2g}"

    def compact():
        try:
            result = kl.compact(state["channel"], sample_inputs=x[:4])
        except kl.CompactionError as error:
            state["refusal"] = str(error)
            raise
        row["compact_params"] = [result.params_before, result.params_after]
        return (f"{result.params_before} -> {result.params_after} params, "
                f"{sum(result.removed.values())} units removed, {result.folded} folded")

    if _step(row, "wrap", wrap) and _step(row, "imp", imp):
        _step(row, "strip", strip)
        _step(row, "tflite", export)
    excluded = None
    if _step(row, "channel_imp", lambda: imp("channel")):
        _step(row, "compact", compact)
    elif "exclude it from wrapping" in row["channel_imp"]:
        # The workaround the refusal names: only Conv2D and Dense kernels pruned.
        def excluded(layer):
            return not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))

        if _step(row, "channel_imp_excluding", lambda: imp("channel", excluded)):
            _step(row, "compact", compact)
    if "refusal" in state and "exclude=[" in state["refusal"]:
        # Followed once, as a user would: the layers the refusal names left dense.
        import ast

        names = set(ast.literal_eval(state["refusal"].split("exclude=", 1)[1].split("]")[0] + "]"))
        row["compact_exclude"] = len(names)

        def leave_dense(layer):
            return layer.name in names or (excluded is not None and excluded(layer))

        if _step(row, "channel_imp_following", lambda: imp("channel", leave_dense, names)):
            _step(row, "compact_following", compact)
    keras.backend.clear_session()
    return row


def _layers_named(message, limit=3):
    """`'a' (Add), 'b' (Multiply) and 4 more` from a refusal's text."""
    import re

    found = re.findall(r"'([^']+)' \((\w+)", message.split("exclude=")[0])
    if not found:
        return message.split(": ", 1)[-1][:160]
    shown = ", ".join(f"`{name}` ({kind})" for name, kind in found[:limit])
    return shown + (f" and {len(found) - limit} more" if len(found) > limit else "")


def _cell(row, step):
    text = row.get(step)
    if text is None:
        return "—"
    if text.startswith("ok"):
        return text[4:] if text.startswith("ok: ") else "ok"
    for kind in ("DepthwiseConv2D", "SeparableConv2D"):
        if f"belongs to a {kind} layer" in text:
            return f"refused: `{text.split(': ')[2].split('/')[0]}` is a {kind}"
    if "CompactionError" in text:
        if "cannot make this model smaller" in text:
            return (f"refused at {_layers_named(text)}: every layer it could shrink writes into "
                    "them, so the model cannot be made smaller")
        return "refused at " + _layers_named(text)
    return text.replace("|", "/")[:200]


def table(rows):
    """The markdown table of docs/RELIABILITY.md, from the sweep's rows.

    Example:
    >>> print(table([{"model": "M", "input": 32, "params": 10, "imp": "ok: density 0.5",
    ...               "strip": "ok: max |diff| 0"}]).splitlines()[-1])
    | M (32) | 10 | density 0.5 | max abs diff 0 | — | — | — |
    """
    lines = ["| model (input) | params | IMP 2 rounds | strip | .tflite (bytes, max abs diff) "
             "| channel IMP | compact |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        channel = _cell(row, "channel_imp")
        if "channel_imp_excluding" in row:
            channel += f"; Conv2D/Dense only: {_cell(row, 'channel_imp_excluding')}"
        compact = _cell(row, "compact")
        if "compact_following" in row:
            compact += (f"; with the {row['compact_exclude']} layers it names left dense: "
                        f"{_cell(row, 'compact_following')}")
        cells = [f"{row['model']} ({row['input']})", f"{row.get('params', 0):,}",
                 _cell(row, "imp"), _cell(row, "strip"), _cell(row, "tflite"), channel, compact]
        lines.append("| " + " | ".join(c.replace("max |diff|", "max abs diff") for c in cells)
                     + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.table:
        with open(FLAGS.output) as f:
            print(table(json.load(f)["rows"]))
        return
    from examples import run_config
    from examples import quiet_start

    quiet_start.start_tensorflow()
    from keras_lottery.files import file_io

    unknown = sorted(set(FLAGS.models) - set(MODELS))
    if unknown:
        raise app.UsageError(f"--models: unknown {unknown}; choose from {sorted(MODELS)}.")
    rows = []
    if os.path.exists(FLAGS.output):  # resume: a model already swept is kept
        with open(FLAGS.output) as f:
            rows = [r for r in json.load(f)["rows"] if r["model"] not in FLAGS.redo]
    done = {r["model"] for r in rows}
    for name in FLAGS.models:
        if name in done:
            continue
        row = {**sweep_one(name, MODELS[name], FLAGS.seed),
               "command": run_config.full_command(FLAGS, sys.argv[0])}
        rows = sorted(rows + [row], key=lambda r: list(MODELS).index(r["model"]))
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("traceback")}),
              flush=True)
        result = {"command": run_config.full_command(FLAGS, sys.argv[0]), "rows": rows}
        file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(result, indent=1).encode()))


if __name__ == "__main__":
    app.run(main)
