"""The MSI and MSI-X capability structures of a device's config space (PCI Express Base specification, "MSI
Capability Structure", "MSI-X Capability and Table Structure"): the MSI capability at config offset 0x50 (64-bit
address, optional per-vector masking) and the MSI-X capability at 0x70, whose table and pending bit array live
in BAR0 (:mod:`.pci_slots`).

The layouts are the spec's (:mod:`pvmsi.spec.harness_devices`, the harness appendix's "Device model").
"""

from __future__ import annotations

from pvmsi.spec import harness_devices as hd

from .pci_slots import MessageTable, check_register_access, merge_register

MSI_CAP_OFFSET = hd.MSI_CAP_OFFSET
MSIX_CAP_OFFSET = hd.MSIX_CAP_OFFSET
CAP_POINTER = hd.CAP_POINTER
MSIX_MAX_TABLE_SIZE = hd.MSIX_TABLE_SIZE_MASK + 1


class MsiCapability:
    """The MSI capability: 1..32 vectors, 64-bit address, optional per-vector masking."""

    CAP_ID = hd.MSI_CAP_ID
    CONTROL = hd.MSI_CONTROL
    ADDRESS_LO = hd.MSI_ADDRESS_LO
    ADDRESS_HI = hd.MSI_ADDRESS_HI
    DATA = hd.MSI_DATA
    MASK = hd.MSI_MASK
    PENDING = hd.MSI_PENDING

    def __init__(self, max_vectors: int, per_vector_mask: bool = True) -> None:
        if max_vectors not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"MSI supports 1..32 vectors, a power of two, not {max_vectors}")
        self.max_vectors = max_vectors
        self.mmc = max_vectors.bit_length() - 1
        self.per_vector_mask = per_vector_mask
        self.size = hd.MSI_CAP_SIZE if per_vector_mask else hd.MSI_CAP_SIZE_NO_MASK
        self.next_ptr = 0
        self.enable = False
        self.mme = 0
        self.address = 0
        self.data = 0
        self.mask_bits = 0
        self.pending_bits = 0

    @property
    def vectors_enabled(self) -> int:
        """Multiple Message Enable as a vector count."""
        return 1 << self.mme

    @property
    def control(self) -> int:
        return (
            int(self.enable) * hd.MSI_ENABLE
            | self.mmc << hd.MSI_MMC_SHIFT
            | self.mme << hd.MSI_MME_SHIFT
            | hd.MSI_64BIT
            | int(self.per_vector_mask) * hd.MSI_PER_VECTOR_MASK
        )

    def reset(self) -> None:
        self.enable, self.mme, self.address, self.data, self.mask_bits, self.pending_bits = False, 0, 0, 0, 0, 0

    def image(self) -> bytearray:
        image = bytearray(self.size)
        image[0] = self.CAP_ID
        image[1] = self.next_ptr
        image[2:4] = self.control.to_bytes(2, "little")
        image[4:12] = self.address.to_bytes(8, "little")
        image[12:14] = self.data.to_bytes(2, "little")
        if self.per_vector_mask:
            image[16:20] = self.mask_bits.to_bytes(4, "little")
            image[20:24] = self.pending_bits.to_bytes(4, "little")
        return image

    def read(self, offset: int, size: int) -> int:
        """Read ``size`` bytes at ``offset`` from the start of the capability."""
        return int.from_bytes(self.image()[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        """Write ``size`` bytes at ``offset`` from the start of the capability (read-only bits kept)."""
        image = merge_register(self.image(), offset, size, value)
        control = int.from_bytes(image[2:4], "little")
        self.enable = bool(control & 1)
        self.mme = min((control >> 4) & 7, self.mmc)
        self.address = int.from_bytes(image[4:12], "little") & ~0x3
        self.data = int.from_bytes(image[12:14], "little")
        if self.per_vector_mask:
            self.mask_bits = int.from_bytes(image[16:20], "little") & ((1 << self.max_vectors) - 1)

    def write_controls(self, offset: int, size: int, value: int) -> None:
        """Apply only MSI Enable and the per-vector Mask Bits of a write at ``offset`` (the guest's write to a
        claimed capability, HV-EMU-005): Message Address, Data and Multiple Message Enable are the hypervisor's."""
        image = merge_register(self.image(), offset, size, value)
        self.enable = bool(int.from_bytes(image[2:4], "little") & 1)
        if self.per_vector_mask:
            self.mask_bits = int.from_bytes(image[16:20], "little") & ((1 << self.max_vectors) - 1)

    def program(self, address: int, data: int, vectors: int) -> None:
        """The hypervisor's own write of a pair and Multiple Message Enable (HV-EMU-002); MSI Enable unchanged."""
        self.address, self.data = address & ~0x3, data & 0xFFFF
        self.mme = min(max(vectors, 1).bit_length() - 1, self.mmc)

    def clear(self) -> None:
        """The hypervisor's clearing of a freed message (HV-EMU-004): MSI off, zero pair, one vector."""
        self.enable, self.address, self.data, self.mme = False, 0, 0, 0

    def copy_from(self, other: MsiCapability) -> None:
        """Take over the register state of ``other`` (same shape)."""
        self.enable, self.mme, self.address, self.data = other.enable, other.mme, other.address, other.data
        self.mask_bits, self.pending_bits = other.mask_bits, other.pending_bits


class MsixCapability:
    """The MSI-X capability and its table: up to 2048 entries, function mask and enable."""

    CAP_ID = hd.MSIX_CAP_ID
    SIZE = hd.MSIX_CAP_SIZE
    CONTROL = hd.MSIX_CONTROL
    FUNCTION_MASK = hd.MSIX_FUNCTION_MASK
    ENABLE = hd.MSIX_ENABLE

    def __init__(self, table_size: int, table_offset: int = 0, pba_offset: int = 0) -> None:
        if not 1 <= table_size <= MSIX_MAX_TABLE_SIZE:
            raise ValueError(f"MSI-X table size {table_size} outside 1..{MSIX_MAX_TABLE_SIZE}")
        self.table = MessageTable(table_size)
        self.table_offset = table_offset
        self.pba_offset = pba_offset
        self.next_ptr = 0
        self.enable = False
        self.function_mask = False

    @property
    def table_size(self) -> int:
        return len(self.table)

    @property
    def control(self) -> int:
        return (
            (self.table_size - 1)
            | (self.FUNCTION_MASK if self.function_mask else 0)
            | (self.ENABLE if self.enable else 0)
        )

    def reset(self) -> None:
        self.enable = self.function_mask = False
        self.table.reset()

    def image(self) -> bytearray:
        image = bytearray(self.SIZE)
        image[0] = self.CAP_ID
        image[1] = self.next_ptr
        image[2:4] = self.control.to_bytes(2, "little")
        image[4:8] = self.table_offset.to_bytes(4, "little")  # BIR 0
        image[8:12] = self.pba_offset.to_bytes(4, "little")
        return image

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.image()[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        control = int.from_bytes(merge_register(self.image(), offset, size, value)[2:4], "little")
        self.enable = bool(control & self.ENABLE)
        self.function_mask = bool(control & self.FUNCTION_MASK)

    @property
    def pba_size(self) -> int:
        return -(-self.table_size // 64) * 8

    def pba_read(self, offset: int, size: int) -> int:
        check_register_access(offset, size, self.pba_size)
        return (self.table.pending >> (8 * offset)) & ((1 << (8 * size)) - 1)

    def entry_live(self, index: int) -> bool:
        """Whether entry ``index`` would fire now (enabled, not function-masked, not masked)."""
        return self.enable and not self.function_mask and not self.table.masked(index)
