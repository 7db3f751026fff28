"""MSG_ALLOC, MSG_ACTIVATE, MSG_FREE and end-to-end delivery (spec "Allocate, retarget and free")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import (
    IDXD,
    MLX5,
    MSI_DEV,
    PROFILE_SIZES,
    Session,
    alloc_entry,
    check,
    status_name,
)
from pvmsi.spec.constants import ActivateFlag, FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import DeviceProfile, FireOutcome
from pvmsi.spec.platforms import arch_target, parse_fields, platform

requirement = pytest.mark.requirement
option = pytest.mark.option


def _delivered(session: Session, dev: object, kind: MsgKind, index: int, vcpu: int, vector: int, rid: str) -> None:
    fired = session.fire(dev, kind, index)  # type: ignore[arg-type]
    check(
        fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (vcpu, vector),
        rid,
        f"delivered to vcpu {vcpu} vector {vector:#x}",
        f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
    )
    got = session.collect(session.vm)
    check(got == [(vcpu, vector)], rid, f"exactly [({vcpu}, {vector:#x})] injected", str(got))


@requirement("HV-ALLOC-001")
def test_message_calls_need_a_claimed_device(session: Session) -> None:
    """MSG_ALLOC, MSG_ACTIVATE and MSG_FREE on an unclaimed device are WRONG_STATE and write nothing."""
    session.negotiated()
    for fn, entry in (
        (FunctionNumber.MSG_ALLOC, alloc_entry(MsgKind.MSIX, 0)),
        (FunctionNumber.MSG_ACTIVATE, {"handle": 1, "vcpu": 0, "vector": 0x40, "flags": 0}),
        (FunctionNumber.MSG_FREE, {"handle": 1}),
    ):
        b = session.batch(fn, MLX5, [entry])
        check(
            b.status == Status.WRONG_STATE,
            "HV-ALLOC-001",
            f"{fn.name} on an unclaimed device -> WRONG_STATE",
            status_name(b.status),
        )
        check(b.header is None, "HV-ALLOC-001", "no entry processed, nothing written", str(b.header))


@requirement("HV-ALLOC-002")
@option("ims")
def test_kind_must_be_claimed(session: Session) -> None:
    """Allocating an IMS message on a device claimed for MSI-X only is NOT_PERMITTED."""
    session.ready(MLX5, int(KindMask.MSIX))
    b = session.alloc(MLX5, [alloc_entry(MsgKind.IMS, 0)])
    check(b.status == Status.NOT_PERMITTED, "HV-ALLOC-002", "IMS not claimed -> NOT_PERMITTED", status_name(b.status))


@requirement("HV-ALLOC-003")
@option("msi")
def test_vector_count_rules(session: Session) -> None:
    """An MSI-X entry needs 1 vector and an MSI entry a power of two up to 32, else INVALID_PARAMETER."""
    session.ready(MLX5, int(KindMask.MSIX))
    session.claimed(MSI_DEV, int(KindMask.MSI))
    for dev, entry, what in (
        (MLX5, alloc_entry(MsgKind.MSIX, 0, count=2), "MSI-X with 2 vectors"),
        (MLX5, alloc_entry(MsgKind.MSIX, 0, count=0), "MSI-X with 0 vectors"),
        (MSI_DEV, alloc_entry(MsgKind.MSI, 0, count=3), "MSI with 3 vectors"),
        (MSI_DEV, alloc_entry(MsgKind.MSI, 0, count=0), "MSI with 0 vectors"),
        (MSI_DEV, alloc_entry(MsgKind.MSI, 0, count=64), "MSI with 64 vectors"),
    ):
        b = session.alloc(dev, [entry])
        check(
            b.status == Status.INVALID_PARAMETER, "HV-ALLOC-003", f"{what} -> INVALID_PARAMETER", status_name(b.status)
        )


@requirement("HV-ALLOC-004", "HV-ALLOC-005")
@option("msi", "ims")
def test_slot_ranges(session: Session) -> None:
    """An MSI-X slot out of range, or MSI slot 1, is INVALID_PARAMETER; the last MSI-X slot is fine. An IMS slot is an
    opaque tag: beyond the device's IMS size, even 0xFFFFFFFF, it is accepted, and unique per device."""
    session.ready(MLX5, int(KindMask.MSIX | KindMask.IMS))
    session.claimed(MSI_DEV, int(KindMask.MSI))
    _msi, msix, ims, _ = PROFILE_SIZES[DeviceProfile.MLX5]
    for tag in (ims, 0xFFFF_FFFF):
        b = session.alloc(MLX5, [alloc_entry(MsgKind.IMS, tag)])
        check(b.status == Status.SUCCESS, "HV-ALLOC-004", f"IMS tag {tag:#x} accepted", status_name(b.status))
        b = session.alloc(MLX5, [alloc_entry(MsgKind.IMS, tag)])
        check(b.status == Status.WRONG_STATE, "HV-ALLOC-005", f"IMS tag {tag:#x} again", status_name(b.status))
    for dev, entry, what in (
        (MLX5, alloc_entry(MsgKind.MSIX, msix), f"MSI-X slot {msix}"),
        (MSI_DEV, alloc_entry(MsgKind.MSI, 1), "MSI slot 1"),
    ):
        b = session.alloc(dev, [entry])
        check(
            b.status == Status.INVALID_PARAMETER, "HV-ALLOC-004", f"{what} -> INVALID_PARAMETER", status_name(b.status)
        )
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, msix - 1)])
    check(b.status == Status.SUCCESS, "HV-ALLOC-004", f"MSI-X slot {msix - 1} is fine", status_name(b.status))


