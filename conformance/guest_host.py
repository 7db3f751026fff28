"""The hypervisor the guest suite plays: the reference hypervisor core on the simulated platform, watching.

:class:`HostModel` answers a guest under test: every hypercall runs on a reference VM whose memory mirrors the
blocks the guest ships (its input block is written at ``args[0]``, its output block read back at ``args[1]``),
and every device access the guest makes is applied to the simulated device, so that delivery can be checked end
to end by making the devices fire.  It records every call (registers and blocks) and device access, and checks
each against the guest requirements as it happens; a breach becomes a :class:`Violation` naming the requirement.

:class:`HostKnobs` provoke the behaviour a test needs: pvmsi absent, another version, offered or required
feature bits (also unknown ones), batches that stop with INCOMPLETE, a small device quota (a batch that fails
part-way), a retarget that moves the message to a new remapping entry (REWRITE set), a refused NEGOTIATE, any
status for a call, and kinds left enabled through emulation before the guest boots.  The output block of every
call is filled with plausible-looking poison first, so that a guest relying on output a failed call did not
write is caught (GUEST-CONV-001).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..reference.backend import ReferenceHypervisor
from ..reference.guest.actions import GuestDevice, MaskSlot, ProgramSlot, SetEnabled
from ..reference.guest.driver import InProcessDriver
from ..reference.hypervisor.call import Call
from ..reference.hypervisor.config import HypervisorConfig
from ..reference.hypervisor.core import HypervisorCore
from ..reference.hypervisor.errors import CallError
from ..reference.hypervisor.vmstate import Claim, Message
from ..reference.platform.vm import GuestMemoryError
from ..spec.calls import BATCH_CALLS, CALLS_BY_FN, LARGEST_BATCH
from ..spec.codec import DecodeError, decode, encode
from ..spec.constants import (
    FEATURES_1_0,
    ActivateFlag,
    DeviceFlag,
    FunctionNumber,
    KindMask,
    Limit,
    MsgKind,
    Status,
)
from ..spec.formats import (
    ACTIVATE_RESULT,
    ALLOC_RESULT,
    BATCH_IN,
    BATCH_OUT,
    DEVICE_INFO,
    FORMATS,
    HV_INFO,
    NEGOTIATE_OUT,
)
from ..spec.harness_constants import DeviceOp, FireOutcome, LifecycleEvent, TrapArch, TrapInstruction
from ..spec.iut import DeviceRef, FireResult, GuestResult, VmKnobs
from ..spec.kinds import kind_bit
from ..spec.layout import layout_of
from ..spec.platforms import DEFAULT_PLATFORM
from ..spec.version import VERSION_MAJOR, VERSION_MINOR, encode_version
from . import guest_events
from .guest_features import RULE as GUEST_FEATURES_RULE
from .guest_features import unnegotiated_uses
from .guest_probe import GuestProbe, Probe
from .toolkit import DEFAULT_DEVICES, status_name

PAGE = int(Limit.PAGE_SIZE)
KNOWN_1_0 = int(FEATURES_1_0)
FUNCTIONS_1_0 = {int(f) for f in FunctionNumber}
HDR = layout_of(BATCH_IN).size
OUT_HDR = layout_of(BATCH_OUT).size
#: Poison the model leaves in output blocks: it decodes, looks like success, and was never handed out.
POISON_HANDLE = 0x5EED_0000_0000_0000
POISON_ADDRESS = 0xFEEF_F018
POISON_DATA = 0x5EED
#: What a lying host puts in allocation results: an address in guest RAM, outside every interrupt window.
LYING_ADDRESS = 0x0003_0000

#: The guest under test sees the devices the hypervisor suite's test VMs have, at the same addresses.
GUEST_DEVICES = DEFAULT_DEVICES
VCPUS = 4
RAM_MIB = 16

DeviceKey = tuple[int, int, int, int | None]


def key_of(dev: DeviceRef) -> DeviceKey:
    return (dev.segment, dev.bus, dev.devfn, dev.pasid)


def name_of(key: DeviceKey) -> str:
    seg, bus, devfn, pasid = key
    return f"{seg:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}" + (f"/pasid {pasid}" if pasid is not None else "")


def fn_name(fn: int) -> str:
    return FunctionNumber(fn).name if fn in FUNCTIONS_1_0 else f"fn {fn:#x}"


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


@dataclass(frozen=True)
class Violation:
    """A guest requirement the guest broke, and how."""

    rid: str
    detail: str
    command: str


@dataclass
class CallRecord:
    """One hypercall as the guest made it, and what the model answered."""

    index: int
    command: str
    fn: int
    args: tuple[int, int, int, int]
    in_block: bytes
    out_size: int
    status: int = 0
    value: int = 0
    out_block: bytes = b""
    device: DeviceKey | None = None
    decoded: Any = None
    entries: list[Any] = field(default_factory=list)

    @property
    def start(self) -> int:
        return int(self.decoded.start) if self.fn in BATCH_CALLS and self.decoded is not None else 0

    def results(self) -> list[Any]:
        """The results of a batch's completed entries [start, next_index), as the model wrote them."""
        if self.fn not in BATCH_CALLS:
            return []
        rfmt = BATCH_CALLS[self.fn].result_format
        rsize = layout_of(rfmt).size
        out = []
        for i in range(self.start, min(self.value, len(self.entries))):
            chunk = self.out_block[OUT_HDR + i * rsize : OUT_HDR + (i + 1) * rsize]
            if len(chunk) == rsize:
                out.append(decode(rfmt, chunk))
        return out


