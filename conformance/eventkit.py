"""The event channel as the hypervisor suite uses it (spec "Events"): EVENT_CONFIG, EVENT_FETCH and EVENT_ACK
issued through a :class:`~.toolkit.Session`, and the guest's side of a migration (re-activate every message,
write every pair returned with REWRITE).

Every re-activation goes through :func:`reactivate`, the one place that issues it (MSG_ACTIVATE of the whole
message, at its own target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..spec.codec import DecodeError
from ..spec.constants import ActivateFlag, EventConfigFlag, EventType, FunctionNumber, Limit, MsgKind
from ..spec.fastcodec import fast
from ..spec.formats import EVENT_ACK_IN, EVENT_CONFIG_IN
from ..spec.iut import DeviceRef
from .toolkit import PAGE_OUT_GPA, Outcome, Session, encode

PAGE = int(Limit.PAGE_SIZE)
_HEADER, _EVENT = fast("event_header"), fast("event")


@dataclass(frozen=True)
class Fetched:
    """What one EVENT_FETCH returned: its status and value, the header's next_seq and the events (None when the
    output did not decode)."""

    status: int
    value: int
    next_seq: int
    events: list[Any] | None

    def types(self) -> list[EventType | int]:
        return [
            EventType(e.event_type) if e.event_type in EventType._value2member_map_ else e.event_type
            for e in self.events or []
        ]

    def seqs(self) -> list[int]:
        return [e.seq for e in self.events or []]


@dataclass(frozen=True)
class Held:
    """A message the suite (playing the guest) holds: where it lives and its target."""

    dev: DeviceRef
    kind: MsgKind
    slot: int
    handle: int
    vcpu: int
    vector: int
    count: int = 1


def config(session: Session, vcpu: int = 0, vector: int = 0, *, enable: bool = True, **kw: Any) -> Outcome:
    """EVENT_CONFIG: register (vcpu, vector) as the notification target, or clear it; ``vector`` is x86-style, moved
    into the platform's range (:meth:`~.toolkit.Session.wire_vector`) when enabling."""
    flags = int(EventConfigFlag.ENABLE) if enable else 0
    wire = session.wire_vector(vector) if enable else vector
    block = encode(EVENT_CONFIG_IN, {"flags": flags, "vcpu": vcpu, "vector": wire})
    return session.call(FunctionNumber.EVENT_CONFIG, block, **kw)


def fetch(session: Session, **kw: Any) -> Fetched:
    """EVENT_FETCH into a whole page, decoded."""
    out = session.call(FunctionNumber.EVENT_FETCH, None, PAGE, out_gpa=PAGE_OUT_GPA, **kw)
    try:
        header = _HEADER.decode_record(out.out[: _HEADER.size])
        events = [
            _EVENT.decode_record(out.out[_HEADER.size + i * _EVENT.size : _HEADER.size + (i + 1) * _EVENT.size])
            for i in range(min(header.count, int(Limit.MAX_EVENTS)))
        ]
    except DecodeError:
        return Fetched(out.status, out.value, 0, None)
    return Fetched(out.status, out.value, header.next_seq, events)


def ack(session: Session, seq: int, **kw: Any) -> Outcome:
    """EVENT_ACK of every event up to ``seq``."""
    return session.call(FunctionNumber.EVENT_ACK, encode(EVENT_ACK_IN, {"seq": seq}), **kw)


def reactivate(session: Session, held: Held, **kw: Any) -> Any:
    """Re-activate one message, whole, at its own target (MSG_ACTIVATE): the result record, or the batch's status
    when it has none."""
    entry = {"handle": held.handle, "vcpu": held.vcpu, "vector": held.vector, "flags": 0}
    b = session.retarget(held.dev, [entry], **kw)
    return b.results[0] if b.results and b.results[0] is not None else b.status


def reactivate_all(session: Session, messages: Sequence[Held]) -> list[tuple[Held, Any]]:
    """GUEST-EVT-002: re-activate every message and write every pair returned with REWRITE into its device (a
    claimed MSI capability the hypervisor writes itself); each message with its result."""
    done = []
    for held in messages:
        result = reactivate(session, held)
        if not isinstance(result, int) and int(result.flags) & ActivateFlag.REWRITE and held.kind is not MsgKind.MSI:
            session.program(held.dev, held.kind, held.slot, result.address, result.data)
        done.append((held, result))
    return done
