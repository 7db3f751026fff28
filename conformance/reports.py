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
from .results import Report, Verdict

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


def to_junit(report: Report) -> str:
    """JUnit XML: one testsuite per spec section; unsupported tests are skipped, timeouts are errors."""
    root = ET.Element("testsuites", name=f"pvmsi {report.spec_version} {report.role} conformance")
    by_section: dict[str, list[Any]] = defaultdict(list)
    for r in report.results:
        by_section[r.section].append(r)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for section, results in by_section.items():
        counts = {
            "tests": len(results),
            "failures": sum(r.verdict is Verdict.FAIL for r in results),
            "errors": sum(r.verdict in (Verdict.ERROR, Verdict.TIMEOUT) for r in results),
            "skipped": sum(r.verdict is Verdict.UNSUPPORTED for r in results),
        }
        for k, v in counts.items():
            totals[k] += v
        attrs = {k: str(v) for k, v in counts.items()}
        attrs.update(name=section or "unsectioned", time=f"{sum(r.duration_s for r in results):.6f}")
        suite = ET.SubElement(root, "testsuite", attrs)
        for r in results:
            case = ET.SubElement(
                suite, "testcase", classname=f"pvmsi.{report.role}.{section}", name=r.test, time=f"{r.duration_s:.6f}"
            )
            props = ET.SubElement(case, "properties")
            for rid in r.requirements:
                ET.SubElement(props, "property", name="requirement", value=rid)
            if r.verdict is Verdict.FAIL:
                ET.SubElement(
                    case,
                    "failure",
                    message=r.message.splitlines()[0] if r.message else "failed",
                    type="RequirementFailure",
                ).text = r.message
            elif r.verdict in (Verdict.ERROR, Verdict.TIMEOUT):
                ET.SubElement(
                    case,
                    "error",
                    message=r.message.splitlines()[0] if r.message else r.verdict.value,
                    type=r.verdict.value,
                ).text = r.message
            elif r.verdict is Verdict.UNSUPPORTED:
                ET.SubElement(case, "skipped", message=f"unsupported: {r.message}")
            if r.transcript:
                ET.SubElement(case, "system-out").text = "\n".join(r.transcript)
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1b1f24}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.summary span{display:inline-block;margin-right:1.2em;padding:.2em .6em;border-radius:.3em}
.pass{background:#dcf5e3}.fail{background:#fbe0e0}.unsupported{background:#eee}.error,.timeout{background:#fde8c8}
table{border-collapse:collapse;width:100%;table-layout:fixed}td,th{border-bottom:1px solid #eee;padding:.3em .5em;
text-align:left;vertical-align:top;overflow-wrap:anywhere}
th:nth-child(1){width:58%}th:nth-child(2){width:24%}th:nth-child(3){width:10%}th:nth-child(4){width:8%}
details pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:.6em;font-size:13px;
max-height:30em;overflow:auto}summary{cursor:pointer;overflow-wrap:anywhere}code{font-size:13px}
"""


def to_html(report: Report) -> str:
    """One self-contained page: summary, then the tests grouped by spec section, failures expanded."""
    e = html.escape
    s = report.summary
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>pvmsi {e(report.spec_version)} {e(report.role)} conformance</title><style>{_CSS}</style></head><body>",
        f"<h1>pvmsi {e(report.spec_version)} conformance: {e(report.role)} <code>{e(report.iut)}</code></h1>",
        f"<p>Started {e(report.started)}, {report.duration_s:.2f} s"
        + ("" if report.complete else " &mdash; <strong>interrupted: partial results</strong>")
        + "</p>",
        "<p class='summary'>"
        + "".join(
            f"<span class='{k}'>{k}: {v}</span>"
            for k, v in (
                ("pass", s.pass_),
                ("fail", s.fail),
                ("unsupported", s.unsupported),
                ("error", s.error),
                ("timeout", s.timeout),
            )
        )
        + "</p>",
    ]
    by_section: dict[str, list[Any]] = defaultdict(list)
    for r in report.results:
        by_section[r.section].append(r)
    for key in [k for k in SECTIONS if k in by_section] + [k for k in by_section if k not in SECTIONS]:
        title = SECTIONS[key][0] if key in SECTIONS else key
        parts.append(
            f"<h2 id='{e(key)}'>{e(title)}</h2><table><tr><th>test</th><th>requirements</th>"
            "<th>verdict</th><th>time</th></tr>"
        )
        for r in by_section[key]:
            reqs = ", ".join(f"<span title='{e(by_id(x).text)}'>{e(x)}</span>" for x in r.requirements)
            detail = ""
            if r.verdict is not Verdict.PASS:
                open_ = " open" if r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.TIMEOUT) else ""
                detail = (
                    f"<details{open_}><summary>{e(r.message.splitlines()[0] if r.message else r.verdict.value)}"
                    f"</summary><pre>{e(r.message)}</pre>"
                    + (f"<p>Transcript</p><pre>{e(chr(10).join(r.transcript))}</pre>" if r.transcript else "")
                    + "</details>"
                )
            parts.append(
                f"<tr><td><code>{e(r.test)}</code>{detail}</td><td>{reqs}</td>"
                f"<td class='{r.verdict.value}'>{r.verdict.value}</td><td>{r.duration_s:.3f}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
