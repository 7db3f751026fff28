"""The harness's device model (spec appendix "Conformance harness protocol", "Device model"): what the test
devices of each :class:`~.harness_constants.DeviceProfile` look like to the guest, and the guest RAM map of a VM
the harness creates.

The layouts are the PCI Local Bus and PCI Express ones ("MSI Capability Structure", "MSI-X Capability and Table
Structure"); the IMS slot is IDXD's (address, data, a control word with the mask in bit 0, PASID enable in bit 3
and the PASID in bits 31:12). The reference platform, the suites and the docs all read these values from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .harness_constants import HARNESS_CONFIG_SPACE_SIZE, DeviceProfile


@dataclass(frozen=True)
class Register:
    """One register of a structure: offset from the structure's start, size in bytes, value after reset."""

    name: str
    offset: int
    size: int
    reset: str
    doc: str


@dataclass(frozen=True)
class BitField:
    """Bits ``high..low`` of a register."""

    register: str
    name: str
    low: int
    high: int
    access: str
    doc: str

    @property
    def mask(self) -> int:
        return ((1 << (self.high - self.low + 1)) - 1) << self.low


# -- configuration space -------------------------------------------------------------------------------------

CONFIG_SPACE_SIZE = HARNESS_CONFIG_SPACE_SIZE
#: Status register and its Capabilities List bit (set on a device with any capability).
STATUS = 0x06
STATUS_CAP_LIST = 1 << 4
#: Capabilities Pointer: the offset of the first capability.
CAP_POINTER = 0x34
#: Where the capabilities sit; the MSI capability, when both exist, points to the MSI-X one (its Next Pointer).
MSI_CAP_OFFSET = 0x50
MSIX_CAP_OFFSET = 0x70
MSI_CAP_ID = 0x05
MSIX_CAP_ID = 0x11

CONFIG_HEADER: tuple[Register, ...] = (
    Register("Vendor ID", 0x00, 2, "the profile's", "Read-only."),
    Register("Device ID", 0x02, 2, "the profile's", "Read-only."),
    Register("Status", STATUS, 2, "0x0010 with a capability", "Bit 4, Capabilities List, set when any exists."),
    Register("Capabilities Pointer", CAP_POINTER, 1, "first capability", "0x50 with MSI, else 0x70; 0 with none."),
)

#: The MSI capability (64-bit address; per-vector masking where the profile has it: then 0x18 bytes, else 0x10).
MSI_CAP: tuple[Register, ...] = (
    Register("Capability ID", 0x00, 1, "0x05", "Read-only."),
    Register("Next Pointer", 0x01, 1, "0x70 with MSI-X, else 0", "Read-only."),
    Register("Message Control", 0x02, 2, "MMC and capability bits; MSI Enable 0, MME 0", "See the bits below."),
    Register("Message Address", 0x04, 4, "0", "Bits 1:0 read as zero."),
    Register("Message Upper Address", 0x08, 4, "0", "Bits 63:32 of the address."),
    Register("Message Data", 0x0C, 2, "0", "A message sends (data & ~(vectors - 1)) | vector."),
    Register("Mask Bits", 0x10, 4, "0 (unmasked)", "Per-vector masking: bit n masks vector n."),
    Register("Pending Bits", 0x14, 4, "0", "Read-only: bit n set while vector n is masked with a message held."),
)
MSI_CONTROL = 0x02
MSI_ADDRESS_LO = 0x04
MSI_ADDRESS_HI = 0x08
MSI_DATA = 0x0C
MSI_MASK = 0x10
MSI_PENDING = 0x14
MSI_CAP_SIZE = 0x18
MSI_CAP_SIZE_NO_MASK = 0x10

