"""A guest in a confidential VM (spec "Calling conventions", "Confidential VMs"): its parameter blocks lie in the
memory it shares with the host, which the harness's BOOT scratch pages stand for."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_host_knobs import LYING_ADDRESS
from pvmsi.conformance.guest_toolkit import MLX5, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import FunctionNumber, MsgKind
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
    """A lying host hands out pairs whose address is guest RAM: the guest writes none of them into the device,
    ENABLE fails, and the messages are freed."""
    guest.host(confidential=True, lying_pairs=True)
    guest.boot()
    r = guest.enable(MLX5, MsgKind.MSIX, 3)
    guest.clean("GUEST-CVM-002")
    check(r.status < 0, "GUEST-CVM-002", "ENABLE fails", str(r.status))
    lies = [op for op in guest.hv.device_ops(DeviceOp.PROGRAM) if op.address == LYING_ADDRESS]
    check(not lies, "GUEST-CVM-002", "no lying pair written", str(len(lies)))
    check(
        bool(guest.calls(FunctionNumber.MSG_FREE)),
        "GUEST-CVM-002",
        "the refused messages are freed",
        ", ".join(guest.fns()),
    )
    check(not guest.hv.live(), "GUEST-CVM-002", "nothing left allocated", str(len(guest.hv.live())))
