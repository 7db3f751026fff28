"""The reference system: the simulated platform with the reference hypervisor core on top.

This is the glue a real hypervisor would write too: it maps the core's ports (:mod:`.hypervisor.ports`) onto
the platform's VMs, PCI devices, remapping table and MSI emulation, counts a hypercall exit for every call,
and forwards platform events (VM reset, FLR, hot-unplug, VM destruction) to the core.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..spec.constants import MsgKind, RevokeReason
from ..spec.kinds import kind_bit
from ..spec.version import encode_version
from .hypervisor.arch import cpuid, firmware_call, hypercall_registers
from .hypervisor.call import CallResult
from .hypervisor.config import HypervisorConfig
from .hypervisor.core import HypervisorCore
from .hypervisor.migration import evict_vm, export_vm, import_vm
from .hypervisor.ports import GuestMemory, Source
from .hypervisor.vmstate import DeviceKey
from .platform.formats import MsiFormat, make_format
from .platform.formats.amdvi import AmdVi
from .platform.formats.vtd import Vtd
from .platform.iommu import Iommu
from .platform.pci import PciDevice, SubDevice
from .platform.platform import Platform
from .platform.profiles import DeviceProfile
from .platform.remap import Irte, RemappingTable
from .platform.requester import Bdf, Requester
from .platform.vm import ExitReason, InjectedInterrupt, Vm


def guest_subdevice(dev: PciDevice, guest_id: int) -> SubDevice | None:
    """The sub-device the guest calls ``guest_id``: ids 1..N name a device's N sub-devices in order (the guest's
    PASIDs; the vIOMMU maps them to the host PASIDs the device tags its writes with). :func:`device_keys` is the
    inverse: the one mapping between the two, used wherever the system names a sub-device to the core."""
    if 1 <= guest_id <= len(dev.subdevices):
        return dev.subdevices[guest_id - 1]
    return None


def device_keys(dev: PciDevice) -> list[DeviceKey]:
    """The identities the core knows an assigned device by (spec "Device control": the function, then each
    sub-device by the id the guest calls it, never by its host PASID); empty for an unassigned device."""
    g = dev.guest
    if g is None:
        return []
    function: DeviceKey = (g.segment, g.bus, g.devfn, None)
    return [function, *((g.segment, g.bus, g.devfn, i) for i in range(1, len(dev.subdevices) + 1))]


AMD_VI_TABLE = AmdVi.table_size
#: Where :meth:`ReferenceSystem.migrate` can send a VM: a destination with the source's indices free ("same"), one
#: whose table holds other entries at them ("crowded"), one of the other platform of the architecture
#: ("other-platform": vtd <-> amd-vi), one with other limits ("other-limits").
DESTINATIONS = ("same", "crowded", "other-platform", "other-limits")
#: The other platform of the same architecture the model can migrate to.
SIBLING_PLATFORMS = {"vtd": "amd-vi", "amd-vi": "vtd"}
#: The requester an interrupt the hypervisor injects itself is recorded with (no device wrote it).
HYPERVISOR_REQUESTER = Requester(0, 0)


class PlatformRemap:
    """:class:`~.hypervisor.ports.RemapPort` over the platform's message format (:mod:`.platform.formats`; VT-d's
    shared remapping table by default, AMD-Vi's and the ITS's per-device tables, the IMSIC's MSI page tables: spec
    "Message formats"), with the VM shares of the shared table (HV-QUOTA-001)."""

    def __init__(self, table: RemappingTable, fmt: MsiFormat | None = None) -> None:
        self.table = table
        self.format: MsiFormat = fmt if fmt is not None else Vtd(table)
        self._requesters: dict[Source, Requester] = {}  # one Requester per source, built (and checked) once

    def _requester(self, source: Source) -> Requester:
        req = self._requesters.get(source)
        if req is None:
            # The entry's source is the requester id alone: sub-devices sharing it are not told apart (HV-SEC-002).
            req = self._requesters[source] = Requester(source.segment, source.rid)
        return req

    def alloc(
        self,
        count: int,
        *,
        vm_id: int,
        vcpu: int,
        vector: int,
        source: Source,
        posted: bool,
        slot: object = None,
        present: bool = True,
    ) -> int | None:
        irte = Irte(vm_id, vcpu, vector, self._requester(source), posted, present)
        return self.format.alloc(irte, count, tag=slot)

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
        irte = Irte(vm_id, vcpu, vector, self._requester(source), posted)
        return self.format.alloc_at(base, irte, count, tag=slot)

    def retarget(self, base: int, count: int, *, vcpu: int, vector: int, posted: bool) -> None:
        self.format.update(base, count, dest_vcpu=vcpu, vector=vector, posted=posted)

    def program_vector(
        self, base: int, index: int, *, vcpu: int, vector: int, posted: bool, present: bool = True
    ) -> None:
        self.format.update_vector(base, index, dest_vcpu=vcpu, vector=vector, posted=posted, present=present)

    def release(self, base: int) -> None:
        self.format.free(base)

    def revoke(self, base: int) -> None:
        self.format.revoke(base)

    def compose(self, base: int) -> tuple[int, int]:
        return self.format.compose(base)

    def share(self, vm_id: int) -> int | None:
        share = self.table.share(vm_id)
        return None if share is None else share.limit

    def limit_share(self, vm_id: int, entries: int | None) -> None:
        share = self.table.share(vm_id)
        if share is not None:
            limit = None if entries is None else min(entries, share.size)
            self.table.set_share(vm_id, share.first, share.size, limit)

    def share_free(self, vm_id: int) -> int | None:
        share = self.table.share(vm_id)
        return None if share is None else max(0, share.limit - self.table.held(vm_id))


@dataclass(frozen=True)
class AssignedFunction:
    """:class:`~.hypervisor.ports.AssignedDevice`: a PCI function, or one of its PASID sub-devices."""

    platform: Platform
    device: PciDevice
    sub: SubDevice | None = None

    @property
    def source(self) -> Source:
        req = self.device.requester(self.sub.pasid if self.sub else None)
        return Source(req.segment, req.rid, req.pasid)

    @property
    def msi_max_vectors(self) -> int:
        return 0 if self.sub else self.device.msi_max_vectors

    @property
    def msix_table_size(self) -> int:
        return 0 if self.sub else self.device.msix_table_size

    @property
    def ims_slots(self) -> int:
        """A sub-device's own partition; for the function itself, the slots no sub-device owns (a write from a
        sub-device's slot carries that sub-device's PASID, so the function could never use it)."""
        if self.sub is not None:
            return self.sub.slot_count
        return self.device.ims_slots - sum(s.slot_count for s in self.device.subdevices)

    @property
    def isolated(self) -> bool:
        return self.device.isolated

    @property
    def needs_viommu(self) -> bool:
        return self.device.needs_viommu and self.sub is not None

    @property
    def shared_source(self) -> bool:
        """The function and its sub-devices write with one requester id (HV-SEC-010)."""
        return bool(self.device.subdevices)

    def emulated_enabled(self, kind: MsgKind) -> bool:
        if self.sub is not None:
            return False
        return self.platform.legacy.enabled_through_emulation(self.device, kind)

    def program_msi(self, address: int, data: int, vectors: int) -> None:
        self.platform.legacy.program_msi(self.device, address, data, vectors)

    def clear_msi(self) -> None:
        self.platform.legacy.clear_msi(self.device)

    def clear_msix(self) -> None:
        if self.sub is None:
            self.platform.legacy.clear_msix(self.device)


class SystemVm:
    """:class:`~.hypervisor.ports.VmPort` for one platform VM."""

    def __init__(self, platform: Platform, vm: Vm) -> None:
        self.platform = platform
        self.vm = vm
        # Fixed for the VM's life: plain attributes, read on every hypercall.
        self.vm_id: int = vm.id
        self.vcpu_count: int = vm.vcpu_count
        self.memory: GuestMemory = vm.memory
        self._assigned = platform.assigned  # (vm id, segment, bus, devfn) -> device
        #: One AssignedFunction per (device, guest PASID) looked up, built once (it holds no state of its own).
        self._functions: dict[tuple[PciDevice, int | None], AssignedFunction] = {}

    def pci(self, segment: int, bus: int, devfn: int) -> PciDevice | None:
        return self.platform.device_at_address(self.vm_id, segment, bus, devfn)

    def device(self, segment: int, bus: int, devfn: int, pasid: int | None) -> AssignedFunction | None:
        try:
            dev = self._assigned[self.vm_id, segment, bus, devfn]  # subscript: no method call on the proxy
        except KeyError:
            return None
        function = self._functions.get((dev, pasid))
        if function is None:
            if pasid is None:
                function = AssignedFunction(self.platform, dev)
            else:
                sub = guest_subdevice(dev, pasid)
                if sub is None:
                    return None
                function = AssignedFunction(self.platform, dev, sub)
            self._functions[dev, pasid] = function
        return function

    def forget(self, dev: PciDevice) -> None:
        """Drop the functions of a device that left the VM."""
        for key in [k for k in self._functions if k[0] is dev]:
            del self._functions[key]

    def inject(self, vcpu: int, vector: int) -> None:
        """A virtual interrupt no device caused (an event notification, a retrigger): no requester, no pair."""
        self.vm.inject(InjectedInterrupt(vector, HYPERVISOR_REQUESTER, 0, 0, -1, False, None), vcpu)

    def set_emulation(self, device: object, kinds: int, trapped: bool) -> None:
        if not isinstance(device, AssignedFunction) or device.sub is not None:
            return  # sub-devices have IMS only, which is never emulated
        for kind in (MsgKind.MSI, MsgKind.MSIX):
            if kinds & kind_bit(kind):
                self.platform.set_passthrough(device.device, kind, not trapped)


class ReferenceSystem:
    """A host running the reference hypervisor: create VMs with devices, issue hypercalls, inflict events.

    The parts are made by factory methods a subclass may override: :meth:`make_platform` (with the IOMMU
    from :meth:`make_iommu`), :meth:`make_remap` (the core's view of the remapping table) and :meth:`make_vm`
    (the core's view of a VM); ``core`` is the class of the hypervisor core.
    """

    def __init__(
        self,
        config: HypervisorConfig | None = None,
        *,
        remap_entries: int | None = None,
        core: type[HypervisorCore] = HypervisorCore,
    ) -> None:
        config = config or HypervisorConfig()
        if config.platform == "amd-vi" and config.max_messages_per_device > AMD_VI_TABLE:
            # a device's interrupt remapping table holds 2048 entries (DTE IntTabLen, 2K mode): its quota
            config = replace(config, max_messages_per_device=AMD_VI_TABLE)
        self.platform_key = config.platform
        #: The host's own platform: a migration to the other platform of the architecture re-platforms the host
        #: (it stands for the destination) until no VM is left on it (:meth:`migrate`, :meth:`destroy_vm`).
        self.home_platform = config.platform
        self.platform = self.make_platform(remap_entries)
        self.core = core(config, self.make_remap(self.platform.table))
        self.home_config = config
        self.vms: dict[int, SystemVm] = {}
        #: Per VM, the entries a crowded migration destination holds at the VM's old indices (:meth:`migrate`).
        self._fillers: dict[int, list[int]] = {}
        #: Per VM, deliveries per message (device, kind, slot) since its last hypercall (:meth:`message_delivered`).
        self._storms: dict[int, Counter[tuple[DeviceKey, int, int]]] = {}
        self.platform.unplug_listeners.append(self._on_unplug)

    # -- factories ------------------------------------------------------------------------------------------

    def make_platform(self, remap_entries: int | None) -> Platform:
        """The simulated host: its remapping table (``remap_entries`` entries, or the default) and the IOMMU from
        :meth:`make_iommu`, which together validate each message's source (HV-SEC-001, HV-SEC-002)."""
        if remap_entries is None:
            return Platform(iommu=self.make_iommu, platform=self.platform_key)
        return Platform(
            remap_entries, iommu=self.make_iommu, platform=self.platform_key
        )  # shares per VM (HV-QUOTA-001)

    def make_iommu(self, table: RemappingTable) -> Iommu:
        """The IOMMU's interrupt remapping with source validation over ``table`` (HV-SEC-001, HV-SEC-002)."""
        return Iommu(table)

    def make_remap(self, table: RemappingTable) -> PlatformRemap:
        """The remapping port the core programs the table through (HV-ALLOC-007, HV-RETGT-002, HV-FREE-002), in
        the platform's message format (HV-FMT-002)."""
        return PlatformRemap(table, self.platform.msi)

    def make_vm(self, vm: Vm) -> SystemVm:
        """The core's port to a new VM: its memory, devices and emulation switch (HV-DEV-009)."""
        return SystemVm(self.platform, vm)

    # -- VMs and calls --------------------------------------------------------------------------------------

    def create_vm(
        self, vcpus: int = 4, ram_bytes: int = 64 << 20, devices: Sequence[tuple[DeviceProfile, Bdf]] = ()
    ) -> SystemVm:
        """A VM with ``devices`` assigned at their guest addresses; if any cannot be assigned (two at one address),
        nothing is left behind and the platform's ValueError says why."""
        addresses = [guest for _, guest in devices]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two devices at one guest address")
        vm = self.make_vm(self.platform.create_vm(vcpus, ram_bytes))
        try:
            for profile, guest in devices:
                self.platform.assign(self.platform.add_device(profile), vm.vm, guest)
        except ValueError:
            self.platform.destroy_vm(vm.vm)
            raise
        self.vms[vm.vm_id] = vm
        return vm

    def hypercall(self, vm: SystemVm, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        """An architecture-neutral pvmsi call from ``vcpu`` (one exit)."""
        vm.vm.count_exit(ExitReason.HYPERCALL)
        self._storms.pop(vm.vm_id, None)  # the VM ran its driver: the storm count starts again
        return self.core.hypercall(vm, vcpu, fn, args)

    def trap(
        self, vm: SystemVm, vcpu: int, arch: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        """A VMCALL/VMMCALL, HVC or ECALL with ``regs`` at ``privilege`` (x86-64 CPL): the registers after it, or
        None if not pvmsi."""
        vm.vm.count_exit(ExitReason.HYPERCALL)
        self._storms.pop(vm.vm_id, None)
        return hypercall_registers(self.core, vm, vcpu, arch, regs, privilege)

    def execute_trap(
        self, vm: SystemVm, vcpu: int, arch: str, instruction: str, regs: Mapping[str, int], privilege: int = 0
    ) -> dict[str, int] | None:
        """A vCPU executes ``instruction`` (vmcall, vmmcall, hvc, ecall, cpuid) at ``privilege``: the registers
        after it, or None when the reference does not handle it."""
        if instruction == "cpuid":
            version = encode_version(self.core.config.version_major, self.core.config.version_minor)
            eax, ebx, ecx, edx = cpuid(regs.get("rax", 0) & 0xFFFFFFFF, version)
            return {**regs, "rax": eax, "rbx": ebx, "rcx": ecx, "rdx": edx}
        out = self.trap(vm, vcpu, arch, regs, privilege)
        return out if out is not None else firmware_call(arch, regs)

    # -- events ---------------------------------------------------------------------------------------------

    def reset_vm(self, vm: SystemVm) -> int:
        """VM reset: the effect of the RESET call (HV-RESET-002), then the devices reset."""
        freed = self.core.reset_vm(vm)
        for dev in self.platform.devices_of(vm.vm):
            self.platform.flr(dev)
        return freed

    def flr(self, vm: SystemVm, guest: Bdf) -> None:
        """A function-level reset of a device: the core keeps its claim and messages (HV-FLR-001)."""
        dev = self.platform.device_at(vm.vm, guest)
        if dev is None:
            raise KeyError(f"VM {vm.vm_id} has no device at {guest}")
        self.platform.flr(dev)
        for key in device_keys(dev):
            self.core.flr(vm, key)

    def unplug(self, vm: SystemVm, guest: Bdf) -> int:
        dev = self.platform.device_at(vm.vm, guest)
        if dev is None:
            raise KeyError(f"VM {vm.vm_id} has no device at {guest}")
        return self.platform.unplug(dev)

    def migrate(self, vm: SystemVm, destination: str = "same") -> dict[str, Any]:
        """Live-migrate ``vm``: export its pvmsi state as JSON, release it here, import it "on the destination"
        (spec "Live migration"), which the model makes of this same host as one of :data:`DESTINATIONS` says;
        the destination queues REFETCH (HV-MIG-002). Returns the migrated state. A destination the host cannot
        model raises ValueError before anything changes."""
        if destination not in DESTINATIONS:
            raise ValueError(f"unknown migration destination {destination!r}")
        target = self.platform_key
        if destination == "other-platform":
            target = SIBLING_PLATFORMS.get(self.platform_key, "")
            if not target:
                raise ValueError(f"the model has no other platform of {self.platform_key}'s architecture")
            if len(self.vms) != 1:
                raise ValueError("the model re-platforms its one host: only a VM alone on it migrates there")
        state: dict[str, Any] = json.loads(json.dumps(export_vm(self.core, vm)))
        evict_vm(self.core, vm)
        config = HypervisorConfig(**state["config"])
        if destination == "crowded":
            self._crowd(vm, state)
        elif destination == "other-platform":
            self._replatform(target)
            config = replace(config, platform=target)
            if target == "amd-vi":
                config = replace(config, max_messages_per_device=min(config.max_messages_per_device, AMD_VI_TABLE))
        elif destination == "other-limits":
            config = replace(config, max_batch=max(1, config.max_batch // 2))
        import_vm(self.core, vm, state, config)
        return state

    def _crowd(self, vm: SystemVm, state: dict[str, Any]) -> None:
        """A destination whose shared remapping table (VT-d) already holds other entries at the indices the VM's
        messages had: filled here with entries of the host's own, which no device of the VM may use (their source
        is another requester), kept until the VM is destroyed. A per-device table (AMD-Vi, ITS, IMSIC) is the
        device's own on the destination too: nothing to crowd there."""
        if self.platform.msi.key != "vtd":
            return
        self.platform.table.unpark_owner(vm.vm_id)  # the source's parked blocks are not on the destination
        host = Irte(0, 0, 0x20, HYPERVISOR_REQUESTER, present=False)  # held by the host, delivering nothing
        fillers = self._fillers.setdefault(vm.vm_id, [])
        for m in state["messages"]:
            if not m.get("revoked") and self.platform.table.alloc_at(int(m["irte"]), host, int(m["count"])):
                fillers.append(int(m["irte"]))

    def _replatform(self, target: str) -> None:
        """Make this host the destination of another platform of the same architecture (vtd <-> amd-vi): its
        message format and IOMMU as ``target``'s (the model's one host stands for the destination host)."""
        fmt = make_format(target, self.platform.table)
        self.platform.platform = target
        self.platform.msi = fmt
        self.platform.iommu.format = fmt
        self.platform_key = target
        if isinstance(self.core.remap, PlatformRemap):
            self.core.remap.format = fmt
        self.core.config = replace(self.core.config, platform=target)

    def message_delivered(self, vm: SystemVm, key: DeviceKey, kind: int, slot: int) -> None:
        """A device message of ``vm`` was delivered: past the VM's storm limit with no hypercall in between, the
        core revokes it and tells the guest (HV-REVOKE-001, HV-REVOKE-002)."""
        limit = self.core.state_of(vm).config.storm_limit
        if not limit:
            return
        counts = self._storms.setdefault(vm.vm_id, Counter())
        counts[key, kind, slot] += 1
        if counts[key, kind, slot] > limit:
            del counts[key, kind, slot]
            handle = self.core.handle_in_slot(vm, key, kind, slot)
            if handle is not None:
                self.core.revoke_message(vm, handle, RevokeReason.STORM)

    def destroy_vm(self, vm: SystemVm) -> int:
        """Destroy a VM: the core frees everything it holds (HV-SEC-009), then the platform drops it."""
        freed = self.core.destroy_vm(vm)
        for base in self._fillers.pop(vm.vm_id, []):  # the crowded destination's own entries (migrate)
            entry = self.platform.table.get(base)
            if entry is not None and entry.source == HYPERVISOR_REQUESTER:
                self.platform.table.free(base)
        self.platform.destroy_vm(vm.vm)
        del self.vms[vm.vm_id]
        if not self.vms and self.platform_key != self.home_platform:
            self._replatform(self.home_platform)  # the migrated VM has left: the host is itself again
            self.core.config = self.home_config
        return freed

    def _on_unplug(self, dev: PciDevice) -> None:
        if dev.vm_id is None or dev.vm_id not in self.vms or dev.guest is None:
            return
        g, vm = dev.guest, self.vms[dev.vm_id]
        self.core.hot_unplug(vm, (g.segment, g.bus, g.devfn, None))
        vm.forget(dev)
