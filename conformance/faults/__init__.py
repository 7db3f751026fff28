"""Deliberately faulty implementations: each breaks exactly one requirement, and the suite must catch each one
with that requirement id (the suite proves its own strength).

The faulty hypervisors are small subclasses of the reference, each overriding one public hook of the core
(:class:`~pvmsi.reference.hypervisor.core.HypervisorCore`), of the system around it
(:class:`~pvmsi.reference.system.ReferenceSystem`, whose factories make the platform parts) or of the
hypervisor behind the IUT interface (:class:`~pvmsi.reference.backend.ReferenceHypervisor`); they are grouped by
spec section, one module each, and :mod:`.registry` builds them.  The faulty guests (:mod:`.guests`) are
subclasses of the reference guest core.

``pvmsi conformance faults`` lists them; ``pvmsi conformance run --iut faulty:NAME`` runs the suite against one,
and ``pvmsi conformance check-faults`` against every one.
"""

from __future__ import annotations

from ...reference.backend import ReferenceHypervisor
from . import (
    activate,
    batch,
    blind_guest,  # noqa: F401  (registers the faulty guests of the blind measurement)
    blind_hv,
    boundary,
    calling,
    check_order,
    device,
    edges,
    events,
    formats,
    guest_events,  # noqa: F401  (registers the event channel's faulty guests)
    guest_order,  # noqa: F401  (registers the big-endian identity faults)
    guest_refusals,  # noqa: F401  (registers the faulty guests of GUEST-REFUSE-*, GUEST-EXT-* and MSI masking)
    guest_release,  # noqa: F401  (registers the faulty guests of GUEST-DEV-003)
    guest_results,  # noqa: F401  (registers the faulty guests of guest_result)
    inflight,
    lifecycle,
    memory,
    messages,
    negotiation,
    security,
    strength,
    teardown,
)
from .guests import GUEST_FAULTS, FaultyGuest, faulty_core, faulty_guest
from .registry import FaultyImpl, unknown

#: Every faulty hypervisor by name, section by section.
FAULTS: dict[str, FaultyImpl] = {
    f.name: f
    for section in (
        calling,
        negotiation,
        memory,
        device,
        boundary,
        messages,
        activate,
        formats,
        batch,
        security,
        lifecycle,
        teardown,
        inflight,
        events,
        strength,
        edges,
        blind_hv,
        check_order,
    )
    for f in section.FAULTS
}


def faulty_hypervisor(name: str, platform: str | None = None) -> ReferenceHypervisor:
    """A fresh instance of the faulty hypervisor ``name`` (on ``platform``, else the fault's own or vtd)."""
    impl = FAULTS.get(name)
    if impl is None:
        raise KeyError(unknown("faulty hypervisor", name, FAULTS, "hypervisor"))
    return impl.build(platform)


__all__ = ["FAULTS", "GUEST_FAULTS", "FaultyGuest", "FaultyImpl", "faulty_core", "faulty_guest", "faulty_hypervisor"]
