"""The harness device model and CONFIG_READ (spec appendix "Harness protocol", "Device model"): the reference
answers CONFIG_READ with the configuration space of the model, as the guest sees it, as the harness's inspection
(no exit, nothing changed; a sub-device reads its function's space); reset values, pending and unmask, emulated
delivery, sub-device IMS slots; ranges past a structure are BAD_PAYLOAD at the field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness_session import MLX5, Session, error, vm_config

from pvmsi.conformance.harness.frames import payload_at
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.reference.platform.requester import Bdf
from pvmsi.spec import harness_devices as hd
from pvmsi.spec.constants import MsgKind
from pvmsi.spec.formats.harness import CONFIG_READ
from pvmsi.spec.harness_constants import (
    HARNESS_CONFIG_SPACE_SIZE,
    DeviceProfile,
    DeviceSpace,
    FireOutcome,
    FrameKind,
    HarnessStatus,
    LifecycleEvent,
)
from pvmsi.spec.iut import BadRequest, DeviceRef, DeviceSlot

DEVICES = {
    DeviceProfile.MLX5: DeviceRef(0, 0, 0x08),
    DeviceProfile.PLAIN_MSI: DeviceRef(0, 0, 0x10),
    DeviceProfile.IDXD: DeviceRef(0, 0, 0x18),
}


@pytest.fixture
def setup() -> tuple[ReferenceHypervisor, int]:
    hv = ReferenceHypervisor()
    vm = hv.create_vm(2, 16, [DeviceSlot(p, d) for p, d in DEVICES.items()])
    return hv, vm


def _word(raw: bytes, at: int, size: int) -> int:
    return int.from_bytes(raw[at : at + size], "little")


@pytest.mark.parametrize("profile", list(DEVICES), ids=lambda p: p.name)
def test_the_reference_shows_the_device_model(setup: tuple[ReferenceHypervisor, int], profile: DeviceProfile) -> None:
    hv, vm = setup
    model = hd.DEVICES[profile]
    raw = hv.config_read(vm, DEVICES[profile], 0, HARNESS_CONFIG_SPACE_SIZE)
    assert len(raw) == HARNESS_CONFIG_SPACE_SIZE
    assert (_word(raw, 0, 2), _word(raw, 2, 2)) == (model.vendor_id, model.device_id)
    assert _word(raw, hd.STATUS, 2) & hd.STATUS_CAP_LIST
    caps, at = [], raw[hd.CAP_POINTER]
    while at:
        caps.append((at, raw[at]))
        at = raw[at + 1]
    assert tuple(caps) == model.capabilities
    if model.msi_vectors:
        control = _word(raw, hd.MSI_CAP_OFFSET + hd.MSI_CONTROL, 2)
        assert control == (5 << hd.MSI_MMC_SHIFT) | hd.MSI_64BIT | hd.MSI_PER_VECTOR_MASK  # 32 vectors, reset
        assert raw[hd.MSI_CAP_OFFSET + hd.MSI_ADDRESS_LO : hd.MSI_CAP_OFFSET + hd.MSI_CAP_SIZE] == bytes(0x14)
    if model.msix_table_size:
        at = hd.MSIX_CAP_OFFSET
        assert _word(raw, at + hd.MSIX_CONTROL, 2) == model.msix_table_size - 1  # disabled, not function-masked
        assert _word(raw, at + hd.MSIX_TABLE, 4) == model.bar()["msix_table"][0]
        assert _word(raw, at + hd.MSIX_PBA, 4) == model.bar()["msix_pba"][0]


def test_a_read_counts_no_exit_and_shows_guest_writes(setup: tuple[ReferenceHypervisor, int]) -> None:
    hv, vm = setup
    dev = DEVICES[DeviceProfile.PLAIN_MSI]
    before = hv.counters(vm)
    hv.config_read(vm, dev, 0, 256)
    assert hv.counters(vm) == before
    hv.device_write(vm, dev, DeviceSpace.CONFIG, hd.MSI_CAP_OFFSET + hd.MSI_MASK, 4, 0x5)
    raw = hv.config_read(vm, dev, hd.MSI_CAP_OFFSET, 0x18)
    assert _word(raw, hd.MSI_MASK, 4) == 0x5  # the emulated capability, as the guest wrote it


def test_a_sub_device_reads_its_functions_space(setup: tuple[ReferenceHypervisor, int]) -> None:
    hv, vm = setup
    idxd = DEVICES[DeviceProfile.IDXD]
    assert hv.config_read(vm, idxd.with_pasid(1), 0, 256) == hv.config_read(vm, idxd, 0, 256)


@pytest.mark.parametrize(
    ("offset", "size", "field"),
    [(0, 0, "size"), (0, 6, "size"), (0, HARNESS_CONFIG_SPACE_SIZE + 4, "size"), (2, 4, "offset"), (4092, 8, "offset")],
)
def test_bad_ranges_are_bad_payload_at_the_field(offset: int, size: int, field: str) -> None:
    s = Session()
    vm = int(s.ask(FrameKind.VM_CREATE, {**vm_config(), "device_count": 1}, entries=[MLX5]).body.vm)
    body = {"vm": vm, "device": DEVICES[DeviceProfile.MLX5].wire(), "offset": offset, "size": size}
    assert error(s.ask(FrameKind.CONFIG_READ, body)) == (HarnessStatus.BAD_PAYLOAD, payload_at(CONFIG_READ, field))


def test_the_response_carries_the_bytes() -> None:
    s = Session()
    vm = int(s.ask(FrameKind.VM_CREATE, {**vm_config(), "device_count": 1}, entries=[MLX5]).body.vm)
    f = s.ask(FrameKind.CONFIG_READ, {"vm": vm, "device": DEVICES[DeviceProfile.MLX5].wire(), "offset": 0, "size": 4})
    assert f.kind is FrameKind.CONFIG_DATA
    model = hd.DEVICES[DeviceProfile.MLX5]
    assert f.data[:4] == (model.vendor_id | model.device_id << 16).to_bytes(4, "little")
    f = s.ask(FrameKind.CONFIG_READ, {"vm": vm, "device": DeviceRef(0, 0, 0x30).wire(), "offset": 0, "size": 4})
    assert error(f)[0] is HarnessStatus.UNKNOWN_DEVICE


# -- the rest of the device model: reset values, pending and unmask, ranges, sub-devices -------------------------


def _program_msix(hv: ReferenceHypervisor, vm: int, dev: DeviceRef, entry: int, vcpu: int, vector: int) -> None:
    """The guest's emulated-path programming (x86 compatibility format: 0xFEE00000 | APIC id << 12, vector)."""
    base = entry * hd.SLOT_SIZE
    hv.device_write(
        vm, dev, DeviceSpace.MSIX_TABLE, base + hd.SLOT_ADDRESS_LO, 4, hd.GUEST_INTERRUPT_WINDOW | vcpu << 12
    )
    hv.device_write(vm, dev, DeviceSpace.MSIX_TABLE, base + hd.SLOT_ADDRESS_HI, 4, 0)
    hv.device_write(vm, dev, DeviceSpace.MSIX_TABLE, base + hd.SLOT_DATA, 4, vector)


