"""`IterativeMagnitudePruning`: every IMP round inside one `model.fit`.

Round 0 trains the dense network. At the end of each round the callback
computes the next masks (magnitude pruning of the survivors, or a control),
rewinds the survivors (to θ0, to θk, or not at all), resets the optimizer and
lets `fit` go on with the next epoch. The compiled train function of round 0
is reused throughout: only variable values change between rounds.
"""

import numbers
import os
import time

import keras
import numpy as np
from keras import ops

from keras_lottery import checkpoint as checkpoint_lib
from keras_lottery import file_io
from keras_lottery import optimizer_state
from keras_lottery import pruning
from keras_lottery import schedules as schedules_lib
from keras_lottery.wrapper import INIT, REWIND
from keras_lottery.wrapping import find_wrappers
from keras_lottery.wrapping import layer_masks
from keras_lottery.wrapping import non_pruned_weights
from keras_lottery.wrapping import set_layer_masks

LAYERWISE = "layerwise"
GLOBAL = "global"
_SCOPES = (LAYERWISE, GLOBAL)
REWIND_INIT = "init"
REWIND_LR = "lr"
REWIND_FINETUNE = "finetune"
_REWIND_NAMES = (REWIND_INIT, REWIND_LR, REWIND_FINETUNE)
CONTROL_REINIT = "reinit"
CONTROL_RANDOM_PRUNE = "random_prune"
_CONTROLS = (CONTROL_REINIT, CONTROL_RANDOM_PRUNE)


