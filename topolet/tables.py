"""Tables that read well in a terminal, a pipe and a file: no label is ever truncated.

* In a terminal, a rich table when it fits the width (cells wrap at spaces, never end in
  an ellipsis); when it does not fit, one block per row of ``header: value`` lines.
* Anywhere else (a pipe, a file), plain columns separated by two spaces, as wide as the
  widest cell, with the title on a line of its own: easy to read, grep and diff.

Commands that print a table also take ``--format json`` for the same figures as data.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["TextTable", "add_format_option", "add_quick_option", "from_rich", "print_table", "wants_json"]


@dataclass
class TextTable:
    """A titled table of strings; ``right`` holds the indexes of right-aligned columns."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    right: set[int] = field(default_factory=set)

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"row of {len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(list(cells))

    def rich(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for i, h in enumerate(self.headers):
            table.add_column(h, justify="right" if i in self.right else "left", overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        return table

    def plain(self) -> str:
        widths = [max([len(h)] + [len(r[i]) for r in self.rows]) for i, h in enumerate(self.headers)]

        def line(cells: Sequence[str]) -> str:
            out = [
                c.rjust(w) if i in self.right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(out).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([self.title, "", line(self.headers), rule, *(line(r) for r in self.rows)]) + "\n"

    def records(self) -> str:
        label = max(len(h) for h in self.headers)
        blocks = [
            "\n".join(f"{h.rjust(label)}: {c}" for h, c in zip(self.headers, r, strict=True))
            for r in self.rows
        ]
        return self.title + "\n\n" + "\n\n".join(blocks) + "\n"


def _plain_text(renderable: object) -> str:
    if isinstance(renderable, Text):
        return renderable.plain
    return str(renderable) if renderable is not None else ""


def from_rich(table: Table) -> TextTable:
    """The strings of a rich *table* (title, headers, cells, right-aligned columns)."""
    out = TextTable(
        _plain_text(table.title),
        [_plain_text(c.header) for c in table.columns],
        right={i for i, c in enumerate(table.columns) if c.justify == "right"},
    )
    columns = [[_plain_text(cell) for cell in c.cells] for c in table.columns]
    for row in zip(*columns, strict=True):
        out.add(*row)
    return out


def _fits(console: Console, table: Table) -> bool:
    """Whether *table* fits the console at its natural width (no cell wrapped)."""
    natural = console.measure(table, options=console.options.update_width(100_000)).maximum
    return natural <= console.width


def print_table(table: TextTable | Table, console: Console | None = None) -> None:
    """Print *table* as a rich table, row blocks or plain columns (see the module text)."""
    console = console or Console()
    if isinstance(table, Table):
        table = from_rich(table)
    if not console.is_terminal:
        console.file.write(table.plain())
        return
    rich = table.rich()
    if _fits(console, rich):
        console.print(rich)
    else:
        console.print(Text(table.records()))


def add_format_option(p: argparse.ArgumentParser) -> None:
    """``--format table|json`` (and ``--json``, its old spelling) on parser *p*."""
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="print a table (default) or the same figures as JSON",
    )
    p.add_argument("--json", action="store_true", help="same as --format json")


def add_quick_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--quick``: a first look in seconds, as *what* says."""
    p.add_argument("--quick", action="store_true", help=f"a first look in seconds: {what}")


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False)) or getattr(args, "format", "table") == "json"
