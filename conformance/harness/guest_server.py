"""The IUT's side of the harness protocol for a guest: commands in, the guest's own requests out, sans-I/O.

The suite sends GUEST_COMMAND; :class:`GuestService` runs it on a :class:`~pvmsi.conformance.guest.GuestRunner`
and, for every hypercall, device access or discovery trap the guest makes meanwhile, sends a GUEST_HYPERCALL (the
input block inline), GUEST_DEVICE_OP or GUEST_TRAP frame and waits for the suite's HYPERCALL_RESULT (with the
output block), DEVICE_RESULT or TRAP_RESULT; when the guest is done it answers the command with GUEST_RESULT.
Only one command runs at a time.  Every bad frame gets an ERROR frame; an answer that does not come within
``answer_timeout`` seconds ends the command with an ERROR frame (:meth:`GuestService.expire`, called by the
transport loop), so nothing hangs.
"""

from __future__ import annotations

import time
from typing import Any

from ...spec.constants import Limit, MsgKind
from ...spec.formats.harness import GUEST_COMMAND, HELLO
from ...spec.harness_constants import HARNESS_MAX_PAYLOAD, FrameKind, GuestOp, HarnessRole, HarnessStatus
from ...spec.iut import GuestCommand, IutError
from ...spec.version import VERSION_MAJOR, VERSION_MINOR
from ..guest import CommandRun, GuestRunner, HostCall, HostRequest, HostTrap
from .frames import KIND_AT, SEQ_AT, Frame, build, build_error, error_of, payload_at
from .server import FrameService, device_ref

KIND_OPS = (GuestOp.ENABLE, GuestOp.RETARGET, GuestOp.DISABLE)


