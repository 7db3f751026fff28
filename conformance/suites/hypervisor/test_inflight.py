"""Masking and messages in flight (spec "Device control", "Masking"; spec "Allocate, retarget and free", "Messages
in flight"): a message the device raised and holds (masked, pending) while a call changes its remapping, let go
after the call returns. Every test collects what was injected and counts it: exactly once, to the old or the new
target, or never."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pvmsi.conformance.toolkit import DEFAULT_DEVICES, MLX5, MSI_DEV, Session, check, status_name
from pvmsi.conformance.toolkit_devices import MSI_CAP, MSIX_CAP, MSIX_ENABLE
from pvmsi.spec.constants import ActivateFlag, DeliveryFlag, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import DeviceSpace, FireOutcome, LifecycleEvent

requirement = pytest.mark.requirement
option = pytest.mark.option

#: The MSI capability's Mask Bits (64-bit capable, per-vector masking: the harness PLAIN_MSI profile).
MSI_MASK = MSI_CAP + 0x10


def mask(session: Session, dev: Any, kind: MsgKind, slot: int, masked: bool, *, vm: int | None = None) -> None:
    """The guest masks or unmasks one slot at the device: the MSI-X or IMS entry's Mask Bit (no exit once claimed),
    or MSI's Mask Bits (``slot`` is a bit mask then), which the hypervisor applies (HV-EMU-005)."""
    vm = session.vm if vm is None else vm
    if kind is MsgKind.MSI:
        session.config_write(dev, MSI_MASK, 4, slot if masked else 0, vm=vm)
        return
    space = DeviceSpace.MSIX_TABLE if kind is MsgKind.MSIX else DeviceSpace.IMS
    session.iut.device_write(vm, dev, space, slot * 16 + 12, 4, int(masked))
    session.log(f"vm {vm} {'mask' if masked else 'unmask'} {dev} {kind.name}[{slot}]")


def _setup(session: Session) -> dict[tuple[MsgKind, int], tuple[Any, int]]:
    """MSI-X slots 0..2 and IMS slots 0..1 of MLX5 to vCPU 1 (0x50..), an MSI block of 4 of MSI_DEV to vCPU 1
    (0x60..); all live. Returns (kind, index) -> (its alloc result, its x86-style vector)."""
    session.negotiated()
    session.claimed(MLX5, int(KindMask.MSIX | KindMask.IMS))
    session.claimed(MSI_DEV, int(KindMask.MSI))
    live: dict[tuple[MsgKind, int], tuple[Any, int]] = {}
    for kind, slots, base in ((MsgKind.MSIX, [0, 1, 2], 0x50), (MsgKind.IMS, [0, 1], 0x58)):
        for slot, r in zip(slots, session.allocated(MLX5, kind, slots, vcpu=1, vector=base), strict=True):
            session.live(MLX5, kind, slot, r)
            live[kind, slot] = (r, base + slot)
    block = session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=1, vector=0x60, count=4)[0]
    session.live(MSI_DEV, MsgKind.MSI, 0, block, vectors=4)
    for i in range(4):
        live[MsgKind.MSI, i] = (block, 0x60 + i)
    return live


def _hold_all(session: Session, live: dict[tuple[MsgKind, int], tuple[Any, int]]) -> None:
    """Mask every message, then let the device raise each: the device holds them (PENDING)."""
    for kind, slot in live:
        if kind is not MsgKind.MSI:
            mask(session, MLX5, kind, slot, True)
    mask(session, MSI_DEV, MsgKind.MSI, 0xF, True)
    session.iut.collect(session.vm)
    for kind, slot in live:
        fired = session.fire(MSI_DEV if kind is MsgKind.MSI else MLX5, kind, slot)
        check(fired.outcome == FireOutcome.PENDING, "HV-MASK-002", f"{kind.name}[{slot}] held", fired.outcome.name)


def _let_go(session: Session, live: dict[tuple[MsgKind, int], tuple[Any, int]]) -> None:
    for kind, slot in live:
        if kind is not MsgKind.MSI:
            mask(session, MLX5, kind, slot, False)
    mask(session, MSI_DEV, MsgKind.MSI, 0, False)


