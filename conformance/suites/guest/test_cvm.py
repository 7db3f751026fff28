"""A guest in a confidential VM (spec "Calling conventions", "Confidential VMs"): its parameter blocks lie in the
memory it shares with the host, which the harness's BOOT scratch pages stand for."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pvmsi.conformance.guest_host_knobs import LYING_ADDRESS
from pvmsi.conformance.guest_toolkit import MLX5, GuestSession
from pvmsi.conformance.toolkit import check, status_name
from pvmsi.spec.constants import FunctionNumber, MsgKind, Status
from pvmsi.spec.harness_constants import DeviceOp

requirement = pytest.mark.requirement


@requirement("GUEST-CVM-001")
def test_parameter_blocks_stay_in_shared_memory(guest: GuestSession) -> None:
    """Through a whole workout of a confidential guest, every input and output block lies in the shared pages."""
    guest.host(confidential=True)
    guest.full_workout()
    guest.clean("GUEST-CVM-001")
    check(len(guest.calls()) > 10, "GUEST-CVM-001", "the workout makes calls", str(len(guest.calls())))


@requirement("GUEST-CVM-002")
@pytest.mark.platforms("vtd", "amd-vi")  # the x86 window is architectural; a vITS doorbell or IMSIC page is not
def test_a_pair_outside_the_interrupt_window_is_refused(guest: GuestSession) -> None:
    """A lying host hands out pairs whose address is guest RAM to a guest BOOT told is confidential
    (PVMSI_HBOOT_CONFIDENTIAL): the guest writes none of them into the device, ENABLE fails with INVALID_ADDRESS
    (no call failed) and done 0, and the messages are freed."""
    guest.host(confidential=True, lying_pairs=True)
    guest.boot()
    r = guest.enable(MLX5, MsgKind.MSIX, 3)
    guest.clean("GUEST-CVM-002", "GUEST-ALLOC-002")
    check(r.status == Status.INVALID_ADDRESS, "GUEST-STAT-002", "ENABLE -> INVALID_ADDRESS", status_name(r.status))
    check(r.done == 0, "GUEST-STAT-002", "ENABLE: done 0 (nothing left working)", str(r.done))
    lies = [op for op in guest.hv.device_ops(DeviceOp.PROGRAM) if op.address == LYING_ADDRESS]
    check(not lies, "GUEST-CVM-002", "no lying pair written", str(len(lies)))
    check(
        bool(guest.calls(FunctionNumber.MSG_FREE)),
        "GUEST-CVM-002",
        "the refused messages are freed",
        ", ".join(guest.fns()),
    )
    check(not guest.hv.live(), "GUEST-CVM-002", "nothing left allocated", str(len(guest.hv.live())))


@requirement("GUEST-CVM-002", "GUEST-ALLOC-002")
@pytest.mark.platforms("vtd", "amd-vi")
def test_a_retargeted_pair_outside_the_window_is_refused(guest: GuestSession) -> None:
    """A confidential guest enabled 3 MSI-X vectors honestly; the host then moves them on a retarget (REWRITE set)
    and lies about the new pairs: the guest writes none of them (GUEST-ALLOC-002's exception), frees the
    messages. (The RETARGET's status is not checked: whether a retarget the guest cut short this way failed is
    the guest's to say.)"""
    guest.host(confidential=True, retarget_moves=True)
    guest.boot()
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 3), "GUEST-CVM-002", "ENABLE")
    guest.hv.knobs = replace(guest.hv.knobs, lying_pairs=True)
    guest.log("model: lying_pairs=True from now on")
    guest.retarget(MLX5, MsgKind.MSIX, 2)
    guest.clean("GUEST-CVM-002", "GUEST-ALLOC-002", "GUEST-ALLOC-004")
    check(not guest.hv.live(), "GUEST-CVM-002", "the refused messages are freed", str(len(guest.hv.live())))
    lies = [op for op in guest.hv.device_ops(DeviceOp.PROGRAM) if op.address == LYING_ADDRESS]
    check(not lies, "GUEST-CVM-002", "no lying pair written", str(len(lies)))
