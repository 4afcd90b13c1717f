"""Loss gradients of a wrapped model's pruned weights, averaged over a few
batches: what the gradient-based scorers (SNIP, GraSP) and RigL's growth
read.

`loss_of(model, loss)` resolves the loss the way Keras would (the compiled
loss, per-output losses summed with their `loss_weights`, or sparse
categorical cross-entropy from logits); `loss_gradients` / `mean_gradients`
average d loss / d weight over batches; `hessian_gradient` is Hg by double
backprop; `compiled_loss_gradients` traces one batch's gradient once, for
loops that call it often.

Example:
>>> model = keras_lottery.wrap(keras.Sequential(
...     [keras.Input((2,)), keras.layers.Dense(2, name="fc")]))
>>> loss_gradients(model, (np.ones((4, 2), "float32"), np.zeros(4)))["fc/kernel"].shape
(2, 2)
"""

import keras

from keras_lottery.backend import gradients
from keras_lottery.core import wrapping


def batches(data):
    """`data` as a list of `(x, y)` batches: one `(x, y)` tuple, or an
    iterable of them.

    Example:
    >>> len(batches((np.ones((2, 1)), np.ones(2))))
    1
    """
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        return [data]
    return list(data)


def loss_gradients(model, data, loss=None):
    """`{key: mean over data's batches of d loss / d weight}` for every pruned
    weight, at the model's current weights (dense: pruned entries included).

    Args:
        model: a wrapped model.
        data: one `(x, y)` batch or a list of them.
        loss: `(y_true, y_pred) -> scalar`; default the compiled loss.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="fc")]))
    >>> loss_gradients(model, (np.ones((4, 2), "float32"), np.zeros(4)))["fc/kernel"].shape
    (2, 2)
    """
    return mean_gradients(model, data, loss_of(model, loss))


def compiled_loss_gradients(model, loss=None):
    """A compiled `(x, y) -> {key: d loss / d weight}` for every pruned
    weight of `model`, at its weights when called: `loss_gradients` of one
    batch, traced once for loops that call it often (RigL's updates).

    Args:
        model: a wrapped model.
        loss: `(y_true, y_pred) -> scalar`; default the compiled loss.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="fc")]))
    >>> grad = compiled_loss_gradients(model)
    >>> grad(np.ones((4, 2), "float32"), np.zeros(4, "int32"))["fc/kernel"].shape
    (2, 2)
    """
    prunables = wrapping.prunable_weights(model)
    compute = gradients.compiled_weight_gradients(
        model, [p.variable for p in prunables], loss_of(model, loss))
    return lambda x, y: dict(zip((p.key for p in prunables), compute(x, y)))


def loss_of(model, loss):
    """`(y_true, y_pred) -> scalar`: `loss`, or the model's compiled loss (a
    dict or list of per-output losses is summed with the compiled
    `loss_weights`), or sparse categorical cross-entropy from logits."""
    weights = None
    if loss is None:
        loss = getattr(model, "loss", None)
        config = model.get_compile_config() if getattr(model, "compiled", False) else None
        weights = (config or {}).get("loss_weights")
    if loss is None:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if not isinstance(loss, (list, tuple, dict)):
        return _scalar(loss)
    return _structured_loss(model, loss, weights)


def _scalar(loss):
    """A loss (object, name or function) as `(y_true, y_pred) -> scalar`:
    `keras.losses.get("mse")` is a per-example function (JAX's grad needs a
    scalar; a tape would silently sum)."""
    fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    if isinstance(fn, keras.losses.Loss):
        return fn
    return lambda y_true, y_pred: keras.ops.mean(fn(y_true, y_pred))


def _structured_loss(model, losses, weights):
    """The sum over a multi-output model's outputs of each output's loss."""
    names = list(getattr(model, "output_names", None) or [])
    if isinstance(losses, dict):
        per_output = {name: _scalar(fn) for name, fn in losses.items() if fn is not None}
    else:
        per_output = {i: _scalar(fn) for i, fn in enumerate(losses) if fn is not None}
    if isinstance(weights, dict):
        factor = {k: float(weights.get(k, 1.0)) for k in per_output}
    elif isinstance(weights, (list, tuple)):
        factor = {k: float(weights[k if isinstance(k, int) else names.index(k)]) for k in per_output}
    else:
        factor = {k: 1.0 for k in per_output}

    def pick(structure, key):
        if isinstance(structure, dict):
            return structure[key if not isinstance(key, int) else names[key]]
        flat = keras.tree.flatten(structure)
        return flat[key if isinstance(key, int) else names.index(key)]

    def total(y_true, y_pred):
        return sum(factor[k] * fn(pick(y_true, k), pick(y_pred, k)) for k, fn in per_output.items())

    return total


def mean_gradients(model, data, loss):
    """`{key: mean over data's batches of d loss / d weight}` (`loss` a
    `(y_true, y_pred) -> scalar`, see `loss_of`)."""
    return _batch_mean(model, data, loss, gradients.weight_gradients)


def hessian_gradient(model, data, loss):
    """`{key: Hg}`, g the mean gradient over `data`: double backprop per batch."""
    g = mean_gradients(model, data, loss)
    return _batch_mean(
        model, data, loss,
        lambda model, variables, fn, x: gradients.hessian_vector_product(
            model, variables, fn, x, [g[key] for key in g]),
    )


def _batch_mean(model, data, loss, compute):
    """`{key: mean over data's batches of compute(model, variables, fn, x)}`
    for the prunable variables, `fn` the batch's loss of the outputs."""
    prunables = wrapping.prunable_weights(model)
    chunks = batches(data)
    total = None
    for x, y in chunks:
        y = keras.tree.map_structure(keras.ops.convert_to_tensor, y)
        results = compute(model, [p.variable for p in prunables], lambda out, y=y: loss(y, out), x)
        total = results if total is None else [t + r for t, r in zip(total, results)]
    return {p.key: t / len(chunks) for p, t in zip(prunables, total)}
