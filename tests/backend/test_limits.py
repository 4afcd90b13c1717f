"""Known Keras limits, checked up front."""

import keras
import pytest

from keras_lottery.backend import limits


def test_strategy_problem_names_each_limit():
    assert limits.strategy_problem(1, 10, True) is None
    assert limits.strategy_problem(2, 1, False) is None
    message = limits.strategy_problem(4, 8, True)
    assert "steps_per_execution=8" in message and "jit_compile=True" in message
    assert "keras-team/keras#19246" in message


def test_check_model_without_a_strategy():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", steps_per_execution=4)
    limits.check_model(model)  # one replica: nothing to refuse


def test_check_model_refuses_under_a_strategy():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute")
    from conftest import mirrored_strategy

    with mirrored_strategy(2).scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse", jit_compile=True)
    with pytest.raises(ValueError, match="jit_compile=True"):
        limits.check_model(model)
