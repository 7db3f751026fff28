"""Serve a hypervisor backend over the harness protocol: on stdio, a Unix socket or TCP (loopback)."""

from __future__ import annotations

import os
import selectors
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from ..iut import HypervisorIUT
from .server import HypervisorService

Factory = Callable[[], HypervisorIUT]


def _pump(
    read: Callable[[int], bytes],
    write: Callable[[bytes], None],
    wait: Callable[[float], bool],
    service: HypervisorService,
    idle_timeout: float,
) -> None:
    """Feed the service until the peer closes, sends BYE, breaks the framing, or stays idle too long."""
    while not service.closed:
        if not wait(idle_timeout):
            return
        data = read(65536)
        if not data:
            return
        out = service.receive(data)
        if out:
            write(out)


def serve_stdio(factory: Factory, idle_timeout: float) -> None:
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)

    def write(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    service = HypervisorService(factory())
    try:
        _pump(lambda n: os.read(stdin, n), write, lambda t: bool(sel.select(t)), service, idle_timeout)
    finally:
        service.backend.close()


def serve_socket(
    factory: Factory, listen: str, idle_timeout: float, once: bool = False, ready: Callable[[str], None] | None = None
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
                service = HypervisorService(factory())

                def wait(t: float, c: socket.socket = conn) -> bool:
                    c.settimeout(t)
                    return True

                def read(n: int, c: socket.socket = conn) -> bytes:
                    try:
                        return c.recv(n)
                    except (TimeoutError, ConnectionError):
                        return b""

                try:
                    _pump(read, conn.sendall, wait, service, idle_timeout)
                except (BrokenPipeError, ConnectionError):
                    pass
                finally:
                    service.backend.close()
            if once:
                return
    finally:
        srv.close()
        if scheme == "unix":
            Path(rest).unlink(missing_ok=True)
