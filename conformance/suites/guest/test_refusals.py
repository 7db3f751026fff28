"""A guest refuses what it did not ask for (spec "Version and feature negotiation", "Batching and partial
completion", "Events"): features granted beyond those asked, a batch answer beyond the batch it sent, an event
for a device or handle it does not hold (GUEST-REFUSE-001..003)."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_refusals import Overreach, asked_features, queue_event
from pvmsi.conformance.guest_skips import changes_nothing, workout_with_events
from pvmsi.conformance.guest_toolkit import IDXD, IDXD_SUB, MLX5, MSI_DEV, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.constants import EventType, Feature, FunctionNumber, MsgKind, Status
from pvmsi.spec.iut import DeviceRef, GuestMode
from pvmsi.spec.kinds import kind_bit

requirement = pytest.mark.requirement

#: (withheld by GET_INFO, granted by NEGOTIATE beyond the request): a kind, SUBDEVICE, the bit just above the
#: highest one a 1.0 guest asks for, a vendor bit.
GRANTS = {
    "IMS": (Feature.IMS, Feature.IMS),
    "MSI": (Feature.MSI, Feature.MSI),
    "SUBDEVICE": (Feature.SUBDEVICE, Feature.SUBDEVICE),
    "one-past": (0, 1 << 5),
    "vendor-48": (0, 1 << 48),
}


@requirement("GUEST-REFUSE-001")
@pytest.mark.parametrize("grant", list(GRANTS))
def test_uses_only_the_features_it_asked_for(guest: GuestSession, grant: str) -> None:
    """NEGOTIATE's value grants a bit the guest did not ask for: the guest claims no kind, names no sub-device
    behind it; MSI-X, which it asked for, works."""
    withheld, extra = GRANTS[grant]
    guest.host(withheld=int(withheld), overreach=Overreach(granted_extra=int(extra)))
    guest.ok(guest.boot(), "GUEST-REFUSE-001", "BOOT")
    asked = asked_features(guest.hv)
    check(asked is not None and not asked & extra, "GUEST-REFUSE-001", f"{extra:#x} not asked", hex(asked or 0))
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 2, vcpu=1, vector=0x40), "GUEST-REFUSE-001", "ENABLE MSI-X")
    if extra == Feature.MSI:  # a block of a kind not negotiated stays emulated: no DEVICE_CLAIM of MSI
        guest.enable(MSI_DEV, MsgKind.MSI, 2, vcpu=3, vector=0x80)
    if extra == Feature.SUBDEVICE:
        r = guest.enable(IDXD_SUB, MsgKind.IMS, 2, vcpu=2, vector=0x60)
        check(r.status < 0, "GUEST-REFUSE-001", "ENABLE on a sub-device fails", str(r.status))
    guest.clean("GUEST-REFUSE-001")
    for c in guest.calls(FunctionNumber.DEVICE_CLAIM):
        kinds = int(c.decoded.kinds)
        beyond = [k.name for k in MsgKind if kinds & kind_bit(k) and not int(asked or 0) & kind_bit(k)]
        check(not beyond, "GUEST-REFUSE-001", "DEVICE_CLAIM names only kinds asked for", "+".join(beyond))
    guest.delivers(MLX5, MsgKind.MSIX, 2, "GUEST-REFUSE-001", vcpu=1, vector=0x40)


#: (the batch call that overreaches, next_index - count, the status it reports: None the real one).
ANSWERS = {
    "alloc-one-past": (FunctionNumber.MSG_ALLOC, 1, None),
    "alloc-seven-past": (FunctionNumber.MSG_ALLOC, 7, None),
    "alloc-one-short": (FunctionNumber.MSG_ALLOC, -1, None),
    "alloc-incomplete-at-count": (FunctionNumber.MSG_ALLOC, 0, Status.INCOMPLETE),
    "alloc-incomplete-no-progress": (FunctionNumber.MSG_ALLOC, -4, Status.INCOMPLETE),
    "activate-one-past": (FunctionNumber.MSG_ACTIVATE, 1, None),
    "activate-incomplete-one-past": (FunctionNumber.MSG_ACTIVATE, 1, Status.INCOMPLETE),
}


@requirement("GUEST-REFUSE-002")
@pytest.mark.parametrize("answer", list(ANSWERS))
def test_refuses_a_batch_answer_beyond_its_batch(guest: GuestSession, answer: str) -> None:
    """MSG_ALLOC or MSG_ACTIVATE answers with a next_index the batch cannot have (one past count, seven past, one
    short on SUCCESS, INCOMPLETE at or past count or without progress): the guest uses no handle and no pair of
    it, does not resume it, and ENABLE fails with INVALID_PARAMETER; after a refused MSG_ACTIVATE the reserved
    messages are freed."""
    fn, delta, status = ANSWERS[answer]
    guest.host(overreach=Overreach(batch_fn=int(fn), next_index_delta=delta, batch_status=status))
    guest.ok(guest.boot(), "GUEST-REFUSE-002", "BOOT")
    r = guest.enable(MLX5, MsgKind.MSIX, 4, vcpu=1, vector=0x40)
    guest.clean("GUEST-REFUSE-002")
    check(r.status == Status.INVALID_PARAMETER, "GUEST-REFUSE-002", "ENABLE -> INVALID_PARAMETER", str(r.status))
    calls = guest.calls(fn)
    check(len(calls) == 1, "GUEST-REFUSE-002", f"one {fn.name}, not resumed", str(len(calls)))
    programs = [op for op in guest.hv.device_ops() if op.command.startswith("ENABLE") and op.op.name == "PROGRAM"]
    check(not programs, "GUEST-REFUSE-002", "no pair written", str(len(programs)))
    if fn == FunctionNumber.MSG_ACTIVATE:
        left = [m for m in guest.hv.live().values() if m.kind is MsgKind.MSIX]
        check(not left, "GUEST-REFUSE-002", "the reserved messages freed (GUEST-BATCH-002)", str(len(left)))


@requirement("GUEST-REFUSE-002")
@pytest.mark.parametrize("lie", ["zero", "repeat", "held"])
def test_refuses_an_allocation_naming_a_handle_it_did_not_get(guest: GuestSession, lie: str) -> None:
    """Once the guest holds MSI-X messages, MSG_ALLOC's first result names handle zero, the second repeats the
    first's handle, or the first names a handle the guest already holds: ENABLE of IMS fails with
    INVALID_PARAMETER, no handle of that answer is named again and no IMS slot is written; the MSI-X messages keep
    delivering and are freed once each."""
    guest.host(overreach=Overreach(alloc_handle=lie))
    guest.ok(guest.boot(), "GUEST-REFUSE-002", "BOOT")
    guest.ok(guest.enable(MLX5, MsgKind.MSIX, 2, vcpu=1, vector=0x40), "GUEST-REFUSE-002", "ENABLE MSI-X")
    held = set(guest.hv.live())
    r = guest.enable(MLX5, MsgKind.IMS, 3, vcpu=2, vector=0x60, first_slot=4)
    guest.clean("GUEST-REFUSE-002", "GUEST-ALLOC-004")
    check(r.status == Status.INVALID_PARAMETER, "GUEST-REFUSE-002", "ENABLE -> INVALID_PARAMETER", str(r.status))
    ims = [op for op in guest.hv.device_ops() if op.kind == MsgKind.IMS and op.op.name == "PROGRAM"]
    check(not ims, "GUEST-REFUSE-002", "no IMS slot written", str(len(ims)))
    guest.delivers(MLX5, MsgKind.MSIX, 2, "GUEST-REFUSE-002", vcpu=1, vector=0x40)
    guest.ok(guest.disable(MLX5, MsgKind.MSIX), "GUEST-REFUSE-002", "DISABLE MSI-X")
    guest.clean("GUEST-REFUSE-002", "GUEST-ALLOC-004")
    freed = [int(e.handle) for c in guest.calls(FunctionNumber.MSG_FREE) for e in c.entries]
    check(sorted(freed) == sorted(held), "GUEST-REFUSE-002", f"MSI-X handles {sorted(held)} freed once", str(freed))


#: An event for a device or handle the guest does not hold: (type, device, which handle).
UNKNOWN = {
    "revoked-never-allocated": (EventType.REVOKED, MLX5, "never"),
    "revoked-one-past": (EventType.REVOKED, MLX5, "one-past"),
    "revoked-on-another-device": (EventType.REVOKED, MSI_DEV, "mlx5"),
    "removed-unclaimed-function": (EventType.DEVICE_REMOVED, DeviceRef(0, 0, MLX5.devfn + 1), ""),
    "removed-other-subdevice": (EventType.DEVICE_REMOVED, IDXD.with_pasid(2), ""),
}


@requirement("GUEST-REFUSE-003", "GUEST-EVT-001")
@pytest.mark.parametrize("event", list(UNKNOWN))
def test_ignores_an_event_for_what_it_does_not_hold(guest: GuestSession, event: str) -> None:
    """REVOKED of a handle never allocated, one past the largest held, or held on another device than the event
    names; DEVICE_REMOVED of a function or sub-device not claimed: the guest acknowledges and changes nothing."""
    held = workout_with_events(guest)
    event_type, dev, which = UNKNOWN[event]
    mlx5 = min(h for h, (d, k, _) in held.items() if k == MsgKind.MSIX)
    handle = {"never": 0x7EAD_0000_0000_0001, "one-past": max(held) + 1, "mlx5": mlx5, "": 0}[which]
    queue_event(guest.hv, int(event_type), dev, handle)
    check(guest.results[-1].mode is GuestMode.PVMSI, "GUEST-REFUSE-003", "the guest uses pvmsi", "")
    changes_nothing(guest, "GUEST-REFUSE-003", held)
    guest.clean("GUEST-REFUSE-003", "GUEST-EVT-001", "GUEST-ALLOC-004")
