"""Where a pruned weight's lottery state lives: next to the weight.

For each prunable variable `w` of any layer, at any depth of a model,
`attach` gives the layer that owns `w` a small sublayer, a `WeightState`,
holding three arrays of `w`'s shape:

- the mask (a float variable: 1.0 keeps, 0.0 prunes),
- θ0, the initial weights (`"init"`),
- θk, the rewind point (`"rewind"`; equal to θ0 until one is taken),

and sets `w.constraint` to a `MaskConstraint` over the mask (composed with
any constraint `w` had). Keras applies a variable's constraint right after
every optimizer update inside the compiled train step, so pruned weights are
exactly 0.0 after every update, whatever the model's structure: the forward
pass is the layer's own.

Because the state is a tracked sublayer of the weight's owner, its variables
are model variables: they travel with `model.save_weights` /
`load_weights`, are replicated under `tf.distribute` (aggregation
"only_first_replica", so every replica holds the same mask), and are part
of the JAX train state. With `snapshots_on_host=True`, θ0 and θk are NumPy
arrays in host memory instead (the device then holds one weight's worth of
bytes, the mask); they still travel in weight files, tickets and IMP
checkpoints.
"""

import keras
import numpy as np
from keras import ops

from keras_lottery.backend import keras_internals
from keras_lottery.backend import processes
from keras_lottery.core.mask_constraint import MaskConstraint

INIT = "init"
REWIND = "rewind"
SNAPSHOTS = (INIT, REWIND)
ATTRIBUTE_PREFIX = "_lottery_"


class HostSnapshot:
    """A θ0/θk snapshot kept in host memory (`snapshots_on_host=True`): a
    NumPy array with the part of the variable interface the state uses.

    Example:
    >>> s = HostSnapshot("kernel_init", np.zeros((2, 3), "float32"))
    >>> s.assign(np.ones((2, 3)))
    >>> float(s.value.sum()), s.shape, s.dtype
    (6.0, (2, 3), 'float32')
    """

    def __init__(self, name, value):
        self.name = name
        self._value = np.array(value)

    @property
    def value(self):
        return self._value

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return str(self._value.dtype)

    def assign(self, value):
        self._value = np.array(ops.convert_to_numpy(value), dtype=self._value.dtype)

    def __repr__(self):
        return f"HostSnapshot({self.name!r}, shape={self.shape})"


