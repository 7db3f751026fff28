"""An IUT that stops answering, and the run's deadline: the IUT is found dead once, the tests left are not run
(verdict error, one message), and the run ends in about two timeouts however many tests are left
(docs/conformance-guide.md, "A dead IUT, and the run's deadline")."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvmsi.conformance import results
from pvmsi.conformance.harness.frames import FrameReader, build
from pvmsi.conformance.harness.server import HypervisorService
from pvmsi.conformance.results import Report, Verdict
from pvmsi.conformance.runner import UsageError, catalogue, run
from pvmsi.reference.backend import ReferenceHypervisor
from pvmsi.spec.harness_constants import FrameKind, HarnessRole
from pvmsi.spec.requirements import by_id

PVMSI = str(Path(sys.executable).with_name("pvmsi"))


@contextlib.contextmanager
def silent_server(path: Path, *, answer_hello: bool) -> Iterator[str]:
    """A Unix-socket 'hypervisor' that accepts and never answers (or answers HELLO, then goes silent)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    srv.settimeout(0.05)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if not answer_hello:
                continue
            reader = FrameReader()
            conn.settimeout(2)
            while (frame := reader.next_frame()) is None:
                reader.feed(conn.recv(4096))
            hello = {"role": HarnessRole.HYPERVISOR, "spec_major": 1, "spec_minor": 0, "max_payload": 65536}
            conn.sendall(build(FrameKind.HELLO_ACK, frame.seq, {**hello, "name": b"silent\0\0"}))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"unix:{path}"
    finally:
        stop.set()
        thread.join(5)
        for c in conns:
            c.close()
        srv.close()


