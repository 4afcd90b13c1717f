"""What the IMP callback checks before and during a run, and the notes it
gives when a run would do something other than the user expects.

Each function takes what it checks as arguments and either raises with the
reason and the fix, or returns a message (None when all is well).

Example:
>>> asks_nothing(keras_lottery.imp.schedules.Constant(0.5), 2, {"a": 0.5},
...              {"a": np.arange(4) < 2}, 10, ["a"], [])
False
"""

import numbers

import keras
import numpy as np

from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.core import rewinding
from keras_lottery.core import wrapping


def check_not_run_before(run, resumable):
    """A callback runs once: a second `fit` with it (`run.started`) is
    refused unless it resumes from its own checkpoint (`resumable`). `run` is
    its `IMPRun`.

    Example:
    >>> imp = keras_lottery.IterativeMagnitudePruning(rounds=2, epochs_per_round=1)
    >>> check_not_run_before(imp.run, resumable=False)  # a first run
    """
    if not run.started or resumable:
        return
    raise RuntimeError(
        "This IterativeMagnitudePruning callback has already run "
        f"({len(run.state.results)} of {run.settings.rounds} rounds, "
        f"{'finished' if run.state.finished else 'not finished'}); its state "
        "belongs to that run. Create a new callback for a new run; to "
        "resume an interrupted run, give the callback a checkpoint_dir."
    )


def check_epochs(imp, params):
    """`fit(epochs=...)` matches the rounds, and θk lies within round 0
    (`imp`: the run's `IMPSettings`).

    Example:
    >>> imp = keras_lottery.imp.settings.IMPSettings(rounds=2, epochs_per_round=3)
    >>> check_epochs(imp, {"epochs": 5})
    Traceback (most recent call last):
    ...
    ValueError: fit(epochs=5) does not match this callback's 2 rounds x 3 epochs; call fit(..., epochs=imp.total_epochs) (= 6).
    """
    epochs = params.get("epochs")
    if epochs is not None and epochs != imp.total_epochs:
        raise ValueError(
            f"fit(epochs={epochs}) does not match this callback's {imp.rounds} rounds "
            f"x {imp.epochs_per_round} epochs; call fit(..., epochs=imp.total_epochs) "
            f"(= {imp.total_epochs})."
        )
    steps = params.get("steps")
    if isinstance(imp.rewind_to, int) and steps:
        round_steps = steps * imp.epochs_per_round
        if imp.rewind_to > round_steps:
            raise ValueError(rewinding.beyond_round_message(imp.rewind_to, round_steps))


def check_resume_epoch(settings, state, epoch):
    """`fit` starts at the epoch the run continues at (`imp.initial_epoch`),
    for a run with these `IMPSettings` and `IMPState`.

    Example:
    >>> settings = keras_lottery.imp.settings.IMPSettings(rounds=2, epochs_per_round=1)
    >>> check_resume_epoch(settings, keras_lottery.imp.state.IMPState(), 0)
    """
    expected = settings.total_epochs if state.finished else state.round_start_epoch
    if epoch != expected:
        raise ValueError(
            f"fit started at epoch {epoch}, but this IMP run continues at epoch "
            f"{expected} (round {state.round + 1} of {settings.rounds}). Call "
            "fit(..., initial_epoch=imp.initial_epoch). (A BackupAndRestore backup "
            "from the middle of a round cannot resume IMP: IMP resumes at round "
            "boundaries from its own checkpoint_dir.)"
        )


def already_pruned_note(model, masks):
    """A note when training starts on a model that is already pruned (its
    masks), or that looks pruned (many exact zeros) but has dense masks.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    >>> already_pruned_note(model, keras_lottery.get_masks(model)) is None
    True
    """
    density = masks_lib.density(masks)
    if density < 1.0:
        return (
            f"IterativeMagnitudePruning: model '{model.name}' is already pruned "
            f"({100 * density:.2f}% of its weights survive). IMP continues from these "
            "masks: round 0 trains them as they are, and rounds whose targets keep "
            "more weights prune nothing."
        )
    weights = wrapping.read_weights(model)
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights.values())
    total = sum(w.size for w in weights.values())
    if total and zeros / total > 0.2:
        return (
            f"IterativeMagnitudePruning: {100 * zeros / total:.1f}% of model "
            f"'{model.name}''s prunable weights are exactly zero, but its masks keep "
            "every weight: a pruned model loaded without its masks? Load its ticket "
            "with keras_lottery.load_ticket(path, model) (or the .keras file with "
            "keras_lottery.load_model) to continue from its masks; as it stands, "
            "pruned weights can grow back."
        )
    return None


def asks_nothing(schedule, next_round, targets, current, total_steps, keys, output_keys,
                 distribution="uniform"):
    """Whether the schedule asks for a new, higher sparsity that the current
    masks already meet (holding last round's target is not that)."""
    kept = sum(
        min(int(np.count_nonzero(current[key])),
            round(current[key].size * (1.0 - targets.get(key, 0.0))))
        for key in current
    )
    if kept < masks_lib.counts(current)[0]:
        return False
    if next_round == 1:
        return any(value > 0 for value in targets.values())
    previous = schedule.targets(next_round - 1, total_steps, keys, output_keys,
                                distribution=distribution)
    return previous is not None and targets != previous


