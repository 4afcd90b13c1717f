"""Lottery tickets of LeNet-300-100 on scikit-learn's handwritten digits.

Runs IMP (ticket) and the random re-initialisation control with the ticket's
own masks, on the embedded `load_digits` data (no download), and prints one
row per round. The paper's split (55K/5K/10K of 70K) is scaled to 1,797
images.

    python examples/demo.py --rounds 15 --epochs_per_round 10
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lottery as kl  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 15, "IMP rounds, dense round 0 included.", lower_bound=1)
flags.DEFINE_integer("epochs_per_round", 10, "Epochs per round.", lower_bound=1)
flags.DEFINE_float("rate", 0.2, "Per-round pruning rate (output layer: half).")
flags.DEFINE_integer("seed", 0, "Random seed.")


def load_digits_split(seed):
    """Digits scaled to [0, 1], split 55:5:10 like the paper's MNIST."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = round(len(x) * 10 / 70)
    n_val = round(len(x) * 5 / 70)
    test = x[:n_test], y[:n_test]
    val = x[n_test : n_test + n_val], y[n_test : n_test + n_val]
    train = x[n_test + n_val :], y[n_test + n_val :]
    return train, val, test


def lenet_300_100(input_dim):
    init = keras.initializers.GlorotNormal()
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            keras.layers.Dense(300, activation="relu", kernel_initializer=init, name="fc1"),
            keras.layers.Dense(100, activation="relu", kernel_initializer=init, name="fc2"),
            keras.layers.Dense(10, kernel_initializer=init, name="out"),
        ]
    )


def run_arm(data, control=None, reference_masks=None):
    (x, y), (xv, yv), (xt, yt) = data
    keras.utils.set_random_seed(FLAGS.seed)
    model = kl.wrap(lenet_300_100(x.shape[1]))
    model.compile(
        keras.optimizers.Adam(1.2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
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
    return imp, test_accuracy.by_round


class TestAccuracyAtRoundEnd(keras.callbacks.Callback):
    """Evaluates on the test set at the last epoch of each round, before the
    IMP callback prunes and rewinds (so it must come first in `callbacks`)."""

    def __init__(self, imp, x, y):
        super().__init__()
        self.imp, self.x, self.y = imp, x, y
        self.by_round = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.imp.epochs_per_round == 0:
            logits = self.model.predict(self.x, verbose=0, batch_size=512)
            self.by_round.append(float(np.mean(np.argmax(logits, 1) == self.y)))


def main(argv):
    del argv
    data = load_digits_split(FLAGS.seed)
    print(f"digits: {len(data[0][0])} train / {len(data[1][0])} val / {len(data[2][0])} test")
    ticket, ticket_acc = run_arm(data)
    _, reinit_acc = run_arm(data, control="reinit", reference_masks=ticket.mask_history)
    print(f"{'round':>5}  {'% remaining':>11}  {'ticket acc':>10}  {'reinit acc':>10}  {'early-stop step':>15}")
    for row, t, r in zip(ticket.results, ticket_acc, reinit_acc):
        print(
            f"{row['round']:>5}  {100 * row['density']:>11.1f}  {t:>10.4f}  {r:>10.4f}  "
            f"{row['best_val_loss_step']:>15}"
        )


if __name__ == "__main__":
    app.run(main)
