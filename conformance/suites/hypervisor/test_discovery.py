"""Discovery: CPUID on x86-64, SBI probe on riscv64, VERSION and GET_INFO in every state (spec "Discovery")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.archkit import needs, on_arch
from pvmsi.conformance.toolkit import Session, check, status_name
from pvmsi.spec.callconv import RISCV_EXTENSION_ID, X86_CPUID_SIGNATURE
from pvmsi.spec.calls import LARGEST_BATCH
from pvmsi.spec.constants import Feature, Status
from pvmsi.spec.harness_constants import TrapArch, TrapInstruction
from pvmsi.spec.version import VERSION_MAJOR

requirement = pytest.mark.requirement


def _cpuid(session: Session, leaf: int) -> list[int]:
    handled, regs = session.iut.trap(session.vm, 0, TrapArch.X86_64, TrapInstruction.CPUID, [leaf, 0, 0, 0, 0, 0, 0, 0])
    check(handled, "HV-DISC-001", f"CPUID({leaf:#x}) handled", "not handled")
    return regs


@requirement("HV-DISC-001")
@on_arch(TrapArch.X86_64)
def test_x86_cpuid_leaf_block(session: Session) -> None:
    """A CPUID leaf block signed 'PVMSIPVMSIPV' exists, and EAX of its next leaf is the VERSION value."""
    needs(session, TrapArch.X86_64)
    want = [int.from_bytes(X86_CPUID_SIGNATURE[i : i + 4], "little") for i in (0, 4, 8)]
    found = None
    for base in range(0x40000000, 0x40010000, 0x100):
        regs = _cpuid(session, base)
        if regs[1:4] == want:
            found = base
            check(regs[0] >= base + 1, "HV-DISC-001", f"EAX of {base:#x} >= base + 1", hex(regs[0]))
            break
    check(found is not None, "HV-DISC-001", "a leaf block signed 'PVMSIPVMSIPV'", "none in 0x40000000..0x4000FF00")
    assert found is not None
    version = session.version().value
    regs = _cpuid(session, found + 1)
    check(regs[0] == version, "HV-DISC-001", f"CPUID({found + 1:#x}).EAX = VERSION {version:#x}", hex(regs[0]))


@requirement("HV-DISC-002")
@on_arch(TrapArch.RISCV64)
def test_riscv_sbi_probe(session: Session) -> None:
    """The SBI probe_extension call reports the pvmsi extension as present."""
    needs(session, TrapArch.RISCV64)
    # a0 = extension to probe, a6 = probe_extension (3), a7 = SBI base extension (0x10)
    handled, regs = session.iut.trap(
        session.vm, 0, TrapArch.RISCV64, TrapInstruction.ECALL, [RISCV_EXTENSION_ID, 0, 0, 0, 0, 0, 3, 0x10]
    )
    check(handled and regs[0] == 0, "HV-DISC-002", "SBI_SUCCESS", f"handled={handled} a0={regs[0]:#x}")
    check(regs[1] != 0, "HV-DISC-002", "a1 != 0: pvmsi present", hex(regs[1]))


@requirement("HV-DISC-003")
def test_version_in_every_state(session: Session) -> None:
    """VERSION succeeds with the same major-1 value before and after NEGOTIATE and after RESET."""
    values = []
    values.append(session.version().value)
    session.negotiated()
    values.append(session.version().value)
    session.reset()
    values.append(session.version().value)
    check(
        len(set(values)) == 1,
        "HV-DISC-003",
        "the same VERSION before, after NEGOTIATE and after RESET",
        str([hex(v) for v in values]),
    )
    check(values[0] >> 16 == VERSION_MAJOR, "HV-DISC-003", f"major {VERSION_MAJOR}", hex(values[0]))
    out = session.version()
    check(out.status == Status.SUCCESS, "HV-DISC-003", "SUCCESS", status_name(out.status))


@requirement("HV-DISC-004")
def test_get_info_in_every_state(session: Session) -> None:
    """GET_INFO is consistent and identical before and after NEGOTIATE and after RESET."""
    first = session.info()
    check(
        first.features_required & ~first.features_offered == 0,
        "HV-DISC-004",
        "features_required within features_offered",
        f"{first.features_required:#x} / {first.features_offered:#x}",
    )
    check(
        1 <= first.max_batch <= LARGEST_BATCH,
        "HV-DISC-004",
        f"max_batch in 1..{LARGEST_BATCH}",
        str(first.max_batch),
    )
    # negotiate a subset (the required bits and one kind), so that an answer echoing the features in force shows
    kinds = first.features_offered & int(Feature.MSI | Feature.MSIX | Feature.IMS)
    subset = first.features_required | (kinds & -kinds)
    session.negotiated(subset)
    second = session.info()
    session.reset()
    third = session.info()
    check(first == second == third, "HV-DISC-004", "the same GET_INFO in every state", f"{first} / {second} / {third}")
