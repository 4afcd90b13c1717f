"""Compaction: a ticket as a physically smaller dense model.

A structured ticket (whole neurons or filters pruned, see
`keras_lottery.sparsity.structure`) computes the same function as a smaller network
with those units removed. `compact(model)` performs that surgery on a
functional or Sequential model and returns a plain Keras model whose layers
are narrower (fewer Dense units, fewer Conv filters, the matching inputs of
the next layers, BatchNormalization entries), so it is faster on every
runtime. The same surgery removes the dead units of an unstructured ticket.

A unit is removed when its output is not needed: its fan-in is zero and
`activation(bias)` is 0 and stays 0 on its way to the next Dense/Conv, or no
consumer reads it (its fan-out is zero). A unit whose fan-in is zero but
whose output is a non-zero constant (a bias through the activation, or a 0
that a BatchNormalization shifts: `Conv2D(activation="relu")` then
`BatchNormalization`) is folded into the biases of its consumers where
that is exact (Dense layers, and convolutions with "valid" padding or a
1x1 kernel, that have a bias, through activations, pooling, dropout, batch normalization,
cropping, upsampling and Flatten); elsewhere (zero padding, for one) it
stays. Merges are handled: an `Add` keeps a channel
any of its inputs needs, a `Concatenate` maps channels by offset. A layer
that would see fewer channels and is not one of these is refused, by name.

Example:
>>> x = keras.Input((4,))
>>> h = keras.layers.Dense(6, activation="relu", name="h")(x)
>>> model = keras_lottery.wrap(keras.Model(x, keras.layers.Dense(2, name="out")(h)))
>>> mask = np.ones((4, 6), bool); mask[:, 3:] = False
>>> keras_lottery.set_masks(model, {"h/kernel": mask})
>>> _ = model.get_layer("h").bias.assign(np.zeros(6))
>>> small = compact(model)
>>> small.model.get_layer("h").units, small.removed
(3, {'h': 3})
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_lottery.backend import keras_internals
from keras_lottery.core import wrapping

_DENSE = (keras.layers.Dense,)
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_NORM = (keras.layers.BatchNormalization,)
# Layers that act on each channel on its own: a constant channel stays
# constant (through `_constant_through`), removing a channel removes it.
_CHANNELWISE = tuple(
    cls
    for cls in (
        keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
        keras.layers.Dropout, keras.layers.SpatialDropout1D,
        keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D, keras.layers.GaussianNoise,
        keras.layers.GaussianDropout, keras.layers.AlphaDropout, keras.layers.Identity,
        keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
        keras.layers.AveragePooling1D, keras.layers.AveragePooling2D,
        keras.layers.AveragePooling3D, keras.layers.GlobalAveragePooling1D,
        keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling3D,
        keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
        keras.layers.GlobalMaxPooling3D,
        keras.layers.Cropping1D, keras.layers.Cropping2D, keras.layers.Cropping3D,
        keras.layers.UpSampling1D, keras.layers.UpSampling2D, keras.layers.UpSampling3D,
    )
    if cls is not None
)
# Zero padding acts on each channel on its own too, but a constant channel
# padded with zeros is no longer constant: it is never folded through.
_PADDING = (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D)
_MERGE_SAME = (keras.layers.Add, keras.layers.Subtract, keras.layers.Maximum,
               keras.layers.Minimum, keras.layers.Average, keras.layers.Multiply,
               *keras_internals.elementwise_merge_operations())


def _concatenates_channels(op, outs):
    """A Concatenate on the channel axis: its channels are its inputs', by offset."""
    return isinstance(op, keras.layers.Concatenate) and op.axis in (-1, len(outs[0].shape) - 1)


def _flattens(op, inputs):
    """A Flatten: its units are its input's channels, once per position."""
    return isinstance(op, keras.layers.Flatten) and len(inputs) == 1


class CompactionError(ValueError):
    """The model cannot be compacted as asked (the layer is named).

    Example:
    >>> issubclass(CompactionError, ValueError)
    True
    """


