"""Requirement lists per chapter, the requirement index and the conformance clauses, from the registry."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS, Level, Requirement, Role, by_section

from .context import Ctx, DocsError
from .markup import escape_plain, md_text, table

MANDATORY: frozenset[Level] = frozenset({Level.MUST, Level.MUST_NOT})
RECOMMENDED: frozenset[Level] = frozenset({Level.SHOULD, Level.SHOULD_NOT})
OPTIONAL: frozenset[Level] = frozenset({Level.MAY})

ROLE_TITLES: dict[Role, str] = {Role.GUEST: "guest", Role.HYPERVISOR: "hypervisor", Role.BOTH: "both"}


def section_key(key: str) -> str:
    if key not in SECTIONS:
        raise DocsError(f"unknown requirement section {key!r} (known: {', '.join(SECTIONS)})")
    return key


def role(name: str) -> Role:
    for r in Role:
        if r.value == name and r is not Role.BOTH:
            return r
    raise DocsError(f"unknown conformance role {name!r} (known: guest, hypervisor)")


def applies_to(req: Requirement, target: Role) -> bool:
    """Whether ``req`` binds an implementation of role ``target`` (``both`` binds every role)."""
    return req.role is target or req.role is Role.BOTH


def _text(ctx: Ctx, req: Requirement) -> str:
    return md_text(req.text, ctx.requirement_link)


def requirement_item(ctx: Ctx, req: Requirement) -> str:
    """One list item, anchored at the lowercase id: id, level, role, text."""
    return (
        f"- [**{req.id}**](#{req.anchor}) · **{req.level.value}** · {ROLE_TITLES[req.role]}: {_text(ctx, req)}\n"
        f"  {{: #{req.anchor} .pvmsi-req }}"
    )


def render_requirements(ctx: Ctx, key: str) -> str:
    """The requirements of section ``key``, in registry order."""
    reqs = by_section(section_key(key))
    if not reqs:
        return '!!! note "No requirements"\n\n    The registry holds no requirement for this section.'
    return "\n".join(requirement_item(ctx, r) for r in reqs)


def render_requirement_index(ctx: Ctx) -> str:
    """Every requirement, sorted by id, each id an anchor; a summary of counts first."""
    if not REQUIREMENTS:
        return '!!! warning "Empty registry"\n\n    The requirement registry is empty.'
    counts = []
    for key, (title, _page) in SECTIONS.items():
        reqs = by_section(key)
        row = [f"[{escape_plain(title)}]({ctx.section_link(key)})"]
        row += [str(sum(1 for r in reqs if r.level is lv)) for lv in Level]
        row.append(str(len(reqs)))
        counts.append(row)
    total = ["**all**", *[str(sum(1 for r in REQUIREMENTS if r.level is lv)) for lv in Level], str(len(REQUIREMENTS))]
    counts.append(total)
    summary = table(["Section", *[lv.value for lv in Level], "Total"], counts, ["l"] + ["r"] * (len(Level) + 1))
    rows = []
    for r in sorted(REQUIREMENTS, key=lambda r: r.id):
        title = SECTIONS[r.section][0]
        link = ctx.requirement_link(r.id)
        rows.append(
            [
                f"[{r.id}](#{r.anchor}){{: #{r.anchor} }}",
                r.level.value,
                ROLE_TITLES[r.role],
                f"[{escape_plain(title)}]({link})",
                _text(ctx, r),
            ]
        )
    return summary + "\n\n" + table(["Id", "Level", "Role", "Section", "Requirement"], rows)


def _id_links(ctx: Ctx, reqs: Iterable[Requirement]) -> str:
    links = []
    for r in reqs:
        target = ctx.requirement_link(r.id)
        assert target is not None
        links.append(f"[{r.id}]({target})")
    return ", ".join(links) or "-"


def clauses(target: Role) -> dict[str, dict[str, list[Requirement]]]:
    """Per section: the mandatory, recommended and optional requirements binding role ``target``."""
    out: dict[str, dict[str, list[Requirement]]] = {}
    for key in SECTIONS:
        reqs = [r for r in by_section(key) if applies_to(r, target)]
        if not reqs:
            continue
        out[key] = {
            "mandatory": [r for r in reqs if r.level in MANDATORY],
            "recommended": [r for r in reqs if r.level in RECOMMENDED],
            "optional": [r for r in reqs if r.level in OPTIONAL],
        }
    return out


def render_conformance(ctx: Ctx, role_name: str) -> str:
    """The clauses an implementation of ``role_name`` must meet, grouped by section."""
    target = role(role_name)
    groups = clauses(target)
    if not groups:
        return f'!!! warning "Empty registry"\n\n    No requirement binds the {target.value} yet.'
    rows = []
    n_mand = n_rec = n_opt = 0
    for key, g in groups.items():
        n_mand += len(g["mandatory"])
        n_rec += len(g["recommended"])
        n_opt += len(g["optional"])
        rows.append(
            [
                f"[{escape_plain(SECTIONS[key][0])}]({ctx.section_link(key)})",
                _id_links(ctx, g["mandatory"]),
                _id_links(ctx, g["recommended"]),
                _id_links(ctx, g["optional"]),
            ]
        )
    intro = f"A conforming {target.value} meets all {n_mand} mandatory requirements (MUST, MUST NOT) below"
    if n_rec:
        intro += f"; it follows the {n_rec} recommendations (SHOULD, SHOULD NOT) unless it documents why not"
    if n_opt:
        intro += f"; the {n_opt} permissions (MAY) are behaviour it may choose and the other role has to tolerate"
    intro += "."
    return intro + "\n\n" + table(["Section", "MUST / MUST NOT", "SHOULD / SHOULD NOT", "MAY"], rows)


def naming(*names: str) -> list[Requirement]:
    """The requirements whose text names any of ``names`` (a call such as ``MSG_ALLOC``, a format such as
    ``deactivate_entry``) as a whole word, sorted by id."""
    words = [re.compile(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])") for n in names]
    return sorted((r for r in REQUIREMENTS if any(w.search(r.text) for w in words)), key=lambda r: r.id)


def render_governing(ctx: Ctx, *names: str) -> str:
    """The requirements that name a call or one of its formats (``names``), linked to their chapters, then the
    rules every call follows."""
    every = ", ".join(
        f"[{escape_plain(SECTIONS[k][0].lower())}]({ctx.section_link(k)})" for k in ("calling", "memory", "status")
    )
    named = naming(*names)
    return f"{_id_links(ctx, named) if named else 'none by name'}; and the rules of every call ({every})"
