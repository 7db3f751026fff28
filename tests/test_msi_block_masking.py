"""The harness's MSI block as the guest suite's model serves it (harness appendix, device model; GUEST_DEVICE_OP):
MASK of MSI slot 0 holds back every vector of the block, UNMASK delivers each held one exactly once; MASK of slot
n > 0 holds vector n alone.  On a block claimed for pvmsi and on an emulated one."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest import ReferenceGuest
from pvmsi.conformance.guest_host import HostModel
from pvmsi.conformance.guest_host_knobs import HostKnobs
from pvmsi.conformance.toolkit import MSI_DEV
from pvmsi.spec.constants import MsgKind
from pvmsi.spec.harness_constants import DeviceOp, FireOutcome, GuestOp
from pvmsi.spec.iut import GuestCommand

VCPU, VECTOR = 1, 0x40


def _enabled_block(present: bool, vectors: int) -> HostModel:
    model = HostModel(HostKnobs(present=present))
    guest = ReferenceGuest()
    guest.command(GuestCommand(GuestOp.BOOT, scratch_gpa=0x10000), model)
    r = guest.command(GuestCommand(GuestOp.ENABLE, MSI_DEV, int(MsgKind.MSI), vectors, VCPU, VECTOR), model)
    assert (r.status, r.done) == (0, vectors)
    assert model.violations == []
    return model


def _mask(model: HostModel, slot: int, masked: bool) -> None:
    op = DeviceOp.MASK if masked else DeviceOp.UNMASK
    model.device_op(op, MSI_DEV, int(MsgKind.MSI), slot, 0, 0, 0)


@pytest.mark.parametrize("present", [True, False], ids=["claimed", "emulated"])
@pytest.mark.parametrize("vectors", [2, 4])
def test_mask_of_slot_0_holds_every_vector_and_unmask_delivers_each_once(present: bool, vectors: int) -> None:
    model = _enabled_block(present, vectors)
    model.hv.collect(model.vm_id)
    _mask(model, 0, True)
    for i in range(vectors):
        assert model.hv.fire(model.vm_id, MSI_DEV, MsgKind.MSI, i).outcome is FireOutcome.PENDING
        assert model.hv.fire(model.vm_id, MSI_DEV, MsgKind.MSI, i).outcome is FireOutcome.PENDING  # one bit a vector
    assert model.hv.collect(model.vm_id) == []
    _mask(model, 0, False)
    got = model.hv.collect(model.vm_id)
    assert sorted(got) == [(VCPU, VECTOR + i) for i in range(vectors)]  # each held vector once
    assert model.hv.collect(model.vm_id) == []
    for i in range(vectors):
        assert model.delivered(MSI_DEV, MsgKind.MSI, i, VCPU, VECTOR + i) is None


@pytest.mark.parametrize("present", [True, False], ids=["claimed", "emulated"])
def test_mask_of_slot_n_holds_vector_n_alone(present: bool) -> None:
    model = _enabled_block(present, 4)
    model.hv.collect(model.vm_id)
    _mask(model, 2, True)
    outcomes = [model.hv.fire(model.vm_id, MSI_DEV, MsgKind.MSI, i).outcome for i in range(4)]
    assert outcomes == [FireOutcome.DELIVERED, FireOutcome.DELIVERED, FireOutcome.PENDING, FireOutcome.DELIVERED]
    assert sorted(model.hv.collect(model.vm_id)) == [(VCPU, VECTOR + i) for i in (0, 1, 3)]
    _mask(model, 2, False)
    assert model.hv.collect(model.vm_id) == [(VCPU, VECTOR + 2)]
