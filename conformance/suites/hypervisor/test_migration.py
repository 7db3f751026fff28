"""Live migration that works (spec "Reset, FLR, hot-unplug and migration", "Events"): to a destination whose
remapping table holds other entries at the VM's indices, and to the other platform of the architecture; the
destination queues REFETCH, the guest re-activates every message, and every vector delivers to its target."""

from __future__ import annotations

import pytest

from pvmsi.conformance import eventkit
from pvmsi.conformance.eventkit import Held
from pvmsi.conformance.toolkit import MLX5, MSI_DEV, Session, alloc_entry, check, status_name
from pvmsi.spec.constants import ActivateFlag, EventType, KindMask, MsgKind, Status
from pvmsi.spec.harness_constants import FireOutcome, LifecycleEvent

requirement = pytest.mark.requirement

NOTIFY = (0, 0xE0)


def populate(session: Session) -> list[Held]:
    """Several vectors on several vCPUs: three MSI-X entries, two IMS slots, a 4-vector MSI block; each written
    and enabled, the notification target registered."""
    session.negotiated()
    session.claimed(MLX5, int(KindMask.MSIX | KindMask.IMS))
    session.claimed(MSI_DEV, int(KindMask.MSI))
    held: list[Held] = []
    for kind, slots, base in ((MsgKind.MSIX, [0, 1, 2], 0x50), (MsgKind.IMS, [0, 1], 0x58)):
        entries = [alloc_entry(kind, s, vcpu=1 + i % 3, vector=base + i) for i, s in enumerate(slots)]
        b = session.alloc(MLX5, entries)
        check(b.status == Status.SUCCESS, "HV-ALLOC-007", f"{kind.name} allocated", status_name(b.status))
        for i, (s, r) in enumerate(zip(slots, b.results, strict=True)):
            session.program(MLX5, kind, s, r.address, r.data)
            held.append(Held(MLX5, kind, s, r.handle, 1 + i % 3, base + i))
    session.enable(MLX5, MsgKind.MSIX)
    b = session.alloc(MSI_DEV, [alloc_entry(MsgKind.MSI, 0, vcpu=3, vector=0x60, count=4)])
    check(b.status == Status.SUCCESS, "HV-ALLOC-007", "MSI block allocated", status_name(b.status))
    session.enable(MSI_DEV, MsgKind.MSI, vectors=4)
    held.append(Held(MSI_DEV, MsgKind.MSI, 0, b.results[0].handle, 3, 0x60, 4))
    check(eventkit.config(session, *NOTIFY).status == Status.SUCCESS, "HV-EVT-001", "notification target set", "")
    return held


def fire_all(session: Session, held: list[Held]) -> list[tuple[Held, int, object]]:
    """Fire every vector of every message: (message, vector index, fire result)."""
    return [
        (h, i, session.fire(h.dev, h.kind, i if h.kind is MsgKind.MSI else h.slot))
        for h in held
        for i in range(h.count)
    ]


