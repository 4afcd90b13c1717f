"""LeNet-300-100 lottery tickets (Frankle & Carbin 2019, Figures 1, 3, 4).

Defaults are the paper's: Adam 1.2e-3, batch 60, 50K iterations per round,
validation every 100 iterations, 20% per round (output layer 10%), 19 rounds
(down to 1.9% of the weights), controls `reinit` and `random_prune`.

    python -m examples.lenet                               # digits, offline
    python -m examples.lenet --dataset idx:/usr/share/datasets/fashion-mnist
    python -m examples.lenet --dataset mnist --trials 5    # tensorflow-datasets
"""

from absl import flags

from examples import experiment

FLAGS = flags.FLAGS
experiment.define_flags(
    dataset="digits", rounds=19, iterations=50_000, batch_size=60,
    learning_rate=1.2e-3, output_dir="runs/lenet",
)
flags.DEFINE_float("rate", 0.2, "Per-round pruning rate of the hidden layers.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_float("output_rate", 0.1, "Per-round pruning rate of the output layer.", lower_bound=0.0, upper_bound=0.99)
experiment.require_fraction("rate")
experiment.require_fraction("output_rate")


def main(argv):
    del argv
    import keras

    from examples import models

    experiment.run(
        "lenet_300_100",
        build_model=models.lenet_300_100,
        make_optimizer=lambda iterations: keras.optimizers.Adam(FLAGS.learning_rate),
        rate={"default": FLAGS.rate, "output": FLAGS.output_rate},
    )


if __name__ == "__main__":
    experiment.main(main)
