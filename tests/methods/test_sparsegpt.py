"""SparseGPT on one kernel: its reconstruction against zeroing the same
mask, the damped Hessian."""

import numpy as np
import pytest

from keras_lottery.methods import one_shot
from keras_lottery.methods import sparsegpt


def _correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) * (rng.random(d) * 3)[:, None]
    return (rng.normal(size=(n, d)) @ mixing).astype("float32")


@pytest.mark.parametrize("pattern", [None, (2, 4)])
def test_sparsegpt_reconstruction_beats_zeroing_the_same_mask(pattern):
    x = _correlated(512, 32).astype(np.float64)
    h = x.T @ x
    kernel = np.random.default_rng(3).normal(size=(32, 16))
    mask = one_shot._keep_per_output(np.abs(kernel) * np.sqrt(np.diag(h))[:, None], 0.5, pattern)
    kept, new = sparsegpt.prune_layer(kernel, h, 0.5, pattern, 0.01, 8, keep=mask)
    np.testing.assert_array_equal(kept, mask)
    assert (new[~mask] == 0).all()
    zeroed = one_shot._relative_error(kernel, kernel * mask, h)
    assert one_shot._relative_error(kernel, new, h) < zeroed


def test_dead_inputs_are_damped_and_marked():
    h, dead = sparsegpt.damped(np.diag([4.0, 0.0, 2.0]), 0.1)
    assert dead.tolist() == [False, True, False]
    np.testing.assert_allclose(np.diag(h), [4.0, 1.0, 2.0] + 0.1 * np.mean([4.0, 1.0, 2.0]))
