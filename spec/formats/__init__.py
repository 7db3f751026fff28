"""Every pvmsi 1.0 wire format, one module per area, and :data:`FORMATS`, the registry of them all."""

from ..fields import AREAS, FormatDef, format_def
from . import device, events, harness, messages, negotiation
from .device import CLAIM_IN, DEVICE_ID, DEVICE_INFO
from .events import EVENT, EVENT_ACK_IN, EVENT_CONFIG_IN, EVENT_HEADER
from .messages import (
    ACTIVATE_ENTRY,
    ACTIVATE_RESULT,
    ALLOC_ENTRY,
    ALLOC_RESULT,
    BATCH_IN,
    BATCH_OUT,
    DEACTIVATE_ENTRY,
    DEACTIVATE_RESULT,
    FREE_ENTRY,
    FREE_RESULT,
)
from .negotiation import HV_INFO, NEGOTIATE_IN, NEGOTIATE_OUT


def _registry() -> dict[str, FormatDef]:
    """Each area module's formats (its ``DEFINED``, in definition order), in the order of the spec's areas."""
    defs = [
        fd
        for module in (device, events, harness, messages, negotiation)
        for fd in map(format_def, module.DEFINED)
        if fd
    ]
    names = [fd.name for fd in defs]
    if len(set(names)) != len(names):
        raise ValueError(f"a format name is defined twice: {sorted(n for n in names if names.count(n) > 1)}")
    return {fd.name: fd for fd in sorted(defs, key=lambda fd: AREAS.index(fd.area))}


#: Every format by name, in the order of the spec's areas (negotiation, device, batch, messages, events, harness).
FORMATS: dict[str, FormatDef] = _registry()

__all__ = [
    "ACTIVATE_ENTRY",
    "ACTIVATE_RESULT",
    "ALLOC_ENTRY",
    "ALLOC_RESULT",
    "BATCH_IN",
    "BATCH_OUT",
    "CLAIM_IN",
    "DEACTIVATE_ENTRY",
    "DEACTIVATE_RESULT",
    "DEVICE_ID",
    "DEVICE_INFO",
    "EVENT",
    "EVENT_ACK_IN",
    "EVENT_CONFIG_IN",
    "EVENT_HEADER",
    "FORMATS",
    "FREE_ENTRY",
    "FREE_RESULT",
    "HV_INFO",
    "NEGOTIATE_IN",
    "NEGOTIATE_OUT",
    "device",
    "events",
    "harness",
    "messages",
    "negotiation",
]
