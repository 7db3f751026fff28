"""``pvmsi gen rust``: ``#[repr(C)]`` structs and constants for Rust, with compile-time layout assertions.

The structs hold the wire image on little-endian targets (every field is little-endian, spec "Conventions");
the ``const`` assertions check every struct size and every member offset (nested ones with ``offset_of!``'s
dotted paths, Rust 1.82+) against the spec.
"""

from __future__ import annotations

import textwrap

from ..spec.callconv import CONVENTIONS, RISCV_EXTENSION_ID
from ..spec.calls import CALLS
from ..spec.constants import CONSTANT_GROUPS
from ..spec.layout import FieldLayout, FormatLayout, all_layouts
from ..spec.version import VERSION_MAJOR, VERSION_MINOR
from .c_asm import ARCH_PREFIX
from .c_check import members
from .c_common import group_width


def type_name(lay: FormatLayout) -> str:
    return "".join(part.capitalize() for part in lay.name.split("_"))


def _scalar(f: FieldLayout) -> str:
    if f.type == "bytes":
        return "u8"
    return f"{'i' if f.signed else 'u'}{f.elem_size * 8}"


def _doc(text: str, indent: str = "") -> list[str]:
    return [f"{indent}/// {line}" for line in textwrap.wrap(" ".join(text.split()), 100)]


def _const_type(kind: str, width: int, values: list[int]) -> str:
    if any(v < 0 for v in values):
        return "i32"
    return f"u{max(width, 8)}" if kind != "value" else "u32"


def _constants() -> list[str]:
    out: list[str] = []
    for g in CONSTANT_GROUPS:
        values = [v for _, v, _ in g.members]
        typ = _const_type(g.kind, group_width(g), values)
        out += ["", *_doc(f"{g.doc} ({g.c_prefix}* in C)")]
        for name, value, doc in g.members:
            lit = f"{value:#x}" if g.kind == "flags" else str(value)
            out += [*_doc(doc), f"pub const {g.c_name(name).removeprefix('PVMSI_')}: {typ} = {lit};"]
    out += ["", '/// Function ids per architecture (spec "Calling conventions").']
    for cc in CONVENTIONS:
        p = ARCH_PREFIX[cc.arch]
        if cc.arch == "riscv64":
            out.append(f"pub const RISCV_EXT_ID: u32 = {RISCV_EXTENSION_ID:#010x};")
        else:
            out.append(f"pub const {p}_CALL_BASE: u32 = {cc.call_base:#010x};")
        out += [f"pub const {p}_FN_{c.name}: u32 = {cc.function_id(c.fn):#010x};" for c in CALLS]
    return out


def _struct(lay: FormatLayout) -> list[str]:
    name = type_name(lay)
    out = ["", *_doc(f"{lay.doc} ({lay.size} bytes, spec format {lay.name})")]
    out += ["#[repr(C)]", "#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]", f"pub struct {name} {{"]
    for f in lay.fields:
        typ = type_name(f.nested) if f.nested else _scalar(f)
        if f.count > 1:
            typ = f"[{typ}; {f.count}]"
        doc = "Reserved, must be zero." if f.reserved else f.doc
        out += [*_doc(f"+{f.offset}: {doc}", "    "), f"    pub {f.name}: {typ},"]
    out.append("}")
    out.append(f"const _: () = assert!(core::mem::size_of::<{name}>() == {lay.size});")
    for m in members(lay):
        if "[" not in m.path:
            out.append(f"const _: () = assert!(core::mem::offset_of!({name}, {m.path}) == {m.offset});")
    return out


def rust() -> str:
    """The Rust module, as text."""
    lines = [
        "// SPDX-License-Identifier: MIT",
        f"//! pvmsi {VERSION_MAJOR}.{VERSION_MINOR} interface: constants and `#[repr(C)]` parameter blocks.",
        "//!",
        f"//! Generated from pvmsi spec version {VERSION_MAJOR}.{VERSION_MINOR} by `pvmsi gen rust`. Do not edit.",
        "//! The structs are the wire image on little-endian targets (every field is little-endian).",
        "#![allow(dead_code)]",
        "",
        f"pub const VERSION_MAJOR: u16 = {VERSION_MAJOR};",
        f"pub const VERSION_MINOR: u16 = {VERSION_MINOR};",
        f"pub const VERSION: u32 = {(VERSION_MAJOR << 16) | VERSION_MINOR:#010x};",
        *_constants(),
    ]
    for lay in all_layouts():
        lines += _struct(lay)
    return "\n".join(lines) + "\n"
