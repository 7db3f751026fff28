"""Accounting at the edges (spec "Quotas", "Headroom", "Batching and partial completion", "Reset, FLR, hot-unplug and
migration"): a free gives back exactly what the allocation took, a batch that runs out of resources keeps what it
completed and leaks nothing, and hot-unplug and migration leave the counters as the calls made them."""

from __future__ import annotations

from typing import Any

import pytest

from pvmsi.conformance.toolkit import (
    DEFAULT_DEVICES,
    IDXD,
    MLX5,
    MSI_DEV,
    Session,
    alloc_entry,
    check,
    status_name,
)
from pvmsi.spec.constants import KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import LifecycleEvent
from pvmsi.spec.iut import DeviceRef, VmKnobs

requirement = pytest.mark.requirement
option = pytest.mark.option

#: The device_info fields that count: what the device holds and what the device and the VM can still be allocated.
COUNTERS = ("claimed_kinds", "messages_allocated", "message_quota", "messages_available", "vm_messages_available")


def counters(session: Session, dev: DeviceRef = MLX5) -> dict[str, int]:
    info = session.device_info(dev)
    return {name: int(getattr(info, name)) for name in COUNTERS}


def same(before: dict[str, int], after: dict[str, int], rid: str, what: str) -> None:
    """Every counter of ``after`` equals ``before``; the failure names the ones that differ."""
    diff = {k: f"{before[k]} -> {after[k]}" for k in COUNTERS if before[k] != after[k]}
    check(not diff, rid, f"{what}: device_info counters unchanged", str(diff))


@requirement("HV-FREE-002", "HV-HEADROOM-001")
@pytest.mark.parametrize("count", [1, 3, 8])
def test_free_gives_back_exactly_what_alloc_took(session: Session, count: int) -> None:
    """Allocating ``count`` MSI-X messages lowers messages_available and vm_messages_available by ``count`` and
    raises messages_allocated by ``count``; freeing them gives messages_allocated back exactly, and allocating the
    same slots again brings every counter of the device, and of another device of the VM, to exactly what the
    first allocation did (a free that kept any vector counted would show there; the entries a platform keeps
    for a freed slot, HV-QUOTA-004, are that slot's again)."""
    session.ready()
    before = counters(session)
    held = session.allocated(MLX5, MsgKind.MSIX, list(range(count)))
    during, other = counters(session), counters(session, MSI_DEV)
    deltas = {"messages_allocated": count, "messages_available": -count, "vm_messages_available": -count}
    for name, delta in deltas.items():
        check(
            during[name] == before[name] + delta,
            "HV-HEADROOM-001",
            f"{name} {before[name]} {'+' if delta > 0 else '-'} {abs(delta)}",
            str(during[name]),
        )
    for cycle in (1, 2):
        b = session.free(MLX5, [r.handle for r in held])
        check(b.status == Status.SUCCESS, "HV-FREE-002", "MSG_FREE -> SUCCESS", status_name(b.status))
        freed = counters(session)
        check(
            freed["messages_allocated"] == before["messages_allocated"],
            "HV-FREE-002",
            f"messages_allocated back to {before['messages_allocated']}",
            str(freed["messages_allocated"]),
        )
        held = session.allocated(MLX5, MsgKind.MSIX, list(range(count)))
        same(during, counters(session), "HV-FREE-002", f"cycle {cycle}: freed and allocated again")
        same(other, counters(session, MSI_DEV), "HV-FREE-002", f"cycle {cycle}: another device of the VM")


def _share_of_six(session: Session) -> None:
    """A VM whose share of the remapping table is 6 entries, MSI-X claimed on MLX5 and MSI on MSI_DEV."""
    session.use(session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=6)))
    session.ready()
    session.claimed(MSI_DEV, int(KindMask.MSI))


@requirement("HV-BATCH-002", "HV-BATCH-003", "HV-SEC-007")
def test_no_resources_mid_batch_keeps_what_completed(session: Session) -> None:
    """With room for 6 vectors, a batch of 8 MSI-X entries stops at entry 6 with NO_RESOURCES: batch_out says 6
    completed, entries 0-5 hold working handles (they activate), the VM holds exactly 6 and has no headroom."""
    _share_of_six(session)
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, s, vcpu=0, vector=0x40 + s) for s in range(8)])
    check(b.status == Status.NO_RESOURCES, "HV-SEC-007", "MSG_ALLOC -> NO_RESOURCES", status_name(b.status))
    hdr = b.header
    check(
        hdr is not None and (hdr.next_index, hdr.completed, hdr.status) == (6, 6, Status.NO_RESOURCES),
        "HV-BATCH-002",
        "batch_out: next_index 6, completed 6, status NO_RESOURCES",
        str(hdr),
    )
    failed = b.results[6]
    check(
        failed is not None and failed.status == Status.NO_RESOURCES,
        "HV-BATCH-002",
        "entry 6's result: NO_RESOURCES",
        str(failed),
    )
    check(b.results[7] is None, "HV-BATCH-004", "entry 7's result untouched", str(b.results[7]))
    got = counters(session)
    check(got["messages_allocated"] == 6, "HV-BATCH-003", "6 messages held", str(got["messages_allocated"]))
    check(got["vm_messages_available"] == 0, "HV-SEC-007", "no headroom left", str(got["vm_messages_available"]))
    moved = [{"handle": r.handle, "vcpu": 1, "vector": 0x60 + i, "flags": 0} for i, r in enumerate(b.results[:6])]
    a = session.retarget(MLX5, moved)
    check(a.status == Status.SUCCESS, "HV-BATCH-003", "the 6 completed entries' handles work", status_name(a.status))


