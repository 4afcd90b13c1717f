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
import math
import numbers

import keras
import numpy as np

from keras_lottery.backend import keras_internals
from keras_lottery.backend import layer_tree


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


class InstabilityProbe:
    """How to measure instability where no one calls
    `linear_mode_connectivity` by hand: at the start of every IMP round
    (`IterativeMagnitudePruning(instability=probe)`) or at each rewind point
    of `instability_sweep`.

    Either pass `train(model, seed)`, your own training of one copy, or
    `train_data=(x, y)` with `epochs` (or `steps`): each copy then calls
    `model.fit` on it after `keras.utils.set_random_seed(seed)`, so the two
    copies see the data in different orders.

    Args:
        data: `(x, y)` the error is measured on (and BatchNorm re-estimated with).
        train: optional `train(model, seed)`.
        train_data: `(x, y)` for the default training (needed without `train`).
        epochs: epochs of the default training.
        steps: instead of `epochs`, iterations of the default training.
        batch_size: batch size of the default training and of evaluation.
        points, seeds: as for `linear_mode_connectivity`.

    Example:
    >>> x, y = np.eye(4, dtype="float32"), np.arange(4) % 2
    >>> probe = InstabilityProbe((x, y), train_data=(x, y), epochs=1)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> 0.0 <= probe.measure(model).barrier <= 1.0
    True
    """

    def __init__(self, data, train=None, train_data=None, epochs=1, steps=None,
                 batch_size=128, points=11, seeds=(0, 1)):
        if train is None and train_data is None:
            raise ValueError(
                "InstabilityProbe needs train(model, seed) or train_data=(x, y) to "
                "train its two copies: a callback does not see the data fit trains on.")
        if train is not None and not callable(train):
            raise TypeError(f"train must be callable as train(model, seed); received {train!r}.")
        for name, value in (("epochs", epochs), ("steps", steps), ("batch_size", batch_size)):
            if value is not None and (not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{name} must be a positive int; received {value!r}.")
        self.data, self.train_data = data, train_data
        self.epochs, self.steps, self.batch_size = epochs, steps, batch_size
        self.points, self.seeds = points, tuple(seeds)
        self._train = train

    def train(self, model, seed):
        """Trains one copy in place (the user's `train`, or `fit` on `train_data`)."""
        if self._train is not None:
            return self._train(model, seed)
        x, y = self.train_data
        keras.utils.set_random_seed(seed)
        if self.steps is None:
            model.fit(x, y, batch_size=self.batch_size, epochs=self.epochs, shuffle=True,
                      verbose=0)
            return
        rng = np.random.default_rng(seed)
        passes = math.ceil(self.steps * self.batch_size / len(x))
        index = np.concatenate([rng.permutation(len(x)) for _ in range(passes)])
        index = index[:self.steps * self.batch_size]
        model.fit(x[index], y[index], batch_size=self.batch_size, epochs=1, shuffle=False,
                  verbose=0)

    def measure(self, model):
        """`linear_mode_connectivity` of `model` from its current weights;
        the model's weights, optimizer state and metrics end as they were."""
        result = linear_mode_connectivity(model, self.train, self.data, points=self.points,
                                          seeds=self.seeds, batch_size=self.batch_size)
        model.reset_metrics()  # the copies' training left its metric totals behind
        return result


@dataclasses.dataclass(frozen=True)
class InstabilitySweep:
    """Barrier against rewind iteration k (`instability_sweep`).

    Attributes:
        steps: the rewind iterations k, increasing.
        barriers: the barrier from θk, one per k.
        threshold: the barrier below which a point counts as stable.
        earliest_stable: the first k whose barrier and every later one's are
            below `threshold`, or None.
        errors: per k, the error at each point of the path between the two
            copies (its ends are the copies' own errors: they show the copies
            trained).

    Example:
    >>> InstabilitySweep((0, 100), (0.3, 0.01), 0.02, 100).earliest_stable
    100
    """

    steps: tuple
    barriers: tuple
    threshold: float
    earliest_stable: object
    errors: tuple = ()


def instability_sweep(model, probe, steps, advance=None, threshold=0.02):
    """Measures the instability at several rewind points θk of one training
    run and suggests the earliest stable one (Frankle et al., ICML 2020:
    rewinding to a stable θk is what lets IMP find tickets in deep networks).

    From the model's current weights (θ0, masks included), the model is
    trained k iterations in one data order, `advance(model, from_step,
    to_step)` at a time; at each k the probe trains two copies from θk and
    measures the barrier. The model ends with its starting weights and
    optimizer state.

    Args:
        model: a compiled Keras model.
        probe: an `InstabilityProbe`.
        steps: rewind iterations k to measure (0 is θ0 itself).
        advance: `advance(model, from_step, to_step)` trains the model from
            iteration `from_step` to `to_step`; default: `fit` on the
            probe's `train_data`, taken in order from example
            `from_step * batch_size` on, wrapping around.
        threshold: barrier (error) under which θk counts as stable (Frankle
            et al. use 2%).

    Returns:
        An `InstabilitySweep`.

    Example:
    >>> x, y = np.eye(4, dtype="float32"), np.arange(4) % 2
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> probe = InstabilityProbe((x, y), train_data=(x, y), steps=2, batch_size=2)
    >>> instability_sweep(model, probe, steps=[0, 2]).steps
    (0, 2)
    """
    steps = tuple(sorted(int(k) for k in steps))
    if not steps or steps[0] < 0 or len(set(steps)) != len(steps):
        raise ValueError(f"steps must be distinct iterations >= 0; received {steps!r}.")
    if advance is None:
        if probe.train_data is None:
            raise ValueError("instability_sweep needs advance= or a probe with train_data.")
        advance = lambda m, start, stop: _advance_in_order(m, probe, start, stop)  # noqa: E731
    start = _weights(model)
    start_optimizer = _optimizer_values(model)
    barriers, errors, at = [], [], 0
    try:
        for k in steps:
            if k > at:
                advance(model, at, k)
                model.reset_metrics()
                at = k
            measured = probe.measure(model)
            barriers.append(measured.barrier)
            errors.append(tuple(measured.errors))
    finally:
        _set_weights(model, start)
        _set_optimizer_values(model, start_optimizer)
    stable = None
    for k, barrier in reversed(list(zip(steps, barriers))):
        if barrier >= threshold:
            break
        stable = k
    return InstabilitySweep(steps, tuple(barriers), float(threshold), stable, tuple(errors))


def _advance_in_order(model, probe, start, stop):
    x, y = probe.train_data
    size = probe.batch_size
    index = np.arange(start * size, stop * size) % len(x)
    model.fit(x[index], y[index], batch_size=size, epochs=1, shuffle=False, verbose=0)


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
