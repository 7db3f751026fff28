"""Faults of the memory rules (spec "Memory rules"): a core with memory rules of its own
(:meth:`~pvmsi.reference.hypervisor.core.HypervisorCore.make_rules`), or one that reads or writes guest memory
where it must not."""

from __future__ import annotations

from ...reference.hypervisor.blocks import ALIGN, PAGE, MemoryRules
from ...reference.hypervisor.call import Call, CallResult
from ...reference.hypervisor.core import Handler, HypervisorCore
from ...reference.hypervisor.errors import CallError
from ...reference.hypervisor.messages import BatchEnd
from ...reference.hypervisor.ports import GuestMemory
from ...spec.calls import CALLS_BY_FN
from ...spec.constants import FunctionNumber, Status
from ...spec.fastcodec import fast
from ...spec.formats import DEVICE_INFO
from ...spec.layout import layout_of
from .registry import FaultList

faults = FaultList()
FAULTS = faults.defined


class UnalignedRules(MemoryRules):
    """Checks a block as if it started at the aligned address below it."""

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        super().block(memory, gpa - gpa % ALIGN, size, what)


@faults.add("no-alignment-check", "HV-MEM-001", "accepts parameter blocks at unaligned addresses")
class NoAlignmentCheck(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return UnalignedRules()


class FirstPageRules(MemoryRules):
    """Checks only the part of a block in its first page."""

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        super().block(memory, gpa, min(size, PAGE - gpa % PAGE), what)


@faults.add("page-crossing", "HV-MEM-002", "accepts parameter blocks that cross a 4 KiB page")
class PageCrossing(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return FirstPageRules()


class OverlapRules(MemoryRules):
    """Lets the input and output blocks overlap."""

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        return None


@faults.add("overlapping-blocks", "HV-MEM-004", "accepts overlapping input and output blocks")
class OverlappingBlocks(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return OverlapRules()


class EfaultRules(MemoryRules):
    """Maps a failed guest memory access (-EFAULT) to INVALID_PARAMETER, as a careless -errno switch does."""

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        if gpa % ALIGN == 0 and gpa // PAGE == (gpa + size - 1) // PAGE and not memory.is_ram(gpa, size):
            raise CallError(Status.INVALID_PARAMETER, "HV-MEM-003", "guest memory access failed (-EFAULT as EINVAL)")
        super().block(memory, gpa, size, what)


@faults.add(
    "efault-as-invalid-parameter",
    "HV-MEM-003",
    "a block outside guest RAM fails with INVALID_PARAMETER (-EFAULT as EINVAL)",
)
class EfaultAsInvalidParameter(HypervisorCore):
    def make_rules(self) -> MemoryRules:
        return EfaultRules()


@faults.add("double-fetch", "HV-MEM-005", "reads the input block a second time after checking it")
class DoubleFetch(HypervisorCore):
    #: The calls that fetch their input block twice.
    double_fetched: frozenset[FunctionNumber] = frozenset({FunctionNumber.NEGOTIATE, FunctionNumber.MSG_ALLOC})

    def handler(self, fn: FunctionNumber) -> Handler | None:
        inner = super().handler(fn)
        if inner is None or fn not in self.double_fetched:
            return inner
        call: Handler = inner
        input_format = CALLS_BY_FN[fn].input
        size = fast(input_format).size if input_format is not None else 0

        def fetch_again(c: Call) -> CallResult:
            r = call(c)
            c.vm.memory.read(c.in_gpa, size)
            return r

        return fetch_again


@faults.add("double-fetch-claim", "HV-MEM-005", "DEVICE_CLAIM reads its input block a second time")
class DoubleFetchClaim(DoubleFetch):
    double_fetched = frozenset({FunctionNumber.DEVICE_CLAIM})


@faults.add("double-fetch-retarget", "HV-MEM-005", "MSG_ACTIVATE reads its batch header a second time")
class DoubleFetchRetarget(DoubleFetch):
    double_fetched = frozenset({FunctionNumber.MSG_ACTIVATE})


@faults.add(
    "query-clears-output-first", "HV-MEM-006", "DEVICE_QUERY zeroes its output block before it looks the device up"
)
class QueryClearsOutputFirst(HypervisorCore):
    def device_query(self, c: Call) -> CallResult:
        try:
            return super().device_query(c)
        except CallError as e:
            if e.status == Status.UNKNOWN_DEVICE:
                c.vm.memory.write(c.out_gpa, bytes(layout_of(DEVICE_INFO).size))
            raise


@faults.add("no-batch-out-when-nothing-done", "HV-MEM-007", "writes no batch_out when the first entry of a batch fails")
class NoBatchOutWhenNothingDone(HypervisorCore):
    def finish_batch(self, c: Call, end: BatchEnd) -> CallResult:
        error = end.error
        if error is not None and end.next_index == end.header.start:  # nothing completed: it "need not" be written
            return CallResult(error.status, end.next_index, error.why, error.requirement)
        return super().finish_batch(c, end)
