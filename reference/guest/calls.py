"""How the reference guest (:class:`~.core.GuestCore`) issues pvmsi calls (spec "Calling conventions", "Batching
and partial completion"): one call with its input and output blocks in the guest's two scratch pages
(GUEST-MEM-001/002, GUEST-CALL-001), and a batch run in chunks the hypervisor and a page allow, resumed on
INCOMPLETE (GUEST-BATCH-001), its results read only where batch_out says they were written (GUEST-CONV-001,
GUEST-BATCH-002).  Each step of reading a batch's answer is a public method a faulty guest may override.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from ...spec.calls import CALLS_BY_FN
from ...spec.codec import DecodeError, decode, encode
from ...spec.constants import FunctionNumber, Limit, MsgKind, Status
from ...spec.formats import BATCH_IN, BATCH_OUT
from ...spec.layout import layout_of
from .actions import Action, GuestDevice, Hypercall, ReadMemory, WriteMemory

Op = Generator[Action, Any, Any]

#: Where the input and output blocks go in the guest's scratch area of two pages: a page each, so that a batch can
#: fill a page (spec "Batching and partial completion").
IN_OFFSET, OUT_OFFSET = 0, int(Limit.PAGE_SIZE)


class GuestCalls:
    """Issuing calls and running batches (a part of :class:`~.core.GuestCore`)."""

    scratch_gpa: int
    max_batch: int
    calls: int
    #: The messages the guest holds, per device (:class:`~.core.GuestMessage`s, which this part does not import).
    messages: dict[GuestDevice, dict[tuple[MsgKind, int], Any]]

    @property
    def in_gpa(self) -> int:
        return self.scratch_gpa + IN_OFFSET

    @property
    def out_gpa(self) -> int:
        return self.scratch_gpa + OUT_OFFSET

    def call(self, fn: FunctionNumber, block: bytes | None = None, out_size: int = 0) -> Op:
        """Issue one call with the input block at in_gpa and the output block at out_gpa (GUEST-MEM-001/002)."""
        if block is not None:
            yield WriteMemory(self.in_gpa, block)
        args = (self.in_gpa if block is not None else 0, self.out_gpa if out_size else 0, 0, 0)  # GUEST-CALL-001
        status, value = yield Hypercall(int(fn), args, len(block) if block is not None else 0, out_size)
        self.calls += 1
        out = (yield ReadMemory(self.out_gpa, out_size)) if out_size else b""
        return int(status), int(value), out

    @staticmethod
    def device_id(dev: GuestDevice) -> dict[str, Any]:
        """The device_id fields naming ``dev``: a sub-device by its id and PVMSI_DEVID_SUBDEVICE (spec "Devices")."""
        return {
            "segment": dev.segment,
            "bus": dev.bus,
            "devfn": dev.devfn,
            "flags": 1 if dev.pasid is not None else 0,
            "subdevice_id": dev.pasid or 0,
        }

    def batch(
        self, fn: FunctionNumber, dev: GuestDevice, entry_fmt: Any, result_fmt: Any, entries: Sequence[dict[str, Any]]
    ) -> Op:
        """Run entries in batches as large as the hypervisor and a page allow (the smaller of hv_info.max_batch and
        the call's max_batch, HV-BATCH-001), resuming on INCOMPLETE (GUEST-BATCH-001).

        Returns ``(results, status)``: the results of the completed entries, and SUCCESS or the error that stopped
        the batch at entry ``len(results)`` (GUEST-BATCH-002).
        """
        results: list[Any] = []
        result_size = layout_of(result_fmt).size
        out_hdr = layout_of(BATCH_OUT).size
        size = min(self.max_batch, CALLS_BY_FN[fn].max_batch or 1)
        for chunk_start in range(0, len(entries), size):
            chunk = entries[chunk_start : chunk_start + size]
            body = b"".join(encode(entry_fmt, e) for e in chunk)
            start = 0
            while True:
                hdr = {"device": self.device_id(dev), "count": len(chunk), "start": start}
                status, next_index, out = yield from self.call(
                    fn, encode(BATCH_IN, hdr) + body, out_hdr + len(chunk) * result_size
                )
                if status < 0 and not self.batch_out_written(status, next_index, start, out[:out_hdr]):
                    return results, status  # failed in its header checks: no entry of this call completed
                if not self.answer_in_range(status, start, next_index, len(chunk)):
                    return results, Status.INVALID_PARAMETER  # GUEST-REFUSE-002: no result of it is used
                taken = []
                for i in range(start, self.results_taken(status, next_index, len(chunk))):
                    off = out_hdr + i * result_size
                    taken.append(decode(result_fmt, out[off : off + result_size]))
                if fn == FunctionNumber.MSG_ALLOC and not self.handles_fresh(taken, results):
                    return results, Status.INVALID_PARAMETER  # GUEST-REFUSE-002: no result of it is used
                results.extend(taken)
                if self.resumes(status, start, next_index, len(chunk)):
                    start = next_index
                    continue
                if self.batch_failed(status):
                    return results, status
                break
        return results, Status.SUCCESS

    def batch_out_written(self, status: int, value: int, start: int, header: bytes) -> bool:
        """Whether a failed batch call wrote batch_out (an entry failed), rather than failing in its header checks
        before any entry: the value register and batch_out.next_index agree, batch_out.status is the status
        returned and completed is next_index - start (GUEST-CONV-001; HV-BATCH-007)."""
        try:
            hdr = decode(BATCH_OUT, header)
        except DecodeError:
            return False
        return bool(hdr.next_index == value and hdr.status == status and hdr.completed == value - start)

    def answer_in_range(self, status: int, start: int, next_index: int, count: int) -> bool:
        """Whether a batch answer's next_index is one the batch sent can have (GUEST-REFUSE-002): count on SUCCESS,
        past start and short of count on INCOMPLETE (HV-BATCH-004: progress), an entry at or past start on an
        entry's failure."""
        if status == Status.SUCCESS:
            return next_index == count
        if status == Status.INCOMPLETE:
            return start < next_index < count
        return start <= next_index < count

    def handles_fresh(self, taken: Sequence[Any], earlier: Sequence[Any]) -> bool:
        """Whether the handles of an MSG_ALLOC call's completed results are new ones (GUEST-REFUSE-002): non-zero,
        each named once, none held already (nor handed out by an earlier call of the same batch)."""
        handles = [int(r.handle) for r in taken if r.status == Status.SUCCESS]
        held = {m.handle for msgs in self.messages.values() for m in msgs.values()}
        held |= {int(r.handle) for r in earlier}
        return all(handles) and len(set(handles)) == len(handles) and not held & set(handles)

    def results_taken(self, status: int, next_index: int, count: int) -> int:
        """The end of the results a batch call completed: entries below next_index (the value register is
        next_index whenever batch_out was written, HV-BATCH-007, else zero; GUEST-CONV-001)."""
        return min(next_index, count)

    def resumes(self, status: int, start: int, next_index: int, count: int) -> bool:
        """Whether to call the batch again from next_index: INCOMPLETE with progress (GUEST-BATCH-001)."""
        return status == Status.INCOMPLETE and start < next_index < count

    def batch_failed(self, status: int) -> bool:
        """Whether the batch stopped at a failing entry (GUEST-BATCH-002)."""
        return status not in (Status.SUCCESS, Status.INCOMPLETE)
