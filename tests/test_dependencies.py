"""What the installed package imports at run time is a base dependency (``pip install pvmsi`` without extras
gives a working ``pvmsi``, conformance suite included); dev and docs tools stay optional."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires

from packaging.requirements import Requirement
from paths import ROOT
from typecheck import package_dir


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> dict[str, str]:
    """Top-level modules imported anywhere in the package (every folder pyproject.toml maps into it), each with one
    file that imports it."""
    found: dict[str, str] = {}
    files = [path for folder in package_dir().values() for path in folder.rglob("*.py")]
    assert any(p.name == "runner.py" for p in files), "the conformance folder was not walked"
    for path in sorted(files):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_runtime_import_is_a_base_dependency() -> None:
    base = {_normal(Requirement(r).name) for r in requires("pvmsi") or [] if "extra ==" not in r}
    dists = packages_distributions()
    missing = []
    for module, where in _imported_modules().items():
        if module in sys.stdlib_module_names or module in ("pvmsi", "__future__"):
            continue
        provided_by = {_normal(d) for d in dists.get(module, [])}
        if not provided_by & base:
            missing.append(f"{module} (imported by {where}; from {sorted(provided_by) or 'nowhere'})")
    assert not missing, f"imported at run time but not a base dependency in pyproject.toml: {missing}"
