"""The platform calling paths (spec "Calling conventions"): riscv64's sbiret keeps every SBI error's meaning, the
arm64 hint bit, and one guest story told identically through the registers of every architecture, batches that
yield and fail included (the in-process driver reads riscv64's sbiret back)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvmsi.reference.guest.actions import GuestDevice
from pvmsi.reference.guest.core import GuestCore, GuestError, GuestMode, Target
from pvmsi.reference.guest.driver import InProcessDriver
from pvmsi.reference.hypervisor.arch import BY_ARCH, function_number
from pvmsi.reference.hypervisor.config import HypervisorConfig
from pvmsi.reference.platform.platform import Delivered
from pvmsi.reference.platform.profiles import MLX5_LIKE
from pvmsi.reference.platform.requester import Bdf
from pvmsi.reference.system import ReferenceSystem
from pvmsi.spec.callconv import ARM64, ARM64_SMCCC_HINTS, SBI_ERROR_OF_STATUS, SbiError, sbiret_of
from pvmsi.spec.constants import FunctionNumber, MsgKind, Status

NIC, NIC_G = Bdf(0, 0, 0x08), GuestDevice(0, 0, 0x08)
SBI_CODES = {v for k, v in vars(SbiError).items() if k.isupper()}


def test_every_failing_status_has_an_sbi_error_and_only_not_supported_is_not_supported() -> None:
    assert set(SBI_ERROR_OF_STATUS) == {s for s in Status if s < 0}
    for status, error in SBI_ERROR_OF_STATUS.items():
        assert error in SBI_CODES
        assert error < 0
        assert (error == SbiError.NOT_SUPPORTED) == (status is Status.NOT_SUPPORTED)
        assert sbiret_of(status, 0x1234) == (error, int(status))


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(min_value=0, max_value=2**64 - 1))
def test_sbiret_of_any_status(status: int, value: int) -> None:
    error, out = sbiret_of(status, value)
    if status >= 0:
        assert (error, out) == (SbiError.SUCCESS, value)
    else:
        known = {int(k): v for k, v in SBI_ERROR_OF_STATUS.items()}
        assert out == status
        assert error == known.get(status, SbiError.FAILED)


def test_arm64_hint_bit_is_masked_and_reserved_bits_are_not_pvmsi() -> None:
    cc = BY_ARCH["arm64"]
    fid = ARM64.function_id(FunctionNumber.VERSION)
    assert function_number(cc, {"x0": fid | ARM64_SMCCC_HINTS}) == FunctionNumber.VERSION
    for bit in range(17, 24):
        assert function_number(cc, {"x0": fid | 1 << bit}) is None


def _story(arch: str) -> tuple[object, ...]:
    """Boot, a batch that yields (INCOMPLETE) and resumes, one that fails at the quota (NO_RESOURCES), delivery."""
    system = ReferenceSystem(HypervisorConfig(yield_after=3, max_messages_per_device=10))
    vm = system.create_vm(4, devices=[(MLX5_LIKE, NIC)])
    guest = GuestCore(scratch_gpa=0x10000, arch=arch)
    driver = InProcessDriver(system, vm, arch=arch)
    assert driver.run(guest.boot()) is GuestMode.PVMSI
    msgs = driver.run(guest.enable(NIC_G, MsgKind.MSIX, [Target(i, i % 4, 0x40 + i) for i in range(8)]))
    with pytest.raises(GuestError) as err:
        driver.run(guest.enable(NIC_G, MsgKind.MSIX, [Target(8 + i, 1, 0x60 + i) for i in range(5)]))
    pci = vm.pci(0, 0, 0x08)
    assert pci is not None
    delivered = []
    for m in msgs:
        outcome = system.platform.fire(pci, MsgKind.MSIX, m.slot)
        assert isinstance(outcome, Delivered)
        delivered.append((outcome.delivery.vcpu, outcome.delivery.vector))
    held = sorted(slot for (_, slot) in guest.messages.get(NIC_G, {}))
    return (err.value.status, len(system.core.state_of(vm).messages), held, delivered, driver.hypercalls)


def test_the_same_story_through_every_architecture() -> None:
    """x86-64, arm64 and riscv64 (with its sbiret read back) end in the same state after the same calls."""
    stories = {arch: _story(arch) for arch in BY_ARCH}
    assert stories["x86_64"][0] == Status.NO_RESOURCES
    assert stories["arm64"] == stories["x86_64"]
    assert stories["riscv64"] == stories["x86_64"]
