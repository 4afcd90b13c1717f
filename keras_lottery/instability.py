"""Linear mode connectivity and instability (Frankle et al., ICML 2020).

From the model's current weights (θ0, or a rewind point θk, masks included),
two copies are trained with different data orders; the error is evaluated
along the straight line between the two trained networks. The *barrier* is
the largest error on the line above the mean of the two ends. A network is
"stable" at that point when the barrier is about 0: SGD noise no longer sends
the copies to different basins, which is when rewinding finds tickets.

`linear_mode_connectivity(model, train, data)` runs it; `train(model, seed)` is the
user's own training call (its `fit` with its data and epochs), run once per
copy from the same weights and optimizer state, with `seed` changing the data
order. BatchNorm statistics are re-estimated on `data` at every point of the
line (interpolated statistics belong to neither network).

Example:
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
>>> model.compile("sgd", "mse")
>>> x, y = np.eye(2, dtype="float32"), np.array([0, 1])
>>> result = linear_mode_connectivity(model, lambda m, seed: None, (x, y), points=3)
>>> result.barrier  # two identical copies: no barrier
0.0
"""

import dataclasses

import keras
import numpy as np

from keras_lottery import keras_internals
from keras_lottery import layer_tree


@dataclasses.dataclass(frozen=True)
class Instability:
    """The error along the line between two trained copies.

    Attributes:
        alphas: interpolation coefficients (0: copy A, 1: copy B).
        errors: classification error at each alpha.
        barrier: `max(errors) - mean(errors[0], errors[-1])`, >= 0.

    Example:
    >>> Instability(alphas=(0.0, 1.0), errors=(0.1, 0.1), barrier=0.0).barrier
    0.0
    """

    alphas: tuple
    errors: tuple
    barrier: float


def linear_mode_connectivity(model, train, data, points=11, seeds=(0, 1), batch_size=256,
                             evaluate=None):
    """Trains two copies of `model` from its current weights and measures
    the error barrier between them (see the module docstring). The model
    ends with its starting weights and optimizer state.

    Args:
        model: a compiled Keras model (wrapped or not).
        train: `train(model, seed)` trains the model in place (e.g. calls its
            `fit` after `keras.utils.set_random_seed(seed)`).
        data: `(x, y)` to evaluate on (and to re-estimate BatchNorm with).
        points: points on the line, ends included (>= 2).
        seeds: the two copies' seeds.
        batch_size: evaluation batch size.
        evaluate: optional `model -> error`; default the classification
            error (argmax of the outputs) on `data`.

    Returns:
        An `Instability`.

    Example:
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    >>> model.compile("sgd", "mse")
    >>> data = (np.eye(2, dtype="float32"), np.array([0, 1]))
    >>> len(linear_mode_connectivity(model, lambda m, seed: None, data, points=5).errors)
    5
    """
    if points < 2:
        raise ValueError(f"points must be >= 2; received {points}.")
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"seeds must be two different seeds; received {seeds!r}.")
    x, y = data
    evaluate = evaluate or (lambda m: _error(m, x, y, batch_size))
    start = _weights(model)
    start_optimizer = _optimizer_values(model)
    ends = []
    for seed in seeds:
        _set_weights(model, start)
        _set_optimizer_values(model, start_optimizer)
        train(model, seed)
        ends.append(_weights(model))
    alphas = tuple(float(a) for a in np.linspace(0.0, 1.0, points))
    errors = []
    has_batchnorm = _batchnorm_layers(model)
    for alpha in alphas:
        _set_weights(model, [(1 - alpha) * a + alpha * b for a, b in zip(*ends)])
        if has_batchnorm:
            reestimate_batchnorm(model, x, batch_size)
        errors.append(float(evaluate(model)))
    _set_weights(model, start)
    _set_optimizer_values(model, start_optimizer)
    barrier = max(0.0, max(errors) - 0.5 * (errors[0] + errors[-1]))
    return Instability(alphas=alphas, errors=tuple(errors), barrier=barrier)


def reestimate_batchnorm(model, x, batch_size=256):
    """Sets every BatchNormalization layer's moving statistics to the
    average of its batch statistics over `x` (a cumulative average: each
    batch weighs the same).

    Example:
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.BatchNormalization()])
    >>> reestimate_batchnorm(model, np.array([[1.0], [3.0]], "float32"))
    >>> float(keras.ops.convert_to_numpy(model.layers[0].moving_mean)[0])
    2.0
    """
    layers = _batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    try:
        for index, start in enumerate(range(0, len(x), batch_size)):
            for layer in layers:
                layer.momentum = index / (index + 1.0)
            model(x[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def _batchnorm_layers(model):
    return [layer for layer, _ in layer_tree.walk(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _weights(model):
    keras_internals.sync_jax_state(model)
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.variables]


def _set_weights(model, values):
    for variable, value in zip(model.variables, values):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def _optimizer_values(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in optimizer.variables]


def _set_optimizer_values(model, values):
    if values is None:
        return
    for variable, value in zip(model.optimizer.variables, values):
        variable.assign(value)


def _error(model, x, y, batch_size):
    outputs = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(outputs, axis=-1) != np.asarray(y)))
