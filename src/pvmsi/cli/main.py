"""``pvmsi``: one command for the spec, the generators, the reference implementations and the suite."""

from __future__ import annotations

import click

from .. import __version__
from .bench_cmd import bench
from .conformance_cmd import conformance
from .demo_cmd import demo
from .fuzz_cmd import fuzz
from .gen_cmd import gen
from .serve_cmd import serve
from .spec_cmd import spec
from .ui import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pvmsi")
def main() -> None:
    """pvmsi: MSI, MSI-X and IMS messages by hypercall."""


main.add_command(spec)
main.add_command(gen)
main.add_command(fuzz)
main.add_command(bench)
main.add_command(demo)
main.add_command(conformance)
main.add_command(serve)
