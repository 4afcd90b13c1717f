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


@pytest.mark.parametrize("module_name", ["keras_lottery", *MODULES])
def test_docstring_examples(module_name):
    if module_name in TENSORFLOW_ONLY and keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow-only module")
    module = importlib.import_module(module_name)
    globs = {"keras": keras, "np": np, "keras_lottery": keras_lottery, **vars(module)}
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, module_name, globs=globs)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
