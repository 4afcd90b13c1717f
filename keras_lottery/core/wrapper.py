"""`LotteryWrapper`: prune one layer you build yourself.

`keras_lottery.wrap(model)` makes a whole model prunable in place; this
wrapper is for code that marks layers itself, e.g. in a subclassed model's
`__init__`. Its lottery state lives where `wrap` puts it (next to each
prunable variable of the wrapped layer, at any depth), and a model holding
`LotteryWrapper`s round-trips through `.keras` files with its masks.
"""

import keras
import numpy as np
from keras import ops

from keras_lottery.backend import keras_internals
from keras_lottery.backend import layer_tree
from keras_lottery.core import registry
from keras_lottery.core import wrapping
from keras_lottery.core.weight_state import INIT, SNAPSHOTS


@keras.saving.register_keras_serializable(package="keras_lottery")
class LotteryWrapper(keras.layers.Wrapper):
    """Makes the prunable variables of one layer (at any depth) prunable.

    The wrapper takes the wrapped layer's name and calls it with whatever it
    is called with (several inputs, `training`, `mask`), so it fits anywhere
    the layer did: `self.attention = LotteryWrapper(MultiHeadAttention(...))`.

    Args:
        layer: the `keras.layers.Layer` to wrap (any layer with prunable
            variables: Dense, Conv, RNN, MultiHeadAttention, a block of
            layers...).
        snapshots_on_host: keep θ0/θk in host memory (see
            `keras_lottery.core.weight_state`).
        **kwargs: `keras.layers.Wrapper` arguments (e.g. `name`).

    Example:
    >>> dense = LotteryWrapper(keras.layers.Dense(4))
    >>> y = dense(keras.ops.ones((2, 3)))
    >>> sorted(dense.get_masks())
    ['kernel']
    """

    # How `keras_lottery.core.wrapping` recognises the class without importing it.
    is_lottery_wrapper = True

    def __init__(self, layer, snapshots_on_host=False, **kwargs):
        if isinstance(layer, LotteryWrapper):
            raise ValueError(
                f"Layer '{layer.name}' is already a LotteryWrapper; wrap each layer once."
            )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "LotteryWrapper expects a keras.layers.Layer; received "
                f"{layer!r} of type {type(layer).__name__}."
            )
        if layer.built and not any(
            registry.prunable_variables(sub) for sub, _ in layer_tree.walk(layer)
        ) or (not layer.built and not _may_be_prunable(layer)):
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

    def get_config(self):
        config = super().get_config()
        config["snapshots_on_host"] = self.snapshots_on_host
        return config

    def build(self, input_shape=None):
        if not self.layer.built and input_shape is not None:
            try:
                with keras_internals.scope_of_wrapped_layer(self, self.layer):
                    self.layer.build(input_shape)
            except TypeError:
                pass  # a layer of several inputs builds at its first call
        if not keras_internals.in_stateless_scope():
            self.attach_lottery_state()
        self.built = True

    def __call__(self, *args, **kwargs):
        outputs = super().__call__(*args, **kwargs)
        # A layer of several inputs (attention) is built inside the symbolic
        # trace of its first call; its state is attached right after it.
        if not keras_internals.in_stateless_scope():
            self.attach_lottery_state()
        return outputs

    def call(self, inputs, *args, **kwargs):
        with keras_internals.scope_of_wrapped_layer(self, self.layer):
            return self.layer(inputs, *args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def attach_lottery_state(self):
        """Gives the wrapped layer its lottery state once it is built (a no-op
        before that and after the first time). `build`, the first call and
        the keras_lottery callbacks' `on_train_begin` call it: `fit` builds a
        subclassed model's layers symbolically, where no state can be made.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.attach_lottery_state()  # not built yet: nothing to attach
        >>> w.build((None, 3))
        >>> sorted(w.get_masks())
        ['kernel']
        """
        if self.layer.built and not self._states():
            wrapping.wrap(self.layer, snapshots_on_host=self.snapshots_on_host)

    def _states(self):
        return wrapping.prunable_weights(self.layer) if self.layer.built else []

    @property
    def prunable_weights(self):
        """The `PrunableWeight`s of the wrapped layer, in order."""
        self._require_built()
        return self._states()

    def get_masks(self):
        """`{weight name: bool array}`, True where the weight survives.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> bool(w.get_masks()["kernel"].all())
        True
        """
        return {p.key: p.state.mask_array() for p in self.prunable_weights}

    def set_masks(self, masks):
        """Assigns masks (`{weight name: bool array}`) and zeroes what they
        prune.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(1, kernel_initializer="ones"))
        >>> w.build((None, 2))
        >>> w.set_masks({"kernel": np.array([[True], [False]])})
        >>> keras.ops.convert_to_numpy(w.layer.kernel).ravel().tolist()
        [1.0, 0.0]
        """
        by_name = {p.key: p.key for p in self.prunable_weights}
        unknown = sorted(set(masks) - set(by_name))
        if unknown:
            raise ValueError(
                f"Layer '{self.name}' has no prunable weights named {unknown}; "
                f"it has {sorted(by_name)}."
            )
        wrapping.set_masks(self.layer, {by_name[k]: np.asarray(v) for k, v in masks.items()})

    def get_snapshot(self, which=INIT):
        """`{weight name: array}` of θ0 (`"init"`) or θk (`"rewind"`).

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.get_snapshot("init")["kernel"].shape
        (3, 2)
        """
        return {p.key: p.state.snapshot_array(which) for p in self.prunable_weights}

    def take_snapshot(self, which=INIT):
        """Copies the current weights into θ0 (`"init"`) or θk (`"rewind"`).

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.take_snapshot("rewind")
        """
        _check(which)
        for p in self.prunable_weights:
            p.snapshots[which].assign(ops.convert_to_numpy(p.variable.value))

    def set_snapshot(self, values, which=INIT):
        """Overwrites θ0 or θk with `{weight name: array}` values.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.set_snapshot({"kernel": np.zeros((3, 2))}, "init")
        """
        _check(which)
        by_name = {p.key: p for p in self.prunable_weights}
        for name, value in values.items():
            if name not in by_name:
                raise ValueError(
                    f"Layer '{self.name}' has no prunable weight '{name}'; it has "
                    f"{sorted(by_name)}."
                )
            value = np.asarray(value)
            if value.shape != by_name[name].shape:
                raise ValueError(
                    f"Snapshot for '{self.name}/{name}' has shape {value.shape}; the "
                    f"weight has shape {by_name[name].shape}."
                )
            by_name[name].snapshots[which].assign(value)

    def rewind(self, which=INIT):
        """Sets every prunable weight to `snapshot * mask`.

        Example:
        >>> w = LotteryWrapper(keras.layers.Dense(2))
        >>> w.build((None, 3))
        >>> w.rewind("init")
        """
        _check(which)
        for p in self.prunable_weights:
            value = p.state.snapshot_array(which)
            p.variable.assign(value * p.state.mask_array().astype(value.dtype))

    def _require_built(self):
        if not (self.built and self.layer.built):
            raise ValueError(
                f"LotteryWrapper '{self.name}' is not built yet, so it has no "
                "masks. Build the model first (call it on data or "
                "`model.build(input_shape)`)."
            )


def _may_be_prunable(layer):
    if registry.is_prunable(layer):
        return True
    # An unbuilt composite layer (attention, RNN, a block) may hold prunable
    # sublayers that exist already.
    return any(
        registry.is_prunable(sub) for sub, _ in layer_tree.walk(layer) if sub is not layer
    ) or isinstance(layer, (keras.layers.MultiHeadAttention, keras.layers.RNN,
                            keras.layers.Bidirectional, keras.layers.TimeDistributed))


def _check(which):
    if which not in SNAPSHOTS:
        raise ValueError(f"Snapshot must be one of {SNAPSHOTS}; received {which!r}.")

