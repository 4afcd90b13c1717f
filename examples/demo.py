"""Lottery tickets of LeNet-300-100 on scikit-learn's handwritten digits.

Runs IMP (the ticket) and the random re-initialisation control with the
ticket's own masks on the embedded `load_digits` data (no download), prints
one row per round and saves the run (trained wrapped model, ticket file,
results) to --output_dir, ready for examples/export_ticket.py.

    python examples/demo.py --rounds 15 --epochs_per_round 10
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402

import common  # noqa: E402
import keras_lottery as kl  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 15, "IMP rounds, dense round 0 included.", lower_bound=1)
flags.DEFINE_integer("epochs_per_round", 10, "Epochs per round.", lower_bound=1)
flags.DEFINE_float("rate", 0.2, "Per-round pruning rate (output layer: half).", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("output_dir", "runs/demo", "Where the run is saved.")


class TestAccuracyAtRoundEnd(keras.callbacks.Callback):
    """Test accuracy at the last epoch of each round, before the IMP callback
    prunes and rewinds (so it must come before it in `callbacks`)."""

    def __init__(self, imp, x, y):
        super().__init__()
        self.imp, self.x, self.y = imp, x, y
        self.by_round = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.imp.epochs_per_round == 0:
            logits = self.model.predict(self.x, verbose=0, batch_size=512)
            self.by_round.append(common.accuracy(logits, self.y))


def run_arm(data, control=None, reference_masks=None):
    (x, y), (xv, yv), (xt, yt) = data
    keras.utils.set_random_seed(FLAGS.seed)
    model = kl.wrap(common.lenet_300_100(x.shape[1:]))
    common.compile_lenet(model)
    imp = kl.IterativeMagnitudePruning(
        rounds=FLAGS.rounds,
        epochs_per_round=FLAGS.epochs_per_round,
        rate=FLAGS.rate,
        control=control,
        reference_masks=reference_masks,
        seed=FLAGS.seed + 1,
        verbose=0,
    )
    test_accuracy = TestAccuracyAtRoundEnd(imp, xt, yt)
    model.fit(
        x, y, validation_data=(xv, yv), batch_size=60,
        epochs=imp.total_epochs, callbacks=[test_accuracy, imp], verbose=0,
    )
    return model, imp, test_accuracy.by_round


def main(argv):
    del argv
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    data = common.load_dataset("digits", FLAGS.seed)
    print(f"digits: {len(data[0][0])} train / {len(data[1][0])} val / {len(data[2][0])} test")
    model, ticket, ticket_acc = run_arm(data)
    _, _, reinit_acc = run_arm(data, control="reinit", reference_masks=ticket.mask_history)
    header = ["round", "% remaining", "ticket acc", "reinit acc", "early-stop step"]
    rows = [
        [row["round"], f"{100 * row['density']:.1f}", t, r, row["best_val_loss_step"]]
        for row, t, r in zip(ticket.results, ticket_acc, reinit_acc)
    ]
    print(common.format_table(header, rows))
    model.save(os.path.join(FLAGS.output_dir, "model.keras"))
    kl.save_ticket(model, os.path.join(FLAGS.output_dir, "ticket.npz"), imp=ticket)
    common.write_json(
        os.path.join(FLAGS.output_dir, "results.json"),
        {"ticket": ticket.results, "ticket_test_accuracy": ticket_acc,
         "reinit_test_accuracy": reinit_acc},
    )
    print(f"run saved to {FLAGS.output_dir} (model.keras, ticket.npz, results.json)")


if __name__ == "__main__":
    app.run(main)
