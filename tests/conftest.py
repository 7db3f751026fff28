"""Shared test configuration: a modest hypothesis profile (the strategies live in ``strategies.py``), and the
spec site built once per session (sitebuild.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sitebuild import build

settings.register_profile(
    "pvmsi",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("pvmsi-thorough", parent=settings.get_profile("pvmsi"), max_examples=2000)
settings.load_profile(os.environ.get("PVMSI_HYPOTHESIS_PROFILE", "pvmsi"))


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spec site as ``mkdocs build --strict`` of the checkout builds it (the hook expands the placeholders)."""
    dest = tmp_path_factory.mktemp("site")
    proc = build(dest)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return dest
