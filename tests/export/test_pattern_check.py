"""check_pattern: groups breaking an N:M pattern, counted per kernel."""

import numpy as np
import pytest

import keras_lottery as kl
from conftest import mlp


def test_check_pattern_counts_broken_groups():
    model = mlp(input_dim=8, hidden=(4,))
    counts = kl.check_pattern(model, "2:4")
    assert counts == {"fc0/kernel": 2 * 4, "out/kernel": 1 * 3}  # dense: every group breaks
    with pytest.raises(ValueError, match="N:M"):
        kl.check_pattern(model, "4:2")
    with pytest.raises(ValueError, match="nope"):
        kl.check_pattern(model, "2:4", layers=["nope"])


def test_a_conv_kernel_is_checked_along_its_input_channels():
    import keras

    model = keras.Sequential([keras.Input((5, 5, 8)), keras.layers.Conv2D(2, 3, name="c")])
    kernel = np.zeros((3, 3, 8, 2), "float32")
    kernel[:, :, 0::4, :] = 1.0  # 2 of every 4 input channels at most: holds
    kernel[:, :, 1::4, :] = 1.0
    model.get_layer("c").kernel.assign(kernel)
    assert kl.check_pattern(model, "2:4") == {"c/kernel": 0}
    kernel[0, 0, 2, 1] = 1.0  # one group of one tap breaks
    model.get_layer("c").kernel.assign(kernel)
    assert kl.check_pattern(model, "2:4") == {"c/kernel": 1}
    assert kl.check_pattern(model, "2:4", layers=["c"]) == {"c/kernel": 1}
