"""Faults of the batch machinery (spec "Batching and partial completion")."""

from __future__ import annotations

from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.config import HypervisorConfig
from ...reference.hypervisor.core import HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.messages import BATCH_IN, BATCH_OUT, BatchEnd, BatchFormats, EntryOp
from ...reference.hypervisor.ports import RemapPort
from ...reference.hypervisor.vmstate import Claim, DeviceKey
from ...spec.constants import Status
from ...spec.records import AllocEntry, AllocResult, BatchIn
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


@faults.add("resume-off-by-one", "HV-BATCH-004", "a resumed batch (start > 0) begins one entry early")
class ResumeOffByOne(HypervisorCore):
    def read_header(self, c: Call) -> BatchIn:
        header = super().read_header(c)
        return header._replace(start=header.start - 1) if header.start > 0 else header


@faults.add("continue-after-error", "HV-BATCH-002", "a failing entry is skipped and the batch goes on")
class ContinueAfterError(HypervisorCore):
    def alloc_entry(self, c: Call, key: DeviceKey, claim: Claim, e: AllocEntry) -> AllocResult:
        try:
            return super().alloc_entry(c, key, claim, e)
        except CallError:
            return AllocResult(status=Status.SUCCESS)


@faults.add("wrong-value-register", "HV-BATCH-007", "batch calls return the completed count, not next_index")
class WrongValueRegister(HypervisorCore):
    def finish_batch(self, c: Call, end: BatchEnd) -> CallResult:
        r = super().finish_batch(c, end)
        if r.status in (Status.SUCCESS, Status.INCOMPLETE) and r.value:
            return r._replace(value=r.value - end.header.start if end.header.start else r.value + 1)
        return r


@faults.add(
    "batch-of-64", "HV-BATCH-001", "refuses a batch above 64 entries, less than a page holds and than it reports"
)
class BatchOf64(HypervisorCore):
    def check_header(self, c: Call, formats: BatchFormats, header: BatchIn) -> None:
        super().check_header(c, formats, header)
        if header.count > 64:
            raise CallError(Status.INVALID_PARAMETER, "HV-BATCH-001", f"count {header.count} above 64")


@faults.add(
    "start-at-count-is-done", "HV-BATCH-001", "a batch with start >= count is an already finished batch: SUCCESS"
)
class StartAtCountIsDone(HypervisorCore):
    def batch(self, c: Call, formats: BatchFormats, entry_op: EntryOp) -> CallResult:
        try:
            return super().batch(c, formats, entry_op)
        except CallError as e:
            if e.requirement == "HV-BATCH-001":
                header = self.read_header(c)  # read again, on this failing path only
                if 1 <= header.count <= formats.batch_limit(c.st.config.max_batch):
                    return CallResult(Status.SUCCESS, header.start)
            raise


@faults.add(
    "whole-blocks-before-device",
    "HV-CALL-005",
    "checks a batch's whole input and output blocks before the device its header names",
)
class WholeBlocksBeforeDevice(HypervisorCore):
    def batch(self, c: Call, formats: BatchFormats, entry_op: EntryOp) -> CallResult:
        try:
            return super().batch(c, formats, entry_op)
        except CallError as e:
            if e.status != Status.UNKNOWN_DEVICE and e.requirement != "HV-ALLOC-001":
                raise
            # the device check failed, so the header's address and contents passed: as if the whole blocks had
            # been checked first (the header is read again only on this failing path)
            count = self.read_header(c).count
            in_size = BATCH_IN.size + count * formats.entry.size
            out_size = BATCH_OUT.size + count * formats.result.size
            self.rules.blocks(c.vm.memory, c.in_gpa, in_size, c.out_gpa, out_size)
            raise


@faults.add(
    "failed-batch-rolled-back", "HV-BATCH-003", "a failing MSG_ALLOC entry rolls back the entries completed before it"
)
class FailedBatchRolledBack(HypervisorCore):
    def msg_alloc(self, c: Call) -> CallResult:
        before = set(c.st.messages)
        r = super().msg_alloc(c)
        if r.status < 0:
            for handle in set(c.st.messages) - before:
                self.drop(c.st, c.st.claims[c.st.messages[handle].device], handle)
        return r


@faults.add(
    "yield-before-first-entry",
    "HV-BATCH-006",
    "a yielding hypervisor returns INCOMPLETE with no entry done on every other call",
)
class YieldBeforeFirstEntry(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        self.calls = 0

    def batch(self, c: Call, formats: BatchFormats, entry_op: EntryOp) -> CallResult:
        if c.st.config.yield_after is not None and c.st.claims:
            self.calls += 1
            if self.calls % 2 == 0:  # "need_resched" checked before the first entry
                header = self.read_header(c)
                return self.finish_batch(c, BatchEnd(formats, header, header.start, []))
        return super().batch(c, formats, entry_op)


@faults.add(
    "resume-replays-failure",
    "HV-BATCH-008",
    "remembers a batch's failing entry and answers a resume at that index with the old error, without re-reading it",
)
class ResumeReplaysFailure(HypervisorCore):
    def __init__(self, config: HypervisorConfig, remap: RemapPort) -> None:
        super().__init__(config, remap)
        #: (VM, input block) -> the index of the entry that failed and its error
        self.failures: dict[tuple[int, int], tuple[int, CallError]] = {}

    def batch(self, c: Call, formats: BatchFormats, entry_op: EntryOp) -> CallResult:
        key = (c.vm.vm_id, c.in_gpa)
        remembered = self.failures.pop(key, None)
        if remembered is not None:
            index, error = remembered
            header = self.read_header(c)
            if header.start == index:
                return self.finish_batch(c, BatchEnd(formats, header, index, [], error))
        r = super().batch(c, formats, entry_op)
        if r.status < 0 and r.value:  # an entry after the first failed (a failed header leaves the value zero)
            self.failures[key] = (r.value, CallError(Status(r.status), r.requirement, r.why))
        return r
