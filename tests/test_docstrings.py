"""Every public docstring example runs and prints what it says."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_lottery

# Every module of every layer (the layers' own __init__ hold only a docstring).
MODULES = sorted(
    name for _, name, is_package in pkgutil.walk_packages(keras_lottery.__path__, "keras_lottery.")
    if not is_package
)
assert len(MODULES) > 30, MODULES


TENSORFLOW_ONLY = {"keras_lottery.export.exporters", "keras_lottery.imp.multi_worker", "keras_lottery.export.tflite_csr",
                   "keras_lottery.export.tflite_tensors",
                   "keras_lottery.imp.tfmot_interop"}


# The modules whose examples touch variables, optimizers, train steps or
# gradients: on JAX and PyTorch only these run (the others' examples are
# NumPy and Keras-level structure, the same on every backend).
BACKEND_SENSITIVE = {
    "keras_lottery", "keras_lottery.files.checkpoint", "keras_lottery.backend.compiled",
    "keras_lottery.methods.dynamic_sparse", "keras_lottery.backend.gradients", "keras_lottery.imp.callback",
    "keras_lottery.methods.init_pruning", "keras_lottery.methods.instability", "keras_lottery.backend.keras_internals",
    "keras_lottery.core.mask_constraint", "keras_lottery.methods.one_shot", "keras_lottery.backend.optimizer_state",
    "keras_lottery.core.rewinding", "keras_lottery.files.ticket", "keras_lottery.core.weight_state",
    "keras_lottery.core.wrapper", "keras_lottery.core.wrapping",
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
