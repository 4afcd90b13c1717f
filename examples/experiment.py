"""The IMP experiment every example script runs: trials x arms x rounds.

An *arm* is the ticket (IMP with rewinding) or a control (`reinit`,
`random_prune`) that follows the ticket's masks of the same trial. Each arm is
one `model.fit` with the `IterativeMagnitudePruning` callback. Results go to
`--output_dir`:

- `config.json` — the flags of the run (a rerun with other flags is refused);
- `trial<t>/<arm>.json` — one finished arm; a rerun skips it (resume);
- `trial<t>/<arm>_checkpoint/` — the IMP callback's round checkpoints: a run
  killed mid-arm resumes at the round it was in;
- `trial<t>/ticket_masks.npz` — the ticket's masks per round (for controls);
- `results.json`, `results.csv` — one row per (trial, round, arm);
- `accuracy.png`, `early_stop.png`, `learning_curves.png`;
- `tensorboard/`, `ticket_trial<t>.npz`, and with `--export` the last ticket
  as `export/saved_model` and `export/ticket.tflite`.

`--distribute=mirrored` trains each arm with `model.fit` under
`tf.distribute.MirroredStrategy` (all local GPUs, or CPU);
`--distribute=multiworker` runs the same command on every host, each with its
`TF_CONFIG`, under `MultiWorkerMirroredStrategy` with
`keras_lottery.multi_worker.fit`. Only the chief writes files; `--output_dir`
must be a directory all workers share for resuming (docs/DISTRIBUTED.md).
"""

import contextlib
import csv
import json
import math
import os
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np

import common
import keras_lottery as kl
import plotting

FLAGS = flags.FLAGS
ARMS = ("ticket", "reinit", "random_prune")


def define_flags(**defaults):
    """Defines the flags every script shares; `defaults` are the paper's."""
    flags.DEFINE_string("dataset", defaults["dataset"], "Dataset (see common.load_dataset).")
    flags.DEFINE_integer("rounds", defaults["rounds"], "IMP rounds, dense round 0 included.", lower_bound=1)
    flags.DEFINE_integer("iterations", defaults["iterations"], "Training iterations per round.", lower_bound=1)
    flags.DEFINE_float("epochs_per_round", None, "Instead of --iterations: passes over the training set per round.", lower_bound=0.0)
    flags.DEFINE_integer("eval_every", 100, "Validate (early-stopping check) every N iterations.", lower_bound=1)
    flags.DEFINE_integer("batch_size", defaults["batch_size"], "Batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", defaults["learning_rate"], "Learning rate.", lower_bound=0.0)
    flags.DEFINE_integer("trials", 1, "Independent trials (seeds).", lower_bound=1)
    flags.DEFINE_list("controls", defaults.get("controls", ["reinit", "random_prune"]), "Controls: reinit, random_prune (empty for none).")
    flags.DEFINE_string("rewind_to", defaults.get("rewind_to", "init"), "init, an iteration k, lr or finetune.")
    flags.DEFINE_enum("scope", defaults.get("scope", "layerwise"), ["layerwise", "global"], "Pruning scope.")
    flags.DEFINE_integer("seed", 0, "Seed of trial 0 (trial t uses seed + t).")
    flags.DEFINE_string("output_dir", defaults["output_dir"], "Where results, plots and tickets go.")
    flags.DEFINE_integer(
        "steps_per_execution", None,
        "Train steps per compiled call. Default: the largest divisor of --eval_every "
        "(and of an iteration --rewind_to) up to 100; 1 under --distribute.", lower_bound=1)
    flags.DEFINE_bool(
        "jit_compile", None,
        "Compile the train step with XLA. Default: on without --distribute (Keras "
        "leaves it off on CPU-only machines; it is faster here, see docs/BENCHMARKS.md).")
    flags.DEFINE_enum("distribute", "none", ["none", "mirrored", "multiworker"],
                      "tf.distribute strategy: none, mirrored (one host, all its GPUs) or "
                      "multiworker (one process per host, TF_CONFIG set; see docs/DISTRIBUTED.md).")
    flags.DEFINE_bool("export", True, "Export the last ticket (SavedModel + .tflite).")
    flags.DEFINE_bool("tensorboard", True, "Write TensorBoard logs.")


def require_fraction(name):
    """Registers a validator: the float flag `name` must be in [0, 1) (NaN
    passes absl's own bounds, since every comparison with NaN is false)."""
    flags.register_validator(
        name,
        lambda value: value is None or 0.0 <= value < 1.0,
        message=f"--{name} must be a number in [0, 1).",
    )


