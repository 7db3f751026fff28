"""Faults of masking (spec "Device control", "Masking") and of messages in flight (spec "Allocate, retarget and
free", "Messages in flight"): each lets the hypervisor touch what the device holds, or the remapping a late write
reaches, in a way real implementations have got wrong."""

from __future__ import annotations

import contextlib

from ...reference.hypervisor.call import Call
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.vmstate import Claim, Message
from ...reference.platform.formats.base import PerDeviceFormat
from ...reference.platform.formats.imsic import Imsic
from ...reference.platform.legacy import LegacyMsi
from ...reference.platform.pci import PciDevice
from ...reference.platform.pci_caps import MsiCapability
from ...reference.platform.pci_slots import SLOT_SIZE
from ...reference.platform.platform import Platform
from ...reference.system import AssignedFunction, ReferenceSystem, SystemVm
from ...spec.constants import MsgKind
from ...spec.records import AllocEntry
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


def _pci(claim: Claim) -> PciDevice | None:
    return claim.device.device if isinstance(claim.device, AssignedFunction) else None


class _Retarget(HypervisorCore):
    """Finds the claim of a retargeted message (the reference's retarget step gets the claim)."""

    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        dev = _pci(claim)
        if dev is not None:
            self.after_retarget(dev, msg)

    def after_retarget(self, dev: PciDevice, msg: Message) -> None:
        raise NotImplementedError


@faults.add(
    "retarget-unmasks-entry",
    "HV-MASK-001",
    "MSG_ACTIVATE rewrites the MSI-X entry itself, its Mask Bit clear (as an emulator re-arming the vector would)",
)
class RetargetUnmasksEntry(_Retarget):
    def after_retarget(self, dev: PciDevice, msg: Message) -> None:
        if msg.kind is MsgKind.MSIX:
            base = dev.layout.msix_table_offset + msg.slot * SLOT_SIZE
            for off, value in ((0, msg.address & 0xFFFFFFFF), (4, msg.address >> 32), (8, msg.data), (12, 0)):
                dev.bar_write(base + off, 4, value)


@faults.add(
    "retarget-drops-pending",
    "HV-FLIGHT-001",
    "MSG_ACTIVATE disables and re-enables the vector on the host, dropping what the device held pending",
)
class RetargetDropsPending(_Retarget):
    def after_retarget(self, dev: PciDevice, msg: Message) -> None:
        bits = ((1 << msg.count) - 1) << msg.slot
        if msg.kind is MsgKind.MSI and dev.msi is not None:
            dev.msi.pending_bits &= ~bits
        elif msg.kind is MsgKind.MSIX and dev.msix is not None:
            dev.msix.table.pending &= ~bits
        elif msg.kind is MsgKind.IMS and dev.ims is not None:
            dev.ims.pending &= ~bits


@faults.add(
    "free-revokes-late",
    "HV-FLIGHT-002",
    "freed remapping entries stay programmed until their room is needed (lazy invalidation), so a late write "
    "still delivers after MSG_FREE returns",
)
class FreeRevokesLate(HypervisorCore):
    def release_remapping(self, msg: Message) -> None:
        late: list[Message] = getattr(self, "late", [])
        self.late = [*late, msg]

    def alloc_remapping(self, c: Call, claim: Claim, e: AllocEntry, posted: bool) -> int | None:
        base = super().alloc_remapping(c, claim, e, posted)
        if base is None:  # the room is needed: revoke what was freed, then try again
            for old in getattr(self, "late", []):
                with contextlib.suppress(KeyError):  # already gone with its VM
                    super().release_remapping(old)
            self.late = []
            base = super().alloc_remapping(c, claim, e, posted)
        return base


class DropsPendingOnUnmask(LegacyMsi):
    """Applies the guest's MSI Mask Bits by gating the remapping and forgets what was raised meanwhile."""

    def claimed_msi_write(self, device: PciDevice, offset: int, size: int, value: int) -> None:
        if device.msi is not None and offset <= MsiCapability.MASK < offset + size:
            device.msi.pending_bits = 0
        super().claimed_msi_write(device, offset, size, value)


@faults.add(
    "msi-unmask-drops-pending",
    "HV-MASK-002",
    "the guest's MSI Mask Bits are applied by gating the remapping, and a message raised while masked is lost",
)
class MsiUnmaskDropsPending(ReferenceSystem):
    def make_platform(self, remap_entries: int | None) -> Platform:
        platform = super().make_platform(remap_entries)
        platform.legacy = DropsPendingOnUnmask(platform.table)
        return platform


@faults.add(
    "retarget-drops-posted",
    "HV-FLIGHT-001",
    "MSG_ACTIVATE of a posted message tears the old vCPU's posted-interrupt descriptor down, losing a request "
    "posted there and not yet taken",
)
class RetargetDropsPosted(HypervisorCore):
    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        super().retarget_remapping(c, claim, msg, vcpu, vector, posted)
        if msg.posted and isinstance(c.vm, SystemVm):
            old = c.vm.vm.vcpus[msg.vcpu]
            entries = range(msg.irte, msg.irte + msg.count)
            old.interrupts = [i for i in old.interrupts if not (i.posted and i.irte_index in entries)]


class ImsicUnmapsAtOnce(Imsic):
    """Unmaps the old hart's interrupt file as soon as a message moves off it, with the old pair still in the
    device."""

    def update(self, ref: int, count: int, *, dest_vcpu: int, vector: int, posted: bool) -> None:
        PerDeviceFormat.update(self, ref, count, dest_vcpu=dest_vcpu, vector=vector, posted=posted)


@faults.add(
    "imsic-unmaps-old-file",
    "HV-FLIGHT-001",
    "a retarget to another hart unmaps the old hart's interrupt file at once: the old pair, still in the device "
    "until the guest rewrites it, is blocked and the message lost",
    platform="imsic",
)
class ImsicUnmapsOldFile(ReferenceSystem):
    def make_platform(self, remap_entries: int | None) -> Platform:
        platform = super().make_platform(remap_entries)
        platform.msi = ImsicUnmapsAtOnce()
        platform.iommu.format = platform.msi
        return platform
