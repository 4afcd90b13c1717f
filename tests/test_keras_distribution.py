"""IMP, pruning at initialization, dynamic sparse training and one-shot
pruning under keras.distribution on JAX (issue 27), on simulated CPU devices:
each lottery array (mask, θ0, θk) is laid out like its weight, and every
method ends with the masks, counts and weights of a one-device run."""

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

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
y = rng.integers(0, 4, 64)

def fit(model, epochs, callbacks=()):
    model.fit(x, y, batch_size=16, epochs=epochs, callbacks=list(callbacks), verbose=0,
              shuffle=False)

def imp(model):
    imp = kl.IterativeMagnitudePruning(rounds=3, epochs_per_round=1, rate=0.5, seed=1,
                                       rewind_to=2, verbose=0)
    fit(model, imp.total_epochs, [imp])
    return {"kept": imp.results[-1]["kept"]}

def snip(model):
    kl.prune_at_init(model, "snip", 0.3, data=(x, y))
    fit(model, 1)

def synflow(model):
    kl.prune_at_init(model, "synflow", 0.3, iterations=10, distribution="global")
    fit(model, 1)

def rigl(model):
    dst = kl.DynamicSparseTraining("rigl", density=0.3, distribution="uniform", update_every=2,
                                   data=(x, y), batch_size=16, verbose=0)
    fit(model, 2, [dst])
    return {"moved": sum(u["moved"] for u in dst.updates)}

def set_(model):
    dst = kl.DynamicSparseTraining("set", density=0.3, update_every=2, verbose=0)
    fit(model, 2, [dst])
    return {"moved": sum(u["moved"] for u in dst.updates)}

def wanda(model):
    fit(model, 1)
    kl.prune_one_shot(model, "wanda", 0.5, calibration_data=[x[:32], x[32:]], verbose=0)

def sparsegpt(model):
    fit(model, 1)
    kl.prune_one_shot(model, "sparsegpt", 0.5, calibration_data=[x[:32], x[32:]], verbose=0)

METHODS = {"imp": imp, "snip": snip, "synflow": synflow, "rigl": rigl, "set": set_,
           "wanda": wanda, "sparsegpt": sparsegpt}

def _spec(variable):
    """The sharding spec without trailing Nones (P(None, None) and P() both
    replicate)."""
    spec = list(getattr(variable.value.sharding, "spec", ()) or ())
    while spec and spec[-1] is None:
        spec.pop()
    return str(spec)

def run(distribution, method):
    keras.utils.set_random_seed(0)
    def build():
        inputs = keras.Input((8,))
        h = keras.layers.Dense(16, activation="relu", name="fc1")(inputs)
        model = kl.wrap(keras.Model(inputs, keras.layers.Dense(4, name="out")(h)))
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model
    if distribution is None:
        model = build()
    else:
        with distribution.scope():
            model = build()
    out = METHODS[method](model) or {}
    specs, masks, weights = {}, {}, {}
    for p in kl.prunable_weights(model):
        arrays = {"weight": p.variable, "mask": p.state.mask, **p.state.snapshots}
        specs[p.key] = {k: _spec(v) for k, v in arrays.items()}
        masks[p.key] = keras.ops.convert_to_numpy(p.state.mask).astype(int).tolist()
        weights[p.key] = keras.ops.convert_to_numpy(p.variable.value).tolist()
    return {"masks": masks, "specs": specs, "weights": weights, **out}

devices = kd.list_devices("cpu")
n = len(devices)
mesh = kd.DeviceMesh((1, n), ["batch", "model"], devices)
layout = kd.LayoutMap(mesh)
layout["fc1/kernel"] = (None, "model")
out = {"devices": n}
for method in METHODS:
    out[method] = {
        "single": run(None, method),
        "model_parallel": run(kd.ModelParallel(layout_map=layout, batch_dim_name="batch"), method),
        "data_parallel": run(kd.DataParallel(devices=devices), method)}
print("RESULT", json.dumps(out))
'''

EXPECTED_DENSITY = {"snip": 0.3, "synflow": 0.3, "rigl": 0.3, "set": 0.3, "wanda": 0.5,
                    "sparsegpt": 0.5}


@pytest.fixture(scope="module", params=[2, 4])
def runs(request, tmp_path_factory):
    devices = request.param
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    result = script_runner.run_code(JOB, tmp_path_factory.mktemp(f"d{devices}"), env=env,
                                    timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert out["devices"] == devices
    return out


@pytest.mark.parametrize("method", ["imp", "snip", "synflow", "rigl", "set", "wanda", "sparsegpt"])
def test_every_method_matches_one_device_and_lottery_arrays_follow_their_weights(runs, method):
    single = runs[method]["single"]
    kept = sum(sum(map(sum, m)) for m in single["masks"].values())
    total = sum(len(m) * len(m[0]) for m in single["masks"].values())
    if method in EXPECTED_DENSITY:  # exact counts: what was asked for
        assert abs(kept / total - EXPECTED_DENSITY[method]) < 1 / total + 1e-9, kept / total
    else:
        assert kept < total
    if "moved" in single:
        assert single["moved"] > 0  # connections really moved
    for name in ("model_parallel", "data_parallel"):
        run = runs[method][name]
        assert run["masks"] == single["masks"], name
        for key in ("kept", "moved"):
            assert run.get(key) == single.get(key), (name, key)
        for key, weight in run["weights"].items():
            flat = [abs(a - b) for ra, rb in zip(weight, single["weights"][key])
                    for a, b in zip(ra, rb)]
            assert max(flat) < 1e-4, (name, key, max(flat))
        for key, specs in run["specs"].items():
            # mask, θ0 and θk sharded exactly as the weight, after every update
            assert len(set(specs.values())) == 1, (name, key, specs)
    sharded = runs[method]["model_parallel"]["specs"]["fc1/kernel"]
    assert sharded["mask"] == "[None, 'model']", sharded
