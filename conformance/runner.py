"""Run a suite with pytest and collect a :class:`~.results.Report`; list the catalogue without running."""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import pytest

from ..spec.iut import IutError, IutTimeout
from ..spec.requirements import SECTIONS, by_id
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from . import plugin
from .ics import IcsError, load_ics
from .plugin import SUITES, Preopened, Recorder, requirements_of, role_of, section_of
from .results import Report, Summary, TestResult

Role = Literal["hypervisor", "guest"]
INI = Path(__file__).parent / "pytest.ini"


@dataclass(frozen=True)
class CatalogueEntry:
    """One test of the catalogue."""

    test: str
    role: str
    section: str
    requirements: list[str]
    doc: str
    #: The only platforms the test applies to (spec "Message formats"); empty: every platform.
    platforms: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "role": self.role,
            "section": self.section,
            "requirements": self.requirements,
            "doc": self.doc,
            "platforms": self.platforms,
        }


def _args(
    role: Role,
    iut: str,
    ics: str | None,
    timeout: float,
    requirements: list[str],
    sections: list[str],
    deadline: float | None = None,
    platform: str | None = None,
) -> list[str]:
    args = [
        str(SUITES / role),
        "-c",
        str(INI),
        "--rootdir",
        str(SUITES),
        "--pvmsi-role",
        role,
        "--pvmsi-iut",
        iut,
        "--pvmsi-timeout",
        str(timeout),
        "-p",
        "no:terminal",
    ]
    if ics:
        args += ["--pvmsi-ics", ics]
    if platform is not None:
        args += ["--pvmsi-platform", platform]
    if deadline is not None:
        args += ["--pvmsi-deadline", str(deadline)]
    for r in requirements:
        args += ["--pvmsi-requirement", r]
    for s in sections:
        args += ["--pvmsi-section", s]
    return args


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """pytest's own output is replaced by our reports; keep it for diagnosing usage errors."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield buf


class Termination:
    """What :func:`interrupt_on_sigterm` saw: the signal, once one came, and whether it still interrupts."""

    def __init__(self) -> None:
        self.signal: int | None = None
        #: While true a SIGTERM interrupts as Ctrl-C does; once the run is over it is only noted, so that the
        #: reports are written in full before the process exits.
        self.armed = True


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[Termination]:
    """SIGTERM (a CI cancel) interrupts a run as Ctrl-C does: the run stops, and its reports hold the tests that
    finished with ``complete`` false (docs/conformance-guide.md, "Reports"). Only in the main thread, where Python
    delivers signals; the previous handler comes back afterwards."""
    term = Termination()
    if threading.current_thread() is not threading.main_thread():
        yield term
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        term.signal = signum
        if term.armed:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield term
    finally:
        signal.signal(signal.SIGTERM, previous)


class UsageError(ValueError):
    """The run could not start (bad selection, bad ICS, unreachable IUT): the message says why."""


def run(
    role: Role,
    iut: str,
    *,
    ics: str | None = None,
    timeout: float = 10.0,
    deadline: float | None = None,
    requirements: list[str] | None = None,
    sections: list[str] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TestResult], None] | None = None,
    stream: Path | None = None,
    record: Path | None = None,
    platform: str | None = None,
) -> Report:
    """Run the ``role`` suite against ``iut``; the report holds whatever finished, even if interrupted.

    ``timeout`` bounds every wait for one answer; ``deadline`` (seconds) the whole run: the tests left when it
    passes, or when the IUT is found dead, are not run (verdict ``error``, one message for all of them)."""
    if not timeout > 0:
        raise UsageError(f"--timeout {timeout:g}: the time to wait for an answer must be more than 0 seconds")
    if deadline is not None and not deadline > 0:
        raise UsageError(f"--deadline {deadline:g}: the time the run may take must be more than 0 seconds")
    if ics:
        try:
            ics_platform = load_ics(ics, role).implementation.platform
        except IcsError as e:
            raise UsageError(str(e)) from None
        platform = platform or ics_platform
    platform = platform or _fault_platform(role, iut)
    for rid in requirements or []:
        try:
            by_id(rid)
        except KeyError:
            raise UsageError(f"unknown requirement id {rid!r}") from None
    for section in sections or []:
        if section not in SECTIONS:
            raise UsageError(f"unknown section {section!r}; known: {', '.join(SECTIONS)}")
    recorder = Recorder(stream, on_result)
    pre = _preopen(role, iut, timeout, platform) if record is None else None

    class _Start:
        def pytest_collection_finish(self, session: pytest.Session) -> None:
            if on_start is not None:
                on_start(len(session.items))

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    interrupted = False
    with _quiet() as out:
        try:
            args = _args(role, iut, ics, timeout, requirements or [], sections or [], deadline, platform)
            if record is not None:
                args += ["--pvmsi-record", str(record)]
            code = pytest.main(args, plugins=[plugin, recorder, _Start(), *([pre] if pre else [])])
        except KeyboardInterrupt:
            code, interrupted = pytest.ExitCode.INTERRUPTED, True
        finally:
            if pre is not None:
                pre.close()
    if code == pytest.ExitCode.USAGE_ERROR or (code == pytest.ExitCode.INTERNAL_ERROR and not recorder.results):
        raise UsageError(_last_error(out.getvalue()))
    if code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        # INTERNAL_ERROR after some results: a Ctrl-C that landed inside a hook; the run did not finish either way
        interrupted = True
    summary = Summary()
    for r in recorder.results:
        summary.add(r.verdict)
    return Report(
        spec_version=f"{VERSION_MAJOR}.{VERSION_MINOR}",
        role=role,
        iut=iut,
        complete=not interrupted,
        started=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 3),
        summary=summary,
        results=recorder.results,
    )


def _fault_platform(role: Role, iut: str) -> str | None:
    """The platform a faulty implementation shows its fault on (``faulty:NAME``), None for any other IUT."""
    if not iut.startswith("faulty:"):
        return None
    from .faults import FAULTS, GUEST_FAULTS

    found = (GUEST_FAULTS if role == "guest" else FAULTS).get(iut.removeprefix("faulty:"))
    return found.platform if found is not None else None


def _preopen(role: Role, iut: str, timeout: float, platform: str | None = None) -> Preopened:
    """Open the IUT before the run, in either role: one that cannot be used (a malformed ``--iut``, an unknown
    fault, no socket, a command that does not start, a peer that closes or answers ``HELLO`` wrongly) is a
    :class:`UsageError`; one that does not answer ``HELLO`` in time is dead from the start (its tests are not run,
    docs/conformance-guide.md, "A dead IUT")."""
    from .connect import open_iut

    try:
        return Preopened(open_iut(role, iut, timeout, platform))
    except IutTimeout as e:
        return Preopened(error=e)
    except IutError as e:
        raise UsageError(str(e)) from None


def _last_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["the suite could not start"])[-1].removeprefix("ERROR: ").strip()


def catalogue(role: Role | None = None) -> list[CatalogueEntry]:
    """Every test of the suites (or of one role) with its section and requirement ids, without running."""
    entries: list[CatalogueEntry] = []

    class _Collect:
        def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
            for item in items:
                ids = requirements_of(item)
                doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip().splitlines()
                entries.append(
                    CatalogueEntry(
                        f"{Path(str(item.path)).stem}::{item.name}",
                        role_of(item),
                        section_of(ids),
                        ids,
                        doc[0] if doc else "",
                        [str(a) for m in item.iter_markers("platforms") for a in m.args],
                    )
                )

    roles: list[Role] = [role] if role else ["hypervisor", "guest"]
    for r in roles:
        with _quiet() as out:
            code = pytest.main(
                [*_args(r, "reference", None, 1.0, [], []), "--collect-only"], plugins=[plugin, _Collect()]
            )
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            raise UsageError(_last_error(out.getvalue()))
    return entries
