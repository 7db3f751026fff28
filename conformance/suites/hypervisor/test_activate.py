"""Reserve, activate, deactivate; the locality hint; per-vector targets in a multi-message MSI block (spec "Reserve,
activate, deactivate and free", the message state machine; platform facts in "Message formats")."""

from __future__ import annotations

from typing import Any

import pytest

from pvmsi.conformance.toolkit import MLX5, MSI_DEV, Session, check, status_name
from pvmsi.spec.constants import ActivateEntryFlag, ActivateFlag, AllocFlag, DeliveryFlag, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import FireOutcome
from pvmsi.spec.platforms import platform

requirement = pytest.mark.requirement
BLOCK = int(ActivateEntryFlag.BLOCK)


def _fires(session: Session, dev: object, kind: MsgKind, index: int, want: tuple[int, int] | None, rid: str) -> None:
    """Vector ``index`` of the device's slot delivers exactly ``want`` (vcpu, vector), or nothing when None."""
    fired = session.fire(dev, kind, index)  # type: ignore[arg-type]
    got = session.collect(session.vm)
    if want is None:
        check(fired.outcome == FireOutcome.BLOCKED and got == [], rid, "blocked, nothing injected", str(got))
        return
    check(
        fired.outcome == FireOutcome.DELIVERED and got == [want],
        rid,
        f"exactly [({want[0]}, {want[1]:#x})] injected",
        f"{fired.outcome.name} {got}",
    )


def _reserve(session: Session, dev: object, kind: MsgKind, slot: int, count: int = 1, **extra: int) -> Any:
    b = session.reserve(dev, [{"kind": kind, "vector_count": count, "slot": slot, **extra}])  # type: ignore[arg-type]
    check(b.status == Status.SUCCESS, "HV-ACT-001", "MSG_ALLOC (reserve) -> SUCCESS", status_name(b.status))
    return b.results[0]


def _activate(
    session: Session,
    dev: object,
    handle: int,
    vcpu: int,
    vector: int,
    *,
    index: int = 0,
    block: bool = True,
    rid: str = "HV-RETGT-002",
    want: Status = Status.SUCCESS,
) -> Any:
    entry = {
        "handle": handle,
        "vcpu": vcpu,
        "vector": vector,
        "flags": 0,
        "entry_flags": BLOCK if block else 0,
        "index": index,
    }
    b = session.activate(dev, [entry])  # type: ignore[arg-type]
    check(b.status == want, rid, f"MSG_ACTIVATE -> {want.name}", status_name(b.status))
    return b.results[0]


@requirement("HV-ACT-001", "HV-RETGT-002", "HV-RETGT-003")
@pytest.mark.parametrize("kind", [MsgKind.MSIX, MsgKind.IMS], ids=["MSI-X", "IMS"])
def test_reserve_then_activate(session: Session, kind: MsgKind) -> None:
    """A reservation returns a handle and no pair and counts against the quota; activating it returns the pair with
    REWRITE set, and the pair then delivers to the target."""
    session.ready(kinds=int(KindMask.MSIX | KindMask.IMS))
    r = _reserve(session, MLX5, kind, 5)
    check(r.handle != 0, "HV-ACT-001", "a non-zero handle", "zero")
    check((r.address, r.data) == (0, 0), "HV-ACT-001", "address and data zero", f"{r.address:#x}/{r.data:#x}")
    check(session.device_info(MLX5).messages_allocated == 1, "HV-ACT-001", "1 vector counted", "other")
    a = _activate(session, MLX5, r.handle, 2, 0x52)
    check(bool(a.flags & ActivateFlag.REWRITE), "HV-RETGT-003", "REWRITE set (no pair was in force)", hex(a.flags))
    session.live(MLX5, kind, 5, a)
    _fires(session, MLX5, kind, 5, (2, 0x52), "HV-RETGT-002")


