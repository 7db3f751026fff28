"""``pvmsi gen``: generate bindings, vectors and the site's Markdown from spec/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import click

from ..gen.c_common import STYLES, Style
from .ui import Group

_STYLE = click.option(
    "--style",
    type=click.Choice(STYLES),
    default="stdint",
    show_default=True,
    help="stdint: <stdint.h> types; uapi: <linux/types.h> __u8..__u64 and __le16..__le64, for a kernel's include/uapi.",
)
_OUT = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout.")


def _out_dir(help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The required ``-o DIR`` of the commands that write a folder."""
    return click.option(
        "-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help=help
    )


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="ascii")
    except OSError as e:
        raise click.ClickException(f"cannot write {output}: {e.strerror or e}") from None
    click.echo(f"wrote {output}", err=True)


@click.group(cls=Group)
def gen() -> None:
    """Generate from the spec: the C header and its layout checks, the Rust module, the format vectors, the site.

    Each is generated from spec/, the one statement of the formats and constants, so that none can drift from
    it."""


@gen.command("c-header")
@_STYLE
@_OUT
def c_header_cmd(style: str, output: Path | None) -> None:
    """The C header: constants, function ids, parameter structs and hypercall helpers."""
    from ..gen.c_header import c_header

    _emit(c_header(cast(Style, style)), output)


@gen.command("c-helpers")
@_STYLE
@_OUT
@click.option(
    "--header",
    help='The interface header it includes: NAME ("NAME") or <NAME>. [stdint: pvmsi.h, uapi: <linux/pvmsi.h>]',
)
def c_helpers_cmd(style: str, output: Path | None, header: str | None) -> None:
    """The hypercall helpers (inline assembly) as a header of their own: a uapi header holds no code."""
    from ..gen.c_header import c_helpers

    _emit(c_helpers(cast(Style, style), header), output)


@gen.command("c-check")
@_STYLE
@_OUT
@click.option("--header", default="pvmsi.h", show_default=True, help="File name the check #includes.")
def c_check_cmd(style: str, output: Path | None, header: str) -> None:
    """A C11 file that _Static_asserts every struct size and member offset of the header."""
    from ..gen.c_check import c_check

    _emit(c_check(cast(Style, style), header), output)


@gen.command("c-adapter")
@_OUT
def c_adapter_cmd(output: Path | None) -> None:
    """A C skeleton of a hypervisor's harness adapter on stdin/stdout: framing, sessions, one stub per request."""
    from ..gen.c_adapter import c_adapter

    _emit(c_adapter(), output)


#: The files of the C kit (conformance/c/), installed with the package.
KIT_FILES = ("pvmsi_harness.h", "pvmsi_harness.c", "example_hv.c")


@gen.command("c-kit")
@_out_dir("Directory to write pvmsi.h, the harness library (pvmsi_harness.h, .c) and the example IUT into.")
def c_kit_cmd(out_dir: Path) -> None:
    """The C kit: the header, a harness library that frames, parses and serves sessions, and an example
    hypervisor IUT on it that passes the discovery and negotiation sections."""
    from importlib.resources import files

    from ..gen.c_header import c_header

    kit = files("pvmsi.conformance") / "c"
    texts = {"pvmsi.h": c_header("stdint")}
    texts |= {name: (kit / name).read_text(encoding="ascii") for name in KIT_FILES}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (out_dir / name).write_text(text, encoding="ascii")
    except OSError as e:
        raise click.ClickException(f"cannot write the C kit to {out_dir}: {e.strerror or e}") from None
    click.echo(
        f"wrote {', '.join(texts)} to {out_dir}; build the example with: "
        "cc -std=c11 -Wall -Wextra -O2 -o example_hv example_hv.c pvmsi_harness.c",
        err=True,
    )


@gen.command("vectors")
@_out_dir("Directory; the vectors go to DIR/formats/*.json (the committed set is conformance/vectors).")
def vectors_cmd(out_dir: Path) -> None:
    """Valid and invalid encodings of every format, checked with the spec codec (JSON, deterministic)."""
    from ..gen.vectors import write

    try:
        paths = write(out_dir)
    except OSError as e:
        raise click.ClickException(f"cannot write vectors to {out_dir}: {e.strerror or e}") from None
    click.echo(f"wrote {len(paths)} files under {out_dir / 'formats'}", err=True)


@gen.command("rust")
@_OUT
def rust_cmd(output: Path | None) -> None:
    """A Rust module: constants and #[repr(C)] structs with compile-time size/offset assertions."""
    from ..gen.rust import rust

    _emit(rust(), output)


@gen.command("docs")
@click.option(
    "-f",
    "--config-file",
    default="mkdocs.yml",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The site's config; its docs_dir holds the pages with placeholders.",
)
@_out_dir("Directory; gets DIR/mkdocs.yml and DIR/docs/ (replaced), and builders put the site in DIR/site.")
def docs_cmd(config_file: Path, out_dir: Path) -> None:
    """The spec site with every placeholder expanded, for any builder: `zensical build -f DIR/mkdocs.yml`.

    Writes every page of the config's docs folder as the MkDocs hook renders it, the folder's other files, and
    the config without its hooks.
    """
    from ..docsgen import DocsError
    from ..docsgen.site import write_site

    try:
        written = write_site(config_file, out_dir)
    except DocsError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write the site to {out_dir}: {e.strerror or e}") from None
    click.echo(
        f"wrote {len(written.pages)} pages and {len(written.files)} other files under {out_dir / 'docs'}; "
        f"build with: zensical build -f {written.config_file}",
        err=True,
    )
