"""Formats of GET_INFO and NEGOTIATE (spec section "Version and feature negotiation")."""

from __future__ import annotations

from typing import Any

import construct as cs

from ..constants import Feature, MessageFormat
from ..fields import Reserved, ValuesOf, define, u8, u16, u32, u64

HV_INFO: Any = define(
    "hv_info",
    "negotiation",
    "OUT of GET_INFO: the version, the features the hypervisor offers and requires, and its limits.",
    cs.Struct(
        "version_major" / u16 * "Major version the hypervisor implements (1).",
        "version_minor" / u16 * "Highest minor version of that major the hypervisor implements.",
        "message_format"
        / ValuesOf(u8, MessageFormat)
        * "Platform format of the address/data pairs handed out; a guest takes a value it does not know (a later "
        "version's, a vendor's 0x80-0xFF) for unknown, not for one of its own (GUEST-EXT-002).",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "features_offered" / ValuesOf(u64, Feature) * "Feature bits the guest may accept (PVMSI_F_*).",
        "features_required"
        / ValuesOf(u64, Feature)
        * "Feature bits the guest must accept for NEGOTIATE to succeed; a subset of features_offered.",
        "max_batch"
        / u32
        * "Largest entry count of one batch this hypervisor accepts, at least 1; a call's batch is further limited "
        "to what one page holds (the call's PVMSI_*_MAX_BATCH).",
        "max_claimed_devices" / u32 * "How many devices (and sub-devices) the VM may hold claimed at once.",
        "max_messages_per_vm" / u32 * "Quota: messages (vectors) the VM may hold allocated at once.",
        "max_messages_per_device" / u32 * "Quota: messages (vectors) one device may hold allocated at once.",
        "reserved2" / Reserved(u64) * "Reserved, zero.",
    ),
)

NEGOTIATE_IN: Any = define(
    "negotiate_in",
    "negotiation",
    "IN of NEGOTIATE: the version the guest speaks and the feature subset it accepts (its promise).",
    cs.Struct(
        "version_major" / u16 * "Major version the guest implements; must equal the hypervisor's.",
        "version_minor" / u16 * "Minor version the guest implements; at most the hypervisor's.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
        "features"
        / ValuesOf(u64, Feature)
        * "The accepted subset of features_offered; must include features_required.",
    ),
)

NEGOTIATE_OUT: Any = define(
    "negotiate_out",
    "negotiation",
    "OUT of NEGOTIATE: what was accepted, or which bits caused a refusal.",
    cs.Struct(
        "features"
        / ValuesOf(u64, Feature)
        * "The features now in force (equal to the guest's subset on success, else zero).",
        "refused"
        / ValuesOf(u64, Feature)
        * "On FEATURES_REFUSED: required bits the subset lacked; on INVALID_PARAMETER: bits not offered.",
    ),
)

#: The formats of this module, in definition order (:mod:`pvmsi.spec.formats` registers them).
DEFINED: tuple[Any, ...] = (
    HV_INFO,
    NEGOTIATE_IN,
    NEGOTIATE_OUT,
)
