"""The memory rules of the reference hypervisor (spec "Memory rules"): the one-call ``blocks`` fast path agrees
with ``block`` + ``block`` + ``disjoint``, and a subclass breaking one rule breaks it in ``blocks`` too."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pvmsi.reference.hypervisor.blocks import ALIGN, PAGE, MemoryRules
from pvmsi.reference.hypervisor.errors import CallError
from pvmsi.reference.hypervisor.ports import GuestMemory as MemoryPort
from pvmsi.reference.platform.vm import GuestMemory

RAM_END = 4 * PAGE


def _memory() -> GuestMemory:
    mem = GuestMemory()
    mem.add_ram(0, RAM_END - PAGE)  # a hole after three pages, then one more page of RAM
    mem.add_ram(RAM_END, PAGE)
    return mem


def _outcome(fn: Callable[..., None], *args: object) -> tuple[int, str] | None:
    try:
        fn(*args)
    except CallError as e:
        return int(e.status), e.why
    return None


def _composed(rules: MemoryRules, mem: GuestMemory, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
    rules.block(mem, in_gpa, in_size, "input")
    rules.block(mem, out_gpa, out_size, "output")
    rules.disjoint(in_gpa, in_size, out_gpa, out_size)


GPA = st.one_of(
    st.integers(min_value=0, max_value=(RAM_END + 2 * PAGE) // ALIGN).map(lambda n: n * ALIGN),  # aligned
    st.integers(min_value=0, max_value=RAM_END + 2 * PAGE),
    st.builds(
        lambda page, back: page * PAGE - back, st.integers(1, 6), st.sampled_from([8, 16, 24, 40])
    ),  # near a page end
)
SIZE = st.one_of(
    st.sampled_from([8, 16, 24, 40, 48, 64, 112, 1560]),  # the sizes of pvmsi blocks
    st.integers(min_value=1, max_value=PAGE),
)


@settings(max_examples=500)
@given(GPA, SIZE, GPA, SIZE)
@example(PAGE + 4, 16, 2 * PAGE, 16)  # input misaligned
@example(PAGE, 16, 2 * PAGE + 4, 16)  # output misaligned
@example(2 * PAGE - 8, 16, PAGE, 16)  # input crosses a page (both pages RAM)
@example(PAGE, 16, 2 * PAGE - 8, 16)  # output crosses a page
@example(RAM_END - PAGE, 16, PAGE, 16)  # input in the hole
@example(PAGE, 16, RAM_END - PAGE, 16)  # output in the hole
@example(PAGE, 64, PAGE + 32, 64)  # overlap
@example(PAGE, 16, 2 * PAGE, 16)  # all fine
def test_blocks_agrees_with_block_block_disjoint(in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
    """Same outcome, same status and the same first failing rule (HV-MEM-001..004, in order)."""
    rules, mem = MemoryRules(), _memory()
    expected = _outcome(_composed, rules, mem, in_gpa, in_size, out_gpa, out_size)
    assert _outcome(rules.blocks, mem, in_gpa, in_size, out_gpa, out_size) == expected


class _NoAlignment(MemoryRules):
    def block(self, memory: MemoryPort, gpa: int, size: int, what: str) -> None:
        super().block(memory, gpa - gpa % ALIGN, size, what)


class _OverlapAllowed(MemoryRules):
    def disjoint(self, in_gpa: int, in_size: int, out_gpa: int, out_size: int) -> None:
        pass


@pytest.mark.parametrize(
    ("rules", "args"),
    [
        (_NoAlignment(), (PAGE + 4, 16, 2 * PAGE, 16)),  # misaligned input
        (_OverlapAllowed(), (PAGE, 64, PAGE + 32, 64)),  # overlapping blocks
    ],
)
def test_a_rule_broken_in_block_or_disjoint_is_broken_in_blocks(
    rules: MemoryRules, args: tuple[int, int, int, int]
) -> None:
    mem = _memory()
    assert _outcome(MemoryRules().blocks, mem, *args) is not None  # the correct rules refuse
    assert _outcome(rules.blocks, mem, *args) is None  # the subclass's blocks uses its own block/disjoint
