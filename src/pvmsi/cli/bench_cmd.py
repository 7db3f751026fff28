"""``pvmsi bench``: the measured figures (exits emulated vs pvmsi, throughput, codec, remapping table)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:,}"


def _median(group: dict[str, Any], key: str, unit: str) -> str:
    """The median repeat beside the best one (older saved runs have no median)."""
    return f"; median {group[key]:,.0f} {unit}" if key in group else ""


def _render(figures: dict[str, Any], console: Console) -> None:
    t = Table(title="Exits (guest traps to the hypervisor)", title_justify="left")
    cols = ("device", "operation", "vectors", "emulated", "pvmsi", "physical limit", "reduction", "device writes")
    for col in (*cols, "config emulated", "config pvmsi"):
        t.add_column(col, justify="left" if col in ("device", "operation") else "right", overflow="fold")
    for r in figures["exits"]:
        red = "" if r["reduction"] is None else f"{r['reduction']:,}x"
        t.add_row(
            r["device"],
            r["operation"],
            str(r["vectors"]),
            _fmt(r["emulated"]),
            _fmt(r["pvmsi"]),
            _fmt(r.get("physical_limit")),
            red,
            _fmt(r["pvmsi_device_writes"]),
            _fmt(r.get("emulated_config_exits")),
            _fmt(r.get("pvmsi_config_exits")),
        )
    console.print(t)
    console.print("n/a: IMS cannot be emulated (the hypervisor does not know where a device keeps its IMS slots)")
    console.print("config: configuration-space exits (MSI capability, MSI-X Message Control), trapped on both paths")
    b = figures["boot_exits"]
    console.print(f"boot (discovery + negotiation, once per guest): {b['pvmsi']} exits")
    tp, cd, rt = figures["throughput"], figures["codec"], figures["remap_table"]
    m = Table(title="Costs", title_justify="left")
    m.add_column("figure", overflow="fold")
    m.add_column("value", justify="right", overflow="fold")
    m.add_row(
        "alternating single MSG_ALLOC / MSG_FREE",
        f"{tp['single_alloc_free_calls_per_s']:,.0f} calls/s ({tp['single_call_us']:.1f} µs/call)"
        + _median(tp, "single_alloc_free_calls_per_s_median", "calls/s"),
    )
    m.add_row(
        "64-entry batches (alloc + free)",
        f"{tp['batch64_vectors_per_s']:,.0f} vectors/s" + _median(tp, "batch64_vectors_per_s_median", "vectors/s"),
    )
    if "single_call_bytecodes" in tp:
        m.add_row("Python bytecodes per single-vector call (traced)", f"{tp['single_call_bytecodes']:,.0f}")
    m.add_row("hot-path codec round (derived from construct)", f"{cd['hot_path_ns']:,.0f} ns")
    m.add_row("same round, hand-written struct", f"{cd['struct_baseline_ns']:,.0f} ns (ratio {cd['ratio']:.2f})")
    m.add_row(
        "remap table alloc at 1% / 95% occupancy",
        f"{rt['alloc_ns_1pct']:,.0f} / {rt['alloc_ns_95pct']:,.0f} ns (ratio {rt['ratio']:.2f})",
    )
    console.print(m)
    suite = figures.get("suite")
    if suite is not None:
        console.print(
            f"conformance suites (median of {suite['runs']} runs): hypervisor {suite['hypervisor_s']:.2f} s, "
            f"guest {suite['guest_s']:.2f} s, hypervisor over exec: {suite['hypervisor_exec_s']:.2f} s"
        )
    for name, t_ in figures["targets"].items():
        mark = "[green]met[/]" if t_["met"] else "[red]not met[/]"
        console.print(f"target {name}: {t_['value']:,.2f} vs {t_['target']:,} {mark}")
    mc = figures["machine"]
    console.print(
        f"[dim]{mc['implementation']} {mc['python']} on {mc['machine']} {mc['system']}, "
        f"{mc['cpus']} CPUs, load {mc['load_average']}"
        + (f", reference loop {mc['reference_loop_us']:.1f} µs" if mc.get("reference_loop_us") else "")
        + "[/]"
    )


#: The groups of figures `pvmsi bench --json` writes, and the JSON type of each.
GROUPS: dict[str, type] = {
    "exits": list,
    "boot_exits": dict,
    "throughput": dict,
    "codec": dict,
    "remap_table": dict,
    "targets": dict,
    "machine": dict,
}
NOT_FIGURES = "not the figures of `pvmsi bench --json`"


def _saved_figures(path: Path) -> dict[str, Any]:
    """The figures an earlier ``pvmsi bench --json`` saved in ``path``; a usage error names what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise click.UsageError(f"{path}: cannot read: {e}") from None
    if not text.strip():
        raise click.UsageError(f"{path}: the file is empty; {NOT_FIGURES}")
    try:
        figures = json.loads(text)
    except json.JSONDecodeError as e:
        raise click.UsageError(f"{path}: not JSON ({e}); {NOT_FIGURES}") from None
    if not isinstance(figures, dict):
        raise click.UsageError(f"{path}: a JSON {type(figures).__name__}, not an object; {NOT_FIGURES}")
    missing = [k for k in GROUPS if k not in figures]
    if missing:
        raise click.UsageError(f"{path}: {NOT_FIGURES}: no {', '.join(missing)}")
    wrong = [k for k, kind in GROUPS.items() if not isinstance(figures[k], kind)]
    if wrong:
        raise click.UsageError(f"{path}: {NOT_FIGURES}: {', '.join(wrong)} of the wrong type")
    return figures


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object with every figure.")
@click.option("--quick", is_flag=True, help="A fast, less precise run (N up to 64, few repeats); for tests.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Also write an SVG bar chart of exits.")
@click.option(
    "--from-json",
    "from_json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Do not measure: render (and plot) figures saved by an earlier --json run.",
)
def bench(as_json: bool, quick: bool, plot: Path | None, from_json: Path | None) -> None:
    """Measure pvmsi against trapped MSI/MSI-X emulation and the reference's costs on this machine."""
    from ..reference.bench import run, svg_plot
    from .suite_bench import suite_figures

    err = Console(stderr=True, quiet=as_json)
    if from_json is not None:
        figures = _saved_figures(from_json)
        try:  # render once where nobody sees it: a file that only looks right fails here, before any output
            _render(figures, Console(file=io.StringIO()))
            svg_plot(figures)
        except KeyError as e:
            raise click.UsageError(f"{from_json}: {NOT_FIGURES}: no figure {e}") from None
        except (IndexError, TypeError, ValueError, AttributeError) as e:
            raise click.UsageError(f"{from_json}: {NOT_FIGURES}: {e}") from None
    else:
        with err.status("measuring") as status:
            figures = run(quick=quick, progress=lambda step: status.update(f"measuring {step}"))
            status.update("measuring the conformance suites")
            figures["suite"] = suite_figures(runs=1 if quick else 5)
    if plot is not None:
        plot.write_text(svg_plot(figures), encoding="utf-8")
        err.print(f"wrote {plot}")
    if as_json:
        click.echo(json.dumps(figures))
    else:
        _render(figures, Console())
