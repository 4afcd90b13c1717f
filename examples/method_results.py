"""Results of `ticket_methods.py`: rows, `results.json` / `results.csv`,
`table.md` and `methods.png`.

One row per (trial, method, target density): `kept` (the mask's actual
density), `test_accuracy`, `shuffled_accuracy` (the mask shuffled within its
layers), and for pruning-at-init methods `mask_seconds` / `train_seconds`
(computing the mask vs training it for one IMP round's epochs).
"""

import csv
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from examples import common

COLUMNS = ["trial", "method", "target", "kept", "test_accuracy", "shuffled_accuracy",
           "mask_seconds", "train_seconds", "round"]
COLORS = {"imp": "tab:blue", "random": "tab:gray", "magnitude": "tab:brown",
          "snip": "tab:orange", "grasp": "tab:green", "synflow": "tab:red"}
LABELS = {"imp": "IMP ticket", "random": "random", "magnitude": "magnitude at init",
          "snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow"}


def describe(row):
    """One progress line's worth of a row.

    >>> describe({"test_accuracy": 0.8, "shuffled_accuracy": 0.75})
    'test 80.00%, shuffled 75.00%'
    """
    text = f"test {100 * row['test_accuracy']:.2f}%"
    if row.get("shuffled_accuracy") is not None:
        text += f", shuffled {100 * row['shuffled_accuracy']:.2f}%"
    return text


def write(directory, rows):
    """Writes `results.json` and `results.csv` atomically."""
    from keras_lottery.files import file_io

    directory.write_json("results.json", rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    payload = text.getvalue().encode()
    file_io.atomic_write(directory.file("results.csv"), lambda f: f.write(payload))


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    values = 100 * np.asarray(values, float)
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} [{values.min():.2f}, {values.max():.2f}]"


def table(rows):
    """Markdown table: per target density and method, mean [min, max] test
    accuracy over trials, shuffled, the mean loss to shuffling, and the mask's
    cost as a percentage of training it.

    >>> print(table([{"method": "snip", "target": 0.1, "kept": 0.1, "test_accuracy": 0.9,
    ...               "shuffled_accuracy": 0.85, "mask_seconds": 1.0, "train_seconds": 50.0}]))
    | % remaining | method | test accuracy % | shuffled % | lost to shuffling | mask cost |
    |---|---|---|---|---|---|
    | 10.00 | snip | 90.00 | 85.00 | 5.00 | 2.0% |
    """
    header = ["% remaining", "method", "test accuracy %", "shuffled %", "lost to shuffling",
              "mask cost"]
    lines = []
    for target in sorted({row["target"] for row in rows}, reverse=True):
        at = [row for row in rows if row["target"] == target]
        for method in [m for m in COLORS if any(row["method"] == m for row in at)]:
            cells = [row for row in at if row["method"] == method]
            pairs = [(row["test_accuracy"], row["shuffled_accuracy"]) for row in cells
                     if row.get("shuffled_accuracy") is not None]
            lost = (f"{100 * np.mean([a - s for a, s in pairs]):.2f}" if pairs else "-")
            costs = [row["mask_seconds"] / row["train_seconds"] for row in cells
                     if row.get("mask_seconds") is not None]
            lines.append([f"{100 * np.mean([row['kept'] for row in cells]):.2f}", method,
                          _stats([row["test_accuracy"] for row in cells]),
                          _stats([row.get("shuffled_accuracy") for row in cells]), lost,
                          f"{100 * np.mean(costs):.1f}%" if costs else "-"])
    return common.markdown_table(header, lines)


def _off_scale(ax, means):
    """Keeps a collapsed mask (e.g. 10% accuracy) from flattening the others:
    points far below the rest are left off the axis and named on it."""
    values = np.array([m for m, *_ in means])
    if values.size < 3:
        return
    floor = np.median(values) - 20.0
    kept = values[values >= floor]
    if kept.size == values.size:
        return
    ax.set_ylim(kept.min() - 3.0, values.max() + 2.0)
    low = [f"{LABELS[method]}{' (shuffled)' if style == '--' else ''} at {k:.3g}%: {m:.1f}%"
           for m, method, style, k in means if m < floor]
    ax.text(0.02, 0.02, "off scale:\n" + "\n".join(low), transform=ax.transAxes, fontsize=7,
            va="bottom")


def plot(rows, path):
    """`methods.png`: test accuracy vs percent remaining per method (mean,
    min/max bars; shuffled masks dashed), and the accuracy lost to shuffling."""
    methods = [m for m in COLORS if any(row["method"] == m for row in rows)]
    targets = sorted({row["target"] for row in rows}, reverse=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5))
    means = []
    for offset, method in enumerate(methods):
        for key, style in (("test_accuracy", "-"), ("shuffled_accuracy", "--")):
            points = []
            for target in targets:
                cells = [row for row in rows if row["method"] == method and row["target"] == target]
                values = [100 * row[key] for row in cells if row.get(key) is not None]
                if values:
                    kept = 100 * np.mean([row["kept"] for row in cells])
                    points.append((kept, np.mean(values), min(values), max(values)))
            if not points:
                continue
            x, mean, low, high = np.array(points).T
            means += [(m, method, style, k) for m, k in zip(mean, x)]
            x = x * (1 + 0.01 * (offset - len(methods) / 2))  # side by side, not on top
            left.errorbar(x, mean, yerr=[mean - low, high - mean], color=COLORS[method],
                          linestyle=style, marker="o", capsize=3,
                          label=LABELS[method] + (" (shuffled)" if style == "--" else ""))
    _off_scale(left, means)
    left.set_xscale("log")
    left.invert_xaxis()
    kept = sorted({round(100 * row["kept"], 2) for row in rows if row["method"] == methods[0]})
    left.xaxis.set_major_locator(ticker.FixedLocator(kept))
    left.xaxis.set_major_formatter(ticker.FixedFormatter([f"{k:g}" for k in kept]))
    left.xaxis.set_minor_locator(ticker.NullLocator())
    left.set_xlabel("percent of weights remaining")
    left.set_ylabel("test accuracy (%)")
    left.set_title("mean over trials, bars: min/max")
    left.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    left.grid(alpha=0.3)
    width = 0.8 / max(1, len(targets))
    for index, target in enumerate(targets):
        losses = []
        for method in methods:
            cells = [row for row in rows if row["method"] == method and row["target"] == target
                     and row.get("shuffled_accuracy") is not None]
            losses.append(100 * np.mean([row["test_accuracy"] - row["shuffled_accuracy"]
                                         for row in cells]) if cells else np.nan)
        kept = 100 * np.mean([row["kept"] for row in rows if row["target"] == target])
        right.bar(np.arange(len(methods)) + index * width, losses, width,
                  label=f"{kept:.2g}% remaining")
    right.axhline(0.5, color="k", linestyle=":", linewidth=1, label="0.5 point")
    right.axhline(0.0, color="k", linewidth=0.8)
    right.set_xticks(np.arange(len(methods)) + width * (len(targets) - 1) / 2)
    right.set_xticklabels([LABELS[m] for m in methods], rotation=20, fontsize=8)
    right.set_ylabel("accuracy lost when shuffled (points)")
    right.set_title('"Missing the Mark": shuffle within layers')
    right.legend(fontsize=8)
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
