"""tensorflow-model-optimization interop (TensorFlow-only).

keras_lottery never imports tfmot when it is imported: importing tfmot sets
`TF_USE_LEGACY_KERAS=1` and switches `tf.keras` to Keras 2 for the whole
process. This module imports it only inside `schedule_from_config`, which
runs only when a saved `PruningScheduleAdapter` config is deserialized, i.e.
in a program that already uses tfmot schedules.
"""


def schedule_from_config(config):
    """Rebuilds a tfmot `PruningSchedule` from its `get_config()` dict
    (`{"class_name": ..., "config": ...}`).

    Example:
    >>> schedule_from_config({"config": {}})
    Traceback (most recent call last):
    ...
    ValueError: A tfmot schedule config has 'class_name' and 'config'; received {'config': {}}.
    """
    if not isinstance(config, dict) or not {"class_name", "config"} <= set(config):
        raise ValueError(
            f"A tfmot schedule config has 'class_name' and 'config'; received {config!r}."
        )
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

    cls = getattr(pruning_schedule, config["class_name"], None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(
            f"Unknown tfmot pruning schedule {config['class_name']!r} in a "
            "PruningScheduleAdapter config."
        )
    return cls.from_config(config["config"])
