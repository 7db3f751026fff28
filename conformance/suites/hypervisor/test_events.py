"""The event channel: EVENT_CONFIG, EVENT_FETCH and EVENT_ACK (spec "Events"). Events are raised by a live
migration (REFETCH, LIMITS_CHANGED: the harness LIFECYCLE MIGRATE events)."""

from __future__ import annotations

import pytest

from pvmsi.conformance import eventkit
from pvmsi.conformance.toolkit import MLX5, Session, alloc_entry, check, status_name
from pvmsi.spec.constants import EventType, KindMask, Limit, MsgKind, RevokeReason, Status
from pvmsi.spec.harness_constants import FireOutcome, LifecycleEvent
from pvmsi.spec.iut import VmKnobs

requirement = pytest.mark.requirement

NOTIFY_VCPU, NOTIFY_VECTOR = 2, 0xE0


def _migrate(session: Session, event: LifecycleEvent = LifecycleEvent.MIGRATE) -> None:
    session.iut.lifecycle(session.vm, event, None)
    session.log(f"LIFECYCLE {event.name}")


@requirement("HV-EVT-001")
def test_event_config_checks_its_target(session: Session) -> None:
    """EVENT_CONFIG checks the target as MSG_ALLOC does and wants vcpu and vector zero without ENABLE."""
    session.negotiated()
    bad = eventkit.config(session, session.vcpus, NOTIFY_VECTOR)
    check(
        bad.status == Status.INVALID_PARAMETER,
        "HV-EVT-001",
        "no such vCPU -> INVALID_PARAMETER",
        status_name(bad.status),
    )
    bad = eventkit.config(session, 0, NOTIFY_VECTOR, enable=False)
    check(
        bad.status == Status.INVALID_PARAMETER,
        "HV-EVT-001",
        "a vector without ENABLE -> INVALID_PARAMETER",
        status_name(bad.status),
    )
    ok = eventkit.config(session, NOTIFY_VCPU, NOTIFY_VECTOR)
    check(ok.status == Status.SUCCESS, "HV-EVT-001", "a valid target -> SUCCESS", status_name(ok.status))
    cleared = eventkit.config(session, enable=False)
    check(cleared.status == Status.SUCCESS, "HV-EVT-001", "clearing -> SUCCESS", status_name(cleared.status))
    session.collect(session.vm)
    _migrate(session)
    got = session.collect(session.vm)
    check(got == [], "HV-EVT-001", "a cleared target is not notified", str(got))


@requirement("HV-EVT-002")
def test_notification_injected_at_the_target(session: Session) -> None:
    """Queuing an event injects the registered vector on the registered vCPU."""
    session.negotiated()
    check(eventkit.config(session, NOTIFY_VCPU, NOTIFY_VECTOR).status == Status.SUCCESS, "HV-EVT-001", "target set", "")
    session.collect(session.vm)
    _migrate(session)
    got = session.collect(session.vm)
    check(
        (NOTIFY_VCPU, NOTIFY_VECTOR) in got,
        "HV-EVT-002",
        f"vcpu {NOTIFY_VCPU} vector {NOTIFY_VECTOR:#x} injected",
        str(got),
    )
    fetched = eventkit.fetch(session)
    check(fetched.types() == [EventType.REFETCH], "HV-EVT-002", "the event queued is REFETCH", str(fetched.types()))


