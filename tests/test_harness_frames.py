"""Harness frames: build/parse round trips, every malformed input answered by the right ERROR frame (status and
offset), and the hypervisor service never raising on arbitrary bytes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import example_value, minimal_value, plain, reserved_inputs

from pvmsi.conformance.harness.client import HarnessConnection
from pvmsi.conformance.harness.frames import (
    HEADER_SIZE,
    Frame,
    FrameError,
    FrameReader,
    build,
    build_error,
    error_of,
    pad8,
)
from pvmsi.conformance.harness.server import HypervisorService
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec.codec import encode
from pvmsi.spec.formats.harness import FRAME_HEADER, PAYLOADS, Payload
from pvmsi.spec.harness_constants import (
    HARNESS_MAGIC,
    HARNESS_MAX_PAYLOAD,
    HARNESS_VERSION_MAJOR,
    DeviceProfile,
    FrameKind,
    HarnessRole,
    HarnessStatus,
    LifecycleEvent,
)
from pvmsi.spec.iut import IutError, IutTimeout, Unsupported
from pvmsi.spec.layout import layout_of

REQUESTS = [k for k in PAYLOADS if k < FrameKind.OK]
RESPONSES = [k for k in PAYLOADS if k >= FrameKind.OK]


def header(
    kind: int, seq: int, length: int, *, magic: int = HARNESS_MAGIC, major: int = HARNESS_VERSION_MAJOR
) -> bytes:
    """A frame header built by hand (so that it can be wrong)."""
    return (
        magic.to_bytes(4, "little")
        + bytes([major, 0])
        + kind.to_bytes(2, "little")
        + seq.to_bytes(4, "little")
        + length.to_bytes(4, "little")
    )


def sample(kind: FrameKind, seed: int = 0) -> tuple[dict[str, Any] | None, list[dict[str, Any]], bytes]:
    """A valid body, entries and data for ``kind`` (two entries, or five bytes of data, where the kind has a tail)."""
    spec: Payload = PAYLOADS[kind]
    body = example_value(layout_of(spec.fmt), seed) if spec.fmt is not None else None
    entries: list[dict[str, Any]] = []
    data = b""
    if spec.tail is not None and spec.tail[0] == "entries":
        assert body is not None
        body[spec.tail[2]] = 2
        entries = [example_value(layout_of(spec.tail[1]), seed + i) for i in range(2)]
    elif spec.tail is not None and len(spec.tail) > 1:
        assert body is not None
        body[spec.tail[1]] = 5
        data = b"hello"
    elif spec.tail is not None:
        data = bytes(range(16))  # no size field: the tail is the padded payload itself
    return body, entries, data


def built(kind: FrameKind, seq: int = 1) -> bytes:
    """A valid frame of ``kind`` (the :func:`sample` payload)."""
    body, entries, data = sample(kind, seq)
    return build(kind, seq, body, entries=entries, data=data)


def frames_of(stream: bytes) -> list[Frame]:
    """Parse a stream that must hold only well-formed frames, completely."""
    reader = FrameReader()
    reader.feed(stream)
    out: list[Frame] = []
    while (f := reader.next_frame()) is not None:
        out.append(f)
    assert reader.buffered == 0, "a trailing partial frame"
    return out


def only_error(stream: bytes) -> Any:
    (f,) = frames_of(stream)
    assert f.kind is FrameKind.ERROR
    return f


@pytest.fixture(scope="module")
def backend() -> ReferenceHypervisor:
    return ReferenceHypervisor()


HELLO_BODY = {
    "role": HarnessRole.HYPERVISOR,
    "spec_major": 1,
    "spec_minor": 0,
    "max_payload": 65536,
    "name": b"t".ljust(8, b"\0"),
}


def service(backend: ReferenceHypervisor, *, greeted: bool = True) -> HypervisorService:
    """A service for one session, past HELLO unless ``greeted`` is False (a session starts with HELLO)."""
    svc = HypervisorService(backend)
    if greeted:
        (ack,) = frames_of(svc.receive(build(FrameKind.HELLO, 1, HELLO_BODY)))
        assert ack.kind is FrameKind.HELLO_ACK
    return svc


# -- round trips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(PAYLOADS), ids=[k.name for k in PAYLOADS])
def test_round_trip(kind: FrameKind) -> None:
    body, entries, data = sample(kind)
    raw = build(kind, 0x1234, body, entries=entries, data=data)
    assert len(raw) % 8 == 0
    (f,) = frames_of(raw)
    assert (f.kind, f.seq, f.raw) == (kind, 0x1234, raw)
    assert plain(f.body) == body
    assert [plain(e) for e in f.entries] == entries
    assert f.data == data


def test_every_request_kind_has_a_round_trip() -> None:
    assert set(REQUESTS) == {k for k in FrameKind if k < FrameKind.OK}
    assert set(RESPONSES) == {k for k in FrameKind if k >= FrameKind.OK}


@given(st.lists(st.sampled_from(list(PAYLOADS)), min_size=1, max_size=6), st.integers(1, 40))
@settings(max_examples=40)
def test_frames_split_anywhere(kinds: list[FrameKind], chunk: int) -> None:
    stream = b"".join(built(k, i) for i, k in enumerate(kinds))
    reader = FrameReader()
    got: list[Frame] = []
    for pos in range(0, len(stream), chunk):
        reader.feed(stream[pos : pos + chunk])
        while (f := reader.next_frame()) is not None:
            got.append(f)
    assert [(f.kind, f.seq) for f in got] == [(k, i) for i, k in enumerate(kinds)]


def test_build_refuses_an_oversized_payload() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        build(FrameKind.MEM_DATA, 1, data=bytes(HARNESS_MAX_PAYLOAD + 8))


def test_error_frames_render_for_people() -> None:
    (f,) = frames_of(build_error(7, HarnessStatus.UNKNOWN_VM, 16, "no VM 9", int(FrameKind.COLLECT)))
    assert (f.seq, f.body.code, f.body.offset, f.body.request_kind) == (7, HarnessStatus.UNKNOWN_VM, 16, 0x09)
    assert error_of(f) == "UNKNOWN_VM at offset 16 of a 0x9 frame: no VM 9"
    assert error_of(frames_of(build(FrameKind.OK, 1))[0]) == ""


# -- malformed input ---------------------------------------------------------------------------------------------


def _vm_ref(vm: int = 0) -> bytes:
    return build(FrameKind.COLLECT, 3, {"vm": vm})


def test_bad_magic_is_fatal_and_closes(backend: ReferenceHypervisor) -> None:
    raw = bytearray(_vm_ref())
    raw[0] ^= 0xFF
    svc = service(backend)
    err = only_error(svc.receive(bytes(raw) + _vm_ref()))
    assert (err.body.code, err.body.offset) == (HarnessStatus.BAD_MAGIC, 0)
    assert svc.closed
    assert svc.receive(_vm_ref()) == b"", "nothing is served after a fatal error"
    reader = FrameReader()
    reader.feed(bytes(raw))
    with pytest.raises(FrameError) as exc:
        reader.next_frame()
    assert exc.value.fatal
    assert reader.closed


@pytest.mark.parametrize("length", [4, 12, HARNESS_MAX_PAYLOAD + 8], ids=["4", "12", "too-long"])
def test_bad_length_is_fatal(backend: ReferenceHypervisor, length: int) -> None:
    svc = service(backend)
    err = only_error(svc.receive(header(FrameKind.COLLECT, 5, length) + bytes(8)))
    assert (err.body.code, err.body.offset, err.seq, err.body.request_kind) == (
        HarnessStatus.BAD_LENGTH,
        12,
        5,
        FrameKind.COLLECT,
    )
    assert svc.closed


def test_unknown_kind_is_skipped_and_the_stream_goes_on(backend: ReferenceHypervisor) -> None:
    svc = service(backend)
    out = frames_of(svc.receive(header(0x50, 9, 8) + bytes(8) + build(FrameKind.BYE, 10)))
    assert [(f.kind, f.seq) for f in out] == [(FrameKind.ERROR, 9), (FrameKind.OK, 10)]
    assert (out[0].body.code, out[0].body.offset, out[0].body.request_kind) == (HarnessStatus.UNKNOWN_KIND, 6, 0x50)


@pytest.mark.parametrize("kind", [FrameKind.OK, FrameKind.HELLO_ACK, FrameKind.ERROR], ids=lambda k: k.name)
def test_a_response_sent_as_request_is_unknown_kind(backend: ReferenceHypervisor, kind: FrameKind) -> None:
    body, entries, data = sample(kind)
    err = only_error(service(backend).receive(build(kind, 2, body, entries=entries, data=data)))
    assert (err.body.code, err.body.request_kind) == (HarnessStatus.UNKNOWN_KIND, kind)


def test_bad_version_is_skipped(backend: ReferenceHypervisor) -> None:
    svc = service(backend)
    out = frames_of(svc.receive(header(FrameKind.BYE, 4, 0, major=HARNESS_VERSION_MAJOR + 1) + build(FrameKind.BYE, 5)))
    assert [(f.kind, f.seq) for f in out] == [(FrameKind.ERROR, 4), (FrameKind.OK, 5)]
    assert (out[0].body.code, out[0].body.offset) == (HarnessStatus.BAD_VERSION, 4)


def _reserved_cases() -> Iterator[Any]:
    for kind in REQUESTS:
        fmt = PAYLOADS[kind].fmt
        if fmt is None:
            continue
        for bad in reserved_inputs(layout_of(fmt)):
            yield pytest.param(kind, bad.data, bad.path, bad.offset, id=f"{kind.name}-{bad.id}")


@pytest.mark.parametrize(("kind", "payload", "path", "offset"), list(_reserved_cases()))
def test_reserved_field_is_bad_payload_at_its_offset(
    backend: ReferenceHypervisor, kind: FrameKind, payload: bytes, path: str, offset: int
) -> None:
    svc = service(backend)
    padded = pad8(payload)
    err = only_error(svc.receive(header(kind, 11, len(padded)) + padded))
    assert (err.body.code, err.body.offset, err.seq, err.body.request_kind) == (
        HarnessStatus.BAD_PAYLOAD,
        HEADER_SIZE + offset,
        11,
        kind,
    )
    assert path in err.data.decode()
    assert not svc.closed


def test_undefined_enum_value_is_bad_payload(backend: ReferenceHypervisor) -> None:
    body = minimal_value(layout_of(PAYLOADS[FrameKind.LIFECYCLE].fmt))
    raw = bytearray(build(FrameKind.LIFECYCLE, 1, body))
    raw[HEADER_SIZE + 4] = 0xEE  # event
    err = only_error(service(backend).receive(bytes(raw)))
    assert (err.body.code, err.body.offset) == (HarnessStatus.BAD_PAYLOAD, HEADER_SIZE + 4)


def _wrong_length_cases() -> Iterator[Any]:
    hello = build(FrameKind.HELLO, 1, sample(FrameKind.HELLO)[0])
    yield pytest.param(hello[:-8], len(hello) - 8, id="HELLO-short")  # offset: where the payload ended
    vm_ref = build(FrameKind.COLLECT, 1, {"vm": 0})
    yield pytest.param(vm_ref + bytes(8), HEADER_SIZE + 8, id="COLLECT-extra")
    mem = build(FrameKind.MEM_WRITE, 1, {"vm": 0, "size": 5, "gpa": 0}, data=b"hello")
    yield pytest.param(mem + bytes(8), HEADER_SIZE + 16, id="MEM_WRITE-size-5-with-16-bytes")
    slot = {"profile": DeviceProfile.MLX5, "segment": 0, "bus": 0, "devfn": 8}
    config = {"vcpus": 1, "ram_mib": 1, "device_count": 2}
    config.update(dict.fromkeys(("yield_after", "features_required", "features_withheld", "remap_entries"), 0))
    config["max_claimed_devices"] = 0
    config["storm_limit"] = 0
    vm_create = build(FrameKind.VM_CREATE, 1, config, entries=[slot])
    fixed = layout_of(PAYLOADS[FrameKind.VM_CREATE].fmt).size
    yield pytest.param(vm_create, HEADER_SIZE + fixed, id="VM_CREATE-count-2-with-1-entry")


@pytest.mark.parametrize(("raw", "offset"), list(_wrong_length_cases()))
def test_wrong_payload_length_for_the_kind(backend: ReferenceHypervisor, raw: bytes, offset: int) -> None:
    raw = raw[:12] + (len(raw) - HEADER_SIZE).to_bytes(4, "little") + raw[16:]
    svc = service(backend)
    err = only_error(svc.receive(raw))
    assert (err.body.code, err.body.offset) == (HarnessStatus.BAD_LENGTH, offset)
    assert not svc.closed


def test_a_closed_reader_stays_closed() -> None:
    reader = FrameReader()
    reader.feed(b"\0" * 16)
    with pytest.raises(FrameError):
        reader.next_frame()
    reader.feed(build(FrameKind.BYE, 1))
    with pytest.raises(FrameError) as exc:
        reader.next_frame()
    assert exc.value.fatal


# -- the service never raises ------------------------------------------------------------------------------------

_frame_like = st.builds(
    lambda kind, seq, payload: header(kind, seq, len(pad8(payload))) + pad8(payload),
    st.sampled_from([int(k) for k in FrameKind] + [0x00, 0x50, 0x7F, 0xFE]),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=160),
)
_valid = st.sampled_from(list(PAYLOADS)).map(built)
_streams = st.lists(st.one_of(st.binary(max_size=64), _frame_like, _valid), max_size=8).map(b"".join)


@given(_streams, st.integers(1, 64))
@settings(max_examples=300)
def test_arbitrary_bytes_never_raise_and_yield_well_formed_frames(stream: bytes, chunk: int) -> None:
    svc = service(ReferenceHypervisor())
    out = b""
    for pos in range(0, len(stream), chunk):
        out += svc.receive(stream[pos : pos + chunk])
    for f in frames_of(out):
        assert f.kind >= FrameKind.OK, f"the service sent a request {f.kind.name}"
        if f.kind is FrameKind.ERROR:
            HarnessStatus(f.body.code)


# -- answers of the hypervisor service ---------------------------------------------------------------------------


def _ask(svc: HypervisorService, kind: FrameKind, body: dict[str, Any] | None = None, **kw: Any) -> Frame:
    (f,) = frames_of(svc.receive(build(kind, 42, body, **kw)))
    assert f.seq == 42
    return f


def _device(devfn: int) -> dict[str, int]:
    return {"segment": 0, "bus": 0, "devfn": devfn, "flags": 0, "subdevice_id": 0}


@pytest.fixture
def svc_vm() -> tuple[HypervisorService, int]:
    svc = service(ReferenceHypervisor())
    config = dict.fromkeys(("yield_after", "features_required", "features_withheld", "remap_entries"), 0)
    config |= {"vcpus": 2, "ram_mib": 16, "device_count": 1, "max_claimed_devices": 0, "storm_limit": 0}
    slot = {"profile": DeviceProfile.MLX5, "segment": 0, "bus": 0, "devfn": 8}
    f = _ask(svc, FrameKind.VM_CREATE, config, entries=[slot])
    assert f.kind is FrameKind.VM_CREATED
    return svc, int(f.body.vm)


def _code(f: Frame) -> HarnessStatus:
    assert f.kind is FrameKind.ERROR, f.kind.name
    return HarnessStatus(f.body.code)


@pytest.mark.parametrize("kind", [FrameKind.COLLECT, FrameKind.COUNTERS, FrameKind.VM_DESTROY], ids=lambda k: k.name)
def test_unknown_vm(svc_vm: tuple[HypervisorService, int], kind: FrameKind) -> None:
    svc, vm = svc_vm
    f = _ask(svc, kind, {"vm": vm + 100})
    assert _code(f) is HarnessStatus.UNKNOWN_VM
    assert f.body.request_kind == kind


def test_unknown_vm_for_memory_and_calls(svc_vm: tuple[HypervisorService, int]) -> None:
    svc, vm = svc_vm
    assert _code(_ask(svc, FrameKind.MEM_READ, {"vm": vm + 1, "size": 8, "gpa": 0})) is HarnessStatus.UNKNOWN_VM
    call = {"vm": vm + 1, "vcpu": 0, "function": 0, "in_size": 0, "out_size": 0, "args": [0, 0, 0, 0]}
    assert _code(_ask(svc, FrameKind.HYPERCALL, call)) is HarnessStatus.UNKNOWN_VM


def test_unknown_device(svc_vm: tuple[HypervisorService, int]) -> None:
    svc, vm = svc_vm
    fire = {"vm": vm, "device": _device(0xF8), "kind": 2, "index": 0}
    assert _code(_ask(svc, FrameKind.DEVICE_FIRE, fire)) is HarnessStatus.UNKNOWN_DEVICE
    write = {"vm": vm, "device": _device(0xF8), "space": 1, "size": 4, "offset": 0x50, "value": 0}
    assert _code(_ask(svc, FrameKind.DEVICE_WRITE, write)) is HarnessStatus.UNKNOWN_DEVICE
    flr = {"vm": vm, "event": LifecycleEvent.FLR, "device": _device(0xF8)}
    assert _code(_ask(svc, FrameKind.LIFECYCLE, flr)) is HarnessStatus.UNKNOWN_DEVICE
    ok = _ask(svc, FrameKind.DEVICE_FIRE, {**fire, "device": _device(8)})
    assert ok.kind is FrameKind.FIRE_RESULT


def test_memory_outside_ram_is_bad_address(svc_vm: tuple[HypervisorService, int]) -> None:
    svc, vm = svc_vm
    assert _code(_ask(svc, FrameKind.MEM_READ, {"vm": vm, "size": 8, "gpa": 1 << 40})) is HarnessStatus.BAD_ADDRESS
    w = _ask(svc, FrameKind.MEM_WRITE, {"vm": vm, "size": 3, "gpa": 0x1000}, data=b"abc")
    assert w.kind is FrameKind.OK
    r = _ask(svc, FrameKind.MEM_READ, {"vm": vm, "size": 3, "gpa": 0x1000})
    assert r.kind is FrameKind.MEM_DATA
    assert r.data[:3] == b"abc"


def test_other_role_and_bye(svc_vm: tuple[HypervisorService, int]) -> None:
    svc, _ = svc_vm
    hello = sample(FrameKind.HELLO)[0]
    assert hello is not None
    assert _code(_ask(svc, FrameKind.HELLO, {**hello, "role": HarnessRole.GUEST})) is HarnessStatus.WRONG_ROLE
    ack = _ask(svc, FrameKind.HELLO, {**hello, "role": HarnessRole.HYPERVISOR})
    assert ack.kind is FrameKind.HELLO_ACK
    assert ack.body.role == HarnessRole.HYPERVISOR
    command = sample(FrameKind.GUEST_COMMAND)[0]
    assert _code(_ask(svc, FrameKind.GUEST_COMMAND, command)) is HarnessStatus.WRONG_ROLE
    assert _ask(svc, FrameKind.BYE).kind is FrameKind.OK
    assert svc.closed


def test_out_of_range_vm_config_is_bad_payload(svc_vm: tuple[HypervisorService, int]) -> None:
    svc, _ = svc_vm
    config = dict.fromkeys(("yield_after", "features_required", "features_withheld", "remap_entries"), 0)
    config |= {"vcpus": 0, "ram_mib": 16, "device_count": 0, "max_claimed_devices": 0, "storm_limit": 0}
    assert _code(_ask(svc, FrameKind.VM_CREATE, config)) is HarnessStatus.BAD_PAYLOAD


# -- the suite's side: a connection to a misbehaving IUT ---------------------------------------------------------


class ScriptedChannel:
    """A channel answering each send with the next scripted bytes (b"" for end of stream, None for silence)."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, timeout: float) -> bytes:
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            raise IutTimeout(f"nothing within {timeout} s")
        return answer

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (build(FrameKind.OK, 2), IutError, "response seq 2 to request seq 1"),
        (b"\0" * 24, IutError, "malformed frame"),
        (b"", IutError, "closed the connection"),
        (None, IutTimeout, "COLLECT: no answer within 0.1 s"),
        (build_error(1, HarnessStatus.UNSUPPORTED, 0, "no TRAP here", 0x0C), Unsupported, "does not implement"),
        (build_error(1, HarnessStatus.UNKNOWN_VM, 0, "no VM 3", 0x09), IutError, "UNKNOWN_VM"),
        (build(FrameKind.BYE, 1), IutError, "unexpected request BYE"),
    ],
    ids=["wrong-seq", "garbage", "eof", "silence", "unsupported", "error", "request"],
)
def test_connection_reports_a_misbehaving_iut(answer: bytes | None, error: type[Exception], match: str) -> None:
    conn = HarnessConnection(ScriptedChannel([answer]), timeout=0.1)
    with pytest.raises(error, match=match):
        conn.request(FrameKind.COLLECT, {"vm": 3})


