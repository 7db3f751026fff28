"""Constants of pvmsi 1.0: status codes, function numbers, message kinds, feature and flag bits, limits.

Each group is an ``IntEnum``/``IntFlag`` (for code) plus a :class:`ConstantGroup` (for the dump, the docs and
the C header).  A constant is defined here once; everything else is generated from these groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from types import MappingProxyType
from typing import Any, Literal

from . import harness_constants as hc
from .extension import EXTENSION_DOCS, Extension

ConstKind = Literal["enum", "flags", "value"]


class Status(IntEnum):
    """Signed status returned in the status register of every call (spec section "Status codes")."""

    SUCCESS = 0
    INCOMPLETE = 1
    NOT_SUPPORTED = -1
    NOT_PERMITTED = -2
    INVALID_PARAMETER = -3
    INVALID_ADDRESS = -4
    NO_RESOURCES = -5
    WRONG_STATE = -6
    UNKNOWN_HANDLE = -7
    UNKNOWN_DEVICE = -8
    VERSION_MISMATCH = -9
    FEATURES_REFUSED = -10
    REVOKED = -11
    PER_VECTOR_REFUSED = -13
    NOT_ACTIVE = -14


STATUS_DOCS: dict[Status, str] = {
    Status.SUCCESS: "The call completed; for a batch, every entry from the start index to the end completed.",
    Status.INCOMPLETE: (
        "A batch stopped early without an error (the hypervisor chose to return, e.g. to let the vCPU be "
        "preempted); resume at the returned next index. Not a failure."
    ),
    Status.NOT_SUPPORTED: (
        "No such call: the function number is not defined, or not implemented by this hypervisor. Returned "
        "for nothing else. Equal to SMCCC NOT_SUPPORTED."
    ),
    Status.NOT_PERMITTED: (
        "The call exists and is well formed but the caller may not do this: a message kind or flag whose "
        "feature was not negotiated, or a kind the device was not claimed for."
    ),
    Status.INVALID_PARAMETER: (
        "A malformed argument: a non-zero reserved register, field or bit, an unknown enum value, a count "
        "or index out of range, a vector count that is not a power of two."
    ),
    Status.INVALID_ADDRESS: (
        "A parameter block address that is not 8-byte aligned, whose block crosses a 4 KiB page, is not "
        "guest RAM, or whose input and output blocks overlap."
    ),
    Status.NO_RESOURCES: (
        "A quota (per VM or per device) or the interrupt-remapping table is exhausted; nothing was allocated "
        "for the failing entry."
    ),
    Status.WRONG_STATE: (
        "The call is not valid in the current state: not yet negotiated, negotiated twice, the device is "
        "not claimed, already claimed, or has the kind enabled through emulation."
    ),
    Status.UNKNOWN_HANDLE: (
        "The message handle is not one that this VM holds for this device (never allocated, already freed, "
        "or owned by another VM or device: indistinguishable by design)."
    ),
    Status.UNKNOWN_DEVICE: (
        "No device with this identity is assigned to the calling VM (never was, or it was hot-unplugged)."
    ),
    Status.VERSION_MISMATCH: (
        "NEGOTIATE asked for a major version the hypervisor does not implement, or a minor version newer "
        "than it implements."
    ),
    Status.FEATURES_REFUSED: (
        "NEGOTIATE offered a well-formed feature subset that the hypervisor refuses (it lacks a required "
        "feature); the refused bits are reported and the VM stays un-negotiated."
    ),
    Status.REVOKED: (
        "The hypervisor revoked this message (a storm over its stated rate, or host policy) and told the guest with "
        "a REVOKED event: its remapping entry blocks every write; the handle is still held, and only freeing it "
        'succeeds (spec "Events").'
    ),
    Status.PER_VECTOR_REFUSED: (
        "MSG_ACTIVATE named one vector of a multi-message MSI block with a target the platform cannot give that "
        "vector alone (RISC-V IMSIC: a vCPU other than the block's, or a vector other than the block's base + "
        "index; a reserved block there is activated whole, with PVMSI_ACTENT_BLOCK). Nothing changed for the entry."
    ),
    Status.NOT_ACTIVE: (
        "MSG_DEACTIVATE named a message (or a vector of a block) that is reserved, not active. Nothing changed "
        "for the entry."
    ),
}


class FunctionNumber(IntEnum):
    """The one function numbering shared by every architecture (spec section "Calling conventions")."""

    VERSION = 0x00
    GET_INFO = 0x01
    NEGOTIATE = 0x02
    RESET = 0x03
    DEVICE_QUERY = 0x10
    DEVICE_CLAIM = 0x11
    DEVICE_RELEASE = 0x12
    MSG_ALLOC = 0x20
    MSG_ACTIVATE = 0x21
    MSG_FREE = 0x22
    MSG_DEACTIVATE = 0x23
    EVENT_CONFIG = 0x30
    EVENT_FETCH = 0x31
    EVENT_ACK = 0x32


FUNCTION_DOCS: dict[FunctionNumber, str] = {
    FunctionNumber.VERSION: "Highest protocol version the hypervisor implements; valid in every state.",
    FunctionNumber.GET_INFO: "Features the hypervisor offers and requires, and its limits.",
    FunctionNumber.NEGOTIATE: "The guest accepts a feature subset and so makes its promise; accepted or refused.",
    FunctionNumber.RESET: "Drop every pvmsi state of the VM: free all messages, release all devices.",
    FunctionNumber.DEVICE_QUERY: "What a device supports and its pvmsi state.",
    FunctionNumber.DEVICE_CLAIM: "Take message kinds of a device over from emulation.",
    FunctionNumber.DEVICE_RELEASE: "Free the device's messages and hand it back to emulation.",
    FunctionNumber.MSG_ALLOC: "Reserve messages, without a target unless PVMSI_ALLOC_ACTIVATE (batched).",
    FunctionNumber.MSG_ACTIVATE: "Set or change the target of reserved or active messages; the pair (batched).",
    FunctionNumber.MSG_FREE: "Free reserved or active messages (batched).",
    FunctionNumber.MSG_DEACTIVATE: "Return active messages to reserved: delivery stops, handles kept (batched).",
    FunctionNumber.EVENT_CONFIG: "Register or clear the notification target of host-to-guest events.",
    FunctionNumber.EVENT_FETCH: "Read the unacknowledged events, oldest first.",
    FunctionNumber.EVENT_ACK: "Acknowledge every event up to a sequence number.",
}


class MsgKind(IntEnum):
    """Where the guest will write a message's address/data pair."""

    MSI = 1
    MSIX = 2
    IMS = 3


