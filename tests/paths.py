"""Where the tests find the checkout's files (they run from a checkout or an unpacked sdist, never from
site-packages): its root and the site's Markdown folder."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
