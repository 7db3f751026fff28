"""End to end on the platform, legacy (trapped, emulated) path: program, fire, route, inject, count."""

from __future__ import annotations

import pytest

from pvmsi.reference.platform.fault import FaultReason
from pvmsi.reference.platform.iommu import Delivery, Fault
from pvmsi.reference.platform.msi_format import compose, compose_compat, parse
from pvmsi.reference.platform.pci import MemoryWrite, NotFired, NotFiredReason, PciDevice
from pvmsi.reference.platform.pci_caps import MSIX_CAP_OFFSET
from pvmsi.reference.platform.platform import Blocked, Delivered, FireResult, Platform
from pvmsi.reference.platform.profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI
from pvmsi.reference.platform.remap import Irte
from pvmsi.reference.platform.requester import Bdf, Requester
from pvmsi.reference.platform.vm import ExitReason, Vm
from pvmsi.spec.constants import MsgKind

GUEST = Bdf(0, 0, 3 << 3)


def _setup(profile_name: str = "mlx5") -> tuple[Platform, Vm, PciDevice]:
    platform = Platform()
    vm = platform.create_vm(4)
    prof = {"mlx5": MLX5_LIKE, "idxd": IDXD_LIKE, "msi": MSI_MULTI}[profile_name]
    device = platform.add_device(prof)
    platform.assign(device, vm, GUEST)
    return platform, vm, device


def _delivered(result: FireResult) -> Delivery:
    assert isinstance(result, Delivered), result
    return result.delivery


def _blocked(result: FireResult) -> FaultReason:
    assert isinstance(result, Blocked), result
    return result.fault.reason


def _enable_msix(platform: Platform, vm: Vm) -> bool:
    return platform.guest_config_write(vm, GUEST, MSIX_CAP_OFFSET + 2, 2, 0x8000)


def test_msix_entry_programmed_through_trapped_writes_delivers() -> None:
    platform, vm, device = _setup()
    assert _enable_msix(platform, vm)
    exits = platform.guest_msix_entry_write(vm, GUEST, 3, *compose_compat(1, 0x41))
    assert exits == 4
    assert vm.exits == {ExitReason.MSIX_CAP_WRITE: 1, ExitReason.MSIX_TABLE_WRITE: 4}
    # the device holds a remappable pair written behind the guest's back, the guest reads back its own
    assert device.msix is not None
    phys = device.msix.table.slots[3]
    (irte,) = platform.legacy.irte_indices(device)
    assert parse(phys.address, phys.data) == irte
    lay = platform.layout(device)
    value, exited = platform.guest_mmio_read(vm, lay.msix_entry_gpa(3), 4)
    assert (value, exited) == (compose_compat(1, 0x41)[0], True)
    assert vm.exits[ExitReason.MSIX_TABLE_READ] == 1
    delivery = _delivered(platform.fire(device, MsgKind.MSIX, 3))
    assert (delivery.vm, delivery.vcpu, delivery.vector) == (vm.id, 1, 0x41)
    (record,) = vm.vcpus[1].interrupts
    assert record.vector == 0x41
    assert record.source is not None
    assert (record.source.kind, record.source.index) == ("msix", 3)
    assert record.requester == device.requester()
    assert all(not v.interrupts for v in vm.vcpus if v.index != 1)
    assert platform.delivered_messages == 1


def test_entry_written_before_enable_goes_live_on_enable_and_retargets_in_place() -> None:
    platform, vm, device = _setup()
    platform.guest_msix_entry_write(vm, GUEST, 0, *compose_compat(0, 0x50))
    assert platform.legacy.irte_indices(device) == []
    assert isinstance(platform.fire(device, MsgKind.MSIX, 0), NotFired)
    _enable_msix(platform, vm)
    (irte,) = platform.legacy.irte_indices(device)
    assert _delivered(platform.fire(device, MsgKind.MSIX, 0)).vcpu == 0
    assert device.msix is not None
    before = device.msix.table.slots[0].address
    # the guest changes affinity by rewriting the pair: the IRTE is updated in place, the device is not
    platform.guest_msix_entry_write(vm, GUEST, 0, *compose_compat(2, 0x51))
    assert platform.legacy.irte_indices(device) == [irte]
    assert device.msix.table.slots[0].address == before
    delivery = _delivered(platform.fire(device, MsgKind.MSIX, 0))
    assert (delivery.vcpu, delivery.vector) == (2, 0x51)