@requirement("HV-FLIGHT-001")
def test_retarget_delivers_held_messages_exactly_once(session: Session) -> None:
    """Messages raised before an MSG_ACTIVATE and let go after it are each delivered once, to the old or the new
    target (MSI-X, IMS, every vector of an MSI block)."""
    live = _setup(session)
    _hold_all(session, live)
    moved: dict[tuple[MsgKind, int], tuple[int, int]] = {}
    for kind, dev, slots, base in ((MsgKind.MSIX, MLX5, [0, 1, 2], 0x70), (MsgKind.IMS, MLX5, [0, 1], 0x78)):
        entries = [{"handle": live[kind, s][0].handle, "vcpu": 2, "vector": base + s, "flags": 0} for s in slots]
        b = session.retarget(dev, entries)
        check(b.status == Status.SUCCESS, "HV-RETGT-002", "MSG_ACTIVATE -> SUCCESS", status_name(b.status))
        for s, res in zip(slots, b.results, strict=True):
            if res.flags & ActivateFlag.REWRITE:  # the new pair, written while the slot is masked (GUEST-ALLOC-002)
                session.program(dev, kind, s, res.address, res.data, masked=True)
            moved[kind, s] = (2, base + s)
    b = session.retarget(MSI_DEV, [{"handle": live[MsgKind.MSI, 0][0].handle, "vcpu": 3, "vector": 0x84, "flags": 0}])
    check(b.status == Status.SUCCESS, "HV-RETGT-002", "MSG_ACTIVATE of the block -> SUCCESS", status_name(b.status))
    for i in range(4):
        moved[MsgKind.MSI, i] = (3, 0x84 + i)
    _let_go(session, live)
    got = Counter(session.collect(session.vm))
    for key, (_r, vector) in live.items():
        old, new = (1, vector), moved[key]
        n_old, n_new = got.pop(old, 0), got.pop(new, 0)
        check(
            n_old + n_new == 1,
            "HV-FLIGHT-001",
            f"{key[0].name}[{key[1]}] delivered once, to vCPU 1 {vector:#x} or vCPU {new[0]} {new[1]:#x}",
            f"{n_old} to the old target, {n_new} to the new",
        )
    check(not got, "HV-FLIGHT-001", "nothing else delivered", str(dict(got)))


@requirement("HV-FLIGHT-002")
@pytest.mark.parametrize("how", ["MSG_FREE", "DEVICE_RELEASE", "RESET"])
def test_freed_messages_are_never_delivered(session: Session, how: str) -> None:
    """Messages raised before a free (or a release, or RESET) and let go after it are delivered to no VM."""
    other = session.new_vm(DEFAULT_DEVICES)
    live = _setup(session)
    _hold_all(session, live)
    if how == "MSG_FREE":
        for kind, dev, slots in ((MsgKind.MSIX, MLX5, [0, 1, 2]), (MsgKind.IMS, MLX5, [0, 1])):
            b = session.free(dev, [live[kind, s][0].handle for s in slots])
            check(b.status == Status.SUCCESS, "HV-FREE-002", "MSG_FREE -> SUCCESS", status_name(b.status))
        b = session.free(MSI_DEV, [live[MsgKind.MSI, 0][0].handle])
        check(b.status == Status.SUCCESS, "HV-FREE-002", "MSG_FREE -> SUCCESS", status_name(b.status))
    elif how == "DEVICE_RELEASE":
        for dev in (MLX5, MSI_DEV):
            out = session.release(dev)
            check(out.status == Status.SUCCESS, "HV-DEV-011", "DEVICE_RELEASE -> SUCCESS", status_name(out.status))
    else:
        out = session.reset()
        check(out.status == Status.SUCCESS, "HV-RESET-001", "RESET -> SUCCESS", status_name(out.status))
    # another VM takes messages now: a late write of the freed ones must not reach them either
    session.negotiated(vm=other)
    session.claimed(MLX5, int(KindMask.MSIX | KindMask.IMS), vm=other)
    for kind in (MsgKind.MSIX, MsgKind.IMS):
        for s, r in enumerate(session.allocated(MLX5, kind, [0, 1, 2], vcpu=0, vector=0x90, vm=other)):
            session.live(MLX5, kind, s, r, vm=other)
    session.iut.collect(other)
    session.enable(MLX5, MsgKind.MSIX)  # whatever the guest does next: enable, unmask
    _let_go(session, live)
    session.enable(MSI_DEV, MsgKind.MSI, vectors=4)
    got, elsewhere = session.collect(session.vm), session.collect(other)
    if session.platform == "imsic":  # a late write can raise only its own identity on its own hart (HV-QUOTA-004)
        own = {(1, vector) for _r, vector in live.values()}
        got = [g for g in got if g not in own]
    check(got == [], "HV-FLIGHT-002", f"nothing delivered to the VM after {how}", str(got))
    check(elsewhere == [], "HV-FLIGHT-002", "nothing delivered to another VM", str(elsewhere))


