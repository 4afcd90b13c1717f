"""An int8 ticket keeps every pruned weight exactly 0 (counted in the file)."""

import os

import keras
import numpy as np
import pytest

import keras_lottery as kl
from conftest import classification_data
from conftest import mlp

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TFLite needs the TF backend"
)


def _ticket(density=0.2, seed=0, hidden=(64, 32)):
    model = kl.wrap(mlp(input_dim=12, hidden=hidden))
    rng = np.random.default_rng(seed)
    kl.set_masks(model, {k: rng.random(m.shape) < density for k, m in kl.get_masks(model).items()})
    return model


def test_int8_file_keeps_every_pruned_weight_zero(tmp_path):
    from keras_lottery.export.tflite_tensors import constant_tensors

    model = _ticket(hidden=(256, 128))  # big enough for weights to dominate the file
    x, _ = classification_data(n=200)
    path = str(tmp_path / "int8.tflite")
    # The default for quantized files is the dense encoding, which the runtime computes right.
    result = kl.export_tflite(model, path, quantize="int8", representative_data=x)
    assert result.sparse is False and result.quantize == "int8"
    tensors = {t.shape: t for t in constant_tensors(open(path, "rb").read())
               if t.array.dtype == np.int8 and t.array.ndim == 2}
    checked = 0
    for key, mask in kl.get_masks(model).items():
        stored = tensors[mask.T.shape].array.T  # TFLite keeps FC kernels as (out, in)
        assert np.all(stored[~mask] == 0), key
        # Survivors may round to 0 too, but the pruned ones are all there.
        assert np.count_nonzero(stored == 0) >= np.count_nonzero(~mask)
        checked += int(np.count_nonzero(~mask))
    assert checked > 0.7 * sum(m.size for m in kl.get_masks(model).values())
    dense_float = kl.export_tflite(model, str(tmp_path / "f32.tflite"), sparse=False)
    assert os.path.getsize(path) < 0.35 * dense_float.bytes  # int8: 1 byte per weight, not 4


def test_explicit_sparse_int8_is_still_verified_and_refused(tmp_path):
    model = _ticket()
    x, _ = classification_data(n=64)
    with pytest.raises(kl.ExportVerificationError, match="sparse=False"):
        kl.export_tflite(model, str(tmp_path / "bad.tflite"), sparse=True, quantize="int8",
                         representative_data=x)


def test_float_tensors_come_back_with_the_keras_values(tmp_path):
    from keras_lottery.export.tflite_tensors import constant_tensors

    model = _ticket(density=1.0)
    path = str(tmp_path / "f.tflite")
    kl.export_tflite(model, path, sparse=False)
    kernel = keras.ops.convert_to_numpy(model.layers[1].kernel)
    stored = [t.array for t in constant_tensors(open(path, "rb").read())
              if t.shape == kernel.T.shape]
    assert len(stored) == 1
    np.testing.assert_array_equal(stored[0], kernel.T)
