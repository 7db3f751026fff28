"""The whole site at once: every page of the docs folder with its placeholders expanded, for any site builder.

One path from the pages to the Markdown a builder renders (docs/site-build.md). :func:`render_site` scans every
page in :func:`page_order` and expands each one; ``pvmsi gen docs`` writes its result, with the other files of
the docs folder and the site's config minus the hook, to a folder that any builder reading ``mkdocs.yml`` builds
as it is (Zensical: ``zensical build -f DIR/mkdocs.yml``). The MkDocs hook (``docs_hooks/pvmsi_hook.py``) is the
same :func:`scan` over the same :func:`page_order`, then :func:`expand` of each page as MkDocs reads it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .context import DocsError
from .placeholders import expand, scan

#: The tag prefix of a Python object named in the config (``!!python/name:pymdownx.superfences.fence_code_format``).
PYTHON_NAME_TAG = "tag:yaml.org,2002:python/name:"

#: The site folder of the written config, inside the output folder (Zensical builds only inside the config's folder).
SITE_DIR = "site"
#: The Markdown folder of the written config, inside the output folder.
DOCS_DIR = "docs"

#: Config keys naming files beside the config, which a written config in another folder would lose.
_UNSUPPORTED = ("INHERIT", "extra_templates")

_HEADER = "# Written by `pvmsi gen docs` from {source}: do not edit; change {source} or the pages, and run it again.\n"


class PythonName(str):
    """A ``!!python/name:`` value of the config, kept as its dotted name and written back with its tag."""

    __slots__ = ()


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML plus ``!!python/name:`` tags, which it keeps as :class:`PythonName` (it imports nothing)."""


class _ConfigDumper(yaml.SafeDumper):
    """Safe YAML plus :class:`PythonName` values, written back as ``!!python/name:`` tags."""


def _construct_name(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> PythonName:
    return PythonName(suffix)


def _represent_name(dumper: yaml.SafeDumper, value: PythonName) -> yaml.Node:
    return dumper.represent_scalar(PYTHON_NAME_TAG + str(value), "")


_ConfigLoader.add_multi_constructor(PYTHON_NAME_TAG, _construct_name)
_ConfigDumper.add_representer(PythonName, _represent_name)


def load_config(config_file: Path) -> dict[str, Any]:
    """The site's config (``mkdocs.yml``) as plain data; fails with :class:`DocsError` on a file that is not one."""
    try:
        data = yaml.load(config_file.read_text(encoding="utf-8"), Loader=_ConfigLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise DocsError(f"cannot read the site config {config_file}: {exc}") from exc
    if not isinstance(data, dict):
        raise DocsError(f"{config_file}: the site config is not a mapping")
    return data


def dump_config(config: Mapping[str, Any]) -> str:
    """``config`` as YAML, keys in their order, ``!!python/name:`` values tagged as they were read."""
    return yaml.dump(dict(config), Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True, width=120)


def nav_pages(nav: object) -> list[str]:
    """The pages of a ``nav`` entry of the config, in navigation order (links to other sites left out)."""
    if isinstance(nav, str):
        return [nav] if nav.endswith(".md") and "://" not in nav else []
    if isinstance(nav, Mapping):
        return [page for value in nav.values() for page in nav_pages(value)]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    return []


def page_order(nav: object, pages: Iterable[str]) -> list[str]:
    """``pages`` (docs-relative ``.md`` paths) in the order :func:`scan` reads them: navigation order, then the rest
    by path. An object placed on several pages is at home on the first (placeholders.scan)."""
    present = set(pages)
    ordered = list(dict.fromkeys(p for p in nav_pages(nav) if p in present))
    return ordered + sorted(present - set(ordered))


def source_files(docs_dir: Path) -> list[str]:
    """Every file of the docs folder, docs-relative and sorted, without hidden ones (as MkDocs leaves them out)."""
    found = (p.relative_to(docs_dir) for p in docs_dir.rglob("*") if p.is_file())
    return sorted(p.as_posix() for p in found if not any(part.startswith(".") for part in p.parts))


def render_site(docs_dir: Path, nav: object) -> dict[str, str]:
    """Every page of ``docs_dir`` with its placeholders expanded, by docs-relative path in :func:`page_order`."""
    pages = page_order(nav, (f for f in source_files(docs_dir) if f.endswith(".md")))
    texts = [(page, (docs_dir / page).read_text(encoding="utf-8")) for page in pages]
    site = scan(texts, docs_dir=docs_dir)
    return {page: expand(text, page, site) for page, text in texts}


@dataclass(frozen=True)
class WrittenSite:
    """What :func:`write_site` wrote: the config to build with, and the pages and other files under its docs folder."""

    config_file: Path
    pages: list[str]
    files: list[str]


def _outside(a: Path, b: Path) -> bool:
    return not (a.is_relative_to(b) or b.is_relative_to(a))


def write_site(config_file: Path, out_dir: Path) -> WrittenSite:
    """Write the expanded site of ``config_file`` to ``out_dir``: ``mkdocs.yml`` and ``docs/`` (replaced whole).

    The written config is the source config without ``hooks``, with ``docs_dir: docs`` and ``site_dir: site``;
    everything else of the docs folder (assets, stylesheets) is copied as it is.
    """
    config = load_config(config_file)
    for key in _UNSUPPORTED:
        if key in config:
            raise DocsError(f"{config_file}: {key} names files beside the config; pvmsi gen docs cannot carry it")
    theme = config.get("theme")
    if isinstance(theme, Mapping) and "custom_dir" in theme:
        raise DocsError(
            f"{config_file}: theme.custom_dir names a folder beside the config; pvmsi gen docs cannot carry it"
        )
    source_root = config_file.resolve().parent
    docs_dir = source_root / str(config.get("docs_dir", "docs"))
    if not docs_dir.is_dir():
        raise DocsError(f"{config_file}: the docs folder {docs_dir} does not exist")
    out_docs = out_dir.resolve() / DOCS_DIR
    if out_dir.resolve() == source_root or not _outside(out_docs, docs_dir):
        raise DocsError(f"the output folder {out_dir} would overwrite the site's own files; choose another")
    pages = render_site(docs_dir, config.get("nav"))
    others = [f for f in source_files(docs_dir) if f not in pages]
    if out_docs.exists():
        shutil.rmtree(out_docs)
    for page, text in pages.items():
        target = out_docs / page
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for name in others:
        target = out_docs / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(docs_dir / name, target)
    written = {k: v for k, v in config.items() if k not in ("hooks", "docs_dir", "site_dir")}
    written = {"docs_dir": DOCS_DIR, "site_dir": SITE_DIR, **written}
    out_config = out_dir / "mkdocs.yml"
    out_config.write_text(_HEADER.format(source=config_file.name) + dump_config(written), encoding="utf-8")
    return WrittenSite(out_config, list(pages), others)
