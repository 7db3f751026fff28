"""Answers that name what the guest did not ask for, and the checks that it refused them (spec "Version and feature
negotiation", "Batching and partial completion", "Events", "Versioning and extension": GUEST-REFUSE-001..003,
GUEST-EXT-001 and GUEST-EXT-002).

:class:`Overreach` is the knob (``HostKnobs.overreach``) by which the suite's hypervisor model overreaches:
NEGOTIATE grants bits beyond those asked, a batch answer reports a next_index the batch cannot have (one past its
count, short of it, not past start), GET_INFO reports a message format of the vendor range.  :class:`Refusals`
applies it to the model's answers and records what the guest then does with them; :func:`queue_event` puts an
event the test chooses (an unknown device or handle, a vendor type) in the guest's queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from ..spec.calls import BATCH_CALLS
from ..spec.codec import decode
from ..spec.constants import DeliveryFlag, EventType, Feature, FunctionNumber, MsgKind, Status
from ..spec.extension import VENDOR_FEATURES, VENDOR_FUNCTIONS, Extension
from ..spec.formats import ALLOC_RESULT, BATCH_OUT, HV_INFO, NEGOTIATE_OUT
from ..spec.iut import DeviceRef
from ..spec.kinds import kind_bit
from ..spec.layout import layout_of

#: The suite's hypervisor model (:class:`~.guest_host.HostModel`) and one call it recorded (its ``CallRecord``);
#: :mod:`.guest_host` imports this module, so neither is imported here.
HostModel = Any
CallRecord = Any

_NEXT_INDEX = layout_of(BATCH_OUT).field("next_index")
_COMPLETED = layout_of(BATCH_OUT).field("completed")
_BATCH_STATUS = layout_of(BATCH_OUT).field("status")
_FORMAT = layout_of(HV_INFO).field("message_format")
_GRANTED = layout_of(NEGOTIATE_OUT).field("features")
_OUT_HDR = layout_of(BATCH_OUT).size
_ALLOC_ROW = layout_of(ALLOC_RESULT).size
_HANDLE = layout_of(ALLOC_RESULT).field("handle")


@dataclass(frozen=True)
class Overreach:
    """What the model answers beyond the guest's request."""

    #: Bits NEGOTIATE's value and negotiate_out.features report on top of those the guest asked (GUEST-REFUSE-001).
    granted_extra: int = 0
    #: The batch call whose every answer reports ``next_index = count + next_index_delta`` (GUEST-REFUSE-002).
    batch_fn: int = 0
    next_index_delta: int = 0
    #: The status that answer reports (None: the real one); INCOMPLETE with a next_index of count or more, say.
    batch_status: int | None = None
    #: The message_format GET_INFO reports instead of the platform's (GUEST-EXT-002), 0: the platform's.
    message_format: int = 0
    #: A handle MSG_ALLOC's first completed result names instead of its own, once the guest holds a message
    #: (GUEST-REFUSE-002): "zero", "repeat" (the second result repeats the first's) or "held" (one already held).
    alloc_handle: str = ""


