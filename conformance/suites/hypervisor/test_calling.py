"""Calling conventions and the order of checks (spec "Calling conventions")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.archkit import needs, on_arch
from pvmsi.conformance.toolkit import ABSENT, IN_GPA, MLX5, OUT_GPA, Session, alloc_entry, check, size, status_name
from pvmsi.spec.callconv import ARM64, X86_64
from pvmsi.spec.calls import CALLS_BY_FN
from pvmsi.spec.codec import encode
from pvmsi.spec.constants import FEATURES_1_0, FunctionNumber, KindMask, Limit, MsgKind, Status
from pvmsi.spec.extension import VENDOR_FEATURES, Extension
from pvmsi.spec.formats import BATCH_IN, CLAIM_IN, DEVICE_INFO, HV_INFO, NEGOTIATE_IN, NEGOTIATE_OUT
from pvmsi.spec.harness_constants import TrapArch, TrapInstruction

requirement = pytest.mark.requirement
MASK64 = (1 << 64) - 1
PAGE = int(Limit.PAGE_SIZE)
RISCV64_EID = 0x0850564D  # a7 of every pvmsi ECALL (spec.callconv.RISCV_EXTENSION_ID)
UNDEFINED_FNS = (0x04, 0x0F, 0x13, 0x2F, 0x7F, 0xFF)


@requirement("HV-CALL-001", "HV-CALL-002")
def test_unknown_function_is_not_supported_and_changes_nothing(session: Session) -> None:
    """Undefined function numbers return NOT_SUPPORTED with value 0 and leave the VM state unchanged."""
    for fn in UNDEFINED_FNS:
        out = session.call(fn)
        check(
            out.status == Status.NOT_SUPPORTED, "HV-CALL-001", f"fn {fn:#x} -> NOT_SUPPORTED", status_name(out.status)
        )
        check(out.value == 0, "HV-CALL-004", "value 0", hex(out.value))
    # nothing changed: the VM is still OPEN and negotiates normally
    check(session.negotiate().status == Status.SUCCESS, "HV-CALL-001", "NEGOTIATE still succeeds", "it failed")


@requirement("HV-CALL-002", "HV-VER-001")
def test_every_defined_function_exists(session: Session) -> None:
    """Every 1.0 function is implemented and rejects a non-zero reserved arg2 with INVALID_PARAMETER."""
    for fn in FunctionNumber:
        call = CALLS_BY_FN[fn]
        # well formed (zeroed blocks, while OPEN): any answer but NOT_SUPPORTED shows the call is implemented
        out = session.call(fn, b"\0" * 64 if call.input else None, 64 if call.output else 0)
        check(
            out.status != Status.NOT_SUPPORTED,
            "HV-VER-001",
            f"{fn.name}, a call of 1.0, is implemented (not NOT_SUPPORTED)",
            status_name(out.status),
        )
        out = session.call(fn, args=(0, 0, 1, 0))  # a reserved register set: a defined call must say so
        check(
            out.status != Status.NOT_SUPPORTED, "HV-CALL-002", f"{fn.name} not NOT_SUPPORTED", status_name(out.status)
        )
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-CALL-003",
            f"{fn.name} with arg2=1 -> INVALID_PARAMETER",
            status_name(out.status),
        )


@requirement("HV-CALL-003", "HV-CALL-004")
def test_reserved_and_missing_registers(session: Session) -> None:
    """A non-zero reserved register or a missing or unexpected block address is INVALID_PARAMETER, value 0."""
    cases = [
        (FunctionNumber.VERSION, (0, 0, 0, 1), "arg3 non-zero"),
        (FunctionNumber.VERSION, (IN_GPA, 0, 0, 0), "arg0 set for a call without input block"),
        (FunctionNumber.VERSION, (0, OUT_GPA, 0, 0), "arg1 set for a call without output block"),
        (FunctionNumber.GET_INFO, (0, 0, 0, 0), "no output block address"),
        (FunctionNumber.NEGOTIATE, (0, OUT_GPA, 0, 0), "no input block address"),
        (FunctionNumber.RESET, (IN_GPA, 0, 0, 0), "arg0 set for RESET"),
    ]
    for fn, args, what in cases:
        out = session.call(fn, args=args)
        check(
            out.status == Status.INVALID_PARAMETER,
            "HV-CALL-003",
            f"{fn.name} {what} -> INVALID_PARAMETER",
            status_name(out.status),
        )
        check(out.value == 0, "HV-CALL-004", f"{fn.name} failing -> value 0", hex(out.value))


@requirement("HV-CALL-005")
def test_checks_come_in_the_specified_order(session: Session) -> None:
    """Checks run in order: registers, then VM state, then block addresses, then block contents."""
    # registers before state: MSG_ALLOC while OPEN with a reserved register
    out = session.call(FunctionNumber.MSG_ALLOC, args=(IN_GPA, OUT_GPA, 0, 7))
    check(
        out.status == Status.INVALID_PARAMETER,
        "HV-CALL-005",
        "registers first: INVALID_PARAMETER",
        status_name(out.status),
    )
    # state before addresses: MSG_ALLOC while OPEN with a misaligned block
    out = session.call(FunctionNumber.MSG_ALLOC, args=(IN_GPA + 4, OUT_GPA, 0, 0))
    check(
        out.status == Status.WRONG_STATE, "HV-CALL-005", "state before addresses: WRONG_STATE", status_name(out.status)
    )
    # addresses before contents: NEGOTIATE with a bad reserved field at a misaligned address
    bad = bytearray(encode(NEGOTIATE_IN, {"version_major": 1, "version_minor": 0, "features": 2}))
    bad[4] = 1
    out = session.call(FunctionNumber.NEGOTIATE, bytes(bad), size(NEGOTIATE_OUT), in_gpa=IN_GPA + 4)
    check(
        out.status == Status.INVALID_ADDRESS,
        "HV-CALL-005",
        "addresses before contents: INVALID_ADDRESS",
        status_name(out.status),
    )
    session.negotiated()
    # contents before the call's own checks: a reserved field and an unknown device
    claim = bytearray(encode(CLAIM_IN, {"device": ABSENT.wire(), "kinds": int(KindMask.MSIX)}))
    claim[20] = 1
    out = session.call(FunctionNumber.DEVICE_CLAIM, bytes(claim))
    check(
        out.status == Status.INVALID_PARAMETER,
        "HV-CALL-005",
        "contents before device lookup: INVALID_PARAMETER",
        status_name(out.status),
    )


@requirement("HV-CALL-005", "HV-ALLOC-001")
def test_a_batch_header_is_checked_before_the_whole_blocks(session: Session) -> None:
    """A batch's header (address, contents, device) is checked before the whole blocks' addresses."""
    session.negotiated()
    # the header fits in its page, the four entries after it cross into the next one
    entries = [alloc_entry(MsgKind.MSIX, s) for s in range(4)]
    at = IN_GPA + PAGE - size(BATCH_IN) - 24
    cases = (
        (ABSENT, Status.UNKNOWN_DEVICE, "an unknown device"),
        (MLX5, Status.WRONG_STATE, "a device not claimed (HV-ALLOC-001)"),
    )
    for dev, expected, what in cases:
        b = session.alloc(dev, entries, in_gpa=at)
        check(
            b.status == expected,
            "HV-CALL-005",
            f"{what} in the header, entries crossing a page -> {expected.name} (device before whole blocks)",
            status_name(b.status),
        )


def _trap(
    session: Session, arch: TrapArch, instr: TrapInstruction, regs: list[int], rid: str = "GEN-CALL-001"
) -> list[int]:
    handled, after = session.iut.trap(session.vm, 0, arch, instr, regs)
    session.log(
        f"TRAP {arch.name} {instr.name} {[hex(r) for r in regs]} -> handled={handled} {[hex(r) for r in after]}"
    )
    check(handled, rid, f"{instr.name} handled as a pvmsi call", "not handled")
    return after


@requirement("GEN-CALL-001", "HV-CALL-004", "HV-CALL-006", "HV-SEC-008")
@on_arch(TrapArch.X86_64)
def test_x86_64_registers_vmcall_and_vmmcall(session: Session) -> None:
    """On x86-64, VMCALL and VMMCALL both answer in rax and rbx and preserve rcx..r9."""
    needs(session, TrapArch.X86_64)
    version = session.version().value
    for instr in (TrapInstruction.VMCALL, TrapInstruction.VMMCALL):
        # rax, rbx, rcx, rdx, rsi, rdi, r8, r9
        before = [X86_64.function_id(FunctionNumber.VERSION), 0, 0, 0, 0, 0x1111, 0x2222, 0x3333]
        after = _trap(session, TrapArch.X86_64, instr, before, "HV-CALL-006")  # both, whatever the vendor
        check(after[0] == 0, "HV-CALL-006", f"{instr.name}: rax = SUCCESS", hex(after[0]))
        check(after[1] == version, "GEN-CALL-001", f"{instr.name}: rbx = version {version:#x}", hex(after[1]))
        check(
            after[2:] == before[2:], "HV-CALL-004", f"{instr.name}: rcx..r9 preserved", str([hex(r) for r in after[2:]])
        )


@requirement("GEN-CALL-001", "HV-CALL-004", "HV-CALL-001")
@on_arch(TrapArch.ARM64)
def test_arm64_registers_hvc(session: Session) -> None:
    """On arm64, HVC answers in x0/x1, zeroes x2 and x3, keeps x4..x7, and gives -1 for an unknown call."""
    needs(session, TrapArch.ARM64)
    version = session.version().value
    before = [ARM64.function_id(FunctionNumber.VERSION), 0, 0, 0, 0, 0x55, 0x66, 0x77]
    after = _trap(session, TrapArch.ARM64, TrapInstruction.HVC, before)
    check(
        after[0] == 0 and after[1] == version,
        "GEN-CALL-001",
        f"x0 = 0, x1 = {version:#x}",
        f"x0 = {after[0]:#x}, x1 = {after[1]:#x}",
    )
    check(after[2] == 0 and after[3] == 0, "HV-CALL-004", "x2 = x3 = 0", f"{after[2]:#x}, {after[3]:#x}")
    check(after[4:] == before[4:], "HV-CALL-004", "x4..x7 preserved", str([hex(r) for r in after[4:]]))
    after = _trap(session, TrapArch.ARM64, TrapInstruction.HVC, [ARM64.function_id(0xFF), 0, 0, 0, 0, 0, 0, 0])
    check(after[0] == Status.NOT_SUPPORTED & MASK64, "HV-CALL-001", "x0 = -1 (NOT_SUPPORTED)", hex(after[0]))


@requirement("GEN-CALL-001", "HV-CALL-004")
@on_arch(TrapArch.RISCV64)
def test_riscv64_registers_ecall(session: Session) -> None:
    """On riscv64, an ECALL with the pvmsi extension id answers in a0 and a1 and preserves a2..a7."""
    needs(session, TrapArch.RISCV64)
    version = session.version().value
    # a0..a7: a6 = function number, a7 = extension id
    before = [0, 0, 0, 0, 0x44, 0x55, FunctionNumber.VERSION, RISCV64_EID]
    after = _trap(session, TrapArch.RISCV64, TrapInstruction.ECALL, before)
    check(
        after[0] == 0 and after[1] == version,
        "GEN-CALL-001",
        f"a0 = 0, a1 = {version:#x}",
        f"a0 = {after[0]:#x}, a1 = {after[1]:#x}",
    )
    check(after[2:] == before[2:], "HV-CALL-004", "a2..a7 preserved", str([hex(r) for r in after[2:]]))


@requirement("HV-CALL-003", "HV-MEM-006")
def test_failed_call_writes_no_output(session: Session) -> None:
    """A failed DEVICE_QUERY leaves its output block untouched, and GET_INFO writes nothing past hv_info."""
    session.negotiated()
    out = session.call(FunctionNumber.DEVICE_QUERY, encode_absent(), size(DEVICE_INFO))
    check(out.status == Status.UNKNOWN_DEVICE, "HV-DEV-001", "UNKNOWN_DEVICE", status_name(out.status))
    check(set(out.out) == {0xA5}, "HV-MEM-006", "output block untouched", out.out.hex())
    # GET_INFO writes its 48 bytes and nothing after them
    out = session.call(FunctionNumber.GET_INFO, None, size(HV_INFO) + 16)
    check(
        out.out[size(HV_INFO) :] == b"\xa5" * 16,
        "HV-MEM-006",
        "bytes after hv_info untouched",
        out.out[size(HV_INFO) :].hex(),
    )


def encode_absent() -> bytes:
    from pvmsi.spec.formats import DEVICE_ID

    return encode(DEVICE_ID, {"segment": 0, "bus": 0, "devfn": 0xF8, "flags": 0, "subdevice_id": 0})


@requirement("HV-VER-002", "HV-VER-003", "HV-VER-004", "HV-VER-005")
def test_vendor_range_is_answered_as_specified(session: Session) -> None:
    """The vendor range: PVMSI_FN_VENDOR_ID says whether there are vendor extensions; without them every vendor
    function is NOT_SUPPORTED and no vendor feature bit or message format is reported; no vendor bit is ever
    required; the defined feature bits are the only ones outside the vendor range."""
    info = session.info()
    check(
        info.features_required & VENDOR_FEATURES == 0,
        "HV-VER-004",
        "no vendor feature bit in features_required",
        f"{info.features_required:#x}",
    )
    check(
        info.features_offered & ~VENDOR_FEATURES & ~int(FEATURES_1_0) == 0,
        "HV-VER-005",
        "outside the vendor range, only defined feature bits are offered",
        f"{info.features_offered:#x}",
    )
    vid = session.call(Extension.FN_VENDOR_ID)
    if vid.status == Status.NOT_SUPPORTED:
        check(vid.value == 0, "HV-VER-002", "VENDOR_ID NOT_SUPPORTED with value 0", hex(vid.value))
        check(
            info.features_offered & VENDOR_FEATURES == 0,
            "HV-VER-003",
            "no vendor feature bit offered without VENDOR_ID",
            f"{info.features_offered:#x}",
        )
        check(
            int(info.message_format) < Extension.MSGFMT_VENDOR_FIRST,
            "HV-VER-003",
            "no vendor message format without VENDOR_ID",
            str(info.message_format),
        )
        for fn in (0xC1, 0xD0, 0xE0, 0xF0, 0xFE, Extension.FN_VENDOR_LAST):
            out = session.call(fn)
            check(
                out.status == Status.NOT_SUPPORTED,
                "HV-VER-002",
                f"vendor fn {fn:#x} -> NOT_SUPPORTED",
                status_name(out.status),
            )
            check(out.value == 0, "HV-VER-002", f"vendor fn {fn:#x}: value 0", hex(out.value))
    else:
        check(
            vid.status == Status.SUCCESS, "HV-VER-003", "VENDOR_ID: SUCCESS or NOT_SUPPORTED", status_name(vid.status)
        )
        check(
            vid.value >> 16 == 0 and vid.value != 0,
            "HV-VER-003",
            "VENDOR_ID: a PCI-SIG vendor ID in value bits 15:0, bits 63:16 zero",
            hex(vid.value),
        )
    # nothing changed: the VM is still OPEN and negotiates normally
    check(session.negotiate().status == Status.SUCCESS, "HV-VER-002", "NEGOTIATE still succeeds", "it failed")
