"""The settings of an IMP run: the callback's arguments, checked and
normalised in one place."""

import dataclasses
import inspect
import json

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.imp import schedules
from keras_lottery.imp import state as imp_state
from keras_lottery.imp.settings import IMPSettings
from keras_lottery.imp.settings import watches_batches


def test_the_callbacks_arguments_are_the_settings_fields():
    fields = [f.name for f in dataclasses.fields(IMPSettings)]
    assert list(inspect.signature(kl.IterativeMagnitudePruning).parameters) == fields


def test_arguments_are_normalised():
    settings = IMPSettings(rounds=4, epochs_per_round=2, rate=0.3, structure="channel",
                           scorer="synflow", one_shot=True, rewind_to=0)
    assert isinstance(settings.schedule, schedules.OneShot)
    assert settings.schedule.final_round == 3 and settings.schedule.schedule.get_config() == {
        "rate": 0.3}
    assert settings.structure.describe() == "units(axis=-1, norm=l1)"
    assert isinstance(settings.scorer, kl.scorers.Synflow)
    assert settings.rewind_to == "init" and isinstance(settings.seed, int)
    assert settings.total_epochs == 8


def test_config_is_json_and_says_what_a_resume_must_match():
    settings = IMPSettings(rounds=2, epochs_per_round=1, distribution="erk", seed=3,
                           exclude=["out"])
    config = settings.config(["fc/kernel"])
    assert json.loads(json.dumps(config)) == config
    assert (config["distribution"], config["structure"], config["scorer"], config["exclude"],
            config["seed"]) == ("erk", "weight", "magnitude", ["out"], 3)
    old = dict(config, scope="layerwise", granularity="weight", pattern=None, norm="l1")
    for name in ("distribution", "structure", "scorer", "exclude"):
        old.pop(name)
    assert imp_state.upgraded(old)["distribution"] == "uniform"


class _Watcher(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


@pytest.mark.parametrize("kwargs, needs", [
    ({}, False),
    ({"rewind_to": 5}, True),
    ({"rewind_to": 0}, False),
    ({"round_callbacks": [keras.callbacks.EarlyStopping()]}, False),
    ({"round_callbacks": [_Watcher()]}, True),
])
def test_batch_hooks_only_when_the_run_watches_batches(kwargs, needs):
    settings = IMPSettings(rounds=2, epochs_per_round=1, **kwargs)
    # the same answer from the arguments as passed and as checked
    assert watches_batches(kwargs.get("rewind_to"), kwargs.get("round_callbacks")) is needs
    assert watches_batches(settings.rewind_to, settings.round_callbacks) is needs
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, **kwargs)
    overrides = type(imp).on_train_batch_end is not keras.callbacks.Callback.on_train_batch_end
    assert overrides is needs


def test_a_default_seed_is_drawn_once_from_numpys_generator():
    """The seed is NumPy's next draw (`keras.utils.set_random_seed` fixes it),
    whichever callback class the arguments select: choosing it draws none."""
    for kwargs in ({}, {"rewind_to": 5}):
        np.random.seed(0)
        expected = np.random.randint(0, 2**31 - 1)
        np.random.seed(0)
        assert kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, **kwargs).settings.seed == expected