def test_masking_tears_down_and_unmasking_delivers_the_pending_message() -> None:
    platform, vm, device = _setup()
    _enable_msix(platform, vm)
    platform.guest_msix_entry_write(vm, GUEST, 5, *compose_compat(3, 0x60))
    lay = platform.layout(device)
    assert platform.guest_mmio_write(vm, lay.msix_entry_gpa(5) + 12, 4, 1)  # mask
    assert platform.legacy.irte_indices(device) == []
    assert platform.table.occupancy == 0
    result = platform.fire(device, MsgKind.MSIX, 5)
    assert isinstance(result, NotFired)
    assert result.reason is NotFiredReason.MASKED
    assert vm.vcpus[3].interrupts == []
    platform.guest_mmio_write(vm, lay.msix_entry_gpa(5) + 12, 4, 0)  # unmask: pending message goes out
    assert vm.vcpus[3].vectors() == [0x60]
    assert platform.guest_config_write(vm, GUEST, MSIX_CAP_OFFSET + 2, 2, 0)  # disable MSI-X
    assert platform.table.occupancy == 0
    assert isinstance(platform.fire(device, MsgKind.MSIX, 5), NotFired)


def test_invalid_guest_pairs_are_not_honoured() -> None:
    platform, vm, device = _setup()
    _enable_msix(platform, vm)
    platform.guest_msix_entry_write(vm, GUEST, 0, *compose_compat(9, 0x40))  # no vCPU 9
    platform.guest_msix_entry_write(vm, GUEST, 1, *compose_compat(0, 0x10))  # vector below 32
    platform.guest_msix_entry_write(vm, GUEST, 2, *compose(7))  # not compatibility format
    assert platform.legacy.irte_indices(device) == []
    assert all(isinstance(platform.fire(device, MsgKind.MSIX, i), NotFired) for i in range(3))


def test_forged_requester_and_other_vms_device_are_blocked_and_counted() -> None:
    platform, vm1, dev1 = _setup()
    _enable_msix(platform, vm1)
    platform.guest_msix_entry_write(vm1, GUEST, 0, *compose_compat(0, 0x40))
    assert dev1.msix is not None
    slot = dev1.msix.table.slots[0]
    pair = (slot.address, slot.data)
    # a forged requester id on the bus
    fault = platform.route(MemoryWrite(Requester(0, dev1.host.rid ^ 1), *pair))
    assert isinstance(fault, Fault)
    assert fault.reason is FaultReason.SOURCE_ID_MISMATCH
    # another VM's device, programmed by its own guest (IMS writes reach the device directly)
    vm2 = platform.create_vm(2)
    dev2 = platform.add_device(MLX5_LIKE)
    platform.assign(dev2, vm2, GUEST)
    assert platform.guest_ims_write(vm2, GUEST, 0, *pair) == 0
    assert _blocked(platform.fire(dev2, MsgKind.IMS, 0)) is FaultReason.SOURCE_ID_MISMATCH
    # a pair naming an entry nobody allocated
    platform.guest_ims_write(vm2, GUEST, 1, *compose(4321))
    assert _blocked(platform.fire(dev2, MsgKind.IMS, 1)) is FaultReason.NOT_PRESENT
    assert vm1.interrupts() == []
    assert vm2.interrupts() == []
    assert platform.blocked_messages == 3
    assert platform.iommu.faults == {FaultReason.SOURCE_ID_MISMATCH: 2, FaultReason.NOT_PRESENT: 1}
    assert vm2.total_exits == 0