MSG_KIND_DOCS: dict[MsgKind, str] = {
    MsgKind.MSI: "The PCI MSI capability; 1 to 32 vectors as one power-of-two block of consecutive data values.",
    MsgKind.MSIX: "An entry of the PCI MSI-X table; exactly one vector per message.",
    MsgKind.IMS: "A device-specific Interrupt Message Store slot; exactly one vector per message.",
}


class KindMask(IntFlag):
    """A set of message kinds: bit ``1 << (kind - 1)``, the kind's feature bit."""

    MSI = 1 << (MsgKind.MSI - 1)
    MSIX = 1 << (MsgKind.MSIX - 1)
    IMS = 1 << (MsgKind.IMS - 1)


KIND_MASK_DOCS: dict[KindMask, str] = {
    KindMask.MSI: "The MSI capability (1 << (PVMSI_KIND_MSI - 1), equal to PVMSI_F_MSI).",
    KindMask.MSIX: "The MSI-X table (1 << (PVMSI_KIND_MSIX - 1), equal to PVMSI_F_MSIX).",
    KindMask.IMS: "The Interrupt Message Store (1 << (PVMSI_KIND_IMS - 1), equal to PVMSI_F_IMS).",
}


class Feature(IntFlag):
    """Feature bits offered by the hypervisor and accepted by the guest (64-bit mask)."""

    MSI = 1 << 0
    MSIX = 1 << 1
    IMS = 1 << 2
    SUBDEVICE = 1 << 3
    POSTED = 1 << 4