def parse_rewind(value):
    """`--rewind_to` as the callback wants it."""
    if value in ("init", "lr", "finetune"):
        return value
    try:
        k = int(value)
    except ValueError:
        raise app.UsageError(
            f"--rewind_to must be init, lr, finetune or an iteration >= 0; got {value!r}."
        ) from None
    if k < 0:
        raise app.UsageError(f"--rewind_to must be >= 0; got {k}.")
    return k


def check_flags(train_size):
    """Validates flag combinations; returns (steps_per_epoch, epochs_per_round)."""
    unknown = sorted(set(FLAGS.controls) - {"reinit", "random_prune"})
    if unknown:
        raise app.UsageError(f"--controls accepts reinit and random_prune; got {unknown}.")
    if FLAGS.distribute != "none" and ((FLAGS.steps_per_execution or 1) > 1 or FLAGS.jit_compile):
        raise app.UsageError(
            f"--steps_per_execution > 1 and --jit_compile do not work with "
            f"--distribute={FLAGS.distribute} in Keras 3 (keras-team/keras#19246); "
            "use one or the other."
        )
    iterations = FLAGS.iterations
    if FLAGS.epochs_per_round is not None:
        iterations = max(1, round(FLAGS.epochs_per_round * train_size / FLAGS.batch_size))
    steps = min(FLAGS.eval_every, iterations)
    if iterations % steps:
        raise app.UsageError(
            f"Iterations per round ({iterations}) must be a multiple of --eval_every ({steps})."
        )
    rewind = parse_rewind(FLAGS.rewind_to)
    if isinstance(rewind, int) and rewind > iterations:
        raise app.UsageError(
            f"--rewind_to={rewind} is beyond a round of {iterations} iterations."
        )
    return steps, iterations // steps


def steps_per_execution(steps_per_epoch):
    """--steps_per_execution, or the fast default: the largest divisor of the
    epoch (and of an iteration --rewind_to, so θk is taken exactly at k) up to
    100; 1 under a distribution strategy."""
    if FLAGS.steps_per_execution is not None:
        return FLAGS.steps_per_execution
    if FLAGS.distribute != "none":
        return 1
    rewind = parse_rewind(FLAGS.rewind_to)
    period = math.gcd(steps_per_epoch, rewind) if isinstance(rewind, int) else steps_per_epoch
    return max(d for d in range(1, min(period, 100) + 1) if period % d == 0)


def jit_compile():
    """--jit_compile, or the fast default: XLA on unless distributed."""
    if FLAGS.jit_compile is not None:
        return FLAGS.jit_compile
    return FLAGS.distribute == "none"


class TestMetrics(keras.callbacks.Callback):
    """Adds `test_accuracy`/`test_loss` to each epoch's logs (place it before
    the IMP callback, so each round's results and `at_best` carry them), and
    keeps the per-epoch test accuracy in `path` so a resumed arm keeps its
    learning curve."""

    def __init__(self, test_data, path, start_epoch, write=True):
        super().__init__()
        self.test_data = test_data
        self.path = path
        self.write = write
        self.curve = []
        if start_epoch and os.path.exists(path):
            with open(path) as f:
                self.curve = json.load(f)[:start_epoch]

    def on_epoch_end(self, epoch, logs=None):
        if FLAGS.distribute == "multiworker":
            metrics = _multi_worker().evaluate(self.model, self.test_data)
        else:
            metrics = self.model.evaluate(self.test_data, verbose=0, return_dict=True)
        logs["test_accuracy"] = float(metrics["accuracy"])
        logs["test_loss"] = float(metrics["loss"])
        self.curve.append(logs["test_accuracy"])
        if self.write:
            common.write_json(self.path, self.curve)


