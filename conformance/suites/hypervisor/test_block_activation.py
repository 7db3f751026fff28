"""Activating a multi-message MSI block, whole and per vector, on every platform (spec "Reserve, activate, deactivate
and free", "Multi-message MSI"): every vector the entry names moves, every other vector stays, and the result is
the pair in force. Where a platform has no per-vector targets (the IMSIC) the per-vector forms are refused and
nothing moves."""

from __future__ import annotations

from typing import Any

import pytest

from pvmsi.conformance.toolkit import MLX5, MSI_DEV, Session, check, status_name
from pvmsi.spec.constants import ActivateEntryFlag, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import FireOutcome
from pvmsi.spec.platforms import PLATFORMS, platform

requirement = pytest.mark.requirement
BLOCK = int(ActivateEntryFlag.BLOCK)
#: A block of 4 vectors, its first target and the block-wide retarget after it (identities aligned to 4 for the
#: IMSIC, HV-FMT-004).
VECTORS = 4
FIRST, MOVED = (1, 0x80), (2, 0xA0)
#: The platforms that give each vector of a block its own remapping entry (HV-MSI-001).
PER_VECTOR = pytest.mark.platforms(*(p.key for p in PLATFORMS if p.per_vector_targets))


def deliveries(session: Session) -> list[tuple[int, int] | None]:
    """Fire every vector of MSI_DEV's block: where each one lands, None when blocked."""
    got: list[tuple[int, int] | None] = []
    for i in range(VECTORS):
        fired = session.fire(MSI_DEV, MsgKind.MSI, i)
        session.collect(session.vm)
        got.append((fired.vcpu, fired.vector) if fired.outcome == FireOutcome.DELIVERED else None)
    return got


def expect(session: Session, want: list[tuple[int, int] | None], rid: str, what: str) -> None:
    got = deliveries(session)
    shown = [None if w is None else (w[0], hex(w[1])) for w in got]
    check(got == want, rid, f"{what}: {[None if w is None else (w[0], hex(w[1])) for w in want]}", str(shown))


def block_at(target: tuple[int, int]) -> list[tuple[int, int] | None]:
    return [(target[0], target[1] + i) for i in range(VECTORS)]


def activate(session: Session, handle: int, target: tuple[int, int], *, index: int | None = None) -> Any:
    """MSG_ACTIVATE of the whole block (index None) or of one vector; the batch."""
    entry = {"handle": handle, "vcpu": target[0], "vector": target[1], "flags": 0}
    entry |= {"entry_flags": BLOCK, "index": 0} if index is None else {"entry_flags": 0, "index": index}
    return session.activate(MSI_DEV, [entry])


def succeeded(b: Any, rid: str, what: str) -> Any:
    check(b.status == Status.SUCCESS, rid, f"{what} -> SUCCESS", status_name(b.status))
    return b.results[0]


def msi_block(session: Session, *, active: bool) -> int:
    """A 4-vector MSI block of MSI_DEV, active at FIRST (MSI Enable set) or reserved; its handle."""
    session.ready(MLX5, int(KindMask.MSIX))
    session.claimed(MSI_DEV, int(KindMask.MSI))
    if active:
        r = session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=FIRST[0], vector=FIRST[1], count=VECTORS)[0]
        session.enable(MSI_DEV, MsgKind.MSI, vectors=VECTORS)
        return int(r.handle)
    entry = {"kind": MsgKind.MSI, "vector_count": VECTORS, "slot": 0}
    r = succeeded(session.reserve(MSI_DEV, [entry]), "HV-ACT-001", "reserve a block of 4")
    return int(r.handle)


@requirement("HV-RETGT-002", "HV-MSI-003")
def test_retarget_of_an_active_block_moves_every_vector(session: Session) -> None:
    """An active block at (1, 0x80+i) retargeted whole to vCPU 2, 0xA0 delivers vector i at (2, 0xA0+i), every
    one of them, on every platform; the result holds the pair in force (what the MSI capability holds)."""
    handle = msi_block(session, active=True)
    expect(session, block_at(FIRST), "HV-MSI-003", "before")
    succeeded(activate(session, handle, MOVED), "HV-RETGT-002", "block-wide retarget")
    expect(session, block_at(MOVED), "HV-RETGT-002", "every vector at its new target")


@requirement("HV-RETGT-002", "HV-MSI-001")
@PER_VECTOR
def test_block_retarget_after_a_per_vector_move(session: Session) -> None:
    """Where vectors have their own targets: vector 2 moved alone to (3, 0x91), then the block retargeted whole:
    every vector, vector 2 included, follows the block."""
    handle = msi_block(session, active=True)
    succeeded(activate(session, handle, (3, 0x91), index=2), "HV-MSI-001", "vector 2 alone")
    want = block_at(FIRST)
    want[2] = (3, 0x91)
    expect(session, want, "HV-MSI-001", "vector 2 moved, the others kept")
    succeeded(activate(session, handle, MOVED), "HV-RETGT-002", "block-wide retarget")
    expect(session, block_at(MOVED), "HV-RETGT-002", "every vector follows the block")


@requirement("HV-MSI-001", "HV-MSI-002", "HV-ACT-001")
def test_per_vector_activation_of_a_reserved_block(session: Session) -> None:
    """A reserved block: activating vector 1 alone makes vector 1 deliver at its target and leaves 0, 2 and 3
    reserved (blocked) where vectors have their own targets; where they do not, it is PER_VECTOR_REFUSED and
    every vector stays blocked."""
    handle = msi_block(session, active=False)
    per_vector = platform(session.platform).per_vector_targets
    b = activate(session, handle, (2, 0x95), index=1)
    if not per_vector:
        check(b.status == Status.PER_VECTOR_REFUSED, "HV-MSI-002", "PER_VECTOR_REFUSED", status_name(b.status))
        session.enable(MSI_DEV, MsgKind.MSI, vectors=VECTORS)
        expect(session, [None] * VECTORS, "HV-MSI-002", "nothing delivers")
        return
    succeeded(b, "HV-MSI-001", "vector 1 of a reserved block")
    session.enable(MSI_DEV, MsgKind.MSI, vectors=VECTORS)
    expect(session, [None, (2, 0x95), None, None], "HV-MSI-001", "vector 1 alone delivers")
