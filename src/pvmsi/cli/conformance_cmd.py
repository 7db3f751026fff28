"""``pvmsi conformance``: run the suites, list the catalogue, publish the report schema, check the faults."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import cast

import click
from rich.console import Console

from ..conformance.reports import report_schema, write_atomic
from ..conformance.results import Verdict
from ..conformance.runner import UsageError, catalogue, run
from ..spec.iut import IutError
from .run_cmd import Role, run_cmd
from .ui import Group, table


@click.group(cls=Group)
def conformance() -> None:
    """The conformance suite: test a hypervisor or a guest against pvmsi 1.0."""


conformance.add_command(run_cmd)


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
    t = table("role", "section")
    t.add_column("test", overflow="fold")
    t.add_column("requirements", no_wrap=True, overflow="fold")
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
    t = table("role", "name", "breaks", "what it does wrong")
    for r, n, b, d in rows:
        t.add_row(r, n, b, d)
    Console().print(t)


@conformance.command("check-faults")
@click.option("--role", type=click.Choice(["hypervisor", "guest"]), help="Only this role's faulty implementations.")
@click.option("--full", is_flag=True, help="Run the whole suite against each, not only the tests naming its id.")
def check_faults_cmd(role: str | None, full: bool) -> None:
    """Run the suite against every faulty implementation: each must fail with the requirement it breaks."""
    console = Console()
    t = table("role", "fault", "breaks", "failed tests", "caught")
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
