"""The spec site from either builder: ``pvmsi gen docs`` writes the expanded site, and MkDocs (through its hook)
and Zensical (from that folder) show the same pages: per page the same tables, row by row, the same diagrams,
the same anchors and the same requirement ids, and no placeholder left.

Reproduce the per-page comparison by hand with ``python tests/test_docs_builders.py`` (it builds both and prints
a table per page).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from paths import DOCS, ROOT
from sitebrowser import probe
from sitebuild import Node, article, build, build_zensical, gen_docs, need_zensical, page_html, table_rows

from pvmsi.docsgen.site import PythonName, load_config, page_order, render_site, source_files
from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS

#: A requirement's anchor (its id, lower case) as the requirement lists place it.
REQUIREMENT_ANCHOR = re.compile(r"^(?:hv|guest|gen)-[a-z]+-\d{3}$")


@dataclass(frozen=True)
class PageFacts:
    """What a reader relies on in one built page's content."""

    tables: list[list[list[str]]]
    diagrams: list[str]
    anchors: set[str]
    requirements: set[str]

    @classmethod
    def of(cls, content: Node) -> PageFacts:
        diagrams = [" ".join(n.text().split()) for n in content.iter() if "mermaid" in n.classes()]
        # The theme's own ids (Material's __skip, __toc, ...) are not the page's anchors.
        anchors = {n.attrs["id"] for n in content.iter() if "id" in n.attrs and not n.attrs["id"].startswith("__")}
        requirements = {a for a in anchors if REQUIREMENT_ANCHOR.match(a)}
        return cls([table_rows(t) for t in content.iter("table")], diagrams, anchors, requirements)


