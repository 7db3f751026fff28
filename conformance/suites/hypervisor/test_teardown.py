"""What a device holds when a claim ends (release, RESET, VM reset), after a function-level reset and after a
hot-unplug (spec "Reset, FLR, hot-unplug and migration": "Release", "Function-level reset", "Hot-unplug")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pvmsi.conformance import eventkit
from pvmsi.conformance.toolkit import IDXD, MLX5, MSI_DEV, Session, check, status_name
from pvmsi.conformance.toolkit_devices import MSIX_CAP, MSIX_ENABLE
from pvmsi.spec.constants import DeviceIdFlag, EventType, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import FireOutcome, LifecycleEvent

requirement = pytest.mark.requirement
option = pytest.mark.option

#: The harness fact the PENDING checks rely on (harness page, "Reset, masking and pending messages").
FIRE_ORDER = "(harness: fire outcomes: disabled, then masked, answer PENDING, even with address zero)"


def _live_msix(session: Session) -> list[object]:
    """MLX5's MSI-X claimed, slots 0..2 allocated, programmed, enabled and delivering."""
    session.ready()
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2], vcpu=1, vector=0x50)
    for slot, r in enumerate(results):
        session.program(MLX5, MsgKind.MSIX, slot, r.address, r.data)
    session.enable(MLX5, MsgKind.MSIX)
    fired = session.fire(MLX5, MsgKind.MSIX, 1)
    check(fired.outcome == FireOutcome.DELIVERED, "HV-ALLOC-007", "slot 1 delivers", fired.outcome.name)
    session.iut.collect(session.vm)
    return results


def _release(session: Session) -> None:
    out = session.release(MLX5)
    check(out.status == Status.SUCCESS, "HV-DEV-011", "DEVICE_RELEASE -> SUCCESS", status_name(out.status))


def _reset_call(session: Session) -> None:
    out = session.reset()
    check(out.status == Status.SUCCESS, "HV-RESET-001", "RESET -> SUCCESS", status_name(out.status))


def _vm_reset(session: Session) -> None:
    session.iut.lifecycle(session.vm, LifecycleEvent.VM_RESET, None)
    session.log("LIFECYCLE VM_RESET")


ENDINGS: dict[str, Callable[[Session], None]] = {
    "DEVICE_RELEASE": _release,
    "RESET": _reset_call,
    "VM reset": _vm_reset,
}


@requirement("HV-RELEASE-001")
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_claim_end_leaves_msix_table_reset(session: Session, ending: str) -> None:
    """After the claim ends the MSI-X table is as a reset leaves it: the guest's pairs are gone and every entry is
    masked, so enabling MSI-X through emulation emits nothing, not even a write the IOMMU blocks."""
    _live_msix(session)
    ENDINGS[ending](session)
    blocked = session.iut.counters(session.vm).blocked
    fired = session.fire(MLX5, MsgKind.MSIX, 1)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-RELEASE-001",
        f"MSI-X Enable clear: PENDING {FIRE_ORDER}",
        fired.outcome.name,
    )
    exited = session.config_write(MLX5, MSIX_CAP + 2, 2, MSIX_ENABLE)  # the guest enables MSI-X, emulated again
    check(exited, "HV-RELEASE-002", "Message Control exits (emulated again)", "no exit")
    for slot in range(3):
        fired = session.fire(MLX5, MsgKind.MSIX, slot)
        check(
            fired.outcome == FireOutcome.PENDING,
            "HV-RELEASE-001",
            f"entry {slot} masked (address zero) after {ending}: PENDING {FIRE_ORDER}",
            f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
        )
    after = session.iut.counters(session.vm).blocked
    check(
        after == blocked, "HV-RELEASE-001", "no write of a stale pair reached the IOMMU", f"{after - blocked} blocked"
    )
    check(session.collect(session.vm) == [], "HV-RELEASE-001", "nothing delivered", "an interrupt was injected")


@requirement("HV-RELEASE-002")
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_emulation_resumes_from_reset_state(session: Session, ending: str) -> None:
    """After the claim ends, a pair the guest writes through emulation delivers where it names, and an entry it
    did not write stays masked."""
    _live_msix(session)
    ENDINGS[ending](session)
    exits = session.program(MLX5, MsgKind.MSIX, 2, 0xFEE00000 | 3 << 12, 0x66)  # compatibility format: vCPU 3
    check(exits > 0, "HV-RELEASE-002", "MSI-X table writes exit (emulated)", f"{exits} exits")
    session.enable(MLX5, MsgKind.MSIX)
    fired = session.fire(MLX5, MsgKind.MSIX, 2)
    check(
        (fired.outcome, fired.vcpu, fired.vector) == (FireOutcome.DELIVERED, 3, 0x66 - session.vector_shift),
        "HV-RELEASE-002",
        "the emulated pair delivers to vCPU 3 vector 0x66",
        f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
    )
    fired = session.fire(MLX5, MsgKind.MSIX, 0)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-RELEASE-001",
        f"entry 0 stays masked: PENDING {FIRE_ORDER}",
        fired.outcome.name,
    )


