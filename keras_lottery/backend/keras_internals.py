"""The one door to Keras internals: every private attribute and `keras.src`
import keras_lottery relies on is here, and nowhere else.

What keras_lottery needs that Keras 3 does not export:
- attaching lottery state to an already-built layer (Keras locks a layer's
  state after `build`; `Layer.quantize` unlocks it the same way);
- the layer tree in tracking order (`Layer._layers`);
- the functional graph (`KerasTensor._keras_history`, `Operation._inbound_nodes`)
  to find the layers that produce a model's outputs;
- the JAX backend's stateless scopes and train step: on JAX the optimizer
  applies constraints in a scope that holds only trainable and optimizer
  variables, so the mask of each pruned weight is handed in from the step's
  state (`install_jax_mask_feed`);
- optimizer slots (`Optimizer._variables`, `_iterations`, `_learning_rate`);
- `Trainer._symbolic_build`, what `fit` runs before its first step;
- a variable's sharding layout under `keras.distribution` (`Variable._layout`, which
  `add_weight` cannot set): the lottery arrays of a weight take its layout
  (`share_layout`);
- `MonitorCallback`, the base of Keras' own monitoring callbacks (not exported as
  `keras.callbacks.MonitorCallback` in Keras 3.15), and a `CallbackList` that says which
  callback stopped training.

Tests pin each of these to the installed Keras (tests/backend/test_keras_internals.py).
"""

import contextlib

import keras
import numpy as np
from keras.src.backend.common import global_state
from keras.src.backend.common.name_scope import current_path
from keras.src.backend.common.stateless_scope import get_stateless_scope
from keras.src.callbacks.monitor_callback import MonitorCallback  # noqa: F401
from keras.src.utils.python_utils import is_default  # noqa: F401

_FEED_ATTRIBUTE = "_keras_lottery_jax_mask_feed"


def is_jax():
    """Whether Keras runs on the JAX backend.

    Example:
    >>> is_jax() in (True, False)
    True
    """
    return keras.backend.backend() == "jax"


def current_value(variable):
    """The value a variable has right now: its traced value inside a
    stateless scope (None when the scope does not hold it), else its own.

    Example:
    >>> current_value(keras.Variable(1.0)) is not None
    True
    """
    scope = get_stateless_scope()
    if scope is None:
        return variable.value
    return scope.get_current_value(variable)


# ------------------------------------------------------------------ layers


def child_layers(layer):
    """The layers `layer` tracks directly, in tracking order (for a
    functional model: topological order).

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")])
    >>> [l.name for l in child_layers(model)]
    ['d']
    """
    return [child for child in layer._layers if not _is_input_layer(child)]


def own_variables(layer):
    """The variables a layer created itself (not its sublayers'), in
    creation order.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> [v.name for v in own_variables(dense)]
    ['kernel', 'bias']
    """
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def _is_input_layer(layer):
    return isinstance(layer, keras.layers.InputLayer)


def attach_sublayer(owner, attribute, sublayer):
    """Makes `sublayer` a tracked sublayer of the built layer `owner` under
    `attribute`: its variables join `owner.variables` (and so the model's,
    the JAX train state and `save_weights`), as `Layer.quantize` does.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> attach_sublayer(dense, "extra", keras.layers.Dense(1))
    >>> dense.extra in dense._layers
    True
    """
    locked = owner._tracker.locked
    owner._tracker.unlock()
    try:
        setattr(owner, attribute, sublayer)
    finally:
        if locked:
            owner._tracker.lock()


def detach_sublayer(owner, attribute):
    """Undoes `attach_sublayer` and returns the sublayer.

    Example:
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> attach_sublayer(dense, "extra", keras.layers.Dense(1))
    >>> detach_sublayer(dense, "extra").name.startswith("dense")
    True
    """
    sublayer = getattr(owner, attribute)
    locked = owner._tracker.locked
    owner._tracker.unlock()
    try:
        owner._layers[:] = [layer for layer in owner._layers if layer is not sublayer]
        delattr(owner, attribute)
    finally:
        if locked:
            owner._tracker.lock()
    return sublayer


