"""MkDocs hook: expand the ``{{pvmsi ...}}`` placeholders of the spec pages from spec/ (see pvmsi.docsgen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

from pvmsi.docsgen import DocsError, SiteIndex, expand, scan

_site: SiteIndex | None = None


def on_nav(nav: Any, config: Any, files: Any) -> Any:
    """Scan every page (navigation order first, then the rest by path) and build the site index."""
    global _site
    ordered = [page.file for page in nav.pages]
    in_nav = {f.src_uri for f in ordered}
    ordered += sorted((f for f in files.documentation_pages() if f.src_uri not in in_nav), key=lambda f: f.src_uri)
    try:
        _site = scan([(f.src_uri, f.content_string) for f in ordered], docs_dir=Path(config["docs_dir"]))
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
