"""Gradients of a scalar function of a model's outputs with respect to some
of its weights, on each Keras backend.

Keras 3 has no backend-neutral `grad`: its trainers each use their backend's
own (`tf.GradientTape`, `jax.grad` over `stateless_call`, torch autograd).
The scores that rank weights by gradients (SNIP, GraSP, SynFlow in
`keras_lottery.methods.init_pruning`) need exactly one thing from them, which this
module provides for all three; nothing else in the package takes gradients.

Example:
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
>>> _ = model.layers[0].kernel.assign(np.array([[2.0], [3.0]], "float32"))
>>> x = np.array([[1.0, 10.0]], "float32")
>>> grads = weight_gradients(model, [model.layers[0].kernel], keras.ops.sum, x)
>>> grads[0].ravel().tolist()
[1.0, 10.0]
"""

import keras
import numpy as np

from keras_lottery.backend import compiled
from keras_lottery.backend import keras_internals


def weight_gradients(model, variables, fn, inputs):
    """`d fn(model(inputs, training=False)) / d variable` for each variable.

    Args:
        model: a built Keras model.
        variables: trainable variables of `model` (its weights to score).
        fn: `outputs -> scalar tensor`, written with `keras.ops`.
        inputs: the model's inputs (arrays or tensors).

    Returns:
        A list of NumPy arrays, one per variable (zeros where the scalar does
        not depend on it).

    Raises:
        ValueError: a variable is not trainable (the JAX path differentiates
            the trainable variables only).
        NotImplementedError: another backend than tensorflow, jax, torch.
    """
    variables = list(variables)
    grads = _per_backend(
        "weight_gradients", {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch},
        model, variables, fn, inputs,
    )
    return _as_arrays(variables, grads)


def hessian_vector_product(model, variables, fn, inputs, vector):
    """`H v` for the Hessian H of `fn(model(inputs, training=False))` with
    respect to `variables` (the others held fixed), by double backprop.

    Args:
        model, variables, fn, inputs: as for `weight_gradients`.
        vector: one array per variable.

    Returns:
        A list of NumPy arrays, one per variable.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    >>> kernel = model.layers[0].kernel
    >>> x = np.array([[1.0, 2.0]], "float32")  # fn = (x w)^2: H = 2 x^T x
    >>> hv = hessian_vector_product(model, [kernel], lambda out: keras.ops.sum(out ** 2), x,
    ...                             [np.array([[1.0], [0.0]], "float32")])
    >>> hv[0].ravel().tolist()
    [2.0, 4.0]
    """
    vector = [np.asarray(v, "float32") for v in vector]
    variables = list(variables)
    products = _per_backend(
        "hessian_vector_product",
        {"tensorflow": _tensorflow_hvp, "jax": _jax_hvp, "torch": _torch_hvp},
        model, variables, fn, inputs, vector,
    )
    return _as_arrays(variables, products)


def _per_backend(what, implementations, model, variables, *args):
    """Runs the current backend's implementation on trainable `variables`."""
    frozen = [v.path for v in variables if not v.trainable]
    if frozen:
        raise ValueError(
            f"{what} differentiates trainable variables; {frozen} are not "
            "trainable (set layer.trainable = True while scoring)."
        )
    backend = keras.backend.backend()
    if backend not in implementations:
        raise NotImplementedError(f"{what} has no {backend!r} implementation.")
    return implementations[backend](model, variables, *args)


def _as_arrays(variables, results):
    """float32 NumPy arrays, zeros where a variable got no result (None)."""
    return [
        np.zeros(tuple(v.shape), "float32") if r is None else np.asarray(
            keras.ops.convert_to_numpy(r), "float32")
        for v, r in zip(variables, results)
    ]


def _inference(model):
    """`training=False` for `stateless_call`, which passes its keyword
    arguments to `call` as they are: a subclassed model's `call` may not take
    `training` (`Layer.__call__` checks; `stateless_call` does not)."""
    return {"training": False} if keras_internals.call_takes(model, "training") else {}


def _tensorflow_hvp(model, variables, fn, inputs, vector):
    import tensorflow as tf  # noqa: PLC0415 (this backend only)

    values = [v.value for v in variables]
    with tf.GradientTape() as outer:
        outer.watch(values)
        with tf.GradientTape() as inner:
            inner.watch(values)
            scalar = fn(model(inputs, training=False))
        # An embedding's gradient is an IndexedSlices: densify it to take the dot.
        grads = [None if g is None else tf.convert_to_tensor(g)
                 for g in inner.gradient(scalar, values)]
        dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vector) if g is not None])
    return [None if g is None else tf.convert_to_tensor(g) for g in outer.gradient(dot, values)]


def _jax_hvp(model, variables, fn, inputs, vector):
    import jax  # noqa: PLC0415 (this backend only)

    trainable = model.trainable_variables
    position = {id(v): i for i, v in enumerate(trainable)}
    non_trainable = [v.value for v in model.non_trainable_variables]

    def scalar(trainable_values):
        outputs, _ = model.stateless_call(
            trainable_values, non_trainable, inputs, **_inference(model)
        )
        return fn(outputs)

    primal = [v.value for v in trainable]
    tangent = [jax.numpy.zeros_like(p) for p in primal]
    for variable, direction in zip(variables, vector):
        tangent[position[id(variable)]] = jax.numpy.asarray(direction)
    _, products = jax.jvp(jax.grad(scalar), (primal,), (tangent,))
    return [products[position[id(v)]] for v in variables]


