"""Dynamic sparse training beside IMP: RigL, SET and static sparse training
at each density, against the IMP ticket, with the training steps each took.

Each trial draws one θ0 (seed + trial). `rigl`, `set` and `static` train the
network sparse from θ0 for --sparse_epochs (default: --epochs) with
`keras_lottery.DynamicSparseTraining` (ERK or uniform budgets); the `imp`
arm runs global IMP rewound to θ0 (as in `ticket_methods.py`), each round
--epochs, and its ticket at each density is the closest round, whose exact
density the sparse methods then train at; its steps are every round's up to
that one.

    python -m examples.sparse_training --dataset=idx:/usr/share/datasets/fashion-mnist \\
        --model=lenet --densities=0.1,0.02 --trials=3

Outputs (--output_dir): `config.json` (a rerun with other settings is
refused), `trial<t>/<method>_<density>.json` (one finished cell: a rerun
skips it), `trial<t>/imp_checkpoint/`, `results.json`, `table.md` and
`sparse_training.png`.
"""

import time

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
METHODS = ("rigl", "set", "static", "imp")
harness.define_comparison_flags(METHODS, ["0.1", "0.02"], "runs/sparse_training",
                                "Epochs of each IMP round (and of sparse training).")
flags.DEFINE_enum("distribution", "erk", ["erk", "uniform"], "Sparse training's budgets.")
flags.DEFINE_integer("sparse_epochs", 0, "Epochs of each sparse training run (0: --epochs).",
                     lower_bound=0)
flags.DEFINE_integer("update_every", 100, "Steps between mask updates.", lower_bound=1)
flags.DEFINE_float("drop_fraction", 0.3, "Fraction moved at the first update (cosine decay).")


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

    from examples import common

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
    from examples import method_trial

    def check(data):
        moving = [m for m in FLAGS.methods if m in ("rigl", "set")]
        steps = (FLAGS.sparse_epochs or FLAGS.epochs) * -(-len(data[0][0]) // FLAGS.batch_size)
        if moving and FLAGS.update_every >= int(0.75 * steps):
            raise app.UsageError(
                f"--update_every={FLAGS.update_every}: {', '.join(moving)} would never update. "
                f"A sparse run trains {steps} steps and updates stop at 3/4 of them "
                f"({int(0.75 * steps)}); use --update_every below that, or more "
                "--sparse_epochs.")

    def cell(trial, method, density, imp, imp_round):
        if method != "imp":
            return sparse_cell(trial, method, density)
        steps = [entry[3] for entry in imp[:imp_round + 1]]
        return {"kept": imp[imp_round][0], "test_accuracy": imp[imp_round][1],
                "round": imp_round, "steps": sum(steps) if None not in steps else None}

    def describe(row):
        return f"test {100 * row['test_accuracy']:.2f}% after {row['steps']} steps"

    directory, rows, started = method_trial.run_trials(FLAGS, METHODS, cell, describe, check)
    directory.write_json("results.json", rows)
    harness.finish(directory, table(rows), "sparse_training.png",
                   lambda path: plot(rows, path), started, rows)


if __name__ == "__main__":
    app.run(main)