def pipeline(x, y, batch_size, seed=None, augment=None, repeat=False):
    """tf.data pipeline: shuffled, repeated, augmented, batched, prefetched."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if repeat:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
        if augment is not None:
            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run(name, build_model, make_optimizer, rate, augment=None):
    """Runs all trials and arms; writes every output; returns the rows."""
    logging.set_verbosity(logging.WARNING)  # TF's INFO lines drown the table
    start = time.perf_counter()
    _strategy()  # MultiWorkerMirroredStrategy must exist before any other op
    try:
        train, val, test = common.load_dataset(FLAGS.dataset, FLAGS.seed)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(f"--dataset={FLAGS.dataset}: {error}") from None
    steps_per_epoch, epochs_per_round = check_flags(len(train[0]))
    if _is_chief():
        _check_writable(FLAGS.output_dir)
    config = _config(name, steps_per_epoch, epochs_per_round)
    _check_config(config)
    arms = ["ticket", *FLAGS.controls]
    rows, curves = [], {}
    for trial in range(FLAGS.trials):
        ticket_masks = None
        for arm in arms:
            done = _load_arm(trial, arm)
            if done is None:
                done = _run_arm(
                    trial, arm, build_model, make_optimizer, rate, (train, val, test),
                    steps_per_epoch, epochs_per_round, augment, ticket_masks,
                )
            else:
                print(f"trial {trial} {arm}: already done, skipped", flush=True)
            if arm == "ticket":
                ticket_masks = done.get("masks") or _load_masks(trial)
            rows.extend(done["rows"])
            curves[(trial, arm)] = done["curve"]
    if not _is_chief():
        print(f"{len(rows)} rows; the chief writes the results.")
        return rows
    _write_results(rows)
    plotting.all_plots(rows, curves, config, FLAGS.output_dir)
    table = results_table(rows, arms)
    print(table)
    print(f"{len(rows)} rows, wall time {time.perf_counter() - start:.0f}s; "
          f"plots: {os.path.join(FLAGS.output_dir, 'accuracy.png')}")
    return rows


def _check_writable(directory):
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise app.UsageError(
            f"--output_dir={directory} is not a writable directory ({error}). "
            "Choose another --output_dir."
        ) from None


def _config(name, steps_per_epoch, epochs_per_round):
    keys = ("dataset", "rounds", "batch_size", "learning_rate", "controls", "rewind_to",
            "scope", "seed", "steps_per_execution", "distribute")
    config = {k: FLAGS[k].value for k in keys}
    config["steps_per_execution"] = steps_per_execution(steps_per_epoch)
    config.update(script=name, steps_per_epoch=steps_per_epoch,
                  epochs_per_round=epochs_per_round,
                  iterations=steps_per_epoch * epochs_per_round)
    return config


def _check_config(config):
    path = os.path.join(FLAGS.output_dir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        saved_cmp = {k: v for k, v in saved.items() if k != "trials"}
        if not _is_chief():
            saved_cmp = {**saved_cmp, "trials": FLAGS.trials}
            config = {**config, "trials": FLAGS.trials}
        differences = {
            k: (saved_cmp.get(k), config.get(k))
            for k in set(saved_cmp) | set(config)
            if saved_cmp.get(k) != config.get(k)
        }
        if differences:
            lines = ", ".join(f"{k}: on disk {a!r}, now {b!r}" for k, (a, b) in sorted(differences.items()))
            raise app.UsageError(
                f"{FLAGS.output_dir} holds a run with other settings ({lines}). "
                "Use a new --output_dir or the same flags to resume."
            )
    if _is_chief():
        common.write_json(path, {**config, "trials": FLAGS.trials})


def _arm_path(trial, arm):
    return os.path.join(FLAGS.output_dir, f"trial{trial}", f"{arm}.json")


def _load_arm(trial, arm):
    path = _arm_path(trial, arm)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _load_masks(trial):
    path = os.path.join(FLAGS.output_dir, f"trial{trial}", "ticket_masks.npz")
    with np.load(path) as data:
        rounds = sorted({int(k.split(":")[0]) for k in data.files})
        return [
            {k.split(":", 1)[1]: data[k] for k in data.files if int(k.split(":")[0]) == r}
            for r in rounds
        ]


_STRATEGY = []


def _strategy():
    """The run's tf.distribute strategy (one per process), or None."""
    if FLAGS.distribute == "none":
        return None
    if not _STRATEGY:
        import tensorflow as tf

        if FLAGS.distribute == "mirrored":
            _STRATEGY.append(tf.distribute.MirroredStrategy())
        else:
            _STRATEGY.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _STRATEGY[0]


def _multi_worker():
    from keras_lottery import multi_worker  # TensorFlow-only

    return multi_worker


def _strategy_scope():
    strategy = _strategy()
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _is_chief():
    return FLAGS.distribute != "multiworker" or _multi_worker().is_chief(_strategy())


