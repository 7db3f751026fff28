"""The fuzzer against every deliberately faulty hypervisor: which of them its oracle catches
(``pvmsi fuzz --check-faults``; the fuzzer is :mod:`pvmsi.reference.fuzz`).

Each fault runs on its own host from the same seed, and stops at the first failure it is caught by; one that
gets through ``inputs`` inputs clean is missed. A fault lives in the hypervisor core or in the system around it,
which the fuzzer builds (:data:`~pvmsi.reference.fuzz.SystemFactory`), or in the backend the suites talk to,
through which the fuzzer then executes its trapping instructions (:data:`~pvmsi.reference.fuzz.TrapHook`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..reference.backend import ARCH_INSTRUCTIONS, ARCH_NAMES, ReferenceHypervisor
from ..reference.fuzz import Fuzzer, SystemFactory, TrapHook, execute_trap
from ..reference.hypervisor.config import HypervisorConfig
from ..reference.hypervisor.core import HypervisorCore
from ..reference.system import ReferenceSystem, SystemVm
from ..spec.harness_constants import TRAP_REGISTERS
from .faults import FAULTS
from .faults.check_order import SwappedChecks

#: The faulty hypervisors the fuzzer runs: its oracle models the default platform (vtd), so a fault of another
#: platform's message format (spec "Message formats") is left to the conformance suite, run on its platform.
#: Faults that show only when the device raises a message it holds (masked, pending) across a call, when a posted
#: request waits for its vCPU across a retarget, or when the guest uses a table after a claim ends or an FLR: the
#: fuzzer's oracle models calls and the pairs they return, not what a device holds, so these are the suite's (spec
#: "Messages in flight", "Masking", "Release").
SUITE_ONLY: frozenset[str] = frozenset(
    {
        "release-keeps-msix-table",
        "release-no-emulation",
        "flr-restores-host-cache",
        "retarget-unmasks-entry",
        "retarget-drops-pending",
        "msi-unmask-drops-pending",
        "retarget-drops-posted",
    }
)
#: The swapped-order faults (faults/check_order.py) show only on a request wrong in two adjacent ways at once, which
#: random inputs rarely are: the suite's test_check_order.py sends exactly those.
FUZZED: tuple[str, ...] = tuple(
    name
    for name, f in FAULTS.items()
    if f.platform in (None, "vtd") and name not in SUITE_ONLY and not issubclass(f.implementation, SwappedChecks)
)


class BackendHost:
    """A faulty backend over the host the fuzzer builds: its traps go through the backend's TRAP."""

    def __init__(self, backend: type[ReferenceHypervisor]) -> None:
        self.backend = backend
        self.hv: ReferenceHypervisor | None = None

    def system(self, config: HypervisorConfig, entries: int | None) -> ReferenceSystem:
        def make(cfg: HypervisorConfig | None, core: type[HypervisorCore]) -> ReferenceSystem:
            return ReferenceSystem(cfg, remap_entries=entries, core=core)

        self.hv = self.backend(config, system=make)  # type: ignore[arg-type]
        return self.hv.system

    def trap(
        self,
        system: ReferenceSystem,
        vm: SystemVm,
        vcpu: int,
        arch: str,
        instruction: str,
        regs: dict[str, int],
        privilege: int = 0,
    ) -> dict[str, int] | None:
        assert self.hv is not None
        (arch_id,) = [a for a, name in ARCH_NAMES.items() if name == arch]
        (insn,) = [i for i in ARCH_INSTRUCTIONS[arch_id] if i.name.lower() == instruction]
        names = TRAP_REGISTERS[arch_id]
        handled, after = self.hv.trap(vm.vm_id, vcpu, arch_id, insn, [regs.get(n, 0) for n in names], privilege)
        return {**regs, **dict(zip(names, after, strict=True))} if handled else None


def host(name: str) -> tuple[SystemFactory, TrapHook]:
    """How the fuzzer builds a host with fault ``name``, and executes traps on it."""
    impl = FAULTS[name].implementation
    if issubclass(impl, HypervisorCore):
        core = impl

        def with_core(config: HypervisorConfig, entries: int | None) -> ReferenceSystem:
            return ReferenceSystem(config, remap_entries=entries, core=core)

        return with_core, execute_trap
    if issubclass(impl, ReferenceSystem):
        system = impl

        def with_system(config: HypervisorConfig, entries: int | None) -> ReferenceSystem:
            return system(config, remap_entries=entries)

        return with_system, execute_trap
    backend = BackendHost(impl)
    return backend.system, backend.trap


def check_fault(args: tuple[str, int, int]) -> dict[str, Any]:
    """Fuzz fault ``name`` for up to ``inputs`` inputs from ``seed``: whether it was caught, after how many
    inputs, and by what."""
    name, inputs, seed = args
    factory, trap = host(name)
    report = Fuzzer(seed, system=factory, trap=trap, stop_at_first=True).run(inputs)
    first = report.failures[0] if report.failures else None
    return {
        "name": name,
        "caught": not report.ok,
        "inputs": report.inputs,
        "by": f"{first.what}: {first.detail[:300]}" if first else "",
    }


def check_faults(
    inputs: int, seed: int, jobs: int = 1, names: Iterable[str] | None = None, done: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Every faulty hypervisor of :data:`FUZZED` (or ``names``) fuzzed: ``{"total", "caught", "missed",
    "faults"}``."""
    todo = [(name, inputs, seed) for name in (names or FUZZED)]
    results: list[dict[str, Any]] = []
    if jobs == 1:
        for job in todo:
            results.append(check_fault(job))
            if done is not None:
                done()
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for result in pool.map(check_fault, todo):
                results.append(result)
                if done is not None:
                    done()
    return {
        "total": len(results),
        "caught": sum(r["caught"] for r in results),
        "missed": [r["name"] for r in results if not r["caught"]],
        "faults": results,
    }
