#!/usr/bin/env bash
# Writes .bazelrc.local: the overrides that need absolute paths into this
# checkout, and the virtual environment's Python for py_binary/py_test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cat > "$root/.bazelrc.local" <<RC
common --override_repository=rules_cc=$root/third_party/bazel/rules_cc
common --override_repository=remote_coverage_tools=$root/third_party/bazel/remote_coverage_tools
build --python_path=$root/.venv/bin/python
RC
