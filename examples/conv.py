"""Conv-2/4/6 lottery tickets on CIFAR-10 (Frankle & Carbin 2019, Figure 5).

Paper settings: Adam 2e-4 (Conv-2) / 3e-4 (Conv-4, Conv-6), batch 60,
20K / 25K / 30K iterations per round; per-round rates conv 10% (15% for
Conv-6), fc 20%, output 10%.

    python -m examples.conv --depth 2 --dataset cifar10 --trials 3
"""

from absl import flags

from examples import experiment

FLAGS = flags.FLAGS
PAPER = {2: (2e-4, 20_000), 4: (3e-4, 25_000), 6: (3e-4, 30_000)}
flags.DEFINE_enum("depth", "2", ["2", "4", "6"], "Conv-2, Conv-4 or Conv-6.")
experiment.define_flags(
    dataset="cifar10", rounds=20, iterations=None, batch_size=60,
    learning_rate=None, output_dir="runs/conv",
)


def main(argv):
    del argv
    import keras

    from examples import models

    depth = int(FLAGS.depth)
    learning_rate, iterations = PAPER[depth]
    if FLAGS.learning_rate is None:
        FLAGS.learning_rate = learning_rate
    if FLAGS.iterations is None:
        FLAGS.iterations = iterations
    experiment.run(
        f"conv{depth}",
        build_model=lambda shape: models.conv_net(depth, shape),
        make_optimizer=lambda n: keras.optimizers.Adam(FLAGS.learning_rate),
        rate=models.conv_rates(depth),
    )


if __name__ == "__main__":
    experiment.main(main)
