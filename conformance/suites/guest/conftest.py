"""Fixtures of the guest suite: the guest under test (session-wide) and one :class:`GuestSession` per test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pvmsi.conformance.connect import open_guest
from pvmsi.conformance.guest_toolkit import GuestSession


@pytest.fixture(scope="session")
def pvmsi_iut(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The guest under test named by ``--pvmsi-iut`` (overrides the plugin's hypervisor opener)."""
    iut = open_guest(pytestconfig.getoption("--pvmsi-iut"), pytestconfig.getoption("--pvmsi-timeout"))
    try:
        yield iut
    finally:
        iut.close()


@pytest.fixture
def guest(request: pytest.FixtureRequest, pvmsi_iut: Any) -> Iterator[GuestSession]:
    """The suite plays the hypervisor for the guest under test; the transcript goes into the report."""
    g = GuestSession(pvmsi_iut)
    request.node.pvmsi_transcript = g.transcript
    start = time.perf_counter()
    try:
        yield g
    finally:
        request.node.pvmsi_duration = time.perf_counter() - start
