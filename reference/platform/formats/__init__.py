"""The message formats of the platform model, one module each, behind one interface (:class:`.base.MsiFormat`):
:mod:`.vtd` (Intel VT-d remappable), :mod:`.amdvi` (AMD-Vi), :mod:`.its` (Arm GIC ITS behind an SMMUv3) and
:mod:`.imsic` (RISC-V IMSIC behind a RISC-V IOMMU).  The layouts are the spec's (:mod:`pvmsi.spec.platforms`)."""

from __future__ import annotations

from collections.abc import Callable

from ..remap import RemappingTable
from .amdvi import AmdVi
from .base import DeviceTable, MsiFormat, device_key
from .imsic import Imsic
from .its import GicIts
from .vtd import Vtd

FORMATS: dict[str, Callable[[RemappingTable], MsiFormat]] = {
    "vtd": Vtd,
    "amd-vi": lambda table: AmdVi(),
    "gic-its": lambda table: GicIts(),
    "imsic": lambda table: Imsic(),
}


def make_format(platform: str, table: RemappingTable) -> MsiFormat:
    """The format model of ``platform`` (vtd, amd-vi, gic-its, imsic); VT-d programs ``table``."""
    try:
        return FORMATS[platform](table)
    except KeyError:
        raise ValueError(f"unknown platform {platform!r}") from None


__all__ = ["FORMATS", "AmdVi", "DeviceTable", "GicIts", "Imsic", "MsiFormat", "Vtd", "device_key", "make_format"]
