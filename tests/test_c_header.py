"""The generated C header and check file, verified by real compilers.

Both styles compile clean with gcc and clang as C90, C99 and C11 and with g++/clang++ as C++17
(-Wall -Wextra -Werror -pedantic -Wpadded), using every macro and calling the helpers; the C11 check file
compiles natively and for arm64 and riscv64; a compiled program prints sizeof/offsetof of every struct and
member and they equal `pvmsi spec dump --json`; the cross compilers build the arm64 and riscv64 helpers.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ctoolchain import C_STDS, compile_c, need, run

from pvmsi.cli import main
from pvmsi.gen.c_asm import ARCH_GUARD, ARCH_PREFIX, helper_name
from pvmsi.gen.c_check import c_check, members
from pvmsi.gen.c_common import STYLES, Style
from pvmsi.gen.c_header import c_header
from pvmsi.spec.callconv import CONVENTIONS
from pvmsi.spec.calls import CALLS
from pvmsi.spec.constants import CONSTANT_GROUPS
from pvmsi.spec.layout import all_layouts

HEADER = {"stdint": "pvmsi.h", "uapi": "pvmsi_uapi.h"}
HELPERS = {"stdint": "pvmsi_hypercall.h", "uapi": "pvmsi_hypercall_uapi.h"}
CROSS = {"arm64": "aarch64-linux-gnu-gcc", "riscv64": "riscv64-linux-gnu-gcc"}


@pytest.fixture(scope="module")
def cdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both headers (written through the CLI), their check files and a use-everything source."""
    d = tmp_path_factory.mktemp("c")
    runner = CliRunner()
    for style in STYLES:
        for cmd, name in (
            ("c-header", HEADER[style]),
            ("c-check", f"check_{style}.c"),
            ("c-helpers", HELPERS[style]),
        ):
            args = ["gen", cmd, "--style", style, "-o", str(d / name)]
            if cmd != "c-header":
                args += ["--header", HEADER[style]]
            res = runner.invoke(main, args)
            assert res.exit_code == 0, res.output
        (d / f"use_{style}.c").write_text(use_source(style))
        (d / f"use_{style}.cc").write_text(use_source(style))
    return d


def use_source(style: Style) -> str:
    """A translation unit that includes the header and the helpers header, expands every macro and calls every
    helper."""
    ul = "unsigned long" if style == "stdint" else "__u64"
    lines = [f'#include "{HEADER[style]}"', f'#include "{HELPERS[style]}"']
    lines += [f"{ul} pvmsi_use(void);", f"{ul} pvmsi_use(void)", "{"]
    lines.append(f"\t{ul} v = 0, s = 0;")
    for g in CONSTANT_GROUPS:
        lines += [f"\ts += ({ul})({g.c_name(name)});" for name, _, _ in g.members]
    for c in CALLS:
        lines += [f"\ts += ({ul})(PVMSI_{p}_FN_{c.name});" for p in ARCH_PREFIX.values()]
    lines += [f"\ts += ({ul})sizeof(struct {lay.c_name});" for lay in all_layouts()]
    for cc in CONVENTIONS:
        fn = f"PVMSI_{ARCH_PREFIX[cc.arch]}_FN_MSG_ALLOC"
        lines.append(f"#if {ARCH_GUARD[cc.arch]}")
        lines += [f"\ts += ({ul}){helper_name(i)}({fn}, 1, 2, 0, 0, &v);" for i in cc.instruction]
        lines.append("#endif")
    return "\n".join([*lines, "\treturn s + v;", "}", ""])


def _std_flags(compiler: str, std: str) -> list[str]:
    return [f"-std={std}", "-O2"]


NATIVE = [(cc, std) for cc in ("gcc", "clang") for std in C_STDS] + [("g++", "c++17"), ("clang++", "c++17")]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("compiler", "std"), NATIVE, ids=[f"{c}-{s}" for c, s in NATIVE])
def test_header_compiles_clean(cdir: Path, tmp_path: Path, compiler: str, std: str, style: Style) -> None:
    """Every macro expanded and every x86-64 helper called, warnings as errors (plus -Wpadded)."""
    src = cdir / f"use_{style}.{'cc' if '++' in compiler else 'c'}"
    obj = compile_c(compiler, src, tmp_path / "use.o", *_std_flags(compiler, std))
    disasm = run([need("objdump"), "-d", obj])
    for insn in ("vmcall", "vmmcall"):
        assert re.search(rf"\b{insn}\b", disasm), f"{insn} missing from the x86-64 helpers"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("arch", sorted(CROSS))
