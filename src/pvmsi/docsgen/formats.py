"""Wire-format tables and byte diagrams, generated from :mod:`pvmsi.spec.layout`."""

from __future__ import annotations

from dataclasses import dataclass

from pvmsi.spec.constants import CONSTANT_GROUPS
from pvmsi.spec.fields import AREAS
from pvmsi.spec.layout import FieldLayout, FormatLayout, all_layouts

from .context import Ctx, DocsError, format_anchor
from .diagrams import byte_diagram
from .markup import code, md_text, table

RESERVED_TEXT = "Reserved, must be zero."

AREA_TITLES: dict[str, str] = {
    "negotiation": "Version and feature negotiation",
    "device": "Device control",
    "batch": "Batch headers",
    "messages": "Message entries and results",
    "harness": "Conformance harness",
}


def layout(name: str) -> FormatLayout:
    """The layout of format ``name``; an unknown name is a :class:`DocsError`."""
    for lay in all_layouts():
        if lay.name == name:
            return lay
    raise DocsError(f"unknown format {name!r} (known: {', '.join(sorted(lay.name for lay in all_layouts()))})")


def type_name(f: FieldLayout) -> str:
    """The field's wire type as the spec writes it: ``u16``, ``s32``, ``u32[4]``, ``bytes[16]`` or a format."""
    if f.type == "bytes":
        return f"bytes[{f.size}]"
    base = f.type
    if f.nested is None and f.signed:
        base = "s" + base[1:]
    return base if f.count == 1 else f"{base}[{f.count}]"


def field_group(f: FieldLayout) -> str | None:
    """The constant group whose values or bits a field holds.

    The field's own ``enum``/``flags``/``values`` tag first; failing that, a doc naming the group's C prefix
    with a wildcard (``PVMSI_F_*``).
    """
    if f.enum or f.flags or f.values:
        return f.enum or f.flags or f.values
    for g in CONSTANT_GROUPS:
        if g.kind != "value" and f"{g.c_prefix}*" in f.doc:
            return g.key
    return None


@dataclass(frozen=True)
class FieldRow:
    """One row of a format table (plain values, before Markdown)."""

    offset: int
    size: int
    type: str
    name: str
    field: FieldLayout
    nested_leaf: bool


def field_rows(lay: FormatLayout) -> list[FieldRow]:
    """A row per top-level field, each nested format's fields following it with dotted names."""
    rows: list[FieldRow] = []
    for f in lay.fields:
        rows.append(FieldRow(f.offset, f.size, type_name(f), f.name, f, False))
        if f.nested is not None:
            for i in range(f.count):
                prefix = f"{f.name}[{i}]." if f.count > 1 else f"{f.name}."
                base = f.offset + i * f.elem_size
                for leaf in f.nested.leaves():
                    typ = type_name(leaf.field)
                    rows.append(FieldRow(base + leaf.offset, leaf.size, typ, prefix + leaf.path, leaf.field, True))
    return rows


def _meaning(ctx: Ctx, f: FieldLayout) -> str:
    if f.reserved:
        return RESERVED_TEXT
    text = md_text(f.doc)
    key = field_group(f)
    if key is not None:
        word = "Flags" if f.flags or (not f.enum and _is_flags(key)) else "Values"
        text += f" {word}: [{key}]({ctx.constants_link(key)})."
    if f.nested is not None:
        text += f" See [{f.nested.c_name}]({ctx.format_link(f.nested.name)})."
    return text


def _is_flags(key: str) -> bool:
    return any(g.key == key and g.kind == "flags" for g in CONSTANT_GROUPS)


def format_table(ctx: Ctx, lay: FormatLayout) -> str:
    """The Markdown table of ``lay``: offset, size, type, field, meaning."""
    rows = []
    for r in field_rows(lay):
        typ = code(r.type)
        if r.field.nested is not None and not r.nested_leaf:
            typ = f"[{code(r.type)}]({ctx.format_link(r.field.type)})"
        name = code(r.name)
        meaning = _meaning(ctx, r.field)
        if r.nested_leaf:
            name = f"&nbsp;&nbsp;{name}"
        rows.append([str(r.offset), str(r.size), typ, name, meaning])
    return table(["Offset", "Size", "Type", "Field", "Meaning"], rows, ["r", "r", "l", "l", "l"])


def render_format(ctx: Ctx, name: str) -> str:
    """One format: a summary line (the link anchor), its field table and its byte diagram."""
    lay = layout(name)
    reserved = sum(1 for f in lay.fields if f.reserved)
    summary = (
        f"**{code(lay.c_name)}**: {lay.size} bytes, alignment {lay.alignment}, "
        f"{len(lay.fields)} fields ({reserved} reserved). {md_text(lay.doc)}"
    )
    return "\n".join(
        [
            f'<div class="pvmsi-format" id="{format_anchor(lay.name)}" markdown="1">',
            "",
            summary,
            "",
            format_table(ctx, lay),
            "",
            byte_diagram(lay),
            "",
            "</div>",
        ]
    )


def render_area_formats(ctx: Ctx, area: str) -> str:
    """Every format of one area, a level-2 heading per format."""
    if area not in AREAS:
        raise DocsError(f"unknown format area {area!r} (known: {', '.join(AREAS)})")
    return "\n\n".join(
        f"## {code(lay.c_name)}\n\n{render_format(ctx, lay.name)}" for lay in all_layouts() if lay.area == area
    )


def render_all_formats(ctx: Ctx) -> str:
    """Every format, grouped by area: a level-2 heading per area, a level-3 heading per format."""
    parts: list[str] = []
    layouts = all_layouts()
    for area in AREAS:
        in_area = [lay for lay in layouts if lay.area == area]
        if not in_area:
            continue
        parts.append(f"## {AREA_TITLES.get(area, area.capitalize())}")
        for lay in in_area:
            parts.append(f"### {code(lay.c_name)}")
            parts.append(render_format(ctx, lay.name))
    return "\n\n".join(parts)


def format_summary(ctx: Ctx) -> str:
    """A table of every format: name, size, area, description."""
    rows = [
        [f"[{code(lay.c_name)}]({ctx.format_link(lay.name)})", str(lay.size), md_text(lay.doc)] for lay in all_layouts()
    ]
    return table(["Format", "Size", "Description"], rows, ["l", "r", "l"])
