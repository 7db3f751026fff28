"""Parameter blocks in guest memory: the memory rules (spec "Memory rules")."""

from __future__ import annotations

from typing import Any

from ...spec.constants import Limit, Status
from .errors import CallError
from .ports import GuestMemory

PAGE = int(Limit.PAGE_SIZE)
ALIGN = int(Limit.BLOCK_ALIGN)
_PAGE_SHIFT = PAGE.bit_length() - 1
_INVALID_ADDRESS = Status.INVALID_ADDRESS


class MemoryRules:
    """The memory rules as an object the core consults, so that a deliberately faulty core (conformance's
    faulty implementations) can break exactly one of them.

    :meth:`block` checks one block and :meth:`disjoint` a pair; :meth:`blocks` is both blocks of a call and
    their disjointness in one call, the hot path of every batch.  A subclass that overrides :meth:`block` or
    :meth:`disjoint` gets a :meth:`blocks` made of its own two (``__init_subclass__``), so a rule broken in
    one place is broken everywhere.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if ("block" in cls.__dict__ or "disjoint" in cls.__dict__) and "blocks" not in cls.__dict__:
            cls.blocks = MemoryRules._composed_blocks  # type: ignore[method-assign]

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        """Apply the memory rules to one block (HV-MEM-001..003)."""
        if gpa % ALIGN:
            raise CallError(_INVALID_ADDRESS, f"{what} block at {gpa:#x} is not {ALIGN}-byte aligned (HV-MEM-001)")
        if gpa >> _PAGE_SHIFT != (gpa + size - 1) >> _PAGE_SHIFT:
            raise CallError(_INVALID_ADDRESS, f"{what} block {gpa:#x}+{size} crosses a {PAGE}-byte page (HV-MEM-002)")
        if not memory.is_ram(gpa, size):
            raise CallError(_INVALID_ADDRESS, f"{what} block {gpa:#x}+{size} is not guest RAM (HV-MEM-003)")

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        """Input and output blocks must not overlap (HV-MEM-004)."""
        if in_gpa < out_gpa + out_size and out_gpa < in_gpa + in_size:
            raise CallError(_INVALID_ADDRESS, "input and output blocks overlap (HV-MEM-004)")

    def blocks(self, memory: GuestMemory, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        """``block`` on the input, then on the output, then ``disjoint`` (the same checks, in one call)."""
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
            self._composed_blocks(memory, in_gpa, in_size, out_gpa, out_size)  # which rule, in order

    def _composed_blocks(self, memory: GuestMemory, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        self.block(memory, in_gpa, in_size, "input")
        self.block(memory, out_gpa, out_size, "output")
        self.disjoint(in_gpa, in_size, out_gpa, out_size)
