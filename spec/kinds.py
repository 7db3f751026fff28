"""A message kind as a bit of a KindMask (spec "Device control")."""

from __future__ import annotations


def kind_bit(kind: int) -> int:
    """Kind ``kind``'s KindMask bit, ``1 << (kind - 1)``: its feature bit too (KindMask.MSI == Feature.MSI)."""
    return 1 << (int(kind) - 1)
