"""The one place keras_lottery touches Keras internals: stateless scopes and
the symbolic build of a compiled model.

On the JAX backend Keras trains statelessly: inside the compiled step,
variables are read from a `keras.StatelessScope` that maps them to traced
values, and the optimizer's own scope holds only trainable and optimizer
variables. Keras exports `StatelessScope` but not the accessor of the current
scope, so it is imported from `keras.src` here and nowhere else.
"""

import keras
from keras.src.backend.common.stateless_scope import get_stateless_scope


def is_jax():
    """Whether Keras runs on the JAX backend.

    Example:
    >>> is_jax() in (True, False)
    True
    """
    return keras.backend.backend() == "jax"


def current_scope():
    """The innermost active `keras.StatelessScope`, or None.

    Example:
    >>> current_scope() is None
    True
    """
    return get_stateless_scope()


def current_value(variable):
    """The value a variable has right now: its traced value inside a
    stateless scope (None if the scope does not hold it), else its own.

    Example:
    >>> current_value(keras.Variable(1.0)) is not None
    True
    """
    scope = get_stateless_scope()
    if scope is None:
        return variable.value
    return scope.get_current_value(variable)


def build_for_training(model, batch):
    """Creates every variable a train step needs (model, compiled loss and
    metrics, optimizer) from one batch's shapes, without running it; what
    `model.fit` does before its first step. Custom loops need it: a variable
    created inside a replicated `tf.function` is an error.

    Args:
        model: a compiled Keras model.
        batch: a batch `(x, y)` or `(x, y, sample_weight)`, or its specs
            (anything with `shape` and `dtype`, e.g. a dataset's
            `element_spec`): only shapes and dtypes are used.

    Example:
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> model.compile("adam", "mse", metrics=["mae"])
    >>> build_for_training(model, (np.ones((4, 3)), np.ones((4, 2))))
    >>> model.optimizer.built
    True
    """
    # Trainer._symbolic_build is what fit/evaluate call; Keras has no public
    # equivalent.
    model._symbolic_build(data_batch=batch)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
