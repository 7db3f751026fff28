"""The per-VM host-to-guest event queue (spec "Events"): ordered, coalesced, bounded, acknowledged."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...spec.constants import EventType, Limit, RevokeReason

#: A device as the guest names it: (segment, bus, devfn, pasid or None) (as :data:`.vmstate.DeviceKey`).
EventDevice = tuple[int, int, int, int | None]


@dataclass(frozen=True, slots=True)
class Event:
    """One queued event."""

    seq: int
    type: EventType
    reason: RevokeReason = RevokeReason.NONE
    device: EventDevice | None = None
    handle: int = 0

    @property
    def key(self) -> tuple[EventType, EventDevice | None, int]:
        """What coalesces: at most one pending event per (type, device, handle) (HV-EVT-005)."""
        return (self.type, self.device, self.handle)


@dataclass
class EventQueue:
    """The events of one VM not yet acknowledged, oldest first, and its notification target."""

    #: The sequence number the next event gets: never reused during the VM's life (HV-EVT-003).
    next_seq: int = 1
    pending: list[Event] = field(default_factory=list)
    #: (vcpu, vector) of the notification (HV-EVT-001), or None.
    target: tuple[int, int] | None = None

    def queue(
        self,
        type: EventType,
        *,
        reason: RevokeReason = RevokeReason.NONE,
        device: EventDevice | None = None,
        handle: int = 0,
        coalesce: bool = True,
        limit: int | None = int(Limit.MAX_EVENTS),
    ) -> Event:
        """Queue an event with the next sequence number (HV-EVT-003), coalesced with a pending one of the same key
        and bounded by ``limit`` (PVMSI_MAX_EVENTS), an overflow collapsing the queue into one REFETCH (HV-EVT-005).
        ``coalesce`` False and ``limit`` None exist for the deliberately faulty hypervisors only."""
        event = Event(self.next_seq, type, reason, device, handle)
        self.next_seq += 1
        if coalesce:
            self.pending = [e for e in self.pending if e.key != event.key]
        if limit is not None and len(self.pending) >= limit:
            event = Event(event.seq, EventType.REFETCH)
            self.pending = []
        self.pending.append(event)
        return event

    def ack(self, seq: int) -> int:
        """Remove every event up to ``seq`` (the caller checked ``seq < next_seq``); the events left (HV-EVT-006)."""
        self.pending = [e for e in self.pending if e.seq > seq]
        return len(self.pending)

    def clear(self) -> None:
        """RESET or a VM reset: no event, no target; the sequence goes on (HV-EVT-003, HV-EVT-007)."""
        self.pending = []
        self.target = None
