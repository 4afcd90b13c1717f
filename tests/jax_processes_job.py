"""One process of an IMP run in several JAX processes on 127.0.0.1 under
`keras.distribution.DataParallel` (tests/test_jax_processes.py starts them).

    KERAS_BACKEND=jax python tests/jax_processes_job.py --processes=2 \
        --process_id=0 --port=12345 --output=/tmp/p0.json
"""

import argparse
import json
import os
import signal

parser = argparse.ArgumentParser()
parser.add_argument("--processes", type=int, default=1)
parser.add_argument("--process_id", type=int, default=0)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--output", required=True)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--checkpoint_dir", default=None)
parser.add_argument("--ticket", default=None)
parser.add_argument("--global_distribution", type=int, default=1)
parser.add_argument("--model_parallel", type=int, default=0,
                    help="shard fc1/kernel across every device of every process")
parser.add_argument("--die_at_epoch", type=int, default=-1,
                    help="process 1 SIGKILLs itself at batch 2 of this epoch")
args = parser.parse_args()

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import distribution as kd  # noqa: E402

keras.utils.set_random_seed(0)
if args.processes > 1:
    kd.initialize(f"127.0.0.1:{args.port}", args.processes, args.process_id)

import keras_lottery as kl  # noqa: E402
from keras_lottery.backend import processes  # noqa: E402
from keras_lottery.files import file_io  # noqa: E402

written = []
_atomic_write = file_io.atomic_write


def counting_write(path, write):
    written.append(os.path.basename(str(path)))
    return _atomic_write(path, write)


file_io.atomic_write = counting_write

GLOBAL_BATCH = 16
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 8)).astype("float32")
y = rng.integers(0, 4, 96)
rows = processes.local_rows(len(x), GLOBAL_BATCH)

if args.processes > 1 and args.model_parallel:
    mesh = kd.DeviceMesh((1, args.processes), ["batch", "model"], kd.list_devices("cpu"))
    layout = kd.LayoutMap(mesh)
    layout["fc1/kernel"] = (None, "model")
    distribution = kd.ModelParallel(layout_map=layout, batch_dim_name="batch")
    distribution.auto_shard_dataset = False
    kd.set_distribution(distribution)
elif args.processes > 1 and args.global_distribution:
    distribution = kd.DataParallel(devices=kd.list_devices("cpu"))
    distribution.auto_shard_dataset = False  # the rows are split by hand
    kd.set_distribution(distribution)

inputs = keras.Input((8,))
hidden = keras.layers.Dense(16, activation="relu", name="fc1")(inputs)
model = kl.wrap(keras.Model(inputs, keras.layers.Dense(4, name="out")(hidden)))
model.compile(keras.optimizers.Adam(0.01),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
imp = kl.IterativeMagnitudePruning(rounds=args.rounds, epochs_per_round=1, rate=0.5, seed=1,
                                   rewind_to=2, checkpoint_dir=args.checkpoint_dir, verbose=0)


class DieAt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == args.die_at_epoch and batch == 2 and processes.index() == 1:
            os.kill(os.getpid(), signal.SIGKILL)


initial_epoch = imp.initial_epoch
model.fit(x[rows], y[rows], batch_size=GLOBAL_BATCH // processes.count(),
          epochs=imp.total_epochs, initial_epoch=initial_epoch, callbacks=[imp, DieAt()],
          verbose=0, shuffle=False)
out = {
    "process": processes.index(),
    "processes": processes.count(),
    "initial_epoch": initial_epoch,
    "masks": {k: m.astype(int).tolist() for k, m in imp.masks.items()},
    "kept": [row["kept"] for row in imp.results],
}
if args.ticket:
    kl.save_ticket(model, args.ticket, imp=imp)
    ticket = kl.read_ticket(args.ticket)  # every process reads process 0's file
    out["ticket_masks_equal"] = all(
        np.array_equal(ticket.masks[k], imp.masks[k]) for k in imp.masks)
out["written"] = written
with open(args.output, "w") as f:
    json.dump(out, f)
