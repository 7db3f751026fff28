"""Small, pure helpers that write Markdown and HTML safely (escaping, tables, links, bit-range labels)."""

from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence

#: A requirement id as it may appear in running text (``HV-ALLOC-003``).
REQUIREMENT_ID = re.compile(r"\b(?:HV|GUEST|GEN)-[A-Z]+-\d{3}\b")

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}|#!])")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def escape_plain(text: str) -> str:
    """``text`` as literal Markdown: no emphasis, links, attribute lists or raw HTML can arise from it."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def md_text(text: str, linker: Callable[[str], str | None] | None = None) -> str:
    """Spec prose as Markdown: backtick code spans are kept, everything else is literal text.

    ``linker`` maps a requirement id found in the text to a link target (or ``None`` to leave it as text).
    """
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_linked(text[pos : m.start()], linker))
        out.append(m.group(0).replace("|", "\\|"))
        pos = m.end()
    out.append(_linked(text[pos:], linker))
    return "".join(out)


def _linked(text: str, linker: Callable[[str], str | None] | None) -> str:
    if linker is None:
        return escape_plain(text)
    out: list[str] = []
    pos = 0
    for m in REQUIREMENT_ID.finditer(text):
        target = linker(m.group(0))
        if target is None:
            continue
        out.append(escape_plain(text[pos : m.start()]))
        out.append(f"[{m.group(0)}]({target})")
        pos = m.end()
    out.append(escape_plain(text[pos:]))
    return "".join(out)


def code(text: str) -> str:
    """An inline code span holding ``text`` (safe inside a table cell)."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A Markdown pipe table; cells must already be Markdown (use :func:`md_text` / :func:`escape_plain`)."""
    spec = align or ["l"] * len(header)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in spec) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells, header has {len(header)}")
        lines.append("| " + " | ".join(c.replace("\n", " ") for c in row) + " |")
    return "\n".join(lines)


def relative_link(target_page: str, anchor: str | None, current_page: str) -> str:
    """A Markdown link target from ``current_page`` to ``target_page`` (docs-relative ``.md`` paths)."""
    frag = f"#{anchor}" if anchor else ""
    if target_page == current_page:
        return frag or posixpath.basename(target_page)
    rel = posixpath.relpath(target_page, posixpath.dirname(current_page) or ".")
    return rel + frag


def attr(value: str) -> str:
    """``value`` escaped for an HTML attribute."""
    return html.escape(value, quote=True)


def hx(value: int, digits: int = 0) -> str:
    """``value`` in hexadecimal (upper-case digits, ``0x`` prefix), zero-padded to ``digits``."""
    return f"0x{value:0{digits}X}"


def bit_range(hi: int, lo: int) -> str:
    """``"7"`` or ``"31:16"``."""
    return str(hi) if hi == lo else f"{hi}:{lo}"
