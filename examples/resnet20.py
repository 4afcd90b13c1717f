"""CIFAR-10 ResNet-20 / VGG-19 tickets with rewinding (Frankle et al. 2019/2020).

Paper settings (ResNet-20): SGD momentum 0.9, lr 0.1 dropped 10x at 20K and
25K iterations, weight decay 1e-4, batch 128, 30K iterations per round;
global pruning of 20% of the conv weights per round (the fc layer is not
pruned); at lr 0.1 tickets need rewinding to an early iteration (k = 500) or
warmup. `--model vgg19`: batch 64, 112K iterations, drops at 56K and 84K,
rewind to 1000.

    python -m examples.resnet20 --dataset cifar10 --rewind_to 500
    python -m examples.resnet20 --rewind_to init --warmup 10000
"""

from absl import flags

from examples import experiment

FLAGS = flags.FLAGS
PAPER = {
    "resnet20": dict(batch_size=128, iterations=30_000, drops=(20_000, 25_000), rewind_to="500"),
    "vgg19": dict(batch_size=64, iterations=112_000, drops=(56_000, 84_000), rewind_to="1000"),
}
flags.DEFINE_enum("model", "resnet20", sorted(PAPER), "Network.")
flags.DEFINE_integer("warmup", 0, "Linear learning-rate warmup iterations.", lower_bound=0)
flags.DEFINE_float("weight_decay", 1e-4, "SGD weight decay.", lower_bound=0.0)
flags.DEFINE_float("rate", 0.2, "Per-round global pruning rate of the conv weights.", lower_bound=0.0, upper_bound=0.99)
experiment.define_flags(
    dataset="cifar10", rounds=20, iterations=None, batch_size=None,
    learning_rate=0.1, output_dir="runs/resnet20", rewind_to=None, distribution="global",
)


def augment(image, label):
    import tensorflow as tf

    image = tf.image.random_flip_left_right(image)
    image = tf.image.resize_with_crop_or_pad(image, 40, 40)
    image = tf.image.random_crop(image, tf.shape(image) - [8, 8, 0])
    return image, label


experiment.require_fraction("rate")


def main(argv):
    del argv
    import keras

    from examples import models

    paper = PAPER[FLAGS.model]
    for name in ("batch_size", "iterations", "rewind_to"):
        if FLAGS[name].value is None:
            FLAGS[name].value = paper[name]
    scale = FLAGS.iterations / paper["iterations"]
    drops = [round(d * scale) for d in paper["drops"]]
    build = models.resnet20 if FLAGS.model == "resnet20" else models.vgg19
    experiment.run(
        FLAGS.model,
        build_model=lambda shape: build(shape),
        make_optimizer=lambda n: keras.optimizers.SGD(
            models.WarmupPiecewise(FLAGS.learning_rate, drops, FLAGS.warmup),
            momentum=0.9, weight_decay=FLAGS.weight_decay),
        rate={"default": FLAGS.rate, "out": 0.0},
        augment=augment,
    )


if __name__ == "__main__":
    experiment.main(main)
