"""Every requirement of pvmsi 1.0, gathered from the per-section modules."""

from __future__ import annotations

from .model import Requirement

REQUIREMENTS: tuple[Requirement, ...] = ()


def by_id(rid: str) -> Requirement:
    for r in REQUIREMENTS:
        if r.id == rid:
            return r
    raise KeyError(rid)


def by_section(section: str) -> list[Requirement]:
    return [r for r in REQUIREMENTS if r.section == section]
