"""pvmsi.docsgen: the generated parts of the spec site (tables, diagrams, requirement lists), from spec/ alone.

Two ways to a built site, one rendering: ``pvmsi gen docs`` writes every page expanded (:mod:`.site`, for any
builder, Zensical included), and the mkdocs hook (``docs_hooks/pvmsi_hook.py``) calls :func:`scan` once per
build, over the same page order, and :func:`expand` once per page. Everything else is pure functions of spec/
that the tests call directly.
"""

from .context import DocsError, SiteIndex
from .placeholders import DIRECTIVES, Placeholder, expand, find_placeholders, scan

__all__ = ["DIRECTIVES", "DocsError", "Placeholder", "SiteIndex", "expand", "find_placeholders", "scan"]
