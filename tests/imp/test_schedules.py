"""Per-round sparsity targets, keras_lottery's own and tfmot-style."""

import pytest

from keras_lottery.imp import schedules


KEYS = ["conv/kernel", "fc/kernel", "out/kernel"]


def test_geometric_float_rate_halves_output():
    s = schedules.Geometric(0.2)
    t = s.targets(3, 0, ["fc/kernel", "out/kernel"], ["out/kernel"])
    assert t["fc/kernel"] == pytest.approx(1 - 0.8**3)
    assert t["out/kernel"] == pytest.approx(1 - 0.9**3)


def test_geometric_per_layer_override():
    s = schedules.Geometric({"default": 0.2, "conv": 0.1, "output": 0.0})
    t = s.targets(2, 0, KEYS, ["out/kernel"])
    assert t == pytest.approx({"conv/kernel": 1 - 0.9**2, "fc/kernel": 1 - 0.8**2, "out/kernel": 0.0})


def test_geometric_globs_select_keys():
    s = schedules.Geometric({"default": 0.2, "*/attention/*": 0.3})
    keys = ["enc/attention/query/kernel", "enc/ffn/kernel"]
    t = s.targets(1, 0, keys, [])
    assert t == pytest.approx({keys[0]: 0.3, keys[1]: 0.2})


def test_geometric_overlapping_patterns_with_different_rates():
    s = schedules.Geometric({"default": 0.2, "enc": 0.3, "*/ffn/*": 0.4})
    with pytest.raises(ValueError, match="different rates"):
        s.validate(["enc/ffn/kernel"], [])


def test_geometric_validate_unknown_layer():
    s = schedules.Geometric({"default": 0.2, "nope": 0.1})
    with pytest.raises(ValueError, match="nope"):
        s.validate(["fc/kernel", "out/kernel"], ["out/kernel"])


def test_global_distribution_refuses_a_named_nonzero_rate():
    s = schedules.Geometric({"default": 0.2, "fc": 0.6})
    with pytest.raises(ValueError, match="distribution='global'"):
        s.validate(KEYS, ["out/kernel"], distribution="global")
    # 0 leaves a weight out of the pool; the implicit half output rate is no rate.
    schedules.Geometric({"default": 0.2, "out": 0.0}).validate(KEYS, ["out/kernel"], distribution="global")
    t = schedules.Geometric(0.2).targets(1, 0, KEYS, ["out/kernel"], distribution="global")
    assert t == pytest.approx({k: 0.2 for k in KEYS})


@pytest.mark.parametrize(
    "schedule",
    [schedules.Geometric(0.3), schedules.Geometric({"default": 0.2, "out": 0.0}),
     schedules.Constant(0.5, begin_round=2), schedules.Polynomial(0.1, 0.8, 1, 4),
     schedules.OneShot(schedules.Geometric(0.2), 5)],
)
def test_configs_round_trip(schedule):
    import keras

    config = keras.saving.serialize_keras_object(schedule)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is type(schedule) and rebuilt.get_config() == schedule.get_config()
    assert rebuilt.targets(3, 0, KEYS, ["out/kernel"]) == schedule.targets(3, 0, KEYS, ["out/kernel"])


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "x", True])
def test_bad_rates(rate):
    with pytest.raises((ValueError, TypeError)):
        schedules.Geometric(rate)


def test_rate_dict_needs_default():
    with pytest.raises(ValueError, match="default"):
        schedules.Geometric({"fc": 0.2})


def test_constant_is_one_shot():
    s = schedules.Constant(0.9)
    assert [s.target(r, 0) for r in (1, 2, 5)] == [0.9, 0.9, 0.9]
    assert schedules.Constant(0.5, begin_round=3).target(2, 0) is None


def test_polynomial_reaches_final():
    s = schedules.Polynomial(0.1, 0.9, begin_round=1, end_round=5, power=3)
    values = [s.target(r, 0) for r in range(1, 8)]
    assert values[0] == pytest.approx(0.1)
    assert values[4] == pytest.approx(0.9) and values[6] == pytest.approx(0.9)
    assert values == sorted(values)


def test_polynomial_bad_rounds():
    with pytest.raises(ValueError, match="end_round"):
        schedules.Polynomial(0.0, 0.5, begin_round=3, end_round=3)


def test_one_shot_uses_final_round_target():
    s = schedules.OneShot(schedules.Geometric(0.2), final_round=4)
    assert s.target(1, 0) == pytest.approx(1 - 0.8**4)
    assert s.targets(1, 0, ["a", "o"], ["o"])["o"] == pytest.approx(1 - 0.9**4)


class _StepSchedule:
    """tfmot-like: prune every 10 steps to 0.05 * step / 10."""

    def __call__(self, step):
        return step % 10 == 0, min(0.9, 0.05 * int(step) / 10)

    def get_config(self):
        return {"class_name": "_StepSchedule", "config": {}}


def test_adapter_uses_the_last_firing_step_of_the_round():
    s = schedules.get(_StepSchedule())
    assert isinstance(s, schedules.PruningScheduleAdapter)
    assert s.target(1, 20) == pytest.approx(0.1)
    assert s.target(1, 25, previous_step=0) == pytest.approx(0.1)  # fired at 20
    assert s.target(1, 25, previous_step=20) is None  # not in (20, 25]
    assert s.last_firing_step(39, previous_step=20) == 30


class _TfmotLike(_StepSchedule):
    """Config like tfmot's PruningSchedule: fires at begin + k * frequency."""

    calls = 0

    def __call__(self, step):
        type(self).calls += 1
        step = int(step)
        return 0 <= step - 7 and (step - 7) % 100 == 0, 0.5

    def get_config(self):
        return {"class_name": "PolynomialDecay",
                "config": {"begin_step": 7, "end_step": -1, "frequency": 100}}


def test_adapter_computes_tfmot_firing_steps_from_the_config():
    s = schedules.PruningScheduleAdapter(_TfmotLike())
    _TfmotLike.calls = 0
    assert s.last_firing_step(1000, previous_step=250) == 907
    assert s.last_firing_step(305, previous_step=250) is None
    assert _TfmotLike.calls <= 2


def test_adapter_rejects_bad_sparsity():
    class Bad(_StepSchedule):
        def __call__(self, step):
            return True, 1.2

    with pytest.raises(ValueError, match="sparsity"):
        schedules.get(Bad()).target(1, 5)


@pytest.mark.parametrize("bad", [0.5, "geometric", object()])
def test_schedule_of_wrong_type(bad):
    with pytest.raises(TypeError, match="schedule"):
        schedules.get(bad)


def test_rate_and_schedule_together_rejected():
    with pytest.raises(ValueError, match="either"):
        schedules.get(schedules.Constant(0.5), rate=0.2)
