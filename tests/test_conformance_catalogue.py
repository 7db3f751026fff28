"""The catalogue (``pvmsi conformance list``): every test names known requirement ids, and every MUST and
MUST NOT of the spec is named by at least one test of the suite for its role."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pvmsi.conformance.runner import catalogue

PVMSI = str(Path(sys.executable).with_name("pvmsi"))
MANDATORY = {"MUST", "MUST NOT"}


def _json(*args: str) -> Any:
    proc = subprocess.run([PVMSI, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def listed() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = _json("conformance", "list", "--json")
    return entries


@pytest.fixture(scope="module")
def requirements() -> list[dict[str, Any]]:
    reqs: list[dict[str, Any]] = _json("spec", "dump", "--json")["requirements"]
    return reqs


def _named(listed: list[dict[str, Any]], role: str) -> set[str]:
    return {rid for e in listed if e["role"] == role for rid in e["requirements"]}


def test_catalogue_shape(listed: list[dict[str, Any]], requirements: list[dict[str, Any]]) -> None:
    known = {r["id"]: r for r in requirements}
    assert listed
    assert len({e["test"] for e in listed}) == len(listed), "test names are unique"
    for e in listed:
        assert {"test", "role", "section", "requirements"} <= set(e)
        assert e["role"] in ("hypervisor", "guest")
        assert e["requirements"], e["test"]
        assert e["doc"].strip(), f"{e['test']}: no docstring to say what it checks"
        assert all(rid in known for rid in e["requirements"]), e
        assert e["section"] == known[e["requirements"][0]]["section"]
    assert listed == [entry.as_json() for entry in catalogue()]


def test_every_hypervisor_and_general_must_is_tested(
    listed: list[dict[str, Any]], requirements: list[dict[str, Any]]
) -> None:
    named = _named(listed, "hypervisor")
    mandatory = [r["id"] for r in requirements if r["level"] in MANDATORY and r["id"].startswith(("HV-", "GEN-"))]
    assert mandatory
    missing = [rid for rid in mandatory if rid not in named]
    assert not missing, f"MUST/MUST NOT not named by any hypervisor test: {missing}"


def test_every_guest_must_is_tested(listed: list[dict[str, Any]], requirements: list[dict[str, Any]]) -> None:
    assert any(e["role"] == "guest" for e in listed), "the guest suite has no tests"
    named = _named(listed, "guest")
    mandatory = [r["id"] for r in requirements if r["level"] in MANDATORY and r["id"].startswith("GUEST-")]
    missing = [rid for rid in mandatory if rid not in named]
    assert not missing, f"MUST/MUST NOT not named by any guest test: {missing}"


def test_text_listing(listed: list[dict[str, Any]]) -> None:
    proc = subprocess.run(
        [PVMSI, "conformance", "list", "--role", "hypervisor"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    hv = [e for e in listed if e["role"] == "hypervisor"]
    assert proc.stdout.rstrip().endswith(f"{len(hv)} tests")


def test_traceability_page_lists_every_requirement(listed: list[dict[str, Any]]) -> None:
    from pvmsi.docsgen.context import Ctx, SiteIndex
    from pvmsi.docsgen.traceability import render_report_schema, render_traceability
    from pvmsi.spec.requirements import REQUIREMENTS

    page = render_traceability(Ctx(SiteIndex(), "traceability.md"))
    rows = {line.split("](", 1)[0].removeprefix("| ["): line for line in page.splitlines() if line.startswith("| [")}
    assert set(rows) == {r.id for r in REQUIREMENTS}
    named = {rid for e in listed for rid in e["requirements"]}
    for r in REQUIREMENTS:
        if r.id in named:
            tests = [e["test"] for e in listed if r.id in e["requirements"]]
            assert all(t in rows[r.id] for t in tests), r.id
        else:
            assert "*not tested*" in rows[r.id]
            assert r.level.value not in MANDATORY, f"{r.id} is mandatory and untested"
    assert "danger" not in page
    schema_block = render_report_schema(Ctx(SiteIndex(), "conformance-guide.md"))
    assert schema_block.startswith("```json\n")
    assert json.loads(schema_block.removeprefix("```json\n").removesuffix("\n```")) == _json("conformance", "schema")
