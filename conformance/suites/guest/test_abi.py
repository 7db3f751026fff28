"""Platform discovery as the guest does it (spec "Discovery"): the vendor hypervisor Call UID on arm64, the SBI
probe on riscv64, the CPUID leaf block and its hypercall path on x86-64, before any pvmsi call."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_probe import ABI_RULE, Probe
from pvmsi.conformance.guest_toolkit import MLX5, GuestSession
from pvmsi.conformance.toolkit import architectures, check
from pvmsi.spec.constants import FunctionNumber, MsgKind
from pvmsi.spec.iut import GuestMode

requirement = pytest.mark.requirement
RULES = tuple(ABI_RULE.values())


def _arch_under_test(guest: GuestSession) -> None:
    arch = guest.hv.probe.arch
    check(arch is not None, "GUEST-DISC-001", "the guest runs its platform's discovery at boot", "no discovery trap")
    assert arch is not None
    if arch not in architectures(guest.platform):
        pytest.skip(f"unsupported: the guest discovers on {arch.name}, not the architecture of {guest.platform}")


@requirement("GUEST-ABI-001", "GUEST-ABI-002", "GUEST-ABI-003", "GUEST-DISC-001")
def test_discovery_finds_pvmsi_before_the_first_call(guest: GuestSession) -> None:
    """On a pvmsi platform the guest's discovery traps (CPUID / Call UID / SBI probe) come before VERSION, and
    the guest then negotiates."""
    r = guest.boot()
    _arch_under_test(guest)
    guest.clean(*RULES, "GUEST-DISC-001")
    check(guest.hv.probe.found, "GUEST-DISC-001", "discovery identified pvmsi", "it did not")
    guest.ok(r, "GUEST-DISC-001", "BOOT", GuestMode.PVMSI)


@requirement("GUEST-ABI-001", "GUEST-ABI-002", "GUEST-ABI-003", "GUEST-DISC-002", "GUEST-STAT-002")
@pytest.mark.parametrize("probe", [Probe.FOREIGN, Probe.NO_PATH, Probe.UNUSABLE], ids=lambda p: p.value)
def test_another_vendor_or_no_path_means_no_call(guest: GuestSession, probe: Probe) -> None:
    """The platform is another vendor's (KVM's CPUID block or UID, the SBI probe 0), names no path to pvmsi, or
    shows pvmsi where it cannot be used (a CPUID path no version defines, SMCCC 1.0, an SBI probe that failed):
    the guest issues no pvmsi call at all and keeps MSI-X working through emulation."""
    guest.host(probe=probe)
    r = guest.boot()
    _arch_under_test(guest)
    guest.clean(*RULES)
    arch = guest.hv.probe.arch
    assert arch is not None
    check(not guest.calls(), ABI_RULE[arch], "no pvmsi call", ", ".join(guest.fns()))
    guest.fell_back(r, "GUEST-DISC-002")
    e = guest.enable(MLX5, MsgKind.MSIX, 2)
    guest.ok(e, "GUEST-DISC-002", "ENABLE under emulation", GuestMode.EMULATED)
    check(not guest.calls(FunctionNumber.DEVICE_CLAIM), "GUEST-DISC-002", "no DEVICE_CLAIM", ", ".join(guest.fns()))
    guest.clean(*RULES)
