"""Calling conventions of pvmsi 1.0 for x86-64, arm64 and riscv64, as data (spec "Calling conventions",
"Discovery").

All three share one function numbering (:class:`~.constants.FunctionNumber`); each architecture composes the
number into the function id of its platform's hypervisor-call convention (Intel SDM / AMD APM VMCALL and VMMCALL
with KVM's register use; Arm DEN0028 SMCCC; RISC-V SBI), passes four arguments and returns a status and one value
in that convention's own way. Each architecture's discovery is a sequence of :class:`DiscoveryStep`.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from .constants import FunctionNumber, Status

#: x86-64: RAX = X86_CALL_BASE | function number.
X86_CALL_BASE = 0x50560000
#: x86-64: what RAX holds after a VMCALL/VMMCALL executed at CPL > 0, which the hypervisor does not run: -1, KVM's
#: -KVM_EPERM (``kvm_emulate_hypercall``: ``if (cpl) ret = -KVM_EPERM``; KVM_EPERM = EPERM = 1).
X86_CPL_REFUSED = -1
#: arm64: SMCCC function id = fast call (bit 31) | SMC64 (bit 30) | owner 6 (vendor hypervisor) | base | fn.
ARM64_SMCCC_FAST = 1 << 31
ARM64_SMCCC_64 = 1 << 30
ARM64_OWNER_VENDOR_HYP = 6
ARM64_FN_BASE = 0x5000
ARM64_CALL_BASE = ARM64_SMCCC_FAST | ARM64_SMCCC_64 | (ARM64_OWNER_VENDOR_HYP << 24) | ARM64_FN_BASE
#: SMCCC 1.3 gives bit 16 of a function id a meaning for the callee (SVE live state hint, "no SVE state to
#: preserve"); a callee masks it before decoding (Linux: ARM_SMCCC_CALL_HINTS). Bits 23:17 stay reserved (MBZ).
ARM64_SMCCC_HINTS = 1 << 16
ARM64_SMCCC_RESERVED = 0x00FE0000
#: SMCCC NOT_SUPPORTED: w0/x0 of an unknown function id.
ARM64_SMCCC_NOT_SUPPORTED = -1
#: SMCCC_VERSION (Arm architecture service) and PSCI_FEATURES, with which a guest finds it (DEN0028 section 7).
ARM64_SMCCC_VERSION = 0x80000000
ARM64_PSCI_FEATURES = 0x8400000A
#: The lowest SMCCC version pvmsi needs (1.1: x4-x17 preserved, SMCCC_VERSION exists): major << 16 | minor.
ARM64_SMCCC_MIN_VERSION = 0x10001
#: Vendor Specific Hypervisor Service Call UID (owner 6, function 0xFF01): w0..w3 = the vendor's UID.
ARM64_VENDOR_HYP_CALL_UID = 0x8600FF01
#: The pvmsi UID: a hypervisor answers ARM64_VENDOR_HYP_CALL_UID with it when its owner-6 function ids are pvmsi's.
PVMSI_UID = UUID("c1d5a0f2-4e8b-4f3a-9b6d-70766d736931")
#: KVM's vendor hypervisor UID (Linux Documentation/virt/kvm/arm/hypercalls.rst): pvmsi is not at 0xC6005000 there.
KVM_VENDOR_HYP_UID = UUID("28b46fb6-2ec5-11e9-a9ca-4b564d003a74")


def uid_registers(uid: UUID) -> tuple[int, int, int, int]:
    """w0..w3 of a Call UID answer: the UUID's bytes 0-3, 4-7, 8-11, 12-15, each little-endian (as KVM's
    ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0..3 encode 28b46fb6-... as 0xb66fb428, ...)."""
    b = uid.bytes
    return tuple(int.from_bytes(b[i : i + 4], "little") for i in (0, 4, 8, 12))  # type: ignore[return-value]


#: riscv64: SBI extension id (experimental range 0x08000000-0x08FFFFFF; "PVM" in the low 24 bits), until RISC-V
#: International allocates one in the standard range; the experimental id is then withdrawn.
RISCV_EXTENSION_ID = 0x0850564D
#: SBI base extension and its probe_extension function (SBI v3.0, chapter "Base Extension").
SBI_BASE_EXTENSION = 0x10
SBI_PROBE_EXTENSION = 3
SBI_GET_SPEC_VERSION = 0


class SbiError:
    """SBI error codes (SBI v3.0, "Standard SBI Errors"): each keeps exactly SBI's meaning in sbiret.error."""

    SUCCESS = 0
    FAILED = -1
    NOT_SUPPORTED = -2
    INVALID_PARAM = -3
    DENIED = -4
    INVALID_ADDRESS = -5
    INVALID_STATE = -10


