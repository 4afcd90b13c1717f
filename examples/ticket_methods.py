"""IMP tickets beside pruning-at-init masks: trials x methods x densities.

Each trial draws one θ0 (seed + trial). The `imp` arm runs global IMP,
rewound to θ0, at the rate that reaches the highest --densities in
--rounds_to_first rounds, and goes on at that rate to the lowest; its ticket
at each density is the round closest to it. Every other method (`random`,
`magnitude`, `snip`, `grasp`, `synflow`: `keras_lottery.prune_at_init`)
prunes the same θ0 to the IMP round's exact density, and trains for the
same --epochs as one IMP round. With --shuffle, every mask is also trained
shuffled within its layers (the "Missing the Mark" ablation: the same
per-layer counts at random positions).

    python examples/ticket_methods.py --dataset=idx:/usr/share/datasets/fashion-mnist \\
        --model=lenet --trials=3

Outputs (--output_dir): `config.json` (a rerun with other settings is
refused), `trial<t>/<method>_<density>.json` (one finished cell: a rerun
skips it), `trial<t>/imp_checkpoint/` (an interrupted IMP arm resumes at its
round), `trial<t>/imp_tickets/round<r>.npz`, `results.json`, `results.csv`,
`table.md` (mean [min, max] over trials) and `methods.png`.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
METHODS = ("imp", "random", "magnitude", "snip", "grasp", "synflow")
flags.DEFINE_string("dataset", "digits", "Dataset: digits, idx:<dir>, mnist or fashion_mnist.")
flags.DEFINE_enum("model", "lenet", ["lenet", "conv2"], "LeNet-300-100 or Conv-2.")
flags.DEFINE_list("methods", list(METHODS), f"Methods, of {', '.join(METHODS)}.")
flags.DEFINE_list("densities", ["0.036", "0.019"], "Fractions of the weights kept.")
flags.DEFINE_integer("rounds_to_first", 5, "IMP rounds to the highest density.", lower_bound=1)
flags.DEFINE_integer("epochs", 2, "Training epochs of one mask (one IMP round).", lower_bound=1)
flags.DEFINE_integer("train_examples", 0, "Use the first N training examples (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", 60, "Batch size.", lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Adam's learning rate (default: the paper's for --model).")
flags.DEFINE_integer("trials", 3, "Independent trials (seeds).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of trial 0 (trial t uses seed + t).")
flags.DEFINE_bool("shuffle", True, "Also train every mask shuffled within its layers.")
flags.DEFINE_integer("score_batches", 4, "Batches of 128 examples for SNIP and GraSP.", lower_bound=1)
flags.DEFINE_integer("synflow_iterations", 100, "SynFlow's pruning iterations.", lower_bound=1)
flags.DEFINE_float("grasp_temperature", 200.0, "GraSP: outputs divided by T (reference: 200).")
flags.DEFINE_string("output_dir", "runs/ticket_methods", "Where results and plots go.")

# Flags that do not change what a run computes: left out of its settings.
NOT_SETTINGS = ("output_dir", "trials")


def _check_flags():
    unknown = sorted(set(FLAGS.methods) - set(METHODS))
    if unknown or not FLAGS.methods:
        raise app.UsageError(f"--methods: unknown {unknown}; choose from {list(METHODS)}.")
    import method_trial

    try:
        return method_trial.parse_densities(FLAGS.densities)
    except ValueError as error:
        raise app.UsageError(f"--{error}") from None


def run_cell(trial, method, density, imp_masks):
    """One method at one density: its test accuracy (and shuffled), mask time."""
    import keras_lottery as kl
    from keras_lottery.methods import init_pruning

    started = time.perf_counter()
    row = {"method": method, "density": density}
    if method == "imp":
        masks = imp_masks
    else:
        model = trial.fresh_model()
        started = time.perf_counter()
        options = {"data": trial.batches(FLAGS.score_batches), "distribution": "global",
                   "seed": trial.seed,
                   "iterations": FLAGS.synflow_iterations,
                   "temperature": FLAGS.grasp_temperature if method == "grasp" else 1.0}
        masks = kl.prune_at_init(model, method, density, **options)
        row["mask_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        trial.train(model)
        row["train_seconds"] = time.perf_counter() - started
        row["test_accuracy"] = trial.test_accuracy(model)
    row["kept"] = kl.masks.density(masks)
    if FLAGS.shuffle and method != "random":
        row["shuffled_accuracy"] = trial.train_masked(
            init_pruning.shuffle_within_layers(masks, trial.seed + 7))
    return row


def main(argv):
    del argv
    densities = _check_flags()  # before TensorFlow starts: a refusal is quick
    import method_trial

    try:
        rate, rounds, imp_round = method_trial.checked_plan(
            densities, FLAGS.rounds_to_first, "imp" in FLAGS.methods)
    except ValueError as error:
        raise app.UsageError(f"--densities={FLAGS.densities}: {error}") from None
    import quiet_start

    quiet_start.start_tensorflow()
    import method_results
    import run_config
    from keras_lottery.files import file_io
    from run_directory import RunDirectory
    start = time.perf_counter()
    try:
        data = method_trial.load_data(FLAGS.dataset, FLAGS.seed, FLAGS.train_examples)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(f"--dataset={FLAGS.dataset}: {error}") from None
    settings = {name: value for name, value in run_config.script_flags(FLAGS, [sys.argv[0]]).items()
                if name not in NOT_SETTINGS}
    directory = RunDirectory(FLAGS.output_dir)
    directory.prepare(settings, FLAGS.trials)
    rows = []
    for t in range(FLAGS.trials):
        trial = method_trial.Trial(data, FLAGS.seed + t, FLAGS.model, FLAGS.learning_rate,
                                   FLAGS.batch_size, FLAGS.epochs)
        imp = (method_trial.run_imp(trial, directory, t, rate, rounds)
               if "imp" in FLAGS.methods else None)
        for target in densities:
            density = imp[imp_round[target]][0] if imp else target
            for method in FLAGS.methods:
                name = f"trial{t}/{method}_{target:g}.json"
                row = directory.load_arm(t, f"{method}_{target:g}")
                if row is None:
                    cell_start = time.perf_counter()
                    row = run_cell(trial, method, density,
                                   imp[imp_round[target]][2] if method == "imp" else None)
                    if method == "imp":
                        row["test_accuracy"] = imp[imp_round[target]][1]
                        row["round"] = imp_round[target]
                    row.update(trial=t, target=target)
                    directory.write_json(name, row)
                    print(f"trial {t} {method} at {100 * row['kept']:.2f}%: "
                          f"{method_results.describe(row)} "
                          f"({time.perf_counter() - cell_start:.0f}s)", flush=True)
                else:
                    print(f"trial {t} {method} at {target:g}: already done, skipped", flush=True)
                rows.append(row)
    method_results.write(directory, rows)
    table = method_results.table(rows)
    file_io.atomic_write(directory.file("table.md"), lambda f: f.write(table.encode() + b"\n"))
    method_results.plot(rows, os.path.join(directory.path, "methods.png"))
    print(table)
    print(f"{len(rows)} rows, wall time {time.perf_counter() - start:.0f}s; "
          f"plot: {os.path.join(directory.path, 'methods.png')}")


if __name__ == "__main__":
    app.run(main)
