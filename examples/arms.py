"""One arm of an example run: the ticket, or a control, as one `model.fit`.

The ticket arm runs IMP with rewinding and writes a ticket file for every
round (`trial<t>/tickets/round<r>.npz`) and its round-0 checkpoint. A control
arm (`reinit`, `random_prune`) follows the ticket's masks round by round
(read from those ticket files) and starts from the ticket's round-0
checkpoint: the dense round 0 is the same network trained on the same data,
so it is trained once and its row is marked `shared` in the control's
results.
"""

import contextlib
import json
import math
import os

from absl import logging

from examples import run_config


class TestMetrics:
    """Builds the callback that adds `test_accuracy` / `test_loss` to the
    logs of the epochs it evaluates (it goes before the IMP callback, so each
    round's row and `at_best` carry them) and keeps the per-epoch test
    accuracy (None where it did not evaluate).

    It evaluates every `every` epochs of a round, at every epoch whose
    validation loss is the round's lowest so far (so the early-stopping
    epoch is always evaluated) and at each round's last epoch.
    """

    @staticmethod
    def make(test_data, path, start_epoch, write, evaluate, initial_curve=None,
             every=1, epochs_per_round=None):
        import keras

        class _TestMetrics(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.curve = list(initial_curve or [])
                if start_epoch and os.path.exists(path):
                    with open(path) as f:
                        self.curve = json.load(f)[:start_epoch]
                self._best = None

            def _due(self, epoch, logs):
                in_round = epoch % epochs_per_round if epochs_per_round else epoch
                if in_round == 0:
                    self._best = None
                val_loss = logs.get("val_loss")
                best = val_loss is not None and (self._best is None or val_loss <= self._best)
                if best:
                    self._best = val_loss
                last = epochs_per_round is not None and in_round == epochs_per_round - 1
                return best or last or (in_round + 1) % every == 0 or val_loss is None

            def on_epoch_end(self, epoch, logs=None):
                if not self._due(epoch, logs):
                    self.curve.append(None)
                    return
                metrics = evaluate(self.model, test_data)
                logs["test_accuracy"] = float(metrics["accuracy"])
                logs["test_loss"] = float(metrics["loss"])
                self.curve.append(logs["test_accuracy"])
                if write:
                    tmp = path + ".part"
                    with open(tmp, "w") as f:
                        json.dump(self.curve, f)
                    os.replace(tmp, path)

        return _TestMetrics()


def pipeline(x, y, batch_size, seed=None, augment=None, repeat=False, weights=None):
    """tf.data pipeline: shuffled, repeated, augmented, batched, prefetched
    (with per-example `weights`, a third element)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if weights is None else (x, y, weights))
    if repeat:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
        if augment is not None:
            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_arm(config, directory, spec, data, trial, arm, runtime, ticket=None):
    """Trains one arm; returns `{"rows", "curve"[, "masks"]}`.

    Args:
        config: the `RunConfig`.
        directory: the `RunDirectory`.
        spec: `{"build_model", "make_optimizer", "rate", "augment"}`.
        data: `((x, y), (xv, yv), (xt, yt))`.
        trial, arm: which arm of which trial.
        runtime: `Runtime` (strategy, chief, fit/evaluate functions).
        ticket: for a control: the ticket arm's result of this trial.
    """
    import keras

    import keras_lottery as kl

    flags = config.flags
    (x, y), (xv, yv), (xt, yt) = data
    seed = flags["seed"] + trial
    keras.utils.set_random_seed(seed)
    with runtime.scope():
        model = kl.wrap(spec["build_model"](x.shape[1:]))
        model.compile(
            spec["make_optimizer"](config.iterations),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            **runtime.metrics(["accuracy"]),
            steps_per_execution=config.steps_per_execution,
            jit_compile=config.jit_compile,
        )
    control = None if arm == "ticket" else arm
    checkpoints = directory.checkpoint_dir(trial, arm)
    writes = runtime.chief

    def save_round_ticket(round_index, trained, row):
        if writes:
            kl.save_ticket(trained, directory.round_ticket(trial, round_index), imp=imp)

    try:
        imp = kl.IterativeMagnitudePruning(
            rounds=flags["rounds"],
            epochs_per_round=config.epochs_per_round,
            rate=spec["rate"],
            distribution=flags["distribution"],
            rewind_to=run_config.parse_rewind(flags["rewind_to"]),
            control=control,
            reference_masks=ticket["masks"] if control else None,
            seed=seed + 1000,
            checkpoint_dir=checkpoints,
            write_checkpoints=writes,
            keep_checkpoints=(0,) if arm == "ticket" else (),
            start_from=os.path.join(directory.path, ticket["round0_checkpoint"]) if control else None,
            on_round_end=save_round_ticket if arm == "ticket" else None,
            verbose=1,
        )
    except (ValueError, TypeError) as error:
        # Argument errors of the callback are flag errors here.
        from absl import app

        raise app.UsageError(str(error)) from None
    initial_epoch = imp.initial_epoch
    test_metrics = TestMetrics.make(
        runtime.held_out(xt, yt, 1000, "test"),
        directory.file(f"trial{trial}", f"{arm}_curve.json"),
        initial_epoch,
        write=writes,
        evaluate=lambda model, data: runtime.evaluate(model, data, "test"),
        initial_curve=ticket["curve"][: config.epochs_per_round] if control else None,
        every=config.test_every_epochs,
        epochs_per_round=config.epochs_per_round,
    )
    val_data = runtime.held_out(xv, yv, 1000, "val")
    callbacks = [*runtime.loss_corrections(), test_metrics, imp]
    if flags["tensorboard"] and writes:
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(directory.path, "tensorboard", f"trial{trial}_{arm}")))
    print(f"trial {trial} {arm}: {flags['rounds']} rounds x {config.iterations} iterations",
          flush=True)
    runtime.check_batch_size(flags["batch_size"])
    train_data = pipeline(x, y, flags["batch_size"], seed=seed, augment=spec.get("augment"),
                          repeat=True)
    if initial_epoch:
        # The batches an uninterrupted run would train on from here: a resumed
        # arm (or a control starting at the ticket's round 1) sees the same
        # data order.
        train_data = train_data.skip(initial_epoch * config.steps_per_epoch)
    build_for_fit(model, train_data)
    runtime.fit(
        model,
        train_data,
        steps_per_epoch=config.steps_per_epoch,
        epochs=imp.total_epochs,
        initial_epoch=initial_epoch,
        validation_data=val_data,
        callbacks=callbacks,
    )
    result = {"rows": [_row(trial, arm, r) for r in imp.results], "curve": test_metrics.curve}
    if arm == "ticket":
        # Relative to the run directory, so that a moved directory resumes.
        result["round0_checkpoint"] = os.path.relpath(imp.round_checkpoint_path(0), directory.path)
        if not writes:
            result["masks"] = imp.mask_history  # the chief's files may lag behind
    if not writes:
        return result
    if arm == "ticket":
        from keras_lottery.backend import processes

        kl.save_ticket(model, directory.file(f"ticket_trial{trial}.npz"), imp=imp)
        with processes.local_only():  # the chief alone: no collective
            model.save(directory.file(f"trial{trial}", "model.keras"))
            if flags["export"] and trial == flags["trials"] - 1:
                export(model, directory, xt)
    directory.write_json(directory.arm_file(trial, arm), {k: v for k, v in result.items() if k != "masks"})
    return result


def build_for_fit(model, dataset):
    """On JAX, builds what `fit` needs (model, compiled loss and metrics,
    optimizer) from `dataset`'s element spec, so that `fit` draws no batch of
    its own. Otherwise Keras' JAX `fit` draws one to build while its prefetch
    thread reads ahead, then starts the data again: how far the thread got
    varied from run to run, and with it a control arm's batch order (1 run in
    10 on 2 cores). TensorFlow's `fit` is left as it was (its order is
    deterministic, and every recorded run depends on it)."""
    import keras

    if keras.backend.backend() == "jax":
        from keras_lottery.backend import keras_internals

        keras_internals.symbolic_build(model, dataset.element_spec)


def ticket_masks(directory, trial, rounds):
    """The ticket arm's masks of every round, from its ticket files."""
    import keras_lottery as kl

    return [kl.read_ticket(directory.round_ticket(trial, r)).masks for r in range(rounds)]