@requirement("HV-MASK-001")
def test_hypervisor_leaves_the_msix_masks_alone(session: Session) -> None:
    """An MSI-X entry the guest masked stays masked through MSG_ACTIVATE and through allocations of other slots."""
    session.ready()
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1], vcpu=1, vector=0x50)
    for s, r in enumerate(results):
        session.program(MLX5, MsgKind.MSIX, s, r.address, r.data, masked=(s == 0))
    session.enable(MLX5, MsgKind.MSIX)
    b = session.retarget(MLX5, [{"handle": results[0].handle, "vcpu": 2, "vector": 0x66, "flags": 0}])
    check(b.status == Status.SUCCESS, "HV-RETGT-002", "MSG_ACTIVATE -> SUCCESS", status_name(b.status))
    if b.results[0].flags & ActivateFlag.REWRITE:
        session.program(MLX5, MsgKind.MSIX, 0, b.results[0].address, b.results[0].data, masked=True)
    session.allocated(MLX5, MsgKind.MSIX, [2, 3], vcpu=1, vector=0x58)
    fired = session.fire(MLX5, MsgKind.MSIX, 0)
    check(fired.outcome == FireOutcome.PENDING, "HV-MASK-001", "entry 0 still masked: PENDING", fired.outcome.name)
    check(session.collect(session.vm) == [], "HV-MASK-001", "nothing delivered while masked", "delivered")
    mask(session, MLX5, MsgKind.MSIX, 0, False)
    check(session.collect(session.vm) == [(2, 0x66)], "HV-MASK-002", "delivered on unmask to vCPU 2 0x66", "other")


#: The harness fact the fire-order checks rely on (harness page, "Reset, masking and pending messages").
FIRE_ORDER = "(harness: fire outcomes: disabled, then masked, then address zero, then the IOMMU)"


@requirement("HV-MASK-001", "HV-MASK-002")
@pytest.mark.parametrize("kind", [MsgKind.MSIX, MsgKind.IMS], ids=["MSI-X", "IMS"])
def test_fire_outcome_order_on_guest_owned_slots(session: Session, kind: MsgKind) -> None:
    """On claimed slots the hypervisor leaves alone, DEVICE_FIRE answers by the harness's order of checks: a
    masked slot is PENDING and held whatever its address; an unmasked slot with address zero is NOT_PROGRAMMED
    and reaches no IOMMU; a held message whose slot is unmasked with address zero is not sent."""
    session.negotiated()
    session.claimed(MLX5, int(KindMask.MSIX | KindMask.IMS))
    r = session.allocated(MLX5, kind, [0], vcpu=1, vector=0x50)[0]
    rid = "HV-MASK-001" if kind is MsgKind.MSIX else "HV-MASK-002"
    session.program(MLX5, kind, 0, r.address, r.data, masked=True)  # slot 0: masked, programmed
    if kind is MsgKind.MSIX:
        fired = session.fire(MLX5, kind, 0)
        check(
            fired.outcome == FireOutcome.PENDING, rid, f"MSI-X Enable clear: PENDING {FIRE_ORDER}", fired.outcome.name
        )
        mask(session, MLX5, kind, 0, False)
        check(session.collect(session.vm) == [], rid, f"nothing held while disabled {FIRE_ORDER}", "delivered")
        mask(session, MLX5, kind, 0, True)
        session.enable(MLX5, kind)
    blocked = session.iut.counters(session.vm).blocked
    for slot, what in ((0, "masked, programmed"), (1, "masked, address zero (reset state)")):
        fired = session.fire(MLX5, kind, slot)
        check(
            fired.outcome == FireOutcome.PENDING,
            rid,
            f"{kind.name}[{slot}] {what}: PENDING {FIRE_ORDER}",
            fired.outcome.name,
        )
    mask(session, MLX5, kind, 2, False)  # slot 2: unmasked, address zero
    fired = session.fire(MLX5, kind, 2)
    check(
        fired.outcome == FireOutcome.NOT_PROGRAMMED,
        rid,
        f"{kind.name}[2] unmasked, address zero: NOT_PROGRAMMED {FIRE_ORDER}",
        fired.outcome.name,
    )
    mask(session, MLX5, kind, 1, False)  # the message slot 1 holds meets address zero: nothing is sent
    check(session.collect(session.vm) == [], rid, f"nothing sent from a slot of address zero {FIRE_ORDER}", "delivered")
    after = session.iut.counters(session.vm).blocked
    check(
        after == blocked, rid, f"no write of address zero reached the IOMMU {FIRE_ORDER}", f"{after - blocked} blocked"
    )
    mask(session, MLX5, kind, 0, False)
    got = session.collect(session.vm)
    check(got == [(1, 0x50)], "HV-MASK-002", f"slot 0's held message delivered once on unmask {FIRE_ORDER}", str(got))


