"""The IMP experiment every example script runs: trials x arms x rounds.

An *arm* is the ticket (IMP with rewinding) or a control (`reinit`,
`random_prune`) that follows the ticket's masks of the same trial (see
`arms`). The run's settings come from the flags once (`run_config`), its
directory layout and resume rules are in `run_directory`, its rows and table
in `results`, its figures in `plotting`.

`--distribute=mirrored` trains each arm with `model.fit` under
`tf.distribute.MirroredStrategy` (all local GPUs, or CPU);
`--distribute=multiworker` runs the same command on every host, each with its
`TF_CONFIG`, under `MultiWorkerMirroredStrategy` with
`keras_lottery.imp.multi_worker.fit`. `--distribute=data_parallel` (JAX backend)
trains with `model.fit` under `keras.distribution.DataParallel` over every
device, and over several processes when `KERAS_DISTRIBUTION_NUM_PROCESSES`,
`KERAS_DISTRIBUTION_PROCESS_ID` and `KERAS_DISTRIBUTION_JOB_ADDRESSES` are set.
Only the chief (process 0) writes files; `--output_dir` must be a directory all
workers share for resuming (docs/DISTRIBUTED.md).

Flags are parsed and checked before Keras or TensorFlow is imported, so
`--help` and flag errors answer at once.
"""

import os
import sys
import time

from absl import app
from absl import flags

from examples import run_config

FLAGS = flags.FLAGS


def define_flags(**defaults):
    """Defines the flags every script shares; `defaults` are the paper's."""
    flags.DEFINE_string("dataset", defaults["dataset"], "Dataset: digits, idx:<dir>, mnist, fashion_mnist or cifar10.")
    flags.DEFINE_integer("rounds", defaults["rounds"], "IMP rounds, dense round 0 included.", lower_bound=1)
    flags.DEFINE_integer("iterations", defaults["iterations"], "Training iterations per round.", lower_bound=1)
    flags.DEFINE_float("epochs_per_round", None, "Instead of --iterations: passes over the training set per round.", lower_bound=0.0)
    flags.DEFINE_integer("eval_every", 100, "Validate (early-stopping check) every N iterations.", lower_bound=1)
    flags.DEFINE_integer(
        "test_every", None,
        "Evaluate the test set for the learning curves every N iterations (a multiple of "
        "--eval_every; default: at every validation). The test set is also evaluated at every "
        "new best validation loss of a round and at each round's end, so the test accuracy at "
        "the early-stopping iteration and at the end are exact at any N.", lower_bound=1)
    flags.DEFINE_integer("batch_size", defaults["batch_size"], "Batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", defaults["learning_rate"], "Learning rate.", lower_bound=0.0)
    flags.DEFINE_integer("trials", 1, "Independent trials (seeds).", lower_bound=1)
    flags.DEFINE_list("controls", defaults.get("controls", ["reinit", "random_prune"]), "Controls: reinit, random_prune (empty for none).")
    flags.DEFINE_string("rewind_to", defaults.get("rewind_to", "init"), "init, an iteration k, lr or finetune.")
    flags.DEFINE_enum("distribution", defaults.get("distribution", "uniform"), ["uniform", "global", "erk"], "How each round's target is spread: per layer, one global threshold, or ERK.")
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
    flags.DEFINE_enum("distribute", "none", ["none", "mirrored", "multiworker", "data_parallel"],
                      "none; tf.distribute: mirrored (one host, all its GPUs) or multiworker (one "
                      "process per host, TF_CONFIG set); data_parallel: keras.distribution on JAX, "
                      "every device of every process (KERAS_DISTRIBUTION_* set for several); "
                      "see docs/DISTRIBUTED.md.")
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


def main(script_main):
    """Runs a script: `--help` lists every flag the script takes (its own and
    these shared ones) and exits 0; flag errors are reported before anything
    heavy is imported; otherwise `absl.app.run`."""
    if any(arg in ("--help", "-h", "--helpshort", "-?") for arg in sys.argv[1:]):
        module = sys.modules["__main__"]
        print((module.__doc__ or "").strip() + "\n")
        print(FLAGS.module_help(sys.argv[0]))
        print(FLAGS.module_help("examples.experiment"))
        sys.exit(0)

    def checked_main(argv):
        problem = run_config.flag_problem(
            run_config.script_flags(FLAGS, [sys.argv[0], "experiment"]))
        if problem:
            raise app.UsageError(problem)
        from examples import quiet_start

        quiet_start.start_tensorflow()
        return script_main(argv)

    app.run(checked_main)


def run(name, build_model, make_optimizer, rate, augment=None):
    """Runs all trials and arms; writes every output; returns the rows."""
    from examples import arms as arms_lib
    from examples import common
    from examples import plotting
    from examples import results
    from examples.run_directory import RunDirectory

    start = time.perf_counter()
    runtime = arms_lib.Runtime(FLAGS.distribute)
    runtime.start()  # MultiWorkerMirroredStrategy must exist before any other op
    try:
        train, val, test = common.load_dataset(FLAGS.dataset, FLAGS.seed)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(f"--dataset={FLAGS.dataset}: {error}") from None
    config = run_config.RunConfig.from_flags(name, FLAGS, [sys.argv[0], "experiment"], len(train[0]))
    directory = RunDirectory(FLAGS.output_dir, chief=runtime.chief)
    directory.prepare(config.settings(), FLAGS.trials)
    spec = {"build_model": build_model, "make_optimizer": make_optimizer, "rate": rate,
            "augment": augment}
    rows, curves = [], {}
    for trial in range(FLAGS.trials):
        ticket = None
        for arm in config.arms:
            done = directory.load_arm(trial, arm)
            if done is None:
                if arm != "ticket" and ticket.get("masks") is None:
                    # Read only when a control still has to run: a finished
                    # trial needs none of the ticket arm's round files.
                    ticket["masks"] = arms_lib.ticket_masks(directory, trial, FLAGS.rounds)
                done = arms_lib.run_arm(config, directory, spec, (train, val, test), trial, arm,
                                        runtime, ticket)
            else:
                print(f"trial {trial} {arm}: already done, skipped", flush=True)
            if arm == "ticket":
                ticket = dict(done)
                ticket.setdefault("masks", None)
                ticket.setdefault("round0_checkpoint", os.path.join(
                    directory.checkpoint_dir(trial, "ticket"), "imp_checkpoint_round0.npz"))
            rows.extend(done["rows"])
            curves[(trial, arm)] = done["curve"]
    if not runtime.chief:
        print(f"{len(rows)} rows; the chief writes the results.")
        return rows
    results.write(directory, rows)
    plotting.all_plots(rows, curves, config.settings(), directory.path)
    print(results.table(rows, config.arms))
    print(f"{len(rows)} rows, wall time {time.perf_counter() - start:.0f}s; "
          f"plots: {os.path.join(directory.path, 'accuracy.png')}")
    return rows
