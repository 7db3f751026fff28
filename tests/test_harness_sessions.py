"""Harness sessions (spec appendix "Harness protocol", "Sessions"): HELLO first, the session's limits, vCPUs
checked, nothing lost by COLLECT, the IUT's own failures answered INTERNAL; and the client's side (a response of
the wrong kind refused, posted writes, a crash of the IUT named in the verdict). The socket transport is
test_harness_socket.py."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from harness_session import HELLO, MLX5, Session, error, frames, vm_config

from pvmsi.conformance.harness.client import HarnessConnection, HarnessHypervisor
from pvmsi.conformance.harness.frames import FrameReader, build
from pvmsi.conformance.harness.serve import Deadlines, serve_socket
from pvmsi.conformance.harness.server import RECORDS_PER_FRAME, HypervisorService
from pvmsi.conformance.runner import run
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec.formats.harness import HYPERCALL_REQ, VM_CONFIG
from pvmsi.spec.harness_constants import (
    HARNESS_MAX_SESSION_RAM_MIB,
    HARNESS_MAX_VMS,
    DeviceProfile,
    FrameKind,
    HarnessStatus,
)
from pvmsi.spec.iut import DeviceRef, DeviceSlot, IutError
from pvmsi.spec.layout import layout_of

# -- the session rules (sans-I/O) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body"),
    [(FrameKind.VM_CREATE, vm_config()), (FrameKind.COLLECT, {"vm": 1}), (FrameKind.MEM_READ, None)],
    ids=["VM_CREATE", "COLLECT", "MEM_READ"],
)
def test_requests_before_hello_are_not_served(kind: FrameKind, body: dict[str, Any] | None) -> None:
    backend = ReferenceHypervisor()
    s = Session(backend, greet=False)
    if body is None:
        body = {"vm": 1, "size": 8, "gpa": 0}
    assert error(s.ask(kind, body))[0] is HarnessStatus.NO_HELLO
    assert backend.system.vms == {}  # nothing was created
    assert s.ask(FrameKind.HELLO, HELLO).kind is FrameKind.HELLO_ACK
    assert s.ask(FrameKind.VM_CREATE, vm_config()).kind is FrameKind.VM_CREATED  # served once greeted


def test_bye_before_hello_is_answered() -> None:
    s = Session(greet=False)
    assert s.ask(FrameKind.BYE).kind is FrameKind.OK
    assert s.svc.closed


def test_vm_limit_of_a_session() -> None:
    s = Session()
    vms = [s.vm(ram_mib=1) for _ in range(HARNESS_MAX_VMS)]
    assert error(s.ask(FrameKind.VM_CREATE, vm_config(ram_mib=1)))[0] is HarnessStatus.LIMIT
    assert s.ask(FrameKind.VM_DESTROY, {"vm": vms[0]}).kind is FrameKind.OK
    s.vm(ram_mib=1)  # one destroyed: one more fits, exactly at the edge again
    assert error(s.ask(FrameKind.VM_CREATE, vm_config(ram_mib=1)))[0] is HarnessStatus.LIMIT


def test_guest_ram_limit_of_a_session() -> None:
    s = Session()
    first = s.vm(ram_mib=HARNESS_MAX_SESSION_RAM_MIB - 16)
    s.vm(ram_mib=16)  # exactly the limit
    code, offset = error(s.ask(FrameKind.VM_CREATE, vm_config(ram_mib=1)))
    assert (code, offset) == (HarnessStatus.LIMIT, 16 + layout_of(VM_CONFIG).fields[1].offset)
    s.ask(FrameKind.VM_DESTROY, {"vm": first})
    s.vm(ram_mib=HARNESS_MAX_SESSION_RAM_MIB - 16)


def test_a_failed_vm_create_leaves_nothing_behind() -> None:
    backend = ReferenceHypervisor()
    s = Session(backend)
    f = s.ask(FrameKind.VM_CREATE, vm_config(devices=2), entries=[MLX5, MLX5])  # two devices at one address
    assert error(f)[0] is HarnessStatus.BAD_PAYLOAD
    assert backend.system.vms == {}
    assert backend.system.platform.vms == {}
    assert s.svc.vms == {}


@pytest.mark.parametrize(("vcpus", "vcpu"), [(1, 1), (1, 0xFFFFFFFF), (4, 4)])
def test_a_vcpu_the_vm_does_not_have(vcpus: int, vcpu: int) -> None:
    s = Session()
    vm = s.vm(vcpus=vcpus)
    call = {"vm": vm, "vcpu": vcpu, "function": 0, "in_size": 0, "out_size": 0, "args": [0, 0, 0, 0]}
    code, offset = error(s.ask(FrameKind.HYPERCALL, call))
    vcpu_at = 16 + next(leaf.offset for leaf in layout_of(HYPERCALL_REQ).leaves() if leaf.path == "vcpu")
    assert (code, offset) == (HarnessStatus.BAD_PAYLOAD, vcpu_at)
    assert s.ask(FrameKind.HYPERCALL, call | {"vcpu": vcpus - 1}).kind is FrameKind.HYPERCALL_RESULT  # the edge


class ManyInterrupts(ReferenceHypervisor):
    """Injects ``pending`` interrupts (vCPU 0, vectors counting up) for the first COLLECT of a VM."""

    def __init__(self, pending: int) -> None:
        super().__init__()
        self.pending = pending

    def collect(self, vm: int) -> list[tuple[int, int]]:
        out = [(0, 32 + i % 224) for i in range(self.pending)]
        self.pending = 0
        return out + super().collect(vm)


def test_collect_loses_nothing_past_one_frame() -> None:
    s = Session(ManyInterrupts(10_000))
    vm = s.vm()
    first = s.ask(FrameKind.COLLECT, {"vm": vm})
    assert (first.body.count, first.body.remaining) == (RECORDS_PER_FRAME, 10_000 - RECORDS_PER_FRAME)
    second = s.ask(FrameKind.COLLECT, {"vm": vm})
    assert (second.body.count, second.body.remaining) == (10_000 - RECORDS_PER_FRAME, 0)
    got = [(int(e.vcpu), int(e.vector)) for e in first.entries + second.entries]
    assert got == [(0, 32 + i % 224) for i in range(10_000)]  # all of them, oldest first
    third = s.ask(FrameKind.COLLECT, {"vm": vm})
    assert (third.body.count, third.body.remaining) == (0, 0)


class Broken(ReferenceHypervisor):
    """An implementation that fails inside: a KeyError or ValueError of its own is not a malformed frame."""

    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    def counters(self, vm: int) -> Any:
        raise self.exc


@pytest.mark.parametrize("exc", [KeyError("lost"), ValueError("bad state"), RuntimeError("crash")])
def test_the_iuts_own_failure_is_internal(exc: Exception) -> None:
    s = Session(Broken(exc))
    vm = s.vm()
    f = s.ask(FrameKind.COUNTERS, {"vm": vm})
    assert error(f)[0] is HarnessStatus.INTERNAL
    assert type(exc).__name__ in f.data.decode()


def test_two_thousand_pipelined_reads_are_all_answered_in_order() -> None:
    s = Session()
    vm = s.vm()
    stream = b"".join(build(FrameKind.MEM_READ, 100 + i, {"vm": vm, "size": 8, "gpa": 8 * i}) for i in range(2048))
    out = frames(s.svc.receive(stream))
    assert [f.seq for f in out] == [100 + i for i in range(2048)]
    assert {f.kind for f in out} == {FrameKind.MEM_DATA}


# -- the client ---------------------------------------------------------------------------------------------


class _Answers:
    """A channel whose IUT answers HELLO properly and every other request with OK (a broken adapter)."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.out = b""

    def send(self, data: bytes) -> None:
        self.reader.feed(data)
        while (f := self.reader.next_frame()) is not None:
            if f.kind is FrameKind.HELLO:
                self.out += build(FrameKind.HELLO_ACK, f.seq, HELLO)
            else:
                self.out += build(FrameKind.OK, f.seq)

    def recv(self, timeout: float) -> bytes:
        out, self.out = self.out, b""
        return out

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("method", "args"),
    [("collect", (1,)), ("counters", (1,)), ("create_vm", (1, 16, [DeviceSlot(DeviceProfile.MLX5, DeviceRef())]))],
)
def test_the_client_refuses_a_response_of_the_wrong_kind(method: str, args: tuple[Any, ...]) -> None:
    iut = HarnessHypervisor(HarnessConnection(_Answers(), timeout=1.0))
    with pytest.raises(IutError, match=r"harness protocol: .* must be answered by"):
        getattr(iut, method)(*args)


