"""Benchmark: what IMP adds on top of training, besides the step itself.

Rows (all in one process, TensorFlow backend):
1. round boundary (prune + rewind + optimizer reset: the callback's
   `boundary_seconds`) as a fraction of a round at the paper's LeNet budget
   (50K iterations at this run's measured masked step time);
2. `pruning.prune_global` over 25.6M weights (ResNet-50 size, its 50 conv/fc tensor shapes scaled);
3. train-step traces in round 0 (next to a dense Keras model's) and after
   it (target: none: one train function for all rounds);
4. bytes of wrapper state (mask, θ0, θk) per byte of prunable weight, and
   what stays on the device with `snapshots_on_host=True` (the mask).

    python -m benchmarks.imp_overheads
    python -m benchmarks.imp_overheads --rounds 2 --steps 20 --global_weights 100000  # smoke

Results: benchmarks/results/imp_overheads.json and docs/BENCHMARKS.md.
"""

import json
import os
import platform
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))

PAPER_LENET_ITERATIONS = 50_000


def count_traces(model):
    """Wraps `model.train_step` to count its traces (Python runs only while the
    step is traced); returns the list that grows by one per trace."""
    traces = []
    train_step = model.train_step

    def counting_train_step(*args):
        traces.append(1)
        return train_step(*args)

    model.train_step = counting_train_step
    return traces


def state_bytes(model):
    """`(device bytes of lottery state, bytes of the pruned weights)`: masks
    and snapshots held as variables (host snapshots are not on the device)."""
    import keras_lottery as kl

    prunables = kl.prunable_weights(model)
    weights = sum(p.variable.numpy().nbytes for p in prunables)
    state = sum(v.numpy().nbytes for p in prunables for v in p.state.variables)
    return state, weights


def round_boundary(rounds, steps, batch=60):
    import keras
    import numpy as np

    import keras_lottery as kl

    rng = np.random.default_rng(0)
    x = rng.random((steps * batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch).astype("int32")
    keras.utils.set_random_seed(0)
    model = kl.wrap(keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(300, activation="relu", name="fc1"),
        keras.layers.Dense(100, activation="relu", name="fc2"),
        keras.layers.Dense(10, name="out"),
    ]))
    model.compile(keras.optimizers.Adam(1.2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    imp = kl.IterativeMagnitudePruning(rounds=rounds, epochs_per_round=1,
                                       rate={"default": 0.2, "output": 0.1}, verbose=0)
    traces = count_traces(model)
    after_round0 = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: after_round0.append(len(traces)) if epoch == 0 else None)
    model.fit(x, y, batch_size=batch, epochs=imp.total_epochs, callbacks=[record, imp],
              verbose=0, shuffle=False, validation_data=(x[:600], y[:600]))
    # Step time of the masked model, rounds 1+ (round 0 includes tracing).
    step = float(np.median([r["seconds"] / r["steps"] for r in imp.results[1:]]))
    # The prune + rewind + optimizer reset before each round, as the callback
    # times it.
    boundaries = [r["boundary_seconds"] for r in imp.results[1:]]
    boundary = float(np.median(boundaries))
    device_bytes, weight_bytes = state_bytes(model)
    host = kl.wrap(keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, name="fc1"),
                                     keras.layers.Dense(10, name="out")]),
                   snapshots_on_host=True)
    host_device_bytes, host_weight_bytes = state_bytes(host)
    return {
        "wrapper_state_bytes_per_weight_byte_host_snapshots": host_device_bytes / host_weight_bytes,
        "round_boundary_s": boundary,
        "round_boundary_s_all": boundaries,
        "masked_step_s": step,
        "round_at_paper_budget_s": step * PAPER_LENET_ITERATIONS,
        "round_boundary_fraction": boundary / (step * PAPER_LENET_ITERATIONS),
        "train_step_traces_round0": after_round0[0],
        "train_step_traces_after_round0": len(traces) - after_round0[0],
        "dense_keras_train_step_traces": _dense_traces(x, y, batch),
        "rounds": rounds,
        "wrapper_state_bytes_per_weight_byte": device_bytes / weight_bytes,
    }


