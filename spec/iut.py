"""The suite's view of an implementation under test (IUT), one operation per harness request.

A hypervisor under test is driven through :class:`HypervisorIUT`: the in-process reference backend implements
it directly, and :class:`~.harness.client.HarnessHypervisor` implements it over the harness protocol for any
implementation behind a Unix socket, a TCP port or a child process's stdio.

A guest under test is driven through :class:`GuestIUT`: the suite sends it one :class:`GuestCommand` at a time
and plays its hypervisor meanwhile, answering every hypercall and device access the guest makes through the
:class:`GuestHost` it passes along (:class:`~.guest.ReferenceGuest` in-process,
:class:`~.harness.client.HarnessGuest` over the harness protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from .harness_constants import (
    DeviceOp,
    DeviceProfile,
    DeviceSpace,
    FireOutcome,
    GuestOp,
    LifecycleEvent,
    TrapArch,
    TrapInstruction,
)


class Unsupported(Exception):
    """The IUT does not implement a request (harness UNSUPPORTED) or the ICS does not claim an option."""


class IutTimeout(Exception):
    """The IUT did not answer in time."""


class NoSuchVm(KeyError):
    """A backend was asked about a VM that does not exist (harness UNKNOWN_VM)."""


class NoSuchDevice(KeyError):
    """A backend was asked about a device the VM does not have (harness UNKNOWN_DEVICE)."""


class BadAddress(ValueError):
    """A backend was asked to access guest memory that is not RAM (harness BAD_ADDRESS)."""


class BadRequest(ValueError):
    """A well-formed request the backend cannot serve as asked (harness BAD_PAYLOAD): ``field`` names the payload
    field at fault (e.g. ``features_required`` of vm_config)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IutError(Exception):
    """The IUT answered a well-formed request with an error frame, or broke the harness protocol."""


@dataclass(frozen=True)
class DeviceRef:
    """A device (or sub-device) as the guest sees it."""

    segment: int = 0
    bus: int = 0
    devfn: int = 0
    pasid: int | None = None

    def with_pasid(self, pasid: int | None) -> DeviceRef:
        return DeviceRef(self.segment, self.bus, self.devfn, pasid)

    def wire(self) -> dict[str, int]:
        """As a device_id format value."""
        return {
            "segment": self.segment,
            "bus": self.bus,
            "devfn": self.devfn,
            "flags": 0 if self.pasid is None else 1,
            "subdevice_id": self.pasid or 0,
        }


@dataclass(frozen=True)
class DeviceSlot:
    """A device to create a VM with."""

    profile: DeviceProfile
    device: DeviceRef


@dataclass(frozen=True)
class VmKnobs:
    """Per-VM configuration a test asks of the IUT (vm_config knobs); zero means the IUT's default."""

    yield_after: int = 0
    features_required: int = 0
    features_withheld: int = 0
    remap_entries: int = 0
    max_claimed_devices: int = 0
    storm_limit: int = 0


@dataclass(frozen=True)
class FireResult:
    """What became of a device's message."""

    outcome: FireOutcome
    vcpu: int = 0
    vector: int = 0


@dataclass(frozen=True)
class Counters:
    """Exit and message counters of a VM."""

    exits: int
    hypercall_exits: int
    msi_exits: int
    msix_exits: int
    delivered: int
    blocked: int
    last_call_max_reads: int = 0


@dataclass(frozen=True)
class IutInfo:
    """What the IUT said about itself in HELLO_ACK."""

    name: str
    spec_major: int
    spec_minor: int


