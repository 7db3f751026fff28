"""RESET, VM reset, FLR, hot-unplug and live migration (spec "Reset, FLR, hot-unplug and migration")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import DEFAULT_DEVICES, IDXD, MLX5, Session, alloc_entry, check, status_name
from pvmsi.spec.constants import DeviceFlag, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import FireOutcome, LifecycleEvent
from pvmsi.spec.iut import VmKnobs

requirement = pytest.mark.requirement
option = pytest.mark.option


def _setup(session: Session) -> list[object]:
    session.ready()
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2], vcpu=1, vector=0x50)
    for slot, r in enumerate(results):
        session.program(MLX5, MsgKind.MSIX, slot, r.address, r.data)
    session.enable(MLX5, MsgKind.MSIX)
    return results


def _after_reset(session: Session, rid: str) -> None:
    fired = session.fire(MLX5, MsgKind.MSIX, 0)
    check(fired.outcome != FireOutcome.DELIVERED, rid, "old pairs no longer deliver", fired.outcome.name)
    out = session.claim(MLX5, int(KindMask.MSIX))
    check(out.status == Status.WRONG_STATE, rid, "VM back in OPEN: claim -> WRONG_STATE", status_name(out.status))
    exits = session.program(MLX5, MsgKind.MSIX, 3, 0xFEE00000, 0x33)
    check(exits > 0, rid, "MSI-X emulated again (writes exit)", f"{exits} exits")
    check(session.negotiate().status == Status.SUCCESS, rid, "NEGOTIATE works again", "it failed")


@requirement("HV-RESET-001")
def test_reset_call_drops_everything(session: Session) -> None:
    """RESET frees every message, old pairs stop delivering, and the VM is OPEN and emulated again."""
    _setup(session)
    out = session.reset()
    check(
        out.status == Status.SUCCESS and out.value == 3,
        "HV-RESET-001",
        "SUCCESS, 3 vectors freed",
        f"{status_name(out.status)} {out.value}",
    )
    _after_reset(session, "HV-RESET-001")


@requirement("HV-RESET-002")
def test_vm_reset_drops_everything(session: Session) -> None:
    """A VM reset drops every message and claim: old pairs stop delivering and the VM is OPEN again."""
    _setup(session)
    session.iut.lifecycle(session.vm, LifecycleEvent.VM_RESET, None)
    session.log("LIFECYCLE VM_RESET")
    _after_reset(session, "HV-RESET-002")


@requirement("HV-RESET-003")
def test_reset_while_open(session: Session) -> None:
    """RESET in the OPEN state succeeds and reports 0 messages freed."""
    out = session.reset()
    check(
        out.status == Status.SUCCESS and out.value == 0,
        "HV-RESET-003",
        "SUCCESS, 0 freed",
        f"{status_name(out.status)} {out.value}",
    )


@requirement("HV-FLR-001")
@option("flr")
def test_flr_keeps_claim_and_handles(session: Session) -> None:
    """After an FLR the device stays claimed with valid handles, and a rewritten pair delivers."""
    results = _setup(session)
    session.iut.lifecycle(session.vm, LifecycleEvent.FLR, MLX5)
    session.log("LIFECYCLE FLR")
    info = session.device_info(MLX5)
    check(
        bool(info.flags & DeviceFlag.CLAIMED) and info.messages_allocated == 3,
        "HV-FLR-001",
        "still claimed with 3 messages",
        f"flags {info.flags:#x}, {info.messages_allocated}",
    )
    r = results[0]
    b = session.retarget(MLX5, [{"handle": r.handle, "vcpu": 2, "vector": 0x52, "flags": 0}])  # type: ignore[attr-defined]
    check(b.status == Status.SUCCESS, "HV-FLR-001", "handles still valid", status_name(b.status))
    res = b.results[0]  # the pair now in force (HV-RETGT-002): on IMSIC another hart is another address
    session.program(MLX5, MsgKind.MSIX, 0, res.address, res.data)
    session.enable(MLX5, MsgKind.MSIX)
    fired = session.fire(MLX5, MsgKind.MSIX, 0)
    check(
        fired.outcome == FireOutcome.DELIVERED and fired.vector == 0x52,
        "HV-FLR-001",
        "the rewritten pair delivers",
        f"{fired.outcome.name} {fired.vector:#x}",
    )


@requirement("HV-UNPLUG-001")
@option("hot_unplug")
def test_hot_unplug(session: Session) -> None:
    """After hot-unplug the device is UNKNOWN_DEVICE and its handles are UNKNOWN_HANDLE."""
    results = _setup(session)
    session.iut.lifecycle(session.vm, LifecycleEvent.HOT_UNPLUG, MLX5)
    session.log("LIFECYCLE HOT_UNPLUG")
    out = session.query(MLX5)
    check(out.status == Status.UNKNOWN_DEVICE, "HV-UNPLUG-001", "the device is unknown", status_name(out.status))
    from pvmsi.conformance.toolkit import IDXD

    session.claimed(IDXD, int(KindMask.MSIX))
    b = session.free(IDXD, [results[0].handle])  # type: ignore[attr-defined]
    check(b.status == Status.UNKNOWN_HANDLE, "HV-UNPLUG-001", "its handles are unknown", status_name(b.status))


@requirement("HV-UNPLUG-001")
@option("hot_unplug")
def test_hot_unplug_frees_remapping_entries(session: Session) -> None:
    """With room for 4 remapping entries, 4 messages of a device that is then unplugged must not keep the room."""
    vm = session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=4))
    session.use(vm)
    session.ready()
    session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2, 3])
    session.iut.lifecycle(vm, LifecycleEvent.HOT_UNPLUG, MLX5)
    session.log("LIFECYCLE HOT_UNPLUG")
    session.claimed(IDXD, int(KindMask.MSIX))
    b = session.alloc(IDXD, [alloc_entry(MsgKind.MSIX, s) for s in range(4)])
    check(
        b.status == Status.SUCCESS,
        "HV-UNPLUG-001",
        "4 allocations for another device: the unplugged device's entries were freed",
        status_name(b.status),
    )


@requirement("HV-MIG-001", "HV-MIG-002", "HV-MIG-003")
def test_live_migration_keeps_everything(session: Session) -> None:
    """Live migration keeps state, claim, allocations and handles, and the pairs deliver without a rewrite."""
    results = _setup(session)
    # the claim and the allocation, not the headroom: the destination's remapping table is its own
    headroom = ("messages_available", "vm_messages_available")
    before = {k: v for k, v in session.device_info(MLX5).items() if k not in headroom and not k.startswith("_")}
    session.iut.lifecycle(session.vm, LifecycleEvent.MIGRATE, None)
    session.log("LIFECYCLE MIGRATE")
    check(session.negotiate().status == Status.WRONG_STATE, "HV-MIG-001", "still negotiated", "OPEN again")
    after = {k: v for k, v in session.device_info(MLX5).items() if k not in headroom and not k.startswith("_")}
    check(after == before, "HV-MIG-001", "claim and allocation unchanged", f"{before} -> {after}")
    # the claim holds without a re-claim: the MSI-X table still reaches the device with no exit (an unused slot)
    exits = session.program(MLX5, MsgKind.MSIX, 3, 0xFEE00000, 0, masked=True)
    check(exits == 0, "HV-MIG-003", "MSI-X table writes do not exit after migration", f"{exits} exits")
    for slot in range(3):  # no rewrite: the pairs in the device must still deliver (HV-MIG-003)
        fired = session.fire(MLX5, MsgKind.MSIX, slot)
        check(
            fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (1, 0x50 + slot),
            "HV-MIG-002",
            f"slot {slot} delivers to vcpu 1 vector {0x50 + slot:#x}",
            f"{fired.outcome.name} {fired.vcpu} {fired.vector:#x}",
        )
    b = session.retarget(MLX5, [{"handle": results[1].handle, "vcpu": 0, "vector": 0x61, "flags": 0}])  # type: ignore[attr-defined]
    check(b.status == Status.SUCCESS, "HV-MIG-001", "handles valid after migration", status_name(b.status))
