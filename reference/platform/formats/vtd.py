"""Intel VT-d remappable format over the platform's one interrupt-remapping table (spec platform ``vtd``): the
encoding is :mod:`..msi_format` (VT-d 5.1.2.2), the table :class:`..remap.RemappingTable`."""

from __future__ import annotations

from ..fault import FaultReason
from ..msi_format import MessageFormatError, compose, parse
from ..remap import Irte, RemappingTable
from ..requester import Requester
from .base import MsiFormat


class Vtd(MsiFormat):
    """VT-d: the handle (and sub-handle) in the pair index the remapping unit's table."""

    key = "vtd"

    def __init__(self, table: RemappingTable) -> None:
        self.table = table

    def claims(self, address: int) -> bool:
        return True

    def resolve(self, requester: Requester, address: int, data: int) -> tuple[int, Irte | None] | FaultReason:
        try:
            index = parse(address, data)
        except MessageFormatError as error:
            return error.reason
        if index >= self.table.capacity:
            return FaultReason.INDEX_OUT_OF_RANGE
        return index, self.table.get(index)

    def alloc(self, entry: Irte, count: int = 1, *, tag: object = None) -> int | None:
        return self.table.alloc(entry, count, tag=tag)

    def alloc_at(self, ref: int, entry: Irte, count: int = 1, *, tag: object = None) -> bool:
        return self.table.alloc_at(ref, entry, count, tag=tag)

    def unpark_source(self, segment: int, rid: int) -> int:
        return self.table.unpark_source(segment, rid)

    def update(self, ref: int, count: int, *, dest_vcpu: int, vector: int, posted: bool) -> None:
        for i in range(count):
            self.table.update(ref + i, dest_vcpu=dest_vcpu, vector=vector + i, posted=posted, present=True)

    def update_vector(
        self, ref: int, index: int, *, dest_vcpu: int, vector: int, posted: bool, present: bool = True
    ) -> None:
        self.table.update(ref + index, dest_vcpu=dest_vcpu, vector=vector, posted=posted, present=present)

    def free(self, ref: int) -> int:
        return self.table.free(ref)

    def compose(self, ref: int) -> tuple[int, int]:
        return compose(ref)

    def refs_where(self, owner_vm: int | None = None, source: Requester | None = None) -> list[int]:
        return [base for base, _count in self.table.blocks_where(owner_vm=owner_vm, source=source)]
