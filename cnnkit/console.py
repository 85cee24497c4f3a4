"""stderr output shared by all commands: messages, warnings and progress.

Results go to stdout (the CLI prints them); everything here goes to stderr.
Progress bars appear only when stderr is a terminal, and ``--quiet`` silences
the chatter. rich honours ``NO_COLOR`` by itself.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from cnnkit.textout import shown

T = TypeVar("T")

_state: dict = {"quiet": False, "console": None}


def stderr_console():  # -> rich.console.Console
    """The rich Console on stderr, made on first use: importing rich costs ~40 ms,
    which plain status lines do not need."""
    if _state["console"] is None:
        from rich.console import Console

        _state["console"] = Console(stderr=True, highlight=False)
    return _state["console"]


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def info(message: str) -> None:
    """A progress or status line on stderr (silenced by --quiet).

    Names in it are shown as people should see them (cnnkit.textout.shown):
    undecodable bytes and control characters as escapes.
    """
    if not _state["quiet"]:
        sys.stderr.write(f"{shown(message)}\n")
        sys.stderr.flush()


def warn(message: str) -> None:
    """A warning on stderr (silenced by --quiet)."""
    if not _state["quiet"]:
        sys.stderr.write(f"warning: {shown(message)}\n")
        sys.stderr.flush()


def progress_enabled() -> bool:
    return not _state["quiet"] and sys.stderr.isatty()


def track(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate ``items`` with a rich progress bar on stderr when it is a terminal."""
    if not progress_enabled():
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, total=total, description=description, console=stderr_console())
