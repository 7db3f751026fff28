"""Byte channels for the harness protocol: Unix socket, TCP on loopback, a child process's stdio.

Every receive has a timeout; nothing here ever blocks without one. Connecting fails at once where waiting cannot
help (no socket file, a refused connection, a host name that does not resolve, a command that cannot be parsed
or started) and retries until the timeout otherwise (docs/conformance-guide.md, "The command line").
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import shlex
import socket
import subprocess
import time
from typing import Protocol

from ...spec.iut import IutError, IutTimeout


class Channel(Protocol):
    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes:
        """Some bytes, b"" at end of stream; raises IutTimeout."""
        ...

    def close(self) -> None: ...


class SocketChannel:
    """A connected stream socket."""

    def __init__(self, sock: socket.socket, label: str) -> None:
        self.sock = sock
        self.label = label

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise IutError(f"{self.label}: send failed: {e}") from None

    def recv(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            raise IutTimeout(f"{self.label}: no answer within {timeout:.3g} s") from None
        except OSError as e:
            raise IutError(f"{self.label}: receive failed: {e}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class ProcessChannel:
    """A child process speaking the protocol on its stdin and stdout (stderr passes through)."""

    def __init__(self, command: str, start_timeout: float = 10.0) -> None:
        self.label = f"exec:{command}"
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise IutError(f"{self.label}: cannot read the command as a shell would: {e}") from None
        if not argv:
            raise IutError(f"{self.label}: no command")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        except OSError as e:
            raise IutError(f"{self.label}: cannot start {argv[0]}: {e.strerror}") from None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._in = self.proc.stdin
        self._out = self.proc.stdout
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._out, selectors.EVENT_READ)

    def send(self, data: bytes) -> None:
        try:
            self._in.write(data)
            self._in.flush()
        except (BrokenPipeError, OSError) as e:
            raise IutError(f"{self.label}: the process stopped reading ({e}); exit code {self.proc.poll()}") from None

    def recv(self, timeout: float) -> bytes:
        if not self._sel.select(timeout):
            raise IutTimeout(f"{self.label}: no answer within {timeout:.3g} s")
        return os.read(self._out.fileno(), 65536)

    def close(self) -> None:
        self._sel.close()
        for stream in (self._in, self._out):
            with contextlib.suppress(OSError):
                stream.close()
        # Its stdin closed, a live IUT exits; one that hangs is asked to (SIGTERM), then made to.
        for stop in (None, self.proc.terminate, self.proc.kill):
            if stop is not None:
                stop()
            try:
                self.proc.wait(timeout=2)
                return
            except subprocess.TimeoutExpired:
                continue


#: Why a connection failed, where waiting cannot change it: said at once.
FINAL = {
    errno.ENOENT: "no such socket: nothing listens there (start the IUT first)",
    errno.ECONNREFUSED: "connection refused: nothing listens there (start the IUT first)",
    errno.ENOTSOCK: "not a socket",
    errno.EACCES: "permission denied",
}


def _retry_connect(family: int, address: object, label: str, timeout: float) -> SocketChannel:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(address)  # type: ignore[arg-type]
            return SocketChannel(sock, label)
        except socket.gaierror as e:
            sock.close()
            raise IutError(f"{label}: cannot connect: the host does not resolve: {e.strerror}") from None
        except OSError as e:
            sock.close()
            if e.errno in FINAL:
                raise IutError(f"{label}: cannot connect: {FINAL[e.errno]}") from None
            if time.monotonic() > deadline:
                raise IutError(f"{label}: cannot connect within {timeout:g} s: {e.strerror or e}") from None
            time.sleep(0.05)


def open_channel(spec: str, timeout: float) -> Channel:
    """A channel to ``unix:PATH``, ``tcp:HOST:PORT`` or ``exec:COMMAND``."""
    scheme, _, rest = spec.partition(":")
    if scheme == "unix" and rest:
        return _retry_connect(socket.AF_UNIX, rest, spec, timeout)
    if scheme == "tcp" and rest:
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise IutError(f"{spec}: expected tcp:HOST:PORT")
        if not 0 < int(port) < 65536:
            raise IutError(f"{spec}: port {port} is not in 1..65535")
        return _retry_connect(socket.AF_INET, (host, int(port)), spec, timeout)
    if scheme == "exec" and rest:
        return ProcessChannel(rest)
    raise IutError(f"{spec!r}: expected unix:PATH, tcp:HOST:PORT or exec:COMMAND")
