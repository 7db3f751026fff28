"""Messages as the guest writes them: exactly the pairs it got, into the slots it named, before enabling them;
rewrites on REWRITE; no stale handle (spec "Allocate, retarget and free", "Security considerations")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import IDXD, IDXD_SUB, MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import ActivateFlag, FunctionNumber, MsgKind
from pvmsi.spec.harness_constants import DeviceOp
from pvmsi.spec.iut import DeviceRef

requirement = pytest.mark.requirement


@requirement("GUEST-ALLOC-001", "GUEST-NEG-004", "GUEST-SEC-001")
def test_writes_the_returned_pairs_before_enabling(guest: GuestSession) -> None:
    """MSI-X, IMS, an 8-vector MSI block and the IMS of two sub-devices (the first and a later one, each writing
    through its own identity into its own slots): every device write is a pair MSG_ALLOC returned for that slot of
    that device, written before the slot is enabled or unmasked; every vector delivers."""
    guest.boot()
    enables = [
        (MLX5, MsgKind.MSIX, 6, 1, 0x40, 0),
        (MLX5, MsgKind.IMS, 3, 2, 0x60, 10),
        (MSI_DEV, MsgKind.MSI, 8, 3, 0x80, 0),
        (IDXD_SUB, MsgKind.IMS, 2, 0, 0xA0, 0),
        (IDXD.with_pasid(3), MsgKind.IMS, 2, 1, 0xB0, 0),
    ]
    for dev, kind, n, vcpu, vector, first in enables:
        r = guest.enable(dev, kind, n, vcpu=vcpu, vector=vector, first_slot=first)
        guest.clean("GUEST-SEC-001", "GUEST-NEG-004", "GUEST-ALLOC-001")
        guest.ok(r, "GUEST-ALLOC-001", f"ENABLE {kind.name} on {dev}")
    for dev, kind, n, vcpu, vector, first in enables:
        guest.delivers(dev, kind, n, "GUEST-ALLOC-001", vcpu=vcpu, vector=vector, first=first)


@requirement("GUEST-ALLOC-002")
@pytest.mark.parametrize(
    ("dev", "kind", "count"),
    [(MLX5, MsgKind.MSIX, 4), (MLX5, MsgKind.IMS, 3)],
    ids=["MSI-X", "IMS"],
)
def test_rewrites_masked_when_retarget_says_rewrite(
    guest: GuestSession, dev: DeviceRef, kind: MsgKind, count: int
) -> None:
    """The model moves each retargeted message to a new remapping entry (REWRITE set): the guest writes every new
    pair with the slot masked, and the messages deliver to the new vCPU."""
    guest.host(retarget_moves=True)
    guest.boot()
    guest.enable(dev, kind, count, vcpu=1, vector=0x50)
    r = guest.retarget(dev, kind, 3)
    guest.clean("GUEST-ALLOC-002")
    guest.ok(r, "GUEST-ALLOC-002", "RETARGET")
    rewrites = [res for c in guest.calls(FunctionNumber.MSG_ACTIVATE) for res in c.results()]
    check(
        bool(rewrites) and all(res.flags & ActivateFlag.REWRITE for res in rewrites),
        "GUEST-ALLOC-002",
        "the model set REWRITE",
        str(rewrites),
    )
    new = {(int(res.address), int(res.data)) for res in rewrites}
    by_slot = {m.slot: (m.address, m.data) for m in guest.hv.live().values() if m.kind is kind}
    written = [op for op in guest.hv.device_ops(DeviceOp.PROGRAM) if op.command.startswith("RETARGET")]
    slots = sorted(op.slot for op in written)
    check(slots == sorted(by_slot), "GUEST-ALLOC-002", f"each slot written once: {sorted(by_slot)}", str(slots))
    for op in written:
        check(
            by_slot.get(op.slot) in new and by_slot[op.slot] == (op.address, op.data),
            "GUEST-ALLOC-002",
            f"slot {op.slot} gets the pair MSG_ACTIVATE returned for it",
            f"{op.address:#x}/{op.data:#x}",
        )
    guest.delivers(dev, kind, count, "GUEST-ALLOC-002", vcpu=3, vector=0x50)


@requirement("GUEST-ALLOC-002", "GUEST-ALLOC-005")
def test_in_place_retarget_delivers_to_the_new_vcpu(guest: GuestSession) -> None:
    """An in-place retarget (REWRITE clear) needs no rewrite: the guest writes no slot (SHOULD NOT), and the
    messages follow."""
    guest.boot()
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=0, vector=0x50)
    guest.ok(guest.retarget(MLX5, MsgKind.MSIX, 2), "GUEST-ALLOC-002", "RETARGET")
    guest.clean("GUEST-ALLOC-002", "GUEST-NEG-004")
    slot_of = {h: m.slot for h, m in guest.hv.live().items() if m.kind is MsgKind.MSIX}
    in_place = set()  # slots whose activate result had REWRITE clear (an IMSIC retarget to another hart sets it)
    for c in [c for c in guest.calls(FunctionNumber.MSG_ACTIVATE) if c.command.startswith("RETARGET")]:
        for i, res in enumerate(c.results(), start=c.start):
            if not res.flags & ActivateFlag.REWRITE and int(c.entries[i].handle) in slot_of:
                in_place.add(slot_of[int(c.entries[i].handle)])
    written = [op for op in guest.hv.device_ops(DeviceOp.PROGRAM) if op.command.startswith("RETARGET")]
    bad = [op.slot for op in written if op.slot in in_place]
    check(not bad, "GUEST-ALLOC-005", "no slot written whose REWRITE was clear", ", ".join(map(str, bad)))
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-ALLOC-002", vcpu=2, vector=0x50)


@requirement("GUEST-ALLOC-003")
def test_masks_before_freeing(guest: GuestSession) -> None:
    """SHOULD: a slot is masked (or its kind disabled) before its message is freed."""
    guest.full_workout()
    guest.clean("GUEST-ALLOC-003")
    check(bool(guest.calls(FunctionNumber.MSG_FREE)), "GUEST-ALLOC-003", "messages were freed", ", ".join(guest.fns()))


@requirement("GUEST-ALLOC-004")
def test_no_handle_is_used_after_free_or_release(guest: GuestSession) -> None:
    """DISABLE twice, RETARGET after DISABLE, RELEASE, then RETARGET and DISABLE again: no freed or released
    handle is ever named again."""
    guest.boot()
    guest.enable(MLX5, MsgKind.MSIX, 4)
    guest.disable(MLX5, MsgKind.MSIX)
    guest.disable(MLX5, MsgKind.MSIX)
    guest.retarget(MLX5, MsgKind.MSIX, 2)
    guest.enable(MLX5, MsgKind.IMS, 2, first_slot=4)
    guest.release(MLX5)
    guest.retarget(MLX5, MsgKind.IMS, 3)
    guest.disable(MLX5, MsgKind.IMS)
    guest.clean("GUEST-ALLOC-004")
