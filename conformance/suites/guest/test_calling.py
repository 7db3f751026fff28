"""Calling conventions and status codes as the guest uses them (spec "Calling conventions", "Status codes")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import FunctionNumber, MsgKind

requirement = pytest.mark.requirement
#: A status no version of pvmsi defines (the last one representable; spec "Status codes": a guest treats every
#: negative status it does not know as a failure, GUEST-STAT-001).
UNDEFINED_STATUS = -(2**31)


@requirement("GUEST-CALL-001", "GEN-CALL-001")
def test_reserved_registers_are_zero(guest: GuestSession) -> None:
    """Through a whole workout, arg2 and arg3 are zero, arg0/arg1 name the blocks and nothing else."""
    guest.full_workout()
    guest.clean("GUEST-CALL-001", "GEN-CALL-001")
    check(len(guest.calls()) > 10, "GEN-CALL-001", "the workout makes calls", str(len(guest.calls())))


@requirement("GUEST-STAT-001", "GEN-STAT-001", "GUEST-STAT-002")
@pytest.mark.parametrize("status", [-77, -1000, UNDEFINED_STATUS], ids=str)
def test_an_unknown_error_status_is_a_failure(guest: GuestSession, status: int) -> None:
    """DEVICE_CLAIM answers a negative status no version of pvmsi defines: the guest takes it as a failure,
    allocates nothing, and reports that status as the ENABLE's."""
    guest.host(status_for=((int(FunctionNumber.DEVICE_CLAIM), int(status)),))
    guest.boot()
    r = guest.enable(MLX5, MsgKind.MSIX, 2)
    if not guest.calls(FunctionNumber.DEVICE_CLAIM, guest.hv.command):  # claimed earlier: a path the site allows
        pytest.skip("unsupported: the guest made no DEVICE_CLAIM in ENABLE")
    allocs = guest.calls(FunctionNumber.MSG_ALLOC)
    check(not allocs, "GUEST-STAT-001", "no MSG_ALLOC after a failed claim", ", ".join(guest.fns()))
    check(r.status < 0, "GUEST-STAT-001", "ENABLE reports a failure", str(r.status))
    check(
        r.status == status,
        "GUEST-STAT-002",
        f"ENABLE reports the status DEVICE_CLAIM returned ({status})",
        str(r.status),
    )
    programs = [op for op in guest.hv.device_ops() if op.op.name == "PROGRAM"]
    check(not programs, "GUEST-STAT-001", "no pair written", str(len(programs)))


@requirement("GUEST-STAT-001", "GUEST-DISC-002", "GUEST-STAT-002")
def test_an_unknown_status_from_version_means_absent(guest: GuestSession) -> None:
    """VERSION answers an undefined negative status: pvmsi is not there."""
    guest.host(status_for=((int(FunctionNumber.VERSION), -42),))
    r = guest.boot()
    check(guest.fns() == ["VERSION"], "GUEST-STAT-001", "VERSION only", ", ".join(guest.fns()))
    guest.fell_back(r, "GUEST-DISC-002")
