"""Shared test configuration: a modest hypothesis profile (the strategies live in ``strategies.py``)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "pvmsi",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("pvmsi-thorough", parent=settings.get_profile("pvmsi"), max_examples=2000)
settings.load_profile(os.environ.get("PVMSI_HYPOTHESIS_PROFILE", "pvmsi"))
