"""Swapped-order faults, generated from the spec's check orders (spec/checks.py, HV-CALL-005).

For every adjacent pair of call-specific checks that a suite can tell apart
(:func:`~pvmsi.spec.check_swaps.swappable_pairs`), all run by the reference through
:meth:`~pvmsi.reference.hypervisor.checkorder.OrderedChecks.verdict`, one faulty hypervisor runs the two the
other way round: when the first fails it looks at the second before answering, and answers with the second's status
when both fail.  conformance/suites/hypervisor/test_check_order.py sends, for each,
a request wrong in exactly those two ways.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.ports import VmPort
from ...spec.check_swaps import swappable_pairs
from ...spec.checks import Check, step_of
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined

#: The pairs that both fail only where a block has one target and aligned identities (the IMSIC, HV-MSI-002,
#: HV-FMT-004): their faults run there.
IMSIC_PAIRS = {
    ("MSG_ALLOC", "target-align", "target-posted"),
    ("MSG_ACTIVATE", "target-align", "target-posted"),
    ("MSG_ACTIVATE", "target-posted", "per-vector"),
    ("MSG_DEACTIVATE", "index", "per-vector"),
    ("MSG_DEACTIVATE", "per-vector", "not-active"),
}


def fault_name(call: str, first: Check, second: Check) -> str:
    return f"swap-{call.lower().replace('_', '-')}-{first.key}-{second.key}"


class SwappedChecks(HypervisorCore):
    """Runs check ``second`` of call ``call`` before check ``first`` (the pair is set by the generated subclass)."""

    call = ""
    first = ""
    second = ""
    pending: CallError | None = None

    def clear(self) -> None:
        """No check is waiting for the next one (a new call)."""
        self.pending = None

    def hypercall(self, vm: VmPort, vcpu: int, fn: int, args: Sequence[int]) -> CallResult:
        self.clear()
        try:
            return super().hypercall(vm, vcpu, fn, args)
        except Exception:  # the first check's failure left the call in a state it never reaches otherwise
            if self.pending is None:
                raise
            return self.failed(self.pending)
        finally:
            self.clear()

    def verdict(self, c: Call, key: str, failing: object, why: str = "") -> None:
        pending = self.pending
        if pending is not None and step_of(c.name, key) < step_of(c.name, self.first):
            super().verdict(c, key, failing, why)  # an earlier check run again (the event calls' handle check)
            return
        if pending is not None:  # the check after the first: the second's failure wins, else the first's
            self.pending = None
            if key == self.second and failing:
                raise self.check_error(c, key, why)
            raise pending
        if c.name == self.call and key == self.first and failing:
            self.pending = self.check_error(c, key, why)  # look at the second check before answering
            return
        super().verdict(c, key, failing, why)


def _generate() -> None:
    for call, first, second in swappable_pairs():
        cls = type(
            f"Swapped_{call}_{first.key}_{second.key}".replace("-", "_"),
            (SwappedChecks,),
            {"call": call, "first": first.key, "second": second.key},
        )
        what = f"{call} checks {second.key} ({second.status.name}) before {first.key} ({first.status.name})"
        where = "imsic" if (call, first.key, second.key) in IMSIC_PAIRS else None
        faults.add(fault_name(call, first, second), "HV-CALL-005", what, platform=where)(cls)


_generate()
