"""The guest suite's hypervisor model on what a guest names without having negotiated it (GUEST-NEG-006), on
events queued while the guest handles others, and on events of types 1.0 does not define."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pvmsi.conformance.faults import faulty_core
from pvmsi.conformance.guest import ReferenceGuest
from pvmsi.conformance.guest_features import unnegotiated_uses
from pvmsi.conformance.guest_host import HostModel
from pvmsi.conformance.guest_host_knobs import HostKnobs
from pvmsi.conformance.toolkit import MLX5
from pvmsi.spec.constants import Feature, FunctionNumber, KindMask, MsgKind
from pvmsi.spec.harness_constants import GuestOp
from pvmsi.spec.iut import GuestCommand

ALL = int(Feature.MSI | Feature.MSIX | Feature.IMS | Feature.SUBDEVICE | Feature.POSTED)


def _entry(**fields: int) -> SimpleNamespace:
    return SimpleNamespace(**fields)


def test_nothing_is_reported_when_every_feature_is_in_force() -> None:
    claim = SimpleNamespace(kinds=int(KindMask.MSI | KindMask.MSIX | KindMask.IMS))
    assert unnegotiated_uses(FunctionNumber.DEVICE_CLAIM, claim, [], 3, ALL) == []
    entries = [_entry(kind=int(k), flags=1) for k in MsgKind]
    assert unnegotiated_uses(FunctionNumber.MSG_ALLOC, None, entries, None, ALL) == []


@pytest.mark.parametrize(
    ("fn", "decoded", "entries", "pasid", "missing", "said"),
    [
        (FunctionNumber.DEVICE_CLAIM, SimpleNamespace(kinds=int(KindMask.IMS)), [], None, Feature.IMS, "IMS"),
        (FunctionNumber.MSG_ALLOC, None, [_entry(kind=int(MsgKind.MSI), flags=0)], None, Feature.MSI, "MSI"),
        (FunctionNumber.MSG_ACTIVATE, None, [_entry(flags=1)], None, Feature.POSTED, "POSTED"),
        (FunctionNumber.MSG_ALLOC, None, [_entry(kind=int(MsgKind.MSIX), flags=1)], None, Feature.POSTED, "POSTED"),
        (FunctionNumber.DEVICE_QUERY, None, [], 2, Feature.SUBDEVICE, "sub-device 2"),
    ],
    ids=["claim", "alloc-kind", "activate-posted", "alloc-posted", "subdevice"],
)
def test_each_use_of_a_feature_not_in_force_is_reported(
    fn: FunctionNumber, decoded: object, entries: list[SimpleNamespace], pasid: int | None, missing: Feature, said: str
) -> None:
    found = unnegotiated_uses(fn, decoded, entries, pasid, ALL & ~int(missing))
    assert len(found) == 1, found
    assert said in found[0], found


def _boot(model: HostModel, guest: ReferenceGuest) -> None:
    guest.command(GuestCommand(GuestOp.BOOT, scratch_gpa=0x10000), model)


def test_the_model_flags_a_claim_of_a_kind_not_negotiated_and_not_the_reference() -> None:
    knobs = HostKnobs(withheld=int(Feature.IMS))
    reference, faulty = HostModel(knobs), HostModel(knobs)
    for model, guest in (
        (reference, ReferenceGuest()),
        (faulty, ReferenceGuest(faulty_core("claims-every-device-kind"))),
    ):
        _boot(model, guest)
        guest.command(GuestCommand(GuestOp.ENABLE, MLX5, int(MsgKind.MSIX), 2, 1, 0x40), model)
    assert reference.violations == []
    assert [v.rid for v in faulty.violations] == ["GUEST-NEG-006"]


def test_an_action_runs_once_after_the_next_fetch() -> None:
    model, guest = HostModel(), ReferenceGuest()
    _boot(model, guest)
    guest.command(GuestCommand(GuestOp.ENABLE, MLX5, int(MsgKind.MSIX), 2, 1, 0x40), model)
    ran: list[int] = []
    model.while_handling.append(lambda: ran.append(len(model.calls(FunctionNumber.EVENT_FETCH))))
    guest.command(GuestCommand(GuestOp.NOTIFY), model)
    assert ran == [1]
    assert model.while_handling == []
