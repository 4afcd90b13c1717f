"""Benchmark: .tflite bytes and accuracy of LeNet-300-100 tickets (issue targets).

Trains LeNet-300-100 with IMP (rate 20%, output 10%) on an MNIST-format IDX
directory, and at 21.1% and 3.6% of weights remaining (rounds 7 and 15)
exports the round's trained ticket as dense and sparse float `.tflite`,
then reports sparse/dense bytes and the agreement of `.tflite` and Keras
predictions on the full test set.

    python -m benchmarks.export_sizes --dataset idx:/usr/share/datasets/fashion-mnist

Targets: sparse/dense <= 0.30 at 21.1%, <= 0.08 at 3.6%; identical
predictions on >= 99.9% of test examples.
"""

import os
import sys
import tempfile
import time

from absl import app
from absl import flags

from examples import harness
import keras
import numpy as np

from examples import common
from examples import models
import keras_lottery as kl


FLAGS = flags.FLAGS
harness.define_common_flags(dataset=harness.FASHION_MNIST, output="export_sizes.json", seed=0)
flags.DEFINE_integer("epochs_per_round", 1, "Epochs per IMP round.", lower_bound=1)
flags.DEFINE_list("export_rounds", ["7", "15"], "Rounds whose tickets are exported.")

TARGETS = {7: 0.30, 15: 0.08}


class ExportAtRoundEnd(keras.callbacks.Callback):
    """Before the IMP callback prunes: export the round's trained ticket."""

    def __init__(self, imp, rounds, test, workdir):
        super().__init__()
        self.imp, self.rounds, self.test, self.workdir = imp, set(rounds), test, workdir
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.imp.epochs_per_round or self.imp.round not in self.rounds:
            return
        x, y = self.test
        r = self.imp.round
        density = kl.sparsity_report(self.model).density
        keras_logits = self.model.predict(x, verbose=0, batch_size=1000)
        dense = kl.export_tflite(self.model, os.path.join(self.workdir, f"r{r}_dense.tflite"), sparse=False)
        sparse = kl.export_tflite(self.model, os.path.join(self.workdir, f"r{r}_sparse.tflite"), sparse=True)
        tflite_logits = kl.tflite_predict(sparse.path, x, batch_size=1000)
        self.rows.append(
            {
                "round": r,
                "density": density,
                "dense_bytes": dense.bytes,
                "sparse_bytes": sparse.bytes,
                "ratio": sparse.bytes / dense.bytes,
                "target_ratio": TARGETS.get(r),
                "keras_test_accuracy": common.accuracy(keras_logits, y),
                "tflite_test_accuracy": common.accuracy(tflite_logits, y),
                "identical_predictions": float(
                    np.mean(np.argmax(keras_logits, 1) == np.argmax(tflite_logits, 1))
                ),
                "max_abs_logit_diff": float(np.abs(keras_logits - tflite_logits).max()),
            }
        )


def main(argv):
    del argv
    rounds = [int(r) for r in FLAGS.export_rounds]
    (x, y), (xv, yv), test = common.load_dataset(FLAGS.dataset, FLAGS.seed)
    keras.utils.set_random_seed(FLAGS.seed)
    model = kl.wrap(models.lenet_300_100(x.shape[1:]))
    common.compile_lenet(model)
    imp = kl.IterativeMagnitudePruning(
        rounds=max(rounds) + 1, epochs_per_round=FLAGS.epochs_per_round,
        rate={"default": 0.2, "output": 0.1}, verbose=1,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        exporter = ExportAtRoundEnd(imp, rounds, test, workdir)
        model.fit(x, y, validation_data=(xv, yv), batch_size=60, epochs=imp.total_epochs,
                  callbacks=[exporter, imp], verbose=0)
    seconds = time.perf_counter() - start
    header = ["round", "% remaining", "dense bytes", "sparse bytes", "sparse/dense",
              "target", "Keras acc", "TFLite acc", "identical predictions"]
    rows = [
        [r["round"], f"{100 * r['density']:.1f}", r["dense_bytes"], r["sparse_bytes"],
         r["ratio"], r["target_ratio"], r["keras_test_accuracy"], r["tflite_test_accuracy"],
         r["identical_predictions"]]
        for r in exporter.rows
    ]
    print(common.markdown_table(header, rows))
    print(f"wall time {seconds:.0f}s")
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    common.write_json(FLAGS.output, {"command": _command(FLAGS), "dataset": FLAGS.dataset,
                                     "epochs_per_round": FLAGS.epochs_per_round,
                                     "seconds": seconds, "rows": exporter.rows})


def _command(flag_values):
    """Every flag this script defines, at its value (examples/run_config.py)."""
    from examples import run_config

    return run_config.full_command(flag_values, sys.argv[0])


if __name__ == "__main__":
    app.run(main)
