"""Benchmark: keras_lottery vs dense Keras, tfmot and torch.nn.utils.prune.

The same LeNet-300-100 (784-300-100-10, Adam 1.2e-3, batch 60, 20% of the
weights kept) is trained by each tool in its own long-lived subprocess (tfmot
must not share a process with Keras 3: importing it switches tf.keras to
Keras 2). The harness asks the workers for one timed block of `--steps` steps
in turn, rotating the order every repeat, so all tools see the same machine
load; it reports medians of per-repeat ratios. The keras_lottery worker also
measures the step's FLOP floor: the step's matmul FLOPs at this machine's
measured dense matmul rate.

    python -m benchmarks.competitors                      # the table in docs/BENCHMARKS.md
    python -m benchmarks.competitors --steps 20 --repeats 1   # a smoke run

Results: benchmarks/results/competitors.json.
"""

import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAYERS = [(784, 300), (300, 100), (100, 10)]
DENSITY = 0.2

# name -> (environment, description)
TOOLS = {
    "keras_dense": ({"KERAS_BACKEND": "tensorflow"}, "dense Keras 3 model, model.fit"),
    "keras_dense_fast": ({"KERAS_BACKEND": "tensorflow"},
                         "dense Keras 3, steps_per_execution=100, jit_compile=True"),
    "keras_lottery": ({"KERAS_BACKEND": "tensorflow"},
                      "keras_lottery.wrap + masks, model.fit, steps_per_execution=1"),
    "keras_lottery_fast": ({"KERAS_BACKEND": "tensorflow"},
                           "keras_lottery, steps_per_execution=100, jit_compile=True "
                           "(the example scripts' defaults)"),
    "tfmot": ({"TF_USE_LEGACY_KERAS": "1"},
              "tfmot prune_low_magnitude + UpdatePruningStep on tf-keras"),
    "torch_prune": ({}, "torch.nn.utils.prune.custom_from_mask, Adam, eager loop"),
}


def step_flops(batch):
    """Matmul FLOPs of one training step: forward, weight gradients, and input
    gradients of every layer but the first."""
    forward = sum(2 * batch * i * o for i, o in LAYERS)
    input_grads = sum(2 * batch * i * o for i, o in LAYERS[1:])
    return 2 * forward + input_grads


def _data(steps, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((steps * batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch).astype("int64")
    masks = [rng.random((i, o)) < DENSITY for i, o in LAYERS]
    return x, y, masks


def _keras_runner(tool, steps, batch):
    import keras

    import keras_lottery as kl

    x, y, masks = _data(steps, batch)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,))] + [
        keras.layers.Dense(o, activation="relu" if n < 2 else None, name=f"fc{n}")
        for n, (_, o) in enumerate(LAYERS)
    ])
    if not tool.startswith("keras_dense"):
        model = kl.wrap(model)
        kl.set_layer_masks(model, {f"fc{n}/kernel": m for n, m in enumerate(masks)})
    model.compile(
        keras.optimizers.Adam(1.2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=100 if tool.endswith("fast") else 1,
        jit_compile=tool.endswith("fast"),
    )

    def run():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)

    return run


def _tfmot_runner(steps, batch):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    x, y, _ = _data(steps, batch)
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((784,))] + [
        tf_keras.layers.Dense(o, activation="relu" if n < 2 else None)
        for n, (_, o) in enumerate(LAYERS)
    ])
    schedule = tfmot.sparsity.keras.ConstantSparsity(1 - DENSITY, begin_step=0, frequency=100)
    model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    model.compile(tf_keras.optimizers.Adam(1.2e-3),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]

    def run():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False,
                  callbacks=callbacks)

    return run


def _torch_runner(steps, batch):
    import torch
    from torch.nn.utils import prune

    torch.set_num_threads(os.cpu_count())  # TensorFlow's intra-op default
    torch.manual_seed(0)
    x, y, masks = _data(steps, batch)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    layers = [torch.nn.Linear(i, o) for i, o in LAYERS]
    model = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2])
    for layer, mask in zip(layers, masks):
        prune.custom_from_mask(layer, "weight", torch.from_numpy(mask.T.copy()))
    optimizer = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        for s in range(steps):
            xb, yb = x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()

    return run


