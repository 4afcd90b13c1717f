"""`IterativeMagnitudePruning`: every IMP round inside one `model.fit`.

The callback keeps arguments, Keras hooks and the order of things; the work
is done elsewhere: the mask decision in `keras_lottery.sparsity.decision`, rewind
points in `keras_lottery.core.rewinding`, the run's state and its checkpoint form
in `keras_lottery.imp.state`, the round's bookkeeping in
`keras_lottery.imp.round_log` (docs/ARCHITECTURE.md walks through one round).

A round ends at the end of its last epoch: every callback sees the trained
network of that round in `on_epoch_end`, whatever its place in the list. The
prune and the rewind into the next round happen at the start of the next
epoch, before its first batch.
"""

import inspect
import math
import numbers
import os
import warnings

import keras
import numpy as np

from keras_lottery.files import checkpoint as checkpoint_lib
from keras_lottery.sparsity import decision
from keras_lottery.files import file_io
from keras_lottery.imp import checks as imp_checks
from keras_lottery.imp import state as imp_state
from keras_lottery.backend import keras_internals
from keras_lottery.backend import limits
from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.sparsity import vocabulary
from keras_lottery.methods import scorers as scorers_lib
from keras_lottery.backend import optimizer_state
from keras_lottery.core import rewinding
from keras_lottery.imp import schedules as schedules_lib
from keras_lottery.core import wrapping
from keras_lottery.imp.state import IMPState
from keras_lottery.imp.round_log import RoundLog
from keras_lottery.imp.round_log import summary_line
from keras_lottery.imp.round_plan import RoundPlan

UNIFORM = vocabulary.UNIFORM
GLOBAL = vocabulary.GLOBAL
REWIND_INIT = rewinding.INIT
REWIND_LR = rewinding.LR
REWIND_FINETUNE = rewinding.FINETUNE
CONTROL_REINIT = "reinit"
CONTROL_RANDOM_PRUNE = decision.RANDOM_PRUNE
CONTROLS = (CONTROL_REINIT, CONTROL_RANDOM_PRUNE)


