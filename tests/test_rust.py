"""`pvmsi gen rust`, compile-checked with rustc: the const size/offset assertions hold,
and a program built on the module reads every valid format vector and re-encodes it to the same bytes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ctoolchain import need, run
from test_vectors import LAYOUTS, load

from pvmsi.cli import main
from pvmsi.gen.rust import type_name

RUST_FLAGS = ["--edition", "2021", "-D", "warnings"]


def rustc() -> str:
    path = need("rustc", in_ci=False)
    m = re.search(r"rustc (\d+)\.(\d+)", run([path, "--version"]))
    if m is None or (int(m.group(1)), int(m.group(2))) < (1, 82):
        pytest.skip("the generated assertions need rustc 1.82+ (nested offset_of!)")
    return path


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rust") / "pvmsi.rs"
    res = CliRunner().invoke(main, ["gen", "rust", "-o", str(path)])
    assert res.exit_code == 0, res.output
    return path


def test_module_compiles(module: Path, tmp_path: Path) -> None:
    run([rustc(), *RUST_FLAGS, "--crate-type", "lib", module, "-o", tmp_path / "libpvmsi.rlib"])
    text = module.read_text()
    assert text.count("\n#[repr(C)]\n") == len(LAYOUTS)
    assert "pub const X86_FN_MSG_ALLOC: u32 = 0x50560020;" in text


def test_wrong_layout_does_not_compile(module: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.rs"
    bad.write_text(module.read_text().replace("pub msix_table_size: u16,", "pub msix_table_size: u32,"))
    proc = subprocess.run(
        [rustc(), *RUST_FLAGS, "--crate-type", "lib", str(bad), "-o", str(tmp_path / "x.rlib")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "evaluation panicked" in proc.stderr or "assertion failed" in proc.stderr


def _literal(value: int, bits: int, signed: bool) -> str:
    return f"{value}{'i' if signed else 'u'}{bits}" if value >= 0 or bits < 64 else f"{value + 1}i64 - 1"


def roundtrip_program() -> str:
    out = ["mod pvmsi;", "use pvmsi::*;", "fn main() {", "    let mut n = 0;"]
    for lay in LAYOUTS:
        data = load(lay.name)
        info = {f["path"]: f for f in data["fields"]}
        t = type_name(lay)
        for v in data["valid"]:
            raw = ", ".join(f"0x{b:02x}" for b in bytes.fromhex(v["hex"]))
            out += [
                "    {",
                f"        let raw: [u8; {lay.size}] = [{raw}];",
                f"        let s: {t} = unsafe {{ core::ptr::read_unaligned(raw.as_ptr() as *const {t}) }};",
                f"        let mut r = {t}::default();",
            ]
            for path, value in v["fields"].items():
                f = info[path]
                if f["kind"] == "bytes":
                    lit = "[" + ", ".join(f"0x{b:02x}" for b in bytes.fromhex(value)) + "]"
                else:
                    lit = _literal(value, f["size"] * 8, f["signed"])
                out += [f'        assert_eq!(s.{path}, {lit}, "{lay.name}/{v["name"]}");', f"        r.{path} = {lit};"]
            out += [
                f"        let p = &r as *const {t} as *const u8;",
                f"        let again = unsafe {{ core::slice::from_raw_parts(p, {lay.size}) }};",
                f'        assert_eq!(again, &raw[..], "{lay.name}/{v["name"]} re-encoding");',
                "        n += 1;",
                "    }",
            ]
    return "\n".join([*out, '    println!("{} vectors ok", n);', "}", ""])


@pytest.mark.skipif(sys.byteorder != "little", reason="the structs hold little-endian wire bytes only on LE hosts")
def test_rust_reads_and_reencodes_the_vectors(module: Path, tmp_path: Path) -> None:
    (tmp_path / "pvmsi.rs").write_text(module.read_text())
    main_rs = tmp_path / "main.rs"
    main_rs.write_text(roundtrip_program())
    exe = tmp_path / "roundtrip"
    run([rustc(), "--edition", "2021", "-D", "warnings", main_rs, "-o", exe])
    total = sum(len(load(lay.name)["valid"]) for lay in LAYOUTS)
    assert run([exe]).strip() == f"{total} vectors ok"
