"""Parameter blocks in guest memory: the memory rules (spec "Memory rules")."""

from __future__ import annotations

from ...spec.constants import Limit, Status
from .errors import CallError
from .ports import GuestMemory

PAGE = int(Limit.PAGE_SIZE)
ALIGN = int(Limit.BLOCK_ALIGN)
_PAGE_SHIFT = PAGE.bit_length() - 1


class MemoryRules:
    """The memory rules as an object the core consults; the core makes it through
    :meth:`~.core.HypervisorCore.make_rules`, so a core may apply rules of its own.

    :meth:`block` checks one block (HV-MEM-001..003) and :meth:`disjoint` a pair (HV-MEM-004); :meth:`blocks`
    checks both blocks of a call and their disjointness at once, the hot path of every batch.  :meth:`blocks`
    answers from one combined test when every rule holds, and otherwise asks :meth:`block` and :meth:`disjoint`
    which rule failed, in order (:meth:`check_blocks`): a subclass that relaxes a rule in :meth:`block` or
    :meth:`disjoint` relaxes it in :meth:`blocks` too.  A subclass that makes a rule stricter overrides
    :meth:`blocks` as well (or makes it :meth:`check_blocks`).

    Every failure names its step of the call's check order (spec/checks.py) as :attr:`.CallError.check`:
    ``{what}-align``, ``{what}-page`` or ``{what}-ram`` for the block ``what`` ("input" or "output"),
    ``overlap`` for :meth:`disjoint`; the core reports a batch's whole-block failures through its check runner
    by that key (the batch calls name the input rules on the whole block ``whole-input-page`` and
    ``whole-input-ram``).
    """

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        """Apply the memory rules to one block (HV-MEM-001..003)."""
        if gpa % ALIGN:
            why = f"{what} block at {gpa:#x} is not {ALIGN}-byte aligned"
            raise CallError(Status.INVALID_ADDRESS, "HV-MEM-001", why, f"{what}-align")
        if gpa >> _PAGE_SHIFT != (gpa + size - 1) >> _PAGE_SHIFT:
            why = f"{what} block {gpa:#x}+{size} crosses a {PAGE}-byte page"
            raise CallError(Status.INVALID_ADDRESS, "HV-MEM-002", why, f"{what}-page")
        if not memory.is_ram(gpa, size):
            why = f"{what} block {gpa:#x}+{size} is not guest RAM"
            raise CallError(Status.INVALID_ADDRESS, "HV-MEM-003", why, f"{what}-ram")

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        """Input and output blocks must not overlap (HV-MEM-004)."""
        if in_gpa < out_gpa + out_size and out_gpa < in_gpa + in_size:
            raise CallError(Status.INVALID_ADDRESS, "HV-MEM-004", "input and output blocks overlap", "overlap")

    def blocks(self, memory: GuestMemory, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        """:meth:`block` on the input, then on the output, then :meth:`disjoint` (HV-MEM-001..004, in order)."""
        in_end, out_end = in_gpa + in_size, out_gpa + out_size
        if (
            in_gpa % ALIGN
            or out_gpa % ALIGN
            or in_gpa >> _PAGE_SHIFT != (in_end - 1) >> _PAGE_SHIFT
            or out_gpa >> _PAGE_SHIFT != (out_end - 1) >> _PAGE_SHIFT
            or not memory.is_ram(in_gpa, in_size)
            or not memory.is_ram(out_gpa, out_size)
            or (in_gpa < out_end and out_gpa < in_end)
        ):
            self.check_blocks(memory, in_gpa, in_size, out_gpa, out_size)  # which rule, in order

    def check_blocks(self, memory: GuestMemory, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        """The rules of :meth:`blocks`, one check at a time through :meth:`block` and :meth:`disjoint`, so the
        first failed rule is the one reported (HV-MEM-001..004, in order)."""
        self.block(memory, in_gpa, in_size, "input")
        self.block(memory, out_gpa, out_size, "output")
        self.disjoint(in_gpa, in_size, out_gpa, out_size)
