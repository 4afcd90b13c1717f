"""Entry and exit: `wrap` a model for IMP, `strip` the wrappers off a ticket.

Both rebuild the model with `keras.models.clone_model` (recursing into nested
Sequential/functional models) and copy every weight over, so the result
computes exactly what the input computed.
"""

import keras
import numpy as np
from keras import ops

from keras_lottery import registry
from keras_lottery.wrapper import INIT, REWIND, LotteryWrapper


def wrap(model, exclude=None, snapshots_on_host=False):
    """Returns a copy of `model` whose prunable layers are `LotteryWrapper`s.

    The copy has the same weights as `model`; those become θ0 (the snapshot
    rewinding returns to). Works for Sequential and functional models and for
    models nested inside them. Subclassed models cannot be rebuilt: wrap their
    layers with `LotteryWrapper` in `__init__` instead.

    Args:
        model: a Sequential or functional `keras.Model`.
        exclude: layers to leave dense: a list of layer names, or a callable
            `layer -> bool` that returns True for layers to skip.
        snapshots_on_host: keep θ0/θk in host memory instead of as device
            variables (see `LotteryWrapper`).

    Returns:
        A new `keras.Model`.

    Example:
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4),
    ...                           keras.layers.Dense(2, name="out")])
    >>> wrapped = wrap(model, exclude=["out"])
    >>> [type(l).__name__ for l in wrapped.layers]
    ['LotteryWrapper', 'Dense']
    """
    _check_model(model, "wrap")
    if find_wrappers(model):
        raise ValueError(
            f"Model '{model.name}' already contains LotteryWrapper layers: "
            "wrap a model only once (call keras_lottery.strip(model) first "
            "to start over from its current weights)."
        )
    skip = _exclusion_predicate(model, exclude)
    pairs = []

    def clone_layer(layer):
        clone = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, clone))
        if registry.is_prunable(layer) and not skip(layer):
            return LotteryWrapper(clone, snapshots_on_host=snapshots_on_host)
        return clone

    new_model = _clone(model, clone_layer)
    _copy_weights(pairs)
    wrappers = find_wrappers(new_model)
    if not wrappers:
        raise ValueError(
            f"Model '{model.name}' has no prunable layers (after exclusions). "
            "keras_lottery prunes Dense, EinsumDense, Conv*, DepthwiseConv*, "
            "SeparableConv* and Embedding layers; register other layer types "
            "with keras_lottery.register_prunable()."
        )
    for wrapper in wrappers:
        if wrapper.built:
            # θ0 and θk are the model's weights as they were handed to us.
            wrapper.take_snapshot(INIT)
            wrapper.take_snapshot(REWIND)
    return new_model


def strip(model):
    """Returns a plain Keras model with the masked weights baked in.

    Every `LotteryWrapper` is replaced by the layer it wraps, holding
    `weights * mask`; the result's outputs equal the wrapped model's exactly
    and it carries no masks or snapshots (ready for `model.export`).

    Args:
        model: a built model that contains `LotteryWrapper` layers.

    Returns:
        A new `keras.Model`.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    >>> [type(l).__name__ for l in strip(model).layers]
    ['Dense']
    """
    _check_model(model, "strip")
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so it has no weights to "
            "strip. Build it first (call it on data or "
            "`model.build(input_shape)`)."
        )
    pairs = []

    def clone_layer(layer):
        source = layer.layer if isinstance(layer, LotteryWrapper) else layer
        clone = source.__class__.from_config(source.get_config())
        pairs.append((layer, clone))
        return clone

    new_model = _clone(model, clone_layer)
    for original, clone in pairs:
        if isinstance(original, LotteryWrapper):
            _copy_masked(original, clone)
        elif original.built:
            clone.set_weights(original.get_weights())
    return new_model


def find_wrappers(model):
    """All `LotteryWrapper` layers of `model`, nested models included, in
    model order.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)),
    ...                               keras.layers.Dense(2, name="fc")]))
    >>> [w.name for w in find_wrappers(model)]
    ['fc']
    """
    seen = set()
    wrappers = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, LotteryWrapper) and id(layer) not in seen:
            seen.add(id(layer))
            wrappers.append(layer)
    return wrappers


