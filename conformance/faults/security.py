"""Faults of isolation and resource control (spec "Security"): source validation in the IOMMU (a part the
system makes through :meth:`~pvmsi.reference.system.ReferenceSystem.make_iommu`), sub-devices sharing a requester
id, handles, quotas and shares of the remapping table (HV-QUOTA-001..004), what the pairs reveal, and what a
destroyed VM leaves behind."""

from __future__ import annotations

import secrets
from typing import Any

from ...reference.hypervisor.call import Call
from ...reference.hypervisor.config import HypervisorConfig
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.ports import AssignedDevice, RemapPort
from ...reference.hypervisor.vmstate import Claim, DeviceKey, Message
from ...reference.platform.fault import FaultReason
from ...reference.platform.iommu import Iommu
from ...reference.platform.legacy import LegacyMsi
from ...reference.platform.platform import Platform
from ...reference.platform.remap import Irte, RemappingTable
from ...reference.platform.requester import Requester
from ...reference.platform.vm import Vm
from ...reference.system import AssignedFunction, ReferenceSystem, SystemVm
from ...spec.constants import DeviceFlag, MsgKind, Status
from ...spec.records import AllocEntry, AllocResult
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


class UnvalidatedIommu(Iommu):
    """Remaps without source validation: the entry's pair works whoever writes it."""

    def check_source(self, source: Requester, requester: Requester) -> FaultReason | None:
        return None


@faults.add("no-source-validation", "HV-SEC-001", "the IOMMU delivers a pair whoever writes it (messages cross VMs)")
class NoSourceValidation(ReferenceSystem):
    def make_iommu(self, table: RemappingTable) -> Iommu:
        return UnvalidatedIommu(table)


class PasidOnlyIommu(Iommu):
    """Validates the PASID of a write instead of its requester id (what no IOMMU does for interrupts)."""

    def check_source(self, source: Requester, requester: Requester) -> FaultReason | None:
        return None if source.pasid == requester.pasid else FaultReason.SOURCE_ID_MISMATCH


@faults.add("pasid-only-validation", "HV-SEC-002", "source validation compares the write's PASID, not its requester id")
class PasidOnlyValidation(ReferenceSystem):
    def make_iommu(self, table: RemappingTable) -> Iommu:
        return PasidOnlyIommu(table)


@faults.add(
    "shared-source-not-reported",
    "HV-SEC-010",
    "never sets PVMSI_DEV_SHARED_SOURCE, so a guest takes sub-devices sharing a requester id as isolated",
)
class SharedSourceNotReported(HypervisorCore):
    def device_info(self, c: Call, dev_id: dict[str, Any], dev: AssignedDevice, claim: Claim | None) -> dict[str, Any]:
        info = super().device_info(c, dev_id, dev, claim)
        info["flags"] &= ~DeviceFlag.SHARED_SOURCE
        return info


class HostPasidVm(SystemVm):
    """Looks sub-devices up by the host PASID the device tags its writes with, not by the guest's id."""

    def device(self, segment: int, bus: int, devfn: int, pasid: int | None) -> AssignedFunction | None:
        if pasid is None:
            return super().device(segment, bus, devfn, None)
        pci = self.pci(segment, bus, devfn)
        if pci is None:
            return None
        for guest_id, sub in enumerate(pci.subdevices, 1):
            if sub.pasid == pasid:
                return super().device(segment, bus, devfn, guest_id)
        return None


@faults.add(
    "subdevice-id-is-host-pasid",
    "HV-SEC-011",
    "takes a sub-device id for the host PASID, so a guest must know (and learns) host PASIDs",
)
class SubdeviceIdIsHostPasid(ReferenceSystem):
    def make_vm(self, vm: Vm) -> SystemVm:
        return HostPasidVm(self.platform, vm)


class PasidTrustingIommu(Iommu):
    """Takes a write that carries a PASID prefix for a sub-device's and lets it through unvalidated."""

    def check_source(self, source: Requester, requester: Requester) -> FaultReason | None:
        return None if requester.pasid is not None else super().check_source(source, requester)


@faults.add(
    "pasid-prefix-trusted",
    "HV-SEC-001",
    "a write carrying a PASID (a guest-written IMS entry's) skips requester-id validation: another VM's pair delivers",
)
class PasidPrefixTrusted(ReferenceSystem):
    def make_iommu(self, table: RemappingTable) -> Iommu:
        return PasidTrustingIommu(table)


class RequesterBlindIommu(Iommu):
    """Delivers a write whichever requester id it carries."""

    def check_source(self, source: Requester, requester: Requester) -> FaultReason | None:
        refused = super().check_source(source, requester)
        return None if refused is FaultReason.SOURCE_ID_MISMATCH else refused