def export(model, directory, x_test):
    """The last ticket as `export/saved_model` and `export/ticket.tflite`."""
    import keras_lottery as kl

    kl.export_saved_model(model, directory.file("export", "saved_model"),
                          sample_inputs=x_test[:32], overwrite=True)
    kl.export_tflite(model, directory.file("export", "ticket.tflite"),
                     sample_inputs=x_test[:32], overwrite=True)


def _row(trial, arm, result):
    at_best = result.get("at_best") or {}
    monitor = result.get("monitor", "val_loss")
    return {
        "trial": trial,
        "arm": arm,
        "round": result["round"],
        "density": result["density"],
        "test_accuracy_end": result.get("test_accuracy"),
        "test_accuracy_early_stop": at_best.get("test_accuracy"),
        "early_stop_iteration": result.get(f"best_{monitor}_step"),
        "best_val_loss": result.get(f"best_{monitor}"),
        "train_seconds": result["seconds"],
        "shared": bool(result.get("shared", False)),
    }


class Runtime:
    """Where arms train: one process (`model.fit`), MirroredStrategy,
    MultiWorkerMirroredStrategy (`keras_lottery.imp.multi_worker.fit`), or
    `keras.distribution.DataParallel` over every device of every JAX process
    (`model.fit`; several processes when `KERAS_DISTRIBUTION_*` is set)."""

    def __init__(self, distribute):
        self.distribute = distribute
        self._strategy = None
        self._loss_factors = {}

    def start(self):
        """Creates the strategy or distribution (before any other TensorFlow
        op or JAX computation)."""
        logging.set_verbosity(logging.WARNING)  # TF's INFO lines drown the table
        if self.distribute == "none":
            return
        if self.distribute == "data_parallel":
            self._start_data_parallel()
            return
        import tensorflow as tf

        if self.distribute == "mirrored":
            self._strategy = tf.distribute.MirroredStrategy()
        else:
            self._strategy = tf.distribute.MultiWorkerMirroredStrategy()

    @staticmethod
    def _start_data_parallel():
        import keras
        from absl import app

        if keras.backend.backend() != "jax":
            raise app.UsageError(
                f"--distribute=data_parallel runs keras.distribution on the JAX backend; "
                f"KERAS_BACKEND is {keras.backend.backend()!r}. Set KERAS_BACKEND=jax "
                "(or use --distribute=mirrored on TensorFlow).")
        from keras import distribution

        if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") != "1":
            distribution.initialize()  # reads KERAS_DISTRIBUTION_JOB_ADDRESSES, ..._PROCESS_ID
        # Global, not a scope: fit reads it to split each batch over processes.
        devices = distribution.list_devices()
        distribution.set_distribution(distribution.DataParallel(devices=devices))

    def scope(self):
        return self._strategy.scope() if self._strategy is not None else contextlib.nullcontext()

    @property
    def chief(self):
        if self.distribute == "data_parallel":
            from keras_lottery.backend import processes

            return processes.is_writer()
        if self.distribute != "multiworker":
            return True
        from keras_lottery.imp import multi_worker

        return multi_worker.is_chief(self._strategy)

    def fit(self, model, data, **kwargs):
        if self.distribute == "multiworker":
            from keras_lottery.imp import multi_worker

            multi_worker.fit(model, data, verbose=0, **kwargs)
        else:
            model.fit(data, shuffle=False, verbose=0, **kwargs)  # the pipeline shuffles

    def evaluate(self, model, data, split=None):
        if self.distribute == "multiworker":
            from keras_lottery.imp import multi_worker

            return multi_worker.evaluate(model, data)
        metrics = model.evaluate(data, verbose=0, return_dict=True)
        if split in self._loss_factors:
            metrics["loss"] *= self._loss_factors[split]
        return metrics

    def held_out(self, x, y, batch_size, split):
        """The pipeline of a held-out split (`split`: "val" or "test").

        keras.distribution splits every batch evenly over the devices and
        processes, so under data_parallel the batch size is rounded down to a
        multiple of the device count and the split padded to a whole number
        of batches with examples of weight 0. Accuracy is then exact; Keras'
        loss divides by the padded count, a constant factor for the split
        that `loss_corrections` (val_loss) and `evaluate` (test loss) take
        back out."""
        devices = self._devices()
        if devices == 1:
            return pipeline(x, y, batch_size)
        import numpy as np

        # Every batch full: Keras gives each process whole slices of a batch,
        # so a short last batch would leave a process without one.
        batch_size = min(batch_size, len(x) + -len(x) % devices)
        batch_size = max(devices, batch_size - batch_size % devices)
        pad = -len(x) % batch_size
        weights = np.concatenate([np.ones(len(x), "float32"), np.zeros(pad, "float32")])
        if pad:
            x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
            y = np.concatenate([y, np.repeat(y[:1], pad, axis=0)])
            self._loss_factors[split] = len(x) / (len(x) - pad)
        return pipeline(x, y, batch_size, weights=weights)

    def loss_corrections(self):
        """Callbacks (first in the list) that make the logged val_loss the
        mean over the real validation examples (see `held_out`)."""
        factor = self._loss_factors.get("val")
        if factor is None:
            return []
        import keras

        def correct(epoch, logs):
            if logs and "val_loss" in logs:
                logs["val_loss"] *= factor

        return [keras.callbacks.LambdaCallback(on_epoch_end=correct)]

    def _devices(self):
        if self.distribute != "data_parallel":
            return 1
        import keras

        return math.prod(keras.distribution.distribution().device_mesh.shape)

    def metrics(self, names):
        """`compile` arguments for `names`: weighted under data_parallel, so
        that the padding of `held_out` (weight 0) does not count."""
        return {"weighted_metrics" if self._devices() > 1 else "metrics": names}

    def check_batch_size(self, batch_size):
        """Raises a flag error unless `batch_size` splits evenly over the
        devices (keras.distribution requires it of every training batch)."""
        devices = self._devices()
        if batch_size % devices:
            from absl import app

            raise app.UsageError(
                f"--batch_size={batch_size} does not split over the {devices} devices of "
                f"--distribute=data_parallel; use a multiple of {devices}.")