@requirement("HV-SEC-007", "HV-HEADROOM-001", "HV-ALLOC-009")
def test_a_failed_allocation_leaks_nothing(session: Session) -> None:
    """A VM with room for 6 takes 4, so 2 are left; a 4-vector MSI block does not fit (NO_RESOURCES), and afterwards
    the headroom is still exactly 2 and exactly 2 more allocate, then the next fails; freed, those 2 slots allocate
    again (nothing of the failed entry was kept or counted)."""
    _share_of_six(session)
    session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2, 3], vcpu=0)
    before = counters(session, MSI_DEV)
    check(before["vm_messages_available"] == 2, "HV-HEADROOM-001", "2 left", str(before["vm_messages_available"]))
    b = session.alloc(MSI_DEV, [alloc_entry(MsgKind.MSI, 0, vcpu=0, vector=0x80, count=4)])
    check(b.status == Status.NO_RESOURCES, "HV-SEC-007", "a block of 4 -> NO_RESOURCES", status_name(b.status))
    same(before, counters(session, MSI_DEV), "HV-SEC-007", "after the failed block")
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 5, vcpu=0)])
    check(b.status == Status.SUCCESS, "HV-SEC-007", "the next allocation succeeds", status_name(b.status))
    extra = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 6, vcpu=0), alloc_entry(MsgKind.MSIX, 7, vcpu=0)])
    check(
        extra.status == Status.NO_RESOURCES and extra.header is not None and extra.header.completed == 1,
        "HV-SEC-007",
        "exactly one more allocates, then NO_RESOURCES",
        f"{status_name(extra.status)}, {extra.header}",
    )
    handles = [b.results[0].handle, extra.results[0].handle]
    check(session.free(MLX5, handles).status == Status.SUCCESS, "HV-FREE-002", "MSG_FREE -> SUCCESS", "failed")
    again = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 5, vcpu=0), alloc_entry(MsgKind.MSIX, 6, vcpu=0)])
    check(again.status == Status.SUCCESS, "HV-SEC-007", "the two freed slots allocate again", status_name(again.status))


@requirement("HV-UNPLUG-001")
@option("hot_unplug")
def test_unplug_ends_the_claim_for_the_claim_limit(session: Session) -> None:
    """With max_claimed_devices 2, a VM claims MLX5 and IDXD; IDXD is unplugged: its identity is UNKNOWN_DEVICE, MLX5's
    counters are as they were, and the ended claim no longer counts, so MSI_DEV can be claimed."""
    session.use(session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(max_claimed_devices=2)))
    session.ready()
    session.allocated(MLX5, MsgKind.MSIX, [0, 1])
    session.claimed(IDXD, int(KindMask.MSIX))
    session.allocated(IDXD, MsgKind.MSIX, [0, 1, 2])
    session.iut.lifecycle(session.vm, LifecycleEvent.HOT_UNPLUG, IDXD)
    session.log("LIFECYCLE HOT_UNPLUG")
    out = session.query(IDXD)
    check(out.status == Status.UNKNOWN_DEVICE, "HV-UNPLUG-001", "IDXD unknown", status_name(out.status))
    got = counters(session)
    check(got["messages_allocated"] == 2, "HV-UNPLUG-001", "MLX5 still holds 2", str(got["messages_allocated"]))
    out = session.claim(MSI_DEV, int(KindMask.MSI))
    check(out.status == Status.SUCCESS, "HV-UNPLUG-001", "a new claim fits the limit again", status_name(out.status))


def _holdings(session: Session) -> dict[str, dict[str, Any]]:
    return {str(dev): counters(session, dev) for dev in (MLX5, MSI_DEV)}


@requirement("HV-MIG-001")
@pytest.mark.parametrize(
    "event", [LifecycleEvent.MIGRATE, LifecycleEvent.MIGRATE_CROWDED], ids=lambda e: e.name.lower()
)
def test_migration_keeps_every_counter(session: Session, event: LifecycleEvent) -> None:
    """Every device_info counter of every claimed device is the same after a migration, and the VM's quota is
    enforced from where it was: exactly vm_messages_available more allocate."""
    session.ready()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2], vcpu=0)
    session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=0, vector=0x80, count=4)
    before = _holdings(session)
    session.iut.lifecycle(session.vm, event, None)
    session.log(f"LIFECYCLE {event.name}")
    after = _holdings(session)
    for dev, counts in before.items():
        same(counts, after[dev], "HV-MIG-001", f"{dev} after {event.name}")