@contextlib.contextmanager
def hanging_server(path: Path, answers: int) -> Iterator[str]:
    """A Unix-socket reference hypervisor that answers ``answers`` requests, then reads on and never answers again
    (as an IUT stuck in a deadlock does)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            service, left = HypervisorService(ReferenceHypervisor()), answers
            conn.settimeout(0.05)
            with conn:
                while not stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    if left > 0 and (out := service.receive(data)):
                        conn.sendall(out)
                        left -= 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"unix:{path}"
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def assert_not_run_after(report: Report, first: int) -> list[results.TestResult]:
    """Every result after the first ``first`` is not run, with one and the same message; those results (the tests
    of another platform than the ICS's are unsupported before they need the IUT, and are left out)."""
    elsewhere = {e.test for e in catalogue("hypervisor") if e.platforms and "vtd" not in e.platforms}
    rest = [r for r in report.results[first:] if r.test not in elsewhere]
    assert rest, "some tests were left when the IUT died"
    assert {r.verdict for r in rest} == {Verdict.ERROR}
    assert len({r.message for r in rest}) == 1, {r.message for r in rest}
    assert rest[0].message.startswith(results.NOT_RUN)
    assert all(r.duration_s < 0.1 for r in rest)
    return rest


@pytest.mark.parametrize("answer_hello", [False, True], ids=["never-answers", "hello-then-silent"])
def test_a_silent_iut_is_found_dead_and_the_rest_is_not_run(tmp_path: Path, answer_hello: bool) -> None:
    """An IUT that never answers costs one timeout (two once it answered HELLO: a request in a row may be
    dropped), not one per test; every selected test still has a verdict."""
    with silent_server(tmp_path / "s.sock", answer_hello=answer_hello) as iut:
        t0 = time.monotonic()
        report = run("hypervisor", iut, timeout=0.3, sections=["memory"])
        elapsed = time.monotonic() - t0
    timeouts = 2 if answer_hello else 1
    memory = [e for e in catalogue("hypervisor") if "memory" in {by_id(r).section for r in e.requirements}]
    assert len(report.results) == len(memory)
    for r in report.results[:timeouts]:
        assert r.verdict is Verdict.TIMEOUT, (r.test, r.verdict, r.message)
        assert "0.3 s" in r.message
        assert r.duration_s < 2
    rest = assert_not_run_after(report, timeouts)
    assert ("HELLO" if not answer_hello else "stopped answering") in rest[0].message
    assert elapsed < 8
    assert report.complete
    assert report.summary.timeout == timeouts
    assert report.summary.error == len(rest)


def test_an_iut_that_hangs_mid_run_costs_two_timeouts(tmp_path: Path) -> None:
    """The whole suite against an IUT that stops answering after 400 requests: two timeouts (the test's request
    and the next: its VM_DESTROY, or another VM_CREATE), then every remaining test is not run, at once. (On a
    loaded machine an answer may also come late: that costs one timeout, never the run.)"""
    with hanging_server(tmp_path / "h.sock", answers=400) as iut:
        t0 = time.monotonic()
        report = run("hypervisor", iut, timeout=2)
        elapsed = time.monotonic() - t0
    assert len(report.results) == len(catalogue("hypervisor"))
    first_not_run = next(i for i, r in enumerate(report.results) if r.message.startswith(results.NOT_RUN))
    hung = report.results[first_not_run - 1]
    assert hung.verdict is Verdict.TIMEOUT
    # UNSUPPORTED: the tests of another platform than the ICS's (spec "Message formats")
    assert {r.verdict for r in report.results[: first_not_run - 1]} <= {
        Verdict.PASS,
        Verdict.TIMEOUT,
        Verdict.UNSUPPORTED,
    }
    assert sum(r.verdict is Verdict.PASS for r in report.results) > 5
    rest = assert_not_run_after(report, first_not_run)
    assert hung.test in rest[0].message
    assert re.search(r"answered none of [A-Z_]+, [A-Z_]+ within", rest[0].message), rest[0].message
    assert elapsed < 40, elapsed  # against about 2 s a remaining test without the detection


def test_a_timeout_fails_the_cli(tmp_path: Path) -> None:
    with silent_server(tmp_path / "s.sock", answer_hello=True) as iut:
        c = subprocess.run(
            [PVMSI, "conformance", "run", "--iut", iut, "--timeout", "0.3", "--section", "memory"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert c.returncode == 1, c.stderr
    assert "2 timeouts" in c.stdout
    not_run = re.findall(r"(\d+) tests not run", c.stderr)
    assert len(not_run) == 1, c.stderr  # one block for all of them ...
    assert int(not_run[0]) > 0, c.stderr
    assert c.stderr.count("not run: the IUT stopped answering") == 1, c.stderr  # ... and one line while it runs
    assert c.stderr.count("TIMEOUT") == 4, c.stderr  # each timeout: its line while it runs, its block at the end


def test_the_deadline_ends_the_run(tmp_path: Path) -> None:
    """--deadline cuts the wait of the test in progress and leaves the rest not run."""
    with silent_server(tmp_path / "s.sock", answer_hello=True) as iut:
        t0 = time.monotonic()
        report = run("hypervisor", iut, timeout=30, deadline=3.0, sections=["memory"])
        elapsed = time.monotonic() - t0
    assert elapsed < 12, elapsed  # the deadline, not the 30 s timeout
    assert report.results[0].verdict is Verdict.TIMEOUT
    assert "deadline" in report.results[0].message
    rest = assert_not_run_after(report, 1)
    assert "--deadline 3 s" in rest[0].message
    in_process = run("hypervisor", "reference", deadline=0.5)
    assert len(in_process.results) == len(catalogue("hypervisor"))
    verdicts = [r.verdict for r in in_process.results]
    assert set(verdicts) <= {Verdict.PASS, Verdict.ERROR, Verdict.UNSUPPORTED}  # unsupported: another platform's
    assert_not_run_after(in_process, verdicts.index(Verdict.ERROR))
    with pytest.raises(UsageError, match="--deadline"):
        run("hypervisor", "reference", deadline=-1)
