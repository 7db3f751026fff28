"""The requirement registry: every normative statement of pvmsi 1.0, once, with a stable id.

Ids read ``<ROLE>-<AREA>-<NNN>``: ``HV-`` binds the hypervisor, ``GUEST-`` the guest, ``GEN-`` both.  An id is
never reused or renumbered; a withdrawn requirement keeps its id with the text "Withdrawn." in a later version.
"""

from __future__ import annotations

from .model import LEVELS, ROLES, SECTIONS, Level, Requirement, Role
from .registry import REQUIREMENTS, by_id, by_section

__all__ = [
    "LEVELS",
    "REQUIREMENTS",
    "ROLES",
    "SECTIONS",
    "Level",
    "Requirement",
    "Role",
    "by_id",
    "by_section",
]
