"""The VM state the fuzzer's model keeps (:mod:`.fuzz_model`): the devices as the guest sees them, its claims and
its live messages as the guest asked for them and was handed them (spec "Device control", "Allocate, retarget
and free", "Reset, FLR, hot-unplug and migration")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..spec.constants import EventType, Limit
from ..spec.states import VmState
from .hypervisor.config import HypervisorConfig

DeviceKey = tuple[int, int, int, int | None]


@dataclass(frozen=True, slots=True)
class Dev:
    """A device as the guest sees it (spec "Device control"): its vectors, table, slots and flags."""

    msi: int
    msix: int
    ims: int
    isolated: bool
    needs_viommu: bool
    shared_source: bool = False

    @property
    def kinds(self) -> int:
        return 1 * bool(self.msi) | 2 * bool(self.msix) | 4 * bool(self.ims)  # KindMask (kind_bit)

    def limit(self, kind: int) -> int:
        return (0, self.msi, self.msix, self.ims)[kind]


@dataclass(slots=True)
class Msg:
    """A live message as the guest asked for it and was handed it."""

    device: DeviceKey
    kind: int
    slot: int
    count: int
    vcpu: int
    vector: int
    posted: bool
    address: int
    data: int
    #: Each vector's (vcpu, vector, posted), None while reserved (HV-ACT-001, HV-MSI-001).
    targets: list[tuple[int, int, bool] | None] = field(default_factory=list)


@dataclass(slots=True)
class Claim:
    kinds: int
    vectors: int = 0
    slots: set[tuple[int, int]] = field(default_factory=set)


@dataclass(slots=True)
class VmModel:
    """One VM's pvmsi state, as the spec says it must be."""

    vm_id: int
    vcpus: int
    config: HypervisorConfig
    devices: Callable[[], dict[DeviceKey, Dev]]
    #: Whether the guest has enabled a kind of the device through emulation (the platform's MSI/MSI-X state).
    emulated: Callable[[DeviceKey, int], bool] = lambda key, kind: False
    state: VmState = VmState.OPEN
    features: int = 0
    claims: dict[DeviceKey, Claim] = field(default_factory=dict)
    messages: dict[int, Msg] = field(default_factory=dict)
    vectors: int = 0
    issued: set[int] = field(default_factory=set)
    #: The event channel (spec "Events"): the next sequence number, the pending (seq, type, device) events (the
    #: device of a DEVICE_REMOVED, None otherwise), the target.
    event_seq: int = 1
    events: list[tuple[int, int, DeviceKey | None]] = field(default_factory=list)
    event_target: tuple[int, int] | None = None

    def queue_event(self, type: int, device: DeviceKey | None = None) -> None:
        """An event (REFETCH, LIMITS_CHANGED, or DEVICE_REMOVED of ``device``): coalesced with a pending one of its
        type and device, given the next sequence number, and the queue collapsed into one REFETCH when it would
        exceed PVMSI_MAX_EVENTS (HV-EVT-003, HV-EVT-005)."""
        seq = self.event_seq
        self.event_seq += 1
        self.events = [e for e in self.events if e[1:] != (type, device)]
        if len(self.events) >= int(Limit.MAX_EVENTS):
            self.events, type, device = [], int(EventType.REFETCH), None
        self.events.append((seq, type, device))

    def drop(self, handle: int) -> int:
        m = self.messages.pop(handle)
        claim = self.claims[m.device]
        claim.slots.discard((m.kind, m.slot))
        claim.vectors -= m.count
        self.vectors -= m.count
        return m.count

    def end_claim(self, key: DeviceKey) -> int:
        freed = sum(self.drop(h) for h in [h for h, m in self.messages.items() if m.device == key])
        del self.claims[key]
        return freed

    def reset(self) -> int:
        """RESET or a VM reset (HV-RESET-001, HV-RESET-002): every claim ended, back to OPEN."""
        freed = sum(self.end_claim(k) for k in list(self.claims))
        self.state, self.features = VmState.OPEN, 0
        self.events, self.event_target = [], None  # HV-EVT-007: the sequence goes on
        return freed

    def unplug(self, function: DeviceKey) -> None:
        """Hot-unplug (HV-UNPLUG-001): the function's and its sub-devices' claims end."""
        for key in [k for k in self.claims if k[:3] == function[:3]]:
            self.end_claim(key)
            self.queue_event(int(EventType.DEVICE_REMOVED), key)  # HV-UNPLUG-003
