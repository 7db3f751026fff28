"""Faulty guests of the event channel (spec "Events"): each a subclass of the reference guest core overriding one
step of its :class:`~pvmsi.reference.guest.events.GuestEvents`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...reference.guest.actions import GuestDevice
from ...reference.guest.core import GuestCore, GuestMessage, Op
from ...spec.constants import ActivateEntryFlag, EventType, FunctionNumber
from ...spec.formats import ACTIVATE_ENTRY, ACTIVATE_RESULT
from .guests import fault


@fault("acks-unhandled-refetch", "GUEST-EVT-001", "acknowledges REFETCH without acting on it")
class _AcksUnhandled(GuestCore):
    def act(self, e: Any) -> Op:
        if e.event_type == EventType.REFETCH:
            yield from ()
            return "REFETCH ignored"
        return (yield from super().act(e))


@fault("never-acks", "GUEST-EVT-001", "acts on the events but never acknowledges them")
class _NeverAcks(GuestCore):
    def handle_events(self) -> Op:
        events, _next = yield from self.fetch_events()
        handled = []
        for e in events:
            handled.append((yield from self.act(e)))
        return handled


@fault("reactivates-without-rewriting", "GUEST-EVT-002", "re-activates on REFETCH but writes no pair returned")
class _NoRewrite(GuestCore):
    def reactivate(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        block = int(ActivateEntryFlag.BLOCK)
        entries = [
            {"handle": m.handle, "vcpu": m.vcpu, "vector": m.vector, "flags": 0, "entry_flags": block, "index": 0}
            for m in msgs
        ]
        results, status = yield from self.batch(
            FunctionNumber.MSG_ACTIVATE, dev, ACTIVATE_ENTRY, ACTIVATE_RESULT, entries
        )
        return len(results), 0, status


@fault("keeps-revoked", "GUEST-REVOKE-001", "acknowledges REVOKED and keeps the handle")
class _KeepsRevoked(GuestCore):
    def revoked(self, dev: GuestDevice, handle: int) -> Op:
        yield from ()
        return False
