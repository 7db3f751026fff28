"""The word arithmetic of the interrupt-remapping table's two-level bitmap (:mod:`.remap`): a word is 64 entries
with one free bit each (bit set = entry free); per word, the size flags say which aligned block sizes
(:data:`BLOCK_SIZES`) it still holds free, and :func:`free_runs` finds where each size's free aligned runs start.
Blocks are power-of-two aligned and never straddle words, since 32 divides 64."""

from __future__ import annotations

BLOCK_SIZES = (1, 2, 4, 8, 16, 32)
WORD = 64
FULL_WORD = (1 << WORD) - 1
LOW_HALF = (1 << (WORD // 2)) - 1
ALL_SIZES = 63  # size flags with every block size free


def aligned_mask(size: int) -> int:
    """The bits of a word where an aligned block of ``size`` entries may start."""
    return sum(1 << bit for bit in range(0, WORD, size))


ALIGNED = {size: aligned_mask(size) for size in BLOCK_SIZES}
_A2, _A4, _A8, _A16, _A32 = (ALIGNED[size] for size in BLOCK_SIZES[1:])


def free_runs(free: int) -> tuple[int, int, int, int, int, int]:
    """Per block size: the bits of ``free`` where an aligned run of that many free entries starts."""
    m2 = free & (free >> 1)
    m4 = m2 & (m2 >> 2)
    m8 = m4 & (m4 >> 4)
    m16 = m8 & (m8 >> 8)
    m32 = m16 & (m16 >> 16)
    return (
        free,
        m2 & ALIGNED[2],
        m4 & ALIGNED[4],
        m8 & ALIGNED[8],
        m16 & ALIGNED[16],
        m32 & ALIGNED[32],
    )


def size_flags(free: int) -> int:
    """Bit ``i`` set when the word holds a free aligned block of ``BLOCK_SIZES[i]`` entries.

    No aligned block of size 2k without one of size k: stop at the first size that is missing.
    """
    if not free:
        return 0
    if free & LOW_HALF == LOW_HALF or free >> 32 == LOW_HALF:
        return ALL_SIZES  # a free aligned 32-entry block holds free blocks of every smaller size
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
    return ALL_SIZES if m & _A32 else 31


#: The index of each block size in BLOCK_SIZES (its bit in the size flags).
SIZE_INDEX = {size: i for i, size in enumerate(BLOCK_SIZES)}
