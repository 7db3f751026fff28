"""What the guest core asks its environment to do (sans-I/O: the core yields these and receives the answers).

A driver executes them: in-process against the reference hypervisor and platform, or as harness frames when the
conformance suite plays the hypervisor for a guest.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...spec.constants import MsgKind


@dataclass(frozen=True)
class Hypercall:
    """Issue pvmsi function ``fn`` with four arguments; answered with ``(status, value)``.

    ``in_size`` and ``out_size`` are the sizes of the input block at ``args[0]`` and the output block at
    ``args[1]`` (zero when the call has none), so that a remote guest can ship the blocks inline.
    """

    fn: int
    args: tuple[int, int, int, int]
    in_size: int = 0
    out_size: int = 0


@dataclass(frozen=True)
class WriteMemory:
    """Write the guest's own RAM (a parameter block); answered with None."""

    gpa: int
    data: bytes


@dataclass(frozen=True)
class ReadMemory:
    """Read the guest's own RAM; answered with the bytes."""

    gpa: int
    size: int


@dataclass(frozen=True)
class GuestDevice:
    """A device (or sub-device) as the guest names it."""

    segment: int
    bus: int
    devfn: int
    pasid: int | None = None


@dataclass(frozen=True)
class ProgramSlot:
    """Write an address/data pair into a slot of the device (MSI capability, MSI-X entry or IMS slot), masked
    while it is written; for MSI, ``vectors`` sets Multiple Message Enable. Answered with None."""

    device: GuestDevice
    kind: MsgKind
    slot: int
    address: int
    data: int
    vectors: int = 1


@dataclass(frozen=True)
class SetEnabled:
    """Enable or disable a kind on the device (MSI Enable, MSI-X Enable, or unmask/mask an IMS slot range);
    answered with None."""

    device: GuestDevice
    kind: MsgKind
    enabled: bool


@dataclass(frozen=True)
class MaskSlot:
    """Mask or unmask one slot (MSI-X vector control, IMS slot mask, MSI per-vector mask); answered with None."""

    device: GuestDevice
    kind: MsgKind
    slot: int
    masked: bool


@dataclass(frozen=True)
class Trap:
    """Execute a trap instruction of ``arch`` (``cpuid``, ``hvc``, ``ecall``, ``vmcall``) with ``regs`` (by name,
    the rest zero) for discovery (spec "Discovery"); answered with the registers after it, by name."""

    arch: str
    instruction: str
    regs: tuple[tuple[str, int], ...]


Action = Hypercall | WriteMemory | ReadMemory | ProgramSlot | SetEnabled | MaskSlot | Trap
