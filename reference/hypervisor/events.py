"""EVENT_CONFIG, EVENT_FETCH and EVENT_ACK, the hypervisor's side of the event channel, and the hooks that queue
events (spec "Events"): :meth:`EventCalls.queue_event` (any part of the hypervisor that must tell a guest
something: migration, hot-unplug, revocation), :meth:`EventCalls.revoke_message` (HV-REVOKE-001/002) and the
re-activation of a message whose pair a migration changed (HV-MIG-004).

:class:`EventCalls` is a part of :class:`~.core.HypervisorCore`; each step is a public method a subclass may
override (conformance's faulty hypervisors do).
"""

from __future__ import annotations

from typing import Any

from ...spec.codec import encode
from ...spec.constants import EventConfigFlag, EventType, Limit, RevokeReason, Status
from ...spec.formats import EVENT, EVENT_ACK_IN, EVENT_CONFIG_IN, EVENT_HEADER
from ...spec.records import ActivateEntry, ActivateResult, DeactivateEntry, DeactivateResult
from .call import Call, CallResult
from .eventqueue import Event, EventDevice
from .messages import MessageCalls
from .ports import VmPort
from .vmstate import Claim, DeviceKey, Message, VmPvmsi

PAGE = int(Limit.PAGE_SIZE)


def device_fields(device: EventDevice | None) -> dict[str, Any]:
    """An event's device as the fields of device_id (zero for none)."""
    if device is None:
        return {"segment": 0, "bus": 0, "devfn": 0, "flags": 0, "subdevice_id": 0}
    segment, bus, devfn, pasid = device
    return {
        "segment": segment,
        "bus": bus,
        "devfn": devfn,
        "flags": 0 if pasid is None else 1,
        "subdevice_id": pasid or 0,
    }


