"""The guest on every platform's message format (spec "Message formats"): it writes pairs as returned."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, MSI_DEV, GuestSession
from pvmsi.spec.constants import MsgKind

requirement = pytest.mark.requirement


@requirement("GUEST-FMT-001")
def test_writes_pairs_as_returned_on_the_platform(guest: GuestSession) -> None:
    """On the ICS's platform (an ITS doorbell IOVA, an IMSIC file page, AMD-Vi's index in the data), the guest
    writes exactly the pairs it got and every vector delivers; after a retarget it writes the pairs it got."""
    guest.boot()
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 3, vcpu=1, vector=0x48), "GUEST-FMT-001", "ENABLE MSI-X")
    guest.ok(guest.enable(MSI_DEV, MsgKind.MSI, 4, vcpu=2, vector=0x60), "GUEST-FMT-001", "ENABLE MSI")
    guest.clean("GUEST-FMT-001", "GUEST-ALLOC-001", "GUEST-SEC-001")
    guest.delivers(MLX5, MsgKind.MSIX, 3, "GUEST-FMT-001", vcpu=1, vector=0x48)
    guest.delivers(MSI_DEV, MsgKind.MSI, 4, "GUEST-FMT-001", vcpu=2, vector=0x60)
    guest.ok(guest.retarget(MLX5, MsgKind.MSIX, 3), "GUEST-FMT-001", "RETARGET MSI-X to vCPU 3")
    guest.delivers(MLX5, MsgKind.MSIX, 3, "GUEST-FMT-001", vcpu=3, vector=0x48)
