"""Per-round sparsity targets for Iterative Magnitude Pruning.

A schedule answers one question at the end of every IMP round: how sparse
should each pruned weight be in the next round? `target(round_index, step,
previous_step)` is the overall sparsity of round `round_index` (round 0 is
the dense network), or None to keep the current masks; `targets(...)`
spreads it over the mask keys (see `keras_lottery.sparsity.masks`).

keras_lottery's own schedules need neither TensorFlow nor tfmot:

- `Geometric(rate)`: prune `rate` of the survivors each round (the paper's
  IMP; the default). Sparsity after r rounds: `1 - (1 - rate) ** r`.
- `Constant(sparsity)`: prune once to `sparsity`, then hold it (one-shot).
- `Polynomial(initial_sparsity, final_sparsity, begin_round, end_round)`.

A tensorflow-model-optimization `PruningSchedule` (`ConstantSparsity`,
`PolynomialDecay`) or any object with `schedule(step) -> (should_prune,
sparsity)` and `get_config()` is accepted through `PruningScheduleAdapter`:
the last step of each round at which it fires decides that round's target.

Every schedule is a registered Keras serializable: `get_config` /
`from_config` round-trip (IMP checkpoints compare their configs).
"""

import numbers

import keras
import numpy as np

from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.sparsity import vocabulary

