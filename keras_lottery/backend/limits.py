"""Known limits of Keras 3 that keras_lottery checks up front, in one place.

Example:
>>> strategy_problem(replicas=2, steps_per_execution=4, jit_compile=False)[:28]
'steps_per_execution=4 do not'
"""


def strategy_problem(replicas, steps_per_execution=1, jit_compile=False):
    """Why a compiled model cannot train under a distribution strategy of
    `replicas` replicas in Keras 3's `model.fit`, or None.

    Keras 3 fails with `steps_per_execution > 1` or `jit_compile=True` under
    `tf.distribute.MirroredStrategy` (keras-team/keras#19246).

    Example:
    >>> strategy_problem(1, 8, True) is None
    True
    """
    if replicas <= 1:
        return None
    limits = []
    if (steps_per_execution or 1) > 1:
        limits.append(f"steps_per_execution={steps_per_execution}")
    if jit_compile is True:
        limits.append("jit_compile=True")
    if not limits:
        return None
    return (
        f"{' and '.join(limits)} do not work with a distribution strategy of "
        f"{replicas} replicas in Keras 3's model.fit (keras-team/keras#19246). "
        "Compile with steps_per_execution=1 and jit_compile=False under a "
        "distribution strategy."
    )


def check_model(model):
    """Raises ValueError when `model` is compiled in a way its distribution
    strategy cannot train (see `strategy_problem`).

    Example:
    >>> import keras
    >>> check_model(keras.Sequential([keras.Input((2,))]))
    """
    strategy = getattr(model, "distribute_strategy", None)
    replicas = getattr(strategy, "num_replicas_in_sync", 1)
    problem = strategy_problem(
        replicas,
        getattr(model, "steps_per_execution", 1),
        getattr(model, "jit_compile", False),
    )
    if problem:
        raise ValueError(f"Model '{model.name}': {problem}")
