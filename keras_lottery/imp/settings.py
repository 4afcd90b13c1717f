"""The settings of one IMP run: the arguments of `IterativeMagnitudePruning`,
checked once, in one place.

`IMPSettings(...)` takes exactly the callback's arguments (its fields are
the callback's signature), refuses bad ones with the reason, and normalises
them: `rate` becomes a schedule, `structure` a structure template, `scorer`
a `Scorer`, `rewind_to=0` "init". `config(keys)` is what a checkpoint
records of the run and a resuming run must match.

Example:
>>> settings = IMPSettings(rounds=3, epochs_per_round=2, rate=0.5, structure="2:4")
>>> settings.total_epochs, settings.structure.describe(), settings.schedule
(6, '2:4', Geometric(rate=0.5))
"""

import dataclasses
import numbers
import os

import numpy as np

from keras_lottery.backend import keras_internals
from keras_lottery.core import rewinding
from keras_lottery.imp import checks
from keras_lottery.imp import schedules as schedules_lib
from keras_lottery.imp import state as imp_state
from keras_lottery.methods import scorers as scorers_lib
from keras_lottery.sparsity import decision
from keras_lottery.sparsity import vocabulary

CONTROL_REINIT = "reinit"
CONTROL_RANDOM_PRUNE = decision.RANDOM_PRUNE
CONTROLS = (CONTROL_REINIT, CONTROL_RANDOM_PRUNE)


@dataclasses.dataclass
class IMPSettings:
    """The arguments of an IMP run (documented on `IterativeMagnitudePruning`).

    After construction `schedule` holds the resolved schedule (`rate` is
    folded into it), `structure` a `Unstructured` / `Units` / `NM` template,
    `scorer` a `Scorer`, `seed` an int, `round_callbacks` a list.

    Example:
    >>> IMPSettings(rounds=2, epochs_per_round=1, scope="global")
    Traceback (most recent call last):
    ...
    TypeError: IMPSettings.__init__() got an unexpected keyword argument 'scope'
    """

    rounds: int
    epochs_per_round: int
    rate: object = None
    schedule: object = None
    distribution: str = vocabulary.UNIFORM
    structure: object = "weight"
    scorer: object = "magnitude"
    exclude: object = None
    latency_policy: object = None
    early_bird: object = None
    instability: object = None
    rewind_to: object = rewinding.INIT
    one_shot: bool = False
    control: object = None
    reference_masks: object = None
    seed: object = None
    monitor: str = "val_loss"
    mode: str = "auto"
    output_layers: object = None
    checkpoint_dir: object = None
    write_checkpoints: bool = True
    keep_checkpoints: tuple = ()
    start_from: object = None
    round_callbacks: object = None
    on_round_end: object = None
    verbose: int = 1

    def __post_init__(self):
        self.rounds = checks.positive_int(self.rounds, "rounds")
        self.epochs_per_round = checks.positive_int(self.epochs_per_round, "epochs_per_round")
        self.distribution = vocabulary.distribution_argument(self.distribution)
        self.structure = vocabulary.structure_argument(self.structure)
        vocabulary.check_combination(self.distribution, self.structure)
        self.scorer = scorers_lib.get(self.scorer)
        self.latency_policy = checks.latency_policy_argument(self.latency_policy, self.structure)
        self.rewind_to = checks.rewind_argument(self.rewind_to)
        self.control = checks.one_of(self.control, CONTROLS, "control", none_ok=True)
        schedule = schedules_lib.get(self.schedule, self.rate)
        if self.one_shot:
            schedule = schedules_lib.OneShot(schedule, max(1, self.rounds - 1))
        self.schedule, self.one_shot = schedule, bool(self.one_shot)
        self.reference_masks = checks.per_round_argument(
            self.reference_masks, self.rounds, "reference_masks")
        if self.seed is None:  # drawn from NumPy's global generator (set_random_seed seeds it)
            self.seed = np.random.randint(0, 2**31 - 1)
        self.seed = int(self.seed)
        self.early_bird = checks.early_bird_argument(
            self.early_bird, self.control, self.reference_masks)
        self.instability = checks.instability_argument(self.instability)
        self.mode = checks.one_of(self.mode, ("auto", "min", "max"), "mode")
        self.output_layers = None if self.output_layers is None else list(self.output_layers)
        self.write_checkpoints = bool(self.write_checkpoints)
        self.keep_checkpoints = tuple(int(r) for r in self.keep_checkpoints)
        if self.keep_checkpoints and self.checkpoint_dir is None:
            raise ValueError("keep_checkpoints needs a checkpoint_dir to keep them in.")
        self.round_callbacks = checks.callbacks_argument(self.round_callbacks, "round_callbacks")
        if self.on_round_end is not None and not callable(self.on_round_end):
            raise TypeError(f"on_round_end must be callable; received {self.on_round_end!r}.")
        self.verbose = int(self.verbose)

    @property
    def total_epochs(self):
        """`rounds * epochs_per_round`: the epochs to pass to `fit`."""
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

    def config(self, keys):
        """What a checkpoint of this run records and a resuming run must
        match, for a model with prunable `keys`."""
        settings = {
            "rounds": self.rounds, "epochs_per_round": self.epochs_per_round,
            "distribution": self.distribution, "structure": self.structure.describe(),
            "scorer": self.scorer.name, "exclude": self.exclude,
            "latency_policy": self.latency_policy, "rewind_to": self.rewind_to,
            "one_shot": self.one_shot, "control": self.control, "seed": self.seed,
            "monitor": self.monitor, "mode": self.mode,
        }
        return imp_state.run_config(settings, self.schedule, self.early_bird, keys)


def watches_batches(rewind_to, round_callbacks):
    """Whether a run with these `rewind_to` and `round_callbacks` (checked
    or as passed) watches batches: θk at an iteration k > 0, or round
    callbacks with batch hooks (Keras dispatches batch hooks asynchronously
    only when no callback overrides them).

    Example:
    >>> watches_batches(500, None), watches_batches("init", [keras.callbacks.EarlyStopping()])
    (True, False)
    """
    if (isinstance(rewind_to, numbers.Integral) and not isinstance(rewind_to, bool)
            and rewind_to > 0):
        return True
    return any(not keras_internals.is_default(hook)
               for callback in round_callbacks or ()
               for hook in (callback.on_train_batch_begin, callback.on_train_batch_end,
                            callback.on_batch_end))