@dataclass
class Refusals:
    """The model's overreach, and the answers the guest must refuse (the calls whose answers it must not use)."""

    overreach: Overreach
    #: The batch calls whose answers the guest must refuse: no result of them may be used (GUEST-REFUSE-002).
    refused: list[CallRecord] = field(default_factory=list)
    #: Each refused call's index: the handles the guest held before it, which stay the guest's to use.
    held_before: dict[int, set[int]] = field(default_factory=dict)

    # -- the answers ---------------------------------------------------------------------------------------------

    def answer(self, hv: HostModel, rec: CallRecord, status: int, value: int) -> tuple[int, int]:
        """The answer to ``rec`` as the overreaching model gives it: the status and value the guest sees, the output
        block rewritten in the VM's memory where the model lies there too."""
        o, mem, out = self.overreach, hv.svm.vm.memory, rec.args[1]
        if rec.fn == FunctionNumber.NEGOTIATE and status == Status.SUCCESS and o.granted_extra:
            value |= o.granted_extra
            _write(mem, out, _GRANTED.offset, _GRANTED.size, value)
        elif rec.fn == FunctionNumber.GET_INFO and status == Status.SUCCESS and o.message_format:
            _write(mem, out, _FORMAT.offset, _FORMAT.size, o.message_format)
        elif rec.fn == o.batch_fn and rec.fn in BATCH_CALLS and status >= 0 and rec.decoded is not None:
            status = status if o.batch_status is None else o.batch_status
            value = len(rec.entries) + o.next_index_delta
            _write(mem, out, _NEXT_INDEX.offset, _NEXT_INDEX.size, value)
            _write(mem, out, _COMPLETED.offset, _COMPLETED.size, value - rec.start)
            _write(mem, out, _BATCH_STATUS.offset, _BATCH_STATUS.size, status)
            self.refuse(hv, rec)
        elif rec.fn == FunctionNumber.MSG_ALLOC and status >= 0 and o.alloc_handle and self._lie_handle(hv, rec):
            self.refuse(hv, rec)
        return status, value

    def refuse(self, hv: HostModel, rec: CallRecord) -> None:
        self.refused.append(rec)
        self.held_before[rec.index] = set(hv.issued) & set(hv.live())

    def _lie_handle(self, hv: HostModel, rec: CallRecord) -> bool:
        """Rewrite the handle of MSG_ALLOC's first completed result as ``alloc_handle`` says; whether it did."""
        held = sorted(set(hv.issued) & set(hv.live()))
        if not held or rec.decoded is None or len(rec.entries) - rec.start < 2:
            return False
        mem, row = hv.svm.vm.memory, rec.args[1] + _OUT_HDR + rec.start * _ALLOC_ROW
        first = int.from_bytes(mem.read(row + _HANDLE.offset, _HANDLE.size), "little")
        if self.overreach.alloc_handle == "repeat":
            _write(mem, row + _ALLOC_ROW, _HANDLE.offset, _HANDLE.size, first)
        else:
            _write(mem, row, _HANDLE.offset, _HANDLE.size, 0 if self.overreach.alloc_handle == "zero" else held[0])
        return True

    def after(self, hv: HostModel, rec: CallRecord) -> None:
        """A refused INCOMPLETE is not a batch to resume (GUEST-REFUSE-002 over GUEST-BATCH-001)."""
        if rec in self.refused:
            hv.pending_resume = None

    # -- the checks ----------------------------------------------------------------------------------------------

    def check_call(self, hv: HostModel, rec: CallRecord) -> None:
        """Each call against what the guest asked for: the features of its NEGOTIATE (GUEST-REFUSE-001, vendor bits
        GUEST-EXT-001), the handles of refused answers (GUEST-REFUSE-002), the vendor functions (GUEST-EXT-001)."""
        name = f"fn {rec.fn:#x}"
        if rec.fn in VENDOR_FUNCTIONS and rec.fn != Extension.FN_VENDOR_ID:
            hv.violate("GUEST-EXT-001", f"{name}: a vendor function, and PVMSI_FN_VENDOR_ID named no vendor it knows")
        if rec.decoded is None:
            return
        if rec.fn == FunctionNumber.NEGOTIATE:
            vendor = int(rec.decoded.features) & VENDOR_FEATURES
            if vendor:
                hv.violate("GUEST-EXT-001", f"NEGOTIATE accepts vendor bits {vendor:#x} of a vendor it does not know")
        asked = asked_features(hv)
        if asked is not None:
            # Only bits granted beyond the request: a bit not granted at all is GUEST-NEG-006's (guest_features).
            self._check_asked(hv, rec, asked | ~hv.granted)
        handles = {
            int(r.handle)
            for c in self.refused
            if c.fn == FunctionNumber.MSG_ALLOC
            for r in _results(c)
            if int(r.handle) not in self.held_before[c.index]
        }
        for e in rec.entries[rec.start :]:
            if int(getattr(e, "handle", 0)) in handles:
                hv.violate(
                    "GUEST-REFUSE-002",
                    f"{FunctionNumber(rec.fn).name} names handle {int(e.handle):#x}, from an MSG_ALLOC answer it "
                    "must refuse",
                )

    def _check_asked(self, hv: HostModel, rec: CallRecord, asked: int) -> None:
        if rec.fn == FunctionNumber.DEVICE_CLAIM:
            # A kind's KindMask bit is its feature bit (spec "Constants").
            beyond = [k.name for k in MsgKind if int(rec.decoded.kinds) & kind_bit(k) and not asked & kind_bit(k)]
            if beyond:
                hv.violate(
                    "GUEST-REFUSE-001", f"DEVICE_CLAIM of {'+'.join(beyond)}, which its NEGOTIATE did not ask for"
                )
        if rec.device is not None and rec.device[3] is not None and not asked & Feature.SUBDEVICE:
            hv.violate("GUEST-REFUSE-001", "names a sub-device, and its NEGOTIATE did not ask for SUBDEVICE")
        for i, e in enumerate(rec.entries):
            kind = int(getattr(e, "kind", 0))
            if kind in MsgKind._value2member_map_ and not asked & kind_bit(kind):
                hv.violate("GUEST-REFUSE-001", f"entry {i}: kind {MsgKind(kind).name}, which NEGOTIATE did not ask for")
            if int(getattr(e, "flags", 0)) & DeliveryFlag.POSTED and not asked & Feature.POSTED:
                hv.violate("GUEST-REFUSE-001", f"entry {i}: the POSTED flag, and NEGOTIATE did not ask for POSTED")

    def check_program(self, hv: HostModel, address: int, data: int, label: str) -> None:
        """A pair written into a device: none of an answer the guest must refuse (GUEST-REFUSE-002)."""
        for c in self.refused:
            if address and (address, data) in {(int(r.address), int(r.data)) for r in _results(c)}:
                hv.violate(
                    "GUEST-REFUSE-002",
                    f"{label}: wrote {address:#x}/{data:#x}, from a {FunctionNumber(c.fn).name} answer it must refuse",
                )