@requirement("HV-EVT-003", "HV-EVT-004")
def test_fetch_is_ordered_and_never_lost(session: Session) -> None:
    """Events come in sequence order from 1; fetching twice without acknowledging returns the same events."""
    session.negotiated()
    empty = eventkit.fetch(session)
    check(
        empty.status == Status.SUCCESS and empty.value == 0 and empty.events == [] and empty.next_seq == 1,
        "HV-EVT-004",
        "no event yet: SUCCESS, count 0, next_seq 1",
        f"{status_name(empty.status)} {empty.value} {empty.events} {empty.next_seq}",
    )
    before = session.info()
    _migrate(session, LifecycleEvent.MIGRATE_OTHER_LIMITS)
    if session.info() == before:
        pytest.skip("unsupported: the IUT's other-limits destination changed no limit")
    first = eventkit.fetch(session)
    check(
        first.types() == [EventType.REFETCH, EventType.LIMITS_CHANGED] and first.seqs() == [1, 2],
        "HV-EVT-003",
        "REFETCH seq 1, then LIMITS_CHANGED seq 2",
        f"{first.types()} {first.seqs()}",
    )
    check(
        first.value == 2 and first.next_seq == 3,
        "HV-EVT-004",
        "count 2 returned, next_seq 3",
        f"{first.value} {first.next_seq}",
    )
    again = eventkit.fetch(session)
    check(again.events == first.events, "HV-EVT-004", "the same events fetched again", f"{again.seqs()}")


@requirement("HV-EVT-005")
def test_events_coalesce(session: Session) -> None:
    """A second REFETCH while one is pending replaces it, with a new sequence number."""
    session.negotiated()
    _migrate(session)
    _migrate(session)
    fetched = eventkit.fetch(session)
    check(
        fetched.types() == [EventType.REFETCH] and fetched.seqs() == [2],
        "HV-EVT-005",
        "one REFETCH, seq 2",
        f"{fetched.types()} {fetched.seqs()}",
    )


@requirement("HV-EVT-006")
def test_ack_edges(session: Session) -> None:
    """Ack of a future seq fails and removes nothing; ack removes up to seq; an old seq again removes nothing."""
    session.negotiated()
    _migrate(session)
    future = eventkit.ack(session, 2)
    check(
        future.status == Status.INVALID_PARAMETER,
        "HV-EVT-006",
        "ack of seq 2 (never issued) -> INVALID_PARAMETER",
        status_name(future.status),
    )
    check(eventkit.fetch(session).seqs() == [1], "HV-EVT-006", "the event is still there", "it was removed")
    zero = eventkit.ack(session, 0)
    check(
        zero.status == Status.SUCCESS and zero.value == 1,
        "HV-EVT-006",
        "ack of seq 0 -> SUCCESS, 1 left",
        f"{status_name(zero.status)} {zero.value}",
    )
    done = eventkit.ack(session, 1)
    check(
        done.status == Status.SUCCESS and done.value == 0,
        "HV-EVT-006",
        "ack of seq 1 -> SUCCESS, 0 left",
        f"{status_name(done.status)} {done.value}",
    )
    check(eventkit.fetch(session).events == [], "HV-EVT-006", "queue empty after ack", "events left")
    again = eventkit.ack(session, 1)
    check(
        again.status == Status.SUCCESS and again.value == 0,
        "HV-EVT-006",
        "ack of seq 1 again -> SUCCESS, 0 left",
        f"{status_name(again.status)} {again.value}",
    )


@requirement("HV-EVT-007", "HV-EVT-003")
def test_reset_empties_the_queue(session: Session) -> None:
    """RESET empties the queue and clears the target; the sequence goes on."""
    session.negotiated()
    check(eventkit.config(session, NOTIFY_VCPU, NOTIFY_VECTOR).status == Status.SUCCESS, "HV-EVT-001", "target set", "")
    _migrate(session)
    session.reset()
    session.negotiated()
    fetched = eventkit.fetch(session)
    check(fetched.events == [], "HV-EVT-007", "no event after RESET", str(fetched.seqs()))
    session.collect(session.vm)
    _migrate(session)
    got = session.collect(session.vm)
    check(got == [], "HV-EVT-007", "the target was cleared by RESET: no notification", str(got))
    fetched = eventkit.fetch(session)
    check(fetched.seqs() == [2], "HV-EVT-003", "the REFETCH after RESET has seq 2 (never reused)", str(fetched.seqs()))


