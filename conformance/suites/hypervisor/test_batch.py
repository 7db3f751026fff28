"""Batches: limits, stopping at the failing entry, partial completion and resume (spec "Batching and partial
completion")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import DEFAULT_DEVICES, MLX5, Session, alloc_entry, check, status_name
from pvmsi.spec.constants import KindMask, MsgKind, Status
from pvmsi.spec.iut import VmKnobs

requirement = pytest.mark.requirement


@requirement("HV-BATCH-001")
def test_count_and_start_limits(session: Session) -> None:
    """A count of 0 or above max_batch, or a start >= count, is INVALID_PARAMETER and writes nothing."""
    session.ready()
    max_batch = session.info().max_batch
    one = [alloc_entry(MsgKind.MSIX, 0)]
    two = [alloc_entry(MsgKind.MSIX, s) for s in range(2)]
    too_many = [alloc_entry(MsgKind.MSIX, s) for s in range(max_batch + 1)]
    cases: list[tuple[list[dict[str, object]], dict[str, int], str]] = [
        (one, {"count": 0}, "count 0"),
        (too_many, {}, f"count {max_batch + 1} > max_batch"),
        (two, {"start": 2}, "start == count"),
        (two, {"start": 5}, "start > count"),
    ]
    for entries, kw, what in cases:
        b = session.alloc(MLX5, entries, **kw)
        check(
            b.status == Status.INVALID_PARAMETER, "HV-BATCH-001", f"{what} -> INVALID_PARAMETER", status_name(b.status)
        )
        check(b.header is None, "HV-BATCH-001", "nothing written", str(b.header))
    check(session.device_info(MLX5).messages_allocated == 0, "HV-BATCH-001", "nothing processed", "some were")


@requirement("HV-BATCH-002", "HV-BATCH-003", "HV-BATCH-004", "HV-BATCH-007", "HV-MEM-007")
def test_stop_at_the_first_failing_entry(session: Session) -> None:
    """A batch stops at its failing entry: earlier results written, later ones untouched, value next_index."""
    session.ready()
    entries = [alloc_entry(MsgKind.MSIX, s) for s in range(5)]
    entries[2] = alloc_entry(MsgKind.MSIX, 2, vcpu=999)
    b = session.alloc(MLX5, entries)
    check(b.status == Status.INVALID_PARAMETER, "HV-BATCH-002", "the failing entry's status", status_name(b.status))
    check(b.header is not None, "HV-MEM-007", "batch_out written", "not written")
    check(
        (b.header.next_index, b.header.completed, b.header.status) == (2, 2, Status.INVALID_PARAMETER),
        "HV-BATCH-002",
        "next_index 2, completed 2, status INVALID_PARAMETER",
        str(b.header),
    )
    check(b.outcome.value == 2, "HV-BATCH-007", "value register = next_index", str(b.outcome.value))
    check(
        b.results[2] is not None and b.results[2].status == Status.INVALID_PARAMETER,
        "HV-BATCH-002",
        "result[2].status = INVALID_PARAMETER",
        str(b.results[2]),
    )
    check(
        all(r is not None and r.status == Status.SUCCESS and r.handle for r in b.results[:2]),
        "HV-BATCH-003",
        "results 0 and 1 written and successful",
        str(b.results[:2]),
    )
    check(
        b.results[3] is None and b.results[4] is None, "HV-BATCH-004", "results 3 and 4 untouched", str(b.results[3:])
    )
    check(session.device_info(MLX5).messages_allocated == 2, "HV-BATCH-003", "entries 0 and 1 stay allocated", "other")


@requirement("HV-BATCH-004", "HV-BATCH-007", "HV-BATCH-008")
def test_start_skips_earlier_entries(session: Session) -> None:
    """Entries below start are skipped, even an invalid one, and completed counts only those from start on."""
    session.ready()
    entries = [alloc_entry(MsgKind.MSIX, 0, vcpu=999)] + [alloc_entry(MsgKind.MSIX, s) for s in (1, 2, 3)]
    b = session.alloc(MLX5, entries, start=1)
    check(
        b.status == Status.SUCCESS,
        "HV-BATCH-004",
        "entry 0 (invalid) is below start: not processed",
        status_name(b.status),
    )
    check(b.results[0] is None, "HV-BATCH-004", "result 0 untouched", str(b.results[0]))
    check(
        (b.header.next_index, b.header.completed, b.outcome.value) == (4, 3, 4),
        "HV-BATCH-007",
        "next_index 4, completed 3, value 4",
        f"{b.header}, value {b.outcome.value}",
    )


@requirement("HV-BATCH-008", "GUEST-BATCH-002")
def test_resume_after_fixing_the_failing_entry(session: Session) -> None:
    """After the failing entry is fixed, the call resumed at next_index completes and allocates all four."""
    session.ready()
    entries = [alloc_entry(MsgKind.MSIX, s) for s in range(4)]
    entries[1] = alloc_entry(MsgKind.MSIX, 1, vector=7)
    b = session.alloc(MLX5, entries)
    check(b.header.next_index == 1, "HV-BATCH-002", "stopped at 1", str(b.header))
    entries[1] = alloc_entry(MsgKind.MSIX, 1)
    b = session.alloc(MLX5, entries, start=1)
    check(
        b.status == Status.SUCCESS and b.header.next_index == 4,
        "HV-BATCH-008",
        "the resumed call completes",
        f"{status_name(b.status)} {b.header}",
    )
    check(session.device_info(MLX5).messages_allocated == 4, "HV-BATCH-008", "4 messages", "other")


@requirement("HV-BATCH-005", "HV-BATCH-006", "HV-BATCH-007")
def test_incomplete_batches_resume(session: Session) -> None:
    """An IUT yielding every 3 entries answers INCOMPLETE with progress; resuming at next_index finishes."""
    vm = session.new_vm(DEFAULT_DEVICES, knobs=VmKnobs(yield_after=3))
    session.use(vm)
    session.ready(MLX5, int(KindMask.MSIX))
    entries = [alloc_entry(MsgKind.MSIX, s) for s in range(10)]
    start, rounds, handles = 0, 0, []
    while True:
        b = session.alloc(MLX5, entries, start=start)
        rounds += 1
        check(
            b.status in (Status.SUCCESS, Status.INCOMPLETE),
            "HV-BATCH-005",
            "SUCCESS or INCOMPLETE",
            status_name(b.status),
        )
        check(
            b.header.completed == b.header.next_index - start and b.outcome.value == b.header.next_index,
            "HV-BATCH-007",
            "completed = next_index - start, value = next_index",
            str(b.header),
        )
        handles += [r.handle for r in b.results[start : b.header.next_index]]
        if b.status == Status.SUCCESS:
            break
        check(b.header.next_index > start, "HV-BATCH-006", "at least one entry completed", str(b.header))
        start = b.header.next_index
        check(rounds < 20, "HV-BATCH-006", "progress", "no progress after 20 calls")
    check(rounds > 1, "HV-BATCH-005", "the knob made the IUT yield", f"{rounds} call(s)")
    check(len(set(handles)) == 10, "HV-BATCH-008", "10 distinct handles over the resumed calls", str(len(handles)))
