"""SavedModel and TFLite export: verified round-trips, sizes, refusals."""

import os

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.export import exporters as export_lib
from conftest import classification_data
from conftest import mlp

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="export needs the TF backend"
)


def _pruned_mlp(density, seed=0, hidden=(64, 32), input_dim=12):
    model = kl.wrap(mlp(input_dim=input_dim, hidden=hidden))
    rng = np.random.default_rng(seed)
    kl.set_layer_masks(
        model, {k: rng.random(m.shape) < density for k, m in kl.layer_masks(model).items()}
    )
    return model


def test_saved_model_round_trip(tmp_path):
    tf = pytest.importorskip("tensorflow")
    model = _pruned_mlp(0.3)
    path = str(tmp_path / "sm")
    result = kl.export_saved_model(model, path)
    assert result.max_abs_error <= 1e-5 and result.density == pytest.approx(
        kl.sparsity_report(model).density
    )
    x, _ = classification_data()
    loaded = tf.saved_model.load(path)
    served = np.asarray(loaded.serve(tf.constant(x)))
    np.testing.assert_allclose(served, keras.ops.convert_to_numpy(model(x)), atol=1e-5)
    # No masks or snapshots travel.
    assert len(loaded.variables) == 6
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kl.export_saved_model(model, path)
    assert kl.export_saved_model(model, path, overwrite=True).max_abs_error <= 1e-5


def test_one_overwrite_policy_for_every_export(tmp_path):
    model = _pruned_mlp(0.3)
    path = tmp_path / "m.tflite"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kl.export_tflite(model, str(path))
    assert path.read_bytes() == b"keep me"
    kl.export_tflite(model, str(path), overwrite=True)
    assert path.read_bytes() != b"keep me"


@pytest.mark.parametrize(
    "sparse, quantize",
    [(True, None), (False, None), (True, "float16"), (False, "dynamic"), (False, "int8")],
)
def test_tflite_variants_round_trip(tmp_path, sparse, quantize):
    model = _pruned_mlp(0.3)
    x, _ = classification_data(n=200)
    path = str(tmp_path / "m.tflite")
    result = kl.export_tflite(model, path, sparse=sparse, quantize=quantize, representative_data=x)
    assert os.path.getsize(path) == result.bytes
    assert result.runtime in ("ai_edge_litert", "tf.lite")
    expected = keras.ops.convert_to_numpy(model(x))
    got = kl.tflite_predict(path, x)
    scale = max(1.0, np.abs(expected).max())
    assert np.abs(got - expected).max() <= export_lib.TOLERANCES[quantize] * scale
    agreement = np.mean(np.argmax(got, 1) == np.argmax(expected, 1))
    assert agreement >= (0.999 if quantize is None else 0.9)


@pytest.mark.parametrize("quantize", ["int8", "dynamic"])
def test_quantized_sparse_never_written_silently(tmp_path, quantize):
    model = _pruned_mlp(0.3)
    x, _ = classification_data(n=64)
    path = str(tmp_path / "bad.tflite")
    with pytest.raises(kl.ExportVerificationError, match="XNNPACK|sparse=False"):
        kl.export_tflite(model, path, sparse=True, quantize=quantize, representative_data=x)
    assert not os.path.exists(path)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_wrong_file_is_caught(tmp_path, monkeypatch):
    model = _pruned_mlp(0.3)
    other = kl.strip(_pruned_mlp(0.3, seed=9))
    for w in other.weights:  # a different model with the same signature
        w.assign(np.random.default_rng(1).normal(size=w.shape))
    real_convert = export_lib._convert
    monkeypatch.setattr(
        export_lib, "_convert", lambda tf, m, *a: real_convert(tf, other, *a)
    )
    path = str(tmp_path / "wrong.tflite")
    with pytest.raises(kl.ExportVerificationError, match="differs"):
        kl.export_tflite(model, path)
    assert not os.path.exists(path)


def test_sizes_shrink_with_density(tmp_path):
    sizes = []
    for density in (0.5, 0.2, 0.05):
        model = _pruned_mlp(density, hidden=(256, 128), input_dim=64)
        result = kl.export_tflite(model, str(tmp_path / f"{density}.tflite"))
        sizes.append(result.bytes)
    assert sizes[0] > sizes[1] > sizes[2]
    report = kl.size_report(_pruned_mlp(0.05, hidden=(256, 128), input_dim=64), str(tmp_path / "r"))
    assert report["tflite_sparse_bytes"] < 0.2 * report["tflite_dense_bytes"]
    assert report["saved_model_variables_gzip_bytes"] < 0.3 * report["saved_model_variables_bytes"]


