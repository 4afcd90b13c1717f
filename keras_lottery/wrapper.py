"""`LotteryWrapper`: where a layer's lottery-ticket state lives.

For each prunable weight `w` of the wrapped layer the wrapper holds three
non-trainable variables of `w`'s shape:

- `<name>_mask`: 1.0 where the weight survives, 0.0 where it is pruned;
- `<name>_init`: the initial weights θ0, taken when the wrapper is built
  (`keras_lottery.wrap` re-takes it after copying the model's weights in);
- `<name>_rewind`: the rewind point θk (equal to θ0 until the IMP callback
  takes a snapshot at iteration k).

With `snapshots_on_host=True`, θ0 and θk are NumPy arrays in host memory
instead of variables: the accelerator then holds only the mask (one weight's
worth of bytes instead of three), and the snapshots move only at round
boundaries. They still travel in `.keras` files, tickets and IMP checkpoints.

`w` itself gets a `MaskConstraint`, so after every optimizer update it is
multiplied by its mask inside the compiled train step. The forward pass is
the wrapped layer's own: masking costs one multiply per weight per step.
On JAX, where the optimizer step cannot read the mask variables, the forward
pass hands the constraint the masks' traced values (see `MaskConstraint`).
"""

import keras
import numpy as np
from keras import ops

from keras_lottery import backend_compat
from keras_lottery import registry
from keras_lottery.mask_constraint import MaskConstraint

INIT = "init"
REWIND = "rewind"
_SNAPSHOTS = (INIT, REWIND)


