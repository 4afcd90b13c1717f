"""What each IMP round prunes: the run's keys, unit structures, schedule and
reference masks, fixed when training starts, and the mask decision at a round
boundary.

`RoundPlan.for_model` reads the model once (the callback's `on_train_begin`);
`RoundPlan.next_masks` is the whole pruning step between two rounds: the
schedule's targets, the structured last-round targets, the reference masks of
a control run, the decision, and the note when the round prunes nothing. The
callback only hands it the model's weights and masks and applies the result.

Example:
>>> model = keras_lottery.wrap(keras.Sequential(
...     [keras.Input((4,)), keras.layers.Dense(8, name="fc"),
...      keras.layers.Dense(2, name="out")]))
>>> plan = RoundPlan.for_model(model, schedule=keras_lottery.imp.schedules.Constant(0.5),
...                            output_layers=None)
>>> plan.keys, plan.output_keys
(('fc/kernel', 'out/kernel'), ('out/kernel',))
>>> new, note = plan.next_masks(
...     model, keras_lottery.get_masks(model), next_round=1, total_steps=10, previous_step=0)
>>> int(new["fc/kernel"].sum()), int(new["out/kernel"].sum()), note
(16, 8, None)
"""

import dataclasses

import numpy as np

from keras_lottery.core import wrapping
from keras_lottery.export import sparse_inference
from keras_lottery.imp import checks as imp_checks
from keras_lottery.methods import scorers as scorers_lib
from keras_lottery.sparsity import budgets
from keras_lottery.sparsity import decision
from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.sparsity import structure as structure_lib
from keras_lottery.sparsity import vocabulary


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """The pruning side of one IMP run (see the module docstring).

    Attributes:
        keys: the prunable weights' mask keys, in model order.
        output_keys: keys of the output layers (pruned at the schedule's
            output rate; unstructured under a unit structure).
        structure: `{key: Structure}` for the run's structure.
        schedule: the run's schedule.
        distribution: "uniform", "global" or "erk".
        scorer: the `keras_lottery.methods.scorers.Scorer` ranking survivors.
        excluded: keys the run never prunes (`exclude=`).
        control: None or "random_prune" (the decision's control; "reinit" is
            a rewinding matter).
        seed: the run's seed; round r draws with `seed_for(r)`.
        reference: per-round `{key: bool array}` masks to impose, or None.
        rounds: number of rounds of the run.
        only: None, or the keys the run may prune (a latency policy's
            choice); the others keep every weight.
        shapes: `{key: shape}` of the pruned weights.
    """

    keys: tuple
    output_keys: tuple
    structure: dict
    schedule: object
    distribution: str = vocabulary.UNIFORM
    scorer: object = dataclasses.field(default_factory=scorers_lib.Magnitude)
    excluded: frozenset = frozenset()
    control: object = None
    seed: int = 0
    reference: object = None
    rounds: int = 2
    only: object = None
    shapes: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def for_model(
        cls,
        model,
        *,
        schedule,
        output_layers,
        distribution=vocabulary.UNIFORM,
        structure="weight",
        scorer="magnitude",
        exclude=None,
        control=None,
        seed=0,
        reference_masks=None,
        rounds=2,
        latency_policy=None,
    ):
        """The plan of a run on the wrapped `model`; raises (naming the
        weight, or for `latency_policy="xnnpack_sparse"` the layer) when the
        schedule, structure, reference masks or policy do not fit."""
        prunables = wrapping.prunable_weights(model)
        if not prunables:
            raise ValueError(
                f"Model '{model.name}' has no prunable weights with lottery state, "
                "so there is nothing to prune. Wrap it first: "
                "`keras_lottery.wrap(model)`."
            )
        keys = tuple(p.key for p in prunables)
        output_keys = tuple(wrapping.output_keys(model, output_layers))
        template = vocabulary.structure_argument(structure)
        vocabulary.check_combination(distribution, template)
        schedule.validate(list(keys), list(output_keys), distribution)
        excluded = frozenset(vocabulary.excluded_keys(exclude, keys))
        structure = structure_lib.structures_for(
            [(p.key, type(p.owner).__name__, tuple(p.shape)) for p in prunables
             if p.key not in excluded],
            template,
            skip=output_keys if not isinstance(template, structure_lib.NM) else (),
        )
        reference = None
        if reference_masks is not None:
            reference = masks_lib.align_each(
                reference_masks[:rounds], {p.key: p.shape for p in prunables},
                what="reference_masks",
            )
        return cls(
            keys=keys,
            output_keys=output_keys,
            structure=structure,
            schedule=schedule,
            distribution=distribution,
            scorer=scorers_lib.get(scorer),
            excluded=excluded,
            control=control if control == decision.RANDOM_PRUNE else None,
            seed=int(seed),
            reference=reference,
            rounds=int(rounds),
            only=_policy_keys(model, latency_policy),
            shapes={p.key: tuple(p.shape) for p in prunables},
        )

    def seed_for(self, round_index):
        """The seed of `round_index`'s random draws (controls, reinit)."""
        state = np.random.SeedSequence([self.seed, round_index]).generate_state(1)
        return int(state[0] % (2**31 - 1))

    def next_masks(self, model, current, next_round, total_steps, previous_step,
                   quiet=False):
        """The masks of `next_round`, and a note when it prunes nothing.

        Args:
            model: the wrapped model, holding the trained weights the scorer
                ranks (only read when something is pruned).
            current: the masks of the round that just ended.
            next_round: index of the round about to start (>= 1).
            total_steps: training steps of the run so far.
            previous_step: the step the previous round started at.
            quiet: no note for a target the masks already meet (the user
                was told the model came pruned).

        Returns:
            `(masks, note)`; `note` is None or a sentence for a warning.
        """
        args = (list(self.keys), list(self.output_keys))
        asked = self.schedule.targets(
            next_round, total_steps, *args, distribution=self.distribution,
            previous_step=previous_step,
        )
        reference = self.reference[next_round] if self.reference is not None else None
        targets = self._spread(asked, next_round)
        if targets is None and reference is None:
            return current, (
                f"IterativeMagnitudePruning: round {next_round} prunes nothing: the "
                f"schedule {self.schedule!r} did not fire in steps "
                f"({previous_step}, {total_steps}] of the round before it, so the "
                "masks are kept."
            )
        scores = None
        if reference is None:
            context = scorers_lib.ScoringContext(model, current, seed=self.seed_for(next_round))
            scores = self.scorer.scores(context)
        new = decision.next_masks(
            None,
            current,
            targets or {},
            distribution=self.distribution,
            scores=scores,
            structure=self.structure,
            control=self.control,
            reference=reference,
            seed=self.seed_for(next_round),
        )
        note = None
        if reference is None and not quiet and imp_checks.asks_nothing(
            self.schedule, next_round, asked, current, total_steps, *args, self.distribution
        ):
            note = (
                f"IterativeMagnitudePruning: round {next_round} prunes nothing: its "
                f"targets keep at least the {100 * masks_lib.density(current):.2f}% "
                "of weights that survive already (a model that was pruned "
                "before this run?), so the masks are kept."
            )
        return new, note

    def _spread(self, targets, next_round):
        """The schedule's targets with the run's exclusions, ERK's shares,
        the last round's N:M pattern and a latency policy applied."""
        if targets is None:
            return None
        targets = {key: 0.0 if key in self.excluded else value for key, value in targets.items()}
        if self.distribution == vocabulary.ERK:
            pool = {key: self.shapes[key] for key, value in targets.items() if value > 0}
            if pool:
                sizes = np.array([np.prod(shape) for shape in pool.values()], np.float64)
                overall = float(np.dot(sizes, [targets[k] for k in pool]) / sizes.sum())
                targets.update(budgets.budgets(pool, 1.0 - overall, vocabulary.ERK))
        if next_round == self.rounds - 1:
            targets = structure_lib.final_targets(self.structure, targets)
        if self.only is not None:
            targets = {key: value if key in self.only else 0.0 for key, value in targets.items()}
        return targets

    def policy_note(self, masks):
        """A sentence when the masks of a run with a latency policy miss what
        the policy needs (XNNPACK: more than 2/3 zeros in the 1x1 kernels),
        else None."""
        if self.only is None:
            return None
        kept, total = masks_lib.counts({key: masks[key] for key in self.only})
        zeros = 1.0 - kept / total
        if zeros > sparse_inference.MIN_ZERO_FRACTION:
            return None
        return (
            f"IterativeMagnitudePruning: the 1x1 convolution kernels XNNPACK would run "
            f"sparse are {100 * zeros:.1f}% zeros after the last round; XNNPACK switches "
            f"to sparse inference only above {100 * sparse_inference.MIN_ZERO_FRACTION:.1f}%. "
            "Prune more (more rounds or a higher rate for them)."
        )


def _policy_keys(model, latency_policy):
    if latency_policy is None:
        return None
    path = sparse_inference.xnnpack_sparse_path(model)
    return frozenset(path.accelerated)
