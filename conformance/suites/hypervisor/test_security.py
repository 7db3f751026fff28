"""Isolation, ownership, quotas and leaks (spec "Security considerations")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import (
    DEFAULT_DEVICES,
    IDXD,
    MLX5,
    PAGE_IN_GPA,
    PAGE_OUT_GPA,
    Session,
    alloc_entry,
    check,
    encode,
    status_name,
)
from pvmsi.spec.constants import DeviceFlag, FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.formats import ALLOC_ENTRY, DEVICE_INFO
from pvmsi.spec.harness_constants import DeviceProfile, DeviceSpace, FireOutcome
from pvmsi.spec.iut import DeviceRef, DeviceSlot, VmKnobs

requirement = pytest.mark.requirement
option = pytest.mark.option


@requirement("HV-SEC-001", "HV-SEC-002")
def test_a_pair_replayed_from_another_vm_is_blocked(session: Session) -> None:
    """A pair allocated in one VM and written into another VM's device is blocked and delivered in neither."""
    vm_a = session.vm
    vm_b = session.new_vm(DEFAULT_DEVICES)
    session.ready()
    session.ready(vm=vm_b)
    r = session.allocated(MLX5, MsgKind.MSIX, [0], vcpu=1, vector=0x70)[0]
    session.live(MLX5, MsgKind.MSIX, 0, r, vm=vm_b)  # VM B writes VM A's pair into its own device
    fired = session.fire(MLX5, MsgKind.MSIX, 0, vm=vm_b)
    check(fired.outcome == FireOutcome.BLOCKED, "HV-SEC-001", "blocked", fired.outcome.name)
    got_a, got_b = session.collect(vm_a), session.collect(vm_b)
    check(got_a == [] and got_b == [], "HV-SEC-001", "nothing delivered in either VM", f"A {got_a}, B {got_b}")
    check(session.iut.counters(vm_b).blocked >= 1, "HV-SEC-001", "counted as blocked", "not counted")


@requirement("HV-SEC-002", "HV-SEC-010")
@option("subdevice", "ims")
def test_subdevices_share_their_function_s_source(session: Session) -> None:
    """Source validation is by requester id: a sub-device's pair written by a sibling sub-device (same requester
    id, another PASID) reaches at most this VM, and written by another device of the VM it is blocked."""
    session.negotiated()
    sub, sibling = IDXD.with_pasid(1), IDXD.with_pasid(2)
    session.claimed(sub, int(KindMask.IMS))
    session.claimed(sibling, int(KindMask.IMS))
    session.claimed(MLX5, int(KindMask.IMS))
    for ref in (IDXD, sub, sibling):
        flags = session.device_info(ref).flags
        check(flags & DeviceFlag.SHARED_SOURCE, "HV-SEC-010", f"SHARED_SOURCE on {ref}", f"flags {flags:#x}")
    flags = session.device_info(MLX5).flags
    check(not flags & DeviceFlag.SHARED_SOURCE, "HV-SEC-010", "no SHARED_SOURCE on MLX5", f"flags {flags:#x}")
    vm_b = session.new_vm(DEFAULT_DEVICES)
    r = session.allocated(sub, MsgKind.IMS, [0], vcpu=0, vector=0x51)[0]
    session.program(sub, MsgKind.IMS, 0, r.address, r.data)
    fired = session.fire(sub, MsgKind.IMS, 0)
    check(
        fired.outcome == FireOutcome.DELIVERED and fired.vector == 0x51,
        "HV-SEC-002",
        "delivered from the sub-device",
        f"{fired.outcome.name} {fired.vector:#x}",
    )
    session.iut.collect(session.vm)
    session.program(sibling, MsgKind.IMS, 0, r.address, r.data)  # a sibling writes it, with its own PASID
    session.fire(sibling, MsgKind.IMS, 0)
    got_b = session.iut.collect(vm_b)
    check(got_b == [], "HV-SEC-010", "a sibling's write reaches no other VM", f"VM B got {got_b}")
    session.iut.collect(session.vm)
    session.program(MLX5, MsgKind.IMS, 0, r.address, r.data)  # another requester id of the same VM
    fired = session.fire(MLX5, MsgKind.IMS, 0)
    check(fired.outcome == FireOutcome.BLOCKED, "HV-SEC-002", "another requester id is blocked", fired.outcome.name)


#: An IDXD-like IMS entry's control word (dword 3): bit 0 mask, bit 3 PASID enable, bits 31:12 PASID.
IMS_PASID_ENABLE, IMS_PASID_SHIFT = 1 << 3, 12


