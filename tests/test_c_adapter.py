"""`pvmsi gen c-adapter`: a C skeleton of a hypervisor's harness adapter, for implementers without Python.

Built with the strict warning set against the generated header, it must keep the session rules of the harness
appendix on its own (framing errors, HELLO first, roles, payload sizes, BYE) and, with every request still a
stub, let the whole hypervisor suite run to the end with every test unsupported: nothing failed, nothing in error.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctoolchain import compile_c

from pvmsi.conformance.harness.frames import Frame, FrameReader, build
from pvmsi.conformance.runner import run
from pvmsi.gen.c_adapter import c_adapter
from pvmsi.gen.c_header import c_header
from pvmsi.spec.formats.harness import PAYLOADS
from pvmsi.spec.harness_constants import (
    HARNESS_MAGIC,
    REQUESTS_SERVED_BY,
    FrameKind,
    HarnessRole,
    HarnessStatus,
)
from pvmsi.spec.layout import layout_of

HELLO = {"role": HarnessRole.HYPERVISOR, "spec_major": 1, "spec_minor": 0, "max_payload": 65536, "name": bytes(8)}


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("c-adapter")
    (d / "pvmsi.h").write_text(c_header("stdint"), encoding="ascii")
    src = d / "pvmsi_adapter.c"
    src.write_text(c_adapter(), encoding="ascii")
    return compile_c("gcc", src, d / "adapter", "-std=c11", "-O1", link=True)


class Session:
    """The adapter as a child process, spoken to frame by frame."""

    def __init__(self, exe: Path) -> None:
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.reader = FrameReader()
        self.seq = 0

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def receive(self) -> Frame:
        assert self.proc.stdout is not None
        while (frame := self.reader.next_frame()) is None:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, "the adapter closed its output without answering"
            self.reader.feed(chunk)
        return frame

    def request(self, kind: FrameKind, body: dict[str, object] | None = None, **kw: object) -> Frame:
        self.seq += 1
        self.send_raw(build(kind, self.seq, body, **kw))  # type: ignore[arg-type]
        answer = self.receive()
        assert answer.seq == self.seq
        return answer

    def close(self) -> int:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return self.proc.wait(10)


@pytest.fixture
def session(adapter: Path) -> Iterator[Session]:
    s = Session(adapter)
    yield s
    s.proc.kill()
    s.proc.wait(10)
    for stream in (s.proc.stdin, s.proc.stdout):
        if stream is not None:
            stream.close()


def error_code(frame: Frame) -> HarnessStatus:
    assert frame.kind is FrameKind.ERROR, frame.kind
    return HarnessStatus(frame.body.code)


def test_hello_is_acknowledged_with_the_role_version_and_name(session: Session) -> None:
    ack = session.request(FrameKind.HELLO, HELLO)
    assert ack.kind is FrameKind.HELLO_ACK
    assert (ack.body.role, ack.body.spec_major, ack.body.spec_minor) == (HarnessRole.HYPERVISOR, 1, 0)
    assert ack.body.max_payload == 65536
    assert ack.body.name == b"my-hv\0\0\0"
    assert session.request(FrameKind.BYE).kind is FrameKind.OK
    assert session.close() == 0


def test_a_request_before_hello_is_refused_and_the_session_goes_on(session: Session) -> None:
    answer = session.request(FrameKind.VM_DESTROY, {"vm": 1})
    assert error_code(answer) is HarnessStatus.NO_HELLO
    assert (answer.body.request_kind, answer.body.offset) == (FrameKind.VM_DESTROY, 6)
    assert session.request(FrameKind.HELLO, HELLO).kind is FrameKind.HELLO_ACK  # the session goes on
    assert session.request(FrameKind.BYE).kind is FrameKind.OK
    assert session.close() == 0


def test_hello_for_the_guest_role_is_wrong_role(session: Session) -> None:
    answer = session.request(FrameKind.HELLO, {**HELLO, "role": HarnessRole.GUEST})
    assert error_code(answer) is HarnessStatus.WRONG_ROLE
    assert answer.body.offset == 16  # harness_hello.role, after the 16-byte frame header
    assert session.request(FrameKind.HELLO, HELLO).kind is FrameKind.HELLO_ACK


@pytest.mark.parametrize("kind", REQUESTS_SERVED_BY[HarnessRole.GUEST], ids=lambda k: k.name)
def test_the_other_roles_requests_are_wrong_role(session: Session, kind: FrameKind) -> None:
    session.request(FrameKind.HELLO, HELLO)
    session.send_raw(_frame(kind, 7, _zero_payload(kind)))
    assert error_code(session.receive()) is HarnessStatus.WRONG_ROLE


@pytest.mark.parametrize("kind", REQUESTS_SERVED_BY[HarnessRole.HYPERVISOR], ids=lambda k: k.name)
def test_every_request_is_a_stub_answering_unsupported(session: Session, kind: FrameKind) -> None:
    session.request(FrameKind.HELLO, HELLO)
    fmt = PAYLOADS[kind].fmt
    session.send_raw(_frame(kind, 9, _zero_payload(kind)))
    answer = session.receive()
    assert error_code(answer) is HarnessStatus.UNSUPPORTED
    assert answer.body.request_kind == kind
    # a payload one word short of the kind's format is BAD_LENGTH, and the session goes on
    if fmt is not None:
        session.send_raw(_frame(kind, 10, bytes(layout_of(fmt).size - 8)))
        answer = session.receive()
        assert error_code(answer) is HarnessStatus.BAD_LENGTH
        assert (answer.seq, answer.body.offset) == (10, 16 + layout_of(fmt).size - 8)  # the first byte missing
        assert session.request(FrameKind.BYE).kind is FrameKind.OK


def _zero_payload(kind: FrameKind) -> bytes:
    """The fixed part of ``kind``'s payload, all zero (nothing follows it)."""
    fmt = PAYLOADS[kind].fmt
    return bytes(layout_of(fmt).size if fmt is not None else 0)


