"""Version and feature negotiation: what the guest accepts, and what it does when refused (spec "Version and
feature negotiation", "Versioning and extension")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import IDXD_SUB, MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import Feature, FunctionNumber, MsgKind, Status
from pvmsi.spec.formats import HV_INFO, NEGOTIATE_OUT
from pvmsi.spec.iut import GuestMode
from pvmsi.spec.layout import layout_of
from pvmsi.spec.version import VERSION_MINOR

requirement = pytest.mark.requirement
UNKNOWN_BITS = (1 << 40) | (1 << 33)


def _negotiated(guest: GuestSession) -> int:
    calls = guest.calls(FunctionNumber.NEGOTIATE)
    check(len(calls) == 1, "GUEST-NEG-005", "one NEGOTIATE", str(len(calls)))
    return int(calls[0].decoded.features)


def _still_emulated(guest: GuestSession, rid: str) -> None:
    r = guest.enable(MLX5, MsgKind.MSIX, 3, vcpu=2, vector=0x70)
    guest.ok(r, rid, "ENABLE after a refusal", GuestMode.EMULATED)
    used = [c for c in guest.calls() if c.fn >= FunctionNumber.DEVICE_QUERY]
    check(not used, rid, "no device or message call", ", ".join(guest.fns()))
    guest.delivers(MLX5, MsgKind.MSIX, 3, "GUEST-EMU-002", vcpu=2, vector=0x70)
    r = guest.enable(MSI_DEV, MsgKind.MSI, 2, vcpu=1, vector=0x90)  # a block: Multiple Message Enable set too
    guest.ok(r, rid, "ENABLE of an MSI block after a refusal", GuestMode.EMULATED)
    guest.delivers(MSI_DEV, MsgKind.MSI, 2, "GUEST-EMU-002", vcpu=1, vector=0x90)


@requirement("GUEST-NEG-001")
def test_accepts_only_offered_bits(guest: GuestSession) -> None:
    """GET_INFO withholds POSTED, SUBDEVICE and IMS: NEGOTIATE accepts none of them."""
    guest.host(withheld=int(Feature.POSTED | Feature.SUBDEVICE | Feature.IMS))
    r = guest.boot()
    guest.clean("GUEST-NEG-001")
    guest.ok(r, "GUEST-NEG-001", "BOOT")
    features = _negotiated(guest)
    check(features == int(Feature.MSI | Feature.MSIX), "GUEST-NEG-001", "MSI|MSIX", hex(features))


@requirement("GUEST-NEG-002")
def test_includes_required_bits(guest: GuestSession) -> None:
    """GET_INFO requires POSTED and IMS: NEGOTIATE includes both."""
    required = int(Feature.POSTED | Feature.IMS)
    guest.host(required=required)
    r = guest.boot()
    guest.clean("GUEST-NEG-002")
    guest.ok(r, "GUEST-NEG-002", "BOOT")
    features = _negotiated(guest)
    check(features & required == required, "GUEST-NEG-002", f"{required:#x} included", hex(features))


@requirement("GUEST-NEG-002", "GUEST-NEG-003", "GUEST-STAT-002", "GUEST-EMU-002")
def test_unknown_required_bit_means_no_negotiation(guest: GuestSession) -> None:
    """GET_INFO requires a bit the guest cannot know (1 << 40): it does not negotiate and stays emulated."""
    guest.host(required=1 << 40)
    r = guest.boot()
    guest.clean("GUEST-NEG-002", "GUEST-NEG-003")
    check(not guest.calls(FunctionNumber.NEGOTIATE), "GUEST-NEG-002", "no NEGOTIATE", ", ".join(guest.fns()))
    guest.fell_back(r, "GUEST-NEG-003")
    _still_emulated(guest, "GUEST-NEG-003")
    guest.clean("GUEST-NEG-003")


@requirement("GUEST-NEG-003", "GUEST-CONV-001", "GUEST-STAT-002", "GUEST-EMU-002")
@pytest.mark.parametrize(
    "refusal", [Status.FEATURES_REFUSED, Status.VERSION_MISMATCH, Status.INVALID_PARAMETER, -77], ids=str
)
def test_a_refused_negotiate_keeps_emulation(guest: GuestSession, refusal: int) -> None:
    """NEGOTIATE fails (refused, version mismatch, invalid, an unknown error): no claim, emulated MSI-X works."""
    guest.host(negotiate_status=int(refusal))
    r = guest.boot()
    guest.clean("GUEST-NEG-003", "GUEST-CONV-001")
    guest.fell_back(r, "GUEST-NEG-003")
    _still_emulated(guest, "GUEST-NEG-003")
    guest.clean("GUEST-NEG-003", "GUEST-CONV-001")


@requirement("GUEST-VER-001")
def test_ignores_unknown_offered_bits(guest: GuestSession) -> None:
    """GET_INFO offers bits 33 and 40 too (a later minor's): the guest negotiates without them, and works."""
    guest.host(extra_offered=UNKNOWN_BITS)
    r = guest.boot()
    guest.clean("GUEST-VER-001")
    guest.ok(r, "GUEST-VER-001", "BOOT")
    features = _negotiated(guest)
    check(not features & UNKNOWN_BITS, "GUEST-VER-001", "no unknown bit accepted", hex(features))
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 2), "GUEST-VER-001", "ENABLE")


