"""The guest under test answers the harness as its appendix defines ("Sessions", "Guest commands"): an ERROR frame
of the named code, at the named offset, for a request of the other role, an unknown frame kind, a payload of the
wrong length, an unknown GuestOp or message kind, a misaligned scratch page, a result that answers nothing; and it
goes on serving the next frame (GUEST-STAT-002)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pvmsi.conformance.guest_toolkit import MLX5, SCRATCH, GuestSession
from pvmsi.conformance.guest_wire import RawGuest, hello_body
from pvmsi.conformance.harness.frames import HEADER_SIZE, KIND_AT, SEQ_AT, Frame, payload_at
from pvmsi.conformance.toolkit import check
from pvmsi.spec.formats.harness import GUEST_COMMAND, HELLO
from pvmsi.spec.harness_constants import FrameKind, GuestOp, HarnessRole, HarnessStatus
from pvmsi.spec.layout import layout_of

requirement = pytest.mark.requirement
RID = "GUEST-STAT-002"
#: A frame kind no harness version assigns to a request the guest serves.
UNKNOWN_KIND = 0x7D


@pytest.fixture
def raw(guest: GuestSession) -> Iterator[RawGuest]:
    wire = RawGuest(guest.iut)
    try:
        yield wire
    finally:
        wire.close()


def _command(raw: RawGuest, **fields: Any) -> dict[str, Any]:
    body = {
        "op": GuestOp.BOOT,
        "kind": 0,
        "count": 0,
        "device": MLX5.wire(),
        "vcpu": 0,
        "vector": 0,
        "first_slot": 0,
        "scratch_gpa": SCRATCH,
    }
    body.update(fields)
    return body


def _error(raw: RawGuest, data: bytes, code: HarnessStatus, offset: int | None, what: str) -> Frame:
    answers = raw.exchange(data)
    check(len(answers) == 1, RID, f"{what}: one ERROR frame", f"{len(answers)} frames")
    f = answers[0]
    got = f"{f.kind.name}" + (
        f" {HarnessStatus(f.body.code).name} at {f.body.offset}" if f.kind is FrameKind.ERROR else ""
    )
    want = f"ERROR {code.name}" + (f" at {offset}" if offset is not None else "")
    ok = f.kind is FrameKind.ERROR and f.body.code == code and (offset is None or f.body.offset == offset)
    check(ok, RID, f"{what}: {want}", got)
    sent_seq = int.from_bytes(data[SEQ_AT : SEQ_AT + 4], "little")
    check(f.seq == sent_seq, RID, f"{what}: the ERROR carries the request's seq {sent_seq:#x}", hex(f.seq))
    return f


def _still_serving(raw: RawGuest, what: str) -> None:
    """The session goes on: a HELLO naming the guest role is answered HELLO_ACK."""
    answers = raw.exchange(raw.frame(FrameKind.HELLO, hello_body()))
    got = ", ".join(f.kind.name for f in answers) or "no answer"
    ok = len(answers) == 1 and answers[0].kind is FrameKind.HELLO_ACK
    check(ok, RID, f"after {what}: HELLO answered HELLO_ACK", got)


@requirement(RID)
@pytest.mark.parametrize(
    ("kind", "body"),
    [(FrameKind.VM_DESTROY, {"vm": 1}), (FrameKind.COLLECT, {"vm": 0})],
    ids=["VM_DESTROY", "COLLECT"],
)
def test_a_request_of_the_hypervisor_role_is_wrong_role(raw: RawGuest, kind: FrameKind, body: dict[str, Any]) -> None:
    """A request only a hypervisor IUT serves: ERROR WRONG_ROLE at the header's kind; the session goes on."""
    _error(raw, raw.frame(kind, body), HarnessStatus.WRONG_ROLE, KIND_AT, kind.name)
    _still_serving(raw, kind.name)


@requirement(RID)
def test_a_hello_naming_the_hypervisor_role(raw: RawGuest) -> None:
    """HELLO naming the hypervisor role: ERROR WRONG_ROLE at harness_hello.role; the session goes on."""
    data = raw.frame(FrameKind.HELLO, hello_body(HarnessRole.HYPERVISOR))
    _error(raw, data, HarnessStatus.WRONG_ROLE, payload_at(HELLO, "role"), "HELLO of the hypervisor role")
    _still_serving(raw, "a HELLO of the other role")


