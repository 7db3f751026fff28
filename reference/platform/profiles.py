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
from pvmsi.spec.harness_constants import DeviceProfile as HarnessProfile
from pvmsi.spec.harness_devices import DEVICES


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


def _from_spec(which: HarnessProfile, description: str) -> DeviceProfile:
    """The reference model of a harness profile: its sizes and identity are the spec's (harness "Device model")."""
    d = DEVICES[which]
    return DeviceProfile(
        name=d.name,
        description=description,
        msi_vectors=d.msi_vectors,
        msi_per_vector_mask=d.msi_per_vector_mask,
        msix_table_size=d.msix_table_size,
        ims_slots=d.ims_store,
        subdevices=d.subdevices,
        ims_pasid=d.ims_pasid,
        needs_viommu=d.needs_viommu,
        vendor_id=d.vendor_id,
        device_id=d.device_id,
    )


IDXD_LIKE = _from_spec(
    HarnessProfile.IDXD,
    "DSA/IDXD-like accelerator: MSI-X 9 + IMS 2048 shared by 8 PASID sub-devices; needs a vIOMMU",
)
MLX5_LIKE = _from_spec(HarnessProfile.MLX5, "ConnectX-like NIC: MSI-X 2048 + IMS 4096, no PASID, no vIOMMU")
MSI_MULTI = _from_spec(
    HarnessProfile.PLAIN_MSI, "plain device: multi-message MSI with 32 vectors and per-vector masking, no MSI-X"
)

PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (IDXD_LIKE, MLX5_LIKE, MSI_MULTI)}


def profile(name: str) -> DeviceProfile:
    """The profile called ``name``."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"no device profile {name!r}; known: {', '.join(PROFILES)}") from None