@requirement("HV-MASK-002")
@option("msi")
def test_unmask_delivers_once_to_the_target_then(session: Session) -> None:
    """An MSI vector masked with the Mask Bits, and MSI-X under Function Mask: the message raised meanwhile is
    delivered exactly once on unmask, to the target in force at the unmask."""
    session.negotiated()
    session.claimed(MSI_DEV, int(KindMask.MSI))
    block = session.allocated(MSI_DEV, MsgKind.MSI, [0], vcpu=1, vector=0x60, count=2)[0]
    session.live(MSI_DEV, MsgKind.MSI, 0, block, vectors=2)
    mask(session, MSI_DEV, MsgKind.MSI, 0b10, True)
    fired = session.fire(MSI_DEV, MsgKind.MSI, 1)
    check(fired.outcome == FireOutcome.PENDING, "HV-MASK-002", "vector 1 masked: PENDING", fired.outcome.name)
    b = session.retarget(MSI_DEV, [{"handle": block.handle, "vcpu": 3, "vector": 0x62, "flags": 0}])
    check(b.status == Status.SUCCESS, "HV-RETGT-002", "MSG_ACTIVATE -> SUCCESS", status_name(b.status))
    session.iut.collect(session.vm)
    mask(session, MSI_DEV, MsgKind.MSI, 0, False)
    got = session.collect(session.vm)
    check(got == [(3, 0x63)], "HV-MASK-002", "MSI vector 1 delivered once, to vCPU 3 0x63", str(got))
    session.claimed(MLX5, int(KindMask.MSIX))
    r = session.allocated(MLX5, MsgKind.MSIX, [4], vcpu=2, vector=0x77)[0]
    session.program(MLX5, MsgKind.MSIX, 4, r.address, r.data)
    session.config_write(MLX5, MSIX_CAP + 2, 2, MSIX_ENABLE | 1 << 14)  # Function Mask
    for _ in range(2):  # raised twice while masked: one pending bit, one delivery
        fired = session.fire(MLX5, MsgKind.MSIX, 4)
        check(fired.outcome == FireOutcome.PENDING, "HV-MASK-002", "function-masked: PENDING", fired.outcome.name)
    session.config_write(MLX5, MSIX_CAP + 2, 2, MSIX_ENABLE)
    got = session.collect(session.vm)
    check(got == [(2, 0x77)], "HV-MASK-002", "MSI-X entry 4 delivered once on unmask", str(got))