def replace_sublayer(owner, old, new):
    """Puts `new` wherever the layer `owner` holds the sublayer `old` (an
    attribute, or an entry of a list or dict attribute), in `old`'s place in
    `owner`'s tracked layers: the weights keep their order.

    Returns:
        How many places held `old`.

    Example:
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a")])
    >>> replace_sublayer(model, model.layers[0], keras.layers.Dense(2, name="b"))
    0
    >>> block = keras.layers.Layer()
    >>> block.inner = keras.layers.Dense(2, name="a")
    >>> replace_sublayer(block, block.inner, keras.layers.Dense(2, name="b"))
    1
    >>> block.inner.name, [layer.name for layer in block._layers]
    ('b', ['b'])
    """
    places = 0
    for name, value in list(vars(owner).items()):
        # On torch, a Layer is a torch Module: sublayers live in `_modules`.
        if name.startswith("_") and name != "_modules":
            continue
        if value is old:
            object.__setattr__(owner, name, new)
            places += 1
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if item is old:
                    list.__setitem__(value, index, new)
                    places += 1
        elif isinstance(value, dict):
            for key, item in list(value.items()):
                if item is old:
                    dict.__setitem__(value, key, new)
                    places += 1
    if places and owner._tracker.is_in_store("layers", old):
        owner._tracker.replace_tracked_value("layers", old, new)
    return places


def check_distributed_like(model, reference, created):
    """Raises when `created` is a plain variable while `reference` (a variable
    of the same model) is replicated by a `tf.distribute` strategy: the
    lottery state was created outside `strategy.scope()`.

    Example:
    >>> check_distributed_like(None, keras.Variable(1.0), keras.Variable(2.0))
    """
    if _is_distributed(reference) and not _is_distributed(created):
        raise ValueError(
            f"The variables of model '{getattr(model, 'name', model)}' are replicated "
            "by a tf.distribute strategy, but keras_lottery.wrap ran outside "
            "its scope, so the masks would not be. Call keras_lottery.wrap "
            "(and compile) inside `with strategy.scope():`."
        )


def _is_distributed(variable):
    value = getattr(variable, "value", None)
    return type(value).__name__.startswith(("Mirrored", "SyncOnRead", "Distributed"))


def saved_state_count(path, attribute_prefix):
    """How many groups of a `.keras` (or `.weights.h5`) file's weights are
    saved under an attribute whose name starts with `attribute_prefix`
    (Keras stores a layer's attributes as groups of `model.weights.h5`).

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(path)
    >>> saved_state_count(path, "_lottery_")
    0
    """
    import io
    import zipfile

    import h5py

    def count(handle):
        found = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and name.rpartition("/")[2].startswith(attribute_prefix):
                found.append(name)

        handle.visititems(visit)
        return len(found)

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as handle:
                return count(handle)
    with h5py.File(path, "r") as handle:
        return count(handle)


def in_stateless_scope():
    """Whether code runs inside a `keras.StatelessScope` (a symbolic trace of
    a layer, or a JAX train step), where variables must not be read or made.

    Example:
    >>> in_stateless_scope()
    False
    """
    return get_stateless_scope() is not None


@contextlib.contextmanager
def scope_of_wrapped_layer(wrapper, inner):
    """Builds `inner` (the layer a wrapper of the same name holds) under the
    name scope it would have without the wrapper, so its variable paths do
    not repeat the name (`fc/kernel`, not `fc/fc/kernel`) whichever way the
    wrapper gets built (called, or rebuilt from a saved config).

    Example:
    >>> dense = keras.layers.Dense(2, name="fc")
    >>> with scope_of_wrapped_layer(None, dense):
    ...     dense.build((None, 3))
    >>> dense.kernel.path
    'fc/kernel'
    """
    stack = global_state.get_global_attribute("name_scope_stack") or []
    if stack and wrapper is not None and stack[-1].caller is wrapper:
        parent = current_path().rpartition("/")[0]
        with keras.name_scope(inner.name, caller=inner, override_parent=parent):
            yield
    else:
        yield