class HypervisorIUT(Protocol):
    """A hypervisor under test."""

    def hello(self) -> IutInfo: ...

    def create_vm(self, vcpus: int, ram_mib: int, devices: list[DeviceSlot], knobs: VmKnobs | None = None) -> int: ...

    def destroy_vm(self, vm: int) -> None: ...

    def mem_write(self, vm: int, gpa: int, data: bytes) -> None: ...

    def mem_read(self, vm: int, gpa: int, size: int) -> bytes: ...

    def hypercall(self, vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int]) -> tuple[int, int]: ...

    def device_write(
        self, vm: int, device: DeviceRef, space: DeviceSpace, offset: int, size: int, value: int
    ) -> bool: ...

    def fire(self, vm: int, device: DeviceRef, kind: int, index: int) -> FireResult: ...

    def config_read(self, vm: int, device: DeviceRef, offset: int, size: int) -> bytes:
        """``size`` bytes of the device's configuration space from ``offset``, as its guest sees them (harness
        CONFIG_READ): no exit counted, nothing changed."""
        ...

    def trap(
        self, vm: int, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int], privilege: int = 0
    ) -> tuple[bool, list[int]]:
        """Execute a trap instruction with eight registers (TRAP_REGISTERS order) at ``privilege`` (x86-64 CPL):
        (handled, registers after)."""
        ...

    def collect(self, vm: int) -> list[tuple[int, int]]: ...

    def counters(self, vm: int) -> Counters: ...

    def lifecycle(self, vm: int, event: LifecycleEvent, device: DeviceRef | None) -> None: ...

    def close(self) -> None: ...


# -- the guest role -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestCommand:
    """One operation the suite asks of a guest under test (the guest_command format)."""

    op: GuestOp
    device: DeviceRef = DeviceRef()
    kind: int = 0
    count: int = 0
    vcpu: int = 0
    vector: int = 0
    first_slot: int = 0
    scratch_gpa: int = 0

    def describe(self) -> str:
        from .constants import MsgKind

        if self.op is GuestOp.BOOT:
            flags = f", flags {self.count:#x}" if self.count else ""
            return f"BOOT (scratch page {self.scratch_gpa:#x}{flags})"
        if self.op is GuestOp.EVENTS:
            return f"EVENTS -> vcpu {self.vcpu} vector {self.vector:#x}"
        if self.op is GuestOp.NOTIFY:
            return "NOTIFY (the event notification interrupt)"
        kind = MsgKind(self.kind).name if self.kind in MsgKind._value2member_map_ else str(self.kind)
        what = f"{self.op.name} {self.device}"
        if self.op is GuestOp.ENABLE:
            return (
                f"{what} {kind} x{self.count} from slot {self.first_slot} -> vcpu {self.vcpu} vector {self.vector:#x}"
            )
        if self.op is GuestOp.RETARGET:
            return f"{what} {kind} -> vcpu {self.vcpu}"
        return f"{what} {kind}" if self.kind else what


class GuestMode(IntEnum):
    """How the guest ended up obtaining messages (guest_result.mode)."""

    NOT_BOOTED = 0
    PVMSI = 1
    EMULATED = 2


@dataclass(frozen=True)
class GuestResult:
    """What the guest said about a command (the guest_result format)."""

    status: int
    mode: GuestMode
    done: int = 0


class GuestHost(Protocol):
    """The hypervisor a guest under test talks to while it runs a command (the suite's model)."""

    def hypercall(
        self, vcpu: int, fn: int, args: tuple[int, int, int, int], in_block: bytes, out_size: int
    ) -> tuple[int, int, bytes]:
        """A pvmsi call with the input block as the guest wrote it at ``args[0]``: ``(status, value, out_block)``,
        ``out_block`` being the ``out_size`` bytes at ``args[1]`` after the call."""
        ...

    def device_op(
        self, op: DeviceOp, device: DeviceRef, kind: int, slot: int, address: int, data: int, vectors: int
    ) -> bool:
        """The guest acts on its device; returns whether the access exited to the hypervisor."""
        ...

    def trap(self, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int]) -> tuple[bool, list[int]]:
        """The guest executes a discovery trap (TRAP_REGISTERS order): (handled, registers after)."""
        ...


class GuestIUT(Protocol):
    """A guest under test."""

    def hello(self) -> IutInfo: ...

    def command(self, cmd: GuestCommand, host: GuestHost) -> GuestResult: ...

    def close(self) -> None: ...
