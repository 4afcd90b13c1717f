"""Resetting a Keras 3 optimizer at a rewind without rebuilding it.

A Keras 3 optimizer's variables hold its step counter and (for a float
learning rate) the learning rate besides the slots (momenta, velocities,
accumulators, EMA averages). Zeroing everything would set the learning rate
to 0 and silently stop training, so a reset zeroes only the slots, sets the
counter, and puts the learning rate back to the value it had at the rewind
point (a `ReduceLROnPlateau` cut of an earlier round does not carry over).
Values are assigned into the existing variables: the compiled train function
is reused as it is.
"""

import numpy as np
from keras import ops

from keras_lottery.backend import keras_internals


def iterations(optimizer):
    """The number of optimizer steps taken (the inner optimizer's inside a
    `LossScaleOptimizer`, whose own counter does not count them).

    Example:
    >>> import keras
    >>> iterations(keras.optimizers.Adam())
    0
    """
    inner = keras_internals.innermost_optimizer(optimizer)
    return int(ops.convert_to_numpy(inner.iterations))


def learning_rate(optimizer):
    """The current learning-rate value as a float (of a schedule: at the
    current step).

    Example:
    >>> import keras
    >>> round(learning_rate(keras.optimizers.SGD(0.1)), 6)
    0.1
    """
    return float(ops.convert_to_numpy(optimizer.learning_rate))


def capture(optimizer):
    """Host copy of the optimizer state a rewind to this point restores.

    Returns:
        `{"iterations": [int per optimizer of a LossScaleOptimizer chain],
          "slots": [array per slot variable],
          "learning_rate": float or None (None: a schedule)}`.

    Example:
    >>> import keras
    >>> round(capture(keras.optimizers.Adam(0.01))["learning_rate"], 6)
    0.01
    """
    rate = keras_internals.learning_rate_variable(optimizer)
    return {
        "iterations": [
            int(ops.convert_to_numpy(keras_internals.iterations_variable(o).value))
            for o in keras_internals.optimizer_chain(optimizer)
        ],
        "slots": [
            ops.convert_to_numpy(v.value) for v in keras_internals.slot_variables(optimizer)
        ],
        "learning_rate": None
        if rate is None
        else float(np.asarray(ops.convert_to_numpy(rate.value), np.float64)),
    }


def fresh_state(optimizer, learning_rate_value=None):
    """The state a newly built optimizer has (slots zero, counters 0), with
    the given learning rate (None keeps the current one).

    Example:
    >>> import keras
    >>> fresh_state(keras.optimizers.SGD(0.1))["iterations"]
    [0]
    """
    return {
        "iterations": [0] * len(keras_internals.optimizer_chain(optimizer)),
        "slots": None,
        "learning_rate": learning_rate_value,
    }


def restore(optimizer, state, trainable_variables=None):
    """Puts the optimizer back to a `capture`d (or `fresh_state`) state.

    Args:
        optimizer: a `keras.optimizers.Optimizer`.
        state: from `capture` or `fresh_state` (`slots` None: zeros).
        trainable_variables: the model's trainable variables; EMA averages
            (`use_ema=True`) of a fresh state start at them, not at zero.

    Example:
    >>> import keras
    >>> opt = keras.optimizers.Adam(0.01)
    >>> restore(opt, fresh_state(opt))
    >>> iterations(opt)
    0
    """
    slots = keras_internals.slot_variables(optimizer)
    chain = keras_internals.optimizer_chain(optimizer)
    if len(state["iterations"]) != len(chain) or (
        state["slots"] is not None and len(state["slots"]) != len(slots)
    ):
        raise ValueError(
            "The saved optimizer state does not match this optimizer "
            f"({len(state['slots'] or [])} saved slots, {len(slots)} now); was "
            "the optimizer replaced after the rewind point was taken?"
        )
    if state["slots"] is not None:
        for variable, value in zip(slots, state["slots"]):
            variable.assign(value)
    else:
        averages = keras_internals.ema_targets(optimizer, trainable_variables)
        for variable in slots:
            if id(variable) in averages:
                variable.assign(ops.convert_to_numpy(averages[id(variable)].value))
            else:
                variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    for opt, count in zip(chain, state["iterations"]):
        keras_internals.iterations_variable(opt).assign(count)
    rate = keras_internals.learning_rate_variable(optimizer)
    if rate is not None and state.get("learning_rate") is not None:
        rate.assign(state["learning_rate"])


def mask_slots(optimizer, prunables):
    """Zeroes the optimizer slots of pruned weights.

    With zero slots and the zero gradients a pruned weight gets, momentum
    and adaptive optimizers leave it at exactly 0.

    Args:
        optimizer: a `keras.optimizers.Optimizer`.
        prunables: `[(variable, bool mask array)]`.

    Example:
    >>> import keras
    >>> w = keras.Variable([1.0, 2.0], name="w")
    >>> opt = keras.optimizers.SGD(0.1, momentum=0.9)
    >>> opt.build([w])
    >>> mask_slots(opt, [(w, np.array([True, False]))])
    """
    for variable, mask in prunables:
        slots = keras_internals.slots_of(optimizer, variable)
        if slots:  # on the device: no host round trip of the slot
            keep = ops.convert_to_tensor(np.asarray(mask, slots[0].dtype))
            for slot in slots:
                slot.assign(ops.multiply(slot.value, ops.cast(keep, slot.dtype)))


def reset_slots_of(optimizer, prunables):
    """Zeroes the slots of the given entries of weights (dynamic sparse
    training: a connection that regrows starts with no momentum).

    Args:
        optimizer: a `keras.optimizers.Optimizer`.
        prunables: `[(variable, bool array of entries to reset)]`.

    Example:
    >>> import keras
    >>> w = keras.Variable([1.0, 2.0], name="w2")
    >>> opt = keras.optimizers.SGD(0.1, momentum=0.9)
    >>> opt.build([w])
    >>> reset_slots_of(opt, [(w, np.array([False, True]))])
    """
    mask_slots(optimizer, [(v, ~np.asarray(entries, bool)) for v, entries in prunables])