@requirement("HV-ALLOC-005")
def test_slot_holds_one_message(session: Session) -> None:
    """Allocating a second message for an already allocated slot is WRONG_STATE."""
    session.ready()
    session.allocated(MLX5, MsgKind.MSIX, [7])
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 7)])
    check(b.status == Status.WRONG_STATE, "HV-ALLOC-005", "slot 7 twice -> WRONG_STATE", status_name(b.status))


@requirement("HV-ALLOC-006")
@option("msi")
def test_target_vcpu_and_vector_ranges(session: Session) -> None:
    """A missing vCPU, a vector outside the architecture's range (x86 32..255, arm64 LPIs from 8192, riscv64
    identities from 1; spec ARCH_TARGETS) or an MSI block past its end is INVALID_PARAMETER."""
    session.ready()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    target = arch_target(session.platform)
    low, high = target.vector_min, target.vector_max
    cases = [
        (MLX5, alloc_entry(MsgKind.MSIX, 0, vcpu=session.vcpus, vector=low), "a vCPU the VM does not have"),
        (MLX5, alloc_entry(MsgKind.MSIX, 0, vector=low - 1), f"vector {low - 1}"),
        (MLX5, alloc_entry(MsgKind.MSIX, 0, vector=high + 1), f"vector {high + 1}"),
        (MSI_DEV, alloc_entry(MsgKind.MSI, 0, vector=high - 7, count=16), f"an MSI block {high - 7}..{high + 8}"),
    ]
    for dev, entry, what in cases:
        b = session.alloc(dev, [entry], raw_vectors=True)
        check(
            b.status == Status.INVALID_PARAMETER, "HV-ALLOC-006", f"{what} -> INVALID_PARAMETER", status_name(b.status)
        )
    h = session.allocated(MLX5, MsgKind.MSIX, [0])[0].handle
    b = session.retarget(MLX5, [{"handle": h, "vcpu": session.vcpus, "vector": 0x50, "flags": 0}])
    check(
        b.status == Status.INVALID_PARAMETER,
        "HV-ALLOC-006",
        "retarget to a missing vCPU -> INVALID_PARAMETER",
        status_name(b.status),
    )


@requirement("HV-ALLOC-007", "HV-SEC-001", "HV-SEC-008")
def test_allocated_pair_delivers_to_its_target(session: Session) -> None:
    """Allocated pairs carry non-zero handles and interrupt-window addresses, and deliver to their target."""
    session.ready()
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2], vcpu=2, vector=0x60)
    check(all(r.handle for r in results), "HV-ALLOC-007", "non-zero handles", str([r.handle for r in results]))
    layout = platform(session.platform)
    for r in results:
        check(
            parse_fields(layout.address, r.address) is not None,
            "HV-SEC-008",
            f"an address in the {layout.message_format.name} layout, nothing more",
            hex(r.address),
        )
        check(
            parse_fields(layout.data, r.data) is not None,
            "HV-SEC-008",
            f"data in the {layout.message_format.name} layout (reserved bits zero)",
            hex(r.data),
        )
    for slot, r in enumerate(results):
        session.program(MLX5, MsgKind.MSIX, slot, r.address, r.data)
    session.enable(MLX5, MsgKind.MSIX)
    for slot in range(3):
        _delivered(session, MLX5, MsgKind.MSIX, slot, 2, 0x60 + slot, "HV-ALLOC-007")


@requirement("HV-ALLOC-008", "HV-ALLOC-009")
@option("msi")
def test_multi_message_msi_block(session: Session) -> None:
    """An 8-vector MSI block gets data with its low 3 bits zero, counts 8 vectors, and each one delivers."""
    session.negotiated()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    r = session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=3, vector=0x80, count=8)[0]
    check(r.data & 7 == 0, "HV-ALLOC-008", "data's low 3 bits zero", hex(r.data))
    check(session.device_info(MSI_DEV).messages_allocated == 8, "HV-ALLOC-009", "8 vectors counted", "other")
    session.live(MSI_DEV, MsgKind.MSI, 0, r, vectors=8)
    for i in range(8):
        _delivered(session, MSI_DEV, MsgKind.MSI, i, 3, 0x80 + i, "HV-ALLOC-008")


