"""One round's bookkeeping: best monitored value by mode, rows, the line."""

import math

import pytest

from keras_lottery.imp import round_log


def test_best_by_direction_and_missing_monitor():
    log = round_log.RoundLog("val_accuracy", "max")
    log.start(1, start_step=100)
    assert log.epoch_end(10, {"val_accuracy": 0.5, "loss": 1.0})
    assert log.epoch_end(20, {"val_accuracy": 0.7, "loss": 0.9})
    assert log.epoch_end(30, {"val_accuracy": math.nan})
    assert (log.best, log.best_step, log.best_logs["loss"]) == (0.7, 20, 0.9)
    assert not log.epoch_end(40, {"loss": 0.8})
    row = log.row({"loss": 0.8, "lottery_round": 1}, {"density": 0.5}, control=None)
    assert row["best_val_accuracy"] == 0.7 and row["best_val_accuracy_step"] == 20
    assert row["epochs"] == 4 and row["steps"] == 40 and "lottery_round" not in row


def test_a_comparison_is_asked_only_when_there_is_a_best_to_beat():
    calls = []
    log = round_log.RoundLog("val_loss", lambda value, best: calls.append((value, best)) or
                             value < best)
    log.epoch_end(1, {"loss": 1.0})
    log.epoch_end(2, {"val_loss": 1.0})
    assert calls == [] and log.best == 1.0
    log.epoch_end(3, {"val_loss": 0.5})
    log.epoch_end(4, {"val_loss": math.nan})  # never better, never asked
    assert calls == [(0.5, 1.0)] and (log.best, log.best_step) == (0.5, 3)


def test_bad_direction():
    with pytest.raises(ValueError, match="better must be"):
        round_log.RoundLog("val_loss", "up")


def test_summary_line_counts_rounds_from_one():
    line = round_log.summary_line({"round": 0, "density": 1.0, "seconds": 2.0, "loss": 0.5,
                                   "monitor": "val_loss", "best_val_loss": 0.4,
                                   "best_val_loss_step": 30}, rounds=4)
    assert line.startswith("IMP round 0/3 | 100.00% of weights") and "@ step 30" in line
