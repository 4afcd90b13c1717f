"""Test setup: TensorFlow backend by default, two logical CPU devices.

The CPU is split before any TensorFlow op runs so MirroredStrategy tests have
two replicas on a 2-core machine (KERAS_LOTTERY_TEST_CPUS=4 gives four: one
process cannot run strategies of two sizes, their collectives' group keys
clash, so the four-replica test runs in a subprocess).
"""

import gc
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _threads_per_worker():
    """The CPU's share of one pytest-xdist worker: each library's own pool
    sized to all cores in every worker had 4 busy threads on 2 cores, and
    their spinning cost a third of the PyTorch suite's time (73 s -> 50 s
    wall, 95 -> 59 CPU-seconds, measured with `make test`'s -n 2).
    KERAS_LOTTERY_TEST_THREADS sets it (0: the libraries' defaults)."""
    asked = os.environ.get("KERAS_LOTTERY_TEST_THREADS")
    if asked is not None:
        return int(asked)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0


_THREADS = _threads_per_worker()
if _THREADS:
    # Read at import by OpenMP (PyTorch), TensorFlow and XLA (JAX), and
    # inherited by the scripts the tests start.
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(_THREADS)
    if _THREADS == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + (
            " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")).strip()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    if _THREADS:
        tf.config.threading.set_intra_op_parallelism_threads(_THREADS)
    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration()]
        * int(os.environ.get("KERAS_LOTTERY_TEST_CPUS", "2")),
    )


# What the imports made (TensorFlow's, Keras') lives as long as the process:
# out of every collection, so Python's own collections stay cheap.
gc.freeze()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "backend_independent: its result cannot depend on the Keras backend (a subprocess "
        "that picks its own, tfmot's Keras 2, structure-only analysis), or a faster test "
        "covers its backend-sensitive part on every backend; runs on TensorFlow only.")


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="backend-independent: runs once, on TensorFlow")
    for item in items:
        if item.get_closest_marker("backend_independent"):
            item.add_marker(skip)


_STRATEGIES = {}


def mirrored_strategy(replicas):
    """One MirroredStrategy per device count for the whole test process: two
    strategies in one process reuse collective keys and abort each other's
    all-reduces ("Collective instance 100 expected type 2 ...")."""
    import tensorflow as tf

    if replicas not in _STRATEGIES:
        devices = tf.config.list_logical_devices("CPU")[:replicas]
        assert len(devices) == replicas, f"conftest made {len(devices)} CPU devices"
        _STRATEGIES[replicas] = tf.distribute.MirroredStrategy([d.name for d in devices])
    return _STRATEGIES[replicas]


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")
    # Without free_memory's gc.collect(): a full collection over TensorFlow's
    # heap took ~1.4 s per test, half the suite's time; Python's own
    # generational collection still runs.
    keras.backend.clear_session(free_memory=False)


def mlp(input_dim=12, hidden=(16, 8), outputs=3, name=None):
    """A small functional MLP with named layers fc0, fc1, ..., out."""
    inputs = keras.Input((input_dim,))
    x = inputs
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation="relu", name=f"fc{i}")(x)
    outputs_ = keras.layers.Dense(outputs, name="out")(x)
    return keras.Model(inputs, outputs_, name=name)


def two_layer_linear(w1, w2):
    """A wrapped x -> Dense(w1, linear, no bias) -> Dense(w2, no bias), the
    network whose scores (SNIP, GraSP, SynFlow) are computed by hand."""
    import keras_lottery as kl

    model = keras.Sequential([
        keras.Input((w1.shape[0],)),
        keras.layers.Dense(w1.shape[1], use_bias=False, name="fc"),
        keras.layers.Dense(w2.shape[1], use_bias=False, name="out"),
    ])
    model.get_layer("fc").kernel.assign(w1)
    model.get_layer("out").kernel.assign(w2)
    return kl.wrap(model)


def classification_data(n=96, input_dim=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, input_dim)).astype("float32")
    w = rng.normal(size=(input_dim, classes)).astype("float32")
    y = np.argmax(x @ w, axis=1)
    return x, y
