"""The interface every message format of the platform model implements, and the per-device table AMD-Vi, the
ITS and the IMSIC model use.

A format is the remapping or translation hardware behind one of the spec's message formats
(:mod:`pvmsi.spec.platforms`): the hypervisor programs it (:meth:`MsiFormat.alloc`, :meth:`~MsiFormat.update`,
:meth:`~MsiFormat.free`) and composes the pair naming what it programmed (:meth:`~MsiFormat.compose`); the IOMMU
resolves a device's write into the entry it names (:meth:`~MsiFormat.resolve`) and then validates the source
and delivers (:meth:`pvmsi.reference.platform.iommu.Iommu.translate`).  A *reference* (``ref``) names an
allocated block: the IRTE index for VT-d, ``device_key << 16 | index`` for the per-device tables.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod

from ..fault import FaultReason
from ..remap import Irte
from ..requester import Requester

BLOCK_SIZES = (1, 2, 4, 8, 16, 32)
INDEX_BITS = 16


def device_key(segment: int, rid: int) -> int:
    """The DeviceID the IOMMU selects a device's table by: segment and requester id (msi-map identity)."""
    return segment << 16 | rid


class MsiFormat(ABC):
    """One platform's message format and the tables behind it."""

    key: str = ""
    #: Whether the device's write names one entry per message (False: IMSIC, where it names an interrupt file).
    per_message_entries: bool = True

    @abstractmethod
    def claims(self, address: int) -> bool:
        """Whether a write to ``address`` is in this format (else the model's emulation path handles it)."""

    @abstractmethod
    def resolve(self, requester: Requester, address: int, data: int) -> tuple[int, Irte | None] | FaultReason:
        """The index and entry a write names (None: nothing there), or why the write is blocked before that."""

    @abstractmethod
    def alloc(self, entry: Irte, count: int = 1, *, tag: object = None) -> int | None:
        """Allocate a block of ``count`` entries like ``entry`` (vector + i for entry i); its ref, or None.

        ``tag`` (the device slot the pair is for) parks the block when it is freed: it goes back to that tag of
        the same source only, until the device is reset or removed (HV-QUOTA-004)."""

    @abstractmethod
    def alloc_at(self, ref: int, entry: Irte, count: int = 1, *, tag: object = None) -> bool:
        """Allocate exactly the block ``ref`` names (a migration destination); False when it is taken."""

    def unpark_source(self, segment: int, rid: int) -> int:
        """The device was reset or removed: its slots hold no stale pair, so its parked blocks are free again
        (HV-QUOTA-004); the entries released."""
        return 0

    @abstractmethod
    def update(self, ref: int, count: int, *, dest_vcpu: int, vector: int, posted: bool) -> None:
        """Retarget the block in place: entry i delivers ``vector + i`` to ``dest_vcpu`` (all present)."""

    @abstractmethod
    def update_vector(
        self, ref: int, index: int, *, dest_vcpu: int, vector: int, posted: bool, present: bool = True
    ) -> None:
        """Reprogram entry ``index`` of the block alone (HV-MSI-001): it delivers ``vector`` to ``dest_vcpu``, or,
        not ``present``, nothing (a deactivated vector, HV-ACT-005)."""

    @abstractmethod
    def free(self, ref: int) -> int:
        """Revoke and free the block ``ref``; the entries it held."""

    def revoke(self, ref: int) -> int:
        """Revoke block ``ref`` for good (spec "Events", HV-REVOKE-002): freed, and a write of its pair blocked from
        now on; where an entry names one message (VT-d, AMD-Vi, the ITS) freeing it is enough. The entries held."""
        return self.free(ref)

    @abstractmethod
    def compose(self, ref: int) -> tuple[int, int]:
        """The (address, data) pair of block ``ref`` as its target now stands."""

    @abstractmethod
    def refs_where(self, owner_vm: int | None = None, source: Requester | None = None) -> list[int]:
        """Blocks owned by ``owner_vm`` and/or whose source is ``source`` (segment and requester id)."""


