"""The reference guest as an implementation under test (the guest role), sans-I/O.

:class:`GuestRunner` runs one :class:`~.iut.GuestCommand` on a :class:`~pvmsi.reference.guest.core.GuestCore`:
it keeps the guest's own memory (where the core writes its parameter blocks) and turns every action the core
takes towards its hypervisor into a :class:`HostCall` (the call, with its input block inline) or a
:class:`HostDeviceOp`, which whoever drives the runner answers.  :class:`ReferenceGuest` drives it in-process
against the suite's :class:`~.iut.GuestHost`; :class:`~.harness.guest_server.GuestService` drives the same
runner over harness frames (``pvmsi serve --role guest``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from ..reference.guest.actions import (
    GuestDevice,
    Hypercall,
    MaskSlot,
    ProgramSlot,
    ReadMemory,
    SetEnabled,
    Trap,
    WriteMemory,
)
from ..reference.guest.core import GuestCore, GuestError, Target
from ..reference.guest.core import GuestMode as CoreMode
from ..reference.platform.vm import PAGE_SIZE
from ..spec.constants import MsgKind, Status
from ..spec.harness_constants import TRAP_REGISTERS, DeviceOp, GuestBootFlag, GuestOp, TrapArch, TrapInstruction
from ..spec.iut import DeviceRef, GuestCommand, GuestHost, GuestMode, GuestResult, IutError, IutInfo
from ..spec.version import VERSION_MAJOR, VERSION_MINOR

#: Makes a fresh guest core on BOOT, given the scratch page the suite assigned.
CoreFactory = Callable[[int], GuestCore]


def reference_core(scratch_gpa: int) -> GuestCore:
    return GuestCore(scratch_gpa=scratch_gpa)


@dataclass(frozen=True)
class HostCall:
    """The guest issues a pvmsi call: the input block travels inline, the output block comes back."""

    vcpu: int
    fn: int
    args: tuple[int, int, int, int]
    in_block: bytes
    out_size: int


@dataclass(frozen=True)
class HostDeviceOp:
    """The guest acts on its device (the guest_device_op format)."""

    op: DeviceOp
    device: DeviceRef
    kind: int
    slot: int = 0
    address: int = 0
    data: int = 0
    vectors: int = 0


@dataclass(frozen=True)
class HostTrap:
    """The guest executes a discovery trap (the trap_req format): registers in TRAP_REGISTERS order."""

    vcpu: int
    arch: TrapArch
    instruction: TrapInstruction
    regs: tuple[int, ...]


HostRequest = HostCall | HostDeviceOp | HostTrap
#: A command in progress: yields what it needs of the host, receives the answers, returns the result.
CommandRun = Generator[HostRequest, Any, GuestResult]


class SparseMemory:
    """The guest's own RAM as the runner sees it: pages created on first write, zeros elsewhere."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}

    def write(self, gpa: int, data: bytes) -> None:
        for i, b in enumerate(data):
            page = self.pages.setdefault((gpa + i) // PAGE_SIZE, bytearray(PAGE_SIZE))
            page[(gpa + i) % PAGE_SIZE] = b

    def read(self, gpa: int, size: int) -> bytes:
        out = bytearray(size)
        for i in range(size):
            page = self.pages.get((gpa + i) // PAGE_SIZE)
            if page is not None:
                out[i] = page[(gpa + i) % PAGE_SIZE]
        return bytes(out)


def to_guest(dev: DeviceRef) -> GuestDevice:
    return GuestDevice(dev.segment, dev.bus, dev.devfn, dev.pasid)


def to_ref(dev: GuestDevice) -> DeviceRef:
    return DeviceRef(dev.segment, dev.bus, dev.devfn, dev.pasid)


MODES = {CoreMode.UNKNOWN: GuestMode.NOT_BOOTED, CoreMode.PVMSI: GuestMode.PVMSI, CoreMode.EMULATED: GuestMode.EMULATED}


class GuestRunner:
    """One guest (a core and its memory) across commands; BOOT starts a fresh one."""

    def __init__(self, factory: CoreFactory = reference_core, vcpu: int = 0, arch: str | None = None) -> None:
        self.factory = factory
        self.vcpu = vcpu
        #: The architecture the guest kernel runs on (its platform's: spec "Message formats"); None: the core's own.
        self.arch = arch
        self.core: GuestCore | None = None
        self.memory = SparseMemory()

    @property
    def mode(self) -> GuestMode:
        return GuestMode.NOT_BOOTED if self.core is None else MODES[self.core.mode]

    def run(self, cmd: GuestCommand) -> CommandRun:
        """Run ``cmd``: a generator of host requests whose return value is the command's result."""
        if cmd.op is GuestOp.BOOT:
            self.core = self.factory(cmd.scratch_gpa)
            if self.arch is not None:
                self.core.arch = self.arch
            self.core.confidential = bool(cmd.count & GuestBootFlag.CONFIDENTIAL)
            self.memory = SparseMemory()
        core = self.core
        if core is None:
            return GuestResult(int(Status.WRONG_STATE), GuestMode.NOT_BOOTED)
        op, count = self._operation(core, cmd)
        answer: Any = None
        try:
            while True:
                action = op.send(answer)
                answer = yield from self._execute(action)
        except StopIteration as stop:
            done = count(stop.value)
        except GuestError as e:
            return GuestResult(int(e.status), self.mode, self._left_working(core, cmd))
        return GuestResult(int(Status.SUCCESS), self.mode, done)

    def _left_working(self, core: GuestCore, cmd: GuestCommand) -> int:
        """``done`` of a command that failed: the vectors it left enabled and working (harness guest_result).
        A failed RETARGET leaves every message it still holds delivering, moved or at its old target; a failed
        ENABLE has freed what it obtained, and the other commands mask and disable before anything can fail."""
        if cmd.op is not GuestOp.RETARGET:
            return 0
        held = core.messages.get(to_guest(cmd.device), {})
        return core.vectors_of(m for (k, _), m in held.items() if int(k) == cmd.kind)

    # -- commands -> core operations ------------------------------------------------------------------------

    def _operation(self, core: GuestCore, cmd: GuestCommand) -> tuple[Generator[Any, Any, Any], Callable[[Any], int]]:
        """The core's operation for ``cmd`` and how its ``done`` is counted: vectors, an MSI block of n vectors
        counting n (harness ``guest_result.done``; :meth:`GuestCore.vectors_of`)."""
        dev = to_guest(cmd.device)
        held = list(core.messages.get(dev, {}).items())
        if cmd.op is GuestOp.BOOT:
            return core.boot(), lambda _: 0
        if cmd.op is GuestOp.EVENTS:
            return core.configure_events(cmd.vcpu, cmd.vector), lambda _: 0
        if cmd.op is GuestOp.NOTIFY:
            return core.handle_events(), len
        every = core.vectors_of(m for _, m in held)
        if cmd.op is GuestOp.FLR:
            return core.after_flr(dev), lambda _: every
        if cmd.op is GuestOp.UNPLUG:
            return core.forget(dev), lambda _: every
        if cmd.op is GuestOp.RELEASE:
            return core.shutdown(dev), lambda _: every
        try:
            kind = MsgKind(cmd.kind)
        except ValueError:
            raise IutError(f"{cmd.op.name} names no message kind ({cmd.kind})") from None
        of_kind = [m for (k, _), m in held if k is kind]
        if cmd.op is GuestOp.ENABLE:
            if kind is MsgKind.MSI:
                targets = [Target(0, cmd.vcpu, cmd.vector, cmd.count)]
            else:
                targets = [Target(cmd.first_slot + i, cmd.vcpu, cmd.vector + i) for i in range(cmd.count)]
            return core.enable(dev, kind, targets), core.vectors_of
        if cmd.op is GuestOp.RETARGET:
            moves = [(m, cmd.vcpu, m.vector) for m in of_kind]
            return core.set_affinity(dev, moves), lambda _: core.vectors_of(of_kind)
        if cmd.op is GuestOp.DISABLE:
            return core.disable(dev, kind), lambda _: core.vectors_of(of_kind)
        raise IutError(f"unknown guest operation {cmd.op!r}")  # pragma: no cover - GuestOp is exhaustive

    # -- core actions -> host requests ----------------------------------------------------------------------

    def _execute(self, action: Any) -> Generator[HostRequest, Any, Any]:
        if isinstance(action, WriteMemory):
            self.memory.write(action.gpa, action.data)
            return None
        if isinstance(action, ReadMemory):
            return self.memory.read(action.gpa, action.size)
        if isinstance(action, Hypercall):
            in_block = self.memory.read(action.args[0], action.in_size) if action.in_size else b""
            status, value, out = yield HostCall(self.vcpu, action.fn, action.args, in_block, action.out_size)
            if action.out_size:
                self.memory.write(action.args[1], bytes(out[: action.out_size]).ljust(action.out_size, b"\0"))
            return int(status), int(value)
        if isinstance(action, ProgramSlot):
            yield HostDeviceOp(
                DeviceOp.PROGRAM,
                to_ref(action.device),
                action.kind,
                action.slot,
                action.address,
                action.data,
                action.vectors,
            )
            return None
        if isinstance(action, SetEnabled):
            yield HostDeviceOp(
                DeviceOp.ENABLE if action.enabled else DeviceOp.DISABLE, to_ref(action.device), action.kind
            )
            return None
        if isinstance(action, MaskSlot):
            op = DeviceOp.MASK if action.masked else DeviceOp.UNMASK
            yield HostDeviceOp(op, to_ref(action.device), action.kind, action.slot)
            return None
        if isinstance(action, Trap):
            arch = TrapArch[action.arch.upper()]
            names = TRAP_REGISTERS[arch]
            given = dict(action.regs)
            regs = tuple(given.get(n, 0) for n in names)
            _, after = yield HostTrap(self.vcpu, arch, TrapInstruction[action.instruction.upper()], regs)
            return dict(zip(names, after, strict=True))
        raise IutError(f"the guest core asked for an unknown action {action!r}")


def answer_request(host: GuestHost, req: HostRequest) -> Any:
    """Ask ``host`` what the runner needs."""
    if isinstance(req, HostCall):
        return host.hypercall(req.vcpu, req.fn, req.args, req.in_block, req.out_size)
    if isinstance(req, HostTrap):
        return host.trap(req.vcpu, req.arch, req.instruction, list(req.regs))
    return host.device_op(req.op, req.device, req.kind, req.slot, req.address, req.data, req.vectors)


class ReferenceGuest:
    """:class:`~.iut.GuestIUT` in-process: the reference guest core (or a faulty one) against the suite's host."""

    def __init__(self, factory: CoreFactory = reference_core, name: str = "pvmsi-ref", arch: str | None = None) -> None:
        self.runner = GuestRunner(factory, arch=arch)
        self.name = name

    def hello(self) -> IutInfo:
        return IutInfo(self.name, VERSION_MAJOR, VERSION_MINOR)

    def command(self, cmd: GuestCommand, host: GuestHost) -> GuestResult:
        run = self.runner.run(cmd)
        answer: Any = None
        while True:
            try:
                req = run.send(answer)
            except StopIteration as stop:
                result: GuestResult = stop.value
                return result
            except IutError:
                raise
            except Exception as e:  # the guest crashed: the same verdict as an INTERNAL error frame
                raise IutError(f"the guest failed internally: {type(e).__name__}: {e}") from e
            answer = answer_request(host, req)

    def close(self) -> None:
        return None
