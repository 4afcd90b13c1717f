"""Per-round sparsity targets, keras_lottery's own and tfmot-style."""

import pytest

from keras_lottery import schedules


def test_geometric_float_rate_halves_output():
    s = schedules.Geometric(0.2)
    t = s.layer_targets(3, 0, ["fc", "out"], ["out"])
    assert t["fc"] == pytest.approx(1 - 0.8**3)
    assert t["out"] == pytest.approx(1 - 0.9**3)


def test_geometric_per_layer_override():
    s = schedules.Geometric({"default": 0.2, "conv": 0.1, "output": 0.0})
    t = s.layer_targets(2, 0, ["conv", "fc", "out"], ["out"])
    assert t == pytest.approx({"conv": 1 - 0.9**2, "fc": 1 - 0.8**2, "out": 0.0})


def test_geometric_validate_unknown_layer():
    s = schedules.Geometric({"default": 0.2, "nope": 0.1})
    with pytest.raises(ValueError, match="nope"):
        s.validate(["fc", "out"], ["out"])


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
    assert s.layer_targets(1, 0, ["a", "o"], ["o"])["o"] == pytest.approx(1 - 0.9**4)


class _StepSchedule:
    """tfmot-like: prune every 10 steps to 0.05 * step / 10."""

    def __call__(self, step):
        return step % 10 == 0, min(0.9, 0.05 * int(step) / 10)

    def get_config(self):
        return {"class_name": "_StepSchedule", "config": {}}


def test_adapter_calls_schedule_with_step():
    s = schedules.get(_StepSchedule())
    assert isinstance(s, schedules.PruningScheduleAdapter)
    assert s.target(1, 20) == pytest.approx(0.1)
    assert s.target(1, 25) is None


def test_adapter_rejects_bad_sparsity():
    class Bad(_StepSchedule):
        def __call__(self, step):
            return True, 1.2

    with pytest.raises(ValueError, match="sparsity"):
        schedules.get(Bad()).target(1, 0)


@pytest.mark.parametrize("bad", [0.5, "geometric", object()])
def test_schedule_of_wrong_type(bad):
    with pytest.raises(TypeError, match="schedule"):
        schedules.get(bad)


def test_rate_and_schedule_together_rejected():
    with pytest.raises(ValueError, match="either"):
        schedules.get(schedules.Constant(0.5), rate=0.2)
