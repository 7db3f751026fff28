"""What the guest may name once NEGOTIATE succeeded (GUEST-NEG-006): only message kinds, delivery flags and
sub-device ids whose feature bit NEGOTIATE granted, the guest-side rule of what HV-NEG-008 refuses. Checked by the guest
suite's hypervisor model (:class:`~.guest_host.HostModel`) on every call, before it runs."""

from __future__ import annotations

from typing import Any

from ..spec.constants import KIND_FEATURE, DeliveryFlag, Feature, FunctionNumber, MsgKind
from ..spec.kinds import kind_bit

RULE = "GUEST-NEG-006"
#: The calls whose entries carry a delivery flags field (``flags``: POSTED).
FLAGGED = (FunctionNumber.MSG_ALLOC, FunctionNumber.MSG_ACTIVATE)


def _kind_name(kind: int) -> str:
    return MsgKind(kind).name if kind in MsgKind._value2member_map_ else f"kind {kind}"


def unnegotiated_uses(fn: int, decoded: Any, entries: list[Any], pasid: int | None, in_force: int) -> list[str]:
    """What a call names whose feature is not in ``in_force`` (the features NEGOTIATE returned), in words."""
    found: list[str] = []
    if pasid is not None and not in_force & Feature.SUBDEVICE:
        found.append(f"sub-device {pasid} without SUBDEVICE")
    if fn == FunctionNumber.DEVICE_CLAIM and decoded is not None:
        for kind, feature in KIND_FEATURE.items():
            if int(decoded.kinds) & kind_bit(kind) and not in_force & feature:
                found.append(f"DEVICE_CLAIM of {kind.name}, not negotiated")
    if fn == FunctionNumber.MSG_ALLOC:
        for value in sorted({int(e.kind) for e in entries}):
            wanted = KIND_FEATURE.get(MsgKind(value)) if value in MsgKind._value2member_map_ else None
            if wanted is not None and not in_force & wanted:
                found.append(f"MSG_ALLOC of {_kind_name(value)}, not negotiated")
    posted = any(int(getattr(e, "flags", 0)) & DeliveryFlag.POSTED for e in entries)
    if fn in FLAGGED and posted and not in_force & Feature.POSTED:
        found.append(f"{FunctionNumber(fn).name} entry with POSTED, not negotiated")
    return found
