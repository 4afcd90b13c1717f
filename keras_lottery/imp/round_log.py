"""What one IMP round records: steps, the best monitored value, its row.

`RoundLog` follows one round epoch by epoch: the steps it has taken, the
best value of the monitored quantity and the step it was reached at (the
paper's early-stopping iteration): better means "min", "max", or what the
IMP callback's Keras `MonitorCallback` base says for `mode="auto"`. `row()`
turns it into the round's results row; `summary_line(row)` is the one line
printed per round.

Example:
>>> log = RoundLog("val_loss", "min")
>>> log.start(0, start_step=0)
>>> log.epoch_end(10, {"val_loss": 0.5}), log.epoch_end(20, {"val_loss": 0.7})
(True, True)
>>> log.best, log.best_step
(0.5, 10)
"""

import math
import time

import numpy as np

MODES = ("auto", "min", "max")


class RoundLog:
    """Steps and the best monitored value of one round (see module docstring).

    Args:
        monitor: the log key to follow (e.g. "val_loss").
        better: "min", "max", or `(value, best) -> bool` (called at epochs
            with the monitored value, when the model's metrics exist: how
            "auto" is resolved). A NaN value is never better.
    """

    def __init__(self, monitor, better):
        if better not in ("min", "max") and not callable(better):
            raise ValueError(f"better must be 'min', 'max' or a callable; received {better!r}.")
        self.monitor = monitor
        self.better = better
        self.missing_warned = False
        self.start(0, 0)

    def start(self, round_index, start_step, start_epoch=0):
        """Begins a round that starts after `start_step` optimizer steps."""
        self.round = round_index
        self.start_step = start_step
        self.start_epoch = start_epoch
        self.steps = 0
        self.epochs = 0
        self.best = None
        self.best_step = None
        self.best_logs = None
        self.monitored_epochs = 0
        self.started = time.perf_counter()

    def epoch_end(self, steps, logs):
        """Records an epoch that ended `steps` steps into the round.

        Returns False when the monitored key is not in `logs` (an epoch
        `fit` did not validate, e.g. with `validation_freq=2`): the best value
        comes from the epochs that have it; `monitored_epochs` counts them.
        """
        self.steps = int(steps)
        self.epochs += 1
        value = logs.get(self.monitor)
        if value is None:
            return False
        self.monitored_epochs += 1
        value = float(value)
        if self.best is None or self._better(value, self.best):
            self.best, self.best_step = value, self.steps
            self.best_logs = {k: _plain(v) for k, v in logs.items() if not k.startswith("lottery_")}
        return True

    def _better(self, value, best):
        if math.isnan(value):
            return False
        if callable(self.better):
            return bool(self.better(value, best))
        return value < best if self.better == "min" else value > best

    def row(self, logs, masks_summary, **extra):
        """The round's results row.

        Args:
            logs: the logs of the round's last epoch.
            masks_summary: `density`, `kept`, `total`, `layer_density`.
            **extra: more fields (control, rewind_to, ...).
        """
        row = {
            "round": self.round,
            **masks_summary,
            "steps": self.steps,
            "epochs": self.epochs,
            "monitor": self.monitor,
            f"best_{self.monitor}": self.best,
            f"best_{self.monitor}_step": self.best_step,
            "at_best": self.best_logs,
            "seconds": time.perf_counter() - self.started,
            **extra,
        }
        for key, value in logs.items():
            if key not in row and not key.startswith("lottery_"):
                row[key] = _plain(value)
        return row


def summary_line(row, rounds):
    """One line per round: `IMP round 2/15 | 64.00% of weights | ...`.

    Rounds are numbered as in `results`, tickets and checkpoints: from 0 (the
    dense round) to `rounds - 1`, the number after the slash (round 2 of a
    16-round run is `2/15`).

    Example:
    >>> summary_line({"round": 1, "density": 0.8, "loss": 0.25, "seconds": 1.5,
    ...               "monitor": "val_loss", "best_val_loss": None,
    ...               "best_val_loss_step": None}, 3)
    'IMP round 1/2 | 80.00% of weights | loss 0.2500 | 1.5s'
    """
    monitor = row.get("monitor", "val_loss")
    parts = [f"IMP round {row['round']}/{rounds - 1}", f"{100 * row['density']:.2f}% of weights"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if isinstance(row.get(key), (int, float)):
            parts.append(f"{key} {row[key]:.4f}")
    if row.get(f"best_{monitor}_step") is not None:
        parts.append(
            f"best {monitor} {row[f'best_{monitor}']:.4f} @ step {row[f'best_{monitor}_step']}"
        )
    if row.get("stopped_early"):
        parts.append(f"ended early ({row['stopped_early']})")
    parts.append(f"{row['seconds']:.1f}s")
    return " | ".join(parts)


def _plain(value):
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return value
