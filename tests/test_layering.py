"""The core stays backend-neutral: only the TensorFlow-only modules import TF."""

import ast
import pathlib

import keras_lottery

TENSORFLOW_ONLY = {
    "exporters.py", "multi_worker.py", "tflite_csr.py", "tflite_tensors.py", "tfmot_interop.py",
}
# Take gradients or compile with each backend's own machinery, importing each
# backend only inside the function for it (never at module level).
PER_BACKEND = {"compiled.py", "gradients.py"}
PACKAGE = pathlib.Path(keras_lottery.__file__).parent


def _imports(path, top_level_only=False):
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_do_not_import_tensorflow_or_tfmot():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 5
    for path in modules:
        imports = _imports(path)
        # tfmot switches tf.keras to Keras 2 for the process: only the interop
        # module names it, and only inside a function.
        assert "tensorflow_model_optimization" not in _imports(path, top_level_only=True), path.name
        if path.name != "tfmot_interop.py":
            assert "tensorflow_model_optimization" not in imports, path.name
        assert "tf_keras" not in imports, path.name
        if path.name in PER_BACKEND:
            top = _imports(path, top_level_only=True)
            assert not top & {"tensorflow", "jax", "torch"}, f"{path.name}: {top}"
        elif path.name not in TENSORFLOW_ONLY:
            assert "tensorflow" not in imports, f"{path.name} imports tensorflow"


def test_keras_internals_are_reached_through_one_module():
    """Only keras_internals imports keras.src; other modules use no private
    attribute of Keras objects it provides an accessor for."""
    private = ("._layers", "._tracker", "._iterations", "._variables", "._inputs_struct",
               "._keras_history", "._inbound_nodes", "._symbolic_build", "._learning_rate",
               "._trainable_variables", "._non_trainable_variables", "._flatten_layers",
               "._layout")
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "keras_internals.py":
            continue
        text = path.read_text()
        assert "keras.src" not in text, f"{path.name} imports keras.src"
        found = [name for name in private if name in text]
        assert not found, f"{path.name} reaches into Keras privates {found}"


def test_public_api_is_exported():
    for name in keras_lottery.__all__:
        assert hasattr(keras_lottery, name), name
        obj = getattr(keras_lottery, name)
        if callable(obj):
            assert obj.__doc__ and "Example" in obj.__doc__, name


def test_every_package_module_has_its_test_module():
    """tests/ mirrors the package: keras_lottery/<layer>/<m>.py is tested in
    tests/<layer>/test_<m>.py."""
    tests = pathlib.Path(__file__).resolve().parent  # the source tree, also under Bazel
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in ("__init__.py", "version.py")
        and not (tests / path.relative_to(PACKAGE).parent / f"test_{path.name}").exists()
    ]
    assert missing == []


# Lower layers first: a module imports only from its own layer or below.
LAYERS = ["sparsity", "backend", "core", "files", "methods", "export", "imp"]


def _package_imports(path):
    """The keras_lottery layers a module imports (top level or in functions)."""
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "keras_lottery" and len(parts) > 1 and parts[1] in LAYERS:
                layers.add(parts[1])
    return layers


def test_layers_import_only_downwards():
    """No import circle between subpackages: every import goes to the same
    layer or a lower one, and the mask math imports no Keras at all."""
    upward = []
    for layer in LAYERS:
        for path in sorted((PACKAGE / layer).glob("*.py")):
            for imported in _package_imports(path):
                if LAYERS.index(imported) > LAYERS.index(layer):
                    upward.append(f"{layer}/{path.name} imports keras_lottery.{imported}")
            if layer == "sparsity":
                assert not _imports(path) & {"keras", "tensorflow", "jax", "torch"}, path.name
    assert upward == []
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "version.py"]
