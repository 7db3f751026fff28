"""Serve an implementation over the harness protocol: on stdio, a Unix socket or TCP (loopback).

The hypervisor role serves a :class:`~.server.HypervisorService` per connection; the guest role a
:class:`~.guest_server.GuestService` (pass ``service=``), whose answers from the suite have a deadline.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ...spec.iut import HypervisorIUT
from .server import HypervisorService

Factory = Callable[[], HypervisorIUT]


class Service(Protocol):
    """What the transport loop drives: bytes in, bytes out (sans-I/O)."""

    @property
    def closed(self) -> bool: ...

    def receive(self, data: bytes) -> bytes: ...

    def close(self) -> None: ...


#: Makes the service of one connection.
ServiceFactory = Callable[[], Service]


class _Hypervisor:
    """A :class:`HypervisorService` with the backend's close as its own."""

    def __init__(self, factory: Factory) -> None:
        self.service = HypervisorService(factory())

    @property
    def closed(self) -> bool:
        return self.service.closed

    def receive(self, data: bytes) -> bytes:
        return self.service.receive(data)

    def close(self) -> None:
        self.service.backend.close()


def _pump(
    read: Callable[[int], bytes],
    write: Callable[[bytes], None],
    wait: Callable[[float], bool],
    service: Service,
    idle_timeout: float,
) -> None:
    """Feed the service until the peer closes, sends BYE, breaks the framing, or stays idle too long.

    A service with a ``deadline`` (the guest role, waiting for the suite's answer) is woken when it is due and
    its ``expire()`` output is sent."""
    while not service.closed:
        deadline: float | None = getattr(service, "deadline", None)
        timeout = idle_timeout if deadline is None else max(0.0, min(idle_timeout, deadline - time.monotonic()))
        if not wait(timeout):
            if deadline is not None and time.monotonic() >= deadline:
                out = service.expire()  # type: ignore[attr-defined]
                if out:
                    write(out)
                continue
            return
        data = read(65536)
        if not data:
            return
        out = service.receive(data)
        if out:
            write(out)


def _service(factory: Factory | None, service: ServiceFactory | None) -> Service:
    if service is not None:
        return service()
    assert factory is not None
    return _Hypervisor(factory)


def serve_stdio(factory: Factory | None, idle_timeout: float, *, service: ServiceFactory | None = None) -> None:
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)

    def write(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    svc = _service(factory, service)
    try:
        _pump(lambda n: os.read(stdin, n), write, lambda t: bool(sel.select(t)), svc, idle_timeout)
    finally:
        svc.close()


def serve_socket(
    factory: Factory | None,
    listen: str,
    idle_timeout: float,
    once: bool = False,
    ready: Callable[[str], None] | None = None,
    *,
    service: ServiceFactory | None = None,
) -> None:
    """Accept connections one after another; each gets a fresh backend (a fresh host)."""
    scheme, _, rest = listen.partition(":")
    if scheme == "unix":
        Path(rest).unlink(missing_ok=True)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(rest)
    elif scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"{listen}: the harness only listens on loopback")
        srv = socket.socket(socket.AF_INET6 if host == "::1" else socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, int(port)))
    else:
        raise ValueError(f"{listen!r}: expected unix:PATH or tcp:127.0.0.1:PORT")
    srv.listen(1)
    if ready is not None:
        addr = srv.getsockname()
        ready(f"unix:{rest}" if scheme == "unix" else f"tcp:{addr[0]}:{addr[1]}")
    try:
        while True:
            conn, _ = srv.accept()
            with conn:
                svc = _service(factory, service)

                def wait(t: float, c: socket.socket = conn) -> bool:
                    return bool(selectors_wait(c, t))

                def read(n: int, c: socket.socket = conn) -> bytes:
                    try:
                        return c.recv(n)
                    except ConnectionError:
                        return b""

                try:
                    _pump(read, conn.sendall, wait, svc, idle_timeout)
                except (BrokenPipeError, ConnectionError):
                    pass
                finally:
                    svc.close()
            if once:
                return
    finally:
        srv.close()
        if scheme == "unix":
            Path(rest).unlink(missing_ok=True)


def selectors_wait(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` becomes readable (or closed) within ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(timeout))
