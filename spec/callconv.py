"""Calling conventions of pvmsi 1.0 for x86-64, arm64 and riscv64, as data (spec "Calling conventions").

All three share one function numbering (:class:`~.constants.FunctionNumber`); each architecture composes the
number into its own function id, passes four arguments and returns a signed status and one value.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import FunctionNumber

#: x86-64: RAX = X86_CALL_BASE | function number.
X86_CALL_BASE = 0x50560000
#: arm64: SMCCC function id = fast call (bit 31) | SMC64 (bit 30) | owner 6 (vendor hypervisor) | base | fn.
ARM64_SMCCC_FAST = 1 << 31
ARM64_SMCCC_64 = 1 << 30
ARM64_OWNER_VENDOR_HYP = 6
ARM64_FN_BASE = 0x5000
ARM64_CALL_BASE = ARM64_SMCCC_FAST | ARM64_SMCCC_64 | (ARM64_OWNER_VENDOR_HYP << 24) | ARM64_FN_BASE
#: riscv64: SBI extension id (experimental range 0x08000000-0x08FFFFFF; "PVM" in the low 24 bits).
RISCV_EXTENSION_ID = 0x0850564D
#: x86-64 discovery: CPUID signature of the pvmsi leaf block, as EBX, ECX, EDX.
X86_CPUID_SIGNATURE = b"PVMSIPVMSIPV"
X86_CPUID_FIRST_BASE = 0x40000000
X86_CPUID_LAST_BASE = 0x4000FF00
X86_CPUID_STEP = 0x100


@dataclass(frozen=True)
class CallingConvention:
    """How one architecture traps into the hypervisor and where each value lives."""

    arch: str
    instruction: tuple[str, ...]
    function_id_register: str
    function_id_encoding: str
    extra_id_register: str | None
    argument_registers: tuple[str, str, str, str]
    status_register: str
    value_register: str
    preserved: str
    discovery: tuple[str, ...]
    call_base: int

    def function_id(self, fn: FunctionNumber | int) -> int:
        """The value placed in :attr:`function_id_register` for function number ``fn``."""
        return self.call_base | int(fn) if self.arch != "riscv64" else int(fn)


X86_64 = CallingConvention(
    arch="x86_64",
    instruction=("vmcall", "vmmcall"),
    function_id_register="rax",
    function_id_encoding="rax = 0x50560000 | function number; bits 63:32 zero",
    extra_id_register=None,
    argument_registers=("rbx", "rcx", "rdx", "rsi"),
    status_register="rax",
    value_register="rbx",
    preserved="every register but rax and rbx",
    discovery=(
        "For base = 0x40000000, 0x40000100, ... 0x4000FF00: CPUID(base) returns in EBX, ECX, EDX the signature "
        "'PVMSIPVMSIPV' when the pvmsi leaf block is at base; EAX is then the block's highest leaf (>= base + 1).",
        "CPUID(base + 1): EAX = major << 16 | minor of the highest version implemented; EBX, ECX, EDX zero.",
        "The guest uses VMCALL on Intel and VMMCALL on AMD processors; the hypervisor accepts both.",
        "The guest then issues VERSION and GET_INFO.",
    ),
    call_base=X86_CALL_BASE,
)

ARM64 = CallingConvention(
    arch="arm64",
    instruction=("hvc #0",),
    function_id_register="w0",
    function_id_encoding=(
        "w0 = 0xC6005000 | function number (SMCCC fast call, SMC64, owner 6 vendor-specific hypervisor "
        "service, pvmsi range 0x5000-0x50FF)"
    ),
    extra_id_register=None,
    argument_registers=("x1", "x2", "x3", "x4"),
    status_register="x0",
    value_register="x1",
    preserved="x4-x30 and sp (SMCCC 1.1); x2 and x3 are returned as zero",
    discovery=(
        "The guest finds SMCCC 1.1 or later (PSCI_FEATURES(SMCCC_VERSION), then SMCCC_VERSION), with HVC as "
        "the conduit.",
        "It issues VERSION (0xC6005000): SMCCC NOT_SUPPORTED (-1) means pvmsi is absent; any other value is "
        "the version.",
        "The guest then issues GET_INFO.",
    ),
    call_base=ARM64_CALL_BASE,
)

RISCV64 = CallingConvention(
    arch="riscv64",
    instruction=("ecall",),
    function_id_register="a6",
    function_id_encoding="a7 = 0x0850564D (SBI extension id), a6 = function number",
    extra_id_register="a7",
    argument_registers=("a0", "a1", "a2", "a3"),
    status_register="a0",
    value_register="a1",
    preserved="every register but a0 and a1 (SBI binary encoding)",
    discovery=(
        "The guest calls SBI base probe_extension(0x0850564D): a non-zero answer means pvmsi is present.",
        "It then issues VERSION and GET_INFO.",
    ),
    call_base=0,
)

CONVENTIONS: tuple[CallingConvention, ...] = (X86_64, ARM64, RISCV64)
