"""tfmot schedules rebuilt from their configs (in a process of its own, see
script_runner: importing tfmot switches tf.keras to Keras 2 for the whole
process)."""

import importlib.util
import textwrap

import keras
import pytest

from keras_lottery.imp import tfmot_interop
import script_runner



def test_bad_config_is_refused_before_importing_tfmot(tmp_path):
    # In a fresh interpreter: another test of this process may have imported
    # tfmot already, which would make the module check meaningless.
    script = textwrap.dedent(
        """
        import sys
        from keras_lottery.imp import tfmot_interop
        try:
            tfmot_interop.schedule_from_config({"config": {}})
        except ValueError as error:
            print("class_name" in str(error), "tensorflow_model_optimization" in sys.modules)
        """
    )
    result = script_runner.run_code(script, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["True", "False"]


def test_adapter_config_round_trips_in_subprocess(tmp_path):
    if importlib.util.find_spec("tensorflow_model_optimization") is None:
        pytest.skip("tensorflow-model-optimization is not installed")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tfmot needs TensorFlow")
    script = textwrap.dedent(
        """
        import json, keras, numpy as np
        import keras_lottery as kl
        import tensorflow_model_optimization as tfmot
        schedule = tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, 10, 100, frequency=10)
        adapter = kl.schedules.PruningScheduleAdapter(schedule)
        rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(adapter))
        print(json.dumps([type(rebuilt.schedule).__name__,
                          rebuilt.target(1, 55, 0) == adapter.target(1, 55, 0)]))
        """
    )
    result = script_runner.run_code(script, tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == '["PolynomialDecay", true]'