#: riscv64: sbiret.error for each failing pvmsi status; sbiret.value then holds the pvmsi status itself. A status
#: >= 0 (SUCCESS, INCOMPLETE) is SBI_SUCCESS with the call's value in sbiret.value.
SBI_ERROR_OF_STATUS: dict[Status, int] = {
    Status.NOT_SUPPORTED: SbiError.NOT_SUPPORTED,
    Status.NOT_PERMITTED: SbiError.DENIED,
    Status.INVALID_PARAMETER: SbiError.INVALID_PARAM,
    Status.INVALID_ADDRESS: SbiError.INVALID_ADDRESS,
    Status.NO_RESOURCES: SbiError.FAILED,
    Status.WRONG_STATE: SbiError.INVALID_STATE,
    Status.UNKNOWN_HANDLE: SbiError.INVALID_PARAM,
    Status.UNKNOWN_DEVICE: SbiError.INVALID_PARAM,
    Status.VERSION_MISMATCH: SbiError.INVALID_PARAM,
    Status.FEATURES_REFUSED: SbiError.INVALID_PARAM,
    Status.REVOKED: SbiError.DENIED,
    Status.PER_VECTOR_REFUSED: SbiError.INVALID_PARAM,
    Status.NOT_ACTIVE: SbiError.INVALID_STATE,
}


def sbiret_of(status: int, value: int) -> tuple[int, int]:
    """(sbiret.error, sbiret.value) for a pvmsi (status, value)."""
    if status >= 0:
        return SbiError.SUCCESS, value
    known = {int(s): e for s, e in SBI_ERROR_OF_STATUS.items()}
    return known.get(status, SbiError.FAILED), status


#: x86-64 discovery: CPUID signature of the pvmsi leaf block, as EBX, ECX, EDX.
X86_CPUID_SIGNATURE = b"PVMSIPVMSIPV"
X86_CPUID_FIRST_BASE = 0x40000000
X86_CPUID_LAST_BASE = 0x4000FF00
X86_CPUID_STEP = 0x100


class X86Path:
    """CPUID(base + 1).EBX: how a VMCALL/VMMCALL reaches pvmsi in this VM."""

    #: No path: pvmsi is absent for this VM (e.g. its Hyper-V emulation takes every VMCALL).
    NONE = 0
    #: VMCALL/VMMCALL with rax = 0x50560000 | fn, arguments rbx, rcx, rdx, rsi; status rax, value rbx.
    NATIVE = 1


X86_PATH_DOCS: dict[int, str] = {
    X86Path.NONE: "no path reaches pvmsi in this VM: the guest treats pvmsi as absent",
    X86Path.NATIVE: "VMCALL/VMMCALL with rax = 0x50560000 | function number (the registers of this convention)",
}


@dataclass(frozen=True)
class DiscoveryStep:
    """One step of an architecture's discovery: what the guest executes and what the answer must be."""

    action: str
    registers: tuple[tuple[str, int], ...]
    present_if: str
    otherwise: str

    def text(self) -> str:
        regs = ", ".join(f"{r} = {v:#x}" for r, v in self.registers)
        return f"{self.action}{f' ({regs})' if regs else ''}: {self.present_if}; otherwise {self.otherwise}."

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "registers": {r: v for r, v in self.registers},
            "present_if": self.present_if,
            "otherwise": self.otherwise,
        }


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
    returns: str
    preserved: str
    discovery: tuple[DiscoveryStep, ...]
    call_base: int

    def function_id(self, fn: FunctionNumber | int) -> int:
        """The value placed in :attr:`function_id_register` for function number ``fn``."""
        return self.call_base | int(fn) if self.arch != "riscv64" else int(fn)


_THEN = DiscoveryStep(
    "GET_INFO, after the VERSION call of the step before (that VERSION is the guest's first pvmsi call; it does "
    "not issue a second one)",
    (),
    "that VERSION succeeded with a major version the guest implements",
    "pvmsi is absent (emulated MSI and MSI-X)",
)

