"""Benchmark: linear mode connectivity of LeNet-300-100 from its init (issue 16).

Two copies trained from θ0 with different data orders (seeds 0 and 1), the
test error along the line between them (`kl.linear_mode_connectivity`).
Frankle et al. (ICML 2020) report LeNet stable from init: barrier < 2% error.

    python benchmarks/instability.py --epochs=2
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "idx:/usr/share/datasets/fashion-mnist", "'digits' or 'idx:<dir>'.")
flags.DEFINE_integer("epochs", 2, "Epochs each copy trains.", lower_bound=1)
flags.DEFINE_integer("points", 11, "Points on the line.", lower_bound=2)
flags.DEFINE_string("output", os.path.join(HERE, "results", "instability.json"), "JSON results.")


def main(argv):
    del argv
    import keras
    import common
    import models
    import keras_lottery as kl
    from keras_lottery import file_io

    (x, y), _, test = common.load_dataset(FLAGS.dataset, seed=0)
    keras.utils.set_random_seed(0)
    model = common.compile_lenet(kl.wrap(models.lenet_300_100(x.shape[1:])))

    def train(m, seed):
        keras.utils.set_random_seed(seed)  # the data order of this copy
        m.fit(x, y, batch_size=60, epochs=FLAGS.epochs, verbose=0)

    started = time.perf_counter()
    result = kl.linear_mode_connectivity(model, train, test, points=FLAGS.points)
    row = {
        "command": "python benchmarks/instability.py " + " ".join(sys.argv[1:]),
        "alphas": result.alphas,
        "test_errors": result.errors,
        "barrier": result.barrier,
        "seconds": round(time.perf_counter() - started, 1),
    }
    file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(row, indent=1).encode()))
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    app.run(main)
