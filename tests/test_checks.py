"""The check order of every call (spec/checks.py, HV-CALL-005): complete, in the dump, and covering what the
reference returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pvmsi.reference.fuzz import Fuzzer, reference_system
from pvmsi.reference.hypervisor.call import CallResult
from pvmsi.reference.hypervisor.config import HypervisorConfig
from pvmsi.reference.system import ReferenceSystem
from pvmsi.spec.calls import CALLS, CALLS_BY_FN
from pvmsi.spec.check_swaps import adjacent_pairs, swap_exclusion, swappable_pairs
from pvmsi.spec.checks import CHECKS, SCOPES, statuses_of, step_of
from pvmsi.spec.constants import KIND_FEATURE, KindMask, Status
from pvmsi.spec.dump import spec_dump
from pvmsi.spec.kinds import kind_bit
from pvmsi.spec.requirements import by_id


def test_every_call_has_a_check_order() -> None:
    assert {c.name for c in CALLS} == set(CHECKS)
    for c in CALLS:
        order = CHECKS[c.name]
        assert order, c.name
        assert order[0].status is Status.NOT_SUPPORTED, c.name
        assert order[-1].status is Status.SUCCESS, c.name
        assert all(chk.scope in SCOPES for chk in order)
        for chk in order:
            by_id(chk.requirement)  # every step cites a requirement of the registry


def test_batch_orders_have_header_then_entries() -> None:
    for c in CALLS:
        scopes = [chk.scope for chk in CHECKS[c.name]]
        if c.batched:
            last_header = max(i for i, s in enumerate(scopes) if s == "header")
            first_entry = scopes.index("entry")
            assert last_header < first_entry, c.name
            assert CHECKS[c.name][last_header].key == "overlap"  # the header checks end with both whole blocks
        else:
            assert "header" not in scopes, c.name
            assert "entry" not in scopes, c.name


def test_dump_gives_checks_per_call() -> None:
    calls = spec_dump()["calls"]
    for entry in calls:
        checks: list[dict[str, Any]] = entry["checks"]
        assert checks, entry["name"]
        assert [chk["step"] for chk in checks] == list(range(1, len(checks) + 1))
        for chk in checks:
            assert {"step", "check", "status", "requirement"} <= set(chk)
            assert chk["status"] in Status.__members__


def test_resolved_orders() -> None:
    """The orderings finding 3 of issue 12 found undefined, as the data fixes them."""

    def keys(name: str) -> list[str]:
        return [chk.key for chk in CHECKS[name]]

    q = keys("DEVICE_QUERY")
    assert q.index("devid-subdevice-bits") < q.index("devid-subdevice-feature") < q.index("devid-unknown")
    a = keys("MSG_ALLOC")
    assert a.index("slot-occupied") < a.index("target-vcpu")  # HV-ALLOC-005 before HV-ALLOC-006
    assert a.index("count") < a.index("devid-unknown")  # count/start before the device
    n = keys("NEGOTIATE")
    assert n.index("version") < n.index("unoffered")  # VERSION_MISMATCH before the feature checks
    assert CHECKS["NEGOTIATE"][n.index("version")].writes == "nothing"


def test_swap_pairs_are_adjacent_and_excluded_with_a_reason() -> None:
    pairs = adjacent_pairs()
    swappable = swappable_pairs()
    assert swappable
    assert set(map(id, (b for _n, _a, b in swappable))) <= set(map(id, (b for _n, _a, b in pairs)))
    for name, a, b in pairs:
        reason = swap_exclusion(name, a, b)
        assert reason is None or reason.strip(), (name, a.key, b.key)


def in_order(trace: list[tuple[str, str]]) -> None:
    """The checks one call ran, in the spec's order; a batch's entry checks start again for each entry."""
    last = 0
    for name, key in trace:
        step = step_of(name, key)
        if step <= last:
            assert CHECKS[name][step - 1].scope == "entry", (name, key, trace)
        last = step


def test_reference_runs_the_check_order() -> None:
    """Under the fuzzer, the reference runs every call's checks in the order of spec/checks.py, and every status it
    returns for a call is a status of the call's check order."""
    seen: set[tuple[int, int]] = set()

    def system(config: HypervisorConfig, remap_entries: int | None) -> ReferenceSystem:
        made = reference_system(config, remap_entries)
        original = made.core.hypercall

        def recording(vm: Any, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
            made.core.trace = []
            result = original(vm, vcpu, fn, args)
            seen.add((fn, int(result.status)))
            in_order(made.core.trace)
            return result

        made.core.hypercall = recording  # type: ignore[method-assign]
        return made

    Fuzzer(7, system=system).run(3000)
    assert len({fn for fn, _s in seen}) >= 10, sorted(seen)
    assert len(seen) >= 30, sorted(seen)
    for fn, status in seen:
        call = CALLS_BY_FN.get(fn)
        if call is None:
            assert status == Status.NOT_SUPPORTED
            continue
        assert Status(status) in statuses_of(call.name), (call.name, Status(status).name)


def test_a_kinds_mask_bit_is_its_feature_bit() -> None:
    for kind, feature in KIND_FEATURE.items():
        assert int(KindMask[kind.name]) == int(feature) == kind_bit(kind)
