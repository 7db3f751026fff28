"""The event channel in the guest suite (spec "Events"): what the hypervisor model does to a guest under test
(migrate it to a crowded destination, revoke one of its messages) and the checks of how the guest reacted
(GUEST-EVT-001, GUEST-EVT-002, GUEST-REVOKE-001), made on the model's reference hypervisor state."""

from __future__ import annotations

from typing import Any, cast

from ..spec.constants import EventType, FunctionNumber, MsgKind, RevokeReason
from ..spec.harness_constants import DeviceOp, LifecycleEvent
from ..spec.iut import DeviceRef

#: The suite's hypervisor model (:class:`~.guest_host.HostModel`) and one call it recorded (its ``CallRecord``);
#: :mod:`.guest_host` imports this module, so it is not imported here.
HostModel = Any
CallRecord = Any


def migrate(hv: HostModel, event: LifecycleEvent = LifecycleEvent.MIGRATE_CROWDED) -> None:
    """Live-migrate the guest's VM: the destination queues REFETCH and notifies (HV-MIG-002)."""
    hv.hv.lifecycle(hv.vm_id, event, None)
    hv.log(f"platform: {event.name}")


def revoke(hv: HostModel, dev: DeviceRef, kind: int, slot: int) -> int:
    """Revoke the message in ``slot`` by host policy (HV-REVOKE-001/002); its handle."""
    msg = hv.live_at((dev.segment, dev.bus, dev.devfn, dev.pasid), kind, slot)
    if msg is None:
        raise KeyError(f"no message at {dev} kind {kind} slot {slot}")
    hv.core.revoke_message(hv.svm, msg.handle, RevokeReason.HOST_POLICY)
    hv.revoked.add(msg.handle)
    hv.revoked_at[msg.handle] = (len(hv.events), (dev.segment, dev.bus, dev.devfn, dev.pasid), kind, slot)
    handle: int = msg.handle
    hv.log(f"platform: revoke handle {handle:#x} ({dev} kind {kind} slot {slot})")
    return handle


def queue(hv: HostModel, event_type: int) -> None:
    """Queue an event of ``event_type``, also one 1.0 does not define (a later minor's, a vendor's 0x8000-0xFFFF,
    which the guest skips and acknowledges: GUEST-EVT-001), and notify."""
    hv.core.queue_event(hv.svm, cast(EventType, event_type))
    hv.log(f"platform: event of type {event_type:#x} queued")


def on_ack(hv: HostModel, rec: CallRecord) -> None:
    """An EVENT_ACK the guest made: it may acknowledge a REFETCH only once every message whose pair changed is
    re-activated, a REVOKED once the handle is freed (GUEST-EVT-001)."""
    if rec.decoded is None:
        return
    st = hv.core.state_of(hv.svm)
    seq = int(rec.decoded.seq)
    acked = [e for e in hv.fetched if e.seq <= seq]
    if any(e.type is EventType.REFETCH for e in acked) and st.stale:
        hv.violate("GUEST-EVT-001", f"acknowledged REFETCH with {len(st.stale)} changed messages not re-activated")
    if any(e.type is EventType.REFETCH for e in acked) and not [
        c for c in hv.calls(FunctionNumber.GET_INFO) if c.command == rec.command
    ]:
        hv.violate("GUEST-EVT-002", "acknowledged REFETCH without reading GET_INFO again")
    for e in acked:
        if e.type is EventType.REVOKED and e.handle in st.messages:
            hv.violate("GUEST-EVT-001", f"acknowledged REVOKED of handle {e.handle:#x} without freeing it")


def on_fetch(hv: HostModel) -> None:
    """An EVENT_FETCH: remember what the guest was told; then the first of the actions a test asked to happen
    while the guest handles its events (a new event queued after the fetch, before its acknowledgement)."""
    hv.fetched = list(hv.core.state_of(hv.svm).events.pending)
    if hv.while_handling:
        hv.while_handling.pop(0)()


def check_handled(hv: HostModel) -> None:
    """After a NOTIFY: every event acknowledged (GUEST-EVT-001), every changed message re-activated and every
    pair returned with REWRITE written (GUEST-EVT-002), every revoked handle freed (GUEST-REVOKE-001)."""
    st = hv.core.state_of(hv.svm)
    if st.events.pending:
        hv.violate("GUEST-EVT-001", f"events left unacknowledged: {[e.seq for e in st.events.pending]}")
    if st.stale:
        hv.violate("GUEST-EVT-002", f"{len(st.stale)} messages whose pair changed were not re-activated")
    for v in hv.violations_of("GUEST-ALLOC-002"):  # end() found a pair returned with REWRITE and not written
        if v.command == hv.command:
            hv.violate("GUEST-EVT-002", f"re-activated on REFETCH without writing the new pair: {v.detail}")
    for handle in sorted(hv.revoked & set(st.messages)):
        hv.violate("GUEST-REVOKE-001", f"revoked handle {handle:#x} not freed")
    for handle, (since, key, kind, slot) in sorted(hv.revoked_at.items()):
        if kind == MsgKind.MSI or handle in st.messages:
            continue  # an MSI vector the device may not mask; a handle not yet freed is reported above
        stopped = [
            r
            for r in hv.device_ops()
            if r.index >= since
            and r.device == key
            and r.kind == kind
            and ((r.op is DeviceOp.MASK and r.slot == slot) or r.op is DeviceOp.DISABLE)
        ]
        if not stopped:
            hv.violate("GUEST-REVOKE-001", f"revoked handle {handle:#x} freed without masking its slot {slot}")
