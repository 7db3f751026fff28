"""The conformance suites' own speed, for ``pvmsi bench`` (the Performance page, "The conformance suite").

Each figure is the median wall time of several complete runs of a suite (:func:`pvmsi.conformance.runner.run`,
pytest included, as ``pvmsi conformance run`` does it) in this process, after one run that is not counted (the
imports and the first collection): the hypervisor suite against the embedded reference, the guest suite against
the reference guest, and the hypervisor suite against the reference served on a child process's standard input
and output (``exec:``), which adds the harness protocol and its transport.  A benchmark, not a test: nothing
here asserts a time.
"""

from __future__ import annotations

import shlex
import statistics
import sys
import time
from typing import Any

from ..conformance.runner import Role, run

#: The reference hypervisor served over the harness protocol on stdio, started with this interpreter.
EXEC_REFERENCE = f"exec:{shlex.quote(sys.executable)} -m pvmsi serve --role hypervisor --stdio"


class SuiteBenchError(RuntimeError):
    """A suite did not pass against the reference: its time would mean nothing."""


def _median_s(role: Role, iut: str, runs: int) -> float:
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        report = run(role, iut)
        elapsed = time.perf_counter() - start
        s = report.summary
        if s.fail or s.error or s.timeout or not report.complete:
            raise SuiteBenchError(f"the {role} suite against {iut} did not pass: {s}")
        if i:  # the first run pays for imports and the first collection
            times.append(elapsed)
    return statistics.median(times)


def suite_figures(runs: int = 5) -> dict[str, Any]:
    """Median seconds of ``runs`` runs of each suite (see the module docstring)."""
    return {
        "hypervisor_s": _median_s("hypervisor", "reference", runs),
        "guest_s": _median_s("guest", "reference", runs),
        "hypervisor_exec_s": _median_s("hypervisor", EXEC_REFERENCE, runs),
        "runs": runs,
    }
