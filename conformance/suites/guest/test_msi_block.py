"""A multi-message MSI block the guest rewrites itself (spec "Allocate, retarget and free", GUEST-ALLOC-002; the
harness's device model: MASK of MSI slot 0 masks every vector of the block, slot n > 0 vector n alone)."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import Feature, MsgKind
from pvmsi.spec.harness_constants import DeviceOp
from pvmsi.spec.iut import GuestMode

requirement = pytest.mark.requirement


def _retarget_masked(guest: GuestSession, vectors: int, mode: GuestMode) -> None:
    guest.ok(guest.boot(), "GUEST-ALLOC-002", "BOOT", mode)
    guest.ok(guest.enable(MSI_DEV, MsgKind.MSI, vectors, vcpu=1, vector=0x40), "GUEST-ALLOC-002", "ENABLE", mode)
    r = guest.retarget(MSI_DEV, MsgKind.MSI, 3)
    guest.clean("GUEST-ALLOC-002")
    guest.ok(r, "GUEST-ALLOC-002", "RETARGET", mode)
    check(r.done == vectors, "GUEST-ALLOC-002", f"RETARGET done {vectors}", str(r.done))
    ops = [op for op in guest.hv.device_ops() if op.command.startswith("RETARGET") and op.kind == MsgKind.MSI]
    programs = [i for i, op in enumerate(ops) if op.op is DeviceOp.PROGRAM]
    check(len(programs) == 1, "GUEST-ALLOC-002", "the block rewritten once", str(len(programs)))
    check(ops[programs[0]].vectors == vectors, "GUEST-ALLOC-002", f"{vectors} vectors", str(ops[programs[0]].vectors))
    masked = [op for op in ops[: programs[0]] if op.op is DeviceOp.MASK]
    check(any(op.slot == 0 for op in masked), "GUEST-ALLOC-002", "MASK of slot 0 before the write", str(masked))
    guest.delivers(MSI_DEV, MsgKind.MSI, vectors, "GUEST-ALLOC-002", vcpu=3, vector=0x40)


@requirement("GUEST-ALLOC-002", "GUEST-EMU-002")
@pytest.mark.parametrize("vectors", [2, 4])
def test_masks_the_whole_msi_block_it_rewrites_without_pvmsi(guest: GuestSession, vectors: int) -> None:
    """pvmsi absent: the guest retargets a 2- or 4-vector MSI block by writing its new pair with every vector
    masked (MASK of slot 0), then unmasks it; each vector delivers to the new vCPU."""
    guest.host(present=False)
    _retarget_masked(guest, vectors, GuestMode.EMULATED)


@requirement("GUEST-ALLOC-002", "GUEST-EMU-002")
@pytest.mark.platforms("vtd", "amd-vi")  # the emulated MSI of a pvmsi guest on another platform: see vector_shift
@pytest.mark.parametrize("vectors", [2, 4])
def test_masks_the_whole_msi_block_it_rewrites_beside_pvmsi(guest: GuestSession, vectors: int) -> None:
    """pvmsi without MSI (GET_INFO withholds it): the MSI block stays emulated and the guest masks every vector of
    it while it rewrites it."""
    guest.host(withheld=int(Feature.MSI))
    _retarget_masked(guest, vectors, GuestMode.PVMSI)
