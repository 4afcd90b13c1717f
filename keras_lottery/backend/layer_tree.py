"""A model's layers in model order, and the layers that produce its outputs.

`walk(model)` visits every layer at any depth once, parents before children,
in tracking order (for functional models: topological order), so "the last
layer" and "model order" mean what a reader of the model code expects.

`output_owners(model, owners)` finds, among the layers that own pruned
variables, those that produce the model's outputs: from the functional
graph where there is one (functional, Sequential and nested models, KerasHub
backbones), walking back from each output through layers without prunable
variables (activations, reshapes, pooling, merges) and into nested models;
for a subclassed model (no graph), from the order in which its layers run
on one eager forward pass.
"""

import warnings

import keras

from keras_lottery.backend import keras_internals


def walk(layer):
    """`[(layer, ancestors)]` for `layer` and every layer below it, each once,
    parents first, in tracking order. `ancestors` is the tuple of enclosing
    layers from the root down.

    Example:
    >>> inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="h")], name="head")
    >>> x = keras.Input((2,))
    >>> model = keras.Model(x, inner(keras.layers.Dense(2, name="stem")(x)))
    >>> [l.name for l, _ in walk(model)][1:]
    ['stem', 'head', 'h']
    """
    result = [(layer, ())]
    seen = {id(layer)}

    def visit(current, ancestors):
        for child in keras_internals.child_layers(current):
            if id(child) in seen:
                continue
            seen.add(id(child))
            result.append((child, ancestors))
            visit(child, ancestors + (child,))

    visit(layer, (layer,))
    return result


def output_owners(model, owners):
    """The layers among `owners` that produce `model`'s outputs.

    Args:
        model: a built model.
        owners: the layers that own pruned variables (any depth).

    Returns:
        A list of layers (a subset of `owners`, in model order).

    Example:
    >>> x = keras.Input((4,))
    >>> h = keras.layers.Dense(3, name="fc")(x)
    >>> y = keras.layers.Softmax()(keras.layers.Dense(2, name="out")(h))
    >>> model = keras.Model(x, y)
    >>> [l.name for l in output_owners(model, [model.get_layer("fc"), model.get_layer("out")])]
    ['out']
    """
    owners = list(owners)
    if not owners:
        return []
    found = _from_graph(model, owners)
    if found is None:
        found = _from_call_order(model, owners)
    order = {id(layer): i for i, layer in enumerate(owners)}
    unique = {id(layer): layer for layer in found if id(layer) in order}
    return sorted(unique.values(), key=lambda layer: order[id(layer)])


def _from_graph(model, owners):
    outputs = keras_internals.model_outputs(model)
    if outputs is None:
        return None
    owner_ids = {id(layer) for layer in owners}
    found = []
    seen = set()
    frontier = list(outputs)
    while frontier:
        tensor = frontier.pop(0)
        operation, inputs = keras_internals.producers(tensor)
        if operation is None or id(operation) in seen:
            continue
        seen.add(id(operation))
        if id(operation) in owner_ids:
            found.append(operation)
            continue
        inside = _owners_inside(operation, owners)
        if not inside:
            frontier.extend(inputs)
            continue
        if isinstance(operation, keras.Model):
            nested = _from_graph(operation, inside)
            if nested is None:
                nested = _from_call_order(operation, inside)
            if nested:
                found.extend(nested)
            else:
                frontier.extend(inputs)
        elif isinstance(operation, keras.layers.Bidirectional):
            for direction in (operation.forward_layer, operation.backward_layer):
                found.extend(_owners_inside(direction, owners)[-1:])
        else:
            # A layer with pruned sublayers and no graph (attention, RNN,
            # a transformer block): its last pruned sublayer makes the output.
            found.append(inside[-1])
    return found


def _owners_inside(layer, owners):
    """The `owners` at or below `layer`, in the order of `owners`."""
    ids = {id(l) for l, _ in walk(layer)}
    return [owner for owner in owners if id(owner) in ids]


def _from_call_order(model, owners):
    order = call_order(model, owners)
    if order:
        return [order[-1]]
    last = owners[-1]
    warnings.warn(
        f"keras_lottery cannot see which layer of the subclassed model "
        f"'{model.name}' produces its output (it has no functional graph and "
        f"could not be run on zeros to find out); it takes the last layer with "
        f"pruned weights in tracking order, '{last.name}'. Pass "
        "output_layers=[...] to choose.",
        stacklevel=3,
    )
    return [last]


def call_order(model, owners):
    """The `owners` in the order their `call` runs on one eager forward pass
    of `model` on zeros (a layer called twice counts at its last call), or
    None when the model's input shape is unknown or the pass fails.

    Example:
    >>> class Net(keras.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.out = keras.layers.Dense(2, name="out")
    ...         self.hidden = keras.layers.Dense(3, name="hidden")
    ...     def call(self, x):
    ...         return self.out(self.hidden(x))
    >>> net = Net()
    >>> _ = net(keras.ops.ones((1, 4)))
    >>> [l.name for l in call_order(net, [net.out, net.hidden])]
    ['hidden', 'out']
    """
    sample = _zeros_like_inputs(model)
    if sample is None:
        return None
    calls = []
    patched = []
    try:
        for owner in owners:
            original = owner.call

            def recording(*args, __owner=owner, __original=original, **kwargs):
                calls.append(__owner)
                return __original(*args, **kwargs)

            # An instance attribute shadows the method for this one pass; it
            # bypasses Keras' attribute tracking and is removed below.
            object.__setattr__(owner, "call", recording)
            patched.append(owner)
        model(sample)
    except Exception:  # noqa: BLE001 - any failure means "unknown order"
        return None
    finally:
        for owner in patched:
            object.__delattr__(owner, "call")
    last = {}
    for position, owner in enumerate(calls):
        last[id(owner)] = (position, owner)
    return [owner for _, owner in sorted(last.values(), key=lambda item: item[0])]


def _zeros_like_inputs(model):
    try:
        config = model.get_build_config() or {}
    except Exception:  # noqa: BLE001
        return None
    shapes = config.get("input_shape")
    if shapes is None and config.get("shapes_dict"):
        values = list(config["shapes_dict"].values())
        shapes = values[0] if len(values) == 1 else None
    if shapes is None:
        return None

    def zeros(shape):
        return keras.ops.zeros(tuple(1 if d is None else int(d) for d in shape))

    def is_shape(value):
        return isinstance(value, (list, tuple)) and all(
            d is None or isinstance(d, int) for d in value
        )

    if is_shape(shapes):
        return zeros(shapes)
    if isinstance(shapes, dict):
        return {k: zeros(v) for k, v in shapes.items()}
    if isinstance(shapes, (list, tuple)):
        return [zeros(s) for s in shapes]
    return None
