"""The platform calling paths: x86-64's CPL rule and CPUID path, arm64's SMCCC hint bit and vendor UID, riscv64's
sbiret (spec "Calling conventions", "Discovery"). Each test runs for the architectures under test."""

from __future__ import annotations

import pytest

from pvmsi.conformance.archkit import CALL_INSTRUCTIONS, MASK64, call_registers, needs, on_arch, signed, trap
from pvmsi.conformance.toolkit import IN_GPA, OUT_GPA, SENTINEL, Session, check, encode, size, status_name
from pvmsi.spec.callconv import (
    ARM64_PSCI_FEATURES,
    ARM64_SMCCC_HINTS,
    ARM64_SMCCC_MIN_VERSION,
    ARM64_SMCCC_VERSION,
    ARM64_VENDOR_HYP_CALL_UID,
    PVMSI_UID,
    SBI_ERROR_OF_STATUS,
    X86_CPL_REFUSED,
    X86_CPUID_SIGNATURE,
    SbiError,
    X86Path,
    uid_registers,
)
from pvmsi.spec.constants import Feature, FunctionNumber, Status
from pvmsi.spec.formats import DEVICE_ID, NEGOTIATE_IN, NEGOTIATE_OUT
from pvmsi.spec.harness_constants import TrapArch, TrapInstruction
from pvmsi.spec.version import VERSION_MAJOR, VERSION_MINOR

requirement = pytest.mark.requirement
X86, ARM, RV = TrapArch.X86_64, TrapArch.ARM64, TrapArch.RISCV64


@requirement("HV-ABI-001", "HV-CALL-006")
@on_arch(X86)
def test_x86_call_from_cpl_above_zero_is_not_run(session: Session) -> None:
    """VMCALL/VMMCALL at CPL 1-3: rax = -1 (KVM's -KVM_EPERM), the other registers unchanged, nothing done (a
    NEGOTIATE at CPL 3 leaves the VM OPEN and its output block untouched)."""
    needs(session, X86)
    for instr in CALL_INSTRUCTIONS[X86]:
        for cpl in (1, 2, 3):
            regs = {**call_registers(X86, FunctionNumber.VERSION), "rbx": 0, "rdi": 0x1111, "r8": 0x2222}
            after = trap(session, X86, instr, regs, "HV-ABI-001", privilege=cpl)
            check(
                signed(after["rax"]) == X86_CPL_REFUSED,
                "HV-ABI-001",
                f"{instr.name} at CPL {cpl}: rax = -1",
                hex(after["rax"]),
            )
            same = {n: v for n, v in after.items() if n != "rax" and v != regs.get(n, 0)}
            check(not same, "HV-ABI-001", f"{instr.name} at CPL {cpl}: other registers unchanged", str(same))
    block = encode(NEGOTIATE_IN, {"version_major": VERSION_MAJOR, "version_minor": VERSION_MINOR, "features": 0})
    session.iut.mem_write(session.vm, IN_GPA, block)
    session.iut.mem_write(session.vm, OUT_GPA, bytes([SENTINEL]) * size(NEGOTIATE_OUT))
    regs = call_registers(X86, FunctionNumber.NEGOTIATE, (IN_GPA, OUT_GPA, 0, 0))
    after = trap(session, X86, TrapInstruction.VMCALL, regs, "HV-ABI-001", privilege=3)
    check(signed(after["rax"]) == X86_CPL_REFUSED, "HV-ABI-001", "NEGOTIATE at CPL 3: rax = -1", hex(after["rax"]))
    out = session.iut.mem_read(session.vm, OUT_GPA, size(NEGOTIATE_OUT))
    check(set(out) == {SENTINEL}, "HV-ABI-001", "NEGOTIATE at CPL 3 wrote nothing", out.hex())
    features = session.info().features_required | int(Feature.MSIX)
    r = session.negotiate(features)
    check(
        r.status == Status.SUCCESS,
        "HV-ABI-001",
        "the VM is still OPEN: NEGOTIATE at CPL 0 succeeds",
        status_name(r.status),
    )


@requirement("HV-ABI-005", "HV-DISC-001", "GEN-CALL-001")
@on_arch(X86)
def test_x86_cpuid_names_the_native_path(session: Session) -> None:
    """CPUID(base + 1).EBX names path NATIVE (ECX, EDX zero), and a VMCALL with the native id reaches pvmsi."""
    needs(session, X86)
    want = [int.from_bytes(X86_CPUID_SIGNATURE[i : i + 4], "little") for i in (0, 4, 8)]
    base = None
    for b in range(0x40000000, 0x40010000, 0x100):
        regs = trap(session, X86, TrapInstruction.CPUID, {"rax": b}, "HV-DISC-001")
        if [regs["rbx"], regs["rcx"], regs["rdx"]] == want:
            base = b
            break
    check(base is not None, "HV-DISC-001", "a pvmsi CPUID leaf block", "none")
    assert base is not None
    leaf = trap(session, X86, TrapInstruction.CPUID, {"rax": base + 1}, "HV-ABI-005")
    check(leaf["rbx"] == X86Path.NATIVE, "HV-ABI-005", "EBX = 1 (NATIVE)", hex(leaf["rbx"]))
    check(leaf["rcx"] == leaf["rdx"] == 0, "HV-ABI-005", "ECX = EDX = 0", f"{leaf['rcx']:#x}, {leaf['rdx']:#x}")
    after = trap(session, X86, TrapInstruction.VMCALL, call_registers(X86, FunctionNumber.VERSION), "HV-ABI-005")
    check(after["rax"] == 0, "HV-ABI-005", "a native VMCALL reaches pvmsi: SUCCESS", hex(after["rax"]))


