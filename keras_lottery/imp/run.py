"""One IMP run on one model: what `IterativeMagnitudePruning`'s Keras hooks
relay to.

`IMPRun` holds the whole run: its settings (`IMPSettings`), the state a
checkpoint keeps (`IMPState`: round, rows, mask history, rewind points), and
what only lives within a round (its `RoundLog`, the round callbacks, the
Early-Bird tracker, the instability measured at its start, the seconds of
the boundary before it), rebuilt at every round start. The order of things
at a round boundary (docs/ARCHITECTURE.md walks through it):

1. `epoch_end` of a round's last epoch records the round (`_finish_round`):
   row, checkpoint, `on_round_end`; every callback has seen the round's
   trained network by the end of that epoch.
2. `epoch_begin` of the next epoch prunes (`RoundPlan.next_masks`), rewinds,
   resets the optimizer slots of pruned weights, and starts the round log.

Example:
>>> run = IMPRun(IMPSettings(rounds=2, epochs_per_round=1, verbose=0), is_better=None)
>>> run.state.round, run.state.finished, run.state.results
(0, False, [])
"""

import math
import os
import time
import warnings

from keras_lottery.backend import keras_internals
from keras_lottery.backend import limits
from keras_lottery.backend import optimizer_state
from keras_lottery.backend import processes
from keras_lottery.core import rewinding
from keras_lottery.core import wrapping
from keras_lottery.files import checkpoint as checkpoint_lib
from keras_lottery.files import file_io
from keras_lottery.imp import checks
from keras_lottery.imp import state as imp_state
from keras_lottery.imp.round_log import RoundLog
from keras_lottery.imp.round_log import summary_line
from keras_lottery.imp.round_plan import RoundPlan
from keras_lottery.imp.settings import CONTROL_REINIT
from keras_lottery.imp.settings import IMPSettings  # noqa: F401 (the docstring's example)
from keras_lottery.imp.state import IMPState
from keras_lottery.sparsity import masks as masks_lib


