"""The interrupt-remapping table: allocation, alignment, bookkeeping, update, exhaustion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvmsi.reference.platform.remap import TABLE_ENTRIES, Irte, RemappingTable
from pvmsi.reference.platform.remap_bitmap import BLOCK_SIZES, size_flags
from pvmsi.reference.platform.requester import Requester

SOURCE = Requester(0, 0x1008)
ENTRY = Irte(owner_vm=1, dest_vcpu=2, vector=0x40, source=SOURCE)


def test_single_allocation_stores_the_entry_with_a_generation() -> None:
    table = RemappingTable()
    index = table.alloc(ENTRY)
    assert index == 0
    stored = table.get(0)
    assert stored is not None
    assert stored._replace(generation=0) == ENTRY
    assert stored.generation == 1 == table.generation(0)
    assert table.occupancy == 1
    assert table.free_entries == TABLE_ENTRIES - 1
    assert table.is_allocated(0)
    assert not table.is_allocated(1)


@pytest.mark.parametrize("count", BLOCK_SIZES)
def test_blocks_are_aligned_and_carry_consecutive_vectors(count: int) -> None:
    table = RemappingTable(1024)
    table.alloc(ENTRY)  # index 0 taken, so an aligned block must skip ahead
    base = table.alloc(ENTRY, count)
    assert base is not None
    assert base % count == 0
    assert base != 0
    for i in range(count):
        entry = table.get(base + i)
        assert entry is not None
        assert entry.vector == ENTRY.vector + i
        assert table.block_of(base + i) == (base, count)
    assert table.occupancy == 1 + count
    assert table.free(base) == count
    assert table.occupancy == 1
    assert table.get(base) is None


def test_free_requires_a_block_base() -> None:
    table = RemappingTable(64)
    base = table.alloc(ENTRY, 4)
    assert base == 0
    with pytest.raises(KeyError):
        table.free(1)
    with pytest.raises(KeyError):
        table.free(8)
    table.free(0)
    with pytest.raises(KeyError):
        table.free(0)


def test_invalid_requests_are_rejected() -> None:
    table = RemappingTable(64)
    for count in (0, 3, 64, -1):
        with pytest.raises(ValueError, match="block size"):
            table.alloc(ENTRY, count)
    with pytest.raises(ValueError, match="exceed 255"):
        table.alloc(ENTRY._replace(vector=250), 8)
    with pytest.raises(ValueError, match="vector"):
        table.alloc(ENTRY._replace(vector=256))
    with pytest.raises(ValueError, match="vCPU"):
        table.alloc(ENTRY._replace(dest_vcpu=-1))
    with pytest.raises(ValueError, match="multiple"):
        RemappingTable(100)
    with pytest.raises(IndexError):
        table.is_allocated(64)
    assert table.get(64) is None
    assert table.get(-1) is None


def test_update_in_place_keeps_source_owner_and_generation() -> None:
    table = RemappingTable(64)
    index = table.alloc(ENTRY)
    assert index is not None
    new = table.update(index, dest_vcpu=5, vector=0x80, posted=True)
    assert new == ENTRY._replace(dest_vcpu=5, vector=0x80, posted=True, generation=1)
    assert table.get(index) == new
    assert table.update(index, present=False).present is False
    with pytest.raises(KeyError):
        table.update(7, vector=0x40)
    with pytest.raises(ValueError, match="vector"):
        table.update(index, vector=300)


def test_generation_counts_reuse_of_an_index() -> None:
    table = RemappingTable(64)
    for expected in (1, 2, 3):
        index = table.alloc(ENTRY)
        assert index == 0
        assert table.generation(0) == expected
        table.free(0)


def test_full_table_gives_none_and_recovers() -> None:
    table = RemappingTable()
    got = [table.alloc(ENTRY) for _ in range(TABLE_ENTRIES)]
    assert got == list(range(TABLE_ENTRIES))
    assert table.occupancy == TABLE_ENTRIES
    assert table.alloc(ENTRY) is None
    assert table.alloc(ENTRY, 2) is None
    table.free(12345)
    assert table.alloc(ENTRY, 2) is None  # one free entry is no aligned pair
    assert table.alloc(ENTRY) == 12345


def test_fragmentation_blocks_large_allocations_only() -> None:
    table = RemappingTable(128)
    singles = [table.alloc(ENTRY) for _ in range(128)]
    for index in singles:
        assert index is not None
        if index % 2:
            table.free(index)
    assert table.free_entries == 64
    assert table.alloc(ENTRY, 2) is None
    assert table.alloc(ENTRY) == 1


def test_blocks_where_filters_by_owner_and_source() -> None:
    table = RemappingTable(256)
    other = Requester(0, 0x2000, pasid=5)
    a = table.alloc(ENTRY, 4)
    b = table.alloc(ENTRY._replace(owner_vm=2, source=other))
    c = table.alloc(ENTRY._replace(source=Requester(0, 0x2000)), 2)
    assert a is not None
    assert b is not None
    assert c is not None
    assert table.blocks_where(owner_vm=1) == sorted([(a, 4), (c, 2)])
    assert table.blocks_where(owner_vm=2) == [(b, 1)]
    assert table.blocks_where(source=Requester(0, 0x2000)) == sorted([(b, 1), (c, 2)])  # any PASID
    assert table.blocks() == {a: 4, b: 1, c: 2}


def _has_free_aligned_run(free: set[int], capacity: int, count: int) -> bool:
    return any(all(i in free for i in range(base, base + count)) for base in range(0, capacity, count))


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.sampled_from(BLOCK_SIZES)),
        st.tuples(st.just("free"), st.integers(min_value=0, max_value=10_000)),
    ),
    max_size=150,
)


@given(OPS, st.sampled_from([64, 128, 256]))
def test_random_alloc_free_sequences_keep_exact_bookkeeping(ops: list[tuple[str, int]], capacity: int) -> None:
    """Against a model: no overlap, aligned blocks, exact occupancy, None only when no aligned run is free."""
    table = RemappingTable(capacity)
    blocks: dict[int, int] = {}
    for op, arg in ops:
        owned = {i for base, n in blocks.items() for i in range(base, base + n)}
        free = set(range(capacity)) - owned
        if op == "alloc":
            base = table.alloc(ENTRY._replace(vector=32), arg)
            if base is None:
                assert not _has_free_aligned_run(free, capacity, arg)
            else:
                assert base % arg == 0
                assert all(i in free for i in range(base, base + arg))  # no overlap
                blocks[base] = arg
        elif blocks:
            base = sorted(blocks)[arg % len(blocks)]
            assert table.free(base) == blocks.pop(base)
        used = sum(blocks.values())
        assert table.occupancy == used
        assert table.free_entries == capacity - used
        assert table.blocks() == blocks
        # the level-1 summary follows level 0 (also where alloc and free skip _set_word)
        assert table._flags == [size_flags(word) for word in table._free]
        for i in range(len(BLOCK_SIZES)):
            assert table._summary[i] == sum(1 << w for w, flags in enumerate(table._flags) if flags >> i & 1)
    for index in range(capacity):
        in_block = any(base <= index < base + n for base, n in blocks.items())
        assert table.is_allocated(index) == in_block
        assert (table.get(index) is not None) == in_block


@given(st.lists(st.sampled_from(BLOCK_SIZES), min_size=1, max_size=40))
def test_filling_with_mixed_blocks_ends_in_none(sizes: list[int]) -> None:
    table = RemappingTable(64)
    allocated = 0
    for size in sizes * 64:
        base = table.alloc(ENTRY._replace(vector=32), size)
        if base is None:
            break
        allocated += size
    assert table.occupancy == allocated
    if allocated == 64:
        assert all(table.alloc(ENTRY._replace(vector=32), n) is None for n in BLOCK_SIZES)


def _brute_size_flags(free: int) -> int:
    """Bit i set when some aligned block of BLOCK_SIZES[i] entries is all free in the 64-entry word."""
    flags = 0
    for i, size in enumerate(BLOCK_SIZES):
        mask = (1 << size) - 1
        if any((free >> base) & mask == mask for base in range(0, 64, size)):
            flags |= 1 << i
    return flags


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_word_flags_match_a_brute_force_scan(free: int) -> None:
    """size_flags (with its shortcut for a free 32-entry half) and _set_word find every free block size."""
    assert size_flags(free) == _brute_size_flags(free)
    table = RemappingTable(128)
    table._set_word(1, free)
    assert table._flags[1] == _brute_size_flags(free)
    assert [s >> 1 & 1 for s in table._summary] == [_brute_size_flags(free) >> i & 1 for i in range(len(BLOCK_SIZES))]
