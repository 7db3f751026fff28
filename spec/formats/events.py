"""The formats of EVENT_CONFIG, EVENT_FETCH and EVENT_ACK: the host-to-guest event channel (spec "Events").

EVENT_FETCH's output block is an :data:`EVENT_HEADER` header followed by ``count`` :data:`EVENT` records,
oldest (lowest sequence number) first.
"""

from __future__ import annotations

from typing import Any

import construct as cs

from ..constants import EventConfigFlag, EventType, RevokeReason
from ..fields import FlagsField, Reserved, ValuesOf, define, u16, u32, u64
from .device import DEVICE_ID

EVENT_CONFIG_IN: Any = define(
    "event_config_in",
    "events",
    "IN of EVENT_CONFIG: the notification target, or none.",
    cs.Struct(
        "flags" / FlagsField(u32, EventConfigFlag) * "PVMSI_EVCFG_* flags.",
        "vcpu" / u32 * "Target vCPU by architectural id (as for MSG_ALLOC); zero without ENABLE.",
        "vector" / u32 * "Guest vector the notification arrives on (as for MSG_ALLOC); zero without ENABLE.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

EVENT_HEADER: Any = define(
    "event_header",
    "events",
    "Header of EVENT_FETCH's output page; count event records follow it directly, oldest first.",
    cs.Struct(
        "count" / u16 * "Event records following this header: every unacknowledged event (at most PVMSI_MAX_EVENTS).",
        "reserved0" / Reserved(u16) * "Reserved, zero.",
        "reserved1" / Reserved(u32) * "Reserved, zero.",
        "next_seq" / u64 * "The sequence number the next event queued will carry (one above the newest ever queued).",
    ),
)

EVENT: Any = define(
    "event",
    "events",
    "One host-to-guest event, as EVENT_FETCH returns it.",
    cs.Struct(
        "seq" / u64 * "Sequence number: non-zero, increasing by one per event queued, never reused for the VM.",
        "event_type"
        / ValuesOf(u16, EventType)
        * "PVMSI_EVENT_*; a guest skips (and acknowledges) a type it does not know.",
        "reason" / ValuesOf(u16, RevokeReason) * "For REVOKED, why (PVMSI_REVOKE_*); zero for any other type.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
        "device" / DEVICE_ID * "The device the event concerns (REVOKED, DEVICE_REMOVED); zero otherwise.",
        "handle" / u64 * "The message the event concerns (REVOKED); zero otherwise.",
    ),
)

EVENT_ACK_IN: Any = define(
    "event_ack_in",
    "events",
    "IN of EVENT_ACK: acknowledge every event whose sequence number is at most seq.",
    cs.Struct(
        "seq" / u64 * "The newest sequence number acknowledged; below next_seq.",
        "reserved0" / Reserved(u64) * "Reserved, zero.",
    ),
)

#: The formats of this module, in definition order (:mod:`pvmsi.spec.formats` registers them).
DEFINED: tuple[Any, ...] = (EVENT_CONFIG_IN, EVENT_HEADER, EVENT, EVENT_ACK_IN)
