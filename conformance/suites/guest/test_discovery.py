"""Discovery: the guest asks VERSION first and stays with emulated MSI/MSI-X when pvmsi is absent or of another
major version (spec "Discovery")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import FunctionNumber, MsgKind
from pvmsi.spec.iut import GuestMode

requirement = pytest.mark.requirement


def _emulated(guest: GuestSession, rid: str) -> None:
    """The guest enables MSI-X, and a block of 4 MSI vectors, through the trapped path: compat pairs (Multiple
    Message Enable set for the block), exits, every vector delivered; nothing claimed."""
    exits = guest.hv.msix_exits()
    r = guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=2, vector=0x50)
    guest.ok(r, rid, "ENABLE under emulation", GuestMode.EMULATED)
    claims = guest.calls(FunctionNumber.DEVICE_CLAIM) + guest.calls(FunctionNumber.MSG_ALLOC)
    check(not claims, rid, "no DEVICE_CLAIM or MSG_ALLOC", ", ".join(guest.fns()))
    check(guest.hv.msix_exits() > exits, rid, "MSI-X table writes trapped (exits)", "no exit")
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-EMU-002", vcpu=2, vector=0x50)
    r = guest.enable(MSI_DEV, MsgKind.MSI, 4, vcpu=3, vector=0x88)
    guest.ok(r, rid, "ENABLE of an MSI block under emulation", GuestMode.EMULATED)
    check(r.done == 4, "GUEST-STAT-002", "done counts the block's 4 vectors", str(r.done))
    guest.delivers(MSI_DEV, MsgKind.MSI, 4, "GUEST-EMU-002", vcpu=3, vector=0x88)


@requirement("GUEST-DISC-001")
def test_the_first_call_is_version(guest: GuestSession) -> None:
    """The first pvmsi call of a booting guest is VERSION."""
    r = guest.boot()
    guest.clean("GUEST-DISC-001")
    calls = guest.calls()
    check(bool(calls), "GUEST-DISC-001", "the guest discovers pvmsi at boot", "no call")
    check(calls[0].fn == FunctionNumber.VERSION, "GUEST-DISC-001", "VERSION first", guest.fns()[0])
    guest.ok(r, "GUEST-DISC-001", "BOOT")


@requirement("GUEST-DISC-001", "GUEST-DISC-002", "GUEST-STAT-002", "GUEST-EMU-002")
def test_absent_pvmsi_means_emulation(guest: GuestSession) -> None:
    """VERSION answers NOT_SUPPORTED: no other call, and MSI-X keeps working through emulation."""
    guest.host(present=False)
    r = guest.boot()
    guest.clean("GUEST-DISC-001", "GUEST-DISC-002")
    check(guest.fns() == ["VERSION"], "GUEST-DISC-001", "VERSION only", ", ".join(guest.fns()))
    guest.fell_back(r, "GUEST-DISC-002")
    _emulated(guest, "GUEST-DISC-002")
    guest.clean("GUEST-DISC-001")


@requirement("GUEST-DISC-002", "GUEST-STAT-002", "GUEST-EMU-002")
def test_another_major_version_means_emulation(guest: GuestSession) -> None:
    """VERSION reports 2.0: the guest treats pvmsi as absent."""
    guest.host(version=(2, 0))
    r = guest.boot()
    guest.clean("GUEST-DISC-002")
    guest.fell_back(r, "GUEST-DISC-002")
    _emulated(guest, "GUEST-DISC-002")
    guest.clean("GUEST-DISC-002")
