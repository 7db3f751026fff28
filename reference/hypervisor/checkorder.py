"""The check order of every call as the reference runs it (spec/checks.py, HV-CALL-005).

Every call-specific check of the reference goes through :meth:`OrderedChecks.verdict` with its key in the spec's
check order: the status and requirement of a failure come from the spec's data, so the reference cannot drift
from the order it publishes, and a subclass can change how checks are sequenced (conformance's swapped-order
faults override :meth:`~OrderedChecks.verdict`).  :attr:`~OrderedChecks.trace`, when a list, records every check
run as ``(call, key)``: tests prove from it that the reference runs each call's checks in the spec's order.
"""

from __future__ import annotations

from types import MappingProxyType

from ...spec.checks import CHECKS, Check
from .call import Call
from .errors import CallError

#: Call name -> check key -> its step of the spec's check order.
CHECK_BY_KEY: MappingProxyType[str, dict[str, Check]] = MappingProxyType(
    {name: {chk.key: chk for chk in order} for name, order in CHECKS.items()}
)


class OrderedChecks:
    """Runs the checks of a call by key (a part of :class:`~.core.HypervisorCore`)."""

    #: When a list, every check run is appended as (call name, key); None (the default) records nothing.
    trace: list[tuple[str, str]] | None = None

    def verdict(self, c: Call, key: str, failing: object, why: str = "") -> None:
        """Check ``key`` of ``c``'s call: when ``failing`` holds, the call (or the batch entry) fails with the
        step's status and requirement from the spec's check order (HV-CALL-005)."""
        if self.trace is not None:
            self.trace.append((c.name, key))
        if failing:
            raise self.check_error(c, key, why)

    def check_error(self, c: Call, key: str, why: str = "") -> CallError:
        """The failure of check ``key`` of ``c``'s call."""
        chk = CHECK_BY_KEY[c.name][key]
        return CallError(chk.status, chk.requirement, why or chk.check, key)
