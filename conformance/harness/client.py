"""The suite's side of the harness protocol: requests with timeouts, and the hypervisor IUT over frames."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from ...spec.constants import Limit
from ...spec.harness_constants import (
    HARNESS_MAX_MEM_ACCESS,
    HARNESS_MAX_PAYLOAD,
    RESPONSE_OF,
    DeviceOp,
    DeviceSpace,
    FireOutcome,
    FrameKind,
    HarnessRole,
    HarnessStatus,
    LifecycleEvent,
    TrapArch,
    TrapInstruction,
)
from ...spec.iut import (
    Counters,
    DeviceRef,
    DeviceSlot,
    FireResult,
    GuestCommand,
    GuestHost,
    GuestMode,
    GuestResult,
    IutError,
    IutInfo,
    IutTimeout,
    Unsupported,
    VmKnobs,
)
from ...spec.version import VERSION_MAJOR, VERSION_MINOR
from .frames import Frame, FrameError, FrameReader, build, build_error, error_of, pad8
from .transport import Channel

#: Answers a request the IUT sends while the suite waits (the guest role): returns the response bytes.
RequestHandler = Callable[[Frame], bytes]


class IutGone(IutError):
    """The IUT can no longer answer: it closed the connection, broke the framing, or let two requests in a row
    pass their timeout without sending a byte (docs/conformance-guide.md, "A dead IUT")."""


class IutCrash(IutError):
    """The IUT failed inside while it handled a request: it answered ``ERROR INTERNAL`` (spec appendix "Harness
    protocol", "Sessions": its own exceptions are never a malformed request)."""


class HarnessConnection:
    """Frames over a channel, every wait bounded by ``timeout`` and by ``until``.

    One request is awaited at a time; requests answered by a bare ``OK`` may be *posted* before it
    (:meth:`post`): they go out in the same write as the next request and their answers, which come first
    (harness "Sessions": one response per request, in order), are taken before its own.  A posted request
    that failed fails that next request.  ``dead`` says why the IUT can no longer answer, once it cannot; every
    request after that raises :class:`IutGone` at once instead of waiting again.
    """

    #: Requests in a row that time out with not one byte from the IUT before it counts as dead. One timeout may be
    #: one request the IUT drops (its late answer is skipped when it comes); a second one in silence means nothing
    #: reads the connection any more.
    SILENT_TIMEOUTS = 2

    def __init__(self, channel: Channel, timeout: float) -> None:
        self.channel = channel
        self.timeout = timeout
        self.reader = FrameReader()
        self.seq = 0
        self.log: list[str] = []
        #: Requests that timed out: a late answer to one of them is dropped, so the connection stays in step.
        self.abandoned: set[int] = set()
        #: Posted requests not sent yet: (seq, kind, frame).
        self.posted: list[tuple[int, FrameKind, bytes]] = []
        #: Why the IUT cannot answer any more, or None while it may.
        self.dead: str | None = None
        #: A monotonic time no wait goes past (the run's deadline), or None.
        self.until: float | None = None
        self._silent: list[str] = []

    def _due(self) -> tuple[float, bool]:
        """When the wait for the next frame ends, and whether the run's deadline (not the timeout) ends it."""
        due = time.monotonic() + self.timeout
        if self.until is not None and self.until < due:
            return self.until, True
        return due, False

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def post(self, kind: FrameKind, body: dict[str, Any] | None = None, *, data: bytes = b"") -> None:
        """Queue a request whose answer is ``OK``, to go out with the next :meth:`request`."""
        if RESPONSE_OF[kind] is not FrameKind.OK:
            raise ValueError(f"{kind.name} is answered by {RESPONSE_OF[kind].name}: it cannot be posted")
        seq = self._next_seq()
        self.posted.append((seq, kind, build(kind, seq, body, data=data)))

    def flush(self) -> None:
        """Send the posted requests now and take their answers."""
        posted, self.posted = self.posted, []
        if posted:
            self._send(b"".join(frame for _, _, frame in posted))
            failed = self._await_posted(posted)
            if failed is not None:
                raise failed

    def _next(self, deadline: float) -> Frame:
        while True:
            try:
                frame = self.reader.next_frame()
            except FrameError as e:
                self.dead = f"it sent a malformed frame ({e}), so the connection is out of step"
                raise IutGone(f"the IUT sent a malformed frame: {e}") from None
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise IutTimeout(f"no complete frame within {self.timeout:g} s")
            try:
                data = self.channel.recv(left)
            except IutTimeout:
                raise
            except IutError as e:
                self.dead = str(e)
                raise IutGone(str(e)) from None
            if not data:
                self.dead = "it closed the connection"
                raise IutGone("the IUT closed the connection")
            self._silent.clear()
            self.reader.feed(data)

    def exchange_raw(self, data: bytes, answers: int = 1) -> list[Frame]:
        """Send ``data`` as it is (frames the suite built, malformed ones included) and take ``answers`` frames:
        the guest suite's harness-robustness tests."""
        self.flush()
        self._send(data)
        deadline, _ = self._due()
        return [self._next(deadline) for _ in range(answers)]

    def _send(self, data: bytes) -> None:
        try:
            self.channel.send(data)
        except IutError as e:
            self.dead = str(e)
            raise IutGone(str(e)) from None

    def request(
        self,
        kind: FrameKind,
        body: dict[str, Any] | None = None,
        *,
        entries: list[dict[str, Any]] | None = None,
        data: bytes = b"",
        on_request: RequestHandler | None = None,
    ) -> Frame:
        """Send one request (after the posted ones) and wait for its response; requests from the IUT meanwhile go
        to ``on_request``."""
        self._alive(kind)
        seq = self._next_seq()
        return self._exchange([(seq, kind, build(kind, seq, body, entries=entries, data=data))], on_request)[0]

    def pipeline(self, *requests: tuple[FrameKind, dict[str, Any]]) -> list[Frame]:
        """Send several requests in one write (after the posted ones) and wait for their responses, in order."""
        frames = []
        for kind, body in requests:
            self._alive(kind)
            seq = self._next_seq()
            frames.append((seq, kind, build(kind, seq, body)))
        return self._exchange(frames, None)

    def _exchange(self, frames: list[tuple[int, FrameKind, bytes]], on_request: RequestHandler | None) -> list[Frame]:
        posted, self.posted = self.posted, []
        self._send(b"".join(frame for _, _, frame in [*posted, *frames]))
        failed = self._await_posted(posted)
        answers = []
        for i, (seq, kind, _) in enumerate(frames):
            try:
                answers.append(self._await(kind, seq, on_request))
            except IutTimeout:
                self.abandoned.update(s for s, _, _ in frames[i + 1 :])
                raise
            except (IutError, Unsupported) as e:
                # the answers of the requests sent with it are still taken, so that none is left unread
                failed = failed or e
        if failed is not None:
            raise failed
        return answers

    def _await_posted(self, posted: list[tuple[int, FrameKind, bytes]]) -> Exception | None:
        """Take the answers of posted requests, in order; the first failure, if any."""
        failed: Exception | None = None
        for i, (seq, kind, _) in enumerate(posted):
            try:
                self._await(kind, seq, None)
            except IutTimeout:
                self.abandoned.update(s for s, _, _ in posted[i + 1 :])
                raise
            except (IutError, Unsupported) as e:
                failed = failed or e
        return failed

    def _alive(self, kind: FrameKind) -> None:
        if self.dead is not None:
            raise IutGone(f"{kind.name} not sent: the IUT is dead: {self.dead}")

    def _await(self, kind: FrameKind, seq: int, on_request: RequestHandler | None) -> Frame:
        deadline, cut = self._due()
        while True:
            try:
                frame = self._next(deadline)
            except IutTimeout:
                self.abandoned.add(seq)
                if cut:
                    raise IutTimeout(f"{kind.name}: no answer before the run's deadline") from None
                self._silent.append(kind.name)
                if len(self._silent) >= self.SILENT_TIMEOUTS:
                    self.dead = (
                        f"it answered none of {', '.join(self._silent)} within {self.timeout:g} s each "
                        "and sent nothing meanwhile"
                    )
                raise IutTimeout(f"{kind.name}: no answer within {self.timeout:g} s") from None
            if frame.kind >= FrameKind.OK and frame.seq in self.abandoned:
                self.abandoned.discard(frame.seq)  # the late answer to a request that timed out
                continue
            if frame.kind < FrameKind.OK:
                if on_request is None:
                    raise IutError(f"unexpected request {frame.kind.name} from the IUT")
                self._send(on_request(frame))
                deadline, cut = self._due()
                continue
            if frame.seq != seq:
                raise IutError(f"response seq {frame.seq} to request seq {seq}")
            if frame.kind is FrameKind.ERROR:
                try:
                    code = HarnessStatus(frame.body.code)
                except ValueError:
                    raise IutError(
                        f"harness protocol: {kind.name} answered by ERROR with the undefined status {frame.body.code}"
                    ) from None
                if code is HarnessStatus.UNSUPPORTED:
                    raise Unsupported(f"the IUT does not implement {kind.name}: {error_of(frame)}")
                if code is HarnessStatus.INTERNAL:
                    detail = frame.data.decode("utf-8", "replace") or "no detail"
                    raise IutCrash(f"IUT crash: the IUT failed inside while handling {kind.name}: {detail}")
                raise IutError(f"{kind.name} failed: {error_of(frame)}")
            expected = RESPONSE_OF[kind]
            if frame.kind is not expected:  # a broken adapter: an error of the harness, never a fail of the IUT
                raise IutError(
                    f"harness protocol: {kind.name} must be answered by {expected.name} or ERROR, "
                    f"the IUT answered {frame.kind.name}"
                )
            return frame

    def close(self) -> None:
        if self.dead is None:
            with contextlib.suppress(IutError, IutTimeout, Unsupported, OSError):
                self.flush()
        if self.dead is None:
            with contextlib.suppress(IutError, OSError):
                self.channel.send(build(FrameKind.BYE, 0))
        self.channel.close()


def answer_error(frame: Frame, code: HarnessStatus, detail: str) -> bytes:
    return build_error(frame.seq, code, 0, detail, int(frame.kind))


def hello(conn: HarnessConnection, role: HarnessRole) -> IutInfo:
    """HELLO as the suite, expecting an IUT of ``role``: the IUT's name and spec version (harness "HELLO")."""
    body = {
        "role": role,
        "spec_major": VERSION_MAJOR,
        "spec_minor": VERSION_MINOR,
        "max_payload": HARNESS_MAX_PAYLOAD,
        "name": b"pvmsi-ct",
    }
    ack = conn.request(FrameKind.HELLO, body)
    if ack.kind is not FrameKind.HELLO_ACK or ack.body.role != role:
        raise IutError(f"HELLO answered with {ack.kind.name}, role {getattr(ack.body, 'role', None)}")
    return IutInfo(ack.body.name.rstrip(b"\0").decode("ascii", "replace"), ack.body.spec_major, ack.body.spec_minor)


class HarnessHypervisor:
    """:class:`~pvmsi.spec.iut.HypervisorIUT` over the harness protocol."""

    def __init__(self, conn: HarnessConnection) -> None:
        self.conn = conn
        self.info = self.hello()

    def hello(self) -> IutInfo:
        return hello(self.conn, HarnessRole.HYPERVISOR)

    def create_vm(self, vcpus: int, ram_mib: int, devices: list[DeviceSlot], knobs: VmKnobs | None = None) -> int:
        k = knobs or VmKnobs()
        entries = [
            {"profile": d.profile, "segment": d.device.segment, "bus": d.device.bus, "devfn": d.device.devfn}
            for d in devices
        ]
        f = self.conn.request(
            FrameKind.VM_CREATE,
            {
                "vcpus": vcpus,
                "ram_mib": ram_mib,
                "device_count": len(devices),
                "yield_after": k.yield_after,
                "features_required": k.features_required,
                "features_withheld": k.features_withheld,
                "remap_entries": k.remap_entries,
                "storm_limit": k.storm_limit,
                "max_claimed_devices": k.max_claimed_devices,
            },
            entries=entries,
        )
        return int(f.body.vm)

    def destroy_vm(self, vm: int) -> None:
        self.conn.request(FrameKind.VM_DESTROY, {"vm": vm})

    def mem_write(self, vm: int, gpa: int, data: bytes) -> None:
        for off in range(0, len(data), HARNESS_MAX_MEM_ACCESS):
            chunk = data[off : off + HARNESS_MAX_MEM_ACCESS]
            self.conn.post(FrameKind.MEM_WRITE, {"vm": vm, "size": len(chunk), "gpa": gpa + off}, data=chunk)

    def mem_read(self, vm: int, gpa: int, size: int) -> bytes:
        parts = []
        for off in range(0, size, HARNESS_MAX_MEM_ACCESS):
            n = min(HARNESS_MAX_MEM_ACCESS, size - off)
            f = self.conn.request(FrameKind.MEM_READ, {"vm": vm, "size": n, "gpa": gpa + off})
            if len(f.data) < n:
                raise IutError(f"harness protocol: MEM_READ of {n} bytes answered with {len(f.data)}")
            parts.append(f.data[:n])
        return b"".join(parts)

    def hypercall(self, vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int]) -> tuple[int, int]:
        f = self.conn.request(FrameKind.HYPERCALL, _hypercall_req(vm, vcpu, fn, args))
        return int(f.body.status), int(f.body.value)

    def hypercall_and_read(
        self, vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int], gpa: int, size: int
    ) -> tuple[int, int, bytes]:
        """:meth:`hypercall`, then :meth:`mem_read` of ``size`` bytes at ``gpa`` (its output block), the two
        requests sent together."""
        if not 0 < size <= HARNESS_MAX_MEM_ACCESS:
            status, value = self.hypercall(vm, vcpu, fn, args)
            return status, value, self.mem_read(vm, gpa, size) if size else b""
        call, read = self.conn.pipeline(
            (FrameKind.HYPERCALL, _hypercall_req(vm, vcpu, fn, args)),
            (FrameKind.MEM_READ, {"vm": vm, "size": size, "gpa": gpa}),
        )
        if len(read.data) < size:
            raise IutError(f"harness protocol: MEM_READ of {size} bytes answered with {len(read.data)}")
        return int(call.body.status), int(call.body.value), read.data[:size]

    def device_write(self, vm: int, device: DeviceRef, space: DeviceSpace, offset: int, size: int, value: int) -> bool:
        f = self.conn.request(
            FrameKind.DEVICE_WRITE,
            {"vm": vm, "device": device.wire(), "space": space, "size": size, "offset": offset, "value": value},
        )
        return bool(f.body.exited)

    def config_read(self, vm: int, device: DeviceRef, offset: int, size: int) -> bytes:
        f = self.conn.request(
            FrameKind.CONFIG_READ, {"vm": vm, "device": device.wire(), "offset": offset, "size": size}
        )
        if len(f.data) < size:
            raise IutError(f"harness protocol: CONFIG_READ of {size} bytes answered with {len(f.data)}")
        return f.data[:size]

    def fire(self, vm: int, device: DeviceRef, kind: int, index: int) -> FireResult:
        f = self.conn.request(FrameKind.DEVICE_FIRE, {"vm": vm, "device": device.wire(), "kind": kind, "index": index})
        return FireResult(FireOutcome(f.body.outcome), int(f.body.vcpu), int(f.body.vector))

    def trap(
        self, vm: int, vcpu: int, arch: TrapArch, instruction: TrapInstruction, regs: list[int], privilege: int = 0
    ) -> tuple[bool, list[int]]:
        body = {"vm": vm, "vcpu": vcpu, "arch": arch, "instruction": instruction, "privilege": privilege}
        f = self.conn.request(FrameKind.TRAP, {**body, "regs": list(regs)})
        return bool(f.body.handled), [int(r) for r in f.body.regs]

    def collect(self, vm: int) -> list[tuple[int, int]]:
        """Every interrupt injected since the last collect: COLLECT again while interrupts_hdr.remaining says
        more are queued (harness "Sessions", rule 4)."""
        out: list[tuple[int, int]] = []
        while True:
            f = self.conn.request(FrameKind.COLLECT, {"vm": vm})
            out += [(int(e.vcpu), int(e.vector)) for e in f.entries]
            if not f.body.remaining:
                return out
            if not f.entries:
                raise IutError("harness protocol: INTERRUPTS with no records but remaining > 0")

    def counters(self, vm: int) -> Counters:
        b = self.conn.request(FrameKind.COUNTERS, {"vm": vm}).body
        return Counters(
            b.exits, b.hypercall_exits, b.msi_exits, b.msix_exits, b.delivered, b.blocked, b.last_call_max_reads
        )

    def lifecycle(self, vm: int, event: LifecycleEvent, device: DeviceRef | None) -> None:
        dev = (device or DeviceRef()).wire()
        self.conn.request(FrameKind.LIFECYCLE, {"vm": vm, "event": event, "device": dev})

    def close(self) -> None:
        self.conn.close()


