"""The core on every Keras backend: no TensorFlow needed, clear TF-only errors.

The scripts block `import tensorflow` outright, so any TensorFlow dependency
of the core (or of keras_lottery's own schedules) fails the test.
"""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    # Block TensorFlow: Keras then runs as it does where TF is not installed.
    for name in ("tensorflow", "tensorflow_model_optimization", "tf_keras"):
        sys.modules[name] = None
    import numpy as np, keras
    import keras_lottery as kl
    keras.utils.set_random_seed(0)
    model = kl.wrap(keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="fc"),
                                      keras.layers.Dense(2, name="out")]))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    schedule = kl.schedules.Polynomial(0.5, 0.75, begin_round=1, end_round=2, power=1)
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, schedule=schedule,
                                       verbose=0)
    model.fit(np.random.rand(32, 8), np.random.rand(32, 2), epochs=3, callbacks=[imp], verbose=0)
    kernel = keras.ops.convert_to_numpy(model.get_layer("fc").kernel)
    mask = kl.get_masks(model)["fc/kernel"]
    tensorflow_imported = sys.modules.get("tensorflow") is not None
    error = None
    try:
        kl.export_tflite(model, "/tmp/never.tflite")
    except RuntimeError as e:
        error = str(e)
    # What the export error names: save the trained model here, export it in TF.
    model.save(sys.argv[1])
    probe = np.random.default_rng(1).random((16, 8)).astype("float32")
    np.savez(sys.argv[2], x=probe, y=keras.ops.convert_to_numpy(model.predict(probe, verbose=0)))
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow_imported": tensorflow_imported,
        "kept": int(mask.sum()),
        "pruned_zero": bool(np.all(kernel[~mask] == 0)),
        "export_error": error,
    }))
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_core_without_tensorflow(backend, tmp_path):
    """IMP without TensorFlow; then the path the export error names: the
    trained model saved there, loaded and exported in this TensorFlow process,
    predicts what it predicted there (not the untrained θ0 a ticket holds)."""
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT}
    saved, probe = str(tmp_path / "ticket.keras"), str(tmp_path / "probe.npz")
    result = subprocess.run([sys.executable, "-c", SCRIPT, saved, probe], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["backend"] == backend
    assert not data["tensorflow_imported"], "the core imported TensorFlow"
    assert data["kept"] == round(8 * 16 * 0.25)  # Polynomial: 50% then 75% sparsity
    assert data["pruned_zero"]
    assert "TensorFlow backend" in data["export_error"]
    assert "model.save('ticket.keras')" in data["export_error"]
    assert "keras_lottery.load_model('ticket.keras')" in data["export_error"]
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import numpy as np

    import keras_lottery as kl

    model = kl.load_model(saved)
    assert kl.get_masks(model)["fc/kernel"].sum() == data["kept"]
    with np.load(probe) as arrays:
        x, expected = arrays["x"], arrays["y"]
    exported = kl.export_tflite(model, str(tmp_path / "ticket.tflite"), sample_inputs=x)
    np.testing.assert_allclose(kl.tflite_predict(exported.path, x), expected, atol=1e-4)
