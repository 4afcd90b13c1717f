"""What one pruning decision removes."""

import numpy as np

from keras_lottery.sparsity import structure


def test_unstructured_keeps_exact_counts_of_survivors():
    unit = structure.Unstructured()
    mask = np.array([True, True, True, False])
    out = unit.select(np.array([3.0, 1.0, 2.0, 9.0]), mask, 0.5)
    assert out.tolist() == [True, False, True, False]
    assert structure.get({}, "any").elementwise
