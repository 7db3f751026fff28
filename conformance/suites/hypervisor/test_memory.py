"""Memory rules: alignment, page crossing, RAM only, no overlap, read once (spec "Memory rules")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.toolkit import IN_GPA, MLX5, OUT_GPA, SCRATCH, Session, alloc_entry, check, size, status_name
from pvmsi.spec.codec import encode
from pvmsi.spec.constants import Feature, FunctionNumber, KindMask, Limit, MsgKind, Status
from pvmsi.spec.formats import ALLOC_ENTRY, BATCH_IN, BATCH_OUT, HV_INFO, NEGOTIATE_IN, NEGOTIATE_OUT

requirement = pytest.mark.requirement
PAGE = int(Limit.PAGE_SIZE)


def _negotiate_block() -> bytes:
    return encode(NEGOTIATE_IN, {"version_major": 1, "version_minor": 0, "features": int(Feature.MSIX)})


@requirement("HV-MEM-001")
def test_misaligned_blocks(session: Session) -> None:
    """Input and output blocks not aligned to 8 bytes are refused with INVALID_ADDRESS."""
    for delta in (1, 4, 7):
        out = session.call(FunctionNumber.NEGOTIATE, _negotiate_block(), size(NEGOTIATE_OUT), in_gpa=IN_GPA + delta)
        check(
            out.status == Status.INVALID_ADDRESS,
            "HV-MEM-001",
            f"input at +{delta} -> INVALID_ADDRESS",
            status_name(out.status),
        )
        out = session.call(FunctionNumber.GET_INFO, None, size(HV_INFO), out_gpa=OUT_GPA + delta)
        check(
            out.status == Status.INVALID_ADDRESS,
            "HV-MEM-001",
            f"output at +{delta} -> INVALID_ADDRESS",
            status_name(out.status),
        )


@requirement("HV-MEM-002")
def test_blocks_crossing_a_page(session: Session) -> None:
    """A block, or a batch's entries, crossing a 4 KiB page is INVALID_ADDRESS and allocates nothing."""
    edge = SCRATCH + PAGE - 8
    out = session.call(FunctionNumber.NEGOTIATE, _negotiate_block(), size(NEGOTIATE_OUT), in_gpa=edge)
    check(
        out.status == Status.INVALID_ADDRESS,
        "HV-MEM-002",
        "a 16-byte input 8 bytes before a page end",
        status_name(out.status),
    )
    out = session.call(FunctionNumber.GET_INFO, None, size(HV_INFO), out_gpa=SCRATCH + PAGE - 40)
    check(
        out.status == Status.INVALID_ADDRESS,
        "HV-MEM-002",
        "a 48-byte output 40 bytes before a page end",
        status_name(out.status),
    )
    session.ready()
    # the header fits in the page, the entries do not
    entries = [alloc_entry(MsgKind.MSIX, s) for s in range(4)]
    block = encode(BATCH_IN, {"device": MLX5.wire(), "count": 4, "start": 0}) + b"".join(
        encode(ALLOC_ENTRY, e) for e in entries
    )
    at = SCRATCH + PAGE - size(BATCH_IN) - 24
    out = session.call(FunctionNumber.MSG_ALLOC, block, size(BATCH_OUT) + 4 * 24, in_gpa=at)
    check(
        out.status == Status.INVALID_ADDRESS,
        "HV-MEM-002",
        "batch entries crossing the page -> INVALID_ADDRESS",
        status_name(out.status),
    )
    check(session.device_info(MLX5).messages_allocated == 0, "HV-MEM-002", "nothing allocated", "something was")


@requirement("HV-MEM-003")
def test_blocks_outside_ram(session: Session) -> None:
    """A block above the VM's RAM or in the interrupt window (MMIO) is refused with INVALID_ADDRESS."""
    for gpa, what in ((0x4000_0000, "above the VM's 16 MiB of RAM"), (0xFEE0_0000, "the interrupt window (MMIO)")):
        out = session.call(FunctionNumber.GET_INFO, None, 0, args=(0, gpa, 0, 0))
        check(
            out.status == Status.INVALID_ADDRESS,
            "HV-MEM-003",
            f"output {what} -> INVALID_ADDRESS",
            status_name(out.status),
        )
    out = session.call(FunctionNumber.NEGOTIATE, None, 0, args=(0x4000_0000, OUT_GPA, 0, 0))
    check(
        out.status == Status.INVALID_ADDRESS,
        "HV-MEM-003",
        "input above RAM -> INVALID_ADDRESS",
        status_name(out.status),
    )


