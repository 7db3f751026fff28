"""Headroom (spec "Device control", "Headroom"): what DEVICE_QUERY says the VM and a device can still be allocated,
checked at the edges: exactly at the limit, after a free, with emulated vectors in the share, across devices and
across VMs."""

from __future__ import annotations

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
from pvmsi.conformance.toolkit_devices import MSIX_CAP
from pvmsi.spec.constants import KindMask, MsgKind, Status
from pvmsi.spec.iut import VmKnobs

requirement = pytest.mark.requirement

#: Where emulated vectors take entries of the VM's share of one shared remapping table (VT-d; spec "Quotas").
SHARED_TABLE = pytest.mark.platforms("vtd")


def _avail(session: Session, dev: object = MLX5, **kw: object) -> tuple[int, int]:
    info = session.device_info(dev, **kw)  # type: ignore[arg-type]
    return int(info.messages_available), int(info.vm_messages_available)


@requirement("HV-HEADROOM-001")
def test_headroom_follows_allocations_across_devices(session: Session) -> None:
    """A fresh VM has its whole quota; each vector any of its devices takes lowers the VM's headroom, the
    device's own headroom is its quota less what it holds, and a free gives the vectors back."""
    session.negotiated()
    quota = session.info().max_messages_per_vm
    dev, vm0 = _avail(session)
    info = session.device_info(MLX5)
    check(vm0 == quota, "HV-HEADROOM-001", f"vm_messages_available = max_messages_per_vm ({quota})", str(vm0))
    check(dev == min(info.message_quota, vm0), "HV-HEADROOM-001", "messages_available = min(quota, VM's)", str(dev))
    session.claimed(MLX5, int(KindMask.MSIX))
    held = session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2])
    dev, vm = _avail(session)
    check(vm == vm0 - 3, "HV-HEADROOM-001", f"3 vectors fewer for the VM: {vm0 - 3}", str(vm))
    check(dev == min(info.message_quota - 3, vm), "HV-HEADROOM-001", "the device holds 3", str(dev))
    other, vm_seen = _avail(session, MSI_DEV)
    check(vm_seen == vm0 - 3, "HV-HEADROOM-001", "another device sees the VM's 3 vectors gone", str(vm_seen))
    check(other == min(session.device_info(MSI_DEV).message_quota, vm_seen), "HV-HEADROOM-001", "its own", str(other))
    b = session.free(MLX5, [r.handle for r in held])
    check(b.status == Status.SUCCESS, "HV-FREE-002", "MSG_FREE -> SUCCESS", status_name(b.status))
    _dev, vm = _avail(session)
    check(vm >= vm0 - 3, "HV-HEADROOM-001", "a free never lowers the headroom", str(vm))
    again = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, s) for s in (0, 1, 2)])
    check(
        again.status == Status.SUCCESS, "HV-HEADROOM-002", "the freed slots allocate again", status_name(again.status)
    )


@requirement("HV-HEADROOM-001")
def test_headroom_is_per_vm(session: Session) -> None:
    """What one VM allocates does not change another VM's headroom."""
    vm_a, vm_b = session.new_vm(DEFAULT_DEVICES), session.new_vm(DEFAULT_DEVICES)
    for vm in (vm_a, vm_b):
        session.negotiated(vm=vm)
    _d, before = _avail(session, vm=vm_b)
    session.claimed(MLX5, int(KindMask.MSIX), vm=vm_a)
    session.allocated(MLX5, MsgKind.MSIX, list(range(8)), vm=vm_a)
    _d, after = _avail(session, vm=vm_b)
    check(after == before, "HV-HEADROOM-001", f"VM B's headroom stays {before}", str(after))