MSI_CONTROL_BITS: tuple[BitField, ...] = (
    BitField("Message Control", "MSI Enable", 0, 0, "RW", "The function sends MSI messages only while set."),
    BitField("Message Control", "Multiple Message Capable", 1, 3, "RO", "log2 of the vectors the device has."),
    BitField("Message Control", "Multiple Message Enable", 4, 6, "RW", "log2 of the vectors enabled (at most MMC)."),
    BitField("Message Control", "64-bit Address Capable", 7, 7, "RO", "1."),
    BitField("Message Control", "Per-Vector Masking Capable", 8, 8, "RO", "1 where the profile has it."),
)
MSI_ENABLE = 1 << 0
MSI_MME_SHIFT = 4
MSI_MMC_SHIFT = 1
MSI_64BIT = 1 << 7
MSI_PER_VECTOR_MASK = 1 << 8

#: The MSI-X capability (12 bytes); the table and the PBA are in BAR0 (BIR 0).
MSIX_CAP: tuple[Register, ...] = (
    Register("Capability ID", 0x00, 1, "0x11", "Read-only."),
    Register("Next Pointer", 0x01, 1, "0", "Read-only."),
    Register("Message Control", 0x02, 2, "table size - 1; Enable 0, Function Mask 0", "See the bits below."),
    Register("Table Offset/BIR", 0x04, 4, "the table's offset in BAR0 | 0", "Read-only; BIR (bits 2:0) 0."),
    Register("PBA Offset/BIR", 0x08, 4, "the PBA's offset in BAR0 | 0", "Read-only; BIR (bits 2:0) 0."),
)
MSIX_CONTROL = 0x02
MSIX_TABLE = 0x04
MSIX_PBA = 0x08
MSIX_CAP_SIZE = 12

MSIX_CONTROL_BITS: tuple[BitField, ...] = (
    BitField("Message Control", "Table Size", 0, 10, "RO", "Entries - 1."),
    BitField("Message Control", "Function Mask", 14, 14, "RW", "Masks every entry while set (messages held)."),
    BitField("Message Control", "MSI-X Enable", 15, 15, "RW", "The function sends MSI-X messages only while set."),
)
MSIX_TABLE_SIZE_MASK = 0x7FF
MSIX_FUNCTION_MASK = 1 << 14
MSIX_ENABLE = 1 << 15

# -- MSI-X table entries and IMS slots ------------------------------------------------------------------------

SLOT_SIZE = 16
SLOT: tuple[Register, ...] = (
    Register("Message Address", 0x0, 4, "0", "Bits 1:0 read as zero."),
    Register("Message Upper Address", 0x4, 4, "0", "Bits 63:32 of the address."),
    Register("Message Data", 0x8, 4, "0", "The data the message writes."),
    Register("Vector Control / control word", 0xC, 4, "0x00000001 (masked)", "See the bits below."),
)
SLOT_ADDRESS_LO = 0x0
SLOT_ADDRESS_HI = 0x4
SLOT_DATA = 0x8
SLOT_CONTROL = 0xC

SLOT_CONTROL_BITS: tuple[BitField, ...] = (
    BitField("control", "Mask", 0, 0, "RW", "MSI-X entries and IMS slots: masked while set (messages held)."),
    BitField("control", "PASID Enable", 3, 3, "RW", "IDXD IMS slots only: tag the message with the PASID."),
    BitField("control", "PASID", 12, 31, "RW", "IDXD IMS slots only: the PASID the message carries."),
)
SLOT_MASK = 1 << 0
IMS_PASID_ENABLE = 1 << 3
IMS_PASID_SHIFT = 12
IMS_PASID_MASK = 0xFFFFF << IMS_PASID_SHIFT

# -- BAR0 -----------------------------------------------------------------------------------------------------

#: BAR0 of every test device: device registers, then the MSI-X table, its PBA and the IMS store, each starting
#: on a page of its own in that order (absent regions take no page); the BAR is sized to a power of two.
BAR_PAGE = 0x1000
BAR_REGISTERS_SIZE = 0x1000
BAR_MSIX_TABLE_OFFSET = 0x2000


