"""Exports a saved IMP run: SavedModel, .tflite variants and a size/accuracy table.

    python -m examples.export_ticket --run_dir runs/demo

Reads the wrapped model an example saved (`<run_dir>/model.keras`, or the
last trial's `<run_dir>/trial<t>/model.keras`; the dataset comes from
`<run_dir>/config.json` unless --dataset is given), writes
`<run_dir>/export/` with `saved_model/`, `dense.tflite`, `sparse.tflite`,
`sparse_float16.tflite`, `dynamic.tflite`, `int8.tflite`, and prints (and
saves as export.md / export.json) each file's bytes, its ratio to the dense
float file and its test accuracy next to the Keras model's.
"""

import os

import json

from absl import app
from absl import flags
import keras
import numpy as np

from examples import common
import keras_lottery as kl

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", "runs/demo", "Output directory of an example run.")
flags.DEFINE_string("dataset", None, "Test data (default: the run's dataset).")
flags.DEFINE_integer("seed", None, "Seed of the dataset split (default: the run's).")

VARIANTS = [
    ("dense.tflite", dict(sparse=False, quantize=None)),
    ("sparse.tflite", dict(sparse=True, quantize=None)),
    ("sparse_float16.tflite", dict(sparse=True, quantize="float16")),
    ("dynamic.tflite", dict(sparse=False, quantize="dynamic")),
    ("int8.tflite", dict(sparse=False, quantize="int8")),
]


def find_model(run_dir):
    """The saved wrapped model of a run: model.keras or the last trial's."""
    candidates = [os.path.join(run_dir, "model.keras")]
    trials = sorted(
        (d for d in os.listdir(run_dir) if d.startswith("trial")) if os.path.isdir(run_dir) else [],
        key=lambda d: int(d[len("trial"):]) if d[len("trial"):].isdigit() else -1,
    )
    candidates += [os.path.join(run_dir, d, "model.keras") for d in reversed(trials)]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise app.UsageError(
        f"model.keras not found in {run_dir} or its trial folders: point "
        "--run_dir at the output directory of an example run."
    )


def run_settings(run_dir, dataset, seed):
    config_path = os.path.join(run_dir, "config.json")
    config = {}
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
    dataset = dataset or config.get("dataset", "digits")
    seed = config.get("seed", 0) if seed is None else seed
    return dataset, seed


def export_run(run_dir, dataset=None, seed=None):
    model = keras.models.load_model(find_model(run_dir))
    dataset, seed = run_settings(run_dir, dataset, seed)
    (x_train, _), _, (x_test, y_test) = common.load_dataset(dataset, seed)
    out = os.path.join(run_dir, "export")
    os.makedirs(out, exist_ok=True)
    keras_acc = common.accuracy(model.predict(x_test, verbose=0, batch_size=512), y_test)
    density = kl.sparsity_report(model).density
    rows = []
    saved = os.path.join(out, "saved_model")
    if not os.path.exists(saved):
        kl.export_saved_model(model, saved, sample_inputs=x_test[:32])
    dense_bytes = None
    keras_pred = np.argmax(model.predict(x_test, verbose=0, batch_size=512), 1)
    for name, options in VARIANTS:
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)
        result = kl.export_tflite(
            model, path, representative_data=x_train[:300], sample_inputs=x_test[:32], **options
        )
        logits = kl.tflite_predict(path, x_test)
        dense_bytes = dense_bytes or result.bytes
        rows.append(
            {
                "file": name,
                "bytes": result.bytes,
                "ratio_to_dense": result.bytes / dense_bytes,
                "test_accuracy": common.accuracy(logits, y_test),
                "same_prediction": float(np.mean(np.argmax(logits, 1) == keras_pred)),
            }
        )
    summary = {"density": density, "keras_test_accuracy": keras_acc, "files": rows}
    common.write_json(os.path.join(out, "export.json"), summary)
    header = ["file", "bytes", "ratio to dense", "test acc", "same prediction as Keras"]
    table_rows = [
        [r["file"], r["bytes"], r["ratio_to_dense"], r["test_accuracy"], r["same_prediction"]]
        for r in rows
    ]
    with open(os.path.join(out, "export.md"), "w") as f:
        f.write(
            f"Ticket density {100 * density:.2f}%, Keras test accuracy {keras_acc:.4f}\n\n"
            + common.markdown_table(header, table_rows) + "\n"
        )
    return summary, common.format_table(header, table_rows)


def main(argv):
    del argv
    from examples import quiet_start

    quiet_start.start_tensorflow()
    summary, table = export_run(FLAGS.run_dir, FLAGS.dataset, FLAGS.seed)
    print(f"ticket density {100 * summary['density']:.2f}%, "
          f"Keras test accuracy {summary['keras_test_accuracy']:.4f}")
    print(table)
    print(f"files in {os.path.join(FLAGS.run_dir, 'export')}")


if __name__ == "__main__":
    app.run(main)