@requirement("HV-ACT-002")
def test_a_reservation_names_no_target(session: Session) -> None:
    """Without PVMSI_ALLOC_ACTIVATE vcpu, vector and flags must be zero; hint_vcpu only with the hint flag, and
    then a vCPU of the VM."""
    session.ready()
    hint = int(AllocFlag.LOCALITY_HINT)
    bad = [
        ({"vcpu": 1}, "vcpu without ACTIVATE"),
        ({"vector": 0x40}, "vector without ACTIVATE"),
        ({"flags": int(DeliveryFlag.POSTED)}, "flags without ACTIVATE"),
        ({"hint_vcpu": 1}, "hint_vcpu without the hint flag"),
        ({"alloc_flags": hint, "hint_vcpu": session.vcpus + 7}, "a hint naming no vCPU"),
    ]
    for slot, (extra, what) in enumerate(bad):
        b = session.reserve(MLX5, [{"kind": MsgKind.MSIX, "vector_count": 1, "slot": slot, **extra}], raw_vectors=True)
        check(b.status == Status.INVALID_PARAMETER, "HV-ACT-002", f"{what} -> INVALID_PARAMETER", status_name(b.status))
    r = _reserve(session, MLX5, MsgKind.MSIX, 9, alloc_flags=hint, hint_vcpu=session.vcpus - 1)
    check(r.handle != 0, "HV-ACT-002", "a valid hint is accepted", "no handle")


@requirement("HV-ACT-003")
def test_a_hint_binds_nothing(session: Session) -> None:
    """A message reserved with a hint for the last vCPU is activated on vCPU 0 and delivers there."""
    session.ready()
    r = _reserve(session, MLX5, MsgKind.MSIX, 3, alloc_flags=int(AllocFlag.LOCALITY_HINT), hint_vcpu=session.vcpus - 1)
    a = _activate(session, MLX5, r.handle, 0, 0x61, rid="HV-ACT-003")
    session.live(MLX5, MsgKind.MSIX, 3, a)
    _fires(session, MLX5, MsgKind.MSIX, 3, (0, 0x61), "HV-ACT-003")


@requirement("HV-ACT-005", "HV-RETGT-003")
def test_deactivate_stops_delivery_and_keeps_the_handle(session: Session) -> None:
    """Deactivated, the pair is blocked and nothing arrives; a second deactivation is NOT_ACTIVE, a handle not held
    UNKNOWN_HANDLE; activated again (REWRITE set) it delivers; the reserved message can be freed."""
    session.ready()
    r = session.allocated(MLX5, MsgKind.MSIX, [7], vcpu=1, vector=0x47)[0]
    session.live(MLX5, MsgKind.MSIX, 7, r)
    _fires(session, MLX5, MsgKind.MSIX, 7, (1, 0x47), "HV-ALLOC-007")
    b = session.deactivate(MLX5, [{"handle": r.handle}])
    check(b.status == Status.SUCCESS, "HV-ACT-005", "MSG_DEACTIVATE -> SUCCESS", status_name(b.status))
    _fires(session, MLX5, MsgKind.MSIX, 7, None, "HV-ACT-005")
    b = session.deactivate(MLX5, [{"handle": r.handle}])
    check(b.status == Status.NOT_ACTIVE, "HV-ACT-005", "again -> NOT_ACTIVE", status_name(b.status))
    b = session.deactivate(MLX5, [{"handle": r.handle ^ 0x5A5A}])
    check(b.status == Status.UNKNOWN_HANDLE, "HV-ACT-005", "a guessed handle -> UNKNOWN_HANDLE", status_name(b.status))
    a = _activate(session, MLX5, r.handle, 2, 0x48, rid="HV-ACT-005")
    check(bool(a.flags & ActivateFlag.REWRITE), "HV-RETGT-003", "REWRITE set after deactivation", hex(a.flags))
    session.program(MLX5, MsgKind.MSIX, 7, a.address, a.data)
    _fires(session, MLX5, MsgKind.MSIX, 7, (2, 0x48), "HV-ACT-005")
    check(session.deactivate(MLX5, [{"handle": r.handle}]).status == Status.SUCCESS, "HV-ACT-005", "deactivated", "no")
    check(session.free(MLX5, [r.handle]).status == Status.SUCCESS, "HV-FREE-001", "a reserved message frees", "no")


