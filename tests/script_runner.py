"""Runs the example and benchmark scripts as a user does, without paying
TensorFlow's import for every run.

A run is a fresh process that executes the script as `__main__` with its own
`sys.argv`, environment, working directory, stdout and stderr, and exits with
the script's status, as `python script.py ...` does. The processes are forked
from a server that has imported TensorFlow, Keras and keras_lottery once
(`multiprocessing`'s forkserver with those modules preloaded): the import,
7-15 s on two cores, is paid once per pytest worker instead of once per run.
The server runs no TensorFlow op, so each child starts TensorFlow's runtime
itself, as a new interpreter would.

What a fork cannot show is what happens before TensorFlow loads (the scripts
set `TF_CPP_MIN_LOG_LEVEL` first): the tests that check start-up output, and
runs on another backend, use `fresh=True`, a new interpreter.

A script of the repository's `examples` or `benchmarks` package runs as the
README runs it, `python -m examples.lenet` (the package imported first, the
repository root on the path); any other file as `python path`.

Example (the result is a `subprocess.CompletedProcess`):

    result = run_script("examples/lenet.py", ["--rounds=2"], env=env, cwd=root)
    assert result.returncode == 0, result.stderr
"""

import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import types

_HERE = os.path.dirname(os.path.abspath(__file__))
_PRELOAD = ["forkserver_preload"]
_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(_PRELOAD)
    return _CONTEXT


def _module(path):
    """`(package root, "package.name")` when `path` is a module of a package
    (a folder with `__init__.py`), else None."""
    folder = os.path.dirname(path)
    if not os.path.exists(os.path.join(folder, "__init__.py")):
        return None
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.dirname(folder), f"{os.path.basename(folder)}.{name}"


def _run_main(path):
    """Runs `path` as `__main__`: `python -m package.name` for a package's
    module, `python path` otherwise."""
    module = _module(path)
    if module is None:
        runpy.run_path(path, run_name="__main__")
    else:
        runpy.run_module(module[1], run_name="__main__", alter_sys=True)


def _child(path, argv, env, cwd, stdout_path, stderr_path, mock_tfds):
    """The forked process: the script's `__main__`, as the interpreter runs it."""
    target = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, 1)
    os.close(target)
    if stderr_path == stdout_path:
        os.dup2(1, 2)
    else:
        target = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, 2)
        os.close(target)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [path, *argv]
    module = _module(path)
    sys.path[:0] = [os.path.dirname(path) if module is None else module[0]] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if mock_tfds is None:
        _run_main(path)
        return
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=mock_tfds):
        _run_main(path)


def _forkable(env):
    # The server imported Keras on TensorFlow; another backend needs its own
    # interpreter.
    return env.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


class ScriptProcess:
    """A started script, with the part of `subprocess.Popen`'s interface the
    tests use: `pid`, `poll()`, `wait(timeout)`, `send_signal()`, `kill()`,
    `returncode`."""

    def __init__(self, process):
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self):
        return self._process.exitcode

    def poll(self):
        return self._process.exitcode

    def wait(self, timeout=None):
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        return self._process.exitcode

    def send_signal(self, signal_number):
        os.kill(self.pid, signal_number)

    def kill(self):
        self._process.kill()
        self._process.join()


def start_script(path, argv, env, cwd, stdout_path, stderr_path=None, mock_tfds=None):
    """Starts `python path *argv` (forked from the server, see the module
    docstring) writing to the given files (stderr to stdout's file when None);
    returns a `ScriptProcess`. `env` must select the TensorFlow backend."""
    if not _forkable(env):
        raise ValueError("start_script forks a TensorFlow interpreter; this env selects "
                         f"KERAS_BACKEND={env.get('KERAS_BACKEND')}.")
    context = _context()
    # Python 3.11's fork server ignores the parent's sys.path: it finds the
    # preload module through PYTHONPATH (an ImportError there is silent, and
    # every script would import TensorFlow again; test_script_runner checks).
    server_env = {"KERAS_BACKEND": "tensorflow",
                  "PYTHONPATH": os.pathsep.join(
                      p for p in (_HERE, os.environ.get("PYTHONPATH")) if p)}
    saved = {k: os.environ.get(k) for k in server_env}
    os.environ.update(server_env)  # the server starts with this environment
    # multiprocessing would have every child import the parent's `__main__`
    # (pytest's, or a script's) before the target runs: the child runs a
    # script of its own, so it gets an empty `__main__` to start from.
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        process = context.Process(
            target=_child,
            args=(os.path.abspath(path), list(argv), dict(env), str(cwd), str(stdout_path),
                  str(stderr_path or stdout_path), mock_tfds))
        process.start()
    finally:
        sys.modules["__main__"] = main
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return ScriptProcess(process)


def run_script(path, argv, env, cwd, timeout=900, mock_tfds=None, fresh=False):
    """Runs `python path *argv` with `env` in `cwd`; returns a
    `subprocess.CompletedProcess` with text stdout and stderr. Raises
    `subprocess.TimeoutExpired` (the process killed) after `timeout` s."""
    path = os.path.abspath(path)
    if fresh or not _forkable(env):
        return _run_fresh(path, argv, env, cwd, timeout, mock_tfds)
    with tempfile.TemporaryDirectory() as scratch:
        stdout_path = os.path.join(scratch, "stdout")
        stderr_path = os.path.join(scratch, "stderr")
        process = start_script(path, argv, env, cwd, stdout_path, stderr_path, mock_tfds)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        with open(stdout_path, errors="replace") as f:
            stdout = f.read()
        with open(stderr_path, errors="replace") as f:
            stderr = f.read()
    return subprocess.CompletedProcess([sys.executable, path, *argv], process.returncode,
                                       stdout, stderr)


def run_code(code, directory, argv=(), env=None, timeout=600):
    """`run_script` on `code` written to `<directory>/job.py`, in
    `directory`, with the TensorFlow backend unless `env` says otherwise."""
    path = os.path.join(str(directory), "job.py")
    with open(path, "w") as f:
        f.write(code)
    env = {"KERAS_BACKEND": "tensorflow", **os.environ, **(env or {})}
    env.setdefault("PYTHONPATH", os.path.dirname(_HERE))
    return run_script(path, list(argv), env=env, cwd=directory, timeout=timeout)


def _run_fresh(path, argv, env, cwd, timeout, mock_tfds):
    module = _module(path)
    if module is not None:  # `python -m` finds the package from the root
        env = {**env, "PYTHONPATH": os.pathsep.join(
            p for p in (module[0], env.get("PYTHONPATH")) if p)}
    if mock_tfds is None:
        target = [path] if module is None else ["-m", module[1]]
        command = [sys.executable, *target, *argv]
    else:
        # tensorflow-datasets' mock serves fake cifar10/mnist without a download.
        run = (f"runpy.run_path({path!r}, run_name='__main__')" if module is None else
               f"runpy.run_module({module[1]!r}, run_name='__main__', alter_sys=True)")
        code = (
            "import runpy, sys, tensorflow_datasets as tfds\n"
            f"sys.argv = {[path, *argv]!r}\n"
            f"sys.path.insert(0, {os.path.dirname(path) if module is None else module[0]!r})\n"
            f"with tfds.testing.mock_data(num_examples={mock_tfds}):\n"
            f"    {run}\n"
        )
        command = [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(cwd))
