"""tools/pip_install.py: uv gets pip's own settings, environment over files."""

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pip_install", ROOT / "tools" / "pip_install.py")
pip_install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pip_install)

pytestmark = pytest.mark.backend_independent


def test_uv_gets_pip_settings_with_the_environment_over_the_files(tmp_path, monkeypatch):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nfind-links = /from/file\nindex-url = https://example.org/simple\n"
                      "constraint = /etc/c.txt\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels /more/wheels")
    settings = pip_install.pip_settings(sys.executable)
    assert settings["find-links"] == "/wheels /more/wheels"
    assert settings["index-url"] == "https://example.org/simple"
    command = pip_install.uv_command("uv", "venv/bin/python", settings, ["-e", ".[test]"])
    pairs = list(zip(command, command[1:]))
    assert ("--find-links", "/wheels") in pairs and ("--find-links", "/more/wheels") in pairs
    assert ("--find-links", "/from/file") not in pairs
    assert ("--index-url", "https://example.org/simple") in pairs
    assert ("--constraint", "/etc/c.txt") in pairs
    assert ("--python", "venv/bin/python") in pairs
    assert ("--index-strategy", "unsafe-best-match") in pairs
    assert command[-2:] == ["-e", ".[test]"]


def test_settings_of_other_commands_are_not_handed_to_uv(tmp_path, monkeypatch):
    config = tmp_path / "pip.conf"
    config.write_text("[download]\nfind-links = /download/only\n[install]\nfind-links = /install\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    assert pip_install.pip_settings(sys.executable)["find-links"] == "/install"