def test_cross_helpers(cdir: Path, tmp_path: Path, arch: str, style: Style) -> None:
    """The arm64 (hvc #0) and riscv64 (ecall) helpers build with the cross compilers, in C90 and C11."""
    cc = CROSS[arch]
    for std in ("c90", "c11"):
        obj = compile_c(cc, cdir / f"use_{style}.c", tmp_path / f"use_{std}.o", f"-std={std}", "-O2")
    objdump = need(cc.replace("-gcc", "-objdump"))
    disasm = run([objdump, "-d", obj])
    conv = next(c for c in CONVENTIONS if c.arch == arch)
    for insn in conv.instruction:
        mnemonic = insn.split()[0]
        assert re.search(rf"\b{mnemonic}\b", disasm), f"{insn} missing from the {arch} helper"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("compiler", ["gcc", "clang", *CROSS.values()])
def test_check_file_compiles(cdir: Path, tmp_path: Path, compiler: str, style: Style) -> None:
    """The C11 _Static_assert file holds natively and on arm64 and riscv64."""
    compile_c(compiler, cdir / f"check_{style}.c", tmp_path / "check.o", "-std=c11")


def test_check_file_covers_every_member() -> None:
    text = c_check("stdint")
    for lay in all_layouts():
        assert f"sizeof(struct {lay.c_name}) == {lay.size}" in text
        for m in members(lay):
            assert f"offsetof(struct {lay.c_name}, {m.path}) == {m.offset}" in text


