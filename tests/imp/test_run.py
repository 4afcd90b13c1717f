"""The run object the callback relays to: the whole run lives there."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mlp

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class _StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.stop_training = True


def _fit(imp, callbacks=()):
    x, y = classification_data(n=64)
    model = kl.wrap(mlp())
    model.compile("adam", LOSS)
    model.fit(x, y, epochs=imp.total_epochs, batch_size=32, verbose=0,
              validation_data=(x, y), callbacks=[*callbacks, imp])
    return model


def test_the_callback_keeps_no_run_state_of_its_own():
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, verbose=0)
    _fit(imp)
    keras_own = set(vars(keras.callbacks.EarlyStopping()))  # a MonitorCallback's attributes
    assert set(vars(imp)) - keras_own == {"settings", "run"}
    assert imp.results is imp.run.state.results and len(imp.results) == 3
    restored = kl.imp.state.IMPState.from_arrays(*imp.run.state.to_arrays())
    assert restored.results == imp.results
    for a, b in zip(restored.mask_history(), imp.mask_history):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_stop_asked_by_a_callback_before_imp_is_not_taken_for_a_round_callbacks():
    """An outer callback that stops training (listed before IMP) stops the
    run, even when IMP has round callbacks: only a stop a round callback
    asks for ends just the round."""
    imp = kl.IterativeMagnitudePruning(rounds=4, epochs_per_round=1, verbose=0,
                                       round_callbacks=[keras.callbacks.History()])
    with pytest.warns(UserWarning, match="fit ended during round 1"):
        _fit(imp, callbacks=[_StopAtEpoch(1)])
    assert len(imp.results) == 2 and "another callback set model.stop_training" in (
        imp.stopped_reason)
    assert imp.results[-1]["stopped_early"] is None
