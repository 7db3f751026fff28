"""The spec site: `mkdocs build --strict` passes, and what it shows is what spec/ defines.

The site is built once per test session (into a temporary directory, the ``site`` fixture of conftest.py); the
tests then read the HTML. The drift tests compare the built tables with the layouts of spec/ and with a fresh rendering.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from paths import DOCS, ROOT
from sitebuild import Node, build, ids, page_html, parse_html, table_rows

from pvmsi.docsgen import expand, scan
from pvmsi.docsgen.context import Ctx
from pvmsi.docsgen.formats import layout, render_format
from pvmsi.spec.layout import FormatLayout, all_layouts
from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS


def expected_rows(lay: FormatLayout) -> list[list[str]]:
    """Offset, size, type and field name of each row, computed from the layout alone (not the renderer)."""
    rows = []
    for f in lay.fields:
        typ = f.type if f.nested is not None or not f.signed else "s" + f.type[1:]
        if f.type == "bytes":
            typ = f"bytes[{f.size}]"
        elif f.count > 1:
            typ = f"{typ}[{f.count}]"
        rows.append([str(f.offset), str(f.size), typ, f.name])
        if f.nested is not None:
            for i in range(f.count):
                prefix = f"{f.name}[{i}]." if f.count > 1 else f"{f.name}."
                for leaf in f.nested.leaves():
                    lf = leaf.field
                    ltyp = "s" + lf.type[1:] if lf.signed else lf.type
                    ltyp = f"bytes[{leaf.size}]" if lf.type == "bytes" else ltyp
                    rows.append(
                        [str(f.offset + i * f.elem_size + leaf.offset), str(leaf.size), ltyp, prefix + leaf.path]
                    )
    return rows


# --- the built site -----------------------------------------------------------------------------------------


def test_build_strict_passes(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in {p for _, p in SECTIONS.values()} | {"requirements.md", "conformance.md", "formats.md"}:
        assert page_html(site, page).is_file(), page


@pytest.mark.parametrize("lay", all_layouts(), ids=lambda lay: lay.name)
def test_every_format_has_a_table_and_a_diagram(site: Path, lay: FormatLayout) -> None:
    anchors = ids(parse_html(page_html(site, "formats.md")))
    block = anchors.get(f"format-{lay.name}")
    assert block is not None, f"no element with id format-{lay.name} on the formats page"
    tables = block.iter("table")
    assert tables, f"format {lay.name} has no table"
    # Drift: the built table says exactly what the layout in spec/ says.
    assert [r[:4] for r in table_rows(tables[0])] == expected_rows(lay)
    diagram = anchors.get(f"layout-{lay.name}")
    assert diagram is not None
    assert diagram.tag == "table"
    spans = sum(int(td.attrs.get("colspan", "1")) for td in diagram.iter("td"))
    assert spans == lay.size, "the byte diagram covers every byte exactly once"


def test_every_requirement_is_an_anchor_on_index_and_chapter(site: Path) -> None:
    assert REQUIREMENTS, "the registry is empty"
    index = ids(parse_html(page_html(site, "requirements.md")))
    chapters: dict[str, dict[str, Node]] = {}
    for r in REQUIREMENTS:
        assert r.id.lower() in index, f"{r.id} is not an anchor on the requirement index"
        page = SECTIONS[r.section][1]
        if page not in chapters:
            chapters[page] = ids(parse_html(page_html(site, page)))
        node = chapters[page].get(r.id.lower())
        assert node is not None, f"{r.id} is not an anchor on {page}"
        assert node.tag == "li"
        text = " ".join(node.text().split())
        assert r.id in text
        assert r.level.value in text
        assert r.role.value in text


def test_conformance_lists_every_must_of_each_role(site: Path) -> None:
    root = parse_html(page_html(site, "conformance.md"))
    text = root.text()
    for r in REQUIREMENTS:
        assert r.id in text, f"{r.id} missing from the conformance clauses"


def test_chapter_tables_equal_a_fresh_rendering() -> None:
    """Drift: the expanded page contains exactly what the renderer returns for the current spec/."""
    pages = sorted((p.relative_to(DOCS).as_posix(), p.read_text(encoding="utf-8")) for p in DOCS.rglob("*.md"))
    site_index = scan(pages, docs_dir=DOCS)
    text = dict(pages)["messages.md"]
    expanded = expand(text, "messages.md", site_index)
    assert "{{pvmsi" not in expanded
    for name in ("alloc_entry", "alloc_result", "activate_entry", "activate_result", "free_entry", "free_result"):
        assert render_format(Ctx(site_index, "messages.md"), name) in expanded
    assert expand(text, "messages.md", site_index) == expanded, "rendering is deterministic"


def test_two_builds_are_identical(site: Path, tmp_path: Path) -> None:
    """Every page with generated content is byte-identical across builds (deterministic rendering)."""
    again = tmp_path / "again"
    proc = build(again)
    assert proc.returncode == 0, proc.stderr
    generated = [p for p in sorted(DOCS.rglob("*.md")) if "{{pvmsi" in p.read_text(encoding="utf-8")]
    assert len(generated) > 10
    for md in generated:
        html = page_html(site, md.relative_to(DOCS).as_posix())
        rel = html.relative_to(site)
        assert (again / rel).read_bytes() == html.read_bytes(), f"{rel} differs between two builds"


def test_every_layout_is_known_to_the_renderer() -> None:
    for lay in all_layouts():
        assert layout(lay.name) is not None


def test_build_fails_on_an_unknown_placeholder(tmp_path: Path) -> None:
    """The hook turns an unknown placeholder into a failed build, naming the page and line."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copytree(ROOT / "docs_hooks", tmp_path / "docs_hooks")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "changelog.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n{{pvmsi format no_such_format}}\n", encoding="utf-8")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert proc.returncode != 0
    assert "changelog.md" in proc.stderr
    assert "no_such_format" in proc.stderr
