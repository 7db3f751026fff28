"""Today's path: trapped, emulated MSI and MSI-X, and the pass-through switch pvmsi flips on a claim.

While a device's MSI capability or MSI-X table is emulated, every guest access to it exits (one exit per
access, counted by :class:`~.vm.ExitReason`).  The emulator keeps the guest's *virtual* view: per entry the
compatibility-format pair the guest wrote (address 0xFEE00000 | APIC id << 12, data = vector), the mask bits,
MSI Enable / Multiple Message Enable, MSI-X Enable / Function Mask.  When an entry becomes live (enabled,
unmasked, with a valid pair) the emulator allocates an IRTE itself (for MSI a block of 2^MME entries),
writes the physical remappable pair into the device behind the guest's back and unmasks it; a later change
of the guest's pair while live updates the IRTE in place.  Disabling or masking tears it down: the physical
entry is masked (MSI: disabled) and the IRTE freed.  A pair the emulator cannot honour (not compatibility
format, APIC id beyond the VM's vCPUs, vector outside 32..255, remapping table full) leaves the entry masked.

IMS cannot be emulated: the hypervisor does not know where a device keeps its IMS slots, so IMS writes are
never trapped; a compatibility-format pair written there lands in the device and the IOMMU blocks it.

Claimed (set per device and kind when the guest claims the kind for pvmsi; spec "The emulation boundary"): the
emulator holds no IRTE for that kind.  The MSI-X table and PBA are mapped: guest accesses reach the device with
no exit (as VFIO's ``VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`` allows).  Configuration space stays trapped on both
paths (HV-EMU-001): every access to the MSI or MSI-X capability of a claimed kind still exits.  A guest write to
a claimed MSI capability applies only MSI Enable and the per-vector Mask Bits (HV-EMU-005): Message Address, Data
and Multiple Message Enable are written by the hypervisor itself inside MSG_ALLOC / MSG_ACTIVATE and cleared on
free (:meth:`LegacyMsi.program_msi`, :meth:`LegacyMsi.clear_msi`, HV-EMU-002..004), which are no guest exits
(counted apart, :meth:`LegacyMsi.host_writes`).  A guest write to a claimed MSI-X Message Control applies
Enable and Function Mask (HV-EMU-006).  Switching back (release) reloads the virtual view from the device
registers, holding no IRTE; stale pvmsi pairs still in the device get blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pvmsi.spec.constants import X86_VECTORS, MsgKind

from .msi_format import CompatMessage, compose, parse_compat
from .pci import BarRegion, PciDevice
from .pci_caps import MSI_CAP_OFFSET, MSIX_CAP_OFFSET, MsiCapability, MsixCapability
from .pci_slots import SLOT_SIZE
from .remap import Irte, RemappingTable
from .vm import ExitReason, Vm

_MSIX_REGIONS = (BarRegion.MSIX_TABLE, BarRegion.MSIX_PBA)


@dataclass
class _Emulation:
    vm: Vm
    device: PciDevice
    passthrough: set[MsgKind] = field(default_factory=set)
    msi: MsiCapability | None = None
    msi_block: tuple[int, int] | None = None
    msix: MsixCapability | None = None
    msix_irte: dict[int, int] = field(default_factory=dict)
    alloc_failures: int = 0
    host_writes: int = 0


class LegacyMsi:
    """The MSI/MSI-X emulator of every assigned device, programming the shared remapping table."""

    def __init__(self, table: RemappingTable) -> None:
        self.table = table
        self._devices: dict[PciDevice, _Emulation] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------
    def attach(self, vm: Vm, device: PciDevice) -> None:
        """Start emulating ``device`` for ``vm`` (on assignment): every kind emulated, no IRTE held."""
        state = _Emulation(vm, device)
        self._devices[device] = state
        self._reload(state)

    def detach(self, device: PciDevice) -> int:
        """Stop emulating ``device`` (deassign, unplug, VM destroyed); frees its IRTEs, returns how many."""
        state = self._devices.pop(device, None)
        if state is None:
            return 0
        return self._teardown_msi(state) + self._teardown_msix(state)

    def device_reset(self, device: PciDevice) -> None:
        """After an FLR: the device and the guest's view are both at reset state; IRTEs freed."""
        state = self._devices.get(device)
        if state is None:
            return
        self._teardown_msi(state)
        self._teardown_msix(state)
        self._reload(state)

    def set_passthrough(self, device: PciDevice, kind: MsgKind, enabled: bool) -> None:
        """Stop (``enabled``) or resume emulating ``kind`` of ``device`` (MSI or MSI-X; IMS is never emulated)."""
        state = self._state(device)
        if kind is MsgKind.IMS:
            return
        if enabled:
            if kind in state.passthrough:
                return
            if kind is MsgKind.MSI:
                self._teardown_msi(state)
                if device.msi is not None:
                    device.msi.clear()  # no pair of the emulator's is left for the guest to enable
            else:
                self._teardown_msix(state)
            state.passthrough.add(kind)
        elif kind in state.passthrough:
            state.passthrough.discard(kind)
            self._reload(state, kind)

    # -- queries -------------------------------------------------------------------------------------------
    def is_attached(self, device: PciDevice) -> bool:
        return device in self._devices

    def is_passthrough(self, device: PciDevice, kind: MsgKind) -> bool:
        """Whether ``kind`` of ``device`` is claimed: no longer emulated, its MSI-X table and PBA mapped (IMS:
        always, it is never emulated); its capability in configuration space still traps (HV-EMU-001)."""
        return kind is MsgKind.IMS or kind in self._state(device).passthrough

    def enabled_through_emulation(self, device: PciDevice, kind: MsgKind) -> bool:
        """Whether the guest has ``kind`` enabled through emulation (MSI Enable / MSI-X Enable set)."""
        state = self._state(device)
        if kind in state.passthrough:
            return False
        if kind is MsgKind.MSI:
            return state.msi is not None and state.msi.enable
        if kind is MsgKind.MSIX:
            return state.msix is not None and state.msix.enable
        return False

    def irte_indices(self, device: PciDevice) -> list[int]:
        """Remapping entries the emulator holds for ``device``."""
        state = self._devices.get(device)
        if state is None:
            return []
        held = list(state.msix_irte.values())
        if state.msi_block is not None:
            base, count = state.msi_block
            held += range(base, base + count)
        return sorted(held)

    def host_writes(self, device: PciDevice) -> int:
        """The hypervisor's own writes into the claimed MSI capability (inside hypercalls, after FLR): no exits."""
        return self._state(device).host_writes

    # -- the explicit MSI model (spec "The emulation boundary") ------------------------------------------------
    def program_msi(self, device: PciDevice, address: int, data: int, vectors: int) -> None:
        """Write a pvmsi pair and Multiple Message Enable into ``device``'s MSI capability (HV-EMU-002, HV-EMU-003,
        HV-EMU-007): the hypervisor's write, not the guest's, so no exit."""
        state = self._state(device)
        if device.msi is None:
            raise ValueError(f"{device.name} has no MSI capability")
        device.msi.program(address, data, vectors)
        state.host_writes += 1

    def clear_msi(self, device: PciDevice) -> None:
        """Clear MSI Enable, the pair and Multiple Message Enable of ``device``'s MSI capability (HV-EMU-004)."""
        state = self._state(device)
        if device.msi is None:
            raise ValueError(f"{device.name} has no MSI capability")
        device.msi.clear()
        state.host_writes += 1

    def clear_msix(self, device: PciDevice) -> None:
        """Put ``device``'s MSI-X table and Message Control as a reset leaves them (HV-RELEASE-001): every entry
        masked, address and data zero, MSI-X Enable and Function Mask clear; the hypervisor's writes, no exit. The
        PBA is read-only: a bit a masked message left pending stays until the device sends or drops it."""
        state = self._state(device)
        if device.msix is None:
            return
        pending = device.msix.table.pending
        device.msix.reset()
        device.msix.table.pending = pending
        state.host_writes += 1

    def traps_config(self, device: PciDevice, kind: MsgKind) -> bool:
        """Whether a guest access to the ``kind`` capability of ``device`` exits: always, claimed or not
        (HV-EMU-001: configuration space stays trapped for an assigned device)."""
        return True

    def claimed_msi_write(self, device: PciDevice, offset: int, size: int, value: int) -> None:
        """A trapped guest write to a claimed MSI capability (``offset`` from its start): MSI Enable and the Mask
        Bits reach the device, Message Address, Data and Multiple Message Enable are ignored (HV-EMU-005)."""
        assert device.msi is not None
        device.msi.write_controls(offset, size, value)

    def claimed_msix_write(self, device: PciDevice, offset: int, size: int, value: int) -> None:
        """A trapped guest write to a claimed MSI-X capability: Enable and Function Mask reach the device
        (HV-EMU-006)."""
        assert device.msix is not None
        device.msix.write(offset, size, value)

    def alloc_failures(self, device: PciDevice) -> int:
        """Entries the emulator could not make live because the remapping table was full."""
        return self._state(device).alloc_failures

    # -- trapped accesses ----------------------------------------------------------------------------------
    def config_write(self, device: PciDevice, offset: int, size: int, value: int) -> bool:
        """A guest config-space write; returns whether it exited."""
        state = self._state(device)
        region = device.config_region(offset)
        if region is None:
            state.vm.count_exit(ExitReason.CONFIG_WRITE)
            device.config_write(offset, size, value)
            return True
        if region in state.passthrough:
            exited = self.traps_config(device, region)
            if not exited:
                device.config_write(offset, size, value)
                return False
            if region is MsgKind.MSI:
                state.vm.count_exit(ExitReason.MSI_CAP_WRITE)
                self.claimed_msi_write(device, offset - MSI_CAP_OFFSET, size, value)
            else:
                state.vm.count_exit(ExitReason.MSIX_CAP_WRITE)
                self.claimed_msix_write(device, offset - MSIX_CAP_OFFSET, size, value)
            return True
        if region is MsgKind.MSI:
            state.vm.count_exit(ExitReason.MSI_CAP_WRITE)
            assert state.msi is not None
            state.msi.write(offset - MSI_CAP_OFFSET, size, value)
            self._sync_msi(state)
        else:
            state.vm.count_exit(ExitReason.MSIX_CAP_WRITE)
            assert state.msix is not None
            state.msix.write(offset - MSIX_CAP_OFFSET, size, value)
            self._sync_msix_cap(state)
        return True

    def config_read(self, device: PciDevice, offset: int, size: int) -> tuple[int, bool]:
        """A guest config-space read: ``(value, exited)``."""
        state = self._state(device)
        region = device.config_region(offset)
        value = self.config_view(device, offset, size)
        if region is None:
            state.vm.count_exit(ExitReason.CONFIG_READ)
            return value, True
        if region in state.passthrough:
            exited = self.traps_config(device, region)
            if exited:
                state.vm.count_exit(ExitReason.MSI_CAP_READ if region is MsgKind.MSI else ExitReason.MSIX_CAP_READ)
            return value, exited
        state.vm.count_exit(ExitReason.MSI_CAP_READ if region is MsgKind.MSI else ExitReason.MSIX_CAP_READ)
        return value, True

    def config_view(self, device: PciDevice, offset: int, size: int) -> int:
        """What a guest config-space read returns, with no exit counted: the device's own registers where the
        guest reaches them, the emulated capability where the hypervisor emulates it."""
        state = self._state(device)
        region = device.config_region(offset)
        if region is None or region in state.passthrough:
            return device.config_read(offset, size)
        if region is MsgKind.MSI:
            assert state.msi is not None
            assert device.msi is not None
            state.msi.pending_bits = device.msi.pending_bits
            return state.msi.read(offset - MSI_CAP_OFFSET, size)
        assert state.msix is not None
        return state.msix.read(offset - MSIX_CAP_OFFSET, size)

    def bar_write(self, device: PciDevice, offset: int, size: int, value: int) -> bool:
        """A guest write into BAR0 at ``offset``; returns whether it exited (MSI-X table/PBA while emulated)."""
        state = self._state(device)
        region, rel = device.bar_region(offset)
        if region not in _MSIX_REGIONS or MsgKind.MSIX in state.passthrough:
            device.bar_write(offset, size, value)
            return False
        state.vm.count_exit(ExitReason.MSIX_TABLE_WRITE)
        if region is BarRegion.MSIX_TABLE:
            assert state.msix is not None
            entry = state.msix.table.write(rel, size, value)
            self._sync_msix_entry(state, entry)
        return True

    def bar_read(self, device: PciDevice, offset: int, size: int) -> tuple[int, bool]:
        """A guest read of BAR0 at ``offset``: ``(value, exited)``."""
        state = self._state(device)
        region, rel = device.bar_region(offset)
        if region not in _MSIX_REGIONS or MsgKind.MSIX in state.passthrough:
            return device.bar_read(offset, size), False
        state.vm.count_exit(ExitReason.MSIX_TABLE_READ)
        if region is BarRegion.MSIX_PBA:
            return device.bar_read(offset, size), True
        assert state.msix is not None
        return state.msix.table.read(rel, size), True

    # -- emulation -----------------------------------------------------------------------------------------
    def _state(self, device: PciDevice) -> _Emulation:
        state = self._devices.get(device)
        if state is None:
            raise KeyError(f"device {device.name} is not assigned to a VM")
        return state

    def _reload(self, state: _Emulation, kind: MsgKind | None = None) -> None:
        """Make the virtual view a copy of the device registers (assignment, FLR, release)."""
        device = state.device
        if device.msi is not None and kind in (None, MsgKind.MSI) and MsgKind.MSI not in state.passthrough:
            state.msi = MsiCapability(device.msi.max_vectors, device.msi.per_vector_mask)
            state.msi.copy_from(device.msi)
            self._sync_msi(state)
        if device.msix is not None and kind in (None, MsgKind.MSIX) and MsgKind.MSIX not in state.passthrough:
            virt = MsixCapability(device.msix.table_size, device.msix.table_offset, device.msix.pba_offset)
            virt.enable, virt.function_mask = device.msix.enable, device.msix.function_mask
            virt.table.copy_from(device.msix.table)
            state.msix = virt
            self._sync_msix_cap(state)

    def _target(self, state: _Emulation, address: int, data: int, count: int) -> CompatMessage | None:
        message = parse_compat(address, data)
        if message is None or message.dest_apic_id >= state.vm.vcpu_count:
            return None
        if message.vector not in X86_VECTORS or message.vector + count - 1 not in X86_VECTORS:
            return None
        return message

    def alloc_entries(self, entry: Irte, count: int) -> int | None:
        """Allocate the remapping entries of an emulated vector (block): in the VM's share, counted against it like
        a pvmsi message's (spec HV-QUOTA-002); None when the share (or the table) has no room."""
        return self.table.alloc(entry, count)

    def _irte(self, state: _Emulation, target: CompatMessage) -> Irte:
        return Irte(state.vm.id, target.dest_apic_id, target.vector, state.device.requester())

    def _sync_msi(self, state: _Emulation) -> None:
        virt, phys = state.msi, state.device.msi
        if virt is None or phys is None:
            return
        count = virt.vectors_enabled
        target = self._target(state, virt.address, virt.data, count) if virt.enable else None
        if target is None:
            self._teardown_msi(state)
        elif state.msi_block is not None and state.msi_block[1] == count:
            base = state.msi_block[0]
            for i in range(count):
                self.table.update(base + i, dest_vcpu=target.dest_apic_id, vector=target.vector + i)
        else:
            self._teardown_msi(state)
            base_or_none = self.alloc_entries(self._irte(state, target), count)
            if base_or_none is None:
                state.alloc_failures += 1
            else:
                state.msi_block = (base_or_none, count)
                address, data = compose(base_or_none)
                dev = state.device
                dev.config_write(MSI_CAP_OFFSET + MsiCapability.ADDRESS_LO, 4, address & 0xFFFFFFFF)
                dev.config_write(MSI_CAP_OFFSET + MsiCapability.ADDRESS_HI, 4, address >> 32)
                dev.config_write(MSI_CAP_OFFSET + MsiCapability.DATA, 2, data)
                dev.config_write(MSI_CAP_OFFSET + MsiCapability.CONTROL, 2, virt.mme << 4 | 1)
        if phys.per_vector_mask:
            state.device.config_write(MSI_CAP_OFFSET + MsiCapability.MASK, 4, virt.mask_bits)

    def _teardown_msi(self, state: _Emulation) -> int:
        if state.msi_block is None:
            return 0
        state.device.config_write(MSI_CAP_OFFSET + MsiCapability.CONTROL, 2, 0)
        freed = self.table.free(state.msi_block[0])
        state.msi_block = None
        return freed

    def _sync_msix_cap(self, state: _Emulation) -> None:
        virt = state.msix
        if virt is None:
            return
        control = virt.control & (MsixCapability.ENABLE | MsixCapability.FUNCTION_MASK)
        state.device.config_write(MSIX_CAP_OFFSET + MsixCapability.CONTROL, 2, control)
        # An entry never written is masked: it needs syncing only if the emulator holds a remapping entry for it.
        for entry in sorted({*virt.table.written, *state.msix_irte}):
            self._sync_msix_entry(state, entry)

    def _sync_msix_entry(self, state: _Emulation, entry: int) -> None:
        virt = state.msix
        assert virt is not None
        slot = virt.table.slot(entry) if virt.entry_live(entry) else None
        target = None if slot is None else self._target(state, slot.address, slot.data, 1)
        held = state.msix_irte.get(entry)
        if target is None:
            if held is not None:
                self._mask_physical(state, entry)
                self.table.free(held)
                del state.msix_irte[entry]
        elif held is not None:
            self.table.update(held, dest_vcpu=target.dest_apic_id, vector=target.vector)
        else:
            index = self.alloc_entries(self._irte(state, target), 1)
            if index is None:
                state.alloc_failures += 1
                return
            state.msix_irte[entry] = index
            address, data = compose(index)
            base = state.device.layout.msix_table_offset + entry * SLOT_SIZE
            state.device.bar_write(base, 4, address & 0xFFFFFFFF)
            state.device.bar_write(base + 4, 4, address >> 32)
            state.device.bar_write(base + 8, 4, data)
            state.device.bar_write(base + 12, 4, 0)

    def _mask_physical(self, state: _Emulation, entry: int) -> None:
        """An emulated entry stops being live: mask the physical entry, then clear the pair of the emulator's it
        held, so that no pair naming a released remapping entry stays in the table (HV-DEV-009, HV-QUOTA-002)."""
        base = state.device.layout.msix_table_offset + entry * SLOT_SIZE
        state.device.bar_write(base + 12, 4, 1)
        for offset in (0, 4, 8):  # address lo, address hi, data
            state.device.bar_write(base + offset, 4, 0)

    def _teardown_msix(self, state: _Emulation) -> int:
        freed = 0
        for entry, index in sorted(state.msix_irte.items()):
            self._mask_physical(state, entry)
            freed += self.table.free(index)
        state.msix_irte.clear()
        return freed