def test_ims_compat_writes_are_not_trapped_and_get_blocked() -> None:
    platform, vm, device = _setup("idxd")
    assert platform.guest_ims_write(vm, GUEST, 0, *compose_compat(0, 0x40)) == 0
    assert vm.total_exits == 0
    assert _blocked(platform.fire(device, MsgKind.IMS, 0)) is FaultReason.COMPATIBILITY_FORMAT
    assert vm.interrupts() == []
    assert platform.iommu.faults == {FaultReason.COMPATIBILITY_FORMAT: 1}


def test_multi_message_msi() -> None:
    platform, vm, device = _setup("msi")
    exits = platform.guest_msi_write(vm, GUEST, *compose_compat(2, 0x48), vectors=8)
    assert exits == 4
    assert vm.exits == {ExitReason.MSI_CAP_WRITE: 4}
    held = platform.legacy.irte_indices(device)
    assert len(held) == 8
    assert held[0] % 8 == 0
    assert held == list(range(held[0], held[0] + 8))
    for i in range(8):
        delivery = _delivered(platform.fire(device, MsgKind.MSI, i))
        assert (delivery.vcpu, delivery.vector, delivery.irte_index) == (2, 0x48 + i, held[0] + i)
    assert vm.vcpus[2].vectors() == list(range(0x48, 0x50))
    result = platform.fire(device, MsgKind.MSI, 8)
    assert isinstance(result, NotFired)
    # per-vector mask is mirrored; unmasking delivers the pending vector
    platform.guest_config_write(vm, GUEST, 0x50 + 0x10, 4, 1 << 3)
    assert isinstance(platform.fire(device, MsgKind.MSI, 3), NotFired)
    platform.guest_config_write(vm, GUEST, 0x50 + 0x10, 4, 0)
    assert vm.vcpus[2].vectors()[-1] == 0x4B
    # retarget while enabled: in place
    platform.guest_msi_write(vm, GUEST, *compose_compat(1, 0x80), vectors=8)
    assert platform.legacy.irte_indices(device) == held
    assert _delivered(platform.fire(device, MsgKind.MSI, 7)).vector == 0x87
    # disable: torn down
    platform.guest_config_write(vm, GUEST, 0x52, 2, 0)
    assert platform.table.occupancy == 0


def test_flr_resets_device_and_emulation() -> None:
    platform, vm, device = _setup()
    _enable_msix(platform, vm)
    platform.guest_msix_entry_write(vm, GUEST, 0, *compose_compat(0, 0x40))
    assert platform.table.occupancy == 1
    platform.flr(device)
    assert platform.table.occupancy == 0
    assert isinstance(platform.fire(device, MsgKind.MSIX, 0), NotFired)
    value, _ = platform.guest_config_read(vm, GUEST, MSIX_CAP_OFFSET + 2, 2)
    assert value & 0xC000 == 0
    # the guest reprograms after the FLR
    _enable_msix(platform, vm)
    platform.guest_msix_entry_write(vm, GUEST, 0, *compose_compat(0, 0x40))
    assert _delivered(platform.fire(device, MsgKind.MSIX, 0)).vector == 0x40


def test_hot_unplug_detaches_and_revokes() -> None:
    platform, vm, device = _setup()
    _enable_msix(platform, vm)
    platform.guest_msix_entry_write(vm, GUEST, 0, *compose_compat(0, 0x40))
    # a message held by "the hypervisor" (pvmsi) for the device's IMS
    pv = platform.table.alloc(Irte(vm.id, 1, 0x70, device.requester()))
    assert pv is not None
    seen: list[PciDevice] = []
    platform.unplug_listeners.append(seen.append)
    bar = platform.layout(device).bar_gpa
    assert platform.unplug(device) == 1  # the listener freed nothing, so the platform revoked the pvmsi entry
    assert seen == [device]
    assert platform.table.occupancy == 0
    assert device.removed
    assert device not in platform.devices
    assert platform.device_at(vm, GUEST) is None
    assert isinstance(platform.fire(device, MsgKind.MSIX, 0), NotFired)
    assert platform.guest_mmio_write(vm, bar, 4, 0)
    assert vm.exits[ExitReason.MMIO_UNHANDLED] == 1
    assert platform.guest_config_read(vm, GUEST, 0, 4) == (0xFFFFFFFF, True)
    with pytest.raises(ValueError, match="unplugged"):
        platform.assign(device, vm, GUEST)