@dataclasses.dataclass
class CompactionResult:
    """A compacted model and what was removed.

    Attributes:
        model: the plain, smaller Keras model.
        removed: `{layer name: units or filters removed}`.
        folded: units whose constant output went into their consumers' biases.
        params_before, params_after: parameter counts of the plain and the
            compacted model.

    Example:
    >>> result = CompactionResult(model=None, removed={"h": 3}, folded=0,
    ...                           params_before=30, params_after=18)
    >>> result.params_after / result.params_before
    0.6
    """

    model: object
    removed: dict
    folded: int
    params_before: int
    params_after: int


def compact(model, sample_inputs=None, tolerance=1e-4):
    """Removes the units a (structured) ticket does not need; see the module
    docstring. The compacted model is checked against the masked one.

    Args:
        model: a functional or Sequential model, wrapped or plain.
        sample_inputs: inputs to compare the two models on (default: 8
            random examples per input).
        tolerance: largest allowed `|compacted - masked|`, relative to the
            largest output magnitude (at least 1).

    Returns:
        A `CompactionResult`; `result.model` computes what `model` computes
        (float rounding aside). Export it like any model:
        `keras_lottery.export_tflite(compact(ticket).model, "small.tflite")`.

    Raises:
        CompactionError: a subclassed model, a layer shared by two calls, a
            layer that would see fewer channels and is not supported (named),
            or outputs that differ beyond `tolerance`.

    Example:
    >>> x = keras.Input((3,))
    >>> h = keras.layers.Dense(4, activation="relu", name="h")(x)
    >>> ticket = keras_lottery.wrap(keras.Model(x, keras.layers.Dense(1, name="o")(h)))
    >>> keras_lottery.set_masks(ticket, {"h/kernel": np.eye(3, 4, dtype=bool)})
    >>> compact(ticket).model.get_layer("h").units  # unit 3 has no fan-in: gone or folded
    3
    """
    plain = wrapping.strip(model) if wrapping.has_lottery_state(model) else model
    nodes = keras_internals.graph_nodes(plain)
    if nodes is None:
        raise CompactionError(
            f"compact needs the graph of a functional or Sequential model; "
            f"'{plain.name}' ({type(plain).__name__}) is subclassed. Build the "
            "ticket's architecture functionally to compact it."
        )
    calls = {}
    for operation, _, _ in nodes:
        calls[id(operation)] = calls.get(id(operation), 0) + 1
    plan = _Plan(plain, nodes, calls)
    plan.analyse()
    compacted = plan.build()
    _verify(plain, compacted, sample_inputs, tolerance)
    return CompactionResult(
        model=compacted,
        removed={name: n for name, n in plan.removed.items() if n},
        folded=plan.folded,
        params_before=plain.count_params(),
        params_after=compacted.count_params(),
    )


