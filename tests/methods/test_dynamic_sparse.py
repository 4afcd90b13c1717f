"""Dynamic sparse training: exact density, disjoint drop/grow, grown weights
at 0 with reset slots, RigL's growth by gradient, cosine decay, masks held
under steps_per_execution and XLA."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.methods import loss_gradients
from keras_lottery.sparsity import budgets as budgets_lib
from conftest import classification_data
from conftest import mlp


def _model(**compile_kwargs):
    keras.utils.set_random_seed(0)
    model = kl.wrap(mlp())
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_kwargs)
    return model


def _sparse_start(model, x, y, method, epochs=1, **kwargs):
    """Trains `model` sparse for a few steps with fixed masks (`static`: a fit
    shorter than one update of a moving method is refused), then returns a
    `method` callback serving it, for updates called by hand."""
    static = kl.DynamicSparseTraining("static", density=kwargs.get("density", 0.3),
                                      distribution=kwargs.get("distribution", "erk"), verbose=0)
    model.fit(x, y, batch_size=16, epochs=epochs, callbacks=[static], verbose=0)
    dst = kl.DynamicSparseTraining(method, verbose=0, **kwargs)
    dst.set_model(model)
    return dst


def _counts(model):
    return {key: int(mask.sum()) for key, mask in kl.get_masks(model).items()}


def _slots(model, key):
    p = next(p for p in kl.prunable_weights(model) if p.key == key)
    from keras_lottery.backend import keras_internals
    return [keras.ops.convert_to_numpy(s.value) for s in
            keras_internals.slots_of(model.optimizer, p.variable)]


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_updates_keep_every_count_and_move_disjoint_sets(method):
    x, y = classification_data()
    model = _model()
    dst = kl.DynamicSparseTraining(method, density=0.3, distribution="erk", update_every=4,
                                   data=(x, y), batch_size=16, verbose=0)
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[dst], verbose=0)  # 12 steps, end at 9
    start = _counts(model)
    shapes = {p.key: tuple(p.shape) for p in kl.prunable_weights(model)}
    budgets = budgets_lib.budgets(shapes, 0.3, "erk")
    for key, count in start.items():
        assert count == round((1 - budgets[key]) * np.prod(shapes[key]))
    assert kl.masks.density(kl.get_masks(model)) == pytest.approx(0.3, abs=0.01)
    assert [u["step"] for u in dst.updates] == [4, 8]
    assert dst.updates[0]["moved"] > 0  # at step 8 the cosine has nearly reached 0
    before = kl.get_masks(model)
    moves = dst.update(step=1)
    after = kl.get_masks(model)
    assert _counts(model) == start
    for key, (dropped, grown) in moves.items():
        assert not (dropped & grown).any()
        assert before[key][dropped].all() and not before[key][grown].any()
        np.testing.assert_array_equal(after[key], (before[key] & ~dropped) | grown)


def test_grown_connections_start_at_zero_with_no_momentum():
    x, y = classification_data()
    model = _model()
    dst = _sparse_start(model, x, y, "rigl", epochs=2, density=0.3, data=(x, y), batch_size=32)
    moves = dst.update(step=1)
    for p in kl.prunable_weights(model):
        dropped, grown = moves[p.key]
        assert grown.any()
        value = keras.ops.convert_to_numpy(p.variable.value)
        assert (value[grown] == 0).all() and (value[dropped] == 0).all()
        kept = kl.get_masks(model)[p.key] & ~grown
        for slot in _slots(model, p.key):
            assert (slot[grown] == 0).all()
            assert np.abs(slot[kept]).sum() > 0  # the survivors keep theirs


def test_an_update_after_recompiling_resets_the_new_optimizers_slots():
    """The compiled read/write serve one optimizer: a new one gets its own."""
    from keras_lottery.backend import keras_internals

    x, y = classification_data()
    model = _model()
    dst = _sparse_start(model, x, y, "set", density=0.3)
    dst.update(step=1)  # compiled for the first optimizer
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for slot in keras_internals.slot_variables(model.optimizer):
        slot.assign(np.ones(slot.shape, slot.dtype))
    moves = dst.update(step=1)
    for p in kl.prunable_weights(model):
        grown = moves[p.key][1]
        assert grown.any()
        for slot in _slots(model, p.key):
            assert (slot[grown] == 0).all() and (slot[~grown] == 1).all()


def test_rigl_grows_the_largest_gradients_and_drops_the_smallest_weights():
    x, y = classification_data()
    model = _model()
    dst = _sparse_start(model, x, y, "rigl", density=0.3, data=(x, y), batch_size=32,
                        drop_fraction=0.5, distribution="uniform")
    masks = kl.get_masks(model)
    weights = kl.core.wrapping.read_weights(model)
    grads = loss_gradients.loss_gradients(model, (x[:32], y[:32]))  # its next batch
    dst.end_step = 10**6
    moves = dst.update(step=0)
    for key, (dropped, grown) in moves.items():
        count = int(round(0.5 * masks[key].sum()))
        assert dropped.sum() == grown.sum() == min(count, (~masks[key]).sum())
        if not dropped.any():
            continue  # ERK kept this small tensor dense: nothing free to grow into
        assert np.abs(weights[key][dropped]).max() <= np.abs(weights[key][masks[key] & ~dropped]).min()
        rest = ~masks[key] & ~grown
        if rest.any():  # else every free entry grew
            assert np.abs(grads[key][grown]).min() >= np.abs(grads[key][rest]).max()


def test_cosine_decay_and_end_step():
    dst = kl.DynamicSparseTraining("set", drop_fraction=0.4, end_step=100)
    assert [dst.drop_fraction_at(s) for s in (0, 50, 100, 150)] == [0.4, 0.2, 0.0, 0.0]
    x, y = classification_data()
    model = _model()
    dst = kl.DynamicSparseTraining("set", density=0.3, update_every=2, end_step=6, verbose=0)
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[dst], verbose=0)  # 12 steps
    assert [u["step"] for u in dst.updates] == [2, 4]
    default = kl.DynamicSparseTraining("set", density=0.3, update_every=2, verbose=0)
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[default], verbose=0)
    assert default.end_step == int(0.75 * (12 + 12))  # a later fit: all steps so far count
    assert [u["step"] for u in default.updates] == [14, 16]
    # A later fit of 2 steps: updates stop at 3/4 of 26, before the one due at 26.
    with pytest.raises(ValueError, match="due at step 26.*end_step=19"):
        model.fit(x[:32], y[:32], batch_size=16, epochs=1, callbacks=[default], verbose=0)


def test_static_never_moves_and_masks_hold_under_steps_per_execution_and_xla():
    x, y = classification_data()
    for method in ("static", "rigl"):
        torch = keras.backend.backend() == "torch"  # Keras: torch runs one step per call
        compile_kwargs = {"steps_per_execution": 1 if torch else 2}
        if not torch:
            compile_kwargs["jit_compile"] = True
        model = _model(**compile_kwargs)
        dst = kl.DynamicSparseTraining(method, density=0.2, update_every=3, data=(x, y),
                                       batch_size=16, verbose=0)
        model.fit(x, y, batch_size=8, epochs=2, callbacks=[dst], verbose=0)
        masks = kl.get_masks(model)
        for key, value in kl.core.wrapping.read_weights(model).items():
            assert (value[~masks[key]] == 0).all(), key
        assert kl.masks.density(masks) == pytest.approx(0.2, abs=0.01)
        if method == "static":
            assert dst.updates == []
        else:  # batch ends every 2 steps: updates at the first end at or after 3, 6, 9
            expected = [3, 6, 9] if torch else [4, 6, 10]
            assert [u["step"] for u in dst.updates][:3] == expected


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        kl.DynamicSparseTraining("snip")
    with pytest.raises(ValueError, match="density"):
        kl.DynamicSparseTraining("set", density=1.0)
    with pytest.raises(ValueError, match="data"):
        kl.DynamicSparseTraining("rigl")
    with pytest.raises(ValueError, match="update_every"):
        kl.DynamicSparseTraining("set", update_every=0)
    with pytest.raises(ValueError, match="distribution"):
        kl.DynamicSparseTraining("set", distribution="normal")


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_a_fit_too_short_for_one_update_is_refused_with_the_numbers(method):
    x, y = classification_data()
    model = _model()
    masks = kl.get_masks(model)
    dst = kl.DynamicSparseTraining(method, density=0.3, update_every=100, data=(x, y), verbose=0)
    # 2 epochs of 6 steps: updates would stop at step 9, the first is due at 100.
    with pytest.raises(ValueError, match=r"no update in this fit.*12 steps.*step 100.*"
                                         r"end_step=9.*update_every <= 8"):
        model.fit(x, y, batch_size=16, epochs=2, callbacks=[dst], verbose=0)
    static = kl.DynamicSparseTraining("static", density=0.3, update_every=100, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[static], verbose=0)  # static: no refusal
    assert kl.masks.density(kl.get_masks(model)) == pytest.approx(0.3, abs=0.01)
    assert set(masks) == set(kl.get_masks(model))


def test_a_fit_of_unknown_length_without_an_update_warns():
    x, y = classification_data()
    model = _model()

    def batches():  # a generator: fit does not know the step count up front
        for start in range(0, 64, 16):
            yield x[start:start + 16], y[start:start + 16]

    dst = kl.DynamicSparseTraining("set", density=0.3, update_every=50, verbose=0)
    with pytest.warns(UserWarning, match=r"made no update in this fit \(update_every=50"):
        model.fit(batches(), epochs=1, callbacks=[dst], verbose=0)
    assert dst.updates == []


@pytest.mark.parametrize("structure", ["dict", "list"])
def test_rigl_on_a_model_with_several_named_inputs(structure):
    """Dict inputs (every KerasHub model) and list inputs: RigL draws its
    gradient batches from each array of x."""
    x, y = classification_data()
    a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
    hidden = keras.layers.Dense(16, activation="relu", name="fc")(
        keras.layers.Concatenate()([a, b]))
    inputs = {"a": a, "b": b} if structure == "dict" else [a, b]
    model = kl.wrap(keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden)))
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xs = {"a": x[:, :8], "b": x[:, 8:]} if structure == "dict" else [x[:, :8], x[:, 8:]]
    dst = kl.DynamicSparseTraining("rigl", density=0.3, update_every=4, data=(xs, y),
                                   batch_size=16, verbose=0)
    model.fit(xs, y, batch_size=16, epochs=2, callbacks=[dst], verbose=0)
    assert [u["step"] for u in dst.updates] == [4, 8] and dst.updates[0]["moved"] > 0
    assert kl.masks.density(kl.get_masks(model)) == pytest.approx(0.3, abs=0.01)


def test_data_that_cannot_serve_rigl_is_refused_at_construction():
    x, y = classification_data()
    with pytest.raises(ValueError, match=r"\(x, y\) pair of arrays.*received a generator"):
        kl.DynamicSparseTraining("rigl", data=(batch for batch in [(x, y)]))
    with pytest.raises(ValueError, match="same non-zero first"):
        kl.DynamicSparseTraining("rigl", data=(x, y[:5]))
    with pytest.raises(ValueError, match="same non-zero first"):
        kl.DynamicSparseTraining("rigl", data=({"a": x, "b": x[:3]}, y))