@requirement(RID)
def test_an_unknown_frame_kind(raw: RawGuest) -> None:
    """A frame of an unassigned kind: ERROR UNKNOWN_KIND at the header's kind; its payload skipped, the session goes
    on."""
    frame = bytearray(raw.frame(FrameKind.COLLECT, {"vm": 0}))
    frame[KIND_AT : KIND_AT + 2] = UNKNOWN_KIND.to_bytes(2, "little")
    _error(raw, bytes(frame), HarnessStatus.UNKNOWN_KIND, KIND_AT, f"kind {UNKNOWN_KIND:#x}")
    _still_serving(raw, "an unknown kind")


@requirement(RID)
def test_a_guest_command_of_the_wrong_length(raw: RawGuest) -> None:
    """GUEST_COMMAND with 8 bytes of payload: ERROR BAD_LENGTH at the first byte missing (16 + 8); with 8 bytes
    too many: at the first byte after the format; the session goes on."""
    full = raw.frame(FrameKind.GUEST_COMMAND, _command(raw))
    short = bytearray(full[:16] + full[16:24])
    short[12:16] = (8).to_bytes(4, "little")
    _error(raw, bytes(short), HarnessStatus.BAD_LENGTH, HEADER_SIZE + 8, "an 8-byte GUEST_COMMAND")
    size = layout_of(GUEST_COMMAND).size
    long = bytearray(full + bytes(8))
    long[12:16] = (size + 8).to_bytes(4, "little")
    _error(raw, bytes(long), HarnessStatus.BAD_LENGTH, HEADER_SIZE + size, "a GUEST_COMMAND 8 bytes too long")
    _still_serving(raw, "a short GUEST_COMMAND")


@requirement(RID)
def test_an_unknown_guest_op(raw: RawGuest) -> None:
    """GUEST_COMMAND with op 0x7F (no PVMSI_HGUEST_*): ERROR BAD_PAYLOAD at guest_command.op."""
    frame = bytearray(raw.frame(FrameKind.GUEST_COMMAND, _command(raw)))
    at = payload_at(GUEST_COMMAND, "op")
    frame[at] = 0x7F
    _error(raw, bytes(frame), HarnessStatus.BAD_PAYLOAD, at, "GuestOp 0x7f")
    _still_serving(raw, "an unknown GuestOp")


@requirement(RID)
def test_an_enable_of_no_message_kind(raw: RawGuest) -> None:
    """ENABLE whose kind is no PVMSI_KIND_*: ERROR BAD_PAYLOAD at guest_command.kind."""
    frame = raw.frame(FrameKind.GUEST_COMMAND, _command(raw, op=GuestOp.ENABLE, kind=0x7F, count=1))
    _error(raw, frame, HarnessStatus.BAD_PAYLOAD, payload_at(GUEST_COMMAND, "kind"), "ENABLE of kind 0x7f")
    _still_serving(raw, "an ENABLE of no kind")


@requirement(RID)
@pytest.mark.parametrize("scratch", [SCRATCH + 8, 0], ids=["misaligned", "zero"])
def test_a_boot_without_a_page_aligned_scratch(raw: RawGuest, scratch: int) -> None:
    """BOOT whose scratch_gpa is not a non-zero multiple of 4 KiB: ERROR BAD_PAYLOAD at guest_command.scratch_gpa."""
    frame = raw.frame(FrameKind.GUEST_COMMAND, _command(raw, scratch_gpa=scratch))
    at = payload_at(GUEST_COMMAND, "scratch_gpa")
    _error(raw, frame, HarnessStatus.BAD_PAYLOAD, at, f"BOOT with scratch_gpa {scratch:#x}")
    _still_serving(raw, "a bad scratch page")


@requirement(RID)
def test_a_result_that_answers_nothing(raw: RawGuest) -> None:
    """HYPERCALL_RESULT while no request of the guest waits: ERROR BAD_PAYLOAD at the header's seq."""
    frame = raw.frame(FrameKind.HYPERCALL_RESULT, {"status": 0, "value": 0})
    _error(raw, frame, HarnessStatus.BAD_PAYLOAD, SEQ_AT, "a stray HYPERCALL_RESULT")
    _still_serving(raw, "a stray result")
