"""The one door to Keras internals: each accessor still works on the
installed Keras (an upgrade that moves one fails here, by name)."""

import keras
import numpy as np
import pytest

from keras_lottery.backend import keras_internals


def test_attach_and_detach_a_sublayer_of_a_built_layer():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    extra = keras.layers.Dense(1)
    extra.build((None, 1))
    keras_internals.attach_sublayer(dense, "extra", extra)
    assert any(v is extra.kernel for v in dense.variables)
    assert keras_internals.detach_sublayer(dense, "extra") is extra
    assert not any(v is extra.kernel for v in dense.variables)


def test_own_variables_and_child_layers_in_tracking_order():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"),
                              keras.layers.Dense(1, name="b")])
    assert [l.name for l in keras_internals.child_layers(model)] == ["a", "b"]
    assert [v.name for v in keras_internals.own_variables(model.layers[0])] == ["kernel", "bias"]


def test_graph_accessors():
    x = keras.Input((3,), name="x")
    y = keras.layers.Dense(2, name="d")(x)
    model = keras.Model(x, y)
    op, inputs = keras_internals.producers(keras_internals.model_outputs(model)[0])
    assert op.name == "d" and len(inputs) == 1
    assert keras_internals.producers(inputs[0]) == (None, [])
    assert keras_internals.input_structure(model).name == "x"

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert keras_internals.model_outputs(Sub()) is None


def test_optimizer_accessors():
    w = keras.Variable(np.ones(3), name="w")
    opt = keras.optimizers.Adam(0.01)
    opt.build([w])
    assert keras_internals.iterations_variable(opt).name == "iteration"
    assert keras_internals.learning_rate_variable(opt).name == "learning_rate"
    assert [v.name for v in keras_internals.slots_of(opt, w)] == ["w_momentum", "w_velocity"]
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1, momentum=0.9))
    assert type(keras_internals.innermost_optimizer(scaled)).__name__ == "SGD"
    assert keras_internals.learning_rate_variable(
        keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5))) is None


def test_monitor_callback_is_keras_own_and_the_list_names_who_stopped():
    assert keras_internals.MonitorCallback in keras.callbacks.EarlyStopping.__mro__
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False
    quiet = keras.callbacks.History()
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0)
    callbacks = keras_internals.StoppingCallbackList([quiet, stop], model=model)
    callbacks.on_train_begin()
    callbacks.on_epoch_end(0, {"loss": 1.0})
    assert callbacks.stopped_by is None and not model.stop_training
    callbacks.on_epoch_end(1, {"loss": 2.0})
    assert callbacks.stopped_by == "EarlyStopping" and model.stop_training
    # A stop asked before the list ran is not its callbacks'.
    callbacks.on_epoch_end(2, {"loss": 3.0})
    assert callbacks.stopped_by is None


def test_scope_of_a_wrapped_layer_keeps_its_path():
    dense = keras.layers.Dense(2, name="fc")
    with keras_internals.scope_of_wrapped_layer(None, dense):
        dense.build((None, 3))
    assert dense.kernel.path == "fc/kernel"


def test_stateless_scope_detection():
    assert not keras_internals.in_stateless_scope()
    with keras.StatelessScope():
        assert keras_internals.in_stateless_scope()


def test_saved_state_count(tmp_path):
    import keras_lottery as kl

    model = kl.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert keras_internals.saved_state_count(path, "_lottery_") == 1


def test_random_inputs_follow_the_input_structure_and_dtypes():
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), dtype="int32", name="b")
    out = keras.layers.Concatenate()([a, keras.ops.cast(b, "float32")])
    model = keras.Model({"a": a, "b": b}, out)
    x = keras_internals.random_inputs(model, batch=5)
    assert set(x) == {"a", "b"} and x["a"].shape == (5, 3) and x["b"].shape == (5, 2)
    assert x["b"].dtype == np.int32 and set(np.unique(x["b"])) <= {0, 1}

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert keras_internals.random_inputs(Subclassed()) is None
