"""The conformance harness protocol (spec appendix "Harness protocol"), modelled on QEMU's qtest.

Every frame is a :data:`FRAME_HEADER` followed by ``length`` payload bytes (a multiple of 8).  A request's
payload is the format its kind names, optionally followed by entries or bytes; the peer answers every request
with exactly one response frame carrying the same ``seq``, or an ERROR frame.
"""

from __future__ import annotations

from typing import Any

import construct as cs

from ..constants import MsgKind, Status
from ..fields import EnumField, Reserved, ValuesOf, define, s32, s64, u8, u16, u32, u64
from ..harness_constants import (
    HARNESS_CONFIG_SPACE_SIZE,
    HARNESS_MAX_DEVICES,
    HARNESS_MAX_MEM_ACCESS,
    HARNESS_MAX_RAM_MIB,
    HARNESS_MAX_VCPUS,
    DeviceOp,
    DeviceProfile,
    DeviceSpace,
    FireOutcome,
    FrameKind,
    GuestOp,
    HarnessRole,
    HarnessStatus,
    LifecycleEvent,
    TrapArch,
    TrapInstruction,
)
from .device import DEVICE_ID

FRAME_HEADER: Any = define(
    "frame_header",
    "harness",
    "Starts every harness frame.",
    cs.Struct(
        "magic" / u32 * "0x484D5650 ('PVMH').",
        "version_major" / u8 * "Harness protocol major version (1).",
        "version_minor" / u8 * "Harness protocol minor version (0).",
        "kind" / EnumField(u16, FrameKind) * "PVMSI_HFRAME_*.",
        "seq" / u32 * "Request sequence number, echoed by the response.",
        "length" / u32 * "Payload bytes after this header: a multiple of 8, at most 65536.",
    ),
)

HELLO: Any = define(
    "harness_hello",
    "harness",
    "Payload of HELLO and HELLO_ACK.",
    cs.Struct(
        "role" / EnumField(u8, HarnessRole) * "HELLO: the role the suite expects of the IUT; HELLO_ACK: the IUT's.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "spec_major" / u8 * "pvmsi major version the sender implements.",
        "spec_minor" / u8 * "pvmsi minor version the sender implements.",
        "max_payload" / u32 * "Largest payload the sender accepts.",
        "name" / cs.Bytes(8) * "Implementation name, ASCII, NUL-padded.",
    ),
)