@requirement("HV-FLIGHT-001")
@option("posted")
def test_retarget_keeps_a_posted_request(session: Session) -> None:
    """A message delivered through posted interrupts to vCPU 1 and not yet taken by it when its message is moved to
    vCPU 2 (the request sits in vCPU 1's posted-interrupt descriptor) is delivered exactly once, to either."""
    session.ready()
    entry = {"kind": MsgKind.MSIX, "flags": int(DeliveryFlag.POSTED), "vector_count": 1, "slot": 0}
    b = session.alloc(MLX5, [{**entry, "vcpu": 1, "vector": 0x50}])
    check(b.status == Status.SUCCESS, "HV-ALLOC-007", "MSG_ALLOC (POSTED) -> SUCCESS", status_name(b.status))
    r = b.results[0]
    session.live(MLX5, MsgKind.MSIX, 0, r)
    session.iut.collect(session.vm)
    for _ in range(2):  # one raised, then another: each is one interrupt
        fired = session.fire(MLX5, MsgKind.MSIX, 0)
        check(fired.outcome == FireOutcome.DELIVERED, "HV-ALLOC-007", "posted to vCPU 1", fired.outcome.name)
        rt = session.retarget(
            MLX5, [{"handle": r.handle, "vcpu": 2, "vector": 0x52, "flags": int(DeliveryFlag.POSTED)}]
        )
        check(rt.status == Status.SUCCESS, "HV-RETGT-002", "MSG_ACTIVATE -> SUCCESS", status_name(rt.status))
        if rt.results[0].flags & ActivateFlag.REWRITE:
            session.program(MLX5, MsgKind.MSIX, 0, rt.results[0].address, rt.results[0].data)
        got = session.collect(session.vm)
        n = got.count((1, 0x50)) + got.count((2, 0x52))
        check(n == 1 and len(got) == 1, "HV-FLIGHT-001", "the posted request delivered once", str(got))
        back = session.retarget(
            MLX5, [{"handle": r.handle, "vcpu": 1, "vector": 0x50, "flags": int(DeliveryFlag.POSTED)}]
        )
        check(back.status == Status.SUCCESS, "HV-RETGT-002", "MSG_ACTIVATE back -> SUCCESS", status_name(back.status))
        if back.results[0].flags & ActivateFlag.REWRITE:
            session.program(MLX5, MsgKind.MSIX, 0, back.results[0].address, back.results[0].data)


@requirement("HV-FLIGHT-001")
def test_old_pair_delivers_until_rewritten(session: Session) -> None:
    """Right after MSG_ACTIVATE, before the guest has written anything: a message the device raises with the pair
    it holds is delivered exactly once, to the old or the new target (on the IMSIC, where the pair changes, the
    old pair still reaches the old hart); once the guest rewrote a changed pair, to the new target."""
    session.ready()
    r = session.allocated(MLX5, MsgKind.MSIX, [0], vcpu=1, vector=0x50)[0]
    session.live(MLX5, MsgKind.MSIX, 0, r)
    session.iut.collect(session.vm)
    for vcpu, vector, before in ((2, 0x52, (1, 0x50)), (3, 0x53, (2, 0x52))):
        b = session.retarget(MLX5, [{"handle": r.handle, "vcpu": vcpu, "vector": vector, "flags": 0}])
        check(b.status == Status.SUCCESS, "HV-RETGT-002", "MSG_ACTIVATE -> SUCCESS", status_name(b.status))
        fired = session.fire(MLX5, MsgKind.MSIX, 0)
        got = session.collect(session.vm)
        check(
            fired.outcome == FireOutcome.DELIVERED and len(got) == 1 and got[0] in (before, (vcpu, vector)),
            "HV-FLIGHT-001",
            f"the pair the device holds delivers once, to vCPU {before[0]} {before[1]:#x} or vCPU {vcpu} {vector:#x}",
            f"{fired.outcome.name}, injected {got}",
        )
        if b.results[0].flags & ActivateFlag.REWRITE:
            session.program(MLX5, MsgKind.MSIX, 0, b.results[0].address, b.results[0].data)
        fired = session.fire(MLX5, MsgKind.MSIX, 0)
        got = session.collect(session.vm)
        check(got == [(vcpu, vector)], "HV-RETGT-002", f"rewritten: to vCPU {vcpu} {vector:#x}", str(got))


_ = LifecycleEvent  # the VM reset path of HV-FLIGHT-002 is the RESET call's (HV-RESET-002)
