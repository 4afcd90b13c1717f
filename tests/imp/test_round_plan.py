"""The pruning side of an IMP run: plan built from a model, masks of the next round."""

import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.imp import schedules
from keras_lottery.core import wrapping
from keras_lottery.imp.round_plan import RoundPlan
from conftest import mlp


def _plan(model, **kwargs):
    kwargs.setdefault("schedule", schedules.Constant(0.5))
    kwargs.setdefault("output_layers", None)
    return RoundPlan.for_model(model, **kwargs)


def _next(plan, model, next_round=1, total_steps=10, previous_step=0, **kwargs):
    return plan.next_masks(
        model, kl.get_masks(model), next_round,
        total_steps, previous_step, **kwargs,
    )


def test_plan_reads_keys_and_outputs_and_refuses_an_unwrapped_model():
    model = kl.wrap(mlp())
    plan = _plan(model)
    assert plan.keys == ("fc0/kernel", "fc1/kernel", "out/kernel")
    assert plan.output_keys == ("out/kernel",)
    with pytest.raises(ValueError, match="keras_lottery.wrap"):
        _plan(mlp())


def test_next_masks_prunes_the_smallest_weights_to_the_schedule_target():
    model = kl.wrap(mlp())
    new, note = _next(_plan(model), model)
    weights = wrapping.read_weights(model)
    fc0 = np.abs(weights["fc0/kernel"])
    assert note is None
    assert new["fc0/kernel"].sum() == fc0.size // 2
    assert fc0[new["fc0/kernel"]].min() >= fc0[~new["fc0/kernel"]].max()
    # Constant sparsity applies to output layers too; a Geometric rate halves there.
    assert new["out/kernel"].sum() == new["out/kernel"].size // 2
    geometric, _ = _next(_plan(model, schedule=schedules.Geometric(0.5)), model)
    assert geometric["out/kernel"].sum() == round(new["out/kernel"].size * 0.75)


def test_last_round_of_a_unit_plan_prunes_whole_units():
    model = kl.wrap(mlp())
    plan = _plan(model, structure="neuron", rounds=2)
    new, _ = _next(plan, model)
    columns = new["fc0/kernel"].any(axis=0)
    assert columns.sum() == 8
    assert (new["fc0/kernel"] == columns[None, :]).all()


class EveryHundred:
    """A tfmot-like schedule: fires at steps 0, 100, 200, ..."""

    def __call__(self, step):
        return int(step) % 100 == 0, 0.5

    def get_config(self):
        return {"class_name": "EveryHundred", "config": {}}


def test_a_silent_schedule_keeps_the_masks_and_says_so():
    model = kl.wrap(mlp())
    never = schedules.get(EveryHundred(), None)
    current = kl.get_masks(model)
    new, note = _plan(model, schedule=never).next_masks(
        lambda: pytest.fail("weights read although nothing is pruned"),
        current, 1, 10, 0,
    )
    assert new is current
    assert "prunes nothing" in note and "(0, 10]" in note


def test_a_target_the_masks_already_meet_gets_a_note_unless_quiet():
    model = kl.wrap(mlp())
    plan = _plan(model)
    half, _ = _next(plan, model)
    kl.set_masks(model, half)
    _, note = _next(plan, model)
    assert "survive already" in note
    _, quiet = _next(plan, model, quiet=True)
    assert quiet is None


def test_reference_masks_are_imposed_and_seeds_differ_per_round():
    model = kl.wrap(mlp())
    first = _plan(model)
    reference, _ = _next(first, model)
    later = [kl.get_masks(model), reference]
    plan = _plan(model, reference_masks=later, seed=5)
    fresh = kl.wrap(mlp())  # other weights: the reference decides, not magnitude
    new, _ = plan.next_masks(
        lambda: wrapping.read_weights(fresh), kl.get_masks(fresh), 1, 10, 0
    )
    for key in reference:
        np.testing.assert_array_equal(new[key], reference[key])
    assert plan.seed_for(1) != plan.seed_for(2)
    assert plan.seed_for(1) == _plan(model, seed=5).seed_for(1)


def test_an_erk_plan_spreads_the_rounds_total_and_exclusions_stay_dense():
    model = kl.wrap(mlp(input_dim=64, hidden=(32, 8)))
    plan = _plan(model, schedule=schedules.Geometric(0.5), distribution="erk", exclude=["out"])
    new, _ = _next(plan, model)
    sizes = {k: m.size for k, m in new.items()}
    assert new["out/kernel"].all()
    pooled = sizes["fc0/kernel"] + sizes["fc1/kernel"]
    kept = int(new["fc0/kernel"].sum() + new["fc1/kernel"].sum())
    assert abs(kept - pooled / 2) <= 2  # the geometric round-1 total over the pool
    # ERK: the small layer keeps a larger share than the large one.
    assert new["fc1/kernel"].mean() > 0.5 > new["fc0/kernel"].mean()
    with pytest.raises(ValueError, match="exclude names 'nope'"):
        _plan(model, exclude=["nope"])