@requirement("HV-MEM-004")
def test_overlapping_blocks(session: Session) -> None:
    """Overlapping input and output blocks are refused with INVALID_ADDRESS."""
    out = session.call(FunctionNumber.NEGOTIATE, _negotiate_block(), size(NEGOTIATE_OUT), out_gpa=IN_GPA + 8)
    check(
        out.status == Status.INVALID_ADDRESS,
        "HV-MEM-004",
        "overlapping input and output -> INVALID_ADDRESS",
        status_name(out.status),
    )


@requirement("HV-MEM-005")
def test_each_input_byte_read_once(session: Session) -> None:
    """Every call that has an input block reads each of its bytes at most once: NEGOTIATE, DEVICE_QUERY,
    DEVICE_CLAIM, and the three batch calls with several entries each.

    Each call is made where it must read its whole input (it succeeds), so a count of 0 can only mean that the
    IUT does not track reads (counter_values.last_call_max_reads); that is decided once, on the first call.
    """

    def reads_of(call: str) -> None:
        reads = session.iut.counters(session.vm).last_call_max_reads
        check(reads == 1, "HV-MEM-005", f"{call} reads each input byte once", f"some byte read {reads} times")

    out = session.negotiate()  # a fresh VM: NEGOTIATE reads its whole block
    check(out.status == Status.SUCCESS, "HV-NEG-005", "NEGOTIATE -> SUCCESS", status_name(out.status))
    if session.iut.counters(session.vm).last_call_max_reads == 0:
        pytest.skip("unsupported: the IUT does not report guest-memory reads (last_call_max_reads = 0)")
    reads_of("NEGOTIATE")
    session.device_info(MLX5)
    reads_of("DEVICE_QUERY")
    session.claimed(MLX5, int(KindMask.MSIX))
    reads_of("DEVICE_CLAIM")
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, s, vcpu=s % session.vcpus) for s in range(16)])
    check(b.status == Status.SUCCESS, "HV-ALLOC-007", "SUCCESS", status_name(b.status))
    reads_of("MSG_ALLOC")
    handles = [r.handle for r in b.results]
    moved = [
        {"handle": h, "vcpu": (i + 1) % session.vcpus, "vector": 0x50 + i, "flags": 0} for i, h in enumerate(handles)
    ]
    b = session.retarget(MLX5, moved)
    check(b.status == Status.SUCCESS, "HV-RETGT-001", "SUCCESS", status_name(b.status))
    reads_of("MSG_ACTIVATE")
    b = session.free(MLX5, handles)
    check(b.status == Status.SUCCESS, "HV-FREE-001", "SUCCESS", status_name(b.status))
    reads_of("MSG_FREE")


@requirement("HV-MEM-006", "HV-MEM-007")
def test_output_written_only_as_specified(session: Session) -> None:
    """A batch failing before its entries writes no output; one failing at entry 0 still writes batch_out."""
    session.negotiated()
    out = session.claim(MLX5, 0)
    check(out.status == Status.INVALID_PARAMETER, "HV-DEV-006", "INVALID_PARAMETER", status_name(out.status))
    # a batch whose header fails: nothing written; one whose first entry fails: batch_out written
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0)])
    check(
        b.status == Status.WRONG_STATE and b.header is None,
        "HV-MEM-006",
        "unclaimed device: no output",
        f"{status_name(b.status)} {b.header}",
    )
    session.claimed(MLX5, 4)
    b = session.alloc(MLX5, [alloc_entry(MsgKind.MSIX, 0, vcpu=99)])
    check(
        b.header is not None and b.header.next_index == 0,
        "HV-MEM-007",
        "batch_out written at entry 0 failure",
        str(b.header),
    )
