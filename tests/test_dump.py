"""`pvmsi spec dump --json`: the machine-readable spec has the required shape and does not drift from spec/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pvmsi.cli import main
from pvmsi.spec.callconv import CONVENTIONS
from pvmsi.spec.calls import CALLS
from pvmsi.spec.constants import CONSTANT_GROUPS
from pvmsi.spec.dump import spec_dump
from pvmsi.spec.formats import FORMATS
from pvmsi.spec.layout import all_layouts
from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS
from pvmsi.spec.version import SPEC_NAME, VERSION_MAJOR, VERSION_MINOR

SCALAR_TYPES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}
ARCHES = ("x86_64", "arm64", "riscv64")
LEVELS = {"MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY"}
ROLES = {"guest", "hypervisor", "both"}


@pytest.fixture(scope="module")
def dump() -> dict[str, Any]:
    result = CliRunner().invoke(main, ["spec", "dump", "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def _formats(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in dump["formats"]}


def test_subprocess_console_script_gives_same_json(dump: dict[str, Any]) -> None:
    exe = Path(sys.executable).with_name("pvmsi")
    assert exe.exists(), exe
    proc = subprocess.run(
        [str(exe), "spec", "dump", "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == dump


def test_spec_identity(dump: dict[str, Any]) -> None:
    assert dump["spec"]["name"] == SPEC_NAME == "pvmsi"
    assert dump["spec"]["version"] == {"major": VERSION_MAJOR, "minor": VERSION_MINOR}
    assert isinstance(dump["spec"]["version"]["major"], int)
    assert isinstance(dump["spec"]["version"]["minor"], int)


def test_formats_shape(dump: dict[str, Any]) -> None:
    formats = dump["formats"]
    assert len(formats) >= 12
    names = [f["name"] for f in formats]
    assert len(set(names)) == len(names)
    assert len({f["c_name"] for f in formats}) == len(formats)
    for f in formats:
        for key, typ in (("name", str), ("c_name", str), ("size", int), ("alignment", int), ("doc", str)):
            assert isinstance(f[key], typ), (f["name"], key)
        assert f["doc"].strip(), f["name"]
        assert f["size"] > 0
        assert f["size"] % 8 == 0, f["name"]
        assert f["alignment"] in (1, 2, 4, 8)
        assert f["size"] % f["alignment"] == 0
        assert f["fields"], f["name"]
        end = 0
        for fld in f["fields"]:
            where = f"{f['name']}.{fld.get('name')}"
            assert set(fld) >= {"name", "c_name", "offset", "size", "type", "count", "reserved", "doc"}, where
            assert isinstance(fld["name"], str)
            assert isinstance(fld["c_name"], str)
            assert isinstance(fld["doc"], str)
            assert fld["doc"].strip(), where
            assert isinstance(fld["reserved"], bool)
            assert isinstance(fld["count"], int)
            assert fld["count"] >= 1
            assert fld["offset"] == end, f"{where}: gap or overlap"
            typ = fld["type"]
            if typ in SCALAR_TYPES:
                elem = SCALAR_TYPES[typ]
                assert fld["size"] == elem * fld["count"], where
                assert fld["offset"] % elem == 0, f"{where} not naturally aligned"
            elif typ == "bytes":
                assert fld["size"] == fld["count"], where
            else:
                nested = _formats(dump).get(typ)
                assert nested is not None, f"{where}: type {typ} is not a format"
                assert fld["size"] == nested["size"] * fld["count"], where
                assert fld["offset"] % nested["alignment"] == 0, where
            end = fld["offset"] + fld["size"]
        assert end == f["size"], f"{f['name']}: fields cover {end} of {f['size']} bytes"


def test_constants_shape(dump: dict[str, Any]) -> None:
    constants = dump["constants"]
    assert isinstance(constants, dict)
    for key in ("status", "function", "feature", "limit"):
        assert key in constants
    for key, members in constants.items():
        assert members, key
        names = [m["name"] for m in members]
        assert len(set(names)) == len(names), key
        for m in members:
            assert set(m) >= {"name", "c_name", "value", "doc"}, key
            assert isinstance(m["name"], str)
            assert isinstance(m["c_name"], str)
            assert m["c_name"].endswith(m["name"])
            assert isinstance(m["value"], int)
            assert isinstance(m["doc"], str)
            assert m["doc"].strip(), (key, m["name"])
    c_names = [m["c_name"] for members in constants.values() for m in members]
    assert len(set(c_names)) == len(c_names), "C names must be unique across groups"
    statuses = {m["name"]: m["value"] for m in constants["status"]}
    assert len(set(statuses.values())) == len(statuses)
    assert statuses["SUCCESS"] == 0
    assert statuses["NOT_SUPPORTED"] == -1


def test_calls_shape(dump: dict[str, Any]) -> None:
    calls = dump["calls"]
    assert len(calls) >= 9
    formats = _formats(dump)
    names = [c["name"] for c in calls]
    assert len(set(names)) == len(names)
    for needed in (
        "VERSION",
        "GET_INFO",
        "NEGOTIATE",
        "DEVICE_QUERY",
        "DEVICE_CLAIM",
        "DEVICE_RELEASE",
        "MSG_ALLOC",
        "MSG_ACTIVATE",
        "MSG_FREE",
    ):
        assert needed in names
    ids: dict[str, set[int]] = {arch: set() for arch in ARCHES}
    for c in calls:
        assert set(c) >= {"name", "function_id", "input", "output", "doc"}
        assert c["doc"].strip()
        for key in ("input", "output", "input_entry", "output_entry"):
            ref = c.get(key)
            assert ref is None or ref in formats, f"{c['name']}.{key} = {ref!r}"
        fid = c["function_id"]
        if isinstance(fid, int):
            fid = dict.fromkeys(ARCHES, fid)
        assert set(fid) >= set(ARCHES), c["name"]
        for arch in ARCHES:
            assert isinstance(fid[arch], int)
            assert fid[arch] not in ids[arch], f"{c['name']}: duplicate {arch} function id"
            ids[arch].add(fid[arch])


def test_calling_conventions_shape(dump: dict[str, Any]) -> None:
    cc = dump["calling_conventions"]
    assert set(cc) >= set(ARCHES)
    for arch in ARCHES:
        assert isinstance(cc[arch], dict)
        assert cc[arch], arch
        assert len(cc[arch]["argument_registers"]) == 4
        assert cc[arch]["status_register"]
        assert cc[arch]["value_register"]
        assert cc[arch]["instruction"]


def test_requirements(dump: dict[str, Any]) -> None:
    reqs = dump["requirements"]
    assert len(reqs) >= 60, f"only {len(reqs)} requirements"
    ids = [r["id"] for r in reqs]
    assert len(set(ids)) == len(ids), "requirement ids must be unique"
    sections = {s["key"] for s in dump.get("sections", [])} or set(SECTIONS)
    for r in reqs:
        assert set(r) >= {"id", "level", "role", "section", "text"}
        assert r["level"] in LEVELS, r["id"]
        assert r["role"] in ROLES, r["id"]
        assert r["section"] in sections, f"{r['id']}: unknown section {r['section']!r}"
        assert r["text"].strip(), r["id"]
    must_roles = {r["role"] for r in reqs if r["level"] == "MUST"}
    assert "hypervisor" in must_roles, "no MUST requirement for the hypervisor"
    assert "guest" in must_roles, "no MUST requirement for the guest"


# -- drift --------------------------------------------------------------------------------------------------------


def test_dump_equals_fresh_computation(dump: dict[str, Any]) -> None:
    fresh = json.loads(json.dumps(spec_dump()))
    assert dump == fresh


def test_dump_matches_spec_sources(dump: dict[str, Any]) -> None:
    layouts = all_layouts()
    assert [f["name"] for f in dump["formats"]] == [lay.name for lay in layouts]
    assert {f["name"] for f in dump["formats"]} == set(FORMATS)
    for f, lay in zip(dump["formats"], layouts, strict=True):
        assert f["size"] == lay.size == FORMATS[lay.name].struct.sizeof()
        assert [(x["name"], x["offset"], x["size"], x["type"]) for x in f["fields"]] == [
            (x.name, x.offset, x.size, x.type) for x in lay.fields
        ]
    assert set(dump["constants"]) == {g.key for g in CONSTANT_GROUPS}
    for g in CONSTANT_GROUPS:
        assert [(m["name"], m["value"]) for m in dump["constants"][g.key]] == [
            # every name, aliases included (extension: PVMSI_FN_VENDOR_ID is PVMSI_FN_VENDOR_FIRST)
            (name, int(m))
            for name, m in g.source.__members__.items()
        ]
    assert [c["name"] for c in dump["calls"]] == [c.name for c in CALLS]
    for c, cdef in zip(dump["calls"], CALLS, strict=True):
        assert (c["input"], c["output"]) == (cdef.input, cdef.output)
        for conv in CONVENTIONS:
            fid = c["function_id"]
            assert (fid[conv.arch] if isinstance(fid, dict) else fid) == conv.function_id(cdef.fn)
    assert [r["id"] for r in dump["requirements"]] == [r.id for r in REQUIREMENTS]


def test_every_name_referenced_by_calls_exists(dump: dict[str, Any]) -> None:
    formats = _formats(dump)
    referenced = {
        c[key] for c in dump["calls"] for key in ("input", "output", "input_entry", "output_entry") if c.get(key)
    }
    assert referenced
    assert referenced <= set(formats), sorted(referenced - set(formats))
    nested = {fld["type"] for f in dump["formats"] for fld in f["fields"]} - {*SCALAR_TYPES, "bytes"}
    assert nested <= set(formats), sorted(nested - set(formats))
