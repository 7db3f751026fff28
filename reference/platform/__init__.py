"""The simulated platform: interrupt remapping, IOMMU, VMs, PCI devices with MSI/MSI-X/IMS, legacy emulation.

Modules: :mod:`.requester` (BDF, requester tags), :mod:`.remap` (remapping table), :mod:`.msi_format` (x86
message formats), :mod:`.fault` (fault reasons), :mod:`.iommu`, :mod:`.vm`, :mod:`.pci`, :mod:`.profiles`,
:mod:`.legacy` (trapped MSI/MSI-X emulation), :mod:`.platform` (ties them together), :mod:`.remap_bench`.
"""

from .fault import FaultReason
from .iommu import Delivery, Fault, Iommu
from .legacy import LegacyMsi
from .msi_format import MessageFormatError, compose, compose_compat, parse, parse_compat
from .pci import MemoryWrite, NotFired, NotFiredReason, PciDevice, SubDevice
from .platform import Blocked, Delivered, FireResult, GuestDeviceLayout, Platform
from .profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI, PROFILES, DeviceProfile, profile
from .remap import TABLE_ENTRIES, Irte, RemappingTable
from .remap_bitmap import BLOCK_SIZES
from .requester import Bdf, Requester
from .vm import AccessTracker, ExitReason, GuestMemory, GuestMemoryError, InjectedInterrupt, VCpu, Vm

__all__ = [
    "BLOCK_SIZES",
    "IDXD_LIKE",
    "MLX5_LIKE",
    "MSI_MULTI",
    "PROFILES",
    "TABLE_ENTRIES",
    "AccessTracker",
    "Bdf",
    "Blocked",
    "Delivered",
    "Delivery",
    "DeviceProfile",
    "ExitReason",
    "Fault",
    "FaultReason",
    "FireResult",
    "GuestDeviceLayout",
    "GuestMemory",
    "GuestMemoryError",
    "InjectedInterrupt",
    "Iommu",
    "Irte",
    "LegacyMsi",
    "MemoryWrite",
    "MessageFormatError",
    "NotFired",
    "NotFiredReason",
    "PciDevice",
    "Platform",
    "RemappingTable",
    "Requester",
    "SubDevice",
    "VCpu",
    "Vm",
    "compose",
    "compose_compat",
    "parse",
    "parse_compat",
    "profile",
]
