"""Entry and exit: `wrap` a model for pruning (in place), read and write its
masks, and `strip` a plain copy off it.

`wrap` finds every prunable variable of a model at any depth (see
`keras_lottery.core.registry`: kernels of Dense, EinsumDense, convolution and RNN
layers, embeddings; inside attention layers, transformer blocks, KerasHub
backbones, nested and subclassed models) and attaches lottery state next to
each (`keras_lottery.core.weight_state`). Nothing is rebuilt or cloned: the model
keeps its class, layers and weights, as with Keras' `model.quantize(...)`.
Mask keys are the weights' paths within the model (`keras_lottery.sparsity.masks`).
"""

import contextlib
import dataclasses

import keras
import numpy as np
from keras import ops

from keras_lottery.backend import keras_internals
from keras_lottery.backend import layer_tree
from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.core import registry
from keras_lottery.core import weight_state
from keras_lottery.core.mask_constraint import MaskConstraint
from keras_lottery.core.weight_state import WeightState


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """One pruned variable of a model and its lottery state.

    Attributes:
        key: the mask key (the weight's path within the model; see
            `keras_lottery.sparsity.masks`).
        variable: the `keras.Variable` itself.
        owner: the layer that owns it.
        state: its `WeightState` (`mask`, `snapshots`).

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> [(p.key, p.name, p.shape) for p in prunable_weights(model)]
    [('fc/kernel', 'kernel', (3, 2))]
    """

    key: str
    variable: object
    owner: object
    state: object

    @property
    def name(self):
        return registry.short_name(self.variable)

    @property
    def mask(self):
        return self.state.mask

    @property
    def snapshots(self):
        return self.state.snapshots

    @property
    def shape(self):
        return tuple(self.variable.shape)


