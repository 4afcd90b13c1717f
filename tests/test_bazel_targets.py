"""Every module, test and example is listed in a BUILD target."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check", ROOT / "tools" / "check_bazel_targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_python_file_is_in_a_build_target():
    assert _checker().unlisted_files(str(ROOT)) == []


def test_checker_catches_a_forgotten_file(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "BUILD").write_text('pytest_test(name = "test_a")\n')
    (tmp_path / "tests" / "test_a.py").write_text("")
    (tmp_path / "tests" / "test_b.py").write_text("")
    # test_a is listed by name through the macro; test_b is not.
    missing = _checker().unlisted_files(str(tmp_path))
    assert missing == ["tests/test_b.py"]
