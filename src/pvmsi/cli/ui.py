"""What every ``pvmsi`` command shows: nothing is cut short with "..." however narrow the terminal. A group lists
each command's first sentence whole, wrapped (click cuts it at the terminal's width), and a table folds a long
cell onto the next line (rich cuts it)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table


def table(*headers: str, **kwargs: Any) -> Table:
    """A :class:`rich.table.Table` whose columns fold long cells instead of cutting them."""
    t = Table(**kwargs)
    for header in headers:
        t.add_column(header, overflow="fold")
    return t


class Group(click.Group):
    """A :class:`click.Group` whose ``--help`` lists every command with its whole first sentence."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            rows.append((name, cmd.get_short_help_str(limit=1 << 16)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