class _Plan:
    """Which channels every tensor keeps, and how every layer shrinks."""

    def __init__(self, model, nodes, calls):
        self.model = model
        self.nodes = nodes
        self.calls = calls
        # Graph nodes include plain operations (`x + y` in a functional model
        # is a `keras.ops` Add, not a layer): they hold no weights.
        self.weights = {id(op): [ops.convert_to_numpy(w) for w in getattr(op, "weights", [])]
                        for op, _, _ in nodes}
        self.consumers = {}
        self.producer = {}
        for index, (_, inputs, outs) in enumerate(nodes):
            for tensor in inputs:
                self.consumers.setdefault(id(tensor), []).append(index)
            for tensor in outs:
                self.producer[id(tensor)] = index
        self.needed = {}  # id(tensor) -> bool array over its channels
        self.kept = {}  # id(tensor) -> sorted kept channel indices
        self.fold = {}  # id(op) -> {unit: constant} folded away
        self.units_keep = {}  # id(op) -> bool per unit the layer keeps
        self.removed = {}
        self.folded = 0
        # Per-tensor answers of the downstream walks, which every producer
        # asks again (a DenseNet block's concatenations chain 100+ layers).
        self._zero_memo = {}
        self._fold_memo = {}
        self._writers_memo = {}
        self.problems = {"merge": [], "unknown": []}  # labels of the layers compact cannot handle
        self.merge_writers = set()
        self.unknown_writers = set()

    # -------------------------------------------------------------- analyse

    def analyse(self):
        outputs = keras_internals.model_outputs(self.model)
        self.output_ids = {id(tensor) for tensor in outputs}
        for tensor in outputs:
            self.needed[id(tensor)] = np.ones(_width(tensor), bool)
        for operation, inputs, outs in reversed(self.nodes):
            need_out = [self._need_of(t) for t in outs]
            self._backward(operation, inputs, outs, need_out)
        for tensor in keras_internals.model_inputs(self.model):
            self.kept[id(tensor)] = np.arange(_width(tensor))
        for operation, inputs, outs in self.nodes:
            self._forward(operation, inputs, outs)
        self._refuse_problems()

    def _refuse_problems(self):
        """One refusal for every layer compaction cannot handle, with the
        layers to leave dense: the writers of every residual stream and of
        every input of such a layer (retrained with fewer left dense, another
        one may disagree)."""
        merges, unknown = self.problems["merge"], self.problems["unknown"]
        if not merges and not unknown:
            return

        def layers(found):
            names = ", ".join(found)
            return ("Layer " if len(found) == 1 else "Layers ") + names

        sentences = []
        if merges:
            sentences.append(
                f"{layers(merges)} {'merges' if len(merges) == 1 else 'merge'} inputs that keep "
                "different channels (compaction shrinks a residual only where its branches "
                "keep the same channels).")
        if unknown:
            sentences.append(
                f"{layers(unknown)} would see fewer channels after compaction, and compaction "
                f"does not know how to shrink {'it' if len(unknown) == 1 else 'them'}.")
        # Every residual stream's writers and every unknown layer's, whichever
        # kind was refused: a model retrained with only the named ones dense
        # can fail at the other kind next (NASNet: a refusal that named its
        # residual writers only, then SeparableConv2D inputs shrank).
        writers = self.merge_writers | self.unknown_writers
        target = "it" if len(merges) + len(unknown) == 1 else "them"
        shrinkable = {op.name for op, _, outs in self.nodes
                      if _shrinkable(op) and not any(id(t) in self.output_ids for t in outs)}
        if shrinkable <= writers:
            # Following the refusal would leave nothing to remove (NASNet:
            # every convolution writes into a residual or a SeparableConv2D).
            raise CompactionError(
                f"{' '.join(sentences)} Every layer compaction could shrink in this model "
                f"({len(shrinkable)}) writes into {target}: left dense, they leave nothing to "
                "remove, so compaction cannot make this model smaller. Prune it with "
                "structure='weight' and export it sparse (kl.export_tflite) instead."
            )
        raise CompactionError(
            f"{' '.join(sentences)} Leave the layers that write into {target} dense: wrap "
            f"with exclude={sorted(writers)} (or prune those with structure='weight'), "
            "then compact."
        )

    def _need_of(self, tensor):
        need = self.needed.get(id(tensor))
        if need is None:  # a tensor no node reads and no output is
            need = np.zeros(_width(tensor), bool)
        return need

    def _add_need(self, tensor, need):
        width = _width(tensor)
        current = self.needed.get(id(tensor), np.zeros(width, bool))
        self.needed[id(tensor)] = current | np.asarray(need, bool)

    def _backward(self, op, inputs, outs, need_out):
        """What each input of `op` must provide for what its outputs must."""
        if _shrinkable(op) and self._owner_ok(op):
            kernel, bias = self._kernel_bias(op)
            units = self._units(op, kernel, bias, outs[0])
            keep = need_out[0] & (units != "zero")
            rows = np.moveaxis(kernel, -2, 0).reshape(kernel.shape[-2], -1, kernel.shape[-1])
            self._add_need(inputs[0], (rows[:, :, keep] != 0).any(axis=(1, 2)))
            self.units_keep[id(op)] = keep
            return
        if isinstance(op, _DEPTHWISE) and self.calls[id(op)] == 1:
            multiplier = op.depth_multiplier
            need = need_out[0].reshape(-1, multiplier).any(axis=1)
            self._add_need(inputs[0], need)
            return
        if isinstance(op, _NORM + _CHANNELWISE + _PADDING) and len(inputs) == 1 and (
            _channelwise_axis(op)
        ):
            self._add_need(inputs[0], need_out[0])
            return
        if _flattens(op, inputs):
            channels = _width(inputs[0])
            self._add_need(inputs[0], need_out[0].reshape(-1, channels).any(axis=0))
            return
        if isinstance(op, _MERGE_SAME) and _last_axis_aligned(inputs, outs):
            for tensor in inputs:
                self._add_need(tensor, need_out[0])
            return
        if _concatenates_channels(op, outs):
            offset = 0
            for tensor in inputs:
                width = _width(tensor)
                self._add_need(tensor, need_out[0][offset : offset + width])
                offset += width
            return
        # Anything else needs all of its inputs (and may not shrink).
        for tensor in inputs:
            self._add_need(tensor, np.ones(_width(tensor), bool))

    def _forward(self, op, inputs, outs):
        in_kept = [self.kept[id(t)] for t in inputs]
        full = [len(k) == _width(t) for k, t in zip(in_kept, inputs)]
        name = op.name
        if _shrinkable(op) and self._owner_ok(op):
            keep = self.units_keep[id(op)]
            kernel, bias = self._kernel_bias(op)
            units = self._units(op, kernel, bias, outs[0])
            constant = (units == "constant") & keep
            foldable = constant & self._can_fold(outs[0])
            keep = keep & ~foldable
            if foldable.any():
                values = _activate(op, bias)
                self.fold[id(op)] = {int(u): float(values[u]) for u in np.flatnonzero(foldable)}
                self.folded += int(foldable.sum())
            self.kept[id(outs[0])] = np.flatnonzero(keep)
            self.removed[name] = int(keep.size - keep.sum())
            return
        if isinstance(op, _DEPTHWISE) and self.calls[id(op)] == 1:
            multiplier = op.depth_multiplier
            self.kept[id(outs[0])] = np.array(
                [c * multiplier + m for c in in_kept[0] for m in range(multiplier)], int)
            return
        if isinstance(op, _NORM + _CHANNELWISE + _PADDING) and len(inputs) == 1 and (
            _channelwise_axis(op)
        ):
            self.kept[id(outs[0])] = in_kept[0]
            return
        if _flattens(op, inputs):
            channels = _width(inputs[0])
            positions = _width(outs[0]) // channels
            self.kept[id(outs[0])] = np.array(
                [p * channels + c for p in range(positions) for c in in_kept[0]], int)
            return
        if isinstance(op, _MERGE_SAME) and _last_axis_aligned(inputs, outs):
            # Every merge's writers, agreeing or not: retrained with only the
            # disagreeing ones left dense, other residuals can disagree next.
            writers = set().union(*(self._writers(t) for t in inputs))
            self.merge_writers |= writers
            union = np.unique(np.concatenate(in_kept))
            if not all(np.array_equal(k, union) for k in in_kept):
                # Recorded, not raised: the refusal names every such layer.
                self.problems["merge"].append(f"'{name}' ({type(op).__name__})")
            self.kept[id(outs[0])] = union
            return
        if _concatenates_channels(op, outs):
            offset, parts = 0, []
            for tensor, kept in zip(inputs, in_kept):
                parts.append(kept + offset)
                offset += _width(tensor)
            self.kept[id(outs[0])] = np.concatenate(parts)
            return
        # Every such layer's writers, shrunk or not: retrained with only the
        # ones named left dense, another one can be shrunk next (NASNet's
        # SeparableConv2D layers).
        self.unknown_writers |= set().union(*(self._writers(t) for t in inputs))
        if not all(full):
            kind = type(op).__name__
            if getattr(op, "groups", 1) > 1:
                kind += f", groups={op.groups}"
            self.problems["unknown"].append(f"'{name}' ({kind})")
        for tensor in outs:
            self.kept[id(tensor)] = np.arange(_width(tensor))

    def _writers(self, tensor):
        """The Dense/Conv layers whose units are the channels of `tensor`,
        through channel-wise layers and merges (a residual stream's writers).
        Memoized: every merge of a residual chain asks about the ones before."""
        if id(tensor) in self._writers_memo:
            return self._writers_memo[id(tensor)]
        index = self.producer.get(id(tensor))
        writers = frozenset()
        if index is not None:
            op, inputs, outs = self.nodes[index]
            if isinstance(op, _DENSE + _CONV):
                writers = frozenset([op.name])
            elif isinstance(op, _MERGE_SAME + _NORM + _CHANNELWISE + _PADDING + _DEPTHWISE) or (
                _concatenates_channels(op, outs) or _flattens(op, inputs)
            ):
                # A depthwise convolution's channels are its input's: their
                # writers are upstream (MobileNet's expand convolutions); a
                # concatenation's are its inputs' (NASNet's adjust blocks).
                writers = frozenset().union(*(self._writers(t) for t in inputs))
        self._writers_memo[id(tensor)] = writers
        return writers

    def _owner_ok(self, op):
        if self.calls[id(op)] > 1:
            raise CompactionError(
                f"Layer '{op.name}' is called {self.calls[id(op)]} times in the model "
                "(a shared layer); compaction shrinks each layer once."
            )
        if isinstance(op, _CONV) and op.data_format != "channels_last":
            raise CompactionError(f"Layer '{op.name}': compaction needs channels_last convolutions.")
        return True

    def _kernel_bias(self, op):
        values = self.weights[id(op)]
        kernel = values[0]
        bias = values[1] if op.use_bias else np.zeros(kernel.shape[-1], kernel.dtype)
        return kernel, bias

    def _units(self, op, kernel, bias, out):
        """Per unit: "live" (it has fan-in), "zero" (no fan-in, its output is 0
        and stays 0 wherever it goes: removable), or "constant" (no fan-in,
        and its output, or what a layer downstream makes of its 0 — a
        BatchNormalization's shift, a sigmoid's 0.5 — is not 0: folded into
        the consumers' biases where that is exact, kept otherwise)."""
        fan_in = (kernel.reshape(-1, kernel.shape[-1]) != 0).any(axis=0)
        zero = (_activate(op, bias) == 0) & self._stays_zero(out)
        return np.where(fan_in, "live", np.where(zero, "zero", "constant"))

    def _stays_zero(self, tensor):
        """Per channel of `tensor`: does a 0 on it reach every Dense/Conv
        consumer as 0? A BatchNormalization maps 0 to its shift, an activation
        to `activation(0)`."""
        if id(tensor) in self._zero_memo:
            return self._zero_memo[id(tensor)]
        width = _width(tensor)
        # A channel of the model's output is part of what the model returns:
        # a 0 there stays, or the compacted model's outputs change shape.
        ok = np.full(width, id(tensor) not in self.output_ids)
        for index in self.consumers.get(id(tensor), []):
            op, inputs, outs = self.nodes[index]
            if isinstance(op, _DENSE + _CONV):
                continue  # 0 times any weight adds nothing
            if isinstance(op, _NORM + _CHANNELWISE + _PADDING) and _channelwise_axis(op) and (
                len(outs) == 1
            ):
                through = self._constant_through(op, np.zeros(width, np.float32)) == 0
                ok &= through & self._stays_zero(outs[0])
            elif isinstance(op, keras.layers.Flatten):
                ok &= self._stays_zero(outs[0]).reshape(-1, width).all(axis=0)
            elif _concatenates_channels(op, outs):
                offset = sum(_width(t) for t in inputs[: [id(t) for t in inputs].index(id(tensor))])
                ok &= self._stays_zero(outs[0])[offset : offset + width]
            # Merges and layers compaction cannot shrink: the unit counts as
            # removable, and `_forward` refuses, by name, a layer that would
            # then see fewer channels (or a merge whose branches disagree).
        self._zero_memo[id(tensor)] = ok
        return ok

    def _can_fold(self, tensor):
        """Per channel: can a constant on this channel be folded into every
        consumer it reaches (exactly)?"""
        if id(tensor) not in self._fold_memo:
            self._fold_memo[id(tensor)] = self._can_fold_walk(tensor)
        return self._fold_memo[id(tensor)]

    def _can_fold_walk(self, tensor):
        width = _width(tensor)
        ok = np.ones(width, bool)
        for index in self.consumers.get(id(tensor), []):
            op, inputs, outs = self.nodes[index]
            if isinstance(op, _DENSE + _CONV) and not op.use_bias:
                return np.zeros(width, bool)  # no bias to take the constant: kept
            if isinstance(op, _DENSE):
                continue
            if _shrinkable(op) and isinstance(op, _CONV) and (
                op.padding == "valid" or all(k == 1 for k in op.kernel_size)
            ):
                continue
            if isinstance(op, _NORM + _CHANNELWISE) and _channelwise_axis(op) and len(outs) == 1:
                ok &= self._can_fold(outs[0])
                continue
            if isinstance(op, keras.layers.Flatten):
                below = self._can_fold(outs[0])
                ok &= below.reshape(-1, width).all(axis=0)
                continue
            return np.zeros(width, bool)
        return ok & bool(self.consumers.get(id(tensor)))

    def _constant_through(self, op, values):
        """Per channel: the value a constant channel (`values`, one per
        channel) has after the channel-wise layer `op`."""
        if isinstance(op, _NORM):
            named = dict(zip((w.name for w in op.weights), self.weights[id(op)]))
            gamma = named.get("gamma", 1.0)
            beta = named.get("beta", 0.0)
            return (gamma * (values - named["moving_mean"])
                    / np.sqrt(named["moving_variance"] + op.epsilon) + beta)
        if isinstance(op, (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
                           keras.layers.ELU)):
            return np.asarray(ops.convert_to_numpy(op(ops.convert_to_tensor(values))))
        return values  # dropout, noise (inference), pooling: a constant stays

    # ---------------------------------------------------------------- build

    def build(self):
        plan = self
        sizes = {}
        for op, inputs, outs in self.nodes:
            if _shrinkable(op):
                sizes[id(op)] = len(self.kept[id(outs[0])])

        def clone(layer):
            config = layer.get_config()
            if id(layer) in sizes:
                key = "units" if isinstance(layer, _DENSE) else "filters"
                config[key] = max(1, sizes[id(layer)])
            return layer.__class__.from_config(config)

        new_model = keras.models.clone_model(self.model, clone_function=clone)
        by_name = {layer.name: layer for layer in _layers(new_model)}
        constants = self._constants()
        for op, inputs, outs in self.nodes:
            new = by_name.get(op.name)
            if new is None or not getattr(op, "weights", None):
                continue
            in_keep = [plan.kept[id(t)] for t in inputs]
            out_keep = plan.kept[id(outs[0])]
            new.set_weights(self._sliced(op, in_keep, out_keep, constants.get(id(op), {})))
        return new_model

    def _constants(self):
        """`{id(consumer op): {"bias": delta}}`: the folded constants' effect
        on the biases of the layers that read them."""
        deltas = {}
        for op, _, outs in self.nodes:
            for unit, value in self.fold.get(id(op), {}).items():
                self._push_constant(outs[0], unit, value, deltas)
        return deltas

    def _push_constant(self, tensor, channel, value, deltas):
        width = _width(tensor)
        for index in self.consumers.get(id(tensor), []):
            op, inputs, outs = self.nodes[index]
            if isinstance(op, _DENSE + _CONV):
                kernel = self.weights[id(op)][0]
                rows = kernel[..., channel, :]
                if isinstance(op, _CONV) and op.padding != "valid":
                    rows = rows.reshape(-1, rows.shape[-1])  # 1x1: one tap
                contribution = value * rows.reshape(-1, kernel.shape[-1]).sum(axis=0)
                deltas.setdefault(id(op), {}).setdefault("bias", np.zeros(kernel.shape[-1]))
                deltas[id(op)]["bias"] += contribution
            elif isinstance(op, keras.layers.Flatten):
                positions = _width(outs[0]) // width
                for p in range(positions):
                    self._push_constant(outs[0], p * width + channel, value, deltas)
            else:  # channel-wise: the constant goes through the layer
                values = np.zeros(width, np.float32)
                values[channel] = value
                through = self._constant_through(op, values)[channel]
                self._push_constant(outs[0], channel, float(through), deltas)

    def _sliced(self, op, in_keep, out_keep, delta):
        values = self.weights[id(op)]
        if _shrinkable(op):
            kernel = np.take(np.take(values[0], in_keep[0], axis=-2), out_keep, axis=-1)
            result = [kernel]
            if op.use_bias:
                bias = values[1] + delta.get("bias", 0.0)
                result.append(bias[out_keep].astype(values[1].dtype))
            return result
        if isinstance(op, _DEPTHWISE):
            kernel = np.take(values[0], in_keep[0], axis=-2)
            result = [kernel]
            if op.use_bias:
                result.append(values[1][out_keep])
            return result
        if isinstance(op, _NORM + _CHANNELWISE):
            # Per-channel vectors (BatchNormalization's gamma, beta, moving
            # statistics) follow the kept channels.
            return [v[out_keep] if v.ndim == 1 else v for v in values]
        return values


