"""PCI devices: MSI capability, MSI-X table, IMS store, sub-devices, firing, pending, FLR; device profiles."""

from __future__ import annotations

import pytest

from pvmsi.reference.platform.pci import BarRegion, MemoryWrite, NotFired, NotFiredReason, PciDevice
from pvmsi.reference.platform.pci_caps import MSI_CAP_OFFSET, MSIX_CAP_OFFSET
from pvmsi.reference.platform.pci_slots import PasidImsEntry
from pvmsi.reference.platform.profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI, PROFILES, profile
from pvmsi.reference.platform.requester import Bdf, Requester
from pvmsi.spec.constants import KindMask, MsgKind

HOST = Bdf.of(0, 0x3A, 2, 1)


def _write(result: MemoryWrite | NotFired) -> MemoryWrite:
    assert isinstance(result, MemoryWrite)
    return result


def _not_fired(result: MemoryWrite | NotFired) -> NotFiredReason:
    assert isinstance(result, NotFired)
    return result.reason


def test_bdf_and_requester() -> None:
    assert HOST.rid == 0x3A11
    assert str(HOST) == "0000:3a:02.1"
    assert HOST.requester() == Requester(0, 0x3A11, None)
    assert str(HOST.requester(5)) == "0000:3a:02.1 pasid 0x5"
    with pytest.raises(ValueError, match="bus"):
        Bdf(0, 256, 0)
    with pytest.raises(ValueError, match="PASID"):
        Requester(0, 0, 1 << 20)


def test_msi_capability_registers() -> None:
    dev = PciDevice("d", HOST, msi_vectors=8)
    assert dev.config_read(0x34, 1) == MSI_CAP_OFFSET
    assert dev.config_read(MSI_CAP_OFFSET, 1) == 0x05
    control = dev.config_read(MSI_CAP_OFFSET + 2, 2)
    assert control == 3 << 1 | 1 << 7 | 1 << 8  # MMC = 8 vectors, 64-bit, per-vector masking
    dev.config_write(MSI_CAP_OFFSET + 2, 2, 7 << 4 | 1 | 0xFF00)  # MME 128 asked: clamped; RO bits kept
    assert dev.msi is not None
    assert dev.msi.enable
    assert dev.msi.vectors_enabled == 8
    assert dev.config_read(MSI_CAP_OFFSET + 2, 2) == control | 3 << 4 | 1
    dev.config_write(MSI_CAP_OFFSET + 4, 4, 0xFEE00013)
    dev.config_write(MSI_CAP_OFFSET + 8, 4, 0)
    dev.config_write(MSI_CAP_OFFSET + 0xC, 2, 0x0020)
    assert dev.msi.address == 0xFEE00010  # bits 1:0 read-only zero
    assert dev.config_read(MSI_CAP_OFFSET + 0xC, 2) == 0x20
    dev.config_write(MSI_CAP_OFFSET + 0x10, 4, 0xFFFFFFFF)
    assert dev.msi.mask_bits == 0xFF
    dev.config_write(0x00, 4, 0)  # header read-only
    assert dev.config_read(0, 2) == 0x1AF4
    with pytest.raises(ValueError, match="bad register access"):
        dev.config_read(0x51, 2)


def test_multi_message_msi_fire_masks_and_pending() -> None:
    dev = PciDevice("d", HOST, msi_vectors=32)
    assert _not_fired(dev.fire(MsgKind.MSI, 0)) is NotFiredReason.DISABLED
    dev.config_write(MSI_CAP_OFFSET + 4, 4, 0xFEE00018)
    dev.config_write(MSI_CAP_OFFSET + 0xC, 2, 0x0043)  # low bits set on purpose: the device replaces them
    dev.config_write(MSI_CAP_OFFSET + 2, 2, 2 << 4 | 1)  # 4 vectors
    assert [_write(dev.fire(MsgKind.MSI, i)).data for i in range(4)] == [0x40, 0x41, 0x42, 0x43]
    assert _write(dev.fire(MsgKind.MSI, 1)).requester == HOST.requester()
    assert _not_fired(dev.fire(MsgKind.MSI, 4)) is NotFiredReason.DISABLED
    dev.config_write(MSI_CAP_OFFSET + 0x10, 4, 0b10)
    assert _not_fired(dev.fire(MsgKind.MSI, 1)) is NotFiredReason.MASKED
    assert dev.is_pending(MsgKind.MSI, 1)
    assert dev.config_read(MSI_CAP_OFFSET + 0x14, 4) == 0b10
    assert dev.take_deliverable_pending() == []
    dev.config_write(MSI_CAP_OFFSET + 0x10, 4, 0)
    assert dev.take_deliverable_pending() == [(MsgKind.MSI, 1)]
    assert not dev.is_pending(MsgKind.MSI, 1)
    with pytest.raises(ValueError, match="vector 32"):
        dev.fire(MsgKind.MSI, 32)


