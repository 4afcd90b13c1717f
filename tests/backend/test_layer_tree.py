"""Model order and the layers that produce a model's outputs."""

import keras

from keras_lottery.backend import layer_tree
from keras_lottery.core import registry


def _owners(model):
    return [layer for layer, _ in layer_tree.walk(model) if registry.prunable_variables(layer)]


def test_walk_visits_parents_first_in_model_order():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="h1"),
                              keras.layers.Dense(5, name="h2"),
                              keras.layers.Dense(3, name="logits")], name="head")
    inputs = keras.Input((12,))
    model = keras.Model(inputs, inner(keras.layers.Dense(4, name="stem")(inputs)))
    assert [l.name for l in _owners(model)] == ["stem", "h1", "h2", "logits"]


def test_output_owner_behind_activations_and_merges():
    x = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")(x)
    b = keras.layers.Dense(3, name="b")(x)
    out = keras.layers.Softmax()(keras.layers.Add()([a, b]))
    model = keras.Model(x, out)
    assert [l.name for l in layer_tree.output_owners(model, _owners(model))] == ["a", "b"]


def test_output_owner_inside_an_attention_layer():
    x = keras.Input((5, 8))
    model = keras.Model(x, keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x))
    found = layer_tree.output_owners(model, _owners(model))
    assert [l.name for l in found] == ["attention_output"]


def test_output_owner_of_a_subclassed_model_from_its_call_order():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.last = keras.layers.Dense(2, name="last")  # created first
            self.first = keras.layers.Dense(3, name="first")

        def call(self, x):
            return self.last(self.first(x))

    net = Net()
    net(keras.ops.ones((1, 4)))
    owners = _owners(net)
    assert [l.name for l in owners] == ["last", "first"]
    assert [l.name for l in layer_tree.output_owners(net, owners)] == ["last"]
