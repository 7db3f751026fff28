"""pvmsi.spec: the normative definitions of pvmsi 1.0 (formats, constants, calls, requirements)."""

from .version import SPEC_NAME, VERSION_MAJOR, VERSION_MINOR

__all__ = ["SPEC_NAME", "VERSION_MAJOR", "VERSION_MINOR"]