def test_msix_entries_reset_masked_and_a_pending_message_goes_out_on_unmask(
    setup: tuple[ReferenceHypervisor, int],
) -> None:
    hv, vm = setup
    dev = DEVICES[DeviceProfile.MLX5]
    _program_msix(hv, vm, dev, 3, 1, 0x45)
    hv.device_write(vm, dev, DeviceSpace.CONFIG, hd.MSIX_CAP_OFFSET + hd.MSIX_CONTROL, 2, hd.MSIX_ENABLE)
    assert hv.fire(vm, dev, MsgKind.MSIX, 3).outcome is FireOutcome.PENDING  # Vector Control resets masked
    assert hv.collect(vm) == []
    hv.device_write(vm, dev, DeviceSpace.MSIX_TABLE, 3 * hd.SLOT_SIZE + hd.SLOT_CONTROL, 4, 0)  # unmask
    assert hv.collect(vm) == [(1, 0x45)]  # the held message, delivered as the guest's pair says (emulated)
    r = hv.fire(vm, dev, MsgKind.MSIX, 3)
    assert (r.outcome, r.vcpu, r.vector) == (FireOutcome.DELIVERED, 1, 0x45)


def test_an_msi_vector_beyond_the_enabled_count_is_not_sent_and_not_held(
    setup: tuple[ReferenceHypervisor, int],
) -> None:
    hv, vm = setup
    dev = DEVICES[DeviceProfile.PLAIN_MSI]
    cap = hd.MSI_CAP_OFFSET
    hv.device_write(vm, dev, DeviceSpace.CONFIG, cap + hd.MSI_ADDRESS_LO, 4, hd.GUEST_INTERRUPT_WINDOW)
    hv.device_write(vm, dev, DeviceSpace.CONFIG, cap + hd.MSI_DATA, 2, 0x40)
    hv.device_write(vm, dev, DeviceSpace.CONFIG, cap + hd.MSI_CONTROL, 2, 1 << hd.MSI_MME_SHIFT | hd.MSI_ENABLE)
    assert hv.fire(vm, dev, MsgKind.MSI, 2).outcome is FireOutcome.PENDING  # 2 vectors enabled: not sent
    hv.device_write(vm, dev, DeviceSpace.CONFIG, cap + hd.MSI_CONTROL, 2, 2 << hd.MSI_MME_SHIFT | hd.MSI_ENABLE)
    assert hv.collect(vm) == []  # and not held either
    r = hv.fire(vm, dev, MsgKind.MSI, 1)
    assert (r.outcome, r.vector) == (FireOutcome.DELIVERED, 0x41)  # data | vector


