"""Faulty guests that write one identity field of their batch entries big-endian (GEN-CONV-001): the vCPU, the
handle, the MSI-X slot.  Each patches the input block the reference guest core built, entry by entry."""

from __future__ import annotations

from ...spec.calls import BATCH_CALLS
from ...spec.constants import FunctionNumber
from ...spec.formats import BATCH_IN
from ...spec.layout import layout_of
from .guests import _Call, fault

_HDR = layout_of(BATCH_IN).size


class _SwapsField(_Call):
    """Reverses the bytes of ``field`` in every entry of the batch calls that have it."""

    field = ""

    def patch(self, fn: FunctionNumber, block: bytes) -> bytes:
        call = BATCH_CALLS.get(int(fn))
        if call is None:
            return block
        entry = layout_of(call.entry_format)
        try:
            f = entry.field(self.field)
        except KeyError:
            return block
        out = bytearray(block)
        for at in range(_HDR, len(block) - entry.size + 1, entry.size):
            lo, hi = at + f.offset, at + f.offset + f.size
            out[lo:hi] = out[lo:hi][::-1]
        return bytes(out)


@fault("big-endian-vcpu", "GEN-CONV-001", "writes the vcpu of MSG_ALLOC and MSG_ACTIVATE entries big-endian")
class _BigEndianVcpu(_SwapsField):
    field = "vcpu"


@fault("big-endian-handle", "GEN-CONV-001", "writes the handle of MSG_ACTIVATE, MSG_DEACTIVATE and MSG_FREE big-endian")
class _BigEndianHandle(_SwapsField):
    field = "handle"


@fault("big-endian-slot", "GEN-CONV-001", "writes the slot of MSG_ALLOC entries big-endian")
class _BigEndianSlot(_SwapsField):
    field = "slot"
