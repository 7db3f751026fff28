"""The reference guest core: discovery, negotiation, claiming, batched allocation, writing pairs into devices,
retargeting, freeing, FLR and hot-unplug, with the fall-back to emulated MSI/MSI-X (sans-I/O).

Messages follow Linux's irq_domain / msi_domain hierarchy (docs "Implementing the guest side in Linux"), one path
for MSI, MSI-X and IMS: :meth:`GuestCore.domain_alloc` reserves (``msi_domain_alloc_irqs`` -> MSG_ALLOC),
:meth:`GuestCore.domain_activate` composes (``irq_domain_activate_irq`` / ``irq_chip_compose_msi_msg`` ->
MSG_ACTIVATE), :meth:`GuestCore.set_affinity` moves (``irq_set_affinity`` -> MSG_ACTIVATE, then
``irq_write_msi_msg`` only on REWRITE), :meth:`GuestCore.domain_deactivate` (``irq_domain_deactivate_irq`` ->
MSG_DEACTIVATE) and :meth:`GuestCore.free` (``msi_domain_free_irqs`` -> MSG_FREE).

Every public operation is a generator: it yields :mod:`.actions` and receives their answers, so the same
logic runs in-process, over a transport, or under the conformance suite playing the hypervisor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ...spec.codec import DecodeError, decode, encode
from ...spec.constants import (
    FEATURES_1_0,
    KIND_FEATURE,
    KIND_FEATURES,
    ActivateEntryFlag,
    ActivateFlag,
    Feature,
    FunctionNumber,
    KindMask,
    MsgKind,
    Status,
)
from ...spec.formats import (
    ACTIVATE_ENTRY,
    ACTIVATE_RESULT,
    ALLOC_ENTRY,
    ALLOC_RESULT,
    CLAIM_IN,
    DEACTIVATE_ENTRY,
    DEACTIVATE_RESULT,
    DEVICE_ID,
    DEVICE_INFO,
    FREE_ENTRY,
    FREE_RESULT,
    HV_INFO,
    NEGOTIATE_IN,
    NEGOTIATE_OUT,
)
from ...spec.kinds import kind_bit
from ...spec.layout import layout_of
from ...spec.version import VERSION_MAJOR, VERSION_MINOR, decode_version
from .actions import GuestDevice, MaskSlot, ProgramSlot, SetEnabled
from .calls import GuestCalls
from .calls import Op as Op
from .discover import discover
from .errors import GuestError as GuestError
from .events import GuestEvents
from .pairs import pair_acceptable


class GuestMode(Enum):
    """How the guest obtains messages."""

    UNKNOWN = "unknown"
    PVMSI = "pvmsi"
    EMULATED = "emulated"


@dataclass(frozen=True)
class Target:
    """One message the driver wants: the slot to program and where it should deliver."""

    slot: int
    vcpu: int
    vector: int
    count: int = 1


@dataclass
class GuestMessage:
    """A message the guest holds and has written into a device."""

    device: GuestDevice
    kind: MsgKind
    slot: int
    count: int
    vcpu: int
    vector: int
    address: int
    data: int
    handle: int = 0


@dataclass
class GuestCore(GuestCalls, GuestEvents):
    """One guest kernel's interrupt-message layer; it issues calls through :class:`~.calls.GuestCalls`, and its
    side of the event channel comes from :class:`~.events.GuestEvents`."""

    scratch_gpa: int
    known_features: int = int(FEATURES_1_0)
    mode: GuestMode = GuestMode.UNKNOWN
    features: int = 0
    max_batch: int = 1
    messages: dict[GuestDevice, dict[tuple[MsgKind, int], GuestMessage]] = field(default_factory=dict)
    claimed: dict[GuestDevice, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    calls: int = 0
    #: The architecture the guest runs on: which platform discovery it does (spec "Discovery").
    arch: str = "x86_64"
    #: hv_info.message_format: the format (and interrupt window) of the pairs the hypervisor hands out.
    message_format: int = 0
    #: The guest runs in a confidential VM, as its CPU tells it at boot (on the harness: BOOT's
    #: PVMSI_HBOOT_CONFIDENTIAL): it does not trust the pairs the host hands out (GUEST-CVM-002).
    confidential: bool = False

    # -- discovery and negotiation ---------------------------------------------------------------------------

    def boot(self) -> Op:
        """Discover pvmsi and negotiate; fall back to emulation when absent or refused (GUEST-DISC-002, NEG-003)."""
        absent = yield from self.discover()  # GUEST-ABI-001..003: the platform's probe before any pvmsi call
        if absent is not None:
            return self.fallback(absent)
        status, value, _ = yield from self.call(FunctionNumber.VERSION)
        if status != Status.SUCCESS:
            return self.fallback(f"VERSION answered {status}: pvmsi absent")
        major, minor = decode_version(value)
        if major != VERSION_MAJOR:
            return self.fallback(f"hypervisor speaks pvmsi {major}.{minor}, guest {VERSION_MAJOR}.x")
        status, _, out = yield from self.call(FunctionNumber.GET_INFO, None, layout_of(HV_INFO).size)
        if status != Status.SUCCESS:
            return self.fallback(f"GET_INFO failed with {status}")
        info = decode(HV_INFO, out)
        self.max_batch = max(1, info.max_batch)
        self.message_format = int(info.message_format)
        offered = info.features_offered & self.known_features  # GUEST-VER-001, GUEST-NEG-001
        if info.features_required & ~offered:
            return self.fallback("hypervisor requires features this guest does not know")  # GUEST-NEG-002
        if not offered & KIND_FEATURES:
            return self.fallback("no message kind both offered and known")  # a NEGOTIATE would be refused
        req = {"version_major": VERSION_MAJOR, "version_minor": min(VERSION_MINOR, minor), "features": offered}
        status, value, out = yield from self.call(
            FunctionNumber.NEGOTIATE, encode(NEGOTIATE_IN, req), layout_of(NEGOTIATE_OUT).size
        )
        if status != Status.SUCCESS:
            # GUEST-CONV-001: negotiate_out is meaningful only after FEATURES_REFUSED or INVALID_PARAMETER.
            refused = ""
            if status in (Status.FEATURES_REFUSED, Status.INVALID_PARAMETER):
                with contextlib.suppress(DecodeError):
                    refused = f", bits {decode(NEGOTIATE_OUT, out).refused:#x}"
            return self.fallback(f"NEGOTIATE refused ({_status_name(status)}{refused})")
        self.features = self.granted(value, offered)
        self.mode = GuestMode.PVMSI
        self.log.append(f"pvmsi {major}.{minor} negotiated, features {self.features:#x}")
        return self.mode

    def granted(self, value: int, asked: int) -> int:
        """The features in force after a successful NEGOTIATE: those both asked and granted; a bit granted beyond
        the request is not the guest's to use (GUEST-REFUSE-001)."""
        return value & asked

    def discover(self) -> Op:
        """The platform discovery of :attr:`arch`: None when pvmsi is there, else why not."""
        return (yield from discover(self.arch))

    def fallback(self, why: str) -> GuestMode:
        """Go on with emulated MSI/MSI-X: pvmsi absent, of another major version or refused (GUEST-DISC-002,
        GUEST-NEG-003)."""
        self.mode = GuestMode.EMULATED
        self.log.append(f"emulated MSI/MSI-X: {why}")
        return self.mode

    # -- devices ---------------------------------------------------------------------------------------------

    def query(self, dev: GuestDevice) -> Op:
        status, _, out = yield from self.call(
            FunctionNumber.DEVICE_QUERY, encode(DEVICE_ID, self.device_id(dev)), layout_of(DEVICE_INFO).size
        )
        if status != Status.SUCCESS:
            raise GuestError("DEVICE_QUERY", status)
        return decode(DEVICE_INFO, out)

    def claim(self, dev: GuestDevice, kinds: int | None = None) -> Op:
        """Disable the kinds under emulation, then claim them (GUEST-DEV-001, GUEST-DEV-002).

        ``kinds`` None claims every kind the device supports and pvmsi negotiated: a device is claimed once.
        """
        info = yield from self.query(dev)
        if kinds is None:
            kinds = int(info.kinds) & sum(kind_bit(k) for k, f in KIND_FEATURE.items() if self.features & f)
        if not kinds or kinds & ~info.kinds:
            raise GuestError("DEVICE_CLAIM", Status.INVALID_PARAMETER, "device lacks a kind")
        yield from self.disable_emulated(dev, kinds)
        req = {"device": self.device_id(dev), "kinds": kinds}
        status, _, _ = yield from self.call(FunctionNumber.DEVICE_CLAIM, encode(CLAIM_IN, req))
        if status != Status.SUCCESS:
            raise GuestError("DEVICE_CLAIM", status)
        self.claimed[dev] = kinds
        names = "+".join(k.name for k in MsgKind if kinds & kind_bit(k))
        self.log.append(f"claimed {_name(dev)} for {names}: emulation of them off")
        return info

    def shutdown(self, dev: GuestDevice) -> Op:
        """Disable the kinds and free the messages, then hand the device back to emulation (GUEST-DEV-003)."""
        held = self.messages.get(dev, {})
        for kind in sorted({k for k, _ in held}, key=int):
            yield from self.disable(dev, kind)
        return (yield from self.release(dev))

    def release(self, dev: GuestDevice) -> Op:
        """DEVICE_RELEASE as it stands: the hypervisor frees whatever messages are left."""
        status, value, _ = yield from self.call(FunctionNumber.DEVICE_RELEASE, encode(DEVICE_ID, self.device_id(dev)))
        if status != Status.SUCCESS:
            raise GuestError("DEVICE_RELEASE", status)
        self.claimed.pop(dev, None)
        self.messages.pop(dev, None)
        return value

    def disable_emulated(self, dev: GuestDevice, kinds: int) -> Op:
        """Clear MSI Enable and MSI-X Enable of the kinds about to be claimed, which were under emulation until
        now (GUEST-DEV-001)."""
        for kind in (MsgKind.MSI, MsgKind.MSIX):
            if kinds & kind_bit(kind):
                yield SetEnabled(dev, kind, False)

    # -- messages --------------------------------------------------------------------------------------------

    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        """Obtain a message per target, write each into its slot, enable the kind. Returns the messages."""
        if self.mode is GuestMode.PVMSI and self.features & KIND_FEATURE[kind]:
            msgs = yield from self.enable_pvmsi(dev, kind, targets)
        else:
            msgs = [self.emulated_message(dev, kind, t) for t in targets]
        held = self.messages.setdefault(dev, {})
        for m in msgs:
            if self.writes_pair(dev, kind):
                yield ProgramSlot(dev, kind, m.slot, m.address, m.data, m.count)  # GUEST-ALLOC-001
            held[(kind, m.slot)] = m
        yield SetEnabled(dev, kind, True)
        for m in msgs:
            yield MaskSlot(dev, kind, m.slot, False)
        return msgs

    def emulated_message(self, dev: GuestDevice, kind: MsgKind, t: Target) -> GuestMessage:
        """The pair the guest composes for a kind it has not claimed, which the hypervisor emulates (GUEST-EMU-002):
        its platform's own format, never pvmsi's; on the harness the x86 compatibility format on every platform
        (spec "Message formats", "On the emulated path")."""
        return compat_message(dev, kind, t)

    def vectors_of(self, msgs: Iterable[GuestMessage]) -> int:
        """The vectors these messages carry (an MSI block of n vectors counts n): what a command reports as
        ``done`` in the harness's ``guest_result`` (GUEST-STAT-002)."""
        return sum(m.count for m in msgs)

    def writes_pair(self, dev: GuestDevice, kind: MsgKind) -> bool:
        """Whether the guest writes a message's pair into the device itself: not for a claimed MSI capability,
        whose pair the hypervisor writes inside MSG_ALLOC / MSG_ACTIVATE (GUEST-EMU-001, spec "The emulation
        boundary"); the guest only sets MSI Enable and the mask bits there."""
        return not (kind is MsgKind.MSI and self.claimed.get(dev, 0) & KindMask.MSI)

    def enable_pvmsi(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        """Claim the device if needed, reserve one message per target (:meth:`domain_alloc`) and activate them
        (:meth:`domain_activate`); after a failure, free what is left (GUEST-BATCH-002).  Returns the messages;
        writes nothing to the device."""
        if dev.pasid is not None and not self.features & Feature.SUBDEVICE:  # GUEST-REFUSE-001: not in force
            raise GuestError("DEVICE_QUERY", Status.NOT_PERMITTED, "SUBDEVICE not negotiated")
        if dev not in self.claimed:
            yield from self.claim(dev, None)
        if not self.claimed[dev] & kind_bit(kind):
            raise GuestError("MSG_ALLOC", Status.NOT_PERMITTED, f"{kind.name} not claimed for the device")
        msgs = yield from self.domain_alloc(dev, kind, targets)
        yield from self.domain_activate(dev, msgs)
        n = sum(t.count for t in targets)
        self.log.append(f"reserved, then activated {n} {kind.name} vectors on {_name(dev)}")  # MSG_ALLOC, MSG_ACTIVATE
        return msgs

    def domain_alloc(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        """irq_domain_ops.alloc: MSG_ALLOC reserves one message per target, no target and no pair yet
        (HV-ACT-001); the targets are remembered for activation (GUEST-ACT-001: nothing is written yet)."""
        entries = [
            {
                "kind": kind,
                "flags": 0,
                "vector_count": t.count,
                "slot": t.slot,
                "vcpu": 0,
                "vector": 0,
                "alloc_flags": 0,
                "hint_vcpu": 0,
            }
            for t in targets
        ]
        results, status = yield from self.batch(FunctionNumber.MSG_ALLOC, dev, ALLOC_ENTRY, ALLOC_RESULT, entries)
        msgs = [
            GuestMessage(dev, kind, t.slot, t.count, t.vcpu, t.vector, 0, 0, r.handle)
            for t, r in zip(targets, results, strict=False)
        ]
        if status != Status.SUCCESS:
            yield from self.free(dev, msgs)  # GUEST-BATCH-002: free what the failed batch left reserved
            raise GuestError("MSG_ALLOC", status, f"entry {len(results)}")
        return msgs

    def domain_activate(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        """irq_domain_ops.activate / irq_chip_compose_msi_msg: MSG_ACTIVATE sets each message's target (the whole
        block) and returns the pair the guest then writes (GUEST-ALLOC-001, GUEST-ACT-001)."""
        entries = [
            {
                "handle": m.handle,
                "vcpu": m.vcpu,
                "vector": m.vector,
                "flags": 0,
                "entry_flags": int(ActivateEntryFlag.BLOCK),
                "index": 0,
            }
            for m in msgs
        ]
        results, status = yield from self.batch(
            FunctionNumber.MSG_ACTIVATE, dev, ACTIVATE_ENTRY, ACTIVATE_RESULT, entries
        )
        for m, r in zip(msgs, results, strict=False):
            m.address, m.data = r.address, r.data
        if status != Status.SUCCESS:
            yield from self.free(dev, msgs)  # GUEST-BATCH-002: nothing half-activated is kept
            raise GuestError("MSG_ACTIVATE", status, f"entry {len(results)}")
        bad = [m for m in msgs if not self.pair_acceptable(m.address)]
        if bad:  # GUEST-CVM-002: a pair outside the interrupt window is never written; nothing is kept
            yield from self.free(dev, msgs)
            raise GuestError("MSG_ACTIVATE", Status.INVALID_ADDRESS, f"pair address {bad[0].address:#x} refused")
        return msgs

    def domain_deactivate(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        """irq_domain_ops.deactivate: MSG_DEACTIVATE returns the messages to reserved (HV-ACT-005); the handles
        stay valid."""
        done = 0
        while msgs:
            entries = [{"handle": m.handle, "index": 0, "entry_flags": int(ActivateEntryFlag.BLOCK)} for m in msgs]
            results, status = yield from self.batch(
                FunctionNumber.MSG_DEACTIVATE, dev, DEACTIVATE_ENTRY, DEACTIVATE_RESULT, entries
            )
            done += len(results)
            if status == Status.SUCCESS:
                break
            if status != Status.REVOKED:
                raise GuestError("MSG_DEACTIVATE", status, f"entry {len(results)}")
            # A revoked message delivers nothing already (HV-REVOKE-002): go on after it; the caller frees it
            # with the others, and the REVOKED event then names a handle no longer held (GUEST-REVOKE-001).
            msgs = msgs[len(results) + 1 :]
        return done

    def pair_acceptable(self, address: int) -> bool:
        """Whether a pair the host handed out may be written into a device: a guest outside a confidential VM
        trusts its host; one inside checks the interrupt window (GUEST-CVM-002)."""
        return not self.confidential or pair_acceptable(self.message_format, address)

    def set_affinity(self, dev: GuestDevice, moves: Sequence[tuple[GuestMessage, int, int]]) -> Op:
        """Move messages to (vcpu, vector); rewrite the device only where the pair changed (GUEST-ALLOC-002)."""
        if self.mode is GuestMode.PVMSI and dev in self.claimed:
            block = int(ActivateEntryFlag.BLOCK)
            entries = [
                {"handle": m.handle, "vcpu": v, "vector": vec, "flags": 0, "entry_flags": block, "index": 0}
                for m, v, vec in moves
            ]
            results, status = yield from self.batch(
                FunctionNumber.MSG_ACTIVATE, dev, ACTIVATE_ENTRY, ACTIVATE_RESULT, entries
            )
            refused: list[GuestMessage] = []
            for (m, vcpu, vector), r in zip(moves, results, strict=False):
                m.vcpu, m.vector = vcpu, vector
                if r.flags & ActivateFlag.REWRITE:
                    m.address, m.data = r.address, r.data
                    if self.writes_pair(dev, m.kind) and not self.pair_acceptable(r.address):
                        refused.append(m)  # GUEST-CVM-002: never written; masked and freed below
                        continue
                    yield from self.rewrite(m)
            if refused:
                for m in refused:
                    yield MaskSlot(dev, m.kind, m.slot, True)
                yield from self.free(dev, refused)
                for m in refused:
                    self.drop_freed(dev, m.kind, [m])
                raise GuestError("MSG_ACTIVATE", Status.INVALID_ADDRESS, f"pair address {refused[0].address:#x}")
            if status != Status.SUCCESS:
                raise GuestError("MSG_ACTIVATE", status, f"entry {len(results)}")
            return sum(1 for r in results if r.flags & ActivateFlag.REWRITE)
        for m, vcpu, vector in moves:
            new = self.emulated_message(m.device, m.kind, Target(m.slot, vcpu, vector, m.count))
            m.vcpu, m.vector, m.address, m.data = vcpu, vector, new.address, new.data
            yield from self.rewrite(m)
        return len(moves)

    def rewrite(self, m: GuestMessage) -> Op:
        """Write a message's pair into its slot again, masked while it changes (GUEST-ALLOC-002)."""
        if not self.writes_pair(m.device, m.kind):
            return  # the hypervisor wrote the new pair into the MSI capability itself (HV-EMU-003)
        yield MaskSlot(m.device, m.kind, m.slot, True)
        yield ProgramSlot(m.device, m.kind, m.slot, m.address, m.data, m.count)
        yield MaskSlot(m.device, m.kind, m.slot, False)

    def disable(self, dev: GuestDevice, kind: MsgKind) -> Op:
        """Mask every slot of the kind, disable it, deactivate and free its messages (free_irq, then
        pci_free_irq_vectors; GUEST-ALLOC-003)."""
        held = self.messages.get(dev, {})
        msgs = [m for (k, _), m in held.items() if k is kind]
        for m in msgs:
            yield MaskSlot(dev, kind, m.slot, True)
        yield SetEnabled(dev, kind, False)
        if self.mode is GuestMode.PVMSI and dev in self.claimed:
            yield from self.domain_deactivate(dev, [m for m in msgs if m.handle])
            yield from self.free(dev, msgs)
        self.drop_freed(dev, kind, msgs)
        return len(msgs)

    def drop_freed(self, dev: GuestDevice, kind: MsgKind, msgs: Sequence[GuestMessage]) -> None:
        """Drop freed messages and their handles: a handle is never used after MSG_FREE (GUEST-ALLOC-004)."""
        held = self.messages.get(dev, {})
        for m in msgs:
            held.pop((kind, m.slot), None)

    def free(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        """Free messages by MSG_FREE, each handle once (GUEST-ALLOC-004); the messages freed."""
        entries = [{"handle": m.handle} for m in msgs if m.handle]
        if not entries:
            return 0
        results, status = yield from self.batch(FunctionNumber.MSG_FREE, dev, FREE_ENTRY, FREE_RESULT, entries)
        if status != Status.SUCCESS:
            raise GuestError("MSG_FREE", status, f"entry {len(results)}")
        return len(results)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def after_flr(self, dev: GuestDevice) -> Op:
        """The device forgot its pairs; write them again (the MSI-X table and IMS; a claimed MSI capability the
        hypervisor restores, HV-EMU-007) and re-enable (GUEST-FLR-001)."""
        held = self.messages.get(dev, {})
        kinds = sorted({k for k, _ in held}, key=int)
        for m in held.values():
            if self.writes_pair(dev, m.kind):  # a claimed MSI capability is the hypervisor's to restore (HV-EMU-007)
                yield ProgramSlot(dev, m.kind, m.slot, m.address, m.data, m.count)
        for kind in kinds:
            yield SetEnabled(dev, kind, True)
        for m in held.values():
            yield MaskSlot(dev, m.kind, m.slot, False)
        return len(held)

    def on_unplug(self, dev: GuestDevice) -> int:
        """The device is gone: drop its handles without freeing them (GUEST-UNPLUG-001)."""
        dropped = len(self.messages.pop(dev, {}))
        self.claimed.pop(dev, None)
        return dropped

    def forget(self, dev: GuestDevice) -> Op:
        """:meth:`on_unplug` as an operation, for drivers that run every operation as a generator."""
        yield from ()  # nothing to call: the handles are dropped, never freed
        return self.on_unplug(dev)


def _status_name(status: int) -> str:
    return Status(status).name if status in Status._value2member_map_ else f"status {status}"


def _name(dev: GuestDevice) -> str:
    sub = f"/pasid {dev.pasid}" if dev.pasid is not None else ""
    return f"{dev.segment:04x}:{dev.bus:02x}:{dev.devfn >> 3:02x}.{dev.devfn & 7}{sub}"


def compat_message(dev: GuestDevice, kind: MsgKind, t: Target) -> GuestMessage:
    """The emulated path: an x86 compatibility-format pair (destination APIC id = vCPU index)."""
    return GuestMessage(dev, kind, t.slot, t.count, t.vcpu, t.vector, 0xFEE00000 | (t.vcpu << 12), t.vector)