# ------------------------------------------------------------------- graph


def producers(tensor):
    """`(operation, input tensors)` of the node that produced a symbolic
    tensor, or `(None, [])` for a model input.

    Example:
    >>> x = keras.Input((2,))
    >>> op, inputs = producers(keras.layers.Dense(1, name="d")(x))
    >>> op.name, len(inputs)
    ('d', 1)
    """
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, []
    operation, node_index, _ = history
    if _is_input_layer(operation):
        return None, []
    node = operation._inbound_nodes[node_index]
    return operation, list(node.input_tensors)


def elementwise_merge_operations():
    """The `keras.ops` classes a functional graph records for `x + y`,
    `x - y`, `x * y`, `ops.maximum` and `ops.minimum`: merges of same-shaped
    tensors, like the `Add`... layers.

    Example:
    >>> x = keras.Input((3,))
    >>> model = keras.Model(x, x + x)
    >>> isinstance(graph_nodes(model)[0][0], elementwise_merge_operations())
    True
    """
    from keras.src.ops import numpy as knp

    return (knp.Add, knp.Subtract, knp.Multiply, knp.Maximum, knp.Minimum)


def graph_nodes(model):
    """`[(operation, input tensors, output tensors)]` of a functional (or
    built Sequential) model, in execution order, or None for a subclassed
    model.

    Example:
    >>> x = keras.Input((2,))
    >>> model = keras.Model(x, keras.layers.Dense(1, name="d")(x))
    >>> [op.name for op, _, _ in graph_nodes(model)]
    ['d']
    """
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        return None
    nodes = []
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            nodes.append((node.operation, list(node.input_tensors), list(node.outputs)))
    return nodes


def model_inputs(model):
    """The symbolic input tensors of a functional or Sequential model.

    Example:
    >>> len(model_inputs(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])))
    1
    """
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    return keras.tree.flatten(model.inputs) if model is not None else None


def model_outputs(model):
    """The symbolic outputs of a functional or Sequential model, or None for
    a subclassed model (which has no graph).

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> len(model_outputs(model))
    1
    """
    if isinstance(model, keras.Sequential):
        if not model.built or getattr(model, "_functional", None) is None:
            return None
        return keras.tree.flatten(model._functional.outputs)
    if hasattr(model, "_operations") and hasattr(model, "_outputs_struct"):
        return keras.tree.flatten(model.outputs)
    return None


