"""RISC-V AIA IMSIC behind a RISC-V IOMMU (spec platform ``imsic``; AIA 1.0 chapter 3, RISC-V IOMMU 1.0 "MSI
page tables").

A device writes the interrupt identity to an interrupt file's seteipnum_le register.  In a VM, the address is
the guest's view of the target hart's interrupt file; the IOMMU's MSI page table of the device's context maps
that page to the host's guest interrupt file of the hart (here: to the VM's vCPU).  No table entry per message
exists: the hypervisor maps a hart's file in a device's MSI page table while a message of the device targets
that hart, and unmaps it when none does.  Moving a message to another hart therefore changes its address
(REWRITE).  Identity N is the guest interrupt files' size (the reference: 255, as QEMU's virt board).
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

    def programmed(self, key: int, table: DeviceTable, base: int) -> None:
        entry = table.entries[base]
        if not entry.present:  # a reserved or deactivated message maps no interrupt file (HV-ACT-001, HV-ACT-005)
            return
        self.mapped[key, entry.dest_vcpu] += 1
        self.sources.setdefault((key, entry.dest_vcpu), Counter())[entry.source] += 1
        self.vm_of[key] = entry.owner_vm

    def unprogrammed(self, key: int, table: DeviceTable, base: int) -> None:
        entry = table.entries[base]
        if not entry.present:
            return
        self.mapped[key, entry.dest_vcpu] -= 1
        sources = self.sources[key, entry.dest_vcpu]
        sources[entry.source] -= 1
        if sources[entry.source] <= 0:
            del sources[entry.source]
        if self.mapped[key, entry.dest_vcpu] <= 0:
            del self.mapped[key, entry.dest_vcpu]
            del self.sources[key, entry.dest_vcpu]

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
        # The device context (requester id) selects the MSI page table; the IOMMU validates the source as it
        # does for any entry, against a source of a message that maps this file (the requester's own if it has one).
        sources = self.sources[key, hart]
        source = requester if requester in sources else next(iter(sources))
        return data, Irte(self.vm_of[key], hart, data, source)

    def compose(self, ref: int) -> tuple[int, int]:
        entry = self.entry(ref)
        page = file_address(entry.dest_vcpu) >> 12
        return compose_fields(LAYOUT.address, file_page=page), compose_fields(LAYOUT.data, identity=entry.vector)
