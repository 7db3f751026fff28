"""The simulated platform: VMs, PCI devices, the IOMMU and the legacy MSI emulation, tied together.

Everything is sans-I/O and synchronous: a device "fires" by returning a memory write, which
:meth:`Platform.route` passes through the IOMMU and, when remapping lets it through, records on the target
vCPU.  Guest accesses to devices enter through :meth:`Platform.guest_config_write`,
:meth:`Platform.guest_mmio_write` (and their read twins); each returns whether the access exited.

The hypervisor core owns pvmsi messages: it allocates, updates and frees remapping entries in
:attr:`Platform.table` (source ``device.requester()`` or ``device.requester(pasid)`` for a sub-device) and
switches emulation off and on with :meth:`Platform.set_passthrough`.  It registers with
:attr:`Platform.unplug_listeners` to free its messages when a device is hot-unplugged; whatever entry of the
device is left afterwards is revoked by the platform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pvmsi.spec.constants import MsgKind

from .formats import make_format
from .iommu import Delivery, Fault, Iommu
from .legacy import LegacyMsi
from .msi_format import compose_compat
from .pci import MemoryWrite, NotFired, PciDevice, SubDevice
from .pci_caps import MSI_CAP_OFFSET, MSIX_CAP_OFFSET
from .pci_slots import SLOT_SIZE, PasidImsEntry
from .profiles import DeviceProfile
from .remap import SHARE_GRANULE, TABLE_ENTRIES, RemappingTable
from .requester import PASID_LIMIT, Bdf
from .vm import ExitReason, InjectedInterrupt, Region, Vm

GUEST_MMIO_BASE = 0x80_0000_0000
"""Where the platform places assigned devices' BARs in guest-physical space (512 GiB, above RAM)."""

#: VMs a host runs at once by default: each gets 1/8 of a 65,536-entry table, 8,192 entries (HV-QUOTA-001).
MAX_VMS = 8


@dataclass(frozen=True, slots=True)
class Delivered:
    """A fired message the IOMMU let through and the platform injected."""

    write: MemoryWrite
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class Blocked:
    """A fired message the IOMMU blocked (a fault)."""

    write: MemoryWrite
    fault: Fault


FireResult = Delivered | Blocked | NotFired


@dataclass(frozen=True, slots=True)
class GuestDeviceLayout:
    """Where an assigned device's interrupt structures are, as its guest sees them."""

    bdf: Bdf
    bar_gpa: int
    bar_size: int
    msi_cap_offset: int | None
    msi_max_vectors: int
    msix_cap_offset: int | None
    msix_table_gpa: int | None
    msix_table_size: int
    msix_pba_gpa: int | None
    ims_gpa: int | None
    ims_slots: int
    slot_size: int
    subdevices: tuple[SubDevice, ...]

    def msix_entry_gpa(self, entry: int) -> int:
        if self.msix_table_gpa is None or not 0 <= entry < self.msix_table_size:
            raise ValueError(f"no MSI-X entry {entry}")
        return self.msix_table_gpa + entry * self.slot_size

    def ims_slot_gpa(self, slot: int) -> int:
        if self.ims_gpa is None or not 0 <= slot < self.ims_slots:
            raise ValueError(f"no IMS slot {slot}")
        return self.ims_gpa + slot * self.slot_size


