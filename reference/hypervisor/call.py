"""One hypercall in progress and its result: what every call handler of the hypervisor core takes and returns
(spec "Calling conventions": the status and value registers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .ports import VmPort
from .vmstate import VmPvmsi


class CallResult(NamedTuple):
    """What the hypervisor puts in the status and value registers (immutable; a tuple, cheap to build)."""

    status: int
    value: int = 0
    #: Why a call failed, in words; diagnostics only, never on the wire.
    why: str = ""
    #: The id of the requirement whose check failed the call (``""`` on success); diagnostics only.
    requirement: str = ""


class Call(NamedTuple):
    """One call in progress (immutable; built as a tuple on every hypercall)."""

    vm: VmPort
    st: VmPvmsi
    vcpu: int
    args: Sequence[int]
    #: The call's name in the spec's call table (its check order, spec/checks.py).
    name: str = ""

    @property
    def in_gpa(self) -> int:
        return self.args[0]

    @property
    def out_gpa(self) -> int:
        return self.args[1]