class GuestService(FrameService):
    """Serves one guest (its runner) to the suite."""

    def __init__(self, runner: GuestRunner, name: bytes = b"pvmsi-ref", answer_timeout: float = 10.0) -> None:
        self.runner = runner
        self.name = name
        self.answer_timeout = answer_timeout
        super().__init__()
        self.seq = 0
        self._run: CommandRun | None = None
        self._command: tuple[int, str] | None = None  # (seq, description) of the GUEST_COMMAND in progress
        self._pending: tuple[int, FrameKind, FrameKind] | None = None  # (our seq, what we sent, what answers it)
        #: When the answer to the guest's request in flight is due (time.monotonic); None when nothing waits.
        self.deadline: float | None = None
        self.greeted = False

    # -- bytes in, bytes out ---------------------------------------------------------------------------------

    def on_fatal(self) -> bytes:
        return self._abort("the stream broke")

    def expire(self, now: float | None = None) -> bytes:
        """End the command in progress when the suite's answer is overdue; b"" if nothing is overdue."""
        if self.deadline is None or self._pending is None:
            return b""
        if (time.monotonic() if now is None else now) < self.deadline:
            return b""
        _, sent, expected = self._pending
        return self._abort(f"no {expected.name} to the guest's {sent.name} within {self.answer_timeout:g} s")

    def close(self) -> None:
        if self._run is not None:
            self._run.close()
        self._run = None

    # -- frames ------------------------------------------------------------------------------------------------

    def handle(self, f: Frame) -> bytes:
        try:
            return self._dispatch(f)
        except Exception as e:  # the harness must answer, whatever the guest did
            return build_error(f.seq, HarnessStatus.INTERNAL, 0, f"{type(e).__name__}: {e}", int(f.kind))

    def _dispatch(self, f: Frame) -> bytes:
        if not self.greeted and f.kind < FrameKind.OK and f.kind not in (FrameKind.HELLO, FrameKind.BYE):
            return build_error(f.seq, HarnessStatus.NO_HELLO, KIND_AT, "a session starts with HELLO", int(f.kind))
        if f.kind is FrameKind.HELLO:
            if f.body.role != HarnessRole.GUEST:
                return build_error(
                    f.seq, HarnessStatus.WRONG_ROLE, payload_at(HELLO, "role"), "this IUT is a guest", int(f.kind)
                )
            self.greeted = True
            return build(
                FrameKind.HELLO_ACK,
                f.seq,
                {
                    "role": HarnessRole.GUEST,
                    "spec_major": VERSION_MAJOR,
                    "spec_minor": VERSION_MINOR,
                    "max_payload": HARNESS_MAX_PAYLOAD,
                    "name": self.name[:8].ljust(8, b"\0"),
                },
            )
        if f.kind is FrameKind.BYE:
            self.closed = True
            return self._abort("the suite said BYE") + build(FrameKind.OK, f.seq)
        if f.kind is FrameKind.GUEST_COMMAND:
            return self._start(f)
        if f.kind in (FrameKind.HYPERCALL_RESULT, FrameKind.DEVICE_RESULT, FrameKind.TRAP_RESULT, FrameKind.ERROR):
            return self._answer(f)
        if f.kind < FrameKind.OK:
            return build_error(
                f.seq, HarnessStatus.WRONG_ROLE, KIND_AT, f"{f.kind.name}: this IUT is a guest", int(f.kind)
            )
        return build_error(f.seq, HarnessStatus.UNKNOWN_KIND, KIND_AT, f"unexpected {f.kind.name}", int(f.kind))

    def _start(self, f: Frame) -> bytes:
        b = f.body
        if self._command is not None:
            return build_error(
                f.seq,
                HarnessStatus.BAD_PAYLOAD,
                payload_at(GUEST_COMMAND, "op"),
                "a command is already running",
                int(f.kind),
            )
        op = GuestOp(b.op)
        if op in KIND_OPS and b.kind not in MsgKind._value2member_map_:
            return build_error(
                f.seq,
                HarnessStatus.BAD_PAYLOAD,
                payload_at(GUEST_COMMAND, "kind"),
                f"kind {b.kind} is not a message kind",
                int(f.kind),
            )
        if op is GuestOp.BOOT and (b.scratch_gpa % Limit.PAGE_SIZE or not b.scratch_gpa):
            return build_error(
                f.seq,
                HarnessStatus.BAD_PAYLOAD,
                payload_at(GUEST_COMMAND, "scratch_gpa"),
                "scratch_gpa must be a non-zero 4 KiB page",
                int(f.kind),
            )
        cmd = GuestCommand(
            op, device_ref(b.device), int(b.kind), b.count, b.vcpu, b.vector, b.first_slot, b.scratch_gpa
        )
        self._command = (f.seq, cmd.describe())
        self._run = self.runner.run(cmd)
        return self._advance(None)

    def _answer(self, f: Frame) -> bytes:
        if self._pending is None or f.seq != self._pending[0]:
            if f.kind is FrameKind.ERROR:
                return b""  # an error about something we sent earlier: nothing is waiting for it
            return build_error(f.seq, HarnessStatus.BAD_PAYLOAD, SEQ_AT, f"{f.kind.name} answers nothing", int(f.kind))
        _, sent, expected = self._pending
        if f.kind is FrameKind.ERROR:
            return self._abort(f"the suite could not answer the guest's {sent.name}: {error_of(f)}")
        if f.kind is not expected:
            return self._abort(f"{sent.name} answered with {f.kind.name}, expected {expected.name}")
        self._pending, self.deadline = None, None
        if f.kind is FrameKind.HYPERCALL_RESULT:
            return self._advance((int(f.body.status), int(f.body.value), f.data))
        if f.kind is FrameKind.TRAP_RESULT:
            return self._advance((bool(f.body.handled), [int(r) for r in f.body.regs]))
        return self._advance(bool(f.body.exited))

    # -- running the command -----------------------------------------------------------------------------------

    def _advance(self, answer: Any) -> bytes:
        assert self._run is not None
        assert self._command is not None
        try:
            req = self._run.send(answer)
        except StopIteration as stop:
            seq = self._command[0]
            self._run, self._command = None, None
            r = stop.value
            return build(FrameKind.GUEST_RESULT, seq, {"status": r.status, "mode": int(r.mode), "done": r.done})
        except IutError as e:
            return self._abort(str(e))
        except Exception as e:
            return self._abort(f"the guest failed internally: {type(e).__name__}: {e}")
        return self._send(req)

    def _send(self, req: HostRequest) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        self.deadline = time.monotonic() + self.answer_timeout
        if isinstance(req, HostCall):
            self._pending = (self.seq, FrameKind.GUEST_HYPERCALL, FrameKind.HYPERCALL_RESULT)
            body = {
                "vm": 0,
                "vcpu": req.vcpu,
                "function": req.fn,
                "in_size": len(req.in_block),
                "out_size": req.out_size,
                "args": list(req.args),
            }
            return build(FrameKind.GUEST_HYPERCALL, self.seq, body, data=req.in_block)
        if isinstance(req, HostTrap):
            self._pending = (self.seq, FrameKind.GUEST_TRAP, FrameKind.TRAP_RESULT)
            trap = {"vm": 0, "vcpu": req.vcpu, "arch": req.arch, "instruction": req.instruction, "privilege": 0}
            return build(FrameKind.GUEST_TRAP, self.seq, {**trap, "regs": list(req.regs)})
        self._pending = (self.seq, FrameKind.GUEST_DEVICE_OP, FrameKind.DEVICE_RESULT)
        body = {
            "op": req.op,
            "kind": req.kind,
            "slot": req.slot,
            "device": req.device.wire(),
            "address": req.address,
            "data": req.data,
            "vectors": req.vectors,
        }
        return build(FrameKind.GUEST_DEVICE_OP, self.seq, body)

    def _abort(self, why: str) -> bytes:
        """End the command in progress with an ERROR frame (b"" when none runs)."""
        command = self._command
        self.close()
        self._command, self._pending, self.deadline = None, None, None
        if command is None:
            return b""
        seq, what = command
        return build_error(seq, HarnessStatus.INTERNAL, 0, f"{what}: {why}", int(FrameKind.GUEST_COMMAND))
