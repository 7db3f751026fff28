"""The committed format vectors (conformance/vectors): deterministic, codec-checked, and read by C."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ctoolchain import compile_c, run
from paths import ROOT

from pvmsi.cli import main
from pvmsi.gen.c_common import STYLES, Style
from pvmsi.gen.c_header import c_header
from pvmsi.spec.codec import DecodeError, decode, encode
from pvmsi.spec.formats import FORMATS
from pvmsi.spec.layout import all_layouts

COMMITTED = ROOT / "conformance" / "vectors"
LAYOUTS = all_layouts()


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((COMMITTED / "formats" / f"{name}.json").read_text())
    return data


def test_regenerating_changes_no_byte(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["gen", "vectors", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "formats").iterdir()}
    committed = {p.name: p.read_bytes() for p in (COMMITTED / "formats").iterdir()}
    assert sorted(fresh) == sorted(committed), "regenerate with: pvmsi gen vectors -o conformance/vectors"
    for name, data in fresh.items():
        assert data == committed[name], f"{name} differs; regenerate with: pvmsi gen vectors -o conformance/vectors"


def test_index() -> None:
    index = json.loads((COMMITTED / "formats" / "index.json").read_text())
    assert index["schema_version"] == 1
    assert [e["format"] for e in index["formats"]] == [lay.name for lay in LAYOUTS]
    for entry in index["formats"]:
        text = (COMMITTED / "formats" / entry["file"]).read_bytes()
        assert hashlib.sha256(text).hexdigest() == entry["sha256"]
        data = json.loads(text)
        assert (len(data["valid"]), len(data["invalid"])) == (entry["valid"], entry["invalid"])
        assert data["spec_version"] == index["spec_version"]


def _get(obj: Any, path: str) -> int | str:
    for part in path.split("."):
        name, _, index = part.partition("[")
        obj = obj[name]
        if index:
            obj = obj[int(index.rstrip("]"))]
    return obj.hex() if isinstance(obj, bytes) else int(obj)


@pytest.mark.parametrize("lay", LAYOUTS, ids=[lay.name for lay in LAYOUTS])
def test_vectors_hold_against_the_codec(lay: Any) -> None:
    """Valid: decode to the listed fields and re-encode identically. Invalid: rejected at path and offset."""
    data = load(lay.name)
    struct = FORMATS[lay.name].struct
    assert data["size"] == lay.size
    assert [f["path"] for f in data["fields"]] == [leaf.path for leaf in lay.leaves()]
    assert {"zero", "typical", "max", "random"} <= {v["name"] for v in data["valid"]}
    for v in data["valid"]:
        raw = bytes.fromhex(v["hex"])
        value = decode(struct, raw)
        assert {p: _get(value, p) for p in v["fields"]} == v["fields"]
        assert encode(struct, value) == raw
    kinds = {f["path"]: f["kind"] for f in data["fields"]}
    for v in data["invalid"]:
        with pytest.raises(DecodeError) as e:
            decode(struct, bytes.fromhex(v["hex"]))
        assert (e.value.path, e.value.offset) == (v["path"], v["offset"]), v["name"]
        assert v["reason"] == ("short" if len(v["hex"]) < 2 * lay.size else kinds[v["path"]])
    # Every constrained field has at least one vector that must be rejected at it.
    rejected = {v["path"] for v in data["invalid"] if v["reason"] != "short"}
    assert rejected == {p for p, k in kinds.items() if k in ("reserved", "enum", "flags")}


def _literal(value: int, signed: bool) -> str:
    if not signed:
        return f"{value}ULL"
    return f"({value + 1}LL - 1)" if value < 0 else f"{value}LL"


def roundtrip_source(header: str, style: Style) -> str:
    """A C program: each valid vector memcpy'd into its struct, every field checked, re-encoded, compared.

    Signed fields are read through their signed type (uapi: the ``__le32`` member cast to ``__s32``).
    """
    out = [
        "#include <stdio.h>",
        "#include <string.h>",
        f'#include "{header}"',
        "static int failures, checked;",
        "#define FIELD(vec, got, want) do { if ((got) != (want)) { "
        'fprintf(stderr, "%s: %s\\n", vec, #got); failures++; } } while (0)',
    ]
    calls = []
    for lay in LAYOUTS:
        data = load(lay.name)
        signed = {f["path"]: f["signed"] for f in data["fields"]}
        kind = {f["path"]: f["kind"] for f in data["fields"]}
        bits = {f["path"]: f["size"] * 8 for f in data["fields"]}
        for n, v in enumerate(data["valid"]):
            raw = bytes.fromhex(v["hex"])
            fn = f"check_{lay.name}_{n}"
            label = f"{lay.name}/{v['name']}"
            out += [
                f"static const unsigned char {fn}_bytes[{len(raw)}] = {{{', '.join(f'0x{b:02x}' for b in raw)}}};",
                f"static void {fn}(void)",
                "{",
                f"\tstruct {lay.c_name} s, r;",
                f"\tunsigned char again[sizeof(struct {lay.c_name})];",
                f'\tif (sizeof s != sizeof {fn}_bytes) {{ puts("{label}: size"); failures++; return; }}',
                f"\tmemcpy(&s, {fn}_bytes, sizeof s);",
                "\tmemset(&r, 0, sizeof r);",
            ]
            for path, value in v["fields"].items():
                if kind[path] == "bytes":  # a byte string: compare and copy it whole
                    c_str = "".join(f"\\x{b:02x}" for b in bytes.fromhex(value))
                    n = len(value) // 2
                    out.append(f'\tFIELD("{label}", memcmp(s.{path}, "{c_str}", {n}), 0);')
                    out.append(f'\tmemcpy(r.{path}, "{c_str}", {n});')
                    continue
                lit = _literal(value, signed[path])
                if signed[path]:
                    stype = f"int{bits[path]}_t" if style == "stdint" else f"__s{bits[path]}"
                    got = f"(long long)({stype})s.{path}"
                else:
                    got = f"(unsigned long long)s.{path}"
                out.append(f'\tFIELD("{label}", {got}, {lit});')
                out.append(f"\tr.{path} = {lit};")
            out += [
                "\tmemcpy(again, &r, sizeof r);",
                f'\tif (memcmp(again, {fn}_bytes, sizeof again) != 0) {{ puts("{label}: re-encoding"); failures++; }}',
                "\tchecked++;",
                "}",
            ]
            calls.append(f"\t{fn}();")
    out += ["int main(void)", "{", *calls, '\tprintf("%d vectors, %d failures\\n", checked, failures);']
    return "\n".join([*out, "\treturn failures != 0;", "}", ""])


@pytest.mark.skipif(sys.byteorder != "little", reason="the structs hold little-endian wire bytes only on LE hosts")
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_c_reads_and_reencodes_the_vectors(tmp_path: Path, compiler: str, style: Style) -> None:
    header = "pvmsi.h"
    (tmp_path / header).write_text(c_header(style))
    src = tmp_path / "roundtrip.c"
    src.write_text(roundtrip_source(header, style))
    exe = compile_c(compiler, src, tmp_path / "roundtrip", "-std=c11", link=True)
    total = sum(len(load(lay.name)["valid"]) for lay in LAYOUTS)
    assert run([exe]).strip() == f"{total} vectors, 0 failures"
