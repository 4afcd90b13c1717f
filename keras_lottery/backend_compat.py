"""The one place keras_lottery touches Keras internals: stateless scopes.

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
