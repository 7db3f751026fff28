"""The guest's side of the event channel (spec "Events"): :class:`GuestEvents`, a part of
:class:`~.core.GuestCore`. It registers a notification target; its notification handler fetches, acts on every
event in order and acknowledges (GUEST-EVT-001), re-activating and rewriting on REFETCH (GUEST-EVT-002), freeing
a revoked message (GUEST-REVOKE-001) and dropping a removed device (GUEST-UNPLUG-001).

Every re-activation goes through :meth:`GuestEvents.reactivate`, the one place that issues it
(MSG_ACTIVATE of each message, whole, at its own target).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from ...spec.codec import decode, encode
from ...spec.constants import (
    ActivateEntryFlag,
    ActivateFlag,
    EventConfigFlag,
    EventType,
    FunctionNumber,
    Limit,
    MsgKind,
    Status,
)
from ...spec.formats import (
    ACTIVATE_ENTRY,
    ACTIVATE_RESULT,
    EVENT,
    EVENT_ACK_IN,
    EVENT_CONFIG_IN,
    EVENT_HEADER,
    HV_INFO,
)
from ...spec.layout import layout_of
from .actions import Action, GuestDevice, MaskSlot
from .errors import GuestError

#: A message the guest holds (:class:`~.core.GuestMessage`, which this part of the core does not import).
GuestMessage = Any

Op = Generator[Action, Any, Any]

PAGE = int(Limit.PAGE_SIZE)
_HEADER, _EVENT = layout_of(EVENT_HEADER).size, layout_of(EVENT).size


class GuestEvents:
    """The guest's event handling (a part of :class:`~.core.GuestCore`); each step a public method a faulty guest
    may override."""

    claimed: dict[GuestDevice, int]
    messages: dict[GuestDevice, dict[tuple[MsgKind, int], GuestMessage]]
    log: list[str]
    max_batch: int
    message_format: int

    def call(self, fn: FunctionNumber, block: bytes | None = None, out_size: int = 0) -> Op:
        raise NotImplementedError  # the core's

    def batch(
        self, fn: FunctionNumber, dev: GuestDevice, entry_fmt: Any, result_fmt: Any, entries: Sequence[dict[str, Any]]
    ) -> Op:
        raise NotImplementedError  # the core's

    def rewrite(self, m: GuestMessage) -> Op:
        raise NotImplementedError  # the core's

    def free(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        raise NotImplementedError  # the core's

    def drop_freed(self, dev: GuestDevice, kind: MsgKind, msgs: Sequence[GuestMessage]) -> None:
        raise NotImplementedError  # the core's

    def on_unplug(self, dev: GuestDevice) -> int:
        raise NotImplementedError  # the core's

    def configure_events(self, vcpu: int, vector: int) -> Op:
        """EVENT_CONFIG: have the hypervisor notify (vcpu, vector) when it queues an event; the status."""
        block = encode(EVENT_CONFIG_IN, {"flags": int(EventConfigFlag.ENABLE), "vcpu": vcpu, "vector": vector})
        status, _, _ = yield from self.call(FunctionNumber.EVENT_CONFIG, block)
        if status == Status.SUCCESS:
            self.log.append(f"events: notification on vcpu {vcpu} vector {vector:#x}")
        return status

    def fetch_events(self) -> Op:
        """EVENT_FETCH into the output page: (events oldest first, next_seq)."""
        status, count, out = yield from self.call(FunctionNumber.EVENT_FETCH, None, PAGE)
        if status != Status.SUCCESS:
            raise GuestError("EVENT_FETCH", status)
        header = decode(EVENT_HEADER, out[:_HEADER])
        n = min(count, header.count, int(Limit.MAX_EVENTS))
        events = [decode(EVENT, out[_HEADER + i * _EVENT : _HEADER + (i + 1) * _EVENT]) for i in range(n)]
        return events, header.next_seq

    def handle_events(self) -> Op:
        """The notification handler: fetch, act on each event in order, acknowledge what was acted on, fetch again
        while events are left (GUEST-EVT-001); the events handled, as log lines."""
        handled: list[str] = []
        while True:
            events, _next = yield from self.fetch_events()
            if not events:
                return handled
            for e in events:
                line = yield from self.act(e)
                handled.append(f"event {e.seq}: {line}")
            block = encode(EVENT_ACK_IN, {"seq": events[-1].seq})
            status, left, _ = yield from self.call(FunctionNumber.EVENT_ACK, block)
            if status != Status.SUCCESS:
                raise GuestError("EVENT_ACK", status)
            self.log.extend(handled[-len(events) :])
            if not left:
                return handled

    def act(self, e: Any) -> Op:
        """Act on one event; what was done, in words."""
        dev = GuestDevice(e.device.segment, e.device.bus, e.device.devfn, e.device.subdevice_id or None)
        if e.event_type == EventType.REFETCH:
            rewritten = yield from self.refetch()
            return f"REFETCH: every message re-activated, {rewritten} pairs rewritten"
        if e.event_type == EventType.LIMITS_CHANGED:
            yield from self.reread_info()
            return f"LIMITS_CHANGED: max_batch now {self.max_batch}"
        if e.event_type == EventType.REVOKED:
            freed = yield from self.revoked(dev, e.handle)
            return f"REVOKED (reason {e.reason}) handle {e.handle:#x}: {'freed' if freed else 'not held'}"
        if e.event_type == EventType.DEVICE_REMOVED:
            if dev not in self.claimed:  # GUEST-REFUSE-003: a device it did not claim is none of its business
                return "DEVICE_REMOVED of a device not claimed: ignored"
            dropped = self.on_unplug(dev)  # GUEST-UNPLUG-001: dropped, never freed
            return f"DEVICE_REMOVED: {dropped} messages dropped"
        return f"type {e.event_type} unknown: skipped"

    def reread_info(self) -> Op:
        """GET_INFO again: the limits and the format may differ after a migration (HV-MIG-005)."""
        status, _, out = yield from self.call(FunctionNumber.GET_INFO, None, layout_of(HV_INFO).size)
        if status == Status.SUCCESS:
            info = decode(HV_INFO, out)
            self.max_batch = max(1, info.max_batch)
            self.message_format = int(info.message_format)

    def refetch(self) -> Op:
        """GUEST-EVT-002: GET_INFO again, then re-activate every message it holds and write every pair that changed;
        a message found revoked is freed (GUEST-REVOKE-001). The pairs rewritten."""
        yield from self.reread_info()
        rewritten = 0
        for dev in list(self.claimed):
            msgs = list(self.messages.get(dev, {}).values())
            while msgs:
                done, changed, status = yield from self.reactivate(dev, msgs)
                rewritten += changed
                if status == Status.SUCCESS:
                    break
                if status != Status.REVOKED:
                    raise GuestError("MSG_ACTIVATE", status, f"re-activating entry {done}")
                yield from self.free_revoked(dev, msgs[done])
                msgs = msgs[done + 1 :]
        return rewritten

    def reactivate(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        """Re-activate messages, whole, at their own targets, the one place that does (MSG_ACTIVATE), writing every
        pair returned with REWRITE into its slot; (messages done, pairs rewritten, status): on a failure ``msgs[done]``
        is the message that failed."""
        block = int(ActivateEntryFlag.BLOCK)
        entries = [
            {"handle": m.handle, "vcpu": m.vcpu, "vector": m.vector, "flags": 0, "entry_flags": block, "index": 0}
            for m in msgs
        ]
        results, status = yield from self.batch(
            FunctionNumber.MSG_ACTIVATE, dev, ACTIVATE_ENTRY, ACTIVATE_RESULT, entries
        )
        changed = 0
        for m, r in zip(msgs, results, strict=False):
            if r.flags & ActivateFlag.REWRITE:
                m.address, m.data = r.address, r.data
                yield from self.rewrite(m)  # masked around the write; a claimed MSI capability is the hypervisor's
                changed += 1
        return len(results), changed, status

    def revoked(self, dev: GuestDevice, handle: int) -> Op:
        """GUEST-REVOKE-001: stop using the handle (mask its slot) and free it; whether the guest held it."""
        for m in list(self.messages.get(dev, {}).values()):
            if m.handle == handle:
                yield from self.free_revoked(dev, m)
                return True
        return False

    def free_revoked(self, dev: GuestDevice, m: GuestMessage) -> Op:
        """Mask a revoked message's slot, free its handle and forget it (GUEST-REVOKE-001)."""
        if m.kind is not MsgKind.MSI:
            yield MaskSlot(dev, m.kind, m.slot, True)
        yield from self.free(dev, [m])
        self.drop_freed(dev, m.kind, [m])
