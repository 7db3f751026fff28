"""PCI identities: a bus/device/function address and the requester tag a device puts on its memory writes.

A PCI function is named by segment (domain), bus and devfn (device in bits 7:3, function in bits 2:0).  On the
bus, its memory writes carry the 16-bit *requester id* ``bus << 8 | devfn``; the IOMMU also knows the segment
the write arrived on, and a write may carry a PASID (Process Address Space ID, 20 bits) when it is issued on
behalf of a sub-device.  The triple (segment, requester id, PASID or none) is what source validation checks.
"""

from __future__ import annotations

from dataclasses import dataclass

PASID_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True, order=True)
class Bdf:
    """A PCI function address: segment, bus and devfn (host or guest view)."""

    segment: int
    bus: int
    devfn: int

    def __post_init__(self) -> None:
        if not 0 <= self.segment <= 0xFFFF:
            raise ValueError(f"segment {self.segment:#x} is not a 16-bit value")
        if not 0 <= self.bus <= 0xFF:
            raise ValueError(f"bus {self.bus:#x} is not an 8-bit value")
        if not 0 <= self.devfn <= 0xFF:
            raise ValueError(f"devfn {self.devfn:#x} is not an 8-bit value")

    @classmethod
    def of(cls, segment: int, bus: int, device: int, function: int) -> Bdf:
        """The address of ``segment:bus:device.function``."""
        if not 0 <= device < 32 or not 0 <= function < 8:
            raise ValueError(f"device {device} / function {function} out of range")
        return cls(segment, bus, device << 3 | function)

    @property
    def rid(self) -> int:
        """The 16-bit requester id: ``bus << 8 | devfn``."""
        return self.bus << 8 | self.devfn

    def requester(self, pasid: int | None = None) -> Requester:
        """The requester tag of a memory write issued by this function (with ``pasid`` for a sub-device)."""
        return Requester(self.segment, self.rid, pasid)

    def __str__(self) -> str:
        return f"{self.segment:04x}:{self.bus:02x}:{self.devfn >> 3:02x}.{self.devfn & 7}"


@dataclass(frozen=True, slots=True)
class Requester:
    """Who issued a memory write: segment, 16-bit requester id and the PASID (``None``: no PASID prefix)."""

    segment: int
    rid: int
    pasid: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.segment <= 0xFFFF:
            raise ValueError(f"segment {self.segment:#x} is not a 16-bit value")
        if not 0 <= self.rid <= 0xFFFF:
            raise ValueError(f"requester id {self.rid:#x} is not a 16-bit value")
        if self.pasid is not None and not 0 <= self.pasid < PASID_LIMIT:
            raise ValueError(f"PASID {self.pasid:#x} is not a 20-bit value")

    def __str__(self) -> str:
        bdf = f"{self.segment:04x}:{self.rid >> 8:02x}:{(self.rid >> 3) & 0x1F:02x}.{self.rid & 7}"
        return bdf if self.pasid is None else f"{bdf} pasid {self.pasid:#x}"
