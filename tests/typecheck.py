"""``mypy --strict`` over every source file, each checked as the module it is installed as.

pyproject.toml maps the top-level ``spec/``, ``reference/`` and ``conformance/`` folders onto ``pvmsi.spec``,
``pvmsi.reference`` and ``pvmsi.conformance`` (``[tool.setuptools] package-dir``). mypy names a file by the
folders above it, which would make ``spec/codec.py`` a module ``spec.codec``; so this script hands mypy each file
with its installed module name (mypy's build API), and the options of ``[tool.mypy]`` in pyproject.toml.

Run it as ``python tests/typecheck.py``; it prints mypy's messages and exits non-zero on any error.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource
from paths import ROOT


def package_dir() -> dict[str, Path]:
    """The installed package name of each mapped folder (pyproject.toml, the one statement of the mapping)."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in table.items()}


def module_name(package: str, folder: Path, path: Path) -> str:
    """``pvmsi.spec`` + ``spec/formats/__init__.py`` -> ``pvmsi.spec.formats``."""
    parts = list(path.relative_to(folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def sources() -> list[BuildSource]:
    """Every .py file of the mapped folders, and the tests (top-level modules, as pytest imports them)."""
    found = [
        BuildSource(str(path), module_name(package, folder, path))
        for package, folder in package_dir().items()
        for path in sorted(folder.rglob("*.py"))
        if "__pycache__" not in path.parts
    ]
    tests = ROOT / "tests"
    found += [BuildSource(str(path), path.stem, base_dir=str(tests)) for path in sorted(tests.glob("*.py"))]
    return found


def main() -> int:
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "tests")])
    try:
        result = build.build(sources(), options)
    except CompileError as e:
        print("\n".join(e.messages))
        return 2
    for line in result.errors:
        print(line)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
