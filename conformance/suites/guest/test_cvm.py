"""A guest in a confidential VM (spec "Calling conventions", "Confidential VMs"): its parameter blocks lie in the
memory it shares with the host, which the harness's BOOT scratch pages stand for."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import GuestSession
from pvmsi.conformance.toolkit import check

requirement = pytest.mark.requirement


@requirement("GUEST-CVM-001")
def test_parameter_blocks_stay_in_shared_memory(guest: GuestSession) -> None:
    """Through a whole workout of a confidential guest, every input and output block lies in the shared pages."""
    guest.host(confidential=True)
    guest.full_workout()
    guest.clean("GUEST-CVM-001")
    check(len(guest.calls()) > 10, "GUEST-CVM-001", "the workout makes calls", str(len(guest.calls())))