@faults.add(
    "isolated-without-source-validation",
    "HV-DEV-005",
    "reports PVMSI_DEV_ISOLATED, but the platform delivers a message whichever requester id wrote it",
)
class IsolatedWithoutSourceValidation(ReferenceSystem):
    def make_iommu(self, table: RemappingTable) -> Iommu:
        return RequesterBlindIommu(table)


@faults.add(
    "foreign-handle-not-permitted", "HV-SEC-003", "another VM's handle gets NOT_PERMITTED, unlike a handle never issued"
)
class ForeignHandleNotPermitted(HypervisorCore):
    def owned(self, c: Call, key: DeviceKey, handle: int) -> Message:
        try:
            return super().owned(c, key, handle)
        except CallError:
            others = [st for vm_id, st in self.vm_states().items() if vm_id != c.vm.vm_id]
            if any(handle in st.messages for st in others):
                raise CallError(Status.NOT_PERMITTED, "HV-SEC-003", "handle of another VM") from None
            raise


@faults.add(
    "handle-is-irte-index",
    "HV-SEC-005",
    "derives the handle from the remapping index, so a reused entry reissues a handle",
)
class HandleIsIrteIndex(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        self.salt = secrets.randbits(32)

    def issue_handle(self, c: Call, base: int) -> int:
        return (base + 1) << 32 | self.salt


@faults.add(
    "quota-charged-on-full-table",
    "HV-SEC-007",
    "an entry refused for a full remapping table still takes its slot and quota",
)
class QuotaChargedOnFullTable(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        try:
            return super().alloc_entry(c, key, claim, e)
        except CallError as err:
            if err.requirement == "HV-SEC-007":
                claim.slots.add((MsgKind(e.kind), e.slot))
                claim.vectors += e.vector_count
                c.st.vectors += e.vector_count
            raise


@faults.add("host-vector-in-data", "HV-SEC-008", "leaves the host vector in data[31:24] of every pair it hands out")
class HostVectorInData(HypervisorCore):
    def message_pair(self, base: int) -> tuple[int, int]:
        address, data = super().message_pair(base)
        return address, data | (0x20 + base % 0xD0) << 24


@faults.add(
    "destroy-leaks-entries",
    "HV-SEC-009",
    "destroying a VM drops its pvmsi bookkeeping but skips the teardown that releases its remapping entries",
)
class DestroyLeaksEntries(ReferenceSystem):
    def destroy_vm(self, vm: SystemVm) -> int:
        self.core.forget_vm(vm)
        del self.vms[vm.vm_id]
        return 0


@faults.add("no-quota", "HV-SEC-006", "does not enforce the per-device quota it reports")
class NoQuota(HypervisorCore):
    def check_quota(self, c: Call, claim: Claim, count: int) -> None:
        return None


# -- quotas that protect other VMs (HV-QUOTA-001..004) ------------------------------------------------------


@faults.add(
    "overcommitted-table",
    "HV-QUOTA-001",
    "every VM allocates from one 12,288-entry table and is promised 8,192 entries: the first VM starves the next",
)
class OvercommittedTable(ReferenceSystem):
    def make_platform(self, remap_entries: int | None) -> Platform:
        return Platform(12288, iommu=self.make_iommu, max_vms=None)


@faults.add(
    "global-lowest-free",
    "HV-QUOTA-003",
    "no shares: every VM takes the lowest free entry of the whole table, so its pairs show what others hold",
)
class GlobalLowestFree(ReferenceSystem):
    def make_platform(self, remap_entries: int | None) -> Platform:
        return Platform(iommu=self.make_iommu, max_vms=None)


class UnchargedLegacy(LegacyMsi):
    """Emulated vectors' entries taken outside the VM's share, charged to nobody (as a host irqdomain does)."""

    def alloc_entries(self, entry: Irte, count: int) -> int | None:
        return self.table.alloc(entry, count, outside_share=True)


@faults.add(
    "emulated-vectors-uncharged",
    "HV-QUOTA-002",
    "the remapping entries of emulated MSI-X vectors count against no VM's share",
)
class EmulatedVectorsUncharged(ReferenceSystem):
    def make_platform(self, remap_entries: int | None) -> Platform:
        return Platform(iommu=self.make_iommu, legacy=UnchargedLegacy)


@faults.add(
    "freed-entry-to-another-slot",
    "HV-QUOTA-004",
    "a freed message's remapping entry goes to the next message of any slot: the old slot's copy delivers into it",
)
class FreedEntryToAnotherSlot(HypervisorCore):
    def alloc_remapping(self, c: Call, claim: Claim, e: AllocEntry, posted: bool) -> int | None:
        return self.remap.alloc(
            e.vector_count, vm_id=c.vm.vm_id, vcpu=e.vcpu, vector=e.vector, source=claim.source, posted=posted
        )
