"""Batches: limits, stopping at the failing entry, partial completion and resume (spec "Batching and partial
completion")."""

from __future__ import annotations

from typing import Any

import pytest

from pvmsi.conformance.toolkit import (
    DEFAULT_DEVICES,
    MLX5,
    PAGE_IN_GPA,
    PAGE_OUT_GPA,
    PROFILE_SIZES,
    Session,
    alloc_entry,
    check,
    status_name,
)
from pvmsi.spec.calls import BATCH_CALLS
from pvmsi.spec.constants import FunctionNumber, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import DeviceProfile
from pvmsi.spec.iut import VmKnobs

requirement = pytest.mark.requirement


@requirement("HV-BATCH-001")
def test_count_and_start_limits(session: Session) -> None:
    """A count of 0 or above the batch limit, or a start >= count, is INVALID_PARAMETER and writes nothing."""
    session.ready()
    max_batch = session.batch_limit(FunctionNumber.MSG_ALLOC)
    one = [alloc_entry(MsgKind.MSIX, 0)]
    two = [alloc_entry(MsgKind.MSIX, s) for s in range(2)]
    too_many = [alloc_entry(MsgKind.MSIX, s) for s in range(max_batch + 1)]
    cases: list[tuple[list[dict[str, object]], dict[str, int], str]] = [
        (one, {"count": 0}, "count 0"),
        # the blocks of a batch of the limit + 1 do not fit the suite's usual page: a page each
        (too_many, {"in_gpa": PAGE_IN_GPA, "out_gpa": PAGE_OUT_GPA}, f"count {max_batch + 1} > the batch limit"),
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


@requirement("HV-BATCH-001")
@pytest.mark.parametrize("fn", list(BATCH_CALLS), ids=[c.name for c in BATCH_CALLS.values()])
def test_a_batch_as_large_as_a_page_allows(session: Session, fn: int) -> None:
    """A count equal to the call's batch limit (hv_info.max_batch or what a page holds, the smaller) is accepted;
    one more is INVALID_PARAMETER and writes nothing."""
    session.ready()
    call = BATCH_CALLS[fn]
    limit = session.batch_limit(FunctionNumber(fn))
    pages: dict[str, Any] = {"in_gpa": PAGE_IN_GPA, "out_gpa": PAGE_OUT_GPA}
    handles: list[int] = []
    if fn != FunctionNumber.MSG_ALLOC:  # messages to retarget or free: as many as the device's quota allows
        quota = min(limit, session.device_info(MLX5).message_quota, PROFILE_SIZES[DeviceProfile.MLX5][1])
        alloc_limit = session.batch_limit(FunctionNumber.MSG_ALLOC)
        for first in range(0, quota, alloc_limit):
            slots = range(first, min(quota, first + alloc_limit))
            handles += [r.handle for r in session.allocated(MLX5, MsgKind.MSIX, list(slots), **pages)]
    entries: list[dict[str, Any]]
    if fn == FunctionNumber.MSG_ALLOC:
        entries = [alloc_entry(MsgKind.MSIX, s) for s in range(limit + 1)]
    elif fn == FunctionNumber.MSG_ACTIVATE:
        entries = [{"handle": h, "vcpu": 2, "vector": 0x50, "flags": 0} for h in handles]
        entries += [{"handle": 0, "vcpu": 2, "vector": 0x50, "flags": 0}] * (limit + 1 - len(handles))
    else:
        entries = [{"handle": h} for h in handles] + [{"handle": 0}] * (limit + 1 - len(handles))
    over = session.batch(FunctionNumber(fn), MLX5, entries, **pages)
    check(
        over.status == Status.INVALID_PARAMETER and over.header is None,
        "HV-BATCH-001",
        f"{call.name} count {limit + 1} > limit {limit} -> INVALID_PARAMETER, nothing written",
        f"{status_name(over.status)}, header {over.header}",
    )
    full = session.batch(FunctionNumber(fn), MLX5, entries[:limit], **pages)
    done = limit if fn == FunctionNumber.MSG_ALLOC else len(handles)
    check(
        full.header is not None and full.header.next_index == done,
        "HV-BATCH-001",
        f"{call.name} count {limit} accepted: {done} entries processed",
        f"{status_name(full.status)}, header {full.header}",
    )


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
        (b.header.next_index, b.header.completed, b.header.status, b.outcome.value) == (4, 3, Status.SUCCESS, 4),
        "HV-BATCH-007",
        "next_index 4, completed 3, status SUCCESS, value 4",
        f"{b.header}, value {b.outcome.value}",
    )


@requirement("HV-BATCH-008", "HV-BATCH-007", "GUEST-BATCH-002")
def test_resume_after_fixing_the_failing_entry(session: Session) -> None:
    """After the failing entry is fixed, the call resumed at next_index completes and allocates all four."""
    session.ready()
    entries = [alloc_entry(MsgKind.MSIX, s) for s in range(4)]
    entries[1] = alloc_entry(MsgKind.MSIX, 1, vector=0)  # below every architecture's range (HV-ALLOC-006)
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
    check(
        (b.header.completed, b.header.status, b.outcome.value) == (3, Status.SUCCESS, 4),
        "HV-BATCH-007",
        "the resumed batch_out: completed 3, status SUCCESS, value 4",
        f"{b.header}, value {b.outcome.value}",
    )


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
