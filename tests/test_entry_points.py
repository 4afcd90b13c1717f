"""Every public entry point on every model family (tests/model_families.py):
each cell did what it says (densities reached, masks held after training,
outputs equal where they must be), or raised an error that names the weight
or layer and the fix. Nothing in between: a silent wrong result fails here.

The cells (`CELLS`): IMP (layerwise, with strip, ticket round trip and both
exports; global; channel-structured then `compact`; 2:4), `prune_at_init`
with each method, `DynamicSparseTraining` with each method and
`prune_one_shot` with each method. TensorFlow runs them all; JAX and torch
run a slice (export is TensorFlow-only).
"""

import re
import tempfile

import keras
import numpy as np
import pytest

import keras_lottery as kl
import model_families

TENSORFLOW = keras.backend.backend() == "tensorflow"
N = 32  # examples per fit: 2 steps of 16

# (family, cell) -> the error the cell must raise: its type and a pattern
# that names the weight (or model) and the fix.
REFUSALS = {
    ("cnn", "imp_2:4"): (ValueError, r"c1/kernel has 3 inputs .* not a multiple of 4.*Exclude it"),
    **{(family, cell): (ValueError, rf"{family}/{family}_cell/kernel belongs to a "
                                    rf"{family.upper()}Cell layer.*exclude it from wrapping")
       for family in ("lstm", "gru") for cell in ("imp_channel", "imp_2:4")},
    **{("hub", cell): (ValueError, r"token_embedding/embeddings belongs to a ReversibleEmbedding"
                                   r".*exclude it from wrapping")
       for cell in ("imp_channel", "imp_2:4")},
}
# Refusals a cell reaches after its first steps succeeded.
LATE_REFUSALS = {
    ("subclassed", "compact"): (kl.CompactionError, r"'subclassed' \(WrappedInInit\) is "
                                                     r"subclassed\. Build the ticket's "
                                                     r"architecture functionally"),
    **{(family, "tflite"): (kl.ExportVerificationError,
                            rf"recurrent layers \['{family}'\].*unroll=True.*SavedModel")
       for family in ("lstm", "gru")},
}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _data(family):
    return family.head(N), keras.tree.map_structure(lambda a: a[:N], family.y)


def _fit(family, model, callbacks=(), epochs=1):
    x, y = _data(family)
    model.fit(x, y, batch_size=16, epochs=epochs, callbacks=list(callbacks), verbose=0,
              shuffle=False)


def _assert_masks_hold(model):
    for p in kl.prunable_weights(model):
        value, mask = _np(p.variable.value), p.state.mask_array()
        assert not np.any(value[~mask]), f"{p.key}: pruned weights moved in training"


def _assert_same_outputs(a, b, x, atol=1e-5):
    for u, v in zip(keras.tree.flatten(a(x, training=False)), keras.tree.flatten(b(x, training=False))):
        np.testing.assert_allclose(_np(u), _np(v), atol=atol)


def _late(family, cell, run):
    """Runs `run()`: a late refusal this (family, cell) expects, or success."""
    expected = LATE_REFUSALS.get((family.name, cell))
    if expected is None:
        return run()
    with pytest.raises(expected[0], match=expected[1]):
        run()
    return None


def _imp(family, compiled=False, **kwargs):
    model = family.compiled(run_eagerly=not compiled)
    imp = kl.IterativeMagnitudePruning(rounds=2, epochs_per_round=1, rate=0.5, verbose=0,
                                       **kwargs)
    _fit(family, model, [imp], imp.total_epochs)
    kept, total = kl.masks.counts(kl.get_masks(model))
    assert imp.results[-1]["density"] == pytest.approx(kept / total)
    _assert_masks_hold(model)
    return model, imp


def cell_imp(family):
    """Layerwise IMP in a compiled train step; strip computes the same; the
    ticket loads into a fresh instance as m ⊙ θ0; both exports reproduce the
    model. (The other cells train eagerly: tracing is most of a short fit.)"""
    model, imp = _imp(family, compiled=True)
    masks = kl.get_masks(model)
    for key, mask in masks.items():  # every tensor at round(n · 0.5) (output layers: 0.75)
        assert mask.sum() in (round(mask.size * 0.5), round(mask.size * 0.75)), key
    x = family.head()
    plain = kl.strip(model)
    assert not kl.prunable_weights(plain)
    _assert_same_outputs(plain, model, x)
    directory = tempfile.mkdtemp()
    path = kl.save_ticket(model, f"{directory}/ticket.npz", imp=imp)
    fresh = family.build()
    with pytest.warns(UserWarning, match="matched by position") if _renamed(model, fresh) else _none():
        kl.load_ticket(path, fresh)
    for p_old, p_new in zip(kl.prunable_weights(model), kl.prunable_weights(fresh)):
        mask = p_old.state.mask_array()
        np.testing.assert_array_equal(p_new.state.mask_array(), mask)
        np.testing.assert_array_equal(_np(p_new.variable.value),
                                      p_old.state.snapshot_array("init") * mask)
    if not TENSORFLOW:
        return
    result = kl.export_saved_model(model, f"{directory}/saved_model", sample_inputs=x)
    assert result.max_abs_error <= result.tolerance
    _late(family, "tflite", lambda: kl.export_tflite(model, f"{directory}/ticket.tflite",
                                                     sample_inputs=x))


