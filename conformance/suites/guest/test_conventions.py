"""What the guest may rely on after a failed call (spec "Conventions")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import ABSENT, MLX5, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import FunctionNumber, MsgKind

requirement = pytest.mark.requirement


@requirement("GUEST-CONV-001")
def test_no_reliance_on_the_output_of_a_failed_call(guest: GuestSession) -> None:
    """DEVICE_QUERY of a device that is not there fails (its output block holds plausible poison): the guest does
    not claim it; a failed batch's unwritten results are never used."""
    guest.host(device_quota=3)
    guest.boot()
    r = guest.enable(ABSENT, MsgKind.MSIX, 2)
    check(r.status < 0, "GUEST-CONV-001", "ENABLE on an absent device fails", str(r.status))
    claims = guest.calls(FunctionNumber.DEVICE_CLAIM)
    check(not claims, "GUEST-CONV-001", "no DEVICE_CLAIM after a failed DEVICE_QUERY", ", ".join(guest.fns()))
    guest.enable(MLX5, MsgKind.MSIX, 6)
    guest.clean("GUEST-CONV-001")