def _copy_masked(wrapper, clone):
    masks = {id(p.variable): p.mask for p in wrapper.prunable_weights}
    values = []
    for variable in wrapper.layer.weights:
        value = ops.convert_to_numpy(variable.value)
        if id(variable) in masks:
            mask = ops.convert_to_numpy(masks[id(variable)].value)
            value = value * mask.astype(value.dtype)
        values.append(value)
    clone.set_weights(values)


def _copy_weights(pairs):
    for original, clone in pairs:
        if not original.built:
            continue
        if not clone.built:
            raise ValueError(
                f"Layer '{original.name}' could not be rebuilt with its "
                "weights. Build the model on an input shape before wrapping."
            )
        clone.set_weights(original.get_weights())


def _clone(model, clone_layer):
    # Subclassed models never get here: _check_model refused them.
    return keras.models.clone_model(model, clone_function=clone_layer, recursive=True)


def _is_subclassed(model):
    return not isinstance(model, (keras.Sequential,)) and not _is_functional(model)


def _is_functional(model):
    return hasattr(model, "_operations") and hasattr(model, "_inputs_struct")


def _check_model(model, verb):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"keras_lottery.{verb} expects a keras.Model; received {model!r} "
            f"of type {type(model).__name__}. For a single layer use "
            "keras_lottery.LotteryWrapper(layer)."
        )
    if _is_subclassed(model):
        raise ValueError(
            f"keras_lottery.{verb} cannot rebuild the subclassed model "
            f"'{model.name}' ({type(model).__name__}). Wrap its prunable "
            "layers yourself in __init__, e.g. "
            "`self.fc = keras_lottery.LotteryWrapper(keras.layers.Dense(300))`; "
            "the IMP callback and sparsity_report work on such models "
            "unchanged."
        )


def _exclusion_predicate(model, exclude):
    if exclude is None:
        return lambda layer: False
    if callable(exclude):
        return exclude
    if isinstance(exclude, str):
        exclude = [exclude]
    names = set(exclude)
    known = {layer.name for layer in model._flatten_layers(include_self=False)}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(
            f"`exclude` names layers that model '{model.name}' does not have: "
            f"{unknown}. Its layers: {sorted(known)}."
        )
    return lambda layer: layer.name in names


def layer_masks(model):
    """`{"layer/weight": bool array}` for every wrapped weight of `model`.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)),
    ...                               keras.layers.Dense(2, name="fc")]))
    >>> sorted(layer_masks(model))
    ['fc/kernel']
    """
    masks = {}
    for wrapper in find_wrappers(model):
        for name, mask in wrapper.get_masks().items():
            masks[f"{wrapper.name}/{name}"] = mask
    return masks


def set_layer_masks(model, masks):
    """Assigns `{"layer/weight": bool array}` masks to a wrapped model.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)),
    ...                               keras.layers.Dense(2, name="fc")]))
    >>> set_layer_masks(model, {"fc/kernel": np.ones((3, 2), bool)})
    """
    by_layer = {}
    for key, mask in masks.items():
        layer_name, _, weight_name = key.rpartition("/")
        by_layer.setdefault(layer_name, {})[weight_name] = mask
    wrappers = {w.name: w for w in find_wrappers(model)}
    unknown = sorted(set(by_layer) - set(wrappers))
    if unknown:
        raise ValueError(
            f"Masks name layers the model has no wrapper for: {unknown}. "
            f"Wrapped layers: {sorted(wrappers)}."
        )
    for layer_name, layer_masks_ in by_layer.items():
        wrappers[layer_name].set_masks(layer_masks_)


def non_pruned_weights(model):
    """The model's weights that no wrapper prunes or holds (biases,
    normalisation parameters and statistics, unwrapped layers), in model order.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)),
    ...                               keras.layers.Dense(2, name="fc")]))
    >>> [v.name for v in non_pruned_weights(model)]
    ['bias']
    """
    excluded = set()
    for wrapper in find_wrappers(model):
        for p in wrapper.prunable_weights:
            excluded.update({id(p.variable), id(p.mask)})
            excluded.update(id(s) for s in p.snapshots.values())
    return [v for v in model.weights if id(v) not in excluded]
