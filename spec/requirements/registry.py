"""Every requirement of pvmsi 1.0, gathered from the per-section modules."""

from __future__ import annotations

from . import (
    abi,
    activate,
    device,
    emulation,
    events,
    formats,
    general,
    headroom,
    inflight,
    lifecycle,
    masking,
    memory,
    messages,
    negotiation,
    teardown,
)
from .model import SECTIONS, Requirement

REQUIREMENTS: tuple[Requirement, ...] = tuple(
    sorted(
        general.REQUIREMENTS
        + abi.REQUIREMENTS
        + negotiation.REQUIREMENTS
        + device.REQUIREMENTS
        + headroom.REQUIREMENTS
        + masking.REQUIREMENTS
        + emulation.REQUIREMENTS
        + messages.REQUIREMENTS
        + inflight.REQUIREMENTS
        + activate.REQUIREMENTS
        + formats.FORMATS
        + memory.REQUIREMENTS
        + lifecycle.REQUIREMENTS
        + teardown.REQUIREMENTS
        + events.REQUIREMENTS,
        key=lambda r: list(SECTIONS).index(r.section),
    )
)

_BY_ID: dict[str, Requirement] = {}
for _r in REQUIREMENTS:
    if _r.id in _BY_ID:
        raise ValueError(f"requirement id {_r.id} defined twice")
    _BY_ID[_r.id] = _r


def by_id(rid: str) -> Requirement:
    """The requirement with id ``rid``."""
    return _BY_ID[rid]


def by_section(section: str) -> list[Requirement]:
    """The requirements of one section, in registry order."""
    if section not in SECTIONS:
        raise KeyError(section)
    return [r for r in REQUIREMENTS if r.section == section]
