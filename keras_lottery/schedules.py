"""Per-round sparsity targets for Iterative Magnitude Pruning.

A schedule answers one question at the end of every IMP round: how sparse
should each layer be in the next round? `target(round_index, step)` gives the
overall sparsity of round `round_index` (round 0 is the dense network), or
`None` to keep the current masks; `layer_targets(...)` spreads it over layers.

keras_lottery's own schedules need neither TensorFlow nor tfmot:

- `Geometric(rate)`: prune `rate` of the survivors each round (the paper's
  IMP; the default). Sparsity after r rounds: `1 - (1 - rate) ** r`.
- `Constant(sparsity)`: prune once to `sparsity`, then hold it (one-shot).
- `Polynomial(initial_sparsity, final_sparsity, begin_round, end_round)`.

A tensorflow-model-optimization `PruningSchedule` (`ConstantSparsity`,
`PolynomialDecay`) or any object with `schedule(step) -> (should_prune,
sparsity)` and `get_config()` is accepted through `from_pruning_schedule`;
it is called with the cumulative number of training steps at each round end.
"""

import numbers

import numpy as np

OUTPUT = "output"
DEFAULT = "default"


class RoundSchedule:
    """Base class: the target sparsity of each IMP round.

    Subclasses implement `target(round_index, step)`; `layer_targets` applies
    it to every pruned layer unless a subclass knows better.

    Example:
    >>> class Halving(RoundSchedule):
    ...     def target(self, round_index, step):
    ...         return 1 - 0.5 ** round_index
    >>> Halving().layer_targets(2, 0, ["fc1", "fc2"], ["fc2"])
    {'fc1': 0.75, 'fc2': 0.75}
    """

    def target(self, round_index, step):
        """Overall sparsity for round `round_index` (>= 1), or None."""
        raise NotImplementedError

    def layer_targets(self, round_index, step, layer_names, output_layers):
        """`{layer: sparsity}` for round `round_index`, or None to keep masks.

        Args:
            round_index: the round about to start (>= 1).
            step: training steps taken so far over all rounds.
            layer_names: names of the pruned layers.
            output_layers: names among them that produce model outputs.
        """
        sparsity = self.target(round_index, step)
        if sparsity is None:
            return None
        return {name: sparsity for name in layer_names}

    def validate(self, layer_names, output_layers):
        """Raises ValueError if the schedule names layers the model lacks."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Geometric(RoundSchedule):
    """Prunes a fixed fraction of the surviving weights every round.

    The paper's schedule: after r rounds at rate p a layer keeps
    `(1 - p) ** r` of its weights.

    Args:
        rate: fraction of survivors pruned per round, in [0, 1). Either a
            float (the output layer then gets half of it, as in the paper) or
            a dict with `"default"`, optionally `"output"` (the layers that
            produce model outputs; default: half the default rate) and layer
            names as keys.

    Example:
    >>> s = Geometric({"default": 0.2, "output": 0.1})
    >>> t = s.layer_targets(2, 0, ["fc1", "out"], ["out"])
    >>> round(t["fc1"], 4), round(t["out"], 4)
    (0.36, 0.19)
    """

    def __init__(self, rate=0.2):
        self.rates = _normalise_rates(rate)

    def rate_for(self, layer_name, output_layers):
        """The per-round rate of one layer."""
        if layer_name in self.rates:
            return self.rates[layer_name]
        if layer_name in output_layers:
            return self.rates[OUTPUT]
        return self.rates[DEFAULT]

    def target(self, round_index, step):
        return 1.0 - (1.0 - self.rates[DEFAULT]) ** round_index

    def layer_targets(self, round_index, step, layer_names, output_layers):
        return {
            name: 1.0 - (1.0 - self.rate_for(name, output_layers)) ** round_index
            for name in layer_names
        }

    def validate(self, layer_names, output_layers):
        unknown = sorted(set(self.rates) - {DEFAULT, OUTPUT} - set(layer_names))
        if unknown:
            raise ValueError(
                f"`rate` names layers that are not pruned in this model: "
                f"{unknown}. Pruned layers: {sorted(layer_names)}. Use one of "
                f"those names, 'default' or 'output'."
            )

    def get_config(self):
        return {"rate": dict(self.rates)}


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

    def target(self, round_index, step):
        return self.sparsity if round_index >= self.begin_round else None

    def get_config(self):
        return {"sparsity": self.sparsity, "begin_round": self.begin_round}


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

    def __init__(
        self, initial_sparsity, final_sparsity, begin_round, end_round, power=3
    ):
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

    def target(self, round_index, step):
        if round_index < self.begin_round:
            return None
        progress = min(
            1.0,
            (round_index - self.begin_round) / (self.end_round - self.begin_round),
        )
        return self.final_sparsity + (
            self.initial_sparsity - self.final_sparsity
        ) * (1.0 - progress) ** self.power

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_round": self.begin_round,
            "end_round": self.end_round,
            "power": self.power,
        }


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
    """

    def __init__(self, schedule, final_round):
        _check_round(final_round, "final_round")
        self.schedule = schedule
        self.final_round = int(final_round)

    def target(self, round_index, step):
        return self.schedule.target(self.final_round, step)

    def layer_targets(self, round_index, step, layer_names, output_layers):
        return self.schedule.layer_targets(
            self.final_round, step, layer_names, output_layers
        )

    def validate(self, layer_names, output_layers):
        self.schedule.validate(layer_names, output_layers)

    def get_config(self):
        return {"schedule": repr(self.schedule), "final_round": self.final_round}


class PruningScheduleAdapter(RoundSchedule):
    """Runs a tfmot-style `schedule(step) -> (should_prune, sparsity)` per round.

    The wrapped schedule is called with the cumulative number of training steps
    at the end of each round. When `should_prune` is false there, the masks of
    the last round are kept. tfmot is never imported here: pass the schedule
    object you built.

    Args:
        schedule: e.g. `tfmot.sparsity.keras.PolynomialDecay(...)`.

    Example:
    >>> class Every100:
    ...     def __call__(self, step):
    ...         return step % 100 == 0, 0.5
    ...     def get_config(self):
    ...         return {"class_name": "Every100", "config": {}}
    >>> PruningScheduleAdapter(Every100()).target(1, 200)
    0.5
    """

    def __init__(self, schedule):
        self.schedule = schedule

    def target(self, round_index, step):
        should_prune, sparsity = self.schedule(np.int64(step))
        if not bool(np.asarray(should_prune)):
            return None
        sparsity = float(np.asarray(sparsity))
        _check_fraction(sparsity, "sparsity returned by the pruning schedule")
        return sparsity

    def get_config(self):
        return {"schedule": self.schedule.get_config()}


def get(schedule=None, rate=None):
    """Resolves the `schedule` / `rate` arguments of the IMP callback.

    Args:
        schedule: None, a `RoundSchedule`, or a tfmot-style pruning schedule.
        rate: per-round rate for the default `Geometric` schedule.

    Returns:
        A `RoundSchedule`.

    Example:
    >>> get(rate=0.2)
    Geometric(rate={'default': 0.2, 'output': 0.1})
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
        "`schedule` must be a keras_lottery.schedules.RoundSchedule, or a "
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
        raise ValueError(
            f"A `rate` dict needs a 'default' entry; received {rate!r}."
        )
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
    if not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{what} must be an integer >= 1; received {value!r}.")