class HostSnapshot:
    """A θ0/θk snapshot kept in host memory (`snapshots_on_host=True`): a
    NumPy array with the small part of the variable interface the wrapper
    uses (`value`, `assign`, `shape`, `dtype`, `name`).

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

    def numpy(self):
        return self._value

    def __repr__(self):
        return f"HostSnapshot({self.name!r}, shape={self.shape})"


class PrunableWeight:
    """One prunable weight and its lottery state (read-only record).

    Attributes:
        name: the weight's name within the layer, e.g. "kernel".
        variable: the weight itself.
        mask: float mask variable.
        snapshots: `{"init": θ0, "rewind": θk}`: variables, or
            `HostSnapshot`s with `snapshots_on_host=True`.
    """

    def __init__(self, name, variable, mask, snapshots):
        self.name = name
        self.variable = variable
        self.mask = mask
        self.snapshots = snapshots

    def __repr__(self):
        return f"PrunableWeight({self.name!r}, shape={tuple(self.variable.shape)})"


@keras.saving.register_keras_serializable(package="keras_lottery")
class LotteryWrapper(keras.layers.Wrapper):
    """Holds masks and θ0/θk snapshots for the prunable weights of a layer.

    Prunable by default: kernels of Dense, EinsumDense, Conv1D/2D/3D and their
    Transpose, DepthwiseConv1D/2D, both kernels of SeparableConv1D/2D, and
    Embedding's embeddings. Custom layers: `register_prunable` or a
    `get_prunable_weights()` method on the layer.

    The wrapper takes the wrapped layer's name, so `model.get_layer(name)` and
    per-layer pruning rates use the names you gave your layers.

    Args:
        layer: the `keras.layers.Layer` to wrap.
        snapshots_on_host: keep θ0/θk in host memory (NumPy) instead of as
            device variables, for models that fill the accelerator: the
            wrapper then adds one weight's bytes (the mask) instead of three.
        **kwargs: passed to `keras.layers.Wrapper` (e.g. `name`).

    Example:
    >>> dense = LotteryWrapper(keras.layers.Dense(4))
    >>> y = dense(keras.ops.ones((2, 3)))
    >>> sorted(dense.get_masks())
    ['kernel']
    """

    def __init__(self, layer, snapshots_on_host=False, **kwargs):
        if isinstance(layer, LotteryWrapper):
            raise ValueError(
                f"Layer '{layer.name}' is already a LotteryWrapper; wrap each "
                "layer (or model) only once."
            )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "LotteryWrapper expects a keras.layers.Layer; received "
                f"{layer!r} of type {type(layer).__name__}."
            )
        if isinstance(layer, keras.Model):
            raise TypeError(
                f"LotteryWrapper wraps single layers, not models; use "
                f"keras_lottery.wrap({layer.name!r}-model) to wrap every "
                "prunable layer of a model."
            )
        if not registry.is_prunable(layer):
            raise ValueError(
                f"Layer '{layer.name}' of type {type(layer).__name__} has no "
                "prunable weights. Register them with "
                f"keras_lottery.register_prunable({type(layer).__name__}, "
                "['kernel', ...]), give the layer a get_prunable_weights() "
                "method, or leave it unwrapped."
            )
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.snapshots_on_host = bool(snapshots_on_host)
        self._prunable = []

    def get_config(self):
        config = super().get_config()
        config["snapshots_on_host"] = self.snapshots_on_host
        return config

    def build(self, input_shape=None):
        super().build(input_shape)
        self._create_lottery_state()
        self.built = True

    def _create_lottery_state(self):
        # Creation order is fixed (weight order, then mask/init/rewind) so
        # `.keras` files load back into the right variables.
        self._prunable = []
        for name, variable in registry.get_prunable_weights(self.layer):
            shape = tuple(variable.shape)
            mask = self.add_weight(
                name=f"{name}_mask",
                shape=shape,
                dtype="float32",
                initializer="ones",
                trainable=False,
                aggregation="only_first_replica",
            )
            snapshots = {}
            for which in _SNAPSHOTS:
                if self.snapshots_on_host:
                    snapshots[which] = HostSnapshot(
                        f"{name}_{which}", ops.convert_to_numpy(variable.value)
                    )
                    continue
                snapshot = self.add_weight(
                    name=f"{name}_{which}",
                    shape=shape,
                    dtype=variable.dtype,
                    initializer="zeros",
                    trainable=False,
                    aggregation="only_first_replica",
                )
                # A copy: on JAX two variables must never share one buffer
                # (the train step donates them).
                snapshot.assign(ops.copy(variable.value))
                snapshots[which] = snapshot
            inner = variable.constraint
            if isinstance(inner, MaskConstraint):
                inner = inner.inner
            variable.constraint = MaskConstraint(mask, inner)
            self._prunable.append(PrunableWeight(name, variable, mask, snapshots))

    def call(self, inputs, *args, **kwargs):
        scope = backend_compat.current_scope()
        if scope is not None and backend_compat.is_jax():
            # JAX: the optimizer step cannot read the mask variables, but it
            # runs after this forward pass in the same traced step: hand the
            # constraints the masks' traced values (see MaskConstraint).
            for p in self._prunable:
                traced = scope.get_current_value(p.mask)
                if traced is not None and isinstance(p.variable.constraint, MaskConstraint):
                    p.variable.constraint.traced_mask = traced
        return self.layer(inputs, *args, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    @property
    def prunable_weights(self):
        """The `PrunableWeight` records of this layer, in a fixed order."""
        self._require_built()
        return list(self._prunable)

    def get_masks(self):
        """`{weight name: bool array}`, True where the weight survives.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.get_masks()["kernel"].all()
        np.True_
        """
        self._require_built()
        return {
            p.name: ops.convert_to_numpy(p.mask.value) > 0.5 for p in self._prunable
        }

    def set_masks(self, masks):
        """Assigns masks and zeroes the weights they prune.

        Args:
            masks: `{weight name: bool array}` for some or all weights.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(1, kernel_initializer="ones"))
        >>> w.build((None, 2))
        >>> w.set_masks({"kernel": np.array([[True], [False]])})
        >>> keras.ops.convert_to_numpy(w.layer.kernel).ravel().tolist()
        [1.0, 0.0]
        """
        self._require_built()
        by_name = {p.name: p for p in self._prunable}
        unknown = sorted(set(masks) - set(by_name))
        if unknown:
            raise ValueError(
                f"Layer '{self.name}' has no prunable weights named {unknown}; "
                f"it has {sorted(by_name)}."
            )
        for name, mask in masks.items():
            p = by_name[name]
            mask = np.asarray(mask)
            if mask.shape != tuple(p.variable.shape):
                raise ValueError(
                    f"Mask for '{self.name}/{name}' has shape {mask.shape}; "
                    f"the weight has shape {tuple(p.variable.shape)}."
                )
            p.mask.assign(mask.astype("float32"))
            values = ops.convert_to_numpy(p.variable.value)
            p.variable.assign(values * mask.astype(values.dtype))

    def take_snapshot(self, which=INIT):
        """Copies the current weights into the θ0 (`"init"`) or θk
        (`"rewind"`) snapshot.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.take_snapshot("rewind")
        """
        self._require_built()
        _check_snapshot(which)
        for p in self._prunable:
            p.snapshots[which].assign(ops.copy(p.variable.value))

    def get_snapshot(self, which=INIT):
        """`{weight name: array}` of the θ0 (`"init"`) or θk (`"rewind"`)
        snapshot.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.get_snapshot("init")["kernel"].shape
        (3, 2)
        """
        self._require_built()
        _check_snapshot(which)
        return {
            p.name: ops.convert_to_numpy(p.snapshots[which].value)
            for p in self._prunable
        }

    def set_snapshot(self, values, which=INIT):
        """Overwrites a snapshot with `{weight name: array}` values.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.set_snapshot({"kernel": np.zeros((3, 2))}, "init")
        """
        self._require_built()
        _check_snapshot(which)
        by_name = {p.name: p for p in self._prunable}
        for name, value in values.items():
            if name not in by_name:
                raise ValueError(
                    f"Layer '{self.name}' has no prunable weight '{name}'; "
                    f"it has {sorted(by_name)}."
                )
            target = by_name[name].snapshots[which]
            value = np.asarray(value)
            if value.shape != tuple(target.shape):
                raise ValueError(
                    f"Snapshot for '{self.name}/{name}' has shape "
                    f"{value.shape}; the weight has shape {tuple(target.shape)}."
                )
            target.assign(value)

    def rewind(self, which=INIT):
        """Sets every prunable weight to `snapshot * mask`.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.rewind("init")
        """
        self._require_built()
        _check_snapshot(which)
        for p in self._prunable:
            p.variable.assign(
                ops.multiply(
                    ops.convert_to_tensor(p.snapshots[which].value, p.variable.dtype),
                    ops.cast(p.mask.value, p.variable.dtype),
                )
            )

    def apply_masks(self):
        """Multiplies every prunable weight by its mask (idempotent).

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.apply_masks()
        """
        self._require_built()
        for p in self._prunable:
            p.variable.assign(p.variable.value * p.mask.value)

    def host_snapshots(self):
        """`{"<weight>/<init|rewind>": array}` of the snapshots kept in host
        memory (empty unless `snapshots_on_host`).

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2), snapshots_on_host=True)
        >>> w.build((None, 3))
        >>> sorted(w.host_snapshots())
        ['kernel/init', 'kernel/rewind']
        """
        if not self.snapshots_on_host:
            return {}
        self._require_built()
        return {
            f"{p.name}/{which}": p.snapshots[which].value
            for p in self._prunable
            for which in _SNAPSHOTS
        }

    def set_host_snapshots(self, values):
        """Restores what `host_snapshots()` returned (checkpoints use it).

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2), snapshots_on_host=True)
        >>> w.build((None, 3))
        >>> w.set_host_snapshots({"kernel/init": np.zeros((3, 2))})
        >>> float(w.get_snapshot("init")["kernel"].sum())
        0.0
        """
        for key, value in values.items():
            name, _, which = key.rpartition("/")
            self.set_snapshot({name: value}, which)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.snapshots_on_host:
            offset = len(self._trainable_variables + self._non_trainable_variables)
            for i, value in enumerate(self.host_snapshots().values()):
                store[f"{offset + i}"] = value

    def load_own_variables(self, store):
        if not self.snapshots_on_host:
            return super().load_own_variables(store)
        variables = self._trainable_variables + self._non_trainable_variables
        keys = list(self.host_snapshots())
        if len(store.keys()) != len(variables) + len(keys):
            raise ValueError(
                f"LotteryWrapper '{self.name}' (snapshots_on_host=True) expects "
                f"{len(variables)} variables and {len(keys)} host snapshots in "
                f"the file; it holds {len(store.keys())} entries."
            )
        for i, v in enumerate(variables):
            v.assign(store[f"{i}"])
        self.set_host_snapshots(
            {key: store[f"{len(variables) + i}"] for i, key in enumerate(keys)}
        )

    def _require_built(self):
        if not self.built:
            raise ValueError(
                f"LotteryWrapper '{self.name}' is not built yet, so it has no "
                "masks. Build the model first (call it on data or "
                "`model.build(input_shape)`)."
            )


def _check_snapshot(which):
    if which not in _SNAPSHOTS:
        raise ValueError(
            f"Snapshot must be one of {_SNAPSHOTS}; received {which!r}."
        )