#: Every feature bit pvmsi 1.0 defines: what a 1.0 guest knows and the most a 1.0 hypervisor can offer; any other
#: bit is undefined (HV-NEG-002).
FEATURES_1_0: Feature = Feature(sum(int(f) for f in Feature))

#: The feature that must be in force for a request to use a kind of message (HV-NEG-008); MSI, MSI-X and IMS
#: have one feature bit each.
KIND_FEATURE: Mapping[MsgKind, Feature] = MappingProxyType(
    {MsgKind.MSI: Feature.MSI, MsgKind.MSIX: Feature.MSIX, MsgKind.IMS: Feature.IMS}
)

#: The message-kind feature bits, of which NEGOTIATE must accept at least one (HV-NEG-003).
KIND_FEATURES: Feature = Feature(sum(int(f) for f in KIND_FEATURE.values()))

#: Vectors an allocate or activate entry may name on x86 (HV-ALLOC-006): 0 to 31 are the CPU's exceptions.  The
#: ranges of every architecture are in :data:`pvmsi.spec.platforms.ARCH_TARGETS`.
X86_VECTORS: range = range(32, 256)

FEATURE_DOCS: dict[Feature, str] = {
    Feature.MSI: "Messages of kind MSI, including multi-message blocks of up to 32 vectors.",
    Feature.MSIX: "Messages of kind MSI-X.",
    Feature.IMS: "Messages of kind IMS.",
    Feature.SUBDEVICE: "Device identities qualified by a sub-device id (e.g. a PASID).",
    Feature.POSTED: "The POSTED delivery flag: deliver through posted interrupts where the platform has them.",
}


class DeviceIdFlag(IntFlag):
    """Flags of a device identity."""

    SUBDEVICE = 1 << 0


DEVICE_ID_FLAG_DOCS: dict[DeviceIdFlag, str] = {
    DeviceIdFlag.SUBDEVICE: "subdevice_id is valid and names a sub-device (requires feature SUBDEVICE).",
}


class DeviceFlag(IntFlag):
    """Properties and state of a device, reported by DEVICE_QUERY."""

    ISOLATED = 1 << 0
    CLAIMED = 1 << 1
    RETARGET_IN_PLACE = 1 << 2
    NEEDS_VIOMMU = 1 << 3
    SHARED_SOURCE = 1 << 4


DEVICE_FLAG_DOCS: dict[DeviceFlag, str] = {
    DeviceFlag.ISOLATED: (
        "The platform guarantees that a message allocated for this device is delivered only when written with "
        "this device's requester id (source validation: VT-d IRTE SVT/SQ/SID, the AMD-Vi and GIC ITS DeviceID), "
        "like Linux msi_device_has_isolated_msi(). It says nothing about functions or sub-devices that share "
        "the requester id (SHARED_SOURCE)."
    ),
    DeviceFlag.CLAIMED: "The device is claimed for pvmsi by this VM.",
    DeviceFlag.RETARGET_IN_PLACE: (
        "Retargeting never changes a message's address/data pair, so the guest never rewrites the device."
    ),
    DeviceFlag.NEEDS_VIOMMU: "The device's sub-devices need a vIOMMU (PASID) in the guest to be used.",
    DeviceFlag.SHARED_SOURCE: (
        "Other sub-devices (or the function and its sub-devices) write their messages with this device's "
        "requester id: no IOMMU checks a PASID on an interrupt, so their messages are not isolated from each "
        "other, only from every other requester id. All of them are assigned to this one VM."
    ),
}


class DeliveryFlag(IntFlag):
    """Delivery flags of an allocate or activate entry."""

    POSTED = 1 << 0


DELIVERY_FLAG_DOCS: dict[DeliveryFlag, str] = {
    DeliveryFlag.POSTED: "Deliver through posted interrupts where the platform can (requires feature POSTED).",
}


class AllocFlag(IntFlag):
    """Flags of an MSG_ALLOC entry (alloc_entry.alloc_flags)."""

    ACTIVATE = 1 << 0
    LOCALITY_HINT = 1 << 1


