"""``pvmsi conformance run``: run a suite, show it as it goes, and write the reports (docs/conformance-guide.md).

What the terminal shows: a progress bar and a line per test that did not pass while the run goes on, then each
failure with its requirement, expected and actual values (``-v``: with its whole transcript), then a summary.
Every report path is checked before the run; a report that cannot be written after it still leaves the results
in a file the error message names.
"""

from __future__ import annotations

import re
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..conformance.reports import ReportPathError, check_writable, to_html, to_json, to_junit, write_atomic
from ..conformance.results import NOT_RUN, Report, TestResult, Verdict
from ..conformance.runner import UsageError, interrupt_on_sigterm, run
from ..spec.iut import IutError
from .ui import table

Role = Literal["hypervisor", "guest"]
COLOURS = {"pass": "green", "fail": "red", "unsupported": "dim", "error": "yellow", "timeout": "yellow"}
FAILED = (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT)
#: Bytes in a transcript or a message longer than this are cut short without -v.
HEX_SHOWN = 32
_HEX = re.compile(rf"\b[0-9a-f]{{{2 * HEX_SHOWN + 2},}}\b")


class ReportError(click.ClickException):
    """A report could not be written; the results are in the file the message names (exit code 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Target:
    """One report to write: the option that asked for it, its path and how to render it."""

    option: str
    path: Path
    render: Callable[[Report], str]


def summary_table(report: Report) -> Table:
    t = table("verdict", "tests")
    s = report.summary
    for name, n in (
        ("pass", s.pass_),
        ("fail", s.fail),
        ("unsupported", s.unsupported),
        ("error", s.error),
        ("timeout", s.timeout),
    ):
        t.add_row(f"[{COLOURS[name]}]{name}[/]", str(n))
    return t


@click.command("run")
@click.option(
    "--role",
    type=click.Choice(["hypervisor", "guest"]),
    default="hypervisor",
    show_default=True,
    help="The role of the implementation under test.",
)
@click.option(
    "--iut",
    default="reference",
    show_default=True,
    help="reference | faulty:NAME | unix:PATH | tcp:HOST:PORT | exec:CMD",
)
@click.option("--ics", type=click.Path(dir_okay=False), help="Implementation conformance statement (TOML).")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--html", type=click.Path(dir_okay=False), help="Write a self-contained HTML report here.")
@click.option("--requirement", "requirements", multiple=True, help="Run only tests naming this id (repeatable).")
@click.option("--section", "sections", multiple=True, help="Run only tests of this spec section (repeatable).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for any one answer of the IUT.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds the whole run may take; the tests left when it passes are not run (verdict error).",
)
@click.option("--verbose", "-v", is_flag=True, help="Print every failure's whole transcript, bytes in full.")
def run_cmd(
    role: str,
    iut: str,
    ics: str | None,
    junit: str | None,
    json_path: str | None,
    html: str | None,
    requirements: tuple[str, ...],
    sections: tuple[str, ...],
    timeout: float,
    deadline: float | None,
    verbose: bool,
) -> None:
    """Run a suite; exit 0 only when nothing failed, errored or timed out."""
    # Bound to the terminal's stderr now: the run sends sys.stderr elsewhere while pytest runs.
    console = Console(file=sys.stderr)
    targets = [
        Target(option, Path(path), render)
        for option, path, render in (
            ("--json", json_path, to_json),
            ("--junit", junit, to_junit),
            ("--html", html, to_html),
        )
        if path
    ]
    for t in targets:
        try:
            check_writable(t.path)
        except ReportPathError as e:
            raise click.UsageError(f"{t.option} {e}") from None
    partial = Path(json_path).with_suffix(".partial.jsonl") if json_path else None
    if partial is not None:
        partial.unlink(missing_ok=True)
    with interrupt_on_sigterm() as term:
        report = _run_with_progress(
            console,
            cast(Role, role),
            iut,
            ics=ics,
            timeout=timeout,
            deadline=deadline,
            requirements=list(requirements),
            sections=list(sections),
            stream=partial,
        )
        term.armed = False  # from here a SIGTERM waits for the reports
        print_failures(console, report, verbose)
        console.print(
            f"pvmsi {report.spec_version} {report.role} suite against {report.iut}", markup=False, highlight=False
        )
        console.print(summary_table(report))
        _write_reports(report, targets, partial)
        s = report.summary
        click.echo(
            f"{s.pass_} passed, {s.fail} failed, {s.unsupported} unsupported, {s.error} errors, "
            f"{s.timeout} timeouts in {report.duration_s:.1f} s"
        )
        if term.signal is not None and report.complete:
            sys.exit(128 + term.signal)  # after the run: the reports are whole, and the caller asked to stop
        if not report.complete:
            why = "terminated (SIGTERM)" if term.signal is not None else "interrupted"
            console.print(f"[yellow]{why}: the reports hold the tests that finished[/]")
            sys.exit(128 + (term.signal or signal.SIGINT))
        sys.exit(0 if s.ok else 1)


def _run_with_progress(
    console: Console,
    role: Role,
    iut: str,
    *,
    ics: str | None,
    timeout: float,
    deadline: float | None,
    requirements: list[str],
    sections: list[str],
    stream: Path | None,
) -> Report:
    """The run, with a progress bar and a line for each test that did not pass (once for the tests not run)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as progress:
        task = progress.add_task(f"{role} suite", total=None)
        not_run: set[str] = set()

        def on_start(total: int) -> None:
            progress.update(task, total=total)

        def on_result(r: TestResult) -> None:
            progress.advance(task)
            if r.message.startswith(NOT_RUN):
                if r.message not in not_run:  # once for all the tests it stops
                    not_run.add(r.message)
                    progress.console.print(f"ERROR       {r.message}", style="yellow", markup=False, highlight=False)
            elif r.verdict is not Verdict.PASS:
                progress.console.print(
                    f"[{COLOURS[r.verdict.value]}]{r.verdict.value.upper():11}[/] {r.test} "
                    f"({', '.join(r.requirements)})",
                    highlight=False,
                )

        try:
            return run(
                role,
                iut,
                ics=ics,
                timeout=timeout,
                deadline=deadline,
                requirements=requirements,
                sections=sections,
                on_start=on_start,
                on_result=on_result,
                stream=stream,
            )
        except (UsageError, IutError) as e:
            raise click.UsageError(str(e)) from None


