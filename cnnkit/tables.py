"""Rich tables that never cut a name or a number.

rich fits a table into the console's width by wrapping cells and then, as a
last resort, by cutting every column with "…": a layer name that
``explain --layer`` asks for, or the parameter count itself. Here:

- numbers and names go in ``no_wrap`` columns and are never shortened;
- every other column folds (``overflow="fold"``): a long word continues on
  the next line instead of being cut;
- a table that cannot fit the terminal even so is printed wider than the
  terminal (the terminal wraps its lines, ``less -S`` shows them whole);
- on a pipe (no terminal, no ``COLUMNS``) a table takes its natural width,
  one row per line, so that grep and awk see whole rows.

rich is imported inside the functions: it costs about 40 ms, which plain
status lines and ``--json`` do not need.
"""

from __future__ import annotations

import os
from typing import Any, TextIO

# Folded columns keep at least this many characters a line: narrower, a path
# or a class name breaks every few letters and no longer reads.
FOLD_MIN = 16
# "No limit" for measuring a table's natural width.
_UNLIMITED = 100_000


def line_width(console: Any) -> int | None:
    """The width lines should fit: the terminal's (or $COLUMNS); None on a pipe without COLUMNS."""
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return int(console.width)
    return None


def stdout_console(markup: bool = False, file: TextIO | None = None) -> Any:
    """A rich Console on ``file`` (stdout) for tables and the lines around them.

    ``markup=False`` (the default): names and paths print as they are (a file
    named "x[/b].png" is a name, not a closing tag). On a pipe without
    COLUMNS lines are not wrapped at all.
    """
    from rich.console import Console

    console = Console(file=file, highlight=False, markup=markup)
    if line_width(console) is None:
        console.width = _UNLIMITED
    return console


def natural_width(console: Any, table: Any) -> int:
    """The width ``table`` takes when nothing in it wraps."""
    from rich.measure import Measurement

    options = console.options.update_width(_UNLIMITED)
    return Measurement.get(console, options, table).maximum


def shortest_width(console: Any, table: Any) -> int:
    """The narrowest width at which no cell of ``table`` is cut.

    ``no_wrap`` columns keep their widest cell; the others may fold down to
    FOLD_MIN characters.
    """
    from rich.measure import Measurement

    options = console.options.update_width(_UNLIMITED)
    spare = 0
    for column in table.columns:
        if column.no_wrap:
            continue
        cells = [column.header, *column.cells]
        widest = max(Measurement.get(console, options, cell).maximum for cell in cells)
        spare += max(0, widest - max(FOLD_MIN, column.min_width or 0))
    return natural_width(console, table) - spare


def fits(console: Any, table: Any) -> bool:
    """Whether ``table`` fits the terminal without a cell cut (always on a pipe)."""
    limit = line_width(console)
    return limit is None or shortest_width(console, table) <= limit


def print_table(console: Any, table: Any) -> None:
    """Print ``table`` on ``console`` with every name and number whole (see the module docstring).

    Columns that are not ``no_wrap`` are set to fold.
    """
    for column in table.columns:
        if not column.no_wrap:
            column.overflow = "fold"
    limit = line_width(console)
    if limit is None:
        width = natural_width(console, table)
    else:
        width = max(limit, shortest_width(console, table))
    previous = console.width
    console.width = width
    try:
        console.print(table)
    finally:
        console.width = previous
