"""What one pruning decision removes: single weights (unstructured).

A `Structure` turns scores and a density into a mask for one tensor. The
selector of `keras_lottery.decision` asks each key's structure; unstructured
pruning (single weights) is the default.

Example:
>>> Unstructured().select(np.array([3.0, 1.0, 2.0]), np.ones(3, bool), 2 / 3).tolist()
[True, False, True]
"""

import numpy as np

from keras_lottery import pruning


class Unstructured:
    """Single weights: keep the `round(size * density)` best-scoring survivors.

    Example:
    >>> Unstructured().select(np.array([1.0, 5.0]), np.array([True, True]), 0.5).tolist()
    [False, True]
    """

    elementwise = True

    def select(self, scores, mask, density):
        """The new mask: a subset of `mask` at `density` of the tensor's size."""
        mask = np.asarray(mask, bool)
        k = min(pruning.keep_count(mask.size, density), int(mask.sum()))
        return pruning.top_k_mask(pruning.survivor_scores(scores, mask), k)

    def get_config(self):
        return {"class_name": "Unstructured"}


UNSTRUCTURED = Unstructured()


def get(structures, key):
    """The structure of `key` in a `{key: Structure}` map (default: single
    weights).

    Example:
    >>> get({}, "fc/kernel").elementwise
    True
    """
    return (structures or {}).get(key, UNSTRUCTURED)