OUTPUT = "output"
DEFAULT = vocabulary.DEFAULT
UNIFORM = vocabulary.UNIFORM
GLOBAL = vocabulary.GLOBAL
_PACKAGE = "keras_lottery"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RoundSchedule:
    """Base class: the target sparsity of each IMP round.

    Subclasses implement `target(round_index, step, previous_step)`;
    `targets` applies it to every pruned weight unless a subclass knows
    better.

    Example:
    >>> class Halving(RoundSchedule):
    ...     def target(self, round_index, step, previous_step=0):
    ...         return 1 - 0.5 ** round_index
    >>> Halving().targets(2, 0, ["fc1/kernel", "fc2/kernel"], ["fc2/kernel"])
    {'fc1/kernel': 0.75, 'fc2/kernel': 0.75}
    """

    def target(self, round_index, step, previous_step=0):
        """Overall sparsity for round `round_index` (>= 1), or None.

        Args:
            round_index: the round about to start.
            step: training steps taken so far over all rounds.
            previous_step: the step the round that just ended started at.
        """
        raise NotImplementedError

    def targets(self, round_index, step, keys, output_keys, distribution=UNIFORM, previous_step=0):
        """`{key: sparsity}` for round `round_index`, or None to keep masks.

        Args:
            round_index: the round about to start (>= 1).
            step: training steps taken so far over all rounds.
            keys: the mask keys of the pruned weights.
            output_keys: those among them that produce model outputs.
            distribution: "uniform", or "global" / "erk" (one pool at one
                overall target, spread afterwards).
            previous_step: the step the round that just ended started at.
        """
        sparsity = self.target(round_index, step, previous_step)
        if sparsity is None:
            return None
        return {key: sparsity for key in keys}

    def validate(self, keys, output_keys, distribution=UNIFORM):
        """Raises ValueError if the schedule does not fit the model."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Geometric(RoundSchedule):
    """Prunes a fixed fraction of the surviving weights every round.

    The paper's schedule: after r rounds at rate p a weight tensor keeps
    `(1 - p) ** r` of its entries.

    Args:
        rate: fraction of survivors pruned per round, in [0, 1). A float (the
            output layers then get half of it, as in the paper), or a dict
            with `"default"`, optionally `"output"` (default: half the
            default rate) and patterns selecting mask keys: a key, a layer
            name or path, or a glob such as `"*/attention/*"` (see
            `keras_lottery.sparsity.masks.matches`).

    Example:
    >>> s = Geometric({"default": 0.2, "output": 0.1})
    >>> t = s.targets(2, 0, ["fc1/kernel", "out/kernel"], ["out/kernel"])
    >>> round(t["fc1/kernel"], 4), round(t["out/kernel"], 4)
    (0.36, 0.19)
    """

    def __init__(self, rate=0.2):
        self.rates = _normalise_rates(rate)
        self._rate = dict(rate) if isinstance(rate, dict) else float(rate)
        self._explicit_output = isinstance(rate, dict) and OUTPUT in rate

    def rate_for(self, key, output_keys):
        """The per-round rate of one mask key.

        Raises:
            ValueError: two patterns with different rates select the key.
        """
        named = {p: v for p, v in self.rates.items() if p not in (DEFAULT, OUTPUT)}
        chosen = vocabulary.pick(named, key, "rate")
        if chosen is not None:
            return chosen
        if key in output_keys:
            return self.rates[OUTPUT]
        return self.rates[DEFAULT]

    def target(self, round_index, step, previous_step=0):
        return 1.0 - (1.0 - self.rates[DEFAULT]) ** round_index

    def targets(self, round_index, step, keys, output_keys, distribution=UNIFORM, previous_step=0):
        if distribution != UNIFORM:
            # One pool at the default rate (one threshold for "global", ERK's
            # shares for "erk"); weights whose rate is 0 stay out of it.
            overall = self.target(round_index, step, previous_step)
            return {
                key: 0.0 if self._global_rate(key, output_keys) == 0 else overall
                for key in keys
            }
        return {
            key: 1.0 - (1.0 - self.rate_for(key, output_keys)) ** round_index for key in keys
        }

    def _global_rate(self, key, output_keys):
        rate = self.rate_for(key, output_keys)
        if key in output_keys and not self._explicit_output and rate == self.rates[OUTPUT]:
            return self.rates[DEFAULT]  # the implicit half rate plays no part
        return rate

    def validate(self, keys, output_keys, distribution=UNIFORM):
        patterns = [p for p in self.rates if p not in (DEFAULT, OUTPUT)]
        unknown = [p for p in patterns if not masks_lib.select(p, keys)]
        if unknown:
            raise ValueError(
                f"`rate` names {unknown}, which select none of the pruned weights. "
                f"Pruned weights: {list(keys)[:12]}. Use a key, a layer name or "
                "path, a glob, 'default' or 'output'."
            )
        for key in keys:
            self.rate_for(key, output_keys)
        if distribution != UNIFORM:
            named = {
                pattern: value
                for pattern, value in self.rates.items()
                if pattern != DEFAULT
                and (pattern != OUTPUT or self._explicit_output)
                and value not in (0.0, self.rates[DEFAULT])
            }
            if named:
                raise ValueError(
                    f"distribution={distribution!r} prunes every pooled weight at the "
                    f"default rate ({self.rates[DEFAULT]}) and sets each tensor's share "
                    f"itself; a rate for named weights can only be 0 (to leave them out "
                    f"of the pool). Received {named}. Use distribution='uniform' for "
                    "per-layer rates."
                )

    def get_config(self):
        return {"rate": self._rate}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Constant(RoundSchedule):
    """Prunes once to `sparsity` at the start of `begin_round`, then holds it.

    With `begin_round=1` this is one-shot pruning: train dense, prune to the
    target, rewind, retrain.

    Args:
        sparsity: target sparsity in [0, 1).
        begin_round: first round that trains at `sparsity` (>= 1).

    Example:
    >>> Constant(0.9).target(1, 0), Constant(0.9, begin_round=2).target(1, 0)
    (0.9, None)
    """

    def __init__(self, sparsity, begin_round=1):
        _check_fraction(sparsity, "sparsity")
        _check_round(begin_round, "begin_round")
        self.sparsity = float(sparsity)
        self.begin_round = int(begin_round)

    def target(self, round_index, step, previous_step=0):
        return self.sparsity if round_index >= self.begin_round else None

    def get_config(self):
        return {"sparsity": self.sparsity, "begin_round": self.begin_round}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Polynomial(RoundSchedule):
    """Sparsity rising polynomially from `initial` to `final` over rounds.

    `s(r) = final + (initial - final) * (1 - (r - begin) / (end - begin)) ** power`
    for `begin_round <= r <= end_round`, `final_sparsity` after it, no
    pruning before it (tfmot's `PolynomialDecay`, counted in rounds).

    Args:
        initial_sparsity: sparsity of `begin_round`, in [0, 1).
        final_sparsity: sparsity from `end_round` on, in [0, 1).
        begin_round: first pruned round (>= 1).
        end_round: round that reaches `final_sparsity` (> begin_round).
        power: exponent of the curve (3 in tfmot and Zhu & Gupta 2017).

    Example:
    >>> s = Polynomial(0.0, 0.8, begin_round=1, end_round=3, power=1)
    >>> [round(s.target(r, 0), 2) for r in (1, 2, 3, 4)]
    [0.0, 0.4, 0.8, 0.8]
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_round, end_round, power=3):
        _check_fraction(initial_sparsity, "initial_sparsity")
        _check_fraction(final_sparsity, "final_sparsity")
        _check_round(begin_round, "begin_round")
        if int(end_round) <= int(begin_round):
            raise ValueError(
                f"end_round must be greater than begin_round; received "
                f"begin_round={begin_round}, end_round={end_round}."
            )
        if float(power) <= 0:
            raise ValueError(f"power must be positive; received power={power}.")
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_round = int(begin_round)
        self.end_round = int(end_round)
        self.power = float(power)

    def target(self, round_index, step, previous_step=0):
        if round_index < self.begin_round:
            return None
        progress = min(1.0, (round_index - self.begin_round) / (self.end_round - self.begin_round))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (
            1.0 - progress
        ) ** self.power

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_round": self.begin_round,
            "end_round": self.end_round,
            "power": self.power,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OneShot(RoundSchedule):
    """Jumps straight to the sparsity another schedule reaches at `final_round`.

    `IterativeMagnitudePruning(one_shot=True)` uses it: one prune at the end of
    round 0, to the target of the last round, then the masks are held.

    Args:
        schedule: a `RoundSchedule`.
        final_round: the round whose target is used.

    Example:
    >>> s = OneShot(Geometric(0.2), final_round=3)
    >>> round(s.target(1, 0), 3)
    0.488
    >>> OneShot.from_config(s.get_config()).target(1, 0) == s.target(1, 0)
    True
    """

    def __init__(self, schedule, final_round):
        _check_round(final_round, "final_round")
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        self.schedule = schedule
        self.final_round = int(final_round)

    def target(self, round_index, step, previous_step=0):
        return self.schedule.target(self.final_round, step, previous_step)

    def targets(self, round_index, step, keys, output_keys, distribution=UNIFORM, previous_step=0):
        return self.schedule.targets(
            self.final_round, step, keys, output_keys, distribution=distribution, previous_step=previous_step
        )

    def validate(self, keys, output_keys, distribution=UNIFORM):
        self.schedule.validate(keys, output_keys, distribution)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "final_round": self.final_round,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PruningScheduleAdapter(RoundSchedule):
    """Runs a tfmot-style `schedule(step) -> (should_prune, sparsity)` per round.

    At the end of a round that covered steps `(previous_step, step]`, the last
    step in that range at which the schedule fires (`should_prune` true)
    decides the next round's sparsity; if it never fires there, the masks are
    kept (and the IMP callback warns). tfmot's schedules fire only every
    `frequency` steps after `begin_step`: their last firing step is computed
    from their config; other schedules are asked step by step, backwards.
    tfmot is never imported at import time: pass the schedule object you
    built.

    Args:
        schedule: e.g. `tfmot.sparsity.keras.PolynomialDecay(...)`.

    Example:
    >>> class Every100:
    ...     def __call__(self, step):
    ...         return step % 100 == 0, 0.5
    ...     def get_config(self):
    ...         return {"class_name": "Every100", "config": {}}
    >>> PruningScheduleAdapter(Every100()).target(1, 250, previous_step=150)
    0.5
    >>> PruningScheduleAdapter(Every100()).target(1, 250, previous_step=200) is None
    True
    """

    # Backward scans of opaque schedules stop after this many steps.
    MAX_SCAN = 200_000

    def __init__(self, schedule):
        if isinstance(schedule, dict):
            schedule = _tfmot_schedule_from_config(schedule)
        self.schedule = schedule

    def last_firing_step(self, step, previous_step=0):
        """The last step in `(previous_step, step]` at which the schedule
        fires, or None."""
        step, previous_step = int(step), int(previous_step)
        config = self._config()
        if {"begin_step", "end_step", "frequency"} <= set(config):
            begin, end = int(config["begin_step"]), int(config["end_step"])
            frequency = max(1, int(config["frequency"]))
            last = step if end == -1 else min(step, end)
            if last >= begin:
                candidate = begin + ((last - begin) // frequency) * frequency
                if candidate > previous_step and self._fires(candidate)[0]:
                    return candidate
                if candidate <= previous_step:
                    return None
        for candidate in range(step, max(previous_step, step - self.MAX_SCAN), -1):
            if self._fires(candidate)[0]:
                return candidate
        return None

    def target(self, round_index, step, previous_step=0):
        firing = self.last_firing_step(step, previous_step)
        if firing is None:
            return None
        sparsity = self._fires(firing)[1]
        _check_fraction(sparsity, "sparsity returned by the pruning schedule")
        return sparsity

    def _fires(self, step):
        should_prune, sparsity = self.schedule(np.int64(step))
        return bool(np.asarray(should_prune)), float(np.asarray(sparsity))

    def _config(self):
        config = self.schedule.get_config()
        if isinstance(config, dict) and isinstance(config.get("config"), dict):
            return config["config"]
        return config if isinstance(config, dict) else {}

    def get_config(self):
        return {"schedule": self.schedule.get_config()}


def _tfmot_schedule_from_config(config):
    from keras_lottery.imp import tfmot_interop  # TensorFlow-only, imports tfmot

    return tfmot_interop.schedule_from_config(config)


def get(schedule=None, rate=None):
    """Resolves the `schedule` / `rate` arguments of the IMP callback.

    Args:
        schedule: None, a `RoundSchedule`, or a tfmot-style pruning schedule.
        rate: per-round rate for the default `Geometric` schedule.

    Returns:
        A `RoundSchedule`.

    Example:
    >>> get(rate=0.2)
    Geometric(rate=0.2)
    """
    if schedule is not None and rate is not None:
        raise ValueError(
            "Pass either `rate` (for the default geometric schedule) or "
            f"`schedule`, not both; received rate={rate!r}, "
            f"schedule={schedule!r}."
        )
    if schedule is None:
        return Geometric(0.2 if rate is None else rate)
    if isinstance(schedule, RoundSchedule):
        return schedule
    if callable(schedule) and hasattr(schedule, "get_config"):
        return PruningScheduleAdapter(schedule)
    raise TypeError(
        "`schedule` must be a keras_lottery.imp.schedules.RoundSchedule, or a "
        "pruning schedule with `schedule(step) -> (should_prune, sparsity)` "
        "and `get_config()` (e.g. tfmot.sparsity.keras.PolynomialDecay); "
        f"received {schedule!r} of type {type(schedule).__name__}."
    )


def _normalise_rates(rate):
    if isinstance(rate, numbers.Real) and not isinstance(rate, bool):
        _check_fraction(rate, "rate")
        return {DEFAULT: float(rate), OUTPUT: float(rate) / 2}
    if not isinstance(rate, dict):
        raise TypeError(
            "`rate` must be a float in [0, 1) or a dict such as "
            f"{{'default': 0.2, 'output': 0.1}}; received {rate!r}."
        )
    if DEFAULT not in rate:
        raise ValueError(f"A `rate` dict needs a 'default' entry; received {rate!r}.")
    rates = {}
    for name, value in rate.items():
        _check_fraction(value, f"rate[{name!r}]")
        rates[str(name)] = float(value)
    rates.setdefault(OUTPUT, rates[DEFAULT] / 2)
    return rates


def _check_fraction(value, what):
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not 0.0 <= float(value) < 1.0
    ):
        raise ValueError(f"{what} must be a number in [0, 1); received {value!r}.")


def _check_round(value, what):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or int(value) < 1:
        raise ValueError(f"{what} must be an integer >= 1; received {value!r}.")
