"""Early-Bird tickets: the tracker on scripted masks, and rounds ending early in IMP."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.methods.early_bird import EarlyBird
from keras_lottery.methods.early_bird import mask_distance
from conftest import classification_data
from conftest import mlp


def _masks(*bits):
    return {"k": np.array(bits, bool)}


def test_the_tracker_stops_only_after_patience_small_distances():
    bird = EarlyBird(threshold=0.3, patience=2)
    sequence = [_masks(1, 1, 0, 0), _masks(0, 0, 1, 1), _masks(0, 1, 1, 1),
                _masks(0, 1, 1, 1), _masks(0, 1, 1, 1)]
    emerged = []
    for masks in sequence:
        bird.update(masks)
        emerged.append(bird.emerged)
    assert bird.distances == [1.0, 0.25, 0.0, 0.0]
    # 1.0 is not small; 0.25 alone is one small distance; two in a row: emerged.
    assert emerged == [False, False, False, True, True]
    bird.reset()
    assert bird.distances == [] and not bird.emerged


def test_a_changing_ticket_never_emerges_and_min_epochs_holds_it():
    bird = EarlyBird(threshold=0.2, patience=1)
    for i in range(6):
        bird.update(_masks(*(np.arange(4) == i % 4)))
    assert not bird.emerged
    slow = EarlyBird(threshold=0.5, patience=1, min_epochs=4)
    for _ in range(3):
        slow.update(_masks(1, 0))
    assert not slow.emerged
    slow.update(_masks(1, 0))
    assert slow.emerged


def test_mask_distance_and_bad_arguments():
    assert mask_distance(_masks(1, 0, 1, 0), _masks(1, 1, 1, 1)) == 0.5
    with pytest.raises(ValueError, match="different keys"):
        mask_distance({"a": np.ones(2, bool)}, {"b": np.ones(2, bool)})
    with pytest.raises(ValueError, match="threshold"):
        EarlyBird(threshold=1.5)
    with pytest.raises(ValueError, match="patience"):
        EarlyBird(patience=0)


def _fit(imp):
    model = kl.wrap(mlp())
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    x, y = classification_data()
    model.fit(x, y, batch_size=16, epochs=imp.total_epochs, callbacks=[imp], verbose=0)
    return model


def test_imp_ends_rounds_when_the_ticket_emerges_and_reports_it():
    bird = EarlyBird(threshold=0.99, patience=1)  # any two epochs count as "the same"
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=4, rate=0.5,
                                       early_bird=bird, monitor="loss", verbose=0)
    _fit(imp)
    rows = imp.results
    assert [row["epochs"] for row in rows] == [2, 2, 4]  # the last round trains fully
    assert [row.get("stopped_early") for row in rows] == ["EarlyBird", "EarlyBird", None]
    assert rows[0]["steps"] == 2 * 6 and rows[2]["steps"] == 4 * 6
    assert len(rows[0]["early_bird_distances"]) == 1
    assert imp.finished and rows[-1]["density"] < rows[0]["density"]


def test_a_strict_early_bird_changes_nothing():
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=3, rate=0.5, monitor="loss",
                                       early_bird=EarlyBird(threshold=0.0), verbose=0)
    _fit(imp)
    assert [row["epochs"] for row in imp.results] == [3, 3]
    assert len(imp.results[0]["early_bird_distances"]) == 2


def test_early_bird_is_refused_with_controls():
    with pytest.raises(ValueError, match="control"):
        kl.IterativeMagnitudePruning(2, 1, control="reinit", early_bird=EarlyBird())
    with pytest.raises(TypeError, match="EarlyBird"):
        kl.IterativeMagnitudePruning(2, 1, early_bird=0.1)