class _Loop:
    """A channel straight into a :class:`HypervisorService`; counts the writes the client makes."""

    def __init__(self) -> None:
        self.svc = HypervisorService(ReferenceHypervisor())
        self.out = b""
        self.sends = 0

    def send(self, data: bytes) -> None:
        self.sends += 1
        self.out += self.svc.receive(data)

    def recv(self, timeout: float) -> bytes:
        out, self.out = self.out, b""
        return out

    def close(self) -> None:
        pass


def test_posted_writes_go_out_with_the_next_request_and_their_failure_fails_it() -> None:
    loop = _Loop()
    iut = HarnessHypervisor(HarnessConnection(loop, timeout=1.0))
    vm = iut.create_vm(1, 16, [DeviceSlot(DeviceProfile.MLX5, DeviceRef(0, 0, 8))])
    sends = loop.sends
    iut.mem_write(vm, 0x10000, b"\x11" * 16)
    iut.mem_write(vm, 0x10010, b"\x22" * 16)
    assert loop.sends == sends  # nothing sent yet
    assert iut.mem_read(vm, 0x10000, 32) == b"\x11" * 16 + b"\x22" * 16
    assert loop.sends == sends + 1  # both writes and the read in one write
    iut.mem_write(vm, 1 << 40, b"\x33" * 8)  # not RAM: the next request fails, and is still answered in step
    with pytest.raises(IutError, match="MEM_WRITE failed"):
        iut.mem_read(vm, 0x10000, 8)
    assert iut.mem_read(vm, 0x10000, 8) == b"\x11" * 8
    iut.mem_write(vm, 1 << 40, b"\x33" * 8)
    with pytest.raises(IutError, match="MEM_WRITE failed"):
        iut.conn.flush()


