"""The protocol state machines of pvmsi 1.0 as explicit transition tables (spec "Version and feature
negotiation", "Device control", "Reset, FLR, hot-unplug and migration").

No I/O here: the reference hypervisor drives these tables, and the docs' diagrams are drawn from them.
An event with no entry for the current state is not allowed there: the call that would cause it fails with
``WRONG_STATE`` (HV-STATE-001).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar


class VmState(Enum):
    """pvmsi state of one VM."""

    OPEN = "OPEN"
    NEGOTIATED = "NEGOTIATED"


class VmEvent(Enum):
    """What moves a VM between states."""

    NEGOTIATE_ACCEPTED = "NEGOTIATE accepted"
    NEGOTIATE_REFUSED = "NEGOTIATE refused"
    RESET_CALL = "RESET call"
    VM_RESET = "VM reset"


class DeviceState(Enum):
    """pvmsi state of one device (or sub-device) assigned to a VM."""

    EMULATED = "EMULATED"
    CLAIMED = "CLAIMED"
    REMOVED = "REMOVED"


class DeviceEvent(Enum):
    """What moves a device between states."""

    CLAIM = "DEVICE_CLAIM"
    RELEASE = "DEVICE_RELEASE"
    FLR = "FLR"
    RESET_CALL = "RESET call"
    VM_RESET = "VM reset"
    HOT_UNPLUG = "hot-unplug"


class MessageState(Enum):
    """State of one message (a handle) of a claimed device (spec "Messages")."""

    FREE = "FREE"
    RESERVED = "RESERVED"
    ACTIVE = "ACTIVE"


class MessageEvent(Enum):
    """What moves a message between states: MSG_ALLOC (reserve; one-step with PVMSI_ALLOC_ACTIVATE), MSG_ACTIVATE,
    MSG_DEACTIVATE (of some active vectors, or of the last), MSG_FREE, and DEVICE_RELEASE, RESET, a VM reset or a
    hot-unplug (release or reset)."""

    ALLOC = "reserve"
    ALLOC_ACTIVATE = "one-step alloc"
    ACTIVATE = "activate"
    DEACTIVATE_SOME = "deactivate, some left"
    DEACTIVATE_LAST = "deactivate the last"
    FREE = "free"
    DROPPED = "release or reset"


S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


@dataclass(frozen=True)
class Transition(Generic[S, E]):
    """One row of a transition table, with what happens to messages and emulation."""

    state: S
    event: E
    next: S
    effect: str


@dataclass(frozen=True)
class StateMachine(Generic[S, E]):
    """A named transition table."""

    name: str
    initial: S
    transitions: tuple[Transition[S, E], ...]
    #: What a call gets for an event not allowed in the current state.
    refused: str = "A call whose event is not allowed in the current state fails with `WRONG_STATE`."

    def next_state(self, state: S, event: E) -> S | None:
        """The state after ``event`` in ``state``, or ``None`` when the event is not allowed there."""
        for t in self.transitions:
            if t.state is state and t.event is event:
                return t.next
        return None


VM_MACHINE: StateMachine[VmState, VmEvent] = StateMachine(
    "vm",
    VmState.OPEN,
    (
        Transition(VmState.OPEN, VmEvent.NEGOTIATE_ACCEPTED, VmState.NEGOTIATED, "features in force; promise made"),
        Transition(VmState.OPEN, VmEvent.NEGOTIATE_REFUSED, VmState.OPEN, "nothing changes; refusal reported"),
        Transition(VmState.OPEN, VmEvent.RESET_CALL, VmState.OPEN, "nothing to drop"),
        Transition(VmState.OPEN, VmEvent.VM_RESET, VmState.OPEN, "nothing to drop"),
        Transition(VmState.NEGOTIATED, VmEvent.RESET_CALL, VmState.OPEN, "every message freed, every device released"),
        Transition(VmState.NEGOTIATED, VmEvent.VM_RESET, VmState.OPEN, "every message freed, every device released"),
    ),
)

DEVICE_MACHINE: StateMachine[DeviceState, DeviceEvent] = StateMachine(
    "device",
    DeviceState.EMULATED,
    (
        Transition(DeviceState.EMULATED, DeviceEvent.CLAIM, DeviceState.CLAIMED, "emulation of the kinds stops"),
        Transition(DeviceState.EMULATED, DeviceEvent.FLR, DeviceState.EMULATED, "emulated state reset"),
        Transition(DeviceState.EMULATED, DeviceEvent.RESET_CALL, DeviceState.EMULATED, "nothing to drop"),
        Transition(DeviceState.EMULATED, DeviceEvent.VM_RESET, DeviceState.EMULATED, "nothing to drop"),
        Transition(DeviceState.EMULATED, DeviceEvent.HOT_UNPLUG, DeviceState.REMOVED, "device gone"),
        Transition(DeviceState.CLAIMED, DeviceEvent.RELEASE, DeviceState.EMULATED, "messages freed; emulation resumes"),
        Transition(
            DeviceState.CLAIMED,
            DeviceEvent.FLR,
            DeviceState.CLAIMED,
            "messages and handles kept; the guest rewrites the pairs the FLR cleared",
        ),
        Transition(
            DeviceState.CLAIMED, DeviceEvent.RESET_CALL, DeviceState.EMULATED, "messages freed; emulation resumes"
        ),
        Transition(
            DeviceState.CLAIMED, DeviceEvent.VM_RESET, DeviceState.EMULATED, "messages freed; emulation resumes"
        ),
        Transition(
            DeviceState.CLAIMED, DeviceEvent.HOT_UNPLUG, DeviceState.REMOVED, "messages freed; remapping revoked"
        ),
    ),
)

#: A message (HV-ACT-001..HV-ACT-006): FREE is where a handle names nothing (before MSG_ALLOC, after MSG_FREE; a
#: freed handle is never reissued, HV-SEC-005).  An event with no row here fails the entry: MSG_ACTIVATE,
#: MSG_DEACTIVATE or MSG_FREE naming a FREE handle with UNKNOWN_HANDLE, MSG_DEACTIVATE of a RESERVED message (or
#: vector) with NOT_ACTIVE (HV-ACT-005).  A message is ACTIVE while at least one of its vectors is.
MESSAGE_MACHINE: StateMachine[MessageState, MessageEvent] = StateMachine(
    "message",
    MessageState.FREE,
    (
        Transition(
            MessageState.FREE,
            MessageEvent.ALLOC,
            MessageState.RESERVED,
            "handle returned, no pair; remapping entries set aside, delivering nothing",
        ),
        Transition(
            MessageState.FREE,
            MessageEvent.ALLOC_ACTIVATE,
            MessageState.ACTIVE,
            "handle and pair returned; every vector delivers to its target",
        ),
        Transition(
            MessageState.RESERVED,
            MessageEvent.ACTIVATE,
            MessageState.ACTIVE,
            "pair returned with REWRITE; the vectors named deliver to their targets",
        ),
        Transition(
            MessageState.ACTIVE,
            MessageEvent.ACTIVATE,
            MessageState.ACTIVE,
            "target set or changed; REWRITE only when the pair changed",
        ),
        Transition(
            MessageState.ACTIVE,
            MessageEvent.DEACTIVATE_SOME,
            MessageState.ACTIVE,
            "the vectors named stop delivering; the others deliver",
        ),
        Transition(
            MessageState.ACTIVE,
            MessageEvent.DEACTIVATE_LAST,
            MessageState.RESERVED,
            "entries blocked (fault reporting suppressed where the IOMMU can); handle kept",
        ),
        Transition(MessageState.RESERVED, MessageEvent.FREE, MessageState.FREE, "entries released; handle dead"),
        Transition(MessageState.ACTIVE, MessageEvent.FREE, MessageState.FREE, "entries revoked; handle dead"),
        Transition(MessageState.RESERVED, MessageEvent.DROPPED, MessageState.FREE, "entries released; handle dead"),
        Transition(MessageState.ACTIVE, MessageEvent.DROPPED, MessageState.FREE, "entries revoked; handle dead"),
    ),
    "An entry whose event is not allowed fails with `UNKNOWN_HANDLE` for a `FREE` handle (MSG_ACTIVATE, "
    "MSG_DEACTIVATE, MSG_FREE) and `NOT_ACTIVE` for MSG_DEACTIVATE of a `RESERVED` message or vector.",
)

MACHINES: tuple[
    StateMachine[VmState, VmEvent] | StateMachine[DeviceState, DeviceEvent] | StateMachine[MessageState, MessageEvent],
    ...,
] = (
    VM_MACHINE,
    DEVICE_MACHINE,
    MESSAGE_MACHINE,
)