class IterativeMagnitudePruning(keras.callbacks.Callback):
    """Runs all rounds of Iterative Magnitude Pruning inside one `model.fit`.

    Each round trains `epochs_per_round` epochs. At the end of round r (but
    the last) the callback prunes to the schedule's target for round r + 1,
    rewinds the surviving weights, resets the optimizer and training goes on.
    Call `fit(..., epochs=imp.total_epochs)`.

    Rewinding (`rewind_to`):
    - `"init"` (default): survivors back to θ0, every other model weight
      (biases, normalisation) back to its value at the start of `fit`,
      optimizer slots zeroed, step counter 0 — the lottery ticket procedure.
    - an int k: weights and optimizer state back to their values after
      iteration k of round 0 (Frankle et al. 2020's rewinding); the step
      counter restarts at k, so learning-rate schedules replay from k.
    - `"lr"`: keep the trained weights, zero the slots and restart the
      step counter (learning-rate rewinding, Renda et al. 2020).
    - `"finetune"`: keep weights and optimizer state (fine-tuning).

    Controls (`control`):
    - `"reinit"`: same masks, survivors drawn afresh from each layer's own
      initializer with a new seed every round.
    - `"random_prune"`: random masks with the same per-layer densities,
      survivors rewound to θ0.
    Pass `reference_masks=ticket_imp.mask_history` to make a control use a
    ticket run's masks (or per-layer counts) exactly, as in the paper.

    Results: `.results` holds one dict per round with `round`, `density`,
    `layer_density`, `kept`, `total`, `steps`, `best_val_loss`,
    `best_val_loss_step` (steps since the round started at the epoch of the
    lowest `monitor` value), `at_best` (that epoch's logs), the last epoch's
    logs (`loss`, `val_accuracy`, ...) and `seconds`. Every epoch's `logs`
    gain `lottery_round` and `lottery_density`, so History, CSVLogger and
    TensorBoard (placed after this callback) record them.

    Args:
        rounds: number of trained rounds, the dense round 0 included.
        epochs_per_round: epochs of each round. For the paper's "validate
            every 100 iterations", use `steps_per_epoch=100` in `fit`.
        rate: per-round pruning rate of the default geometric schedule: a
            float (the output layer prunes at half of it) or a dict with
            "default", optionally "output" and layer names.
        schedule: instead of `rate`, a `keras_lottery.schedules` schedule or
            a tfmot-style pruning schedule (see `keras_lottery.schedules`).
        scope: "layerwise" (each layer to its own target) or "global" (one
            magnitude threshold over all pruned layers; layers whose rate is 0
            are left out of the pool).
        rewind_to: "init", an iteration k (int), "lr" or "finetune".
        one_shot: prune once, after round 0, straight to the sparsity the
            schedule reaches in the last round.
        control: None, "reinit" or "random_prune".
        reference_masks: optional list (one entry per round) of
            `{"layer/weight": bool array}` masks from a ticket run to use
            instead of this run's own magnitude pruning.
        seed: seed of the controls' random draws (default: drawn from NumPy's
            global generator, which `keras.utils.set_random_seed` seeds).
        monitor: log key whose minimum marks the early-stopping iteration.
        output_layers: names of the layers treated as output layers (default:
            the last wrapped layer).
        checkpoint_dir: if set, the whole IMP state (model and optimizer
            variables, masks, snapshots, results, round, seeds) is written
            there atomically at every round boundary. A new run with the same
            settings and `checkpoint_dir` resumes from it: call
            `fit(..., initial_epoch=imp.initial_epoch)`. At most the round in
            progress is lost.
        verbose: 1 prints one summary line per round, 0 is silent.

    A non-finite `loss` stops training at the end of its epoch
    (`stopped_reason` says why); the masks and the last checkpoint are those
    of the last good round.

    Example:
    >>> import numpy as np
    >>> model = keras_lottery.wrap(keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(16, name="dense"),
    ...     keras.layers.Dense(2, name="out")]))
    >>> model.compile("adam", "mse")
    >>> imp = IterativeMagnitudePruning(rounds=3, epochs_per_round=1, verbose=0)
    >>> _ = model.fit(np.ones((32, 8)), np.ones((32, 2)), verbose=0,
    ...               epochs=imp.total_epochs, callbacks=[imp])
    >>> [row["layer_density"]["dense"] for row in imp.results]
    [1.0, 0.796875, 0.640625]
    """

    def __init__(
        self,
        rounds,
        epochs_per_round,
        rate=None,
        schedule=None,
        scope=LAYERWISE,
        rewind_to=REWIND_INIT,
        one_shot=False,
        control=None,
        reference_masks=None,
        seed=None,
        monitor="val_loss",
        output_layers=None,
        checkpoint_dir=None,
        verbose=1,
    ):
        super().__init__()
        self.rounds = _positive_int(rounds, "rounds")
        self.epochs_per_round = _positive_int(epochs_per_round, "epochs_per_round")
        if scope not in _SCOPES:
            raise ValueError(f"scope must be one of {_SCOPES}; received {scope!r}.")
        self.scope = scope
        self.rewind_to = _check_rewind(rewind_to)
        if control is not None and control not in _CONTROLS:
            raise ValueError(
                f"control must be None or one of {_CONTROLS}; received {control!r}."
            )
        self.control = control
        schedule = schedules_lib.get(schedule, rate)
        if one_shot:
            schedule = schedules_lib.OneShot(schedule, max(1, self.rounds - 1))
        self.schedule = schedule
        self.one_shot = bool(one_shot)
        if reference_masks is not None and len(reference_masks) < self.rounds:
            raise ValueError(
                f"reference_masks has {len(reference_masks)} entries; it needs "
                f"one per round ({self.rounds})."
            )
        self.reference_masks = reference_masks
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        self.seed = int(seed)
        self.monitor = monitor
        self.output_layers = None if output_layers is None else list(output_layers)
        self.verbose = int(verbose)
        self.checkpoint_dir = checkpoint_dir
        # Set to False on all but one worker of a multi-worker run, which
        # all read the one checkpoint (see keras_lottery.multi_worker).
        self._checkpoint_writer = True
        self.stopped_reason = None
        self.results = []
        self.round = 0
        self._mask_history = []
        self._reset_round_trackers()
        self._rewind_state = None
        self.rewind_step = None
        if not isinstance(self.rewind_to, int) or self.rewind_to == 0:
            # Keras dispatches batch hooks asynchronously only when no
            # callback overrides them; only θk snapshots need one.
            self.on_train_batch_end = super().on_train_batch_end

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

    @property
    def initial_epoch(self):
        """The epoch to resume at: `fit(..., initial_epoch=imp.initial_epoch)`.

        0 without a checkpoint; otherwise the first epoch of the round the
        checkpoint was taken at (`total_epochs` once every round is done).
        """
        path = self.checkpoint_path
        if path is None or not os.path.exists(path):
            return 0
        _, metadata = checkpoint_lib.read(path)
        if metadata.get("finished"):
            return self.total_epochs
        return int(metadata["round"]) * self.epochs_per_round

    @property
    def masks(self):
        """Current `{"layer/weight": bool array}` masks of the model."""
        return layer_masks(self.model)

    @property
    def mask_history(self):
        """Masks in effect during each round so far, one dict per round."""
        return [
            {
                key: _unpack(bits, shape)
                for key, (bits, shape) in entry.items()
            }
            for entry in self._mask_history
        ]

    @property
    def initial_other_weights(self):
        """`[(path, value)]` of the non-pruned weights (biases, normalisation)
        at the start of `fit`: what `rewind_to="init"` restores them to."""
        if getattr(self, "_other_init", None) is None:
            return None
        return [
            (v.path, value) for v, value in zip(self._other_weights, self._other_init)
        ]

    # ----------------------------------------------------------------- hooks

    def on_train_begin(self, logs=None):
        self._wrappers = find_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                f"Model '{self.model.name}' has no LotteryWrapper layers, so "
                "there is nothing to prune. Wrap it first: "
                "`model = keras_lottery.wrap(model)`."
            )
        for wrapper in self._wrappers:
            wrapper._require_built()
        names = [w.name for w in self._wrappers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"Several wrapped layers are named {duplicates}; give layers "
                "unique names so their masks can be told apart."
            )
        self._layer_names = names
        self._check_distribution()
        self._output_layers = self._resolve_output_layers()
        self.schedule.validate(self._layer_names, self._output_layers)
        epochs = self.params.get("epochs")
        if epochs is not None and epochs != self.total_epochs:
            raise ValueError(
                f"fit(epochs={epochs}) does not match this callback's "
                f"{self.rounds} rounds x {self.epochs_per_round} epochs; call "
                f"fit(..., epochs=imp.total_epochs) (= {self.total_epochs})."
            )
        steps = self.params.get("steps")
        if isinstance(self.rewind_to, int) and steps:
            round_steps = steps * self.epochs_per_round
            if self.rewind_to > round_steps:
                raise ValueError(
                    f"rewind_to={self.rewind_to} is beyond round 0, which is "
                    f"{round_steps} steps long ({self.epochs_per_round} epochs "
                    f"x {steps} steps). Use an iteration <= {round_steps}."
                )
        self._check_reference_masks()
        self._other_weights = non_pruned_weights(self.model)
        self._other_init = [ops.convert_to_numpy(v.value) for v in self._other_weights]
        self._other_rewind = None
        self._total_steps = 0
        self._expected_epoch = 0
        self._finished = False
        path = self.checkpoint_path
        if path is not None and os.path.exists(path):
            self._restore(path)
            self._start_round(record_history=False)
        else:
            self._start_round()

    def on_epoch_begin(self, epoch, logs=None):
        if self._expected_epoch is not None:
            expected, self._expected_epoch = self._expected_epoch, None
            if epoch != expected:
                raise ValueError(
                    f"fit starts at epoch {epoch}, but the IMP state is at "
                    f"epoch {expected} (round {self.round}). Call "
                    "fit(..., initial_epoch=imp.initial_epoch) to resume."
                )
        self._epoch_start_step = self._steps_in_round

    def on_train_batch_end(self, batch, logs=None):
        if self._rewind_state is not None or self.round != 0:
            return
        step = self._epoch_start_step + batch + 1
        if step >= self.rewind_to:
            self._take_rewind_point(step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(loss):
            self._stop(f"loss is {loss} in round {self.round} (epoch {epoch})")
            return
        iteration = optimizer_state.optimizer_iteration(self.model.optimizer)
        steps_now = iteration - self._round_start_iteration
        self._total_steps += steps_now - self._steps_in_round
        self._steps_in_round = steps_now
        value = logs.get(self.monitor)
        if value is not None and np.isfinite(value) and value < self._best_value:
            self._best_value = float(value)
            self._best_step = self._steps_in_round
            self._best_logs = {k: _to_float(v) for k, v in logs.items()}
        logs["lottery_round"] = self.round
        logs["lottery_density"] = self._density
        self._epoch_in_round += 1
        if self._epoch_in_round == self.epochs_per_round:
            self._end_round(logs)

    # ---------------------------------------------------------------- rounds

    def _stop(self, reason):
        self.stopped_reason = reason
        self.model.stop_training = True
        saved = (
            f"; the checkpoint in {self.checkpoint_dir} holds the last good round"
            if self.checkpoint_dir
            else ""
        )
        print(
            f"IMP stopped: {reason}. The masks are those of round {self.round} "
            f"(nothing was pruned after the failure){saved}. Lower the "
            "learning rate or check the data, then resume or rerun.",
            flush=True,
        )

    def _start_round(self, record_history=True):
        masks = layer_masks(self.model)
        self._density = pruning.density(masks)
        self._layer_density = self._layer_densities(masks)
        self._kept = sum(int(m.sum()) for m in masks.values())
        self._total = sum(m.size for m in masks.values())
        if record_history:
            self._mask_history.append(
                {k: (np.packbits(m.ravel()), m.shape) for k, m in masks.items()}
            )
        self._round_start_iteration = optimizer_state.optimizer_iteration(
            self.model.optimizer
        )
        self._round_start_time = time.perf_counter()
        self._reset_round_trackers()

    def _reset_round_trackers(self):
        self._epoch_in_round = 0
        self._steps_in_round = 0
        self._epoch_start_step = 0
        self._best_value = np.inf
        self._best_step = None
        self._best_logs = None

    def _end_round(self, logs):
        if isinstance(self.rewind_to, int) and self.rewind_to > 0 and self.round == 0:
            if self._rewind_state is None:
                raise ValueError(
                    f"rewind_to={self.rewind_to} is beyond round 0, which "
                    f"was {self._steps_in_round} steps long. Use an "
                    f"iteration <= {self._steps_in_round}."
                )
        row = {
            "round": self.round,
            "density": self._density,
            "layer_density": dict(self._layer_density),
            "kept": self._kept,
            "total": self._total,
            "steps": self._steps_in_round,
            "best_val_loss": None if self._best_step is None else self._best_value,
            "best_val_loss_step": self._best_step,
            "at_best": self._best_logs,
            "control": self.control,
            "rewind_to": self.rewind_to,
            "seconds": time.perf_counter() - self._round_start_time,
        }
        for key, value in logs.items():
            if key not in row and not key.startswith("lottery_"):
                row[key] = _to_float(value)
        self.results.append(row)
        if self.verbose:
            print(_summary_line(row, self.rounds, self.monitor), flush=True)
        if self.round + 1 < self.rounds:
            self._advance()
        else:
            self._finished = True
        if self.checkpoint_dir is not None and self._checkpoint_writer:
            self._save()

    def _advance(self):
        new_masks = self._next_masks(self.round + 1)
        set_layer_masks(self.model, new_masks)
        self._rewind(self.round + 1)
        self.round += 1
        self._start_round()

    # ----------------------------------------------------------- checkpoints

    def _config(self):
        return {
            "rounds": self.rounds,
            "epochs_per_round": self.epochs_per_round,
            "schedule": repr(self.schedule),
            "scope": self.scope,
            "rewind_to": self.rewind_to,
            "one_shot": self.one_shot,
            "control": self.control,
            "seed": self.seed,
            "monitor": self.monitor,
            "layers": self._layer_names,
        }

    def _save(self):
        arrays = {}
        variables = self.model.variables
        for i, v in enumerate(variables):
            arrays[f"model:{i}"] = ops.convert_to_numpy(v.value)
        optimizer_variables = self.model.optimizer.variables
        for i, v in enumerate(optimizer_variables):
            arrays[f"optimizer:{i}"] = ops.convert_to_numpy(v.value)
        for wrapper in self._wrappers:
            for key, value in wrapper.host_snapshots().items():
                arrays[f"host:{wrapper.name}/{key}"] = value
        for r, entry in enumerate(self._mask_history):
            for key, (bits, _) in entry.items():
                arrays[f"history:{r}:{key}"] = bits
        for i, value in enumerate(self._other_init):
            arrays[f"other_init:{i}"] = value
        for i, value in enumerate(self._other_rewind or []):
            arrays[f"other_rewind:{i}"] = value
        if self._rewind_state is not None:
            for i, value in enumerate(self._rewind_state["slots"]):
                arrays[f"rewind_slot:{i}"] = value
        metadata = {
            "config": file_io.json_safe(self._config()),
            "round": self.round,
            "finished": self._finished,
            "results": file_io.json_safe(self.results),
            "total_steps": self._total_steps,
            "rewind_step": self.rewind_step,
            "rewind_iterations": None
            if self._rewind_state is None
            else self._rewind_state["iterations"],
            "has_other_rewind": self._other_rewind is not None,
            "history_shapes": [
                {key: list(shape) for key, (_, shape) in entry.items()}
                for entry in self._mask_history
            ],
            "model_variables": [[v.path, list(v.shape)] for v in variables],
            "optimizer_variables": [
                [v.path, list(v.shape)] for v in optimizer_variables
            ],
        }
        checkpoint_lib.write(self.checkpoint_path, arrays, metadata)

    def _restore(self, path):
        arrays, metadata = checkpoint_lib.read(path)
        saved, now = metadata.get("config", {}), file_io.json_safe(self._config())
        differences = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if differences:
            details = ", ".join(
                f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in differences
            )
            raise checkpoint_lib.CheckpointError(
                f"{path} was written by a run with other settings ({details}). "
                "Resume with the same settings, or use another checkpoint_dir."
            )
        optimizer = self.model.optimizer
        if not optimizer.built:
            # Keras builds the slots at the first step; they must exist now to
            # receive the saved values.
            optimizer.build(self.model.trainable_variables)
        variables = self.model.variables
        optimizer_variables = optimizer.variables
        shapes = [[v.path, list(v.shape)] for v in variables]
        if [s[1] for s in metadata["model_variables"]] != [s[1] for s in shapes] or len(
            metadata["optimizer_variables"]
        ) != len(optimizer_variables):
            raise checkpoint_lib.CheckpointError(
                f"{path} holds {len(metadata['model_variables'])} model and "
                f"{len(metadata['optimizer_variables'])} optimizer variables; "
                f"this model has {len(variables)} and {len(optimizer_variables)} "
                "(or their shapes differ). Resume with the same model and optimizer."
            )
        needed = [f"model:{i}" for i in range(len(variables))] + [
            f"optimizer:{i}" for i in range(len(optimizer_variables))
        ]
        needed += [
            f"host:{w.name}/{key}" for w in self._wrappers for key in w.host_snapshots()
        ]
        missing = [name for name in needed if name not in arrays]
        if missing:
            raise checkpoint_lib.CheckpointError(f"{path} is missing {missing[:5]}.")
        for i, v in enumerate(variables):
            v.assign(arrays[f"model:{i}"])
        for i, v in enumerate(optimizer_variables):
            v.assign(arrays[f"optimizer:{i}"])
        for w in self._wrappers:
            w.set_host_snapshots(
                {key: arrays[f"host:{w.name}/{key}"] for key in w.host_snapshots()}
            )
        self.round = int(metadata["round"])
        self._finished = bool(metadata["finished"])
        self.results = list(metadata["results"])
        self._total_steps = int(metadata["total_steps"])
        self.rewind_step = metadata["rewind_step"]
        self._mask_history = [
            {
                key: (arrays[f"history:{r}:{key}"], tuple(shape))
                for key, shape in entry.items()
            }
            for r, entry in enumerate(metadata["history_shapes"])
        ]
        self._other_init = [
            arrays[f"other_init:{i}"] for i in range(len(self._other_weights))
        ]
        if metadata["has_other_rewind"]:
            self._other_rewind = [
                arrays[f"other_rewind:{i}"] for i in range(len(self._other_weights))
            ]
        if metadata["rewind_iterations"] is not None:
            slots = sorted(
                (int(k.split(":")[1]), v) for k, v in arrays.items() if k.startswith("rewind_slot:")
            )
            self._rewind_state = {
                "iterations": list(metadata["rewind_iterations"]),
                "slots": [v for _, v in slots],
            }
        self._expected_epoch = (
            self.total_epochs if self._finished else self.round * self.epochs_per_round
        )
        if self.verbose:
            state = "finished" if self._finished else f"round {self.round}"
            print(f"IMP resumed from {path} at {state}.", flush=True)

    def _next_masks(self, next_round):
        current = layer_masks(self.model)
        if self.reference_masks is not None and self.control != CONTROL_RANDOM_PRUNE:
            reference = self.reference_masks[next_round]
            return {k: np.asarray(v, bool) & current[k] for k, v in reference.items()}
        if self.reference_masks is not None:
            counts = {
                k: int(np.count_nonzero(v))
                for k, v in self.reference_masks[next_round].items()
            }
            return pruning.prune_random(current, counts, self._seed_for(next_round))
        targets = self.schedule.layer_targets(
            next_round, self._total_steps, self._layer_names, self._output_layers
        )
        if targets is None:
            return current
        weights = self._read_weights()
        if self.scope == LAYERWISE:
            densities = {
                key: 1.0 - targets[key.rpartition("/")[0]] for key in current
            }
            magnitude = pruning.prune_layerwise(weights, current, densities)
        else:
            pooled = [k for k in current if targets[k.rpartition("/")[0]] > 0]
            overall = self.schedule.target(next_round, self._total_steps)
            magnitude = pruning.prune_global(
                weights, current, 1.0 - overall, names=pooled
            )
        if self.control == CONTROL_RANDOM_PRUNE:
            counts = {k: int(m.sum()) for k, m in magnitude.items()}
            return pruning.prune_random(current, counts, self._seed_for(next_round))
        return magnitude

    def _rewind(self, next_round):
        self._rewind_weights_and_optimizer(next_round)
        optimizer_state.mask_slots(
            self.model.optimizer,
            [(p.variable, p.mask) for w in self._wrappers for p in w.prunable_weights],
        )

    def _rewind_weights_and_optimizer(self, next_round):
        optimizer = self.model.optimizer
        trainable = self.model.trainable_variables
        if self.rewind_to in (REWIND_LR, REWIND_FINETUNE):
            if self.rewind_to == REWIND_LR:
                optimizer_state.restore(optimizer, None, trainable)
            self._reinitialise_if_control(next_round)
            return
        if isinstance(self.rewind_to, int) and self.rewind_to > 0:
            for wrapper in self._wrappers:
                wrapper.rewind(REWIND)
            for variable, value in zip(self._other_weights, self._other_rewind):
                variable.assign(value)
            self._reinitialise_if_control(next_round)
            optimizer_state.restore(optimizer, self._rewind_state, trainable)
            return
        for wrapper in self._wrappers:
            wrapper.rewind(INIT)
        for variable, value in zip(self._other_weights, self._other_init):
            variable.assign(value)
        self._reinitialise_if_control(next_round)
        optimizer_state.restore(optimizer, None, trainable)

    def _reinitialise_if_control(self, next_round):
        if self.control != CONTROL_REINIT:
            return
        seed = self._seed_for(next_round)
        for w_index, wrapper in enumerate(self._wrappers):
            for p_index, p in enumerate(wrapper.prunable_weights):
                initializer = _seeded_initializer(
                    wrapper.layer, p.name, seed + 7919 * w_index + 104729 * p_index
                )
                fresh = ops.convert_to_numpy(
                    initializer(tuple(p.variable.shape), dtype=p.variable.dtype)
                )
                mask = ops.convert_to_numpy(p.mask.value).astype(fresh.dtype)
                p.variable.assign(fresh * mask)

    def _take_rewind_point(self, step):
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        for wrapper in self._wrappers:
            wrapper.take_snapshot(REWIND)
        self._other_rewind = [
            ops.convert_to_numpy(v.value) for v in self._other_weights
        ]
        self._rewind_state = optimizer_state.capture(self.model.optimizer)
        self.rewind_step = step
        if step != self.rewind_to and self.verbose:
            print(
                f"IMP: rewind point taken at iteration {step}, the first "
                f"batch end at or after rewind_to={self.rewind_to} (batch "
                "hooks run once per steps_per_execution steps).",
                flush=True,
            )

    # --------------------------------------------------------------- helpers

    def _seed_for(self, round_index):
        state = np.random.SeedSequence([self.seed, round_index]).generate_state(1)
        return int(state[0] % (2**31 - 1))

    def _read_weights(self):
        return {
            f"{wrapper.name}/{p.name}": ops.convert_to_numpy(p.variable.value)
            for wrapper in self._wrappers
            for p in wrapper.prunable_weights
        }

    def _layer_densities(self, masks):
        kept, total = {}, {}
        for key, mask in masks.items():
            layer = key.rpartition("/")[0]
            kept[layer] = kept.get(layer, 0) + int(mask.sum())
            total[layer] = total.get(layer, 0) + mask.size
        return {layer: kept[layer] / total[layer] for layer in kept}

    def _check_distribution(self):
        strategy = getattr(self.model, "distribute_strategy", None)
        replicas = getattr(strategy, "num_replicas_in_sync", 1)
        if replicas <= 1:
            return
        limits = []
        if getattr(self.model, "steps_per_execution", 1) > 1:
            limits.append(f"steps_per_execution={self.model.steps_per_execution}")
        if getattr(self.model, "jit_compile", False) is True:
            limits.append("jit_compile=True")
        if limits:
            raise ValueError(
                f"{' and '.join(limits)} do not work with "
                f"{type(strategy).__name__} ({replicas} replicas) in Keras 3's "
                "model.fit (keras-team/keras#19246). Compile with "
                "steps_per_execution=1 and jit_compile=False under a "
                "distribution strategy."
            )

    def _resolve_output_layers(self):
        if self.output_layers is None:
            return [self._layer_names[-1]]
        unknown = sorted(set(self.output_layers) - set(self._layer_names))
        if unknown:
            raise ValueError(
                f"output_layers names layers that are not wrapped: {unknown}. "
                f"Wrapped layers: {self._layer_names}."
            )
        return list(self.output_layers)

    def _check_reference_masks(self):
        if self.reference_masks is None:
            return
        expected = {
            f"{w.name}/{p.name}": tuple(p.variable.shape)
            for w in self._wrappers
            for p in w.prunable_weights
        }
        for round_index, masks in enumerate(self.reference_masks[: self.rounds]):
            shapes = {k: tuple(np.shape(v)) for k, v in masks.items()}
            if shapes != expected:
                raise ValueError(
                    f"reference_masks[{round_index}] does not match the model: "
                    f"it has {shapes}, the model's wrapped weights are "
                    f"{expected}."
                )


def _unpack(bits, shape):
    count = int(np.prod(shape))
    return np.unpackbits(bits, count=count).astype(bool).reshape(shape)


def _seeded_initializer(layer, weight_name, seed):
    candidates = [f"{weight_name}_initializer"]
    if weight_name.endswith("_kernel"):
        candidates.append(weight_name[: -len("_kernel")] + "_initializer")
    candidates.append("depthwise_initializer")
    for attribute in candidates:
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            break
    else:
        raise ValueError(
            f"control='reinit' cannot find the initializer of "
            f"'{layer.name}/{weight_name}' (looked for {candidates}). Give "
            f"the layer a `{weight_name}_initializer` attribute."
        )
    initializer = keras.initializers.get(initializer)
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = seed
        initializer = type(initializer).from_config(config)
    return initializer


def _summary_line(row, rounds, monitor):
    parts = [
        f"IMP round {row['round']}/{rounds - 1}",
        f"density {100 * row['density']:.2f}%",
    ]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    if row["best_val_loss_step"] is not None:
        parts.append(
            f"best {monitor} {row['best_val_loss']:.4f} @ step {row['best_val_loss_step']}"
        )
    parts.append(f"{row['seconds']:.1f}s")
    return " | ".join(parts)


def _to_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _positive_int(value, what):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1; received {value!r}.")
    return int(value)


def _check_rewind(rewind_to):
    if isinstance(rewind_to, numbers.Integral) and not isinstance(rewind_to, bool):
        if rewind_to < 0:
            raise ValueError(
                f"rewind_to must be >= 0 when it is an iteration; received {rewind_to}."
            )
        return REWIND_INIT if rewind_to == 0 else int(rewind_to)
    if rewind_to in _REWIND_NAMES:
        return rewind_to
    raise ValueError(
        f"rewind_to must be one of {_REWIND_NAMES} or an iteration (int >= 0); "
        f"received {rewind_to!r}."
    )
