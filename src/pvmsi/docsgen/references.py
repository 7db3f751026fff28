"""The references page and inline citations, rendered from :mod:`pvmsi.spec.references` (spec "References")."""

from __future__ import annotations

from pvmsi.spec.references import BY_KEY, REFERENCES, Kind

from .context import Ctx, DocsError
from .markup import escape_plain, table

KIND_TITLES: dict[Kind, str] = {"normative": "Normative references", "informative": "Informative references"}


def reference_anchor(key: str) -> str:
    return f"ref-{key}"


def render_references(ctx: Ctx) -> str:
    """Both lists: each reference anchored at ``ref-KEY``, with where to get it and what pvmsi takes from it."""
    parts: list[str] = []
    for kind, title in KIND_TITLES.items():
        rows = [
            [
                f"[{escape_plain(r.key)}](#{reference_anchor(r.key)}){{: #{reference_anchor(r.key)} }}",
                f"[{escape_plain(r.title)}]({r.url}), {escape_plain(r.publisher)}, {escape_plain(r.document)}",
                escape_plain(r.used_for),
            ]
            for r in REFERENCES
            if r.kind == kind
        ]
        parts.append(f"### {title}\n\n" + table(["Key", "Document", "What pvmsi takes from it"], rows))
    return "\n\n".join(parts)


def render_cite(ctx: Ctx, key: str) -> str:
    """An inline citation: the document's short title, linked to its entry on the references page."""
    ref = BY_KEY.get(key)
    if ref is None:
        raise DocsError(f"{ctx.page}: unknown reference {key!r} (known: {', '.join(BY_KEY)})")
    return f"[{escape_plain(ref.title)}]({ctx.references_link(key)})"
