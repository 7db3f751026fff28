"""Faults of reserve, activate and deactivate, the locality hint and per-vector MSI targets (spec "Reserve,
activate, deactivate and free")."""

from __future__ import annotations

from ...reference.hypervisor.call import Call
from ...reference.hypervisor.config import HypervisorConfig
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.ports import RemapPort
from ...reference.hypervisor.vmstate import Claim, DeviceKey, Message
from ...spec.constants import AllocFlag, Status
from ...spec.records import ActivateEntry, ActivateResult, AllocEntry, AllocResult, DeactivateEntry, DeactivateResult
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add("reservation-has-a-pair", "HV-ACT-001", "returns the pair of a reserved message, as if it were active")
class ReservationHasAPair(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        result = super().alloc_entry(c, key, claim, e)
        if e.alloc_flags & AllocFlag.ACTIVATE:
            return result
        address, data = self.message_pair(c.st.messages[result.handle].irte)
        return result._replace(address=address, data=data)


@faults.add("reservation-takes-targets", "HV-ACT-002", "accepts a vcpu, vector or hint_vcpu a reservation may not name")
class ReservationTakesTargets(HypervisorCore):
    def check_reservation(self, c: Call, e: AllocEntry, activate: bool) -> None:
        return None


@faults.add(
    "hint-binds", "HV-ACT-003", "activates a message reserved with a hint on the hinted vCPU, not the named one"
)
class HintBinds(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        self.hints: dict[int, int] = {}

    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        result = super().alloc_entry(c, key, claim, e)
        if e.alloc_flags & AllocFlag.LOCALITY_HINT:
            self.hints[result.handle] = e.hint_vcpu
        return result

    def activate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: ActivateEntry) -> ActivateResult:
        hint = self.hints.get(e.handle)
        return super().activate_entry(c, key, claim, e if hint is None else e._replace(vcpu=hint))


@faults.add("deactivate-keeps-delivering", "HV-ACT-005", "answers MSG_DEACTIVATE without blocking the remapping entry")
class DeactivateKeepsDelivering(HypervisorCore):
    def deactivate_vector(self, msg: Message, index: int) -> None:
        return None


@faults.add("deactivate-frees", "HV-ACT-005", "frees the message on MSG_DEACTIVATE, so its handle dies")
class DeactivateFrees(HypervisorCore):
    def deactivate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: DeactivateEntry) -> DeactivateResult:
        result = super().deactivate_entry(c, key, claim, e)
        self.drop(c.st, claim, e.handle)
        return result


@faults.add("activate-index-unchecked", "HV-ACT-007", "takes an index beyond the message's vectors as vector 0")
class ActivateIndexUnchecked(HypervisorCore):
    def check_index(self, c: Call, msg: Message, index: int, block: bool) -> None:
        return None

    def activate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: ActivateEntry) -> ActivateResult:
        msg = self.owned(c, key, e.handle)
        return super().activate_entry(c, key, claim, e._replace(index=e.index % msg.count))

    def deactivate_entry(self, c: Call, key: DeviceKey, claim: Claim, e: DeactivateEntry) -> DeactivateResult:
        msg = self.owned(c, key, e.handle)
        return super().deactivate_entry(c, key, claim, e._replace(index=e.index % msg.count))


@faults.add("per-vector-moves-the-block", "HV-MSI-001", "applies a per-vector activate entry to the whole MSI block")
class PerVectorMovesTheBlock(HypervisorCore):
    def retarget_vector(self, msg: Message, index: int, vcpu: int, vector: int, posted: bool) -> None:
        self.remap.retarget(msg.irte, msg.count, vcpu=vcpu, vector=vector - index, posted=posted)


@faults.add("per-vector-on-imsic", "HV-MSI-002", "accepts a per-vector target the IMSIC cannot give", platform="imsic")
class PerVectorOnImsic(HypervisorCore):
    def check_per_vector(self, c: Call, msg: Message, index: int, vcpu: int, vector: int) -> None:
        return None


@faults.add("block-one-vcpu-only", "HV-MSI-003", "activates only vector 0 of a block with PVMSI_ACTENT_BLOCK")
class BlockOneVcpuOnly(HypervisorCore):
    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        for i in range(1, msg.count):
            self.remap.program_vector(msg.irte, i, vcpu=vcpu, vector=vector, posted=posted, present=False)


@faults.add(
    "per-vector-refused-everywhere", "HV-MSI-001", "refuses every per-vector target, even where remapping allows"
)
class PerVectorRefusedEverywhere(HypervisorCore):
    def check_per_vector(self, c: Call, msg: Message, index: int, vcpu: int, vector: int) -> None:
        raise CallError(Status.PER_VECTOR_REFUSED, "HV-MSI-002", "refused")
