"""PCI devices with an MSI capability, an MSI-X table in a BAR, an IMS store and PASID sub-devices.

Register layouts follow the PCI Local Bus / PCI Express Base specification ("MSI Capability Structure",
"MSI-X Capability and Table Structure").  Every device has one 64-bit memory BAR (BAR0) laid out as::

    0x0000  device registers (opaque storage)
    0x2000  MSI-X table (16-byte entries: address lo, address hi, data, vector control with mask bit 0)
    ...     MSI-X pending bit array (one bit per entry, read-only)
    ...     IMS store (device-specific; 16-byte entries: address lo, address hi, data, control word with the
            mask in bit 0 and, for an IDXD-like device, PASID enable in bit 3 and the PASID in bits 31:12)

each region page-aligned and the BAR sized to a power of two.  Where the IMS store lives is a device-specific
fact that only its driver knows: the hypervisor has no table of it, so it cannot trap IMS writes.

The MSI capability sits at config offset 0x50 (64-bit address, optional per-vector masking) and the MSI-X
capability at 0x70.  :meth:`PciDevice.fire` makes the device emit the memory write of the pair stored in an
entry, tagged with its requester id (plus, for an IMS entry with PASID enable set, a PASID TLP prefix carrying
the entry's PASID: the IOMMU does not validate it, spec HV-SEC-002).  A masked entry
does not fire: its pending bit is set and the message goes out when it is unmasked
(:meth:`PciDevice.take_deliverable_pending`).  A disabled MSI/MSI-X function drops the message.  FLR returns
MSI, MSI-X and IMS to their reset state (disabled, entries zero and masked, no pending bits).

The slots and tables are in :mod:`.pci_slots`, the MSI and MSI-X capabilities in :mod:`.pci_caps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from pvmsi.spec import harness_devices as hd
from pvmsi.spec.constants import KindMask, MsgKind

from .pci_caps import CAP_POINTER, MSI_CAP_OFFSET, MSIX_CAP_OFFSET, MsiCapability, MsixCapability
from .pci_slots import MessageSlot, MessageTable, PasidImsEntry, check_register_access, merge_register
from .requester import Bdf, Requester
from .vm import MessageSource

# The layouts are the spec's (pvmsi.spec.harness_devices, the harness appendix's "Device model").
CONFIG_SPACE_SIZE = hd.CONFIG_SPACE_SIZE
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class BarLayout:
    """Offsets in BAR0 of the device's regions (0 size = absent)."""

    size: int
    registers_size: int
    msix_table_offset: int
    msix_table_size: int
    msix_pba_offset: int
    msix_pba_size: int
    ims_offset: int
    ims_size: int

    @staticmethod
    def for_device(msix_entries: int, ims_slots: int) -> BarLayout:
        """The spec's BAR0 layout (harness "Device model")."""
        r = hd.bar_layout(msix_entries, ims_slots)
        return BarLayout(r["bar"][1], r["registers"][1], *r["msix_table"], *r["msix_pba"], *r["ims"])


class BarRegion(StrEnum):
    """What a BAR0 offset addresses."""

    REGISTERS = "registers"
    MSIX_TABLE = "msix_table"
    MSIX_PBA = "msix_pba"
    IMS = "ims"
    UNUSED = "unused"


@dataclass(frozen=True, slots=True)
class SubDevice:
    """A sub-device (e.g. an IDXD work-queue instance): its PASID and its partition of the IMS slots."""

    pasid: int
    first_slot: int
    slot_count: int

    @property
    def slots(self) -> range:
        return range(self.first_slot, self.first_slot + self.slot_count)

    def slot(self, local: int) -> int:
        """The device-wide IMS slot number of the sub-device's slot ``local``."""
        if not 0 <= local < self.slot_count:
            raise ValueError(f"sub-device slot {local} outside 0..{self.slot_count - 1}")
        return self.first_slot + local


class NotFiredReason(StrEnum):
    DISABLED = "disabled"
    MASKED = "masked"
    NOT_PROGRAMMED = "not_programmed"  # live, but the slot's address is zero: no write (harness: fire outcomes)
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class MemoryWrite:
    """The memory write a device issues to signal an interrupt."""

    requester: Requester
    address: int
    data: int
    source: MessageSource | None = None