@requirement("HV-ACT-007")
def test_index_names_a_vector_of_the_message(session: Session) -> None:
    """index beyond the message's vectors, or non-zero with PVMSI_ACTENT_BLOCK: INVALID_PARAMETER, for activate and
    deactivate alike."""
    session.ready()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    x = session.allocated(MLX5, MsgKind.MSIX, [0])[0]
    m = session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=1, vector=0x80, count=4)[0]
    cases = [
        (MLX5, x.handle, 1, False, "index 1 of an MSI-X message"),
        (MSI_DEV, m.handle, 4, False, "index 4 of a 4-vector block"),
        (MSI_DEV, m.handle, 1, True, "index 1 with PVMSI_ACTENT_BLOCK"),
    ]
    for dev, handle, index, block, what in cases:
        _activate(
            session, dev, handle, 1, 0x80, index=index, block=block, rid="HV-ACT-007", want=Status.INVALID_PARAMETER
        )
        b = session.deactivate(dev, [{"handle": handle, "index": index, "entry_flags": BLOCK if block else 0}])
        check(b.status == Status.INVALID_PARAMETER, "HV-ACT-007", f"deactivate {what}", status_name(b.status))


@requirement("HV-MSI-001", "HV-MSI-002", "HV-MSI-003")
def test_per_vector_targets_of_an_msi_block(session: Session) -> None:
    """A 4-vector block activated whole delivers vector + i on one vCPU; then vector 2 alone is sent to another vCPU
    and a non-contiguous vector: where the platform remaps each vector (VT-d, AMD-Vi, ITS) it moves alone and can
    be deactivated alone; on the IMSIC it is refused with PER_VECTOR_REFUSED and nothing moves."""
    session.ready()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    r = _reserve(session, MSI_DEV, MsgKind.MSI, 0, count=4)
    per_vector = platform(session.platform).per_vector_targets
    if not per_vector:
        _activate(
            session, MSI_DEV, r.handle, 3, 0x91, index=2, block=False, rid="HV-MSI-002", want=Status.PER_VECTOR_REFUSED
        )
    a = _activate(session, MSI_DEV, r.handle, 1, 0x80, rid="HV-MSI-003")
    session.live(MSI_DEV, MsgKind.MSI, 0, a, vectors=4)
    for i in range(4):
        _fires(session, MSI_DEV, MsgKind.MSI, i, (1, 0x80 + i), "HV-MSI-003")
    if not per_vector:
        _activate(
            session, MSI_DEV, r.handle, 3, 0x91, index=2, block=False, rid="HV-MSI-002", want=Status.PER_VECTOR_REFUSED
        )
        _activate(session, MSI_DEV, r.handle, 1, 0x82, index=2, block=False, rid="HV-MSI-002")
        b = session.deactivate(MSI_DEV, [{"handle": r.handle, "index": 2, "entry_flags": 0}])
        check(
            b.status == Status.PER_VECTOR_REFUSED, "HV-MSI-002", "per-vector deactivate refused", status_name(b.status)
        )
        for i in range(4):
            _fires(session, MSI_DEV, MsgKind.MSI, i, (1, 0x80 + i), "HV-MSI-002")
        return
    v = _activate(session, MSI_DEV, r.handle, 3, 0x91, index=2, block=False, rid="HV-MSI-001")
    check((v.address, v.data) == (a.address, a.data), "HV-MSI-001", "the block's pair kept", f"{v.address:#x}")
    want = {0: (1, 0x80), 1: (1, 0x81), 2: (3, 0x91), 3: (1, 0x83)}
    for i in range(4):
        _fires(session, MSI_DEV, MsgKind.MSI, i, want[i], "HV-MSI-001")
    b = session.deactivate(MSI_DEV, [{"handle": r.handle, "index": 2, "entry_flags": 0}])
    check(b.status == Status.SUCCESS, "HV-ACT-005", "vector 2 deactivated alone", status_name(b.status))
    _fires(session, MSI_DEV, MsgKind.MSI, 2, None, "HV-ACT-005")
    _fires(session, MSI_DEV, MsgKind.MSI, 3, (1, 0x83), "HV-MSI-001")
