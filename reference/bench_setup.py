"""The setting of ``pvmsi bench`` (:mod:`.bench`): a reference system with one device, and the reference guest
booted on it with or without pvmsi; its exits counted by the platform model."""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.constants import FEATURES_1_0
from .guest.core import GuestCore
from .guest.driver import InProcessDriver
from .platform.profiles import DeviceProfile
from .platform.requester import Bdf
from .platform.vm import ExitReason
from .system import ReferenceSystem, SystemVm

SCRATCH = 0x10000
DEVICE_BDF = Bdf(0, 0, 0x08)
VCPUS = 4
#: Exits that are configuration-space accesses: the MSI and MSI-X capabilities and the rest of the header.
CONFIG_EXITS = (
    ExitReason.MSI_CAP_WRITE,
    ExitReason.MSI_CAP_READ,
    ExitReason.MSIX_CAP_WRITE,
    ExitReason.MSIX_CAP_READ,
    ExitReason.CONFIG_WRITE,
    ExitReason.CONFIG_READ,
)


class BenchError(RuntimeError):
    """A benchmark workload did not do what it should (a wrong delivery): the figures would mean nothing."""


@dataclass
class BenchGuest:
    """The benchmark's guest: its system, its VM, the reference guest core and the driver that runs it."""

    system: ReferenceSystem
    vm: SystemVm
    core: GuestCore
    driver: InProcessDriver

    @property
    def exits(self) -> int:
        return self.vm.vm.total_exits

    @property
    def config_exits(self) -> int:
        """Exits for configuration-space accesses, trapped on both paths (HV-EMU-001)."""
        return sum(self.vm.vm.exits[r] for r in CONFIG_EXITS)


def boot_guest(profile: DeviceProfile, pvmsi: bool) -> BenchGuest:
    """A system with one ``profile`` device at DEVICE_BDF, and a guest booted on it (negotiating pvmsi or not)."""
    system = ReferenceSystem()
    vm = system.create_vm(VCPUS, devices=[(profile, DEVICE_BDF)])
    core = GuestCore(scratch_gpa=SCRATCH, known_features=int(FEATURES_1_0) if pvmsi else 0)
    driver = InProcessDriver(system, vm)
    driver.run(core.boot())
    return BenchGuest(system, vm, core, driver)