def positive_int(value, what):
    """`value` as an int, or ValueError naming `what`.

    Example:
    >>> positive_int(3, "rounds")
    3
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1; received {value!r}.")
    return int(value)


def rewind_argument(rewind_to):
    """`rewind_to` checked: "init", "lr", "finetune" or an iteration (0 means
    "init").

    Example:
    >>> rewind_argument(0), rewind_argument(500)
    ('init', 500)
    """
    if isinstance(rewind_to, numbers.Integral) and not isinstance(rewind_to, bool):
        if rewind_to < 0:
            raise ValueError(
                f"rewind_to must be >= 0 when it is an iteration; received {rewind_to}."
            )
        return rewinding.INIT if rewind_to == 0 else int(rewind_to)
    if rewind_to in rewinding.MODES:
        return rewind_to
    raise ValueError(
        f"rewind_to must be one of {rewinding.MODES} or an iteration (int >= 0); "
        f"received {rewind_to!r}."
    )


def one_of(value, allowed, what, none_ok=False):
    """`value` if it is in `allowed` (or None with `none_ok`), else ValueError.

    Example:
    >>> one_of("max", ("auto", "min", "max"), "mode")
    'max'
    >>> one_of("up", ("auto", "min", "max"), "mode")
    Traceback (most recent call last):
    ...
    ValueError: mode must be one of ('auto', 'min', 'max'); received 'up'.
    """
    if (value is None and none_ok) or value in allowed:
        return value
    prefix = "None or " if none_ok else ""
    raise ValueError(f"{what} must be {prefix}one of {tuple(allowed)}; received {value!r}.")


def callbacks_argument(callbacks, what):
    """`callbacks` as a list of `keras.callbacks.Callback`, or TypeError.

    Example:
    >>> [type(c).__name__ for c in callbacks_argument((keras.callbacks.History(),), "x")]
    ['History']
    """
    callbacks = list(callbacks or [])
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                f"{what} takes keras.callbacks.Callback objects; received {callback!r}."
            )
    return callbacks


def per_round_argument(values, rounds, what):
    """`values` (None, or one entry per round) checked against `rounds`.

    Example:
    >>> per_round_argument([{}], 2, "reference_masks")
    Traceback (most recent call last):
    ...
    ValueError: reference_masks has 1 entries; it needs one per round (2).
    """
    if values is not None and len(values) < rounds:
        raise ValueError(
            f"{what} has {len(values)} entries; it needs one per round ({rounds})."
        )
    return values


LATENCY_POLICIES = ("xnnpack_sparse",)


def latency_policy_argument(latency_policy, structure):
    """`latency_policy` checked: None or "xnnpack_sparse" (unstructured
    weights only: XNNPACK's sparse kernels skip single zero weights).

    Example:
    >>> latency_policy_argument("xnnpack_sparse", keras_lottery.sparsity.structure.Units())
    Traceback (most recent call last):
    ...
    ValueError: latency_policy='xnnpack_sparse' prunes single weights of 1x1 convolutions; it does not combine with structure='units(axis=-1, norm=l1)'.
    """
    one_of(latency_policy, LATENCY_POLICIES, "latency_policy", none_ok=True)
    if latency_policy is not None and not structure.elementwise:
        raise ValueError(
            f"latency_policy={latency_policy!r} prunes single weights of 1x1 "
            f"convolutions; it does not combine with structure='{structure.describe()}'."
        )
    return latency_policy


def early_bird_argument(early_bird, control, reference_masks):
    """`early_bird` checked: None or an `EarlyBird`, on a run that finds its
    own ticket (controls replay another run's masks, which never change).

    Example:
    >>> early_bird_argument(None, "reinit", None) is None
    True
    """
    if early_bird is None:
        return None
    if not all(hasattr(early_bird, name) for name in ("update", "emerged", "reset")):
        raise TypeError(f"early_bird takes a keras_lottery.EarlyBird; received {early_bird!r}.")
    if control is not None or reference_masks is not None:
        raise ValueError(
            "early_bird ends rounds when the run's own ticket stops changing; a control "
            "or reference_masks run follows another run's masks. Drop one of them."
        )
    return early_bird


def instability_argument(instability):
    """`instability` checked: None or an `InstabilityProbe` (anything with
    `measure(model)`); `True` is refused with what to pass instead, since a
    callback does not see the data `fit` trains on.

    Example:
    >>> instability_argument(None) is None
    True
    """
    if instability is None or instability is False:
        return None
    if instability is True:
        raise TypeError(
            "instability=True: the callback does not see the data fit trains on, so it "
            "cannot train the two copies itself. Pass instability=keras_lottery."
            "InstabilityProbe(data=(x_val, y_val), train_data=(x, y), epochs=...) or "
            "InstabilityProbe(data, train=lambda model, seed: ...).")
    if not callable(getattr(instability, "measure", None)):
        raise TypeError("instability takes a keras_lottery.InstabilityProbe; received "
                        f"{instability!r}.")
    return instability
