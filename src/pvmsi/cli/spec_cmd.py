"""``pvmsi spec``: show the specification."""

from __future__ import annotations

import json

import click
from rich.console import Console

from ..spec.dump import spec_dump
from .ui import Group, table


@click.group(cls=Group)
def spec() -> None:
    """The pvmsi specification."""


@spec.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole spec as JSON (for generating bindings).")
def dump(as_json: bool) -> None:
    """Print the spec: a summary, or with --json every format, constant, call and requirement."""
    data = spec_dump()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    v = data["spec"]["version"]
    console.print(f"[bold]pvmsi {v['major']}.{v['minor']}[/bold]")
    calls = table("call", "fn", "input", "output", title="Calls")
    for c in data["calls"]:
        entry_in = f" + {c['input_entry']}[]" if c["input_entry"] else ""
        entry_out = f" + {c['output_entry']}[]" if c["output_entry"] else ""
        calls.add_row(
            c["name"], f"{c['function_number']:#04x}", (c["input"] or "-") + entry_in, (c["output"] or "-") + entry_out
        )
    console.print(calls)
    formats = table("format", "size", "fields", title="Formats")
    for f in data["formats"]:
        formats.add_row(f["c_name"], str(f["size"]), str(len(f["fields"])))
    console.print(formats)
    console.print(f"{len(data['requirements'])} requirements; `pvmsi spec dump --json` for everything.")