def _hypercall_req(vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int]) -> dict[str, Any]:
    return {"vm": vm, "vcpu": vcpu, "function": fn, "in_size": 0, "out_size": 0, "args": list(args)}


class HarnessGuest:
    """:class:`~pvmsi.spec.iut.GuestIUT` over the harness protocol: the suite sends GUEST_COMMAND and
    answers the GUEST_HYPERCALL and GUEST_DEVICE_OP frames the guest sends meanwhile with its ``host``."""

    def __init__(self, conn: HarnessConnection) -> None:
        self.conn = conn
        self.info = self.hello()

    def hello(self) -> IutInfo:
        return hello(self.conn, HarnessRole.GUEST)

    def command(self, cmd: GuestCommand, host: GuestHost) -> GuestResult:
        from .server import device_ref

        failures: list[BaseException] = []

        def on_request(f: Frame) -> bytes:
            b = f.body
            try:
                if f.kind is FrameKind.GUEST_HYPERCALL:
                    if b.out_size > Limit.PAGE_SIZE or b.in_size > Limit.PAGE_SIZE:
                        return answer_error(
                            f, HarnessStatus.BAD_PAYLOAD, f"a parameter block is at most {int(Limit.PAGE_SIZE)} bytes"
                        )
                    args = (int(b.args[0]), int(b.args[1]), int(b.args[2]), int(b.args[3]))
                    status, value, out = host.hypercall(b.vcpu, b.function, args, f.data, b.out_size)
                    out = bytes(out[: b.out_size]).ljust(b.out_size, b"\0")
                    return build(FrameKind.HYPERCALL_RESULT, f.seq, {"status": status, "value": value}, data=pad8(out))
                if f.kind is FrameKind.GUEST_TRAP:
                    handled, regs = host.trap(
                        b.vcpu, TrapArch(b.arch), TrapInstruction(b.instruction), [int(r) for r in b.regs]
                    )
                    return build(FrameKind.TRAP_RESULT, f.seq, {"handled": int(handled), "regs": regs})
                if f.kind is FrameKind.GUEST_DEVICE_OP:
                    exited = host.device_op(
                        DeviceOp(b.op), device_ref(b.device), int(b.kind), b.slot, b.address, b.data, b.vectors
                    )
                    return build(FrameKind.DEVICE_RESULT, f.seq, {"exited": int(exited)})
            except Exception as e:  # the suite's own model failed: tell the guest, then report it
                failures.append(e)
                return answer_error(f, HarnessStatus.INTERNAL, f"{type(e).__name__}: {e}")
            return answer_error(f, HarnessStatus.WRONG_ROLE, f"{f.kind.name} is not a request of a guest")

        body = {
            "op": cmd.op,
            "kind": cmd.kind,
            "count": cmd.count,
            "device": cmd.device.wire(),
            "vcpu": cmd.vcpu,
            "vector": cmd.vector,
            "first_slot": cmd.first_slot,
            "scratch_gpa": cmd.scratch_gpa,
        }
        try:
            f = self.conn.request(FrameKind.GUEST_COMMAND, body, on_request=on_request)
        finally:
            if failures:
                raise failures[0]
        if f.kind is not FrameKind.GUEST_RESULT:
            raise IutError(f"GUEST_COMMAND answered with {f.kind.name}")
        try:
            mode = GuestMode(f.body.mode)
        except ValueError:
            raise IutError(f"GUEST_RESULT mode {f.body.mode} is not defined") from None
        return GuestResult(int(f.body.status), mode, int(f.body.done))

    def close(self) -> None:
        self.conn.close()
