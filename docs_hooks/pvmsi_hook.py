"""MkDocs hook: expand the ``{{pvmsi ...}}`` placeholders of the spec pages from spec/ (see pvmsi.docsgen).

A thin adapter: the pages are scanned in the order ``pvmsi gen docs`` scans them (pvmsi.docsgen.site), and each
is expanded as MkDocs reads it, so this build and one of ``pvmsi gen docs``'s output show the same pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

from pvmsi.docsgen import DocsError, SiteIndex, expand, scan
from pvmsi.docsgen.site import page_order

_site: SiteIndex | None = None


def on_nav(nav: Any, config: Any, files: Any) -> Any:
    """Scan every page (navigation order first, then the rest by path) and build the site index."""
    global _site
    pages = {f.src_uri: f for f in files.documentation_pages()}
    try:
        ordered = [(uri, pages[uri].content_string) for uri in page_order(config["nav"], pages)]
        _site = scan(ordered, docs_dir=Path(config["docs_dir"]))
    except DocsError as exc:
        raise PluginError(f"pvmsi docs: {exc}") from exc
    return nav


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the placeholders of one page."""
    if _site is None:
        raise PluginError("pvmsi docs: the site index was not built (on_nav did not run)")
    try:
        return expand(markdown, page.file.src_uri, _site)
    except DocsError as exc:
        raise PluginError(f"pvmsi docs: {exc}") from exc
