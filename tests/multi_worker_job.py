"""One worker of the multi-worker IMP tests (tests/imp/test_multi_worker.py).

Run with TF_CONFIG set for a cluster, or without it for the single-process
reference. Writes the final masks, weights and IMP results to
`<output>.npz` / `<output>.json`.

    python tests/multi_worker_job.py --output=/tmp/w0 --rounds=3
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# The strategy must exist before any other TensorFlow op.
strategy = (
    tf.distribute.MultiWorkerMirroredStrategy()
    if os.environ.get("TF_CONFIG")
    else tf.distribute.get_strategy()
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lottery as kl  # noqa: E402
from keras_lottery.imp import multi_worker  # noqa: E402


class _SlowEpochs(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs_per_round", type=int, default=2)
    parser.add_argument("--rewind_to", default="init")
    parser.add_argument("--control", default=None)
    parser.add_argument("--checkpoint_dir", default=None)
    parser.add_argument("--epoch_sleep", type=float, default=0.0)
    args = parser.parse_args()
    rewind = int(args.rewind_to) if args.rewind_to.isdigit() else args.rewind_to

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 12)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(12, 3)), axis=1).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x[:96], y[:96])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[96:], y[96:])).batch(16)
    with strategy.scope():
        inputs = keras.Input((12,))
        hidden = keras.layers.Dense(16, activation="relu", name="fc0")(inputs)
        outputs = keras.layers.Dense(3, name="out")(hidden)
        model = kl.wrap(keras.Model(inputs, outputs))
        model.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    imp = kl.IterativeMagnitudePruning(
        rounds=args.rounds, epochs_per_round=args.epochs_per_round, rate=0.3,
        rewind_to=rewind, control=args.control, seed=11,
        checkpoint_dir=args.checkpoint_dir, verbose=0,
    )
    initial_epoch = imp.initial_epoch
    print(f"initial_epoch={initial_epoch}", flush=True)
    multi_worker.fit(
        model, train, epochs=imp.total_epochs, validation_data=val,
        callbacks=[imp, _SlowEpochs(args.epoch_sleep)],
        initial_epoch=initial_epoch, verbose=0,
    )
    arrays = {f"mask:{k}": v for k, v in imp.masks.items()}
    arrays.update({f"var:{v.path}": keras.ops.convert_to_numpy(v.value) for v in model.variables})
    np.savez(args.output + ".npz", **arrays)
    with open(args.output + ".json", "w") as f:
        json.dump(imp.results, f, default=float)


if __name__ == "__main__":
    main()