ALLOC_FLAG_DOCS: dict[AllocFlag, str] = {
    AllocFlag.ACTIVATE: (
        "One step: reserve and activate the message with the entry's vcpu and vector (as MSG_ACTIVATE with "
        "PVMSI_ACTENT_BLOCK would), and return its pair. Clear: reserve only; vcpu and vector must be zero and "
        "the result's address and data are zero."
    ),
    AllocFlag.LOCALITY_HINT: (
        "hint_vcpu names the vCPU the guest expects to target: the hypervisor may pick a remapping unit, table "
        "or posted-interrupt descriptor memory near it. A hint only: it binds nothing, a later MSG_ACTIVATE may "
        "name any vCPU. Clear: hint_vcpu must be zero."
    ),
}


class ActivateEntryFlag(IntFlag):
    """Flags of an MSG_ACTIVATE or MSG_DEACTIVATE entry (entry_flags)."""

    BLOCK = 1 << 0


ACTIVATE_ENTRY_FLAG_DOCS: dict[ActivateEntryFlag, str] = {
    ActivateEntryFlag.BLOCK: (
        "The entry applies to every vector of the message: vector i of a multi-message MSI block delivers "
        "vector + i to vcpu (index must be zero). Clear: the entry applies to vector index of the block only "
        "(index 0 for an MSI-X or IMS message)."
    ),
}


class ActivateFlag(IntFlag):
    """Flags of an MSG_ACTIVATE result."""

    REWRITE = 1 << 0


ACTIVATE_FLAG_DOCS: dict[ActivateFlag, str] = {
    ActivateFlag.REWRITE: (
        "The guest must write the pair into the device: the message was reserved (no pair was in force), or its "
        "address/data pair changed. Clear when the remapping entry was updated in place."
    ),
}


class EventType(IntEnum):
    """What a host-to-guest event says (spec "Events")."""

    REFETCH = 1
    REVOKED = 2
    DEVICE_REMOVED = 3
    LIMITS_CHANGED = 4


EVENT_TYPE_DOCS: dict[EventType, str] = {
    EventType.REFETCH: (
        "The VM's pairs may have changed (live migration, a host reset): re-activate every message and write "
        "every pair returned with REWRITE into its device. Device and handle are zero."
    ),
    EventType.REVOKED: (
        "The hypervisor revoked the message of the handle (reason says why): its writes are blocked and every "
        "call but MSG_FREE on it fails with REVOKED; free the handle."
    ),
    EventType.DEVICE_REMOVED: (
        "The device was hot-unplugged: its handles are gone; drop them without freeing (GUEST-UNPLUG-001). "
        "Handle is zero."
    ),
    EventType.LIMITS_CHANGED: (
        "GET_INFO's limits changed (a migration to a host with other limits): read them again. Device and handle "
        "are zero."
    ),
}


class RevokeReason(IntEnum):
    """Why a message was revoked (the reason of a REVOKED event; zero in any other event)."""

    NONE = 0
    STORM = 1
    HOST_POLICY = 2


REVOKE_REASON_DOCS: dict[RevokeReason, str] = {
    RevokeReason.NONE: "Not a REVOKED event.",
    RevokeReason.STORM: "The message fired above the rate the hypervisor states (an interrupt storm).",
    RevokeReason.HOST_POLICY: "The host's policy (an administrator, a resource the host needed back).",
}


class EventConfigFlag(IntFlag):
    """Flags of EVENT_CONFIG."""

    ENABLE = 1 << 0


EVENT_CONFIG_FLAG_DOCS: dict[EventConfigFlag, str] = {
    EventConfigFlag.ENABLE: (
        "Register vcpu and vector as the notification target; clear: remove the target (vcpu and vector zero)."
    ),
}


class MessageFormat(IntEnum):
    """The platform format of the address/data pairs this hypervisor hands out (GET_INFO message_format; each
    format's bit layout is in :mod:`pvmsi.spec.platforms`)."""

    VTD_REMAPPED = 1
    AMD_VI = 2
    ARM_GIC_ITS = 3
    RISCV_IMSIC = 4


