"""Compiling an eager function of `keras.ops` and variable assignments, on
each Keras backend: a graph (`tf.function`) on TensorFlow, where every eager
op costs a Python dispatch; the function itself on JAX (its eager ops are
cheap, and `jax.jit` cannot assign variables); on torch, the function with
autograd off (it updates state, nothing differentiates it).

Example:
>>> v = keras.Variable(np.ones(3, "float32"))
>>> scale = function(lambda factor: v.assign(v.value * factor))
>>> _ = scale(np.full(3, 2.0, "float32"))
>>> keras.ops.convert_to_numpy(v).tolist()
[2.0, 2.0, 2.0]
"""

import keras


def function(fn):
    """`fn` compiled for the current backend where that pays (see the module
    docstring); call it with tensors or arrays of fixed shapes (arrays are
    converted to tensors before `fn` sees them).

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
    else:
        run = fn
    # Arrays become tensors first: `fn` sees one kind of argument on every
    # backend (and on TensorFlow this costs a third of tf.function's own
    # handling of NumPy arguments).
    return lambda *args: run(*keras.tree.map_structure(keras.ops.convert_to_tensor, args))
