"""``pvmsi gen c-check``: a C11 file that ``_Static_assert``s the header's layout against the spec.

Every struct size, every member offset and size (nested members by their dotted path), the signedness of
scalar members (stdint style; uapi's ``__le*`` are unsigned by design) and every per-architecture function id.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.callconv import CONVENTIONS
from ..spec.calls import CALLS
from ..spec.layout import FormatLayout, all_layouts
from .c_asm import ARCH_PREFIX
from .c_common import Style, banner, comment, squeeze
from .c_header import batch_block_structs


@dataclass(frozen=True)
class Member:
    """A C member designator (``device.flags``, ``x[2]``) with its spec offset and size."""

    path: str
    offset: int
    size: int
    signed: bool
    scalar: bool


def members(lay: FormatLayout) -> list[Member]:
    """Every member of ``lay``, nested structs and array elements included, depth first."""
    out: list[Member] = []

    def walk(sub: FormatLayout, prefix: str, base: int) -> None:
        for f in sub.fields:
            path, off = prefix + f.c_name, base + f.offset
            out.append(Member(path, off, f.size, f.signed, f.nested is None and f.count == 1))
            if f.count == 1:
                if f.nested is not None:
                    walk(f.nested, path + ".", off)
                continue
            for i in range(f.count):
                item, ioff = f"{path}[{i}]", off + i * f.elem_size
                out.append(Member(item, ioff, f.elem_size, f.signed, f.nested is None))
                if f.nested is not None:
                    walk(f.nested, item + ".", ioff)

    walk(lay, "", 0)
    return out


def _assert(cond: str, msg: str) -> str:
    return f'_Static_assert({cond}, "{msg}");'


def c_check(style: Style = "stdint", header: str = "pvmsi.h") -> str:
    """The check file for ``header`` of the given style, as text."""
    lines = banner(
        style,
        f"pvmsi_check.c: compile-time layout checks of {header} ({style} style); compile as C11.",
        f"pvmsi gen c-check --style {style}",
    )
    lines += ["", "#include <stddef.h>", f'#include "{header}"', ""]
    lines.append(_assert("PVMSI_VERSION == ((PVMSI_VERSION_MAJOR << 16) | PVMSI_VERSION_MINOR)", "version"))
    for c in CALLS:
        for cc in CONVENTIONS:
            p = ARCH_PREFIX[cc.arch]
            name = f"PVMSI_{p}_FN_{c.name}"
            lines.append(_assert(f"{name} == PVMSI_{p}_FN({c.c_name})", name))
    for lay in all_layouts():
        t = f"struct {lay.c_name}"
        lines += ["", *comment(f"{t}: {lay.size} bytes")]
        lines.append(_assert(f"sizeof({t}) == {lay.size}", f"sizeof {t}"))
        for m in members(lay):
            lines.append(_assert(f"offsetof({t}, {m.path}) == {m.offset}", f"offsetof {t}.{m.path}"))
            lines.append(_assert(f"sizeof((({t} *)0)->{m.path}) == {m.size}", f"sizeof {t}.{m.path}"))
            if style == "stdint" and m.scalar:
                sign, what = ("<", "signed") if m.signed else (">", "unsigned")
                lines.append(_assert(f"(__typeof__((({t} *)0)->{m.path}))-1 {sign} 0", f"{what} {t}.{m.path}"))
    by_name = {lay.name: lay for lay in all_layouts()}
    for c in CALLS:
        for name, head, _entry, member in batch_block_structs(c):
            t, size = f"struct {name}", by_name[head].size
            lines += ["", *comment(f"{t}: the batch header, then its entries (a flexible array member)")]
            lines.append(_assert(f"sizeof({t}) == {size}", f"sizeof {t}"))
            lines.append(_assert(f"offsetof({t}, {member}) == {size}", f"offsetof {t}.{member}"))
    return squeeze(lines)