def test_msix_table_in_the_bar() -> None:
    dev = PciDevice("d", HOST, msix_table_size=9)
    assert dev.msix is not None
    assert dev.config_read(MSIX_CAP_OFFSET, 1) == 0x11
    assert dev.config_read(MSIX_CAP_OFFSET + 2, 2) == 8
    table = dev.layout.msix_table_offset
    assert dev.config_read(MSIX_CAP_OFFSET + 4, 4) == table
    assert dev.bar_region(table + 16 * 3 + 8) == (BarRegion.MSIX_TABLE, 56)
    entry = table + 16 * 3
    dev.bar_write(entry, 8, 0xFEE00018 | 0x40 << 5)  # qword write of address lo+hi
    dev.bar_write(entry + 8, 4, 0)
    assert dev.bar_read(entry + 12, 4) == 1  # entries reset masked
    assert _not_fired(dev.fire(MsgKind.MSIX, 3)) is NotFiredReason.DISABLED
    dev.config_write(MSIX_CAP_OFFSET + 2, 2, 0x8000 | 0x4000)  # enable + function mask
    assert _not_fired(dev.fire(MsgKind.MSIX, 3)) is NotFiredReason.MASKED
    dev.bar_write(entry + 12, 4, 0)
    assert _not_fired(dev.fire(MsgKind.MSIX, 3)) is NotFiredReason.MASKED  # still function-masked
    assert dev.bar_read(dev.layout.msix_pba_offset, 8) == 1 << 3
    assert dev.take_deliverable_pending() == []
    dev.config_write(MSIX_CAP_OFFSET + 2, 2, 0x8000)
    assert dev.take_deliverable_pending() == [(MsgKind.MSIX, 3)]
    write = _write(dev.fire(MsgKind.MSIX, 3))
    assert (write.address, write.data) == (0xFEE00018 | 0x40 << 5, 0)
    assert write.source is not None
    assert (write.source.kind, write.source.index) == ("msix", 3)
    dev.bar_write(dev.layout.msix_pba_offset, 8, 0)  # PBA is read-only
    with pytest.raises(ValueError, match="index 9"):
        dev.fire(MsgKind.MSIX, 9)


def test_ims_slots_and_subdevice_pasids() -> None:
    dev = PciDevice("d", HOST, ims_slots=64, subdevice_pasids=[11, 12])
    assert [(s.pasid, s.slots) for s in dev.subdevices] == [(11, range(0, 32)), (12, range(32, 64))]
    sub = dev.subdevice(12)
    assert sub is not None
    assert sub.slot(1) == 33
    assert dev.subdevice_of_slot(33) == sub
    base = dev.layout.ims_offset + 33 * 16
    dev.bar_write(base, 4, 0xFEE00018)
    assert _not_fired(dev.fire(MsgKind.IMS, 33)) is NotFiredReason.MASKED
    dev.bar_write(base + 12, 4, 0)
    assert dev.take_deliverable_pending() == [(MsgKind.IMS, 33)]
    # without a PASID field in its IMS entries, the write carries no PASID, whichever sub-device's slot it is
    assert _write(dev.fire(MsgKind.IMS, 33)).requester == HOST.requester()
    plain = PciDevice("p", HOST, ims_slots=4)
    plain.bar_write(plain.layout.ims_offset + 12, 4, 0xFFFFFFF8)  # no PASID field: the bits read as zero
    assert plain.bar_read(plain.layout.ims_offset + 12, 4) == 0
    assert _not_fired(plain.fire(MsgKind.IMS, 0)) is NotFiredReason.NOT_PROGRAMMED  # unmasked, address zero
    plain.bar_write(plain.layout.ims_offset, 4, 0xFEE00018)
    assert _write(plain.fire(MsgKind.IMS, 0)).requester.pasid is None
    with pytest.raises(ValueError, match="has no MSI"):
        plain.fire(MsgKind.MSI, 0)