def test_passthrough_claimed_kind_writes_reach_the_device_without_exits() -> None:
    platform, vm, device = _setup()
    assert not platform.legacy.enabled_through_emulation(device, MsgKind.MSIX)
    platform.set_passthrough(device, MsgKind.MSIX, True)
    assert platform.legacy.is_passthrough(device, MsgKind.MSIX)
    # the hypervisor allocated entry for slot 7, the guest writes the pair itself: the table is mapped (no exit),
    # Message Control stays trapped and is applied (HV-EMU-001, HV-EMU-006)
    index = platform.table.alloc(Irte(vm.id, 2, 0x90, device.requester()))
    assert index is not None
    assert platform.guest_config_write(vm, GUEST, MSIX_CAP_OFFSET + 2, 2, 0x8000)
    assert vm.exits[ExitReason.MSIX_CAP_WRITE] == 1
    assert device.msix is not None
    assert device.msix.enable
    assert platform.guest_msix_entry_write(vm, GUEST, 7, *compose(index)) == 0
    assert platform.guest_mmio_read(vm, platform.layout(device).msix_entry_gpa(7), 4)[1] is False
    control = 0x8000 | (device.msix.table_size - 1)
    assert platform.guest_config_read(vm, GUEST, MSIX_CAP_OFFSET + 2, 2) == (control, True)
    assert vm.total_exits == 2
    assert _delivered(platform.fire(device, MsgKind.MSIX, 7)).vector == 0x90
    # release: emulation resumes, the freed entry's pair still in the device is blocked
    platform.table.free(index)
    platform.set_passthrough(device, MsgKind.MSIX, False)
    assert platform.legacy.enabled_through_emulation(device, MsgKind.MSIX)
    assert _blocked(platform.fire(device, MsgKind.MSIX, 7)) is FaultReason.NOT_PRESENT
    assert platform.guest_msix_entry_write(vm, GUEST, 7, *compose_compat(0, 0x41)) == 4
    assert _delivered(platform.fire(device, MsgKind.MSIX, 7)).vector == 0x41


def test_subdevices_share_their_requester_id() -> None:
    """Sibling sub-devices are not isolated from each other by the IOMMU (HV-SEC-002, HV-SEC-010): one's pair
    written into the other's IMS entry delivers, into the same VM; a pair of another device is blocked."""
    platform, vm, device = _setup("idxd")
    sub_a, sub_b = device.subdevices[0], device.subdevices[1]
    index = platform.table.alloc(Irte(vm.id, 0, 0x44, device.requester()))
    assert index is not None
    platform.guest_ims_write(vm, GUEST, sub_a.slot(0), *compose(index))
    platform.guest_ims_write(vm, GUEST, sub_b.slot(0), *compose(index))
    assert _delivered(platform.fire(device, MsgKind.IMS, sub_a.slot(0))).vector == 0x44
    assert _delivered(platform.fire(device, MsgKind.IMS, sub_b.slot(0))).vm == vm.id
    assert vm.vcpus[0].vectors() == [0x44, 0x44]
    other = platform.table.alloc(Irte(vm.id, 0, 0x45, Requester(0, device.requester().rid ^ 8)))
    assert other is not None
    platform.guest_ims_write(vm, GUEST, sub_a.slot(1), *compose(other))
    assert _blocked(platform.fire(device, MsgKind.IMS, sub_a.slot(1))) is FaultReason.SOURCE_ID_MISMATCH


