"""Benchmark: pruning at initialization on LeNet-300-100 (issue 16, first part).

For each method (random, magnitude, SNIP, GraSP, SynFlow) at each density:
the time to compute the mask against the time of one training epoch (a
round of the paper's IMP on this budget), then the test accuracy after
training the masked network from θ0, and with the "shuffle" ablation (same
per-layer counts, random positions). One run, one seed per trial.

    python -m benchmarks.prune_at_init --densities=0.036,0.019 --epochs=2

Targets (issue 16): SNIP and SynFlow masks cost <= 5% of one training round;
every method >= random; shuffled pruning-at-init masks lose <= 0.5 point.
"""

import json
import sys
import time

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
harness.define_common_flags(dataset=harness.FASHION_MNIST, trials=1, output="prune_at_init.json")
flags.DEFINE_list("methods", ["random", "magnitude", "snip", "grasp", "synflow"], "Methods.")
flags.DEFINE_list("densities", ["0.036", "0.019"], "Fractions of weights kept.")
flags.DEFINE_integer("epochs", 2, "Training epochs per arm.", lower_bound=1)
flags.DEFINE_integer("score_batches", 4, "Batches of 128 for SNIP / GraSP.", lower_bound=1)
flags.DEFINE_integer("synflow_iterations", 100, "SynFlow's pruning iterations.", lower_bound=1)
flags.DEFINE_bool("shuffle", True, "Also train each mask shuffled within layers.")
flags.DEFINE_float("grasp_temperature", 200.0, "GraSP: loss on logits / T (reference: 200).")
flags.DEFINE_enum("distribution", "global", ["global", "uniform", "erk"], "One threshold, per layer, or ERK.")


def _fresh(shape, seed):
    import keras
    from examples import common
    from examples import models
    import keras_lottery as kl

    keras.utils.set_random_seed(seed)
    return common.compile_lenet(kl.wrap(models.lenet_300_100(shape)))


def _train_and_test(model, data):
    from examples import common

    (x, y), val, test = data
    model.fit(x, y, batch_size=60, epochs=FLAGS.epochs, validation_data=val, verbose=0)
    return common.accuracy(model.predict(test[0], batch_size=1000, verbose=0), test[1])


def main(argv):
    del argv
    from examples import run_config
    from examples import common
    import keras_lottery as kl
    from keras_lottery.files import file_io

    data = common.load_dataset(FLAGS.dataset, seed=0)
    (x, y), _, _ = data
    shape = x.shape[1:]
    batches = [(x[i * 128:(i + 1) * 128], y[i * 128:(i + 1) * 128])
               for i in range(FLAGS.score_batches)]

    model = _fresh(shape, 0)  # one epoch of dense training: the cost unit
    started = time.perf_counter()
    model.fit(x, y, batch_size=60, epochs=1, verbose=0)
    epoch_seconds = time.perf_counter() - started

    rows = []
    for density in (float(d) for d in FLAGS.densities):
        for method in FLAGS.methods:
            temperature = FLAGS.grasp_temperature if method == "grasp" else 1.0
            for trial in range(FLAGS.trials):
                model = _fresh(shape, trial)
                started = time.perf_counter()
                masks = kl.prune_at_init(
                    model, method, density, data=batches, seed=trial, distribution=FLAGS.distribution,
                    temperature=temperature,
                    iterations=FLAGS.synflow_iterations,
                )
                mask_seconds = time.perf_counter() - started
                row = {
                    "method": method, "density": density, "trial": trial,
                    "kept": kl.masks.density(masks),
                    "mask_seconds": round(mask_seconds, 3),
                    "mask_cost_vs_epoch": round(mask_seconds / epoch_seconds, 4),
                    "test_accuracy": _train_and_test(model, data),
                }
                if FLAGS.shuffle and method != "random":
                    shuffled = _fresh(shape, trial)
                    kl.prune_at_init(shuffled, method, density, data=batches, seed=trial,
                                     distribution=FLAGS.distribution,
                                     temperature=temperature,
                                     iterations=FLAGS.synflow_iterations, ablation="shuffle")
                    row["shuffled_accuracy"] = _train_and_test(shuffled, data)
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "command": run_config.full_command(FLAGS, sys.argv[0]),
        "epoch_seconds": round(epoch_seconds, 2),
        "rows": rows,
    }
    file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
