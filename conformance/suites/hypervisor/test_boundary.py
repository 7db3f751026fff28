"""The emulation boundary (spec "Device control", "The emulation boundary"): configuration space stays trapped on
both paths, the MSI-X table and PBA are the guest's after a claim, and a claimed MSI capability is written by the
hypervisor itself (the explicit model)."""

from __future__ import annotations

from typing import Any

import pytest

from pvmsi.conformance.toolkit import MLX5, MSI_DEV, Session, check
from pvmsi.conformance.toolkit_devices import MSI_CAP, MSIX_CAP, MSIX_ENABLE
from pvmsi.spec import harness_devices as hd
from pvmsi.spec.constants import KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import FireOutcome, LifecycleEvent

requirement = pytest.mark.requirement
option = pytest.mark.option

#: Message Control of the MSI capability: MSI Enable (bit 0); the rest of the register is the hypervisor's.
MSI_ENABLE = 1


def _delivers(session: Session, index: int, vcpu: int, vector: int, rid: str, what: str) -> None:
    session.iut.collect(session.vm)
    fired = session.fire(MSI_DEV, MsgKind.MSI, index)
    got = (fired.outcome.name, fired.vcpu, fired.vector)
    check(
        (fired.outcome, fired.vcpu, fired.vector) == (FireOutcome.DELIVERED, vcpu, vector),
        rid,
        f"{what}: DELIVERED to vCPU {vcpu} vector {vector:#x}",
        f"{got[0]} vCPU {got[1]} vector {got[2]:#x}",
    )
    session.iut.collect(session.vm)


def _msi_claimed(session: Session, *, vcpu: int = 2, vector: int = 0x50, count: int = 1) -> Any:
    session.negotiated()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    return session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=vcpu, vector=vector, count=count)[0]


@requirement("HV-EMU-001")
def test_configuration_space_traps_on_both_paths(session: Session) -> None:
    """Message Control of the MSI-X capability exits before and after a claim; the MSI-X table exits only before."""
    session.negotiated()
    check(
        session.config_write(MLX5, MSIX_CAP + hd.MSIX_CONTROL, 2, 0),
        "HV-EMU-001",
        "Message Control exits emulated",
        "no exit",
    )
    session.claimed(MLX5, int(KindMask.MSIX))
    r = session.allocated(MLX5, MsgKind.MSIX, [3])[0]
    table = session.program(MLX5, MsgKind.MSIX, 3, r.address, r.data)
    check(table == 0, "HV-DEV-009", "MSI-X table writes do not exit once claimed", f"{table} exits")
    check(
        session.config_write(MLX5, MSIX_CAP + hd.MSIX_CONTROL, 2, MSIX_ENABLE),
        "HV-EMU-001",
        "MSI-X Message Control exits once claimed",
        "no exit",
    )


@requirement("HV-EMU-001")
@option("msi")
def test_msi_capability_traps_when_claimed(session: Session) -> None:
    """Every write to a claimed MSI capability exits, and the exit is counted as an MSI exit."""
    _msi_claimed(session)
    before = session.iut.counters(session.vm).msi_exits
    exited = session.enable(MSI_DEV, MsgKind.MSI)
    check(exited == 1, "HV-EMU-001", "MSI Enable write exits once claimed", f"{exited} exits")
    after = session.iut.counters(session.vm).msi_exits
    check(after == before + 1, "HV-EMU-001", "msi_exits grew by 1", f"{before} -> {after}")


@requirement("HV-EMU-002")
@option("msi")
def test_alloc_writes_the_msi_capability(session: Session) -> None:
    """After MSG_ALLOC the guest sets only MSI Enable, and every vector of the block delivers where it asked."""
    r = _msi_claimed(session, vcpu=3, vector=0x70, count=4)
    check(r.data & 3 == 0, "HV-ALLOC-008", "data's low 2 bits zero", hex(r.data))
    session.enable(MSI_DEV, MsgKind.MSI, vectors=4)
    for i in range(4):
        _delivers(session, i, 3, 0x70 + i, "HV-EMU-002", f"MSI vector {i}")


@requirement("HV-EMU-003")
@option("msi")
def test_retarget_keeps_the_msi_capability_right(session: Session) -> None:
    """After MSG_ACTIVATE the MSI capability holds the pair in force: the message delivers to its new target with
    no write of the guest's."""
    r = _msi_claimed(session, vcpu=0, vector=0x48)
    session.enable(MSI_DEV, MsgKind.MSI)
    _delivers(session, 0, 0, 0x48, "HV-EMU-002", "before the retarget")
    b = session.retarget(MSI_DEV, [{"handle": r.handle, "vcpu": 1, "vector": 0x66, "flags": 0}])
    check(b.status == Status.SUCCESS, "HV-RETGT-002", "SUCCESS", str(b.status))
    _delivers(session, 0, 1, 0x66, "HV-EMU-003", "after the retarget")


