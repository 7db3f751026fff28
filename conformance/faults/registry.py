"""The registry of deliberately faulty hypervisors: what each is called, the requirement it breaks, and how to
build it from the reference through the reference's public hooks.

A fault is a small subclass of one of three classes of the reference, overriding one public hook (a step of the
core, a factory, or a platform part made by a factory):

* :class:`~pvmsi.reference.hypervisor.core.HypervisorCore`, built as ``ReferenceHypervisor(core=cls)``;
* :class:`~pvmsi.reference.system.ReferenceSystem`, built as ``ReferenceHypervisor(system=cls)``;
* :class:`~pvmsi.reference.backend.ReferenceHypervisor` itself, built as ``cls()``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from ...reference.backend import ReferenceHypervisor
from ...reference.hypervisor.core import HypervisorCore
from ...reference.system import ReferenceSystem
from ...spec.layout import LeafField, layout_of

Implementation = type[HypervisorCore] | type[ReferenceSystem] | type[ReferenceHypervisor]
C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class FaultyImpl:
    """One faulty hypervisor: its name, the requirement it breaks, what it does wrong, and its class."""

    name: str
    breaks: str
    description: str
    implementation: Implementation
    #: The platform the fault shows on (spec "Message formats"), None: any; check-faults runs it there.
    platform: str | None = None

    def build(self, platform: str | None = None) -> ReferenceHypervisor:
        """A fresh faulty hypervisor, named ``faulty:NAME``, on ``platform`` (default: the fault's own, else vtd)."""
        cls = self.implementation
        platform = platform or self.platform
        if issubclass(cls, ReferenceHypervisor):
            hv = cls(platform=platform)
        elif issubclass(cls, ReferenceSystem):
            hv = ReferenceHypervisor(system=cls, platform=platform)
        else:
            hv = ReferenceHypervisor(core=cls, platform=platform)
        hv.name = f"faulty:{self.name}"
        return hv


def unknown(what: str, name: str, known: Collection[str], role: str) -> str:
    """The message for a fault ``name`` that does not exist: the closest names, and the command that lists them
    all (there are too many to print on one line)."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"no {what} {name!r}; {hint}`pvmsi conformance faults --role {role}` lists the {len(known)} there are"


class FaultList:
    """The faulty hypervisors of one spec section, in the order the section defines them."""

    def __init__(self) -> None:
        self.defined: list[FaultyImpl] = []

    def add(self, name: str, breaks: str, description: str, platform: str | None = None) -> Callable[[C], C]:
        """Register the decorated class as the fault ``name``, breaking requirement ``breaks`` (on ``platform``)."""

        def register(cls: C) -> C:
            if not issubclass(cls, HypervisorCore | ReferenceSystem | ReferenceHypervisor):
                raise TypeError(f"{name}: a fault subclasses HypervisorCore, ReferenceSystem or ReferenceHypervisor")
            self.defined.append(FaultyImpl(name, breaks, description, cls, platform))
            return cls

        return register


def leaf(fmt: Any, path: str) -> LeafField:
    """The leaf field ``path`` (e.g. ``"kind"``, ``"device.bus"``) of a format, with its byte offset and size."""
    for found in layout_of(fmt).leaves():
        if found.path == path:
            return found
    raise KeyError(f"{layout_of(fmt).name} has no field {path!r}")