def test_idxd_like_ims_entry_carries_pasid_enable_and_pasid() -> None:
    """Control word: bit 0 mask, bit 3 PASID enable, bits 31:12 PASID; the write is tagged with that PASID,
    whatever the guest wrote (a foreign PASID included), and its requester id stays the device's."""
    dev = PciDevice("d", HOST, ims_slots=64, subdevice_pasids=[11, 12], ims_pasid=True)
    base = dev.layout.ims_offset + 5 * 16
    dev.bar_write(base, 4, 0xFEE00018)
    dev.bar_write(base + 12, 4, PasidImsEntry.control_word(False, 0x12345))
    assert dev.bar_read(base + 12, 4) == 0x12345 << 12 | 1 << 3
    assert _write(dev.fire(MsgKind.IMS, 5)).requester == HOST.requester(0x12345)
    dev.bar_write(base + 12, 4, PasidImsEntry.control_word(False, None))
    assert _write(dev.fire(MsgKind.IMS, 5)).requester == HOST.requester()
    dev.bar_write(base + 12, 4, 0xFFFFFFFF)
    assert dev.bar_read(base + 12, 4) == 0xFFFFF009  # bits 11:4 and 2:1 are reserved, read as zero
    assert _not_fired(dev.fire(MsgKind.IMS, 5)) is NotFiredReason.MASKED


def test_flr_clears_msi_msix_and_ims() -> None:
    dev = PciDevice("d", HOST, msi_vectors=4, msix_table_size=4, ims_slots=4)
    dev.config_write(MSI_CAP_OFFSET + 4, 4, 0xFEE00018)
    dev.config_write(MSI_CAP_OFFSET + 2, 2, 1)
    dev.config_write(MSIX_CAP_OFFSET + 2, 2, 0xC000)
    dev.bar_write(dev.layout.msix_table_offset, 4, 0xFEE00018)
    dev.bar_write(dev.layout.msix_table_offset + 12, 4, 0)
    dev.bar_write(dev.layout.ims_offset, 4, 0xFEE00018)
    dev.fire(MsgKind.MSIX, 0)  # function-masked: pending
    dev.flr()
    assert dev.msi is not None
    assert dev.msix is not None
    assert dev.ims is not None
    assert (dev.msi.enable, dev.msi.address) == (False, 0)
    assert (dev.msix.enable, dev.msix.function_mask, dev.msix.table.pending) == (False, False, 0)
    assert all(s.masked and s.address == 0 for s in dev.msix.table.slots + dev.ims.slots)
    assert dev.flr_count == 1
    assert dev.config_read(MSI_CAP_OFFSET, 1) == 0x05  # capability list intact
    assert dev.msi.next_ptr == MSIX_CAP_OFFSET


def test_removed_device_does_not_fire() -> None:
    dev = PciDevice("d", HOST, ims_slots=4)
    dev.removed = True
    assert _not_fired(dev.fire(MsgKind.IMS, 0)) is NotFiredReason.REMOVED


def test_profiles_from_the_seed_discussion() -> None:
    assert set(PROFILES) == {"idxd-like", "mlx5-like", "msi-multi"}
    assert profile("idxd-like") is IDXD_LIKE
    with pytest.raises(KeyError, match="known"):
        profile("nope")
    assert IDXD_LIKE.kinds == KindMask.MSIX | KindMask.IMS
    assert (IDXD_LIKE.msix_table_size, IDXD_LIKE.ims_slots, IDXD_LIKE.needs_viommu) == (9, 2048, True)
    assert IDXD_LIKE.subdevices > 0
    assert MLX5_LIKE.kinds == KindMask.MSIX | KindMask.IMS
    assert (MLX5_LIKE.msix_table_size, MLX5_LIKE.ims_slots, MLX5_LIKE.subdevices) == (2048, 4096, 0)
    assert not MLX5_LIKE.needs_viommu
    assert MSI_MULTI.kinds == KindMask.MSI
    assert MSI_MULTI.msi_vectors == 32
    assert all(p.isolated for p in PROFILES.values())
    big = PciDevice("mlx", HOST, msix_table_size=2048, ims_slots=4096)
    lay = big.layout
    assert lay.size & (lay.size - 1) == 0
    assert lay.msix_table_offset + lay.msix_table_size <= lay.msix_pba_offset
    assert lay.msix_pba_offset + lay.msix_pba_size <= lay.ims_offset
    assert lay.ims_offset + lay.ims_size <= lay.size
