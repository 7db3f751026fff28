"""How a hypervisor-suite test touches a device as the guest's driver would (spec appendix "Harness protocol",
"Device model"): configuration space read and written, a pair programmed into an MSI capability, an MSI-X table
entry or an IMS slot, the kind enabled, and the device made to fire.  A part of :class:`~.toolkit.Session`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..spec import harness_devices as hd
from ..spec.constants import MsgKind
from ..spec.harness_constants import DeviceSpace
from ..spec.iut import DeviceRef, FireResult, HypervisorIUT

#: Register layout of the harness device profiles (spec appendix "Harness protocol", "Device model").
MSI_CAP = hd.MSI_CAP_OFFSET
MSIX_CAP = hd.MSIX_CAP_OFFSET
MSIX_ENABLE = hd.MSIX_ENABLE


class DeviceAccess:
    """The device accesses of a :class:`~.toolkit.Session`, each logged in its transcript."""

    iut: HypervisorIUT
    #: The IUT underneath ``iut``: these helpers write their own transcript lines.
    wire: HypervisorIUT

    @property
    def vm(self) -> int:
        raise NotImplementedError  # the session's

    def log(self, line: str) -> None:
        raise NotImplementedError  # the session's

    def test_vector(self, vector: int) -> int:
        raise NotImplementedError  # the session's

    def config_write(self, dev: DeviceRef, offset: int, size: int, value: int, *, vm: int | None = None) -> bool:
        vm = self.vm if vm is None else vm
        exited = self.wire.device_write(vm, dev, DeviceSpace.CONFIG, offset, size, value)
        self.log(f"vm {vm} config write {dev} +{offset:#x}/{size} = {value:#x} -> exit={exited}")
        return exited

    def config_read(self, dev: DeviceRef, offset: int = 0, size: int = 256, *, vm: int | None = None) -> bytes:
        """Bytes of ``dev``'s configuration space as its guest sees them (harness CONFIG_READ: no exit)."""
        vm = self.vm if vm is None else vm
        data = self.wire.config_read(vm, dev, offset, size)
        self.log(f"vm {vm} config read {dev} +{offset:#x}/{size} -> {data.hex()}")
        return data

    def program(
        self,
        dev: DeviceRef,
        kind: MsgKind,
        slot: int,
        address: int,
        data: int,
        *,
        vectors: int = 1,
        vm: int | None = None,
        masked: bool = False,
    ) -> int:
        """Write a pair into a slot as a driver does; returns the exits it caused."""
        vm = self.vm if vm is None else vm
        annotate = getattr(self.wire, "annotate_pair", None)
        if annotate is not None:  # scenario vectors: the next device writes carry this pair
            annotate(address, data)
        exits = 0
        if kind is MsgKind.MSI:
            mme = (vectors.bit_length() - 1) << hd.MSI_MME_SHIFT
            for off, size_, val in (
                (MSI_CAP + hd.MSI_ADDRESS_LO, 4, address & 0xFFFFFFFF),
                (MSI_CAP + hd.MSI_ADDRESS_HI, 4, address >> 32),
                (MSI_CAP + hd.MSI_DATA, 2, data),
                (MSI_CAP + hd.MSI_CONTROL, 2, mme),
            ):
                exits += self.wire.device_write(vm, dev, DeviceSpace.CONFIG, off, size_, val)
        else:
            space = DeviceSpace.MSIX_TABLE if kind is MsgKind.MSIX else DeviceSpace.IMS
            base = slot * hd.SLOT_SIZE
            for off, val in (
                (hd.SLOT_ADDRESS_LO, address & 0xFFFFFFFF),
                (hd.SLOT_ADDRESS_HI, address >> 32),
                (hd.SLOT_DATA, data),
                (hd.SLOT_CONTROL, int(masked) * hd.SLOT_MASK),
            ):
                exits += self.wire.device_write(vm, dev, space, base + off, 4, val)
        self.log(f"vm {vm} program {dev} {kind.name}[{slot}] = ({address:#x}, {data:#x}) -> {exits} exits")
        return exits

    def enable(self, dev: DeviceRef, kind: MsgKind, *, vectors: int = 1, vm: int | None = None) -> int:
        """Set MSI Enable (with Multiple Message Enable) or MSI-X Enable; IMS has none. Returns exits."""
        vm = self.vm if vm is None else vm
        if kind is MsgKind.MSI:
            control = (vectors.bit_length() - 1) << hd.MSI_MME_SHIFT | hd.MSI_ENABLE
            return int(self.config_write(dev, MSI_CAP + hd.MSI_CONTROL, 2, control, vm=vm))
        if kind is MsgKind.MSIX:
            return int(self.config_write(dev, MSIX_CAP + hd.MSIX_CONTROL, 2, MSIX_ENABLE, vm=vm))
        return 0

    def fire(self, dev: DeviceRef, kind: MsgKind, index: int, *, vm: int | None = None) -> FireResult:
        vm = self.vm if vm is None else vm
        r = self.wire.fire(vm, dev, kind, index)
        self.log(f"vm {vm} fire {dev} {kind.name}[{index}] -> {r.outcome.name} vcpu={r.vcpu} vector={r.vector:#x}")
        return replace(r, vector=self.test_vector(r.vector)) if r.vector else r

    def live(
        self, dev: DeviceRef, kind: MsgKind, slot: int, result: Any, *, vectors: int = 1, vm: int | None = None
    ) -> None:
        """Program an allocation's pair into its slot and enable it; a claimed MSI capability holds the pair the
        hypervisor wrote (HV-EMU-002), so for MSI the guest only sets MSI Enable (GUEST-EMU-001)."""
        if kind is not MsgKind.MSI:
            self.program(dev, kind, slot, result.address, result.data, vectors=vectors, vm=vm)
        self.enable(dev, kind, vectors=vectors, vm=vm)