def bar_layout(msix_entries: int, ims_slots: int) -> dict[str, tuple[int, int]]:
    """BAR0's regions as ``name: (offset, size)`` (size 0: absent), and ``bar`` the BAR's own size."""

    def page(n: int) -> int:
        return -(-n // BAR_PAGE) * BAR_PAGE

    cursor = BAR_MSIX_TABLE_OFFSET
    table = msix_entries * SLOT_SIZE
    table_at = cursor if table else 0
    cursor += page(table)
    pba = -(-msix_entries // 64) * 8 if msix_entries else 0
    pba_at = cursor if pba else 0
    cursor += page(pba)
    ims = ims_slots * SLOT_SIZE
    ims_at = cursor if ims else 0
    cursor += page(ims)
    return {
        "registers": (0, BAR_REGISTERS_SIZE),
        "msix_table": (table_at, table),
        "msix_pba": (pba_at, pba),
        "ims": (ims_at, ims),
        "bar": (0, 1 << max(cursor - 1, 1).bit_length()),
    }


# -- the profiles -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HarnessDevice:
    """What a device of one profile has, as its guest sees it."""

    profile: DeviceProfile
    name: str
    vendor_id: int
    device_id: int
    msi_vectors: int = 0
    msi_per_vector_mask: bool = True
    msix_table_size: int = 0
    #: IMS slots of the function itself (its sub-devices' slots not counted).
    ims_slots: int = 0
    #: Sub-devices (ids 1..subdevices) and the IMS slots each owns (a partition of the device's store).
    subdevices: int = 0
    subdevice_slots: int = 0
    #: IMS slots carry PASID enable and a PASID in their control word.
    ims_pasid: bool = False
    needs_viommu: bool = False

    @property
    def ims_store(self) -> int:
        """Slots of the whole IMS store: the function's and every sub-device's."""
        return self.ims_slots + self.subdevices * self.subdevice_slots

    @property
    def capabilities(self) -> tuple[tuple[int, int], ...]:
        """The capability list, in order, as ``(offset, capability id)``."""
        caps = []
        if self.msi_vectors:
            caps.append((MSI_CAP_OFFSET, MSI_CAP_ID))
        if self.msix_table_size:
            caps.append((MSIX_CAP_OFFSET, MSIX_CAP_ID))
        return tuple(caps)

    @property
    def msi_cap_size(self) -> int:
        return MSI_CAP_SIZE if self.msi_per_vector_mask else MSI_CAP_SIZE_NO_MASK

    def bar(self) -> dict[str, tuple[int, int]]:
        return bar_layout(self.msix_table_size, self.ims_store)


DEVICES: dict[DeviceProfile, HarnessDevice] = {
    DeviceProfile.IDXD: HarnessDevice(
        DeviceProfile.IDXD,
        "idxd-like",
        0x8086,
        0x0B25,
        msix_table_size=9,
        subdevices=8,
        subdevice_slots=256,
        ims_pasid=True,
        needs_viommu=True,
    ),
    DeviceProfile.MLX5: HarnessDevice(
        DeviceProfile.MLX5, "mlx5-like", 0x15B3, 0x101D, msix_table_size=2048, ims_slots=4096
    ),
    DeviceProfile.PLAIN_MSI: HarnessDevice(DeviceProfile.PLAIN_MSI, "msi-multi", 0x1AF4, 0x10F0, msi_vectors=32),
}

# -- guest RAM ---------------------------------------------------------------------------------------------------

#: A VM's vm_config.ram_mib of RAM: from GPA 0 up to GUEST_LOW_RAM_LIMIT, the rest from GUEST_HIGH_RAM_BASE.
#: The hole between holds the interrupt window; device BARs are mapped from GUEST_MMIO_BASE, each aligned to its
#: size. Only RAM is RAM: a MEM_READ or MEM_WRITE, or a parameter block, anywhere else is not.
GUEST_LOW_RAM_LIMIT = 0xC0000000
GUEST_HIGH_RAM_BASE = 0x1_0000_0000
GUEST_INTERRUPT_WINDOW = 0xFEE00000
GUEST_INTERRUPT_WINDOW_SIZE = 0x100000
GUEST_MMIO_BASE = 0x80_0000_0000

#: What the C header carries of the device model, as ``PVMSI_HDEV_<NAME>`` (the per-profile sizes are added as
#: ``PVMSI_HDEV_<PROFILE>_<FIELD>``).
C_CONSTANTS: tuple[tuple[str, str], ...] = (
    ("CONFIG_SPACE_SIZE", "Bytes of a test device's configuration space."),
    ("STATUS", "Configuration space: the Status register."),
    ("STATUS_CAP_LIST", "Status: Capabilities List."),
    ("CAP_POINTER", "Configuration space: the Capabilities Pointer."),
    ("MSI_CAP_OFFSET", "Where the MSI capability sits."),
    ("MSIX_CAP_OFFSET", "Where the MSI-X capability sits."),
    ("MSI_CAP_ID", "Capability ID of MSI."),
    ("MSIX_CAP_ID", "Capability ID of MSI-X."),
    ("MSI_CONTROL", "MSI capability: Message Control."),
    ("MSI_ADDRESS_LO", "MSI capability: Message Address."),
    ("MSI_ADDRESS_HI", "MSI capability: Message Upper Address."),
    ("MSI_DATA", "MSI capability: Message Data."),
    ("MSI_MASK", "MSI capability: Mask Bits."),
    ("MSI_PENDING", "MSI capability: Pending Bits."),
    ("MSI_ENABLE", "MSI Message Control: MSI Enable."),
    ("MSI_MMC_SHIFT", "MSI Message Control: Multiple Message Capable, bits 3:1."),
    ("MSI_MME_SHIFT", "MSI Message Control: Multiple Message Enable, bits 6:4."),
    ("MSI_64BIT", "MSI Message Control: 64-bit Address Capable."),
    ("MSI_PER_VECTOR_MASK", "MSI Message Control: Per-Vector Masking Capable."),
    ("MSIX_CONTROL", "MSI-X capability: Message Control."),
    ("MSIX_TABLE", "MSI-X capability: Table Offset/BIR."),
    ("MSIX_PBA", "MSI-X capability: PBA Offset/BIR."),
    ("MSIX_TABLE_SIZE_MASK", "MSI-X Message Control: Table Size (entries - 1)."),
    ("MSIX_FUNCTION_MASK", "MSI-X Message Control: Function Mask."),
    ("MSIX_ENABLE", "MSI-X Message Control: MSI-X Enable."),
    ("SLOT_SIZE", "Bytes of an MSI-X table entry or IMS slot."),
    ("SLOT_ADDRESS_LO", "Entry or slot: Message Address."),
    ("SLOT_ADDRESS_HI", "Entry or slot: Message Upper Address."),
    ("SLOT_DATA", "Entry or slot: Message Data."),
    ("SLOT_CONTROL", "Entry or slot: Vector Control / control word."),
    ("SLOT_MASK", "Vector Control / control word: Mask (set after reset)."),
    ("IMS_PASID_ENABLE", "IDXD IMS control word: PASID Enable."),
    ("IMS_PASID_SHIFT", "IDXD IMS control word: the PASID, bits 31:12."),
    ("BAR_PAGE", "BAR0: each region starts on a page of this size."),
    ("BAR_MSIX_TABLE_OFFSET", "BAR0: where the MSI-X table starts (the PBA and IMS follow, each page-aligned)."),
    ("GUEST_LOW_RAM_LIMIT", "Guest RAM below 4 GiB ends here; the rest starts at GUEST_HIGH_RAM_BASE."),
    ("GUEST_HIGH_RAM_BASE", "Where guest RAM beyond GUEST_LOW_RAM_LIMIT continues."),
    ("GUEST_INTERRUPT_WINDOW", "The interrupt address window (1 MiB), never RAM."),
    ("GUEST_MMIO_BASE", "Device BARs are mapped from here."),
)
