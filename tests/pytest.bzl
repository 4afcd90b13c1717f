"""`pytest_test`: one py_test per pytest module, run through pytest."""

def pytest_test(name, deps = [], data = [], size = "large", **kwargs):
    src = name + ".py"
    native.py_test(
        name = name,
        srcs = [src, "pytest_main.py"],
        main = "pytest_main.py",
        args = ["$(location %s)" % src],
        deps = deps + [":conftest", "//:keras_lottery"],
        data = data + [src],
        size = size,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
