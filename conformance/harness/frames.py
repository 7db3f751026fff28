"""Harness frames, sans-I/O: build frames, and a reader that turns a byte stream into frames or errors.

The formats are the spec's (:mod:`pvmsi.spec.formats.harness`); this module only frames them.  A reader never
raises anything but :class:`FrameError`, and every error names the harness status, the byte offset in the frame
and whether the stream can go on (the frame was skipped) or must be closed (it cannot be resynchronised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...spec.codec import DecodeError
from ...spec.fastcodec import fast_of
from ...spec.formats.harness import FRAME_HEADER, HARNESS_ERROR, PAYLOADS
from ...spec.harness_constants import (
    HARNESS_MAGIC,
    HARNESS_MAX_PAYLOAD,
    HARNESS_VERSION_MAJOR,
    HARNESS_VERSION_MINOR,
    FrameKind,
    HarnessStatus,
)
from ...spec.layout import layout_of

HEADER_SIZE = layout_of(FRAME_HEADER).size


def leaf_offset(fmt: Any, path: str) -> int:
    """Byte offset of the field ``path`` (dotted, e.g. ``device.bus``) within the format ``fmt``."""
    for leaf in layout_of(fmt).leaves():
        if leaf.path == path:
            return leaf.offset
    raise KeyError(f"{layout_of(fmt).name} has no field {path}")


def payload_at(fmt: Any, path: str) -> int:
    """Offset from the frame start of the field ``path`` of the payload format ``fmt`` (as ERROR frames count)."""
    return HEADER_SIZE + leaf_offset(fmt, path)


#: Offsets from the frame start of the header's kind and seq fields (ERROR frames about the header name them).
KIND_AT = leaf_offset(FRAME_HEADER, "kind")
SEQ_AT = leaf_offset(FRAME_HEADER, "seq")


def pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


class FrameError(Exception):
    """A frame that cannot be served: answer with an ERROR frame (and close when ``fatal``)."""

    def __init__(
        self, code: HarnessStatus, offset: int, detail: str, *, seq: int = 0, kind: int = 0, fatal: bool = False
    ) -> None:
        super().__init__(f"{code.name} at frame offset {offset}: {detail}")
        self.code = code
        self.offset = offset
        self.detail = detail
        self.seq = seq
        self.kind = kind
        self.fatal = fatal


@dataclass(frozen=True)
class Frame:
    """One frame: its kind, sequence number, decoded fixed payload, and the tail (entries or bytes)."""

    kind: FrameKind
    seq: int
    body: Any = None
    entries: tuple[Any, ...] = ()
    data: bytes = b""
    raw: bytes = field(default=b"", repr=False, compare=False)


def build(
    kind: FrameKind,
    seq: int,
    body: dict[str, Any] | None = None,
    *,
    entries: list[dict[str, Any]] | None = None,
    data: bytes = b"",
) -> bytes:
    """Encode one frame of ``kind``; ``entries``/``data`` form the tail the kind defines."""
    spec = PAYLOADS[kind]
    payload = b""
    if spec.fmt is not None:
        payload += fast_of(spec.fmt).encode(body or {})
    if spec.tail is not None and spec.tail[0] == "entries":
        payload += b"".join(fast_of(spec.tail[1]).encode(e) for e in entries or [])
    else:
        payload += data
    payload = pad8(payload)
    if len(payload) > HARNESS_MAX_PAYLOAD:
        raise ValueError(f"{kind.name} payload of {len(payload)} bytes exceeds {HARNESS_MAX_PAYLOAD}")
    header = fast_of(FRAME_HEADER).encode(
        {
            "magic": HARNESS_MAGIC,
            "version_major": HARNESS_VERSION_MAJOR,
            "version_minor": HARNESS_VERSION_MINOR,
            "kind": kind,
            "seq": seq,
            "length": len(payload),
        },
    )
    return header + payload


def build_error(seq: int, code: HarnessStatus, offset: int, detail: str, request_kind: int = 0) -> bytes:
    text = detail.encode("utf-8", "replace")[:4000]
    body = {"code": code, "offset": offset, "request_kind": request_kind & 0xFFFF, "detail_size": len(text)}
    return build(FrameKind.ERROR, seq, body, data=text)


def parse_payload(kind: FrameKind, seq: int, payload: bytes) -> Frame:
    """Decode the payload of a frame whose header was valid (offsets in errors count from the frame start)."""
    spec = PAYLOADS[kind]
    fixed = layout_of(spec.fmt).size if spec.fmt is not None else 0
    if len(payload) < fixed:
        raise FrameError(
            HarnessStatus.BAD_LENGTH,
            HEADER_SIZE + len(payload),
            f"{kind.name} needs {fixed} payload bytes, frame has {len(payload)}",
            seq=seq,
            kind=kind,
        )
    try:
        body: Any = fast_of(spec.fmt).decode_container(payload[:fixed]) if spec.fmt is not None else None
    except DecodeError as e:
        raise FrameError(HarnessStatus.BAD_PAYLOAD, HEADER_SIZE + e.offset, str(e), seq=seq, kind=kind) from None
    rest = payload[fixed:]
    entries: list[Any] = []
    data = b""
    if spec.tail is None:
        if rest:
            raise FrameError(
                HarnessStatus.BAD_LENGTH,
                HEADER_SIZE + fixed,
                f"{kind.name} carries {len(rest)} unexpected bytes",
                seq=seq,
                kind=kind,
            )
    elif spec.tail[0] == "entries":
        entry_fmt, count_field = spec.tail[1], spec.tail[2]
        esize = layout_of(entry_fmt).size
        count = int(body[count_field])
        if len(rest) != count * esize:
            raise FrameError(
                HarnessStatus.BAD_LENGTH,
                HEADER_SIZE + fixed,
                f"{count_field}={count} needs {count * esize} bytes of entries, frame has {len(rest)}",
                seq=seq,
                kind=kind,
            )
        for i in range(count):
            try:
                entries.append(fast_of(entry_fmt).decode_container(rest[i * esize : (i + 1) * esize]))
            except DecodeError as e:
                raise FrameError(
                    HarnessStatus.BAD_PAYLOAD,
                    HEADER_SIZE + fixed + i * esize + e.offset,
                    f"entry {i}: {e}",
                    seq=seq,
                    kind=kind,
                ) from None
    else:
        size = int(body[spec.tail[1]]) if len(spec.tail) > 1 else len(rest)
        if len(rest) != size + (-size % 8):  # arithmetic: a declared size must not cost memory
            raise FrameError(
                HarnessStatus.BAD_LENGTH,
                HEADER_SIZE + fixed,
                f"{kind.name} declares {size} bytes, frame carries {len(rest)}",
                seq=seq,
                kind=kind,
            )
        data = rest[:size]
    return Frame(kind, seq, body, tuple(entries), data)


class FrameReader:
    """Feed bytes in, take frames out (no I/O; as h11's connection object)."""

    def __init__(self, max_payload: int = HARNESS_MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self.max_payload = max_payload
        self.closed = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> Frame | None:
        """The next complete frame, None if more bytes are needed; raises :class:`FrameError`."""
        if self.closed:
            raise FrameError(HarnessStatus.BAD_MAGIC, 0, "stream closed after a fatal error", fatal=True)
        if len(self._buf) < HEADER_SIZE:
            return None
        head = bytes(self._buf[:HEADER_SIZE])
        magic = int.from_bytes(head[0:4], "little")
        if magic != HARNESS_MAGIC:
            self.closed = True
            raise FrameError(
                HarnessStatus.BAD_MAGIC, 0, f"magic {magic:#010x}, expected {HARNESS_MAGIC:#010x}", fatal=True
            )
        seq = int.from_bytes(head[8:12], "little")
        kind_value = int.from_bytes(head[6:8], "little")
        length = int.from_bytes(head[12:16], "little")
        if length > self.max_payload or length % 8:
            self.closed = True
            raise FrameError(
                HarnessStatus.BAD_LENGTH,
                12,
                f"payload length {length} is not a multiple of 8 up to {self.max_payload}",
                seq=seq,
                kind=kind_value,
                fatal=True,
            )
        if len(self._buf) < HEADER_SIZE + length:
            return None
        raw = bytes(self._buf[: HEADER_SIZE + length])
        del self._buf[: HEADER_SIZE + length]
        if head[4] != HARNESS_VERSION_MAJOR:
            raise FrameError(
                HarnessStatus.BAD_VERSION,
                4,
                f"harness major version {head[4]} is not {HARNESS_VERSION_MAJOR}",
                seq=seq,
                kind=kind_value,
            )
        try:
            kind = FrameKind(kind_value)
        except ValueError:
            raise FrameError(
                HarnessStatus.UNKNOWN_KIND, 6, f"frame kind {kind_value:#x} is not defined", seq=seq, kind=kind_value
            ) from None
        frame = parse_payload(kind, seq, raw[HEADER_SIZE:])
        return Frame(frame.kind, frame.seq, frame.body, frame.entries, frame.data, raw)


def error_of(frame: Frame) -> str:
    """Render an ERROR frame for people."""
    if frame.kind is not FrameKind.ERROR:
        return ""
    body = frame.body
    return (
        f"{HarnessStatus(body.code).name} at offset {body.offset} of a {body.request_kind:#x} frame: "
        f"{frame.data.decode('utf-8', 'replace')}"
    )


__all__ = ["HARNESS_ERROR", "HEADER_SIZE", "Frame", "FrameError", "FrameReader", "build", "build_error", "error_of"]
