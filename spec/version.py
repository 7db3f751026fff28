"""The version of this specification and how it is encoded in a register (spec "Versioning and extension")."""

from __future__ import annotations

SPEC_NAME = "pvmsi"
VERSION_MAJOR = 1
VERSION_MINOR = 0


def encode_version(major: int, minor: int) -> int:
    """The register encoding of a version: ``major << 16 | minor``, both 16-bit (as Hyper-V vPCI)."""
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ValueError(f"version {major}.{minor} does not fit 16+16 bits")
    return (major << 16) | minor


def decode_version(value: int) -> tuple[int, int]:
    """``(major, minor)`` of a register-encoded version; bits 63:32 must be zero."""
    if value >> 32:
        raise ValueError(f"version value {value:#x} has bits above 31 set")
    return (value >> 16) & 0xFFFF, value & 0xFFFF
