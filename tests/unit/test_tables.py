"""Tables in a pipe, a narrow terminal and a wide one: every label whole, never an ellipsis."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from topolet.help_text import plain
from topolet.tables import TextTable, print_table

LABELS = ["blackscholes-like", "solo/static-off", "aggressor/static-on", "colocated-guaranteed/static-off"]


def table() -> TextTable:
    t = TextTable(
        "isolation: cgroup placement, builtin aggressor, cpus 0-1, 10 runs, "
        "state /var/lib/topolet/cpu_manager_state",
        ["kernel", "series", "median s", "IQR s", "vs solo", "run-queue wait ms", "others' CPU ms"],
        right={2, 3, 4, 5, 6},
    )
    for label in LABELS[1:]:
        t.add(LABELS[0], label, "0.512", "0.013", "1.005x", "12.5 (3.1)", "0.0 (0.0)")
    return t


def printed(terminal: bool, width: int) -> str:
    out = io.StringIO()
    print_table(table(), Console(file=out, width=width, force_terminal=terminal, color_system=None))
    return out.getvalue()


@pytest.mark.parametrize(
    ("terminal", "width"),
    [(False, 80), (True, 80), (True, 250)],
    ids=["pipe/plain-columns", "terminal-80/row-blocks", "terminal-wide/rich-table"],
)
def test_no_label_is_truncated_or_broken(terminal: bool, width: int) -> None:
    text = printed(terminal, width)
    assert "…" not in text
    for label in [*LABELS, "/var/lib/topolet/cpu_manager_state", "run-queue wait ms"]:
        assert label in text, label


def test_a_pipe_gets_one_line_per_row_and_a_narrow_terminal_fits() -> None:
    pipe = printed(False, 80).splitlines()
    assert pipe[0].startswith("isolation: cgroup placement") and len(pipe) == 2 + 2 + 3
    narrow = printed(True, 80)
    assert max(len(line) for line in narrow.splitlines()) <= 110  # only the title may be long


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="row of 1 cells for 7 columns"):
        table().add("x")


def test_help_text_loses_its_markup() -> None:
    doc = "``topolet run``: see :func:`bench.isolation.run` and :mod:`~scheduler.workers`.\n\nKeys::\n\n    a"
    assert plain(doc) == "topolet run: see bench.isolation.run and scheduler.workers.\n\nKeys:\n\n    a"
