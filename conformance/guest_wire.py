"""Raw frames to the guest under test, for the guest suite's harness-robustness tests (harness appendix,
"Sessions"): the suite sends frames as it builds them, malformed ones included, and reads the frames that answer.

Over the harness protocol the frames go down the run's own connection; an in-process guest (the reference or a
faulty one) is served by a :class:`~.harness.guest_server.GuestService` of its own, the one ``pvmsi serve --role
guest`` runs, so that the same tests hold for both.
"""

from __future__ import annotations

from typing import Any

from ..spec.harness_constants import FrameKind, HarnessRole
from ..spec.iut import Unsupported
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .guest import GuestRunner, ReferenceGuest
from .harness.client import HarnessGuest
from .harness.frames import Frame, FrameReader, build
from .harness.guest_server import GuestService

#: Sequence numbers of the raw frames: far from the connection's own, whose answers they must not be taken for.
RAW_SEQ = 0x7E57_0000


class RawGuest:
    """A channel of raw frames to the guest under test (:meth:`exchange`)."""

    def __init__(self, iut: Any) -> None:
        self.iut = iut
        self.seq = RAW_SEQ
        self.service: GuestService | None = None
        if isinstance(iut, ReferenceGuest):
            runner = iut.runner
            self.service = GuestService(GuestRunner(runner.factory, arch=runner.arch))
            (ack,) = self.exchange(self.frame(FrameKind.HELLO, hello_body()))
            if ack.kind is not FrameKind.HELLO_ACK:
                raise RuntimeError(f"the in-process guest service answered HELLO with {ack.kind.name}")
        elif not isinstance(iut, HarnessGuest):
            raise Unsupported("the guest under test takes no raw frames (neither in-process nor over the harness)")

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def frame(self, kind: FrameKind, body: dict[str, Any] | None = None, *, data: bytes = b"") -> bytes:
        return build(kind, self.next_seq(), body, data=data)

    def exchange(self, data: bytes, answers: int = 1) -> list[Frame]:
        """Send ``data`` and take ``answers`` frames."""
        if self.service is None:
            conn = self.iut.conn
            return conn.exchange_raw(data, answers)  # type: ignore[no-any-return]
        reader = FrameReader()
        reader.feed(self.service.receive(data))
        frames = []
        while (f := reader.next_frame()) is not None:
            frames.append(f)
        return frames[:answers] if len(frames) >= answers else frames

    def close(self) -> None:
        if self.service is not None:
            self.service.close()


def hello_body(role: HarnessRole = HarnessRole.GUEST) -> dict[str, Any]:
    return {
        "role": role,
        "spec_major": VERSION_MAJOR,
        "spec_minor": VERSION_MINOR,
        "max_payload": 65536,
        "name": b"suite".ljust(8, b"\0"),
    }
