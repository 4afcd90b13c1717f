"""Benchmark: does RigL grow by real gradients? (issue 24)

RigL grows the inactive connections with the largest |gradient|. If those
gradients were all 0 (a gradient taken through the mask, or every unit dead),
growth would fall back to index order among ties, silently. This trains
LeNet-300-100 under RigL and records, per update, the share of inactive
connections whose gradient is nonzero (`grow_candidates_nonzero`) and the
test accuracy at the end.

    python -m benchmarks.rigl_growth --dataset=idx:/usr/share/datasets/fashion-mnist
"""

import json
import sys

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
harness.define_common_flags(dataset="digits", seed=0, output="rigl_growth.json")
flags.DEFINE_float("density", 0.1, "RigL's density.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("epochs", 2, "Epochs of training.", lower_bound=1)
flags.DEFINE_integer("update_every", 100, "Steps between updates.", lower_bound=1)


def main(argv):
    del argv
    import keras

    from examples import common
    import keras_lottery as kl
    from examples import models
    from examples import run_config
    from keras_lottery.files import file_io

    (x, y), _, (xt, yt) = common.load_dataset(FLAGS.dataset, seed=FLAGS.seed)
    keras.utils.set_random_seed(FLAGS.seed)
    model = kl.wrap(models.lenet_300_100(x.shape[1:]))
    model.compile(keras.optimizers.Adam(1.2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rigl = kl.DynamicSparseTraining("rigl", density=FLAGS.density, update_every=FLAGS.update_every,
                                    data=(x, y), batch_size=60, seed=FLAGS.seed, verbose=0)
    model.fit(x, y, batch_size=60, epochs=FLAGS.epochs, callbacks=[rigl], verbose=0)
    shares = [round(u["grow_candidates_nonzero"], 4) for u in rigl.updates]
    result = {
        "command": run_config.full_command(FLAGS, sys.argv[0]),
        "updates": len(shares),
        "grow_candidates_nonzero": shares,
        "grow_candidates_nonzero_range": [min(shares), max(shares)] if shares else None,
        "test_accuracy": round(float(model.evaluate(xt, yt, verbose=0)[1]), 4),
    }
    file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