def migrate_and_refetch(session: Session, event: LifecycleEvent) -> eventkit.Fetched:
    """Populate, migrate, check the notification and REFETCH, check what the old pairs do meanwhile
    (HV-MIG-002), re-activate every message (HV-MIG-004) and check every vector delivers to its target."""
    held = populate(session)
    session.collect(session.vm)
    session.iut.lifecycle(session.vm, event, None)
    session.log(f"LIFECYCLE {event.name}")
    got = session.collect(session.vm)
    check(NOTIFY in got, "HV-EVT-002", "the destination notified the target", str(got))
    fetched = eventkit.fetch(session)
    check(EventType.REFETCH in fetched.types(), "HV-MIG-002", "REFETCH queued", str(fetched.types()))
    for h, i, fired in fire_all(session, held):  # before re-activation: to its own target, or nowhere
        ok = fired.outcome != FireOutcome.DELIVERED or (fired.vcpu, fired.vector) == (h.vcpu, h.vector + i)  # type: ignore[attr-defined]
        check(ok, "HV-MIG-002", f"{h.kind.name}[{h.slot}]+{i}: an old pair delivers to its own target only", str(fired))
    session.collect(session.vm)
    done = eventkit.reactivate_all(session, held)
    retriggered = session.collect(session.vm)
    rewrites = 0
    for h, result in done:
        check(not isinstance(result, int), "HV-MIG-001", f"handle of {h.kind.name}[{h.slot}] still valid", str(result))
        if int(result.flags) & ActivateFlag.REWRITE:
            rewrites += 1
            for i in range(h.count):
                check(
                    (h.vcpu, h.vector + i) in retriggered,
                    "HV-MIG-004",
                    f"{h.kind.name}[{h.slot}]+{i} changed: one interrupt at vcpu {h.vcpu} vector {h.vector + i:#x}",
                    str(retriggered),
                )
    session.log(f"{rewrites} of {len(done)} messages changed their pair")
    check(eventkit.ack(session, fetched.next_seq - 1).status == Status.SUCCESS, "HV-EVT-006", "events acknowledged", "")
    for h, i, fired in fire_all(session, held):
        check(
            fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (h.vcpu, h.vector + i),  # type: ignore[attr-defined]
            "HV-MIG-002",
            f"{h.kind.name}[{h.slot}]+{i} delivers to vcpu {h.vcpu} vector {h.vector + i:#x} after re-activation",
            str(fired),
        )
    return fetched


@requirement("HV-MIG-001", "HV-MIG-002", "HV-MIG-004")
def test_migration_to_a_crowded_destination(session: Session) -> None:
    """A destination whose table holds other entries at the VM's indices: REFETCH, re-activation, delivery."""
    migrate_and_refetch(session, LifecycleEvent.MIGRATE_CROWDED)


@requirement("HV-MIG-001", "HV-MIG-002", "HV-MIG-004", "HV-MIG-005")
def test_migration_to_the_other_platform(session: Session) -> None:
    """VT-d <-> AMD-Vi: REFETCH, LIMITS_CHANGED when GET_INFO changed, re-activation, delivery."""
    before = session.info()
    fetched = migrate_and_refetch(session, LifecycleEvent.MIGRATE_OTHER_PLATFORM)
    after = session.info()
    fields = ("message_format", "max_batch", "max_claimed_devices", "max_messages_per_vm", "max_messages_per_device")
    changed = [f for f in fields if getattr(before, f) != getattr(after, f)]
    session.log(f"GET_INFO changed: {changed}")
    if changed:
        check(
            EventType.LIMITS_CHANGED in fetched.types(),
            "HV-MIG-005",
            f"LIMITS_CHANGED queued ({', '.join(changed)} changed)",
            str(fetched.types()),
        )


@requirement("HV-MIG-005")
def test_migration_to_other_limits(session: Session) -> None:
    """A destination with other limits queues LIMITS_CHANGED and still offers the negotiated features."""
    session.ready(MLX5, int(KindMask.MSIX))
    features = session.info().features_offered
    before = session.info()
    session.iut.lifecycle(session.vm, LifecycleEvent.MIGRATE_OTHER_LIMITS, None)
    session.log("LIFECYCLE MIGRATE_OTHER_LIMITS")
    after = session.info()
    fields = ("max_batch", "max_claimed_devices", "max_messages_per_vm", "max_messages_per_device")
    changed = [f for f in fields if getattr(before, f) != getattr(after, f)]
    if not changed:
        pytest.skip("unsupported: the IUT's other-limits destination changed no limit")
    fetched = eventkit.fetch(session)
    check(
        EventType.LIMITS_CHANGED in fetched.types(),
        "HV-MIG-005",
        f"LIMITS_CHANGED queued ({', '.join(changed)} changed)",
        str(fetched.types()),
    )
    check(after.features_offered & features == features, "HV-MIG-005", "the negotiated features still offered", "")
