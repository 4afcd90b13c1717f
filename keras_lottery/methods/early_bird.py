"""Early-Bird tickets (You et al., ICLR 2020): end a round once the mask it
would lead to stops changing.

After every epoch of a round, the masks the next round would get from the
current weights are compared with those of the epoch before (the fraction of
positions that differ, over all pruned weights). When the last `patience`
distances all stay below `threshold`, the ticket has "emerged" and training
the round further would not change it: the round ends there.

`EarlyBird` is the tracker (pure NumPy); `IterativeMagnitudePruning(
early_bird=EarlyBird(...))` feeds it and ends rounds with it. Results rows
record the distances and the steps each round took.

Example:
>>> bird = EarlyBird(threshold=0.1, patience=2)
>>> a, b = {"k": np.array([1, 1, 0, 0], bool)}, {"k": np.array([1, 0, 1, 0], bool)}
>>> [bird.update(m) for m in (a, b, b, b)]
[None, 0.5, 0.0, 0.0]
>>> bird.emerged
True
"""

import numpy as np


class EarlyBird:
    """Tracks the distance between consecutive masks of a round.

    Args:
        threshold: mask distance (fraction of differing positions) under
            which two consecutive masks count as the same ticket.
        patience: how many consecutive distances must stay under it.
        min_epochs: epochs a round trains at least before it may end early.

    Example:
    >>> EarlyBird(threshold=0.02, patience=3).get_config()
    {'threshold': 0.02, 'patience': 3, 'min_epochs': 1}
    """

    def __init__(self, threshold=0.02, patience=3, min_epochs=1):
        if not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"threshold must be in [0, 1); received {threshold!r}.")
        if int(patience) < 1 or int(min_epochs) < 1:
            raise ValueError(
                f"patience and min_epochs must be >= 1; received {patience!r}, {min_epochs!r}."
            )
        self.threshold = float(threshold)
        self.patience = int(patience)
        self.min_epochs = int(min_epochs)
        self.reset()

    def reset(self):
        """Forgets the round's masks (called at the start of every round)."""
        self.distances = []
        self._previous = None

    def update(self, masks):
        """Records the masks of one epoch; returns the distance to the last
        epoch's (None for the first)."""
        masks = {key: np.asarray(mask, bool) for key, mask in masks.items()}
        distance = None
        if self._previous is not None:
            distance = mask_distance(self._previous, masks)
            self.distances.append(distance)
        self._previous = masks
        return distance

    @property
    def emerged(self):
        """Whether the last `patience` distances all stayed under `threshold`
        after at least `min_epochs` epochs."""
        epochs = len(self.distances) + (self._previous is not None)
        recent = self.distances[-self.patience:]
        return (
            epochs >= self.min_epochs
            and len(recent) == self.patience
            and all(d < self.threshold for d in recent)
        )

    def get_config(self):
        return {"threshold": self.threshold, "patience": self.patience,
                "min_epochs": self.min_epochs}


def mask_distance(a, b):
    """Fraction of positions where two mask maps differ, over all their keys.

    Example:
    >>> mask_distance({"k": np.array([1, 0], bool)}, {"k": np.array([1, 1], bool)})
    0.5
    """
    if set(a) != set(b):
        raise ValueError(f"mask maps have different keys: {sorted(set(a) ^ set(b))}.")
    differing = sum(int(np.count_nonzero(a[key] != b[key])) for key in a)
    total = sum(int(np.size(a[key])) for key in a)
    return differing / total if total else 0.0
