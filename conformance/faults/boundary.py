"""Faults of the emulation boundary (spec "Device control", "The emulation boundary"): configuration space
trapped on both paths, the explicit MSI model, MSI-X Message Control applied by the hypervisor."""

from __future__ import annotations

from ...reference.hypervisor.call import Call
from ...reference.hypervisor.config import HypervisorConfig
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.ports import RemapPort
from ...reference.hypervisor.vmstate import Claim, Message
from ...reference.platform.legacy import LegacyMsi
from ...reference.platform.pci import PciDevice
from ...reference.platform.platform import Platform
from ...spec.constants import MsgKind
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


def _with_legacy(platform: Platform, legacy: LegacyMsi) -> Platform:
    platform.legacy = legacy
    return platform


class PassThroughConfig(LegacyMsi):
    """Passes the configuration space of a claimed kind through to the device, with no exit (the old model)."""

    def traps_config(self, device: PciDevice, kind: MsgKind) -> bool:
        return not self.is_passthrough(device, kind)


class AppliesGuestMsiPair(LegacyMsi):
    """Applies the guest's own Message Address, Data and Multiple Message Enable to a claimed MSI capability."""

    def claimed_msi_write(self, device: PciDevice, offset: int, size: int, value: int) -> None:
        assert device.msi is not None
        device.msi.write(offset, size, value)


class IgnoresMsixControl(LegacyMsi):
    """Drops the guest's writes to a claimed MSI-X capability's Message Control."""

    def claimed_msix_write(self, device: PciDevice, offset: int, size: int, value: int) -> None:
        return None


def _system(name: str, breaks: str, description: str, legacy: type[LegacyMsi]) -> None:
    from ...reference.system import ReferenceSystem

    class FaultySystem(ReferenceSystem):
        def make_platform(self, remap_entries: int | None) -> Platform:
            platform = super().make_platform(remap_entries)
            return _with_legacy(platform, legacy(platform.table))

    FaultySystem.__name__ = FaultySystem.__qualname__ = legacy.__name__ + "System"
    faults.add(name, breaks, description)(FaultySystem)


_system(
    "config-passes-through",
    "HV-EMU-001",
    "lets a claimed device's MSI and MSI-X capabilities through without an exit",
    PassThroughConfig,
)


@faults.add("alloc-leaves-msi-unwritten", "HV-EMU-002", "MSG_ALLOC does not write the MSI pair into the capability")
class AllocLeavesMsiUnwritten(HypervisorCore):
    def write_msi_capability(self, claim: Claim, msg: Message) -> None:
        return None


@faults.add(
    "retarget-msi-stale",
    "HV-EMU-003",
    "retargets an MSI message to a new remapping entry (new pair, REWRITE) but leaves the old pair in the capability",
)
class RetargetMsiStale(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        self.first_pair: dict[int, tuple[int, int]] = {}

    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        if msg.kind is not MsgKind.MSI:
            return super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        base = self.remap.alloc(
            msg.count, vm_id=c.vm.vm_id, vcpu=vcpu, vector=vector, source=claim.source, posted=posted
        )
        if base is None:
            return super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        self.remap.release(msg.irte)
        msg.irte = base
        return None

    def write_msi_capability(self, claim: Claim, msg: Message) -> None:
        address, data = self.first_pair.setdefault(msg.handle, (msg.address, msg.data))
        claim.device.program_msi(address, data, msg.count)


@faults.add("free-leaves-msi", "HV-EMU-004", "MSG_FREE leaves MSI enabled with the freed pair in the capability")
class FreeLeavesMsi(HypervisorCore):
    def clear_msi_capability(self, claim: Claim, msg: Message) -> None:
        return None


_system(
    "guest-msi-pair-applied",
    "HV-EMU-005",
    "applies the guest's own address/data writes to a claimed MSI capability",
    AppliesGuestMsiPair,
)
_system(
    "msix-control-ignored",
    "HV-EMU-006",
    "drops the guest's writes to MSI-X Enable and Function Mask of a claimed device",
    IgnoresMsixControl,
)


@faults.add("flr-forgets-msi", "HV-EMU-007", "does not write a claimed MSI capability again after an FLR")
class FlrForgetsMsi(HypervisorCore):
    def restore_msi_capability(self, claim: Claim, msg: Message) -> None:
        return None
