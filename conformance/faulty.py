"""Deliberately faulty implementations: the suite must catch each (issue: the suite proves its strength)."""

from __future__ import annotations

from ..conformance.iut import HypervisorIUT


def faulty_hypervisor(name: str) -> HypervisorIUT:
    raise KeyError(name)