class IterativeMagnitudePruning(keras.callbacks.Callback):
    """Runs all rounds of Iterative Magnitude Pruning inside one `model.fit`.

    Each round trains `epochs_per_round` epochs. At the end of round r (but
    the last) the callback records the round; at the start of the next
    epoch it prunes to the schedule's target for round r + 1, rewinds the
    survivors, resets the optimizer and training goes on with the same
    compiled train function. Call `fit(..., epochs=imp.total_epochs)`.

    Rewinding (`rewind_to`):
    - `"init"` (default): survivors back to θ0, every other weight (biases,
      normalisation) back to its value at the start of `fit`, optimizer slots
      zeroed, step 0, learning rate back to its start value.
    - an int k: weights and optimizer state back to their values after
      iteration k of round 0 (Frankle et al. 2020); the step counter
      restarts at k, so learning-rate schedules replay from k.
    - `"lr"`: keep the trained weights, fresh optimizer (learning-rate
      rewinding, Renda et al. 2020).
    - `"finetune"`: keep weights and optimizer state.

    Controls (`control`):
    - `"reinit"`: same masks, survivors drawn afresh from each layer's own
      initializer with a new seed every round.
    - `"random_prune"`: random masks with the same per-weight counts,
      survivors rewound like the ticket.
    Pass `reference_masks=ticket_imp.mask_history` to make a control follow a
    ticket run's masks (or their counts) exactly, as in the paper.

    Results: `.results` holds one dict per round: `round`, `density`, `kept`,
    `total`, `layer_density`, `steps`, `epochs`, `best_<monitor>` and
    `best_<monitor>_step` (the early-stopping iteration: steps into the round
    at the epoch with the best `monitor` value), `at_best` (that epoch's
    logs), the last epoch's logs, `seconds` and `boundary_seconds` (the prune
    and rewind before the round). Every epoch's `logs` gain `lottery_round`
    and `lottery_density`: History records them, and so do CSVLogger and
    TensorBoard when they come after this callback in the list (Keras hands
    the epoch's logs to callbacks in list order; one placed before it sees
    them without these keys, and a CSVLogger fixes its columns then).

    Args:
        rounds: number of trained rounds, the dense round 0 included.
        epochs_per_round: epochs of each round. For the paper's "validate
            every 100 iterations", use `steps_per_epoch=100` in `fit`.
        rate: per-round pruning rate of the default geometric schedule: a
            float (output layers prune at half of it) or a dict with
            "default", optionally "output", and patterns selecting weights by
            key, layer name or glob (see `keras_lottery.imp.schedules.Geometric`).
        schedule: instead of `rate`, a `keras_lottery.imp.schedules` schedule or a
            tfmot-style pruning schedule.
        distribution: how each round's target is spread (the one sparsity
            vocabulary, `keras_lottery.sparsity.vocabulary`): "uniform" (each
            weight tensor to its own target, the paper's IMP), "global" (one
            threshold over every weight whose rate is not 0) or "erk" (the
            round's overall target spread Erdős–Rényi-Kernel: denser small
            layers).
        structure: "weight" (single weights, the paper's IMP); "neuron" /
            "channel" (whole Dense units / Conv filters, ranked by the L1
            norm of their scores; `Units(norm="l2")` for L2; the output
            layers stay unstructured): a structured ticket compacts into a
            smaller dense model (`keras_lottery.compact`); or "N:M" (e.g.
            "2:4"): N of every M consecutive weights along each kernel's
            input axis survive, rounds tighten the groups with the schedule
            (4:4 -> 3:4 -> 2:4 at the geometric default) and the last round
            always holds the pattern. Structures need "uniform" (units also
            take "erk").
        scorer: what ranks the survivors at each round's end: "magnitude"
            (the default, the paper's IMP), another registered name, or a
            `keras_lottery.methods.scorers.Scorer` holding its data
            (`Snip(data=...)`: iterative SNIP; "synflow": iterative SynFlow),
            scored on the round's trained weights before the rewind.
        exclude: keys, layer names or globs of weights this run never prunes.
        latency_policy: None, or "xnnpack_sparse": prune only the 1x1
            convolutions that XNNPACK's sparse inference runs (ARM builds of
            LiteRT), after checking up front that the model's structure
            allows that path (`keras_lottery.export.sparse_inference`; the error
            names the layer that breaks it). Warns when the last round leaves
            those kernels at most 2/3 zeros, below XNNPACK's threshold.
        rewind_to: "init", an iteration k (int), "lr" or "finetune".
        one_shot: prune once, after round 0, straight to the sparsity the
            schedule reaches in the last round.
        control: None, "reinit" or "random_prune".
        reference_masks: optional list (one `{key: bool array}` per round)
            from a ticket run, used instead of this run's own pruning.
        seed: seed of the controls' random draws (default: drawn from NumPy's
            global generator, which `keras.utils.set_random_seed` seeds).
        monitor: log key whose best value marks the early-stopping iteration.
        mode: "auto", "min" or "max": what "best" means for `monitor` (as for
            Keras' EarlyStopping).
        output_layers: layer names or key patterns of the output layers
            (default: found from the model's graph).
        checkpoint_dir: if set, the whole IMP state (model and optimizer
            variables, masks, snapshots, results, round) is written there
            atomically at the end of every round. A new run with the same
            settings and `checkpoint_dir` resumes from it: call
            `fit(..., initial_epoch=imp.initial_epoch)`. At most the round in
            progress is lost.
        write_checkpoints: False on all but one worker of a multi-worker run
            (they all read the chief's checkpoint).
        keep_checkpoints: rounds whose end-of-round checkpoints are also kept
            as `imp_checkpoint_round<r>.npz` (e.g. `(0,)`: the trained dense
            network, a branch point for `start_from`).
        start_from: path of another run's IMP checkpoint to start from when
            `checkpoint_dir` holds none (e.g. a control arm starting from the
            ticket run's round 0: same rounds, schedule and rewinding; rows
            taken from it are marked `shared`).
        round_callbacks: Keras callbacks that live one round at a time: the
            callback calls their hooks and restarts them (`on_train_begin`)
            at every round start. An `EarlyStopping` there ends a round early
            instead of the whole run; a `ReduceLROnPlateau` there plateaus per
            round.
        on_round_end: optional `fn(round_index, model, row)` called at the end
            of each round, while the model holds that round's trained weights.
        verbose: 1 prints one summary line per round, 0 is silent.

    A non-finite `loss` stops training at the end of its epoch
    (`stopped_reason` says why); results and masks are those of the last
    good round.

    Example:
    >>> import numpy as np
    >>> model = keras_lottery.wrap(keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(16, name="dense"),
    ...     keras.layers.Dense(2, name="out")], name="net"))
    >>> model.compile("adam", "mse")
    >>> imp = IterativeMagnitudePruning(rounds=3, epochs_per_round=1, verbose=0)
    >>> _ = model.fit(np.ones((32, 8)), np.ones((32, 2)), verbose=0,
    ...               epochs=imp.total_epochs, callbacks=[imp])
    >>> [row["layer_density"]["dense"] for row in imp.results]
    [1.0, 0.796875, 0.640625]
    """

    def __new__(cls, *args, **kwargs):
        if cls is IterativeMagnitudePruning and _needs_batch_hooks(args, kwargs):
            cls = _IterativeMagnitudePruningWithBatchHooks
        return super().__new__(cls)

    def __init__(
        self,
        rounds,
        epochs_per_round,
        rate=None,
        schedule=None,
        distribution=UNIFORM,
        structure="weight",
        scorer="magnitude",
        exclude=None,
        latency_policy=None,
        early_bird=None,
        instability=None,
        rewind_to=REWIND_INIT,
        one_shot=False,
        control=None,
        reference_masks=None,
        seed=None,
        monitor="val_loss",
        mode="auto",
        output_layers=None,
        checkpoint_dir=None,
        write_checkpoints=True,
        keep_checkpoints=(),
        start_from=None,
        round_callbacks=None,
        on_round_end=None,
        verbose=1,
        **kwargs,
    ):
        super().__init__()
        vocabulary.refuse_renamed("IterativeMagnitudePruning", kwargs,
                                  renamed=("scope", "granularity", "pattern", "norm"))
        self.rounds = imp_checks.positive_int(rounds, "rounds")
        self.epochs_per_round = imp_checks.positive_int(epochs_per_round, "epochs_per_round")
        self.distribution = vocabulary.distribution_argument(distribution)
        self.structure = vocabulary.structure_argument(structure)
        vocabulary.check_combination(self.distribution, self.structure)
        self.scorer = scorers_lib.get(scorer)
        self.exclude = exclude
        self.latency_policy = imp_checks.latency_policy_argument(latency_policy, self.structure)
        self.rewind_to = imp_checks.rewind_argument(rewind_to)
        self.control = imp_checks.one_of(control, CONTROLS, "control", none_ok=True)
        schedule = schedules_lib.get(schedule, rate)
        if one_shot:
            schedule = schedules_lib.OneShot(schedule, max(1, self.rounds - 1))
        self.schedule = schedule
        self.one_shot = bool(one_shot)
        self.reference_masks = imp_checks.per_round_argument(
            reference_masks, self.rounds, "reference_masks"
        )
        self.seed = int(np.random.randint(0, 2**31 - 1) if seed is None else seed)
        self.early_bird = imp_checks.early_bird_argument(early_bird, control, reference_masks)
        self.instability = imp_checks.instability_argument(instability)
        self.monitor = monitor
        self.mode = imp_checks.one_of(mode, ("auto", "min", "max"), "mode")
        self.output_layers = None if output_layers is None else list(output_layers)
        self.checkpoint_dir = checkpoint_dir
        self.write_checkpoints = bool(write_checkpoints)
        self.keep_checkpoints = tuple(int(r) for r in keep_checkpoints)
        if self.keep_checkpoints and checkpoint_dir is None:
            raise ValueError("keep_checkpoints needs a checkpoint_dir to keep them in.")
        self.start_from = start_from
        self.round_callbacks = imp_checks.callbacks_argument(round_callbacks, "round_callbacks")
        if on_round_end is not None and not callable(on_round_end):
            raise TypeError(f"on_round_end must be callable; received {on_round_end!r}.")
        self._on_round_end = on_round_end
        self.verbose = int(verbose)
        self.stopped_reason = None
        self._state = IMPState()
        self._started = False
        self._warned = set()
        self._pending_line = None
        self._instability = None

    # --------------------------------------------------------- public state

    @property
    def total_epochs(self):
        """Epochs to pass to `fit`: `rounds * epochs_per_round`."""
        return self.rounds * self.epochs_per_round

    @property
    def checkpoint_path(self):
        """The checkpoint file, or None without `checkpoint_dir`."""
        if self.checkpoint_dir is None:
            return None
        return os.path.join(self.checkpoint_dir, "imp_checkpoint.npz")

    def round_checkpoint_path(self, round_index):
        """Where `keep_checkpoints` keeps the checkpoint of `round_index`."""
        if self.checkpoint_dir is None:
            return None
        return os.path.join(self.checkpoint_dir, f"imp_checkpoint_round{round_index}.npz")

    @property
    def initial_epoch(self):
        """The epoch to resume at: `fit(..., initial_epoch=imp.initial_epoch)`.

        0 without a checkpoint (of its own, or `start_from`); otherwise the
        first epoch of the round to run next (`total_epochs` once every round
        is done).
        """
        path = self.checkpoint_path
        if path is None or not os.path.exists(path):
            path = self.start_from
        if path is None or not os.path.exists(path):
            return 0
        _, metadata = checkpoint_lib.read(path)
        state = metadata["state"]
        return self.total_epochs if state["finished"] else int(state["round_start_epoch"])

    @property
    def results(self):
        """One dict per finished round (see the class docstring)."""
        return self._state.results

    @property
    def round(self):
        """The current round (the last one once finished)."""
        return self._state.round

    @property
    def finished(self):
        """Whether every round has run."""
        return self._state.finished

    @property
    def masks(self):
        """The model's current `{key: bool array}` masks."""
        return wrapping.get_masks(self.model)

    @property
    def mask_history(self):
        """The masks in effect during each round so far, one dict per round."""
        return self._state.mask_history()

    @property
    def rewind_step(self):
        """The iteration θk was taken at (None without `rewind_to=k`)."""
        point = self._state.rewind_point
        return None if point is None else point.step

    def on_round_end(self, round_index, row):
        """Called at the end of every round while the model holds the round's
        trained weights; override it (or pass `on_round_end=`) to save or
        evaluate them. `row` is the round's results row.
        """
        if self._on_round_end is not None:
            self._on_round_end(round_index, self.model, row)

    # --------------------------------------------------------------- hooks

    def on_train_begin(self, logs=None):
        imp_checks.check_not_run_before(self, self._started, resumable=self._has_checkpoint())
        self._started = True
        self._warned = set()
        self.stopped_reason = None
        model = self.model
        wrapping.install_mask_feed(model)
        limits.check_model(model)
        imp_checks.check_epochs(self, self.params)
        self._plan = RoundPlan.for_model(
            model,
            schedule=self.schedule,
            output_layers=self.output_layers,
            distribution=self.distribution,
            structure=self.structure,
            scorer=self.scorer,
            exclude=self.exclude,
            control=self.control,
            seed=self.seed,
            reference_masks=self.reference_masks,
            rounds=self.rounds,
            latency_policy=self.latency_policy,
        )
        if self.control == CONTROL_REINIT:
            rewinding.check_reinitializable(model)
        self._log = RoundLog(
            self.monitor,
            lambda: keras_internals.monitor_direction(model, self.monitor, self.mode),
        )
        if not self._restore():
            self._state = IMPState()
            self._state.init_point = rewinding.take(
                model, rewinding.INIT, optimizer_state.iterations(model.optimizer),
                fresh_optimizer=True,
            )
            masks = wrapping.get_masks(model)
            self._state.record_masks(masks)
            self._warn_once("already_pruned", imp_checks.already_pruned_note(model, masks))
        self._start_round_log()
        for callback in self.round_callbacks:
            callback.set_model(model)
            callback.set_params(self.params)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:
            self._first_epoch = False
            imp_checks.check_resume_epoch(self, epoch)
        self._print_pending_line()
        if self._state.pending_advance:
            self._advance()
        if self._log.epochs == 0:
            for callback in self.round_callbacks:
                callback.on_train_begin()
        for callback in self.round_callbacks:
            callback.on_epoch_begin(epoch - self._state.round_start_epoch)
        if self._log.epochs == 0 and self.instability is not None:
            self._measure_instability()
        self._epoch_start_steps = self._log.steps

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        model = self.model
        keras_internals.sync_jax_state(model)
        steps = optimizer_state.iterations(model.optimizer) - self._round_start_iteration
        masks = wrapping.get_masks(model)
        logs["lottery_round"] = self._state.round
        logs["lottery_density"] = masks_lib.density(masks)
        self._log.epoch_end(steps, logs)  # epochs without the monitor are skipped
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_reason = (
                f"loss is {float(loss)} in round {self._state.round} (epoch {epoch}); "
                "training stopped, keeping the last good round."
            )
            model.stop_training = True
            if self.verbose:
                print(f"IMP stopped: {self.stopped_reason}", flush=True)
            return
        ended_by = None
        for callback in self.round_callbacks:
            callback.on_epoch_end(epoch - self._state.round_start_epoch, logs)
            if model.stop_training and ended_by is None:
                ended_by = type(callback).__name__
        if ended_by is not None:
            model.stop_training = False
        elif self._early_bird_emerged(masks):
            ended_by = "EarlyBird"
        if self._log.epochs >= self.epochs_per_round or ended_by is not None:
            self._finish_round(epoch, logs, ended_by)

    def on_train_end(self, logs=None):
        self._print_pending_line()
        if self._state.finished or self.stopped_reason is not None:
            return
        self.stopped_reason = (
            f"fit ended during round {self._state.round} (rounds 0-{self.rounds - 1}) "
            f"({len(self.results)} rounds finished): another callback set "
            "model.stop_training (EarlyStopping, TerminateOnNaN, ...), or fit's "
            "epochs ran out. For early stopping within each round, pass "
            "keras.callbacks.EarlyStopping(...) in round_callbacks=[...]."
        )
        warnings.warn(f"IterativeMagnitudePruning: {self.stopped_reason}", stacklevel=2)

    # ----------------------------------------------------------- the round

    def _finish_round(self, epoch, logs, ended_by=None):
        state = self._state
        model = self.model
        if isinstance(self.rewind_to, int) and state.round == 0 and state.rewind_point is None:
            raise ValueError(rewinding.beyond_round_message(self.rewind_to, self._log.steps))
        for callback in self.round_callbacks:
            callback.on_train_end()
        if not self._log.monitored_epochs:
            self._warn_once(
                "monitor",
                f"IterativeMagnitudePruning: monitor={self.monitor!r} was in the logs of no "
                f"epoch of round {state.round} (keys: "
                f"{sorted(k for k in logs if not k.startswith('lottery_'))}), so that "
                f"round's best_{self.monitor} and early-stopping step are None. Pass "
                "validation_data to fit with a validation_freq that validates at least "
                "one epoch of every round, or monitor= one of those keys.",
            )
        masks = wrapping.get_masks(model)
        kept, total = masks_lib.counts(masks)
        row = self._log.row(
            logs,
            {
                "density": kept / total,
                "kept": kept,
                "total": total,
                "layer_density": masks_lib.layer_density(masks),
            },
            control=self.control,
            rewind_to=self.rewind_to,
            boundary_seconds=self._boundary_seconds,
            stopped_early=ended_by,
        )
        if self.early_bird is not None:
            row["early_bird_distances"] = list(self.early_bird.distances)
        if self._instability is not None:
            row.update(self._instability)
        row = file_io.json_safe(row)
        state.results.append(row)
        state.total_steps = state.round_start_step + self._log.steps
        self.on_round_end(state.round, row)
        if state.round + 1 < self.rounds:
            state.pending_advance = True
            state.round_start_epoch = epoch + 1
        else:
            state.finished = True
            if epoch + 1 < self.total_epochs:
                model.stop_training = True  # rounds ended early: no epochs left to use
        self._pending_line = summary_line(row, self.rounds)
        if self.checkpoint_dir is not None and self.write_checkpoints:
            self._save()

    def _measure_instability(self):
        started = _now()
        result = self.instability.measure(self.model)
        self._instability = {
            "instability_barrier": result.barrier,
            "instability_errors": list(result.errors),
            "instability_seconds": _now() - started,
        }
        if self.verbose:
            print(f"IMP round {self._state.round}: instability barrier "
                  f"{100 * result.barrier:.2f}% error", flush=True)

    def _early_bird_emerged(self, masks):
        """Feeds the Early-Bird tracker the masks the next round would get."""
        state = self._state
        if self.early_bird is None or state.round + 1 >= self.rounds:
            return False
        ahead, _ = self._plan.next_masks(
            self.model, masks, state.round + 1,
            state.round_start_step + self._log.steps, state.round_start_step, quiet=True,
        )
        self.early_bird.update(ahead)
        return self.early_bird.emerged and self._log.epochs < self.epochs_per_round

    def _advance(self):
        started = _now()
        state = self._state
        model = self.model
        next_round = state.round + 1
        last_steps = state.results[-1]["steps"] if state.results else 0
        new, note = self._plan.next_masks(
            model,
            wrapping.get_masks(model),
            next_round,
            state.total_steps,
            previous_step=state.total_steps - last_steps,
            quiet=next_round == 1 and "already_pruned" in self._warned,
        )
        self._warn_once("no_prune", note)
        if next_round == self.rounds - 1:
            self._warn_once("policy", self._plan.policy_note(new))
        wrapping.set_masks(model, new)
        self._rewind(next_round)
        rewinding.mask_optimizer_slots(model)
        state.round = next_round
        state.pending_advance = False
        state.round_start_step = state.total_steps
        state.record_masks(new)
        self._start_round_log()
        self._boundary_seconds = _now() - started

    def _rewind(self, next_round):
        model = self.model
        if self.rewind_to == REWIND_LR:
            rewinding.rewind(model, self._state.init_point, keep_weights=True)
        elif isinstance(self.rewind_to, int):
            rewinding.rewind(model, self._state.rewind_point)
        elif self.rewind_to == REWIND_INIT:
            rewinding.rewind(model, self._state.init_point)
        if self.control == CONTROL_REINIT:
            rewinding.reinitialize(model, self._plan.seed_for(next_round))

    def _start_round_log(self):
        self._instability = None
        if self.early_bird is not None:
            self.early_bird.reset()
        self._round_start_iteration = optimizer_state.iterations(self.model.optimizer)
        self._log.start(self._state.round, self._state.round_start_step, self._state.round_start_epoch)
        if not hasattr(self, "_boundary_seconds") or self._state.round == 0:
            self._boundary_seconds = 0.0

    def _take_rewind_point(self, steps_in_round):
        self._state.rewind_point = rewinding.take(
            self.model, rewinding.REWIND, optimizer_state.iterations(self.model.optimizer)
        )
        if steps_in_round != self.rewind_to and self.verbose:
            print(
                f"IMP: rewind point taken at iteration {steps_in_round}, the first "
                f"batch end at or after rewind_to={self.rewind_to} (batch hooks run "
                "once per steps_per_execution steps).",
                flush=True,
            )

    # ---------------------------------------------------------- checkpoints

    def _config(self):
        settings = {
            "rounds": self.rounds, "epochs_per_round": self.epochs_per_round,
            "distribution": self.distribution, "structure": self.structure.describe(),
            "scorer": self.scorer.name, "exclude": self.exclude,
            "latency_policy": self.latency_policy, "rewind_to": self.rewind_to,
            "one_shot": self.one_shot, "control": self.control, "seed": self.seed,
            "monitor": self.monitor, "mode": self.mode,
        }
        return imp_state.run_config(settings, self.schedule, self.early_bird, self._plan.keys)

    def _has_checkpoint(self):
        return self.checkpoint_path is not None and os.path.exists(self.checkpoint_path)

    def _save(self):
        keep = self._state.round in self.keep_checkpoints
        imp_state.save(
            self.checkpoint_path, self.model, self._state, self._config(),
            also_to=self.round_checkpoint_path(self._state.round) if keep else None,
        )

    def _restore(self):
        if self._has_checkpoint():
            path, shared = self.checkpoint_path, False
        elif self.start_from is not None:
            path, shared = self.start_from, True
        else:
            return False
        # A run starting from another's checkpoint has its own control and seed.
        self._state = imp_state.load(
            path, self.model, self._config(), ignore=("control", "seed") if shared else ()
        )
        if shared:
            for row in self._state.results:
                row["shared"] = True
        if self.verbose:
            where = "finished" if self._state.finished else f"round {self._state.round + 1}"
            print(f"IMP {'started' if shared else 'resumed'} from {path} at {where}.", flush=True)
        return True

    # ------------------------------------------------------------- helpers

    def _warn_once(self, kind, message):
        if message is None or kind in self._warned:
            return
        self._warned.add(kind)
        warnings.warn(message, stacklevel=3)

    def _print_pending_line(self):
        if self._pending_line is not None and self.verbose:
            print(self._pending_line, flush=True)
        self._pending_line = None

    def ticket_info(self):
        """What a ticket file records about the run (`save_ticket(imp=...)`):
        `round`, `metrics` (the last round's row), `rewind_step`, and
        `other_init` / `other_rewind` (`[(path, value)]` of the non-pruned
        weights at θ0 / θk, or None)."""
        others = wrapping.non_pruned_weights(self.model) if self.model is not None else []

        def named(point):
            if point is None:
                return None
            return [(v.path, value) for v, value in zip(others, point.other_weights)]

        return {
            "round": self.results[-1]["round"] if self.results else None,
            "metrics": self.results[-1] if self.results else {},
            "rewind_step": self.rewind_step,
            "other_init": named(self._state.init_point),
            "other_rewind": named(self._state.rewind_point),
        }


