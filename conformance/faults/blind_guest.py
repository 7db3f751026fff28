"""Faulty guests found by a blind measurement of the guest suite: realistic guest bugs, written from the spec and
the reference guest's public steps without reading the suite, that the suite did not catch at first (each is now
caught by the test that names its requirement), and posted-without-feature, the draft that showed GUEST-NEG-006
missing.  Each is a subclass of the reference guest core overriding the
public steps where it goes wrong."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ...reference.guest import discover as discovery
from ...reference.guest.actions import GuestDevice, MaskSlot, ProgramSlot, Trap
from ...reference.guest.core import GuestCore, GuestError, GuestMessage, GuestMode, Op, Target, compat_message
from ...spec.callconv import ARM64_VENDOR_HYP_CALL_UID, PVMSI_UID, uid_registers
from ...spec.codec import encode
from ...spec.constants import KIND_FEATURE, DeliveryFlag, EventType, FunctionNumber, MsgKind, Status
from ...spec.formats import EVENT_ACK_IN
from .guests import fault

KNOWN_EVENT_TYPES = frozenset(int(t) for t in EventType)

# -- platform discovery (GUEST-ABI-*) -------------------------------------------------------------------------------


@fault(
    "x86-any-nonzero-path",
    "GUEST-ABI-003",
    "on x86-64 takes pvmsi as reachable whenever CPUID(base + 1) names a path other than 0, one it does not know "
    "included",
)
class _X86AnyNonzeroPath(GuestCore):
    def discover(self) -> Op:
        return (yield from discovery.x86_64(known_paths=frozenset(range(1, 256))))


@fault(
    "arm64-no-smccc-check",
    "GUEST-ABI-001",
    "on arm64 reads the vendor hypervisor Call UID without first finding SMCCC 1.1 or later",
    platform="gic-its",
)
class _Arm64NoSmcccCheck(GuestCore):
    def __init__(self, scratch_gpa: int) -> None:
        super().__init__(scratch_gpa=scratch_gpa, arch="arm64")

    def discover(self) -> Op:
        r = yield Trap("arm64", "hvc", (("x0", ARM64_VENDOR_HYP_CALL_UID),))
        uid = tuple(r.get(f"x{i}", 0) & 0xFFFFFFFF for i in range(4))
        return None if uid == uid_registers(PVMSI_UID) else "the vendor hypervisor UID is not pvmsi's"


# -- devices and kinds ----------------------------------------------------------------------------------------------


@fault(
    "ims-through-function",
    "GUEST-SEC-001",
    "writes a sub-device's IMS pairs (and unmasks them) through its PCI function's identity, at the sub-device's "
    "slot numbers",
)
class _ImsThroughFunction(GuestCore):
    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        if dev.pasid is None or kind is not MsgKind.IMS:
            return (yield from super().enable(dev, kind, targets))
        function = GuestDevice(dev.segment, dev.bus, dev.devfn)
        msgs = yield from self.enable_pvmsi(dev, kind, targets)
        held = self.messages.setdefault(dev, {})
        for m in msgs:
            yield ProgramSlot(function, kind, m.slot, m.address, m.data, m.count)
            held[(kind, m.slot)] = m
        for m in msgs:
            yield MaskSlot(function, kind, m.slot, False)
        return msgs


@fault(
    "emulated-msi-one-vector",
    "GUEST-EMU-002",
    "on the emulated path programs an MSI block with Multiple Message Enable for one vector",
)
class _EmulatedMsiOneVector(GuestCore):
    def emulated_message(self, dev: GuestDevice, kind: MsgKind, t: Target) -> GuestMessage:
        m = compat_message(dev, kind, t)
        m.count = 1
        return m


@fault(
    "claims-every-device-kind",
    "GUEST-NEG-006",
    "claims every kind DEVICE_QUERY reports for the device, negotiated or not",
)
class _ClaimsEveryDeviceKind(GuestCore):
    def claim(self, dev: GuestDevice, kinds: int | None = None) -> Op:
        if kinds is None:
            info = yield from self.query(dev)
            kinds = int(info.kinds)
        return (yield from super().claim(dev, kinds))


@fault(
    "pvmsi-for-unnegotiated-kind",
    "GUEST-NEG-006",
    "once negotiated, takes every kind through pvmsi (claim and MSG_ALLOC), also one it did not negotiate",
)
class _PvmsiForUnnegotiatedKind(GuestCore):
    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        if self.mode is not GuestMode.PVMSI or self.features & KIND_FEATURE[kind]:
            return (yield from super().enable(dev, kind, targets))
        saved = self.features
        self.features |= KIND_FEATURE[kind]
        try:
            return (yield from super().enable(dev, kind, targets))
        finally:
            self.features = saved


@fault(
    "posted-without-feature",
    "GUEST-NEG-006",
    "asks for posted delivery (PVMSI_DELIVERY_POSTED) in every activate entry, POSTED negotiated or not",
)
class _PostedWithoutFeature(GuestCore):
    def batch(
        self, fn: FunctionNumber, dev: GuestDevice, entry_fmt: Any, result_fmt: Any, entries: Sequence[dict[str, Any]]
    ) -> Op:
        if fn == FunctionNumber.MSG_ACTIVATE:
            entries = [{**e, "flags": int(e["flags"]) | DeliveryFlag.POSTED} for e in entries]
        return (yield from super().batch(fn, dev, entry_fmt, result_fmt, entries))


# -- events ---------------------------------------------------------------------------------------------------------


@fault(
    "one-fetch-per-notification",
    "GUEST-EVT-001",
    "fetches once per notification and ignores what EVENT_ACK says is still pending",
)
class _OneFetchPerNotification(GuestCore):
    def handle_events(self) -> Op:
        handled: list[str] = []
        events, _next = yield from self.fetch_events()
        for e in events:
            handled.append((yield from self.act(e)))
        if events:
            status, _left, _ = yield from self.call(
                FunctionNumber.EVENT_ACK, encode(EVENT_ACK_IN, {"seq": events[-1].seq})
            )
            if status != Status.SUCCESS:
                raise GuestError("EVENT_ACK", status)
        return handled


@fault(
    "unknown-event-type-aborts",
    "GUEST-EVT-001",
    "fails the notification handler on an event type it does not know, acknowledging nothing",
)
class _UnknownEventTypeAborts(GuestCore):
    def act(self, e: Any) -> Op:
        if e.event_type not in KNOWN_EVENT_TYPES:
            raise GuestError("EVENT_FETCH", Status.INVALID_PARAMETER, f"unknown event type {e.event_type:#x}")
        return (yield from super().act(e))


@fault(
    "device-removed-frees",
    "GUEST-UNPLUG-001",
    "on DEVICE_REMOVED frees the device's handles before dropping them",
)
class _DeviceRemovedFrees(GuestCore):
    def act(self, e: Any) -> Op:
        if e.event_type != EventType.DEVICE_REMOVED:
            return (yield from super().act(e))
        dev = GuestDevice(e.device.segment, e.device.bus, e.device.devfn, e.device.subdevice_id or None)
        with contextlib.suppress(GuestError):
            yield from self.free(dev, list(self.messages.get(dev, {}).values()))
        return f"DEVICE_REMOVED: {self.on_unplug(dev)} messages freed and dropped"
