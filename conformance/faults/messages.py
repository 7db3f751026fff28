"""Faults of the message calls' entries: allocate, retarget and free (spec "Allocate, retarget and free")."""

from __future__ import annotations

from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.core import HypervisorCore, device_kinds
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.messages import KIND_BY_VALUE, BatchFormats, EntryOp
from ...reference.hypervisor.vmstate import Claim, DeviceKey, Message
from ...spec.constants import ActivateFlag, FunctionNumber, MsgKind, Status
from ...spec.records import ActivateEntry, ActivateResult, AllocEntry, AllocResult, FreeEntry, FreeResult
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add("msi-count-unchecked", "HV-ALLOC-003", "accepts MSI blocks that are not a power of two")
class MsiCountUnchecked(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        n = e.vector_count
        if e.kind == MsgKind.MSI and n > 1 and n & (n - 1):
            e = e._replace(vector_count=1 << (n.bit_length() - 1))
        return super().alloc_entry(c, key, claim, e)


@faults.add("slot-range-unchecked", "HV-ALLOC-004", "accepts MSI-X slots beyond the table")
class SlotRangeUnchecked(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        size = claim.device.msix_table_size if e.kind == MsgKind.MSIX else 1
        if e.kind == MsgKind.IMS:
            return super().alloc_entry(c, key, claim, e)
        return super().alloc_entry(c, key, claim, e._replace(slot=e.slot % max(size, 1)))


@faults.add("ims-tag-bounded", "HV-ALLOC-004", "refuses IMS tags beyond the device's IMS size, as if it knew the store")
class ImsTagBounded(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        if e.kind == MsgKind.IMS and e.slot >= claim.device.ims_slots:
            raise CallError(Status.INVALID_PARAMETER, "HV-ALLOC-004", "IMS slot beyond the store")
        return super().alloc_entry(c, key, claim, e)


@faults.add("vector-range-unchecked", "HV-ALLOC-006", "accepts vectors below 32 and vCPUs the VM lacks")
class VectorRangeUnchecked(HypervisorCore):
    def check_target(self, c: Call, vcpu: int, vector: int, count: int, flags: int) -> None:
        low, high = c.st.config.vector_range
        vector = max(low, min(vector, high - count + 1))
        super().check_target(c, min(vcpu, c.vm.vcpu_count - 1), vector, count, flags)


@faults.add("retarget-does-not-move", "HV-RETGT-002", "MSG_ACTIVATE answers SUCCESS but leaves the entry as it was")
class RetargetDoesNotMove(HypervisorCore):
    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        return None


@faults.add("free-any-handle", "HV-FREE-001", "MSG_FREE frees a handle held by another device or VM")
class FreeAnyHandle(HypervisorCore):
    def free_entry(self, c: Call, key: DeviceKey, claim: Claim, e: FreeEntry) -> FreeResult:
        for st in self.vm_states().values():
            msg = st.messages.get(e.handle)
            if msg is not None:
                self.drop(st, st.claims[msg.device], e.handle)
                return FreeResult()
        raise CallError(Status.UNKNOWN_HANDLE, "HV-FREE-001", "no such handle")


@faults.add("free-keeps-remapping", "HV-FREE-002", "MSG_FREE forgets the handle but leaves the remapping entry live")
class FreeKeepsRemapping(HypervisorCore):
    def release_remapping(self, msg: Message) -> None:
        return None


@faults.add(
    "unclaimed-handles-unknown",
    "HV-ALLOC-001",
    "MSG_ACTIVATE and MSG_FREE on an unclaimed device answer UNKNOWN_HANDLE instead of WRONG_STATE",
)
class UnclaimedHandlesUnknown(HypervisorCore):
    def batch(self, c: Call, formats: BatchFormats, entry_op: EntryOp) -> CallResult:
        try:
            return super().batch(c, formats, entry_op)
        except CallError as e:
            if e.requirement == "HV-ALLOC-001" and formats.call.fn is not FunctionNumber.MSG_ALLOC:
                raise CallError(Status.UNKNOWN_HANDLE, "HV-ALLOC-001", "no handle of that device") from None
            raise


@faults.add(
    "kind-vs-device-kinds",
    "HV-ALLOC-002",
    "checks an allocate entry's kind against the device's kinds, not the claimed kinds",
)
class KindVsDeviceKinds(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        kinds = claim.kinds
        claim.kinds |= device_kinds(claim.device)
        try:
            return super().alloc_entry(c, key, claim, e)
        finally:
            claim.kinds = kinds


@faults.add(
    "slot-overwrite",
    "HV-ALLOC-005",
    "an allocate entry for a slot holding a live message replaces it (the old one leaks)",
)
class SlotOverwrite(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        kind = KIND_BY_VALUE.get(e.kind)
        if kind is not None:
            claim.slots.discard((kind, e.slot))
        return super().alloc_entry(c, key, claim, e)


@faults.add(
    "irte-to-boot-cpu",
    "HV-ALLOC-007",
    "programs every new remapping entry to deliver to vCPU 0, ignoring the entry's vcpu",
)
class IrteToBootCpu(HypervisorCore):
    def alloc_remapping(self, c: Call, claim: Claim, e: AllocEntry, posted: bool) -> int | None:
        return super().alloc_remapping(c, claim, e._replace(vcpu=0), posted)


@faults.add(
    "msi-block-one-vector", "HV-ALLOC-008", "programs every entry of an MSI block with the block's first vector"
)
class MsiBlockOneVector(HypervisorCore):
    def alloc_remapping(self, c: Call, claim: Claim, e: AllocEntry, posted: bool) -> int | None:
        base = super().alloc_remapping(c, claim, e, posted)
        if base is not None:
            for i in range(1, e.vector_count):
                self.remap.retarget(base + i, 1, vcpu=e.vcpu, vector=e.vector, posted=posted)
        return base


@faults.add(
    "msi-block-counted-once", "HV-ALLOC-009", "accounts an MSI block of n vectors as one message against the quotas"
)
class MsiBlockCountedOnce(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        result = super().alloc_entry(c, key, claim, e)
        claim.vectors -= e.vector_count - 1
        c.st.vectors -= e.vector_count - 1
        return result


@faults.add(
    "retarget-any-device", "HV-RETGT-001", "MSG_ACTIVATE accepts a handle the VM holds for another of its devices"
)
class RetargetAnyDevice(HypervisorCore):
    def activate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: ActivateEntry) -> ActivateResult:
        msg = c.st.messages.get(e.handle)
        if msg is not None and msg.device != key:
            key, claim = msg.device, c.st.claims[msg.device]
        return super().activate_entry(c, key, claim, e)


@faults.add(
    "rewrite-always", "HV-RETGT-003", "sets PVMSI_ACTIVATE_REWRITE in every retarget result, even when the pair is kept"
)
class RewriteAlways(HypervisorCore):
    def activate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: ActivateEntry) -> ActivateResult:
        result = super().activate_entry(c, key, claim, e)
        return result._replace(flags=result.flags | int(ActivateFlag.REWRITE))
