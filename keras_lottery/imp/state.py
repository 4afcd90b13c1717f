"""The state of an IMP run between rounds, and its checkpoint form.

`IMPState` is everything the `IterativeMagnitudePruning` callback knows
between two rounds besides the model itself: which round it is in, where the
round started, the rows of finished rounds, the masks of every round, and
the rewind points (θ0 with the other weights' initial values; θk with the
optimizer state at step k). `to_arrays` / `from_arrays` are mirror images:
an IMP checkpoint is the model's and optimizer's variables plus these.

Example:
>>> state = IMPState()
>>> arrays, metadata = state.to_arrays()
>>> IMPState.from_arrays(arrays, metadata).round
0
"""

import dataclasses

import keras

from keras_lottery.files import checkpoint as checkpoint_lib
from keras_lottery.files import file_io
from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.sparsity import structure as structure_lib
from keras_lottery.sparsity import vocabulary
from keras_lottery.core.rewinding import RewindPoint


@dataclasses.dataclass
class IMPState:
    """See the module docstring.

    Attributes:
        round: the current round (0: dense).
        round_start_epoch: the epoch the current round started at (with
            `pending_advance`: the epoch the next round starts at).
        round_start_step: optimizer steps before the current round.
        total_steps: optimizer steps of all finished rounds.
        pending_advance: the current round has finished; the prune and
            rewind into the next round happen at the next epoch start.
        finished: every round has run.
        results: one row (dict) per finished round.
        history: the masks of every round so far, packed
            (`masks.pack`), one `(arrays, shapes)` per round.
        init_point: the θ0 rewind point (taken when training starts).
        rewind_point: the θk rewind point (`rewind_to=k`), once taken.
    """

    round: int = 0
    round_start_epoch: int = 0
    round_start_step: int = 0
    total_steps: int = 0
    pending_advance: bool = False
    finished: bool = False
    results: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)
    init_point: RewindPoint = None
    rewind_point: RewindPoint = None

    def record_masks(self, masks):
        """Appends a round's masks to `history` (bit-packed)."""
        self.history.append(masks_lib.pack(masks))

    def mask_history(self):
        """`[{key: bool array}]`, one per round."""
        return [masks_lib.unpack(arrays, shapes) for arrays, shapes in self.history]

    def to_arrays(self):
        """`(arrays, metadata)`: NumPy arrays and JSON-able metadata."""
        arrays = {}
        history_shapes = []
        for r, (packed, shapes) in enumerate(self.history):
            arrays.update({f"history:{r}:{key}": bits for key, bits in packed.items()})
            history_shapes.append(shapes)
        points = {}
        for name in ("init_point", "rewind_point"):
            point = getattr(self, name)
            if point is not None:
                point_arrays, points[name] = point.to_arrays(name)
                arrays.update(point_arrays)
        metadata = {
            "round": self.round,
            "round_start_epoch": self.round_start_epoch,
            "round_start_step": self.round_start_step,
            "total_steps": self.total_steps,
            "pending_advance": self.pending_advance,
            "finished": self.finished,
            "results": self.results,
            "history_shapes": history_shapes,
            "points": points,
        }
        return arrays, metadata

    @classmethod
    def from_arrays(cls, arrays, metadata):
        """Inverse of `to_arrays`."""
        history = []
        for r, shapes in enumerate(metadata["history_shapes"]):
            packed = {key: arrays[f"history:{r}:{key}"] for key in shapes}
            history.append((packed, shapes))
        points = {
            name: RewindPoint.from_arrays(name, arrays, point)
            for name, point in metadata["points"].items()
        }
        return cls(
            round=int(metadata["round"]),
            round_start_epoch=int(metadata["round_start_epoch"]),
            round_start_step=int(metadata["round_start_step"]),
            total_steps=int(metadata["total_steps"]),
            pending_advance=bool(metadata["pending_advance"]),
            finished=bool(metadata["finished"]),
            results=list(metadata["results"]),
            history=history,
            init_point=points.get("init_point"),
            rewind_point=points.get("rewind_point"),
        )


