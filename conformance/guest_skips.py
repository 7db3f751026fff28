"""Checks that the guest under test skipped events it must not act on (an unknown device or handle, GUEST-REFUSE-003;
a vendor event type, GUEST-EXT-002): a workout holding messages of every kind, then a notification after which
nothing the guest holds has changed."""

from __future__ import annotations

from ..spec.constants import FunctionNumber, MsgKind
from .guest_toolkit import IDXD_SUB, MLX5, MSI_DEV, GuestSession
from .toolkit import check

#: The live messages: handle -> (device, kind, slot).
Held = dict[int, tuple[tuple[int, int, int, int | None], int, int]]


def workout_with_events(guest: GuestSession) -> Held:
    """Boot, register for events, enable MSI-X, a sub-device's IMS and an MSI block; the live messages."""
    guest.boot()
    guest.ok(guest.events(vcpu=0, vector=0xE0), "GUEST-EVT-001", "EVENTS")
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40), "GUEST-EVT-001", "ENABLE MSI-X")
    guest.ok(guest.enable(IDXD_SUB, MsgKind.IMS, 2, vcpu=2, vector=0x60), "GUEST-EVT-001", "ENABLE IMS")
    guest.ok(guest.enable(MSI_DEV, MsgKind.MSI, 2, vcpu=3, vector=0x80), "GUEST-EVT-001", "ENABLE MSI")
    return {h: (m.device, int(m.kind), m.slot) for h, m in guest.hv.live().items()}


def changes_nothing(guest: GuestSession, rid: str, held: Held) -> None:
    """After a NOTIFY whose events the guest must skip: every event acknowledged, no message freed, deactivated,
    re-activated or masked, every vector still delivering; and every message still the guest's (DISABLE and
    RELEASE free every one)."""
    r = guest.notify()
    guest.ok(r, rid, "NOTIFY")
    left = len(guest.hv.core.state_of(guest.hv.svm).events.pending)
    check(left == 0, rid, "every event acknowledged", f"{left} pending")
    acted = [c for c in guest.calls(command=guest.hv.command) if c.fn >= FunctionNumber.DEVICE_QUERY]
    acted = [c for c in acted if c.fn not in (FunctionNumber.EVENT_FETCH, FunctionNumber.EVENT_ACK)]
    check(not acted, rid, "no device or message call", ", ".join(FunctionNumber(c.fn).name for c in acted))
    touched = [op for op in guest.hv.device_ops() if op.command == guest.hv.command]
    check(not touched, rid, "no device access", ", ".join(f"{op.op.name} {op.slot}" for op in touched))
    check(set(guest.hv.live()) == set(held), rid, "every message still live", str(sorted(guest.hv.live())))
    guest.delivers(MLX5, MsgKind.MSIX, 4, rid, vcpu=1, vector=0x40)
    guest.delivers(IDXD_SUB, MsgKind.IMS, 2, rid, vcpu=2, vector=0x60)
    guest.delivers(MSI_DEV, MsgKind.MSI, 2, rid, vcpu=3, vector=0x80)
    for dev in (MLX5, IDXD_SUB, MSI_DEV):
        guest.release(dev)
    check(not guest.hv.live(), rid, "RELEASE freed every message first", str(sorted(guest.hv.live())))
    frees = {int(e.handle) for c in guest.calls(FunctionNumber.MSG_FREE) for e in c.entries}
    check(frees >= set(held), rid, "the guest freed each of its handles", str(sorted(set(held) - frees)))
