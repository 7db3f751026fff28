"""Faults in the areas where independently written faulty hypervisors once survived the suite (issue 12, finding 8):
quota accounting and headroom, cleanup after NO_RESOURCES, activating a multi-message block, the details of a
refused NEGOTIATE, memory rules at their edges, undefined flag bits of every entry format, register preservation
on every architecture, and the state after hot-unplug and migration.

Each is a mistake a real implementation makes (an off-by-one, a counter not decremented on one path, a rollback
nobody asked for, a mask that forgets a bit); each breaks the one requirement it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...reference.hypervisor.blocks import ALIGN, PAGE, MemoryRules
from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.config import HypervisorConfig
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.messages import ALLOC_RESULT, BATCH_IN, BATCH_OUT, BatchEnd, BatchFormats
from ...reference.hypervisor.ports import GuestMemory, RemapPort, VmPort
from ...reference.hypervisor.vmstate import Claim, DeviceKey, Message, VmPvmsi
from ...reference.system import ReferenceSystem, SystemVm
from ...spec.codec import DecodeError
from ...spec.constants import FunctionNumber, Status
from ...spec.formats import (
    ACTIVATE_ENTRY,
    ALLOC_ENTRY,
    CLAIM_IN,
    DEACTIVATE_ENTRY,
    EVENT_CONFIG_IN,
    NEGOTIATE_OUT,
)
from ...spec.formats import (
    BATCH_IN as BATCH_IN_FORMAT,
)
from ...spec.layout import layout_of
from ...spec.records import AllocEntry, AllocResult, BatchIn
from .registry import FaultList, leaf

faults = FaultList()
FAULTS = faults.defined


# -- quota accounting and headroom (HV-FREE-002, HV-HEADROOM-001, HV-SEC-007, HV-BATCH-003) --------------------------


@faults.add("free-keeps-vm-quota", "HV-FREE-002", "MSG_FREE returns a message's vectors to the device, not the VM")
class FreeKeepsVmQuota(HypervisorCore):
    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        freed = super().drop(st, claim, handle)
        st.vectors += freed  # the per-VM counter is decremented on the teardown path only
        return freed


@faults.add("free-keeps-device-quota", "HV-FREE-002", "MSG_FREE returns a message's vectors to the VM, not the device")
class FreeKeepsDeviceQuota(HypervisorCore):
    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        freed = super().drop(st, claim, handle)
        claim.vectors += freed
        return freed


@faults.add(
    "headroom-ignores-device-quota",
    "HV-HEADROOM-001",
    "DEVICE_QUERY reports the VM's headroom as messages_available, the device's quota forgotten",
)
class HeadroomIgnoresDeviceQuota(HypervisorCore):
    def headroom(self, c: Call, claim: Claim | None) -> dict[str, int]:
        room = super().headroom(c, claim)
        return {**room, "messages_available": room["vm_messages_available"]}


@faults.add(
    "no-resources-counts-vectors",
    "HV-SEC-007",
    "an allocate entry that fails for lack of remapping entries still counts its vectors against the VM",
)
class NoResourcesCountsVectors(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        try:
            return super().alloc_entry(c, key, claim, e)
        except CallError as error:
            if error.requirement == "HV-SEC-007":
                c.st.vectors += e.vector_count  # counted before the table was asked, never given back
            raise


@faults.add(
    "no-resources-leaks-entries",
    "HV-SEC-007",
    "an MSI block that does not fit takes the remapping entries that were free one by one and keeps them",
)
class NoResourcesLeaksEntries(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        try:
            return super().alloc_entry(c, key, claim, e)
        except CallError as error:
            if error.requirement == "HV-SEC-007" and e.vector_count > 1:
                for i in range(e.vector_count):  # vector by vector, no unwinding when one fails
                    got = self.remap.alloc(
                        1,
                        vm_id=c.vm.vm_id,
                        vcpu=0,
                        vector=0,
                        source=claim.source,
                        posted=False,
                        slot=("leak", e.kind, e.slot, i, c.st.vectors),
                        present=False,
                    )
                    if got is None:
                        break
            raise


@faults.add(
    "no-resources-rolls-back-batch",
    "HV-BATCH-003",
    "a batch that runs out of resources frees the messages its earlier entries allocated (all or nothing)",
)
class NoResourcesRollsBackBatch(HypervisorCore):
    def finish_batch(self, c: Call, end: BatchEnd) -> CallResult:
        if (
            end.error is not None
            and end.error.status == Status.NO_RESOURCES
            and end.formats.call.fn is (FunctionNumber.MSG_ALLOC)
        ):
            claim = next(iter(c.st.claims.values()), None)
            for raw in end.results[:-1]:
                handle = ALLOC_RESULT.decode_record(raw).handle
                msg = c.st.messages.get(handle)
                if msg is not None:
                    claim = c.st.claims.get(msg.device, claim)
                    if claim is not None:
                        self.drop(c.st, claim, handle)
        return super().finish_batch(c, end)


# -- activating a multi-message block (HV-RETGT-002, HV-MSI-001) ------------------------------------------------------


@faults.add(
    "retarget-block-first-vector-only",
    "HV-RETGT-002",
    "retargeting an active multi-message MSI block reprograms the remapping entry of its first vector only",
)
class RetargetBlockFirstVectorOnly(HypervisorCore):
    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        if not msg.active:
            return super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        self.remap.retarget(msg.irte, 1, vcpu=vcpu, vector=vector, posted=posted)


@faults.add(
    "block-retarget-skips-moved-vectors",
    "HV-RETGT-002",
    "a block-wide activate leaves a vector that was moved alone where it was",
    platform="vtd",
)
class BlockRetargetSkipsMovedVectors(HypervisorCore):
    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        moved = [
            (i, t)
            for i, t in enumerate(msg.targets)
            if t is not None and msg.active and (t[0], t[1]) != (msg.vcpu, msg.vector + i)
        ]
        super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        for i, (t_vcpu, t_vector, t_posted) in moved:  # "the guest moved it: leave it alone"
            self.remap.program_vector(msg.irte, i, vcpu=t_vcpu, vector=t_vector, posted=t_posted)


@faults.add(
    "per-vector-activates-whole-block",
    "HV-MSI-001",
    "activating one vector of a reserved MSI block makes every vector of the block deliver",
    platform="vtd",
)
class PerVectorActivatesWholeBlock(HypervisorCore):
    def retarget_vector(self, msg: Message, index: int, vcpu: int, vector: int, posted: bool) -> None:
        if msg.active:
            return super().retarget_vector(msg, index, vcpu, vector, posted)
        for i in range(msg.count):  # the whole block made present, each vector relative to the one named
            self.remap.program_vector(msg.irte, i, vcpu=vcpu, vector=vector - index + i, posted=posted)


# -- the details of a refused NEGOTIATE (HV-NEG-002, HV-NEG-004, HV-CALL-004) --------------------------------------


@faults.add(
    "refused-lowest-bit-only",
    "HV-NEG-002",
    "NEGOTIATE with several unoffered bits reports the lowest of them alone in refused",
)
class RefusedLowestBitOnly(HypervisorCore):
    def unoffered_features(self, c: Call, features: int) -> int:
        unoffered = super().unoffered_features(c, features)
        return unoffered & -unoffered


@faults.add(
    "refused-echoes-features",
    "HV-NEG-004",
    "a NEGOTIATE refused with FEATURES_REFUSED writes the guest's subset in negotiate_out.features, not zero",
)
class RefusedEchoesFeatures(HypervisorCore):
    asked = 0

    def missing_features(self, c: Call, features: int) -> int:
        self.asked = features
        return super().missing_features(c, features)

    def write_output(self, c: Call, fmt: Any, value: Mapping[str, Any]) -> None:
        if fmt is NEGOTIATE_OUT and value["refused"] and not value["features"] and self.asked:
            value = {**value, "features": self.asked}  # "what we were asked", meant for a log line
        super().write_output(c, fmt, value)


@faults.add(
    "refused-value-is-missing-bits",
    "HV-CALL-004",
    "a NEGOTIATE refused with FEATURES_REFUSED returns the missing bits in the value register",
)
class RefusedValueIsMissingBits(HypervisorCore):
    missing = 0

    def missing_features(self, c: Call, features: int) -> int:
        self.missing = super().missing_features(c, features)
        return self.missing

    def negotiate(self, c: Call) -> CallResult:
        r = super().negotiate(c)
        return r._replace(value=self.missing) if r.status == Status.FEATURES_REFUSED else r


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
    ("claim-kinds-bit0-ignored", CLAIM_IN, "kinds", 0),
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


# -- the state after hot-unplug and migration (HV-UNPLUG-001, HV-MIG-001) -------------------------------------------


@faults.add(
    "unplug-keeps-claim-slot",
    "HV-UNPLUG-001",
    "a hot-unplugged device's claim still counts against max_claimed_devices",
)
class UnplugKeepsClaimSlot(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        self.ghosts: dict[int, int] = {}  # VM id -> claims ended by hot-unplug, still counted

    def hot_unplug(self, vm: VmPort, key: DeviceKey) -> int:
        ended = len(self.function_claims(self.state_of(vm), key))
        self.ghosts[vm.vm_id] = self.ghosts.get(vm.vm_id, 0) + ended
        return super().hot_unplug(vm, key)

    def device_claim(self, c: Call) -> CallResult:
        ghosts = self.ghosts.get(c.vm.vm_id, 0)
        if ghosts and len(c.st.claims) + ghosts >= c.st.config.max_claimed_devices:
            raise CallError(Status.NO_RESOURCES, "HV-DEV-008", "max_claimed_devices reached")
        return super().device_claim(c)


@faults.add(
    "migration-forgets-vm-vectors",
    "HV-MIG-001",
    "after migration the VM's vector count starts from zero, so it can exceed its quota",
    platform="amd-vi",  # on VT-d the VM's share of the one table, as large as its quota, bounds it anyway
)
class MigrationForgetsVmVectors(HypervisorCore):
    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        st.vectors = 0
        super().adopt_vm(vm, st)


@faults.add(
    "migration-forgets-device-vectors",
    "HV-MIG-001",
    "after migration every claimed device reports messages_allocated 0",
)
class MigrationForgetsDeviceVectors(HypervisorCore):
    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        for claim in st.claims.values():
            claim.vectors = 0
        super().adopt_vm(vm, st)
