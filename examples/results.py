"""Results of an example run: rows, `results.json` / `results.csv`, the table.

One row per (trial, arm, round): density, test accuracy at the end of the
round and at the early-stopping iteration (minimum validation loss), that
iteration, training time, and whether the row is `shared` (a control's round
0 is the ticket arm's dense round).
"""

import csv
import io

import numpy as np

from examples import common

COLUMNS = ["trial", "arm", "round", "density", "test_accuracy_end",
           "test_accuracy_early_stop", "early_stop_iteration", "best_val_loss",
           "train_seconds", "shared"]


def write(directory, rows):
    """Writes `results.json` and `results.csv` atomically."""
    directory.write_json("results.json", rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    payload = text.getvalue().encode()
    from keras_lottery.files import file_io

    file_io.atomic_write(directory.file("results.csv"), lambda f: f.write(payload))


def table(rows, arms):
    """Per round: % remaining, mean test accuracy (early stop) per arm, and
    the ticket's mean early-stop iteration."""
    header = ["round", "% remaining"] + [f"{a} acc" for a in arms] + ["ticket early-stop iter"]
    lines = []
    for r in sorted({row["round"] for row in rows}):
        at = [row for row in rows if row["round"] == r]
        ticket = [row for row in at if row["arm"] == "ticket"]
        line = [r, f"{100 * np.mean([row['density'] for row in ticket]):.1f}"]
        for arm in arms:
            values = [row["test_accuracy_early_stop"] for row in at
                      if row["arm"] == arm and row["test_accuracy_early_stop"] is not None]
            shared = any(row["shared"] for row in at if row["arm"] == arm)
            line.append(f"{np.mean(values):.4f}{'*' if shared else ''}" if values else "-")
        steps = [row["early_stop_iteration"] for row in ticket if row["early_stop_iteration"] is not None]
        line.append(f"{np.mean(steps):.0f}" if steps else "-")
        lines.append(line)
    text = common.format_table(header, lines)
    if any(row["shared"] for row in rows):
        text += "\n* the dense round 0 is trained once, by the ticket arm, and shared."
    return text
