"""How the guest suite's hypervisor model (:class:`~.guest_host.HostModel`) can be made to behave towards a guest
under test: :class:`HostKnobs`, the poison it leaves in output blocks (GUEST-CONV-001), the pairs a lying host
hands out (GUEST-CVM-002), and the reference core variant that retargets by moving a message (HV-RETGT-003)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..reference.hypervisor.call import Call
from ..reference.hypervisor.core import HypervisorCore
from ..reference.hypervisor.errors import CallError
from ..reference.hypervisor.vmstate import Claim, Message
from ..spec.calls import LARGEST_BATCH
from ..spec.codec import encode
from ..spec.constants import FEATURES_1_0, ActivateFlag, DeviceFlag, FunctionNumber, KindMask, MsgKind, Status
from ..spec.formats import ACTIVATE_RESULT, ALLOC_RESULT, BATCH_OUT, DEVICE_INFO, FORMATS, HV_INFO, NEGOTIATE_OUT
from ..spec.iut import DeviceRef
from ..spec.platforms import DEFAULT_PLATFORM
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .guest_probe import Probe
from .guest_refusals import Overreach

KNOWN_1_0 = int(FEATURES_1_0)
#: Poison the model leaves in output blocks: it decodes, looks like success, and was never handed out.
POISON_HANDLE = 0x5EED_0000_0000_0000
POISON_ADDRESS = 0xFEEF_F018
POISON_DATA = 0x5EED
#: What a lying host puts in allocation results: an address in guest RAM, outside every interrupt window.
LYING_ADDRESS = 0x0003_0000


@dataclass(frozen=True)
class HostKnobs:
    """How the model behaves towards the guest."""

    #: False: pvmsi is absent (every call, VERSION included, answers NOT_SUPPORTED).
    present: bool = True
    version: tuple[int, int] = (VERSION_MAJOR, VERSION_MINOR)
    #: Feature bits offered beyond 1.0's (e.g. ``1 << 40``, a bit from a later minor the guest cannot know).
    extra_offered: int = 0
    withheld: int = 0
    required: int = 0
    yield_after: int = 0
    max_batch: int = 0
    device_quota: int = 0
    #: MSG_ACTIVATE moves each message to a new remapping entry, so that its pair changes (REWRITE set).
    retarget_moves: bool = False
    #: Answer NEGOTIATE with this status (and negotiate_out where the spec writes it) without negotiating.
    negotiate_status: int | None = None
    #: Answer these functions with these statuses, without acting on them.
    status_for: tuple[tuple[int, int], ...] = ()
    #: The value register of a call answered through ``status_for`` (a batch that fails in its header checks
    #: writes no batch_out; a guest must not read a next_index into this value, GUEST-CONV-001).
    status_value: int = 0
    #: Kinds left enabled through emulation before the guest boots (firmware or a previous kernel did).
    preenabled: tuple[tuple[DeviceRef, MsgKind], ...] = ()
    #: What the platform discovery (CPUID, vendor hypervisor UID, SBI probe) tells the guest.
    probe: Probe = Probe.PVMSI
    #: A confidential VM: only BOOT's scratch pages are shared with the host (GUEST-CVM-001).
    confidential: bool = False
    #: A lying host: MSG_ALLOC hands out pairs whose address is guest RAM, outside the interrupt window
    #: (GUEST-CVM-002).
    lying_pairs: bool = False
    #: The platform served (spec "Message formats"): its message format, vCPU ids and vector range.
    platform: str = DEFAULT_PLATFORM
    #: Answers naming what the guest did not ask for (:mod:`.guest_refusals`, GUEST-REFUSE-001..003, GUEST-EXT-002).
    overreach: Overreach = field(default_factory=Overreach)


def poison_block(fmt_name: str, size: int, count: int) -> bytes:
    """An output block of ``size`` bytes that decodes and looks like success but was never handed out."""
    if fmt_name in ("alloc_result", "activate_result", "free_result", "deactivate_result"):
        rfmt = FORMATS[fmt_name].struct
        head = encode(BATCH_OUT, {"next_index": count, "completed": count, "status": 0})
        rows = b""
        for i in range(count):
            if fmt_name == "alloc_result":
                value = {"handle": POISON_HANDLE + i, "address": POISON_ADDRESS, "data": POISON_DATA + i, "status": 0}
            elif fmt_name == "activate_result":
                value = {"address": POISON_ADDRESS, "data": POISON_DATA + i, "status": 0, "flags": ActivateFlag.REWRITE}
            else:
                value = {"status": 0}
            rows += encode(rfmt, value)
        block = head + rows
    elif fmt_name == "hv_info":
        block = encode(
            HV_INFO,
            {
                "version_major": VERSION_MAJOR,
                "version_minor": VERSION_MINOR,
                "message_format": 1,
                "features_offered": KNOWN_1_0,
                "features_required": 0,
                "max_batch": LARGEST_BATCH,
                "max_claimed_devices": 16,
                "max_messages_per_vm": 8192,
                "max_messages_per_device": 4096,
            },
        )
    elif fmt_name == "negotiate_out":
        block = encode(NEGOTIATE_OUT, {"features": KNOWN_1_0, "refused": 0})
    elif fmt_name == "device_info":
        block = encode(
            DEVICE_INFO,
            {
                "device": {"segment": 0, "bus": 0, "devfn": 0, "flags": 0, "subdevice_id": 0},
                "kinds": KindMask.MSI | KindMask.MSIX | KindMask.IMS,
                "claimed_kinds": 0,
                "flags": DeviceFlag.ISOLATED | DeviceFlag.RETARGET_IN_PLACE,
                "msi_max_vectors": 32,
                "msix_table_size": 2048,
                "ims_slots": 4096,
                "messages_allocated": 0,
                "message_quota": 4096,
                "messages_available": 4096,
                "vm_messages_available": 8192,
            },
        )
    else:
        block = b""
    return block[:size].ljust(size, b"\x5e")


#: The calls whose results hand out pairs, and their result formats (the lying host's targets).
LYING_CALLS: dict[int, Any] = {FunctionNumber.MSG_ALLOC: ALLOC_RESULT, FunctionNumber.MSG_ACTIVATE: ACTIVATE_RESULT}


class MovingRetargetCore(HypervisorCore):
    """The reference core retargeting by moving a message to fresh remapping entries, as a platform that cannot
    retarget in place does (HV-RETGT-004 is a SHOULD): the pair changes, so the retarget result carries REWRITE
    (HV-RETGT-003), which the guest must honour."""

    def retarget_remapping(self, c: Call, claim: Claim, msg: Message, vcpu: int, vector: int, posted: bool) -> None:
        base = self.remap.alloc(
            msg.count, vm_id=c.vm.vm_id, vcpu=vcpu, vector=vector, source=claim.source, posted=posted
        )
        if base is None:
            raise CallError(Status.NO_RESOURCES, "HV-SEC-007", "interrupt-remapping table full")
        self.remap.release(msg.irte)
        msg.irte = base