class DeviceTable:
    """One device's table (AMD-Vi IRT, ITS ITT, IMSIC bookkeeping): ``size`` entries, aligned blocks.

    Single entries come from the lowest freed index, else the high-water mark (constant time); MSI blocks
    (2..32) search aligned bases.  The table is the device's own, so its occupancy tells a VM nothing of others.
    A block freed that was allocated with a tag is parked: it goes back to the same tag only, until
    :meth:`unpark` (the device was reset or removed), so a stale copy of its pair in the old slot can never
    deliver into another slot's message (HV-QUOTA-004).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[int, Irte] = {}
        self.blocks: dict[int, int] = {}
        self._freed: list[int] = []  # a min-heap of free indices below the high-water mark
        self._high = 0
        self._tags: dict[int, object] = {}  # base -> tag of a tagged block
        self._parked: dict[object, tuple[int, int]] = {}  # tag -> (base, count) of a parked block
        self._parked_index: set[int] = set()  # every index of a parked block

    def alloc(self, entry: Irte, count: int, tag: object = None) -> int | None:
        if count not in BLOCK_SIZES:
            raise ValueError(f"block size {count} is not one of {BLOCK_SIZES}")
        parked = self._parked.get(tag) if tag is not None else None
        if parked is not None and parked[1] == count:
            self._unpark_block(tag)
            self.fill(parked[0], entry, count, tag)
            return parked[0]
        if count == 1:
            while self._freed:
                base = heapq.heappop(self._freed)
                if base not in self.entries and base not in self._parked_index:
                    self.fill(base, entry, 1, tag)
                    return base
            if self._high < self.size:
                base = self._high
                self.fill(base, entry, 1, tag)
                return base
            return None
        for base in range(0, self.size, count):
            if self.free_at(base, count):
                self.fill(base, entry, count, tag)
                return base
        return None

    def free_at(self, base: int, count: int) -> bool:
        return (
            base % count == 0
            and base + count <= self.size
            and all(base + i not in self.entries and base + i not in self._parked_index for i in range(count))
        )

    def fill(self, base: int, entry: Irte, count: int, tag: object = None) -> None:
        self.blocks[base] = count
        if tag is not None:
            self._tags[base] = tag
        for i in range(count):
            self.entries[base + i] = entry._replace(vector=entry.vector + i)
        if base + count > self._high:
            for i in range(self._high, base):
                heapq.heappush(self._freed, i)
            self._high = base + count

    def free(self, base: int) -> int:
        count = self.blocks.pop(base)
        for i in range(count):
            del self.entries[base + i]
        tag = self._tags.pop(base, None)
        if tag is not None:
            old = self._parked.get(tag)
            if old is not None:  # one parked block per tag: the older one is free again
                self._unpark_block(tag)
            self._parked[tag] = (base, count)
            self._parked_index.update(range(base, base + count))
            return count
        for i in range(count):
            heapq.heappush(self._freed, base + i)
        return count

    def available_at(self, base: int, count: int, tag: object = None) -> bool:
        """Whether block ``base`` can be taken for ``tag``: free, or parked for that very tag (a migration
        destination re-programs the same slot); a parked block so taken is no longer parked."""
        if self.free_at(base, count):
            return True
        if tag is not None and self._parked.get(tag) == (base, count):
            self._unpark_block(tag)
            return True
        return False

    def _unpark_block(self, tag: object) -> tuple[int, int]:
        base, count = self._parked.pop(tag)
        self._parked_index.difference_update(range(base, base + count))
        return base, count

    def unpark(self) -> int:
        """Every parked block is free again (the device was reset or removed); the entries released."""
        released = 0
        for tag in list(self._parked):
            base, count = self._unpark_block(tag)
            for i in range(count):
                heapq.heappush(self._freed, base + i)
            released += count
        return released


class PerDeviceFormat(MsiFormat):
    """A format whose tables are per device, selected by the write's DeviceID (AMD-Vi, ITS, IMSIC)."""

    table_size = 2048

    def __init__(self) -> None:
        self.tables: dict[int, DeviceTable] = {}

    @staticmethod
    def split(ref: int) -> tuple[int, int]:
        return ref >> INDEX_BITS, ref & ((1 << INDEX_BITS) - 1)

    def table_of(self, segment: int, rid: int) -> DeviceTable | None:
        return self.tables.get(device_key(segment, rid))

    def _table(self, source: Requester) -> tuple[int, DeviceTable]:
        key = device_key(source.segment, source.rid)
        table = self.tables.get(key)
        if table is None:
            table = self.tables[key] = DeviceTable(self.table_size)
            self.table_created(key)
        return key, table

    def table_created(self, key: int) -> None:
        """A device's first entry: a format maps what the device needs (ITS: the doorbell in its SMMU)."""

    def alloc(self, entry: Irte, count: int = 1, *, tag: object = None) -> int | None:
        key, table = self._table(entry.source)
        base = table.alloc(entry, count, tag)
        if base is None:
            return None
        self.programmed(key, table, base)
        return key << INDEX_BITS | base

    def alloc_at(self, ref: int, entry: Irte, count: int = 1, *, tag: object = None) -> bool:
        key, table = self._table(entry.source)
        _, base = self.split(ref)
        if self.split(ref)[0] != key or not table.available_at(base, count, tag):
            return False
        table.fill(base, entry, count, tag)
        self.programmed(key, table, base)
        return True

    def update(self, ref: int, count: int, *, dest_vcpu: int, vector: int, posted: bool) -> None:
        key, base = self.split(ref)
        table = self.tables[key]
        self.unprogrammed(key, table, base)
        for i in range(count):
            old = table.entries[base + i]
            table.entries[base + i] = old._replace(dest_vcpu=dest_vcpu, vector=vector + i, posted=posted, present=True)
        self.programmed(key, table, base)

    def update_vector(
        self, ref: int, index: int, *, dest_vcpu: int, vector: int, posted: bool, present: bool = True
    ) -> None:
        key, base = self.split(ref)
        table = self.tables[key]
        self.unprogrammed(key, table, base)
        old = table.entries[base + index]
        table.entries[base + index] = old._replace(dest_vcpu=dest_vcpu, vector=vector, posted=posted, present=present)
        self.programmed(key, table, base)

    def free(self, ref: int) -> int:
        key, base = self.split(ref)
        table = self.tables[key]
        self.unprogrammed(key, table, base)
        return table.free(base)

    def unpark_source(self, segment: int, rid: int) -> int:
        table = self.table_of(segment, rid)
        return 0 if table is None else table.unpark()

    def programmed(self, key: int, table: DeviceTable, base: int) -> None:
        """Block ``base`` now targets its entries' vCPU (IMSIC maps the interrupt file)."""

    def unprogrammed(self, key: int, table: DeviceTable, base: int) -> None:
        """Block ``base`` stops targeting its vCPU (IMSIC unmaps the interrupt file if no other block needs it)."""

    def entry(self, ref: int) -> Irte:
        key, base = self.split(ref)
        return self.tables[key].entries[base]

    def refs_where(self, owner_vm: int | None = None, source: Requester | None = None) -> list[int]:
        found = []
        for key, table in self.tables.items():
            for base in table.blocks:
                e = table.entries[base]
                if owner_vm is not None and e.owner_vm != owner_vm:
                    continue
                if source is not None and (e.source.segment, e.source.rid) != (source.segment, source.rid):
                    continue
                found.append(key << INDEX_BITS | base)
        return sorted(found)

    def lookup(self, requester: Requester, index: int) -> tuple[int, Irte | None] | FaultReason:
        """The entry ``index`` of the requester's own table (source validation by DeviceID)."""
        table = self.table_of(requester.segment, requester.rid)
        if table is None:
            return FaultReason.NOT_PRESENT
        if index >= table.size:
            return FaultReason.INDEX_OUT_OF_RANGE
        return index, table.entries.get(index)