def test_frame_header_format_matches_the_hand_built_header() -> None:
    fields = {"magic": HARNESS_MAGIC, "version_major": 1, "version_minor": 0, "kind": 9, "seq": 7, "length": 8}
    assert encode(FRAME_HEADER, fields) == header(9, 7, 8)


def test_a_huge_declared_size_costs_nothing(backend: ReferenceHypervisor) -> None:
    """A MEM_WRITE declaring 4 GiB of data is BAD_LENGTH at once (the size is not materialised)."""
    raw = bytearray(build(FrameKind.MEM_WRITE, 6, {"vm": 0, "size": 8, "gpa": 0}, data=bytes(8)))
    raw[HEADER_SIZE + 4 : HEADER_SIZE + 8] = (0xFFFFFFF8).to_bytes(4, "little")
    err = only_error(service(backend).receive(bytes(raw)))
    assert (err.body.code, err.body.offset) == (HarnessStatus.BAD_LENGTH, HEADER_SIZE + 16)


class NoTrapBackend(ReferenceHypervisor):
    """An adapter whose hypervisor cannot run TRAP (as an adapter for a real hypervisor might)."""

    def trap(
        self, vm: int, vcpu: int, arch: Any, instruction: Any, regs: list[int], privilege: int = 0
    ) -> tuple[bool, list[int]]:
        raise Unsupported("this adapter cannot execute trap instructions")


