"""One-shot pruning of a small decoder language model: magnitude, Wanda and
SparseGPT at 50% and 2:4, by held-out perplexity.

The model is a KerasHub GPT-2 built from config (random init), trained here
on bytes of text already on this machine (default: the Python standard
library's source, the directory of the running Python's `os` module), with a
byte-level vocabulary (256 tokens): nothing is downloaded. The dense model is
trained once and saved; each (method, sparsity) cell loads it, prunes its
attention and MLP projections with `keras_lottery.prune_one_shot` on
--calibration_sequences training sequences, and reports the held-out
perplexity and the calibration time.

    python -m examples.one_shot_lm --steps=2000

Outputs (--output_dir): `config.json` (a rerun with other settings is
refused), `dense.weights.h5` (the trained model: a rerun skips training),
`<method>_<sparsity>.json` (one finished cell), `results.json`, `table.md`,
`perplexity.png`.
"""

import os

import glob
import json
import math
import sys
import time

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
METHODS = ("magnitude", "wanda", "sparsegpt")
flags.DEFINE_string("text_dir", os.path.dirname(os.__file__), "Directory of text files to train on.")
flags.DEFINE_string("text_glob", "*.py", "Which files of --text_dir.")
flags.DEFINE_integer("max_bytes", 3_000_000, "Bytes of text read (the last 10% held out).", lower_bound=10_000)
flags.DEFINE_integer("sequence_length", 128, "Tokens per sequence.", lower_bound=8)
flags.DEFINE_integer("layers", 2, "Transformer blocks.", lower_bound=1)
flags.DEFINE_integer("hidden_dim", 128, "Model width.", lower_bound=8)
flags.DEFINE_integer("heads", 4, "Attention heads.", lower_bound=1)
flags.DEFINE_integer("steps", 2000, "Training steps of the dense model.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Training batch size.", lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
flags.DEFINE_list("methods", list(METHODS), f"Of {', '.join(METHODS)}.")
flags.DEFINE_list("sparsities", ["0.5", "2:4"], "Fractions pruned, or N:M patterns.")
flags.DEFINE_integer("calibration_sequences", 64, "Training sequences to calibrate on.", lower_bound=1)
flags.DEFINE_integer("eval_sequences", 256, "Held-out sequences for perplexity.", lower_bound=1)
harness.define_common_flags(seed=0, output_dir="runs/one_shot_lm")


def read_text(directory, pattern, max_bytes):
    """Bytes of the files matching `pattern` in `directory` (sorted), up to
    `max_bytes`, as a uint8 array.

    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "a.py"), "w").write("abc")
    >>> read_text(d, "*.py", 10_000).tolist()
    [97, 98, 99]
    """
    import numpy as np

    paths = sorted(glob.glob(os.path.join(directory, pattern)))
    if not paths:
        raise FileNotFoundError(f"no file matches {pattern!r} in {directory!r}")
    chunks, size = [], 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read(max_bytes - size)
        chunks.append(data)
        size += len(data)
        if size >= max_bytes:
            break
    return np.frombuffer(b"".join(chunks), np.uint8)


def sequences(tokens, length, count, seed):
    """`count` random windows of `length + 1` tokens: (inputs, next tokens)."""
    import numpy as np

    starts = np.random.default_rng(seed).integers(0, len(tokens) - length - 1, count)
    windows = np.stack([tokens[s:s + length + 1] for s in starts]).astype("int32")
    return windows[:, :-1], windows[:, 1:]


def build(compiled=True):
    import keras
    import keras_hub

    keras.utils.set_random_seed(FLAGS.seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=256, num_layers=FLAGS.layers, num_heads=FLAGS.heads,
        hidden_dim=FLAGS.hidden_dim, intermediate_dim=4 * FLAGS.hidden_dim, dropout=0.0,
        max_sequence_length=FLAGS.sequence_length)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    if not compiled:  # a cell only reads the trained weights
        return model
    model.compile(keras.optimizers.Adam(FLAGS.learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
    return model


def inputs(tokens):
    import numpy as np

    return {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}


def perplexity(model, x, y):
    import numpy as np
    from keras import ops

    total, count = 0.0, 0
    for start in range(0, len(x), 32):
        logits = model(inputs(x[start:start + 32]), training=False)
        losses = ops.sparse_categorical_crossentropy(y[start:start + 32], logits, from_logits=True)
        total += float(np.sum(ops.convert_to_numpy(losses)))
        count += int(np.prod(y[start:start + 32].shape))
    return math.exp(total / count)


def main(argv):
    del argv
    from examples import quiet_start

    quiet_start.start_tensorflow()
    import numpy as np

    import keras_lottery as kl
    from examples import run_config
    from keras_lottery.files import file_io
    from examples.run_directory import RunDirectory

    bad = sorted(set(FLAGS.methods) - set(METHODS))
    if bad or not FLAGS.methods:
        raise app.UsageError(f"--methods: unknown {bad}; choose from {list(METHODS)}.")
    cells = []
    for sparsity in FLAGS.sparsities:
        if ":" in sparsity:
            cells.append((sparsity, {"structure": sparsity}))
        else:
            try:
                value = float(sparsity)
            except ValueError:
                value = -1.0
            if not 0.0 < value < 1.0:
                raise app.UsageError(f"--sparsities: {sparsity!r} is neither in (0, 1) nor N:M.")
            cells.append((sparsity, {"density": 1.0 - value}))
    try:
        tokens = read_text(FLAGS.text_dir, FLAGS.text_glob, FLAGS.max_bytes)
    except (FileNotFoundError, OSError) as error:
        raise app.UsageError(f"--text_dir: {error}") from None
    settings = {k: v for k, v in run_config.script_flags(FLAGS, [sys.argv[0]]).items()
                if k not in ("output_dir", "methods", "sparsities")}
    directory = RunDirectory(FLAGS.output_dir)
    directory.prepare(settings, trials=1)
    split = int(0.9 * len(tokens))
    train, held_out = tokens[:split], tokens[split:]
    x_eval, y_eval = sequences(held_out, FLAGS.sequence_length, FLAGS.eval_sequences, 1)
    x_cal, _ = sequences(train, FLAGS.sequence_length, FLAGS.calibration_sequences, 2)
    calibration = [inputs(x_cal[i:i + 16]) for i in range(0, len(x_cal), 16)]
    weights = directory.file("dense.weights.h5")
    model = build()
    if os.path.exists(weights):
        model.load_weights(weights)
        print(f"dense model: loaded {weights}", flush=True)
    else:
        x, y = sequences(train, FLAGS.sequence_length, FLAGS.steps * FLAGS.batch_size, 0)
        print(f"dense model: {FLAGS.steps} steps on {len(train):,} bytes of {FLAGS.text_dir}",
              flush=True)
        started = time.perf_counter()
        model.fit(inputs(x), y, batch_size=FLAGS.batch_size, epochs=1, verbose=2)
        print(f"trained in {time.perf_counter() - started:.0f}s", flush=True)
        model.save_weights(weights + ".part.weights.h5")
        os.replace(weights + ".part.weights.h5", weights)
    dense = perplexity(model, x_eval, y_eval)
    rows = [{"method": "dense", "sparsity": "0", "perplexity": dense}]
    print(f"dense: held-out perplexity {dense:.3f}", flush=True)
    for sparsity, target in cells:
        for method in FLAGS.methods:
            name = f"{method}_{sparsity.replace(':', 'of')}.json"
            path = directory.file(name)
            if os.path.exists(path):
                with open(path) as f:
                    rows.append(json.load(f))
                print(f"{method} at {sparsity}: already done, skipped", flush=True)
                continue
            model = build(compiled=False)
            model.load_weights(weights)
            kl.wrap(model, exclude=["*embedding*"])  # one-shot prunes the projections
            result = kl.prune_one_shot(model, method, calibration_data=calibration, verbose=0,
                                       **target)
            row = {"method": method, "sparsity": sparsity,
                   "perplexity": perplexity(model, x_eval, y_eval),
                   "calibration_seconds": result.seconds,
                   "kept": kl.masks.density(result.masks),
                   "mean_reconstruction_error": float(np.mean(
                       [e for e in result.errors.values() if e is not None] or [np.nan]))}
            directory.write_json(name, row)
            rows.append(row)
            print(f"{method} at {sparsity}: perplexity {row['perplexity']:.3f} "
                  f"({row['perplexity'] / dense - 1:+.1%} vs dense), calibration "
                  f"{row['calibration_seconds']:.1f}s", flush=True)
    directory.write_json("results.json", rows)
    table = table_of(rows, dense)
    file_io.atomic_write(directory.file("table.md"), lambda f: f.write(table.encode() + b"\n"))
    plot(rows, dense, directory.file("perplexity.png"))
    print(table)


def table_of(rows, dense):
    """Markdown table: perplexity per method and sparsity, vs dense.

    >>> print(table_of([{"method": "wanda", "sparsity": "0.5", "perplexity": 4.4,
    ...                  "calibration_seconds": 1.0}], 4.0))
    | sparsity | method | perplexity | vs dense | calibration s |
    |---|---|---|---|---|
    | 0.5 | wanda | 4.4000 | +10.0% | 1.0 |
    """
    from examples import common

    lines = [[row["sparsity"], row["method"], row["perplexity"],
              f"{row['perplexity'] / dense - 1:+.1%}", f"{row['calibration_seconds']:.1f}"]
             for row in rows if row["method"] != "dense"]
    return common.markdown_table(["sparsity", "method", "perplexity", "vs dense",
                                  "calibration s"], lines)


def plot(rows, dense, path):
    """`perplexity.png`: one bar per method and sparsity, the dense line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sparsities = list(dict.fromkeys(row["sparsity"] for row in rows if row["method"] != "dense"))
    methods = list(dict.fromkeys(row["method"] for row in rows if row["method"] != "dense"))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(methods))
    for index, method in enumerate(methods):
        values = [next((r["perplexity"] for r in rows if r["method"] == method
                        and r["sparsity"] == s), np.nan) for s in sparsities]
        ax.bar(np.arange(len(sparsities)) + index * width, values, width, label=method)
    ax.axhline(dense, color="k", linestyle="--", label=f"dense ({dense:.2f})")
    ax.axhline(1.1 * dense, color="k", linestyle=":", linewidth=1, label="dense + 10%")
    ax.set_xticks(np.arange(len(sparsities)) + width * (len(methods) - 1) / 2)
    ax.set_xticklabels([f"{s} sparse" if ":" not in s else s for s in sparsities])
    ax.set_ylabel("held-out perplexity (bytes)")
    ax.set_ylim(bottom=0.9 * dense)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    app.run(main)
