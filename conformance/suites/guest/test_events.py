"""The event channel as the guest handles it (spec "Events"): REFETCH after a live migration, REVOKED."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import IDXD_SUB, MLX5, MSI_DEV, GuestSession
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


@requirement("GUEST-EVT-001", "GUEST-EVT-002", "GUEST-REVOKE-001")
def test_handles_every_pending_event_of_one_notification(guest: GuestSession) -> None:
    """Two revocations and a migration queue three events before one notification: the guest acts on each in order
    (GET_INFO again and every message re-activated for REFETCH, each revoked slot masked and its handle freed),
    acknowledges all of them, fetching again while any is pending, and the rest keeps delivering."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.enable(MLX5, MsgKind.IMS, 3, vcpu=2, vector=0x60, first_slot=4)
    guest.revoke(MLX5, MsgKind.MSIX, 0)
    guest.revoke(MLX5, MsgKind.IMS, 5)
    guest.migrate()
    guest.ok(guest.notify(), "GUEST-EVT-001", "NOTIFY")
    guest.clean("GUEST-EVT-001", "GUEST-EVT-002", "GUEST-REVOKE-001", "GUEST-ALLOC-002", "GUEST-NEG-004")
    left = len(guest.hv.core.state_of(guest.hv.svm).events.pending)
    check(left == 0, "GUEST-EVT-001", "every event acknowledged", f"{left} pending")
    guest.delivers(MLX5, MsgKind.MSIX, 3, "GUEST-EVT-002", vcpu=1, vector=0x41, first=1)
    guest.delivers(MLX5, MsgKind.IMS, 1, "GUEST-EVT-002", vcpu=2, vector=0x60, first=4)
    guest.delivers(MLX5, MsgKind.IMS, 1, "GUEST-EVT-002", vcpu=2, vector=0x62, first=6)


@requirement("GUEST-EVT-001", "GUEST-EVT-002", "GUEST-REVOKE-001")
@pytest.mark.parametrize("meanwhile", ["revocation", "migration"])
def test_fetches_again_when_events_arrive_while_handling(guest: GuestSession, meanwhile: str) -> None:
    """A revocation is pending; right after the guest fetched it the host queues another event (a second revocation,
    or a migration's REFETCH), so EVENT_ACK leaves it pending: the guest fetches again, acts on it, acknowledges it,
    and nothing is left pending."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.revoke(MLX5, MsgKind.MSIX, 0)
    if meanwhile == "revocation":
        guest.while_handling(lambda: guest.revoke(MLX5, MsgKind.MSIX, 2))
    else:
        guest.while_handling(guest.migrate)
    guest.ok(guest.notify(), "GUEST-EVT-001", "NOTIFY")
    guest.clean("GUEST-EVT-001", "GUEST-REVOKE-001", "GUEST-EVT-002", "GUEST-ALLOC-002")
    fetches = guest.calls(FunctionNumber.EVENT_FETCH)
    check(len(fetches) >= 2, "GUEST-EVT-001", "fetched again after an EVENT_ACK that left events", str(len(fetches)))
    left = len(guest.hv.core.state_of(guest.hv.svm).events.pending)
    check(left == 0, "GUEST-EVT-001", "every event acknowledged", f"{left} pending")
    if meanwhile == "revocation":
        guest.delivers(MLX5, MsgKind.MSIX, 1, "GUEST-REVOKE-001", vcpu=1, vector=0x41, first=1)
        guest.delivers(MLX5, MsgKind.MSIX, 1, "GUEST-REVOKE-001", vcpu=1, vector=0x43, first=3)
    else:
        guest.delivers(MLX5, MsgKind.MSIX, 3, "GUEST-EVT-002", vcpu=1, vector=0x41, first=1)


@requirement("GUEST-EVT-001", "GUEST-REVOKE-001")
@pytest.mark.parametrize("event_type", [0x5, 0x8001], ids=["later minor", "vendor"])
def test_skips_event_types_it_does_not_know(guest: GuestSession, event_type: int) -> None:
    """An event of a type 1.0 does not define (a later minor's, a vendor's from 0x8000) sits between two
    revocations: the guest skips it, acts on the others, acknowledges all three, and the rest keeps delivering."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.revoke(MLX5, MsgKind.MSIX, 0)
    guest.queue_event(event_type)
    guest.revoke(MLX5, MsgKind.MSIX, 3)
    guest.ok(guest.notify(), "GUEST-EVT-001", "NOTIFY with an event of an unknown type")
    guest.clean("GUEST-EVT-001", "GUEST-REVOKE-001")
    left = len(guest.hv.core.state_of(guest.hv.svm).events.pending)
    check(left == 0, "GUEST-EVT-001", "every event acknowledged, the unknown one too", f"{left} pending")
    guest.delivers(MLX5, MsgKind.MSIX, 2, "GUEST-REVOKE-001", vcpu=1, vector=0x41, first=1)


@requirement("GUEST-UNPLUG-001", "GUEST-EVT-001", "GUEST-ALLOC-004")
def test_device_removed_drops_the_handles(guest: GuestSession) -> None:
    """A claimed device is hot-unplugged and the guest learns it from DEVICE_REMOVED alone (NOTIFY, no UNPLUG
    command): it frees, deactivates and releases nothing for it, acknowledges the event, never names its handles
    again, and its other device keeps delivering."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.enable(MLX5, MsgKind.MSIX, 4)
    guest.enable(MLX5, MsgKind.IMS, 2, first_slot=8)
    guest.enable(IDXD_SUB, MsgKind.IMS, 2, vcpu=2, vector=0x90)
    before = len(guest.calls())
    guest.hv.unplug(MLX5)
    guest.ok(guest.notify(), "GUEST-UNPLUG-001", "NOTIFY with DEVICE_REMOVED")
    guest.clean("GUEST-UNPLUG-001", "GUEST-EVT-001")
    guest.retarget(MLX5, MsgKind.MSIX, 2)
    guest.disable(MLX5, MsgKind.IMS)
    guest.clean("GUEST-UNPLUG-001", "GUEST-ALLOC-004")
    named = [c for c in guest.calls()[before:] if c.device is not None and c.device[:3] == (0, 0, MLX5.devfn)]
    after = [c for c in named if c.fn in (FunctionNumber.MSG_FREE, FunctionNumber.DEVICE_RELEASE)]
    check(not after, "GUEST-UNPLUG-001", "no MSG_FREE or DEVICE_RELEASE for the removed device", str(len(after)))
    left = len(guest.hv.core.state_of(guest.hv.svm).events.pending)
    check(left == 0, "GUEST-EVT-001", "DEVICE_REMOVED acknowledged", f"{left} pending")
    guest.delivers(IDXD_SUB, MsgKind.IMS, 2, "GUEST-UNPLUG-001", vcpu=2, vector=0x90)