def _verify(plain, compacted, sample_inputs, tolerance):
    if sample_inputs is None:
        sample_inputs = keras_internals.random_inputs(plain)
    expected = keras.tree.flatten(plain(sample_inputs, training=False))
    got = keras.tree.flatten(compacted(sample_inputs, training=False))
    for index, (a, b) in enumerate(zip(expected, got)):
        a, b = ops.convert_to_numpy(a), ops.convert_to_numpy(b)
        if a.shape != b.shape:
            raise CompactionError(
                f"The compacted model's output {index} has shape {b.shape}, the masked "
                f"model's {a.shape}; nothing was returned. This is a compaction bug: export "
                "the ticket uncompacted (keras_lottery.export_tflite(ticket, ...)) and "
                "please report the model's layers."
            )
        error = float(np.abs(a - b).max()) if a.size else 0.0
        if not error <= tolerance * max(1.0, float(np.abs(a).max(initial=0.0))):
            raise CompactionError(
                f"The compacted model's output {index} differs from the masked "
                f"model's by {error:.3g} (tolerance {tolerance:g}); nothing was "
                "returned. This is a compaction bug: export the ticket uncompacted "
                "(keras_lottery.export_tflite(ticket, ...)) and please report the "
                "model's layers."
            )


def _layers(model):
    from keras_lottery.backend import layer_tree

    return [layer for layer, _ in layer_tree.walk(model)][1:]


def _width(tensor):
    return int(tensor.shape[-1])


def _channelwise_axis(op):
    if getattr(op, "data_format", "channels_last") == "channels_first":
        return False  # channels are not the last axis the plan slices
    axis = getattr(op, "axis", -1)
    if isinstance(axis, (list, tuple)):
        axis = axis[0] if len(axis) == 1 else None
    return axis in (-1, None) or (isinstance(axis, int) and axis > 0)


def _shrinkable(op):
    """A Dense or an ungrouped convolution: its units can go. A grouped
    convolution (ConvNeXt's depthwise `Conv2D(groups=C)`) ties its input and
    output channels in groups: it keeps all of them."""
    return isinstance(op, _DENSE + _CONV) and getattr(op, "groups", 1) == 1


def _last_axis_aligned(inputs, outs):
    return all(_width(t) == _width(outs[0]) for t in inputs)


def _activate(op, values):
    activation = getattr(op, "activation", None)
    values = np.asarray(values, np.float32)
    if activation is None:
        return values
    return np.asarray(ops.convert_to_numpy(activation(ops.convert_to_tensor(values))))


