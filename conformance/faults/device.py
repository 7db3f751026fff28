"""Faults of device identity, query, claim and release (spec "Devices")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.core import PASID_MASK, HypervisorCore, device_kinds
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.ports import AssignedDevice, VmPort
from ...reference.hypervisor.vmstate import Claim, DeviceKey, VmPvmsi
from ...reference.platform.vm import Vm
from ...reference.system import ReferenceSystem, SystemVm
from ...spec.constants import DeviceIdFlag, Status
from ...spec.states import DeviceEvent
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add("claim-twice", "HV-DEV-007", "a second DEVICE_CLAIM of a claimed device succeeds")
class ClaimTwice(HypervisorCore):
    def device_claim(self, c: Call) -> CallResult:
        try:
            return super().device_claim(c)
        except CallError as e:
            if e.requirement == "HV-DEV-007" and c.st.claims:
                return CallResult(Status.SUCCESS)
            raise


class EmulatingVm(SystemVm):
    """A VM whose MSI and MSI-X emulation cannot be switched off."""

    def set_emulation(self, device: object, kinds: int, trapped: bool) -> None:
        return None


@faults.add("keep-trapping", "HV-DEV-009", "keeps trapping and emulating MSI-X after DEVICE_CLAIM")
class KeepTrapping(ReferenceSystem):
    def make_vm(self, vm: Vm) -> SystemVm:
        return EmulatingVm(self.platform, vm)


@faults.add("release-keeps-messages", "HV-DEV-011", "DEVICE_RELEASE leaves the device's messages allocated")
class ReleaseKeepsMessages(HypervisorCore):
    def end_claim(self, vm: VmPort, st: VmPvmsi, key: DeviceKey, event: DeviceEvent) -> int:
        claim = st.claims.pop(key)
        vm.set_emulation(claim.device, claim.kinds, trapped=True)
        return claim.vectors


@faults.add("segment-ignored", "HV-DEV-001", "looks devices up by bus and devfn only, ignoring the segment")
class SegmentIgnored(HypervisorCore):
    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]:
        return super().lookup_fields(c, 0, bus, devfn, flags, subdevice_id)


@faults.add("subdevice-id-masked", "HV-DEV-002", "masks subdevice_id to 20 bits instead of rejecting the higher bits")
class SubdeviceIdMasked(HypervisorCore):
    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]:
        return super().lookup_fields(c, segment, bus, devfn, flags, subdevice_id & PASID_MASK)


@faults.add(
    "unknown-subdevice-is-parent", "HV-DEV-003", "a sub-device id that names no sub-device falls back to the parent"
)
class UnknownSubdeviceIsParent(HypervisorCore):
    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]:
        try:
            return super().lookup_fields(c, segment, bus, devfn, flags, subdevice_id)
        except CallError as e:
            if e.status != Status.UNKNOWN_DEVICE or not flags & DeviceIdFlag.SUBDEVICE:
                raise
            return super().lookup_fields(c, segment, bus, devfn, flags & ~int(DeviceIdFlag.SUBDEVICE), 0)


@faults.add(
    "msix-size-minus-one",
    "HV-DEV-004",
    "DEVICE_QUERY reports the MSI-X Table Size field as encoded in the capability (N - 1), not N",
)
class MsixSizeMinusOne(HypervisorCore):
    def device_info(self, c: Call, dev_id: dict[str, Any], dev: AssignedDevice, claim: Claim | None) -> dict[str, Any]:
        info = super().device_info(c, dev_id, dev, claim)
        info["msix_table_size"] = max(info["msix_table_size"] - 1, 0)
        return info


@faults.add(
    "claim-masks-kinds",
    "HV-DEV-006",
    "DEVICE_CLAIM silently drops the kinds the device lacks instead of failing with INVALID_PARAMETER",
)
class ClaimMasksKinds(HypervisorCore):
    def claim_kinds(self, c: Call, dev: AssignedDevice, kinds: int) -> int:
        return super().claim_kinds(c, dev, kinds & device_kinds(dev) or kinds)


@faults.add("claim-limit-off-by-one", "HV-DEV-008", "lets a VM claim max_claimed_devices + 1 devices")
class ClaimLimitOffByOne(HypervisorCore):
    def device_claim(self, c: Call) -> CallResult:
        config = c.st.config
        c.st.config = replace(config, max_claimed_devices=config.max_claimed_devices + 1)
        try:
            return super().device_claim(c)
        finally:
            c.st.config = config


@faults.add(
    "release-idempotent", "HV-DEV-010", "DEVICE_RELEASE of a device that is not claimed succeeds (freeing nothing)"
)
class ReleaseIdempotent(HypervisorCore):
    def device_release(self, c: Call) -> CallResult:
        try:
            return super().device_release(c)
        except CallError as e:
            if e.requirement == "HV-DEV-010":
                return CallResult(Status.SUCCESS, 0)
            raise


@faults.add(
    "subdevice-keyed-by-bdf",
    "HV-DEV-012",
    "keys claims by segment/bus/devfn only, so a sub-device's claim is its parent's",
)
class SubdeviceKeyedByBdf(HypervisorCore):
    def lookup_fields(
        self, c: Call, segment: int, bus: int, devfn: int, flags: int, subdevice_id: int
    ) -> tuple[DeviceKey, AssignedDevice]:
        key, dev = super().lookup_fields(c, segment, bus, devfn, flags, subdevice_id)
        key_segment, key_bus, key_devfn, _pasid = key
        return (key_segment, key_bus, key_devfn, None), dev
