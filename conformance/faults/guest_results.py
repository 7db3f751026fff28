"""Faulty guests of what a guest under test reports (harness appendix, guest_result; GUEST-STAT-002): each a
subclass of the reference guest core overriding one public step."""

from __future__ import annotations

from collections.abc import Iterable

from ...reference.guest.actions import GuestDevice
from ...reference.guest.core import GuestCore, GuestError, GuestMessage, GuestMode, Op, Target
from ...spec.constants import MsgKind, Status
from .guests import fault


@fault(
    "fallback-reports-error",
    "GUEST-STAT-002",
    "falls back to emulation correctly, but reports the BOOT as failed (NOT_SUPPORTED) instead of SUCCESS",
)
class _FallbackReportsError(GuestCore):
    def fallback(self, why: str) -> GuestMode:
        mode = super().fallback(why)
        raise GuestError("BOOT", int(Status.NOT_SUPPORTED), f"fell back to {mode.value}")


@fault("done-in-messages", "GUEST-STAT-002", "reports done in messages, an MSI block of n vectors counting 1")
class _DoneInMessages(GuestCore):
    def vectors_of(self, msgs: Iterable[GuestMessage]) -> int:
        return len(list(msgs))


@fault(
    "flattens-statuses",
    "GUEST-STAT-002",
    "reports every failed DEVICE_CLAIM as INVALID_PARAMETER, whatever status the call returned",
)
class _FlattensStatuses(GuestCore):
    def claim(self, dev: GuestDevice, kinds: int | None = None) -> Op:
        try:
            return (yield from super().claim(dev, kinds))
        except GuestError as e:
            raise GuestError(e.call, int(Status.INVALID_PARAMETER), "claim failed") from e


@fault(
    "emulated-remappable-pair",
    "GUEST-EMU-002",
    "on the emulated path composes an x86 remappable-format pair (handle = slot, SHV set) as if its interrupt "
    "remapping were on, instead of the compatibility format its emulated MSI needs",
)
class _EmulatedRemappablePair(GuestCore):
    def emulated_message(self, dev: GuestDevice, kind: MsgKind, t: Target) -> GuestMessage:
        m = super().emulated_message(dev, kind, t)
        m.address, m.data = 0xFEE00000 | (t.slot << 5) | 0x18, 0  # bit 4: remappable format, bit 3: SHV
        return m


@fault(
    "trusts-failed-batch-value",
    "GUEST-CONV-001",
    "after a batch call fails, takes the entries below the value register as completed even when batch_out was "
    "never written (a failure in the header checks)",
)
class _TrustsFailedBatchValue(GuestCore):
    def batch_out_written(self, status: int, value: int, start: int, header: bytes) -> bool:
        return True


@fault(
    "frees-any-revoked",
    "GUEST-ALLOC-004",
    "on REVOKED frees the handle the event names even when it no longer holds it (freed meanwhile)",
)
class _FreesAnyRevoked(GuestCore):
    def revoked(self, dev: GuestDevice, handle: int) -> Op:
        if (yield from super().revoked(dev, handle)):
            return True
        ghost = GuestMessage(dev, MsgKind.MSIX, 0, 1, 0, 0, 0, 0, handle)
        yield from self.free(dev, [ghost])
        return True
