"""Faulty implementations of the section Message formats: each gets one platform's format wrong and is run on
that platform (:attr:`~.registry.FaultyImpl.platform`)."""

from __future__ import annotations

from collections.abc import Sequence

from ...reference.guest.actions import GuestDevice
from ...reference.guest.core import GuestCore, GuestMessage, Op, Target
from ...reference.hypervisor.call import Call
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.messages import ACTIVATE_RESULT
from ...reference.hypervisor.vmstate import Claim, DeviceKey
from ...reference.platform.formats.its import ITS_BASE, TRANSLATER_OFFSET
from ...reference.platform.msi_format import compose
from ...spec.constants import MsgKind
from ...spec.records import ActivateEntry, ActivateResult
from .guests import fault
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add(
    "amd-vi-index-in-address",
    "HV-FMT-001",
    "on AMD-Vi puts the table index in the address as VT-d does (handle bits, format bit 4) instead of the data",
    platform="amd-vi",
)
class AmdViIndexInAddress(HypervisorCore):
    def message_pair(self, base: int) -> tuple[int, int]:
        return compose(base & 0xFFFF)


@faults.add(
    "its-host-physical-doorbell",
    "HV-FMT-002",
    "on the ITS hands out GITS_TRANSLATER's host physical address, which the device's SMMU does not map",
    platform="gic-its",
)
class ItsHostPhysicalDoorbell(HypervisorCore):
    def message_pair(self, base: int) -> tuple[int, int]:
        _address, event = super().message_pair(base)
        return ITS_BASE + TRANSLATER_OFFSET, event


@faults.add(
    "imsic-no-rewrite",
    "HV-FMT-003",
    "on the IMSIC retargets to another hart but returns the old pair with REWRITE clear",
    platform="imsic",
)
class ImsicNoRewrite(HypervisorCore):
    def activate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: ActivateEntry) -> ActivateResult:
        old = self.owned(c, key, e.handle)
        address, data = old.address, old.data
        super().activate_entry(c, key, claim, e)
        old.address, old.data = address, data  # as if the pair had not changed
        result: ActivateResult = ACTIVATE_RESULT.build(address=address, data=data, flags=0)
        return result


@faults.add(
    "imsic-unaligned-msi",
    "HV-FMT-004",
    "on the IMSIC accepts an MSI block whose first identity is not a multiple of its size",
    platform="imsic",
)
class ImsicUnalignedMsi(HypervisorCore):
    def check_target(self, c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
        super().check_target(c, vcpu, vector - vector % count, count, flags)


@fault(
    "x86-address-window",
    "GUEST-FMT-001",
    "keeps only the low 20 bits of a returned address and adds the x86 window 0xFEE00000 itself",
    platform="gic-its",
)
class _X86AddressWindow(GuestCore):
    def enable_pvmsi(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        msgs: list[GuestMessage] = yield from super().enable_pvmsi(dev, kind, targets)
        for m in msgs:
            m.address = 0xFEE00000 | m.address & 0xFFFFF
        return msgs
