"""A compiled function sees the variables' values at each call and its
assignments land, on every backend."""

import keras
import numpy as np
import pytest

from keras_lottery.backend import compiled


@pytest.mark.parametrize("declared", [False, True])  # JAX compiles only when declared
def test_a_compiled_function_reads_and_assigns_current_values(declared):
    v = keras.Variable(np.arange(4, dtype="float32"))
    w = keras.Variable(np.ones(4, "float32"))

    def step(keep):
        w.assign(w.value * keep + v.value)
        return keras.ops.sum(w.value)

    run = compiled.function(step, variables=[v, w] if declared else None)
    first = float(keras.ops.convert_to_numpy(run(np.array([1, 0, 1, 0], "float32"))))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), [1, 1, 3, 3])
    assert first == 8.0
    v.assign(np.full(4, 10.0, "float32"))  # changed outside: the next call reads it
    run(np.ones(4, "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), [11, 11, 13, 13])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), [10, 10, 10, 10])  # read only
