"""MaskConstraint: pruned weights stay exactly zero after every update, with
every optimizer Keras ships, inside multi-step and XLA train functions, under
mixed precision, composed with user constraints; its config round-trips."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mlp

LOGITS_LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _half_masks(model, seed=0):
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(m.shape) < 0.5 for k, m in kl.get_masks(model).items()}
    kl.set_masks(model, masks)
    return masks


def _assert_pruned_zero(model, masks):
    for p in kl.prunable_weights(model):
        values = keras.ops.convert_to_numpy(p.variable.value)
        assert np.all(values[~masks[p.key]] == 0.0), f"{p.key} regrew"
        # Survivors live on (FTRL's L1 and schedule-free AdamW may zero some
        # of them legitimately).
        assert np.count_nonzero(values[masks[p.key]]) > 0


class _CheckEveryBatch(keras.callbacks.Callback):
    def __init__(self, masks):
        super().__init__()
        self.masks = masks
        self.checks = 0

    def on_train_batch_end(self, batch, logs=None):
        sync = getattr(self.model, "jax_state_sync", None)
        if sync:
            sync()
        _assert_pruned_zero(self.model, self.masks)
        self.checks += 1


# Every gradient optimizer Keras ships (LossScaleOptimizer: the mixed
# precision test).
OPTIMIZERS = {
    "sgd_momentum": lambda: keras.optimizers.SGD(0.5, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(0.05),
    "adamw": lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.05, momentum=0.5),
    "adadelta": lambda: keras.optimizers.Adadelta(1.0),
    "adafactor": lambda: keras.optimizers.Adafactor(0.05),
    "adagrad": lambda: keras.optimizers.Adagrad(0.1),
    "adamax": lambda: keras.optimizers.Adamax(0.05),
    "ftrl": lambda: keras.optimizers.Ftrl(0.1, l1_regularization_strength=0.01),
    "lamb": lambda: keras.optimizers.Lamb(0.05),
    "lion": lambda: keras.optimizers.Lion(0.01),
    "muon": lambda: keras.optimizers.Muon(0.05),
    "nadam": lambda: keras.optimizers.Nadam(0.05),
    "schedule_free_adamw": lambda: keras.optimizers.ScheduleFreeAdamW(0.05),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_masks_hold_after_every_update(optimizer):
    model = kl.wrap(mlp())
    masks = _half_masks(model)
    model.compile(OPTIMIZERS[optimizer](), LOGITS_LOSS)
    x, y = classification_data()
    check = _CheckEveryBatch(masks)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[check])
    assert check.checks == 12


@pytest.mark.parametrize(
    "compile_kwargs",
    [{"steps_per_execution": 4}, {"jit_compile": True}, {"steps_per_execution": 3, "jit_compile": True}],
    ids=["spe4", "jit", "spe3_jit"],
)
def test_masks_hold_inside_multi_step_and_jit(compile_kwargs):
    if keras.backend.backend() == "torch":
        pytest.skip("Keras' torch backend needs steps_per_execution=1 and "
                    "compiles through torch.compile, not XLA")
    model = kl.wrap(mlp())
    masks = _half_masks(model)
    model.compile(keras.optimizers.Adam(0.05), LOGITS_LOSS, **compile_kwargs)
    x, y = classification_data(n=100)
    # 100/8 = 13 steps: with steps_per_execution 3 or 4 the last block is
    # partial; only a mask applied inside every step keeps all of them at 0.
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    _assert_pruned_zero(model, masks)


def test_masks_hold_with_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = kl.wrap(mlp())
    masks = _half_masks(model)
    model.compile(keras.optimizers.Adam(0.05), LOGITS_LOSS)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = classification_data()
    check = _CheckEveryBatch(masks)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[check])
    assert check.checks == 6


def test_user_constraint_still_applies():
    inputs = keras.Input((12,))
    outputs = keras.layers.Dense(4, kernel_constraint=keras.constraints.NonNeg(), name="fc")(inputs)
    model = kl.wrap(keras.Model(inputs, outputs))
    masks = _half_masks(model)
    model.compile(keras.optimizers.SGD(1.0), "mse")
    x, _ = classification_data()
    model.fit(x, np.random.normal(size=(96, 4)), epochs=2, verbose=0)
    kernel = keras.ops.convert_to_numpy(model.get_layer("fc").kernel)
    assert kernel.min() >= 0.0
    assert np.all(kernel[~masks["fc/kernel"]] == 0.0)
    # The layer's own config still holds the user's constraint, not the mask.
    assert model.get_layer("fc").get_config()["kernel_constraint"]["class_name"] == "NonNeg"


def test_config_round_trips_the_inner_constraint():
    constraint = kl.MaskConstraint(keras.Variable([1.0, 0.0]), keras.constraints.NonNeg())
    rebuilt = kl.MaskConstraint.from_config(constraint.get_config())
    assert isinstance(rebuilt.inner, keras.constraints.NonNeg) and rebuilt.mask is None
    with pytest.raises(ValueError, match="no mask variable"):
        rebuilt(keras.ops.ones((2,)))


def test_missing_jax_feed_is_a_clear_error():
    if keras.backend.backend() != "jax":
        pytest.skip("only the JAX backend needs the mask feed")
    def build():
        inputs = keras.Input((12,))
        model = keras.Model(inputs, kl.LotteryWrapper(keras.layers.Dense(3))(inputs))
        model.compile("sgd", "mse")
        return model

    x, _ = classification_data()
    with pytest.raises(RuntimeError, match="keras_lottery.enable"):
        build().fit(x, np.zeros((96, 3)), epochs=1, verbose=0)
    model = build()
    kl.enable(model)
    model.fit(x, np.zeros((96, 3)), epochs=1, verbose=0)
