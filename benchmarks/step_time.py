"""Benchmark: step time of a wrapped (masked) model vs the same dense model.

For each Keras backend (one subprocess each), each model (LeNet-300-100 on
784 inputs, Conv-6 on 32x32x3, a tiny transformer encoder: embedding, 2
blocks of attention + feed-forward + layer norm, on 32 tokens; batch 60,
Adam, 20% of the weights kept) and
each setting, the dense and the wrapped model are trained on the same arrays,
interleaved and repeated; the table reports median milliseconds per step and
the median of the per-repeat masked/dense ratios.

    python -m benchmarks.step_time                       # all backends, both models
    python -m benchmarks.step_time --backends tensorflow --models lenet --repeats 9

Results: benchmarks/results/step_time.json and the table in docs/BENCHMARKS.md.
"""

import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SETTINGS = {
    "tensorflow": [
        {"steps_per_execution": 1, "jit_compile": False},
        {"steps_per_execution": 32, "jit_compile": False},
        {"steps_per_execution": 1, "jit_compile": True},
        {"steps_per_execution": 32, "jit_compile": True},
    ],
    "jax": [
        {"steps_per_execution": 1, "jit_compile": True},
        {"steps_per_execution": 32, "jit_compile": True},
    ],
    "torch": [{"steps_per_execution": 1, "jit_compile": False}],
}


INPUT_SHAPES = {"lenet": (784,), "conv6": (32, 32, 3), "encoder": (32,)}
ENCODER = {"vocab": 1000, "length": 32, "width": 64, "heads": 4, "ffn": 256, "blocks": 2}


def encoder(vocab, length, width, heads, ffn, blocks, classes=10):
    """A tiny transformer encoder classifier (every kernel is pruned: the
    attention projections, the feed-forward layers, embedding and head)."""
    import keras

    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocab, width, name="embedding")(tokens)
    for i in range(blocks):
        attended = keras.layers.MultiHeadAttention(heads, width // heads, name=f"attention{i}")(x, x)
        x = keras.layers.LayerNormalization(name=f"norm{i}a")(x + attended)
        hidden = keras.layers.Dense(ffn, activation="gelu", name=f"ffn{i}_in")(x)
        x = keras.layers.LayerNormalization(name=f"norm{i}b")(
            x + keras.layers.Dense(width, name=f"ffn{i}_out")(hidden))
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(classes, name="logits")(pooled), name="encoder")


def _model(name):
    import keras

    if name == "encoder":
        return encoder(**ENCODER)
    if name == "lenet":
        return keras.Sequential([
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ])
    from examples import models

    return models.conv_net(6)


def worker(backend, name, steps, repeats, batch, settings="all", threads=0):
    """Runs in a subprocess with KERAS_BACKEND set; prints one JSON line."""
    if threads and backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    import numpy as np

    import keras_lottery as kl

    rng = np.random.default_rng(0)
    if name == "encoder":
        x = rng.integers(0, ENCODER["vocab"], (steps * batch, ENCODER["length"])).astype("int32")
    else:
        x = rng.random((steps * batch, *INPUT_SHAPES[name]), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch).astype("int32")
    rows = []
    for setting in SETTINGS[backend][: 1 if settings == "first" else None]:
        models = {}
        for kind in ("dense", "masked"):
            keras.utils.set_random_seed(0)
            model = _model(name)
            if kind == "masked":
                model = kl.wrap(model)
                masks = {k: rng.random(m.shape) < 0.2 for k, m in kl.layer_masks(model).items()}
                kl.set_layer_masks(model, masks)
            model.compile(
                keras.optimizers.Adam(1.2e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                **setting,
            )
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # warm-up
            models[kind] = model
        times = {"dense": [], "masked": []}
        for r in range(repeats):
            order = ("dense", "masked") if r % 2 == 0 else ("masked", "dense")
            for kind in order:
                start = time.perf_counter()
                models[kind].fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
                times[kind].append((time.perf_counter() - start) / steps)
        ratios = [m / d for m, d in zip(times["masked"], times["dense"])]
        rows.append({
            "model": name,
            "backend": backend,
            **setting,
            "dense_ms": 1000 * float(np.median(times["dense"])),
            "masked_ms": 1000 * float(np.median(times["masked"])),
            "ratio": float(np.median(ratios)),
            "ratio_min": float(np.min(ratios)),
            "ratio_max": float(np.max(ratios)),
        })
    print(json.dumps(rows))


def main(argv):
    from absl import flags

    flags.DEFINE_list("backends", ["tensorflow", "jax", "torch"], "Keras backends.")
    flags.DEFINE_list("models", ["lenet", "conv6", "encoder"], "Models: lenet, conv6, encoder.")
    flags.DEFINE_integer("steps", 200, "Steps per timed fit (LeNet).", lower_bound=10)
    flags.DEFINE_integer("conv_steps", 20, "Steps per timed fit (Conv-6).", lower_bound=1)
    flags.DEFINE_integer("repeats", 7, "Interleaved repeats.", lower_bound=1)
    flags.DEFINE_integer("batch", 60, "Batch size.", lower_bound=1)
    flags.DEFINE_enum("settings", "all", ["all", "first"],
                      "Compile settings per backend: all, or only the first (harness checks).")
    flags.DEFINE_integer("threads", 0, "TensorFlow intra/inter-op threads (0: TF's default). "
                         "1 gives steadier ratios on a shared 2-core machine.", lower_bound=0)
    flags.DEFINE_string("output", os.path.join(HERE, "results", "step_time.json"), "JSON results.")
    flags.FLAGS(argv)
    f = flags.FLAGS
    rows = []
    unknown = sorted(set(f.models) - set(INPUT_SHAPES))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {sorted(INPUT_SHAPES)}.")
    for name in f.models:
        steps = f.conv_steps if name == "conv6" else f.steps
        for backend in f.backends:
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
            command = [sys.executable, "-m", "benchmarks.step_time", "--worker", backend, name,
                       str(steps), str(f.repeats), str(f.batch), f.settings, str(f.threads)]
            result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
            if result.returncode != 0:
                print(f"{name} on {backend}: failed\n{result.stderr[-2000:]}")
                continue
            rows.extend(json.loads(result.stdout.strip().splitlines()[-1]))
    header = ("| model | backend | steps_per_execution | jit_compile | dense ms/step | "
              "masked ms/step | masked/dense (median, min-max) |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['steps_per_execution']} | {r['jit_compile']} | "
            f"{r['dense_ms']:.3f} | {r['masked_ms']:.3f} | "
            f"{r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) |"
        )
    print("\n".join(lines))
    os.makedirs(os.path.dirname(f.output), exist_ok=True)
    with open(f.output, "w") as out:
        json.dump({"command": _command(f), "machine": platform.processor() or platform.machine(),
                   "cpus": os.cpu_count(), "threads": f.threads, "steps": f.steps,
                   "conv_steps": f.conv_steps,
                   "repeats": f.repeats,
                   "batch": f.batch, "rows": rows}, out, indent=2)


def _command(flag_values):
    """Every flag this script defines, at its value (examples/run_config.py)."""
    from examples import run_config

    return run_config.full_command(flag_values, sys.argv[0])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
               sys.argv[7], int(sys.argv[8]))
    else:
        main(sys.argv)