@requirement("HV-EVT-008")
def test_a_guest_that_ignores_events_keeps_working(session: Session) -> None:
    """Events pending and never fetched change nothing but what they announce: calls still work."""
    session.ready(MLX5, int(KindMask.MSIX))
    for _ in range(3):
        _migrate(session)
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 5, vcpu=1, vector=0x45)])
    check(b.status == Status.SUCCESS, "HV-EVT-008", "MSG_ALLOC with events pending -> SUCCESS", status_name(b.status))
    session.live(MLX5, MsgKind.MSIX, 5, b.results[0])
    fired = session.fire(MLX5, MsgKind.MSIX, 5)
    check(
        fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (1, 0x45),
        "HV-EVT-008",
        "a new message delivers with events pending",
        f"{fired.outcome.name} {fired.vcpu} {fired.vector:#x}",
    )
    info = session.info()
    check(info.max_batch >= 1, "HV-EVT-008", "GET_INFO works", str(info))


@requirement("HV-REVOKE-002")
def test_storm_revokes_and_tells_the_guest(session: Session) -> None:
    """A message past the VM's storm limit is revoked: REVOKED (STORM) queued and notified, no delivery after,
    MSG_ACTIVATE of it fails with REVOKED, MSG_FREE frees it; the other messages keep delivering."""
    limit = 3
    session.use(session.new_vm(knobs=VmKnobs(storm_limit=limit)))
    session.ready(MLX5, int(KindMask.MSIX))
    results = session.allocated(MLX5, MsgKind.MSIX, [0, 1], vcpu=1, vector=0x50)
    for slot, r in enumerate(results):
        session.live(MLX5, MsgKind.MSIX, slot, r)
    check(eventkit.config(session, NOTIFY_VCPU, NOTIFY_VECTOR).status == Status.SUCCESS, "HV-EVT-001", "target", "")
    session.collect(session.vm)
    for n in range(1, limit + 2):  # deliveries 1..limit + 1 arrive; the last revokes (harness: vm_config.storm_limit)
        fired = session.fire(MLX5, MsgKind.MSIX, 0)
        check(
            (fired.outcome, fired.vcpu, fired.vector) == (FireOutcome.DELIVERED, 1, 0x50),
            "HV-REVOKE-002",
            f"delivery {n} of storm_limit {limit} + 1 arrives (harness: vm_config.storm_limit)",
            f"{fired.outcome.name} vcpu {fired.vcpu} vector {fired.vector:#x}",
        )
    got = session.collect(session.vm)
    check(
        got.count((1, 0x50)) == limit + 1,
        "HV-REVOKE-002",
        f"{limit + 1} deliveries injected before the revocation (harness: vm_config.storm_limit)",
        str(got),
    )
    fetched = eventkit.fetch(session)
    revoked = [e for e in fetched.events or [] if e.event_type == EventType.REVOKED]
    check(
        len(revoked) == 1 and revoked[0].handle == results[0].handle and revoked[0].reason == RevokeReason.STORM,
        "HV-REVOKE-002",
        f"one REVOKED (STORM) for handle {results[0].handle:#x} after {limit + 1} deliveries",
        str(fetched.events),
    )
    check((NOTIFY_VCPU, NOTIFY_VECTOR) in got, "HV-EVT-002", "the revocation notified the target", str(got))
    fired = session.fire(MLX5, MsgKind.MSIX, 0)
    check(fired.outcome != FireOutcome.DELIVERED, "HV-REVOKE-002", "no delivery after revocation", fired.outcome.name)
    b = session.retarget(MLX5, [{"handle": results[0].handle, "vcpu": 1, "vector": 0x50, "flags": 0}])
    check(b.status == Status.REVOKED, "HV-REVOKE-002", "MSG_ACTIVATE of it -> REVOKED", status_name(b.status))
    fired = session.fire(MLX5, MsgKind.MSIX, 1)
    check(
        fired.outcome == FireOutcome.DELIVERED and (fired.vcpu, fired.vector) == (1, 0x51),
        "HV-REVOKE-002",
        "the other message still delivers",
        fired.outcome.name,
    )
    b = session.free(MLX5, [results[0].handle])
    check(b.status == Status.SUCCESS, "HV-REVOKE-002", "MSG_FREE of it -> SUCCESS", status_name(b.status))


