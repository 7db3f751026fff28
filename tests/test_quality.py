"""ruff and mypy --strict (configured in pyproject.toml) are clean over every source folder and tests/; mypy
checks each file as the module it is installed as (tests/typecheck.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from paths import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_ruff_check() -> None:
    proc = _run(
        "ruff", "check", "--no-cache", "spec", "reference", "conformance", "src", "tests", "docs_hooks", "setup.py"
    )
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
def test_ruff_format() -> None:
    proc = _run(
        "ruff",
        "format",
        "--check",
        "--no-cache",
        "spec",
        "reference",
        "conformance",
        "src",
        "tests",
        "docs_hooks",
        "setup.py",
    )
    assert proc.returncode == 0, f"ruff format would change files (run ruff format):\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
def test_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "typecheck.py")], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}\n{proc.stderr}"
