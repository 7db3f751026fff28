"""The x86-style interrupt-remapping table: 65,536 entries (IRTEs) and their allocator.

An entry (:class:`Irte`) says where a remappable-format interrupt request goes (owner VM, destination vCPU,
vector, posted or not) and who may send it (source validation: segment and 16-bit requester id, never a
PASID).  VT-d section 9.10 "Interrupt Remapping Table Entry (IRTE) for Remapped Interrupts"
is the hardware counterpart; the model keeps the fields pvmsi needs.

Allocation hands out single entries or power-of-two aligned blocks of 2..32 consecutive entries (multi-message
MSI: the device replaces the low bits of the data, so the block must be aligned).  Its cost does not grow with
occupancy: the table is a two-level bitmap.  Level 0 is one 64-bit free mask per word of 64 entries (bit set =
entry free).  Level 1 is, per block size, one bit per word that says "this word holds a free aligned block of
that size" (blocks never straddle words since 32 divides 64).  Allocation takes the lowest set bit of the
level-1 summary, then the lowest aligned free run inside that word: a fixed number of big-integer operations
whatever the occupancy.  ``python -m pvmsi.reference.platform.remap_bench`` measures it.
"""

from __future__ import annotations

from typing import NamedTuple

from .requester import Requester

TABLE_ENTRIES = 65536
BLOCK_SIZES = (1, 2, 4, 8, 16, 32)
_WORD = 64
_FULL_WORD = (1 << _WORD) - 1
_LOW_HALF = (1 << (_WORD // 2)) - 1
_ALL_SIZES = 63  # size flags with every block size free


def _aligned_mask(size: int) -> int:
    return sum(1 << bit for bit in range(0, _WORD, size))


_ALIGNED = {size: _aligned_mask(size) for size in BLOCK_SIZES}
_A2, _A4, _A8, _A16, _A32 = (_ALIGNED[size] for size in BLOCK_SIZES[1:])


def _free_runs(free: int) -> tuple[int, int, int, int, int, int]:
    """Per block size: the bits of ``free`` where an aligned run of that many free entries starts."""
    m2 = free & (free >> 1)
    m4 = m2 & (m2 >> 2)
    m8 = m4 & (m4 >> 4)
    m16 = m8 & (m8 >> 8)
    m32 = m16 & (m16 >> 16)
    return (
        free,
        m2 & _ALIGNED[2],
        m4 & _ALIGNED[4],
        m8 & _ALIGNED[8],
        m16 & _ALIGNED[16],
        m32 & _ALIGNED[32],
    )


def _size_flags(free: int) -> int:
    """Bit ``i`` set when the word holds a free aligned block of ``BLOCK_SIZES[i]`` entries.

    No aligned block of size 2k without one of size k: stop at the first size that is missing.
    """
    if not free:
        return 0
    if free & _LOW_HALF == _LOW_HALF or free >> 32 == _LOW_HALF:
        return _ALL_SIZES  # a free aligned 32-entry block holds free blocks of every smaller size
    m = free & (free >> 1)
    if not m & _A2:
        return 1
    m &= m >> 2
    if not m & _A4:
        return 3
    m &= m >> 4
    if not m & _A8:
        return 7
    m &= m >> 8
    if not m & _A16:
        return 15
    m &= m >> 16
    return _ALL_SIZES if m & _A32 else 31


_SIZE_INDEX = {size: i for i, size in enumerate(BLOCK_SIZES)}


class Irte(NamedTuple):
    """One interrupt-remapping table entry (immutable; the table replaces it on update).

    ``source`` is the only requester allowed to use the entry: its segment and requester id must match (VT-d
    IRTE SID with SQ=00b, SVT=01b); its PASID is always ``None`` (no IOMMU checks one on an interrupt).
    ``generation`` is stamped by the table: it counts the allocations of this index, so a stale reference to a
    reused index can be told apart.
    The table checks ``vector`` (0..255) and ``dest_vcpu`` (>= 0) when an entry is stored.
    """

    owner_vm: int
    dest_vcpu: int
    vector: int
    source: Requester
    posted: bool = False
    present: bool = True
    generation: int = 0


def _check_target(dest_vcpu: int, vector: int) -> None:
    if not 0 <= vector <= 0xFF:
        raise ValueError(f"vector {vector} is not an 8-bit value")
    if dest_vcpu < 0:
        raise ValueError(f"destination vCPU {dest_vcpu} is negative")


class RemappingTable:
    """The interrupt-remapping table and its allocator (sans-I/O, single-threaded)."""

    def __init__(self, entries: int = TABLE_ENTRIES) -> None:
        if entries <= 0 or entries % _WORD or entries > TABLE_ENTRIES:
            raise ValueError(f"table size {entries} must be a multiple of {_WORD} up to {TABLE_ENTRIES}")
        self._capacity = entries
        words = entries // _WORD
        self._free: list[int] = [_FULL_WORD] * words
        self._flags: list[int] = [_ALL_SIZES] * words
        all_words = (1 << words) - 1
        self._summary: list[int] = [all_words for _ in BLOCK_SIZES]
        self._entries: list[Irte | None] = [None] * entries
        self._generation: list[int] = [0] * entries
        self._blocks: dict[int, int] = {}
        self._used = 0

    # -- queries -------------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Number of entries in the table."""
        return self._capacity

    @property
    def occupancy(self) -> int:
        """Entries currently allocated."""
        return self._used

    @property
    def free_entries(self) -> int:
        """Entries currently free."""
        return self._capacity - self._used

    def get(self, index: int) -> Irte | None:
        """The entry at ``index``, or ``None`` when it is free (or out of range)."""
        if 0 <= index < self._capacity:
            return self._entries[index]
        return None

    def generation(self, index: int) -> int:
        """How many times ``index`` has been allocated."""
        self._check_index(index)
        return self._generation[index]

    def is_allocated(self, index: int) -> bool:
        """Whether ``index`` belongs to an allocated block."""
        self._check_index(index)
        return not (self._free[index >> 6] >> (index & 63)) & 1

    def block_of(self, index: int) -> tuple[int, int] | None:
        """``(base, count)`` of the allocated block holding ``index``, or ``None`` when it is free."""
        self._check_index(index)
        for size in BLOCK_SIZES:
            base = index & ~(size - 1)
            count = self._blocks.get(base)
            if count is not None and base + count > index:
                return base, count
        return None

    def blocks(self) -> dict[int, int]:
        """Every allocated block, ``base -> count`` (a copy)."""
        return dict(self._blocks)

    def blocks_where(self, owner_vm: int | None = None, source: Requester | None = None) -> list[tuple[int, int]]:
        """Allocated blocks whose first entry belongs to ``owner_vm`` and/or has ``source`` (segment + rid)."""
        found = []
        for base, count in self._blocks.items():
            entry = self._entries[base]
            assert entry is not None
            if owner_vm is not None and entry.owner_vm != owner_vm:
                continue
            if source is not None and (entry.source.segment, entry.source.rid) != (source.segment, source.rid):
                continue
            found.append((base, count))
        return sorted(found)

    # -- allocation ----------------------------------------------------------------------------------------
    def can_alloc(self, count: int = 1) -> bool:
        """Whether :meth:`alloc` of ``count`` entries would find a free aligned block now."""
        size_index = _SIZE_INDEX.get(count)
        return size_index is not None and bool(self._summary[size_index])

    def alloc(self, entry: Irte, count: int = 1) -> int | None:
        """Allocate ``count`` consecutive entries (1, or a power of two up to 32, aligned to ``count``).

        Entry ``base + i`` is ``entry`` with vector ``entry.vector + i``.  Returns the first index, or
        ``None`` when no free (aligned) block of that size is left.
        """
        size_index = _SIZE_INDEX.get(count)
        if size_index is None:
            raise ValueError(f"block size {count} is not one of {BLOCK_SIZES}")
        vector = entry.vector
        if not 0 <= vector <= 0x100 - count or entry.dest_vcpu < 0:
            _check_target(entry.dest_vcpu, vector)
            raise ValueError(f"vectors {vector}..{vector + count - 1} exceed 255")
        summary = self._summary[size_index]
        if not summary:
            return None
        word = (summary & -summary).bit_length() - 1
        free = self._free[word]
        runs = free if count == 1 else _free_runs(free)[size_index]
        bit = (runs & -runs).bit_length() - 1
        free &= ~(((1 << count) - 1) << bit)
        if self._flags[word] == _ALL_SIZES and (free & _LOW_HALF == _LOW_HALF or free >> 32 == _LOW_HALF):
            self._free[word] = free  # a free 32-entry half is left: no size flag changes (the sparse case)
        else:
            self._set_word(word, free)
        base = word * _WORD + bit
        self._fill(base, count, entry)
        return base

    def alloc_at(self, base: int, entry: Irte, count: int = 1) -> bool:
        """Allocate exactly ``[base, base + count)`` if it is free: what a live-migration destination does to
        keep a VM's address/data pairs valid (HV-MIG-002).  Returns whether the entries were free."""
        if _SIZE_INDEX.get(count) is None or base % count or not 0 <= base < self._capacity:
            raise ValueError(f"block {base}+{count} is not an aligned block of {BLOCK_SIZES}")
        _check_target(entry.dest_vcpu, entry.vector)
        word, bit = base // _WORD, base % _WORD
        mask = ((1 << count) - 1) << bit
        free = self._free[word]
        if free & mask != mask:
            return False
        self._set_word(word, free & ~mask)
        self._fill(base, count, entry)
        return True

    def _fill(self, base: int, count: int, entry: Irte) -> None:
        self._blocks[base] = count
        self._used += count
        generations = self._generation
        entries = self._entries
        for i, index in enumerate(range(base, base + count)):
            generations[index] += 1
            entries[index] = entry._replace(vector=entry.vector + i, generation=generations[index])

    def free(self, base: int) -> int:
        """Free the block starting at ``base``; returns how many entries it held."""
        count = self._blocks.pop(base, None)
        if count is None:
            raise KeyError(f"index {base} is not the first entry of an allocated block")
        for i in range(base, base + count):
            self._entries[i] = None
        word = base >> 6
        free = self._free[word] | ((1 << count) - 1) << (base & 63)
        if self._flags[word] == _ALL_SIZES:
            self._free[word] = free  # every size was free already: freeing more changes no flag
        else:
            self._set_word(word, free)
        self._used -= count
        return count

    def update(
        self,
        index: int,
        *,
        dest_vcpu: int | None = None,
        vector: int | None = None,
        posted: bool | None = None,
        present: bool | None = None,
    ) -> Irte:
        """Change an allocated entry in place (retarget, mask); source, owner and generation stay."""
        current = self._entries[index] if 0 <= index < self._capacity else None
        if current is None:
            raise KeyError(f"index {index} is not allocated")
        new = current._replace(
            dest_vcpu=current.dest_vcpu if dest_vcpu is None else dest_vcpu,
            vector=current.vector if vector is None else vector,
            posted=current.posted if posted is None else posted,
            present=current.present if present is None else present,
        )
        _check_target(new.dest_vcpu, new.vector)
        self._entries[index] = new
        return new

    # -- internals -----------------------------------------------------------------------------------------
    def _set_word(self, word: int, free: int) -> None:
        self._free[word] = free
        old = self._flags[word]
        new = _size_flags(free)
        if old != new:
            self._flags[word] = new
            changed = old ^ new
            bit = 1 << word
            summary = self._summary
            for i in range(len(BLOCK_SIZES)):
                if changed >> i & 1:
                    summary[i] ^= bit

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._capacity:
            raise IndexError(f"index {index} outside the table (0..{self._capacity - 1})")
