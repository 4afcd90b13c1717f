"""Model families the entry-point matrix runs every public entry point on.

Each family builds a fresh model (same seed, same weights) and the data to
train it: a Sequential MLP; a CNN with `Conv2D(activation="relu")` ->
BatchNormalization and Dropout; LSTM and GRU models; a dict-input
transformer built from a KerasHub GPT-2 config; a nested model; a subclassed
model holding `LotteryWrapper` layers; a model with two outputs.
"""

import dataclasses

import keras
import numpy as np

import keras_lottery as kl

CLASSES = 3
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@dataclasses.dataclass
class Family:
    """A family: `build()` -> a fresh wrapped model; `x`, `y` its data."""

    name: str
    build: object
    x: object
    y: object
    losses: object = LOSS

    def compiled(self, **kwargs):
        """A fresh model, compiled; `run_eagerly=True` skips tracing the train
        step (most of a short fit's time)."""
        model = self.build()
        model.compile(keras.optimizers.Adam(0.01), self.losses, **kwargs)
        return model

    def head(self, count=8):
        """The first `count` examples of x, in x's structure."""
        return keras.tree.map_structure(lambda a: a[:count], self.x)


def _labels(n=64, seed=0):
    return np.random.default_rng(seed).integers(0, CLASSES, n).astype("int32")


def _seeded(fn):
    def build():
        keras.utils.set_random_seed(7)
        return fn()

    return build


def mlp():
    x = np.random.default_rng(0).normal(size=(64, 12)).astype("float32")
    return Family("mlp", _seeded(lambda: kl.wrap(keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(16, activation="relu", name="fc0"),
        keras.layers.Dense(8, activation="relu", name="fc1"),
        keras.layers.Dense(CLASSES, name="out"),
    ], name="mlp"))), x, _labels())


def cnn():
    def build():
        inputs = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
        h = keras.layers.BatchNormalization(name="bn1")(h)
        h = keras.layers.Dropout(0.2)(h)
        h = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(h)
        h = keras.layers.BatchNormalization(name="bn2")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return kl.wrap(keras.Model(inputs, keras.layers.Dense(CLASSES, name="out")(h), name="cnn"))

    x = np.random.default_rng(0).random((64, 8, 8, 3)).astype("float32")
    return Family("cnn", _seeded(build), x, _labels())


def recurrent(cell):
    def build():
        inputs = keras.Input((6, 4))
        h = getattr(keras.layers, cell)(8, name=cell.lower())(inputs)
        return kl.wrap(keras.Model(inputs, keras.layers.Dense(CLASSES, name="out")(h),
                                   name=cell.lower() + "_net"))

    x = np.random.default_rng(0).normal(size=(64, 6, 4)).astype("float32")
    return Family(cell.lower(), _seeded(build), x, _labels())


def hub_transformer():
    """A GPT-2 backbone built from config (random weights, no download) under
    a pooling head: dict inputs `token_ids` and `padding_mask`."""
    import keras_hub

    def build():
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=32, num_layers=1, num_heads=2, hidden_dim=8,
            intermediate_dim=16, max_sequence_length=8)
        inputs = {name: keras.Input((8,), dtype="int32", name=name)
                  for name in ("token_ids", "padding_mask")}
        h = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
        return kl.wrap(keras.Model(inputs, keras.layers.Dense(CLASSES, name="out")(h),
                                   name="hub"))

    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 32, (64, 8)).astype("int32"),
         "padding_mask": np.ones((64, 8), "int32")}
    return Family("hub", _seeded(build), x, _labels())


def nested():
    def build():
        inner = keras.Sequential([keras.Input((12,)),
                                  keras.layers.Dense(16, activation="relu", name="inner_fc")],
                                 name="block")
        inputs = keras.Input((12,))
        h = keras.layers.Dense(8, activation="relu", name="fc")(inner(inputs))
        return kl.wrap(keras.Model(inputs, keras.layers.Dense(CLASSES, name="out")(h),
                                   name="nested"))

    x = np.random.default_rng(0).normal(size=(64, 12)).astype("float32")
    return Family("nested", _seeded(build), x, _labels())


@keras.saving.register_keras_serializable(package="keras_lottery_tests")
class WrappedInInit(keras.Model):
    """README's pattern: LotteryWrapper layers made in `__init__`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = kl.LotteryWrapper(keras.layers.Dense(16, activation="relu", name="hidden"))
        self.head = kl.LotteryWrapper(keras.layers.Dense(CLASSES, name="head"))

    def call(self, x):
        return self.head(self.hidden(x))


def subclassed():
    def build():
        model = WrappedInInit(name="subclassed")
        model(np.zeros((1, 12), "float32"))  # TF's fit cannot build it (see test_wrapper)
        kl.enable(model)  # README: on JAX, for a fit without a keras_lottery callback
        return model

    x = np.random.default_rng(0).normal(size=(64, 12)).astype("float32")
    return Family("subclassed", _seeded(build), x, _labels())


def two_outputs():
    def build():
        inputs = keras.Input((12,))
        h = keras.layers.Dense(16, activation="relu", name="trunk")(inputs)
        a = keras.layers.Dense(CLASSES, name="class_out")(h)
        b = keras.layers.Dense(1, name="value_out")(h)
        return kl.wrap(keras.Model(inputs, {"class_out": a, "value_out": b}, name="two"))

    x = np.random.default_rng(0).normal(size=(64, 12)).astype("float32")
    y = {"class_out": _labels(), "value_out": x[:, :1].copy()}
    return Family("two_outputs", _seeded(build), x, y,
                  losses={"class_out": LOSS, "value_out": "mse"})


FAMILIES = {
    "mlp": mlp,
    "cnn": cnn,
    "lstm": lambda: recurrent("LSTM"),
    "gru": lambda: recurrent("GRU"),
    "hub": hub_transformer,
    "nested": nested,
    "subclassed": subclassed,
    "two_outputs": two_outputs,
}