def call_takes(layer, argument):
    """Whether `layer.call` accepts the keyword `argument` (or **kwargs).

    Example:
    >>> class Plain(keras.layers.Layer):
    ...     def call(self, x):
    ...         return x
    >>> call_takes(Plain(), "training"), call_takes(keras.layers.Dropout(0.5), "training")
    (False, True)
    """
    import inspect

    parameters = inspect.signature(layer.call).parameters.values()
    return any(p.name == argument or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def input_structure(model):
    """The model's symbolic inputs in the structure its call takes (a tensor,
    list or dict); for a subclassed model built on one float input, a
    symbolic tensor of the shape it was built with; else None.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> input_structure(model).shape
    (None, 2)
    """
    structure = getattr(model, "_inputs_struct", None)
    if structure is not None:
        return structure
    inputs = getattr(model, "inputs", None)
    if inputs:
        return inputs if len(inputs) > 1 else inputs[0]
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        (shape,) = shapes.values()
        if isinstance(shape, (tuple, list)) and all(
            d is None or isinstance(d, int) for d in shape
        ) and len(shape) >= 1:
            return keras.KerasTensor((None, *shape[1:]), dtype=keras.config.floatx())
    return None


def random_inputs(model, batch=8, seed=0):
    """Random inputs in the model's input structure: `batch` examples per
    input (normal floats; 0/1 for integer and bool inputs), or None for a
    subclassed model.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> random_inputs(model).shape
    (8, 2)
    """
    structure = input_structure(model)
    if structure is None:
        return None
    rng = np.random.default_rng(seed)

    def sample(spec):
        shape = tuple(batch if d is None else d for d in spec.shape)
        if "int" in str(spec.dtype) or "bool" in str(spec.dtype):
            return rng.integers(0, 2, size=shape).astype(spec.dtype)
        return rng.normal(size=shape).astype("float32")

    return keras.tree.map_structure(sample, structure)


# --------------------------------------------------------------- optimizers


def innermost_optimizer(optimizer):
    """The optimizer that owns the slots (inside a LossScaleOptimizer).

    Example:
    >>> opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
    >>> type(innermost_optimizer(opt)).__name__
    'SGD'
    """
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def optimizer_chain(optimizer):
    """`[optimizer, inner, ...]` down to the innermost optimizer.

    Example:
    >>> len(optimizer_chain(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())))
    2
    """
    chain = [optimizer]
    while hasattr(chain[-1], "inner_optimizer"):
        chain.append(chain[-1].inner_optimizer)
    return chain


def iterations_variable(optimizer):
    """The step counter variable of one optimizer of a chain.

    Example:
    >>> iterations_variable(keras.optimizers.SGD()).name
    'iteration'
    """
    return optimizer._iterations


def learning_rate_variable(optimizer):
    """The innermost optimizer's learning-rate variable, or None when the
    learning rate is a schedule (computed from the step counter).

    Example:
    >>> learning_rate_variable(keras.optimizers.SGD(0.1)).name
    'learning_rate'
    """
    value = getattr(innermost_optimizer(optimizer), "_learning_rate", None)
    return value if isinstance(value, keras.Variable) else None


def slot_variables(optimizer):
    """The optimizer state a rewind resets, in a fixed order: everything of
    the innermost optimizer but its step counter and learning rate (a
    LossScaleOptimizer keeps its loss scale).

    Example:
    >>> opt = keras.optimizers.SGD(0.1, momentum=0.9)
    >>> opt.build([keras.Variable([1.0, 2.0], name="w")])
    >>> [v.name for v in slot_variables(opt)]
    ['w_momentum']
    """
    inner = innermost_optimizer(optimizer)
    keep = {id(inner._iterations), id(getattr(inner, "_learning_rate", None))}
    return [v for v in inner._variables if id(v) not in keep]


def slots_of(optimizer, variable):
    """The slot variables the optimizer keeps for `variable` (Keras names a
    slot `<variable path with _>_<slot>` and gives it the variable's shape).

    Example:
    >>> w = keras.Variable([1.0, 2.0], name="w")
    >>> opt = keras.optimizers.Adam()
    >>> opt.build([w])
    >>> [v.name for v in slots_of(opt, w)]
    ['w_momentum', 'w_velocity']
    """
    prefixes = (
        variable.path.replace("/", "_") + "_",
        str(variable.name).replace("/", "_").replace(":", "_") + "_",
    )
    return [
        slot
        for slot in slot_variables(optimizer)
        if tuple(slot.shape) == tuple(variable.shape) and str(slot.name).startswith(prefixes)
    ]


def ema_targets(optimizer, trainable_variables):
    """`{id(average): variable}` of an optimizer with `use_ema=True`.

    Example:
    >>> ema_targets(keras.optimizers.SGD(), [])
    {}
    """
    inner = innermost_optimizer(optimizer)
    averages = getattr(inner, "_model_variables_moving_average", None)
    if not averages or trainable_variables is None:
        return {}
    return {
        id(average): variable
        for average, variable in zip(averages, getattr(inner, "_trainable_variables", []))
    }


# ---------------------------------------------------------------- callbacks


class StoppingCallbackList(keras.callbacks.CallbackList):
    """A `keras.callbacks.CallbackList` that says which of its callbacks
    asked training to stop at an epoch end: `stopped_by` is the class name of
    the first one that set `model.stop_training` (None if none did). The
    logs are handed on as they are (not copied), as `fit` hands them.

    Example:
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.stop_training = False
    >>> stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0)
    >>> callbacks = StoppingCallbackList([stop], model=model)
    >>> callbacks.on_train_begin()
    >>> callbacks.on_epoch_end(0, {"loss": 1.0}); callbacks.on_epoch_end(1, {"loss": 2.0})
    >>> callbacks.stopped_by
    'EarlyStopping'
    """

    stopped_by = None

    def on_epoch_end(self, epoch, logs=None):
        if self._async_train:
            self._flush_futures()
        self.stopped_by = None
        already = bool(self.model.stop_training)
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
            if self.stopped_by is None and not already and self.model.stop_training:
                self.stopped_by = type(callback).__name__


# ------------------------------------------------------------------ trainer


def symbolic_build(model, batch):
    """Creates every variable a train step needs (model, compiled loss and
    metrics, optimizer) from one batch's shapes and dtypes, without running
    it: what `fit` does before its first step.

    Example:
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> model.compile("adam", "mse")
    >>> symbolic_build(model, (np.ones((4, 3)), np.ones((4, 2))))
    >>> model.optimizer.built
    True
    """
    model._symbolic_build(data_batch=batch)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def share_layout(like, variables):
    """Gives `variables` the sharding layout `like` has under the active
    `keras.distribution` (a `LayoutMap` names the weight, not its mask, θ0
    and θk), and lays their values out by it; a no-op without a layout (no
    distribution, or a backend that has none).

    Example:
    >>> w = keras.Variable(np.zeros((2, 2)))
    >>> share_layout(w, [keras.Variable(np.ones((2, 2)))])
    """
    layout = getattr(like, "_layout", None)
    if layout is None:
        return
    for variable in variables:
        variable._layout = layout
        variable.assign(variable.value)  # re-placed by the layout


def sync_jax_state(model):
    """On JAX, writes the train loop's current state back into the model's
    variables (callbacks read stale values otherwise); a no-op elsewhere.

    Example:
    >>> sync_jax_state(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def install_jax_mask_feed(model, constraints):
    """On JAX, makes `model`'s train step hand each `MaskConstraint` the
    traced value of its mask from the step's state; a no-op elsewhere.

    The optimizer step of the JAX backend runs in a stateless scope holding
    only trainable and optimizer variables, so a constraint cannot read its
    mask variable there. The train step receives every non-trainable
    variable's value, masks included: the wrapped step sets each
    constraint's `traced_mask` from it for the duration of the step.

    Args:
        model: the model that will be trained.
        constraints: a callable returning the model's `MaskConstraint`s
            (called at trace time, so masks added later are fed too).

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> install_jax_mask_feed(model, lambda: [])
    """
    if not is_jax() or not isinstance(model, keras.Model):
        return
    feed = getattr(model, _FEED_ATTRIBUTE, None)
    if feed is not None:
        feed["constraints"] = constraints
        return
    feed = {"constraints": constraints}
    original = model.train_step

    def train_step(state, data):
        positions = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        fed = []
        for constraint in feed["constraints"]():
            index = positions.get(id(constraint.mask))
            if index is not None:
                constraint.traced_mask = state[1][index]
                fed.append(constraint)
        try:
            return original(state, data)
        finally:
            for constraint in fed:
                constraint.traced_mask = None

    object.__setattr__(model, _FEED_ATTRIBUTE, feed)
    object.__setattr__(model, "train_step", train_step)
    if getattr(model, "train_function", None) is not None:
        # Installed from a callback's `on_train_begin`: `fit` made its train
        # function from the old step already; make it again from this one.
        model.make_train_function(force=True)


def forget_compiled_functions(model):
    """Drops the model's traced train/test/predict functions so the next
    `fit`/`evaluate`/`predict` traces them again (e.g. after constraints were
    attached to its variables).

    Example:
    >>> forget_compiled_functions(keras.Sequential([keras.Input((2,))]))
    """
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