VM_CONFIG: Any = define(
    "vm_config",
    "harness",
    "Payload of VM_CREATE; device_count device_slot entries follow. The knobs configure the IUT for this VM; an "
    "IUT that cannot honour a non-zero knob answers UNSUPPORTED (the test becomes unsupported).",
    cs.Struct(
        "vcpus" / u32 * f"vCPUs (1..{HARNESS_MAX_VCPUS}).",
        "ram_mib" / u32 * f"Guest RAM from GPA 0, in MiB (1..{HARNESS_MAX_RAM_MIB}).",
        "device_count" / u32 * f"device_slot entries that follow (0..{HARNESS_MAX_DEVICES}).",
        "yield_after" / u32 * "Knob: end every batch call with INCOMPLETE after this many entries; 0: never.",
        "features_required" / u64 * "Knob: what GET_INFO reports as features_required (subset of the offer).",
        "features_withheld" / u64 * "Knob: feature bits the IUT must not offer to this VM.",
        "remap_entries"
        / u32
        * "Knob: this VM's share of the remapping table, pvmsi and emulated vectors together; 0: the default share.",
        "max_claimed_devices" / u32 * "Knob: what GET_INFO reports as max_claimed_devices; 0: the IUT's own.",
        "storm_limit"
        / u32
        * "Knob: revoke a message that delivers more than this many times with no hypercall of the VM in between "
        "(an interrupt storm, HV-REVOKE-001): deliveries 1..storm_limit + 1 arrive, the last of them revokes the "
        "message (REVOKED queued at once), and from the next DEVICE_FIRE on it does not deliver; any hypercall of "
        "the VM starts the count again; 0: the IUT's own policy.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

DEVICE_SLOT: Any = define(
    "device_slot",
    "harness",
    "One device of a VM_CREATE: a profile at a guest identity.",
    cs.Struct(
        "profile" / EnumField(u8, DeviceProfile) * "PVMSI_HPROFILE_*.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "segment" / u16 * "Guest PCI segment.",
        "bus" / u8 * "Guest PCI bus.",
        "devfn" / u8 * "Guest PCI devfn.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
    ),
)

VM_REF: Any = define(
    "vm_ref",
    "harness",
    "Payload of VM_DESTROY, COLLECT, COUNTERS and VM_CREATED.",
    cs.Struct(
        "vm" / u32 * "VM id.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

MEM_ACCESS: Any = define(
    "mem_access",
    "harness",
    "Payload of MEM_READ, and of MEM_WRITE followed by the bytes (padded to 8).",
    cs.Struct(
        "vm" / u32 * "VM id.",
        "size" / u32 * f"Bytes to read or write (1..{HARNESS_MAX_MEM_ACCESS}).",
        "gpa" / u64 * "Guest physical address.",
    ),
)

HYPERCALL_REQ: Any = define(
    "hypercall_req",
    "harness",
    "Payload of HYPERCALL (suite to hypervisor IUT) and, followed by the input block, GUEST_HYPERCALL.",
    cs.Struct(
        "vm" / u32 * "VM id (GUEST_HYPERCALL: zero).",
        "vcpu" / u32 * "vCPU issuing the call: an index, 0 to vm_config.vcpus - 1. A harness VM numbers its "
        "vCPUs so that vCPU i's architectural id (x86 APIC id, arm64 MPIDR affinity, riscv64 hart id) is i, "
        "so the index is also the id a pvmsi entry names it by. A guest IUT may issue its GUEST_HYPERCALLs "
        "on any vCPU of its VM (the reference guest: vCPU 0); no pvmsi call's outcome depends on it.",
        "function" / u32 * "pvmsi function number (PVMSI_FN_*), architecture-neutral.",
        "in_size" / u32 * "GUEST_HYPERCALL: bytes of the input block that follow; HYPERCALL: zero.",
        "out_size" / u32 * "GUEST_HYPERCALL: bytes of output block the guest reads back; HYPERCALL: zero.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
        "args" / cs.Array(4, u64) * "arg0..arg3.",
    ),
)

HYPERCALL_RES: Any = define(
    "hypercall_res",
    "harness",
    "Payload of HYPERCALL_RESULT (for GUEST_HYPERCALL followed by the output block).",
    cs.Struct(
        "status" / ValuesOf(s64, Status) * "The status register, sign-extended.",
        "value" / u64 * "The value register.",
    ),
)

DEVICE_WRITE: Any = define(
    "device_write",
    "harness",
    "Payload of DEVICE_WRITE: one guest store to a device register, as the guest's vCPU would do it.",
    cs.Struct(
        "vm" / u32 * "VM id.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
        "device" / DEVICE_ID * "The device as the guest sees it.",
        "space" / EnumField(u8, DeviceSpace) * "PVMSI_HSPACE_*.",
        "size" / u8 * "Access size: 1, 2, 4 or 8.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "offset" / u32 * "Offset in the space.",
        "value" / u64 * "Value stored (little-endian, size bytes).",
    ),
)

DEVICE_RESULT: Any = define(
    "device_result",
    "harness",
    "Payload of DEVICE_RESULT.",
    cs.Struct(
        "exited" / u8 * "1 when the store trapped to the hypervisor (an exit), else 0.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "reserved2" / Reserved(u32) * "Reserved, zero.",
    ),
)

DEVICE_FIRE: Any = define(
    "device_fire",
    "harness",
    "Payload of DEVICE_FIRE: the device emits the message stored in a slot.",
    cs.Struct(
        "vm" / u32 * "VM id.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
        "device" / DEVICE_ID * "The device (or sub-device) as the guest sees it.",
        "kind" / EnumField(u8, MsgKind) * "PVMSI_KIND_*.",
        "reserved1" / Reserved(u8) * "Reserved, zero.",
        "reserved2" / Reserved(u16) * "Reserved, zero.",
        "index" / u32 * "MSI-X entry or IMS slot; for MSI the vector number within the block.",
    ),
)

FIRE_RESULT: Any = define(
    "fire_result",
    "harness",
    "Payload of FIRE_RESULT.",
    cs.Struct(
        "outcome" / EnumField(u8, FireOutcome) * "PVMSI_HFIRE_*.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "vcpu" / u32 * "DELIVERED: the vCPU it reached.",
        "vector" / u32 * "DELIVERED: the vector injected.",
        "reserved2" / Reserved(u32) * "Reserved, zero.",
    ),
)

INTERRUPTS_HDR: Any = define(
    "interrupts_hdr",
    "harness",
    "Payload of INTERRUPTS; count interrupt_record entries follow.",
    cs.Struct(
        "count" / u32 * "Records that follow, oldest first.",
        "remaining" / u32 * "Records still queued after these (more than one frame holds); COLLECT again to take them.",
    ),
)

INTERRUPT_RECORD: Any = define(
    "interrupt_record",
    "harness",
    "One injected interrupt.",
    cs.Struct(
        "vcpu" / u32 * "vCPU it was injected into.",
        "vector" / u32 * "Vector injected.",
    ),
)

COUNTER_VALUES: Any = define(
    "counter_values",
    "harness",
    "Payload of COUNTER_VALUES: totals since the VM was created.",
    cs.Struct(
        "exits" / u64 * "Every exit of every vCPU.",
        "hypercall_exits" / u64 * "Exits for hypercalls.",
        "msi_exits"
        / u64
        * "Exits for trapped accesses to the MSI capability (configuration space: on both paths, HV-EMU-001).",
        "msix_exits"
        / u64
        * "Exits for trapped accesses to the MSI-X capability (on both paths) and table (only while emulated).",
        "delivered" / u64 * "Device messages delivered into this VM.",
        "blocked" / u64 * "Device messages of this VM's devices blocked by the IOMMU.",
        "last_call_max_reads"
        / u64
        * "Most times any one guest byte was read during the VM's last hypercall; 0: the IUT does not track it.",
    ),
)

LIFECYCLE: Any = define(
    "lifecycle",
    "harness",
    "Payload of LIFECYCLE.",
    cs.Struct(
        "vm" / u32 * "VM id.",
        "event" / EnumField(u8, LifecycleEvent) * "PVMSI_HEVENT_*.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "device" / DEVICE_ID * "The device (FLR, HOT_UNPLUG); zero for VM_RESET.",
        "reserved2" / Reserved(u64) * "Reserved, zero.",
    ),
)

CONFIG_READ: Any = define(
    "config_read",
    "harness",
    "Payload of CONFIG_READ: bytes of a device's configuration space, as its guest would read them. A sub-device "
    "identity reads its function's configuration space (a sub-device has none of its own).",
    cs.Struct(
        "vm" / u32 * "VM id.",
        "size" / u32 * f"Bytes to read: a multiple of 4, 4..{HARNESS_CONFIG_SPACE_SIZE}; offset + size at most "
        f"{HARNESS_CONFIG_SPACE_SIZE}.",
        "device" / DEVICE_ID * "The device as the guest sees it.",
        "offset" / u32 * "Offset of the first byte: a multiple of 4.",
        "reserved0" / Reserved(u32) * "Reserved, zero.",
    ),
)

TRAP_REQ: Any = define(
    "trap_req",
    "harness",
    "Payload of TRAP and GUEST_TRAP: a vCPU executes a trap instruction with these registers (calling conventions, "
    "CPUID, discovery).",
    cs.Struct(
        "vm" / u32 * "VM id.",
        "vcpu" / u32 * "vCPU executing the instruction.",
        "arch" / EnumField(u8, TrapArch) * "PVMSI_HARCH_*: which registers regs[] holds.",
        "instruction" / EnumField(u8, TrapInstruction) * "PVMSI_HTRAP_*.",
        "privilege"
        / u8
        * "Privilege the vCPU executes at: x86-64 CPL 0-3 (calling conventions: a call from CPL > 0 is not run); "
        "zero on arm64 and riscv64, where only the guest kernel can reach the hypervisor.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u32) * "Reserved, zero.",
        "regs" / cs.Array(8, u64) * "The register file before the instruction.",
    ),
)

TRAP_RES: Any = define(
    "trap_res",
    "harness",
    "Payload of TRAP_RESULT: the register file after the instruction.",
    cs.Struct(
        "handled" / u8 * "1 when the hypervisor handled the trap (pvmsi, SBI base or CPUID), 0 if it did not know it.",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "reserved2" / Reserved(u32) * "Reserved, zero.",
        "regs" / cs.Array(8, u64) * "The register file after the instruction.",
    ),
)

HARNESS_ERROR: Any = define(
    "harness_error",
    "harness",
    "Payload of ERROR, followed by a UTF-8 detail padded with NULs to a multiple of 8.",
    cs.Struct(
        "code" / EnumField(u32, HarnessStatus) * "PVMSI_HSTATUS_*.",
        "offset" / u32 * "Byte offset in the offending frame (header included) where the problem was found.",
        "request_kind" / ValuesOf(u16, FrameKind) * "Kind of the offending frame.",
        "reserved0" / Reserved(u16) * "Reserved, zero.",
        "detail_size" / u32 * "Bytes of UTF-8 detail that follow (before padding).",
    ),
)

GUEST_COMMAND: Any = define(
    "guest_command",
    "harness",
    "Payload of GUEST_COMMAND: an operation the guest IUT performs, issuing its own frames while it does.",
    cs.Struct(
        "op" / EnumField(u8, GuestOp) * "PVMSI_HGUEST_*.",
        "kind" / u8 * "PVMSI_KIND_* for ENABLE, RETARGET, DISABLE; zero otherwise.",
        "reserved0" / Reserved(u16) * "Reserved, zero.",
        "count" / u32 * "ENABLE: messages (MSI: vectors of the block). BOOT: PVMSI_HBOOT_* flags (zero: an "
        "ordinary VM). Zero otherwise.",
        "device" / DEVICE_ID * "The device; zero for BOOT.",
        "vcpu" / u32 * "ENABLE, RETARGET, EVENTS: the target vCPU, by the architectural id the guest puts in a "
        "pvmsi entry's vcpu (harness VMs number their vCPUs so that vCPU i's APIC id, MPIDR affinity or hart id "
        "is i).",
        "vector" / u32 * "ENABLE: first vector.",
        "first_slot" / u32 * "ENABLE: first MSI-X entry or IMS slot.",
        "reserved1" / Reserved(u32) * "Reserved, zero.",
        "scratch_gpa"
        / u64
        * "BOOT: the first of the two consecutive guest pages the guest uses for parameter blocks (a page each for "
        "the input and the output block, so that a batch can fill a page); they stand for the memory the guest "
        "shares with its host (a confidential VM's shared pages). Always 4 KiB-aligned (a multiple of "
        "PVMSI_PAGE_SIZE), in guest RAM; the guest may place its blocks anywhere in them that the memory rules "
        "allow.",
    ),
)

GUEST_RESULT: Any = define(
    "guest_result",
    "harness",
    "Payload of GUEST_RESULT.",
    cs.Struct(
        "status"
        / ValuesOf(s32, Status)
        * "SUCCESS when the guest did what the command asks, and for a BOOT that falls back to emulated MSI/MSI-X "
        "(pvmsi absent, of another major version, or refused: mode 2 says so; the fallback is the guest working "
        "as the spec requires, not an error). Otherwise the negative pvmsi status of the call that made the "
        "command fail, exactly as the call returned it (one the guest does not know included): an ENABLE whose "
        "MSG_ALLOC stopped at an entry with NO_RESOURCES reports NO_RESOURCES. A command that fails because the "
        "guest refused a pair under GUEST-CVM-002 (no call failed): INVALID_ADDRESS. A command before any BOOT: "
        "WRONG_STATE.",
        "mode" / u8 * "1: pvmsi negotiated, 2: emulated MSI/MSI-X, 0: not booted (the mode after the command).",
        "reserved0" / Reserved(u8) * "Reserved, zero.",
        "reserved1" / Reserved(u16) * "Reserved, zero.",
        "done"
        / u32
        * "Vectors the command acted on, an MSI block of n vectors counting n: ENABLE the vectors enabled, "
        "RETARGET the vectors moved (every vector of the kind the guest holds), DISABLE the vectors disabled and "
        "freed, FLR the vectors restored, UNPLUG the vectors dropped, RELEASE the vectors the device held; NOTIFY "
        "the events handled; BOOT and EVENTS 0. A command that fails reports instead the vectors of the kind "
        "(FLR, UNPLUG, RELEASE: of the device) it left enabled and working: an ENABLE that freed what it had "
        "obtained 0; a RETARGET every vector that still delivers, moved or at its old target.",
        "reserved2" / Reserved(u32) * "Reserved, zero.",
    ),
)

GUEST_DEVICE_OP: Any = define(
    "guest_device_op",
    "harness",
    "Payload of GUEST_DEVICE_OP: the guest IUT acts on its device.",
    cs.Struct(
        "op" / EnumField(u8, DeviceOp) * "PVMSI_HDEVOP_*.",
        "kind" / EnumField(u8, MsgKind) * "PVMSI_KIND_*.",
        "reserved0" / Reserved(u16) * "Reserved, zero.",
        "slot" / u32 * "MSI-X entry or IMS slot (MSI: 0).",
        "device" / DEVICE_ID * "The device as the guest sees it.",
        "address" / u64 * "PROGRAM: message address.",
        "data" / u32 * "PROGRAM: message data.",
        "vectors" / u32 * "PROGRAM for MSI: vectors of the block (Multiple Message Enable).",
    ),
)


class Payload:
    """What follows the frame header for one kind: a fixed format, then optionally entries or raw bytes.

    ``tail`` is ``None`` (nothing follows), ``("entries", fmt, count_field)`` or ``("bytes", size_field)``:
    the named field of the fixed part gives the count or the byte size of the tail (padded to 8).
    """

    def __init__(self, fmt: Any | None, tail: tuple[str, ...] | tuple[str, Any, str] | None = None) -> None:
        self.fmt = fmt
        self.tail = tail


#: The payload of every frame kind (normative: a frame whose payload does not match is BAD_LENGTH/BAD_PAYLOAD).
PAYLOADS: dict[FrameKind, Payload] = {
    FrameKind.HELLO: Payload(HELLO),
    FrameKind.VM_CREATE: Payload(VM_CONFIG, ("entries", DEVICE_SLOT, "device_count")),
    FrameKind.VM_DESTROY: Payload(VM_REF),
    FrameKind.MEM_WRITE: Payload(MEM_ACCESS, ("bytes", "size")),
    FrameKind.MEM_READ: Payload(MEM_ACCESS),
    FrameKind.HYPERCALL: Payload(HYPERCALL_REQ),
    FrameKind.DEVICE_WRITE: Payload(DEVICE_WRITE),
    FrameKind.DEVICE_FIRE: Payload(DEVICE_FIRE),
    FrameKind.COLLECT: Payload(VM_REF),
    FrameKind.COUNTERS: Payload(VM_REF),
    FrameKind.LIFECYCLE: Payload(LIFECYCLE),
    FrameKind.TRAP: Payload(TRAP_REQ),
    FrameKind.TRAP_RESULT: Payload(TRAP_RES),
    FrameKind.CONFIG_READ: Payload(CONFIG_READ),
    FrameKind.CONFIG_DATA: Payload(None, ("bytes",)),
    FrameKind.BYE: Payload(None),
    FrameKind.GUEST_COMMAND: Payload(GUEST_COMMAND),
    FrameKind.GUEST_HYPERCALL: Payload(HYPERCALL_REQ, ("bytes", "in_size")),
    FrameKind.GUEST_DEVICE_OP: Payload(GUEST_DEVICE_OP),
    FrameKind.GUEST_TRAP: Payload(TRAP_REQ),
    FrameKind.OK: Payload(None),
    FrameKind.HELLO_ACK: Payload(HELLO),
    FrameKind.VM_CREATED: Payload(VM_REF),
    FrameKind.MEM_DATA: Payload(None, ("bytes",)),
    FrameKind.HYPERCALL_RESULT: Payload(HYPERCALL_RES, ("bytes",)),
    FrameKind.DEVICE_RESULT: Payload(DEVICE_RESULT),
    FrameKind.FIRE_RESULT: Payload(FIRE_RESULT),
    FrameKind.INTERRUPTS: Payload(INTERRUPTS_HDR, ("entries", INTERRUPT_RECORD, "count")),
    FrameKind.COUNTER_VALUES: Payload(COUNTER_VALUES),
    FrameKind.GUEST_RESULT: Payload(GUEST_RESULT),
    FrameKind.ERROR: Payload(HARNESS_ERROR, ("bytes", "detail_size")),
}

#: The formats of this module, in definition order (:mod:`pvmsi.spec.formats` registers them).
DEFINED: tuple[Any, ...] = (
    FRAME_HEADER,
    HELLO,
    VM_CONFIG,
    DEVICE_SLOT,
    VM_REF,
    MEM_ACCESS,
    HYPERCALL_REQ,
    HYPERCALL_RES,
    DEVICE_WRITE,
    DEVICE_RESULT,
    DEVICE_FIRE,
    FIRE_RESULT,
    INTERRUPTS_HDR,
    INTERRUPT_RECORD,
    COUNTER_VALUES,
    LIFECYCLE,
    TRAP_REQ,
    TRAP_RES,
    CONFIG_READ,
    HARNESS_ERROR,
    GUEST_COMMAND,
    GUEST_RESULT,
    GUEST_DEVICE_OP,
)
