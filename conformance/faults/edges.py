"""Faults at the edges of the memory rules, in the undefined bits of every input flag field and in the registers a
call preserves on each architecture: areas where independently written faulty hypervisors once survived the suite
(issue 12, finding 8). Split from :mod:`.strength`, whose quota, block, negotiation and lifecycle faults stay there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...reference.hypervisor.blocks import ALIGN, PAGE, MemoryRules
from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.messages import BATCH_IN, BATCH_OUT, BatchFormats
from ...reference.hypervisor.ports import GuestMemory, VmPort
from ...reference.system import ReferenceSystem, SystemVm
from ...spec.codec import DecodeError
from ...spec.constants import FunctionNumber, Status
from ...spec.formats import (
    ACTIVATE_ENTRY,
    ALLOC_ENTRY,
    CLAIM_IN,
    DEACTIVATE_ENTRY,
    EVENT_CONFIG_IN,
)
from ...spec.formats import (
    BATCH_IN as BATCH_IN_FORMAT,
)
from ...spec.layout import layout_of
from ...spec.records import BatchIn
from .registry import FaultList, leaf

faults = FaultList()
FAULTS = faults.defined


# -- memory rules at their edges (HV-MEM-002, HV-MEM-004, HV-MEM-005) -----------------------------------------------


class EndExclusiveRules(MemoryRules):
    """Computes a block's last page from its end address (gpa + size), one byte too far."""

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        super().block(memory, gpa, size, what)
        if gpa // PAGE != (gpa + size) // PAGE:
            raise CallError(Status.INVALID_ADDRESS, "HV-MEM-002", f"{what} block {gpa:#x}+{size} crosses a page")

    def blocks(self, memory: GuestMemory, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        self.check_blocks(memory, in_gpa, in_size, out_gpa, out_size)


@faults.add(
    "page-end-is-crossing", "HV-MEM-002", "refuses a block that ends exactly on the last byte of a page as crossing"
)
class PageEndIsCrossing(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return EndExclusiveRules()


class AdjacentOverlapRules(MemoryRules):
    """Compares the blocks' ends with <=, so blocks that only touch count as overlapping."""

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        if in_gpa <= out_gpa + out_size and out_gpa <= in_gpa + in_size:
            raise CallError(Status.INVALID_ADDRESS, "HV-MEM-004", "input and output blocks overlap")

    def blocks(self, memory: GuestMemory, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        self.check_blocks(memory, in_gpa, in_size, out_gpa, out_size)


@faults.add(
    "adjacent-blocks-overlap", "HV-MEM-004", "refuses an output block that starts right after the input block ends"
)
class AdjacentBlocksOverlap(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return AdjacentOverlapRules()


class HeadersOnlyRules(MemoryRules):
    """Checks a batch's blocks for overlap on their headers only (batch_in against batch_out)."""

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        super().disjoint(in_gpa, min(in_size, BATCH_IN.size), out_gpa, min(out_size, BATCH_OUT.size))


@faults.add(
    "overlap-headers-only",
    "HV-MEM-004",
    "checks a batch's input and output blocks for overlap on their headers only, not the entries and results",
)
class OverlapHeadersOnly(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return HeadersOnlyRules()


class OutputAfterInputRules(MemoryRules):
    """Only looks for an output block that starts inside the input block."""

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        if in_gpa <= out_gpa < in_gpa + in_size:
            raise CallError(Status.INVALID_ADDRESS, "HV-MEM-004", "output block starts inside the input block")


@faults.add(
    "overlap-output-first", "HV-MEM-004", "accepts an output block that starts before the input block and runs into it"
)
class OverlapOutputFirst(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return OutputAfterInputRules()


class RereadInput(HypervisorCore):
    """Reads the input block of the calls in :attr:`reread` a second time after handling it."""

    reread: frozenset[FunctionNumber] = frozenset()

    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Any) -> CallResult:
        r = super().hypercall(vm, vcpu, fn, args)
        if fn in self.reread and r.status == Status.SUCCESS and args[0] % ALIGN == 0:
            vm.memory.read(args[0], 8)  # e.g. to log the request
        return r


@faults.add("double-fetch-release", "HV-MEM-005", "DEVICE_RELEASE reads its device_id a second time")
class DoubleFetchRelease(RereadInput):
    reread = frozenset({FunctionNumber.DEVICE_RELEASE})


@faults.add("double-fetch-deactivate", "HV-MEM-005", "MSG_DEACTIVATE reads its batch header a second time")
class DoubleFetchDeactivate(RereadInput):
    reread = frozenset({FunctionNumber.MSG_DEACTIVATE})


@faults.add("double-fetch-event-config", "HV-MEM-005", "EVENT_CONFIG reads its input block a second time")
class DoubleFetchEventConfig(RereadInput):
    reread = frozenset({FunctionNumber.EVENT_CONFIG, FunctionNumber.EVENT_ACK})


# -- undefined flag bits of every entry format (HV-CONV-001) -----------------------------------------------------------


def _clear_bit(raw: bytes, fmt: Any, path: str, bit: int, stride: int = 0) -> bytes:
    """``raw`` with bit ``bit`` of field ``path`` cleared, in every record of ``stride`` bytes (0: one record)."""
    field = leaf(fmt, path)
    out = bytearray(raw)
    step = stride or len(raw) or 1
    for base in range(0, len(out), step):
        at = base + field.offset + bit // 8
        if at < len(out):
            out[at] &= ~(1 << bit % 8) & 0xFF
    return bytes(out)


class IgnoresFlagBit(HypervisorCore):
    """Masks one undefined flag bit off one field before decoding it, as a decoder that tests ``flags & KNOWN``
    for the wrong set of bits does."""

    fmt: Any = None
    path = ""
    bit = 0

    def decode_input(self, fmt: Any, raw: bytes) -> Any:
        if fmt is self.fmt:
            raw = _clear_bit(raw, fmt, self.path, self.bit)
        return super().decode_input(fmt, raw)

    def read_entries(self, c: Call, formats: BatchFormats, header: BatchIn) -> bytes:
        raw = super().read_entries(c, formats, header)
        if formats.call.input_entry == layout_of(self.fmt).name:
            raw = _clear_bit(raw, self.fmt, self.path, self.bit, formats.entry.size)
        return raw

    def read_header(self, c: Call) -> BatchIn:
        if self.fmt is not BATCH_IN_FORMAT:
            return super().read_header(c)
        self.rules.block(c.vm.memory, c.args[0], BATCH_IN.size, "input")
        raw = _clear_bit(c.vm.memory.read(c.args[0], BATCH_IN.size), self.fmt, self.path, self.bit)
        try:
            header: BatchIn = BATCH_IN.unpack_record_from(raw)
        except DecodeError as e:
            raise CallError(Status.INVALID_PARAMETER, "HV-CONV-001", str(e)) from None
        return header


def _ignores(name: str, fmt: Any, path: str, bit: int) -> None:
    cls = type(name.title().replace("-", ""), (IgnoresFlagBit,), {"fmt": fmt, "path": path, "bit": bit})
    what = f"{layout_of(fmt).name}.{path}"
    faults.add(name, "HV-CONV-001", f"ignores undefined bit {bit} of {what}")(cls)


for _name, _fmt, _path, _bit in (
    ("alloc-flags-bit7-ignored", ALLOC_ENTRY, "alloc_flags", 7),
    ("alloc-delivery-bit1-ignored", ALLOC_ENTRY, "flags", 1),
    ("activate-entry-flags-bit7-ignored", ACTIVATE_ENTRY, "entry_flags", 7),
    ("activate-delivery-bit7-ignored", ACTIVATE_ENTRY, "flags", 7),
    ("deactivate-entry-flags-bit1-ignored", DEACTIVATE_ENTRY, "entry_flags", 1),
    ("claim-kinds-bit3-ignored", CLAIM_IN, "kinds", 3),  # bits 0-2 are MSI, MSI-X, IMS
    ("claim-kinds-bit31-ignored", CLAIM_IN, "kinds", 31),
    ("event-config-bit31-ignored", EVENT_CONFIG_IN, "flags", 31),
    ("batch-device-flags-bit31-ignored", BATCH_IN_FORMAT, "device.flags", 31),
):
    _ignores(_name, _fmt, _path, _bit)


# -- register preservation on every architecture (HV-CALL-004) -------------------------------------------------------


class Clobbers(ReferenceSystem):
    """Overwrites one register the calling convention preserves, after a pvmsi call of :attr:`arch` for which
    :meth:`applies` holds."""

    arch = ""
    register = ""

    def applies(self, regs: Mapping[str, int], out: Mapping[str, int]) -> bool:
        return True

    def trap(
        self, vm: SystemVm, vcpu: int, arch: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        out = super().trap(vm, vcpu, arch, regs, privilege)
        if out is not None and arch == self.arch and self.applies(regs, out):
            out[self.register] = 0xDEAD
        return out


@faults.add(
    "x86-r8-clobbered-on-failure", "HV-CALL-004", "a failing VMCALL returns with r8 overwritten (a scratch register)"
)
class X86R8ClobberedOnFailure(Clobbers):
    arch, register = "x86_64", "r8"

    def applies(self, regs: Mapping[str, int], out: Mapping[str, int]) -> bool:
        return out["rax"] != 0


@faults.add(
    "arm64-x4-clobbered-with-blocks",
    "HV-CALL-004",
    "an HVC that names a parameter block returns with x4 overwritten",
    platform="gic-its",
)
class Arm64X4ClobberedWithBlocks(Clobbers):
    arch, register = "arm64", "x4"

    def applies(self, regs: Mapping[str, int], out: Mapping[str, int]) -> bool:
        return bool(regs.get("x1") or regs.get("x2"))


@faults.add(
    "riscv-a5-clobbered-with-blocks",
    "HV-CALL-004",
    "a pvmsi ECALL that names a parameter block returns with a5 overwritten",
    platform="imsic",
)
class RiscvA5ClobberedWithBlocks(Clobbers):
    arch, register = "riscv64", "a5"

    def applies(self, regs: Mapping[str, int], out: Mapping[str, int]) -> bool:
        return bool(regs.get("a0") or regs.get("a1"))
