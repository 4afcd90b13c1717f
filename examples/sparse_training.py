"""Dynamic sparse training beside IMP: RigL, SET and static sparse training
at each density, against the IMP ticket, with the training steps each took.

Each trial draws one θ0 (seed + trial). `rigl`, `set` and `static` train the
network sparse from θ0 for --sparse_epochs (default: --epochs) with
`keras_lottery.DynamicSparseTraining` (ERK or uniform budgets); the `imp`
arm runs global IMP rewound to θ0 (as in `ticket_methods.py`), each round
--epochs, and its ticket at each density is the closest round, whose exact
density the sparse methods then train at; its steps are every round's up to
that one.

    python examples/sparse_training.py --dataset=idx:/usr/share/datasets/fashion-mnist \\
        --model=lenet --densities=0.1,0.02 --trials=3

Outputs (--output_dir): `config.json` (a rerun with other settings is
refused), `trial<t>/<method>_<density>.json` (one finished cell: a rerun
skips it), `trial<t>/imp_checkpoint/`, `results.json`, `table.md` and
`sparse_training.png`.
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
METHODS = ("rigl", "set", "static", "imp")
flags.DEFINE_string("dataset", "digits", "Dataset: digits, idx:<dir>, mnist or fashion_mnist.")
flags.DEFINE_enum("model", "lenet", ["lenet", "conv2"], "LeNet-300-100 or Conv-2.")
flags.DEFINE_list("methods", list(METHODS), f"Methods, of {', '.join(METHODS)}.")
flags.DEFINE_list("densities", ["0.1", "0.02"], "Fractions of the weights kept.")
flags.DEFINE_enum("distribution", "erk", ["erk", "uniform"], "Sparse training's budgets.")
flags.DEFINE_integer("epochs", 2, "Epochs of each IMP round (and of sparse training).", lower_bound=1)
flags.DEFINE_integer("sparse_epochs", 0, "Epochs of each sparse training run (0: --epochs).",
                     lower_bound=0)
flags.DEFINE_integer("update_every", 100, "Steps between mask updates.", lower_bound=1)
flags.DEFINE_float("drop_fraction", 0.3, "Fraction moved at the first update (cosine decay).")
flags.DEFINE_integer("rounds_to_first", 5, "IMP rounds to the highest density.", lower_bound=1)
flags.DEFINE_integer("train_examples", 0, "Use the first N training examples (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", 60, "Batch size.", lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Adam's learning rate (default: the paper's for --model).")
flags.DEFINE_integer("trials", 3, "Independent trials (seeds).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of trial 0 (trial t uses seed + t).")
flags.DEFINE_string("output_dir", "runs/sparse_training", "Where results and plots go.")


def sparse_cell(trial, method, density):
    """Trains θ0 sparse with `method`; returns the cell's row."""
    import keras_lottery as kl
    from keras_lottery.backend import optimizer_state

    (x, y), _, _ = trial.data
    model = trial.fresh_model()
    dst = kl.DynamicSparseTraining(
        method, density=density, distribution=FLAGS.distribution,
        update_every=FLAGS.update_every, drop_fraction=FLAGS.drop_fraction,
        data=(x, y), batch_size=FLAGS.batch_size, seed=trial.seed, verbose=0)
    started = time.perf_counter()
    trial.train(model, epochs=FLAGS.sparse_epochs or None, callbacks=[dst])
    seconds = time.perf_counter() - started
    steps = optimizer_state.iterations(model.optimizer)
    return {"kept": kl.masks.density(kl.get_masks(model)),
            "test_accuracy": trial.test_accuracy(model), "steps": steps,
            "train_seconds": seconds, "updates": len(dst.updates),
            "update_seconds": sum(u["seconds"] for u in dst.updates)}


def table(rows):
    """Markdown table: per density and method, mean [min, max] accuracy and
    the mean training steps.

    >>> print(table([{"method": "rigl", "target": 0.1, "kept": 0.1, "test_accuracy": 0.9,
    ...               "steps": 100, "updates": 3}]))
    | % remaining | method | test accuracy % | steps |
    |---|---|---|---|
    | 10.00 | rigl | 90.00 | 100 |
    >>> print(table([{"method": "set", "target": 0.1, "kept": 0.1, "test_accuracy": 0.9,
    ...               "steps": 100, "updates": 0}]).splitlines()[2])
    | 10.00 | set (no update) | 90.00 | 100 |
    """
    import numpy as np

    import common

    lines = []
    for target in sorted({row["target"] for row in rows}, reverse=True):
        for method in [m for m in METHODS if any(r["method"] == m for r in rows)]:
            cells = [r for r in rows if r["method"] == method and r["target"] == target]
            if not cells:
                continue
            values = 100 * np.array([r["test_accuracy"] for r in cells])
            text = (f"{values[0]:.2f}" if len(values) == 1 else
                    f"{values.mean():.2f} [{values.min():.2f}, {values.max():.2f}]")
            steps = [r["steps"] for r in cells if r.get("steps") is not None]
            # A moving method that never moved a connection trained as `static`.
            still = method in ("rigl", "set") and any(r.get("updates") == 0 for r in cells)
            lines.append([f"{100 * np.mean([r['kept'] for r in cells]):.2f}",
                          method + (" (no update)" if still else ""), text,
                          f"{np.mean(steps):.0f}" if steps else "-"])
    text = common.markdown_table(["% remaining", "method", "test accuracy %", "steps"], lines)
    if any("(no update)" in line[1] for line in lines):
        text += ("\n\n(no update): the masks never moved in at least one trial (the run was "
                 "shorter than --update_every before updates stop); the row is static training.")
    return text


