"""What the example and benchmark scripts share: the common flags, the
start of a run (flags checked, TensorFlow started quietly, data loaded), and
the table-and-plot ending.

Every script defines its own flags next to these: `define_common_flags`
defines `--dataset`, `--seed`, `--output_dir` / `--output` and `--trials`
with the script's defaults, recorded under this module, which
`run_config.script_flags` and `full_command` always include (a run's
settings and its command list them like the script's own).

Example:
>>> from absl import flags
>>> values = flags.FlagValues()
>>> define_common_flags(values, dataset="digits", seed=0, output_dir="runs/x", trials=3)
>>> values(["script.py", "--seed=4"]) and (values.dataset, values.seed, values.trials)
('digits', 4, 3)
"""

import os
import time

from absl import app
from absl import flags

# The default data of the benchmarks: Debian's dataset-fashion-mnist.
FASHION_MNIST = "idx:/usr/share/datasets/fashion-mnist"
# Where a benchmark's `--output` goes by default.
RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "benchmarks", "results")

DATASET_HELP = "Dataset: digits, idx:<dir>, mnist, fashion_mnist (tensorflow-datasets) or cifar10."


_UNSET = object()


def define_common_flags(flag_values=flags.FLAGS, *, dataset=_UNSET, seed=_UNSET,
                        output_dir=_UNSET, output=_UNSET, trials=_UNSET):
    """Defines the flags scripts share, each one given a default here (None
    is a default): `--dataset`, `--seed`, `--output_dir` (a run directory),
    `--output` (one results file; a bare file name defaults into
    benchmarks/results/), `--trials`."""
    if dataset is not _UNSET:
        flags.DEFINE_string("dataset", dataset, DATASET_HELP, flag_values=flag_values)
    if seed is not _UNSET:
        flags.DEFINE_integer("seed", seed, "Seed (trial t uses seed + t).",
                             flag_values=flag_values)
    if output_dir is not _UNSET:
        flags.DEFINE_string("output_dir", output_dir, "Where results and plots go.",
                            flag_values=flag_values)
    if output is not _UNSET:
        if output and os.sep not in output:
            output = os.path.join(RESULTS, output)
        flags.DEFINE_string("output", output, "The JSON results file.", flag_values=flag_values)
    if trials is not _UNSET:
        flags.DEFINE_integer("trials", trials, "Independent trials (seeds).", lower_bound=1,
                             flag_values=flag_values)


def start(load, what="--dataset"):
    """Starts TensorFlow quietly, then `load()`s the data; a bad dataset is
    a usage error naming `what`. Returns `(data, start time)`.

    Example:
    >>> start(lambda: 1)[0]
    1
    """
    from examples import quiet_start

    quiet_start.start_tensorflow()
    started = time.perf_counter()
    try:
        return load(), started
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(f"{what}: {error}") from None


def finish(directory, table, plot_name, plot, started, rows):
    """Writes `table.md` and the plot into the run directory and prints the
    table, the row count, the wall time and where the plot is.

    Example:
    >>> import tempfile
    >>> from examples.run_directory import RunDirectory
    >>> directory = RunDirectory(tempfile.mkdtemp())
    >>> finish(directory, "| a |", "p.png", lambda path: None, time.perf_counter(), [1])
    | a |
    1 rows, ...
    """
    from keras_lottery.files import file_io

    path = directory.file(plot_name)
    file_io.atomic_write(directory.file("table.md"), lambda f: f.write(table.encode() + b"\n"))
    plot(path)
    print(table)
    print(f"{len(rows)} rows, wall time {time.perf_counter() - started:.0f}s; plot: {path}")


def define_comparison_flags(methods, densities, output_dir, epochs_help, flag_values=flags.FLAGS):
    """The flags of a script that compares methods against IMP on LeNet or
    Conv-2 at a few densities (`examples.method_trial.run_trials`): the
    common ones (digits by default, 3 trials) and the trial's.

    Example:
    >>> values = flags.FlagValues()
    >>> define_comparison_flags(("imp", "set"), ["0.1"], "runs/x", "Epochs.", values)
    >>> values(["script.py"]) and (values.methods, values.densities, values.model)
    (['imp', 'set'], ['0.1'], 'lenet')
    """
    define_common_flags(flag_values, dataset="digits", seed=0, output_dir=output_dir, trials=3)
    flags.DEFINE_enum("model", "lenet", ["lenet", "conv2"], "LeNet-300-100 or Conv-2.",
                      flag_values=flag_values)
    flags.DEFINE_list("methods", list(methods), f"Methods, of {', '.join(methods)}.",
                      flag_values=flag_values)
    flags.DEFINE_list("densities", list(densities), "Fractions of the weights kept.",
                      flag_values=flag_values)
    flags.DEFINE_integer("rounds_to_first", 5, "IMP rounds to the highest density.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("epochs", 2, epochs_help, lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("train_examples", 0, "Use the first N training examples (0: all).",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 60, "Batch size.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_float("learning_rate", None,
                       "Adam's learning rate (default: the paper's for --model).",
                       flag_values=flag_values)