def asked_features(hv: HostModel) -> int | None:
    """The features the guest asked for in its last successful NEGOTIATE, None before one."""
    done = [c for c in hv.calls(FunctionNumber.NEGOTIATE) if c.status == Status.SUCCESS and c.decoded is not None]
    return int(done[-1].decoded.features) if done else None


def queue_event(hv: HostModel, event_type: int, dev: DeviceRef | None = None, handle: int = 0) -> None:
    """Queue an event of any type (a vendor one included) naming ``dev`` and ``handle``, and notify the guest's
    target (HV-EVT-002), as the platform would."""
    key = None if dev is None else (dev.segment, dev.bus, dev.devfn, dev.pasid)
    hv.core.queue_event(hv.svm, cast(EventType, event_type), device=key, handle=handle)
    hv.log(f"platform: event type {event_type:#x} device {dev} handle {handle:#x}")


def _results(rec: CallRecord) -> list[Any]:
    """Every result row of ``rec``'s output block in [start, count): what an answer beyond the batch offers."""
    rfmt = BATCH_CALLS[rec.fn].result_format
    size, head = layout_of(rfmt).size, layout_of(BATCH_OUT).size
    rows = [rec.out_block[head + i * size : head + (i + 1) * size] for i in range(rec.start, len(rec.entries))]
    return [decode(rfmt, row) for row in rows if len(row) == size]


def _write(mem: Any, gpa: int, offset: int, size: int, value: int) -> None:
    if gpa and mem.is_ram(gpa + offset, size):
        mem.write(gpa + offset, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))


__all__ = ["Overreach", "Refusals", "asked_features", "queue_event"]
