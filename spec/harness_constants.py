"""Constants of the conformance harness protocol (spec appendix "Harness protocol")."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

HARNESS_MAGIC = 0x484D5650  # "PVMH" as little-endian bytes
HARNESS_VERSION_MAJOR = 1
HARNESS_VERSION_MINOR = 0
HARNESS_MAX_PAYLOAD = 65536
#: Limits of VM_CREATE (vm_config): vCPUs, guest RAM in MiB and device slots of one VM.
HARNESS_MAX_VCPUS = 256
HARNESS_MAX_RAM_MIB = 4096
HARNESS_MAX_DEVICES = 16
#: Limits of one session: VMs alive at once, and the guest RAM (MiB) of those VMs together; a VM_CREATE past
#: either is answered ERROR LIMIT and creates nothing.
HARNESS_MAX_VMS = 64
HARNESS_MAX_SESSION_RAM_MIB = 1024
#: Sessions a socket IUT serves at once; a further connection is answered ERROR BUSY and closed.
HARNESS_MAX_SESSIONS = 8
#: Largest size of one MEM_READ or MEM_WRITE (mem_access.size), in bytes.
HARNESS_MAX_MEM_ACCESS = 4096
#: Size of a test device's configuration space (PCI Express: 4 KiB), the most one CONFIG_READ reads.
HARNESS_CONFIG_SPACE_SIZE = 4096


@dataclass(frozen=True)
class HarnessValue:
    """A fixed number of the harness protocol, as dumped and documented."""

    name: str
    value: int
    doc: str


HARNESS_VALUES: tuple[HarnessValue, ...] = (
    HarnessValue("HARNESS_MAGIC", HARNESS_MAGIC, 'frame_header.magic: "PVMH" as little-endian bytes.'),
    HarnessValue("HARNESS_VERSION_MAJOR", HARNESS_VERSION_MAJOR, "frame_header.version_major of this protocol."),
    HarnessValue("HARNESS_VERSION_MINOR", HARNESS_VERSION_MINOR, "frame_header.version_minor of this protocol."),
    HarnessValue("HARNESS_MAX_PAYLOAD", HARNESS_MAX_PAYLOAD, "Largest payload of one frame, in bytes."),
    HarnessValue("HARNESS_MAX_VCPUS", HARNESS_MAX_VCPUS, "Largest vm_config.vcpus."),
    HarnessValue("HARNESS_MAX_RAM_MIB", HARNESS_MAX_RAM_MIB, "Largest vm_config.ram_mib (MiB of guest RAM)."),
    HarnessValue("HARNESS_MAX_DEVICES", HARNESS_MAX_DEVICES, "Largest vm_config.device_count."),
    HarnessValue("HARNESS_MAX_VMS", HARNESS_MAX_VMS, "VMs one session may hold alive at once."),
    HarnessValue(
        "HARNESS_MAX_SESSION_RAM_MIB", HARNESS_MAX_SESSION_RAM_MIB, "Guest RAM (MiB) of one session's VMs together."
    ),
    HarnessValue("HARNESS_MAX_SESSIONS", HARNESS_MAX_SESSIONS, "Sessions a socket IUT serves at once."),
    HarnessValue("HARNESS_MAX_MEM_ACCESS", HARNESS_MAX_MEM_ACCESS, "Largest mem_access.size, in bytes."),
    HarnessValue(
        "HARNESS_CONFIG_SPACE_SIZE",
        HARNESS_CONFIG_SPACE_SIZE,
        "Bytes of a test device's configuration space: the end of what CONFIG_READ reads.",
    ),
)


class FrameKind(IntEnum):
    """What a harness frame carries. Requests are below 0x80, responses 0x80 and above."""

    HELLO = 0x01
    VM_CREATE = 0x02
    VM_DESTROY = 0x03
    MEM_WRITE = 0x04
    MEM_READ = 0x05
    HYPERCALL = 0x06
    DEVICE_WRITE = 0x07
    DEVICE_FIRE = 0x08
    COLLECT = 0x09
    COUNTERS = 0x0A
    LIFECYCLE = 0x0B
    TRAP = 0x0C
    CONFIG_READ = 0x0D
    BYE = 0x0F
    GUEST_COMMAND = 0x20
    GUEST_HYPERCALL = 0x30
    GUEST_DEVICE_OP = 0x31
    GUEST_TRAP = 0x32
    OK = 0x80
    HELLO_ACK = 0x81
    VM_CREATED = 0x82
    MEM_DATA = 0x83
    HYPERCALL_RESULT = 0x84
    DEVICE_RESULT = 0x85
    FIRE_RESULT = 0x86
    INTERRUPTS = 0x87
    COUNTER_VALUES = 0x88
    GUEST_RESULT = 0x89
    TRAP_RESULT = 0x8A
    CONFIG_DATA = 0x8B
    ERROR = 0xFF


FRAME_KIND_DOCS: dict[FrameKind, str] = {
    FrameKind.HELLO: "Suite -> IUT: open a session (harness_hello); answered by HELLO_ACK.",
    FrameKind.VM_CREATE: "Suite -> hypervisor IUT: create a VM (vm_config + device_slot[]); answered by VM_CREATED.",
    FrameKind.VM_DESTROY: "Suite -> hypervisor IUT: destroy a VM (vm_ref); answered by OK.",
    FrameKind.MEM_WRITE: "Suite -> hypervisor IUT: write guest RAM (mem_access + data); answered by OK.",
    FrameKind.MEM_READ: "Suite -> hypervisor IUT: read guest RAM (mem_access); answered by MEM_DATA.",
    FrameKind.HYPERCALL: "Suite -> hypervisor IUT: issue a pvmsi call on a vCPU (hypercall_req).",
    FrameKind.DEVICE_WRITE: "Suite -> hypervisor IUT: a guest write to a device register (device_write).",
    FrameKind.DEVICE_FIRE: "Suite -> hypervisor IUT: make a device emit the message of a slot (device_fire).",
    FrameKind.COLLECT: (
        "Suite -> hypervisor IUT: take the interrupts injected since the last COLLECT, oldest first, as many as "
        "one INTERRUPTS frame holds (vm_ref); interrupts_hdr.remaining says how many are still queued."
    ),
    FrameKind.COUNTERS: "Suite -> hypervisor IUT: read exit and message counters (vm_ref).",
    FrameKind.LIFECYCLE: "Suite -> hypervisor IUT: VM reset, FLR or hot-unplug (lifecycle).",
    FrameKind.TRAP: "Suite -> hypervisor IUT: execute a trap instruction with a register file (trap_req).",
    FrameKind.CONFIG_READ: (
        "Suite -> hypervisor IUT: read bytes of a device's configuration space as its guest sees them (config_read), "
        "to find its capabilities; an inspection, not a guest access: no exit, nothing changed. Answered by "
        "CONFIG_DATA."
    ),
    FrameKind.BYE: "Suite -> IUT: end the session; answered by OK, then the IUT closes.",
    FrameKind.GUEST_COMMAND: "Suite -> guest IUT: perform an operation (guest_command); answered by GUEST_RESULT.",
    FrameKind.GUEST_HYPERCALL: "Guest IUT -> suite, during a command: a hypercall with its input block inline.",
    FrameKind.GUEST_DEVICE_OP: "Guest IUT -> suite, during a command: a write to its device (guest_device_op).",
    FrameKind.GUEST_TRAP: (
        "Guest IUT -> suite, during a command: the guest executes a trap instruction of its platform's discovery "
        '(trap_req, vm zero), the steps spec "Discovery" lists before VERSION: x86-64 CPUID of the leaves '
        "0x40000000 + 0x100 * n (n = 0..255) and of the pvmsi block's base + 1; arm64 HVC of PSCI_FEATURES, "
        "SMCCC_VERSION and the Vendor Specific Hypervisor Service Call UID; riscv64 ECALL of the SBI base "
        "extension's probe_extension. A pvmsi call, VERSION included, is never a GUEST_TRAP: the guest sends it "
        "as GUEST_HYPERCALL, whatever instruction its calling convention uses (the x86-64 step that issues "
        "VERSION through the path CPUID named is that GUEST_HYPERCALL). A GUEST_TRAP of another instruction or "
        "leaf (a VMCALL of VERSION included) is answered as the platform answers it, but the suite neither counts "
        "nor checks it as a pvmsi call."
    ),
    FrameKind.OK: "Response without payload.",
    FrameKind.HELLO_ACK: "Response to HELLO (harness_hello).",
    FrameKind.VM_CREATED: "Response to VM_CREATE (vm_ref).",
    FrameKind.MEM_DATA: "Response to MEM_READ: the bytes, padded to 8.",
    FrameKind.HYPERCALL_RESULT: "Response to HYPERCALL and GUEST_HYPERCALL (hypercall_res [+ output block]).",
    FrameKind.DEVICE_RESULT: "Response to DEVICE_WRITE and GUEST_DEVICE_OP (device_result).",
    FrameKind.FIRE_RESULT: "Response to DEVICE_FIRE (fire_result).",
    FrameKind.INTERRUPTS: "Response to COLLECT (interrupts_hdr + interrupt_record[]).",
    FrameKind.COUNTER_VALUES: "Response to COUNTERS (counter_values).",
    FrameKind.GUEST_RESULT: "Response to GUEST_COMMAND (guest_result).",
    FrameKind.TRAP_RESULT: "Response to TRAP and GUEST_TRAP (trap_res).",
    FrameKind.CONFIG_DATA: "Response to CONFIG_READ: the bytes read (config_read.size, a multiple of 4).",
    FrameKind.ERROR: "A request could not be served (harness_error + UTF-8 detail, padded to 8).",
}


#: The response kind of each request (an ERROR frame may answer any request instead).
RESPONSE_OF: dict[FrameKind, FrameKind] = {
    FrameKind.HELLO: FrameKind.HELLO_ACK,
    FrameKind.VM_CREATE: FrameKind.VM_CREATED,
    FrameKind.VM_DESTROY: FrameKind.OK,
    FrameKind.MEM_WRITE: FrameKind.OK,
    FrameKind.MEM_READ: FrameKind.MEM_DATA,
    FrameKind.HYPERCALL: FrameKind.HYPERCALL_RESULT,
    FrameKind.DEVICE_WRITE: FrameKind.DEVICE_RESULT,
    FrameKind.DEVICE_FIRE: FrameKind.FIRE_RESULT,
    FrameKind.COLLECT: FrameKind.INTERRUPTS,
    FrameKind.COUNTERS: FrameKind.COUNTER_VALUES,
    FrameKind.LIFECYCLE: FrameKind.OK,
    FrameKind.TRAP: FrameKind.TRAP_RESULT,
    FrameKind.CONFIG_READ: FrameKind.CONFIG_DATA,
    FrameKind.BYE: FrameKind.OK,
    FrameKind.GUEST_COMMAND: FrameKind.GUEST_RESULT,
    FrameKind.GUEST_HYPERCALL: FrameKind.HYPERCALL_RESULT,
    FrameKind.GUEST_DEVICE_OP: FrameKind.DEVICE_RESULT,
    FrameKind.GUEST_TRAP: FrameKind.TRAP_RESULT,
}


class HarnessStatus(IntEnum):
    """Error codes of an ERROR frame."""

    BAD_MAGIC = 1
    BAD_VERSION = 2
    UNKNOWN_KIND = 3
    BAD_LENGTH = 4
    BAD_PAYLOAD = 5
    UNKNOWN_VM = 6
    UNKNOWN_DEVICE = 7
    BAD_ADDRESS = 8
    UNSUPPORTED = 9
    WRONG_ROLE = 10
    INTERNAL = 11
    NO_HELLO = 12
    LIMIT = 13
    BUSY = 14


HARNESS_STATUS_DOCS: dict[HarnessStatus, str] = {
    HarnessStatus.BAD_MAGIC: (
        "The frame does not start with the harness magic; offset 0, sequence number 0; the receiver closes the session."
    ),
    HarnessStatus.BAD_VERSION: "The frame's harness major version is not implemented; offset 4.",
    HarnessStatus.UNKNOWN_KIND: "The frame kind is not defined, or is a response the receiver does not take; offset 6.",
    HarnessStatus.BAD_LENGTH: (
        "The payload length is not a multiple of 8 or longer than HARNESS_MAX_PAYLOAD (offset 12, fatal), or wrong "
        "for the kind: shorter than the kind's format, offset 16 + length (the first byte missing); longer than the "
        "kind allows, or its entries or data not the size its count or size field declares, offset 16 + the size "
        "of the kind's format (the first byte after it)."
    ),
    HarnessStatus.BAD_PAYLOAD: "The payload does not decode (reserved field, enum value, size); offset of the field.",
    HarnessStatus.UNKNOWN_VM: "No VM with that id exists.",
    HarnessStatus.UNKNOWN_DEVICE: "The VM has no device with that identity.",
    HarnessStatus.BAD_ADDRESS: "The guest memory range is not RAM of the VM.",
    HarnessStatus.UNSUPPORTED: "The IUT does not implement this request (the test becomes 'unsupported').",
    HarnessStatus.WRONG_ROLE: (
        "A HELLO names the other role (offset 16, harness_hello.role), or the request belongs to the other role "
        "(offset 6, the header's kind)."
    ),
    HarnessStatus.INTERNAL: "The IUT failed internally; the detail says how.",
    HarnessStatus.NO_HELLO: (
        "A request other than HELLO or BYE came before HELLO; a session starts with HELLO. Offset 6 (the header's "
        "kind)."
    ),
    HarnessStatus.LIMIT: "A limit of the session (VMs, guest RAM) would be exceeded; nothing was created.",
    HarnessStatus.BUSY: "The IUT already serves as many sessions as it can; it closes this connection.",
}


class HarnessRole(IntEnum):
    """Which side the implementation under test plays."""

    HYPERVISOR = 1
    GUEST = 2


HARNESS_ROLE_DOCS: dict[HarnessRole, str] = {
    HarnessRole.HYPERVISOR: "The IUT is a hypervisor; the suite plays the guest.",
    HarnessRole.GUEST: "The IUT is a guest; the suite plays the hypervisor.",
}


#: The requests each role of IUT serves, besides HELLO and BYE which both serve (harness "Sessions"); a request
#: of the other role is answered ERROR WRONG_ROLE. GUEST_HYPERCALL and GUEST_DEVICE_OP go the other way: a guest
#: IUT sends them to the suite while it performs a GUEST_COMMAND.
REQUESTS_SERVED_BY: dict[HarnessRole, tuple[FrameKind, ...]] = {
    HarnessRole.HYPERVISOR: (
        FrameKind.VM_CREATE,
        FrameKind.VM_DESTROY,
        FrameKind.MEM_WRITE,
        FrameKind.MEM_READ,
        FrameKind.HYPERCALL,
        FrameKind.DEVICE_WRITE,
        FrameKind.DEVICE_FIRE,
        FrameKind.COLLECT,
        FrameKind.COUNTERS,
        FrameKind.LIFECYCLE,
        FrameKind.TRAP,
        FrameKind.CONFIG_READ,
    ),
    HarnessRole.GUEST: (FrameKind.GUEST_COMMAND,),
}


class DeviceProfile(IntEnum):
    """Device models a VM can be created with (pvmsi.reference.platform.profiles)."""

    IDXD = 1
    MLX5 = 2
    PLAIN_MSI = 3


DEVICE_PROFILE_DOCS: dict[DeviceProfile, str] = {
    DeviceProfile.IDXD: (
        "IDXD-like: MSI-X with 9 entries on the function; 2048 IMS slots split among 8 PASID sub-devices (ids 1..8, "
        "256 slots each, so none left to the function); needs a vIOMMU."
    ),
    DeviceProfile.MLX5: "mlx5-like: MSI-X with 2048 entries and 4096 IMS slots on the function; no PASID, no vIOMMU.",
    DeviceProfile.PLAIN_MSI: "A plain device with 32-vector multi-message MSI (per-vector masking) and nothing else.",
}


class DeviceSpace(IntEnum):
    """Which register space a DEVICE_WRITE addresses."""

    CONFIG = 1
    MSIX_TABLE = 2
    IMS = 3


DEVICE_SPACE_DOCS: dict[DeviceSpace, str] = {
    DeviceSpace.CONFIG: (
        "PCI configuration space (offset from 0; the MSI and MSI-X capabilities live here; a sub-device's is its "
        "function's)."
    ),
    DeviceSpace.MSIX_TABLE: (
        "The MSI-X table (offset from the table's start; 16 bytes an entry; a sub-device's is its function's)."
    ),
    DeviceSpace.IMS: (
        "The Interrupt Message Store (offset from its start; 16 bytes a slot; through a sub-device identity, "
        "from the sub-device's first slot)."
    ),
}


class LifecycleEvent(IntEnum):
    """Events the suite can inflict on a VM or device."""

    VM_RESET = 1
    FLR = 2
    HOT_UNPLUG = 3
    MIGRATE = 4
    MIGRATE_CROWDED = 5
    MIGRATE_OTHER_PLATFORM = 6
    MIGRATE_OTHER_LIMITS = 7


LIFECYCLE_EVENT_DOCS: dict[LifecycleEvent, str] = {
    LifecycleEvent.VM_RESET: "Reset the whole VM.",
    LifecycleEvent.FLR: "Function-level reset of the device.",
    LifecycleEvent.HOT_UNPLUG: "Surprise hot-unplug of the device.",
    LifecycleEvent.MIGRATE: (
        "Live-migrate the VM (save its whole state, restore it on a fresh host, resume): a destination with every "
        "remapping index the VM had free."
    ),
    LifecycleEvent.MIGRATE_CROWDED: (
        "Live-migrate the VM to a destination whose remapping table already holds other entries at the indices the "
        "VM's messages had (a shared table: VT-d); UNSUPPORTED if the IUT cannot make one."
    ),
    LifecycleEvent.MIGRATE_OTHER_PLATFORM: (
        "Live-migrate the VM to a host of the other platform of the same architecture (VT-d <-> AMD-Vi); "
        "UNSUPPORTED if the IUT has none."
    ),
    LifecycleEvent.MIGRATE_OTHER_LIMITS: (
        "Live-migrate the VM to a host reporting other GET_INFO limits; UNSUPPORTED if the IUT cannot."
    ),
}


class TrapArch(IntEnum):
    """Architecture of a TRAP request; fixes which eight registers regs[] carries."""

    X86_64 = 1
    ARM64 = 2
    RISCV64 = 3


TRAP_ARCH_DOCS: dict[TrapArch, str] = {
    TrapArch.X86_64: "regs = rax, rbx, rcx, rdx, rsi, rdi, r8, r9.",
    TrapArch.ARM64: "regs = x0..x7.",
    TrapArch.RISCV64: "regs = a0..a7.",
}

TRAP_REGISTERS: dict[TrapArch, tuple[str, ...]] = {
    TrapArch.X86_64: ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9"),
    TrapArch.ARM64: tuple(f"x{i}" for i in range(8)),
    TrapArch.RISCV64: tuple(f"a{i}" for i in range(8)),
}


class TrapInstruction(IntEnum):
    """The instruction a TRAP executes."""

    VMCALL = 1
    VMMCALL = 2
    HVC = 3
    ECALL = 4
    CPUID = 5


TRAP_INSTRUCTION_DOCS: dict[TrapInstruction, str] = {
    TrapInstruction.VMCALL: "x86-64 VMCALL (Intel).",
    TrapInstruction.VMMCALL: "x86-64 VMMCALL (AMD).",
    TrapInstruction.HVC: "arm64 HVC #0.",
    TrapInstruction.ECALL: "riscv64 ECALL from VS-mode.",
    TrapInstruction.CPUID: "x86-64 CPUID with leaf in EAX and sub-leaf in ECX.",
}


class FireOutcome(IntEnum):
    """What became of a DEVICE_FIRE."""

    DELIVERED = 1
    BLOCKED = 2
    PENDING = 3
    NOT_PROGRAMMED = 4


FIRE_OUTCOME_DOCS: dict[FireOutcome, str] = {
    FireOutcome.DELIVERED: "The IOMMU delivered it; vcpu and vector say where (checked last: the slot is live).",
    FireOutcome.BLOCKED: "The IOMMU blocked it (counted as a fault; checked last: the slot is live).",
    FireOutcome.PENDING: (
        "Not sent. Checked first: MSI or MSI-X disabled, or an MSI vector at or above the enabled count (nothing "
        "is held); then: the slot masked (the device holds the message and sends it once unmasked), whatever "
        "address the slot holds."
    ),
    FireOutcome.NOT_PROGRAMMED: (
        "Not sent: the slot is enabled and unmasked but its message address is zero (checked after PENDING, "
        "before the IOMMU); no write reaches the IOMMU and nothing is held."
    ),
}


class GuestOp(IntEnum):
    """Operations the suite asks a guest IUT to perform."""

    BOOT = 1
    ENABLE = 2
    RETARGET = 3
    DISABLE = 4
    FLR = 5
    UNPLUG = 6
    RELEASE = 7
    EVENTS = 8
    NOTIFY = 9


GUEST_OP_DOCS: dict[GuestOp, str] = {
    GuestOp.BOOT: "Start the guest afresh (no pvmsi state kept), discover pvmsi and negotiate (or fall back to "
    "emulation). A BOOT of a guest already booted, negotiated or not, is a reboot: the suite gives it a fresh VM "
    "(nothing claimed, nothing negotiated, every slot at its reset value), and the guest keeps no handle, claim or "
    "mode of the boot before. guest_command.count carries PVMSI_HBOOT_* flags: what the guest's CPU would tell "
    "it at boot (PVMSI_HBOOT_CONFIDENTIAL: a confidential VM).",
    GuestOp.ENABLE: "Enable count vectors of a kind from first_slot, targeting vcpu, vector, vector+1, ...",
    GuestOp.RETARGET: "Move every message of the kind on the device to vcpu, keeping each vector (on pvmsi: one "
    "MSG_ACTIVATE of the messages held, whatever path enabled them).",
    GuestOp.DISABLE: "Mask, disable and free every message of the kind on the device.",
    GuestOp.FLR: "The device went through an FLR: restore its messages.",
    GuestOp.UNPLUG: "The device was hot-unplugged: forget it.",
    GuestOp.RELEASE: "Release the device back to emulation.",
    GuestOp.EVENTS: "Register vcpu and vector as the notification target of the event channel (EVENT_CONFIG).",
    GuestOp.NOTIFY: (
        "The notification interrupt (vcpu, vector) arrived: handle the events (fetch, act on each, acknowledge); "
        "done is the number of events handled."
    ),
}


class GuestBootFlag(IntFlag):
    """Flags of a BOOT command (guest_command.count): what a guest learns from its own CPU when it boots, which
    the harness must tell a simulated guest. The bits not defined here are zero."""

    CONFIDENTIAL = 1 << 0


GUEST_BOOT_FLAG_DOCS: dict[GuestBootFlag, str] = {
    GuestBootFlag.CONFIDENTIAL: "The guest runs in a confidential VM (what a TDX or SEV-SNP guest reads from CPUID, "
    "a CCA realm from its RSI): its memory is private but for BOOT's scratch pages, which stand for the pages "
    "it shares with the host (GUEST-CVM-001), and it treats the pairs the host hands out as GUEST-CVM-002 says.",
}


class DeviceOp(IntEnum):
    """What a guest IUT does to its device (GUEST_DEVICE_OP)."""

    PROGRAM = 1
    ENABLE = 2
    DISABLE = 3
    MASK = 4
    UNMASK = 5


DEVICE_OP_DOCS: dict[DeviceOp, str] = {
    DeviceOp.PROGRAM: "Write address and data into the slot as a driver writes it. MSI-X entry, IMS slot: four "
    "dword writes, address low, address high, data, then the control word with the mask bit set, so the slot is "
    "masked after a PROGRAM whatever it was before and delivers only once UNMASKed (no MASK is needed before the "
    "first PROGRAM of a slot, masked since reset; a slot that was unmasked is masked first, GUEST-ALLOC-002). MSI: "
    "Message Address, Message Data, and Multiple Message Enable from vectors; MSI Enable stays as the guest last "
    "set it, the Mask Bits are untouched.",
    DeviceOp.ENABLE: "Set MSI Enable / MSI-X Enable (IMS: no-op).",
    DeviceOp.DISABLE: "Clear MSI Enable / MSI-X Enable (IMS: no-op: IMS has no kind-wide enable, each slot's mask "
    "bit alone stops it).",
    DeviceOp.MASK: "Mask the slot: the MSI-X entry's Vector Control mask bit, the IMS slot's mask bit; MSI: the "
    "Mask Bits of every vector of the block (an MSI block is one slot, 0: MASK of slot 0 masks the whole block); "
    "MSI slot n > 0 sets vector n's Mask Bit alone, which leaves the rest of the block unmasked.",
    DeviceOp.UNMASK: "Unmask the slot (as MASK names it); every slot starts masked after reset except MSI vectors, "
    "whose Mask Bits start clear (harness appendix, device model).",
}