@requirement("HV-HEADROOM-001", "HV-HEADROOM-002")
@SHARED_TABLE
def test_headroom_counts_the_share(session: Session) -> None:
    """With a share of 8 remapping entries and 2 vectors emulated for another device, the headroom is 6, and
    exactly 6 allocate."""
    vm = session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=8))
    session.use(vm)
    session.negotiated()
    for slot in (0, 1):  # two MSI-X vectors of IDXD through emulation take two entries of the share
        session.program(IDXD, MsgKind.MSIX, slot, 0xFEE00000, 0x60 + slot)
    session.enable(IDXD, MsgKind.MSIX)
    dev, vm_left = _avail(session)
    check(vm_left == 6, "HV-HEADROOM-001", "vm_messages_available = 8 - 2 emulated = 6", str(vm_left))
    check(dev == 6, "HV-HEADROOM-001", "messages_available = 6", str(dev))
    session.claimed(MLX5, int(KindMask.MSIX))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, s) for s in range(dev)])
    check(b.status == Status.SUCCESS, "HV-HEADROOM-002", f"{dev} allocations succeed", status_name(b.status))
    check(_avail(session) == (0, 0), "HV-HEADROOM-001", "nothing left", str(_avail(session)))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, dev)])
    check(b.status == Status.NO_RESOURCES, "HV-HEADROOM-002", "one more -> NO_RESOURCES", status_name(b.status))


@requirement("HV-HEADROOM-002")
def test_headroom_edge(session: Session) -> None:
    """With a share of 6 entries, a VM allocates exactly what messages_available says, over two devices, and
    then one more fails with NO_RESOURCES."""
    vm = session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=6))
    session.use(vm)
    session.ready()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    first = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, s) for s in range(4)])
    check(first.status == Status.SUCCESS, "HV-HEADROOM-002", "4 of 6 allocate", status_name(first.status))
    dev, vm_left = _avail(session, MSI_DEV)
    check(dev == vm_left == 2, "HV-HEADROOM-002", "2 left for MSI_DEV", f"{dev}, VM {vm_left}")
    b = session.alloc(MSI_DEV, [alloc_entry(MsgKind.MSI, 0)])
    check(b.status == Status.SUCCESS, "HV-HEADROOM-002", "MSI_DEV's message allocates", status_name(b.status))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 4)])
    check(b.status == Status.SUCCESS, "HV-HEADROOM-002", "the last one allocates on MLX5", status_name(b.status))
    dev, vm_left = _avail(session)
    check(dev == 0, "HV-HEADROOM-002", "messages_available 0", str(dev))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 5)])
    check(b.status == Status.NO_RESOURCES, "HV-HEADROOM-002", "one more -> NO_RESOURCES", status_name(b.status))


@requirement("HV-SEC-007", "HV-HEADROOM-001")
@SHARED_TABLE
@pytest.mark.parametrize("emulated", [1, 3])
def test_a_full_share_charges_nothing_for_the_entry_it_refuses(session: Session, emulated: int) -> None:
    """With a share of 8 entries, ``emulated`` of them taken by emulated MSI-X vectors of another device, the VM's
    messages fill the rest; the next entry fails with NO_RESOURCES because the share (not the quota) is full, and
    it is charged nothing: messages_allocated and both headrooms stay as they were; once slot 0 is freed, a batch
    of two (slot 0 again, whose entries the platform may keep for it, HV-QUOTA-004, then a new slot) completes
    exactly one entry."""
    session.use(session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=8)))
    session.negotiated()
    for slot in range(emulated):
        session.program(IDXD, MsgKind.MSIX, slot, 0xFEE00000, 0x60 + slot)
    session.enable(IDXD, MsgKind.MSIX)
    session.claimed(MLX5, int(KindMask.MSIX))
    room = 8 - emulated
    first = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, s) for s in range(room)])
    check(first.status == Status.SUCCESS, "HV-HEADROOM-002", f"{room} allocations succeed", status_name(first.status))

    def held() -> tuple[int, int, int]:
        info = session.device_info(MLX5)
        return int(info.messages_allocated), int(info.messages_available), int(info.vm_messages_available)

    for attempt in (1, 2):  # a second refusal must not charge anything either
        b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, room + attempt)])
        check(b.status == Status.NO_RESOURCES, "HV-SEC-007", "the share is full -> NO_RESOURCES", status_name(b.status))
        check(held() == (room, 0, 0), "HV-SEC-007", f"refusal {attempt}: still {room} held, nothing left", str(held()))
    freed = session.free(MLX5, [first.results[0].handle])
    check(freed.status == Status.SUCCESS, "HV-FREE-002", "MSG_FREE -> SUCCESS", status_name(freed.status))
    check(held()[0] == room - 1, "HV-FREE-002", f"{room - 1} held", str(held()))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0), alloc_entry(MsgKind.MSIX, room + 3)])
    check(
        b.status == Status.NO_RESOURCES and b.header is not None and b.header.completed == 1,
        "HV-SEC-007",
        "exactly one more allocates, then NO_RESOURCES",
        f"{status_name(b.status)}, {b.header}",
    )
    check(held() == (room, 0, 0), "HV-SEC-007", f"{room} held again, nothing left", str(held()))


