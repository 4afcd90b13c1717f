"""The settings of one example run, built once from the flags.

`RunConfig.from_flags` reads every flag the script and `experiment` define.
Every one of them can change a result unless it is named in
`NOT_RESULT_FLAGS` (where outputs go, how many trials, which extra files are
written): so a flag added to a script is part of the run's settings, and of
the check that refuses other settings on an existing run directory, without
anyone remembering to list it.

Nothing here imports Keras or TensorFlow: flags are checked before the heavy
imports.
"""

import dataclasses
import math
import os

from absl import app

# Flags that change where and how much is written, not what a row says.
NOT_RESULT_FLAGS = frozenset({"output_dir", "trials", "export", "tensorboard"})
ARMS = ("ticket", "reinit", "random_prune")


def script_flags(flag_values, modules):
    """`{name: value}` of every flag defined by the given modules.

    Args:
        flag_values: `absl.flags.FLAGS`.
        modules: module names (as absl records them: the script's
            `sys.argv[0]` and "experiment"); the common flags of
            `examples.harness` are always included.
    """
    by_module = flag_values.flags_by_module_dict()
    modules = [*modules, "harness"]  # the common flags (examples.harness) of every script
    values = {}
    for module, defined in by_module.items():
        if any(module == m or module.endswith("/" + m) or module.endswith(m + ".py")
               or module.rpartition(".")[2] == m for m in modules):
            for flag in defined:
                values[flag.name] = flag.value
    return values


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runnable(script):
    """How to run `script` (its path, as `sys.argv[0]` has it): `-m
    examples.<name>` or `-m benchmarks.<name>` for the repository's scripts
    (run from the repository root), else the path itself.

    Example:
    >>> runnable(os.path.join(ROOT, "benchmarks", "step_time.py")), runnable("bench.py")
    ('-m benchmarks.step_time', 'bench.py')
    """
    relative = os.path.relpath(os.path.abspath(script), ROOT)
    folder, _, name = relative.partition(os.sep)
    if folder in ("examples", "benchmarks") and os.sep not in name and name.endswith(".py"):
        return f"-m {folder}.{name[:-3]}"
    return script