def _frame(
    kind: int, seq: int, payload: bytes, *, magic: int = HARNESS_MAGIC, major: int = 1, length: int = -1
) -> bytes:
    n = len(payload) if length < 0 else length
    head = magic.to_bytes(4, "little") + bytes([major, 0]) + kind.to_bytes(2, "little")
    return head + seq.to_bytes(4, "little") + n.to_bytes(4, "little") + payload


def test_framing_errors(session: Session) -> None:
    session.request(FrameKind.HELLO, HELLO)
    session.send_raw(_frame(0x7E, 3, b""))
    answer = session.receive()
    assert error_code(answer) is HarnessStatus.UNKNOWN_KIND
    assert (answer.seq, answer.body.offset) == (3, 6)
    session.send_raw(_frame(FrameKind.COUNTERS, 4, bytes(8), major=2))
    answer = session.receive()
    assert error_code(answer) is HarnessStatus.BAD_VERSION
    assert answer.body.offset == 4
    session.send_raw(_frame(FrameKind.COUNTERS, 5, b"", length=12))  # not a multiple of 8: fatal
    answer = session.receive()
    assert error_code(answer) is HarnessStatus.BAD_LENGTH
    assert (answer.seq, answer.body.offset) == (5, 12)
    assert session.close() == 1


def test_the_order_of_the_checks_before_hello(session: Session) -> None:
    """Before HELLO, an undefined kind is UNKNOWN_KIND and a wrong length BAD_LENGTH, not NO_HELLO; a request of
    the guest role is NO_HELLO (harness "Errors and the order of the checks")."""
    session.send_raw(_frame(0x7E, 3, b""))
    assert error_code(session.receive()) is HarnessStatus.UNKNOWN_KIND
    session.send_raw(_frame(FrameKind.COLLECT, 4, b""))
    answer = session.receive()
    assert error_code(answer) is HarnessStatus.BAD_LENGTH
    assert (answer.seq, answer.body.offset) == (4, 16)
    session.send_raw(_frame(FrameKind.GUEST_COMMAND, 5, _zero_payload(FrameKind.GUEST_COMMAND)))
    answer = session.receive()
    assert error_code(answer) is HarnessStatus.NO_HELLO
    assert (answer.seq, answer.body.offset) == (5, 6)
    assert session.request(FrameKind.HELLO, HELLO).kind is FrameKind.HELLO_ACK
    session.send_raw(_frame(FrameKind.GUEST_COMMAND, 6, _zero_payload(FrameKind.GUEST_COMMAND)))
    answer = session.receive()
    assert error_code(answer) is HarnessStatus.WRONG_ROLE
    assert (answer.seq, answer.body.offset) == (6, 6)
    assert session.request(FrameKind.BYE).kind is FrameKind.OK
    assert session.close() == 0


def test_a_bad_magic_ends_the_session(session: Session) -> None:
    session.send_raw(_frame(FrameKind.HELLO, 1, bytes(16), magic=0x12345678))
    assert error_code(session.receive()) is HarnessStatus.BAD_MAGIC
    assert session.close() == 1


def test_the_whole_suite_runs_against_the_skeleton_with_every_test_unsupported(adapter: Path) -> None:
    report = run("hypervisor", f"exec:{adapter}", timeout=10)
    verdicts = {r.verdict.value for r in report.results}
    assert report.results
    assert verdicts == {"unsupported"}, [(r.test, r.verdict.value, r.message) for r in report.results][:5]
