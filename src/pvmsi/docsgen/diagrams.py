"""Static HTML diagrams (no JavaScript): byte layouts of formats and bit layouts of flags and registers."""

from __future__ import annotations

from dataclasses import dataclass

from pvmsi.spec.layout import FormatLayout

from .markup import attr, bit_range

#: Bytes per row of a byte-layout diagram.
ROW_BYTES = 8


@dataclass(frozen=True)
class ByteCell:
    """One cell of a byte-layout row: ``length`` bytes of the field ``label`` starting at ``offset``."""

    offset: int
    length: int
    label: str
    title: str
    reserved: bool


def byte_rows(lay: FormatLayout) -> list[list[ByteCell]]:
    """The cells of ``lay``'s byte diagram, rows of :data:`ROW_BYTES` bytes, leaves split at row boundaries."""
    rows: list[list[ByteCell]] = [[] for _ in range((lay.size + ROW_BYTES - 1) // ROW_BYTES)]
    covered = 0
    for leaf in lay.leaves():
        if leaf.offset != covered:
            raise ValueError(f"{lay.name}: gap or overlap at byte {covered}")
        sign = "s" if leaf.field.signed else "u"
        typ = f"bytes[{leaf.size}]" if leaf.field.type == "bytes" else f"{sign}{leaf.size * 8}"
        title = f"{leaf.path}: bytes {leaf.offset}-{leaf.offset + leaf.size - 1}, {typ}"
        if leaf.field.reserved:
            title += ", reserved, must be zero"
        pos, end = leaf.offset, leaf.offset + leaf.size
        while pos < end:
            row_end = (pos // ROW_BYTES + 1) * ROW_BYTES
            n = min(end, row_end) - pos
            label = leaf.path if pos == leaf.offset else f"{leaf.path} (cont.)"
            rows[pos // ROW_BYTES].append(ByteCell(pos, n, label, title, leaf.field.reserved))
            pos += n
        covered = end
    if covered != lay.size:
        raise ValueError(f"{lay.name}: fields cover {covered} of {lay.size} bytes")
    return rows


def byte_diagram(lay: FormatLayout) -> str:
    """An HTML table drawing ``lay`` as rows of 8 bytes, byte offset increasing left to right."""
    width = min(ROW_BYTES, lay.size)
    head = "".join(f"<th>+{i}</th>" for i in range(width))
    lines = [
        f'<table class="pvmsi-bytes" id="layout-{attr(lay.name)}" aria-label="byte layout of {attr(lay.c_name)}">',
        f"<thead><tr><th>offset</th>{head}</tr></thead>",
        "<tbody>",
    ]
    for i, row in enumerate(byte_rows(lay)):
        cells = []
        for c in row:
            cls = "pvmsi-field pvmsi-reserved" if c.reserved else "pvmsi-field"
            span = f' colspan="{c.length}"' if c.length > 1 else ""
            cells.append(f'<td class="{cls}"{span} title="{attr(c.title)}">{attr(c.label)}</td>')
        lines.append(f"<tr><th>0x{i * ROW_BYTES:02X}</th>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


@dataclass(frozen=True)
class BitField:
    """Bits ``hi``..``lo`` of a register or flag word, with a label and (optionally) a fixed value."""

    hi: int
    lo: int
    label: str
    value: str = ""
    reserved: bool = False


def fill_reserved(width: int, fields: list[BitField], label: str = "reserved, must be zero") -> list[BitField]:
    """``fields`` plus reserved runs covering every undefined bit of a ``width``-bit word, most significant first."""
    used = [False] * width
    for f in fields:
        if not (0 <= f.lo <= f.hi < width):
            raise ValueError(f"bit field {f.label} ({f.hi}:{f.lo}) outside a {width}-bit word")
        for b in range(f.lo, f.hi + 1):
            if used[b]:
                raise ValueError(f"bit {b} defined twice")
            used[b] = True
    out = list(fields)
    b = width - 1
    while b >= 0:
        if used[b]:
            b -= 1
            continue
        hi = b
        while b >= 0 and not used[b]:
            b -= 1
        out.append(BitField(hi, b + 1, label, "0", reserved=True))
    return sorted(out, key=lambda f: -f.hi)


def bit_diagram(width: int, fields: list[BitField], caption: str) -> str:
    """An HTML table of a ``width``-bit word: bit ranges over field names (and values), MSB on the left."""
    cells = fill_reserved(width, fields)
    with_values = any(f.value and not f.reserved for f in cells)
    ranges = "".join(f"<th>{bit_range(f.hi, f.lo)}</th>" for f in cells)
    names = "".join(
        f'<td class="{"pvmsi-field pvmsi-reserved" if f.reserved else "pvmsi-field"}">{attr(f.label)}</td>'
        for f in cells
    )
    lines = [
        f'<table class="pvmsi-bits" aria-label="{attr(caption)}">',
        f"<thead><tr><th>bit</th>{ranges}</tr></thead>",
        "<tbody>",
        f"<tr><th>field</th>{names}</tr>",
    ]
    if with_values:
        values = "".join(f"<td>{attr(f.value)}</td>" for f in cells)
        lines.append(f"<tr><th>value</th>{values}</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)
