"""Batches as the guest drives them: resume after INCOMPLETE, clean up after a failure (spec "Batching and partial
completion")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, GuestSession, HostKnobs
from pvmsi.conformance.toolkit import check, status_name
from pvmsi.spec.constants import FunctionNumber, MsgKind, Status

requirement = pytest.mark.requirement


@requirement("GUEST-BATCH-001", "GEN-STAT-001")
def test_resumes_incomplete_batches(guest: GuestSession) -> None:
    """Every batch call stops after 3 entries with INCOMPLETE: the guest resumes at next_index until done, for
    MSG_ALLOC, MSG_ACTIVATE and MSG_FREE."""
    guest.host(yield_after=3)
    guest.boot()
    r = guest.enable(MLX5, MsgKind.MSIX, 10, vcpu=1, vector=0x40)
    guest.retarget(MLX5, MsgKind.MSIX, 2)
    guest.clean("GUEST-BATCH-001")
    guest.ok(r, "GUEST-BATCH-001", "ENABLE of 10")
    starts = [c.start for c in guest.calls(FunctionNumber.MSG_ALLOC)]
    check(starts == [0, 3, 6, 9], "GUEST-BATCH-001", "MSG_ALLOC starts 0, 3, 6, 9", str(starts))
    guest.delivers(MLX5, MsgKind.MSIX, 10, "GUEST-BATCH-001", vcpu=2, vector=0x40)
    guest.disable(MLX5, MsgKind.MSIX)
    guest.clean("GUEST-BATCH-001")
    check(not guest.hv.live(), "GUEST-BATCH-001", "every message freed", str(len(guest.hv.live())))


@requirement("GUEST-BATCH-002", "GUEST-CONV-001")
def test_a_failed_batch_is_cleaned_up(guest: GuestSession) -> None:
    """The device quota is 5: entry 5 of an 8-entry MSG_ALLOC fails with NO_RESOURCES. The guest frees entries 0..4
    (or keeps and writes them), and never uses the results the hypervisor did not write."""
    guest.host(device_quota=5)
    guest.boot()
    r = guest.enable(MLX5, MsgKind.MSIX, 8)
    guest.clean("GUEST-BATCH-002", "GUEST-CONV-001")
    alloc = guest.calls(FunctionNumber.MSG_ALLOC)[0]
    check(
        alloc.status == Status.NO_RESOURCES and alloc.value == 5, "GUEST-BATCH-002", "entry 5 failed", str(alloc.value)
    )
    check(r.status != Status.SUCCESS, "GUEST-BATCH-002", "ENABLE reports the failure", str(r.status))
    guest.enable(MLX5, MsgKind.MSIX, 4, first_slot=16)
    guest.clean("GUEST-BATCH-002", "GUEST-CONV-001")


@requirement("GUEST-CONV-001", "GUEST-STAT-001", "GUEST-STAT-002")
@pytest.mark.parametrize(
    ("fn", "status"),
    [
        (FunctionNumber.MSG_ALLOC, Status.INVALID_PARAMETER),
        (FunctionNumber.MSG_ALLOC, Status.UNKNOWN_DEVICE),
        (FunctionNumber.MSG_ALLOC, Status.NOT_PERMITTED),
        (FunctionNumber.MSG_ALLOC, -(2**31)),
        (FunctionNumber.MSG_ACTIVATE, Status.WRONG_STATE),
    ],
    ids=str,
)
def test_a_batch_failing_before_any_entry_completed_nothing(
    guest: GuestSession, fn: FunctionNumber, status: int
) -> None:
    """A batch call fails in its header checks with a value register of 3 and an output block that looks like a
    whole completed batch (never written by the hypervisor): the guest takes no entry as completed, names no
    handle from it, writes no pair from it, and reports the status. The call is poisoned in a command every
    conforming guest makes it in: MSG_ALLOC in an ENABLE; MSG_ACTIVATE in a RETARGET (an ENABLE may activate in
    MSG_ALLOC, PVMSI_ALLOC_ACTIVATE), whose 4 vectors then still deliver at their old target (done 4)."""
    poisoned = HostKnobs(status_for=((int(fn), int(status)),), status_value=3)
    retarget = fn == FunctionNumber.MSG_ACTIVATE
    guest.host() if retarget else guest.host(status_for=poisoned.status_for, status_value=3)
    guest.boot()
    if retarget:
        guest.ok(guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40), "GUEST-STAT-002", "ENABLE")
        guest.hv.knobs = replace(guest.hv.knobs, status_for=poisoned.status_for, status_value=3)
        guest.log(f"model: status_for={poisoned.status_for!r}, status_value=3 from now on")
        r = guest.retarget(MLX5, MsgKind.MSIX, 2)
    else:
        r = guest.enable(MLX5, MsgKind.MSIX, 4)
    what = "RETARGET" if retarget else "ENABLE"
    if not guest.calls(fn, guest.hv.command):
        pytest.skip(f"unsupported: the guest made no {fn.name} call in {what}")
    guest.clean("GUEST-CONV-001", "GUEST-ALLOC-004", "GUEST-NEG-004")
    check(r.status == status, "GUEST-STAT-002", f"{what} reports {status_name(status)}", status_name(r.status))
    programs = [op for op in guest.hv.device_ops() if op.op.name == "PROGRAM" and op.command == guest.hv.command]
    check(not programs, "GUEST-CONV-001", "no pair written", str(len(programs)))
    if retarget:
        check(r.done == 4, "GUEST-STAT-002", "RETARGET: done = the 4 vectors left working", str(r.done))
        guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-CONV-001", vcpu=1, vector=0x40)


@requirement("GUEST-BATCH-002", "GUEST-CONV-001", "GUEST-STAT-002", "GUEST-ALLOC-004")
@pytest.mark.parametrize(
    ("first", "status"),
    [(2, Status.WRONG_STATE), (2046, Status.INVALID_PARAMETER)],
    ids=["slot-occupied", "slot-past-the-table"],
)
def test_an_entry_failing_with_each_error(guest: GuestSession, first: int, status: int) -> None:
    """MSI-X slots 4..7 are in use; an ENABLE of 4 from ``first`` fails at entry 2 (slot 4 occupied: WRONG_STATE;
    slot 2048 past the 2048-entry table: INVALID_PARAMETER). The guest frees entries 0 and 1 (or keeps and writes
    them), uses no unwritten result, reports the entry's status, and leaves slots 4..7 alone: they still deliver."""
    guest.boot()
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40, first_slot=4), "GUEST-BATCH-002", "ENABLE")
    before = {h: (m.slot, m.address, m.data) for h, m in guest.hv.live().items()}
    r = guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=2, vector=0x60, first_slot=first)
    guest.clean("GUEST-BATCH-002", "GUEST-CONV-001", "GUEST-ALLOC-004")
    alloc = [c for c in guest.calls(FunctionNumber.MSG_ALLOC) if c.status < 0]
    check(
        len(alloc) == 1 and alloc[0].status == status and alloc[0].value == 2,
        "GUEST-BATCH-002",
        f"MSG_ALLOC stopped at entry 2 with {status_name(status)}",
        str([(status_name(c.status), c.value) for c in alloc]),
    )
    check(r.status == status, "GUEST-STAT-002", f"ENABLE reports {status_name(status)}", status_name(r.status))
    after = {h: (m.slot, m.address, m.data) for h, m in guest.hv.live().items() if h in before}
    check(after == before, "GUEST-ALLOC-004", "the messages of slots 4..7 untouched", str(after))
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-BATCH-002", vcpu=1, vector=0x40, first=4)
