"""Shared pieces of the C generators: styles, member types, comments and literals."""

from __future__ import annotations

import textwrap
from typing import Literal

from ..spec.constants import CONSTANT_GROUPS, ConstantGroup
from ..spec.layout import FieldLayout, all_layouts
from ..spec.version import VERSION_MAJOR, VERSION_MINOR

Style = Literal["stdint", "uapi"]
STYLES: tuple[Style, ...] = ("stdint", "uapi")

#: Where each style gets its fixed-width types.
INCLUDES: dict[Style, str] = {"stdint": "<stdint.h>", "uapi": "<linux/types.h>"}


#: The license line of each style: a kernel uapi header carries the syscall note (user space includes it freely).
SPDX: dict[Style, str] = {
    "stdint": "/* SPDX-License-Identifier: MIT */",
    "uapi": "/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */",
}

#: The include guard of the helpers header; the stdint header's own copy of the helpers shares it.
HELPERS_GUARD = "PVMSI_HYPERCALL_H"


def include_guard(style: Style) -> str:
    """The interface header's include guard: no reserved identifier (C11 7.1.3: no leading underscore and capital
    letter, no double underscore), unlike the kernel's customary ``_UAPI_LINUX_*_H``."""
    return "PVMSI_H" if style == "stdint" else "LINUX_PVMSI_H"


def banner(style: Style, what: str, command: str) -> list[str]:
    """The license line and the generated-file banner of every generated C file."""
    return [
        SPDX[style],
        "/*",
        f" * {what}",
        " *",
        f" * Generated from pvmsi spec version {VERSION_MAJOR}.{VERSION_MINOR} by `{command}`.",
        " * Do not edit: change spec/ and regenerate.",
        " */",
    ]


def include_line(header: str) -> str:
    """``#include`` of ``header``: as given when it is ``<...>`` or ``"..."``, else quoted."""
    return f"#include {header}" if header[:1] in '<"' else f'#include "{header}"'


def squeeze(lines: list[str]) -> str:
    """Join ``lines``, collapsing runs of blank lines into one."""
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def scalar_type(f: FieldLayout, style: Style) -> str:
    """The C type of one element of scalar field ``f``; the wire is little-endian (spec "Conventions")."""
    bits = 8 if f.type == "bytes" else f.elem_size * 8
    if style == "stdint":
        return f"{'int' if f.signed else 'uint'}{bits}_t"
    if bits == 8:
        return "__s8" if f.signed else "__u8"
    # Multi-byte fields are little-endian on the wire: __le* (sparse-checked), signed ones too.
    return f"__le{bits}"


def ulong(style: Style) -> str:
    """The register-sized unsigned type of the hypercall helpers."""
    return "unsigned long" if style == "stdint" else "__u64"


def slong(style: Style) -> str:
    return "long" if style == "stdint" else "__s64"


def comment(text: str, indent: str = "", width: int = 110) -> list[str]:
    """``text`` as a C90 block comment, wrapped; ``/*`` and ``*/`` inside the text are defused."""
    text = " ".join(text.replace("/*", "/ *").replace("*/", "* /").split())
    lines = textwrap.wrap(text, width - len(indent) - 6) or [""]
    if len(lines) == 1:
        return [f"{indent}/* {lines[0]} */"]
    return [f"{indent}/*"] + [f"{indent} * {line}" for line in lines] + [f"{indent} */"]


def group_width(g: ConstantGroup) -> int:
    """Bit width of the fields a flags/enum group is used in: fields tagged with the group, or citing its prefix.

    The feature mask is a plain u64 in the spec (not a FlagsField, so unknown offered bits decode), so its
    fields are found by the ``PVMSI_F_*`` reference in their documentation.  Defaults to 32.
    """
    cite = g.c_prefix + "*"
    widths = [
        leaf.size * 8
        for lay in all_layouts()
        for leaf in lay.leaves()
        if g.key in (leaf.field.enum, leaf.field.flags) or cite in leaf.field.doc
    ]
    return max(widths, default=32)


def literal(g: ConstantGroup, value: int) -> str:
    """The macro body of one constant: signed enums in parentheses, flags unsigned sized to their field."""
    if g.kind == "flags":
        digits = f"{value:#x}"
        return f"PVMSI_U64_C({digits})" if group_width(g) > 32 else f"{digits}U"
    if value < 0:
        return f"({value})"
    if g.kind == "enum" and g.key == "function":
        return f"{value:#04x}"
    return str(value)


def version_literal() -> str:
    return f"{(VERSION_MAJOR << 16) | VERSION_MINOR:#010x}"


def groups(skip: tuple[str, ...] = ()) -> list[ConstantGroup]:
    return [g for g in CONSTANT_GROUPS if g.key not in skip]