@requirement("HV-EMU-004")
@option("msi")
def test_free_clears_the_msi_capability(session: Session) -> None:
    """After MSG_FREE the device's MSI is off: a fire is not emitted at all (not even to be blocked)."""
    r = _msi_claimed(session)
    session.enable(MSI_DEV, MsgKind.MSI)
    _delivers(session, 0, 2, 0x50, "HV-EMU-002", "before the free")
    blocked = session.iut.counters(session.vm).blocked
    b = session.free(MSI_DEV, [r.handle])
    check(b.status == Status.SUCCESS, "HV-FREE-002", "SUCCESS", str(b.status))
    fired = session.fire(MSI_DEV, MsgKind.MSI, 0)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-EMU-004",
        "MSI disabled: PENDING (harness: fire outcomes)",
        fired.outcome.name,
    )
    after = session.iut.counters(session.vm).blocked
    check(after == blocked, "HV-EMU-004", "nothing blocked: no write left the device", f"{after - blocked} blocked")


@requirement("HV-EMU-004")
@option("msi")
def test_release_clears_the_msi_capability(session: Session) -> None:
    """DEVICE_RELEASE frees the MSI message and clears the capability too."""
    _msi_claimed(session)
    session.enable(MSI_DEV, MsgKind.MSI)
    out = session.release(MSI_DEV)
    check(out.status == Status.SUCCESS and out.value == 1, "HV-DEV-011", "SUCCESS, 1 vector", str(out.status))
    fired = session.fire(MSI_DEV, MsgKind.MSI, 0)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-EMU-004",
        "MSI disabled: PENDING (harness: fire outcomes)",
        fired.outcome.name,
    )


@requirement("HV-EMU-005")
@option("msi")
def test_guest_msi_pair_writes_are_ignored(session: Session) -> None:
    """A guest that writes its own address/data and Multiple Message Enable into a claimed MSI capability changes
    nothing: the hypervisor's pair still delivers; the guest's mask bits and MSI Enable do reach the device."""
    _msi_claimed(session, vcpu=1, vector=0x58)
    exits = session.program(MSI_DEV, MsgKind.MSI, 0, 0xFEE00000, 0x31, vectors=2)
    check(exits == 4, "HV-EMU-001", "4 trapped writes", f"{exits} exits")
    session.enable(MSI_DEV, MsgKind.MSI)
    _delivers(session, 0, 1, 0x58, "HV-EMU-005", "the guest's own pair ignored")
    session.config_write(MSI_DEV, MSI_CAP + hd.MSI_MASK, 4, 1)  # mask vector 0
    fired = session.fire(MSI_DEV, MsgKind.MSI, 0)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-EMU-005",
        "masked vector 0: PENDING (harness: fire outcomes)",
        fired.outcome.name,
    )
    session.config_write(MSI_DEV, MSI_CAP + hd.MSI_MASK, 4, 0)
    session.iut.collect(session.vm)
    session.config_write(MSI_DEV, MSI_CAP + hd.MSI_CONTROL, 2, 0)  # MSI Enable off
    fired = session.fire(MSI_DEV, MsgKind.MSI, 0)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-EMU-005",
        "MSI Enable cleared: PENDING (harness: fire outcomes)",
        fired.outcome.name,
    )


@requirement("HV-EMU-006")
def test_msix_message_control_applied(session: Session) -> None:
    """Claimed MSI-X: the guest's Function Mask and Enable in Message Control reach the device."""
    session.ready()
    r = session.allocated(MLX5, MsgKind.MSIX, [2], vcpu=3, vector=0x77)[0]
    session.program(MLX5, MsgKind.MSIX, 2, r.address, r.data)
    function_mask = 1 << 14
    session.config_write(MLX5, MSIX_CAP + hd.MSIX_CONTROL, 2, MSIX_ENABLE | function_mask)
    fired = session.fire(MLX5, MsgKind.MSIX, 2)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-EMU-006",
        "function-masked: PENDING (harness: fire outcomes)",
        fired.outcome.name,
    )
    session.config_write(MLX5, MSIX_CAP + hd.MSIX_CONTROL, 2, MSIX_ENABLE)
    got = session.collect(session.vm)
    check((3, 0x77) in got, "HV-EMU-006", "the pending message delivered on unmask", str(got))
    fired = session.fire(MLX5, MsgKind.MSIX, 2)
    check(fired.outcome == FireOutcome.DELIVERED, "HV-EMU-006", "enabled: DELIVERED", fired.outcome.name)


@requirement("HV-EMU-007")
@option("msi")
def test_flr_restores_the_msi_capability(session: Session) -> None:
    """After an FLR the guest only sets MSI Enable again: the hypervisor has written the pair back."""
    _msi_claimed(session, vcpu=2, vector=0x90, count=2)
    session.enable(MSI_DEV, MsgKind.MSI, vectors=2)
    _delivers(session, 1, 2, 0x91, "HV-EMU-002", "before the FLR")
    session.iut.lifecycle(session.vm, LifecycleEvent.FLR, MSI_DEV)
    fired = session.fire(MSI_DEV, MsgKind.MSI, 0)
    check(
        fired.outcome == FireOutcome.PENDING,
        "HV-EMU-007",
        "MSI Enable clear after the FLR: PENDING (harness: fire outcomes)",
        fired.outcome.name,
    )
    session.enable(MSI_DEV, MsgKind.MSI, vectors=2)
    _delivers(session, 1, 2, 0x91, "HV-EMU-007", "after the FLR")