X86_64 = CallingConvention(
    arch="x86_64",
    instruction=("vmcall", "vmmcall"),
    function_id_register="rax",
    function_id_encoding="rax = 0x50560000 | function number; bits 63:32 zero",
    extra_id_register=None,
    argument_registers=("rbx", "rcx", "rdx", "rsi"),
    status_register="rax",
    value_register="rbx",
    returns=(
        "rax = pvmsi status, rbx = value; from CPL > 0 the call is not run: rax = -1 (KVM's -KVM_EPERM), every "
        "other register unchanged"
    ),
    preserved="every register but rax and rbx",
    discovery=(
        DiscoveryStep(
            "CPUID(base) for base = 0x40000000, 0x40000100, ... 0x4000FF00",
            (),
            "EBX, ECX, EDX hold the signature 'PVMSIPVMSIPV' as CPUID vendor strings do, four bytes a register "
            "in little-endian order: EBX = 'PVMS' (0x534D5650), ECX = 'IPVM' (0x4D565049), EDX = 'SIPV' "
            "(0x56504953); and EAX >= base + 1 (the block's highest leaf)",
            "pvmsi is absent",
        ),
        DiscoveryStep(
            "CPUID(base + 1)",
            (),
            "EAX = major << 16 | minor of the highest version, EBX = the hypercall path (1 = NATIVE); ECX, EDX zero",
            "(EBX = 0 or a path the guest does not know) pvmsi is absent",
        ),
        DiscoveryStep(
            "pvmsi VERSION through the path NATIVE: VMCALL on Intel, VMMCALL on AMD, at CPL 0 (the hypervisor "
            "accepts both)",
            (("rax", X86_CALL_BASE | FunctionNumber.VERSION),),
            "rax = 0 and rbx = the version",
            "pvmsi is absent",
        ),
        _THEN,
    ),
    call_base=X86_CALL_BASE,
)

ARM64 = CallingConvention(
    arch="arm64",
    instruction=("hvc #0",),
    function_id_register="w0",
    function_id_encoding=(
        "w0 = 0xC6005000 | function number (SMCCC fast call, SMC64, owner 6 vendor-specific hypervisor "
        "service, pvmsi range 0x5000-0x50FF, under the pvmsi UID); bit 16 (SMCCC 1.3 SVE hint) ignored"
    ),
    extra_id_register=None,
    argument_registers=("x1", "x2", "x3", "x4"),
    status_register="x0",
    value_register="x1",
    returns="x0 = pvmsi status (SMCCC NOT_SUPPORTED, -1, for an unknown function id), x1 = value",
    preserved="x4-x30 and sp (SMCCC 1.1); x2 and x3 are returned as zero",
    discovery=(
        DiscoveryStep(
            "HVC PSCI_FEATURES",
            (("x0", ARM64_PSCI_FEATURES), ("x1", ARM64_SMCCC_VERSION)),
            "x0 >= 0: SMCCC_VERSION is implemented (PSCI 1.0 or later, conduit HVC from the firmware tables)",
            "SMCCC is 1.0 and pvmsi is absent",
        ),
        DiscoveryStep(
            "HVC SMCCC_VERSION",
            (("x0", ARM64_SMCCC_VERSION),),
            "x0 >= 0x10001 (SMCCC 1.1 or later)",
            "pvmsi is absent",
        ),
        DiscoveryStep(
            "HVC Vendor Specific Hypervisor Service Call UID",
            (("x0", ARM64_VENDOR_HYP_CALL_UID),),
            f"w0..w3 = the pvmsi UID {PVMSI_UID} ({', '.join(f'{w:#010x}' for w in uid_registers(PVMSI_UID))})",
            "the owner-6 function ids belong to another vendor (KVM, Hyper-V, Gunyah, ...) and pvmsi is absent",
        ),
        DiscoveryStep(
            "HVC VERSION",
            (("x0", ARM64_CALL_BASE | FunctionNumber.VERSION),),
            "x0 = 0 and x1 = the version",
            "pvmsi is absent",
        ),
        _THEN,
    ),
    call_base=ARM64_CALL_BASE,
)

RISCV64 = CallingConvention(
    arch="riscv64",
    instruction=("ecall",),
    function_id_register="a6",
    function_id_encoding="a7 = 0x0850564D (SBI extension id, experimental range), a6 = function number",
    extra_id_register="a7",
    argument_registers=("a0", "a1", "a2", "a3"),
    status_register="a0",
    value_register="a1",
    returns=(
        "sbiret: a0 = SBI error (SBI_SUCCESS for status >= 0, else the SBI error the status maps to), "
        "a1 = the value on success, the pvmsi status itself on failure"
    ),
    preserved="every register but a0 and a1 (SBI binary encoding)",
    discovery=(
        DiscoveryStep(
            "ECALL SBI base probe_extension",
            (("a7", SBI_BASE_EXTENSION), ("a6", SBI_PROBE_EXTENSION), ("a0", RISCV_EXTENSION_ID)),
            "a0 = SBI_SUCCESS and a1 != 0",
            "pvmsi is absent",
        ),
        DiscoveryStep(
            "ECALL VERSION",
            (("a7", RISCV_EXTENSION_ID), ("a6", int(FunctionNumber.VERSION))),
            "a0 = SBI_SUCCESS and a1 = the version",
            "pvmsi is absent",
        ),
        _THEN,
    ),
    call_base=0,
)

CONVENTIONS: tuple[CallingConvention, ...] = (X86_64, ARM64, RISCV64)
