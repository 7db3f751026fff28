"""Faults of the calling conventions, discovery, status codes, wire conventions and versioning (spec "Calling
conventions", "Discovery", "Status codes", "Conventions", "Versioning")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...reference.backend import ReferenceHypervisor
from ...reference.hypervisor.arch import MASK64, PVMSI_CPUID_BASE
from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.core import Handler, HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.messages import KIND_BY_VALUE, BatchFormats
from ...reference.hypervisor.ports import VmPort
from ...reference.hypervisor.vmstate import DeviceKey, Message, VmPvmsi
from ...reference.system import ReferenceSystem, SystemVm
from ...spec.callconv import (
    ARM64_SMCCC_HINTS,
    ARM64_VENDOR_HYP_CALL_UID,
    KVM_VENDOR_HYP_UID,
    RISCV_EXTENSION_ID,
    SBI_BASE_EXTENSION,
    SBI_PROBE_EXTENSION,
    X86Path,
    uid_registers,
)
from ...spec.calls import CALLS_BY_FN, CallDef
from ...spec.constants import FunctionNumber, MsgKind, Status
from ...spec.extension import VENDOR_FUNCTIONS, Extension
from ...spec.formats import ALLOC_ENTRY
from ...spec.harness_constants import TrapArch, TrapInstruction
from ...spec.layout import layout_of
from ...spec.records import BatchIn
from ...spec.states import VmState
from .registry import FaultList, leaf

faults = FaultList()
FAULTS = faults.defined


@faults.add("not-supported-for-bad-registers", "HV-CALL-002", "answers a reserved register with NOT_SUPPORTED")
class NotSupportedForBadRegisters(HypervisorCore):
    def check_registers(self, call: CallDef, args: Sequence[int]) -> None:
        try:
            super().check_registers(call, args)
        except CallError as e:
            raise CallError(Status.NOT_SUPPORTED, e.requirement, e.why) from None


@faults.add("ignore-reserved-registers", "HV-CALL-003", "ignores non-zero reserved argument registers")
class IgnoreReservedRegisters(HypervisorCore):
    def check_registers(self, call: CallDef, args: Sequence[int]) -> None:
        super().check_registers(call, (args[0], args[1], 0, 0) if len(args) == 4 else args)


@faults.add("value-on-failure", "HV-CALL-004", "returns a non-zero value register from failing calls")
class ValueOnFailure(HypervisorCore):
    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        r = super().hypercall(vm, vcpu, fn, args)
        call = CALLS_BY_FN.get(fn)
        return r._replace(value=0xDEAD) if r.status < 0 and call is not None and not call.batched else r


_CLASSES = {int(fn) >> 4 for fn in FunctionNumber}


@faults.add(
    "unknown-fn-in-class-invalid",
    "HV-CALL-001",
    "an undefined function number inside a defined class (0x04, 0x13, 0x23) gets the inner switch's default, "
    "INVALID_PARAMETER, instead of NOT_SUPPORTED",
)
class UnknownFnInClassInvalid(HypervisorCore):
    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        if fn not in self.dispatch and fn >> 4 in _CLASSES:
            return CallResult(Status.INVALID_PARAMETER, 0, "no such function in this class")
        return super().hypercall(vm, vcpu, fn, args)


@faults.add("state-before-registers", "HV-CALL-005", "checks the VM state before the argument registers")
class StateBeforeRegisters(HypervisorCore):
    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        call = CALLS_BY_FN.get(fn)
        if call is not None and self.state_of(vm).state not in call.states:
            return CallResult(Status.WRONG_STATE, 0, "state checked first")
        return super().hypercall(vm, vcpu, fn, args)


@faults.add(
    "vmcall-only", "HV-CALL-006", "on x86-64 handles VMCALL only: VMMCALL (the AMD instruction) is not a pvmsi call"
)
class VmcallOnly(ReferenceHypervisor):
    def trap(
        self, vm: int, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int], privilege: int = 0
    ) -> tuple[bool, list[int]]:
        if instruction is TrapInstruction.VMMCALL:
            return False, list(regs)
        return super().trap(vm, vcpu, arch, instruction, regs, privilege)


@faults.add(
    "cpuid-version-swapped", "HV-DISC-001", "the pvmsi CPUID leaf base + 1 reports the version as minor << 16 | major"
)
class CpuidVersionSwapped(ReferenceSystem):
    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        out = super().execute_trap(vm, vcpu, arch, instruction, regs, privilege)
        if out is not None and instruction == "cpuid" and regs.get("rax", 0) & 0xFFFFFFFF == PVMSI_CPUID_BASE + 1:
            out["rax"] = (out["rax"] & 0xFFFF) << 16 | out["rax"] >> 16
        return out


@faults.add(
    "sbi-probe-absent",
    "HV-DISC-002",
    "SBI probe_extension of the pvmsi extension id answers 0 (not available)",
    platform="imsic",
)
class SbiProbeAbsent(ReferenceSystem):
    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        out = super().execute_trap(vm, vcpu, arch, instruction, regs, privilege)
        probe = regs.get("a7") == SBI_BASE_EXTENSION and regs.get("a6") == SBI_PROBE_EXTENSION
        if out is not None and instruction == "ecall" and probe:
            out["a1"] = 0
        return out


@faults.add("version-only-while-open", "HV-DISC-003", "VERSION fails with WRONG_STATE once the VM is NEGOTIATED")
class VersionOnlyWhileOpen(HypervisorCore):
    def check_state(self, call: CallDef, st: VmPvmsi) -> None:
        if call.fn is FunctionNumber.VERSION and st.state is not VmState.OPEN:
            raise CallError(Status.WRONG_STATE, "HV-DISC-003", "VERSION only before NEGOTIATE")
        super().check_state(call, st)


@faults.add(
    "info-offers-features-in-force",
    "HV-DISC-004",
    "GET_INFO reports the features in force as features_offered once the VM is NEGOTIATED",
)
class InfoOffersFeaturesInForce(HypervisorCore):
    def hv_info(self, c: Call) -> dict[str, Any]:
        info = super().hv_info(c)
        if c.st.state is VmState.NEGOTIATED:
            info["features_offered"] = c.st.features
        return info


@faults.add("errno-status", "HV-STAT-001", "passes the host's -EINVAL (-22) through for a non-zero reserved register")
class ErrnoStatus(HypervisorCore):
    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        r = super().hypercall(vm, vcpu, fn, args)
        if r.requirement == "HV-CALL-003" and len(args) == 4 and (args[2] or args[3]):
            return r._replace(status=-22)
        return r


@faults.add(
    "malformed-handle-invalid",
    "HV-STAT-002",
    "a handle whose counter half is zero is called malformed: INVALID_PARAMETER instead of UNKNOWN_HANDLE",
)
class MalformedHandleInvalid(HypervisorCore):
    def owned(self, c: Call, key: DeviceKey, handle: int) -> Message:
        if not handle >> 32:
            raise CallError(Status.INVALID_PARAMETER, "HV-STAT-002", "malformed handle")
        return super().owned(c, key, handle)


_KIND = leaf(ALLOC_ENTRY, "kind")


@faults.add("unknown-kind-is-msix", "HV-CONV-002", "an allocate entry with an undefined kind is treated as MSI-X")
class UnknownKindIsMsix(HypervisorCore):
    """The kind switch falls through to MSI-X for a value it does not know."""

    def read_entries(self, c: Call, formats: BatchFormats, header: BatchIn) -> bytes:
        raw = super().read_entries(c, formats, header)
        if formats.call.fn is not FunctionNumber.MSG_ALLOC:
            return raw
        entries = bytearray(raw)
        for offset in range(_KIND.offset, len(entries), formats.entry.size):
            if entries[offset] not in KIND_BY_VALUE:
                entries[offset] = MsgKind.MSIX
        return bytes(entries)


@faults.add("reserved-fields-unchecked", "HV-CONV-001", "ignores non-zero reserved fields of input blocks")
class ReservedFieldsUnchecked(HypervisorCore):
    def decode_input(self, fmt: Any, raw: bytes) -> Any:
        cleared = bytearray(raw)
        for field in layout_of(fmt).leaves():
            if field.field.reserved:
                cleared[field.offset : field.offset + field.size] = bytes(field.size)
        return super().decode_input(fmt, bytes(cleared))


@faults.add("no-msg-retarget", "HV-VER-001", "reports version 1.0 but does not implement MSG_ACTIVATE (NOT_SUPPORTED)")
class NoMsgRetarget(HypervisorCore):
    def handler(self, fn: FunctionNumber) -> Handler | None:
        return None if fn is FunctionNumber.MSG_ACTIVATE else super().handler(fn)


# -- the platform calling paths (HV-ABI-*) -----------------------------------------------------------------------


@faults.add("cpl-ignored", "HV-ABI-001", "runs a VMCALL/VMMCALL executed at CPL 3 as if from the guest kernel")
class CplIgnored(ReferenceSystem):
    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        return super().execute_trap(vm, vcpu, arch, instruction, regs, 0)


@faults.add(
    "sve-hint-rejected",
    "HV-ABI-002",
    "treats an arm64 function id with bit 16 (SVE hint) set as unknown",
    platform="gic-its",
)
class SveHintRejected(ReferenceSystem):
    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        if arch == "arm64" and regs.get("x0", 0) & ARM64_SMCCC_HINTS:
            return {**regs, "x0": -1 & MASK64}
        return super().execute_trap(vm, vcpu, arch, instruction, regs, privilege)


@faults.add(
    "kvm-uid",
    "HV-ABI-003",
    "answers the vendor hypervisor Call UID with KVM's UID while serving pvmsi",
    platform="gic-its",
)
class KvmUid(ReferenceSystem):
    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        out = super().execute_trap(vm, vcpu, arch, instruction, regs, privilege)
        if out is not None and arch == "arm64" and regs.get("x0", 0) & 0xFFFFFFFF == ARM64_VENDOR_HYP_CALL_UID:
            out.update({f"x{i}": w for i, w in enumerate(uid_registers(KVM_VENDOR_HYP_UID))})
        return out


@faults.add(
    "sbi-pvmsi-status-in-error",
    "HV-ABI-004",
    "returns pvmsi's own status in sbiret.error (a0) and zero in a1, so -2, -4, -5 mean other things than SBI's",
    platform="imsic",
)
class SbiPvmsiStatusInError(ReferenceSystem):
    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        out = super().execute_trap(vm, vcpu, arch, instruction, regs, privilege)
        if out is not None and arch == "riscv64" and regs.get("a7") == RISCV_EXTENSION_ID and out["a0"]:
            out["a0"], out["a1"] = out["a1"], 0
        return out


@faults.add("cpuid-path-none", "HV-ABI-005", "serves pvmsi natively but reports path 0 in CPUID(base + 1).EBX")
class CpuidPathNone(ReferenceSystem):
    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        out = super().execute_trap(vm, vcpu, arch, instruction, regs, privilege)
        if out is not None and instruction == "cpuid" and regs.get("rax", 0) & 0xFFFFFFFF == PVMSI_CPUID_BASE + 1:
            out["rbx"] = X86Path.NONE
        return out


@faults.add(
    "vendor-range-invalid",
    "HV-VER-002",
    "hands the vendor range to a vendor switch whose default answers INVALID_PARAMETER, not NOT_SUPPORTED",
)
class VendorRangeInvalid(HypervisorCore):
    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        if fn in VENDOR_FUNCTIONS and fn != Extension.FN_VENDOR_ID:
            return CallResult(Status.INVALID_PARAMETER, 0, "no such vendor function")
        return super().hypercall(vm, vcpu, fn, args)


@faults.add(
    "vendor-bit-without-id",
    "HV-VER-003",
    "offers vendor feature bit 48 while PVMSI_FN_VENDOR_ID answers NOT_SUPPORTED",
)
class VendorBitWithoutId(HypervisorCore):
    def hv_info(self, c: Call) -> dict[str, Any]:
        info = super().hv_info(c)
        return {**info, "features_offered": info["features_offered"] | 1 << Extension.F_VENDOR_FIRST_BIT}


@faults.add(
    "undefined-bit-offered",
    "HV-VER-005",
    "offers feature bit 20, which 1.0 does not define and which is outside the vendor range",
)
class UndefinedBitOffered(HypervisorCore):
    def hv_info(self, c: Call) -> dict[str, Any]:
        info = super().hv_info(c)
        return {**info, "features_offered": info["features_offered"] | 1 << 20}


@faults.add(
    "vendor-bit-required",
    "HV-VER-004",
    "has a vendor extension (VENDOR_ID answers Red Hat's 0x1AF4) and puts its feature bit 63 in features_required",
)
class VendorBitRequired(HypervisorCore):
    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        if fn == Extension.FN_VENDOR_ID:
            return CallResult(Status.SUCCESS, 0x1AF4)
        return super().hypercall(vm, vcpu, fn, args)

    def hv_info(self, c: Call) -> dict[str, Any]:
        info = super().hv_info(c)
        bit = 1 << Extension.F_VENDOR_LAST_BIT
        return {**info, "features_offered": info["features_offered"] | bit, "features_required": bit}
