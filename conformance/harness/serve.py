"""Serve an implementation over the harness protocol: on stdio, a Unix socket or TCP (loopback).

The hypervisor role serves a :class:`~.server.HypervisorService` per session; the guest role a
:class:`~.guest_server.GuestService` (pass ``service=``), whose answers from the suite have a deadline. A socket
serves up to ``HARNESS_MAX_SESSIONS`` sessions at once, each in a thread of its own with its own service and
backend; every session has an idle timeout, a deadline for the rest of a frame once its first byte arrived, and
a deadline for the peer to take a response (spec appendix "Harness protocol", "Sessions").
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

from ...spec.harness_constants import HARNESS_MAX_SESSIONS, HarnessStatus
from ...spec.iut import HypervisorIUT
from .frames import build_error
from .server import HypervisorService

Factory = Callable[[], HypervisorIUT]


class Service(Protocol):
    """What the transport loop drives: bytes in, bytes out (sans-I/O). ``deadline`` is when the service wants
    :meth:`expire` called although nothing arrived (the guest role waits for the suite's answers), or None."""

    @property
    def closed(self) -> bool: ...

    @property
    def buffered(self) -> int: ...

    @property
    def deadline(self) -> float | None: ...

    def receive(self, data: bytes) -> bytes: ...

    def expire(self) -> bytes: ...

    def close(self) -> None: ...


#: Makes the service of one session.
ServiceFactory = Callable[[], Service]


@dataclass(frozen=True)
class Deadlines:
    """How long a session may stay silent, take to finish a frame it started, and take to read a response."""

    idle: float = 60.0
    frame: float = 10.0
    write: float = 10.0


class _Hypervisor:
    """A :class:`HypervisorService` with the backend's close as its own."""

    def __init__(self, factory: Factory) -> None:
        self.service = HypervisorService(factory())

    @property
    def closed(self) -> bool:
        return self.service.closed

    @property
    def buffered(self) -> int:
        return self.service.buffered

    @property
    def deadline(self) -> float | None:
        return None  # a hypervisor only answers

    def receive(self, data: bytes) -> bytes:
        return self.service.receive(data)

    def expire(self) -> bytes:
        return b""

    def close(self) -> None:
        self.service.backend.close()


def _pump(
    read: Callable[[int], bytes],
    write: Callable[[bytes], None],
    wait: Callable[[float], bool],
    service: Service,
    deadlines: Deadlines,
) -> None:
    """Feed the service until the peer closes, sends BYE, breaks the framing, stays idle too long or takes too long
    to finish a frame. A service with a deadline is woken when it is due and its ``expire()`` output sent."""
    frame_due: float | None = None  # when the frame whose first bytes arrived must be complete
    while not service.closed:
        now = time.monotonic()
        due = [now + deadlines.idle]
        if frame_due is not None:
            due.append(frame_due)
        wanted = service.deadline
        if wanted is not None:
            due.append(wanted)
        if not wait(max(0.0, min(due) - now)):
            if wanted is not None and time.monotonic() >= wanted:
                out = service.expire()
                if out:
                    write(out)
                continue
            return  # idle, or a frame left unfinished past its deadline
        data = read(65536)
        if not data:
            return
        out = service.receive(data)
        if out:
            write(out)
        if service.buffered == 0:
            frame_due = None
        elif frame_due is None:
            frame_due = time.monotonic() + deadlines.frame


def _service(factory: Factory | None, service: ServiceFactory | None) -> Service:
    if service is not None:
        return service()
    assert factory is not None, "serve a factory of backends or of services"
    return _Hypervisor(factory)


def serve_stdio(factory: Factory | None, deadlines: Deadlines, *, service: ServiceFactory | None = None) -> None:
    """One session on standard input and output."""
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)

    def write(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    svc = _service(factory, service)
    try:
        _pump(lambda n: os.read(stdin, n), write, lambda t: bool(sel.select(t)), svc, deadlines)
    finally:
        svc.close()


def _session(conn: socket.socket, svc: Service, deadlines: Deadlines) -> None:
    """One session on an accepted connection: reads wait in select, writes have the write deadline."""
    conn.settimeout(deadlines.write)  # sendall gives up (TimeoutError) when the peer stops reading

    def wait(t: float) -> bool:
        return selectors_wait(conn, t)

    def read(n: int) -> bytes:
        try:
            return conn.recv(n)
        except (ConnectionError, TimeoutError):
            return b""

    try:
        _pump(read, conn.sendall, wait, svc, deadlines)
    except (ConnectionError, TimeoutError):
        pass  # the peer went away or stopped reading: the session ends
    finally:
        svc.close()
        conn.close()


def _refuse(conn: socket.socket, sessions: int, write_timeout: float) -> None:
    """ERROR BUSY (sequence number 0) and close: the IUT already serves as many sessions as it can."""
    with conn, contextlib.suppress(OSError):
        conn.settimeout(write_timeout)
        conn.sendall(build_error(0, HarnessStatus.BUSY, 0, f"{sessions} sessions already served"))


@contextlib.contextmanager
def _listening(listen: str, backlog: int) -> Iterator[tuple[socket.socket, str]]:
    """A listening socket for ``unix:PATH`` or ``tcp:HOST:PORT`` (loopback only), and the address it has.

    A Unix socket path is never taken from someone else: a file that is not a socket is refused, a socket with a
    server behind it is refused, a stale socket (nothing listening) is replaced; on the way out only the socket
    this server made is removed."""
    scheme, _, rest = listen.partition(":")
    ours: tuple[int, int] | None = None
    if scheme == "unix":
        _claim_unix_path(rest)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _bind(srv, rest, listen)
        st = os.stat(rest)
        ours = (st.st_dev, st.st_ino)
        address = f"unix:{rest}"
    elif scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"{listen}: the harness only listens on loopback")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{listen}: the port must be a number from 0 to 65535")
        srv = socket.socket(socket.AF_INET6 if host == "::1" else socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(srv, (host, int(port)), listen)
        addr = srv.getsockname()
        address = f"tcp:{addr[0]}:{addr[1]}"
    else:
        raise ValueError(f"{listen!r}: expected unix:PATH or tcp:127.0.0.1:PORT")
    try:
        srv.listen(backlog)
        yield srv, address
    finally:
        srv.close()
        if ours is not None:
            with contextlib.suppress(OSError):
                st = os.stat(rest)
                if (st.st_dev, st.st_ino) == ours:
                    Path(rest).unlink()


def _bind(srv: socket.socket, address: str | tuple[str, int], listen: str) -> None:
    """Bind ``srv``, or close it and say why with the address it was asked for (a path too long, a port in use)."""
    try:
        srv.bind(address)
    except OSError as e:
        srv.close()
        raise ValueError(f"{listen}: cannot listen there: {e.strerror or e}") from None


def _claim_unix_path(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ValueError(f"{path} exists and is not a socket: not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        Path(path).unlink(missing_ok=True)  # a stale socket: no server behind it
        return
    finally:
        probe.close()
    raise ValueError(f"{path}: another server is listening there")


def serve_socket(
    factory: Factory | None,
    listen: str,
    deadlines: Deadlines,
    once: bool = False,
    ready: Callable[[str], None] | None = None,
    *,
    service: ServiceFactory | None = None,
    max_sessions: int = HARNESS_MAX_SESSIONS,
    stop: threading.Event | None = None,
) -> None:
    """Serve sessions on ``listen``, up to ``max_sessions`` at once, each with a fresh service (a fresh host); with
    ``once``, serve the first session only and return when it ends; return when ``stop`` is set (within 0.2 s;
    sessions under way end on their own)."""
    active = threading.BoundedSemaphore(max_sessions)
    with _listening(listen, max_sessions + 8) as (srv, address):
        if ready is not None:
            ready(address)
        while stop is None or not stop.is_set():
            if not selectors_wait(srv, 0.2):
                continue
            conn, _ = srv.accept()
            if once:
                _session(conn, _service(factory, service), deadlines)
                return
            if not active.acquire(blocking=False):
                _refuse(conn, max_sessions, deadlines.write)
                continue

            def run(c: socket.socket = conn) -> None:
                try:
                    _session(c, _service(factory, service), deadlines)
                finally:
                    active.release()

            threading.Thread(target=run, name=f"pvmsi-session-{conn.fileno()}", daemon=True).start()


def selectors_wait(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` becomes readable (or closed) within ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(timeout))


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM (a CI cancel) ends the process as Ctrl-C does, so that every ``finally`` runs (a Unix socket path is
    removed, reports are written). Only in the main thread, where Python delivers signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
