"""`pip install` into the project's venv, through uv where uv can be had.

uv installs TensorFlow, JAX and PyTorch's wheels about 3x faster than pip
(`make demo` on a fresh machine: 76 s against 249 s for the install). It does
not read pip's configuration, so this script hands it pip's own settings
(`pip config list`: find-links, index URLs, constraints, certificate,
timeout): both installers see the same packages. Anything uv cannot do falls
back to pip, with the reason printed.

    python tools/pip_install.py .venv/bin/python -e ".[examples,export]"
"""

import os
import shutil
import subprocess
import sys

# pip's option -> (uv's option, whether the value is a space-separated list).
_OPTIONS = {
    "index-url": ("--index-url", False),
    "extra-index-url": ("--extra-index-url", True),
    "find-links": ("--find-links", True),
    "constraint": ("--constraint", True),
}


def pip_settings(python):
    """pip's effective settings, `{option: value}`: environment variables
    (`:env:.` keys) over configuration files, as pip applies them.

    Example:
    >>> isinstance(pip_settings(sys.executable), dict)
    True
    """
    listing = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, check=False).stdout
    from_files, from_env = {}, {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if not value:
            continue
        section, _, option = key.rpartition(".")
        if section not in (":env:", "global", "install"):
            continue
        value = value.strip().strip("'\"")
        (from_env if section == ":env:" else from_files)[option] = value
    return {**from_files, **from_env}


def uv_command(uv, python, settings, arguments):
    """The `uv pip install` command line equivalent to pip's settings.

    Example:
    >>> uv_command("uv", "py", {"find-links": "/w /x"}, ["-e", "."])[-6:]
    ['--find-links', '/w', '--find-links', '/x', '-e', '.']
    """
    # pip takes the best version over every index; uv's default takes the
    # first index that has the package.
    command = [uv, "pip", "install", "--quiet", "--python", python,
               "--index-strategy", "unsafe-best-match"]
    for option, (flag, is_list) in _OPTIONS.items():
        value = settings.get(option)
        if value:
            for item in value.split() if is_list else [value]:
                command += [flag, item]
    return command + list(arguments)


def uv_environment(settings):
    environment = dict(os.environ)
    if settings.get("cert"):
        environment.setdefault("SSL_CERT_FILE", settings["cert"])
    if settings.get("default-timeout"):
        environment.setdefault("UV_HTTP_TIMEOUT", settings["default-timeout"].split(".")[0])
    return environment


def find_uv(python):
    """uv next to the venv's Python, installed there by pip if missing;
    None where it cannot be had."""
    uv = os.path.join(os.path.dirname(python), "uv")
    if not os.path.exists(uv):
        installed = subprocess.run([python, "-m", "pip", "install", "--quiet", "uv"],
                                   capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            print(installed.stdout + installed.stderr, file=sys.stderr)
            return shutil.which("uv")
    return uv if os.path.exists(uv) else shutil.which("uv")


def main(argv):
    if len(argv) < 3:
        sys.exit(f"usage: {argv[0]} VENV_PYTHON PIP_INSTALL_ARGUMENTS...")
    python, arguments = argv[1], argv[2:]
    if os.environ.get("KERAS_LOTTERY_INSTALLER", "uv") == "uv":
        uv = find_uv(python)
        if uv is not None:
            settings = pip_settings(python)
            done = subprocess.run(uv_command(uv, python, settings, arguments),
                                  env=uv_environment(settings), check=False)
            if done.returncode == 0:
                return 0
            print(f"uv failed (exit {done.returncode}); installing with pip instead.",
                  file=sys.stderr, flush=True)
        else:
            print("uv is not available; installing with pip.", file=sys.stderr, flush=True)
    return subprocess.run([python, "-m", "pip", "install", "--quiet", *arguments],
                          check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
