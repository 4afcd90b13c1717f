"""IMP under keras.distribution on JAX (issue 27), on simulated CPU devices:
each lottery array (mask, θ0, θk) is laid out like its weight, and the run
ends with the masks a one-device run ends with."""

import json
import os

import pytest

import script_runner

pytestmark = pytest.mark.backend_independent

JOB = r'''
import json, os, sys
import numpy as np
import keras
import keras_lottery as kl
from keras import distribution as kd

def _spec(variable):
    """The sharding spec without trailing Nones (P(None, None) and P() both
    replicate)."""
    spec = list(getattr(variable.value.sharding, "spec", ()) or ())
    while spec and spec[-1] is None:
        spec.pop()
    return str(spec)

def run(distribution):
    keras.utils.set_random_seed(0)
    def build():
        inputs = keras.Input((8,))
        h = keras.layers.Dense(16, activation="relu", name="fc1")(inputs)
        return kl.wrap(keras.Model(inputs, keras.layers.Dense(4, name="out")(h)))
    if distribution is None:
        model = build()
    else:
        with distribution.scope():
            model = build()
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.integers(0, 4, 64)
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, rate=0.5, seed=1,
                                       rewind_to=2, verbose=0)
    model.fit(x, y, batch_size=16, epochs=imp.total_epochs, callbacks=[imp], verbose=0,
              shuffle=False)
    specs = {}
    for p in kl.prunable_weights(model):
        arrays = {"weight": p.variable, "mask": p.state.mask, **p.state.snapshots}
        specs[p.key] = {k: _spec(v) for k, v in arrays.items()}
    masks = {k: m.tolist() for k, m in imp.masks.items()}
    return {"masks": masks, "specs": specs, "kept": imp.results[-1]["kept"]}

devices = kd.list_devices("cpu")
n = len(devices)
mesh = kd.DeviceMesh((1, n), ["batch", "model"], devices)
layout = kd.LayoutMap(mesh)
layout["fc1/kernel"] = (None, "model")
out = {"devices": n, "single": run(None),
       "model_parallel": run(kd.ModelParallel(layout_map=layout, batch_dim_name="batch")),
       "data_parallel": run(kd.DataParallel(devices=devices))}
print("RESULT", json.dumps(out))
'''


@pytest.mark.parametrize("devices", [2, 4])
def test_lottery_arrays_follow_their_weights_layout_and_masks_match_one_device(tmp_path, devices):
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    result = script_runner.run_code(JOB, tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert out["devices"] == devices
    single = out["single"]
    for name in ("model_parallel", "data_parallel"):
        run = out[name]
        assert run["masks"] == single["masks"], name
        assert run["kept"] == single["kept"], name
        for key, specs in run["specs"].items():
            # mask, θ0 and θk sharded exactly as the weight, after rewinds and resets
            assert len(set(specs.values())) == 1, (name, key, specs)
    sharded = out["model_parallel"]["specs"]["fc1/kernel"]
    assert sharded["mask"] == "[None, 'model']", sharded
