"""Benchmark: accuracy of a 2:4 (N:M) LeNet ticket vs an unstructured one at 50%.

Both arms run IMP with the same rounds and per-round rate (every layer,
output included, to 50% of its weights in the last round), rewound to θ0;
the N:M arm prunes inside groups of M consecutive inputs (4:4 -> 3:4 -> 2:4).

    python -m benchmarks.nm_accuracy --dataset=idx:/usr/share/datasets/fashion-mnist
"""

import json
import sys

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
harness.define_common_flags(dataset=harness.FASHION_MNIST, seed=0, output="nm_accuracy.json")
flags.DEFINE_string("pattern", "2:4", "N:M pattern.")
flags.DEFINE_integer("epochs_per_round", 2, "Epochs per round.", lower_bound=1)


def main(argv):
    del argv
    from examples import run_config
    import keras
    from examples import common
    from examples import models
    import keras_lottery as kl

    (x, y), val, test = common.load_dataset(FLAGS.dataset, seed=FLAGS.seed)
    n, m = (int(v) for v in FLAGS.pattern.split(":"))
    rate = 1.0 - (n / m) ** 0.5  # two prunes reach n/m
    rows = {}
    for arm, kwargs in (("unstructured", {}), (FLAGS.pattern, {"structure": FLAGS.pattern})):
        keras.utils.set_random_seed(FLAGS.seed)
        model = common.compile_lenet(kl.wrap(models.lenet_300_100(x.shape[1:])))
        imp = kl.IterativeMagnitudePruning(
            rounds=3, epochs_per_round=FLAGS.epochs_per_round,
            rate={"default": rate, "output": rate}, monitor="val_accuracy", seed=FLAGS.seed,
            **kwargs,
        )
        model.fit(x, y, batch_size=60, epochs=imp.total_epochs, validation_data=val,
                  callbacks=[imp], verbose=0)
        rows[arm] = {
            "density": imp.results[-1]["density"],
            "test_accuracy": common.accuracy(model.predict(test[0], batch_size=1000, verbose=0),
                                             test[1]),
            "pattern_breaks": sum(kl.check_pattern(model, FLAGS.pattern).values()),
        }
    rows["gap_points"] = round(
        100 * (rows["unstructured"]["test_accuracy"] - rows[FLAGS.pattern]["test_accuracy"]), 2)
    rows["command"] = run_config.full_command(FLAGS, sys.argv[0])
    with open(FLAGS.output, "w") as f:
        json.dump(rows, f, indent=2)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    app.run(main)
