"""IMP across machines: a `fit` loop for `tf.distribute.MultiWorkerMirroredStrategy`.

Keras 3's `model.fit` does not run under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585, #20601). `fit` here is the smallest loop that does:
each step is the model's own `train_step` run with `strategy.run`, so the
loss, the compiled metrics, the optimizer (which all-reduces the gradients)
and the masks' weight constraints are exactly those of `model.fit`. Callbacks
get the usual hooks, so `IterativeMagnitudePruning` runs unchanged: every
worker holds the same weights after each all-reduce, computes the same masks
from them (pruning is deterministic, ties included) and rewinds identically.

Epoch logs are global: each metric's state is all-reduced across every
replica of every worker before its result is taken. Only the chief writes
IMP checkpoints; every worker resumes from the chief's, so `checkpoint_dir`
must be on a filesystem all workers share (as with Keras' BackupAndRestore).

A worker that dies makes the others fail within seconds: TensorFlow's
coordination service misses its heartbeats and aborts the pending
collectives with `UnavailableError` (measured in docs/DISTRIBUTED.md).

TensorFlow-only; the core of keras_lottery does not import this module.
"""

import keras
import tensorflow as tf

from keras_lottery.backend import keras_internals
from keras_lottery.backend import limits

_CACHE_ATTRIBUTE = "_keras_lottery_multi_worker_functions"
# What TensorFlow raises on the survivors when a peer dies: its coordination
# service misses the heartbeats (or the connection resets) and aborts the
# pending collectives.
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)


class WorkerFailedError(RuntimeError):
    """Raised by `fit` on the surviving workers when a worker of the cluster
    dies; restart them all to resume from the last checkpoint.

    Example:
    >>> issubclass(WorkerFailedError, RuntimeError)
    True
    """