def pages() -> list[str]:
    return [f for f in source_files(DOCS) if f.endswith(".md")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pvmsi gen docs``'s folder: mkdocs.yml and docs/."""
    out = tmp_path_factory.mktemp("generated")
    proc = gen_docs(out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def zensical_site(generated: Path) -> Path:
    need_zensical()
    proc = build_zensical(generated / "mkdocs.yml")
    assert proc.returncode == 0, f"zensical build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return generated / "site"


def test_generated_pages_have_no_placeholder_and_equal_the_rendering(generated: Path) -> None:
    rendered = render_site(DOCS, None)
    assert sorted(rendered) == pages()
    for page, text in rendered.items():
        assert "{{pvmsi" not in text, page
        assert (generated / "docs" / page).read_text(encoding="utf-8") == text, page
    for other in (f for f in source_files(DOCS) if not f.endswith(".md")):
        assert (generated / "docs" / other).read_bytes() == (DOCS / other).read_bytes(), other


def test_the_hook_and_the_generated_folder_give_the_same_mkdocs_site(
    site: Path, generated: Path, tmp_path: Path
) -> None:
    """The hook is an adapter over the same rendering: MkDocs builds the written folder (no hook) to the same
    bytes, page for page."""
    dest = tmp_path / "from-generated"
    proc = build(dest, generated / "mkdocs.yml")
    assert proc.returncode == 0, f"mkdocs build --strict of the written folder failed:\n{proc.stderr}"
    for page in pages():
        assert page_html(dest, page).read_bytes() == page_html(site, page).read_bytes(), page


def test_zensical_leaves_no_placeholder(zensical_site: Path) -> None:
    built = sorted(zensical_site.rglob("*.html"))
    assert len(built) >= len(pages())
    for path in [*built, *zensical_site.rglob("*.json")]:
        assert "{{pvmsi" not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize("page", pages())
def test_both_builders_show_the_same_page(site: Path, zensical_site: Path, page: str) -> None:
    mk = PageFacts.of(article(page_html(site, page)))
    zs = PageFacts.of(article(page_html(zensical_site, page)))
    assert len(zs.tables) == len(mk.tables), "tables on the page"
    assert zs.tables == mk.tables, "table contents"
    assert zs.diagrams == mk.diagrams, "diagrams"
    assert zs.anchors == mk.anchors, (
        f"anchors only in MkDocs {mk.anchors - zs.anchors}, only in Zensical {zs.anchors - mk.anchors}"
    )
    assert zs.requirements == mk.requirements, "requirement ids"


def test_every_requirement_is_anchored_by_both_builders(site: Path, zensical_site: Path) -> None:
    for built in (site, zensical_site):
        by_page: dict[str, set[str]] = {}
        for page in {p for _, p in SECTIONS.values()}:
            by_page[page] = PageFacts.of(article(page_html(built, page))).requirements
        index = PageFacts.of(article(page_html(built, "requirements.md"))).requirements
        for r in REQUIREMENTS:
            assert r.id.lower() in by_page[SECTIONS[r.section][1]], (built, r.id)
            assert r.id.lower() in index, (built, r.id)


def test_zensical_site_keeps_search_dark_mode_and_the_stylesheet(zensical_site: Path) -> None:
    assert (zensical_site / "search.json").is_file() or (zensical_site / "search" / "search_index.json").is_file()
    html = page_html(zensical_site, "messages.md").read_text(encoding="utf-8")
    assert 'data-md-color-scheme="slate"' in html, "the dark palette toggle"
    assert "stylesheets/pvmsi.css" in html


#: The pages a reader saw broken: the widest tables (formats, messages, the requirement index) and every diagram.
BROWSER_PAGES = ["formats.md", "messages.md", "requirements.md", "negotiation.md", "discovery.md"]
BROWSER_PAGES += ["device-control.md", "lifecycle.md"]


@pytest.mark.parametrize("builder", ["mkdocs", "zensical"])
@pytest.mark.parametrize("page", BROWSER_PAGES)
def test_pages_render_offline_whole_in_chromium(
    request: pytest.FixtureRequest, tmp_path: Path, builder: str, page: str
) -> None:
    """In headless Chromium at 1400 px, offline: every diagram drawn by the Mermaid the site ships (none left
    as source), no identifier in a table split across lines, no table or cell clipped, no sideways scrolling."""
    built: Path = request.getfixturevalue("site" if builder == "mkdocs" else "zensical_site")
    seen = probe(page_html(built, page), tmp_path / "profile")
    source_diagrams = len(PageFacts.of(article(page_html(built, page))).diagrams)
    assert seen["diagrams"] == source_diagrams
    assert (seen["source"], seen["drawn"]) == (0, source_diagrams), "diagrams left as source"
    assert seen["split"] == [], "identifiers split across lines"
    assert seen["clipped"] == [], "content wider than its box"
    assert not seen["sideways"]


def test_the_shipped_mermaid_is_the_pinned_release() -> None:
    """docs/javascripts/mermaid.min.js is what docs_hooks/vendor_mermaid.py fetches and checks, and the site
    loads it."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs_hooks" / "vendor_mermaid.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "javascripts/mermaid.min.js" in load_config(ROOT / "mkdocs.yml")["extra_javascript"]


def test_page_order_is_the_navigation_then_the_rest() -> None:
    nav = [{"A": "b.md"}, {"Group": [{"C": "a.md"}, {"Out": "https://example.org/x.md"}, "b.md"]}]
    assert page_order(nav, ["c.md", "a.md", "b.md", "d/e.md"]) == ["b.md", "a.md", "c.md", "d/e.md"]
    assert page_order(None, ["b.md", "a.md"]) == ["a.md", "b.md"]


# --- pvmsi gen docs -----------------------------------------------------------------------------------------


def copy_project(tmp: Path) -> Path:
    """A copy of the site's sources (config and pages) to change; returns its config."""
    shutil.copytree(DOCS, tmp / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp / "mkdocs.yml")
    return tmp / "mkdocs.yml"


def test_written_config_is_the_source_without_the_hook(generated: Path) -> None:
    source = load_config(ROOT / "mkdocs.yml")
    written = load_config(generated / "mkdocs.yml")
    assert "hooks" in source
    assert "hooks" not in written
    assert (written["docs_dir"], written["site_dir"]) == ("docs", "site")
    assert {k: v for k, v in written.items() if k not in ("docs_dir", "site_dir")} == {
        k: v for k, v in source.items() if k != "hooks"
    }
    fences = [e for e in written["markdown_extensions"] if isinstance(e, dict) and "pymdownx.superfences" in e]
    fmt = fences[0]["pymdownx.superfences"]["custom_fences"][0]["format"]
    assert isinstance(fmt, PythonName)
    assert "!!python/name:pymdownx.superfences.fence_code_format" in (generated / "mkdocs.yml").read_text()


def test_gen_docs_replaces_the_folder_and_is_deterministic(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    out = tmp_path / "out"
    assert gen_docs(out, config).returncode == 0
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    (out / "docs" / "stale.md").write_text("left over\n")
    (tmp_path / "project" / "docs" / "changelog.md").write_text("# Changelog\n\nVersion {{pvmsi version}}.\n")
    proc = gen_docs(out, config)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "docs" / "stale.md").exists()
    assert (out / "docs" / "changelog.md").read_text() == "# Changelog\n\nVersion 1.0.\n"
    again = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert {k: v for k, v in again.items() if k.name != "changelog.md"} == {
        k: v for k, v in first.items() if k.name != "changelog.md"
    }


def test_gen_docs_fails_on_an_unknown_placeholder_naming_page_and_line(tmp_path: Path) -> None:
    config = copy_project(tmp_path / "project")
    page = tmp_path / "project" / "docs" / "changelog.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n{{pvmsi format no_such_format}}\n", encoding="utf-8")
    proc = gen_docs(tmp_path / "out", config)
    assert proc.returncode == 1
    assert "changelog.md:" in proc.stderr
    assert "no_such_format" in proc.stderr


@pytest.mark.parametrize("where", [".", "docs", "docs/sub"])
def test_gen_docs_never_writes_over_the_sources(tmp_path: Path, where: str) -> None:
    config = copy_project(tmp_path / "project")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = gen_docs(tmp_path / "project" / where, config)
    assert proc.returncode == 1
    assert "would overwrite the site's own files" in proc.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def main() -> int:
    """Build with both and print, per page, tables / diagrams / anchors / requirement ids of each builder."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for proc in (build(work / "mkdocs"), gen_docs(work / "gen")):
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
        zensical = build_zensical(work / "gen" / "mkdocs.yml")
        if zensical.returncode != 0:
            print(f"zensical build failed (is it installed?)\n{zensical.stderr}", file=sys.stderr)
            return 1
        print("per page, MkDocs/Zensical:")
        print(f"{'page':24} {'tables':>9} {'diagrams':>9} {'anchors':>9} {'req ids':>9}  placeholders  same")
        for page in pages():
            mk = PageFacts.of(article(page_html(work / "mkdocs", page)))
            zs = PageFacts.of(article(page_html(work / "gen" / "site", page)))
            left = page_html(work / "gen" / "site", page).read_text(encoding="utf-8").count("{{pvmsi")
            pairs = [(len(mk.tables), len(zs.tables)), (len(mk.diagrams), len(zs.diagrams))]
            pairs += [(len(mk.anchors), len(zs.anchors)), (len(mk.requirements), len(zs.requirements))]
            cells = " ".join(f"{f'{a}/{b}':>9}" for a, b in pairs)
            print(f"{page:24} {cells}  {left:>12}  {'yes' if mk == zs and not left else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
