"""End to end through the in-process driver: the reference guest core, the reference hypervisor core and the
simulated platform, every interrupt checked where it lands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pvmsi.conformance.faults import FAULTS
from pvmsi.reference.guest.actions import GuestDevice
from pvmsi.reference.guest.core import GuestCore, GuestError, GuestMessage, GuestMode, Target
from pvmsi.reference.guest.driver import InProcessDriver
from pvmsi.reference.hypervisor.core import HypervisorCore
from pvmsi.reference.hypervisor.ports import VmPort
from pvmsi.reference.hypervisor.vmstate import DeviceKey
from pvmsi.reference.platform.iommu import Fault
from pvmsi.reference.platform.pci import MemoryWrite, PciDevice
from pvmsi.reference.platform.pci_caps import MSIX_CAP_OFFSET, MsixCapability
from pvmsi.reference.platform.platform import Delivered
from pvmsi.reference.platform.profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI
from pvmsi.reference.platform.requester import Bdf
from pvmsi.reference.platform.vm import ExitReason
from pvmsi.reference.system import ReferenceSystem, SystemVm
from pvmsi.spec.constants import MsgKind, Status

NIC, MSI_DEV, ACCEL = Bdf(0, 0, 0x08), Bdf(0, 0, 0x10), Bdf(0, 0, 0x18)
NIC_G = GuestDevice(0, 0, 0x08)
MSI_G = GuestDevice(0, 0, 0x10)
SUB_G = GuestDevice(0, 0, 0x18, 1)


def faulty_hv_core(name: str) -> type[HypervisorCore]:
    impl = FAULTS[name].implementation
    assert issubclass(impl, HypervisorCore)
    return impl


@dataclass
class Env:
    system: ReferenceSystem
    vm: SystemVm
    guest: GuestCore
    driver: InProcessDriver

    def pci(self, bdf: Bdf, vm: SystemVm | None = None) -> PciDevice:
        dev = (vm or self.vm).pci(bdf.segment, bdf.bus, bdf.devfn)
        assert dev is not None
        return dev

    def fire(self, bdf: Bdf, kind: MsgKind, index: int) -> list[tuple[int, int]]:
        """Fire and return every (vcpu, vector) injected anywhere in the VM by it."""
        for v in self.vm.vm.vcpus:
            v.take()
        self.system.platform.fire(self.pci(bdf), kind, index)
        return [(v.index, irq.vector) for v in self.vm.vm.vcpus for irq in v.take()]


@pytest.fixture
def env() -> Env:
    system = ReferenceSystem()
    vm = system.create_vm(4, devices=[(MLX5_LIKE, NIC), (MSI_MULTI, MSI_DEV), (IDXD_LIKE, ACCEL)])
    guest = GuestCore(scratch_gpa=0x10000)
    driver = InProcessDriver(system, vm)
    assert driver.run(guest.boot()) is GuestMode.PVMSI
    return Env(system, vm, guest, driver)


def test_msix_end_to_end(env: Env) -> None:
    msgs: list[GuestMessage] = env.driver.run(
        env.guest.enable(NIC_G, MsgKind.MSIX, [Target(i, i % 4, 0x40 + i) for i in range(100)])
    )
    assert len({m.handle for m in msgs}) == 100
    assert all(m.handle for m in msgs)
    for m in msgs:
        assert env.fire(NIC, MsgKind.MSIX, m.slot) == [(m.vcpu, m.vector)]
    assert env.vm.vm.exits[ExitReason.MSIX_TABLE_WRITE] == 0  # claimed: the table is written without exits


def test_msi_multi_message_end_to_end(env: Env) -> None:
    (m,) = env.driver.run(env.guest.enable(MSI_G, MsgKind.MSI, [Target(0, 2, 0x60, 16)]))
    assert m.data & 0xF == 0  # a block: the low log2(count) bits of data are zero
    for i in range(16):
        assert env.fire(MSI_DEV, MsgKind.MSI, i) == [(2, 0x60 + i)]


def test_ims_on_subdevice_end_to_end(env: Env) -> None:
    msgs = env.driver.run(env.guest.enable(SUB_G, MsgKind.IMS, [Target(i, 3, 0x90 + i) for i in range(5)]))
    sub = env.pci(ACCEL).subdevices[0]
    for m in msgs:
        assert env.fire(ACCEL, MsgKind.IMS, sub.slot(m.slot)) == [(3, m.vector)]
    # the same pair written with another sub-device's PASID shares the requester id: not told apart, it reaches
    # this VM only (HV-SEC-002, HV-SEC-010); written by another requester id it is blocked
    pci = env.pci(ACCEL)
    sibling = env.system.platform.route(MemoryWrite(pci.requester(pci.subdevices[1].pasid), msgs[0].address, 0))
    assert not isinstance(sibling, Fault)
    assert sibling.vm == env.vm.vm_id
    other = env.pci(NIC).requester()
    assert isinstance(env.system.platform.route(MemoryWrite(other, msgs[0].address, msgs[0].data)), Fault)


def test_retarget_without_device_rewrite(env: Env) -> None:
    msgs = env.driver.run(env.guest.enable(NIC_G, MsgKind.MSIX, [Target(i, 0, 0x40 + i) for i in range(8)]))
    pairs = [(m.address, m.data) for m in msgs]
    writes = env.driver.device_writes
    rewrites = env.driver.run(env.guest.set_affinity(NIC_G, [(m, 3, 0xA0 + m.slot) for m in msgs]))
    assert rewrites == 0
    assert env.driver.device_writes == writes
    assert [(m.address, m.data) for m in msgs] == pairs
    for m in msgs:
        assert env.fire(NIC, MsgKind.MSIX, m.slot) == [(3, 0xA0 + m.slot)]


def test_flr_then_rewrite(env: Env) -> None:
    msgs = env.driver.run(env.guest.enable(NIC_G, MsgKind.MSIX, [Target(i, 1, 0x50 + i) for i in range(4)]))
    env.system.flr(env.vm, NIC)
    assert env.fire(NIC, MsgKind.MSIX, 0) == []  # the device forgot its pairs (disabled after FLR)
    assert env.driver.run(env.guest.after_flr(NIC_G)) == 4
    for m in msgs:
        assert env.fire(NIC, MsgKind.MSIX, m.slot) == [(1, m.vector)]  # same handles, same pairs


def test_hot_unplug(env: Env) -> None:
    msgs = env.driver.run(env.guest.enable(NIC_G, MsgKind.MSIX, [Target(i, 0, 0x40 + i) for i in range(4)]))
    pci = env.pci(NIC)
    occupancy = env.system.platform.table.occupancy
    env.system.unplug(env.vm, NIC)
    assert env.system.platform.table.occupancy == occupancy - 4
    assert env.guest.on_unplug(NIC_G) == 4
    assert isinstance(env.system.platform.route(MemoryWrite(pci.requester(), msgs[0].address, msgs[0].data)), Fault)
    with pytest.raises(GuestError) as err:
        env.driver.run(env.guest.query(NIC_G))
    assert err.value.status == Status.UNKNOWN_DEVICE


def test_release_resumes_emulation(env: Env) -> None:
    msgs = env.driver.run(env.guest.enable(NIC_G, MsgKind.MSIX, [Target(0, 0, 0x40)]))
    control = MSIX_CAP_OFFSET + MsixCapability.CONTROL
    lay = env.system.platform.layout(env.pci(NIC))
    before = env.vm.vm.total_exits
    env.system.platform.guest_config_write(env.vm.vm, NIC, control, 2, MsixCapability.ENABLE)
    assert env.vm.vm.total_exits == before + 1  # claimed: configuration space still traps (HV-EMU-001)
    env.system.platform.guest_msix_entry_write(env.vm.vm, NIC, 0, msgs[0].address, msgs[0].data)
    assert env.system.platform.guest_mmio_read(env.vm.vm, lay.msix_pba_gpa or 0, 8)[1] is False
    assert env.vm.vm.total_exits == before + 1  # the MSI-X table and PBA are mapped: no exit (HV-DEV-009)
    env.driver.run(env.guest.disable(NIC_G, MsgKind.MSIX))
    assert env.driver.run(env.guest.release(NIC_G)) == 0
    before = env.vm.vm.total_exits
    env.system.platform.guest_config_write(env.vm.vm, NIC, control, 2, 0)
    env.system.platform.guest_msix_entry_write(env.vm.vm, NIC, 0, 0xFEE00000, 0x41)
    assert env.vm.vm.total_exits == before + 1 + 4  # trapped again: the capability write and 4 table writes
    # the stale pvmsi pair the device may still hold is revoked
    assert isinstance(
        env.system.platform.route(MemoryWrite(env.pci(NIC).requester(), msgs[0].address, msgs[0].data)), Fault
    )


def test_release_frees_what_is_left(env: Env) -> None:
    env.driver.run(env.guest.enable(NIC_G, MsgKind.MSIX, [Target(i, 0, 0x40 + i) for i in range(6)]))
    assert env.driver.run(env.guest.release(NIC_G)) == 6


def test_isolation_attacks_blocked(env: Env) -> None:
    (m,) = env.driver.run(env.guest.enable(NIC_G, MsgKind.MSIX, [Target(0, 1, 0x44)]))
    intruder = env.system.create_vm(2, devices=[(MLX5_LIKE, NIC)])
    platform = env.system.platform
    faults = platform.iommu.fault_count
    forged = platform.route(MemoryWrite(env.pci(MSI_DEV).requester(), m.address, m.data))
    replay = platform.route(MemoryWrite(env.pci(NIC, intruder).requester(), m.address, m.data))
    assert isinstance(forged, Fault)
    assert isinstance(replay, Fault)
    assert platform.iommu.fault_count == faults + 2
    assert not [i for v in (*env.vm.vm.vcpus, *intruder.vm.vcpus) for i in v.interrupts]
    # the other VM's guest cannot use, free or retarget the handle either
    g2, d2 = GuestCore(scratch_gpa=0x10000), InProcessDriver(env.system, intruder)
    d2.run(g2.boot())
    d2.run(g2.claim(NIC_G))
    with pytest.raises(GuestError) as err:
        d2.run(g2.set_affinity(NIC_G, [(m, 0, 0x50)]))
    assert err.value.status == Status.UNKNOWN_HANDLE
    assert env.fire(NIC, MsgKind.MSIX, 0) == [(1, 0x44)]  # still the owner's


def test_emulated_guest_falls_back_and_counts_exits() -> None:
    system = ReferenceSystem()
    vm = system.create_vm(4, devices=[(MLX5_LIKE, NIC)])
    guest = GuestCore(scratch_gpa=0x10000, known_features=0)
    driver = InProcessDriver(system, vm)
    assert driver.run(guest.boot()) is GuestMode.EMULATED
    msgs = driver.run(guest.enable(NIC_G, MsgKind.MSIX, [Target(i, i % 4, 0x40 + i) for i in range(8)]))
    assert vm.vm.exits[ExitReason.MSIX_TABLE_WRITE] >= 8 * 4
    pci = vm.pci(0, 0, 0x08)
    assert pci is not None
    for m in msgs:
        outcome = system.platform.fire(pci, MsgKind.MSIX, m.slot)
        assert isinstance(outcome, Delivered)
        assert (outcome.delivery.vcpu, outcome.delivery.vector) == (m.vcpu, m.vector)


class FlrRecordingCore(HypervisorCore):
    """The reference core, recording each claimed device an FLR reached (the reference's own FLR changes nothing
    the guest sees: HV-FLR-001 keeps the claim, the handles and their remapping)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flr_reached: list[DeviceKey] = []

    def flr(self, vm: VmPort, key: DeviceKey) -> None:
        if key in self.state_of(vm).claims:
            self.flr_reached.append(key)
        super().flr(vm, key)


