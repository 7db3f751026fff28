"""Device identity, query, claim and release (spec "Device control")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import (
    ABSENT,
    IDXD,
    IDXD_SUB_SLOTS,
    MLX5,
    MSI_DEV,
    PROFILE_SIZES,
    Session,
    alloc_entry,
    check,
    status_name,
)
from pvmsi.conformance.toolkit_devices import MSIX_CAP, MSIX_ENABLE
from pvmsi.spec import harness_devices as hd
from pvmsi.spec.constants import DeviceFlag, FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import DeviceProfile, DeviceSpace, FireOutcome
from pvmsi.spec.iut import DeviceRef, DeviceSlot, VmKnobs

requirement = pytest.mark.requirement
option = pytest.mark.option


@requirement("HV-DEV-001")
def test_unknown_and_foreign_devices(session: Session) -> None:
    """Query, claim and release of an absent, another VM's or a wrong-segment device are UNKNOWN_DEVICE."""
    other = session.new_vm([DeviceSlot(DeviceProfile.MLX5, DeviceRef(0, 0, 0x40))])
    session.negotiated()
    for dev, what in (
        (ABSENT, "a BDF with no device"),
        (DeviceRef(0, 0, 0x40), "another VM's device"),
        (DeviceRef(1, 0, 0x08), "the right devfn on another segment"),
    ):
        for out in (session.query(dev), session.claim(dev, int(KindMask.MSIX)), session.release(dev)):
            check(
                out.status == Status.UNKNOWN_DEVICE, "HV-DEV-001", f"{what} -> UNKNOWN_DEVICE", status_name(out.status)
            )
    session.negotiated(vm=other)
    check(
        session.query(DeviceRef(0, 0, 0x40), vm=other).status == Status.SUCCESS,
        "HV-DEV-001",
        "the owner VM sees it",
        "it does not",
    )


@requirement("HV-DEV-002")
def test_subdevice_id_encoding(session: Session) -> None:
    """A subdevice_id without the sub-device flag, or with bits above 19 set, is INVALID_PARAMETER."""
    session.negotiated()
    from pvmsi.conformance.toolkit import size
    from pvmsi.spec.codec import encode
    from pvmsi.spec.formats import DEVICE_ID, DEVICE_INFO

    for flags, sub, what in ((0, 1, "subdevice_id without the flag"), (1, 1 << 20, "bits above 19")):
        raw = encode(DEVICE_ID, {**IDXD.wire(), "flags": flags, "subdevice_id": sub})
        out = session.call(FunctionNumber.DEVICE_QUERY, raw, size(DEVICE_INFO))
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-DEV-002",
            f"{what} -> INVALID_PARAMETER",
            status_name(out.status),
        )


@requirement("HV-DEV-003")
@option("subdevice")
def test_unknown_subdevice(session: Session) -> None:
    """A PASID the device does not have, or any PASID of a device without sub-devices, is UNKNOWN_DEVICE."""
    session.negotiated()
    for pasid in (0, PROFILE_SIZES[DeviceProfile.IDXD][3] + 1, 0xFFFFF):
        out = session.query(IDXD.with_pasid(pasid))
        check(
            out.status == Status.UNKNOWN_DEVICE,
            "HV-DEV-003",
            f"sub-device {pasid} -> UNKNOWN_DEVICE",
            status_name(out.status),
        )
    out = session.query(MLX5.with_pasid(1))
    check(
        out.status == Status.UNKNOWN_DEVICE,
        "HV-DEV-003",
        "a device without sub-devices -> UNKNOWN_DEVICE",
        status_name(out.status),
    )


