"""The reports of a conformance run: the JSON report validates against the published schema, JUnit XML is
consistent, the HTML page is self-contained and shows every failure with expected vs actual and the transcript,
and every file is written atomically."""

from __future__ import annotations

import errno
import html
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ctoolchain import need

from pvmsi.cli.main import main
from pvmsi.conformance.reports import report_schema, to_html, to_json, to_junit, write_atomic
from pvmsi.conformance.results import Report, Summary, Verdict
from pvmsi.conformance.runner import run
from pvmsi.spec.requirements import SECTIONS

jsonschema: Any = importlib.import_module("jsonschema")  # no type stubs
PVMSI = str(Path(sys.executable).with_name("pvmsi"))
ICS_WITHOUT_IMS = '[implementation]\nname = "x"\nrole = "hypervisor"\n[options]\nims = false\n'


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A run with passes, failures and unsupported tests across several sections."""
    ics = tmp_path_factory.mktemp("ics") / "ics.toml"
    ics.write_text(ICS_WITHOUT_IMS)
    report = run(
        "hypervisor",
        "faulty:double-fetch",
        ics=str(ics),
        requirements=["HV-MEM-005", "HV-MEM-001", "HV-ALLOC-002", "HV-DISC-001", "HV-FREE-001"],
    )
    verdicts = {r.verdict for r in report.results}
    assert {Verdict.PASS, Verdict.FAIL, Verdict.UNSUPPORTED} <= verdicts
    return report


def every_verdict(base: Report) -> Report:
    """``base`` plus one synthetic error and one timeout (a real run rarely has both)."""
    extra = [
        base.results[0].model_copy(update={"test": "synthetic::error", "verdict": Verdict.ERROR, "message": "boom"}),
        base.results[0].model_copy(update={"test": "synthetic::timeout", "verdict": Verdict.TIMEOUT, "message": "t"}),
    ]
    summary = Summary()
    for r in [*base.results, *extra]:
        summary.add(r.verdict)
    return base.model_copy(update={"results": [*base.results, *extra], "summary": summary})


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    proc = subprocess.run([PVMSI, "conformance", "schema"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    published: dict[str, Any] = json.loads(proc.stdout)
    assert published == report_schema()
    return published


# -- JSON --------------------------------------------------------------------------------------------------------


def test_json_validates_against_the_published_schema(mixed: Report, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    for report in (mixed, every_verdict(mixed)):
        doc = json.loads(to_json(report))
        jsonschema.Draft202012Validator(schema).validate(doc)


def test_json_has_the_promised_shape_and_counts(mixed: Report) -> None:
    doc = json.loads(to_json(every_verdict(mixed)))
    assert set(doc["summary"]) == {"pass", "fail", "unsupported", "error", "timeout"}
    counts = Counter(r["verdict"] for r in doc["results"])
    assert doc["summary"] == {v.value: counts.get(v.value, 0) for v in Verdict}
    for r in doc["results"]:
        assert {"test", "role", "requirements", "verdict", "duration_s", "message"} <= set(r)
        assert r["role"] == "hypervisor"
        assert r["requirements"]
    assert Report.model_validate(doc) == every_verdict(mixed)


def test_schema_rejects_a_broken_report(mixed: Report, schema: dict[str, Any]) -> None:
    doc = json.loads(to_json(mixed))
    doc["results"][0]["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    doc = json.loads(to_json(mixed))
    del doc["summary"]["pass"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


# -- JUnit -------------------------------------------------------------------------------------------------------


def test_junit_counts_are_consistent(mixed: Report) -> None:
    report = every_verdict(mixed)
    root = ET.fromstring(to_junit(report))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert suites
    totals = Counter[str]()
    for suite in suites:
        cases = suite.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(c.find("failure") is not None for c in cases),
            "errors": sum(c.find("error") is not None for c in cases),
            "skipped": sum(c.find("skipped") is not None for c in cases),
        }
        for key, n in counts.items():
            assert int(suite.get(key, "-1")) == n, (suite.get("name"), key)
            totals[key] += n
    for key, n in totals.items():
        if key == "skipped":  # neither schema has skipped on testsuites: the suites carry it
            assert root.get(key) is None
            continue
        assert int(root.get(key, "-1")) == n, key
    by_verdict = Counter(r.verdict for r in report.results)
    assert totals["tests"] == len(report.results)
    assert totals["failures"] == by_verdict[Verdict.FAIL]
    assert totals["errors"] == by_verdict[Verdict.ERROR] + by_verdict[Verdict.TIMEOUT]
    assert totals["skipped"] == by_verdict[Verdict.UNSUPPORTED]


def test_junit_names_requirements_and_keeps_the_transcript(mixed: Report) -> None:
    root = ET.fromstring(to_junit(mixed))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    requirements = {
        p.get("name", "").removeprefix("requirements "): p.get("value", "").split()
        for p in root.iter("property")
        if p.get("name", "").startswith("requirements ")
    }
    for r in mixed.results:
        case = cases[r.test]
        assert requirements[r.test] == r.requirements
        out = case.find("system-out")
        if r.verdict is Verdict.FAIL:
            failure = case.find("failure")
            assert failure is not None
            assert "expected:" in (failure.text or "")
            assert out is not None
            assert out.text
        elif r.verdict is Verdict.PASS:
            assert out is None, "a pass carries no transcript (the JSON report has it)"


def junit_schemas() -> dict[str, Any]:
    xmlschema = importlib.import_module("xmlschema")  # no type stubs
    return {p.name: xmlschema.XMLSchema(str(p)) for p in sorted((Path(__file__).parent / "schemas").glob("*.xsd"))}


def test_junit_is_valid_against_jenkins_and_pytest_schemas(mixed: Report) -> None:
    """Every verdict, a partial run and tests not run: valid against both schemas kept in tests/schemas."""
    schemas = junit_schemas()
    assert set(schemas) == {"jenkins-junit.xsd", "pytest-junit-10.xsd"}
    base = every_verdict(mixed)
    not_run = base.results[0].model_copy(
        update={"test": "synthetic::not_run", "verdict": Verdict.ERROR, "message": "not run: the IUT is dead"}
    )
    slow = base.results[0].model_copy(update={"test": "synthetic::slow", "duration_s": 1234.567891})
    for report in (
        base,
        base.model_copy(update={"complete": False, "results": [*base.results, not_run, slow]}),
        base.model_copy(update={"results": []}),
    ):
        text = to_junit(report)
        for name, schema in schemas.items():
            errors = [str(e.reason) for e in schema.iter_errors(text)]
            assert not errors, (name, errors[:3])
        root = ET.fromstring(text)
        assert all(re.fullmatch(r"\d+\.\d{3}", t.get("time", "")) for t in root.iter() if t.get("time") is not None)


def test_junit_of_passing_tests_is_lean(mixed: Report) -> None:
    """75 passing tests with long transcripts: a few hundred bytes each, not the transcripts."""
    passed = next(r for r in mixed.results if r.verdict is Verdict.PASS)
    long = passed.model_copy(update={"transcript": ["vm 1 vcpu 0 MSG_ALLOC in=" + "00" * 2000] * 40})
    results = [long.model_copy(update={"test": f"{long.test}_{i}"}) for i in range(75)]
    summary = Summary()
    for r in results:
        summary.add(r.verdict)
    text = to_junit(mixed.model_copy(update={"results": results, "summary": summary}))
    assert len(text.encode()) < 40_000, len(text.encode())
    assert "system-out" not in text


# -- HTML --------------------------------------------------------------------------------------------------------


def test_html_has_a_section_per_spec_section(mixed: Report) -> None:
    page = to_html(every_verdict(mixed))
    for section in {r.section for r in mixed.results}:
        assert f"<h3 id='{section}'>{SECTIONS[section][0]}</h3>" in page
    for r in mixed.results:
        assert r.test in page


def test_html_shows_failures_with_expected_actual_and_transcript(mixed: Report) -> None:
    page = to_html(mixed)
    failed = [r for r in mixed.results if r.verdict is Verdict.FAIL]
    assert failed
    for r in failed:
        assert "<details open>" in page
        assert "expected:" in page
        assert "actual:" in page
        assert "Transcript" in page
        assert html.escape(r.transcript[-1]) in page


def test_html_shows_failures_first_and_its_badges_link_to_them(mixed: Report) -> None:
    report = every_verdict(mixed)
    page = to_html(report)
    ids = set(re.findall(r"id='([^']+)'", page))
    for verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT, Verdict.UNSUPPORTED):
        assert f"<a class='{verdict.value}' href='#verdict-{verdict.value}'>" in page
        assert f"verdict-{verdict.value}" in ids
    assert "<a class='pass' href='#sections'>" in page
    assert set(re.findall(r"href='#([^']+)'", page)) <= ids, "every link has its target"
    sections = page.index("<h2 id='sections'>")
    for r in report.results:
        if r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT):
            assert page.index(html.escape(r.test)) < sections, r.test
            assert "href='#t-" in page[sections:]
    order = [page.index(f"id='verdict-{v}'") for v in ("fail", "error", "timeout", "unsupported")]
    assert order == sorted(order)
    assert page.index("<details open>") < sections


def test_html_shows_the_tests_not_run_once(mixed: Report) -> None:
    first = mixed.results[0]
    dead = [
        first.model_copy(update={"test": f"t::n{i}", "verdict": Verdict.ERROR, "message": "not run: the IUT is dead"})
        for i in range(30)
    ]
    page = to_html(mixed.model_copy(update={"results": dead}))
    assert page.count("the IUT is dead") == 1
    assert "30 tests not run" in page


def test_html_is_self_contained(mixed: Report) -> None:
    page = to_html(every_verdict(mixed))
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.I)
    assert "@import" not in page
    assert "url(" not in page
    assert not re.search(r"https?://", page)


def test_html_escapes_what_the_iut_says(mixed: Report) -> None:
    evil = mixed.results[0].model_copy(update={"verdict": Verdict.FAIL, "message": "<script>x</script>"})
    page = to_html(mixed.model_copy(update={"results": [evil]}))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_html_marks_a_partial_run(mixed: Report) -> None:
    assert "interrupted" not in to_html(mixed)
    assert "interrupted: partial results" in to_html(mixed.model_copy(update={"complete": False}))


# -- writing -----------------------------------------------------------------------------------------------------


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_write_atomic_keeps_the_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    write_atomic(target, "old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    assert os.stat(target).st_size == 3


def test_cli_writes_every_report(tmp_path: Path, schema: dict[str, Any]) -> None:
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "xml", "html")}
    proc = subprocess.run(
        [
            PVMSI,
            "conformance",
            "run",
            "--iut",
            "faulty:double-fetch",
            "--requirement",
            "HV-MEM-005",
            "--json",
            str(paths["json"]),
            "--junit",
            str(paths["xml"]),
            "--html",
            str(paths["html"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    jsonschema.validate(json.loads(paths["json"].read_text()), schema)
    assert int(ET.parse(paths["xml"]).getroot().get("failures", "0")) >= 1
    assert "HV-MEM-005" in paths["html"].read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json", "r.xml"]


# -- the HTML page in a real browser -----------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1024,768",
]

# Appended to a copy of the page only (the report itself has no script): the browser records what it laid out.
LAYOUT_PROBE = """<script>
const b = document.body;
b.dataset.overflow = String(document.documentElement.scrollWidth > window.innerWidth);
b.dataset.rows = String(document.querySelectorAll("table tr td:first-child").length);
b.dataset.open = String([...document.querySelectorAll("details[open] pre")].filter(p => p.offsetHeight > 0).length);
b.dataset.h2 = String(document.querySelectorAll("h2").length);
</script>"""


class _BodyData(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.data = {k.removeprefix("data-"): v or "" for k, v in attrs if k.startswith("data-")}


def test_html_renders_in_chromium(mixed: Report, tmp_path: Path) -> None:
    """Headless Chromium lays the page out: one row per result, every failure's details open and visible, a
    heading per section, and nothing wider than a 1024-pixel window (long transcript lines wrap)."""
    browser = need("chromium")
    report = every_verdict(mixed)
    long_line = report.results[0].model_copy(
        update={"test": "synthetic::long", "verdict": Verdict.FAIL, "message": "expected: " + "x" * 3000}
    )
    report = report.model_copy(update={"results": [*report.results, long_line]})
    page = to_html(report)
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", LAYOUT_PROBE + "</body>"))
    proc = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = _BodyData()
    body.feed(proc.stdout)
    failing = [r for r in report.results if r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT)]
    unsupported = [r for r in report.results if r.verdict is Verdict.UNSUPPORTED]
    assert body.data == {
        "overflow": "false",
        "rows": str(len(report.results) + len(failing) + len(unsupported)),  # failures first, then by section
        "open": str(len(failing) + sum(bool(r.transcript) for r in failing)),
        "h2": "2",  # the failures, the results by section
    }


# -- report paths ----------------------------------------------------------------------------------------------------


def test_a_report_path_that_cannot_be_written_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    """Under a regular file, in /proc, or a folder: a usage error naming the option and the path, before any test
    runs (no result is lost), never a traceback."""
    (tmp_path / "file").write_text("")
    for option, path, why in (
        ("--json", tmp_path / "file" / "r.json", "is a file, not a folder"),
        ("--junit", Path("/proc/pvmsi-report.xml"), "cannot write in /proc"),
        ("--html", tmp_path / "file" / "deeper" / "r.html", "is a file, not a folder"),
    ):
        result = CliRunner().invoke(main, ["conformance", "run", "--requirement", "HV-MEM-001", option, str(path)])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert f"{option} {path}" in result.output
        assert why in result.output
        assert "passed" not in result.output, "the run did not start"


def test_a_report_that_fails_after_the_run_leaves_the_results_in_a_named_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up after the run: exit code 2, the message says which report failed and where the results
    are; the reports that could be written are."""
    from pvmsi.cli import run_cmd

    def full_disk(path: str | Path, text: str) -> None:
        if str(path).endswith(".xml"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_atomic(path, text)

    monkeypatch.setattr(run_cmd, "write_atomic", full_disk)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for more, saved in (([], None), (["--json", str(tmp_path / "r.json")], tmp_path / "r.json")):
        args = ["conformance", "run", "--requirement", "HV-MEM-001", "--junit", str(tmp_path / "r.xml"), *more]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        match = re.search(
            r"cannot write --junit (\S+): No space left on device; the results are in (\S+)", result.output
        )
        assert match, result.output
        assert match.group(1) == str(tmp_path / "r.xml")
        where = Path(match.group(2))
        assert saved is None or where == saved
        report = Report.model_validate_json(where.read_text())
        assert report.summary.pass_ == len(report.results) > 0
        assert not (tmp_path / "r.partial.jsonl").exists()


def test_a_session_transcribes_every_request_of_a_test() -> None:
    """Requests a test makes through ``session.iut`` (a second VM's COLLECT, COUNTERS, LIFECYCLE, a device write)
    are in the transcript with their answers, besides the helpers' own lines (conformance guide, "Reports")."""
    from pvmsi.conformance.toolkit import MLX5, Session
    from pvmsi.reference.backend import ReferenceHypervisor
    from pvmsi.spec.harness_constants import DeviceSpace, LifecycleEvent

    s = Session(ReferenceHypervisor())
    first = s.vm
    second = s.new_vm()
    s.iut.device_write(second, MLX5, DeviceSpace.MSIX_TABLE, 12, 4, 0)
    s.iut.collect(second)
    s.iut.counters(second)
    s.iut.lifecycle(second, LifecycleEvent.VM_RESET, None)
    s.iut.destroy_vm(second)
    s.vms.remove(second)
    s.version(vm=first)
    lines = s.transcript
    assert lines[0].startswith(f"VM_CREATE -> vm {first}")
    assert lines[1].startswith(f"VM_CREATE -> vm {second}")
    assert lines[2].startswith(f"vm {second} DEVICE_WRITE")
    assert lines[2].endswith("-> exit=True")
    assert lines[3] == f"vm {second} COLLECT -> nothing"
    assert lines[4].startswith(f"vm {second} COUNTERS -> exits ")
    assert "blocked 0" in lines[4]
    assert lines[5:7] == [f"vm {second} LIFECYCLE VM_RESET -> OK", f"VM_DESTROY vm {second} -> OK"]
    assert lines[7].startswith(f"vm {first} vcpu 0 VERSION")
    assert len(lines) == 8
    s.close()