@dataclass
class DeviceRecord:
    """One device access of the guest."""

    index: int
    command: str
    op: DeviceOp
    device: DeviceKey
    kind: int
    slot: int
    address: int
    data: int
    vectors: int
    exited: bool = False


Event = CallRecord | DeviceRecord


def _poison(fmt_name: str, size: int, count: int) -> bytes:
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


class HostModel:
    """:class:`~.iut.GuestHost`: the reference hypervisor with one VM, recording and checking the guest."""

    def __init__(self, knobs: HostKnobs | None = None, log: Callable[[str], None] | None = None) -> None:
        self.knobs = k = knobs or HostKnobs()
        offered = KNOWN_1_0 | k.extra_offered | k.required
        config = HypervisorConfig(
            version_major=k.version[0],
            version_minor=k.version[1],
            features_offered=offered,
            max_batch=k.max_batch or LARGEST_BATCH,
            max_messages_per_device=k.device_quota or 4096,
            platform=k.platform,
        )
        self.hv = ReferenceHypervisor(config, core=MovingRetargetCore if k.retarget_moves else HypervisorCore)
        self.vm_id = self.hv.create_vm(
            VCPUS, RAM_MIB, list(GUEST_DEVICES), VmKnobs(k.yield_after, k.required, k.withheld)
        )
        self.svm = self.hv.system.vms[self.vm_id]
        self.core = self.hv.system.core
        self.driver = InProcessDriver(self.hv.system, self.svm)
        self.probe = GuestProbe(self.hv, self.vm_id, k.probe)
        self.shared: tuple[int, int] | None = None  # [start, end) of the memory shared with the host (BOOT)
        self.offered = offered & ~k.withheld
        self.log = log or (lambda _line: None)
        for dev, kind in k.preenabled:
            self.driver.execute(SetEnabled(_gdev(dev), kind, True))

        self.events: list[Event] = []
        self.violations: list[Violation] = []
        self.command = "(before any command)"
        # what the guest has done and been told
        self.discovery: str | None = None  # None: no VERSION yet; "present"; "absent"; "major"
        self.negotiated = 0
        #: The features NEGOTIATE put in force (its value register): what the guest may use (GUEST-BLIND-001).
        self.in_force = 0
        self.refused = False
        self.queried: set[DeviceKey] = set()
        self.issued: dict[int, DeviceKey] = {}
        self.unplugged: set[tuple[int, int, int]] = set()
        self.flr_reset: set[tuple[int, int, int]] = set()
        self.programmed: dict[tuple[DeviceKey, int, int], tuple[int, int, int]] = {}
        self.masked: dict[tuple[DeviceKey, int, int], bool] = {}
        self.enabled: dict[tuple[DeviceKey, int], bool] = {}
        self.rewrite_needed: dict[tuple[DeviceKey, int, int], tuple[int, int]] = {}
        self.stale: dict[tuple[DeviceKey, int, int], tuple[int, int]] = {}
        self.pending_resume: CallRecord | None = None
        self.abandoned: list[Message] = []
        self.enabled_before_negotiate: list[str] = []
        #: The event channel (:mod:`.guest_events`): handles the model revoked, the events the guest last fetched.
        self.revoked: set[int] = set()
        #: Each revoked handle: the event index of its revocation, its device, kind and slot (GUEST-REVOKE-001).
        self.revoked_at: dict[int, tuple[int, DeviceKey, int, int]] = {}
        self.fetched: list[Any] = []
        #: Actions a test has happen while the guest handles its events, one after each EVENT_FETCH.
        self.while_handling: list[Callable[[], object]] = []

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def violate(self, rid: str, detail: str) -> None:
        self.violations.append(Violation(rid, detail, self.command))
        self.log(f"  !! {rid}: {detail}")

    def violations_of(self, rid: str) -> list[Violation]:
        return [v for v in self.violations if v.rid == rid]

    def calls(self, fn: int | None = None) -> list[CallRecord]:
        return [e for e in self.events if isinstance(e, CallRecord) and (fn is None or e.fn == fn)]

    def device_ops(self, op: DeviceOp | None = None) -> list[DeviceRecord]:
        return [e for e in self.events if isinstance(e, DeviceRecord) and (op is None or e.op is op)]

    def live(self) -> dict[int, Message]:
        return dict(self.core.state_of(self.svm).messages)

    def live_at(self, key: DeviceKey, kind: int, slot: int) -> Message | None:
        for m in self.core.state_of(self.svm).messages.values():
            if m.device == key and int(m.kind) == kind and m.slot == slot:
                return m
        return None

    def claimed_kinds(self, key: DeviceKey) -> int:
        claim = self.core.state_of(self.svm).claims.get(key)
        return claim.kinds if claim is not None else 0

    def begin(self, command: str) -> None:
        self.command = command

    def booting(self, scratch_gpa: int) -> None:
        """BOOT hands the guest its two scratch pages: the memory it shares with the host (harness)."""
        self.shared = (scratch_gpa, scratch_gpa + 2 * PAGE)

    def end(self, result: GuestResult) -> None:
        """Checks that can only be made once the command is over."""
        if self.pending_resume is not None:
            r = self.pending_resume
            self.violate(
                "GUEST-BATCH-001",
                f"{fn_name(r.fn)} returned INCOMPLETE with next_index {r.value} and was never resumed",
            )
            self.pending_resume = None
        for (key, kind, slot), pair in self.rewrite_needed.items():
            self.violate(
                "GUEST-ALLOC-002",
                f"retarget set REWRITE for {name_of(key)} {MsgKind(kind).name}[{slot}] (new pair "
                f"{pair[0]:#x}/{pair[1]:#x}) and the guest did not write it",
            )
        self.rewrite_needed.clear()
        live = self.live()
        for m in self.abandoned:
            written = self.programmed.get((m.device, int(m.kind), m.slot), (0, 0, 0))[:2] == (m.address, m.data)
            if m.handle in live and (not live[m.handle].active or not written):  # a reservation is never "written"
                self.violate(
                    "GUEST-BATCH-002",
                    f"entry of {name_of(m.device)} {m.kind.name}[{m.slot}] completed before a failed MSG_ALLOC "
                    f"(handle {m.handle:#x}) was neither freed nor written into its slot",
                )
        self.abandoned.clear()

    # -- hypercalls ----------------------------------------------------------------------------------------------

    def hypercall(
        self, vcpu: int, fn: int, args: tuple[int, int, int, int], in_block: bytes, out_size: int
    ) -> tuple[int, int, bytes]:
        rec = CallRecord(len(self.events), self.command, fn, args, bytes(in_block), out_size)
        self.events.append(rec)
        self._decode(rec)
        self._check_registers(rec)
        self._check_blocks(rec)
        self._check_sequence(rec)
        if self.negotiated and rec.device is not None:
            for what in unnegotiated_uses(rec.fn, rec.decoded, rec.entries, rec.device[3], self.in_force):
                self.violate(GUEST_FEATURES_RULE, f"{fn_name(rec.fn)}: {what}")
        before = {h: (m.address, m.data) for h, m in self.live().items()}
        status, value, why = self._execute(vcpu, rec)
        rec.status, rec.value = status, value
        self._after(rec, before)
        self.log(
            f"{fn_name(fn)} args=({', '.join(hex(a) for a in args)})"
            + (f" in={in_block.hex()}" if in_block else "")
            + f" -> {status_name(status)} value={value:#x}"
            + (f" out={rec.out_block.hex()}" if rec.out_block and status >= 0 else "")
            + (f" [{why}]" if why else "")
        )
        return status, value, rec.out_block

    def trap(self, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int]) -> tuple[bool, list[int]]:
        """A discovery trap of the guest, answered as HostKnobs.probe says (spec "Discovery")."""
        return self.probe.trap(vcpu, arch, instruction, regs, self.log)

    def _decode(self, rec: CallRecord) -> None:
        call = CALLS_BY_FN.get(rec.fn)
        if call is None or call.input is None:
            return
        fmt = FORMATS[call.input].struct
        size = layout_of(fmt).size
        try:
            rec.decoded = decode(fmt, rec.in_block[:size])
            if rec.fn in BATCH_CALLS:
                efmt = BATCH_CALLS[rec.fn].entry_format
                esize = layout_of(efmt).size
                count = int(rec.decoded.count)
                if HDR + count * esize != len(rec.in_block):
                    self.violate(
                        "GEN-CONV-001",
                        f"{fn_name(rec.fn)}: batch_in.count reads {count} (little-endian), the block shipped holds "
                        f"{(len(rec.in_block) - HDR) / esize:g} entries",
                    )
                for i in range(min(count, (len(rec.in_block) - HDR) // esize)):
                    rec.entries.append(decode(efmt, rec.in_block[HDR + i * esize : HDR + (i + 1) * esize]))
        except DecodeError as e:
            rid = "GEN-CONV-002" if "reserved" in e.path else "GEN-CONV-003" if "bits" in e.reason else "GEN-CONV-001"
            self.violate(rid, f"{fn_name(rec.fn)} input block: {e}")
            return
        dev = getattr(rec.decoded, "device", rec.decoded if call.input == "device_id" else None)
        if dev is not None:
            pasid = int(dev.subdevice_id) if dev.flags & 1 else None
            if pasid is not None and pasid > 0xFFFFF:
                self.violate("GEN-CONV-001", f"{fn_name(rec.fn)}: subdevice_id {pasid:#x} (byte order?)")
            rec.device = (int(dev.segment), int(dev.bus), int(dev.devfn), pasid)
        for entry in rec.entries:
            vector = int(getattr(entry, "vector", 0))
            if vector > 0xFFFF and int.from_bytes(vector.to_bytes(4, "little"), "big") <= 0xFF:
                self.violate("GEN-CONV-001", f"{fn_name(rec.fn)}: vector {vector:#x} is a byte-swapped vector")
            self._check_identity_order(rec, entry)

    def _check_identity_order(self, rec: CallRecord, entry: Any) -> None:
        """GEN-CONV-001: an identity field of an entry (vcpu, handle, MSI-X slot, vector index, vector_count) that
        names nothing as little-endian but something the guest holds once its bytes are reversed."""

        def swapped(value: int, size: int) -> int:
            return int.from_bytes(value.to_bytes(size, "little"), "big")

        found: list[str] = []
        vcpu = int(getattr(entry, "vcpu", 0))
        if vcpu >= VCPUS and swapped(vcpu, 4) < VCPUS:
            found.append(f"vcpu {vcpu:#x}")
        handle = int(getattr(entry, "handle", 0))
        if handle and handle not in self.issued and swapped(handle, 8) in self.issued:
            found.append(f"handle {handle:#x}")
        if int(getattr(entry, "kind", -1)) == MsgKind.MSIX:
            slot = int(entry.slot)
            if slot > 0x7FF and swapped(slot, 4) <= 0x7FF:
                found.append(f"MSI-X slot {slot:#x}")
        index = int(getattr(entry, "index", 0))
        if index > 0xFF and swapped(index, 2) < 32:
            found.append(f"index {index:#x}")
        count = int(getattr(entry, "vector_count", 1))
        if count > 0xFF and swapped(count, 2) <= 32:
            found.append(f"vector_count {count:#x}")
        for what in found:
            self.violate("GEN-CONV-001", f"{fn_name(rec.fn)}: {what} reads right only byte-swapped (big-endian?)")

    def _check_registers(self, rec: CallRecord) -> None:
        if rec.args[2] or rec.args[3]:
            self.violate(
                "GUEST-CALL-001", f"{fn_name(rec.fn)} with arg2={rec.args[2]:#x} arg3={rec.args[3]:#x} (reserved)"
            )
        call = CALLS_BY_FN.get(rec.fn)
        if call is None:
            self.violate("GEN-CALL-001", f"function number {rec.fn:#x} is not a pvmsi 1.0 call")
            return
        if (call.input is None) != (rec.args[0] == 0) or (call.output is None) != (rec.args[1] == 0):
            self.violate(
                "GEN-CALL-001",
                f"{call.name}: arg0/arg1 = {rec.args[0]:#x}/{rec.args[1]:#x}, the convention wants "
                f"{'the input block' if call.input else 'zero'} / {'the output block' if call.output else 'zero'}",
            )

    def _block_sizes(self, rec: CallRecord) -> tuple[int, int]:
        call = CALLS_BY_FN.get(rec.fn)
        if call is None:
            return 0, 0
        if rec.fn in BATCH_CALLS:
            efmt, rfmt = BATCH_CALLS[rec.fn].entry_format, BATCH_CALLS[rec.fn].result_format
            count = len(rec.entries) if rec.decoded is not None else 0
            return HDR + count * layout_of(efmt).size, OUT_HDR + count * layout_of(rfmt).size
        in_size = layout_of(FORMATS[call.input].struct).size if call.input else 0
        out_size = layout_of(FORMATS[call.output].struct).size if call.output else 0
        return in_size, out_size

    def _check_blocks(self, rec: CallRecord) -> None:
        in_size, out_size = self._block_sizes(rec)
        mem = self.svm.vm.memory
        blocks = [("input", rec.args[0], in_size), ("output", rec.args[1], out_size)]
        for what, gpa, size in blocks:
            if not gpa or not size:
                continue
            problems = []
            if gpa % 8:
                problems.append("not 8-byte aligned")
            if gpa // PAGE != (gpa + size - 1) // PAGE:
                problems.append("crosses a 4 KiB page")
            if not mem.is_ram(gpa, size):
                problems.append("not guest RAM")
            if self.knobs.confidential and self.shared and not self.shared[0] <= gpa < gpa + size <= self.shared[1]:
                self.violate(  # GUEST-CVM-001: the host of a confidential VM cannot reach private memory
                    "GUEST-CVM-001",
                    f"{fn_name(rec.fn)} {what} block at {gpa:#x} outside the shared pages "
                    f"{self.shared[0]:#x}-{self.shared[1]:#x}",
                )
            if problems:
                self.violate(
                    "GUEST-MEM-001", f"{fn_name(rec.fn)} {what} block at {gpa:#x} ({size} bytes): {', '.join(problems)}"
                )
        (_, a, an), (_, b, bn) = blocks
        if a and b and an and bn and a < b + bn and b < a + an:
            self.violate("GUEST-MEM-002", f"{fn_name(rec.fn)} input {a:#x}+{an} overlaps output {b:#x}+{bn}")
        if in_size and len(rec.in_block) < in_size:
            self.violate(
                "GEN-CALL-001", f"{fn_name(rec.fn)}: {len(rec.in_block)} input bytes shipped, the call reads {in_size}"
            )

    def _check_sequence(self, rec: CallRecord) -> None:
        fn, name = rec.fn, fn_name(rec.fn)
        broken = self.probe.violation()  # GUEST-ABI-001..003: the platform's discovery found pvmsi first
        if broken is not None:
            self.violate(broken[0], f"{name}: {broken[1]}")
        if fn != FunctionNumber.VERSION:
            if self.discovery is None:
                self.violate("GUEST-DISC-001", f"{name} issued before VERSION (discovery)")
            elif self.discovery == "absent":
                self.violate("GUEST-DISC-001", f"{name} issued although VERSION showed pvmsi absent")
            elif self.discovery == "major":
                self.violate("GUEST-DISC-002", f"{name} issued although VERSION reported another major version")
        if self.pending_resume is not None:
            p = self.pending_resume
            same = fn == p.fn and rec.in_block[:16] == p.in_block[:16] and rec.in_block[HDR:] == p.in_block[HDR:]
            if not same or rec.start != p.value:
                self.violate(
                    "GUEST-BATCH-001",
                    f"{fn_name(p.fn)} stopped INCOMPLETE at next_index {p.value}; the next call was {name}"
                    + (f" with start {rec.start}" if same else " with other blocks"),
                )
            self.pending_resume = None
        if fn == FunctionNumber.NEGOTIATE and rec.decoded is not None:
            self._check_negotiate(rec)
        if self.refused and fn >= FunctionNumber.DEVICE_QUERY:
            self.violate("GUEST-NEG-003", f"{name} issued after NEGOTIATE failed (the guest must stay emulated)")
        key = rec.device
        if key is None:
            return
        if fn == FunctionNumber.DEVICE_CLAIM and rec.decoded is not None:
            kinds = int(rec.decoded.kinds)
            for kind in (MsgKind.MSI, MsgKind.MSIX):
                pci = self.svm.pci(key[0], key[1], key[2])
                legacy = self.hv.system.platform.legacy
                if (
                    kinds & kind_bit(kind)
                    and pci is not None
                    and key[3] is None
                    and legacy.enabled_through_emulation(pci, kind)
                ):
                    self.violate("GUEST-DEV-001", f"DEVICE_CLAIM of {kind.name} on {name_of(key)} while it is enabled")
            if key not in self.queried:
                self.violate("GUEST-DEV-002", f"DEVICE_CLAIM of {name_of(key)} without a DEVICE_QUERY first")
        if fn in (FunctionNumber.DEVICE_RELEASE, FunctionNumber.MSG_FREE) and key[:3] in self.unplugged:
            self.violate("GUEST-UNPLUG-001", f"{name} for {name_of(key)}, which was hot-unplugged")
        if fn == FunctionNumber.DEVICE_RELEASE:
            left = [m for m in self.live().values() if m.device == key]
            on = [MsgKind(k).name for (d, k), v in self.enabled.items() if d == key and v and self.claimed_kinds(key)]
            if left or on:
                self.violate(
                    "GUEST-DEV-003",
                    f"DEVICE_RELEASE of {name_of(key)} with {len(left)} messages live and {on or 'no'} kinds enabled",
                )
        if fn in (FunctionNumber.MSG_ACTIVATE, FunctionNumber.MSG_FREE):
            live = self.live()
            for i, e in enumerate(rec.entries):
                if i < rec.start:
                    continue
                h = int(e.handle)
                m = live.get(h)
                if m is not None and m.device == key:
                    if fn == FunctionNumber.MSG_FREE:
                        slot = (key, int(m.kind), m.slot)
                        if not self.masked.get(slot, True) and self.enabled.get((key, int(m.kind)), False):
                            self.violate(
                                "GUEST-ALLOC-003",
                                f"MSG_FREE of {m.kind.name}[{m.slot}] on {name_of(key)} while the slot is unmasked",
                            )
                    continue
                if POISON_HANDLE <= h < POISON_HANDLE + 4096:
                    self.violate("GUEST-CONV-001", f"{name} names {h:#x}, read from results a failed call never wrote")
                elif h in self.issued:
                    self.violate("GUEST-ALLOC-004", f"{name} names handle {h:#x}, which is no longer held")
                else:
                    self.violate("GUEST-ALLOC-004", f"{name} names handle {h:#x}, which was never handed out")

    def _check_negotiate(self, rec: CallRecord) -> None:
        features = int(rec.decoded.features)
        unoffered = features & ~self.offered
        if unoffered:
            self.violate("GUEST-NEG-001", f"NEGOTIATE accepts {unoffered:#x}, which GET_INFO did not offer")
        missing = self.knobs.required & ~features
        if missing:
            self.violate("GUEST-NEG-002", f"NEGOTIATE lacks the required bits {missing:#x}")
        unknown = features & ~KNOWN_1_0 & self.offered
        if unknown:
            self.violate("GUEST-VER-001", f"NEGOTIATE accepts {unknown:#x}, bits a 1.0 guest does not know")
        major, minor = self.knobs.version
        if rec.decoded.version_major == major and rec.decoded.version_minor > min(minor, VERSION_MINOR):
            self.violate(
                "GUEST-VER-002",
                f"NEGOTIATE asks for minor {rec.decoded.version_minor}: VERSION reported {minor}, a {VERSION_MAJOR}."
                f"{VERSION_MINOR} guest implements {VERSION_MINOR}",
            )
        if rec.decoded.version_major != major and int(rec.decoded.version_major).to_bytes(2, "big") == int(
            major
        ).to_bytes(2, "little"):
            self.violate("GEN-CONV-001", f"NEGOTIATE version_major {rec.decoded.version_major:#x} (byte order)")
        if self.negotiated:
            self.violate("GUEST-NEG-005", "a second NEGOTIATE in one boot")
        if self.enabled_before_negotiate:
            self.violate(
                "GUEST-NEG-005",
                f"NEGOTIATE after enabling {', '.join(self.enabled_before_negotiate)} through emulation",
            )

    def _execute(self, vcpu: int, rec: CallRecord) -> tuple[int, int, str]:
        """Run the call on the reference VM (blocks mirrored through its memory)."""
        mem = self.svm.vm.memory
        in_gpa, out_gpa = rec.args[0], rec.args[1]
        call = CALLS_BY_FN.get(rec.fn)
        out_fmt = ""
        if call is not None and call.output:
            out_fmt = call.output_entry or call.output
        if rec.out_size and out_gpa and mem.is_ram(out_gpa, rec.out_size):
            mem.write(out_gpa, _poison(out_fmt, rec.out_size, len(rec.entries)))
        if rec.in_block and in_gpa and mem.is_ram(in_gpa, len(rec.in_block)):
            mem.write(in_gpa, rec.in_block)
        status, value, why = self._answer(vcpu, rec)
        if self.knobs.lying_pairs and rec.fn in LYING_CALLS and status >= 0:
            self._lie(LYING_CALLS[rec.fn], out_gpa, min(value, len(rec.entries)))
        out = b""
        if rec.out_size:
            try:
                out = mem.read(out_gpa, rec.out_size)
            except GuestMemoryError:
                out = bytes(rec.out_size)
        rec.out_block = out
        return status, value, why

    def _lie(self, result_fmt: Any, out_gpa: int, completed: int) -> None:
        """Rewrite the address of each completed result that hands out a pair (an activating MSG_ALLOC,
        MSG_ACTIVATE) to LYING_ADDRESS (guest RAM)."""
        size = layout_of(result_fmt).size
        f = layout_of(result_fmt).field("address")
        mem = self.svm.vm.memory
        for i in range(completed):
            at = out_gpa + OUT_HDR + i * size + f.offset
            if mem.is_ram(at, f.size) and int.from_bytes(mem.read(at, f.size), "little"):
                self.svm.vm.memory.write(at, LYING_ADDRESS.to_bytes(f.size, "little"))

    def _answer(self, vcpu: int, rec: CallRecord) -> tuple[int, int, str]:
        k = self.knobs
        if not k.present:
            return int(Status.NOT_SUPPORTED), 0, "pvmsi absent"
        for fn, status in k.status_for:
            if fn == rec.fn:
                return status, k.status_value, "status forced by the test"
        if rec.fn == FunctionNumber.NEGOTIATE and k.negotiate_status is not None:
            status = k.negotiate_status
            if status in (Status.FEATURES_REFUSED, Status.INVALID_PARAMETER) and self.svm.vm.memory.is_ram(
                rec.args[1], 16
            ):
                refused = self.offered if status == Status.FEATURES_REFUSED else 0
                self.svm.vm.memory.write(rec.args[1], encode(NEGOTIATE_OUT, {"features": 0, "refused": refused}))
            return status, 0, "NEGOTIATE refused by the test"
        result = self.hv.system.hypercall(self.svm, vcpu, rec.fn, rec.args)
        return int(result.status), int(result.value), result.why

    def _after(self, rec: CallRecord, before: dict[int, tuple[int, int]]) -> None:
        fn, status = rec.fn, rec.status
        if fn == FunctionNumber.VERSION:
            if status != Status.SUCCESS:
                self.discovery = "absent"
            elif (rec.value >> 16) & 0xFFFF != VERSION_MAJOR:
                self.discovery = "major"
            else:
                self.discovery = "present"
        elif fn == FunctionNumber.NEGOTIATE:
            if status == Status.SUCCESS:
                self.negotiated += 1
                self.in_force = int(rec.value)
            else:
                self.refused = True
        elif fn == FunctionNumber.DEVICE_QUERY and status == Status.SUCCESS and rec.device is not None:
            self.queried.add(rec.device)
        elif fn == FunctionNumber.EVENT_FETCH and status == Status.SUCCESS:
            guest_events.on_fetch(self)
        elif fn == FunctionNumber.EVENT_ACK and status == Status.SUCCESS:
            guest_events.on_ack(self, rec)
        if fn not in BATCH_CALLS or rec.device is None:
            return
        if status == Status.INCOMPLETE:
            self.pending_resume = rec
        live = self.live()
        if fn == FunctionNumber.MSG_ALLOC:
            for r in rec.results():
                if r.status == Status.SUCCESS and r.handle in live:
                    self.issued[int(r.handle)] = rec.device
            if status < 0:
                done = [live[int(r.handle)] for r in rec.results() if r.status == Status.SUCCESS and r.handle in live]
                self.abandoned.extend(done)
        if fn == FunctionNumber.MSG_ACTIVATE:
            for h, pair in before.items():
                m = live.get(h)
                if m is not None and (m.address, m.data) != pair and m.kind is not MsgKind.MSI:  # MSI: HV-EMU-003
                    slot = (m.device, int(m.kind), m.slot)
                    self.rewrite_needed[slot] = (m.address, m.data)
                    self.stale[slot] = pair

    # -- device accesses ---------------------------------------------------------------------------------------

    def device_op(
        self, op: DeviceOp, device: DeviceRef, kind: int, slot: int, address: int, data: int, vectors: int
    ) -> bool:
        key = key_of(device)
        rec = DeviceRecord(len(self.events), self.command, op, key, kind, slot, address, data, vectors)
        self.events.append(rec)
        if op is DeviceOp.PROGRAM and self.knobs.lying_pairs and address == LYING_ADDRESS:
            self.violate("GUEST-CVM-002", f"wrote the lying pair ({address:#x}, {data:#x}) into {name_of(key)}")
        self._check_device_op(rec)
        vm = self.svm.vm
        before = vm.total_exits
        try:
            msg_kind = MsgKind(kind)
            gdev = _gdev(device)
            if op is DeviceOp.PROGRAM:
                self.driver.execute(ProgramSlot(gdev, msg_kind, slot, address, data, max(1, vectors)))
            elif op in (DeviceOp.ENABLE, DeviceOp.DISABLE):
                self.driver.execute(SetEnabled(gdev, msg_kind, op is DeviceOp.ENABLE))
            else:
                self.driver.execute(MaskSlot(gdev, msg_kind, slot, op is DeviceOp.MASK))
            note = ""
        except (KeyError, ValueError, IndexError, GuestMemoryError) as e:
            note = f" (no effect: {e})"
        rec.exited = vm.total_exits > before
        what = (
            f" = {address:#x}/{data:#x}" + (f" x{vectors}" if kind == MsgKind.MSI else "")
            if op is DeviceOp.PROGRAM
            else ""
        )
        kname = MsgKind(kind).name if kind in MsgKind._value2member_map_ else str(kind)
        self.log(f"device {name_of(key)} {op.name} {kname}[{slot}]{what} -> exit={rec.exited}{note}")
        return rec.exited

    def _check_device_op(self, rec: DeviceRecord) -> None:
        key, kind, slot = rec.device, rec.kind, rec.slot
        claimed = bool(self.claimed_kinds(key) & kind_bit(kind)) if kind in MsgKind._value2member_map_ else False
        where = (key, kind, slot)
        kname = MsgKind(kind).name if kind in MsgKind._value2member_map_ else f"kind {kind}"
        label = f"{name_of(key)} {kname}[{slot}]"
        if rec.op is DeviceOp.PROGRAM:
            if claimed and kind == MsgKind.MSI:
                # The explicit model: a claimed MSI capability holds the pair the hypervisor wrote (HV-EMU-002).
                self.violate("GUEST-EMU-001", f"{label}: wrote {rec.address:#x}/{rec.data:#x} into a claimed MSI")
            elif claimed:
                self._check_pair(rec, where, label)
            elif kind == MsgKind.IMS:
                self._check_unclaimed_ims(rec, label)
            self.programmed[where] = (rec.address, rec.data, rec.vectors)
            if kind != MsgKind.MSI:
                self.masked[where] = True  # written with its vector control masked, as a driver does
        elif rec.op is DeviceOp.MASK:
            self.masked[where] = True
        elif rec.op is DeviceOp.UNMASK:
            self.masked[where] = False
            if claimed:
                self._check_before_live(where, label, "unmasking")
        elif rec.op is DeviceOp.ENABLE:
            self.enabled[(key, kind)] = True
            if claimed:
                for m in self.live().values():
                    w = (m.device, int(m.kind), m.slot)
                    if (
                        m.device == key
                        and int(m.kind) == kind
                        and (kind == MsgKind.MSI or not self.masked.get(w, True))
                    ):
                        self._check_before_live(w, f"{name_of(key)} {m.kind.name}[{m.slot}]", "enabling")
            elif not self.negotiated and self.discovery == "present" and kind != MsgKind.IMS:
                self.enabled_before_negotiate.append(f"{MsgKind(kind).name} on {name_of(key)}")
        elif rec.op is DeviceOp.DISABLE:
            self.enabled[(key, kind)] = False

    def _check_pair(self, rec: DeviceRecord, where: tuple[DeviceKey, int, int], label: str) -> None:
        pair = (rec.address, rec.data)
        m = self.live_at(*where)
        if m is not None and not m.active:  # a reserved message has no pair in force (HV-ACT-001)
            self.violate("GUEST-ACT-001", f"{label}: wrote {rec.address:#x}/{rec.data:#x} for a reserved message")
            return
        if m is not None and pair == (m.address, m.data) and (rec.kind != MsgKind.MSI or rec.vectors == m.count):
            if where in self.rewrite_needed:
                if not self.masked.get(where, True) and self.enabled.get((rec.device, rec.kind), False):
                    self.violate("GUEST-ALLOC-002", f"{label}: new pair written while the slot is unmasked")
                del self.rewrite_needed[where]
            return
        if m is not None and pair == (m.address, m.data):
            self.violate("GUEST-ALLOC-001", f"{label}: MSI written with {rec.vectors} vectors, allocated {m.count}")
            return
        mine = {(x.address, x.data): x for x in self.live().values()}
        if rec.address == POISON_ADDRESS:
            self.violate("GUEST-CONV-001", f"{label}: wrote {rec.address:#x}/{rec.data:#x}, poison of a failed call")
        elif pair in mine and mine[pair].device != rec.device:
            self.violate("GUEST-SEC-001", f"{label}: wrote the pair of {name_of(mine[pair].device)}")
        elif pair in mine:
            self.violate("GUEST-ALLOC-001", f"{label}: wrote the pair of slot {mine[pair].slot}, not of this slot")
        elif where in self.rewrite_needed and self.stale.get(where) == pair:
            self.violate("GUEST-ALLOC-002", f"{label}: wrote the pair in force before the retarget (REWRITE was set)")
        elif m is None:
            self.violate("GUEST-NEG-004", f"{label}: wrote {rec.address:#x}/{rec.data:#x}, no message holds this slot")
        elif rec.data == m.data:
            self.violate(
                "GUEST-FMT-001", f"{label}: wrote address {rec.address:#x}, the call returned {m.address:#x} (as is)"
            )
        else:
            self.violate(
                "GUEST-NEG-004",
                f"{label}: wrote {rec.address:#x}/{rec.data:#x}; the call returned {m.address:#x}/{m.data:#x}",
            )

    def _check_unclaimed_ims(self, rec: DeviceRecord, label: str) -> None:
        """IMS through an identity not claimed for it (a sub-device's slots through its function, another
        sub-device): no pair pvmsi handed out for another identity may go there (GUEST-SEC-001)."""
        owners = sorted(
            {
                name_of(m.device)
                for m in self.live().values()
                if m.device != rec.device and (m.address, m.data) == (rec.address, rec.data)
            }
        )
        if owners:
            self.violate(
                "GUEST-SEC-001", f"{label} (IMS not claimed through this identity): wrote the pair of {owners[0]}"
            )

    def _check_before_live(self, where: tuple[DeviceKey, int, int], label: str, doing: str) -> None:
        m = self.live_at(*where)
        if m is not None and not m.active:  # GUEST-ACT-001: activate first
            self.violate("GUEST-ACT-001", f"{doing} {label}, whose message is reserved, not activated")
            return
        if m is None or where[1] == MsgKind.MSI:  # a claimed MSI capability: the hypervisor wrote it (HV-EMU-002)
            return
        got = self.programmed.get(where)
        if got is not None and got[:2] == (m.address, m.data):
            return
        rid = "GUEST-FLR-001" if where[0][:3] in self.flr_reset else "GUEST-ALLOC-001"
        have = f"{got[0]:#x}/{got[1]:#x}" if got else "nothing"
        self.violate(rid, f"{doing} {label}, which holds {have}, not its pair {m.address:#x}/{m.data:#x}")

    # -- the platform -------------------------------------------------------------------------------------------

    def flr(self, dev: DeviceRef) -> None:
        """The device goes through a function-level reset: it forgets its pairs, masks and enables."""
        self.hv.lifecycle(self.vm_id, LifecycleEvent.FLR, dev)
        bdf = key_of(dev)[:3]
        self.flr_reset.add(bdf)
        for table in (self.programmed, self.masked):
            for w in [w for w in table if w[0][:3] == bdf]:
                del table[w]
        for e in [e for e in self.enabled if e[0][:3] == bdf]:
            self.enabled[e] = False
        self.log(f"platform: FLR of {name_of(key_of(dev))}")

    def unplug(self, dev: DeviceRef) -> None:
        """Surprise hot-unplug of the device."""
        self.hv.lifecycle(self.vm_id, LifecycleEvent.HOT_UNPLUG, dev)
        self.unplugged.add(key_of(dev)[:3])
        self.log(f"platform: hot-unplug of {name_of(key_of(dev))}")

    def fire(self, dev: DeviceRef, kind: MsgKind, index: int) -> tuple[FireResult, list[tuple[int, int]]]:
        """Make the device signal one vector; what became of it and what the vCPUs saw."""
        self.hv.collect(self.vm_id)
        r = self.hv.fire(self.vm_id, dev, kind, index)
        got = self.hv.collect(self.vm_id)
        self.log(f"platform: {name_of(key_of(dev))} fires {kind.name}[{index}] -> {r.outcome.name} {got}")
        return r, got

    def msix_exits(self) -> int:
        return self.hv.counters(self.vm_id).msix_exits

    def delivered(self, dev: DeviceRef, kind: MsgKind, index: int, vcpu: int, vector: int) -> str | None:
        """None when ``index`` delivers exactly ``vector`` to ``vcpu``; else what happened."""
        r, got = self.fire(dev, kind, index)
        if r.outcome is FireOutcome.DELIVERED and got == [(vcpu, vector)]:
            return None
        return f"{r.outcome.name}, vCPUs saw {got}"

    def encode_version(self) -> int:
        return encode_version(*self.knobs.version)


def _gdev(dev: DeviceRef) -> GuestDevice:
    return GuestDevice(dev.segment, dev.bus, dev.devfn, dev.pasid)
