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

from keras_lottery import masks as masks_lib
from keras_lottery.rewinding import RewindPoint


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
