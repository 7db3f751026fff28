"""Faults in the areas where independently written faulty hypervisors once survived the suite (issue 12, finding 8):
quota accounting and headroom, cleanup after NO_RESOURCES, activating a multi-message block, the details of a
refused NEGOTIATE, memory rules at their edges, undefined flag bits of every entry format, register preservation
on every architecture, and the state after hot-unplug and migration.

Each is a mistake a real implementation makes (an off-by-one, a counter not decremented on one path, a rollback
nobody asked for, a mask that forgets a bit); each breaks the one requirement it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.config import HypervisorConfig
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.messages import ALLOC_RESULT, BatchEnd
from ...reference.hypervisor.ports import RemapPort, VmPort
from ...reference.hypervisor.vmstate import Claim, DeviceKey, Message, VmPvmsi
from ...spec.constants import FunctionNumber, Status
from ...spec.formats import (
    NEGOTIATE_OUT,
)
from ...spec.records import AllocEntry, AllocResult
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


# -- quota accounting and headroom (HV-FREE-002, HV-HEADROOM-001, HV-SEC-007, HV-BATCH-003) --------------------------


@faults.add("free-keeps-vm-quota", "HV-FREE-002", "MSG_FREE returns a message's vectors to the device, not the VM")
class FreeKeepsVmQuota(HypervisorCore):
    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        freed = super().drop(st, claim, handle)
        st.vectors += freed  # the per-VM counter is decremented on the teardown path only
        return freed


@faults.add("free-keeps-device-quota", "HV-FREE-002", "MSG_FREE returns a message's vectors to the VM, not the device")
class FreeKeepsDeviceQuota(HypervisorCore):
    def drop(self, st: VmPvmsi, claim: Claim, handle: int) -> int:
        freed = super().drop(st, claim, handle)
        claim.vectors += freed
        return freed


@faults.add(
    "headroom-ignores-device-quota",
    "HV-HEADROOM-001",
    "DEVICE_QUERY reports the VM's headroom as messages_available, the device's quota forgotten",
)
class HeadroomIgnoresDeviceQuota(HypervisorCore):
    def headroom(self, c: Call, claim: Claim | None) -> dict[str, int]:
        room = super().headroom(c, claim)
        return {**room, "messages_available": room["vm_messages_available"]}


@faults.add(
    "no-resources-counts-vectors",
    "HV-SEC-007",
    "an allocate entry that fails for lack of remapping entries still counts its vectors against the VM",
)
class NoResourcesCountsVectors(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        try:
            return super().alloc_entry(c, key, claim, e)
        except CallError as error:
            if error.requirement == "HV-SEC-007":
                c.st.vectors += e.vector_count  # counted before the table was asked, never given back
            raise


@faults.add(
    "no-resources-leaks-entries",
    "HV-SEC-007",
    "an MSI block that does not fit takes the remapping entries that were free one by one and keeps them",
)
class NoResourcesLeaksEntries(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        try:
            return super().alloc_entry(c, key, claim, e)
        except CallError as error:
            if error.requirement == "HV-SEC-007" and e.vector_count > 1:
                for i in range(e.vector_count):  # vector by vector, no unwinding when one fails
                    got = self.remap.alloc(
                        1,
                        vm_id=c.vm.vm_id,
                        vcpu=0,
                        vector=0,
                        source=claim.source,
                        posted=False,
                        slot=("leak", e.kind, e.slot, i, c.st.vectors),
                        present=False,
                    )
                    if got is None:
                        break
            raise


@faults.add(
    "no-resources-rolls-back-batch",
    "HV-BATCH-003",
    "a batch that runs out of resources frees the messages its earlier entries allocated (all or nothing)",
)
class NoResourcesRollsBackBatch(HypervisorCore):
    def finish_batch(self, c: Call, end: BatchEnd) -> CallResult:
        if (
            end.error is not None
            and end.error.status == Status.NO_RESOURCES
            and end.formats.call.fn is (FunctionNumber.MSG_ALLOC)
        ):
            claim = next(iter(c.st.claims.values()), None)
            for raw in end.results[:-1]:
                handle = ALLOC_RESULT.decode_record(raw).handle
                msg = c.st.messages.get(handle)
                if msg is not None:
                    claim = c.st.claims.get(msg.device, claim)
                    if claim is not None:
                        self.drop(c.st, claim, handle)
        return super().finish_batch(c, end)


# -- activating a multi-message block (HV-RETGT-002, HV-MSI-001) ------------------------------------------------------


@faults.add(
    "retarget-block-first-vector-only",
    "HV-RETGT-002",
    "retargeting an active multi-message MSI block reprograms the remapping entry of its first vector only",
)
class RetargetBlockFirstVectorOnly(HypervisorCore):
    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        if not msg.active:
            return super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        self.remap.retarget(msg.irte, 1, vcpu=vcpu, vector=vector, posted=posted)


@faults.add(
    "block-retarget-skips-moved-vectors",
    "HV-RETGT-002",
    "a block-wide activate leaves a vector that was moved alone where it was",
    platform="vtd",
)
class BlockRetargetSkipsMovedVectors(HypervisorCore):
    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        moved = [
            (i, t)
            for i, t in enumerate(msg.targets)
            if t is not None and msg.active and (t[0], t[1]) != (msg.vcpu, msg.vector + i)
        ]
        super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        for i, (t_vcpu, t_vector, t_posted) in moved:  # "the guest moved it: leave it alone"
            self.remap.program_vector(msg.irte, i, vcpu=t_vcpu, vector=t_vector, posted=t_posted)


@faults.add(
    "per-vector-activates-whole-block",
    "HV-MSI-001",
    "activating one vector of a reserved MSI block makes every vector of the block deliver",
    platform="vtd",
)
class PerVectorActivatesWholeBlock(HypervisorCore):
    def retarget_vector(self, msg: Message, index: int, vcpu: int, vector: int, posted: bool) -> None:
        if msg.active:
            return super().retarget_vector(msg, index, vcpu, vector, posted)
        for i in range(msg.count):  # the whole block made present, each vector relative to the one named
            self.remap.program_vector(msg.irte, i, vcpu=vcpu, vector=vector - index + i, posted=posted)


# -- the details of a refused NEGOTIATE (HV-NEG-002, HV-NEG-004, HV-CALL-004) --------------------------------------


@faults.add(
    "refused-lowest-bit-only",
    "HV-NEG-002",
    "NEGOTIATE with several unoffered bits reports the lowest of them alone in refused",
)
class RefusedLowestBitOnly(HypervisorCore):
    def unoffered_features(self, c: Call, features: int) -> int:
        unoffered = super().unoffered_features(c, features)
        return unoffered & -unoffered


@faults.add(
    "refused-echoes-features",
    "HV-NEG-004",
    "a NEGOTIATE refused with FEATURES_REFUSED writes the guest's subset in negotiate_out.features, not zero",
)
class RefusedEchoesFeatures(HypervisorCore):
    asked = 0

    def missing_features(self, c: Call, features: int) -> int:
        self.asked = features
        return super().missing_features(c, features)

    def write_output(self, c: Call, fmt: Any, value: Mapping[str, Any]) -> None:
        if fmt is NEGOTIATE_OUT and value["refused"] and not value["features"] and self.asked:
            value = {**value, "features": self.asked}  # "what we were asked", meant for a log line
        super().write_output(c, fmt, value)


@faults.add(
    "refused-value-is-missing-bits",
    "HV-CALL-004",
    "a NEGOTIATE refused with FEATURES_REFUSED returns the missing bits in the value register",
)
class RefusedValueIsMissingBits(HypervisorCore):
    missing = 0

    def missing_features(self, c: Call, features: int) -> int:
        self.missing = super().missing_features(c, features)
        return self.missing

    def negotiate(self, c: Call) -> CallResult:
        r = super().negotiate(c)
        return r._replace(value=self.missing) if r.status == Status.FEATURES_REFUSED else r


# -- the state after hot-unplug and migration (HV-UNPLUG-001, HV-MIG-001) -------------------------------------------


@faults.add(
    "unplug-keeps-claim-slot",
    "HV-UNPLUG-001",
    "a hot-unplugged device's claim still counts against max_claimed_devices",
)
class UnplugKeepsClaimSlot(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        self.ghosts: dict[int, int] = {}  # VM id -> claims ended by hot-unplug, still counted

    def hot_unplug(self, vm: VmPort, key: DeviceKey) -> int:
        ended = len(self.function_claims(self.state_of(vm), key))
        self.ghosts[vm.vm_id] = self.ghosts.get(vm.vm_id, 0) + ended
        return super().hot_unplug(vm, key)

    def device_claim(self, c: Call) -> CallResult:
        ghosts = self.ghosts.get(c.vm.vm_id, 0)
        if ghosts and len(c.st.claims) + ghosts >= c.st.config.max_claimed_devices:
            raise CallError(Status.NO_RESOURCES, "HV-DEV-008", "max_claimed_devices reached")
        return super().device_claim(c)


@faults.add(
    "migration-forgets-vm-vectors",
    "HV-MIG-001",
    "after migration the VM's vector count starts from zero, so it can exceed its quota",
    platform="amd-vi",  # on VT-d the VM's share of the one table, as large as its quota, bounds it anyway
)
class MigrationForgetsVmVectors(HypervisorCore):
    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        st.vectors = 0
        super().adopt_vm(vm, st)


@faults.add(
    "migration-forgets-device-vectors",
    "HV-MIG-001",
    "after migration every claimed device reports messages_allocated 0",
)
class MigrationForgetsDeviceVectors(HypervisorCore):
    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        for claim in st.claims.values():
            claim.vectors = 0
        super().adopt_vm(vm, st)
