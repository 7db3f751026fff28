"""Run the guest core in-process: its actions become register-level traps into the reference system and
driver-style register writes to the simulated devices (the in-process transport)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ...spec.callconv import CONVENTIONS, RISCV_EXTENSION_ID, SbiError
from ...spec.calls import CALLS_BY_FN
from ...spec.constants import MsgKind, Status
from ...spec.formats import BATCH_IN, BATCH_OUT
from ...spec.layout import layout_of
from ..hypervisor.arch import id_register, to_signed
from ..platform.pci_caps import MSI_CAP_OFFSET, MSIX_CAP_OFFSET, MsiCapability, MsixCapability
from ..platform.requester import Bdf
from ..system import ReferenceSystem, SystemVm, guest_subdevice
from .actions import GuestDevice, Hypercall, MaskSlot, ProgramSlot, ReadMemory, SetEnabled, Trap, WriteMemory

BY_ARCH = {cc.arch: cc for cc in CONVENTIONS}


class InProcessDriver:
    """Executes a guest core's actions on vCPU ``vcpu`` of ``vm`` in a :class:`ReferenceSystem`."""

    def __init__(self, system: ReferenceSystem, vm: SystemVm, *, vcpu: int = 0, arch: str = "x86_64") -> None:
        self.system = system
        self.vm = vm
        self.vcpu = vcpu
        self.cc = BY_ARCH[arch]
        self.hypercalls = 0
        self.device_writes = 0
        self._msi_enabled: set[Bdf] = set()

    def run(self, op: Generator[Any, Any, Any]) -> Any:
        """Drive ``op`` to completion and return its result."""
        answer: Any = None
        try:
            while True:
                action = op.send(answer)
                answer = self.execute(action)
        except StopIteration as stop:
            return stop.value

    def execute(self, action: Any) -> Any:
        if isinstance(action, Hypercall):
            return self._hypercall(action)
        if isinstance(action, WriteMemory):
            self.vm.vm.memory.write(action.gpa, action.data)
            return None
        if isinstance(action, ReadMemory):
            return self.vm.vm.memory.read(action.gpa, action.size)
        if isinstance(action, ProgramSlot):
            return self._program(action)
        if isinstance(action, SetEnabled):
            return self._set_enabled(action)
        if isinstance(action, MaskSlot):
            return self._mask(action)
        if isinstance(action, Trap):
            regs = dict(action.regs)
            return self.system.execute_trap(self.vm, self.vcpu, action.arch, action.instruction, regs) or regs
        raise TypeError(f"unknown guest action {action!r}")

    def install(self, device: GuestDevice, kind: MsgKind, slot: int, address: int, data: int, count: int) -> None:
        """Write a pair of a claimed kind into the device as a driver does, then enable its kind and unmask its
        slot (spec "Messages": the guest writes the pair where the device wants it; a claimed MSI capability holds
        the pair the hypervisor wrote, so for MSI the guest only enables and unmasks, GUEST-EMU-001)."""
        if kind is not MsgKind.MSI:
            self.execute(ProgramSlot(device, kind, slot, address, data, count))
        self.execute(SetEnabled(device, kind, True))
        self.execute(MaskSlot(device, kind, slot, False))

    # -- hypercalls through the architecture's registers ---------------------------------------------------

    def _hypercall(self, call: Hypercall) -> tuple[int, int]:
        cc = self.cc
        regs = {r: 0 for r in ("rax", "rbx", "rcx", "rdx", "rsi", "x0", "x1", "x2", "x3", "x4", "a0", "a1")}
        regs[id_register(cc)] = cc.function_id(call.fn)
        if cc.extra_id_register:
            regs[cc.extra_id_register] = RISCV_EXTENSION_ID
        for reg, value in zip(cc.argument_registers, call.args, strict=True):
            regs[reg] = value
        batched = call.fn in CALLS_BY_FN and CALLS_BY_FN[call.fn].batched
        if cc.arch == "riscv64" and batched:
            self._field(call.args[1], BATCH_OUT, "next_index", 0)  # so that an unwritten header completes nothing
        out = self.system.trap(self.vm, self.vcpu, cc.arch, regs)
        if out is None:  # pragma: no cover - the driver only issues pvmsi ids
            raise RuntimeError("trap not recognised as pvmsi")
        self.hypercalls += 1
        status, value = to_signed(out[cc.status_register]), out[cc.value_register]
        if cc.arch != "riscv64":
            return status, value
        # riscv64 (GUEST-ABI-002): sbiret. SBI_SUCCESS is SUCCESS, or INCOMPLETE when a batch stopped before its
        # end; on failure a1 is pvmsi's status and a failed batch's next_index is in batch_out.
        if status == SbiError.SUCCESS:
            if batched and value < self._field(call.args[0], BATCH_IN, "count"):
                return Status.INCOMPLETE, value
            return Status.SUCCESS, value
        return to_signed(value), self._field(call.args[1], BATCH_OUT, "next_index") if batched else 0

    def _field(self, gpa: int, fmt: Any, name: str, write: int | None = None) -> int:
        """Read (or write) one field of a block in guest memory."""
        f = layout_of(fmt).field(name)
        if write is not None:
            self.vm.vm.memory.write(gpa + f.offset, write.to_bytes(f.size, "little"))
            return write
        return int.from_bytes(self.vm.vm.memory.read(gpa + f.offset, f.size), "little")

    # -- device accesses (each may exit, when the hypervisor emulates that structure) ---------------------

    def _bdf(self, dev: GuestDevice) -> Bdf:
        return Bdf(dev.segment, dev.bus, dev.devfn)

    def _ims_slot(self, dev: GuestDevice, slot: int) -> int:
        if dev.pasid is None:
            return slot
        pci = self.vm.pci(dev.segment, dev.bus, dev.devfn)
        sub = guest_subdevice(pci, dev.pasid) if pci else None
        if sub is None:
            raise KeyError(f"no sub-device {dev.pasid}")
        return sub.slot(slot)

    def _program(self, a: ProgramSlot) -> None:
        p, vm, bdf = self.system.platform, self.vm.vm, self._bdf(a.device)
        self.device_writes += 1
        if a.kind is MsgKind.MSIX:
            p.guest_msix_entry_write(vm, bdf, a.slot, a.address, a.data, masked=True)
        elif a.kind is MsgKind.IMS:
            # A sub-device's entry gets PASID enable and the sub-device id, the guest's PASID (HV-SEC-011); where the
            # entry has no PASID field the device ignores it.  It is not a source: the IOMMU checks the requester id.
            slot = self._ims_slot(a.device, a.slot)
            p.guest_ims_write(vm, bdf, slot, a.address, a.data, masked=True, pasid=a.device.pasid)
        else:
            # Message Control is written too (Multiple Message Enable): keep MSI Enable as the driver last set it,
            # or a rewrite (retarget under emulation, after FLR) would switch MSI off.
            p.guest_msi_write(vm, bdf, a.address, a.data, vectors=a.vectors, enable=bdf in self._msi_enabled)

    def _set_enabled(self, a: SetEnabled) -> None:
        p, vm, bdf = self.system.platform, self.vm.vm, self._bdf(a.device)
        if a.kind is MsgKind.IMS:
            return  # IMS has no function-wide enable: slots are unmasked one by one
        self.device_writes += 1
        if a.kind is MsgKind.MSI:
            if a.enabled:
                self._msi_enabled.add(bdf)
            else:
                self._msi_enabled.discard(bdf)
            reg = MSI_CAP_OFFSET + MsiCapability.CONTROL
            control, _ = p.guest_config_read(vm, bdf, reg, 2)
            p.guest_config_write(vm, bdf, reg, 2, (control | 1) if a.enabled else (control & ~1))
        else:
            reg = MSIX_CAP_OFFSET + MsixCapability.CONTROL
            control, _ = p.guest_config_read(vm, bdf, reg, 2)
            bit = MsixCapability.ENABLE
            p.guest_config_write(vm, bdf, reg, 2, (control | bit) if a.enabled else (control & ~bit))

    def _mask(self, a: MaskSlot) -> None:
        p, vm, bdf = self.system.platform, self.vm.vm, self._bdf(a.device)
        self.device_writes += 1
        if a.kind is MsgKind.MSI:
            # An MSI block is one slot, 0: its MASK sets every Mask Bit; slot n > 0 is vector n's bit alone
            # (harness appendix, GUEST_DEVICE_OP).
            reg = MSI_CAP_OFFSET + MsiCapability.MASK
            if a.slot == 0:
                p.guest_config_write(vm, bdf, reg, 4, 0xFFFFFFFF if a.masked else 0)
                return
            mask, _ = p.guest_config_read(vm, bdf, reg, 4)
            bit = 1 << a.slot
            p.guest_config_write(vm, bdf, reg, 4, (mask | bit) if a.masked else (mask & ~bit))
            return
        layout = p.layout(p.device_at(vm, bdf) or _missing(bdf))
        if a.kind is MsgKind.MSIX:
            gpa = layout.msix_entry_gpa(a.slot)
        else:
            gpa = layout.ims_slot_gpa(self._ims_slot(a.device, a.slot))
        control, _ = p.guest_mmio_read(vm, gpa + 12, 4)  # keep the other control bits (an IMS entry's PASID)
        p.guest_mmio_write(vm, gpa + 12, 4, control & ~1 | int(a.masked))


def _missing(bdf: Bdf) -> Any:
    raise KeyError(f"no device at {bdf}")