@requirement("HV-SEC-001", "HV-SEC-010")
@option("subdevice", "ims")
def test_hostile_ims_entries_reach_no_other_vm(session: Session) -> None:
    """A guest that writes any PASID into its sub-device's IMS entry reaches at most itself; one that writes
    another VM's pair there (PASID enable set or not) is blocked, and the other VM sees nothing."""
    vm_a = session.vm
    session.negotiated()
    sub = IDXD.with_pasid(1)
    session.claimed(sub, int(KindMask.IMS))
    vm_b = session.new_vm(DEFAULT_DEVICES)
    session.use(vm_b)
    session.negotiated()
    session.claimed(sub, int(KindMask.IMS))
    theirs = session.allocated(sub, MsgKind.IMS, [0], vcpu=0, vector=0x66)[0]
    session.use(vm_a)
    mine = session.allocated(sub, MsgKind.IMS, [0], vcpu=0, vector=0x55)[0]
    for pasid in (None, 1, 2, 9, 0xFFFFF):  # none, its own, a sibling's, and ids that may be another VM's
        control = 0 if pasid is None else IMS_PASID_ENABLE | pasid << IMS_PASID_SHIFT
        for pair, foreign in (((mine.address, mine.data), False), ((theirs.address, theirs.data), True)):
            session.program(sub, MsgKind.IMS, 0, *pair, masked=True)
            session.iut.device_write(session.vm, sub, DeviceSpace.IMS, 12, 4, control)
            fired = session.fire(sub, MsgKind.IMS, 0)
            got_b = session.iut.collect(vm_b)
            check(got_b == [], "HV-SEC-001", f"nothing in VM B (PASID {pasid}, foreign {foreign})", f"{got_b}")
            got_a = session.collect(session.vm)
            if foreign:  # VT-d blocks it; AMD-Vi and the ITS read it in A's own device table, the IMSIC as an
                # address in A's own guest space: either way it can only reach VM A (nothing in VM B, checked above)
                check(
                    fired.outcome in (FireOutcome.BLOCKED, FireOutcome.DELIVERED),
                    "HV-SEC-001",
                    "VM B's pair blocked, or delivered in VM A itself",
                    f"{fired.outcome.name} {got_a}",
                )
            else:
                check(got_a == [(0, 0x55)], "HV-SEC-010", f"own pair with PASID {pasid} -> own VM", f"{got_a}")


@requirement("HV-SEC-011", "HV-DEV-003")
@option("subdevice")
def test_subdevice_ids_are_the_guests(session: Session) -> None:
    """Sub-device ids are the guest's PASIDs: in a second VM, ids 1 and 2 still name its own sub-devices (whatever
    host PASIDs they have), and an id it does not own is UNKNOWN_DEVICE."""
    session.negotiated()  # the first VM's devices exist first
    vm_b = session.new_vm(DEFAULT_DEVICES)
    session.use(vm_b)
    session.negotiated()
    for guest_pasid in (1, 2):
        out = session.query(IDXD.with_pasid(guest_pasid))
        check(
            out.status == Status.SUCCESS,
            "HV-SEC-011",
            f"guest sub-device id {guest_pasid} names a sub-device",
            status_name(out.status),
        )
        echoed = out.decode_out(DEVICE_INFO).device.subdevice_id
        check(echoed == guest_pasid, "HV-SEC-011", f"the guest's id {guest_pasid} echoed", f"{echoed}")
    out = session.query(IDXD.with_pasid(0xFFFFF))
    check(
        out.status == Status.UNKNOWN_DEVICE, "HV-SEC-011", "an id not owned -> UNKNOWN_DEVICE", status_name(out.status)
    )


@requirement("HV-SEC-003")
def test_another_vms_handle_is_unknown(session: Session) -> None:
    """A handle held by another VM is refused with UNKNOWN_HANDLE, the same answer as a never-issued one."""
    vm_b = session.new_vm(DEFAULT_DEVICES)
    session.ready()
    session.ready(vm=vm_b)
    h = session.allocated(MLX5, MsgKind.MSIX, [0])[0].handle
    never = session.free(MLX5, [h ^ (1 << 63)], vm=vm_b).status
    for b, what in (
        (session.retarget(MLX5, [{"handle": h, "vcpu": 0, "vector": 0x41, "flags": 0}], vm=vm_b), "retarget"),
        (session.free(MLX5, [h], vm=vm_b), "free"),
    ):
        check(
            b.status == Status.UNKNOWN_HANDLE,
            "HV-SEC-003",
            f"{what} of VM A's handle in VM B -> UNKNOWN_HANDLE",
            status_name(b.status),
        )
        check(b.status == never, "HV-SEC-003", "the same answer as a never-issued handle", status_name(b.status))
    check(session.device_info(MLX5).messages_allocated == 1, "HV-SEC-003", "VM A's message untouched", "freed")


