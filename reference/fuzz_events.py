"""What happens to a fuzzed host between calls, each checked against the model (:mod:`.fuzz_model`): pairs the
guest holds written into devices and fired, forged and replayed writes, FLR, migration, VM reset, hot-unplug, VM
destruction and the discovery traps (spec "Security considerations", "Reset, FLR, hot-unplug and migration",
"Discovery")."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from ..spec.callconv import (
    ARM64,
    ARM64_SMCCC_HINTS,
    ARM64_VENDOR_HYP_CALL_UID,
    PVMSI_UID,
    RISCV_EXTENSION_ID,
    X86_64,
    X86_CPL_REFUSED,
    X86_CPUID_SIGNATURE,
    SbiError,
    X86Path,
    uid_registers,
)
from ..spec.constants import EventType, FunctionNumber, MsgKind, Status
from ..spec.version import encode_version
from .fuzz_model import Model
from .guest.actions import GuestDevice
from .guest.driver import InProcessDriver
from .platform.iommu import Fault
from .platform.pci import MemoryWrite, PciDevice
from .platform.platform import Delivered
from .platform.requester import Bdf, Requester
from .platform.vm import ExitReason
from .system import ReferenceSystem, SystemVm, guest_subdevice

_MASK64 = (1 << 64) - 1

#: Guest accesses to the MSI and MSI-X capabilities: configuration space, trapped on both paths (HV-EMU-001).
_CAPABILITY_EXITS = (
    ExitReason.MSI_CAP_WRITE,
    ExitReason.MSI_CAP_READ,
    ExitReason.MSIX_CAP_WRITE,
    ExitReason.MSIX_CAP_READ,
)

#: Executes a trapping instruction on a vCPU of the host: (system, VM, vCPU, architecture, instruction, registers,
#: privilege) in, the registers after it out (None: not handled).
TrapHook = Callable[[ReferenceSystem, SystemVm, int, str, str, dict[str, int], int], dict[str, int] | None]


class HostEvents:
    """The events part of :class:`~.fuzz.Fuzzer`."""

    rng: random.Random
    system: ReferenceSystem
    model: Model
    trap: TrapHook
    destroyed: set[int]
    events: Counter[str]
    #: Pairs written into MSI-X/IMS slots: (VM, device key, kind, slot) -> (handle, address, data, device, its FLR
    #: count then), for the stale-copy check (HV-QUOTA-004).
    written: dict[tuple[int, object, int, int], tuple[int, int, int, PciDevice, int]]
    _forget_devices: dict[int, Callable[[], None]]

    def _fail(self, what: str, detail: str) -> None:
        raise NotImplementedError

    def _compare(self, vm: SystemVm) -> None:
        raise NotImplementedError

    def setup(self, vm: SystemVm) -> None:
        raise NotImplementedError

    # -- events between calls ------------------------------------------------------------------------------
    def event(self, vm: SystemVm) -> None:
        rng, system = self.rng, self.system
        m = self.model.vms[vm.vm_id]
        devices = system.platform.devices_of(vm.vm)
        r = rng.random()
        if r < 0.35:
            self.program_and_fire(vm)
        elif r < 0.55:
            self.attack(vm)
        elif r < 0.63 and devices:
            self.events["flr"] += 1
            g = rng.choice(devices).guest
            assert g is not None
            system.flr(vm, g)  # HV-FLR-001: claims, handles and remapping stay
            self._compare(vm)
        elif r < 0.73:
            self.events["migrate"] += 1
            self.migrate(vm)
            self._compare(vm)
            self.program_and_fire(vm)
        elif r < 0.8:
            self.events["vm_reset"] += 1
            system.reset_vm(vm)
            m.reset()  # HV-RESET-002
            self._compare(vm)
            if rng.random() < 0.7:
                self.setup(vm)
        elif r < 0.84 and devices:
            self.events["hot_unplug"] += 1
            g = rng.choice(devices).guest
            assert g is not None
            m.unplug((g.segment, g.bus, g.devfn, None))  # HV-UNPLUG-001
            system.unplug(vm, g)
            self._forget_devices[vm.vm_id]()
            self._compare(vm)
        elif r < 0.87:
            self.events["vm_destroy"] += 1
            system.destroy_vm(vm)
            self.destroyed.add(vm.vm_id)
            del self.model.vms[vm.vm_id]
        elif r < 0.94:
            self.discover(vm)
        elif m.state.name == "OPEN":
            self.setup(vm)

    def migrate(self, vm: SystemVm) -> None:
        """Live-migrate to a destination with the VM's indices free (HV-MIG-001..003: everything stays, deliveries
        too), now and then one with other limits (HV-MIG-005); the destination queues REFETCH (HV-MIG-002) and
        notifies the registered target (HV-EVT-002)."""
        m = self.model.vms[vm.vm_id]
        destination = "other-limits" if self.rng.random() < 0.3 else "same"
        target = m.event_target
        if target is not None:
            vm.vm.vcpus[target[0]].take()
        self.system.migrate(vm, destination)
        m.queue_event(EventType.REFETCH)
        if destination == "other-limits":
            config = replace(m.config, max_batch=max(1, m.config.max_batch // 2))
            if config != m.config:
                m.config = config
                m.queue_event(EventType.LIMITS_CHANGED)
        if target is not None and target[1] not in [irq.vector for irq in vm.vm.vcpus[target[0]].take()]:
            self._fail("events", f"a migration queued REFETCH and notified nothing on {target} (HV-EVT-002)")

    def program_and_fire(self, vm: SystemVm) -> None:
        """Write a pair the guest was handed into its device as a driver does (no exit for a claimed kind:
        HV-DEV-009) and fire it: it lands on the vCPU and vector the guest asked for (HV-ALLOC-007, HV-ALLOC-008,
        HV-RETGT-002)."""
        rng = self.rng
        m = self.model.vms.get(vm.vm_id)
        if m is None or not m.messages:
            return
        handle = rng.choice(list(m.messages))
        x = m.messages[handle]
        if (x.address, x.data) == (0, 0):  # reserved, never activated: no pair to write (HV-ACT-001)
            self.events["program_fire_reserved_skipped"] += 1
            return
        if x.kind == MsgKind.IMS and x.slot >= m.devices()[x.device].ims:  # an opaque tag names no IMS entry
            self.events["program_fire_opaque_tag_skipped"] += 1
            return
        seg, bus, devfn, pasid = x.device
        pci = vm.pci(seg, bus, devfn)
        assert pci is not None
        table = vm.vm.exits[ExitReason.MSIX_TABLE_WRITE] + vm.vm.exits[ExitReason.MSIX_TABLE_READ]
        config = sum(vm.vm.exits[r] for r in _CAPABILITY_EXITS)
        if x.kind == MsgKind.MSI and pasid is None and rng.random() < 0.5:
            # an attack: the guest writes a pair of its own into the claimed capability, ignored (HV-EMU-005)
            self.system.platform.guest_msi_write(vm.vm, Bdf(seg, bus, devfn), 0xFEE00000, 0x31, vectors=x.count)
        InProcessDriver(self.system, vm).install(
            GuestDevice(seg, bus, devfn, pasid), MsgKind(x.kind), x.slot, x.address, x.data, x.count
        )
        # The MSI-X table is mapped once claimed (HV-DEV-009); configuration space traps on both paths (HV-EMU-001).
        if vm.vm.exits[ExitReason.MSIX_TABLE_WRITE] + vm.vm.exits[ExitReason.MSIX_TABLE_READ] != table:
            self._fail("emulation", f"writing claimed {MsgKind(x.kind).name} pair into {pci.name} exited (HV-DEV-009)")
        if x.kind != MsgKind.IMS and sum(vm.vm.exits[r] for r in _CAPABILITY_EXITS) == config:
            self._fail("emulation", f"enabling claimed {MsgKind(x.kind).name} of {pci.name} did not trap (HV-EMU-001)")
        i = rng.randrange(x.count)
        slot = i if x.kind == MsgKind.MSI else x.slot
        if pasid is not None:
            sub = guest_subdevice(pci, pasid)
            assert sub is not None
            slot = sub.slot(x.slot)
        if x.kind != MsgKind.MSI:
            self.written[vm.vm_id, x.device, x.kind, x.slot] = (handle, x.address, x.data, pci, pci.flr_count)
        outcome = self.system.platform.fire(pci, MsgKind(x.kind), slot)
        self.events[f"program_fire_{type(outcome).__name__.lower()}"] += 1
        d = outcome.delivery if isinstance(outcome, Delivered) else None
        target = x.targets[i] if i < len(x.targets) else None
        if target is None:  # a reserved or deactivated vector delivers nothing (HV-ACT-001, HV-ACT-005)
            if d is not None:
                self._fail("delivery", f"inactive vector {i} of {handle:#x} ({x}) delivered: {outcome}")
        elif d is None or (d.vm, d.vcpu, d.vector) != (vm.vm_id, target[0], target[1]):
            self._fail("delivery", f"pair of {handle:#x} ({x}, vector +{i}) fired: {outcome}")

    def stale_copy(self, vm: SystemVm) -> bool:
        """A pair left in a slot after its message was freed, written again by its device (not reset since): it
        never delivers into a message of another slot (HV-QUOTA-004).  False when there is no such pair."""
        m = self.model.vms.get(vm.vm_id)
        stale = [
            (k, w)
            for k, w in self.written.items()
            if k[0] == vm.vm_id and m is not None and w[0] not in m.messages and w[4] == w[3].flr_count
        ]
        if not stale:
            return False
        (_vm, device, kind, slot), (_h, address, data, pci, _flr) = self.rng.choice(stale)
        if pci.removed:
            return False
        self.events["stale_copy_write"] += 1
        outcome = self.system.platform.route(MemoryWrite(pci.requester(), address, data))
        if isinstance(outcome, Fault):
            return True
        st = self.system.core.vm_states().get(vm.vm_id)
        owner = None
        for msg in st.messages.values() if st else ():
            if msg.irte <= outcome.irte_index < msg.irte + msg.count:
                owner = (msg.device, int(msg.kind), msg.slot)
        if owner != (device, kind, slot):
            self._fail("stale copy", f"freed pair of {device} {kind} slot {slot} delivered into {owner}: {outcome}")
        return True

    def attack(self, vm: SystemVm) -> None:
        """A pair the guest holds, written by another requester id or by a device of another VM: blocked
        (HV-SEC-001, HV-SEC-002); written with another PASID from the same requester id (a sibling sub-device):
        not told apart by the IOMMU, so at most delivered into this same VM (HV-SEC-010)."""
        rng = self.rng
        m = self.model.vms.get(vm.vm_id)
        if m is None or not m.messages:
            return
        x = m.messages[rng.choice(list(m.messages))]
        pci = vm.pci(*x.device[:3])
        assert pci is not None
        src = pci.requester(guest_subdevice(pci, x.device[3]).pasid if x.device[3] else None)  # type: ignore[union-attr]
        platform = self.system.platform
        others = [d for d in platform.devices if d.vm_id not in (None, vm.vm_id)]
        r = rng.random()
        if r < 0.15 and self.stale_copy(vm):
            return
        if r < 0.35 or not others:
            self.events["forged_write"] += 1
            requester = Requester(src.segment, src.rid ^ 0x0100, src.pasid)
        elif r < 0.6:
            self.events["forged_pasid_write"] += 1
            requester = Requester(src.segment, src.rid, ((src.pasid or 0) + 1) & 0xFFFFF)
        else:
            self.events["replay_write"] += 1
            requester = rng.choice(others).requester()
        outcome = platform.route(MemoryWrite(requester, x.address, x.data))
        if requester.rid == src.rid and requester.segment == src.segment:
            if not isinstance(outcome, Fault) and outcome.vm != vm.vm_id:
                self._fail("isolation", f"pair {x} written with PASID {requester.pasid} reached VM {outcome.vm}")
        elif not isinstance(outcome, Fault):
            self._fail("isolation", f"pair {x} written by {requester} was delivered: {outcome}")

    def discover(self, vm: SystemVm) -> None:
        """The discovery traps (spec "Discovery"): the CPUID leaf block with the signature, then the version in
        its base + 1 (HV-DISC-001); the SBI probe of the pvmsi extension answers 1 (HV-DISC-002)."""
        self.events["discovery"] += 1
        version = encode_version(self.system.core.config.version_major, self.system.core.config.version_minor)
        sig = tuple(int.from_bytes(X86_CPUID_SIGNATURE[i : i + 4], "little") for i in (0, 4, 8))
        base = next(
            (
                b
                for b in range(0x40000000, 0x40010000, 0x100)
                if (r := self.trap(self.system, vm, 0, "x86_64", "cpuid", {"rax": b}, 0))
                and (r["rbx"], r["rcx"], r["rdx"]) == sig
            ),
            None,
        )
        leaf = self.trap(self.system, vm, 0, "x86_64", "cpuid", {"rax": (base or 0) + 1}, 0)
        if base is None or leaf is None or leaf["rax"] & 0xFFFFFFFF != version:
            self._fail("discovery", f"CPUID: pvmsi leaf base {base}, version leaf {leaf}, version {version:#x}")
        probe = {"a0": RISCV_EXTENSION_ID, "a6": 3, "a7": 0x10}
        out = self.trap(self.system, vm, 0, "riscv64", "ecall", probe, 0)
        if out is None or (out["a0"], out["a1"]) != (0, 1):
            self._fail("discovery", f"SBI probe_extension(pvmsi) answered {out}")
        self._platform_paths(vm, leaf, version)

    def _platform_paths(self, vm: SystemVm, leaf: dict[str, int] | None, version: int) -> None:
        """The calling-path rules (HV-ABI-001..005): CPUID names path NATIVE, a CPL 3 VMCALL is not run, the
        arm64 vendor UID is pvmsi's and the SVE hint bit is ignored, an unknown riscv64 function is sbiret
        (SBI_ERR_NOT_SUPPORTED, NOT_SUPPORTED)."""
        if leaf is None or leaf["rbx"] != X86Path.NATIVE:
            self._fail("discovery", f"CPUID(base + 1).EBX is not path NATIVE: {leaf} (HV-ABI-005)")
        regs = {"rax": X86_64.function_id(FunctionNumber.VERSION), "rbx": 0x5A}
        out = self.trap(self.system, vm, 0, "x86_64", "vmcall", regs, 3)
        if out is None or (out["rax"], out["rbx"]) != (X86_CPL_REFUSED & _MASK64, 0x5A):
            self._fail("discovery", f"VMCALL VERSION at CPL 3 answered {out} (HV-ABI-001)")
        out = self.trap(self.system, vm, 0, "arm64", "hvc", {"x0": ARM64_VENDOR_HYP_CALL_UID}, 0)
        if out is None or tuple(out[f"x{i}"] & 0xFFFFFFFF for i in range(4)) != uid_registers(PVMSI_UID):
            self._fail("discovery", f"the vendor hypervisor Call UID answered {out} (HV-ABI-003)")
        hinted = {"x0": ARM64.function_id(FunctionNumber.VERSION) | ARM64_SMCCC_HINTS}
        out = self.trap(self.system, vm, 0, "arm64", "hvc", hinted, 0)
        if out is None or (out["x0"], out["x1"]) != (0, version):
            self._fail("discovery", f"VERSION with the SVE hint bit answered {out} (HV-ABI-002)")
        out = self.trap(self.system, vm, 0, "riscv64", "ecall", {"a7": RISCV_EXTENSION_ID, "a6": 0xFF}, 0)
        if out is None or (out["a0"], out["a1"]) != (SbiError.NOT_SUPPORTED & _MASK64, Status.NOT_SUPPORTED & _MASK64):
            self._fail("discovery", f"an unknown riscv64 function answered {out} (HV-ABI-004)")