def cell_imp_global(family):
    model, _ = _imp(family, distribution="global")
    assert kl.masks.density(kl.get_masks(model)) == pytest.approx(0.5, abs=1e-3)


def cell_imp_channel(family):
    """Channel-structured IMP: whole units pruned (output layers unstructured);
    `compact` then gives a smaller model computing the same (it checks that
    itself, so a CompactionResult is that check)."""
    model, _ = _imp(family, structure="channel")
    output_keys = set(kl.core.wrapping.output_keys(model))
    for p in kl.prunable_weights(model):
        if p.key in output_keys:
            continue
        mask = p.state.mask_array()
        units = mask.reshape(-1, mask.shape[-1])
        assert np.all(units.all(axis=0) | ~units.any(axis=0)), f"{p.key}: not whole units"
        assert units.all(axis=0).sum() == round(units.shape[1] * 0.5), p.key
    result = _late(family, "compact", lambda: kl.compact(model, sample_inputs=family.head()))
    if result is not None:
        assert result.removed and result.params_after < result.params_before


def cell_imp_2_4(family):
    model, _ = _imp(family, structure="2:4")
    assert all(broken == 0 for broken in kl.check_pattern(model, "2:4").values())


def cell_prune_at_init(method):
    def cell(family):
        model = family.compiled(run_eagerly=True)
        masks = kl.prune_at_init(model, method, 0.3, data=_data(family), iterations=5)
        assert kl.masks.density(masks) == pytest.approx(0.3, abs=0.01)
        _fit(family, model)
        assert kl.get_masks(model).keys() == masks.keys()
        _assert_masks_hold(model)
    return cell


def cell_dynamic_sparse(method):
    def cell(family):
        model = family.compiled(run_eagerly=True)
        x, y = _data(family)
        dst = kl.DynamicSparseTraining(method, density=0.3, update_every=1, data=(x, y),
                                       batch_size=16, verbose=0)
        _fit(family, model, [dst], epochs=2)  # 4 steps; updates at 1 and 2 (< 3 = end)
        assert kl.masks.density(kl.get_masks(model)) == pytest.approx(0.3, abs=0.01)
        assert len(dst.updates) == (0 if method == "static" else 2)
        if method != "static":
            assert dst.updates[0]["moved"] > 0
        _assert_masks_hold(model)
    return cell


def cell_one_shot(method):
    def cell(family):
        model = family.compiled(run_eagerly=True)
        _fit(family, model)
        others = [p.key for p in kl.prunable_weights(model)
                  if not isinstance(p.owner, (keras.layers.Dense, keras.layers.EinsumDense))]
        with pytest.warns(UserWarning, match="keep their masks") if others else _none():
            result = kl.prune_one_shot(model, method, density=0.5,
                                       calibration_data=[family.head(N)], verbose=0)
        assert result.masks and not set(result.masks) & set(others)
        for key, mask in result.masks.items():
            assert mask.mean() == pytest.approx(0.5, abs=0.02), key
        _assert_same_outputs(kl.strip(model), model, family.head())
    return cell


CELLS = {
    "imp": cell_imp,
    "imp_global": cell_imp_global,
    "imp_channel": cell_imp_channel,
    "imp_2:4": cell_imp_2_4,
    **{f"init_{m}": cell_prune_at_init(m) for m in ("random", "magnitude", "snip", "grasp", "synflow")},
    **{f"dst_{m}": cell_dynamic_sparse(m) for m in ("rigl", "set", "static")},
    **{f"one_shot_{m}": cell_one_shot(m) for m in ("magnitude", "wanda", "sparsegpt")},
}
# JAX and torch: the backend-sensitive cells on the families that differ most.
SLICE = {"families": ("mlp", "lstm", "subclassed", "two_outputs"),
         "cells": ("imp", "init_snip", "init_synflow", "dst_rigl", "one_shot_sparsegpt"),
         "pairs": {("mlp", "imp_channel")}}  # structured IMP and compact


def _renamed(a, b):
    return [p.key for p in kl.prunable_weights(a)] != [p.key for p in kl.prunable_weights(b)]


class _none:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def _cases():
    for family in model_families.FAMILIES:
        for cell in CELLS:
            if TENSORFLOW or (family in SLICE["families"] and cell in SLICE["cells"]) or (
                (family, cell) in SLICE["pairs"]
            ):
                yield pytest.param(family, cell, id=f"{family}-{cell}")


_FAMILIES = {}


def _family(name):
    if name not in _FAMILIES:  # data and builders, not models: every cell builds afresh
        _FAMILIES[name] = model_families.FAMILIES[name]()
    return _FAMILIES[name]


@pytest.mark.parametrize("family_name, cell", list(_cases()))
def test_entry_point(family_name, cell):
    if family_name == "hub":
        pytest.importorskip("keras_hub")
    family = _family(family_name)
    expected = REFUSALS.get((family_name, cell))
    if expected is None:
        CELLS[cell](family)
        return
    with pytest.raises(expected[0], match=expected[1]) as raised:
        CELLS[cell](family)
    assert re.search(r"exclude|Exclude", str(raised.value))