def test_ranges_past_a_structure_are_bad_payload(setup: tuple[ReferenceHypervisor, int]) -> None:
    hv, vm = setup
    mlx5, idxd, msi = (DEVICES[p] for p in (DeviceProfile.MLX5, DeviceProfile.IDXD, DeviceProfile.PLAIN_MSI))
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: hv.fire(vm, msi, MsgKind.MSI, 32), "index"),
        (lambda: hv.fire(vm, mlx5, MsgKind.MSIX, 2048), "index"),
        (lambda: hv.fire(vm, idxd.with_pasid(1), MsgKind.IMS, 256), "index"),
        (lambda: hv.device_write(vm, mlx5, DeviceSpace.MSIX_TABLE, 2048 * hd.SLOT_SIZE, 4, 0), "offset"),
        (lambda: hv.device_write(vm, idxd.with_pasid(8), DeviceSpace.IMS, 256 * hd.SLOT_SIZE, 4, 0), "offset"),
        (lambda: hv.device_write(vm, mlx5, DeviceSpace.CONFIG, HARNESS_CONFIG_SPACE_SIZE, 4, 0), "offset"),
        (lambda: hv.device_write(vm, mlx5, DeviceSpace.MSIX_TABLE, 2, 4, 0), "offset"),
    ]
    for call, field in cases:
        with pytest.raises(BadRequest) as e:
            call()
        assert e.value.field == field


def test_a_sub_devices_ims_slots_are_its_own(setup: tuple[ReferenceHypervisor, int]) -> None:
    """IMS offset 0 of sub-device 2 is device-wide slot 256: what the function's identity reaches at 256 * 16."""
    hv, vm = setup
    idxd = DEVICES[DeviceProfile.IDXD]
    share = hd.DEVICES[DeviceProfile.IDXD].subdevice_slots
    hv.device_write(vm, idxd.with_pasid(2), DeviceSpace.IMS, hd.SLOT_DATA, 4, 0x1234)
    hv.device_write(vm, idxd, DeviceSpace.IMS, share * hd.SLOT_SIZE + hd.SLOT_DATA, 4, 0x1234)
    pci = hv.system.platform.device_at(hv._vm(vm).vm, Bdf(0, 0, idxd.devfn))
    assert pci is not None
    assert pci.ims is not None
    assert pci.ims.slot(share).data == 0x1234
    assert pci.ims.slot(0).data == 0


def test_the_functions_identity_addresses_the_whole_ims_store(setup: tuple[ReferenceHypervisor, int]) -> None:
    """IDXD: the function's own messages have no IMS slot, yet its identity reaches every slot of the store
    (8 x 256): the last one fires, one past it is rule 12; sub-device 8's slot 255 is the store's last."""
    hv, vm = setup
    idxd = DEVICES[DeviceProfile.IDXD]
    store = hd.DEVICES[DeviceProfile.IDXD].ims_store
    assert (hd.DEVICES[DeviceProfile.IDXD].ims_slots, store) == (0, 2048)
    hv.device_write(vm, idxd, DeviceSpace.IMS, (store - 1) * hd.SLOT_SIZE, 4, hd.GUEST_INTERRUPT_WINDOW | 1 << 12)
    hv.device_write(vm, idxd.with_pasid(8), DeviceSpace.IMS, 255 * hd.SLOT_SIZE + hd.SLOT_DATA, 4, 0x47)
    hv.device_write(vm, idxd, DeviceSpace.IMS, (store - 1) * hd.SLOT_SIZE + hd.SLOT_CONTROL, 4, 0)
    assert (
        hv.fire(vm, idxd, MsgKind.IMS, store - 1).outcome is hv.fire(vm, idxd.with_pasid(8), MsgKind.IMS, 255).outcome
    )
    with pytest.raises(BadRequest):
        hv.fire(vm, idxd, MsgKind.IMS, store)


def test_flr_of_a_sub_device_resets_its_function(setup: tuple[ReferenceHypervisor, int]) -> None:
    """LIFECYCLE FLR naming a sub-device acts on the function: its MSI-X table and every IMS slot reset."""
    hv, vm = setup
    idxd = DEVICES[DeviceProfile.IDXD]
    hv.device_write(vm, idxd, DeviceSpace.IMS, 5 * hd.SLOT_SIZE + hd.SLOT_DATA, 4, 0x1234)
    hv.device_write(vm, idxd.with_pasid(3), DeviceSpace.IMS, hd.SLOT_DATA, 4, 0x5678)
    hv.lifecycle(vm, LifecycleEvent.FLR, idxd.with_pasid(1))
    pci = hv.system.platform.device_at(hv._vm(vm).vm, Bdf(0, 0, idxd.devfn))
    assert pci is not None
    assert pci.ims is not None
    assert (pci.ims.slot(5).data, pci.ims.slot(512).data) == (0, 0)
    assert pci.ims.masked(5)