@keras.saving.register_keras_serializable(package="keras_lottery")
class WeightState(keras.layers.Layer):
    """Mask, θ0 and θk of one prunable variable (see the module docstring).

    Created by `attach`; users reach it through `keras_lottery.prunable_weights`.

    Args:
        shape: the weight's shape.
        weight_dtype: the weight's variable dtype (θ0/θk use it).
        snapshots_on_host: keep θ0/θk in host memory instead of variables.
        **kwargs: `keras.layers.Layer` arguments (`name`).

    Example:
    >>> state = WeightState((3, 2), "float32", name="kernel_lottery")
    >>> state.mask_array().all(), sorted(state.snapshots)
    (np.True_, ['init', 'rewind'])
    """

    def __init__(self, shape, weight_dtype="float32", snapshots_on_host=False, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(int(d) for d in shape)
        self.weight_dtype = str(weight_dtype)
        self.snapshots_on_host = bool(snapshots_on_host)
        # Creation order is fixed (mask, init, rewind) so weight files load
        # back into the right variables.
        self.mask = self.add_weight(
            name="mask",
            shape=self.shape,
            dtype="float32",
            initializer="ones",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.snapshots = {}
        for which in SNAPSHOTS:
            if self.snapshots_on_host:
                snapshot = HostSnapshot(which, np.zeros(self.shape, self.weight_dtype))
                object.__setattr__(self, f"_host_{which}", snapshot)
            else:
                snapshot = self.add_weight(
                    name=which,
                    shape=self.shape,
                    dtype=self.weight_dtype,
                    initializer="zeros",
                    trainable=False,
                    aggregation="only_first_replica",
                )
            self.snapshots[which] = snapshot
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            shape=list(self.shape),
            weight_dtype=self.weight_dtype,
            snapshots_on_host=self.snapshots_on_host,
        )
        return config

    def mask_array(self):
        """The mask as a bool array.

        Example:
        >>> WeightState((2,)).mask_array().tolist()
        [True, True]
        """
        return ops.convert_to_numpy(self.mask.value) > 0.5

    def snapshot_array(self, which):
        """θ0 (`"init"`) or θk (`"rewind"`) as an array.

        Example:
        >>> WeightState((2,)).snapshot_array("init").tolist()
        [0.0, 0.0]
        """
        _check_snapshot(which)
        return ops.convert_to_numpy(self.snapshots[which].value)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.snapshots_on_host:
            offset = len(keras_internals.own_variables(self))
            for i, which in enumerate(SNAPSHOTS):
                store[f"{offset + i}"] = self.snapshots[which].value

    def load_own_variables(self, store):
        variables = keras_internals.own_variables(self)
        expected = len(variables) + (len(SNAPSHOTS) if self.snapshots_on_host else 0)
        if len(store.keys()) != expected:
            raise ValueError(
                f"WeightState '{self.name}' (snapshots_on_host="
                f"{self.snapshots_on_host}) expects {expected} arrays in the "
                f"file; it holds {len(store.keys())}. Load the file into a model "
                "wrapped with the same snapshots_on_host setting."
            )
        for i, v in enumerate(variables):
            v.assign(store[f"{i}"])
        if self.snapshots_on_host:
            for i, which in enumerate(SNAPSHOTS):
                self.snapshots[which].assign(store[f"{len(variables) + i}"])


def attach(owner, variable, snapshots_on_host=False):
    """Gives `owner` a `WeightState` for its variable `variable`, takes θ0 and
    θk from the variable's current value and installs the mask constraint.

    Args:
        owner: the built layer whose own variable `variable` is.
        variable: the `keras.Variable` to prune.
        snapshots_on_host: keep θ0/θk in host memory.

    Returns:
        The `WeightState`.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> state = attach(dense, dense.kernel)
    >>> type(dense.kernel.constraint).__name__, state_of(dense, dense.kernel) is state
    ('MaskConstraint', True)
    """
    processes.require_addressable(variable)
    if state_of(owner, variable) is not None:
        raise ValueError(
            f"'{variable.path}' is already prunable (it has lottery state); "
            "wrap a model or layer only once."
        )
    state = WeightState(
        tuple(variable.shape),
        variable.dtype,
        snapshots_on_host=snapshots_on_host,
        name=f"{variable.name}_lottery",
        dtype="float32",
    )
    object.__setattr__(state, "target", variable)  # untracked: the owner owns it
    keras_internals.attach_sublayer(owner, _attribute(variable), state)
    # Under keras.distribution (JAX) each lottery array is laid out like its
    # weight: a sharded kernel gets a sharded mask, θ0 and θk.
    keras_internals.share_layout(
        variable, [state.mask, *(s for s in state.snapshots.values()
                                 if not isinstance(s, HostSnapshot))])
    value = ops.convert_to_numpy(variable.value)
    for which in SNAPSHOTS:
        state.snapshots[which].assign(value.copy())
    inner = variable.constraint
    if isinstance(inner, MaskConstraint):
        inner = inner.inner
    variable.constraint = MaskConstraint(state.mask, inner)
    return state


def detach(owner, variable):
    """Removes the lottery state of `variable` from `owner` and restores the
    constraint it had before `attach`.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> _ = attach(dense, dense.kernel)
    >>> detach(dense, dense.kernel)
    >>> dense.kernel.constraint is None
    True
    """
    keras_internals.detach_sublayer(owner, _attribute(variable))
    if isinstance(variable.constraint, MaskConstraint):
        variable.constraint = variable.constraint.inner


def state_of(owner, variable):
    """The `WeightState` of `owner`'s variable `variable`, or None.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> state_of(dense, dense.kernel) is None
    True
    """
    state = getattr(owner, _attribute(variable), None)
    return state if isinstance(state, WeightState) else None


def _attribute(variable):
    return ATTRIBUTE_PREFIX + str(variable.name).replace("/", "_").replace(":", "_")


def _check_snapshot(which):
    if which not in SNAPSHOTS:
        raise ValueError(f"Snapshot must be one of {SNAPSHOTS}; received {which!r}.")
