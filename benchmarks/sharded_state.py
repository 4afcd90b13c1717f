"""Benchmark: the lottery state's bytes per device under
`keras.distribution.ModelParallel` on n devices (issue 27), and the time of
an IMP round boundary (mask decision, rewind, optimizer reset).

An MLP 784-H-H-10 has `fc1/kernel` sharded `(None, "model")` and
`fc2/kernel` `("model", None)` (the output layer stays replicated), on a
`(1, n)` mesh of simulated CPU devices (one process per n, with
`XLA_FLAGS=--xla_force_host_platform_device_count=n`). Each pruned kernel
carries a mask, θ0 and θk (`rewind_to` an iteration). Per device: the bytes
of the lottery arrays' shards on the fullest device, against the same
arrays unsharded; the target is at most 1/n of it plus one weight.

    python -m benchmarks.sharded_state --devices=1,2,4,8

The devices share one host here: the bytes are what each device holds, the
seconds are CPU seconds, not a GPU's.
"""

import json
import os
import statistics
import subprocess
import sys
import tracemalloc

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
harness.define_common_flags(seed=0, output="sharded_state.json")
flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts to measure.")
flags.DEFINE_integer("hidden", 2048, "Width of the two hidden layers.", lower_bound=8)
flags.DEFINE_integer("rounds", 4, "IMP rounds (boundaries = rounds - 1).", lower_bound=2)
flags.DEFINE_integer("worker", 0, "Internal: measure on this many devices and print JSON.")
flags.DEFINE_bool("unshared", False, "Internal: the lottery arrays keep Keras' default layout "
                  "(replicated), as before keras_internals.share_layout; the baseline row.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lottery_arrays(model):
    import keras_lottery as kl

    for p in kl.prunable_weights(model):
        yield p, [p.state.mask, *p.state.snapshots.values()]


def _bytes_per_device(variables):
    """{device: bytes of the variables' shards on it}."""
    per_device = {}
    for variable in variables:
        for shard in variable.value.addressable_shards:
            per_device[str(shard.device)] = per_device.get(str(shard.device), 0) + shard.data.nbytes
    return per_device


def _boundary_peaks():
    """Two callbacks to put before and after IMP in the callback list, and
    the list they fill: NumPy's traced peak of host allocations during each
    round boundary (IMP runs it at an epoch's start, between the two)."""
    import keras

    peaks = []

    def start(epoch, logs=None):
        tracemalloc.start()
        tracemalloc.reset_peak()

    def stop(epoch, logs=None):
        if epoch > 0:  # epoch 0 has no boundary
            peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()

    return (keras.callbacks.LambdaCallback(on_epoch_begin=start),
            keras.callbacks.LambdaCallback(on_epoch_begin=stop), peaks)


def worker(devices, hidden, rounds, seed, unshared=False):
    """One measurement on `devices` simulated devices (this process' JAX
    must already see them); returns the result row."""
    import keras

    if unshared:
        from keras_lottery.backend import keras_internals

        keras_internals.share_layout = lambda like, variables: None
    import numpy as np
    from keras import distribution as kd

    import keras_lottery as kl

    found = kd.list_devices("cpu")
    if len(found) != devices:
        raise SystemExit(f"asked for {devices} devices, JAX sees {len(found)}")
    mesh = kd.DeviceMesh((1, devices), ["batch", "model"], found)
    layout = kd.LayoutMap(mesh)
    layout["fc1/kernel"] = (None, "model")
    layout["fc1/bias"] = ("model",)
    layout["fc2/kernel"] = ("model", None)
    keras.utils.set_random_seed(seed)
    with kd.ModelParallel(layout_map=layout, batch_dim_name="batch").scope():
        inputs = keras.Input((784,))
        h = keras.layers.Dense(hidden, activation="relu", name="fc1")(inputs)
        h = keras.layers.Dense(hidden, activation="relu", name="fc2")(h)
        model = kl.wrap(keras.Model(inputs, keras.layers.Dense(10, name="out")(h)))
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 784)).astype("float32")
    y = rng.integers(0, 10, 256)
    imp = kl.IterativeMagnitudePruning(rounds=rounds, epochs_per_round=1, rate=0.5, rewind_to=2,
                                       seed=seed, verbose=0)
    before, after, peaks = _boundary_peaks()
    model.fit(x, y, batch_size=64, epochs=imp.total_epochs, verbose=0,
              callbacks=[before, imp, after])

    lottery = [v for _, arrays in _lottery_arrays(model) for v in arrays]
    per_device = _bytes_per_device(lottery)
    weights = [p.variable for p, _ in _lottery_arrays(model)]
    unsharded = sum(int(np.prod(v.shape)) * v.value.dtype.itemsize for v in lottery)
    largest_weight = max(int(np.prod(v.shape)) * v.value.dtype.itemsize for v in weights)
    boundaries = [row["boundary_seconds"] for row in imp.results[1:]]
    return {
        "devices": devices,
        "layouts_shared": not unshared,
        "lottery_bytes_unsharded": unsharded,
        "lottery_bytes_per_device_max": max(per_device.values()),
        "lottery_bytes_per_device_min": min(per_device.values()),
        "weight_bytes_per_device_max": max(_bytes_per_device(weights).values()),
        "largest_weight_bytes": largest_weight,
        "target_bytes": unsharded / devices + largest_weight,
        "ratio_to_unsharded": max(per_device.values()) / unsharded,
        "specs_follow_weights": all(
            a.value.sharding.is_equivalent_to(p.variable.value.sharding, len(p.shape))
            for p, arrays in _lottery_arrays(model) for a in arrays),
        "kept": imp.results[-1]["kept"],
        # NumPy's host allocations during a round boundary (the mask
        # decision reads every pruned weight to the host), against the
        # pruned weights' bytes.
        "host_peak_bytes_at_boundary": max(peaks),
        "pruned_weight_bytes": sum(int(np.prod(v.shape)) * v.value.dtype.itemsize
                                   for v in weights),
        "boundary_seconds_median": statistics.median(boundaries),
        "boundary_seconds": [round(s, 4) for s in boundaries],
    }