@requirement("HV-RETGT-001", "HV-SEC-003")
def test_retarget_needs_a_handle_held_for_the_device(session: Session) -> None:
    """Retargeting handle 0, a guessed handle or another device's handle is UNKNOWN_HANDLE."""
    session.ready()
    session.claimed(IDXD, int(KindMask.MSIX))
    mine = session.allocated(MLX5, MsgKind.MSIX, [0])[0].handle
    other_dev = session.allocated(IDXD, MsgKind.MSIX, [0])[0].handle
    for handle, what in ((0, "handle 0"), (mine ^ 0x5A5A, "a guessed handle"), (other_dev, "another device's")):
        b = session.retarget(MLX5, [{"handle": handle, "vcpu": 0, "vector": 0x41, "flags": 0}])
        check(b.status == Status.UNKNOWN_HANDLE, "HV-RETGT-001", f"{what} -> UNKNOWN_HANDLE", status_name(b.status))


@requirement("HV-RETGT-002", "HV-RETGT-003", "HV-RETGT-004")
def test_retarget_moves_delivery(session: Session) -> None:
    """Retarget moves delivery to the new vCPU and vector, with REWRITE set exactly when the pair changed."""
    session.ready()
    r = session.allocated(MLX5, MsgKind.MSIX, [4], vcpu=0, vector=0x44)[0]
    session.live(MLX5, MsgKind.MSIX, 4, r)
    _delivered(session, MLX5, MsgKind.MSIX, 4, 0, 0x44, "HV-ALLOC-007")
    b = session.retarget(MLX5, [{"handle": r.handle, "vcpu": 3, "vector": 0x99, "flags": 0}])
    check(b.status == Status.SUCCESS, "HV-RETGT-002", "SUCCESS", status_name(b.status))
    res = b.results[0]
    changed = (res.address, res.data) != (r.address, r.data)
    check(
        bool(res.flags & ActivateFlag.REWRITE) == changed,
        "HV-RETGT-003",
        f"REWRITE == pair changed ({changed})",
        hex(res.flags),
    )
    if changed:
        session.program(MLX5, MsgKind.MSIX, 4, res.address, res.data)
    _delivered(session, MLX5, MsgKind.MSIX, 4, 3, 0x99, "HV-RETGT-002")
    if not platform(session.platform).retarget_changes_pair:  # IMSIC: another hart is another address
        check(not changed, "HV-RETGT-004", "the pair kept (retarget in place)", "the device had to be rewritten")


@requirement("HV-FREE-001", "HV-SEC-003")
def test_free_is_the_owners_alone(session: Session) -> None:
    """Freeing another device's, a never-issued or an already freed handle is UNKNOWN_HANDLE."""
    session.ready()
    session.claimed(IDXD, int(KindMask.MSIX))
    h = session.allocated(MLX5, MsgKind.MSIX, [0])[0].handle
    other = session.allocated(IDXD, MsgKind.MSIX, [0])[0].handle
    for handle, what in ((other, "another device's handle"), (h + (1 << 32), "a handle never issued")):
        b = session.free(MLX5, [handle])
        check(b.status == Status.UNKNOWN_HANDLE, "HV-FREE-001", f"{what} -> UNKNOWN_HANDLE", status_name(b.status))
    check(session.free(MLX5, [h]).status == Status.SUCCESS, "HV-FREE-001", "the owner frees it", "failed")
    b = session.free(MLX5, [h])
    check(b.status == Status.UNKNOWN_HANDLE, "HV-FREE-001", "a second free -> UNKNOWN_HANDLE", status_name(b.status))


@requirement("HV-FREE-002")
def test_free_revokes_and_returns_quota(session: Session) -> None:
    """A freed message's pair is blocked, nothing is injected, and its vector is no longer counted."""
    session.ready()
    r = session.allocated(MLX5, MsgKind.MSIX, [9])[0]
    session.live(MLX5, MsgKind.MSIX, 9, r)
    _delivered(session, MLX5, MsgKind.MSIX, 9, 1, 0x40, "HV-ALLOC-007")
    check(session.free(MLX5, [r.handle]).status == Status.SUCCESS, "HV-FREE-002", "freed", "not freed")
    fired = session.fire(MLX5, MsgKind.MSIX, 9)
    check(fired.outcome == FireOutcome.BLOCKED, "HV-FREE-002", "the freed pair is blocked", fired.outcome.name)
    check(session.collect(session.vm) == [], "HV-FREE-002", "nothing injected", "an interrupt arrived")
    check(session.device_info(MLX5).messages_allocated == 0, "HV-FREE-002", "the vector returned", "still counted")