def _best_time(fn, *args, repeats=10):
    fn(*args).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def _matmul_rate():
    """Dense float32 matmul FLOP/s of TensorFlow on this machine (the best of
    a few 1024^3 products)."""
    import tensorflow as tf

    a = tf.random.uniform((1024, 1024))
    b = tf.random.uniform((1024, 1024))
    fn = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    return 2 * 1024**3 / _best_time(fn, a, b)


def _step_matmuls_seconds(batch, steps=100):
    """Seconds per step of the step's matmuls alone, at their real shapes
    (forward, weight gradients, input gradients), `steps` of them in one XLA
    call: what the step would cost if it were nothing but its matmuls."""
    import tensorflow as tf

    x = tf.random.uniform((batch, LAYERS[0][0]))
    weights = [tf.random.uniform((i, o)) for i, o in LAYERS]

    @tf.function(jit_compile=True)
    def run(x):
        def body(i, total):
            h, hs = x, []
            for w in weights:
                hs.append(h)
                h = tf.matmul(h, w) * (1.0 + 1e-9 * tf.cast(i, tf.float32))
            g = h
            for n in reversed(range(len(weights))):
                total += tf.reduce_sum(tf.matmul(hs[n], g, transpose_a=True))
                if n:
                    g = tf.matmul(g, weights[n], transpose_b=True)
            return i + 1, total

        return tf.while_loop(lambda i, t: i < steps, body, (0, 0.0))[1]

    return _best_time(run, x) / steps


def _adam_update_seconds(unrolled=20):
    """Seconds per Adam update of LeNet-300-100's parameters alone (no
    forward or backward pass), `unrolled` updates per XLA call."""
    import keras
    import tensorflow as tf

    shapes = [s for i, o in LAYERS for s in ((i, o), (o,))]
    variables = [keras.Variable(tf.zeros(s)) for s in shapes]
    grads = [tf.random.uniform(s) for s in shapes]
    optimizer = keras.optimizers.Adam(1.2e-3)
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def run():
        for _ in range(unrolled):
            optimizer.apply(grads, variables)
        return tf.reduce_sum(variables[0])

    return _best_time(run) / unrolled


def worker(tool, steps, batch):
    """Serves timed blocks: reads "run" lines, answers with seconds/step."""
    if tool.startswith("keras"):
        run = _keras_runner(tool, steps, batch)
    elif tool == "tfmot":
        run = _tfmot_runner(steps, batch)
    else:
        run = _torch_runner(steps, batch)
    run()  # warm-up: traces, builds the optimizer
    extra = {}
    if tool == "keras_lottery":
        extra = {"matmul_flops_per_s": _matmul_rate(),
                 "step_matmuls_s": _step_matmuls_seconds(batch),
                 "adam_update_s": _adam_update_seconds()}
    print(json.dumps({"ready": tool, **extra}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        run()
        print(json.dumps({"seconds_per_step": (time.perf_counter() - start) / steps}), flush=True)


def _start(tool, steps, batch):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT, **TOOLS[tool][0]}
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.competitors", "--worker", tool, str(steps), str(batch)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=ROOT,
    )
    return process


def _read(process, tool):
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"{tool} worker died:\n{process.stderr.read()[-3000:]}")
    return json.loads(line)