def _run_arm(trial, arm, build_model, make_optimizer, rate, data, steps_per_epoch,
             epochs_per_round, augment, ticket_masks):
    (x, y), (xv, yv), (xt, yt) = data
    seed = FLAGS.seed + trial
    keras.utils.set_random_seed(seed)
    with _strategy_scope():
        model = kl.wrap(build_model(x.shape[1:]))
        model.compile(
            make_optimizer(steps_per_epoch * epochs_per_round),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution(steps_per_epoch),
            jit_compile=jit_compile(),
        )
    control = None if arm == "ticket" else arm
    imp = _make_imp(
        rounds=FLAGS.rounds,
        epochs_per_round=epochs_per_round,
        rate=rate,
        scope=FLAGS.scope,
        rewind_to=parse_rewind(FLAGS.rewind_to),
        control=control,
        reference_masks=ticket_masks if control else None,
        seed=seed + 1000,
        checkpoint_dir=os.path.join(FLAGS.output_dir, f"trial{trial}", f"{arm}_checkpoint"),
        verbose=1,
    )
    trial_dir = os.path.join(FLAGS.output_dir, f"trial{trial}")
    os.makedirs(trial_dir, exist_ok=True)
    initial_epoch = imp.initial_epoch
    chief = _is_chief()
    test_metrics = TestMetrics(
        pipeline(xt, yt, 1000), os.path.join(trial_dir, f"{arm}_curve.json"), initial_epoch,
        write=chief,
    )
    callbacks = [test_metrics, imp]
    if FLAGS.tensorboard and chief:
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(FLAGS.output_dir, "tensorboard", f"trial{trial}_{arm}")))
    print(f"trial {trial} {arm}: {FLAGS.rounds} rounds x "
          f"{steps_per_epoch * epochs_per_round} iterations", flush=True)
    train_data = pipeline(x, y, FLAGS.batch_size, seed=seed, augment=augment, repeat=True)
    fit_kwargs = dict(
        steps_per_epoch=steps_per_epoch,
        epochs=imp.total_epochs,
        initial_epoch=initial_epoch,
        validation_data=pipeline(xv, yv, 1000),
        callbacks=callbacks,
        verbose=0,
    )
    if FLAGS.distribute == "multiworker":
        _multi_worker().fit(model, train_data, **fit_kwargs)
    else:
        model.fit(train_data, shuffle=False, **fit_kwargs)  # the pipeline shuffles
    rows = [_row(trial, arm, r) for r in imp.results]
    result = {"rows": rows, "curve": test_metrics.curve}
    if not chief:
        if arm == "ticket":
            result["masks"] = imp.mask_history  # the chief's file may lag behind
        return result
    if arm == "ticket":
        arrays = {f"{r}:{k}": m for r, masks in enumerate(imp.mask_history) for k, m in masks.items()}
        tmp = os.path.join(trial_dir, "ticket_masks.part.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, os.path.join(trial_dir, "ticket_masks.npz"))
        kl.save_ticket(model, os.path.join(FLAGS.output_dir, f"ticket_trial{trial}.npz"), imp=imp)
        model.save(os.path.join(trial_dir, "model.keras"))
        if FLAGS.export and trial == FLAGS.trials - 1:
            _export(model, xt)
    common.write_json(_arm_path(trial, arm), result)
    return result


def _make_imp(**kwargs):
    # Argument errors of the callback are flag errors here: report them as
    # usage errors, not tracebacks.
    try:
        return kl.IterativeMagnitudePruning(**kwargs)
    except (ValueError, TypeError) as error:
        raise app.UsageError(str(error)) from None


def _export(model, x_test):
    out = os.path.join(FLAGS.output_dir, "export")
    os.makedirs(out, exist_ok=True)
    saved = os.path.join(out, "saved_model")
    if not os.path.exists(saved):
        kl.export_saved_model(model, saved, sample_inputs=x_test[:32])
    kl.export_tflite(model, os.path.join(out, "ticket.tflite"), sample_inputs=x_test[:32])


def _row(trial, arm, result):
    at_best = result.get("at_best") or {}
    return {
        "trial": trial,
        "arm": arm,
        "round": result["round"],
        "density": result["density"],
        "test_accuracy_end": result.get("test_accuracy"),
        "test_accuracy_early_stop": at_best.get("test_accuracy"),
        "early_stop_iteration": result["best_val_loss_step"],
        "best_val_loss": result["best_val_loss"],
        "train_seconds": result["seconds"],
    }


COLUMNS = ["trial", "arm", "round", "density", "test_accuracy_end",
           "test_accuracy_early_stop", "early_stop_iteration", "best_val_loss",
           "train_seconds"]


def _write_results(rows):
    common.write_json(os.path.join(FLAGS.output_dir, "results.json"), rows)
    path = os.path.join(FLAGS.output_dir, "results.csv")
    with open(path + ".part", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".part", path)


def results_table(rows, arms):
    """Per round: % remaining, mean test accuracy (early stop) per arm, and the
    ticket's mean early-stop iteration."""
    header = ["round", "% remaining"] + [f"{a} acc" for a in arms] + ["ticket early-stop iter"]
    table = []
    for r in sorted({row["round"] for row in rows}):
        at = [row for row in rows if row["round"] == r]
        ticket = [row for row in at if row["arm"] == "ticket"]
        line = [r, f"{100 * np.mean([row['density'] for row in ticket]):.1f}"]
        for arm in arms:
            values = [row["test_accuracy_early_stop"] for row in at if row["arm"] == arm]
            line.append(f"{np.mean(values):.4f}" if values else "-")
        line.append(f"{np.mean([row['early_stop_iteration'] for row in ticket]):.0f}")
        table.append(line)
    return common.format_table(header, table)