@requirement("HV-FLR-002")
@option("flr")
def test_flr_writes_no_stale_pair(session: Session) -> None:
    """An entry the guest used through emulation before the claim, and not since, holds no pair after an FLR of
    the claimed device: the hypervisor restores nothing of its own into the MSI-X table."""
    session.negotiated()
    session.program(MLX5, MsgKind.MSIX, 5, 0xFEE00000 | 2 << 12, 0x45)  # emulated era: entry 5 -> vCPU 2
    session.enable(MLX5, MsgKind.MSIX)
    fired = session.fire(MLX5, MsgKind.MSIX, 5)
    check(fired.outcome == FireOutcome.DELIVERED, "HV-RELEASE-002", "emulated entry 5 delivers", fired.outcome.name)
    session.config_write(MLX5, MSIX_CAP + 2, 2, 0)  # MSI-X off (GUEST-DEV-001), then the claim
    session.iut.collect(session.vm)
    session.claimed(MLX5, int(KindMask.MSIX))
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1], vcpu=1, vector=0x50)
    for slot, r in enumerate(results):
        session.program(MLX5, MsgKind.MSIX, slot, r.address, r.data)
    session.enable(MLX5, MsgKind.MSIX)
    session.iut.lifecycle(session.vm, LifecycleEvent.FLR, MLX5)
    session.log("LIFECYCLE FLR")
    session.enable(MLX5, MsgKind.MSIX)  # the guest enables MSI-X again before it rewrote its entries
    blocked = session.iut.counters(session.vm).blocked
    for slot in (5, 0, 1):
        fired = session.fire(MLX5, MsgKind.MSIX, slot)
        ok = fired.outcome == FireOutcome.PENDING or (
            slot < 2 and (fired.outcome, fired.vcpu, fired.vector) == (FireOutcome.DELIVERED, 1, 0x50 + slot)
        )
        check(
            ok,
            "HV-FLR-002",
            f"entry {slot}: PENDING (as the reset left it: masked) {FIRE_ORDER}"
            + (" or its own message's target" if slot < 2 else ""),
            f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
        )
    after = session.iut.counters(session.vm).blocked
    check(after == blocked, "HV-FLR-002", "no stale pair reached the IOMMU", f"{after - blocked} blocked")


@requirement("HV-UNPLUG-002")
@option("hot_unplug", "subdevice", "ims")
def test_unplug_ends_subdevice_claims_and_returns_quota(session: Session) -> None:
    """Unplugging a function with a claimed sub-device: the sub-device is unknown, and every vector and remapping
    entry the function and its sub-devices held is the VM's again."""
    session.ready()
    before = session.device_info(MLX5).vm_messages_available
    sub = IDXD.with_pasid(1)
    session.claimed(IDXD, int(KindMask.MSIX))
    session.claimed(sub, int(KindMask.IMS))
    session.allocated(IDXD, MsgKind.MSIX, [0, 1])
    held = session.allocated(sub, MsgKind.IMS, [0, 1, 2])
    freed = session.free(sub, [held[2].handle])  # a freed slot's entries, kept for it (HV-QUOTA-004)
    check(freed.status == Status.SUCCESS, "HV-FREE-002", "MSG_FREE -> SUCCESS", status_name(freed.status))
    session.iut.lifecycle(session.vm, LifecycleEvent.HOT_UNPLUG, IDXD)
    session.log("LIFECYCLE HOT_UNPLUG")
    out = session.query(sub)
    check(out.status == Status.UNKNOWN_DEVICE, "HV-UNPLUG-002", "the sub-device is unknown", status_name(out.status))
    after = session.device_info(MLX5).vm_messages_available
    check(after == before, "HV-UNPLUG-002", f"vm_messages_available back to {before}", str(after))


@requirement("HV-UNPLUG-003")
def test_unplug_queues_device_removed_for_function_and_subdevice(session: Session) -> None:
    """Unplugging a function whose sub-device is claimed too queues one DEVICE_REMOVED naming each, with handle and
    reason zero; a device that was never claimed raises none."""
    session.negotiated()
    sub = IDXD.with_pasid(3)
    session.claimed(IDXD, int(KindMask.MSIX))
    session.claimed(sub, int(KindMask.IMS))
    session.allocated(sub, MsgKind.IMS, [0])
    session.iut.lifecycle(session.vm, LifecycleEvent.HOT_UNPLUG, IDXD)
    session.log("LIFECYCLE HOT_UNPLUG IDXD")
    got = eventkit.fetch(session)
    check(got.status == Status.SUCCESS, "HV-EVT-004", "EVENT_FETCH -> SUCCESS", status_name(got.status))
    removed = [e for e in got.events or [] if e.event_type == EventType.DEVICE_REMOVED]
    named = sorted(
        (e.device_segment, e.device_bus, e.device_devfn, e.device_flags, e.device_subdevice_id) for e in removed
    )
    want = sorted(
        [
            (IDXD.segment, IDXD.bus, IDXD.devfn, 0, 0),
            (IDXD.segment, IDXD.bus, IDXD.devfn, int(DeviceIdFlag.SUBDEVICE), 3),
        ]
    )
    check(named == want, "HV-UNPLUG-003", f"DEVICE_REMOVED for {want}", str(named))
    for e in removed:
        check(e.handle == 0 and e.reason == 0, "HV-UNPLUG-003", "handle and reason zero", f"{e.handle}, {e.reason}")
    before = eventkit.fetch(session)
    seqs = list(zip(before.seqs(), before.types(), strict=True))
    session.iut.lifecycle(session.vm, LifecycleEvent.HOT_UNPLUG, MSI_DEV)  # never claimed: nothing to announce
    session.log("LIFECYCLE HOT_UNPLUG MSI_DEV")
    after = eventkit.fetch(session)
    again = list(zip(after.seqs(), after.types(), strict=True))
    check(again == seqs, "HV-UNPLUG-003", f"no event for an unclaimed device: {seqs}", str(again))
