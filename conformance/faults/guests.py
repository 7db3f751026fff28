"""Deliberately faulty guests: each breaks exactly one guest requirement of the reference guest, and the guest
suite must catch each one with that requirement id (the suite proves its own strength in the guest role too).

``pvmsi conformance run --role guest --iut faulty:NAME`` runs the guest suite against one of them, and
``pvmsi serve --role guest --fault NAME`` serves one over the harness protocol.  Each is a subclass of the
reference :class:`~pvmsi.reference.guest.core.GuestCore` that overrides the one public step where it goes wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...reference.guest import discover as discovery
from ...reference.guest.actions import (
    GuestDevice,
    Hypercall,
    MaskSlot,
    ProgramSlot,
    ReadMemory,
    SetEnabled,
    WriteMemory,
)
from ...reference.guest.core import (
    GuestCore,
    GuestMessage,
    GuestMode,
    Op,
    Target,
    compat_message,
)
from ...spec.codec import decode, encode
from ...spec.constants import FEATURES_1_0, KIND_FEATURE, FunctionNumber, KindMask, Limit, MsgKind, Status
from ...spec.formats import FREE_ENTRY, FREE_RESULT, HV_INFO, NEGOTIATE_IN, NEGOTIATE_OUT
from ...spec.layout import layout_of
from ...spec.version import VERSION_MAJOR, VERSION_MINOR, decode_version
from ..guest import ReferenceGuest
from .registry import unknown


@dataclass(frozen=True)
class FaultyGuest:
    """One faulty guest: its name, the requirement it breaks, what it does wrong, its core class."""

    name: str
    breaks: str
    description: str
    core: type[GuestCore]
    #: The platform the fault shows on (spec "Message formats"), None: any; check-faults runs it there.
    platform: str | None = None


GUEST_FAULTS: dict[str, FaultyGuest] = {}
_DEFINED_STATUSES = frozenset(int(s) for s in Status)


def fault(
    name: str, breaks: str, description: str, platform: str | None = None
) -> Callable[[type[GuestCore]], type[GuestCore]]:
    def register(cls: type[GuestCore]) -> type[GuestCore]:
        GUEST_FAULTS[name] = FaultyGuest(name, breaks, description, cls, platform)
        return cls

    return register


def faulty_core(name: str) -> Callable[[int], GuestCore]:
    impl = GUEST_FAULTS.get(name)
    if impl is None:
        raise KeyError(unknown("faulty guest", name, GUEST_FAULTS, "guest"))
    return lambda scratch: impl.core(scratch_gpa=scratch)


def faulty_guest(name: str, arch: str | None = None) -> ReferenceGuest:
    return ReferenceGuest(faulty_core(name), name=f"faulty:{name}", arch=arch)


# -- discovery and negotiation: one boot with switches ------------------------------------------------------------


class _Boot(GuestCore):
    """The reference boot, with the switch a fault flips."""

    skip_version = False
    ignore_major = False
    ignore_refusal = False
    ignore_required = False

    def accept(self, offered: int, required: int) -> int:
        return offered & self.known_features

    def minor(self, reported: int) -> int:
        return min(VERSION_MINOR, reported)

    def boot(self) -> Op:
        minor = VERSION_MINOR
        if not self.skip_version:
            status, value, _ = yield from self.call(FunctionNumber.VERSION)
            if status != Status.SUCCESS:
                return self.fallback("absent")
            major, minor = decode_version(value)
            if major != VERSION_MAJOR and not self.ignore_major:
                return self.fallback("other major")
        status, _, out = yield from self.call(FunctionNumber.GET_INFO, None, layout_of(HV_INFO).size)
        if status != Status.SUCCESS:
            return self.fallback("GET_INFO failed")
        info = decode(HV_INFO, out)
        self.max_batch = max(1, info.max_batch)
        features = self.accept(int(info.features_offered), int(info.features_required))
        if info.features_required & ~features and not self.ignore_required:
            return self.fallback("required features unknown")
        req = {"version_major": VERSION_MAJOR, "version_minor": self.minor(minor), "features": features}
        status, value, _ = yield from self.call(
            FunctionNumber.NEGOTIATE, encode(NEGOTIATE_IN, req), layout_of(NEGOTIATE_OUT).size
        )
        if status != Status.SUCCESS and not self.ignore_refusal:
            return self.fallback("refused")
        self.features = value if status == Status.SUCCESS else features
        self.mode = GuestMode.PVMSI
        return self.mode


@fault("skips-version", "GUEST-DISC-001", "starts with GET_INFO, assuming pvmsi is there")
class _SkipsVersion(_Boot):
    skip_version = True


@fault("ignores-major", "GUEST-DISC-002", "goes on with pvmsi whatever major version VERSION reports")
class _IgnoresMajor(_Boot):
    ignore_major = True


@fault("accepts-unoffered", "GUEST-NEG-001", "negotiates every feature it knows, offered or not")
class _AcceptsUnoffered(_Boot):
    def accept(self, offered: int, required: int) -> int:
        return int(FEATURES_1_0) | required


@fault("drops-unknown-required", "GUEST-NEG-002", "negotiates without the required bits it does not know")
class _DropsRequired(_Boot):
    ignore_required = True


@fault("claims-after-refusal", "GUEST-NEG-003", "takes a failed NEGOTIATE for success and claims devices")
class _ClaimsAfterRefusal(_Boot):
    ignore_refusal = True


@fault("echoes-offer", "GUEST-VER-001", "accepts features_offered verbatim, bits it does not know included")
class _EchoesOffer(_Boot):
    def accept(self, offered: int, required: int) -> int:
        return offered


@fault("newer-minor", "GUEST-VER-002", "negotiates a minor version above the one VERSION reported")
class _NewerMinor(_Boot):
    def minor(self, reported: int) -> int:
        return reported + 1


# -- calls and blocks ----------------------------------------------------------------------------------------------


class _Call(GuestCore):
    """The reference call, with the input and output block placed and patched by the fault."""

    in_offset = 0
    out_offset = int(Limit.PAGE_SIZE)

    def args(self, fn: FunctionNumber, in_gpa: int, out_gpa: int) -> tuple[int, int, int, int]:
        return (in_gpa, out_gpa, 0, 0)

    def patch(self, fn: FunctionNumber, block: bytes) -> bytes:
        return block

    def call(self, fn: FunctionNumber, block: bytes | None = None, out_size: int = 0) -> Op:
        in_gpa, out_gpa = self.scratch_gpa + self.in_offset, self.scratch_gpa + self.out_offset
        if block is not None:
            block = self.patch(fn, block)
            yield WriteMemory(in_gpa, block)
        args = self.args(fn, in_gpa if block is not None else 0, out_gpa if out_size else 0)
        status, value = yield Hypercall(int(fn), args, len(block) if block is not None else 0, out_size)
        out = (yield ReadMemory(out_gpa, out_size)) if out_size else b""
        return int(status), int(value), out


@fault("dirty-reserved-register", "GUEST-CALL-001", "leaves a non-zero value in arg3 of the message calls")
class _DirtyRegister(_Call):
    def args(self, fn: FunctionNumber, in_gpa: int, out_gpa: int) -> tuple[int, int, int, int]:
        return (in_gpa, out_gpa, 0, 0x1000 if fn >= FunctionNumber.MSG_ALLOC else 0)


@fault("misaligned-blocks", "GUEST-MEM-001", "places parameter blocks 4 bytes past the start of its page")
class _Misaligned(_Call):
    in_offset = 4


@fault("overlapping-blocks", "GUEST-MEM-002", "puts the output block 8 bytes after the input block")
class _Overlapping(_Call):
    out_offset = 8


@fault("dirty-reserved-field", "GEN-CONV-002", "writes a non-zero byte into batch_in.reserved1")
class _DirtyField(_Call):
    def patch(self, fn: FunctionNumber, block: bytes) -> bytes:
        return block[:24] + b"\x01" + block[25:] if fn >= FunctionNumber.MSG_ALLOC else block


@fault("undefined-flag", "GEN-CONV-003", "sets an undefined bit in device_id.flags")
class _UndefinedFlag(_Call):
    def patch(self, fn: FunctionNumber, block: bytes) -> bytes:
        if fn >= FunctionNumber.DEVICE_QUERY:
            return block[:4] + bytes([block[4] | 0x80]) + block[5:]
        return block


@fault("big-endian", "GEN-CONV-001", "writes batch_in.count and start big-endian")
class _BigEndian(_Call):
    def patch(self, fn: FunctionNumber, block: bytes) -> bytes:
        if fn >= FunctionNumber.MSG_ALLOC:
            return block[:16] + block[16:18][::-1] + block[18:20][::-1] + block[20:]
        return block


@fault("unknown-status-is-success", "GUEST-STAT-001", "treats a status it does not know as success")
class _UnknownStatus(GuestCore):
    def call(self, fn: FunctionNumber, block: bytes | None = None, out_size: int = 0) -> Op:
        status, value, out = yield from super().call(fn, block, out_size)
        return (Status.SUCCESS if status not in _DEFINED_STATUSES else status), value, out


# -- devices and messages ------------------------------------------------------------------------------------------


@fault("claims-while-enabled", "GUEST-DEV-001", "claims MSI-X without clearing MSI-X Enable first")
class _ClaimsEnabled(GuestCore):
    def disable_emulated(self, dev: GuestDevice, kinds: int) -> Op:
        return (yield from super().disable_emulated(dev, kinds & ~KindMask.MSIX))


@fault("writes-msi-pair", "GUEST-EMU-001", "writes the pair and Multiple Message Enable into a claimed MSI capability")
class _WritesMsiPair(GuestCore):
    def writes_pair(self, dev: GuestDevice, kind: MsgKind) -> bool:
        return True


@fault("no-resume", "GUEST-BATCH-001", "takes INCOMPLETE for done and never resumes the batch")
class _NoResume(GuestCore):
    def resumes(self, status: int, start: int, next_index: int, count: int) -> bool:
        return False


@fault("trusts-failed-results", "GUEST-CONV-001", "after a failed batch, uses the results beyond next_index")
class _TrustsFailed(GuestCore):
    def results_taken(self, status: int, next_index: int, count: int) -> int:
        return count if status < 0 else super().results_taken(status, next_index, count)

    def batch_failed(self, status: int) -> bool:
        return False


@fault("keeps-abandoned", "GUEST-BATCH-002", "after a failed MSG_ALLOC, keeps the completed entries allocated")
class _KeepsAbandoned(GuestCore):
    def free(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        held = self.messages.get(dev, {})
        if any(held.get((m.kind, m.slot)) is not m for m in msgs):
            return 0  # the messages of a failed allocation: not yet held, so forgotten
        return (yield from super().free(dev, msgs))


@fault("wrong-slot", "GUEST-ALLOC-001", "writes the pairs of an ENABLE into its slots in reverse order")
class _WrongSlot(GuestCore):
    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        if not (self.mode is GuestMode.PVMSI and self.features & KIND_FEATURE[kind]) or len(targets) < 2:
            return (yield from super().enable(dev, kind, targets))
        msgs = yield from self.enable_pvmsi(dev, kind, targets)
        held = self.messages.setdefault(dev, {})
        for m, other in zip(msgs, reversed(msgs), strict=True):
            yield ProgramSlot(dev, kind, m.slot, other.address, other.data, m.count)
            held[(kind, m.slot)] = m
        yield SetEnabled(dev, kind, True)
        for m in msgs:
            yield MaskSlot(dev, kind, m.slot, False)
        return msgs


@fault("unmasks-before-writing", "GUEST-ALLOC-001", "enables and unmasks the slots before writing the pairs")
class _UnmasksFirst(GuestCore):
    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        if not (self.mode is GuestMode.PVMSI and self.features & KIND_FEATURE[kind]):
            return (yield from super().enable(dev, kind, targets))
        msgs = yield from self.enable_pvmsi(dev, kind, targets)
        held = self.messages.setdefault(dev, {})
        yield SetEnabled(dev, kind, True)
        for m in msgs:
            yield MaskSlot(dev, kind, m.slot, False)
        for m in msgs:
            yield ProgramSlot(dev, kind, m.slot, m.address, m.data, m.count)
            yield MaskSlot(dev, kind, m.slot, False)
            held[(kind, m.slot)] = m
        return msgs


@fault("own-pairs", "GUEST-NEG-004", "writes compatibility-format pairs of its own into claimed slots")
class _OwnPairs(GuestCore):
    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        if not (self.mode is GuestMode.PVMSI and self.features & KIND_FEATURE[kind]):
            return (yield from super().enable(dev, kind, targets))
        msgs = yield from self.enable_pvmsi(dev, kind, targets)
        held = self.messages.setdefault(dev, {})
        for m in msgs:
            own = compat_message(dev, kind, Target(m.slot, m.vcpu, m.vector, m.count))
            yield ProgramSlot(dev, kind, m.slot, own.address, own.data, m.count)
            held[(kind, m.slot)] = m
        yield SetEnabled(dev, kind, True)
        for m in msgs:
            yield MaskSlot(dev, kind, m.slot, False)
        return msgs


@fault("shares-pairs", "GUEST-SEC-001", "writes the first pair it ever got into slot 0 of every device")
class _SharesPairs(GuestCore):
    first: GuestMessage | None = None

    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        if not (self.mode is GuestMode.PVMSI and self.features & KIND_FEATURE[kind]):
            return (yield from super().enable(dev, kind, targets))
        msgs = yield from self.enable_pvmsi(dev, kind, targets)
        held = self.messages.setdefault(dev, {})
        for m in msgs:
            src = self.first if self.first is not None and m.slot == 0 else m
            yield ProgramSlot(dev, kind, m.slot, src.address, src.data, m.count)
            held[(kind, m.slot)] = m
        if self.first is None and msgs:
            self.first = msgs[0]
        yield SetEnabled(dev, kind, True)
        for m in msgs:
            yield MaskSlot(dev, kind, m.slot, False)
        return msgs


@fault("ignores-rewrite", "GUEST-ALLOC-002", "never rewrites the device after a retarget, REWRITE or not")
class _IgnoresRewrite(GuestCore):
    def rewrite(self, m: GuestMessage) -> Op:
        if self.mode is GuestMode.PVMSI and m.device in self.claimed:
            return
        yield from super().rewrite(m)


@fault("unmasked-rewrite", "GUEST-ALLOC-002", "rewrites a retargeted pair without masking the slot")
class _UnmaskedRewrite(GuestCore):
    def rewrite(self, m: GuestMessage) -> Op:
        yield ProgramSlot(m.device, m.kind, m.slot, m.address, m.data, m.count)
        yield MaskSlot(m.device, m.kind, m.slot, False)


@fault("double-free", "GUEST-ALLOC-004", "frees a kind's messages but keeps their handles, and frees them again")
class _DoubleFree(GuestCore):
    def drop_freed(self, dev: GuestDevice, kind: MsgKind, msgs: Sequence[GuestMessage]) -> None:
        pass  # keeps the freed handles, so the next disable frees them again


@fault("skips-flr-rewrite", "GUEST-FLR-001", "after an FLR re-enables the messages without writing the pairs")
class _SkipsFlr(GuestCore):
    def after_flr(self, dev: GuestDevice) -> Op:
        held = self.messages.get(dev, {})
        for kind in sorted({k for k, _ in held}, key=int):
            yield SetEnabled(dev, kind, True)
        for m in held.values():
            yield MaskSlot(dev, m.kind, m.slot, False)
        return len(held)


@fault("frees-on-unplug", "GUEST-UNPLUG-001", "frees the messages of a hot-unplugged device")
class _FreesOnUnplug(GuestCore):
    def forget(self, dev: GuestDevice) -> Op:
        msgs = list(self.messages.get(dev, {}).values())
        if self.mode is GuestMode.PVMSI and msgs:
            entries = [{"handle": m.handle} for m in msgs]
            yield from self.batch(FunctionNumber.MSG_FREE, dev, FREE_ENTRY, FREE_RESULT, entries)
        return self.on_unplug(dev)


# -- platform discovery (GUEST-ABI-*) -------------------------------------------------------------------------------


@fault(
    "arm64-no-uid-check",
    "GUEST-ABI-001",
    "on arm64 reads the vendor hypervisor Call UID but does not compare it",
    platform="gic-its",
)
class Arm64NoUidCheck(GuestCore):
    def __init__(self, scratch_gpa: int) -> None:
        super().__init__(scratch_gpa=scratch_gpa, arch="arm64")

    def discover(self) -> Op:
        return (yield from discovery.arm64(compare_uid=False))


@fault(
    "riscv-probe-ignored",
    "GUEST-ABI-002",
    "on riscv64 probes the SBI extension but ignores the answer",
    platform="imsic",
)
class RiscvProbeIgnored(GuestCore):
    def __init__(self, scratch_gpa: int) -> None:
        super().__init__(scratch_gpa=scratch_gpa, arch="riscv64")

    def discover(self) -> Op:
        return (yield from discovery.riscv64(check_probe=False))


@fault("x86-any-cpuid-path", "GUEST-ABI-003", "on x86-64 calls pvmsi natively whatever path CPUID(base + 1) names")
class X86AnyCpuidPath(GuestCore):
    def discover(self) -> Op:
        return (yield from discovery.x86_64(known_paths=frozenset(range(256))))


@fault(
    "blocks-in-private-memory",
    "GUEST-CVM-001",
    "puts its parameter blocks two pages past the shared scratch pages, in memory the host of a confidential VM "
    "cannot reach",
)
class BlocksInPrivateMemory(GuestCore):
    @property
    def in_gpa(self) -> int:
        return super().in_gpa + 2 * int(Limit.PAGE_SIZE)

    @property
    def out_gpa(self) -> int:
        return super().out_gpa + 2 * int(Limit.PAGE_SIZE)


@fault("trusts-every-pair", "GUEST-CVM-002", "writes every pair the host hands out, even one outside the window")
class TrustsEveryPair(GuestCore):
    def pair_acceptable(self, address: int) -> bool:
        return True


# -- reserve and activate ------------------------------------------------------------------------------------------


@fault("writes-reserved-pair", "GUEST-ACT-001", "writes and enables the zero pair of a reservation, never activating")
class _WritesReservedPair(GuestCore):
    def domain_activate(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        yield from ()
        return msgs