def main(argv):
    import numpy as np
    from absl import flags

    flags.DEFINE_list("tools", list(TOOLS), f"Tools to compare: {', '.join(TOOLS)}.")
    flags.DEFINE_integer("steps", 300, "Steps per timed block.", lower_bound=5)
    flags.DEFINE_integer("repeats", 9, "Interleaved repeats.", lower_bound=1)
    flags.DEFINE_integer("batch", 60, "Batch size (the paper's LeNet batch).", lower_bound=1)
    flags.DEFINE_string("output", os.path.join(HERE, "results", "competitors.json"), "JSON results.")
    flags.FLAGS(argv)
    f = flags.FLAGS
    unknown = sorted(set(f.tools) - set(TOOLS))
    if unknown:
        raise SystemExit(f"--tools: unknown {unknown}; choose from {list(TOOLS)}.")
    # Start them one at a time: the warm-up of one must not slow another's.
    workers, info = {}, {}
    try:
        for tool in f.tools:
            workers[tool] = _start(tool, f.steps, f.batch)
            info[tool] = _read(workers[tool], tool)
            print(f"{tool}: ready", flush=True)
        times = {tool: [] for tool in f.tools}
        for r in range(f.repeats):
            order = f.tools[r % len(f.tools):] + f.tools[: r % len(f.tools)]
            for tool in order:
                workers[tool].stdin.write("run\n")
                workers[tool].stdin.flush()
                times[tool].append(_read(workers[tool], tool)["seconds_per_step"])
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
    rows = []
    for tool in f.tools:
        rows.append({"tool": tool, "description": TOOLS[tool][1],
                     "ms_per_step": 1000 * float(np.median(times[tool])),
                     "ms_per_step_all": [1000 * t for t in times[tool]]})
    ratios = {}
    reference = "keras_lottery" if "keras_lottery" in f.tools else None
    if reference:
        for tool in f.tools:
            if tool != reference:
                per_repeat = [a / b for a, b in zip(times[reference], times[tool])]
                ratios[f"{reference}/{tool}"] = _summary(per_repeat)
        if "keras_lottery_fast" in f.tools:
            for tool in ("tfmot", "torch_prune", "keras_dense_fast"):
                if tool in f.tools:
                    per_repeat = [a / b for a, b in zip(times["keras_lottery_fast"], times[tool])]
                    ratios[f"keras_lottery_fast/{tool}"] = _summary(per_repeat)
        rate = info[reference]["matmul_flops_per_s"]
        floor = step_flops(f.batch) / rate
        ratios["keras_lottery/flop_floor"] = _summary([t / floor for t in times[reference]])
        if "keras_lottery_fast" in f.tools:
            ratios["keras_lottery_fast/flop_floor"] = _summary(
                [t / floor for t in times["keras_lottery_fast"]])
    result = {
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "steps": f.steps, "repeats": f.repeats, "batch": f.batch,
        "step_matmul_flops": step_flops(f.batch),
        "matmul_flops_per_s": info.get(reference, {}).get("matmul_flops_per_s"),
        "step_matmuls_ms": 1000 * info.get(reference, {}).get("step_matmuls_s", float("nan")),
        "adam_update_ms": 1000 * info.get(reference, {}).get("adam_update_s", float("nan")),
        "flop_floor_ms": 1000 * step_flops(f.batch) / info[reference]["matmul_flops_per_s"]
        if reference else None,
        "rows": rows, "ratios": ratios,
    }
    lines = []
    if reference:
        lines += [f"FLOP floor {result['flop_floor_ms']:.3f} ms/step "
                  f"({step_flops(f.batch) / 1e6:.1f} MFLOP at "
                  f"{result['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s); the step's matmuls "
                  f"alone at their shapes: {result['step_matmuls_ms']:.3f} ms; one Adam "
                  f"update of its parameters alone: {result['adam_update_ms']:.3f} ms", ""]
    lines += ["| tool | ms/step (median) |", "|---|---|"]
    lines += [f"| {r['tool']} | {r['ms_per_step']:.3f} |" for r in rows]
    lines += ["", "| ratio | median (min-max over repeats) |", "|---|---|"]
    lines += [f"| {k} | {v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f}) |" for k, v in ratios.items()]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(f.output), exist_ok=True)
    result = {"command": _command(f), **result}
    with open(f.output, "w") as out:
        json.dump(result, out, indent=2)


def _summary(values):
    import numpy as np

    return {"median": float(np.median(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}


def _command(flag_values):
    """Every flag this script defines, at its value (examples/run_config.py)."""
    from examples import run_config

    return run_config.full_command(flag_values, sys.argv[0])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main(sys.argv)
