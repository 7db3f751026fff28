"""The storage of MSI-X table entries and IMS slots: a 16-byte slot (address lo, address hi, data, vector
control with the mask in bit 0), the IDXD-like IMS entry that also carries a PASID, and a table of slots with
its pending bits; plus the checks and byte merging every register access of the device model shares.

The layouts are the spec's (:mod:`pvmsi.spec.harness_devices`, the harness appendix's "Device model").
"""

from __future__ import annotations

from pvmsi.spec import harness_devices as hd

SLOT_SIZE = hd.SLOT_SIZE


def check_register_access(offset: int, size: int, limit: int) -> None:
    """Refuse a register access that is not 1, 2, 4 or 8 bytes, naturally aligned, inside ``limit``."""
    if size not in (1, 2, 4, 8) or offset % size or offset < 0 or offset + size > limit:
        raise ValueError(f"bad register access: offset {offset:#x}, size {size} (limit {limit:#x})")


def merge_register(image: bytearray, offset: int, size: int, value: int) -> bytearray:
    """Write ``value`` (``size`` bytes, little-endian) into ``image`` at ``offset``; the image."""
    image[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return image


class MessageSlot:
    """A 16-byte MSI-X table entry or IMS slot: address lo/hi, data, vector control (bit 0 = mask)."""

    __slots__ = ("address", "control", "data")
    MASK_BIT = hd.SLOT_MASK
    #: The control-word bits the device implements (the others read as zero).
    CONTROL_BITS = MASK_BIT

    def __init__(self) -> None:
        self.address = 0
        self.data = 0
        self.control = self.MASK_BIT

    @property
    def masked(self) -> bool:
        return bool(self.control & self.MASK_BIT)

    def reset(self) -> None:
        self.address, self.data, self.control = 0, 0, self.MASK_BIT

    def image(self) -> bytearray:
        return bytearray(
            self.address.to_bytes(8, "little") + self.data.to_bytes(4, "little") + self.control.to_bytes(4, "little")
        )

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.image()[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        image = merge_register(self.image(), offset, size, value)
        self.address = int.from_bytes(image[0:8], "little") & ~0x3
        self.data = int.from_bytes(image[8:12], "little")
        self.control = int.from_bytes(image[12:16], "little") & self.CONTROL_BITS

    @property
    def pasid(self) -> int | None:
        """The PASID the device tags this entry's write with (None: no PASID prefix)."""
        return None


class PasidImsEntry(MessageSlot):
    """An IDXD-like IMS entry: control word bit 0 mask, bit 3 PASID enable, bits 31:12 PASID (the layout the
    idxd/vidxd code programs, ``IMS_PASID_ENABLE`` 0x8).  With PASID enable set the device tags the interrupt
    write with that PASID; the device itself also checks a work descriptor's PASID against it.  The IOMMU does not
    look at it (spec HV-SEC-002): it isolates nothing between sub-devices sharing the requester id (HV-SEC-010)."""

    __slots__ = ()
    PASID_ENABLE = hd.IMS_PASID_ENABLE
    PASID_SHIFT = hd.IMS_PASID_SHIFT
    CONTROL_BITS = MessageSlot.MASK_BIT | PASID_ENABLE | 0xFFFFF << PASID_SHIFT

    @property
    def pasid(self) -> int | None:
        return self.control >> self.PASID_SHIFT if self.control & self.PASID_ENABLE else None

    @classmethod
    def control_word(cls, masked: bool, pasid: int | None) -> int:
        """The control word of an entry: mask bit and, when ``pasid`` is given, PASID enable and the PASID."""
        word = int(masked)
        if pasid is not None:
            word |= cls.PASID_ENABLE | (pasid & 0xFFFFF) << cls.PASID_SHIFT
        return word


class MessageTable:
    """An array of :class:`MessageSlot` with pending bits: the MSI-X table or the IMS store.

    A slot never written since the last reset is in its reset state (zero pair, masked) and is not stored:
    :meth:`slot` makes it when it is first needed, so that a table of thousands of slots costs nothing until used.
    """

    def __init__(self, slots: int, entry: type[MessageSlot] = MessageSlot) -> None:
        self._size = slots
        self._entry = entry
        self._slots: dict[int, MessageSlot] = {}
        self.pending = 0

    @property
    def has_pasid(self) -> bool:
        """Whether the entries have a PASID field (:class:`PasidImsEntry`)."""
        return self._entry is not MessageSlot

    def __len__(self) -> int:
        return self._size

    def slot(self, index: int) -> MessageSlot:
        """Slot ``index`` (made in its reset state on first use)."""
        found = self._slots.get(index)
        if found is None:
            if not 0 <= index < self._size:
                raise IndexError(f"slot {index} outside 0..{self._size - 1}")
            found = self._slots[index] = self._entry()
        return found

    def masked(self, index: int) -> bool:
        """Whether slot ``index`` is masked (a slot never written is)."""
        found = self._slots.get(index)
        return found is None or found.masked

    @property
    def written(self) -> list[int]:
        """The slots that may differ from their reset state (every other one is zero and masked), in order."""
        return sorted(self._slots)

    @property
    def slots(self) -> list[MessageSlot]:
        """Every slot, in order."""
        return [self.slot(i) for i in range(self._size)]

    @property
    def size_bytes(self) -> int:
        return self._size * SLOT_SIZE

    def read(self, offset: int, size: int) -> int:
        check_register_access(offset, size, self.size_bytes)
        return self.slot(offset // SLOT_SIZE).read(offset % SLOT_SIZE, size)

    def write(self, offset: int, size: int, value: int) -> int:
        """Apply a register write; returns the slot index written."""
        check_register_access(offset, size, self.size_bytes)
        index = offset // SLOT_SIZE
        self.slot(index).write(offset % SLOT_SIZE, size, value)
        return index

    def copy_from(self, other: MessageTable) -> None:
        """Make every slot a copy of ``other``'s (same size)."""
        self._slots = {}
        for index, theirs in other._slots.items():
            mine = self.slot(index)
            mine.address, mine.data, mine.control = theirs.address, theirs.data, theirs.control

    def reset(self) -> None:
        self._slots.clear()
        self.pending = 0
