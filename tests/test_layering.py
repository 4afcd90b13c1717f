"""The core stays backend-neutral: only the TensorFlow-only modules import TF."""

import ast
import pathlib

import keras_lottery

TENSORFLOW_ONLY = {"export.py", "multi_worker.py", "tflite_csr.py"}
PACKAGE = pathlib.Path(keras_lottery.__file__).parent


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_do_not_import_tensorflow_or_tfmot():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        imports = _imports(path)
        assert "tensorflow_model_optimization" not in imports, path.name
        assert "tf_keras" not in imports, path.name
        if path.name not in TENSORFLOW_ONLY:
            assert "tensorflow" not in imports, f"{path.name} imports tensorflow"


def test_public_api_is_exported():
    for name in keras_lottery.__all__:
        assert hasattr(keras_lottery, name), name
        obj = getattr(keras_lottery, name)
        if callable(obj):
            assert obj.__doc__ and "Example" in obj.__doc__, name
