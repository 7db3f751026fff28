"""The placeholder language of the spec pages, the site index built from them, and page expansion.

A placeholder is ``{{pvmsi DIRECTIVE}}`` or ``{{pvmsi DIRECTIVE ARGUMENT}}``. Block placeholders (tables,
lists, diagrams) stand alone on their line; ``ref`` and ``version`` may sit inside a sentence. Anything that
starts like a placeholder but is not a known directive with a known argument is a :class:`DocsError`, and
so is a page set that leaves a format, a constant group or a requirement section without a home.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pvmsi.spec.calls import CALLS
from pvmsi.spec.constants import CONSTANT_GROUPS
from pvmsi.spec.fields import AREAS
from pvmsi.spec.layout import all_layouts
from pvmsi.spec.platforms import PLATFORM_KEYS
from pvmsi.spec.references import BY_KEY
from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS
from pvmsi.spec.states import MACHINES
from pvmsi.spec.version import VERSION_MAJOR, VERSION_MINOR

from . import (
    bench,
    calls,
    constants,
    devices,
    examples,
    formats,
    fuzz,
    platforms,
    references,
    requirements,
    traceability,
)
from .context import Ctx, DocsError, SiteIndex

_OPEN = re.compile(r"\{\{\s*pvmsi\b")
_PLACEHOLDER = re.compile(r"\{\{\s*pvmsi\s+([a-z][a-z0-9-]*)(?:\s+([A-Za-z0-9_.-]+))?\s*\}\}")

Handler = Callable[[Ctx, str | None], str]


@dataclass(frozen=True)
class Directive:
    """One directive: whether it takes an argument, whether it is inline, and its renderer."""

    arg: str  # "none", "required" or "optional"
    inline: bool
    render: Handler


def _req(arg: str | None) -> str:
    assert arg is not None
    return arg


def _ref(ctx: Ctx, arg: str | None) -> str:
    rid = _req(arg)
    link = ctx.requirement_link(rid)
    if link is None:
        raise DocsError(f"{ctx.page}: unknown requirement id {rid!r}")
    return f"[{rid}]({link})"


DIRECTIVES: dict[str, Directive] = {
    "format": Directive("required", False, lambda c, a: formats.render_format(c, _req(a))),
    "formats": Directive(
        "optional",
        False,
        lambda c, a: formats.render_all_formats(c) if a is None else formats.render_area_formats(c, a),
    ),
    "format-summary": Directive("none", False, lambda c, a: formats.format_summary(c)),
    "constants": Directive(
        "optional",
        False,
        lambda c, a: constants.render_all_constants(c) if a is None else constants.render_constants(c, a),
    ),
    "register": Directive("required", False, lambda c, a: constants.render_register(_req(a))),
    "harness-values": Directive("none", False, lambda c, a: constants.render_harness_values()),
    "device-model": Directive("required", False, lambda c, a: devices.render_device_model(_req(a))),
    "call": Directive("required", False, lambda c, a: calls.render_call(c, _req(a))),
    "calls": Directive("none", False, lambda c, a: calls.render_calls_summary(c)),
    "function-ids": Directive("none", False, lambda c, a: calls.render_function_ids(c)),
    "callconv": Directive(
        "optional",
        False,
        lambda c, a: calls.render_callconv_table() if a is None else calls.render_callconv_arch(a),
    ),
    "discovery": Directive("required", False, lambda c, a: calls.render_discovery(_req(a))),
    "sbiret": Directive("none", False, lambda c, a: calls.render_sbiret()),
    "x86-paths": Directive("none", False, lambda c, a: calls.render_x86_paths()),
    "state-machine": Directive("required", False, lambda c, a: calls.render_state_machine(c, _req(a))),
    "requirements": Directive("required", False, lambda c, a: requirements.render_requirements(c, _req(a))),
    "requirement-index": Directive("none", False, lambda c, a: requirements.render_requirement_index(c)),
    "conformance-clauses": Directive("required", False, lambda c, a: requirements.render_conformance(c, _req(a))),
    "batch-example": Directive("none", False, lambda c, a: examples.render_batch_example(c)),
    "batch-limits": Directive("none", False, lambda c, a: examples.render_batch_limits(c)),
    "traceability": Directive("none", False, lambda c, a: traceability.render_traceability(c)),
    "report-schema": Directive("none", False, lambda c, a: traceability.render_report_schema(c)),
    "bench": Directive("required", False, lambda c, a: bench.render_bench(_req(a), c.site.docs_dir / bench.BENCH_JSON)),
    "fuzz": Directive("none", False, lambda c, a: fuzz.render_fuzz(c.site.docs_dir / fuzz.FUZZ_JSON)),
    "fuzz-faults": Directive("none", False, lambda c, a: fuzz.render_fuzz_faults(c.site.docs_dir / fuzz.FAULTS_JSON)),
    "platform": Directive("required", False, lambda c, a: platforms.render_platform(_req(a))),
    "platforms": Directive("none", False, lambda c, a: platforms.render_platform_summary()),
    "arch-targets": Directive("none", False, lambda c, a: platforms.render_arch_targets()),
    "ref": Directive("required", True, _ref),
    "references": Directive("none", False, lambda c, a: references.render_references(c)),
    "cite": Directive("required", True, lambda c, a: references.render_cite(c, _req(a))),
    "version": Directive("none", True, lambda c, a: f"{VERSION_MAJOR}.{VERSION_MINOR}"),
}


@dataclass(frozen=True)
class Placeholder:
    """One placeholder found in a page."""

    directive: str
    arg: str | None
    start: int
    end: int
    line: int
    text: str


def find_placeholders(markdown: str, page: str) -> list[Placeholder]:
    """Every placeholder of ``markdown``, validated for syntax, directive, arity and position."""
    found: list[Placeholder] = []
    for m in _OPEN.finditer(markdown):
        line = markdown.count("\n", 0, m.start()) + 1
        full = _PLACEHOLDER.match(markdown, m.start())
        if full is None:
            snippet = markdown[m.start() : m.start() + 60].split("\n", 1)[0]
            raise DocsError(f"{page}:{line}: malformed placeholder {snippet!r}")
        name, arg = full.group(1), full.group(2)
        d = DIRECTIVES.get(name)
        if d is None:
            raise DocsError(f"{page}:{line}: unknown placeholder directive {name!r} (known: {', '.join(DIRECTIVES)})")
        if d.arg == "none" and arg is not None:
            raise DocsError(f"{page}:{line}: {name} takes no argument, got {arg!r}")
        if d.arg == "required" and arg is None:
            raise DocsError(f"{page}:{line}: {name} needs an argument")
        if not d.inline:
            bol = markdown.rfind("\n", 0, m.start()) + 1
            eol = markdown.find("\n", full.end())
            eol = len(markdown) if eol < 0 else eol
            if markdown[bol : m.start()].strip() or markdown[full.end() : eol].strip():
                raise DocsError(f"{page}:{line}: {full.group(0)} must stand alone on its line")
        found.append(Placeholder(name, arg, m.start(), full.end(), line, full.group(0)))
    return found


def _check_name(p: Placeholder, page: str) -> None:
    """Fail early (while scanning) on an unknown argument."""
    known: dict[str, list[str]] = {
        "format": [lay.name for lay in all_layouts()],
        "formats": list(AREAS),
        "constants": [g.key for g in CONSTANT_GROUPS],
        "register": list(constants.REGISTERS),
        "call": [c.name for c in CALLS],
        "callconv": list(calls.ARCH_TITLES),
        "discovery": list(calls.ARCH_TITLES),
        "state-machine": [m.name for m in MACHINES],
        "requirements": list(SECTIONS),
        "conformance-clauses": ["guest", "hypervisor"],
        "ref": [r.id for r in REQUIREMENTS],
        "bench": list(bench.SECTIONS),
        "cite": list(BY_KEY),
        "platform": list(PLATFORM_KEYS),
    }
    if p.arg is not None and p.directive in known and p.arg not in known[p.directive]:
        raise DocsError(f"{page}:{p.line}: unknown name {p.arg!r} in {p.text} (known: {', '.join(known[p.directive])})")


def scan(pages: Sequence[tuple[str, str]], *, docs_dir: Path, complete: bool = True) -> SiteIndex:
    """Validate every placeholder of ``pages`` (``(path, markdown)`` in navigation order) and find each object's home.

    An object's home is the first page that places it by name (``format X``, ``constants X``, ``call X``,
    ``state-machine X``); failing that, for a format the page placing its area (``formats AREA``); failing
    that, the page that places all of its kind (``formats``, ``constants``).
    With ``complete``, every format, constant group and call must have a home, every requirement section
    must be placed exactly once, on the page ``SECTIONS`` names, and the requirement index must exist.
    """
    fmt: dict[str, str] = {}
    const: dict[str, str] = {}
    call: dict[str, str] = {}
    mach: dict[str, str] = {}
    all_formats: str | None = None
    area_formats: dict[str, str] = {}
    all_constants: str | None = None
    sections: dict[str, list[str]] = {}
    index: str | None = None
    refs: str | None = None
    for page, text in pages:
        for p in find_placeholders(text, page):
            _check_name(p, page)
            if p.directive == "format" and p.arg:
                fmt.setdefault(p.arg, page)
            elif p.directive == "formats":
                if p.arg:
                    area_formats.setdefault(p.arg, page)
                else:
                    all_formats = all_formats or page
            elif p.directive == "constants":
                if p.arg:
                    const.setdefault(p.arg, page)
                else:
                    all_constants = all_constants or page
            elif p.directive == "call" and p.arg:
                call.setdefault(p.arg, page)
            elif p.directive == "state-machine" and p.arg:
                mach.setdefault(p.arg, page)
            elif p.directive == "requirements" and p.arg:
                sections.setdefault(p.arg, []).append(page)
            elif p.directive == "requirement-index":
                index = index or page
            elif p.directive == "references":
                refs = refs or page
    for lay in all_layouts():
        home = area_formats.get(lay.area, all_formats)
        if lay.name not in fmt and home is not None:
            fmt[lay.name] = home
    for g in CONSTANT_GROUPS:
        if g.key not in const and all_constants is not None:
            const[g.key] = all_constants
    if complete:
        _check_complete(fmt, const, call, sections, index, refs)
    return SiteIndex(fmt, const, call, mach, index, refs, docs_dir)


def _check_complete(
    fmt: dict[str, str],
    const: dict[str, str],
    call: dict[str, str],
    sections: dict[str, list[str]],
    index: str | None,
    refs: str | None,
) -> None:
    missing = [f"format {lay.name}" for lay in all_layouts() if lay.name not in fmt]
    missing += [f"constant group {g.key}" for g in CONSTANT_GROUPS if g.key not in const]
    missing += [f"call {c.name}" for c in CALLS if c.name not in call]
    missing += [f"requirement section {k}" for k in SECTIONS if k not in sections]
    if index is None:
        missing.append("the requirement index")
    if refs is None:
        missing.append("the reference list")
    if missing:
        raise DocsError("not placed on any page: " + ", ".join(missing))
    for key, pages in sections.items():
        want = SECTIONS[key][1]
        if pages != [want]:
            raise DocsError(f"requirement section {key!r} must be placed once, on {want}; found on {pages}")


def expand(markdown: str, page: str, site: SiteIndex) -> str:
    """``markdown`` with every placeholder replaced by its rendering for ``page``."""
    ctx = Ctx(site, page)
    out: list[str] = []
    pos = 0
    for p in find_placeholders(markdown, page):
        _check_name(p, page)
        out.append(markdown[pos : p.start])
        rendered = DIRECTIVES[p.directive].render(ctx, p.arg)
        indent = markdown[markdown.rfind("\n", 0, p.start) + 1 : p.start]
        if indent and not DIRECTIVES[p.directive].inline:
            # A block placeholder inside an admonition or list: keep the rendering inside it.
            rendered = "\n".join((indent + ln if ln else ln) if i else ln for i, ln in enumerate(rendered.split("\n")))
        out.append(rendered)
        pos = p.end
    out.append(markdown[pos:])
    return "".join(out)
