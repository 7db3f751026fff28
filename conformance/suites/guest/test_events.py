"""The event channel as the guest handles it (spec "Events"): REFETCH after a live migration, REVOKED."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import FunctionNumber, MsgKind

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


@requirement("GUEST-ALLOC-004", "GUEST-EVT-001", "GUEST-REVOKE-001")
def test_ignores_a_revocation_of_a_handle_it_no_longer_holds(guest: GuestSession) -> None:
    """The host revokes one MSI-X message, then the guest disables the kind before the notification arrives (its
    MSG_DEACTIVATE meets REVOKED at that entry: the guest goes on, and frees every handle). REVOKED then names a
    handle the guest no longer holds: it acknowledges it and does not act on it (no call names that handle)."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.revoke(MLX5, MsgKind.MSIX, 1)
    guest.ok(guest.disable(MLX5, MsgKind.MSIX), "GUEST-REVOKE-001", "DISABLE with a revoked message")
    left = [m for m in guest.hv.live().values() if m.kind is MsgKind.MSIX]
    check(not left, "GUEST-REVOKE-001", "every MSI-X message freed, the revoked one too", str(len(left)))
    r = guest.notify()
    guest.clean("GUEST-ALLOC-004", "GUEST-EVT-001")
    guest.ok(r, "GUEST-EVT-001", "NOTIFY")
    fetched = guest.calls(FunctionNumber.EVENT_FETCH)
    check(bool(fetched), "GUEST-EVT-001", "the guest fetched the events", ", ".join(guest.fns()))
