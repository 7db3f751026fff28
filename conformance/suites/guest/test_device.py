"""Device control as the guest does it: disable before claiming, query first, tidy up before releasing (spec
"Device control")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import FunctionNumber, MsgKind, Status
from pvmsi.spec.kinds import kind_bit

requirement = pytest.mark.requirement


@requirement("GUEST-DEV-001")
def test_disables_emulated_kinds_before_claiming(guest: GuestSession) -> None:
    """MSI-X and MSI were left enabled through emulation (firmware, a previous kernel): the guest clears MSI-X
    Enable and MSI Enable before it claims them, so the claims succeed."""
    guest.host(preenabled=((MLX5, MsgKind.MSIX), (MSI_DEV, MsgKind.MSI)))
    guest.boot()
    r1 = guest.enable(MLX5, MsgKind.MSIX, 4)
    r2 = guest.enable(MSI_DEV, MsgKind.MSI, 4, vector=0x80)
    guest.clean("GUEST-DEV-001")
    guest.ok(r1, "GUEST-DEV-001", "ENABLE MSI-X")
    guest.ok(r2, "GUEST-DEV-001", "ENABLE MSI")
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-DEV-001")


@requirement("GUEST-DEV-002")
def test_queries_before_claiming(guest: GuestSession) -> None:
    """SHOULD: DEVICE_QUERY before DEVICE_CLAIM, claiming only kinds the device supports, and in the one claim
    every kind the guest then uses on the device (MSI-X first, then IMS on the same device)."""
    guest.full_workout()
    guest.clean("GUEST-DEV-002")
    claims: dict[object, int] = {}
    for c in guest.calls(FunctionNumber.DEVICE_CLAIM):
        check(c.status == Status.SUCCESS, "GUEST-DEV-002", "claims of supported kinds succeed", str(c.status))
        check(c.device not in claims, "GUEST-DEV-002", "one DEVICE_CLAIM a device", f"{c.device} claimed twice")
        claims[c.device] = int(c.decoded.kinds)
    for c in guest.calls(FunctionNumber.MSG_ALLOC):
        for kind in {int(e.kind) for e in c.entries}:
            check(
                bool(claims.get(c.device, 0) & kind_bit(kind)),
                "GUEST-DEV-002",
                f"{MsgKind(kind).name} on {c.device} named in its DEVICE_CLAIM",
                hex(claims.get(c.device, 0)),
            )


@requirement("GUEST-DEV-003")
def test_disables_and_frees_before_releasing(guest: GuestSession) -> None:
    """SHOULD: before DEVICE_RELEASE the guest frees every message, clears MSI-X Enable, and leaves every IMS slot
    it wrote masked (IMS has no kind-wide enable: whether it sends the no-op DISABLE of IMS is its own affair)."""
    guest.boot()
    guest.enable(MLX5, MsgKind.MSIX, 4)
    guest.enable(MLX5, MsgKind.IMS, 2, first_slot=8, vector=0x60)
    r = guest.release(MLX5)
    guest.clean("GUEST-DEV-003")
    guest.ok(r, "GUEST-DEV-003", "RELEASE")
    release = guest.calls(FunctionNumber.DEVICE_RELEASE)
    check(len(release) == 1 and release[0].value == 0, "GUEST-DEV-003", "nothing left to free", str(release))


@requirement("GUEST-EMU-001")
def test_leaves_a_claimed_msi_capability_to_the_hypervisor(guest: GuestSession) -> None:
    """A claimed MSI capability holds the pair the hypervisor wrote inside MSG_ALLOC: the guest sets MSI Enable and
    the mask bits, never Message Address, Data or Multiple Message Enable, through enable, a retarget that moves the
    message to a new pair (REWRITE set) and FLR."""
    guest.host(retarget_moves=True)
    guest.boot()
    r = guest.enable(MSI_DEV, MsgKind.MSI, 4, vcpu=2, vector=0x80)
    guest.ok(r, "GUEST-EMU-001", "ENABLE MSI")
    guest.delivers(MSI_DEV, MsgKind.MSI, 4, "GUEST-EMU-001", vcpu=2, vector=0x80)
    guest.retarget(MSI_DEV, MsgKind.MSI, 1)
    guest.flr(MSI_DEV)
    guest.delivers(MSI_DEV, MsgKind.MSI, 4, "GUEST-EMU-001", vcpu=1, vector=0x80)
    guest.disable(MSI_DEV, MsgKind.MSI)
    guest.clean("GUEST-EMU-001")