class EventCalls(MessageCalls):
    """The event calls and hooks of a hypervisor core (a part of :class:`~.core.HypervisorCore`)."""

    #: Whether a queued event replaces a pending one of its key (HV-EVT-005); a hook for faulty hypervisors.
    coalesce_events: bool = True
    #: The most events the queue holds before it collapses into one REFETCH (HV-EVT-005), None for no bound; a
    #: hook for faulty hypervisors.
    event_limit: int | None = int(Limit.MAX_EVENTS)

    def state_of(self, vm: VmPort) -> VmPvmsi:
        raise NotImplementedError  # the core's VM bookkeeping

    def read_input(self, c: Call, fmt: Any, out_fmt: Any | None = None) -> Any:
        raise NotImplementedError  # the core's input reader

    def write_output(self, c: Call, fmt: Any, value: Any) -> None:
        raise NotImplementedError  # the core's output writer

    # -- the calls -------------------------------------------------------------------------------------------

    def event_config(self, c: Call) -> CallResult:
        """EVENT_CONFIG: register the notification target, checked as an allocation's (HV-EVT-001), or clear it."""
        req = self.read_input(c, EVENT_CONFIG_IN)
        if int(req.flags) & EventConfigFlag.ENABLE:
            self.check_target(c, req.vcpu, req.vector, 1, 0)  # HV-EVT-001 as HV-ALLOC-006
            c.st.events.target = (req.vcpu, req.vector)
        else:
            self.verdict(c, "disable-target", req.vcpu or req.vector, "vcpu/vector without ENABLE")
            c.st.events.target = None
        return CallResult(Status.SUCCESS)

    def event_fetch(self, c: Call) -> CallResult:
        """EVENT_FETCH: every unacknowledged event, oldest first, into a page-sized output block; nothing removed
        (HV-EVT-004)."""
        self.rules.block(c.vm.memory, c.out_gpa, PAGE, "output")
        events = self.fetched_events(c.st)
        header = {"count": len(events), "next_seq": c.st.events.next_seq}
        c.vm.memory.write(c.out_gpa, self.encode_events(header, events))
        return CallResult(Status.SUCCESS, len(events))

    def fetched_events(self, st: VmPvmsi) -> list[Event]:
        """The events EVENT_FETCH returns: every pending one, in sequence order (HV-EVT-004)."""
        return sorted(st.events.pending, key=lambda e: e.seq)

    def encode_events(self, header: dict[str, Any], events: list[Event]) -> bytes:
        """The fetch output: the header, then one event record per event (HV-EVT-004)."""
        parts = [encode(EVENT_HEADER, header)]
        for e in events:
            parts.append(
                encode(
                    EVENT,
                    {
                        "seq": e.seq,
                        "event_type": int(e.type),
                        "reason": int(e.reason),
                        "device": device_fields(e.device),
                        "handle": e.handle,
                    },
                )
            )
        return b"".join(parts)

    def event_ack(self, c: Call) -> CallResult:
        """EVENT_ACK: remove every event up to seq; a seq never issued fails and removes nothing (HV-EVT-006)."""
        req = self.read_input(c, EVENT_ACK_IN)
        self.verdict(c, "seq", req.seq >= c.st.events.next_seq, f"seq {req.seq} was never issued")
        return CallResult(Status.SUCCESS, self.ack_events(c.st, req.seq))

    def ack_events(self, st: VmPvmsi, seq: int) -> int:
        """Remove the events up to ``seq``; the events left (HV-EVT-006)."""
        return st.events.ack(seq)

    # -- the hooks ---------------------------------------------------------------------------------------------

    def queue_event(
        self,
        vm: VmPort,
        type: EventType,
        *,
        device: DeviceKey | None = None,
        handle: int = 0,
        reason: RevokeReason = RevokeReason.NONE,
    ) -> Event:
        """Tell VM ``vm``'s guest something: queue an event (coalesced and bounded, HV-EVT-003, HV-EVT-005) and
        notify the registered target (HV-EVT-002); the event queued.

        The one entry point for every part of the hypervisor that raises an event:

        * a migration destination: ``queue_event(vm, EventType.REFETCH)``, and ``EventType.LIMITS_CHANGED``;
        * hot-unplug of a claimed device: ``queue_event(vm, EventType.DEVICE_REMOVED, device=key)``, ``key`` the
          device as the guest names it, ``(segment, bus, devfn, pasid or None)`` (one event per function and per
          sub-device whose claim ended), after its claim has ended;
        * a revocation: :meth:`revoke_message` (which queues REVOKED with the device, the handle and the reason).

        Events of a VM in any state are queued; RESET empties the queue (HV-EVT-007)."""
        st = self.state_of(vm)
        event = st.events.queue(
            type, reason=reason, device=device, handle=handle, coalesce=self.coalesce_events, limit=self.event_limit
        )
        self.notify(vm, st)
        return event

    def notify(self, vm: VmPort, st: VmPvmsi) -> None:
        """Inject the notification vector on the registered vCPU, if a target is registered (HV-EVT-002)."""
        if st.events.target is not None:
            vcpu, vector = st.events.target
            vm.inject(vcpu, vector)

    def handle_in_slot(self, vm: VmPort, key: DeviceKey, kind: int, slot: int) -> int | None:
        """The handle of the live message of device ``key`` in (``kind``, ``slot``) (MSI: slot 0), or None."""
        for m in self.state_of(vm).messages.values():
            if m.device == key and m.kind == kind and m.slot == slot and not m.revoked:
                return m.handle
        return None

    def revoke_message(self, vm: VmPort, handle: int, reason: RevokeReason) -> bool:
        """Revoke a message (HV-REVOKE-001): its remapping entries released, so its writes are blocked (the
        platform suppresses their fault records, HV-REVOKE-003), the handle kept for MSG_FREE; the guest told with
        REVOKED (HV-REVOKE-002). False when the VM holds no such live message."""
        st = self.state_of(vm)
        msg = st.messages.get(handle)
        if msg is None or msg.revoked:
            return False
        self.revoke_remapping(msg)
        msg.revoked = True
        st.stale.discard(handle)
        self.queue_event(vm, EventType.REVOKED, device=msg.device, handle=handle, reason=reason)
        return True

    def revoke_remapping(self, msg: Message) -> None:
        """Block a revoked message's entries for good (HV-REVOKE-002): released, and on the IMSIC, whose MSI page
        table maps whole interrupt files, its identities disabled."""
        self.remap.revoke(msg.irte)

    # -- what the message calls do differently because of events -------------------------------------------------

    def release_remapping(self, msg: Message) -> None:
        """A revoked message's entries were released when it was revoked (HV-REVOKE-002)."""
        if not msg.revoked:
            super().release_remapping(msg)

    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        """Free one message (revoked or not, HV-REVOKE-002); it is no longer awaiting re-activation."""
        st.stale.discard(handle)
        return super().drop(st, claim, handle)

    def activate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: ActivateEntry) -> ActivateResult:
        """A revoked message cannot be activated (HV-REVOKE-002); the first re-activation of a message whose pair a
        migration changed returns REWRITE (its old pair is what the guest holds) and injects one interrupt per
        active vector at its target, for one possibly lost meanwhile (HV-MIG-004)."""
        msg = self.owned(c, key, e.handle)
        self.verdict(c, "revoked", msg.revoked, f"handle {e.handle:#x} was revoked")
        result = super().activate_entry(c, key, claim, e)
        if e.handle in c.st.stale:
            self.reactivated(c, msg)
        return result

    def deactivate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: DeactivateEntry) -> DeactivateResult:
        """A revoked message delivers nothing already; only MSG_FREE acts on it (HV-REVOKE-002)."""
        msg = self.owned(c, key, e.handle)
        self.verdict(c, "revoked", msg.revoked, f"handle {e.handle:#x} was revoked")
        return super().deactivate_entry(c, key, claim, e)

    def reactivated(self, c: Call, msg: Message) -> None:
        """A message whose pair a migration changed was re-activated: one interrupt per vector at its target, as
        Linux's x86 msi_set_affinity() retriggers one after changing a pair (HV-MIG-004)."""
        c.st.stale.discard(msg.handle)
        for target in msg.targets:
            if target is not None:
                c.vm.inject(target[0], target[1])