class Platform:
    """One host: a remapping table and IOMMU, VMs, devices, assignments and the MSI emulator."""

    def __init__(
        self,
        remap_entries: int = TABLE_ENTRIES,
        iommu: Callable[[RemappingTable], Iommu] = Iommu,
        platform: str = "vtd",
        *,
        max_vms: int | None = MAX_VMS,
        legacy: Callable[[RemappingTable], LegacyMsi] = LegacyMsi,
    ) -> None:
        self.table = RemappingTable(remap_entries)
        #: The IOMMU over the table; ``iommu`` makes it (a hypervisor may bring its own, see
        #: :meth:`pvmsi.reference.system.ReferenceSystem.make_iommu`).
        self.iommu = iommu(self.table)
        self.legacy = legacy(self.table)
        #: The platform (spec "Message formats": vtd, amd-vi, gic-its, imsic) and its message format's tables.
        self.platform = platform
        self.msi = make_format(platform, self.table)
        self.iommu.format = self.msi
        #: The share of the table each VM gets (HV-QUOTA-001): the table divided by the VMs the host admits at once,
        #: in whole granules; None: no shares, every VM allocates from the whole table (only for faulty hosts).
        self.share_size: int | None = None
        if max_vms is not None:
            size = remap_entries // max_vms // SHARE_GRANULE * SHARE_GRANULE
            self.share_size = max(size, SHARE_GRANULE)  # a table holds at least 64 entries: two shares
        #: How many VMs the host runs at once: as many shares as the table holds.
        self.max_vms = remap_entries // self.share_size if self.share_size else None
        self.vms: dict[int, Vm] = {}
        self.devices: list[PciDevice] = []
        self.unplug_listeners: list[Callable[[PciDevice], None]] = []
        self.delivered_messages = 0
        self.blocked_messages = 0
        self._next_vm = 1
        self._next_slot = 0
        self._next_pasid = 1
        self._bar_regions: dict[PciDevice, Region] = {}
        self._mmio_cursor: dict[int, int] = {}
        self._at_address: dict[tuple[int, int, int, int], PciDevice] = {}
        #: (vm id, guest segment, bus, devfn) -> the device assigned there (read-only; assign and unplug keep it)
        self.assigned: Mapping[tuple[int, int, int, int], PciDevice] = MappingProxyType(self._at_address)

    # -- VMs -----------------------------------------------------------------------------------------------
    def create_vm(self, vcpus: int, ram_bytes: int = 64 << 20) -> Vm:
        """A new VM with ``vcpus`` vCPUs (APIC id = index) and ``ram_bytes`` of RAM (3 GiB below 4 GiB)."""
        share = self._free_share()
        vm = Vm(self._next_vm, vcpus, ram_bytes)
        self._next_vm += 1
        if share is not None:  # HV-QUOTA-001; a VM beyond those the host admits gets an empty share
            self.table.set_share(vm.id, share, (self.share_size or 0) if share < self.table.capacity else 0)
        self.vms[vm.id] = vm
        self._mmio_cursor[vm.id] = GUEST_MMIO_BASE
        return vm

    def _free_share(self) -> int | None:
        """The first entry of the lowest share no VM has (None without shares); the table's size when every share
        is taken: the VM gets an empty one."""
        if self.share_size is None:
            return None
        taken = {share.first for share in self.table.shares().values() if share.size}
        for first in range(0, self.share_size * (self.max_vms or 0), self.share_size):
            if first not in taken:
                return first
        return self.table.capacity  # the host is full: an empty share (GET_INFO reports a quota of 0)

    def limit_share(self, vm: Vm, entries: int | None) -> None:
        """Set how many entries of its share ``vm`` may hold (the administrator's setting; None: all of it)."""
        share = self.table.share(vm.id)
        if share is not None:
            self.table.set_share(vm.id, share.first, share.size, None if entries is None else min(entries, share.size))

    def destroy_vm(self, vm: Vm) -> int:
        """Destroy ``vm``: its devices are reset (FLR) and unassigned, every IRTE it owned freed (returned)."""
        freed = 0
        devices = self.devices_of(vm)
        for device in devices:
            freed += self.legacy.detach(device)
            device.flr()
            self._unassign(device)
        freed += sum(self.table.parked(vm.id).values())
        for base, _count in self.table.blocks_where(owner_vm=vm.id):
            freed += self.table.free(base)
        if self.msi.key != "vtd":
            for ref in self.msi.refs_where(owner_vm=vm.id):
                freed += self.msi.free(ref)
            for device in devices:  # reset above: no slot holds a stale pair (HV-QUOTA-004)
                self.msi.unpark_source(device.host.segment, device.host.rid)
        self.table.unpark_owner(vm.id)  # with the entries just freed: nothing of the VM is left (HV-SEC-009)
        self.table.drop_share(vm.id)
        vm.destroyed = True
        del self.vms[vm.id]
        del self._mmio_cursor[vm.id]
        return freed

    # -- devices -------------------------------------------------------------------------------------------
    def add_device(self, profile: DeviceProfile, host: Bdf | None = None, name: str | None = None) -> PciDevice:
        """Plug a device built from ``profile`` into the host (host BDF and sub-device PASIDs allocated)."""
        if host is None:
            slot = self._next_slot
            self._next_slot += 1
            host = Bdf(0, 0x10 + slot // 32, (slot % 32) << 3)
        if any(d.host == host for d in self.devices):
            raise ValueError(f"host BDF {host} already in use")
        pasids = list(range(self._next_pasid, self._next_pasid + profile.subdevices))
        if pasids and pasids[-1] >= PASID_LIMIT:
            raise ValueError("PASID space exhausted")
        self._next_pasid += profile.subdevices
        device = PciDevice(
            name or f"{profile.name}@{host}",
            host,
            msi_vectors=profile.msi_vectors,
            msi_per_vector_mask=profile.msi_per_vector_mask,
            msix_table_size=profile.msix_table_size,
            ims_slots=profile.ims_slots,
            subdevice_pasids=pasids,
            ims_pasid=profile.ims_pasid,
            needs_viommu=profile.needs_viommu,
            isolated=profile.isolated,
            vendor_id=profile.vendor_id,
            device_id=profile.device_id,
        )
        self.devices.append(device)
        return device

    def assign(self, device: PciDevice, vm: Vm, guest: Bdf, *, bar_gpa: int | None = None) -> GuestDeviceLayout:
        """Assign ``device`` to ``vm`` at guest BDF ``guest``; maps its BAR into guest MMIO space."""
        if device.removed:
            raise ValueError(f"{device.name} was hot-unplugged")
        if device.vm_id is not None:
            raise ValueError(f"{device.name} is already assigned to VM {device.vm_id}")
        if vm.id not in self.vms:
            raise ValueError(f"VM {vm.id} does not exist")
        if self.device_at(vm, guest) is not None:
            raise ValueError(f"VM {vm.id} already has a device at {guest}")
        size = device.layout.size
        if bar_gpa is None:
            cursor = self._mmio_cursor[vm.id]
            bar_gpa = -(-cursor // size) * size
            self._mmio_cursor[vm.id] = bar_gpa + size
        if bar_gpa % size:
            raise ValueError(f"BAR at {bar_gpa:#x} not aligned to its size {size:#x}")
        self._bar_regions[device] = vm.memory.add_mmio(bar_gpa, size, f"bar0:{device.name}")
        device.guest, device.vm_id, device.bar_gpa = guest, vm.id, bar_gpa
        self._at_address[vm.id, guest.segment, guest.bus, guest.devfn] = device
        self.legacy.attach(vm, device)
        return self.layout(device)

    def deassign(self, device: PciDevice) -> int:
        """Take ``device`` away from its VM: emulation IRTEs freed, device reset (FLR). Returns IRTEs freed."""
        freed = self.legacy.detach(device)
        device.flr()
        self._unassign(device)
        return freed

    def unplug(self, device: PciDevice) -> int:
        """Hot-unplug ``device``: listeners run first (the hypervisor frees its messages), then the emulator
        lets go, every IRTE still naming the device as source is revoked (count returned), and the device is
        detached and gone."""
        for listener in list(self.unplug_listeners):
            listener(device)
        self.legacy.detach(device)
        revoked = 0
        for base, _count in self.table.blocks_where(source=device.requester()):
            revoked += self.table.free(base)
        if self.msi.key != "vtd":
            for ref in self.msi.refs_where(source=device.requester()):
                revoked += self.msi.free(ref)
        self.table.unpark_source(device.host.segment, device.host.rid)  # the device is gone: no stale copy left
        if self.msi.key != "vtd":
            self.msi.unpark_source(device.host.segment, device.host.rid)
        self._unassign(device)
        device.removed = True
        self.devices.remove(device)
        return revoked

    def flr(self, device: PciDevice) -> None:
        """Function-level reset: the device forgets its MSI/MSI-X/IMS state; the emulator's view follows.
        Remapping entries held by the hypervisor for pvmsi stay (the guest rewrites the MSI-X and IMS pairs, the
        hypervisor a claimed MSI capability, HV-EMU-007)."""
        device.flr()
        self.legacy.device_reset(device)
        self.table.unpark_source(device.host.segment, device.host.rid)  # its slots hold no stale pair (HV-QUOTA-004)
        if self.msi.key != "vtd":
            self.msi.unpark_source(device.host.segment, device.host.rid)

    def set_passthrough(self, device: PciDevice, kind: MsgKind, enabled: bool) -> None:
        """Stop (claim) or resume (release) emulating ``kind`` of ``device``."""
        self.legacy.set_passthrough(device, kind, enabled)

    def device_at(self, vm: Vm, guest: Bdf) -> PciDevice | None:
        """The device ``vm`` sees at ``guest``."""
        return self.device_at_address(vm.id, guest.segment, guest.bus, guest.devfn)

    def device_at_address(self, vm_id: int, segment: int, bus: int, devfn: int) -> PciDevice | None:
        """The device VM ``vm_id`` sees at ``segment:bus:devfn`` (no :class:`Bdf` built: the hypercall path)."""
        return self._at_address.get((vm_id, segment, bus, devfn))

    def devices_of(self, vm: Vm) -> list[PciDevice]:
        return [d for d in self.devices if d.vm_id == vm.id]

    def layout(self, device: PciDevice) -> GuestDeviceLayout:
        """Where ``device``'s interrupt structures are in its guest."""
        if device.guest is None or device.bar_gpa is None:
            raise ValueError(f"{device.name} is not assigned")
        lay, bar = device.layout, device.bar_gpa
        return GuestDeviceLayout(
            bdf=device.guest,
            bar_gpa=bar,
            bar_size=lay.size,
            msi_cap_offset=MSI_CAP_OFFSET if device.msi is not None else None,
            msi_max_vectors=device.msi_max_vectors,
            msix_cap_offset=MSIX_CAP_OFFSET if device.msix is not None else None,
            msix_table_gpa=bar + lay.msix_table_offset if device.msix is not None else None,
            msix_table_size=device.msix_table_size,
            msix_pba_gpa=bar + lay.msix_pba_offset if device.msix is not None else None,
            ims_gpa=bar + lay.ims_offset if device.ims is not None else None,
            ims_slots=device.ims_slots,
            slot_size=SLOT_SIZE,
            subdevices=device.subdevices,
        )

    # -- interrupts ----------------------------------------------------------------------------------------
    def fire(self, device: PciDevice, kind: MsgKind, index: int) -> FireResult:
        """Make ``device`` signal MSI vector / MSI-X entry / IMS slot ``index`` and route the write."""
        write = device.fire(kind, index)
        if isinstance(write, NotFired):
            return write
        return self._route(write)

    def route(self, write: MemoryWrite) -> Delivery | Fault:
        """Pass one device memory write (possibly forged) through the IOMMU and inject it if allowed."""
        result = self._route(write)
        return result.delivery if isinstance(result, Delivered) else result.fault

    def _route(self, write: MemoryWrite) -> Delivered | Blocked:
        outcome = self.iommu.translate(write.requester, write.address, write.data)
        if isinstance(outcome, Fault):
            self.blocked_messages += 1
            return Blocked(write, outcome)
        vm = self.vms.get(outcome.vm)
        if vm is None:  # cannot happen: destroying a VM frees its entries
            raise RuntimeError(f"IRTE {outcome.irte_index} names VM {outcome.vm}, which does not exist")
        interrupt = InjectedInterrupt(
            outcome.vector, write.requester, write.address, write.data, outcome.irte_index, outcome.posted, write.source
        )
        vm.inject(interrupt, outcome.vcpu)
        self.delivered_messages += 1
        return Delivered(write, outcome)

    def _flush_pending(self, device: PciDevice) -> None:
        for kind, index in device.take_deliverable_pending():
            self.fire(device, kind, index)

    # -- guest accesses to devices -------------------------------------------------------------------------
    def guest_config_write(self, vm: Vm, guest: Bdf, offset: int, size: int, value: int) -> bool:
        """A guest write to the config space of the function at ``guest``; returns whether it exited."""
        device = self.device_at(vm, guest)
        if device is None:
            vm.count_exit(ExitReason.CONFIG_WRITE)
            return True
        exited = self.legacy.config_write(device, offset, size, value)
        self._flush_pending(device)
        return exited

    def guest_config_read(self, vm: Vm, guest: Bdf, offset: int, size: int) -> tuple[int, bool]:
        """A guest config-space read: ``(value, exited)``; all ones where no function exists."""
        device = self.device_at(vm, guest)
        if device is None:
            vm.count_exit(ExitReason.CONFIG_READ)
            return (1 << (8 * size)) - 1, True
        return self.legacy.config_read(device, offset, size)

    def guest_config_view(self, vm: Vm, guest: Bdf, offset: int, size: int) -> int:
        """What a guest config-space read would return, without the read (no exit counted): the harness's
        CONFIG_READ; all ones where no function exists."""
        device = self.device_at(vm, guest)
        if device is None:
            return (1 << (8 * size)) - 1
        return self.legacy.config_view(device, offset, size)

    def guest_mmio_write(self, vm: Vm, gpa: int, size: int, value: int) -> bool:
        """A guest write to guest-physical ``gpa``: a device BAR (MSI-X table exits while emulated; IMS and
        the rest of the BAR never exit) or RAM (no exit).  Anything else exits as unhandled MMIO."""
        device, offset = self._bar_at(vm, gpa)
        if device is None:
            if vm.memory.is_ram(gpa, size):
                vm.memory.write(gpa, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
                return False
            vm.count_exit(ExitReason.MMIO_UNHANDLED)
            return True
        exited = self.legacy.bar_write(device, offset, size, value)
        self._flush_pending(device)
        return exited

    def guest_mmio_read(self, vm: Vm, gpa: int, size: int) -> tuple[int, bool]:
        """A guest read of guest-physical ``gpa``: ``(value, exited)``."""
        device, offset = self._bar_at(vm, gpa)
        if device is None:
            if vm.memory.is_ram(gpa, size):
                return int.from_bytes(vm.memory.read(gpa, size), "little"), False
            vm.count_exit(ExitReason.MMIO_UNHANDLED)
            return (1 << (8 * size)) - 1, True
        return self.legacy.bar_read(device, offset, size)

    def guest_msix_entry_write(
        self, vm: Vm, guest: Bdf, entry: int, address: int, data: int, *, masked: bool = False
    ) -> int:
        """Write MSI-X entry ``entry`` as a driver does (address lo, hi, data, vector control: four dword
        writes); returns the exits it caused."""
        gpa = self._layout_of(vm, guest).msix_entry_gpa(entry)
        return self._write_slot(vm, gpa, address, data, masked)

    def guest_ims_write(
        self, vm: Vm, guest: Bdf, slot: int, address: int, data: int, *, masked: bool = False, pasid: int | None = None
    ) -> int:
        """Write IMS slot ``slot`` (device-wide number) with four dword writes; returns the exits (always 0).
        ``pasid`` sets PASID enable and the PASID in the control word of an IDXD-like entry (ignored elsewhere)."""
        gpa = self._layout_of(vm, guest).ims_slot_gpa(slot)
        return self._write_slot(vm, gpa, address, data, masked, PasidImsEntry.control_word(masked, pasid))

    def guest_msi_write(
        self, vm: Vm, guest: Bdf, address: int, data: int, *, vectors: int = 1, enable: bool = True
    ) -> int:
        """Program the MSI capability as a driver does (address lo, hi, data, then Message Control with
        Multiple Message Enable = log2(vectors) and MSI Enable); returns the exits it caused."""
        if vectors not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"MSI vector count {vectors} is not a power of two in 1..32")
        base = MSI_CAP_OFFSET
        exits = 0
        exits += self.guest_config_write(vm, guest, base + 0x4, 4, address & 0xFFFFFFFF)
        exits += self.guest_config_write(vm, guest, base + 0x8, 4, address >> 32)
        exits += self.guest_config_write(vm, guest, base + 0xC, 2, data)
        control = (vectors.bit_length() - 1) << 4 | int(enable)
        exits += self.guest_config_write(vm, guest, base + 0x2, 2, control)
        return exits

    @staticmethod
    def compat_pair(vcpu: int, vector: int) -> tuple[int, int]:
        """The compatibility-format pair a guest programs under emulation for ``vector`` on ``vcpu``."""
        return compose_compat(vcpu, vector)

    # -- internals -----------------------------------------------------------------------------------------
    def _write_slot(self, vm: Vm, gpa: int, address: int, data: int, masked: bool, control: int | None = None) -> int:
        exits = 0
        exits += self.guest_mmio_write(vm, gpa, 4, address & 0xFFFFFFFF)
        exits += self.guest_mmio_write(vm, gpa + 4, 4, address >> 32)
        exits += self.guest_mmio_write(vm, gpa + 8, 4, data)
        exits += self.guest_mmio_write(vm, gpa + 12, 4, int(masked) if control is None else control)
        return exits

    def _layout_of(self, vm: Vm, guest: Bdf) -> GuestDeviceLayout:
        device = self.device_at(vm, guest)
        if device is None:
            raise ValueError(f"VM {vm.id} has no device at {guest}")
        return self.layout(device)

    def _bar_at(self, vm: Vm, gpa: int) -> tuple[PciDevice | None, int]:
        for device, region in self._bar_regions.items():
            if device.vm_id == vm.id and region.start <= gpa < region.end:
                return device, gpa - region.start
        return None, 0

    def _unassign(self, device: PciDevice) -> None:
        region = self._bar_regions.pop(device, None)
        if region is not None and device.vm_id in self.vms:
            self.vms[device.vm_id].memory.remove_mmio(region)
        if device.vm_id is not None and device.guest is not None:
            g = device.guest
            del self._at_address[device.vm_id, g.segment, g.bus, g.devfn]
        device.guest, device.vm_id, device.bar_gpa = None, None, None