def run_config(settings, schedule, early_bird, keys):
    """What an IMP checkpoint records of its run, and a resuming run must
    match: the callback's `settings` (a dict of JSON-able values), the
    schedule (compared by its Keras config, not its repr), the Early-Bird
    settings and the prunable `keys`.

    Example:
    >>> schedule = keras_lottery.schedules.Geometric(0.5)
    >>> config = run_config({"seed": 3}, schedule, None, ["fc/kernel"])
    >>> config["seed"], config["schedule"]["class_name"], config["keys"]
    (3, 'Geometric', ['fc/kernel'])
    """
    config = dict(settings)
    config["schedule"] = keras.saving.serialize_keras_object(schedule)
    config["early_bird"] = None if early_bird is None else early_bird.get_config()
    config["keys"] = list(keys)
    return file_io.json_safe(config)


def upgraded(config):
    """A checkpoint's settings in the one sparsity vocabulary: checkpoints
    written before it recorded `scope`, `granularity`, `pattern` and `norm`
    (and no scorer or exclusions).

    Example:
    >>> old = {"scope": "layerwise", "granularity": "neuron", "pattern": None, "norm": "l2"}
    >>> upgraded(old)
    {'distribution': 'uniform', 'structure': 'units(axis=-1, norm=l2)', 'scorer': 'magnitude', 'exclude': None}
    """
    if "scope" not in config:
        return dict(config)
    config = dict(config)
    scope = config.pop("scope")
    granularity, pattern, norm = (config.pop(k, d) for k, d in
                                  (("granularity", "weight"), ("pattern", None), ("norm", "l1")))
    if pattern is not None:
        structure = vocabulary.structure_argument(pattern)
    elif granularity == "weight":
        structure = vocabulary.structure_argument("weight")
    else:
        structure = structure_lib.Units(norm=norm)
    config["distribution"] = vocabulary.UNIFORM if scope == "layerwise" else scope
    config["structure"] = structure.describe()
    config.setdefault("scorer", "magnitude")
    config.setdefault("exclude", None)
    return config


def save(path, model, state, config, also_to=None):
    """Writes an IMP checkpoint: the model's and optimizer's variables, the
    run's state and its settings (and the same file to `also_to`).

    Example:
    >>> import os, tempfile
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    >>> model.compile("sgd", "mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> save(path, model, IMPState(), {"rounds": 2})
    >>> load(path, model, {"rounds": 2}).round
    0
    """
    model_arrays, model_metadata = checkpoint_lib.model_arrays(model)
    state_arrays, state_metadata = state.to_arrays()
    arrays = {**model_arrays, **{f"state:{k}": v for k, v in state_arrays.items()}}
    metadata = {"config": config, "model": model_metadata, "state": state_metadata}
    checkpoint_lib.write(path, arrays, metadata)
    if also_to is not None:
        checkpoint_lib.write(also_to, arrays, metadata)


def load(path, model, config, ignore=()):
    """Restores the model from an IMP checkpoint and returns its `IMPState`.

    Args:
        path: the checkpoint.
        model: the wrapped, compiled model to restore.
        config: the settings of the run resuming; they must equal the
            checkpoint's (but for the keys in `ignore`).

    Raises:
        CheckpointError: other settings, another model, a damaged file.
    """
    arrays, metadata = checkpoint_lib.read(path)
    saved = {k: v for k, v in upgraded(metadata.get("config", {})).items() if k not in ignore}
    now = {k: v for k, v in file_io.json_safe(config).items() if k not in ignore}
    differences = file_io.config_differences(saved, now)
    if differences:
        raise checkpoint_lib.CheckpointError(
            f"{path} was written by a run with other settings "
            f"({file_io.describe_differences(differences)}). Resume with the same "
            "settings, or use another checkpoint_dir."
        )
    checkpoint_lib.restore_model(model, arrays, metadata["model"], path)
    state_arrays = {k[len("state:"):]: v for k, v in arrays.items() if k.startswith("state:")}
    return IMPState.from_arrays(state_arrays, metadata["state"])
