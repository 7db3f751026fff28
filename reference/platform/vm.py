"""A virtual machine: vCPUs that record injected interrupts, guest memory, and exit counters.

Guest memory is a list of RAM regions backed by a sparse, page-granular store (4 KiB ``bytearray`` pages
created on first write; untouched RAM reads as zeros) plus MMIO regions that are not RAM (device BARs, the
local-APIC / interrupt window).  Reads and writes are bounds-checked: an access must lie entirely in RAM.

:meth:`GuestMemory.track` opens an access-tracking context that counts, per byte, how often the hypervisor
read and wrote guest memory during one call, so tests can check the read-once rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from .requester import Requester

PAGE_SIZE = 4096
_PAGE_SHIFT = 12
_PAGE_MASK = PAGE_SIZE - 1
GPA_LIMIT = 1 << 52


class GuestMemoryError(ValueError):
    """A guest-physical access outside RAM (or malformed)."""


class ExitReason(StrEnum):
    """Why the guest exited to the hypervisor."""

    HYPERCALL = "hypercall"
    MSI_CAP_WRITE = "msi_cap_write"
    MSI_CAP_READ = "msi_cap_read"
    MSIX_CAP_WRITE = "msix_cap_write"
    MSIX_CAP_READ = "msix_cap_read"
    MSIX_TABLE_WRITE = "msix_table_write"
    MSIX_TABLE_READ = "msix_table_read"
    CONFIG_WRITE = "config_write"
    CONFIG_READ = "config_read"
    MMIO_UNHANDLED = "mmio_unhandled"


@dataclass(frozen=True, slots=True)
class MessageSource:
    """Which message a device emitted: its host requester tag, the kind and the slot or MSI vector index."""

    device: str
    kind: str
    index: int


@dataclass(frozen=True, slots=True)
class InjectedInterrupt:
    """One interrupt injected into a vCPU and the message write that caused it."""

    vector: int
    requester: Requester
    address: int
    data: int
    irte_index: int
    posted: bool
    source: MessageSource | None


@dataclass(frozen=True, slots=True)
class Region:
    """A guest-physical range ``[start, end)``."""

    start: int
    end: int
    name: str

    def contains(self, gpa: int, size: int) -> bool:
        return self.start <= gpa and gpa + size <= self.end

    def overlaps(self, start: int, end: int) -> bool:
        return start < self.end and self.start < end


@dataclass
class AccessTracker:
    """Per-byte read and write counts of guest memory while the tracking context is open.

    Each access is kept as its ``(gpa, size)`` span; the per-byte counts are worked out from the spans when
    asked for, so that tracking costs one append per access.
    """

    read_spans: list[tuple[int, int]] = field(default_factory=list)
    write_spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def reads(self) -> Counter[int]:
        """How many times each byte was read, by GPA."""
        return _per_byte(self.read_spans)

    @property
    def writes(self) -> Counter[int]:
        """How many times each byte was written, by GPA."""
        return _per_byte(self.write_spans)

    @property
    def max_reads(self) -> int:
        """The most times any one byte was read (0 when nothing was read)."""
        # +1 where a read starts, -1 where it ends; at one GPA an end sorts before a start (they do not overlap)
        edges = sorted(edge for gpa, size in self.read_spans if size for edge in ((gpa, 1), (gpa + size, -1)))
        most = depth = 0
        for _, step in edges:
            depth += step
            most = max(most, depth)
        return most

    def reread(self) -> list[int]:
        """GPAs of the bytes read more than once."""
        return sorted(gpa for gpa, n in self.reads.items() if n > 1)

    @property
    def bytes_written(self) -> int:
        return len(self.writes)


def _per_byte(spans: list[tuple[int, int]]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for gpa, size in spans:
        counts.update(range(gpa, gpa + size))
    return counts


class GuestMemory:
    """RAM and MMIO regions of one VM, with a sparse page store."""

    def __init__(self) -> None:
        self._ram: list[Region] = []
        self._mmio: list[Region] = []
        self._pages: dict[int, bytearray] = {}
        self._trackers: list[AccessTracker] = []
        # [start, end) of the RAM region of the last access (hypercalls touch one or two); empty at first
        self._last_start = self._last_end = 0

    @property
    def ram_regions(self) -> tuple[Region, ...]:
        return tuple(self._ram)

    @property
    def mmio_regions(self) -> tuple[Region, ...]:
        return tuple(self._mmio)

    @property
    def ram_size(self) -> int:
        return sum(r.end - r.start for r in self._ram)

    def add_ram(self, start: int, size: int, name: str = "ram") -> Region:
        """Add page-aligned RAM ``[start, start + size)``."""
        region = self._new_region(start, size, name)
        self._ram.append(region)
        self._ram.sort(key=lambda r: r.start)
        return region

    def add_mmio(self, start: int, size: int, name: str) -> Region:
        """Add an MMIO range (not RAM) ``[start, start + size)``."""
        region = self._new_region(start, size, name)
        self._mmio.append(region)
        return region

    def remove_mmio(self, region: Region) -> None:
        self._mmio.remove(region)

    def mmio_at(self, gpa: int) -> Region | None:
        """The MMIO region holding ``gpa``."""
        for region in self._mmio:
            if region.start <= gpa < region.end:
                return region
        return None

    def is_ram(self, gpa: int, size: int) -> bool:
        """Whether ``[gpa, gpa + size)`` lies entirely in guest RAM (``size`` > 0)."""
        if self._last_start <= gpa and gpa + size <= self._last_end and size > 0:
            return True
        if size <= 0 or gpa < 0:
            return False
        end = gpa + size
        for region in self._ram:  # sorted; adjacent regions count as one
            if region.start <= gpa < region.end:
                if end <= region.end:
                    self._last_start, self._last_end = region.start, region.end
                    return True
                gpa = region.end
        return False

    def read(self, gpa: int, size: int) -> bytes:
        """Read ``size`` bytes of RAM at ``gpa``."""
        offset = gpa & _PAGE_MASK
        # the fast path: within one page of the last region used, nothing tracking
        if (
            0 < size <= PAGE_SIZE - offset
            and self._last_start <= gpa
            and gpa + size <= self._last_end
            and not self._trackers
        ):
            store = self._pages.get(gpa >> _PAGE_SHIFT)
            return bytes(size) if store is None else bytes(store[offset : offset + size])
        self._check(gpa, size)
        for tracker in self._trackers:
            tracker.read_spans.append((gpa, size))
        out = bytearray()
        while size:
            page, offset = divmod(gpa, PAGE_SIZE)
            n = min(size, PAGE_SIZE - offset)
            store = self._pages.get(page)
            out += store[offset : offset + n] if store is not None else bytes(n)
            gpa += n
            size -= n
        return bytes(out)

    def write(self, gpa: int, data: bytes) -> None:
        """Write ``data`` into RAM at ``gpa``."""
        offset = gpa & _PAGE_MASK
        size = len(data)
        # the fast path, as in read()
        if (
            0 < size <= PAGE_SIZE - offset
            and self._last_start <= gpa
            and gpa + size <= self._last_end
            and not self._trackers
        ):
            store = self._pages.get(gpa >> _PAGE_SHIFT)
            if store is None:
                store = self._pages[gpa >> _PAGE_SHIFT] = bytearray(PAGE_SIZE)
            store[offset : offset + size] = data
            return
        self._check(gpa, size)
        for tracker in self._trackers:
            tracker.write_spans.append((gpa, size))
        view = memoryview(data)
        while view:
            page, offset = divmod(gpa, PAGE_SIZE)
            n = min(len(view), PAGE_SIZE - offset)
            store = self._pages.get(page)
            if store is None:
                store = self._pages[page] = bytearray(PAGE_SIZE)
            store[offset : offset + n] = view[:n]
            gpa += n
            view = view[n:]

    def read_u64(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 8), "little")

    def write_u64(self, gpa: int, value: int) -> None:
        self.write(gpa, value.to_bytes(8, "little"))

    @contextmanager
    def track(self) -> Iterator[AccessTracker]:
        """Count per-byte reads and writes of guest memory inside the ``with`` block (contexts may nest)."""
        tracker = AccessTracker()
        self._trackers.append(tracker)
        try:
            yield tracker
        finally:
            self._trackers.remove(tracker)

    @property
    def pages_touched(self) -> int:
        """Pages materialised in the sparse store."""
        return len(self._pages)

    def _new_region(self, start: int, size: int, name: str) -> Region:
        if size <= 0 or start < 0 or start % PAGE_SIZE or size % PAGE_SIZE or start + size > GPA_LIMIT:
            raise ValueError(f"region {name} [{start:#x}, +{size:#x}) must be page aligned, non-empty, < 2^52")
        for other in (*self._ram, *self._mmio):
            if other.overlaps(start, start + size):
                raise ValueError(f"region {name} overlaps {other.name}")
        return Region(start, start + size, name)

    def _check(self, gpa: int, size: int) -> None:
        if size < 0:
            raise GuestMemoryError(f"negative size {size}")
        if size and not self.is_ram(gpa, size):
            raise GuestMemoryError(f"[{gpa:#x}, +{size:#x}) is not guest RAM")


@dataclass
class VCpu:
    """One virtual CPU (its APIC id equals its index) and the interrupts injected into it, in order."""

    index: int
    interrupts: list[InjectedInterrupt] = field(default_factory=list)

    def vectors(self) -> list[int]:
        return [i.vector for i in self.interrupts]

    def take(self) -> list[InjectedInterrupt]:
        """Return and forget the interrupts recorded so far."""
        taken, self.interrupts = self.interrupts, []
        return taken


LOW_RAM_LIMIT = 0xC0000000
"""Guest RAM below 4 GiB ends here (3 GiB); the hole holds MMIO and the interrupt window 0xFEE00000."""
HIGH_RAM_BASE = 1 << 32
INTERRUPT_WINDOW_SIZE = 0x100000


class Vm:
    """A VM: ``vcpus`` vCPUs, guest memory, exit counters."""

    def __init__(self, vm_id: int, vcpus: int, ram_bytes: int) -> None:
        if vcpus < 1:
            raise ValueError("a VM needs at least one vCPU")
        if ram_bytes <= 0 or ram_bytes % PAGE_SIZE:
            raise ValueError("RAM size must be a positive multiple of 4 KiB")
        self.id = vm_id
        self.vcpus = [VCpu(i) for i in range(vcpus)]
        self.memory = GuestMemory()
        low = min(ram_bytes, LOW_RAM_LIMIT)
        self.memory.add_ram(0, low, "ram-low")
        if ram_bytes > low:
            self.memory.add_ram(HIGH_RAM_BASE, ram_bytes - low, "ram-high")
        self.memory.add_mmio(0xFEE00000, INTERRUPT_WINDOW_SIZE, "interrupt-window")
        self.exits: Counter[ExitReason] = Counter()
        self.destroyed = False

    @property
    def vcpu_count(self) -> int:
        return len(self.vcpus)

    def count_exit(self, reason: ExitReason, n: int = 1) -> None:
        """Count ``n`` exits for ``reason`` (the hypervisor counts HYPERCALL exits here)."""
        self.exits[reason] += n

    @property
    def total_exits(self) -> int:
        return sum(self.exits.values())

    def inject(self, interrupt: InjectedInterrupt, vcpu: int) -> None:
        """Record ``interrupt`` on vCPU ``vcpu``."""
        if not 0 <= vcpu < len(self.vcpus):
            raise IndexError(f"VM {self.id} has no vCPU {vcpu}")
        self.vcpus[vcpu].interrupts.append(interrupt)

    def interrupts(self) -> list[tuple[int, InjectedInterrupt]]:
        """Every recorded interrupt as ``(vcpu, interrupt)``, vCPU by vCPU."""
        return [(v.index, i) for v in self.vcpus for i in v.interrupts]