@requirement("HV-REVOKE-002")
def test_a_hypercall_starts_the_storm_count_again(session: Session) -> None:
    """storm_limit counts deliveries with no hypercall of the VM in between (harness: vm_config.storm_limit):
    storm_limit deliveries, a hypercall, storm_limit more, all arrive and nothing is revoked; one more past the
    limit still arrives, and the one after it does not."""
    limit = 2
    session.use(session.new_vm(knobs=VmKnobs(storm_limit=limit)))
    session.ready(MLX5, int(KindMask.MSIX))
    r = session.allocated(MLX5, MsgKind.MSIX, [0], vcpu=1, vector=0x50)[0]
    session.live(MLX5, MsgKind.MSIX, 0, r)
    outcomes = []
    for _ in range(2):
        outcomes += [session.fire(MLX5, MsgKind.MSIX, 0).outcome for _ in range(limit)]
        out = session.version()
        check(out.status == Status.SUCCESS, "HV-REVOKE-002", "VERSION -> SUCCESS", status_name(out.status))
    check(
        outcomes == [FireOutcome.DELIVERED] * (2 * limit),
        "HV-REVOKE-002",
        f"{limit} deliveries, a hypercall, {limit} more: all delivered (harness: vm_config.storm_limit)",
        ", ".join(o.name for o in outcomes),
    )
    fetched = eventkit.fetch(session)
    check(
        EventType.REVOKED not in fetched.types(),
        "HV-REVOKE-002",
        "nothing revoked (the count restarts at each hypercall)",
        str(fetched.types()),
    )
    outcomes = [session.fire(MLX5, MsgKind.MSIX, 0).outcome for _ in range(limit + 2)]
    check(
        outcomes == [FireOutcome.DELIVERED] * (limit + 1) + [outcomes[-1]] and outcomes[-1] != FireOutcome.DELIVERED,
        "HV-REVOKE-002",
        f"deliveries 1..{limit + 1} arrive, delivery {limit + 2} does not (harness: vm_config.storm_limit)",
        ", ".join(o.name for o in outcomes),
    )


@requirement("HV-EVT-005")
def test_the_queue_is_bounded(session: Session) -> None:
    """More distinct events than PVMSI_MAX_EVENTS (storm revocations of as many messages): the queue never holds
    more, and what it dropped is covered by one REFETCH."""
    many = int(Limit.MAX_EVENTS) + 1
    session.use(session.new_vm(knobs=VmKnobs(storm_limit=1)))
    session.ready(MLX5, int(KindMask.MSIX))
    for first in range(0, many, 50):
        slots = list(range(first, min(first + 50, many)))
        for slot, r in zip(
            slots, session.allocated(MLX5, MsgKind.MSIX, slots, vcpu=1, vector=0x40 + first), strict=True
        ):
            session.program(MLX5, MsgKind.MSIX, slot, r.address, r.data)
    session.enable(MLX5, MsgKind.MSIX)
    for slot in range(many):
        session.fire(MLX5, MsgKind.MSIX, slot)
        session.fire(MLX5, MsgKind.MSIX, slot)
    fetched = eventkit.fetch(session)
    check(
        fetched.events is not None and len(fetched.events) <= int(Limit.MAX_EVENTS),
        "HV-EVT-005",
        f"at most {int(Limit.MAX_EVENTS)} events pending",
        f"{fetched.value} events",
    )
    check(
        EventType.REFETCH in fetched.types(),
        "HV-EVT-005",
        f"{many} revocations overflowed the queue: a REFETCH stands for what was dropped",
        str(fetched.types()[-3:]),
    )
