"""Faults of the lifecycle events (spec "Lifecycle"): RESET and VM reset, function-level reset, hot-unplug and
live migration (whose destination programs remapping through the port the system makes,
:meth:`~pvmsi.reference.system.ReferenceSystem.make_remap`)."""

from __future__ import annotations

from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.ports import Source, VmPort
from ...reference.hypervisor.vmstate import DeviceKey, VmPvmsi
from ...reference.platform.remap import RemappingTable
from ...reference.system import PlatformRemap, ReferenceSystem, SystemVm
from ...spec.calls import CallDef
from ...spec.constants import FunctionNumber, Status
from ...spec.states import VmEvent, VmState
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add("reset-keeps-claims", "HV-RESET-001", "RESET returns to OPEN but keeps devices claimed and messages live")
class ResetKeepsClaims(HypervisorCore):
    def reset_vm(self, vm: VmPort, event: VmEvent = VmEvent.VM_RESET) -> int:
        st = self.state_of(vm)
        st.features = 0
        st.move(event)
        return sum(m.count for m in st.messages.values())


@faults.add(
    "vm-reset-not-hooked",
    "HV-RESET-002",
    "a VM reset resets the devices but leaves the pvmsi state (features, claims, messages)",
)
class VmResetNotHooked(ReferenceSystem):
    def reset_vm(self, vm: SystemVm) -> int:
        for dev in self.platform.devices_of(vm.vm):
            self.platform.flr(dev)
        return 0


@faults.add("reset-needs-negotiated", "HV-RESET-003", "RESET fails with WRONG_STATE while the VM is OPEN")
class ResetNeedsNegotiated(HypervisorCore):
    def check_state(self, call: CallDef, st: VmPvmsi) -> None:
        if call.fn is FunctionNumber.RESET and st.state is VmState.OPEN:
            raise CallError(Status.WRONG_STATE, "HV-RESET-003", "nothing to reset")
        super().check_state(call, st)


@faults.add("flr-drops-messages", "HV-FLR-001", "an FLR frees the device's messages")
class FlrDropsMessages(HypervisorCore):
    def flr(self, vm: VmPort, key: DeviceKey) -> None:
        st = self.state_of(vm)
        claim = st.claims.get(key)
        if claim is not None:
            for handle in [h for h, m in st.messages.items() if m.device == key]:
                self.drop(st, claim, handle)


@faults.add(
    "unplug-leaks-messages",
    "HV-UNPLUG-001",
    "hot-unplug ends the claim but leaks the device's messages and remapping entries",
)
class UnplugLeaksMessages(HypervisorCore):
    def hot_unplug(self, vm: VmPort, key: DeviceKey) -> int:
        st = self.state_of(vm)
        for k in self.function_claims(st, key):
            del st.claims[k]
        return 0


@faults.add("migration-new-handles", "HV-MIG-001", "the migration destination issues the VM's messages new handles")
class MigrationNewHandles(HypervisorCore):
    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        messages = list(st.messages.values())
        st.messages = {}
        for m in messages:
            m.handle = st.handles.next()
            st.messages[m.handle] = m
        super().adopt_vm(vm, st)


class FirstFitRemap(PlatformRemap):
    """Programs a migrated message into the first free entries rather than the ones it had."""

    def alloc_at(
        self,
        base: int,
        count: int,
        *,
        vm_id: int,
        vcpu: int,
        vector: int,
        source: Source,
        posted: bool,
        slot: object = None,
    ) -> bool:
        # the destination's own entry takes the first free block, so the VM's entry lands elsewhere, and its
        # pair names nothing
        placeholder = self.alloc(count, vm_id=vm_id, vcpu=vcpu, vector=vector, source=source, posted=posted)
        got = self.alloc(count, vm_id=vm_id, vcpu=vcpu, vector=vector, source=source, posted=posted)
        if placeholder is not None:
            self.release(placeholder)
        return got is not None


@faults.add("migration-moves-entries", "HV-MIG-002", "the migration destination re-allocates remapping entries anew")
class MigrationMovesEntries(ReferenceSystem):
    def make_remap(self, table: RemappingTable) -> PlatformRemap:
        return FirstFitRemap(table, self.platform.msi)


@faults.add(
    "migration-resumes-emulation", "HV-MIG-003", "the migration destination traps and emulates the claimed kinds again"
)
class MigrationResumesEmulation(HypervisorCore):
    def adopt_vm(self, vm: VmPort, st: VmPvmsi) -> None:
        super().adopt_vm(vm, st)
        for claim in st.claims.values():
            vm.set_emulation(claim.device, claim.kinds, trapped=True)
