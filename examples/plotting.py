"""Paper-style figures of an IMP run (matplotlib, PNG, no display needed).

- `accuracy.png`: test accuracy at the early-stopping iteration and at the end
  of training vs percent of weights remaining (log x, reversed, ticks at the
  paper's levels 100, 51.3, 21.1, 7.0, 3.6, 1.9), mean over trials with
  min/max bars, one line per arm (Frankle & Carbin Fig. 3/4).
- `early_stop.png`: early-stopping iteration vs percent remaining (arms
  side by side, so equal values do not hide each other).
- `learning_curves.png`: test accuracy during training of the ticket (trial
  0) at the rounds closest to the paper's levels, each round once.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

COLORS = {"ticket": "tab:blue", "reinit": "tab:orange", "random_prune": "tab:green"}
LABELS = {"ticket": "winning ticket", "reinit": "random reinit", "random_prune": "random pruning"}
MARKERS = {"ticket": "o", "reinit": "s", "random_prune": "^"}
STYLES = {"ticket": "-", "reinit": "--", "random_prune": ":"}
PAPER_LEVELS = (100, 51.3, 21.1, 7.0, 3.6, 1.9, 1.0, 0.5)


def _series(rows, arm, key):
    """(percent remaining, mean, min, max) per round of one arm."""
    out = []
    for r in sorted({row["round"] for row in rows if row["arm"] == arm}):
        at = [row for row in rows if row["arm"] == arm and row["round"] == r]
        values = np.array([row[key] for row in at if row[key] is not None], dtype=float)
        if values.size == 0:
            continue
        density = np.mean([row["density"] for row in at])
        out.append((100 * density, values.mean(), values.min(), values.max()))
    return np.array(out)


def _percent_axis(ax, lowest):
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = [t for t in PAPER_LEVELS if t >= 0.9 * lowest]
    if min(ticks) > 1.25 * lowest:  # the run ends between two paper levels
        ticks.append(round(lowest, 1))
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([f"{t:g}" for t in ticks]))
    # The log axis' own minor ticks would be labelled 9x10^1, 8x10^1, ...
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("percent of weights remaining")


def _plot_metric(ax, rows, key, ylabel, dodge=0.0):
    arms = [arm for arm in COLORS if _series(rows, arm, key).size]
    lowest = 1.0
    for index, arm in enumerate(arms):
        x, mean, low, high = _series(rows, arm, key).T
        # Arms side by side (a small multiplicative shift on the log axis) so
        # that equal values do not hide each other.
        shift = (1 + dodge) ** (index - (len(arms) - 1) / 2)
        ax.errorbar(x * shift, mean, yerr=[mean - low, high - mean], color=COLORS[arm],
                    label=LABELS[arm], marker=MARKERS[arm], linestyle=STYLES[arm],
                    markersize=4, capsize=2)
        lowest = min(lowest, x.min())
    _percent_axis(ax, lowest)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()


def accuracy_plot(rows, config, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _plot_metric(axes[0], rows, "test_accuracy_early_stop", "test accuracy at early stop")
    _plot_metric(axes[1], rows, "test_accuracy_end", "test accuracy at end of training")
    trials = len({row["trial"] for row in rows})
    fig.suptitle(f"{config['script']} on {config['dataset']}: {config['iterations']} "
                 f"iterations/round, {trials} trial(s), rewind to {config['rewind_to']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def early_stop_plot(rows, config, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    _plot_metric(ax, rows, "early_stop_iteration", "early-stop iteration (min val loss)",
                 dodge=0.04)
    ax.set_title(f"{config['script']} on {config['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chosen_rounds(densities, levels=PAPER_LEVELS[:6]):
    """Round 0, the rounds closest to the paper's levels (each once), and the
    last round, in order."""
    rounds = sorted(densities)
    chosen = {rounds[0], rounds[-1]}
    for level in levels:
        chosen.add(min(rounds, key=lambda r: abs(100 * densities[r] - level)))
    return sorted(chosen)


def learning_curves_plot(rows, curves, config, path):
    curve = curves.get((0, "ticket"))
    if not curve:
        return
    per_round = config["epochs_per_round"]
    steps = config["steps_per_epoch"]
    densities = {row["round"]: row["density"] for row in rows
                 if row["arm"] == "ticket" and row["trial"] == 0}
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in chosen_rounds(densities):
        values = curve[r * per_round:(r + 1) * per_round]
        # Epochs the test set was not evaluated on (--test_every) are None.
        points = [(steps * (i + 1), v) for i, v in enumerate(values) if v is not None]
        if not points:
            continue
        x, y = zip(*points)
        ax.plot(x, y, marker=".", label=f"round {r}: {100 * densities[r]:.1f}%")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("test accuracy")
    ax.set_title("winning ticket, trial 0: learning curves by % remaining")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def all_plots(rows, curves, config, output_dir):
    accuracy_plot(rows, config, os.path.join(output_dir, "accuracy.png"))
    early_stop_plot(rows, config, os.path.join(output_dir, "early_stop.png"))
    learning_curves_plot(rows, curves, config, os.path.join(output_dir, "learning_curves.png"))