def test_check_file_catches_a_wrong_layout(cdir: Path, tmp_path: Path) -> None:
    """A header whose struct differs from the spec makes the check file fail to compile."""
    need("gcc")
    bad = tmp_path / "pvmsi.h"
    bad.write_text(c_header("stdint").replace("uint16_t msix_table_size;", "uint32_t msix_table_size;"))
    src = tmp_path / "check.c"
    src.write_text(c_check("stdint"))
    proc = subprocess.run(
        ["gcc", "-std=c11", "-c", "-I", str(tmp_path), str(src), "-o", str(tmp_path / "x.o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "pvmsi_device_info.msix_table_size" in proc.stderr


def _expected_from_dump() -> dict[str, dict[str, tuple[int, int]]]:
    """struct -> {"" : (size, 0), member path: (offset, size)} from `pvmsi spec dump --json` alone."""
    res = CliRunner().invoke(main, ["spec", "dump", "--json"])
    assert res.exit_code == 0, res.output
    formats: dict[str, Any] = {f["name"]: f for f in json.loads(res.output)["formats"]}

    def walk(fmt: dict[str, Any], prefix: str, base: int, out: dict[str, tuple[int, int]]) -> None:
        for f in fmt["fields"]:
            path, off = prefix + f["c_name"], base + f["offset"]
            out[path] = (off, f["size"])
            elem = f["size"] // f["count"]
            for i in range(f["count"] if f["count"] > 1 and f["type"] != "bytes" else 0):
                out[f"{path}[{i}]"] = (off + i * elem, elem)
            if f["type"] in formats:
                for i in range(f["count"]):
                    sub = path + (f"[{i}]" if f["count"] > 1 else "")
                    walk(formats[f["type"]], sub + ".", off + i * elem, out)

    expected = {}
    for f in formats.values():
        members_: dict[str, tuple[int, int]] = {"": (f["size"], 0)}
        walk(f, "", 0, members_)
        expected[f["c_name"]] = members_
    return expected


def _printer_source(style: Style, expected: dict[str, dict[str, tuple[int, int]]]) -> str:
    lines = ["#include <stddef.h>", "#include <stdio.h>", f'#include "{HEADER[style]}"', "int main(void)", "{"]
    for name, mems in expected.items():
        t = f"struct {name}"
        lines.append(f'\tprintf("{name} . %lu 0\\n", (unsigned long)sizeof({t}));')
        for path in mems:
            if path:
                size = f"sizeof((({t} *)0)->{path})"
                lines.append(
                    f'\tprintf("{name} {path} %lu %lu\\n", (unsigned long)offsetof({t}, {path}), '
                    f"(unsigned long){size});"
                )
    return "\n".join([*lines, "\treturn 0;", "}", ""])


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_compiled_layout_equals_spec_dump(cdir: Path, tmp_path: Path, compiler: str, style: Style) -> None:
    """sizeof/offsetof as a compiled program prints them == `pvmsi spec dump --json`, nested members too."""
    expected = _expected_from_dump()
    src = cdir / f"print_{style}.c"
    src.write_text(_printer_source(style, expected))
    exe = compile_c(compiler, src, tmp_path / "print", "-std=c11", link=True)
    got: dict[str, dict[str, tuple[int, int]]] = {}
    for line in run([exe]).splitlines():
        name, path, a, b = line.split()
        got.setdefault(name, {})["" if path == "." else path] = (int(a), int(b))
    assert got == expected
    assert set(expected) == {lay.c_name for lay in all_layouts()}


@pytest.mark.parametrize("style", STYLES)
def test_pahole_sees_no_holes(cdir: Path, tmp_path: Path, style: Style) -> None:
    """pahole (DWARF) agrees on every struct size and finds no hole in any of them."""
    pahole = need("pahole")
    src = cdir / f"pahole_{style}.c"
    src.write_text(
        "\n".join([f'#include "{HEADER[style]}"', *(f"struct {lay.c_name} v_{lay.name};" for lay in all_layouts())])
        + "\n"
    )
    obj = compile_c("gcc", src, tmp_path / "pahole.o", "-std=c11", "-g")
    sizes = {}
    for line in run([pahole, "--sizes", obj]).splitlines():
        name, size, holes = line.split()
        sizes[name] = (int(size), int(holes))
    assert sizes == {lay.c_name: (lay.size, 0) for lay in all_layouts()}


@pytest.mark.parametrize(
    ("version", "error"),
    [("0x00010000", None), ("0x00010001", "newer than this header"), ("0x00020000", "another major version")],
)
def test_interface_version_guard(cdir: Path, tmp_path: Path, version: str, error: str | None) -> None:
    gcc = need("gcc")
    src = tmp_path / "guard.c"
    src.write_text(f'#define PVMSI_INTERFACE_VERSION {version}\n#include "{HEADER["stdint"]}"\nint x;\n')
    cmd = [gcc, "-std=c90", "-pedantic", "-Werror", "-c", "-I", str(cdir), str(src), "-o", str(tmp_path / "g.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if error is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0
        assert error in proc.stderr


@pytest.mark.parametrize("style", STYLES)
def test_header_text_rules(style: Style) -> None:
    """C90-clean text, SPDX, banner and guard; every reserved member says it must be zero."""
    text = c_header(style)
    spdx = "MIT" if style == "stdint" else "(GPL-2.0 WITH Linux-syscall-note) OR MIT"
    assert text.startswith(f"/* SPDX-License-Identifier: {spdx} */\n")
    assert "Generated from pvmsi spec version 1.0 by `pvmsi gen c-header" in text
    assert "Do not edit" in text
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert "//" not in code
    assert not re.search(r"(?<!_)\b(inline|asm|typeof)\b", code)
    assert 'extern "C"' in text
    n_reserved = sum(1 for lay in all_layouts() for f in lay.fields if f.reserved)
    assert text.count("reserved, must be zero */") == n_reserved
    assert ("#include <linux/types.h>" in text) == (style == "uapi")
    if style == "uapi":
        assert not re.search(r"\buint\d+_t\b", code)
        assert "__le64 features_offered;" in code
    else:
        assert "int32_t status;" in code


def test_uapi_header_is_a_kernel_uapi_header() -> None:
    """No code (the helpers are a header of their own), an include guard that is no reserved identifier (C11
    7.1.3), the dual license a kernel uapi header carries, and the batch entries as flexible array members."""
    text = c_header("uapi")
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert not re.search(r"\b(static|__inline__|__asm__|__volatile__)\b", code)
    assert text.splitlines()[0] == "/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */"
    guards = re.findall(r"^#ifndef (\w+)\n#define \1$", text, flags=re.M)
    assert guards[0] == "LINUX_PVMSI_H"
    for name in re.findall(r"^#(?:ifndef|define) (\w+)", text, flags=re.M):
        assert not re.match(r"_[A-Z_]", name), name
        assert "__" not in name, name
    for c in CALLS:
        for suffix, entry, member in (("in", c.input_entry, "entries"), ("out", c.output_entry, "results")):
            if entry is not None:
                block = re.search(rf"struct pvmsi_{c.name.lower()}_{suffix} {{(.*?)}};", text, flags=re.S)
                assert block is not None
                assert f"\tstruct pvmsi_{entry} {member}[];" in block.group(1)


@pytest.mark.parametrize("style", STYLES)
def test_helpers_header(style: Style) -> None:
    """`pvmsi gen c-helpers`: every helper, over the interface header it includes; the stdint header carries the
    same helpers under the same guard, the uapi header none."""
    res = CliRunner().invoke(main, ["gen", "c-helpers", "--style", style])
    assert res.exit_code == 0, res.output
    text = res.output
    assert ("#include <linux/pvmsi.h>" if style == "uapi" else '#include "pvmsi.h"') in text
    assert "#ifndef PVMSI_HYPERCALL_H\n#define PVMSI_HYPERCALL_H\n" in text
    header = c_header(style)
    for cc in CONVENTIONS:
        for insn in cc.instruction:
            assert f" {helper_name(insn)}(" in text
            assert (f" {helper_name(insn)}(" in header) == (style == "stdint")
    assert ("#ifndef PVMSI_HYPERCALL_H" in header) == (style == "stdint")


@pytest.mark.parametrize("order", ["header-first", "helpers-first"])
def test_stdint_header_and_helpers_header_together(cdir: Path, tmp_path: Path, order: str) -> None:
    """Either include order compiles: each helper is defined once."""
    names = [HEADER["stdint"], HELPERS["stdint"]]
    src = tmp_path / "both.c"
    includes = [f'#include "{cdir / n}"' for n in (names if order == "header-first" else names[::-1])]
    src.write_text("\n".join([*includes, "int pvmsi_both(void);", "int pvmsi_both(void) { return 0; }", ""]))
    compile_c("gcc", src, tmp_path / "both.o", "-std=c90")


def test_flexible_array_members_reach_the_entries(cdir: Path, tmp_path: Path) -> None:
    """In C99 and later the batch block structs end in their entries: entries[i] is header + i entries."""
    src = tmp_path / "flex.c"
    src.write_text(
        "\n".join(
            [
                "#include <stddef.h>",
                "#include <stdio.h>",
                f'#include "{HEADER["uapi"]}"',
                "int main(void)",
                "{",
                "\tstatic __u64 block[64];",
                "\tstruct pvmsi_msg_alloc_in *in = (struct pvmsi_msg_alloc_in *)block;",
                "\tstruct pvmsi_msg_free_out *out = (struct pvmsi_msg_free_out *)block;",
                '\tprintf("%d %d %d\\n", PVMSI_HAVE_FLEX_ARRAY, (int)((char *)&in->entries[2] - (char *)block),',
                "\t       (int)((char *)&out->results[3] - (char *)block));",
                "\treturn 0;",
                "}",
                "",
            ]
        )
    )
    for std in ("c99", "c11"):
        exe = compile_c("gcc", src, tmp_path / f"flex_{std}", f"-std={std}", f"-I{cdir}", link=True)
        assert run([exe]).split() == ["1", str(32 + 2 * 24), str(16 + 3 * 8)]


def test_cli_errors_are_messages(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["gen", "c-header", "-o", str(tmp_path / "f" / "x.h")])
    assert res.exit_code == 0
    (tmp_path / "blocker").write_text("")
    res = CliRunner().invoke(main, ["gen", "c-header", "-o", str(tmp_path / "blocker" / "x.h")])
    assert res.exit_code == 1
    assert res.output.startswith("Error: cannot write")
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_missing_compiler_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install-toolchains"):
        need("pvmsi-no-such-cc")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        need("pvmsi-no-such-cc")
