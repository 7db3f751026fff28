"""Reserve, then activate, as the guest does it (spec "Reserve, activate, deactivate and free"): no slot is written
or enabled with a reserved message; each pair written is one MSG_ACTIVATE returned."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import IDXD_SUB, MLX5, MSI_DEV, GuestSession
from pvmsi.spec.constants import MsgKind

requirement = pytest.mark.requirement


@requirement("GUEST-ACT-001")
def test_activates_before_writing_or_enabling(guest: GuestSession) -> None:
    """MSI-X, IMS, a 4-vector MSI block and a sub-device's IMS: the guest never writes or enables a slot whose
    message is only reserved (activating first, or in one step with PVMSI_ALLOC_ACTIVATE), and every vector
    delivers."""
    guest.boot()
    enables = [
        (MLX5, MsgKind.MSIX, 3, 1, 0x40, 0),
        (MLX5, MsgKind.IMS, 2, 2, 0x60, 5),
        (MSI_DEV, MsgKind.MSI, 4, 3, 0x80, 0),
        (IDXD_SUB, MsgKind.IMS, 2, 0, 0xA0, 0),
    ]
    for dev, kind, n, vcpu, vector, first in enables:
        guest.ok(guest.enable(dev, kind, n, vcpu=vcpu, vector=vector, first_slot=first), "GUEST-ACT-001", "ENABLE")
        guest.clean("GUEST-ACT-001")
    for dev, kind, n, vcpu, vector, first in enables:
        guest.delivers(dev, kind, n, "GUEST-ACT-001", vcpu=vcpu, vector=vector, first=first)
