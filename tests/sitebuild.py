"""Building the spec site in the tests, with each builder, and reading the HTML it makes.

MkDocs builds the checkout's mkdocs.yml (its hook expands the placeholders); ``pvmsi gen docs`` writes the
expanded site, which MkDocs or Zensical builds as it is. A missing Zensical skips its tests locally and fails
them under ``CI`` (the ``dev`` extra installs it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from paths import ROOT

VOID = frozenset({"br", "hr", "img", "input", "link", "meta", "source", "wbr", "col", "area", "base", "embed"})
TIMEOUT = 600


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self, tag: str | None = None) -> list[Node]:
        out: list[Node] = []
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    out.append(c)
                out.extend(c.iter(tag))
        return out

    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(path: Path) -> Node:
    b = _TreeBuilder()
    b.feed(path.read_text(encoding="utf-8"))
    b.close()
    return b.root


def ids(root: Node) -> dict[str, Node]:
    return {n.attrs["id"]: n for n in root.iter() if "id" in n.attrs}


def table_rows(table: Node) -> list[list[str]]:
    return [[td.text().strip() for td in tr.iter("td")] for tr in table.iter("tr") if tr.iter("td")]


def page_html(site: Path, page: str) -> Path:
    stem = page.removesuffix(".md")
    return site / "index.html" if stem == "index" else site / stem / "index.html"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env)


def build(dest: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``dest``."""
    return _run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(dest)], config.parent
    )


def gen_docs(out: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess[str]:
    """``pvmsi gen docs -f config -o out``: the expanded site and its config in ``out``."""
    return _run([sys.executable, "-m", "pvmsi", "gen", "docs", "-f", str(config), "-o", str(out)], ROOT)


def need_zensical() -> None:
    """Skip (locally) or fail (under CI) when Zensical is not installed."""
    if importlib.util.find_spec("zensical") is not None:
        return
    reason = "zensical is not installed (pip install -e '.[dev]' or '.[zensical]' installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def build_zensical(config: Path) -> subprocess.CompletedProcess[str]:
    """``zensical build --strict -f config``: the site goes to the ``site`` folder beside ``config``."""
    return _run([sys.executable, "-m", "zensical", "build", "--strict", "--clean", "-f", str(config)], config.parent)


def article(path: Path) -> Node:
    """The page's content (Material's ``md-content__inner``), without the theme's navigation and header."""
    found = [n for n in parse_html(path).iter("article") if "md-content__inner" in n.classes()]
    assert len(found) == 1, f"{path}: {len(found)} content articles"
    return found[0]
