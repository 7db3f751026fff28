"""``pvmsi bench``: the JSON shape and sane figures (no timing assertions: a benchmark is not a test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from paths import DOCS

from pvmsi.cli.main import main


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    result = CliRunner().invoke(main, ["bench", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)  # exactly one JSON object, nothing else
    return data


def test_json_shape(figures: dict[str, Any]) -> None:
    assert {"exits", "throughput", "codec", "remap_table", "machine", "targets"} <= set(figures)
    for row in figures["exits"]:
        assert {"device", "operation", "vectors", "emulated", "pvmsi", "physical_limit", "pvmsi_device_writes"} <= set(
            row
        )
        assert row["pvmsi"] == row["physical_limit"]
        assert row["device"] in ("msix", "ims", "msi")
        assert row["operation"] in ("setup", "retarget")
        assert isinstance(row["pvmsi"], int)
        assert isinstance(row["pvmsi_device_writes"], int)
        # configuration space traps on both paths (HV-EMU-001): counted apart, and part of the totals
        assert isinstance(row["pvmsi_config_exits"], int)
        assert 0 <= row["pvmsi_config_exits"] <= row["pvmsi"]
        if row["emulated"] is None:
            assert row["emulated_config_exits"] is None  # IMS: the emulated path is impossible
        else:
            assert isinstance(row["emulated_config_exits"], int)
            assert 0 <= row["emulated_config_exits"] <= row["emulated"]
    assert set(figures["throughput"]) >= {"single_alloc_free_calls_per_s", "batch64_vectors_per_s"}
    assert set(figures["codec"]) >= {"hot_path_ns", "struct_baseline_ns", "ratio"}
    assert set(figures["remap_table"]) >= {"alloc_ns_1pct", "alloc_ns_95pct", "ratio"}
    assert set(figures["suite"]) == {"hypervisor_s", "guest_s", "hypervisor_exec_s", "runs"}
    for group in ("throughput", "codec", "remap_table"):
        assert all(isinstance(v, float) and v > 0 for v in figures[group].values())
    assert all(figures["suite"][k] > 0 for k in ("hypervisor_s", "guest_s", "hypervisor_exec_s"))


def test_exit_counts_make_sense(figures: dict[str, Any]) -> None:
    from pvmsi.reference.bench_exits import DEVICES, config_limit

    rows = figures["exits"]
    for row in rows:
        if row["device"] == "ims":
            assert row["emulated"] is None  # IMS cannot be emulated
        elif row["operation"] == "retarget" or (row["vectors"] > 1 and row["device"] == "msix"):
            assert row["emulated"] > row["pvmsi"] >= 1
        if row["operation"] == "retarget":
            assert row["pvmsi_device_writes"] == 0  # remapped in place: the device is not rewritten
            assert row["pvmsi_config_exits"] == 0  # nor is the MSI capability (HV-EMU-003 only on a new pair)
        else:
            # the Message Control accesses (disable before the claim, then enable) and MSI's unmask still trap
            profile, kind = DEVICES[row["device"]]
            assert row["pvmsi_config_exits"] == config_limit(profile, kind) > 0
    msi = [r for r in rows if r["device"] == "msi" and r["operation"] == "setup"]
    assert msi
    assert all(r["pvmsi"] >= r["emulated"] for r in msi)  # setting up one MSI block saves no exit
    big = [r for r in rows if r["device"] == "msix" and r["vectors"] == 64 and r["operation"] == "setup"]
    assert big
    assert big[0]["emulated"] >= 64 * 4 > big[0]["pvmsi"]


def test_plot_and_render(figures: dict[str, Any], tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(figures))
    svg = tmp_path / "exits.svg"
    result = CliRunner().invoke(main, ["bench", "--from-json", str(saved), "--plot", str(svg)])
    assert result.exit_code == 0, result.output
    assert "Exits" in result.output
    assert "IMS cannot be emulated" in result.output
    text = svg.read_text()
    assert text.startswith("<svg")
    assert text.rstrip().endswith("</svg>")
    assert "<rect" in text


def test_the_published_figures_are_one_full_run(figures: dict[str, Any]) -> None:
    """docs/assets/bench.json (what the Performance page renders) is a full run with every key a run has now,
    and the chart beside it is drawn from it: neither may drift from the other or from the bench's output."""
    from pvmsi.docsgen.bench import BENCH_JSON, load
    from pvmsi.reference.bench import svg_plot

    published = load(DOCS / BENCH_JSON)
    assert not published["quick"]
    for group in ("throughput", "codec", "remap_table", "machine"):
        assert set(published[group]) >= set(figures[group]), group
    assert {r["vectors"] for r in published["exits"]} == {1, 32, 64, 2048}
    assert "exit_reduction_at_2048" in published["targets"]
    assert (DOCS / BENCH_JSON.parent / "bench-exits.svg").read_text() == svg_plot(published)


def test_the_page_renders_every_section() -> None:
    from pvmsi.docsgen.bench import BENCH_JSON, SECTIONS, render_bench

    exits = render_bench("exits", DOCS / BENCH_JSON)
    assert "| IMS | setup | 2,048 | impossible |" in exits
    assert "Target: at N = 2048" in exits
    for section in SECTIONS:
        assert render_bench(section, DOCS / BENCH_JSON).strip()


def test_remap_bench_module_reports_both_occupancies(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m pvmsi.reference.platform.remap_bench --json``: single entries and 32-entry blocks."""
    from pvmsi.reference.platform.remap_bench import main as remap_main

    remap_main(["--repeat", "2", "--batch", "16", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"alloc_ns_1pct", "alloc_ns_95pct", "ratio", "alloc32_ns_1pct", "alloc32_ns_95pct", "ratio32"}
    assert all(v > 0 for v in out.values())
    assert out["ratio"] == out["alloc_ns_95pct"] / out["alloc_ns_1pct"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "the file is empty"),
        ("{not json", "not JSON"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"results": []}', "no exits, boot_exits"),
        (
            '{"exits": 3, "boot_exits": {}, "throughput": {}, "codec": {}, "remap_table": {}, "targets": {}, '
            '"machine": {}}',
            "exits of the wrong type",
        ),
        (
            '{"exits": [{"device": "msix"}], "boot_exits": {}, "throughput": {}, "codec": {}, "remap_table": {}, '
            '"targets": {}, "machine": {}}',
            "no figure",
        ),
    ],
    ids=["empty", "not-json", "list", "foreign", "wrong-type", "missing-figure"],
)
def test_from_json_with_a_file_that_is_not_figures(tmp_path: Path, text: str, why: str) -> None:
    """An empty or foreign file is a usage error naming the file, with nothing rendered, never a traceback."""
    saved = tmp_path / "figures.json"
    saved.write_text(text)
    result = CliRunner().invoke(main, ["bench", "--from-json", str(saved)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert str(saved) in result.output
    assert why in result.output
    assert "not the figures of `pvmsi bench --json`" in result.output
    assert "Exits" not in result.output