@requirement("HV-SEC-004", "HV-SEC-005")
def test_handles_are_not_reissued_and_hard_to_guess(session: Session) -> None:
    """Handles are never reissued when the same slots are allocated again, and at least 32 bits vary."""
    session.ready()
    seen: list[int] = []
    for _ in range(4):
        results = session.allocated(MLX5, MsgKind.MSIX, list(range(16)))
        seen += [r.handle for r in results]
        session.free(MLX5, [r.handle for r in results])
    check(
        len(set(seen)) == len(seen),
        "HV-SEC-005",
        "64 distinct handles across re-allocation of the same slots",
        f"{len(seen) - len(set(seen))} reissued",
    )
    varying = 0
    for bit in range(64):
        values = {(h >> bit) & 1 for h in seen}
        varying += len(values) == 2
    check(varying >= 32, "HV-SEC-004", "at least 32 handle bits vary", f"{varying} bits vary")


@requirement("HV-SEC-006", "HV-ALLOC-009")
def test_device_quota(session: Session) -> None:
    """Allocations up to the device's message quota succeed, and one more is refused with NO_RESOURCES."""
    session.ready(MLX5, int(KindMask.MSIX | KindMask.IMS))
    info = session.device_info(MLX5)
    quota, max_batch = info.message_quota, session.batch_limit(FunctionNumber.MSG_ALLOC)
    slots = [(MsgKind.MSIX, s) for s in range(info.msix_table_size)] + [(MsgKind.IMS, s) for s in range(info.ims_slots)]
    if len(slots) <= quota:
        pytest.skip(f"unsupported: the device has {len(slots)} slots, within its quota of {quota}")
    done = 0
    while done < quota:
        chunk = slots[done : min(quota, done + max_batch)]
        b = session.alloc(MLX5, [alloc_entry(k, s) for k, s in chunk], in_gpa=PAGE_IN_GPA, out_gpa=PAGE_OUT_GPA)
        check(
            b.status == Status.SUCCESS,
            "HV-SEC-006",
            f"allocations within the quota ({done}/{quota})",
            status_name(b.status),
        )
        done += len(chunk)
    kind, slot = slots[quota]
    b = session.alloc(MLX5, [alloc_entry(kind, slot)])
    check(
        b.status == Status.NO_RESOURCES, "HV-SEC-006", "one more than the quota -> NO_RESOURCES", status_name(b.status)
    )


@requirement("HV-SEC-007")
def test_full_remapping_table(session: Session) -> None:
    """With 8 remapping entries, a ninth allocation is NO_RESOURCES and allocates nothing."""
    vm = session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(remap_entries=8))
    session.use(vm)
    session.ready()
    session.allocated(MLX5, MsgKind.MSIX, list(range(8)))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 8)])
    check(b.status == Status.NO_RESOURCES, "HV-SEC-007", "ninth entry -> NO_RESOURCES", status_name(b.status))
    check(session.device_info(MLX5).messages_allocated == 8, "HV-SEC-007", "nothing allocated for it", "other")


@requirement("HV-SEC-009")
def test_destroyed_vms_leave_nothing_behind(session: Session) -> None:
    """Destroying a VM frees its remapping entries, so 40 VMs of 2048 vectors each allocate in turn."""
    # 40 VMs of 2048 vectors each need 81,920 entries: more than a 65,536-entry table unless destroy frees them.
    # Every VM sends the same batches, as large as a page allows: encoded once.
    entries = [
        encode(ALLOC_ENTRY, alloc_entry(MsgKind.MSIX, s, vcpu=0, vector=session.wire_vector(0x40))) for s in range(2048)
    ]
    batches: list[list[bytes]] = []
    for i in range(40):
        vm = session.new_vm([DeviceSlot(DeviceProfile.MLX5, DeviceRef(0, 0, 0x08))], vcpus=1)
        session.ready(vm=vm)
        if not batches:
            size = session.batch_limit(FunctionNumber.MSG_ALLOC, vm=vm)
            batches = [entries[first : first + size] for first in range(0, 2048, size)]
        for chunk in batches:
            b = session.alloc(MLX5, chunk, vm=vm, in_gpa=PAGE_IN_GPA, out_gpa=PAGE_OUT_GPA)
            check(b.status == Status.SUCCESS, "HV-SEC-009", f"VM #{i}: allocation succeeds", status_name(b.status))
        session.iut.destroy_vm(vm)
        session.vms.remove(vm)
