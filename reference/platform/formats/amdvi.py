"""AMD-Vi interrupt remapping (spec platform ``amd-vi``; AMD IOMMU specification 48882, 2.2.5).

The address stays an ordinary 0xFEExxxxx interrupt address; the data indexes the interrupt remapping table of
the device table entry the write's DeviceID selects (DTE IntTab, IntTabLen up to 2048 entries: data[10:0]).  A
device can only name entries of its own table: source validation by DeviceID.  The model's emulated MSI path
(:mod:`..legacy`) keeps its host-side entries in the VT-d-style table with bit 4 set; pvmsi's pairs keep bit 4
clear, which is how :meth:`AmdVi.claims` tells them apart (a model artifact, not an AMD-Vi rule).
"""

from __future__ import annotations

from pvmsi.spec.platforms import compose_fields, parse_fields, platform

from ..fault import FaultReason
from ..msi_format import FORMAT_REMAPPABLE, is_interrupt_address
from ..remap import Irte
from ..requester import Requester
from .base import PerDeviceFormat

LAYOUT = platform("amd-vi")


class AmdVi(PerDeviceFormat):
    """Per-device interrupt remapping tables indexed by data[10:0]."""

    key = "amd-vi"
    table_size = 2048

    def claims(self, address: int) -> bool:
        return is_interrupt_address(address) and not address & FORMAT_REMAPPABLE

    def resolve(self, requester: Requester, address: int, data: int) -> tuple[int, Irte | None] | FaultReason:
        if parse_fields(LAYOUT.address, address) is None:
            return FaultReason.NOT_INTERRUPT_ADDRESS
        fields = parse_fields(LAYOUT.data, data)
        if fields is None:
            return FaultReason.RESERVED_BITS
        return self.lookup(requester, fields["index"])

    def compose(self, ref: int) -> tuple[int, int]:
        _, index = self.split(ref)
        return compose_fields(LAYOUT.address), compose_fields(LAYOUT.data, index=index)