@requirement("HV-ABI-002", "HV-CALL-001")
@on_arch(ARM)
def test_arm64_hint_bit_is_ignored_and_reserved_bits_are_not_pvmsi(session: Session) -> None:
    """A pvmsi function id with bit 16 (SVE hint) set is the same call; one with a bit of 23:17 set gets SMCCC
    NOT_SUPPORTED in x0 and does nothing."""
    needs(session, ARM)
    version = session.version().value
    regs = call_registers(ARM, FunctionNumber.VERSION)
    regs["x0"] |= ARM64_SMCCC_HINTS
    after = trap(session, ARM, TrapInstruction.HVC, regs, "HV-ABI-002")
    check(
        after["x0"] == 0 and after["x1"] == version,
        "HV-ABI-002",
        f"VERSION with bit 16 set: x0 = 0, x1 = {version:#x}",
        f"x0 = {after['x0']:#x}, x1 = {after['x1']:#x}",
    )
    for bit in range(17, 24):
        regs = call_registers(ARM, FunctionNumber.VERSION)
        regs["x0"] |= 1 << bit
        after = trap(session, ARM, TrapInstruction.HVC, regs, "HV-ABI-002")
        check(signed(after["x0"]) == -1, "HV-ABI-002", f"bit {bit} set: x0 = -1 (NOT_SUPPORTED)", hex(after["x0"]))


@requirement("HV-ABI-003")
@on_arch(ARM)
def test_arm64_smccc_version_and_pvmsi_uid(session: Session) -> None:
    """PSCI_FEATURES(SMCCC_VERSION) succeeds, SMCCC_VERSION is 1.1 or later, and the vendor hypervisor Call UID is
    the pvmsi UID."""
    needs(session, ARM)
    after = trap(
        session, ARM, TrapInstruction.HVC, {"x0": ARM64_PSCI_FEATURES, "x1": ARM64_SMCCC_VERSION}, "HV-ABI-003"
    )
    check(signed(after["x0"]) >= 0, "HV-ABI-003", "PSCI_FEATURES(SMCCC_VERSION) >= 0", hex(after["x0"]))
    after = trap(session, ARM, TrapInstruction.HVC, {"x0": ARM64_SMCCC_VERSION}, "HV-ABI-003")
    check(
        ARM64_SMCCC_MIN_VERSION <= signed(after["x0"]) <= 0x7FFFFFFF,
        "HV-ABI-003",
        "SMCCC_VERSION >= 1.1",
        hex(after["x0"]),
    )
    after = trap(session, ARM, TrapInstruction.HVC, {"x0": ARM64_VENDOR_HYP_CALL_UID}, "HV-ABI-003")
    got = tuple(after[f"x{i}"] & 0xFFFFFFFF for i in range(4))
    check(
        got == uid_registers(PVMSI_UID),
        "HV-ABI-003",
        f"w0..w3 = the pvmsi UID {PVMSI_UID}",
        ", ".join(hex(w) for w in got),
    )


def _sbiret(session: Session, fn: int, args: tuple[int, int, int, int]) -> tuple[int, int]:
    after = trap(session, RV, TrapInstruction.ECALL, call_registers(RV, fn, args), "HV-ABI-004")
    return signed(after["a0"]), after["a1"]


@requirement("HV-ABI-004", "HV-CALL-001", "HV-CALL-003")
@on_arch(RV)
def test_riscv64_returns_sbiret(session: Session) -> None:
    """Success is SBI_SUCCESS with the value in a1; each failure is the mapped SBI error in a0 with pvmsi's status
    in a1; an unknown function is SBI_ERR_NOT_SUPPORTED."""
    needs(session, RV)
    version = session.version().value
    got = _sbiret(session, FunctionNumber.VERSION, (0, 0, 0, 0))
    check(got == (SbiError.SUCCESS, version), "HV-ABI-004", f"VERSION: a0 = 0, a1 = {version:#x}", str(got))
    session.iut.mem_write(
        session.vm, IN_GPA, encode(DEVICE_ID, {"segment": 0, "bus": 0, "devfn": 0xF8, "flags": 0, "subdevice_id": 0})
    )
    cases = [
        (0xFF, (0, 0, 0, 0), Status.NOT_SUPPORTED, "an undefined function"),
        (FunctionNumber.VERSION, (0, 0, 0, 1), Status.INVALID_PARAMETER, "a reserved register set"),
        (FunctionNumber.MSG_ALLOC, (IN_GPA, OUT_GPA, 0, 0), Status.WRONG_STATE, "MSG_ALLOC while OPEN"),
        (FunctionNumber.GET_INFO, (0, OUT_GPA + 4, 0, 0), Status.INVALID_ADDRESS, "a misaligned output block"),
    ]
    for fn, args, status, what in cases:
        got = _sbiret(session, fn, args)
        want = (SBI_ERROR_OF_STATUS[status], int(status) & MASK64)
        check(
            got == want,
            "HV-ABI-004",
            f"{what}: a0 = {want[0]}, a1 = {status.name} ({int(status)})",
            f"a0 = {got[0]}, a1 = {signed(got[1])}",
        )
