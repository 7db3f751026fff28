"""VMs: guest memory (RAM, MMIO, bounds, access tracking), vCPU interrupt records, exit counters."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvmsi.reference.platform.requester import Requester
from pvmsi.reference.platform.vm import (
    HIGH_RAM_BASE,
    LOW_RAM_LIMIT,
    ExitReason,
    GuestMemory,
    GuestMemoryError,
    InjectedInterrupt,
    Vm,
)


def test_ram_layout_splits_around_the_pci_hole() -> None:
    vm = Vm(1, 2, LOW_RAM_LIMIT + (1 << 20))
    assert [(r.start, r.end) for r in vm.memory.ram_regions] == [
        (0, LOW_RAM_LIMIT),
        (HIGH_RAM_BASE, HIGH_RAM_BASE + (1 << 20)),
    ]
    assert vm.memory.ram_size == LOW_RAM_LIMIT + (1 << 20)
    assert vm.memory.is_ram(LOW_RAM_LIMIT - 8, 8)
    assert not vm.memory.is_ram(LOW_RAM_LIMIT - 8, 16)
    assert not vm.memory.is_ram(0xFEE00000, 4)
    assert vm.memory.mmio_at(0xFEE00010) is not None
    assert not vm.memory.is_ram(0, 0)
    assert not vm.memory.is_ram(-8, 8)


def test_sparse_reads_and_writes_across_pages() -> None:
    mem = GuestMemory()
    mem.add_ram(0, 3 * 4096)
    assert mem.read(100, 8) == bytes(8)
    assert mem.pages_touched == 0
    mem.write(4090, bytes(range(12)))
    assert mem.read(4090, 12) == bytes(range(12))
    assert mem.pages_touched == 2
    mem.write_u64(8192, 0x1122334455667788)
    assert mem.read_u64(8192) == 0x1122334455667788
    assert mem.read(8192, 1) == b"\x88"  # little-endian


def test_adjacent_ram_regions_count_as_one() -> None:
    mem = GuestMemory()
    mem.add_ram(0, 4096)
    mem.add_ram(4096, 4096)
    assert mem.is_ram(4000, 200)
    mem.write(4000, bytes(200))


def test_bounds_are_checked() -> None:
    vm = Vm(1, 1, 1 << 20)
    with pytest.raises(GuestMemoryError):
        vm.memory.read((1 << 20) - 4, 8)
    with pytest.raises(GuestMemoryError):
        vm.memory.write(0xFEE00000, b"\0" * 4)
    with pytest.raises(GuestMemoryError):
        vm.memory.read(0, -1)
    assert vm.memory.read(0, 0) == b""
    with pytest.raises(ValueError, match="overlaps"):
        vm.memory.add_mmio(0, 4096, "clash")
    with pytest.raises(ValueError, match="aligned"):
        vm.memory.add_ram(1 << 40, 100)


# Two RAM regions with a hole between them, small enough to model as one bytearray.
_REGIONS = ((0, 2 * 4096), (4 * 4096, 2 * 4096))
_SPAN = 6 * 4096
_ops = st.lists(
    st.tuples(st.booleans(), st.integers(-8, _SPAN + 8), st.integers(1, 2 * 4096 + 8), st.integers(0, 255)),
    max_size=40,
)


@given(_ops, st.booleans())
def test_memory_matches_a_flat_model(ops: list[tuple[bool, int, int, int]], tracked: bool) -> None:
    """Reads and writes (one page or several, tracked or not, in or outside RAM) behave as on a flat byte array
    in which only the RAM ranges are accessible: the single-page fast path and the general path agree."""
    mem = GuestMemory()
    for start, length in _REGIONS:
        mem.add_ram(start, length)
    model = bytearray(_SPAN)
    with mem.track() if tracked else contextlib.nullcontext():
        for write, gpa, size, fill in ops:
            in_ram = any(start <= gpa and gpa + size <= start + length for start, length in _REGIONS)
            assert mem.is_ram(gpa, size) == in_ram
            data = bytes([fill]) * size
            if not in_ram:
                with pytest.raises(GuestMemoryError):
                    mem.write(gpa, data) if write else mem.read(gpa, size)
            elif write:
                mem.write(gpa, data)
                model[gpa : gpa + size] = data
            else:
                assert mem.read(gpa, size) == bytes(model[gpa : gpa + size])


def test_access_tracking_counts_each_byte() -> None:
    mem = GuestMemory()
    mem.add_ram(0, 4096)
    mem.read(0, 8)  # not tracked
    with mem.track() as outer:
        mem.read(16, 8)
        with mem.track() as inner:
            mem.read(16, 4)
            mem.write(64, b"ab")
        mem.read(100, 1)
    mem.read(16, 8)  # not tracked
    assert outer.reads[16] == 2
    assert outer.reads[20] == 1
    assert outer.max_reads == 2
    assert outer.reread() == [16, 17, 18, 19]
    assert inner.reads[16] == 1
    assert inner.max_reads == 1
    assert inner.reread() == []
    assert outer.bytes_written == inner.bytes_written == 2
    assert 0 not in outer.reads


def test_vcpus_record_interrupts_and_exits_are_counted() -> None:
    vm = Vm(7, 3, 1 << 20)
    interrupt = InjectedInterrupt(0x41, Requester(0, 0x10), 0xFEE00018, 0, 0, False, None)
    vm.inject(interrupt, 2)
    assert vm.vcpus[2].vectors() == [0x41]
    assert vm.interrupts() == [(2, interrupt)]
    assert vm.vcpus[2].take() == [interrupt]
    assert vm.vcpus[2].interrupts == []
    with pytest.raises(IndexError):
        vm.inject(interrupt, 3)
    vm.count_exit(ExitReason.HYPERCALL)
    vm.count_exit(ExitReason.MSIX_TABLE_WRITE, 4)
    assert vm.exits == {ExitReason.HYPERCALL: 1, ExitReason.MSIX_TABLE_WRITE: 4}
    assert vm.total_exits == 5
    with pytest.raises(ValueError, match="vCPU"):
        Vm(1, 0, 4096)