@pytest.mark.parametrize("core", [FlrRecordingCore, faulty_hv_core("flr-drops-messages")])
def test_flr_reaches_the_subdevices_of_every_idxd_like_device(core: type[HypervisorCore]) -> None:
    """Two IDXD-like devices: the second's sub-devices have host PASIDs 9..16 but guest ids 1..8. An FLR of the
    second device reaches the claim of the sub-device the guest claimed (spec "Function-level reset": HV-FLR-001
    keeps claim and handles; the core whose FLR drops messages makes the FLR's arrival visible)."""
    first, second = Bdf(0, 0, 0x18), Bdf(0, 0, 0x20)
    system = ReferenceSystem(core=core)
    vm = system.create_vm(4, devices=[(IDXD_LIKE, first), (IDXD_LIKE, second)])
    guest, driver = GuestCore(scratch_gpa=0x10000), InProcessDriver(system, vm)
    assert driver.run(guest.boot()) is GuestMode.PVMSI
    sub = GuestDevice(0, 0, 0x20, 2)
    msgs = driver.run(guest.enable(sub, MsgKind.IMS, [Target(i, 1, 0x70 + i) for i in range(3)]))
    pci = vm.pci(0, 0, 0x20)
    assert pci is not None
    assert pci.subdevices[1].pasid != 2  # the bug's precondition: host PASID and guest id differ
    key = (0, 0, 0x20, 2)
    system.flr(vm, second)
    st = system.core.state_of(vm)
    assert key in st.claims  # HV-FLR-001: the claim stays
    if isinstance(system.core, FlrRecordingCore):
        assert system.core.flr_reached == [key]
        assert {m.handle for m in msgs} <= set(st.messages)
        assert driver.run(guest.after_flr(sub)) == 3
        for m in msgs:
            outcome = system.platform.fire(pci, MsgKind.IMS, pci.subdevices[1].slot(m.slot))
            assert isinstance(outcome, Delivered)
            assert (outcome.delivery.vcpu, outcome.delivery.vector) == (1, m.vector)
    else:
        assert not [h for h, m in st.messages.items() if m.device == key]  # the FLR reached the claim
