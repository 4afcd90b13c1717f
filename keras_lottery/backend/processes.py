"""Several JAX processes under `keras.distribution` (one per host of a
multi-GPU cluster or TPU slice, started with `keras.distribution.initialize`):
who writes files, what only one of them may run, and the checks that keep
them training one model.

With one process (and on the TensorFlow backend, whose clusters go through
`keras_lottery.multi_worker` instead) every function here is trivial: one
process, index 0, the writer, nothing to wait for.

Example:
>>> count(), index(), is_writer()
(1, 0, True)
>>> local_rows(8, global_batch_size=4).tolist()
[0, 1, 2, 3, 4, 5, 6, 7]
"""

import contextlib

import keras
import numpy as np


def _jax_processes():
    """`jax` when Keras runs on JAX with several processes, else None."""
    if keras.backend.backend() != "jax":
        return None
    import jax

    return jax if jax.process_count() > 1 else None


def count():
    """The number of processes of the run (1 without
    `keras.distribution.initialize`).

    Example:
    >>> count()
    1
    """
    jax = _jax_processes()
    return jax.process_count() if jax else 1


def index():
    """This process' index, 0 to `count() - 1`.

    Example:
    >>> index()
    0
    """
    jax = _jax_processes()
    return jax.process_index() if jax else 0


def is_writer():
    """Whether this process writes the run's files (process 0 does; the
    others read them).

    Example:
    >>> is_writer()
    True
    """
    return index() == 0


@contextlib.contextmanager
def local_only():
    """A block that only some processes run (process 0 writing a file):
    inside it no new array is laid out over every process. Without it, a
    Keras op there (`model.save` converts values) would start a collective
    the other processes never join, and the run would stop with a
    collective mismatch.

    Example:
    >>> with local_only():
    ...     pass
    """
    if not _jax_processes():
        yield
        return
    active = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(active)


def require_same(value, what):
    """Raises RuntimeError unless every process holds the same integer
    `value` (what each resumes from, say): processes that disagree would
    train different models and wait on each other forever.

    Example:
    >>> require_same(3, "the epoch to resume from")
    """
    jax = _jax_processes()
    if not jax:
        return
    from jax.experimental import multihost_utils

    values = np.asarray(multihost_utils.process_allgather(np.asarray([int(value)]))).ravel()
    if len(set(values.tolist())) > 1:
        raise RuntimeError(
            f"The {jax.process_count()} processes disagree on {what}: "
            f"{values.tolist()} (process {jax.process_index()} has {int(value)}). Every "
            "process must read the same checkpoint directory, on a filesystem they share."
        )


def check_fit(model):
    """Raises RuntimeError when several processes run `fit` without a global
    `keras.distribution`: Keras then trains one model per process on that
    process' data alone, and their weights and masks drift apart.

    Example:
    >>> check_fit(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    """
    jax = _jax_processes()
    if not jax:
        return
    if keras.distribution.distribution() is None:
        raise RuntimeError(
            f"'{model.name}' trains in {jax.process_count()} JAX processes without a global "
            "distribution: each process would train its own copy on its own batches. "
            "Call keras.distribution.set_distribution(keras.distribution.DataParallel(...)) "
            "before fit (a `with distribution.scope():` around building the model is not "
            "enough: fit reads the global one)."
        )


def require_addressable(variable):
    """Raises NotImplementedError when `variable` is split across processes
    (a `ModelParallel` axis spanning hosts): keras_lottery reads a weight
    whole on the host to snapshot it and choose its mask, and a process
    cannot read another's shards.

    Example:
    >>> require_addressable(keras.Variable(np.zeros((2, 2))))
    """
    value = variable.value
    if getattr(value, "is_fully_addressable", True) or value.is_fully_replicated:
        return  # a weight replicated over processes (DataParallel) reads locally
    raise NotImplementedError(
        f"'{variable.path}' is split across processes: keras_lottery reads each pruned "
        "weight whole on the host (to snapshot it and choose its mask), which a process "
        "cannot do for another's shards. Shard weights over the devices of one host (the "
        "'model' axis of the mesh inside a process) and the batch across processes.")


def local_rows(examples, global_batch_size):
    """Indices of this process' rows of an in-memory dataset: its share of
    every global batch of `global_batch_size` examples, in order, so that
    `fit(x[rows], y[rows], batch_size=global_batch_size // count())` trains
    on exactly the batches one process would with `batch_size=global_batch_size`.
    Keras shards a `tf.data.Dataset` itself; arrays must be split by hand
    (with `DataParallel(...).auto_shard_dataset = False`).

    Args:
        examples: number of rows of the dataset.
        global_batch_size: the batch size across all processes; divisible
            by `count()`.

    Example:
    >>> local_rows(6, global_batch_size=2).tolist()
    [0, 1, 2, 3, 4, 5]
    """
    processes, this = count(), index()
    if global_batch_size % processes:
        raise ValueError(
            f"global_batch_size={global_batch_size} does not split over {processes} "
            "processes; use a multiple of the process count.")
    if processes > 1 and examples % global_batch_size:
        raise ValueError(
            f"{examples} examples leave a last batch of {examples % global_batch_size}, "
            f"which does not split evenly over {processes} processes; drop it "
            f"(x[:{examples - examples % global_batch_size}]).")
    share = global_batch_size // processes
    rows = np.arange(examples)
    starts = np.arange(0, examples, global_batch_size)
    return np.concatenate(
        [rows[s + this * share: min(s + (this + 1) * share, examples)] for s in starts]
        or [rows[:0]])
