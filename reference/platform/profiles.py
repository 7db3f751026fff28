"""Device profiles from the seed discussion (pvmsi's reference devices).

- **idxd-like**: an Intel DSA/IDXD-style accelerator: 9 MSI-X entries (one for device events, eight for work
  queues) and an IMS store of 2048 entries in a BAR page, shared by sub-devices, each identified by a PASID;
  each IMS entry holds address, data and a control word with mask (bit 0), PASID enable (bit 3) and PASID
  (bits 31:12); using a sub-device in a guest needs a vIOMMU (the guest must own PASIDs).  The function and
  all its sub-devices write with one requester id: they are not isolated from each other (HV-SEC-010).
- **mlx5-like**: a Mellanox ConnectX-style NIC: 2048 MSI-X entries and 4096 IMS slots, no PASID, no vIOMMU
  (Jason Gunthorpe's point in the thread: the hypercall must not depend on either).
- **msi-multi**: a plain device with a 32-vector multi-message MSI capability (per-vector masking), no MSI-X.

Every profile is isolated: the platform's IOMMU validates the requester id of every message (HV-DEV-005).
"""

from __future__ import annotations

from dataclasses import dataclass

from pvmsi.spec.constants import KindMask


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What a device model has: MSI vectors, MSI-X entries, IMS slots, sub-devices."""

    name: str
    description: str
    msi_vectors: int = 0
    msi_per_vector_mask: bool = True
    msix_table_size: int = 0
    ims_slots: int = 0
    subdevices: int = 0
    #: IMS entries carry PASID enable and a PASID in their control word (IDXD-like).
    ims_pasid: bool = False
    needs_viommu: bool = False
    isolated: bool = True
    vendor_id: int = 0x1AF4
    device_id: int = 0x10F0

    @property
    def kinds(self) -> KindMask:
        mask = KindMask(0)
        if self.msi_vectors:
            mask |= KindMask.MSI
        if self.msix_table_size:
            mask |= KindMask.MSIX
        if self.ims_slots:
            mask |= KindMask.IMS
        return mask


IDXD_LIKE = DeviceProfile(
    name="idxd-like",
    description="DSA/IDXD-like accelerator: MSI-X 9 + IMS 2048 shared by 8 PASID sub-devices; needs a vIOMMU",
    msix_table_size=9,
    ims_slots=2048,
    subdevices=8,
    ims_pasid=True,
    needs_viommu=True,
    vendor_id=0x8086,
    device_id=0x0B25,
)

MLX5_LIKE = DeviceProfile(
    name="mlx5-like",
    description="ConnectX-like NIC: MSI-X 2048 + IMS 4096, no PASID, no vIOMMU",
    msix_table_size=2048,
    ims_slots=4096,
    vendor_id=0x15B3,
    device_id=0x101D,
)

MSI_MULTI = DeviceProfile(
    name="msi-multi",
    description="plain device: multi-message MSI with 32 vectors and per-vector masking, no MSI-X",
    msi_vectors=32,
)

PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (IDXD_LIKE, MLX5_LIKE, MSI_MULTI)}


def profile(name: str) -> DeviceProfile:
    """The profile called ``name``."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"no device profile {name!r}; known: {', '.join(PROFILES)}") from None