MESSAGE_FORMAT_DOCS: dict[MessageFormat, str] = {
    MessageFormat.VTD_REMAPPED: (
        "Intel VT-d remappable format: address 0xFEE in bits 31:20, handle[14:0] in bits 19:5, bit 4 = 1, bit 3 "
        "SHV, bit 2 handle[15]; data the sub-handle (SHV set). Retargeting updates the IRTE: the pair stays."
    ),
    MessageFormat.AMD_VI: (
        "AMD-Vi: address 0xFEExxxxx as in compatibility format; data[10:0] indexes the interrupt remapping table "
        "of the device (DTE IntTab/IntTabLen, selected by DeviceID). Retargeting updates the IRTE: the pair stays."
    ),
    MessageFormat.ARM_GIC_ITS: (
        "Arm GICv3/v4 ITS behind an SMMU: address the doorbell IOVA (GITS_TRANSLATER mapped in the device's MSI "
        "window, never a host physical address), data the EventID in the device's ITT (DeviceID from the "
        "requester id). Retargeting remaps the event (MOVI / VMOVI): the pair stays."
    ),
    MessageFormat.RISCV_IMSIC: (
        "RISC-V AIA IMSIC: address the target hart's guest interrupt-file page as the device sees it (mapped by "
        "the IOMMU's MSI page table), data the interrupt identity. A retarget to another hart changes the "
        "address: REWRITE is set."
    ),
}


class Limit(IntEnum):
    """Fixed limits of pvmsi 1.0."""

    PAGE_SIZE = 4096
    BLOCK_ALIGN = 8
    MSI_MAX_VECTORS = 32
    PASID_BITS = 20
    MAX_EVENTS = 102


LIMIT_DOCS: dict[Limit, str] = {
    Limit.PAGE_SIZE: "A parameter block never crosses a boundary of this size (bytes).",
    Limit.BLOCK_ALIGN: (
        "Parameter blocks start at a guest physical address aligned to this and are sized in its multiples."
    ),
    Limit.MSI_MAX_VECTORS: "Largest multi-message MSI block.",
    Limit.PASID_BITS: "Width of a PASID used as sub-device id.",
    Limit.MAX_EVENTS: (
        "Most unacknowledged events a VM's queue holds: what one EVENT_FETCH output page holds, so one fetch always "
        "returns the whole queue (HV-EVT-005)."
    ),
}


@dataclass(frozen=True)
class ConstantGroup:
    """One group of named constants, as dumped and documented."""

    key: str
    c_prefix: str
    kind: ConstKind
    doc: str
    members: tuple[tuple[str, int, str], ...]
    source: type[IntEnum] | type[IntFlag]

    @staticmethod
    def of(
        key: str, c_prefix: str, kind: ConstKind, enum: type[IntEnum] | type[IntFlag], docs: Mapping[Any, str]
    ) -> ConstantGroup:
        members = []
        for member in enum:
            assert member.name is not None
            members.append((member.name, int(member), docs[member]))
        return ConstantGroup(key, c_prefix, kind, (enum.__doc__ or "").strip(), tuple(members), enum)

    def c_name(self, member: str) -> str:
        return f"{self.c_prefix}{member}"