@requirement("GUEST-VER-002")
@pytest.mark.parametrize("minor", [0, 3])
def test_minor_not_above_the_reported_one(guest: GuestSession, minor: int) -> None:
    """VERSION reports 1.<minor>: NEGOTIATE asks for the lower of that and the minor the guest implements (this
    suite tests 1.0 guests: 0)."""
    guest.host(version=(1, minor))
    r = guest.boot()
    guest.clean("GUEST-VER-002")
    guest.ok(r, "GUEST-VER-002", "BOOT")
    asked = int(guest.calls(FunctionNumber.NEGOTIATE)[0].decoded.version_minor)
    want = min(minor, VERSION_MINOR)
    check(asked == want, "GUEST-VER-002", f"version_minor {want}", str(asked))


@requirement("GEN-VER-001", "GEN-VER-002")
def test_a_later_minor_hypervisor_needs_nothing_new(guest: GuestSession) -> None:
    """Against a 1.4 hypervisor offering new bits, a guest uses 1.0's calls with 1.0's block layouts, and works."""
    guest.host(version=(1, 4), extra_offered=1 << 20)
    guest.full_workout()
    for r in guest.results:
        check(r.status == Status.SUCCESS, "GEN-VER-001", "every command succeeds", str(r))
    for c in guest.calls():
        check(c.fn in FunctionNumber._value2member_map_, "GEN-VER-002", "1.0 function numbers", hex(c.fn))
    get_info = guest.calls(FunctionNumber.GET_INFO)[0]
    check(get_info.out_size == layout_of(HV_INFO).size, "GEN-VER-001", "1.0 hv_info size", str(get_info.out_size))
    neg = guest.calls(FunctionNumber.NEGOTIATE)[0]
    check(neg.out_size == layout_of(NEGOTIATE_OUT).size, "GEN-VER-002", "1.0 negotiate_out", str(neg.out_size))


@requirement("GUEST-NEG-005")
def test_negotiates_once_early(guest: GuestSession) -> None:
    """SHOULD: NEGOTIATE once, at boot, before any MSI/MSI-X is enabled."""
    guest.full_workout()
    guest.clean("GUEST-NEG-005")
    negs = guest.calls(FunctionNumber.NEGOTIATE)
    check(len(negs) == 1, "GUEST-NEG-005", "one NEGOTIATE", str(len(negs)))
    check(negs[0].command.startswith("BOOT"), "GUEST-NEG-005", "during BOOT", negs[0].command)


@requirement("GUEST-NEG-006", "GUEST-EMU-002")
@pytest.mark.parametrize(
    "withheld",
    [Feature.MSI, Feature.IMS, Feature.SUBDEVICE, Feature.POSTED, Feature.MSI | Feature.IMS],
    ids=["MSI", "IMS", "SUBDEVICE", "POSTED", "MSI+IMS"],
)
def test_uses_nothing_it_did_not_negotiate(guest: GuestSession, withheld: Feature) -> None:
    """GET_INFO withholds a kind, SUBDEVICE or POSTED: the guest names no kind, flag or sub-device it did not negotiate
    in any call (DEVICE_CLAIM of the device that has the kind included), runs MSI-X through pvmsi, an MSI block it
    did not negotiate through emulation, and every message it enables delivers."""
    guest.host(withheld=int(withheld))
    guest.ok(guest.boot(), "GUEST-NEG-006", "BOOT")
    negotiated = _negotiated(guest)
    check(not negotiated & withheld, "GUEST-NEG-001", "the withheld bits not accepted", hex(negotiated))
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40), "GUEST-NEG-006", "ENABLE MSI-X")
    # An MSI block left to emulation is in the x86 compatibility format on every platform of the harness, with an
    # x86 vector (the harness appendix, "Emulated delivery"): no platform offset for it.
    msi_vector = 0x80 - (guest.vector_shift if withheld & Feature.MSI else 0)
    guest.ok(guest.enable(MSI_DEV, MsgKind.MSI, 4, vcpu=2, vector=msi_vector), "GUEST-NEG-006", "ENABLE MSI")
    if not withheld & Feature.IMS:
        guest.ok(guest.enable(MLX5, MsgKind.IMS, 2, vcpu=3, vector=0x60, first_slot=8), "GUEST-NEG-006", "IMS")
    if not withheld & (Feature.IMS | Feature.SUBDEVICE):
        guest.ok(guest.enable(IDXD_SUB, MsgKind.IMS, 2, vcpu=0, vector=0xA0, first_slot=4), "GUEST-NEG-006", "sub")
    guest.clean("GUEST-NEG-006", "GUEST-EMU-002")
    msi_claims = [c for c in guest.calls(FunctionNumber.DEVICE_CLAIM) if c.device == (0, 0, MSI_DEV.devfn, None)]
    if withheld & Feature.MSI:
        check(not msi_claims, "GUEST-NEG-006", "the MSI-only device left to emulation", str(len(msi_claims)))
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-NEG-006", vcpu=1, vector=0x40)
    guest.delivers(MSI_DEV, MsgKind.MSI, 4, "GUEST-EMU-002", vcpu=2, vector=msi_vector)
    if not withheld & Feature.IMS:
        guest.delivers(MLX5, MsgKind.IMS, 2, "GUEST-NEG-006", vcpu=3, vector=0x60, first=8)
    if not withheld & (Feature.IMS | Feature.SUBDEVICE):
        guest.delivers(IDXD_SUB, MsgKind.IMS, 2, "GUEST-NEG-006", vcpu=0, vector=0xA0, first=4)
