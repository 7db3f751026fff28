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
whatever the occupancy (the word arithmetic is :mod:`.remap_bitmap`).
``python -m pvmsi.reference.platform.remap_bench`` measures it.

Shares (spec HV-QUOTA-001..003): the host gives each VM a share of the table, a range of entries no other VM
allocates from (:meth:`RemappingTable.set_share`), with a limit on how many it may hold at once.  An entry whose
owner has a share is allocated inside it, and refused once the owner holds its limit, whoever asks: the
hypervisor for a pvmsi message or the MSI emulator for an emulated MSI/MSI-X vector (HV-QUOTA-002).  Inside a
share the lowest free block is taken, so the indices a VM gets depend only on its own allocations and frees,
never on other VMs' (HV-QUOTA-003).  The search is restricted to the share's words; a share boundary may fall
inside a word (shares are multiples of 32 entries), so at most two edge words are masked.

Stale copies (HV-QUOTA-004): a block allocated with a ``tag`` (the hypervisor passes the device slot the pair is
for) is *parked* when freed: not present (its pair is blocked, HV-FREE-002), still charged to the share, and
reissued only for the same tag of the same requester id, or released when the device is reset or removed
(:meth:`RemappingTable.unpark_source`).  So the copy of a freed pair left in a slot can never deliver into a
message of another slot of the same device.
"""

from __future__ import annotations

from typing import NamedTuple

from .remap_bitmap import ALL_SIZES, BLOCK_SIZES, FULL_WORD, LOW_HALF, SIZE_INDEX, WORD, free_runs, size_flags
from .requester import Requester

TABLE_ENTRIES = 65536
#: Shares are whole multiples of the largest block, so an aligned block never straddles two shares.
SHARE_GRANULE = BLOCK_SIZES[-1]


class Share(NamedTuple):
    """A VM's share of the table: entries ``[first, first + size)``, at most ``limit`` of them held at once."""

    first: int
    size: int
    limit: int

    @property
    def end(self) -> int:
        return self.first + self.size


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
        if entries <= 0 or entries % WORD or entries > TABLE_ENTRIES:
            raise ValueError(f"table size {entries} must be a multiple of {WORD} up to {TABLE_ENTRIES}")
        self._capacity = entries
        words = entries // WORD
        self._free: list[int] = [FULL_WORD] * words
        self._flags: list[int] = [ALL_SIZES] * words
        all_words = (1 << words) - 1
        self._summary: list[int] = [all_words for _ in BLOCK_SIZES]
        self._entries: list[Irte | None] = [None] * entries
        self._generation: list[int] = [0] * entries
        self._blocks: dict[int, int] = {}
        self._used = 0
        self._shares: dict[int, Share] = {}
        #: Per owner with a share: the words it spans (a summary mask) and the free-bit mask of its edge words.
        self._share_words: dict[int, tuple[int, dict[int, int]]] = {}
        self._held: dict[int, int] = {}
        self._in_shares = 0  # the words some share spans
        self._tags: dict[int, object] = {}  # base -> tag of a tagged allocated block
        #: Parked blocks: base -> (owner, source, tag, count), and (owner, source, tag) -> base.
        self._parked: dict[int, tuple[int, tuple[int, int], object, int]] = {}
        self._parked_by_tag: dict[tuple[int, tuple[int, int], object], int] = {}

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

    def share(self, owner: int) -> Share | None:
        """The share of VM ``owner``, or ``None`` when it allocates from the whole table."""
        return self._shares.get(owner)

    def shares(self) -> dict[int, Share]:
        """Every share, by owner (a copy)."""
        return dict(self._shares)

    def held(self, owner: int) -> int:
        """Entries VM ``owner`` holds in its share, parked ones included (0 without a share)."""
        return self._held.get(owner, 0)

    @property
    def parked_entries(self) -> int:
        """Entries freed but parked (HV-QUOTA-004): not present, not free."""
        return sum(p[3] for p in self._parked.values())

    def parked(self, owner: int | None = None) -> dict[int, int]:
        """Parked blocks (of ``owner``), ``base -> count``."""
        return {b: p[3] for b, p in self._parked.items() if owner is None or p[0] == owner}

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
    def can_alloc(self, count: int = 1, owner: int | None = None) -> bool:
        """Whether :meth:`alloc` of ``count`` entries (for VM ``owner``: in its share) would succeed now."""
        size_index = SIZE_INDEX.get(count)
        if size_index is None:
            return False
        share = self._shares.get(owner) if owner is not None else None
        if owner is None or share is None:
            return bool(self._summary[size_index])
        return self._held.get(owner, 0) + count <= share.limit and self._find(owner, size_index, count) is not None

    def alloc(self, entry: Irte, count: int = 1, *, outside_share: bool = False, tag: object = None) -> int | None:
        """Allocate ``count`` consecutive entries (1, or a power of two up to 32, aligned to ``count``).

        Entry ``base + i`` is ``entry`` with vector ``entry.vector + i``.  When its owner has a share, the block
        is taken inside it and counted against its limit (HV-QUOTA-001, HV-QUOTA-002); ``outside_share`` takes it
        anywhere, uncounted, as a host that allocated for the VM without charging it would (only the faulty
        implementations of conformance do).  Returns the first index, or ``None`` when no free (aligned) block of
        that size is left, or the owner holds its limit.  ``tag`` (hashable: the slot the pair is for) parks the
        block when it is freed; a block parked under the same tag and source goes back to it, to nobody else
        (HV-QUOTA-004).
        """
        size_index = SIZE_INDEX.get(count)
        if size_index is None:
            raise ValueError(f"block size {count} is not one of {BLOCK_SIZES}")
        vector = entry.vector
        if not 0 <= vector <= 0x100 - count or entry.dest_vcpu < 0:
            _check_target(entry.dest_vcpu, vector)
            raise ValueError(f"vectors {vector}..{vector + count - 1} exceed 255")
        owner = entry.owner_vm
        if self._shares and not outside_share and owner in self._shares:
            source = (entry.source.segment, entry.source.rid)
            if self._parked and tag is not None:
                # Only the slot that parked a block gets it back: any other user, even one of another requester
                # id, could later free it and hand it on to a sibling slot of the first (the fuzzer found that).
                reuse = self._parked_by_tag.get((owner, source, tag))
                if reuse is not None and self._parked[reuse][3] == count:
                    self._unpark(reuse)
                    self._blocks[reuse] = count
                    self._fill(reuse, count, entry, tag, fresh=False)
                    return reuse
            if self._held[owner] + count > self._shares[owner].limit:
                return None
            found = self._find(owner, size_index, count)
            if found is None:
                return None
            word, bit = found
            self._held[owner] += count
            free = self._free[word] & ~(((1 << count) - 1) << bit)
            self._set_word(word, free)
            base = word * WORD + bit
            self._fill(base, count, entry, tag)
            return base
        summary = self._summary[size_index]
        if self._shares:
            summary &= ~self._in_shares  # an owner without a share (or uncharged) never takes a VM's entries
        if not summary:
            return None
        word = (summary & -summary).bit_length() - 1
        free = self._free[word]
        runs = free if count == 1 else free_runs(free)[size_index]
        bit = (runs & -runs).bit_length() - 1
        free &= ~(((1 << count) - 1) << bit)
        if self._flags[word] == ALL_SIZES and (free & LOW_HALF == LOW_HALF or free >> 32 == LOW_HALF):
            self._free[word] = free  # a free 32-entry half is left: no size flag changes (the sparse case)
        else:
            self._set_word(word, free)
        base = word * WORD + bit
        self._fill(base, count, entry)
        return base

    def alloc_at(self, base: int, entry: Irte, count: int = 1, *, tag: object = None) -> bool:
        """Allocate exactly ``[base, base + count)`` if it is free: what a live-migration destination does to
        keep a VM's address/data pairs valid (HV-MIG-002).  Returns whether the entries were free."""
        if SIZE_INDEX.get(count) is None or base % count or not 0 <= base < self._capacity:
            raise ValueError(f"block {base}+{count} is not an aligned block of {BLOCK_SIZES}")
        _check_target(entry.dest_vcpu, entry.vector)
        parked = self._parked.get(base)
        if parked is not None and parked[0] == entry.owner_vm and parked[3] == count:
            self._release_parked(base)  # the VM's own parked block (a migration re-creating its entries)
        word, bit = base // WORD, base % WORD
        mask = ((1 << count) - 1) << bit
        free = self._free[word]
        if free & mask != mask:
            return False
        self._set_word(word, free & ~mask)
        share = self._shares.get(entry.owner_vm)
        if share is not None and share.first <= base < share.end:
            self._held[entry.owner_vm] += count
        self._fill(base, count, entry, tag)
        return True

    def _find(self, owner: int, size_index: int, count: int) -> tuple[int, int] | None:
        """The lowest free aligned block of ``count`` entries inside ``owner``'s share: (word, bit), or None."""
        words, edges = self._share_words[owner]
        candidates = self._summary[size_index] & words
        while candidates:
            word = (candidates & -candidates).bit_length() - 1
            free = self._free[word] & edges.get(word, FULL_WORD)
            runs = free if count == 1 else free_runs(free)[size_index]
            if runs:
                return word, (runs & -runs).bit_length() - 1
            candidates &= candidates - 1  # an edge word whose free block lies in the neighbouring share
        return None

    def _update_in_shares(self) -> None:
        mask = 0
        for words, _edges in self._share_words.values():
            mask |= words
        self._in_shares = mask

    # -- shares --------------------------------------------------------------------------------------------
    def set_share(self, owner: int, first: int, size: int, limit: int | None = None) -> Share:
        """Give VM ``owner`` entries ``[first, first + size)`` (multiples of :data:`SHARE_GRANULE`), holding at most
        ``limit`` of them (default: all).  The range must be free and overlap no other share; a VM that already
        has a share may only change its limit (the range given again)."""
        if size < 0 or first % SHARE_GRANULE or size % SHARE_GRANULE or not 0 <= first <= first + size <= self.capacity:
            raise ValueError(f"share {first}+{size} is not a range of whole {SHARE_GRANULE}-entry granules")
        limit = size if limit is None else limit
        if not 0 <= limit <= size:
            raise ValueError(f"share limit {limit} outside 0..{size}")
        current = self._shares.get(owner)
        if current is not None:
            if (current.first, current.size) != (first, size):
                raise ValueError(f"VM {owner} already has the share {current}")
            self._shares[owner] = new = Share(first, size, limit)
            return new
        for other in self._shares.values():
            if size and first < other.end and other.first < first + size:
                raise ValueError(f"share {first}+{size} overlaps {other}")
        if any(self.is_allocated(i) for i in range(first, first + size)):
            raise ValueError(f"share {first}+{size} holds allocated entries")
        words = 0
        edges: dict[int, int] = {}
        for word in range(first // WORD, (first + size - 1) // WORD + 1):
            words |= 1 << word
            lo, hi = max(first, word * WORD) - word * WORD, min(first + size, (word + 1) * WORD) - word * WORD
            if (lo, hi) != (0, WORD):
                edges[word] = ((1 << hi) - 1) & ~((1 << lo) - 1)
        self._shares[owner] = share = Share(first, size, limit)
        self._share_words[owner] = (words, edges)
        self._held[owner] = 0
        self._update_in_shares()
        return share

    def drop_share(self, owner: int) -> None:
        """Take VM ``owner``'s share back (it must hold nothing in it)."""
        if self._held.get(owner):
            raise ValueError(f"VM {owner} still holds {self._held[owner]} entries of its share")
        self._shares.pop(owner, None)
        self._share_words.pop(owner, None)
        self._held.pop(owner, None)
        self._update_in_shares()

    def _unpark(self, base: int) -> tuple[int, tuple[int, int], object, int]:
        parked = self._parked.pop(base)
        del self._parked_by_tag[parked[0], parked[1], parked[2]]
        return parked

    def _release_parked(self, base: int) -> None:
        """Really free a parked block (its device was reset, or its VM is leaving)."""
        owner, _source, _tag, count = self._unpark(base)
        self._blocks[base] = count
        self._entries[base] = Irte(owner, 0, 0, Requester(0, 0), present=False)  # for free()'s share accounting
        self.free(base)

    def unpark_source(self, segment: int, rid: int) -> int:
        """Free every block parked by requester ``segment:rid``: its device was reset (FLR, VM reset) or removed,
        so no stale copy is left in it (HV-QUOTA-004).  Returns the entries freed."""
        bases = [b for b, p in self._parked.items() if p[1] == (segment, rid)]
        counts = [self._parked[b][3] for b in bases]
        for base in bases:
            self._release_parked(base)
        return sum(counts)

    def unpark_owner(self, owner: int) -> int:
        """Free every block VM ``owner`` has parked (it is destroyed).  Returns the entries freed."""
        bases = [b for b, p in self._parked.items() if p[0] == owner]
        counts = [self._parked[b][3] for b in bases]
        for base in bases:
            self._release_parked(base)
        return sum(counts)

    def _fill(self, base: int, count: int, entry: Irte, tag: object = None, *, fresh: bool = True) -> None:
        self._blocks[base] = count
        if tag is not None:
            self._tags[base] = tag
        if not fresh:  # a parked block reissued: still held and counted
            self._used -= count
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
        first = self._entries[base]
        tag = self._tags.pop(base, None)
        if tag is not None and first is not None and first.owner_vm in self._shares:
            source = (first.source.segment, first.source.rid)
            key = (first.owner_vm, source, tag)
            if key in self._parked_by_tag:  # one parked block per slot: the older one is released
                self._release_parked(self._parked_by_tag[key])
            self._parked[base] = (first.owner_vm, source, tag, count)
            self._parked_by_tag[key] = base
            for i in range(base, base + count):
                self._entries[i] = None  # not present: a write of the pair is blocked (HV-FREE-002)
            return count
        if first is not None and self._shares:
            share = self._shares.get(first.owner_vm)
            if share is not None and share.first <= base < share.end:
                self._held[first.owner_vm] -= count
        for i in range(base, base + count):
            self._entries[i] = None
        word = base >> 6
        free = self._free[word] | ((1 << count) - 1) << (base & 63)
        if self._flags[word] == ALL_SIZES:
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
        new = size_flags(free)
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
