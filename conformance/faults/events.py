"""Faults of the event channel (spec "Events") and of migration that moves pairs (spec "Reset, FLR, hot-unplug and
migration": HV-MIG-002, HV-MIG-004, HV-MIG-005), each overriding one public hook of the core's
:class:`~pvmsi.reference.hypervisor.events.EventCalls` or of the system."""

from __future__ import annotations

from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.eventqueue import Event
from ...reference.hypervisor.ports import VmPort
from ...reference.hypervisor.vmstate import DeviceKey, Message, VmPvmsi
from ...spec.constants import EventConfigFlag, EventType, RevokeReason, Status
from ...spec.formats import EVENT_ACK_IN, EVENT_CONFIG_IN
from ...spec.states import VmEvent
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add("event-target-unchecked", "HV-EVT-001", "EVENT_CONFIG registers a vCPU the VM does not have")
class EventTargetUnchecked(HypervisorCore):
    def event_config(self, c: Call) -> CallResult:
        req = self.read_input(c, EVENT_CONFIG_IN)
        enabled = bool(int(req.flags) & EventConfigFlag.ENABLE)
        c.st.events.target = (req.vcpu, req.vector) if enabled else None
        return CallResult(Status.SUCCESS)


@faults.add("event-not-notified", "HV-EVT-002", "queuing an event injects no notification")
class EventNotNotified(HypervisorCore):
    def notify(self, vm: VmPort, st: VmPvmsi) -> None:
        return None


@faults.add("event-seq-restarts", "HV-EVT-003", "RESET restarts the event sequence at 1")
class EventSeqRestarts(HypervisorCore):
    def reset_vm(self, vm: VmPort, event: VmEvent = VmEvent.VM_RESET) -> int:
        freed = super().reset_vm(vm, event)
        self.state_of(vm).events.next_seq = 1
        return freed


@faults.add("event-fetch-consumes", "HV-EVT-004", "EVENT_FETCH removes the events it returns")
class EventFetchConsumes(HypervisorCore):
    def fetched_events(self, st: VmPvmsi) -> list[Event]:
        events = super().fetched_events(st)
        st.events.pending = []
        return events


@faults.add("event-not-coalesced", "HV-EVT-005", "an event whose key is pending is queued a second time")
class EventNotCoalesced(HypervisorCore):
    coalesce_events = False
    event_limit = None


@faults.add("event-ack-future", "HV-EVT-006", "EVENT_ACK accepts a sequence number never issued")
class EventAckFuture(HypervisorCore):
    def event_ack(self, c: Call) -> CallResult:
        req = self.read_input(c, EVENT_ACK_IN)
        return CallResult(Status.SUCCESS, self.ack_events(c.st, req.seq))


@faults.add("reset-keeps-events", "HV-EVT-007", "RESET leaves the event queue and the notification target")
class ResetKeepsEvents(HypervisorCore):
    def reset_vm(self, vm: VmPort, event: VmEvent = VmEvent.VM_RESET) -> int:
        st = self.state_of(vm)
        saved = (list(st.events.pending), st.events.target)
        freed = super().reset_vm(vm, event)
        st.events.pending, st.events.target = saved
        return freed


@faults.add("events-block-calls", "HV-EVT-008", "message calls fail with WRONG_STATE while events are pending")
class EventsBlockCalls(HypervisorCore):
    def msg_alloc(self, c: Call) -> CallResult:
        if c.st.events.pending:
            return CallResult(Status.WRONG_STATE, 0, "events pending", "HV-EVT-008")
        return super().msg_alloc(c)


@faults.add("migration-no-refetch", "HV-MIG-002", "the migration destination queues no REFETCH")
class MigrationNoRefetch(HypervisorCore):
    def queue_event(
        self,
        vm: VmPort,
        type: EventType,
        *,
        device: DeviceKey | None = None,
        handle: int = 0,
        reason: RevokeReason = RevokeReason.NONE,
    ) -> Event:
        if type is EventType.REFETCH:
            st = self.state_of(vm)
            st.events.next_seq += 1
            return Event(st.events.next_seq - 1, type)
        return super().queue_event(vm, type, device=device, handle=handle, reason=reason)


@faults.add("reactivation-no-retrigger", "HV-MIG-004", "re-activating a message whose pair changed injects nothing")
class ReactivationNoRetrigger(HypervisorCore):
    def reactivated(self, c: Call, msg: Message) -> None:
        c.st.stale.discard(msg.handle)


@faults.add("migration-no-limits-changed", "HV-MIG-005", "a destination with other limits queues no LIMITS_CHANGED")
class MigrationNoLimitsChanged(HypervisorCore):
    def queue_event(
        self,
        vm: VmPort,
        type: EventType,
        *,
        device: DeviceKey | None = None,
        handle: int = 0,
        reason: RevokeReason = RevokeReason.NONE,
    ) -> Event:
        if type is EventType.LIMITS_CHANGED:
            return Event(0, type)
        return super().queue_event(vm, type, device=device, handle=handle, reason=reason)


@faults.add("revoke-keeps-delivering", "HV-REVOKE-002", "a revoked message is reported but its entries stay live")
class RevokeKeepsDelivering(HypervisorCore):
    def revoke_message(self, vm: VmPort, handle: int, reason: RevokeReason) -> bool:
        msg = self.state_of(vm).messages.get(handle)
        if msg is None:
            return False
        self.queue_event(vm, EventType.REVOKED, device=msg.device, handle=handle, reason=reason)
        return True


@faults.add("event-queue-unbounded", "HV-EVT-005", "the event queue grows past PVMSI_MAX_EVENTS")
class EventQueueUnbounded(HypervisorCore):
    event_limit = None
