"""Which adjacent checks of a call's check order a conformance suite must tell apart (spec/checks.py, HV-CALL-005).

Two adjacent call-specific checks, run the other way round, give another answer only for a request that fails both
and only when their statuses or writes differ: :func:`swappable_pairs` lists the pairs where they do, and
conformance/faults/check_order.py generates one swapped-order fault for each.
"""

from __future__ import annotations

from itertools import pairwise
from types import MappingProxyType

from .checks import CHECKS, Check

#: Adjacent call-specific checks whose swap no suite can detect because they never both fail, with the reason; pairs
#: with the same status and the same writes are left out too (:func:`swap_exclusion`).  A swapped-order fault is
#: generated for every other adjacent pair.
SWAP_EXCLUSIONS: MappingProxyType[tuple[str, str, str], str] = MappingProxyType(
    {
        ("EVENT_CONFIG", "target-vector", "disable-target"): "never both: the first applies with ENABLE set, the "
        "second with it clear",
        ("MSG_ALLOC", "slot", "slot-occupied"): "never both: a slot out of range holds no message",
    }
)


def swap_exclusion(name: str, a: Check, b: Check) -> str | None:
    """Why swapping adjacent checks ``a`` and ``b`` of call ``name`` cannot be detected, or None when it can."""
    reason = SWAP_EXCLUSIONS.get((name, a.key, b.key))
    if reason is not None:
        return reason
    if a.status == b.status and a.writes == b.writes:
        return f"same status ({a.status.name}) and same writes: a swap changes nothing observable"
    return None


def adjacent_pairs() -> list[tuple[str, Check, Check]]:
    """Every adjacent pair of call-specific checks (not ``common``, not ``outcome``, both in one scope) of every
    call."""
    pairs: list[tuple[str, Check, Check]] = []
    for name, order in CHECKS.items():
        own = [chk for chk in order if chk.scope not in ("common", "outcome")]
        pairs += [(name, a, b) for a, b in pairwise(own) if a.scope == b.scope]
    return pairs


def swappable_pairs() -> list[tuple[str, Check, Check]]:
    """The adjacent pairs of :func:`adjacent_pairs` whose swap a conformance suite must tell apart."""
    return [(name, a, b) for name, a, b in adjacent_pairs() if swap_exclusion(name, a, b) is None]


def _check() -> None:
    for name, a, b in SWAP_EXCLUSIONS:
        keys = [chk.key for chk in CHECKS[name]]
        if a not in keys or b not in keys or keys.index(b) != keys.index(a) + 1:
            raise ValueError(f"swap exclusion {name} {a}/{b} is not an adjacent pair")


_check()
