"""Benchmark: instability (linear mode connectivity) against the rewind point k
(issue 16).

For each k in --steps, the network trained k iterations in one data order
(θk), then two copies trained --copy_steps iterations more with different data
orders, and the test error along the line between them
(`kl.instability_sweep`, 11 points, BatchNorm re-estimated). With
--imp_rounds, an IMP run (global, rewound to --imp_rewind) records the
barrier of its ticket at the start of every round (`instability=`).
Frankle et al. (ICML 2020) report LeNet stable from init (barrier < 2%),
deeper networks stable only from some k > 0.

    python -m benchmarks.instability --model=lenet --steps=0 --copy_steps=1834
    python -m benchmarks.instability --model=conv2 --train_examples=5000 --steps=0,25,100,400
    python -m benchmarks.instability --model=resnet20 --train_examples=5000 --steps=0,25,100,400
"""

import os
import json
import sys
import time

from absl import app
from absl import flags

from examples import harness

HERE = os.path.dirname(os.path.abspath(__file__))

FLAGS = flags.FLAGS
harness.define_common_flags(dataset=harness.FASHION_MNIST, seed=0, output=None)
flags.DEFINE_enum("model", "lenet", ["lenet", "conv2", "resnet20"], "Network.")
flags.DEFINE_list("steps", ["0"], "Rewind iterations k to measure from.")
flags.DEFINE_integer("copy_steps", 1834, "Iterations each copy trains from θk.", lower_bound=1)
flags.DEFINE_integer("batch_size", 60, "Batch size.", lower_bound=1)
flags.DEFINE_integer("train_examples", 0, "Use the first N training examples (0: all).", lower_bound=0)
flags.DEFINE_integer("test_examples", 0, "Evaluate on the first N test examples (0: all).", lower_bound=0)
flags.DEFINE_integer("points", 11, "Points on the line.", lower_bound=2)
flags.DEFINE_integer("imp_rounds", 0, "Also run IMP for N rounds, recording each round's barrier.",
                     lower_bound=0)
flags.DEFINE_integer("imp_epochs", 2, "Epochs of each IMP round.", lower_bound=1)
flags.DEFINE_float("imp_rate", 0.5, "IMP's per-round rate (global).")
flags.DEFINE_integer("imp_rewind", 0, "IMP's rewind iteration k (0: θ0).", lower_bound=0)

# Optimizers of this small budget: the paper's Adam for LeNet, Adam 1e-3 for
# Conv-2 (its 2e-4 is too slow for a few hundred steps), SGD with momentum for
# ResNet-20 (Frankle et al. 2020 train it with SGD; no warmup here).
OPTIMIZERS = {"lenet": ("adam", 1.2e-3), "conv2": ("adam", 1e-3), "resnet20": ("sgd", 0.05)}


def build(shape):
    import keras

    import keras_lottery as kl
    from examples import models

    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.model == "lenet":
        network = models.lenet_300_100(shape)
    elif FLAGS.model == "conv2":
        network = models.conv_net(2, (*shape, 1) if len(shape) == 2 else shape)
    else:
        network = models.resnet20((*shape, 1) if len(shape) == 2 else shape)
    kind, learning_rate = OPTIMIZERS[FLAGS.model]
    optimizer = (keras.optimizers.Adam(learning_rate) if kind == "adam"
                 else keras.optimizers.SGD(learning_rate, momentum=0.9))
    model = kl.wrap(network)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main(argv):
    del argv
    from examples import run_config
    from examples import common
    import keras_lottery as kl
    from keras_lottery.files import file_io

    (x, y), _, (xt, yt) = common.load_dataset(FLAGS.dataset, seed=0)
    if FLAGS.train_examples:
        x, y = x[:FLAGS.train_examples], y[:FLAGS.train_examples]
    if FLAGS.test_examples:
        xt, yt = xt[:FLAGS.test_examples], yt[:FLAGS.test_examples]
    if FLAGS.model != "lenet" and x.ndim == 3:
        x, xt = x[..., None], xt[..., None]
    model = build(x.shape[1:])
    probe = kl.InstabilityProbe((xt, yt), train_data=(x, y), steps=FLAGS.copy_steps,
                                batch_size=FLAGS.batch_size, points=FLAGS.points)
    started = time.perf_counter()
    sweep = kl.instability_sweep(model, probe, [int(k) for k in FLAGS.steps])
    result = {
        "command": run_config.full_command(FLAGS, sys.argv[0]),
        "model": FLAGS.model,
        "optimizer": OPTIMIZERS[FLAGS.model],
        "steps": sweep.steps,
        "barriers": sweep.barriers,
        # The copies' own test errors (the path's ends) and the path between:
        # they show the copies trained, which a barrier alone does not.
        "endpoint_errors": [[e[0], e[-1]] for e in sweep.errors],
        "path_errors": sweep.errors,
        "earliest_stable": sweep.earliest_stable,
        "sweep_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result), flush=True)
    if FLAGS.imp_rounds:
        started = time.perf_counter()
        model = build(x.shape[1:])
        imp = kl.IterativeMagnitudePruning(
            rounds=FLAGS.imp_rounds, epochs_per_round=FLAGS.imp_epochs, rate=FLAGS.imp_rate, distribution="global",
            rewind_to=FLAGS.imp_rewind or "init", instability=probe, monitor="loss")
        model.fit(x, y, batch_size=FLAGS.batch_size, epochs=imp.total_epochs, callbacks=[imp],
                  verbose=0)
        result["imp"] = [{"round": row["round"], "density": row["density"],
                          "barrier": row["instability_barrier"],
                          "errors": row["instability_errors"]} for row in imp.results]
        result["imp_seconds"] = round(time.perf_counter() - started, 1)
    output = FLAGS.output or os.path.join(HERE, "results", f"instability_{FLAGS.model}.json")
    file_io.atomic_write(output, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