def test_a_backend_raising_unsupported_answers_unsupported() -> None:
    svc = service(NoTrapBackend())
    trap = example_value(layout_of(PAYLOADS[FrameKind.TRAP].fmt))
    err = _ask(svc, FrameKind.TRAP, trap)
    assert _code(err) is HarnessStatus.UNSUPPORTED
    assert "cannot execute trap" in err.data.decode()
    conn = HarnessConnection(ScriptedChannel([svc.receive(build(FrameKind.TRAP, 1, trap))]), timeout=0.1)
    with pytest.raises(Unsupported):
        conn.request(FrameKind.TRAP, trap)


def test_a_late_answer_to_a_timed_out_request_is_dropped() -> None:
    late_then_current = build(FrameKind.INTERRUPTS, 1, {"count": 0, "remaining": 0}) + build(FrameKind.OK, 2)
    conn = HarnessConnection(ScriptedChannel([None, late_then_current]), timeout=0.1)
    with pytest.raises(IutTimeout, match="COLLECT: no answer within"):
        conn.request(FrameKind.COLLECT, {"vm": 3})
    frame = conn.request(FrameKind.VM_DESTROY, {"vm": 3})
    assert (frame.kind, frame.seq) == (FrameKind.OK, 2)
    assert conn.abandoned == set()
