"""Arm GICv3/v4 ITS behind an SMMUv3 (spec platform ``gic-its``; IHI 0069 5.3, IHI 0070).

The device writes the EventID to GITS_TRANSLATER; the ITS takes the DeviceID from the requester id (msi-map,
identity here) and looks the EventID up in that device's interrupt translation table (ITT), which names an LPI
and a target (GICv4: a vLPI and vPE, injected directly).  The write goes through the SMMU first: the pair's
address is the doorbell's IOVA in the device's MSI window (Linux ``iommu_dma_prepare_msi``, the SW_MSI region at
0x8000000), mapped to the ITS when the device's first message is set up.  A write to an IOVA the device's
stage-2 tables do not map faults in the SMMU; the host physical address never appears in a pair.
"""

from __future__ import annotations

from pvmsi.spec.platforms import compose_fields, platform

from ..fault import FaultReason
from ..remap import Irte
from ..requester import Requester
from .base import PerDeviceFormat

LAYOUT = platform("gic-its")
MSI_WINDOW = 0x0800_0000
"""IOVA base of the MSI window (Linux MSI_IOVA_BASE, IOMMU_RESV_SW_MSI), 1 MiB."""
MSI_WINDOW_SIZE = 0x10_0000
ITS_BASE = 0x0808_0000
"""Host physical base of the ITS (as on QEMU's virt board); GITS_TRANSLATER is in its second 64 KiB frame."""
TRANSLATER_OFFSET = 0x1_0040
PAGE = 0x1_0000
DOORBELL_IOVA = MSI_WINDOW + (TRANSLATER_OFFSET & (PAGE - 1))


class GicIts(PerDeviceFormat):
    """Per-device ITTs indexed by EventID, reached through a per-device SMMU mapping of the doorbell."""

    key = "gic-its"
    table_size = 65536

    def __init__(self) -> None:
        super().__init__()
        #: The SMMU's MSI mappings: DeviceID -> {IOVA page: host physical page}.
        self.smmu: dict[int, dict[int, int]] = {}

    def table_created(self, key: int) -> None:
        self.smmu.setdefault(key, {})[MSI_WINDOW] = ITS_BASE + (TRANSLATER_OFFSET & ~(PAGE - 1))

    def claims(self, address: int) -> bool:
        return MSI_WINDOW <= address < MSI_WINDOW + MSI_WINDOW_SIZE

    def translate_iova(self, requester: Requester, address: int) -> int | None:
        """The SMMU: the host physical address a device's write to ``address`` reaches, or None (a fault)."""
        page = self.smmu.get(requester.segment << 16 | requester.rid, {}).get(address & ~(PAGE - 1))
        return None if page is None else page + (address & (PAGE - 1))

    def resolve(self, requester: Requester, address: int, data: int) -> tuple[int, Irte | None] | FaultReason:
        if self.translate_iova(requester, address) != ITS_BASE + TRANSLATER_OFFSET:
            return FaultReason.NOT_INTERRUPT_ADDRESS
        if data >> 32:
            return FaultReason.RESERVED_BITS
        return self.lookup(requester, data)

    def compose(self, ref: int) -> tuple[int, int]:
        _, event = self.split(ref)
        return compose_fields(LAYOUT.address, doorbell_iova=DOORBELL_IOVA), compose_fields(LAYOUT.data, event_id=event)