@requirement("HV-DEV-004")
def test_query_reports_capabilities_and_state(session: Session) -> None:
    """DEVICE_QUERY reports each device's slot counts, kinds and identity, then its claim and allocations."""
    session.negotiated()
    for dev, profile in ((MLX5, DeviceProfile.MLX5), (MSI_DEV, DeviceProfile.PLAIN_MSI), (IDXD, DeviceProfile.IDXD)):
        info = session.device_info(dev)
        msi, msix, ims, _subs = PROFILE_SIZES[profile]
        want = (msi, msix, ims)
        got = (info.msi_max_vectors, info.msix_table_size, info.ims_slots)
        check(got == want, "HV-DEV-004", f"{profile.name} (msi, msix, ims) = {want}", str(got))
        kinds = (KindMask.MSI if msi else 0) | (KindMask.MSIX if msix else 0) | (KindMask.IMS if ims else 0)
        check(info.kinds == kinds, "HV-DEV-004", f"kinds {int(kinds):#x}", hex(info.kinds))
        check(
            info.claimed_kinds == 0 and info.messages_allocated == 0,
            "HV-DEV-004",
            "nothing claimed yet",
            f"claimed {info.claimed_kinds:#x}, allocated {info.messages_allocated}",
        )
        check(
            dict(info.device) == {**dict(info.device), **dev.wire()},
            "HV-DEV-004",
            "the identity echoed",
            str(dict(info.device)),
        )
    session.claimed(MLX5, int(KindMask.MSIX))
    session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2])
    info = session.device_info(MLX5)
    check(
        info.claimed_kinds == KindMask.MSIX and info.messages_allocated == 3 and info.message_quota >= 3,
        "HV-DEV-004",
        "claimed MSIX, 3 allocated, quota >= 3",
        f"claimed {info.claimed_kinds:#x}, allocated {info.messages_allocated}, quota {info.message_quota}",
    )
    check(bool(info.flags & DeviceFlag.CLAIMED), "HV-DEV-004", "PVMSI_DEV_CLAIMED", hex(info.flags))


@requirement("HV-DEV-005", "HV-SEC-002")
def test_isolated_means_source_validated(session: Session) -> None:
    """On an ISOLATED device, its allocated pair written into another device is blocked when fired."""
    session.negotiated()
    info = session.device_info(MLX5)
    if not info.flags & DeviceFlag.ISOLATED:
        pytest.skip("unsupported: the device does not claim PVMSI_DEV_ISOLATED")
    session.claimed(MLX5, int(KindMask.MSIX))
    session.claimed(IDXD, int(KindMask.MSIX))
    r = session.allocated(MLX5, MsgKind.MSIX, [0])[0]
    session.live(IDXD, MsgKind.MSIX, 0, r)  # the pair written into another device
    fired = session.fire(IDXD, MsgKind.MSIX, 0)
    check(
        fired.outcome == FireOutcome.BLOCKED,
        "HV-DEV-005",
        "another device's write of the pair is blocked",
        fired.outcome.name,
    )


@requirement("HV-DEV-006")
def test_claim_of_empty_or_unsupported_kinds(session: Session) -> None:
    """A claim of no kinds, or of a kind the device lacks, is INVALID_PARAMETER."""
    session.negotiated()
    for dev, kinds, what in (
        (MLX5, 0, "no kinds"),
        (MLX5, int(KindMask.MSI), "MSI on a device without MSI"),
        (MSI_DEV, int(KindMask.MSIX), "MSI-X on a device without MSI-X"),
        (MLX5, int(KindMask.MSI | KindMask.MSIX), "MSI and MSI-X on a device without MSI"),
    ):
        out = session.claim(dev, kinds)
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-DEV-006",
            f"{what} -> INVALID_PARAMETER",
            status_name(out.status),
        )


