"""Reports of a conformance run: JSON (with its published schema), JUnit XML and one self-contained HTML page.

Every file is written atomically (a temporary file renamed into place), so a reader never sees half a report.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..spec.requirements import SECTIONS, by_id
from .results import NOT_RUN, Report, TestResult, Verdict

SCHEMA_ID = "https://pvmsi.dev/schemas/conformance-report-1.json"


class ReportPathError(ValueError):
    """A report cannot be written where it was asked for: the message names the path and says why."""


def check_writable(path: str | Path) -> None:
    """Raise :class:`ReportPathError` unless a report can be written at ``path``: its folder exists or can be made,
    and a file can be made in it (checked before a run, so that no run's results are lost to a bad path)."""
    p = Path(path)
    if p.is_dir():
        raise ReportPathError(f"{p}: is a folder; give the path of a file")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        where = next((a for a in [p.parent, *p.parent.parents] if a.exists()), p.parent)
        why = "is a file, not a folder" if where.is_file() else (e.strerror or str(e))
        raise ReportPathError(f"{p}: cannot make its folder: {where if where.is_file() else p.parent} {why}") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise ReportPathError(f"{p}: cannot write in {p.parent}: {e.strerror or e}") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def write_atomic(path: str | Path, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_schema() -> dict[str, Any]:
    """The JSON schema of the JSON report, generated from the pydantic model (as serialised: every field the
    report always carries, such as each summary count, is required)."""
    schema = Report.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    return schema


def to_json(report: Report) -> str:
    return json.dumps(report.model_dump(mode="json", by_alias=True), indent=2) + "\n"


def _seconds(t: float) -> str:
    """A time as JUnit readers take it: seconds with at most three decimals (the schemas' ``SUREFIRE_TIME``)."""
    return f"{t:.3f}"


def _first_line(message: str, default: str) -> str:
    return message.splitlines()[0] if message else default


def to_junit(report: Report) -> str:
    """JUnit XML valid against Jenkins' ``junit.xsd`` and pytest's ``junit-10.xsd`` (tests/schemas/): one
    ``testsuite`` per spec section, whose ``properties`` name the requirement ids of each of its tests; ``fail`` is
    a ``failure``, ``error`` and ``timeout`` are ``error``s, ``unsupported`` is ``skipped``. Only a test that did not
    pass carries its transcript (``system-out``): the JSON report has every one."""
    root = ET.Element("testsuites", name=f"pvmsi {report.spec_version} {report.role} conformance")
    by_section: dict[str, list[TestResult]] = defaultdict(list)
    for r in report.results:
        by_section[r.section].append(r)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for section, results in by_section.items():
        counts = {
            "tests": len(results),
            "failures": sum(r.verdict is Verdict.FAIL for r in results),
            "errors": sum(r.verdict in (Verdict.ERROR, Verdict.TIMEOUT) for r in results),
            "skipped": sum(r.verdict is Verdict.UNSUPPORTED for r in results),
        }
        for k in totals:
            totals[k] += counts[k]
        attrs = {k: str(v) for k, v in counts.items()}
        attrs.update(name=section or "unsectioned", time=_seconds(sum(r.duration_s for r in results)))
        if report.started:
            attrs["timestamp"] = report.started
        suite = ET.SubElement(root, "testsuite", attrs)
        props = ET.SubElement(suite, "properties")  # before the testcases, and never empty (junit.xsd)
        for name, value in (("role", report.role), ("iut", report.iut), ("complete", str(report.complete).lower())):
            ET.SubElement(props, "property", name=name, value=value)
        for r in results:
            ET.SubElement(props, "property", name=f"requirements {r.test}", value=" ".join(r.requirements))
        for r in results:
            case = ET.SubElement(
                suite, "testcase", name=r.test, classname=f"pvmsi.{report.role}.{section}", time=_seconds(r.duration_s)
            )
            if r.verdict is Verdict.UNSUPPORTED:
                # junit.xsd's skipped has text only; junit-10.xsd allows that too
                ET.SubElement(case, "skipped").text = f"unsupported: {r.message}"
                continue
            if r.verdict is Verdict.FAIL:
                failure = ET.SubElement(
                    case, "failure", message=_first_line(r.message, "failed"), type="RequirementFailure"
                )
                failure.text = r.message
            elif r.verdict in (Verdict.ERROR, Verdict.TIMEOUT):
                error = ET.SubElement(
                    case, "error", message=_first_line(r.message, r.verdict.value), type=r.verdict.value
                )
                error.text = r.message
            if r.verdict is not Verdict.PASS and r.transcript:
                ET.SubElement(case, "system-out").text = "\n".join(r.transcript)
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", _seconds(report.duration_s))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1f24}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{margin-top:1.2em}
.summary a,.summary span{display:inline-block;margin-right:1.2em;padding:.2em .6em;border-radius:.3em;color:inherit}
.pass{background:#dcf5e3}.fail{background:#fbe0e0}.unsupported{background:#eee}.error,.timeout{background:#fde8c8}
table{border-collapse:collapse;width:100%;table-layout:fixed}td,th{border-bottom:1px solid #eee;padding:.3em .5em;
text-align:left;vertical-align:top;overflow-wrap:anywhere}
th:nth-child(1){width:58%}th:nth-child(2){width:24%}th:nth-child(3){width:10%}th:nth-child(4){width:8%}
details pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:.6em;font-size:13px;
max-height:30em;overflow:auto}summary{cursor:pointer;overflow-wrap:anywhere}code{font-size:13px}
"""
_ORDER = (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT, Verdict.UNSUPPORTED)
_FAILED = (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT)
_HEAD = "<table><tr><th>test</th><th>requirements</th><th>verdict</th><th>time</th></tr>"


def _anchor(test: str) -> str:
    """The id of a test's row among the failures (an HTML id: no spaces)."""
    return "t-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in test)


def _row(r: TestResult, detail: str, anchor: str = "") -> str:
    e = html.escape
    reqs = ", ".join(f"<span title='{e(by_id(x).text)}'>{e(x)}</span>" for x in r.requirements)
    ident = f" id='{anchor}'" if anchor else ""
    return (
        f"<tr{ident}><td><code>{e(r.test)}</code>{detail}</td><td>{reqs}</td>"
        f"<td class='{r.verdict.value}'>{r.verdict.value}</td><td>{r.duration_s:.3f}</td></tr>"
    )


def _details(r: TestResult) -> str:
    e = html.escape
    open_ = " open" if r.verdict in _FAILED else ""
    return (
        f"<details{open_}><summary>{e(_first_line(r.message, r.verdict.value))}</summary><pre>{e(r.message)}</pre>"
        + (f"<p>Transcript</p><pre>{e(chr(10).join(r.transcript))}</pre>" if r.transcript else "")
        + "</details>"
    )


def _not_run(message: str, results: list[TestResult]) -> str:
    """One row for every test the same reason left not run."""
    e = html.escape
    names = "".join(f"<li><code>{e(r.test)}</code></li>" for r in results)
    return (
        f"<tr><td><details open><summary>{len(results)} tests {e(message)}</summary><ul>{names}</ul></details></td>"
        f"<td></td><td class='error'>error</td><td></td></tr>"
    )


def to_html(report: Report) -> str:
    """One self-contained page: the summary, whose badges link to the tests of each verdict; the failures first
    (then errors, timeouts and unsupported tests), each opened with its message and transcript; then every test by
    spec section, a failure linking back to its details."""
    e = html.escape
    s = report.summary
    counts = {
        Verdict.PASS: s.pass_,
        Verdict.FAIL: s.fail,
        Verdict.UNSUPPORTED: s.unsupported,
        Verdict.ERROR: s.error,
        Verdict.TIMEOUT: s.timeout,
    }
    badges = "".join(
        f"<a class='{v.value}' href='#{'sections' if v is Verdict.PASS else 'verdict-' + v.value}'>{v.value}: {n}</a>"
        if n
        else f"<span class='{v.value}'>{v.value}: 0</span>"
        for v, n in counts.items()
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>pvmsi {e(report.spec_version)} {e(report.role)} conformance</title><style>{_CSS}</style></head><body>",
        f"<h1>pvmsi {e(report.spec_version)} conformance: {e(report.role)} <code>{e(report.iut)}</code></h1>",
        f"<p>Started {e(report.started)}, {report.duration_s:.2f} s"
        + ("" if report.complete else " &mdash; <strong>interrupted: partial results</strong>")
        + "</p>",
        f"<p class='summary'>{badges}</p>",
    ]
    if any(counts[v] for v in _ORDER):
        parts.append("<h2 id='attention'>Failures first</h2>")
    for verdict in _ORDER:
        chosen = [r for r in report.results if r.verdict is verdict]
        if not chosen:
            continue
        parts.append(f"<h3 id='verdict-{verdict.value}'>{verdict.value} ({len(chosen)})</h3>{_HEAD}")
        not_run: dict[str, list[TestResult]] = defaultdict(list)
        for r in chosen:
            if r.message.startswith(NOT_RUN):
                not_run[r.message].append(r)
            else:
                parts.append(_row(r, _details(r), _anchor(r.test)))
        parts += [_not_run(message, group) for message, group in not_run.items()]
        parts.append("</table>")
    parts.append("<h2 id='sections'>Results by section</h2>")
    by_section: dict[str, list[TestResult]] = defaultdict(list)
    for r in report.results:
        by_section[r.section].append(r)
    for key in [k for k in SECTIONS if k in by_section] + [k for k in by_section if k not in SECTIONS]:
        title = SECTIONS[key][0] if key in SECTIONS else key
        parts.append(f"<h3 id='{e(key)}'>{e(title)}</h3>{_HEAD}")
        for r in by_section[key]:
            link = "" if r.verdict is Verdict.PASS else f" <a href='#{_anchor(r.test)}'>details</a>"
            if r.message.startswith(NOT_RUN):
                link = f" <a href='#verdict-{r.verdict.value}'>not run</a>"
            parts.append(_row(r, link))
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
