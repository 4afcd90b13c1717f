"""Resetting a Keras 3 optimizer at a rewind without rebuilding it.

A Keras 3 optimizer's `variables` hold the iteration counter and (for a float
learning rate) the learning rate besides the slots (momenta, velocities,
gradient accumulators, EMA averages). Zeroing everything would set the
learning rate to 0 and silently stop training, so only the slots are reset,
the counter is set, and the learning rate is left alone. Values are assigned
into the existing variables: the compiled train function is reused as is.
"""

import numpy as np
from keras import ops


def _optimizer_chain(optimizer):
    chain = [optimizer]
    while hasattr(chain[-1], "inner_optimizer"):
        chain.append(chain[-1].inner_optimizer)
    return chain


def slot_variables(optimizer):
    """The optimizer variables a rewind resets, in a fixed order.

    Everything but iteration counters and learning rates; for a
    `LossScaleOptimizer`, the inner optimizer's slots (its loss scale is kept).

    Args:
        optimizer: a `keras.optimizers.Optimizer`.

    Returns:
        A list of variables (empty before the optimizer is built).

    Example:
    >>> import keras
    >>> opt = keras.optimizers.SGD(0.1, momentum=0.9)
    >>> opt.build([keras.Variable([1.0, 2.0], name="w")])
    >>> [v.name for v in slot_variables(opt)]
    ['w_momentum']
    """
    slots = []
    for opt in _optimizer_chain(optimizer):
        if hasattr(opt, "inner_optimizer"):
            continue
        keep = {id(opt._iterations), id(getattr(opt, "_learning_rate", None))}
        slots.extend(v for v in opt._variables if id(v) not in keep)
    return slots


def optimizer_iteration(optimizer):
    """The optimizer's step counter as an int (raw, before any gradient
    accumulation division).

    Example:
    >>> import keras
    >>> optimizer_iteration(keras.optimizers.Adam())
    0
    """
    return int(ops.convert_to_numpy(optimizer._iterations.value))


def capture(optimizer):
    """Host copy of the optimizer state a rewind to this point restores.

    Args:
        optimizer: a `keras.optimizers.Optimizer`.

    Returns:
        `{"iterations": [int per optimizer in a LossScaleOptimizer chain],
          "slots": [array per slot variable]}`.

    Example:
    >>> import keras
    >>> capture(keras.optimizers.Adam())["iterations"]
    [0]
    """
    return {
        "iterations": [optimizer_iteration(o) for o in _optimizer_chain(optimizer)],
        "slots": [ops.convert_to_numpy(v.value) for v in slot_variables(optimizer)],
    }


def restore(optimizer, state=None, trainable_variables=None):
    """Resets slots and counters, to zero or to a `capture`d state.

    Args:
        optimizer: a `keras.optimizers.Optimizer`.
        state: the result of `capture`, or None for a fresh optimizer (slots
            zero, counters 0).
        trainable_variables: the model's trainable variables; EMA averages
            (`use_ema=True`) are reset to them rather than to zero.

    Example:
    >>> import keras
    >>> opt = keras.optimizers.Adam()
    >>> restore(opt)
    >>> optimizer_iteration(opt)
    0
    """
    slots = slot_variables(optimizer)
    chain = _optimizer_chain(optimizer)
    if state is not None:
        if len(state["slots"]) != len(slots) or len(state["iterations"]) != len(
            chain
        ):
            raise ValueError(
                "The saved optimizer state does not match this optimizer "
                f"({len(state['slots'])} saved slots, {len(slots)} now); was "
                "the optimizer replaced after the rewind point was taken?"
            )
        for variable, value in zip(slots, state["slots"]):
            variable.assign(value)
        for opt, iteration in zip(chain, state["iterations"]):
            opt._iterations.assign(iteration)
        return
    averages = _ema_targets(chain[-1], trainable_variables)
    for variable in slots:
        if id(variable) in averages:
            variable.assign(ops.copy(averages[id(variable)].value))
        else:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    for opt in chain:
        opt._iterations.assign(0)


def _ema_targets(opt, trainable_variables):
    averages = getattr(opt, "_model_variables_moving_average", None)
    if not averages or trainable_variables is None:
        return {}
    return {
        id(avg): var
        for avg, var in zip(averages, getattr(opt, "_trainable_variables", []))
    }


def mask_slots(optimizer, prunable):
    """Zeroes the optimizer slots of pruned weights.

    A slot belongs to a weight when its name starts with the weight's path
    (Keras names slots `<path with _>_<slot>`) and it has the weight's shape.
    With zero slots and the zero gradients a pruned weight gets, momentum
    and adaptive optimizers leave it at exactly 0.

    Args:
        optimizer: a `keras.optimizers.Optimizer`.
        prunable: `[(variable, mask variable)]`.

    Example:
    >>> import keras
    >>> w = keras.Variable([1.0, 2.0], name="w")
    >>> opt = keras.optimizers.SGD(0.1, momentum=0.9)
    >>> opt.build([w])
    >>> mask_slots(opt, [(w, keras.Variable([1.0, 0.0]))])
    """
    slots = slot_variables(optimizer)
    for variable, mask in prunable:
        prefixes = (
            variable.path.replace("/", "_") + "_",
            str(variable.name).replace("/", "_").replace(":", "_") + "_",
        )
        mask_value = ops.convert_to_numpy(mask.value)
        for slot in slots:
            if tuple(slot.shape) != tuple(variable.shape):
                continue
            if not str(slot.name).startswith(prefixes):
                continue
            value = ops.convert_to_numpy(slot.value)
            slot.assign(value * mask_value.astype(value.dtype))