@requirement("HV-DEV-007")
def test_claim_twice_or_while_emulation_enabled(session: Session) -> None:
    """A second claim, or a claim of a kind enabled under emulation, is WRONG_STATE until it is disabled."""
    session.negotiated()
    session.claimed(MLX5, int(KindMask.MSIX))
    out = session.claim(MLX5, int(KindMask.MSIX))
    check(out.status == Status.WRONG_STATE, "HV-DEV-007", "second claim -> WRONG_STATE", status_name(out.status))
    session.config_write(IDXD, MSIX_CAP + hd.MSIX_CONTROL, 2, MSIX_ENABLE)  # MSI-X enabled through emulation
    out = session.claim(IDXD, int(KindMask.MSIX))
    check(
        out.status == Status.WRONG_STATE,
        "HV-DEV-007",
        "claim of a kind enabled under emulation -> WRONG_STATE",
        status_name(out.status),
    )
    session.config_write(IDXD, MSIX_CAP + hd.MSIX_CONTROL, 2, 0)
    check(
        session.claim(IDXD, int(KindMask.MSIX)).status == Status.SUCCESS,
        "HV-DEV-007",
        "claim succeeds once disabled",
        "it failed",
    )


@requirement("HV-DEV-008")
def test_claimed_device_limit(session: Session) -> None:
    """With max_claimed_devices = 2, a claim of a third device is refused with NO_RESOURCES."""
    devices = [DeviceSlot(DeviceProfile.MLX5, DeviceRef(0, 1, i << 3)) for i in range(3)]
    vm = session.new_vm(devices, knobs=VmKnobs(max_claimed_devices=2))
    session.use(vm)
    session.negotiated()
    check(session.info().max_claimed_devices == 2, "HV-DEV-008", "max_claimed_devices = 2", "other")
    for d in devices[:2]:
        session.claimed(d.device, int(KindMask.MSIX))
    out = session.claim(devices[2].device, int(KindMask.MSIX))
    check(out.status == Status.NO_RESOURCES, "HV-DEV-008", "third claim -> NO_RESOURCES", status_name(out.status))


@requirement("HV-DEV-009")
def test_claim_stops_trapping(session: Session) -> None:
    """MSI-X table writes exit while the device is emulated and no longer once it is claimed (Message Control,
    in configuration space, still traps: HV-EMU-001)."""
    session.negotiated()
    before = session.program(MLX5, MsgKind.MSIX, 5, 0xFEE00000, 0x30)
    check(before > 0, "HV-DEV-009", "MSI-X table writes exit while emulated", f"{before} exits")
    session.claimed(MLX5, int(KindMask.MSIX))
    exits0 = session.iut.counters(session.vm).msix_exits
    r = session.allocated(MLX5, MsgKind.MSIX, [5])[0]
    after = session.program(MLX5, MsgKind.MSIX, 5, r.address, r.data)
    check(after == 0, "HV-DEV-009", "no exit once claimed", f"{after} exits")
    check(
        session.iut.counters(session.vm).msix_exits == exits0, "HV-DEV-009", "MSI-X exit counter unchanged", "it grew"
    )


@requirement("HV-DEV-009", "HV-QUOTA-002")
def test_claim_leaves_no_pair_of_the_emulator(session: Session) -> None:
    """MSI-X used through emulation (entries 0..2 live), then disabled and claimed: the table holds no pair of the
    emulator's, so an entry the guest unmasks without writing a pair of its own sends nothing (NOT_PROGRAMMED:
    address zero), whether the emulator had programmed it (0..2) or not (3), and nothing reaches the IOMMU."""
    session.negotiated()
    for slot in range(3):
        session.program(MLX5, MsgKind.MSIX, slot, 0xFEE00000 | 1 << 12, 0x40 + slot)
    session.enable(MLX5, MsgKind.MSIX)
    fired = session.fire(MLX5, MsgKind.MSIX, 1)
    check(
        (fired.outcome, fired.vcpu, fired.vector) == (FireOutcome.DELIVERED, 1, 0x41 - session.vector_shift),
        "HV-DEV-009",
        "emulated entry 1 delivers to vCPU 1 vector 0x41 before the claim",
        f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
    )
    session.collect(session.vm)
    session.config_write(MLX5, MSIX_CAP + 2, 2, 0)  # the guest disables MSI-X (HV-DEV-006), then claims it
    session.claimed(MLX5, int(KindMask.MSIX))
    session.enable(MLX5, MsgKind.MSIX)
    blocked = session.iut.counters(session.vm).blocked
    for slot in range(4):
        session.iut.device_write(session.vm, MLX5, DeviceSpace.MSIX_TABLE, slot * hd.SLOT_SIZE + hd.SLOT_CONTROL, 4, 0)
        fired = session.fire(MLX5, MsgKind.MSIX, slot)
        check(
            fired.outcome == FireOutcome.NOT_PROGRAMMED,
            "HV-DEV-009",
            f"claimed entry {slot} unmasked, no pair written: NOT_PROGRAMMED (harness: fire outcomes, address zero)",
            f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
        )
    after = session.iut.counters(session.vm).blocked
    check(after == blocked, "HV-DEV-009", "no write of an emulator's pair reached the IOMMU", f"{after - blocked}")
    check(session.collect(session.vm) == [], "HV-DEV-009", "nothing delivered", "an interrupt was injected")


