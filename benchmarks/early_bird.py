"""Benchmark: Early-Bird IMP vs full IMP on LeNet-300-100 (issue 16).

Both arms run the paper's IMP (20% per round, output layer 10%, rewound to
θ0) to ~7% of the weights; the Early-Bird arm ends each round once the mask
it leads to stops changing between epochs. Reported in one run: total
training steps of each arm and the test accuracy of its final ticket.
Target: steps cut by >= 2x with the ticket within 0.5 point.

    python -m benchmarks.early_bird --epochs_per_round=4
"""

import json
import sys

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
harness.define_common_flags(dataset=harness.FASHION_MNIST, seed=0, output="early_bird.json")
flags.DEFINE_integer("rounds", 13, "IMP rounds (13 at 20%: 6.9% of fc weights remain).", lower_bound=2)
flags.DEFINE_integer("epochs_per_round", 4, "Epochs per round of the full arm.", lower_bound=2)
flags.DEFINE_float("threshold", 0.02, "Early-Bird mask distance threshold.")
flags.DEFINE_integer("patience", 1, "Early-Bird patience (epochs).")
flags.DEFINE_integer("train_examples", 0, "Use only this many training examples (0: all).")


def main(argv):
    del argv
    from examples import run_config
    import keras
    from examples import common
    from examples import models
    import keras_lottery as kl
    from keras_lottery.files import file_io

    (x, y), val, test = common.load_dataset(FLAGS.dataset, seed=FLAGS.seed)
    if FLAGS.train_examples:
        x, y = x[: FLAGS.train_examples], y[: FLAGS.train_examples]
    arms = {}
    for arm in ("full", "early_bird"):
        keras.utils.set_random_seed(FLAGS.seed)
        model = common.compile_lenet(kl.wrap(models.lenet_300_100(x.shape[1:])))
        bird = kl.EarlyBird(FLAGS.threshold, FLAGS.patience) if arm == "early_bird" else None
        imp = kl.IterativeMagnitudePruning(
            rounds=FLAGS.rounds, epochs_per_round=FLAGS.epochs_per_round, rate=0.2,
            seed=FLAGS.seed, monitor="val_accuracy", early_bird=bird, verbose=1,
        )
        model.fit(x, y, batch_size=60, epochs=imp.total_epochs, validation_data=val,
                  callbacks=[imp], verbose=0)
        arms[arm] = {
            "density": imp.results[-1]["density"],
            "total_steps": int(sum(row["steps"] for row in imp.results)),
            "epochs_per_round": [row["epochs"] for row in imp.results],
            "test_accuracy": common.accuracy(
                model.predict(test[0], batch_size=1000, verbose=0), test[1]),
        }
    result = {
        "command": run_config.full_command(FLAGS, sys.argv[0]),
        "arms": arms,
        "steps_ratio": arms["full"]["total_steps"] / arms["early_bird"]["total_steps"],
        "accuracy_gap_points": 100 * (arms["full"]["test_accuracy"]
                                      - arms["early_bird"]["test_accuracy"]),
    }
    file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
