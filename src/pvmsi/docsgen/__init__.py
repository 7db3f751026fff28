"""pvmsi.docsgen: the generated parts of the spec site (tables, diagrams, requirement lists), from spec/ alone.

The mkdocs hook (``docs_hooks/pvmsi_hook.py``) only calls :func:`scan` once per build and :func:`expand`
once per page; everything else is pure functions of spec/ that the tests call directly.
"""

from .context import DocsError, SiteIndex
from .placeholders import DIRECTIVES, Placeholder, expand, find_placeholders, scan

__all__ = ["DIRECTIVES", "DocsError", "Placeholder", "SiteIndex", "expand", "find_placeholders", "scan"]
