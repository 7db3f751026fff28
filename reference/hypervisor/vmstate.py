"""The pvmsi state the hypervisor keeps per VM: negotiation, claims, messages, quotas and handles."""

from __future__ import annotations

import random
import secrets
import struct
from dataclasses import dataclass, field

from ...spec.constants import MsgKind
from ...spec.states import DEVICE_MACHINE as DEVICE_MACHINE
from ...spec.states import VM_MACHINE, DeviceEvent, DeviceState, VmEvent, VmState
from .config import HypervisorConfig
from .eventqueue import EventQueue
from .ports import AssignedDevice, Source

#: A device as the guest names it: (segment, bus, devfn, pasid or None).
DeviceKey = tuple[int, int, int, int | None]

#: The target of one vector of a message: (vcpu, vector, posted), or None while the vector is reserved.
Target = tuple[int, int, bool] | None


@dataclass(slots=True)
class Message:
    """One message (for MSI, one block of ``count`` vectors): reserved while no vector has a target, active while
    one has (spec/states.py MESSAGE_MACHINE).  ``vcpu``, ``vector`` and ``posted`` are the last block-wide target;
    ``targets`` each vector's; ``address``/``data`` the pair last returned (zero before the first activation)."""

    handle: int
    device: DeviceKey
    kind: MsgKind
    slot: int
    count: int
    vcpu: int
    vector: int
    posted: bool
    irte: int
    address: int
    data: int
    targets: list[Target] = field(default_factory=list)
    #: Revoked by the hypervisor (HV-REVOKE-002): its entries are released, the handle waits for MSG_FREE.
    revoked: bool = False

    @property
    def active(self) -> bool:
        """Whether a vector of the message has a target (the message is ACTIVE)."""
        return any(t is not None for t in self.targets)


@dataclass(slots=True)
class Claim:
    """A claimed device: the kinds taken over, and what it holds."""

    device: AssignedDevice
    kinds: int
    #: The requester the device's messages carry, fixed while it is assigned (cached for the hot path).
    source: Source
    state: DeviceState = DeviceState.CLAIMED
    vectors: int = 0
    slots: set[tuple[MsgKind, int]] = field(default_factory=set)
    #: Per MsgKind value (index 0 unused): the MSI vector maximum, the MSI-X table size and the IMS slots the
    #: device has; hardware facts, fixed while it is assigned (cached for the hot path, HV-ALLOC-003/004).
    limits: tuple[int, int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        dev = self.device
        self.limits = (0, dev.msi_max_vectors, dev.msix_table_size, dev.ims_slots)


_POOL_WORDS = struct.Struct("<512I")  # the random words drawn from the OS at a time


class HandleSource:
    """Handles: a never-reused counter in bits 63:32, 32 unpredictable bits below (HV-SEC-004, HV-SEC-005)."""

    def __init__(self, seed: int | None) -> None:
        self._rng: random.Random | None = random.Random(seed) if seed is not None else None
        self.counter = 0
        self._pool: list[int] = []

    def next(self) -> int:
        self.counter += 1
        if self._rng is not None:
            low = self._rng.getrandbits(32)
        else:
            if not self._pool:
                self._pool = list(_POOL_WORDS.unpack(secrets.token_bytes(_POOL_WORDS.size)))
            low = self._pool.pop()
        return (self.counter << 32) | low


@dataclass
class VmPvmsi:
    """Per-VM protocol state."""

    handles: HandleSource
    #: What GET_INFO reports and the limits enforced for this VM (per-VM knobs: HypervisorCore.configure_vm).
    config: HypervisorConfig
    state: VmState = VM_MACHINE.initial
    features: int = 0
    claims: dict[DeviceKey, Claim] = field(default_factory=dict)
    messages: dict[int, Message] = field(default_factory=dict)
    vectors: int = 0
    #: The host-to-guest event queue and notification target (spec "Events").
    events: EventQueue = field(default_factory=lambda: EventQueue())
    #: Handles whose pair a migration changed and that the guest has not re-activated yet (HV-MIG-004).
    stale: set[int] = field(default_factory=set)

    def move(self, event: VmEvent) -> None:
        nxt = VM_MACHINE.next_state(self.state, event)
        if nxt is None:  # pragma: no cover - callers check the state first
            raise AssertionError(f"{event} not allowed in {self.state}")
        self.state = nxt


def device_event(claim: Claim, event: DeviceEvent) -> DeviceState:
    """Apply a device-machine event to a claim (spec/states.py), returning the new state."""
    nxt = DEVICE_MACHINE.next_state(claim.state, event)
    if nxt is None:  # pragma: no cover - callers check the state first
        raise AssertionError(f"{event} not allowed in {claim.state}")
    claim.state = nxt
    return nxt