def _run_worker(devices, unshared=False):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "benchmarks.sharded_state", f"--worker={devices}",
               f"--hidden={FLAGS.hidden}", f"--rounds={FLAGS.rounds}", f"--seed={FLAGS.seed}",
               f"--unshared={unshared}"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker on {devices} devices failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows):
    lines = ["| devices | lottery layouts | lottery MB unsharded | per device (max) | ratio | "
             "target (1/n + one weight) | "
             "met | host MB at a boundary (pruned weights: MB) | boundary s (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mb = lambda b: f"{b / 2**20:.1f}"  # noqa: E731
        met = r["lottery_bytes_per_device_max"] <= r["target_bytes"]
        shared = "its weight's" if r["layouts_shared"] else "replicated (before)"
        lines.append(f"| {r['devices']} | {shared} | {mb(r['lottery_bytes_unsharded'])} | "
                     f"{mb(r['lottery_bytes_per_device_max'])} | {r['ratio_to_unsharded']:.3f} | "
                     f"{mb(r['target_bytes'])} | {'yes' if met else 'NO'} | "
                     f"{mb(r['host_peak_bytes_at_boundary'])} ({mb(r['pruned_weight_bytes'])}) | "
                     f"{r['boundary_seconds_median']:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.worker:
        print(json.dumps(worker(FLAGS.worker, FLAGS.hidden, FLAGS.rounds, FLAGS.seed,
                                FLAGS.unshared)))
        return
    from examples import run_config
    from keras_lottery.files import file_io

    rows = []
    for devices in [int(d) for d in FLAGS.devices]:
        rows.append(_run_worker(devices))
        print(f"{devices} device(s): {rows[-1]['lottery_bytes_per_device_max'] / 2**20:.1f} MB of "
              f"lottery state on the fullest device", flush=True)
    # The baseline: the most devices, lottery arrays replicated as Keras lays
    # them out by default.
    rows.append(_run_worker(max(int(d) for d in FLAGS.devices), unshared=True))
    same_masks = len({json.dumps(r["kept"]) for r in rows}) == 1
    result = {"command": run_config.full_command(FLAGS, sys.argv[0]), "rows": rows,
              "same_counts_on_every_mesh": same_masks, "table": _table(rows)}
    file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(result["table"])
    if not same_masks:
        print("WARNING: the kept counts differ between meshes:",
              [r["kept"] for r in rows])


if __name__ == "__main__":
    app.run(main)
