"""Faulty guests that take what they did not ask for (GUEST-REFUSE-001..003), that take the vendor range for their
own (GUEST-EXT-001, GUEST-EXT-002), and that rewrite a multi-message MSI block with a vector left unmasked
(GUEST-ALLOC-002).  Each overrides one public step of the reference guest core."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from ...reference.guest.actions import GuestDevice, MaskSlot, ProgramSlot
from ...reference.guest.core import GuestCore, GuestError, GuestMessage, GuestMode, Op
from ...reference.guest.pairs import pair_acceptable
from ...spec.constants import EventType, FunctionNumber, MsgKind, Status
from ...spec.extension import VENDOR_FEATURES, Extension
from .guests import _Boot, fault

# -- GUEST-REFUSE-001..003 -----------------------------------------------------------------------------------------


@fault("trusts-granted-features", "GUEST-REFUSE-001", "takes every bit NEGOTIATE's value reports, asked for or not")
class _TrustsGranted(GuestCore):
    def granted(self, value: int, asked: int) -> int:
        return value


@fault(
    "trusts-any-next-index",
    "GUEST-REFUSE-002",
    "takes the results of a batch answer whatever its next_index, one past the count or short of it",
)
class _TrustsAnyNextIndex(GuestCore):
    def answer_in_range(self, status: int, start: int, next_index: int, count: int) -> bool:
        return True


@fault(
    "trusts-any-handle",
    "GUEST-REFUSE-002",
    "takes every handle MSG_ALLOC's results name: zero, twice in one answer, or one it already holds",
)
class _TrustsAnyHandle(GuestCore):
    def handles_fresh(self, taken: Sequence[Any], earlier: Sequence[Any]) -> bool:
        return True


@fault(
    "frees-revoked-anywhere",
    "GUEST-REFUSE-003",
    "on REVOKED frees the handle on whichever device holds it, not only on the device the event names",
)
class _FreesRevokedAnywhere(GuestCore):
    def revoked(self, dev: GuestDevice, handle: int) -> Op:
        for other in list(self.messages):
            for m in list(self.messages[other].values()):
                if m.handle == handle:
                    yield from self.free_revoked(other, m)
                    return True
        return False


@fault(
    "drops-every-subdevice",
    "GUEST-REFUSE-003",
    "on DEVICE_REMOVED of a sub-device drops every sub-device of the function, whatever their ids",
)
class _DropsEverySubdevice(GuestCore):
    def act(self, e: Any) -> Op:
        if e.event_type == EventType.DEVICE_REMOVED:
            bdf = (e.device.segment, e.device.bus, e.device.devfn)
            gone = [d for d in list(self.claimed) if (d.segment, d.bus, d.devfn) == bdf]
            dropped = sum(self.on_unplug(d) for d in gone)
            return f"DEVICE_REMOVED: {dropped} messages dropped"
        return (yield from super().act(e))


# -- GUEST-EXT-001, GUEST-EXT-002 ------------------------------------------------------------------------------------


@fault("accepts-vendor-bits", "GUEST-EXT-001", "accepts every offered feature bit of the vendor range in NEGOTIATE")
class _AcceptsVendorBits(_Boot):
    def accept(self, offered: int, required: int) -> int:
        return offered & (self.known_features | VENDOR_FEATURES)


@fault(
    "calls-vendor-function",
    "GUEST-EXT-001",
    "after negotiating, calls the second function of the vendor range without PVMSI_FN_VENDOR_ID naming a vendor",
)
class _CallsVendorFunction(GuestCore):
    def boot(self) -> Op:
        mode = yield from super().boot()
        if mode is GuestMode.PVMSI:
            yield from self.call(cast(FunctionNumber, Extension.FN_VENDOR_FIRST + 1))
        return mode


@fault(
    "vendor-event-by-low-bits",
    "GUEST-EXT-002",
    "reads a vendor event type by its low 15 bits, so 0x8002 is REVOKED to it",
)
class _VendorEventByLowBits(GuestCore):
    def act(self, e: Any) -> Op:
        if e.event_type >= Extension.EVENT_VENDOR_FIRST:
            e = type(e)(e)
            e.event_type = e.event_type & 0x7FFF
        return (yield from super().act(e))


@fault("fails-on-vendor-event", "GUEST-EXT-002", "fails the notification on an event type of the vendor range")
class _FailsOnVendorEvent(GuestCore):
    def act(self, e: Any) -> Op:
        if e.event_type >= Extension.EVENT_VENDOR_FIRST:
            raise GuestError("EVENT_FETCH", Status.INVALID_PARAMETER, f"event type {e.event_type:#x}")
        return (yield from super().act(e))


@fault(
    "format-by-low-bits",
    "GUEST-EXT-002",
    "reads a vendor message_format by its low 7 bits, so 0x81 is VT-d's to it and a vITS doorbell outside the window",
    platform="gic-its",
)
class _FormatByLowBits(GuestCore):
    def pair_acceptable(self, address: int) -> bool:
        return pair_acceptable(self.message_format & 0x7F, address)


# -- GUEST-ALLOC-002 on a multi-message MSI block ------------------------------------------------------------------


class _MsiRewrite(GuestCore):
    """The reference rewrite, masking MSI ``mask_slot`` (None: nothing) around a rewrite of an MSI block."""

    def mask_slot(self, m: GuestMessage) -> int | None:
        return 0

    def rewrite(self, m: GuestMessage) -> Op:
        if m.kind is not MsgKind.MSI or not self.writes_pair(m.device, m.kind):
            yield from super().rewrite(m)
            return
        slot = self.mask_slot(m)
        if slot is not None:
            yield MaskSlot(m.device, m.kind, slot, True)
        yield ProgramSlot(m.device, m.kind, m.slot, m.address, m.data, m.count)
        if slot is not None:
            yield MaskSlot(m.device, m.kind, slot, False)


@fault("masks-one-msi-vector", "GUEST-ALLOC-002", "rewrites an MSI block masking its last vector only (slot n - 1)")
class _MasksOneMsiVector(_MsiRewrite):
    def mask_slot(self, m: GuestMessage) -> int | None:
        return m.count - 1


@fault("unmasked-msi-rewrite", "GUEST-ALLOC-002", "rewrites an MSI block without masking any of its vectors")
class _UnmaskedMsiRewrite(_MsiRewrite):
    def mask_slot(self, m: GuestMessage) -> int | None:
        return None
