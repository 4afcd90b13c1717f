"""`IterativeMagnitudePruning`: every IMP round inside one `model.fit`.

The callback holds the arguments (`keras_lottery.imp.settings.IMPSettings`)
and relays Keras' hooks to one `keras_lottery.imp.run.IMPRun`, which holds
the run and does its steps: the mask decision in `RoundPlan`, rewinding in
`keras_lottery.core.rewinding`, the state and checkpoints in
`keras_lottery.imp.state` (docs/ARCHITECTURE.md walks through one round).
Its base is Keras' `MonitorCallback`: "best" for `monitor` and `mode` means
what it means for EarlyStopping.

A round ends at the end of its last epoch: every callback sees the trained
network of that round in `on_epoch_end`, whatever its place in the list. The
prune and the rewind into the next round happen at the start of the next
epoch, before its first batch.
"""

import dataclasses
import inspect
import math

from keras_lottery.backend import keras_internals
from keras_lottery.core import rewinding
from keras_lottery.core import wrapping
from keras_lottery.imp.run import IMPRun
from keras_lottery.imp.settings import CONTROL_RANDOM_PRUNE  # noqa: F401 (re-exported)
from keras_lottery.imp.settings import CONTROL_REINIT  # noqa: F401 (re-exported)
from keras_lottery.imp.settings import CONTROLS  # noqa: F401 (re-exported)
from keras_lottery.imp.settings import IMPSettings
from keras_lottery.imp.settings import watches_batches
from keras_lottery.sparsity import vocabulary

UNIFORM = vocabulary.UNIFORM
GLOBAL = vocabulary.GLOBAL
REWIND_INIT = rewinding.INIT
REWIND_LR = rewinding.LR
REWIND_FINETUNE = rewinding.FINETUNE
_SETTINGS = frozenset(field.name for field in dataclasses.fields(IMPSettings))
_RENAMED = ("scope", "granularity", "pattern", "norm")


class IterativeMagnitudePruning(keras_internals.MonitorCallback):
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

    def __init__(self, *args, **kwargs):
        vocabulary.refuse_renamed("IterativeMagnitudePruning",
                                  {k: v for k, v in kwargs.items() if k not in _SETTINGS},
                                  renamed=_RENAMED)
        settings = IMPSettings(*args, **kwargs)
        super().__init__(monitor=settings.monitor, mode=settings.mode)
        self.settings = settings
        self.run = IMPRun(settings, self._is_better, on_round_end=self.on_round_end)

    # help() and inspect show the arguments: the fields of IMPSettings.
    __signature__ = inspect.signature(IMPSettings)

    # --------------------------------------------------------- public state

    total_epochs = property(lambda self: self.settings.total_epochs,
                            doc="Epochs to pass to `fit`: `rounds * epochs_per_round`.")
    rounds = property(lambda self: self.settings.rounds, doc="Rounds, the dense round 0 included.")

    @property
    def write_checkpoints(self):
        """Whether this worker writes checkpoints (False on all but the chief)."""
        return self.settings.write_checkpoints

    @write_checkpoints.setter
    def write_checkpoints(self, value):
        self.settings.write_checkpoints = bool(value)

    epochs_per_round = property(lambda self: self.settings.epochs_per_round,
                                doc="Epochs of each round.")
    results = property(lambda self: self.run.state.results, doc="One dict per finished round.")

    def round_checkpoint_path(self, round_index):
        """Where `keep_checkpoints` keeps the checkpoint of `round_index`."""
        return self.settings.round_checkpoint_path(round_index)

    round = property(lambda self: self.run.state.round, doc="The current round (the last once finished).")
    finished = property(lambda self: self.run.state.finished, doc="Whether every round has run.")

    @property
    def initial_epoch(self):
        """The epoch to resume at: `fit(..., initial_epoch=imp.initial_epoch)`.

        0 without a checkpoint (of its own, or `start_from`); otherwise the
        first epoch of the round to run next (`total_epochs` once every round
        is done).
        """
        return self.run.initial_epoch()

    stopped_reason = property(lambda self: self.run.stopped_reason,
                              doc="Why training stopped before the last round, or None.")

    @property
    def masks(self):
        """The model's current `{key: bool array}` masks."""
        return wrapping.get_masks(self.model)

    @property
    def mask_history(self):
        """The masks in effect during each round so far, one dict per round."""
        return self.run.state.mask_history()

    @property
    def rewind_step(self):
        """The iteration θk was taken at (None without `rewind_to=k`)."""
        point = self.run.state.rewind_point
        return None if point is None else point.step

    def ticket_info(self):
        """What a ticket file records about the run (`save_ticket(imp=...)`):
        `round`, `metrics` (the last round's row), `rewind_step`, and
        `other_init` / `other_rewind` (`[(path, value)]` of the non-pruned
        weights at θ0 / θk, or None)."""
        return self.run.ticket_info()

    def on_round_end(self, round_index, row):
        """Called at the end of every round while the model holds the round's
        trained weights; override it (or pass `on_round_end=`) to save or
        evaluate them. `row` is the round's results row.
        """
        if self.settings.on_round_end is not None:
            self.settings.on_round_end(round_index, self.model, row)

    # --------------------------------------------------------------- hooks

    def on_train_begin(self, logs=None):
        self.monitor_op = None  # resolved at the first monitored epoch, as EarlyStopping does
        self.run.begin(self.model, self.params)

    def on_epoch_begin(self, epoch, logs=None):
        self.run.epoch_begin(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.run.epoch_end(epoch, logs if logs is not None else {})

    def on_train_end(self, logs=None):
        self.run.end()

    def _is_better(self, value, best):
        """Keras' own comparison for `monitor` and `mode` (NaN never wins)."""
        if math.isnan(value):
            return False
        if self.monitor_op is None:
            self._set_monitor_op()
        return bool(self._is_improvement(value, best))


class _IterativeMagnitudePruningWithBatchHooks(IterativeMagnitudePruning):
    """The callback with batch hooks, used only when it needs them (θk at an
    iteration, or round callbacks that watch batches): Keras dispatches batch
    hooks asynchronously only when no callback overrides them."""

    def on_train_batch_begin(self, batch, logs=None):
        self.run.round_callbacks.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.run.batch_end(batch)
        self.run.round_callbacks.on_train_batch_end(batch, logs)


def _needs_batch_hooks(args, kwargs):
    """From the arguments as passed: building `IMPSettings` here too would
    check them twice and draw a default seed twice."""
    try:
        bound = inspect.signature(IMPSettings).bind(
            *args, **{k: v for k, v in kwargs.items() if k in _SETTINGS})
        return watches_batches(bound.arguments.get("rewind_to"),
                               bound.arguments.get("round_callbacks"))
    except (TypeError, AttributeError):
        return False  # __init__ reports the bad arguments
