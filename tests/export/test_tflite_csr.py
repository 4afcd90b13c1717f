"""Re-encoding block-sparse TFLite weights as CSR when that is smaller."""

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import mlp

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="export needs the TF backend"
)


def _clustered_mlp(density):
    """Survivors clustered on a band of inputs, like a magnitude-pruned ticket
    on MNIST's central pixels: the converter picks 1x4 blocks for these."""
    model = kl.wrap(mlp(input_dim=256, hidden=(128,)))
    masks = {}
    rng = np.random.default_rng(0)
    for key, mask in kl.layer_masks(model).items():
        if key == "fc0/kernel":
            band = np.zeros(mask.shape, bool)
            band[96:160] = rng.random((64, mask.shape[1])) < density * 4
            masks[key] = band
        else:
            masks[key] = rng.random(mask.shape) < 0.5
    kl.set_layer_masks(model, masks)
    return model


def test_csr_reencoding_beats_block_encoding(tmp_path):
    from keras_lottery.export import tflite_csr

    model = _clustered_mlp(0.04)
    block = kl.export_tflite(model, str(tmp_path / "block.tflite"), sparse="block")
    small = kl.export_tflite(model, str(tmp_path / "csr.tflite"), sparse=True)
    dense = kl.export_tflite(model, str(tmp_path / "dense.tflite"), sparse=False)
    assert small.bytes < 0.7 * block.bytes < dense.bytes
    content = open(block.path, "rb").read()
    rewritten, count = tflite_csr.reencode_as_csr(content)
    assert count == 1 and len(rewritten) == small.bytes
    x = np.random.default_rng(1).normal(size=(16, 256)).astype("float32")
    np.testing.assert_allclose(kl.tflite_predict(small.path, x), kl.tflite_predict(block.path, x), atol=1e-5)
    # Nothing block-encoded, nothing rewritten.
    assert tflite_csr.reencode_as_csr(open(dense.path, "rb").read())[1] == 0