def wrap(model, exclude=None, snapshots_on_host=False):
    """Makes every prunable variable of `model` prunable, in place.

    Each prunable variable gets a mask (all ones), θ0 and θk (both its current
    value) and a constraint that keeps its pruned entries at zero after every
    optimizer update. Variables that are already prunable (inside a
    `LotteryWrapper`) keep their state. Under `tf.distribute`, call it inside
    `strategy.scope()`. Calling it before or after `compile` both work.

    Args:
        model: a built `keras.Model` of any kind (Sequential, functional,
            nested, subclassed, KerasHub) or a built layer.
        exclude: what to leave dense: a pattern or list of patterns (a mask
            key, a layer name or path, or a glob, see
            `keras_lottery.sparsity.masks.matches`), or a callable `layer -> bool`
            that returns True for layers to skip (with all their sublayers).
        snapshots_on_host: keep θ0/θk in host memory instead of as device
            variables (see `keras_lottery.core.weight_state`).

    Returns:
        `model` itself.

    Example:
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc"),
    ...                           keras.layers.Dense(2, name="out")], name="net")
    >>> model = wrap(model, exclude=["out"])
    >>> [p.key for p in prunable_weights(model)]
    ['fc/kernel']
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"keras_lottery.wrap expects a keras.Model (or a layer); received "
            f"{model!r} of type {type(model).__name__}. For a layer you build "
            "yourself, use keras_lottery.LotteryWrapper(layer)."
        )
    _require_built(model, "wrap")
    candidates = _candidates(model)
    skip = _exclusion(model, exclude, candidates)
    chosen = [c for c in candidates if not skip(c)]
    if not chosen:
        raise ValueError(
            f"Model '{model.name}' has no prunable weights"
            f"{' left after exclude' if exclude is not None else ''}. keras_lottery "
            "prunes the kernels of Dense, EinsumDense, convolution and RNN "
            "layers and embeddings, at any depth; make other layers prunable "
            "with keras_lottery.register_prunable() or a get_prunable_weights() "
            "method."
        )
    for candidate in chosen:
        if weight_state.state_of(candidate.owner, candidate.variable) is None:
            with _name_scope(candidate.variable):
                state = weight_state.attach(
                    candidate.owner, candidate.variable, snapshots_on_host=snapshots_on_host
                )
            keras_internals.check_distributed_like(model, candidate.variable, state.mask)
    _entries(model)  # refuse ambiguous keys now, not at the first round end
    enable(model)
    return model


def enable(model):
    """Prepares `model` for training with masks on the current backend: on
    JAX its train step hands the masks to their constraints, and traced
    train functions are dropped so they trace again with the constraints.
    `wrap` and the keras_lottery callbacks call it; call it yourself only to
    train, on JAX and without a keras_lottery callback, a model whose layers
    you wrapped with `LotteryWrapper`.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="net"))
    >>> enable(model)
    """
    install_mask_feed(model)
    keras_internals.forget_compiled_functions(model)


def install_mask_feed(model):
    """Readies `model` (the model `fit` is called on) for training with
    masks: gives the `LotteryWrapper` layers that `fit`'s first build just
    built their state (a subclassed model never called before `fit`), and on
    JAX makes the train step hand the masks to their constraints. The
    keras_lottery callbacks call it in `on_train_begin`.

    Example:
    >>> install_mask_feed(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="net"))
    """
    unbuilt = []
    for layer, _ in layer_tree.walk(model):
        if getattr(layer, "is_lottery_wrapper", False):
            layer.attach_lottery_state()
            if not layer.layer.built:
                unbuilt.append(layer.name)
    if unbuilt:
        raise ValueError(
            f"Model '{model.name}' holds LotteryWrapper layers that are not built yet "
            f"({', '.join(unbuilt)}), so they have no masks to train with. On the "
            "TensorFlow backend `fit` builds a subclassed model inside its first step, "
            "after the callbacks start. Build it before `fit`: call it once on a batch "
            f"(`{model.name}(x[:1])`) or `{model.name}.build(input_shape)`."
        )
    keras_internals.install_jax_mask_feed(model, lambda: _constraints(model))


def prunable_weights(model):
    """The `PrunableWeight`s of a model (or layer), in model order.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> [p.key for p in prunable_weights(model)]
    ['fc/kernel']
    """
    return [
        PrunableWeight(key, entry.state.target, entry.owner, entry.state)
        for key, entry in _entries(model).items()
    ]


def has_lottery_state(model):
    """Whether any variable of `model` is prunable (was wrapped).

    Example:
    >>> has_lottery_state(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="net"))
    False
    """
    return any(isinstance(layer, WeightState) for layer, _ in layer_tree.walk(model))


def get_masks(model):
    """`{key: bool array}` of every pruned variable of `model`.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> {k: v.shape for k, v in get_masks(model).items()}
    {'fc/kernel': (3, 2)}
    """
    return {p.key: p.state.mask_array() for p in prunable_weights(model)}


def set_masks(model, masks):
    """Assigns masks (for some or all keys) and zeroes the weights they prune.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> set_masks(model, {"fc/kernel": np.zeros((3, 2), bool)})
    >>> float(np.abs(keras.ops.convert_to_numpy(model.layers[0].kernel)).sum())
    0.0
    """
    by_key = {p.key: p for p in prunable_weights(model)}
    unknown = sorted(set(masks) - set(by_key))
    if unknown:
        raise ValueError(
            f"Masks name weights that model '{model.name}' does not prune: "
            f"{unknown[:6]}. Its pruned weights: {list(by_key)[:12]}."
        )
    masks_lib.check(masks, {key: by_key[key].shape for key in masks})
    keras_internals.sync_jax_state(model)
    for key, mask in masks.items():
        p = by_key[key]
        p.state.mask.assign(np.asarray(mask, "float32"))
        values = ops.convert_to_numpy(p.variable.value)
        p.variable.assign(values * np.asarray(mask, values.dtype))


def read_weights(model):
    """`{key: array}`: the current values of the pruned variables.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> read_weights(model)["fc/kernel"].shape
    (3, 2)
    """
    keras_internals.sync_jax_state(model)
    return {p.key: ops.convert_to_numpy(p.variable.value) for p in prunable_weights(model)}


def non_pruned_weights(model):
    """The model's weights that are neither pruned nor lottery state (biases,
    normalisation parameters and statistics, excluded layers), in model
    order: what rewinding to θ0 resets besides the pruned weights.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> [v.path for v in non_pruned_weights(model)]
    ['net/fc/bias']
    """
    taken = set()
    for p in prunable_weights(model):
        taken.add(id(p.variable))
        taken.update(id(v) for v in p.state.variables)
    return [v for v in model.weights if id(v) not in taken]


def plain_weights(model):
    """`model.weights` without the lottery state: the weights a plain copy of
    the model has, in the same order (pruned weights hold zeros where their
    masks prune).

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="net"))
    >>> len(plain_weights(model)), len(model.weights)
    (2, 5)
    """
    state = set()
    for p in prunable_weights(model):
        state.update(id(v) for v in p.state.variables)
    return [v for v in model.weights if id(v) not in state]


def get_plain_weights(model):
    """The weights of a wrapped model as its plain twin holds them: NumPy
    arrays in the order of `plain.get_weights()` (pruned entries 0), for
    `plain.set_weights(...)`. `model.get_weights()` also returns the masks
    and θ0/θk, so the lists of a wrapped and a plain model differ.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="net"))
    >>> plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> plain.set_weights(get_plain_weights(model))
    >>> len(model.get_weights()), len(get_plain_weights(model))
    (5, 2)
    """
    _require_built(model, "get_plain_weights")
    keras_internals.sync_jax_state(model)
    return [ops.convert_to_numpy(v.value) for v in plain_weights(model)]


def set_plain_weights(model, weights):
    """Loads a plain model's weights (`plain.get_weights()`) into the
    wrapped `model`; the masks stay and prune the new values. θ0 is not
    touched: IMP takes it when it starts (load before `fit`).

    Example:
    >>> plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="net"))
    >>> set_plain_weights(model, plain.get_weights())
    """
    _require_built(model, "set_plain_weights")
    targets = plain_weights(model)
    weights = list(weights)
    if len(weights) != len(targets) or any(
        tuple(np.shape(w)) != tuple(t.shape) for w, t in zip(weights, targets)
    ):
        raise ValueError(
            f"set_plain_weights: model '{model.name}' takes {len(targets)} weights of shapes "
            f"{[tuple(t.shape) for t in targets][:6]}...; received {len(weights)} of shapes "
            f"{[tuple(np.shape(w)) for w in weights][:6]}... Pass plain.get_weights() of the "
            "same architecture."
        )
    masks = {id(p.variable): p.state.mask_array() for p in prunable_weights(model)}
    for target, value in zip(targets, weights):
        value = np.asarray(value)
        if id(target) in masks:
            value = value * masks[id(target)].astype(value.dtype)
        target.assign(value)


def strip(model, dtype=None):
    """A plain copy of `model`: same class, layers and weights, pruned weights
    baked in as zeros, no lottery state; its outputs equal the model's.

    The copy is rebuilt from the model's config, as Keras' `.keras` loading
    does: functional, Sequential, nested and KerasHub models always have one;
    a subclassed model needs `get_config` (Keras derives it when `__init__`
    takes only plain arguments). `LotteryWrapper` layers are replaced by the
    layers they wrap.

    Args:
        model: a built model, wrapped or not.
        dtype: None, or a dtype policy name every layer of the copy gets
            (e.g. "float32": a mixed-precision model becomes float32 for
            export).

    Returns:
        A new `keras.Model`.

    Example:
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="net"))
    >>> plain = strip(model)
    >>> has_lottery_state(plain), len(plain.weights)
    (False, 2)
    """
    _require_built(model, "strip")
    config = keras.saving.serialize_keras_object(model)
    config = _unwrap_config(config)
    if dtype is not None:
        config = _with_dtype_policy(config, dtype)
    # The classes of the model's own layers rebuild it even when they are not
    # registered as serializable (they are at hand: the model holds them).
    # Keras' own classes stay out: their names are not unique (`layers.Add`
    # and the `x + y` operation `ops.numpy.Add`), their configs say which.
    classes = {
        type(layer).__name__: type(layer)
        for layer, _ in layer_tree.walk(model)
        if not type(layer).__module__.startswith("keras.")
    }
    try:
        with keras.saving.custom_object_scope(classes):
            copy = keras.saving.deserialize_keras_object(config)
        if not copy.built:
            copy.build_from_config(model.get_build_config())
    except Exception as error:  # noqa: BLE001 - any failure to rebuild
        raise ValueError(
            f"keras_lottery.strip copies a model through its config, and model "
            f"'{model.name}' ({type(model).__name__}) cannot be rebuilt from it "
            f"({type(error).__name__}: {error}). Give the class that fails a "
            "get_config() that returns its __init__ arguments (Keras' `.keras` "
            "saving needs the same)."
        ) from error
    for p in prunable_weights(copy):  # LotteryWrappers a subclassed model re-creates
        weight_state.detach(p.owner, p.variable)
    _unwrap_wrapper_layers(copy)
    keras_internals.sync_jax_state(model)
    sources = plain_weights(model)
    targets = copy.weights
    if [tuple(v.shape) for v in targets] != [tuple(v.shape) for v in sources]:
        raise ValueError(
            f"The copy of model '{model.name}' has {len(targets)} weights, the "
            f"model {len(sources)} (or their shapes differ): its config does "
            "not rebuild the same model."
        )
    for target, source in zip(targets, sources):
        target.assign(ops.convert_to_numpy(source.value))
    return copy


def _unwrap_wrapper_layers(model):
    """Puts each `LotteryWrapper` that a subclassed model's `__init__`
    re-created in the copy back to the layer it wraps, where its owner holds
    it (config unwrapping cannot reach a subclassed model's attributes)."""
    for layer, ancestors in layer_tree.walk(model):
        if not getattr(layer, "is_lottery_wrapper", False) or not ancestors:
            continue
        if not keras_internals.replace_sublayer(ancestors[-1], layer, layer.layer):
            raise ValueError(
                f"keras_lottery.strip: '{ancestors[-1].name}' holds the LotteryWrapper "
                f"'{layer.name}' somewhere strip cannot reach (not an attribute, list "
                "or dict entry); hold it as an attribute, or strip the ticket by saving "
                "it with model.save and loading it with keras.models.load_model."
            )


def load_model(path, exclude=None, snapshots_on_host=False, **kwargs):
    """Loads a `.keras` file saved from a wrapped model, with its masks, θ0
    and θk.

    `keras.models.load_model` alone gives the plain model (its pruned weights
    are zeros, its lottery state is not rebuilt: Keras rebuilds layers from
    their configs). This loads it, wraps it again with the same options and
    reads the lottery state back from the file.

    Args:
        path: a `.keras` file written by `model.save` of a wrapped model.
        exclude, snapshots_on_host: as given to `wrap` when the model was
            wrapped.
        **kwargs: passed to `keras.models.load_model`.

    Returns:
        The wrapped model.

    Example:
    >>> import os, tempfile
    >>> model = wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")]))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> model.save(path)
    >>> [p.key for p in prunable_weights(load_model(path))]
    ['fc/kernel']
    """
    model = keras.models.load_model(path, **kwargs)
    if has_lottery_state(model):
        return model  # LotteryWrapper layers rebuilt their state already
    wrap(model, exclude=exclude, snapshots_on_host=snapshots_on_host)
    saved = keras_internals.saved_state_count(path, weight_state.ATTRIBUTE_PREFIX)
    try:
        if saved != len(prunable_weights(model)):
            raise ValueError(
                f"the file holds lottery state for {saved} weights, the model "
                f"prunes {len(prunable_weights(model))}"
            )
        model.load_weights(path)
    except Exception as error:  # noqa: BLE001 - Keras raises several types here
        raise ValueError(
            f"{path} does not hold the lottery state of model '{model.name}' as "
            f"wrapped now ({type(error).__name__}: {str(error)[:300]}). Was it "
            "saved from a wrapped model, with the same exclude= and "
            "snapshots_on_host=? A plain (or stripped) model's file loads with "
            "keras.models.load_model."
        ) from error
    return model


def output_keys(model, patterns=None):
    """The keys of the pruned weights that produce the model's outputs.

    Args:
        model: a wrapped model.
        patterns: layer names or key patterns naming the output layers
            (default: found from the model's graph, see
            `keras_lottery.backend.layer_tree.output_owners`).

    Example:
    >>> x = keras.Input((3,))
    >>> model = wrap(keras.Model(x, keras.layers.Dense(2, name="out")(
    ...     keras.layers.Dense(4, name="fc")(x))))
    >>> output_keys(model)
    ['out/kernel']
    """
    prunables = prunable_weights(model)
    if patterns is not None:
        chosen = set()
        for pattern in patterns:
            selected = [p.key for p in prunables
                        if masks_lib.matches(pattern, p.key) or p.owner.name == pattern]
            if not selected:
                raise ValueError(
                    f"output_layers names {pattern!r}, which selects none of the pruned "
                    f"weights {[p.key for p in prunables][:10]}."
                )
            chosen.update(selected)
        return [p.key for p in prunables if p.key in chosen]
    owners = []
    for p in prunables:
        if not any(p.owner is o for o in owners):
            owners.append(p.owner)
    outputs = layer_tree.output_owners(model, owners)
    return [p.key for p in prunables if any(p.owner is o for o in outputs)]


def prunable_candidates(model):
    """`[(key, variable, owner layer)]` of every variable `wrap` would make
    prunable (with or without lottery state), in model order.

    Example:
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net")
    >>> [key for key, _, _ in prunable_candidates(model)]
    ['fc/kernel']
    """
    return [(c.key, c.variable, c.owner) for c in _candidates(model)]


# ------------------------------------------------------------------ helpers


@dataclasses.dataclass(frozen=True)
class _Candidate:
    key: str
    owner: object
    ancestors: tuple
    variable: object


@dataclasses.dataclass(frozen=True)
class _Entry:
    owner: object
    state: object


def _require_built(model, verb):
    if not model.built:
        raise ValueError(
            f"keras_lottery.{verb}: model '{model.name}' is not built, so its "
            "weights do not exist yet. Give it an input shape first: start a "
            "Sequential with keras.Input(shape), call model.build(input_shape), "
            "or call the model on a batch."
        )


def _key(ancestors, owner, variable):
    """The weight's path within the model: the names of the layers that
    enclose it below the model itself (a `LotteryWrapper` is transparent),
    its owner's name and its own name."""
    enclosing = ancestors[1:] + (owner,) if ancestors else ()
    names = [layer.name for layer in enclosing if type(layer).__name__ != "LotteryWrapper"]
    return "/".join(names + [registry.short_name(variable)])


def _candidates(model):
    found, seen = [], set()
    for layer, ancestors in layer_tree.walk(model):
        if isinstance(layer, WeightState):
            continue
        for _, variable in registry.prunable_variables(layer):
            if id(variable) in seen:
                continue
            seen.add(id(variable))
            found.append(_Candidate(_key(ancestors, layer, variable), layer, ancestors, variable))
    _refuse_repeated_keys(model, [c.key for c in found])
    return found


def _entries(model):
    """`{key: _Entry}` of the model's lottery state, in model order."""
    found = []
    for layer, ancestors in layer_tree.walk(model):
        if isinstance(layer, WeightState):
            owner = ancestors[-1]
            found.append((_key(ancestors[:-1], owner, layer.target), owner, layer))
    _refuse_repeated_keys(model, [key for key, _, _ in found])
    return {key: _Entry(owner, state) for key, owner, state in found}


def _refuse_repeated_keys(model, keys):
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(
            f"Prunable weights of model '{model.name}' share the keys {repeated[:4]} "
            "(layers of the same name inside the same parent). Give those layers "
            "distinct names."
        )


def _exclusion(model, exclude, candidates):
    if exclude is None:
        return lambda candidate: False
    if callable(exclude):
        return lambda c: bool(exclude(c.owner)) or any(bool(exclude(a)) for a in c.ancestors[1:])
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(
                f"exclude takes layer names, paths or globs (strings) or a "
                f"callable; received {pattern!r}."
            )
        if not any(_excluded_by(pattern, c) for c in candidates):
            names = sorted({c.owner.name for c in candidates})
            raise ValueError(
                f"exclude={pattern!r} selects none of the prunable weights of model "
                f"'{model.name}'. Prunable weights: {[c.key for c in candidates][:10]} "
                f"(layers {names[:10]})."
            )
    return lambda c: any(_excluded_by(pattern, c) for pattern in patterns)


def _excluded_by(pattern, candidate):
    if masks_lib.matches(pattern, candidate.key):
        return True
    return any(layer.name == pattern for layer in candidate.ancestors[1:])


def _constraints(model):
    return [
        p.variable.constraint
        for p in prunable_weights(model)
        if isinstance(p.variable.constraint, MaskConstraint)
    ]


def _name_scope(variable):
    # The state's variables get paths next to the weight's:
    # "<layer path>/kernel_lottery/mask", whatever scopes are open.
    parent, _, last = masks_lib.layer_of(variable.path).rpartition("/")
    if not last:
        return contextlib.nullcontext()
    return keras.name_scope(last, override_parent=parent)


def _unwrap_config(config):
    if isinstance(config, list):
        return [_unwrap_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "LotteryWrapper" and isinstance(config.get("config"), dict):
        inner = dict(_unwrap_config(config["config"]["layer"]))
        for key in ("name", "inbound_nodes"):
            if key in config:
                inner[key] = config[key]
        return inner
    return {key: _unwrap_config(value) for key, value in config.items()}


def _with_dtype_policy(config, dtype):
    if isinstance(config, list):
        return [_with_dtype_policy(item, dtype) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
        return {**config, "config": {**config["config"], "name": dtype}}
    return {key: _with_dtype_policy(value, dtype) for key, value in config.items()}
