"""The harness's socket transport (spec appendix "Harness protocol", "Sessions"): concurrent sessions, the
deadlines of an unfinished frame and of a client that stops reading, the session limit; and Unix socket paths
(a regular file never removed, a live socket refused, a stale one replaced) and SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness_session import HELLO, error, vm_config

from pvmsi.conformance.harness.client import HarnessConnection, HarnessHypervisor
from pvmsi.conformance.harness.frames import Frame, FrameReader, build
from pvmsi.conformance.harness.serve import Deadlines, serve_socket
from pvmsi.conformance.harness.transport import SocketChannel
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec.harness_constants import (
    FrameKind,
    HarnessStatus,
)

# -- the socket transport ------------------------------------------------------------------------------------


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """``serve_socket`` in a thread on TCP loopback; the address it listens on."""
    options: dict[str, Any] = getattr(request, "param", {})
    deadlines = Deadlines(idle=30.0, frame=options.get("frame", 10.0), write=options.get("write", 10.0))
    ready = threading.Event()
    where: list[str] = []

    def announce(address: str) -> None:
        where.append(address)
        ready.set()

    stop = threading.Event()
    thread = threading.Thread(
        target=serve_socket,
        args=(ReferenceHypervisor, "tcp:127.0.0.1:0", deadlines),
        kwargs={"ready": announce, "max_sessions": options.get("sessions", 8), "stop": stop},
        daemon=True,
    )
    thread.start()
    assert ready.wait(10)
    yield where[0]
    stop.set()
    thread.join(10)


def connect(address: str) -> socket.socket:
    _, host, port = address.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def hello(sock: socket.socket, seq: int = 1) -> Frame:
    sock.sendall(build(FrameKind.HELLO, seq, HELLO))
    return read_frame(sock)


def read_frame(sock: socket.socket) -> Frame:
    reader = FrameReader()
    while (f := reader.next_frame()) is None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        reader.feed(data)
    return f


def test_an_idle_client_does_not_block_another(server: str) -> None:
    with connect(server) as idle, connect(server) as busy:
        idle.sendall(b"\x50")  # one byte of a frame, then silence
        assert hello(busy).kind is FrameKind.HELLO_ACK  # served while the other waits
        iut = HarnessHypervisor(HarnessConnection(SocketChannel(busy, server), timeout=10))
        assert iut.create_vm(1, 16, []) >= 0


@pytest.mark.parametrize("server", [{"frame": 0.3}], indirect=True)
def test_a_frame_left_unfinished_ends_the_session(server: str) -> None:
    with connect(server) as slow:
        slow.sendall(build(FrameKind.HELLO, 1, HELLO)[:5])
        assert slow.recv(1) == b""  # closed by the server once the frame deadline passed (the socket waits 10 s)


def served_within(address: str, seconds: float) -> Frame:
    """HELLO on new connections until one is served (not BUSY), for at most ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        with connect(address) as c:
            f = hello(c)
            if f.kind is not FrameKind.ERROR or time.monotonic() > end:
                return f
        time.sleep(0.1)


@pytest.mark.parametrize("server", [{"sessions": 1, "write": 0.3}], indirect=True)
def test_sessions_past_the_limit_are_busy_and_a_client_that_stops_reading_is_dropped(server: str) -> None:
    with connect(server) as hog:
        assert hello(hog).kind is FrameKind.HELLO_ACK
        with connect(server) as late:
            f = read_frame(late)
            assert (f.kind, f.seq, error(f)[0]) == (FrameKind.ERROR, 0, HarnessStatus.BUSY)
        hog.sendall(build(FrameKind.VM_CREATE, 2, vm_config()))
        vm = int(read_frame(hog).body.vm)
        # Ask for far more than the socket buffers hold and never read: the server's write deadline ends the
        # session (without it, the session would stay blocked and every later client be BUSY).
        try:
            for i in range(4000):
                hog.sendall(build(FrameKind.MEM_READ, 3 + i, {"vm": vm, "size": 4096, "gpa": 0}))
        except OSError:
            pass  # the server closed the session while the requests were still being sent
        assert served_within(server, 20).kind is FrameKind.HELLO_ACK  # hog still open: its slot was freed


# -- Unix socket paths and SIGTERM ----------------------------------------------------------------------------


def _serve(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pvmsi", "serve", "--listen", f"unix:{path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on" in line, line
    return proc


def _terminate(proc: subprocess.Popen[str]) -> int:
    """SIGTERM, as a CI cancel sends it; the exit status."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    finally:
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_regular_file_at_the_path_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.write_text("keep me")
    proc = subprocess.run(
        [sys.executable, "-m", "pvmsi", "serve", "--listen", f"unix:{path}"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "not a socket" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert path.read_text() == "keep me"


def test_a_live_socket_is_refused_a_stale_one_replaced_and_sigterm_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "iut.sock"
    first = _serve(path)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "pvmsi", "serve", "--listen", f"unix:{path}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "another server is listening" in second.stderr
    finally:
        _terminate(first)
    assert not path.exists()  # SIGTERM ran the clean-up
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket nobody listens on (left by a killed server)
    stale.close()
    third = _serve(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(10)
            c.connect(str(path))
            assert hello(c).kind is FrameKind.HELLO_ACK
    finally:
        _terminate(third)
    assert not path.exists()