def test_conv_and_depthwise_mobilenet(tmp_path):
    base = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10
    )
    model = kl.wrap(base)
    kinds = {type(p.owner).__name__ for p in kl.prunable_weights(model)}
    assert {"Conv2D", "DepthwiseConv2D", "Dense"} <= kinds
    rng = np.random.default_rng(0)
    kl.set_layer_masks(model, {k: rng.random(m.shape) < 0.2 for k, m in kl.layer_masks(model).items()})
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    result = kl.export_tflite(model, str(tmp_path / "mnv2.tflite"), sample_inputs=x)
    assert result.max_abs_error <= 1e-4
    sm = kl.export_saved_model(model, str(tmp_path / "mnv2_sm"), sample_inputs=x)
    assert sm.max_abs_error <= 1e-4


def test_embedding_model(tmp_path):
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="emb")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = kl.wrap(keras.Model(inputs, keras.layers.Dense(3, name="out")(x)))
    tokens = np.random.default_rng(0).integers(0, 50, size=(16, 6)).astype("int32")
    result = kl.export_tflite(model, str(tmp_path / "emb.tflite"), sample_inputs=tokens)
    assert result.max_abs_error <= 1e-4


def test_bad_arguments(tmp_path):
    model = _pruned_mlp(0.5)
    with pytest.raises(ValueError, match="quantize"):
        kl.export_tflite(model, str(tmp_path / "a.tflite"), quantize="int4")
    with pytest.raises(ValueError, match="representative_data"):
        kl.export_tflite(model, str(tmp_path / "a.tflite"), quantize="int8")
    with pytest.raises(TypeError, match="keras.Model"):
        kl.export_tflite(object(), str(tmp_path / "a.tflite"))


def test_falls_back_to_tf_lite_interpreter(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    result = kl.export_tflite(_pruned_mlp(0.3), str(tmp_path / "m.tflite"))
    assert result.runtime == "tf.lite"


def test_bad_sparse_argument(tmp_path):
    with pytest.raises(ValueError, match="sparse"):
        kl.export_tflite(_pruned_mlp(0.5), str(tmp_path / "a.tflite"), sparse="csr")


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_every_file_written_respects_the_umask(tmp_path, mask):
    """Tickets, checkpoints, `.tflite` files and SavedModels get the modes
    `open()` gives under the umask (a teammate or a serving account can read
    them), not the 0600/0700 of the private temporary files they are staged in."""
    from keras_lottery.files import checkpoint

    previous = os.umask(mask)
    try:
        model = _pruned_mlp(0.3)
        written = [
            kl.save_ticket(model, str(tmp_path / "ticket.npz")),
            kl.export_tflite(model, str(tmp_path / "ticket.tflite")).path,
            kl.export_saved_model(model, str(tmp_path / "saved")).path,
        ]
        checkpoint.write(str(tmp_path / "ckpt.npz"), {"a": np.zeros(2)}, {"round": 0})
        written.append(str(tmp_path / "ckpt.npz"))
    finally:
        os.umask(previous)
    modes = {}
    for path in written:
        paths = [path] if os.path.isfile(path) else [
            os.path.join(root, name) for root, dirs, files in os.walk(path)
            for name in [".", *files]]
        for item in paths:
            directory = os.path.isdir(item)
            expected = (0o777 if directory else 0o666) & ~mask
            modes[item] = (oct(os.stat(item).st_mode & 0o777), oct(expected))
    assert len(modes) > 5
    assert all(got == expected for got, expected in modes.values()), modes


def test_export_is_quiet_unless_asked(tmp_path, capfd):
    """The converter prints lines from C++ (here the int8 calibration line,
    printed whatever TF_CPP_MIN_LOG_LEVEL says): none reach the terminal
    unless verbose=True."""
    model = _pruned_mlp(0.5)
    x, _ = classification_data()
    capfd.readouterr()
    kl.export_tflite(model, str(tmp_path / "a.tflite"), quantize="int8", representative_data=x)
    kl.export_saved_model(model, str(tmp_path / "sm"))
    quiet = capfd.readouterr()
    assert "fully_quantize" not in quiet.out + quiet.err and not quiet.err.strip(), quiet
    kl.export_tflite(model, str(tmp_path / "b.tflite"), quantize="int8", representative_data=x,
                     verbose=True)
    loud = capfd.readouterr()
    assert "fully_quantize" in loud.out + loud.err
