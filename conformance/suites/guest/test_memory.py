"""Parameter blocks as the guest writes them: placement, overlap, reserved fields, byte order (spec "Memory
rules", "Conventions")."""

from __future__ import annotations

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, GuestSession
from pvmsi.conformance.toolkit import check
from pvmsi.spec.calls import call
from pvmsi.spec.constants import FunctionNumber, MsgKind

requirement = pytest.mark.requirement
#: The most entries one MSG_ALLOC batch carries: a page of them.
PAGE_FULL = call("MSG_ALLOC").max_batch or 1


@requirement("GUEST-MEM-001")
@pytest.mark.parametrize("scratch", [0x10000, 0xFFE000], ids=["low pages", "last two pages of RAM"])
def test_blocks_aligned_in_one_page_of_ram(guest: GuestSession, scratch: int) -> None:
    """Every block is 8-byte aligned, within one 4 KiB page, in guest RAM (also with page-full batches)."""
    guest.boot(scratch)
    guest.clean("GUEST-MEM-001")
    guest.enable(MLX5, MsgKind.MSIX, PAGE_FULL, first_slot=100)
    guest.disable(MLX5, MsgKind.MSIX)
    guest.clean("GUEST-MEM-001")
    check(bool(guest.calls(FunctionNumber.MSG_FREE)), "GUEST-MEM-001", "a page-full batch was made", guest.fns()[-1])


@requirement("GUEST-MEM-002")
def test_input_and_output_blocks_do_not_overlap(guest: GuestSession) -> None:
    """The input and output blocks of every call are disjoint."""
    guest.full_workout()
    guest.clean("GUEST-MEM-002")


@requirement("GEN-CONV-002", "GEN-CONV-003")
def test_reserved_fields_and_undefined_bits_are_zero(guest: GuestSession) -> None:
    """Every input block the guest writes decodes strictly: reserved fields zero, no undefined flag bit."""
    guest.full_workout()
    guest.clean("GEN-CONV-002", "GEN-CONV-003")
    undecoded = [c for c in guest.calls() if c.in_block and c.decoded is None]
    check(not undecoded, "GEN-CONV-002", "every input block decodes", str(len(undecoded)))


@requirement("GEN-CONV-001")
def test_blocks_are_little_endian(guest: GuestSession) -> None:
    """Counts, versions, vectors and every identity field (vCPU, handle, MSI-X slot, vector index and count, in
    every entry format the workout ships) read right as little-endian."""
    guest.full_workout()
    guest.clean("GEN-CONV-001")
    neg = guest.calls(FunctionNumber.NEGOTIATE)[0].decoded
    check(neg.version_major == 1, "GEN-CONV-001", "version_major 1", str(neg.version_major))
