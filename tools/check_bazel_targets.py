"""Checks that every Python file of the project is listed in a BUILD target.

A file counts as listed when the BUILD file (or a .bzl macro file) of its
package names it: as "name.py", as a name in a list comprehension that
appends ".py", as a `pytest_test(name = "test_x")` target (test_x.py), or
through a glob pattern. Run by tests/test_bazel_targets.py, so a new module, test or
example cannot be forgotten.

    python tools/check_bazel_targets.py [ROOT]
"""

import fnmatch
import os
import re
import sys

CHECKED = ("keras_lottery", "tests", "examples", "benchmarks", "tools")
SKIP = {"__init__.py"}


def _package_of(root, path):
    directory = os.path.dirname(path)
    while True:
        if os.path.exists(os.path.join(root, directory, "BUILD")):
            return directory
        if not directory:
            return None
        directory = os.path.dirname(directory)


def _listed(build_text, relative):
    name = os.path.basename(relative)
    stem = name[: -len(".py")]
    if f'"{relative}"' in build_text or f'"{name}"' in build_text:
        return True
    named = relative[: -len(".py")]  # "core/test_wrapping" for a test in a subfolder
    if (f'"{stem}"' in build_text or f'"{named}"' in build_text) and '+ ".py"' in build_text:
        return True
    if re.search(r'pytest_test\(\s*name\s*=\s*"%s"' % re.escape(stem), build_text):
        return True
    for pattern in re.findall(r'glob\(\s*\[([^\]]*)\]', build_text):
        for glob in re.findall(r'"([^"]+)"', pattern):
            if fnmatch.fnmatch(relative, glob.replace("**/", "*")):
                return True
    return False


def _package_text(directory):
    texts = []
    for name in sorted(os.listdir(directory)):
        if name == "BUILD" or name.endswith(".bzl"):
            with open(os.path.join(directory, name)) as f:
                texts.append(f.read())
    return "\n".join(texts)


def unlisted_files(root):
    """Python files under the checked folders that no BUILD target lists."""
    missing = []
    for top in CHECKED:
        for directory, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(".py") or name in SKIP:
                    continue
                path = os.path.relpath(os.path.join(directory, name), root)
                package = _package_of(root, path)
                if package is None:
                    missing.append(path)
                    continue
                text = _package_text(os.path.join(root, package))
                if not _listed(text, os.path.relpath(path, package)):
                    missing.append(path)
    return missing


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    missing = unlisted_files(root)
    for path in missing:
        print(f"not in any BUILD target: {path}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