class IMPRun:
    """The state and the steps of one IMP run (see the module docstring).

    Args:
        settings: the run's `IMPSettings`.
        is_better: `(value, best) -> bool` for the monitored quantity (the
            callback's, from Keras' `MonitorCallback`).
        on_round_end: `(round_index, row) -> None`, called at the end of
            every round while the model holds its trained weights.
    """

    def __init__(self, settings, is_better, on_round_end=None):
        self.settings = settings
        self.state = IMPState()
        self.is_better = is_better
        self.on_round_end = on_round_end
        self.model = None
        self.started = False
        self.stopped_reason = None
        self.warned = set()
        self.pending_line = None
        self.instability = None
        self.boundary_seconds = 0.0
        self.epoch_start_steps = 0

    # ---------------------------------------------------------------- state

    def has_checkpoint(self):
        """Whether this run's own checkpoint exists."""
        path = self.settings.checkpoint_path
        return path is not None and os.path.exists(path)

    def _resume_from(self):
        """`(path, shared)`: the checkpoint a run resumes from (its own, or
        `start_from`, shared with another run), or `(None, False)`."""
        if self.has_checkpoint():
            return self.settings.checkpoint_path, False
        return self.settings.start_from, self.settings.start_from is not None

    def initial_epoch(self):
        """The epoch a `fit` continues at (see the callback's property)."""
        path, _ = self._resume_from()
        if path is None or not os.path.exists(path):
            return 0
        _, metadata = checkpoint_lib.read(path)
        saved = metadata["state"]
        return self.settings.total_epochs if saved["finished"] else int(saved["round_start_epoch"])

    # ---------------------------------------------------------------- hooks

    def begin(self, model, params):
        """`on_train_begin`: checks, the round plan, θ0 or the checkpoint."""
        settings = self.settings
        checks.check_not_run_before(self, resumable=self.has_checkpoint())
        self.started, self.model, self.params = True, model, params
        self.warned, self.stopped_reason = set(), None
        wrapping.install_mask_feed(model)
        limits.check_model(model)
        processes.check_fit(model)
        checks.check_epochs(settings, params)
        self.plan = RoundPlan.for_model(
            model, schedule=settings.schedule, output_layers=settings.output_layers,
            distribution=settings.distribution, structure=settings.structure,
            scorer=settings.scorer, exclude=settings.exclude, control=settings.control,
            seed=settings.seed, reference_masks=settings.reference_masks,
            rounds=settings.rounds, latency_policy=settings.latency_policy,
        )
        if settings.control == CONTROL_REINIT:
            rewinding.check_reinitializable(model)
        self.log = RoundLog(settings.monitor, self.is_better)
        self.round_callbacks = keras_internals.StoppingCallbackList(
            settings.round_callbacks, model=model, **params)
        if not self._restore():
            self.state = IMPState()
            self.state.init_point = rewinding.take(
                model, rewinding.INIT, optimizer_state.iterations(model.optimizer),
                fresh_optimizer=True)
            masks = wrapping.get_masks(model)
            self.state.record_masks(masks)
            self._warn_once("already_pruned", checks.already_pruned_note(model, masks))
        processes.require_same(self.state.round_start_epoch, "the epoch IMP resumes from")
        self._start_round_log()
        self.first_epoch = True

    def epoch_begin(self, epoch):
        """`on_epoch_begin`: the boundary into a new round, then the round's
        callbacks and its instability probe."""
        if self.first_epoch:
            self.first_epoch = False
            checks.check_resume_epoch(self.settings, self.state, epoch)
        self._print_pending_line()
        if self.state.pending_advance:
            self._advance()
        if self.log.epochs == 0:
            self.round_callbacks.on_train_begin()
        self.round_callbacks.on_epoch_begin(epoch - self.state.round_start_epoch)
        if self.log.epochs == 0 and self.settings.instability is not None:
            self._measure_instability()
        self.epoch_start_steps = self.log.steps

    def epoch_end(self, epoch, logs):
        """`on_epoch_end`: the epoch's logs, a stop on a non-finite loss, the
        end of the round (its last epoch, or a round callback or Early-Bird
        ending it)."""
        model = self.model
        keras_internals.sync_jax_state(model)
        steps = optimizer_state.iterations(model.optimizer) - self.round_start_iteration
        masks = wrapping.get_masks(model)
        logs["lottery_round"] = self.state.round
        logs["lottery_density"] = masks_lib.density(masks)
        self.log.epoch_end(steps, logs)  # epochs without the monitor are skipped
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_reason = (
                f"loss is {float(loss)} in round {self.state.round} (epoch {epoch}); "
                "training stopped, keeping the last good round.")
            model.stop_training = True
            if self.settings.verbose:
                print(f"IMP stopped: {self.stopped_reason}", flush=True)
            return
        self.round_callbacks.on_epoch_end(epoch - self.state.round_start_epoch, logs)
        ended_by = self.round_callbacks.stopped_by
        if ended_by is not None:
            model.stop_training = False  # the round ends, not the run
        elif self._early_bird_emerged(masks):
            ended_by = "EarlyBird"
        if self.log.epochs >= self.settings.epochs_per_round or ended_by is not None:
            self._finish_round(epoch, logs, ended_by)

    def end(self):
        """`on_train_end`: says why when `fit` ended before the last round."""
        self._print_pending_line()
        if self.state.finished or self.stopped_reason is not None:
            return
        self.stopped_reason = (
            f"fit ended during round {self.state.round} (rounds 0-{self.settings.rounds - 1}) "
            f"({len(self.state.results)} rounds finished): another callback set "
            "model.stop_training (EarlyStopping, TerminateOnNaN, ...), or fit's "
            "epochs ran out. For early stopping within each round, pass "
            "keras.callbacks.EarlyStopping(...) in round_callbacks=[...].")
        warnings.warn(f"IterativeMagnitudePruning: {self.stopped_reason}", stacklevel=3)

    def batch_end(self, batch):
        """`on_train_batch_end` of a run rewinding to θk: takes θk at the
        first batch end at or after iteration k of round 0."""
        state, k = self.state, self.settings.rewind_to
        if (not isinstance(k, int) or state.round or state.rewind_point is not None
                or state.pending_advance):
            return
        steps_in_round = self.epoch_start_steps + batch + 1
        if steps_in_round < k:
            return
        # On JAX the train loop holds the state mid-epoch (a callback's
        # `self.model` would sync it; this run holds the model itself).
        keras_internals.sync_jax_state(self.model)
        self.state.rewind_point = rewinding.take(
            self.model, rewinding.REWIND, optimizer_state.iterations(self.model.optimizer))
        if steps_in_round != k and self.settings.verbose:
            print(f"IMP: rewind point taken at iteration {steps_in_round}, the first batch "
                  f"end at or after rewind_to={k} (batch hooks run once per "
                  "steps_per_execution steps).", flush=True)

    # ------------------------------------------------------------ the round

    def _finish_round(self, epoch, logs, ended_by=None):
        settings, state, model = self.settings, self.state, self.model
        if isinstance(settings.rewind_to, int) and state.round == 0 and state.rewind_point is None:
            raise ValueError(rewinding.beyond_round_message(settings.rewind_to, self.log.steps))
        self.round_callbacks.on_train_end()
        if not self.log.monitored_epochs:
            self._warn_once(
                "monitor",
                f"IterativeMagnitudePruning: monitor={settings.monitor!r} was in the logs of "
                f"no epoch of round {state.round} (keys: "
                f"{sorted(k for k in logs if not k.startswith('lottery_'))}), so that round's "
                f"best_{settings.monitor} and early-stopping step are None. Pass "
                "validation_data to fit with a validation_freq that validates at least one "
                "epoch of every round, or monitor= one of those keys.")
        masks = wrapping.get_masks(model)
        kept, total = masks_lib.counts(masks)
        row = self.log.row(
            logs,
            {"density": kept / total, "kept": kept, "total": total,
             "layer_density": masks_lib.layer_density(masks)},
            control=settings.control, rewind_to=settings.rewind_to,
            boundary_seconds=self.boundary_seconds, stopped_early=ended_by,
        )
        if settings.early_bird is not None:
            row["early_bird_distances"] = list(settings.early_bird.distances)
        if self.instability is not None:
            row.update(self.instability)
        row = file_io.json_safe(row)
        state.results.append(row)
        state.total_steps = state.round_start_step + self.log.steps
        if self.on_round_end is not None:
            self.on_round_end(state.round, row)
        if state.round + 1 < settings.rounds:
            state.pending_advance = True
            state.round_start_epoch = epoch + 1
        else:
            state.finished = True
            if epoch + 1 < settings.total_epochs:
                model.stop_training = True  # rounds ended early: no epochs left to use
        self.pending_line = summary_line(row, settings.rounds)
        if settings.checkpoint_dir is not None and settings.write_checkpoints:
            if processes.is_writer():  # the others resume from process 0's file
                with processes.local_only():
                    self._save()

    def _advance(self):
        started = time.perf_counter()
        state, model = self.state, self.model
        next_round = state.round + 1
        last_steps = state.results[-1]["steps"] if state.results else 0
        new, note = self.plan.next_masks(
            model, wrapping.get_masks(model), next_round, state.total_steps,
            previous_step=state.total_steps - last_steps,
            quiet=next_round == 1 and "already_pruned" in self.warned,
        )
        self._warn_once("no_prune", note)
        if next_round == self.settings.rounds - 1:
            self._warn_once("policy", self.plan.policy_note(new))
        wrapping.set_masks(model, new)
        self._rewind(next_round)
        rewinding.mask_optimizer_slots(model)
        state.round, state.pending_advance = next_round, False
        state.round_start_step = state.total_steps
        state.record_masks(new)
        self._start_round_log()
        self.boundary_seconds = time.perf_counter() - started

    def _rewind(self, next_round):
        rewind_to, model = self.settings.rewind_to, self.model
        if rewind_to == rewinding.LR:
            rewinding.rewind(model, self.state.init_point, keep_weights=True)
        elif isinstance(rewind_to, int):
            rewinding.rewind(model, self.state.rewind_point)
        elif rewind_to == rewinding.INIT:
            rewinding.rewind(model, self.state.init_point)
        if self.settings.control == CONTROL_REINIT:
            rewinding.reinitialize(model, self.plan.seed_for(next_round))

    def _start_round_log(self):
        self.instability = None
        if self.settings.early_bird is not None:
            self.settings.early_bird.reset()
        self.round_start_iteration = optimizer_state.iterations(self.model.optimizer)
        self.log.start(self.state.round, self.state.round_start_step, self.state.round_start_epoch)
        if self.state.round == 0:
            self.boundary_seconds = 0.0

    def _measure_instability(self):
        started = time.perf_counter()
        result = self.settings.instability.measure(self.model)
        self.instability = {
            "instability_barrier": result.barrier,
            "instability_errors": list(result.errors),
            "instability_seconds": time.perf_counter() - started,
        }
        if self.settings.verbose:
            print(f"IMP round {self.state.round}: instability barrier "
                  f"{100 * result.barrier:.2f}% error", flush=True)

    def _early_bird_emerged(self, masks):
        """Feeds the Early-Bird tracker the masks the next round would get."""
        early_bird, state = self.settings.early_bird, self.state
        if early_bird is None or state.round + 1 >= self.settings.rounds:
            return False
        ahead, _ = self.plan.next_masks(
            self.model, masks, state.round + 1, state.round_start_step + self.log.steps,
            state.round_start_step, quiet=True)
        early_bird.update(ahead)
        return early_bird.emerged and self.log.epochs < self.settings.epochs_per_round

    # ---------------------------------------------------------- checkpoints

    def _save(self):
        settings = self.settings
        keep = self.state.round in settings.keep_checkpoints
        imp_state.save(
            settings.checkpoint_path, self.model, self.state, settings.config(self.plan.keys),
            also_to=settings.round_checkpoint_path(self.state.round) if keep else None)

    def _restore(self):
        settings = self.settings
        path, shared = self._resume_from()
        if path is None:
            return False
        # A run starting from another's checkpoint has its own control and seed.
        self.state = imp_state.load(path, self.model, settings.config(self.plan.keys),
                                    ignore=("control", "seed") if shared else ())
        if shared:
            for row in self.state.results:
                row["shared"] = True
        if settings.verbose:
            where = "finished" if self.state.finished else f"round {self.state.round + 1}"
            print(f"IMP {'started' if shared else 'resumed'} from {path} at {where}.", flush=True)
        return True

    # ------------------------------------------------------------- helpers

    def _warn_once(self, kind, message):
        if message is None or kind in self.warned:
            return
        self.warned.add(kind)
        warnings.warn(message, stacklevel=4)

    def _print_pending_line(self):
        if self.pending_line is not None and self.settings.verbose:
            print(self.pending_line, flush=True)
        self.pending_line = None

    def ticket_info(self):
        """What a ticket file records about the run (see the callback's)."""
        others = wrapping.non_pruned_weights(self.model) if self.model is not None else []

        def named(point):
            if point is None:
                return None
            return [(v.path, value) for v, value in zip(others, point.other_weights)]

        results = self.state.results
        return {
            "round": results[-1]["round"] if results else None,
            "metrics": results[-1] if results else {},
            "rewind_step": None if self.state.rewind_point is None else self.state.rewind_point.step,
            "other_init": named(self.state.init_point),
            "other_rewind": named(self.state.rewind_point),
        }
