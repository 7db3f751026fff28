"""The Performance page's figures, rendered at build time from the committed output of ``pvmsi bench --json``
(docs/assets/bench.json), so that the page never states a number the measured run did not produce."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .context import DocsError
from .markup import table

#: The measured run the page shows, within the site's docs folder:
#: ``pvmsi bench --json --plot docs/assets/bench-exits.svg > docs/assets/bench.json``.
BENCH_JSON = Path("assets") / "bench.json"
SECTIONS = ("exits", "saves", "throughput", "codec", "remap", "suite", "machine")
_DEVICES = {"msix": "MSI-X", "ims": "IMS", "msi": "MSI"}


def load(path: Path) -> dict[str, Any]:
    try:
        figures: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DocsError(f"cannot read the benchmark figures {path}: {exc}") from exc
    if figures.get("quick"):
        raise DocsError(f"{path} is a --quick run; the page shows a full `pvmsi bench --json` run")
    return figures


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _verdict(figures: dict[str, Any], key: str) -> str:
    return "met" if figures["targets"][key]["met"] else "**not met**"


def _target(figures: dict[str, Any], key: str, fmt: str) -> str:
    return f"{fmt} ({_verdict(figures, key)})"


def _exits(figures: dict[str, Any]) -> str:
    rows = []
    for r in figures["exits"]:
        emulated = "impossible" if r["emulated"] is None else _n(r["emulated"])
        reduction = "n/a" if r["reduction"] is None else f"{r['reduction']:,.1f}x"
        rows.append(
            [
                _DEVICES[r["device"]],
                r["operation"],
                _n(r["vectors"]),
                emulated,
                _n(r["pvmsi"]),
                _n(r["physical_limit"]),
                reduction,
                _n(r["pvmsi_device_writes"]),
                "-" if r["emulated_config_exits"] is None else _n(r["emulated_config_exits"]),
                _n(r["pvmsi_config_exits"]),
            ]
        )
    key = next(k for k in figures["targets"] if k.startswith("exit_reduction_at_"))
    t = figures["targets"][key]
    header = [
        "device",
        "operation",
        "N",
        "emulated exits",
        "pvmsi exits",
        "physical limit",
        "reduction",
        "pvmsi device writes",
        "emulated config-space exits",
        "pvmsi config-space exits",
    ]
    above = figures["targets"]["exits_above_physical_limit"]
    return (
        table(header, rows, ["l", "l", "r", "r", "r", "r", "r", "r", "r", "r"])
        + f"\n\nTarget: at N = {key.rsplit('_', 1)[1]}, at least {t['target']:,.0f}x fewer exits than emulation. "
        + f"Measured: {t['value']:,.1f}x at the least ({_verdict(figures, key)}). "
        + f"Target: pvmsi's exits equal the physical limit in every row; exits above it: {above['value']} "
        + f"({_verdict(figures, 'exits_above_physical_limit')})."
    )


def _with_config(total: int | None, config: int | None) -> str:
    if total is None or config is None:
        return "impossible: a guest driver's own IMS writes cannot be emulated"
    return f"{_n(total)} exit{'' if total == 1 else 's'} ({_n(config)} in configuration space)"


def _saves(figures: dict[str, Any]) -> str:
    """The overview's "what it saves" table: for each device and operation, the largest measured N, emulated vs
    pvmsi exits, each with its configuration-space share (trapped on both paths, HV-EMU-001)."""
    largest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in figures["exits"]:
        key = (r["device"], r["operation"])
        if key not in largest or r["vectors"] > largest[key]["vectors"]:
            largest[key] = r
    rows = []
    for (device, op), r in largest.items():
        n = r["vectors"]
        subject = f"one {n}-vector MSI block" if device == "msi" else f"{_n(n)} {_DEVICES[device]} vectors"
        label = f"Setting up {subject}" if op == "setup" else f"Moving {subject} to other vCPUs"
        rows.append(
            [
                label,
                _with_config(r["emulated"], r["emulated_config_exits"]),
                _with_config(r["pvmsi"], r["pvmsi_config_exits"]),
            ]
        )
    return table(["", "trapped MSI/MSI-X emulation", "pvmsi"], rows, ["l", "r", "r"])


def _throughput(figures: dict[str, Any]) -> str:
    tp = figures["throughput"]
    return table(
        ["figure", "best repeat", "median repeat", "target"],
        [
            [
                "alternating single-vector MSG_ALLOC / MSG_FREE",
                _target(
                    figures,
                    "single_alloc_free_calls_per_s",
                    f"**{_n(tp['single_alloc_free_calls_per_s'])} calls/s** ({tp['single_call_us']:.1f} µs per call)",
                ),
                f"{_n(tp['single_alloc_free_calls_per_s_median'])} calls/s",
                f"≥ {_n(figures['targets']['single_alloc_free_calls_per_s']['target'])} calls/s",
            ],
            [
                "64-entry batches (each vector allocated and freed)",
                f"{_n(tp['batch64_vectors_per_s'])} vectors/s",
                f"{_n(tp['batch64_vectors_per_s_median'])} vectors/s",
                "",
            ],
            [
                "single-vector call in reference loops (the call's time ÷ the reference loop's, the same run)",
                f"{tp['single_call_reference_loops']:.2f} (loop: {tp['reference_loop_us']:.1f} µs)",
                "",
                "",
            ],
            [
                "Python bytecodes per single-vector call (traced, does not depend on the load)",
                _n(tp["single_call_bytecodes"]),
                "",
                "",
            ],
        ],
        ["l", "r", "r", "r"],
    )


def _codec(figures: dict[str, Any]) -> str:
    cd = figures["codec"]
    return table(
        ["figure", "measured", "target"],
        [
            ["derived hot-path codec, one round", f"{_n(cd['hot_path_ns'])} ns", ""],
            ["hand-written `struct`, same round, no checks", f"{_n(cd['struct_baseline_ns'])} ns", ""],
            [
                "ratio",
                _target(figures, "codec_ratio", f"**{cd['ratio']:.2f}**"),
                f"≤ {figures['targets']['codec_ratio']['target']:g}",
            ],
        ],
        ["l", "r", "r"],
    )


def _remap(figures: dict[str, Any]) -> str:
    rt = figures["remap_table"]
    return table(
        ["occupancy", "cost per allocation"],
        [
            ["1%", f"{_n(rt['alloc_ns_1pct'])} ns"],
            ["95%", f"{_n(rt['alloc_ns_95pct'])} ns"],
            [
                "ratio",
                _target(figures, "remap_ratio", f"**{rt['ratio']:.2f}**")
                + f" (target ≤ {figures['targets']['remap_ratio']['target']:g})",
            ],
        ],
        ["l", "r"],
    )


def _suite(figures: dict[str, Any]) -> str:
    s = figures["suite"]
    return table(
        ["suite", "IUT", f"median of {s['runs']} runs", "target"],
        [
            ["hypervisor", "`--iut reference` (in process)", f"{s['hypervisor_s']:.2f} s", "≤ 2 s"],
            ["guest", "`--iut reference` (in process)", f"{s['guest_s']:.2f} s", "≤ 1 s"],
            [
                "hypervisor",
                "`exec:pvmsi serve --role hypervisor --stdio`",
                f"{s['hypervisor_exec_s']:.2f} s ({s['hypervisor_exec_s'] / s['hypervisor_s']:.1f}x in process)",
                "≤ 2x in process",
            ],
        ],
        ["l", "l", "r", "r"],
    )


def _machine(figures: dict[str, Any]) -> str:
    mc = figures["machine"]
    load = ", ".join(f"{x:.2f}" for x in mc.get("load_average") or [])
    loop = mc.get("reference_loop_us")
    return (
        f"Measured on {mc['date'][:10]} with {mc['implementation']} {mc['python']}, {mc['machine']} "
        f"{mc['system'].split()[0]}, {mc['cpus']} CPUs (load average {load or 'unknown'})"
        + (
            f"; the reference loop (`sum(range(1000))`, the same run) took {loop:.1f} µs, to compare this machine "
            "with yours."
            if loop
            else "."
        )
    )


def render_bench(section: str, path: Path) -> str:
    """One part of the measured figures: ``exits``, ``saves`` (the overview's table), ``throughput``, ``codec``,
    ``remap``, ``suite`` or ``machine``."""
    figures = load(path)
    renderers = {
        "exits": _exits,
        "saves": _saves,
        "throughput": _throughput,
        "codec": _codec,
        "remap": _remap,
        "suite": _suite,
        "machine": _machine,
    }
    return renderers[section](figures)