@requirement("HV-QUOTA-004", "HV-HEADROOM-001")
@SHARED_TABLE
def test_a_freed_reservation_stays_charged(session: Session) -> None:
    """With a share of 4 entries, 4 reservations never activated and then freed keep their entries, charged to
    the share: headroom 0 and a fifth slot refused; and a freed slot reserves again."""
    session.use(session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=4)))
    session.ready(MLX5, int(KindMask.MSIX))
    b = session.reserve(MLX5, [{"kind": MsgKind.MSIX, "vector_count": 1, "slot": s} for s in range(4)])
    check(b.status == Status.SUCCESS, "HV-HEADROOM-002", "4 reservations in a share of 4", status_name(b.status))
    b = session.free(MLX5, [r.handle for r in b.results])
    check(b.status == Status.SUCCESS, "HV-FREE-001", "MSG_FREE of the 4 -> SUCCESS", status_name(b.status))
    check(
        _avail(session) == (0, 0),
        "HV-QUOTA-004",
        "the freed reservations' entries still charged: 0, 0",
        str(_avail(session)),
    )
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 4)])
    check(
        b.status == Status.NO_RESOURCES, "HV-QUOTA-004", "slot 4: no entry free -> NO_RESOURCES", status_name(b.status)
    )
    b = session.reserve(MLX5, [{"kind": MsgKind.MSIX, "vector_count": 1, "slot": 0}])
    check(b.status == Status.SUCCESS, "HV-QUOTA-004", "slot 0 gets its kept entry again", status_name(b.status))


@requirement("HV-QUOTA-002", "HV-HEADROOM-001")
@SHARED_TABLE
def test_emulated_vectors_hold_entries_while_live(session: Session) -> None:
    """With a share of 8: 3 emulated MSI-X vectors of IDXD, written and enabled, hold 3 entries (headroom 5);
    MSI-X Enable cleared again, they hold none (headroom 8). When between the write and the enable an entry is
    taken is the hypervisor's, so the headroom is not checked before the enable."""
    session.use(session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=8)))
    session.negotiated()
    for slot in range(3):
        session.program(IDXD, MsgKind.MSIX, slot, 0xFEE00000 | 1 << 12, 0x60 + slot)
    session.enable(IDXD, MsgKind.MSIX)
    _dev, vm_left = _avail(session)
    check(vm_left == 5, "HV-QUOTA-002", "3 live emulated vectors: vm_messages_available 8 - 3 = 5", str(vm_left))
    session.config_write(IDXD, MSIX_CAP + 2, 2, 0)  # MSI-X Enable clear: emulated again, nothing live
    _dev, vm_left = _avail(session)
    check(vm_left == 8, "HV-QUOTA-002", "MSI-X disabled: no emulated vector holds an entry (8)", str(vm_left))
