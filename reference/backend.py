"""The reference hypervisor as an implementation under test: :class:`~pvmsi.spec.iut.HypervisorIUT`
over a :class:`~.system.ReferenceSystem`, in-process.  ``pvmsi serve --role hypervisor`` serves the same object
over the harness protocol."""

from __future__ import annotations

from dataclasses import replace

from ..spec.constants import MsgKind
from ..spec.harness_constants import (
    TRAP_REGISTERS,
    DeviceProfile,
    DeviceSpace,
    FireOutcome,
    LifecycleEvent,
    TrapArch,
    TrapInstruction,
)
from ..spec.iut import (
    BadAddress,
    BadRequest,
    Counters,
    DeviceRef,
    DeviceSlot,
    FireResult,
    IutInfo,
    NoSuchDevice,
    NoSuchVm,
    Unsupported,
    VmKnobs,
)
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .hypervisor.config import HypervisorConfig
from .hypervisor.core import HypervisorCore
from .platform.pci import CONFIG_SPACE_SIZE, NotFired
from .platform.pci_slots import SLOT_SIZE
from .platform.platform import Blocked, Delivered
from .platform.profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI
from .platform.profiles import DeviceProfile as PlatformProfile
from .platform.requester import Bdf
from .platform.vm import ExitReason, GuestMemoryError
from .system import ReferenceSystem, SystemVm, guest_subdevice

PROFILES: dict[DeviceProfile, PlatformProfile] = {
    DeviceProfile.IDXD: IDXD_LIKE,
    DeviceProfile.MLX5: MLX5_LIKE,
    DeviceProfile.PLAIN_MSI: MSI_MULTI,
}


#: The LIFECYCLE migrations and the destination each asks of the reference system (HV-MIG-001..005).
MIGRATIONS = {
    LifecycleEvent.MIGRATE: "same",
    LifecycleEvent.MIGRATE_CROWDED: "crowded",
    LifecycleEvent.MIGRATE_OTHER_PLATFORM: "other-platform",
    LifecycleEvent.MIGRATE_OTHER_LIMITS: "other-limits",
}

ARCH_NAMES = {TrapArch.X86_64: "x86_64", TrapArch.ARM64: "arm64", TrapArch.RISCV64: "riscv64"}
ARCH_INSTRUCTIONS = {
    TrapArch.X86_64: (TrapInstruction.VMCALL, TrapInstruction.VMMCALL, TrapInstruction.CPUID),
    TrapArch.ARM64: (TrapInstruction.HVC,),
    TrapArch.RISCV64: (TrapInstruction.ECALL,),
}


