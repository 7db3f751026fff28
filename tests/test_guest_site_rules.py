"""Guests the site allows, other than the reference's path, pass the guest-suite tests of those rules: a guest
that activates in MSG_ALLOC (PVMSI_ALLOC_ACTIVATE) never issues MSG_ACTIVATE in an ENABLE; a guest that sends no
DISABLE of IMS (a no-op) but masks its IMS slots before DEVICE_RELEASE (GUEST-DEV-003); and one that leaves them
unmasked is caught."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import pytest

from pvmsi.conformance.guest import ReferenceGuest
from pvmsi.conformance.guest_toolkit import GuestSession
from pvmsi.conformance.suites.guest import test_batch, test_device
from pvmsi.conformance.toolkit import RequirementFailure
from pvmsi.reference.guest.actions import GuestDevice, MaskSlot, SetEnabled
from pvmsi.reference.guest.core import GuestCore, GuestError, GuestMessage, Op, Target
from pvmsi.spec.constants import AllocFlag, FunctionNumber, MsgKind, Status
from pvmsi.spec.formats import ALLOC_ENTRY, ALLOC_RESULT


def _without_ims_enables(op: Generator[Any, Any, Any]) -> Op:
    """``op`` without its ENABLE and DISABLE of IMS (no-ops for IMS, harness DeviceOp)."""
    answer: Any = None
    try:
        while True:
            action = op.send(answer)
            if isinstance(action, SetEnabled) and action.kind is MsgKind.IMS:
                answer = None
                continue
            answer = yield action
    except StopIteration as stop:
        return stop.value


class NoImsEnableGuest(GuestCore):
    """Never sends ENABLE or DISABLE for IMS; its IMS slots' masks alone govern them."""

    def enable(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        return (yield from _without_ims_enables(super().enable(dev, kind, targets)))

    def disable(self, dev: GuestDevice, kind: MsgKind) -> Op:
        return (yield from _without_ims_enables(super().disable(dev, kind)))


class OneStepGuest(GuestCore):
    """Reserves and activates in one MSG_ALLOC (PVMSI_ALLOC_ACTIVATE), so an ENABLE makes no MSG_ACTIVATE."""

    def domain_alloc(self, dev: GuestDevice, kind: MsgKind, targets: Sequence[Target]) -> Op:
        entries = [
            {
                "kind": kind,
                "flags": 0,
                "vector_count": t.count,
                "slot": t.slot,
                "vcpu": t.vcpu,
                "vector": t.vector,
                "alloc_flags": int(AllocFlag.ACTIVATE),
                "hint_vcpu": 0,
            }
            for t in targets
        ]
        results, status = yield from self.batch(FunctionNumber.MSG_ALLOC, dev, ALLOC_ENTRY, ALLOC_RESULT, entries)
        msgs = [
            GuestMessage(dev, kind, t.slot, t.count, t.vcpu, t.vector, r.address, r.data, r.handle)
            for t, r in zip(targets, results, strict=False)
        ]
        if status != Status.SUCCESS:
            yield from self.free(dev, msgs)
            raise GuestError("MSG_ALLOC", status, f"entry {len(results)}")
        if any(not self.pair_acceptable(m.address) for m in msgs):  # GUEST-CVM-002, as domain_activate does
            yield from self.free(dev, msgs)
            raise GuestError("MSG_ALLOC", Status.INVALID_ADDRESS, "pair outside the interrupt window")
        return msgs

    def domain_activate(self, dev: GuestDevice, msgs: Sequence[GuestMessage]) -> Op:
        yield from ()
        return msgs


class ImsUnmaskedAtRelease(GuestCore):
    """Frees its IMS messages before DEVICE_RELEASE but never masks their slots."""

    def disable(self, dev: GuestDevice, kind: MsgKind) -> Op:
        op = super().disable(dev, kind)
        answer: Any = None
        try:
            while True:
                action = op.send(answer)
                if isinstance(action, MaskSlot) and action.kind is MsgKind.IMS and action.masked:
                    answer = None
                    continue
                answer = yield action
        except StopIteration as stop:
            return stop.value


def _session(core: Callable[..., GuestCore]) -> GuestSession:
    return GuestSession(ReferenceGuest(lambda scratch: core(scratch_gpa=scratch)))


@pytest.mark.parametrize("core", [GuestCore, NoImsEnableGuest], ids=["reference", "no-ims-enable"])
def test_ims_quieted_by_masks_passes_the_release_rule(core: Callable[..., GuestCore]) -> None:
    guest = _session(core)
    test_device.test_disables_and_frees_before_releasing(guest)
    if core is NoImsEnableGuest:
        ims = [op for op in guest.hv.device_ops() if op.kind == MsgKind.IMS and op.op.name in ("ENABLE", "DISABLE")]
        assert not ims


def test_ims_left_unmasked_at_release_is_caught() -> None:
    with pytest.raises(RequirementFailure, match="GUEST-DEV-003"):
        test_device.test_disables_and_frees_before_releasing(_session(ImsUnmaskedAtRelease))


@pytest.mark.parametrize(
    ("fn", "status"),
    [(FunctionNumber.MSG_ALLOC, Status.INVALID_PARAMETER), (FunctionNumber.MSG_ACTIVATE, Status.WRONG_STATE)],
    ids=["alloc", "activate"],
)
@pytest.mark.parametrize("core", [GuestCore, OneStepGuest], ids=["two-step", "one-step"])
def test_poisoned_batch_reaches_every_enable_path(
    core: Callable[..., GuestCore], fn: FunctionNumber, status: int
) -> None:
    """The poisoned call is made, and the test passes, whether the guest activates in MSG_ALLOC or after it."""
    guest = _session(core)
    test_batch.test_a_batch_failing_before_any_entry_completed_nothing(guest, fn, status)
    assert guest.calls(fn, guest.hv.command)
