"""Optimizer resets that leave the learning rate alone, or restore it."""

import keras
import numpy as np
import pytest

from keras_lottery.backend import keras_internals
from keras_lottery.backend import optimizer_state


def _built(optimizer):
    w = keras.Variable(np.ones((2, 3)), name="w")
    optimizer.build([w])
    return optimizer, w


def test_capture_restore_round_trip_with_learning_rate():
    opt, w = _built(keras.optimizers.Adam(0.01))
    opt.apply([keras.ops.ones((2, 3))])
    state = optimizer_state.capture(opt)
    assert state["iterations"] == [1] and state["learning_rate"] == pytest.approx(0.01)
    opt.apply([keras.ops.ones((2, 3))])
    opt.learning_rate = 0.001
    optimizer_state.restore(opt, state)
    assert optimizer_state.iterations(opt) == 1
    assert optimizer_state.learning_rate(opt) == pytest.approx(0.01)
    for saved, now in zip(state["slots"], keras_internals.slot_variables(opt)):
        np.testing.assert_array_equal(saved, keras.ops.convert_to_numpy(now.value))


def test_fresh_state_zeroes_slots_but_never_the_learning_rate():
    opt, w = _built(keras.optimizers.SGD(0.1, momentum=0.9))
    opt.apply([keras.ops.ones((2, 3))])
    optimizer_state.restore(opt, optimizer_state.fresh_state(opt))
    assert optimizer_state.iterations(opt) == 0
    assert optimizer_state.learning_rate(opt) == pytest.approx(0.1)
    assert not keras.ops.convert_to_numpy(keras_internals.slot_variables(opt)[0].value).any()


def test_loss_scale_optimizer_counts_the_inner_steps():
    if keras.backend.backend() == "jax":
        pytest.skip("LossScaleOptimizer.apply outside a train step fails on JAX (Keras); "
                    "step counts under fit: test_any_model's mixed precision test")
    opt, w = _built(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))
    opt.apply([keras.ops.ones((2, 3))])
    assert optimizer_state.iterations(opt) == 1


def test_mask_slots_and_reset_slots_of():
    opt, w = _built(keras.optimizers.Adam(0.01))
    opt.apply([keras.ops.ones((2, 3))])
    mask = np.array([[True, False, True], [False, True, True]])
    optimizer_state.mask_slots(opt, [(w, mask)])
    for slot in keras_internals.slots_of(opt, w):
        value = keras.ops.convert_to_numpy(slot.value)
        assert np.all(value[~mask] == 0) and np.all(value[mask] != 0)
    optimizer_state.reset_slots_of(opt, [(w, mask)])
    assert all(not keras.ops.convert_to_numpy(s.value).any() for s in keras_internals.slots_of(opt, w))


def test_mismatched_state_is_refused():
    opt, _ = _built(keras.optimizers.Adam())
    with pytest.raises(ValueError, match="does not match"):
        optimizer_state.restore(opt, {"iterations": [0, 0], "slots": None, "learning_rate": None})
