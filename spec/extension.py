"""Allocation of pvmsi's number spaces and the vendor-extension range (spec "Versioning and extension").

Each number space (function numbers, feature bits, message formats, event types) has a vendor range that no version
of pvmsi allocates (GEN-EXT-001); :data:`pvmsi.spec.constants.CONSTANT_GROUPS` carries these values as the group
``extension`` (``PVMSI_FN_VENDOR_FIRST``, ...), so the C header, the dump and the docs have them.
"""

from __future__ import annotations

from enum import IntEnum


class Extension(IntEnum):
    """Allocation of numbers (spec "Versioning and extension"): the vendor range of each number space, which no
    version of pvmsi allocates (GEN-EXT-001), and the call that identifies a vendor's extensions (HV-VER-003)."""

    FN_VENDOR_FIRST = 0xC0
    FN_VENDOR_ID = 0xC0
    FN_VENDOR_LAST = 0xFF
    F_VENDOR_FIRST_BIT = 48
    F_VENDOR_LAST_BIT = 63
    MSGFMT_VENDOR_FIRST = 0x80
    MSGFMT_VENDOR_LAST = 0xFF
    EVENT_VENDOR_FIRST = 0x8000
    EVENT_VENDOR_LAST = 0xFFFF


EXTENSION_DOCS: dict[str, str] = {
    "FN_VENDOR_FIRST": "First function number of the vendor range; pvmsi allocates 0x00 to 0xBF only.",
    "FN_VENDOR_ID": (
        "The vendor identification call, the first of the vendor range: SUCCESS with the PCI-SIG vendor ID of the "
        "extensions' owner in value bits 15:0, or NOT_SUPPORTED when the hypervisor has no vendor extension."
    ),
    "FN_VENDOR_LAST": "Last function number of the vendor range (the last one a function id carries).",
    "F_VENDOR_FIRST_BIT": "First feature bit of the vendor range; pvmsi allocates bits 0 to 47 only.",
    "F_VENDOR_LAST_BIT": "Last feature bit of the vendor range.",
    "MSGFMT_VENDOR_FIRST": "First message format id of the vendor range; pvmsi allocates 1 to 0x7F only.",
    "MSGFMT_VENDOR_LAST": "Last message format id of the vendor range (message_format is a u8).",
    "EVENT_VENDOR_FIRST": "First event type of the vendor range; pvmsi allocates 1 to 0x7FFF only.",
    "EVENT_VENDOR_LAST": "Last event type of the vendor range (event_type is a u16).",
}

#: The feature bits of the vendor range (48 to 63): never defined by pvmsi, never in features_required (HV-VER-004).
VENDOR_FEATURES: int = sum(1 << b for b in range(Extension.F_VENDOR_FIRST_BIT, Extension.F_VENDOR_LAST_BIT + 1))
#: The function numbers of the vendor range.
VENDOR_FUNCTIONS: range = range(Extension.FN_VENDOR_FIRST, Extension.FN_VENDOR_LAST + 1)
