"""The traceability page (requirement -> the conformance tests that check it) and the published JSON schema of
the conformance report, both generated from the suites and the result model at build time."""

from __future__ import annotations

import json

from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS, Level

from .context import Ctx
from .markup import code, escape_plain, table
from .requirements import MANDATORY, ROLE_TITLES


def render_traceability(ctx: Ctx) -> str:
    """Per spec section, every requirement with the tests naming it; MUSTs without a test are flagged on top."""
    from pvmsi.conformance.runner import catalogue

    tests: dict[str, list[str]] = {}
    entries = catalogue()
    for e in entries:
        for rid in e.requirements:
            tests.setdefault(rid, []).append(f"{e.role}: {e.test}")
    untested_must = [r.id for r in REQUIREMENTS if r.level in MANDATORY and r.id not in tests]
    counts = table(
        ["Level", "Requirements", "Tested", "Not tested"],
        [
            [lv.value, str(len(reqs)), str(sum(r.id in tests for r in reqs)), str(sum(r.id not in tests for r in reqs))]
            for lv in Level
            if (reqs := [r for r in REQUIREMENTS if r.level is lv])
        ],
        ["l", "r", "r", "r"],
    )
    parts = [
        f"{len(entries)} tests check {len(tests)} of the {len(REQUIREMENTS)} requirements.",
        "",
        counts,
    ]
    if untested_must:
        parts += ["", f'!!! danger "Mandatory requirements without a test"\n\n    {", ".join(untested_must)}']
    for key, (title, _page) in SECTIONS.items():
        reqs = [r for r in REQUIREMENTS if r.section == key]
        if not reqs:
            continue
        rows = []
        for r in reqs:
            link = ctx.requirement_link(r.id)
            named = tests.get(r.id, [])
            rows.append(
                [
                    f"[{r.id}]({link})",
                    r.level.value,
                    ROLE_TITLES[r.role],
                    "<br>".join(code(t) for t in named) if named else "*not tested*",
                ]
            )
        parts += ["", f"## {escape_plain(title)}", "", table(["Requirement", "Level", "Role", "Tests"], rows)]
    return "\n".join(parts)


def render_report_schema(ctx: Ctx) -> str:
    """The JSON schema of ``pvmsi conformance run --json`` as a code block."""
    from pvmsi.conformance.reports import report_schema

    return "```json\n" + json.dumps(report_schema(), indent=2) + "\n```"
