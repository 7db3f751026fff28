"""Device identity and the formats of DEVICE_QUERY and DEVICE_CLAIM (spec section "Device control")."""

from __future__ import annotations

from typing import Any

import construct as cs

from ..constants import DeviceFlag, DeviceIdFlag, KindMask
from ..fields import FlagsField, Reserved, define, u8, u16, u32

DEVICE_ID: Any = define(
    "device_id",
    "device",
    "A device as the guest sees it: PCI segment, bus and devfn, optionally qualified by a sub-device id.",
    cs.Struct(
        "segment" / u16 * "PCI segment (domain) number.",
        "bus" / u8 * "PCI bus number.",
        "devfn" / u8 * "PCI device (bits 7:3) and function (bits 2:0).",
        "flags" / FlagsField(u32, DeviceIdFlag) * "PVMSI_DEVID_* flags.",
        "subdevice_id" / u32 * "Sub-device id (a PASID, bits 19:0) when PVMSI_DEVID_SUBDEVICE is set; zero otherwise.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

DEVICE_INFO: Any = define(
    "device_info",
    "device",
    "OUT of DEVICE_QUERY: what the device supports and its pvmsi state for this VM.",
    cs.Struct(
        "device" / DEVICE_ID * "The identity queried, echoed.",
        "kinds" / FlagsField(u32, KindMask) * "Message kinds the device supports (PVMSI_KINDS_*).",
        "claimed_kinds" / FlagsField(u32, KindMask) * "Kinds currently claimed for pvmsi (zero when emulated).",
        "flags" / FlagsField(u32, DeviceFlag) * "PVMSI_DEV_* properties and state.",
        "msi_max_vectors" / u8 * "Vectors of the MSI capability (1..32, a power of two); zero without MSI.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "msix_table_size" / u16 * "Entries of the MSI-X table (1..2048); zero without MSI-X.",
        "ims_slots" / u32 * "Entries of the device's Interrupt Message Store as the host's driver knows them; zero "
        "without IMS. Informative: an IMS message's slot is an opaque tag, not bounded by it (HV-ALLOC-004).",
        "messages_allocated" / u32 * "Vectors this device holds allocated now.",
        "message_quota" / u32 * "Vectors this device may hold allocated at once.",
        "messages_available"
        / u32
        * "Vectors this device can be allocated now: message_quota less messages_allocated, at most "
        "vm_messages_available (HV-HEADROOM-001).",
        "vm_messages_available"
        / u32
        * "Vectors the calling VM can be allocated now, on any of its devices: its quota less what it holds, at most "
        "what is left of its share of the remapping table (HV-HEADROOM-001).",
        "reserved1" / Reserved(u32) * "Reserved, zero.",
    ),
)

CLAIM_IN: Any = define(
    "claim_in",
    "device",
    "IN of DEVICE_CLAIM: the device and the message kinds the guest takes over from emulation.",
    cs.Struct(
        "device" / DEVICE_ID * "The device to claim.",
        "kinds" / FlagsField(u32, KindMask) * "Kinds to claim: non-empty, supported and negotiated.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

#: The formats of this module, in definition order (:mod:`pvmsi.spec.formats` registers them).
DEFINED: tuple[Any, ...] = (
    DEVICE_ID,
    DEVICE_INFO,
    CLAIM_IN,
)
