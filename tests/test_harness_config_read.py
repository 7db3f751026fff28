"""CONFIG_READ (spec appendix "Harness protocol", "Device model"): the reference answers with the configuration
space of the harness device model, as the guest sees it; the read is the harness's inspection (no exit, nothing
changed); a sub-device reads its function's space; bad ranges are BAD_PAYLOAD at the field."""

from __future__ import annotations

import pytest
from test_harness_sessions import MLX5, Session, error, vm_config

from pvmsi.conformance.harness.frames import payload_at
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec import harness_devices as hd
from pvmsi.spec.formats.harness import CONFIG_READ
from pvmsi.spec.harness_constants import HARNESS_CONFIG_SPACE_SIZE, DeviceProfile, DeviceSpace, FrameKind, HarnessStatus
from pvmsi.spec.iut import DeviceRef, DeviceSlot

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
