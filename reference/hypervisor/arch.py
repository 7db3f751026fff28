"""Register-level entry: recognise a pvmsi call in a vCPU's registers and write the result back
(spec "Calling conventions"; the conventions themselves are data in :mod:`pvmsi.spec.callconv`)."""

from __future__ import annotations

from collections.abc import Mapping

from ...spec.callconv import (
    ARM64_PSCI_FEATURES,
    ARM64_SMCCC_HINTS,
    ARM64_SMCCC_NOT_SUPPORTED,
    ARM64_SMCCC_VERSION,
    ARM64_VENDOR_HYP_CALL_UID,
    CONVENTIONS,
    PVMSI_UID,
    RISCV_EXTENSION_ID,
    SBI_BASE_EXTENSION,
    SBI_GET_SPEC_VERSION,
    SBI_PROBE_EXTENSION,
    X86_CPL_REFUSED,
    X86_CPUID_SIGNATURE,
    CallingConvention,
    SbiError,
    X86Path,
    sbiret_of,
    uid_registers,
)
from .call import CallResult
from .core import HypervisorCore
from .ports import VmPort

MASK64 = (1 << 64) - 1
FN_MASK = 0xFF

BY_ARCH: dict[str, CallingConvention] = {cc.arch: cc for cc in CONVENTIONS}


def id_register(cc: CallingConvention) -> str:
    """The 64-bit register holding the function id (arm64's w0 is the low half of x0)."""
    reg = cc.function_id_register
    return "x" + reg[1:] if reg.startswith("w") else reg


def function_number(cc: CallingConvention, regs: Mapping[str, int]) -> int | None:
    """The pvmsi function number in ``regs``, or None when the trap is not a pvmsi call at all."""
    fid = regs.get(id_register(cc), 0)
    if cc.arch == "riscv64":
        if regs.get(cc.extra_id_register or "", 0) != RISCV_EXTENSION_ID:
            return None
        return fid  # any FID of the pvmsi extension is ours; an unknown one gets NOT_SUPPORTED
    if cc.arch == "arm64":
        fid &= 0xFFFFFFFF & ~ARM64_SMCCC_HINTS  # w0; the SMCCC 1.3 hint bit is ignored (HV-ABI-002)
    if fid & ~FN_MASK != cc.call_base:
        return None  # arm64: a set reserved bit 23:17 is another function id, answered NOT_SUPPORTED
    return fid & FN_MASK


def to_signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def hypercall_registers(
    core: HypervisorCore, vm: VmPort, vcpu: int, arch: str, regs: Mapping[str, int], privilege: int = 0
) -> dict[str, int] | None:
    """Run the pvmsi call in ``regs``; the register file after the call, or None if not a pvmsi call."""
    cc = BY_ARCH[arch]
    fn = function_number(cc, regs)
    if fn is None:
        return None
    out = dict(regs)
    if privilege:
        out[cc.status_register] = X86_CPL_REFUSED & MASK64  # HV-ABI-001: not run, as KVM's -KVM_EPERM
        return out
    args = [regs.get(r, 0) & MASK64 for r in cc.argument_registers]
    result: CallResult = core.hypercall(vm, vcpu, fn, args)
    status, value = result.status, result.value
    if arch == "riscv64":
        status, value = sbiret_of(status, value)  # HV-ABI-004: SBI's error in a0, pvmsi's status in a1
    out[cc.status_register] = status & MASK64
    out[cc.value_register] = value & MASK64
    if arch == "arm64":
        out["x2"] = 0  # spec: x2 and x3 are returned as zero
        out["x3"] = 0
    return out


# -- discovery traps around the pvmsi calls (spec "Discovery") --------------------------------------------------

#: Where the reference puts the pvmsi CPUID leaf block (HV-DISC-001 allows any base 0x40000000 + k * 0x100).
PVMSI_CPUID_BASE = 0x40000100
HYPERVISOR_CPUID_SIGNATURE = b"pvmsiRefHV\0\0"
SBI_ERR_NOT_SUPPORTED = SbiError.NOT_SUPPORTED
SMCCC_VERSION = ARM64_SMCCC_VERSION
SMCCC_NOT_SUPPORTED = ARM64_SMCCC_NOT_SUPPORTED


def _sig(sig: bytes) -> tuple[int, int, int]:
    return tuple(int.from_bytes(sig[i : i + 4], "little") for i in (0, 4, 8))  # type: ignore[return-value]


def cpuid(leaf: int, version: int) -> tuple[int, int, int, int]:
    """The reference's hypervisor CPUID leaves: its own at 0x40000000, pvmsi's block at 0x40000100."""
    if leaf == 0x40000000:
        return (0x40000001, *_sig(HYPERVISOR_CPUID_SIGNATURE))
    if leaf == PVMSI_CPUID_BASE:
        return (PVMSI_CPUID_BASE + 1, *_sig(X86_CPUID_SIGNATURE))
    if leaf == PVMSI_CPUID_BASE + 1:
        return (version, X86Path.NATIVE, 0, 0)  # HV-DISC-001, HV-ABI-005: the path that reaches pvmsi
    return (0, 0, 0, 0)


def firmware_call(arch: str, regs: Mapping[str, int]) -> dict[str, int] | None:
    """The non-pvmsi calls a guest uses to discover pvmsi: PSCI_FEATURES, SMCCC_VERSION and the vendor hypervisor
    Call UID on arm64, SBI base on riscv64."""
    out = dict(regs)
    if arch == "arm64":
        fid = regs.get("x0", 0) & 0xFFFFFFFF & ~ARM64_SMCCC_HINTS
        if fid == SMCCC_VERSION:
            out["x0"] = 0x10001  # SMCCC 1.1
        elif fid == ARM64_PSCI_FEATURES and regs.get("x1", 0) & 0xFFFFFFFF == SMCCC_VERSION:
            out["x0"] = 0  # SMCCC_VERSION is implemented
        elif fid == ARM64_VENDOR_HYP_CALL_UID:
            for i, word in enumerate(uid_registers(PVMSI_UID)):  # HV-ABI-003
                out[f"x{i}"] = word
        else:
            out["x0"] = SMCCC_NOT_SUPPORTED & MASK64  # an unknown function id (SMCCC)
        return out
    if arch == "riscv64":
        if regs.get("a7", 0) == SBI_BASE_EXTENSION:
            fid = regs.get("a6", 0)
            if fid == SBI_PROBE_EXTENSION:
                out["a0"], out["a1"] = 0, int(regs.get("a0", 0) == RISCV_EXTENSION_ID)
                return out
            if fid == SBI_GET_SPEC_VERSION:
                out["a0"], out["a1"] = 0, 0x03000000  # SBI v3.0
                return out
        out["a0"], out["a1"] = SBI_ERR_NOT_SUPPORTED & MASK64, 0
        return out
    return None
