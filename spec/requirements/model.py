"""The model of one requirement and the spec sections requirements belong to."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class Level(StrEnum):
    """RFC 2119 level of a requirement."""

    MUST = "MUST"
    MUST_NOT = "MUST NOT"
    SHOULD = "SHOULD"
    SHOULD_NOT = "SHOULD NOT"
    MAY = "MAY"


class Role(StrEnum):
    """Who a requirement binds."""

    GUEST = "guest"
    HYPERVISOR = "hypervisor"
    BOTH = "both"


LEVELS: tuple[Level, ...] = tuple(Level)
ROLES: tuple[Role, ...] = tuple(Role)

#: Section key -> (title, docs page). Every requirement belongs to exactly one section.
SECTIONS: dict[str, tuple[str, str]] = {
    "conventions": ("Conventions", "conventions.md"),
    "calling": ("Calling conventions", "calling-conventions.md"),
    "discovery": ("Discovery", "discovery.md"),
    "negotiation": ("Version and feature negotiation", "negotiation.md"),
    "device": ("Device control", "device-control.md"),
    "messages": ("Reserve, activate, deactivate and free", "messages.md"),
    "formats": ("Message formats", "message-formats.md"),
    "batch": ("Batching and partial completion", "batching.md"),
    "events": ("Events", "events.md"),
    "status": ("Status codes", "status-codes.md"),
    "memory": ("Memory rules", "conventions.md"),
    "security": ("Security considerations", "security.md"),
    "lifecycle": ("Reset, FLR, hot-unplug and migration", "lifecycle.md"),
    "versioning": ("Versioning and extension", "versioning.md"),
}

_ROLE_PREFIX = {"HV": Role.HYPERVISOR, "GUEST": Role.GUEST, "GEN": Role.BOTH}
_ID = re.compile(r"^(HV|GUEST|GEN)-[A-Z]+-\d{3}$")


class Requirement(BaseModel):
    """One normative statement."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    level: Level
    role: Role
    section: str
    text: str

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"requirement id {v!r} is not <HV|GUEST|GEN>-<AREA>-<NNN>")
        return v

    @field_validator("section")
    @classmethod
    def _known_section(cls, v: str) -> str:
        if v not in SECTIONS:
            raise ValueError(f"unknown section {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Requirement:
        prefix = self.id.split("-", 1)[0]
        if _ROLE_PREFIX[prefix] is not self.role:
            raise ValueError(f"{self.id}: prefix {prefix} does not match role {self.role.value}")
        # The keyword must appear, in capitals, in the sentence itself (as RFC 8174 asks).
        if not re.search(rf"\b{self.level.value}\b", self.text):
            raise ValueError(f"{self.id}: text does not contain its level keyword {self.level.value!r}")
        return self

    @property
    def anchor(self) -> str:
        return self.id.lower()


def req(id: str, level: Level, section: str, text: str) -> Requirement:
    """Build a requirement; its role follows from the id prefix."""
    return Requirement(id=id, level=level, role=_ROLE_PREFIX[id.split("-", 1)[0]], section=section, text=text)