class ReferenceHypervisor:
    """The reference hypervisor behind the suite's IUT interface."""

    name = "pvmsi-ref"

    def __init__(
        self,
        config: HypervisorConfig | None = None,
        core: type[HypervisorCore] = HypervisorCore,
        system: type[ReferenceSystem] = ReferenceSystem,
        platform: str | None = None,
    ) -> None:
        """``core`` and ``system`` are the classes of the hypervisor core and of the system around it: a
        subclass of either overrides their public steps and factories (conformance's faulty hypervisors do).
        ``platform`` (vtd, amd-vi, gic-its, imsic) overrides the config's: the host it runs on."""
        if platform is not None:
            config = replace(config or HypervisorConfig(), platform=platform)
        self.system = system(config, core=core)
        self._blocked: dict[int, int] = {}
        self._delivered: dict[int, int] = {}
        self._max_reads: dict[int, int] = {}

    def hello(self) -> IutInfo:
        return IutInfo(self.name, VERSION_MAJOR, VERSION_MINOR)

    def _vm(self, vm: int) -> SystemVm:
        found = self.system.vms.get(vm)
        if found is None:
            raise NoSuchVm(vm)
        return found

    def create_vm(self, vcpus: int, ram_mib: int, devices: list[DeviceSlot], knobs: VmKnobs | None = None) -> int:
        slots = [(PROFILES[d.profile], Bdf(d.device.segment, d.device.bus, d.device.devfn)) for d in devices]
        if len({bdf for _, bdf in slots}) != len(slots):
            raise BadRequest("device_count", "two device slots at one guest address")
        base = self.system.core.config
        config = base
        if knobs is not None:
            if knobs.features_required & (knobs.features_withheld | ~base.features_offered):
                raise BadRequest("features_required", "must be offered and not withheld")
            config = replace(
                base,
                features_offered=base.features_offered & ~knobs.features_withheld,
                features_required=knobs.features_required,
                yield_after=knobs.yield_after or None,
                max_remap_entries=knobs.remap_entries or None,
                max_claimed_devices=knobs.max_claimed_devices or base.max_claimed_devices,
                storm_limit=knobs.storm_limit or base.storm_limit,
            )
        vm = self.system.create_vm(vcpus, ram_mib << 20, slots)
        self.system.core.configure_vm(vm, config)
        self._blocked[vm.vm_id] = self._delivered[vm.vm_id] = 0
        return vm.vm_id

    def destroy_vm(self, vm: int) -> None:
        self.system.destroy_vm(self._vm(vm))

    def mem_write(self, vm: int, gpa: int, data: bytes) -> None:
        try:
            self._vm(vm).vm.memory.write(gpa, data)
        except GuestMemoryError as e:
            raise BadAddress(str(e)) from None

    def mem_read(self, vm: int, gpa: int, size: int) -> bytes:
        try:
            return self._vm(vm).vm.memory.read(gpa, size)
        except GuestMemoryError as e:
            raise BadAddress(str(e)) from None

    def is_ram(self, vm: int, gpa: int, size: int) -> bool:
        return self._vm(vm).vm.memory.is_ram(gpa, size)

    def hypercall(self, vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int]) -> tuple[int, int]:
        svm = self._vm(vm)
        with svm.vm.memory.track() as tracker:  # HV-MEM-005 made observable: reads per guest byte
            result = self.system.hypercall(svm, vcpu, fn, args)
        self._max_reads[vm] = max(1, tracker.max_reads)
        return result.status, result.value

    def _device(self, svm: SystemVm, device: DeviceRef) -> Bdf:
        bdf = Bdf(device.segment, device.bus, device.devfn)
        pci = self.system.platform.device_at(svm.vm, bdf)
        if pci is None or (device.pasid is not None and guest_subdevice(pci, device.pasid) is None):
            raise NoSuchDevice(device)
        return bdf

    def device_write(self, vm: int, device: DeviceRef, space: DeviceSpace, offset: int, size: int, value: int) -> bool:
        svm = self._vm(vm)
        bdf = self._device(svm, device)
        platform = self.system.platform
        pci = platform.device_at(svm.vm, bdf)
        assert pci is not None
        if size not in (1, 2, 4, 8) or offset % size:
            raise BadRequest("offset", f"a {size}-byte store at {offset:#x} is not naturally aligned")
        if space is DeviceSpace.CONFIG:
            _within("offset", offset + size, CONFIG_SPACE_SIZE, "the configuration space")
            return platform.guest_config_write(svm.vm, bdf, offset, size, value)
        layout = platform.layout(pci)
        if space is DeviceSpace.MSIX_TABLE:  # a sub-device's: its function's table (harness "Device model")
            if layout.msix_table_gpa is None:
                raise NoSuchDevice(device)
            _within("offset", offset + size, pci.msix_table_size * SLOT_SIZE, "the MSI-X table")
            return platform.guest_mmio_write(svm.vm, layout.msix_table_gpa + offset, size, value)
        if layout.ims_gpa is None:
            raise NoSuchDevice(device)
        base, slots = layout.ims_gpa, pci.ims_slots
        if device.pasid is not None:  # a sub-device's own slots: its offset 0 is its first slot
            sub = guest_subdevice(pci, device.pasid)
            assert sub is not None
            base, slots = base + sub.first_slot * layout.slot_size, sub.slot_count
        _within("offset", offset + size, slots * SLOT_SIZE, "the IMS slots it addresses")
        return platform.guest_mmio_write(svm.vm, base + offset, size, value)

    def config_read(self, vm: int, device: DeviceRef, offset: int, size: int) -> bytes:
        """The function's configuration space as the guest sees it, a dword at a time, without an exit (harness
        CONFIG_READ); a sub-device reads its function's."""
        svm = self._vm(vm)
        bdf = self._device(svm, device)
        view = self.system.platform.guest_config_view
        return b"".join(view(svm.vm, bdf, at, 4).to_bytes(4, "little") for at in range(offset, offset + size, 4))

    def fire(self, vm: int, device: DeviceRef, kind: int, index: int) -> FireResult:
        svm = self._vm(vm)
        bdf = self._device(svm, device)
        pci = self.system.platform.device_at(svm.vm, bdf)
        assert pci is not None
        sizes = {MsgKind.MSI: pci.msi_max_vectors, MsgKind.MSIX: pci.msix_table_size, MsgKind.IMS: pci.ims_slots}
        slot = 0 if kind == MsgKind.MSI else index  # the slot as the guest names it (the core's message slot)
        if device.pasid is not None and kind == MsgKind.IMS:  # a sub-device fires its own slots
            sub = guest_subdevice(pci, device.pasid)
            assert sub is not None
            _within("index", index + 1, sub.slot_count, "the sub-device's IMS slots")
            index = sub.slot(index)
        elif not sizes[MsgKind(kind)]:
            raise NoSuchDevice(device)
        else:
            _within("index", index + 1, sizes[MsgKind(kind)], f"the device's {MsgKind(kind).name} slots")
        result = self.system.platform.fire(pci, MsgKind(kind), index)
        if isinstance(result, Delivered):
            self._delivered[vm] += 1
            self.system.message_delivered(svm, (device.segment, device.bus, device.devfn, device.pasid), kind, slot)
            return FireResult(FireOutcome.DELIVERED, result.delivery.vcpu, result.delivery.vector)
        if isinstance(result, Blocked):
            self._blocked[vm] += 1
            return FireResult(FireOutcome.BLOCKED)
        assert isinstance(result, NotFired)
        # harness: fire outcomes -- disabled and masked are PENDING; a zero address (or a device gone) is NOT_PROGRAMMED
        outcome = FireOutcome.PENDING if result.reason.value in ("masked", "disabled") else FireOutcome.NOT_PROGRAMMED
        return FireResult(outcome)

    def trap(
        self, vm: int, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int], privilege: int = 0
    ) -> tuple[bool, list[int]]:
        names = TRAP_REGISTERS[arch]
        if instruction not in ARCH_INSTRUCTIONS[arch]:
            raise BadRequest("instruction", f"{instruction.name} is not an instruction of {arch.name}")
        if privilege > (3 if arch is TrapArch.X86_64 else 0):
            raise BadRequest("privilege", f"privilege {privilege} on {arch.name} (x86-64 CPL 0-3, else 0)")
        before = dict(zip(names, regs, strict=True))
        after = self.system.execute_trap(
            self._vm(vm), vcpu, ARCH_NAMES[arch], instruction.name.lower(), before, privilege=privilege
        )
        if after is None:
            return False, list(regs)
        return True, [after.get(n, 0) & 0xFFFFFFFFFFFFFFFF for n in names]

    def collect(self, vm: int) -> list[tuple[int, int]]:
        svm = self._vm(vm)
        return [(cpu.index, irq.vector) for cpu in svm.vm.vcpus for irq in cpu.take()]

    def counters(self, vm: int) -> Counters:
        ex = self._vm(vm).vm.exits
        msi = ex[ExitReason.MSI_CAP_WRITE] + ex[ExitReason.MSI_CAP_READ]
        msix = sum(
            ex[r]
            for r in (
                ExitReason.MSIX_CAP_WRITE,
                ExitReason.MSIX_CAP_READ,
                ExitReason.MSIX_TABLE_WRITE,
                ExitReason.MSIX_TABLE_READ,
            )
        )
        return Counters(
            sum(ex.values()),
            ex[ExitReason.HYPERCALL],
            msi,
            msix,
            self._delivered[vm],
            self._blocked[vm],
            self._max_reads.get(vm, 0),
        )

    def lifecycle(self, vm: int, event: LifecycleEvent, device: DeviceRef | None) -> None:
        svm = self._vm(vm)
        if event is LifecycleEvent.VM_RESET:
            self.system.reset_vm(svm)
            return
        if event in MIGRATIONS:
            try:
                self.system.migrate(svm, MIGRATIONS[event])
            except ValueError as e:
                raise Unsupported(str(e)) from None
            return
        if device is None:
            raise NoSuchDevice(device)
        bdf = self._device(svm, device)
        if event is LifecycleEvent.FLR:
            self.system.flr(svm, bdf)
        else:
            self.system.unplug(svm, bdf)

    def close(self) -> None:
        return None


def _within(field: str, end: int, limit: int, what: str) -> None:
    """A harness request that reaches past ``what`` (``limit`` bytes or slots) is BAD_PAYLOAD at ``field``."""
    if end > limit:
        raise BadRequest(field, f"reaches past {what} ({limit})")