CONSTANT_GROUPS: tuple[ConstantGroup, ...] = (
    ConstantGroup.of("status", "PVMSI_STATUS_", "enum", Status, STATUS_DOCS),
    ConstantGroup.of("function", "PVMSI_FN_", "enum", FunctionNumber, FUNCTION_DOCS),
    ConstantGroup.of("msg_kind", "PVMSI_KIND_", "enum", MsgKind, MSG_KIND_DOCS),
    ConstantGroup.of("kind_mask", "PVMSI_KINDS_", "flags", KindMask, KIND_MASK_DOCS),
    ConstantGroup.of("feature", "PVMSI_F_", "flags", Feature, FEATURE_DOCS),
    ConstantGroup.of("device_id_flag", "PVMSI_DEVID_", "flags", DeviceIdFlag, DEVICE_ID_FLAG_DOCS),
    ConstantGroup.of("device_flag", "PVMSI_DEV_", "flags", DeviceFlag, DEVICE_FLAG_DOCS),
    ConstantGroup.of("delivery_flag", "PVMSI_DELIVER_", "flags", DeliveryFlag, DELIVERY_FLAG_DOCS),
    ConstantGroup.of("event_type", "PVMSI_EVENT_", "enum", EventType, EVENT_TYPE_DOCS),
    ConstantGroup.of("revoke_reason", "PVMSI_REVOKE_", "enum", RevokeReason, REVOKE_REASON_DOCS),
    ConstantGroup.of("event_config_flag", "PVMSI_EVCFG_", "flags", EventConfigFlag, EVENT_CONFIG_FLAG_DOCS),
    ConstantGroup.of("alloc_flag", "PVMSI_ALLOC_", "flags", AllocFlag, ALLOC_FLAG_DOCS),
    ConstantGroup.of("activate_entry_flag", "PVMSI_ACTENT_", "flags", ActivateEntryFlag, ACTIVATE_ENTRY_FLAG_DOCS),
    ConstantGroup.of("activate_flag", "PVMSI_ACTIVATE_", "flags", ActivateFlag, ACTIVATE_FLAG_DOCS),
    ConstantGroup.of("message_format", "PVMSI_MSGFMT_", "enum", MessageFormat, MESSAGE_FORMAT_DOCS),
    ConstantGroup.of("limit", "PVMSI_", "value", Limit, LIMIT_DOCS),
    ConstantGroup(
        "extension",
        "PVMSI_",
        "value",
        (Extension.__doc__ or "").strip(),
        tuple((name, int(m), EXTENSION_DOCS[name]) for name, m in Extension.__members__.items()),
        Extension,
    ),
    ConstantGroup.of("harness_frame_kind", "PVMSI_HFRAME_", "enum", hc.FrameKind, hc.FRAME_KIND_DOCS),
    ConstantGroup.of("harness_status", "PVMSI_HSTATUS_", "enum", hc.HarnessStatus, hc.HARNESS_STATUS_DOCS),
    ConstantGroup.of("harness_role", "PVMSI_HROLE_", "enum", hc.HarnessRole, hc.HARNESS_ROLE_DOCS),
    ConstantGroup.of("device_profile", "PVMSI_HPROFILE_", "enum", hc.DeviceProfile, hc.DEVICE_PROFILE_DOCS),
    ConstantGroup.of("device_space", "PVMSI_HSPACE_", "enum", hc.DeviceSpace, hc.DEVICE_SPACE_DOCS),
    ConstantGroup.of("lifecycle_event", "PVMSI_HEVENT_", "enum", hc.LifecycleEvent, hc.LIFECYCLE_EVENT_DOCS),
    ConstantGroup.of("trap_arch", "PVMSI_HARCH_", "enum", hc.TrapArch, hc.TRAP_ARCH_DOCS),
    ConstantGroup.of("trap_instruction", "PVMSI_HTRAP_", "enum", hc.TrapInstruction, hc.TRAP_INSTRUCTION_DOCS),
    ConstantGroup.of("fire_outcome", "PVMSI_HFIRE_", "enum", hc.FireOutcome, hc.FIRE_OUTCOME_DOCS),
    ConstantGroup.of("guest_op", "PVMSI_HGUEST_", "enum", hc.GuestOp, hc.GUEST_OP_DOCS),
    ConstantGroup.of("guest_boot_flag", "PVMSI_HBOOT_", "flags", hc.GuestBootFlag, hc.GUEST_BOOT_FLAG_DOCS),
    ConstantGroup.of("device_op", "PVMSI_HDEVOP_", "enum", hc.DeviceOp, hc.DEVICE_OP_DOCS),
)


def group_of(enum_type: type[IntEnum] | type[IntFlag]) -> ConstantGroup:
    """The constant group defined by ``enum_type``."""
    for g in CONSTANT_GROUPS:
        if g.source is enum_type:
            return g
    raise KeyError(enum_type.__name__)


def group(key: str) -> ConstantGroup:
    """The constant group named ``key``."""
    for g in CONSTANT_GROUPS:
        if g.key == key:
            return g
    raise KeyError(key)
