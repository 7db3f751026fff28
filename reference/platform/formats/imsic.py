"""RISC-V AIA IMSIC behind a RISC-V IOMMU (spec platform ``imsic``; AIA 1.0 chapter 3, RISC-V IOMMU 1.0 "MSI
page tables").

A device writes the interrupt identity to an interrupt file's seteipnum_le register.  In a VM, the address is
the guest's view of the target hart's interrupt file; the IOMMU's MSI page table of the device's context maps
that page to the host's guest interrupt file of the hart (here: to the VM's vCPU).  No table entry per message
exists: the hypervisor maps a hart's file in a device's MSI page table while a message of the device targets
that hart, and unmaps it when none does.  Moving a message to another hart therefore changes its address
(REWRITE); the old hart's file stays mapped for the message until it moves again or is freed, so that the old
pair, still in the device until the guest rewrites it, delivers to the old hart (HV-FLIGHT-001).  Identity N is
the guest interrupt files' size (the reference: 255, as QEMU's virt board).
"""

from __future__ import annotations

from collections import Counter

from pvmsi.spec.platforms import compose_fields, platform

from ..fault import FaultReason
from ..remap import Irte
from ..requester import Requester
from .base import DeviceTable, PerDeviceFormat, device_key

LAYOUT = platform("imsic")
GUEST_IMSIC_BASE = 0x2800_0000
"""Guest-physical base of the VM's S-level IMSIC interrupt files, one 4 KiB page per hart (QEMU virt)."""
FILE_PAGE = 0x1000
MAX_HARTS = 4096
IDENTITIES = 255
"""N: the identities of each interrupt file (1..N)."""


def file_address(hart: int) -> int:
    """The guest address of hart ``hart``'s interrupt file."""
    return GUEST_IMSIC_BASE + hart * FILE_PAGE


class Imsic(PerDeviceFormat):
    """Per-device MSI page tables mapping guest interrupt-file pages to (VM, hart)."""

    key = "imsic"
    table_size = 65536

    def __init__(self) -> None:
        super().__init__()
        #: The MSI page tables: (DeviceID, hart) -> messages of the device targeting the hart (mapped while > 0).
        self.mapped: Counter[tuple[int, int]] = Counter()
        #: DeviceID -> the VM whose interrupt files its MSI page table maps.
        self.vm_of: dict[int, int] = {}
        #: (DeviceID, hart) -> the sources (requester tags) of the messages that map it.
        self.sources: dict[tuple[int, int], Counter[Requester]] = {}
        #: A message moved to another hart -> the old hart's file, kept mapped for it (HV-FLIGHT-001).
        self.lingering: dict[int, tuple[int, int, Requester]] = {}
        #: (DeviceID, hart, identity) disabled in the guest interrupt file after a revocation (:meth:`revoke`).
        self.disabled: set[tuple[int, int, int]] = set()

    def programmed(self, key: int, table: DeviceTable, base: int) -> None:
        entry = table.entries[base]
        for i in range(table.blocks.get(base, 1)):
            self.disabled.discard((key, entry.dest_vcpu, entry.vector + i))
        if not entry.present:  # a reserved or deactivated message maps no interrupt file (HV-ACT-001, HV-ACT-005)
            return
        self.vm_of[key] = entry.owner_vm
        self.map_file(key, entry.dest_vcpu, entry.source)

    def unprogrammed(self, key: int, table: DeviceTable, base: int) -> None:
        entry = table.entries[base]
        if not entry.present:
            return
        self.unmap_file(key, entry.dest_vcpu, entry.source)

    def map_file(self, key: int, hart: int, source: Requester) -> None:
        """One more message of device ``key`` needs hart ``hart``'s interrupt file mapped."""
        self.mapped[key, hart] += 1
        self.sources.setdefault((key, hart), Counter())[source] += 1

    def unmap_file(self, key: int, hart: int, source: Requester) -> None:
        """One message fewer needs it; the file is unmapped from the device's MSI page table when none does."""
        self.mapped[key, hart] -= 1
        sources = self.sources[key, hart]
        sources[source] -= 1
        if sources[source] <= 0:
            del sources[source]
        if self.mapped[key, hart] <= 0:
            del self.mapped[key, hart]
            del self.sources[key, hart]

    def update(self, ref: int, count: int, *, dest_vcpu: int, vector: int, posted: bool) -> None:
        """Move a message: to another hart, its pair changes (REWRITE), and the device keeps writing the old pair
        until the guest rewrites it, so the old hart's file stays mapped for the message until it moves again or
        is freed (HV-FLIGHT-001): a message raised meanwhile reaches the old hart, once."""
        self.release_lingering(ref)
        key, base = self.split(ref)
        old = self.tables[key].entries[base]
        if old.present and old.dest_vcpu != dest_vcpu:
            self.map_file(key, old.dest_vcpu, old.source)
            self.lingering[ref] = (key, old.dest_vcpu, old.source)
        super().update(ref, count, dest_vcpu=dest_vcpu, vector=vector, posted=posted)

    def free(self, ref: int) -> int:
        self.release_lingering(ref)
        return super().free(ref)

    def release_lingering(self, ref: int) -> None:
        """Unmap the old hart's file a moved message kept (it moved again, or was freed)."""
        kept = self.lingering.pop(ref, None)
        if kept is not None:
            self.unmap_file(*kept)

    def revoke(self, ref: int) -> int:
        """The MSI page table maps a whole interrupt file, which other messages of the device may still need: the
        revoked identities are disabled in the guest interrupt file instead (the hypervisor's view of its
        enable bits), until a message of the device is programmed with them again."""
        key, _ = self.split(ref)
        entry = self.entry(ref)
        count = self.tables[key].blocks[self.split(ref)[1]]
        for i in range(count):
            self.disabled.add((key, entry.dest_vcpu, entry.vector + i))
        return self.free(ref)

    def claims(self, address: int) -> bool:
        return GUEST_IMSIC_BASE <= address < GUEST_IMSIC_BASE + MAX_HARTS * FILE_PAGE

    def resolve(self, requester: Requester, address: int, data: int) -> tuple[int, Irte | None] | FaultReason:
        if address % FILE_PAGE:
            return FaultReason.NOT_INTERRUPT_ADDRESS
        hart = (address - GUEST_IMSIC_BASE) // FILE_PAGE
        key = device_key(requester.segment, requester.rid)
        if not self.mapped.get((key, hart)):
            return FaultReason.NOT_PRESENT  # the MSI page table does not map this file for this device
        if not 1 <= data <= IDENTITIES:
            return FaultReason.RESERVED_BITS  # not an identity of the file: the IMSIC ignores it
        if (key, hart, data) in self.disabled:
            return FaultReason.NOT_PRESENT  # revoked: the identity is disabled in the guest interrupt file
        # The device context (requester id) selects the MSI page table; the IOMMU validates the source as it
        # does for any entry, against a source of a message that maps this file (the requester's own if it has one).
        sources = self.sources[key, hart]
        source = requester if requester in sources else next(iter(sources))
        return data, Irte(self.vm_of[key], hart, data, source)

    def compose(self, ref: int) -> tuple[int, int]:
        entry = self.entry(ref)
        page = file_address(entry.dest_vcpu) >> 12
        return compose_fields(LAYOUT.address, file_page=page), compose_fields(LAYOUT.data, identity=entry.vector)