def is_chief(strategy=None):
    """Whether this process is the chief: the one that writes files.

    True without a cluster (one process), for task type "chief", and for
    worker 0 of a cluster that has no "chief" task.

    Args:
        strategy: a `tf.distribute.Strategy` (default: the current one).

    Example:
    >>> is_chief()
    True
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def fit(
    model,
    dataset,
    epochs,
    steps_per_epoch=None,
    validation_data=None,
    callbacks=None,
    initial_epoch=0,
    verbose=1,
):
    """Trains `model` like `model.fit`, under any `tf.distribute` strategy.

    Build and compile the model inside `strategy.scope()` (any strategy works,
    so the same script runs on one process too). Batches of `dataset` are
    *global* batches: each worker gets its share (auto-shard policy DATA
    unless the dataset sets another).

    Args:
        model: a compiled Keras model (TensorFlow backend), created in the
            strategy's scope, with `steps_per_execution=1`.
        dataset: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`
            global batches, identical on every worker.
        epochs: index of the last epoch, as in `model.fit`.
        steps_per_epoch: steps per epoch. With it, one iterator runs across
            epochs (repeat the dataset); without it, each epoch runs the
            dataset to its end.
        validation_data: optional `tf.data.Dataset` of global batches,
            evaluated at the end of each epoch (logs gain `val_*` keys).
        callbacks: Keras callbacks, e.g. `IterativeMagnitudePruning`.
        initial_epoch: epoch to start at (`imp.initial_epoch` to resume).
        verbose: 0 silent, 1 a progress bar on the chief, 2 one line per
            epoch on the chief.

    Returns:
        The `keras.callbacks.History` of the run.

    Example:
    >>> import numpy as np, tensorflow as tf, keras_lottery
    >>> strategy = tf.distribute.get_strategy()  # or MultiWorkerMirroredStrategy()
    >>> with strategy.scope():
    ...     model = keras_lottery.wrap(keras.Sequential([
    ...         keras.Input((4,)), keras.layers.Dense(8, name="fc"),
    ...         keras.layers.Dense(2, name="out")]))
    ...     model.compile("sgd", "mse")
    >>> imp = keras_lottery.IterativeMagnitudePruning(
    ...     rounds=2, epochs_per_round=1, verbose=0)
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.ones((8, 4), "float32"), np.ones((8, 2), "float32"))).batch(4)
    >>> history = fit(model, data, epochs=imp.total_epochs, callbacks=[imp],
    ...               verbose=0)
    >>> [round(row["density"], 2) for row in imp.results]
    [1.0, 0.83]
    """
    _check_model(model)
    strategy = model.distribute_strategy
    chief = is_chief(strategy)
    train_step, test_step, global_logs = _functions(model, strategy)
    train_data = strategy.experimental_distribute_dataset(_shard_by_data(dataset))
    val_data = (
        None
        if validation_data is None
        else strategy.experimental_distribute_dataset(_shard_by_data(validation_data))
    )
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=bool(verbose) and chief,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    for callback in callback_list.callbacks:
        if hasattr(callback, "write_checkpoints"):
            # Every worker reads the chief's IMP checkpoint; only it writes.
            callback.write_checkpoints = chief
    with strategy.scope():
        # The spec, not a batch: one more iterator would advance a
        # reshuffling dataset to its next order.
        keras_internals.symbolic_build(model, dataset.element_spec)
    # Callbacks run outside the scope, where reading a variable gives a plain
    # value (inside it, MirroredVariable counters refuse `np.array`).
    model.stop_training = False
    callback_list.on_train_begin()
    try:
        _require_same_everywhere(strategy, initial_epoch, "initial_epoch")
        iterator = iter(train_data) if steps_per_epoch is not None else None
        logs = {}
        for epoch in range(initial_epoch, epochs):
            _reset_metrics(model)
            callback_list.on_epoch_begin(epoch)
            batches = (
                (next(iterator) for _ in range(steps_per_epoch))
                if iterator is not None
                else iter(train_data)
            )
            for step, batch in enumerate(batches):
                callback_list.on_train_batch_begin(step)
                train_step(batch)
                callback_list.on_train_batch_end(step)
            logs = global_logs()
            if val_data is not None:
                val_logs = _evaluate(model, val_data, test_step, global_logs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    except _PEER_FAILURES as error:
        raise WorkerFailedError(
            f"Another worker of the cluster stopped ({type(error).__name__}): "
            f"{' '.join(str(error).strip().splitlines()[:2])} Restart every worker with "
            "the same command; with IterativeMagnitudePruning(checkpoint_dir=...) "
            "on a shared filesystem and fit(..., initial_epoch=imp.initial_epoch) "
            "the run resumes from the last completed round."
        ) from error
    callback_list.on_train_end(logs)
    return model.history


def evaluate(model, dataset):
    """Global metrics of `model` on `dataset` under its strategy, like
    `model.evaluate(..., return_dict=True)`: every worker gets the same dict.

    Args:
        model: a compiled model created in the strategy's scope.
        dataset: a `tf.data.Dataset` of global batches.

    Returns:
        `{"loss": float, <metric name>: float, ...}`.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("sgd", "mse")
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"))).batch(4)
    >>> sorted(evaluate(model, data))
    ['loss']
    """
    _check_model(model)
    strategy = model.distribute_strategy
    _, test_step, global_logs = _functions(model, strategy)
    distributed = strategy.experimental_distribute_dataset(_shard_by_data(dataset))
    with strategy.scope():
        # The spec, not a batch: one more iterator would advance a
        # reshuffling dataset to its next order.
        keras_internals.symbolic_build(model, dataset.element_spec)
    return _evaluate(model, distributed, test_step, global_logs)


def _evaluate(model, distributed, test_step, global_logs):
    _reset_metrics(model)
    for batch in distributed:
        test_step(batch)
    logs = global_logs()
    _reset_metrics(model)
    return logs


def _check_model(model):
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "keras_lottery.imp.multi_worker needs the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow); the backend is {keras.backend.backend()!r}. "
            "On JAX, use keras.distribution with model.fit instead."
        )
    if not getattr(model, "compiled", False):
        raise ValueError(f"Model '{model.name}' is not compiled; call model.compile() first.")
    problem = limits.strategy_problem(
        2, getattr(model, "steps_per_execution", 1), getattr(model, "jit_compile", False)
    )
    if problem:
        raise ValueError(f"multi_worker.fit runs one step per call without XLA: {problem}")


def _shard_by_data(dataset):
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            "multi_worker.fit takes tf.data.Dataset inputs of global batches; "
            f"received {type(dataset).__name__}. Use "
            "tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch_size)."
        )
    policy = dataset.options().experimental_distribute.auto_shard_policy
    if policy != tf.data.experimental.AutoShardPolicy.AUTO:
        return dataset
    options = tf.data.Options()
    # Every worker reads the same data; DATA splits each global batch
    # between them, so a step sees the batch a single process would.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def _functions(model, strategy):
    # One trace per model for the whole run, however many rounds or calls.
    cached = getattr(model, _CACHE_ATTRIBUTE, None)
    if cached is not None and cached[0] is strategy:
        return cached[1:]

    @tf.function
    def train_step(batch):
        strategy.run(model.train_step, args=(batch,))

    @tf.function
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))

    def global_logs():
        # Metric states are sync-on-read variables: read here, in the
        # cross-replica context, each is summed over every replica of every
        # worker (a collective all workers run in the same order).
        logs = {}
        for metric in model.metrics:
            result = metric.result()
            if isinstance(result, dict):
                logs.update(result)
            else:
                logs[metric.name] = result
        return {k: float(keras.ops.convert_to_numpy(v)) for k, v in logs.items()}

    functions = (train_step, test_step, global_logs)
    setattr(model, _CACHE_ATTRIBUTE, (strategy, *functions))
    return functions


def _reset_metrics(model):
    for metric in model.metrics:
        metric.reset_state()


def _require_same_everywhere(strategy, value, what):
    if strategy.num_replicas_in_sync == 1:
        return

    @tf.function
    def spread():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            every = context.all_gather(tf.constant([value], tf.int64), axis=0)
            return tf.reduce_min(every), tf.reduce_max(every)

        low, high = strategy.run(replica_fn)
        return strategy.experimental_local_results(low)[0], strategy.experimental_local_results(high)[0]

    low, high = (int(t) for t in spread())
    if low != high:
        raise RuntimeError(
            f"Workers disagree on {what}: from {low} to {high}. Every worker "
            "must resume from the same IMP checkpoint; put checkpoint_dir on "
            "a filesystem all workers share and restart them all."
        )
