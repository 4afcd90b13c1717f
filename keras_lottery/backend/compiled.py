"""Compiling an eager function of `keras.ops` and variable assignments, on
each Keras backend: a graph (`tf.function`) on TensorFlow, where every eager
op costs a Python dispatch; on JAX, given the variables it reads and
assigns, a `jax.jit` of it run statelessly (Keras' `StatelessScope`, as its
JAX trainer does) whose new values are assigned after the call, else the
function itself; on torch, the function with autograd off (it updates
state, nothing differentiates it).

Example:
>>> v = keras.Variable(np.ones(3, "float32"))
>>> scale = function(lambda factor: v.assign(v.value * factor), variables=[v])
>>> _ = scale(np.full(3, 2.0, "float32"))
>>> keras.ops.convert_to_numpy(v).tolist()
[2.0, 2.0, 2.0]
"""

import keras


def function(fn, variables=None):
    """`fn` compiled for the current backend where that pays (see the module
    docstring); call it with tensors or arrays of fixed shapes (arrays are
    converted to tensors before `fn` sees them).

    Args:
        fn: a function of tensors, written with `keras.ops`, that may read
            and assign Keras variables.
        variables: every variable `fn` reads or assigns. JAX compiles `fn`
            only when they are given (it must pass their values in and take
            the assigned ones out); the other backends do not need them.

    Example:
    >>> double = function(lambda x: x * 2)
    >>> float(keras.ops.convert_to_numpy(double(np.float32(1.5))))
    3.0
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415 (this backend only)

        run = tf.function(fn, reduce_retracing=True)
    elif backend == "torch":
        import torch  # noqa: PLC0415 (this backend only)

        run = torch.no_grad()(fn)  # state updates: nothing to differentiate
    elif backend == "jax" and variables is not None:
        run = _jax_stateless(fn, list(variables))
    else:
        run = fn
    # Arrays become tensors first: `fn` sees one kind of argument on every
    # backend (and on TensorFlow this costs a third of tf.function's own
    # handling of NumPy arguments).
    return lambda *args: run(*keras.tree.map_structure(keras.ops.convert_to_tensor, args))


def _jax_stateless(fn, variables):
    import jax  # noqa: PLC0415 (this backend only)

    @jax.jit
    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            outputs = fn(*args)
        current = [scope.get_current_value(v) for v in variables]
        # Known while tracing: the variables fn assigned hold new tracers.
        return outputs, {i: new for i, (new, old) in enumerate(zip(current, values))
                         if new is not old}

    def run(*args):
        outputs, assigned = pure([v.value for v in variables], *args)
        for index, value in assigned.items():
            variables[index].assign(value)
        return outputs

    return run
