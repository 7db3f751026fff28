"""Every pvmsi 1.0 wire format, one module per area; importing this package registers them all."""

from . import device, harness, messages, negotiation
from .device import CLAIM_IN, DEVICE_ID, DEVICE_INFO
from .messages import (
    ALLOC_ENTRY,
    ALLOC_RESULT,
    BATCH_IN,
    BATCH_OUT,
    FREE_ENTRY,
    FREE_RESULT,
    RETARGET_ENTRY,
    RETARGET_RESULT,
)
from .negotiation import HV_INFO, NEGOTIATE_IN, NEGOTIATE_OUT

__all__ = [
    "ALLOC_ENTRY",
    "ALLOC_RESULT",
    "BATCH_IN",
    "BATCH_OUT",
    "CLAIM_IN",
    "DEVICE_ID",
    "DEVICE_INFO",
    "FREE_ENTRY",
    "FREE_RESULT",
    "HV_INFO",
    "NEGOTIATE_IN",
    "NEGOTIATE_OUT",
    "RETARGET_ENTRY",
    "RETARGET_RESULT",
    "device",
    "harness",
    "messages",
    "negotiation",
]
