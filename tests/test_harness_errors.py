"""The ERROR frames of the harness "Sessions" rules, for both roles of IUT: each check's code, offset and seq, and
the order of the checks ("Errors and the order of the checks": magic, length, version, kind, length for the
kind, payload, HELLO first, role)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from strategies import minimal_value

from pvmsi.conformance.guest import GuestRunner
from pvmsi.conformance.harness.frames import HEADER_SIZE, Frame, FrameReader, build, payload_at
from pvmsi.conformance.harness.guest_server import GuestService
from pvmsi.conformance.harness.server import FrameService, HypervisorService
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec.formats.harness import HELLO, PAYLOADS
from pvmsi.spec.harness_constants import (
    HARNESS_MAGIC,
    HARNESS_MAX_PAYLOAD,
    HARNESS_VERSION_MAJOR,
    FrameKind,
    HarnessRole,
    HarnessStatus,
)
from pvmsi.spec.layout import layout_of

#: Each role's service, and a request only the other role serves.
ROLES: dict[HarnessRole, tuple[Callable[[], FrameService], FrameKind, dict[str, Any]]] = {
    HarnessRole.HYPERVISOR: (lambda: HypervisorService(ReferenceHypervisor()), FrameKind.GUEST_COMMAND, {}),
    HarnessRole.GUEST: (lambda: GuestService(GuestRunner()), FrameKind.COLLECT, {"vm": 0}),
}
OTHER = {HarnessRole.HYPERVISOR: HarnessRole.GUEST, HarnessRole.GUEST: HarnessRole.HYPERVISOR}
KIND_AT, LENGTH_AT, VERSION_AT = 6, 12, 4
ROLE_AT = payload_at(HELLO, "role")
COLLECT_SIZE = layout_of(PAYLOADS[FrameKind.COLLECT].fmt).size


def hello(role: HarnessRole, seq: int = 1) -> bytes:
    return build(
        FrameKind.HELLO,
        seq,
        {"role": role, "spec_major": 1, "spec_minor": 0, "max_payload": 65536, "name": b"t".ljust(8, b"\0")},
    )


def header(
    kind: int, seq: int, length: int, *, magic: int = HARNESS_MAGIC, major: int = HARNESS_VERSION_MAJOR
) -> bytes:
    return (
        magic.to_bytes(4, "little")
        + bytes([major, 0])
        + kind.to_bytes(2, "little")
        + seq.to_bytes(4, "little")
        + length.to_bytes(4, "little")
    )


def answers(svc: FrameService, stream: bytes) -> list[Frame]:
    reader = FrameReader()
    reader.feed(svc.receive(stream))
    out: list[Frame] = []
    while (f := reader.next_frame()) is not None:
        out.append(f)
    return out


def error(frame: Frame) -> tuple[HarnessStatus, int, int]:
    assert frame.kind is FrameKind.ERROR, frame.kind.name
    return HarnessStatus(frame.body.code), frame.body.offset, frame.seq


@pytest.fixture(params=list(ROLES), ids=lambda r: r.name)
def role(request: pytest.FixtureRequest) -> HarnessRole:
    return HarnessRole(request.param)


def fresh(role: HarnessRole, *, greeted: bool) -> FrameService:
    svc = ROLES[role][0]()
    if greeted:
        (ack,) = answers(svc, hello(role))
        assert ack.kind is FrameKind.HELLO_ACK
    return svc


def test_no_hello_names_the_kind_and_the_seq(role: HarnessRole) -> None:
    svc = fresh(role, greeted=False)
    (f,) = answers(svc, build(FrameKind.COLLECT, 0x1234, {"vm": 0}))
    assert error(f) == (HarnessStatus.NO_HELLO, KIND_AT, 0x1234)
    assert f.body.request_kind == FrameKind.COLLECT
    (ack,) = answers(svc, hello(role, 7))
    assert (ack.kind, ack.seq) == (FrameKind.HELLO_ACK, 7)


def test_a_hello_of_the_other_role_is_wrong_role_at_the_role(role: HarnessRole) -> None:
    svc = fresh(role, greeted=False)
    (f,) = answers(svc, hello(OTHER[role], 0x55))
    assert error(f) == (HarnessStatus.WRONG_ROLE, ROLE_AT, 0x55)
    (f,) = answers(svc, build(FrameKind.COLLECT, 0x56, {"vm": 0}))
    assert error(f)[0] is HarnessStatus.NO_HELLO, "still un-greeted"
    (ack,) = answers(svc, hello(role, 0x57))
    assert ack.kind is FrameKind.HELLO_ACK


def test_a_request_of_the_other_role_is_wrong_role_at_the_kind(role: HarnessRole) -> None:
    _make, kind, body = ROLES[role]
    svc = fresh(role, greeted=True)
    if kind is FrameKind.GUEST_COMMAND:  # a valid GUEST_COMMAND body
        body = minimal_value(layout_of(PAYLOADS[kind].fmt))
    (f,) = answers(svc, build(kind, 0x99, body))
    assert error(f) == (HarnessStatus.WRONG_ROLE, KIND_AT, 0x99)
    assert f.body.request_kind == kind


@pytest.mark.parametrize("greeted", [False, True], ids=["before-hello", "after-hello"])
def test_wrong_length_for_the_kind(role: HarnessRole, greeted: bool) -> None:
    """Too short: offset 16 + length; too long: 16 + the format's size; before HELLO too (length is checked
    first); the session goes on."""
    svc = fresh(role, greeted=greeted)
    short = header(FrameKind.COLLECT, 0x21, 0)
    long = header(FrameKind.COLLECT, 0x22, COLLECT_SIZE + 8) + bytes(COLLECT_SIZE + 8)
    got = [error(f) for f in answers(svc, short + long)]
    assert got == [
        (HarnessStatus.BAD_LENGTH, HEADER_SIZE + 0, 0x21),
        (HarnessStatus.BAD_LENGTH, HEADER_SIZE + COLLECT_SIZE, 0x22),
    ]
    assert not svc.closed


@pytest.mark.parametrize("greeted", [False, True], ids=["before-hello", "after-hello"])
def test_the_order_of_the_checks(role: HarnessRole, greeted: bool) -> None:
    """Each frame fails two checks; the earlier one answers: version before kind, kind before length, length
    before HELLO-first; then the fatal length before all of those."""
    svc = fresh(role, greeted=greeted)
    frames = [
        header(0x50, 0x31, 8, major=HARNESS_VERSION_MAJOR + 1) + bytes(8),  # bad version and undefined kind
        header(0x50, 0x32, 0),  # undefined kind, and no payload
        header(FrameKind.COLLECT, 0x33, 0),  # wrong length (and, before HELLO, not greeted)
    ]
    got = [error(f) for f in answers(svc, b"".join(frames))]
    assert got == [
        (HarnessStatus.BAD_VERSION, VERSION_AT, 0x31),
        (HarnessStatus.UNKNOWN_KIND, KIND_AT, 0x32),
        (HarnessStatus.BAD_LENGTH, HEADER_SIZE, 0x33),
    ]
    (f,) = answers(svc, header(0x50, 0x34, HARNESS_MAX_PAYLOAD + 8, major=HARNESS_VERSION_MAJOR + 1))
    assert error(f) == (HarnessStatus.BAD_LENGTH, LENGTH_AT, 0x34)
    assert svc.closed