@requirement("HV-DEV-010")
def test_release_of_unclaimed_device(session: Session) -> None:
    """DEVICE_RELEASE of a device that is not claimed is WRONG_STATE."""
    session.negotiated()
    out = session.release(MLX5)
    check(out.status == Status.WRONG_STATE, "HV-DEV-010", "WRONG_STATE", status_name(out.status))


@requirement("HV-DEV-011")
def test_release_frees_and_resumes_emulation(session: Session) -> None:
    """Release frees every message, stale pairs stop delivering, and MSI-X table writes trap again."""
    session.negotiated()
    session.claimed(MLX5, int(KindMask.MSIX))
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2])
    session.live(MLX5, MsgKind.MSIX, 0, results[0])
    check(
        session.fire(MLX5, MsgKind.MSIX, 0).outcome == FireOutcome.DELIVERED,
        "HV-ALLOC-007",
        "delivered",
        "not delivered",
    )
    session.collect(session.vm)
    out = session.release(MLX5)
    check(
        out.status == Status.SUCCESS and out.value == 3,
        "HV-DEV-011",
        "SUCCESS, 3 vectors freed",
        f"{status_name(out.status)}, {out.value}",
    )
    fired = session.fire(MLX5, MsgKind.MSIX, 0)
    check(fired.outcome != FireOutcome.DELIVERED, "HV-DEV-011", "the stale pair no longer delivers", fired.outcome.name)
    exits = session.program(MLX5, MsgKind.MSIX, 1, 0xFEE00000, 0x31)
    check(exits > 0, "HV-DEV-011", "MSI-X table writes exit again", f"{exits} exits")
    check(session.device_info(MLX5).messages_allocated == 0, "HV-DEV-011", "nothing allocated", "messages remain")


@requirement("HV-DEV-012")
@option("subdevice", "ims")
def test_subdevices_are_devices_of_their_own(session: Session) -> None:
    """Each sub-device is claimed and allocated apart from its parent and from the other sub-devices."""
    session.negotiated()
    sub1, sub2 = IDXD.with_pasid(1), IDXD.with_pasid(2)
    session.claimed(sub1, int(KindMask.IMS))
    check(session.device_info(IDXD).claimed_kinds == 0, "HV-DEV-012", "the parent stays unclaimed", "claimed")
    session.claimed(IDXD, int(KindMask.MSIX))
    session.claimed(sub2, int(KindMask.IMS))
    session.allocated(sub1, MsgKind.IMS, [0, 1])
    info1, info2 = session.device_info(sub1), session.device_info(sub2)
    check(info1.ims_slots == IDXD_SUB_SLOTS, "HV-DEV-012", f"{IDXD_SUB_SLOTS} IMS slots", str(info1.ims_slots))
    check(
        (info1.messages_allocated, info2.messages_allocated) == (2, 0),
        "HV-DEV-012",
        "allocations per sub-device",
        f"{info1.messages_allocated}, {info2.messages_allocated}",
    )
    b = session.alloc(sub2, [alloc_entry(MsgKind.IMS, 0)])
    check(
        b.status == Status.SUCCESS,
        "HV-DEV-012",
        "the same slot number is free in another sub-device",
        status_name(b.status),
    )