def _write_reports(report: Report, targets: list[Target], partial: Path | None) -> None:
    """Write every report; if one cannot be written, say so and where the results are (exit code 2)."""
    failed: list[str] = []
    saved: Path | None = None
    for t in targets:
        try:
            write_atomic(t.path, t.render(report))
        except OSError as e:
            failed.append(f"cannot write {t.option} {t.path}: {e.strerror or e}")
        else:
            if t.option == "--json":
                saved = t.path
    if partial is not None and saved is not None:
        partial.unlink(missing_ok=True)
    if not failed:
        return
    if saved is None:
        saved = _save_elsewhere(report)
    where = f"the results are in {saved}" if saved else "and no file could hold the results"
    raise ReportError(f"{'; '.join(failed)}; {where}")


def _save_elsewhere(report: Report) -> Path | None:
    """The JSON report in a new file of the temporary folder, or None if even that fails."""
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", prefix="pvmsi-report-", suffix=".json", delete=False
        ) as f:
            f.write(to_json(report))
            return Path(f.name)
    except OSError:
        return None


def shorten(text: str) -> str:
    """``text`` with every run of more than ``HEX_SHOWN`` bytes in hex cut to its first bytes and its length."""
    return _HEX.sub(lambda m: f"{m.group()[: 2 * HEX_SHOWN]}…({len(m.group()) // 2} bytes)", text)


def print_failures(console: Console, report: Report, verbose: bool) -> None:
    """Each failure: its requirement, expected and actual; ``verbose`` adds its whole transcript. The tests not
    run are one block per reason."""
    not_run: dict[str, list[str]] = {}
    for r in report.results:
        if r.message.startswith(NOT_RUN):
            not_run.setdefault(r.message, []).append(r.test)
            continue
        if r.verdict not in FAILED:
            continue
        console.rule(f"[{COLOURS[r.verdict.value]}]{r.verdict.value.upper()}[/] {r.test}")
        console.print(r.message if verbose else shorten(r.message), markup=False, highlight=False)
        if not r.transcript:
            continue
        if verbose:
            console.print("transcript:", style="dim")
            for line in r.transcript:
                console.print(f"  {line}", markup=False, highlight=False, style="dim")
        else:
            console.print(
                f"last call: {shorten(r.transcript[-1])}\n"
                f"({len(r.transcript)} calls in the transcript: -v prints them all; --html and --json keep them)",
                markup=False,
                highlight=False,
                style="dim",
            )
    for message, tests in not_run.items():
        console.rule(f"[yellow]ERROR[/] {len(tests)} test{'s' if len(tests) > 1 else ''} not run")
        console.print(message.removeprefix(NOT_RUN), markup=False, highlight=False)
        console.print(f"from {tests[0]} to {tests[-1]}", style="dim", markup=False, highlight=False)
