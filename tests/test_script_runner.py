"""tests/script_runner.py: a forked script starts with TensorFlow imported,
and otherwise behaves as `python script.py` does."""

import os
import signal
import sys

import pytest

import script_runner

pytestmark = pytest.mark.backend_independent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_forked_script_finds_tensorflow_imported_and_runs_as_main(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\n"
        "print('preloaded', 'tensorflow' in sys.modules, 'keras_lottery' in sys.modules)\n"
        "print('argv', sys.argv[1:], 'cwd', os.getcwd(), 'env', os.environ.get('JOB_VALUE'))\n"
        "print('path0', sys.path[0])\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(int(sys.argv[1]))\n")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "JOB_VALUE": "7"}
    result = script_runner.run_script(script, ["3", "x"], env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "preloaded True True", result.stderr[-2000:]
    assert lines[1] == f"argv ['3', 'x'] cwd {tmp_path} env 7"
    assert lines[2] == f"path0 {tmp_path}"


def test_a_failing_or_killed_script_reports_like_a_process(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import os, signal, sys\n"
                      "if sys.argv[1] == 'raise':\n"
                      "    raise RuntimeError('boom')\n"
                      "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    raised = script_runner.run_script(script, ["raise"], env=env, cwd=tmp_path)
    assert raised.returncode == 1 and "Traceback" in raised.stderr and "boom" in raised.stderr
    killed = script_runner.run_script(script, ["kill"], env=env, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    other_backend = script_runner.run_script(
        script, ["raise"], env={**env, "KERAS_BACKEND": "jax"}, cwd=tmp_path)
    assert other_backend.returncode == 1 and "boom" in other_backend.stderr
    assert sys.executable in other_backend.args
