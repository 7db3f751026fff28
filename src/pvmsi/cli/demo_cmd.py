"""``pvmsi demo``: the reference guest against the reference hypervisor, narrated, every delivery checked."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from ..spec.platforms import DEFAULT_PLATFORM, PLATFORM_KEYS
from ..spec.platforms import platform as platform_def


@click.command()
@click.option(
    "--platform",
    type=click.Choice(list(PLATFORM_KEYS)),
    default=DEFAULT_PLATFORM,
    show_default=True,
    help='The host platform: its IOMMU, message format and architecture (spec "Message formats").',
)
def demo(platform: str) -> None:
    """Boot the reference guest with three devices, allocate, fire, attack, retarget, free and release through
    pvmsi, then run the same workload under trapped emulation; exit status 1 if any check fails."""
    from ..reference.demo import run_demo

    console = Console()
    with console.status("running") as status:
        report = run_demo(lambda step: status.update(f"running: {step}"), platform)
    console.print(f"platform: {platform} ({platform_def(platform).title}, {platform_def(platform).arch})")
    for path in report.paths:
        console.rule(f"[bold]{path.path}[/] (guest mode: {path.mode})")
        for line in path.log:
            console.print(f"  {line}", markup=False, highlight=False)
        for c in report.checks:
            if c.path == path.path:
                mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
                console.print(f"  {mark} {c.name}" + ("" if c.ok else f": {c.detail}"))
    pv, em = report.paths
    t = Table(title="Exits to the hypervisor, same workload", title_justify="left")
    t.add_column("exit reason", overflow="fold")
    t.add_column("pvmsi", justify="right", overflow="fold")
    t.add_column("emulated", justify="right", overflow="fold")
    for reason in sorted(set(pv.exits) | set(em.exits)):
        t.add_row(reason, str(pv.exits.get(reason, 0)), str(em.exits.get(reason, 0)))
    t.add_row("[bold]total[/]", f"[bold]{sum(pv.exits.values())}[/]", f"[bold]{sum(em.exits.values())}[/]")
    t.add_row("device writes by the guest", str(pv.device_writes), str(em.device_writes))
    t.add_row("interrupts delivered and checked", str(pv.delivered), str(em.delivered))
    t.add_row("IOMMU faults (blocked writes)", str(pv.faults), str(em.faults))
    console.print(t)
    console.print("The emulated run has no IMS: the hypervisor cannot trap a store it does not know.")
    failed = [c for c in report.checks if not c.ok]
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed[/]")
        raise SystemExit(1)
    console.print(f"[green]all {len(report.checks)} checks passed[/]")
