"""Faults of what a device holds when a claim ends, after a function-level reset and after a hot-unplug (spec
"Reset, FLR, hot-unplug and migration"), and of the headroom DEVICE_QUERY reports (spec "Device control",
"Headroom")."""

from __future__ import annotations

from ...reference.hypervisor.call import Call
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.ports import AssignedDevice, VmPort
from ...reference.hypervisor.vmstate import Claim, DeviceKey, VmPvmsi
from ...reference.platform.pci_slots import SLOT_SIZE
from ...reference.platform.vm import Vm
from ...reference.system import AssignedFunction, ReferenceSystem, SystemVm
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add(
    "release-keeps-msix-table",
    "HV-RELEASE-001",
    "a claim of MSI-X ends with the guest's pairs left unmasked in the MSI-X table",
)
class ReleaseKeepsMsixTable(HypervisorCore):
    def clear_msix_table(self, claim: Claim) -> None:
        return None


class NeverTrapsAgainVm(SystemVm):
    """A VM whose emulation, once switched off by a claim, never comes back."""

    def set_emulation(self, device: object, kinds: int, trapped: bool) -> None:
        if not trapped:
            super().set_emulation(device, kinds, trapped)


@faults.add(
    "release-no-emulation",
    "HV-RELEASE-002",
    "a claim ends but the MSI-X table stays mapped to the guest: writes through emulation reach nothing",
)
class ReleaseNoEmulation(ReferenceSystem):
    def make_vm(self, vm: Vm) -> SystemVm:
        return NeverTrapsAgainVm(self.platform, vm)


@faults.add(
    "flr-restores-host-cache",
    "HV-FLR-002",
    "after an FLR the hypervisor writes back the MSI-X table as the host last wrote it before the claim (Xen's "
    "stale cache)",
)
class FlrRestoresHostCache(HypervisorCore):
    def claim_kinds(self, c: Call, dev: AssignedDevice, kinds: int) -> int:
        kinds = super().claim_kinds(c, dev, kinds)
        if isinstance(dev, AssignedFunction) and dev.device.msix is not None:
            cache = getattr(self, "host_cache", {})
            table = dev.device.msix.table
            cache[id(dev.device)] = [(i, table.slot(i).address, table.slot(i).data) for i in table.written]
            self.host_cache = cache
        return kinds

    def flr(self, vm: VmPort, key: DeviceKey) -> None:
        super().flr(vm, key)
        claim = self.state_of(vm).claims.get(key)
        if claim is None or not isinstance(claim.device, AssignedFunction):
            return
        dev = claim.device.device
        for index, address, data in getattr(self, "host_cache", {}).get(id(dev), []):
            base = dev.layout.msix_table_offset + index * SLOT_SIZE
            for off, value in ((0, address & 0xFFFFFFFF), (4, address >> 32), (8, data), (12, 0)):
                dev.bar_write(base + off, 4, value)


@faults.add(
    "unplug-keeps-subdevices",
    "HV-UNPLUG-002",
    "hot-unplug ends the function's claim but keeps its sub-devices' claims and vectors",
)
class UnplugKeepsSubdevices(HypervisorCore):
    @staticmethod
    def function_claims(st: VmPvmsi, key: DeviceKey) -> list[DeviceKey]:
        segment, bus, devfn, _pasid = key
        return [k for k in st.claims if k == (segment, bus, devfn, None)]


@faults.add(
    "headroom-ignores-share",
    "HV-HEADROOM-001",
    "vm_messages_available is the quota less what the VM holds, ignoring its share of the remapping table",
)
class HeadroomIgnoresShare(HypervisorCore):
    def headroom(self, c: Call, claim: Claim | None) -> dict[str, int]:
        vm_left = c.st.config.max_messages_per_vm - c.st.vectors
        dev_left = c.st.config.max_messages_per_device - (claim.vectors if claim else 0)
        return {"messages_available": min(dev_left, vm_left), "vm_messages_available": vm_left}


@faults.add(
    "headroom-per-device",
    "HV-HEADROOM-001",
    "vm_messages_available counts only the queried device's vectors against the VM's quota",
)
class HeadroomPerDevice(HypervisorCore):
    def headroom(self, c: Call, claim: Claim | None) -> dict[str, int]:
        out = super().headroom(c, claim)
        others = c.st.vectors - (claim.vectors if claim else 0)
        out["vm_messages_available"] += others
        out["messages_available"] = min(out["messages_available"] + others, out["vm_messages_available"])
        return out


@faults.add("headroom-short", "HV-HEADROOM-002", "messages_available reports one vector fewer than can be allocated")
class HeadroomShort(HypervisorCore):
    def headroom(self, c: Call, claim: Claim | None) -> dict[str, int]:
        out = super().headroom(c, claim)
        out["messages_available"] = max(0, out["messages_available"] - 1)
        return out


@faults.add(
    "unplug-silent",
    "HV-UNPLUG-003",
    "hot-unplug of a claimed device queues no DEVICE_REMOVED event",
)
class UnplugSilent(HypervisorCore):
    def device_removed(self, vm: VmPort, key: DeviceKey) -> None:
        return None
