"""The reference list (spec/references.py): one entry per document, rendered on the site, cited by key, dumped."""

from __future__ import annotations

import re

import pytest
from paths import DOCS, ROOT

from pvmsi.docsgen import DocsError, expand, scan
from pvmsi.docsgen.context import Ctx, SiteIndex
from pvmsi.docsgen.references import render_cite, render_references
from pvmsi.spec.dump import spec_dump
from pvmsi.spec.references import BY_KEY, REFERENCES, Reference


def test_keys_are_unique_and_anchor_safe() -> None:
    keys = [r.key for r in REFERENCES]
    assert len(keys) == len(set(keys)) == len(BY_KEY)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", k) for k in keys)


@pytest.mark.parametrize("ref", REFERENCES, ids=lambda r: r.key)
def test_every_reference_says_what_it_is_and_where_to_get_it(ref: Reference) -> None:
    assert all((ref.title, ref.publisher, ref.document, ref.used_for))
    assert ref.url.startswith("https://")
    assert ref.kind in ("normative", "informative")


def test_both_kinds_are_listed_with_an_anchor_per_reference() -> None:
    md = render_references(Ctx(SiteIndex(references_home="references.md"), "references.md"))
    assert md.index("### Normative references") < md.index("### Informative references")
    for ref in REFERENCES:
        assert f"{{: #ref-{ref.key} }}" in md
        assert ref.url in md


def test_a_citation_links_to_its_entry_from_another_page() -> None:
    ctx = Ctx(SiteIndex(references_home="references.md"), "calling-conventions.md")
    assert render_cite(ctx, "smccc") == "[Arm SMC Calling Convention](references.md#ref-smccc)"
    with pytest.raises(DocsError, match="unknown reference 'nope'"):
        render_cite(ctx, "nope")


def test_a_citation_without_a_reference_list_on_the_site_is_an_error() -> None:
    with pytest.raises(DocsError, match="reference list"):
        render_cite(Ctx(SiteIndex(), "calling-conventions.md"), "sbi")


def test_cite_is_an_inline_placeholder_and_unknown_keys_fail_at_scan() -> None:
    site = scan(
        [("references.md", "{{pvmsi references}}\n"), ("x.md", "See {{pvmsi cite vtd}}, chapter 5.\n")],
        docs_dir=ROOT / "docs",
        complete=False,
    )
    assert site.references_home == "references.md"
    assert "[Intel Virtualization Technology for Directed I/O" in expand("See {{pvmsi cite vtd}}.", "x.md", site)
    with pytest.raises(DocsError, match="unknown name 'nope'"):
        scan([("x.md", "See {{pvmsi cite nope}}.\n")], docs_dir=ROOT / "docs", complete=False)


def test_the_site_places_the_reference_list() -> None:
    assert "{{pvmsi references}}" in (DOCS / "references.md").read_text(encoding="utf-8")


def test_the_dump_carries_every_reference() -> None:
    dumped = spec_dump()["references"]
    assert [d["key"] for d in dumped] == [r.key for r in REFERENCES]
    assert {d["kind"] for d in dumped} == {"normative", "informative"}
