"""Memory rules at their edges and register preservation on every path (spec "Memory rules", "Calling
conventions"): a block ending on the last byte of a page against one a step further, blocks that touch against
blocks that overlap in either direction (batches: their entries and results too), read-once on every call with an
input block, and the registers a call leaves alone, for calls that succeed, fail, and name blocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pvmsi.conformance import eventkit
from pvmsi.conformance.archkit import CALL_INSTRUCTIONS, CONVENTION, MASK64, call_registers, needs, on_arch
from pvmsi.conformance.toolkit import (
    IN_GPA,
    MLX5,
    SCRATCH,
    Session,
    alloc_entry,
    check,
    encode,
    size,
    status_name,
)
from pvmsi.spec.constants import FunctionNumber, KindMask, Limit, MsgKind, Status
from pvmsi.spec.formats import ALLOC_ENTRY, ALLOC_RESULT, BATCH_IN, BATCH_OUT, CLAIM_IN, DEVICE_ID, DEVICE_INFO
from pvmsi.spec.harness_constants import TRAP_REGISTERS, TrapArch

requirement = pytest.mark.requirement
PAGE, ALIGN = int(Limit.PAGE_SIZE), int(Limit.BLOCK_ALIGN)
PAGE_END = SCRATCH + PAGE  # the first byte after the scratch page


# -- where a block may end -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """DEVICE_QUERY with its input or output block placed so that it ends ``past`` bytes after the page's last byte
    (0: exactly on it)."""

    block: str
    past: int

    @property
    def valid(self) -> bool:
        return self.past <= 0


PLACEMENTS = [Placement(b, p) for b in ("input", "output") for p in (0, ALIGN, -ALIGN)]


@requirement("HV-MEM-002")
@pytest.mark.parametrize("where", PLACEMENTS, ids=lambda w: f"{w.block}-ends-{w.past:+d}")
def test_a_block_may_end_on_the_last_byte_of_a_page(session: Session, where: Placement) -> None:
    """A block ending exactly on (or before) the last byte of its page is valid and the call succeeds; one that
    ends an aligned step further crosses the page: INVALID_ADDRESS."""
    session.negotiated()
    in_size, out_size = size(DEVICE_ID), size(DEVICE_INFO)
    if where.block == "input":
        in_gpa, out_gpa = PAGE_END - in_size + where.past, SCRATCH
    else:
        in_gpa, out_gpa = SCRATCH, PAGE_END - out_size + where.past
    out = session.call(
        FunctionNumber.DEVICE_QUERY, encode(DEVICE_ID, MLX5.wire()), out_size, in_gpa=in_gpa, out_gpa=out_gpa
    )
    want = Status.SUCCESS if where.valid else Status.INVALID_ADDRESS
    check(
        out.status == want,
        "HV-MEM-002",
        f"{where.block} ending {where.past:+d} -> {want.name}",
        status_name(out.status),
    )


@requirement("HV-MEM-002")
def test_a_batch_may_fill_its_page_exactly(session: Session) -> None:
    """A MSG_ALLOC whose entries end on the last byte of the page, and whose results end on the last byte of theirs,
    is valid: every entry allocates."""
    session.ready()
    n = 2
    block = encode(BATCH_IN, {"device": MLX5.wire(), "count": n, "start": 0})
    vector = session.wire_vector(0x40)
    block += b"".join(encode(ALLOC_ENTRY, alloc_entry(MsgKind.MSIX, s, vector=vector)) for s in range(n))
    out_size = size(BATCH_OUT) + n * size(ALLOC_RESULT)
    out = session.call(
        FunctionNumber.MSG_ALLOC, block, out_size, in_gpa=PAGE_END - len(block), out_gpa=PAGE_END + PAGE - out_size
    )
    check(
        out.status == Status.SUCCESS, "HV-MEM-002", "blocks ending on their pages' last bytes", status_name(out.status)
    )


# -- overlap in either direction -------------------------------------------------------------------------------------

#: Where DEVICE_QUERY's output block starts, relative to its input block at IN_GPA: touching on either side is
#: valid, one aligned unit of overlap on either side is not.
OVERLAPS: dict[str, tuple[int, Status]] = {
    "output-right-after-input": (size(DEVICE_ID), Status.SUCCESS),
    "output-right-before-input": (-size(DEVICE_INFO), Status.SUCCESS),
    "output-starts-in-input-last-unit": (size(DEVICE_ID) - ALIGN, Status.INVALID_ADDRESS),
    "output-ends-in-input-first-unit": (-size(DEVICE_INFO) + ALIGN, Status.INVALID_ADDRESS),
}


@requirement("HV-MEM-004")
@pytest.mark.parametrize("case", OVERLAPS)
def test_blocks_touch_but_do_not_overlap(session: Session, case: str) -> None:
    """Input and output blocks that touch are disjoint (SUCCESS); sharing one aligned unit at either end is an
    overlap (INVALID_ADDRESS)."""
    session.negotiated()
    at, want = OVERLAPS[case]
    in_gpa = IN_GPA + 0x100
    out = session.call(
        FunctionNumber.DEVICE_QUERY,
        encode(DEVICE_ID, MLX5.wire()),
        size(DEVICE_INFO),
        in_gpa=in_gpa,
        out_gpa=in_gpa + at,
    )
    check(out.status == want, "HV-MEM-004", f"{case} -> {want.name}", status_name(out.status))


@requirement("HV-MEM-004")
@pytest.mark.parametrize("direction", ["results-into-last-entry", "entries-into-last-result"])
def test_batch_overlap_beyond_the_headers(session: Session, direction: str) -> None:
    """A batch's input and output blocks whose headers are apart but whose entries and results share bytes overlap:
    INVALID_ADDRESS, and nothing is allocated."""
    session.ready()
    n = 4
    block = encode(BATCH_IN, {"device": MLX5.wire(), "count": n, "start": 0})
    vector = session.wire_vector(0x40)
    block += b"".join(encode(ALLOC_ENTRY, alloc_entry(MsgKind.MSIX, s, vector=vector)) for s in range(n))
    out_size = size(BATCH_OUT) + n * size(ALLOC_RESULT)
    base = IN_GPA + 0x100
    if direction == "results-into-last-entry":
        in_gpa, out_gpa = base, base + len(block) - ALIGN
    else:
        in_gpa, out_gpa = base + out_size - ALIGN, base
    out = session.call(FunctionNumber.MSG_ALLOC, block, out_size, in_gpa=in_gpa, out_gpa=out_gpa, fill=False)
    check(
        out.status == Status.INVALID_ADDRESS, "HV-MEM-004", f"{direction} -> INVALID_ADDRESS", status_name(out.status)
    )
    info = session.device_info(MLX5)
    check(info.messages_allocated == 0, "HV-MEM-004", "nothing allocated", str(info.messages_allocated))


# -- read-once on every call with an input block ----------------------------------------------------------------------


def _release(session: Session) -> None:
    session.claimed(MLX5, int(KindMask.MSIX))
    out = session.release(MLX5)
    check(out.status == Status.SUCCESS, "HV-DEV-010", "DEVICE_RELEASE -> SUCCESS", status_name(out.status))


def _deactivate(session: Session) -> None:
    session.claimed(MLX5, int(KindMask.MSIX))
    held = session.allocated(MLX5, MsgKind.MSIX, [0, 1, 2])
    b = session.deactivate(MLX5, [{"handle": r.handle} for r in held])
    check(b.status == Status.SUCCESS, "HV-ACT-005", "MSG_DEACTIVATE -> SUCCESS", status_name(b.status))


def _event_config(session: Session) -> None:
    out = eventkit.config(session, 0, 0xE0)
    check(out.status == Status.SUCCESS, "HV-EVT-001", "EVENT_CONFIG -> SUCCESS", status_name(out.status))


def _claim(session: Session) -> None:
    block = encode(CLAIM_IN, {"device": MLX5.wire(), "kinds": int(KindMask.MSIX)})
    out = session.call(FunctionNumber.DEVICE_CLAIM, block)
    check(out.status == Status.SUCCESS, "HV-DEV-009", "DEVICE_CLAIM -> SUCCESS", status_name(out.status))


#: Each call with an input block not covered by test_memory's read-once test, made so that it succeeds.
READ_ONCE: dict[str, Callable[[Session], None]] = {
    "DEVICE_CLAIM": _claim,
    "DEVICE_RELEASE": _release,
    "MSG_DEACTIVATE": _deactivate,
    "EVENT_CONFIG": _event_config,
}


@requirement("HV-MEM-005")
@pytest.mark.parametrize("call", READ_ONCE)
def test_every_call_reads_its_input_once(session: Session, call: str) -> None:
    """The call succeeds and read no byte of its input block twice (counters.last_call_max_reads is 1)."""
    session.negotiated()
    if session.iut.counters(session.vm).last_call_max_reads == 0:
        pytest.skip("unsupported: the IUT does not report guest-memory reads (last_call_max_reads = 0)")
    READ_ONCE[call](session)
    reads = session.iut.counters(session.vm).last_call_max_reads
    check(reads == 1, "HV-MEM-005", f"{call} reads each input byte once", f"some byte read {reads} times")


# -- registers a call leaves alone, on every path ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegCase:
    """A pvmsi call through the trap: its function, its blocks, and the status it must return."""

    name: str
    fn: FunctionNumber
    block: bytes | None
    out_size: int
    status: Status


REG_CASES = [
    RegCase("success-no-block", FunctionNumber.VERSION, None, 0, Status.SUCCESS),
    RegCase(
        "success-with-blocks",
        FunctionNumber.DEVICE_QUERY,
        encode(DEVICE_ID, MLX5.wire()),
        size(DEVICE_INFO),
        Status.SUCCESS,
    ),
    RegCase(
        "failure-with-block",
        FunctionNumber.DEVICE_CLAIM,
        encode(CLAIM_IN, {"device": MLX5.wire(), "kinds": int(KindMask.MSIX)}),
        0,
        Status.WRONG_STATE,
    ),
    RegCase("failure-bad-register", FunctionNumber.VERSION, None, 0, Status.INVALID_PARAMETER),
]


def changeable(arch: TrapArch) -> set[str]:
    """The registers a pvmsi call may change: status and value; arm64's x2 and x3 are returned as zero
    (spec "Calling conventions": every other register is preserved)."""
    cc = CONVENTION[arch]
    regs = {cc.status_register, cc.value_register}
    return regs | ({"x2", "x3"} if arch is TrapArch.ARM64 else set())


@requirement("HV-CALL-004")
@pytest.mark.parametrize("arch", [pytest.param(a, marks=on_arch(a), id=a.name.lower()) for a in CONVENTION])
@pytest.mark.parametrize("case", REG_CASES, ids=lambda c: c.name)
def test_registers_preserved_on_every_path(session: Session, arch: TrapArch, case: RegCase) -> None:
    """Every register other than the status and value registers (and arm64's x2, x3) is as the guest left it: the
    argument registers, and every other register of the trap's file set to a distinct value, whether the call
    succeeds, fails, or names blocks."""
    needs(session, arch)
    if case.fn is not FunctionNumber.VERSION and case.status is Status.SUCCESS:
        session.negotiated()
    in_gpa, out_gpa = IN_GPA, IN_GPA + 0x800
    if case.block is not None:
        session.iut.mem_write(session.vm, in_gpa, case.block)
    args = (in_gpa if case.block is not None else 0, out_gpa if case.out_size else 0, 0, 0)
    if case.name == "failure-bad-register":
        args = (0, 0, 0, 0x5A5A)  # a reserved argument register not zero (HV-CALL-003)
    regs = call_registers(arch, case.fn, args)
    names = TRAP_REGISTERS[arch]
    for i, name in enumerate(names):
        regs.setdefault(name, 0x1000 + 0x11 * i)  # every register the call does not use holds its own value
    before = [regs[n] & MASK64 for n in names]
    handled, after = session.iut.trap(session.vm, 0, arch, CALL_INSTRUCTIONS[arch][0], before, 0)
    session.log(f"TRAP {arch.name} {case.name}: {[hex(r) for r in before]} -> {handled} {[hex(r) for r in after]}")
    check(handled, "HV-CALL-004", "the trap is handled as a pvmsi call", "not handled")
    cc = CONVENTION[arch]
    status = after[names.index(cc.status_register)]
    if arch is not TrapArch.RISCV64:  # riscv64 maps the status into sbiret (HV-ABI-004), checked elsewhere
        check(status == case.status & MASK64, "HV-CALL-004", f"status {case.status.name}", hex(status))
    keep = changeable(arch)
    moved = {n: f"{b:#x} -> {a:#x}" for n, b, a in zip(names, before, after, strict=True) if n not in keep and a != b}
    check(not moved, "HV-CALL-004", f"{case.name}: every preserved register unchanged", str(moved))