@dataclass(frozen=True, slots=True)
class NotFired:
    """A fire request that produced no write: the entry is disabled, masked (now pending) or the device gone."""

    reason: NotFiredReason
    kind: MsgKind
    index: int


class PciDevice:
    """One PCI function with MSI, MSI-X and/or IMS, as the host sees it, plus its assignment to a VM."""

    def __init__(
        self,
        name: str,
        host: Bdf,
        *,
        msi_vectors: int = 0,
        msi_per_vector_mask: bool = True,
        msix_table_size: int = 0,
        ims_slots: int = 0,
        subdevice_pasids: Sequence[int] = (),
        ims_pasid: bool = False,
        needs_viommu: bool = False,
        isolated: bool = True,
        vendor_id: int = 0x1AF4,
        device_id: int = 0x10F0,
    ) -> None:
        self.name = name
        self.host = host
        self.needs_viommu = needs_viommu
        self.isolated = isolated
        self.layout = BarLayout.for_device(msix_table_size, ims_slots)
        self.msi = MsiCapability(msi_vectors, msi_per_vector_mask) if msi_vectors else None
        self.msix = (
            MsixCapability(msix_table_size, self.layout.msix_table_offset, self.layout.msix_pba_offset)
            if msix_table_size
            else None
        )
        self.ims = MessageTable(ims_slots, PasidImsEntry if ims_pasid else MessageSlot) if ims_slots else None
        self.subdevices = self._partition(subdevice_pasids, ims_slots)
        self._config = bytearray(CONFIG_SPACE_SIZE)
        self._config[0:2] = vendor_id.to_bytes(2, "little")
        self._config[2:4] = device_id.to_bytes(2, "little")
        self._build_cap_list()
        self._registers = bytearray(self.layout.registers_size)
        self.guest: Bdf | None = None
        self.vm_id: int | None = None
        self.bar_gpa: int | None = None
        self.removed = False
        self.flr_count = 0

    # -- identity ------------------------------------------------------------------------------------------
    def requester(self, pasid: int | None = None) -> Requester:
        """The requester tag of this device's writes (with a sub-device's PASID)."""
        return self.host.requester(pasid)

    @property
    def kinds(self) -> KindMask:
        """Message kinds the device supports."""
        mask = KindMask(0)
        if self.msi is not None:
            mask |= KindMask.MSI
        if self.msix is not None:
            mask |= KindMask.MSIX
        if self.ims is not None:
            mask |= KindMask.IMS
        return mask

    @property
    def msi_max_vectors(self) -> int:
        return self.msi.max_vectors if self.msi is not None else 0

    @property
    def msix_table_size(self) -> int:
        return self.msix.table_size if self.msix is not None else 0

    @property
    def ims_slots(self) -> int:
        return len(self.ims) if self.ims is not None else 0

    def subdevice(self, pasid: int) -> SubDevice | None:
        for sub in self.subdevices:
            if sub.pasid == pasid:
                return sub
        return None

    def subdevice_of_slot(self, slot: int) -> SubDevice | None:
        for sub in self.subdevices:
            if slot in sub.slots:
                return sub
        return None

    # -- config space --------------------------------------------------------------------------------------
    def config_region(self, offset: int) -> MsgKind | None:
        """``MSI`` or ``MSIX`` when ``offset`` is inside that capability, else ``None``."""
        if self.msi is not None and MSI_CAP_OFFSET <= offset < MSI_CAP_OFFSET + self.msi.size:
            return MsgKind.MSI
        if self.msix is not None and MSIX_CAP_OFFSET <= offset < MSIX_CAP_OFFSET + MsixCapability.SIZE:
            return MsgKind.MSIX
        return None

    def config_read(self, offset: int, size: int) -> int:
        check_register_access(offset, size, CONFIG_SPACE_SIZE)
        region = self.config_region(offset)
        if region is MsgKind.MSI and self.msi is not None:
            return self.msi.read(offset - MSI_CAP_OFFSET, size)
        if region is MsgKind.MSIX and self.msix is not None:
            return self.msix.read(offset - MSIX_CAP_OFFSET, size)
        return int.from_bytes(self._config[offset : offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        check_register_access(offset, size, CONFIG_SPACE_SIZE)
        region = self.config_region(offset)
        if region is MsgKind.MSI and self.msi is not None:
            self.msi.write(offset - MSI_CAP_OFFSET, size, value)
        elif region is MsgKind.MSIX and self.msix is not None:
            self.msix.write(offset - MSIX_CAP_OFFSET, size, value)
        elif offset >= 0x40:  # the header is read-only in the model
            merge_register(self._config, offset, size, value)

    # -- BAR0 ----------------------------------------------------------------------------------------------
    def bar_region(self, offset: int) -> tuple[BarRegion, int]:
        """What BAR0 ``offset`` addresses, and the offset inside that region."""
        lay = self.layout
        if 0 <= offset < lay.registers_size:
            return BarRegion.REGISTERS, offset
        if lay.msix_table_size and lay.msix_table_offset <= offset < lay.msix_table_offset + lay.msix_table_size:
            return BarRegion.MSIX_TABLE, offset - lay.msix_table_offset
        if lay.msix_pba_size and lay.msix_pba_offset <= offset < lay.msix_pba_offset + lay.msix_pba_size:
            return BarRegion.MSIX_PBA, offset - lay.msix_pba_offset
        if lay.ims_size and lay.ims_offset <= offset < lay.ims_offset + lay.ims_size:
            return BarRegion.IMS, offset - lay.ims_offset
        return BarRegion.UNUSED, offset

    def bar_read(self, offset: int, size: int) -> int:
        check_register_access(offset, size, self.layout.size)
        region, rel = self.bar_region(offset)
        if region is BarRegion.REGISTERS:
            return int.from_bytes(self._registers[rel : rel + size], "little")
        if region is BarRegion.MSIX_TABLE and self.msix is not None:
            return self.msix.table.read(rel, size)
        if region is BarRegion.MSIX_PBA and self.msix is not None:
            return self.msix.pba_read(rel, size)
        if region is BarRegion.IMS and self.ims is not None:
            return self.ims.read(rel, size)
        return 0

    def bar_write(self, offset: int, size: int, value: int) -> None:
        check_register_access(offset, size, self.layout.size)
        region, rel = self.bar_region(offset)
        if region is BarRegion.REGISTERS:
            merge_register(self._registers, rel, size, value)
        elif region is BarRegion.MSIX_TABLE and self.msix is not None:
            self.msix.table.write(rel, size, value)
        elif region is BarRegion.IMS and self.ims is not None:
            self.ims.write(rel, size, value)
        # PBA and unused space: writes ignored

    # -- interrupts ----------------------------------------------------------------------------------------
    def fire(self, kind: MsgKind, index: int) -> MemoryWrite | NotFired:
        """Emit the message of MSI vector ``index`` / MSI-X entry ``index`` / IMS slot ``index``.

        The checks run in the order the harness page fixes (harness: fire outcomes): the kind disabled or the MSI
        vector beyond the enabled count (nothing held), then masked (held in the pending bit), then a zero
        address (no write), and only then the write.
        """
        if self.removed:
            return NotFired(NotFiredReason.REMOVED, kind, index)
        source = MessageSource(self.name, kind.name.lower(), index)
        if kind is MsgKind.MSI:
            msi = self._need(self.msi, kind)
            if not 0 <= index < msi.max_vectors:
                raise ValueError(f"{self.name}: MSI vector {index} outside 0..{msi.max_vectors - 1}")
            if not msi.enable or index >= msi.vectors_enabled:
                return NotFired(NotFiredReason.DISABLED, kind, index)
            if msi.mask_bits >> index & 1:
                msi.pending_bits |= 1 << index
                return NotFired(NotFiredReason.MASKED, kind, index)
            if not msi.address:
                return NotFired(NotFiredReason.NOT_PROGRAMMED, kind, index)
            count = msi.vectors_enabled
            data = (msi.data & ~(count - 1) & 0xFFFF) | index
            return MemoryWrite(self.requester(), msi.address, data, source)
        if kind is MsgKind.MSIX:
            msix = self._need(self.msix, kind)
            slot = self._slot(msix.table, index, kind)
            if not msix.enable:
                return NotFired(NotFiredReason.DISABLED, kind, index)
            if msix.function_mask or slot.masked:
                msix.table.pending |= 1 << index
                return NotFired(NotFiredReason.MASKED, kind, index)
            if not slot.address:
                return NotFired(NotFiredReason.NOT_PROGRAMMED, kind, index)
            return MemoryWrite(self.requester(), slot.address, slot.data, source)
        ims = self._need(self.ims, kind)
        slot = self._slot(ims, index, kind)
        if slot.masked:
            ims.pending |= 1 << index
            return NotFired(NotFiredReason.MASKED, kind, index)
        if not slot.address:
            return NotFired(NotFiredReason.NOT_PROGRAMMED, kind, index)
        # The write carries the entry's PASID (an IDXD-like entry with PASID enable), whatever a guest put there:
        # the IOMMU validates the requester id only (HV-SEC-002).
        return MemoryWrite(self.requester(slot.pasid), slot.address, slot.data, source)

    def is_pending(self, kind: MsgKind, index: int) -> bool:
        if kind is MsgKind.MSI:
            return bool(self._need(self.msi, kind).pending_bits >> index & 1)
        if kind is MsgKind.MSIX:
            return bool(self._need(self.msix, kind).table.pending >> index & 1)
        return bool(self._need(self.ims, kind).pending >> index & 1)

    def take_deliverable_pending(self) -> list[tuple[MsgKind, int]]:
        """Pending messages whose entry is now live: clears their pending bit; the caller fires them."""
        ready: list[tuple[MsgKind, int]] = []
        msi = self.msi
        if msi is not None and msi.pending_bits:
            for i in _bits(msi.pending_bits):
                if not msi.enable or i >= msi.vectors_enabled:
                    msi.pending_bits &= ~(1 << i)  # disabling drops pending messages
                elif not msi.mask_bits >> i & 1:
                    msi.pending_bits &= ~(1 << i)
                    ready.append((MsgKind.MSI, i))
        msix = self.msix
        if msix is not None and msix.table.pending:
            for i in _bits(msix.table.pending):
                if msix.entry_live(i):
                    msix.table.pending &= ~(1 << i)
                    ready.append((MsgKind.MSIX, i))
        ims = self.ims
        if ims is not None and ims.pending:
            for i in _bits(ims.pending):
                if not ims.masked(i):
                    ims.pending &= ~(1 << i)
                    ready.append((MsgKind.IMS, i))
        return ready

    def flr(self) -> None:
        """Function-level reset: MSI, MSI-X and IMS back to reset state (disabled, zero, masked)."""
        if self.msi is not None:
            self.msi.reset()
        if self.msix is not None:
            self.msix.reset()
        if self.ims is not None:
            self.ims.reset()
        self._registers[:] = bytes(len(self._registers))
        self.flr_count += 1

    # -- internals -----------------------------------------------------------------------------------------
    def _need(self, part: _T | None, kind: MsgKind) -> _T:
        if part is None:
            raise ValueError(f"{self.name} has no {kind.name}")
        return part

    def _slot(self, table: MessageTable, index: int, kind: MsgKind) -> MessageSlot:
        if not 0 <= index < len(table):
            raise ValueError(f"{self.name}: {kind.name} index {index} outside 0..{len(table) - 1}")
        return table.slot(index)

    def _build_cap_list(self) -> None:
        caps: list[int] = []
        if self.msi is not None:
            caps.append(MSI_CAP_OFFSET)
        if self.msix is not None:
            caps.append(MSIX_CAP_OFFSET)
        if caps:
            self._config[hd.STATUS] |= hd.STATUS_CAP_LIST
            self._config[CAP_POINTER] = caps[0]
        if self.msi is not None and self.msix is not None:
            self.msi.next_ptr = MSIX_CAP_OFFSET

    @staticmethod
    def _partition(pasids: Sequence[int], ims_slots: int) -> tuple[SubDevice, ...]:
        if not pasids:
            return ()
        if len(set(pasids)) != len(pasids):
            raise ValueError("sub-device PASIDs must be distinct")
        if ims_slots < len(pasids):
            raise ValueError("fewer IMS slots than sub-devices")
        share = ims_slots // len(pasids)
        return tuple(SubDevice(pasid, i * share, share) for i, pasid in enumerate(pasids))


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out
