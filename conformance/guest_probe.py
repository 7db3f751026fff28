"""The platform discovery the suite's host model answers for a guest under test (spec "Discovery"): CPUID leaves,
PSCI/SMCCC and the vendor hypervisor Call UID, the SBI probe; and what the guest learnt from them, so that a
pvmsi call it issues without having found pvmsi is a violation (GUEST-ABI-001..003)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from ..reference.backend import ReferenceHypervisor
from ..spec.callconv import (
    ARM64_PSCI_FEATURES,
    ARM64_SMCCC_NOT_SUPPORTED,
    ARM64_SMCCC_VERSION,
    ARM64_VENDOR_HYP_CALL_UID,
    KVM_VENDOR_HYP_UID,
    RISCV_EXTENSION_ID,
    SBI_BASE_EXTENSION,
    SBI_PROBE_EXTENSION,
    X86_CPUID_SIGNATURE,
    SbiError,
    X86Path,
    uid_registers,
)
from ..spec.harness_constants import TRAP_REGISTERS, TrapArch, TrapInstruction

#: The guest requirement each architecture's discovery rule has.
ABI_RULE: dict[TrapArch, str] = {
    TrapArch.ARM64: "GUEST-ABI-001",
    TrapArch.RISCV64: "GUEST-ABI-002",
    TrapArch.X86_64: "GUEST-ABI-003",
}
KVM_CPUID_SIGNATURE = b"KVMKVMKVM\0\0\0"
#: A CPUID(base + 1).EBX path no version of pvmsi defines (X86Path: 0 none, 1 native).
UNDEFINED_X86_PATH = 2
MASK64 = (1 << 64) - 1


class Probe(Enum):
    """What the platform tells the guest's discovery (HostKnobs.probe)."""

    #: pvmsi is there: the reference's answers (pvmsi CPUID block with path NATIVE, the pvmsi UID, probe 1).
    PVMSI = "pvmsi"
    #: Another vendor's hypervisor: KVM's CPUID block only, KVM's vendor UID, the SBI probe answers 0.
    FOREIGN = "foreign"
    #: pvmsi's CPUID block names path 0 (another emulation takes the VMCALLs); KVM's UID; the SBI probe 0.
    NO_PATH = "no-path"
    #: pvmsi identifies itself but cannot be used: the CPUID block names a path no version defines (2); the pvmsi
    #: Call UID behind SMCCC 1.0 (PSCI_FEATURES and SMCCC_VERSION answer NOT_SUPPORTED); the SBI probe fails
    #: (SBI_ERR_NOT_SUPPORTED) with a non-zero a1.  Discovery must find pvmsi absent in every case
    #: (GUEST-ABI-001..003: each check of the platform's discovery, not only the identifying answer).
    UNUSABLE = "unusable"


def _words(sig: bytes) -> list[int]:
    return [int.from_bytes(sig[i : i + 4], "little") for i in (0, 4, 8)]


class GuestProbe:
    """Answers a guest's discovery traps as ``probe`` says and remembers what the guest has been told."""

    def __init__(self, hv: ReferenceHypervisor, vm: int, probe: Probe) -> None:
        self.hv, self.vm, self.probe = hv, vm, probe
        self.arch: TrapArch | None = None  # the architecture the guest discovers on
        self.found = False  # the guest has been shown pvmsi present (the identifying answer was pvmsi's)
        self._x86_base: int | None = None  # the pvmsi CPUID block the guest has found

    def trap(
        self, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int], log: Callable[[str], None]
    ) -> tuple[bool, list[int]]:
        names = TRAP_REGISTERS[arch]
        before = dict(zip(names, regs, strict=True))
        handled, after_list = self.hv.trap(self.vm, vcpu, arch, instruction, regs)
        after = dict(zip(names, after_list, strict=True))
        self.arch = arch
        identifying = self._answer(arch, instruction, before, after)
        if identifying:
            self.found = self.probe is Probe.PVMSI
        log(
            f"TRAP {arch.name} {instruction.name} {[hex(r) for r in regs]} -> "
            f"{[hex(after[n]) for n in names]}{' (identifies pvmsi)' if identifying and self.found else ''}"
        )
        return handled, [after[n] for n in names]

    def _answer(
        self, arch: TrapArch, instruction: TrapInstruction, before: dict[str, int], after: dict[str, int]
    ) -> bool:
        """Rewrite ``after`` for the platform ``probe`` describes; whether this trap is the one that identifies
        pvmsi (the version leaf, the Call UID, the SBI probe)."""
        if arch is TrapArch.X86_64 and instruction is TrapInstruction.CPUID:
            leaf = before["rax"] & 0xFFFFFFFF
            is_block = after["rax"] == leaf + 1 and [after["rbx"], after["rcx"], after["rdx"]] == _words(
                X86_CPUID_SIGNATURE
            )
            if self.probe is Probe.FOREIGN:
                kvm = leaf == 0x40000000
                after.update(rax=0x40000001 if kvm else 0, rbx=0, rcx=0, rdx=0)
                if kvm:
                    after.update(zip(("rbx", "rcx", "rdx"), _words(KVM_CPUID_SIGNATURE), strict=True))
                return False
            if is_block:
                self._x86_base = leaf
                return False
            identifying = self._x86_base is not None and leaf == self._x86_base + 1
            if identifying and self.probe is Probe.NO_PATH:
                after["rbx"] = X86Path.NONE
            if identifying and self.probe is Probe.UNUSABLE:
                after["rbx"] = UNDEFINED_X86_PATH
            return identifying
        if arch is TrapArch.ARM64:
            return self._answer_arm64(before, after)
        probe = before.get("a7") == SBI_BASE_EXTENSION and before.get("a6") == SBI_PROBE_EXTENSION
        if arch is TrapArch.RISCV64 and probe and before.get("a0") == RISCV_EXTENSION_ID:
            if self.probe is Probe.UNUSABLE:
                after.update(a0=SbiError.NOT_SUPPORTED & MASK64, a1=1)
            elif self.probe is not Probe.PVMSI:
                after["a1"] = 0
            return True
        return False

    def _answer_arm64(self, before: dict[str, int], after: dict[str, int]) -> bool:
        """SMCCC discovery: UNUSABLE is an SMCCC 1.0 conduit (no SMCCC_VERSION) behind which the vendor UID is
        pvmsi's; FOREIGN and NO_PATH answer KVM's UID.  Whether this trap is the Call UID."""
        fid = before["x0"] & 0xFFFFFFFF
        if self.probe is Probe.UNUSABLE and (
            fid == ARM64_SMCCC_VERSION
            or (fid == ARM64_PSCI_FEATURES and before["x1"] & 0xFFFFFFFF == ARM64_SMCCC_VERSION)
        ):
            after["x0"] = ARM64_SMCCC_NOT_SUPPORTED & MASK64
            return False
        if fid != ARM64_VENDOR_HYP_CALL_UID:
            return False
        if self.probe in (Probe.FOREIGN, Probe.NO_PATH):
            after.update({f"x{i}": w for i, w in enumerate(uid_registers(KVM_VENDOR_HYP_UID))})
        return True

    def violation(self) -> tuple[str, str] | None:
        """The rule a pvmsi call breaks now: the guest did no discovery, or discovery did not find pvmsi."""
        if self.found:
            return None
        if self.arch is None:
            return "GUEST-DISC-001", "a pvmsi call before any platform discovery (CPUID, Call UID or SBI probe)"
        return ABI_RULE[
            self.arch
        ], f"a pvmsi call although {self.arch.name} discovery did not show pvmsi ({self.probe.value})"