def _dense_traces(x, y, batch):
    """Traces of a plain Keras model's train step in one fit (reference:
    tf.function traces twice on the first call that creates variables)."""
    import keras

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    traces = count_traces(model)
    model.fit(x, y, batch_size=batch, epochs=2, verbose=0, shuffle=False)
    return len(traces)


def global_prune(total_weights, repeats=3):
    import numpy as np

    from keras_lottery.sparsity import pruning

    rng = np.random.default_rng(0)
    # 50 conv/fc tensors like ResNet-50's, scaled to `total_weights`.
    sizes = np.array([9408] + [4096, 36864, 16384] * 3 + [32768, 147456, 65536] * 4
                     + [131072, 589824, 262144] * 6 + [524288, 2359296, 1048576] * 3
                     + [2048000], dtype=np.float64)
    sizes = np.maximum(1, np.round(sizes * total_weights / sizes.sum())).astype(int)
    weights = {f"layer{i}/kernel": rng.standard_normal(n).astype("float32")
               for i, n in enumerate(sizes)}
    masks = {k: np.ones(v.shape, bool) for k, v in weights.items()}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        new = pruning.prune_global(weights, masks, 0.2)  # keep 20%
        times.append(time.perf_counter() - start)
    kept = sum(int(m.sum()) for m in new.values())
    return {"global_prune_weights": int(sizes.sum()), "global_prune_tensors": len(sizes),
            "global_prune_s": float(np.median(times)), "global_prune_s_all": times,
            "global_prune_kept_fraction": kept / int(sizes.sum())}


def main(argv):
    from absl import flags

    flags.DEFINE_integer("rounds", 4, "IMP rounds of the boundary measurement.", lower_bound=2)
    flags.DEFINE_integer("steps", 300, "Steps per round.", lower_bound=5)
    flags.DEFINE_integer("global_weights", 25_557_032, "Weights in the global prune (ResNet-50: 25.6M).",
                         lower_bound=1000)
    flags.DEFINE_string("output", os.path.join(HERE, "results", "imp_overheads.json"), "JSON results.")
    flags.FLAGS(argv)
    f = flags.FLAGS
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    result.update(round_boundary(f.rounds, f.steps))
    result.update(global_prune(f.global_weights))
    print("\n".join([
        "| measure | value | target |", "|---|---|---|",
        f"| round boundary (prune + rewind + reset) | {1000 * result['round_boundary_s']:.1f} ms | |",
        f"| masked step | {1000 * result['masked_step_s']:.3f} ms | |",
        f"| boundary / round at {PAPER_LENET_ITERATIONS} iterations | "
        f"{100 * result['round_boundary_fraction']:.4f}% | <= 1% |",
        f"| prune_global, {result['global_prune_weights'] / 1e6:.1f}M weights "
        f"({result['global_prune_tensors']} tensors) | {result['global_prune_s']:.2f} s | <= 2 s |",
        f"| train-step traces: round 0 (a dense Keras model: "
        f"{result['dense_keras_train_step_traces']}) | {result['train_step_traces_round0']} | |",
        f"| train-step retraces in rounds 1-{result['rounds'] - 1} | "
        f"{result['train_step_traces_after_round0']} | 0 |",
        f"| wrapper state bytes / weight byte | "
        f"{result['wrapper_state_bytes_per_weight_byte']:.2f} | <= 3 |",
        f"| the same on the device with snapshots_on_host=True | "
        f"{result['wrapper_state_bytes_per_weight_byte_host_snapshots']:.2f} | |",
    ]))
    os.makedirs(os.path.dirname(f.output), exist_ok=True)
    result = {"command": _command(f), **result}
    with open(f.output, "w") as out:
        json.dump(result, out, indent=2)


def _command(flag_values):
    """Every flag this script defines, at its value (examples/run_config.py)."""
    from examples import run_config

    return run_config.full_command(flag_values, sys.argv[0])


if __name__ == "__main__":
    main(sys.argv)