def plot(rows, path):
    """`sparse_training.png`: accuracy vs training steps, one marker per
    method, one panel per density (mean, min/max bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    targets = sorted({row["target"] for row in rows}, reverse=True)
    most = max([r["steps"] or 0 for r in rows] + [1])
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        points = {}
        for method in METHODS:
            cells = [r for r in rows if r["method"] == method and r["target"] == target]
            if cells:
                points[method] = (np.mean([r["steps"] or 0 for r in cells]),
                                  100 * np.array([r["test_accuracy"] for r in cells]))
        for method, marker in zip(METHODS, "os^D"):
            if method not in points:
                continue
            steps, values = points[method]
            # Methods with the same steps are dodged sideways so their bars stay apart.
            same = [m for m in points if points[m][0] == steps]
            dodge = (same.index(method) - (len(same) - 1) / 2) * 0.02 * most
            ax.errorbar([steps + dodge], [values.mean()],
                        yerr=[[values.mean() - values.min()], [values.max() - values.mean()]],
                        marker=marker, capsize=3, linestyle="none", label=method)
        kept = 100 * np.mean([r["kept"] for r in rows if r["target"] == target])
        ax.set_xlim(0, 1.1 * most)
        ax.set_title(f"{kept:.2g}% of weights")
        ax.set_xlabel("training steps (IMP: all rounds; same-step markers dodged)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    import method_trial  # flag checks first: a refusal does not wait for TensorFlow

    unknown = sorted(set(FLAGS.methods) - set(METHODS))
    if unknown or not FLAGS.methods:
        raise app.UsageError(f"--methods: unknown {unknown}; choose from {list(METHODS)}.")
    try:
        densities = method_trial.parse_densities(FLAGS.densities)
    except ValueError as error:
        raise app.UsageError(f"--{error}") from None
    try:
        rate, rounds, imp_round = method_trial.checked_plan(
            densities, FLAGS.rounds_to_first, "imp" in FLAGS.methods)
    except ValueError as error:
        raise app.UsageError(f"--densities={FLAGS.densities}: {error}") from None
    import quiet_start

    quiet_start.start_tensorflow()
    import run_config
    from keras_lottery.files import file_io
    from run_directory import RunDirectory

    start = time.perf_counter()
    try:
        data = method_trial.load_data(FLAGS.dataset, FLAGS.seed, FLAGS.train_examples)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(f"--dataset={FLAGS.dataset}: {error}") from None
    moving = [m for m in FLAGS.methods if m in ("rigl", "set")]
    sparse_steps = (FLAGS.sparse_epochs or FLAGS.epochs) * -(-len(data[0][0]) // FLAGS.batch_size)
    if moving and FLAGS.update_every >= int(0.75 * sparse_steps):
        raise app.UsageError(
            f"--update_every={FLAGS.update_every}: {', '.join(moving)} would never update. A "
            f"sparse run trains {sparse_steps} steps and updates stop at 3/4 of them "
            f"({int(0.75 * sparse_steps)}); use --update_every below that, or more "
            "--sparse_epochs.")
    settings = {k: v for k, v in run_config.script_flags(FLAGS, [sys.argv[0]]).items()
                if k not in ("output_dir", "trials")}
    directory = RunDirectory(FLAGS.output_dir)
    directory.prepare(settings, FLAGS.trials)
    rows = []
    for t in range(FLAGS.trials):
        trial = method_trial.Trial(data, FLAGS.seed + t, FLAGS.model, FLAGS.learning_rate,
                                   FLAGS.batch_size, FLAGS.epochs)
        imp = (method_trial.run_imp(trial, directory, t, rate, rounds)
               if "imp" in FLAGS.methods else None)
        for target in densities:
            # Every method at the IMP ticket's exact density (the closest round's).
            density = imp[imp_round[target]][0] if imp else target
            for method in FLAGS.methods:
                name = f"{method}_{target:g}"
                row = directory.load_arm(t, name)
                if row is None:
                    if method == "imp":
                        r = imp_round[target]
                        steps = [entry[3] for entry in imp[:r + 1]]
                        row = {"kept": imp[r][0], "test_accuracy": imp[r][1], "round": r,
                               "steps": sum(steps) if None not in steps else None}
                    else:
                        row = sparse_cell(trial, method, density)
                    row.update(method=method, target=target, trial=t)
                    directory.write_json(directory.arm_file(t, name), row)
                    print(f"trial {t} {method} at {100 * row['kept']:.2f}%: test "
                          f"{100 * row['test_accuracy']:.2f}% after {row['steps']} steps",
                          flush=True)
                else:
                    print(f"trial {t} {method} at {target:g}: already done, skipped", flush=True)
                rows.append(row)
    directory.write_json("results.json", rows)
    text = table(rows)
    file_io.atomic_write(directory.file("table.md"), lambda f: f.write(text.encode() + b"\n"))
    plot(rows, directory.file("sparse_training.png"))
    print(text)
    print(f"{len(rows)} rows, wall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    app.run(main)
