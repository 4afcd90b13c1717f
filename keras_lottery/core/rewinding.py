"""Rewind points: where a pruned network goes back to between rounds.

A `RewindPoint` is everything a rewind restores: the pruned weights (kept in
their `WeightState` snapshot slot, "init" for θ0 or "rewind" for θk), every
other weight of the model (biases, normalisation statistics, excluded
layers), the optimizer state (slots, step counter, learning rate) and the
step it was taken at. `take` makes one, `rewind` goes back to one;
`reinitialize` is the `reinit` control (same masks, fresh weights).

Rewinding modes (`IterativeMagnitudePruning(rewind_to=...)`):
- "init": to θ0 and a fresh optimizer (the lottery ticket procedure);
- an iteration k: to θk and the optimizer state at step k (Frankle et al.
  2020); learning-rate schedules replay from k;
- "lr": keep the trained weights, fresh optimizer (learning-rate rewinding,
  Renda et al. 2020);
- "finetune": keep weights and optimizer state.

Example:
>>> model = keras_lottery.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
>>> model.compile("sgd", "mse")
>>> point = take(model, INIT, step=0, fresh_optimizer=True)
>>> point.step, len(point.other_weights)
(0, 1)
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_lottery.backend import keras_internals
from keras_lottery.backend import optimizer_state
from keras_lottery.core import wrapping
from keras_lottery.core.weight_state import INIT, REWIND

FINETUNE = "finetune"
LR = "lr"
MODES = (INIT, LR, FINETUNE)


@dataclasses.dataclass
class RewindPoint:
    """What a rewind restores (see the module docstring).

    Attributes:
        slot: the `WeightState` snapshot slot holding the pruned weights'
            values ("init" or "rewind").
        step: the optimizer step the point was taken at.
        other_weights: values of `wrapping.non_pruned_weights(model)`.
        optimizer: `optimizer_state.capture` / `fresh_state` of the point.

    Example:
    >>> RewindPoint("init", 0, [], {"iterations": [0], "slots": None,
    ...                             "learning_rate": None}).step
    0
    """

    slot: str
    step: int
    other_weights: list
    optimizer: dict

    def to_arrays(self, prefix):
        """`(arrays, metadata)` for a checkpoint file."""
        arrays = {f"{prefix}:other:{i}": v for i, v in enumerate(self.other_weights)}
        if self.optimizer["slots"] is not None:
            arrays.update(
                {f"{prefix}:slot:{i}": v for i, v in enumerate(self.optimizer["slots"])}
            )
        metadata = {
            "slot": self.slot,
            "step": self.step,
            "others": len(self.other_weights),
            "iterations": self.optimizer["iterations"],
            "slots": None if self.optimizer["slots"] is None else len(self.optimizer["slots"]),
            "learning_rate": self.optimizer["learning_rate"],
        }
        return arrays, metadata

    @classmethod
    def from_arrays(cls, prefix, arrays, metadata):
        """Inverse of `to_arrays`."""
        slots = None
        if metadata["slots"] is not None:
            slots = [arrays[f"{prefix}:slot:{i}"] for i in range(metadata["slots"])]
        return cls(
            slot=metadata["slot"],
            step=int(metadata["step"]),
            other_weights=[arrays[f"{prefix}:other:{i}"] for i in range(metadata["others"])],
            optimizer={
                "iterations": list(metadata["iterations"]),
                "slots": slots,
                "learning_rate": metadata["learning_rate"],
            },
        )


def take(model, slot, step, fresh_optimizer=False):
    """Records the model's current state as a rewind point.

    Args:
        model: a wrapped, compiled model.
        slot: "init" (θ0, the snapshot `wrap` or `load_ticket` set is kept)
            or "rewind" (θk: the current pruned weights are copied into it).
        step: the current optimizer step.
        fresh_optimizer: record a fresh optimizer (slots zero, step 0, the
            current learning rate) instead of the current optimizer state.

    Returns:
        A `RewindPoint`.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    >>> model.compile("adam", "mse")
    >>> take(model, REWIND, step=0).slot
    'rewind'
    """
    keras_internals.sync_jax_state(model)
    if slot == REWIND:
        for p in wrapping.prunable_weights(model):
            p.snapshots[REWIND].assign(ops.convert_to_numpy(p.variable.value))
    optimizer = model.optimizer
    if fresh_optimizer:
        state = optimizer_state.fresh_state(optimizer, _current_rate(optimizer))
    else:
        state = optimizer_state.capture(optimizer)
    others = [ops.convert_to_numpy(v.value).copy() for v in wrapping.non_pruned_weights(model)]
    return RewindPoint(slot=slot, step=int(step), other_weights=others, optimizer=state)


def rewind(model, point, keep_weights=False):
    """Puts the model back to `point`: pruned weights to `snapshot * mask`,
    the other weights and the optimizer to their values at the point.

    Args:
        model: the wrapped, compiled model.
        point: a `RewindPoint`.
        keep_weights: restore only the optimizer (learning-rate rewinding).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    >>> model.compile("sgd", "mse")
    >>> rewind(model, take(model, INIT, step=0, fresh_optimizer=True))
    """
    keras_internals.sync_jax_state(model)
    if not keep_weights:
        for p in wrapping.prunable_weights(model):
            value = p.state.snapshot_array(point.slot)
            p.variable.assign(value * p.state.mask_array().astype(value.dtype))
        others = wrapping.non_pruned_weights(model)
        if len(others) != len(point.other_weights):
            raise ValueError(
                f"The rewind point holds {len(point.other_weights)} non-pruned "
                f"weights; the model has {len(others)}. Was the model changed "
                "after the point was taken?"
            )
        for variable, value in zip(others, point.other_weights):
            variable.assign(value)
    optimizer_state.restore(model.optimizer, point.optimizer, model.trainable_variables)


def mask_optimizer_slots(model):
    """Zeroes the optimizer slots of every pruned weight (after a prune, so
    momentum cannot push a pruned weight; the constraint masks it anyway).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    >>> model.compile("adam", "mse")
    >>> mask_optimizer_slots(model)
    """
    optimizer_state.mask_slots(
        model.optimizer,
        [(p.variable, p.state.mask_array()) for p in wrapping.prunable_weights(model)],
    )


def reinitialize(model, seed):
    """The `reinit` control: every pruned weight's survivors drawn afresh from
    its layer's own initializer (seeded), pruned entries zero.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    >>> reinitialize(model, seed=0)
    """
    for index, p in enumerate(wrapping.prunable_weights(model)):
        initializer = initializer_of(p.owner, p.name, seed + 7919 * index)
        fresh = ops.convert_to_numpy(initializer(p.shape, dtype=p.variable.dtype))
        p.variable.assign(fresh * p.state.mask_array().astype(fresh.dtype))


def initializer_of(layer, weight_name, seed=None):
    """The initializer `layer` drew its weight `weight_name` from, reseeded.

    Looks for `<name>_initializer`, then `<name without _kernel>_initializer`
    (`recurrent_kernel` -> `recurrent_initializer`), then
    `kernel_initializer`.

    Raises:
        ValueError: the layer has no such attribute.

    Example:
    >>> type(initializer_of(keras.layers.Dense(2), "kernel", seed=1)).__name__
    'GlorotUniform'
    """
    candidates = [f"{weight_name}_initializer"]
    if weight_name.endswith("_kernel"):
        candidates.append(weight_name[: -len("_kernel")] + "_initializer")
    candidates.append("kernel_initializer")
    for attribute in candidates:
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            break
    else:
        raise ValueError(
            f"control='reinit' cannot find the initializer of "
            f"'{layer.name}/{weight_name}' ({type(layer).__name__}; looked for "
            f"{candidates}). Give the layer a `{weight_name}_initializer` "
            "attribute, or use control='random_prune'."
        )
    initializer = keras.initializers.get(initializer)
    config = initializer.get_config()
    if "seed" in config and seed is not None:
        config["seed"] = int(seed)
        initializer = type(initializer).from_config(config)
    return initializer


def check_reinitializable(model):
    """Raises now (not at the first round end) when `reinitialize` would.

    Example:
    >>> check_reinitializable(keras_lottery.wrap(
    ...     keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])))
    """
    for p in wrapping.prunable_weights(model):
        initializer_of(p.owner, p.name)


def beyond_round_message(rewind_to, round_steps):
    """The error for a rewind iteration later than round 0's last step.

    Example:
    >>> beyond_round_message(500, 300)[:38]
    'rewind_to=500 is beyond round 0, which'
    """
    return (
        f"rewind_to={rewind_to} is beyond round 0, which is {round_steps} steps "
        f"long. Use an iteration <= {round_steps}."
    )


def _current_rate(optimizer):
    variable = keras_internals.learning_rate_variable(optimizer)
    if variable is None:
        return None
    return float(np.asarray(ops.convert_to_numpy(variable.value), np.float64))