def test_hypercall_and_read_is_one_exchange_with_the_same_answers() -> None:
    loop = _Loop()
    iut = HarnessHypervisor(HarnessConnection(loop, timeout=1.0))
    vm = iut.create_vm(1, 16, [])
    sends = loop.sends
    status, value, out = iut.hypercall_and_read(vm, 0, 0x01, (0, 0x11000, 0, 0), 0x11000, 48)  # GET_INFO
    assert loop.sends == sends + 1
    assert (status, value) == iut.hypercall(vm, 0, 0x01, (0, 0x11000, 0, 0))
    assert out == iut.mem_read(vm, 0x11000, 48)


class Crashing(ReferenceHypervisor):
    """An implementation whose hypercall handler fails inside."""

    def hypercall(self, vm: int, vcpu: int, fn: int, args: tuple[int, int, int, int]) -> tuple[int, int]:
        raise ValueError("remapping table corrupted")


def test_a_crash_of_the_iut_is_named_as_one_in_the_verdict() -> None:
    """INTERNAL on the server side is a crash on the suite's side too: an error whose message says the IUT failed
    inside, on which request, and how; never a malformed request."""
    stop, ready, where = threading.Event(), threading.Event(), list[str]()

    def announce(address: str) -> None:
        where.append(address)
        ready.set()

    thread = threading.Thread(
        target=serve_socket,
        args=(Crashing, "tcp:127.0.0.1:0", Deadlines(idle=30.0)),
        kwargs={"ready": announce, "stop": stop},
        daemon=True,
    )
    thread.start()
    assert ready.wait(10)
    try:
        report = run("hypervisor", where[0], timeout=5, requirements=["HV-MEM-001"])
    finally:
        stop.set()
        thread.join(10)
    assert report.results
    for r in report.results:
        assert r.verdict.value == "error", (r.test, r.verdict)
        assert r.message.startswith("IUT crash: the IUT failed inside while handling HYPERCALL: "), r.message
        assert "ValueError: remapping table corrupted" in r.message
        assert "BAD_PAYLOAD" not in r.message


def test_a_broken_adapter_is_an_error_of_the_harness_not_a_fail(tmp_path: Path) -> None:
    """An adapter answering everything but HELLO with OK: every test errors (naming the harness), none fails."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def adapter() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            answers = _Answers()
            with conn, contextlib.suppress(OSError):  # the suite hangs up when it is done
                conn.settimeout(10)
                while data := conn.recv(65536):
                    answers.send(data)
                    conn.sendall(answers.recv(0))

    threading.Thread(target=adapter, daemon=True).start()
    try:
        report = run("hypervisor", f"tcp:127.0.0.1:{port}", timeout=5, sections=["security"])
    finally:
        with contextlib.suppress(OSError):
            srv.shutdown(socket.SHUT_RDWR)  # wakes the adapter's accept
        srv.close()
    verdicts = {r.verdict.value for r in report.results}
    assert verdicts == {"error"}, verdicts
    assert all("harness protocol" in r.message for r in report.results)
