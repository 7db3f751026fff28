"""The event channel as the guest handles it (spec "Events"): REFETCH after a live migration, REVOKED."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, MSI_DEV, GuestSession
from pvmsi.spec.constants import MsgKind

requirement = pytest.mark.requirement


@requirement("GUEST-EVT-001", "GUEST-EVT-002")
def test_refetches_after_migration(guest: GuestSession) -> None:
    """After a migration to a destination where every pair changed, the guest fetches REFETCH, re-activates every
    message, writes every new pair (and no pair it was not given), acknowledges, and everything delivers."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.enable(MLX5, MsgKind.IMS, 2, vcpu=2, vector=0x60, first_slot=6)
    guest.enable(MSI_DEV, MsgKind.MSI, 4, vcpu=3, vector=0x80)
    guest.migrate()
    guest.ok(guest.notify(), "GUEST-EVT-001", "NOTIFY")
    guest.clean("GUEST-EVT-001", "GUEST-EVT-002", "GUEST-NEG-004", "GUEST-ALLOC-001", "GUEST-ALLOC-002")
    guest.delivers(MLX5, MsgKind.MSIX, 4, "GUEST-EVT-002", vcpu=1, vector=0x40)
    guest.delivers(MLX5, MsgKind.IMS, 2, "GUEST-EVT-002", vcpu=2, vector=0x60, first=6)
    guest.delivers(MSI_DEV, MsgKind.MSI, 4, "GUEST-EVT-002", vcpu=3, vector=0x80)


@requirement("GUEST-REVOKE-001", "GUEST-EVT-001")
def test_honours_a_revocation(guest: GuestSession) -> None:
    """The host revokes one MSI-X message: the guest frees it on REVOKED and the others keep delivering."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.revoke(MLX5, MsgKind.MSIX, 1)
    guest.ok(guest.notify(), "GUEST-REVOKE-001", "NOTIFY")
    guest.clean("GUEST-REVOKE-001", "GUEST-EVT-001", "GUEST-ALLOC-004")
    guest.delivers(MLX5, MsgKind.MSIX, 1, "GUEST-REVOKE-001", vcpu=1, vector=0x40)
    guest.delivers(MLX5, MsgKind.MSIX, 2, "GUEST-REVOKE-001", vcpu=1, vector=0x42, first=2)
