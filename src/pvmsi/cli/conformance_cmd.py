"""``pvmsi conformance``: run the suites, list the catalogue, publish the report schema, check the faults."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Literal, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..conformance.reports import report_schema, to_html, to_json, to_junit, write_atomic
from ..conformance.results import NOT_RUN, Report, TestResult, Verdict
from ..conformance.runner import UsageError, catalogue, interrupt_on_sigterm, run
from ..spec.iut import IutError

Role = Literal["hypervisor", "guest"]
COLOURS = {"pass": "green", "fail": "red", "unsupported": "dim", "error": "yellow", "timeout": "yellow"}


@click.group()
def conformance() -> None:
    """The conformance suite: test a hypervisor or a guest against pvmsi 1.0."""


def _summary_table(report: Report) -> Table:
    t = Table("verdict", "tests", title=f"pvmsi {report.spec_version} {report.role} suite against {report.iut}")
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


@conformance.command("run")
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
@click.option("--verbose", "-v", is_flag=True, help="Print every failure's transcript.")
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
    console = Console(stderr=True)
    partial = Path(json_path).with_suffix(".partial.jsonl") if json_path else None
    if partial is not None:
        partial.unlink(missing_ok=True)
    with interrupt_on_sigterm() as term:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"{role} suite", total=None)

            def on_start(total: int) -> None:
                progress.update(task, total=total)

            not_run: set[str] = set()

            def on_result(r: TestResult) -> None:
                progress.advance(task)
                if r.message.startswith(NOT_RUN):
                    if r.message not in not_run:  # once for all the tests it stops
                        not_run.add(r.message)
                        progress.console.print(f"[yellow]{r.message}[/]", markup=True, highlight=False)
                elif r.verdict is not Verdict.PASS:
                    progress.console.print(
                        f"[{COLOURS[r.verdict.value]}]{r.verdict.value.upper():11}[/] {r.test} "
                        f"({', '.join(r.requirements)})"
                    )

            try:
                report = run(
                    cast(Role, role),
                    iut,
                    ics=ics,
                    timeout=timeout,
                    deadline=deadline,
                    requirements=list(requirements),
                    sections=list(sections),
                    on_start=on_start,
                    on_result=on_result,
                    stream=partial,
                )
            except (UsageError, IutError) as e:
                raise click.UsageError(str(e)) from None
        term.armed = False  # from here a SIGTERM waits for the reports
        _print_failures(console, report, verbose)
        console.print(_summary_table(report))
        if json_path:
            write_atomic(json_path, to_json(report))
            if partial is not None:
                partial.unlink(missing_ok=True)
        if junit:
            write_atomic(junit, to_junit(report))
        if html:
            write_atomic(html, to_html(report))
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


def _print_failures(console: Console, report: Report, verbose: bool) -> None:
    not_run: dict[str, list[str]] = {}
    for r in report.results:
        if r.message.startswith(NOT_RUN):
            not_run.setdefault(r.message, []).append(r.test)
        elif r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT):
            console.rule(f"[{COLOURS[r.verdict.value]}]{r.verdict.value.upper()}[/] {r.test}")
            console.print(r.message, markup=False, highlight=False)
            tail = r.transcript if verbose else r.transcript[-6:]
            if tail:
                console.print("transcript" + ("" if verbose else " (last calls; -v for all)") + ":", style="dim")
                for line in tail:
                    console.print(f"  {line}", markup=False, highlight=False, style="dim")
    for message, tests in not_run.items():
        console.rule(f"[yellow]ERROR[/] {len(tests)} test{'s' if len(tests) > 1 else ''} not run")
        console.print(message.removeprefix(NOT_RUN), markup=False, highlight=False)
        console.print(f"from {tests[0]} to {tests[-1]}", style="dim", markup=False, highlight=False)


@conformance.command("list")
@click.option("--role", type=click.Choice(["hypervisor", "guest"]), help="Only this role's suite.")
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
def list_cmd(role: str | None, as_json: bool) -> None:
    """The catalogue: every test, its section and the requirement ids it checks."""
    try:
        entries = catalogue(cast(Role, role) if role else None)
    except UsageError as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        click.echo(json.dumps([entry.as_json() for entry in entries], indent=2))
        return
    # Names and ids are never cut short, however narrow the terminal: they fold onto the next line instead.
    t = Table("role", "section")
    t.add_column("test", overflow="fold")
    t.add_column("requirements", no_wrap=True)
    for entry in entries:
        t.add_row(entry.role, entry.section, entry.test, "\n".join(entry.requirements))
    Console().print(t)
    click.echo(f"{len(entries)} tests")


@conformance.command("schema")
def schema_cmd() -> None:
    """Print the JSON schema of the --json report."""
    click.echo(json.dumps(report_schema(), indent=2))


def _all_faults(role: str | None) -> list[tuple[str, str, str, str]]:
    """(role, name, breaks, description) of every faulty implementation of ``role`` (None: both roles)."""
    from ..conformance.faults import FAULTS, GUEST_FAULTS

    rows: list[tuple[str, str, str, str]] = []
    if role in (None, "hypervisor"):
        rows += [("hypervisor", f.name, f.breaks, f.description) for f in FAULTS.values()]
    if role in (None, "guest"):
        rows += [("guest", f.name, f.breaks, f.description) for f in GUEST_FAULTS.values()]
    return rows


@conformance.command("faults")
@click.option("--role", type=click.Choice(["hypervisor", "guest"]), help="Only this role's faulty implementations.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def faults_cmd(role: str | None, as_json: bool) -> None:
    """The deliberately faulty implementations the suite must catch (run one with --role R --iut faulty:NAME)."""
    rows = _all_faults(role)
    if as_json:
        click.echo(
            json.dumps(
                [{"name": n, "role": r, "breaks": b, "description": d} for r, n, b, d in rows],
                indent=2,
            )
        )
        return
    t = Table("role", "name", "breaks", "what it does wrong")
    for r, n, b, d in rows:
        t.add_row(r, n, b, d)
    Console().print(t)


@conformance.command("check-faults")
@click.option("--role", type=click.Choice(["hypervisor", "guest"]), help="Only this role's faulty implementations.")
@click.option("--full", is_flag=True, help="Run the whole suite against each, not only the tests naming its id.")
def check_faults_cmd(role: str | None, full: bool) -> None:
    """Run the suite against every faulty implementation: each must fail with the requirement it breaks."""
    console = Console()
    t = Table("role", "fault", "breaks", "failed tests", "caught")
    rows = _all_faults(role)
    missed = 0
    for r, name, breaks, _ in rows:
        report = run(cast(Role, r), f"faulty:{name}", requirements=[] if full else [breaks])
        failed = [x for x in report.results if x.verdict is Verdict.FAIL]
        caught = any(breaks in x.message.split(" ", 1)[0] for x in failed)
        missed += not caught
        t.add_row(r, name, breaks, str(len(failed)), "[green]yes[/]" if caught else "[red]NO[/]")
    console.print(t)
    click.echo(f"{len(rows) - missed} caught, {missed} missed")
    sys.exit(1 if missed else 0)


@conformance.command("vectors")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Folder to write (its scenarios/ subfolder is replaced).",
)
def vectors_cmd(out_dir: str) -> None:
    """Record the scenario vectors: every passing hypervisor test, replayable without Python's suite."""
    import shutil

    from ..conformance.scenarios import SCENARIO_FORMAT, SCENARIO_VERSION, load_vectors

    target = Path(out_dir) / "scenarios"
    if target.exists():
        shutil.rmtree(target)
    report = run("hypervisor", "reference", record=target)
    docs = list(load_vectors(target))
    index = {
        "format": SCENARIO_FORMAT,
        "format_version": SCENARIO_VERSION,
        "spec_version": report.spec_version,
        "vectors": [
            {
                "file": d["test"].replace("::", "__") + ".json",
                "test": d["test"],
                "requirements": d["requirements"],
                "options": d.get("options", []),
                "steps": len(d["steps"]),
            }
            for d in docs
        ],
        "omitted": json.loads((target / "omitted.json").read_text()) if (target / "omitted.json").exists() else [],
    }
    write_atomic(target / "index.json", json.dumps(index, indent=1, sort_keys=True) + "\n")
    click.echo(f"wrote {len(docs)} scenario vectors under {target}")
    if not report.summary.ok:
        raise click.ClickException("the suite did not pass against the reference; vectors are incomplete")


@conformance.command("replay")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--iut", default="reference", show_default=True, help="As for `run`.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for any one answer of the IUT (and for it to accept the connection).",
)
def replay_cmd(directory: str, iut: str, timeout: float) -> None:
    """Replay scenario vectors against a hypervisor (a fresh connection per vector)."""
    from ..conformance.connect import open_hypervisor
    from ..conformance.scenarios import ReplayMismatch, load_vectors, replay

    passed = failed = 0
    docs = list(load_vectors(Path(directory)))
    if not docs:
        raise click.UsageError(f"{directory}: no scenario vectors (*.json) there")
    for doc in docs:
        try:
            target = open_hypervisor(iut, timeout)
        except IutError as e:
            raise click.UsageError(str(e)) from None
        try:
            replay(doc, target)
            passed += 1
        except ReplayMismatch as e:
            failed += 1
            click.echo(f"FAIL {doc['test']} ({', '.join(doc['requirements'])}): {e}")
        finally:
            target.close()
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