def full_command(flag_values, script):
    """The command that reproduces a run: `python -m <module>` with every flag
    the script defines at its value (defaults included, so a later change
    of a default cannot change what the command means; a flag left at None,
    "not given", is left out: absl cannot parse `--flag=None` back).

    Args:
        flag_values: `absl.flags.FLAGS`, parsed.
        script: the script's path as run (`sys.argv[0]`).

    Example:
    >>> from absl import flags
    >>> values = flags.FlagValues()
    >>> _ = flags.DEFINE_integer("seed", 3, "Seed.", flag_values=values, module_name="bench.py")
    >>> _ = flags.DEFINE_list("threads", ["1", "2"], "Threads.", flag_values=values,
    ...                       module_name="bench.py")
    >>> _ = flags.DEFINE_string("table", None, "A file.", flag_values=values, module_name="bench.py")
    >>> values(["bench.py"])
    ['bench.py']
    >>> full_command(values, "bench.py")
    'python bench.py --seed=3 --threads=1,2'
    """
    values = script_flags(flag_values, [script])
    parts = []
    for name in sorted(values):
        value = values[name]
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        parts.append(f"--{name}={value}")
    return " ".join(["python", runnable(script), *parts])


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run reads from its flags (see the module docstring).

    Attributes:
        script: the experiment's name (e.g. "lenet_300_100").
        flags: `{flag: value}` of every flag of the script and `experiment`.
        steps_per_epoch: iterations between two validations.
        epochs_per_round: `iterations / steps_per_epoch`.
        steps_per_execution, jit_compile: the compile settings used.
        test_every_epochs: evaluate the test set for the learning curves
            every this many epochs (`--test_every / --eval_every`).
    """

    script: str
    flags: dict
    steps_per_epoch: int
    epochs_per_round: int
    steps_per_execution: int
    jit_compile: bool
    test_every_epochs: int = 1

    @property
    def iterations(self):
        return self.steps_per_epoch * self.epochs_per_round

    @property
    def arms(self):
        return ["ticket", *self.flags["controls"]]

    def settings(self):
        """What must match for a run directory to be resumed: every result
        flag plus the derived schedule of the run."""
        settings = {k: v for k, v in self.flags.items() if k not in NOT_RESULT_FLAGS}
        settings.update(
            script=self.script,
            steps_per_epoch=self.steps_per_epoch,
            epochs_per_round=self.epochs_per_round,
            iterations=self.iterations,
            steps_per_execution=self.steps_per_execution,
            jit_compile=self.jit_compile,
        )
        return settings

    @classmethod
    def from_flags(cls, script, flag_values, modules, train_size):
        """Checks flag combinations and derives the schedule of the run."""
        flags = script_flags(flag_values, modules)
        problem = flag_problem(flags)
        if problem:
            raise app.UsageError(problem)
        # tf.distribute strategies (keras-team/keras#19246); keras.distribution
        # on JAX keeps the fast defaults.
        distributed = flags["distribute"] in ("mirrored", "multiworker")
        iterations = flags["iterations"]
        if flags["epochs_per_round"] is not None:
            iterations = max(1, round(flags["epochs_per_round"] * train_size / flags["batch_size"]))
        steps = min(flags["eval_every"], iterations)
        if iterations % steps:
            raise app.UsageError(
                f"Iterations per round ({iterations}) must be a multiple of --eval_every ({steps})."
            )
        rewind = parse_rewind(flags["rewind_to"])
        if isinstance(rewind, int) and rewind > iterations:
            raise app.UsageError(
                f"--rewind_to={rewind} is beyond a round of {iterations} iterations."
            )
        if flags["steps_per_execution"] is not None:
            spe = flags["steps_per_execution"]
        elif distributed:
            spe = 1
        else:
            # The largest divisor of the epoch (and of an iteration
            # --rewind_to, so θk is taken exactly at k) up to 100.
            period = math.gcd(steps, rewind) if isinstance(rewind, int) else steps
            spe = max(d for d in range(1, min(period, 100) + 1) if period % d == 0)
        jit = flags["jit_compile"] if flags["jit_compile"] is not None else not distributed
        test_every = flags.get("test_every") or steps
        if test_every % steps:
            raise app.UsageError(
                f"--test_every ({test_every}) must be a multiple of --eval_every ({steps})."
            )
        return cls(script, flags, steps, iterations // steps, spe, bool(jit), test_every // steps)


def flag_problem(flags):
    """What is wrong with a combination of flag values (`{name: value}`), or
    None. Checked before anything heavy is imported."""
    unknown = sorted(set(flags["controls"]) - set(ARMS[1:]))
    if unknown:
        return f"--controls accepts reinit and random_prune; got {unknown}."
    if flags["distribute"] in ("mirrored", "multiworker") and (
        (flags["steps_per_execution"] or 1) > 1 or flags["jit_compile"]
    ):
        return (
            f"--steps_per_execution > 1 and --jit_compile do not work with "
            f"--distribute={flags['distribute']} in Keras 3 (keras-team/keras#19246); "
            "use one or the other."
        )
    try:
        rewind = parse_rewind(flags["rewind_to"])
    except app.UsageError as error:
        return str(error)
    iterations = flags["iterations"]
    if flags["epochs_per_round"] is None and iterations is not None:
        steps = min(flags["eval_every"], iterations)
        if iterations % steps:
            return f"Iterations per round ({iterations}) must be a multiple of --eval_every ({steps})."
        if isinstance(rewind, int) and rewind > iterations:
            return f"--rewind_to={rewind} is beyond a round of {iterations} iterations."
        if flags.get("test_every") and flags["test_every"] % steps:
            return f"--test_every ({flags['test_every']}) must be a multiple of --eval_every ({steps})."
    dataset = flags["dataset"]
    if not (dataset in ("digits", "mnist", "fashion_mnist", "cifar10") or dataset.startswith("idx:")):
        return (
            f"--dataset={dataset}: Unknown dataset {dataset!r}: use 'digits', "
            "'idx:<directory of IDX files>', 'mnist', 'fashion_mnist' or 'cifar10'."
        )
    return None


def parse_rewind(value):
    """`--rewind_to` as the callback wants it: a mode name or an iteration."""
    if value in ("init", "lr", "finetune"):
        return value
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise app.UsageError(
            f"--rewind_to must be init, lr, finetune or an iteration >= 0; got {value!r}."
        ) from None
    if k < 0:
        raise app.UsageError(f"--rewind_to must be >= 0; got {k}.")
    return k
