"""``pvmsi fuzz``: calls into the reference hypervisor, each checked against an independent model of the spec;
``--check-faults``: the same fuzzer against every deliberately faulty hypervisor, counting those it catches."""

from __future__ import annotations

import datetime
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def _run_chunk(args: tuple[int, int]) -> dict[str, Any]:
    from ..reference.fuzz import fuzz

    inputs, seed = args
    return fuzz(inputs, seed).as_dict()


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seeds": [p["seed"] for p in parts],
        "inputs": sum(p["inputs"] for p in parts),
        "failures": sum(p["failures"] for p in parts),
        "first_failures": [f for p in parts for f in p["first_failures"]][:20],
        "statuses": {},
        "events": {},
        "elapsed_s": max(p["elapsed_s"] for p in parts),
    }
    for key in ("statuses", "events"):
        for p in parts:
            for name, n in p[key].items():
                out[key][name] = out[key].get(name, 0) + n
        out[key] = dict(sorted(out[key].items()))
    out["ok"] = out["failures"] == 0
    return out


@click.command()
@click.option("--inputs", "-n", type=click.IntRange(min=1), default=10_000, show_default=True, help="Inputs to feed.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; a run is reproducible from it.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes; job i fuzzes inputs/jobs inputs from seed + i.",
)
@click.option(
    "--json",
    "json_to",
    is_flag=False,
    flag_value="-",
    default=None,
    metavar="[FILE]",
    help="The report as one JSON object: on stdout (and nothing else there), or into FILE.",
)
@click.option(
    "--check-faults",
    is_flag=True,
    help="Fuzz every faulty hypervisor instead (up to --inputs each, stopping at the first failure): "
    'the report is {"total", "caught", "missed": [names], ...}.',
)
def fuzz(inputs: int, seed: int, jobs: int, json_to: str | None, check_faults: bool) -> None:
    """Fuzz the reference hypervisor; exit status 1 if any input raised or broke a check."""
    from ..reference.fuzz import Fuzzer, chunks

    as_json = json_to == "-"
    console = Console(stderr=True, quiet=as_json)
    if check_faults:
        _check_faults(inputs, seed, jobs, json_to, console)
        return
    if jobs == 1:
        fuzzer = Fuzzer(seed)
        with Progress(
            TextColumn("fuzzing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("fuzz", total=inputs)
            report = fuzzer.run(inputs, lambda done: progress.update(task, completed=done)).as_dict()
    else:
        with console.status(f"fuzzing {inputs} inputs in {jobs} processes"), ProcessPoolExecutor(jobs) as pool:
            report = _merge(list(pool.map(_run_chunk, [(n, seed + j) for j, n in enumerate(chunks(inputs, jobs))])))
    report["run"] = {
        "seed": seed,
        "jobs": jobs,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if json_to is not None:
        _write_json(report, json_to)
    if not as_json:
        out = Console()
        verdict = "[green]no failure[/]" if report["ok"] else f"[red]{report['failures']} failure(s)[/]"
        out.print(f"{report['inputs']} inputs, {verdict}, {report['elapsed_s']:.1f} s")
        out.print("statuses: " + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()))
        out.print("events:   " + ", ".join(f"{k} {v}" for k, v in report["events"].items()))
        for f in report["first_failures"]:
            out.print(f"[red]input {f['index']}: {f['what']}[/]: {f['detail']}", markup=False)
    if not report["ok"]:
        raise SystemExit(1)


def _write_json(report: dict[str, Any], to: str) -> None:
    text = json.dumps(report, sort_keys=True)
    if to == "-":
        click.echo(text)
        return
    try:
        Path(to).write_text(text + "\n", encoding="utf-8")
    except OSError as e:
        raise click.ClickException(f"cannot write {to}: {e.strerror or e}") from None


def _check_faults(inputs: int, seed: int, jobs: int, json_to: str | None, console: Console) -> None:
    """Every faulty hypervisor fuzzed; the counts, and the report as JSON when asked."""
    from ..conformance.fuzz_faults import FUZZED, check_faults

    with Progress(
        TextColumn("fuzzing faulty hypervisors"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("faults", total=len(FUZZED))
        report = check_faults(inputs, seed, jobs, done=lambda: progress.advance(task))
    report.update(inputs=inputs, seed=seed)
    if json_to is not None:
        _write_json(report, json_to)
    if json_to != "-":
        Console().print(
            f"caught {report['caught']} of {report['total']} faulty hypervisors in at most {inputs} inputs each"
            + (f"; missed: {', '.join(report['missed'])}" if report["missed"] else "")
        )
