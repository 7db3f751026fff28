"""The vendor range in the guest role (spec "Versioning and extension"): a guest that knows no vendor's extensions
accepts no vendor feature bit, issues no vendor function, and takes a vendor event type or message format for
unknown, never for one of pvmsi's (GUEST-EXT-001, GUEST-EXT-002)."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_refusals import Overreach, asked_features, queue_event
from pvmsi.conformance.guest_skips import changes_nothing, workout_with_events
from pvmsi.conformance.guest_toolkit import MLX5, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import EventType, FunctionNumber, MsgKind
from pvmsi.spec.extension import VENDOR_FEATURES, VENDOR_FUNCTIONS, Extension
from pvmsi.spec.formats import HV_INFO
from pvmsi.spec.iut import GuestMode
from pvmsi.spec.layout import layout_of

requirement = pytest.mark.requirement

#: Vendor feature bits offered: the first, the last, all of them, and the edge between pvmsi's range and the vendor's.
OFFERS = {
    "bit-48": 1 << Extension.F_VENDOR_FIRST_BIT,
    "bit-63": 1 << Extension.F_VENDOR_LAST_BIT,
    "bits-48-63": VENDOR_FEATURES,
    "bits-47-48": (1 << 47) | (1 << 48),
}


@requirement("GUEST-EXT-001", "GUEST-VER-001")
@pytest.mark.parametrize("offer", list(OFFERS))
def test_accepts_no_vendor_bit_of_an_unknown_vendor(guest: GuestSession, offer: str) -> None:
    """GET_INFO offers vendor feature bits: the guest negotiates none of them, calls no vendor function, and
    works."""
    extra = OFFERS[offer]
    guest.host(extra_offered=extra)
    guest.ok(guest.boot(), "GUEST-EXT-001", "BOOT")
    guest.clean("GUEST-EXT-001", "GUEST-VER-001")
    asked = asked_features(guest.hv) or 0
    check(not asked & extra, "GUEST-EXT-001", f"none of {extra:#x} accepted", hex(asked))
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 2, vcpu=1, vector=0x40), "GUEST-EXT-001", "ENABLE")
    vendor = [hex(c.fn) for c in guest.calls() if c.fn in VENDOR_FUNCTIONS and c.fn != Extension.FN_VENDOR_ID]
    check(not vendor, "GUEST-EXT-001", "no vendor function called", ", ".join(vendor))
    guest.delivers(MLX5, MsgKind.MSIX, 2, "GUEST-EXT-001", vcpu=1, vector=0x40)


#: Vendor event types: the first and the last, and three whose low bits are REFETCH, REVOKED and DEVICE_REMOVED,
#: naming a held handle and its device.
EVENTS = {
    "0x8000": (Extension.EVENT_VENDOR_FIRST, False),
    "0x8001-low-refetch": (Extension.EVENT_VENDOR_FIRST | EventType.REFETCH, False),
    "0x8002-low-revoked": (Extension.EVENT_VENDOR_FIRST | EventType.REVOKED, True),
    "0x8003-low-removed": (Extension.EVENT_VENDOR_FIRST | EventType.DEVICE_REMOVED, True),
    "0xffff": (Extension.EVENT_VENDOR_LAST, True),
}


@requirement("GUEST-EXT-002", "GUEST-EVT-001")
@pytest.mark.parametrize("event", list(EVENTS))
def test_skips_a_vendor_event_type(guest: GuestSession, event: str) -> None:
    """An event of the vendor range, naming a held MSI-X handle and its device where the type says so: the guest
    acknowledges it and changes nothing (no call, no device access, every message still its own)."""
    held = workout_with_events(guest)
    event_type, names = EVENTS[event]
    handle = min(h for h, (_, k, _) in held.items() if k == MsgKind.MSIX)
    queue_event(guest.hv, int(event_type), MLX5 if names else None, handle if names else 0)
    changes_nothing(guest, "GUEST-EXT-002", held)
    guest.clean("GUEST-EXT-002", "GUEST-EVT-001", "GUEST-EVT-002")


@requirement("GUEST-EXT-002", "GUEST-FMT-001")
@pytest.mark.parametrize("fmt", [0x80, 0x81, 0x83, 0xFF], ids=hex)
def test_goes_on_under_a_vendor_message_format(guest: GuestSession, fmt: int) -> None:
    """GET_INFO reports a message format of the vendor range: the guest uses pvmsi and writes every pair as
    returned, which delivers; it does not read the format as one of pvmsi's (0x81 is not VT-d's)."""
    guest.host(overreach=Overreach(message_format=fmt))
    r = guest.boot()
    guest.ok(r, "GUEST-EXT-002", "BOOT", GuestMode.PVMSI)
    at = layout_of(HV_INFO).field("message_format").offset
    got = guest.calls(FunctionNumber.GET_INFO)[0].out_block[at]
    check(got == fmt, "GUEST-EXT-002", f"GET_INFO reported format {fmt:#x}", hex(got))
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 3, vcpu=2, vector=0x50), "GUEST-EXT-002", "ENABLE")
    guest.clean("GUEST-FMT-001", "GUEST-NEG-004")
    guest.delivers(MLX5, MsgKind.MSIX, 3, "GUEST-EXT-002", vcpu=2, vector=0x50)
