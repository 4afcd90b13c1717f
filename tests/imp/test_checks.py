"""Start-of-run checks and the notes that say what a run will do."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.imp import checks as imp_checks
from keras_lottery.imp import schedules
from conftest import mlp


def test_argument_checks():
    assert imp_checks.positive_int(3, "rounds") == 3
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="rounds"):
            imp_checks.positive_int(bad, "rounds")
    assert imp_checks.rewind_argument(0) == "init"
    assert imp_checks.rewind_argument(7) == 7
    with pytest.raises(ValueError, match="rewind_to"):
        imp_checks.rewind_argument("start")


def test_epochs_and_rewind_beyond_round_zero():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=2, rewind_to=50, verbose=0)
    with pytest.raises(ValueError, match="total_epochs"):
        imp_checks.check_epochs(imp.settings, {"epochs": 3})
    with pytest.raises(ValueError, match="beyond round 0, which is 20 steps"):
        imp_checks.check_epochs(imp.settings, {"epochs": 4, "steps": 10})


def test_notes_on_already_pruned_models():
    model = kl.wrap(mlp())
    assert imp_checks.already_pruned_note(model, kl.get_masks(model)) is None
    kl.set_masks(model, {"fc0/kernel": np.zeros((12, 16), bool)})
    assert "already pruned" in imp_checks.already_pruned_note(model, kl.get_masks(model))


def test_asks_nothing_tells_a_hold_from_a_no_op():
    current = {"a": np.arange(10) < 5}
    hold = schedules.Constant(0.5)
    assert not imp_checks.asks_nothing(hold, 2, {"a": 0.5}, current, 0, ["a"], [])
    assert imp_checks.asks_nothing(schedules.Geometric(0.3), 1, {"a": 0.3}, current, 0, ["a"], [])
    assert not imp_checks.asks_nothing(schedules.Geometric(0.6), 1, {"a": 0.6}, current, 0, ["a"], [])
