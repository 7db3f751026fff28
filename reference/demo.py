"""``pvmsi demo``: the reference guest against the reference hypervisor, every delivery checked, then the same
workload under today's trapped emulation, with the exit counts of both side by side.

One host, two VMs.  The guest VM has the three reference devices: an mlx5-like NIC (MSI-X), a plain device with
multi-message MSI, and an IDXD-like accelerator whose sub-device (PASID 1) uses IMS.  A second VM owns another
mlx5-like NIC (the "intruder", for the replay attack).  The workload:

1. boot: discovery and negotiation (or, for the emulated run, a guest that knows no pvmsi feature);
2. allocate: 16 MSI-X vectors, one 8-vector MSI block, 4 IMS vectors on the sub-device (pvmsi only: IMS cannot be
   emulated), the guest writing each pair into the device;
3. fire every allocated message and check that exactly the right vCPU got exactly the right vector;
4. attacks: a forged write of a live pair from another requester, and the same pair replayed by a device of the
   other VM, must be blocked and counted as IOMMU faults, delivering nothing anywhere;
5. retarget every MSI-X vector to another vCPU and vector (pvmsi: without rewriting the device) and fire again;
5b. (pvmsi) live-migrate the VM to a host whose remapping table holds other entries at the VM's indices: the
   destination notifies the guest's registered vector and queues REFETCH; the guest fetches the events,
   re-activates every message, writes every pair that changed, acknowledges, and every vector fires again;
6. free (disable) everything: the device stops signalling, and a stale write of a freed pair is blocked;
7. release the claimed devices: emulation resumes, so an access to the MSI-X table exits again (configuration
   space exits on both paths).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..spec.constants import FEATURES_1_0, MsgKind
from ..spec.platforms import ARCH_TARGETS
from ..spec.platforms import platform as platform_def
from .guest.actions import GuestDevice
from .guest.core import GuestCore, GuestMessage, GuestMode, Target
from .guest.driver import InProcessDriver
from .hypervisor.config import HypervisorConfig
from .platform.iommu import Delivery, Fault
from .platform.pci import MemoryWrite, PciDevice
from .platform.pci_caps import MSIX_CAP_OFFSET, MsixCapability
from .platform.platform import Delivered
from .platform.profiles import IDXD_LIKE, MLX5_LIKE, MSI_MULTI
from .platform.requester import Bdf
from .system import ReferenceSystem, SystemVm

SCRATCH = 0x10000
NIC, MSI_DEV, ACCEL = Bdf(0, 0, 0x08), Bdf(0, 0, 0x10), Bdf(0, 0, 0x18)
SUBDEVICE = 1  # the accelerator's first sub-device (the guest's PASID 1)
VCPUS = 4


@dataclass(frozen=True)
class Check:
    """One verified expectation."""

    path: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class PathResult:
    """What one run of the workload (pvmsi or emulated) did."""

    path: str
    mode: str = ""
    exits: Counter[str] = field(default_factory=Counter)
    hypercalls: int = 0
    device_writes: int = 0
    delivered: int = 0
    faults: int = 0
    log: list[str] = field(default_factory=list)


@dataclass
class DemoReport:
    paths: list[PathResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class _Run:
    def __init__(
        self, path: str, pvmsi: bool, report: DemoReport, say: Callable[[str], None], platform: str = "vtd"
    ) -> None:
        self.path, self.pvmsi, self.report, self.say = path, pvmsi, report, say
        self.layout = platform_def(platform)
        self.system = ReferenceSystem(HypervisorConfig(platform=platform))
        # the guest's vectors in the platform's range (arm64: LPIs from 8192); the model's emulated path is x86's
        # compatibility format on every platform, so the emulated run keeps x86 vectors
        self.base = ARCH_TARGETS[self.layout.arch].vector_min + 0x20 if pvmsi and self.layout.arch == "arm64" else 0x40
        self.vm = self.system.create_vm(VCPUS, devices=[(MLX5_LIKE, NIC), (MSI_MULTI, MSI_DEV), (IDXD_LIKE, ACCEL)])
        self.intruder = self.system.create_vm(2, devices=[(MLX5_LIKE, NIC)])
        self.guest = GuestCore(scratch_gpa=SCRATCH, known_features=int(FEATURES_1_0) if pvmsi else 0)
        self.driver = InProcessDriver(self.system, self.vm, arch=self.layout.arch)  # the platform's architecture
        self.result = PathResult(path)
        self.notify_vector = self.base + 0x7F  # the guest's event notification (spec "Events")
        self.phase_exits: dict[str, int] = {}

    # -- helpers -------------------------------------------------------------------------------------------
    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.report.checks.append(Check(self.path, name, ok, detail))
        return ok

    def pci(self, vm: SystemVm, bdf: Bdf) -> PciDevice:
        dev = vm.pci(bdf.segment, bdf.bus, bdf.devfn)
        assert dev is not None
        return dev

    def fire_all(self, what: str, dev: PciDevice, msgs: list[GuestMessage], sub_first: int = 0) -> None:
        """Fire every vector of ``msgs``; each must land on exactly its vCPU with exactly its vector."""
        bad: list[str] = []
        for m in msgs:
            for i in range(m.count):
                index = i if m.kind is MsgKind.MSI else m.slot + sub_first
                for v in self.vm.vm.vcpus:
                    v.take()
                outcome = self.system.platform.fire(dev, m.kind, index)
                got = [(v.index, irq.vector) for v in self.vm.vm.vcpus for irq in v.take()]
                want = [(m.vcpu, m.vector + i)]
                if not isinstance(outcome, Delivered) or got != want:
                    bad.append(f"{m.kind.name} {index}: want {want}, got {got} ({type(outcome).__name__})")
                else:
                    self.result.delivered += 1
        n = sum(m.count for m in msgs)
        self.check(f"{what}: {n} vectors each delivered to the right vCPU and vector", not bad, "; ".join(bad[:3]))

    def exits(self) -> int:
        return self.vm.vm.total_exits

    # -- the workload --------------------------------------------------------------------------------------
    def run(self) -> PathResult:
        g, d = self.guest, self.driver
        nic = GuestDevice(NIC.segment, NIC.bus, NIC.devfn)
        msi = GuestDevice(MSI_DEV.segment, MSI_DEV.bus, MSI_DEV.devfn)
        accel = GuestDevice(ACCEL.segment, ACCEL.bus, ACCEL.devfn, SUBDEVICE)
        nic_pci, msi_pci, accel_pci = self.pci(self.vm, NIC), self.pci(self.vm, MSI_DEV), self.pci(self.vm, ACCEL)

        self.say(f"{self.path}: boot")
        mode = d.run(g.boot())
        self.result.mode = mode.value
        self.check("guest mode", mode is (GuestMode.PVMSI if self.pvmsi else GuestMode.EMULATED), mode.value)
        if self.pvmsi:
            status = d.run(g.configure_events(0, self.notify_vector))
            self.check("notification target registered (EVENT_CONFIG)", status == 0, str(status))

        self.say(f"{self.path}: allocate")
        v = self.base  # 0x40 on x86 and riscv64, LPI 8224 on arm64
        msix_msgs = d.run(g.enable(nic, MsgKind.MSIX, [Target(i, i % VCPUS, v + i) for i in range(16)]))
        msi_msgs = d.run(g.enable(msi, MsgKind.MSI, [Target(0, 2, v + 0x20, 8)]))
        ims_msgs: list[GuestMessage] = []
        if self.pvmsi:
            ims_msgs = d.run(g.enable(accel, MsgKind.IMS, [Target(i, 3, v + 0x40 + i) for i in range(4)]))
            self.result.log.append(
                f"platform {self.layout.key} ({self.layout.message_format.name}): MSI-X[0] pair "
                f"({msix_msgs[0].address:#x}, {msix_msgs[0].data:#x})"
            )
        else:
            self.result.log.append("IMS: not possible without pvmsi (the hypervisor cannot trap an IMS store)")

        self.say(f"{self.path}: fire")
        self.fire_all("MSI-X", nic_pci, msix_msgs)
        self.fire_all("multi-message MSI", msi_pci, msi_msgs)
        if self.pvmsi:
            sub = accel_pci.subdevices[SUBDEVICE - 1]
            self.fire_all("IMS on sub-device (PASID)", accel_pci, ims_msgs, sub.first_slot)

        self.say(f"{self.path}: attacks")
        self.attacks(nic_pci, msix_msgs[0], msi_pci)

        self.say(f"{self.path}: retarget")
        w0 = d.device_writes
        moves = [(m, (m.vcpu + 1) % VCPUS, m.vector + 0x40) for m in msix_msgs]
        d.run(g.set_affinity(nic, moves))
        rewrites = d.device_writes - w0
        if self.pvmsi and self.layout.retarget_changes_pair:  # IMSIC: another hart is another interrupt file
            self.check("retarget to another hart rewrites the device (REWRITE)", rewrites > 0, f"{rewrites} writes")
        elif self.pvmsi:
            self.check("retarget without rewriting the device", rewrites == 0, f"{rewrites} device writes")
        self.fire_all("MSI-X after retarget", nic_pci, msix_msgs)

        if self.pvmsi:
            self.say(f"{self.path}: live migration")
            groups = [("MSI-X", nic_pci, msix_msgs, 0), ("multi-message MSI", msi_pci, msi_msgs, 0)]
            groups.append(("IMS", accel_pci, ims_msgs, accel_pci.subdevices[SUBDEVICE - 1].first_slot))
            self.migration(groups)

        self.say(f"{self.path}: free")
        stale = msix_msgs[0]
        d.run(g.disable(nic, MsgKind.MSIX))
        d.run(g.disable(msi, MsgKind.MSI))
        if self.pvmsi:
            d.run(g.disable(accel, MsgKind.IMS))
        outcome = self.system.platform.fire(nic_pci, MsgKind.MSIX, stale.slot)
        self.check("a disabled MSI-X entry does not signal", not isinstance(outcome, Delivered), str(outcome))
        if self.pvmsi:
            fault = self.system.platform.route(MemoryWrite(nic_pci.requester(), stale.address, stale.data))
            self.check("a freed pair written by its own device is blocked", isinstance(fault, Fault), str(fault))

        if self.pvmsi:
            self.say(f"{self.path}: release")
            for dev in (nic, msi, accel):
                d.run(g.release(dev))
            self.system.platform.guest_config_write(self.vm.vm, NIC, MSIX_CAP_OFFSET + MsixCapability.CONTROL, 2, 0)
            table = self.system.platform.layout(nic_pci).msix_entry_gpa(0)
            _value, exited = self.system.platform.guest_mmio_read(self.vm.vm, table + 12, 4)
            self.check("after release, emulation resumes (an MSI-X table access exits again)", exited)

        self.result.exits = Counter({str(k): v for k, v in self.vm.vm.exits.items()})
        self.result.hypercalls = d.hypercalls
        self.result.device_writes = d.device_writes
        self.result.faults = self.system.platform.iommu.fault_count
        self.result.log = g.log + self.result.log
        return self.result

    def migration(self, groups: list[tuple[str, PciDevice, list[GuestMessage], int]]) -> None:
        """Live-migrate to a destination whose table holds other entries at the VM's indices (spec "Live
        migration"): notified, REFETCH fetched, every message re-activated and every changed pair written, then
        every vector delivers to its target (HV-MIG-002, HV-MIG-004, GUEST-EVT-002)."""
        before = {id(m): (m.address, m.data) for _, _, msgs, _ in groups for m in msgs}
        for v in self.vm.vm.vcpus:
            v.take()
        self.system.migrate(self.vm, "crowded")
        notified = [(v.index, irq.vector) for v in self.vm.vm.vcpus for irq in v.take()]
        log = self.guest.log  # the host's steps between the guest's, in order
        log.append(f"host: live migration to a destination whose table holds other entries; injected {notified}")
        self.check(
            "the destination notified the guest on its registered vector",
            (0, self.notify_vector) in notified,
            str(notified),
        )
        handled = self.driver.run(self.guest.handle_events())
        self.check("the guest fetched REFETCH and re-activated", any("REFETCH" in h for h in handled), str(handled))
        moved = sum(1 for _, _, msgs, _ in groups for m in msgs if (m.address, m.data) != before[id(m)])
        total = sum(len(msgs) for _, _, msgs, _ in groups)
        log.append(f"host: {moved} of {total} pairs changed on the destination, every one re-activated")
        if self.layout.key == "vtd":  # a shared table: the destination's entries sit at the VM's old indices
            self.check("the crowded destination moved the pairs (other free indices)", moved > 0, f"{moved}")
        for what, dev, msgs, first in groups:
            self.fire_all(f"{what} after migration", dev, msgs, first)

    def attacks(self, nic: PciDevice, msg: GuestMessage, other_dev: PciDevice) -> None:
        """The pair live in an MSI-X entry (as the device holds it: under emulation, the emulator's physical pair)
        written by another requester (forged), and by another VM's device (replay): neither reaches the victim's
        target.  VT-d and the IMSIC block both; on AMD-Vi and the ITS a write names the writer's own table, so a
        forged one can only raise the forger's own messages (or is blocked)."""
        platform = self.system.platform
        assert nic.msix is not None
        victim = nic.msix.table.slots[msg.slot]
        for v in (*self.vm.vm.vcpus, *self.intruder.vm.vcpus):
            v.take()
        faults = platform.iommu.fault_count
        forged = platform.route(MemoryWrite(other_dev.requester(), victim.address, victim.data))
        intruder_nic = self.pci(self.intruder, NIC)
        replay = platform.route(MemoryWrite(intruder_nic.requester(), victim.address, victim.data))
        taken = [(v.index, irq.vector) for v in (*self.vm.vm.vcpus, *self.intruder.vm.vcpus) for irq in v.take()]
        per_device = self.layout.key in ("amd-vi", "gic-its") and self.pvmsi
        if per_device:
            reached = isinstance(forged, Delivery) and (forged.vcpu, forged.vector) == (msg.vcpu, msg.vector)
            self.check("forged write from another requester names its own table, not the victim's", not reached)
        else:
            self.check("forged write from another requester is blocked", isinstance(forged, Fault), str(forged))
        self.check("replay by another VM's device is blocked", isinstance(replay, Fault), str(replay))
        expected = 1 + isinstance(forged, Fault)
        self.check(
            "blocked writes counted as IOMMU faults, nothing injected into the victim's target",
            platform.iommu.fault_count == faults + expected and (msg.vcpu, msg.vector) not in taken,
            f"faults +{platform.iommu.fault_count - faults}, injected {taken}",
        )


def run_demo(say: Callable[[str], None] | None = None, platform: str = "vtd") -> DemoReport:
    """Run the workload through pvmsi, then emulated, on ``platform`` (vtd, amd-vi, gic-its, imsic); every
    delivery and attack checked."""
    report = DemoReport()
    for path, pvmsi in (("pvmsi", True), ("emulated", False)):
        report.paths.append(_Run(path, pvmsi, report, say or (lambda _s: None), platform).run())
    return report
