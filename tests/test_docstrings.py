"""Every public docstring example runs and prints what it says."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_lottery

MODULES = sorted(
    name for _, name, _ in pkgutil.iter_modules(keras_lottery.__path__, "keras_lottery.")
)


TENSORFLOW_ONLY = {"keras_lottery.export", "keras_lottery.multi_worker", "keras_lottery.tflite_csr",
                   "keras_lottery.tflite_tensors",
                   "keras_lottery.tfmot_interop"}


# The modules whose examples touch variables, optimizers, train steps or
# gradients: on JAX and PyTorch only these run (the others' examples are
# NumPy and Keras-level structure, the same on every backend).
BACKEND_SENSITIVE = {
    "keras_lottery", "keras_lottery.checkpoint", "keras_lottery.compiled",
    "keras_lottery.dynamic_sparse", "keras_lottery.gradients", "keras_lottery.imp",
    "keras_lottery.init_pruning", "keras_lottery.instability", "keras_lottery.keras_internals",
    "keras_lottery.mask_constraint", "keras_lottery.one_shot", "keras_lottery.optimizer_state",
    "keras_lottery.rewinding", "keras_lottery.ticket", "keras_lottery.weight_state",
    "keras_lottery.wrapper", "keras_lottery.wrapping",
}


@pytest.mark.parametrize("module_name", ["keras_lottery", *MODULES])
def test_docstring_examples(module_name):
    if module_name in TENSORFLOW_ONLY and keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow-only module")
    if module_name not in BACKEND_SENSITIVE and keras.backend.backend() != "tensorflow":
        pytest.skip("backend-independent examples: run once, on TensorFlow")
    module = importlib.import_module(module_name)
    globs = {"keras": keras, "np": np, "keras_lottery": keras_lottery, **vars(module)}
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, module_name, globs=globs)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