def _torch_hvp(model, variables, fn, inputs, vector):
    import torch  # noqa: PLC0415 (this backend only)

    values = [v.value for v in variables]
    with torch.enable_grad():
        inputs = keras.tree.map_structure(keras.ops.convert_to_tensor, inputs)
        scalar = fn(model(inputs, training=False))
        grads = torch.autograd.grad(scalar, values, create_graph=True, allow_unused=True)
        dot = sum((g * torch.as_tensor(v, device=g.device)).sum()
                  for g, v in zip(grads, vector) if g is not None)
        return torch.autograd.grad(dot, values, allow_unused=True)


def _tensorflow(model, variables, fn, inputs):
    import tensorflow as tf  # noqa: PLC0415 (this backend only)

    with tf.GradientTape() as tape:
        values = [v.value for v in variables]
        tape.watch(values)
        scalar = fn(model(inputs, training=False))
    return tape.gradient(scalar, values)


def _jax(model, variables, fn, inputs):
    import jax  # noqa: PLC0415 (this backend only)

    trainable = model.trainable_variables
    position = _positions_in(model, variables)
    non_trainable = [v.value for v in model.non_trainable_variables]

    def scalar(trainable_values):
        outputs, _ = model.stateless_call(
            trainable_values, non_trainable, inputs, **_inference(model)
        )
        return fn(outputs)

    grads = jax.grad(scalar)([v.value for v in trainable])
    return [grads[position[id(v)]] for v in variables]


def _positions_in(model, variables):
    """`{id(variable): index in model.trainable_variables}` (JAX differentiates
    that list); refuses variables outside it."""
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    missing = [v.path for v in variables if id(v) not in position]
    if missing:
        raise ValueError(f"{missing} are not trainable variables of '{model.name}'.")
    return position


def _torch(model, variables, fn, inputs):
    import torch  # noqa: PLC0415 (this backend only)

    values = [v.value for v in variables]
    with torch.enable_grad():
        inputs = keras.tree.map_structure(keras.ops.convert_to_tensor, inputs)
        scalar = fn(model(inputs, training=False))
        return torch.autograd.grad(scalar, values, allow_unused=True)


def compiled_weight_gradients(model, variables, fn):
    """A compiled `(inputs, targets) -> [NumPy gradient per variable]` of
    `fn(targets, model(inputs, training=False))`: `weight_gradients` traced
    once (`tf.function`, `jax.jit`; eager on torch) for a loop that asks for
    the gradient of a new batch many times (RigL's updates).

    Args:
        model: a built Keras model.
        variables: trainable variables of `model`.
        fn: `(targets, outputs) -> scalar tensor`, written with `keras.ops`
            (a Keras loss).

    Returns:
        A callable `(inputs, targets)`; it reads the variables' current values
        at each call (on JAX: the model's variables, so sync the train loop's
        state into them first).

    Raises:
        ValueError, NotImplementedError: as `weight_gradients`.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    >>> _ = model.layers[0].kernel.assign(np.array([[2.0], [3.0]], "float32"))
    >>> grad = compiled_weight_gradients(model, [model.layers[0].kernel],
    ...                                  lambda y, out: keras.ops.sum(out * y))
    >>> grad(np.array([[1.0, 10.0]], "float32"), np.ones((1, 1), "float32"))[0].ravel().tolist()
    [1.0, 10.0]
    """
    variables = list(variables)
    compute = _per_backend(
        "compiled_weight_gradients",
        {"tensorflow": _tensorflow_compiled, "jax": _jax_compiled, "torch": _torch_compiled},
        model, variables, fn,
    )
    return lambda inputs, targets: _as_arrays(variables, compute(inputs, targets))


def _tensorflow_compiled(model, variables, fn):
    import tensorflow as tf  # noqa: PLC0415 (this backend only)

    @compiled.function
    def compute(inputs, targets):
        with tf.GradientTape() as tape:
            values = [v.value for v in variables]
            tape.watch(values)
            scalar = fn(targets, model(inputs, training=False))
        grads = tape.gradient(scalar, values)
        return [tf.zeros_like(v) if g is None else g for v, g in zip(values, grads)]

    return compute


def _jax_compiled(model, variables, fn):
    import jax  # noqa: PLC0415 (this backend only)

    trainable = model.trainable_variables
    position = _positions_in(model, variables)
    wanted = [position[id(v)] for v in variables]

    def scalar(trainable_values, non_trainable_values, inputs, targets):
        outputs, _ = model.stateless_call(
            trainable_values, non_trainable_values, inputs, **_inference(model)
        )
        return fn(targets, outputs)

    @jax.jit
    def grad(*args):
        grads = jax.grad(scalar)(*args)
        return [grads[i] for i in wanted]

    def compute(inputs, targets):
        return grad([v.value for v in trainable],
                    [v.value for v in model.non_trainable_variables], inputs, targets)

    return compute


def _torch_compiled(model, variables, fn):
    return lambda inputs, targets: _torch(
        model, variables,
        lambda outputs: fn(keras.tree.map_structure(keras.ops.convert_to_tensor, targets), outputs),
        inputs)
