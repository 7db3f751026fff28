"""The guest's platform discovery before any pvmsi call (spec "Discovery"; the steps are data in
:mod:`pvmsi.spec.callconv`): the CPUID leaf block and its hypercall path on x86-64, SMCCC and the vendor
hypervisor Call UID on arm64, the SBI probe on riscv64."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ...spec.callconv import (
    ARM64_PSCI_FEATURES,
    ARM64_SMCCC_MIN_VERSION,
    ARM64_SMCCC_VERSION,
    ARM64_VENDOR_HYP_CALL_UID,
    PVMSI_UID,
    RISCV_EXTENSION_ID,
    SBI_BASE_EXTENSION,
    SBI_PROBE_EXTENSION,
    X86_CPUID_FIRST_BASE,
    X86_CPUID_LAST_BASE,
    X86_CPUID_SIGNATURE,
    X86_CPUID_STEP,
    SbiError,
    X86Path,
    uid_registers,
)
from .actions import Trap

#: Yields traps, receives the registers after each, returns None when pvmsi is there, else why it is not.
Probe = Generator[Trap, dict[str, int], str | None]
MASK64 = (1 << 64) - 1
#: The hypercall paths this guest implements (CPUID(base + 1).EBX).
KNOWN_PATHS = frozenset({X86Path.NATIVE})


def _signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def _trap(arch: str, instruction: str, **regs: int) -> Trap:
    return Trap(arch, instruction, tuple(regs.items()))


def x86_64(known_paths: frozenset[int] = KNOWN_PATHS) -> Probe:
    """The pvmsi CPUID leaf block, its version leaf and a hypercall path this guest knows (GUEST-ABI-003)."""
    sig = tuple(int.from_bytes(X86_CPUID_SIGNATURE[i : i + 4], "little") for i in (0, 4, 8))
    for base in range(X86_CPUID_FIRST_BASE, X86_CPUID_LAST_BASE + 1, X86_CPUID_STEP):
        r = yield _trap("x86_64", "cpuid", rax=base)
        if (r.get("rbx", 0), r.get("rcx", 0), r.get("rdx", 0)) == sig and r.get("rax", 0) >= base + 1:
            leaf = yield _trap("x86_64", "cpuid", rax=base + 1)
            if leaf.get("rbx", 0) not in known_paths:
                return f"CPUID path {leaf.get('rbx', 0)}: no way to reach pvmsi"
            return None
    return "no pvmsi CPUID leaf block"


def arm64(compare_uid: bool = True) -> Probe:
    """SMCCC 1.1 or later, then the vendor hypervisor Call UID compared with the pvmsi UID (GUEST-ABI-001)."""
    r = yield _trap("arm64", "hvc", x0=ARM64_PSCI_FEATURES, x1=ARM64_SMCCC_VERSION)
    if _signed(r.get("x0", 0)) < 0:
        return "no SMCCC_VERSION"
    r = yield _trap("arm64", "hvc", x0=ARM64_SMCCC_VERSION)
    if not ARM64_SMCCC_MIN_VERSION <= _signed(r.get("x0", 0)) <= 0x7FFFFFFF:
        return "SMCCC older than 1.1"
    r = yield _trap("arm64", "hvc", x0=ARM64_VENDOR_HYP_CALL_UID)
    uid = tuple(r.get(f"x{i}", 0) & 0xFFFFFFFF for i in range(4))
    if compare_uid and uid != uid_registers(PVMSI_UID):
        return "the vendor hypervisor UID is not pvmsi's"
    return None


def riscv64(check_probe: bool = True) -> Probe:
    """SBI probe_extension of the pvmsi extension (GUEST-ABI-002)."""
    r = yield _trap("riscv64", "ecall", a0=RISCV_EXTENSION_ID, a6=SBI_PROBE_EXTENSION, a7=SBI_BASE_EXTENSION)
    if check_probe and (_signed(r.get("a0", 0)) != SbiError.SUCCESS or not r.get("a1", 0)):
        return "SBI probe_extension: pvmsi not available"
    return None


def discover(arch: str) -> Probe:
    """The discovery of ``arch``."""
    probes: dict[str, Any] = {"x86_64": x86_64, "arm64": arm64, "riscv64": riscv64}
    result: str | None = yield from probes[arch]()
    return result
