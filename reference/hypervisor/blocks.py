"""Parameter blocks in guest memory: the memory rules (spec "Memory rules") and reading each byte once."""

from __future__ import annotations

from ...spec.constants import Limit, Status
from .errors import CallError
from .ports import GuestMemory

PAGE = int(Limit.PAGE_SIZE)
ALIGN = int(Limit.BLOCK_ALIGN)
_PAGE_SHIFT = PAGE.bit_length() - 1


class MemoryRules:
    """The memory rules as an object the core consults, so that a deliberately faulty core (conformance's
    faulty implementations) can break exactly one of them."""

    def block(self, memory: GuestMemory, gpa: int, size: int, what: str) -> None:
        """Apply the memory rules to one block (HV-MEM-001..003)."""
        if gpa % ALIGN:
            raise CallError(
                Status.INVALID_ADDRESS, f"{what} block at {gpa:#x} is not {ALIGN}-byte aligned (HV-MEM-001)"
            )
        if gpa >> _PAGE_SHIFT != (gpa + size - 1) >> _PAGE_SHIFT:
            raise CallError(
                Status.INVALID_ADDRESS, f"{what} block {gpa:#x}+{size} crosses a {PAGE}-byte page (HV-MEM-002)"
            )
        if not memory.is_ram(gpa, size):
            raise CallError(Status.INVALID_ADDRESS, f"{what} block {gpa:#x}+{size} is not guest RAM (HV-MEM-003)")

    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        """Input and output blocks must not overlap (HV-MEM-004)."""
        if in_gpa < out_gpa + out_size and out_gpa < in_gpa + in_size:
            raise CallError(Status.INVALID_ADDRESS, "input and output blocks overlap (HV-MEM-004)")