def test_destroy_vm_frees_everything() -> None:
    platform, vm, device = _setup()
    _enable_msix(platform, vm)
    for entry in range(16):
        platform.guest_msix_entry_write(vm, GUEST, entry, *compose_compat(entry % 4, 0x40 + entry))
    platform.table.alloc(Irte(vm.id, 0, 0x40, device.requester()), 4)
    assert platform.table.occupancy == 20
    assert platform.destroy_vm(vm) == 20
    assert platform.table.occupancy == 0
    assert vm.id not in platform.vms
    assert vm.destroyed
    assert device.vm_id is None
    assert not platform.legacy.is_attached(device)
    vm2 = platform.create_vm(1)
    platform.assign(device, vm2, GUEST)  # the device can be reassigned
    assert platform.layout(device).bar_gpa % platform.layout(device).bar_size == 0


def test_emulated_setup_of_a_full_msix_table_costs_four_exits_per_vector() -> None:
    platform, vm, device = _setup()
    _enable_msix(platform, vm)
    for entry in range(2048):
        platform.guest_msix_entry_write(vm, GUEST, entry, *compose_compat(entry % 4, 0x40 + entry % 128))
    assert vm.exits[ExitReason.MSIX_TABLE_WRITE] == 4 * 2048
    assert platform.table.occupancy == 2048
    assert _delivered(platform.fire(device, MsgKind.MSIX, 2047)).vector == 0x40 + 2047 % 128


def test_assignment_rules() -> None:
    platform, vm, device = _setup()
    with pytest.raises(ValueError, match="already assigned"):
        platform.assign(device, vm, Bdf(0, 0, 8))
    other = platform.add_device(MSI_MULTI)
    with pytest.raises(ValueError, match="already has a device"):
        platform.assign(other, vm, GUEST)
    with pytest.raises(ValueError, match="in use"):
        platform.add_device(MSI_MULTI, host=device.host)
    assert platform.deassign(device) == 0
    assert platform.device_at(vm, GUEST) is None
    assert vm.memory.mmio_at(platform.assign(other, vm, GUEST).bar_gpa) is not None


def test_claimed_msi_capability_is_the_hypervisors() -> None:
    """Explicit MSI model (HV-EMU-001..005): the hypervisor writes the pair with no guest exit; the guest's own
    pair and Multiple Message Enable writes exit and are ignored, its MSI Enable and mask bits are applied."""
    platform, vm, device = _setup("msi")
    platform.set_passthrough(device, MsgKind.MSI, True)
    base = platform.table.alloc(Irte(vm.id, 1, 0x60, device.requester()), 4)
    assert base is not None
    assert device.msi is not None
    platform.legacy.program_msi(device, *compose(base), 4)
    assert vm.total_exits == 0
    assert platform.legacy.host_writes(device) == 1
    assert platform.guest_msi_write(vm, GUEST, *compose_compat(0, 0x31), vectors=1) == 4
    assert vm.exits[ExitReason.MSI_CAP_WRITE] == 4
    assert (device.msi.address, device.msi.data, device.msi.vectors_enabled) == (*compose(base), 4)
    assert device.msi.enable  # the Enable bit of the guest's Message Control write was applied
    assert _delivered(platform.fire(device, MsgKind.MSI, 3)).vector == 0x63
    platform.guest_config_write(vm, GUEST, 0x50 + 0x10, 4, 1 << 3)
    assert isinstance(platform.fire(device, MsgKind.MSI, 3), NotFired)
    platform.guest_config_write(vm, GUEST, 0x50 + 0x10, 4, 0)  # unmask: the pending vector goes out
    assert vm.vcpus[1].vectors() == [0x63, 0x63]
    value, exited = platform.guest_config_read(vm, GUEST, 0x50 + 0xC, 2)
    assert exited
    assert value == compose(base)[1]
    platform.legacy.clear_msi(device)
    assert (device.msi.enable, device.msi.address, device.msi.data, device.msi.mme) == (False, 0, 0, 0)
    assert platform.legacy.host_writes(device) == 2
