"""Where each generated object lives on the site, and how a page links to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pvmsi.spec.requirements import REQUIREMENTS, SECTIONS

from .markup import relative_link


class DocsError(ValueError):
    """The docs cannot be generated: an unknown placeholder or name, or an inconsistent site."""


def format_anchor(name: str) -> str:
    return f"format-{name}"


def constants_anchor(key: str) -> str:
    return f"const-{key}"


def call_anchor(name: str) -> str:
    return f"call-{name.lower()}"


def machine_anchor(name: str) -> str:
    return f"state-machine-{name}"


@dataclass(frozen=True)
class SiteIndex:
    """The home page (docs-relative ``.md`` path) of every object a generated page may link to."""

    format_home: dict[str, str] = field(default_factory=dict)
    constants_home: dict[str, str] = field(default_factory=dict)
    call_home: dict[str, str] = field(default_factory=dict)
    machine_home: dict[str, str] = field(default_factory=dict)
    requirement_index: str | None = None
    #: The page listing the references ({{pvmsi references}}), where citations link to.
    references_home: str | None = None
    #: The site's Markdown folder (mkdocs' docs_dir), where the measured figures (assets/*.json) are read.
    docs_dir: Path = Path("docs")

    def requirement_home(self, rid: str) -> str | None:
        """The chapter page of requirement ``rid``, or ``None`` for an id not in the registry."""
        for r in REQUIREMENTS:
            if r.id == rid:
                return SECTIONS[r.section][1]
        return None


@dataclass(frozen=True)
class Ctx:
    """Rendering context: the site index and the page being rendered."""

    site: SiteIndex
    page: str

    def _link(self, home: str | None, anchor: str, what: str) -> str:
        if home is None:
            raise DocsError(f"{self.page}: {what} is not placed on any page, so it cannot be linked")
        return relative_link(home, anchor, self.page)

    def format_link(self, name: str) -> str:
        return self._link(self.site.format_home.get(name), format_anchor(name), f"format {name!r}")

    def constants_link(self, key: str) -> str:
        return self._link(self.site.constants_home.get(key), constants_anchor(key), f"constant group {key!r}")

    def call_link(self, name: str) -> str:
        return self._link(self.site.call_home.get(name), call_anchor(name), f"call {name!r}")

    def section_link(self, section: str) -> str:
        return relative_link(SECTIONS[section][1], None, self.page)

    def references_link(self, key: str) -> str:
        return self._link(self.site.references_home, f"ref-{key}", "the reference list")

    def requirement_link(self, rid: str) -> str | None:
        """Link to ``rid`` in its chapter; ``None`` when ``rid`` is not in the registry."""
        home = self.site.requirement_home(rid)
        return None if home is None else relative_link(home, rid.lower(), self.page)