class _IterativeMagnitudePruningWithBatchHooks(IterativeMagnitudePruning):
    """The callback with batch hooks, used only when it needs them (θk at an
    iteration, or round callbacks that watch batches): Keras dispatches batch
    hooks asynchronously only when no callback overrides them."""

    def on_train_batch_begin(self, batch, logs=None):
        for callback in self.round_callbacks:
            callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        state = self._state
        if (
            isinstance(self.rewind_to, int)
            and state.round == 0
            and state.rewind_point is None
            and not state.pending_advance
        ):
            steps_in_round = self._epoch_start_steps + batch + 1
            if steps_in_round >= self.rewind_to:
                self._take_rewind_point(steps_in_round)
        for callback in self.round_callbacks:
            callback.on_train_batch_end(batch, logs)


def _needs_batch_hooks(args, kwargs):
    try:
        bound = inspect.signature(IterativeMagnitudePruning.__init__).bind_partial(
            None, *args, **kwargs
        )
    except TypeError:
        return False  # __init__ reports the bad arguments
    rewind_to = bound.arguments.get("rewind_to", REWIND_INIT)
    if isinstance(rewind_to, numbers.Integral) and not isinstance(rewind_to, bool) and rewind_to > 0:
        return True
    for callback in bound.arguments.get("round_callbacks") or []:
        for hook in ("on_train_batch_begin", "on_train_batch_end", "on_batch_end"):
            if not keras_internals.is_default(getattr(callback, hook, None)):
                return True
    return False


def _now():
    import time

    return time.perf_counter()


